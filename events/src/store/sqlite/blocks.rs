//! Event blocks: the SQLite store's events that are not flagged (allowed and
//! blocked traffic, nearly all of it), many to a row.
//!
//! A row of `events` with its indexes cost the writer some 42 000 instructions
//! an event, and even a bare table without an index 27 000: more than the
//! proxy or the DNS filter spends deciding. Plain traffic is read in bulk
//! (counts come from the rollups; a period's search, export, timeline or top
//! blocked hosts reads it all), never one event by an index, so it is kept the
//! way ClickHouse keeps it: in blocks.
//!
//! - A block holds the events of one insert that fall in one hour and one
//!   retention class, sorted by time then id, so a purge by hour and class
//!   removes whole blocks and stays exact with the rollups.
//! - `first_ms`/`last_ms` narrow a read to the blocks that overlap it; the
//!   index is on `(hour, first_ms)`. `hosts` (each host once, a line each)
//!   and `categories` (every bit of its events) let a search for a host or a
//!   category skip the blocks without one unread.
//! - `data` is [`FORMAT_LZ4`] (one byte), the length of what follows once
//!   decompressed (u32, little-endian), then LZ4 (block format) of each event
//!   in postcard, as the journal writes them (id and time as numbers). Events
//!   of one school, hour and class repeat most of their texts, and LZ4 takes a
//!   block to about a third for a fraction of a microsecond an event: fewer
//!   pages for the writer to write twice (WAL, then checkpoint), and a smaller
//!   file. [`FORMAT_PLAIN`] blocks (the events uncompressed) are read too. A
//!   block that cannot be read is an error naming it, never a silent gap.
//! - Flagged events stay rows of `events`, with the indexes the review queue,
//!   the incident links and the timeline need; a block never holds one.
//! - Deduplication: a batch marked `maybe_stored` (a retry or a replay) is
//!   checked against the ids already stored in the hours it covers, and an
//!   event twice in it is kept once. A fresh batch is not checked.

use std::collections::HashSet;
use std::net::IpAddr;

use jiff::Timestamp;
use rusqlite::{Connection, Transaction, params};
use schoolgate_classifier::{Action, CategorySet, Severity};
use serde::Deserialize;
use ulid::Ulid;

use super::{HOUR_MS, classify};
use crate::event::{
    AccessEvent, Encoded, RetentionClass, Source, deserialize_id, deserialize_time, encode_into,
};
use crate::store::StoreError;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS event_blocks (
    hour     INTEGER NOT NULL, -- unix ms / 3 600 000 of every event in it
    class    INTEGER NOT NULL, -- retention class of every event in it
    first_ms INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL,
    events   INTEGER NOT NULL,
    hosts    TEXT NOT NULL,    -- each host in it once, one a line: a search skips the rest
    categories INTEGER NOT NULL, -- every category bit of its events
    data     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS event_blocks_time ON event_blocks(hour, first_ms);
";

/// The first byte of `data`: the events in postcard, uncompressed (read, no
/// longer written).
const FORMAT_PLAIN: u8 = 1;
/// The first byte of `data`: the decompressed length, then the events in
/// postcard, LZ4-compressed.
const FORMAT_LZ4: u8 = 2;
/// The most a block may claim to hold decompressed (a damaged length must not
/// become a huge allocation). A batch of 10,000 events is some 2 MB.
const MAX_BLOCK_BYTES: usize = 256 << 20;

/// An event as a block holds it, its texts borrowed from the block: a scan
/// tests every event of a period and makes an [`AccessEvent`] only of those it
/// keeps. The fields are [`AccessEvent`]'s, in its order (postcard has no
/// field names); `a_view_reads_what_an_event_wrote` holds them together.
#[derive(Debug, Deserialize)]
pub(super) struct Stored<'a> {
    #[serde(deserialize_with = "deserialize_id")]
    pub id: Ulid,
    #[serde(deserialize_with = "deserialize_time")]
    pub time: Timestamp,
    pub source: Source,
    pub school: &'a str,
    pub node: &'a str,
    pub client_ip: IpAddr,
    #[serde(borrow)]
    pub user: Option<&'a str>,
    #[serde(borrow)]
    pub device: Option<&'a str>,
    pub role: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub search_terms: &'a str,
    pub action: Action,
    pub categories: CategorySet,
    pub severity: Option<Severity>,
    pub rule: &'a str,
    pub reason: &'a str,
    pub status: u16,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_us: u32,
    pub cached: bool,
}

