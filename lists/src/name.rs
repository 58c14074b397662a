//! Host names as the index wants them.
//!
//! Every list format ends up here: a name is lowercased ASCII with no surrounding
//! blanks, no trailing dot and no leading `*.` or `.` (a wildcard means "this name
//! and its subdomains", which is how every entry matches anyway). Non-ASCII names
//! become punycode; literal IPv4 and IPv6 addresses are names too.
//!
//! The hot path is a name that is already normal (nearly every line of a real
//! list): one pass over its bytes and it is returned borrowed, without a copy.
//! Only a name that must change is written into the caller's reused `scratch`.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use idna::AsciiDenyList;

/// The longest host name DNS can carry (RFC 1035, in its dotted text form).
pub const MAX_NAME_LEN: usize = 253;

/// The longest label DNS can carry (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Normalises one host name, borrowing from `raw` when it is already normal.
///
/// The error is the message for the line's report.
pub(crate) fn normalise_host<'a>(raw: &'a str, scratch: &'a mut String) -> Result<&'a str, String> {
    let name = strip_decorations(raw);
    if name.is_empty() {
        return Err(format!("`{}` has no host name in it", shown(raw.trim())));
    }

    // The common name is settled by one branch-free pass that ORs together what
    // kind of bytes it holds; only an odd byte sends it down the slow road.
    let bytes = name.as_bytes();
    let kinds = bytes
        .iter()
        .fold(0, |kinds, &b| kinds | BYTE_KIND[usize::from(b)]);
    if kinds & ODD != 0 {
        return normalise_odd(name, scratch);
    }
    let mut label_start = 0;
    for dot in memchr::memchr_iter(b'.', bytes) {
        check_label(name, label_start, dot)?;
        label_start = dot + 1;
    }
    check_label(name, label_start, bytes.len())?;
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "`{}` is {} characters long; a host name is at most {MAX_NAME_LEN}",
            shown(name),
            name.len()
        ));
    }

    // A name ending in an all-digit label can only be an IPv4 address: no TLD is
    // numeric, and `1.2.3` or `300.1.1.1` must not slip in as a name that a
    // resolver would read as an address.
    let last_label = &bytes[label_start..];
    if last_label.iter().all(u8::is_ascii_digit) && name.parse::<Ipv4Addr>().is_err() {
        return Err(format!(
            "`{}` ends in a numeric label but is not an IPv4 address",
            shown(name)
        ));
    }

    if kinds & UPPER != 0 {
        scratch.clear();
        scratch.push_str(name);
        scratch.make_ascii_lowercase();
        Ok(scratch)
    } else {
        Ok(name)
    }
}

/// Removes what lists put around a name that does not change what it matches.
/// Lines arrive trimmed; fields of a hosts line are split on ASCII blanks.
fn strip_decorations(raw: &str) -> &str {
    let name = raw.trim_ascii();
    let name = name
        .strip_prefix("*.")
        .or_else(|| name.strip_prefix('.'))
        .unwrap_or(name);
    name.strip_suffix('.').unwrap_or(name)
}

/// Bits of [`BYTE_KIND`]: an uppercase letter (to fold), or an odd byte (`:` of
/// an IPv6 address, `[`, non-ASCII, or a character no host name has). Lowercase
/// letters, digits, `-`, `_` and `.` are 0.
const UPPER: u8 = 1;
const ODD: u8 = 2;

static BYTE_KIND: [u8; 256] = {
    let mut table = [ODD; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => 0,
            b'A'..=b'Z' => UPPER,
            _ => ODD,
        };
        b += 1;
    }
    table
};

/// A name with an odd byte: an IPv6 literal, an IDN, or an error at that byte.
#[cold]
fn normalise_odd<'a>(name: &'a str, scratch: &'a mut String) -> Result<&'a str, String> {
    let bytes = name.as_bytes();
    let Some(at) = bytes
        .iter()
        .position(|&b| BYTE_KIND[usize::from(b)] & ODD != 0)
    else {
        return Err(format!(
            "`{}` could not be read as a host name",
            shown(name)
        ));
    };
    match bytes[at] {
        b':' => normalise_ipv6(name, scratch),
        b'[' if at == 0 => normalise_ipv6(name, scratch),
        0x80.. => normalise_idn(name, scratch),
        b => Err(bad_character(name, b)),
    }
}

#[inline]
fn check_label(name: &str, start: usize, end: usize) -> Result<(), String> {
    // `len - 1` wraps for an empty label: one compare checks both limits.
    if (end - start).wrapping_sub(1) >= MAX_LABEL_LEN {
        return Err(label_problem(name, start, end));
    }
    Ok(())
}

#[cold]
fn label_problem(name: &str, start: usize, end: usize) -> String {
    let len = end - start;
    if len == 0 {
        return format!("empty label in `{}`", shown(name));
    }
    let label = name.get(start..end).unwrap_or(name);
    format!(
        "label `{}` is {len} characters long; a label is at most {MAX_LABEL_LEN}",
        shown(label)
    )
}

/// IPv6 literals are written in many equivalent ways; the index compares text, so
/// they are stored in the one form `Ipv6Addr` prints.
fn normalise_ipv6<'a>(name: &'a str, scratch: &'a mut String) -> Result<&'a str, String> {
    let inner = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    let Ok(addr) = inner.parse::<Ipv6Addr>() else {
        // `host:8080` is the common mistake, worth its own message.
        if let Some((host, port)) = name.split_once(':')
            && !host.contains(':')
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!(
                "`{}` has a port number; list the host name alone",
                shown(name)
            ));
        }
        return Err(format!("`{}` is not a valid IPv6 address", shown(name)));
    };
    scratch.clear();
    // Writing into a String cannot fail.
    let _ = write!(scratch, "{addr}");
    if scratch.as_str() == name {
        Ok(name)
    } else {
        Ok(scratch)
    }
}

