//! The batcher against a scripted in-memory store, with tokio's clock paused:
//! batches close on size and on time, transient failures spool and replay,
//! shutdown drains, data errors are narrowed down to the bad events, the spool's
//! size cap sheds allowed events first, guests are pseudonymised. No assertion here
//! depends on how long anything took.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use schoolgate_classifier::config::store::StoreConfig;
use schoolgate_classifier::{Action, Severity};
use schoolgate_events::{
    CountersSnapshot, DeadLetterFile, Delivery, EventSender, Pipeline, PipelineHandle,
    PipelineTuning,
};
use tokio_util::sync::CancellationToken;

use crate::harness::events::{self, event};
use crate::harness::mock::MockStore;
use crate::harness::{store_config, wait_until};

const LONG: Duration = Duration::from_secs(3_600);

fn start(
    cfg: &StoreConfig,
    store: &Arc<MockStore>,
) -> (EventSender, PipelineHandle, CancellationToken) {
    let shutdown = CancellationToken::new();
    let tuning = PipelineTuning {
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        ..PipelineTuning::default()
    };
    let (tx, handle) =
        Pipeline::start_with(cfg, store.clone(), shutdown.clone(), tuning).expect("start");
    (tx, handle, shutdown)
}

#[tokio::test(start_paused = true)]
async fn batches_close_on_size_then_on_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = store_config(dir.path());
    cfg.batch_size = Some(10);
    cfg.batch_timeout_ms = 1_000;
    let store = Arc::new(MockStore::default());
    let (tx, handle, _) = start(&cfg, &store);
    for i in 0..25 {
        assert_eq!(tx.send(event(i, 1)).expect("send"), Delivery::Queued);
    }
    wait_until("25 stored", LONG, || async { store.stored() == 25 }).await;
    assert_eq!(*store.batch_sizes.lock().expect("sizes"), vec![10, 10, 5]);
    handle.shutdown().await;
}

/// A backlog goes to the store batch after batch, with no pause between two
/// full batches: the pause after a take is for a queue the take emptied. (With
/// a pause after every take, the embedded store's 2,000-event batches capped the
/// pipeline at 100,000 events a second.) The clock is tokio's paused one: it
/// moves only when every task waits on a timer, so the time it shows counts the
/// pauses the batcher took, not how fast this machine is.
#[tokio::test(start_paused = true)]
async fn a_backlog_is_stored_batch_after_batch_without_pausing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = store_config(dir.path());
    cfg.batch_size = Some(10);
    cfg.queue_capacity = 2_000;
    cfg.batch_timeout_ms = 1_000;
    let store = Arc::new(MockStore::default());
    let (tx, handle, _) = start(&cfg, &store);
    let started = tokio::time::Instant::now();
    for i in 0..1_000 {
        assert_eq!(tx.send(event(i, 1)).expect("send"), Delivery::Queued);
    }
    wait_until("1,000 stored", LONG, || async { store.stored() == 1_000 }).await;
    let paused = started.elapsed();
    assert_eq!(*store.batch_sizes.lock().expect("sizes"), vec![10; 100]);
    // 100 batches with a 20 ms pause between each would be 2 s; wait_until looks
    // every 20 ms, so one look's worth is all that may pass.
    assert!(
        paused <= Duration::from_millis(40),
        "the batcher paused between full batches: {paused:?} on the paused clock"
    );
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn with_record_off_events_are_counted_and_nothing_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = store_config(dir.path());
    cfg.record = false;
    cfg.batch_timeout_ms = 10;
    let store = Arc::new(MockStore::default());
    let (tx, handle, _) = start(&cfg, &store);
    for i in 0..25 {
        assert_eq!(tx.send(event(i, 1)).expect("send"), Delivery::Discarded);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let c = handle.counters();
    assert_eq!((c.discarded, c.queued, c.spooled), (25, 0, 0), "{c:?}");
    handle.shutdown().await;
    assert_eq!(store.stored(), 0);
    // No journal either: nothing was written for these events.
    let journal = cfg.spool_dir.join("journal");
    let files = std::fs::read_dir(&journal).map_or(0, |d| d.count());
    assert_eq!(files, 0, "journal files in {}", journal.display());
}

