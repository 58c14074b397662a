//! The embedded store: SQLite in WAL mode, for a single school.
//!
//! - One writer connection on its own thread (`sqlite-writer`), which takes the
//!   writes one at a time, so inserts never block the runtime and never contend
//!   with each other. The thread runs at a lower CPU priority (nice
//!   [`WRITER_NICE`], and `SCHED_IDLE` while it keeps up: see [`super::writer_cpu`]):
//!   a batch insert takes milliseconds of CPU, and on a small box the DNS and
//!   proxy threads answering pupils should not queue behind it.
//!   Readers use their own connections on the blocking pool (WAL lets them run
//!   beside the writer).
//! - Where events live: flagged events are rows of `events`, with the indexes
//!   the review queue, the incident links and the timeline use; every other
//!   event (allowed and blocked traffic, nearly all of it) goes into
//!   `event_blocks`, many to a row (see `blocks`). Queries read both and
//!   merge. A database from before blocks keeps its old rows in `events`, and
//!   they are answered the same way.
//! - `synchronous=NORMAL`: a commit is durable against a process crash at once and
//!   against a power cut at the next checkpoint; the pipeline's spool covers the
//!   rest.
//! - Every insert also updates `rollup_hourly` (per hour x school x role x action x
//!   category counts) in the same transaction, so a week's counts read a few
//!   thousand rollup rows instead of tens of millions of events. Only events
//!   really inserted are counted: a batch marked `maybe_stored` (every retry and
//!   replay is) first drops the events already stored, and flagged rows are
//!   `INSERT OR IGNORE` on the event id, so a replayed batch neither duplicates
//!   events nor inflates the rollups.
//! - `rollup_seen` keeps, per hour x school x retention class, who was seen (each
//!   user and each client address once) and which bypass categories each tried
//!   to reach, so a week's distinct users, devices and bypass attempts (the
//!   weekly summary) read some thousand rows, not a week of events. A database
//!   made before the table existed is backfilled from its events on open. The
//!   writer remembers the rows it committed and writes a row again only when
//!   it gains a bypass category: most of a batch's users and devices were seen
//!   earlier in the hour.
//! - Retention: [`SqliteStore::purge`] deletes each class of event past its days
//!   (rounded down to the hour; a block holds one hour of one class), with its
//!   rollup rows, so counts over a purged
//!   period agree with the raw events (and with the ClickHouse store). Deletes run
//!   in small transactions so the writer is never held for long.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{Connection, ErrorCode, OpenFlags, Row, Statement, params};
use schoolgate_classifier::config::store::Retention;
use schoolgate_classifier::{Action, Category, CategorySet, Severity};
use ulid::Ulid;

mod blocks;

use blocks::{Narrow, Stored};

pub use super::writer_cpu::WRITER_NICE;
use super::writer_cpu::{CpuPolicy, WriterCpu};
use super::{EventStore, StoreError, audit, csv};
use crate::event::{AccessEvent, Batch, RetentionClass, Source, bypass_mask};
use crate::query::{
    BypassAttempts, Count, EventSearch, ExportFilter, FlaggedQuery, GroupBy, HostCount, Period,
    PurgeReport, Purpose, Subject, Totals, day_key, sort_counts,
};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// An export reads this much of its period at a time (memory: one slice's events).
const EXPORT_SLICE_MS: i64 = 600_000;
/// Rows deleted per purge transaction.
const PURGE_CHUNK: usize = 10_000;
/// Idle read connections kept open.
const READER_POOL: usize = 4;
/// The WAL is copied into the database after this many pages (about 40 MB),
/// not SQLite's default of 1 000. Many commits rewrite the same index pages
/// (the right edge of `events_time_host`, a busy client's leaf of
/// `events_client`, the hour's rollup rows); between two checkpoints such a page
/// is copied into the database once, however often it was committed. Measured
/// with `sqlite_row_cost` (200 000 events in batches of 1 000): 13.0–13.5 →
/// 11.2–11.4 µs of CPU and 24–26 → 16 µs of wall time per stored event. The
/// WAL file keeps the size it reached, some 40 MB.
pub const WAL_CHECKPOINT_PAGES: i64 = 10_000;

const SCHEMA: &str = "
-- Flagged events; in a database from before `event_blocks`, every event.
CREATE TABLE IF NOT EXISTS events (
    id           TEXT PRIMARY KEY,
    time_ms      INTEGER NOT NULL,
    class        INTEGER NOT NULL,
    source       INTEGER NOT NULL,
    school       TEXT NOT NULL,
    node         TEXT NOT NULL,
    client_ip    TEXT NOT NULL,
    user         TEXT,
    device       TEXT,
    role         TEXT NOT NULL,
    method       TEXT NOT NULL,
    host         TEXT NOT NULL,
    path         TEXT NOT NULL,
    search_terms TEXT NOT NULL,
    action       INTEGER NOT NULL,
    categories   INTEGER NOT NULL,
    severity     INTEGER,
    rule         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    status       INTEGER NOT NULL,
    bytes_up     INTEGER NOT NULL,
    bytes_down   INTEGER NOT NULL,
    duration_us  INTEGER NOT NULL,
    cached       INTEGER NOT NULL
);
-- Period scans (totals, bypass, exports, purge).
-- Periods, and the search of everyone's browsing: with the host and the
-- categories in the index, the search tests each event of the period in the
-- index and reads the table only for the matches.
DROP INDEX IF EXISTS events_time;
CREATE INDEX IF NOT EXISTS events_time_host ON events(time_ms, host, categories);
-- The review queue: flagged events of a period, most severe then newest first,
-- the first few thousand. A partial index (flagged rows only, about 1%) in exactly
-- that order lets `flagged` walk it and stop at the limit, without sorting the
-- period's flags: 10 M events, 90 days' flags (98 k): 0.05 s, against 0.2 s of
-- CPU for an index on time that still sorts them all (0.7 s with table reads).
DROP INDEX IF EXISTS events_flagged_time;
DROP INDEX IF EXISTS events_flagged_rows;
CREATE INDEX IF NOT EXISTS events_flagged_rank ON events(COALESCE(severity, 1), time_ms, id,
    school, user) WHERE action = 1 OR severity IS NOT NULL;
-- Superseded by `events_flagged_rank`; no query used it, every flagged insert paid for it.
DROP INDEX IF EXISTS events_flagged;
-- One person's history and the timeline around a flag.
CREATE INDEX IF NOT EXISTS events_user ON events(user, time_ms) WHERE user IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_client ON events(client_ip, time_ms);
-- Top blocked hosts.
CREATE INDEX IF NOT EXISTS events_blocked ON events(time_ms, host) WHERE action = 3;
CREATE TABLE IF NOT EXISTS rollup_hourly (
    hour     INTEGER NOT NULL, -- unix ms / 3 600 000
    school   TEXT NOT NULL,
    role     TEXT NOT NULL,
    action   INTEGER NOT NULL,
    class    INTEGER NOT NULL, -- retention class: purged with the events
    category INTEGER NOT NULL, -- category id, or -1 for the row counting every event once
    events   INTEGER NOT NULL,
    flagged  INTEGER NOT NULL,
    PRIMARY KEY (hour, school, role, action, class, category)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_seen (
    hour    INTEGER NOT NULL, -- unix ms / 3 600 000
    school  TEXT NOT NULL,
    class   INTEGER NOT NULL, -- retention class: purged with the events
    kind    INTEGER NOT NULL, -- 0: a user name, 1: a client address
    who     TEXT NOT NULL,
    bypass  INTEGER NOT NULL, -- bypass category bits of its blocked or flagged events
    PRIMARY KEY (hour, school, class, kind, who)
) WITHOUT ROWID;
";

/// `rollup_seen.kind`.
const SEEN_USER: i64 = 0;
const SEEN_CLIENT: i64 = 1;

/// The events column a `rollup_seen.kind` counts.
fn seen_column(kind: i64) -> &'static str {
    if kind == SEEN_USER {
        "user"
    } else {
        "client_ip"
    }
}

const COLUMNS: &str = "id, time_ms, source, school, node, client_ip, user, device, role, method, \
     host, path, search_terms, action, categories, severity, rule, reason, status, bytes_up, \
     bytes_down, duration_us, cached";

const FLAGGED: &str = "(action = 1 OR severity IS NOT NULL)";

