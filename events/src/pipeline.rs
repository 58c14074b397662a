//! The pipeline: from `send(event)` on the hot path to a confirmed insert.
//!
//! ```text
//! EventSender::send --(journal)--try_send--> bounded queue --> batcher --insert--> EventStore
//!        | full / closed                                         | store down, or a
//!        v                                                       v transient failure
//!      spool (disk) <------------------------------------------- spool
//!        \------ replayed when the store answers, acknowledged only after it confirmed
//! ```
//!
//! - `send` never waits on the store: `try_send` into the bounded queue, and when
//!   that is full the event is appended to the disk spool right there (a short
//!   synchronous write under the spool's mutex, on the overflow path only).
//! - The journal (on by default, [`PipelineTuning::journal`]): the queue lives in
//!   memory, so a filter killed by SIGKILL or the OOM killer would lose what it
//!   held (up to `queue_capacity` events). With the journal, `send` first copies
//!   the event into `spool_dir/journal`, a file mapped into memory ([`journal`]:
//!   no system call, no lock); the batcher marks each event's record done once its
//!   batch is stored, dead-lettered or spooled, and at start-up whatever the
//!   journal still holds is moved to the spool and replayed. So an event is
//!   durable against a crash of the process as soon as `send` returns.
//!
//! [`journal`]: crate::journal
//! - The batcher closes a batch at `batch_size` events or `batch_timeout_ms`.
//!   After a take that emptied the queue it pauses (`GATHER`): a busy filter's
//!   events then wake it about fifty times a second, not once per event (each wake
//!   is a futex call on the hot path and a thread switch). A take that filled the
//!   batch is followed by the next at once, so a backlog never waits.
//! - A transient failure spools the batch and backs off (jittered exponential,
//!   capped at 30 s); while the store is down every new batch goes straight to the
//!   spool, so memory stays bounded by the queue. When the back-off ends, spooled
//!   batches are replayed (marked `maybe_stored`, so the store skips what it
//!   already has) and acknowledged in the spool only after the store confirmed.
//! - A data error is never retried as is: the batch is split in halves to find the
//!   bad events (at most ~2 log2(n) extra inserts for one bad event; when both
//!   halves fail, the fault is in the schema, not an event, and both halves go),
//!   and what fails goes to the dead-letter file with the store's message.
//! - Each batch carries its events' journal records as bytes (`Encoded`),
//!   when every event has one and the store reads them: the SQLite store
//!   copies them into its blocks instead of encoding the events again
//!   (ClickHouse writes rows of its own, so nothing is gathered for it). Once
//!   a batch is stored, its events are cleared and kept for the next ones to
//!   fill (`spare`), so their strings are not freed here and allocated again
//!   on the filter's threads.
//! - Shutdown (the cancellation token) closes the queue, drains it into the store
//!   (one attempt each, bounded by `shutdown_insert_timeout`) or else into the
//!   spool, and fsyncs the spool. Events sent after that go to the spool.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use schoolgate_classifier::config::store::StoreConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::counters::{Counters, CountersSnapshot};
use crate::dead_letter::DeadLetterFile;
use crate::event::{AccessEvent, Batch, RetentionClass};
use crate::journal::{self, Journal, JournalError, Slot};
use crate::privacy::{PseudonymError, Pseudonymiser};
use crate::spool::{Position, Spool, SpoolError, SpoolOptions};
use crate::store::{EventStore, StoreError};

/// Events per spool record: keeps a record far below the spool's size limit
/// whatever `batch_size` is.
const SPOOL_RECORD_EVENTS: usize = 5_000;

/// The batcher's pause after a take that emptied the queue (or `batch_timeout`,
/// if shorter). A take cut short by the batch's room is followed by the next at
/// once: pausing after it too capped the embedded store's 2,000-event batches at
/// 100,000 events a second. The queue's 16 Ki default holds this long of more
/// than 800,000 events a second, so the pause never pushes events into the spool.
const GATHER: Duration = Duration::from_millis(20);

