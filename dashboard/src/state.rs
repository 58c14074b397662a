//! The dashboard's own SQLite database (`[dashboard] state`): accounts, sessions,
//! the audit log, configuration versions, review marks, incidents and wrong-block
//! reports, and the weekly summaries kept for the headteacher. Event data stays in
//! the event store; this file holds only what people did with it and figures.
//!
//! One connection behind a mutex, used on tokio's blocking pool: the dashboard has
//! a handful of users, and one writer keeps the audit hash chain strictly ordered.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use rusqlite::Connection;

use crate::error::{DashboardError, Result};

/// The schema. Tables are created if missing; every statement is idempotent.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL,
    hash            TEXT NOT NULL,
    failed          INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER NOT NULL DEFAULT 0,
    disabled        INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    last_login_ms   INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash  TEXT PRIMARY KEY,   -- SHA-256 of the cookie: a copied file holds no live session
    user_id     INTEGER NOT NULL REFERENCES users(id),
    csrf        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id);

-- Append-only: no dashboard code path updates or deletes, and the triggers refuse
-- it to anyone using this file through SQLite. `hash` chains every row to the one
-- before, so an edit made by dropping the triggers still shows.
CREATE TABLE IF NOT EXISTS audit (
    seq       INTEGER PRIMARY KEY,
    time_ms   INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    role      TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    reason    TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- The record of what is blocked and why: every configuration the filter ran.
CREATE TABLE IF NOT EXISTS config_versions (
    id       INTEGER PRIMARY KEY,
    time_ms  INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    reason   TEXT NOT NULL,
    summary  TEXT NOT NULL,   -- JSON list of one-line changes
    sha256   TEXT NOT NULL,
    text     TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS wrong_blocks (
    id          INTEGER PRIMARY KEY,
    time_ms     INTEGER NOT NULL,
    event_ref   TEXT NOT NULL,
    url         TEXT NOT NULL,
    message     TEXT NOT NULL,
    client_ip   TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'open',
    resolved_by TEXT,
    resolved_ms INTEGER,
    resolution  TEXT
);
CREATE INDEX IF NOT EXISTS wrong_blocks_status ON wrong_blocks(status, time_ms);

-- The DSL's marks on flagged events (an episode is reviewed when all its events are).
CREATE TABLE IF NOT EXISTS reviews (
    event_id    TEXT PRIMARY KEY,
    status      TEXT NOT NULL,     -- acknowledged | escalated
    actor       TEXT NOT NULL,
    time_ms     INTEGER NOT NULL,
    incident_id INTEGER
);
CREATE TABLE IF NOT EXISTS notes (
    id        INTEGER PRIMARY KEY,
    subject   TEXT NOT NULL,       -- user:NAME or client:IP
    event_id  TEXT NOT NULL,       -- the episode's first flagged event
    actor     TEXT NOT NULL,
    time_ms   INTEGER NOT NULL,
    text      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_subject ON notes(subject, time_ms);

-- The e-Safety Incident Log.
CREATE TABLE IF NOT EXISTS incidents (
    id              INTEGER PRIMARY KEY,
    reference       TEXT NOT NULL UNIQUE,
    opened_ms       INTEGER NOT NULL,
    opened_by       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    school          TEXT NOT NULL,
    severity        TEXT NOT NULL,
    categories      TEXT NOT NULL,
    summary         TEXT NOT NULL,
    status          TEXT NOT NULL,   -- open | investigating | closed
    actions_taken   TEXT NOT NULL DEFAULT '',
    people_informed TEXT NOT NULL DEFAULT '',
    closure         TEXT NOT NULL DEFAULT '',
    closed_ms       INTEGER,
    closed_by       TEXT,
    shared_with_head INTEGER NOT NULL DEFAULT 0,
    episode_from_ms INTEGER NOT NULL,
    episode_to_ms   INTEGER NOT NULL
);
-- Evidence is copied in when the incident is opened: it must outlive the event
-- store's retention and cannot change afterwards.
CREATE TABLE IF NOT EXISTS incident_evidence (
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    event_id    TEXT NOT NULL,
    time_ms     INTEGER NOT NULL,
    flagged     INTEGER NOT NULL,
    json        TEXT NOT NULL,
    PRIMARY KEY (incident_id, event_id)
);
-- The weekly summaries the weekly job built (and mailed): the headteacher's past
-- weeks, as they were sent. `json` is a `schoolgate_reports::WeeklySummary`.
CREATE TABLE IF NOT EXISTS weekly_summaries (
    week     TEXT NOT NULL,      -- ISO week, 2026-W47
    scope    TEXT NOT NULL,      -- trust | school | school-ID
    built_ms INTEGER NOT NULL,
    json     TEXT NOT NULL,
    PRIMARY KEY (week, scope)
);
CREATE TABLE IF NOT EXISTS incident_updates (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    time_ms     INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    text        TEXT NOT NULL
);
";

/// The handle to the state database.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (creating) the database and its schema.
    pub fn open(path: &Path) -> Result<Db> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // The audit log must survive a power cut: full fsync per commit. The
        // dashboard writes a few rows a minute, so the cost is nothing.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the blocking pool with the connection.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut c = conn
                .lock()
                .map_err(|_| DashboardError::Internal("state database lock poisoned".into()))?;
            f(&mut c)
        })
        .await
        .map_err(|e| DashboardError::Internal(format!("state task failed: {e}")))?
    }

    /// Runs `f` on the current thread (for the command line, outside a runtime).
    pub fn call_blocking<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut c = self
            .conn
            .lock()
            .map_err(|_| DashboardError::Internal("state database lock poisoned".into()))?;
        f(&mut c)
    }
}

/// The dashboard's notion of now. Production uses the system clock; tests use a
/// manual clock to expire sessions and lockouts without waiting.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Milliseconds added to the system time (manual clocks move by `advance`).
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    pub fn now(&self) -> Timestamp {
        let ms = Timestamp::now()
            .as_millisecond()
            .saturating_add(self.offset_ms.load(Ordering::Relaxed));
        Timestamp::from_millisecond(ms).unwrap_or_else(|_| Timestamp::now())
    }

    pub fn now_ms(&self) -> i64 {
        self.now().as_millisecond()
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// A timestamp from stored milliseconds (0 for nonsense, never a panic).
pub fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}