impl Stored<'_> {
    pub fn time_ms(&self) -> i64 {
        self.time.as_millisecond()
    }

    /// The user as the rows store it: an empty name is none.
    pub fn user(&self) -> Option<&str> {
        self.user.filter(|u| !u.is_empty())
    }

    /// The event, as a row of `events` would give it back (an empty user or
    /// device is none).
    pub fn to_event(&self) -> AccessEvent {
        AccessEvent {
            id: self.id,
            time: self.time,
            source: self.source,
            school: self.school.to_owned(),
            node: self.node.to_owned(),
            client_ip: self.client_ip,
            user: self.user().map(str::to_owned),
            device: self.device.filter(|d| !d.is_empty()).map(str::to_owned),
            role: self.role.to_owned(),
            method: self.method.to_owned(),
            host: self.host.to_owned(),
            path: self.path.to_owned(),
            search_terms: self.search_terms.to_owned(),
            action: self.action,
            categories: self.categories,
            severity: self.severity,
            rule: self.rule.to_owned(),
            reason: self.reason.to_owned(),
            status: self.status,
            bytes_up: self.bytes_up,
            bytes_down: self.bytes_down,
            duration_us: self.duration_us,
            cached: self.cached,
        }
    }
}

/// Blocks deleted per purge transaction.
const PURGE_BLOCKS: i64 = 1_000;

