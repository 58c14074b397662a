//! The ClickHouse store: for a large school, or a trust's shared cluster.
//!
//! Inserts are `RowBinary` with LZ4 compression through the `clickhouse` crate
//! (schema validation off against Debian's 18.16, which cannot answer it). Every
//! query is built as text with [`sql`]'s escaping (18.16 has no server-side
//! parameters) and sent raw.
//!
//! # No duplicates
//!
//! A retry must not duplicate rows. In layers:
//! 1. From 22.2, `insert_deduplication_token` (the batch id, or a hash of the ids
//!    when only part of a batch is re-sent) lets the server drop a repeated insert.
//! 2. On any server, a batch marked `maybe_stored` (a retry after an ambiguous
//!    failure, or a spool replay after a crash) is first probed: the ids already
//!    stored are left out.
//! 3. The table is a `ReplacingMergeTree` whose sorting key ends in the event id,
//!    so copies that still slip through (a server that committed after our probe)
//!    collapse on merge, and every query counts `uniqExact(id)` / reads
//!    `LIMIT 1 BY id`, so answers are exact even before the merge.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::Write;
use std::time::Duration;

use ::clickhouse::{Client, Compression, Row};
use async_trait::async_trait;
use jiff::Timestamp;
use schoolgate_classifier::config::store::{ClickhouseConfig, Retention};
use schoolgate_classifier::{Action, Category, CategorySet, Severity};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use ulid::Ulid;

use super::{EXPORT_PAGE, EventStore, ExportCursor, StoreError, audit, csv};
use crate::event::{AccessEvent, Batch, RetentionClass, Source, bypass_mask};
use crate::query::{
    BypassAttempts, Count, EventSearch, ExportFilter, FlaggedQuery, GroupBy, HostCount, Period,
    PurgeReport, Purpose, Subject, Totals, day_key, sort_counts,
};

pub mod schema;
pub mod sql;

use schema::{MIGRATIONS, Names};
pub use schema::{MigrationReport, ServerInfo};

const DAY_MS: i64 = 86_400_000;
/// Ids per dedup probe query: keeps the query well under 18.16's 256 KiB
/// `max_query_size`.
const PROBE_CHUNK: usize = 1_000;

/// Server error codes that mean the data (or its shape) is bad: retrying the same
/// batch cannot succeed, so it goes to the dead-letter file.
const DATA_CODES: &[i32] = &[
    6,   // CANNOT_PARSE_TEXT
    8,   // THERE_IS_NO_COLUMN
    10,  // NOT_FOUND_COLUMN_IN_BLOCK
    16,  // NO_SUCH_COLUMN_IN_TABLE
    20,  // NUMBER_OF_COLUMNS_DOESNT_MATCH
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    36,  // BAD_ARGUMENTS
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
];

const COLUMNS: &str = "id, time_ms, source, school, node, client_ip, user, device, role, \
     method, host, path, search_terms, action, categories, severity, rule, reason, status, \
     bytes_up, bytes_down, duration_us, cached";

/// `is_flagged()` in SQL (severity 0 is "none").
const FLAGGED: &str = "(action = 1 OR severity > 0)";
/// Distinct known users. (`uniqExact` of a `Nullable` is itself `Nullable` on
/// 18.16, which would not decode as a plain `u64`.)
const USERS: &str = "uniqExactIf(assumeNotNull(user), isNotNull(user))";
/// The severity a flag without one ranks as.
const SEVERITY_RANK: &str = "if(severity = 0, 1, severity)";

/// One row as inserted (`time` is computed by the server).
#[derive(Row, Serialize)]
struct EventRow<'a> {
    id: &'a str,
    time_ms: i64,
    class: u8,
    source: u8,
    school: &'a str,
    node: &'a str,
    client_ip: [u8; 16],
    user: Option<&'a str>,
    device: Option<&'a str>,
    role: &'a str,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    search_terms: &'a str,
    action: u8,
    categories: u64,
    severity: u8,
    rule: &'a str,
    reason: &'a str,
    status: u16,
    bytes_up: u64,
    bytes_down: u64,
    duration_us: u32,
    cached: u8,
}

