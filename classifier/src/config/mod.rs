//! The school's configuration: one TOML file, parsed into plain structs and checked.
//!
//! Parsing is pure: [`Config::parse`] takes the text and the file name (for
//! messages). Every section uses `deny_unknown_fields`, so a typo fails loudly, and
//! [`Config::validate`] rejects what parses but makes no sense. Every error names
//! the file, the line and the key: `school.toml:42: roles.pupil.block[3]: ...`.
//!
//! # Layout
//! - `mod.rs`: the root [`Config`], `[policy]`, parsing, validation, [`ConfigError`]
//! - `role.rs`: `[roles.NAME]`
//! - `schedule.rs`: `[calendar]`, `[schedules.NAME]`, time and date ranges
//! - `services.rs`: `[listen]`, `[dns]`, `[proxy]`, `[dashboard]`, `[reports]`,
//!   `[alerts]`, `[[networks]]`, `[[devices]]`, `[[users]]`, `[[schools]]`, `[[lists]]`
//! - `store.rs`: `[store]`

pub mod role;
pub mod schedule;
pub mod services;
pub mod store;

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

pub use role::{Restriction, RoleConfig, TimedRule};
pub use schedule::{CalendarConfig, DateRange, Days, ScheduleConfig, TimeRange};
pub use services::{
    AlertsConfig, BlockAnswer, DashboardConfig, DeviceConfig, DnsConfig, FrontingAction,
    ListFormat, ListSource, ListenConfig, NetworkConfig, ProxyAuth, ProxyConfig, ReportsConfig,
    SchoolConfig, SmtpConfig, Upstream, UpstreamTls, UserConfig,
};
pub use store::{Backend, ClickhouseConfig, Retention, StoreConfig};

use crate::category::Category;

/// The whole configuration file.
///
/// Defaults: no trust, no schools (a single unnamed school), `[policy]` as in
/// [`PolicyConfig`], the calendar Monday to Friday, no schedules, no roles (at least
/// the default role must be defined), no networks, devices or users, no list sources
/// (the curated lists still apply), and the section defaults of each section type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The trust's name, for a multi-academy trust.
    pub trust: Option<String>,
    pub schools: Vec<SchoolConfig>,
    pub policy: PolicyConfig,
    pub calendar: CalendarConfig,
    pub schedules: BTreeMap<String, ScheduleConfig>,
    pub roles: BTreeMap<String, RoleConfig>,
    pub networks: Vec<NetworkConfig>,
    pub devices: Vec<DeviceConfig>,
    pub users: Vec<UserConfig>,
    pub lists: Vec<ListSource>,
    pub listen: ListenConfig,
    pub dns: DnsConfig,
    pub proxy: ProxyConfig,
    pub dashboard: DashboardConfig,
    pub store: StoreConfig,
    pub reports: ReportsConfig,
    pub alerts: AlertsConfig,
}

/// `[policy]`: settings that apply to every role.
///
/// Defaults: unknown clients get `guest` (fail closed: guest is the most
/// restricted level in a normal school config), time zone `Europe/London`, this
/// node is called `schoolgate`, the built-in keyword rules and curated lists are on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The role of a client no network, device or user mapping names.
    pub default_role: String,
    /// IANA time zone for schedules and reports.
    pub timezone: String,
    /// This filter node's name in events (a trust runs several).
    pub node: String,
    /// Scan hosts, paths and search terms with schoolgate's weighted keyword rules.
    pub keywords: bool,
    /// Use schoolgate's own curated lists (DoH resolvers, VPNs, proxies, ...).
    pub curated_lists: bool,
    /// Hosts that lists must never block (e.g. the school's own domains), except
    /// `illegal`.
    pub never_block: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            default_role: "guest".to_owned(),
            timezone: "Europe/London".to_owned(),
            node: "schoolgate".to_owned(),
            keywords: true,
            curated_lists: true,
            never_block: Vec::new(),
        }
    }
}

