//! [`WeeklySummary`]: one week of one school (or of the whole trust), as figures
//! only, and [`build_summary`], which reads them from the event store.
//!
//! Where the figures come from:
//! - volumes (requests, blocked, flagged; per day, this week and the four before)
//!   from [`EventStore::counts`];
//! - distinct users and devices from [`EventStore::totals`];
//! - the breakdowns (categories, roles, top blocked sites, bypass attempts) from
//!   the store's aggregate queries;
//!
//! each narrowed to the school's events for one school of a trust (the store's
//! school filter);
//! - safeguarding figures (flags by severity, episodes, domain fronting) from the
//!   week's flagged events ([`EventStore::flagged`]), reduced to counts here.
//!
//! No name, address or search term is ever copied into a summary: it is what the
//! headteacher and governors receive by email.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use jiff::civil::Date;
use schoolgate_classifier::{Action, Category, Config, Policy, Severity};
use schoolgate_events::{
    AccessEvent, CountersSnapshot, EventStore, FlaggedQuery, GroupBy, HostCount, Period, Purpose,
};
use serde::{Deserialize, Serialize};

use crate::ReportError;
use crate::episode;
use crate::week::IsoWeek;

/// How many top blocked sites a summary lists.
pub const TOP_SITES: usize = 10;
/// Most flagged events read for one summary; past it the safeguarding figures say
/// "at least" (a week with more than this is itself the news).
pub const FLAGGED_SCAN_LIMIT: usize = 100_000;
/// Flags of one person closer together than this are one episode (the same rule
/// as the alerts, so the summary's "episodes" match the alerts sent).
pub const EPISODE_GAP_MINUTES: i64 = 30;

/// Whom a summary is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Scope {
    /// Every school of the trust together.
    Trust,
    /// One school (`id` as in `[[schools]]`; empty for a single school without a
    /// `[[schools]]` entry).
    School { id: String },
}

impl Scope {
    pub fn school(id: impl Into<String>) -> Scope {
        Scope::School { id: id.into() }
    }

    /// A short key for files and URLs: `trust` or `school-ID`.
    pub fn key(&self) -> String {
        match self {
            Scope::Trust => "trust".to_owned(),
            Scope::School { id } if id.is_empty() => "school".to_owned(),
            Scope::School { id } => format!("school-{id}"),
        }
    }
}

/// The summaries a configuration produces each week: one per school, plus one for
/// the trust when there are several schools.
pub fn scopes(config: &Config) -> Vec<Scope> {
    if config.schools.len() > 1 {
        let mut out: Vec<Scope> = config
            .schools
            .iter()
            .map(|s| Scope::school(&s.id))
            .collect();
        out.push(Scope::Trust);
        out
    } else {
        vec![Scope::school(
            config
                .schools
                .first()
                .map(|s| s.id.clone())
                .unwrap_or_default(),
        )]
    }
}

/// Who receives a scope's summary.
///
/// In a trust (several schools) a school's summary goes to its
/// `report_recipients` and the trust-wide one (which has a table of every school)
/// to `[reports] recipients`. A single school sends its one summary to both lists.
/// Duplicates are removed, order kept.
pub fn recipients(config: &Config, scope: &Scope) -> Vec<String> {
    let school = match scope {
        Scope::School { id } => config.schools.iter().find(|s| &s.id == id),
        Scope::Trust => None,
    };
    let lists: Vec<&Vec<String>> = match (scope, config.schools.len() > 1) {
        (Scope::Trust, _) => vec![&config.reports.recipients],
        (Scope::School { .. }, true) => school.map(|s| &s.report_recipients).into_iter().collect(),
        (Scope::School { .. }, false) => {
            let mut v = vec![&config.reports.recipients];
            v.extend(school.map(|s| &s.report_recipients));
            v
        }
    };
    let mut seen = HashSet::new();
    lists
        .into_iter()
        .flatten()
        .filter(|a| !a.trim().is_empty() && seen.insert(a.trim().to_ascii_lowercase()))
        .cloned()
        .collect()
}

/// What the dashboard knows about a week that the event store does not: incidents,
/// the filter's health and policy changes. Every part is optional: the command line
/// builds summaries without the dashboard.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WeekExtras {
    pub incidents: Option<IncidentFigures>,
    pub health: Option<FilterHealth>,
    pub policy_changes: Vec<PolicyChange>,
}

/// E-safety incidents in the week (from the dashboard's incident log).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentFigures {
    /// Opened during the week.
    pub opened: u64,
    /// Open at the end of the week and being worked on.
    pub in_progress: u64,
    /// Closed during the week.
    pub closed: u64,
}

