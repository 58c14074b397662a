//! The router and the middleware every request passes: security headers, error
//! pages for people, sessions and the CSRF check on every state change.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use crate::app::App;
use crate::auth::{self, CurrentUser};
use crate::error::{DashboardError, ErrorBody};
use crate::ui;

/// Form and JSON bodies: the largest legitimate one is the policy matrix form
/// (roles x categories, a few tens of KiB).
pub const BODY_LIMIT: usize = 256 * 1024;

pub const SESSION_COOKIE: &str = "sg_session";
/// Double-submit token for the forms used before logging in.
pub const FORM_COOKIE: &str = "sg_form";

/// The session's cookie value, for logout and password change.
#[derive(Clone, Debug)]
pub struct SessionToken(pub String);

/// State-changing paths that need no session (they carry the double-submit token).
const PUBLIC_POSTS: &[&str] = &["/login", "/report", "/api/login", "/api/report"];

pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .merge(crate::accounts::routes())
        .merge(crate::health::routes())
        .merge(crate::policy_editor::routes())
        .merge(crate::lists::routes())
        .merge(crate::wrong_blocks::routes())
        .merge(crate::review::routes())
        .merge(crate::incidents::routes())
        .merge(crate::summary::routes())
        .fallback(not_found)
        .layer(from_fn_with_state(app.clone(), authenticate))
        .layer(from_fn_with_state(app.clone(), render_errors))
        .layer(from_fn_with_state(app.clone(), security_headers))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

async fn home(user: Option<axum::Extension<CurrentUser>>) -> Redirect {
    match user {
        Some(u) => Redirect::to(u.role.home()),
        None => Redirect::to("/login"),
    }
}

async fn not_found() -> DashboardError {
    DashboardError::not_found("no such page")
}

async fn css() -> Response {
    static_asset("text/css; charset=utf-8", ui::CSS)
}

async fn js() -> Response {
    static_asset("text/javascript; charset=utf-8", ui::JS)
}

fn static_asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The client's address (the TCP peer; the dashboard is not meant to sit behind a
/// proxy).
pub fn client_ip(req_ext: &http::Extensions) -> IpAddr {
    req_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

pub fn cookies(headers: &HeaderMap) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                out.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    out
}

/// A `Set-Cookie` value with the dashboard's attributes.
pub fn cookie(app: &App, name: &str, value: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if app.https { "; Secure" } else { "" };
    let s = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    );
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Finds the session, then refuses a state change without the right token.
async fn authenticate(State(app): State<App>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let jar = cookies(&parts.headers);
    let mut user = None;
    if let Some(token) = jar.get(SESSION_COOKIE) {
        match auth::session_user(&app.db, app.clock.now_ms(), token).await {
            Ok(Some(u)) => {
                parts.extensions.insert(u.clone());
                parts.extensions.insert(SessionToken(token.clone()));
                user = Some(u);
            }
            Ok(None) => {}
            Err(e) => return e.into_response(),
        }
    }
    let body = if is_safe(&parts.method) {
        body
    } else {
        let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
            Ok(b) => b,
            Err(_) => {
                return DashboardError::bad_request(format!(
                    "the request body is larger than {} KiB",
                    BODY_LIMIT / 1024
                ))
                .into_response();
            }
        };
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let field = |name: &str| {
            is_form
                .then(|| {
                    form_urlencoded::parse(&bytes)
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.into_owned())
                })
                .flatten()
        };
        let path = parts.uri.path();
        let verdict = if PUBLIC_POSTS.contains(&path) {
            if path.starts_with("/api/") {
                // A cross-site page cannot send JSON without a CORS preflight,
                // which this server never grants.
                let json = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                if json {
                    Ok(())
                } else {
                    Err(DashboardError::Csrf)
                }
            } else {
                match (jar.get(FORM_COOKIE), field("form_token")) {
                    (Some(c), Some(f)) if !c.is_empty() && auth::same_secret(c, &f) => Ok(()),
                    _ => Err(DashboardError::Csrf),
                }
            }
        } else {
            match &user {
                None => Err(DashboardError::Unauthenticated),
                Some(u) => {
                    let sent = parts
                        .headers
                        .get("x-csrf-token")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                        .or_else(|| field("csrf"));
                    match sent {
                        Some(t) if auth::same_secret(&t, &u.csrf) => Ok(()),
                        _ => Err(DashboardError::Csrf),
                    }
                }
            }
        };
        if let Err(e) = verdict {
            if matches!(e, DashboardError::Csrf) {
                tracing::warn!(path, user = ?user.as_ref().map(|u| &u.name), "CSRF check failed");
            }
            let mut resp = e.into_response();
            if let Some(u) = user {
                resp.extensions_mut().insert(u);
            }
            return resp;
        }
        Body::from(bytes)
    };
    let mut resp = next.run(Request::from_parts(parts, body)).await;
    if let Some(u) = user {
        resp.extensions_mut().insert(u);
    }
    resp
}

/// Browser routes get an HTML page (or the login page) for an error; `/api/`
/// routes keep the JSON.
async fn render_errors(State(app): State<App>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let path_q = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    let get = req.method() == Method::GET;
    let resp = next.run(req).await;
    if path.starts_with("/api/") {
        return resp;
    }
    let Some(err) = resp.extensions().get::<ErrorBody>().cloned() else {
        return resp;
    };
    if err.status == StatusCode::UNAUTHORIZED {
        let next = if get { path_q } else { "/".to_owned() };
        let to = format!("/login?next={}", ui::url_encode(&next));
        return Redirect::to(&to).into_response();
    }
    let user = resp.extensions().get::<CurrentUser>().cloned();
    let page = ui::error_page(&app, user.as_ref(), err.status, &err.message);
    (err.status, page).into_response()
}

async fn security_headers(State(app): State<App>, req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    // A page may set its own (the weekly summary allows `style` attributes).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The wrong-block form's URL carries an event reference; keep it on this site.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_static {
        // Pages show personal data: never leave them in a shared computer's cache.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if app.https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CurrentUser {
    type Rejection = DashboardError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or(DashboardError::Unauthenticated)
    }
}

/// The logged-in user, if any (for pages that also serve visitors).
#[derive(Clone, Debug)]
pub struct MaybeUser(pub Option<CurrentUser>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for MaybeUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(MaybeUser(parts.extensions.get::<CurrentUser>().cloned()))
    }
}

/// The client address of a request.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(&parts.extensions)))
    }
}

/// `axum::Form` with a clear 400 in the dashboard's error shape.
#[derive(Debug)]
pub struct Form<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Form<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = DashboardError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|f| Form(f.0))
            .map_err(|e| {
                DashboardError::bad_request(format!("the form is incomplete: {}", e.body_text()))
            })
    }
}

/// `axum::Json` with a clear 400 in the dashboard's error shape.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = DashboardError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|j| Json(j.0))
            .map_err(|e| DashboardError::bad_request(format!("bad JSON body: {}", e.body_text())))
    }
}

/// `axum::extract::Query` with a clear 400.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = DashboardError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| DashboardError::bad_request(format!("bad query: {}", e.body_text())))
    }
}

/// A 303 to `to` (after a form post).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Empty strings from forms as `None`.
pub fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}
