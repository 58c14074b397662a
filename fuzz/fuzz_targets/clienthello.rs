#![no_main]
//! The transparent HTTPS port reads a ClientHello's SNI from whatever a client
//! sends: never a panic, and a name it returns is one the classifier can take.

use libfuzzer_sys::fuzz_target;
use schoolgate_proxy::clienthello::{HelloError, MAX_HELLO, parse};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(hello) => {
            assert!(hello.len <= data.len(), "consumed more than given");
            if let Some(sni) = hello.sni {
                assert!(!sni.is_empty());
                assert_eq!(sni, sni.to_ascii_lowercase(), "SNI is lowercased");
            }
        }
        Err(HelloError::Incomplete(n)) => {
            assert!(n > data.len(), "asks for no more than it has");
            assert!(n <= MAX_HELLO, "asks for more than the cap");
        }
        Err(_) => {}
    }
});
