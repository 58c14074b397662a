//! The facts about one request that the classifier decides on.

use jiff::Timestamp;

use crate::policy::RoleId;

/// One request, as the DNS filter or the proxy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub role: RoleId,
    /// Host name or IP literal, without port (the DNS name, the CONNECT host, the
    /// TLS SNI or the HTTP Host).
    pub host: &'a str,
    /// The path, when visible (plain HTTP, inspected HTTPS), without the query.
    pub path: Option<&'a str>,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// When the request was made (schedules apply in school time).
    pub at: Timestamp,
}

impl<'a> Request<'a> {
    /// A host-only request (DNS, CONNECT, SNI).
    pub fn host(role: RoleId, host: &'a str, at: Timestamp) -> Request<'a> {
        Request {
            role,
            host,
            path: None,
            query: None,
            at,
        }
    }

    /// Parses `http://host:port/path?query`, `host/path` or a bare `host` (as
    /// typed into `schoolgate check` or seen in an absolute-form request line).
    pub fn url(role: RoleId, url: &'a str, at: Timestamp) -> Request<'a> {
        let parts = UrlParts::parse(url);
        Request {
            role,
            host: parts.host,
            path: parts.path,
            query: parts.query,
            at,
        }
    }
}

/// A URL split into the parts the classifier needs; no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub host: &'a str,
    pub port: Option<u16>,
    pub path: Option<&'a str>,
    pub query: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    pub fn parse(url: &'a str) -> UrlParts<'a> {
        let url = url.trim();
        // The scheme ends at the first `://` before any `/`, `?` or `#`.
        let b = url.as_bytes();
        let scheme_end = b
            .iter()
            .position(|&c| matches!(c, b':' | b'/' | b'?' | b'#'))
            .filter(|&i| {
                b[i] == b':' && b.get(i + 1) == Some(&b'/') && b.get(i + 2) == Some(&b'/')
            });
        let rest = scheme_end.map_or(url, |i| &url[i + 3..]);
        // The authority ends at the first `/`, `?` or `#`, the path at the first
        // `?` or `#` after it, the query at the first `#` after that; everything
        // from the first `#` on is the fragment.
        let auth_end = first_of(rest.as_bytes(), [b'/', b'?', b'#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        let (tail, path_end) = match first_of(tail.as_bytes(), [b'?', b'#']) {
            Some(i) if tail.as_bytes()[i] == b'#' => (&tail[..i], i),
            Some(i) => match first_of(&tail.as_bytes()[i..], [b'#']) {
                Some(j) => (&tail[..i + j], i),
                None => (tail, i),
            },
            None => (tail, tail.len()),
        };
        // Drop any `user:pass@`.
        let authority = match first_of(authority.as_bytes(), [b'@']) {
            Some(_) => authority.rsplit('@').next().unwrap_or(authority),
            None => authority,
        };
        let (host, port) = split_host_port(authority);
        let (path, query) = if path_end < tail.len() {
            (&tail[..path_end], Some(&tail[path_end + 1..]))
        } else {
            (tail, None)
        };
        let path = if path.is_empty() {
            if query.is_some() || !tail.is_empty() {
                Some("/")
            } else {
                None
            }
        } else {
            Some(path)
        };
        UrlParts {
            host,
            port,
            path,
            query,
        }
    }
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]`.
pub fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    if authority.starts_with('[') {
        if let Some(end) = authority.find(']') {
            let port = authority[end + 1..]
                .strip_prefix(':')
                .and_then(|p| p.parse().ok());
            return (&authority[..=end], port);
        }
        return (authority, None);
    }
    // A port only after the one colon (more would be an unbracketed IPv6 address).
    let b = authority.as_bytes();
    match first_of(b, [b':']) {
        Some(i) if first_of(&b[i + 1..], [b':']).is_none() => match authority[i + 1..].parse() {
            Ok(port) => (&authority[..i], Some(port)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

/// Where the first of the `needles` is in `hay`, eight bytes at a time: a URL
/// is parsed (and its path searched for `%`) on every request, and
/// byte-at-a-time scans were most of the parse's cost.
pub(crate) fn first_of<const N: usize>(hay: &[u8], needles: [u8; N]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // A byte of `x` is zero where the word holds the needle; the lowest such
        // byte is flagged exactly (a borrow can only flag bytes above it).
        let mut found = 0;
        for n in needles {
            let x = word ^ (ONES * u64::from(n));
            found |= x.wrapping_sub(ONES) & !x & HIGH;
        }
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let rest = chunks.remainder();
    rest.iter()
        .position(|c| needles.contains(c))
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    /// The byte-at-a-time parse this module had before [`first_of`].
    fn parse_reference(url: &str) -> UrlParts<'_> {
        let url = url.trim();
        let b = url.as_bytes();
        let scheme_end = b
            .iter()
            .position(|&c| matches!(c, b':' | b'/' | b'?' | b'#'))
            .filter(|&i| {
                b[i] == b':' && b.get(i + 1) == Some(&b'/') && b.get(i + 2) == Some(&b'/')
            });
        let rest = scheme_end.map_or(url, |i| &url[i + 3..]);
        let rest = match rest.bytes().position(|c| c == b'#') {
            Some(i) => &rest[..i],
            None => rest,
        };
        let auth_end = rest
            .bytes()
            .position(|c| c == b'/' || c == b'?')
            .unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = if authority.starts_with('[') {
            split_host_port(authority)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => match p.parse() {
                    Ok(port) => (h, Some(port)),
                    Err(_) => (authority, None),
                },
                _ => (authority, None),
            }
        };
        let (path, query) = match tail.find('?') {
            Some(i) => (&tail[..i], Some(&tail[i + 1..])),
            None => (tail, None),
        };
        let path = if path.is_empty() {
            if query.is_some() || !tail.is_empty() {
                Some("/")
            } else {
                None
            }
        } else {
            Some(path)
        };
        UrlParts {
            host,
            port,
            path,
            query,
        }
    }

    proptest::proptest! {
        /// The word-at-a-time parse splits any URL as the byte-at-a-time one did.
        #[test]
        fn parses_as_byte_at_a_time(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "http://", "https://", "u:p@", "@", "[::1]", ":8080", ":", "/", "?",
                        "#", "=", "&", " ", "www.example.com", "/a/b", "q=1",
                    ])
                    .prop_map(String::from),
                    "[a-z0-9.]{0,9}",
                ],
                0..10,
            )
        ) {
            let url = pieces.concat();
            proptest::prop_assert_eq!(UrlParts::parse(&url), parse_reference(&url));
        }
    }

    #[test]
    fn finds_the_first_needle() {
        let hay = b"0123456789abcdef/x?y#z";
        for i in 0..hay.len() {
            let expected = hay[i..].iter().position(|c| b"/?#".contains(c));
            assert_eq!(first_of(&hay[i..], [b'/', b'?', b'#']), expected);
        }
        assert_eq!(first_of(b"", [b'#']), None);
    }

    #[test]
    fn parses_urls() {
        let p = UrlParts::parse("https://user:pw@Www.Example.com:8443/a/b?q=1#frag");
        assert_eq!(
            p,
            UrlParts {
                host: "Www.Example.com",
                port: Some(8443),
                path: Some("/a/b"),
                query: Some("q=1")
            }
        );
        let p = UrlParts::parse("example.com");
        assert_eq!((p.host, p.path, p.query), ("example.com", None, None));
        let p = UrlParts::parse("example.com/x");
        assert_eq!((p.host, p.path), ("example.com", Some("/x")));
        let p = UrlParts::parse("http://[::1]:80/");
        assert_eq!((p.host, p.port, p.path), ("[::1]", Some(80), Some("/")));
        let p = UrlParts::parse("www.google.com?q=x");
        assert_eq!((p.path, p.query), (Some("/"), Some("q=x")));
    }
}
