//! Integration tests of schoolgate-reports: summaries from a real SQLite store,
//! mail through a real SMTP server (Python's aiosmtpd), webhooks to a local hyper
//! receiver, and the weekly job and the alerter under controlled time.

mod support;

/// Alerts grouped into episodes and held to the daily cap, under paused time, via a webhook.
mod alerts;
/// The example school's rendered week kept as HTML and a headless-Chromium PNG.
mod artefact;
/// `weekly_report` for the command line: `--out`, `--send`, unknown school.
mod cli;
/// Mail server or webhook down: retries, then delivers; the outbox survives a restart.
mod delivery;
/// The weekly summary through a real SMTP server: recipients, subject, both parts, cid charts, figures.
mod email;
/// The weekly job fires at Monday 07:00 school time under paused tokio time, and catches up.
mod schedule;
/// Figures in built summaries equal what the test inserted (school, trust, per school, term).
mod summary;
