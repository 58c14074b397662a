//! Edits to the school's configuration file, made with `toml_edit` on the file's
//! own text so that comments, ordering and layout survive a save from the
//! dashboard. Each [`Change`] is applied to the document and says, in one line,
//! what it changed; validation is left to `Config::parse` (via the reloader), which
//! knows every rule and names the line.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schoolgate_classifier::config::schedule::Term;
use schoolgate_classifier::config::{Config, DateRange, RoleConfig, TimedRule};
use schoolgate_classifier::{Category, Severity};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml_edit::{
    Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value, value,
};

use crate::error::{DashboardError, Result};

/// What one role does with one category: block or not, flag (with a severity) or
/// not. Written `allow`, `flag:high`, `block`, `block+flag:high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellState {
    pub block: bool,
    pub flag: Option<Severity>,
}

impl CellState {
    pub const ALLOW: CellState = CellState {
        block: false,
        flag: None,
    };

    /// Every state, in the order the matrix offers them.
    pub fn all() -> Vec<CellState> {
        let sevs = [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ];
        let mut v = vec![CellState::ALLOW];
        v.extend(sevs.iter().map(|s| CellState {
            block: false,
            flag: Some(*s),
        }));
        v.push(CellState {
            block: true,
            flag: None,
        });
        v.extend(sevs.iter().map(|s| CellState {
            block: true,
            flag: Some(*s),
        }));
        v
    }

    pub fn label(self) -> String {
        match (self.block, self.flag) {
            (false, None) => "Allow".into(),
            (false, Some(s)) => format!("Flag · {s}"),
            (true, None) => "Block".into(),
            (true, Some(s)) => format!("Block + flag · {s}"),
        }
    }

    /// The CSS class of a cell in this state.
    pub fn class(self) -> &'static str {
        match (self.block, self.flag) {
            (false, None) => "st-allow",
            (false, Some(_)) => "st-flag",
            (true, None) => "st-block",
            (true, Some(_)) => "st-blockflag",
        }
    }
}

impl fmt::Display for CellState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.block, self.flag) {
            (false, None) => f.write_str("allow"),
            (false, Some(s)) => write!(f, "flag:{s}"),
            (true, None) => f.write_str("block"),
            (true, Some(s)) => write!(f, "block+flag:{s}"),
        }
    }
}

impl FromStr for CellState {
    type Err = DashboardError;

    fn from_str(s: &str) -> Result<CellState> {
        let bad = || {
            DashboardError::bad_request(format!(
                "`{s}` is not a setting (allow, flag:SEVERITY, block, block+flag:SEVERITY)"
            ))
        };
        let (block, rest) = match s {
            "allow" => return Ok(CellState::ALLOW),
            "block" => {
                return Ok(CellState {
                    block: true,
                    flag: None,
                });
            }
            _ => match s.strip_prefix("block+") {
                Some(r) => (true, r),
                None => (false, s),
            },
        };
        let sev = rest
            .strip_prefix("flag:")
            .and_then(Severity::from_name)
            .ok_or_else(bad)?;
        Ok(CellState {
            block,
            flag: Some(sev),
        })
    }
}

impl Serialize for CellState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CellState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which local list of a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalList {
    Allow,
    Deny,
}

/// SafeSearch or YouTube.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestrictionKind {
    Safesearch,
    Youtube,
}

/// One edit the dashboard can make.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    /// One cell of the roles x categories matrix.
    SetCategory {
        role: String,
        category: Category,
        state: CellState,
    },
    /// Replace a role's local allow or deny entries.
    SetLocalList {
        role: String,
        list: LocalList,
        entries: Vec<String>,
    },
    /// `off` / `moderate` / `strict`, or `None` to inherit.
    SetRestriction {
        role: String,
        kind: RestrictionKind,
        level: Option<String>,
    },
    /// Add or replace `[schedules.NAME]`.
    SetSchedule {
        name: String,
        days: String,
        times: Vec<String>,
    },
    RemoveSchedule {
        name: String,
    },
    AddNetwork {
        cidr: String,
        role: String,
        school: String,
        name: String,
    },
    RemoveNetwork {
        cidr: String,
    },
    AddDevice {
        ip: String,
        role: String,
        name: String,
    },
    RemoveDevice {
        ip: String,
    },
    AddUserMapping {
        name: String,
        role: String,
    },
    RemoveUserMapping {
        name: String,
    },
    AddList {
        name: String,
        format: String,
        category: Option<String>,
        path: Option<String>,
        url: Option<String>,
    },
    /// Add `[[roles.ROLE.timed]]`: while any of `schedule` is active, allow,
    /// block and flag these categories for the role.
    AddTimedRule {
        role: String,
        schedule: Vec<String>,
        #[serde(default)]
        allow: Vec<Category>,
        #[serde(default)]
        block: Vec<Category>,
        #[serde(default)]
        flag: BTreeMap<Category, Severity>,
    },
    /// Remove the role's timed rule at `index` (0-based, in file order).
    RemoveTimedRule {
        role: String,
        index: usize,
    },
    /// `[calendar]`: the keys given replace the file's; `None` keeps it.
    SetCalendar {
        #[serde(default)]
        school_days: Option<Vec<String>>,
        #[serde(default)]
        terms: Option<Vec<TermEdit>>,
        /// `"2026-10-26"` or `"2026-10-26..2026-10-30"`.
        #[serde(default)]
        closures: Option<Vec<String>>,
    },
}

