//! The configuration's version history: every configuration schoolgate ran, with
//! who changed it, when, what changed and why. This is the "documented record of
//! what is blocked and why" the DfE standard asks for; the Change history page
//! shows it with line diffs.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::audit::{self, AuditEntry, hex};
use crate::error::Result;
use crate::state::ts;

#[derive(Clone, Debug, Serialize)]
pub struct Version {
    pub id: i64,
    pub time: jiff::Timestamp,
    pub actor: String,
    pub reason: String,
    pub summary: Vec<String>,
    pub sha256: String,
}

pub fn sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// Stores a version and its audit entry in one transaction.
pub fn record(
    conn: &mut Connection,
    time_ms: i64,
    who: &AuditEntry<'_>,
    summary: &[String],
    text: &str,
) -> Result<i64> {
    let tx = conn.transaction()?;
    let summary_json = serde_json::to_string(summary).unwrap_or_else(|_| "[]".into());
    tx.execute(
        "INSERT INTO config_versions (time_ms, actor, reason, summary, sha256, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![time_ms, who.actor, who.reason, summary_json, sha256(text), text],
    )?;
    let id = tx.last_insert_rowid();
    let target = format!("configuration version {id}");
    let detail = summary.join("; ");
    audit::append(
        &tx,
        time_ms,
        &AuditEntry {
            target: &target,
            detail: &detail,
            ..who.clone()
        },
    )?;
    tx.commit()?;
    Ok(id)
}

/// Records the file as a version when it differs from the last one recorded
/// (first start, or edited outside the dashboard), so the history has no gaps.
pub fn record_file_at_start(app: &App) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(&app.config_path) else {
        // The binary read the file a moment ago; if it is gone now, there is
        // nothing to record and the editor will say so.
        return Ok(());
    };
    let sha = sha256(&text);
    let now = app.clock.now_ms();
    app.db.call_blocking(|c| {
        let last: Option<String> = c
            .query_row(
                "SELECT sha256 FROM config_versions ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if last.as_deref() == Some(sha.as_str()) {
            return Ok(());
        }
        let reason = if last.is_none() {
            "the configuration schoolgate first ran with"
        } else {
            "changed outside the dashboard (found at start)"
        };
        record(
            c,
            now,
            &AuditEntry {
                actor: "schoolgate",
                role: "",
                action: "recorded configuration",
                target: "",
                reason,
                detail: "",
            },
            &["whole file".to_owned()],
            &text,
        )?;
        Ok(())
    })
}

pub fn list(conn: &Connection, limit: usize) -> Result<Vec<Version>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, time_ms, actor, reason, summary, sha256 FROM config_versions ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([i64::try_from(limit).unwrap_or(100)], |r| {
        let summary: String = r.get(4)?;
        Ok(Version {
            id: r.get(0)?,
            time: ts(r.get(1)?),
            actor: r.get(2)?,
            reason: r.get(3)?,
            summary: serde_json::from_str(&summary).unwrap_or_default(),
            sha256: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A version with its text and the text of the version before it.
pub fn get(conn: &Connection, id: i64) -> Result<Option<(Version, String, Option<String>)>> {
    let v = conn
        .query_row(
            "SELECT id, time_ms, actor, reason, summary, sha256, text FROM config_versions WHERE id = ?1",
            [id],
            |r| {
                let summary: String = r.get(4)?;
                Ok((
                    Version {
                        id: r.get(0)?,
                        time: ts(r.get(1)?),
                        actor: r.get(2)?,
                        reason: r.get(3)?,
                        summary: serde_json::from_str(&summary).unwrap_or_default(),
                        sha256: r.get(5)?,
                    },
                    r.get::<_, String>(6)?,
                ))
            },
        )
        .optional()?;
    let Some((v, text)) = v else { return Ok(None) };
    let prev: Option<String> = conn
        .query_row(
            "SELECT text FROM config_versions WHERE id < ?1 ORDER BY id DESC LIMIT 1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(Some((v, text, prev)))
}

/// One line of a diff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum DiffLine {
    Same(String),
    Added(String),
    Removed(String),
    /// Unchanged lines left out.
    Skipped(usize),
}

/// A line diff: common prefix and suffix trimmed, the middle by longest common
/// subsequence (bounded: a middle too large for the table is shown as replaced).
pub fn diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let pre = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut mid = Vec::new();
    if am.len().saturating_mul(bm.len()) > 4_000_000 {
        mid.extend(am.iter().map(|l| DiffLine::Removed((*l).to_owned())));
        mid.extend(bm.iter().map(|l| DiffLine::Added((*l).to_owned())));
    } else {
        let (n, m) = (am.len(), bm.len());
        let mut t = vec![0u32; (n + 1) * (m + 1)];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                t[i * (m + 1) + j] = if am[i] == bm[j] {
                    t[(i + 1) * (m + 1) + j + 1] + 1
                } else {
                    t[(i + 1) * (m + 1) + j].max(t[i * (m + 1) + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                mid.push(DiffLine::Same(am[i].to_owned()));
                i += 1;
                j += 1;
            } else if j < m && (i == n || t[i * (m + 1) + j + 1] >= t[(i + 1) * (m + 1) + j]) {
                mid.push(DiffLine::Added(bm[j].to_owned()));
                j += 1;
            } else {
                mid.push(DiffLine::Removed(am[i].to_owned()));
                i += 1;
            }
        }
    }
    // Three lines of context each side, like `diff -u`.
    let mut out = Vec::new();
    let ctx = 3;
    if pre > ctx {
        out.push(DiffLine::Skipped(pre - ctx));
    }
    out.extend(
        a[pre.saturating_sub(ctx)..pre]
            .iter()
            .map(|l| DiffLine::Same((*l).to_owned())),
    );
    out.extend(mid);
    let tail = &a[a.len() - suf..];
    out.extend(
        tail.iter()
            .take(ctx)
            .map(|l| DiffLine::Same((*l).to_owned())),
    );
    if suf > ctx {
        out.push(DiffLine::Skipped(suf - ctx));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changed_lines_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\n";
        let d = diff(old, new);
        assert!(d.contains(&DiffLine::Removed("e".into())));
        assert!(d.contains(&DiffLine::Added("E".into())));
        assert_eq!(d.first(), Some(&DiffLine::Skipped(1)));
    }
}
