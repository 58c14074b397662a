//! Turning each answered query into an [`AccessEvent`] for the safeguarding
//! review, with sampling of the uninteresting ones.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use schoolgate_classifier::{Action, Category, Severity, Verdict};
use schoolgate_events::{AccessEvent, EventSender, Source, set_text};

use crate::stats::{C, Counters};
use crate::wire::{self, Question};

/// What the filter did with one query, for its event.
#[derive(Debug)]
pub struct Outcome<'a> {
    pub q: &'a Question,
    pub ip: IpAddr,
    pub school: &'a str,
    pub device: Option<&'a str>,
    pub verdict: &'a Verdict,
    pub rcode: u16,
    pub cached: bool,
    pub started: Instant,
    /// The tunnelling heuristic fired: flagged as `proxy`, severity medium.
    pub tunnel: bool,
    /// Answered as a bypass canary: blocked as `doh`.
    pub canary: bool,
}

/// Sends events, sampling allowed ones per `allowed_sample`.
#[derive(Debug)]
pub struct Recorder {
    events: EventSender,
    node: Arc<str>,
    /// Log one in this many allowed, unflagged queries (1 = every one).
    sample: u64,
    /// An allowed name a client asked for within this long is not logged again.
    repeat: Option<Duration>,
    /// To the `dns-events` thread, which hands held events to the pipeline:
    /// `EventSender::send` writes the pipeline's journal, and a UDP loop that
    /// did that for 32 events in a row would keep the next queries waiting.
    handoff: Option<SyncSender<Handoff>>,
}

/// What a UDP loop hands to the `dns-events` thread.
#[derive(Debug)]
enum Handoff {
    Events(Vec<AccessEvent>),
    /// Acknowledged once everything handed over before it was sent.
    Barrier(oneshot::Sender<()>),
}

/// Batches of held events waiting for the `dns-events` thread; past it a loop
/// sends its events itself (never drops them).
const HANDOFF_QUEUE: usize = 256;

thread_local! {
    /// Allowed queries seen by this thread: sampling counts per socket loop, so
    /// the loops do not fight over one shared counter.
    static ALLOWED_SEEN: Cell<u64> = const { Cell::new(0) };
    /// On a UDP loop thread: events held back to be sent together, after the
    /// answers (see [`Recorder::flush_if_due`]).
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
    /// When this thread last logged each allowed (client, name), for
    /// `allowed_repeat_secs`. Per thread: no lock on the query path; a repeat
    /// arriving on another socket loop is logged once more, which is harmless.
    static RECENT: RefCell<Recent> = RefCell::new(Recent::default());
}

/// Most (client, name) pairs a thread remembers; past it the memory starts
/// over (about 1.5 MB a thread at most), so a flood of distinct names cannot
/// grow it, and the worst case is logging a repeat.
const RECENT_LIMIT: usize = 65_536;

#[derive(Debug, Default)]
struct Recent {
    /// Keyed by a 64-bit hash of (client, name); a collision (vanishingly rare at
    /// this size) would leave one allowed query unlogged, never a blocked one.
    /// The table is indexed by that hash itself: hashing it again (as a map
    /// keyed by it would) doubled the cost of a repeat, which is most queries.
    /// With each, until when a repeat is not logged: comparing two instants
    /// is cheaper than working out how long ago the last one was.
    seen: hashbrown::HashTable<(u64, Instant)>,
}

impl Recent {
    /// True when (ip, name) was logged less than `window` before `now`;
    /// otherwise remembers `now` for it.
    fn is_repeat(&mut self, ip: IpAddr, name: &str, now: Instant, window: Duration) -> bool {
        use std::hash::BuildHasher;
        let key = foldhash::fast::FixedState::default().hash_one((ip, name));
        if let Some((_, quiet_until)) = self.seen.find_mut(key, |&(k, _)| k == key) {
            if now < *quiet_until {
                return true;
            }
            *quiet_until = now + window;
            return false;
        }
        if self.seen.len() >= RECENT_LIMIT {
            self.seen.clear();
        }
        self.seen
            .insert_unique(key, (key, now + window), |&(k, _)| k);
        false
    }
}

