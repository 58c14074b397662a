//! Per-client state: the rate limit's token bucket and the tunnelling counter.
//!
//! Each client's state is two atomic words, updated without a lock; a shared,
//! sharded table finds (or creates) a client's state, and each thread keeps the
//! handles it has used, so a query normally touches only its own client's
//! words. A lock per query would make two cores queue behind each other
//! whenever one busy client (a NAT, a forwarding server, a load generator)
//! sends to both.
//!
//! Only clients in the school's networks get an entry (the rest are refused
//! before this), and the table is bounded anyway: a full shard first drops
//! clients idle for [`IDLE_MS`], and a client that still finds no room is
//! admitted untracked, which errs on the side of answering.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How long the tunnelling heuristic counts suspicious names for one client.
pub const TUNNEL_WINDOW_MS: u64 = 60_000;
/// Suspicious names within the window from which a client's suspicious queries
/// are flagged: a tunnel moving even 1 KB/s sends far more; a device doing an
/// occasional hashed lookup sends far fewer.
pub const TUNNEL_THRESHOLD: u32 = 20;
/// The highest rate the bucket can express (its state is packed in 64 bits):
/// a configured rate above it means "this much".
pub const MAX_QPS: u32 = 4_000_000;
/// Most clients tracked at once (a trust-sized network, with room to spare).
const MAX_CLIENTS: usize = 1 << 18;
/// A client not seen for this long may be forgotten when room is needed.
const IDLE_MS: u64 = 120_000;
const SHARDS: usize = 32;
/// Handles one thread keeps before it starts again.
const HANDLES_PER_THREAD: usize = 1 << 13;

/// One client's state.
#[derive(Debug)]
struct ClientState {
    /// `last_ms` (u32, wrapping) in the high half, tokens in thousandths in the
    /// low half.
    bucket: AtomicU64,
    /// Tunnelling window start (u32 ms, wrapping) high, suspicious count low.
    tunnel: AtomicU64,
}

fn pack(hi: u32, lo: u32) -> u64 {
    (u64::from(hi) << 32) | u64::from(lo)
}

fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

type Shard = Mutex<HashMap<IpAddr, Arc<ClientState>, foldhash::fast::RandomState>>;

/// The per-client table.
#[derive(Debug)]
pub struct ClientTable {
    id: u64,
    shards: Box<[Shard]>,
    /// Thousandths of a token per millisecond (= queries per second); zero
    /// turns the limit off.
    rate: u64,
    /// Bucket size in thousandths: one second of queries, so a burst at page
    /// load passes.
    burst: u64,
}

static NEXT_TABLE: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The client handles this thread has used, by table and address.
    static HANDLES: RefCell<HashMap<(u64, IpAddr), Arc<ClientState>, foldhash::fast::RandomState>> =
        RefCell::new(HashMap::default());
}

impl ClientTable {
    pub fn new(rate_limit_qps: u32) -> ClientTable {
        let qps = u64::from(rate_limit_qps.min(MAX_QPS));
        ClientTable {
            id: NEXT_TABLE.fetch_add(1, Ordering::Relaxed),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            rate: qps,
            burst: qps.max(1) * 1000,
        }
    }

    /// The state of `ip`, from this thread's handles or the shared table.
    fn state(&self, ip: IpAddr, now_ms: u64) -> Option<Arc<ClientState>> {
        let key = (self.id, ip);
        if let Some(s) = HANDLES.with(|h| h.borrow().get(&key).cloned()) {
            return Some(s);
        }
        let state = {
            let mut map = self.shards[shard_of(&ip)]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match map.get(&ip) {
                Some(s) => Arc::clone(s),
                None => {
                    if map.len() >= MAX_CLIENTS / SHARDS {
                        map.retain(|_, s| {
                            let (last, _) = unpack(s.bucket.load(Ordering::Relaxed));
                            u64::from((now_ms as u32).wrapping_sub(last)) < IDLE_MS
                        });
                        if map.len() >= MAX_CLIENTS / SHARDS {
                            return None;
                        }
                    }
                    let s = Arc::new(ClientState {
                        bucket: AtomicU64::new(pack(now_ms as u32, self.burst as u32)),
                        tunnel: AtomicU64::new(pack(now_ms as u32, 0)),
                    });
                    map.insert(ip, Arc::clone(&s));
                    s
                }
            }
        };
        HANDLES.with(|h| {
            let mut h = h.borrow_mut();
            if h.len() >= HANDLES_PER_THREAD {
                h.clear();
            }
            h.insert(key, Arc::clone(&state));
        });
        Some(state)
    }

    /// Takes a token for one query from `ip` at `now_ms`: `false` when the
    /// client is over its rate.
    pub fn admit(&self, ip: IpAddr, now_ms: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let Some(state) = self.state(ip, now_ms) else {
            return true;
        };
        let now = now_ms as u32;
        let mut admitted = false;
        let _ = state
            .bucket
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                let (last, tokens) = unpack(cur);
                // Another thread may have stamped a later time: no refill then.
                let elapsed = now.wrapping_sub(last);
                let (elapsed, stamp) = if elapsed > u32::MAX / 2 {
                    (0, last)
                } else {
                    (elapsed, now)
                };
                let tokens = (u64::from(tokens) + u64::from(elapsed) * self.rate).min(self.burst);
                admitted = tokens >= 1000;
                let tokens = if admitted { tokens - 1000 } else { tokens };
                Some(pack(stamp, tokens as u32))
            });
        admitted
    }

    /// Counts a name that looked like tunnel data (and was not in the cache):
    /// `true` once the client has sent [`TUNNEL_THRESHOLD`] of them within the
    /// window, so this query is flagged.
    pub fn note_suspicious(&self, ip: IpAddr, now_ms: u64) -> bool {
        let Some(state) = self.state(ip, now_ms) else {
            return false;
        };
        let now = now_ms as u32;
        let mut count = 0;
        let _ = state
            .tunnel
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                let (start, n) = unpack(cur);
                let (start, n) = if u64::from(now.wrapping_sub(start)) >= TUNNEL_WINDOW_MS {
                    (now, 0)
                } else {
                    (start, n)
                };
                count = n.saturating_add(1);
                Some(pack(start, count))
            });
        count >= TUNNEL_THRESHOLD
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
    fn threads_share_one_clients_bucket() {
        let t = Arc::new(ClientTable::new(100));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || (0..100).filter(|_| t.admit(IP, 5)).count())
            })
            .collect();
        let passed: usize = threads.into_iter().map(|h| h.join().expect("thread")).sum();
        assert_eq!(passed, 100, "one bucket of 100, whichever thread asks");
    }

    #[test]
    fn zero_means_no_limit_and_huge_rates_are_capped() {
        let t = ClientTable::new(0);
        assert!((0..10_000).all(|_| t.admit(IP, 0)));
        let t = ClientTable::new(u32::MAX);
        assert!((0..100_000).all(|_| t.admit(IP, 0)));
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
