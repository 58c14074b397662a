//! The weekly job: at `[reports] weekly_day` / `weekly_time` in the school's time
//! zone (default Monday 07:00 Europe/London) it builds last week's summary for each
//! school (and the trust), hands each to the dashboard's [`SummaryArchive`], and
//! sends it to its recipients.
//!
//! Waiting is done with `tokio::time` in steps of at most an hour against the
//! [`Clock`], so a clock change, a suspended VM or a reloaded schedule is noticed
//! within the hour. A node that was down at the scheduled time catches up when it
//! starts, the same day, if the archive does not already hold that week.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use schoolgate_classifier::{Policy, SharedPolicy};
use schoolgate_events::EventStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ReportError;
use crate::clock::Clock;
use crate::mail::{Mailer, RetryPolicy, send_summary};
use crate::summary::{Scope, WeekExtras, WeeklySummary, build_summary, recipients, scopes};
use crate::week::IsoWeek;

/// Longest single wait: the schedule and the wall clock are looked at again after
/// this long.
const MAX_STEP: Duration = Duration::from_secs(3600);
/// How late a missed run may still be caught up at start.
const CATCH_UP: SignedDuration = SignedDuration::from_hours(24);

/// Why the dashboard could not keep or look up a summary.
#[derive(Debug, thiserror::Error)]
#[error("summary archive: {0}")]
pub struct ArchiveError(pub String);

/// Where built summaries are kept (the dashboard's store of past weeks).
#[async_trait]
pub trait SummaryArchive: Send + Sync + fmt::Debug {
    /// Whether the summary of `week` for `scope` is already kept (so a restart
    /// does not send it twice).
    async fn contains(&self, week: IsoWeek, scope: &Scope) -> Result<bool, ArchiveError>;
    /// Keeps a summary (replacing one of the same week and scope).
    async fn keep(&self, summary: &WeeklySummary) -> Result<(), ArchiveError>;
}

/// What the dashboard adds to a week: incidents, filter health, policy changes.
#[async_trait]
pub trait WeekFacts: Send + Sync + fmt::Debug {
    async fn extras(&self, week: IsoWeek, scope: &Scope) -> WeekExtras;
}

/// No facts beyond the event store (the command line).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFacts;

#[async_trait]
impl WeekFacts for NoFacts {
    async fn extras(&self, _week: IsoWeek, _scope: &Scope) -> WeekExtras {
        WeekExtras::default()
    }
}

/// When the summary goes out, from `[reports]` and `[policy] timezone`.
#[derive(Clone, Debug, PartialEq)]
pub struct WeeklyTime {
    pub day: Weekday,
    pub time: Time,
    pub tz: TimeZone,
}

impl WeeklyTime {
    /// The policy's schedule. `weekly_time` was validated when the config was
    /// parsed; a value that still fails to read falls back to 07:00.
    pub fn of(policy: &Policy) -> WeeklyTime {
        let reports = &policy.config().reports;
        let time = parse_hhmm(&reports.weekly_time).unwrap_or_else(|| Time::constant(7, 0, 0, 0));
        WeeklyTime {
            day: reports.weekly_day.0,
            time,
            tz: policy.time_zone().clone(),
        }
    }
}

