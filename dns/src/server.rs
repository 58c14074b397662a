//! [`DnsServer`]: the sockets. UDP loops that answer in place, TCP with
//! connection limits and timeouts, one cancellation token to stop it all.
//!
//! UDP: each listening address gets one socket per core, bound with
//! `SO_REUSEPORT` so the kernel spreads clients over them, and one loop (a
//! thread, batching its system calls: see [`crate::udp`]) per socket. Only a
//! query that goes upstream becomes a task, bounded in number.
//!
//! TCP (RFC 7766): pipelined queries on one connection are answered in order;
//! connections are capped in total and per client, and closed when idle.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::error::DnsError;
use crate::filter::{DnsFilter, Step, Transport};
use crate::stats::C;
use crate::udp::{self, LoopContext};

/// Queries waiting on upstream at once, over all UDP loops. Past it a query is
/// answered SERVFAIL at once rather than queued without bound.
const MAX_PENDING_UPSTREAM: usize = 16_384;
/// TCP connections at once, in total and from one client address.
const MAX_TCP_CONNECTIONS: usize = 1_024;
const MAX_TCP_PER_CLIENT: usize = 32;
/// An idle TCP connection is closed after this (RFC 7766 6.2.3 asks for
/// seconds, not minutes; unbound's default is 30 s).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Time to read the rest of a message once its length arrived, and to write an
/// answer: a peer that trickles bytes loses its connection.
const TCP_IO: Duration = Duration::from_secs(5);
/// Socket receive buffer asked for: absorbs a burst while both cores are busy.
const UDP_RECV_BUFFER: usize = 4 << 20;
/// How long `run` waits for connections and upstream queries after shutdown.
const GRACE: Duration = Duration::from_secs(5);
/// Tries to find a port free for both UDP and TCP when asked for port 0.
const PORT_TRIES: usize = 8;

/// The bound sockets of the DNS filter.
#[derive(Debug)]
pub struct DnsServer {
    filter: Arc<DnsFilter>,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    local: Vec<SocketAddr>,
}

impl DnsServer {
    /// Binds UDP and TCP on every address (port 0 picks a free port, the same
    /// for UDP and TCP). An IPv6 address is bound IPv6-only: list `0.0.0.0:53`
    /// and `[::]:53` to serve both. Does not start serving: see
    /// [`DnsServer::run`].
    pub fn bind(filter: Arc<DnsFilter>, addrs: &[SocketAddr]) -> Result<DnsServer, DnsError> {
        let loops = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut server = DnsServer {
            filter,
            udp: Vec::new(),
            tcp: Vec::new(),
            local: Vec::new(),
        };
        for &addr in addrs {
            let mut last_err = None;
            let tries = if addr.port() == 0 { PORT_TRIES } else { 1 };
            let mut bound = false;
            for _ in 0..tries {
                match bind_one(addr, loops) {
                    Ok((udp, tcp, local)) => {
                        server.udp.extend(udp);
                        server.tcp.push(tcp);
                        server.local.push(local);
                        bound = true;
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            if !bound {
                let source = last_err.unwrap_or_else(|| io::Error::other("no attempt"));
                return Err(DnsError::Bind { addr, source });
            }
        }
        Ok(server)
    }

    /// The addresses bound, in the order given (with the real port for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.local.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets
    /// connections and upstream queries finish (up to a grace period) and
    /// returns. Must run inside a tokio runtime.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DnsError> {
        let tracker = TaskTracker::new();
        let cx = LoopContext {
            filter: Arc::clone(&self.filter),
            shutdown: shutdown.clone(),
            runtime: Handle::current(),
            tracker: tracker.clone(),
            pending: Arc::new(Semaphore::new(MAX_PENDING_UPSTREAM)),
        };
        let mut loops = tokio::task::JoinSet::new();
        for (i, socket) in self.udp.into_iter().enumerate() {
            let (done, finished) = oneshot::channel::<()>();
            let cx = cx.clone();
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || {
                    udp::run_loop(socket, cx);
                    let _ = done.send(());
                })
                .map_err(DnsError::Runtime)?;
            loops.spawn(async move {
                let _ = finished.await;
            });
        }
        let limits = Arc::new(TcpLimits::default());
        for std_listener in self.tcp {
            let listener = TcpListener::from_std(std_listener).map_err(DnsError::Runtime)?;
            loops.spawn(accept_loop(
                Arc::clone(&self.filter),
                listener,
                shutdown.clone(),
                tracker.clone(),
                Arc::clone(&limits),
            ));
        }
        info!(addrs = ?self.local, "DNS filter listening");
        shutdown.cancelled().await;
        while loops.join_next().await.is_some() {}
        tracker.close();
        if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
            warn!("DNS filter: some queries were still running at shutdown");
        }
        // The loops' last events are on their way to the pipeline: wait for them,
        // so that a pipeline stopped after this server has them all.
        let filter = Arc::clone(&self.filter);
        if let Ok(Some(done)) = tokio::task::spawn_blocking(move || filter.events_barrier()).await {
            let _ = tokio::time::timeout(GRACE, done).await;
        }
        info!("DNS filter stopped");
        Ok(())
    }
}

