//! The proxy's one extension point: [`ProxyHooks`], called at each phase of a
//! request with its [`RequestContext`].
//!
//! The phases, in order (after the client is identified):
//!
//! 1. [`request_seen`](ProxyHooks::request_seen): the request head arrived. A
//!    hook may answer the client itself ([`Control::Handled`]); the request is
//!    then logged with that answer's status and goes no further.
//! 2. [`verdict`](ProxyHooks::verdict): the classifier decided; a hook may make
//!    the verdict stricter or looser (e.g. a local experiment).
//! 3. [`block_page`](ProxyHooks::block_page): a blocked plain-HTTP request needs
//!    a page; the default is [`pages::block_page`](crate::pages::block_page).
//! 4. [`upstream_request`](ProxyHooks::upstream_request) /
//!    [`upstream_response`](ProxyHooks::upstream_response): the heads going to
//!    and coming from the origin, after hop-by-hop headers were removed.
//! 5. [`logging`](ProxyHooks::logging): the event is complete (status, bytes,
//!    duration); a hook may add to it. The proxy sends it afterwards.
//!
//! Every method has a default that does nothing beyond the documented behaviour,
//! so [`DefaultHooks`] is the plain schoolgate proxy. Hooks run on the request's
//! task: they must not block (no I/O, no locks held long).

use std::net::SocketAddr;
use std::time::Instant;

use http::Response;
use schoolgate_classifier::{RoleId, Verdict};
use schoolgate_events::AccessEvent;

use crate::body::ProxyBody;
use crate::pages::BlockPage;

/// Which listener a connection arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The explicit proxy (browsers configured by PAC/WPAD): absolute-form
    /// requests and CONNECT.
    Explicit,
    /// Redirected port-80 traffic: origin-form requests, routed by `Host`.
    TransparentHttp,
    /// Redirected port-443 traffic: read by the TLS SNI, spliced, never decrypted.
    TransparentHttps,
}

/// What a hook wants after [`ProxyHooks::request_seen`].
#[derive(Debug)]
pub enum Control {
    /// Go on with the normal phases.
    Continue,
    /// The hook answered the client: send this response and stop.
    Handled(Response<ProxyBody>),
}

/// Everything known about one request, passed to every phase.
#[derive(Debug)]
pub struct RequestContext {
    pub(crate) client: SocketAddr,
    pub(crate) mode: Mode,
    pub(crate) role: Option<RoleId>,
    pub(crate) started: Instant,
    pub(crate) verdict: Option<Verdict>,
    /// The event being built; its id is the block page's reference.
    pub(crate) event: AccessEvent,
}

impl RequestContext {
    /// The client's address and port.
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The authenticated user, when proxy authentication named one.
    pub fn user(&self) -> Option<&str> {
        self.event.user.as_deref()
    }

    /// The role whose policy applies, once the client was identified.
    pub fn role(&self) -> Option<RoleId> {
        self.role
    }

    /// The classifier's verdict, once decided.
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    /// When the request head arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The event as built so far (host, method, path, role, ...).
    pub fn event(&self) -> &AccessEvent {
        &self.event
    }

    /// Mutable access, e.g. to add a device name a hook knows.
    pub fn event_mut(&mut self) -> &mut AccessEvent {
        &mut self.event
    }
}

/// The phases of a proxied request. See the module documentation for the order.
pub trait ProxyHooks: Send + Sync + std::fmt::Debug + 'static {
    /// Phase 1. Default: continue.
    fn request_seen(&self, _ctx: &mut RequestContext, _head: &http::request::Parts) -> Control {
        Control::Continue
    }

    /// Phase 2. Default: keep the classifier's verdict.
    fn verdict(&self, _ctx: &RequestContext, _verdict: &mut Verdict) {}

    /// Phase 3. Default: the school-branded HTML block page.
    fn block_page(&self, _ctx: &RequestContext, page: &BlockPage<'_>) -> Response<ProxyBody> {
        crate::pages::block_page(page)
    }

    /// Phase 4, out: the request as the origin will get it (its URI in origin
    /// form, the site in `Host`). Default: nothing.
    fn upstream_request(&self, _ctx: &RequestContext, _head: &mut http::request::Parts) {}

    /// Phase 4, back. Default: nothing.
    fn upstream_response(&self, _ctx: &RequestContext, _head: &mut http::response::Parts) {}

    /// Phase 5. Default: nothing.
    fn logging(&self, _ctx: &RequestContext, _event: &mut AccessEvent) {}
}

/// The plain schoolgate proxy: every phase does its documented default.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultHooks;

impl ProxyHooks for DefaultHooks {}
