//! Building ClickHouse SQL text safely.
//!
//! Debian's 18.16 server has no server-side query parameters, so every value that
//! reaches a query is written as a literal by [`string`] (or is a number we
//! formatted ourselves). Queries are sent with the client's `query_raw`, so a `?`
//! inside a value is never taken for a bind placeholder.

use std::fmt::Write;
use std::net::IpAddr;

/// A string literal: `'...'` with `\` and `'` escaped, and every control byte
/// written as `\xNN`, so no value can end the literal or smuggle a statement.
pub fn string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// An identifier (database or table name from the configuration):
/// `` `...` `` with `` ` `` and `\` escaped.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('`');
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '`' => out.push_str("\\`"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('`');
    out
}

/// The 16 bytes stored for an address: IPv4 as IPv4-mapped IPv6 (the layout of
/// both `FixedString(16)` on 18.16 and the `IPv6` type on newer servers).
pub fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Back from the stored bytes; IPv4-mapped addresses become IPv4 again.
pub fn ip_from_bytes(bytes: [u8; 16]) -> IpAddr {
    IpAddr::V6(std::net::Ipv6Addr::from(bytes)).to_canonical()
}

/// An address literal comparable with the `client_ip` column of either schema:
/// `unhex('...')` (16 bytes, compares with `FixedString(16)` on 18.16), or
/// `toIPv6('addr')` for the `IPv6` column of newer servers.
pub fn ip_literal(ip: IpAddr, typed_ipv6: bool) -> String {
    let bytes = ip_bytes(ip);
    if typed_ipv6 {
        let v6 = std::net::Ipv6Addr::from(bytes);
        format!("toIPv6({})", string(&v6.to_string()))
    } else {
        let mut hex = String::with_capacity(32);
        for b in bytes {
            let _ = write!(hex, "{b:02x}");
        }
        format!("unhex('{hex}')")
    }
}

/// `Code: 27, e.displayText() = ...` (18.16) or `Code: 27. DB::Exception: ...`
/// (newer): the server's error code, when the message has one.
pub fn error_code(message: &str) -> Option<i32> {
    let at = message.find("Code: ")? + "Code: ".len();
    let digits: String = message[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(string("plain"), "'plain'");
        assert_eq!(string("it's"), r"'it\'s'");
        assert_eq!(string(r"back\slash"), r"'back\\slash'");
        assert_eq!(string(r"\'"), r"'\\\''");
        assert_eq!(string("a\nb\0c\t"), r"'a\x0Ab\x00c\x09'");
        assert_eq!(string("?"), "'?'");
        assert_eq!(string("ünïcødé"), "'ünïcødé'");
        // An attempt to close the literal and add a statement stays inside it.
        assert_eq!(
            string("x'); DROP TABLE events; --"),
            r"'x\'); DROP TABLE events; --'"
        );
    }

    #[test]
    fn identifiers_escape_backticks() {
        assert_eq!(ident("schoolgate"), "`schoolgate`");
        assert_eq!(ident("a`b"), r"`a\`b`");
    }

    #[test]
    fn error_codes_of_both_message_styles() {
        assert_eq!(
            error_code("Code: 27, e.displayText() = DB::Exception: Cannot parse input"),
            Some(27)
        );
        assert_eq!(
            error_code("Code: 53. DB::Exception: Type mismatch"),
            Some(53)
        );
        assert_eq!(error_code("connection refused"), None);
    }

    #[test]
    fn addresses_round_trip_through_16_bytes() {
        for ip in ["10.1.2.3", "2001:db8::1", "::1", "0.0.0.0"] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_from_bytes(ip_bytes(ip)), ip);
        }
        assert_eq!(
            ip_literal("10.0.0.1".parse().expect("ip"), false),
            "unhex('00000000000000000000ffff0a000001')"
        );
    }
}
