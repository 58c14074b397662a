//! The e-Safety Incident Log: incidents opened from flagged episodes, with the
//! evidence copied in at the moment of escalation (it must outlive the event
//! store's retention and cannot change afterwards), status, actions taken, people
//! informed and closure; CSV export and a printable page.
//!
//! The e-safety lead sees everything. The headteacher sees the log (reference,
//! dates, severity, status) and the full record of an incident only when the lead
//! has shared it: "no raw browsing of named pupils unless an incident grants it".

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header;
use maud::{DOCTYPE, Markup, html};
use rusqlite::{Connection, OptionalExtension, params};
use schoolgate_events::AccessEvent;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::audit::{self, AuditEntry};
use crate::auth::{CurrentUser, Role};
use crate::error::{DashboardError, Result};
use crate::review::{self, EpisodeView};
use crate::state::ts;
use crate::ui;
use crate::web::{Form, Json, Query, non_empty, see_other};

const READERS: &[Role] = &[Role::EsafetyLead, Role::Headteacher];
const WRITERS: &[Role] = &[Role::EsafetyLead];

pub fn routes() -> Router<App> {
    Router::new()
        .route("/incidents", get(list_page))
        .route("/api/incidents", get(list_api))
        .route("/incidents/{id}", get(detail_page).post(update_form))
        .route("/api/incidents/{id}", get(detail_api).post(update_api))
        .route("/incidents/{id}/export.csv", get(export_csv))
        .route("/incidents/{id}/print", get(print_page))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    Investigating,
    Closed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Investigating => "investigating",
            Status::Closed => "closed",
        }
    }

    fn parse(s: &str) -> Result<Status> {
        match s {
            "open" => Ok(Status::Open),
            "investigating" => Ok(Status::Investigating),
            "closed" => Ok(Status::Closed),
            o => Err(DashboardError::bad_request(format!(
                "`{o}` is not a status (open, investigating, closed)"
            ))),
        }
    }
}

/// One incident as the log lists it. `subject` is `None` where the viewer may
/// not see who it is about.
#[derive(Clone, Debug, Serialize)]
pub struct Incident {
    pub id: i64,
    pub reference: String,
    pub opened: jiff::Timestamp,
    pub opened_by: String,
    pub subject: Option<String>,
    pub school: String,
    pub severity: String,
    pub categories: String,
    pub summary: Option<String>,
    pub status: Status,
    pub actions_taken: String,
    pub people_informed: String,
    pub closure: String,
    pub closed: Option<jiff::Timestamp>,
    pub closed_by: Option<String>,
    pub shared_with_head: bool,
    pub episode_from: jiff::Timestamp,
    pub episode_to: jiff::Timestamp,
}

#[derive(Clone, Debug, Serialize)]
pub struct Update {
    pub time: jiff::Timestamp,
    pub actor: String,
    pub text: String,
}

const COLS: &str = "id, reference, opened_ms, opened_by, subject, school, severity, categories, summary, status, \
    actions_taken, people_informed, closure, closed_ms, closed_by, shared_with_head, episode_from_ms, episode_to_ms";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Incident> {
    let status: String = r.get(9)?;
    Ok(Incident {
        id: r.get(0)?,
        reference: r.get(1)?,
        opened: ts(r.get(2)?),
        opened_by: r.get(3)?,
        subject: Some(r.get(4)?),
        school: r.get(5)?,
        severity: r.get(6)?,
        categories: r.get(7)?,
        summary: Some(r.get(8)?),
        status: Status::parse(&status).unwrap_or(Status::Open),
        actions_taken: r.get(10)?,
        people_informed: r.get(11)?,
        closure: r.get(12)?,
        closed: r.get::<_, Option<i64>>(13)?.map(ts),
        closed_by: r.get(14)?,
        shared_with_head: r.get(15)?,
        episode_from: ts(r.get(16)?),
        episode_to: ts(r.get(17)?),
    })
}

/// What the viewer may see of an incident in the list.
fn redact(mut i: Incident, user: &CurrentUser) -> Incident {
    if user.role != Role::EsafetyLead && !i.shared_with_head {
        i.subject = None;
        i.summary = None;
        i.actions_taken.clear();
        i.people_informed.clear();
        i.closure.clear();
    }
    i
}