/// A configuration problem, located in the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file name as given to [`Config::parse`].
    pub file: String,
    /// 1-based line, when the problem can be placed.
    pub line: Option<usize>,
    /// The dotted key, e.g. `roles.pupil.block[2]`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// All the problems found in one file (validation reports every one it finds).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Makes every relative file path in the configuration relative to `base`
    /// (the config file's folder), so the filter behaves the same whatever
    /// directory it runs from, at start and at every reload. List paths are
    /// resolved when the lists are read.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        let fix = |p: &mut std::path::PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.store.path);
        fix(&mut self.store.spool_dir);
        fix(&mut self.store.dead_letter);
        fix(&mut self.dashboard.state);
        for p in [
            &mut self.proxy.users_file,
            &mut self.dashboard.tls_cert,
            &mut self.dashboard.tls_key,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
    }

    /// The settings that differ between `self` (running) and `new` but are
    /// read once, when the filter starts: the listening sockets, the event
    /// store, the DNS filter's upstreams, cache, block answers and sampling,
    /// the proxy's threads and connection total, the alerter, the node name,
    /// the dashboard's state and certificate. A reload applies everything else
    /// (roles, networks, lists, schedules, limits per client...) and names these
    /// as waiting for a restart, so none is silently ignored.
    pub fn restart_needed(&self, new: &Config) -> Vec<&'static str> {
        let recipients = |c: &Config| -> Vec<(String, Vec<String>)> {
            c.schools
                .iter()
                .map(|s| (s.id.clone(), s.alert_recipients.clone()))
                .collect()
        };
        let d = (&self.dashboard, &new.dashboard);
        [
            ("[listen]", self.listen != new.listen),
            ("[store]", self.store != new.store),
            ("[dns]", self.dns != new.dns),
            ("proxy.workers", self.proxy.workers != new.proxy.workers),
            (
                "proxy.max_connections",
                self.proxy.max_connections != new.proxy.max_connections,
            ),
            ("[alerts]", self.alerts != new.alerts),
            (
                "schools' alert_recipients",
                recipients(self) != recipients(new),
            ),
            ("policy.node", self.policy.node != new.policy.node),
            (
                "dashboard.state, tls_cert, tls_key",
                (&d.0.state, &d.0.tls_cert, &d.0.tls_key)
                    != (&d.1.state, &d.1.tls_cert, &d.1.tls_key),
            ),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }

    /// Parses and validates a configuration file's text.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigErrors> {
        let locator = Locator::new(text);
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| locator.line_of(s.start));
            let key = e
                .span()
                .map(|s| locator.key_at(s.start, e.message()))
                .unwrap_or_default();
            ConfigErrors(vec![ConfigError {
                file: file.to_owned(),
                line,
                key,
                message: e.message().trim().to_owned(),
            }])
        })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(
                problems
                    .into_iter()
                    .map(|(key, message)| ConfigError {
                        file: file.to_owned(),
                        line: locator.line_of_key(&key),
                        key,
                        message,
                    })
                    .collect(),
            ))
        }
    }

    /// Renders the configuration back to TOML (the dashboard writes it this way).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    /// Checks what parsing cannot: references between sections, overlaps, ranges.
    /// Returns `(key, message)` pairs; empty when the configuration is sound.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut p = Problems::default();
        self.validate_policy(&mut p);
        self.validate_roles(&mut p);
        self.validate_networks(&mut p);
        self.validate_lists(&mut p);
        self.validate_services(&mut p);
        p.0
    }

    fn validate_policy(&self, p: &mut Problems) {
        if !self.roles.contains_key(&self.policy.default_role) {
            p.push(
                "policy.default_role",
                format!(
                    "role `{}` is not defined in [roles] (unknown clients need a role; \
                     define it, e.g. [roles.guest])",
                    self.policy.default_role
                ),
            );
        }
        if jiff::tz::TimeZone::get(&self.policy.timezone).is_err() {
            p.push(
                "policy.timezone",
                format!(
                    "`{}` is not a known IANA time zone (e.g. \"Europe/London\")",
                    self.policy.timezone
                ),
            );
        }
        for (i, host) in self.policy.never_block.iter().enumerate() {
            if let Err(e) = crate::domain::validate_entry(host) {
                p.push(format!("policy.never_block[{i}]"), e);
            }
        }
        let mut ids = HashSet::new();
        for (i, s) in self.schools.iter().enumerate() {
            if !valid_name(&s.id) {
                p.push(format!("schools[{i}].id"), name_rule(&s.id));
            } else if !ids.insert(s.id.as_str()) {
                p.push(
                    format!("schools[{i}].id"),
                    format!("school `{}` is defined twice", s.id),
                );
            }
        }
        for (i, t) in self.calendar.terms.iter().enumerate() {
            if t.end < t.start {
                p.push(
                    format!("calendar.terms[{i}]"),
                    format!("the term ends ({}) before it starts ({})", t.end, t.start),
                );
            }
        }
        for (name, s) in &self.schedules {
            if !valid_name(name) {
                p.push(format!("schedules.{name}"), name_rule(name));
            }
            if s.times.is_empty() {
                p.push(
                    format!("schedules.{name}.times"),
                    "a schedule needs at least one time window, e.g. [\"12:15-13:05\"]",
                );
            }
        }
    }

    fn validate_roles(&self, p: &mut Problems) {
        for (name, role) in &self.roles {
            let key = format!("roles.{name}");
            if !valid_name(name) {
                p.push(&key, name_rule(name));
            }
            if let Some(parent) = &role.extends {
                if !self.roles.contains_key(parent) {
                    p.push(format!("{key}.extends"), unknown_role(parent));
                } else if self.extends_cycle(name) {
                    p.push(
                        format!("{key}.extends"),
                        format!("role `{name}` extends itself through `{parent}`"),
                    );
                }
            }
            for (list, entries) in [("allow", &role.allow), ("deny", &role.deny)] {
                for (i, e) in entries.iter().enumerate() {
                    if let Err(msg) = crate::domain::validate_entry(e) {
                        p.push(format!("{key}.{list}[{i}]"), msg);
                    }
                }
            }
            for (i, t) in role.timed.iter().enumerate() {
                let tkey = format!("{key}.timed[{i}]");
                if t.schedule.is_empty() {
                    p.push(format!("{tkey}.schedule"), "name at least one schedule");
                }
                for s in &t.schedule {
                    if !self.schedules.contains_key(s) {
                        p.push(
                            format!("{tkey}.schedule"),
                            format!("schedule `{s}` is not defined in [schedules]"),
                        );
                    }
                }
                if let Some(pos) = t.allow.iter().position(|c| c.is_locked()) {
                    p.push(
                        format!("{tkey}.allow[{pos}]"),
                        "`illegal` can never be allowed, by any role or schedule",
                    );
                }
            }
            if role.max_download_mb == Some(0) {
                p.push(
                    format!("{key}.max_download_mb"),
                    "0 would block every download; leave it unset for no cap",
                );
            }
        }
    }

    fn extends_cycle(&self, start: &str) -> bool {
        let mut seen = HashSet::new();
        let mut cur = start;
        while let Some(parent) = self.roles.get(cur).and_then(|r| r.extends.as_deref()) {
            if !seen.insert(cur) || parent == start {
                return true;
            }
            cur = parent;
        }
        false
    }

    fn validate_networks(&self, p: &mut Problems) {
        let school_known = |id: &str| id.is_empty() || self.schools.iter().any(|s| s.id == id);
        for (i, n) in self.networks.iter().enumerate() {
            if !self.roles.contains_key(&n.role) {
                p.push(format!("networks[{i}].role"), unknown_role(&n.role));
            }
            if !school_known(&n.school) {
                p.push(
                    format!("networks[{i}].school"),
                    format!("school `{}` is not defined in [[schools]]", n.school),
                );
            }
            for (j, m) in self.networks.iter().enumerate().take(i) {
                let overlap = m.cidr.contains(&n.cidr) || n.cidr.contains(&m.cidr);
                if overlap && (m.role != n.role || m.school != n.school) {
                    p.push(
                        format!("networks[{i}].cidr"),
                        format!(
                            "{} overlaps networks[{j}] ({}, role `{}`) with a different role or \
                             school; make them disjoint or map single devices in [[devices]]",
                            n.cidr, m.cidr, m.role
                        ),
                    );
                }
            }
        }
        let mut ips = HashSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            if !self.roles.contains_key(&d.role) {
                p.push(format!("devices[{i}].role"), unknown_role(&d.role));
            }
            if !ips.insert(d.ip) {
                p.push(
                    format!("devices[{i}].ip"),
                    format!("device {} is mapped twice", d.ip),
                );
            }
        }
        let mut names = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if !self.roles.contains_key(&u.role) {
                p.push(format!("users[{i}].role"), unknown_role(&u.role));
            }
            if !names.insert(u.name.as_str()) {
                p.push(
                    format!("users[{i}].name"),
                    format!("user `{}` is mapped twice", u.name),
                );
            }
        }
    }

    fn validate_lists(&self, p: &mut Problems) {
        let mut names = HashSet::new();
        for (i, l) in self.lists.iter().enumerate() {
            let key = format!("lists[{i}]");
            if l.name.is_empty() || l.name.contains(char::is_whitespace) {
                p.push(
                    format!("{key}.name"),
                    "a list needs a name without spaces, e.g. \"ut1\"",
                );
            } else if !names.insert(l.name.as_str()) {
                p.push(
                    format!("{key}.name"),
                    format!("list `{}` is defined twice", l.name),
                );
            }
            match (&l.path, &l.url) {
                (None, None) => p.push(&key, "give a `path` or a `url`"),
                (Some(_), Some(_)) => p.push(&key, "give a `path` or a `url`, not both"),
                (None, Some(u)) if !(u.starts_with("https://") || u.starts_with("http://")) => {
                    p.push(format!("{key}.url"), format!("`{u}` is not an http(s) URL"))
                }
                _ => {}
            }
            match (l.format, l.category) {
                (ListFormat::Ut1, Some(_)) => p.push(
                    format!("{key}.category"),
                    "a ut1 folder maps its own categories; use `only` to pick some",
                ),
                (ListFormat::Ut1, None) => {
                    for (j, name) in l.only.iter().enumerate() {
                        if Category::from_ut1(name).is_none() {
                            p.push(
                                format!("{key}.only[{j}]"),
                                format!("`{name}` is not a UT1 category schoolgate maps"),
                            );
                        }
                    }
                }
                (_, None) => p.push(
                    &key,
                    "a list in this format needs `category` (e.g. category = \"gambling\")",
                ),
                (_, Some(_)) if !l.only.is_empty() => {
                    p.push(format!("{key}.only"), "`only` applies to ut1 folders")
                }
                _ => {}
            }
        }
    }

    fn validate_services(&self, p: &mut Problems) {
        if !self.listen.dns.is_empty() && self.dns.upstreams.is_empty() {
            p.push(
                "dns.upstreams",
                "the DNS filter is listening (listen.dns) but has no upstream resolvers",
            );
        }
        if let Some(ca) = &self.dns.upstream_ca {
            match std::fs::read_to_string(ca) {
                Err(e) => p.push("dns.upstream_ca", format!("{}: {e}", ca.display())),
                Ok(pem) if !pem.contains("-----BEGIN CERTIFICATE-----") => p.push(
                    "dns.upstream_ca",
                    format!("{}: no PEM certificate in it", ca.display()),
                ),
                Ok(_) => {}
            }
        }
        if let Some(n) = self.proxy.workers
            && n.get() > services::MAX_PROXY_WORKERS
        {
            p.push(
                "proxy.workers",
                format!("at most {} proxy threads", services::MAX_PROXY_WORKERS),
            );
        }
        if self.dns.allowed_sample == 0 {
            p.push(
                "dns.allowed_sample",
                "must be at least 1 (1 = log every query)",
            );
        }
        if self.store.backend == Backend::Clickhouse && self.store.clickhouse.is_none() {
            p.push(
                "store.backend",
                "backend is clickhouse but there is no [store.clickhouse] section",
            );
        }
        if self.store.batch_size() == 0 || self.store.queue_capacity == 0 {
            p.push("store", "batch_size and queue_capacity must be at least 1");
        }
        if self.store.retention.flagged_days < self.store.retention.allowed_days {
            p.push(
                "store.retention.flagged_days",
                "flagged events must be kept at least as long as allowed traffic",
            );
        }
        if TimeRange::parse(&format!("{}-24:00", self.reports.weekly_time)).is_err() {
            p.push(
                "reports.weekly_time",
                format!("`{}` is not a time (HH:MM)", self.reports.weekly_time),
            );
        }
        if self.dashboard.tls_cert.is_some() != self.dashboard.tls_key.is_some() {
            p.push("dashboard", "give both tls_cert and tls_key, or neither");
        }
    }

    /// The roles in a fixed order (the order roles get ids in a compiled policy).
    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }
}