/// One term in a [`Change::SetCalendar`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermEdit {
    #[serde(default)]
    pub name: String,
    /// `YYYY-MM-DD`.
    pub start: String,
    pub end: String,
}

/// A role's cell, as the matrix shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub effective: CellState,
    /// What the role's parents alone give (`allow` for a role without parent).
    pub inherited: CellState,
    /// The role sets something for this category itself.
    pub own: bool,
    /// `illegal`: always blocked, never editable.
    pub locked: bool,
}

/// The chain of roles from `name` up through `extends` (self first).
fn lineage<'c>(config: &'c Config, name: &str) -> Vec<&'c RoleConfig> {
    let mut out = Vec::new();
    let mut cur = config.roles.get(name);
    while let Some(r) = cur {
        if out.len() > config.roles.len() {
            break;
        }
        out.push(r);
        cur = r.extends.as_ref().and_then(|p| config.roles.get(p));
    }
    out
}

/// The cell for `role` x `category`, computed as the classifier compiles roles:
/// blocks add up along `extends`, the nearest flag wins.
pub fn cell(config: &Config, role: &str, category: Category) -> Cell {
    if category.is_locked() {
        let s = CellState {
            block: true,
            flag: Some(Severity::Critical),
        };
        return Cell {
            effective: s,
            inherited: s,
            own: false,
            locked: true,
        };
    }
    let chain = lineage(config, role);
    let own_block = chain.first().is_some_and(|r| r.block.contains(&category));
    let own_flag = chain.first().and_then(|r| r.flag.get(&category).copied());
    let parents = chain.get(1..).unwrap_or(&[]);
    let inherited = CellState {
        block: parents.iter().any(|r| r.block.contains(&category)),
        flag: parents.iter().find_map(|r| r.flag.get(&category).copied()),
    };
    Cell {
        effective: CellState {
            block: own_block || inherited.block,
            flag: own_flag.or(inherited.flag),
        },
        inherited,
        own: own_block || own_flag.is_some(),
        locked: false,
    }
}

/// Applies `changes` to `doc`, checking each against `config` (the file as it was
/// parsed). Returns one line per change that changed something.
pub fn apply(doc: &mut DocumentMut, config: &Config, changes: &[Change]) -> Result<Vec<String>> {
    let mut summary = Vec::new();
    for c in changes {
        if let Some(line) = apply_one(doc, config, c)? {
            summary.push(line);
        }
    }
    Ok(summary)
}

fn apply_one(doc: &mut DocumentMut, config: &Config, change: &Change) -> Result<Option<String>> {
    match change {
        Change::SetCategory {
            role,
            category,
            state,
        } => set_category(doc, config, role, *category, *state),
        Change::SetLocalList {
            role,
            list,
            entries,
        } => set_local_list(doc, config, role, *list, entries),
        Change::SetRestriction { role, kind, level } => {
            set_restriction(doc, config, role, *kind, level.as_deref())
        }
        Change::SetSchedule { name, days, times } => set_schedule(doc, name, days, times),
        Change::RemoveSchedule { name } => {
            let removed = table_mut(doc, "schedules")
                .and_then(|t| t.remove(name))
                .is_some();
            Ok(removed.then(|| format!("schedules.{name}: removed")))
        }
        Change::AddNetwork {
            cidr,
            role,
            school,
            name,
        } => {
            let mut t = Table::new();
            t.insert("cidr", value(cidr.trim()));
            t.insert("role", value(role.trim()));
            if !school.trim().is_empty() {
                t.insert("school", value(school.trim()));
            }
            if !name.trim().is_empty() {
                t.insert("name", value(name.trim()));
            }
            push_table(doc, "networks", t)?;
            Ok(Some(format!("networks: added {} -> {role}", cidr.trim())))
        }
        Change::RemoveNetwork { cidr } => remove_row(doc, "networks", "cidr", cidr),
        Change::AddDevice { ip, role, name } => {
            let mut t = Table::new();
            t.insert("ip", value(ip.trim()));
            t.insert("role", value(role.trim()));
            if !name.trim().is_empty() {
                t.insert("name", value(name.trim()));
            }
            push_table(doc, "devices", t)?;
            Ok(Some(format!("devices: added {} -> {role}", ip.trim())))
        }
        Change::RemoveDevice { ip } => remove_row(doc, "devices", "ip", ip),
        Change::AddUserMapping { name, role } => {
            let mut t = Table::new();
            t.insert("name", value(name.trim()));
            t.insert("role", value(role.trim()));
            push_table(doc, "users", t)?;
            Ok(Some(format!("users: added {} -> {role}", name.trim())))
        }
        Change::RemoveUserMapping { name } => remove_row(doc, "users", "name", name),
        Change::AddList {
            name,
            format,
            category,
            path,
            url,
        } => {
            let mut t = Table::new();
            t.insert("name", value(name.trim()));
            t.insert("format", value(format.trim()));
            if let Some(c) = category.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
                t.insert("category", value(c));
            }
            if let Some(p) = path.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
                t.insert("path", value(p));
            }
            if let Some(u) = url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
                t.insert("url", value(u));
            }
            push_table(doc, "lists", t)?;
            Ok(Some(format!(
                "lists: added source {} ({format})",
                name.trim()
            )))
        }
        Change::AddTimedRule {
            role,
            schedule,
            allow,
            block,
            flag,
        } => add_timed_rule(
            doc,
            config,
            role,
            &TimedRule {
                schedule: schedule.clone(),
                allow: allow.clone(),
                block: block.clone(),
                flag: flag.clone(),
            },
        ),
        Change::RemoveTimedRule { role, index } => remove_timed_rule(doc, config, role, *index),
        Change::SetCalendar {
            school_days,
            terms,
            closures,
        } => set_calendar(
            doc,
            config,
            school_days.as_deref(),
            terms.as_deref(),
            closures.as_deref(),
        ),
    }
}