pub fn list(conn: &Connection, status: Option<Status>) -> Result<Vec<Incident>> {
    let sql = format!(
        "SELECT {COLS} FROM incidents WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC LIMIT 1000"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([status.map(Status::name)], row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The weekly summary's incident figures for `[from, to)`: opened in it, still
/// open at its end, closed in it; of one school's incidents with `school`.
pub fn week_figures(
    conn: &Connection,
    from_ms: i64,
    to_ms: i64,
    school: Option<&str>,
) -> Result<(u64, u64, u64)> {
    let q = |condition: &str| -> Result<u64> {
        let sql = format!(
            "SELECT COUNT(*) FROM incidents WHERE ({condition}) AND (?3 IS NULL OR school = ?3)"
        );
        Ok(conn
            .query_row(&sql, params![from_ms, to_ms, school], |r| {
                r.get::<_, i64>(0)
            })?
            .max(0) as u64)
    };
    Ok((
        q("opened_ms >= ?1 AND opened_ms < ?2")?,
        q("opened_ms < ?2 AND (closed_ms IS NULL OR closed_ms >= ?2) AND ?1 = ?1")?,
        q("closed_ms >= ?1 AND closed_ms < ?2")?,
    ))
}

/// An incident, its updates and its evidence.
type Record = (Incident, Vec<Update>, Vec<AccessEvent>);

fn fetch(conn: &Connection, id: i64) -> Result<Option<Record>> {
    let sql = format!("SELECT {COLS} FROM incidents WHERE id = ?1");
    let Some(i) = conn.query_row(&sql, [id], row).optional()? else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT time_ms, actor, text FROM incident_updates WHERE incident_id = ?1 ORDER BY id",
    )?;
    let updates = stmt
        .query_map([id], |r| {
            Ok(Update {
                time: ts(r.get(0)?),
                actor: r.get(1)?,
                text: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT json FROM incident_evidence WHERE incident_id = ?1 ORDER BY time_ms, event_id",
    )?;
    let evidence = stmt
        .query_map([id], |r| r.get::<_, String>(0))?
        .filter_map(|j| {
            j.ok()
                .and_then(|j| serde_json::from_str::<AccessEvent>(&j).ok())
        })
        .collect();
    Ok(Some((i, updates, evidence)))
}

/// Opens an incident from an episode, copying its timeline in as evidence and
/// marking the episode's flagged events escalated. Returns the incident id.
pub async fn open(app: &App, user: &CurrentUser, v: &EpisodeView, summary: &str) -> Result<i64> {
    user.require(WRITERS, "the e-Safety Incident Log")?;
    if summary.len() > 8_000 {
        return Err(DashboardError::bad_request(
            "keep the summary under 8000 characters",
        ));
    }
    let now = app.clock.now();
    let year = now.to_zoned(app.tz()).year();
    let e = &v.episode;
    let evidence: Vec<(String, i64, bool, String)> = v
        .timeline
        .iter()
        .map(|x| {
            (
                x.id.to_string(),
                x.time_ms(),
                x.is_flagged(),
                serde_json::to_string(x).unwrap_or_default(),
            )
        })
        .collect();
    let cats = e
        .categories
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(", ");
    let (actor, role, subject, school, sev, summary) = (
        user.name.clone(),
        user.role,
        e.subject.clone(),
        e.school.clone(),
        e.severity.name().to_owned(),
        summary.to_owned(),
    );
    let (from, to, ids, now_ms) = (
        e.first.as_millisecond(),
        e.last.as_millisecond(),
        e.event_ids.clone(),
        now.as_millisecond(),
    );
    app.db
        .call(move |c| {
            let tx = c.transaction()?;
            let n: i64 = tx.query_row("SELECT COUNT(*) FROM incidents WHERE reference LIKE ?1", [format!("INC-{year}-%")], |r| r.get(0))?;
            let reference = format!("INC-{year}-{:04}", n + 1);
            tx.execute(
                "INSERT INTO incidents (reference, opened_ms, opened_by, subject, school, severity, categories, summary, status, episode_from_ms, episode_to_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9, ?10)",
                params![reference, now_ms, actor, subject, school, sev, cats, summary, from, to],
            )?;
            let id = tx.last_insert_rowid();
            for (eid, t, flagged, json) in &evidence {
                tx.execute(
                    "INSERT OR IGNORE INTO incident_evidence (incident_id, event_id, time_ms, flagged, json) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, eid, t, flagged, json],
                )?;
            }
            for eid in &ids {
                tx.execute(
                    "INSERT INTO reviews (event_id, status, actor, time_ms, incident_id) VALUES (?1, 'escalated', ?2, ?3, ?4) \
                     ON CONFLICT(event_id) DO UPDATE SET status = 'escalated', actor = ?2, time_ms = ?3, incident_id = ?4",
                    params![eid, actor, now_ms, id],
                )?;
            }
            tx.execute("INSERT INTO incident_updates (incident_id, time_ms, actor, text) VALUES (?1, ?2, ?3, ?4)", params![id, now_ms, actor, format!("Opened from flagged access: {summary}")])?;
            let target = format!("incident {reference} ({})", review::subject_target(&subject));
            let detail = format!("{} evidence events", evidence.len());
            audit::append(&tx, now_ms, &AuditEntry { actor: &actor, role: role.name(), action: "opened incident", target: &target, reason: &summary, detail: &detail })?;
            tx.commit()?;
            Ok(id)
        })
        .await
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    status: Option<String>,
}

async fn load_list(app: &App, user: &CurrentUser, q: &ListQuery) -> Result<Vec<Incident>> {
    user.require(READERS, "the e-Safety Incident Log")?;
    let status = match non_empty(&q.status) {
        Some(s) => Some(Status::parse(s)?),
        None => None,
    };
    let list = app.db.call(move |c| list(c, status)).await?;
    let u = user.clone();
    Ok(list.into_iter().map(|i| redact(i, &u)).collect())
}

async fn list_api(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Vec<Incident>>> {
    Ok(axum::Json(load_list(&app, &user, &q).await?))
}

fn status_badge(s: Status) -> Markup {
    html! { span class={ "badge st-" (s.name()) } { (s.name()) } }
}

async fn list_page(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<ListQuery>,
) -> Result<Markup> {
    let list = load_list(&app, &user, &q).await?;
    let tz = app.tz();
    let open = list.iter().filter(|i| i.status != Status::Closed).count();
    Ok(ui::page(
        &app,
        &user,
        "Incident log",
        "/incidents",
        html! {
            (ui::page_head("e-Safety Incident Log", Some("Incidents escalated from flagged access, with actions taken, people informed and closure.")))
            div.stats {
                (ui::stat("Open", &open.to_string(), None))
                (ui::stat("Closed", &(list.len() - open).to_string(), None))
            }
            form.filters method="get" action="/incidents" {
                div { label for="status" { "Status" } select #status name="status" {
                    option value="" { "all" }
                    @for s in ["open", "investigating", "closed"] { option value=(s) selected[q.status.as_deref() == Some(s)] { (s) } }
                } }
                div { button.btn.secondary type="submit" { "Filter" } }
            }
            @if list.is_empty() { (ui::empty("No incidents.")) } @else {
                div.table-wrap { table {
                    thead { tr { th { "Reference" } th { "Opened" } th { "About" } th { "Severity" } th { "Categories" } th { "Status" } th { "Closed" } } }
                    tbody { @for i in &list { tr {
                        td { @if i.subject.is_some() { a href={ "/incidents/" (i.id) } { strong { (i.reference) } } } @else { strong { (i.reference) } } }
                        td { (ui::when(i.opened, &tz)) br; span.small.muted { "by " (i.opened_by) } }
                        td { @match &i.subject { Some(s) => (review::subject_target(s)), None => span.muted.small { "not shared with you" } } }
                        td { span class={ "badge sev-" (i.severity) } { (i.severity) } }
                        td { (i.categories) }
                        td { (status_badge(i.status)) }
                        td { @if let Some(c) = i.closed { (ui::when(c, &tz)) } }
                    } } }
                } }
            }
        },
    ))
}

/// An incident with its evidence, for someone allowed to see it. Audited.
async fn load(
    app: &App,
    user: &CurrentUser,
    id: i64,
    what: &str,
) -> Result<(Incident, Vec<Update>, Vec<AccessEvent>)> {
    user.require(READERS, "the e-Safety Incident Log")?;
    let (i, updates, evidence) = app
        .db
        .call(move |c| fetch(c, id))
        .await?
        .ok_or_else(|| DashboardError::not_found(format!("incident {id}")))?;
    if user.role == Role::Headteacher && !i.shared_with_head {
        return Err(DashboardError::forbidden(format!(
            "incident {} has not been shared with the headteacher by the e-safety lead; the log shows its status",
            i.reference
        )));
    }
    let target = format!(
        "incident {} ({})",
        i.reference,
        review::subject_target(i.subject.as_deref().unwrap_or(""))
    );
    review::audit_view(
        app,
        user,
        what,
        &target,
        "incident record",
        &format!("{} evidence events", evidence.len()),
    )
    .await?;
    Ok((i, updates, evidence))
}

async fn detail_api(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<axum::Json<serde_json::Value>> {
    let (i, updates, evidence) = load(&app, &user, id, "viewed incident").await?;
    Ok(axum::Json(
        serde_json::json!({ "incident": i, "updates": updates, "evidence": evidence }),
    ))
}

fn record(i: &Incident, tz: &jiff::tz::TimeZone) -> Markup {
    html! {
        dl.kv {
            dt { "Reference" } dd { strong { (i.reference) } }
            dt { "Status" } dd { (status_badge(i.status)) }
            dt { "About" } dd { (review::subject_target(i.subject.as_deref().unwrap_or(""))) @if !i.school.is_empty() { " · " (i.school) } }
            dt { "Severity" } dd { span class={ "badge sev-" (i.severity) } { (i.severity) } }
            dt { "Categories" } dd { (i.categories) }
            dt { "Episode" } dd { (ui::date_time(i.episode_from, tz)) " – " (ui::clock_time(i.episode_to, tz)) }
            dt { "Opened" } dd { (ui::date_time(i.opened, tz)) " by " (i.opened_by) }
            @if let Some(c) = i.closed { dt { "Closed" } dd { (ui::date_time(c, tz)) " by " (i.closed_by.as_deref().unwrap_or("")) } }
            dt { "Summary" } dd { (i.summary.as_deref().unwrap_or("")) }
            dt { "Actions taken" } dd { (i.actions_taken) }
            dt { "People informed" } dd { (i.people_informed) }
            dt { "Closure" } dd { (i.closure) }
        }
    }
}

async fn detail_page(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Markup> {
    let (i, updates, evidence) = load(&app, &user, id, "viewed incident").await?;
    let tz = app.tz();
    let can_edit = user.role == Role::EsafetyLead;
    Ok(ui::page(
        &app,
        &user,
        &i.reference,
        "/incidents",
        html! {
            (ui::page_head(&format!("Incident {}", i.reference), Some(&review::subject_target(i.subject.as_deref().unwrap_or("")))))
            div.actions.noprint.mb {
                a.btn.secondary href={ "/incidents/" (i.id) "/print" } { "Printable record" }
                a.btn.secondary href={ "/incidents/" (i.id) "/export.csv" } { "Export evidence (CSV)" }
            }
            div.grid.grid-2 {
                div.card { h2 { "Record" } (record(&i, &tz)) }
                @if can_edit {
                    div.card {
                        h2 { "Update" }
                        form method="post" action={ "/incidents/" (i.id) } {
                            (ui::csrf(&user))
                            label for="status" { "Status" }
                            select #status name="status" {
                                @for s in [Status::Open, Status::Investigating, Status::Closed] { option value=(s.name()) selected[s == i.status] { (s.name()) } }
                            }
                            label for="actions_taken" { "Actions taken" }
                            textarea #actions_taken name="actions_taken" { (i.actions_taken) }
                            label for="people_informed" { "People informed" }
                            textarea #people_informed name="people_informed" placeholder="e.g. parents (phone, 14:10), head of year, police (ref 2026/123)" { (i.people_informed) }
                            label for="closure" { "Closure (needed to close)" }
                            textarea #closure name="closure" { (i.closure) }
                            label { input type="checkbox" name="shared_with_head" value="1" checked[i.shared_with_head]; " Share the full record with the headteacher" }
                            label for="note" { "Update note" }
                            input #note type="text" name="note" placeholder="What changed";
                            div.actions { button.btn type="submit" { "Save" } }
                        }
                    }
                }
            }
            h2 { "History" }
            div.card { @for u in &updates { div.small { strong { (u.actor) } span.muted { " · " (ui::date_time(u.time, &tz)) } div { (u.text) } } } }
            h2 { "Evidence (" (evidence.len()) " requests, copied when the incident was opened)" }
            (review::timeline_table(&evidence, &tz, Some((i.episode_from, i.episode_to))))
        },
    ))
}

#[derive(Debug, Deserialize)]
struct UpdateForm {
    status: String,
    actions_taken: Option<String>,
    people_informed: Option<String>,
    closure: Option<String>,
    shared_with_head: Option<String>,
    note: Option<String>,
}

async fn update(app: &App, user: &CurrentUser, id: i64, f: &UpdateForm) -> Result<()> {
    user.require(WRITERS, "updating the e-Safety Incident Log")?;
    let status = Status::parse(&f.status)?;
    let field = |s: &Option<String>| {
        s.as_deref()
            .unwrap_or("")
            .trim()
            .chars()
            .take(8_000)
            .collect::<String>()
    };
    let (actions, people, closure) = (
        field(&f.actions_taken),
        field(&f.people_informed),
        field(&f.closure),
    );
    if status == Status::Closed && closure.is_empty() {
        return Err(DashboardError::bad_request(
            "write the closure (outcome and why it is closed) before closing the incident",
        ));
    }
    let shared = f
        .shared_with_head
        .as_deref()
        .is_some_and(|v| v == "1" || v == "on" || v == "true");
    let note = field(&f.note);
    let now = app.clock.now_ms();
    let (actor, role) = (user.name.clone(), user.role);
    app.db
        .call(move |c| {
            let tx = c.transaction()?;
            let Some((old, _, _)) = fetch(&tx, id)? else { return Err(DashboardError::not_found(format!("incident {id}"))) };
            let mut changed = Vec::new();
            if old.status != status {
                changed.push(format!("status {} → {}", old.status.name(), status.name()));
            }
            if old.actions_taken != actions {
                changed.push("actions taken updated".to_owned());
            }
            if old.people_informed != people {
                changed.push("people informed updated".to_owned());
            }
            if old.closure != closure {
                changed.push("closure updated".to_owned());
            }
            if old.shared_with_head != shared {
                changed.push(if shared { "shared with the headteacher" } else { "no longer shared with the headteacher" }.to_owned());
            }
            if !note.is_empty() {
                changed.push(note.clone());
            }
            if changed.is_empty() {
                return Ok(());
            }
            let (closed_ms, closed_by) = match (status, old.closed) {
                (Status::Closed, Some(t)) => (Some(t.as_millisecond()), old.closed_by.clone()),
                (Status::Closed, None) => (Some(now), Some(actor.clone())),
                _ => (None, None),
            };
            tx.execute(
                "UPDATE incidents SET status = ?2, actions_taken = ?3, people_informed = ?4, closure = ?5, shared_with_head = ?6, closed_ms = ?7, closed_by = ?8 WHERE id = ?1",
                params![id, status.name(), actions, people, closure, shared, closed_ms, closed_by],
            )?;
            let text = changed.join("; ");
            tx.execute("INSERT INTO incident_updates (incident_id, time_ms, actor, text) VALUES (?1, ?2, ?3, ?4)", params![id, now, actor, text])?;
            let target = format!("incident {}", old.reference);
            audit::append(&tx, now, &AuditEntry { actor: &actor, role: role.name(), action: "updated incident", target: &target, reason: "", detail: &text })?;
            tx.commit()?;
            Ok(())
        })
        .await
}

async fn update_form(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<i64>,
    Form(f): Form<UpdateForm>,
) -> Result<Response> {
    update(&app, &user, id, &f).await?;
    Ok(see_other(&format!("/incidents/{id}")))
}

async fn update_api(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<i64>,
    Json(f): Json<UpdateForm>,
) -> Result<http::StatusCode> {
    update(&app, &user, id, &f).await?;
    Ok(http::StatusCode::NO_CONTENT)
}

async fn export_csv(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Response> {
    let (i, _, evidence) = load(&app, &user, id, "exported incident evidence").await?;
    let mut out: Vec<u8> = Vec::new();
    schoolgate_events::store::csv::write_header(&mut out)?;
    for e in &evidence {
        schoolgate_events::store::csv::write_event(&mut out, e)?;
    }
    let disposition = format!("attachment; filename=\"{}-evidence.csv\"", i.reference);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response())
}

async fn print_page(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Markup> {
    let (i, updates, evidence) = load(&app, &user, id, "printed incident record").await?;
    let tz = app.tz();
    Ok(html! {
        (DOCTYPE)
        html lang="en-GB" {
            head { meta charset="utf-8"; title { (i.reference) " · e-Safety Incident Log" } link rel="stylesheet" href="/static/app.css"; }
            body {
                main.print {
                    p.muted { (app.school_name()) " · e-Safety Incident Log · printed " (ui::date_time(app.clock.now(), &tz)) " by " (user.name) }
                    h1 { "Incident " (i.reference) }
                    (record(&i, &tz))
                    h2 { "History" }
                    @for u in &updates { p.small { strong { (u.actor) } " · " (ui::date_time(u.time, &tz)) ": " (u.text) } }
                    h2 { "Evidence" }
                    (review::timeline_table(&evidence, &tz, Some((i.episode_from, i.episode_to))))
                    p.small.muted { "Confidential: safeguarding record. Evidence copied from the filter's event store when the incident was opened." }
                }
            }
        }
    })
}
