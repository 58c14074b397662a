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
//!   index is on `(hour, first_ms)`.
//! - `data` is [`FORMAT`] (one byte), then each event in postcard, as the
//!   journal writes them (id and time as numbers). A block that cannot be read
//!   is an error naming it, never a silent gap.
//! - Flagged events stay rows of `events`, with the indexes the review queue,
//!   the incident links and the timeline need; a block never holds one.
//! - Deduplication: a batch marked `maybe_stored` (a retry or a replay) is
//!   checked against the ids already stored in the hours it covers, and an
//!   event twice in it is kept once. A fresh batch is not checked.

use std::collections::HashSet;

use rusqlite::{Connection, Transaction, params};
use ulid::Ulid;

use super::{HOUR_MS, classify};
use crate::event::{AccessEvent, RetentionClass};
use crate::store::StoreError;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS event_blocks (
    hour     INTEGER NOT NULL, -- unix ms / 3 600 000 of every event in it
    class    INTEGER NOT NULL, -- retention class of every event in it
    first_ms INTEGER NOT NULL,
    last_ms  INTEGER NOT NULL,
    events   INTEGER NOT NULL,
    data     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS event_blocks_time ON event_blocks(hour, first_ms);
";

/// The first byte of `data`: how the events in it are written.
const FORMAT: u8 = 1;

/// Blocks deleted per purge transaction.
const PURGE_BLOCKS: i64 = 1_000;

/// Stores `events` (none flagged) as blocks, one per hour and retention class.
pub(super) fn insert(tx: &Transaction<'_>, events: &mut [&AccessEvent]) -> Result<(), StoreError> {
    // Each event's key worked out once, not at every comparison.
    let mut keyed: Vec<_> = events
        .iter()
        .map(|&e| {
            (
                e.time_ms().div_euclid(HOUR_MS),
                e.retention_class().id(),
                e.time_ms(),
                e.id,
                e,
            )
        })
        .collect();
    keyed.sort_unstable_by_key(|&(hour, class, time, id, _)| (hour, class, time, id));
    for (slot, (.., e)) in events.iter_mut().zip(keyed) {
        *slot = e;
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO event_blocks (hour, class, first_ms, last_ms, events, data) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(classify)?;
    let mut data = Vec::with_capacity(events.len() * 160);
    for block in events.chunk_by(|a, b| {
        a.time_ms().div_euclid(HOUR_MS) == b.time_ms().div_euclid(HOUR_MS)
            && a.retention_class() == b.retention_class()
    }) {
        let (first, last) = (block[0], block[block.len() - 1]);
        data.clear();
        data.push(FORMAT);
        for e in block {
            data = postcard::to_extend(*e, std::mem::take(&mut data)).map_err(|err| {
                StoreError::Data {
                    code: None,
                    message: format!("event {} cannot be encoded: {err}", e.id),
                }
            })?;
        }
        stmt.execute(params![
            first.time_ms().div_euclid(HOUR_MS),
            first.retention_class().id(),
            first.time_ms(),
            last.time_ms(),
            block.len() as i64,
            data,
        ])
        .map_err(classify)?;
    }
    Ok(())
}

/// Calls `visit` with every event in a block with `lo <= time_ms < hi`, of
/// `class` only when given, in no particular order; `visit` may stop the scan
/// by returning `false`.
pub(super) fn scan(
    conn: &Connection,
    (lo, hi): (i64, i64),
    class: Option<RetentionClass>,
    mut visit: impl FnMut(AccessEvent) -> bool,
) -> Result<(), StoreError> {
    if hi <= lo {
        return Ok(());
    }
    let (first_hour, last_hour) = (lo.div_euclid(HOUR_MS), (hi - 1).div_euclid(HOUR_MS));
    let mut stmt = conn
        .prepare_cached(
            "SELECT rowid, data FROM event_blocks WHERE hour >= ?1 AND hour <= ?2 \
             AND first_ms < ?4 AND last_ms >= ?3 AND (?5 IS NULL OR class = ?5)",
        )
        .map_err(classify)?;
    let mut rows = stmt
        .query(params![
            first_hour,
            last_hour,
            lo,
            hi,
            class.map(RetentionClass::id)
        ])
        .map_err(classify)?;
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
        for e in decode(rowid, data)? {
            let t = e.time_ms();
            if t >= lo && t < hi && !visit(e) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The events of block `rowid`.
fn decode(rowid: i64, data: &[u8]) -> Result<Vec<AccessEvent>, StoreError> {
    let bad = |what: String| StoreError::Data {
        code: None,
        message: format!("event block {rowid} cannot be read: {what}"),
    };
    let Some((&format, mut rest)) = data.split_first() else {
        return Err(bad("it is empty".into()));
    };
    if format != FORMAT {
        return Err(bad(format!("unknown format {format}")));
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (e, tail) = postcard::take_from_bytes::<AccessEvent>(rest)
            .map_err(|e| bad(format!("event {} of it: {e}", out.len() + 1)))?;
        out.push(e);
        rest = tail;
    }
    Ok(out)
}

/// The ids stored in blocks with events in `[lo, hi]`.
pub(super) fn ids(conn: &Connection, (lo, hi): (i64, i64)) -> Result<HashSet<Ulid>, StoreError> {
    let mut out = HashSet::new();
    scan(conn, (lo, hi.saturating_add(1)), None, |e| {
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
    use super::*;

    #[test]
    fn a_damaged_block_is_an_error_naming_it() {
        let mut e = AccessEvent::new(
            crate::event::Source::Dns,
            "10.0.0.1".parse().unwrap(),
            "a.example",
        );
        e.path = "/x".into();
        let data = postcard::to_extend(&e, vec![FORMAT]).unwrap();
        assert_eq!(decode(7, &data).unwrap(), vec![e.clone()]);
        for cut in 1..data.len() {
            let err = decode(7, &data[..cut]);
            if cut == 1 {
                assert!(
                    err.unwrap().is_empty(),
                    "just the format byte is an empty block"
                );
            } else {
                let msg = err.expect_err("a cut event").to_string();
                assert!(msg.contains("event block 7 cannot be read"), "{msg}");
            }
        }
        let msg = decode(7, &[9]).expect_err("format").to_string();
        assert!(msg.contains("unknown format 9"), "{msg}");
        assert!(decode(7, &[]).is_err());
    }
}