/// Non-ASCII names are rare; this path may allocate.
fn normalise_idn<'a>(name: &str, scratch: &'a mut String) -> Result<&'a str, String> {
    // The URL deny list rejects what can never be in a host (`/`, `?`, `@`, blanks,
    // ...); underscores pass, as they do for ASCII names.
    let ascii = idna::domain_to_ascii_cow(name.as_bytes(), AsciiDenyList::URL).map_err(|_| {
        format!(
            "`{}` is not a valid internationalised domain name",
            shown(name)
        )
    })?;
    if !ascii.is_ascii() {
        return Err(format!(
            "`{}` is not a valid internationalised domain name",
            shown(name)
        ));
    }
    let mut inner_scratch = String::new();
    let normal = normalise_host(&ascii, &mut inner_scratch)
        .map_err(|why| format!("`{}` becomes {why}", shown(name)))?;
    scratch.clear();
    scratch.push_str(normal);
    Ok(scratch)
}

#[cold]
fn bad_character(name: &str, byte: u8) -> String {
    let name = shown(name);
    match byte {
        b'*' => format!("wildcard in `{name}`: a `*` is only understood as a leading `*.`"),
        b'/' => format!("`{name}` has a path; a host name cannot contain `/`"),
        b if b.is_ascii_graphic() => format!(
            "character `{}` in `{name}` is not allowed in a host name (a-z, 0-9, `-`, `_`, `.`)",
            char::from(b)
        ),
        b => format!(
            "character {:?} in `{}` is not allowed in a host name (a-z, 0-9, `-`, `_`, `.`)",
            char::from(b),
            name.escape_debug()
        ),
    }
}

/// Quotes input in a message without letting a 4 KiB line swamp the report.
pub(crate) fn shown(text: &str) -> String {
    const LIMIT: usize = 80;
    match text.char_indices().nth(LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, String> {
        let mut scratch = String::new();
        normalise_host(raw, &mut scratch).map(str::to_owned)
    }

    #[test]
    fn normal_names_are_borrowed_not_copied() {
        let mut scratch = String::new();
        let raw = "ads.example.co.uk";
        let out = normalise_host(raw, &mut scratch).expect("valid");
        assert!(std::ptr::eq(out, raw));
    }

    #[test]
    fn decorations_are_stripped_and_case_folded() {
        assert_eq!(norm("  Example.COM.  ").as_deref(), Ok("example.com"));
        assert_eq!(norm("*.example.com").as_deref(), Ok("example.com"));
        assert_eq!(norm(".example.com").as_deref(), Ok("example.com"));
        assert_eq!(
            norm("_dmarc.example.com").as_deref(),
            Ok("_dmarc.example.com")
        );
    }

    #[test]
    fn addresses_are_names() {
        assert_eq!(norm("192.0.2.1").as_deref(), Ok("192.0.2.1"));
        assert_eq!(norm("2001:DB8:0:0::1").as_deref(), Ok("2001:db8::1"));
        assert_eq!(norm("[2001:db8::1]").as_deref(), Ok("2001:db8::1"));
        assert_eq!(
            norm("1.2.3"),
            Err("`1.2.3` ends in a numeric label but is not an IPv4 address".into())
        );
        assert_eq!(
            norm("300.1.1.1"),
            Err("`300.1.1.1` ends in a numeric label but is not an IPv4 address".into())
        );
    }

    #[test]
    fn idn_becomes_punycode() {
        assert_eq!(
            norm("Bücher.example").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        assert_eq!(norm("*.пример.рф.").as_deref(), Ok("xn--e1afmkfd.xn--p1ai"));
    }

    #[test]
    fn limits_are_enforced_with_precise_messages() {
        let label = "a".repeat(64);
        assert_eq!(
            norm(&format!("{label}.com")),
            Err(format!(
                "label `{label}` is 64 characters long; a label is at most 63"
            ))
        );
        let long = ["abcdefghi"; 26].join(".");
        assert_eq!(long.len(), 259);
        let err = norm(&long).expect_err("too long");
        assert!(
            err.ends_with("is 259 characters long; a host name is at most 253"),
            "{err}"
        );
        assert_eq!(norm("a..com"), Err("empty label in `a..com`".into()));
        assert_eq!(norm("*."), Err("`*.` has no host name in it".into()));
        assert_eq!(
            norm("ex ample.com"),
            Err("character ' ' in `ex ample.com` is not allowed in a host name (a-z, 0-9, `-`, `_`, `.`)".into())
        );
        assert_eq!(
            norm("ads.*.example.com"),
            Err(
                "wildcard in `ads.*.example.com`: a `*` is only understood as a leading `*.`"
                    .into()
            )
        );
        assert_eq!(
            norm("example.com:8080"),
            Err("`example.com:8080` has a port number; list the host name alone".into())
        );
    }

    #[test]
    fn shown_truncates_long_input_on_a_char_boundary() {
        let long = "é".repeat(100);
        let out = shown(&long);
        assert_eq!(out.chars().count(), 81);
        assert!(out.ends_with('…'));
    }
}
