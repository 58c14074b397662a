//! Login, logout, password change, the Users page and the Audit page.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use http::header::SET_COOKIE;
use maud::{Markup, html};
use serde::Deserialize;

use crate::app::App;
use crate::audit::{self, AuditFilter};
use crate::auth::{self, CurrentUser, Role};
use crate::error::{DashboardError, Result};
use crate::ui;
use crate::web::{
    ClientIp, FORM_COOKIE, Form, Json, MaybeUser, Query, SESSION_COOKIE, SessionToken, cookie,
    cookies, non_empty, see_other,
};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/login", get(login_page).post(login_form))
        .route("/logout", post(logout_form))
        .route("/api/login", post(login_api))
        .route("/api/logout", post(logout_api))
        .route("/api/session", get(session_api))
        .route("/account", get(account_page))
        .route("/account/password", post(password_form))
        .route("/api/account/password", post(password_api))
        .route("/users", get(users_page).post(add_user_form))
        .route("/users/{name}", post(user_action_form))
        .route("/api/users", get(users_api).post(add_user_api))
        .route("/audit", get(audit_page))
        .route("/api/audit", get(audit_api))
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// The login form's double-submit token: reuse the cookie's if there is one.
fn form_token(headers: &http::HeaderMap) -> (String, bool) {
    match cookies(headers).get(FORM_COOKIE) {
        Some(t) if t.len() >= 16 => (t.clone(), false),
        _ => (auth::random_token(18), true),
    }
}

fn login_view(app: &App, token: &str, next: Option<&str>, error: Option<&str>) -> Markup {
    ui::bare_page(
        app,
        "Log in",
        html! {
            h1 { "Log in" }
            @if let Some(e) = error { (ui::alert("error", e)) }
            form method="post" action="/login" {
                input type="hidden" name="form_token" value=(token);
                @if let Some(n) = next { input type="hidden" name="next" value=(n); }
                label for="username" { "User name" }
                input #username type="text" name="username" autocomplete="username" autofocus required;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button.btn type="submit" { "Log in" }
            }
            p.muted.small { "Accounts are created by your network manager. Every view of a person's activity is recorded in the audit log." }
        },
    )
}

