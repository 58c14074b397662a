//! [`Proxy`]: what happens to one request, from head to event.
//!
//! ```text
//! head -> target (CONNECT / absolute / origin+Host) -> loop check -> client known?
//!      -> PAC? -> proxy auth -> hooks.request_seen -> classifier -> hooks.verdict
//!      -> block page | CONNECT tunnel | forward (caps, SafeSearch, pooled upstream)
//!      -> response body counted -> event (hooks.logging) -> pipeline
//! ```
//!
//! Exactly one event per request, sent when the request is over (the response
//! body ended or was abandoned, the tunnel closed), so it carries status, bytes
//! each way and duration.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use schoolgate_classifier::{Action, RoleId, SharedPolicy, Verdict};
use schoolgate_events::{AccessEvent, EventSender, Source, set_text};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::body::{ProxyBody, UploadBody};
use crate::error::{ConnectError, Fault, ProxyError};
use crate::hooks::{Control, DefaultHooks, Mode, ProxyHooks, RequestContext};
use crate::pages::{self, BlockPage};
use crate::pool::{self, Pool, UpstreamFailure};
use crate::stats::{Counters, ProxyStats};
use crate::tunnel::{self, FirstBytes, TunnelEnd};
use crate::upstream::Dialer;
use crate::users::parse_basic;
use crate::view::View;

/// The most cached proxy-auth credentials; the cache is cleared when full (a
/// flood of distinct bad credentials never reaches it: only verified ones do).
const AUTH_CACHE: usize = 10_000;
/// Concurrent argon2 verifications: each takes ~20 MB and tens of ms of CPU, so a
/// flood of guesses queues here instead of starving the proxy.
const AUTH_SLOTS: usize = 2;

