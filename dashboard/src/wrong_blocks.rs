//! "Report a wrong block": the block page links to `/report?ref=EVENT_ID`, where a
//! pupil (no login) says what they were trying to do; the report lands in the
//! network manager's queue, who can unblock the site for that role (a local allow
//! entry, saved through the policy editor with the report as the reason) or keep
//! the block with a note.
//!
//! The form is public, so it is bounded: 5 reports per address per 10 minutes,
//! short fields, and at most `MAX_OPEN` open reports.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::header::SET_COOKIE;
use maud::{Markup, html};
use rusqlite::params;
use schoolgate_events::Purpose;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::app::App;
use crate::audit::{self, AuditEntry};
use crate::auth::{self, CurrentUser, Role};
use crate::error::{DashboardError, Result};
use crate::policy_editor::{self, edit::Change, edit::LocalList};
use crate::state::ts;
use crate::ui;
use crate::web::{ClientIp, FORM_COOKIE, Form, Json, Query, cookie, cookies, non_empty, see_other};

const WHAT: &str = "the wrong-block reports";
const MAX_OPEN: i64 = 10_000;
const MAX_MESSAGE: usize = 1_000;
const MAX_URL: usize = 2_000;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/report", get(form_page).post(submit_form))
        .route("/api/report", post(submit_api))
        .route("/wrong-blocks", get(queue_page))
        .route("/api/wrong-blocks", get(queue_api))
        .route("/wrong-blocks/{id}", post(resolve_form))
        .route("/api/wrong-blocks/{id}", post(resolve_api))
}

#[derive(Debug, Default, Deserialize)]
struct ReportQuery {
    #[serde(rename = "ref")]
    reference: Option<String>,
    url: Option<String>,
}

fn report_view(app: &App, token: &str, q: &ReportQuery, error: Option<&str>) -> Markup {
    ui::bare_page(
        app,
        "Report a wrong block",
        html! {
            h1 { "Report a wrong block" }
            p { "If a page you need for your work was blocked, tell us and the network manager will look at it. You do not need to log in." }
            @if let Some(e) = error { (ui::alert("error", e)) }
            form method="post" action="/report" {
                input type="hidden" name="form_token" value=(token);
                input type="hidden" name="ref" value=[q.reference.as_deref()];
                label for="url" { "The page you were trying to reach" }
                input #url type="text" name="url" value=[q.url.as_deref()] maxlength="2000" placeholder="https://…";
                label for="message" { "What were you trying to do?" }
                textarea #message name="message" maxlength="1000" required placeholder="e.g. Researching the history of gambling laws for my RE homework" {}
                button.btn type="submit" { "Send report" }
            }
            @if let Some(r) = q.reference.as_deref().filter(|r| !r.is_empty()) { p.small.muted { "Reference: " span.mono { (r) } } }
        },
    )
}

async fn form_page(
    State(app): State<App>,
    headers: http::HeaderMap,
    Query(q): Query<ReportQuery>,
) -> Response {
    let (token, fresh) = match cookies(&headers).get(FORM_COOKIE) {
        Some(t) if t.len() >= 16 => (t.clone(), false),
        _ => (auth::random_token(18), true),
    };
    let mut resp = report_view(&app, &token, &q, None).into_response();
    if fresh {
        resp.headers_mut()
            .append(SET_COOKIE, cookie(&app, FORM_COOKIE, &token, 3600));
    }
    resp
}

#[derive(Debug, Deserialize)]
struct ReportForm {
    #[serde(rename = "ref")]
    reference: Option<String>,
    url: Option<String>,
    message: String,
}

