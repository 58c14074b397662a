//! Transparent mode as a school deploys it: a client in its own network
//! namespace whose port 80/443 traffic an nftables REDIRECT rule (the one in
//! proxy/README.md) sends to schoolgate, reaching an origin in another namespace.
//! Addresses are 10.99.x.y inside namespaces made here; nothing leaves the host.
//! Skipped, with a message, where the machine forbids namespaces.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::process::Command;

use crate::support::*;
use schoolgate_classifier::Action;

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &str) -> Result<(), String> {
    run("ip", &args.split_whitespace().collect::<Vec<_>>())
}

fn nft(script: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("nft stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two namespaces and their veth pairs; removed on drop.
struct Lab {
    id: u32,
    client_ns: String,
    origin_ns: String,
    table: String,
    /// 10.99.<c>.0/24 client side, 10.99.<c+1>.0/24 origin side.
    c: u32,
}

impl Lab {
    fn new() -> Result<Lab, String> {
        let id = std::process::id() % 100_000;
        let c = (std::process::id() % 120) * 2 + 2;
        let lab = Lab {
            id,
            client_ns: format!("sgp-c-{id}"),
            origin_ns: format!("sgp-o-{id}"),
            table: format!("sgp{id}"),
            c,
        };
        ip(&format!("netns add {}", lab.client_ns))?;
        ip(&format!("netns add {}", lab.origin_ns))?;
        let (cn, on, o) = (&lab.client_ns, &lab.origin_ns, c + 1);
        for cmd in [
            format!("link add sgc{id} type veth peer name sgch{id}"),
            format!("link set sgc{id} netns {cn}"),
            format!("-n {cn} addr add 10.99.{c}.2/24 dev sgc{id}"),
            format!("-n {cn} link set sgc{id} up"),
            format!("-n {cn} link set lo up"),
            format!("-n {cn} route add default via 10.99.{c}.1"),
            format!("addr add 10.99.{c}.1/24 dev sgch{id}"),
            format!("link set sgch{id} up"),
            format!("link add sgo{id} type veth peer name sgoh{id}"),
            format!("link set sgo{id} netns {on}"),
            format!("-n {on} addr add 10.99.{o}.2/24 dev sgo{id}"),
            format!("-n {on} link set sgo{id} up"),
            format!("-n {on} link set lo up"),
            format!("-n {on} route add default via 10.99.{o}.1"),
            format!("addr add 10.99.{o}.1/24 dev sgoh{id}"),
            format!("link set sgoh{id} up"),
        ] {
            ip(&cmd)?;
        }
        Ok(lab)
    }

    fn proxy_ip(&self) -> IpAddr {
        format!("10.99.{}.1", self.c).parse().expect("ip")
    }

    fn client_ip(&self) -> String {
        format!("10.99.{}.2", self.c)
    }

    fn origin_ip(&self) -> IpAddr {
        format!("10.99.{}.2", self.c + 1).parse().expect("ip")
    }

    /// The README's rule, for this lab's client interface.
    fn redirect(&self, http_port: u16, https_port: u16) -> Result<(), String> {
        nft(&format!(
            "table ip {t} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
             iifname \"sgch{id}\" tcp dport 80 redirect to :{http_port}\n    \
             iifname \"sgch{id}\" tcp dport 443 redirect to :{https_port}\n  }}\n}}\n",
            t = self.table,
            id = self.id,
        ))
    }

    /// A listening socket made inside the origin namespace (a socket keeps the
    /// namespace it was created in, whichever thread uses it later).
    fn listen_in_origin(&self, port: u16) -> Result<std::net::TcpListener, String> {
        let path = format!("/run/netns/{}", self.origin_ns);
        let addr = SocketAddr::new(self.origin_ip(), port);
        std::thread::spawn(move || -> Result<std::net::TcpListener, String> {
            let ns = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| format!("setns: {e}"))?;
            let l = std::net::TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(l)
        })
        .join()
        .map_err(|_| "listener thread panicked".to_owned())?
    }

    async fn curl_in_client(&self, dir: &std::path::Path, args: &[&str]) -> Curl {
        let mut all = vec!["netns", "exec", &self.client_ns, "curl"];
        all.extend_from_slice(args);
        curl_cmd(dir, "ip", &all).await
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = nft(&format!("delete table ip {}\n", self.table));
        let _ = ip(&format!("netns del {}", self.client_ns));
        let _ = ip(&format!("netns del {}", self.origin_ns));
        let _ = ip(&format!("link del sgch{}", self.id));
        let _ = ip(&format!("link del sgoh{}", self.id));
    }
}

#[tokio::test]
async fn transparent_mode_with_nftables_redirect() {
    for tool in ["ip", "nft", "curl"] {
        if Command::new(tool).arg("-V").output().is_err()
            && Command::new(tool).arg("--version").output().is_err()
        {
            println!(
                "SKIP transparent_mode_with_nftables_redirect: `{tool}` is not installed (apt-get install -y iproute2 nftables curl)"
            );
            return;
        }
    }
    let lab = match Lab::new() {
        Ok(l) => l,
        Err(e) => {
            println!(
                "SKIP transparent_mode_with_nftables_redirect: this machine forbids network namespaces ({e})"
            );
            return;
        }
    };
    let h = Harness::with(Options {
        transparent_ip: Some(lab.proxy_ip()),
        extra: format!(
            "[[networks]]\ncidr = \"10.99.{}.0/24\"\nrole = \"pupil\"\nschool = \"hillside\"\n",
            lab.c
        ),
        ..Options::default()
    })
    .await;
    let http = h.addrs.transparent_http.expect("http").port();
    let https = h.addrs.transparent_https.expect("https").port();
    if let Err(e) = lab.redirect(http, https) {
        println!("SKIP transparent_mode_with_nftables_redirect: nftables refused the rule ({e})");
        h.stop().await;
        return;
    }
    let origin = HttpOrigin::serve(
        tokio::net::TcpListener::from_std(lab.listen_in_origin(80).expect("origin :80"))
            .expect("tokio listener"),
    );
    let tls = TlsOrigin::serve(
        h.dir.path(),
        tokio::net::TcpListener::from_std(lab.listen_in_origin(443).expect("origin :443"))
            .expect("tokio listener"),
    );
    let oip = lab.origin_ip().to_string();

    // Port 80, allowed: the origin in the other namespace answers.
    let url = format!("http://{oip}/deployed?x=1");
    let r = lab.curl_in_client(h.dir.path(), &[&url]).await;
    assert_eq!(r.code, 200, "{r:?}");
    assert!(
        r.body.starts_with("GET /deployed?x=1 HTTP/1.1"),
        "{}",
        r.body
    );
    assert_eq!(origin.connections(), 1);
    let client = lab.client_ip();
    let e = h.event(&client, |e| e.path == "/deployed?x=1").await;
    assert_eq!(e.source, schoolgate_events::Source::Transparent);
    assert_eq!(e.role, "pupil");

    // Port 80, blocked by Host: the block page.
    let r = lab
        .curl_in_client(h.dir.path(), &["-H", "Host: www.bet365.com", &url])
        .await;
    assert_eq!(r.code, 403, "{r:?}");
    assert!(r.body.contains("bet365"));

    // Port 443, allowed by SNI: spliced to the original destination.
    let ca = tls.ca_pem.display().to_string();
    let resolve = format!("allowed.test:443:{oip}");
    let r = lab
        .curl_in_client(
            h.dir.path(),
            &[
                "--cacert",
                &ca,
                "--resolve",
                &resolve,
                "https://allowed.test/",
            ],
        )
        .await;
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(r.body, "tls ok");
    let e = h.event(&client, |e| e.host == "allowed.test").await;
    assert_eq!(e.action, Action::Allow);
    assert!(e.bytes_down > 0);

    // Port 443, blocked by SNI: closed, and logged.
    let resolve = format!("www.bet365.com:443:{oip}");
    let r = lab
        .curl_in_client(
            h.dir.path(),
            &[
                "--cacert",
                &ca,
                "--resolve",
                &resolve,
                "https://www.bet365.com/",
            ],
        )
        .await;
    assert_ne!(r.exit, 0, "{r:?}");
    let e = h.event(&client, |e| e.host == "www.bet365.com").await;
    assert_eq!(e.action, Action::Block);
    h.stop().await;
    drop(lab);
}
