//! Listeners, accept loops, connection limits and shutdown.
//!
//! Threads of their own: [`ProxyServer::run`] starts one single-threaded tokio
//! runtime per worker (default: [`default_workers`]), each with its own
//! `SO_REUSEPORT` socket per listener, so the kernel spreads connections across
//! workers and a request (client side, upstream pool, tunnel) stays on one
//! thread from start to end, with no cross-thread wake-ups on the hot path.
//!
//! Each listener has an accept loop; each accepted connection holds a permit of
//! the global semaphore (`proxy.max_connections`: when all are taken the loop
//! stops accepting and the kernel backlog waits) and a per-client slot
//! (`proxy.max_connections_per_client`: over it the connection is closed at once
//! and counted). Accept errors (e.g. out of file descriptors) back off
//! exponentially instead of spinning. One cancellation token stops everything:
//! the loops stop accepting, connections finish their current request (hyper's
//! graceful shutdown) or end their tunnel, and what is left after the grace
//! period is aborted.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use schoolgate_classifier::Action;
use schoolgate_classifier::config::services::MAX_PROXY_WORKERS;
use schoolgate_events::Source;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::{BindError, Fault, ProxyError};
use crate::head::{self, HeadError, Rewind};
use crate::hooks::Mode;
use crate::proxy::{ConnInfo, Proxy};
use crate::stats::Counters;

/// The header count hyper's HTTP/1 server allows unless told otherwise
/// (`http1::Builder::max_headers`), and `[proxy] max_headers`' default.
const HYPER_MAX_HEADERS: usize = 100;

/// The addresses to listen on; a `None` face is not started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Listeners {
    /// The explicit proxy (PAC/WPAD, CONNECT), e.g. `0.0.0.0:3128`.
    pub explicit: Option<SocketAddr>,
    /// Redirected port-80 traffic, e.g. `0.0.0.0:8080`.
    pub transparent_http: Option<SocketAddr>,
    /// Redirected port-443 traffic, e.g. `0.0.0.0:8443`.
    pub transparent_https: Option<SocketAddr>,
}

impl Listeners {
    /// From the school config's `[listen]`.
    pub fn from_config(listen: &schoolgate_classifier::config::ListenConfig) -> Listeners {
        Listeners {
            explicit: listen.proxy,
            transparent_http: listen.transparent_http,
            transparent_https: listen.transparent_https,
        }
    }
}

/// The bound proxy, ready to [`run`](ProxyServer::run).
#[derive(Debug)]
pub struct ProxyServer {
    proxy: Arc<Proxy>,
    /// The first socket of each listener (the others are bound by `run`).
    listeners: Vec<(Mode, std::net::TcpListener)>,
    local: Listeners,
    grace: Duration,
    workers: usize,
}

/// Per-client connection counts.
#[derive(Debug, Default)]
struct ClientSlots {
    counts: Mutex<HashMap<IpAddr, u32>>,
}

struct ClientSlot {
    slots: Arc<ClientSlots>,
    ip: IpAddr,
}

impl ClientSlots {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut counts = self.counts.lock().ok()?;
        let n = counts.entry(ip).or_insert(0);
        if *n as usize >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.slots.counts.lock()
            && let Some(n) = counts.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// The proxy's worker threads unless configured (`proxy.workers`): half the
/// CPUs, rounded up, at most [`MAX_PROXY_WORKERS`]. The proxy shares its machine
/// with the DNS filter (a loop per CPU), the event pipeline and the store's
/// writer; with a thread per CPU as well, the busy threads outnumber the cores
/// and preempt each other. On 2 cores under a saturating load, one proxy thread
/// served about as many requests as two, with less CPU per request and a lower
/// p99 (`benches/RESULTS.md`).
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().div_ceil(2))
        .clamp(1, MAX_PROXY_WORKERS)
}

impl ProxyServer {
    /// Binds the configured listeners (port 0 picks a free port: see
    /// [`local_addrs`](ProxyServer::local_addrs)).
    pub fn bind(proxy: Arc<Proxy>, listeners: Listeners) -> Result<ProxyServer, BindError> {
        let mut bound = Vec::new();
        let mut local = Listeners::default();
        for (mode, addr) in [
            (Mode::Explicit, listeners.explicit),
            (Mode::TransparentHttp, listeners.transparent_http),
            (Mode::TransparentHttps, listeners.transparent_https),
        ] {
            let Some(addr) = addr else { continue };
            let l = bind_one(addr).map_err(|source| BindError::Bind { addr, source })?;
            let actual = l
                .local_addr()
                .map_err(|source| BindError::Bind { addr, source })?;
            match mode {
                Mode::Explicit => local.explicit = Some(actual),
                Mode::TransparentHttp => local.transparent_http = Some(actual),
                Mode::TransparentHttps => local.transparent_https = Some(actual),
            }
            bound.push((mode, l));
        }
        if bound.is_empty() {
            return Err(BindError::NothingToListen);
        }
        let addrs = [
            local.explicit,
            local.transparent_http,
            local.transparent_https,
        ]
        .into_iter()
        .flatten()
        .collect();
        proxy.dialer.set_local(addrs);
        let workers = default_workers();
        Ok(ProxyServer {
            proxy,
            listeners: bound,
            local,
            grace: Duration::from_secs(10),
            workers,
        })
    }

