//! The UDP socket loop: one OS thread per socket, batched system calls when busy.
//!
//! A DNS query over UDP costs two system calls at least (receive, send), and on
//! a filter box they are most of the CPU a cached answer costs. When datagrams
//! queue up, a loop takes up to [`BATCH`] of them with one `recvmmsg` (blocking
//! until the first, then whatever is queued), answers them into per-slot
//! buffers that live as long as the loop, and sends the answers with one
//! `sendmmsg`; no waiting for a batch to fill, so no added latency. When they
//! do not queue up, batching costs more than it saves, and the loop takes one
//! datagram per call (see [`run_loop`]). A query that must go upstream becomes
//! a task on the tokio runtime, which sends its answer itself.
//!
//! The loop is a thread, not a task: it blocks in the kernel between packets
//! (with a receive timeout, so it sees the cancellation token within
//! [`POLL`]), and the batching headers `nix` preallocates are not `Send`.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg, sendto,
};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::filter::{DnsFilter, Step, Transport};
use crate::stats::C;
use crate::wire;

/// Datagrams per system call. Past 32 the saving per packet is negligible and
/// the first answer of a batch waits longer for the last query.
pub const BATCH: usize = 32;
/// Largest UDP query read; a longer datagram is cut and then fails to parse.
pub const QUERY_BUFFER: usize = 4096;
/// How often a blocked loop looks at the cancellation token.
pub const POLL: Duration = Duration::from_millis(100);
/// Longest a send may block when the socket's send buffer is full.
const SEND_TIMEOUT: Duration = Duration::from_millis(200);

/// What a loop needs besides its socket.
#[derive(Debug, Clone)]
pub struct LoopContext {
    pub filter: Arc<DnsFilter>,
    pub shutdown: CancellationToken,
    pub runtime: Handle,
    pub tracker: TaskTracker,
    /// Bounds the queries waiting on upstream, over all loops.
    pub pending: Arc<Semaphore>,
}

/// Runs one socket's loop until the token is cancelled.
///
/// Batching pays only when datagrams queue up: `sendmmsg` and `recvmmsg` copy a
/// header and an iovec per message, which costs more than the system call they
/// save when a batch holds one datagram. So the loop starts with one datagram
/// per call, switches to batches when it sees more than `dns.udp_batch_above_qps`
/// datagrams a second, and back when its batches average under [`QUIET_BATCH`].
pub fn run_loop(socket: UdpSocket, cx: LoopContext) {
    if let Err(e) = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_read_timeout(Some(POLL)))
        .and_then(|()| socket.set_write_timeout(Some(SEND_TIMEOUT)))
    {
        warn!(error = %e, "DNS UDP socket cannot be set up; this loop does not run");
        return;
    }
    let socket = Arc::new(socket);
    let mut state = Loop::new();
    cx.filter.hold_events_on_this_thread();
    let mut batched = false;
    while !cx.shutdown.is_cancelled() {
        batched = if batched {
            state.batched(&socket, &cx)
        } else {
            state.single(&socket, &cx)
        };
    }
    cx.filter.flush_events(Instant::now(), true);
}

/// Average batch under which a batching loop goes back to single datagrams.
pub const QUIET_BATCH: f64 = 1.5;
/// Datagrams (single mode) or batches (batch mode) between two looks at the rate.
const CHECK_EVERY: u32 = 1024;

/// A loop's buffers, kept for its whole life.
struct Loop {
    bufs: Vec<u8>,
    lens: [usize; BATCH],
    peers: [Option<SocketAddr>; BATCH],
    outs: Vec<Vec<u8>>,
    reply_to: ArrayVec<SocketAddr, BATCH>,
    recv_headers: MultiHeaders<SockaddrStorage>,
    send_headers: MultiHeaders<SockaddrStorage>,
}

