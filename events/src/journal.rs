//! The write-ahead journal: an event `send` accepted survives the process dying,
//! for the price of a copy into memory.
//!
//! The queue between the hot paths and the batcher lives in memory, so SIGKILL or
//! the OOM killer would lose what it held. Each event is therefore first written
//! to a file mapped into memory: a store into a shared mapping is in the kernel's
//! page cache the moment it is made, so it outlives the process without a system
//! call, a lock or an `fsync` on the hot path. (A power cut is the disk spool's
//! business: it `fsync`s; the journal only guards against the process dying.)
//!
//! # Format
//!
//! Segment files `<id:020>.jnl` of a fixed size, allocated when created (or
//! reused, see invariant 6). Records follow each other at 8-byte aligned offsets:
//!
//! ```text
//! [state: u32][len: u32][crc32(payload): u32][format: u32][payload: len bytes][padding]
//! ```
//!
//! `state` is 0 (reserved, not yet written, or torn), [`COMMITTED`] or [`DONE`].
//! The payload is one event in the encoding `format` names ([`FORMAT_POSTCARD`]:
//! compact and about ten times cheaper to write than JSON; the first format,
//! [`FORMAT_POSTCARD_TEXT_TIME`], is still read); a record of a format this
//! version does not know is handed back undecoded, never guessed at.
//!
//! # Invariants
//!
//! 1. A writer reserves its bytes with one atomic add on the segment's cursor:
//!    reservations never overlap, and writers never wait for each other.
//! 2. A writer stores the length first, then checksum, format and payload, then
//!    publishes the record with a release store of [`COMMITTED`]. A record is
//!    recovered only if its state is [`COMMITTED`] and its checksum matches.
//! 3. The batcher marks a record [`DONE`] only once the batch holding its event is
//!    safe: stored, dead-lettered, or in the spool.
//! 4. A segment's file is deleted or kept for reuse only when writers have moved
//!    on from it and every record reserved in it is [`DONE`] (`open` counts the
//!    records not yet done, plus one while the segment is the one being written),
//!    and only once nothing refers to the segment any more (its `Drop`).
//! 5. At start-up the segments an earlier run left are read (plain reads, not
//!    mapped) and never written again: new segments are numbered after them. The
//!    caller puts what they hold into the spool, `fsync`s it, and only then deletes
//!    them; this happens whether or not the journal is on for the new run.
//! 6. A finished segment kept for reuse (at most [`SPARES`]) is first renamed
//!    `<id:020>.spare`, a name start-up never reads (it holds no record that is
//!    not done, and `open` deletes what a crash left), then zeroed, and only then
//!    renamed to the next segment's name. A reused segment thus reads like a new
//!    one: zeros after its last record, never an old record's bytes.
//!
//! # What a crash leaves
//!
//! - A reservation never published. If its length was stored, the record is
//!   stepped over by that length (its checksum would fail anyway); if not, nothing
//!   of it was written and recovery steps over zeros 8 bytes at a time. Payload
//!   bytes are never read as a header, so a URL crafted to look like a record
//!   cannot be replayed as one.
//! - Published but not yet done: recovered and replayed. The batch may already be
//!   in the store; replays are marked `maybe_stored` and the stores deduplicate by
//!   event id.
//!
//! # Memory
//!
//! The mapping's pages count in the process's resident set as they are written,
//! so segments are small (1 MiB by default) and let go of as soon as the batcher
//! is done with them: with a store that keeps up, two segments at most are
//! resident, plus up to [`SPARES`] kept for reuse.
//!
//! # Why reuse
//!
//! A new segment costs a file created and allocated, a mapping made, and a page
//! fault on the writing thread for every page its first records touch (the
//! kernel finds or allocates the page and marks it writable); a finished one
//! costs its unmapping and deletion. Under load that was about a fiftieth of a
//! proxied request's CPU (`perf` in `benches/RESULTS.md`, "The journal reuses its
//! segments"). A reused segment's pages are already mapped, present and
//! writable, and zeroing them happens on the thread that finished the segment
//! (the batcher), not on a hot path.