/// One change to the filtering policy: "what changed in the policy this week".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    pub when: Timestamp,
    /// The dashboard user who made it.
    pub who: String,
    /// What changed, in words (e.g. "allowed youtube.com for staff").
    pub what: String,
    /// The reason given with the change.
    pub why: String,
}

/// How the filter itself did over the week.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FilterHealth {
    /// Share of the week the filter was answering, 0.0 to 1.0.
    pub uptime: f64,
    /// When the stalest block list was last updated successfully (None: never).
    pub list_updated: Option<Timestamp>,
    /// Events waiting on disk because the store was slow or down.
    pub spool_bytes: u64,
    /// Events waiting in memory to be stored.
    pub backlog: u64,
    /// Events the store refused (dead-lettered), lost or found corrupt.
    pub errors: u64,
}

impl FilterHealth {
    /// From the event pipeline's counters (`PipelineHandle::counters()`) and what
    /// the caller knows about uptime and list updates.
    pub fn from_counters(
        uptime: f64,
        list_updated: Option<Timestamp>,
        counters: &CountersSnapshot,
    ) -> FilterHealth {
        FilterHealth {
            uptime: uptime.clamp(0.0, 1.0),
            list_updated,
            spool_bytes: counters.spool_bytes,
            backlog: counters.queue_depth,
            errors: counters
                .dead_lettered
                .saturating_add(counters.lost)
                .saturating_add(counters.spool_corrupt),
        }
    }
}

/// The week's place in the school calendar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermWeek {
    /// School days in the week per `[calendar]`.
    pub school_days: u8,
    /// Days that would be school days but the calendar closes (half term, INSET,
    /// bank holidays), or that fall outside every term.
    pub closed_days: Vec<Date>,
    /// The term the week falls in (or overlaps), when terms are configured.
    pub term: Option<String>,
    /// No school day at all: a holiday week.
    pub holiday: bool,
}

/// The headline figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeekTotals {
    pub requests: u64,
    pub blocked: u64,
    /// Events recorded for the e-safety lead's review (any severity).
    pub flagged: u64,
    /// Distinct signed-in users (`None` in summaries kept before it was counted
    /// per school).
    pub users: Option<u64>,
    /// Distinct devices (client addresses), likewise.
    pub devices: Option<u64>,
}

/// One day of the week.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayFigures {
    pub date: Date,
    pub school_day: bool,
    pub requests: u64,
    pub blocked: u64,
    pub flagged: u64,
}

/// One week of the trend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeekPoint {
    pub week: IsoWeek,
    pub requests: u64,
    pub blocked: u64,
    pub flagged: u64,
    pub school_days: u8,
}

/// Blocked and flagged requests in one category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryFigures {
    pub category: Category,
    pub blocked: u64,
    pub flagged: u64,
}

/// One role's week.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleFigures {
    pub role: String,
    /// The role's description from `[roles.NAME]`, for readers who do not know
    /// the role names.
    #[serde(default)]
    pub description: String,
    /// All requests (`None` in summaries kept before it was counted per school).
    pub requests: Option<u64>,
    pub blocked: u64,
    pub flagged: u64,
}

/// What kind of filter bypass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BypassKind {
    Vpn,
    Proxy,
    Doh,
    RemoteAccess,
    /// A TLS name that differs from the HTTP host: a disguised proxy. These are
    /// also counted under [`BypassKind::Proxy`].
    DomainFronting,
}

impl BypassKind {
    pub fn of(category: Category) -> Option<BypassKind> {
        Some(match category {
            Category::Vpn => BypassKind::Vpn,
            Category::Proxy => BypassKind::Proxy,
            Category::Doh => BypassKind::Doh,
            Category::RemoteAccess => BypassKind::RemoteAccess,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            BypassKind::Vpn => "VPN services",
            BypassKind::Proxy => "Proxies and anonymisers",
            BypassKind::Doh => "Encrypted DNS (DoH/DoT)",
            BypassKind::RemoteAccess => "Remote access tools",
            BypassKind::DomainFronting => "Domain fronting",
        }
    }
}

/// Attempts to get round the filter of one kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BypassFigures {
    pub kind: BypassKind,
    pub attempts: u64,
    /// Distinct signed-in users among them.
    pub users: u64,
    /// Distinct devices among them.
    pub devices: u64,
}

