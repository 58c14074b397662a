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
        let rest = match rest.bytes().position(|c| c == b'#') {
            Some(i) => &rest[..i],
            None => rest,
        };
        let auth_end = rest
            .bytes()
            .position(|c| c == b'/' || c == b'?')
            .unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        // Drop any `user:pass@`.
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = split_host_port(authority);
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
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
