//! [`AccessEvent`]: one decision of the filter, as it is stored for review, and
//! [`Batch`]: the unit the pipeline inserts, retries and dead-letters.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use jiff::Timestamp;
use schoolgate_classifier::{Action, Category, CategorySet, Severity, Verdict};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Which part of schoolgate made the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Source {
    /// The DNS filter (`method` is the query type, `status` the rcode).
    Dns = 0,
    /// The explicit proxy (PAC/WPAD, CONNECT).
    Proxy = 1,
    /// The transparent proxy (the host comes from the TLS SNI or `Host`).
    Transparent = 2,
    /// TLS inspection on a managed device (full URL known).
    Inspect = 3,
}

impl Source {
    pub const fn name(self) -> &'static str {
        match self {
            Source::Dns => "dns",
            Source::Proxy => "proxy",
            Source::Transparent => "transparent",
            Source::Inspect => "inspect",
        }
    }

    /// The stored number (never reused).
    pub const fn id(self) -> u8 {
        self as u8
    }

    pub fn from_u8(v: u8) -> Option<Source> {
        Some(match v {
            0 => Source::Dns,
            1 => Source::Proxy,
            2 => Source::Transparent,
            3 => Source::Inspect,
            _ => return None,
        })
    }

    pub fn from_name(name: &str) -> Option<Source> {
        Some(match name {
            "dns" => Source::Dns,
            "proxy" => Source::Proxy,
            "transparent" => Source::Transparent,
            "inspect" => Source::Inspect,
            _ => return None,
        })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long an event is kept: each class has its own retention
/// (`[store.retention]`), and the ClickHouse tables are partitioned by it so that
/// old months of one class can be dropped without touching the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum RetentionClass {
    /// Allowed (and rewritten) traffic that nobody needs to review.
    Allowed = 0,
    /// Blocked requests without a severity.
    Blocked = 1,
    /// Anything with a severity: kept longest, it may be evidence.
    Flagged = 2,
}

impl RetentionClass {
    pub const ALL: [RetentionClass; 3] = [
        RetentionClass::Allowed,
        RetentionClass::Blocked,
        RetentionClass::Flagged,
    ];

    pub const fn id(self) -> u8 {
        self as u8
    }

    pub fn from_u8(v: u8) -> Option<RetentionClass> {
        Some(match v {
            0 => RetentionClass::Allowed,
            1 => RetentionClass::Blocked,
            2 => RetentionClass::Flagged,
            _ => return None,
        })
    }

    /// Days to keep this class under `retention`.
    pub fn days(self, retention: &schoolgate_classifier::config::store::Retention) -> u32 {
        match self {
            RetentionClass::Allowed => retention.allowed_days,
            RetentionClass::Blocked => retention.blocked_days,
            RetentionClass::Flagged => retention.flagged_days,
        }
    }
}

/// One decision of the filter, made where the decision is made (DNS handler,
/// proxy) and stored for the safeguarding review.
///
/// Strings are stored as given; the stores treat `user`/`device` of `Some("")` as
/// unknown (`None`) so both stores answer the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEvent {
    /// Time-ordered and unique: the block page's reference and the dashboard's link.
    #[serde(serialize_with = "serialize_id", deserialize_with = "deserialize_id")]
    pub id: Ulid,
    /// When the decision was made (stored at millisecond precision).
    #[serde(
        serialize_with = "serialize_time",
        deserialize_with = "deserialize_time"
    )]
    pub time: Timestamp,
    pub source: Source,
    /// The school / site id within a trust; empty for a single school.
    pub school: String,
    /// The filter node that decided.
    pub node: String,
    pub client_ip: IpAddr,
    /// The authenticated user (proxy auth, voucher), when known.
    pub user: Option<String>,
    /// The device (hostname or MAC mapping), when known.
    pub device: Option<String>,
    /// The role whose policy applied (`pupil-ks2`, `staff`, `guest`, ...).
    pub role: String,
    /// HTTP method, or the DNS query type (`A`, `AAAA`, `HTTPS`).
    pub method: String,
    pub host: String,
    /// The URL path and query, when known (inspection or plain HTTP); may be empty.
    pub path: String,
    /// Search terms found in the URL, decoded; may be empty.
    pub search_terms: String,
    pub action: Action,
    pub categories: CategorySet,
    pub severity: Option<Severity>,
    /// The rule that decided (display form of the classifier's `Rule`).
    pub rule: String,
    /// The reason shown on the block page.
    pub reason: String,
    /// HTTP status, or the DNS rcode.
    pub status: u16,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_us: u32,
    /// Answered from a cache (DNS) without going upstream.
    pub cached: bool,
}