/// The safeguarding side of the week, as counts only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeguardingFigures {
    pub low: u64,
    pub medium: u64,
    pub high: u64,
    pub critical: u64,
    /// The severity from which flags are alerted (`[alerts] min_severity`).
    pub alert_severity: Severity,
    /// Episodes (one person's flags within 30 minutes) at or above it.
    pub episodes: u64,
    /// People (users, or devices when nobody signed in) with such an episode.
    pub people: u64,
    /// More flags than [`FLAGGED_SCAN_LIMIT`]: the figures above are a floor.
    pub truncated: bool,
}

/// One school's line in the trust-wide summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchoolRow {
    pub id: String,
    pub name: String,
    pub requests: u64,
    pub blocked: u64,
    pub flagged: u64,
}

/// One week of one school or of the trust, as the headteacher receives it.
///
/// Serialisable so the dashboard can keep past weeks and show them again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeeklySummary {
    pub week: IsoWeek,
    pub scope: Scope,
    /// The school's or the trust's name.
    pub title: String,
    /// The IANA zone the week's days are in.
    pub timezone: String,
    pub period: Period,
    pub generated_at: Timestamp,
    /// The dashboard's public URL (links in the email).
    pub dashboard_url: String,
    pub term: TermWeek,
    pub totals: WeekTotals,
    /// Monday to Sunday.
    pub days: Vec<DayFigures>,
    /// The four weeks before, then this week (oldest first).
    pub trend: Vec<WeekPoint>,
    /// Categories with anything blocked or flagged, most first.
    pub categories: Vec<CategoryFigures>,
    /// Roles with any traffic, most blocked first.
    pub roles: Vec<RoleFigures>,
    pub top_blocked: Vec<HostCount>,
    pub bypass: Vec<BypassFigures>,
    pub safeguarding: SafeguardingFigures,
    /// Trust-wide summaries only: one row per school.
    pub schools: Vec<SchoolRow>,
    pub incidents: Option<IncidentFigures>,
    pub health: Option<FilterHealth>,
    pub policy_changes: Vec<PolicyChange>,
}

impl WeeklySummary {
    /// All bypass attempts (domain fronting is inside the proxy figure already).
    pub fn bypass_attempts(&self) -> u64 {
        self.bypass
            .iter()
            .filter(|b| b.kind != BypassKind::DomainFronting)
            .map(|b| b.attempts)
            .sum()
    }

    /// The previous four weeks' average of `f`, over the weeks that had school
    /// days when this one had (a holiday week is compared with holiday weeks).
    pub fn baseline(&self, f: impl Fn(&WeekPoint) -> u64) -> Option<f64> {
        let (before, _) = self.trend.split_at(self.trend.len().saturating_sub(1));
        let holiday = self.term.holiday;
        let like: Vec<u64> = before
            .iter()
            .filter(|p| (p.school_days == 0) == holiday)
            .map(f)
            .collect();
        if like.is_empty() {
            return None;
        }
        Some(like.iter().sum::<u64>() as f64 / like.len() as f64)
    }
}

/// The name a scope goes by in the summary's title.
pub fn scope_title(config: &Config, scope: &Scope) -> String {
    match scope {
        Scope::Trust => config
            .trust
            .clone()
            .unwrap_or_else(|| "All schools".to_owned()),
        Scope::School { id } => config
            .schools
            .iter()
            .find(|s| &s.id == id)
            .map(|s| {
                if s.name.is_empty() {
                    s.id.clone()
                } else {
                    s.name.clone()
                }
            })
            .or_else(|| config.trust.clone())
            .unwrap_or_else(|| "Your school".to_owned()),
    }
}

