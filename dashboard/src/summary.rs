//! The headteacher's weekly summary: totals, blocked and flagged by category and
//! role, the trend against previous weeks, incidents opened and closed, bypass
//! attempts and filter health; per school and trust-wide. Aggregates only: no
//! named pupil appears here.
//!
//! The model is built from the event store's aggregate queries. When the
//! `schoolgate-reports` crate's `WeeklySummary` lands, [`build`] becomes a call to
//! it and this page renders that model; the page and the JSON keep their shape.
//!
//! Summaries are cached: the current week for five minutes (kept warm in the
//! background, so the page answers from memory even over tens of millions of
//! events), past weeks for a day.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};
use maud::{Markup, html};
use schoolgate_events::{BypassAttempts, Count, GroupBy, HostCount, Period, Totals};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::auth::{CurrentUser, Role};
use crate::charts;
use crate::error::{DashboardError, Result};
use crate::ui;
use crate::web::Query;

const READERS: &[Role] = &[Role::Headteacher, Role::EsafetyLead, Role::NetworkManager];
const TREND_WEEKS: i64 = 8;
const CURRENT_TTL: Duration = Duration::from_secs(300);
const PAST_TTL: Duration = Duration::from_secs(86_400);
const CACHED_WEEKS: usize = 60;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/summary", get(page))
        .route("/api/summary", get(api))
}

#[derive(Clone, Debug, Serialize)]
pub struct WeekPoint {
    pub week_start: Date,
    pub events: u64,
    pub blocked: u64,
    pub flagged: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct IncidentCounts {
    pub opened: u64,
    pub closed: u64,
    pub open_at_end: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FilterHealth {
    pub uptime_secs: i64,
    pub lists_loaded: Option<Timestamp>,
    pub failed_sources: Vec<String>,
    pub domains: u64,
}

/// One week, Monday to Sunday in school time.
#[derive(Clone, Debug, Serialize)]
pub struct WeeklySummary {
    pub school: String,
    pub week_start: Date,
    pub from: Timestamp,
    pub to: Timestamp,
    pub totals: Totals,
    pub by_category: Vec<Count>,
    pub by_role: Vec<Count>,
    pub by_school: Vec<Count>,
    pub trend: Vec<WeekPoint>,
    pub top_blocked: Vec<HostCount>,
    pub bypass: Vec<BypassAttempts>,
    pub incidents: IncidentCounts,
    pub health: FilterHealth,
    pub generated_at: Timestamp,
    /// How long building it took (the cache hides this from the page).
    pub build_millis: u64,
}

/// Built summaries by week.
#[derive(Debug, Default)]
pub struct Cache {
    weeks: Mutex<HashMap<Date, (Instant, Arc<WeeklySummary>)>>,
}

impl Cache {
    /// Forgets everything (after a policy change, say).
    pub fn clear(&self) {
        if let Ok(mut w) = self.weeks.lock() {
            w.clear();
        }
    }

    fn get(&self, week: Date, ttl: Duration) -> Option<Arc<WeeklySummary>> {
        let w = self.weeks.lock().ok()?;
        w.get(&week)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, s)| s.clone())
    }

    fn put(&self, s: Arc<WeeklySummary>) {
        if let Ok(mut w) = self.weeks.lock() {
            if w.len() >= CACHED_WEEKS
                && let Some(oldest) = w.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| *k)
            {
                w.remove(&oldest);
            }
            w.insert(s.week_start, (Instant::now(), s));
        }
    }
}

/// The Monday of the week holding `d`.
pub fn monday_of(d: Date) -> Date {
    let back = i64::from(d.weekday().to_monday_zero_offset());
    d.checked_sub(back.days()).unwrap_or(d)
}

fn week_bounds(app: &App, monday: Date) -> Result<(Timestamp, Timestamp)> {
    let tz = app.tz();
    let bad = |e: jiff::Error| DashboardError::bad_request(e.to_string());
    let from = monday.to_zoned(tz.clone()).map_err(bad)?.timestamp();
    let to = monday
        .checked_add(7.days())
        .map_err(bad)?
        .to_zoned(tz)
        .map_err(bad)?
        .timestamp();
    Ok((from, to))
}