/// How a timed rule reads in the change history and on the pages.
pub fn describe_timed(t: &TimedRule) -> String {
    let names = |v: &[Category]| v.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
    let mut parts = Vec::new();
    if !t.allow.is_empty() {
        parts.push(format!("allow {}", names(&t.allow)));
    }
    if !t.block.is_empty() {
        parts.push(format!("block {}", names(&t.block)));
    }
    if !t.flag.is_empty() {
        parts.push(format!(
            "flag {}",
            t.flag
                .iter()
                .map(|(c, s)| format!("{c} ({s})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    format!("during {}: {}", t.schedule.join(", "), parts.join("; "))
}

fn category_array(v: &[Category]) -> Array {
    let mut a = Array::new();
    for c in v {
        a.push(c.name());
    }
    a
}

fn add_timed_rule(
    doc: &mut DocumentMut,
    config: &Config,
    role: &str,
    rule: &TimedRule,
) -> Result<Option<String>> {
    if !config.roles.contains_key(role) {
        return Err(DashboardError::bad_request(format!(
            "role `{role}` is not defined"
        )));
    }
    let mut rule = rule.clone();
    rule.schedule = rule
        .schedule
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    rule.schedule.dedup();
    if rule.schedule.is_empty() {
        return Err(DashboardError::bad_request(
            "choose at least one schedule for the timed rule",
        ));
    }
    // The document, not `config`: a schedule added earlier in the same save counts.
    let defined = |s: &str| {
        doc.get("schedules")
            .and_then(Item::as_table_like)
            .is_some_and(|t| t.contains_key(s))
    };
    if let Some(s) = rule.schedule.iter().find(|s| !defined(s)) {
        return Err(DashboardError::bad_request(format!(
            "schedule `{s}` is not defined; add it first"
        )));
    }
    if rule.allow.is_empty() && rule.block.is_empty() && rule.flag.is_empty() {
        return Err(DashboardError::bad_request(
            "a timed rule must allow, block or flag at least one category",
        ));
    }
    if rule.allow.iter().any(|c| c.is_locked()) {
        return Err(DashboardError::bad_request(
            "`illegal` can never be allowed, by any role or schedule",
        ));
    }
    if let Some(c) = rule.allow.iter().find(|c| rule.block.contains(c)) {
        return Err(DashboardError::bad_request(format!(
            "`{c}` cannot be both allowed and blocked by one timed rule"
        )));
    }
    let mut t = Table::new();
    let schedule = if rule.schedule.len() == 1 {
        value(rule.schedule[0].as_str())
    } else {
        let mut a = Array::new();
        for s in &rule.schedule {
            a.push(s.as_str());
        }
        value(a)
    };
    t.insert("schedule", schedule);
    if !rule.allow.is_empty() {
        t.insert("allow", value(category_array(&rule.allow)));
    }
    if !rule.block.is_empty() {
        t.insert("block", value(category_array(&rule.block)));
    }
    if !rule.flag.is_empty() {
        let mut f = InlineTable::new();
        for (c, s) in &rule.flag {
            f.insert(c.name(), Value::from(s.name()));
        }
        t.insert("flag", value(f));
    }
    let line = format!("roles.{role}.timed: added {}", describe_timed(&rule));
    let rt = role_table(doc, role)?;
    if rt.get("timed").is_none() {
        rt.insert("timed", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    match rt.get_mut("timed") {
        Some(Item::ArrayOfTables(a)) => a.push(t),
        Some(Item::Value(Value::Array(a))) => a.push(t.into_inline_table()),
        _ => {
            return Err(DashboardError::bad_request(format!(
                "`roles.{role}.timed` in the file is not a list of tables; edit it by hand"
            )));
        }
    }
    Ok(Some(line))
}

fn remove_timed_rule(
    doc: &mut DocumentMut,
    config: &Config,
    role: &str,
    index: usize,
) -> Result<Option<String>> {
    let rule = config
        .roles
        .get(role)
        .and_then(|r| r.timed.get(index))
        .ok_or_else(|| DashboardError::not_found(format!("timed rule {index} of role `{role}`")))?;
    let line = format!("roles.{role}.timed: removed {}", describe_timed(rule));
    let rt = role_table(doc, role)?;
    let now_empty = match rt.get_mut("timed") {
        Some(Item::ArrayOfTables(a)) if index < a.len() => {
            a.remove(index);
            a.is_empty()
        }
        Some(Item::Value(Value::Array(a))) if index < a.len() => {
            a.remove(index);
            a.is_empty()
        }
        _ => {
            return Err(DashboardError::not_found(format!(
                "timed rule {index} of role `{role}`"
            )));
        }
    };
    if now_empty {
        rt.remove("timed");
    }
    Ok(Some(line))
}

fn parse_date(what: &str, s: &str) -> Result<jiff::civil::Date> {
    s.trim().parse().map_err(|_| {
        DashboardError::bad_request(format!("{what}: `{}` is not a date (YYYY-MM-DD)", s.trim()))
    })
}

fn term_value(t: &Term) -> InlineTable {
    let mut it = InlineTable::new();
    if !t.name.is_empty() {
        it.insert("name", Value::from(t.name.as_str()));
    }
    it.insert("start", Value::from(t.start.to_string()));
    it.insert("end", Value::from(t.end.to_string()));
    it
}

fn calendar_table(doc: &mut DocumentMut) -> Result<&mut dyn TableLike> {
    if doc.get("calendar").is_none() {
        doc.insert("calendar", Item::Table(Table::new()));
    }
    table_mut(doc, "calendar")
        .ok_or_else(|| DashboardError::bad_request("`calendar` in the file is not a table"))
}

fn set_calendar(
    doc: &mut DocumentMut,
    config: &Config,
    school_days: Option<&[String]>,
    terms: Option<&[TermEdit]>,
    closures: Option<&[String]>,
) -> Result<Option<String>> {
    let cal = &config.calendar;
    let mut lines = Vec::new();
    if let Some(days) = school_days {
        let want: Vec<String> = days
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        const FULL: [&str; 7] = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        if let Some(bad) = want
            .iter()
            .find(|d| !NAMES.contains(&d.as_str()) && !FULL.contains(&d.as_str()))
        {
            return Err(DashboardError::bad_request(format!(
                "`{bad}` is not a day of the week (mon, tue, wed, thu, fri, sat, sun)"
            )));
        }
        let have: Vec<String> = cal
            .school_days
            .iter()
            .filter_map(|d| serde_json::to_value(d).ok())
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let want: Vec<String> = NAMES
            .iter()
            .filter(|n| want.iter().any(|d| d.starts_with(*n)))
            .map(|n| (*n).to_owned())
            .collect();
        if want.is_empty() {
            return Err(DashboardError::bad_request(
                "choose at least one school day",
            ));
        }
        if want != have {
            let mut a = Array::new();
            for d in &want {
                a.push(d.as_str());
            }
            calendar_table(doc)?.insert("school_days", value(a));
            lines.push(format!(
                "calendar.school_days: {} (was {})",
                want.join(", "),
                have.join(", ")
            ));
        }
    }
    if let Some(terms) = terms {
        let mut want: Vec<Term> = Vec::new();
        for (i, t) in terms.iter().enumerate() {
            let what = format!("term {}", i + 1);
            let (start, end) = (parse_date(&what, &t.start)?, parse_date(&what, &t.end)?);
            if end < start {
                return Err(DashboardError::bad_request(format!(
                    "{what}: it ends ({end}) before it starts ({start})"
                )));
            }
            want.push(Term {
                name: t.name.trim().to_owned(),
                start,
                end,
            });
        }
        if want != cal.terms {
            let added: Vec<&Term> = want.iter().filter(|t| !cal.terms.contains(t)).collect();
            let removed: Vec<&Term> = cal.terms.iter().filter(|t| !want.contains(t)).collect();
            let t = calendar_table(doc)?;
            match t.get_mut("terms") {
                // Keep the rows (and their comments) that stay; add the new ones.
                Some(Item::Value(Value::Array(a))) => {
                    let keep: Vec<bool> = cal.terms.iter().map(|t| want.contains(t)).collect();
                    let mut i = 0;
                    a.retain(|_| {
                        let k = keep.get(i).copied().unwrap_or(false);
                        i += 1;
                        k
                    });
                    for t in &added {
                        a.push(term_value(t));
                    }
                }
                Some(Item::ArrayOfTables(a)) => {
                    let keep: Vec<bool> = cal.terms.iter().map(|t| want.contains(t)).collect();
                    let mut i = 0;
                    a.retain(|_| {
                        let k = keep.get(i).copied().unwrap_or(false);
                        i += 1;
                        k
                    });
                    for t in &added {
                        a.push(term_value(t).into_table());
                    }
                }
                _ => {
                    let mut a = Array::new();
                    for t in &want {
                        a.push(term_value(t));
                    }
                    t.insert("terms", value(a));
                }
            }
            let fmt_terms = |v: &[&Term]| {
                v.iter()
                    .map(|t| {
                        format!("{} {}..{}", t.name, t.start, t.end)
                            .trim()
                            .to_owned()
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("added {}", fmt_terms(&added)));
            }
            if !removed.is_empty() {
                parts.push(format!("removed {}", fmt_terms(&removed)));
            }
            lines.push(format!("calendar.terms: {}", parts.join("; ")));
        }
    }
    if let Some(closures) = closures {
        let mut want: Vec<DateRange> = Vec::new();
        for c in closures.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
            let r = DateRange::parse(c).map_err(DashboardError::bad_request)?;
            if !want.contains(&r) {
                want.push(r);
            }
        }
        let added: Vec<&DateRange> = want.iter().filter(|r| !cal.closures.contains(r)).collect();
        let removed: Vec<&DateRange> = cal.closures.iter().filter(|r| !want.contains(r)).collect();
        if !added.is_empty() || !removed.is_empty() {
            let text = |r: &DateRange| {
                if r.first == r.last {
                    r.first.to_string()
                } else {
                    format!("{}..{}", r.first, r.last)
                }
            };
            let t = calendar_table(doc)?;
            match t.get_mut("closures") {
                Some(Item::Value(Value::Array(a))) => {
                    let keep: Vec<bool> = cal.closures.iter().map(|r| want.contains(r)).collect();
                    let mut i = 0;
                    a.retain(|_| {
                        let k = keep.get(i).copied().unwrap_or(false);
                        i += 1;
                        k
                    });
                    for r in &added {
                        a.push(text(r));
                    }
                }
                _ => {
                    let mut a = Array::new();
                    for r in &want {
                        a.push(text(r));
                    }
                    t.insert("closures", value(a));
                }
            }
            let join_ranges =
                |v: &[&DateRange]| v.iter().map(|r| text(r)).collect::<Vec<_>>().join(", ");
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("added {}", join_ranges(&added)));
            }
            if !removed.is_empty() {
                parts.push(format!("removed {}", join_ranges(&removed)));
            }
            lines.push(format!("calendar.closures: {}", parts.join("; ")));
        }
    }
    Ok((!lines.is_empty()).then(|| lines.join("; ")))
}

fn table_mut<'d>(doc: &'d mut DocumentMut, key: &str) -> Option<&'d mut dyn TableLike> {
    doc.get_mut(key).and_then(Item::as_table_like_mut)
}

/// The role's table, or a clear error when the role is not in the file.
fn role_table<'d>(doc: &'d mut DocumentMut, role: &str) -> Result<&'d mut dyn TableLike> {
    table_mut(doc, "roles")
        .and_then(|t| t.get_mut(role))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| {
            DashboardError::bad_request(format!(
                "role `{role}` is not defined in the configuration"
            ))
        })
}

