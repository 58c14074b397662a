//! Shared harness: configs and policies from the examples, a SQLite store in a
//! temp dir, a deterministic week of school traffic with an oracle that counts it
//! independently, a real SMTP server (aiosmtpd) as a child process, and a hyper
//! webhook receiver.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schoolgate_classifier::{
    Action, Category, CategorySet, Config, Policy, PolicyBuilder, Severity,
};
use schoolgate_events::{AccessEvent, Batch, EventStore, Source, SqliteStore};
use schoolgate_reports::IsoWeek;
use tempfile::TempDir;
use tokio::sync::mpsc;

// ---------------------------------------------------------------- config, store

pub fn example(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("example config");
    Config::parse(name, &text).expect("example config parses")
}

pub fn policy(config: &Config) -> Policy {
    PolicyBuilder::new(config.clone()).build().expect("policy")
}

pub fn week(s: &str) -> IsoWeek {
    s.parse().expect("week")
}

pub struct Store {
    pub dir: TempDir,
    pub store: SqliteStore,
}

pub fn store() -> Store {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        SqliteStore::open(dir.path().join("events.sqlite"), Default::default()).expect("store");
    Store { dir, store }
}

pub async fn insert(store: &dyn EventStore, events: &[AccessEvent]) {
    for chunk in events.chunks(2_000) {
        store
            .insert(&Batch::new(chunk.to_vec()))
            .await
            .expect("insert");
    }
}

/// Where test artefacts go: `target/test-artifacts` of the build in use.
pub fn artefacts_dir() -> PathBuf {
    // The test binary is target/<profile>/deps/reports-HASH.
    let exe = std::env::current_exe().expect("current exe");
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("artefacts dir");
    dir
}

// ---------------------------------------------------------------- traffic

/// One kind of request the generator makes.
struct Behaviour {
    weight: u32,
    hosts: &'static [&'static str],
    categories: &'static [Category],
    /// (action, severity) for pupils, sixth-formers and guests.
    young: (Action, Option<Severity>),
    staff: (Action, Option<Severity>),
}

use Category as C;
const A: (Action, Option<Severity>) = (Action::Allow, None);
const B: (Action, Option<Severity>) = (Action::Block, None);
const fn bf(s: Severity) -> (Action, Option<Severity>) {
    (Action::Block, Some(s))
}
const fn ff(s: Severity) -> (Action, Option<Severity>) {
    (Action::Flag, Some(s))
}

