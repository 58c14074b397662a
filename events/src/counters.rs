//! What the pipeline has done, for the dashboard's health page and the logs.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Counters shared by the senders and the batcher. Totals since start, except the
/// gauges `queue_depth` and `spool_bytes`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events accepted into the in-memory queue.
    pub queued: AtomicU64,
    /// Events in the queue now (gauge).
    pub queue_depth: AtomicU64,
    /// Events written to the disk spool (queue full, or the store down).
    pub spooled: AtomicU64,
    /// Events the store confirmed.
    pub inserted: AtomicU64,
    /// Insert attempts that failed transiently and will be retried.
    pub retried: AtomicU64,
    /// Events written to the dead-letter file (the store called them bad data).
    pub dead_lettered: AtomicU64,
    /// Bytes of spool on disk (gauge).
    pub spool_bytes: AtomicU64,
    /// Allowed events refused because the spool was over `spool_max_mb`.
    pub dropped_allowed: AtomicU64,
    /// Events lost because neither the queue nor the spool could take them (the
    /// spool's disk failed). Should stay 0; the dashboard alerts when it does not.
    pub lost: AtomicU64,
    /// Spool records skipped as torn or corrupt.
    pub spool_corrupt: AtomicU64,
    /// Events queued without a journal record (the journal's disk failed): they
    /// are stored as usual, but a crash before that would lose them.
    pub journal_failed: AtomicU64,
    /// Events not kept because `[store] record` is off.
    pub discarded: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: usize) {
        // Saturating: a gauge must never wrap to 2^64 on a miscount.
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n as u64))
        });
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            queued: get(&self.queued),
            queue_depth: get(&self.queue_depth),
            spooled: get(&self.spooled),
            inserted: get(&self.inserted),
            retried: get(&self.retried),
            dead_lettered: get(&self.dead_lettered),
            spool_bytes: get(&self.spool_bytes),
            dropped_allowed: get(&self.dropped_allowed),
            lost: get(&self.lost),
            spool_corrupt: get(&self.spool_corrupt),
            journal_failed: get(&self.journal_failed),
            discarded: get(&self.discarded),
        }
    }
}

/// A copy of the [`Counters`] at one moment, for the dashboard's JSON API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersSnapshot {
    pub queued: u64,
    pub queue_depth: u64,
    pub spooled: u64,
    pub inserted: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub spool_bytes: u64,
    pub dropped_allowed: u64,
    pub lost: u64,
    pub spool_corrupt: u64,
    #[serde(default)]
    pub journal_failed: u64,
    #[serde(default)]
    pub discarded: u64,
}