fn array_mut<'t>(t: &'t mut dyn TableLike, key: &str) -> Result<&'t mut Array> {
    if t.get(key).is_none() {
        t.insert(key, value(Array::new()));
    }
    t.get_mut(key).and_then(Item::as_array_mut).ok_or_else(|| {
        DashboardError::bad_request(format!(
            "`{key}` in the file is not a list; edit it by hand"
        ))
    })
}

fn remove_str(t: &mut dyn TableLike, key: &str, s: &str) -> Result<bool> {
    if t.get(key).is_none() {
        return Ok(false);
    }
    let a = array_mut(t, key)?;
    let before = a.len();
    a.retain(|v| v.as_str() != Some(s));
    Ok(a.len() != before)
}

fn add_str(t: &mut dyn TableLike, key: &str, s: &str) -> Result<bool> {
    let a = array_mut(t, key)?;
    if a.iter().any(|v| v.as_str() == Some(s)) {
        return Ok(false);
    }
    a.push(s);
    Ok(true)
}

fn set_flag(t: &mut dyn TableLike, category: &str, sev: Option<Severity>) -> Result<()> {
    match sev {
        Some(s) => {
            if t.get("flag").is_none() {
                t.insert("flag", value(InlineTable::new()));
            }
            let f = t
                .get_mut("flag")
                .and_then(Item::as_table_like_mut)
                .ok_or_else(|| {
                    DashboardError::bad_request(
                        "`flag` in the file is not a table; edit it by hand",
                    )
                })?;
            match f.get_mut(category) {
                Some(item) => *item = value(s.name()),
                None => {
                    f.insert(category, value(s.name()));
                }
            }
        }
        None => {
            let now_empty = match t.get_mut("flag").and_then(Item::as_table_like_mut) {
                Some(f) => {
                    f.remove(category);
                    f.is_empty()
                }
                None => false,
            };
            if now_empty {
                t.remove("flag");
            }
        }
    }
    Ok(())
}

