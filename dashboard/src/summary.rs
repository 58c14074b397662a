//! The headteacher's weekly summary: the [`WeeklySummary`] of `schoolgate-reports`,
//! per school and trust-wide, rendered by that crate exactly as it is mailed.
//!
//! - Past weeks are the summaries the weekly job built and sent, kept in the
//!   state database by [`Archive`] (the job's `SummaryArchive`): the page shows
//!   what the headteacher received, not figures recounted later.
//! - The week under way, or a week the job did not keep (the filter was off that
//!   Monday), is built on demand with the same `build_summary` and cached: the
//!   current week for five minutes (kept warm in the background, so the page
//!   answers from memory even over tens of millions of events), others for a day.
//! - [`Archive`] is also the job's `WeekFacts`: the incidents, filter health and
//!   policy changes of a week, which only the dashboard knows.
//!
//! Aggregates only: no named pupil appears here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::HeaderValue;
use http::header::CONTENT_SECURITY_POLICY;
use jiff::Timestamp;
use jiff::civil::Date;
use maud::html;
use rusqlite::{OptionalExtension, params};
use schoolgate_events::CountersSnapshot;
use schoolgate_reports::{
    ArchiveError, FilterHealth, IncidentFigures, IsoWeek, PolicyChange, Scope, SummaryArchive,
    WeekExtras, WeekFacts, WeeklySummary, build_summary, render_fragment, scopes,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::auth::{CurrentUser, Role};
use crate::error::{DashboardError, Result};
use crate::state::ts;
use crate::ui;
use crate::web::Query;

const READERS: &[Role] = &[Role::Headteacher, Role::EsafetyLead, Role::NetworkManager];
const CURRENT_TTL: Duration = Duration::from_secs(300);
const PAST_TTL: Duration = Duration::from_secs(86_400);
const CACHED: usize = 60;
/// Past weeks listed on the page.
const LISTED_WEEKS: usize = 60;
/// The summary is the email's markup, which carries its styles in `style`
/// attributes: this page alone allows them (scripts stay `'self'`).
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/summary", get(page))
        .route("/api/summary", get(api))
        .route("/api/summary/weeks", get(weeks_api))
}

/// Where the weekly job keeps its summaries, and what it learns of a week from
/// the dashboard.
#[derive(Clone, Debug)]
pub struct Archive {
    app: App,
}

impl Archive {
    pub(crate) fn new(app: App) -> Archive {
        Archive { app }
    }
}

#[async_trait]
impl SummaryArchive for Archive {
    async fn contains(&self, week: IsoWeek, scope: &Scope) -> Result<bool, ArchiveError> {
        Ok(kept(&self.app, week, scope)
            .await
            .map_err(|e| ArchiveError(e.to_string()))?
            .is_some())
    }

    async fn keep(&self, summary: &WeeklySummary) -> Result<(), ArchiveError> {
        let json = serde_json::to_string(summary).map_err(|e| ArchiveError(e.to_string()))?;
        let (week, scope) = (summary.week.to_string(), summary.scope.key());
        let built = summary.generated_at.as_millisecond();
        self.app
            .db
            .call(move |c| {
                c.execute(
                    "INSERT OR REPLACE INTO weekly_summaries (week, scope, built_ms, json) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![week, scope, built, json],
                )?;
                Ok(())
            })
            .await
            .map_err(|e| ArchiveError(e.to_string()))?;
        self.app.summaries.forget(summary.week, &summary.scope);
        Ok(())
    }
}

#[async_trait]
impl WeekFacts for Archive {
    async fn extras(&self, week: IsoWeek, scope: &Scope) -> WeekExtras {
        match facts(&self.app, week, scope).await {
            Ok(extras) => extras,
            Err(e) => {
                tracing::warn!(%week, scope = %scope.key(), error = %e, "the dashboard's figures for the weekly summary");
                WeekExtras::default()
            }
        }
    }
}