// The id and the time: text (`01J…`, RFC 3339) in JSON (the spool, the
// dead-letter file, the API), numbers in postcard (the journal, on every event
// the proxy and the DNS filter send: formatting them cost a third of an
// event's journal write). The journal's first record format had them as text
// in postcard too; `with_text_id_and_time` reads and writes that.

thread_local! {
    static TEXT_ID_AND_TIME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with postcard writing and reading the id and time as text, as the
/// journal's first record format has them.
pub(crate) fn with_text_id_and_time<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            TEXT_ID_AND_TIME.set(false);
        }
    }
    TEXT_ID_AND_TIME.set(true);
    let _reset = Reset;
    f()
}

fn as_text(human_readable: bool) -> bool {
    human_readable || TEXT_ID_AND_TIME.get()
}

fn serialize_id<S: serde::Serializer>(id: &Ulid, s: S) -> Result<S::Ok, S::Error> {
    if as_text(s.is_human_readable()) {
        id.serialize(s)
    } else {
        s.serialize_u128(id.0)
    }
}

pub(crate) fn deserialize_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
    if as_text(d.is_human_readable()) {
        Ulid::deserialize(d)
    } else {
        u128::deserialize(d).map(Ulid)
    }
}

/// As text: the time as jiff writes it (RFC 3339), formatted once (jiff's own
/// impl hands the serializer a `Display`, which postcard formats twice).
/// Otherwise: milliseconds since 1970, the precision events keep.
fn serialize_time<S: serde::Serializer>(time: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    if as_text(s.is_human_readable()) {
        s.serialize_str(&time.to_string())
    } else {
        s.serialize_i64(time.as_millisecond())
    }
}

pub(crate) fn deserialize_time<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Timestamp, D::Error> {
    if as_text(d.is_human_readable()) {
        Timestamp::deserialize(d)
    } else {
        let ms = i64::deserialize(d)?;
        Timestamp::from_millisecond(ms).map_err(serde::de::Error::custom)
    }
}