fn set_category(
    doc: &mut DocumentMut,
    config: &Config,
    role: &str,
    category: Category,
    want: CellState,
) -> Result<Option<String>> {
    if !config.roles.contains_key(role) {
        return Err(DashboardError::bad_request(format!(
            "role `{role}` is not defined"
        )));
    }
    let cur = cell(config, role, category);
    if cur.locked {
        if want == cur.effective {
            return Ok(None);
        }
        return Err(DashboardError::bad_request(format!(
            "`{category}` is always blocked for every role and cannot be changed (IWF / CTIRU lists)"
        )));
    }
    if want == cur.effective {
        return Ok(None);
    }
    let parent = config
        .roles
        .get(role)
        .and_then(|r| r.extends.clone())
        .unwrap_or_default();
    if cur.inherited.block && !want.block {
        return Err(DashboardError::bad_request(format!(
            "`{role}` inherits the block of `{category}` from `{parent}`; change it there, or use a timed allow in a schedule"
        )));
    }
    if cur.inherited.flag.is_some() && want.flag.is_none() {
        return Err(DashboardError::bad_request(format!(
            "`{role}` inherits a flag on `{category}` from `{parent}`; change it there"
        )));
    }
    let t = role_table(doc, role)?;
    let name = category.name();
    if want.block && !cur.inherited.block {
        add_str(t, "block", name)?;
    } else {
        remove_str(t, "block", name)?;
    }
    let own_flag = if want.flag == cur.inherited.flag {
        None
    } else {
        want.flag
    };
    set_flag(t, name, own_flag)?;
    Ok(Some(format!(
        "roles.{role}: {category} {want} (was {})",
        cur.effective
    )))
}

