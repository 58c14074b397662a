//! The SQLite store's cost per stored event: `EVENTS` events (default 200 000)
//! in batches of `BATCH` (default 1 000) through `SqliteStore::insert` into a
//! fresh database, with the ingest bench's mix of events. Prints wall time and
//! process CPU time per event.
//!
//! Wall and CPU time are noisy on a shared machine; for a steady figure count
//! the writer thread's instructions under callgrind (this machine has no
//! hardware counters for `perf stat`):
//!
//! ```text
//! cargo bench -p schoolgate-events --bench sqlite_row_cost --no-run
//! valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=/tmp/cg.%p \
//!     target/release/deps/sqlite_row_cost-<hash> --bench
//! grep ^totals /tmp/cg.<pid>-02
//! ```
//!
//! Thread 2 is `sqlite-writer`; divide its total by the events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use common::{event, hosts};
use schoolgate_classifier::config::store::Retention;
use schoolgate_events::{AccessEvent, Batch, EventStore, SqliteStore};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User plus system CPU time of this process, in seconds (from /proc).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    // Clock ticks are 100 a second on Linux.
    ticks(11).unwrap_or(0.0) / 100.0 + ticks(12).unwrap_or(0.0) / 100.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo test --benches` runs this too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick {
        5_000
    } else {
        env_or("EVENTS", 200_000)
    };
    let batch = env_or("BATCH", 1_000).max(1);
    let hosts = hosts();
    let events: Vec<AccessEvent> = (0..n as u64)
        .map(|i| event(i, &hosts, 1_709_600_000_000))
        .collect();
    let batches: Vec<Batch> = events
        .chunks(batch)
        .map(|c| Batch::new(c.to_vec()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("e.sqlite"), Retention::default()).unwrap();

    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for b in &batches {
        store.insert(b).await.unwrap();
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!(
        "sqlite_row_cost: {n} events in batches of {batch}: {:.2} us wall, {:.2} us CPU per event",
        wall * 1e6 / n as f64,
        cpu * 1e6 / n as f64
    );
}
