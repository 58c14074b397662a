//! Recent verdicts, so a name asked again and again (every device asks for the
//! same few hundred names all day) is classified once a minute per role and
//! thread, not on every query.
//!
//! A verdict depends on the policy snapshot, the role, the name and the time
//! (schedules, the school calendar). Entries are therefore tagged with the
//! snapshot they were made with and live until the end of the wall-clock minute
//! they were made in: schedules are written in whole minutes, so no schedule
//! can start or end within an entry's life. A reload swaps the snapshot and the
//! table is cleared at its next use.
//!
//! Each thread keeps its own table: a shared one would make the cores trade its
//! lock and the verdicts' reference counts on every query, which costs more than
//! classifying a name again on the other core. Bounded: a full table is cleared
//! (verdicts are cheap to remake; a sweep is cheaper than bookkeeping on every
//! hit).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Instant;

use arrayvec::ArrayVec;
use schoolgate_classifier::{Policy, RoleId, Verdict};

use crate::wire::{MAX_NAME_WIRE, QueryName};

/// Entries per thread: ample for the names one school asks within a minute.
const CAPACITY: usize = 1 << 13;

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
    expires_ms: u64,
}

/// `role | name`, built on the stack for a lookup, boxed (exactly its length)
/// in the table.
type Key = ArrayVec<u8, { 2 + MAX_NAME_WIRE }>;

#[derive(Default)]
struct Table {
    /// The snapshot the entries were made with. A weak reference: it frees the
    /// old policy's lists after a reload, yet keeps its allocation, so no later
    /// snapshot can take its address while the table refers to it.
    policy: Weak<Policy>,
    map: HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>,
}

thread_local! {
    static TABLE: Rc<RefCell<Table>> = Rc::new(RefCell::new(Table::default()));
}

/// The process-wide clock the tables' expiry times count from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds on the tables' clock at `t`.
pub fn clock_ms(t: Instant) -> u64 {
    t.saturating_duration_since(*EPOCH).as_millis() as u64
}

/// The decision for `name` and `role` under `policy`, made by `decide` when this
/// thread has no live one; `decide` also says for how many milliseconds its
/// decision holds (until the wall clock's next minute). `now_ms` is
/// [`clock_ms`] of the query's arrival.
pub fn get_or_decide(
    policy: &Arc<Policy>,
    role: RoleId,
    name: &QueryName,
    now_ms: u64,
    decide: impl FnOnce() -> (Decision, u64),
) -> Decision {
    let mut key = Key::new();
    let _ = key.try_extend_from_slice(&role.0.to_be_bytes());
    let _ = key.try_extend_from_slice(name.wire());
    let table = TABLE.with(Rc::clone);
    {
        let mut t = table.borrow_mut();
        if !std::ptr::eq(t.policy.as_ptr(), Arc::as_ptr(policy)) {
            t.map.clear();
            t.policy = Arc::downgrade(policy);
        }
        if let Some(e) = t.map.get(key.as_slice())
            && now_ms < e.expires_ms
        {
            return e.decision.clone();
        }
    }
    // Not borrowed while deciding: the classifier never calls back here, but a
    // panic-free design should not depend on that.
    let (decision, valid_ms) = decide();
    let mut t = table.borrow_mut();
    if t.map.len() >= CAPACITY {
        t.map.clear();
    }
    t.map.insert(
        key.as_slice().into(),
        Entry {
            decision: decision.clone(),
            expires_ms: now_ms + valid_ms,
        },
    );
    decision
}
