//! Host names and the compact in-memory index of list entries.
//!
//! A domain entry covers the name and every subdomain; a URL entry covers a host
//! (and its subdomains) plus a path prefix. The index keys on a 64-bit xxh3 hash of
//! the name instead of the name itself, so five million entries fit in about
//! 140 MB; a hash collision could only make an unlisted name look listed (a wrong
//! block, about one in 10^12 lookups), never hide a listed one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;

use nohash_hasher::NoHashHasher;

/// Hash of a normalised name (lowercase, no trailing dot).
pub fn name_hash(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

type HashKeyed<V> = HashMap<u64, V, BuildHasherDefault<NoHashHasher<u64>>>;

/// Why a host name is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    #[error("empty host name")]
    Empty,
    #[error("host name longer than 253 characters")]
    TooLong,
    #[error("empty label in host name")]
    EmptyLabel,
    #[error("label longer than 63 characters")]
    LabelTooLong,
    #[error("character {0:?} is not allowed in a host name")]
    BadChar(char),
}

/// Lowercases and checks a host name (no port). IP literals pass through; an IPv6
/// literal may be bracketed. Borrowed when already normal, the common case.
pub fn normalize_host(host: &str) -> Result<Cow<'_, str>, HostError> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if plain_name_dots(host).is_some() {
        return Ok(Cow::Borrowed(host));
    }
    check_host(host)
}

/// [`normalize_host`] for any name (after the trailing dot is gone), byte by byte.
fn check_host(host: &str) -> Result<Cow<'_, str>, HostError> {
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => Ok(Cow::Owned(ip.to_string())),
            Err(_) => Err(HostError::BadChar('[')),
        };
    }
    if host.contains(':') {
        return match host.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => Ok(Cow::Owned(ip.to_string())),
            Err(_) => Err(HostError::BadChar(':')),
        };
    }
    if host.len() > 253 {
        return Err(HostError::TooLong);
    }
    let mut upper = false;
    let mut label = 0usize;
    for &b in host.as_bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => label += 1,
            b'A'..=b'Z' => {
                upper = true;
                label += 1
            }
            b'.' => {
                if label == 0 {
                    return Err(HostError::EmptyLabel);
                }
                label = 0;
                continue;
            }
            other => return Err(HostError::BadChar(char::from(other))),
        }
        if label > 63 {
            return Err(HostError::LabelTooLong);
        }
    }
    if label == 0 {
        return Err(HostError::EmptyLabel);
    }
    Ok(if upper {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// The bytes of a name in normal form: lowercase letters, digits, `-`, `_`, `.`.
const NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.');
        b += 1;
    }
    t
};

/// Where the dots are in a name that is already in normal form and short, or
/// `None` for any other name, which then takes the full check. Such a name has at
/// most 63 bytes (so no label can be too long), only [`NAME_BYTE`]s and no empty
/// label; bit `n - 1 - i` of the mask is set when byte `i` of the `n` is a dot
/// (the first byte is the highest bit). One pass without branches: most hosts
/// are such names.
fn plain_name_dots(host: &str) -> Option<u64> {
    let b = host.as_bytes();
    let n = b.len();
    if n == 0 || n > 63 {
        return None;
    }
    let mut plain = true;
    let mut dots = 0u64;
    for &c in b {
        plain &= NAME_BYTE[usize::from(c)];
        dots = dots << 1 | u64::from(c == b'.');
    }
    // A dot first, last or beside another leaves a label empty.
    let empty_label = dots & (1 | 1 << (n - 1) | dots >> 1) != 0;
    (plain && !empty_label).then_some(dots)
}

/// Checks a local allow/deny entry: `domain` or `domain/path-prefix`.
pub fn validate_entry(entry: &str) -> Result<(), String> {
    let (host, _path) = split_entry(entry);
    if entry.contains("://") {
        return Err(format!(
            "`{entry}`: write the entry without a scheme, e.g. \"example.com/path\""
        ));
    }
    normalize_host(host)
        .map(|_| ())
        .map_err(|e| format!("`{entry}`: {e}"))
}

/// Splits `host/path` into the host and the path (with its leading `/`).
pub fn split_entry(entry: &str) -> (&str, Option<&str>) {
    match entry.find('/') {
        Some(i) => (&entry[..i], Some(&entry[i..])),
        None => (entry, None),
    }
}

/// An IP literal ends in a digit (IPv4) or holds a colon (IPv6); a host name's
/// last label never is all digits, so most names skip the parse.
fn is_ip_literal(host: &str) -> bool {
    let b = host.as_bytes();
    (b.last().is_some_and(u8::is_ascii_digit) || b.contains(&b':'))
        && host.parse::<IpAddr>().is_ok()
}

/// The suffixes of a normalised host that a domain entry could match, longest
/// first: `a.b.c` → `a.b.c`, `b.c`, `c`. An IP literal yields only itself.
pub fn suffixes(host: &str) -> impl Iterator<Item = &str> {
    let ip = is_ip_literal(host);
    let mut next = Some(host);
    std::iter::from_fn(move || {
        let cur = next?;
        next = if ip {
            None
        } else {
            cur.bytes().position(|b| b == b'.').map(|i| &cur[i + 1..])
        };
        Some(cur)
    })
}

