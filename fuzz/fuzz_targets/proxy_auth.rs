#![no_main]
//! A `Proxy-Authorization` value from any client, and any users file (an MIS
//! export): credentials or nothing, a directory or an error; never a panic.

use libfuzzer_sys::fuzz_target;
use schoolgate_proxy::Users;
use schoolgate_proxy::users::parse_basic;

fuzz_target!(|data: &[u8]| {
    if let Some((user, _password)) = parse_basic(data) {
        assert!(!user.contains(':'), "the user name ends at the first colon");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Users::parse("users.toml", text) {
            assert!(!e.to_string().is_empty());
        }
    }
});
