//! The fallback for a school within a trust: the store's aggregate queries
//! (categories, roles, top blocked hosts, bypass attempts) have no school filter,
//! so a school's breakdown is counted here from its week of blocked events,
//! streamed through the store's audited CSV export (filtered to the school and to
//! `block`), and from its flagged events.
//!
//! Blocked events are a few percent of traffic, and only counters and the sets of
//! distinct users/devices behind bypass attempts are kept: memory is bounded by
//! the number of distinct hosts and people, not by the number of events. When the
//! store gains a school filter on its aggregates, this module goes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};

use schoolgate_classifier::{Action, Category, CategorySet, Severity};
use schoolgate_events::{AccessEvent, EventStore, ExportFilter, HostCount, Period, Purpose};

use crate::ReportError;
use crate::summary::{BypassFigures, BypassKind, CategoryFigures, RoleFigures};

/// The fields of one event that the tally reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub client: String,
    pub user: Option<String>,
    pub role: String,
    pub host: String,
    pub action: Option<Action>,
    pub categories: CategorySet,
    pub severity: Option<Severity>,
    pub rule: String,
}

impl Row {
    pub fn from_event(e: &AccessEvent) -> Row {
        Row {
            client: e.client_ip.to_string(),
            user: e.user.clone().filter(|u| !u.is_empty()),
            role: e.role.clone(),
            host: e.host.clone(),
            action: Some(e.action),
            categories: e.categories,
            severity: e.severity,
            rule: e.rule.clone(),
        }
    }
}

/// Attempts of one bypass kind and who made them.
#[derive(Clone, Debug, Default)]
pub struct BypassTally {
    pub attempts: u64,
    users: HashSet<String>,
    devices: HashSet<String>,
}

impl BypassTally {
    pub fn add(&mut self, row: &Row) {
        self.attempts += 1;
        if let Some(u) = &row.user {
            self.users.insert(u.clone());
        }
        self.devices.insert(row.client.clone());
    }

    pub fn figures(&self, kind: BypassKind) -> BypassFigures {
        BypassFigures {
            kind,
            attempts: self.attempts,
            users: self.users.len() as u64,
            devices: self.devices.len() as u64,
        }
    }
}

/// Counts for one school's week.
#[derive(Debug, Default)]
pub struct Tally {
    /// category -> (blocked, flagged)
    categories: BTreeMap<Category, (u64, u64)>,
    /// role -> (blocked, flagged)
    roles: BTreeMap<String, (u64, u64)>,
    hosts: HashMap<String, u64>,
    bypass: BTreeMap<Category, BypassTally>,
}

impl Tally {
    /// A blocked event (from the export).
    pub fn add_blocked(&mut self, row: &Row) {
        for c in row.categories.iter() {
            self.categories.entry(c).or_default().0 += 1;
        }
        self.roles.entry(row.role.clone()).or_default().0 += 1;
        *self.hosts.entry(row.host.clone()).or_default() += 1;
        self.add_bypass(row);
    }

    /// A flagged event (from [`EventStore::flagged`]); a blocked one was already
    /// counted as blocked, so only its flag is added.
    pub fn add_flagged(&mut self, row: &Row) {
        for c in row.categories.iter() {
            self.categories.entry(c).or_default().1 += 1;
        }
        self.roles.entry(row.role.clone()).or_default().1 += 1;
        // The store counts a bypass attempt for `block` and `flag` actions; the
        // blocked ones came through `add_blocked`.
        if row.action == Some(Action::Flag) {
            self.add_bypass(row);
        }
    }

    fn add_bypass(&mut self, row: &Row) {
        for c in row.categories.iter().filter(|c| c.is_bypass()) {
            self.bypass.entry(c).or_default().add(row);
        }
    }

    /// Categories, roles, the top `n` blocked hosts and bypass figures.
    pub fn into_parts(
        self,
        n: usize,
    ) -> (
        Vec<CategoryFigures>,
        Vec<RoleFigures>,
        Vec<HostCount>,
        Vec<BypassFigures>,
    ) {
        let categories = self
            .categories
            .into_iter()
            .map(|(category, (blocked, flagged))| CategoryFigures {
                category,
                blocked,
                flagged,
            })
            .collect();
        let roles = self
            .roles
            .into_iter()
            .map(|(role, (blocked, flagged))| RoleFigures {
                role,
                description: String::new(),
                requests: None,
                blocked,
                flagged,
            })
            .collect();
        let mut hosts: Vec<HostCount> = self
            .hosts
            .into_iter()
            .map(|(host, blocked)| HostCount { host, blocked })
            .collect();
        hosts.sort_by(|a, b| b.blocked.cmp(&a.blocked).then(a.host.cmp(&b.host)));
        hosts.truncate(n);
        let bypass = self
            .bypass
            .iter()
            .filter_map(|(c, t)| Some(t.figures(BypassKind::of(*c)?)))
            .collect();
        (categories, roles, hosts, bypass)
    }
}

/// Counts one school's blocked events of the period.
pub async fn blocked(
    store: &dyn EventStore,
    period: &Period,
    school: &str,
    purpose: &Purpose,
) -> Result<Tally, ReportError> {
    let filter = ExportFilter {
        school: Some(school.to_owned()),
        action: Some(Action::Block),
        ..ExportFilter::default()
    };
    let mut sink = CsvTally::default();
    store
        .export_csv(period, &filter, &mut sink, purpose)
        .await?;
    sink.finish();
    Ok(sink.tally)
}

