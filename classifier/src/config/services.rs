//! The sections for the servers: `[listen]`, `[dns]`, `[proxy]`, `[dashboard]`,
//! `[reports]` and `[alerts]`. Plain data: the crates that run the servers read them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::category::Severity;

/// `[listen]`: the addresses schoolgate serves on. A face whose address is unset is
/// not started. Defaults: all unset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// DNS filter, UDP and TCP (port 53 in production).
    pub dns: Vec<SocketAddr>,
    /// Explicit forward proxy (browsers configured by PAC/WPAD), e.g. `:3128`.
    pub proxy: Option<SocketAddr>,
    /// Transparent HTTP: port 80 traffic redirected by nftables.
    pub transparent_http: Option<SocketAddr>,
    /// Transparent HTTPS: port 443 traffic redirected by nftables (read by SNI).
    pub transparent_https: Option<SocketAddr>,
    /// Dashboard and JSON API.
    pub dashboard: Option<SocketAddr>,
}

/// What a blocked DNS name is answered with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockAnswer {
    /// A/AAAA of the proxy's block page, so a browser on plain HTTP sees why.
    #[default]
    BlockPage,
    /// NXDOMAIN.
    Nxdomain,
}

/// The port of DNS over TLS (RFC 7858).
pub const DOT_PORT: u16 = 853;

/// One upstream resolver of `dns.upstreams`, written as a string:
///
/// - `"IP:PORT"`: plain DNS, UDP with TCP for truncated answers;
/// - `"tls://IP[:PORT][#NAME]"`: DNS over TLS (RFC 7858), port 853 unless given.
///   The resolver's certificate must be valid for NAME, or for the IP address
///   when no name is given (the public resolvers' certificates carry their
///   addresses). An address, not a host name: the filter cannot ask itself where
///   its own upstream is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub tls: Option<UpstreamTls>,
}

/// How a DNS-over-TLS upstream's certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamTls {
    /// Valid for this host name.
    Name(String),
    /// Valid for the upstream's IP address.
    Address,
}

impl Upstream {
    /// Plain DNS to `addr`.
    pub fn plain(addr: SocketAddr) -> Upstream {
        Upstream { addr, tls: None }
    }
}

impl FromStr for Upstream {
    type Err = String;

    fn from_str(s: &str) -> Result<Upstream, String> {
        let Some(rest) = s.strip_prefix("tls://") else {
            return s.parse().map(Upstream::plain).map_err(|_| {
                format!(
                    "`{s}` is not an upstream: write IP:PORT (e.g. \"9.9.9.9:53\") or \
                     tls://IP#NAME for DNS over TLS (e.g. \"tls://9.9.9.9#dns.quad9.net\")"
                )
            });
        };
        let (address, name) = match rest.split_once('#') {
            Some((a, n)) => (a, Some(n)),
            None => (rest, None),
        };
        let addr = address
            .parse::<SocketAddr>()
            .or_else(|_| {
                // An IPv6 address without a port may come bracketed or bare.
                let ip = address.trim_start_matches('[').trim_end_matches(']');
                ip.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, DOT_PORT))
            })
            .map_err(|_| {
                format!(
                    "`{s}`: `{address}` is not an IP address (with an optional port); \
                     a DNS-over-TLS upstream is an address and the name on its \
                     certificate, e.g. \"tls://9.9.9.9#dns.quad9.net\""
                )
            })?;
        let tls = match name {
            None => UpstreamTls::Address,
            Some(n) if is_host_name(n) => UpstreamTls::Name(n.to_ascii_lowercase()),
            Some(n) => {
                return Err(format!(
                    "`{s}`: `{n}` is not a host name (the name on the resolver's certificate)"
                ));
            }
        };
        Ok(Upstream {
            addr,
            tls: Some(tls),
        })
    }
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63 characters.
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tls {
            None => write!(f, "{}", self.addr),
            Some(UpstreamTls::Address) => write!(f, "tls://{}", self.addr),
            Some(UpstreamTls::Name(name)) => write!(f, "tls://{}#{name}", self.addr),
        }
    }
}