/// Builds the summary of the week starting `monday` from the store's aggregates.
pub async fn build(app: &App, monday: Date) -> Result<WeeklySummary> {
    let started = Instant::now();
    let (from, to) = week_bounds(app, monday)?;
    let period = Period::new(from, to);
    let trend_from = week_bounds(
        app,
        monday
            .checked_sub((7 * (TREND_WEEKS - 1)).days())
            .unwrap_or(monday),
    )?
    .0;
    let store = &app.store;
    let trend_period = Period::new(trend_from, to);
    let (totals, by_category, by_role, by_school, days, top_blocked, bypass) = tokio::try_join!(
        store.totals(&period, None),
        store.counts(&period, GroupBy::Category, None),
        store.counts(&period, GroupBy::Role, None),
        store.counts(&period, GroupBy::School, None),
        store.counts(&trend_period, GroupBy::Day, None),
        store.top_blocked_hosts(&period, 10, None),
        store.bypass_attempts(&period, None),
    )?;
    let mut trend: BTreeMap<Date, WeekPoint> = BTreeMap::new();
    for i in 0..TREND_WEEKS {
        let w = monday.checked_sub((7 * i).days()).unwrap_or(monday);
        trend.insert(
            w,
            WeekPoint {
                week_start: w,
                events: 0,
                blocked: 0,
                flagged: 0,
            },
        );
    }
    for d in days {
        let Ok(day) = d.key.parse::<Date>() else {
            continue;
        };
        if let Some(p) = trend.get_mut(&monday_of(day)) {
            p.events += d.events;
            p.blocked += d.blocked;
            p.flagged += d.flagged;
        }
    }
    let (fm, tm) = (from.as_millisecond(), to.as_millisecond());
    let (opened, closed, open_at_end) = app
        .db
        .call(move |c| crate::incidents::opened_closed(c, fm, tm))
        .await?;
    let load = app.load_state();
    let policy = app.policy.load();
    Ok(WeeklySummary {
        school: app.school_name(),
        week_start: monday,
        from,
        to,
        totals,
        by_category,
        by_role,
        by_school,
        trend: trend.into_values().collect(),
        top_blocked,
        bypass,
        incidents: IncidentCounts {
            opened,
            closed,
            open_at_end,
        },
        health: FilterHealth {
            uptime_secs: app.clock.now().as_second() - app.started_at.as_second(),
            lists_loaded: load.as_ref().map(|l| l.at),
            failed_sources: load.map(|l| l.report.failures()).unwrap_or_default(),
            domains: policy.stats().domains,
        },
        generated_at: app.clock.now(),
        build_millis: started.elapsed().as_millis() as u64,
    })
}

/// The week's summary from the cache, building it on a miss (or when `refresh`).
pub async fn summary(app: &App, monday: Date, refresh: bool) -> Result<Arc<WeeklySummary>> {
    let this_week = monday_of(app.clock.now().to_zoned(app.tz()).date());
    let ttl = if monday >= this_week {
        CURRENT_TTL
    } else {
        PAST_TTL
    };
    if !refresh && let Some(s) = app.summaries.get(monday, ttl) {
        return Ok(s);
    }
    let s = Arc::new(build(app, monday).await?);
    app.summaries.put(s.clone());
    Ok(s)
}