fn parse_hhmm(s: &str) -> Option<Time> {
    let (h, m) = s.trim().split_once(':')?;
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

/// The first scheduled moment strictly after `after`. A time that does not exist
/// on the day (the clocks go forward) is taken as the moment just after the gap.
pub fn next_run(after: Timestamp, when: &WeeklyTime) -> Timestamp {
    let today = after.to_zoned(when.tz.clone()).date();
    for offset in 0..=8 {
        let date = today.saturating_add(offset.days());
        if date.weekday() != when.day {
            continue;
        }
        if let Ok(z) = date.to_datetime(when.time).to_zoned(when.tz.clone())
            && z.timestamp() > after
        {
            return z.timestamp();
        }
    }
    // Unreachable for a valid zone; wait a week rather than spin.
    after
        .checked_add(SignedDuration::from_hours(24 * 7))
        .unwrap_or(Timestamp::MAX)
}

/// The last scheduled moment at or before `at`.
pub fn previous_run(at: Timestamp, when: &WeeklyTime) -> Option<Timestamp> {
    let week_ago = at
        .checked_sub(SignedDuration::from_hours(24 * 7 + 2))
        .ok()?;
    let candidate = next_run(week_ago, when);
    let mut last = None;
    let mut t = candidate;
    while t <= at {
        last = Some(t);
        t = next_run(t, when);
    }
    last
}

/// The weekly summary job.
#[derive(Clone)]
pub struct WeeklyJob {
    store: Arc<dyn EventStore>,
    policy: SharedPolicy,
    archive: Arc<dyn SummaryArchive>,
    facts: Arc<dyn WeekFacts>,
    clock: Clock,
    retry: RetryPolicy,
}

impl fmt::Debug for WeeklyJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeeklyJob")
            .field("store", &self.store.name())
            .field("archive", &self.archive)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl WeeklyJob {
    /// A job on the system clock with [`RetryPolicy::weekly`].
    pub fn new(
        store: Arc<dyn EventStore>,
        policy: SharedPolicy,
        archive: Arc<dyn SummaryArchive>,
        facts: Arc<dyn WeekFacts>,
    ) -> WeeklyJob {
        WeeklyJob {
            store,
            policy,
            archive,
            facts,
            clock: Clock::System,
            retry: RetryPolicy::weekly(),
        }
    }

    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> WeeklyJob {
        self.clock = clock;
        self
    }

    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> WeeklyJob {
        self.retry = retry;
        self
    }

    /// Runs the job on the current runtime until `cancel` fires.
    pub fn spawn(self, cancel: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move { self.run(cancel).await })
    }

    /// The job's loop: catch up a missed run, then wait for each scheduled time.
    pub async fn run(self, cancel: CancellationToken) {
        let started = self.clock.now();
        let when = WeeklyTime::of(&self.policy.load_full());
        if let Some(due) = previous_run(started, &when)
            && started.duration_since(due) <= CATCH_UP
        {
            let week = IsoWeek::at(due, &when.tz).previous();
            if self.missing(week).await {
                tracing::info!(%week, "weekly summary missed at its time; sending it now");
                self.run_logged(week, &cancel).await;
            }
        }
        let mut after = started;
        loop {
            // Re-read the schedule on every step: a reloaded policy may move it.
            let (due, tz) = loop {
                let when = WeeklyTime::of(&self.policy.load_full());
                let due = next_run(after, &when);
                let now = self.clock.now();
                if now >= due {
                    break (due, when.tz);
                }
                let wait = Duration::try_from(due.duration_since(now))
                    .unwrap_or(MAX_STEP)
                    .min(MAX_STEP);
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            };
            after = due;
            let week = IsoWeek::at(due, &tz).previous();
            self.run_logged(week, &cancel).await;
            if cancel.is_cancelled() {
                return;
            }
        }
    }

    async fn missing(&self, week: IsoWeek) -> bool {
        let policy = self.policy.load_full();
        for scope in scopes(policy.config()) {
            match self.archive.contains(week, &scope).await {
                Ok(true) => {}
                Ok(false) => return true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot ask the archive; not catching up");
                    return false;
                }
            }
        }
        false
    }

    async fn run_logged(&self, week: IsoWeek, cancel: &CancellationToken) {
        match self.run_week(week, cancel).await {
            Ok(done) => tracing::info!(%week, summaries = done.len(), "weekly summaries done"),
            Err(e) => tracing::error!(%week, error = %e, "weekly summaries failed"),
        }
    }

    /// Builds, keeps and sends `week`'s summaries (every school, and the trust).
    /// Summaries are kept before any is sent, so a mail server that is down delays
    /// the email but never the dashboard's copy.
    pub async fn run_week(
        &self,
        week: IsoWeek,
        cancel: &CancellationToken,
    ) -> Result<Vec<WeeklySummary>, ReportError> {
        let policy = self.policy.load_full();
        let config = policy.config();
        let mut built = Vec::new();
        for scope in scopes(config) {
            let extras = self.facts.extras(week, &scope).await;
            let summary = build_summary(
                self.store.as_ref(),
                &policy,
                week,
                &scope,
                extras,
                self.clock.now(),
            )
            .await?;
            if let Err(e) = self.archive.keep(&summary).await {
                tracing::error!(%week, scope = %scope.key(), error = %e, "could not keep the weekly summary");
            }
            built.push(summary);
        }
        let Some(smtp) = &config.reports.smtp else {
            tracing::info!(%week, "no [reports.smtp]: summaries kept in the dashboard only");
            return Ok(built);
        };
        let mailer = Mailer::new(smtp)?;
        let sends = built.iter().map(|summary| {
            let to = recipients(config, &summary.scope);
            let mailer = &mailer;
            async move {
                if to.is_empty() {
                    tracing::info!(scope = %summary.scope.key(), "no recipients for this summary");
                    return;
                }
                if let Err(e) = send_summary(mailer, summary, &to, &self.retry, cancel).await {
                    tracing::error!(week = %summary.week, scope = %summary.scope.key(), error = %e, "weekly summary not sent");
                }
            }
        });
        futures::future::join_all(sends).await;
        Ok(built)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> TimeZone {
        TimeZone::get("Europe/London").expect("tzdb")
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn next_run_is_the_coming_monday_seven_am_school_time() {
        let when = WeeklyTime {
            day: Weekday::Monday,
            time: Time::constant(7, 0, 0, 0),
            tz: london(),
        };
        // Sunday evening in November (GMT): Monday 07:00 GMT.
        assert_eq!(
            next_run(at("2026-11-22T20:00:00Z"), &when),
            at("2026-11-23T07:00:00Z")
        );
        // Exactly at the time: the next week's.
        assert_eq!(
            next_run(at("2026-11-23T07:00:00Z"), &when),
            at("2026-11-30T07:00:00Z")
        );
        // Summer time: 07:00 BST is 06:00 UTC.
        assert_eq!(
            next_run(at("2026-06-01T05:00:00Z"), &when),
            at("2026-06-01T06:00:00Z")
        );
        assert_eq!(
            previous_run(at("2026-11-23T09:00:00Z"), &when),
            Some(at("2026-11-23T07:00:00Z"))
        );
        assert_eq!(
            previous_run(at("2026-11-23T06:59:00Z"), &when),
            Some(at("2026-11-16T07:00:00Z"))
        );
    }

    #[test]
    fn a_time_in_the_spring_gap_runs_just_after_it() {
        let when = WeeklyTime {
            day: Weekday::Sunday,
            time: Time::constant(1, 30, 0, 0),
            tz: london(),
        };
        // 01:30 does not exist on 29 March 2026 in London; 02:30 BST = 01:30 UTC.
        assert_eq!(
            next_run(at("2026-03-28T12:00:00Z"), &when),
            at("2026-03-29T01:30:00Z")
        );
    }
}
