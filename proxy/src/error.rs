//! Errors of the proxy, each knowing whose fault it was: the client's (a bad
//! request, a refused destination), the upstream's (down, slow, broken), or ours
//! (a bug or an exhausted resource). The fault picks the status code, the page
//! and the stats counter.

use std::io;
use std::net::{IpAddr, SocketAddr};

use http::StatusCode;
use serde::Serialize;

/// Whose fault a failure was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    Client,
    Upstream,
    Ours,
}

/// What went wrong connecting to a destination. Cheap to build and to match:
/// the hot path never boxes these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{host} has no address")]
    NoAddress { host: String },
    /// A guest-level client asked for one of the school's internal networks.
    #[error("{addr} is on the school's internal network")]
    Internal { addr: IpAddr },
    /// The destination is this proxy: a request loop.
    #[error("{addr} is this proxy")]
    Loop { addr: SocketAddr },
    #[error("connect to {addr}: {source}")]
    Refused {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connect to {addr} timed out")]
    Timeout { addr: SocketAddr },
}

impl ConnectError {
    pub fn fault(&self) -> Fault {
        match self {
            ConnectError::Internal { .. } | ConnectError::Loop { .. } => Fault::Client,
            ConnectError::Resolve { .. }
            | ConnectError::NoAddress { .. }
            | ConnectError::Refused { .. }
            | ConnectError::Timeout { .. } => Fault::Upstream,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ConnectError::Internal { .. } => StatusCode::FORBIDDEN,
            ConnectError::Loop { .. } => StatusCode::LOOP_DETECTED,
            ConnectError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ConnectError::Resolve { .. }
            | ConnectError::NoAddress { .. }
            | ConnectError::Refused { .. } => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Why a request could not be served. Turned into a page, an event and a stats
/// count by the proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The request is not valid HTTP or not a valid proxy request.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The request head is larger than allowed.
    #[error("request head too large")]
    HeadTooLarge,
    /// The request target is longer than allowed.
    #[error("request line too long")]
    LineTooLong,
    /// Not in the school's client networks: refused, never an open proxy.
    #[error("client {0} is not in the school's networks")]
    UnknownClient(IpAddr),
    /// A CONNECT to a port outside `proxy.connect_ports`.
    #[error("CONNECT to port {0} is not allowed")]
    ConnectPort(u16),
    /// A request to the proxy itself, or one that already passed through it.
    #[error("request loop: the destination is this proxy")]
    Loop,
    /// The request body is over the role's upload cap.
    #[error("upload larger than {limit} bytes")]
    UploadTooLarge { limit: u64 },
    /// The response is over the role's download cap.
    #[error("download larger than {limit} bytes")]
    DownloadTooLarge { limit: u64 },
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The upstream failed after the connection was made.
    #[error("upstream failed: {0}")]
    Upstream(String),
    /// The upstream did not answer in time.
    #[error("upstream did not answer within {0} s")]
    UpstreamTimeout(u64),
    /// Our own failure (should not happen).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl ProxyError {
    pub fn fault(&self) -> Fault {
        match self {
            ProxyError::Malformed(_)
            | ProxyError::HeadTooLarge
            | ProxyError::LineTooLong
            | ProxyError::UnknownClient(_)
            | ProxyError::ConnectPort(_)
            | ProxyError::Loop
            | ProxyError::UploadTooLarge { .. } => Fault::Client,
            ProxyError::DownloadTooLarge { .. }
            | ProxyError::Upstream(_)
            | ProxyError::UpstreamTimeout(_) => Fault::Upstream,
            ProxyError::Connect(e) => e.fault(),
            ProxyError::Internal(_) => Fault::Ours,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Malformed(_) => StatusCode::BAD_REQUEST,
            ProxyError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::LineTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::UnknownClient(_) | ProxyError::ConnectPort(_) => StatusCode::FORBIDDEN,
            ProxyError::Loop => StatusCode::LOOP_DETECTED,
            ProxyError::UploadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            // A policy refusal, not a server error: the page says why.
            ProxyError::DownloadTooLarge { .. } => StatusCode::FORBIDDEN,
            ProxyError::Connect(e) => e.status(),
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short title for the error page.
    pub fn title(&self) -> &'static str {
        match self {
            ProxyError::Malformed(_) => "Bad request",
            ProxyError::HeadTooLarge => "Request headers too large",
            ProxyError::LineTooLong => "Address too long",
            ProxyError::UnknownClient(_) => "Not on the school network",
            ProxyError::ConnectPort(_) => "Port not allowed",
            ProxyError::Loop => "Request loop",
            ProxyError::UploadTooLarge { .. } => "Upload too large",
            ProxyError::DownloadTooLarge { .. } => "Download too large",
            ProxyError::Connect(ConnectError::Internal { .. }) => "Internal address refused",
            ProxyError::Connect(ConnectError::Loop { .. }) => "Request loop",
            ProxyError::Connect(_) | ProxyError::Upstream(_) => "Site unreachable",
            ProxyError::UpstreamTimeout(_) => "Site too slow",
            ProxyError::Internal(_) => "Filter error",
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    #[error("bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("no listener configured")]
    NothingToListen,
}
