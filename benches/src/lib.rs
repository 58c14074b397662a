//! Shared helpers for schoolgate's benchmarks: where the real lists are, loading
//! all of them at once, and a synthetic list of any size.
//!
//! # Layout
//! - `benches/classifier.rs`: criterion, `decide()` latency on every real list
//!   and on 5 M synthetic domains
//! - `src/bin/load5m.rs`: load/compile time and resident memory for 5 M domains
//! - `src/bin/keyword_quality.rs`: recall of the keyword rules per category
//!   against false positives on popular domains
//! - `compare/`: the side-by-side harness against Squid, e2guardian, squidGuard,
//!   unbound and dnsmasq

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use schoolgate_classifier::config::{ListFormat, ListSource};
use schoolgate_classifier::{Config, Policy};

/// `../shared/data` beside the repository.
pub fn shared_data() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    if !dir.join("lists").is_dir() {
        bail!(
            "the shared data is missing: expected {} (the lists and benign domains \
             beside the repository)",
            dir.display()
        );
    }
    Ok(dir)
}

/// A configuration with one role that blocks every category, fed by every list in
/// `../shared/data` (the UT1 folder, Block List Project, porntop) plus `extra`.
pub fn config_with_all_lists(extra: &[ListSource]) -> Result<Config> {
    let data = shared_data()?;
    let text = r#"
[policy]
default_role = "pupil"
[roles.pupil]
block = ["pornography", "adult", "gambling", "drugs", "proxy", "vpn", "doh", "games",
         "social-networking", "malware", "phishing", "piracy", "dating", "violence"]
flag = { self-harm = "high", suicide = "high" }
safesearch = "strict"
"#;
    let mut config = Config::parse("bench.toml", text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let source = |name: &str, format, category, path: PathBuf| ListSource {
        name: name.into(),
        format,
        path: Some(path),
        url: None,
        category,
        only: Vec::new(),
        update_hours: None,
    };
    use schoolgate_classifier::Category as C;
    config.lists = vec![
        source("ut1", ListFormat::Ut1, None, data.join("lists/ut1")),
        source(
            "blp-drugs",
            ListFormat::Domains,
            Some(C::Drugs),
            data.join("lists/blocklistproject/drugs.txt.gz"),
        ),
        source(
            "blp-gambling",
            ListFormat::Domains,
            Some(C::Gambling),
            data.join("lists/blocklistproject/gambling.txt.gz"),
        ),
        source(
            "blp-piracy",
            ListFormat::Domains,
            Some(C::Piracy),
            data.join("lists/blocklistproject/piracy.txt.gz"),
        ),
        source(
            "porntop",
            ListFormat::Domains,
            Some(C::Pornography),
            data.join("lists/porntop/adult.txt.gz"),
        ),
    ];
    config.lists.extend_from_slice(extra);
    Ok(config)
}

/// Compiles a policy from a configuration, failing if any list could not be read.
pub fn compile(config: Config) -> Result<Policy> {
    let (policy, report) =
        schoolgate_lists::load::compile(config, Path::new("."), Path::new("/nonexistent"))?;
    if !report.is_complete() {
        bail!("lists failed: {}", report.failures().join("; "));
    }
    Ok(policy)
}

/// A `[[lists]]` source for a synthetic list file (filed under malware).
pub fn synthetic_source(path: PathBuf) -> ListSource {
    ListSource {
        name: "synthetic".into(),
        format: ListFormat::Domains,
        path: Some(path),
        url: None,
        category: Some(schoolgate_classifier::Category::Malware),
        only: Vec::new(),
        update_hours: None,
    }
}

/// Writes (once) a synthetic list of `n` distinct domains to `dir`, and returns
/// its path. Names look like real ones: words, digits, a few TLDs, some subdomains.
pub fn synthetic_list(dir: &Path, n: usize) -> Result<PathBuf> {
    let path = dir.join(format!("synthetic-{n}.txt"));
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    for i in 0..n {
        writeln!(out, "{}", synthetic_name(i))?;
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

const WORDS: &[&str] = &[
    "blue", "cloud", "media", "shop", "news", "star", "data", "tech", "play", "info", "net", "web",
    "home", "smart", "green", "fast", "city", "best", "world", "live",
];
const TLDS: &[&str] = &[
    "com", "net", "org", "co.uk", "info", "xyz", "ru", "de", "fr", "io",
];

/// The `i`-th synthetic name (deterministic, distinct for distinct `i`).
pub fn synthetic_name(i: usize) -> String {
    let a = WORDS[i % WORDS.len()];
    let b = WORDS[(i / WORDS.len()) % WORDS.len()];
    let tld = TLDS[(i / 7) % TLDS.len()];
    if i.is_multiple_of(5) {
        format!("cdn{}.{a}{b}{i:x}.{tld}", i % 13)
    } else {
        format!("{a}-{b}{i:x}.{tld}")
    }
}

/// The popular domains (`rank,domain` lines) from `benign/top.txt.gz`.
pub fn popular_domains() -> Result<Vec<String>> {
    let path = shared_data()?.join("benign/top.txt.gz");
    let file = std::fs::File::open(&path).with_context(|| path.display().to_string())?;
    let reader = BufReader::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line?;
        if let Some((_, d)) = line.split_once(',') {
            out.push(d.trim().to_owned());
        }
    }
    Ok(out)
}

/// Resident memory now and at peak, in bytes, from /proc/self/status.
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
