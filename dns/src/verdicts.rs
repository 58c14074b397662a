//! Recent verdicts, so a name asked again and again (every device asks for the
//! same few hundred names all day) is classified once a minute per role, not on
//! every query.
//!
//! A verdict depends on the policy snapshot, the role, the name and the time
//! (schedules, the school calendar). Entries are therefore tagged with the
//! snapshot they were made with and live until the end of the wall-clock minute
//! they were made in: schedules are written in whole minutes, so no schedule
//! can start or end within an entry's life. A reload swaps the snapshot and the
//! next query clears the table. Bounded: a full shard is cleared (verdicts are
//! cheap to remake; a sweep is cheaper than bookkeeping on every hit).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use schoolgate_classifier::{Policy, RoleId, Verdict};

use crate::wire::{MAX_NAME_WIRE, QueryName};

const SHARDS: usize = 16;
/// Entries in all: ample for the names one school asks within a minute.
const CAPACITY: usize = 1 << 16;

/// What the policy handler decided for a name, with the verdict for its event.
#[derive(Clone, Debug)]
pub struct Decision {
    pub verdict: Arc<Verdict>,
    pub flow: FlowKind,
}

/// The policy handler's flow, small enough to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowKind {
    Block {
        canary: bool,
    },
    /// Forward, answering with a CNAME to this SafeSearch host.
    Rewrite(&'static str),
    Forward,
}

#[derive(Debug)]
struct Entry {
    decision: Decision,
    /// The snapshot it was made with (compared by address; see `current`).
    policy: usize,
    expires_ms: u64,
}

type Shard = Mutex<HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>>;

#[derive(Debug)]
pub struct Verdicts {
    shards: Box<[Shard]>,
    /// The snapshot in use, kept alive here so that its address cannot be
    /// reused by a later snapshot while entries may carry it.
    current: Mutex<Option<Arc<Policy>>>,
    current_ptr: AtomicUsize,
    hasher: foldhash::fast::RandomState,
}

impl Default for Verdicts {
    fn default() -> Self {
        Verdicts {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            current: Mutex::new(None),
            current_ptr: AtomicUsize::new(0),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

/// `role | name` on the stack.
struct Key {
    bytes: [u8; 2 + MAX_NAME_WIRE],
    len: usize,
}

impl Key {
    fn new(role: RoleId, name: &QueryName) -> Key {
        let mut k = Key {
            bytes: [0; 2 + MAX_NAME_WIRE],
            len: 2 + name.wire().len(),
        };
        k.bytes[..2].copy_from_slice(&role.0.to_be_bytes());
        k.bytes[2..k.len].copy_from_slice(name.wire());
        k
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Verdicts {
    fn shard(&self, key: &[u8]) -> &Shard {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(key);
        &self.shards[(h >> 60) as usize % SHARDS]
    }

    /// Notes the snapshot a query uses; a new one clears the table.
    fn sync(&self, policy: &Arc<Policy>) -> usize {
        let ptr = Arc::as_ptr(policy) as usize;
        if self.current_ptr.load(Ordering::Acquire) != ptr {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if current.as_ref().map(|p| Arc::as_ptr(p) as usize) != Some(ptr) {
                for s in self.shards.iter() {
                    s.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
                *current = Some(Arc::clone(policy));
                self.current_ptr.store(ptr, Ordering::Release);
            }
        }
        ptr
    }

    /// The decision for `name` and `role` under `policy`, made by `decide` when
    /// there is no live one; `decide` also says for how many milliseconds its
    /// decision holds (until the wall clock's next minute). `now_ms` is the
    /// monotonic clock.
    pub fn get_or_decide(
        &self,
        policy: &Arc<Policy>,
        role: RoleId,
        name: &QueryName,
        now_ms: u64,
        decide: impl FnOnce() -> (Decision, u64),
    ) -> Decision {
        let ptr = self.sync(policy);
        let key = Key::new(role, name);
        let shard = self.shard(key.as_bytes());
        {
            let map = shard.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = map.get(key.as_bytes())
                && e.policy == ptr
                && now_ms < e.expires_ms
            {
                return e.decision.clone();
            }
        }
        let (decision, valid_ms) = decide();
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CAPACITY / SHARDS {
            map.clear();
        }
        map.insert(
            key.as_bytes().into(),
            Entry {
                decision: decision.clone(),
                policy: ptr,
                expires_ms: now_ms + valid_ms,
            },
        );
        decision
    }
}
