//! The Lists page: each list source with its entry counts per category, read time
//! and parse errors; adding a source; reloading ("update now": the lists are read
//! again from disk and from the updater's cache).

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::auth::{CurrentUser, Role};
use crate::error::{DashboardError, Result};
use crate::policy_editor::{self, edit::Change};
use crate::ui;
use crate::web::{Form, Query, non_empty, see_other};

const WHAT: &str = "the Lists page";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/lists", get(page).post(add_form))
        .route("/lists/reload", post(reload_form))
        .route("/api/lists", get(api))
        .route("/api/lists/reload", post(reload_api))
}

#[derive(Debug, Serialize)]
struct ListsJson {
    loaded_at: Option<jiff::Timestamp>,
    sources: Vec<schoolgate_lists::load::SourceReport>,
    per_category: Vec<(schoolgate_classifier::Category, u64)>,
    domains: u64,
    urls: u64,
}

async fn api(State(app): State<App>, user: CurrentUser) -> Result<axum::Json<ListsJson>> {
    user.require(&[Role::NetworkManager], WHAT)?;
    let load = app.load_state();
    let p = app.policy.load();
    Ok(axum::Json(ListsJson {
        loaded_at: load.as_ref().map(|l| l.at),
        sources: load.map(|l| l.report.sources).unwrap_or_default(),
        per_category: p.stats().per_category.clone(),
        domains: p.stats().domains,
        urls: p.stats().urls,
    }))
}

/// Reloads the configuration as it is on disk (re-reading every list).
async fn reload(app: &App, user: &CurrentUser) -> Result<usize> {
    user.require(&[Role::NetworkManager], WHAT)?;
    let _guard = app.config_lock.lock().await;
    let text = tokio::fs::read_to_string(&app.config_path).await?;
    let file = app.config_path.display().to_string();
    let reloader = app.reloader.clone();
    let report = tokio::task::spawn_blocking(move || reloader.reload_text(&file, &text))
        .await
        .map_err(|e| DashboardError::Internal(e.to_string()))?
        .map_err(|e| DashboardError::Refused(e.to_string()))?;
    let n = report.sources.len();
    app.set_load(report);
    let now = app.clock.now_ms();
    let (actor, role) = (user.name.clone(), user.role);
    app.db
        .call(move |c| {
            crate::audit::append(
                c,
                now,
                &crate::audit::AuditEntry {
                    actor: &actor,
                    role: role.name(),
                    action: "reloaded lists",
                    target: "configuration",
                    reason: "update now",
                    detail: "",
                },
            )?;
            Ok(())
        })
        .await?;
    Ok(n)
}

async fn reload_form(State(app): State<App>, user: CurrentUser) -> Result<Response> {
    let n = reload(&app, &user).await?;
    Ok(see_other(&format!(
        "/lists?ok={}",
        ui::url_encode(&format!("Reloaded {n} list sources."))
    )))
}

async fn reload_api(
    State(app): State<App>,
    user: CurrentUser,
) -> Result<axum::Json<serde_json::Value>> {
    let n = reload(&app, &user).await?;
    Ok(axum::Json(serde_json::json!({ "sources": n })))
}

#[derive(Debug, Deserialize)]
struct AddForm {
    base: Option<String>,
    reason: String,
    name: String,
    format: String,
    category: Option<String>,
    location: String,
}

async fn add_form(
    State(app): State<App>,
    user: CurrentUser,
    Form(f): Form<AddForm>,
) -> Result<Response> {
    let loc = f.location.trim();
    let (path, url) = if loc.starts_with("http://") || loc.starts_with("https://") {
        (None, Some(loc.to_owned()))
    } else {
        (Some(loc.to_owned()), None)
    };
    let change = Change::AddList {
        name: f.name.clone(),
        format: f.format.clone(),
        category: f.category.clone().filter(|c| !c.is_empty()),
        path,
        url,
    };
    let out = policy_editor::save(&app, &user, f.base.as_deref(), &f.reason, &[change]).await?;
    let msg = out
        .changes
        .first()
        .cloned()
        .unwrap_or_else(|| "Nothing changed.".into());
    Ok(see_other(&format!("/lists?ok={}", ui::url_encode(&msg))))
}