/// Appends `event` in postcard (id and time as numbers) to `out`: the
/// journal's record and the SQLite store's block entry.
///
/// Written out field by field, the bytes postcard's derived encoding writes
/// (`encode_into_writes_postcards_bytes` holds the two together; decoding
/// stays postcard's). Through serde an event cost about 1,230 instructions
/// under callgrind, and every stored event is encoded twice (journal, block).
pub(crate) fn encode_into(event: &AccessEvent, out: &mut Vec<u8>) {
    // LEB128. Pushed a byte at a time: gathering the bytes on the stack and
    // appending them at once measured slower (a call and a copy each).
    #[inline(always)]
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    // The id, the one number wider than 64 bits: its low groups, then the
    // rest as any other number.
    fn varint128(out: &mut Vec<u8>, mut v: u128) {
        while v > u128::from(u64::MAX) {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        varint(out, v as u64);
    }
    fn text(out: &mut Vec<u8>, s: &str) {
        varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    fn optional_text(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                text(out, s);
            }
        }
    }
    varint128(out, event.id.0);
    let ms = event.time.as_millisecond();
    varint(out, ((ms << 1) ^ (ms >> 63)) as u64);
    // Unit variants are their index in declaration order.
    varint(out, event.source as u64);
    text(out, &event.school);
    text(out, &event.node);
    match event.client_ip {
        IpAddr::V4(ip) => {
            out.push(0);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
    }
    optional_text(out, event.user.as_deref());
    optional_text(out, event.device.as_deref());
    text(out, &event.role);
    text(out, &event.method);
    text(out, &event.host);
    text(out, &event.path);
    text(out, &event.search_terms);
    varint(out, event.action as u64);
    varint(out, u64::from(event.categories.len()));
    for category in event.categories.iter() {
        text(out, category.name());
    }
    match event.severity {
        None => out.push(0),
        Some(severity) => {
            out.push(1);
            // `Low` is 1 as a number and the first variant.
            varint(out, u64::from(severity as u8 - Severity::Low as u8));
        }
    }
    text(out, &event.rule);
    text(out, &event.reason);
    varint(out, event.status as u64);
    varint(out, event.bytes_up);
    varint(out, event.bytes_down);
    varint(out, event.duration_us as u64);
    out.push(event.cached as u8);
}

impl AccessEvent {
    /// A new event for `host` decided now, allowed, with a fresh id; fill in the
    /// rest with the `with_*` methods or field by field.
    pub fn new(source: Source, client_ip: IpAddr, host: impl Into<String>) -> AccessEvent {
        // One reading of the clock for both: the id's millisecond is the time's
        // (two readings disagreed whenever a millisecond ended between them).
        let now = std::time::SystemTime::now();
        let id = Ulid::from_datetime(now);
        // Millisecond precision, as stored, so an event read back equals the
        // event sent.
        let time = truncate_to_ms(Timestamp::try_from(now).unwrap_or_else(|_| Timestamp::now()));
        let host = host.into();
        // In a spare (cleared) event when there is one: its strings have room.
        let Some(mut event) = crate::spare::take() else {
            return AccessEvent {
                id,
                time,
                host,
                ..AccessEvent::placeholder(source, client_ip)
            };
        };
        event.id = id;
        event.time = time;
        event.source = source;
        event.client_ip = client_ip;
        if !host.is_empty() {
            event.host = host;
        }
        event
    }

    /// Back to a placeholder (`Source::Dns`, the unknown client), every string
    /// emptied but keeping its room, for [`crate::spare`]. Every field is named
    /// here, so a field added to the event cannot be forgotten.
    pub(crate) fn clear(&mut self) {
        // A string grown past this (a long URL) is not kept.
        const KEEP: usize = 256;
        fn empty(s: &mut String) {
            if s.capacity() > KEEP {
                *s = String::new();
            } else {
                s.clear();
            }
        }
        let AccessEvent {
            id,
            time,
            source,
            school,
            node,
            client_ip,
            user,
            device,
            role,
            method,
            host,
            path,
            search_terms,
            action,
            categories,
            severity,
            rule,
            reason,
            status,
            bytes_up,
            bytes_down,
            duration_us,
            cached,
        } = self;
        *id = Ulid::nil();
        *time = Timestamp::UNIX_EPOCH;
        *source = Source::Dns;
        *client_ip = UNKNOWN_CLIENT;
        *user = None;
        *device = None;
        for s in [
            school,
            node,
            role,
            method,
            host,
            path,
            search_terms,
            rule,
            reason,
        ] {
            empty(s);
        }
        *action = Action::Allow;
        *categories = CategorySet::EMPTY;
        *severity = None;
        *status = 0;
        *bytes_up = 0;
        *bytes_down = 0;
        *duration_us = 0;
        *cached = false;
    }

    /// An empty event with the nil id at the epoch: what is left in place of
    /// an event taken out to be sent, without the clock reads and the random
    /// bits of [`AccessEvent::new`]. Never sent itself.
    pub fn placeholder(source: Source, client_ip: IpAddr) -> AccessEvent {
        AccessEvent {
            id: Ulid::nil(),
            time: Timestamp::UNIX_EPOCH,
            source,
            school: String::new(),
            node: String::new(),
            client_ip,
            user: None,
            device: None,
            role: String::new(),
            method: String::new(),
            host: String::new(),
            path: String::new(),
            search_terms: String::new(),
            action: Action::Allow,
            categories: CategorySet::EMPTY,
            severity: None,
            rule: String::new(),
            reason: String::new(),
            status: 0,
            bytes_up: 0,
            bytes_down: 0,
            duration_us: 0,
            cached: false,
        }
    }

    /// An event carrying what the classifier decided: action, categories,
    /// severity, rule, reason, role and search terms.
    ///
    /// The texts are written into the room the new event's strings have (a
    /// reused event's, see [`AccessEvent::new`]).
    pub fn from_verdict(
        source: Source,
        client_ip: IpAddr,
        host: &str,
        verdict: &Verdict,
    ) -> AccessEvent {
        let mut event = AccessEvent::new(source, client_ip, String::new());
        event.host.push_str(host);
        event.action = verdict.action;
        event.categories = verdict.categories;
        event.severity = verdict.severity;
        verdict.rule.push_to(&mut event.rule);
        verdict.write_reason(&mut event.reason);
        event.role.push_str(&verdict.role);
        if let Some(terms) = &verdict.search_terms {
            event.search_terms.push_str(terms);
        }
        event
    }

    /// The id and time together: ULIDs carry their own millisecond time, and an
    /// event whose id says another time would sort oddly on the dashboard.
    #[must_use]
    pub fn at(mut self, time: Timestamp) -> AccessEvent {
        let time = truncate_to_ms(time);
        let ms = u64::try_from(time.as_millisecond()).unwrap_or(0);
        self.id = Ulid::from_parts(ms, self.id.random());
        self.time = time;
        self
    }

    #[must_use]
    pub fn with_school(mut self, school: impl Into<String>) -> AccessEvent {
        self.school = school.into();
        self
    }

    #[must_use]
    pub fn with_node(mut self, node: impl Into<String>) -> AccessEvent {
        self.node = node.into();
        self
    }

    #[must_use]
    pub fn with_user(mut self, user: impl Into<String>) -> AccessEvent {
        let user = user.into();
        self.user = (!user.is_empty()).then_some(user);
        self
    }

    #[must_use]
    pub fn with_device(mut self, device: impl Into<String>) -> AccessEvent {
        let device = device.into();
        self.device = (!device.is_empty()).then_some(device);
        self
    }

    #[must_use]
    pub fn with_role(mut self, role: impl Into<String>) -> AccessEvent {
        self.role = role.into();
        self
    }

    #[must_use]
    pub fn with_method(mut self, method: impl Into<String>) -> AccessEvent {
        self.method = method.into();
        self
    }

    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> AccessEvent {
        self.path = path.into();
        self
    }

    #[must_use]
    pub fn with_search_terms(mut self, terms: impl Into<String>) -> AccessEvent {
        self.search_terms = terms.into();
        self
    }

    #[must_use]
    pub fn with_action(mut self, action: Action) -> AccessEvent {
        self.action = action;
        self
    }

    #[must_use]
    pub fn with_categories(mut self, categories: CategorySet) -> AccessEvent {
        self.categories = categories;
        self
    }

    #[must_use]
    pub fn with_category(mut self, category: Category) -> AccessEvent {
        self.categories.insert(category);
        self
    }

    #[must_use]
    pub fn with_severity(mut self, severity: Option<Severity>) -> AccessEvent {
        self.severity = severity;
        self
    }

    #[must_use]
    pub fn with_rule(mut self, rule: impl Into<String>, reason: impl Into<String>) -> AccessEvent {
        self.rule = rule.into();
        self.reason = reason.into();
        self
    }

    #[must_use]
    pub fn with_status(mut self, status: u16) -> AccessEvent {
        self.status = status;
        self
    }

    #[must_use]
    pub fn with_transfer(
        mut self,
        bytes_up: u64,
        bytes_down: u64,
        duration_us: u32,
    ) -> AccessEvent {
        self.bytes_up = bytes_up;
        self.bytes_down = bytes_down;
        self.duration_us = duration_us;
        self
    }

    #[must_use]
    pub fn with_cached(mut self, cached: bool) -> AccessEvent {
        self.cached = cached;
        self
    }

    /// For the e-safety lead's review: anything with a severity, or an explicit flag.
    pub fn is_flagged(&self) -> bool {
        self.action == Action::Flag || self.severity.is_some()
    }

    /// An attempt to get round the filter (proxy, VPN, DoH, remote access) that
    /// the filter caught: counted in the weekly summary.
    pub fn is_bypass_attempt(&self) -> bool {
        matches!(self.action, Action::Block | Action::Flag)
            && self.categories.iter().any(Category::is_bypass)
    }

    /// The retention class: flagged beats blocked beats allowed.
    pub fn retention_class(&self) -> RetentionClass {
        if self.is_flagged() {
            RetentionClass::Flagged
        } else if self.action == Action::Block {
            RetentionClass::Blocked
        } else {
            RetentionClass::Allowed
        }
    }

    /// The time in unix milliseconds, as stored.
    pub fn time_ms(&self) -> i64 {
        self.time.as_millisecond()
    }
}

fn truncate_to_ms(t: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t)
}

