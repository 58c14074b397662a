//! Integration tests of the proxy with real clients (curl, rustls, raw TCP)
//! against local origins, with events read back from the real pipeline's SQLite
//! store.

mod support; // shared harness: origins, proxy on port 0, event store, curl

mod access; // who may use the proxy: unknown clients, devices, proxy auth, guests vs internal networks, PAC
mod caps; // per-role download and upload caps
mod connect; // CONNECT tunnels: allowed, blocked with a reason header, ports, fronting, WebSocket inside
mod explicit; // plain HTTP: roles, block page and its event, SafeSearch, pooling, Via, HTTP/1.0, 100-continue, WebSocket
mod limits; // bad input: header size and count, slowloris, malformed requests, loops, upstream down, connection caps
mod netns; // transparent mode as deployed: network namespaces, veth, nftables REDIRECT
mod transparent; // transparent HTTP by Host and HTTPS by SNI on the local ports
