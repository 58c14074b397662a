//! [`DashboardError`]: every way a request can fail, mapped to one clear HTTP answer.
//!
//! Errors answer in JSON (`{"error": "..."}`) with an [`ErrorBody`] extension; the
//! page layer turns that into an HTML page for browser routes (and a redirect to
//! the login page for a missing session), so handlers never care which face asked.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// Why a dashboard request or operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// No session, or it expired: log in (again).
    #[error("not logged in, or the session has expired")]
    Unauthenticated,
    /// Logged in, but this role may not see or do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A state change without the session's CSRF token.
    #[error(
        "the form is out of date or did not come from this dashboard (CSRF check failed); reload the page and try again"
    )]
    Csrf,
    #[error("wrong user name or password")]
    BadCredentials,
    /// Too many failed logins: the account waits until `until` (school time).
    #[error("this account is locked after repeated failed logins; try again after {until}")]
    Locked { until: String },
    #[error("too many requests; wait a minute and try again")]
    RateLimited,
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// Someone else changed the same thing first.
    #[error("{0}")]
    Conflict(String),
    /// The configuration change was refused; the running policy is unchanged.
    #[error("the change was not applied; the running policy is unchanged:\n{0}")]
    Refused(String),
    #[error("dashboard state database: {0}")]
    State(#[from] rusqlite::Error),
    #[error("event store: {0}")]
    Store(#[from] schoolgate_events::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = DashboardError> = std::result::Result<T, E>;

impl DashboardError {
    pub fn status(&self) -> StatusCode {
        use DashboardError::*;
        match self {
            Unauthenticated | BadCredentials => StatusCode::UNAUTHORIZED,
            Forbidden(_) | Csrf => StatusCode::FORBIDDEN,
            Locked { .. } => StatusCode::LOCKED,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            NotFound(_) => StatusCode::NOT_FOUND,
            BadRequest(_) => StatusCode::BAD_REQUEST,
            Conflict(_) => StatusCode::CONFLICT,
            Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Store(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            State(_) | Store(_) | Io(_) | Tls(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn forbidden(what: impl Into<String>) -> DashboardError {
        DashboardError::Forbidden(what.into())
    }

    pub fn bad_request(what: impl Into<String>) -> DashboardError {
        DashboardError::BadRequest(what.into())
    }

    pub fn not_found(what: impl Into<String>) -> DashboardError {
        DashboardError::NotFound(what.into())
    }
}

/// Carried on error responses so the page layer can render them for people.
#[derive(Clone, Debug)]
pub struct ErrorBody {
    pub status: StatusCode,
    pub message: String,
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "dashboard request failed");
        }
        // Our own faults are logged in full; the person sees no internals.
        let message = match &self {
            DashboardError::State(_) | DashboardError::Internal(_) => {
                "internal error; the details are in the schoolgate log".to_owned()
            }
            other => other.to_string(),
        };
        let mut resp = (
            status,
            Json(serde_json::json!({ "error": message, "status": status.as_u16() })),
        )
            .into_response();
        resp.extensions_mut().insert(ErrorBody { status, message });
        resp
    }
}
