//! Webhook alerts: a JSON POST to a Teams/Slack-style incoming webhook. Both read
//! a `text` field (and ignore the others, which are there for endpoints that
//! route on them), and both make the plain URL in it a link.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Time for one POST, connect to response.
const POST_TIMEOUT: Duration = Duration::from_secs(20);
/// The most of a response body read (for the error message only).
const MAX_ERROR_BODY: usize = 512;

/// Why a delivery did not go through.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Down, busy, timed out, HTTP 408/429/5xx: try again later.
    #[error("{0}")]
    Transient(String),
    /// Refused for good (a bad URL, HTTP 4xx): retrying cannot help.
    #[error("{0}")]
    Permanent(String),
}

/// An HTTP(S) client for webhooks.
#[derive(Clone, Debug)]
pub struct WebhookClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl WebhookClient {
    /// A client trusting the Mozilla root certificates (bundled, so a minimal
    /// appliance without a CA store still reaches Teams or Slack).
    pub fn new() -> Result<WebhookClient, DeliveryError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| DeliveryError::Permanent(format!("TLS set-up: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(WebhookClient {
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// POSTs `payload` as JSON to `url`.
    pub async fn post(&self, url: &str, payload: &serde_json::Value) -> Result<(), DeliveryError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| DeliveryError::Permanent(format!("webhook URL `{url}`: {e}")))?;
        let body =
            serde_json::to_vec(payload).map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let req = Request::post(uri)
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("schoolgate/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| DeliveryError::Permanent(e.to_string()))?;
        let resp = match tokio::time::timeout(POST_TIMEOUT, self.client.request(req)).await {
            Err(_) => return Err(DeliveryError::Transient("webhook timed out".to_owned())),
            Ok(Err(e)) => return Err(DeliveryError::Transient(format!("webhook: {e}"))),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        if status.is_success() {
            // Drain the body so the connection can be reused.
            let _ = tokio::time::timeout(POST_TIMEOUT, resp.into_body().collect()).await;
            return Ok(());
        }
        let text = match tokio::time::timeout(POST_TIMEOUT, resp.into_body().collect()).await {
            Ok(Ok(b)) => {
                let b = b.to_bytes();
                String::from_utf8_lossy(&b[..b.len().min(MAX_ERROR_BODY)]).into_owned()
            }
            _ => String::new(),
        };
        let message = format!("webhook answered {status}: {}", text.trim());
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(DeliveryError::Transient(message))
        } else {
            Err(DeliveryError::Permanent(message))
        }
    }
}
