//! Runs the proxy alone from a school config: lists compiled, events into the
//! configured store through the real pipeline. Used by `bench/compare.sh`; the
//! product runs the proxy from `schoolgate run`, which does the same plus DNS and
//! the dashboard.
//!
//! `cargo run --release -p schoolgate-proxy --example serve -- school.toml`
//!
//! Only plain `domains` list files are read here (the bench decompresses its
//! lists first); the product's list loader lives in `schoolgate-lists`.

use std::path::Path;
use std::sync::Arc;

use schoolgate_classifier::config::ListFormat;
use schoolgate_classifier::{Config, Policy, PolicyBuilder};
use schoolgate_events::{Pipeline, SqliteStore};
use schoolgate_proxy::{Listeners, Proxy, ProxyServer};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: serve CONFIG.toml")?;
    let text = std::fs::read_to_string(&path)?;
    let config = Config::parse(&path, &text)?;
    let base = Path::new(&path).parent().unwrap_or(Path::new("."));
    let store_cfg = config.store.clone();
    let listen = Listeners::from_config(&config.listen);
    let policy = compile(config, base)?;
    eprintln!("policy: {} domains", policy.stats().domains);
    let policy = schoolgate_classifier::shared(policy);
    let shutdown = CancellationToken::new();
    let store = Arc::new(SqliteStore::open(
        &store_cfg.path,
        store_cfg.retention.clone(),
    )?);
    let (events, pipeline) = Pipeline::start(&store_cfg, store, shutdown.clone())?;
    let proxy = Proxy::new(policy, events);
    let server = ProxyServer::bind(proxy.clone(), listen)?;
    eprintln!("ready {:?}", server.local_addrs());
    let token = shutdown.clone();
    let run = tokio::spawn(server.run(token));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    shutdown.cancel();
    let _ = run.await;
    pipeline.join().await;
    eprintln!("stats {}", serde_json::to_string(&proxy.stats())?);
    Ok(())
}

/// Compiles the policy with the config's plain `domains` lists.
fn compile(config: Config, base: &Path) -> Result<Policy, Box<dyn std::error::Error>> {
    let lists = config.lists.clone();
    let mut b = PolicyBuilder::new(config);
    for list in lists {
        let (ListFormat::Domains, Some(path), Some(category)) =
            (list.format, list.path.as_ref(), list.category)
        else {
            eprintln!(
                "skipping list {}: only local `domains` lists here",
                list.name
            );
            continue;
        };
        let id = b.list(&list.name)?;
        let text = std::fs::read_to_string(base.join(path))?;
        for line in text.lines() {
            let d = line.trim().trim_end_matches('.').to_ascii_lowercase();
            if !d.is_empty() && !d.starts_with('#') {
                b.add_domain(id, category, &d);
            }
        }
    }
    Ok(b.build()?)
}
