//! The compiled policy: an immutable snapshot built once from the configuration and
//! the lists, asked [`Policy::decide`] for every request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::category::{Category, CategorySet, Severity};
use crate::config::{Config, Days, Restriction, RoleConfig, TimeRange};
use crate::domain::{EntryIndex, HostSuffixes, name_hash, normalize_host, split_entry};
use crate::keywords::{KeywordMatches, KeywordRules};
use crate::request::Request;
use crate::search::{decode_path, engine_of, safesearch_rewrite, search_terms};
use crate::verdict::{Action, Rule, Verdict};

/// A role's index in the compiled policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleId(pub u16);

/// A list source's index in the compiled policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListId(pub u16);

/// Why a policy could not be compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error("more than {} list sources", u16::MAX)]
    TooManyLists,
    #[error("time zone `{0}`: {1}")]
    TimeZone(String, String),
}

/// The categories and sources an indexed name carries.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tag {
    categories: CategorySet,
    sources: Box<[(Category, ListId)]>,
}

/// Accumulates list entries, then compiles a [`Policy`].
#[derive(Debug)]
pub struct PolicyBuilder {
    config: Config,
    lists: Vec<Arc<str>>,
    list_ids: HashMap<Arc<str>, ListId>,
    index: EntryIndex<u32>,
    /// Domain entries as read: name hash, category, list. Sorted and merged
    /// into the index by [`PolicyBuilder::build`], which needs half the memory
    /// of merging them into a hash map as they come (16 bytes an entry while
    /// loading, against 17 a slot in a map twice the size).
    domains: Vec<(u64, Category, ListId)>,
    tags: Vec<Tag>,
    tag_ids: HashMap<Box<[(Category, ListId)]>, u32>,
    keywords: KeywordRules,
    per_list: Vec<u64>,
    per_category: [u64; 64],
}