fn set_local_list(
    doc: &mut DocumentMut,
    config: &Config,
    role: &str,
    list: LocalList,
    entries: &[String],
) -> Result<Option<String>> {
    let r = config
        .roles
        .get(role)
        .ok_or_else(|| DashboardError::bad_request(format!("role `{role}` is not defined")))?;
    let current = match list {
        LocalList::Allow => &r.allow,
        LocalList::Deny => &r.deny,
    };
    let mut want: Vec<String> = Vec::new();
    for e in entries
        .iter()
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
    {
        if !want.contains(&e) {
            want.push(e);
        }
    }
    let added: Vec<&String> = want.iter().filter(|e| !current.contains(e)).collect();
    let removed: Vec<&String> = current.iter().filter(|e| !want.contains(e)).collect();
    if added.is_empty() && removed.is_empty() {
        return Ok(None);
    }
    let key = match list {
        LocalList::Allow => "allow",
        LocalList::Deny => "deny",
    };
    let t = role_table(doc, role)?;
    for e in &removed {
        remove_str(t, key, e)?;
    }
    for e in &added {
        add_str(t, key, e)?;
    }
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("added {}", join(&added)));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {}", join(&removed)));
    }
    Ok(Some(format!("roles.{role}.{key}: {}", parts.join("; "))))
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

fn set_restriction(
    doc: &mut DocumentMut,
    config: &Config,
    role: &str,
    kind: RestrictionKind,
    level: Option<&str>,
) -> Result<Option<String>> {
    let r = config
        .roles
        .get(role)
        .ok_or_else(|| DashboardError::bad_request(format!("role `{role}` is not defined")))?;
    let level = level
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "inherit");
    if let Some(l) = level
        && !matches!(l, "off" | "moderate" | "strict")
    {
        return Err(DashboardError::bad_request(format!(
            "`{l}` is not a level (off, moderate, strict)"
        )));
    }
    let (key, cur) = match kind {
        RestrictionKind::Safesearch => ("safesearch", r.safesearch),
        RestrictionKind::Youtube => ("youtube", r.youtube),
    };
    let cur = cur.map(|c| format!("{c:?}").to_ascii_lowercase());
    if cur.as_deref() == level {
        return Ok(None);
    }
    let t = role_table(doc, role)?;
    match level {
        Some(l) => {
            t.insert(key, value(l));
        }
        None => {
            t.remove(key);
        }
    }
    Ok(Some(format!(
        "roles.{role}.{key}: {} (was {})",
        level.unwrap_or("inherit"),
        cur.as_deref().unwrap_or("inherit")
    )))
}