async fn submit(app: &App, ip: std::net::IpAddr, f: &ReportForm) -> Result<i64> {
    app.report_limiter.check(ip, app.clock.now_ms())?;
    let reference = non_empty(&f.reference).unwrap_or("").to_owned();
    if !reference.is_empty() && reference.parse::<Ulid>().is_err() {
        return Err(DashboardError::bad_request(
            "the reference is not one a block page gives",
        ));
    }
    let url = non_empty(&f.url).unwrap_or("").to_owned();
    let message = f.message.trim().to_owned();
    if message.is_empty() {
        return Err(DashboardError::bad_request(
            "say what you were trying to do",
        ));
    }
    if message.chars().count() > MAX_MESSAGE || url.len() > MAX_URL {
        return Err(DashboardError::bad_request("the report is too long"));
    }
    let now = app.clock.now_ms();
    let ip = ip.to_string();
    app.db
        .call(move |c| {
            let open: i64 = c.query_row("SELECT COUNT(*) FROM wrong_blocks WHERE status = 'open'", [], |r| r.get(0))?;
            if open >= MAX_OPEN {
                return Err(DashboardError::RateLimited);
            }
            c.execute(
                "INSERT INTO wrong_blocks (time_ms, event_ref, url, message, client_ip) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now, reference, url, message, ip],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
}

async fn submit_form(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    headers: http::HeaderMap,
    Form(f): Form<ReportForm>,
) -> Response {
    match submit(&app, ip, &f).await {
        Ok(id) => ui::bare_page(
            &app,
            "Report sent",
            html! {
                h1 { "Thank you" }
                (ui::alert("ok", &format!("Your report (number {id}) has been sent to the network manager.")))
                p { "If the page is unblocked it will work within a minute. If you need it urgently, ask your teacher." }
            },
        )
        .into_response(),
        Err(e) => {
            let token = cookies(&headers).get(FORM_COOKIE).cloned().unwrap_or_default();
            let q = ReportQuery { reference: f.reference.clone(), url: f.url.clone() };
            (e.status(), report_view(&app, &token, &q, Some(&e.to_string()))).into_response()
        }
    }
}

async fn submit_api(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    Json(f): Json<ReportForm>,
) -> Result<(http::StatusCode, axum::Json<serde_json::Value>)> {
    let id = submit(&app, ip, &f).await?;
    Ok((
        http::StatusCode::CREATED,
        axum::Json(serde_json::json!({ "id": id })),
    ))
}

/// What the blocked request was, found in the event store by its reference.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BlockedRequest {
    pub host: String,
    pub role: String,
    pub categories: String,
    pub rule: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct WrongBlock {
    pub id: i64,
    pub time: jiff::Timestamp,
    pub reference: String,
    pub url: String,
    pub message: String,
    pub status: String,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
    pub request: Option<BlockedRequest>,
}

/// Looks the blocked request up in the event store by its id. `None` when the
/// reference is not an event id, or the store no longer holds it (purged); a
/// store that cannot answer is logged and the report shown without it.
async fn lookup(
    app: &App,
    user: &CurrentUser,
    report_id: i64,
    reference: &str,
) -> Option<BlockedRequest> {
    let id: Ulid = reference.parse().ok()?;
    let purpose = Purpose::new(user.name.clone(), format!("wrong-block report {report_id}"));
    let event = match app.store.event(id, &purpose).await {
        Ok(event) => event?,
        Err(e) => {
            tracing::warn!(report = report_id, error = %e, "cannot look up the reported request");
            return None;
        }
    };
    Some(BlockedRequest {
        host: event.host,
        role: event.role,
        categories: event.categories.names().join(","),
        rule: event.rule,
        reason: event.reason,
    })
}

async fn queue(app: &App, user: &CurrentUser) -> Result<Vec<WrongBlock>> {
    user.require(&[Role::NetworkManager], WHAT)?;
    let mut list = app
        .db
        .call(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, time_ms, event_ref, url, message, status, resolved_by, resolution FROM wrong_blocks \
                 ORDER BY (status = 'open') DESC, id DESC LIMIT 200",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(WrongBlock {
                    id: r.get(0)?,
                    time: ts(r.get(1)?),
                    reference: r.get(2)?,
                    url: r.get(3)?,
                    message: r.get(4)?,
                    status: r.get(5)?,
                    resolved_by: r.get(6)?,
                    resolution: r.get(7)?,
                    request: None,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    for w in list
        .iter_mut()
        .filter(|w| w.status == "open" && !w.reference.is_empty())
    {
        w.request = lookup(app, user, w.id, &w.reference).await;
    }
    Ok(list)
}

async fn queue_api(
    State(app): State<App>,
    user: CurrentUser,
) -> Result<axum::Json<Vec<WrongBlock>>> {
    Ok(axum::Json(queue(&app, &user).await?))
}

#[derive(Debug, Default, Deserialize)]
struct Flash {
    ok: Option<String>,
}

async fn queue_page(
    State(app): State<App>,
    user: CurrentUser,
    Query(f): Query<Flash>,
) -> Result<Markup> {
    let list = queue(&app, &user).await?;
    let tz = app.tz();
    let roles: Vec<String> = app
        .policy
        .load()
        .roles()
        .map(|(_, r)| r.name.to_string())
        .collect();
    let open = list.iter().filter(|w| w.status == "open").count();
    Ok(ui::page(
        &app,
        &user,
        "Wrong-block reports",
        "/wrong-blocks",
        html! {
            (ui::page_head("Wrong-block reports", Some(&format!("{open} open. Sent from block pages by pupils and staff; no login is needed to report."))))
            @if let Some(m) = non_empty(&f.ok) { (ui::alert("ok", m)) }
            @if list.is_empty() { (ui::empty("No reports.")) }
            @for w in &list {
                div.card {
                    div.episode {
                        span class={ "badge st-" (if w.status == "open" { "new" } else { w.status.as_str() }) } { (w.status) }
                        div {
                            strong { @if let Some(r) = &w.request { span.mono { (r.host) } } @else if !w.url.is_empty() { span.mono { (w.url) } } @else { "Unknown page" } }
                            div.small.muted { "#" (w.id) " · " (ui::when(w.time, &tz)) @if !w.reference.is_empty() { " · ref " span.mono { (w.reference) } } }
                        }
                        div {}
                    }
                    p { "“" (w.message) "”" }
                    @if let Some(r) = &w.request {
                        dl.kv.small { dt { "Role" } dd { (r.role) } dt { "Category" } dd { (r.categories) } dt { "Rule" } dd { (r.rule) } }
                    }
                    @if let Some(res) = &w.resolution { p.small.muted { (w.resolved_by.as_deref().unwrap_or("")) ": " (res) } }
                    @if w.status == "open" {
                        form method="post" action={ "/wrong-blocks/" (w.id) } {
                            (ui::csrf(&user))
                            div.form-grid {
                                div { label { "Host to allow" } input type="text" name="host" value=[w.request.as_ref().map(|r| r.host.as_str()).or(Some(w.url.as_str()))]; }
                                div { label { "For role" } select name="role" { @for r in &roles { option value=(r) selected[w.request.as_ref().is_some_and(|q| &q.role == r)] { (r) } } } }
                                div { label { "Note" } input type="text" name="note" placeholder="Why"; }
                            }
                            div.actions {
                                button.btn type="submit" name="action" value="unblock" { "Unblock for this role" }
                                button.btn.secondary type="submit" name="action" value="keep" { "Keep blocked" }
                            }
                        }
                    }
                }
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
struct Resolve {
    action: String,
    host: Option<String>,
    role: Option<String>,
    note: Option<String>,
}

async fn resolve(app: &App, user: &CurrentUser, id: i64, f: &Resolve) -> Result<String> {
    user.require(&[Role::NetworkManager], WHAT)?;
    let note = non_empty(&f.note).unwrap_or("").to_owned();
    let (status, resolution) = match f.action.as_str() {
        "unblock" => {
            let host = non_empty(&f.host)
                .ok_or_else(|| DashboardError::bad_request("which host should be allowed?"))?;
            let host = schoolgate_classifier::UrlParts::parse(host)
                .host
                .to_ascii_lowercase();
            let role = non_empty(&f.role)
                .ok_or_else(|| DashboardError::bad_request("for which role?"))?
                .to_owned();
            let cur = policy_editor::current(app).await?;
            let mut entries = cur
                .config
                .roles
                .get(&role)
                .map(|r| r.allow.clone())
                .unwrap_or_default();
            entries.push(host.clone());
            let reason = format!(
                "wrong-block report #{id}{}",
                if note.is_empty() {
                    String::new()
                } else {
                    format!(": {note}")
                }
            );
            policy_editor::save(
                app,
                user,
                None,
                &reason,
                &[Change::SetLocalList {
                    role: role.clone(),
                    list: LocalList::Allow,
                    entries,
                }],
            )
            .await?;
            (
                "unblocked",
                format!(
                    "allowed {host} for {role}{}",
                    if note.is_empty() {
                        String::new()
                    } else {
                        format!(" — {note}")
                    }
                ),
            )
        }
        "keep" => (
            "kept",
            if note.is_empty() {
                "kept blocked".to_owned()
            } else {
                format!("kept blocked — {note}")
            },
        ),
        o => return Err(DashboardError::bad_request(format!("unknown action `{o}`"))),
    };
    let now = app.clock.now_ms();
    let (actor, role, res) = (user.name.clone(), user.role, resolution.clone());
    app.db
        .call(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE wrong_blocks SET status = ?2, resolved_by = ?3, resolved_ms = ?4, resolution = ?5 WHERE id = ?1 AND status = 'open'",
                params![id, status, actor, now, res],
            )?;
            if n == 0 {
                return Err(DashboardError::not_found(format!("open report {id}")));
            }
            let target = format!("wrong-block report {id}");
            audit::append(&tx, now, &AuditEntry { actor: &actor, role: role.name(), action: "resolved wrong-block report", target: &target, reason: "", detail: &res })?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(resolution)
}

async fn resolve_form(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<i64>,
    Form(f): Form<Resolve>,
) -> Result<Response> {
    let r = resolve(&app, &user, id, &f).await?;
    Ok(see_other(&format!(
        "/wrong-blocks?ok={}",
        ui::url_encode(&format!("Report {id}: {r}."))
    )))
}

async fn resolve_api(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<i64>,
    Json(f): Json<Resolve>,
) -> Result<axum::Json<serde_json::Value>> {
    let r = resolve(&app, &user, id, &f).await?;
    Ok(axum::Json(serde_json::json!({ "resolution": r })))
}
