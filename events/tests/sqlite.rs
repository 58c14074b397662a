//! SQLite specifics: WAL mode, purge per retention class, concurrent reads.

use std::sync::Arc;

use schoolgate_classifier::config::store::Retention;
use schoolgate_classifier::{Action, Severity};
use schoolgate_events::store::writer_cpu::CpuPolicy;
use schoolgate_events::{Batch, EventStore, GroupBy, Period, SqliteStore};

use crate::harness::events::{self, BASE_MS, ts};

const DAY: i64 = 86_400_000;

#[tokio::test]
async fn opens_in_wal_mode_with_normal_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("var").join("events.sqlite");
    let _store = SqliteStore::open(&path, Retention::default()).expect("open creates parents");
    let conn = rusqlite::Connection::open(&path).expect("open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
}

/// Allowed, blocked and flagged events of the same age: only the classes past
/// their retention go.
#[tokio::test]
async fn purge_deletes_each_class_after_its_own_days() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("e.sqlite"), Retention::default()).expect("open");
    let mut batch = Vec::new();
    for (age_days, tag) in [(100, "a"), (400, "b"), (800, "c")] {
        let t = ts(BASE_MS - age_days * DAY);
        let base = events::event(age_days as u64, 1);
        batch.push(
            base.clone()
                .at(t)
                .with_action(Action::Allow)
                .with_severity(None)
                .with_path(format!("/allowed-{tag}")),
        );
        let mut blocked = base
            .clone()
            .at(t)
            .with_action(Action::Block)
            .with_severity(None);
        blocked.id = ulid::Ulid::from_parts(blocked.id.timestamp_ms(), 1_000 + age_days as u128);
        let mut flagged = base
            .at(t)
            .with_action(Action::Flag)
            .with_severity(Some(Severity::High));
        flagged.id = ulid::Ulid::from_parts(flagged.id.timestamp_ms(), 2_000 + age_days as u128);
        batch.push(blocked);
        batch.push(flagged);
    }
    store.insert(&Batch::new(batch)).await.expect("insert");
    let report = store.purge(ts(BASE_MS)).await.expect("purge");
    // Allowed: 100, 400, 800 days old all go (90 days); blocked: 400 and 800 go
    // (365); flagged: 800 goes (730).
    assert_eq!(report.events, 3 + 2 + 1);
    let all = Period::new(ts(BASE_MS - 1000 * DAY), ts(BASE_MS));
    let by_action = store
        .counts(&all, GroupBy::Action, None)
        .await
        .expect("counts");
    let got: Vec<(String, u64)> = by_action.into_iter().map(|c| (c.key, c.events)).collect();
    assert_eq!(got, vec![("block".to_owned(), 1), ("flag".to_owned(), 2)]);
    // Who was seen goes with the events: 9 (class, hour) pairs before, the
    // blocked event's and the two flagged events' hours after.
    let conn = rusqlite::Connection::open(dir.path().join("e.sqlite")).expect("open");
    let seen: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM (SELECT DISTINCT class, hour FROM rollup_seen)",
            [],
            |r| r.get(0),
        )
        .expect("seen");
    assert_eq!(seen, 3);
}

/// A database written before `rollup_seen` existed: opening it fills the table
/// from the events, so distinct users, devices and bypass attempts stay right.
#[tokio::test]
async fn an_older_database_gets_its_seen_rollup_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("e.sqlite");
    let store = SqliteStore::open(&path, Retention::default()).expect("open");
    let all = events::events(0..3_000, 45_000);
    for chunk in all.chunks(500) {
        store
            .insert(&Batch::new(chunk.to_vec()))
            .await
            .expect("insert");
    }
    let periods = [
        Period::new(ts(BASE_MS - 1), ts(BASE_MS + 3_000 * 45_000 + 1)),
        Period::new(
            ts(BASE_MS + 5_400_000 + 17),
            ts(BASE_MS + 30 * 3_600_000 + 5),
        ),
    ];
    let mut before = Vec::new();
    for p in &periods {
        before.push((
            store.totals(p, None).await.expect("totals"),
            store.bypass_attempts(p, None).await.expect("bypass"),
        ));
    }
    assert!(before[0].0.distinct_users > 1 && before[0].0.distinct_clients > 1);
    assert!(
        !before[0].1.is_empty(),
        "the events include bypass attempts"
    );
    drop(store);
    rusqlite::Connection::open(&path)
        .expect("open")
        .execute_batch("DROP TABLE rollup_seen")
        .expect("drop");

    let store = SqliteStore::open(&path, Retention::default()).expect("reopen");
    for (p, want) in periods.iter().zip(&before) {
        let got = (
            store.totals(p, None).await.expect("totals"),
            store.bypass_attempts(p, None).await.expect("bypass"),
        );
        assert_eq!(&got, want, "{p:?}");
    }
}

