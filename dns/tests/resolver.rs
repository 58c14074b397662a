use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use crate::support::*;

/// A resolver asking the filter from `from`: over UDP (with TCP for truncated
/// answers) or over TCP only.
fn resolver(server: SocketAddr, from: &str, tcp_only: bool) -> TokioResolver {
    let protocols = if tcp_only {
        vec![ConnectionConfig::tcp()]
    } else {
        vec![ConnectionConfig::udp(), ConnectionConfig::tcp()]
    };
    let mut ns = NameServerConfig::udp(server.ip());
    ns.connections = protocols
        .into_iter()
        .map(|mut c| {
            c.port = server.port();
            c.bind_addr = Some(SocketAddr::new(from.parse().expect("ip"), 0));
            c
        })
        .collect();
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.attempts = 1;
    TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    )
    .with_options(opts)
    .build()
    .expect("resolver")
}

async fn ips(r: &TokioResolver, name: &str) -> Vec<IpAddr> {
    r.lookup_ip(name)
        .await
        .map(|l| l.iter().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hickory_resolver_sees_the_policy_of_its_address() {
    let school = School::start().await;
    for tcp in [false, true] {
        let pupil = resolver(school.addr, PUPIL, tcp);
        let staff = resolver(school.addr, STAFF, tcp);
        let www = ips(&pupil, "www.school.test.").await;
        assert!(
            www.contains(&"192.0.2.10".parse().expect("ip")),
            "tcp={tcp}: {www:?}"
        );
        assert!(
            ips(&pupil, "bet365.com.")
                .await
                .contains(&IpAddr::V4(BLOCK_V4)),
            "tcp={tcp}"
        );
        assert!(
            ips(&staff, "bet365.com.")
                .await
                .contains(&"192.0.2.66".parse().expect("ip")),
            "tcp={tcp}"
        );
        let big = ips(&pupil, "big.school.test.").await;
        assert_eq!(
            big.iter().filter(|ip| ip.is_ipv4()).count(),
            usize::from(BIG_RRSET),
            "tcp={tcp}"
        );
    }
}
