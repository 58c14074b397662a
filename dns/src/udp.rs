//! The UDP socket loop: one OS thread per socket, batched system calls.
//!
//! A DNS query over UDP costs two system calls at least (receive, send), and on
//! a filter box they are most of the CPU a cached answer costs. So each loop
//! takes up to [`BATCH`] datagrams with one `recvmmsg` (blocking until the
//! first, then whatever is queued), answers them into per-slot buffers that
//! live as long as the loop, and sends the answers with one `sendmmsg`. A quiet
//! network sees batches of one: no waiting for a batch to fill, no added
//! latency. A query that must go upstream becomes a task on the tokio runtime,
//! which sends its answer itself.
//!
//! The loop is a thread, not a task: it blocks in the kernel between packets
//! (with a receive timeout, so it sees the cancellation token within
//! [`POLL`]), and the batching headers `nix` preallocates are not `Send`.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

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
    let fd = socket.as_raw_fd();
    let mut bufs = vec![0u8; BATCH * QUERY_BUFFER];
    let mut lens = [0usize; BATCH];
    let mut peers = [None::<SocketAddr>; BATCH];
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut reply_to = ArrayVec::<SocketAddr, BATCH>::new();
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    cx.filter.hold_events_on_this_thread();
    while !cx.shutdown.is_cancelled() {
        let n = match receive(fd, &mut recv_headers, &mut bufs, &mut lens, &mut peers) {
            Ok(n) => n,
            Err(e) if is_transient(&e) => {
                // Quiet for a while: send what is held.
                cx.filter.flush_events(std::time::Instant::now(), true);
                continue;
            }
            Err(e) => {
                // ICMP errors from earlier sends surface here; nothing to do.
                debug!(error = %e, "DNS UDP receive error");
                continue;
            }
        };
        reply_to.clear();
        let received = std::time::Instant::now();
        for (i, peer) in peers.iter().take(n).enumerate() {
            let Some(peer) = *peer else { continue };
            let packet = &bufs[i * QUERY_BUFFER..i * QUERY_BUFFER + lens[i]];
            let out = &mut outs[reply_to.len()];
            match cx
                .filter
                .answer_now_at(packet, peer.ip(), Transport::Udp, out, received)
            {
                Step::Reply => reply_to.push(peer),
                Step::Silent => {}
                Step::Deferred(d) => defer(&cx, &socket, packet, peer, d, out),
            }
        }
        send_all(fd, &mut send_headers, &outs, &reply_to);
        cx.filter.flush_events(received, false);
    }
    cx.filter.flush_events(std::time::Instant::now(), true);
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
