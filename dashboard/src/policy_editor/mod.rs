//! The network manager's policy editor: the roles x categories matrix, each role's
//! local lists and SafeSearch / YouTube levels, schedules, networks and mappings,
//! "Test a URL", and the change history.
//!
//! Every save goes one way ([`save`]): read the file, check it is the version the
//! form was made from, apply the [`edit::Change`]s with `toml_edit`, hot-reload the
//! result through the `Reloader` (which validates and compiles, and refuses with
//! the exact error while the running policy carries on), then write the file and
//! record the version and an audit entry. A refused change changes nothing.

pub mod edit;
pub mod versions;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use maud::{Markup, html};
use schoolgate_classifier::config::Config;
use schoolgate_classifier::{Action, Category, Request, Severity};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::audit::AuditEntry;
use crate::auth::{CurrentUser, Role};
use crate::error::{DashboardError, Result};
use crate::ui;
use crate::web::{Form, Json, Query, non_empty, see_other};
use edit::{Cell, CellState, Change, LocalList, RestrictionKind, TermEdit};

const WHAT: &str = "the filtering policy";
const EDITORS: &[Role] = &[Role::NetworkManager];
const HISTORY_READERS: &[Role] = &[Role::NetworkManager, Role::Headteacher];

pub fn routes() -> Router<App> {
    Router::new()
        .route("/policy", get(matrix_page))
        .route("/policy/matrix", post(matrix_form))
        .route("/api/policy", get(policy_api).post(change_api))
        .route("/policy/role/{name}", get(role_page).post(role_form))
        .route(
            "/policy/schedules",
            get(schedules_page).post(schedules_form),
        )
        .route("/policy/calendar", post(calendar_form))
        .route("/policy/timed", post(timed_form))
        .route("/policy/networks", get(networks_page).post(networks_form))
        .route("/policy/test", get(test_page))
        .route("/api/policy/test", get(test_api))
        .route("/policy/history", get(history_page))
        .route("/policy/history/{id}", get(version_page))
        .route("/api/policy/history", get(history_api))
        .route("/api/policy/history/{id}", get(version_api))
}

// ---- the save pipeline ----

/// What a successful save did.
#[derive(Clone, Debug, Serialize)]
pub struct SaveOutcome {
    /// One line per change; empty when nothing changed (then nothing was written).
    pub changes: Vec<String>,
    pub version: Option<i64>,
    /// The file's hash after the save (the next save's `base`).
    pub base: String,
}

/// The file as it is on disk, its hash and its parsed form.
#[derive(Debug)]
pub struct Current {
    pub text: String,
    pub base: String,
    pub config: Config,
    /// Set when the file on disk does not parse (edited by hand, badly): the
    /// pages then show the running configuration and saving is refused.
    pub problem: Option<String>,
}

pub async fn current(app: &App) -> Result<Current> {
    let text = tokio::fs::read_to_string(&app.config_path)
        .await
        .map_err(|e| {
            DashboardError::Internal(format!("reading {}: {e}", app.config_path.display()))
        })?;
    let base = versions::sha256(&text);
    let file = app.config_path.display().to_string();
    Ok(match Config::parse(&file, &text) {
        Ok(config) => Current {
            text,
            base,
            config,
            problem: None,
        },
        Err(e) => Current {
            text,
            base,
            config: (**app.policy.load().config()).clone(),
            problem: Some(e.to_string()),
        },
    })
}

/// Applies `changes` as described in the module docs.
pub async fn save(
    app: &App,
    user: &CurrentUser,
    base: Option<&str>,
    reason: &str,
    changes: &[Change],
) -> Result<SaveOutcome> {
    user.require(EDITORS, WHAT)?;
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(DashboardError::bad_request(
            "say why you are making this change (it is kept in the change history)",
        ));
    }
    if reason.len() > 500 {
        return Err(DashboardError::bad_request(
            "keep the reason under 500 characters",
        ));
    }
    let _guard = app.config_lock.lock().await;
    let cur = current(app).await?;
    if let Some(b) = base
        && b != cur.base
    {
        return Err(DashboardError::Conflict(
            "the configuration changed since you opened this page (someone else saved, or the file was edited); reload the page and make your change again".into(),
        ));
    }
    if let Some(p) = cur.problem {
        return Err(DashboardError::Refused(format!(
            "the configuration file on disk has errors, so the dashboard will not edit it:\n{p}"
        )));
    }
    let mut doc: toml_edit::DocumentMut = cur
        .text
        .parse()
        .map_err(|e| DashboardError::Refused(format!("{e}")))?;
    let summary = edit::apply(&mut doc, &cur.config, changes)?;
    if summary.is_empty() {
        return Ok(SaveOutcome {
            changes: summary,
            version: None,
            base: cur.base,
        });
    }
    let new_text = doc.to_string();
    let file = app.config_path.display().to_string();
    let reloader = app.reloader.clone();
    let (f2, t2) = (file.clone(), new_text.clone());
    let reloaded = tokio::task::spawn_blocking(move || reloader.reload_text(&f2, &t2))
        .await
        .map_err(|e| DashboardError::Internal(e.to_string()))?;
    let now = app.clock.now_ms();
    let report = match reloaded {
        Ok(r) => r,
        Err(e) => {
            let (msg, detail) = (e.to_string(), summary.join("; "));
            let entry = user.audit("policy change refused", "configuration", reason, &detail);
            let (actor, role, action, target, reason2) = (
                entry.actor.to_owned(),
                entry.role.to_owned(),
                entry.action.to_owned(),
                entry.target.to_owned(),
                entry.reason.to_owned(),
            );
            app.db
                .call(move |c| {
                    crate::audit::append(
                        c,
                        now,
                        &AuditEntry {
                            actor: &actor,
                            role: &role,
                            action: &action,
                            target: &target,
                            reason: &reason2,
                            detail: &detail,
                        },
                    )?;
                    Ok(())
                })
                .await?;
            return Err(DashboardError::Refused(msg));
        }
    };
    if let Err(e) = write_atomically(&app.config_path, &new_text).await {
        // The new policy is running but the file says otherwise: put the old one
        // back so a restart and the running filter agree.
        let reloader = app.reloader.clone();
        let old = cur.text.clone();
        let _ = tokio::task::spawn_blocking(move || reloader.reload_text(&file, &old)).await;
        return Err(DashboardError::Internal(format!(
            "the new configuration could not be written ({e}); the previous policy was restored"
        )));
    }
    app.set_load(report);
    app.summaries.clear();
    let (actor, role, reason, sum, text) = (
        user.name.clone(),
        user.role,
        reason.to_owned(),
        summary.clone(),
        new_text.clone(),
    );
    let version = app
        .db
        .call(move |c| {
            versions::record(
                c,
                now,
                &AuditEntry {
                    actor: &actor,
                    role: role.name(),
                    action: "changed policy",
                    target: "",
                    reason: &reason,
                    detail: "",
                },
                &sum,
                &text,
            )
        })
        .await?;
    Ok(SaveOutcome {
        changes: summary,
        version: Some(version),
        base: versions::sha256(&new_text),
    })
}

