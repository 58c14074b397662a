//! Feeds the safeguarding alerter from the event store: every few seconds, the
//! flags this node stored since the last look (at or above `[alerts]
//! min_severity`) are offered to the reports crate's `Alerter`, which groups them
//! per episode, caps them per day and delivers them by email and webhook.
//!
//! Reading back from the store (rather than tapping the hot path) means an alert
//! is only ever sent for an event that is safely stored, and the DNS and proxy
//! paths stay untouched. Each node alerts its own events (`event.node`), so a
//! trust's nodes sharing one ClickHouse do not alert twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use schoolgate_events::{EventStore, FlaggedQuery, Period, Purpose};
use schoolgate_reports::{AlertSender, Offer};
use tokio_util::sync::CancellationToken;
use tracing::warn;
use ulid::Ulid;

/// How often the store is asked (alerts must arrive within a minute; events
/// reach the store within the pipeline's batch timeout).
const POLL: Duration = Duration::from_secs(10);

/// How far back each look reaches: a batch can land late, and a store can be
/// briefly down; events seen before are skipped by id.
const OVERLAP: SignedDuration = SignedDuration::from_mins(5);

pub async fn feed(
    store: Arc<dyn EventStore>,
    alerts: AlertSender,
    node: String,
    min_severity: schoolgate_classifier::Severity,
    shutdown: CancellationToken,
) {
    let purpose = Purpose::new("schoolgate", "same-day safeguarding alerts");
    // Only what happens from now on: history is the review queue's business.
    let started = Timestamp::now();
    let mut seen: HashSet<Ulid> = HashSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let now = Timestamp::now();
        let from = std::cmp::max(started, now - OVERLAP);
        let mut q = FlaggedQuery::new(Period::new(from, now + SignedDuration::from_secs(1)));
        q.min_severity = min_severity;
        q.limit = 5_000;
        match store.flagged(&q, &purpose).await {
            Ok(events) => {
                for e in events.iter().filter(|e| e.node == node) {
                    if seen.insert(e.id) && matches!(alerts.offer(e), Offer::Closed) {
                        return;
                    }
                }
                // Forget ids that have left the look-back window.
                let horizon = from.as_millisecond();
                seen.retain(|id| id.timestamp_ms() as i64 >= horizon);
            }
            Err(e) => warn!(error = %e, "alerts: cannot read flagged events; will retry"),
        }
    }
}