/// Most events a loop holds back: the pipeline's batcher is then woken about
/// once per this many events instead of once per event.
const HOLD_LIMIT: usize = 64;
/// Longest an event is held back (events reach the store within the pipeline's
/// batch timeout anyway; this adds at most this much).
const HOLD_MS: u64 = 50;

#[derive(Debug)]
struct Held {
    events: Vec<AccessEvent>,
    since: Option<Instant>,
}

impl Recorder {
    pub fn new(
        events: EventSender,
        node: &str,
        allowed_sample: u32,
        allowed_repeat_secs: u32,
        counters: Arc<Counters>,
    ) -> Recorder {
        let (tx, rx) = sync_channel::<Handoff>(HANDOFF_QUEUE);
        let sender = events.clone();
        let spawned = std::thread::Builder::new()
            .name("dns-events".into())
            .spawn(move || {
                // Ends when the recorder (the only sender) is dropped.
                for handoff in rx {
                    match handoff {
                        Handoff::Events(events) => send_all(&sender, events, &counters),
                        Handoff::Barrier(ack) => {
                            let _ = ack.send(());
                        }
                    }
                }
            });
        let handoff = match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "no dns-events thread: the UDP loops send events themselves");
                None
            }
        };
        Recorder {
            events,
            node: node.into(),
            sample: u64::from(allowed_sample.max(1)),
            repeat: (allowed_repeat_secs > 0)
                .then(|| Duration::from_secs(u64::from(allowed_repeat_secs))),
            handoff,
        }
    }

    /// Waits (blocking) until every event handed over so far has reached the
    /// pipeline: at shutdown, before the pipeline stops.
    pub fn barrier(&self) -> Option<oneshot::Receiver<()>> {
        let (ack, done) = oneshot::channel();
        self.handoff.as_ref()?.send(Handoff::Barrier(ack)).ok()?;
        Some(done)
    }

    /// Records one query. Blocked and flagged queries are always recorded.
    pub fn record(&self, o: &Outcome<'_>, counters: &Counters) {
        let interesting = o.tunnel
            || o.canary
            || o.verdict.severity.is_some()
            || matches!(o.verdict.action, Action::Block | Action::Flag);
        if !interesting
            && self.sample > 1
            && !ALLOWED_SEEN
                .with(|n| n.replace(n.get().wrapping_add(1)))
                .is_multiple_of(self.sample)
        {
            counters.inc(C::EventsSampledOut);
            return;
        }
        if !interesting
            && let Some(window) = self.repeat
            && RECENT.with(|r| {
                r.borrow_mut()
                    .is_repeat(o.ip, o.q.name.text(), o.started, window)
            })
        {
            counters.inc(C::EventsRepeatsSkipped);
            return;
        }
        let mut event = AccessEvent::from_verdict(Source::Dns, o.ip, o.q.name.text(), o.verdict);
        wire::write_qtype_name(o.q.qtype, &mut event.method);
        event.status = o.rcode;
        event.duration_us = u32::try_from(o.started.elapsed().as_micros()).unwrap_or(u32::MAX);
        event.cached = o.cached;
        set_text(&mut event.school, o.school);
        set_text(&mut event.node, &self.node);
        event.device = o.device.map(str::to_owned);
        if o.canary {
            event.action = Action::Block;
            event.categories.insert(Category::Doh);
            event.rule = format!("bypass canary: {}", o.q.name.text());
            event.reason = format!(
                "blocked for {}: {} (the device is told to keep using the school's DNS)",
                o.verdict.role,
                Category::Doh.label()
            );
        } else if o.tunnel {
            if event.action != Action::Block {
                event.action = Action::Flag;
            }
            event.categories.insert(Category::Proxy);
            event.severity = event.severity.max(Some(Severity::Medium));
            event.rule = "dns tunnelling heuristic: long encoded labels at volume".to_owned();
            event.reason = format!(
                "flagged for {}: {} (this device sends many names that look like tunnelled data)",
                o.verdict.role,
                Category::Proxy.label()
            );
        }
        let event = HELD.with(|h| match h.borrow_mut().as_mut() {
            Some(held) if held.events.len() < HOLD_LIMIT => {
                held.since.get_or_insert(o.started);
                held.events.push(event);
                None
            }
            _ => Some(event),
        });
        if let Some(event) = event {
            self.send(event, counters);
        }
    }

    fn send(&self, event: AccessEvent, counters: &Counters) {
        if self.events.send(event).is_err() {
            counters.inc(C::EventsLost);
        }
    }

    /// From now on this thread holds its events back until
    /// [`Recorder::flush_if_due`] sends them: a UDP loop answers first and sends
    /// events after, several batches' worth together, so the pipeline's batcher
    /// is woken once per [`HOLD_LIMIT`] events or [`HOLD_MS`], not per event.
    pub fn hold_on_this_thread() {
        HELD.with(|h| {
            *h.borrow_mut() = Some(Held {
                events: Vec::with_capacity(HOLD_LIMIT),
                since: None,
            })
        });
    }

    /// Sends the held events if there are many, or the oldest has waited long
    /// enough (or `force`).
    pub fn flush_if_due(&self, now: Instant, force: bool, counters: &Counters) {
        HELD.with(|h| {
            if let Some(held) = h.borrow_mut().as_mut() {
                let due = force
                    || held.events.len() >= HOLD_LIMIT / 2
                    || held.since.is_some_and(|t| {
                        now.saturating_duration_since(t).as_millis() as u64 >= HOLD_MS
                    });
                if due && !held.events.is_empty() {
                    held.since = None;
                    let events =
                        std::mem::replace(&mut held.events, Vec::with_capacity(HOLD_LIMIT));
                    let events = match &self.handoff {
                        Some(tx) => match tx.try_send(Handoff::Events(events)) {
                            Ok(()) => return,
                            Err(TrySendError::Full(h) | TrySendError::Disconnected(h)) => h,
                        },
                        None => Handoff::Events(events),
                    };
                    if let Handoff::Events(events) = events {
                        send_all(&self.events, events, counters);
                    }
                }
            }
        });
    }
}