/// Writes beside the file and renames over it, so a crash never leaves half a
/// configuration.
async fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("toml.dashboard-tmp");
    tokio::fs::write(&tmp, text).await?;
    let f = tokio::fs::File::open(&tmp).await?;
    f.sync_all().await?;
    tokio::fs::rename(&tmp, path).await
}

#[derive(Debug, Deserialize)]
struct ChangeRequest {
    base: Option<String>,
    reason: String,
    changes: Vec<Change>,
}

async fn change_api(
    State(app): State<App>,
    user: CurrentUser,
    Json(r): Json<ChangeRequest>,
) -> Result<axum::Json<SaveOutcome>> {
    if r.changes.len() > 2_000 {
        return Err(DashboardError::bad_request("at most 2000 changes at once"));
    }
    Ok(axum::Json(
        save(&app, &user, r.base.as_deref(), &r.reason, &r.changes).await?,
    ))
}

/// A form's save: back to `back` with a message, or the error page (which shows
/// a refused reload's exact error).
async fn save_and_return(
    app: &App,
    user: &CurrentUser,
    base: Option<&str>,
    reason: &str,
    changes: &[Change],
    back: &str,
) -> Result<Response> {
    let out = save(app, user, base, reason, changes).await?;
    let msg = match out.changes.len() {
        0 => "Nothing changed.".to_owned(),
        1 => format!("Saved and applied: {}", out.changes[0]),
        n => format!("Saved and applied {n} changes."),
    };
    let sep = if back.contains('?') { '&' } else { '?' };
    Ok(see_other(&format!(
        "{back}{sep}ok={}",
        ui::url_encode(&msg)
    )))
}

#[derive(Debug, Default, Deserialize)]
struct Flash {
    ok: Option<String>,
}

fn problem_banner(cur: &Current) -> Markup {
    html! {
        @if let Some(p) = &cur.problem {
            (ui::alert("error", &format!("The configuration file on disk has errors; showing the running policy. Fix the file before editing here:\n{p}")))
        }
    }
}

// ---- the matrix ----

#[derive(Debug, Serialize)]
struct MatrixJson {
    base: String,
    roles: Vec<RoleJson>,
    schedules: std::collections::BTreeMap<String, schoolgate_classifier::config::ScheduleConfig>,
    calendar: schoolgate_classifier::config::CalendarConfig,
}

#[derive(Debug, Serialize)]
struct RoleJson {
    name: String,
    description: String,
    extends: Option<String>,
    categories: Vec<(Category, Cell)>,
    allow: Vec<String>,
    deny: Vec<String>,
    safesearch: Option<schoolgate_classifier::config::Restriction>,
    youtube: Option<schoolgate_classifier::config::Restriction>,
    timed: Vec<schoolgate_classifier::config::TimedRule>,
}

async fn policy_api(State(app): State<App>, user: CurrentUser) -> Result<axum::Json<MatrixJson>> {
    user.require(EDITORS, WHAT)?;
    let cur = current(&app).await?;
    let roles = cur
        .config
        .roles
        .iter()
        .map(|(name, r)| RoleJson {
            name: name.clone(),
            description: r.description.clone(),
            extends: r.extends.clone(),
            categories: Category::ALL
                .iter()
                .map(|c| (*c, edit::cell(&cur.config, name, *c)))
                .collect(),
            allow: r.allow.clone(),
            deny: r.deny.clone(),
            safesearch: r.safesearch,
            youtube: r.youtube,
            timed: r.timed.clone(),
        })
        .collect();
    Ok(axum::Json(MatrixJson {
        base: cur.base,
        roles,
        schedules: cur.config.schedules.clone(),
        calendar: cur.config.calendar.clone(),
    }))
}