    /// The addresses actually bound.
    pub fn local_addrs(&self) -> Listeners {
        self.local
    }

    /// How long connections get to finish after shutdown (default 10 s).
    pub fn grace_period(mut self, grace: Duration) -> ProxyServer {
        self.grace = grace;
        self
    }

    /// Worker threads (default: [`default_workers`]).
    pub fn workers(mut self, n: usize) -> ProxyServer {
        self.workers = n.clamp(1, MAX_PROXY_WORKERS);
        self
    }

    /// Serves until `shutdown` is cancelled, then drains. The workers run on
    /// their own threads; this future completes when all of them have stopped.
    pub async fn run(self, shutdown: CancellationToken) {
        let max = self.proxy.view().limits.max_connections;
        let permits = Arc::new(Semaphore::new(max));
        let slots = Arc::new(ClientSlots::default());
        let mut per_worker: Vec<Vec<(Mode, std::net::TcpListener)>> =
            (0..self.workers).map(|_| Vec::new()).collect();
        for (mode, first) in self.listeners {
            let Ok(addr) = first.local_addr() else {
                continue;
            };
            info!(%addr, ?mode, workers = self.workers, "proxy listening");
            for (w, list) in per_worker.iter_mut().enumerate().skip(1) {
                match bind_std(addr) {
                    Ok(l) => list.push((mode, l)),
                    Err(e) => warn!(%addr, worker = w, error = %e, "extra listener socket failed"),
                }
            }
            per_worker[0].push((mode, first));
        }
        // Each worker holds a sender; `recv` returns `None` once all have exited.
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
        for (i, listeners) in per_worker.into_iter().enumerate() {
            if listeners.is_empty() {
                continue;
            }
            let proxy = self.proxy.clone();
            let (permits, slots, shutdown) = (permits.clone(), slots.clone(), shutdown.clone());
            let grace = self.grace;
            let done = done_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("proxy-{i}"))
                .spawn(move || {
                    let _done = done;
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "proxy worker runtime failed");
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let mut loops = JoinSet::new();
                        for (mode, l) in listeners {
                            match TcpListener::from_std(l) {
                                Ok(l) => {
                                    loops.spawn(accept_loop(
                                        proxy.clone(),
                                        l,
                                        mode,
                                        permits.clone(),
                                        slots.clone(),
                                        shutdown.clone(),
                                        grace,
                                    ));
                                }
                                Err(e) => warn!(error = %e, "listener unusable"),
                            }
                        }
                        while loops.join_next().await.is_some() {}
                    });
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a proxy worker thread");
            }
        }
        drop(done_tx);
        let _ = done_rx.recv().await;
    }
}

fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    bind_std(addr)
}

/// A non-blocking listening socket with `SO_REUSEPORT`, so each worker can have
/// its own socket on the same address and the kernel balances between them.
fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

async fn accept_loop(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    mode: Mode,
    permits: Arc<Semaphore>,
    slots: Arc<ClientSlots>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut conns = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            // Reap finished connections so the set stays as small as the live ones.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                warn!(error = %e, "accept failed; backing off");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        Counters::inc(&proxy.stats.connections);
        let per_client = proxy.view().limits.max_connections_per_client;
        let Some(slot) = slots.take(peer.ip(), per_client) else {
            Counters::inc(&proxy.stats.refused_connections);
            drop(stream);
            continue;
        };
        let proxy = proxy.clone();
        let token = shutdown.child_token();
        conns.spawn(async move {
            let _slot = slot;
            let _permit: OwnedSemaphorePermit = permit;
            Counters::inc(&proxy.stats.active_connections);
            serve(proxy.clone(), stream, peer, mode, token).await;
            Counters::dec(&proxy.stats.active_connections);
        });
    }
    // Shutdown: connections see the token; give them the grace period.
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            left = conns.len(),
            "connections still open after the grace period: aborting"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// Where a REDIRECTed connection was going, from conntrack (`SO_ORIGINAL_DST`).
