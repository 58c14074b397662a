//! The DNS filter alone, from a configuration file and list files: what
//! `dns/bench/dnsperf.sh` runs side by side with unbound and dnsmasq.
//!
//! ```text
//! bench_filter CONFIG.toml [LIST.txt[.gz]=CATEGORY ...] [--ut1-dir DIR] [--discard-events]
//! ```
//!
//! `--discard-events` runs the whole event pipeline (every event is built and
//! queued) but with a store that drops the batches, to tell the DNS path's cost
//! from the embedded store's; `--no-journal` turns the pipeline's write-ahead
//! journal off (`PipelineTuning::journal`, on in production), to show its cost.
//!
//! Every `LIST=CATEGORY` file (one domain per line, gzip or not) is loaded
//! under that category; every `DIR/*.txt.gz` of `--ut1-dir` (not the
//! `*.urls.txt.gz`, which a DNS-only peer could not use) is loaded under its UT1
//! category, and UT1 categories schoolgate does not map (bank, jobsearch, ...)
//! under `advertising`, so that every server of the comparison blocks the same
//! names. Prints `ready PORT` when listening, serves until SIGTERM or Ctrl-C,
//! then prints the filter's counters as JSON.
//!
//! The files are read here with `flate2` rather than `schoolgate-lists`, so the
//! DNS crate's tests and benchmark build whatever state that crate is in; the
//! shared data is already one normalised name per line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use schoolgate_classifier::{Category, Config, PolicyBuilder};
use schoolgate_dns::{DnsFilter, DnsServer};
use schoolgate_events::{
    AccessEvent, Batch, BypassAttempts, Count, EventSearch, EventStore, ExportFilter, FlaggedQuery,
    GroupBy, HostCount, Period, Pipeline, PipelineTuning, PurgeReport, Purpose, StoreError,
    Subject, Totals,
};
use std::io::BufRead;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error>;

fn load(b: &mut PolicyBuilder, name: &str, path: &Path, category: Category) -> Result<u64, Error> {
    let id = b.list(name)?;
    let file = std::fs::File::open(path)?;
    let reader: Box<dyn std::io::Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut n = 0u64;
    for line in std::io::BufReader::new(reader).lines() {
        let line = line?;
        let name = line.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if let Ok(host) = schoolgate_classifier::domain::normalize_host(name) {
            b.add_domain(id, category, &host);
            n += 1;
        }
    }
    Ok(n)
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let config_path = PathBuf::from(
        args.next()
            .ok_or("usage: bench_filter CONFIG.toml [LIST=CATEGORY ...] [--ut1-dir DIR]")?,
    );
    let text = std::fs::read_to_string(&config_path)?;
    let config = Config::parse(&config_path.display().to_string(), &text)?;
    let started = std::time::Instant::now();
    let mut b = PolicyBuilder::new(config);
    let mut entries = 0u64;
    let mut discard_events = false;
    let mut journal = true;
    while let Some(arg) = args.next() {
        if arg == "--discard-events" {
            discard_events = true;
        } else if arg == "--no-journal" {
            journal = false;
        } else if arg == "--ut1-dir" {
            let dir = PathBuf::from(args.next().ok_or("--ut1-dir needs a folder")?);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    n.ends_with(".txt.gz") && !n.ends_with(".urls.txt.gz")
                })
                .collect();
            files.sort();
            for path in files {
                let stem = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".txt.gz"))
                    .unwrap_or("unknown")
                    .to_owned();
                let category = Category::from_ut1(&stem).unwrap_or(Category::Advertising);
                entries += load(&mut b, &format!("ut1/{stem}"), &path, category)?;
            }
        } else {
            let (path, category) = arg.rsplit_once('=').ok_or("a list is PATH=CATEGORY")?;
            let category = Category::from_name(category).ok_or("unknown category")?;
            entries += load(&mut b, path, Path::new(path), category)?;
        }
    }
    let policy = schoolgate_classifier::shared(b.build()?);
    eprintln!(
        "policy: {entries} list entries, {} distinct names, built in {:.1} s",
        policy.load().stats().domains,
        started.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = Arc::clone(policy.load().config());
        let shutdown = CancellationToken::new();
        let store: Arc<dyn EventStore> = if discard_events {
            Arc::new(Discard)
        } else {
            schoolgate_events::open_store(&config.store)?
        };
        // The pipeline stops after the server, so the events the server still
        // holds reach the store.
        let pipeline_shutdown = CancellationToken::new();
        let tuning = PipelineTuning {
            journal,
            ..PipelineTuning::default()
        };
        let (events, pipeline) =
            Pipeline::start_with(&config.store, store, pipeline_shutdown.clone(), tuning)?;
        let filter = DnsFilter::new(Arc::clone(&policy), events);
        let server = DnsServer::bind(Arc::clone(&filter), &config.listen.dns)?;
        let port = server.local_addrs().first().map_or(0, |a| a.port());
        let token = shutdown.clone();
        let serving = tokio::spawn(async move { server.run(token).await });
        println!("ready {port}");
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        shutdown.cancel();
        serving.await??;
        pipeline_shutdown.cancel();
        pipeline.join().await;
        eprintln!("{}", serde_json::to_string(&filter.stats())?);
        Ok::<(), Error>(())
    })
}

/// A store that takes every batch and keeps nothing.
#[derive(Debug)]
struct Discard;

#[async_trait::async_trait]
impl EventStore for Discard {
    fn name(&self) -> &'static str {
        "discard"
    }

    async fn insert(&self, _batch: &Batch) -> Result<(), StoreError> {
        Ok(())
    }

    async fn flagged(
        &self,
        _q: &FlaggedQuery,
        _p: &Purpose,
    ) -> Result<Vec<AccessEvent>, StoreError> {
        Ok(Vec::new())
    }

    async fn search(&self, _: &EventSearch, _: &Purpose) -> Result<Vec<AccessEvent>, StoreError> {
        Ok(Vec::new())
    }

    async fn timeline(
        &self,
        _s: &Subject,
        _around: jiff::Timestamp,
        _minutes: i64,
        _p: &Purpose,
    ) -> Result<Vec<AccessEvent>, StoreError> {
        Ok(Vec::new())
    }

    async fn event(
        &self,
        _id: schoolgate_events::Ulid,
        _p: &Purpose,
    ) -> Result<Option<AccessEvent>, StoreError> {
        Ok(None)
    }

    async fn counts(
        &self,
        _p: &Period,
        _g: GroupBy,
        _school: Option<&str>,
    ) -> Result<Vec<Count>, StoreError> {
        Ok(Vec::new())
    }

    async fn top_blocked_hosts(
        &self,
        _p: &Period,
        _n: usize,
        _school: Option<&str>,
    ) -> Result<Vec<HostCount>, StoreError> {
        Ok(Vec::new())
    }

    async fn bypass_attempts(
        &self,
        _p: &Period,
        _school: Option<&str>,
    ) -> Result<Vec<BypassAttempts>, StoreError> {
        Ok(Vec::new())
    }

    async fn export_csv(
        &self,
        _p: &Period,
        _f: &ExportFilter,
        _out: &mut (dyn std::io::Write + Send),
        _purpose: &Purpose,
    ) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn totals(&self, _p: &Period, _school: Option<&str>) -> Result<Totals, StoreError> {
        Ok(Totals::default())
    }

    async fn purge(&self, _now: jiff::Timestamp) -> Result<PurgeReport, StoreError> {
        Ok(PurgeReport::default())
    }
}
