//! What the dashboard and the reports ask the stores, and what they answer.

use std::fmt;
use std::net::IpAddr;

use jiff::Timestamp;
use schoolgate_classifier::{Action, Category, Severity};
use serde::{Deserialize, Serialize};

/// A half-open time range `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Period {
    pub fn new(from: Timestamp, to: Timestamp) -> Period {
        Period { from, to }
    }

    pub(crate) fn start_ms(self) -> i64 {
        self.from.as_millisecond()
    }

    pub(crate) fn end_ms(self) -> i64 {
        self.to.as_millisecond()
    }
}

/// Why someone is looking at personal data: every query that returns user names,
/// client addresses or one identified person's browsing takes one, so the
/// dashboard's audit log has a seam (UK GDPR: access must be for a stated purpose,
/// and the DSL's lookups must themselves be reviewable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purpose {
    /// Who is looking (the dashboard user).
    pub actor: String,
    /// Why (e.g. "review of flagged access", "incident 2024-031").
    pub reason: String,
}

impl Purpose {
    pub fn new(actor: impl Into<String>, reason: impl Into<String>) -> Purpose {
        Purpose {
            actor: actor.into(),
            reason: reason.into(),
        }
    }

    /// Both fields are needed; the stores refuse a query without them.
    pub fn is_stated(&self) -> bool {
        !self.actor.trim().is_empty() && !self.reason.trim().is_empty()
    }
}

/// Whose browsing a timeline is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    User(String),
    Client(IpAddr),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(u) => write!(f, "user {u}"),
            Subject::Client(ip) => write!(f, "client {ip}"),
        }
    }
}

/// The e-safety lead's review list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlaggedQuery {
    pub period: Period,
    /// Only events at or above this severity.
    pub min_severity: Severity,
    pub school: Option<String>,
    pub user: Option<String>,
    /// At most this many, most severe first, then newest first.
    pub limit: usize,
}

impl FlaggedQuery {
    pub fn new(period: Period) -> FlaggedQuery {
        FlaggedQuery {
            period,
            min_severity: Severity::Low,
            school: None,
            user: None,
            limit: 500,
        }
    }
}

/// What [`crate::EventStore::search`] looks for in everyone's events of a
/// period: the e-safety lead's "who went to this site this week".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSearch {
    pub period: Period,
    /// Part of the host name, in lower case: `tiktok` finds `www.tiktok.com`.
    pub host: Option<String>,
    pub category: Option<Category>,
    pub school: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl EventSearch {
    pub fn new(period: Period) -> EventSearch {
        EventSearch {
            period,
            host: None,
            category: None,
            school: None,
            limit: 500,
        }
    }
}

/// How [`crate::EventStore::counts`] groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum GroupBy {
    /// By category name; an event with several categories counts once in each,
    /// and one with none under `""`.
    Category,
    /// By action name.
    Action,
    /// By role.
    Role,
    /// By school id.
    School,
    /// By UTC day, `YYYY-MM-DD`.
    Day,
}

/// One group of [`crate::EventStore::counts`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub key: String,
    pub events: u64,
    pub blocked: u64,
    pub flagged: u64,
}

/// One host of [`crate::EventStore::top_blocked_hosts`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCount {
    pub host: String,
    pub blocked: u64,
}

/// Bypass attempts in one circumvention category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BypassAttempts {
    pub category: Category,
    pub attempts: u64,
    pub distinct_users: u64,
    pub distinct_clients: u64,
}

/// The headline figures of a period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub requests: u64,
    pub distinct_users: u64,
    pub distinct_clients: u64,
    pub blocked: u64,
    pub flagged: u64,
}

/// What [`crate::EventStore::export_csv`] includes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFilter {
    pub school: Option<String>,
    pub subject: Option<Subject>,
    pub action: Option<Action>,
    pub flagged_only: bool,
}

/// What [`crate::EventStore::purge`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    /// Rows deleted (SQLite), or rows in the dropped partitions (ClickHouse).
    pub events: u64,
    /// ClickHouse partitions dropped, as `(yyyymm, class)`.
    pub partitions: Vec<String>,
}

/// The day key used by [`GroupBy::Day`].
pub(crate) fn day_key(day_index: i64) -> String {
    let ts =
        Timestamp::from_second(day_index.saturating_mul(86_400)).unwrap_or(Timestamp::UNIX_EPOCH);
    ts.strftime("%Y-%m-%d").to_string()
}

/// Sorts groups the same way in both stores: by key.
pub(crate) fn sort_counts(mut counts: Vec<Count>) -> Vec<Count> {
    counts.sort_by(|a, b| a.key.cmp(&b.key));
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_keys_are_utc_dates() {
        assert_eq!(day_key(0), "1970-01-01");
        assert_eq!(day_key(19_723), "2024-01-01");
    }

    #[test]
    fn purpose_needs_both_fields() {
        assert!(Purpose::new("dsl", "review").is_stated());
        assert!(!Purpose::new("", "review").is_stated());
        assert!(!Purpose::new("dsl", "  ").is_stated());
    }
}