/// Bypass categories as one bit mask (for the stores' SQL).
pub(crate) fn bypass_mask() -> u64 {
    Category::ALL
        .iter()
        .filter(|c| c.is_bypass())
        .map(|c| CategorySet::of(*c).bits())
        .fold(0, |a, b| a | b)
}

/// A placeholder address for events whose client is unknown.
pub const UNKNOWN_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// A batch's stable identity: the id of its first event and its length.
///
/// The same events batched the same way get the same id on every retry, so a
/// server that deduplicates inserts by token (ClickHouse's
/// `insert_deduplication_token`) drops a repeated insert. Events re-batched
/// differently after a restart get another id; the stores' per-event dedup (the
/// event id) covers that case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatchId {
    pub first: Ulid,
    pub count: u32,
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.count)
    }
}

/// `s` becomes `v`, in the room `s` has. An event's strings are reused
/// ([`AccessEvent::new`] fills a spare, stored event), so setting a text this
/// way allocates only when `v` is longer than anything the string held.
pub fn set_text(s: &mut String, v: &str) {
    s.clear();
    s.push_str(v);
}

/// A batch's events as the journal encoded them (`encode_into`), one after
/// another: a store that keeps postcard bytes (SQLite's blocks) copies them
/// instead of encoding every event a second time.
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl<'a> FromIterator<&'a [u8]> for Encoded {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(events: I) -> Encoded {
        let mut encoded = Encoded::default();
        for event in events {
            encoded.bytes.extend_from_slice(event);
            encoded.ends.push(encoded.bytes.len());
        }
        encoded
    }
}