pub(crate) type TunnelTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One client connection, as the request handler sees it.
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub mode: Mode,
    /// Where a redirected connection was going (nftables REDIRECT), when known
    /// and not this proxy.
    pub original_dst: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    /// A tunnel started by this connection's last request (CONNECT, WebSocket),
    /// run by the connection task once hyper hands the socket over.
    pub tunnel: Mutex<Option<TunnelTask>>,
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnInfo")
            .field("peer", &self.peer)
            .field("local", &self.local)
            .field("mode", &self.mode)
            .field("original_dst", &self.original_dst)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Proxy`] with non-default parts.
#[derive(Debug)]
pub struct ProxyBuilder {
    policy: SharedPolicy,
    events: EventSender,
    hooks: Arc<dyn ProxyHooks>,
    overrides: HashMap<String, SocketAddr>,
}

impl ProxyBuilder {
    /// Replaces the default hooks.
    pub fn hooks(mut self, hooks: Arc<dyn ProxyHooks>) -> ProxyBuilder {
        self.hooks = hooks;
        self
    }

    /// Resolves `name` to `addr` instead of asking DNS (port 0 keeps the
    /// requested port). For tests and lab setups that point public names at local
    /// origins; production leaves this empty.
    pub fn resolve(mut self, name: &str, addr: SocketAddr) -> ProxyBuilder {
        self.overrides.insert(name.to_owned(), addr);
        self
    }

    pub fn build(self) -> Arc<Proxy> {
        let dialer = Arc::new(Dialer::new(self.policy.clone(), self.overrides));
        let pool_idle =
            Duration::from_secs(self.policy.load().config().proxy.idle_timeout_secs.max(1));
        Arc::new(Proxy {
            id: NEXT_PROXY_ID.fetch_add(1, Ordering::Relaxed),
            pool_idle,
            policy: self.policy,
            events: self.events,
            hooks: self.hooks,
            stats: Counters::default(),
            view: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            dialer,
            auth_cache: Mutex::new(HashMap::new()),
            auth_keys: std::collections::hash_map::RandomState::new(),
            auth_slots: Semaphore::new(AUTH_SLOTS),
        })
    }
}

static NEXT_PROXY_ID: AtomicU64 = AtomicU64::new(1);

/// The upstream connection pools of one thread: one for guest-level roles, one
/// for the others, so a pooled connection made for staff is never handed to a
/// guest.
#[derive(Debug)]
struct Pools {
    open: Pool,
    restricted: Pool,
}

thread_local! {
    /// Pools per proxy and thread. The server runs one single-threaded runtime
    /// per core, and a pooled connection's task lives on the runtime that made it:
    /// keeping pools per thread means a request never wakes another thread.
    static POOLS: std::cell::RefCell<Vec<(u64, Arc<Pools>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The web proxy: policy, event sender, upstream pools and counters, shared by
/// every listener and connection.
#[derive(Debug)]
pub struct Proxy {
    policy: SharedPolicy,
    events: EventSender,
    hooks: Arc<dyn ProxyHooks>,
    pub(crate) stats: Counters,
    view: ArcSwapOption<View>,
    generation: AtomicU64,
    pub(crate) dialer: Arc<Dialer>,
    /// Identifies this proxy's entry in the per-thread pools.
    id: u64,
    pool_idle: Duration,
    auth_cache: Mutex<HashMap<u64, CachedUser>>,
    auth_keys: std::collections::hash_map::RandomState,
    auth_slots: Semaphore,
}

#[derive(Clone, Debug)]
struct CachedUser {
    generation: u64,
    name: Arc<str>,
    role: RoleId,
}

enum Auth {
    Missing,
    Bad,
    User(Arc<str>, RoleId),
}

/// What a request asks for.
#[derive(Debug)]
struct Target {
    kind: TargetKind,
    /// Lowercase host, without port (`[v6]` keeps its brackets).
    host: String,
    port: u16,
    /// Path and query (`/` at least) for HTTP; empty for CONNECT.
    path: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetKind {
    Connect,
    Http,
    /// An origin-form request to the explicit proxy itself (PAC/WPAD).
    Local,
}

impl Proxy {
    /// A proxy with the default hooks and the system resolver.
    pub fn new(policy: SharedPolicy, events: EventSender) -> Arc<Proxy> {
        Proxy::builder(policy, events).build()
    }

    pub fn builder(policy: SharedPolicy, events: EventSender) -> ProxyBuilder {
        ProxyBuilder {
            policy,
            events,
            hooks: Arc::new(DefaultHooks),
            overrides: HashMap::new(),
        }
    }

    /// Counters since start, for the dashboard.
    pub fn stats(&self) -> ProxyStats {
        self.stats.snapshot()
    }

    pub(crate) fn hooks(&self) -> &dyn ProxyHooks {
        self.hooks.as_ref()
    }

    /// This thread's upstream pools, made on first use.
    fn pools(&self) -> Arc<Pools> {
        POOLS.with(|cell| {
            let mut pools = cell.borrow_mut();
            if let Some((_, p)) = pools.iter().find(|(id, _)| *id == self.id) {
                return p.clone();
            }
            let p = Arc::new(Pools {
                open: Pool::new(self.dialer.clone(), false, self.pool_idle),
                restricted: Pool::new(self.dialer.clone(), true, self.pool_idle),
            });
            pools.push((self.id, p.clone()));
            p
        })
    }

    /// The settings of the current policy snapshot, derived once per snapshot.
    pub(crate) fn view(&self) -> Arc<View> {
        let policy = self.policy.load_full();
        if let Some(v) = &*self.view.load()
            && Arc::ptr_eq(&v.policy, &policy)
        {
            return v.clone();
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let v = Arc::new(View::new(policy, generation));
        self.view.store(Some(v.clone()));
        v
    }

    pub(crate) fn new_context(
        &self,
        view: &View,
        conn: &ConnInfo,
        source: Source,
    ) -> RequestContext {
        let mut event = AccessEvent::new(source, conn.peer.ip(), String::new());
        set_text(&mut event.node, &view.node);
        RequestContext {
            client: conn.peer,
            mode: conn.mode,
            role: None,
            started: Instant::now(),
            verdict: None,
            event,
        }
    }

    /// Serves one HTTP request (explicit or transparent HTTP).
    pub(crate) async fn handle(
        self: &Arc<Self>,
        conn: &Arc<ConnInfo>,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let view = self.view();
        Counters::inc(&self.stats.requests);
        let source = match conn.mode {
            Mode::Explicit => Source::Proxy,
            _ => Source::Transparent,
        };
        let mut ctx = self.new_context(&view, conn, source);
        set_text(&mut ctx.event.method, req.method().as_str());

        let target = match target_of(&req, conn) {
            Ok(t) => t,
            Err(e) => return self.fail(&view, ctx, e, false),
        };
        ctx.event.host.clone_from(&target.host);
        ctx.event.path.clone_from(&target.path);
        let connect = target.kind == TargetKind::Connect;

        if passed_through_us(req.headers(), &view.via) {
            return self.fail(&view, ctx, ProxyError::Loop, connect);
        }

        // Who is asking: never an open proxy.
        let client = view.policy.client(conn.peer.ip(), None);
        set_text(&mut ctx.event.school, &client.school);
        if let Some(d) = &client.device {
            ctx.event.device = Some(d.to_string());
        }
        set_text(&mut ctx.event.role, &view.policy.role(client.role).name);
        if !client.known {
            Counters::inc(&self.stats.unknown_clients);
            let e = ProxyError::UnknownClient(conn.peer.ip());
            return self.fail(&view, ctx, e, connect);
        }
        if target.kind == TargetKind::Local {
            return self.local(&view, ctx, &req, conn);
        }

        let mut role = client.role;
        if conn.mode == Mode::Explicit && view.auth != schoolgate_classifier::config::ProxyAuth::Off
        {
            match self.authenticate(&view, req.headers()).await {
                Auth::User(name, r) => {
                    ctx.event.user = Some(name.to_string());
                    role = r;
                }
                Auth::Missing
                    if view.auth == schoolgate_classifier::config::ProxyAuth::Optional => {}
                Auth::Missing | Auth::Bad => {
                    Counters::inc(&self.stats.auth_challenges);
                    return auth_challenge(view.school(&ctx.event.school).name.as_ref());
                }
            }
        }
        ctx.role = Some(role);
        if role != client.role {
            ctx.event.role.clear();
            ctx.event.role.push_str(&view.policy.role(role).name);
        }

        let (mut parts, body) = req.into_parts();
        if let Control::Handled(resp) = self.hooks.request_seen(&mut ctx, &parts) {
            ctx.event.status = resp.status().as_u16();
            return self.finish_with(ctx, resp);
        }

        // The decision.
        let (path, query) = match target.path.split_once('?') {
            Some((p, q)) => (Some(p), Some(q)),
            None => (Some(target.path.as_str()), None),
        };
        let request = schoolgate_classifier::Request {
            role,
            host: &target.host,
            path: if connect { None } else { path },
            query: if connect { None } else { query },
            at: ctx.event.time,
        };
        let mut verdict = view.policy.decide(&request);
        self.hooks.verdict(&ctx, &mut verdict);
        apply_verdict(&mut ctx.event, &verdict);
        let blocked = verdict.is_blocked();
        let rewrite = verdict.rewrite;
        ctx.verdict = Some(verdict);
        if blocked {
            return self.blocked(&view, ctx, connect);
        }

        let restricted = view.is_restricted(role);
        if connect {
            let on_upgrade = parts.extensions.remove::<OnUpgrade>();
            return self
                .connect(view, ctx, conn, target, on_upgrade, restricted)
                .await;
        }
        let mut target = target;
        if let Some(rw) = rewrite {
            let restriction = view.policy.role(role).youtube;
            apply_safesearch(&mut target.path, &mut parts.headers, rw, restriction);
        }
        self.forward(view, ctx, conn, target, parts, body, role, restricted)
            .await
    }

    /// PAC/WPAD, or a friendly 400 for anything else asked of the proxy itself.
    fn local(
        self: &Arc<Self>,
        view: &View,
        mut ctx: RequestContext,
        req: &Request<Incoming>,
        conn: &ConnInfo,
    ) -> Response<ProxyBody> {
        let path = req.uri().path();
        if path == "/proxy.pac" || path == "/wpad.dat" {
            let proxy = match &view.pac_proxy {
                Some(p) => p.clone(),
                None => req
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .filter(|h| !h.is_empty() && h.len() < 256)
                    .map(str::to_owned)
                    .unwrap_or_else(|| conn.local.to_string()),
            };
            let resp = pages::pac_response(pages::pac(&proxy, &view.pac_direct, &view.internal));
            ctx.event.status = 200;
            ctx.event.rule = "pac".to_owned();
            return self.finish_with(ctx, resp);
        }
        self.fail(
            view,
            ctx,
            ProxyError::Malformed(
                "this is the school's web proxy: it serves only /proxy.pac and /wpad.dat",
            ),
            false,
        )
    }

    async fn authenticate(&self, view: &Arc<View>, headers: &HeaderMap) -> Auth {
        let Some(value) = headers.get(header::PROXY_AUTHORIZATION) else {
            return Auth::Missing;
        };
        let key = self.auth_keys.hash_one(value.as_bytes());
        if let Ok(cache) = self.auth_cache.lock()
            && let Some(hit) = cache.get(&key)
            && hit.generation == view.generation
        {
            return Auth::User(hit.name.clone(), hit.role);
        }
        let Some((name, password)) = parse_basic(value.as_bytes()) else {
            return Auth::Bad;
        };
        let Some(user) = view.users.get(&name).cloned() else {
            return Auth::Bad;
        };
        let Ok(Ok(_permit)) =
            tokio::time::timeout(Duration::from_secs(10), self.auth_slots.acquire()).await
        else {
            return Auth::Bad;
        };
        let ok = tokio::task::spawn_blocking(move || user.verify(&password))
            .await
            .unwrap_or(false);
        if !ok {
            return Auth::Bad;
        }
        let Some(user) = view.users.get(&name) else {
            return Auth::Bad;
        };
        // An explicit `[[users]]` mapping in the school config beats the file.
        let role = view
            .config_user_role(&name)
            .or_else(|| view.role_id(&user.role))
            .unwrap_or_else(|| view.policy.default_role());
        if let Ok(mut cache) = self.auth_cache.lock() {
            if cache.len() >= AUTH_CACHE {
                cache.clear();
            }
            cache.insert(
                key,
                CachedUser {
                    generation: view.generation,
                    name: user.name.clone(),
                    role,
                },
            );
        }
        Auth::User(user.name.clone(), role)
    }

    /// The block page (plain HTTP) or a 403 with the reason header (CONNECT).
    fn blocked(
        self: &Arc<Self>,
        view: &View,
        mut ctx: RequestContext,
        connect: bool,
    ) -> Response<ProxyBody> {
        let status = StatusCode::FORBIDDEN;
        ctx.event.status = status.as_u16();
        let reference = ctx.event.id.to_string();
        let resp = if connect {
            pages::refusal(status, &ctx.event.reason, &reference)
        } else {
            let school = view.school(&ctx.event.school);
            let time = ctx
                .event
                .time
                .to_zoned(view.policy.time_zone().clone())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string();
            let what = format!("{}{}", ctx.event.host, ctx.event.path);
            let category = ctx
                .verdict
                .as_ref()
                .and_then(|v| v.category)
                .map(|c| c.to_string())
                .unwrap_or_else(|| "local rule".to_owned());
            let report = format!("{}/report?ref={reference}", view.dashboard_url);
            let page = BlockPage {
                school: &school.name,
                contact: &school.contact,
                what: &what,
                category: &category,
                rule: &ctx.event.rule,
                reason: &ctx.event.reason,
                role: &ctx.event.role,
                time: &time,
                reference: &reference,
                report_url: &report,
                status,
            };
            self.hooks.block_page(&ctx, &page)
        };
        self.finish_with(ctx, resp)
    }

    /// A failed request: page (or refusal for CONNECT), counters, event.
    pub(crate) fn fail(
        self: &Arc<Self>,
        view: &View,
        mut ctx: RequestContext,
        err: ProxyError,
        connect: bool,
    ) -> Response<ProxyBody> {
        let fault = err.fault();
        self.stats.error(fault);
        let status = err.status();
        debug!(client = %ctx.client, error = %err, "request failed");
        record_failure(&mut ctx.event, &err);
        ctx.event.status = status.as_u16();
        let reference = ctx.event.id.to_string();
        let detail = err.to_string();
        let resp = if connect {
            pages::refusal(status, &detail, &reference)
        } else {
            let school = view.school(&ctx.event.school);
            pages::error_page(status, err.title(), &detail, &school.name, &reference)
        };
        self.finish_with(ctx, resp)
    }

    /// Attaches the event to a response we made ourselves: sent when the page
    /// has gone out.
    pub(crate) fn finish_with(
        self: &Arc<Self>,
        ctx: RequestContext,
        resp: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        let (parts, body) = resp.into_parts();
        let finish = Box::new(Finish {
            proxy: self.clone(),
            ctx,
            up: None,
            cap: None,
        });
        Response::from_parts(parts, body.with_finish(finish))
    }

    /// Sends the finished event.
    pub(crate) fn log(&self, mut ctx: RequestContext, bytes_up: u64, bytes_down: u64) {
        let micros = ctx.started.elapsed().as_micros();
        ctx.event.bytes_up = bytes_up;
        ctx.event.bytes_down = bytes_down;
        ctx.event.duration_us = u32::try_from(micros).unwrap_or(u32::MAX);
        let mut event = std::mem::replace(
            &mut ctx.event,
            AccessEvent::placeholder(Source::Proxy, ctx.client.ip()),
        );
        self.hooks.logging(&ctx, &mut event);
        match event.action {
            Action::Block => Counters::inc(&self.stats.blocked),
            Action::Flag => Counters::inc(&self.stats.flagged),
            _ => {}
        }
        Counters::add(&self.stats.bytes_up, bytes_up);
        Counters::add(&self.stats.bytes_down, bytes_down);
        if self.events.send(event).is_err() {
            Counters::inc(&self.stats.events_lost);
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        self: &Arc<Self>,
        view: Arc<View>,
        mut ctx: RequestContext,
        conn: &Arc<ConnInfo>,
        target: Target,
        mut parts: http::request::Parts,
        body: Incoming,
        role: RoleId,
        restricted: bool,
    ) -> Response<ProxyBody> {
        let role_cfg = view.policy.role(role);
        let (up_cap, down_cap) = (role_cfg.max_upload_bytes, role_cfg.max_download_bytes);
        if let (Some(limit), Some(len)) = (up_cap, content_length(&parts.headers))
            && len > limit
        {
            return self.fail(&view, ctx, ProxyError::UploadTooLarge { limit }, false);
        }
        let upgrade = wants_upgrade(&parts.headers);
        let authority = authority(&target);
        // HTTP/1.1 to an origin: the request target in origin form (the site is
        // in `Host`, and the pool's key).
        parts.uri = match pool::origin_form(&target.path) {
            Ok(u) => u,
            Err(_) => return self.fail(&view, ctx, ProxyError::Malformed("bad URL"), false),
        };
        parts.version = Version::HTTP_11;
        let upgrade_value = if upgrade {
            parts.headers.get(header::UPGRADE).cloned()
        } else {
            None
        };
        strip_hop_by_hop(&mut parts.headers);
        if let Some(u) = upgrade_value {
            parts.headers.insert(header::UPGRADE, u);
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        // The client already had its 100 Continue from us (hyper sends it when the
        // body is read); the origin gets the body without waiting.
        parts.headers.remove(header::EXPECT);
        // RFC 9112 §3.2.2: a proxy sets Host from the absolute-form target, so
        // the origin serves what was decided on.
        if let Ok(h) = HeaderValue::from_maybe_shared(authority) {
            parts.headers.insert(header::HOST, h);
        }
        parts.headers.append(header::VIA, view.via.clone());
        self.hooks.upstream_request(&ctx, &mut parts);
        let client_upgrade = if upgrade {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        };

        let has_body = !matches!(content_length(&parts.headers), Some(0))
            && !http_body::Body::is_end_stream(&body);
        let (upload, count) = if has_body {
            let count = Arc::new(AtomicU64::new(0));
            (
                UploadBody::counted(body, count.clone(), up_cap),
                Some(count),
            )
        } else {
            (UploadBody::empty(), None)
        };
        let pools = self.pools();
        let pool = if restricted {
            &pools.restricted
        } else {
            &pools.open
        };
        let origin = pool::Origin {
            host: target.host,
            port: target.port,
        };
        let sent = pool.request(&origin, Request::from_parts(parts, upload));
        let idle = view.limits.idle_timeout;
        let resp = match tokio::time::timeout(idle, sent).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let uploaded = count.as_ref().map_or(0, |c| c.load(Ordering::Relaxed));
                let err = match (up_cap, e) {
                    (Some(limit), _) if uploaded > limit => ProxyError::UploadTooLarge { limit },
                    (_, UpstreamFailure::Connect(c)) => ProxyError::Connect(c),
                    (_, UpstreamFailure::Http(e)) => ProxyError::Upstream(error_chain(&e)),
                };
                return self.fail(&view, ctx, err, false);
            }
            Err(_) => {
                return self.fail(
                    &view,
                    ctx,
                    ProxyError::UpstreamTimeout(idle.as_secs()),
                    false,
                );
            }
        };
        let (mut rparts, rbody) = resp.into_parts();
        if let (Some(limit), Some(len)) = (down_cap, content_length(&rparts.headers))
            && len > limit
        {
            return self.fail(&view, ctx, ProxyError::DownloadTooLarge { limit }, false);
        }
        ctx.event.status = rparts.status.as_u16();

        if rparts.status == StatusCode::SWITCHING_PROTOCOLS {
            let mut resp = Response::from_parts(rparts, rbody);
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let (rparts, _) = resp.into_parts();
            let Some(client_upgrade) = client_upgrade else {
                return self.fail(
                    &view,
                    ctx,
                    ProxyError::Upstream("unexpected 101".into()),
                    false,
                );
            };
            return self.websocket(view, ctx, conn, rparts, client_upgrade, upstream_upgrade);
        }

        strip_hop_by_hop(&mut rparts.headers);
        rparts.headers.append(header::VIA, view.via.clone());
        self.hooks.upstream_response(&ctx, &mut rparts);
        let finish = Box::new(Finish {
            proxy: self.clone(),
            ctx,
            up: count,
            cap: down_cap,
        });
        Response::from_parts(
            rparts,
            ProxyBody::stream(rbody, down_cap).with_finish(finish),
        )
    }

    /// A 101 from the origin: answer the client's upgrade and splice the two.
    fn websocket(
        self: &Arc<Self>,
        view: Arc<View>,
        ctx: RequestContext,
        conn: &Arc<ConnInfo>,
        mut rparts: http::response::Parts,
        client: OnUpgrade,
        upstream: OnUpgrade,
    ) -> Response<ProxyBody> {
        rparts.headers.append(header::VIA, view.via.clone());
        let proxy = self.clone();
        let shutdown = conn.shutdown.clone();
        let idle = view.limits.idle_timeout;
        let task: TunnelTask = Box::pin(async move {
            let (c, u) = match tokio::try_join!(client, upstream) {
                Ok(pair) => pair,
                Err(e) => {
                    debug!(error = %e, "websocket upgrade failed");
                    proxy.log(ctx, 0, 0);
                    return;
                }
            };
            Counters::inc(&proxy.stats.active_tunnels);
            let (up, down, _) =
                tunnel::splice(TokioIo::new(c), TokioIo::new(u), idle, &shutdown).await;
            Counters::dec(&proxy.stats.active_tunnels);
            proxy.log(ctx, up, down);
        });
        if let Ok(mut slot) = conn.tunnel.lock() {
            *slot = Some(task);
        }
        Response::from_parts(rparts, ProxyBody::empty())
    }

    /// CONNECT: port check, dial (with the guest and loop checks), 200, then
    /// the tunnel, which reads the ClientHello to compare its SNI with the
    /// CONNECT host.
    async fn connect(
        self: &Arc<Self>,
        view: Arc<View>,
        mut ctx: RequestContext,
        conn: &Arc<ConnInfo>,
        target: Target,
        on_upgrade: Option<OnUpgrade>,
        restricted: bool,
    ) -> Response<ProxyBody> {
        if !view.connect_ports.contains(&target.port) {
            return self.fail(&view, ctx, ProxyError::ConnectPort(target.port), true);
        }
        let Some(on_upgrade) = on_upgrade else {
            return self.fail(
                &view,
                ctx,
                ProxyError::Internal("no upgrade on CONNECT"),
                true,
            );
        };
        let upstream = match self
            .dialer
            .connect(&target.host, target.port, restricted)
            .await
        {
            Ok(s) => s,
            Err(e) => return self.fail(&view, ctx, ProxyError::Connect(e), true),
        };
        Counters::inc(&self.stats.connect_tunnels);
        ctx.event.status = 200;
        let proxy = self.clone();
        let shutdown = conn.shutdown.clone();
        let task: TunnelTask = Box::pin(async move {
            let client = match on_upgrade.await {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "CONNECT upgrade failed");
                    proxy.log(ctx, 0, 0);
                    return;
                }
            };
            proxy
                .run_tunnel(
                    view,
                    ctx,
                    TokioIo::new(client),
                    upstream,
                    &target.host,
                    &shutdown,
                )
                .await;
        });
        if let Ok(mut slot) = conn.tunnel.lock() {
            *slot = Some(task);
        }
        Response::new(ProxyBody::empty())
    }

    async fn run_tunnel<C>(
        &self,
        view: Arc<View>,
        mut ctx: RequestContext,
        mut client: C,
        mut upstream: tokio::net::TcpStream,
        host: &str,
        shutdown: &CancellationToken,
    ) where
        C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::AsyncWriteExt;
        let mut first = Vec::new();
        match tunnel::read_hello(&mut client, &mut first, view.limits.header_timeout).await {
            FirstBytes::Hello(hello) => {
                if let Some(sni) = hello.sni.as_deref()
                    && let Some(verdict) = self.sni_check(&view, &ctx, host, sni)
                {
                    apply_verdict(&mut ctx.event, &verdict);
                    let block = verdict.is_blocked();
                    ctx.verdict = Some(verdict);
                    if block {
                        // Too late for a status code: the 200 is gone. Closing is
                        // the refusal; the event says why.
                        ctx.event.status = 403;
                        self.log(ctx, first.len() as u64, 0);
                        return;
                    }
                }
            }
            FirstBytes::Malformed(why) => {
                record_malformed_tls(&mut ctx.event, why);
                self.stats.error(Fault::Client);
                self.log(ctx, first.len() as u64, 0);
                return;
            }
            FirstBytes::Closed | FirstBytes::Timeout if first.is_empty() => {
                self.log(ctx, 0, 0);
                return;
            }
            FirstBytes::NotTls | FirstBytes::Closed | FirstBytes::Timeout => {}
        }
        if !first.is_empty() && upstream.write_all(&first).await.is_err() {
            self.stats.error(Fault::Upstream);
            self.log(ctx, first.len() as u64, 0);
            return;
        }
        Counters::inc(&self.stats.active_tunnels);
        let (up, down, end) =
            tunnel::splice(client, upstream, view.limits.idle_timeout, shutdown).await;
        Counters::dec(&self.stats.active_tunnels);
        if end == TunnelEnd::Error {
            debug!(host, "tunnel ended with an error");
        }
        self.log(ctx, up + first.len() as u64, down);
    }

    /// The SNI against the name the client said it wanted: a different name is
    /// domain fronting (per `proxy.domain_fronting`); an IP CONNECT gets the SNI
    /// decided on. Returns a verdict when it changes anything.
    pub(crate) fn sni_check(
        &self,
        view: &View,
        ctx: &RequestContext,
        host: &str,
        sni: &str,
    ) -> Option<Verdict> {
        use schoolgate_classifier::config::FrontingAction;
        let role = ctx.role?;
        if sni.eq_ignore_ascii_case(host.trim_end_matches('.')) {
            return None;
        }
        let by_name = view.policy.decide(&schoolgate_classifier::Request::host(
            role,
            sni,
            ctx.event.time,
        ));
        if by_name.is_blocked() {
            return Some(by_name);
        }
        let host_is_ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok();
        if host_is_ip {
            return (by_name.action != Action::Allow).then_some(by_name);
        }
        let action = match view.fronting {
            FrontingAction::Block => Action::Block,
            FrontingAction::Flag => Action::Flag,
            FrontingAction::Allow => return None,
        };
        Some(view.policy.fronting_verdict(role, sni, host, action))
    }
}

/// Completes a request's event when its response body is done.
#[derive(Debug)]
pub(crate) struct Finish {
    proxy: Arc<Proxy>,
    ctx: RequestContext,
    up: Option<Arc<AtomicU64>>,
    cap: Option<u64>,
}

impl Finish {
    pub(crate) fn complete(self: Box<Self>, sent: u64, over_cap: bool, failed: bool) {
        let Finish {
            proxy,
            mut ctx,
            up,
            cap,
        } = *self;
        let up = up.map_or(0, |c| c.load(Ordering::Relaxed));
        if over_cap {
            let limit = cap.unwrap_or(0);
            let err = ProxyError::DownloadTooLarge { limit };
            record_failure(&mut ctx.event, &err);
        } else if failed {
            debug!(host = %ctx.event.host, "response not completed");
        }
        if over_cap {
            proxy.stats.error(Fault::Upstream);
        }
        proxy.log(ctx, up, sent);
    }
}

pub(crate) fn apply_verdict(event: &mut AccessEvent, v: &Verdict) {
    event.action = v.action;
    event.categories = v.categories;
    event.severity = v.severity;
    event.rule.clear();
    v.rule.push_to(&mut event.rule);
    v.write_reason(&mut event.reason);
    set_text(&mut event.role, &v.role);
    if let Some(t) = &v.search_terms {
        event.search_terms.clone_from(t);
    }
}

/// Client faults that refuse something are blocks; upstream failures keep the
/// verdict (the policy allowed it; the site failed).
fn record_failure(event: &mut AccessEvent, err: &ProxyError) {
    if err.fault() == Fault::Client || matches!(err, ProxyError::DownloadTooLarge { .. }) {
        event.action = Action::Block;
    }
    let rule = match err {
        ProxyError::Malformed(_) | ProxyError::HeadTooLarge | ProxyError::LineTooLong => {
            "malformed request"
        }
        ProxyError::UnknownClient(_) => "unknown client",
        ProxyError::ConnectPort(_) => "connect port",
        ProxyError::Loop | ProxyError::Connect(ConnectError::Loop { .. }) => "request loop",
        ProxyError::UploadTooLarge { .. } => "upload limit",
        ProxyError::DownloadTooLarge { .. } => "download limit",
        ProxyError::Connect(ConnectError::Internal { .. }) => "internal network",
        ProxyError::Connect(_) | ProxyError::Upstream(_) | ProxyError::UpstreamTimeout(_) => {
            "upstream error"
        }
        ProxyError::Internal(_) => "internal error",
    };
    event.rule = rule.to_owned();
    event.reason = err.to_string();
}

pub(crate) fn record_malformed_tls(event: &mut AccessEvent, why: &str) {
    event.action = Action::Block;
    event.status = 400;
    event.rule = "malformed request".to_owned();
    event.reason = format!("malformed TLS ClientHello: {why}");
}

fn auth_challenge(realm: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full("Proxy authentication required\n"));
    *resp.status_mut() = StatusCode::PROXY_AUTHENTICATION_REQUIRED;
    let realm: String = realm
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == ' ')
        .collect();
    let realm = if realm.is_empty() {
        "schoolgate".to_owned()
    } else {
        realm
    };
    if let Ok(v) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")) {
        resp.headers_mut().insert(header::PROXY_AUTHENTICATE, v);
    }
    resp
}

fn target_of(req: &Request<Incoming>, conn: &ConnInfo) -> Result<Target, ProxyError> {
    let uri = req.uri();
    if req.method() == Method::CONNECT {
        if conn.mode != Mode::Explicit {
            return Err(ProxyError::Malformed("CONNECT on a transparent port"));
        }
        let auth = uri
            .authority()
            .ok_or(ProxyError::Malformed("CONNECT needs host:port"))?;
        let port = auth
            .port_u16()
            .ok_or(ProxyError::Malformed("CONNECT needs host:port"))?;
        return Ok(Target {
            kind: TargetKind::Connect,
            host: clean_host(auth.host())?,
            port,
            path: String::new(),
        });
    }
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/")
        .to_owned();
    if let Some(scheme) = uri.scheme_str() {
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(ProxyError::Malformed(
                "only http:// URLs go through the proxy as requests; https uses CONNECT",
            ));
        }
        let host = uri
            .host()
            .ok_or(ProxyError::Malformed("URL without a host"))?;
        return Ok(Target {
            kind: TargetKind::Http,
            host: clean_host(host)?,
            port: uri.port_u16().unwrap_or(80),
            path,
        });
    }
    match conn.mode {
        Mode::Explicit => Ok(Target {
            kind: TargetKind::Local,
            host: String::new(),
            port: 0,
            path,
        }),
        _ => {
            // Transparent: the Host header names the site; without one (HTTP/1.0),
            // the address the client was going to.
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok());
            match host {
                Some(h) if !h.is_empty() => {
                    let (name, port) = schoolgate_classifier::request::split_host_port(h);
                    Ok(Target {
                        kind: TargetKind::Http,
                        host: clean_host(name)?,
                        port: port.unwrap_or(80),
                        path,
                    })
                }
                _ => match conn.original_dst {
                    Some(dst) => Ok(Target {
                        kind: TargetKind::Http,
                        host: match dst.ip() {
                            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                            v4 => v4.to_string(),
                        },
                        port: dst.port(),
                        path,
                    }),
                    None => Err(ProxyError::Malformed("no Host header")),
                },
            }
        }
    }
}

/// Lowercases and checks a host: letters, digits, `-`, `_`, `.`, or an IP
/// literal. Anything else could smuggle text into the upstream request.
fn clean_host(host: &str) -> Result<String, ProxyError> {
    let h = host.trim_end_matches('.');
    if h.is_empty() || h.len() > 253 {
        return Err(ProxyError::Malformed("bad host name"));
    }
    if h.starts_with('[') {
        let inner = h.trim_start_matches('[').trim_end_matches(']');
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(h.to_ascii_lowercase()),
            Err(_) => Err(ProxyError::Malformed("bad IPv6 literal")),
        };
    }
    if !h
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(ProxyError::Malformed("bad host name"));
    }
    Ok(h.to_ascii_lowercase())
}

/// `host`, or `host:port` when the port is not 80: the `Host` header.
fn authority(t: &Target) -> Bytes {
    let mut a = String::with_capacity(t.host.len() + 6);
    a.push_str(&t.host);
    if t.port != 80 {
        a.push(':');
        a.push_str(itoa::Buffer::new().format(t.port));
    }
    Bytes::from(a)
}

/// Adds the SafeSearch parameter to a search URL (replacing a weaker value),
/// and YouTube's restriction header.
fn apply_safesearch(
    path: &mut String,
    headers: &mut HeaderMap,
    rw: schoolgate_classifier::Rewrite,
    youtube: schoolgate_classifier::config::Restriction,
) {
    if let Some((key, value)) = rw.param {
        let (p, query) = match path.split_once('?') {
            Some((p, q)) => (p, q),
            None => (path.as_str(), ""),
        };
        let mut out = String::with_capacity(path.len() + key.len() + value.len() + 2);
        out.push_str(p);
        out.push('?');
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let name = pair.split('=').next().unwrap_or("");
            if name != key {
                out.push_str(pair);
                out.push('&');
            }
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
        *path = out;
    } else if rw.cname.contains("youtube") {
        let level = match youtube {
            schoolgate_classifier::config::Restriction::Strict => "Strict",
            _ => "Moderate",
        };
        headers.insert("youtube-restrict", HeaderValue::from_static(level));
    }
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                })
                .unwrap_or(false)
        })
}

/// Whether our own `Via` token is already there: the request has looped back.
fn passed_through_us(h: &HeaderMap, via: &HeaderValue) -> bool {
    let Ok(ours) = via.to_str() else {
        return false;
    };
    h.get_all(header::VIA).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim() == ours))
            .unwrap_or(false)
    })
}

static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including any named in
/// `Connection`, and `Upgrade` (put back by the caller for an upgrade).
///
/// One pass over the names present, not a removal per hop-by-hop name: a typical
/// request or response has none of them but `Connection`, and each `remove`
/// hashes its name (20 removals were 4% of a proxied request's instructions).
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in h.keys() {
        if HOP_BY_HOP.contains(name) {
            doomed.push(name.clone());
        }
    }
    if doomed.is_empty() {
        return;
    }
    // Headers named by Connection are hop-by-hop too (rare: most messages name
    // none beyond keep-alive/close).
    for v in h.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            for t in s.split(',') {
                let t = t.trim();
                if t.is_empty()
                    || t.eq_ignore_ascii_case("close")
                    || t.eq_ignore_ascii_case("keep-alive")
                {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(t.as_bytes()) {
                    doomed.push(name);
                }
            }
        }
    }
    for name in doomed {
        h.remove(name);
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    let mut depth = 0;
    while let Some(c) = cur {
        if depth > 4 {
            break;
        }
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
        depth += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_carries_the_port_unless_it_is_80() {
        let target = |host: &str, port| Target {
            kind: TargetKind::Http,
            host: host.to_owned(),
            port,
            path: "/".to_owned(),
        };
        assert_eq!(authority(&target("example.com", 80)), "example.com");
        assert_eq!(authority(&target("example.com", 8080)), "example.com:8080");
        assert_eq!(authority(&target("[2001:db8::1]", 1)), "[2001:db8::1]:1");
        assert_eq!(authority(&target("a.test", 65535)), "a.test:65535");
    }

    #[test]
    fn hop_by_hop_headers_go_including_named_ones() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn every_hop_by_hop_header_goes_without_a_connection_header() {
        for name in &HOP_BY_HOP {
            let mut h = HeaderMap::new();
            h.append(name.clone(), HeaderValue::from_static("a"));
            h.append(name.clone(), HeaderValue::from_static("b"));
            h.insert("x-keep", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h);
            assert!(!h.contains_key(name), "{name} survived");
            assert_eq!(h.len(), 1, "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert("Keep-Alive", HeaderValue::from_static("timeout=5"));
        h.insert("Proxy-Connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn hosts_are_checked() {
        assert_eq!(
            clean_host("Example.COM.").ok().as_deref(),
            Some("example.com")
        );
        assert!(clean_host("bad host").is_err());
        assert!(clean_host("[::1]").is_ok());
        assert!(clean_host("[zz]").is_err());
    }
}