/// Sends held events together (what overflows the queue is spooled in one
/// record), counting the ones lost.
fn send_all(sender: &EventSender, events: Vec<AccessEvent>, counters: &Counters) {
    let lost = sender.send_all(events);
    if lost > 0 {
        counters.add(C::EventsLost, lost as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_the_same_client_and_name_inside_the_window() {
        let mut recent = Recent::default();
        let window = Duration::from_secs(60);
        let t0 = Instant::now();
        let pupil: IpAddr = "10.1.0.7".parse().expect("ip");
        let other: IpAddr = "10.1.0.8".parse().expect("ip");
        assert!(!recent.is_repeat(pupil, "bbc.co.uk", t0, window));
        assert!(recent.is_repeat(pupil, "bbc.co.uk", t0 + Duration::from_secs(59), window));
        assert!(!recent.is_repeat(other, "bbc.co.uk", t0, window));
        assert!(!recent.is_repeat(pupil, "news.bbc.co.uk", t0, window));
        // Past the window it is logged again, and the window starts over.
        let t1 = t0 + Duration::from_secs(61);
        assert!(!recent.is_repeat(pupil, "bbc.co.uk", t1, window));
        assert!(recent.is_repeat(pupil, "bbc.co.uk", t1 + Duration::from_secs(30), window));
    }

    #[test]
    fn the_memory_starts_over_when_full() {
        let mut recent = Recent::default();
        let window = Duration::from_secs(60);
        let t0 = Instant::now();
        let ip: IpAddr = "10.1.0.7".parse().expect("ip");
        for i in 0..RECENT_LIMIT {
            assert!(!recent.is_repeat(ip, &format!("n{i}.example"), t0, window));
        }
        assert_eq!(recent.seen.len(), RECENT_LIMIT);
        assert!(recent.is_repeat(ip, "n0.example", t0, window));
        assert!(!recent.is_repeat(ip, "one-more.example", t0, window));
        assert_eq!(recent.seen.len(), 1);
        assert!(!recent.is_repeat(ip, "n0.example", t0, window));
    }
}