#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push((key.into(), message.into()));
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn name_rule(s: &str) -> String {
    format!("`{s}`: names are 1-64 characters of a-z, 0-9, `-` and `_`")
}

fn unknown_role(role: &str) -> String {
    format!("role `{role}` is not defined in [roles]")
}

/// Finds lines for byte offsets and for dotted keys in the original text.
struct Locator<'a> {
    text: &'a str,
    doc: Option<toml_edit::Document<&'a str>>,
}

/// A position in the parsed document, for walking keys and indexes alike.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a dyn toml_edit::TableLike),
    Value(&'a toml_edit::Value),
    Tables(&'a toml_edit::ArrayOfTables),
}

fn node_of(item: &toml_edit::Item) -> Option<Node<'_>> {
    match item {
        toml_edit::Item::Table(t) => Some(Node::Table(t)),
        toml_edit::Item::Value(v) => Some(node_of_value(v)),
        toml_edit::Item::ArrayOfTables(a) => Some(Node::Tables(a)),
        toml_edit::Item::None => None,
    }
}

fn node_of_value(v: &toml_edit::Value) -> Node<'_> {
    match v {
        toml_edit::Value::InlineTable(t) => Node::Table(t),
        other => Node::Value(other),
    }
}

type Span = Option<std::ops::Range<usize>>;

