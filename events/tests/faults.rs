//! Faults, each ending with exactly N distinct events in ClickHouse: none lost,
//! none duplicated (`count()` and `uniqExact(id)` both equal N, without any
//! `OPTIMIZE`):
//! (a) the ClickHouse server is killed in the middle of a stream and started again
//!     on the same data dir and ports;
//! (b) the filter itself is SIGKILLed mid-stream (the pipeline runs in a child
//!     process: this test binary re-executed), then restarted on the same spool;
//! (c) the queue is overrun while the store is down.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use schoolgate_classifier::config::store::{Retention, StoreConfig};
use schoolgate_events::{ClickhouseStore, Delivery, Pipeline, PipelineHandle};
use tokio_util::sync::CancellationToken;

use crate::harness::clickhouse::ClickHouse;
use crate::harness::events::{self, event};
use crate::harness::{fast_tuning, store_config, wait_until};

const N: u64 = 20_000;
const SPACING: i64 = 7;
const RECOVERY: Duration = Duration::from_secs(180);

async fn clickhouse_store(ch: &ClickHouse, db: &str) -> Arc<ClickhouseStore> {
    let store = Arc::new(ClickhouseStore::new(&ch.config(db), Retention::default()));
    store.migrate().await.expect("migrate");
    store
}

fn distinct(ch: &ClickHouse, db: &str) -> u64 {
    ch.number(&format!("SELECT uniqExact(id) FROM {db}.events"))
}

fn assert_exactly(ch: &ClickHouse, db: &str, n: u64) {
    let count = ch.number(&format!("SELECT count() FROM {db}.events"));
    let uniq = distinct(ch, db);
    assert_eq!(
        (count, uniq),
        (n, n),
        "count() and uniqExact(id) of {db}.events"
    );
}

