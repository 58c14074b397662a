//! End-to-end in a real headless Chromium, driven through chromedriver's WebDriver
//! HTTP API with a small client on hyper. Screenshots of the main pages go to
//! `target/test-artifacts/dashboard/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use jiff::{SignedDuration, Timestamp};
use schoolgate_classifier::Action;
use schoolgate_dashboard::Role;
use serde_json::{Value, json};

use crate::support::{Harness, PASSWORD, role_user};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts/dashboard");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// Installs Debian's chromium and chromedriver when they are missing.
fn ensure_chromium() {
    let have = |p: &str| std::path::Path::new(p).exists();
    if have("/usr/bin/chromium") && have("/usr/bin/chromedriver") {
        return;
    }
    let ok = std::process::Command::new("sh")
        .args(["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-dejavu-core"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok && have("/usr/bin/chromedriver"),
        "chromium and chromium-driver are needed (apt-get install chromium chromium-driver)"
    );
}

struct Driver {
    port: u16,
    session: String,
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start(width: u32, height: u32) -> Driver {
        ensure_chromium();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
            l.local_addr().expect("addr").port()
        };
        let child = tokio::process::Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver");
        let profile = tempfile::tempdir().expect("profile");
        let mut d = Driver {
            port,
            session: String::new(),
            _child: child,
            _profile: profile,
        };
        for _ in 0..100 {
            if d.call("GET", "/status", None)
                .await
                .is_some_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", d._profile.path().display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome", "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args } } } });
        let v = d
            .call("POST", "/session", Some(caps))
            .await
            .expect("new session");
        d.session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        d
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Option<Value> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("127.0.0.1:{}", self.port))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .ok()?;
        let resp = tx.send_request(req).await.ok()?;
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&bytes).ok()
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let p = format!("/session/{}{path}", self.session);
        let v = self
            .call(method, &p, body)
            .await
            .unwrap_or_else(|| panic!("webdriver {method} {path}: no answer"));
        if v["value"].get("error").is_some() {
            panic!("webdriver {method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})))
            .await;
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    async fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Waits (bounded) until the current URL contains `part`.
    async fn wait_url(&self, part: &str) -> String {
        for _ in 0..150 {
            let u = self.url().await;
            if u.contains(part) {
                return u;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the browser never reached a URL containing {part}; it is at {}",
            self.url().await
        );
    }

    async fn screenshot(&self, name: &str) {
        let v = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or(""))
            .expect("png");
        std::fs::write(artifacts().join(format!("{name}.png")), png).expect("write screenshot");
    }

    async fn login(&self, base: &str, role: Role) {
        self.goto(&format!("{base}/login")).await;
        self.type_into("#username", role_user(role)).await;
        self.type_into("#password", PASSWORD).await;
        self.click("button[type=submit]").await;
        self.wait_url(role.home()).await;
    }

    async fn quit(self) {
        let _ = self
            .call("DELETE", &format!("/session/{}", self.session), None)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_manager_blocks_games_for_pupils_in_the_browser() {
    let h = Harness::start().await;
    assert_eq!(
        h.verdict("pupil", "https://minecraft.net/").action,
        Action::Allow
    );
    let d = Driver::start(1440, 1000).await;
    d.goto(&format!("{}/login", h.base)).await;
    d.screenshot("01-login").await;
    d.login(&h.base, Role::NetworkManager).await;
    d.screenshot("02-policy-matrix").await;
    d.click("select[name='c.pupil.games'] option[value='block']")
        .await;
    d.type_into("#reason", "Games during lessons (ticket 412)")
        .await;
    d.click(".savebar button[type=submit]").await;
    d.wait_url("/policy?ok=").await;
    assert!(
        d.source()
            .await
            .contains("roles.pupil: games block (was allow)")
    );
    // The running policy changed: the proxy's next verdict for a pupil blocks.
    let v = h.verdict("pupil", "https://minecraft.net/");
    assert_eq!(v.action, Action::Block);
    assert!(v.reason().contains("games"), "{}", v.reason());
    d.goto(&format!("{}/policy/test", h.base)).await;
    d.type_into("#url", "https://minecraft.net/").await;
    d.click("form.card button[type=submit]").await;
    d.wait_url("url=").await;
    let page = d.source().await;
    assert!(
        page.contains("act-block") && page.contains("blocked for pupil: games"),
        "Test a URL shows the block"
    );
    d.screenshot("03-test-a-url").await;
    d.goto(&format!("{}/policy/history", h.base)).await;
    assert!(
        d.source()
            .await
            .contains("Games during lessons (ticket 412)")
    );
    d.screenshot("04-change-history").await;
    d.goto(&format!("{}/lists", h.base)).await;
    d.screenshot("05-lists").await;
    d.goto(&format!("{}/health", h.base)).await;
    d.screenshot("06-health").await;
    d.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esafety_lead_escalates_an_episode_and_closes_the_incident_in_the_browser() {
    let h = Harness::start().await;
    h.seed_episode("p.brown", Timestamp::now() - SignedDuration::from_mins(75))
        .await;
    h.seed_episode("k.singh", Timestamp::now() - SignedDuration::from_mins(200))
        .await;
    let d = Driver::start(1440, 1000).await;
    d.login(&h.base, Role::EsafetyLead).await;
    assert!(d.source().await.contains("p.brown"));
    d.screenshot("07-flagged-queue").await;
    d.click("a[href*='subject=user%3Ap.brown']").await;
    d.wait_url("/review/episode").await;
    assert!(d.source().await.contains("how to hurt myself"));
    d.screenshot("08-episode").await;
    d.type_into(
        "#summary",
        "Repeated searches about self-harm in Year 9 ICT",
    )
    .await;
    d.click("form[action='/review/escalate'] button").await;
    let url = d.wait_url("/incidents/").await;
    d.screenshot("09-incident-open").await;
    d.click("#status option[value='closed']").await;
    d.type_into("#actions_taken", "Met pupil with parents and head of year")
        .await;
    d.type_into("#people_informed", "Parents (phone); head of year")
        .await;
    d.type_into(
        "#closure",
        "Referred to the school counsellor; monitoring for four weeks",
    )
    .await;
    d.click("main form[action^='/incidents/'] button[type=submit]")
        .await;
    for _ in 0..150 {
        if d.source().await.contains("badge st-closed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = d.source().await;
    assert!(
        page.contains("badge st-closed"),
        "the incident shows closed"
    );
    assert!(page.contains("status open → closed"));
    d.screenshot("10-incident-closed").await;
    d.goto(&format!("{}/incidents", h.base)).await;
    d.screenshot("11-incident-log").await;
    assert!(url.contains("/incidents/"));
    d.quit().await;
    // A tablet-sized view of the queue.
    let t = Driver::start(820, 1180).await;
    t.login(&h.base, Role::EsafetyLead).await;
    t.goto(&format!("{}/review?show=all", h.base)).await;
    t.screenshot("12-flagged-queue-tablet").await;
    t.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headteacher_opens_the_weekly_summary_in_the_browser() {
    let h = Harness::start().await;
    for (i, user) in ["p.brown", "k.singh", "a.jones", "m.wood"]
        .iter()
        .enumerate()
    {
        for week in 0..4i64 {
            h.seed_episode(
                user,
                Timestamp::now() - SignedDuration::from_hours(24 * 7 * week + 2 + i as i64),
            )
            .await;
        }
    }
    let d = Driver::start(1440, 1400).await;
    d.login(&h.base, Role::Headteacher).await;
    d.goto(&format!("{}/summary?refresh=1", h.base)).await;
    let page = d.source().await;
    assert!(
        page.contains("Weekly summary")
            && page.contains("What was blocked and flagged")
            && page.contains("<svg")
    );
    assert!(
        !page.contains("p.brown"),
        "no pupil named on the head's summary"
    );
    d.screenshot("13-weekly-summary").await;
    d.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_manager_adds_a_timed_rule_on_a_tablet() {
    let h = Harness::start().await;
    // Staff's verdict for a games site at a school-time moment today.
    let staff_at = |hh: i8, mm: i8| {
        let p = h.policy.load();
        let id = p.role_id("staff").expect("role");
        let tz = jiff::tz::TimeZone::get("Europe/London").expect("tz");
        let at = Timestamp::now()
            .to_zoned(tz.clone())
            .date()
            .at(hh, mm, 0, 0)
            .to_zoned(tz)
            .expect("zoned")
            .timestamp();
        p.decide(&schoolgate_classifier::Request::url(
            id,
            "https://minecraft.net/",
            at,
        ))
        .action
    };
    assert_eq!(staff_at(12, 30), Action::Allow);
    let d = Driver::start(820, 1180).await;
    d.login(&h.base, Role::NetworkManager).await;
    d.goto(&format!("{}/policy/schedules", h.base)).await;
    d.screenshot("14-schedules-tablet").await;
    d.click("#t-role option[value='staff']").await;
    d.click("input[name='schedule'][value='lunch']").await;
    d.click("#t-block option[value='games']").await;
    d.type_into("#t-reason", "No games for staff at lunch (SLT minute 7)")
        .await;
    d.click("#add-timed button[type=submit]").await;
    d.wait_url("ok=").await;
    let page = d.source().await;
    assert!(
        page.contains("roles.staff.timed: added during lunch: block games"),
        "the saved change is shown"
    );
    d.screenshot("15-timed-rule-added-tablet").await;
    // The running policy changed: blocked at lunch, not before it.
    assert_eq!(staff_at(12, 30), Action::Block);
    assert_eq!(staff_at(10, 0), Action::Allow);
    d.quit().await;
}
