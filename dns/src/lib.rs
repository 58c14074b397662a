//! schoolgate's DNS filter: the one filter every device on a school network
//! meets, managed or not.
//!
//! It owns the DNS side of the product: answering only the school's networks,
//! the per-client rate limit, asking the classifier about every name, answering
//! blocked names (block page address or NXDOMAIN, with an Extended DNS Error),
//! SafeSearch and YouTube restriction CNAMEs, the DoH / Private Relay canaries,
//! the DNS-tunnelling heuristic, forwarding with a cache (TTLs, negative caching,
//! serve-stale) to plain or DNS-over-TLS upstreams, and one
//! [`schoolgate_events::AccessEvent`] per query. It does not decide what is
//! blocked (that is `schoolgate-classifier`) or store events (that is
//! `schoolgate-events`).
//!
//! ```no_run
//! # async fn example(policy: schoolgate_classifier::SharedPolicy, events: schoolgate_events::EventSender)
//! # -> Result<(), schoolgate_dns::DnsError> {
//! use tokio_util::sync::CancellationToken;
//!
//! let filter = schoolgate_dns::DnsFilter::new(policy.clone(), events);
//! let addrs = policy.load().config().listen.dns.clone();
//! let server = schoolgate_dns::DnsServer::bind(filter.clone(), &addrs)?;
//! let shutdown = CancellationToken::new();
//! server.run(shutdown).await?;
//! println!("{}", serde_json::to_string(&filter.stats()).unwrap_or_default());
//! # Ok(()) }
//! ```
//!
//! The hot path is our own, on the DNS wire format as hickory-proto reads it
//! (hickory-proto is the reference in the tests): datagrams arrive and leave in
//! batches (`recvmmsg`/`sendmmsg`), a query is parsed without allocating,
//! answered by writing into a reused buffer, and a cached answer is served by
//! copying its bytes and patching ID, case and TTLs. Only a query that must go
//! upstream becomes a task.
//!
//! # Layout
//! - [`server`]: [`DnsServer`], binding, TCP connections, shutdown
//! - `udp`: the UDP loops, one thread per socket, batched system calls
//! - [`filter`]: [`DnsFilter`], the chain for one query
//! - `handler`: the policy handler: block answers, canaries, SafeSearch flow
//! - `forward`: the forwarder: cache, coalescing, SafeSearch answers
//! - `upstream`: pooled upstream sockets, TCP fallback, failover, health
//! - `dot`: DNS over TLS to an upstream: a kept connection, pipelined queries
//! - `cache`: the sharded answer cache (TTL decrement, negative, serve-stale)
//! - `clients`: per-client rate limit and tunnelling counter
//! - `tunnel`: what a tunnel's query name looks like
//! - `record`: queries into events, sampling
//! - `verdicts`: recent verdicts per role and name, to the minute
//! - `wire`: reading and writing DNS messages in place
//! - [`stats`]: [`DnsStats`] for the health page
//! - [`error`]: [`DnsError`], what can stop the server from starting

mod cache;
mod clients;
mod dot;
pub mod error;
pub mod filter;
mod forward;
mod handler;
mod record;
pub mod server;
pub mod stats;
mod tunnel;
mod udp;
mod upstream;
mod verdicts;
mod wire;

pub use error::DnsError;
pub use filter::{DnsFilter, Transport};
pub use handler::CANARIES;
pub use server::DnsServer;
pub use stats::DnsStats;
