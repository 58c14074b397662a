//! The disk spool: where events wait when the in-memory queue is full or the
//! store is down, so that memory stays bounded and nothing is lost.
//!
//! # Format
//!
//! A directory of segment files `<id:020>.seg` (ids only grow) and one `ledger`.
//! A segment is a sequence of records, each
//! `[len: u32 LE][crc32(payload): u32 LE][payload: len bytes]`; `len` is never 0.
//! The ledger holds the *acknowledged position* `(segment, offset)`: everything
//! before it has been confirmed stored (or dead-lettered) and may be deleted.
//!
//! # Invariants
//!
//! 1. Records are only ever appended, by one writer, to the newest segment
//!    opened by *this* process. Segments left by an earlier run are read-only, so a
//!    torn tail from a crash is never followed by good records in the same file.
//! 2. A record is returned by [`Spool::read_next`] only if its length is sane and
//!    its CRC matches: garbage is never replayed. A short or impossible header
//!    (a torn tail, or zeros left by a crash) skips the rest of that segment; a CRC
//!    mismatch skips that one record. Both are logged with `warn!` and counted.
//! 3. The ledger is written (temp file, `fsync`, rename) *before* any segment is
//!    deleted, and a segment is deleted only when every record in it lies before the
//!    acknowledged position. The pipeline acknowledges only after the store confirmed
//!    the insert (or the dead-letter file was synced).
//! 4. Acknowledgement is in order: `ack(p)` means "everything before `p`".
//!
//! # Durability and fsync policy
//!
//! - When [`Spool::append`] returns, the record is in the kernel's page cache: it
//!   survives the process being killed (SIGKILL, panic, OOM) but not yet a power cut.
//! - [`Spool::sync`] `fsync`s the segment being written; the pipeline calls it every
//!   `fsync_interval` (1 s by default) when something was written, and on shutdown.
//!   A segment is also `fsync`ed when it is rolled (it reaches `segment_bytes`), and
//!   the directory when a segment is created. So a power cut loses at most the last
//!   interval of *spooled* events.
//! - The ledger is `fsync`ed on every write.
//! - With `fsync: false` (the pipeline's journal) none of this happens: the
//!   records survive the process, not the machine.
//!
//! # What a crash leaves
//!
//! - mid-append: a torn record at the end of the newest segment. On restart that
//!   segment is read-only; the torn record is skipped with a warning (invariant 2).
//!   The caller of that append never got `Ok`, so nothing acknowledged is lost.
//! - after the store confirmed an insert, before `ack`: the batch is replayed on
//!   restart. Replays are marked `maybe_stored` and the stores deduplicate by event
//!   id, so this costs work, not duplicates.
//! - mid-ledger-write: the old ledger is intact (rename is atomic); as above.
//! - after the ledger, before deleting segments: on open, segments wholly before the
//!   acknowledged position are deleted.
//! - the ledger itself unreadable: a warning, and everything still on disk is
//!   replayed (deduplicated by the stores).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tracing::{debug, warn};

/// Bytes before each record's payload.
pub const RECORD_HEADER: u64 = 8;
/// A record larger than this is refused on write and treated as corruption on read:
/// a batch of 10 000 events is about 5 MB of JSON.
pub const MAX_RECORD: u32 = 64 << 20;

const LEDGER: &str = "ledger";
const LEDGER_TMP: &str = "ledger.tmp";
const LEDGER_MAGIC: &[u8; 8] = b"SGSPOOL1";
const LEDGER_LEN: usize = 8 + 8 + 8 + 4;
const SEGMENT_EXT: &str = "seg";