/// Knobs that are not in the school's configuration: sensible defaults, changed
/// by tests and benchmarks.
#[derive(Clone, Debug)]
pub struct PipelineTuning {
    /// First back-off after a transient failure (250 ms), doubled each failure...
    pub backoff_base: Duration,
    /// ...up to this (30 s): a store back after an outage is used within 30 s.
    pub backoff_max: Duration,
    /// How often the spool is fsynced when written (1 s): the most spooled data a
    /// power cut can lose.
    pub fsync_interval: Duration,
    /// How often the counters are logged (60 s).
    pub stats_interval: Duration,
    /// Spool segment size (32 MiB).
    pub segment_bytes: u64,
    /// Journal segment size (1 MiB): written pages count in the resident set
    /// until the segment is deleted, so keep it small.
    pub journal_segment_bytes: usize,
    /// Longest wait for one insert before it counts as a transient failure (60 s).
    pub insert_timeout: Duration,
    /// Longest wait for an insert while shutting down before spooling instead (5 s):
    /// shutdown must not hang on a dead store.
    pub shutdown_insert_timeout: Duration,
    /// Roles whose events are pseudonymised when `pseudonymise_guests` is on.
    pub guest_roles: Vec<String>,
    /// Where the pseudonymisation key lives; default: the directory of
    /// `[store] path`.
    pub data_dir: Option<PathBuf>,
    /// Journal every event before it is queued (on): nothing `send` accepted is
    /// lost if the process dies. Off trades that for one write less per event.
    pub journal: bool,
}

impl Default for PipelineTuning {
    fn default() -> Self {
        PipelineTuning {
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            fsync_interval: Duration::from_secs(1),
            stats_interval: Duration::from_secs(60),
            segment_bytes: 32 << 20,
            journal_segment_bytes: 1 << 20,
            insert_timeout: Duration::from_secs(60),
            shutdown_insert_timeout: Duration::from_secs(5),
            guest_roles: vec!["guest".to_owned()],
            data_dir: None,
            journal: true,
        }
    }
}

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error("event spool: {0}")]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Pseudonym(#[from] PseudonymError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Why an event could not be accepted at all: the queue was full (or closed) and
/// the spool could not write it. Counted in `lost`; the caller should log it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    #[error("event lost: queue full and the spool failed: {0}")]
    Spool(#[from] SpoolError),
}

/// What happened to a sent event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// In the in-memory queue.
    Queued,
    /// The queue was full: written to the disk spool.
    Spooled,
    /// The queue was full and the spool over its size: an allowed event, dropped
    /// and counted (`dropped_allowed`).
    Dropped,
    /// `[store] record` is off: counted (`discarded`), not kept.
    Discarded,
}

#[derive(Debug)]
struct Shared {
    spool: Spool,
    journal: Option<Journal>,
    counters: Counters,
    pseudonymiser: Option<Pseudonymiser>,
}

/// What travels through the queue: the event and where the journal holds it.
#[derive(Debug)]
struct Queued {
    event: AccessEvent,
    journal: Option<Slot>,
}

impl Shared {
    /// Appends events to the spool; past the size cap, allowed events are
    /// refused (and counted) and blocked/flagged ones kept. Returns how many were
    /// written.
    fn spool_events(&self, events: Vec<AccessEvent>) -> Result<usize, SpoolError> {
        let events = if self.spool.over_cap() {
            let (keep, drop): (Vec<_>, Vec<_>) = events
                .into_iter()
                .partition(|e| e.retention_class() != RetentionClass::Allowed);
            if !drop.is_empty() {
                Counters::add(&self.counters.dropped_allowed, drop.len());
                warn!(
                    dropped = drop.len(),
                    "event spool over its size limit: allowed events dropped"
                );
            }
            keep
        } else {
            events
        };
        let mut written = 0;
        for chunk in events.chunks(SPOOL_RECORD_EVENTS) {
            let payload = serde_json::to_vec(chunk).map_err(|e| SpoolError::Io {
                path: self.spool.dir().to_owned(),
                source: std::io::Error::other(e),
            })?;
            self.spool.append(&payload)?;
            written += chunk.len();
            Counters::add(&self.counters.spooled, chunk.len());
        }
        self.refresh_gauges();
        Ok(written)
    }

