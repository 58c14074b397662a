//! Shared test helpers: the local upstream, the school's policy, a running
//! filter with the real event pipeline, `dig` and a raw UDP client.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use schoolgate_classifier::{Category, Config, Policy, PolicyBuilder, SharedPolicy};
use schoolgate_dns::{DnsFilter, DnsServer};
use schoolgate_events::{
    AccessEvent, EventStore, Pipeline, PipelineHandle, Purpose, SqliteStore, Subject,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

pub const PUPIL: &str = "127.0.0.2";
pub const STAFF: &str = "127.0.0.3";
pub const GUEST: &str = "127.0.0.4";
/// In no network: must be refused.
pub const STRANGER: &str = "127.0.0.5";
pub const BLOCK_V4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub const BLOCK_V6: &str = "fd00::99";

/// How many A records `big.school.test` has: too many for a 1232-byte UDP answer.
pub const BIG_RRSET: u8 = 120;

// ---------------------------------------------------------------------------
// The local upstream: a small authoritative server for the test zone.
// ---------------------------------------------------------------------------

/// An authoritative responder on 127.0.0.1 (UDP and TCP, same port) that knows
/// the test names, answers NXDOMAIN with an SOA for the rest, truncates over UDP
/// what does not fit, and can go silent.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    silent: Arc<AtomicBool>,
    udp_queries: Arc<AtomicU64>,
    tcp_queries: Arc<AtomicU64>,
    tls_queries: Arc<AtomicU64>,
    /// TLS questions whose length is not a whole number of 128-byte blocks.
    tls_unpadded: Arc<AtomicU64>,
    tls_connections: Arc<AtomicU64>,
    /// Cancelled to close every TLS connection open now (as a resolver closes
    /// idle ones); replaced by a fresh token for the connections after.
    tls_close: Arc<std::sync::Mutex<CancellationToken>>,
    /// Set: the next question over TLS is read, counted and not answered: its
    /// connection is closed instead.
    tls_hang_up: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type Zone = HashMap<(String, RecordType), Vec<Record>>;

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("test name")
}

fn zone() -> Zone {
    let mut z: Zone = HashMap::new();
    let mut add = |owner: &str, ttl: u32, data: RData| {
        let rtype = data.record_type();
        z.entry((owner.to_owned(), rtype))
            .or_default()
            .push(Record::from_rdata(name(owner), ttl, data));
    };
    let a = |a, b, c, d| RData::A(A(Ipv4Addr::new(a, b, c, d)));
    let aaaa = |s: &str| RData::AAAA(AAAA(s.parse::<Ipv6Addr>().expect("v6")));
    add("www.school.test.", 3600, a(192, 0, 2, 10));
    add("www.school.test.", 3600, aaaa("2001:db8::10"));
    add(
        "www.school.test.",
        3600,
        RData::TXT(TXT::new(vec!["v=school".into()])),
    );
    add("short.school.test.", 1, a(192, 0, 2, 11));
    add("bet365.com.", 300, a(192, 0, 2, 66));
    add(
        "bet365.com.",
        300,
        RData::TXT(TXT::new(vec!["real record".into()])),
    );
    add("facebook.com.", 300, a(192, 0, 2, 77));
    add("dns.google.", 300, a(8, 8, 8, 8));
    add("use-application-dns.net.", 300, a(192, 0, 2, 53));
    add("mask.icloud.com.", 300, a(192, 0, 2, 54));
    add("www.google.com.", 300, a(142, 250, 0, 1));
    add("forcesafesearch.google.com.", 300, a(216, 239, 38, 120));
    add(
        "forcesafesearch.google.com.",
        300,
        aaaa("2001:4860:4802:32::78"),
    );
    add("www.bing.com.", 300, a(13, 107, 21, 200));
    add("strict.bing.com.", 300, a(204, 79, 197, 220));
    add("www.youtube.com.", 300, a(142, 250, 0, 2));
    add("restrict.youtube.com.", 300, a(216, 239, 38, 120));
    add("restrictmoderate.youtube.com.", 300, a(216, 239, 38, 119));
    for i in 0..BIG_RRSET {
        add("big.school.test.", 300, a(198, 51, 100, i));
    }
    add(
        "bigtxt.school.test.",
        300,
        RData::TXT(TXT::new(
            (0..12)
                .map(|i| format!("{i:02}{}", "x".repeat(200)))
                .collect(),
        )),
    );
    z
}