/// Errors of the spool. All are I/O on the spool directory, or a record the caller
/// should never have made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spool record of {len} bytes is larger than the {MAX_RECORD}-byte limit")]
    RecordTooLarge { len: usize },
    #[error("empty spool record")]
    EmptyRecord,
    #[error("spool lock poisoned (a thread panicked while writing)")]
    Poisoned,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Sizes of the spool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Past this many bytes on disk [`Spool::over_cap`] says so; the pipeline then
    /// refuses allowed events and keeps blocked/flagged ones (`spool_max_mb`).
    pub max_bytes: u64,
    /// A segment is rolled (fsynced, closed) at this size. Smaller segments free
    /// disk sooner after an outage; larger ones mean fewer files. 32 MiB.
    pub segment_bytes: u64,
    /// `fsync` at all (segments on roll and on [`Spool::sync`], the ledger on every
    /// acknowledgement, the directory on create). The spool keeps it on. The
    /// pipeline's journal turns it off: it guards against the *process* dying
    /// (the page cache survives that), is written on every `send` and acknowledged
    /// after every batch, and an `fsync` there would stall the hot path.
    pub fsync: bool,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            max_bytes: 2048 << 20,
            segment_bytes: 32 << 20,
            fsync: true,
        }
    }
}

/// A place in the spool: a segment and a byte offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// One record read back, and the position just after it (to acknowledge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub payload: Vec<u8>,
    pub end: Position,
}

/// The spool. All methods take `&self` and serialise on one mutex: appends come
/// from the senders' overflow path and from the batcher, reads and acks from the
/// batcher only.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    options: SpoolOptions,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Writer {
    id: u64,
    file: File,
    len: u64,
}

#[derive(Debug)]
struct Reader {
    id: u64,
    file: BufReader<File>,
    pos: u64,
}