const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        weight: 300,
        hosts: &["www.bbc.co.uk", "www.bbc.co.uk", "news.sky.com"],
        categories: &[C::News],
        young: A,
        staff: A,
    },
    Behaviour {
        weight: 260,
        hosts: &[
            "www.senecalearning.com",
            "www.mathswatch.co.uk",
            "classroom.google.com",
            "www.bbc.co.uk/bitesize",
            "quizlet.com",
        ],
        categories: &[C::Education],
        young: A,
        staff: A,
    },
    Behaviour {
        weight: 400,
        hosts: &[
            "login.microsoftonline.com",
            "outlook.office.com",
            "teams.microsoft.com",
            "docs.google.com",
            "en.wikipedia.org",
            "www.hillside.sch.uk",
        ],
        categories: &[],
        young: A,
        staff: A,
    },
    Behaviour {
        weight: 220,
        hosts: &["www.google.com", "www.bing.com"],
        categories: &[C::Search],
        young: (Action::Rewrite, None),
        staff: (Action::Rewrite, None),
    },
    Behaviour {
        weight: 160,
        hosts: &["www.youtube.com", "i.ytimg.com"],
        categories: &[C::Streaming],
        young: A,
        staff: A,
    },
    Behaviour {
        weight: 60,
        hosts: &[
            "poki.com",
            "www.roblox.com",
            "coolmathgames.com",
            "krunker.io",
            "www.miniclip.com",
        ],
        categories: &[C::Games],
        young: B,
        staff: A,
    },
    Behaviour {
        weight: 55,
        hosts: &[
            "www.tiktok.com",
            "www.instagram.com",
            "www.snapchat.com",
            "www.facebook.com",
        ],
        categories: &[C::SocialNetworking],
        young: B,
        staff: B,
    },
    Behaviour {
        weight: 12,
        hosts: &["web.whatsapp.com", "discord.com"],
        categories: &[C::Chat],
        young: B,
        staff: A,
    },
    Behaviour {
        weight: 4,
        hosts: &["www.bet365.com", "www.skybet.com"],
        categories: &[C::Gambling],
        young: bf(Severity::Low),
        staff: B,
    },
    Behaviour {
        weight: 2,
        hosts: &["pornhub.com"],
        categories: &[C::Pornography],
        young: bf(Severity::Medium),
        staff: B,
    },
    Behaviour {
        weight: 6,
        hosts: &["www.croxyproxy.com", "proxysite.com", "hidemy.name"],
        categories: &[C::Proxy],
        young: bf(Severity::Medium),
        staff: B,
    },
    Behaviour {
        weight: 4,
        hosts: &["nordvpn.com", "protonvpn.com", "windscribe.com"],
        categories: &[C::Vpn],
        young: bf(Severity::Medium),
        staff: B,
    },
    Behaviour {
        weight: 7,
        hosts: &[
            "dns.google",
            "cloudflare-dns.com",
            "mozilla.cloudflare-dns.com",
        ],
        categories: &[C::Doh],
        young: bf(Severity::Medium),
        staff: B,
    },
    Behaviour {
        weight: 1,
        hosts: &["anydesk.com"],
        categories: &[C::RemoteAccess],
        young: B,
        staff: A,
    },
    Behaviour {
        weight: 2,
        hosts: &["login-micros0ft-support.com"],
        categories: &[C::Phishing],
        young: B,
        staff: B,
    },
    Behaviour {
        weight: 2,
        hosts: &["cdn.malware-drop.ru"],
        categories: &[C::Malware],
        young: B,
        staff: B,
    },
    Behaviour {
        weight: 3,
        hosts: &["thepiratebay.org", "1337x.to"],
        categories: &[C::Piracy],
        young: B,
        staff: B,
    },
    Behaviour {
        weight: 2,
        hosts: &["www.google.com"],
        categories: &[C::Search, C::Bullying],
        young: ff(Severity::Medium),
        staff: A,
    },
    Behaviour {
        weight: 1,
        hosts: &["www.worldstarhiphop.com"],
        categories: &[C::Violence],
        young: bf(Severity::Medium),
        staff: A,
    },
    Behaviour {
        weight: 1,
        hosts: &["www.leafly.com"],
        categories: &[C::Drugs],
        young: B,
        staff: A,
    },
];

/// A role on the example school's networks.
struct RoleNet {
    role: &'static str,
    octet: u8,
    devices: u16,
    signed_in: f64,
    weight: u32,
}

const ROLES: &[RoleNet] = &[
    RoleNet {
        role: "pupil",
        octet: 20,
        devices: 420,
        signed_in: 0.6,
        weight: 60,
    },
    RoleNet {
        role: "sixth-form",
        octet: 25,
        devices: 90,
        signed_in: 0.7,
        weight: 14,
    },
    RoleNet {
        role: "staff",
        octet: 30,
        devices: 140,
        signed_in: 0.9,
        weight: 23,
    },
    RoleNet {
        role: "guest",
        octet: 40,
        devices: 25,
        signed_in: 0.0,
        weight: 3,
    },
];

/// Terms a pupil typed: they must never reach a summary or an alert.
pub const SECRET_TERMS: &[&str] = &[
    "how to hurt myself without anyone knowing",
    "ways to disappear forever",
];
/// A pupil's user name in the scripted episodes: never in a summary or an alert.
pub const SECRET_USER: &str = "p.okonkwo42";

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T], weight: impl Fn(&T) -> u32) -> &'a T {
    let total: u32 = items.iter().map(&weight).sum();
    let mut r = rng.random_range(0..total.max(1));
    for it in items {
        let w = weight(it);
        if r < w {
            return it;
        }
        r -= w;
    }
    &items[items.len() - 1]
}

