//! The [`EventStore`] trait and its two implementations: [`sqlite`] for one
//! school, [`clickhouse`] for a large school or a trust. Both answer every query
//! the same way for the same data (the integration tests run one body against
//! both).

use std::fmt;
use std::io::Write;

use async_trait::async_trait;
use jiff::Timestamp;
use ulid::Ulid;

use crate::event::{AccessEvent, Batch};
use crate::query::{
    BypassAttempts, Count, EventSearch, ExportFilter, FlaggedQuery, GroupBy, HostCount, Period,
    PurgeReport, Purpose, Subject, Totals,
};

pub mod clickhouse;
pub mod csv;
pub mod sqlite;
pub mod writer_cpu;

/// Why a store operation failed, and so what the pipeline does about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Worth retrying: the server is down or busy, the network failed, a timeout.
    #[error("store unavailable: {message}")]
    Transient { message: String },
    /// The store says the data is bad: retrying cannot help. The pipeline writes
    /// the batch to the dead-letter file with `message`.
    #[error("store rejected the data (code {code:?}): {message}")]
    Data { code: Option<i32>, message: String },
    /// A query of personal data without a stated purpose.
    #[error("a query of personal data needs a purpose (actor and reason)")]
    NoPurpose,
    /// The query itself is wrong (e.g. a limit out of range).
    #[error("invalid query: {0}")]
    Query(String),
    /// Writing an export failed.
    #[error("export write failed: {0}")]
    Export(#[source] std::io::Error),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }

    pub fn transient(message: impl fmt::Display) -> StoreError {
        StoreError::Transient {
            message: message.to_string(),
        }
    }

    /// The store's own message, for the dead-letter file.
    pub fn message(&self) -> String {
        match self {
            StoreError::Transient { message } | StoreError::Data { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

/// Where events are stored and how the dashboard reads them.
///
/// Queries that return personal data (user names, client addresses, one person's
/// browsing) take a [`Purpose`] and refuse to run without one; aggregate-only
/// queries do not.
#[async_trait]
pub trait EventStore: Send + Sync + fmt::Debug {
    /// `"sqlite"` or `"clickhouse"`, for logs and the dead-letter file.
    fn name(&self) -> &'static str;

    /// Stores a batch. Idempotent per event id when `batch.maybe_stored` is set
    /// (the pipeline sets it on every retry and replay): an event already
    /// stored is not stored again (exactly, for SQLite; for ClickHouse with
    /// query-time dedup as the backstop). A fresh batch is not checked.
    async fn insert(&self, batch: &Batch) -> Result<(), StoreError>;

    /// Whether `insert` reads a batch's journal bytes (SQLite's blocks copy
    /// them): the batcher gathers them only for a store that does.
    fn reads_journal_bytes(&self) -> bool {
        false
    }

    /// Flagged events of the period at or above the severity, most severe first,
    /// then newest first.
    async fn flagged(
        &self,
        q: &FlaggedQuery,
        purpose: &Purpose,
    ) -> Result<Vec<AccessEvent>, StoreError>;

    /// Everyone's events of the period matching the search (host containing
    /// the text, a category, a school), newest first, at most `limit`.
    async fn search(
        &self,
        q: &EventSearch,
        purpose: &Purpose,
    ) -> Result<Vec<AccessEvent>, StoreError>;

    /// Everything one user or client did from `minutes` before `around` to
    /// `minutes` after, oldest first: "the minutes of browsing around it".
    async fn timeline(
        &self,
        subject: &Subject,
        around: Timestamp,
        minutes: i64,
        purpose: &Purpose,
    ) -> Result<Vec<AccessEvent>, StoreError>;

    /// One event by its id, or `None` when the store does not hold it (never
    /// stored, or purged). The SQLite store looks for an event that is not
    /// flagged near the time its id was made: within the hour of it, which an
    /// event made by `AccessEvent::new` or `at` always is.
    async fn event(&self, id: Ulid, purpose: &Purpose) -> Result<Option<AccessEvent>, StoreError>;

    /// Event, blocked and flagged counts per group, ordered by key. With a
    /// `school`, only that school's events (the aggregates below take the same
    /// filter, so one school of a trust can be summarised on its own).
    async fn counts(
        &self,
        period: &Period,
        group_by: GroupBy,
        school: Option<&str>,
    ) -> Result<Vec<Count>, StoreError>;

    /// The `n` most blocked hosts, most first, then by name.
    async fn top_blocked_hosts(
        &self,
        period: &Period,
        n: usize,
        school: Option<&str>,
    ) -> Result<Vec<HostCount>, StoreError>;

    /// Bypass attempts per circumvention category, in category order.
    async fn bypass_attempts(
        &self,
        period: &Period,
        school: Option<&str>,
    ) -> Result<Vec<BypassAttempts>, StoreError>;

    /// Writes the matching events as CSV (header first, oldest first); returns
    /// the number of rows.
    async fn export_csv(
        &self,
        period: &Period,
        filter: &ExportFilter,
        out: &mut (dyn Write + Send),
        purpose: &Purpose,
    ) -> Result<u64, StoreError>;

    /// The headline figures of a period (of one school's events, with `school`).
    async fn totals(&self, period: &Period, school: Option<&str>) -> Result<Totals, StoreError>;

    /// Deletes what is past its retention at `now`.
    async fn purge(&self, now: Timestamp) -> Result<PurgeReport, StoreError>;
}

/// The audit seam: refuses a personal-data query without a purpose and logs the
/// access (target `schoolgate::audit`) for the dashboard's audit log.
pub(crate) fn audit(
    purpose: &Purpose,
    what: &str,
    detail: &dyn fmt::Display,
) -> Result<(), StoreError> {
    if !purpose.is_stated() {
        return Err(StoreError::NoPurpose);
    }
    tracing::info!(
        target: "schoolgate::audit",
        actor = %purpose.actor,
        reason = %purpose.reason,
        query = what,
        detail = %detail,
        "personal data accessed"
    );
    Ok(())
}

/// The export's page size: bounded memory whatever the period.
pub(crate) const EXPORT_PAGE: usize = 5_000;

/// Keyset pagination cursor for exports: `(time_ms, id)` of the last row written.
pub(crate) type ExportCursor = Option<(i64, String)>;