impl<'a> EventRow<'a> {
    /// `id`: room for the id's text (no string made per row).
    fn new(e: &'a AccessEvent, id: &'a mut [u8; ulid::ULID_LEN]) -> EventRow<'a> {
        EventRow {
            id: e.id.array_to_str(id),
            time_ms: e.time_ms(),
            class: e.retention_class().id(),
            source: e.source.id(),
            school: &e.school,
            node: &e.node,
            client_ip: sql::ip_bytes(e.client_ip),
            user: e.user.as_deref().filter(|u| !u.is_empty()),
            device: e.device.as_deref().filter(|d| !d.is_empty()),
            role: &e.role,
            method: &e.method,
            host: &e.host,
            path: &e.path,
            search_terms: &e.search_terms,
            action: e.action as u8,
            categories: e.categories.bits(),
            severity: e.severity.map(|s| s as u8).unwrap_or(0),
            rule: &e.rule,
            reason: &e.reason,
            status: e.status,
            bytes_up: e.bytes_up,
            bytes_down: e.bytes_down,
            duration_us: e.duration_us,
            cached: u8::from(e.cached),
        }
    }
}

/// One row as read back, in [`COLUMNS`] order.
#[derive(Row, Deserialize)]
struct StoredRow {
    id: String,
    time_ms: i64,
    source: u8,
    school: String,
    node: String,
    client_ip: [u8; 16],
    user: Option<String>,
    device: Option<String>,
    role: String,
    method: String,
    host: String,
    path: String,
    search_terms: String,
    action: u8,
    categories: u64,
    severity: u8,
    rule: String,
    reason: String,
    status: u16,
    bytes_up: u64,
    bytes_down: u64,
    duration_us: u32,
    cached: u8,
}

impl StoredRow {
    fn into_event(self) -> Result<AccessEvent, StoreError> {
        let bad = |what: &str, v: &dyn fmt::Display| StoreError::Data {
            code: None,
            message: format!("stored {what} `{v}` is not valid"),
        };
        Ok(AccessEvent {
            id: Ulid::from_string(&self.id).map_err(|_| bad("id", &self.id))?,
            time: Timestamp::from_millisecond(self.time_ms)
                .map_err(|_| bad("time_ms", &self.time_ms))?,
            source: Source::from_u8(self.source).ok_or_else(|| bad("source", &self.source))?,
            school: self.school,
            node: self.node,
            client_ip: sql::ip_from_bytes(self.client_ip),
            user: self.user,
            device: self.device,
            role: self.role,
            method: self.method,
            host: self.host,
            path: self.path,
            search_terms: self.search_terms,
            action: Action::from_u8(self.action).ok_or_else(|| bad("action", &self.action))?,
            categories: CategorySet::from_bits(self.categories),
            severity: match self.severity {
                0 => None,
                s => Some(Severity::from_u8(s).ok_or_else(|| bad("severity", &s))?),
            },
            rule: self.rule,
            reason: self.reason,
            status: self.status,
            bytes_up: self.bytes_up,
            bytes_down: self.bytes_down,
            duration_us: self.duration_us,
            cached: self.cached != 0,
        })
    }
}

/// What the server and the table can do, learnt on first use.
#[derive(Clone, Debug)]
struct Capabilities {
    server: ServerInfo,
    /// `client_ip` is the `IPv6` type (else `FixedString(16)`): decides how an
    /// address is written in a query. Read from the table, not guessed from the
    /// version, because an upgraded server keeps the old column.
    ipv6_column: bool,
}

/// The ClickHouse store.
pub struct ClickhouseStore {
    cfg: ClickhouseConfig,
    retention: Retention,
    names: Names,
    /// With the database selected: inserts and queries.
    client: Client,
    /// Without a database: `CREATE DATABASE` (the database may not exist yet).
    admin: Client,
    caps: OnceCell<Capabilities>,
    insert_timeout: Duration,
}

impl fmt::Debug for ClickhouseStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickhouseStore")
            .field("url", &self.cfg.url)
            .field("database", &self.cfg.database)
            .field("cluster", &self.cfg.cluster)
            .finish_non_exhaustive()
    }
}

