//! The ClickHouse schema, per server version, and its migrations.
//!
//! # The events table
//!
//! - `ReplacingMergeTree`, `ORDER BY (school, action, time, id)`: the review
//!   queries filter by school and action and range over time; `id` last makes the
//!   sorting key unique per event, so a row inserted twice (a retry whose first
//!   attempt did land) collapses into one when parts merge. Queries that need exact
//!   figures count `uniqExact(id)` or read rows with `LIMIT 1 BY id`, so they are
//!   exact before the merge too.
//! - `PARTITION BY (toYYYYMM(time), class)`: the retention class (allowed /
//!   blocked / flagged) is part of the partition, so each class's old months are
//!   dropped on their own schedule (`ALTER TABLE ... DROP PARTITION`): flagged
//!   events are kept for years while allowed traffic goes after 90 days.
//! - `time` is computed by the server from `time_ms` (`DEFAULT`), so it can never
//!   disagree with it.
//!
//! # Versions
//!
//! Debian's 18.16 gets plain `String`s, `FixedString(16)` for addresses (IPv6 or
//! IPv4-mapped bytes) and no `TTL` (purge drops partitions). Servers from 20.1 get
//! `LowCardinality(String)` for the low-cardinality columns, the `IPv6` type (the
//! same 16 bytes on the wire) and a per-class `TTL`. From 21.1 a non-replicated
//! table keeps a deduplication window, and from 22.2 each insert carries
//! `insert_deduplication_token`, so a retried batch is dropped by the server itself.
//!
//! # Cluster (a trust)
//!
//! With `cluster = "name"`, every statement runs `ON CLUSTER`, the data lives in
//! `events_local` (`ReplicatedReplacingMergeTree` under
//! `/clickhouse/tables/{shard}/<db>/events_local`, replica `{replica}`: the
//! `macros` every node's config defines) and `events` is a `Distributed` table in
//! front of it, sharded by `sipHash64(id)` so that copies of one event always meet
//! on the same shard and collapse. See `CLICKHOUSE.md`.

use schoolgate_classifier::config::store::{ClickhouseConfig, Retention};
use serde::{Deserialize, Serialize};

use super::sql;
use crate::event::RetentionClass;

/// What the server can do, from `SELECT version()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub version: String,
    pub major: u32,
    pub minor: u32,
}

impl ServerInfo {
    /// Parses `"18.16.1"`, `"24.8.4.13"`; an unparsable version is treated as the
    /// oldest (everything still works, just without the newer types).
    pub fn parse(version: &str) -> ServerInfo {
        let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next().flatten().unwrap_or(0);
        let minor = parts.next().flatten().unwrap_or(0);
        ServerInfo {
            version: version.trim().to_owned(),
            major,
            minor,
        }
    }

    fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// `LowCardinality` without the experimental flag, `IPv6`, `TTL`.
    pub fn modern_types(&self) -> bool {
        self.at_least(20, 1)
    }

    /// `non_replicated_deduplication_window` as a table setting.
    pub fn non_replicated_dedup(&self) -> bool {
        self.at_least(21, 1)
    }

    /// The `insert_deduplication_token` setting.
    pub fn dedup_token(&self) -> bool {
        self.at_least(22, 2)
    }
}

/// Table names and the `ON CLUSTER` clause for one configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub database: String,
    /// Where inserts and queries go (`db`.`events`).
    pub events: String,
    /// Where the data lives (the same as `events` without a cluster).
    pub events_local: String,
    pub migrations: String,
    pub on_cluster: String,
    pub cluster: Option<String>,
}

impl Names {
    pub fn new(cfg: &ClickhouseConfig) -> Names {
        let db = sql::ident(&cfg.database);
        let (events_local, on_cluster) = match &cfg.cluster {
            Some(c) => (
                format!("{db}.`events_local`"),
                format!(" ON CLUSTER {}", sql::ident(c)),
            ),
            None => (format!("{db}.`events`"), String::new()),
        };
        Names {
            database: cfg.database.clone(),
            events: format!("{db}.`events`"),
            events_local,
            migrations: format!("{db}.`schema_migrations`"),
            on_cluster,
            cluster: cfg.cluster.clone(),
        }
    }
}

/// One schema change: its version, a name, and the statements for a server.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub statements: fn(&Names, &ServerInfo, &Retention) -> Vec<String>,
}

/// Every migration, in order. Append only: an applied migration is never edited.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "events table",
    statements: events_table,
}];

/// What `migrate` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    pub server: ServerInfo,
    /// Versions applied now.
    pub applied: Vec<u32>,
    /// Versions that were already there.
    pub already: Vec<u32>,
}

pub(crate) fn create_database(names: &Names) -> String {
    format!(
        "CREATE DATABASE IF NOT EXISTS {}{}",
        sql::ident(&names.database),
        names.on_cluster
    )
}

pub(crate) fn create_migrations_table(names: &Names) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {}{} (version UInt32, name String, applied_at DateTime) \
         ENGINE = MergeTree ORDER BY version",
        names.migrations, names.on_cluster
    )
}

