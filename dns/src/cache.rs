//! The answer cache: upstream answers as wire bytes, served by copying them and
//! patching the ID, the question's case and the TTLs.
//!
//! Sharded (a mutex per shard, picked by the key's hash) so the socket loops on
//! different cores rarely meet; the hash is computed once per lookup and the
//! table is a `hashbrown::HashTable` of slot indexes, so a lookup allocates
//! nothing. A full shard evicts the entry that expires soonest out of a few
//! sampled ones (sampled eviction, as Redis does): no LRU list to update on every
//! hit, which would turn each read into a write.
//!
//! Times are milliseconds since the cache was made, passed in by the caller, so
//! the unit tests drive the clock themselves.

use std::sync::{Arc, Mutex};

use arrayvec::ArrayVec;
use hashbrown::HashTable;

use crate::wire::{self, Question, Scanned};

/// The longest TTL we keep an answer for, whatever upstream says (one day).
pub const MAX_TTL: u32 = 86_400;
/// The longest we keep a negative answer (RFC 2308 suggests 1–3 hours).
pub const MAX_NEGATIVE_TTL: u32 = 3_600;
/// The TTL a stale answer is served with (RFC 8767 4: 30 s).
pub const STALE_TTL: u32 = 30;
/// Longest key: kind, flags, type, class, name, SafeSearch target name.
const MAX_KEY: usize = 6 + 2 * wire::MAX_NAME_WIRE;
/// How many slots eviction looks at.
const EVICTION_SAMPLES: usize = 5;

/// What a key caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum KeyKind {
    /// An upstream answer for the name.
    Upstream = 0,
    /// The SafeSearch answer: the name as a CNAME to the provider's host, with
    /// that host's records (the target is part of the key).
    SafeSearch = 1,
}

/// A cache key on the stack: `kind | flags | qtype | qclass | name [| target]`.
#[derive(Clone)]
pub struct CacheKey {
    bytes: ArrayVec<u8, MAX_KEY>,
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheKey({:?})", self.as_bytes())
    }
}

impl CacheKey {
    /// The key for `q`; `target` is the SafeSearch host's wire name.
    pub fn new(kind: KeyKind, q: &Question, target: Option<&[u8]>) -> CacheKey {
        CacheKey::from_parts(
            kind,
            q.name.wire(),
            q.qtype,
            q.qclass,
            q.dnssec_ok(),
            q.cd,
            target,
        )
    }

    pub fn from_parts(
        kind: KeyKind,
        name_wire: &[u8],
        qtype: u16,
        qclass: u16,
        dnssec_ok: bool,
        cd: bool,
        target: Option<&[u8]>,
    ) -> CacheKey {
        let mut k = CacheKey {
            bytes: ArrayVec::new(),
        };
        k.push(&[kind as u8, u8::from(dnssec_ok) | (u8::from(cd) << 1)]);
        k.push(&qtype.to_be_bytes());
        k.push(&qclass.to_be_bytes());
        k.push(name_wire);
        if let Some(t) = target {
            k.push(t);
        }
        k
    }