/// Builds the summary of `week` for `scope` from the store.
pub async fn build_summary(
    store: &dyn EventStore,
    policy: &Policy,
    week: IsoWeek,
    scope: &Scope,
    extras: WeekExtras,
    generated_at: Timestamp,
) -> Result<WeeklySummary, ReportError> {
    let config = policy.config();
    if let Scope::School { id } = scope
        && !(id.is_empty() && config.schools.is_empty())
        && !config.schools.iter().any(|s| &s.id == id)
    {
        return Err(ReportError::UnknownSchool {
            id: id.clone(),
            known: config.schools.iter().map(|s| s.id.clone()).collect(),
        });
    }
    let tz = policy.time_zone().clone();
    let period = week.period(&tz)?;
    // Only a school within a trust needs scoping: a single school is the whole store.
    let school = match scope {
        Scope::School { id } if config.schools.len() > 1 => Some(id.as_str()),
        _ => None,
    };
    let term = term_week(policy, week);

    let this = volume(store, &period, school).await?;
    let mut days = Vec::with_capacity(7);
    for date in week.days() {
        let v = volume(store, &week.day_period(date, &tz)?, school).await?;
        days.push(DayFigures {
            date,
            school_day: policy.is_school_day(date),
            requests: v.requests,
            blocked: v.blocked,
            flagged: v.flagged,
        });
    }
    let mut trend = Vec::with_capacity(5);
    let mut w = week;
    for _ in 0..4 {
        w = w.previous();
        trend.push((w, volume(store, &w.period(&tz)?, school).await?));
    }
    trend.reverse();
    trend.push((week, this));
    let trend = trend
        .into_iter()
        .map(|(w, v)| WeekPoint {
            week: w,
            requests: v.requests,
            blocked: v.blocked,
            flagged: v.flagged,
            school_days: term_week(policy, w).school_days,
        })
        .collect();

    let purpose = Purpose::new(
        "schoolgate-reports",
        "weekly summary: counts only, no names or search terms leave the report",
    );
    let mut fq = FlaggedQuery::new(period);
    fq.school = school.map(str::to_owned);
    fq.limit = FLAGGED_SCAN_LIMIT;
    let flagged = store.flagged(&fq, &purpose).await?;
    let safeguarding = safeguarding(&flagged, config.alerts.min_severity);

    let mut totals = WeekTotals {
        requests: this.requests,
        blocked: this.blocked,
        flagged: this.flagged,
        users: None,
        devices: None,
    };
    let t = store.totals(&period, school).await?;
    totals.users = Some(t.distinct_users);
    totals.devices = Some(t.distinct_clients);
    let categories = store
        .counts(&period, GroupBy::Category, school)
        .await?
        .into_iter()
        .filter_map(|c| {
            Some(CategoryFigures {
                category: Category::from_name(&c.key)?,
                blocked: c.blocked,
                flagged: c.flagged,
            })
        });
    let roles = store
        .counts(&period, GroupBy::Role, school)
        .await?
        .into_iter()
        .map(|c| RoleFigures {
            role: c.key,
            description: String::new(),
            requests: Some(c.events),
            blocked: c.blocked,
            flagged: c.flagged,
        });
    let top_blocked = store.top_blocked_hosts(&period, TOP_SITES, school).await?;
    let mut bypass: Vec<BypassFigures> = store
        .bypass_attempts(&period, school)
        .await?
        .into_iter()
        .filter_map(|b| {
            Some(BypassFigures {
                kind: BypassKind::of(b.category)?,
                attempts: b.attempts,
                users: b.distinct_users,
                devices: b.distinct_clients,
            })
        })
        .collect();
    // Domain fronting is recognisable only by its rule; fronting verdicts always
    // carry a severity, so the flagged events hold every one of them.
    let fronting: Vec<&AccessEvent> = flagged
        .iter()
        .filter(|e| is_fronting(e) && matches!(e.action, Action::Block | Action::Flag))
        .collect();
    if !fronting.is_empty() {
        bypass.push(BypassFigures {
            kind: BypassKind::DomainFronting,
            attempts: fronting.len() as u64,
            users: fronting
                .iter()
                .filter_map(|e| e.user.as_deref().filter(|u| !u.is_empty()))
                .collect::<HashSet<_>>()
                .len() as u64,
            devices: fronting
                .iter()
                .map(|e| e.client_ip)
                .collect::<HashSet<_>>()
                .len() as u64,
        });
    }
    bypass.sort_by_key(|b| b.kind);

    let mut categories: Vec<CategoryFigures> = categories
        .filter(|c: &CategoryFigures| c.blocked > 0 || c.flagged > 0)
        .collect();
    categories.sort_by(|a, b| {
        (b.blocked + b.flagged)
            .cmp(&(a.blocked + a.flagged))
            .then(a.category.cmp(&b.category))
    });
    let mut roles: Vec<RoleFigures> = roles
        .filter(|r: &RoleFigures| r.requests.unwrap_or(0) > 0 || r.blocked > 0 || r.flagged > 0)
        .collect();
    roles.sort_by(|a, b| b.blocked.cmp(&a.blocked).then(a.role.cmp(&b.role)));
    for r in &mut roles {
        if let Some(rc) = config.roles.get(&r.role) {
            r.description = rc.description.clone();
        }
    }

    let schools = match scope {
        Scope::Trust => school_rows(config, store.counts(&period, GroupBy::School, None).await?),
        Scope::School { .. } => Vec::new(),
    };

    Ok(WeeklySummary {
        week,
        scope: scope.clone(),
        title: scope_title(config, scope),
        timezone: config.policy.timezone.clone(),
        period,
        generated_at,
        dashboard_url: config.dashboard.url.trim_end_matches('/').to_owned(),
        term,
        totals,
        days,
        trend,
        categories,
        roles,
        top_blocked,
        bypass,
        safeguarding,
        schools,
        incidents: extras.incidents,
        health: extras.health,
        policy_changes: extras.policy_changes,
    })
}