impl PolicyBuilder {
    /// Starts from a validated configuration. Keyword rules default to the built-in
    /// ones when `policy.keywords` is on.
    pub fn new(config: Config) -> PolicyBuilder {
        let keywords = if config.policy.keywords {
            KeywordRules::builtin()
        } else {
            KeywordRules::empty()
        };
        PolicyBuilder {
            config,
            lists: Vec::new(),
            list_ids: HashMap::new(),
            index: EntryIndex::new(),
            domains: Vec::new(),
            tags: Vec::new(),
            tag_ids: HashMap::new(),
            keywords,
            per_list: Vec::new(),
            per_category: [0; 64],
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the keyword rules.
    pub fn set_keywords(&mut self, rules: KeywordRules) {
        self.keywords = rules;
    }

    /// The id of a list source by name (`ut1/gambling`), created on first use.
    pub fn list(&mut self, name: &str) -> Result<ListId, PolicyError> {
        if let Some(id) = self.list_ids.get(name) {
            return Ok(*id);
        }
        let id = ListId(u16::try_from(self.lists.len()).map_err(|_| PolicyError::TooManyLists)?);
        let name: Arc<str> = name.into();
        self.lists.push(name.clone());
        self.list_ids.insert(name, id);
        self.per_list.push(0);
        Ok(id)
    }

    /// Reserves room for `n` more domain entries (a list's size, when known).
    pub fn reserve(&mut self, n: usize) {
        self.domains.reserve(n);
    }

    /// Adds a normalised domain (lowercase, no trailing dot) from a list.
    pub fn add_domain(&mut self, list: ListId, category: Category, domain: &str) {
        self.domains.push((name_hash(domain), category, list));
        self.per_list[usize::from(list.0)] += 1;
        self.per_category[usize::from(category.id())] += 1;
    }

    /// Adds a URL entry (`host` normalised, `path` starting with `/`).
    pub fn add_url(&mut self, list: ListId, category: Category, host: &str, path: &str) {
        let (tags, tag_ids) = (&mut self.tags, &mut self.tag_ids);
        self.index.upsert_url(host, path, |old| {
            merge_tag(tags, tag_ids, old.copied(), category, list)
        });
        self.per_list[usize::from(list.0)] += 1;
        self.per_category[usize::from(category.id())] += 1;
    }

    /// Compiles the snapshot.
    pub fn build(self) -> Result<Policy, PolicyError> {
        let config = self.config;
        let tz = TimeZone::get(&config.policy.timezone)
            .map_err(|e| PolicyError::TimeZone(config.policy.timezone.clone(), e.to_string()))?;
        let names: Vec<String> = config.roles.keys().cloned().collect();
        let role_by_name: HashMap<String, RoleId> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), RoleId(i as u16)))
            .collect();
        let schedule_names: Vec<&String> = config.schedules.keys().collect();
        let schedules: Vec<CompiledSchedule> = config
            .schedules
            .values()
            .map(|s| CompiledSchedule {
                days: s.days.clone(),
                times: s.times.clone(),
            })
            .collect();
        let roles = names
            .iter()
            .map(|n| compile_role(&config, n, &schedule_names))
            .collect::<Vec<_>>();
        let default_role = *role_by_name
            .get(&config.policy.default_role)
            .ok_or_else(|| {
                PolicyError::Config(crate::config::ConfigErrors(vec![
                    crate::config::ConfigError {
                        file: String::new(),
                        line: None,
                        key: "policy.default_role".into(),
                        message: format!("role `{}` is not defined", config.policy.default_role),
                    },
                ]))
            })?;
        let mut networks: Vec<CompiledNetwork> = config
            .networks
            .iter()
            .filter_map(|n| {
                Some(CompiledNetwork {
                    net: n.cidr,
                    role: *role_by_name.get(&n.role)?,
                    school: n.school.as_str().into(),
                    name: n.name.as_str().into(),
                })
            })
            .collect();
        // Most specific first, so the first match is the right one.
        networks.sort_by_key(|n| std::cmp::Reverse(n.net.prefix_len()));
        let devices = config
            .devices
            .iter()
            .filter_map(|d| {
                Some((
                    canonical_ip(d.ip),
                    (
                        *role_by_name.get(&d.role)?,
                        Arc::<str>::from(d.name.as_str()),
                    ),
                ))
            })
            .collect();
        let users = config
            .users
            .iter()
            .filter_map(|u| Some((u.name.clone(), *role_by_name.get(&u.role)?)))
            .collect();
        let mut never_block = EntryIndex::new();
        for e in &config.policy.never_block {
            add_local(&mut never_block, e);
        }
        never_block.pack();
        let mut tags = self.tags;
        let mut tag_ids = self.tag_ids;
        let mut index = self.index;
        let (keys, values) = merge_domains(self.domains, &mut tags, &mut tag_ids);
        index.set_hashed_domains(keys, values);
        let mut stats = ListStats {
            per_category: Category::ALL
                .iter()
                .filter(|c| self.per_category[usize::from(c.id())] > 0)
                .map(|c| (*c, self.per_category[usize::from(c.id())]))
                .collect(),
            ..ListStats::default()
        };
        for (i, name) in self.lists.iter().enumerate() {
            stats.per_list.push((name.clone(), self.per_list[i]));
        }
        stats.domains = index.domain_count() as u64;
        stats.urls = index.url_count() as u64;
        stats.keyword_rules = self.keywords.len() as u64;
        Ok(Policy {
            calendar: Calendar::from_config(&config),
            config: Arc::new(config),
            roles,
            role_by_name,
            default_role,
            networks,
            devices,
            users,
            lists: self.lists,
            index,
            tags,
            keywords: self.keywords,
            never_block,
            tz,
            schedules,
            stats,
        })
    }
}