#[tokio::test(start_paused = true)]
async fn a_store_outage_spools_then_replays_everything_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = store_config(dir.path());
    cfg.batch_size = Some(50);
    let store = Arc::new(MockStore::default());
    store.set_down(true);
    let (tx, handle, _) = start(&cfg, &store);
    for i in 0..1_000 {
        tx.send(event(i, 1)).expect("send");
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    wait_until("the batcher spooled while down", LONG, || async {
        handle.counters().spooled > 0
    })
    .await;
    assert_eq!(store.stored(), 0);
    store.set_down(false);
    wait_until("all 1000 stored and the spool empty", LONG, || async {
        store.stored() == 1_000 && handle.spool_is_empty()
    })
    .await;
    let c = handle.counters();
    assert!(c.retried > 0, "{c:?}");
    assert_eq!(c.dead_lettered, 0);
    assert_eq!(c.spool_bytes, 0);
    handle.shutdown().await;
    // The spool's segments are gone once acknowledged.
    let left: Vec<_> = std::fs::read_dir(&cfg.spool_dir)
        .expect("spool dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_into_the_spool_and_a_restart_replays_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = store_config(dir.path());
    cfg.batch_size = Some(1_000);
    cfg.batch_timeout_ms = 60_000;
    let store = Arc::new(MockStore::default());
    store.set_down(true);
    let (tx, handle, _) = start(&cfg, &store);
    for i in 0..300 {
        tx.send(event(i, 1)).expect("send");
    }
    handle.shutdown().await;
    // After shutdown, senders still reach the disk.
    assert_eq!(tx.send(event(300, 1)).expect("send"), Delivery::Spooled);
    assert_eq!(store.stored(), 0);

    store.set_down(false);
    let (_tx, handle, _) = start(&cfg, &store);
    wait_until("301 replayed", LONG, || async { store.stored() == 301 }).await;
    wait_until("spool empty", LONG, || async { handle.spool_is_empty() }).await;
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_the_queue_into_a_working_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = store_config(dir.path());
    cfg.batch_size = Some(10_000);
    cfg.batch_timeout_ms = 60_000;
    let store = Arc::new(MockStore::default());
    let (tx, handle, shutdown) = start(&cfg, &store);
    for i in 0..777 {
        tx.send(event(i, 1)).expect("send");
    }
    shutdown.cancel();
    handle.join().await;
    assert_eq!(store.stored(), 777);
    assert_eq!(store.rows_received.load(Ordering::SeqCst), 777);
}

#[tokio::test(start_paused = true)]
async fn a_bad_event_is_dead_lettered_alone_and_the_rest_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = store_config(dir.path());
    cfg.batch_size = Some(64);
    let store = Arc::new(MockStore::default());
    *store.poison_host.lock().expect("lock") = Some("poison.example".into());
    let (tx, handle, _) = start(&cfg, &store);
    for i in 0..64 {
        let mut e = event(i, 1);
        if i == 37 {
            e.host = "poison.example".into();
        }
        tx.send(e).expect("send");
    }
    wait_until("63 stored, 1 dead-lettered", LONG, || async {
        store.stored() == 63 && handle.counters().dead_lettered == 1
    })
    .await;
    let letters = DeadLetterFile::read_all(&cfg.dead_letter).expect("dead letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].events.len(), 1);
    assert_eq!(letters[0].events[0].id, events::id(37, 1));
    assert!(letters[0].error.contains("Code: 27"));
    assert_eq!(handle.counters().retried, 0, "data errors are not retried");
    // The pipeline goes on.
    *store.poison_host.lock().expect("lock") = None;
    tx.send(event(100, 1)).expect("send");
    wait_until("64 stored", LONG, || async { store.stored() == 64 }).await;
    handle.shutdown().await;
}

/// With the store down and the spool over its cap, allowed events are refused
/// (and counted) while blocked and flagged ones are still kept.
#[tokio::test(start_paused = true)]
async fn over_the_spool_cap_allowed_events_go_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = store_config(dir.path());
    cfg.spool_max_mb = 1;
    cfg.queue_capacity = 1;
    let store = Arc::new(MockStore::default());
    store.set_down(true);
    let (tx, handle, _) = start(&cfg, &store);
    let mut i = 0;
    while handle.counters().spool_bytes < 1 << 20 {
        tx.send(event(i, 1).with_action(Action::Allow).with_severity(None))
            .expect("send");
        i += 1;
    }
    let before = handle.counters();
    let allowed = tx
        .send(event(i, 1).with_action(Action::Allow).with_severity(None))
        .expect("send");
    let blocked = tx
        .send(event(i + 1, 1).with_action(Action::Block))
        .expect("send");
    let flagged = tx
        .send(
            event(i + 2, 1)
                .with_action(Action::Flag)
                .with_severity(Some(Severity::High)),
        )
        .expect("send");
    // The queue holds one event, so each of these overflowed to the spool.
    assert_eq!(allowed, Delivery::Dropped);
    assert_eq!(blocked, Delivery::Spooled);
    assert_eq!(flagged, Delivery::Spooled);
    let after = handle.counters();
    assert_eq!(after.dropped_allowed, before.dropped_allowed + 1);

    // Everything that was kept reaches the store once it is back (the one
    // allowed event still in the queue may meet the full spool too: counted).
    store.set_down(false);
    let sent = i + 3;
    wait_until("kept events stored", LONG, || async {
        store.stored() as u64 + handle.counters().dropped_allowed == sent && handle.spool_is_empty()
    })
    .await;
    assert!(
        store
            .events
            .lock()
            .expect("lock")
            .values()
            .any(|e| e.action == Action::Flag)
    );
    handle.shutdown().await;
}