/// Readers on their own connections while the writer inserts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_run_beside_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        SqliteStore::open(dir.path().join("e.sqlite"), Retention::default()).expect("open"),
    );
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for chunk in events::events(0..5_000, 100).chunks(250) {
                store
                    .insert(&Batch::new(chunk.to_vec()))
                    .await
                    .expect("insert");
            }
        })
    };
    let whole = Period::new(ts(BASE_MS - 1), ts(BASE_MS + 5_000 * 100 + 1));
    let mut last = 0;
    while !writer.is_finished() {
        let t = store.totals(&whole, None).await.expect("totals");
        assert!(t.requests >= last, "counts never go backwards");
        last = t.requests;
    }
    writer.await.expect("writer");
    assert_eq!(
        store.totals(&whole, None).await.expect("totals").requests,
        5_000
    );
}

/// The writer thread's id and its nice value and scheduling policy
/// (`libc::SCHED_*`), from /proc.
fn writer_thread() -> (i32, i32, i32) {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("tasks") {
        let task = task.expect("task").path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() == "sqlite-writer" {
            let tid: i32 = task
                .file_name()
                .and_then(|n| n.to_str())
                .expect("tid")
                .parse()
                .expect("int");
            let stat = std::fs::read_to_string(task.join("stat")).expect("stat");
            // Fields after the parenthesised name: state is field 3, nice 19,
            // policy 41.
            let rest: Vec<&str> = stat[stat.rfind(')').expect("comm end") + 2..]
                .split(' ')
                .collect();
            found.push((
                tid,
                rest[16].parse().expect("nice"),
                rest[38].parse().expect("policy"),
            ));
        }
    }
    assert_eq!(found.len(), 1, "one sqlite-writer thread: {found:?}");
    found[0]
}

/// The writer runs on its own thread at a lower CPU priority, so DNS and proxy
/// threads never queue behind a batch insert: nice 10, and at rest `SCHED_IDLE`
/// (where this process may leave it again, as root can). Never hurried here:
/// on a machine busy with other tests an idle-class writer can take longer than
/// the default 50 ms, which is the next test's business.
#[tokio::test]
async fn the_writer_thread_runs_at_a_lower_priority() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open_with(
        dir.path().join("e.sqlite"),
        Retention::default(),
        CpuPolicy {
            hurry_after: std::time::Duration::from_secs(3_600),
            hurried_for: std::time::Duration::from_secs(5),
        },
    )
    .expect("open");
    store
        .insert(&Batch::new(events::events(0..10, 1_000)))
        .await
        .expect("insert");
    let (_, nice, policy) = writer_thread();
    assert_eq!(nice, schoolgate_events::store::sqlite::WRITER_NICE);
    let at_rest = if store.writer_cpu().background_allowed() {
        libc::SCHED_IDLE
    } else {
        eprintln!("this process cannot leave SCHED_IDLE: the writer stays at nice 10");
        libc::SCHED_OTHER
    };
    assert_eq!(policy, at_rest);
    assert_eq!(
        store
            .totals(&Period::new(ts(BASE_MS - 1), ts(BASE_MS + 20_000)), None)
            .await
            .expect("totals")
            .requests,
        10
    );
}

/// A write that waits `hurry_after` brings the writer out of the background
/// (here at once), at the same nice value, and it stays out for `hurried_for`.
#[tokio::test]
async fn a_write_kept_waiting_brings_the_writer_out_of_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open_with(
        dir.path().join("e.sqlite"),
        Retention::default(),
        CpuPolicy {
            hurry_after: std::time::Duration::ZERO,
            hurried_for: std::time::Duration::from_secs(600),
        },
    )
    .expect("open");
    // Thousands of rows: the insert cannot be done before it is first waited on.
    store
        .insert(&Batch::new(events::events(0..5_000, 10)))
        .await
        .expect("insert");
    let (tid, nice, policy) = writer_thread();
    assert_eq!(tid, store.writer_cpu().tid());
    assert_eq!(nice, schoolgate_events::store::sqlite::WRITER_NICE);
    assert_eq!(policy, libc::SCHED_OTHER, "hurried, and not back yet");
    assert_eq!(
        store
            .totals(&Period::new(ts(BASE_MS - 1), ts(BASE_MS + 100_000)), None)
            .await
            .expect("totals")
            .requests,
        5_000
    );
}

/// The WAL is checkpointed every `WAL_CHECKPOINT_PAGES` pages, not SQLite's
/// 1 000: small commits let it grow past 1 000 pages.
#[tokio::test]
async fn the_wal_is_checkpointed_after_many_pages_not_a_thousand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("e.sqlite");
    let store = SqliteStore::open(&path, Retention::default()).expect("open");
    for b in 0..80u64 {
        store
            .insert(&Batch::new(events::events(b * 500..(b + 1) * 500, 1_000)))
            .await
            .expect("insert");
    }
    let conn = rusqlite::Connection::open(&path).expect("open");
    let page: u64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .expect("page size");
    let wal = std::fs::metadata(dir.path().join("e.sqlite-wal"))
        .expect("the WAL")
        .len();
    assert!(wal / page > 1_500, "the WAL holds {} pages", wal / page);
    assert!(
        wal / page <= schoolgate_events::store::sqlite::WAL_CHECKPOINT_PAGES as u64 + 1_000,
        "the WAL holds {} pages",
        wal / page
    );
}
