//! `schoolgate run`: starts the event pipeline, the DNS filter, the proxy and the
//! dashboard from one configuration, reloads on SIGHUP, and shuts down in order on
//! SIGTERM / Ctrl-C (servers stop accepting, the pipeline drains to the store or
//! the spool, nothing is lost).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use schoolgate_classifier::config::Backend;
use schoolgate_classifier::{Config, shared};
use schoolgate_events::{ClickhouseStore, EventStore, Pipeline};
use schoolgate_lists::load::Reloader;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::load;

/// How long servers get to finish in-flight work after a shutdown signal.
const GRACE: Duration = Duration::from_secs(10);

pub async fn run(config_path: &Path) -> Result<()> {
    let started = Instant::now();
    let config = load::read_config(config_path)?;
    let base = load::base_dir(config_path);
    for dir in [
        config.store.path.parent(),
        Some(config.store.spool_dir.as_path()),
    ]
    .into_iter()
    .flatten()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let cache = load::cache_dir(&config, &base);
    let (policy, report) = schoolgate_lists::load::compile(config.clone(), &base, &cache)
        .context("compiling the policy")?;
    for s in &report.sources {
        match &s.error {
            Some(e) => {
                warn!(list = %s.name, error = %e, "list source not loaded: the filter runs without it")
            }
            None => {
                info!(list = %s.name, entries = s.entries, malformed = s.malformed, "list loaded")
            }
        }
    }
    let stats = policy.stats();
    info!(
        domains = stats.domains,
        urls = stats.urls,
        keyword_rules = stats.keyword_rules,
        "policy compiled"
    );
    let policy = shared(policy);
    let reloader = Reloader {
        shared: policy.clone(),
        base_dir: base.clone(),
        cache_dir: cache.clone(),
    };

    let shutdown = CancellationToken::new();
    let store = open_store(&config).await?;
    let (events, pipeline) = Pipeline::start(&config.store, store.clone(), shutdown.child_token())
        .context("starting the event pipeline")?;
    if !config.store.record {
        warn!("[store] record = false: decisions are counted, no event is kept (no monitoring)");
    }

    let mut tasks = JoinSet::new();

    let dns = if config.listen.dns.is_empty() {
        None
    } else {
        let filter = schoolgate_dns::DnsFilter::new(policy.clone(), events.clone());
        let server = schoolgate_dns::DnsServer::bind(filter.clone(), &config.listen.dns)
            .context("starting the DNS filter")?;
        let token = shutdown.child_token();
        tasks.spawn(async move {
            if let Err(e) = server.run(token).await {
                error!(error = %e, "DNS filter stopped");
            }
        });
        Some(filter)
    };

    let listeners = schoolgate_proxy::Listeners::from_config(&config.listen);
    let proxy = if listeners == schoolgate_proxy::Listeners::default() {
        None
    } else {
        let proxy = schoolgate_proxy::Proxy::new(policy.clone(), events.clone());
        let server = schoolgate_proxy::ProxyServer::bind(proxy.clone(), listeners)
            .context("starting the proxy")?;
        let server = match config.proxy.workers {
            Some(n) => server.workers(n.get()),
            None => server,
        };
        let token = shutdown.child_token();
        tasks.spawn(async move { server.run(token).await });
        Some(proxy)
    };

    if config.lists.iter().any(|l| l.url.is_some()) {
        let token = shutdown.child_token();
        let (r, path) = (reloader.clone(), config_path.to_path_buf());
        tasks.spawn(update_lists(r, path, token));
    }

    let alerter = if config.alerts.recipients.is_empty()
        && config.alerts.webhook.is_none()
        && config.schools.iter().all(|s| s.alert_recipients.is_empty())
    {
        info!("no alert recipients or webhook configured: safeguarding alerts are off");
        None
    } else {
        let outbox = state_dir(&config).join("alerts");
        let setup =
            schoolgate_reports::AlertSetup::from_config(&config, outbox).context("[alerts]")?;
        let (sender, handle) = schoolgate_reports::Alerter::start(setup, shutdown.child_token())
            .context("starting the safeguarding alerter")?;
        tasks.spawn(crate::alerts::feed(
            store.clone(),
            sender,
            config.policy.node.clone(),
            config.alerts.min_severity,
            shutdown.child_token(),
        ));
        Some(handle)
    };

    // The dashboard's state is opened even when it is not served: it keeps the
    // weekly summaries (and knows the week's incidents and policy changes).
    let dashboard = {
        let (dns, proxy) = (dns.clone(), proxy.clone());
        let counters = events.clone();
        let health: schoolgate_dashboard::HealthSource = Arc::new(move || {
            serde_json::json!({
                "dns": dns.as_ref().map(|d| d.stats()),
                "proxy": proxy.as_ref().map(|p| p.stats()),
                "pipeline": counters.counters(),
            })
        });
        schoolgate_dashboard::Dashboard::new(schoolgate_dashboard::DashboardContext {
            policy: policy.clone(),
            config_path: config_path.to_path_buf(),
            reloader: reloader.clone(),
            store: store.clone(),
            health,
            state_path: config.dashboard.state.clone(),
            started_at: jiff::Timestamp::now(),
            load_report: Some(report.clone()),
            clock: schoolgate_dashboard::Clock::system(),
        })
        .context("starting the dashboard")?
    };

    // The weekly summary: built at `[reports] weekly_day` / `weekly_time` (or at
    // start, for a run missed earlier today), kept for the dashboard, and mailed
    // when `[reports.smtp]` is set.
    {
        let archive = Arc::new(dashboard.summary_archive());
        let job = schoolgate_reports::WeeklyJob::new(
            store.clone(),
            policy.clone(),
            archive.clone(),
            archive,
        );
        tasks.spawn(job.run(shutdown.child_token()));
    }

    if let Some(addr) = config.listen.dashboard {
        let bound = dashboard
            .bind(addr)
            .await
            .context("binding the dashboard")?;
        info!(addr = %bound.local_addr(), "dashboard listening");
        let token = shutdown.child_token();
        tasks.spawn(async move {
            if let Err(e) = bound.run(token).await {
                error!(error = %e, "dashboard stopped");
            }
        });
    }

    let _ = (started, &alerter);

    // Reload on SIGHUP; stop on SIGTERM or Ctrl-C.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading the configuration and lists");
                let r = reloader.clone();
                let path = config_path.to_path_buf();
                let outcome = tokio::task::spawn_blocking(move || {
                    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
                    r.reload_text(&path.display().to_string(), &text).map_err(|e| e.to_string())
                })
                .await;
                match outcome {
                    Ok(Ok(report)) => {
                        info!("reloaded: the new policy is in force");
                        if !report.restart_needed.is_empty() {
                            warn!(
                                changed = %report.restart_needed.join(", "),
                                "these changes take effect only when schoolgate restarts"
                            );
                        }
                    }
                    Ok(Err(e)) => error!("reload refused, the previous policy keeps running: {e}"),
                    Err(e) => error!("reload task failed: {e}"),
                }
            }
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { info!("interrupt: shutting down"); break; }
        }
    }
    shutdown.cancel();
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(GRACE, drain).await.is_err() {
        warn!("servers did not stop within {GRACE:?}; aborting them");
        tasks.abort_all();
    }
    // Servers are stopped, so no new events: drain the queue to the store or spool.
    pipeline.shutdown().await;
    info!("stopped");
    Ok(())
}