impl Upstream {
    pub async fn start() -> Upstream {
        // UDP first, then TCP on the same port; another process's connection may
        // hold that TCP port, so try a few.
        let mut bound = None;
        for _ in 0..50 {
            let udp = UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind upstream udp");
            let addr = udp.local_addr().expect("addr");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                bound = Some((udp, addr, tcp));
                break;
            }
        }
        let (udp, addr, tcp) = bound.expect("a port free for both UDP and TCP");
        let up = Upstream {
            addr,
            silent: Arc::new(AtomicBool::new(false)),
            udp_queries: Arc::new(AtomicU64::new(0)),
            tcp_queries: Arc::new(AtomicU64::new(0)),
            tls_queries: Arc::new(AtomicU64::new(0)),
            tls_unpadded: Arc::new(AtomicU64::new(0)),
            tls_connections: Arc::new(AtomicU64::new(0)),
            tls_close: Arc::new(std::sync::Mutex::new(CancellationToken::new())),
            tls_hang_up: Arc::new(AtomicBool::new(false)),
            stop: CancellationToken::new(),
        };
        let zone = Arc::new(zone());
        let (z, silent, count, stop) = (
            Arc::clone(&zone),
            Arc::clone(&up.silent),
            Arc::clone(&up.udp_queries),
            up.stop.clone(),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = udp.recv_from(&mut buf) => match r { Ok(r) => r, Err(_) => continue },
                };
                count.fetch_add(1, Ordering::Relaxed);
                if silent.load(Ordering::Relaxed) {
                    continue;
                }
                if let Some(answer) = respond(&z, &buf[..n], false) {
                    let _ = udp.send_to(&answer, peer).await;
                }
            }
        });
        let (silent, count, stop) = (
            Arc::clone(&up.silent),
            Arc::clone(&up.tcp_queries),
            up.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = tcp.accept() => match r { Ok(r) => r, Err(_) => continue },
                };
                let (zone, silent, count) =
                    (Arc::clone(&zone), Arc::clone(&silent), Arc::clone(&count));
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    while stream.read_exact(&mut len).await.is_ok() {
                        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if stream.read_exact(&mut q).await.is_err() {
                            return;
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                        if silent.load(Ordering::Relaxed) {
                            return;
                        }
                        if let Some(answer) = respond(&zone, &q, true) {
                            let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                            framed.extend_from_slice(&answer);
                            if stream.write_all(&framed).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        up
    }

    /// Also answers DNS over TLS (RFC 7858) on a port of its own, with a
    /// certificate for `cert_for` from a test CA written to
    /// `dir/upstream-ca.pem`. Pipelined queries are answered each in its own
    /// task, so answers may come back in another order than asked.
    pub async fn serve_tls(&mut self, cert_for: &str, dir: &Path) -> SocketAddr {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "schoolgate test resolver CA");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec![cert_for.to_owned()])
            .expect("params")
            .signed_by(&leaf_key, &ca)
            .expect("leaf");
        std::fs::write(dir.join("upstream-ca.pem"), ca.pem()).expect("write ca");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("cert");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tls");
        let addr = listener.local_addr().expect("addr");
        let zone = Arc::new(zone());
        let unpadded = Arc::clone(&self.tls_unpadded);
        let (queries, connections, close, hang_up, stop) = (
            Arc::clone(&self.tls_queries),
            Arc::clone(&self.tls_connections),
            Arc::clone(&self.tls_close),
            Arc::clone(&self.tls_hang_up),
            self.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r { Ok(r) => r, Err(_) => continue },
                };
                let Ok(tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                connections.fetch_add(1, Ordering::Relaxed);
                let closed = close.lock().expect("lock").clone();
                let (zone, queries, hang_up, unpadded) = (
                    Arc::clone(&zone),
                    Arc::clone(&queries),
                    Arc::clone(&hang_up),
                    Arc::clone(&unpadded),
                );
                tokio::spawn(async move {
                    let (mut reader, writer) = tokio::io::split(tls);
                    let writer = Arc::new(tokio::sync::Mutex::new(writer));
                    let mut len = [0u8; 2];
                    loop {
                        let read = async {
                            reader.read_exact(&mut len).await?;
                            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                            reader.read_exact(&mut q).await.map(|_| q)
                        };
                        let q = tokio::select! {
                            _ = closed.cancelled() => break,
                            r = read => match r { Ok(q) => q, Err(_) => break },
                        };
                        queries.fetch_add(1, Ordering::Relaxed);
                        if q.len() % 128 != 0 {
                            unpadded.fetch_add(1, Ordering::Relaxed);
                        }
                        if hang_up.swap(false, Ordering::Relaxed) {
                            break;
                        }
                        let (zone, writer) = (Arc::clone(&zone), Arc::clone(&writer));
                        tokio::spawn(async move {
                            if let Some(answer) = respond(&zone, &q, true) {
                                let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                                framed.extend_from_slice(&answer);
                                let mut w = writer.lock().await;
                                let _ = w.write_all(&framed).await;
                                let _ = w.flush().await;
                            }
                        });
                    }
                    let _ = writer.lock().await.shutdown().await;
                });
            }
        });
        addr
    }

    /// Closes the TLS connections open now, as a resolver closes idle ones.
    pub fn close_tls_connections(&self) {
        let mut current = self.tls_close.lock().expect("lock");
        current.cancel();
        *current = CancellationToken::new();
    }

    /// Closes the connection the next TLS question arrives on, unanswered: a
    /// resolver closing an idle connection just as a question was sent on it.
    pub fn hang_up_on_next_tls_query(&self) {
        self.tls_hang_up.store(true, Ordering::Relaxed);
    }

    pub fn tls_queries(&self) -> u64 {
        self.tls_queries.load(Ordering::Relaxed)
    }

    pub fn tls_unpadded(&self) -> u64 {
        self.tls_unpadded.load(Ordering::Relaxed)
    }

    pub fn tls_connections(&self) -> u64 {
        self.tls_connections.load(Ordering::Relaxed)
    }

    /// Stops answering (queries are still counted).
    pub fn go_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::Relaxed);
    }

    pub fn udp_queries(&self) -> u64 {
        self.udp_queries.load(Ordering::Relaxed)
    }

    pub fn tcp_queries(&self) -> u64 {
        self.tcp_queries.load(Ordering::Relaxed)
    }
}

