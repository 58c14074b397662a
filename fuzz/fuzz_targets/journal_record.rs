#![no_main]
//! A journal record found at start-up, whatever a crash or a bad disk left in
//! it: an event or a decode error (which goes to the dead-letter file).

use libfuzzer_sys::fuzz_target;
use schoolgate_events::journal::Record;

fuzz_target!(|data: &[u8]| {
    let Some((&format, payload)) = data.split_first() else {
        return;
    };
    let record = Record {
        format: u32::from(format % 4),
        payload: payload.to_vec(),
    };
    let _ = record.decode();
});
