//! What the proxy derives from one policy snapshot: limits, ports, internal
//! networks, which roles are guest-level, branding, the user directory.
//!
//! Derived once per snapshot (on the first request after a reload) and shared,
//! so the hot path reads plain fields instead of walking the configuration.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use schoolgate_classifier::config::{FrontingAction, ProxyAuth};
use schoolgate_classifier::{Policy, RoleId};
use tracing::warn;

use crate::users::Users;

/// The bounds of one connection, from `[proxy]`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Longest request line (method, target, version) accepted: 8 KiB, as most
    /// servers do; longer is an attack or a broken client (414).
    pub max_request_line: usize,
    /// To send a whole request head, and the longest keep-alive wait between
    /// requests (hyper runs one timer for both).
    pub header_timeout: Duration,
    /// A tunnel or upstream connection with no bytes either way for this long is
    /// closed; also the wait for an upstream's response head.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_connections_per_client: usize,
    pub max_connections: usize,
}

/// Branding for pages.
#[derive(Clone, Debug, Default)]
pub struct School {
    pub name: Arc<str>,
    pub contact: Arc<str>,
}

#[derive(Debug)]
pub struct View {
    pub policy: Arc<Policy>,
    /// Counts snapshots, so caches keyed on one (proxy auth) expire on reload.
    pub generation: u64,
    /// Our `Via` entry (`1.1 <node>`); seeing it on a request means a loop.
    pub via: http::HeaderValue,
    /// `[[users]]` of the school config: they override the users file's role.
    config_users: HashMap<String, RoleId>,
    pub limits: Limits,
    pub connect_ports: Vec<u16>,
    pub internal: Vec<IpNet>,
    /// Per role id: guest-level roles may not reach internal networks.
    restricted: Vec<bool>,
    pub fronting: FrontingAction,
    pub auth: ProxyAuth,
    pub users: Users,
    /// The users file could not be read: with `auth = "required"` nobody gets
    /// through (fail closed).
    pub users_error: Option<String>,
    pub node: Arc<str>,
    pub dashboard_url: Arc<str>,
    schools: HashMap<String, School>,
    default_school: School,
    pub pac_direct: Vec<String>,
    pub pac_proxy: Option<String>,
    pub listen_proxy: Option<std::net::SocketAddr>,
}

impl View {
    pub fn new(policy: Arc<Policy>, generation: u64) -> View {
        let config = policy.config().clone();
        let p = &config.proxy;
        let limits = Limits {
            max_header_bytes: p.max_header_bytes.max(1024),
            max_headers: p.max_headers.max(8),
            max_request_line: 8 * 1024,
            header_timeout: Duration::from_secs(p.header_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(p.idle_timeout_secs.max(1)),
            connect_timeout: Duration::from_secs(p.connect_timeout_secs.max(1)),
            max_connections_per_client: p.max_connections_per_client.max(1),
            max_connections: p.max_connections.max(1),
        };
        let restricted = policy
            .roles()
            .map(|(id, role)| id == policy.default_role() || extends_guest(&config, &role.name))
            .collect();
        let (users, users_error) = match &p.users_file {
            Some(path) => match Users::load(path) {
                Ok(u) => (u, None),
                Err(e) => {
                    warn!(error = %e, "proxy users file unusable: no one can authenticate");
                    (Users::default(), Some(e.to_string()))
                }
            },
            None => (Users::default(), None),
        };
        let schools: HashMap<String, School> = config
            .schools
            .iter()
            .map(|s| {
                (
                    s.id.clone(),
                    School {
                        name: s.name.as_str().into(),
                        contact: s.contact.as_str().into(),
                    },
                )
            })
            .collect();
        let default_school = config
            .schools
            .first()
            .map(|s| School {
                name: s.name.as_str().into(),
                contact: s.contact.as_str().into(),
            })
            .or_else(|| {
                config.trust.as_ref().map(|t| School {
                    name: t.as_str().into(),
                    contact: "".into(),
                })
            })
            .unwrap_or_default();
        let config_users = config
            .users
            .iter()
            .filter_map(|u| Some((u.name.clone(), policy.role_id(&u.role)?)))
            .collect();
        let via = http::HeaderValue::from_str(&format!("1.1 {}", config.policy.node))
            .unwrap_or(http::HeaderValue::from_static("1.1 schoolgate"));
        View {
            generation,
            via,
            config_users,
            limits,
            connect_ports: p.connect_ports.clone(),
            internal: p.internal_networks.clone(),
            restricted,
            fronting: p.domain_fronting,
            auth: p.auth,
            users,
            users_error,
            node: config.policy.node.as_str().into(),
            dashboard_url: config.dashboard.url.trim_end_matches('/').into(),
            schools,
            default_school,
            pac_direct: p.pac_direct.clone(),
            pac_proxy: p.pac_proxy.clone(),
            listen_proxy: config.listen.proxy,
            policy,
        }
    }

    /// Whether the role is guest-level: the default role (what unknown and
    /// unmapped clients get), `guest`, or any role extending `guest`.
    pub fn is_restricted(&self, role: RoleId) -> bool {
        self.restricted
            .get(usize::from(role.0))
            .copied()
            .unwrap_or(true)
    }

    pub fn school(&self, id: &str) -> &School {
        self.schools.get(id).unwrap_or(&self.default_school)
    }

    /// The role `[[users]]` gives this user name, if any.
    pub fn config_user_role(&self, name: &str) -> Option<RoleId> {
        self.config_users.get(name).copied()
    }

    /// The role a name maps to, if the policy defines it.
    pub fn role_id(&self, name: &str) -> Option<RoleId> {
        self.policy.role_id(name)
    }
}

fn extends_guest(config: &schoolgate_classifier::Config, name: &str) -> bool {
    let mut cur = Some(name);
    // Bounded by the number of roles: validation rejects cycles, but never loop.
    for _ in 0..=config.roles.len() {
        match cur {
            Some("guest") => return true,
            Some(n) => cur = config.roles.get(n).and_then(|r| r.extends.as_deref()),
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_level_roles_are_the_default_and_guest_descendants() {
        let text = r#"
[policy]
default_role = "visitor"
[roles.visitor]
[roles.guest]
[roles.guest-event]
extends = "guest"
[roles.staff]
"#;
        let config = schoolgate_classifier::Config::parse("t.toml", text).expect("config");
        let policy = Arc::new(
            schoolgate_classifier::PolicyBuilder::new(config)
                .build()
                .expect("policy"),
        );
        let view = View::new(policy.clone(), 1);
        let id = |n: &str| policy.role_id(n).expect("role");
        assert!(view.is_restricted(id("visitor")));
        assert!(view.is_restricted(id("guest")));
        assert!(view.is_restricted(id("guest-event")));
        assert!(!view.is_restricted(id("staff")));
    }
}
