//! Integration tests of schoolgate-events: one binary, shared helpers in `harness`.
//! ClickHouse tests start their own `clickhouse-server` (installing Debian's
//! package if it is missing); SQLite tests use temp files.

mod harness;

/// ClickHouse specifics: migrations, escaping against a real server, purge by partition.
mod clickhouse;
/// Faults: ClickHouse killed mid-stream, the filter SIGKILLed, the queue overrun.
mod faults;
/// The write-ahead journal: recovery after a crash, concurrent writers, SIGKILL.
mod journal;
/// The batcher with a scripted in-memory store: batching, back-off, spool, dead letters.
mod pipeline;
/// Every `EventStore` query, on SQLite and on ClickHouse, against a Rust reference.
mod round_trip;
/// SQLite specifics: rollups agree with raw rows, purge per retention class, guests.
mod sqlite;
