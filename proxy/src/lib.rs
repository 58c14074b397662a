//! schoolgate's web proxy: where pupils meet the filter.
//!
//! It owns the three web faces of schoolgate and nothing else:
//! - the **explicit proxy** (browsers configured by PAC/WPAD): absolute-form
//!   HTTP/1.x with keep-alive and pooled upstream connections, `CONNECT`
//!   tunnels (only to `proxy.connect_ports`, never to itself), WebSocket
//!   upgrades, and the PAC file (`/proxy.pac`, `/wpad.dat`);
//! - **transparent HTTP** (redirected port 80, routed by `Host`);
//! - **transparent HTTPS** (redirected port 443, read by the TLS SNI and spliced
//!   to the original destination without decrypting it).
//!
//! For every request it identifies the client (address → network/device role,
//! or Basic proxy authentication against the users file; addresses outside the
//! school's networks are refused), asks the classifier, enforces the verdict
//! (block page, SafeSearch parameter, size caps, no guest access to internal
//! networks, domain-fronting check between CONNECT host and SNI) and sends one
//! [`AccessEvent`](schoolgate_events::AccessEvent) to the event pipeline when the
//! request is over. Policy decisions are the classifier's; storage is the event
//! pipeline's.
//!
//! ```no_run
//! # async fn run(policy: schoolgate_classifier::SharedPolicy, events: schoolgate_events::EventSender) {
//! use schoolgate_proxy::{Listeners, Proxy, ProxyServer};
//! let proxy = Proxy::new(policy, events);
//! let server = ProxyServer::bind(proxy.clone(), Listeners {
//!     explicit: Some("0.0.0.0:3128".parse().unwrap()),
//!     transparent_http: None,
//!     transparent_https: None,
//! }).expect("bind");
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! server.run(shutdown).await;
//! # }
//! ```
//!
//! # Layout
//! - [`proxy`]: [`Proxy`], the request pipeline (target, identity, decision,
//!   block page, forwarding, CONNECT, WebSocket, the event)
//! - [`hooks`]: [`ProxyHooks`], the one extension point, and [`RequestContext`]
//! - [`server`]: [`ProxyServer`], listeners, one single-threaded runtime per
//!   core, accept loops, connection limits, shutdown
//! - [`head`]: the first request head, checked before hyper (400/414/431 pages)
//! - `transparent`: transparent HTTPS by SNI
//! - [`clienthello`]: the strict TLS ClientHello reader
//! - [`tunnel`]: byte splicing with counts and idle timeout
//! - [`upstream`]: resolution, guest SSRF and loop checks, the pooled connector
//! - [`body`]: counted and capped bodies that finish the event
//! - [`pages`]: block page, error pages, PAC file
//! - [`users`]: the proxy users file (argon2 hashes)
//! - [`view`]: settings derived once per policy snapshot
//! - [`stats`]: counters for the dashboard
//! - [`error`]: errors that know whose fault they were

pub mod body;
pub mod clienthello;
pub mod error;
pub mod head;
pub mod hooks;
pub mod pages;
pub mod pool;
pub mod proxy;
pub mod server;
pub mod stats;
mod transparent;
pub mod tunnel;
pub mod upstream;
pub mod users;
pub mod view;

pub use body::ProxyBody;
pub use error::{BindError, ConnectError, Fault, ProxyError};
pub use hooks::{Control, DefaultHooks, Mode, ProxyHooks, RequestContext};
pub use pages::{BlockPage, REASON_HEADER, REF_HEADER};
pub use proxy::{Proxy, ProxyBuilder};
pub use server::{Listeners, ProxyServer, default_workers};
pub use stats::{ErrorsBySide, ProxyStats};
pub use users::{Users, hash_password};
