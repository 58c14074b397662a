//! Shared test helpers: a school configuration with small local lists, a running
//! dashboard on 127.0.0.1:0 backed by a real SQLite event store, accounts for
//! every role, a tiny HTTP client with a cookie jar, and seeded events.

#![allow(dead_code)]

pub mod client;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use schoolgate_classifier::config::store::Retention;
use schoolgate_classifier::{
    Action, Category, CategorySet, Config, Request, Severity, SharedPolicy, Verdict,
};
use schoolgate_dashboard::{Clock, Dashboard, DashboardContext, Role};
use schoolgate_events::{AccessEvent, Batch, EventStore, Source, SqliteStore};
use schoolgate_lists::load::{Reloader, compile};
use tokio_util::sync::CancellationToken;

pub use client::Client;

pub const PASSWORD: &str = "correct horse battery";

/// The test school's configuration: comments included, so saves can be checked
/// to keep them.
pub const CONFIG: &str = r#"# Hillside Academy test configuration.
[[schools]]
id = "hillside"
name = "Hillside Academy"

[policy]
default_role = "guest"      # unknown devices get the most restricted level
timezone = "Europe/London"
curated_lists = false

[dashboard]
state = "dashboard.sqlite"
max_failed_logins = 3
lockout_minutes = 15
session_hours = 8

[schedules.lunch]
days = "every-day"
times = ["12:15-13:05"]

[roles.pupil]
description = "Years 7 to 11"
block = ["pornography", "drugs", # the usual
         "proxy", "vpn"]
flag = { self-harm = "high", suicide = "high", extremism = "high", gambling = "low", proxy = "medium" }
allow = ["bbc.co.uk"]
safesearch = "strict"

[roles.staff]
description = "Teaching and support staff"
block = ["pornography"]
flag = { suicide = "high" }

[roles.guest]
description = "Visitors"
extends = "pupil"

[[networks]]
cidr = "10.20.0.0/16"
role = "pupil"
school = "hillside"
name = "Pupil VLAN 20"

[[lists]]
name = "local-gambling"
format = "domains"
category = "gambling"
path = "lists/gambling.txt"

[[lists]]
name = "local-games"
format = "domains"
category = "games"
path = "lists/games.txt"

[[lists]]
name = "local-selfharm"
format = "domains"
category = "self-harm"
path = "lists/selfharm.txt"
"#;

/// A running dashboard and what it was built from.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub base: String,
    pub policy: SharedPolicy,
    pub store: Arc<SqliteStore>,
    pub clock: Clock,
    pub config_path: PathBuf,
    pub state_path: PathBuf,
    /// The dashboard's summary archive and week facts, for a weekly job.
    pub archive: schoolgate_dashboard::summary::Archive,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub fn write_lists(dir: &Path) {
    let lists = dir.join("lists");
    std::fs::create_dir_all(&lists).expect("lists dir");
    std::fs::write(lists.join("gambling.txt"), "bet365.com\npaddypower.com\n").expect("write");
    std::fs::write(
        lists.join("games.txt"),
        "coolmathgames.com\nminecraft.net\n",
    )
    .expect("write");
    std::fs::write(lists.join("selfharm.txt"), "selfharm-forum.example\n").expect("write");
}