fn respond(zone: &Zone, packet: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    let q = query.queries.first()?.clone();
    let mut m = Message::response(query.metadata.id, OpCode::Query);
    m.metadata.message_type = MessageType::Response;
    m.metadata.authoritative = true;
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.add_query(q.clone());
    let owner = q.name().to_ascii().to_ascii_lowercase();
    let known = zone.keys().any(|(n, _)| *n == owner);
    match zone.get(&(owner.clone(), q.query_type())) {
        Some(records) => {
            m.add_answers(records.iter().cloned());
        }
        None => {
            if !known {
                m.metadata.response_code = ResponseCode::NXDomain;
            }
            let soa = SOA::new(
                name("ns.test."),
                name("hostmaster.test."),
                1,
                3600,
                600,
                86400,
                120,
            );
            m.add_authority(Record::from_rdata(name("test."), 3600, RData::SOA(soa)));
        }
    }
    let limit = match &query.edns {
        Some(e) => usize::from(e.max_payload().max(512)),
        None => 512,
    };
    if let Some(e) = &query.edns {
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(e.flags().dnssec_ok);
        m.set_edns(edns);
    }
    let wire = m.to_vec().ok()?;
    if !tcp && wire.len() > limit {
        let mut t = Message::response(query.metadata.id, OpCode::Query);
        t.metadata.authoritative = true;
        t.metadata.truncation = true;
        t.metadata.recursion_desired = query.metadata.recursion_desired;
        t.add_query(q);
        return t.to_vec().ok();
    }
    Some(wire)
}

// ---------------------------------------------------------------------------
// The school: policy, filter, server, event pipeline.
// ---------------------------------------------------------------------------

/// Knobs for one test's filter.
#[derive(Clone, Debug)]
pub struct Setup {
    pub block_answer: &'static str,
    pub rate_limit_qps: u32,
    pub allowed_sample: u32,
    /// 0 here (every repeat logged), unlike the product's default of 60.
    pub allowed_repeat_secs: u32,
    pub udp_batch_above_qps: u32,
    pub upstream_timeout_ms: u64,
    /// Extra upstreams tried first (e.g. a dead one, for failover).
    pub upstreams_before: Vec<SocketAddr>,
    /// `dns.upstreams` as written, in place of the local upstream's address
    /// (e.g. `tls://` in front of it).
    pub upstream_urls: Option<Vec<String>>,
    /// Ask the local upstream over DNS over TLS (it then listens for TLS too).
    pub tls: Option<TlsSetup>,
}

/// A DNS-over-TLS upstream for one test.
#[derive(Clone, Debug)]
pub struct TlsSetup {
    /// The name on the upstream's certificate.
    pub cert_for: &'static str,
    /// The name `dns.upstreams` says the certificate must carry.
    pub expect: &'static str,
    /// Whether `dns.upstream_ca` names the CA that signed the certificate.
    pub trust_ca: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            block_answer: "block-page",
            rate_limit_qps: 1000,
            allowed_sample: 1,
            allowed_repeat_secs: 0,
            udp_batch_above_qps: 20_000,
            upstream_timeout_ms: 600,
            upstreams_before: Vec::new(),
            upstream_urls: None,
            tls: None,
        }
    }
}

