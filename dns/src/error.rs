//! The DNS filter's errors. Per-query problems never become errors: they are
//! answers (FORMERR, REFUSED, SERVFAIL) and counters. Only what stops the
//! server from starting is an error.

use std::io;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// A listening address could not be bound (in use, or port 53 without the
    /// capability to bind it).
    #[error("cannot listen for DNS on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// A bound socket could not join the tokio runtime (`run` outside one).
    #[error("DNS socket cannot join the runtime: {0}")]
    Runtime(#[source] io::Error),
}
