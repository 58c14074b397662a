//! The e-safety lead's review: flagged access grouped per person and episode
//! (not one row per request), ranked by severity, each with the browsing around
//! it; acknowledge, note, escalate; one person's or device's timeline; search.
//!
//! Every page here shows personal data: each view is written to the audit log
//! with the purpose, and the store is asked with the same purpose.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use jiff::{SignedDuration, Timestamp};
use maud::{Markup, html};
use rusqlite::{Connection, params};
use schoolgate_classifier::{Action, Category, Severity};
use schoolgate_events::{AccessEvent, EventSearch, FlaggedQuery, Period, Purpose, Subject};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::audit::{self, AuditEntry};
use crate::auth::{CurrentUser, Role};
use crate::error::{DashboardError, Result};
use crate::ui;
use crate::web::{Form, Json, Query, non_empty, see_other};

const WHAT: &str = "the flagged-access review";
pub const REVIEWERS: &[Role] = &[Role::EsafetyLead];
/// Flagged events further apart than this start a new episode.
const EPISODE_GAP: SignedDuration = SignedDuration::from_mins(30);
/// The browsing shown around an episode, each side.
pub const CONTEXT_MINUTES: i64 = 30;
/// Flagged events read for the queue: bounded, most severe first.
const QUEUE_LIMIT: usize = 5_000;
/// Results of a search of everyone's browsing (newest first).
const SEARCH_LIMIT: usize = 1_000;
/// Rows shown on a timeline or in search results.
const ROWS_SHOWN: usize = 3_000;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/review", get(queue_page))
        .route("/api/review", get(queue_api))
        .route("/review/episode", get(episode_page))
        .route("/api/review/episode", get(episode_api))
        .route("/review/ack", post(ack_form))
        .route("/review/note", post(note_form))
        .route("/review/escalate", post(escalate_form))
        .route("/api/review/ack", post(ack_api))
        .route("/api/review/note", post(note_api))
        .route("/api/review/escalate", post(escalate_api))
        .route("/timeline", get(timeline_page))
        .route("/api/timeline", get(timeline_api))
        .route("/search", get(search_page))
        .route("/api/search", get(search_api))
}

/// `user:NAME` or `client:IP`, as written in links and forms.
pub fn subject_key(e: &AccessEvent) -> String {
    match e.user.as_deref().filter(|u| !u.is_empty()) {
        Some(u) => format!("user:{u}"),
        None => format!("client:{}", e.client_ip),
    }
}

pub fn parse_subject(s: &str) -> Result<Subject> {
    let bad =
        || DashboardError::bad_request(format!("`{s}` is not a subject (user:NAME or client:IP)"));
    match s.split_once(':') {
        Some(("user", u)) if !u.is_empty() && u.len() <= 256 => Ok(Subject::User(u.to_owned())),
        Some(("client", ip)) => ip.parse::<IpAddr>().map(Subject::Client).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

pub fn subject_label(s: &Subject) -> String {
    match s {
        Subject::User(u) => u.clone(),
        Subject::Client(ip) => format!("device at {ip}"),
    }
}

/// Where an episode stands in the review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "status")]
pub enum ReviewStatus {
    New,
    Acknowledged { by: String },
    Escalated { incident: i64 },
}

impl ReviewStatus {
    fn name(&self) -> &'static str {
        match self {
            ReviewStatus::New => "new",
            ReviewStatus::Acknowledged { .. } => "acknowledged",
            ReviewStatus::Escalated { .. } => "escalated",
        }
    }
}

/// A run of one person's flagged events, none more than 30 minutes from the last.
#[derive(Clone, Debug, Serialize)]
pub struct Episode {
    /// The first flagged event's id.
    pub key: String,
    pub subject: String,
    pub label: String,
    pub device: Option<String>,
    pub role: String,
    pub school: String,
    pub first: Timestamp,
    pub last: Timestamp,
    pub severity: Severity,
    pub categories: Vec<Category>,
    pub events: usize,
    pub blocked: usize,
    pub hosts: Vec<String>,
    pub search_terms: Vec<String>,
    pub event_ids: Vec<String>,
    pub status: ReviewStatus,
}

impl Episode {
    /// The link to the episode's page.
    pub fn href(&self) -> String {
        format!(
            "/review/episode?subject={}&from={}&to={}",
            ui::url_encode(&self.subject),
            self.first.as_millisecond(),
            self.last.as_millisecond()
        )
    }
}

/// Groups flagged events into episodes (events in any order).
pub fn episodes(mut events: Vec<AccessEvent>) -> Vec<Episode> {
    // Cached: the subject key is a formatted string, built once per event rather
    // than twice per comparison.
    events.sort_by_cached_key(|e| (subject_key(e), e.time, e.id));
    let mut out: Vec<Episode> = Vec::new();
    let mut current: Option<(String, Vec<AccessEvent>)> = None;
    for e in events {
        let key = subject_key(&e);
        match &mut current {
            Some((k, run))
                if *k == key
                    && run
                        .last()
                        .is_some_and(|l| e.time.duration_since(l.time) <= EPISODE_GAP) =>
            {
                run.push(e)
            }
            _ => {
                if let Some((k, run)) = current.take() {
                    out.push(episode_of(k, run));
                }
                current = Some((key, vec![e]));
            }
        }
    }
    if let Some((k, run)) = current {
        out.push(episode_of(k, run));
    }
    out
}

fn episode_of(subject: String, run: Vec<AccessEvent>) -> Episode {
    let first = &run[0];
    let mut cats: Vec<Category> = Vec::new();
    let mut hosts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut terms: Vec<String> = Vec::new();
    for e in &run {
        for c in e.categories.iter() {
            if !cats.contains(&c) {
                cats.push(c);
            }
        }
        *hosts.entry(e.host.as_str()).or_default() += 1;
        if !e.search_terms.is_empty() && !terms.contains(&e.search_terms) && terms.len() < 5 {
            terms.push(e.search_terms.clone());
        }
    }
    let mut hosts: Vec<(&str, usize)> = hosts.into_iter().collect();
    hosts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let label = parse_subject(&subject)
        .map(|s| subject_label(&s))
        .unwrap_or_else(|_| subject.clone());
    Episode {
        key: first.id.to_string(),
        label,
        device: run
            .iter()
            .find_map(|e| e.device.clone().filter(|d| !d.is_empty())),
        role: first.role.clone(),
        school: first.school.clone(),
        first: first.time,
        last: run.last().map(|e| e.time).unwrap_or(first.time),
        severity: run
            .iter()
            .filter_map(|e| e.severity)
            .max()
            .unwrap_or(Severity::Low),
        categories: cats,
        events: run.len(),
        blocked: run.iter().filter(|e| e.action == Action::Block).count(),
        hosts: hosts
            .into_iter()
            .take(4)
            .map(|(h, _)| h.to_owned())
            .collect(),
        search_terms: terms,
        event_ids: run.iter().map(|e| e.id.to_string()).collect(),
        status: ReviewStatus::New,
        subject,
    }
}

/// The review marks on `ids`: (status, actor, incident).
/// A review mark: status, who, and the incident it was escalated to.
type Mark = (String, String, Option<i64>);

fn marks(conn: &Connection, ids: &[String]) -> Result<HashMap<String, Mark>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(500) {
        let placeholders = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            "SELECT event_id, status, actor, incident_id FROM reviews WHERE event_id IN ({placeholders})"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(chunk.iter()), |r| {
            Ok((
                r.get::<_, String>(0)?,
                (
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ),
            ))
        })?;
        for row in rows {
            let (id, m) = row?;
            out.insert(id, m);
        }
    }
    Ok(out)
}

