//! Turning each answered query into an [`AccessEvent`] for the safeguarding
//! review, with sampling of the uninteresting ones.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use schoolgate_classifier::{Action, Category, Severity, Verdict};
use schoolgate_events::{AccessEvent, EventSender, Source};

use crate::stats::{Counters, inc};
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
    allowed_seen: AtomicU64,
}

impl Recorder {
    pub fn new(events: EventSender, node: &str, allowed_sample: u32) -> Recorder {
        Recorder {
            events,
            node: node.into(),
            sample: u64::from(allowed_sample.max(1)),
            allowed_seen: AtomicU64::new(0),
        }
    }

    /// Records one query. Blocked and flagged queries are always recorded.
    pub fn record(&self, o: &Outcome<'_>, counters: &Counters) {
        let interesting = o.tunnel
            || o.canary
            || o.verdict.severity.is_some()
            || matches!(o.verdict.action, Action::Block | Action::Flag);
        if !interesting
            && self.sample > 1
            && !self
                .allowed_seen
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(self.sample)
        {
            inc(&counters.events_sampled_out);
            return;
        }
        let mut event = AccessEvent::from_verdict(Source::Dns, o.ip, o.q.name.text(), o.verdict);
        event.method = wire::qtype_name(o.q.qtype);
        event.status = o.rcode;
        event.duration_us = u32::try_from(o.started.elapsed().as_micros()).unwrap_or(u32::MAX);
        event.cached = o.cached;
        event.school = o.school.to_owned();
        event.node = self.node.to_string();
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
        if self.events.send(event).is_err() {
            inc(&counters.events_lost);
        }
    }
}