// The one place in schoolgate that writes through a raw pointer: a shared memory
// map cannot be written any other way, and the alternative (a system call per
// event under a lock) cost more than the rest of a proxied request. Every unsafe
// block says why it is sound.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use memmap2::MmapRaw;
use tracing::{debug, warn};

use crate::event::AccessEvent;

/// State of a published record not yet safe elsewhere.
pub const COMMITTED: u32 = 0xC0FF_EE01;
/// State of a record whose event is safe (stored, dead-lettered or spooled).
pub const DONE: u32 = 0xD0FF_EE02;
/// Bytes before each payload.
pub const HEADER: usize = 16;
/// `format` of a postcard-encoded [`AccessEvent`] with its id and time as text
/// (written by versions before [`FORMAT_POSTCARD`]; still read).
pub const FORMAT_POSTCARD_TEXT_TIME: u32 = 1;
/// `format` of a postcard-encoded [`AccessEvent`], its id a `u128` and its
/// time milliseconds (formatting them cost a third of an event's write).
pub const FORMAT_POSTCARD: u32 = 2;
/// Smallest segment accepted: below this, rotation would dominate.
pub const MIN_SEGMENT: usize = 64 << 10;
const EXT: &str = "jnl";
/// Extension of a finished segment kept for reuse (invariant 6).
const SPARE_EXT: &str = "spare";
/// Finished segments kept for reuse: enough for a store that keeps up (one being
/// finished while another is written), few enough to bound the memory they hold.
pub const SPARES: usize = 2;

/// Why the journal could not take an event. The event is still queued; only its
/// protection against the process dying is lost, so callers log and go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("event journal {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("event journal: an event of {len} bytes does not fit a segment of {segment} bytes")]
    TooLarge { len: usize, segment: usize },
    #[error("event journal: record of format {format} does not decode: {message}")]
    Decode { format: u32, message: String },
}

impl JournalError {
    fn io(path: &Path, source: io::Error) -> JournalError {
        JournalError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// A record published and never done, as found at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub format: u32,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn decode(&self) -> Result<AccessEvent, JournalError> {
        let decoded = match self.format {
            FORMAT_POSTCARD => postcard::from_bytes(&self.payload),
            FORMAT_POSTCARD_TEXT_TIME => {
                crate::event::with_text_id_and_time(|| postcard::from_bytes(&self.payload))
            }
            _ => {
                return Err(JournalError::Decode {
                    format: self.format,
                    message: "unknown format (written by another version of schoolgate)".into(),
                });
            }
        };
        decoded.map_err(|e| JournalError::Decode {
            format: self.format,
            message: e.to_string(),
        })
    }
}

/// What an earlier run left in the journal.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Records published but never done, in file order.
    pub records: Vec<Record>,
    /// Records that had a header but failed their checksum (torn writes).
    pub torn: usize,
    /// The files read; delete them with [`discard`] once the payloads are safe
    /// elsewhere.
    files: Vec<PathBuf>,
    /// The id after the newest file read.
    next_id: u64,
}

/// The journal of one pipeline.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    segment_bytes: usize,
    current: ArcSwap<Segment>,
    /// The next segment id; held only while a full segment is replaced.
    rotate: Mutex<u64>,
    spares: Arc<Spares>,
}

/// Finished segments, renamed and zeroed, waiting to be the next current one.
#[derive(Debug, Default)]
struct Spares {
    list: Mutex<Vec<Spare>>,
    /// Set when the journal stops: finished segments are deleted, not kept.
    closing: AtomicBool,
}

#[derive(Debug)]
struct Spare {
    path: PathBuf,
    map: MmapRaw,
}

/// Where one event's record lies: travels with the event through the queue, and
/// marks the record done when the event is safe.
#[derive(Debug)]
pub struct Slot {
    segment: Arc<Segment>,
    offset: usize,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Taken out only in `Drop`, to be unmapped or kept for reuse.
    map: ManuallyDrop<MmapRaw>,
    /// Next free byte; may run past the end (a failed reservation).
    cursor: AtomicUsize,
    /// Records reserved and not yet done, plus one while this is the current
    /// segment (invariant 4).
    open: AtomicUsize,
    spares: Arc<Spares>,
}

