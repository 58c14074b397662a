#![no_main]
//! The first request head on a proxy connection, checked before hyper sees it.

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use schoolgate_proxy::head::check;
use schoolgate_proxy::view::Limits;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_header_bytes: 8 * 1024,
        max_headers: 64,
        max_request_line: 8 * 1024,
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        max_connections_per_client: 1,
        max_connections: 1,
    };
    if let Ok(false) = check(data, &limits) {
        // Waiting for more is only right while under the size limit.
        assert!(data.len() <= limits.max_header_bytes + limits.max_request_line);
    }
});
