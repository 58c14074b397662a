//! The alert outbox: every alert delivery (one email, one webhook POST) is a file
//! here before anyone tries to send it, so a mail server or webhook that is down,
//! or a restart, delays an alert but never loses it.
//!
//! Invariants:
//! - a delivery is written to `NAME.json.tmp`, synced, then renamed to
//!   `NAME.json` (and the folder synced): a file named `*.json` is always whole;
//! - a delivery is removed only after its channel accepted it (SMTP `250`, HTTP
//!   `2xx`), so a crash between sending and removing sends it again: alerts are
//!   at-least-once, never at-most-once;
//! - a delivery the channel refuses for good (a bad address, HTTP 4xx) is moved
//!   to `failed/` with the reason beside it, for the network manager to see; a
//!   file that cannot be read is moved there too rather than blocking the queue.
//!
//! Alerts are rare (at most `[alerts] daily_cap` a day plus notices), so the
//! small synchronous writes here do not hold up the runtime.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One message to deliver on one channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Unique and file-name safe (`alert-<event id>-email`).
    pub id: String,
    pub created: Timestamp,
    pub channel: Channel,
}

/// Where a delivery goes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Channel {
    Email {
        to: Vec<String>,
        subject: String,
        body: String,
    },
    Webhook {
        url: String,
        payload: serde_json::Value,
    },
}

/// The outbox folder.
#[derive(Clone, Debug)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// Opens (creating) the folder and its `failed/`.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Outbox> {
        let dir = dir.into();
        fs::create_dir_all(dir.join("failed"))?;
        Ok(Outbox { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{}.json", safe_name(id)))
    }

    /// Writes a delivery durably.
    pub fn put(&self, d: &Delivery) -> io::Result<()> {
        let path = self.path(&d.id);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(d).map_err(io::Error::other)?;
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)
    }

    /// Removes a delivered delivery.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => sync_dir(&self.dir),
        }
    }

    /// Moves a delivery that can never succeed to `failed/`, with the reason.
    pub fn fail(&self, id: &str, reason: &str) -> io::Result<()> {
        let name = safe_name(id);
        let failed = self.dir.join("failed");
        fs::write(failed.join(format!("{name}.reason.txt")), reason)?;
        match fs::rename(self.path(id), failed.join(format!("{name}.json"))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => sync_dir(&self.dir),
        }
    }

    /// Every delivery waiting, oldest first.
    pub fn pending(&self) -> io::Result<Vec<Delivery>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Delivery>(&b).map_err(|e| e.to_string()))
            {
                Ok(d) => out.push(d),
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "unreadable alert delivery moved to failed/");
                    if let Some(name) = path.file_name() {
                        let _ = fs::rename(&path, self.dir.join("failed").join(name));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Deliveries that failed for good (their ids).
    pub fn failed(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.dir.join("failed"))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json") {
                out.push(id.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }
}

fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Makes the rename or removal itself durable (POSIX: the folder's entry).
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_pending_remove_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(dir.path()).expect("open");
        let d = |id: &str, sec: i64| Delivery {
            id: id.to_owned(),
            created: Timestamp::from_second(sec).expect("valid"),
            channel: Channel::Webhook {
                url: "http://127.0.0.1:1/".to_owned(),
                payload: serde_json::json!({"text": "hi"}),
            },
        };
        outbox.put(&d("b", 2)).expect("put");
        outbox.put(&d("a", 1)).expect("put");
        fs::write(dir.path().join("torn.json"), b"{").expect("write");
        let ids: Vec<_> = outbox
            .pending()
            .expect("pending")
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        outbox.remove("a").expect("remove");
        outbox.fail("b", "HTTP 404").expect("fail");
        assert!(outbox.pending().expect("pending").is_empty());
        assert_eq!(outbox.failed().expect("failed"), ["b", "torn"]);
    }
}
