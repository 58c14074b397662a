//! Counters for the dashboard's health page: what the filter answered and what
//! went wrong, since start.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// A snapshot of the DNS filter's counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DnsStats {
    /// Every packet that parsed as a query, from any client.
    pub queries: u64,
    pub udp: u64,
    pub tcp: u64,
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
    /// From addresses outside every configured network (never an open resolver).
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
    /// Events the pipeline could not take (queue full and spool failed).
    pub events_lost: u64,
    /// TCP connections refused because the connection limit was reached.
    pub tcp_rejected: u64,
    /// Answers held in the cache now.
    pub cache_entries: u64,
}

/// The live counters (relaxed atomics: they are statistics, not synchronisation).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub queries: AtomicU64,
    pub udp: AtomicU64,
    pub tcp: AtomicU64,
    pub blocked: AtomicU64,
    pub flagged: AtomicU64,
    pub rewritten: AtomicU64,
    pub cached: AtomicU64,
    pub forwarded: AtomicU64,
    pub refused: AtomicU64,
    pub rate_limited: AtomicU64,
    pub malformed: AtomicU64,
    pub servfail: AtomicU64,
    pub stale: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub upstream_timeouts: AtomicU64,
    pub tcp_fallbacks: AtomicU64,
    pub tunnel_suspects: AtomicU64,
    pub events_sampled_out: AtomicU64,
    pub events_lost: AtomicU64,
    pub tcp_rejected: AtomicU64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self, cache_entries: usize) -> DnsStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DnsStats {
            queries: g(&self.queries),
            udp: g(&self.udp),
            tcp: g(&self.tcp),
            blocked: g(&self.blocked),
            flagged: g(&self.flagged),
            rewritten: g(&self.rewritten),
            cached: g(&self.cached),
            forwarded: g(&self.forwarded),
            refused: g(&self.refused),
            rate_limited: g(&self.rate_limited),
            malformed: g(&self.malformed),
            servfail: g(&self.servfail),
            stale: g(&self.stale),
            upstream_errors: g(&self.upstream_errors),
            upstream_timeouts: g(&self.upstream_timeouts),
            tcp_fallbacks: g(&self.tcp_fallbacks),
            tunnel_suspects: g(&self.tunnel_suspects),
            events_sampled_out: g(&self.events_sampled_out),
            events_lost: g(&self.events_lost),
            tcp_rejected: g(&self.tcp_rejected),
            cache_entries: cache_entries as u64,
        }
    }
}