    /// Events a journal still holds were in the queue when the process died (or
    /// were sent after shutdown): into the spool, whose replay stores them.
    fn recover_journal(
        &self,
        records: Vec<journal::Record>,
        dead_letter: &DeadLetterFile,
    ) -> Result<(), SpoolError> {
        let mut events = Vec::with_capacity(records.len());
        for record in records {
            match record.decode() {
                Ok(e) => events.push(e),
                Err(e) => {
                    if let Err(io) = dead_letter.write_raw(&e.to_string(), &record.payload) {
                        error!(error = %io, "dead-letter write failed");
                    }
                }
            }
        }
        if !events.is_empty() {
            info!(
                events = events.len(),
                "event journal: recovering events queued before the last stop"
            );
            self.spool_events(events)?;
            self.spool.sync()?;
        }
        Ok(())
    }

    fn refresh_gauges(&self) {
        self.counters
            .spool_bytes
            .store(self.spool.bytes(), std::sync::atomic::Ordering::Relaxed);
    }
}

/// The cheap, cloneable handle the DNS filter and the proxy send events with.
#[derive(Clone, Debug)]
pub struct EventSender {
    tx: mpsc::Sender<Queued>,
    shared: Arc<Shared>,
    /// `[store] record` is off: events are counted and dropped here.
    discard: bool,
}

impl EventSender {
    /// Hands an event to the pipeline without waiting: into the queue, or, when it
    /// is full (or the pipeline has shut down), into the disk spool. Guests are
    /// pseudonymised first, so their identity never reaches the disk.
    pub fn send(&self, event: AccessEvent) -> Result<Delivery, SendError> {
        let mut overflow = Vec::new();
        match self.offer(event, &mut overflow) {
            Some(delivery) => Ok(delivery),
            None => self.spool_overflow(overflow),
        }
    }

    /// [`EventSender::send`] for several events at once: what the full queue
    /// cannot take goes to the spool as one record, not one write per event (a
    /// flood past the queue would otherwise cost a system call an event).
    /// Returns how many were lost (the queue full and the spool failing: logged
    /// and counted as `lost`); 0 when every event was queued, spooled, or
    /// dropped and counted as `send` says.
    pub fn send_all(&self, events: Vec<AccessEvent>) -> usize {
        let mut overflow = Vec::new();
        for event in events {
            self.offer(event, &mut overflow);
        }
        let n = overflow.len();
        if n > 0 && self.spool_overflow(overflow).is_err() {
            return n;
        }
        0
    }

    /// Into the queue (journalled first); `None` when the queue did not take
    /// it and it was put in `overflow`, for the caller to spool.
    fn offer(&self, event: AccessEvent, overflow: &mut Vec<Queued>) -> Option<Delivery> {
        if self.discard {
            Counters::add(&self.shared.counters.discarded, 1);
            crate::spare::keep(event);
            return Some(Delivery::Discarded);
        }
        let event = match &self.shared.pseudonymiser {
            Some(p) => p.apply(event),
            None => event,
        };
        let counters = &self.shared.counters;
        Counters::add(&counters.queue_depth, 1);
        let sent = match &self.shared.journal {
            None => self.tx.try_send(Queued {
                event,
                journal: None,
            }),
            Some(journal) => {
                let slot = match journal.append(&event) {
                    Ok(slot) => Some(slot),
                    Err(e) => {
                        // Still queued: only crash-safety is lost for this event.
                        Counters::add(&counters.journal_failed, 1);
                        warn!(error = %e, "event journal write failed");
                        None
                    }
                };
                self.tx.try_send(Queued {
                    event,
                    journal: slot,
                })
            }
        };
        match sent {
            Ok(()) => {
                Counters::add(&counters.queued, 1);
                Some(Delivery::Queued)
            }
            Err(TrySendError::Closed(q)) if q.journal.is_some() => {
                // The pipeline has shut down; the journal has the event and the
                // next start moves it to the spool.
                Counters::sub(&counters.queue_depth, 1);
                Counters::add(&counters.spooled, 1);
                Some(Delivery::Spooled)
            }
            Err(TrySendError::Full(q) | TrySendError::Closed(q)) => {
                Counters::sub(&counters.queue_depth, 1);
                overflow.push(q);
                None
            }
        }
    }

