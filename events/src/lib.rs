//! schoolgate's event pipeline: every decision of the filter becomes an
//! [`AccessEvent`], and this crate gets it, without loss or duplication, into the
//! store the safeguarding reviews read.
//!
//! It owns:
//! - the event model ([`AccessEvent`], [`Batch`]) made where the decision is made;
//! - the [`Pipeline`]: a non-blocking [`EventSender`] for the hot path, a bounded
//!   queue, a batcher that retries transient failures with back-off and sends data
//!   errors to a dead-letter file, and [`Counters`] for the dashboard;
//! - the disk [`spool`], where events wait while the queue is full or the store is
//!   down, and from which they are replayed and then deleted;
//! - the write-ahead [`journal`], a memory-mapped file each event is copied into
//!   before it is queued, so an event `send` accepted survives the filter process
//!   being killed;
//! - the stores behind [`EventStore`]: [`SqliteStore`] (embedded, one school) and
//!   [`ClickhouseStore`] (a school or a whole trust), which answer the dashboard's
//!   and the reports' queries the same way;
//! - guests' pseudonymisation ([`privacy`]) before anything is written.
//!
//! It does not decide anything (that is `schoolgate-classifier`) and has no UI
//! (that is `schoolgate-dashboard`).
//!
//! # Layout
//!
//! ```text
//! event.rs          AccessEvent, Source, RetentionClass, Batch / BatchId
//! pipeline.rs       Pipeline::start, EventSender, PipelineHandle, the batcher
//! journal.rs        write-ahead journal: memory-mapped segments, lock-free appends (invariants at the top)
//! spool.rs          disk spool: segments of CRC-checked records + ledger (invariants at the top)
//! counters.rs       Counters / CountersSnapshot
//! dead_letter.rs    the dead-letter file (JSON lines)
//! privacy.rs        keyed-hash pseudonyms for guests
//! query.rs          Period, Purpose, FlaggedQuery, Subject, GroupBy and the answers
//! store/mod.rs      EventStore, StoreError
//! store/sqlite.rs   embedded store: WAL, one writer, hourly rollups, purge
//! store/clickhouse/ ClickHouse store: migrations per server version, escaping, queries
//! store/csv.rs      CSV export
//! ```

pub mod counters;
pub mod dead_letter;
pub mod event;
pub mod journal;
pub mod pipeline;
pub mod privacy;
pub mod query;
mod spare;
pub mod spool;
pub mod store;

pub use counters::{Counters, CountersSnapshot};
pub use dead_letter::{DeadLetter, DeadLetterFile};
pub use event::{AccessEvent, Batch, BatchId, RetentionClass, Source, set_text};
pub use pipeline::{
    Delivery, EventSender, Pipeline, PipelineError, PipelineHandle, PipelineTuning, SendError,
};
pub use privacy::Pseudonymiser;
pub use query::{
    BypassAttempts, Count, EventSearch, ExportFilter, FlaggedQuery, GroupBy, HostCount, Period,
    PurgeReport, Purpose, Subject, Totals,
};
pub use store::clickhouse::{ClickhouseStore, MigrationReport, ServerInfo};
pub use store::sqlite::SqliteStore;
pub use store::{EventStore, StoreError};
/// Event ids ([`EventStore::event`] takes one).
pub use ulid::Ulid;

use std::sync::Arc;

use schoolgate_classifier::config::store::{Backend, StoreConfig};

/// Why the configured store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("[store] backend = \"clickhouse\" needs a [store.clickhouse] section")]
    MissingClickhouse,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the store `[store] backend` names. For ClickHouse this does no I/O:
/// call [`ClickhouseStore::migrate`] at start-up (the server may be down; the
/// pipeline spools until it is back).
pub fn open_store(cfg: &StoreConfig) -> Result<Arc<dyn EventStore>, OpenError> {
    Ok(match cfg.backend {
        Backend::Embedded => Arc::new(SqliteStore::open(&cfg.path, cfg.retention.clone())?),
        Backend::Clickhouse => {
            let ch = cfg
                .clickhouse
                .as_ref()
                .ok_or(OpenError::MissingClickhouse)?;
            Arc::new(ClickhouseStore::new(ch, cfg.retention.clone()))
        }
    })
}