pub(crate) fn is_fronting(e: &AccessEvent) -> bool {
    e.rule.starts_with("domain fronting")
}

/// Requests, blocked and flagged in a period, for one school or all.
#[derive(Clone, Copy, Debug, Default)]
struct Volume {
    requests: u64,
    blocked: u64,
    flagged: u64,
}

async fn volume(
    store: &dyn EventStore,
    period: &Period,
    school: Option<&str>,
) -> Result<Volume, ReportError> {
    let mut v = Volume::default();
    for c in store.counts(period, GroupBy::School, school).await? {
        v.requests += c.events;
        v.blocked += c.blocked;
        v.flagged += c.flagged;
    }
    Ok(v)
}

/// The week in the school calendar (through the policy's compiled calendar).
pub fn term_week(policy: &Policy, week: IsoWeek) -> TermWeek {
    let config = policy.config();
    let days = week.days();
    let school_days = days.iter().filter(|d| policy.is_school_day(**d)).count() as u8;
    let weekdays: Vec<_> = config.calendar.school_days.iter().map(|d| d.0).collect();
    let closed_days = days
        .iter()
        .copied()
        .filter(|d| weekdays.contains(&d.weekday()) && !policy.is_school_day(*d))
        .collect();
    let (first, last) = (days[0], days[6]);
    let term = config
        .calendar
        .terms
        .iter()
        .find(|t| t.start <= last && first <= t.end)
        .map(|t| t.name.clone())
        .filter(|n| !n.is_empty());
    TermWeek {
        school_days,
        closed_days,
        term,
        holiday: school_days == 0,
    }
}

fn safeguarding(flagged: &[AccessEvent], alert_severity: Severity) -> SafeguardingFigures {
    let mut s = SafeguardingFigures {
        alert_severity,
        truncated: flagged.len() >= FLAGGED_SCAN_LIMIT,
        ..SafeguardingFigures::default()
    };
    for e in flagged {
        match e.severity.unwrap_or(Severity::Low) {
            Severity::Low => s.low += 1,
            Severity::Medium => s.medium += 1,
            Severity::High => s.high += 1,
            Severity::Critical => s.critical += 1,
        }
    }
    let serious: Vec<&AccessEvent> = flagged
        .iter()
        .filter(|e| e.severity.unwrap_or(Severity::Low) >= alert_severity)
        .collect();
    let episodes = episode::group(
        &serious,
        jiff::SignedDuration::from_mins(EPISODE_GAP_MINUTES),
    );
    s.episodes = episodes.len() as u64;
    s.people = episodes
        .iter()
        .map(|e| e.subject.as_str())
        .collect::<HashSet<_>>()
        .len() as u64;
    s
}

fn school_rows(config: &Config, counts: Vec<schoolgate_events::Count>) -> Vec<SchoolRow> {
    let mut by_id: BTreeMap<String, schoolgate_events::Count> =
        counts.into_iter().map(|c| (c.key.clone(), c)).collect();
    let mut rows: Vec<SchoolRow> = config
        .schools
        .iter()
        .map(|s| {
            let c = by_id.remove(&s.id);
            SchoolRow {
                id: s.id.clone(),
                name: if s.name.is_empty() {
                    s.id.clone()
                } else {
                    s.name.clone()
                },
                requests: c.as_ref().map_or(0, |c| c.events),
                blocked: c.as_ref().map_or(0, |c| c.blocked),
                flagged: c.as_ref().map_or(0, |c| c.flagged),
            }
        })
        .collect();
    // Traffic from networks mapped to no school (or to a school since removed).
    let (mut requests, mut blocked, mut flagged) = (0, 0, 0);
    for c in by_id.into_values() {
        requests += c.events;
        blocked += c.blocked;
        flagged += c.flagged;
    }
    if requests > 0 {
        rows.push(SchoolRow {
            id: String::new(),
            name: "Other networks".to_owned(),
            requests,
            blocked,
            flagged,
        });
    }
    rows
}