    /// Spools events the queue did not take, in one record; their journal
    /// records are done once the spool has them. One event's delivery is
    /// returned (what `send` reports).
    fn spool_overflow(&self, overflow: Vec<Queued>) -> Result<Delivery, SendError> {
        let n = overflow.len();
        let (events, slots): (Vec<AccessEvent>, Vec<Option<Slot>>) =
            overflow.into_iter().map(|q| (q.event, q.journal)).unzip();
        match self.shared.spool_events(events) {
            Ok(written) => {
                for slot in slots.into_iter().flatten() {
                    slot.done();
                }
                Ok(if written == n {
                    Delivery::Spooled
                } else {
                    Delivery::Dropped
                })
            }
            Err(e) => {
                Counters::add(&self.shared.counters.lost, n);
                error!(error = %e, events = n, "events lost: queue full and the spool failed");
                Err(SendError::Spool(e))
            }
        }
    }

    pub fn counters(&self) -> CountersSnapshot {
        self.shared.refresh_gauges();
        self.shared.counters.snapshot()
    }
}

/// The running batcher: counters for the dashboard, and a way to wait for the
/// graceful shutdown.
#[derive(Debug)]
pub struct PipelineHandle {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl PipelineHandle {
    pub fn counters(&self) -> CountersSnapshot {
        self.shared.refresh_gauges();
        self.shared.counters.snapshot()
    }

    /// Nothing waiting on disk: every spooled event was confirmed.
    pub fn spool_is_empty(&self) -> bool {
        self.shared.spool.is_empty()
    }

    /// Waits for the batcher to finish (after the token was cancelled).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            error!(error = %e, "event batcher task failed");
        }
    }

    /// Cancels the token and waits for the drain.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.join().await;
    }
}

/// After a batch: its events' journal records are done when it is safe; when it
/// is not (the spool failed too), the records stay in the journal, where the
/// next start finds them.
fn settle_slots(slots: &mut Vec<Slot>, safe: bool) {
    if safe {
        slots.drain(..).for_each(Slot::done);
    } else {
        slots.clear();
    }
}

/// Starts the pipeline.
#[derive(Debug)]
pub struct Pipeline;

impl Pipeline {
    /// Starts the pipeline for `[store]` with default tuning (the journal as
    /// `[store] journal` says). Must be called
    /// within a tokio runtime. Opening the spool (and the pseudonymisation key)
    /// can fail, so this returns a `Result`.
    pub fn start(
        cfg: &StoreConfig,
        store: Arc<dyn EventStore>,
        shutdown: CancellationToken,
    ) -> Result<(EventSender, PipelineHandle), PipelineError> {
        let tuning = PipelineTuning {
            journal: cfg.journal,
            ..PipelineTuning::default()
        };
        Pipeline::start_with(cfg, store, shutdown, tuning)
    }

    pub fn start_with(
        cfg: &StoreConfig,
        store: Arc<dyn EventStore>,
        shutdown: CancellationToken,
        tuning: PipelineTuning,
    ) -> Result<(EventSender, PipelineHandle), PipelineError> {
        let spool = Spool::open(
            &cfg.spool_dir,
            SpoolOptions {
                max_bytes: cfg.spool_max_mb.saturating_mul(1 << 20),
                segment_bytes: tuning.segment_bytes.max(1),
                fsync: true,
            },
        )?;
        let pseudonymiser = if cfg.retention.pseudonymise_guests {
            let dir = tuning.data_dir.clone().unwrap_or_else(|| {
                cfg.path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(|p| p.to_owned())
                    .unwrap_or_else(|| PathBuf::from("."))
            });
            Some(Pseudonymiser::load_or_create(
                &dir,
                tuning.guest_roles.clone(),
            )?)
        } else {
            None
        };
        // Always read what an earlier run left, even with the journal now off.
        let journal_dir = cfg.spool_dir.join("journal");
        let mut recovered = journal::recover(&journal_dir)?;
        let journal = if tuning.journal && cfg.record {
            Some(Journal::open(
                &journal_dir,
                tuning.journal_segment_bytes,
                &recovered,
            )?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            spool,
            journal,
            counters: Counters::default(),
            pseudonymiser,
        });
        let dead_letter = Arc::new(DeadLetterFile::new(cfg.dead_letter.clone()));
        shared.recover_journal(std::mem::take(&mut recovered.records), &dead_letter)?;
        journal::discard(recovered)?;
        shared.refresh_gauges();
        // `mpsc::channel(0)` panics; a config of 0 means "as small as possible".
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let batcher = Batcher {
            shared: Arc::clone(&shared),
            store,
            dead_letter,
            batch_size: cfg.batch_size().max(1),
            batch_timeout: Duration::from_millis(cfg.batch_timeout_ms.max(1)),
            backoff: Backoff::new(tuning.backoff_base, tuning.backoff_max),
            tuning,
            pending: None,
            replay_wanted: true,
            spooled_seen: 0,
        };
        let task = tokio::spawn(batcher.run(rx, shutdown.clone()));
        Ok((
            EventSender {
                tx,
                shared: Arc::clone(&shared),
                discard: !cfg.record,
            },
            PipelineHandle {
                shared,
                shutdown,
                task,
            },
        ))
    }
}

