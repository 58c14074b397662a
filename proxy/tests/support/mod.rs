//! The shared harness: local origins (plain HTTP with test routes, an
//! "intranet" HTTP origin on 127.0.0.10, a rustls HTTPS origin with a test CA),
//! a real event pipeline into SQLite in a temp dir, the proxy on port 0, and
//! helpers to run curl and read back the stored events.

#![allow(dead_code)]

pub mod origin;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use schoolgate_classifier::config::store::StoreConfig;
use schoolgate_classifier::{Category, Config, PolicyBuilder};
use schoolgate_events::{AccessEvent, Pipeline, PipelineHandle, Purpose, SqliteStore, Subject};
use schoolgate_proxy::{Listeners, Proxy, ProxyServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub use origin::{HttpOrigin, TlsOrigin};

pub const PUPIL: &str = "127.0.0.2";
pub const STAFF: &str = "127.0.0.3";
pub const GUEST: &str = "127.0.0.4";
/// Mapped by `[[devices]]` only (no network): staff.
pub const DEVICE: &str = "127.0.0.5";
/// In no network and no device mapping.
pub const STRANGER: &str = "127.0.0.9";
/// Where the "intranet" origin listens: an internal network in the test config.
pub const INTRANET_IP: &str = "127.0.0.10";

/// What a test changes from the default school.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Extra lines for the `[proxy]` table.
    pub proxy: String,
    /// Extra top-level TOML (after everything else).
    pub extra: String,
    /// Where the transparent listeners bind (default 127.0.0.1).
    pub transparent_ip: Option<IpAddr>,
    /// `[proxy] max_headers` (default 50 here; the product's default is 100).
    pub max_headers: Option<usize>,
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub proxy: Arc<Proxy>,
    pub addrs: Listeners,
    pub origin: HttpOrigin,
    pub intranet: HttpOrigin,
    pub tls: TlsOrigin,
    pub store: Arc<SqliteStore>,
    pub shutdown: CancellationToken,
    pipeline: Option<PipelineHandle>,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub fn school_toml(opts: &Options, connect_ports: &[u16]) -> String {
    let ports: Vec<String> = connect_ports.iter().map(|p| p.to_string()).collect();
    format!(
        r#"
[policy]
default_role = "guest"
keywords = false

[[schools]]
id = "hillside"
name = "Hillside Primary"
contact = "the school office"

[dashboard]
url = "https://dash.hillside.example/"

[roles.pupil]
block = ["gambling", "pornography"]
safesearch = "strict"
youtube = "strict"
max_download_mb = 1
max_upload_mb = 1

[roles.staff]
block = ["pornography"]

[roles.guest]
block = ["gambling", "pornography"]

[[networks]]
cidr = "127.0.0.2/32"
role = "pupil"
school = "hillside"
name = "pupils"

[[networks]]
cidr = "127.0.0.3/32"
role = "staff"
school = "hillside"
name = "staff"

[[networks]]
cidr = "127.0.0.4/32"
role = "guest"
school = "hillside"
name = "guest wifi"

[[devices]]
ip = "127.0.0.5"
role = "staff"
name = "library-desk"

[proxy]
internal_networks = ["127.0.0.10/32", "10.0.0.0/8"]
pac_direct = ["intranet.hillside.example"]
connect_ports = [443, {ports}]
header_timeout_secs = 2
max_header_bytes = 16384
max_headers = {max_headers}
{proxy}

{extra}
"#,
        ports = ports.join(", "),
        proxy = opts.proxy,
        max_headers = opts.max_headers.unwrap_or(50),
        extra = opts.extra,
    )
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::with(Options::default()).await
    }

    pub async fn with(opts: Options) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let origin = HttpOrigin::start("127.0.0.1".parse().expect("ip")).await;
        let intranet = HttpOrigin::start(INTRANET_IP.parse().expect("ip")).await;
        let tls = TlsOrigin::start(dir.path(), "127.0.0.1".parse().expect("ip")).await;
        let text = school_toml(
            &opts,
            &[tls.addr.port(), origin.addr.port(), intranet.addr.port()],
        );
        let config = Config::parse("test.toml", &text).unwrap_or_else(|e| panic!("{e}"));
        let mut b = PolicyBuilder::new(config);
        let gambling = b.list("ut1/gambling").expect("list");
        b.add_domain(gambling, Category::Gambling, "bet365.com");
        let adult = b.list("ut1/adult").expect("list");
        b.add_domain(adult, Category::Pornography, "adult.test");
        let policy = schoolgate_classifier::shared(b.build().expect("policy"));

        let store = Arc::new(
            SqliteStore::open(dir.path().join("events.sqlite"), Default::default()).expect("store"),
        );
        let mut cfg = StoreConfig {
            path: dir.path().join("events.sqlite"),
            spool_dir: dir.path().join("spool"),
            dead_letter: dir.path().join("dead-letter.jsonl"),
            batch_timeout_ms: 20,
            ..StoreConfig::default()
        };
        cfg.retention.pseudonymise_guests = false;
        let shutdown = CancellationToken::new();
        let (events, pipeline) =
            Pipeline::start(&cfg, store.clone(), shutdown.child_token()).expect("pipeline");

        let local = |port: u16| SocketAddr::new("127.0.0.1".parse().expect("ip"), port);
        let transparent_ip = opts
            .transparent_ip
            .unwrap_or_else(|| "127.0.0.1".parse().expect("ip"));
        let proxy = Proxy::builder(policy, events)
            .resolve("allowed.test", local(0))
            .resolve("www.bet365.com", local(0))
            .resolve("adult.test", local(0))
            .resolve("www.google.com", local(0))
            .resolve("other.test", local(0))
            .resolve("sni.test", tls.addr)
            .resolve(
                "intranet.test",
                SocketAddr::new(INTRANET_IP.parse().expect("ip"), 0),
            )
            .build();
        let server = ProxyServer::bind(
            proxy.clone(),
            Listeners {
                explicit: Some(local(0)),
                transparent_http: Some(SocketAddr::new(transparent_ip, 0)),
                transparent_https: Some(SocketAddr::new(transparent_ip, 0)),
            },
        )
        .expect("bind")
        .grace_period(Duration::from_secs(2));
        let addrs = server.local_addrs();
        let token = shutdown.clone();
        let server = tokio::spawn(server.run(token));
        Harness {
            dir,
            proxy,
            addrs,
            origin,
            intranet,
            tls,
            store,
            shutdown,
            pipeline: Some(pipeline),
            server: Some(server),
        }
    }

    pub fn explicit(&self) -> SocketAddr {
        self.addrs.explicit.expect("explicit listener")
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.explicit())
    }

    /// `http://allowed.test:<origin port><path>`
    pub fn allowed(&self, path: &str) -> String {
        format!("http://allowed.test:{}{path}", self.origin.addr.port())
    }

    /// curl through the explicit proxy from `from`.
    pub async fn curl_via(&self, from: &str, args: &[&str]) -> Curl {
        let mut all = vec!["-x", "PROXY", "--interface", from];
        all.extend_from_slice(args);
        let proxy = self.proxy_url();
        let all: Vec<String> = all
            .into_iter()
            .map(|a| {
                if a == "PROXY" {
                    proxy.clone()
                } else {
                    a.to_owned()
                }
            })
            .collect();
        curl(self.dir.path(), &all).await
    }

    /// Stored events of one client, oldest first.
    pub async fn events_of(&self, ip: &str) -> Vec<AccessEvent> {
        use schoolgate_events::EventStore;
        let ip: IpAddr = ip.parse().expect("ip");
        self.store
            .timeline(
                &Subject::Client(ip),
                Timestamp::now(),
                30,
                &Purpose::new("proxy tests", "checking what the proxy logged"),
            )
            .await
            .expect("timeline")
    }

    /// Waits (bounded) for a stored event of `ip` matching `pred`.
    pub async fn event(&self, ip: &str, pred: impl Fn(&AccessEvent) -> bool) -> AccessEvent {
        for _ in 0..200 {
            if let Some(e) = self.events_of(ip).await.into_iter().find(|e| pred(e)) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let all = self.events_of(ip).await;
        panic!("no matching event for {ip}; stored: {all:#?}");
    }

    /// The event whose id is `id`.
    pub async fn event_by_id(&self, ip: &str, id: &str) -> AccessEvent {
        self.event(ip, |e| e.id.to_string() == id).await
    }

    /// A raw TCP connection from `from` to `to`.
    pub async fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(from.parse().expect("ip"), 0))
            .expect("bind");
        socket.connect(to).await.expect("connect")
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        if let Some(p) = self.pipeline.take() {
            p.join().await;
        }
    }
}