/// Stores `events` (none flagged, each with its place in the batch) as
/// blocks, one per hour and retention class. `encoded`: the batch's journal
/// bytes, copied in place of encoding each event again.
pub(super) fn insert(
    tx: &Transaction<'_>,
    events: &mut [(usize, &AccessEvent)],
    encoded: Option<&Encoded>,
) -> Result<(), StoreError> {
    // Each event's key worked out once, not at every comparison.
    let mut keyed: Vec<_> = events
        .iter()
        .map(|&(i, e)| {
            (
                e.time_ms().div_euclid(HOUR_MS),
                e.retention_class().id(),
                e.time_ms(),
                e.id,
                (i, e),
            )
        })
        .collect();
    keyed.sort_unstable_by_key(|&(hour, class, time, id, _)| (hour, class, time, id));
    for (slot, (.., e)) in events.iter_mut().zip(keyed) {
        *slot = e;
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO event_blocks (hour, class, first_ms, last_ms, events, hosts, \
             categories, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(classify)?;
    let mut plain = Vec::with_capacity(events.len() * 160);
    let mut data = Vec::new();
    for block in events.chunk_by(|(_, a), (_, b)| {
        a.time_ms().div_euclid(HOUR_MS) == b.time_ms().div_euclid(HOUR_MS)
            && a.retention_class() == b.retention_class()
    }) {
        let (first, last) = (block[0].1, block[block.len() - 1].1);
        plain.clear();
        let mut seen = HashSet::with_capacity(64);
        let (mut hosts, mut categories) = (String::new(), 0u64);
        for &(i, e) in block {
            if seen.insert(e.host.as_str()) {
                hosts.push_str(&e.host);
                hosts.push('\n');
            }
            categories |= e.categories.bits();
            match encoded {
                Some(bytes) => plain.extend_from_slice(bytes.get(i)),
                None => encode_into(e, &mut plain),
            }
        }
        compress(&plain, &mut data)?;
        stmt.execute(params![
            first.time_ms().div_euclid(HOUR_MS),
            first.retention_class().id(),
            first.time_ms(),
            last.time_ms(),
            block.len() as i64,
            hosts,
            categories as i64,
            data,
        ])
        .map_err(classify)?;
    }
    Ok(())
}

/// `data` becomes a [`FORMAT_LZ4`] block of the postcard stream `plain`.
fn compress(plain: &[u8], data: &mut Vec<u8>) -> Result<(), StoreError> {
    let len = u32::try_from(plain.len())
        .ok()
        .filter(|&n| n as usize <= MAX_BLOCK_BYTES)
        .ok_or_else(|| StoreError::Data {
            code: None,
            message: format!("an event block of {} bytes is too large", plain.len()),
        })?;
    data.clear();
    data.push(FORMAT_LZ4);
    data.extend_from_slice(&len.to_le_bytes());
    data.resize(5 + lz4_flex::block::get_maximum_output_size(plain.len()), 0);
    let n =
        lz4_flex::block::compress_into(plain, &mut data[5..]).map_err(|e| StoreError::Data {
            code: None,
            message: format!("an event block cannot be compressed: {e}"),
        })?;
    data.truncate(5 + n);
    Ok(())
}

/// The postcard stream of block `rowid`: `data` itself, or decompressed into
/// `scratch`.
fn events_of<'a>(
    rowid: i64,
    data: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], StoreError> {
    match data.split_first() {
        None => Err(damaged(rowid, "it is empty".into())),
        Some((&FORMAT_PLAIN, rest)) => Ok(rest),
        Some((&FORMAT_LZ4, rest)) => {
            let Some((len, packed)) = rest.split_first_chunk::<4>() else {
                return Err(damaged(rowid, "its length is cut short".into()));
            };
            let len = u32::from_le_bytes(*len) as usize;
            // LZ4 cannot expand more than 255 times.
            if len > MAX_BLOCK_BYTES || len > packed.len().saturating_mul(255) {
                return Err(damaged(
                    rowid,
                    format!("it claims {len} bytes from {} compressed", packed.len()),
                ));
            }
            scratch.clear();
            scratch.resize(len, 0);
            let n = lz4_flex::block::decompress_into(packed, scratch)
                .map_err(|e| damaged(rowid, format!("LZ4: {e}")))?;
            if n != len {
                return Err(damaged(rowid, format!("{n} bytes where it claims {len}")));
            }
            Ok(scratch.as_slice())
        }
        Some((&format, _)) => Err(damaged(rowid, format!("unknown format {format}"))),
    }
}

/// Which blocks a scan reads: each test, when given, skips the blocks that
/// cannot hold a match (the caller still tests each event).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Narrow<'a> {
    /// Only blocks of this retention class.
    pub class: Option<RetentionClass>,
    /// Only blocks with a host containing this text.
    pub host: Option<&'a str>,
    /// Only blocks with an event in one of these category bits.
    pub categories: Option<u64>,
}

impl Narrow<'_> {
    pub fn class(class: RetentionClass) -> Narrow<'static> {
        Narrow {
            class: Some(class),
            ..Narrow::default()
        }
    }
}