impl ClickhouseStore {
    /// A store for `cfg`. Does no I/O: the server may be down now and come up
    /// later (the pipeline spools meanwhile).
    pub fn new(cfg: &ClickhouseConfig, retention: Retention) -> ClickhouseStore {
        let admin = Client::default()
            .with_url(cfg.url.clone())
            .with_user(cfg.user.clone())
            .with_password(cfg.password.clone())
            .with_compression(Compression::Lz4)
            .with_validation(cfg.validation);
        let client = admin.clone().with_database(cfg.database.clone());
        ClickhouseStore {
            cfg: cfg.clone(),
            retention,
            names: Names::new(cfg),
            client,
            admin,
            caps: OnceCell::new(),
            insert_timeout: Duration::from_secs(60),
        }
    }

    /// The whole-insert timeout (sending and the server's answer). 60 s: a batch
    /// of 10 000 events takes well under a second on a healthy server; past a
    /// minute it is down or stuck, and the pipeline spools and backs off.
    #[must_use]
    pub fn with_insert_timeout(mut self, timeout: Duration) -> ClickhouseStore {
        self.insert_timeout = timeout;
        self
    }

    pub fn config(&self) -> &ClickhouseConfig {
        &self.cfg
    }

    /// The `db`.`events` name queries use (for tests and reports).
    pub fn events_table(&self) -> &str {
        &self.names.events
    }

    /// The server's version, asked every time.
    pub async fn server_info(&self) -> Result<ServerInfo, StoreError> {
        let version: String = self
            .admin
            .query_raw("SELECT version()")
            .fetch_one()
            .await
            .map_err(classify)?;
        Ok(ServerInfo::parse(&version))
    }

    async fn caps(&self) -> Result<&Capabilities, StoreError> {
        self.caps
            .get_or_try_init(|| async {
                let server = self.server_info().await?;
                let column_type: Vec<String> = self
                    .admin
                    .query_raw(&format!(
                        "SELECT type FROM system.columns WHERE database = {} \
                         AND table = {} AND name = 'client_ip'",
                        sql::string(&self.cfg.database),
                        sql::string(local_table_name(&self.names)),
                    ))
                    .fetch_all()
                    .await
                    .map_err(classify)?;
                let ipv6_column = match column_type.first() {
                    Some(t) => t.contains("IPv6"),
                    None => server.modern_types(),
                };
                Ok(Capabilities {
                    server,
                    ipv6_column,
                })
            })
            .await
    }

    /// Creates the database, the tables and `schema_migrations` as the server
    /// version allows, applying each migration not yet recorded.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let server = self.server_info().await?;
        self.exec_admin(&schema::create_database(&self.names))
            .await?;
        self.exec_admin(&schema::create_migrations_table(&self.names))
            .await?;
        let done: Vec<u32> = self
            .admin
            .query_raw(&format!("SELECT version FROM {}", self.names.migrations))
            .fetch_all()
            .await
            .map_err(classify)?;
        let done: HashSet<u32> = done.into_iter().collect();
        let mut report = MigrationReport {
            server: server.clone(),
            applied: Vec::new(),
            already: Vec::new(),
        };
        for m in MIGRATIONS {
            if done.contains(&m.version) {
                report.already.push(m.version);
                continue;
            }
            for statement in (m.statements)(&self.names, &server, &self.retention) {
                self.exec_admin(&statement).await?;
            }
            self.exec_admin(&format!(
                "INSERT INTO {} (version, name, applied_at) VALUES ({}, {}, now())",
                self.names.migrations,
                m.version,
                sql::string(m.name)
            ))
            .await?;
            tracing::info!(version = m.version, name = m.name, server = %server.version, "clickhouse migration applied");
            report.applied.push(m.version);
        }
        Ok(report)
    }

    async fn exec_admin(&self, statement: &str) -> Result<(), StoreError> {
        self.admin
            .query_raw(statement)
            .execute()
            .await
            .map_err(|e| match classify(e) {
                StoreError::Transient { message } | StoreError::Data { message, .. } => {
                    StoreError::transient(format!("{message} (in `{statement}`)"))
                }
                other => other,
            })
    }

    async fn fetch<T>(&self, query: &str) -> Result<Vec<T>, StoreError>
    where
        T: ::clickhouse::RowOwned + ::clickhouse::RowRead,
    {
        self.client
            .query_raw(query)
            .fetch_all::<T>()
            .await
            .map_err(classify)
    }

    async fn fetch_events(&self, query: &str) -> Result<Vec<AccessEvent>, StoreError> {
        self.fetch::<StoredRow>(query)
            .await?
            .into_iter()
            .map(StoredRow::into_event)
            .collect()
    }

    /// The ids of `batch` already in the table.
    async fn already_stored(&self, batch: &Batch) -> Result<HashSet<String>, StoreError> {
        let Some((lo, hi)) = batch.time_range_ms() else {
            return Ok(HashSet::new());
        };
        let mut found = HashSet::new();
        for chunk in batch.events.chunks(PROBE_CHUNK) {
            let ids: Vec<String> = chunk
                .iter()
                .map(|e| sql::string(&e.id.to_string()))
                .collect();
            let query = format!(
                "SELECT id FROM {} WHERE {} AND id IN ({})",
                self.names.events,
                time_range_sql(lo, hi.saturating_add(1)),
                ids.join(",")
            );
            found.extend(self.fetch::<String>(&query).await?);
        }
        Ok(found)
    }

    fn ip_sql(&self, caps: &Capabilities, ip: std::net::IpAddr) -> String {
        sql::ip_literal(ip, caps.ipv6_column)
    }

    fn subject_sql(&self, caps: &Capabilities, subject: &Subject) -> String {
        match subject {
            Subject::User(u) => format!("user = {}", sql::string(u)),
            Subject::Client(ip) => format!("client_ip = {}", self.ip_sql(caps, *ip)),
        }
    }
}

