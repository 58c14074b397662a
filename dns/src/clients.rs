//! Per-client state: the rate limit's token bucket and the tunnelling counter.
//!
//! One sharded table keyed by client address, so a query costs one lookup for
//! both. Only clients in the school's networks get an entry (the rest are refused
//! before this), and the table is bounded anyway: a full shard first drops idle
//! clients, and a client that still finds no room is admitted untracked, which
//! errs on the side of answering.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// How long the tunnelling heuristic counts suspicious names for one client.
pub const TUNNEL_WINDOW_MS: u64 = 60_000;
/// Suspicious names within the window from which a client's suspicious queries
/// are flagged: a tunnel moving even 1 KB/s sends far more; a device doing an
/// occasional hashed lookup sends far fewer.
pub const TUNNEL_THRESHOLD: u32 = 20;
/// Most clients tracked at once (a trust-sized network, with room to spare).
const MAX_CLIENTS: usize = 1 << 18;
/// A client not seen for this long may be forgotten when room is needed.
const IDLE_MS: u64 = 120_000;
const SHARDS: usize = 32;

#[derive(Clone, Copy, Debug)]
struct ClientState {
    tokens: f64,
    last_ms: u64,
    window_start_ms: u64,
    suspicious: u32,
}

/// The per-client table.
#[derive(Debug)]
pub struct ClientTable {
    shards: Box<[Mutex<HashMap<IpAddr, ClientState, foldhash::fast::RandomState>>]>,
    /// Tokens per millisecond; zero turns the limit off.
    rate_per_ms: f64,
    /// Bucket size: one second of queries, so a burst at page load passes.
    burst: f64,
}

impl ClientTable {
    pub fn new(rate_limit_qps: u32) -> ClientTable {
        ClientTable {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            rate_per_ms: f64::from(rate_limit_qps) / 1000.0,
            burst: f64::from(rate_limit_qps.max(1)),
        }
    }

    /// Takes a token for one query from `ip` at `now_ms`: `false` when the
    /// client is over its rate.
    pub fn admit(&self, ip: IpAddr, now_ms: u64) -> bool {
        if self.rate_per_ms == 0.0 {
            return true;
        }
        let burst = self.burst;
        self.with_state(ip, now_ms, |state| {
            let elapsed = now_ms.saturating_sub(state.last_ms) as f64;
            state.last_ms = state.last_ms.max(now_ms);
            state.tokens = (state.tokens + elapsed * self.rate_per_ms).min(burst);
            if state.tokens >= 1.0 {
                state.tokens -= 1.0;
                true
            } else {
                false
            }
        })
        .unwrap_or(true)
    }

    /// Counts a name that looked like tunnel data (and was not in the cache):
    /// `true` once the client has sent [`TUNNEL_THRESHOLD`] of them within the
    /// window, so this query is flagged.
    pub fn note_suspicious(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.with_state(ip, now_ms, |state| {
            if now_ms.saturating_sub(state.window_start_ms) >= TUNNEL_WINDOW_MS {
                state.window_start_ms = now_ms;
                state.suspicious = 0;
            }
            state.suspicious = state.suspicious.saturating_add(1);
            state.suspicious >= TUNNEL_THRESHOLD
        })
        .unwrap_or(false)
    }

    /// Runs `f` on the client's state, creating it if there is room (`None`
    /// when there is not).
    fn with_state<T>(
        &self,
        ip: IpAddr,
        now_ms: u64,
        f: impl FnOnce(&mut ClientState) -> T,
    ) -> Option<T> {
        let shard = &self.shards[shard_of(&ip)];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = map.get_mut(&ip) {
            return Some(f(state));
        }
        if map.len() >= MAX_CLIENTS / SHARDS {
            map.retain(|_, s| now_ms.saturating_sub(s.last_ms) < IDLE_MS);
            if map.len() >= MAX_CLIENTS / SHARDS {
                return None;
            }
        }
        let state = map.entry(ip).or_insert(ClientState {
            tokens: self.burst,
            last_ms: now_ms,
            window_start_ms: now_ms,
            suspicious: 0,
        });
        Some(f(state))
    }
}

fn shard_of(ip: &IpAddr) -> usize {
    let x = match ip {
        IpAddr::V4(v4) => u64::from(u32::from(*v4)),
        IpAddr::V6(v6) => {
            let b = v6.octets();
            u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]])
        }
    };
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 59) as usize % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let t = ClientTable::new(10);
        let passed = (0..15).filter(|_| t.admit(IP, 1_000)).count();
        assert_eq!(passed, 10, "one second of burst");
        assert!(!t.admit(IP, 1_050));
        assert!(t.admit(IP, 1_100), "a token every 100 ms");
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
        assert!(t.admit(other, 1_100), "buckets are per client");
    }

    #[test]
    fn zero_means_no_limit() {
        let t = ClientTable::new(0);
        assert!((0..10_000).all(|_| t.admit(IP, 0)));
    }

    #[test]
    fn tunnel_needs_volume_within_the_window() {
        let t = ClientTable::new(0);
        for i in 0..TUNNEL_THRESHOLD - 1 {
            assert!(!t.note_suspicious(IP, u64::from(i)));
        }
        assert!(t.note_suspicious(IP, 100));
        // A new window starts the count again.
        assert!(!t.note_suspicious(IP, 100 + TUNNEL_WINDOW_MS));
    }
}
