//! Shared test helpers: a private ClickHouse server, deterministic events, a
//! scriptable in-memory store, pipeline configs and bounded waits.

#![allow(dead_code)]

pub mod clickhouse;
pub mod events;
pub mod mock;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use schoolgate_classifier::config::store::{Retention, StoreConfig};
use schoolgate_events::PipelineTuning;

/// Polls `check` until it holds; panics with `what` after `limit`. A bounded wait
/// for an asynchronous outcome, not a timing assertion.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    loop {
        if check().await {
            return;
        }
        if started.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `[store]` section rooted in `dir`, with small batches and queue.
pub fn store_config(dir: &Path) -> StoreConfig {
    StoreConfig {
        path: dir.join("events.sqlite"),
        spool_dir: dir.join("spool"),
        dead_letter: dir.join("dead-letter.jsonl"),
        queue_capacity: 1_024,
        batch_size: Some(500),
        batch_timeout_ms: 50,
        spool_max_mb: 512,
        retention: Retention {
            pseudonymise_guests: false,
            ..Retention::default()
        },
        ..StoreConfig::default()
    }
}

/// Quick back-off so fault tests recover in seconds.
pub fn fast_tuning() -> PipelineTuning {
    PipelineTuning {
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        fsync_interval: Duration::from_millis(100),
        insert_timeout: Duration::from_secs(10),
        shutdown_insert_timeout: Duration::from_secs(2),
        segment_bytes: 1 << 20,
        ..PipelineTuning::default()
    }
}
