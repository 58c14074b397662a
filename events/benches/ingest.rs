//! Sustained ingest: events/s through the whole pipeline into ClickHouse (a
//! private 18.16 server started like the tests' one) and into SQLite, plus each
//! store's raw insert rate for comparison. Hosts are the real popular domains from
//! `../shared/data/benign/top.txt.gz` when present.
//!
//! `cargo bench -p schoolgate-events --bench ingest` (`EVENTS=n` to change the
//! count; default 400 000 for ClickHouse, 200 000 for SQLite; `ONLY=journal`,
//! `null`, `clickhouse` or `sqlite` to run one part).
//!
//! The ClickHouse server keeps its data in a temporary directory, so under
//! `TMPDIR`. Where that is ext4 without a journal (this project's VM disk),
//! creating ClickHouse's part files is slow and the ClickHouse figures drop
//! and scatter; put `TMPDIR` on a journaled file system for figures that stand
//! for a server (`benches/RESULTS.md`, "ClickHouse's slow inserts were the
//! disk's file system").

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/harness/clickhouse.rs"]
mod clickhouse_harness;
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{event, hosts};
use jiff::Timestamp;
use schoolgate_classifier::config::store::{Retention, StoreConfig};
use schoolgate_events::{
    AccessEvent, Batch, BypassAttempts, ClickhouseStore, Count, EventSearch, EventStore,
    ExportFilter, FlaggedQuery, GroupBy, HostCount, Period, Pipeline, PipelineTuning, PurgeReport,
    Purpose, SqliteStore, StoreError, Subject, Totals,
};
use tokio_util::sync::CancellationToken;

fn count() -> (u64, u64) {
    let n = std::env::var("EVENTS").ok().and_then(|v| v.parse().ok());
    (n.unwrap_or(400_000), n.unwrap_or(200_000))
}

fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        path: dir.join("events.sqlite"),
        spool_dir: dir.join("spool"),
        dead_letter: dir.join("dead-letter.jsonl"),
        retention: Retention {
            pseudonymise_guests: false,
            ..Retention::default()
        },
        // The shipped defaults: 16 Ki queue, the backend's batch size, 1 s.
        ..StoreConfig::default()
    }
}

/// Sends `n` events as fast as the pipeline drains them (the producer yields
/// while the queue is more than half full, so nothing overflows to the spool and
/// this measures the sustained rate), and waits until the store confirmed all.
async fn through_pipeline(
    label: &str,
    store: Arc<dyn EventStore>,
    n: u64,
    journal: bool,
    hosts: &[String],
) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let tuning = PipelineTuning {
        journal,
        ..PipelineTuning::default()
    };
    let (tx, handle) = Pipeline::start_with(&cfg, store, CancellationToken::new(), tuning).unwrap();
    let events: Vec<AccessEvent> = (0..n).map(|i| event(i, hosts, 1_709_528_767_089)).collect();
    let half = (cfg.queue_capacity / 2) as u64;
    let started = Instant::now();
    let mut send_time = Duration::ZERO;
    for e in events {
        while handle.counters().queue_depth > half {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let t = Instant::now();
        tx.send(e).unwrap();
        send_time += t.elapsed();
    }
    while handle.counters().inserted < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let c = handle.counters();
    handle.shutdown().await;
    println!(
        "{label:<44} {n:>8} events in {:>6.2} s = {:>9.0} events/s   (send: {:.2} µs/event; spooled {}, retried {})",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        send_time.as_secs_f64() * 1e6 / n as f64,
        c.spooled,
        c.retried,
    );
}

/// The journal by itself on one thread: what `send` pays for crash safety, split
/// into encoding the event and placing it in the mapped segment.
fn journal_alone(n: u64, hosts: &[String]) {
    use schoolgate_events::journal::{self, Journal};
    let events: Vec<AccessEvent> = (0..n).map(|i| event(i, hosts, 1_709_528_767_089)).collect();
    let mut buf = Vec::new();
    let started = Instant::now();
    for e in &events {
        buf.clear();
        serde_json::to_writer(&mut buf, e).unwrap();
    }
    let encode = started.elapsed();
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), 1 << 20, &journal::recover(dir.path()).unwrap()).unwrap();
    let started = Instant::now();
    let mut slots = Vec::with_capacity(10_000);
    for e in &events {
        slots.push(j.append(e).unwrap());
        if slots.len() == 10_000 {
            slots.drain(..).for_each(|s| s.done());
        }
    }
    let append = started.elapsed();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{:<44} {n:>8} events: {:.2} µs/event appended and done (of which JSON encoding {:.2} µs)",
        "journal alone, one thread",
        per(append),
        per(encode),
    );
}

/// Accepts and forgets: the pipeline's own cost.
#[derive(Debug)]
struct NullStore;

