//! Host names and the compact in-memory index of list entries.
//!
//! A domain entry covers the name and every subdomain; a URL entry covers a host
//! (and its subdomains) plus a path prefix. The index keys on a 64-bit xxh3 hash of
//! the name instead of the name itself; a hash collision could only make an
//! unlisted name look listed (a wrong block, about one in 10^12 lookups), never
//! hide a listed one.
//!
//! A compiled policy keeps its domain entries packed (`Packed`): the hashes in
//! order with a directory on their top bits, and their values beside them,
//! 13 to 14 bytes a list entry. A hash map, which the entries sit in only
//! while an index is added to, takes 17 bytes a slot with up to twice the slots
//! the entries need: the benchmarks' 1.4 M-name index takes about 20 MB packed
//! instead of 36, which matters on a school's small server.

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
    domains: Domains<V>,
    urls: HashKeyed<Vec<(Box<str>, V)>>,
}

impl<V> Default for EntryIndex<V> {
    fn default() -> Self {
        EntryIndex {
            domains: Domains::default(),
            urls: HashKeyed::default(),
        }
    }
}

/// Domain entries by name hash: in the open map while lists load, packed once
/// the policy is compiled. At most one of the two holds entries.
#[derive(Debug, Clone)]
struct Domains<V> {
    open: HashKeyed<V>,
    packed: Packed<V>,
}

impl<V> Default for Domains<V> {
    fn default() -> Self {
        Domains {
            open: HashKeyed::default(),
            packed: Packed::default(),
        }
    }
}

impl<V> Domains<V> {
    #[inline]
    fn get(&self, h: u64) -> Option<&V> {
        if self.open.is_empty() {
            self.packed.get(h)
        } else {
            self.open.get(&h)
        }
    }

    fn len(&self) -> usize {
        self.open.len() + self.packed.len()
    }

    /// The map to add to; packed entries are unpacked into it first (a cost,
    /// never a different answer).
    fn open(&mut self) -> &mut HashKeyed<V> {
        if self.packed.len() > 0 {
            let packed = std::mem::take(&mut self.packed);
            self.open.extend(packed.keys.into_iter().zip(packed.values));
        }
        &mut self.open
    }

    /// Takes entries already hashed, sorted and merged (see
    /// [`EntryIndex::set_hashed_domains`]).
    fn set_packed(&mut self, keys: Vec<u64>, values: Vec<V>) {
        let strictly_sorted = keys.windows(2).all(|w| w[0] < w[1]);
        let (keys, values) = if self.len() == 0 && strictly_sorted {
            match Packed::from_sorted(keys, values) {
                Ok(packed) => {
                    self.packed = packed;
                    return;
                }
                Err(given) => given,
            }
        } else {
            (keys, values)
        };
        // Not as promised, or added to entries already here: the slow way, with
        // a later entry for the same hash replacing an earlier one.
        self.open().extend(keys.into_iter().zip(values));
        self.pack();
    }

    fn pack(&mut self) {
        if self.open.is_empty() {
            return;
        }
        match Packed::from_map(std::mem::take(&mut self.open)) {
            Ok(packed) => self.packed = packed,
            Err(map) => self.open = map,
        }
    }
}

/// Hashes in ascending order and their values, with a directory on the hashes'
/// top bits: `starts[b]` is where the hashes whose top bits are `b` begin (and
/// one more entry marks the end). Buckets hold two to four hashes, so the
/// directory costs one to two bytes a name, and a lookup reads one directory entry and
/// one cache line of hashes, found or not. It is slower than the hash map: a
/// host-only decision over every real list took 60–70 ns more (about 470 ns
/// against 410, `decide_cost` timed; 2,006 instructions against 1,848), under
/// 1% of a DNS query's cost, for 16 MB less with a million names.
#[derive(Debug, Clone)]
struct Packed<V> {
    keys: Box<[u64]>,
    values: Box<[V]>,
    starts: Box<[u32]>,
    /// `64 - bits`, where the directory has `2^bits` buckets.
    shift: u32,
}

