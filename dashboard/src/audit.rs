//! The audit log: who looked at whose activity, and who changed what, with why.
//!
//! Append-only three ways: no code here updates or deletes; the table's triggers
//! refuse it to anyone else using the file; and each row's `hash` is SHA-256 of the
//! previous row's hash and this row's fields, so rows edited or removed after the
//! triggers were dropped break the chain, which [`verify`] reports and the Audit
//! page shows. (A hash chain cannot stop someone with the file rewriting all of it;
//! an off-box copy of the latest hash, e.g. in the weekly report, would.)

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::state::ts;

/// One thing that happened, as the caller describes it.
#[derive(Clone, Debug)]
pub struct AuditEntry<'a> {
    /// The dashboard user (or `schoolgate` / `command line`).
    pub actor: &'a str,
    /// The actor's role when it happened.
    pub role: &'a str,
    /// A short verb phrase: `viewed timeline`, `changed policy`, `login failed`.
    pub action: &'a str,
    /// Whom or what: `user j.smith`, `roles.pupil`, `incident INC-2026-0003`.
    pub target: &'a str,
    /// Why, in the actor's words or the purpose the page states.
    pub reason: &'a str,
    /// Anything else worth keeping (filters, changes), one line.
    pub detail: &'a str,
}

/// A stored row.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub time: jiff::Timestamp,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub target: String,
    pub reason: String,
    pub detail: String,
    pub hash: String,
}

const GENESIS: &str = "schoolgate-audit-v1";

/// Appends one entry at `time_ms`, chained to the last. Runs inside the caller's
/// connection so an audited change and its entry can share a transaction.
pub fn append(conn: &Connection, time_ms: i64, e: &AuditEntry<'_>) -> Result<i64> {
    let last: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev) = match last {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS.to_owned()),
    };
    let hash = chain_hash(
        &prev,
        seq,
        time_ms,
        [e.actor, e.role, e.action, e.target, e.reason, e.detail],
    );
    conn.execute(
        "INSERT INTO audit (seq, time_ms, actor, role, action, target, reason, detail, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![seq, time_ms, e.actor, e.role, e.action, e.target, e.reason, e.detail, prev, hash],
    )?;
    Ok(seq)
}

fn chain_hash(prev: &str, seq: i64, time_ms: i64, fields: [&str; 6]) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(time_ms.to_be_bytes());
    for f in fields {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") hash differently.
        h.update((f.len() as u64).to_be_bytes());
        h.update(f.as_bytes());
    }
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Substring of the target (`user j.smith`).
    pub target: Option<String>,
    pub before_seq: Option<i64>,
    pub limit: usize,
}

/// Newest first.
pub fn list(conn: &Connection, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, time_ms, actor, role, action, target, reason, detail, hash FROM audit \
         WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR instr(target, ?2) > 0) \
         AND (?3 IS NULL OR seq < ?3) ORDER BY seq DESC LIMIT ?4",
    )?;
    let limit = i64::try_from(f.limit.clamp(1, 1000)).unwrap_or(100);
    let rows = stmt.query_map(params![f.actor, f.target, f.before_seq, limit], |r| {
        Ok(AuditRecord {
            seq: r.get(0)?,
            time: ts(r.get(1)?),
            actor: r.get(2)?,
            role: r.get(3)?,
            action: r.get(4)?,
            target: r.get(5)?,
            reason: r.get(6)?,
            detail: r.get(7)?,
            hash: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The chain's state.
#[derive(Clone, Debug, Serialize)]
pub struct ChainStatus {
    pub entries: i64,
    /// The first row whose hash does not follow, if any.
    pub broken_at: Option<i64>,
    pub last_hash: String,
}

/// Walks the whole chain (a few hundred thousand rows a second).
pub fn verify(conn: &Connection) -> Result<ChainStatus> {
    let mut stmt = conn.prepare(
        "SELECT seq, time_ms, actor, role, action, target, reason, detail, prev_hash, hash \
         FROM audit ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut prev = GENESIS.to_owned();
    let mut expected_seq = 1;
    let mut entries = 0;
    let mut broken_at = None;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let fields: [String; 6] = [
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
        ];
        let stored_prev: String = r.get(8)?;
        let hash: String = r.get(9)?;
        let f: [&str; 6] = [
            &fields[0], &fields[1], &fields[2], &fields[3], &fields[4], &fields[5],
        ];
        let ok = seq == expected_seq
            && stored_prev == prev
            && chain_hash(&prev, seq, r.get(1)?, f) == hash;
        if !ok && broken_at.is_none() {
            broken_at = Some(seq);
        }
        entries += 1;
        expected_seq = seq + 1;
        prev = hash;
    }
    Ok(ChainStatus {
        entries,
        broken_at,
        last_hash: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().expect("memory db");
        c.execute_batch(
            "CREATE TABLE audit (seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, actor TEXT NOT NULL, \
             role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL, \
             detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);",
        )
        .expect("schema");
        c
    }

    fn entry(action: &str) -> AuditEntry<'_> {
        AuditEntry {
            actor: "dsl",
            role: "esafety-lead",
            action,
            target: "user j.smith",
            reason: "review",
            detail: "",
        }
    }

    #[test]
    fn the_chain_verifies_and_shows_an_edit() {
        let c = db();
        for a in ["one", "two", "three"] {
            append(&c, 1_000, &entry(a)).expect("append");
        }
        let ok = verify(&c).expect("verify");
        assert_eq!((ok.entries, ok.broken_at), (3, None));
        c.execute(
            "UPDATE audit SET target = 'user someone.else' WHERE seq = 2",
            [],
        )
        .expect("no triggers in this test db");
        assert_eq!(verify(&c).expect("verify").broken_at, Some(2));
    }
}