fn local_table_name(names: &Names) -> &'static str {
    if names.cluster.is_some() {
        "events_local"
    } else {
        "events"
    }
}

/// `[from_ms, to_ms)`, with the `time` bounds that let the server prune partitions
/// and use the primary key.
fn time_range_sql(from_ms: i64, to_ms: i64) -> String {
    let secs = |ms: i64| ms.div_euclid(1000).clamp(0, i64::from(u32::MAX));
    format!(
        "time_ms >= {from_ms} AND time_ms < {to_ms} AND time >= toDateTime({}) \
         AND time <= toDateTime({})",
        secs(from_ms),
        secs(to_ms)
    )
}

fn period_sql(p: &Period) -> String {
    time_range_sql(p.start_ms(), p.end_ms())
}

/// The period, narrowed to one school's events when `school` is given.
fn scope_sql(p: &Period, school: Option<&str>) -> String {
    match school {
        Some(school) => format!("{} AND school = {}", period_sql(p), sql::string(school)),
        None => period_sql(p),
    }
}

/// The category ids of an event, for `ARRAY JOIN`. (18.16 cannot use a column
/// inside a lambda here, so no `bitTest` filter: `bitmaskToArray` gives the set
/// bits as powers of two, `log2` their positions, exactly.)
const CATEGORY_ARRAY: &str = "arrayMap(b -> toUInt8(log2(b)), bitmaskToArray(categories))";

#[async_trait]
impl EventStore for ClickhouseStore {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    async fn insert(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let caps = self.caps().await?;
        let stored = if batch.maybe_stored {
            self.already_stored(batch).await?
        } else {
            HashSet::new()
        };
        // An event can be in a batch twice (a replay that met both the journal's
        // copy and the spool's): send it once.
        let mut seen = HashSet::with_capacity(batch.len());
        let events: Vec<&AccessEvent> = batch
            .events
            .iter()
            .filter(|e| seen.insert(e.id))
            .filter(|e| stored.is_empty() || !stored.contains(&e.id.to_string()))
            .collect();
        if events.is_empty() {
            tracing::debug!(batch = %batch.id, "clickhouse: batch already stored");
            return Ok(());
        }
        let mut insert = self
            .client
            .insert_unescaped::<EventRow<'_>>(&self.names.events)
            .await
            .map_err(classify)?
            .with_timeouts(Some(self.insert_timeout), Some(self.insert_timeout));
        if caps.server.dedup_token() {
            let token = if events.len() == batch.len() && !batch.maybe_stored {
                batch.id.to_string()
            } else {
                // Another set of rows needs another token, or the server would
                // drop it as a repeat of the first attempt.
                let mut h = blake3::Hasher::new();
                for e in &events {
                    h.update(&e.id.to_bytes());
                }
                format!("{}-{}", batch.id, h.finalize().to_hex())
            };
            insert = insert.with_setting("insert_deduplication_token", token);
        }
        let mut id = [0u8; ulid::ULID_LEN];
        for e in events {
            insert
                .write(&EventRow::new(e, &mut id))
                .await
                .map_err(classify)?;
        }
        insert.end().await.map_err(classify)
    }

