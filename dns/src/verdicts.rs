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
//! classifying a name again on the other core.
//!
//! Bounded, in two generations of [`GENERATION`] entries: new verdicts go into
//! the young one; when it is full it becomes the old one (the previous old one
//! is dropped) and a new young one starts. A name found in the old generation
//! moves back to the young one. So the names asked again and again stay
//! through any number of generations, and there is no bookkeeping on a hit. (A
//! single table cleared when full lost every verdict at once: a thread asked
//! for a few more distinct names a minute than it held, 10 000 names in turn,
//! missed on almost every query; now it misses on about a quarter.)

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Instant;

use arrayvec::ArrayVec;
use schoolgate_classifier::{Policy, RoleId, Verdict};

use crate::wire::{MAX_NAME_WIRE, QueryName};

/// Entries in a generation (a thread holds at most two): ample for the names
/// one school asks within a minute.
const GENERATION: usize = 1 << 13;

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
    young: Generation,
    old: Generation,
}

type Generation = HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>;

impl Table {
    /// A live decision for `key`, moved to the young generation if it was old.
    fn get(&mut self, key: &[u8], now_ms: u64) -> Option<Decision> {
        if let Some(e) = self.young.get(key) {
            return (now_ms < e.expires_ms).then(|| e.decision.clone());
        }
        let (key, entry) = self.old.remove_entry(key)?;
        if now_ms >= entry.expires_ms {
            return None;
        }
        let decision = entry.decision.clone();
        self.insert(key, entry);
        Some(decision)
    }

    fn insert(&mut self, key: Box<[u8]>, entry: Entry) {
        if self.young.len() >= GENERATION {
            // The old generation's allocation is reused for the new young one.
            std::mem::swap(&mut self.young, &mut self.old);
            self.young.clear();
        }
        self.young.insert(key, entry);
    }

    fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }
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
            t.clear();
            t.policy = Arc::downgrade(policy);
        }
        if let Some(decision) = t.get(key.as_slice(), now_ms) {
            return decision;
        }
    }
    // Not borrowed while deciding: the classifier never calls back here, but a
    // panic-free design should not depend on that.
    let (decision, valid_ms) = decide();
    table.borrow_mut().insert(
        key.as_slice().into(),
        Entry {
            decision: decision.clone(),
            expires_ms: now_ms + valid_ms,
        },
    );
    decision
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use jiff::Timestamp;
    use schoolgate_classifier::{Config, PolicyBuilder, Request};

    use super::*;

    fn policy() -> Arc<Policy> {
        let config = Config::parse("school.toml", "[roles.guest]\nblock = [\"gambling\"]\n")
            .expect("config");
        Arc::new(PolicyBuilder::new(config).build().expect("policy"))
    }

    /// Asks for `name` at `now_ms`; counts the decisions made in `made`.
    fn ask(policy: &Arc<Policy>, name: &str, now_ms: u64, made: &Cell<u32>) -> Decision {
        let role = policy.role_id("guest").expect("role");
        let q = QueryName::from_text(name).expect("name");
        get_or_decide(policy, role, &q, now_ms, || {
            made.set(made.get() + 1);
            let verdict = policy.decide(&Request::host(role, name, Timestamp::UNIX_EPOCH));
            let decision = Decision {
                verdict: Arc::new(verdict),
                flow: FlowKind::Forward,
            };
            (decision, 60_000)
        })
    }

    #[test]
    fn a_verdict_is_made_once_while_it_holds() {
        let (p, made) = (policy(), Cell::new(0));
        let first = ask(&p, "www.example.org", 1_000, &made);
        let again = ask(&p, "WWW.example.org", 30_000, &made);
        assert_eq!(made.get(), 1, "the second query is answered from the table");
        assert!(Arc::ptr_eq(&first.verdict, &again.verdict));
        ask(&p, "www.example.org", 61_000, &made);
        assert_eq!(made.get(), 2, "past its minute the verdict is made again");
    }

    #[test]
    fn a_new_policy_starts_a_new_table() {
        let (p, made) = (policy(), Cell::new(0));
        ask(&p, "www.example.org", 1_000, &made);
        let reloaded = policy();
        ask(&reloaded, "www.example.org", 1_001, &made);
        assert_eq!(made.get(), 2);
    }

    #[test]
    fn more_names_than_a_generation_asked_in_turn_are_mostly_kept() {
        // A quarter more names than a generation, asked in the same order
        // round after round (as a load generator does). A single table cleared
        // when full would miss on every query of the later rounds: each name
        // comes round just after the clear that dropped it.
        let (p, made) = (policy(), Cell::new(0));
        let n = GENERATION + GENERATION / 4;
        let names: Vec<String> = (0..n).map(|i| format!("n{i}.example")).collect();
        for name in &names {
            ask(&p, name, 1_000, &made);
        }
        assert_eq!(made.get() as usize, n);
        for round in 2..=4 {
            let before = made.get() as usize;
            for name in &names {
                ask(&p, name, 2_000, &made);
            }
            let missed = made.get() as usize - before;
            assert!(
                missed < n / 2,
                "round {round}: {missed} of {n} names decided again"
            );
        }
    }

    #[test]
    fn a_name_asked_often_outlives_many_generations_and_the_rest_are_bounded() {
        let (p, made) = (policy(), Cell::new(0));
        ask(&p, "often.example", 1_000, &made);
        ask(&p, "once.example", 1_000, &made);
        for i in 0..3 * GENERATION {
            ask(&p, &format!("n{i}.example"), 1_000, &made);
            if i % 1_000 == 0 {
                ask(&p, "often.example", 1_000, &made);
            }
        }
        let before = made.get();
        ask(&p, "often.example", 1_000, &made);
        assert_eq!(made.get(), before, "the name asked again and again stayed");
        ask(&p, "once.example", 1_000, &made);
        assert_eq!(made.get(), before + 1, "the name asked once was let go");
        TABLE.with(|t| {
            let t = t.borrow();
            assert!(t.young.len() <= GENERATION && t.old.len() <= GENERATION);
        });
    }
}