/// Domain entries as read, sorted by hash with each name's sources merged into
/// one tag: the keys and values for [`EntryIndex::set_hashed_domains`].
fn merge_domains(
    mut domains: Vec<(u64, Category, ListId)>,
    tags: &mut Vec<Tag>,
    tag_ids: &mut HashMap<Box<[(Category, ListId)]>, u32>,
) -> (Vec<u64>, Vec<u32>) {
    domains.sort_unstable();
    domains.dedup();
    let distinct = domains.chunk_by(|a, b| a.0 == b.0).count();
    let mut keys = Vec::with_capacity(distinct);
    let mut values = Vec::with_capacity(distinct);
    for same in domains.chunk_by(|a, b| a.0 == b.0) {
        let mut tag = None;
        for &(_, category, list) in same {
            tag = Some(merge_tag(tags, tag_ids, tag, category, list));
        }
        if let (Some(&(h, _, _)), Some(tag)) = (same.first(), tag) {
            keys.push(h);
            values.push(tag);
        }
    }
    (keys, values)
}

fn merge_tag(
    tags: &mut Vec<Tag>,
    tag_ids: &mut HashMap<Box<[(Category, ListId)]>, u32>,
    old: Option<u32>,
    category: Category,
    list: ListId,
) -> u32 {
    let mut sources: Vec<(Category, ListId)> = match old {
        Some(t) => tags[t as usize].sources.to_vec(),
        None => Vec::with_capacity(1),
    };
    if sources.contains(&(category, list)) {
        return old.unwrap_or_default();
    }
    sources.push((category, list));
    sources.sort_unstable();
    let key: Box<[(Category, ListId)]> = sources.into_boxed_slice();
    if let Some(id) = tag_ids.get(&key) {
        return *id;
    }
    let id = tags.len() as u32;
    tags.push(Tag {
        categories: key.iter().map(|(c, _)| *c).collect(),
        sources: key.clone(),
    });
    tag_ids.insert(key, id);
    id
}

fn add_local(index: &mut EntryIndex<Arc<str>>, entry: &str) {
    let (host, path) = split_entry(entry);
    let Ok(host) = normalize_host(host) else {
        return;
    };
    let text: Arc<str> = entry.into();
    match path {
        Some(p) if p != "/" => index.upsert_url(&host, p, |_| text),
        _ => index.upsert_domain(&host, |_| text),
    }
}

/// An IPv4-mapped IPv6 address (from a dual-stack socket) as plain IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[derive(Clone, Debug)]
struct CompiledSchedule {
    days: Days,
    times: Vec<TimeRange>,
}

#[derive(Clone, Debug)]
struct CompiledTimed {
    schedules: Vec<usize>,
    allow: CategorySet,
    block: CategorySet,
    flag: Vec<(Category, Severity)>,
}

/// One role, with `extends` resolved.
#[derive(Clone, Debug)]
pub struct CompiledRole {
    pub name: Arc<str>,
    pub description: String,
    pub block: CategorySet,
    flag: Vec<(Category, Severity)>,
    allow: EntryIndex<Arc<str>>,
    deny: EntryIndex<Arc<str>>,
    pub safesearch: Restriction,
    pub youtube: Restriction,
    pub max_download_bytes: Option<u64>,
    pub max_upload_bytes: Option<u64>,
    pub https_inspection: bool,
    timed: Vec<CompiledTimed>,
}

impl CompiledRole {
    /// Categories this role flags (at any time), with severities.
    pub fn flagged(&self) -> &[(Category, Severity)] {
        &self.flag
    }
}

/// The chain from a role up through `extends` (root last).
fn lineage<'c>(config: &'c Config, name: &str) -> Vec<&'c RoleConfig> {
    let mut out = Vec::new();
    let mut cur = config.roles.get(name);
    while let Some(r) = cur {
        if out.len() > config.roles.len() {
            break; // a cycle; validation reports it
        }
        out.push(r);
        cur = r.extends.as_ref().and_then(|p| config.roles.get(p));
    }
    out
}

