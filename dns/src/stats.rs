//! Counters for the dashboard's health page: what the filter answered and what
//! went wrong, since start.
//!
//! Every query bumps several counters, from every core at once. One shared
//! atomic per counter would bounce its cache line between the cores on every
//! query, so each thread counts in its own slot (cache-line aligned) and a
//! snapshot adds the slots up.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;

/// A snapshot of the DNS filter's counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DnsStats {
    /// Every packet that parsed as a query, from any client.
    pub queries: u64,
    pub udp: u64,
    pub tcp: u64,
    /// UDP queries that arrived in batches (`recvmmsg`): how busy the loops are.
    pub udp_batched: u64,
    /// Answered with the block page or NXDOMAIN (bypass canaries included).
    pub blocked: u64,
    /// Allowed but recorded for review (classifier flags, tunnelling heuristic).
    pub flagged: u64,
    /// Answered with a SafeSearch / YouTube restriction CNAME.
    pub rewritten: u64,
    /// Answered from the cache without going upstream (fresh answers).
    pub cached: u64,
    /// Sent to an upstream resolver.
    pub forwarded: u64,
    /// From addresses outside every configured network (never an open
    /// resolver), or CHAOS / zone-transfer queries.
    pub refused: u64,
    /// Over the per-client rate limit: dropped.
    pub rate_limited: u64,
    /// Packets that were not a usable query (FORMERR / NOTIMP / silence).
    pub malformed: u64,
    /// Answered SERVFAIL: every upstream failed and nothing stale was cached.
    pub servfail: u64,
    /// Answered from the cache past the TTL because upstream failed (RFC 8767).
    pub stale: u64,
    /// Upstream exchanges that failed (timeouts included).
    pub upstream_errors: u64,
    pub upstream_timeouts: u64,
    /// Truncated UDP answers from upstream retried over TCP.
    pub tcp_fallbacks: u64,
    /// Queries flagged by the DNS-tunnelling heuristic.
    pub tunnel_suspects: u64,
    /// Allowed queries not logged because of `allowed_sample`.
    pub events_sampled_out: u64,
    /// Allowed queries not logged because the device asked for the same name
    /// within `allowed_repeat_secs`.
    pub events_repeats_skipped: u64,
    /// Events the pipeline could not take (queue full and spool failed).
    pub events_lost: u64,
    /// TCP connections refused because a connection limit was reached.
    pub tcp_rejected: u64,
    /// Answers held in the cache now.
    pub cache_entries: u64,
    /// Each upstream resolver, in the configured order.
    pub upstreams: Vec<UpstreamStatus>,
}

/// One upstream resolver on the health page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UpstreamStatus {
    /// As configured (`tls://9.9.9.9:853#dns.quad9.net`).
    pub upstream: String,
    /// Not marked down (it is asked; a down one only when every one is down).
    pub up: bool,
    /// Failed attempts since the last answer.
    pub failures: u32,
    /// Why the last attempt failed, until an answer comes.
    pub last_error: Option<String>,
}

/// One counter of [`DnsStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum C {
    Queries,
    Udp,
    Tcp,
    UdpBatched,
    Blocked,
    Flagged,
    Rewritten,
    Cached,
    Forwarded,
    Refused,
    RateLimited,
    Malformed,
    Servfail,
    Stale,
    UpstreamErrors,
    UpstreamTimeouts,
    TcpFallbacks,
    TunnelSuspects,
    EventsSampledOut,
    EventsRepeatsSkipped,
    EventsLost,
    TcpRejected,
}

const COUNTERS: usize = C::TcpRejected as usize + 1;
/// Slots: more than the cores of a school's filter box, so threads rarely share.
const SLOTS: usize = 16;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot([AtomicU64; COUNTERS]);

/// The live counters (relaxed atomics: statistics, not synchronisation).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    slots: [Slot; SLOTS],
}

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
}

impl Counters {
    pub fn add(&self, c: C, n: u64) {
        let slot = MY_SLOT.with(|s| *s);
        self.slots[slot].0[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(&self, c: C) {
        self.add(c, 1);
    }

    fn sum(&self, c: C) -> u64 {
        self.slots
            .iter()
            .map(|s| s.0[c as usize].load(Ordering::Relaxed))
            .sum()
    }

    pub fn snapshot(&self, cache_entries: usize, upstreams: Vec<UpstreamStatus>) -> DnsStats {
        let g = |c| self.sum(c);
        DnsStats {
            queries: g(C::Queries),
            udp: g(C::Udp),
            tcp: g(C::Tcp),
            udp_batched: g(C::UdpBatched),
            blocked: g(C::Blocked),
            flagged: g(C::Flagged),
            rewritten: g(C::Rewritten),
            cached: g(C::Cached),
            forwarded: g(C::Forwarded),
            refused: g(C::Refused),
            rate_limited: g(C::RateLimited),
            malformed: g(C::Malformed),
            servfail: g(C::Servfail),
            stale: g(C::Stale),
            upstream_errors: g(C::UpstreamErrors),
            upstream_timeouts: g(C::UpstreamTimeouts),
            tcp_fallbacks: g(C::TcpFallbacks),
            tunnel_suspects: g(C::TunnelSuspects),
            events_sampled_out: g(C::EventsSampledOut),
            events_repeats_skipped: g(C::EventsRepeatsSkipped),
            events_lost: g(C::EventsLost),
            tcp_rejected: g(C::TcpRejected),
            cache_entries: cache_entries as u64,
            upstreams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let c = std::sync::Arc::new(Counters::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = std::sync::Arc::clone(&c);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.inc(C::Queries);
                    }
                    c.add(C::UpstreamErrors, 2);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let s = c.snapshot(7, Vec::new());
        assert_eq!(
            (s.queries, s.upstream_errors, s.cache_entries),
            (4000, 8, 7)
        );
    }
}
