//! [`DnsFilter`]: one query from packet to answer, through the chain.
//!
//! ```text
//! packet -> parse -> client known? -> rate limit -> classifier -> policy handler
//!             |          | no            | over       (verdict)    | blocked: block answer
//!   FORMERR / silence  REFUSED         dropped                     | canary: NXDOMAIN
//!                                                                  v
//!                                        forwarder: cache hit -> answer
//!                                                   miss -> upstream (async) -> answer
//! ```
//!
//! Everything up to a cache hit runs synchronously in the socket loop, writing
//! into the loop's reused buffer ([`DnsFilter::answer_now`]); only a query that
//! must go upstream becomes a [`Deferred`] and a task of its own
//! ([`DnsFilter::answer_later`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use schoolgate_classifier::{Action, CategorySet, Request, Rule, SharedPolicy, Verdict};
use schoolgate_events::EventSender;
use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, CacheKey, Hit, KeyKind};
use crate::clients::ClientTable;
use crate::forward::Forwarder;
use crate::handler::{self, BlockSettings};
use crate::record::{Outcome, Recorder};
use crate::stats::{C, Counters, DnsStats};
use crate::tunnel;
use crate::upstream::{Ask, Upstreams};
use crate::verdicts::{self, Decision, FlowKind};
use crate::wire::{self, Malformed, QueryName, Question};

/// How a query arrived: decides truncation and what an over-limit client gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What the socket loop does after [`DnsFilter::answer_now`].
#[derive(Debug)]
pub enum Step {
    /// Send the buffer.
    Reply,
    /// Send nothing.
    Silent,
    /// The query goes upstream: hand it to [`DnsFilter::answer_later`] in a task.
    Deferred(Box<Deferred>),
}

/// A query waiting for upstream, with everything needed to answer and record it.
#[derive(Debug)]
pub struct Deferred {
    packet: Vec<u8>,
    q: Question,
    ip: IpAddr,
    transport: Transport,
    started: Instant,
    verdict: Arc<Verdict>,
    school: Arc<str>,
    device: Option<Arc<str>>,
    tunnel: bool,
    rewrite: Option<Box<QueryName>>,
    stale: Option<Hit>,
}

/// The DNS filter: policy, cache, upstreams, counters. Shared by every socket
/// loop of a [`crate::DnsServer`].
#[derive(Debug)]
pub struct DnsFilter {
    policy: SharedPolicy,
    block: BlockSettings,
    forwarder: Forwarder,
    clients: ClientTable,
    recorder: Recorder,
    counters: Arc<Counters>,
    /// `dns.udp_batch_above_qps`, read once like the rest of `[dns]`.
    udp_batch_above_qps: u32,
    /// Stops the upstream receiver tasks when the filter goes away.
    shutdown: CancellationToken,
}

impl Drop for DnsFilter {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl DnsFilter {
    /// A filter for the policy's `[dns]` section (read once, here: upstreams,
    /// block answer, cache size, rate limit, sampling) and `policy.node`. The
    /// policy itself is loaded afresh for every query, so a reload applies to
    /// the next query. Upstream sockets are opened on first use.
    pub fn new(policy: SharedPolicy, events: EventSender) -> Arc<DnsFilter> {
        let snapshot = policy.load();
        let config = snapshot.config();
        let dns = &config.dns;
        let shutdown = CancellationToken::new();
        let upstreams = Upstreams::new(
            &dns.upstreams,
            dns.upstream_ca.as_deref(),
            Duration::from_millis(dns.upstream_timeout_ms.max(1)),
            shutdown.clone(),
        );
        let counters = Arc::new(Counters::default());
        let filter = DnsFilter {
            block: BlockSettings::from_config(dns),
            forwarder: Forwarder::new(
                Cache::new(dns.cache_entries, dns.serve_stale_secs),
                upstreams,
            ),
            clients: ClientTable::new(dns.rate_limit_qps),
            recorder: Recorder::new(
                events,
                &config.policy.node,
                dns.allowed_sample,
                dns.allowed_repeat_secs,
                Arc::clone(&counters),
            ),
            counters,
            udp_batch_above_qps: dns.udp_batch_above_qps,
            shutdown,
            policy: Arc::clone(&policy),
        };
        drop(snapshot);
        Arc::new(filter)
    }

