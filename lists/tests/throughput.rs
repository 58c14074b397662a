use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use schoolgate_lists::{Format, read_file};

const LINES: u64 = 5_000_000;

/// The brief: five million lines in well under two seconds, in a release build.
/// Run with `cargo test -p schoolgate-lists --release -- throughput`.
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "timing is only meaningful in release builds"
)]
fn five_million_lines_in_well_under_two_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.txt");
    let mut out = BufWriter::new(std::fs::File::create(&path).expect("create"));
    for i in 0..LINES {
        // Mostly normal names, as real lists are; some need lowercasing.
        if i % 100 == 0 {
            writeln!(out, "Host{i}.Example-{}.COM", i % 977).expect("write");
        } else {
            writeln!(out, "host{i}.example-{}.com", i % 977).expect("write");
        }
    }
    out.into_inner().expect("flush");

    let start = Instant::now();
    let mut bytes = 0usize;
    let report = read_file(&path, Format::Domains, &mut |e| bytes += e.host().len()).expect("read");
    let elapsed = start.elapsed();
    assert_eq!(report.entries, LINES);
    assert!(bytes > 0);
    eprintln!("{LINES} lines in {elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(1500),
        "{LINES} lines took {elapsed:?}"
    );
}
