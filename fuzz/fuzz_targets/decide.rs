#![no_main]
//! Any URL or host a browser, a CONNECT or an SNI could name, for every role:
//! a verdict; never a panic.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use schoolgate_classifier::{Policy, Request};

#[path = "common.rs"]
mod common;

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("schoolgate-fuzz-decide-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        common::policy(&dir)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let p = policy();
    let at = jiff::Timestamp::from_second(1_764_000_000).expect("time");
    for (role, _) in p.roles() {
        let _ = p.decide(&Request::url(role, text, at));
        let _ = p.decide(&Request::host(role, text, at));
    }
});
