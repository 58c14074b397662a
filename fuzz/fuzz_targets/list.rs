#![no_main]
//! Any list file in every format, gzipped or not: entries and a report; never
//! a panic, and every entry is a name the classifier can index.

use libfuzzer_sys::fuzz_target;
use schoolgate_lists::{Format, read_bytes};

fuzz_target!(|data: &[u8]| {
    for format in [
        Format::Domains,
        Format::Hosts,
        Format::Adblock,
        Format::Urls,
        Format::Ut1,
    ] {
        let _ = read_bytes("fuzz.txt", data, format, &mut |_entry| {});
    }
});
