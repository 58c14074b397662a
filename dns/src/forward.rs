//! The forwarder: the last handler of the chain. Answers from the cache, or asks
//! upstream (one upstream query however many clients ask the same thing at once)
//! and caches what comes back; builds and caches SafeSearch answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::OnceCell;

use crate::cache::{Answer, Cache, CacheKey, Hit, KeyKind};
use crate::stats::{C, Counters};
use crate::upstream::{Ask, Attempts, UpstreamError, Upstreams};
use crate::wire;

/// The TTL of a SafeSearch CNAME when the enforced host has no records of the
/// asked type to time it by.
const REWRITE_NODATA_TTL: u32 = 300;
const INFLIGHT_SHARDS: usize = 16;

type Flight = Arc<OnceCell<Result<Answer, UpstreamError>>>;
type Flights = Mutex<HashMap<Box<[u8]>, Flight, foldhash::fast::RandomState>>;

/// Cache, upstreams and the queries in flight.
#[derive(Debug)]
pub struct Forwarder {
    pub cache: Cache,
    upstreams: Upstreams,
    /// Questions on their way upstream, so a burst of the same question (500
    /// laptops opening the same page at the start of a lesson) costs one query.
    /// Sharded like the cache, so the cores do not queue on one lock.
    inflight: Box<[Flights]>,
    hasher: foldhash::fast::RandomState,
    epoch: Instant,
}

impl Forwarder {
    pub fn new(cache: Cache, upstreams: Upstreams) -> Forwarder {
        Forwarder {
            cache,
            upstreams,
            inflight: (0..INFLIGHT_SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since start: the cache's clock.
    pub fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    pub fn ms_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    pub fn cached(&self, key: &CacheKey, now_ms: u64) -> Option<Hit> {
        self.cache.get(key, now_ms)
    }

    /// Each upstream as the health page shows it.
    pub fn upstream_status(&self) -> Vec<crate::stats::UpstreamStatus> {
        self.upstreams.status()
    }

    /// Whether every upstream is marked down (stale answers are then served at
    /// once instead of after a failed attempt).
    pub fn upstreams_down(&self) -> bool {
        self.upstreams.all_down()
    }

    /// The answer for `ask` from upstream, coalesced with identical questions in
    /// flight, and cached.
    pub async fn resolve(
        &self,
        key: &CacheKey,
        ask: Ask<'_>,
        counters: &Counters,
    ) -> Result<Answer, UpstreamError> {
        let shard = {
            use std::hash::BuildHasher;
            &self.inflight[self.hasher.hash_one(key.as_bytes()) as usize % INFLIGHT_SHARDS]
        };
        let flight = {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(map.entry(key.as_bytes().into()).or_default())
        };
        let result = flight
            .get_or_init(|| async {
                // The flight before this one may have finished (and cached its
                // answer) between the caller's cache lookup and now.
                if let Some(hit) = self.cache.get(key, self.now_ms())
                    && !hit.stale
                {
                    return Ok(hit.answer);
                }
                counters.inc(C::Forwarded);
                let mut attempts = Attempts::default();
                let result = self.upstreams.query(ask, &mut attempts).await;
                counters.add(C::UpstreamErrors, u64::from(attempts.errors));
                counters.add(C::UpstreamTimeouts, u64::from(attempts.timeouts));
                if attempts.tcp {
                    counters.inc(C::TcpFallbacks);
                }
                let msg = result?;
                let scanned = wire::scan_response(&msg).ok_or(UpstreamError::BadAnswer)?;
                let (answer, ttl) = Answer::from_upstream(msg, &scanned, key);
                Ok(match ttl {
                    Some(ttl) => self.cache.insert(answer, ttl, self.now_ms()),
                    None => answer,
                })
            })
            .await
            .clone();
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(key.as_bytes())
            .is_some_and(|f| Arc::ptr_eq(f, &flight))
        {
            map.remove(key.as_bytes());
        }
        result
    }

    /// The SafeSearch answer for the question: `name CNAME target` followed by
    /// the target's own records of the asked type (resolved upstream, the way
    /// the providers document it), cached under `key`.
    pub async fn resolve_rewrite(
        &self,
        key: &CacheKey,
        ask: Ask<'_>,
        target_wire: &[u8],
        counters: &Counters,
    ) -> Result<Answer, UpstreamError> {
        let target_ask = Ask {
            name_wire: target_wire,
            ..ask
        };
        let target_key = CacheKey::from_parts(
            KeyKind::Upstream,
            target_wire,
            ask.qtype,
            ask.qclass,
            ask.dnssec_ok,
            ask.cd,
            None,
        );
        let (target, age) = match self.cached(&target_key, self.now_ms()) {
            Some(hit) if !hit.stale => (hit.answer, hit.age_secs),
            _ => (self.resolve(&target_key, target_ask, counters).await?, 0),
        };
        let ttl = target
            .min_ttl()
            .map_or(REWRITE_NODATA_TTL, |t| t.saturating_sub(age).max(1));
        let mut msg = Vec::with_capacity(target.wire().len() + 64);
        msg.extend_from_slice(&[0, 0, 0x81, 0x80 | target.rcode(), 0, 1, 0, 0, 0, 0, 0, 0]);
        msg.extend_from_slice(ask.name_wire);
        msg.extend_from_slice(&ask.qtype.to_be_bytes());
        msg.extend_from_slice(&ask.qclass.to_be_bytes());
        let question_end = msg.len();
        // `push_cname` points the owner at offset 12, the question's name.
        wire::push_cname(&mut msg, ttl, target_wire);
        let target_question_end = target.question_end();
        if target.answer_count() > 0 {
            wire::copy_answers_expanded(target.wire(), target_question_end, ttl, &mut msg)
                .ok_or(UpstreamError::BadAnswer)?;
        }
        let (answer, cache_ttl) = Answer::synthesized(msg, key).ok_or(UpstreamError::BadAnswer)?;
        debug_assert_eq!(answer.question_end(), question_end);
        Ok(match cache_ttl {
            Some(t) => self.cache.insert(answer, t, self.now_ms()),
            None => answer,
        })
    }
}