fn bind_one(
    addr: SocketAddr,
    loops: usize,
) -> io::Result<(Vec<std::net::UdpSocket>, std::net::TcpListener, SocketAddr)> {
    let domain = Domain::for_address(addr);
    let mut udp = Vec::with_capacity(loops);
    let mut local = addr;
    for i in 0..loops.max(1) {
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_reuse_port(true)?;
        // Best effort: the kernel caps these at net.core.{r,w}mem_max.
        let _ = s.set_recv_buffer_size(UDP_RECV_BUFFER);
        let _ = s.set_send_buffer_size(UDP_RECV_BUFFER);
        s.bind(&local.into())?;
        if i == 0 {
            local = s
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("not an IP socket"))?;
        }
        udp.push(s.into());
    }
    let t = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        t.set_only_v6(true)?;
    }
    t.set_reuse_address(true)?;
    t.set_nonblocking(true)?;
    t.bind(&local.into())?;
    t.listen(1024)?;
    Ok((udp, t.into(), local))
}

/// Counts TCP connections in total and per client.
#[derive(Debug)]
struct TcpLimits {
    total: Arc<Semaphore>,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            total: Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS)),
            per_client: Mutex::new(HashMap::new()),
        }
    }
}

/// A client's slot, given back on drop.
struct ClientSlot<'a> {
    limits: &'a TcpLimits,
    ip: IpAddr,
}

impl TcpLimits {
    fn admit(&self, ip: IpAddr) -> Option<ClientSlot<'_>> {
        let mut map = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= MAX_TCP_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(ClientSlot { limits: self, ip })
    }
}

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        let mut map = self
            .limits
            .per_client
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn accept_loop(
    filter: Arc<DnsFilter>,
    listener: TcpListener,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    limits: Arc<TcpLimits>,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = Arc::clone(&limits.total).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(10);
                a
            }
            Err(e) => {
                // Out of file descriptors, usually: back off instead of spinning.
                warn!(error = %e, "DNS TCP accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let (filter, shutdown, limits) =
            (Arc::clone(&filter), shutdown.clone(), Arc::clone(&limits));
        tracker.spawn(async move {
            let Some(_slot) = limits.admit(peer.ip()) else {
                filter.counters().inc(C::TcpRejected);
                return;
            };
            if let Err(e) = serve_tcp(&filter, stream, peer.ip(), &shutdown).await {
                debug!(error = %e, %peer, "DNS TCP connection ended");
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(
    filter: &DnsFilter,
    mut stream: TcpStream,
    ip: IpAddr,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut packet = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(1024);
    loop {
        let mut len = [0u8; 2];
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)) => match r {
                Ok(r) => { r?; }
                Err(_) => return Ok(()), // idle
            },
        }
        let len = usize::from(u16::from_be_bytes(len));
        packet.resize(len, 0);
        tokio::time::timeout(TCP_IO, stream.read_exact(&mut packet))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "slow query"))??;
        match filter.answer_now(&packet, ip, Transport::Tcp, &mut out) {
            Step::Reply => {}
            // Not a query (a response, or garbage without a header): this
            // connection is not speaking DNS to us.
            Step::Silent => return Ok(()),
            Step::Deferred(d) => filter.answer_later(*d, &mut out).await,
        }
        let framed_len = u16::try_from(out.len()).unwrap_or(u16::MAX);
        let mut frame = Vec::with_capacity(out.len() + 2);
        frame.extend_from_slice(&framed_len.to_be_bytes());
        frame.extend_from_slice(&out[..usize::from(framed_len)]);
        tokio::time::timeout(TCP_IO, stream.write_all(&frame))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "slow reader"))??;
    }
}