impl Loop {
    fn new() -> Loop {
        Loop {
            bufs: vec![0u8; BATCH * QUERY_BUFFER],
            lens: [0; BATCH],
            peers: [None; BATCH],
            outs: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
            reply_to: ArrayVec::new(),
            recv_headers: MultiHeaders::preallocate(BATCH, None),
            send_headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// One datagram per call until the rate says to batch; returns `true` then.
    fn single(&mut self, socket: &Arc<UdpSocket>, cx: &LoopContext) -> bool {
        let since = Instant::now();
        let mut seen = 0u32;
        while !cx.shutdown.is_cancelled() {
            let (n, peer) = match socket.recv_from(&mut self.bufs[..QUERY_BUFFER]) {
                Ok(r) => r,
                Err(e) => {
                    quiet_or_error(&e, cx);
                    return false;
                }
            };
            let received = Instant::now();
            let packet = &self.bufs[..n];
            let out = &mut self.outs[0];
            match cx
                .filter
                .answer_now_at(packet, peer.ip(), Transport::Udp, out, received)
            {
                Step::Reply => {
                    if let Err(e) = socket.send_to(out, peer) {
                        debug!(error = %e, %peer, "DNS UDP send failed");
                    }
                }
                Step::Silent => {}
                Step::Deferred(d) => defer(cx, socket, packet, peer, d, out),
            }
            cx.filter.flush_events(received, false);
            seen += 1;
            if seen == CHECK_EVERY {
                let secs = received.saturating_duration_since(since).as_secs_f64();
                return f64::from(seen) > f64::from(cx.filter.udp_batch_above_qps()) * secs;
            }
        }
        false
    }

    /// Batches until they get small; returns `false` then.
    fn batched(&mut self, socket: &Arc<UdpSocket>, cx: &LoopContext) -> bool {
        let fd = socket.as_raw_fd();
        let (mut calls, mut datagrams) = (0u32, 0u32);
        while !cx.shutdown.is_cancelled() {
            let n = match receive(
                fd,
                &mut self.recv_headers,
                &mut self.bufs,
                &mut self.lens,
                &mut self.peers,
            ) {
                Ok(n) => n,
                Err(e) => {
                    quiet_or_error(&e, cx);
                    return false;
                }
            };
            self.reply_to.clear();
            cx.filter.counters().add(C::UdpBatched, n as u64);
            let received = Instant::now();
            for (i, peer) in self.peers.iter().take(n).enumerate() {
                let Some(peer) = *peer else { continue };
                let packet = &self.bufs[i * QUERY_BUFFER..i * QUERY_BUFFER + self.lens[i]];
                let out = &mut self.outs[self.reply_to.len()];
                match cx
                    .filter
                    .answer_now_at(packet, peer.ip(), Transport::Udp, out, received)
                {
                    Step::Reply => self.reply_to.push(peer),
                    Step::Silent => {}
                    Step::Deferred(d) => defer(cx, socket, packet, peer, d, out),
                }
            }
            send_all(fd, &mut self.send_headers, &self.outs, &self.reply_to);
            cx.filter.flush_events(received, false);
            calls += 1;
            datagrams += n as u32;
            if calls == CHECK_EVERY {
                return f64::from(datagrams) / f64::from(calls) >= QUIET_BATCH;
            }
        }
        true
    }
}

/// A receive that timed out (quiet: send the events held) or failed.
fn quiet_or_error(e: &io::Error, cx: &LoopContext) {
    if is_transient(e) {
        cx.filter.flush_events(Instant::now(), true);
    } else {
        // ICMP errors from earlier sends surface here; nothing to do.
        debug!(error = %e, "DNS UDP receive error");
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Hands a query to the runtime; past the bound, answers SERVFAIL right away.
fn defer(
    cx: &LoopContext,
    socket: &Arc<UdpSocket>,
    packet: &[u8],
    peer: SocketAddr,
    d: Box<crate::filter::Deferred>,
    scratch: &mut Vec<u8>,
) {
    match Arc::clone(&cx.pending).try_acquire_owned() {
        Ok(permit) => {
            let (filter, socket) = (Arc::clone(&cx.filter), Arc::clone(socket));
            cx.tracker.spawn_on(
                async move {
                    let mut out = Vec::with_capacity(512);
                    filter.answer_later(*d, &mut out).await;
                    send_one(&socket, &out, peer);
                    drop(permit);
                },
                &cx.runtime,
            );
        }
        Err(_) => {
            cx.filter.counters().inc(C::Servfail);
            if let Ok(q) = wire::parse_query(packet) {
                wire::begin_answer(scratch, packet, &q, wire::RCODE_SERVFAIL);
                send_one(socket, scratch, peer);
            }
        }
    }
}

/// Receives up to [`BATCH`] datagrams: blocks for the first (up to [`POLL`]),
/// takes the rest only if already queued.
fn receive(
    fd: std::os::fd::RawFd,
    headers: &mut MultiHeaders<SockaddrStorage>,
    bufs: &mut [u8],
    lens: &mut [usize; BATCH],
    peers: &mut [Option<SocketAddr>; BATCH],
) -> io::Result<usize> {
    // A plain array (no Drop), since each slice borrows for as long as the
    // headers do.
    let mut chunks = bufs.chunks_mut(QUERY_BUFFER);
    let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
        std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or(&mut []))]);
    let results = recvmmsg(fd, headers, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None)
        .map_err(io::Error::from)?;
    let mut n = 0;
    for r in results {
        if n == BATCH {
            break;
        }
        lens[n] = r.bytes;
        peers[n] = r.address.as_ref().and_then(socket_addr);
        n += 1;
    }
    Ok(n)
}

fn socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    s.as_sockaddr_in6().map(|v6| {
        let ip = v6.ip();
        // A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d; the policy
        // maps them back (canonical_ip), the reply goes to the address as seen.
        SocketAddr::V6(SocketAddrV6::new(
            ip,
            v6.port(),
            v6.flowinfo(),
            v6.scope_id(),
        ))
    })
}