pub struct Options {
    pub tls: bool,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Options { tls: false }).await
    }

    pub async fn start_with(opts: Options) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        write_lists(dir.path());
        let mut text = CONFIG.to_owned();
        if opts.tls {
            let cert =
                rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                    .expect("cert");
            std::fs::write(dir.path().join("dash.crt"), cert.cert.pem()).expect("write");
            std::fs::write(
                dir.path().join("dash.key"),
                cert.signing_key.serialize_pem(),
            )
            .expect("write");
            text = text.replace(
                "session_hours = 8",
                "session_hours = 8\ntls_cert = \"dash.crt\"\ntls_key = \"dash.key\"",
            );
        }
        let config_path = dir.path().join("schoolgate.toml");
        std::fs::write(&config_path, &text).expect("write config");
        let config = Config::parse("schoolgate.toml", &text).expect("test config parses");
        let cache = dir.path().join("cache");
        let (policy, report) = compile(config, dir.path(), &cache).expect("compiles");
        assert!(report.is_complete(), "{:?}", report.failures());
        let shared = schoolgate_classifier::shared(policy);
        let store = Arc::new(
            SqliteStore::open(dir.path().join("events.sqlite"), Retention::default())
                .expect("store"),
        );
        let clock = Clock::system();
        let state_path = dir.path().join("dashboard.sqlite");
        for role in Role::ALL {
            schoolgate_dashboard::add_user(&state_path, role_user(role), role, PASSWORD)
                .expect("add user");
        }
        let ctx = DashboardContext {
            policy: shared.clone(),
            config_path: config_path.clone(),
            reloader: Reloader {
                shared: shared.clone(),
                base_dir: dir.path().to_owned(),
                cache_dir: cache,
            },
            store: store.clone() as Arc<dyn EventStore>,
            health: Arc::new(|| {
                serde_json::json!({
                    "dns": { "qps": 412.5, "answered": 1_204_332, "blocked": 80_121, "upstreams": [
                        { "upstream": "tls://9.9.9.9:853#dns.quad9.net", "up": false, "failures": 3,
                          "last_error": "upstream TLS handshake failed: invalid peer certificate: certificate not valid for name \"dns.quad9.net\"" },
                        { "upstream": "10.30.0.10:53", "up": true, "failures": 0, "last_error": null }
                    ] },
                    "proxy": { "rps": 96.2, "connections": 311 },
                    "pipeline": { "queued": 12, "spooled": 0, "inserted": 1_204_000, "dead_lettered": 0, "spool_bytes": 0 }
                })
            }),
            state_path: state_path.clone(),
            // Up since before last week began (last week starts 7 to 14 days
            // ago), so the filter's health is known for every week a test
            // builds, whatever the day the tests run.
            started_at: Timestamp::now() - SignedDuration::from_hours(15 * 24 + 2),
            load_report: Some(report),
            clock: clock.clone(),
        };
        let dash = Dashboard::new(ctx).expect("dashboard");
        let archive = dash.summary_archive();
        let bound = dash
            .bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = bound.local_addr();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            let _ = bound.run(token).await;
        });
        let scheme = if opts.tls { "https" } else { "http" };
        Harness {
            base: format!("{scheme}://{addr}"),
            dir,
            addr,
            policy: shared,
            store,
            clock,
            config_path,
            state_path,
            archive,
            shutdown,
            task: Some(task),
        }
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// A client logged in as the account of `role`.
    pub async fn login(&self, role: Role) -> Client {
        let mut c = self.client();
        c.login(role_user(role), PASSWORD).await;
        c
    }

    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config_path).expect("config")
    }

    /// The verdict the running policy gives `role` for `url` now.
    pub fn verdict(&self, role: &str, url: &str) -> Verdict {
        let p = self.policy.load();
        let id = p.role_id(role).expect("role");
        p.decide(&Request::url(id, url, Timestamp::now()))
    }

    pub async fn insert(&self, events: Vec<AccessEvent>) {
        self.store
            .insert(&Batch::new(events))
            .await
            .expect("insert");
    }

    /// Seeds one pupil's flagged episode (self-harm searches with browsing around
    /// them) and some ordinary traffic. Returns the flagged events' ids.
    pub async fn seed_episode(&self, user: &str, at: Timestamp) -> Vec<String> {
        let ip: IpAddr = "10.20.4.17".parse().expect("ip");
        let mut events = Vec::new();
        let mut flagged = Vec::new();
        for (i, (host, cat, sev, action)) in [
            ("www.bbc.co.uk", None, None, Action::Allow),
            (
                "www.google.com",
                Some(Category::Search),
                None,
                Action::Allow,
            ),
            (
                "selfharm-forum.example",
                Some(Category::SelfHarm),
                Some(Severity::High),
                Action::Flag,
            ),
            (
                "www.google.com",
                Some(Category::SelfHarm),
                Some(Severity::High),
                Action::Flag,
            ),
            (
                "bet365.com",
                Some(Category::Gambling),
                Some(Severity::Low),
                Action::Flag,
            ),
            ("nordvpn.com", Some(Category::Vpn), None, Action::Block),
            ("www.wikipedia.org", None, None, Action::Allow),
        ]
        .into_iter()
        .enumerate()
        {
            let mut e = AccessEvent::new(Source::Proxy, ip, host)
                .at(at + SignedDuration::from_mins(i as i64 * 3))
                .with_school("hillside")
                .with_user(user)
                .with_device("HS-LAPTOP-114")
                .with_role("pupil")
                .with_method("GET")
                .with_action(action)
                .with_severity(sev)
                .with_rule(
                    "list local-selfharm: selfharm-forum.example",
                    format!("{action} for pupil"),
                );
            if let Some(c) = cat {
                e = e.with_categories(CategorySet::of(c)).with_category(c);
            }
            if host == "www.google.com" && cat == Some(Category::SelfHarm) {
                e = e
                    .with_path("/search?q=how+to+hurt+myself")
                    .with_search_terms("how to hurt myself");
            }
            if e.is_flagged() {
                flagged.push(e.id.to_string());
            }
            events.push(e);
        }
        self.insert(events).await;
        flagged
    }
}

pub fn role_user(role: Role) -> &'static str {
    match role {
        Role::NetworkManager => "nm.jones",
        Role::EsafetyLead => "dsl.patel",
        Role::Headteacher => "head.ahmed",
        Role::Viewer => "tech.lee",
    }
}