async fn with_status(app: &App, mut eps: Vec<Episode>) -> Result<Vec<Episode>> {
    let ids: Vec<String> = eps
        .iter()
        .flat_map(|e| e.event_ids.iter().cloned())
        .collect();
    let m = app.db.call(move |c| marks(c, &ids)).await?;
    for ep in &mut eps {
        let ms: Vec<&(String, String, Option<i64>)> =
            ep.event_ids.iter().filter_map(|id| m.get(id)).collect();
        ep.status = if let Some(inc) = ms.iter().find_map(|x| x.2) {
            ReviewStatus::Escalated { incident: inc }
        } else if ms.len() == ep.event_ids.len() {
            ReviewStatus::Acknowledged {
                by: ms.first().map(|x| x.1.clone()).unwrap_or_default(),
            }
        } else {
            ReviewStatus::New
        };
    }
    Ok(eps)
}

fn purpose(user: &CurrentUser, reason: &str) -> Purpose {
    Purpose::new(user.name.clone(), reason)
}

/// Records a view of personal data.
pub async fn audit_view(
    app: &App,
    user: &CurrentUser,
    action: &str,
    target: &str,
    reason: &str,
    detail: &str,
) -> Result<()> {
    let now = app.clock.now_ms();
    let (actor, role, action, target, reason, detail) = (
        user.name.clone(),
        user.role,
        action.to_owned(),
        target.to_owned(),
        reason.to_owned(),
        detail.to_owned(),
    );
    app.db
        .call(move |c| {
            audit::append(
                c,
                now,
                &AuditEntry {
                    actor: &actor,
                    role: role.name(),
                    action: &action,
                    target: &target,
                    reason: &reason,
                    detail: &detail,
                },
            )?;
            Ok(())
        })
        .await
}

// ---- the queue ----

#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    /// Days back from now (1-90; default 7).
    days: Option<i64>,
    /// Lowest severity shown (default low).
    min: Option<String>,
    /// `open` (default: new episodes only) or `all`.
    show: Option<String>,
    /// Page of the list (100 episodes a page), from 1.
    page: Option<usize>,
}

/// Episodes on one page of the queue: a busy week is thousands of episodes, and
/// the page must stay small and quick.
const PAGE_SIZE: usize = 100;

pub async fn queue(app: &App, user: &CurrentUser, q: &QueueQuery) -> Result<Vec<Episode>> {
    Ok(queue_bounded(app, user, q).await?.0)
}