fn set_schedule(
    doc: &mut DocumentMut,
    name: &str,
    days: &str,
    times: &[String],
) -> Result<Option<String>> {
    let name = name.trim();
    if name.is_empty() {
        return Err(DashboardError::bad_request("a schedule needs a name"));
    }
    if doc.get("schedules").is_none() {
        let mut t = Table::new();
        t.set_implicit(true);
        doc.insert("schedules", Item::Table(t));
    }
    let schedules = table_mut(doc, "schedules")
        .ok_or_else(|| DashboardError::bad_request("`schedules` in the file is not a table"))?;
    if schedules.get(name).is_none() {
        schedules.insert(name, Item::Table(Table::new()));
    }
    let t = schedules
        .get_mut(name)
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| DashboardError::bad_request(format!("schedules.{name} is not a table")))?;
    let days = days.trim();
    let day_value: Value =
        if matches!(days, "school-days" | "weekdays" | "every-day") || days.is_empty() {
            Value::from(if days.is_empty() { "school-days" } else { days })
        } else {
            let mut a = Array::new();
            for d in days
                .split([',', ' '])
                .map(str::trim)
                .filter(|d| !d.is_empty())
            {
                a.push(d);
            }
            Value::Array(a)
        };
    t.insert("days", Item::Value(day_value));
    let mut a = Array::new();
    for tr in times.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        a.push(tr);
    }
    t.insert("times", value(a));
    Ok(Some(format!(
        "schedules.{name}: {days} {}",
        times.join(", ")
    )))
}

fn push_table(doc: &mut DocumentMut, key: &str, t: Table) -> Result<()> {
    if doc.get(key).is_none() {
        doc.insert(key, Item::ArrayOfTables(toml_edit::ArrayOfTables::new()));
    }
    doc.get_mut(key)
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| {
            DashboardError::bad_request(format!(
                "`{key}` in the file is not a [[{key}]] list; edit it by hand"
            ))
        })?
        .push(t);
    Ok(())
}