#[derive(Debug, Deserialize)]
struct Flash {
    ok: Option<String>,
}

async fn page(State(app): State<App>, user: CurrentUser, Query(f): Query<Flash>) -> Result<Markup> {
    user.require(&[Role::NetworkManager], WHAT)?;
    let load = app.load_state();
    let tz = app.tz();
    let p = app.policy.load();
    let stats = p.stats().clone();
    let cur = policy_editor::current(&app).await?;
    let mut per_cat = stats.per_category.clone();
    per_cat.sort_by_key(|c| std::cmp::Reverse(c.1));
    Ok(ui::page(
        &app,
        &user,
        "Lists",
        "/lists",
        html! {
            (ui::page_head("Lists", Some("Where the categories come from: each source, what it gave and what it could not read.")))
            @if let Some(m) = non_empty(&f.ok) { (ui::alert("ok", m)) }
            div.stats {
                (ui::stat("Domains", &ui::thousands(stats.domains), None))
                (ui::stat("URLs", &ui::thousands(stats.urls), None))
                (ui::stat("Keyword rules", &ui::thousands(stats.keyword_rules), None))
                (ui::stat("Last read", &load.as_ref().map(|l| ui::when(l.at, &tz)).unwrap_or_else(|| "at start".into()), None))
            }
            div.actions.noprint.mb {
                form.inline method="post" action="/lists/reload" { (ui::csrf(&user)) button.btn.secondary type="submit" { "Update now (re-read every list)" } }
            }
            @match &load {
                None => (ui::empty("No list report yet: the lists were read at start before the dashboard was told. Use Update now.")),
                Some(l) => div.table-wrap { table {
                    thead { tr { th { "Source" } th { "Format" } th { "Location" } th.num { "Entries" } th { "Categories" } th.num { "Malformed" } th.num { "Read in" } } }
                    tbody { @for s in &l.report.sources { tr {
                        td { strong { (s.name) } @if let Some(e) = &s.error { br; span.badge.act-block { "failed" } " " span.small { (e) } } }
                        td { (s.format) }
                        td.small.mono { (s.location) }
                        td.num { (ui::thousands(s.entries)) }
                        td.small { @for (c, n) in s.categories.iter().take(8) { span.chip { (c.name()) " " (ui::thousands(*n)) } } @if s.categories.len() > 8 { span.muted { "+" (s.categories.len() - 8) } } }
                        td.num { @if s.malformed > 0 { details { summary { (ui::thousands(s.malformed)) } @for e in &s.first_errors { div.small.mono { (e) } } } } @else { "0" } }
                        td.num { (s.millis) " ms" }
                    } } }
                } },
            }
            div.grid.grid-2 {
                div.card {
                    h2 { "Entries per category" }
                    (crate::charts::horizontal_bars(&per_cat.iter().take(15).map(|(c, n)| (c.name().to_owned(), *n)).collect::<Vec<_>>(), crate::charts::TOTAL))
                }
                div.card {
                    h2 { "Add a source" }
                    form method="post" action="/lists" {
                        (ui::csrf(&user))
                        input type="hidden" name="base" value=(cur.base);
                        div.form-grid {
                            div { label for="l-name" { "Name" } input #l-name type="text" name="name" required placeholder="blp-gambling"; }
                            div { label for="l-format" { "Format" } select #l-format name="format" { @for f in ["domains", "hosts", "adblock", "urls", "ut1"] { option value=(f) { (f) } } } }
                            div { label for="l-cat" { "Category (not for ut1)" } select #l-cat name="category" { option value="" { "—" } @for c in schoolgate_classifier::Category::ALL { option value=(c.name()) { (c.label()) } } } }
                        }
                        label for="l-loc" { "File path or https:// URL" }
                        input #l-loc type="text" name="location" required placeholder="/var/lib/schoolgate/lists/extra.txt";
                        label for="l-reason" { "Why" }
                        input #l-reason type="text" name="reason" required maxlength="500";
                        div.actions { button.btn type="submit" { "Add and apply" } }
                    }
                }
            }
        },
    ))
}