/// Sends `request` on a fresh connection from `from` and reads until the
/// server closes or `max` bytes (bounded by a 10 s guard).
pub async fn raw(from: &str, to: SocketAddr, request: &[u8]) -> String {
    let mut s = Harness::tcp_from(from, to).await;
    s.write_all(request).await.expect("write");
    read_to_close(&mut s).await
}

pub async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let guard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(guard.is_ok(), "server did not close the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// The result of one curl run.
#[derive(Debug)]
pub struct Curl {
    pub exit: i32,
    pub code: u16,
    /// The CONNECT response's status (0 when none).
    pub connect_code: u16,
    pub headers: String,
    pub body: String,
}

impl Curl {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

static CURL_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub async fn curl(dir: &std::path::Path, args: &[String]) -> Curl {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut all = vec!["curl"];
    all.extend_from_slice(&args);
    curl_cmd(dir, all[0], &all[1..]).await
}

/// Runs curl (`program` is `curl`, or `ip` with `netns exec NS curl` first).
pub async fn curl_cmd(dir: &std::path::Path, program: &str, pre_and_args: &[&str]) -> Curl {
    let n = CURL_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let headers: PathBuf = dir.join(format!("curl-{n}.headers"));
    let body: PathBuf = dir.join(format!("curl-{n}.body"));
    // Everything up to and including `curl` is the prefix (for `ip netns exec`).
    let split = pre_and_args
        .iter()
        .position(|a| *a == "curl")
        .map_or(0, |i| i + 1);
    let (prefix, args) = pre_and_args.split_at(split);
    let out = tokio::process::Command::new(program)
        .args(prefix)
        .args(["-s", "--max-time", "20", "-D"])
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code} %{http_connect}"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .output()
        .await
        .expect("curl runs (apt-get install -y curl)");
    let w = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut codes = w.split_whitespace().map(|c| c.parse().unwrap_or(0));
    Curl {
        exit: out.status.code().unwrap_or(-1),
        code: codes.next().unwrap_or(0),
        connect_code: codes.next().unwrap_or(0),
        headers: std::fs::read_to_string(&headers).unwrap_or_default(),
        body: String::from_utf8_lossy(&std::fs::read(&body).unwrap_or_default()).into_owned(),
    }
}

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}