    fn push(&mut self, b: &[u8]) {
        // Names are at most 255 bytes, so the key always fits; cut rather than fail.
        let n = b.len().min(self.bytes.remaining_capacity());
        let _ = self.bytes.try_extend_from_slice(&b[..n]);
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A cached answer: the response without its OPT record, ID zero, shared by the
/// cache and the queries it answers.
///
/// One allocation holds everything, reference counts and sizes included. With
/// the sizes and the counts in an allocation of their own (an `Arc<Answer>`
/// around a boxed buffer) a miss flood that filled a 200,000-answer cache peaked
/// at 130–141 MB; with one, 119–130 MB (`VmHWM`, three runs each, the
/// benchmark's 1 M-name policy). A box per part was about 300 bytes an entry:
///
/// ```text
/// [wire_len: u32][ttl_count: u16][question_end: u16][rcode: u8]
/// [message: wire_len bytes][TTL fields: ttl_count x (offset: u16, ttl: u32)][cache key]
/// ```
///
/// The key is the one the answer is made for, and [`Cache::insert`] files it
/// under that key.
#[derive(Clone, Debug)]
pub struct Answer {
    buf: Arc<[u8]>,
}

/// Bytes of one TTL field's entry: its offset in the message, the TTL it had.
const TTL_ENTRY: usize = 6;
/// Bytes of the sizes in front of the message.
const META: usize = 9;

impl Answer {
    /// Makes a cacheable answer from a scanned upstream response; also returns
    /// how long it may be cached (`None`: not at all, e.g. SERVFAIL, TTL 0, or a
    /// negative answer without an SOA).
    ///
    /// The answer carries `key`, the key it will be cached under, so that
    /// [`Cache::insert`] stores it without copying it again.
    pub fn from_upstream(msg: Vec<u8>, s: &Scanned, key: &CacheKey) -> (Answer, Option<u32>) {
        let ttl = match s.rcode {
            wire::RCODE_NOERROR if s.answers > 0 => s.min_ttl.map(|t| t.min(MAX_TTL)),
            wire::RCODE_NOERROR | wire::RCODE_NXDOMAIN if s.negative_soa => {
                s.min_ttl.map(|t| t.min(MAX_NEGATIVE_TTL))
            }
            _ => None,
        }
        .filter(|t| *t > 0);
        (Answer::build(msg, s, key.as_bytes()), ttl)
    }

    /// The shared buffer for `msg` (cut to what is kept), its TTL fields and `key`.
    fn build(mut msg: Vec<u8>, s: &Scanned, key: &[u8]) -> Answer {
        msg.truncate(s.keep_len);
        wire::set_additional(&mut msg, s.keep_additional);
        // The ID and the flags are the client's, patched in when served.
        if let Some(id) = msg.get_mut(..2) {
            id.copy_from_slice(&[0, 0]);
        }
        // A DNS message is at most 65,535 bytes, so its offsets and its record
        // count fit in 16 bits.
        let wire_len = msg.len() as u32;
        let ttl_count = s.ttls.len().min(usize::from(u16::MAX)) as u16;
        let question_end = s.question_end.min(usize::from(u16::MAX)) as u16;
        let mut buf =
            Vec::with_capacity(META + msg.len() + usize::from(ttl_count) * TTL_ENTRY + key.len());
        buf.extend_from_slice(&wire_len.to_le_bytes());
        buf.extend_from_slice(&ttl_count.to_le_bytes());
        buf.extend_from_slice(&question_end.to_le_bytes());
        buf.push(s.rcode);
        buf.extend_from_slice(&msg);
        for &(off, t) in &s.ttls[..usize::from(ttl_count)] {
            buf.extend_from_slice(&off.to_be_bytes());
            buf.extend_from_slice(&t.to_be_bytes());
        }
        buf.extend_from_slice(key);
        Answer { buf: buf.into() }
    }

    /// An answer we built ourselves (SafeSearch), with its record TTLs.
    pub fn synthesized(wire: Vec<u8>, key: &CacheKey) -> Option<(Answer, Option<u32>)> {
        let s = wire::scan_response(&wire)?;
        Some(Answer::from_upstream(wire, &s, key))
    }

    fn wire_len(&self) -> usize {
        u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize
    }

    fn ttl_count(&self) -> usize {
        usize::from(u16::from_le_bytes([self.buf[4], self.buf[5]]))
    }

    /// Where the TTL fields end and the key starts.
    fn key_start(&self) -> usize {
        META + self.wire_len() + self.ttl_count() * TTL_ENTRY
    }

    fn key(&self) -> &[u8] {
        &self.buf[self.key_start()..]
    }

    /// Each TTL field's offset and the TTL it had when stored.
    fn ttls(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        let start = META + self.wire_len();
        let end = start + self.ttl_count() * TTL_ENTRY;
        self.buf[start..end].chunks_exact(TTL_ENTRY).map(|e| {
            (
                usize::from(u16::from_be_bytes([e[0], e[1]])),
                u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
            )
        })
    }

    pub fn rcode(&self) -> u8 {
        self.buf[8]
    }

    /// The smallest TTL of its records, as stored.
    pub fn min_ttl(&self) -> Option<u32> {
        self.ttls().map(|t| t.1).min()
    }

    pub fn answer_count(&self) -> u16 {
        wire::answer_count(self.wire())
    }

    pub fn wire(&self) -> &[u8] {
        &self.buf[META..META + self.wire_len()]
    }

    pub fn question_end(&self) -> usize {
        usize::from(u16::from_le_bytes([self.buf[6], self.buf[7]]))
    }

    /// Writes this answer for `q` into `out`: the client's ID, flags and question
    /// bytes; TTLs reduced by `age_secs`, or [`STALE_TTL`] when `stale`.
    pub fn write_for(
        &self,
        out: &mut Vec<u8>,
        query: &[u8],
        q: &Question,
        age_secs: u32,
        stale: bool,
    ) {
        out.clear();
        out.extend_from_slice(self.wire());
        if self.question_end() == q.question_end
            && let (Some(dst), Some(src)) = (
                out.get_mut(wire::HEADER_LEN..q.question_end),
                query.get(wire::HEADER_LEN..q.question_end),
            )
        {
            dst.copy_from_slice(src);
        }
        wire::patch_header(out, q);
        for (off, ttl) in self.ttls() {
            let ttl = if stale {
                STALE_TTL.min(ttl.max(1))
            } else {
                ttl.saturating_sub(age_secs)
            };
            wire::put_u32(out, off, ttl);
        }
    }
}

/// A lookup's result.
#[derive(Clone, Debug)]
pub struct Hit {
    pub answer: Answer,
    /// Whole seconds since it was stored.
    pub age_secs: u32,
    /// Past its TTL, inside the serve-stale window.
    pub stale: bool,
}

#[derive(Debug)]
struct Slot {
    hash: u64,
    /// Holds the key too.
    answer: Answer,
    stored_ms: u64,
    expires_ms: u64,
    stale_until_ms: u64,
}

#[derive(Debug, Default)]
struct Shard {
    table: HashTable<u32>,
    slots: Vec<Slot>,
}

impl Shard {
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        self.table
            .find(hash, |&i| {
                let s = &self.slots[i as usize];
                s.hash == hash && s.answer.key() == key
            })
            .map(|&i| i as usize)
    }

    fn remove(&mut self, index: usize) {
        let hash = self.slots[index].hash;
        if let Ok(e) = self.table.find_entry(hash, |&i| i as usize == index) {
            e.remove();
        }
        let last = self.slots.len() - 1;
        self.slots.swap_remove(index);
        if index != last {
            // The last slot moved into `index`: repoint its table entry.
            let moved = self.slots[index].hash;
            if let Some(i) = self.table.find_mut(moved, |&i| i as usize == last) {
                *i = index as u32;
            }
        }
    }
}

/// The sharded answer cache.
#[derive(Debug)]
pub struct Cache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    stale_ms: u64,
    hasher: foldhash::fast::RandomState,
}

