//! Talking to the upstream resolvers: pooled UDP sockets, TCP when an answer is
//! truncated, DNS over TLS for `tls://` upstreams ([`crate::dot`]), a deadline
//! over all attempts, failover and health.
//!
//! Each upstream has a few connected UDP sockets, opened on first use and kept:
//! a query takes a random free ID on one of them and waits on a oneshot channel
//! that the socket's receiver task completes when the matching answer arrives (ID
//! *and* question must match, and a connected socket only hears from the
//! upstream's address). No socket per query, no task per query on this side.
//!
//! Every attempt is bounded. One query's whole budget is `upstream_timeout_ms`,
//! shared by the upstreams in order (healthy ones first): with two upstreams the
//! first gets half, the second what is left. An upstream that keeps failing is
//! marked down for a growing while; when every upstream is down, queries fail at
//! once (the caller serves stale or SERVFAIL) while one query at a time probes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use schoolgate_classifier::config::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{OnceCell, Semaphore, oneshot};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::dot::{self, Link};
use crate::stats::UpstreamStatus;
use crate::wire;

/// UDP sockets per upstream: enough that one socket's receive queue is never
/// the bottleneck, few enough to keep their receiver tasks cheap.
const SOCKETS_PER_UPSTREAM: usize = 4;
/// Upstream TCP exchanges at once (only truncated answers use TCP).
const MAX_TCP: usize = 64;
/// Consecutive failures after which an upstream is marked down.
const DOWN_AFTER: u32 = 2;
/// How long a down upstream is skipped: doubles per further failure, up to this.
const MAX_DOWN: Duration = Duration::from_secs(30);
/// The receive buffer of a pooled socket (a UDP datagram can be this large even
/// when we asked for less).
const RECV_BUFFER: usize = 65_535;

/// Why an upstream exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream socket error")]
    Io,
    #[error("upstream TLS handshake failed (certificate or protocol)")]
    Tls,
    #[error("upstream answer did not parse or did not match the question")]
    BadAnswer,
    #[error("upstream answered with rcode {0}")]
    Rcode(u8),
    #[error("every upstream is marked down")]
    AllDown,
    #[error("no upstream is configured")]
    NoUpstream,
}

/// One question to ask upstream.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    pub name_wire: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    pub dnssec_ok: bool,
    pub cd: bool,
}

/// What happened to one query upstream, for the counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attempts {
    pub errors: u32,
    pub timeouts: u32,
    pub tcp: bool,
}

/// A query waiting for its answer, by ID.
#[derive(Debug)]
pub(crate) struct Waiter {
    name_wire: Box<[u8]>,
    qtype: u16,
    qclass: u16,
    tx: oneshot::Sender<Vec<u8>>,
}

pub(crate) type Pending = Mutex<HashMap<u16, Waiter, foldhash::fast::RandomState>>;

/// Files a waiter for `ask` under a random ID not in use, and returns the ID.
pub(crate) fn register(
    pending: &Pending,
    ask: Ask<'_>,
    tx: oneshot::Sender<Vec<u8>>,
) -> Result<u16, UpstreamError> {
    let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
    // 16 random IDs all taken: tens of thousands of queries are in flight.
    let id = (0..16)
        .map(|_| rand::random::<u16>())
        .find(|id| !pending.contains_key(id))
        .ok_or(UpstreamError::Io)?;
    pending.insert(
        id,
        Waiter {
            name_wire: ask.name_wire.into(),
            qtype: ask.qtype,
            qclass: ask.qclass,
            tx,
        },
    );
    Ok(id)
}

/// Hands an answer to the query waiting for its ID, if the question matches
/// too; anything else is dropped.
pub(crate) fn deliver(pending: &Pending, msg: &[u8]) {
    let Some(id) = wire::packet_id(msg) else {
        return;
    };
    if !wire::is_response(msg) {
        return;
    }
    let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
    let matches = pending
        .get(&id)
        .is_some_and(|w| wire::same_question(msg, &w.name_wire, w.qtype, w.qclass));
    if matches && let Some(w) = pending.remove(&id) {
        drop(pending);
        let _ = w.tx.send(msg.to_vec());
    }
}