/// How specific a match is: the longer host match wins, and on the same host a URL
/// entry (longer path) beats a domain entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    pub host_len: usize,
    pub path_len: usize,
}

/// Domain and URL entries with a value each (a tag index for lists, the entry text
/// for local allow/deny).
#[derive(Debug, Clone)]
pub struct EntryIndex<V> {
    domains: HashKeyed<V>,
    urls: HashKeyed<Vec<(Box<str>, V)>>,
}

impl<V> Default for EntryIndex<V> {
    fn default() -> Self {
        EntryIndex {
            domains: HashKeyed::default(),
            urls: HashKeyed::default(),
        }
    }
}

impl<V> EntryIndex<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    pub fn url_count(&self) -> usize {
        self.urls.values().map(Vec::len).sum()
    }

    pub fn reserve(&mut self, additional: usize) {
        self.domains.reserve(additional);
    }

    /// Adds or merges a domain entry (already normalised).
    pub fn upsert_domain(&mut self, domain: &str, merge: impl FnOnce(Option<&V>) -> V) {
        let h = name_hash(domain);
        let v = merge(self.domains.get(&h));
        self.domains.insert(h, v);
    }

    /// Adds or merges a URL entry: `path` starts with `/`.
    pub fn upsert_url(&mut self, host: &str, path: &str, merge: impl FnOnce(Option<&V>) -> V) {
        let list = self.urls.entry(name_hash(host)).or_default();
        match list.iter_mut().find(|(p, _)| &**p == path) {
            Some((_, v)) => *v = merge(Some(v)),
            None => list.push((path.into(), merge(None))),
        }
    }

    /// Whether the index holds no entry at all (a role without allow or deny
    /// entries): lookups can be skipped.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.urls.is_empty()
    }

    /// Calls `f` for every entry matching the normalised `host` and optional
    /// `path`, with the matched suffix and how specific the match is.
    pub fn for_each_match<'s, 'h>(
        &'s self,
        host: &'h str,
        path: Option<&str>,
        f: impl FnMut(&'h str, Specificity, &'s V),
    ) {
        if self.is_empty() {
            return;
        }
        self.for_each_suffix_match(&HostSuffixes::new(host), path, f);
    }

    /// [`EntryIndex::for_each_match`] with the host's suffixes hashed already, so
    /// that one request looks up several indexes for the price of one hash walk.
    pub fn for_each_suffix_match<'s, 'h>(
        &'s self,
        host: &HostSuffixes<'h>,
        path: Option<&str>,
        mut f: impl FnMut(&'h str, Specificity, &'s V),
    ) {
        let has_urls = !self.urls.is_empty();
        for (suffix, h) in host.iter() {
            if let Some(v) = self.domains.get(&h) {
                f(
                    suffix,
                    Specificity {
                        host_len: suffix.len(),
                        path_len: 0,
                    },
                    v,
                );
            }
            if has_urls && let (Some(path), Some(list)) = (path, self.urls.get(&h)) {
                for (prefix, v) in list {
                    if path_has_prefix(path, prefix) {
                        f(
                            suffix,
                            Specificity {
                                host_len: suffix.len(),
                                path_len: prefix.len(),
                            },
                            v,
                        );
                    }
                }
            }
        }
    }

    /// The most specific matching entry, if any.
    pub fn best_match(&self, host: &str, path: Option<&str>) -> Option<(Specificity, &V)> {
        if self.is_empty() {
            return None;
        }
        self.best_suffix_match(&HostSuffixes::new(host), path)
    }

    /// [`EntryIndex::best_match`] with the host's suffixes hashed already.
    pub fn best_suffix_match(
        &self,
        host: &HostSuffixes<'_>,
        path: Option<&str>,
    ) -> Option<(Specificity, &V)> {
        let mut best: Option<(Specificity, &V)> = None;
        if self.is_empty() {
            return best;
        }
        self.for_each_suffix_match(host, path, |_, spec, v| {
            if best.as_ref().is_none_or(|(b, _)| spec > *b) {
                best = Some((spec, v));
            }
        });
        best
    }
}

/// A normalised host's [`suffixes`] with their [`name_hash`]es, longest first:
/// hashed once per request, looked up in every index.
#[derive(Clone, Debug)]
pub struct HostSuffixes<'h> {
    host: &'h str,
    /// Where each suffix starts in `host`, and its hash. Eight covers all but
    /// the rarest names without touching the heap.
    keys: smallvec::SmallVec<[(usize, u64); 8]>,
}