impl Encoded {
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Event `i`'s bytes.
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p]);
        &self.bytes[start..self.ends[i]]
    }
}

/// Events inserted together.
#[derive(Clone, Debug)]
pub struct Batch {
    pub id: BatchId,
    /// Shared, so a store that inserts on its own thread takes the batch without
    /// copying every event.
    /// (An `Arc` of the `Vec` the batcher filled, not of a slice: making an
    /// `Arc<[_]>` would copy every event once more.)
    pub events: std::sync::Arc<Vec<AccessEvent>>,
    /// The batch may already be partly or wholly stored: it was attempted before
    /// with an ambiguous outcome, or it was replayed from the spool after a crash.
    /// Stores that cannot make the insert itself idempotent check first.
    pub maybe_stored: bool,
    /// The events' journal bytes, when every one of them has some.
    pub(crate) encoded: Option<std::sync::Arc<Encoded>>,
}

/// Two batches are equal when their events are: the encoding is a copy of them.
impl PartialEq for Batch {
    fn eq(&self, other: &Batch) -> bool {
        self.id == other.id
            && self.events == other.events
            && self.maybe_stored == other.maybe_stored
    }
}

impl Eq for Batch {}

impl Batch {
    pub fn new(events: Vec<AccessEvent>) -> Batch {
        let id = BatchId {
            first: events.first().map(|e| e.id).unwrap_or_else(Ulid::nil),
            count: u32::try_from(events.len()).unwrap_or(u32::MAX),
        };
        Batch {
            id,
            events: std::sync::Arc::new(events),
            maybe_stored: false,
            encoded: None,
        }
    }

    /// The batch with its events' journal bytes, one entry an event in order
    /// (ignored unless there is one for every event: a journal write failed).
    pub(crate) fn with_encoded(mut self, encoded: Encoded) -> Batch {
        if encoded.len() == self.events.len() {
            self.encoded = Some(std::sync::Arc::new(encoded));
        }
        self
    }

    #[must_use]
    pub fn replayed(mut self) -> Batch {
        self.maybe_stored = true;
        self
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The earliest and latest event times (ms), for narrowing a dedup probe.
    pub(crate) fn time_range_ms(&self) -> Option<(i64, i64)> {
        let min = self.events.iter().map(AccessEvent::time_ms).min()?;
        let max = self.events.iter().map(AccessEvent::time_ms).max()?;
        Some((min, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id's time and the event's time are the same millisecond, every time
    /// (with the two clock readings this replaced, 200,000 new events held some
    /// that disagreed in each of three runs: a millisecond ended between them).
    #[test]
    fn a_new_events_id_carries_its_millisecond() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _ in 0..200_000 {
            let e = AccessEvent::new(Source::Proxy, ip, "example.org");
            assert_eq!(e.id.timestamp_ms(), e.time_ms() as u64, "{}", e.id);
        }
    }

    fn ip() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))
    }