fn matrix_view(
    app: &App,
    user: &CurrentUser,
    cur: &Current,
    ok: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let roles: Vec<&String> = cur.config.roles.keys().collect();
    ui::page(
        app,
        user,
        "Roles & categories",
        "/policy",
        html! {
            (ui::page_head("Roles & categories", Some("What each role blocks, flags for review (with a severity) and allows. Changes apply within a second of saving.")))
            (problem_banner(cur))
            @if let Some(m) = ok { (ui::alert("ok", m)) }
            @if let Some(e) = error { (ui::alert("error", e)) }
            div.card.small {
                "Roles: "
                @for r in &roles {
                    a.chip href={ "/policy/role/" (r) } { (r) }
                }
                span.muted { " — open a role for its local allow / deny lists, SafeSearch and YouTube." }
            }
            form method="post" action="/policy/matrix" {
                (ui::csrf(user))
                input type="hidden" name="base" value=(cur.base);
                div.matrix-wrap {
                    table.matrix {
                        thead {
                            tr {
                                th { "Category" }
                                @for r in &roles {
                                    th { a href={ "/policy/role/" (r) } { (r) }
                                        @if let Some(p) = cur.config.roles.get(*r).and_then(|x| x.extends.as_ref()) { span.inherit { "extends " (p) } }
                                    }
                                }
                            }
                        }
                        tbody {
                            @for c in Category::ALL {
                                tr {
                                    td.cat { (c.label()) br; span.muted.small.mono { (c.name()) } }
                                    @for r in &roles {
                                        @let cell = edit::cell(&cur.config, r, *c);
                                        @if cell.locked {
                                            td.locked title="Always blocked for every role (IWF / CTIRU lists); cannot be changed" { "Always blocked" }
                                        } @else {
                                            td {
                                                select name={ "c." (r) "." (c.name()) } data-initial=(cell.effective.to_string()) class=(cell.effective.class()) aria-label={ (r) ": " (c.label()) } {
                                                    @for s in CellState::all() {
                                                        @let disabled = (cell.inherited.block && !s.block) || (cell.inherited.flag.is_some() && s.flag.is_none());
                                                        option value=(s.to_string()) selected[s == cell.effective] disabled[disabled] { (s.label()) }
                                                    }
                                                }
                                                @if !cell.own && (cell.inherited.block || cell.inherited.flag.is_some()) { span.inherit { "inherited" } }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                div.savebar {
                    label.mt0 for="reason" { "Why" }
                    input #reason type="text" name="reason" placeholder="e.g. Gambling adverts during Year 9 lessons (ticket 412)" required maxlength="500";
                    span #changed-count.muted.small {}
                    button.btn type="submit" { "Save and apply" }
                }
            }
        },
    )
}

async fn matrix_page(
    State(app): State<App>,
    user: CurrentUser,
    Query(f): Query<Flash>,
) -> Result<Markup> {
    user.require(EDITORS, WHAT)?;
    let cur = current(&app).await?;
    Ok(matrix_view(&app, &user, &cur, non_empty(&f.ok), None))
}

async fn matrix_form(
    State(app): State<App>,
    user: CurrentUser,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response> {
    user.require(EDITORS, WHAT)?;
    let map: HashMap<&str, &str> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut changes = Vec::new();
    let cur = current(&app).await?;
    for (k, v) in &fields {
        let Some(rest) = k.strip_prefix("c.") else {
            continue;
        };
        let Some((role, cat)) = rest.rsplit_once('.') else {
            continue;
        };
        let category = Category::from_name(cat)
            .ok_or_else(|| DashboardError::bad_request(format!("unknown category `{cat}`")))?;
        let state: CellState = v.parse()?;
        // Only cells that differ from the file: untouched inherited cells stay
        // inherited.
        if edit::cell(&cur.config, role, category).effective != state {
            changes.push(Change::SetCategory {
                role: role.to_owned(),
                category,
                state,
            });
        }
    }
    let reason = map.get("reason").copied().unwrap_or("");
    match save(&app, &user, map.get("base").copied(), reason, &changes).await {
        Ok(out) => {
            let msg = match out.changes.len() {
                0 => "Nothing changed.".to_owned(),
                n => format!(
                    "Saved and applied {n} change{}: {}",
                    if n == 1 { "" } else { "s" },
                    out.changes.join("; ")
                ),
            };
            Ok(see_other(&format!("/policy?ok={}", ui::url_encode(&msg))))
        }
        Err(
            e @ (DashboardError::BadRequest(_)
            | DashboardError::Refused(_)
            | DashboardError::Conflict(_)),
        ) => {
            let cur = current(&app).await?;
            Ok((
                e.status(),
                matrix_view(&app, &user, &cur, None, Some(&e.to_string())),
            )
                .into_response())
        }
        Err(e) => Err(e),
    }
}

// ---- one role ----

fn level_name(r: Option<schoolgate_classifier::config::Restriction>) -> &'static str {
    use schoolgate_classifier::config::Restriction::*;
    match r {
        None => "inherit",
        Some(Off) => "off",
        Some(Moderate) => "moderate",
        Some(Strict) => "strict",
    }
}

async fn role_page(
    State(app): State<App>,
    user: CurrentUser,
    Path(name): Path<String>,
    Query(f): Query<Flash>,
) -> Result<Markup> {
    user.require(EDITORS, WHAT)?;
    let cur = current(&app).await?;
    let r = cur
        .config
        .roles
        .get(&name)
        .ok_or_else(|| DashboardError::not_found(format!("role `{name}`")))?;
    let blocked: Vec<Category> = Category::ALL
        .iter()
        .copied()
        .filter(|c| edit::cell(&cur.config, &name, *c).effective.block)
        .collect();
    let flagged: Vec<(Category, Severity)> = Category::ALL
        .iter()
        .filter_map(|c| {
            edit::cell(&cur.config, &name, *c)
                .effective
                .flag
                .map(|s| (*c, s))
        })
        .collect();
    Ok(ui::page(
        &app,
        &user,
        &format!("Role {name}"),
        "/policy",
        html! {
            (ui::page_head(&format!("Role: {name}"), Some(&r.description)))
            (problem_banner(&cur))
            @if let Some(m) = non_empty(&f.ok) { (ui::alert("ok", m)) }
            div.grid.grid-2 {
                div.card {
                    h2 { "Summary" }
                    dl.kv {
                        @if let Some(p) = &r.extends { dt { "Extends" } dd { a href={ "/policy/role/" (p) } { (p) } } }
                        dt { "Blocks" } dd { @for c in &blocked { span.chip { (c.name()) } } }
                        dt { "Flags" } dd { @for (c, s) in &flagged { span.chip { (c.name()) " · " (s) } } }
                        @if !r.timed.is_empty() {
                            dt { "Timed rules" } dd {
                                @for t in &r.timed {
                                    div.small { "During " strong { (t.schedule.join(", ")) } ": "
                                        @if !t.allow.is_empty() { "allow " (t.allow.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")) " " }
                                        @if !t.block.is_empty() { "block " (t.block.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")) " " }
                                        @if !t.flag.is_empty() { "flag " (t.flag.iter().map(|(c, s)| format!("{c} ({s})")).collect::<Vec<_>>().join(", ")) }
                                    }
                                }
                            }
                        }
                    }
                    p.small.muted { "Categories are set in " a href="/policy" { "the matrix" } "." }
                }
                div.card {
                    h2 { "Settings" }
                    form method="post" action={ "/policy/role/" (name) } {
                        (ui::csrf(&user))
                        input type="hidden" name="base" value=(cur.base);
                        div.form-grid {
                            div {
                                label for="safesearch" { "SafeSearch" }
                                select #safesearch name="safesearch" {
                                    @for l in ["inherit", "off", "moderate", "strict"] { option value=(l) selected[l == level_name(r.safesearch)] { (l) } }
                                }
                            }
                            div {
                                label for="youtube" { "YouTube restricted mode" }
                                select #youtube name="youtube" {
                                    @for l in ["inherit", "off", "moderate", "strict"] { option value=(l) selected[l == level_name(r.youtube)] { (l) } }
                                }
                            }
                        }
                        label for="allow" { "Local allow list (one domain or host/path per line; beats list categories, never illegal)" }
                        textarea #allow name="allow" { (r.allow.join("\n")) }
                        label for="deny" { "Local deny list" }
                        textarea #deny name="deny" { (r.deny.join("\n")) }
                        label for="reason" { "Why" }
                        input #reason type="text" name="reason" required maxlength="500" placeholder="e.g. Science department needs phet.colorado.edu";
                        div.actions { button.btn type="submit" { "Save and apply" } }
                    }
                }
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
struct RoleForm {
    base: Option<String>,
    reason: String,
    safesearch: Option<String>,
    youtube: Option<String>,
    allow: Option<String>,
    deny: Option<String>,
}

async fn role_form(
    State(app): State<App>,
    user: CurrentUser,
    Path(name): Path<String>,
    Form(f): Form<RoleForm>,
) -> Result<Response> {
    let lines = |s: &Option<String>| -> Vec<String> {
        s.as_deref()
            .unwrap_or("")
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let mut changes = vec![
        Change::SetLocalList {
            role: name.clone(),
            list: LocalList::Allow,
            entries: lines(&f.allow),
        },
        Change::SetLocalList {
            role: name.clone(),
            list: LocalList::Deny,
            entries: lines(&f.deny),
        },
    ];
    for (kind, level) in [
        (RestrictionKind::Safesearch, &f.safesearch),
        (RestrictionKind::Youtube, &f.youtube),
    ] {
        if let Some(l) = level {
            changes.push(Change::SetRestriction {
                role: name.clone(),
                kind,
                level: Some(l.clone()),
            });
        }
    }
    save_and_return(
        &app,
        &user,
        f.base.as_deref(),
        &f.reason,
        &changes,
        &format!("/policy/role/{name}"),
    )
    .await
}

// ---- schedules ----

async fn schedules_page(
    State(app): State<App>,
    user: CurrentUser,
    Query(f): Query<Flash>,
) -> Result<Markup> {
    user.require(EDITORS, WHAT)?;
    let cur = current(&app).await?;
    let days_text = |d: &schoolgate_classifier::config::Days| {
        serde_json::to_value(d)
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
            })
            .unwrap_or_default()
    };
    Ok(ui::page(
        &app,
        &user,
        "Schedules",
        "/policy/schedules",
        html! {
            (ui::page_head("Schedules", Some("Time windows in school time (lessons, lunch, after school), the timed rules that use them, and the school calendar.")))
            (problem_banner(&cur))
            @if let Some(m) = non_empty(&f.ok) { (ui::alert("ok", m)) }
            div.table-wrap {
                table {
                    thead { tr { th { "Schedule" } th { "Days" } th { "Times" } th { "Used by" } th {} } }
                    tbody {
                        @for (name, s) in &cur.config.schedules {
                            @let users: Vec<&String> = cur.config.roles.iter().filter(|(_, r)| r.timed.iter().any(|t| t.schedule.contains(name))).map(|(n, _)| n).collect();
                            tr {
                                td { strong { (name) } }
                                td { (days_text(&s.days)) }
                                td { @for t in &s.times { span.chip { (t.to_string()) } } }
                                td { @for u in &users { a.chip href={ "/policy/role/" (u) } { (u) } } }
                                td {
                                    @if users.is_empty() {
                                        form.inline method="post" action="/policy/schedules" data-confirm={ "Remove the schedule " (name) "?" } {
                                            (ui::csrf(&user))
                                            input type="hidden" name="base" value=(cur.base);
                                            input type="hidden" name="op" value="remove";
                                            input type="hidden" name="name" value=(name);
                                            input type="hidden" name="reason" value={ "removed unused schedule " (name) };
                                            button.btn.secondary.small type="submit" { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (timed_rules_view(&user, &cur))
            div.card {
                h2 { "Add or change a schedule" }
                form method="post" action="/policy/schedules" {
                    (ui::csrf(&user))
                    input type="hidden" name="base" value=(cur.base);
                    input type="hidden" name="op" value="set";
                    div.form-grid {
                        div { label for="name" { "Name" } input #name type="text" name="name" required placeholder="lunch"; }
                        div { label for="days" { "Days" } input #days type="text" name="days" value="school-days" placeholder="school-days, weekdays, every-day or mon, wed"; }
                        div { label for="times" { "Times" } input #times type="text" name="times" required placeholder="12:15-13:05, 15:30-17:00"; }
                    }
                    label for="reason" { "Why" }
                    input #reason type="text" name="reason" required maxlength="500";
                    div.actions { button.btn type="submit" { "Save and apply" } }
                }
            }
            (calendar_view(&user, &cur))
        },
    ))
}

const DAY_NAMES: [(&str, &str); 7] = [
    ("mon", "Mon"),
    ("tue", "Tue"),
    ("wed", "Wed"),
    ("thu", "Thu"),
    ("fri", "Fri"),
    ("sat", "Sat"),
    ("sun", "Sun"),
];

/// Every role's timed rules, with a form to add one.
fn timed_rules_view(user: &CurrentUser, cur: &Current) -> Markup {
    let c = &cur.config;
    let rules: Vec<(&String, usize, &schoolgate_classifier::config::TimedRule)> = c
        .roles
        .iter()
        .flat_map(|(name, r)| r.timed.iter().enumerate().map(move |(i, t)| (name, i, t)))
        .collect();
    let names = |v: &[Category]| v.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
    html! {
        h2 #timed { "Timed rules" }
        p.muted.small { "While one of its schedules is active, a timed rule allows (lifting a block), blocks or flags categories for a role: e.g. social networking for staff at lunch and after 16:00 on school days." }
        @if rules.is_empty() { (ui::empty("No timed rules: every role's settings apply all day.")) } @else {
            div.table-wrap { table.timed {
                thead { tr { th { "Role" } th { "During" } th { "Allows" } th { "Blocks" } th { "Flags" } th {} } }
                tbody { @for (role, i, t) in &rules { tr {
                    td { a.chip href={ "/policy/role/" (role) } { (role) } }
                    td { @for s in &t.schedule { span.chip { (s) } } }
                    td { (names(&t.allow)) }
                    td { (names(&t.block)) }
                    td { (t.flag.iter().map(|(c, s)| format!("{c} ({s})")).collect::<Vec<_>>().join(", ")) }
                    td {
                        form.inline method="post" action="/policy/timed" data-confirm={ "Remove this timed rule of " (role) "?" } {
                            (ui::csrf(user))
                            input type="hidden" name="base" value=(cur.base);
                            input type="hidden" name="op" value="remove";
                            input type="hidden" name="role" value=(role);
                            input type="hidden" name="index" value=(i);
                            input type="hidden" name="reason" value={ "removed timed rule " (edit::describe_timed(t)) " of " (role) };
                            button.btn.secondary.small type="submit" { "Remove" }
                        }
                    }
                } } }
            } }
        }
        @if c.schedules.is_empty() {
            p.muted { "Add a schedule below before adding a timed rule." }
        } @else {
            form.card #add-timed method="post" action="/policy/timed" {
                (ui::csrf(user))
                input type="hidden" name="base" value=(cur.base);
                input type="hidden" name="op" value="add";
                h3.mt0 { "Add a timed rule" }
                div.form-grid {
                    div { label for="t-role" { "Role" } select #t-role name="role" { @for r in c.roles.keys() { option value=(r) { (r) } } } }
                    div { span.label { "During (any of)" } div.checks { @for s in c.schedules.keys() {
                        label.check { input type="checkbox" name="schedule" value=(s); " " (s) }
                    } } }
                }
                div.form-grid {
                    div { label for="t-allow" { "Allow" } select #t-allow name="allow" multiple size="6" {
                        @for cat in Category::ALL.iter().filter(|c| !c.is_locked()) { option value=(cat.name()) { (cat.label()) } }
                    } }
                    div { label for="t-block" { "Block" } select #t-block name="block" multiple size="6" {
                        @for cat in Category::ALL.iter().filter(|c| !c.is_locked()) { option value=(cat.name()) { (cat.label()) } }
                    } }
                    div {
                        label for="t-flag" { "Flag" } select #t-flag name="flag" {
                            option value="" { "nothing" }
                            @for cat in Category::ALL.iter().filter(|c| !c.is_locked()) { option value=(cat.name()) { (cat.label()) } }
                        }
                        label for="t-sev" { "with severity" } select #t-sev name="severity" {
                            @for s in ["low", "medium", "high", "critical"] { option value=(s) { (s) } }
                        }
                    }
                }
                label for="t-reason" { "Why" }
                input #t-reason type="text" name="reason" required maxlength="500" placeholder="e.g. Staff may use social media at lunch and after school (SLT, 12 Nov)";
                div.actions { button.btn type="submit" { "Add and apply" } }
            }
        }
    }
}

/// `Autumn 2026: 2026-09-03..2026-12-18`, one term a line.
fn term_lines(terms: &[schoolgate_classifier::config::schedule::Term]) -> String {
    terms
        .iter()
        .map(|t| {
            if t.name.is_empty() {
                format!("{}..{}", t.start, t.end)
            } else {
                format!("{}: {}..{}", t.name, t.start, t.end)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn parse_term_line(line: &str) -> Result<TermEdit> {
    let (name, range) = match line.rsplit_once(':') {
        Some((n, r)) => (n.trim(), r.trim()),
        None => ("", line.trim()),
    };
    let (start, end) = range.split_once("..").ok_or_else(|| {
        DashboardError::bad_request(format!(
            "`{line}` is not a term: write \"Autumn 2026: 2026-09-03..2026-12-18\""
        ))
    })?;
    Ok(TermEdit {
        name: name.to_owned(),
        start: start.trim().to_owned(),
        end: end.trim().to_owned(),
    })
}

/// `[calendar]`: school days, term dates, closures.
fn calendar_view(user: &CurrentUser, cur: &Current) -> Markup {
    let cal = &cur.config.calendar;
    let days: Vec<String> = cal
        .school_days
        .iter()
        .filter_map(|d| serde_json::to_value(d).ok())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let closures: Vec<String> = cal
        .closures
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    html! {
        h2 #calendar { "School calendar" }
        form.card method="post" action="/policy/calendar" {
            (ui::csrf(user))
            input type="hidden" name="base" value=(cur.base);
            p.muted.small.mt0 { "Schedules on \"school-days\" apply on these days, inside a term (when terms are given) and not on a closure." }
            span.label { "School days" }
            div.checks { @for (v, l) in DAY_NAMES {
                label.check { input type="checkbox" name="school_day" value=(v) checked[days.iter().any(|d| d == v)]; " " (l) }
            } }
            div.form-grid {
                div { label for="terms" { "Terms (one a line: name: first day..last day)" }
                    textarea #terms name="terms" placeholder="Autumn 2026: 2026-09-03..2026-12-18" { (term_lines(&cal.terms)) } }
                div { label for="closures" { "Closures: half terms, INSET days, bank holidays (one a line: a date or first..last)" }
                    textarea #closures name="closures" placeholder="2026-10-26..2026-10-30" { (closures.join("\n")) } }
            }
            label for="c-reason" { "Why" }
            input #c-reason type="text" name="reason" required maxlength="500" placeholder="e.g. Term dates 2026-27 published by the trust";
            div.actions { button.btn type="submit" { "Save and apply" } }
        }
    }
}

async fn calendar_form(
    State(app): State<App>,
    user: CurrentUser,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response> {
    user.require(EDITORS, WHAT)?;
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let school_days: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k == "school_day")
        .map(|(_, v)| v.clone())
        .collect();
    let lines = |k: &str| -> Vec<String> {
        get(k)
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let terms = lines("terms")
        .iter()
        .map(|l| parse_term_line(l))
        .collect::<Result<Vec<_>>>()?;
    let change = Change::SetCalendar {
        school_days: Some(school_days),
        terms: Some(terms),
        closures: Some(lines("closures")),
    };
    save_and_return(
        &app,
        &user,
        get("base"),
        get("reason").unwrap_or(""),
        &[change],
        "/policy/schedules",
    )
    .await
}

async fn timed_form(
    State(app): State<App>,
    user: CurrentUser,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response> {
    user.require(EDITORS, WHAT)?;
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let all = |k: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
            .collect()
    };
    let categories = |k: &str| -> Result<Vec<Category>> {
        all(k)
            .into_iter()
            .map(|c| {
                Category::from_name(c)
                    .ok_or_else(|| DashboardError::bad_request(format!("unknown category `{c}`")))
            })
            .collect()
    };
    let role = get("role").unwrap_or("").to_owned();
    let change = match get("op") {
        Some("remove") => Change::RemoveTimedRule {
            role,
            index: get("index")
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| DashboardError::bad_request("which timed rule (`index`)?"))?,
        },
        Some("add") => {
            let mut flag = std::collections::BTreeMap::new();
            if let Some(c) = categories("flag")?.first() {
                let sev = get("severity")
                    .and_then(Severity::from_name)
                    .unwrap_or(Severity::Low);
                flag.insert(*c, sev);
            }
            Change::AddTimedRule {
                role,
                schedule: all("schedule").into_iter().map(str::to_owned).collect(),
                allow: categories("allow")?,
                block: categories("block")?,
                flag,
            }
        }
        other => {
            return Err(DashboardError::bad_request(format!(
                "unknown operation `{}`",
                other.unwrap_or("")
            )));
        }
    };
    save_and_return(
        &app,
        &user,
        get("base"),
        get("reason").unwrap_or(""),
        &[change],
        "/policy/schedules",
    )
    .await
}

#[derive(Debug, Deserialize)]
struct ScheduleForm {
    base: Option<String>,
    reason: String,
    op: String,
    name: String,
    days: Option<String>,
    times: Option<String>,
}

async fn schedules_form(
    State(app): State<App>,
    user: CurrentUser,
    Form(f): Form<ScheduleForm>,
) -> Result<Response> {
    let change = match f.op.as_str() {
        "remove" => Change::RemoveSchedule {
            name: f.name.clone(),
        },
        _ => Change::SetSchedule {
            name: f.name.trim().to_owned(),
            days: f.days.clone().unwrap_or_default(),
            times: f
                .times
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::to_owned)
                .collect(),
        },
    };
    save_and_return(
        &app,
        &user,
        f.base.as_deref(),
        &f.reason,
        &[change],
        "/policy/schedules",
    )
    .await
}

// ---- networks, devices, user mappings ----

async fn networks_page(
    State(app): State<App>,
    user: CurrentUser,
    Query(f): Query<Flash>,
) -> Result<Markup> {
    user.require(EDITORS, WHAT)?;
    let cur = current(&app).await?;
    let c = &cur.config;
    let role_select = |id: &str| {
        html! {
            select id=(id) name="role" { @for r in c.roles.keys() { option value=(r) { (r) } } }
        }
    };
    let remove = |op: &str, key: &str, label: &str| {
        html! {
            form.inline method="post" action="/policy/networks" data-confirm={ "Remove " (label) "?" } {
                (ui::csrf(&user))
                input type="hidden" name="base" value=(cur.base);
                input type="hidden" name="op" value=(op);
                input type="hidden" name="key" value=(key);
                input type="hidden" name="reason" value={ "removed " (label) };
                button.btn.secondary.small type="submit" { "Remove" }
            }
        }
    };
    Ok(ui::page(
        &app,
        &user,
        "Networks & devices",
        "/policy/networks",
        html! {
            (ui::page_head("Networks & devices", Some("Which role a client gets: an authenticated user's mapping first, then the device, then the network; anything else gets the default role.")))
            (problem_banner(&cur))
            @if let Some(m) = non_empty(&f.ok) { (ui::alert("ok", m)) }
            p.muted { "Default role for unknown clients: " strong { (c.policy.default_role) } }
            h2 { "Networks" }
            div.table-wrap { table {
                thead { tr { th { "Network" } th { "Role" } th { "School" } th { "Name" } th {} } }
                tbody { @for n in &c.networks { tr {
                    td.mono { (n.cidr.to_string()) } td { span.chip { (n.role) } } td { (n.school) } td { (n.name) }
                    td { (remove("remove-network", &n.cidr.to_string(), &format!("network {}", n.cidr))) }
                } } }
            } }
            form.card method="post" action="/policy/networks" {
                (ui::csrf(&user)) input type="hidden" name="base" value=(cur.base); input type="hidden" name="op" value="add-network";
                div.form-grid {
                    div { label for="n-cidr" { "Network (CIDR)" } input #n-cidr type="text" name="key" required placeholder="10.20.0.0/16"; }
                    div { label for="n-role" { "Role" } (role_select("n-role")) }
                    div { label for="n-school" { "School id" } input #n-school type="text" name="school"; }
                    div { label for="n-name" { "Name" } input #n-name type="text" name="name" placeholder="Pupil VLAN 20"; }
                }
                label for="n-reason" { "Why" } input #n-reason type="text" name="reason" required maxlength="500";
                div.actions { button.btn type="submit" { "Add network" } }
            }
            h2 { "Devices" }
            div.table-wrap { table {
                thead { tr { th { "Address" } th { "Role" } th { "Name" } th {} } }
                tbody { @for d in &c.devices { tr {
                    td.mono { (d.ip.to_string()) } td { span.chip { (d.role) } } td { (d.name) }
                    td { (remove("remove-device", &d.ip.to_string(), &format!("device {}", d.ip))) }
                } } }
            } }
            form.card method="post" action="/policy/networks" {
                (ui::csrf(&user)) input type="hidden" name="base" value=(cur.base); input type="hidden" name="op" value="add-device";
                div.form-grid {
                    div { label for="d-ip" { "Address" } input #d-ip type="text" name="key" required placeholder="10.20.9.10"; }
                    div { label for="d-role" { "Role" } (role_select("d-role")) }
                    div { label for="d-name" { "Name" } input #d-name type="text" name="name" placeholder="library-issue-desk"; }
                }
                label for="d-reason" { "Why" } input #d-reason type="text" name="reason" required maxlength="500";
                div.actions { button.btn type="submit" { "Add device" } }
            }
            h2 { "Users" }
            div.table-wrap { table {
                thead { tr { th { "User (proxy login)" } th { "Role" } th {} } }
                tbody { @for u in &c.users { tr {
                    td { (u.name) } td { span.chip { (u.role) } }
                    td { (remove("remove-user", &u.name, &format!("user mapping {}", u.name))) }
                } } }
            } }
            form.card method="post" action="/policy/networks" {
                (ui::csrf(&user)) input type="hidden" name="base" value=(cur.base); input type="hidden" name="op" value="add-user";
                div.form-grid {
                    div { label for="u-name" { "User name" } input #u-name type="text" name="key" required; }
                    div { label for="u-role" { "Role" } (role_select("u-role")) }
                }
                label for="u-reason" { "Why" } input #u-reason type="text" name="reason" required maxlength="500";
                div.actions { button.btn type="submit" { "Add user mapping" } }
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
struct NetworkForm {
    base: Option<String>,
    reason: String,
    op: String,
    key: String,
    role: Option<String>,
    school: Option<String>,
    name: Option<String>,
}

async fn networks_form(
    State(app): State<App>,
    user: CurrentUser,
    Form(f): Form<NetworkForm>,
) -> Result<Response> {
    let role = f.role.clone().unwrap_or_default();
    let change = match f.op.as_str() {
        "add-network" => Change::AddNetwork {
            cidr: f.key.clone(),
            role,
            school: f.school.clone().unwrap_or_default(),
            name: f.name.clone().unwrap_or_default(),
        },
        "remove-network" => Change::RemoveNetwork {
            cidr: f.key.clone(),
        },
        "add-device" => Change::AddDevice {
            ip: f.key.clone(),
            role,
            name: f.name.clone().unwrap_or_default(),
        },
        "remove-device" => Change::RemoveDevice { ip: f.key.clone() },
        "add-user" => Change::AddUserMapping {
            name: f.key.clone(),
            role,
        },
        "remove-user" => Change::RemoveUserMapping {
            name: f.key.clone(),
        },
        other => {
            return Err(DashboardError::bad_request(format!(
                "unknown operation `{other}`"
            )));
        }
    };
    save_and_return(
        &app,
        &user,
        f.base.as_deref(),
        &f.reason,
        &[change],
        "/policy/networks",
    )
    .await
}

// ---- Test a URL ----

/// The verdict of one role for a URL.
#[derive(Clone, Debug, Serialize)]
pub struct RoleVerdict {
    pub role: String,
    pub action: Action,
    pub category: Option<Category>,
    pub categories: Vec<Category>,
    pub severity: Option<Severity>,
    pub rule: String,
    pub reason: String,
}

/// Decides `url` for every role at `at`, exactly as the filter would.
pub fn test_url(app: &App, url: &str, at: Timestamp) -> Vec<RoleVerdict> {
    let policy = app.policy.load();
    policy
        .roles()
        .map(|(id, role)| {
            let v = policy.decide(&Request::url(id, url, at));
            RoleVerdict {
                role: role.name.to_string(),
                action: v.action,
                category: v.category,
                categories: v.categories.iter().collect(),
                severity: v.severity,
                rule: v.rule.to_string(),
                reason: v.reason(),
            }
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct TestQuery {
    url: Option<String>,
    /// `YYYY-MM-DDTHH:MM` in school time (an `<input type=datetime-local>`).
    at: Option<String>,
}

fn parse_at(app: &App, at: Option<&str>) -> Result<Timestamp> {
    let Some(s) = at.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(app.clock.now());
    };
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let dt: jiff::civil::DateTime = s.parse().map_err(|_| {
        DashboardError::bad_request(format!("`{s}` is not a time (YYYY-MM-DDTHH:MM)"))
    })?;
    dt.to_zoned(app.tz())
        .map(|z| z.timestamp())
        .map_err(|e| DashboardError::bad_request(e.to_string()))
}

fn check_url(url: &str) -> Result<&str> {
    let url = url.trim();
    if url.is_empty() || url.len() > 4096 {
        return Err(DashboardError::bad_request(
            "give a URL or host of at most 4096 characters",
        ));
    }
    Ok(url)
}

async fn test_api(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<TestQuery>,
) -> Result<axum::Json<Vec<RoleVerdict>>> {
    user.require(EDITORS, "Test a URL")?;
    let url = check_url(q.url.as_deref().unwrap_or(""))?;
    let at = parse_at(&app, q.at.as_deref())?;
    Ok(axum::Json(test_url(&app, url, at)))
}

async fn test_page(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<TestQuery>,
) -> Result<Response> {
    user.require(EDITORS, "Test a URL")?;
    let tz = app.tz();
    let url = q.url.as_deref().map(str::trim).filter(|u| !u.is_empty());
    let result = match url {
        Some(u) => {
            let at = parse_at(&app, q.at.as_deref())?;
            Some((at, test_url(&app, check_url(u)?, at)))
        }
        None => None,
    };
    let at_value = q.at.clone().unwrap_or_else(|| {
        app.clock
            .now()
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M")
            .to_string()
    });
    Ok(ui::page(
        &app,
        &user,
        "Test a URL",
        "/policy/test",
        html! {
            (ui::page_head("Test a URL", Some("What every role gets for a URL or host, and why: the same engine the filter runs.")))
            form.card.filters method="get" action="/policy/test" {
                div.grow { label for="url" { "URL or host" } input #url type="text" name="url" value=[url] placeholder="https://www.bet365.com/ or youtube.com" autofocus; }
                div { label for="at" { "At (school time)" } input #at type="datetime-local" name="at" value=(at_value); }
                div { button.btn type="submit" { "Test" } }
            }
            @if let Some((at, verdicts)) = &result {
                p.muted { "Verdicts for " strong.mono { (url.unwrap_or("")) } " at " (ui::when(*at, &tz)) ":" }
                div.table-wrap { table.verdicts {
                    thead { tr { th { "Role" } th { "Verdict" } th { "Category" } th { "Severity" } th { "Why" } } }
                    tbody { @for v in verdicts { tr {
                        td { a href={ "/policy/role/" (v.role) } { strong { (v.role) } } }
                        td { (ui::action_badge(v.action)) }
                        td { @if let Some(c) = v.category { (c.label()) } @else { span.muted { "—" } } }
                        td { (ui::severity_badge(v.severity)) }
                        td.small { (v.reason) }
                    } } }
                } }
            }
        },
    )
    .into_response())
}

// ---- history ----

async fn history_api(
    State(app): State<App>,
    user: CurrentUser,
) -> Result<axum::Json<Vec<versions::Version>>> {
    user.require(HISTORY_READERS, "the change history")?;
    Ok(axum::Json(app.db.call(|c| versions::list(c, 500)).await?))
}

async fn history_page(State(app): State<App>, user: CurrentUser) -> Result<Markup> {
    user.require(HISTORY_READERS, "the change history")?;
    let list = app.db.call(|c| versions::list(c, 500)).await?;
    let tz = app.tz();
    Ok(ui::page(
        &app,
        &user,
        "Change history",
        "/policy/history",
        html! {
            (ui::page_head("Change history", Some("Every configuration the filter has run: who changed what, when and why. The record of what is blocked and why.")))
            div.table-wrap { table {
                thead { tr { th { "Version" } th { "When" } th { "Who" } th { "Why" } th { "What changed" } } }
                tbody { @for v in &list { tr {
                    td { a href={ "/policy/history/" (v.id) } { "#" (v.id) } }
                    td { (ui::date_time(v.time, &tz)) }
                    td { (v.actor) }
                    td { (v.reason) }
                    td.small { @for s in v.summary.iter().take(6) { div { (s) } } @if v.summary.len() > 6 { div.muted { "and " (v.summary.len() - 6) " more" } } }
                } } }
            } }
        },
    ))
}

async fn version_data(
    app: &App,
    user: &CurrentUser,
    id: i64,
) -> Result<(versions::Version, String, Option<String>)> {
    user.require(HISTORY_READERS, "the change history")?;
    app.db
        .call(move |c| versions::get(c, id))
        .await?
        .ok_or_else(|| DashboardError::not_found(format!("version {id}")))
}

async fn version_api(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<axum::Json<serde_json::Value>> {
    let (v, text, prev) = version_data(&app, &user, id).await?;
    let diff = versions::diff(prev.as_deref().unwrap_or(""), &text);
    Ok(axum::Json(
        serde_json::json!({ "version": v, "text": text, "diff": diff }),
    ))
}

async fn version_page(
    State(app): State<App>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Markup> {
    let (v, text, prev) = version_data(&app, &user, id).await?;
    let tz = app.tz();
    let diff = versions::diff(prev.as_deref().unwrap_or(""), &text);
    Ok(ui::page(
        &app,
        &user,
        &format!("Version {id}"),
        "/policy/history",
        html! {
            (ui::page_head(&format!("Version #{id}"), Some(&format!("{} by {} — {}", ui::date_time(v.time, &tz), v.actor, v.reason))))
            div.card { h2 { "What changed" } @for s in &v.summary { div { (s) } } }
            div.card {
                h2 { "Diff" }
                div.diff {
                    @for l in &diff {
                        @match l {
                            versions::DiffLine::Same(s) => span.ctx { "  " (s) },
                            versions::DiffLine::Added(s) => span.add { "+ " (s) },
                            versions::DiffLine::Removed(s) => span.del { "- " (s) },
                            versions::DiffLine::Skipped(n) => span.ctx { "… " (n) " unchanged lines" },
                        }
                    }
                }
                p.small.muted { "SHA-256 " span.mono { (v.sha256) } }
            }
        },
    ))
}
