//! Counters for the dashboard: relaxed atomics, bumped on the hot path without
//! locks, read as a [`ProxyStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::error::Fault;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub blocked: AtomicU64,
    pub flagged: AtomicU64,
    pub connect_tunnels: AtomicU64,
    pub active_tunnels: AtomicU64,
    pub transparent_tls: AtomicU64,
    pub active_connections: AtomicU64,
    pub connections: AtomicU64,
    pub refused_connections: AtomicU64,
    pub unknown_clients: AtomicU64,
    pub auth_challenges: AtomicU64,
    pub errors_client: AtomicU64,
    pub errors_upstream: AtomicU64,
    pub errors_ours: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub events_lost: AtomicU64,
}

impl Counters {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(c: &AtomicU64) {
        c.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn error(&self, fault: Fault) {
        Counters::inc(match fault {
            Fault::Client => &self.errors_client,
            Fault::Upstream => &self.errors_upstream,
            Fault::Ours => &self.errors_ours,
        });
    }

    pub fn snapshot(&self) -> ProxyStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProxyStats {
            requests: g(&self.requests),
            blocked: g(&self.blocked),
            flagged: g(&self.flagged),
            connect_tunnels: g(&self.connect_tunnels),
            active_tunnels: g(&self.active_tunnels),
            transparent_tls: g(&self.transparent_tls),
            active_connections: g(&self.active_connections),
            connections: g(&self.connections),
            refused_connections: g(&self.refused_connections),
            unknown_clients: g(&self.unknown_clients),
            auth_challenges: g(&self.auth_challenges),
            errors: ErrorsBySide {
                client: g(&self.errors_client),
                upstream: g(&self.errors_upstream),
                ours: g(&self.errors_ours),
            },
            bytes_up: g(&self.bytes_up),
            bytes_down: g(&self.bytes_down),
            events_lost: g(&self.events_lost),
        }
    }
}

/// Errors counted by whose fault they were.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorsBySide {
    /// Bad or refused requests (400, 403 for ports/loops, 413, 431, ...).
    pub client: u64,
    /// Upstreams down, slow or broken (502, 504), downloads over the cap.
    pub upstream: u64,
    /// Our own failures (500).
    pub ours: u64,
}

/// The proxy's counters since start, for the dashboard (`GET /api/proxy/stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProxyStats {
    /// Requests seen (HTTP requests and CONNECTs; transparent TLS connections).
    pub requests: u64,
    pub blocked: u64,
    pub flagged: u64,
    /// CONNECT tunnels opened since start.
    pub connect_tunnels: u64,
    /// Tunnels (CONNECT, WebSocket, transparent TLS) open now.
    pub active_tunnels: u64,
    /// Transparent TLS connections (read by SNI) since start.
    pub transparent_tls: u64,
    /// Client connections open now.
    pub active_connections: u64,
    /// Client connections accepted since start.
    pub connections: u64,
    /// Connections refused at accept: over the per-client cap.
    pub refused_connections: u64,
    /// Requests from addresses outside the school's networks (403).
    pub unknown_clients: u64,
    /// 407 challenges sent (proxy authentication).
    pub auth_challenges: u64,
    pub errors: ErrorsBySide,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Events the pipeline could not take (it logs why).
    pub events_lost: u64,
}
