//! Page render times with a large event store (not a test).
//!
//! Fills a SQLite event store with `SCHOOLGATE_BENCH_EVENTS` events (default 10
//! million, spread over eight weeks, 1% flagged and 3% blocked, 2 000 pupils) with
//! the events crate's own batched insert, keeps it under
//! `target/bench-data/` for the next run, starts the dashboard on 127.0.0.1:0 and
//! times each main page over HTTP (median and worst of several loads).
//!
//! ```text
//! cargo bench -p schoolgate-dashboard --bench pages
//! SCHOOLGATE_BENCH_EVENTS=1000000 cargo bench -p schoolgate-dashboard --bench pages
//! ```
//!
//! The store's own schema (opened here) has every index the pages use; an
//! experimental index an older run of this bench added is dropped, so the file
//! measures what a school runs. Figures: `benches/RESULTS.md`, "Dashboard".

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use jiff::{SignedDuration, Timestamp};
use schoolgate_classifier::config::store::Retention;
use schoolgate_classifier::{Action, Category, CategorySet, Config, Severity};
use schoolgate_dashboard::{Clock, Dashboard, DashboardContext, Role};
use schoolgate_events::{AccessEvent, Batch, EventStore, Source, SqliteStore, Totals};
use schoolgate_lists::load::{Reloader, compile};
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
[[schools]]
id = "hillside"
name = "Hillside Academy"
[policy]
default_role = "guest"
curated_lists = true
[roles.pupil]
block = ["pornography", "gambling", "proxy", "vpn", "games"]
flag = { self-harm = "high", suicide = "high", gambling = "low", vpn = "medium" }
[roles.staff]
block = ["pornography"]
[roles.guest]
extends = "pupil"
"#;

const PASSWORD: &str = "benchmark passphrase";
const BATCH: usize = 50_000;
const WEEKS: i64 = 8;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

fn event(i: u64, now: Timestamp) -> AccessEvent {
    // A cheap deterministic mix.
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let span_ms = WEEKS * 7 * 86_400_000;
    let at = now - SignedDuration::from_millis((h % span_ms as u64) as i64);
    let pupil = (h >> 20) % 2_000;
    let ip = IpAddr::V4(Ipv4Addr::new(
        10,
        20,
        (pupil / 250) as u8,
        (pupil % 250) as u8 + 1,
    ));
    let kind = (h >> 40) % 100;
    let hosts = [
        "www.bbc.co.uk",
        "www.google.com",
        "classroom.google.com",
        "www.wikipedia.org",
        "www.youtube.com",
        "senecalearning.com",
        "mathswatch.co.uk",
        "login.microsoftonline.com",
    ];
    let mut e = AccessEvent::new(
        if kind.is_multiple_of(2) {
            Source::Dns
        } else {
            Source::Proxy
        },
        ip,
        hosts[(h >> 8) as usize % hosts.len()],
    )
    .at(at)
    .with_school("hillside")
    .with_node("bench")
    .with_user(format!("pupil{pupil:04}"))
    .with_role("pupil")
    .with_method("GET")
    .with_status(200);
    e.id = ulid::Ulid::from_parts(at.as_millisecond() as u64, u128::from(i));
    if kind == 0 {
        let (host, cat, sev) = if (h >> 50).is_multiple_of(3) {
            ("selfharm-forum.example", Category::SelfHarm, Severity::High)
        } else {
            ("bet365.com", Category::Gambling, Severity::Low)
        };
        e.host = host.into();
        e = e
            .with_action(Action::Flag)
            .with_categories(CategorySet::of(cat))
            .with_category(cat)
            .with_severity(Some(sev))
            .with_rule("list bench", "flagged for pupil");
    } else if kind <= 3 {
        let (host, cat) = if kind == 1 {
            ("nordvpn.com", Category::Vpn)
        } else {
            ("coolmathgames.com", Category::Games)
        };
        e.host = host.into();
        e = e
            .with_action(Action::Block)
            .with_categories(CategorySet::of(cat))
            .with_category(cat)
            .with_rule("list bench", "blocked for pupil");
    }
    e
}

async fn fill(store: &SqliteStore, want: u64) {
    let have = store
        .totals(
            &schoolgate_events::Period::new(
                Timestamp::UNIX_EPOCH,
                Timestamp::now() + SignedDuration::from_hours(1),
            ),
            None,
        )
        .await
        .unwrap_or(Totals::default())
        .requests;
    if have >= want {
        println!("store already holds {have} events");
        return;
    }
    let now = Timestamp::now();
    let started = Instant::now();
    let mut i = have;
    while i < want {
        let n = (want - i).min(BATCH as u64);
        let events: Vec<AccessEvent> = (i..i + n).map(|k| event(k, now)).collect();
        store.insert(&Batch::new(events)).await.expect("insert");
        i += n;
        if i % 1_000_000 < BATCH as u64 {
            println!(
                "  {i} events, {:.0}/s",
                i.saturating_sub(have) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "filled {} events in {:.1} s",
        want - have,
        started.elapsed().as_secs_f64()
    );
}

struct Client {
    addr: SocketAddr,
    cookie: String,
}

impl Client {
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> (u16, String, Vec<String>) {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("cookie", &self.cookie)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        let resp = tx.send_request(req).await.expect("send");
        let status = resp.status().as_u16();
        let cookies = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned(), cookies)
    }
}

async fn time_page(c: &Client, path: &str, runs: usize) -> (Duration, Duration, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let (status, body, _) = c.request("GET", path, None).await;
        times.push(t.elapsed());
        assert_eq!(status, 200, "{path}: {body}");
        size = body.len();
    }
    times.sort();
    (times[times.len() / 2], times[times.len() - 1], size)
}