/// The queue, and whether the period held more flagged requests than
/// [`QUEUE_LIMIT`] (then only the most severe, newest first, were grouped).
async fn queue_bounded(
    app: &App,
    user: &CurrentUser,
    q: &QueueQuery,
) -> Result<(Vec<Episode>, bool)> {
    user.require(REVIEWERS, WHAT)?;
    let days = q.days.unwrap_or(7).clamp(1, 90);
    let now = app.clock.now();
    let mut fq = FlaggedQuery::new(Period::new(
        now - SignedDuration::from_hours(24 * days),
        now + SignedDuration::from_mins(1),
    ));
    fq.min_severity = q
        .min
        .as_deref()
        .and_then(Severity::from_name)
        .unwrap_or(Severity::Low);
    fq.limit = QUEUE_LIMIT;
    let reason = "review of flagged access";
    let events = app.store.flagged(&fq, &purpose(user, reason)).await?;
    let truncated = events.len() >= QUEUE_LIMIT;
    audit_view(
        app,
        user,
        "viewed flagged-access queue",
        &format!("flagged access, last {days} days"),
        reason,
        &format!("{} events", events.len()),
    )
    .await?;
    let mut eps = with_status(app, episodes(events)).await?;
    if q.show.as_deref() != Some("all") {
        eps.retain(|e| e.status == ReviewStatus::New);
    }
    // Unreviewed first, then the most severe, then the most recent.
    eps.sort_by(|a, b| {
        (a.status != ReviewStatus::New)
            .cmp(&(b.status != ReviewStatus::New))
            .then(b.severity.cmp(&a.severity))
            .then(b.last.cmp(&a.last))
    });
    Ok((eps, truncated))
}

async fn queue_api(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<QueueQuery>,
) -> Result<axum::Json<Vec<Episode>>> {
    Ok(axum::Json(queue(&app, &user, &q).await?))
}

fn status_badge(s: &ReviewStatus) -> Markup {
    html! { span class={ "badge st-" (s.name()) } { (s.name()) } }
}

async fn queue_page(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<QueueQuery>,
) -> Result<Markup> {
    let (eps, truncated) = queue_bounded(&app, &user, &q).await?;
    let page = q.page.unwrap_or(1).max(1);
    let skip = (page - 1).saturating_mul(PAGE_SIZE);
    let pages = eps.len().div_ceil(PAGE_SIZE).max(1);
    let link = |p: usize| {
        format!(
            "/review?days={}&min={}&show={}&page={p}",
            q.days.unwrap_or(7),
            q.min.as_deref().unwrap_or("low"),
            q.show.as_deref().unwrap_or("open")
        )
    };
    let tz = app.tz();
    let by_sev = |s: Severity| {
        eps.iter()
            .filter(|e| e.severity == s && e.status == ReviewStatus::New)
            .count()
    };
    let show_all = q.show.as_deref() == Some("all");
    Ok(ui::page(
        &app,
        &user,
        "Flagged access",
        "/review",
        html! {
            (ui::page_head("Flagged access", Some("Grouped per person and episode, most severe first. Open an episode to see the 30 minutes of browsing either side.")))
            div.stats {
                (ui::stat("Critical", &by_sev(Severity::Critical).to_string(), Some("to review")))
                (ui::stat("High", &by_sev(Severity::High).to_string(), Some("same day")))
                (ui::stat("Medium", &by_sev(Severity::Medium).to_string(), Some("this week")))
                (ui::stat("Low", &by_sev(Severity::Low).to_string(), Some("next review")))
            }
            form.filters method="get" action="/review" {
                div { label for="days" { "Period" } select #days name="days" {
                    @for (d, l) in [(1, "Last 24 hours"), (7, "Last 7 days"), (30, "Last 30 days"), (90, "Last 90 days")] {
                        option value=(d) selected[q.days.unwrap_or(7) == d] { (l) }
                    }
                } }
                div { label for="min" { "Severity at least" } select #min name="min" {
                    @for s in ["low", "medium", "high", "critical"] { option value=(s) selected[q.min.as_deref().unwrap_or("low") == s] { (s) } }
                } }
                div { label for="show" { "Show" } select #show name="show" {
                    option value="open" selected[!show_all] { "Needs review" }
                    option value="all" selected[show_all] { "All, including reviewed" }
                } }
                div { button.btn.secondary type="submit" { "Apply" } }
            }
            @if truncated {
                (ui::alert("warn", &format!("This period holds {} or more flagged requests: only the most severe (then the newest) are grouped here. Choose a shorter period or a higher severity to see the rest.", ui::thousands(QUEUE_LIMIT as u64))))
            }
            @if eps.is_empty() {
                (ui::empty("Nothing to review in this period. Flagged access will appear here within a second of happening."))
            } @else {
                div.table-wrap { table {
                    thead { tr { th { "Severity" } th { "Who" } th { "When" } th { "Categories" } th { "What" } th.num { "Requests" } th { "Status" } } }
                    tbody { @for e in eps.iter().skip(skip).take(PAGE_SIZE) { tr {
                        td { (ui::severity_badge(Some(e.severity))) }
                        td { a href=(e.href()) { strong { (e.label) } } br; span.small.muted { (e.role) @if let Some(d) = &e.device { " · " (d) } } }
                        td { (ui::when(e.first, &tz)) @if e.last != e.first { span.muted { "–" (ui::clock_time(e.last, &tz).get(..5).unwrap_or("")) } } }
                        td { @for c in &e.categories { span.chip { (c.name()) } } }
                        td.small {
                            @for t in &e.search_terms { div { "Search: “" (t) "”" } }
                            @for h in &e.hosts { div.mono { (h) } }
                        }
                        td.num { (e.events) @if e.blocked > 0 { br; span.small.muted { (e.blocked) " blocked" } } }
                        td { (status_badge(&e.status))
                            @if let ReviewStatus::Escalated { incident } = &e.status { br; a.small href={ "/incidents/" (incident) } { "incident" } }
                        }
                    } } }
                } }
                @if pages > 1 {
                    div.actions {
                        @if page > 1 { a.btn.secondary.small href=(link(page - 1)) { "← Previous" } }
                        span.muted.small { "Page " (page) " of " (pages) " · " (eps.len()) " episodes" }
                        @if page < pages { a.btn.secondary.small href=(link(page + 1)) { "Next →" } }
                    }
                }
            }
        },
    ))
}