impl<V> Default for Packed<V> {
    fn default() -> Self {
        Packed {
            keys: Box::new([]),
            values: Box::new([]),
            starts: Box::new([0, 0]),
            shift: 63,
        }
    }
}

impl<V> Packed<V> {
    fn len(&self) -> usize {
        self.keys.len()
    }

    #[inline]
    fn get(&self, h: u64) -> Option<&V> {
        let bucket = (h >> self.shift) as usize;
        let lo = *self.starts.get(bucket)? as usize;
        let hi = *self.starts.get(bucket + 1)? as usize;
        let at = self.keys.get(lo..hi)?.iter().position(|&k| k == h)?;
        self.values.get(lo + at)
    }

    /// Packs a map; gives it back if it is too large to address.
    fn from_map(mut map: HashKeyed<V>) -> Result<Packed<V>, HashKeyed<V>> {
        // Keys first and values looked up after, so that the map and one copy
        // of its entries are never in memory together.
        let mut keys: Vec<u64> = map.keys().copied().collect();
        keys.sort_unstable();
        let values: Vec<V> = keys.iter().filter_map(|k| map.remove(k)).collect();
        drop(map);
        Packed::from_sorted(keys, values).map_err(|(k, v)| k.into_iter().zip(v).collect())
    }

    /// Packs keys sorted without repeats, and their values; gives them back past
    /// `u32::MAX` entries or if the two differ in length.
    #[allow(clippy::type_complexity)]
    fn from_sorted(keys: Vec<u64>, values: Vec<V>) -> Result<Packed<V>, (Vec<u64>, Vec<V>)> {
        let n = keys.len();
        let Ok(end) = u32::try_from(n) else {
            return Err((keys, values));
        };
        if values.len() != n {
            return Err((keys, values));
        }
        // Two to four hashes a bucket, and at least two buckets, so that the
        // shift stays under 64.
        let bits = (n / 4).next_power_of_two().trailing_zeros().clamp(1, 24);
        let shift = 64 - bits;
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        let mut at = 0u32;
        let mut rest = keys.iter().peekable();
        for bucket in 0..(1u64 << bits) {
            while rest.next_if(|&&k| k >> shift < bucket).is_some() {
                at += 1;
            }
            starts.push(at);
        }
        starts.push(end);
        Ok(Packed {
            keys: keys.into(),
            values: values.into(),
            starts: starts.into(),
            shift,
        })
    }
}

