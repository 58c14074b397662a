//! The shared state every handler gets: the running policy, the config file, the
//! event store, the state database and the bounded limiters.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use schoolgate_classifier::SharedPolicy;
use schoolgate_events::EventStore;
use schoolgate_lists::load::{LoadReport, Reloader};

use crate::auth::{AuthSettings, RateLimiter};
use crate::state::{Clock, Db};

/// What the binary's running servers report for the Health page (DNS queries per
/// second, proxy requests per second, pipeline counters, ...). Called on each view
/// of Health; must be cheap and must not block.
pub type HealthSource = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// The last policy load the dashboard knows of, for the Lists page.
#[derive(Clone, Debug)]
pub struct LoadState {
    pub at: Timestamp,
    pub report: LoadReport,
}

/// Handlers' state: cheap to clone.
#[derive(Clone)]
pub struct App(pub Arc<AppInner>);

impl std::ops::Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl std::fmt::Debug for AppInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppInner")
            .field("config_path", &self.config_path)
            .field("https", &self.https)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

pub struct AppInner {
    pub policy: SharedPolicy,
    pub config_path: PathBuf,
    pub reloader: Reloader,
    pub store: Arc<dyn EventStore>,
    pub health: HealthSource,
    pub db: Db,
    pub clock: Clock,
    pub started_at: Timestamp,
    /// Whether the dashboard is served over TLS (cookies are then `Secure`).
    pub https: bool,
    /// Login attempts per client address: 20 a minute is plenty for people and
    /// slow for a guessing script (the per-account lockout does the rest).
    pub login_limiter: RateLimiter,
    /// Wrong-block reports per client address: 5 per 10 minutes. The form needs no
    /// login, so this is what keeps a bored pupil from filling the queue.
    pub report_limiter: RateLimiter,
    pub last_load: Mutex<Option<LoadState>>,
    /// Serialises configuration saves: read, edit, reload and write are one step.
    pub config_lock: tokio::sync::Mutex<()>,
    pub summaries: crate::summary::Cache,
    /// The previous Health sample, to turn the servers' counters into rates.
    pub health_sample: Mutex<Option<crate::health::Sample>>,
}

impl AppInner {
    pub fn auth_settings(&self) -> AuthSettings {
        let p = self.policy.load();
        let d = &p.config().dashboard;
        AuthSettings {
            session_hours: d.session_hours,
            max_failed_logins: d.max_failed_logins,
            lockout_minutes: d.lockout_minutes,
        }
    }

    /// The school (or trust) name for page headers.
    pub fn school_name(&self) -> String {
        let p = self.policy.load();
        let c = p.config();
        match (&c.trust, c.schools.as_slice()) {
            (Some(t), _) => t.clone(),
            (None, [one]) if !one.name.is_empty() => one.name.clone(),
            _ => "schoolgate".to_owned(),
        }
    }

    pub fn tz(&self) -> jiff::tz::TimeZone {
        self.policy.load().time_zone().clone()
    }

    pub fn set_load(&self, report: LoadReport) {
        if let Ok(mut l) = self.last_load.lock() {
            *l = Some(LoadState {
                at: self.clock.now(),
                report,
            });
        }
    }

    pub fn load_state(&self) -> Option<LoadState> {
        self.last_load.lock().ok().and_then(|l| l.clone())
    }
}

pub const LOGIN_LIMIT: (u32, Duration) = (20, Duration::from_secs(60));
pub const REPORT_LIMIT: (u32, Duration) = (5, Duration::from_secs(600));