/// The embedded SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    path: PathBuf,
    retention: Retention,
    writer: mpsc::Sender<WriteJob>,
    cpu: Arc<WriterCpu>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating) the database at `path` and its schema.
    pub fn open(path: impl AsRef<Path>, retention: Retention) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, retention, CpuPolicy::default())
    }

    /// [`SqliteStore::open`] with the writer's CPU policy given.
    pub fn open_with(
        path: impl AsRef<Path>,
        retention: Retention,
        cpu: CpuPolicy,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_owned();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::transient(format!("{}: {e}", parent.display())))?;
        }
        let conn = Connection::open(&path).map_err(classify)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(classify)?;
        // WAL: readers never block the writer; NORMAL: fsync at checkpoints, not
        // per commit (durable against a crash, not a power cut, which the spool
        // and a short window cover).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(classify)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(classify)?;
        // The writer's page cache (default 2 MB) must hold the index leaves a
        // batch touches (one per client in `events_client`), or each 10 000-event
        // batch spills dirty pages and reads them back mid-transaction (seen as
        // `pagerStress`/`readDbPage` in a profile of the ingest bench). 8 MiB holds a
        // 10 000-event batch; the cache grows only as far as it is used.
        conn.pragma_update(None, "cache_size", -8_192)
            .map_err(classify)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(classify)?;
        let had_events = table_exists(&conn, "events")?;
        let had_seen = table_exists(&conn, "rollup_seen")?;
        conn.execute_batch(SCHEMA).map_err(classify)?;
        conn.execute_batch(blocks::SCHEMA).map_err(classify)?;
        if had_events && !had_seen {
            backfill_seen(&conn)?;
        }
        let (writer, jobs) = mpsc::channel::<WriteJob>();
        let cpu = Arc::new(WriterCpu::new(cpu));
        let on_thread = Arc::clone(&cpu);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(conn, jobs, &on_thread))
            .map_err(|e| StoreError::transient(format!("sqlite writer thread: {e}")))?;
        Ok(SqliteStore {
            path,
            retention,
            writer,
            cpu,
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer thread's scheduling.
    pub fn writer_cpu(&self) -> &WriterCpu {
        &self.cpu
    }

    /// Runs `f` on the writer thread, with its connection and state. A write
    /// that waits `hurry_after` brings the writer out of the background.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.writer
            .send(Box::new(move |w: &mut Writer| {
                // The caller may have gone (a timed-out insert): nothing to tell.
                let _ = done.send(f(w));
            }))
            .map_err(|_| StoreError::transient("sqlite writer thread has stopped"))?;
        let mut result = result;
        let done = match tokio::time::timeout(self.cpu.policy().hurry_after, &mut result).await {
            Ok(done) => done,
            Err(_) => {
                self.cpu.hurry();
                result.await
            }
        };
        done.map_err(|_| StoreError::transient("sqlite writer thread failed during a write"))?
    }

    /// Runs `f` with a read connection on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = Arc::clone(&self.readers);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().ok().and_then(|mut p| p.pop());
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(classify)?;
                    c.busy_timeout(std::time::Duration::from_secs(5))
                        .map_err(classify)?;
                    c
                }
            };
            let out = f(&conn);
            if let Ok(mut pool) = readers.lock()
                && pool.len() < READER_POOL
            {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::transient(format!("sqlite reader task failed: {e}")))?
    }

    /// Counts from the rollups for whole hours, from the events for the partial
    /// hours at either end, so any period is exact.
    fn counts_blocking(
        conn: &Connection,
        period: Period,
        group_by: GroupBy,
        school: Option<&str>,
    ) -> Result<Vec<Count>, StoreError> {
        let (from, to) = (period.start_ms(), period.end_ms());
        let mut acc: BTreeMap<String, Count> = BTreeMap::new();
        let mut add = |key: &str, events: u64, blocked: u64, flagged: u64| {
            if !acc.contains_key(key) {
                let c = Count {
                    key: key.to_owned(),
                    events: 0,
                    blocked: 0,
                    flagged: 0,
                };
                acc.insert(key.to_owned(), c);
            }
            let Some(c) = acc.get_mut(key) else { return };
            c.events += events;
            c.blocked += blocked;
            c.flagged += flagged;
        };
        if to <= from {
            return Ok(Vec::new());
        }
        let ((first_hour, end_hour), raw_ranges) = split_hours(period);
        if first_hour < end_hour {
            let (key_sql, filter) = match group_by {
                GroupBy::Category => ("CAST(category AS TEXT)", "category >= 0"),
                GroupBy::Action => ("CAST(action AS TEXT)", "category = -1"),
                GroupBy::Role => ("role", "category = -1"),
                GroupBy::School => ("school", "category = -1"),
                GroupBy::Day => ("CAST(hour / 24 AS TEXT)", "category = -1"),
            };
            let sql = format!(
                "SELECT {key_sql}, SUM(events), SUM(CASE WHEN action = 3 THEN events ELSE 0 END), \
                 SUM(flagged) FROM rollup_hourly WHERE hour >= ?1 AND hour < ?2 AND {filter} \
                 AND (?3 IS NULL OR school = ?3) GROUP BY 1"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
            let rows = stmt
                .query_map(params![first_hour, end_hour, school], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(classify)?;
            for row in rows {
                let (raw_key, events, blocked, flagged) = row.map_err(classify)?;
                let key = match group_by {
                    GroupBy::Category => raw_key
                        .parse::<u8>()
                        .ok()
                        .and_then(Category::from_id)
                        .map(|c| c.name().to_owned())
                        .unwrap_or(raw_key),
                    GroupBy::Action => raw_key
                        .parse::<u8>()
                        .ok()
                        .and_then(Action::from_u8)
                        .map(|a| a.name().to_owned())
                        .unwrap_or(raw_key),
                    GroupBy::Day => raw_key.parse::<i64>().map(day_key).unwrap_or(raw_key),
                    _ => raw_key,
                };
                add(&key, as_u64(events), as_u64(blocked), as_u64(flagged));
            }
        }
        let mut tally = |school: &str,
                         role: &str,
                         action: Option<Action>,
                         categories: CategorySet,
                         day: i64,
                         n: u64,
                         flagged: u64| {
            let blocked = if action == Some(Action::Block) { n } else { 0 };
            match group_by {
                GroupBy::Category => {
                    for c in categories.iter() {
                        add(c.name(), n, blocked, flagged);
                    }
                }
                GroupBy::Action => add(action.map_or("", Action::name), n, blocked, flagged),
                GroupBy::Role => add(role, n, blocked, flagged),
                GroupBy::School => add(school, n, blocked, flagged),
                GroupBy::Day => add(&day_key(day), n, blocked, flagged),
            }
        };
        let sql = format!(
            "SELECT school, role, action, categories, time_ms / {DAY_MS}, COUNT(*), \
             SUM(CASE WHEN {FLAGGED} THEN 1 ELSE 0 END) FROM events \
             WHERE time_ms >= ?1 AND time_ms < ?2 AND (?3 IS NULL OR school = ?3) \
             GROUP BY 1, 2, 3, 4, 5"
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
        for (lo, hi) in raw_ranges {
            if hi <= lo {
                continue;
            }
            let rows = stmt
                .query_map(params![lo, hi, school], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })
                .map_err(classify)?;
            for row in rows {
                let (school, role, action, categories, day, n, flagged) = row.map_err(classify)?;
                let action = u8::try_from(action).ok().and_then(Action::from_u8);
                let categories = CategorySet::from_bits(categories as u64);
                tally(
                    &school,
                    &role,
                    action,
                    categories,
                    day,
                    as_u64(n),
                    as_u64(flagged),
                );
            }
            blocks::scan(conn, (lo, hi), Narrow::default(), |e| {
                if school.is_none_or(|s| e.school == s) {
                    let day = e.time_ms().div_euclid(DAY_MS);
                    tally(e.school, e.role, Some(e.action), e.categories, day, 1, 0);
                }
                true
            })?;
        }
        Ok(sort_counts(acc.into_values().collect()))
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn reads_journal_bytes(&self) -> bool {
        true
    }

    async fn insert(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch = batch.clone();
        self.write(move |w| insert_blocking(&mut w.conn, &batch, &mut w.recorded))
            .await
    }

    async fn flagged(
        &self,
        q: &FlaggedQuery,
        purpose: &Purpose,
    ) -> Result<Vec<AccessEvent>, StoreError> {
        audit(purpose, "flagged", &format_args!("{:?}", q))?;
        let q = q.clone();
        self.read(move |conn| {
            // Rank in the small index first (INDEXED BY: the planner would rather
            // scan by time and sort every flag of the period), then read only
            // the rows kept.
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE rowid IN (SELECT rowid FROM events \
                 INDEXED BY events_flagged_rank WHERE {FLAGGED} AND time_ms >= ?1 \
                 AND time_ms < ?2 AND COALESCE(severity, 1) >= ?3 \
                 AND (?4 IS NULL OR school = ?4) AND (?5 IS NULL OR user = ?5) \
                 ORDER BY COALESCE(severity, 1) DESC, time_ms DESC, id DESC LIMIT ?6) \
                 ORDER BY COALESCE(severity, 1) DESC, time_ms DESC, id DESC"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
            let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(
                    params![
                        q.period.start_ms(),
                        q.period.end_ms(),
                        q.min_severity as u8,
                        q.school,
                        q.user,
                        limit
                    ],
                    decode,
                )
                .map_err(classify)?;
            collect_events(rows)
        })
        .await
    }

    async fn search(
        &self,
        q: &EventSearch,
        purpose: &Purpose,
    ) -> Result<Vec<AccessEvent>, StoreError> {
        audit(purpose, "search", &format_args!("{q:?}"))?;
        let q = q.clone();
        self.read(move |conn| {
            // Flagged events (and a database's events from before blocks)
            // newest first along `events_time_host`, stopping at the limit; the
            // host and category tests need only the index.
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE time_ms >= ?1 AND time_ms < ?2 \
                 AND (?3 IS NULL OR instr(host, ?3) > 0) \
                 AND (?4 IS NULL OR (categories & ?4) != 0) \
                 AND (?5 IS NULL OR school = ?5) \
                 ORDER BY time_ms DESC, id DESC LIMIT ?6"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
            let bits = q.category.map(|c| CategorySet::of(c).bits());
            let rows = stmt
                .query_map(
                    params![
                        q.period.start_ms(),
                        q.period.end_ms(),
                        q.host,
                        bits.map(|b| b as i64),
                        q.school,
                        i64::try_from(q.limit).unwrap_or(i64::MAX)
                    ],
                    decode,
                )
                .map_err(classify)?;
            let mut found = collect_events(rows)?;
            // The blocks an hour at a time, newest first, until the hours read
            // hold the limit: older hours cannot displace any of it.
            let matches = |e: &Stored<'_>| {
                q.host.as_deref().is_none_or(|h| e.host.contains(h))
                    && bits.is_none_or(|b| e.categories.bits() & b != 0)
                    && q.school.as_deref().is_none_or(|s| e.school == s)
            };
            let mut plain = Vec::new();
            for slice in hours(q.period.start_ms(), q.period.end_ms()).rev() {
                if plain.len() >= q.limit {
                    break;
                }
                let narrow = Narrow {
                    host: q.host.as_deref(),
                    categories: bits,
                    ..Narrow::default()
                };
                blocks::scan(conn, slice, narrow, |e| {
                    if matches(e) {
                        plain.push(e.to_event());
                    }
                    true
                })?;
            }
            found.extend(plain);
            found.sort_unstable_by_key(|e| std::cmp::Reverse((e.time_ms(), e.id)));
            found.truncate(q.limit);
            Ok(found)
        })
        .await
    }

    async fn timeline(
        &self,
        subject: &Subject,
        around: Timestamp,
        minutes: i64,
        purpose: &Purpose,
    ) -> Result<Vec<AccessEvent>, StoreError> {
        audit(purpose, "timeline", subject)?;
        let (lo, hi) = window(around, minutes);
        let subject = subject.clone();
        self.read(move |conn| {
            let (column, value) = subject_sql(&subject);
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE {column} = ?1 AND time_ms >= ?2 \
                 AND time_ms <= ?3"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
            let rows = stmt
                .query_map(params![value, lo, hi], decode)
                .map_err(classify)?;
            let mut found = collect_events(rows)?;
            blocks::scan(conn, (lo, hi.saturating_add(1)), Narrow::default(), |e| {
                if is_subject(e, &subject) {
                    found.push(e.to_event());
                }
                true
            })?;
            found.sort_unstable_by_key(|e| (e.time_ms(), e.id));
            Ok(found)
        })
        .await
    }

    async fn event(&self, id: Ulid, purpose: &Purpose) -> Result<Option<AccessEvent>, StoreError> {
        audit(purpose, "event", &id)?;
        self.read(move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM events WHERE id = ?1");
            let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
            let rows = stmt
                .query_map(params![id.to_string()], decode)
                .map_err(classify)?;
            if let Some(row) = collect_events(rows)?.into_iter().next() {
                return Ok(Some(row));
            }
            // An id carries the millisecond it was made, which is its event's
            // time unless the event was timed earlier (a request timed when it
            // arrived): that millisecond first, then the hour either side.
            let at = i64::try_from(id.timestamp_ms()).unwrap_or(i64::MAX);
            let mut found = None;
            for span in [
                (at, at.saturating_add(1)),
                (at.saturating_sub(HOUR_MS), at.saturating_add(HOUR_MS)),
            ] {
                blocks::scan(conn, span, Narrow::default(), |e| {
                    if e.id == id {
                        found = Some(e.to_event());
                    }
                    found.is_none()
                })?;
                if found.is_some() {
                    break;
                }
            }
            Ok(found)
        })
        .await
    }

    async fn counts(
        &self,
        period: &Period,
        group_by: GroupBy,
        school: Option<&str>,
    ) -> Result<Vec<Count>, StoreError> {
        let (period, school) = (*period, school.map(str::to_owned));
        self.read(move |conn| {
            SqliteStore::counts_blocking(conn, period, group_by, school.as_deref())
        })
        .await
    }

    async fn top_blocked_hosts(
        &self,
        period: &Period,
        n: usize,
        school: Option<&str>,
    ) -> Result<Vec<HostCount>, StoreError> {
        let (period, school) = (*period, school.map(str::to_owned));
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT host, COUNT(*) FROM events WHERE action = 3 \
                     AND time_ms >= ?1 AND time_ms < ?2 AND (?3 IS NULL OR school = ?3) \
                     GROUP BY host",
                )
                .map_err(classify)?;
            let rows = stmt
                .query_map(params![period.start_ms(), period.end_ms(), school], |r| {
                    Ok((r.get::<_, String>(0)?, as_u64(r.get(1)?)))
                })
                .map_err(classify)?;
            let mut hosts: HashMap<String, u64> = HashMap::new();
            for row in rows {
                let (host, n) = row.map_err(classify)?;
                *hosts.entry(host).or_default() += n;
            }
            let span = (period.start_ms(), period.end_ms());
            blocks::scan(conn, span, Narrow::class(RetentionClass::Blocked), |e| {
                if e.action == Action::Block && school.as_deref().is_none_or(|s| e.school == s) {
                    match hosts.get_mut(e.host) {
                        Some(n) => *n += 1,
                        None => {
                            hosts.insert(e.host.to_owned(), 1);
                        }
                    }
                }
                true
            })?;
            let mut top: Vec<HostCount> = hosts
                .into_iter()
                .map(|(host, blocked)| HostCount { host, blocked })
                .collect();
            top.sort_unstable_by(|a, b| {
                b.blocked.cmp(&a.blocked).then_with(|| a.host.cmp(&b.host))
            });
            top.truncate(n);
            Ok(top)
        })
        .await
    }

    async fn bypass_attempts(
        &self,
        period: &Period,
        school: Option<&str>,
    ) -> Result<Vec<BypassAttempts>, StoreError> {
        let (period, school) = (*period, school.map(str::to_owned));
        self.read(move |conn| {
            let school = school.as_deref();
            let (hours, edges) = split_hours(period);
            let mut out = Vec::new();
            for category in CategorySet::from_bits(bypass_mask()).iter() {
                let bits = CategorySet::of(category).bits() as i64;
                let mut attempts: i64 = conn
                    .prepare_cached(
                        "SELECT COALESCE(SUM(events), 0) FROM rollup_hourly \
                         WHERE hour >= ?1 AND hour < ?2 AND category = ?3 AND action IN (1, 3) \
                         AND (?4 IS NULL OR school = ?4)",
                    )
                    .and_then(|mut s| {
                        s.query_row(
                            params![hours.0, hours.1, i64::from(category.id()), school],
                            |r| r.get(0),
                        )
                    })
                    .map_err(classify)?;
                let mut raw = conn
                    .prepare_cached(
                        "SELECT COUNT(*) FROM events WHERE time_ms >= ?1 AND time_ms < ?2 \
                         AND action IN (1, 3) AND (categories & ?3) != 0 \
                         AND (?4 IS NULL OR school = ?4)",
                    )
                    .map_err(classify)?;
                for (lo, hi) in edges {
                    attempts += raw
                        .query_row(params![lo, hi, bits, school], |r| r.get::<_, i64>(0))
                        .map_err(classify)?;
                    let narrow = Narrow {
                        categories: Some(bits as u64),
                        ..Narrow::class(RetentionClass::Blocked)
                    };
                    blocks::scan(conn, (lo, hi), narrow, |e| {
                        if matches!(e.action, Action::Flag | Action::Block)
                            && e.categories.contains(category)
                            && school.is_none_or(|s| e.school == s)
                        {
                            attempts += 1;
                        }
                        true
                    })?;
                }
                if attempts > 0 {
                    out.push(BypassAttempts {
                        category,
                        attempts: as_u64(attempts),
                        distinct_users: distinct_seen(conn, period, school, SEEN_USER, Some(bits))?,
                        distinct_clients: distinct_seen(
                            conn,
                            period,
                            school,
                            SEEN_CLIENT,
                            Some(bits),
                        )?,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn export_csv(
        &self,
        period: &Period,
        filter: &ExportFilter,
        out: &mut (dyn Write + Send),
        purpose: &Purpose,
    ) -> Result<u64, StoreError> {
        audit(
            purpose,
            "export_csv",
            &format_args!("{period:?} {filter:?}"),
        )?;
        csv::write_header(out).map_err(StoreError::Export)?;
        let (mut lo, to) = (period.start_ms(), period.end_ms());
        let mut written = 0u64;
        while lo < to {
            let hi = ((lo.div_euclid(EXPORT_SLICE_MS) + 1) * EXPORT_SLICE_MS).min(to);
            let filter = filter.clone();
            let (slice, next) = self
                .read(move |conn| {
                    let slice = export_slice(conn, (lo, hi), &filter)?;
                    // After an empty slice, go straight to the next stored event.
                    let next = if slice.is_empty() {
                        next_event_ms(conn, hi)?
                    } else {
                        Some(hi)
                    };
                    Ok((slice, next))
                })
                .await?;
            for e in &slice {
                csv::write_event(out, e).map_err(StoreError::Export)?;
            }
            written += slice.len() as u64;
            match next {
                Some(next) => lo = next.max(hi),
                None => break,
            }
        }
        out.flush().map_err(StoreError::Export)?;
        Ok(written)
    }

    async fn totals(&self, period: &Period, school: Option<&str>) -> Result<Totals, StoreError> {
        let (period, school) = (*period, school.map(str::to_owned));
        self.read(move |conn| {
            let by_action =
                SqliteStore::counts_blocking(conn, period, GroupBy::Action, school.as_deref())?;
            let mut totals = Totals::default();
            for c in by_action {
                totals.requests += c.events;
                totals.blocked += c.blocked;
                totals.flagged += c.flagged;
            }
            let school = school.as_deref();
            totals.distinct_users = distinct_seen(conn, period, school, SEEN_USER, None)?;
            totals.distinct_clients = distinct_seen(conn, period, school, SEEN_CLIENT, None)?;
            Ok(totals)
        })
        .await
    }

    async fn purge(&self, now: Timestamp) -> Result<PurgeReport, StoreError> {
        let retention = self.retention.clone();
        let now_ms = now.as_millisecond();
        self.write(move |w| {
            // Rows are about to go: forget them all, whether or not the purge succeeds.
            w.recorded.rows.clear();
            let conn = &mut w.conn;
            let mut report = PurgeReport::default();
            for class in RetentionClass::ALL {
                // Whole hours, so the rollups go exactly with their events.
                let cutoff_hour =
                    (now_ms - i64::from(class.days(&retention)) * DAY_MS).div_euclid(HOUR_MS);
                let cutoff = cutoff_hour * HOUR_MS;
                loop {
                    let n = conn
                        .execute(
                            "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events \
                             WHERE time_ms < ?1 AND class = ?2 LIMIT ?3)",
                            params![cutoff, class.id(), PURGE_CHUNK as i64],
                        )
                        .map_err(classify)?;
                    report.events += n as u64;
                    if n < PURGE_CHUNK {
                        break;
                    }
                }
                report.events += blocks::purge(conn, cutoff_hour, class)?;
                for table in ["rollup_hourly", "rollup_seen"] {
                    conn.execute(
                        &format!("DELETE FROM {table} WHERE hour < ?1 AND class = ?2"),
                        params![cutoff_hour, class.id()],
                    )
                    .map_err(classify)?;
                }
            }
            Ok(report)
        })
        .await
    }
}

/// What the writer thread owns: the write connection, and what it remembers
/// of the rows it committed.
struct Writer {
    conn: Connection,
    recorded: SeenRecorded,
}

/// A write for the writer thread.
type WriteJob = Box<dyn FnOnce(&mut Writer) + Send>;

/// The writer thread: lowers its own priority, then runs the writes in order
/// until every handle to the store is dropped, then closes the connection.
/// Whenever its queue is empty it may go back to the background.
fn run_writer(conn: Connection, jobs: mpsc::Receiver<WriteJob>, cpu: &WriterCpu) {
    cpu.start_on_this_thread();
    let mut writer = Writer {
        conn,
        recorded: SeenRecorded::default(),
    };
    loop {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(mpsc::TryRecvError::Disconnected) => break,
            Err(mpsc::TryRecvError::Empty) => {
                cpu.settle();
                let Ok(job) = jobs.recv() else { break };
                job
            }
        };
        job(&mut writer);
    }
}

/// Whom a `rollup_seen` row counts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who<'e> {
    User(&'e str),
    Client(IpAddr),
}

impl<'e> Who<'e> {
    /// The row's `kind` and `who`; an address is written into `buf`.
    fn row<'a>(self, buf: &'a mut String) -> (i64, &'a str)
    where
        'e: 'a,
    {
        match self {
            Who::User(u) => (SEEN_USER, u),
            Who::Client(ip) => {
                write_ip(buf, ip);
                (SEEN_CLIENT, buf.as_str())
            }
        }
    }
}

/// Writes `ip` into `out` as `client_ip` stores it: `ip.to_canonical().to_string()`.
/// IPv4 by hand: the `fmt` machinery was 3% of the writer's instructions.
fn write_ip(out: &mut String, ip: IpAddr) {
    out.clear();
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        // Writing to a String cannot fail.
        v6 => {
            let _ = fmt::Write::write_fmt(out, format_args!("{v6}"));
        }
    }
}

/// A period as whole hours (read from the rollups) and the partial hours at
/// either end (read from the events); an empty hour range when the period
/// covers no whole hour.
fn split_hours(period: Period) -> ((i64, i64), [(i64, i64); 2]) {
    let (from, to) = (period.start_ms(), period.end_ms());
    let first_hour = from.div_euclid(HOUR_MS) + i64::from(from.rem_euclid(HOUR_MS) != 0);
    let end_hour = to.div_euclid(HOUR_MS);
    if first_hour < end_hour {
        (
            (first_hour, end_hour),
            [(from, first_hour * HOUR_MS), (end_hour * HOUR_MS, to)],
        )
    } else {
        ((0, 0), [(from, to), (0, 0)])
    }
}

/// Distinct users (`SEEN_USER`) or client addresses (`SEEN_CLIENT`) of a
/// period, optionally only those with a blocked or flagged event of the
/// bypass categories in `bypass_bits`: `rollup_seen` for the whole hours, the
/// events for the partial ones.
fn distinct_seen(
    conn: &Connection,
    period: Period,
    school: Option<&str>,
    kind: i64,
    bypass_bits: Option<i64>,
) -> Result<u64, StoreError> {
    let mut seen: HashSet<String> = HashSet::new();
    let ((h0, h1), edges) = split_hours(period);
    let mut stmt = conn
        .prepare_cached(
            "SELECT DISTINCT who FROM rollup_seen WHERE hour >= ?1 AND hour < ?2 AND kind = ?5 \
             AND (?3 IS NULL OR school = ?3) AND (?4 IS NULL OR (bypass & ?4) != 0)",
        )
        .map_err(classify)?;
    let rows = stmt
        .query_map(params![h0, h1, school, bypass_bits, kind], |r| {
            r.get::<_, String>(0)
        })
        .map_err(classify)?;
    for who in rows {
        seen.insert(who.map_err(classify)?);
    }
    let column = seen_column(kind);
    let mut raw = conn
        .prepare_cached(&format!(
            "SELECT DISTINCT {column} FROM events WHERE time_ms >= ?1 AND time_ms < ?2 \
             AND {column} IS NOT NULL AND (?3 IS NULL OR school = ?3) \
             AND (?4 IS NULL OR (action IN (1, 3) AND (categories & ?4) != 0))"
        ))
        .map_err(classify)?;
    // Only blocked blocks can hold a bypass attempt.
    let narrow = match bypass_bits {
        Some(bits) => Narrow {
            categories: Some(bits as u64),
            ..Narrow::class(RetentionClass::Blocked)
        },
        None => Narrow::default(),
    };
    let mut client = String::new();
    for (lo, hi) in edges {
        if hi <= lo {
            continue;
        }
        let rows = raw
            .query_map(params![lo, hi, school, bypass_bits], |r| {
                r.get::<_, String>(0)
            })
            .map_err(classify)?;
        for who in rows {
            seen.insert(who.map_err(classify)?);
        }
        blocks::scan(conn, (lo, hi), narrow, |e| {
            let tried = bypass_bits.is_none_or(|bits| {
                matches!(e.action, Action::Flag | Action::Block)
                    && (e.categories.bits() as i64) & bits != 0
            });
            if tried && school.is_none_or(|s| e.school == s) {
                if kind == SEEN_USER {
                    if let Some(user) = e.user()
                        && !seen.contains(user)
                    {
                        seen.insert(user.to_owned());
                    }
                } else {
                    write_ip(&mut client, e.client_ip);
                    if !seen.contains(&client) {
                        seen.insert(client.clone());
                    }
                }
            }
            true
        })?;
    }
    Ok(seen.len() as u64)
}

fn table_exists(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        params![name],
        |r| r.get(0),
    )
    .map_err(classify)
}

/// Fills `rollup_seen` from the events of a database made before it existed.
/// SQLite has no bitwise-OR aggregate: each bypass bit is its own MAX, and the
/// distinct bits add up to their OR.
fn backfill_seen(conn: &Connection) -> Result<(), StoreError> {
    let tried = CategorySet::from_bits(bypass_mask())
        .iter()
        .map(|c| {
            let bit = CategorySet::of(c).bits() as i64;
            format!("MAX(CASE WHEN action IN (1, 3) AND (categories & {bit}) != 0 THEN {bit} ELSE 0 END)")
        })
        .collect::<Vec<_>>()
        .join(" + ");
    for kind in [SEEN_USER, SEEN_CLIENT] {
        let column = seen_column(kind);
        conn.execute(
            &format!(
                "INSERT OR IGNORE INTO rollup_seen (hour, school, class, kind, who, bypass) \
                 SELECT time_ms / {HOUR_MS}, school, class, {kind}, {column}, {tried} \
                 FROM events WHERE {column} IS NOT NULL GROUP BY 1, 2, 3, 5"
            ),
            [],
        )
        .map_err(classify)?;
    }
    // And from the blocks (a database that lost the table after it had them).
    let span: (Option<i64>, Option<i64>) = conn
        .query_row("SELECT MIN(hour), MAX(hour) FROM event_blocks", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(classify)?;
    let (Some(first), Some(last)) = span else {
        return Ok(());
    };
    let mask = bypass_mask();
    let mut seen: BTreeMap<(i64, String, u8, i64, String), i64> = BTreeMap::new();
    let mut client = String::new();
    let all = (first * HOUR_MS, (last + 1) * HOUR_MS);
    blocks::scan(conn, all, Narrow::default(), |e| {
        let tried = if matches!(e.action, Action::Flag | Action::Block) {
            (e.categories.bits() & mask) as i64
        } else {
            0
        };
        // A block holds no flagged event.
        let class = if e.action == Action::Block {
            RetentionClass::Blocked
        } else {
            RetentionClass::Allowed
        }
        .id();
        let (hour, school) = (e.time_ms().div_euclid(HOUR_MS), e.school.to_owned());
        if let Some(user) = e.user() {
            *seen
                .entry((hour, school.clone(), class, SEEN_USER, user.to_owned()))
                .or_default() |= tried;
        }
        write_ip(&mut client, e.client_ip);
        *seen
            .entry((hour, school, class, SEEN_CLIENT, client.clone()))
            .or_default() |= tried;
        true
    })?;
    let mut up = conn
        .prepare(
            "INSERT INTO rollup_seen (hour, school, class, kind, who, bypass) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(hour, school, class, kind, who) \
             DO UPDATE SET bypass = bypass | excluded.bypass",
        )
        .map_err(classify)?;
    for ((hour, school, class, kind, who), bypass) in seen {
        up.execute(params![hour, school, class, kind, who, bypass])
            .map_err(classify)?;
    }
    Ok(())
}

/// `rollup_seen` rows per multi-row upsert: the statement's start, its cursor
/// and its end are paid once for this many rows.
const ROWS_PER_INSERT: usize = 8;
/// Parameters per event in an events insert.
const EVENT_PARAMS: usize = 24;
/// Parameters per row in a `rollup_seen` upsert.
const SEEN_PARAMS: usize = 6;

/// `rows` rows of `params` parameters each, for `INSERT ... VALUES`.
fn values(params: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; params].join(", "));
    vec![row; rows].join(", ")
}

/// `INSERT OR IGNORE` of `rows` events.
fn insert_events_sql(rows: usize) -> String {
    format!(
        "INSERT OR IGNORE INTO events (id, time_ms, class, source, school, node, client_ip, \
         user, device, role, method, host, path, search_terms, action, categories, severity, \
         rule, reason, status, bytes_up, bytes_down, duration_us, cached) VALUES {}",
        values(EVENT_PARAMS, rows)
    )
}

fn insert_blocking(
    conn: &mut Connection,
    batch: &Batch,
    recorded: &mut SeenRecorded,
) -> Result<(), StoreError> {
    let events = &batch.events[..];
    let tx = conn.transaction().map_err(classify)?;
    // Each event with its place in the batch (for its journal bytes).
    let fresh = if batch.maybe_stored {
        not_stored(&tx, events)?
    } else {
        events.iter().enumerate().collect()
    };
    let (flagged, mut plain): (Vec<_>, Vec<_>) =
        fresh.into_iter().partition(|(_, e)| e.is_flagged());
    let mut rollups = Rollups::new();
    blocks::insert(&tx, &mut plain, batch.encoded.as_deref())?;
    for (_, e) in plain {
        rollups.add(e);
    }
    // Flagged events, about one in a hundred, are rows; `INSERT OR IGNORE`
    // also keeps out a repeat in a batch not marked as one.
    {
        let mut one = tx.prepare_cached(&insert_events_sql(1)).map_err(classify)?;
        let mut id = [0u8; ulid::ULID_LEN];
        let mut client = String::with_capacity(48);
        for (_, e) in flagged {
            bind_event(&mut one, 1, e, &mut id, &mut client).map_err(classify)?;
            if one.raw_execute().map_err(classify)? == 1 {
                rollups.add(e);
            }
        }
    }
    let upserted = rollups.write(&tx, recorded)?;
    tx.commit().map_err(classify)?;
    recorded.add(upserted);
    Ok(())
}

/// The events of a batch that may be partly stored that are not, each once
/// (a replay can hold an event twice: the journal's copy and the spool's).
fn not_stored<'e>(
    conn: &Connection,
    events: &'e [AccessEvent],
) -> Result<Vec<(usize, &'e AccessEvent)>, StoreError> {
    let Some(lo) = events.iter().map(AccessEvent::time_ms).min() else {
        return Ok(Vec::new());
    };
    let hi = events.iter().map(AccessEvent::time_ms).max().unwrap_or(lo);
    let mut stored = blocks::ids(conn, (lo, hi))?;
    let mut stmt = conn
        .prepare_cached("SELECT id FROM events WHERE time_ms >= ?1 AND time_ms <= ?2")
        .map_err(classify)?;
    let mut rows = stmt.query(params![lo, hi]).map_err(classify)?;
    while let Some(row) = rows.next().map_err(classify)? {
        let id: String = row.get(0).map_err(classify)?;
        stored.insert(Ulid::from_string(&id).map_err(|_| classify(bad_row("id", &id)))?);
    }
    Ok(events
        .iter()
        .enumerate()
        .filter(|(_, e)| stored.insert(e.id))
        .collect())
}

/// Rows `SeenRecorded` holds at most; past this it starts again empty.
const SEEN_RECORDED_ROWS: usize = 50_000;

/// `rollup_seen` rows committed by this store's writer, by `seen_key`, with
/// bypass bits the stored row has at least. Most users and devices come in
/// many batches of an hour, and their row changes only when it gains a bypass
/// bit: a batch upserts only the rows that change. Rows leave the table only
/// by a purge (the writer is the table's only writer), which empties this.
#[derive(Default)]
struct SeenRecorded {
    rows: HashMap<Vec<u8>, i64>,
}

impl SeenRecorded {
    /// Whether the row `key` is stored with every bit of `bypass`.
    fn covers(&self, key: &[u8], bypass: i64) -> bool {
        self.rows
            .get(key)
            .is_some_and(|&bits| bits & bypass == bypass)
    }

    /// Notes rows just committed.
    fn add(&mut self, rows: Vec<(Vec<u8>, i64)>) {
        if self.rows.len() + rows.len() > SEEN_RECORDED_ROWS {
            self.rows.clear();
        }
        for (key, bits) in rows {
            *self.rows.entry(key).or_default() |= bits;
        }
    }
}

/// A `rollup_seen` row's key as bytes; the school's length keeps it unambiguous.
/// An address is written into `client` first.
fn seen_key(out: &mut Vec<u8>, (hour, school, class, who): SeenKey<'_>, client: &mut String) {
    let (kind, who) = who.row(client);
    out.clear();
    out.extend_from_slice(&hour.to_le_bytes());
    out.push(class);
    out.push(u8::from(kind == SEEN_CLIENT));
    out.extend_from_slice(&(school.len() as u64).to_le_bytes());
    out.extend_from_slice(school.as_bytes());
    out.extend_from_slice(who.as_bytes());
}

/// A `rollup_hourly` key: (hour, school, role, action, class, category).
type HourlyKey<'e> = (i64, &'e str, &'e str, u8, u8, i64);
/// A `rollup_seen` key: (hour, school, class, who).
type SeenKey<'e> = (i64, &'e str, u8, Who<'e>);

/// A batch's additions to `rollup_hourly` and `rollup_seen`, borrowing the
/// batch's strings: no allocation per event and category.
struct Rollups<'e> {
    /// `bypass_mask()`, worked out once.
    bypass: u64,
    /// (hour, school, role, action, class, category) -> (events, flagged)
    hourly: BTreeMap<HourlyKey<'e>, (i64, i64)>,
    /// ((hour, school, class, who), bypass bits), one per event and whom it counts.
    /// Sorted and merged in `write`: cheaper than a hash map's hashing and
    /// growing, and the rows go to SQLite nearly in key order.
    seen: Vec<(SeenKey<'e>, i64)>,
}

impl<'e> Rollups<'e> {
    fn new() -> Self {
        Rollups {
            bypass: bypass_mask(),
            hourly: BTreeMap::new(),
            seen: Vec::new(),
        }
    }

    /// Counts `e`, an event really inserted.
    fn add(&mut self, e: &'e AccessEvent) {
        let hour = e.time_ms().div_euclid(HOUR_MS);
        let flagged = i64::from(e.is_flagged());
        let class = e.retention_class().id();
        let school = e.school.as_str();
        let mut bump = |category: i64| {
            let slot = self
                .hourly
                .entry((
                    hour,
                    school,
                    e.role.as_str(),
                    e.action as u8,
                    class,
                    category,
                ))
                .or_insert((0, 0));
            slot.0 += 1;
            slot.1 += flagged;
        };
        bump(-1);
        for c in e.categories.iter() {
            bump(i64::from(c.id()));
        }
        let tried = if matches!(e.action, Action::Flag | Action::Block) {
            (e.categories.bits() & self.bypass) as i64
        } else {
            0
        };
        if let Some(user) = non_empty(&e.user) {
            self.seen
                .push(((hour, school, class, Who::User(user)), tried));
        }
        let client = Who::Client(e.client_ip.to_canonical());
        self.seen.push(((hour, school, class, client), tried));
    }

    /// Adds the counts to the rollup tables, but for `rollup_seen` rows that
    /// `recorded` says would not change. Returns the `rollup_seen` rows
    /// written, for `recorded` once they are committed.
    fn write(
        self,
        tx: &rusqlite::Transaction<'_>,
        recorded: &SeenRecorded,
    ) -> Result<Vec<(Vec<u8>, i64)>, StoreError> {
        let mut up = tx
            .prepare_cached(
                "INSERT INTO rollup_hourly \
                 (hour, school, role, action, class, category, events, flagged) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT(hour, school, role, action, class, category) DO UPDATE SET \
                 events = events + excluded.events, flagged = flagged + excluded.flagged",
            )
            .map_err(classify)?;
        for ((hour, school, role, action, class, category), (n, flagged)) in self.hourly {
            up.execute(params![
                hour, school, role, action, class, category, n, flagged
            ])
            .map_err(classify)?;
        }
        // About one row per user and client of the batch: `ROWS_PER_INSERT` a
        // statement, like the events. Each key comes once (addresses are
        // canonical), so no row updates another of its own statement.
        let sql = |rows: usize| {
            format!(
                "INSERT INTO rollup_seen (hour, school, class, kind, who, bypass) VALUES {} \
                 ON CONFLICT(hour, school, class, kind, who) DO UPDATE SET \
                 bypass = bypass | excluded.bypass",
                values(SEEN_PARAMS, rows)
            )
        };
        let mut many = tx.prepare_cached(&sql(ROWS_PER_INSERT)).map_err(classify)?;
        let mut one = tx.prepare_cached(&sql(1)).map_err(classify)?;
        let mut client = String::with_capacity(48);
        let mut key = Vec::new();
        // Rows `recorded` holds with these bits would not change, most of them
        // in a busy hour: dropped first, so the sort has little to do.
        let mut seen = self.seen;
        seen.retain(|&(row, tried)| {
            seen_key(&mut key, row, &mut client);
            !recorded.covers(&key, tried)
        });
        seen.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        seen.dedup_by(|next, kept| {
            let same = next.0 == kept.0;
            if same {
                kept.1 |= next.1;
            }
            same
        });
        let upserted = seen
            .iter()
            .map(|&(row, tried)| {
                seen_key(&mut key, row, &mut client);
                (key.clone(), tried)
            })
            .collect();
        let mut chunks = seen.chunks_exact(ROWS_PER_INSERT);
        for chunk in &mut chunks {
            for (i, row) in chunk.iter().enumerate() {
                bind_seen(&mut many, 1 + i * SEEN_PARAMS, row, &mut client).map_err(classify)?;
            }
            many.raw_execute().map_err(classify)?;
        }
        for row in chunks.remainder() {
            bind_seen(&mut one, 1, row, &mut client).map_err(classify)?;
            one.raw_execute().map_err(classify)?;
        }
        Ok(upserted)
    }
}

/// Binds a `rollup_seen` row, (hour, school, class, who) and its bypass bits,
/// to `SEEN_PARAMS` parameters from `first` (1-based).
fn bind_seen(
    stmt: &mut Statement<'_>,
    first: usize,
    &((hour, school, class, who), tried): &(SeenKey<'_>, i64),
    client: &mut String,
) -> rusqlite::Result<()> {
    let (kind, who) = who.row(client);
    stmt.raw_bind_parameter(first, hour)?;
    stmt.raw_bind_parameter(first + 1, school)?;
    stmt.raw_bind_parameter(first + 2, class)?;
    stmt.raw_bind_parameter(first + 3, kind)?;
    stmt.raw_bind_parameter(first + 4, who)?;
    stmt.raw_bind_parameter(first + 5, tried)
}

/// Binds `e` to the events insert's 24 parameters from `first` (1-based), in
/// the order of its columns: one function for the one-row and the multi-row
/// statements.
fn bind_event(
    stmt: &mut Statement<'_>,
    first: usize,
    e: &AccessEvent,
    id: &mut [u8; ulid::ULID_LEN],
    client: &mut String,
) -> rusqlite::Result<()> {
    write_ip(client, e.client_ip);
    stmt.raw_bind_parameter(first, &*e.id.array_to_str(id))?;
    stmt.raw_bind_parameter(first + 1, e.time_ms())?;
    stmt.raw_bind_parameter(first + 2, e.retention_class().id())?;
    stmt.raw_bind_parameter(first + 3, e.source.id())?;
    stmt.raw_bind_parameter(first + 4, e.school.as_str())?;
    stmt.raw_bind_parameter(first + 5, e.node.as_str())?;
    stmt.raw_bind_parameter(first + 6, client.as_str())?;
    stmt.raw_bind_parameter(first + 7, non_empty(&e.user))?;
    stmt.raw_bind_parameter(first + 8, non_empty(&e.device))?;
    stmt.raw_bind_parameter(first + 9, e.role.as_str())?;
    stmt.raw_bind_parameter(first + 10, e.method.as_str())?;
    stmt.raw_bind_parameter(first + 11, e.host.as_str())?;
    stmt.raw_bind_parameter(first + 12, e.path.as_str())?;
    stmt.raw_bind_parameter(first + 13, e.search_terms.as_str())?;
    stmt.raw_bind_parameter(first + 14, e.action as u8)?;
    // Bit patterns: u64 values above i64::MAX are stored as negative numbers
    // and read back unchanged.
    stmt.raw_bind_parameter(first + 15, e.categories.bits() as i64)?;
    stmt.raw_bind_parameter(first + 16, e.severity.map(|s| s as u8))?;
    stmt.raw_bind_parameter(first + 17, e.rule.as_str())?;
    stmt.raw_bind_parameter(first + 18, e.reason.as_str())?;
    stmt.raw_bind_parameter(first + 19, e.status)?;
    stmt.raw_bind_parameter(first + 20, e.bytes_up as i64)?;
    stmt.raw_bind_parameter(first + 21, e.bytes_down as i64)?;
    stmt.raw_bind_parameter(first + 22, e.duration_us)?;
    stmt.raw_bind_parameter(first + 23, e.cached)
}

/// A user or device name as stored: an empty one is NULL.
fn non_empty(name: &Option<String>) -> Option<&str> {
    name.as_deref().filter(|n| !n.is_empty())
}

/// The events of `[lo, hi)` that `filter` lets through, oldest first.
fn export_slice(
    conn: &Connection,
    (lo, hi): (i64, i64),
    filter: &ExportFilter,
) -> Result<Vec<AccessEvent>, StoreError> {
    let (subject_column, subject_value) = match &filter.subject {
        Some(s) => {
            let (c, v) = subject_sql(s);
            (c, Some(v))
        }
        None => ("user", None),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE time_ms >= ?1 AND time_ms < ?2 \
         AND (?3 IS NULL OR school = ?3) AND (?4 IS NULL OR {subject_column} = ?4) \
         AND (?5 IS NULL OR action = ?5) AND (?6 = 0 OR {FLAGGED})"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
    let rows = stmt
        .query_map(
            params![
                lo,
                hi,
                filter.school,
                subject_value,
                filter.action.map(|a| a as u8),
                filter.flagged_only,
            ],
            decode,
        )
        .map_err(classify)?;
    let mut found = collect_events(rows)?;
    // Blocks hold no flagged event.
    if !filter.flagged_only {
        blocks::scan(conn, (lo, hi), Narrow::default(), |e| {
            if filter.school.as_deref().is_none_or(|s| e.school == s)
                && filter.subject.as_ref().is_none_or(|s| is_subject(e, s))
                && filter.action.is_none_or(|a| e.action == a)
            {
                found.push(e.to_event());
            }
            true
        })?;
    }
    found.sort_unstable_by_key(|e| (e.time_ms(), e.id));
    Ok(found)
}

/// The earliest time at or after `from` that may hold an event: the start of
/// the first hour with a block, or the first row's time.
fn next_event_ms(conn: &Connection, from: i64) -> Result<Option<i64>, StoreError> {
    let row: Option<i64> = conn
        .prepare_cached("SELECT MIN(time_ms) FROM events WHERE time_ms >= ?1")
        .and_then(|mut s| s.query_row(params![from], |r| r.get(0)))
        .map_err(classify)?;
    let block: Option<i64> = conn
        .prepare_cached("SELECT MIN(hour) FROM event_blocks WHERE hour >= ?1")
        .and_then(|mut s| s.query_row(params![from.div_euclid(HOUR_MS)], |r| r.get(0)))
        .map_err(classify)?;
    Ok(match (row, block.map(|h| h * HOUR_MS)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Whether `e` is the user's or the address's.
fn is_subject(e: &Stored<'_>, subject: &Subject) -> bool {
    match subject {
        Subject::User(u) => e.user() == Some(u.as_str()),
        Subject::Client(ip) => e.client_ip.to_canonical() == ip.to_canonical(),
    }
}

/// The hours of `[lo, hi)`, each cut to the period, oldest first.
fn hours(lo: i64, hi: i64) -> impl DoubleEndedIterator<Item = (i64, i64)> {
    let (first, last) = (lo.div_euclid(HOUR_MS), (hi - 1).div_euclid(HOUR_MS));
    let last = if hi > lo { last } else { first - 1 };
    (first..=last).map(move |h| (lo.max(h * HOUR_MS), hi.min((h + 1) * HOUR_MS)))
}

fn subject_sql(subject: &Subject) -> (&'static str, String) {
    match subject {
        Subject::User(u) => ("user", u.clone()),
        Subject::Client(ip) => ("client_ip", ip.to_canonical().to_string()),
    }
}

/// `[around - minutes, around + minutes]` in ms.
pub(crate) fn window(around: Timestamp, minutes: i64) -> (i64, i64) {
    let at = around.as_millisecond();
    let span = minutes.abs().saturating_mul(60_000);
    (at.saturating_sub(span), at.saturating_add(span))
}

fn as_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A row that cannot be decoded: rusqlite wants its own error type in row closures.
fn bad_row(what: &str, value: impl fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("stored {what} `{value}` is not valid").into(),
    )
}

fn decode(r: &Row<'_>) -> rusqlite::Result<AccessEvent> {
    let id: String = r.get(0)?;
    let time_ms: i64 = r.get(1)?;
    let source: u8 = r.get(2)?;
    let client_ip: String = r.get(5)?;
    let action: u8 = r.get(13)?;
    let categories: i64 = r.get(14)?;
    let severity: Option<u8> = r.get(15)?;
    let bytes_up: i64 = r.get(19)?;
    let bytes_down: i64 = r.get(20)?;
    Ok(AccessEvent {
        id: Ulid::from_string(&id).map_err(|_| bad_row("id", &id))?,
        time: Timestamp::from_millisecond(time_ms).map_err(|_| bad_row("time", time_ms))?,
        source: Source::from_u8(source).ok_or_else(|| bad_row("source", source))?,
        school: r.get(3)?,
        node: r.get(4)?,
        client_ip: client_ip
            .parse::<IpAddr>()
            .map_err(|_| bad_row("client_ip", &client_ip))?,
        user: r.get(6)?,
        device: r.get(7)?,
        role: r.get(8)?,
        method: r.get(9)?,
        host: r.get(10)?,
        path: r.get(11)?,
        search_terms: r.get(12)?,
        action: Action::from_u8(action).ok_or_else(|| bad_row("action", action))?,
        categories: CategorySet::from_bits(categories as u64),
        severity: match severity {
            Some(s) => Some(Severity::from_u8(s).ok_or_else(|| bad_row("severity", s))?),
            None => None,
        },
        rule: r.get(16)?,
        reason: r.get(17)?,
        status: r.get(18)?,
        bytes_up: bytes_up as u64,
        bytes_down: bytes_down as u64,
        duration_us: r.get(21)?,
        cached: r.get(22)?,
    })
}

fn collect_events(
    rows: impl Iterator<Item = rusqlite::Result<AccessEvent>>,
) -> Result<Vec<AccessEvent>, StoreError> {
    rows.collect::<Result<Vec<_>, _>>().map_err(classify)
}

/// Bad data (constraint, type, size) is never worth retrying; anything else
/// (busy, locked, I/O, full disk) may pass.
fn classify(e: rusqlite::Error) -> StoreError {
    let data = match &e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.code,
            ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig
        ),
        rusqlite::Error::ToSqlConversionFailure(_)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..)
        | rusqlite::Error::InvalidColumnType(..) => true,
        _ => false,
    };
    if data {
        let code = match &e {
            rusqlite::Error::SqliteFailure(f, _) => Some(f.extended_code),
            _ => None,
        };
        StoreError::Data {
            code,
            message: e.to_string(),
        }
    } else {
        StoreError::transient(format!("sqlite: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rusqlite::types::Value;

    use super::*;

    /// `n` events over two hours, some blocked or flagged, most with a user.
    fn events(n: u32) -> Vec<AccessEvent> {
        (0..n)
            .map(|i| {
                let (action, categories) = match i % 5 {
                    0 => (Action::Block, CategorySet::of(Category::Proxy)),
                    1 => (Action::Flag, CategorySet::of(Category::SelfHarm)),
                    _ => (Action::Allow, CategorySet::EMPTY),
                };
                // Some as IPv4-mapped IPv6: stored, and counted, as the IPv4 address.
                let v4 = Ipv4Addr::new(10, 0, 0, (i % 7) as u8);
                let client = if i % 11 == 0 {
                    IpAddr::V6(v4.to_ipv6_mapped())
                } else {
                    IpAddr::V4(v4)
                };
                let e = AccessEvent::new(Source::Proxy, client, format!("h{}.example", i % 3))
                    .at(
                        Timestamp::from_millisecond(1_709_600_000_000 + i64::from(i) * 90_000)
                            .unwrap(),
                    )
                    .with_role(["pupil", "staff"][(i % 2) as usize])
                    .with_action(action)
                    .with_categories(categories);
                if i % 4 == 0 {
                    e
                } else {
                    e.with_user(format!("u{}", i % 5))
                }
            })
            .collect()
    }

    /// Every row of `table`, in key order.
    fn rows(path: &Path, table: &str) -> Vec<Vec<Value>> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2, 3, 4, 5, 6"))
            .unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A `rollup_seen` row already written gains the bypass bits of a later
    /// batch (blocked both times: the same retention class, the same row), and
    /// a purge that deleted the rows lets them be written again.
    #[tokio::test]
    async fn seen_rows_gain_bits_and_come_back_after_a_purge() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("e.sqlite"), Retention::default()).unwrap();
        let at = Timestamp::from_millisecond(1_709_600_000_000).unwrap();
        let event = |action, categories| {
            AccessEvent::new(
                Source::Proxy,
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                "h.example",
            )
            .at(at)
            .with_user("u")
            .with_action(action)
            .with_categories(categories)
        };
        let bypass = |store: &SqliteStore| {
            let conn = Connection::open(store.path()).unwrap();
            conn.query_row(
                "SELECT bypass FROM rollup_seen WHERE kind = ?1 AND who = 'u'",
                [SEEN_USER],
                |r| r.get::<_, i64>(0),
            )
            .ok()
        };
        store
            .insert(&Batch::new(vec![event(
                Action::Block,
                CategorySet::of(Category::Games),
            )]))
            .await
            .unwrap();
        assert_eq!(bypass(&store), Some(0));
        let proxy = CategorySet::of(Category::Proxy);
        store
            .insert(&Batch::new(vec![event(Action::Block, proxy)]))
            .await
            .unwrap();
        assert_eq!(bypass(&store), Some(proxy.bits() as i64));

        let later = Timestamp::from_millisecond(1_709_600_000_000 + 3_650 * DAY_MS).unwrap();
        store.purge(later).await.unwrap();
        assert_eq!(bypass(&store), None);
        store
            .insert(&Batch::new(vec![event(Action::Block, proxy)]))
            .await
            .unwrap();
        assert_eq!(bypass(&store), Some(proxy.bits() as i64));
    }

    /// A replayed batch (some events already stored, one twice in the batch)
    /// stores and counts each event once: the same rollups as inserting every
    /// event once, and every event read back once.
    #[tokio::test]
    async fn a_partly_stored_batch_counts_each_event_once() {
        let all = events(5 * ROWS_PER_INSERT as u32 + 3);
        let dir = tempfile::tempdir().unwrap();
        let once = SqliteStore::open(dir.path().join("once.sqlite"), Retention::default()).unwrap();
        once.insert(&Batch::new(all.clone())).await.unwrap();
        let replayed =
            SqliteStore::open(dir.path().join("replayed.sqlite"), Retention::default()).unwrap();
        // Already stored: a few events, flagged (rows) and not (blocks).
        let some: Vec<_> = all[..4 * ROWS_PER_INSERT]
            .iter()
            .step_by(7)
            .cloned()
            .collect();
        replayed.insert(&Batch::new(some)).await.unwrap();
        let mut batch = all.clone();
        batch.insert(3, all[ROWS_PER_INSERT + 1].clone());
        replayed
            .insert(&Batch::new(batch).replayed())
            .await
            .unwrap();
        // And a whole batch again: nothing changes.
        replayed
            .insert(&Batch::new(all.clone()).replayed())
            .await
            .unwrap();

        for table in ["events", "rollup_hourly", "rollup_seen"] {
            let (a, b) = (rows(once.path(), table), rows(replayed.path(), table));
            assert_eq!(a, b, "{table}");
        }
        let hourly = rows(replayed.path(), "rollup_hourly");
        let counted: i64 = hourly
            .iter()
            .filter(|r| r[5] == Value::Integer(-1))
            .map(|r| match r[6] {
                Value::Integer(n) => n,
                _ => 0,
            })
            .sum();
        assert_eq!(counted, all.len() as i64);
        // Every event once, whether a row (flagged) or in a block.
        let period = Period::new(
            all[0].time,
            Timestamp::from_millisecond(all[all.len() - 1].time_ms() + 1).unwrap(),
        );
        let mut csv = Vec::new();
        let exported = replayed
            .export_csv(
                &period,
                &ExportFilter::default(),
                &mut csv,
                &Purpose::new("test", "test"),
            )
            .await
            .unwrap();
        assert_eq!(exported, all.len() as u64);
        let flagged = all.iter().filter(|e| e.is_flagged()).count();
        assert_eq!(rows(replayed.path(), "events").len(), flagged);
        let conn = Connection::open(replayed.path()).unwrap();
        for kind in [SEEN_USER, SEEN_CLIENT] {
            let seen: i64 = conn
                .query_row(
                    &format!("SELECT COUNT(*) FROM rollup_seen WHERE kind = {kind}"),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            let mut client = String::new();
            let distinct: HashSet<(i64, u8, String)> = all
                .iter()
                .filter_map(|e| {
                    let who = if kind == SEEN_USER {
                        non_empty(&e.user)?.to_owned()
                    } else {
                        write_ip(&mut client, e.client_ip);
                        client.clone()
                    };
                    Some((e.time_ms() / HOUR_MS, e.retention_class().id(), who))
                })
                .collect();
            assert_eq!(seen as usize, distinct.len(), "kind {kind}");
        }
    }

    /// An event timed before its id was made is still found by its id: in a
    /// block within the hour, or as a flagged row at any distance.
    #[tokio::test]
    async fn an_event_is_found_by_its_id_when_timed_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("e.sqlite"), Retention::default()).unwrap();
        let all = events(10);
        let mut shifted = Vec::new();
        for (e, back_ms) in all.iter().zip([0, 5_000, 50 * 60_000, 3 * HOUR_MS]) {
            let mut e = e.clone();
            e.time = Timestamp::from_millisecond(e.time_ms() - back_ms).unwrap();
            shifted.push(e);
        }
        // events(n): 0 blocked, 1 flagged, 2 and 3 allowed.
        store.insert(&Batch::new(shifted.clone())).await.unwrap();
        let purpose = Purpose::new("test", "test");
        for e in &shifted[..3] {
            assert_eq!(store.event(e.id, &purpose).await.unwrap().as_ref(), Some(e));
        }
        // Three hours off and not flagged: outside what a block lookup reads.
        assert_eq!(store.event(shifted[3].id, &purpose).await.unwrap(), None);
        let mut flagged = shifted[1].clone();
        flagged.id = Ulid::from_parts(flagged.id.timestamp_ms(), 99);
        flagged.time = Timestamp::from_millisecond(flagged.time_ms() - 3 * HOUR_MS).unwrap();
        store
            .insert(&Batch::new(vec![flagged.clone()]))
            .await
            .unwrap();
        assert_eq!(
            store.event(flagged.id, &purpose).await.unwrap(),
            Some(flagged)
        );
    }

    #[test]
    fn write_ip_matches_display() {
        let mut buf = String::from("left over");
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "10.9.99.100",
            "255.255.255.255",
            "::1",
            "::ffff:192.168.1.20",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            write_ip(&mut buf, ip);
            assert_eq!(buf, ip.to_canonical().to_string());
        }
    }
}
