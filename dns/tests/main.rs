//! Integration tests of the DNS filter: a real server on 127.0.0.1, a local
//! upstream the tests start, real clients (`dig`, hickory-resolver, raw UDP)
//! from the pupil, staff and guest addresses, and the real event pipeline.

/// Shared: the local upstream, the school's policy, the running filter, clients.
mod support;

/// Allowed and blocked names per role, block answers, EDE, no leaks.
mod answers;
/// Bypass blocking: DoH canary, Private Relay, DoH resolvers, DNS tunnelling.
mod bypass;
/// Events landing in the store with role, action, qtype; sampling.
mod events;
/// Cache, TCP fallback, upstream failure, serve-stale, failover, negative caching.
mod forwarding;
/// Malformed packets, strangers refused, rate limiting, TCP from clients.
mod hostile;
/// hickory-resolver as the client.
mod resolver;
/// SafeSearch and YouTube restriction CNAMEs with the enforced hosts' records.
mod safesearch;
/// DNS over TLS to the upstream: certificate checks, one kept connection, reconnects.
mod tls_upstream;