fn remove_row(
    doc: &mut DocumentMut,
    key: &str,
    field: &str,
    wanted: &str,
) -> Result<Option<String>> {
    let Some(rows) = doc.get_mut(key).and_then(Item::as_array_of_tables_mut) else {
        return Err(DashboardError::not_found(format!("{key}: {wanted}")));
    };
    let idx = rows
        .iter()
        .position(|t| t.get(field).and_then(Item::as_str) == Some(wanted.trim()))
        .ok_or_else(|| DashboardError::not_found(format!("{key}: {wanted}")))?;
    rows.remove(idx);
    Ok(Some(format!("{key}: removed {wanted}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# Hillside
[policy]
default_role = "guest"

[roles.pupil]
description = "Years 7 to 11"
block = ["pornography", # never
         "gambling"]
flag = { self-harm = "high" }

[roles.guest]
extends = "pupil"
"#;

    fn parse() -> (DocumentMut, Config) {
        (
            TEXT.parse().expect("toml"),
            Config::parse("t.toml", TEXT).expect("config"),
        )
    }

    #[test]
    fn cell_states_round_trip() {
        for s in CellState::all() {
            assert_eq!(s.to_string().parse::<CellState>().ok(), Some(s));
        }
        assert!("flag:urgent".parse::<CellState>().is_err());
    }

    #[test]
    fn blocking_a_category_keeps_comments() {
        let (mut doc, config) = parse();
        let games = CellState {
            block: true,
            flag: None,
        };
        let s = apply(
            &mut doc,
            &config,
            &[Change::SetCategory {
                role: "pupil".into(),
                category: Category::Games,
                state: games,
            }],
        )
        .expect("apply");
        assert_eq!(s, ["roles.pupil: games block (was allow)"]);
        let text = doc.to_string();
        assert!(
            text.contains("# never") && text.contains("# Hillside"),
            "{text}"
        );
        let c = Config::parse("t.toml", &text).expect("still valid");
        assert!(c.roles["pupil"].block.contains(&Category::Games));
    }

    #[test]
    fn an_inherited_block_cannot_be_lifted_in_the_child() {
        let (mut doc, config) = parse();
        let err = apply(
            &mut doc,
            &config,
            &[Change::SetCategory {
                role: "guest".into(),
                category: Category::Gambling,
                state: CellState::ALLOW,
            }],
        )
        .expect_err("refused");
        assert!(err.to_string().contains("inherits the block"), "{err}");
    }

    #[test]
    fn illegal_is_locked() {
        let (mut doc, config) = parse();
        let err = apply(
            &mut doc,
            &config,
            &[Change::SetCategory {
                role: "pupil".into(),
                category: Category::Illegal,
                state: CellState::ALLOW,
            }],
        )
        .expect_err("refused");
        assert!(err.to_string().contains("always blocked"));
    }

    #[test]
    fn flags_move_between_severities_and_disappear() {
        let (mut doc, config) = parse();
        let high_block = CellState {
            block: true,
            flag: Some(Severity::Medium),
        };
        apply(
            &mut doc,
            &config,
            &[
                Change::SetCategory {
                    role: "pupil".into(),
                    category: Category::SelfHarm,
                    state: CellState::ALLOW,
                },
                Change::SetCategory {
                    role: "pupil".into(),
                    category: Category::Vpn,
                    state: high_block,
                },
            ],
        )
        .expect("apply");
        let c = Config::parse("t.toml", &doc.to_string()).expect("valid");
        assert!(!c.roles["pupil"].flag.contains_key(&Category::SelfHarm));
        assert_eq!(
            c.roles["pupil"].flag.get(&Category::Vpn),
            Some(&Severity::Medium)
        );
        assert!(c.roles["pupil"].block.contains(&Category::Vpn));
    }

    #[test]
    fn timed_rules_and_the_calendar_keep_the_files_comments() {
        let text = format!(
            "{TEXT}\n[calendar]\nterms = [\n  {{ name = \"Autumn\", start = \"2026-09-03\", end = \"2026-12-18\" }},\n]\nclosures = [\n  \"2026-10-26..2026-10-30\",   # half term\n  \"2026-11-27\",               # INSET day\n]\n\n[schedules.lunch]\ntimes = [\"12:15-13:05\"]\n"
        );
        let config = Config::parse("t.toml", &text).expect("config");
        let mut doc: DocumentMut = text.parse().expect("toml");
        let s = apply(
            &mut doc,
            &config,
            &[
                Change::AddTimedRule {
                    role: "pupil".into(),
                    schedule: vec!["lunch".into()],
                    allow: vec![Category::Games],
                    block: vec![],
                    flag: BTreeMap::from([(Category::Streaming, Severity::Low)]),
                },
                Change::SetCalendar {
                    school_days: None,
                    terms: Some(vec![
                        TermEdit {
                            name: "Autumn".into(),
                            start: "2026-09-03".into(),
                            end: "2026-12-18".into(),
                        },
                        TermEdit {
                            name: "Spring".into(),
                            start: "2027-01-05".into(),
                            end: "2027-03-26".into(),
                        },
                    ]),
                    closures: Some(vec!["2026-11-27".into()]),
                },
            ],
        )
        .expect("apply");
        assert_eq!(
            s,
            [
                "roles.pupil.timed: added during lunch: allow games; flag streaming (low)",
                "calendar.terms: added Spring 2027-01-05..2027-03-26; calendar.closures: removed 2026-10-26..2026-10-30"
            ]
        );
        let out = doc.to_string();
        assert!(
            out.contains("# INSET day") && out.contains("# never"),
            "{out}"
        );
        let c = Config::parse("t.toml", &out).expect("still valid");
        assert_eq!(c.roles["pupil"].timed[0].allow, [Category::Games]);
        assert_eq!(c.calendar.terms.len(), 2);
        assert_eq!(c.calendar.closures.len(), 1);
        let mut doc2: DocumentMut = out.parse().expect("toml");
        let s = apply(
            &mut doc2,
            &c,
            &[Change::RemoveTimedRule {
                role: "pupil".into(),
                index: 0,
            }],
        )
        .expect("remove");
        assert_eq!(
            s,
            ["roles.pupil.timed: removed during lunch: allow games; flag streaming (low)"]
        );
        let c = Config::parse("t.toml", &doc2.to_string()).expect("valid");
        assert!(c.roles["pupil"].timed.is_empty());
    }

    #[test]
    fn networks_and_local_lists() {
        let (mut doc, config) = parse();
        apply(
            &mut doc,
            &config,
            &[
                Change::AddNetwork {
                    cidr: "10.20.0.0/16".into(),
                    role: "pupil".into(),
                    school: String::new(),
                    name: "Pupils".into(),
                },
                Change::SetLocalList {
                    role: "pupil".into(),
                    list: LocalList::Allow,
                    entries: vec!["BBC.co.uk".into(), "".into()],
                },
            ],
        )
        .expect("apply");
        let c = Config::parse("t.toml", &doc.to_string()).expect("valid");
        assert_eq!(c.networks.len(), 1);
        assert_eq!(c.roles["pupil"].allow, ["bbc.co.uk"]);
        let mut doc2: DocumentMut = doc.to_string().parse().expect("toml");
        let s = apply(
            &mut doc2,
            &c,
            &[Change::RemoveNetwork {
                cidr: "10.20.0.0/16".into(),
            }],
        )
        .expect("remove");
        assert_eq!(s, ["networks: removed 10.20.0.0/16"]);
    }
}
