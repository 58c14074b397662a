#![no_main]
//! A spool directory as a crash or a bad disk could leave it (any ledger, any
//! segment bytes): opening it and replaying every record ends, returns only
//! records whose checksum matched, and never panics.

use libfuzzer_sys::fuzz_target;
use schoolgate_events::spool::{Spool, SpoolOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (ledger, segment) = rest.split_at(usize::from(split).min(rest.len()));
    let dir = tempdir("spool");
    std::fs::write(dir.join("00000000000000000001.seg"), segment).expect("segment");
    if !ledger.is_empty() {
        std::fs::write(dir.join("ledger"), ledger).expect("ledger");
    }
    let options = SpoolOptions {
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
        fsync: false,
    };
    if let Ok(spool) = Spool::open(&dir, options) {
        // Each record takes at least its 8-byte header and one byte.
        for _ in 0..=segment.len() / 9 {
            match spool.read_next() {
                Ok(Some(record)) => {
                    assert!(!record.payload.is_empty(), "a record is never empty");
                    assert!(
                        record.payload.len() <= segment.len(),
                        "no more than was on disk"
                    );
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});

fn tempdir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("schoolgate-fuzz-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