    #[test]
    fn bypass_needs_a_bypass_category_and_a_block_or_flag() {
        let vpn = AccessEvent::new(Source::Dns, ip(), "vpn.example").with_category(Category::Vpn);
        assert!(!vpn.is_bypass_attempt(), "allowed VPN is not an attempt");
        assert!(vpn.clone().with_action(Action::Block).is_bypass_attempt());
        assert!(vpn.clone().with_action(Action::Flag).is_bypass_attempt());
        let games = AccessEvent::new(Source::Dns, ip(), "g.example")
            .with_category(Category::Games)
            .with_action(Action::Block);
        assert!(!games.is_bypass_attempt());
    }

    #[test]
    fn flagged_means_a_severity_or_a_flag() {
        let e = AccessEvent::new(Source::Proxy, ip(), "x.example");
        assert!(!e.is_flagged());
        assert_eq!(e.retention_class(), RetentionClass::Allowed);
        let blocked = e.clone().with_action(Action::Block);
        assert_eq!(blocked.retention_class(), RetentionClass::Blocked);
        let severe = blocked.with_severity(Some(Severity::High));
        assert!(severe.is_flagged());
        assert_eq!(severe.retention_class(), RetentionClass::Flagged);
        assert!(e.with_action(Action::Flag).is_flagged());
    }

    #[test]
    fn at_keeps_id_and_time_in_step() {
        let t = Timestamp::from_millisecond(1_700_000_000_123).expect("valid");
        let e = AccessEvent::new(Source::Dns, ip(), "a.example").at(t);
        assert_eq!(e.time, t);
        assert_eq!(e.id.timestamp_ms(), 1_700_000_000_123);
    }