async fn login_page(
    State(app): State<App>,
    MaybeUser(user): MaybeUser,
    headers: http::HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    if let Some(u) = user {
        return see_other(u.role.home());
    }
    let (token, fresh) = form_token(&headers);
    let next = ui::safe_next(q.next.as_deref());
    let mut resp = login_view(&app, &token, next.as_deref(), None).into_response();
    if fresh {
        resp.headers_mut()
            .append(SET_COOKIE, cookie(&app, FORM_COOKIE, &token, 3600));
    }
    resp
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

async fn login_form(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    headers: http::HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let result = match app.login_limiter.check(ip, app.clock.now_ms()) {
        Ok(()) => {
            auth::login(
                &app.db,
                &app.clock,
                app.auth_settings(),
                &f.username,
                &f.password,
                ip,
            )
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(s) => {
            let to =
                ui::safe_next(f.next.as_deref()).unwrap_or_else(|| s.user.role.home().to_owned());
            let mut resp = see_other(&to);
            let max_age = (s.user.expires.as_second() - app.clock.now().as_second()).max(0);
            resp.headers_mut()
                .append(SET_COOKIE, cookie(&app, SESSION_COOKIE, &s.token, max_age));
            resp
        }
        Err(e) => {
            let (token, _) = form_token(&headers);
            let next = ui::safe_next(f.next.as_deref());
            let status = e.status();
            (
                status,
                login_view(&app, &token, next.as_deref(), Some(&e.to_string())),
            )
                .into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
struct LoginJson {
    username: String,
    password: String,
}

async fn login_api(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    Json(f): Json<LoginJson>,
) -> Result<Response> {
    app.login_limiter.check(ip, app.clock.now_ms())?;
    let s = auth::login(
        &app.db,
        &app.clock,
        app.auth_settings(),
        &f.username,
        &f.password,
        ip,
    )
    .await?;
    let max_age = (s.user.expires.as_second() - app.clock.now().as_second()).max(0);
    let mut resp = axum::Json(&s.user).into_response();
    resp.headers_mut()
        .append(SET_COOKIE, cookie(&app, SESSION_COOKIE, &s.token, max_age));
    Ok(resp)
}

async fn session_api(user: CurrentUser) -> axum::Json<CurrentUser> {
    axum::Json(user)
}

async fn end_session(app: &App, user: &CurrentUser, token: Option<SessionToken>) -> Result<()> {
    if let Some(SessionToken(t)) = token {
        auth::logout(&app.db, app.clock.now_ms(), &t, user).await?;
    }
    Ok(())
}

async fn logout_form(
    State(app): State<App>,
    user: CurrentUser,
    token: Option<axum::Extension<SessionToken>>,
) -> Result<Response> {
    end_session(&app, &user, token.map(|t| t.0)).await?;
    let mut resp = see_other("/login");
    resp.headers_mut()
        .append(SET_COOKIE, cookie(&app, SESSION_COOKIE, "", 0));
    Ok(resp)
}

async fn logout_api(
    State(app): State<App>,
    user: CurrentUser,
    token: Option<axum::Extension<SessionToken>>,
) -> Result<Response> {
    end_session(&app, &user, token.map(|t| t.0)).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .append(SET_COOKIE, cookie(&app, SESSION_COOKIE, "", 0));
    Ok(resp)
}

fn account_view(app: &App, user: &CurrentUser, msg: Option<(&str, &str)>) -> Markup {
    let tz = app.tz();
    ui::page(
        app,
        user,
        "Account",
        "/account",
        html! {
            (ui::page_head("Your account", None))
            @if let Some((kind, m)) = msg { (ui::alert(kind, m)) }
            div.grid.grid-2 {
                div.card {
                    h2 { "Signed in" }
                    dl.kv {
                        dt { "User" } dd { (user.name) }
                        dt { "Role" } dd { (user.role.label()) }
                        dt { "Session ends" } dd { (ui::when(user.expires, &tz)) }
                    }
                }
                div.card {
                    h2 { "Change password" }
                    form method="post" action="/account/password" {
                        (ui::csrf(user))
                        label for="current" { "Current password" }
                        input #current type="password" name="current" autocomplete="current-password" required;
                        label for="new" { "New password (at least 10 characters)" }
                        input #new type="password" name="new" autocomplete="new-password" required minlength="10";
                        label for="confirm" { "New password again" }
                        input #confirm type="password" name="confirm" autocomplete="new-password" required;
                        div.actions { button.btn type="submit" { "Change password" } }
                    }
                }
            }
        },
    )
}

async fn account_page(State(app): State<App>, user: CurrentUser) -> Markup {
    account_view(&app, &user, None)
}

#[derive(Debug, Deserialize)]
struct PasswordForm {
    current: String,
    new: String,
    confirm: Option<String>,
}

async fn change(
    app: &App,
    user: &CurrentUser,
    token: Option<SessionToken>,
    f: &PasswordForm,
) -> Result<()> {
    if f.confirm.as_deref().is_some_and(|c| c != f.new) {
        return Err(DashboardError::bad_request("the two new passwords differ"));
    }
    let token = token.map(|t| t.0).unwrap_or_default();
    auth::change_password(&app.db, &app.clock, user, &f.current, &f.new, &token).await
}

async fn password_form(
    State(app): State<App>,
    user: CurrentUser,
    token: Option<axum::Extension<SessionToken>>,
    Form(f): Form<PasswordForm>,
) -> Response {
    match change(&app, &user, token.map(|t| t.0), &f).await {
        Ok(()) => account_view(
            &app,
            &user,
            Some((
                "ok",
                "Password changed. Your other sessions have been logged out.",
            )),
        )
        .into_response(),
        Err(e) => (
            e.status(),
            account_view(&app, &user, Some(("error", &e.to_string()))),
        )
            .into_response(),
    }
}

async fn password_api(
    State(app): State<App>,
    user: CurrentUser,
    token: Option<axum::Extension<SessionToken>>,
    Json(f): Json<PasswordForm>,
) -> Result<StatusCode> {
    change(&app, &user, token.map(|t| t.0), &f).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- Users (network manager) ----

const USERS_WHAT: &str = "managing dashboard accounts";

async fn users_page(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<Flash>,
) -> Result<Markup> {
    user.require(&[Role::NetworkManager], USERS_WHAT)?;
    let now = app.clock.now_ms();
    let accounts = app.db.call(move |c| auth::accounts(c, now)).await?;
    let tz = app.tz();
    Ok(ui::page(
        &app,
        &user,
        "Users",
        "/users",
        html! {
            (ui::page_head("Dashboard users", Some("Who can use this dashboard, and in which role.")))
            @if let Some(m) = non_empty(&q.ok) { (ui::alert("ok", m)) }
            div.table-wrap {
                table {
                    thead { tr { th { "User" } th { "Role" } th { "Status" } th { "Last login" } th { "" } } }
                    tbody {
                        @for a in &accounts {
                            tr {
                                td { strong { (a.name) } }
                                td { (a.role.label()) }
                                td {
                                    @if a.disabled { span.badge.st-closed { "disabled" } }
                                    @else if let Some(t) = a.locked_until { span.badge.st-open { "locked until " (ui::clock_time(t, &tz)) } }
                                    @else { span.badge.act-allow { "active" } }
                                }
                                td { @if let Some(t) = a.last_login { (ui::when(t, &tz)) } @else { span.muted { "never" } } }
                                td {
                                    @if a.name != user.name {
                                        form.inline method="post" action={ "/users/" (a.name) } {
                                            (ui::csrf(&user))
                                            @if a.locked_until.is_some() {
                                                button.btn.secondary.small name="action" value="unlock" { "Unlock" } " "
                                            }
                                            @if a.disabled {
                                                button.btn.secondary.small name="action" value="enable" { "Enable" }
                                            } @else {
                                                button.btn.secondary.small name="action" value="disable" { "Disable" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div.card {
                h2 { "Add a user" }
                form method="post" action="/users" {
                    (ui::csrf(&user))
                    div.form-grid {
                        div { label for="name" { "User name" } input #name type="text" name="name" required; }
                        div {
                            label for="role" { "Role" }
                            select #role name="role" {
                                @for r in Role::ALL { option value=(r.name()) { (r.label()) } }
                            }
                        }
                        div { label for="password" { "Temporary password" } input #password type="password" name="password" required minlength="10" autocomplete="new-password"; }
                    }
                    div.actions { button.btn type="submit" { "Add user" } span.muted.small { "Ask them to change it at first login (Account page)." } }
                }
            }
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct Flash {
    pub ok: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NewUser {
    name: String,
    role: String,
    password: String,
}

async fn add(app: &App, user: &CurrentUser, f: &NewUser) -> Result<()> {
    user.require(&[Role::NetworkManager], USERS_WHAT)?;
    let name = f.name.trim().to_owned();
    auth::valid_user_name(&name)?;
    let role: Role = f.role.parse()?;
    auth::check_password_rules(&name, &f.password)?;
    let pw = f.password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
        .await
        .map_err(|e| DashboardError::Internal(e.to_string()))??;
    let now = app.clock.now_ms();
    let (actor, arole) = (user.name.clone(), user.role);
    app.db
        .call(move |c| {
            auth::insert_user(
                c,
                now,
                &audit::AuditEntry {
                    actor: &actor,
                    role: arole.name(),
                    action: "",
                    target: "",
                    reason: "added in the dashboard",
                    detail: "",
                },
                &name,
                role,
                &hash,
            )
        })
        .await
}

async fn add_user_form(
    State(app): State<App>,
    user: CurrentUser,
    Form(f): Form<NewUser>,
) -> Result<Response> {
    add(&app, &user, &f).await?;
    Ok(see_other(&format!(
        "/users?ok={}",
        ui::url_encode(&format!("Added {}.", f.name.trim()))
    )))
}

async fn add_user_api(
    State(app): State<App>,
    user: CurrentUser,
    Json(f): Json<NewUser>,
) -> Result<StatusCode> {
    add(&app, &user, &f).await?;
    Ok(StatusCode::CREATED)
}

async fn users_api(
    State(app): State<App>,
    user: CurrentUser,
) -> Result<axum::Json<Vec<auth::Account>>> {
    user.require(&[Role::NetworkManager], USERS_WHAT)?;
    let now = app.clock.now_ms();
    Ok(axum::Json(
        app.db.call(move |c| auth::accounts(c, now)).await?,
    ))
}

#[derive(Debug, Deserialize)]
struct UserAction {
    action: String,
}

async fn user_action_form(
    State(app): State<App>,
    user: CurrentUser,
    Path(name): Path<String>,
    Form(f): Form<UserAction>,
) -> Result<Response> {
    user.require(&[Role::NetworkManager], USERS_WHAT)?;
    if name == user.name {
        return Err(DashboardError::bad_request(
            "you cannot disable or unlock your own account here",
        ));
    }
    let sql = match f.action.as_str() {
        "disable" => "UPDATE users SET disabled = 1 WHERE name = ?1",
        "enable" => "UPDATE users SET disabled = 0 WHERE name = ?1",
        "unlock" => "UPDATE users SET locked_until_ms = 0, failed = 0 WHERE name = ?1",
        other => {
            return Err(DashboardError::bad_request(format!(
                "unknown action `{other}`"
            )));
        }
    };
    let now = app.clock.now_ms();
    let (actor, role, action, target) = (
        user.name.clone(),
        user.role,
        f.action.clone(),
        format!("account {name}"),
    );
    app.db
        .call(move |c| {
            let tx = c.transaction()?;
            if tx.execute(sql, [&name])? == 0 {
                return Err(DashboardError::not_found(format!("user `{name}`")));
            }
            if action == "disable" {
                // A disabled account's sessions end now, not at their expiry.
                tx.execute(
                    "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
                    [&name],
                )?;
            }
            let verb = match action.as_str() {
                "disable" => "disabled account",
                "enable" => "enabled account",
                _ => "unlocked account",
            };
            audit::append(
                &tx,
                now,
                &audit::AuditEntry {
                    actor: &actor,
                    role: role.name(),
                    action: verb,
                    target: &target,
                    reason: "",
                    detail: "",
                },
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(see_other("/users?ok=Saved."))
}

// ---- Audit log ----

const AUDIT_WHAT: &str = "the audit log";
const AUDIT_ROLES: &[Role] = &[Role::NetworkManager, Role::EsafetyLead, Role::Headteacher];

#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    actor: Option<String>,
    target: Option<String>,
    before: Option<i64>,
}

async fn audit_records(
    app: &App,
    q: &AuditQuery,
) -> Result<(Vec<audit::AuditRecord>, audit::ChainStatus)> {
    let f = AuditFilter {
        actor: non_empty(&q.actor).map(str::to_owned),
        target: non_empty(&q.target).map(str::to_owned),
        before_seq: q.before,
        limit: 200,
    };
    app.db
        .call(move |c| Ok((audit::list(c, &f)?, audit::verify(c)?)))
        .await
}

async fn audit_page(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<AuditQuery>,
) -> Result<Markup> {
    user.require(AUDIT_ROLES, AUDIT_WHAT)?;
    let (records, chain) = audit_records(&app, &q).await?;
    let tz = app.tz();
    let older = records
        .last()
        .filter(|_| records.len() == 200)
        .map(|r| r.seq);
    Ok(ui::page(
        &app,
        &user,
        "Audit log",
        "/audit",
        html! {
            (ui::page_head("Audit log", Some("Every view of a person's activity and every change, with who, when and why. Nobody can edit it.")))
            @match chain.broken_at {
                None => div.alert.alert-ok { span.dot.ok {} "Chain intact: " (ui::thousands(chain.entries as u64)) " entries, latest hash " span.mono { (chain.last_hash.get(..16).unwrap_or("")) "…" } },
                Some(seq) => div.alert.alert-error { span.dot.bad {} "The chain is broken at entry " (seq) ": entries were changed or removed outside the dashboard." },
            }
            form.filters method="get" action="/audit" {
                div { label for="actor" { "Who" } input #actor type="text" name="actor" value=[q.actor.as_deref()]; }
                div { label for="target" { "About (contains)" } input #target type="text" name="target" value=[q.target.as_deref()]; }
                div { button.btn.secondary type="submit" { "Filter" } }
            }
            div.table-wrap {
                table {
                    thead { tr { th { "#" } th { "When" } th { "Who" } th { "Did" } th { "What / whom" } th { "Why" } th { "Detail" } } }
                    tbody {
                        @for r in &records {
                            tr {
                                td.muted.num { (r.seq) }
                                td { (ui::date_time(r.time, &tz)) }
                                td { strong { (r.actor) } br; span.muted.small { (r.role) } }
                                td { (r.action) }
                                td { (r.target) }
                                td { (r.reason) }
                                td.small.muted { (r.detail) }
                            }
                        }
                    }
                }
            }
            @if let Some(seq) = older { a.btn.secondary href={ "/audit?before=" (seq) } { "Older entries" } }
        },
    ))
}

async fn audit_api(
    State(app): State<App>,
    user: CurrentUser,
    Query(q): Query<AuditQuery>,
) -> Result<axum::Json<serde_json::Value>> {
    user.require(AUDIT_ROLES, AUDIT_WHAT)?;
    let (records, chain) = audit_records(&app, &q).await?;
    Ok(axum::Json(
        serde_json::json!({ "chain": chain, "entries": records }),
    ))
}