impl<'h> HostSuffixes<'h> {
    #[inline]
    pub fn new(host: &'h str) -> HostSuffixes<'h> {
        // The same suffixes as [`suffixes`]: a suffix starts after each dot.
        let mut keys = smallvec::SmallVec::new();
        keys.push((0, name_hash(host)));
        match plain_name_dots(host) {
            // An IP literal ends in a digit; other plain names are the common case.
            Some(mut dots) if !host.ends_with(|c: char| c.is_ascii_digit()) => {
                // The highest bit is the first dot: the longest suffix first.
                while dots != 0 {
                    let bit = 63 - dots.leading_zeros();
                    let start = host.len() - bit as usize;
                    keys.push((start, name_hash(&host[start..])));
                    dots &= !(1 << bit);
                }
            }
            _ => keys.extend(
                suffixes(host)
                    .skip(1)
                    .map(|s| (host.len() - s.len(), name_hash(s))),
            ),
        }
        HostSuffixes { host, keys }
    }

    /// The suffixes and their hashes, longest first.
    pub fn iter(&self) -> impl Iterator<Item = (&'h str, u64)> + '_ {
        let host = self.host;
        self.keys.iter().map(move |&(start, h)| (&host[start..], h))
    }
}

/// A URL entry's path prefix matches at a segment boundary: `/games` matches
/// `/games` and `/games/x` and `/games?x`, not `/gamesmaster`.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.ends_with('/')
        || matches!(
            path.as_bytes().get(prefix.len()),
            None | Some(b'/' | b'?' | b'#' | b'&' | b'.')
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_hosts() {
        assert_eq!(normalize_host("Example.COM.").unwrap(), "example.com");
        assert!(matches!(
            normalize_host("example.com"),
            Ok(Cow::Borrowed(_))
        ));
        assert_eq!(normalize_host("[::1]").unwrap(), "::1");
        assert_eq!(normalize_host(""), Err(HostError::Empty));
        assert_eq!(normalize_host("a..b"), Err(HostError::EmptyLabel));
        assert_eq!(normalize_host("a b"), Err(HostError::BadChar(' ')));
        assert_eq!(
            normalize_host(&"a".repeat(64)),
            Err(HostError::LabelTooLong)
        );
        assert_eq!(
            normalize_host(&format!("{}.com", "a.".repeat(130))),
            Err(HostError::TooLong)
        );
    }

    proptest::proptest! {
        /// The one-pass checks for plain names agree with the full ones.
        #[test]
        fn plain_names_take_a_shortcut_to_the_same_answer(host in "[a-zA-Z0-9._:-]{0,70}") {
            let stripped = host.strip_suffix('.').unwrap_or(&host);
            proptest::prop_assert_eq!(normalize_host(&host), check_host(stripped));
            let walked: Vec<(&str, u64)> = suffixes(&host).map(|s| (s, name_hash(s))).collect();
            let hashed: Vec<(&str, u64)> = HostSuffixes::new(&host).iter().collect();
            proptest::prop_assert_eq!(hashed, walked);
        }
    }

    #[test]
    fn suffix_walk() {
        assert_eq!(
            suffixes("a.b.example.com").collect::<Vec<_>>(),
            ["a.b.example.com", "b.example.com", "example.com", "com"]
        );
        assert_eq!(suffixes("10.1.2.3").collect::<Vec<_>>(), ["10.1.2.3"]);
        let long = format!("{}.example.com", "a".repeat(60));
        for host in [
            "10.1.2.3",
            "host1.example.com",
            "a.b.c",
            "a",
            &long,
            &long[1..],
        ] {
            let walked: Vec<&str> = suffixes(host).collect();
            let hashed: Vec<&str> = HostSuffixes::new(host).iter().map(|(s, _)| s).collect();
            assert_eq!(hashed, walked, "{host}");
        }
    }

    #[test]
    fn matches_domains_subdomains_and_url_prefixes() {
        let mut idx = EntryIndex::new();
        idx.upsert_domain("example.com", |_| 1);
        idx.upsert_url("news.site.org", "/games", |_| 2);
        let mut hits = Vec::new();
        idx.for_each_match("www.example.com", Some("/"), |s, _, v| hits.push((s, *v)));
        assert_eq!(hits, [("example.com", 1)]);
        assert!(idx.best_match("example.org", None).is_none());
        assert!(idx.best_match("notexample.com", None).is_none());
        assert_eq!(
            idx.best_match("news.site.org", Some("/games/chess"))
                .map(|m| *m.1),
            Some(2)
        );
        assert_eq!(
            idx.best_match("www.news.site.org", Some("/games?x=1"))
                .map(|m| *m.1),
            Some(2)
        );
        assert!(
            idx.best_match("news.site.org", Some("/gamesmaster"))
                .is_none()
        );
        assert!(idx.best_match("news.site.org", None).is_none());
    }

    #[test]
    fn entries_validate() {
        assert!(validate_entry("bbc.co.uk/bitesize").is_ok());
        assert_eq!(
            validate_entry("https://bbc.co.uk").unwrap_err(),
            "`https://bbc.co.uk`: write the entry without a scheme, e.g. \"example.com/path\""
        );
        assert_eq!(
            validate_entry("bad host").unwrap_err(),
            "`bad host`: character ' ' is not allowed in a host name"
        );
    }
}
