//! The dashboard: schoolgate's web UI and JSON API for the people who run and
//! review the filter.
//!
//! It owns:
//! - accounts, sessions, CSRF, lockout and per-role access for four roles: the
//!   network manager, the e-safety lead / DSL, the headteacher and a health-only
//!   viewer ([`auth`]);
//! - the append-only, hash-chained audit log of every view of a person's activity
//!   and every change ([`audit`]);
//! - the policy editor, which edits the school's TOML file in place (comments
//!   survive), validates, hot-reloads through [`schoolgate_lists::load::Reloader`]
//!   and keeps every version with who, when, what and why ([`policy_editor`]);
//! - "Test a URL", the Lists and Health pages and the wrong-block report queue;
//! - the e-safety lead's review of flagged access in episodes, timelines, search,
//!   and the e-Safety Incident Log with exportable evidence;
//! - the headteacher's weekly summary page.
//!
//! It decides nothing (that is `schoolgate-classifier`) and stores no events (that
//! is `schoolgate-events`); it keeps its own small SQLite file for what people did.
//! Every page is server-rendered HTML (maud) with SVG charts and a few lines of
//! JavaScript; every page has a JSON twin under `/api/`.
//!
//! ```no_run
//! # async fn run(ctx: schoolgate_dashboard::DashboardContext) -> Result<(), schoolgate_dashboard::DashboardError> {
//! let dashboard = schoolgate_dashboard::Dashboard::new(ctx)?;
//! let bound = dashboard.bind("127.0.0.1:8080".parse().expect("address")).await?;
//! println!("dashboard on {}", bound.local_addr());
//! bound.run(tokio_util::sync::CancellationToken::new()).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! ```text
//! lib.rs            Dashboard, DashboardContext, BoundDashboard, add_user
//! app.rs            the state handlers share
//! server.rs         bind, TLS, the bounded accept loop, shutdown
//! web.rs            the router; middleware: sessions, CSRF, security headers, error pages
//! error.rs          DashboardError -> HTTP
//! state.rs          the dashboard's SQLite schema, Clock
//! auth.rs           roles, passwords, sessions, lockout, rate limits
//! audit.rs          the append-only hash-chained audit log
//! ui.rs charts.rs   page layout, components, CSS/JS, server-rendered SVG charts
//! accounts.rs       login, logout, password, users, the audit page
//! health.rs         Health
//! policy_editor/    roles x categories, local lists, schedules, networks, versions, Test a URL
//! lists.rs          list sources and counts; add a source; reload
//! wrong_blocks.rs   the public report form and the network manager's queue
//! review.rs         flagged episodes, timelines, search (the DSL)
//! incidents.rs      the e-Safety Incident Log, exports
//! summary.rs        the weekly summary page, and the archive and facts for the weekly job
//! ```

pub mod accounts;
pub mod app;
pub mod audit;
pub mod auth;
pub mod charts;
pub mod error;
pub mod health;
pub mod incidents;
pub mod lists;
pub mod policy_editor;
pub mod review;
pub mod server;
pub mod state;
pub mod summary;
pub mod ui;
pub mod web;
pub mod wrong_blocks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use schoolgate_classifier::SharedPolicy;
use schoolgate_events::EventStore;
use schoolgate_lists::load::{LoadReport, Reloader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use app::HealthSource;
pub use auth::Role;
pub use error::{DashboardError, Result};
pub use state::Clock;

use crate::app::{App, AppInner, LOGIN_LIMIT, REPORT_LIMIT};
use crate::auth::RateLimiter;
use crate::state::Db;

/// What the binary hands the dashboard.
pub struct DashboardContext {
    /// The running policy (the dashboard reads it and, through `reloader`, swaps it).
    pub policy: SharedPolicy,
    /// The configuration file the policy editor edits in place.
    pub config_path: PathBuf,
    /// Recompiles and swaps the policy; refuses (keeping the old one) on errors.
    pub reloader: Reloader,
    pub store: Arc<dyn EventStore>,
    /// DNS/proxy/pipeline figures for Health (see [`HealthSource`]).
    pub health: HealthSource,
    /// `[dashboard] state`: the dashboard's own SQLite file.
    pub state_path: PathBuf,
    /// When schoolgate started (uptime on Health and in the summary).
    pub started_at: Timestamp,
    /// The start-up load's report, for the Lists page until the first reload.
    pub load_report: Option<LoadReport>,
    /// [`Clock::system()`] in production.
    pub clock: Clock,
}

impl std::fmt::Debug for DashboardContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardContext")
            .field("config_path", &self.config_path)
            .field("state_path", &self.state_path)
            .finish_non_exhaustive()
    }
}