async fn run() {
    let want: u64 = std::env::var("SCHOOLGATE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&data).expect("bench dir");
    let store_path = data.join(format!("dashboard-{want}.sqlite"));
    let store = Arc::new(
        SqliteStore::open(
            &store_path,
            Retention {
                allowed_days: 3650,
                blocked_days: 3650,
                flagged_days: 3650,
                pseudonymise_guests: false,
            },
        )
        .expect("store"),
    );
    fill(&store, want).await;
    {
        let conn = rusqlite::Connection::open(&store_path).expect("open store file");
        conn.execute_batch("DROP INDEX IF EXISTS bench_flagged_time")
            .expect("index");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("schoolgate.toml");
    std::fs::write(&config_path, CONFIG).expect("config");
    let config = Config::parse("schoolgate.toml", CONFIG).expect("config");
    let (policy, report) = compile(config, dir.path(), &dir.path().join("cache")).expect("compile");
    let shared = schoolgate_classifier::shared(policy);
    let state = dir.path().join("dashboard.sqlite");
    for (role, name) in [
        (Role::EsafetyLead, "dsl"),
        (Role::Headteacher, "head"),
        (Role::NetworkManager, "nm"),
    ] {
        schoolgate_dashboard::add_user(&state, name, role, PASSWORD).expect("user");
    }
    let dash = Dashboard::new(DashboardContext {
        policy: shared.clone(),
        config_path,
        reloader: Reloader {
            shared,
            base_dir: dir.path().to_owned(),
            cache_dir: dir.path().join("cache"),
        },
        store: store.clone() as Arc<dyn EventStore>,
        health: Arc::new(
            || serde_json::json!({ "dns": { "qps": 400.0 }, "proxy": { "rps": 90.0 } }),
        ),
        state_path: state,
        started_at: Timestamp::now(),
        load_report: Some(report),
        clock: Clock::system(),
    })
    .expect("dashboard");
    let bound = dash
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = bound.local_addr();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(bound.run(shutdown.clone()));

    let login = |name: &'static str| async move {
        let c = Client {
            addr,
            cookie: String::new(),
        };
        let (status, body, cookies) = c
            .request(
                "POST",
                "/api/login",
                Some(serde_json::json!({ "username": name, "password": PASSWORD }).to_string()),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let cookie = cookies
            .iter()
            .find_map(|s| {
                s.split(';')
                    .next()
                    .filter(|kv| kv.starts_with("sg_session="))
            })
            .expect("cookie")
            .to_owned();
        Client { addr, cookie }
    };
    let dsl = login("dsl").await;
    let head = login("head").await;
    let nm = login("nm").await;

    // One flagged episode to open, from the queue.
    let (_, queue, _) = dsl.request("GET", "/api/review", None).await;
    let q: serde_json::Value = serde_json::from_str(&queue).expect("json");
    let ep = &q[0];
    let ms = |k: &str| {
        ep[k]
            .as_str()
            .and_then(|s| s.parse::<Timestamp>().ok())
            .map(|t| t.as_millisecond())
            .unwrap_or(0)
    };
    let episode = format!(
        "/review/episode?subject={}&from={}&to={}",
        ep["subject"].as_str().unwrap_or("").replace(':', "%3A"),
        ms("first"),
        ms("last")
    );
    let user = ep["label"].as_str().unwrap_or("pupil0001").to_owned();
    let today = Timestamp::now().strftime("%Y-%m-%d").to_string();

    println!("\n{want} events in the store; times over HTTP on loopback (median / worst of 5):\n");
    println!(
        "{:<58} {:>9} {:>9} {:>9}",
        "page", "median", "worst", "bytes"
    );
    let cold = Instant::now();
    let _ = head.request("GET", "/api/summary?refresh=1", None).await;
    println!(
        "{:<58} {:>7}ms {:>9} {:>9}",
        "weekly summary, built from the store (cache cold)",
        cold.elapsed().as_millis(),
        "",
        ""
    );
    let pages: Vec<(&Client, String)> = vec![
        (&head, "/summary".into()),
        (&dsl, "/review".into()),
        (&dsl, "/review?days=30&show=all".into()),
        (&dsl, "/review?days=90&show=all".into()),
        (&dsl, episode),
        (&dsl, format!("/timeline?user={user}&date={today}")),
        (
            &dsl,
            "/search?host=selfharm&from=".to_owned()
                + &(Timestamp::now() - SignedDuration::from_hours(48))
                    .strftime("%Y-%m-%d")
                    .to_string(),
        ),
        // A host no event has: the worst case, every event of the default
        // seven days read once.
        (&dsl, "/search?host=no-such-host.example".into()),
        (&dsl, "/incidents".into()),
        (&nm, "/policy".into()),
        (&nm, "/policy/test?url=https://www.bet365.com/".into()),
        (&nm, "/lists".into()),
        (&nm, "/health".into()),
        (&nm, "/audit".into()),
    ];
    for (c, path) in pages {
        let (median, worst, size) = time_page(c, &path, 5).await;
        let shown: String = path.chars().take(58).collect();
        println!(
            "{:<58} {:>7}ms {:>7}ms {:>9}",
            shown,
            median.as_millis(),
            worst.as_millis(),
            size
        );
    }
    shutdown.cancel();
    let _ = server.await;
}