/// Jittered exponential back-off.
#[derive(Debug)]
struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
    until: Option<Instant>,
}

impl Backoff {
    fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            failures: 0,
            until: None,
        }
    }

    /// Records a failure; the next attempt waits a random time in
    /// `[d/2, d]`, `d = min(max, base * 2^failures)`: the jitter keeps the nodes of a
    /// trust from hammering a recovering cluster in step.
    fn fail(&mut self) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << self.failures.min(16))
            .min(self.max);
        let half = exp / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
        let wait = half + Duration::from_millis(jitter);
        self.failures = self.failures.saturating_add(1);
        self.until = Some(Instant::now() + wait);
        wait
    }

    fn succeed(&mut self) {
        self.failures = 0;
        self.until = None;
    }

    fn is_waiting(&self) -> bool {
        self.until.is_some_and(|u| Instant::now() < u)
    }
}

/// A replayed batch whose insert failed transiently: retried after the back-off,
/// and acknowledged in the spool (`ack`) once stored.
#[derive(Debug)]
struct Pending {
    batch: Batch,
    ack: Option<Position>,
}

/// How a batch ended up.
enum Outcome {
    /// Stored, or dead-lettered: done with.
    Settled,
    /// Not stored: try again later (the batch may be partly stored by now).
    Retry(StoreError),
}

struct Batcher {
    shared: Arc<Shared>,
    store: Arc<dyn EventStore>,
    dead_letter: Arc<DeadLetterFile>,
    batch_size: usize,
    batch_timeout: Duration,
    backoff: Backoff,
    tuning: PipelineTuning,
    pending: Option<Pending>,
    /// Something may be waiting in the spool (set at start and whenever the
    /// `spooled` counter moved), so replay is not polled in a busy loop.
    replay_wanted: bool,
    spooled_seen: u64,
}