fn local(date: Date, h: i8, m: i8, s: i8, tz: &TimeZone) -> Timestamp {
    date.to_datetime(Time::constant(h, m, s, 0))
        .to_zoned(tz.clone())
        .expect("local time")
        .timestamp()
}

/// `n` events of ordinary school traffic in `week` at `school`, mostly in school
/// hours on school days, deterministic for a seed.
pub fn traffic(
    policy: &Policy,
    week: IsoWeek,
    school: &str,
    n: usize,
    seed: u64,
) -> Vec<AccessEvent> {
    let tz = policy.time_zone().clone();
    let mut rng = StdRng::seed_from_u64(seed);
    let days = week.days();
    let day_weight: Vec<u32> = days
        .iter()
        .map(|d| if policy.is_school_day(*d) { 100 } else { 6 })
        .collect();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let di = {
            let total: u32 = day_weight.iter().sum();
            let mut r = rng.random_range(0..total);
            let mut i = 0;
            while r >= day_weight[i] {
                r -= day_weight[i];
                i += 1;
            }
            i
        };
        let hour = rng.random_range(8..16);
        let t = local(
            days[di],
            hour,
            rng.random_range(0..60),
            rng.random_range(0..60),
            &tz,
        );
        let role = pick(&mut rng, ROLES, |r| r.weight);
        let dev = rng.random_range(0..role.devices);
        let ip = IpAddr::V4(Ipv4Addr::new(
            10,
            role.octet,
            (dev / 200) as u8 + 1,
            (dev % 200) as u8 + 10,
        ));
        let b = pick(&mut rng, BEHAVIOURS, |b| b.weight);
        let host = b.hosts[rng.random_range(0..b.hosts.len())];
        let (action, severity) = if role.role == "staff" {
            b.staff
        } else {
            b.young
        };
        let categories: CategorySet = b.categories.iter().copied().collect();
        let mut e = AccessEvent::new(
            if rng.random_bool(0.3) {
                Source::Dns
            } else {
                Source::Transparent
            },
            ip,
            host,
        )
        .at(t)
        .with_school(school)
        .with_node("hillside-filter-1")
        .with_role(role.role)
        .with_method("GET")
        .with_action(action)
        .with_categories(categories)
        .with_severity(severity)
        .with_status(if action == Action::Block { 403 } else { 200 });
        // A device is signed in or not for the whole week.
        if (dev as f64) < role.signed_in * role.devices as f64 {
            e = e.with_user(format!("{}{dev:03}", &role.role[..1]));
        }
        if action != Action::Allow {
            let cat = categories.iter().next().map(|c| c.name()).unwrap_or("none");
            e = e.with_rule(
                format!("list ut1/{cat}: {host}"),
                format!("{action} for {}: {cat}", role.role),
            );
        }
        out.push(e);
    }
    out
}