fn events_table(names: &Names, server: &ServerInfo, retention: &Retention) -> Vec<String> {
    let modern = server.modern_types();
    let low = |t: &str| {
        if modern {
            format!("LowCardinality({t})")
        } else {
            t.to_owned()
        }
    };
    let ip = if modern { "IPv6" } else { "FixedString(16)" };
    let columns = format!(
        "id String, \
         time_ms Int64, \
         time DateTime DEFAULT toDateTime(intDiv(time_ms, 1000)), \
         class UInt8, \
         source UInt8, \
         school {school}, \
         node {node}, \
         client_ip {ip}, \
         user Nullable(String), \
         device Nullable(String), \
         role {role}, \
         method {method}, \
         host String, \
         path String, \
         search_terms String, \
         action UInt8, \
         categories UInt64, \
         severity UInt8, \
         rule String, \
         reason String, \
         status UInt16, \
         bytes_up UInt64, \
         bytes_down UInt64, \
         duration_us UInt32, \
         cached UInt8",
        school = low("String"),
        node = low("String"),
        role = low("String"),
        method = low("String"),
    );
    let engine = match &names.cluster {
        Some(_) => format!(
            "ReplicatedReplacingMergeTree({}, '{{replica}}')",
            sql::string(&format!(
                "/clickhouse/tables/{{shard}}/{}/events_local",
                names.database
            ))
        ),
        None => "ReplacingMergeTree".to_owned(),
    };
    let ttl = if modern {
        let days = |c: RetentionClass| c.days(retention);
        format!(
            " TTL multiIf(class = {f}, time + INTERVAL {fd} DAY, class = {b}, \
             time + INTERVAL {bd} DAY, time + INTERVAL {ad} DAY)",
            f = RetentionClass::Flagged.id(),
            fd = days(RetentionClass::Flagged),
            b = RetentionClass::Blocked.id(),
            bd = days(RetentionClass::Blocked),
            ad = days(RetentionClass::Allowed),
        )
    } else {
        String::new()
    };
    let settings = if names.cluster.is_none() && server.non_replicated_dedup() {
        " SETTINGS non_replicated_deduplication_window = 1000"
    } else {
        ""
    };
    let mut out = vec![format!(
        "CREATE TABLE IF NOT EXISTS {table}{on} ({columns}) ENGINE = {engine} \
         PARTITION BY (toYYYYMM(time), class) ORDER BY (school, action, time, id){ttl}{settings}",
        table = names.events_local,
        on = names.on_cluster,
    )];
    if let Some(cluster) = &names.cluster {
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {events}{on} AS {local} \
             ENGINE = Distributed({cluster}, {db}, 'events_local', sipHash64(id))",
            events = names.events,
            on = names.on_cluster,
            local = names.events_local,
            cluster = sql::string(cluster),
            db = sql::string(&names.database),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cluster: Option<&str>) -> ClickhouseConfig {
        ClickhouseConfig {
            cluster: cluster.map(str::to_owned),
            ..ClickhouseConfig::default()
        }
    }

    #[test]
    fn versions() {
        let old = ServerInfo::parse("18.16.1");
        assert_eq!((old.major, old.minor), (18, 16));
        assert!(!old.modern_types() && !old.dedup_token());
        let new = ServerInfo::parse("24.8.4.13");
        assert!(new.modern_types() && new.dedup_token() && new.non_replicated_dedup());
        assert_eq!(ServerInfo::parse("garbage").major, 0);
    }

    #[test]
    fn old_server_gets_plain_types_and_no_ttl() {
        let ddl = events_table(
            &Names::new(&cfg(None)),
            &ServerInfo::parse("18.16.1"),
            &Retention::default(),
        );
        assert_eq!(ddl.len(), 1);
        let t = &ddl[0];
        assert!(t.contains("client_ip FixedString(16)"));
        assert!(!t.contains("LowCardinality") && !t.contains("TTL"));
        assert!(t.contains("ENGINE = ReplacingMergeTree PARTITION BY (toYYYYMM(time), class)"));
    }

    #[test]
    fn new_server_gets_low_cardinality_ipv6_and_ttl() {
        let t = events_table(
            &Names::new(&cfg(None)),
            &ServerInfo::parse("24.3.1"),
            &Retention::default(),
        )
        .remove(0);
        assert!(t.contains("school LowCardinality(String)"));
        assert!(t.contains("client_ip IPv6"));
        assert!(t.contains("time + INTERVAL 730 DAY"), "{t}");
        assert!(t.contains("non_replicated_deduplication_window"));
    }

    #[test]
    fn cluster_gets_replicated_local_and_distributed() {
        let ddl = events_table(
            &Names::new(&cfg(Some("trust"))),
            &ServerInfo::parse("23.8.1"),
            &Retention::default(),
        );
        assert_eq!(ddl.len(), 2);
        assert!(ddl[0].contains("`schoolgate`.`events_local` ON CLUSTER `trust`"));
        assert!(ddl[0].contains(
            "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/schoolgate/events_local', '{replica}')"
        ));
        assert!(
            ddl[1].contains("Distributed('trust', 'schoolgate', 'events_local', sipHash64(id))")
        );
    }
}