/// A query for a stream (TCP, TLS): length-prefixed (RFC 1035 4.2.2), and
/// padded to whole blocks when `pad` (RFC 8467, for encrypted streams).
pub(crate) fn stream_query(id: u16, ask: Ask<'_>, pad: bool) -> Vec<u8> {
    let mut query = Vec::with_capacity(64 + ask.name_wire.len());
    wire::write_upstream_query(
        &mut query,
        id,
        ask.name_wire,
        ask.qtype,
        ask.qclass,
        ask.dnssec_ok,
        ask.cd,
    );
    if pad {
        wire::pad_query(&mut query, wire::QUERY_PAD_BLOCK);
    }
    // A name is at most 255 bytes and a padded query under 512: the length
    // always fits its two bytes.
    let len = u16::try_from(query.len()).unwrap_or(u16::MAX);
    let mut framed = Vec::with_capacity(2 + query.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&query);
    framed
}

#[derive(Debug)]
struct PooledSocket {
    socket: UdpSocket,
    pending: Pending,
}

/// Removes a pending ID however the wait ends (answer, timeout, cancellation).
pub(crate) struct PendingGuard<'a> {
    pub pending: &'a Pending,
    pub id: u16,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    /// As configured (`9.9.9.9:53`, `tls://9.9.9.9:853#dns.quad9.net`).
    label: String,
    /// Why the last attempt failed, for the health page; cleared by an answer.
    last_error: Mutex<Option<String>>,
    /// Why a TLS connection could not be opened (the certificate, say), taken
    /// into `last_error` when the attempt is marked failed.
    connect_error: Mutex<Option<String>>,
    /// DNS over TLS: the kept connection, and the name its certificate must carry.
    tls: Option<TlsServer>,
    pool: OnceCell<Box<[Arc<PooledSocket>]>>,
    next: AtomicUsize,
    failures: AtomicU32,
    /// Milliseconds since `Upstreams::epoch`; 0 = up.
    down_until_ms: AtomicU64,
}

#[derive(Debug)]
struct TlsServer {
    name: ServerName<'static>,
    /// The open connection, if any; locked while one is being opened, so
    /// concurrent queries wait for that one rather than opening their own.
    link: tokio::sync::Mutex<Option<Arc<Link>>>,
}