// ---- one episode ----

#[derive(Debug, Deserialize)]
pub struct EpisodeRef {
    pub subject: String,
    pub from: i64,
    pub to: i64,
}

/// An episode with the browsing around it.
#[derive(Clone, Debug, Serialize)]
pub struct EpisodeView {
    pub episode: Episode,
    pub timeline: Vec<AccessEvent>,
    pub notes: Vec<Note>,
    pub context_minutes: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Note {
    pub time: Timestamp,
    pub actor: String,
    pub text: String,
}

fn window(r: &EpisodeRef) -> Result<(Timestamp, Timestamp)> {
    let from = Timestamp::from_millisecond(r.from)
        .map_err(|_| DashboardError::bad_request("bad `from`"))?;
    let to =
        Timestamp::from_millisecond(r.to).map_err(|_| DashboardError::bad_request("bad `to`"))?;
    if to < from || to.duration_since(from) > SignedDuration::from_hours(24) {
        return Err(DashboardError::bad_request(
            "an episode spans at most 24 hours",
        ));
    }
    Ok((from, to))
}

/// Loads an episode again from the store (the flagged events of the subject in
/// the window) with its surrounding browsing. Audited by the caller.
pub async fn load_episode(
    app: &App,
    user: &CurrentUser,
    r: &EpisodeRef,
    reason: &str,
) -> Result<EpisodeView> {
    user.require(REVIEWERS, WHAT)?;
    let subject = parse_subject(&r.subject)?;
    let (from, to) = window(r)?;
    let span = to.duration_since(from);
    let minutes = CONTEXT_MINUTES + span.as_mins() / 2 + 1;
    let around = from + span / 2;
    let timeline = app
        .store
        .timeline(&subject, around, minutes, &purpose(user, reason))
        .await?;
    let flagged: Vec<AccessEvent> = timeline
        .iter()
        .filter(|e| e.is_flagged() && e.time >= from && e.time <= to)
        .cloned()
        .collect();
    let mut eps = with_status(app, episodes(flagged)).await?;
    let episode = eps.drain(..).next().ok_or_else(|| {
        DashboardError::not_found(
            "no flagged access in that episode (it may have passed its retention)",
        )
    })?;
    let key = episode.key.clone();
    let subject_s = r.subject.clone();
    let notes = app
        .db
        .call(move |c| {
            let mut stmt = c.prepare_cached("SELECT time_ms, actor, text FROM notes WHERE subject = ?1 AND event_id = ?2 ORDER BY time_ms")?;
            let rows = stmt.query_map(params![subject_s, key], |r| Ok(Note { time: crate::state::ts(r.get(0)?), actor: r.get(1)?, text: r.get(2)? }))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    Ok(EpisodeView {
        episode,
        timeline,
        notes,
        context_minutes: CONTEXT_MINUTES,
    })
}

async fn episode_api(
    State(app): State<App>,
    user: CurrentUser,
    Query(r): Query<EpisodeRef>,
) -> Result<axum::Json<EpisodeView>> {
    let reason = "review of a flagged episode";
    let v = load_episode(&app, &user, &r, reason).await?;
    audit_view(
        &app,
        &user,
        "viewed flagged episode",
        &subject_target(&r.subject),
        reason,
        &format!("{} events around {}", v.timeline.len(), v.episode.first),
    )
    .await?;
    Ok(axum::Json(v))
}

pub fn subject_target(subject: &str) -> String {
    match parse_subject(subject) {
        Ok(Subject::User(u)) => format!("user {u}"),
        Ok(Subject::Client(ip)) => format!("client {ip}"),
        Err(_) => subject.to_owned(),
    }
}

/// The timeline table, shared with incidents and the timeline page.
pub fn timeline_table(
    events: &[AccessEvent],
    tz: &jiff::tz::TimeZone,
    focus: Option<(Timestamp, Timestamp)>,
) -> Markup {
    html! {
        div.table-wrap { table {
            thead { tr { th { "Time" } th { "Verdict" } th { "Host" } th { "Path / search" } th { "Categories" } th { "Severity" } th { "Why" } } }
            tbody { @for e in events.iter().take(ROWS_SHOWN) {
                @let cls = if e.is_flagged() { "flagged" } else if e.action == Action::Block { "blocked" } else { "" };
                @let in_focus = focus.is_some_and(|(a, b)| e.time >= a && e.time <= b && e.is_flagged());
                tr class={ (cls) @if in_focus { " focus" } } {
                    td.mono { (ui::clock_time(e.time, tz)) }
                    td { (ui::action_badge(e.action)) }
                    td.mono { (e.host) }
                    td.small { @if !e.search_terms.is_empty() { "Search: “" (e.search_terms) "”" } @else { span.mono { (e.path.chars().take(80).collect::<String>()) } } }
                    td { @for c in e.categories.iter() { span.chip { (c.name()) } } }
                    td { @if e.severity.is_some() { (ui::severity_badge(e.severity)) } }
                    td.small.muted { (e.rule) }
                }
            } }
        } }
        @if events.len() > ROWS_SHOWN { p.muted { "Showing the first " (ROWS_SHOWN) " of " (events.len()) " requests; export for the rest." } }
    }
}

async fn episode_page(
    State(app): State<App>,
    user: CurrentUser,
    Query(r): Query<EpisodeRef>,
) -> Result<Markup> {
    let reason = "review of a flagged episode";
    let v = load_episode(&app, &user, &r, reason).await?;
    audit_view(
        &app,
        &user,
        "viewed flagged episode",
        &subject_target(&r.subject),
        reason,
        &format!("{} events around {}", v.timeline.len(), v.episode.first),
    )
    .await?;
    let tz = app.tz();
    let e = &v.episode;
    let hidden = html! {
        (ui::csrf(&user))
        input type="hidden" name="subject" value=(r.subject);
        input type="hidden" name="from" value=(r.from);
        input type="hidden" name="to" value=(r.to);
    };
    let day = e
        .first
        .to_zoned(tz.clone())
        .strftime("%Y-%m-%d")
        .to_string();
    Ok(ui::page(
        &app,
        &user,
        &format!("Episode: {}", e.label),
        "/review",
        html! {
            (ui::page_head(&e.label, Some(&format!("{} · {} – {}", ui::when(e.first, &tz), e.role, ui::clock_time(e.last, &tz)))))
            div.grid.grid-2 {
                div.card {
                    h2 { "Episode" }
                    dl.kv {
                        dt { "Severity" } dd { (ui::severity_badge(Some(e.severity))) }
                        dt { "Status" } dd { (status_badge(&e.status))
                            @if let ReviewStatus::Escalated { incident } = &e.status { " " a href={ "/incidents/" (incident) } { "open the incident" } }
                            @if let ReviewStatus::Acknowledged { by } = &e.status { span.muted { " by " (by) } } }
                        dt { "Who" } dd { (e.label) @if let Some(d) = &e.device { " on " span.mono { (d) } } }
                        dt { "Role / school" } dd { (e.role) " · " (e.school) }
                        dt { "Categories" } dd { @for c in &e.categories { span.chip { (c.label()) } } }
                        dt { "Flagged requests" } dd { (e.events) }
                        @if !e.search_terms.is_empty() { dt { "Searches" } dd { @for t in &e.search_terms { div { "“" (t) "”" } } } }
                    }
                    p.small { a href={ "/timeline?subject=" (ui::url_encode(&r.subject)) "&date=" (day) } { "Whole day's timeline for " (e.label) } }
                }
                div.card {
                    h2 { "Action" }
                    @if e.status == ReviewStatus::New {
                        form.inline method="post" action="/review/ack" { (hidden) button.btn.secondary type="submit" { "Acknowledge — no further action" } }
                    }
                    @if !matches!(e.status, ReviewStatus::Escalated { .. }) {
                        form method="post" action="/review/escalate" {
                            (hidden)
                            label for="summary" { "Escalate to the e-Safety Incident Log" }
                            textarea #summary name="summary" required placeholder="What happened and why it is a concern" {}
                            div.actions { button.btn.danger type="submit" { "Open incident" } }
                        }
                    }
                    form method="post" action="/review/note" {
                        (hidden)
                        label for="note" { "Add a note" }
                        textarea #note name="text" required placeholder="e.g. Spoke to form tutor; pupil is already supported by pastoral team" {}
                        div.actions { button.btn.secondary type="submit" { "Add note" } }
                    }
                    @for n in &v.notes {
                        div.small.note { strong { (n.actor) } span.muted { " · " (ui::when(n.time, &tz)) } div { (n.text) } }
                    }
                }
            }
            h2 { "Browsing " (v.context_minutes) " minutes either side" }
            (timeline_table(&v.timeline, &tz, Some((e.first, e.last))))
        },
    ))
}

// ---- actions ----

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    subject: String,
    from: i64,
    to: i64,
    text: Option<String>,
    summary: Option<String>,
}

impl ActionForm {
    fn episode(&self) -> EpisodeRef {
        EpisodeRef {
            subject: self.subject.clone(),
            from: self.from,
            to: self.to,
        }
    }
}

async fn acknowledge(app: &App, user: &CurrentUser, f: &ActionForm) -> Result<()> {
    let v = load_episode(app, user, &f.episode(), "acknowledging flagged access").await?;
    let now = app.clock.now_ms();
    let (ids, actor, role, target) = (
        v.episode.event_ids.clone(),
        user.name.clone(),
        user.role,
        subject_target(&f.subject),
    );
    app.db
        .call(move |c| {
            let tx = c.transaction()?;
            for id in &ids {
                tx.execute("INSERT OR IGNORE INTO reviews (event_id, status, actor, time_ms) VALUES (?1, 'acknowledged', ?2, ?3)", params![id, actor, now])?;
            }
            let detail = format!("{} flagged events", ids.len());
            audit::append(&tx, now, &AuditEntry { actor: &actor, role: role.name(), action: "acknowledged flagged access", target: &target, reason: "no further action", detail: &detail })?;
            tx.commit()?;
            Ok(())
        })
        .await
}

async fn add_note(app: &App, user: &CurrentUser, f: &ActionForm) -> Result<()> {
    let text = non_empty(&f.text)
        .ok_or_else(|| DashboardError::bad_request("the note is empty"))?
        .to_owned();
    if text.len() > 4_000 {
        return Err(DashboardError::bad_request(
            "keep a note under 4000 characters",
        ));
    }
    let v = load_episode(app, user, &f.episode(), "adding a note to flagged access").await?;
    let now = app.clock.now_ms();
    let (key, actor, role, subject, target) = (
        v.episode.key.clone(),
        user.name.clone(),
        user.role,
        f.subject.clone(),
        subject_target(&f.subject),
    );
    app.db
        .call(move |c| {
            let tx = c.transaction()?;
            tx.execute("INSERT INTO notes (subject, event_id, actor, time_ms, text) VALUES (?1, ?2, ?3, ?4, ?5)", params![subject, key, actor, now, text])?;
            audit::append(&tx, now, &AuditEntry { actor: &actor, role: role.name(), action: "added note", target: &target, reason: "", detail: &text })?;
            tx.commit()?;
            Ok(())
        })
        .await
}

async fn escalate(app: &App, user: &CurrentUser, f: &ActionForm) -> Result<i64> {
    let summary = non_empty(&f.summary)
        .ok_or_else(|| {
            DashboardError::bad_request("say what happened (the incident summary is empty)")
        })?
        .to_owned();
    let v = load_episode(
        app,
        user,
        &f.episode(),
        "escalating flagged access to an incident",
    )
    .await?;
    if let ReviewStatus::Escalated { incident } = v.episode.status {
        return Err(DashboardError::Conflict(format!(
            "this episode is already incident {incident}"
        )));
    }
    crate::incidents::open(app, user, &v, &summary).await
}

async fn ack_form(
    State(app): State<App>,
    user: CurrentUser,
    Form(f): Form<ActionForm>,
) -> Result<Response> {
    acknowledge(&app, &user, &f).await?;
    Ok(see_other("/review"))
}

async fn note_form(
    State(app): State<App>,
    user: CurrentUser,
    Form(f): Form<ActionForm>,
) -> Result<Response> {
    add_note(&app, &user, &f).await?;
    Ok(see_other(&format!(
        "/review/episode?subject={}&from={}&to={}",
        ui::url_encode(&f.subject),
        f.from,
        f.to
    )))
}

async fn escalate_form(
    State(app): State<App>,
    user: CurrentUser,
    Form(f): Form<ActionForm>,
) -> Result<Response> {
    let id = escalate(&app, &user, &f).await?;
    Ok(see_other(&format!("/incidents/{id}")))
}

async fn ack_api(
    State(app): State<App>,
    user: CurrentUser,
    Json(f): Json<ActionForm>,
) -> Result<http::StatusCode> {
    acknowledge(&app, &user, &f).await?;
    Ok(http::StatusCode::NO_CONTENT)
}

async fn note_api(
    State(app): State<App>,
    user: CurrentUser,
    Json(f): Json<ActionForm>,
) -> Result<http::StatusCode> {
    add_note(&app, &user, &f).await?;
    Ok(http::StatusCode::NO_CONTENT)
}

async fn escalate_api(
    State(app): State<App>,
    user: CurrentUser,
    Json(f): Json<ActionForm>,
) -> Result<axum::Json<serde_json::Value>> {
    let id = escalate(&app, &user, &f).await?;
    Ok(axum::Json(serde_json::json!({ "incident": id })))
}

// ---- timeline and search ----

#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    /// `user:NAME` / `client:IP`, or the plain fields below.
    subject: Option<String>,
    user: Option<String>,
    client: Option<String>,
    host: Option<String>,
    category: Option<String>,
    /// `YYYY-MM-DD` (school time); a timeline shows that day.
    date: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// Why the lead is looking (kept in the audit log).
    reason: Option<String>,
}

impl SearchQuery {
    fn subject(&self) -> Result<Option<Subject>> {
        if let Some(s) = non_empty(&self.subject) {
            return parse_subject(s).map(Some);
        }
        if let Some(u) = non_empty(&self.user) {
            return Ok(Some(Subject::User(u.to_owned())));
        }
        if let Some(c) = non_empty(&self.client) {
            return c
                .parse()
                .map(|ip| Some(Subject::Client(ip)))
                .map_err(|_| DashboardError::bad_request(format!("`{c}` is not an IP address")));
        }
        Ok(None)
    }