/// The week's scripted concerns: three high-severity episodes (a pupil's
/// self-harm searches, a device reaching extremist content twice, a member of
/// staff's suicide search) and two domain-fronting attempts.
pub fn episodes(policy: &Policy, week: IsoWeek, school: &str) -> Vec<AccessEvent> {
    let tz = policy.time_zone().clone();
    let d = week.days();
    let pupil_ip = IpAddr::V4(Ipv4Addr::new(10, 20, 1, 99));
    let device_ip = IpAddr::V4(Ipv4Addr::new(10, 20, 3, 77));
    let staff_ip = IpAddr::V4(Ipv4Addr::new(10, 30, 1, 40));
    let fronting_ip = IpAddr::V4(Ipv4Addr::new(10, 20, 2, 14));
    let base = |ip, host: &str, t: Timestamp| {
        AccessEvent::new(Source::Inspect, ip, host)
            .at(t)
            .with_school(school)
            .with_node("hillside-filter-1")
            .with_method("GET")
    };
    let mut out = Vec::new();
    for (i, (m, terms)) in [
        (41, SECRET_TERMS[0]),
        (44, SECRET_TERMS[1]),
        (52, SECRET_TERMS[0]),
    ]
    .into_iter()
    .enumerate()
    {
        out.push(
            base(pupil_ip, "www.google.com", local(d[1], 10, m, i as i8, &tz))
                .with_user(SECRET_USER)
                .with_role("pupil")
                .with_path(format!("/search?q={}", terms.replace(' ', "+")))
                .with_search_terms(terms)
                .with_action(Action::Flag)
                .with_categories([C::Search, C::SelfHarm].into_iter().collect())
                .with_severity(Some(Severity::High))
                .with_rule(
                    "keyword self-harm: \"hurt myself\"",
                    "flagged for pupil: self-harm",
                ),
        );
    }
    for m in [12, 15] {
        out.push(
            base(
                device_ip,
                "extremist-forum.example",
                local(d[2], 13, m, 0, &tz),
            )
            .with_role("pupil")
            .with_action(Action::Block)
            .with_category(C::Extremism)
            .with_severity(Some(Severity::High))
            .with_rule(
                "list ut1/extremism: extremist-forum.example",
                "blocked for pupil: extremism",
            ),
        );
    }
    out.push(
        base(staff_ip, "www.google.com", local(d[3], 15, 30, 0, &tz))
            .with_user("j.okafor")
            .with_role("staff")
            .with_search_terms("suicide statistics uk teenagers")
            .with_action(Action::Flag)
            .with_categories([C::Search, C::Suicide].into_iter().collect())
            .with_severity(Some(Severity::High))
            .with_rule("keyword suicide: \"suicide\"", "flagged for staff: suicide"),
    );
    for m in [5, 6] {
        out.push(
            base(
                fronting_ip,
                "cdn.allowed-site.example",
                local(d[4], 11, m, 0, &tz),
            )
            .with_role("pupil")
            .with_action(Action::Block)
            .with_category(C::Proxy)
            .with_severity(Some(Severity::Medium))
            .with_rule(
                "domain fronting: TLS name cdn.allowed-site.example but HTTP host proxy.example",
                "blocked for pupil: proxy",
            ),
        );
    }
    out
}

/// Counts the generated events independently of the stores and the reports.
pub struct Oracle<'a>(pub Vec<&'a AccessEvent>);