/// Calls `visit` with every event with `lo <= time_ms < hi` in the blocks
/// `narrow` lets through, in no particular order; `visit` may stop the scan by
/// returning `false`.
pub(super) fn scan(
    conn: &Connection,
    (lo, hi): (i64, i64),
    narrow: Narrow<'_>,
    mut visit: impl FnMut(&Stored<'_>) -> bool,
) -> Result<(), StoreError> {
    if hi <= lo {
        return Ok(());
    }
    let (first_hour, last_hour) = (lo.div_euclid(HOUR_MS), (hi - 1).div_euclid(HOUR_MS));
    let mut stmt = conn
        .prepare_cached(
            "SELECT rowid, data FROM event_blocks WHERE hour >= ?1 AND hour <= ?2 \
             AND first_ms < ?4 AND last_ms >= ?3 AND (?5 IS NULL OR class = ?5) \
             AND (?6 IS NULL OR instr(hosts, ?6) > 0) \
             AND (?7 IS NULL OR (categories & ?7) != 0)",
        )
        .map_err(classify)?;
    let mut rows = stmt
        .query(params![
            first_hour,
            last_hour,
            lo,
            hi,
            narrow.class.map(RetentionClass::id),
            narrow.host,
            narrow.categories.map(|bits| bits as i64),
        ])
        .map_err(classify)?;
    let mut scratch = Vec::new();
    while let Some(row) = rows.next().map_err(classify)? {
        let rowid: i64 = row.get(0).map_err(classify)?;
        let data = row
            .get_ref(1)
            .map_err(classify)?
            .as_blob()
            .map_err(|e| StoreError::Data {
                code: None,
                message: format!("event block {rowid}: {e}"),
            })?;
        let mut events = Events::new(rowid, events_of(rowid, data, &mut scratch)?);
        while let Some(e) = events.next_event()? {
            let t = e.time_ms();
            if t >= lo && t < hi && !visit(&e) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The events of one block, read one at a time.
struct Events<'a> {
    rowid: i64,
    rest: &'a [u8],
    read: usize,
}

impl<'a> Events<'a> {
    /// The events of `stream`, postcard after postcard.
    fn new(rowid: i64, stream: &'a [u8]) -> Events<'a> {
        Events {
            rowid,
            rest: stream,
            read: 0,
        }
    }

    fn next_event(&mut self) -> Result<Option<Stored<'a>>, StoreError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let (e, rest) = postcard::take_from_bytes::<Stored<'a>>(self.rest)
            .map_err(|e| damaged(self.rowid, format!("event {} of it: {e}", self.read + 1)))?;
        self.rest = rest;
        self.read += 1;
        Ok(Some(e))
    }
}

fn damaged(rowid: i64, what: String) -> StoreError {
    StoreError::Data {
        code: None,
        message: format!("event block {rowid} cannot be read: {what}"),
    }
}

/// The ids stored in blocks with events in `[lo, hi]`.
pub(super) fn ids(conn: &Connection, (lo, hi): (i64, i64)) -> Result<HashSet<Ulid>, StoreError> {
    let mut out = HashSet::new();
    scan(conn, (lo, hi.saturating_add(1)), Narrow::default(), |e| {
        out.insert(e.id);
        true
    })?;
    Ok(out)
}

/// Deletes the blocks of `class` before `cutoff_hour`, a few at a time;
/// returns how many events they held.
pub(super) fn purge(
    conn: &Connection,
    cutoff_hour: i64,
    class: RetentionClass,
) -> Result<u64, StoreError> {
    let mut events = 0u64;
    let mut stmt = conn
        .prepare_cached(
            "DELETE FROM event_blocks WHERE rowid IN (SELECT rowid FROM event_blocks \
             WHERE hour < ?1 AND class = ?2 LIMIT ?3) RETURNING events",
        )
        .map_err(classify)?;
    loop {
        let mut blocks = 0;
        let mut rows = stmt
            .query(params![cutoff_hour, class.id(), PURGE_BLOCKS])
            .map_err(classify)?;
        while let Some(row) = rows.next().map_err(classify)? {
            blocks += 1;
            events += u64::try_from(row.get::<_, i64>(0).map_err(classify)?).unwrap_or(0);
        }
        if blocks < PURGE_BLOCKS {
            return Ok(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use schoolgate_classifier::Category;

    use super::*;

    /// Every event of `data`, made whole.
    fn decode(rowid: i64, data: &[u8]) -> Result<Vec<AccessEvent>, StoreError> {
        let mut scratch = Vec::new();
        let mut events = Events::new(rowid, events_of(rowid, data, &mut scratch)?);
        let mut out = Vec::new();
        while let Some(e) = events.next_event()? {
            out.push(e.to_event());
        }
        Ok(out)
    }

    fn full_event() -> AccessEvent {
        AccessEvent {
            id: Ulid::from_parts(1_709_600_000_123, 77),
            time: Timestamp::from_millisecond(1_709_600_000_123).unwrap(),
            source: Source::Transparent,
            school: "north".into(),
            node: "node-2".into(),
            client_ip: "2001:db8::7".parse().unwrap(),
            user: Some("ab12".into()),
            device: Some("laptop-3".into()),
            role: "pupil".into(),
            method: "GET".into(),
            host: "www.example.com".into(),
            path: "/search?q=x".into(),
            search_terms: "x".into(),
            action: Action::Block,
            categories: [Category::Proxy, Category::Gambling].into_iter().collect(),
            severity: Some(Severity::Medium),
            rule: "category proxy".into(),
            reason: "Proxies and VPNs".into(),
            status: 403,
            bytes_up: 1_234,
            bytes_down: u64::MAX,
            duration_us: 4_321,
            cached: true,
        }
    }

    /// The postcard stream of `events`, and a block of it in each format.
    fn blocks_of(events: &[AccessEvent]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut stream = Vec::new();
        for e in events {
            encode_into(e, &mut stream);
        }
        let plain = [&[FORMAT_PLAIN][..], &stream].concat();
        let mut packed = Vec::new();
        compress(&stream, &mut packed).unwrap();
        (stream, plain, packed)
    }

    #[test]
    fn a_view_reads_what_an_event_wrote() {
        let mut empty = full_event();
        empty.user = None;
        empty.device = Some(String::new());
        empty.categories = CategorySet::EMPTY;
        empty.severity = None;
        let (_, plain, packed) = blocks_of(&[full_event(), empty.clone()]);
        empty.device = None;
        assert_eq!(packed[0], FORMAT_LZ4);
        for data in [plain, packed] {
            assert_eq!(decode(3, &data).unwrap(), vec![full_event(), empty.clone()]);
        }
    }

    /// A thousand events of one school and hour, as the writer blocks them:
    /// LZ4 keeps well under half of the bytes.
    #[test]
    fn a_block_compresses() {
        let events: Vec<AccessEvent> = (0..1_000u32)
            .map(|i| {
                let mut e = full_event();
                e.id = Ulid::from_parts(e.id.timestamp_ms() + u64::from(i), u128::from(i) * 7_919);
                e.time = Timestamp::from_millisecond(e.time_ms() + i64::from(i)).unwrap();
                e.host = format!("host{}.example.com", i % 37);
                e.user = Some(format!("pupil{}", i % 120));
                e.bytes_down = u64::from(i) * 1_337;
                e
            })
            .collect();
        let (stream, _, packed) = blocks_of(&events);
        assert!(
            packed.len() * 2 < stream.len(),
            "{} of {}",
            packed.len(),
            stream.len()
        );
        assert_eq!(decode(1, &packed).unwrap(), events);
    }

    #[test]
    fn a_damaged_block_is_an_error_naming_it() {
        let (_, plain, packed) = blocks_of(&[full_event()]);
        for cut in 2..plain.len() {
            let msg = decode(7, &plain[..cut])
                .expect_err("a cut event")
                .to_string();
            assert!(
                msg.contains("event block 7 cannot be read: event 1"),
                "{msg}"
            );
        }
        assert!(decode(7, &plain[..1]).unwrap().is_empty(), "no events");
        for cut in 1..packed.len() {
            let msg = decode(7, &packed[..cut])
                .expect_err("a cut block")
                .to_string();
            assert!(msg.contains("event block 7 cannot be read"), "{cut}: {msg}");
        }
        // A length no block could have: refused before any allocation.
        let mut huge = packed.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let msg = decode(7, &huge).expect_err("length").to_string();
        assert!(msg.contains("claims 4294967295 bytes"), "{msg}");
        // Bytes changed inside the compressed events: an error, whatever it hits.
        for at in 5..packed.len() {
            let mut bad = packed.clone();
            bad[at] ^= 0xA5;
            if let Ok(events) = decode(7, &bad) {
                assert_eq!(events.len(), 1, "byte {at}");
            }
        }
        let msg = decode(7, &[9]).expect_err("format").to_string();
        assert!(msg.contains("unknown format 9"), "{msg}");
        let msg = decode(7, &[]).expect_err("empty").to_string();
        assert!(msg.contains("it is empty"), "{msg}");
    }
}