/// Rebuilds the current week's summary every few minutes until shutdown.
pub async fn keep_warm(app: App, shutdown: CancellationToken) {
    loop {
        let monday = monday_of(app.clock.now().to_zoned(app.tz()).date());
        match build(&app, monday).await {
            Ok(s) => app.summaries.put(Arc::new(s)),
            Err(e) => tracing::warn!(error = %e, "building the weekly summary failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CURRENT_TTL - Duration::from_secs(30)) => {}
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct WeekQuery {
    /// Any day of the week wanted (`YYYY-MM-DD`); default this week.
    week: Option<String>,
    /// `1`: build the figures now rather than from the cache.
    refresh: Option<String>,
}

fn monday_from(app: &App, q: &WeekQuery) -> Result<Date> {
    match q.week.as_deref().map(str::trim).filter(|w| !w.is_empty()) {
        Some(w) => w
            .parse::<Date>()
            .map(monday_of)
            .map_err(|_| DashboardError::bad_request(format!("`{w}` is not a date (YYYY-MM-DD)"))),
        None => Ok(monday_of(app.clock.now().to_zoned(app.tz()).date())),
    }
}

async fn api(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<WeekQuery>,
) -> Result<axum::Json<WeeklySummary>> {
    user.require(READERS, "the weekly summary")?;
    Ok(axum::Json(
        (*summary(&app, monday_from(&app, &q)?, q.refresh.is_some()).await?).clone(),
    ))
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "—".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn change(now: u64, before: u64) -> String {
    match (now, before) {
        (_, 0) => "no data the week before".into(),
        _ => {
            let d = (now as f64 - before as f64) * 100.0 / before as f64;
            format!(
                "{}{:.0}% on the week before",
                if d >= 0.0 { "+" } else { "" },
                d
            )
        }
    }
}

async fn page(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<WeekQuery>,
) -> Result<Markup> {
    user.require(READERS, "the weekly summary")?;
    let monday = monday_from(&app, &q)?;
    let s = summary(&app, monday, q.refresh.is_some()).await?;
    let tz = app.tz();
    let prev = monday.checked_sub(7.days()).unwrap_or(monday);
    let next = monday.checked_add(7.days()).unwrap_or(monday);
    let this_week = monday_of(app.clock.now().to_zoned(tz.clone()).date());
    let last_week = s.trend.iter().rev().nth(1).cloned();
    let bypass_total: u64 = s.bypass.iter().map(|b| b.attempts).sum();
    let mut blocked_cats: Vec<(String, u64)> = s
        .by_category
        .iter()
        .filter(|c| c.blocked > 0 && !c.key.is_empty())
        .map(|c| (c.key.clone(), c.blocked))
        .collect();
    blocked_cats.sort_by_key(|c| std::cmp::Reverse(c.1));
    blocked_cats.truncate(12);
    let mut flagged_cats: Vec<(String, u64)> = s
        .by_category
        .iter()
        .filter(|c| c.flagged > 0 && !c.key.is_empty())
        .map(|c| (c.key.clone(), c.flagged))
        .collect();
    flagged_cats.sort_by_key(|c| std::cmp::Reverse(c.1));
    flagged_cats.truncate(12);
    let labels: Vec<String> = s
        .trend
        .iter()
        .map(|p| p.week_start.strftime("%-d %b").to_string())
        .collect();
    let sunday = monday.checked_add(6.days()).unwrap_or(monday);
    Ok(ui::page(
        &app,
        &user,
        "Weekly summary",
        "/summary",
        html! {
            (ui::page_head("Weekly summary", Some(&format!("{} · week of {} to {}", s.school, monday.strftime("%A %-d %B"), sunday.strftime("%A %-d %B %Y")))))
            div.actions.noprint.neg {
                a.btn.secondary.small href={ "/summary?week=" (prev) } { "← Previous week" }
                @if next <= this_week { a.btn.secondary.small href={ "/summary?week=" (next) } { "Next week →" } }
                span.muted.small { "Figures as of " (ui::when(s.generated_at, &tz)) " (" a href={ "/summary?week=" (monday) "&refresh=1" } { "refresh" } "). Aggregates only: no individual's browsing is shown here." }
            }
            div.stats {
                (ui::stat("Requests", &ui::thousands(s.totals.requests), last_week.as_ref().map(|w| change(s.totals.requests, w.events)).as_deref()))
                (ui::stat("Blocked", &ui::thousands(s.totals.blocked), Some(&format!("{} of requests", pct(s.totals.blocked, s.totals.requests)))))
                (ui::stat("Flagged for review", &ui::thousands(s.totals.flagged), last_week.as_ref().map(|w| change(s.totals.flagged, w.flagged)).as_deref()))
                (ui::stat("Bypass attempts", &ui::thousands(bypass_total), Some("VPNs, proxies, encrypted DNS")))
                (ui::stat("Incidents", &format!("{} opened", s.incidents.opened), Some(&format!("{} closed · {} open at week end", s.incidents.closed, s.incidents.open_at_end))))
                (ui::stat("People / devices", &format!("{} / {}", ui::thousands(s.totals.distinct_users), ui::thousands(s.totals.distinct_clients)), None))
            }
            div.card {
                h2 { "Trend: the last " (TREND_WEEKS) " weeks" }
                (charts::grouped_bars(&labels, &[
                    ("Blocked", charts::BLOCKED, s.trend.iter().map(|p| p.blocked).collect()),
                    ("Flagged", charts::FLAGGED, s.trend.iter().map(|p| p.flagged).collect()),
                ]))
            }
            div.grid.grid-2 {
                div.card { h2 { "Blocked by category" } @if blocked_cats.is_empty() { (ui::empty("Nothing blocked this week.")) } @else { (charts::horizontal_bars(&blocked_cats, charts::BLOCKED)) } }
                div.card { h2 { "Flagged by category" } @if flagged_cats.is_empty() { (ui::empty("Nothing flagged this week.")) } @else { (charts::horizontal_bars(&flagged_cats, charts::FLAGGED)) } }
            }
            div.grid.grid-2 {
                div.card {
                    h2 { "By role" }
                    table {
                        thead { tr { th { "Role" } th.num { "Requests" } th.num { "Blocked" } th.num { "Flagged" } } }
                        tbody { @for r in &s.by_role { tr { td { (r.key) } td.num { (ui::thousands(r.events)) } td.num { (ui::thousands(r.blocked)) } td.num { (ui::thousands(r.flagged)) } } } }
                    }
                    @if s.by_school.len() > 1 {
                        h3 { "By school" }
                        table {
                            thead { tr { th { "School" } th.num { "Requests" } th.num { "Blocked" } th.num { "Flagged" } } }
                            tbody { @for r in &s.by_school { tr { td { (if r.key.is_empty() { "(no school)" } else { &r.key }) } td.num { (ui::thousands(r.events)) } td.num { (ui::thousands(r.blocked)) } td.num { (ui::thousands(r.flagged)) } } } }
                        }
                    }
                }
                div.card {
                    h2 { "Bypass attempts" }
                    @if s.bypass.is_empty() { (ui::empty("None this week.")) } @else {
                        table {
                            thead { tr { th { "Kind" } th.num { "Attempts" } th.num { "People" } th.num { "Devices" } } }
                            tbody { @for b in &s.bypass { tr { td { (b.category.label()) } td.num { (ui::thousands(b.attempts)) } td.num { (b.distinct_users) } td.num { (b.distinct_clients) } } } }
                        }
                    }
                    h3 { "Most blocked sites" }
                    table {
                        tbody { @for h in &s.top_blocked { tr { td.mono { (h.host) } td.num { (ui::thousands(h.blocked)) } } } }
                    }
                }
            }
            div.card {
                h2 { "Filter health" }
                dl.kv {
                    dt { "Running for" } dd { (crate::health::uptime(s.health.uptime_secs)) }
                    dt { "Lists last read" } dd { @if let Some(t) = s.health.lists_loaded { (ui::when(t, &tz)) } @else { "at start" } }
                    dt { "Domains on lists" } dd { (ui::thousands(s.health.domains)) }
                    dt { "List problems" } dd { @if s.health.failed_sources.is_empty() { span.dot.ok {} "none" } @else { @for f in &s.health.failed_sources { div { span.dot.bad {} (f) } } } }
                }
            }
        },
    ))
}