fn compile_role(config: &Config, name: &str, schedule_names: &[&String]) -> CompiledRole {
    let chain = lineage(config, name);
    let mut role = CompiledRole {
        name: name.into(),
        description: chain
            .first()
            .map(|r| r.description.clone())
            .unwrap_or_default(),
        block: CategorySet::of(Category::Illegal),
        flag: vec![(Category::Illegal, Severity::Critical)],
        allow: EntryIndex::new(),
        deny: EntryIndex::new(),
        safesearch: Restriction::Off,
        youtube: Restriction::Off,
        max_download_bytes: None,
        max_upload_bytes: None,
        https_inspection: false,
        timed: Vec::new(),
    };
    // Root first, so a child's settings override its parent's.
    for r in chain.iter().rev() {
        role.block = role.block.union(r.block.iter().copied().collect());
        for (c, s) in &r.flag {
            role.flag.retain(|(x, _)| x != c);
            role.flag.push((*c, *s));
        }
        for e in &r.allow {
            add_local(&mut role.allow, e);
        }
        for e in &r.deny {
            add_local(&mut role.deny, e);
        }
        role.safesearch = r.safesearch.unwrap_or(role.safesearch);
        role.youtube = r.youtube.unwrap_or(role.youtube);
        if let Some(mb) = r.max_download_mb {
            role.max_download_bytes = Some(mb.saturating_mul(1024 * 1024));
        }
        if let Some(mb) = r.max_upload_mb {
            role.max_upload_bytes = Some(mb.saturating_mul(1024 * 1024));
        }
        role.https_inspection = r.https_inspection.unwrap_or(role.https_inspection);
        for t in &r.timed {
            role.timed.push(CompiledTimed {
                schedules: t
                    .schedule
                    .iter()
                    .filter_map(|s| schedule_names.iter().position(|n| *n == s))
                    .collect(),
                // `illegal` can never be lifted, whatever a file says.
                allow: t.allow.iter().copied().filter(|c| !c.is_locked()).collect(),
                block: t.block.iter().copied().collect(),
                flag: t.flag.iter().map(|(c, s)| (*c, *s)).collect(),
            });
        }
    }
    role.allow.pack();
    role.deny.pack();
    role
}

#[derive(Clone, Debug)]
struct CompiledNetwork {
    net: IpNet,
    role: RoleId,
    school: Arc<str>,
    name: Arc<str>,
}

/// The school calendar, compiled.
#[derive(Clone, Debug)]
struct Calendar {
    school_days: Vec<jiff::civil::Weekday>,
    terms: Vec<(Date, Date)>,
    closures: Vec<(Date, Date)>,
}

impl Calendar {
    fn from_config(config: &Config) -> Calendar {
        let c = &config.calendar;
        Calendar {
            school_days: c.school_days.iter().map(|d| d.0).collect(),
            terms: c.terms.iter().map(|t| (t.start, t.end)).collect(),
            closures: c.closures.iter().map(|r| (r.first, r.last)).collect(),
        }
    }

    fn is_school_day(&self, d: Date) -> bool {
        self.school_days.contains(&d.weekday())
            && (self.terms.is_empty() || self.terms.iter().any(|(a, b)| *a <= d && d <= *b))
            && !self.closures.iter().any(|(a, b)| *a <= d && d <= *b)
    }
}

/// Who is asking, resolved from the address and the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub role: RoleId,
    /// The school (site) of the network the address belongs to; empty if none.
    pub school: Arc<str>,
    /// The device's name when the address is mapped in `[[devices]]`.
    pub device: Option<Arc<str>>,
    /// Whether the address is in a configured network or device (the DNS filter
    /// answers only those; the proxy refuses the rest).
    pub known: bool,
}