impl<'a> Oracle<'a> {
    pub fn new(
        events: &'a [AccessEvent],
        period: schoolgate_events::Period,
        school: Option<&str>,
    ) -> Oracle<'a> {
        Oracle(
            events
                .iter()
                .filter(|e| period.from <= e.time && e.time < period.to)
                .filter(|e| school.is_none_or(|s| e.school == s))
                .collect(),
        )
    }

    pub fn requests(&self) -> u64 {
        self.0.len() as u64
    }
    pub fn blocked(&self) -> u64 {
        self.0.iter().filter(|e| e.action == Action::Block).count() as u64
    }
    pub fn flagged(&self) -> u64 {
        self.0.iter().filter(|e| e.is_flagged()).count() as u64
    }
    pub fn users(&self) -> u64 {
        self.0
            .iter()
            .filter_map(|e| e.user.as_deref())
            .collect::<HashSet<_>>()
            .len() as u64
    }
    pub fn devices(&self) -> u64 {
        self.0
            .iter()
            .map(|e| e.client_ip)
            .collect::<HashSet<_>>()
            .len() as u64
    }
    /// category -> (blocked, flagged), only non-zero.
    pub fn categories(&self) -> BTreeMap<Category, (u64, u64)> {
        let mut m: BTreeMap<Category, (u64, u64)> = BTreeMap::new();
        for e in &self.0 {
            for c in e.categories.iter() {
                let v = m.entry(c).or_default();
                v.0 += u64::from(e.action == Action::Block);
                v.1 += u64::from(e.is_flagged());
            }
        }
        m.retain(|_, v| v.0 + v.1 > 0);
        m
    }
    /// role -> (requests, blocked, flagged)
    pub fn roles(&self) -> BTreeMap<String, (u64, u64, u64)> {
        let mut m: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        for e in &self.0 {
            let v = m.entry(e.role.clone()).or_default();
            v.0 += 1;
            v.1 += u64::from(e.action == Action::Block);
            v.2 += u64::from(e.is_flagged());
        }
        m
    }
    pub fn top_blocked(&self, n: usize) -> Vec<(String, u64)> {
        let mut m: HashMap<&str, u64> = HashMap::new();
        for e in self.0.iter().filter(|e| e.action == Action::Block) {
            *m.entry(e.host.as_str()).or_default() += 1;
        }
        let mut v: Vec<(String, u64)> = m.into_iter().map(|(h, c)| (h.to_owned(), c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
    /// (attempts, users, devices) for a bypass category.
    pub fn bypass(&self, c: Category) -> (u64, u64, u64) {
        let hits: Vec<_> = self
            .0
            .iter()
            .filter(|e| e.is_bypass_attempt() && e.categories.contains(c))
            .collect();
        (
            hits.len() as u64,
            hits.iter()
                .filter_map(|e| e.user.as_deref())
                .collect::<HashSet<_>>()
                .len() as u64,
            hits.iter()
                .map(|e| e.client_ip)
                .collect::<HashSet<_>>()
                .len() as u64,
        )
    }
    pub fn fronting(&self) -> u64 {
        self.0
            .iter()
            .filter(|e| e.rule.starts_with("domain fronting"))
            .count() as u64
    }
    pub fn severity(&self, s: Severity) -> u64 {
        self.0
            .iter()
            .filter(|e| e.is_flagged() && e.severity.unwrap_or(Severity::Low) == s)
            .count() as u64
    }
}

// ---------------------------------------------------------------- SMTP server

static AIOSMTPD: Once = Once::new();

/// Installs aiosmtpd from PyPI when this Python lacks it.
fn ensure_aiosmtpd() {
    AIOSMTPD.call_once(|| {
        let have = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !have {
            let ok = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "aiosmtpd"])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "could not install aiosmtpd (python3 -m pip install aiosmtpd)"
            );
        }
    });
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Python's aiosmtpd on 127.0.0.1, storing each message in a Maildir.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        SmtpServer::start_on(free_port())
    }

    pub fn start_on(port: u16) -> SmtpServer {
        ensure_aiosmtpd();
        let dir = tempfile::tempdir().expect("maildir");
        let child = Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(dir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let server = SmtpServer { child, port, dir };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("aiosmtpd did not start on port {port}");
    }

    pub fn smtp_config(port: u16) -> schoolgate_classifier::config::SmtpConfig {
        schoolgate_classifier::config::SmtpConfig {
            host: "127.0.0.1".to_owned(),
            port,
            starttls: false,
            user: None,
            password: None,
            from: "Hillside filter <filter@hillside.sch.uk>".to_owned(),
        }
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|d| std::fs::read_dir(self.dir.path().join("mail").join(d)).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
    }

    /// Waits (real time, up to a minute) for at least `n` messages.
    pub async fn wait_for(&self, n: usize) -> Vec<Vec<u8>> {
        for _ in 0..600 {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("expected {n} messages, got {}", self.messages().len());
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The envelope recipients aiosmtpd recorded (`X-RcptTo`).
pub fn envelope_to(msg: &mail_parser::Message<'_>) -> Vec<String> {
    let mut v: Vec<String> = msg
        .header_raw("X-RcptTo")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------- webhook receiver

/// A local HTTP endpoint that records each POSTed JSON body.
pub struct WebhookReceiver {
    pub url: String,
    pub received: mpsc::Receiver<serde_json::Value>,
    /// The status to answer with; 200 unless a test sets another.
    pub status: Arc<AtomicU16>,
}

pub async fn webhook_receiver() -> WebhookReceiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel(64);
    let status = Arc::new(AtomicU16::new(200));
    let st = Arc::clone(&status);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let st = Arc::clone(&st);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    let st = Arc::clone(&st);
                    async move {
                        let code = st.load(Ordering::SeqCst);
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if code == 200
                            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                        {
                            let _ = tx.send(v).await;
                        }
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *resp.status_mut() =
                            hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::OK);
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    WebhookReceiver {
        url: format!("http://{addr}/hooks/safeguarding"),
        received: rx,
        status,
    }
}