/// The configured upstream resolvers.
pub struct Upstreams {
    servers: Vec<Server>,
    /// Made when some upstream is `tls://`.
    connector: Option<TlsConnector>,
    timeout: Duration,
    tcp: Semaphore,
    probing: AtomicBool,
    epoch: Instant,
    /// Ends the receiver tasks.
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("servers", &self.servers)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Upstreams {
    /// `extra_ca`: a PEM file of CA certificates trusted for `tls://` upstreams
    /// besides the built-in roots.
    pub fn new(
        upstreams: &[Upstream],
        extra_ca: Option<&Path>,
        timeout: Duration,
        shutdown: CancellationToken,
    ) -> Upstreams {
        let connector = upstreams
            .iter()
            .any(|u| u.tls.is_some())
            .then(|| TlsConnector::from(dot::client_config(extra_ca)));
        Upstreams {
            connector,
            servers: upstreams
                .iter()
                .map(|u| Server {
                    addr: u.addr,
                    label: u.to_string(),
                    last_error: Mutex::new(None),
                    connect_error: Mutex::new(None),
                    tls: u.tls.as_ref().map(|tls| TlsServer {
                        name: dot::server_name(u.addr, tls),
                        link: tokio::sync::Mutex::new(None),
                    }),
                    pool: OnceCell::new(),
                    next: AtomicUsize::new(0),
                    failures: AtomicU32::new(0),
                    down_until_ms: AtomicU64::new(0),
                })
                .collect(),
            timeout,
            tcp: Semaphore::new(MAX_TCP),
            probing: AtomicBool::new(false),
            epoch: Instant::now(),
            shutdown,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn is_down(&self, s: &Server, now_ms: u64) -> bool {
        s.down_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// Whether every upstream is marked down now.
    pub fn all_down(&self) -> bool {
        let now = self.now_ms();
        !self.servers.is_empty() && self.servers.iter().all(|s| self.is_down(s, now))
    }

    /// Each upstream as the health page shows it.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        let now = self.now_ms();
        self.servers
            .iter()
            .map(|s| UpstreamStatus {
                upstream: s.label.clone(),
                up: !self.is_down(s, now),
                failures: s.failures.load(Ordering::Relaxed),
                last_error: s
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            })
            .collect()
    }

    fn mark(&self, s: &Server, outcome: Result<(), UpstreamError>) {
        let e = match outcome {
            // Every forwarded answer comes here: only an upstream that had
            // failed has anything to reset.
            Ok(()) => {
                if s.failures.swap(0, Ordering::Relaxed) != 0 {
                    s.down_until_ms.store(0, Ordering::Relaxed);
                    *s.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                return;
            }
            Err(e) => e,
        };
        let mut last_error = s.last_error.lock().unwrap_or_else(|p| p.into_inner());
        let why = s
            .connect_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        *last_error = Some(match why {
            Some(why) if matches!(e, UpstreamError::Tls | UpstreamError::Io) => {
                format!("{e}: {why}")
            }
            _ => e.to_string(),
        });
        drop(last_error);
        let failures = s.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= DOWN_AFTER {
            let shift = (failures - DOWN_AFTER).min(5);
            let down = Duration::from_secs(1 << shift).min(MAX_DOWN);
            let until = self.now_ms() + down.as_millis() as u64;
            if s.down_until_ms.swap(until, Ordering::Relaxed) == 0 {
                warn!(upstream = %s.addr, failures, "DNS upstream marked down");
            }
        }
    }

    /// Asks the upstreams in turn until one answers usefully or the deadline
    /// passes. The answer is returned as received (OPT and all).
    pub async fn query(
        &self,
        ask: Ask<'_>,
        attempts: &mut Attempts,
    ) -> Result<Vec<u8>, UpstreamError> {
        if self.servers.is_empty() {
            return Err(UpstreamError::NoUpstream);
        }
        let now = self.now_ms();
        let mut order: Vec<&Server> = self
            .servers
            .iter()
            .filter(|s| !self.is_down(s, now))
            .collect();
        let mut probe = None;
        if order.is_empty() {
            // Everyone is down: fail fast, except for one probe at a time, which
            // tries them all so a recovered upstream is noticed.
            if self.probing.swap(true, Ordering::AcqRel) {
                return Err(UpstreamError::AllDown);
            }
            probe = Some(ProbeGuard(&self.probing));
            order = self.servers.iter().collect();
        } else {
            order.extend(self.servers.iter().filter(|s| self.is_down(s, now)));
        }
        let deadline = Instant::now() + self.timeout;
        let mut last = UpstreamError::Timeout;
        let n = order.len();
        for (i, server) in order.into_iter().enumerate() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let slice = remaining / (n - i) as u32;
            let result = self.exchange(server, ask, slice, deadline, attempts).await;
            match result {
                Ok(answer) => {
                    match wire::rcode_of(&answer) {
                        // A resolver that cannot resolve (or will not) is no answer:
                        // another upstream may do better.
                        rcode @ (wire::RCODE_SERVFAIL
                        | wire::RCODE_REFUSED
                        | wire::RCODE_NOTIMP) => {
                            attempts.errors += 1;
                            self.mark(server, Err(UpstreamError::Rcode(rcode)));
                            last = UpstreamError::Rcode(rcode);
                        }
                        _ => {
                            self.mark(server, Ok(()));
                            drop(probe);
                            return Ok(answer);
                        }
                    }
                }
                Err(e) => {
                    if e == UpstreamError::Timeout {
                        attempts.timeouts += 1;
                    }
                    attempts.errors += 1;
                    debug!(upstream = %server.addr, error = %e, "upstream attempt failed");
                    self.mark(server, Err(e));
                    last = e;
                }
            }
        }
        drop(probe);
        Err(last)
    }

    async fn exchange(
        &self,
        server: &Server,
        ask: Ask<'_>,
        slice: Duration,
        deadline: Instant,
        attempts: &mut Attempts,
    ) -> Result<Vec<u8>, UpstreamError> {
        if let Some(tls) = &server.tls {
            return self.exchange_tls(server, tls, ask, slice).await;
        }
        let answer = self.exchange_udp(server, ask, slice).await?;
        if !wire::is_truncated(&answer) {
            return Ok(answer);
        }
        // Truncated: the whole answer only comes over TCP (RFC 7766 5).
        attempts.tcp = true;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let _permit = self.tcp.acquire().await.map_err(|_| UpstreamError::Io)?;
        match tokio::time::timeout(remaining, exchange_tcp(server.addr, ask)).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout),
        }
    }

    /// One question over the upstream's TLS connection, opening it if needed.
    async fn exchange_tls(
        &self,
        server: &Server,
        tls: &TlsServer,
        ask: Ask<'_>,
        wait: Duration,
    ) -> Result<Vec<u8>, UpstreamError> {
        let deadline = Instant::now() + wait;
        let (link, fresh) = self.link(server, tls, wait).await?;
        match link.ask(ask, wait).await {
            // The resolver closed a kept connection (idle, or restarted) before or
            // while the question went out: once more, on a new connection (the
            // one another question opened meanwhile, if any).
            Err(UpstreamError::Io) if !fresh && link.is_closed() => {
                let wait = deadline.saturating_duration_since(Instant::now());
                let (link, _) = self.link(server, tls, wait).await?;
                link.ask(ask, deadline.saturating_duration_since(Instant::now()))
                    .await
            }
            r => r,
        }
    }

    /// The upstream's open TLS connection, and whether it was opened now: the
    /// kept one unless it has closed.
    async fn link(
        &self,
        server: &Server,
        tls: &TlsServer,
        wait: Duration,
    ) -> Result<(Arc<Link>, bool), UpstreamError> {
        let mut kept = tls.link.lock().await;
        if let Some(link) = kept.as_ref().filter(|l| !l.is_closed()) {
            return Ok((Arc::clone(link), false));
        }
        let connector = self.connector.as_ref().ok_or(UpstreamError::Tls)?;
        let link = Link::open(
            server.addr,
            tls.name.clone(),
            connector,
            wait,
            &self.shutdown,
            &server.connect_error,
        )
        .await?;
        *kept = Some(Arc::clone(&link));
        Ok((link, true))
    }

    async fn pool<'s>(&self, server: &'s Server) -> Result<&'s [Arc<PooledSocket>], UpstreamError> {
        let pool = server
            .pool
            .get_or_try_init(|| async {
                let mut sockets = Vec::with_capacity(SOCKETS_PER_UPSTREAM);
                for _ in 0..SOCKETS_PER_UPSTREAM {
                    let local: SocketAddr = if server.addr.is_ipv4() {
                        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                    } else {
                        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                    };
                    let socket = UdpSocket::bind(local).await.map_err(|e| {
                        warn!(error = %e, "cannot open an upstream DNS socket");
                        UpstreamError::Io
                    })?;
                    socket.connect(server.addr).await.map_err(|e| {
                        warn!(upstream = %server.addr, error = %e, "cannot reach a DNS upstream");
                        UpstreamError::Io
                    })?;
                    let pooled = Arc::new(PooledSocket {
                        socket,
                        pending: Mutex::new(HashMap::default()),
                    });
                    tokio::spawn(receive(Arc::clone(&pooled), self.shutdown.clone()));
                    sockets.push(pooled);
                }
                Ok::<_, UpstreamError>(sockets.into_boxed_slice())
            })
            .await?;
        Ok(pool)
    }

    async fn exchange_udp(
        &self,
        server: &Server,
        ask: Ask<'_>,
        wait: Duration,
    ) -> Result<Vec<u8>, UpstreamError> {
        let pool = self.pool(server).await?;
        let sock = &pool[server.next.fetch_add(1, Ordering::Relaxed) % pool.len()];
        let (tx, rx) = oneshot::channel();
        let id = register(&sock.pending, ask, tx)?;
        let _guard = PendingGuard {
            pending: &sock.pending,
            id,
        };
        let mut buf = Vec::with_capacity(64 + ask.name_wire.len());
        wire::write_upstream_query(
            &mut buf,
            id,
            ask.name_wire,
            ask.qtype,
            ask.qclass,
            ask.dnssec_ok,
            ask.cd,
        );
        sock.socket
            .send(&buf)
            .await
            .map_err(|_| UpstreamError::Io)?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(UpstreamError::Io),
            Err(_) => Err(UpstreamError::Timeout),
        }
    }
}