    fn reason(&self) -> String {
        non_empty(&self.reason)
            .unwrap_or("safeguarding review")
            .chars()
            .take(300)
            .collect()
    }
}

fn day_bounds(app: &App, date: Option<&str>) -> Result<(Timestamp, Timestamp)> {
    let tz = app.tz();
    let d: jiff::civil::Date = match date.map(str::trim).filter(|d| !d.is_empty()) {
        Some(s) => s.parse().map_err(|_| {
            DashboardError::bad_request(format!("`{s}` is not a date (YYYY-MM-DD)"))
        })?,
        None => app.clock.now().to_zoned(tz.clone()).date(),
    };
    let start = d
        .to_zoned(tz.clone())
        .map_err(|e| DashboardError::bad_request(e.to_string()))?
        .timestamp();
    let end = d
        .tomorrow()
        .map_err(|e| DashboardError::bad_request(e.to_string()))?
        .to_zoned(tz)
        .map_err(|e| DashboardError::bad_request(e.to_string()))?
        .timestamp();
    Ok((start, end))
}

/// One person's or device's browsing on one day.
pub async fn timeline(
    app: &App,
    user: &CurrentUser,
    q: &SearchQuery,
) -> Result<(Subject, Vec<AccessEvent>)> {
    user.require(REVIEWERS, "timelines of a person's browsing")?;
    let subject = q
        .subject()?
        .ok_or_else(|| DashboardError::bad_request("give a user or a device address"))?;
    let (start, end) = day_bounds(app, q.date.as_deref())?;
    let half = end.duration_since(start) / 2;
    let reason = q.reason();
    let mut events = app
        .store
        .timeline(
            &subject,
            start + half,
            half.as_mins(),
            &purpose(user, &reason),
        )
        .await?;
    events.retain(|e| e.time >= start && e.time < end);
    audit_view(
        app,
        user,
        "viewed timeline",
        &subject.to_string(),
        &reason,
        &format!("day starting {start}"),
    )
    .await?;
    Ok((subject, events))
}

async fn timeline_api(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<SearchQuery>,
) -> Result<axum::Json<Vec<AccessEvent>>> {
    Ok(axum::Json(timeline(&app, &user, &q).await?.1))
}

async fn timeline_page(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<SearchQuery>,
) -> Result<Markup> {
    let (subject, events) = timeline(&app, &user, &q).await?;
    let tz = app.tz();
    let flagged = events.iter().filter(|e| e.is_flagged()).count();
    let blocked = events.iter().filter(|e| e.action == Action::Block).count();
    let (start, _) = day_bounds(&app, q.date.as_deref())?;
    let day = start
        .to_zoned(tz.clone())
        .strftime("%A %-d %B %Y")
        .to_string();
    Ok(ui::page(
        &app,
        &user,
        &format!("Timeline: {}", subject_label(&subject)),
        "/search",
        html! {
            (ui::page_head(&subject_label(&subject), Some(&day)))
            form.filters method="get" action="/timeline" {
                input type="hidden" name="subject" value=(match &subject { Subject::User(u) => format!("user:{u}"), Subject::Client(ip) => format!("client:{ip}") });
                div { label for="date" { "Day" } input #date type="date" name="date" value=(start.to_zoned(tz.clone()).strftime("%Y-%m-%d").to_string()); }
                div { label for="reason" { "Why you are looking" } input #reason type="text" name="reason" value=(q.reason()); }
                div { button.btn.secondary type="submit" { "Show" } }
            }
            div.stats {
                (ui::stat("Requests", &ui::thousands(events.len() as u64), None))
                (ui::stat("Blocked", &blocked.to_string(), None))
                (ui::stat("Flagged", &flagged.to_string(), None))
            }
            @if events.is_empty() { (ui::empty("No browsing recorded for this day.")) } @else { (timeline_table(&events, &tz, None)) }
        },
    ))
}

/// Search results: flagged events by host, category and dates, or one person's
/// browsing filtered the same way.
pub async fn search(app: &App, user: &CurrentUser, q: &SearchQuery) -> Result<Vec<AccessEvent>> {
    user.require(REVIEWERS, "search of browsing records")?;
    let tz = app.tz();
    let from = match non_empty(&q.from) {
        Some(f) => day_bounds(app, Some(f))?.0,
        None => app.clock.now() - SignedDuration::from_hours(24 * 7),
    };
    let to = match non_empty(&q.to) {
        Some(t) => day_bounds(app, Some(t))?.1,
        None => app.clock.now() + SignedDuration::from_mins(1),
    };
    if to <= from {
        return Err(DashboardError::bad_request(
            "the end date is before the start date",
        ));
    }
    let category = match non_empty(&q.category) {
        Some(c) => Some(
            Category::from_name(c)
                .ok_or_else(|| DashboardError::bad_request(format!("unknown category `{c}`")))?,
        ),
        None => None,
    };
    let host = non_empty(&q.host).map(|h| h.to_ascii_lowercase());
    let reason = q.reason();
    let p = purpose(user, &reason);
    let subject = q.subject()?;
    let events = match &subject {
        Some(s) => {
            if to.duration_since(from) > SignedDuration::from_hours(24 * 31) {
                return Err(DashboardError::bad_request(
                    "search one person's browsing over at most 31 days",
                ));
            }
            let half = to.duration_since(from) / 2;
            let mut events = app
                .store
                .timeline(s, from + half, half.as_mins() + 1, &p)
                .await?;
            // A window around the middle, oldest first: keep the dates and the
            // filters asked for, newest first.
            events.retain(|e| {
                e.time >= from
                    && e.time < to
                    && host.as_deref().is_none_or(|h| e.host.contains(h))
                    && category.is_none_or(|c| e.categories.contains(c))
            });
            events.sort_by_key(|e| std::cmp::Reverse(e.time));
            events
        }
        // The store filters and orders (newest first) itself.
        None => {
            let mut q = EventSearch::new(Period::new(from, to));
            q.host = host.clone();
            q.category = category;
            q.limit = SEARCH_LIMIT;
            app.store.search(&q, &p).await?
        }
    };
    let target = subject
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_else(|| "everyone's browsing".into());
    let detail = format!(
        "host={} category={} {}..{} -> {} results",
        host.as_deref().unwrap_or("*"),
        category.map(|c| c.name()).unwrap_or("*"),
        ui::date_time(from, &tz),
        ui::date_time(to, &tz),
        events.len()
    );
    audit_view(
        app,
        user,
        "searched browsing records",
        &target,
        &reason,
        &detail,
    )
    .await?;
    Ok(events)
}

async fn search_api(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<SearchQuery>,
) -> Result<axum::Json<Vec<AccessEvent>>> {
    Ok(axum::Json(search(&app, &user, &q).await?))
}

async fn search_page(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<SearchQuery>,
) -> Result<Markup> {
    user.require(REVIEWERS, "search of browsing records")?;
    let asked = [
        &q.subject,
        &q.user,
        &q.client,
        &q.host,
        &q.category,
        &q.from,
        &q.to,
    ]
    .iter()
    .any(|f| non_empty(f).is_some());
    let results = if asked {
        Some(search(&app, &user, &q).await?)
    } else {
        None
    };
    let tz = app.tz();
    let people: HashSet<String> = results.iter().flatten().map(subject_key).collect();
    Ok(ui::page(
        &app,
        &user,
        "Search",
        "/search",
        html! {
            (ui::page_head("Search", Some("Flagged access by host, category and date; or one person's or device's browsing. Every search is recorded in the audit log.")))
            form.card method="get" action="/search" {
                div.form-grid {
                    div { label for="user" { "User" } input #user type="text" name="user" value=[non_empty(&q.user)] placeholder="j.smith"; }
                    div { label for="client" { "Device address" } input #client type="text" name="client" value=[non_empty(&q.client)] placeholder="10.20.4.17"; }
                    div { label for="host" { "Host contains" } input #host type="text" name="host" value=[non_empty(&q.host)]; }
                    div { label for="category" { "Category" } select #category name="category" {
                        option value="" { "any" }
                        @for c in Category::ALL { option value=(c.name()) selected[q.category.as_deref() == Some(c.name())] { (c.label()) } }
                    } }
                    div { label for="from" { "From" } input #from type="date" name="from" value=[non_empty(&q.from)]; }
                    div { label for="to" { "To" } input #to type="date" name="to" value=[non_empty(&q.to)]; }
                }
                label for="reason" { "Why you are looking" }
                input #reason type="text" name="reason" value=(q.reason());
                div.actions { button.btn type="submit" { "Search" } span.muted.small { "Without a user or device, everyone's browsing is searched, newest first (at most " (SEARCH_LIMIT) " results). Default: the last 7 days." } }
            }
            @if let Some(r) = &results {
                p.muted {
                    (r.len()) " results · " (people.len()) " people or devices"
                    @if r.len() == SEARCH_LIMIT { " · the newest " (SEARCH_LIMIT) " only: narrow the dates or the host" }
                }
                @if r.is_empty() { (ui::empty("Nothing matched.")) } @else {
                    div.table-wrap { table {
                        thead { tr { th { "When" } th { "Who" } th { "Verdict" } th { "Host" } th { "Categories" } th { "Severity" } } }
                        tbody { @for e in r.iter().take(ROWS_SHOWN) {
                            @let s = subject_key(e);
                            tr {
                                td { (ui::when(e.time, &tz)) }
                                td { a href={ "/timeline?subject=" (ui::url_encode(&s)) "&date=" (e.time.to_zoned(tz.clone()).strftime("%Y-%m-%d")) } { (e.user.clone().unwrap_or_else(|| e.client_ip.to_string())) } }
                                td { (ui::action_badge(e.action)) }
                                td.mono { (e.host) @if !e.search_terms.is_empty() { br; span.small { "Search: “" (e.search_terms) "”" } } }
                                td { @for c in e.categories.iter() { span.chip { (c.name()) } } }
                                td { @if e.severity.is_some() { (ui::severity_badge(e.severity)) } }
                            }
                        } }
                    } }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use schoolgate_events::Source;

    fn ev(user: &str, mins: i64, sev: Severity) -> AccessEvent {
        AccessEvent::new(Source::Proxy, [10, 0, 0, 1].into(), "x.example")
            .at(Timestamp::from_second(1_700_000_000).expect("ts")
                + SignedDuration::from_mins(mins))
            .with_user(user)
            .with_action(Action::Flag)
            .with_severity(Some(sev))
    }

    #[test]
    fn events_group_per_person_and_split_on_a_half_hour_gap() {
        let eps = episodes(vec![
            ev("a", 0, Severity::Low),
            ev("b", 1, Severity::High),
            ev("a", 20, Severity::High),
            ev("a", 49, Severity::Medium),
            ev("a", 120, Severity::Low),
        ]);
        let a: Vec<(usize, Severity)> = eps
            .iter()
            .filter(|e| e.subject == "user:a")
            .map(|e| (e.events, e.severity))
            .collect();
        assert_eq!(a, [(3, Severity::High), (1, Severity::Low)]);
        assert_eq!(eps.iter().filter(|e| e.subject == "user:b").count(), 1);
    }
}