/// Entry counts for `config check` and the dashboard.
#[derive(Clone, Debug, Default)]
pub struct ListStats {
    pub domains: u64,
    pub urls: u64,
    pub keyword_rules: u64,
    /// Entries added per category (an entry in two lists counts twice).
    pub per_category: Vec<(Category, u64)>,
    pub per_list: Vec<(Arc<str>, u64)>,
}

/// The compiled, immutable policy snapshot.
#[derive(Debug)]
pub struct Policy {
    config: Arc<Config>,
    roles: Vec<CompiledRole>,
    role_by_name: HashMap<String, RoleId>,
    default_role: RoleId,
    networks: Vec<CompiledNetwork>,
    devices: HashMap<IpAddr, (RoleId, Arc<str>)>,
    users: HashMap<String, RoleId>,
    lists: Vec<Arc<str>>,
    index: EntryIndex<u32>,
    tags: Vec<Tag>,
    keywords: KeywordRules,
    never_block: EntryIndex<Arc<str>>,
    tz: TimeZone,
    calendar: Calendar,
    schedules: Vec<CompiledSchedule>,
    stats: ListStats,
}

impl Policy {
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn stats(&self) -> &ListStats {
        &self.stats
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    pub fn role_id(&self, name: &str) -> Option<RoleId> {
        self.role_by_name.get(name).copied()
    }

    pub fn role(&self, id: RoleId) -> &CompiledRole {
        &self.roles[usize::from(id.0)]
    }

    pub fn roles(&self) -> impl Iterator<Item = (RoleId, &CompiledRole)> {
        self.roles
            .iter()
            .enumerate()
            .map(|(i, r)| (RoleId(i as u16), r))
    }

    pub fn default_role(&self) -> RoleId {
        self.default_role
    }

    /// Whether the day (in school time) is a school day per the calendar.
    pub fn is_school_day(&self, d: Date) -> bool {
        self.calendar.is_school_day(d)
    }

    /// Resolves a client: an authenticated user's mapping first, then the device,
    /// then the most specific network, else the default role (fail closed).
    pub fn client(&self, addr: IpAddr, user: Option<&str>) -> Client {
        let addr = canonical_ip(addr);
        let network = self.networks.iter().find(|n| n.net.contains(&addr));
        let device = self.devices.get(&addr);
        let school = network
            .map(|n| n.school.clone())
            .unwrap_or_else(|| "".into());
        let role = user
            .and_then(|u| self.users.get(u).copied())
            .or_else(|| device.map(|d| d.0))
            .or_else(|| network.map(|n| n.role))
            .unwrap_or(self.default_role);
        Client {
            role,
            school,
            device: device.map(|d| d.1.clone()),
            known: network.is_some() || device.is_some(),
        }
    }

    /// The network name an address belongs to (for the dashboard), if any.
    pub fn network_name(&self, addr: IpAddr) -> Option<&str> {
        let addr = canonical_ip(addr);
        self.networks
            .iter()
            .find(|n| n.net.contains(&addr))
            .map(|n| &*n.name)
    }

    /// Decides one request. Pure: the same request and snapshot give the same
    /// verdict.
    pub fn decide(&self, req: &Request<'_>) -> Verdict {
        let role = self.role(req.role);
        let host = match normalize_host(req.host) {
            Ok(h) => h,
            Err(_) => {
                return Verdict {
                    action: Action::Block,
                    categories: CategorySet::EMPTY,
                    severity: None,
                    rule: Rule::MalformedHost,
                    category: None,
                    role: role.name.clone(),
                    rewrite: None,
                    search_terms: None,
                };
            }
        };
        let host: &str = &host;
        let path = req.path;
        // Hashed once, looked up in the lists, `never_block` and the role's entries.
        let suffixes = HostSuffixes::new(host);

        // What the request is: list categories, keyword categories, search terms.
        let mut categories = CategorySet::EMPTY;
        // A host rarely matches more than a few entries: keep them off the heap.
        let mut matches: smallvec::SmallVec<[(&str, usize, u32); 4]> = smallvec::SmallVec::new();
        self.index
            .for_each_suffix_match(&suffixes, path, |suffix, spec, tag| {
                categories = categories.union(self.tags[*tag as usize].categories);
                matches.push((suffix, spec.path_len, *tag));
            });
        let url_kw = if self.keywords.is_empty() {
            KeywordMatches::default()
        } else {
            self.keywords
                .scan_url(host, &decode_path(path.unwrap_or("")))
        };
        // Which search engine (usually none): asked once, for terms and SafeSearch.
        let engine = engine_of(host);
        let terms = match (engine, path, req.query) {
            (Some(e), Some(p), Some(q)) => search_terms(e, p, q),
            _ => None,
        };
        let search_kw = match &terms {
            Some(t) if !self.keywords.is_empty() => self.keywords.scan_search(t),
            _ => KeywordMatches::default(),
        };
        // Keywords only add what the lists do not already say: a listed site's
        // categories come from the list, with its name in the reason.
        categories = categories
            .union(url_kw.categories)
            .union(search_kw.categories);
        if !categories.contains(Category::Illegal)
            && self
                .never_block
                .best_suffix_match(&suffixes, path)
                .is_some()
        {
            // The school's own services: only what the search terms say remains.
            categories = search_kw.categories;
        }

        let (block, flag) = self.effective(role, req.at);
        let severity = categories
            .iter()
            .filter_map(|c| flag.iter().find(|(f, _)| *f == c).map(|(_, s)| *s))
            .max();
        let rule_for = |c: Category| -> Rule {
            for (suffix, path_len, tag) in &matches {
                let tag = &self.tags[*tag as usize];
                if let Some((_, list)) = tag.sources.iter().find(|(tc, _)| *tc == c) {
                    let entry = match (path, *path_len) {
                        (Some(p), n) if n > 0 => format!("{suffix}{}", &p[..n.min(p.len())]),
                        _ => (*suffix).to_owned(),
                    };
                    return Rule::List {
                        list: self.lists[usize::from(list.0)].clone(),
                        entry,
                        category: c,
                    };
                }
            }
            for hit in url_kw.hits.iter().chain(&search_kw.hits) {
                if hit.category == c {
                    return Rule::Keyword {
                        keyword: (*hit.keyword).into(),
                        category: c,
                    };
                }
            }
            Rule::Default
        };
        let verdict = |action, category: Option<Category>, rule| Verdict {
            action,
            categories,
            severity,
            rule,
            category,
            role: role.name.clone(),
            rewrite: engine.and_then(|e| safesearch_rewrite(e, role.safesearch, role.youtube)),
            search_terms: terms.clone(),
        };

        if categories.contains(Category::Illegal) {
            let rule = rule_for(Category::Illegal);
            let mut v = verdict(Action::Block, Some(Category::Illegal), rule);
            v.severity = Some(Severity::Critical);
            return v;
        }

        let deny = role.deny.best_suffix_match(&suffixes, path);
        let allow = role.allow.best_suffix_match(&suffixes, path);
        match (deny, allow) {
            (Some((d, entry)), a) if a.is_none_or(|(a, _)| d >= a) => {
                return verdict(
                    Action::Block,
                    None,
                    Rule::LocalDeny {
                        entry: entry.clone(),
                    },
                );
            }
            (_, Some((_, entry))) => {
                let flagged = categories.intersection(flag_set(&flag));
                let rule = Rule::LocalAllow {
                    entry: entry.clone(),
                };
                return match flagged.iter().next() {
                    Some(c) => verdict(Action::Flag, Some(c), rule_for(c)),
                    None => verdict(Action::Allow, None, rule),
                };
            }
            _ => {}
        }

        if let Some(c) = categories.intersection(block).iter().next() {
            return verdict(Action::Block, Some(c), rule_for(c));
        }
        let flagged = categories.intersection(flag_set(&flag));
        if !flagged.is_empty() {
            // The most severe flagged category decides the reason.
            let c = flagged
                .iter()
                .max_by_key(|c| flag.iter().find(|(f, _)| f == c).map(|(_, s)| *s))
                .unwrap_or(Category::Illegal);
            return verdict(Action::Flag, Some(c), rule_for(c));
        }
        // Allowed: name what it is anyway, so "allowed at lunch" reads as such.
        let mut v = match categories.iter().next() {
            Some(c) => verdict(Action::Allow, Some(c), rule_for(c)),
            None => verdict(Action::Allow, None, Rule::Default),
        };
        if v.rewrite.is_some() {
            v.action = Action::Rewrite;
        }
        v
    }

    /// The role's blocked categories and flags at `at`, schedules applied.
    fn effective<'r>(
        &self,
        role: &'r CompiledRole,
        at: Timestamp,
    ) -> (CategorySet, std::borrow::Cow<'r, [(Category, Severity)]>) {
        if role.timed.is_empty() {
            return (role.block, std::borrow::Cow::Borrowed(&role.flag[..]));
        }
        let local = at.to_zoned(self.tz.clone());
        let date = local.date();
        let minute = (local.hour() as u16) * 60 + local.minute() as u16;
        let mut block = role.block;
        let mut flag = role.flag.clone();
        for t in &role.timed {
            let active = t
                .schedules
                .iter()
                .any(|s| self.schedule_active(&self.schedules[*s], date, minute));
            if active {
                block = block.difference(t.allow).union(t.block);
                for (c, s) in &t.flag {
                    flag.retain(|(x, _)| x != c);
                    flag.push((*c, *s));
                }
            }
        }
        // `illegal` stays blocked whatever a schedule says.
        block.insert(Category::Illegal);
        (block, std::borrow::Cow::Owned(flag))
    }