pub fn school_toml(dir: &Path, upstreams: &[String], s: &Setup) -> String {
    let ups: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    let ca = match &s.tls {
        Some(tls) if tls.trust_ca => {
            format!(
                "upstream_ca = \"{}\"",
                dir.join("upstream-ca.pem").display()
            )
        }
        _ => String::new(),
    };
    let d = dir.display();
    format!(
        r#"
[policy]
default_role = "guest"
node = "test-node"

[[schools]]
id = "hillside"
name = "Hillside Primary"

[roles.pupil]
block = ["pornography", "gambling", "proxy", "vpn", "doh", "social-networking", "malware"]
flag = {{ self-harm = "high" }}
safesearch = "strict"
youtube = "strict"

[roles.staff]
block = ["pornography", "malware"]

[roles.guest]
extends = "pupil"
youtube = "moderate"

[[networks]]
cidr = "{PUPIL}/32"
role = "pupil"
school = "hillside"
name = "pupil wifi"

[[networks]]
cidr = "{STAFF}/32"
role = "staff"
school = "hillside"

[[networks]]
cidr = "{GUEST}/32"
role = "guest"
school = "hillside"

[[networks]]
cidr = "::1/128"
role = "staff"
school = "hillside"

[dns]
upstreams = [{ups}]
block_answer = "{block}"
block_page_ipv4 = "{BLOCK_V4}"
block_page_ipv6 = "{BLOCK_V6}"
block_ttl = 60
rate_limit_qps = {rate}
allowed_sample = {sample}
allowed_repeat_secs = {repeat}
udp_batch_above_qps = {batch_qps}
upstream_timeout_ms = {timeout}
serve_stale_secs = 300
{ca}

[store]
path = "{d}/events.sqlite"
spool_dir = "{d}/spool"
dead_letter = "{d}/dead-letter.jsonl"
batch_timeout_ms = 20

[store.retention]
pseudonymise_guests = false
"#,
        ups = ups.join(", "),
        block = s.block_answer,
        rate = s.rate_limit_qps,
        sample = s.allowed_sample,
        repeat = s.allowed_repeat_secs,
        batch_qps = s.udp_batch_above_qps,
        timeout = s.upstream_timeout_ms,
    )
}

/// The list entries every test school has.
pub const LISTS: &[(&str, Category, &str)] = &[
    ("test/gambling", Category::Gambling, "bet365.com"),
    ("test/social", Category::SocialNetworking, "facebook.com"),
    ("test/doh", Category::Doh, "dns.google"),
    ("test/malware", Category::Malware, "malware.test"),
    ("iwf", Category::Illegal, "illegal.test"),
];

pub fn policy(toml: &str) -> SharedPolicy {
    schoolgate_classifier::shared(build_policy(toml))
}

/// A compiled snapshot (for a reload: `school.policy.store(...)`).
pub fn build_policy(toml: &str) -> Policy {
    let config = Config::parse("test.toml", toml).unwrap_or_else(|e| panic!("{e}"));
    let mut b = PolicyBuilder::new(config);
    for (list, category, entry) in LISTS {
        let id = b.list(list).expect("list");
        b.add_domain(id, *category, entry);
    }
    b.build().expect("policy")
}

