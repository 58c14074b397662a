//! `schoolgate config check`: the verdict on a configuration and a summary.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use schoolgate_classifier::Config;
use schoolgate_classifier::config::UpstreamTls;
use schoolgate_classifier::config::services::ProxyAuth;
use schoolgate_proxy::Users;

use crate::load;

pub fn check(path: &Path) -> Result<ExitCode> {
    let config = match load::read_config(path) {
        Ok(c) => c,
        Err(e) => {
            println!("{e:#}");
            println!("\nconfiguration NOT OK");
            return Ok(ExitCode::from(1));
        }
    };
    let (policy, report) = load::compile_config(config, path)?;
    let config = policy.config().clone();
    println!("{}: configuration OK", path.display());
    if let Some(trust) = &config.trust {
        println!("trust: {trust}");
    }
    for s in &config.schools {
        println!("school: {} ({})", s.name, s.id);
    }
    println!("\nroles ({}):", config.roles.len());
    for (_, role) in policy.roles() {
        let marker = if role.name.as_ref() == config.policy.default_role {
            " (default)"
        } else {
            ""
        };
        println!(
            "  {:<14}{marker} blocks {}; flags {}",
            role.name,
            role.block.len(),
            role.flagged().len()
        );
    }
    println!("\nnetworks ({}):", config.networks.len());
    for n in &config.networks {
        println!("  {:<20} -> {:<12} {}", n.cidr.to_string(), n.role, n.name);
    }
    if !config.devices.is_empty() || !config.users.is_empty() {
        println!(
            "\nmapped devices: {}, mapped users: {}",
            config.devices.len(),
            config.users.len()
        );
    }
    let users_ok = proxy_users(&config);
    if !config.dns.upstreams.is_empty() {
        println!("\nDNS upstreams ({}):", config.dns.upstreams.len());
        for u in &config.dns.upstreams {
            let how = match &u.tls {
                None => "plain DNS (UDP, TCP for long answers)".to_owned(),
                Some(UpstreamTls::Name(name)) => format!("DNS over TLS, certificate for {name}"),
                Some(UpstreamTls::Address) => {
                    format!("DNS over TLS, certificate for {}", u.addr.ip())
                }
            };
            println!("  {:<32} {how}", u.to_string());
        }
    }
    println!("\nlists ({}):", report.sources.len());
    // Names wider than the column push only their own line out of line.
    let width = report
        .sources
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max(24);
    let mut failed = 0;
    for s in &report.sources {
        match &s.error {
            Some(e) => {
                failed += 1;
                println!("  {:<width$} FAILED: {e}", s.name);
            }
            None => println!(
                "  {:<width$} {:>9} entries{}  ({} ms)",
                s.name,
                s.entries,
                if s.malformed > 0 {
                    format!(", {} malformed", s.malformed)
                } else {
                    String::new()
                },
                s.millis
            ),
        }
        for e in s.first_errors.iter().take(5) {
            println!("      {e}");
        }
    }
    let stats = policy.stats();
    println!("\nentries per category:");
    for (c, n) in &stats.per_category {
        println!("  {:<20} {n:>9}", c.name());
    }
    println!(
        "\nindex: {} domains, {} URL prefixes, {} keyword rules",
        stats.domains, stats.urls, stats.keyword_rules
    );
    if !config.store.record {
        println!(
            "\nwarning: [store] record = false: decisions are counted but no event is kept \
             (no monitoring, no review, no alerts); the DfE monitoring standard needs it on"
        );
    }
    if failed > 0 {
        println!(
            "\n{failed} list source(s) could not be read: the filter would start without them"
        );
        return Ok(ExitCode::from(1));
    }
    if !users_ok {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The proxy's users file, as the proxy would load it: how many people per
/// role, and who would silently get the default role. `false` when the file
/// cannot be used (with authentication on, nobody could sign in).
fn proxy_users(config: &Config) -> bool {
    let auth = match config.proxy.auth {
        ProxyAuth::Off => "off",
        ProxyAuth::Optional => "optional",
        ProxyAuth::Required => "required",
    };
    let Some(file) = &config.proxy.users_file else {
        if config.proxy.auth != ProxyAuth::Off {
            println!(
                "\nproxy users: authentication is {auth} but `[proxy] users_file` is not set: \
                 nobody can sign in"
            );
        }
        return true;
    };
    let users = match Users::load(file) {
        Ok(u) => u,
        Err(e) => {
            println!("\nproxy users (authentication {auth}): {e}");
            println!("  the proxy would start with nobody able to sign in");
            return false;
        }
    };
    let mut per_role: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unknown = Vec::new();
    for u in users.iter() {
        *per_role.entry(&u.role).or_default() += 1;
        if !u.has_role_in(config) {
            unknown.push(format!("{} ({})", u.name, u.role));
        }
    }
    println!(
        "\nproxy users (authentication {auth}): {} in {}",
        users.len(),
        file.display()
    );
    let counts: Vec<String> = per_role.iter().map(|(r, n)| format!("{r} {n}")).collect();
    if !counts.is_empty() {
        println!("  {}", counts.join(", "));
    }
    if !unknown.is_empty() {
        unknown.sort();
        println!(
            "  warning: {} with a role this config does not define, who would get the \
             default role ({}): {}",
            unknown.len(),
            config.policy.default_role,
            crate::first_few(&unknown, 10, ", ")
        );
    }
    true
}
