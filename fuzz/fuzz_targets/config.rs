#![no_main]
//! Any config text: a config, or errors that say where; never a panic.

use libfuzzer_sys::fuzz_target;
use schoolgate_classifier::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse("fuzz.toml", text) {
        assert!(!e.to_string().is_empty(), "an error says something");
    }
});