/// Sends the batch's answers with as few `sendmmsg` calls as the kernel allows;
/// what it refuses outright is sent one by one.
fn send_all(
    fd: std::os::fd::RawFd,
    headers: &mut MultiHeaders<SockaddrStorage>,
    outs: &[Vec<u8>],
    to: &[SocketAddr],
) {
    let mut sent = 0;
    while sent < to.len() {
        let iovs: ArrayVec<[IoSlice<'_>; 1], BATCH> = outs[sent..to.len()]
            .iter()
            .map(|o| [IoSlice::new(o)])
            .collect();
        let addrs: ArrayVec<Option<SockaddrStorage>, BATCH> = to[sent..]
            .iter()
            .map(|a| Some(SockaddrStorage::from(*a)))
            .collect();
        let none: [ControlMessage<'_>; 0] = [];
        match sendmmsg(fd, headers, iovs.iter(), addrs, none, MsgFlags::empty()) {
            Ok(results) => {
                let n = results.count();
                if n == 0 {
                    break;
                }
                sent += n;
            }
            Err(e) => {
                // One bad destination fails the call: skip it, send the rest.
                debug!(error = %e, peer = %to[sent], "DNS UDP send failed");
                sent += 1;
            }
        }
    }
}

/// Sends one answer without blocking: a full send buffer loses it, as the
/// network might have (the client asks again).
pub fn send_one(socket: &UdpSocket, out: &[u8], peer: SocketAddr) {
    let addr = SockaddrStorage::from(peer);
    if let Err(e) = sendto(socket.as_raw_fd(), out, &addr, MsgFlags::MSG_DONTWAIT) {
        debug!(error = %e, %peer, "DNS UDP send failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_nix() {
        for a in ["127.0.0.2:5353", "[::1]:53", "[fe80::1%2]:53"] {
            let a: SocketAddr = a.parse().expect("addr");
            let s = SockaddrStorage::from(a);
            assert_eq!(socket_addr(&s), Some(a));
        }
    }
}
