//! Upstream connections: HTTP/1.1 to origin servers, kept alive and reused.
//!
//! Each proxy thread has its own pools (see `Proxy::pools`): a connection's
//! task runs on the runtime that dialled it, so a request never wakes another
//! thread. hyper-util's pooled client did this before; its bookkeeping for one
//! request (a SipHash map keyed by scheme and authority, a checkout future, a
//! task per response to hand the connection back) was about a tenth of a
//! proxied request's instructions. Here a checkout is one lock no other thread
//! takes, one fast hash and a look at the most recently used connections.
//!
//! # Invariants
//!
//! 1. A connection serves one request at a time. It is taken out of the idle
//!    list when checked out and put back once the response head has arrived;
//!    while that response's body is still being read it is not ready, and a
//!    checkout steps over it (hyper queues nothing on it).
//! 2. A connection is reused only while ready and open, and never after
//!    `idle_timeout` unused: the origin may close it at any moment after that.
//! 3. A request is sent again, on a new connection, only when hyper hands it
//!    back unsent (a reused connection that the origin had just closed); a
//!    request that may have reached the origin is never repeated.
//! 4. Closed and expired connections are dropped at checkout, and every host's
//!    list is swept every `SWEEP` (30 s), so hosts not visited again leave nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use crate::body::UploadBody;
use crate::error::ConnectError;
use crate::upstream::Dialer;

/// Idle connections kept per origin.
const MAX_IDLE_PER_HOST: usize = 256;
/// How often every origin's idle list is swept of closed and expired connections.
const SWEEP: Duration = Duration::from_secs(30);

/// Why an upstream request failed.
#[derive(Debug)]
pub enum UpstreamFailure {
    /// No connection could be made (or the address is not allowed).
    Connect(ConnectError),
    /// The connection failed while sending the request or reading the head.
    Http(hyper::Error),
}

/// Where a request goes: the origin's host (as the policy saw it) and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub host: String,
    pub port: u16,
}

#[derive(Debug)]
struct Idle {
    tx: SendRequest<UploadBody>,
    since: Instant,
}

impl Idle {
    /// Closed by the origin, or unused for `timeout`: never to be used again.
    fn dead(&self, now: Instant, timeout: Duration) -> bool {
        self.tx.is_closed() || now.duration_since(self.since) >= timeout
    }
}

#[derive(Debug)]
struct Lists {
    by_origin: HashMap<Origin, Vec<Idle>, foldhash::fast::RandomState>,
    swept: Instant,
}

/// One thread's connections for one kind of client (guest-level or not: a
/// connection made for staff is never handed to a guest).
#[derive(Debug)]
pub struct Pool {
    dialer: std::sync::Arc<Dialer>,
    restricted: bool,
    idle_timeout: Duration,
    lists: Mutex<Lists>,
}

impl Pool {
    pub fn new(dialer: std::sync::Arc<Dialer>, restricted: bool, idle_timeout: Duration) -> Pool {
        Pool {
            dialer,
            restricted,
            idle_timeout,
            lists: Mutex::new(Lists {
                by_origin: HashMap::default(),
                swept: Instant::now(),
            }),
        }
    }

    /// Sends `req` (its URI in origin form) to `origin` on a pooled connection,
    /// or a new one, and returns the response head with its streaming body.
    pub async fn request(
        &self,
        origin: &Origin,
        mut req: Request<UploadBody>,
    ) -> Result<Response<Incoming>, UpstreamFailure> {
        loop {
            let (mut tx, reused) = match self.checkout(origin) {
                Some(tx) => (tx, true),
                None => (self.dial(origin).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    // A 101 hands the connection to the upgrade: never reused.
                    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                        self.checkin(origin, tx);
                    }
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(UpstreamFailure::Http(e.into_error())),
                },
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lists> {
        self.lists.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used connection to `origin` that is ready now.
    fn checkout(&self, origin: &Origin) -> Option<SendRequest<UploadBody>> {
        let now = Instant::now();
        let mut lists = self.lock();
        let list = lists.by_origin.get_mut(origin)?;
        let mut found = None;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            let idle = &list[i];
            if idle.dead(now, self.idle_timeout) {
                list.swap_remove(i);
            } else if idle.tx.is_ready() {
                found = Some(list.swap_remove(i).tx);
                break;
            }
        }
        if list.is_empty() {
            lists.by_origin.remove(origin);
        }
        found
    }

    fn checkin(&self, origin: &Origin, tx: SendRequest<UploadBody>) {
        let now = Instant::now();
        let mut lists = self.lock();
        if now.duration_since(lists.swept) >= SWEEP {
            lists.swept = now;
            let timeout = self.idle_timeout;
            lists.by_origin.retain(|_, list| {
                list.retain(|idle| !idle.dead(now, timeout));
                !list.is_empty()
            });
        }
        if tx.is_closed() {
            return;
        }
        match lists.by_origin.get_mut(origin) {
            Some(list) if list.len() >= MAX_IDLE_PER_HOST => {}
            Some(list) => list.push(Idle { tx, since: now }),
            None => {
                lists
                    .by_origin
                    .insert(origin.clone(), vec![Idle { tx, since: now }]);
            }
        }
    }

    /// A new connection, its task running on this thread's runtime.
    async fn dial(&self, origin: &Origin) -> Result<SendRequest<UploadBody>, UpstreamFailure> {
        let stream = self
            .dialer
            .connect(&origin.host, origin.port, self.restricted)
            .await
            .map_err(UpstreamFailure::Connect)?;
        let (mut tx, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamFailure::Http)?;
        tokio::spawn(async move {
            // Ends when the origin or the proxy closes it; errors were the
            // request's to report.
            let _ = conn.with_upgrades().await;
        });
        tx.ready().await.map_err(UpstreamFailure::Http)?;
        Ok(tx)
    }
}

/// The origin-form request target (`/path?query`) for a path that starts with `/`.
pub fn origin_form(path: &str) -> Result<http::Uri, http::uri::InvalidUri> {
    http::Uri::from_maybe_shared(Bytes::copy_from_slice(path.as_bytes()))
}
