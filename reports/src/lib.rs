//! Weekly summaries for the headteacher and same-day safeguarding alerts.
//!
//! This crate owns what schoolgate tells people who are not looking at the
//! dashboard:
//! - the [`WeeklySummary`] of a school (and of a trust) built from the event
//!   store for an ISO week, as figures only: named pupils appear only as counts;
//! - its rendering: an HTML email with server-drawn charts (inline SVG on the
//!   dashboard, PNG `cid:` parts in mail) and a plain-text part;
//! - its delivery by SMTP (STARTTLS, auth) with retries, and the [`WeeklyJob`]
//!   that builds and sends it every week at the configured time, handing each
//!   summary to the dashboard's [`SummaryArchive`];
//! - the [`Alerter`]: flagged events of at least `[alerts] min_severity` become
//!   one alert per episode, by email and webhook, within a minute, under a daily
//!   cap, through an on-disk outbox so that no alert is lost to a mail server
//!   that is down or a restart;
//! - [`weekly_report`], the command line's `schoolgate report weekly`.
//!
//! It decides nothing (`schoolgate-classifier`) and stores no events
//! (`schoolgate-events`); the dashboard owns incidents and policy history and
//! passes them in as [`WeekExtras`].
//!
//! # Layout
//! - [`week`] - `IsoWeek` (`2026-W47`), its days and period in school time
//! - [`summary`] - `WeeklySummary`, its parts, `build_summary`, scopes and recipients
//! - [`episode`] - grouping flags into episodes (shared by summaries and alerts)
//! - [`chart`] - SVG charts and their PNG rasterisation
//! - [`render`] - the HTML (email and page) and plain-text summary
//! - [`mail`] - SMTP transport, message assembly, retry policy
//! - [`schedule`] - `WeeklyJob`, the next run time, `SummaryArchive` / `WeekFacts`
//! - [`alert`] - `Alerter`, `AlertSender`, episodes, cap, the delivery loop
//! - [`outbox`] - the on-disk queue of alert deliveries
//! - [`webhook`] - the JSON POST to Teams/Slack-style endpoints
//! - [`cli`] - `weekly_report`
//! - [`clock`] - wall time that tests can move with `tokio::time`

pub mod alert;
pub mod chart;
pub mod cli;
pub mod clock;
pub mod episode;
pub mod mail;
pub mod outbox;
pub mod render;
pub mod schedule;
pub mod summary;
pub mod webhook;
pub mod week;

pub use alert::{
    AlertError, AlertFacts, AlertSender, AlertSetup, AlertStats, AlertTuning, Alerter,
    AlerterHandle, Offer,
};
pub use cli::weekly_report;
pub use clock::Clock;
pub use mail::{MailError, Mailer, RetryPolicy};
pub use render::{Rendered, render_email, render_fragment, render_page, render_text};
pub use schedule::{
    ArchiveError, NoFacts, SummaryArchive, WeekFacts, WeeklyJob, WeeklyTime, next_run, previous_run,
};
pub use summary::{
    BypassFigures, BypassKind, CategoryFigures, DayFigures, FilterHealth, IncidentFigures,
    PolicyChange, RoleFigures, SafeguardingFigures, SchoolRow, Scope, TermWeek, WeekExtras,
    WeekPoint, WeekTotals, WeeklySummary, build_summary, recipients, scopes,
};
pub use week::{IsoWeek, WeekError};

use std::path::PathBuf;

use schoolgate_events::StoreError;

/// Why a summary could not be built, written or sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Week(#[from] WeekError),
    #[error("school `{id}` is not in [[schools]] (known: {})", known.join(", "))]
    UnknownSchool { id: String, known: Vec<String> },
    #[error("drawing a chart: {0}")]
    Chart(String),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("no SMTP server configured: add [reports.smtp]")]
    NoSmtp,
    #[error(
        "no recipients for the {0} summary: set [reports] recipients or the school's report_recipients"
    )]
    NoRecipients(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}