    /// The counters since start, for the dashboard's health page.
    pub fn stats(&self) -> DnsStats {
        self.counters
            .snapshot(self.forwarder.cache.len(), self.forwarder.upstream_status())
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn udp_batch_above_qps(&self) -> u32 {
        self.udp_batch_above_qps
    }

    /// Makes this thread hold the events it records until
    /// [`DnsFilter::flush_events`] (the UDP loops, per batch).
    pub(crate) fn hold_events_on_this_thread(&self) {
        Recorder::hold_on_this_thread();
    }

    /// Resolves once every event the UDP loops handed over has reached the
    /// event pipeline (blocks briefly if the hand-over queue is full).
    pub(crate) fn events_barrier(&self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        self.recorder.barrier()
    }

    /// Sends the events this thread holds, if enough have gathered or the oldest
    /// has waited long enough (`force`: now).
    pub(crate) fn flush_events(&self, now: Instant, force: bool) {
        self.recorder.flush_if_due(now, force, &self.counters);
    }

    /// Answers one packet completely (waiting for upstream if need be): for
    /// embedding and tests; the servers use [`DnsFilter::answer_now`] and
    /// [`DnsFilter::answer_later`].
    pub async fn answer(
        &self,
        packet: &[u8],
        client: IpAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(512);
        match self.answer_now(packet, client, transport, &mut out) {
            Step::Reply => Some(out),
            Step::Silent => None,
            Step::Deferred(d) => {
                self.answer_later(*d, &mut out).await;
                Some(out)
            }
        }
    }

    /// Everything that can be answered without waiting: errors, refusals, the
    /// policy handler's answers and cache hits. Writes the answer into `out`.
    pub fn answer_now(
        &self,
        packet: &[u8],
        ip: IpAddr,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Step {
        self.answer_now_at(packet, ip, transport, out, Instant::now())
    }

    /// [`DnsFilter::answer_now`] for a packet that arrived at `started` (the UDP
    /// loops read the clock once per batch).
    pub(crate) fn answer_now_at(
        &self,
        packet: &[u8],
        ip: IpAddr,
        transport: Transport,
        out: &mut Vec<u8>,
        started: Instant,
    ) -> Step {
        // Borrowed from the result, not moved out of it: a question is some 550
        // bytes (two fixed-size name buffers), and the move was a `memcpy` a query.
        let parsed = wire::parse_query(packet);
        let q = match &parsed {
            Ok(q) => q,
            Err(m) => {
                self.counters.inc(C::Malformed);
                return malformed_answer(out, packet, *m);
            }
        };
        self.counters.inc(C::Queries);
        self.counters.inc(match transport {
            Transport::Udp => C::Udp,
            Transport::Tcp => C::Tcp,
        });
        let policy = self.policy.load();
        let client = policy.client(ip, None);
        if !client.known || !answerable(q) {
            // Never an open resolver: only the school's networks get answers.
            self.counters.inc(C::Refused);
            refuse(out, packet, q);
            return Step::Reply;
        }
        let now_ms = self.forwarder.ms_at(started);
        if !self.clients.admit(ip, now_ms) {
            self.counters.inc(C::RateLimited);
            return match transport {
                // Over UDP, silence: an answer is what a flood (or a reflection
                // attack with a spoofed source) wants.
                Transport::Udp => Step::Silent,
                Transport::Tcp => {
                    refuse(out, packet, q);
                    Step::Reply
                }
            };
        }
        let clock = verdicts::clock_ms(started);
        let Decision { verdict, flow } =
            verdicts::get_or_decide(&policy, client.role, &q.name, clock, || {
                let at = Timestamp::now();
                let verdict = if q.name.is_root() {
                    root_verdict(&policy, client.role)
                } else {
                    policy.decide(&Request::host(client.role, q.name.text(), at))
                };
                let flow = handler::flow(&policy, client.role, &q.name, &verdict);
                let to_next_minute = 60_000 - at.as_millisecond().rem_euclid(60_000) as u64;
                (
                    Decision {
                        verdict: Arc::new(verdict),
                        flow,
                    },
                    to_next_minute,
                )
            });
        drop(policy);
        let outcome = |rcode: u8, cached: bool, canary: bool, tunnel: bool| Outcome {
            q,
            ip,
            school: &client.school,
            device: client.device.as_deref(),
            verdict: &verdict,
            rcode: u16::from(rcode),
            cached,
            started,
            tunnel,
            canary,
        };
        let (key, rewrite) = match flow {
            FlowKind::Block { canary } => {
                self.counters.inc(C::Blocked);
                let rcode = handler::write_block(out, packet, q, &self.block, &verdict, canary);
                self.recorder
                    .record(&outcome(rcode, false, canary, false), &self.counters);
                return Step::Reply;
            }
            FlowKind::Rewrite(cname) => match QueryName::from_text(cname) {
                Some(target) => (
                    CacheKey::new(KeyKind::SafeSearch, q, Some(target.wire())),
                    Some(Box::new(target)),
                ),
                None => (CacheKey::new(KeyKind::Upstream, q, None), None),
            },
            FlowKind::Forward => (CacheKey::new(KeyKind::Upstream, q, None), None),
        };
        let hit = self.forwarder.cached(&key, now_ms);
        let tunnel = hit.as_ref().is_none_or(|h| h.stale)
            && tunnel::looks_like_tunnel(&q.name)
            && self.clients.note_suspicious(ip, now_ms);
        if tunnel {
            self.counters.inc(C::TunnelSuspects);
        }
        self.count_verdict(&verdict, tunnel, rewrite.is_some());
        match hit {
            Some(hit) if !hit.stale || self.forwarder.upstreams_down() => {
                if hit.stale {
                    self.counters.inc(C::Stale);
                } else {
                    self.counters.inc(C::Cached);
                }
                let rcode = self.write_answer(out, packet, q, &hit, transport);
                self.recorder
                    .record(&outcome(rcode, true, false, tunnel), &self.counters);
                Step::Reply
            }
            stale => Step::Deferred(Box::new(Deferred {
                packet: packet.to_vec(),
                ip,
                transport,
                started,
                school: Arc::clone(&client.school),
                device: client.device.clone(),
                tunnel,
                rewrite,
                stale,
                verdict,
                // A miss: the one path that keeps the question past this call.
                q: q.clone(),
            })),
        }
    }

    fn count_verdict(&self, verdict: &Verdict, tunnel: bool, rewrite: bool) {
        if tunnel || verdict.action == Action::Flag || verdict.severity.is_some() {
            self.counters.inc(C::Flagged);
        }
        if rewrite {
            self.counters.inc(C::Rewritten);
        }
    }

    /// Resolves a deferred query upstream and writes its answer into `out`:
    /// the upstream answer, else a stale one, else SERVFAIL.
    pub async fn answer_later(&self, d: Deferred, out: &mut Vec<u8>) {
        let ask = Ask {
            name_wire: d.q.name.wire(),
            qtype: d.q.qtype,
            qclass: d.q.qclass,
            dnssec_ok: d.q.dnssec_ok(),
            cd: d.q.cd,
        };
        let result = match &d.rewrite {
            Some(target) => {
                self.forwarder
                    .resolve_rewrite(
                        &CacheKey::new(KeyKind::SafeSearch, &d.q, Some(target.wire())),
                        ask,
                        target.wire(),
                        &self.counters,
                    )
                    .await
            }
            None => {
                let key = CacheKey::new(KeyKind::Upstream, &d.q, None);
                self.forwarder.resolve(&key, ask, &self.counters).await
            }
        };
        let (rcode, cached) = match (result, &d.stale) {
            (Ok(answer), _) => {
                let hit = Hit {
                    answer,
                    age_secs: 0,
                    stale: false,
                };
                (
                    self.write_answer(out, &d.packet, &d.q, &hit, d.transport),
                    false,
                )
            }
            (Err(_), Some(stale)) => {
                self.counters.inc(C::Stale);
                (
                    self.write_answer(out, &d.packet, &d.q, stale, d.transport),
                    true,
                )
            }
            (Err(_), None) => {
                self.counters.inc(C::Servfail);
                wire::begin_answer(out, &d.packet, &d.q, wire::RCODE_SERVFAIL);
                if let Some(e) = d.q.edns {
                    let text = "schoolgate: no upstream resolver answered";
                    wire::push_opt(
                        out,
                        e.dnssec_ok,
                        0,
                        Some((wire::EDE_NO_REACHABLE_AUTHORITY, text)),
                    );
                }
                (wire::RCODE_SERVFAIL, false)
            }
        };
        let outcome = Outcome {
            q: &d.q,
            ip: d.ip,
            school: &d.school,
            device: d.device.as_deref(),
            verdict: &d.verdict,
            rcode: u16::from(rcode),
            cached,
            started: d.started,
            tunnel: d.tunnel,
            canary: false,
        };
        self.recorder.record(&outcome, &self.counters);
    }

    /// Writes a cached (or just resolved) answer for `q`, with our OPT record,
    /// truncated when it is too big for the client's UDP payload.
    fn write_answer(
        &self,
        out: &mut Vec<u8>,
        packet: &[u8],
        q: &Question,
        hit: &Hit,
        transport: Transport,
    ) -> u8 {
        hit.answer
            .write_for(out, packet, q, hit.age_secs, hit.stale);
        let ede = hit.stale.then_some((wire::EDE_STALE_ANSWER, ""));
        if let Some(e) = q.edns {
            wire::push_opt(out, e.dnssec_ok, 0, ede);
        }
        if transport == Transport::Udp && out.len() > q.udp_limit() {
            wire::truncate_answer(out, q.question_end);
            if let Some(e) = q.edns {
                wire::push_opt(out, e.dnssec_ok, 0, None);
            }
        }
        hit.answer.rcode()
    }
}

/// Classes and types a forwarding filter does not serve: CHAOS (`version.bind`
/// would describe the upstream) and zone transfers.
fn answerable(q: &Question) -> bool {
    q.qclass == wire::CLASS_IN
        && !matches!(
            q.qtype,
            wire::TYPE_AXFR | wire::TYPE_IXFR | wire::TYPE_MAILA | wire::TYPE_MAILB
        )
}

fn refuse(out: &mut Vec<u8>, packet: &[u8], q: &Question) {
    wire::begin_answer(out, packet, q, wire::RCODE_REFUSED);
    if let Some(e) = q.edns {
        wire::push_opt(out, e.dnssec_ok, 0, Some((wire::EDE_PROHIBITED, "")));
    }
}

fn malformed_answer(out: &mut Vec<u8>, packet: &[u8], m: Malformed) -> Step {
    match m {
        Malformed::Silent => Step::Silent,
        Malformed::Reply { rcode } => {
            // Echo no question: the packet's question is what did not parse (or
            // there was not exactly one).
            wire::error_answer(out, packet, rcode, None);
            Step::Reply
        }
        Malformed::BadVersion => {
            wire::error_answer(out, packet, 0, None);
            // BADVERS (16) = extended rcode 1 in the OPT record, 0 in the header.
            wire::push_opt(out, false, (wire::RCODE_BADVERS >> 4) as u8, None);
            Step::Reply
        }
    }
}

/// The root name (`. NS` priming, `dig .`) is nothing to classify.
fn root_verdict(
    policy: &schoolgate_classifier::Policy,
    role: schoolgate_classifier::RoleId,
) -> Verdict {
    Verdict {
        action: Action::Allow,
        categories: CategorySet::EMPTY,
        severity: None,
        rule: Rule::Default,
        category: None,
        role: Arc::clone(&policy.role(role).name),
        rewrite: None,
        search_terms: None,
    }
}