fn contains(span: &Span, offset: usize) -> bool {
    span.as_ref()
        .is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

impl<'a> Locator<'a> {
    fn new(text: &'a str) -> Locator<'a> {
        Locator {
            text,
            doc: toml_edit::Document::parse(text).ok(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The line of `roles.pupil.block[2]`; falls back to the nearest parent present
    /// in the file (a missing key is reported at its table).
    fn line_of_key(&self, key: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut best = None;
        let mut node = Node::Table(doc.as_table());
        for seg in split_key(key) {
            let (span, next): (Span, Option<Node<'_>>) = match (seg, node) {
                (Seg::Key(k), Node::Table(t)) => match t.get_key_value(k) {
                    Some((key, item)) => (key.span().or_else(|| item.span()), node_of(item)),
                    None => break,
                },
                (Seg::Index(i), Node::Value(toml_edit::Value::Array(a))) => match a.get(i) {
                    Some(v) => (v.span(), Some(node_of_value(v))),
                    None => break,
                },
                (Seg::Index(i), Node::Tables(a)) => match a.get(i) {
                    Some(t) => (t.span(), Some(Node::Table(t))),
                    None => break,
                },
                _ => break,
            };
            if let Some(s) = span {
                best = Some(self.line_of(s.start));
            }
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        best
    }

    /// The dotted key whose key or value covers `offset` (for parse errors). When
    /// the error is about a whole array and the message quotes one of its strings
    /// (`unknown category \`gamblin\``), the key names that element.
    fn key_at(&self, offset: usize, message: &str) -> String {
        let mut path = String::new();
        let Some(doc) = &self.doc else { return path };
        find_key(Node::Table(doc.as_table()), offset, &mut path);
        let quoted = message.split('`').nth(1);
        if let (Some(quoted), Some(Node::Value(toml_edit::Value::Array(a)))) =
            (quoted, self.node_at(&path))
            && let Some(i) = a.iter().position(|v| v.as_str() == Some(quoted))
        {
            path.push_str(&format!("[{i}]"));
        }
        path
    }

    fn node_at(&self, key: &str) -> Option<Node<'_>> {
        let doc = self.doc.as_ref()?;
        let mut node = Node::Table(doc.as_table());
        for seg in split_key(key) {
            node = match (seg, node) {
                (Seg::Key(k), Node::Table(t)) => node_of(t.get(k)?)?,
                (Seg::Index(i), Node::Value(toml_edit::Value::Array(a))) => {
                    node_of_value(a.get(i)?)
                }
                (Seg::Index(i), Node::Tables(a)) => Node::Table(a.get(i)?),
                _ => return None,
            };
        }
        Some(node)
    }
}

fn find_key(node: Node<'_>, offset: usize, path: &mut String) -> bool {
    match node {
        Node::Table(t) => {
            for (k, item) in t.iter() {
                let mut sub = path.clone();
                if !sub.is_empty() {
                    sub.push('.');
                }
                sub.push_str(k);
                let key_span = t.get_key_value(k).and_then(|(key, _)| key.span());
                let inside = node_of(item).is_some_and(|n| find_key(n, offset, &mut sub));
                if inside || contains(&key_span, offset) || contains(&item.span(), offset) {
                    *path = sub;
                    return true;
                }
            }
            false
        }
        Node::Value(toml_edit::Value::Array(a)) => {
            for (i, v) in a.iter().enumerate() {
                let mut sub = format!("{path}[{i}]");
                if find_key(node_of_value(v), offset, &mut sub) {
                    *path = sub;
                    return true;
                }
            }
            false
        }
        Node::Value(v) => contains(&v.span(), offset),
        Node::Tables(a) => {
            for (i, t) in a.iter().enumerate() {
                let mut sub = format!("{path}[{i}]");
                if find_key(Node::Table(t), offset, &mut sub) || contains(&t.span(), offset) {
                    *path = sub;
                    return true;
                }
            }
            false
        }
    }
}

#[derive(Clone, Copy)]
enum Seg<'k> {
    Key(&'k str),
    Index(usize),
}

fn split_key(key: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(i) = idx.trim_end_matches(']').parse() {
                out.push(Seg::Index(i));
            }
        }
    }
    out
}