thread_local! {
    /// Each sending thread encodes into its own buffer: no allocation per event.
    static ENCODE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads what an earlier run left in `dir` (nothing if it does not exist). The
/// caller must make the payloads safe and then [`discard`] the files.
pub fn recover(dir: &Path) -> Result<Recovered, JournalError> {
    let mut recovered = Recovered::default();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(recovered),
        Err(e) => return Err(JournalError::io(dir, e)),
    };
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| JournalError::io(dir, e))?.path();
        let id = path
            .extension()
            .filter(|x| *x == EXT)
            .and_then(|_| path.file_stem()?.to_str()?.parse::<u64>().ok());
        if let Some(id) = id {
            found.push((id, path));
        }
    }
    found.sort();
    for (id, path) in found {
        let bytes = fs::read(&path).map_err(|e| JournalError::io(&path, e))?;
        recovered.torn += scan(&bytes, &mut recovered.records);
        recovered.files.push(path);
        recovered.next_id = id + 1;
    }
    if recovered.torn > 0 {
        warn!(
            torn = recovered.torn,
            dir = %dir.display(),
            "event journal: records with a bad checksum skipped (torn writes)"
        );
    }
    Ok(recovered)
}

/// Deletes the files an earlier run left, once their events are safe.
pub fn discard(recovered: Recovered) -> Result<(), JournalError> {
    for path in recovered.files {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(JournalError::io(&path, e)),
        }
    }
    Ok(())
}

impl Journal {
    /// Starts a journal in `dir`, its first segment numbered after what
    /// [`recover`] found there (so old files are never written to).
    pub fn open(
        dir: &Path,
        segment_bytes: usize,
        after: &Recovered,
    ) -> Result<Journal, JournalError> {
        fs::create_dir_all(dir).map_err(|e| JournalError::io(dir, e))?;
        delete_spares(dir);
        let segment_bytes = segment_bytes.max(MIN_SEGMENT) & !7;
        let spares = Arc::new(Spares::default());
        let first = Segment::create(dir, after.next_id, segment_bytes, &spares)?;
        Ok(Journal {
            dir: dir.to_owned(),
            segment_bytes,
            current: ArcSwap::from_pointee(first),
            rotate: Mutex::new(after.next_id + 1),
            spares,
        })
    }