    async fn flagged(
        &self,
        q: &FlaggedQuery,
        purpose: &Purpose,
    ) -> Result<Vec<AccessEvent>, StoreError> {
        audit(purpose, "flagged", &format_args!("{q:?}"))?;
        let mut filter = String::new();
        if let Some(school) = &q.school {
            filter.push_str(&format!(" AND school = {}", sql::string(school)));
        }
        if let Some(user) = &q.user {
            filter.push_str(&format!(" AND user = {}", sql::string(user)));
        }
        let query = format!(
            "SELECT {COLUMNS} FROM {table} WHERE {FLAGGED} AND {period} \
             AND {SEVERITY_RANK} >= {min}{filter} \
             ORDER BY {SEVERITY_RANK} DESC, time_ms DESC, id DESC LIMIT 1 BY id LIMIT {limit}",
            table = self.names.events,
            period = period_sql(&q.period),
            min = q.min_severity as u8,
            limit = q.limit,
        );
        self.fetch_events(&query).await
    }

    async fn search(
        &self,
        q: &EventSearch,
        purpose: &Purpose,
    ) -> Result<Vec<AccessEvent>, StoreError> {
        audit(purpose, "search", &format_args!("{q:?}"))?;
        let mut filter = String::new();
        if let Some(host) = &q.host {
            filter.push_str(&format!(" AND position(host, {}) > 0", sql::string(host)));
        }
        if let Some(c) = q.category {
            filter.push_str(&format!(
                " AND bitAnd(categories, {}) != 0",
                CategorySet::of(c).bits()
            ));
        }
        let query = format!(
            "SELECT {COLUMNS} FROM {table} WHERE {scope}{filter} \
             ORDER BY time_ms DESC, id DESC LIMIT 1 BY id LIMIT {limit}",
            table = self.names.events,
            scope = scope_sql(&q.period, q.school.as_deref()),
            limit = q.limit,
        );
        self.fetch_events(&query).await
    }

    async fn timeline(
        &self,
        subject: &Subject,
        around: Timestamp,
        minutes: i64,
        purpose: &Purpose,
    ) -> Result<Vec<AccessEvent>, StoreError> {
        audit(purpose, "timeline", subject)?;
        let caps = self.caps().await?;
        let (lo, hi) = super::sqlite::window(around, minutes);
        let query = format!(
            "SELECT {COLUMNS} FROM {table} WHERE {who} AND {range} \
             ORDER BY time_ms, id LIMIT 1 BY id",
            table = self.names.events,
            who = self.subject_sql(caps, subject),
            range = time_range_sql(lo, hi.saturating_add(1)),
        );
        self.fetch_events(&query).await
    }

    async fn event(&self, id: Ulid, purpose: &Purpose) -> Result<Option<AccessEvent>, StoreError> {
        audit(purpose, "event", &id)?;
        // The id's own time is not the event's (an event may be stamped before it
        // is given its id), so no time bound: a scan of the `id` column, which is
        // fine for the few lookups people make.
        let query = format!(
            "SELECT {COLUMNS} FROM {table} WHERE id = {id} LIMIT 1",
            table = self.names.events,
            id = sql::string(&id.to_string()),
        );
        Ok(self.fetch_events(&query).await?.into_iter().next())
    }

    async fn counts(
        &self,
        period: &Period,
        group_by: GroupBy,
        school: Option<&str>,
    ) -> Result<Vec<Count>, StoreError> {
        let (key, array_join) = match group_by {
            GroupBy::Category => (
                "toString(cat)".to_owned(),
                format!(" ARRAY JOIN {CATEGORY_ARRAY} AS cat"),
            ),
            GroupBy::Action => ("toString(action)".to_owned(), String::new()),
            GroupBy::Role => ("toString(role)".to_owned(), String::new()),
            GroupBy::School => ("toString(school)".to_owned(), String::new()),
            GroupBy::Day => (
                format!("toString(intDiv(time_ms, {DAY_MS}))"),
                String::new(),
            ),
        };
        let query = format!(
            "SELECT {key} AS k, uniqExact(id), uniqExactIf(id, action = 3), \
             uniqExactIf(id, {FLAGGED}) FROM {table}{array_join} WHERE {period} GROUP BY k",
            table = self.names.events,
            period = scope_sql(period, school),
        );
        let rows: Vec<(String, u64, u64, u64)> = self.fetch(&query).await?;
        let mut out = BTreeMap::new();
        for (raw, events, blocked, flagged) in rows {
            let key = match group_by {
                GroupBy::Category => raw
                    .parse::<u8>()
                    .ok()
                    .and_then(Category::from_id)
                    .map(|c| c.name().to_owned())
                    .unwrap_or(raw),
                GroupBy::Action => raw
                    .parse::<u8>()
                    .ok()
                    .and_then(Action::from_u8)
                    .map(|a| a.name().to_owned())
                    .unwrap_or(raw),
                GroupBy::Day => raw.parse::<i64>().map(day_key).unwrap_or(raw),
                _ => raw,
            };
            out.insert(
                key.clone(),
                Count {
                    key,
                    events,
                    blocked,
                    flagged,
                },
            );
        }
        Ok(sort_counts(out.into_values().collect()))
    }