impl<V> EntryIndex<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    /// Sets the domain entries from their [`name_hash`]es, sorted ascending with
    /// no hash twice, and packs them without going through the open map (half
    /// the memory while a large list loads). Entries not given that way are
    /// still taken, more slowly.
    pub fn set_hashed_domains(&mut self, keys: Vec<u64>, values: Vec<V>) {
        self.domains.set_packed(keys, values);
    }

    /// Packs the domain entries for lookups only (see the module's comment);
    /// adding to a packed index unpacks it again.
    pub fn pack(&mut self) {
        self.domains.pack();
        self.urls.shrink_to_fit();
    }

    pub fn url_count(&self) -> usize {
        self.urls.values().map(Vec::len).sum()
    }

    /// Adds or merges a domain entry (already normalised).
    pub fn upsert_domain(&mut self, domain: &str, merge: impl FnOnce(Option<&V>) -> V) {
        let h = name_hash(domain);
        let domains = self.domains.open();
        let v = merge(domains.get(&h));
        domains.insert(h, v);
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
        self.domains.len() == 0 && self.urls.is_empty()
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
            if let Some(v) = self.domains.get(h) {
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

    proptest::proptest! {
        /// A packed index answers every lookup as the open map did, listed or
        /// not, and takes additions after packing.
        #[test]
        fn packing_changes_no_answer(
            listed in proptest::collection::btree_set("[a-z]{1,6}\\.(com|org|uk)", 0..300),
            unlisted in proptest::collection::vec("[a-z]{1,6}\\.(com|org|net)", 0..100),
        ) {
            let mut open = EntryIndex::new();
            for (i, d) in listed.iter().enumerate() {
                open.upsert_domain(d, |_| i);
            }
            let mut packed = open.clone();
            packed.pack();
            proptest::prop_assert!(packed.domains.open.is_empty() || listed.is_empty());
            proptest::prop_assert_eq!(packed.domain_count(), listed.len());
            for name in listed.iter().chain(&unlisted) {
                let host = format!("www.{name}");
                proptest::prop_assert_eq!(
                    packed.best_match(&host, None).map(|m| *m.1),
                    open.best_match(&host, None).map(|m| *m.1),
                    "{}", host
                );
            }
            packed.upsert_domain("added.example", |old| old.copied().unwrap_or(usize::MAX));
            proptest::prop_assert_eq!(packed.domain_count(), listed.len() + 1);
            proptest::prop_assert_eq!(packed.best_match("a.added.example", None).map(|m| *m.1), Some(usize::MAX));
            for (i, d) in listed.iter().enumerate() {
                proptest::prop_assert_eq!(packed.best_match(d, None).map(|m| *m.1), Some(i));
            }
        }
    }

    #[test]
    fn hashed_domains_out_of_order_or_repeated_are_still_all_taken() {
        let names = ["b.example", "a.example", "c.example", "a.example"];
        let keys: Vec<u64> = names.iter().map(|n| name_hash(n)).collect();
        let mut idx = EntryIndex::new();
        idx.upsert_domain("already.example", |_| 9);
        idx.set_hashed_domains(keys.clone(), vec![1, 2, 3, 4]);
        assert_eq!(idx.domain_count(), 4);
        assert_eq!(
            idx.best_match("already.example", None).map(|m| *m.1),
            Some(9)
        );
        assert_eq!(idx.best_match("x.a.example", None).map(|m| *m.1), Some(4));
        assert_eq!(idx.best_match("c.example", None).map(|m| *m.1), Some(3));
        let mut sorted: Vec<(u64, u32)> = keys.into_iter().zip([1, 2, 3, 4]).take(3).collect();
        sorted.sort_unstable();
        let mut fresh = EntryIndex::new();
        fresh.set_hashed_domains(
            sorted.iter().map(|e| e.0).collect(),
            sorted.iter().map(|e| e.1).collect(),
        );
        assert!(fresh.domains.open.is_empty());
        assert_eq!(fresh.best_match("b.example", None).map(|m| *m.1), Some(1));
        assert_eq!(fresh.best_match("a.example", None).map(|m| *m.1), Some(2));
    }

    #[test]
    fn the_hashes_at_the_ends_of_the_range_are_found() {
        let keys = vec![0, 1, u64::MAX - 2, u64::MAX];
        let packed = Packed::from_sorted(keys, vec!['a', 'b', 'c', 'd']).unwrap();
        assert_eq!(packed.len(), 4);
        assert_eq!(packed.get(0), Some(&'a'));
        assert_eq!(packed.get(1), Some(&'b'));
        assert_eq!(packed.get(2), None);
        assert_eq!(packed.get(u64::MAX - 2), Some(&'c'));
        assert_eq!(packed.get(u64::MAX - 1), None);
        assert_eq!(packed.get(u64::MAX), Some(&'d'));
        assert_eq!(Packed::<char>::default().get(7), None);
        assert_eq!(Packed::<char>::default().get(u64::MAX), None);
        assert!(Packed::from_sorted(vec![1, 2], vec!['a']).is_err());
    }

    #[test]
    fn a_packed_index_finds_every_one_of_many_names() {
        let mut idx = EntryIndex::new();
        for i in 0..50_000u32 {
            idx.upsert_domain(&format!("host{i}.example"), |_| i);
        }
        idx.pack();
        assert!(idx.domains.open.is_empty());
        assert_eq!(idx.domain_count(), 50_000);
        for i in 0..50_000u32 {
            assert_eq!(
                idx.best_match(&format!("www.host{i}.example"), None)
                    .map(|m| *m.1),
                Some(i)
            );
        }
        assert!(idx.best_match("host50000.example", None).is_none());
        assert!(idx.best_match("example", None).is_none());
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
