//! The dead-letter file: batches the store rejected as bad data, kept for a person
//! to look at (and, once the cause is fixed, to re-import). Never retried
//! automatically, never dropped.
//!
//! One JSON object per line:
//! `{"time": "...", "batch": "<first-ulid>-<count>", "store": "clickhouse",
//!   "error": "<the server's message>", "events": [...]}`.
//! A spool record that could not be decoded at all is written with `"raw"` (its
//! bytes, lossily as UTF-8) instead of `"events"`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::event::{AccessEvent, BatchId};

/// One line of the dead-letter file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub time: Timestamp,
    pub batch: String,
    pub store: String,
    /// The store's message, verbatim (for ClickHouse: `Code: 27, ...`).
    pub error: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<AccessEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// Appends [`DeadLetter`] lines and fsyncs each one: the pipeline acknowledges the
/// spool only after the dead letter is on disk.
#[derive(Debug)]
pub struct DeadLetterFile {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl DeadLetterFile {
    /// Opens lazily: most deployments never write a dead letter, and the file
    /// should not exist until one does.
    pub fn new(path: impl Into<PathBuf>) -> DeadLetterFile {
        DeadLetterFile {
            path: path.into(),
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write_events(
        &self,
        batch: BatchId,
        store: &str,
        error: &str,
        events: &[AccessEvent],
    ) -> io::Result<()> {
        self.write(&DeadLetter {
            time: Timestamp::now(),
            batch: batch.to_string(),
            store: store.to_owned(),
            error: error.to_owned(),
            events: events.to_vec(),
            raw: None,
        })
    }

    pub fn write_raw(&self, error: &str, raw: &[u8]) -> io::Result<()> {
        self.write(&DeadLetter {
            time: Timestamp::now(),
            batch: String::new(),
            store: "spool".to_owned(),
            error: error.to_owned(),
            events: Vec::new(),
            raw: Some(String::from_utf8_lossy(raw).into_owned()),
        })
    }

    fn write(&self, letter: &DeadLetter) -> io::Result<()> {
        let mut line = serde_json::to_vec(letter).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut guard = self
            .file
            .lock()
            .map_err(|_| io::Error::other("dead-letter lock poisoned"))?;
        if guard.is_none() {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)?;
            }
            *guard = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let file = guard
            .as_mut()
            .ok_or_else(|| io::Error::other("dead-letter file not open"))?;
        file.write_all(&line)?;
        file.sync_data()
    }

    /// Reads every line back (for tests and the dashboard's dead-letter view).
    pub fn read_all(path: &Path) -> io::Result<Vec<DeadLetter>> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(io::Error::other))
            .collect()
    }
}