/// The folder for the filter's own state (alert outbox, list cache): beside the
/// event store.
fn state_dir(config: &Config) -> PathBuf {
    config
        .store
        .path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

async fn open_store(config: &Config) -> Result<Arc<dyn EventStore>> {
    if config.store.backend == Backend::Clickhouse {
        let ch = config
            .store
            .clickhouse
            .as_ref()
            .context("[store] backend = \"clickhouse\" needs [store.clickhouse]")?;
        let store = ClickhouseStore::new(ch, config.store.retention.clone());
        // The server may be down at start: events spool until it is back.
        match store.migrate().await {
            Ok(report) => info!(?report, "ClickHouse schema ready"),
            Err(e) => warn!(error = %e, "ClickHouse not ready; events will spool until it is"),
        }
        return Ok(Arc::new(store));
    }
    schoolgate_events::open_store(&config.store).context("opening the event store")
}

/// How often URL list sources are checked for being due (each source has its own
/// `update_hours`).
const LIST_CHECK_EVERY: Duration = Duration::from_secs(15 * 60);

/// Downloads due list sources and reloads the policy when any changed. Runs at
/// start (so a fresh install fetches its lists) and then every 15 minutes.
async fn update_lists(reloader: Reloader, config_path: PathBuf, shutdown: CancellationToken) {
    loop {
        let (r, path) = (reloader.clone(), config_path.clone());
        let outcome = tokio::task::spawn_blocking(move || -> Result<usize, String> {
            let config = load::read_config(&path).map_err(|e| format!("{e:#}"))?;
            let now = jiff::Timestamp::now();
            let mut changed = 0;
            for source in config.lists.iter().filter(|s| s.url.is_some()) {
                if !schoolgate_lists::update::is_due(&r.cache_dir, source, now) {
                    continue;
                }
                match schoolgate_lists::update::update(source, &r.cache_dir) {
                    Ok(schoolgate_lists::update::Outcome::Updated { entries }) => {
                        info!(list = %source.name, entries, "list downloaded");
                        changed += 1;
                    }
                    Ok(_) => info!(list = %source.name, "list unchanged upstream"),
                    Err(e) => warn!(list = %source.name, error = %e, "list update failed; keeping the previous copy"),
                }
            }
            if changed > 0 {
                r.reload(config).map_err(|e| e.to_string())?;
            }
            Ok(changed)
        })
        .await;
        match outcome {
            Ok(Ok(n)) if n > 0 => info!(changed = n, "policy reloaded with the new lists"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => error!("list update: {e}"),
            Err(e) => error!("list update task failed: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(LIST_CHECK_EVERY) => {}
        }
    }
}
