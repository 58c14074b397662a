//! Spare events: the strings of events already stored, kept for the next ones.
//!
//! Every proxied request and every logged query becomes an [`AccessEvent`] of
//! six or seven strings. They are made on the proxy's or the DNS filter's
//! thread and used to be freed on the batcher's once the batch was stored.
//! Under callgrind the allocating and freeing cost about 1,400 instructions an
//! event: a free on a thread other than the allocating one takes glibc's slow
//! path. So the batcher clears the events of a stored batch and keeps them
//! here, and [`AccessEvent::new`] fills a spare one. Its strings keep their
//! capacity, so writing a host or a path into them allocates nothing.
//!
//! Privacy: a spare is cleared field by field ([`AccessEvent::clear`], which
//! names every field) before it is kept, so nothing of one request can reach
//! another's event.

use std::cell::RefCell;
use std::sync::{Mutex, PoisonError};

use crate::event::AccessEvent;

/// Spares kept for the whole process at most: about two of the embedded
/// store's batches. More are freed. With every string at the most a spare
/// keeps (256 bytes, [`AccessEvent::clear`]), 4,096 spares hold under 11 MB;
/// typical events, about 2 MB.
const MAX_SPARE: usize = 4_096;

/// Spares a thread takes at once: one lock per this many events.
const TAKE: usize = 64;

static SPARE: Mutex<Vec<AccessEvent>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's share, taken from [`SPARE`] a handful at a time.
    static OWN: RefCell<Vec<AccessEvent>> = const { RefCell::new(Vec::new()) };
}

/// A cleared event to fill, when one is spare.
pub(crate) fn take() -> Option<AccessEvent> {
    // `try_with`: during a thread's teardown there is no share, and no spare.
    OWN.try_with(|own| {
        let mut own = own.borrow_mut();
        if own.is_empty() {
            let mut spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
            let from = spare.len().saturating_sub(TAKE);
            own.extend(spare.drain(from..));
        }
        own.pop()
    })
    .ok()
    .flatten()
}

/// Keeps stored events for reuse, cleared; past [`MAX_SPARE`] the rest are
/// freed.
pub(crate) fn give(mut events: Vec<AccessEvent>) {
    let room = {
        let spare = SPARE.lock().unwrap_or_else(PoisonError::into_inner);
        MAX_SPARE.saturating_sub(spare.len())
    };
    events.truncate(room);
    if events.is_empty() {
        return;
    }
    // Cleared outside the lock: the filter's threads may be waiting on it.
    events.iter_mut().for_each(AccessEvent::clear);
    SPARE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .append(&mut events);
}

/// Keeps one event for reuse on this thread (an event not recorded at all),
/// cleared; freed if the thread holds enough already.
pub(crate) fn keep(mut event: AccessEvent) {
    let _ = OWN.try_with(move |own| {
        let mut own = own.borrow_mut();
        if own.len() < TAKE {
            event.clear();
            own.push(event);
        }
    });
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use schoolgate_classifier::{Action, Category, Severity};

    use super::*;
    use crate::event::{Source, UNKNOWN_CLIENT};

    fn full(ip: IpAddr) -> AccessEvent {
        AccessEvent::new(Source::Proxy, ip, "secret.example")
            .with_school("north")
            .with_node("node-1")
            .with_user("pupil7")
            .with_device("laptop-7")
            .with_role("pupil")
            .with_method("POST")
            .with_path("/search?q=something+private")
            .with_search_terms("something private")
            .with_action(Action::Flag)
            .with_category(Category::SelfHarm)
            .with_severity(Some(Severity::High))
            .with_rule("list x: y", "flagged: self-harm")
            .with_status(200)
            .with_transfer(10, 20, 30)
            .with_cached(true)
    }

    #[test]
    fn a_cleared_event_is_a_placeholder() {
        let mut e = full(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)));
        e.clear();
        assert_eq!(e, AccessEvent::placeholder(Source::Dns, UNKNOWN_CLIENT));
        assert!(e.path.capacity() > 0, "the strings keep their room");
    }

    /// A new event made in a spare carries nothing of the event the spare was:
    /// it equals one made from nothing, field by field.
    #[test]
    fn a_new_event_made_in_a_spare_carries_nothing_of_the_old_one() {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 8));
        let path = "/search?q=something+private";
        give(vec![full(ip)]);
        // Other spares may be about: ours is the one with room for the path.
        let made = (0..100_000)
            .map(|_| AccessEvent::new(Source::Dns, ip, "b.example"))
            .find(|e| e.path.capacity() >= path.len())
            .expect("the spare was handed out");
        let mut expected = AccessEvent::placeholder(Source::Dns, ip);
        expected.id = made.id;
        expected.time = made.time;
        expected.host = "b.example".to_owned();
        assert_eq!(made, expected);
        assert!(!made.id.is_nil());
    }
}
