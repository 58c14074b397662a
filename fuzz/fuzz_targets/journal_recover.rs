#![no_main]
//! A journal segment as a killed process could leave it: recovery reads what
//! was committed with a matching checksum, hands each back (decoded or for the
//! dead-letter file), and never panics.

use libfuzzer_sys::fuzz_target;
use schoolgate_events::journal::recover;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("schoolgate-fuzz-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("00000000000000000001.jnl"), data).expect("segment");
    if let Ok(recovered) = recover(&dir) {
        for record in &recovered.records {
            assert!(
                record.payload.len() <= data.len(),
                "no more than was on disk"
            );
            let _ = record.decode();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});
