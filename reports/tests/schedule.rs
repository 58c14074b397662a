use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use schoolgate_classifier::shared;
use schoolgate_reports::{
    ArchiveError, Clock, IncidentFigures, IsoWeek, NoFacts, RetryPolicy, Scope, SummaryArchive,
    WeekExtras, WeekFacts, WeeklyJob, WeeklySummary,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::support;

/// The dashboard's side, in memory: keeps summaries and reports each one.
#[derive(Debug)]
struct Archive {
    kept: Mutex<Vec<(IsoWeek, Scope)>>,
    tx: mpsc::Sender<(Timestamp, WeeklySummary)>,
    clock: Clock,
}

#[async_trait]
impl SummaryArchive for Archive {
    async fn contains(&self, week: IsoWeek, scope: &Scope) -> Result<bool, ArchiveError> {
        let kept = self.kept.lock().map_err(|e| ArchiveError(e.to_string()))?;
        Ok(kept.iter().any(|(w, s)| *w == week && s == scope))
    }

    async fn keep(&self, summary: &WeeklySummary) -> Result<(), ArchiveError> {
        self.kept
            .lock()
            .map_err(|e| ArchiveError(e.to_string()))?
            .push((summary.week, summary.scope.clone()));
        self.tx
            .send((self.clock.now(), summary.clone()))
            .await
            .map_err(|e| ArchiveError(e.to_string()))
    }
}

#[derive(Debug)]
struct Incidents;

#[async_trait]
impl WeekFacts for Incidents {
    async fn extras(&self, _week: IsoWeek, _scope: &Scope) -> WeekExtras {
        WeekExtras {
            incidents: Some(IncidentFigures {
                opened: 1,
                in_progress: 0,
                closed: 2,
            }),
            ..WeekExtras::default()
        }
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// Sunday night: the job sleeps (paused tokio time auto-advances) until Monday
/// 07:00 Europe/London, then builds and keeps week 47, with the dashboard's
/// figures; a week later it does week 48.
#[tokio::test(start_paused = true)]
async fn fires_at_monday_seven_school_time_and_keeps_last_weeks_summary() {
    let config = support::example("school.toml");
    let policy = support::policy(&config);
    let w = support::week("2026-W47");
    let s = support::store();
    let events = support::traffic(&policy, w, "hillside", 400, 3);
    support::insert(&s.store, &events).await;

    let clock = Clock::starting_at(ts("2026-11-22T21:00:00Z"));
    let (tx, mut rx) = mpsc::channel(4);
    let archive = Arc::new(Archive {
        kept: Mutex::new(Vec::new()),
        tx,
        clock,
    });
    let cancel = CancellationToken::new();
    let job = WeeklyJob::new(
        Arc::new(s.store.clone()),
        shared(policy),
        archive,
        Arc::new(Incidents),
    )
    .with_clock(clock)
    .spawn(cancel.clone());

    let (at, sum) = rx.recv().await.expect("a summary");
    assert_eq!(sum.week, w);
    assert_eq!(sum.scope, Scope::school("hillside"));
    assert_eq!(
        sum.generated_at,
        ts("2026-11-23T07:00:00Z"),
        "Monday 07:00 GMT"
    );
    assert!(at >= sum.generated_at);
    assert_eq!(sum.totals.requests, 400);
    assert_eq!(sum.incidents.map(|i| i.closed), Some(2));

    let (_, next) = rx.recv().await.expect("the next week's");
    assert_eq!(next.week, support::week("2026-W48"));
    assert_eq!(next.generated_at, ts("2026-11-30T07:00:00Z"));
    cancel.cancel();
    job.await.expect("job ends");
}

/// A node that was down at 07:00 sends the missed summary when it starts that
/// day, and only once.
#[tokio::test(start_paused = true)]
async fn catches_up_a_missed_run_the_same_day() {
    let config = support::example("school.toml");
    let policy = support::policy(&config);
    let s = support::store();
    let clock = Clock::starting_at(ts("2026-11-23T09:30:00Z"));
    let (tx, mut rx) = mpsc::channel(4);
    let archive = Arc::new(Archive {
        kept: Mutex::new(Vec::new()),
        tx,
        clock,
    });
    let cancel = CancellationToken::new();
    let policy = shared(policy);
    let job = WeeklyJob::new(
        Arc::new(s.store.clone()),
        policy.clone(),
        archive.clone(),
        Arc::new(NoFacts),
    )
    .with_clock(clock)
    .spawn(cancel.clone());
    let (_, sum) = rx.recv().await.expect("caught up");
    assert_eq!(sum.week, support::week("2026-W47"));
    assert_eq!(sum.generated_at, ts("2026-11-23T09:30:00Z"));
    cancel.cancel();
    job.await.expect("job ends");

    // Restarted again the same morning: already kept, so the next one is next week's.
    let cancel = CancellationToken::new();
    let job = WeeklyJob::new(
        Arc::new(s.store.clone()),
        policy,
        archive,
        Arc::new(NoFacts),
    )
    .with_clock(Clock::starting_at(ts("2026-11-23T10:00:00Z")))
    .spawn(cancel.clone());
    let (_, sum) = rx.recv().await.expect("next week's");
    assert_eq!(sum.week, support::week("2026-W48"));
    cancel.cancel();
    job.await.expect("job ends");
}

/// A trust's week: every school's summary and the trust's are kept, each with
/// its own figures (the store's school filter), even when the mail server is
/// down and the email is given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusts_week_is_kept_per_school_though_the_mail_fails() {
    let mut config = support::example("trust.toml");
    config.reports.smtp = Some(support::SmtpServer::smtp_config(support::free_port()));
    let policy = support::policy(&config);
    let w = support::week("2026-W47");
    let s = support::store();
    let mut events = support::traffic(&policy, w, "fenland-high", 500, 1);
    events.extend(support::traffic(&policy, w, "marsh-primary", 200, 2));
    support::insert(&s.store, &events).await;

    let (tx, mut rx) = mpsc::channel(8);
    let archive = Arc::new(Archive {
        kept: Mutex::new(Vec::new()),
        tx,
        clock: Clock::System,
    });
    let job = WeeklyJob::new(
        Arc::new(s.store.clone()),
        shared(policy),
        archive.clone(),
        Arc::new(NoFacts),
    )
    .with_retry(RetryPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        give_up_after: Some(Duration::from_millis(200)),
    });
    let built = job
        .run_week(w, &CancellationToken::new())
        .await
        .expect("built though the mail failed");
    assert_eq!(built.len(), 3);
    let mut kept = Vec::new();
    while let Ok((_, sum)) = rx.try_recv() {
        kept.push((sum.scope.key(), sum.totals.requests));
    }
    kept.sort();
    assert_eq!(
        kept,
        [
            ("school-fenland-high".to_owned(), 500),
            ("school-marsh-primary".to_owned(), 200),
            ("trust".to_owned(), 700),
        ]
    );
    for scope in [
        Scope::school("fenland-high"),
        Scope::school("marsh-primary"),
        Scope::Trust,
    ] {
        assert!(archive.contains(w, &scope).await.expect("archive"));
    }
}