#[async_trait::async_trait]
impl EventStore for NullStore {
    fn name(&self) -> &'static str {
        "null"
    }
    async fn insert(&self, _: &Batch) -> Result<(), StoreError> {
        Ok(())
    }
    async fn flagged(&self, _: &FlaggedQuery, _: &Purpose) -> Result<Vec<AccessEvent>, StoreError> {
        Ok(Vec::new())
    }
    async fn search(&self, _: &EventSearch, _: &Purpose) -> Result<Vec<AccessEvent>, StoreError> {
        Ok(Vec::new())
    }

    async fn timeline(
        &self,
        _: &Subject,
        _: Timestamp,
        _: i64,
        _: &Purpose,
    ) -> Result<Vec<AccessEvent>, StoreError> {
        Ok(Vec::new())
    }
    async fn event(&self, _: ulid::Ulid, _: &Purpose) -> Result<Option<AccessEvent>, StoreError> {
        Ok(None)
    }
    async fn counts(
        &self,
        _: &Period,
        _: GroupBy,
        _: Option<&str>,
    ) -> Result<Vec<Count>, StoreError> {
        Ok(Vec::new())
    }
    async fn top_blocked_hosts(
        &self,
        _: &Period,
        _: usize,
        _: Option<&str>,
    ) -> Result<Vec<HostCount>, StoreError> {
        Ok(Vec::new())
    }
    async fn bypass_attempts(
        &self,
        _: &Period,
        _: Option<&str>,
    ) -> Result<Vec<BypassAttempts>, StoreError> {
        Ok(Vec::new())
    }
    async fn export_csv(
        &self,
        _: &Period,
        _: &ExportFilter,
        _: &mut (dyn std::io::Write + Send),
        _: &Purpose,
    ) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn totals(&self, _: &Period, _: Option<&str>) -> Result<Totals, StoreError> {
        Ok(Totals::default())
    }
    async fn purge(&self, _: Timestamp) -> Result<PurgeReport, StoreError> {
        Ok(PurgeReport::default())
    }
}

async fn direct(label: &str, store: &dyn EventStore, n: u64, hosts: &[String]) {
    let events: Vec<AccessEvent> = (0..n).map(|i| event(i, hosts, 1_709_600_000_000)).collect();
    let started = Instant::now();
    for chunk in events.chunks(10_000) {
        store.insert(&Batch::new(chunk.to_vec())).await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "{label:<44} {n:>8} events in {:>6.2} s = {:>9.0} events/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep
    // that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (ch_n, sqlite_n) = if quick { (20_000, 20_000) } else { count() };
    let hosts = hosts();
    println!(
        "schoolgate-events ingest ({} hosts, {} cores)",
        hosts.len(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    let only = std::env::var("ONLY").ok();
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if part("journal") {
        journal_alone(ch_n, &hosts);
    }
    for journal in [true, false].into_iter().filter(|_| part("null")) {
        let label = format!(
            "pipeline -> null store (journal {})",
            if journal { "on" } else { "off" }
        );
        through_pipeline(&label, Arc::new(NullStore), ch_n, journal, &hosts).await;
    }

    if part("clickhouse") {
        clickhouse(ch_n, &hosts).await;
    }
    if part("sqlite") {
        sqlite(sqlite_n, &hosts).await;
    }
}

async fn clickhouse(ch_n: u64, hosts: &[String]) {
    let ch = clickhouse_harness::ClickHouse::start();
    for (i, journal) in [true, false].into_iter().enumerate() {
        let store = Arc::new(ClickhouseStore::new(
            &ch.config(&format!("bench{i}")),
            Retention::default(),
        ));
        let report = store.migrate().await.unwrap();
        if i == 0 {
            println!("clickhouse {}", report.server.version);
        }
        let label = format!(
            "pipeline -> clickhouse (journal {})",
            if journal { "on" } else { "off" }
        );
        through_pipeline(&label, store, ch_n, journal, hosts).await;
    }
    let store = ClickhouseStore::new(&ch.config("bench_direct"), Retention::default());
    store.migrate().await.unwrap();
    direct("clickhouse insert, 10k batches", &store, ch_n, hosts).await;
}

async fn sqlite(sqlite_n: u64, hosts: &[String]) {
    for journal in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(SqliteStore::open(dir.path().join("e.sqlite"), Retention::default()).unwrap());
        let label = format!(
            "pipeline -> sqlite (journal {})",
            if journal { "on" } else { "off" }
        );
        through_pipeline(&label, store, sqlite_n, journal, hosts).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("e.sqlite"), Retention::default()).unwrap();
    direct(
        "sqlite insert (+rollups), 10k batches",
        &store,
        sqlite_n,
        hosts,
    )
    .await;
}