impl Serialize for Upstream {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Upstream, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[dns]`.
///
/// Defaults: no upstreams (required when `listen.dns` is set), block answer
/// `block-page` at `block_page_ipv4 = 127.0.0.1` and no IPv6 block page, block TTL
/// 60 s (short, so an unblock takes effect quickly), 100 000 cached answers,
/// serve-stale for 300 s, 200 queries/s per client (a busy laptop makes 20),
/// upstream timeout 1500 ms, log every allowed query (`allowed_sample = 1`) but
/// the same allowed name for the same device at most once a minute
/// (`allowed_repeat_secs = 60`); a UDP socket loop batches its system calls
/// above 20 000 queries/s (`udp_batch_above_qps`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Tried in order, healthy ones first: plain or DNS over TLS ([`Upstream`]).
    pub upstreams: Vec<Upstream>,
    /// A PEM file of CA certificates trusted for DNS-over-TLS upstreams besides
    /// the built-in Mozilla roots (a trust's own resolver with an internal CA).
    pub upstream_ca: Option<PathBuf>,
    pub block_answer: BlockAnswer,
    pub block_page_ipv4: Ipv4Addr,
    pub block_page_ipv6: Option<std::net::Ipv6Addr>,
    pub block_ttl: u32,
    pub cache_entries: usize,
    pub serve_stale_secs: u32,
    pub rate_limit_qps: u32,
    pub upstream_timeout_ms: u64,
    /// Log one in N allowed, unflagged queries (1 = all). Blocked and flagged
    /// queries are always logged.
    pub allowed_sample: u32,
    /// An allowed, unflagged name a device asked for again within this many
    /// seconds is not logged again (0 = log every repeat). Devices re-ask for the
    /// same names every few seconds; a timeline needs each visit once, not the
    /// repeats. Blocked and flagged queries are always logged.
    pub allowed_repeat_secs: u32,
    /// Queries a second on one UDP socket above which its loop takes and sends
    /// datagrams in batches (`recvmmsg`/`sendmmsg`); below it, one per call,
    /// which costs less when they do not queue up.
    pub udp_batch_above_qps: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            upstreams: Vec::new(),
            upstream_ca: None,
            block_answer: BlockAnswer::BlockPage,
            block_page_ipv4: Ipv4Addr::LOCALHOST,
            block_page_ipv6: None,
            block_ttl: 60,
            cache_entries: 100_000,
            serve_stale_secs: 300,
            rate_limit_qps: 200,
            upstream_timeout_ms: 1_500,
            allowed_sample: 1,
            allowed_repeat_secs: 60,
            udp_batch_above_qps: 20_000,
        }
    }
}

/// What to do when the TLS name and the HTTP Host of one connection differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrontingAction {
    #[default]
    Block,
    Flag,
    Allow,
}

/// How the proxy learns who is browsing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyAuth {
    /// Role from the client address only.
    #[default]
    Off,
    /// Use credentials when a client sends them, otherwise the address.
    Optional,
    /// Ask for credentials (407) from every client.
    Required,
}

/// The most proxy threads `proxy.workers` may ask for.
pub const MAX_PROXY_WORKERS: usize = 64;

/// `[proxy]`.
///
/// Defaults: internal networks are the private, loopback and link-local ranges;
/// CONNECT allowed to ports 443 and 8443; domain fronting blocked; authentication
/// off; 32 KiB of request head and 100 headers; 30 s to send a request head
/// (slowloris), 60 s idle keep-alive, 30 s to connect upstream; 256 connections per
/// client and 10 000 in total; one worker thread for every two CPUs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// The school's own networks: a guest may not reach them through the proxy.
    pub internal_networks: Vec<IpNet>,
    /// Host names the PAC file sends direct (the school's own services).
    pub pac_direct: Vec<String>,
    /// The address browsers use for the proxy in the PAC file (`host:port`);
    /// default: the proxy's listen address.
    pub pac_proxy: Option<String>,
    pub connect_ports: Vec<u16>,
    pub domain_fronting: FrontingAction,
    pub auth: ProxyAuth,
    /// Users → role and argon2 password hashes (e.g. exported from the MIS).
    pub users_file: Option<PathBuf>,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub header_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub connect_timeout_secs: u64,
    pub max_connections_per_client: usize,
    pub max_connections: usize,
    /// Threads serving the proxy, each with its own listening socket; read at
    /// start; at most [`MAX_PROXY_WORKERS`]. Default: half the CPUs, rounded up
    /// (see `schoolgate_proxy::default_workers`).
    pub workers: Option<NonZeroUsize>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        let nets = [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "::1/128",
            "fc00::/7",
            "fe80::/10",
        ];
        ProxyConfig {
            internal_networks: nets.iter().filter_map(|n| n.parse().ok()).collect(),
            pac_direct: Vec::new(),
            pac_proxy: None,
            connect_ports: vec![443, 8443],
            domain_fronting: FrontingAction::Block,
            auth: ProxyAuth::Off,
            users_file: None,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            header_timeout_secs: 30,
            idle_timeout_secs: 60,
            connect_timeout_secs: 30,
            max_connections_per_client: 256,
            max_connections: 10_000,
            workers: None,
        }
    }
}

/// `[dashboard]`.
///
/// Defaults: the public URL is `http://127.0.0.1:8080` (used in block pages and
/// alerts), no TLS, state in `var/dashboard.sqlite`, sessions expire after 8 hours
/// (a school day), 5 failed logins lock an account for 15 minutes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    pub url: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub state: PathBuf,
    pub session_hours: u32,
    pub max_failed_logins: u32,
    pub lockout_minutes: u32,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            url: "http://127.0.0.1:8080".to_owned(),
            tls_cert: None,
            tls_key: None,
            state: PathBuf::from("var/dashboard.sqlite"),
            session_hours: 8,
            max_failed_logins: 5,
            lockout_minutes: 15,
        }
    }
}