/// A running filter: upstream, server on 127.0.0.1:0, pipeline into SQLite.
#[derive(Debug)]
pub struct School {
    pub upstream: Upstream,
    pub policy: SharedPolicy,
    /// The configuration text the policy was built from.
    pub toml: String,
    pub filter: Arc<DnsFilter>,
    pub addr: SocketAddr,
    pub store: Arc<SqliteStore>,
    /// Stops the server; the pipeline has its own token, cancelled after the
    /// server stopped, so the events the server still held reach the store.
    shutdown: CancellationToken,
    pipeline_shutdown: CancellationToken,
    pipeline: Option<PipelineHandle>,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl School {
    pub async fn start() -> School {
        School::start_with(Setup::default()).await
    }

    pub async fn start_with(setup: Setup) -> School {
        let mut upstream = Upstream::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let ups = match (&setup.upstream_urls, &setup.tls) {
            (Some(urls), _) => urls.clone(),
            (None, Some(tls)) => {
                let addr = upstream.serve_tls(tls.cert_for, dir.path()).await;
                vec![format!("tls://{addr}#{}", tls.expect)]
            }
            (None, None) => {
                let mut ups = setup.upstreams_before.clone();
                ups.push(upstream.addr);
                ups.iter().map(|a| a.to_string()).collect()
            }
        };
        let toml = school_toml(dir.path(), &ups, &setup);
        let policy = policy(&toml);
        let store_cfg = policy.load().config().store.clone();
        let store = Arc::new(
            SqliteStore::open(&store_cfg.path, store_cfg.retention.clone()).expect("store"),
        );
        let shutdown = CancellationToken::new();
        let pipeline_shutdown = CancellationToken::new();
        let (events, pipeline) = Pipeline::start(
            &store_cfg,
            Arc::clone(&store) as Arc<dyn EventStore>,
            pipeline_shutdown.clone(),
        )
        .expect("pipeline");
        let filter = DnsFilter::new(Arc::clone(&policy), events);
        let server = DnsServer::bind(Arc::clone(&filter), &["127.0.0.1:0".parse().expect("addr")])
            .expect("bind");
        let addr = server.local_addrs()[0];
        let token = shutdown.clone();
        let server = tokio::spawn(async move {
            server.run(token).await.expect("server runs");
        });
        School {
            upstream,
            policy,
            toml,
            filter,
            addr,
            store,
            shutdown,
            pipeline_shutdown,
            pipeline: Some(pipeline),
            server: Some(server),
            _dir: dir,
        }
    }

    /// Stops the server and drains the pipeline, so every event is stored.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        self.pipeline_shutdown.cancel();
        if let Some(p) = self.pipeline.take() {
            p.join().await;
        }
    }

    /// Every stored event of one client, oldest first (stops the school first).
    pub async fn events_of(&mut self, client: &str) -> Vec<AccessEvent> {
        self.stop().await;
        let ip: IpAddr = client.parse().expect("ip");
        let purpose = Purpose::new("test", "checking the DNS filter's events");
        self.store
            .timeline(&Subject::Client(ip), jiff::Timestamp::now(), 60, &purpose)
            .await
            .expect("timeline")
    }

    pub async fn dig(&self, from: &str, args: &[&str]) -> Dig {
        dig(self.addr, from, args).await
    }
}

impl Drop for School {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.pipeline_shutdown.cancel();
    }
}

// ---------------------------------------------------------------------------
// Clients.
// ---------------------------------------------------------------------------

/// What `dig` printed, picked apart.
#[derive(Clone, Debug)]
pub struct Dig {
    pub output: String,
    pub status: String,
    /// Answer-section lines as `(name, ttl, type, data)`.
    pub answers: Vec<(String, u32, String, String)>,
}

impl Dig {
    pub fn data(&self, rtype: &str) -> Vec<String> {
        self.answers
            .iter()
            .filter(|a| a.2 == rtype)
            .map(|a| a.3.clone())
            .collect()
    }

    /// The `; EDE: ...` line, if any.
    pub fn ede(&self) -> Option<String> {
        self.output
            .lines()
            .find(|l| l.starts_with("; EDE:"))
            .map(str::to_owned)
    }
}

/// Runs Debian's `dig` from `from` against the filter (on a blocking thread, so
/// the server keeps running).
pub async fn dig(server: SocketAddr, from: &str, args: &[&str]) -> Dig {
    let port = server.port().to_string();
    let at = format!("@{}", server.ip());
    let mut cmd = std::process::Command::new("dig");
    cmd.args(["-b", from, &at, "-p", &port, "+time=4", "+tries=1"]);
    cmd.args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("dig thread")
        .expect("dig runs (apt-get install -y bind9-dnsutils)");
    let output = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = output
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_owned())
        .unwrap_or_else(|| format!("NO ANSWER: {output}"));
    let mut answers = Vec::new();
    let mut in_answer = false;
    for line in output.lines() {
        if line.starts_with(";; ANSWER SECTION:") {
            in_answer = true;
            continue;
        }
        if in_answer {
            if line.trim().is_empty() || line.starts_with(";;") {
                in_answer = false;
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 5 {
                answers.push((
                    f[0].to_owned(),
                    f[1].parse().unwrap_or(0),
                    f[3].to_owned(),
                    f[4..].join(" "),
                ));
            }
        }
    }
    Dig {
        output,
        status,
        answers,
    }
}

/// Sends raw bytes over UDP from `from` and returns what came back (if anything
/// within `wait`).
pub async fn raw_udp(
    server: SocketAddr,
    from: &str,
    packet: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind(format!("{from}:0"))
        .await
        .expect("bind client");
    sock.send_to(packet, server).await.expect("send");
    let mut buf = vec![0u8; 65_535];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// A query message as a real client would send it.
pub fn query(id: u16, name: &str, rtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    if edns {
        let mut e = hickory_proto::op::Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m.to_vec().expect("encode")
}
