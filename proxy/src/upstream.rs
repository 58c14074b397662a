//! Reaching destinations: name resolution, the guest SSRF check, the loop check,
//! and the connector behind the pooled hyper-util client.
//!
//! The checks run on the *resolved address actually dialled*, never on the name:
//! a guest asking for `intranet.example` that resolves to 10.0.0.5 is refused,
//! and a name that resolves to a public and an internal address only gets the
//! public one. There is no window between check and connect.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use schoolgate_classifier::SharedPolicy;
use schoolgate_classifier::policy::canonical_ip;
use tokio::net::TcpStream;

use crate::error::ConnectError;

/// The most addresses of one name tried in turn.
const MAX_ADDRS: usize = 8;

/// Resolves and connects, with the checks. Shared by the pooled client, CONNECT
/// and the transparent HTTPS splice.
#[derive(Debug)]
pub struct Dialer {
    policy: SharedPolicy,
    /// Name → address overrides (tests point names at local origins). A port of
    /// 0 keeps the requested port.
    overrides: HashMap<String, SocketAddr>,
    /// The proxy's own listening addresses (loop check).
    local: ArcSwap<Vec<SocketAddr>>,
}

impl Dialer {
    pub fn new(policy: SharedPolicy, overrides: HashMap<String, SocketAddr>) -> Dialer {
        Dialer {
            policy,
            overrides: overrides
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            local: ArcSwap::from_pointee(Vec::new()),
        }
    }

    pub fn set_local(&self, addrs: Vec<SocketAddr>) {
        self.local.store(Arc::new(addrs));
    }

    /// Whether `addr` is one of this proxy's listeners.
    pub fn is_self(&self, addr: SocketAddr) -> bool {
        let ip = canonical_ip(addr.ip());
        self.local.load().iter().any(|l| {
            l.port() == addr.port()
                && (l.ip() == ip
                    || (l.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified())))
        })
    }

    /// The addresses of `host` (a name, an IP literal or `[v6]`).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(canonical_ip(ip), port)]);
        }
        if !self.overrides.is_empty() {
            let key = bare.trim_end_matches('.').to_ascii_lowercase();
            if let Some(a) = self.overrides.get(&key) {
                let port = if a.port() == 0 { port } else { a.port() };
                return Ok(vec![SocketAddr::new(a.ip(), port)]);
            }
        }
        let addrs = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|source| ConnectError::Resolve {
                host: host.to_owned(),
                source,
            })?;
        let addrs: Vec<SocketAddr> = addrs
            .map(|a| SocketAddr::new(canonical_ip(a.ip()), a.port()))
            .take(MAX_ADDRS)
            .collect();
        if addrs.is_empty() {
            return Err(ConnectError::NoAddress {
                host: host.to_owned(),
            });
        }
        Ok(addrs)
    }

    /// Refuses loops, and internal addresses for guest-level clients.
    pub fn check(&self, addr: SocketAddr, restricted: bool) -> Result<(), ConnectError> {
        if self.is_self(addr) {
            return Err(ConnectError::Loop { addr });
        }
        if restricted {
            let policy = self.policy.load();
            let ip = canonical_ip(addr.ip());
            // Unspecified addresses reach the local host: always internal.
            if ip.is_unspecified()
                || policy
                    .config()
                    .proxy
                    .internal_networks
                    .iter()
                    .any(|n| n.contains(&ip))
            {
                return Err(ConnectError::Internal { addr: ip });
            }
        }
        Ok(())
    }

    /// Connects to one of `addrs` that passes the checks.
    pub async fn connect_addrs(
        &self,
        addrs: &[SocketAddr],
        restricted: bool,
    ) -> Result<TcpStream, ConnectError> {
        let timeout = std::time::Duration::from_secs(
            self.policy
                .load()
                .config()
                .proxy
                .connect_timeout_secs
                .max(1),
        );
        let mut last = None;
        for addr in addrs {
            if let Err(e) = self.check(*addr, restricted) {
                last = Some(e);
                continue;
            }
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    // Small writes (request heads) must not wait for Nagle.
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Ok(Err(source)) => {
                    last = Some(ConnectError::Refused {
                        addr: *addr,
                        source,
                    })
                }
                Err(_) => last = Some(ConnectError::Timeout { addr: *addr }),
            }
        }
        Err(last.unwrap_or(ConnectError::NoAddress {
            host: String::new(),
        }))
    }

    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        restricted: bool,
    ) -> Result<TcpStream, ConnectError> {
        let addrs = self.resolve(host, port).await?;
        self.connect_addrs(&addrs, restricted).await
    }
}