    fn schedule_active(&self, s: &CompiledSchedule, date: Date, minute: u16) -> bool {
        let day_ok = match &s.days {
            Days::SchoolDays => self.calendar.is_school_day(date),
            Days::Weekdays => !matches!(
                date.weekday(),
                jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
            ),
            Days::EveryDay => true,
            Days::List(days) => days.iter().any(|d| d.0 == date.weekday()),
        };
        day_ok && s.times.iter().any(|t| t.contains(minute))
    }

    /// The verdict for a connection whose TLS name and HTTP host differ.
    pub fn fronting_verdict(&self, role: RoleId, sni: &str, host: &str, action: Action) -> Verdict {
        let role = self.role(role);
        Verdict {
            action,
            categories: CategorySet::of(Category::Proxy),
            severity: Some(Severity::Medium),
            rule: Rule::DomainFronting {
                sni: sni.to_owned(),
                host: host.to_owned(),
            },
            category: Some(Category::Proxy),
            role: role.name.clone(),
            rewrite: None,
            search_terms: None,
        }
    }

    /// The categories an indexed name carries (for `config check` and tests).
    pub fn list_categories(&self, host: &str) -> CategorySet {
        let mut set = CategorySet::EMPTY;
        if let Ok(h) = normalize_host(host) {
            self.index.for_each_match(&h, None, |_, _, t| {
                set = set.union(self.tags[*t as usize].categories)
            });
        }
        set
    }
}

fn flag_set(flag: &[(Category, Severity)]) -> CategorySet {
    flag.iter().map(|(c, _)| *c).collect()
}

/// The policy every server reads, swapped atomically on reload: a request in flight
/// keeps the snapshot it started with; the next one sees the new policy. A reload
/// that fails to compile never reaches this handle, so the old policy keeps running.
pub type SharedPolicy = std::sync::Arc<arc_swap::ArcSwap<Policy>>;

/// Wraps a first snapshot for sharing.
pub fn shared(policy: Policy) -> SharedPolicy {
    std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(policy))
}