/// `None` when the connection was not redirected (it came to our address).
fn original_dst(stream: &TcpStream, local: SocketAddr) -> Option<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let dst = match local {
        SocketAddr::V4(_) => sock.original_dst_v4(),
        SocketAddr::V6(_) => sock.original_dst_v6(),
    }
    .ok()?
    .as_socket()?;
    let dst = SocketAddr::new(
        schoolgate_classifier::policy::canonical_ip(dst.ip()),
        dst.port(),
    );
    let local = SocketAddr::new(
        schoolgate_classifier::policy::canonical_ip(local.ip()),
        local.port(),
    );
    (dst != local).then_some(dst)
}

async fn serve(
    proxy: Arc<Proxy>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mode: Mode,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let original = match mode {
        Mode::Explicit => None,
        _ => original_dst(&stream, local),
    };
    let conn = Arc::new(ConnInfo {
        peer,
        local,
        mode,
        original_dst: original,
        shutdown: shutdown.clone(),
        tunnel: Mutex::new(None),
    });
    if mode == Mode::TransparentHttps {
        crate::transparent::serve_tls(proxy, conn, stream).await;
        return;
    }
    let view = proxy.view();
    let limits = view.limits;
    let first = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = head::read_first_head(&mut stream, &limits) => r,
    };
    let pre = match first {
        Ok(pre) => pre,
        Err(HeadError::Closed) => return,
        Err(HeadError::Truncated) => {
            head_event(&proxy, &conn, 400, "client closed mid-request");
            return;
        }
        Err(HeadError::Timeout { received }) => {
            // Nothing sent is a browser's pre-connect; a partial head is slowloris.
            if received > 0 {
                head_event(&proxy, &conn, 408, "request head not sent in time");
            }
            return;
        }
        Err(HeadError::Bad(err)) => {
            refuse_head(&proxy, &conn, &mut stream, err).await;
            return;
        }
    };

    let io = TokioIo::new(Rewind::new(pre, stream));
    let svc_proxy = proxy.clone();
    let svc_conn = conn.clone();
    let service = service_fn(move |req| {
        let proxy = svc_proxy.clone();
        let conn = svc_conn.clone();
        async move { Ok::<_, std::convert::Infallible>(proxy.handle(&conn, req).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    // hyper parses into an array of its default size on the stack; told any
    // limit, even that one, it allocates the array on the heap per request.
    if limits.max_headers != HYPER_MAX_HEADERS {
        builder.max_headers(limits.max_headers);
    }
    let conn_fut = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn_fut);
    let result = tokio::select! {
        r = conn_fut.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn_fut.as_mut().graceful_shutdown();
            conn_fut.as_mut().await
        }
    };
    if let Err(e) = result {
        // A later request hyper refused (it already answered 400/431), or the
        // client went away mid-response.
        if e.is_parse() || e.is_parse_too_large() {
            let status = if e.is_parse_too_large() { 431 } else { 400 };
            head_event(&proxy, &conn, status, "malformed request after keep-alive");
        } else if e.is_timeout() {
            debug!(%peer, "keep-alive connection timed out");
        } else {
            debug!(%peer, error = %e, "client connection ended with an error");
        }
    }
    let tunnel = conn.tunnel.lock().ok().and_then(|mut t| t.take());
    if let Some(tunnel) = tunnel {
        // The tunnel watches the shutdown token itself, so it logs its event.
        tunnel.await;
    }
}

/// An event for a request that never got as far as a head we could read.
fn head_event(proxy: &Arc<Proxy>, conn: &ConnInfo, status: u16, why: &str) {
    let view = proxy.view();
    let source = if conn.mode == Mode::Explicit {
        Source::Proxy
    } else {
        Source::Transparent
    };
    let mut ctx = proxy.new_context(&view, conn, source);
    ctx.event.action = Action::Block;
    ctx.event.status = status;
    ctx.event.rule = "malformed request".to_owned();
    ctx.event.reason = why.to_owned();
    proxy.stats.error(Fault::Client);
    proxy.log(ctx, 0, 0);
}

/// Answers a bad first head with a page (400/414/431), sends the event, closes.
async fn refuse_head(proxy: &Arc<Proxy>, conn: &ConnInfo, stream: &mut TcpStream, err: ProxyError) {
    let view = proxy.view();
    let source = if conn.mode == Mode::Explicit {
        Source::Proxy
    } else {
        Source::Transparent
    };
    let ctx = proxy.new_context(&view, conn, source);
    let resp = proxy.fail(&view, ctx, err, false);
    let (parts, mut body) = resp.into_parts();
    let mut bytes = Vec::with_capacity(2048);
    bytes.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            parts.status.as_u16(),
            parts.status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (k, v) in &parts.headers {
        bytes.extend_from_slice(k.as_str().as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(v.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    let page = http_body_util::BodyExt::collect(&mut body)
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    bytes.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            page.len()
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(&page);
    let _ = tokio::time::timeout(head::ERROR_WRITE_TIMEOUT, async {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
    })
    .await;
    // The body was read to its end: dropping it sends the event.
    drop(body);
}
