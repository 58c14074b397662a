//! ClickHouse specifics against a real (Debian 18.16) server: migrations, literal
//! escaping, purge by partition, and a data error reaching the dead-letter file.

use std::sync::Arc;
use std::time::Duration;

use schoolgate_classifier::config::store::Retention;
use schoolgate_classifier::{Action, Severity};
use schoolgate_events::store::clickhouse::sql;
use schoolgate_events::{
    Batch, ClickhouseStore, DeadLetterFile, EventStore, GroupBy, Period, Pipeline,
};
use tokio_util::sync::CancellationToken;

use crate::harness::clickhouse::ClickHouse;
use crate::harness::events::{self, BASE_MS, ts};
use crate::harness::{fast_tuning, store_config, wait_until};

const DAY: i64 = 86_400_000;

#[tokio::test]
async fn migrate_creates_tables_for_the_server_version_once() {
    let ch = ClickHouse::start();
    let store = ClickhouseStore::new(&ch.config("mig"), Retention::default());
    let first = store.migrate().await.expect("migrate");
    assert_eq!(first.applied, vec![1]);
    assert!(first.already.is_empty());
    let again = store.migrate().await.expect("migrate again");
    assert!(again.applied.is_empty());
    assert_eq!(again.already, vec![1]);
    assert_eq!(ch.number("SELECT count() FROM mig.schema_migrations"), 1);
    let engine =
        ch.sql("SELECT engine FROM system.tables WHERE database = 'mig' AND name = 'events'");
    assert_eq!(engine.trim(), "ReplacingMergeTree");
    let ip_type = ch.sql(
        "SELECT type FROM system.columns WHERE database = 'mig' AND table = 'events' AND name = 'client_ip'",
    );
    if first.server.modern_types() {
        assert_eq!(ip_type.trim(), "IPv6");
    } else {
        assert_eq!(ip_type.trim(), "FixedString(16)");
    }
}

/// The one escaping function, against the real parser: every value comes back
/// exactly as it went in.
#[tokio::test]
async fn string_literals_survive_the_real_parser() {
    let ch = ClickHouse::start();
    let client = clickhouse::Client::default()
        .with_url(ch.url())
        .with_validation(false);
    for value in [
        "plain",
        "it's",
        "\"double\"",
        r"back\slash",
        r"\'",
        r"\\'",
        "trailing\\",
        "new\nline\ttab\rcr",
        "nul\0byte",
        "? and ?? and {x: String}",
        "ünïcødé 日本語",
        "'); DROP DATABASE system; --",
    ] {
        let got: String = client
            .query_raw(&format!("SELECT {}", sql::string(value)))
            .fetch_one()
            .await
            .unwrap_or_else(|e| panic!("{value:?}: {e}"));
        assert_eq!(got, value);
    }
}

#[tokio::test]
async fn purge_drops_old_months_of_each_class() {
    let ch = ClickHouse::start();
    let store = ClickhouseStore::new(&ch.config("purge"), Retention::default());
    store.migrate().await.expect("migrate");
    let mut batch = Vec::new();
    for i in 0..30u64 {
        let e = events::event(i, 1).at(ts(BASE_MS + i as i64));
        batch.push(match i % 3 {
            0 => e.with_action(Action::Allow).with_severity(None),
            1 => e.with_action(Action::Block).with_severity(None),
            _ => e
                .with_action(Action::Flag)
                .with_severity(Some(Severity::Low)),
        });
    }
    store.insert(&Batch::new(batch)).await.expect("insert");
    // 200 days on: allowed (90 days) is past, blocked (365) and flagged (730) not.
    let report = store.purge(ts(BASE_MS + 200 * DAY)).await.expect("purge");
    assert_eq!(report.events, 10);
    assert_eq!(report.partitions, vec!["(202403, 0)".to_owned()]);
    let whole = Period::new(ts(BASE_MS - DAY), ts(BASE_MS + DAY));
    let keys: Vec<String> = store
        .counts(&whole, GroupBy::Action, None)
        .await
        .expect("counts")
        .into_iter()
        .map(|c| c.key)
        .collect();
    assert_eq!(keys, vec!["block", "flag"]);
    // 800 days on, everything is past.
    let report = store.purge(ts(BASE_MS + 800 * DAY)).await.expect("purge");
    assert_eq!(report.events, 20);
    assert_eq!(ch.number("SELECT count() FROM purge.events"), 0);
}

/// A schema broken under the pipeline's feet: the server rejects the inserts as
/// bad data, the batches go to the dead-letter file with the server's message,
/// nothing is retried forever, and once the schema is fixed events flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_error_goes_to_the_dead_letter_file_and_the_pipeline_keeps_going() {
    let ch = ClickHouse::start();
    let store = Arc::new(ClickhouseStore::new(&ch.config("dl"), Retention::default()));
    store.migrate().await.expect("migrate");
    ch.sql("ALTER TABLE dl.events DROP COLUMN search_terms");

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = store_config(dir.path());
    let shutdown = CancellationToken::new();
    let (tx, handle) =
        Pipeline::start_with(&cfg, store.clone(), shutdown.clone(), fast_tuning()).expect("start");
    for i in 0..40 {
        tx.send(events::event(i, 1000)).expect("send");
    }
    wait_until(
        "40 events dead-lettered",
        Duration::from_secs(30),
        || async { handle.counters().dead_lettered == 40 },
    )
    .await;
    let letters = DeadLetterFile::read_all(&cfg.dead_letter).expect("read dead letters");
    assert!(!letters.is_empty());
    assert_eq!(letters.iter().map(|l| l.events.len()).sum::<usize>(), 40);
    for l in &letters {
        assert_eq!(l.store, "clickhouse");
        assert!(
            l.error.contains("Code: 16") && l.error.contains("search_terms"),
            "the server's message is kept: {}",
            l.error
        );
    }
    assert_eq!(handle.counters().retried, 0, "a data error is not retried");

    ch.sql("ALTER TABLE dl.events ADD COLUMN search_terms String AFTER path");
    for i in 40..100 {
        tx.send(events::event(i, 1000)).expect("send");
    }
    wait_until("60 events stored", Duration::from_secs(30), || async {
        ch.number("SELECT count() FROM dl.events") == 60
    })
    .await;
    handle.shutdown().await;
    assert_eq!(ch.number("SELECT count() FROM dl.events"), 60);
    assert!(handle_is_spool_clean(&cfg.spool_dir));
}

fn handle_is_spool_clean(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .all(|e| !e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .unwrap_or(true)
}