/// A `Write` that parses the export's CSV (RFC 4180: quoted fields may hold
/// commas, doubled quotes and line breaks) as it arrives and counts each row.
#[derive(Debug, Default)]
struct CsvTally {
    field: String,
    fields: Vec<String>,
    in_quotes: bool,
    /// The last byte seen was a `"` inside a quoted field: either the closing
    /// quote or the first of a doubled one.
    quote_pending: bool,
    /// Bytes of a UTF-8 character split across writes.
    partial: Vec<u8>,
    columns: Option<Columns>,
    tally: Tally,
}

#[derive(Debug)]
struct Columns {
    client: usize,
    user: usize,
    role: usize,
    host: usize,
    action: usize,
    categories: usize,
    severity: usize,
    rule: usize,
    width: usize,
}

impl Columns {
    fn from_header(h: &[String]) -> Option<Columns> {
        let at = |name: &str| h.iter().position(|c| c == name);
        Some(Columns {
            client: at("client_ip")?,
            user: at("user")?,
            role: at("role")?,
            host: at("host")?,
            action: at("action")?,
            categories: at("categories")?,
            severity: at("severity")?,
            rule: at("rule")?,
            width: h.len(),
        })
    }
}

impl CsvTally {
    fn push_char(&mut self, c: char) {
        if self.quote_pending {
            self.quote_pending = false;
            if c == '"' {
                self.field.push('"');
                return;
            }
            self.in_quotes = false;
        }
        if self.in_quotes {
            if c == '"' {
                self.quote_pending = true;
            } else {
                self.field.push(c);
            }
            return;
        }
        match c {
            '"' if self.field.is_empty() => self.in_quotes = true,
            ',' => self.fields.push(std::mem::take(&mut self.field)),
            '\r' => {}
            '\n' => self.end_row(),
            c => self.field.push(c),
        }
    }

    fn end_row(&mut self) {
        self.fields.push(std::mem::take(&mut self.field));
        let fields = std::mem::take(&mut self.fields);
        match &self.columns {
            None => self.columns = Columns::from_header(&fields),
            Some(cols) if fields.len() == cols.width => {
                let get = |i: usize| undefuse(&fields[i]);
                let row = Row {
                    client: get(cols.client).to_owned(),
                    user: Some(get(cols.user).to_owned()).filter(|u| !u.is_empty()),
                    role: get(cols.role).to_owned(),
                    host: get(cols.host).to_owned(),
                    action: Action::from_name(get(cols.action)),
                    categories: get(cols.categories)
                        .split(',')
                        .filter_map(Category::from_name)
                        .collect(),
                    severity: Severity::from_name(get(cols.severity)),
                    rule: get(cols.rule).to_owned(),
                };
                if row.action == Some(Action::Block) {
                    self.tally.add_blocked(&row);
                }
            }
            Some(_) => {
                tracing::warn!(
                    fields = fields.len(),
                    "weekly summary: skipped an export row of unexpected width"
                );
            }
        }
    }

    fn finish(&mut self) {
        if self.quote_pending {
            self.quote_pending = false;
            self.in_quotes = false;
        }
        if !self.field.is_empty() || !self.fields.is_empty() {
            self.end_row();
        }
    }
}

/// The export prefixes `'` to values that a spreadsheet would run as a formula.
fn undefuse(v: &str) -> &str {
    match v.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => v,
    }
}

impl Write for CsvTally {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut bytes = std::mem::take(&mut self.partial);
        bytes.extend_from_slice(buf);
        let (text, rest) = match std::str::from_utf8(&bytes) {
            Ok(s) => (s, &[][..]),
            Err(e) if e.error_len().is_none() => {
                // A character cut at the end of this write: keep its start.
                let (ok, rest) = bytes.split_at(e.valid_up_to());
                (std::str::from_utf8(ok).unwrap_or_default(), rest)
            }
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "export is not UTF-8",
                ));
            }
        };
        let text = text.to_owned();
        let rest = rest.to_vec();
        for c in text.chars() {
            self.push_char(c);
        }
        self.partial = rest;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_fields_split_across_writes() {
        let mut t = CsvTally::default();
        let text = "id,client_ip,user,role,host,action,categories,severity,rule\r\n\
                    1,10.0.0.1,,pupil,bet.example,block,gambling,,\"list ut1/gambling: bet.example\"\r\n\
                    2,10.0.0.2,ann,pupil,vpn.example,block,\"vpn,proxy\",medium,\"say \"\"hi\"\",\nthere\"\r\n\
                    3,10.0.0.3,,staff,ok.example,allow,,,default\r\n";
        for chunk in text.as_bytes().chunks(7) {
            t.write_all(chunk).expect("write");
        }
        t.finish();
        let (cats, roles, hosts, bypass) = t.tally.into_parts(10);
        let names: Vec<_> = cats
            .iter()
            .map(|c| (c.category.name(), c.blocked))
            .collect();
        assert_eq!(names, [("gambling", 1), ("proxy", 1), ("vpn", 1)]);
        assert_eq!(roles.len(), 1, "the allowed staff row is not counted");
        assert_eq!(hosts.len(), 2);
        assert_eq!(bypass.len(), 2);
        assert_eq!((bypass[0].users, bypass[0].devices), (1, 1));
    }

    #[test]
    fn undefuses_formulas_only() {
        assert_eq!(undefuse("'=1+1"), "=1+1");
        assert_eq!(undefuse("'plain"), "'plain");
    }
}