struct ProbeGuard<'a>(&'a AtomicBool);

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A pooled socket's receiver: hands each answer to the query waiting for it.
async fn receive(sock: Arc<PooledSocket>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sock.socket.recv(&mut buf) => match r {
                Ok(n) => n,
                Err(e) => {
                    // ICMP port unreachable shows up here on a connected socket:
                    // the waiting query times out and the upstream is marked.
                    debug!(error = %e, "upstream socket receive error");
                    continue;
                }
            },
        };
        deliver(&sock.pending, &buf[..n]);
    }
}

/// One query over a fresh TCP connection (truncated answers are rare enough
/// that a pool would mostly hold idle connections).
async fn exchange_tcp(addr: SocketAddr, ask: Ask<'_>) -> Result<Vec<u8>, UpstreamError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|_| UpstreamError::Io)?;
    let _ = stream.set_nodelay(true);
    let id: u16 = rand::random();
    stream
        .write_all(&stream_query(id, ask, false))
        .await
        .map_err(|_| UpstreamError::Io)?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|_| UpstreamError::Io)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|_| UpstreamError::Io)?;
    if wire::packet_id(&answer) != Some(id)
        || !wire::is_response(&answer)
        || !wire::same_question(&answer, ask.name_wire, ask.qtype, ask.qclass)
    {
        return Err(UpstreamError::BadAnswer);
    }
    Ok(answer)
}