    /// Writes one event; when this returns `Ok`, the event survives the process
    /// dying until its slot is marked done.
    pub fn append(&self, event: &AccessEvent) -> Result<Slot, JournalError> {
        // This thread's buffer, taken out and put back: `append` never nests.
        let mut buf = ENCODE.take();
        buf.clear();
        buf.extend_from_slice(&[0; HEADER]);
        crate::event::encode_into(event, &mut buf);
        let len = buf.len() - HEADER;
        let crc = crc32fast::hash(&buf[HEADER..]);
        buf[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        buf[8..12].copy_from_slice(&crc.to_le_bytes());
        buf[12..16].copy_from_slice(&FORMAT_POSTCARD.to_le_bytes());
        buf.resize(buf.len().next_multiple_of(8), 0);
        let written = self.write(&buf);
        ENCODE.set(buf);
        written
    }

    /// Places an encoded record (state still 0) and publishes it.
    fn write(&self, record: &[u8]) -> Result<Slot, JournalError> {
        if record.len() > self.segment_bytes {
            return Err(JournalError::TooLarge {
                len: record.len(),
                segment: self.segment_bytes,
            });
        }
        loop {
            let segment = self.current.load_full();
            segment.open.fetch_add(1, Ordering::AcqRel);
            let offset = segment.cursor.fetch_add(record.len(), Ordering::AcqRel);
            if offset + record.len() <= segment.map.len() {
                segment.publish(offset, record);
                return Ok(Slot { segment, offset });
            }
            segment.release();
            self.replace_full(&segment)?;
        }
    }

    /// Puts a new segment in place of `full` (unless another writer already did).
    fn replace_full(&self, full: &Arc<Segment>) -> Result<(), JournalError> {
        let mut next = lock(&self.rotate);
        if !Arc::ptr_eq(&self.current.load(), full) {
            return Ok(());
        }
        let segment = match self.spares.take(&self.dir, *next) {
            Some(reused) => reused,
            None => Segment::create(&self.dir, *next, self.segment_bytes, &self.spares)?,
        };
        *next += 1;
        self.current.store(Arc::new(segment));
        drop(next);
        // No longer the current segment: let go of once its records are done.
        full.release();
        Ok(())
    }

    /// Segment files on disk now.
    pub fn segments(&self) -> usize {
        fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == EXT))
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for Journal {
    /// A clean stop: the current segment goes once its records are done (at once
    /// when they all are); records never done keep their file for the next start.
    fn drop(&mut self) {
        self.spares.closing.store(true, Ordering::Release);
        self.spares.clear();
        self.current.load().release();
    }
}

impl Slot {
    /// The record's payload: the event as `encode_into` wrote it. A store
    /// that keeps these bytes copies them rather than encoding the event again.
    pub fn payload(&self) -> &[u8] {
        let len = self.segment.word(self.offset + 4).load(Ordering::Acquire) as usize;
        let start = self.offset + HEADER;
        assert!(start + len <= self.segment.map.len());
        // SAFETY: the bytes lie inside the mapping (asserted). `publish` wrote
        // them before `write` made this slot, and the slot reached this thread
        // through the queue, which orders that write before this read. Nothing
        // writes a record's payload once it is published (`mark_done` stores the
        // state word, before it), and the mapping lives as long as the segment
        // this slot holds; the slice borrows the slot.
        unsafe { std::slice::from_raw_parts(self.segment.map.as_ptr().add(start), len) }
    }

    /// The event is safe elsewhere: the record is not recovered after a crash.
    pub fn done(self) {
        self.segment.mark_done(self.offset);
        self.segment.release();
    }
}

impl Segment {
    fn create(
        dir: &Path,
        id: u64,
        len: usize,
        spares: &Arc<Spares>,
    ) -> Result<Segment, JournalError> {
        let path = segment_path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| JournalError::io(&path, e))?;
        allocate(&file, len as u64).map_err(|e| {
            let _ = fs::remove_file(&path);
            JournalError::io(&path, e)
        })?;
        let map = MmapRaw::map_raw(&file).map_err(|e| JournalError::io(&path, e))?;
        debug!(path = %path.display(), "event journal: new segment");
        Ok(Segment::current(path, map, spares))
    }

    /// A segment about to become the current one (`open` holds its "current" one).
    fn current(path: PathBuf, map: MmapRaw, spares: &Arc<Spares>) -> Segment {
        Segment {
            path,
            map: ManuallyDrop::new(map),
            cursor: AtomicUsize::new(0),
            open: AtomicUsize::new(1),
            spares: Arc::clone(spares),
        }
    }

    /// Copies `record` to `offset` and publishes it (invariant 2).
    fn publish(&self, offset: usize, record: &[u8]) {
        debug_assert!(offset.is_multiple_of(8) && offset + record.len() <= self.map.len());
        // The length first, so a writer killed mid-copy leaves a record recovery
        // can step over without reading its payload.
        let len = u32::from_le_bytes([record[4], record[5], record[6], record[7]]);
        self.word(offset + 4).store(len, Ordering::Release);
        // SAFETY: `offset..offset + record.len()` lies inside the mapping (checked
        // by the caller against `map.len()`) and was handed to this writer alone by
        // the atomic add on `cursor` (invariant 1), so no other thread reads or
        // writes these bytes until the state word below is published; the mapping
        // lives as long as `self`. The file is ours and allocated up front, so the
        // store cannot fault for want of disk space.
        unsafe {
            let dst = self.map.as_mut_ptr().add(offset);
            std::ptr::copy_nonoverlapping(record.as_ptr().add(8), dst.add(8), record.len() - 8);
        }
        self.word(offset).store(COMMITTED, Ordering::Release);
    }

    fn mark_done(&self, offset: usize) {
        self.word(offset).store(DONE, Ordering::Release);
    }

