//! `[store]`: where events go, how they are batched and spooled, how long they are kept.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which event store receives the events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// SQLite in WAL mode on this machine: the default for a single school.
    #[default]
    Embedded,
    /// A ClickHouse server or cluster: for a large school or a whole trust.
    Clickhouse,
}

/// The `[store]` section.
///
/// Defaults: `backend = "embedded"`, `path = "var/events.sqlite"`,
/// `spool_dir = "var/spool"`, `dead_letter = "var/dead-letter.jsonl"`,
/// `queue_capacity = 16384`, `batch_size` by backend (see
/// [`StoreConfig::batch_size`]), `batch_timeout_ms = 1000`,
/// `spool_max_mb = 2048`, `journal = true`, `record = true`, retention as in
/// [`Retention`], no ClickHouse section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub backend: Backend,
    /// The SQLite file of the embedded store.
    pub path: PathBuf,
    /// Where events go when the in-memory queue is full or the store is down.
    pub spool_dir: PathBuf,
    /// Batches the store rejected as bad data, with the server's message.
    pub dead_letter: PathBuf,
    /// Events held in memory before spilling to the spool. An event queued
    /// costs about 700 bytes of memory (some 450 on the heap, and its journal
    /// record, whose pages count in the resident set until the batch is
    /// stored), so 16 Ki events is about 11 MB. That is seconds of a busy
    /// secondary school's traffic: only a flood the store cannot keep up with
    /// fills it, and then what overflows goes to the spool, a batch of events in
    /// one record (64 Ki, the default before, is about 45 MB when full).
    pub queue_capacity: usize,
    /// A batch closes at this many events (unset: by backend, see
    /// [`StoreConfig::batch_size`])...
    pub batch_size: Option<usize>,
    /// ...or after this long, whichever comes first, so the review screens are never
    /// more than a second behind.
    pub batch_timeout_ms: u64,
    /// Write each event to a journal in `spool_dir` before queueing it, so that
    /// events still in memory survive the process being killed (SIGKILL, OOM). A
    /// copy into a file mapped into memory, no system call and no `fsync`: about a
    /// microsecond an event. Off, a crash loses at most the events in the queue
    /// (`queue_capacity`).
    pub journal: bool,
    /// Keep an event for every decision (on). Off, decisions are only counted
    /// (`discarded` on the health page): no monitoring, no review queue, no alerts,
    /// and `config check` says so. It exists to measure what monitoring costs the
    /// filter (like Squid's `access_log none`); the DfE monitoring standard needs
    /// it on in a school.
    pub record: bool,
    /// The spool's size limit on disk; past it new *allowed* events are refused
    /// and counted (`dropped_allowed`), while blocked and flagged ones are still
    /// kept: the audit trail that matters is never the one cut.
    pub spool_max_mb: u64,
    pub retention: Retention,
    pub clickhouse: Option<ClickhouseConfig>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Embedded,
            path: PathBuf::from("var/events.sqlite"),
            spool_dir: PathBuf::from("var/spool"),
            dead_letter: PathBuf::from("var/dead-letter.jsonl"),
            queue_capacity: 16_384,
            batch_size: None,
            batch_timeout_ms: 1_000,
            spool_max_mb: 2_048,
            journal: true,
            record: true,
            retention: Retention::default(),
            clickhouse: None,
        }
    }
}

impl StoreConfig {
    /// Events a batch closes at: `batch_size` if set, else 2,000 for the
    /// embedded store and 10,000 for ClickHouse.
    ///
    /// SQLite commits 2,000 rows as cheaply a row as 10,000, and a smaller batch
    /// is less memory held while it is built and written: the proxy's peak RSS
    /// under load fell from 57 to 48 MB with a 1 M-name list (`wrk`, 20k
    /// requests/s, every request stored). ClickHouse wants few, large inserts
    /// (each one is a part on disk to merge), so it keeps 10,000.
    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(match self.backend {
            Backend::Embedded => 2_000,
            Backend::Clickhouse => 10_000,
        })
    }
}

/// `[store.retention]`: how long each class of event is kept (UK GDPR: no longer
/// than needed for the purpose).
///
/// Defaults: allowed traffic 90 days, blocked 365 days, flagged events 730 days
/// (two years, to cover an investigation), guests pseudonymised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    pub allowed_days: u32,
    pub blocked_days: u32,
    pub flagged_days: u32,
    /// Replace a guest's user name and address with a keyed hash in stored events.
    pub pseudonymise_guests: bool,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            allowed_days: 90,
            blocked_days: 365,
            flagged_days: 730,
            pseudonymise_guests: true,
        }
    }
}

/// `[store.clickhouse]`.
///
/// Defaults: `url = "http://127.0.0.1:8123"`, `database = "schoolgate"`,
/// `user = "default"`, empty password, no cluster, validation off (Debian's 18.16
/// server cannot answer the crate's schema validation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickhouseConfig {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// For a trust: the cluster name; tables are created `ON CLUSTER` as
    /// ReplicatedMergeTree with a Distributed table in front.
    pub cluster: Option<String>,
    pub validation: bool,
}

impl Default for ClickhouseConfig {
    fn default() -> Self {
        ClickhouseConfig {
            url: "http://127.0.0.1:8123".to_owned(),
            database: "schoolgate".to_owned(),
            user: "default".to_owned(),
            password: String::new(),
            cluster: None,
            validation: false,
        }
    }
}