/// Records in the spool's segment files (length, checksum, payload each).
fn spool_records(dir: &std::path::Path) -> usize {
    let mut records = 0;
    for entry in std::fs::read_dir(dir).expect("spool dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "seg") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("segment");
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("len")) as usize;
            at += 8 + len;
            records += 1;
        }
    }
    records
}

/// Events sent together past a full queue are spooled as one record, and
/// every one of them reaches the store once it is back.
#[tokio::test(start_paused = true)]
async fn events_sent_together_past_a_full_queue_are_spooled_as_one_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = store_config(dir.path());
    cfg.queue_capacity = 4;
    let store = Arc::new(MockStore::default());
    store.set_down(true);
    let (tx, handle, _) = start(&cfg, &store);
    let before = spool_records(&cfg.spool_dir);
    let events: Vec<_> = (0..100).map(|i| event(i, 1)).collect();
    assert_eq!(tx.send_all(events), 0, "nothing lost");
    assert_eq!(handle.counters().spooled, 96, "all but the queue's four");
    assert_eq!(spool_records(&cfg.spool_dir), before + 1);
    store.set_down(false);
    wait_until("100 stored", LONG, || async {
        store.stored() == 100 && handle.spool_is_empty()
    })
    .await;
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn guests_are_pseudonymised_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = store_config(dir.path());
    cfg.retention.pseudonymise_guests = true;
    let store = Arc::new(MockStore::default());
    let (tx, handle, _) = start(&cfg, &store);
    let guest = event(1, 1).with_role("guest").with_user("visitor");
    let staff = event(2, 1).with_role("staff").with_user("mrs.jones");
    tx.send(guest.clone()).expect("send");
    tx.send(staff.clone()).expect("send");
    wait_until("2 stored", LONG, || async { store.stored() == 2 }).await;
    let stored = store.events.lock().expect("lock").clone();
    let g = &stored[&guest.id];
    assert_ne!(g.user, guest.user);
    assert_ne!(g.client_ip, guest.client_ip);
    assert_eq!(stored[&staff.id], staff);
    assert!(
        dir.path().join("pseudonym.key").is_file(),
        "key created in the data dir"
    );
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn counters_serialise_for_the_dashboard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(MockStore::default());
    let (tx, handle, _) = start(&store_config(dir.path()), &store);
    tx.send(event(0, 1)).expect("send");
    wait_until("stored", LONG, || async { store.stored() == 1 }).await;
    let snapshot = handle.counters();
    let json = serde_json::to_string(&snapshot).expect("json");
    let back: CountersSnapshot = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, snapshot);
    assert_eq!(back.queued, 1);
    assert_eq!(back.inserted, 1);
    handle.shutdown().await;
}