    /// The 4-byte word at `offset` (a record's state or length).
    fn word(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.map.len());
        // SAFETY: the pointer is inside the mapping (asserted) and 4-byte aligned
        // (the mapping is page-aligned, the offset a multiple of 4). While mapped,
        // the word is only accessed atomically (the payload copy starts after it),
        // and the returned reference cannot outlive `self`, which owns the mapping.
        unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(offset).cast::<u32>()) }
    }

    /// One reservation (or the "current" hold) less.
    fn release(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Segment {
    /// Nothing refers to the segment any more. Finished (every record done, no
    /// longer current): kept for reuse or deleted. Otherwise its file stays for
    /// the next start to recover (invariant 4).
    fn drop(&mut self) {
        // SAFETY: `map` is never used again: the segment is being dropped.
        let map = unsafe { ManuallyDrop::take(&mut self.map) };
        if self.open.load(Ordering::Acquire) == 0 {
            self.spares.keep(&self.path, map);
        }
    }
}

impl Spares {
    /// Keeps a finished segment for reuse (invariant 6), or deletes it when
    /// enough are kept or the journal is stopping.
    fn keep(&self, path: &Path, map: MmapRaw) {
        let room = |list: &Vec<Spare>| list.len() < SPARES && !self.closing.load(Ordering::Acquire);
        if !room(&lock(&self.list)) {
            return delete(path);
        }
        let spare = path.with_extension(SPARE_EXT);
        if let Err(e) = fs::rename(path, &spare) {
            warn!(path = %path.display(), error = %e, "event journal: could not set a finished segment aside");
            return delete(path);
        }
        // SAFETY: the mapping is this segment's alone (its last reference is
        // being dropped), `len` bytes long, and the file behind it is allocated,
        // so the stores cannot fault for want of disk space.
        unsafe { std::ptr::write_bytes(map.as_mut_ptr(), 0, map.len()) };
        let mut list = lock(&self.list);
        if room(&list) {
            list.push(Spare { path: spare, map });
        } else {
            drop(list);
            delete(&spare);
        }
    }

    /// A kept segment renamed to segment `id`, ready to be written; `None` when
    /// none is kept (or the rename failed: a new one is made instead).
    fn take(self: &Arc<Self>, dir: &Path, id: u64) -> Option<Segment> {
        let Spare { path: spare, map } = lock(&self.list).pop()?;
        let path = segment_path(dir, id);
        if let Err(e) = fs::rename(&spare, &path) {
            warn!(path = %spare.display(), error = %e, "event journal: could not reuse a segment");
            delete(&spare);
            return None;
        }
        debug!(path = %path.display(), "event journal: segment reused");
        Some(Segment::current(path, map, self))
    }

    fn clear(&self) {
        for spare in lock(&self.list).drain(..) {
            delete(&spare.path);
        }
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        self.clear();
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.{EXT}"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn delete(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(path = %path.display(), error = %e, "event journal: could not delete a finished segment");
        }
    }
}

/// Deletes the spares a crash left in `dir` (they hold no record not done).
fn delete_spares(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        if path.extension().is_some_and(|x| x == SPARE_EXT) {
            delete(&path);
        }
    }
}

/// Allocates the file's blocks so a store into the mapping never meets a full
/// disk (which would be a SIGBUS, not an error). Falls back to writing zeros where
/// the file system cannot preallocate.
fn allocate(file: &File, len: u64) -> io::Result<()> {
    use rustix::fs::{FallocateFlags, fallocate};
    match fallocate(file, FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
            use std::io::Write;
            let zeros = vec![0u8; 64 << 10];
            let mut w = io::BufWriter::new(file);
            let mut left = len;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                w.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            w.flush()?;
            file.sync_data()
        }
        Err(e) => Err(e.into()),
    }
}