/// `[reports]`: the weekly summary.
///
/// Defaults: Monday at 07:00 school time, no recipients (stored in the dashboard
/// only), no SMTP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsConfig {
    pub weekly_day: super::schedule::DayName,
    pub weekly_time: String,
    pub recipients: Vec<String>,
    pub smtp: Option<SmtpConfig>,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            weekly_day: super::schedule::DayName(jiff::civil::Weekday::Monday),
            weekly_time: "07:00".to_owned(),
            recipients: Vec::new(),
            smtp: None,
        }
    }
}

/// How mail leaves schoolgate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub starttls: bool,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    pub from: String,
}

fn default_smtp_port() -> u16 {
    587
}

/// `[alerts]`: same-day alerts to the safeguarding lead.
///
/// Defaults: alert from severity `high`, no recipients, no webhook, at most 50
/// alerts a day (then one overflow notice).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    pub min_severity: Severity,
    pub recipients: Vec<String>,
    pub webhook: Option<String>,
    pub daily_cap: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            min_severity: Severity::High,
            recipients: Vec::new(),
            webhook: None,
            daily_cap: 50,
        }
    }
}

/// `[[networks]]`: a client subnet (VLAN, wifi SSID range) and its role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub cidr: IpNet,
    pub role: String,
    /// The school (or site) in a trust; empty for a single school.
    #[serde(default)]
    pub school: String,
    #[serde(default)]
    pub name: String,
}

/// `[[devices]]`: one device (by address) mapped to a role explicitly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub ip: IpAddr,
    pub role: String,
    #[serde(default)]
    pub name: String,
}

/// `[[users]]`: one user (from proxy authentication) mapped to a role explicitly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub role: String,
}

/// `[[schools]]`: one school of a trust (or the only one).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchoolConfig {
    /// Short id used in events and networks (`hillside`).
    pub id: String,
    pub name: String,
    /// Who pupils and staff should contact about a block (shown on block pages).
    pub contact: String,
    /// Reports and alerts for this school; added to the trust-wide recipients.
    pub report_recipients: Vec<String>,
    pub alert_recipients: Vec<String>,
}

/// Where a list comes from and what it feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListFormat {
    /// One domain per line.
    Domains,
    /// A hosts file (`0.0.0.0 name`).
    Hosts,
    /// Adblock-style `||name^` rules.
    Adblock,
    /// `host/path` prefixes (squidGuard `urls`).
    Urls,
    /// A UT1 / squidGuard category folder.
    Ut1,
}

/// `[[lists]]`: one list source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSource {
    /// Unique name, used in verdict reasons (`ut1/gambling`).
    pub name: String,
    pub format: ListFormat,
    /// A local file or folder...
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// ...or a URL to download it from.
    #[serde(default)]
    pub url: Option<String>,
    /// The category every entry gets (required except for `ut1`).
    #[serde(default)]
    pub category: Option<crate::category::Category>,
    /// For `ut1`: only these UT1 category names (default: every mapped one).
    #[serde(default)]
    pub only: Vec<String>,
    /// Re-fetch a `url` source this often (hours); default 24.
    #[serde(default)]
    pub update_hours: Option<u32>,
}