    #[test]
    fn json_round_trip() {
        let e = AccessEvent::new(Source::Inspect, ip(), "a.example")
            .with_user("alice")
            .with_category(Category::Gambling)
            .with_action(Action::Block)
            .with_severity(Some(Severity::Medium));
        let json = serde_json::to_string(&e).expect("serialise");
        let back: AccessEvent = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, e);
    }

    /// `encode_into` writes exactly postcard's bytes, after what `out` held.
    #[test]
    fn encode_into_appends_postcard() {
        let e = AccessEvent::new(Source::Inspect, ip(), "a.example")
            .with_user("alice")
            .with_category(Category::Gambling)
            .with_action(Action::Block)
            .with_severity(Some(Severity::Medium));
        let mut out = vec![7, 7];
        encode_into(&e, &mut out);
        encode_into(&e, &mut out);
        let one = postcard::to_allocvec(&e).expect("encode");
        assert_eq!(out, [&[7, 7][..], &one, &one].concat());
    }

    /// The hand-written encoder against postcard's derived one, over every
    /// variant of every enum, both address families, absent and present
    /// options, each number at its varint boundaries and at its extremes,
    /// texts empty, long and not ASCII, and random category sets.
    #[test]
    fn encode_into_writes_postcards_bytes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5c4001);
        let texts = [
            "",
            "a",
            "pupil-ks2",
            "caf\u{e9} \u{1f600}",
            &"x".repeat(127),
            &"y".repeat(128),
            &"z".repeat(20_000),
        ];
        let ips = [
            ip(),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            "::1".parse().expect("v6"),
            "2001:db8::ff:1".parse().expect("v6"),
        ];
        let sources = [
            Source::Dns,
            Source::Proxy,
            Source::Transparent,
            Source::Inspect,
        ];
        let actions = [Action::Allow, Action::Flag, Action::Rewrite, Action::Block];
        let severities = [
            None,
            Some(Severity::Low),
            Some(Severity::Medium),
            Some(Severity::High),
            Some(Severity::Critical),
        ];
        let times = [
            0,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            1_700_000_000_123,
            i64::from(i32::MAX),
            -1_700_000_000_123,
        ];
        let u64s = [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ];
        let pick = |rng: &mut rand::rngs::StdRng, n: usize| rng.random_range(0..n);
        let mut encoded = Vec::new();
        for round in 0..3_000 {
            let text = |rng: &mut rand::rngs::StdRng| texts[pick(rng, texts.len())].to_owned();
            let mut e = AccessEvent::new(
                sources[round % 4],
                ips[pick(&mut rng, ips.len())],
                text(&mut rng),
            );
            let edges = [
                0,
                127,
                128,
                (1 << 63) - 1,
                1 << 63,
                (1 << 64) - 1,
                1 << 64,
                1 << 127,
                u128::MAX,
            ];
            e.id = Ulid(match round % 3 {
                0 => rng.random(),
                1 => u128::from(rng.random::<u64>()) >> rng.random_range(0..64),
                _ => edges[pick(&mut rng, edges.len())],
            });
            e.time =
                Timestamp::from_millisecond(times[pick(&mut rng, times.len())]).expect("in range");
            e.school = text(&mut rng);
            e.node = text(&mut rng);
            e.user = rng.random_bool(0.5).then(|| text(&mut rng));
            e.device = rng.random_bool(0.5).then(|| text(&mut rng));
            e.role = text(&mut rng);
            e.method = text(&mut rng);
            e.path = text(&mut rng);
            e.search_terms = text(&mut rng);
            e.action = actions[pick(&mut rng, 4)];
            e.categories = Category::ALL
                .iter()
                .filter(|_| rng.random_bool(if round % 2 == 0 { 0.05 } else { 0.5 }))
                .fold(CategorySet::EMPTY, |set, c| set.union(CategorySet::of(*c)));
            e.severity = severities[pick(&mut rng, severities.len())];
            e.rule = text(&mut rng);
            e.reason = text(&mut rng);
            e.status = [0, 127, 128, 404, u16::MAX][pick(&mut rng, 5)];
            e.bytes_up = u64s[pick(&mut rng, u64s.len())];
            e.bytes_down = u64s[pick(&mut rng, u64s.len())];
            e.duration_us = u64s[pick(&mut rng, u64s.len())] as u32;
            e.cached = rng.random_bool(0.5);
            encoded.clear();
            encode_into(&e, &mut encoded);
            assert_eq!(encoded, postcard::to_allocvec(&e).expect("encode"), "{e:?}");
        }
    }

    /// The journal's first record format holds the id and time as text, the
    /// time as jiff's own impl wrote it: those bytes must not change. The
    /// current format holds them as numbers, and both read back the same event.
    #[test]
    fn id_and_time_are_numbers_in_postcard_and_text_in_the_first_format() {
        for ms in [
            0,
            1_700_000_000_123,
            1_700_000_000_100,
            1_700_000_000_000,
            -1,
        ] {
            let t = Timestamp::from_millisecond(ms).expect("valid");
            let e = AccessEvent::new(Source::Proxy, ip(), "a.example").at(t);
            let first = with_text_id_and_time(|| postcard::to_allocvec(&e).expect("encode"));
            let jiffs = postcard::to_allocvec(&t).expect("encode");
            let mut id = postcard::to_allocvec(&e.id).expect("encode");
            id.extend_from_slice(&jiffs);
            assert!(first.starts_with(&id), "{ms}");
            assert_eq!(
                with_text_id_and_time(|| postcard::from_bytes::<AccessEvent>(&first))
                    .expect("decode"),
                e
            );

            let now = postcard::to_allocvec(&e).expect("encode");
            let mut numbers = postcard::to_allocvec(&e.id.0).expect("encode");
            numbers.extend(postcard::to_allocvec(&ms).expect("encode"));
            assert!(now.starts_with(&numbers), "{ms}");
            assert!(
                now.len() + 20 < first.len(),
                "{ms}: {} against {}",
                now.len(),
                first.len()
            );
            assert_eq!(
                postcard::from_bytes::<AccessEvent>(&now).expect("decode"),
                e
            );
            assert_eq!(
                serde_json::to_value(&e).expect("json")["time"],
                serde_json::to_value(t).expect("json")
            );
        }
    }

    #[test]
    fn batch_id_is_first_event_and_count() {
        let a = AccessEvent::new(Source::Dns, ip(), "a.example");
        let b = AccessEvent::new(Source::Dns, ip(), "b.example");
        let batch = Batch::new(vec![a.clone(), b]);
        assert_eq!(batch.id.first, a.id);
        assert_eq!(batch.id.count, 2);
        assert_eq!(batch.id.to_string(), format!("{}-2", a.id));
    }
}