/// Collects the published, not-done records of one segment's bytes; returns how
/// many records failed their checksum (torn writes).
fn scan(bytes: &[u8], out: &mut Vec<Record>) -> usize {
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mut torn = 0;
    let mut at = 0;
    while at + HEADER <= bytes.len() {
        let len = word(at + 4) as usize;
        if len == 0 {
            // Free space, or a reservation of which nothing was written.
            at += 8;
            continue;
        }
        let end = at + HEADER + len;
        if end > bytes.len() {
            // A length that cannot be: the rest of this file is not trusted.
            torn += 1;
            break;
        }
        let payload = &bytes[at + HEADER..end];
        let intact = crc32fast::hash(payload) == word(at + 8);
        match word(at) {
            COMMITTED if intact => out.push(Record {
                format: word(at + 12),
                payload: payload.to_vec(),
            }),
            DONE if intact => {}
            _ => torn += 1,
        }
        at = end.next_multiple_of(8);
    }
    torn
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8], state: u32) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&state.to_le_bytes());
        r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        r.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        r.extend_from_slice(&FORMAT_POSTCARD.to_le_bytes());
        r.extend_from_slice(payload);
        r.resize(r.len().next_multiple_of(8), 0);
        r
    }

    fn payloads(records: &[Record]) -> Vec<&[u8]> {
        records.iter().map(|r| r.payload.as_slice()).collect()
    }

    #[test]
    fn records_of_both_formats_decode_and_others_are_refused() {
        let event = AccessEvent::new(
            crate::event::Source::Proxy,
            std::net::Ipv4Addr::new(10, 1, 2, 3).into(),
            "bet365.com",
        )
        .with_user("pupil.one");
        let now = Record {
            format: FORMAT_POSTCARD,
            payload: postcard::to_allocvec(&event).expect("encode"),
        };
        let first = Record {
            format: FORMAT_POSTCARD_TEXT_TIME,
            payload: crate::event::with_text_id_and_time(|| postcard::to_allocvec(&event))
                .expect("encode"),
        };
        assert_eq!(now.decode().expect("current format"), event);
        assert_eq!(first.decode().expect("first format"), event);
        let unknown = Record {
            format: 7,
            payload: now.payload,
        };
        let e = unknown.decode().expect_err("unknown format");
        assert!(e.to_string().contains("record of format 7"), "{e}");
    }

    #[test]
    fn scan_keeps_committed_skips_done_and_steps_over_torn_records() {
        let mut bytes = Vec::new();
        bytes.extend(record(b"first", COMMITTED));
        bytes.extend(record(b"second, already stored", DONE));
        // A writer killed after copying its payload, before publishing.
        bytes.extend(record(b"never published", 0));
        // A writer killed right after reserving: nothing of it written.
        bytes.extend([0u8; 48]);
        let mut bad = record(b"changed after its checksum", COMMITTED);
        bad[20] ^= 0x55;
        bytes.extend(bad);
        bytes.extend(record(b"last", COMMITTED));
        bytes.extend([0u8; 256]);
        let mut out = Vec::new();
        let torn = scan(&bytes, &mut out);
        assert_eq!(payloads(&out), vec![&b"first"[..], &b"last"[..]]);
        assert_eq!(out[0].format, FORMAT_POSTCARD);
        assert_eq!(torn, 2);
    }

    #[test]
    fn a_record_hidden_in_a_torn_payload_is_not_replayed() {
        // A URL crafted to carry a whole valid record, in an event whose writer
        // died before publishing it.
        let forged = record(b"forged event", COMMITTED);
        let mut carrier = b"GET /".to_vec();
        carrier.extend(&forged);
        let mut bytes = record(&carrier, 0);
        bytes.extend(record(b"real", COMMITTED));
        let mut out = Vec::new();
        scan(&bytes, &mut out);
        assert_eq!(payloads(&out), vec![&b"real"[..]]);
    }

    #[test]
    fn a_length_past_the_end_of_the_file_is_torn_not_a_panic() {
        let mut bytes = record(b"whole", COMMITTED);
        bytes.extend(
            &record(
                b"a longer payload cut off by the end of the file",
                COMMITTED,
            )[..24],
        );
        let mut out = Vec::new();
        assert_eq!(scan(&bytes, &mut out), 1);
        assert_eq!(payloads(&out), vec![&b"whole"[..]]);
    }
}