impl Batcher {
    async fn run(mut self, mut rx: mpsc::Receiver<Queued>, shutdown: CancellationToken) {
        let mut buffer: Vec<AccessEvent> = Vec::with_capacity(self.batch_size);
        let mut incoming: Vec<Queued> = Vec::with_capacity(self.batch_size);
        // The journal records of the events in `buffer`, in the same order
        // (fewer when a journal write failed).
        let mut slots: Vec<Slot> = Vec::new();
        let mut deadline: Option<Instant> = None;
        // Set after a take from the queue: the next take waits until then.
        let mut gather_until: Option<Instant> = None;
        let gather = GATHER.min(self.batch_timeout);
        let mut fsync = tokio::time::interval(self.tuning.fsync_interval);
        fsync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut stats = tokio::time::interval(self.tuning.stats_interval);
        stats.set_missed_tick_behavior(MissedTickBehavior::Delay);
        stats.reset();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let spooled = self
                .shared
                .counters
                .spooled
                .load(std::sync::atomic::Ordering::Relaxed);
            if spooled != self.spooled_seen {
                self.spooled_seen = spooled;
                self.replay_wanted = true;
            }
            let waiting = self.backoff.is_waiting();
            let can_replay = !waiting && (self.pending.is_some() || self.replay_wanted);
            let backoff_until = self.backoff.until.filter(|_| waiting);
            let room = self.batch_size.saturating_sub(buffer.len());
            tokio::select! {
                _ = shutdown.cancelled() => break,
                n = rx.recv_many(&mut incoming, room), if room > 0 && gather_until.is_none() => {
                    if n == 0 {
                        break;
                    }
                    // Only a take that emptied the queue pauses (see `GATHER`).
                    if n < room {
                        gather_until = Some(Instant::now() + gather);
                    }
                    Counters::sub(&self.shared.counters.queue_depth, n);
                    for q in incoming.drain(..) {
                        slots.extend(q.journal);
                        buffer.push(q.event);
                    }
                    if deadline.is_none() {
                        deadline = Some(Instant::now() + self.batch_timeout);
                    }
                    if buffer.len() >= self.batch_size {
                        let events = std::mem::take(&mut buffer);
                        deadline = None;
                        let safe = self.flush(events, &slots).await;
                        settle_slots(&mut slots, safe);
                    }
                }
                _ = sleep_until_opt(gather_until), if gather_until.is_some() => {
                    gather_until = None;
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() => {
                    let events = std::mem::take(&mut buffer);
                    deadline = None;
                    let safe = self.flush(events, &slots).await;
                    settle_slots(&mut slots, safe);
                }
                _ = sleep_until_opt(backoff_until), if backoff_until.is_some() => {
                    debug!("event store back-off over; retrying");
                }
                _ = std::future::ready(()), if can_replay => {
                    self.replay_one().await;
                }
                _ = fsync.tick() => {
                    let shared = Arc::clone(&self.shared);
                    let sync = move || shared.spool.sync();
                    match tokio::task::spawn_blocking(sync).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => warn!(error = %e, "event spool fsync failed"),
                        Err(e) => warn!(error = %e, "event spool fsync task failed"),
                    }
                }
                _ = stats.tick() => {
                    let c = self.shared.counters.snapshot();
                    info!(
                        target: "schoolgate::events",
                        queued = c.queued, queue_depth = c.queue_depth, spooled = c.spooled,
                        inserted = c.inserted, retried = c.retried,
                        dead_lettered = c.dead_lettered, spool_bytes = self.shared.spool.bytes(),
                        dropped_allowed = c.dropped_allowed, lost = c.lost,
                        "event pipeline"
                    );
                }
            }
        }
        self.drain(rx, buffer, slots).await;
    }

    /// Shutdown: no new events into the queue (senders spool from now on), the
    /// queue and the open batch into the store if it answers in time, else the
    /// spool.
    async fn drain(
        mut self,
        mut rx: mpsc::Receiver<Queued>,
        mut buffer: Vec<AccessEvent>,
        mut slots: Vec<Slot>,
    ) {
        rx.close();
        while let Some(q) = rx.recv().await {
            Counters::sub(&self.shared.counters.queue_depth, 1);
            slots.extend(q.journal);
            buffer.push(q.event);
        }
        let mut safe = true;
        let waiting = self.backoff.is_waiting();
        let events = std::mem::take(&mut buffer);
        for chunk in events.chunks(self.batch_size) {
            let batch = Batch::new(chunk.to_vec());
            let stored = if waiting {
                false
            } else {
                match tokio::time::timeout(self.tuning.shutdown_insert_timeout, self.settle(&batch))
                    .await
                {
                    Ok(Outcome::Settled) => true,
                    Ok(Outcome::Retry(e)) => {
                        warn!(error = %e, "event store unavailable at shutdown; spooling");
                        false
                    }
                    Err(_) => {
                        warn!("event store too slow at shutdown; spooling");
                        false
                    }
                }
            };
            if !stored {
                safe &= self.spool_or_log(batch.events.to_vec());
            }
        }
        settle_slots(&mut slots, safe);
        // A replay in flight stays unacknowledged in the spool: replayed next start.
        self.pending = None;
        if let Err(e) = self.shared.spool.sync() {
            error!(error = %e, "event spool fsync at shutdown failed");
        }
        self.shared.refresh_gauges();
        let c = self.shared.counters.snapshot();
        info!(
            target: "schoolgate::events",
            inserted = c.inserted, spooled = c.spooled, dead_lettered = c.dead_lettered,
            spool_bytes = c.spool_bytes, "event pipeline stopped"
        );
    }

    /// Spools events; `false` if the spool failed (they are then only in the
    /// journal, if that is on, and counted as lost otherwise).
    fn spool_or_log(&self, events: Vec<AccessEvent>) -> bool {
        let n = events.len();
        match self.shared.spool_events(events) {
            Ok(_) => true,
            Err(e) => {
                if self.shared.journal.is_none() {
                    Counters::add(&self.shared.counters.lost, n);
                }
                error!(error = %e, events = n, "spooling events failed");
                false
            }
        }
    }

    /// A batch closed by size or time. `true` when it is safe (stored,
    /// dead-lettered or spooled), so the journal may let go of it.
    /// `slots`: the events' journal records; their bytes go with the batch
    /// when every event has one and the store reads them.
    async fn flush(&mut self, events: Vec<AccessEvent>, slots: &[Slot]) -> bool {
        if events.is_empty() {
            return true;
        }
        if self.backoff.is_waiting() {
            // The store is down: straight to disk, keep memory bounded.
            return self.spool_or_log(events);
        }
        let mut batch = Batch::new(events);
        if self.store.reads_journal_bytes() {
            batch = batch.with_encoded(slots.iter().map(Slot::payload).collect());
        }
        match self.settle(&batch).await {
            Outcome::Settled => {
                self.backoff.succeed();
                // The stored events' strings, for the next events to fill (the
                // store has let go of its share by now; if not, they are freed).
                if let Ok(events) = Arc::try_unwrap(batch.events) {
                    crate::spare::give(events);
                }
                true
            }
            Outcome::Retry(e) => {
                let wait = self.backoff.fail();
                Counters::add(&self.shared.counters.retried, 1);
                warn!(error = %e, batch = %batch.id, retry_in_ms = wait.as_millis() as u64, "event insert failed; spooling the batch");
                // A failure path: the copy is the price of sharing the batch.
                self.spool_or_log(batch.events.to_vec())
            }
        }
    }

    /// Replays the pending batch, or the next batch from the spool.
    async fn replay_one(&mut self) {
        let (batch, ack) = match self.pending.take() {
            Some(p) => (p.batch, p.ack),
            None => match self.read_spool() {
                Some(next) => next,
                None => return,
            },
        };
        match self.settle(&batch).await {
            Outcome::Settled => {
                self.backoff.succeed();
                if let Some(pos) = ack
                    && let Err(e) = self.shared.spool.ack(pos)
                {
                    // Stored but not acknowledged: replayed (and deduplicated) at
                    // the next start.
                    warn!(error = %e, "event spool acknowledgement failed");
                }
                self.shared.refresh_gauges();
            }
            Outcome::Retry(e) => {
                let wait = self.backoff.fail();
                Counters::add(&self.shared.counters.retried, 1);
                warn!(error = %e, batch = %batch.id, retry_in_ms = wait.as_millis() as u64, "spool replay failed; will retry");
                self.pending = Some(Pending {
                    batch: batch.replayed(),
                    ack,
                });
            }
        }
    }

    /// Reads up to a batch of events from the spool. Records that do not decode
    /// (they passed the checksum, so they are ours, but from an incompatible
    /// version) go to the dead-letter file raw.
    fn read_spool(&mut self) -> Option<(Batch, Option<Position>)> {
        let mut events = Vec::new();
        let mut last = None;
        while events.len() < self.batch_size {
            match self.shared.spool.read_next() {
                Ok(Some(record)) => {
                    last = Some(record.end);
                    match serde_json::from_slice::<Vec<AccessEvent>>(&record.payload) {
                        Ok(mut decoded) => events.append(&mut decoded),
                        Err(e) => {
                            let message = format!("spool record does not decode: {e}");
                            if let Err(io) = self.dead_letter.write_raw(&message, &record.payload) {
                                error!(error = %io, "dead-letter write failed");
                            }
                        }
                    }
                }
                Ok(None) => {
                    self.replay_wanted = false;
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "event spool read failed");
                    self.replay_wanted = false;
                    break;
                }
            }
        }
        self.shared.counters.spool_corrupt.store(
            self.shared.spool.skipped_records(),
            std::sync::atomic::Ordering::Relaxed,
        );
        if events.is_empty() {
            if let Some(pos) = last
                && let Err(e) = self.shared.spool.ack(pos)
            {
                warn!(error = %e, "event spool acknowledgement failed");
            }
            self.shared.refresh_gauges();
            return None;
        }
        Some((Batch::new(events).replayed(), last))
    }

    async fn insert(&self, batch: &Batch) -> Result<(), StoreError> {
        match tokio::time::timeout(self.tuning.insert_timeout, self.store.insert(batch)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::transient(format!(
                "insert timed out after {:?}",
                self.tuning.insert_timeout
            ))),
        }
    }

    /// Inserts; on a data error, narrows down the bad events by halving and
    /// dead-letters them; the rest is stored.
    async fn settle(&self, batch: &Batch) -> Outcome {
        let n = batch.len();
        let err = match self.insert(batch).await {
            Ok(()) => {
                Counters::add(&self.shared.counters.inserted, n);
                return Outcome::Settled;
            }
            Err(e) if e.is_transient() => return Outcome::Retry(e),
            Err(e) => e,
        };
        // Data errors are rare: copying the batch to split it costs nothing that
        // matters here.
        let mut suspect = batch.clone();
        let mut err = err;
        loop {
            if suspect.len() <= 1 {
                return self.dead_letter(&suspect, &err).await;
            }
            let maybe_stored = suspect.maybe_stored;
            let (left, right) = suspect.events.split_at(suspect.len() / 2);
            let mut left = Batch::new(left.to_vec());
            let mut right = Batch::new(right.to_vec());
            left.maybe_stored = maybe_stored;
            right.maybe_stored = maybe_stored;
            let l = self.insert(&left).await;
            let r = self.insert(&right).await;
            for (half, result) in [(&left, &l), (&right, &r)] {
                if result.is_ok() {
                    Counters::add(&self.shared.counters.inserted, half.len());
                }
            }
            match (l, r) {
                (Err(e), _) | (_, Err(e)) if e.is_transient() => {
                    return Outcome::Retry(e);
                }
                (Ok(()), Ok(())) => return Outcome::Settled,
                (Err(e), Ok(())) => {
                    suspect = left;
                    err = e;
                }
                (Ok(()), Err(e)) => {
                    suspect = right;
                    err = e;
                }
                (Err(el), Err(er)) => {
                    // Both halves bad: the schema or the server, not one event.
                    if let Outcome::Retry(e) = self.dead_letter(&left, &el).await {
                        return Outcome::Retry(e);
                    }
                    return self.dead_letter(&right, &er).await;
                }
            }
        }
    }

    async fn dead_letter(&self, batch: &Batch, err: &StoreError) -> Outcome {
        let dl = Arc::clone(&self.dead_letter);
        let (id, store, message, events) = (
            batch.id,
            self.store.name(),
            err.message(),
            batch.events.clone(),
        );
        let written =
            tokio::task::spawn_blocking(move || dl.write_events(id, store, &message, &events))
                .await;
        match written {
            Ok(Ok(())) => {
                Counters::add(&self.shared.counters.dead_lettered, batch.len());
                error!(
                    batch = %batch.id, events = batch.len(), error = %err,
                    path = %self.dead_letter.path().display(),
                    "event store rejected data; written to the dead-letter file"
                );
                Outcome::Settled
            }
            Ok(Err(e)) => Outcome::Retry(StoreError::transient(format!(
                "dead-letter write failed: {e}"
            ))),
            Err(e) => Outcome::Retry(StoreError::transient(format!(
                "dead-letter task failed: {e}"
            ))),
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paused clock: the back-off waits within `[d/2, d]`, doubles, stops at the
    /// cap, and ends when its time has passed; success resets it.
    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert!(!b.is_waiting());
        let mut ceiling = Duration::from_millis(100);
        for _ in 0..8 {
            let wait = b.fail();
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{wait:?} vs {ceiling:?}"
            );
            assert!(b.is_waiting());
            tokio::time::advance(wait).await;
            assert!(!b.is_waiting());
            ceiling = (ceiling * 2).min(Duration::from_secs(1));
        }
        b.succeed();
        assert_eq!(b.failures, 0);
        assert!(b.fail() <= Duration::from_millis(100));
    }
}