    async fn top_blocked_hosts(
        &self,
        period: &Period,
        n: usize,
        school: Option<&str>,
    ) -> Result<Vec<HostCount>, StoreError> {
        let query = format!(
            "SELECT host, uniqExact(id) AS c FROM {table} WHERE action = 3 AND {period} \
             GROUP BY host ORDER BY c DESC, host ASC LIMIT {n}",
            table = self.names.events,
            period = scope_sql(period, school),
        );
        let rows: Vec<(String, u64)> = self.fetch(&query).await?;
        Ok(rows
            .into_iter()
            .map(|(host, blocked)| HostCount { host, blocked })
            .collect())
    }

    async fn bypass_attempts(
        &self,
        period: &Period,
        school: Option<&str>,
    ) -> Result<Vec<BypassAttempts>, StoreError> {
        let mask = bypass_mask();
        let ids: Vec<String> = CategorySet::from_bits(mask)
            .iter()
            .map(|c| c.id().to_string())
            .collect();
        let query = format!(
            "SELECT toUInt8(cat) AS c, uniqExact(id), {USERS}, uniqExact(client_ip) \
             FROM {table} ARRAY JOIN {CATEGORY_ARRAY} AS cat \
             WHERE {period} AND action IN (1, 3) AND bitAnd(categories, {mask}) != 0 \
             AND cat IN ({ids}) GROUP BY c ORDER BY c",
            table = self.names.events,
            period = scope_sql(period, school),
            ids = ids.join(", "),
        );
        let rows: Vec<(u8, u64, u64, u64)> = self.fetch(&query).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(c, attempts, users, clients)| {
                Some(BypassAttempts {
                    category: Category::from_id(c)?,
                    attempts,
                    distinct_users: users,
                    distinct_clients: clients,
                })
            })
            .collect())
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
        let caps = self.caps().await?;
        let mut conditions = vec![period_sql(period)];
        if let Some(school) = &filter.school {
            conditions.push(format!("school = {}", sql::string(school)));
        }
        if let Some(subject) = &filter.subject {
            conditions.push(self.subject_sql(caps, subject));
        }
        if let Some(action) = filter.action {
            conditions.push(format!("action = {}", action as u8));
        }
        if filter.flagged_only {
            conditions.push(FLAGGED.to_owned());
        }
        let base = conditions.join(" AND ");
        csv::write_header(out).map_err(StoreError::Export)?;
        let mut cursor: ExportCursor = None;
        let mut written = 0u64;
        loop {
            let after = match &cursor {
                Some((t, id)) => format!(
                    " AND (time_ms > {t} OR (time_ms = {t} AND id > {}))",
                    sql::string(id)
                ),
                None => String::new(),
            };
            let query = format!(
                "SELECT {COLUMNS} FROM {table} WHERE {base}{after} \
                 ORDER BY time_ms, id LIMIT 1 BY id LIMIT {EXPORT_PAGE}",
                table = self.names.events,
            );
            let page = self.fetch_events(&query).await?;
            for e in &page {
                csv::write_event(out, e).map_err(StoreError::Export)?;
            }
            written += page.len() as u64;
            match page.last() {
                Some(last) if page.len() == EXPORT_PAGE => {
                    cursor = Some((last.time_ms(), last.id.to_string()));
                }
                _ => break,
            }
        }
        out.flush().map_err(StoreError::Export)?;
        Ok(written)
    }

    async fn totals(&self, period: &Period, school: Option<&str>) -> Result<Totals, StoreError> {
        let query = format!(
            "SELECT uniqExact(id), {USERS}, uniqExact(client_ip), \
             uniqExactIf(id, action = 3), uniqExactIf(id, {FLAGGED}) FROM {table} WHERE {period}",
            table = self.names.events,
            period = scope_sql(period, school),
        );
        let rows: Vec<(u64, u64, u64, u64, u64)> = self.fetch(&query).await?;
        let (requests, distinct_users, distinct_clients, blocked, flagged) =
            rows.into_iter().next().unwrap_or_default();
        Ok(Totals {
            requests,
            distinct_users,
            distinct_clients,
            blocked,
            flagged,
        })
    }

    /// Drops whole months of each class that are past its retention. On 18.16
    /// this is the only retention there is, so a class is kept up to a month longer
    /// than its days; newer servers also have the table's `TTL`, which is exact.
    /// With a cluster, run it on each shard (the partitions listed are this node's).
    async fn purge(&self, now: Timestamp) -> Result<PurgeReport, StoreError> {
        let parts: Vec<(String, u64)> = self
            .fetch(&format!(
                "SELECT partition, sum(rows) FROM system.parts WHERE database = {} \
                 AND table = {} AND active GROUP BY partition",
                sql::string(&self.cfg.database),
                sql::string(local_table_name(&self.names)),
            ))
            .await?;
        let mut report = PurgeReport::default();
        for class in RetentionClass::ALL {
            let cutoff_ms = now.as_millisecond() - i64::from(class.days(&self.retention)) * DAY_MS;
            // The server's own month of the cutoff: partitions are cut in its time
            // zone, so compare in it.
            let cutoff_month: u32 = self
                .fetch::<u32>(&format!(
                    "SELECT toYYYYMM(toDateTime({}))",
                    cutoff_ms.div_euclid(1000).clamp(0, i64::from(u32::MAX))
                ))
                .await?
                .into_iter()
                .next()
                .unwrap_or(0);
            for (partition, rows) in &parts {
                let Some((month, part_class)) = parse_partition(partition) else {
                    continue;
                };
                if part_class != class.id() || month >= cutoff_month {
                    continue;
                }
                self.exec_admin(&format!(
                    "ALTER TABLE {}{} DROP PARTITION ({month}, {part_class})",
                    self.names.events_local, self.names.on_cluster
                ))
                .await?;
                report.events += rows;
                report.partitions.push(format!("({month}, {part_class})"));
            }
        }
        Ok(report)
    }
}

