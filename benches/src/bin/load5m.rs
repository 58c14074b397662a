//! Load and compile time, and resident memory, for every real list plus a
//! synthetic list of N domains (default 5 million).
//!
//!     cargo run --release -p schoolgate-benches --bin load5m [-- N]

use std::time::Instant;

use anyhow::Result;
use schoolgate_benches::{compile, config_with_all_lists, rss, synthetic_list, synthetic_source};

fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(Ok(5_000_000), |s| s.parse())?;
    let dir = std::env::temp_dir().join("schoolgate-bench");
    let path = synthetic_list(&dir, n)?;
    let (rss0, _) = rss();
    let extra = synthetic_source(path);
    let started = Instant::now();
    let policy = compile(config_with_all_lists(&[extra])?)?;
    let took = started.elapsed();
    let (rss1, peak) = rss();
    let stats = policy.stats();
    println!(
        "loaded {} domains + {} URL prefixes ({} synthetic) in {:.2} s; \
         RSS {:.0} MB (peak {:.0} MB, {:.0} MB before loading)",
        stats.domains,
        stats.urls,
        n,
        took.as_secs_f64(),
        rss1 as f64 / 1e6,
        peak as f64 / 1e6,
        rss0 as f64 / 1e6
    );
    Ok(())
}