/// Waits until ClickHouse holds `n` distinct events and the spool is empty.
async fn recovered(ch: &ClickHouse, db: &str, handle: &PipelineHandle, n: u64) {
    wait_until(
        &format!("{n} distinct events in {db} and an empty spool"),
        RECOVERY,
        || async {
            tokio::task::block_in_place(|| distinct(ch, db)) == n && handle.spool_is_empty()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_restart_mid_stream_loses_and_duplicates_nothing() {
    let mut ch = ClickHouse::start();
    let store = clickhouse_store(&ch, "fault_a").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = store_config(dir.path());
    let (tx, handle) =
        Pipeline::start_with(&cfg, store, CancellationToken::new(), fast_tuning()).expect("start");
    for i in 0..N {
        tx.send(event(i, SPACING)).expect("send");
        if i % 20 == 0 {
            // A stream over a few seconds, not one burst.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if i == N / 3 {
            ch.stop();
        }
        if i == 2 * N / 3 {
            tokio::task::block_in_place(|| ch.restart());
        }
    }
    recovered(&ch, "fault_a", &handle, N).await;
    let c = handle.counters();
    assert!(c.retried > 0 && c.spooled > 0, "the outage was seen: {c:?}");
    assert_eq!(c.dead_lettered + c.lost + c.dropped_allowed, 0, "{c:?}");
    handle.shutdown().await;
    assert_exactly(&ch, "fault_a", N);
}

/// The child side of (b): runs only when the parent re-executes this binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of filter_sigkilled_mid_stream_loses_and_duplicates_nothing"]
async fn sigkill_child() {
    let (Ok(dir), Ok(url), Ok(db)) = (
        std::env::var("SG_CHILD_DIR"),
        std::env::var("SG_CHILD_URL"),
        std::env::var("SG_CHILD_DB"),
    ) else {
        return;
    };
    let ch = schoolgate_classifier::config::store::ClickhouseConfig {
        url,
        database: db,
        ..Default::default()
    };
    let store = Arc::new(ClickhouseStore::new(&ch, Retention::default()));
    let cfg = StoreConfig {
        queue_capacity: 256,
        batch_size: Some(200),
        batch_timeout_ms: 20,
        ..store_config(std::path::Path::new(&dir))
    };
    let (tx, _handle) =
        Pipeline::start_with(&cfg, store, CancellationToken::new(), fast_tuning()).expect("start");
    for i in 0..N {
        tx.send(event(i, SPACING)).expect("send");
        // Only after `send` returned: the parent holds us to every event reported.
        println!("sent {i}");
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Wait to be killed.
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_sigkilled_mid_stream_loses_and_duplicates_nothing() {
    let db = "fault_b";
    let mut ch = ClickHouse::start();
    let store = clickhouse_store(&ch, db).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "faults::sigkill_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SG_CHILD_DIR", dir.path())
        .env("SG_CHILD_URL", ch.url())
        .env("SG_CHILD_DB", db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child pipeline");
    let stdout = child.stdout.take().expect("child stdout");
    // The child streams into ClickHouse; at N/4 the server dies (the child spools),
    // at N/2 the child is SIGKILLed.
    let reported = tokio::task::block_in_place(|| {
        let mut last = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Some(n) = line
                .strip_prefix("sent ")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            last = Some(n);
            if n >= N / 4 && ch.is_running() {
                ch.stop();
            }
            if n >= N / 2 {
                break;
            }
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        last
    });
    let reported = reported.expect("the child reported progress before it was killed");
    assert!(reported >= N / 2);
    assert!(
        std::fs::read_dir(dir.path().join("spool"))
            .expect("the child's spool")
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".seg")),
        "the child had events waiting in its spool when it died"
    );
    tokio::task::block_in_place(|| ch.restart());

    // The filter starts again on the same spool and replays it.
    let cfg = store_config(dir.path());
    let (_tx, handle) =
        Pipeline::start_with(&cfg, store.clone(), CancellationToken::new(), fast_tuning())
            .expect("restart on the same spool");
    wait_until("the spool replayed", RECOVERY, || async {
        handle.spool_is_empty()
    })
    .await;
    handle.shutdown().await;

    let present: HashSet<String> = ch
        .sql(&format!("SELECT id FROM {db}.events"))
        .lines()
        .map(str::to_owned)
        .collect();
    // Every event whose send() returned before the kill is there, once.
    for i in 0..=reported {
        assert!(
            present.contains(&events::id(i, SPACING).to_string()),
            "event {i} (sent before the kill) was lost"
        );
    }
    assert_exactly(&ch, db, present.len() as u64);

    // The filter's traffic goes on: the events the child never got to send.
    let (tx, handle) =
        Pipeline::start_with(&cfg, store, CancellationToken::new(), fast_tuning()).expect("start");
    for i in 0..N {
        if !present.contains(&events::id(i, SPACING).to_string()) {
            tx.send(event(i, SPACING)).expect("send");
        }
    }
    recovered(&ch, db, &handle, N).await;
    handle.shutdown().await;
    assert_exactly(&ch, db, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_overrun_with_the_store_down_loses_and_duplicates_nothing() {
    let db = "fault_c";
    let mut ch = ClickHouse::start();
    let store = clickhouse_store(&ch, db).await;
    ch.stop();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig {
        queue_capacity: 64,
        batch_size: Some(100),
        ..store_config(dir.path())
    };
    let (tx, handle) =
        Pipeline::start_with(&cfg, store, CancellationToken::new(), fast_tuning()).expect("start");
    let mut overflowed = 0;
    for i in 0..N {
        match tx.send(event(i, SPACING)).expect("send") {
            Delivery::Queued => {}
            Delivery::Spooled => overflowed += 1,
            Delivery::Dropped | Delivery::Discarded => {
                panic!("nothing may be dropped under the spool cap")
            }
        }
    }
    assert!(overflowed > 0, "the queue (64) overflowed into the spool");
    assert!(handle.counters().queue_depth <= 64);
    tokio::task::block_in_place(|| ch.restart());
    recovered(&ch, db, &handle, N).await;
    handle.shutdown().await;
    assert_exactly(&ch, db, N);
}