impl Cache {
    /// A cache of about `entries` answers that keeps expired ones for
    /// `serve_stale_secs` in case upstream fails. `entries = 0` caches nothing.
    pub fn new(entries: usize, serve_stale_secs: u32) -> Cache {
        let shards = if entries == 0 {
            1
        } else {
            (entries / 64).clamp(1, 64).next_power_of_two()
        };
        Cache {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: entries.div_ceil(shards),
            stale_ms: u64::from(serve_stale_secs) * 1000,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        // The high bits pick the shard; the table uses the low ones.
        let i = (hash >> 58) as usize & (self.shards.len() - 1);
        &self.shards[i]
    }

    /// The answer for `key` at `now_ms`, fresh or (within the window) stale.
    pub fn get(&self, key: &CacheKey, now_ms: u64) -> Option<Hit> {
        if self.per_shard == 0 {
            return None;
        }
        let key = key.as_bytes();
        let hash = self.hash(key);
        let mut shard = self.shard(hash).lock().unwrap_or_else(|p| p.into_inner());
        let i = shard.find(hash, key)?;
        let slot = &shard.slots[i];
        if now_ms >= slot.stale_until_ms {
            shard.remove(i);
            return None;
        }
        Some(Hit {
            answer: slot.answer.clone(),
            age_secs: u32::try_from(now_ms.saturating_sub(slot.stored_ms) / 1000)
                .unwrap_or(u32::MAX),
            stale: now_ms >= slot.expires_ms,
        })
    }

    /// Stores `answer` for `ttl_secs` under the key it was made for (no copy),
    /// and hands it back shared.
    pub fn insert(&self, answer: Answer, ttl_secs: u32, now_ms: u64) -> Answer {
        if self.per_shard == 0 || ttl_secs == 0 {
            return answer;
        }
        let hash = self.hash(answer.key());
        let expires_ms = now_ms + u64::from(ttl_secs) * 1000;
        let slot = Slot {
            hash,
            answer: answer.clone(),
            stored_ms: now_ms,
            expires_ms,
            stale_until_ms: expires_ms + self.stale_ms,
        };
        let mut shard = self.shard(hash).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = shard.find(hash, answer.key()) {
            shard.slots[i] = slot;
            return answer;
        }
        if shard.slots.capacity() == 0 {
            // Grown once to its full size: doubling would leave up to half the
            // slots allocated and unused.
            let Shard { table, slots } = &mut *shard;
            slots.reserve_exact(self.per_shard);
            table.reserve(self.per_shard, |&i| slots[i as usize].hash);
        }
        if shard.slots.len() >= self.per_shard {
            // Sampled eviction: of a few slots picked from the hash, drop the one
            // that would go stale first.
            let n = shard.slots.len();
            let mut victim = (hash as usize) % n;
            let mut x = hash | 1;
            for _ in 1..EVICTION_SAMPLES {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % n;
                if shard.slots[i].stale_until_ms < shard.slots[victim].stale_until_ms {
                    victim = i;
                }
            }
            shard.remove(victim);
        }
        let index = shard.slots.len() as u32;
        shard.slots.push(slot);
        let Shard { table, slots } = &mut *shard;
        table.insert_unique(hash, index, |&i| slots[i as usize].hash);
        answer
    }

    /// How many answers are held (fresh or stale).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).slots.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{QueryName, parse_query};

    fn response(name: &str, ttl: u32) -> Vec<u8> {
        use hickory_proto::op::{Message, MessageType, Query};
        use hickory_proto::rr::{Name, RData, Record, RecordType};
        let n = Name::from_ascii(name).expect("name");
        let mut m = Message::query();
        m.metadata.message_type = MessageType::Response;
        m.add_query(Query::query(n.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(
            n,
            ttl,
            RData::A(std::net::Ipv4Addr::new(192, 0, 2, 7).into()),
        ));
        m.to_vec().expect("encode")
    }

    fn key(name: &str) -> CacheKey {
        let n = QueryName::from_text(name).expect("name");
        CacheKey::from_parts(KeyKind::Upstream, n.wire(), 1, 1, false, false, None)
    }

    fn answer(name: &str, ttl: u32) -> (Answer, u32) {
        let wire = response(name, ttl);
        let s = wire::scan_response(&wire).expect("scan");
        let (a, t) = Answer::from_upstream(wire, &s, &key(name));
        (a, t.expect("cacheable"))
    }

    #[test]
    fn ttls_count_down_then_go_stale_then_go() {
        let cache = Cache::new(100, 300);
        let (a, ttl) = answer("a.example.", 60);
        cache.insert(a, ttl, 1_000);
        let hit = cache.get(&key("A.example"), 11_500).expect("hit");
        assert_eq!((hit.age_secs, hit.stale), (10, false));

        let query = {
            use hickory_proto::op::{Message, Query};
            use hickory_proto::rr::{Name, RecordType};
            let mut m = Message::query();
            m.metadata.id = 77;
            m.add_query(Query::query(
                Name::from_ascii("A.eXample.").expect("n"),
                RecordType::A,
            ));
            m.to_vec().expect("q")
        };
        let q = parse_query(&query).expect("parse");
        let mut out = Vec::new();
        hit.answer
            .write_for(&mut out, &query, &q, hit.age_secs, false);
        let m = hickory_proto::op::Message::from_vec(&out).expect("answer");
        assert_eq!(m.metadata.id, 77);
        assert_eq!(m.answers[0].ttl, 50);
        assert_eq!(
            m.queries[0].name().to_ascii(),
            "A.eXample.",
            "the client's case"
        );

        let stale = cache.get(&key("a.example"), 61_000 + 1).expect("stale hit");
        assert!(stale.stale);
        assert!(cache.get(&key("a.example"), 61_000 + 300_000).is_none());
        assert_eq!(cache.len(), 0, "dead entries are dropped when met");
    }

    #[test]
    fn stays_within_its_size() {
        let cache = Cache::new(64, 0);
        for i in 0..1_000 {
            let name = format!("n{i}.example.");
            let (a, ttl) = answer(&name, 60 + i);
            cache.insert(a, ttl, 0);
        }
        assert!(cache.len() <= 64, "{}", cache.len());
        // Everything left is still findable through the table.
        let mut found = 0;
        for i in 0..1_000 {
            if cache.get(&key(&format!("n{i}.example.")), 1).is_some() {
                found += 1;
            }
        }
        assert_eq!(found, cache.len());
    }

    #[test]
    fn an_answer_keeps_its_message_ttls_and_key_in_one_buffer() {
        let cache = Cache::new(100, 0);
        let wire = response("k.example.", 90);
        let s = wire::scan_response(&wire).expect("scan");
        let (a, ttl) = Answer::from_upstream(wire.clone(), &s, &key("k.example"));
        let built = Arc::clone(&a.buf);
        let stored = cache.insert(a, ttl.expect("cacheable"), 0);
        assert!(Arc::ptr_eq(&built, &stored.buf), "stored without a copy");
        assert_eq!(stored.wire()[2..], wire[2..], "the message, ID cleared");
        assert_eq!(stored.min_ttl(), Some(90));
        assert_eq!(stored.key(), key("k.example").as_bytes());
        let other_type = CacheKey::from_parts(
            KeyKind::Upstream,
            stored.key()[6..].as_ref(),
            28,
            1,
            false,
            false,
            None,
        );
        assert!(cache.get(&other_type, 1).is_none(), "AAAA is another key");
        let hit = cache.get(&key("K.EXAMPLE"), 1).expect("hit");
        assert!(
            Arc::ptr_eq(&hit.answer.buf, &stored.buf),
            "one shared buffer"
        );
        // The sizes in front of the message read back as scanned.
        let s = wire::scan_response(&wire).expect("scan");
        assert_eq!(stored.rcode(), s.rcode);
        assert_eq!(stored.question_end(), s.question_end);
        assert_eq!(stored.ttls().count(), s.ttls.len());
        assert_eq!(stored.wire().len(), s.keep_len);
    }

    #[test]
    fn zero_ttl_and_servfail_are_not_cached() {
        let wire = response("z.example.", 0);
        let s = wire::scan_response(&wire).expect("scan");
        assert_eq!(Answer::from_upstream(wire, &s, &key("z.example")).1, None);
        let mut fail = response("f.example.", 60);
        fail[3] = (fail[3] & 0xf0) | wire::RCODE_SERVFAIL;
        let s = wire::scan_response(&fail).expect("scan");
        assert_eq!(Answer::from_upstream(fail, &s, &key("f.example")).1, None);
    }
}