/// A dashboard ready to bind.
#[derive(Debug)]
pub struct Dashboard {
    app: App,
}

impl Dashboard {
    /// Opens the state database (creating it) and records the configuration file
    /// as a version if it changed since the dashboard last saw it.
    pub fn new(ctx: DashboardContext) -> Result<Dashboard> {
        let db = Db::open(&ctx.state_path)?;
        let https = {
            let p = ctx.policy.load();
            let d = &p.config().dashboard;
            d.tls_cert.is_some() && d.tls_key.is_some()
        };
        let app = App(Arc::new(AppInner {
            policy: ctx.policy,
            config_path: ctx.config_path,
            reloader: ctx.reloader,
            store: ctx.store,
            health: ctx.health,
            db,
            clock: ctx.clock,
            started_at: ctx.started_at,
            https,
            login_limiter: RateLimiter::new(LOGIN_LIMIT.0, LOGIN_LIMIT.1),
            report_limiter: RateLimiter::new(REPORT_LIMIT.0, REPORT_LIMIT.1),
            last_load: Mutex::new(None),
            config_lock: tokio::sync::Mutex::new(()),
            summaries: summary::Cache::default(),
            health_sample: Mutex::new(None),
        }));
        if let Some(r) = ctx.load_report {
            app.set_load(r);
        }
        policy_editor::versions::record_file_at_start(&app)?;
        Ok(Dashboard { app })
    }

    /// Where the weekly job keeps the summaries it builds (the summary page shows
    /// them), and what it learns of a week from the dashboard: hand it to
    /// `schoolgate_reports::WeeklyJob` as both its `SummaryArchive` and its
    /// `WeekFacts`.
    pub fn summary_archive(&self) -> summary::Archive {
        summary::Archive::new(self.app.clone())
    }

    /// The router, for embedding the dashboard in another server.
    pub fn router(&self) -> axum::Router {
        web::router(self.app.clone())
    }

    /// Binds `addr`, with TLS when `[dashboard] tls_cert` and `tls_key` are set
    /// (relative paths are read from the configuration file's folder).
    pub async fn bind(self, addr: SocketAddr) -> Result<BoundDashboard> {
        let tls = {
            let p = self.app.policy.load();
            let d = &p.config().dashboard;
            match (&d.tls_cert, &d.tls_key) {
                (Some(c), Some(k)) => {
                    let base = &self.app.reloader.base_dir;
                    Some(server::tls_acceptor(&base.join(c), &base.join(k))?)
                }
                _ => None,
            }
        };
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        Ok(BoundDashboard {
            listener,
            local,
            tls,
            app: self.app,
        })
    }
}

/// A dashboard bound to its address, not yet serving.
pub struct BoundDashboard {
    listener: TcpListener,
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: App,
}

impl std::fmt::Debug for BoundDashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundDashboard")
            .field("local", &self.local)
            .field("https", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl BoundDashboard {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` is cancelled; open requests get a short grace
    /// period. Also keeps the weekly summary warm in the background.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let warm = tokio::spawn(summary::keep_warm(self.app.clone(), shutdown.clone()));
        let router = web::router(self.app.clone());
        let out = server::serve(self.listener, self.tls, router, shutdown).await;
        warm.abort();
        out
    }
}

/// Adds a dashboard account (`schoolgate user add NAME --role ROLE`). The caller
/// reads the password from a prompt or stdin. Blocking; for the command line.
pub fn add_user(state_path: &Path, name: &str, role: Role, password: &str) -> Result<()> {
    auth::valid_user_name(name)?;
    auth::check_password_rules(name, password)?;
    let hash = auth::hash_password(password)?;
    let db = Db::open(state_path)?;
    let now = Timestamp::now().as_millisecond();
    db.call_blocking(|c| {
        auth::insert_user(
            c,
            now,
            &audit::AuditEntry {
                actor: "command line",
                role: "",
                action: "",
                target: "",
                reason: "schoolgate user add",
                detail: "",
            },
            name,
            role,
            &hash,
        )
    })
}