/// The kept summary of `week` for `scope`, if the weekly job kept one.
async fn kept(app: &App, week: IsoWeek, scope: &Scope) -> Result<Option<WeeklySummary>> {
    let (w, s) = (week.to_string(), scope.key());
    let json: Option<String> = app
        .db
        .call(move |c| {
            Ok(c.query_row(
                "SELECT json FROM weekly_summaries WHERE week = ?1 AND scope = ?2",
                params![w, s],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await?;
    json.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| DashboardError::Internal(format!("kept summary {week}: {e}")))
    })
    .transpose()
}

/// One kept summary, as listed.
#[derive(Clone, Debug, Serialize)]
pub struct KeptWeek {
    pub week: String,
    pub scope: String,
    pub generated_at: Timestamp,
}

/// The kept summaries, newest week first.
async fn kept_weeks(app: &App) -> Result<Vec<KeptWeek>> {
    app.db
        .call(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT week, scope, built_ms FROM weekly_summaries \
                 ORDER BY week DESC, scope LIMIT ?1",
            )?;
            let rows = stmt.query_map([(LISTED_WEEKS * 8) as i64], |r| {
                Ok(KeptWeek {
                    week: r.get(0)?,
                    scope: r.get(1)?,
                    generated_at: ts(r.get(2)?),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
}

/// What the dashboard knows of a week: incidents from the e-Safety Incident Log,
/// the policy versions saved in it, and the filter's health.
async fn facts(app: &App, week: IsoWeek, scope: &Scope) -> Result<WeekExtras> {
    let policy = app.policy.load_full();
    let period = week
        .period(policy.time_zone())
        .map_err(|e| DashboardError::Internal(e.to_string()))?;
    let (from, to) = (period.from.as_millisecond(), period.to.as_millisecond());
    let school = match scope {
        Scope::School { id } if policy.config().schools.len() > 1 => Some(id.clone()),
        _ => None,
    };
    let ((opened, in_progress, closed), changes) = app
        .db
        .call(move |c| {
            let incidents = crate::incidents::week_figures(c, from, to, school.as_deref())?;
            let mut stmt = c.prepare_cached(
                "SELECT time_ms, actor, reason, summary FROM config_versions \
                 WHERE time_ms >= ?1 AND time_ms < ?2 ORDER BY time_ms, id",
            )?;
            let changes = stmt
                .query_map(params![from, to], |r| {
                    let lines: String = r.get(3)?;
                    Ok(PolicyChange {
                        when: ts(r.get(0)?),
                        who: r.get(1)?,
                        what: serde_json::from_str::<Vec<String>>(&lines)
                            .map(|l| l.join("; "))
                            .unwrap_or(lines),
                        why: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((incidents, changes))
        })
        .await?;
    Ok(WeekExtras {
        incidents: Some(IncidentFigures {
            opened,
            in_progress,
            closed,
        }),
        health: health(app, period.from, period.to),
        policy_changes: changes,
    })
}

/// The filter's health over `[from, to)` as this process knows it: up from its
/// start, lists as last loaded, the pipeline's counters now. A week that ended
/// before the process started is not known (`None`: the summary says so).
fn health(app: &App, from: Timestamp, to: Timestamp) -> Option<FilterHealth> {
    let now = app.clock.now().min(to);
    if app.started_at >= now || now <= from {
        return None;
    }
    let up = now.as_millisecond() - app.started_at.max(from).as_millisecond();
    let span = now.as_millisecond() - from.as_millisecond();
    let counters: CountersSnapshot =
        serde_json::from_value((app.health)()["pipeline"].clone()).unwrap_or_default();
    Some(FilterHealth::from_counters(
        up as f64 / span as f64,
        app.load_state().map(|l| l.at),
        &counters,
    ))
}

/// A summary built on demand, and when.
type Built = (Instant, Arc<WeeklySummary>);

/// Summaries built on demand, by week and scope.
#[derive(Debug, Default)]
pub struct Cache {
    built: Mutex<HashMap<(IsoWeek, Scope), Built>>,
}

impl Cache {
    /// Forgets everything (after a policy change, say).
    pub fn clear(&self) {
        if let Ok(mut b) = self.built.lock() {
            b.clear();
        }
    }

    fn forget(&self, week: IsoWeek, scope: &Scope) {
        if let Ok(mut b) = self.built.lock() {
            b.remove(&(week, scope.clone()));
        }
    }

    fn get(&self, week: IsoWeek, scope: &Scope, ttl: Duration) -> Option<Arc<WeeklySummary>> {
        let b = self.built.lock().ok()?;
        b.get(&(week, scope.clone()))
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, s)| s.clone())
    }

    fn put(&self, s: Arc<WeeklySummary>) {
        if let Ok(mut b) = self.built.lock() {
            if b.len() >= CACHED
                && let Some(oldest) = b
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
            {
                b.remove(&oldest);
            }
            b.insert((s.week, s.scope.clone()), (Instant::now(), s));
        }
    }
}

/// Builds the summary of `week` for `scope` now, from the store and this
/// dashboard's facts.
pub async fn build(app: &App, week: IsoWeek, scope: &Scope) -> Result<WeeklySummary> {
    let policy = app.policy.load_full();
    let extras = facts(app, week, scope).await?;
    build_summary(
        app.store.as_ref(),
        &policy,
        week,
        scope,
        extras,
        app.clock.now(),
    )
    .await
    .map_err(|e| match e {
        schoolgate_reports::ReportError::UnknownSchool { .. } => {
            DashboardError::bad_request(e.to_string())
        }
        e => DashboardError::Internal(e.to_string()),
    })
}

/// A summary to show, and whether it is the one the weekly job kept.
#[derive(Clone, Debug)]
pub struct Shown {
    pub summary: Arc<WeeklySummary>,
    pub kept: bool,
}

/// The kept summary of the week, or one built now (from the cache unless
/// `refresh`).
pub async fn summary(app: &App, week: IsoWeek, scope: &Scope, refresh: bool) -> Result<Shown> {
    if !refresh && let Some(s) = kept(app, week, scope).await? {
        return Ok(Shown {
            summary: Arc::new(s),
            kept: true,
        });
    }
    let ttl = if week >= this_week(app) {
        CURRENT_TTL
    } else {
        PAST_TTL
    };
    if !refresh && let Some(s) = app.summaries.get(week, scope, ttl) {
        return Ok(Shown {
            summary: s,
            kept: false,
        });
    }
    let s = Arc::new(build(app, week, scope).await?);
    app.summaries.put(s.clone());
    Ok(Shown {
        summary: s,
        kept: false,
    })
}

fn this_week(app: &App) -> IsoWeek {
    IsoWeek::at(app.clock.now(), &app.tz())
}

/// Rebuilds the current week's summaries every few minutes until shutdown.
pub async fn keep_warm(app: App, shutdown: CancellationToken) {
    loop {
        let week = this_week(&app);
        let all = scopes(app.policy.load().config());
        for scope in all {
            match build(&app, week, &scope).await {
                Ok(s) => app.summaries.put(Arc::new(s)),
                Err(e) => tracing::warn!(error = %e, "building the weekly summary failed"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CURRENT_TTL - Duration::from_secs(30)) => {}
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct WeekQuery {
    /// The week wanted: `2026-W47`, or any of its days (`YYYY-MM-DD`); default
    /// this week so far.
    week: Option<String>,
    /// `trust`, `school-ID` (as `Scope::key`); default the first summary the
    /// configuration makes (the trust's in a trust).
    scope: Option<String>,
    /// `1`: build the figures now rather than show the kept or cached ones.
    refresh: Option<String>,
}

fn week_from(app: &App, q: &WeekQuery) -> Result<IsoWeek> {
    match q.week.as_deref().map(str::trim).filter(|w| !w.is_empty()) {
        Some(w) => w
            .parse::<IsoWeek>()
            .or_else(|_| w.parse::<Date>().map(IsoWeek::containing))
            .map_err(|_| {
                DashboardError::bad_request(format!(
                    "`{w}` is not a week (2026-W47) or a date (YYYY-MM-DD)"
                ))
            }),
        None => Ok(this_week(app)),
    }
}

fn scope_from(app: &App, q: &WeekQuery) -> Result<(Scope, Vec<Scope>)> {
    let mut all = scopes(app.policy.load().config());
    // The trust's summary first: it is the headteacher's (or CEO's) overview.
    all.sort_by_key(|s| *s != Scope::Trust);
    let wanted = match q.scope.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(key) => all
            .iter()
            .find(|s| s.key() == key)
            .cloned()
            .ok_or_else(|| DashboardError::bad_request(format!("no summary `{key}`")))?,
        None => all.first().cloned().unwrap_or(Scope::Trust),
    };
    Ok((wanted, all))
}

async fn api(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<WeekQuery>,
) -> Result<axum::Json<WeeklySummary>> {
    user.require(READERS, "the weekly summary")?;
    let (scope, _) = scope_from(&app, &q)?;
    let shown = summary(&app, week_from(&app, &q)?, &scope, q.refresh.is_some()).await?;
    Ok(axum::Json((*shown.summary).clone()))
}

async fn weeks_api(State(app): State<App>, user: CurrentUser) -> Result<axum::Json<Vec<KeptWeek>>> {
    user.require(READERS, "the weekly summary")?;
    Ok(axum::Json(kept_weeks(&app).await?))
}

fn link(week: IsoWeek, scope: &Scope) -> String {
    format!("/summary?week={week}&scope={}", scope.key())
}

async fn page(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<WeekQuery>,
) -> Result<Response> {
    user.require(READERS, "the weekly summary")?;
    let week = week_from(&app, &q)?;
    let (scope, all) = scope_from(&app, &q)?;
    let shown = summary(&app, week, &scope, q.refresh.is_some()).await?;
    let s = &shown.summary;
    let tz = app.tz();
    let now_week = this_week(&app);
    let kept = kept_weeks(&app).await?;
    let mut kept_list: Vec<(String, Vec<&KeptWeek>)> = Vec::new();
    for k in &kept {
        match kept_list.last_mut() {
            Some((w, ks)) if *w == k.week => ks.push(k),
            _ => kept_list.push((k.week.clone(), vec![k])),
        }
    }
    kept_list.truncate(LISTED_WEEKS);
    let body = ui::page(
        &app,
        &user,
        "Weekly summary",
        "/summary",
        html! {
            (ui::page_head("Weekly summary", Some(&format!("{} · {} · week of {}", s.title, week, week.monday().strftime("%A %-d %B %Y")))))
            div.actions.noprint.neg {
                a.btn.secondary.small href=(link(week.previous(), &scope)) { "← Previous week" }
                @if week < now_week { a.btn.secondary.small href=(link(week.next(), &scope)) { "Next week →" } }
                @if all.len() > 1 {
                    @for other in &all {
                        @if *other == scope { span.btn.small { (scope_label(&app, other)) } }
                        @else { a.btn.secondary.small href=(link(week, other)) { (scope_label(&app, other)) } }
                    }
                }
                span.muted.small {
                    @if shown.kept { "As sent on " (ui::when(s.generated_at, &tz)) ". " }
                    @else if week >= now_week { "This week so far, as of " (ui::when(s.generated_at, &tz)) ". " }
                    @else { "Not sent that week; figures as of " (ui::when(s.generated_at, &tz)) ". " }
                    a href={ (link(week, &scope)) "&refresh=1" } { "Recount now" }
                    ". Aggregates only: no individual's browsing is shown here."
                }
            }
            div #summary { (render_fragment(s)) }
            div.card.noprint {
                h2 { "Summaries sent" }
                @if kept_list.is_empty() { (ui::empty("No weekly summary has been sent yet: the first goes out at the configured day and time.")) }
                @else {
                    table {
                        thead { tr { th { "Week" } th { "Summaries" } th { "Sent" } } }
                        tbody {
                            @for (w, ks) in &kept_list {
                                tr {
                                    td.mono { (w) }
                                    td { @for k in ks { a href={ "/summary?week=" (k.week) "&scope=" (k.scope) } { (k.scope) } " " } }
                                    td { @if let Some(k) = ks.first() { (ui::when(k.generated_at, &tz)) } }
                                }
                            }
                        }
                    }
                }
            }
        },
    );
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    Ok(resp)
}

fn scope_label(app: &App, scope: &Scope) -> String {
    schoolgate_reports::summary::scope_title(app.policy.load().config(), scope)
}