/// `(201707,0)` -> `(201707, 0)`.
fn parse_partition(text: &str) -> Option<(u32, u8)> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (month, class) = inner.split_once(',')?;
    Some((month.trim().parse().ok()?, class.trim().parse().ok()?))
}

/// Transient unless the server's code says the data is bad (or the row could not
/// even be serialised).
fn classify(e: ::clickhouse::error::Error) -> StoreError {
    use ::clickhouse::error::Error as E;
    match e {
        E::BadResponse(message) => {
            let code = sql::error_code(&message);
            if code.is_some_and(|c| DATA_CODES.contains(&c)) {
                StoreError::Data { code, message }
            } else {
                StoreError::Transient { message }
            }
        }
        e @ (E::Custom(_) | E::SequenceMustHaveLength | E::SchemaMismatch(_)) => StoreError::Data {
            code: None,
            message: e.to_string(),
        },
        e => StoreError::transient(format!("clickhouse: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_parse() {
        assert_eq!(parse_partition("(201707,0)"), Some((201707, 0)));
        assert_eq!(parse_partition("(202401, 2)"), Some((202401, 2)));
        assert_eq!(parse_partition("201707"), None);
    }

    #[test]
    fn classification_follows_the_server_code() {
        let data = classify(::clickhouse::error::Error::BadResponse(
            "Code: 27, e.displayText() = DB::Exception: Cannot parse input".into(),
        ));
        assert!(matches!(data, StoreError::Data { code: Some(27), .. }));
        let busy = classify(::clickhouse::error::Error::BadResponse(
            "Code: 252, e.displayText() = DB::Exception: Too many parts".into(),
        ));
        assert!(busy.is_transient());
        assert!(classify(::clickhouse::error::Error::TimedOut).is_transient());
    }
}