#[derive(Debug)]
struct Inner {
    /// Segment id -> length in bytes, for every segment file on disk.
    segments: BTreeMap<u64, u64>,
    writer: Option<Writer>,
    reader: Option<Reader>,
    /// Everything before this is acknowledged (mirrors the ledger).
    acked: Position,
    /// The next record to read.
    read: Position,
    /// The end of the last record handed out by `read_next`.
    last_returned: Position,
    next_id: u64,
    bytes: u64,
    dirty: bool,
    skipped_records: u64,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`. Reading starts at the
    /// acknowledged position, so unacknowledged records of an earlier run are read
    /// again.
    pub fn open(dir: impl Into<PathBuf>, options: SpoolOptions) -> Result<Spool, SpoolError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut acked = read_ledger(&dir);
        let mut segments = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == LEDGER_TMP {
                // A ledger write that did not finish: the old ledger stands.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(id) = segment_id(&name) else {
                continue;
            };
            if id < acked.segment {
                // Acknowledged before a crash that came between the ledger write
                // and the deletion.
                debug!(segment = id, "deleting acknowledged spool segment");
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            let len = entry.metadata().map_err(io_err(&path))?.len();
            segments.insert(id, len);
        }
        // A ledger pointing at a segment that no longer exists (deleted after the
        // ledger was written): everything that remains is unacknowledged.
        if !segments.contains_key(&acked.segment) {
            acked = match segments.keys().next() {
                Some(&first) if first > acked.segment => Position {
                    segment: first,
                    offset: 0,
                },
                _ => Position {
                    segment: acked.segment,
                    offset: 0,
                },
            };
        }
        let next_id = segments
            .keys()
            .next_back()
            .copied()
            .unwrap_or(acked.segment)
            .max(acked.segment)
            + 1;
        let bytes = segments.values().sum();
        Ok(Spool {
            dir,
            options,
            inner: Mutex::new(Inner {
                segments,
                writer: None,
                reader: None,
                acked,
                read: acked,
                last_returned: acked,
                next_id,
                bytes,
                dirty: false,
                skipped_records: 0,
            }),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, SpoolError> {
        self.inner.lock().map_err(|_| SpoolError::Poisoned)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> SpoolOptions {
        self.options
    }

    /// Bytes of segment files on disk.
    pub fn bytes(&self) -> u64 {
        self.lock().map(|i| i.bytes).unwrap_or(0)
    }

    /// At or past `max_bytes`.
    pub fn over_cap(&self) -> bool {
        self.bytes() >= self.options.max_bytes
    }

    /// No segment files left: everything spooled was acknowledged.
    pub fn is_empty(&self) -> bool {
        self.lock().map(|i| i.segments.is_empty()).unwrap_or(false)
    }

    /// Records skipped as corrupt or torn since open.
    pub fn skipped_records(&self) -> u64 {
        self.lock().map(|i| i.skipped_records).unwrap_or(0)
    }

    /// The acknowledged position.
    pub fn acked(&self) -> Position {
        self.lock().map(|i| i.acked).unwrap_or_default()
    }

    /// Appends one record; returns the position just after it.
    pub fn append(&self, payload: &[u8]) -> Result<Position, SpoolError> {
        if payload.is_empty() {
            return Err(SpoolError::EmptyRecord);
        }
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or(SpoolError::RecordTooLarge { len: payload.len() })?;
        let mut record = Vec::with_capacity(payload.len() + RECORD_HEADER as usize);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(payload);

        let mut inner = self.lock()?;
        let inner = &mut *inner;
        self.ensure_writer(inner)?;
        let Some(writer) = inner.writer.as_mut() else {
            return Err(SpoolError::Poisoned);
        };
        if let Err(source) = writer.file.write_all(&record) {
            // Take the partial record back off so the segment never holds garbage
            // followed by good records; if even that fails, stop writing this
            // segment (a reader treats what follows its known length as absent).
            let path = segment_path(&self.dir, writer.id);
            if writer.file.set_len(writer.len).is_err() {
                warn!(path = %path.display(), "spool: could not truncate a failed write; sealing the segment");
                inner.writer = None;
            }
            inner.reader = None;
            return Err(SpoolError::Io { path, source });
        }
        writer.len += record.len() as u64;
        let end = Position {
            segment: writer.id,
            offset: writer.len,
        };
        inner.segments.insert(writer.id, writer.len);
        inner.bytes += record.len() as u64;
        inner.dirty = true;
        Ok(end)
    }

    /// Opens a new segment if there is none, or rolls a full one.
    fn ensure_writer(&self, inner: &mut Inner) -> Result<(), SpoolError> {
        if let Some(writer) = &inner.writer {
            if writer.len < self.options.segment_bytes {
                return Ok(());
            }
            if self.options.fsync {
                let path = segment_path(&self.dir, writer.id);
                writer.file.sync_data().map_err(io_err(&path))?;
            }
            inner.writer = None;
            inner.dirty = false;
        }
        let id = inner.next_id;
        let path = segment_path(&self.dir, id);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if self.options.fsync {
            sync_dir(&self.dir);
        }
        inner.next_id += 1;
        inner.segments.insert(id, 0);
        inner.writer = Some(Writer { id, file, len: 0 });
        Ok(())
    }

    /// Reads the next record after the last one read (or after the acknowledged
    /// position, right after open). `None` when everything written so far has been
    /// read.
    pub fn read_next(&self) -> Result<Option<Record>, SpoolError> {
        let mut guard = self.lock()?;
        let inner = &mut *guard;
        loop {
            let Some((&id, &len)) = inner.segments.range(inner.read.segment..).next() else {
                return self.caught_up(inner);
            };
            if id != inner.read.segment {
                inner.read = Position {
                    segment: id,
                    offset: 0,
                };
            }
            let writing = inner.writer.as_ref().is_some_and(|w| w.id == id);
            if inner.read.offset >= len {
                if writing {
                    return self.caught_up(inner);
                }
                inner.read = Position {
                    segment: id + 1,
                    offset: 0,
                };
                continue;
            }
            let remaining = len - inner.read.offset;
            let path = segment_path(&self.dir, id);
            let reader = self.reader_at(inner, id, &path)?;
            if remaining < RECORD_HEADER {
                warn!(path = %path.display(), offset = inner.read.offset, "spool: torn record header at the end of a segment; skipping it");
                inner.skipped_records += 1;
                inner.read.offset = len;
                continue;
            }
            let mut header = [0u8; RECORD_HEADER as usize];
            reader.file.read_exact(&mut header).map_err(io_err(&path))?;
            reader.pos += RECORD_HEADER;
            let (len_bytes, crc_bytes) = header.split_at(4);
            let rec_len = u32::from_le_bytes(len_bytes.try_into().unwrap_or([0; 4]));
            let crc = u32::from_le_bytes(crc_bytes.try_into().unwrap_or([0; 4]));
            if rec_len == 0
                || rec_len > MAX_RECORD
                || u64::from(rec_len) > remaining - RECORD_HEADER
            {
                warn!(path = %path.display(), offset = inner.read.offset, rec_len, "spool: torn or corrupt record; skipping the rest of the segment");
                inner.skipped_records += 1;
                inner.read.offset = len;
                inner.reader = None;
                continue;
            }
            let mut payload = vec![0u8; rec_len as usize];
            reader
                .file
                .read_exact(&mut payload)
                .map_err(io_err(&path))?;
            reader.pos += u64::from(rec_len);
            inner.read.offset += RECORD_HEADER + u64::from(rec_len);
            if crc32fast::hash(&payload) != crc {
                warn!(path = %path.display(), offset = inner.read.offset, "spool: record checksum mismatch; skipping the record");
                inner.skipped_records += 1;
                continue;
            }
            inner.last_returned = inner.read;
            return Ok(Some(Record {
                payload,
                end: inner.read,
            }));
        }
    }

    /// Nothing more to read. If the caller has acknowledged everything it was
    /// given, what lies between that and the read position is only skipped
    /// garbage and segment ends: acknowledge it too, so its files go.
    fn caught_up(&self, inner: &mut Inner) -> Result<Option<Record>, SpoolError> {
        if inner.acked >= inner.last_returned && inner.read > inner.acked {
            let read = inner.read;
            self.advance(inner, read)?;
        }
        Ok(None)
    }

    fn reader_at<'a>(
        &self,
        inner: &'a mut Inner,
        id: u64,
        path: &Path,
    ) -> Result<&'a mut Reader, SpoolError> {
        let offset = inner.read.offset;
        let reusable = inner
            .reader
            .as_ref()
            .is_some_and(|r| r.id == id && r.pos == offset);
        if !reusable {
            let file = File::open(path).map_err(io_err(path))?;
            let mut file = BufReader::with_capacity(256 << 10, file);
            file.seek(SeekFrom::Start(offset)).map_err(io_err(path))?;
            inner.reader = Some(Reader {
                id,
                file,
                pos: offset,
            });
        }
        inner.reader.as_mut().ok_or(SpoolError::Poisoned)
    }

    /// Acknowledges everything before `upto` (the `end` of a record returned by
    /// [`Spool::read_next`]): writes the ledger, then deletes segments that are
    /// wholly acknowledged.
    pub fn ack(&self, upto: Position) -> Result<(), SpoolError> {
        let mut guard = self.lock()?;
        let inner = &mut *guard;
        if upto <= inner.acked {
            return Ok(());
        }
        // Garbage skipped after the last record handed out is acknowledged with it.
        let upto = if upto >= inner.last_returned && inner.read > upto {
            inner.read
        } else {
            upto
        };
        self.advance(inner, upto)
    }

    fn advance(&self, inner: &mut Inner, upto: Position) -> Result<(), SpoolError> {
        write_ledger(&self.dir, upto, self.options.fsync)?;
        inner.acked = upto;
        let done: Vec<u64> = inner
            .segments
            .iter()
            .filter(|&(&id, &len)| {
                id < upto.segment || (id == upto.segment && upto.offset >= len && len > 0)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            if inner.writer.as_ref().is_some_and(|w| w.id == id) {
                inner.writer = None;
                inner.dirty = false;
            }
            if inner.reader.as_ref().is_some_and(|r| r.id == id) {
                inner.reader = None;
            }
            let path = segment_path(&self.dir, id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(SpoolError::Io { path, source: e }),
            }
            if let Some(len) = inner.segments.remove(&id) {
                inner.bytes = inner.bytes.saturating_sub(len);
            }
        }
        Ok(())
    }

    /// Forgets what was read but not acknowledged: the next read starts again at
    /// the acknowledged position (what a restart does).
    pub fn rewind(&self) -> Result<(), SpoolError> {
        let mut inner = self.lock()?;
        inner.read = inner.acked;
        inner.last_returned = inner.acked;
        inner.reader = None;
        Ok(())
    }

    /// `fsync`s the segment being written, if anything was written since the last
    /// sync.
    ///
    /// The `fsync` itself runs outside the spool's lock (on a second handle to the
    /// file), so appends from senders never wait for the disk.
    pub fn sync(&self) -> Result<(), SpoolError> {
        if !self.options.fsync {
            return Ok(());
        }
        let (file, path) = {
            let mut inner = self.lock()?;
            if !inner.dirty {
                return Ok(());
            }
            inner.dirty = false;
            match &inner.writer {
                Some(writer) => {
                    let path = segment_path(&self.dir, writer.id);
                    let file = writer.file.try_clone().map_err(io_err(&path));
                    (file, path)
                }
                None => return Ok(()),
            }
        };
        let result = file.and_then(|f| f.sync_data().map_err(io_err(&path)));
        if result.is_err()
            && let Ok(mut inner) = self.lock()
        {
            // Try again next time.
            inner.dirty = true;
        }
        result
    }

    #[cfg(test)]
    fn writer_path(&self) -> Option<PathBuf> {
        let inner = self.inner.lock().ok()?;
        inner.writer.as_ref().map(|w| segment_path(&self.dir, w.id))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            warn!(error = %e, "spool: fsync on close failed");
        }
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.{SEGMENT_EXT}"))
}

fn segment_id(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 {
        return None;
    }
    stem.parse().ok()
}

fn read_ledger(dir: &Path) -> Position {
    let path = dir.join(LEDGER);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Position::default(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "spool: ledger unreadable; replaying everything on disk");
            return Position::default();
        }
    };
    match decode_ledger(&bytes) {
        Some(p) => p,
        None => {
            warn!(path = %path.display(), "spool: ledger corrupt; replaying everything on disk");
            Position::default()
        }
    }
}

fn decode_ledger(bytes: &[u8]) -> Option<Position> {
    if bytes.len() != LEDGER_LEN || &bytes[..8] != LEDGER_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[24..28].try_into().ok()?);
    if crc32fast::hash(&bytes[..24]) != crc {
        return None;
    }
    Some(Position {
        segment: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
        offset: u64::from_le_bytes(bytes[16..24].try_into().ok()?),
    })
}

fn encode_ledger(p: Position) -> [u8; LEDGER_LEN] {
    let mut out = [0u8; LEDGER_LEN];
    out[..8].copy_from_slice(LEDGER_MAGIC);
    out[8..16].copy_from_slice(&p.segment.to_le_bytes());
    out[16..24].copy_from_slice(&p.offset.to_le_bytes());
    let crc = crc32fast::hash(&out[..24]);
    out[24..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn write_ledger(dir: &Path, p: Position, sync: bool) -> Result<(), SpoolError> {
    let tmp = dir.join(LEDGER_TMP);
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(&encode_ledger(p)).map_err(io_err(&tmp))?;
    if sync {
        file.sync_all().map_err(io_err(&tmp))?;
    }
    drop(file);
    let path = dir.join(LEDGER);
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    if sync {
        sync_dir(dir);
    }
    Ok(())
}

/// Makes a created or renamed directory entry durable. Best effort: not every
/// platform lets a directory be opened for sync.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;

    fn small() -> SpoolOptions {
        SpoolOptions {
            max_bytes: 1 << 20,
            segment_bytes: 200,
            fsync: true,
        }
    }

    fn drain(spool: &Spool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(r) = spool.read_next().expect("read") {
            out.push(r.payload);
        }
        out
    }

    #[test]
    fn append_read_ack_deletes_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), small()).expect("open");
        for i in 0..20u8 {
            spool.append(&[i; 30]).expect("append");
        }
        assert!(spool.bytes() > 0);
        let mut last = None;
        for i in 0..20u8 {
            let r = spool.read_next().expect("read").expect("a record");
            assert_eq!(r.payload, vec![i; 30]);
            last = Some(r.end);
        }
        assert!(spool.read_next().expect("read").is_none());
        spool.ack(last.expect("read some")).expect("ack");
        assert!(spool.is_empty(), "all acknowledged: no segment left");
        assert_eq!(spool.bytes(), 0);
        let files: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
            .collect();
        assert!(files.is_empty(), "segment files deleted: {files:?}");
    }

    #[test]
    fn unacknowledged_records_come_back_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let spool = Spool::open(dir.path(), small()).expect("open");
            for i in 0..10u8 {
                spool.append(&[i; 40]).expect("append");
            }
            let first = spool.read_next().expect("read").expect("record");
            spool.ack(first.end).expect("ack");
            let _second = spool.read_next().expect("read");
        }
        let spool = Spool::open(dir.path(), small()).expect("reopen");
        let got = drain(&spool);
        let want: Vec<Vec<u8>> = (1..10u8).map(|i| vec![i; 40]).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn torn_tail_is_skipped_not_replayed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path;
        {
            let spool = Spool::open(dir.path(), SpoolOptions::default()).expect("open");
            spool.append(b"one").expect("append");
            spool.append(b"two").expect("append");
            spool.append(b"three-is-longer").expect("append");
            path = spool.writer_path().expect("writer");
        }
        // Cut the last record in half, as a crash mid-write would.
        let len = fs::metadata(&path).expect("meta").len();
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(len - 7).expect("truncate");
        drop(f);
        let spool = Spool::open(dir.path(), SpoolOptions::default()).expect("reopen");
        spool.append(b"four").expect("append after crash");
        assert_eq!(
            drain(&spool),
            vec![b"one".to_vec(), b"two".to_vec(), b"four".to_vec()]
        );
        assert_eq!(spool.skipped_records(), 1);
    }

    #[test]
    fn zeroed_tail_and_bad_checksum_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path;
        {
            let spool = Spool::open(dir.path(), SpoolOptions::default()).expect("open");
            spool.append(b"alpha").expect("append");
            spool.append(b"bravo").expect("append");
            spool.append(b"charlie").expect("append");
            path = spool.writer_path().expect("writer");
        }
        let mut bytes = fs::read(&path).expect("read");
        // Flip a payload byte of "bravo" (second record: 8 + 5 + 8 = 21).
        bytes[21] ^= 0xff;
        // And a crash that left zeros after the end.
        bytes.extend_from_slice(&[0u8; 32]);
        fs::write(&path, &bytes).expect("write");
        let spool = Spool::open(dir.path(), SpoolOptions::default()).expect("reopen");
        assert_eq!(drain(&spool), vec![b"alpha".to_vec(), b"charlie".to_vec()]);
        assert_eq!(spool.skipped_records(), 2);
        // Acknowledging the last good record also acknowledges the garbage after it.
        let spool2 = spool;
        spool2.rewind().expect("rewind");
        let mut end = None;
        while let Some(r) = spool2.read_next().expect("read") {
            end = Some(r.end);
        }
        spool2.ack(end.expect("records")).expect("ack");
        assert!(spool2.is_empty());
    }

    #[test]
    fn corrupt_ledger_replays_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let spool = Spool::open(dir.path(), SpoolOptions::default()).expect("open");
            spool.append(b"a").expect("append");
            spool.append(b"b").expect("append");
            let r = spool.read_next().expect("read").expect("record");
            spool.ack(r.end).expect("ack");
        }
        fs::write(dir.path().join(LEDGER), b"nonsense").expect("write");
        let spool = Spool::open(dir.path(), SpoolOptions::default()).expect("reopen");
        assert_eq!(drain(&spool), vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn refuses_empty_and_huge_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), SpoolOptions::default()).expect("open");
        assert!(matches!(spool.append(b""), Err(SpoolError::EmptyRecord)));
        let huge = vec![0u8; MAX_RECORD as usize + 1];
        assert!(matches!(
            spool.append(&huge),
            Err(SpoolError::RecordTooLarge { .. })
        ));
    }

    #[test]
    fn over_cap_reports_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(
            dir.path(),
            SpoolOptions {
                max_bytes: 100,
                segment_bytes: 1 << 20,
                fsync: true,
            },
        )
        .expect("open");
        assert!(!spool.over_cap());
        spool.append(&[1; 95]).expect("append");
        assert!(spool.over_cap());
    }

    // ---- model test ----

    #[derive(Clone, Debug)]
    enum Op {
        Append(Vec<u8>),
        Read,
        AckAll,
        Reopen,
        /// Cut this many bytes off the end of the segment being written, then reopen.
        CrashTruncate(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 1..60).prop_map(Op::Append),
            4 => Just(Op::Read),
            2 => Just(Op::AckAll),
            1 => Just(Op::Reopen),
            1 => (1u64..80).prop_map(Op::CrashTruncate),
        ]
    }

    /// The model: unacknowledged records in order, each with where it ends on disk;
    /// `read` of them have been handed out since the last (re)open.
    #[derive(Default)]
    struct Model {
        unacked: VecDeque<(Vec<u8>, Position)>,
        read: usize,
        last_read_end: Option<Position>,
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn spool_behaves_like_a_queue(ops in proptest::collection::vec(op(), 1..80)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let opts = small();
            let mut spool = Some(Spool::open(dir.path(), opts).expect("open"));
            let mut model = Model::default();
            for op in ops {
                let s = spool.as_ref().expect("open spool");
                match op {
                    Op::Append(p) => {
                        let end = s.append(&p).expect("append");
                        model.unacked.push_back((p, end));
                    }
                    Op::Read => {
                        let got = s.read_next().expect("read");
                        let want = model.unacked.get(model.read);
                        match (got, want) {
                            (None, None) => {}
                            (Some(r), Some((p, end))) => {
                                prop_assert_eq!(&r.payload, p);
                                prop_assert_eq!(r.end, *end);
                                model.read += 1;
                                model.last_read_end = Some(r.end);
                            }
                            (got, want) => prop_assert!(false, "spool gave {:?}, model {:?}", got, want),
                        }
                    }
                    Op::AckAll => {
                        if let Some(end) = model.last_read_end.take() {
                            s.ack(end).expect("ack");
                            model.unacked.drain(..model.read);
                            model.read = 0;
                        }
                    }
                    Op::Reopen => {
                        drop(spool.take());
                        spool = Some(Spool::open(dir.path(), opts).expect("reopen"));
                        model.read = 0;
                        model.last_read_end = None;
                    }
                    Op::CrashTruncate(cut) => {
                        let path = s.writer_path();
                        drop(spool.take());
                        if let Some(path) = path {
                            let len = fs::metadata(&path).expect("meta").len();
                            let new_len = len.saturating_sub(cut);
                            let f = OpenOptions::new().write(true).open(&path).expect("open");
                            f.set_len(new_len).expect("truncate");
                            let seg = segment_id(&path.file_name().expect("name").to_string_lossy()).expect("id");
                            // Records of that segment that no longer fit are gone:
                            // the crash happened before their appends returned.
                            model.unacked.retain(|(_, end)| end.segment != seg || end.offset <= new_len);
                        }
                        spool = Some(Spool::open(dir.path(), opts).expect("reopen"));
                        model.read = 0;
                        model.last_read_end = None;
                    }
                }
            }
            // Whatever happened, a fresh open replays exactly the unacknowledged records.
            drop(spool.take());
            let s = Spool::open(dir.path(), opts).expect("final open");
            let got = drain(&s);
            let want: Vec<Vec<u8>> = model.unacked.iter().map(|(p, _)| p.clone()).collect();
            prop_assert_eq!(got, want);
            drop(spool);
        }
    }
}
