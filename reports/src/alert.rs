//! Same-day safeguarding alerts.
//!
//! The binary tees every flagged event to an [`AlertSender`] (non-blocking, bounded:
//! the hot path never waits on the alerter). The alerter keeps events of at least
//! `[alerts] min_severity` and groups them:
//!
//! - **one alert per episode**: the first flag of a person (signed-in user, else
//!   device) opens an episode; their flags within [`AlertTuning::episode_gap`] of
//!   the last one join it without another alert. The alert waits
//!   [`AlertTuning::gather`] (20 s) for the rest of a burst, so it can say "4
//!   flagged requests", and still goes within a minute;
//! - **a daily cap** (`[alerts] daily_cap`, per day in school time): past it,
//!   one overflow notice, then nothing until midnight (the flags are all in the
//!   review queue; the cap only stops a flood of email);
//! - **no detail beyond what is needed**: school, time, role, category, how many
//!   flags, and the link `{dashboard.url}/review/episode/{event id}`; never a name,
//!   a search term, an address or a URL.
//!
//! Each alert becomes deliveries (email to `[alerts] recipients` plus the school's
//! `alert_recipients`, and the webhook) written to the [`Outbox`] on disk before
//! they are tried; a delivery loop retries them with back-off until the mail server
//! or the webhook takes them, across restarts. What can be lost: flags inside the
//! 20 s gathering window when the process dies (they are in the store and the
//! review queue, but not alerted), and flags offered while the queue was full,
//! which are counted and reported in a notice instead.
//!
//! Alerts are not deduplicated across restarts (episodes are in memory): a
//! restart in the middle of an episode may alert it twice, which is the safe way
//! round. The cap also restarts with the process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use schoolgate_classifier::config::{SchoolConfig, SmtpConfig};
use schoolgate_classifier::{Action, Category, CategorySet, Config, Severity};
use schoolgate_events::AccessEvent;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::episode::subject_of;
use crate::mail::{MailError, Mailer, RetryPolicy, mailbox, text_message};
use crate::outbox::{Channel, Delivery, Outbox};
use crate::webhook::{DeliveryError, WebhookClient};

/// Tuning that is not in the config file.
///
/// Defaults: episodes end after 30 minutes without a flag, an alert waits 20 s to
/// gather a burst, 1 024 flagged events may wait for the alerter, 10 000 people's
/// episodes are tracked at once, and deliveries retry from 5 s up to every 5
/// minutes, until they go through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertTuning {
    pub episode_gap: SignedDuration,
    pub gather: Duration,
    pub queue: usize,
    pub max_episodes: usize,
    pub retry: RetryPolicy,
}

impl Default for AlertTuning {
    fn default() -> Self {
        AlertTuning {
            episode_gap: SignedDuration::from_mins(30),
            gather: Duration::from_secs(20),
            queue: 1024,
            max_episodes: 10_000,
            retry: RetryPolicy {
                initial: Duration::from_secs(5),
                max: Duration::from_secs(300),
                give_up_after: None,
            },
        }
    }
}

/// Everything the alerter needs, from the config and the caller.
#[derive(Clone, Debug)]
pub struct AlertSetup {
    pub min_severity: Severity,
    /// Trust-wide recipients: every alert.
    pub recipients: Vec<String>,
    /// Per school: its name and its own `alert_recipients`.
    pub schools: Vec<SchoolConfig>,
    pub webhook: Option<String>,
    pub daily_cap: u32,
    pub smtp: Option<SmtpConfig>,
    /// Without a trailing slash.
    pub dashboard_url: String,
    pub timezone: TimeZone,
    /// The outbox folder (e.g. `/var/lib/schoolgate/alerts`).
    pub outbox_dir: PathBuf,
    pub tuning: AlertTuning,
    pub clock: Clock,
}

impl AlertSetup {
    /// From `[alerts]`, `[reports.smtp]`, `[[schools]]`, `[dashboard] url` and
    /// `[policy] timezone`.
    pub fn from_config(
        config: &Config,
        outbox_dir: impl Into<PathBuf>,
    ) -> Result<AlertSetup, AlertError> {
        let timezone = TimeZone::get(&config.policy.timezone)
            .map_err(|e| AlertError::Config(format!("policy.timezone: {e}")))?;
        Ok(AlertSetup {
            min_severity: config.alerts.min_severity,
            recipients: config.alerts.recipients.clone(),
            schools: config.schools.clone(),
            webhook: config
                .alerts
                .webhook
                .clone()
                .filter(|w| !w.trim().is_empty()),
            daily_cap: config.alerts.daily_cap,
            smtp: config.reports.smtp.clone(),
            dashboard_url: config.dashboard.url.trim_end_matches('/').to_owned(),
            timezone,
            outbox_dir: outbox_dir.into(),
            tuning: AlertTuning::default(),
            clock: Clock::System,
        })
    }
}

/// Why the alerter could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    #[error("alerts: {0}")]
    Config(String),
    #[error("alert outbox {path}: {source}")]
    Outbox {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("webhook client: {0}")]
    Webhook(#[from] DeliveryError),
}

#[derive(Debug, Default)]
struct Stats {
    offered: AtomicU64,
    missed: AtomicU64,
    episodes: AtomicU64,
    alerts: AtomicU64,
    suppressed: AtomicU64,
    notices: AtomicU64,
    delivered: AtomicU64,
    retries: AtomicU64,
    failed: AtomicU64,
    pending: AtomicU64,
}

/// What the alerter has done since it started (for the dashboard's health page).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertStats {
    /// Events at or above the severity taken into the queue.
    pub offered: u64,
    /// Events refused because the queue was full (reported in a notice).
    pub missed: u64,
    /// Episodes opened.
    pub episodes: u64,
    /// Alerts made (one per episode under the cap).
    pub alerts: u64,
    /// Episodes not alerted because of the daily cap.
    pub suppressed: u64,
    /// Overflow and missed-events notices made.
    pub notices: u64,
    /// Deliveries accepted by the mail server or webhook.
    pub delivered: u64,
    /// Delivery attempts that failed and will be retried.
    pub retries: u64,
    /// Deliveries refused for good (moved to the outbox's `failed/`).
    pub failed: u64,
    /// Deliveries waiting now.
    pub pending: u64,
}

impl Stats {
    fn snapshot(&self) -> AlertStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AlertStats {
            offered: g(&self.offered),
            missed: g(&self.missed),
            episodes: g(&self.episodes),
            alerts: g(&self.alerts),
            suppressed: g(&self.suppressed),
            notices: g(&self.notices),
            delivered: g(&self.delivered),
            retries: g(&self.retries),
            failed: g(&self.failed),
            pending: g(&self.pending),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// What [`AlertSender::offer`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Below `min_severity` (or no severity): not for alerting.
    Below,
    Queued,
    /// The queue is full: counted, and reported in a notice.
    Full,
    /// The alerter has stopped.
    Closed,
}

/// The non-blocking way in, for the pipeline's tee.
#[derive(Clone, Debug)]
pub struct AlertSender {
    tx: mpsc::Sender<AccessEvent>,
    min: Severity,
    stats: Arc<Stats>,
}

impl AlertSender {
    /// Offers a flagged event; clones it only when it is for alerting.
    pub fn offer(&self, event: &AccessEvent) -> Offer {
        // A flag without a severity counts as low (as in the review queue).
        let severity = event
            .severity
            .or((event.action == Action::Flag).then_some(Severity::Low));
        if severity.is_none_or(|s| s < self.min) {
            return Offer::Below;
        }
        match self.tx.try_send(event.clone()) {
            Ok(()) => {
                bump(&self.stats.offered);
                Offer::Queued
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                bump(&self.stats.missed);
                Offer::Full
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }
}

/// The running alerter.
#[derive(Debug)]
pub struct AlerterHandle {
    tasks: JoinSet<()>,
    stats: Arc<Stats>,
}

impl AlerterHandle {
    pub fn stats(&self) -> AlertStats {
        self.stats.snapshot()
    }

    /// Waits for both tasks to stop (after the cancellation token fired).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts the alerter.
#[derive(Debug)]
pub struct Alerter;

impl Alerter {
    /// Opens the outbox (resuming what an earlier run left in it) and starts the
    /// grouping and delivery tasks on the current runtime.
    pub fn start(
        setup: AlertSetup,
        cancel: CancellationToken,
    ) -> Result<(AlertSender, AlerterHandle), AlertError> {
        let outbox = Outbox::open(&setup.outbox_dir).map_err(|source| AlertError::Outbox {
            path: setup.outbox_dir.clone(),
            source,
        })?;
        let mailer = setup.smtp.as_ref().map(Mailer::new).transpose()?;
        if let Some(m) = &mailer {
            // Fail at start on a bad address, not at the first alert.
            mailbox(&m.from().to_string())?;
            for r in setup
                .recipients
                .iter()
                .chain(setup.schools.iter().flat_map(|s| &s.alert_recipients))
            {
                mailbox(r)?;
            }
        }
        let webhook = WebhookClient::new()?;
        let pending = outbox.pending().map_err(|source| AlertError::Outbox {
            path: setup.outbox_dir.clone(),
            source,
        })?;
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel(setup.tuning.queue.max(1));
        // Bounded: the grouper waits (it is not on the hot path) if deliveries pile up.
        let (dtx, drx) = mpsc::channel(256);
        let mut tasks = JoinSet::new();
        let grouper = Grouper {
            setup: setup.clone(),
            outbox: outbox.clone(),
            deliveries: dtx,
            stats: Arc::clone(&stats),
            episodes: HashMap::new(),
            day: None,
            sent_today: 0,
            overflow_sent: false,
            missed_reported: 0,
            notice_seq: 0,
        };
        tasks.spawn(grouper.run(rx, cancel.clone()));
        let deliverer = Deliverer {
            outbox,
            mailer,
            webhook,
            retry: setup.tuning.retry,
            stats: Arc::clone(&stats),
        };
        tasks.spawn(deliverer.run(pending, drx, cancel));
        let sender = AlertSender {
            tx,
            min: setup.min_severity,
            stats: Arc::clone(&stats),
        };
        Ok((sender, AlerterHandle { tasks, stats }))
    }
}

/// An episode being tracked.
#[derive(Debug)]
struct Open {
    first_event: String,
    school: String,
    role: String,
    first: Timestamp,
    last: Timestamp,
    flags: u64,
    max_severity: Severity,
    categories: CategorySet,
    /// When to alert; `None` once alerted (or suppressed).
    due: Option<Instant>,
}

/// What an alert says (and nothing more).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertFacts {
    pub school: String,
    pub school_name: String,
    pub role: String,
    pub severity: Severity,
    /// Labels of the concerning categories.
    pub concerns: Vec<&'static str>,
    pub first: Timestamp,
    pub flags: u64,
    pub episode: String,
    pub link: String,
}

/// Categories that say nothing about the concern (a search engine, a news site).
fn is_context(c: Category) -> bool {
    matches!(
        c,
        Category::Search
            | Category::Education
            | Category::News
            | Category::Sports
            | Category::Advertising
    )
}

/// Subject, plain-text body and webhook payload of an alert.
pub fn alert_message(
    f: &AlertFacts,
    tz: &TimeZone,
    gap: SignedDuration,
) -> (String, String, serde_json::Value) {
    let when = f
        .first
        .to_zoned(tz.clone())
        .strftime("%a %-d %b %Y, %H:%M")
        .to_string();
    let concern = if f.concerns.is_empty() {
        "flagged content".to_owned()
    } else {
        f.concerns.join(", ")
    };
    let who = if f.role.is_empty() {
        "a person on the network".to_owned()
    } else {
        format!("someone with the {} role", f.role)
    };
    let subject = format!("Safeguarding alert ({}): {}", f.severity, f.school_name);
    let body = format!(
        "A flag of {sev} severity needs the safeguarding lead's attention.\n\n\
         School:    {school}\n\
         When:      {when}\n\
         Who:       {who} (the name is in the dashboard)\n\
         Concern:   {concern}\n\
         Requests:  {flags} flagged in this episode\n\n\
         Review the episode (sign-in required):\n{link}\n\n\
         This alert leaves out names, search terms and web addresses on purpose.\n\
         Further flags from the same person within {mins} minutes join this episode \
         without another alert.\n",
        sev = f.severity,
        school = f.school_name,
        flags = f.flags,
        link = f.link,
        mins = gap.as_mins(),
    );
    let text = format!(
        "Safeguarding alert ({sev}) at {school}: {concern}, {flags} flagged request{s} from {who} since {time}. Review: {link}",
        sev = f.severity,
        school = f.school_name,
        flags = f.flags,
        s = if f.flags == 1 { "" } else { "s" },
        time = f.first.to_zoned(tz.clone()).strftime("%H:%M"),
        link = f.link,
    );
    let payload = serde_json::json!({
        "text": text,
        "title": subject,
        "severity": f.severity.name(),
        "school": f.school,
        "episode": f.episode,
        "flags": f.flags,
        "time": f.first.to_string(),
        "url": f.link,
    });
    (subject, body, payload)
}

struct Grouper {
    setup: AlertSetup,
    outbox: Outbox,
    deliveries: mpsc::Sender<Delivery>,
    stats: Arc<Stats>,
    episodes: HashMap<String, Open>,
    day: Option<Date>,
    sent_today: u32,
    overflow_sent: bool,
    missed_reported: u64,
    notice_seq: u64,
}

/// How often the grouper checks for flags missed because the queue was full, and
/// forgets ended episodes.
const HOUSEKEEPING: Duration = Duration::from_secs(60);

impl Grouper {
    async fn run(mut self, mut rx: mpsc::Receiver<AccessEvent>, cancel: CancellationToken) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_due = self.episodes.values().filter_map(|e| e.due).min();
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                ev = rx.recv() => match ev {
                    Some(e) => self.absorb(e).await,
                    None => break,
                },
                () = sleep_until_opt(next_due) => self.emit_due(Instant::now()).await,
                _ = housekeeping.tick() => self.housekeeping().await,
            }
        }
        // Shutting down: alert what is still gathering rather than drop it.
        self.emit_due(Instant::now() + self.setup.tuning.gather)
            .await;
    }

    async fn absorb(&mut self, e: AccessEvent) {
        let gap = self.setup.tuning.episode_gap;
        let severity = e.severity.unwrap_or(Severity::Low);
        let key = subject_of(&e);
        if let Some(open) = self.episodes.get_mut(&key)
            && e.time.duration_since(open.last) <= gap
            && open.first.duration_since(e.time) <= gap
        {
            open.flags += 1;
            open.last = open.last.max(e.time);
            open.max_severity = open.max_severity.max(severity);
            open.categories = open.categories.union(e.categories);
            return;
        }
        if self.episodes.len() >= self.setup.tuning.max_episodes {
            self.forget_ended(e.time).await;
        }
        bump(&self.stats.episodes);
        let open = Open {
            first_event: e.id.to_string(),
            school: e.school.clone(),
            role: e.role.clone(),
            first: e.time,
            last: e.time,
            flags: 1,
            max_severity: severity,
            categories: e.categories,
            due: Some(Instant::now() + self.setup.tuning.gather),
        };
        if let Some(old) = self.episodes.insert(key, open)
            && old.due.is_some()
        {
            self.emit(old).await;
        }
    }

    /// Drops episodes that have ended; if the map is still full, the oldest go
    /// (alerted first if they had not been).
    async fn forget_ended(&mut self, now: Timestamp) {
        let gap = self.setup.tuning.episode_gap;
        self.episodes
            .retain(|_, o| o.due.is_some() || now.duration_since(o.last) <= gap);
        while self.episodes.len() >= self.setup.tuning.max_episodes {
            let Some(oldest) = self
                .episodes
                .iter()
                .min_by_key(|(_, o)| o.last)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(o) = self.episodes.remove(&oldest)
                && o.due.is_some()
            {
                self.emit(o).await;
            }
        }
    }

    async fn emit_due(&mut self, now: Instant) {
        let due: Vec<String> = self
            .episodes
            .iter()
            .filter(|(_, o)| o.due.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut ready: Vec<(Timestamp, String)> = Vec::new();
        for k in due {
            if let Some(o) = self.episodes.get_mut(&k) {
                o.due = None;
                ready.push((o.first, k));
            }
        }
        ready.sort();
        for (_, k) in ready {
            let snapshot = self.episodes.get(&k).map(|o| Open {
                first_event: o.first_event.clone(),
                school: o.school.clone(),
                role: o.role.clone(),
                first: o.first,
                last: o.last,
                flags: o.flags,
                max_severity: o.max_severity,
                categories: o.categories,
                due: None,
            });
            if let Some(o) = snapshot {
                self.emit(o).await;
            }
        }
    }

    /// Turns an episode into deliveries, under the daily cap.
    async fn emit(&mut self, o: Open) {
        let today = self
            .setup
            .clock
            .now()
            .to_zoned(self.setup.timezone.clone())
            .date();
        if self.day != Some(today) {
            self.day = Some(today);
            self.sent_today = 0;
            self.overflow_sent = false;
        }
        if self.sent_today >= self.setup.daily_cap {
            bump(&self.stats.suppressed);
            if !self.overflow_sent {
                self.overflow_sent = true;
                self.overflow_notice(today).await;
            }
            return;
        }
        self.sent_today += 1;
        bump(&self.stats.alerts);
        let school = self.setup.schools.iter().find(|s| s.id == o.school);
        let facts = AlertFacts {
            school: o.school.clone(),
            school_name: school
                .map(|s| {
                    if s.name.is_empty() {
                        s.id.clone()
                    } else {
                        s.name.clone()
                    }
                })
                .or_else(|| {
                    self.setup
                        .schools
                        .first()
                        .filter(|_| self.setup.schools.len() == 1)
                        .map(|s| s.name.clone())
                })
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "your school".to_owned()),
            role: o.role.clone(),
            severity: o.max_severity,
            concerns: o
                .categories
                .iter()
                .filter(|c| !is_context(*c))
                .map(Category::label)
                .collect(),
            first: o.first,
            flags: o.flags,
            episode: o.first_event.clone(),
            link: format!(
                "{}/review/episode/{}",
                self.setup.dashboard_url, o.first_event
            ),
        };
        let (subject, body, payload) =
            alert_message(&facts, &self.setup.timezone, self.setup.tuning.episode_gap);
        let to = self.recipients(school);
        self.queue(
            format!("alert-{}", o.first_event),
            to,
            subject,
            body,
            payload,
        )
        .await;
    }

    fn recipients(&self, school: Option<&SchoolConfig>) -> Vec<String> {
        let mut to: Vec<String> = Vec::new();
        for r in self
            .setup
            .recipients
            .iter()
            .chain(school.into_iter().flat_map(|s| &s.alert_recipients))
        {
            if !to.iter().any(|t| t.eq_ignore_ascii_case(r)) {
                to.push(r.clone());
            }
        }
        to
    }

    async fn overflow_notice(&mut self, today: Date) {
        bump(&self.stats.notices);
        let cap = self.setup.daily_cap;
        let review = format!("{}/review", self.setup.dashboard_url);
        let subject = "Safeguarding alerts: daily limit reached".to_owned();
        let body = format!(
            "Today's limit of {cap} safeguarding alerts has been reached.\n\n\
             Further flags today are recorded and in the review queue, but will not be \
             alerted until tomorrow. Please check the queue:\n{review}\n"
        );
        let payload = serde_json::json!({
            "text": format!("Safeguarding alerts: today's limit of {cap} was reached; further flags today are in the review queue: {review}"),
            "title": subject,
            "kind": "overflow",
            "url": review,
        });
        let to = self.all_recipients();
        self.queue(format!("overflow-{today}"), to, subject, body, payload)
            .await;
    }

    async fn housekeeping(&mut self) {
        let missed = self.stats.missed.load(Ordering::Relaxed);
        if missed > self.missed_reported {
            let n = missed - self.missed_reported;
            self.missed_reported = missed;
            bump(&self.stats.notices);
            self.notice_seq += 1;
            let review = format!("{}/review", self.setup.dashboard_url);
            let subject = "Safeguarding alerts: some flags could not be checked".to_owned();
            let body = format!(
                "{n} flagged requests arrived faster than alerts could be prepared and were \
                 not checked for alerting. They are recorded and in the review queue:\n{review}\n"
            );
            let payload = serde_json::json!({
                "text": format!("Safeguarding alerts: {n} flags arrived too fast to check for alerting; they are in the review queue: {review}"),
                "title": subject,
                "kind": "missed",
                "url": review,
            });
            let to = self.all_recipients();
            let id = format!(
                "missed-{}-{}",
                self.setup.clock.now().as_millisecond(),
                self.notice_seq
            );
            self.queue(id, to, subject, body, payload).await;
        }
        let now = self.setup.clock.now();
        let gap = self.setup.tuning.episode_gap;
        self.episodes
            .retain(|_, o| o.due.is_some() || now.duration_since(o.last) <= gap);
    }

    fn all_recipients(&self) -> Vec<String> {
        let mut to = self.recipients(None);
        for r in self.setup.schools.iter().flat_map(|s| &s.alert_recipients) {
            if !to.iter().any(|t| t.eq_ignore_ascii_case(r)) {
                to.push(r.clone());
            }
        }
        to
    }

    /// Writes the deliveries to the outbox, then hands them to the delivery loop.
    async fn queue(
        &mut self,
        id: String,
        to: Vec<String>,
        subject: String,
        body: String,
        payload: serde_json::Value,
    ) {
        let created = self.setup.clock.now();
        let mut out = Vec::new();
        if self.setup.smtp.is_some() && !to.is_empty() {
            out.push(Delivery {
                id: format!("{id}-email"),
                created,
                channel: Channel::Email { to, subject, body },
            });
        }
        if let Some(url) = &self.setup.webhook {
            out.push(Delivery {
                id: format!("{id}-webhook"),
                created,
                channel: Channel::Webhook {
                    url: url.clone(),
                    payload,
                },
            });
        }
        if out.is_empty() {
            tracing::warn!(%id, "safeguarding alert has nowhere to go: set [alerts] recipients with [reports.smtp], or [alerts] webhook");
        }
        for d in out {
            if let Err(e) = self.outbox.put(&d) {
                // Still try to deliver from memory: better an alert that a restart
                // would lose than no alert.
                tracing::error!(id = %d.id, error = %e, "could not write the alert to the outbox");
            }
            self.stats.pending.fetch_add(1, Ordering::Relaxed);
            if self.deliveries.send(d).await.is_err() {
                tracing::warn!("alert delivery loop has stopped; the alert stays in the outbox");
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Waiting {
    delivery: Delivery,
    attempts: u32,
    next: Instant,
}

struct Deliverer {
    outbox: Outbox,
    mailer: Option<Mailer>,
    webhook: WebhookClient,
    retry: RetryPolicy,
    stats: Arc<Stats>,
}

impl Deliverer {
    async fn run(
        self,
        resumed: Vec<Delivery>,
        mut rx: mpsc::Receiver<Delivery>,
        cancel: CancellationToken,
    ) {
        let now = Instant::now();
        if !resumed.is_empty() {
            tracing::info!(
                count = resumed.len(),
                "resuming alert deliveries from the outbox"
            );
        }
        self.stats
            .pending
            .fetch_add(resumed.len() as u64, Ordering::Relaxed);
        let mut waiting: Vec<Waiting> = resumed
            .into_iter()
            .map(|delivery| Waiting {
                delivery,
                attempts: 0,
                next: now,
            })
            .collect();
        loop {
            let next = waiting.iter().map(|w| w.next).min();
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                d = rx.recv() => match d {
                    Some(delivery) => waiting.push(Waiting { delivery, attempts: 0, next: Instant::now() }),
                    None => return,
                },
                () = sleep_until_opt(next) => {
                    let now = Instant::now();
                    let mut i = 0;
                    while i < waiting.len() {
                        if waiting[i].next > now {
                            i += 1;
                            continue;
                        }
                        let result = tokio::select! {
                            () = cancel.cancelled() => return,
                            r = self.attempt(&waiting[i].delivery) => r,
                        };
                        match result {
                            Ok(()) => {
                                let w = waiting.swap_remove(i);
                                if let Err(e) = self.outbox.remove(&w.delivery.id) {
                                    tracing::error!(id = %w.delivery.id, error = %e, "delivered alert not removed from the outbox; it may be sent again");
                                }
                                bump(&self.stats.delivered);
                                self.stats.pending.fetch_sub(1, Ordering::Relaxed);
                                tracing::info!(id = %w.delivery.id, "safeguarding alert delivered");
                            }
                            Err(DeliveryError::Transient(e)) => {
                                let w = &mut waiting[i];
                                w.attempts += 1;
                                let wait = self.retry.backoff(w.attempts);
                                w.next = Instant::now() + wait;
                                bump(&self.stats.retries);
                                tracing::warn!(id = %w.delivery.id, attempt = w.attempts, retry_in = ?wait, error = %e, "alert not delivered; will retry");
                                i += 1;
                            }
                            Err(DeliveryError::Permanent(e)) => {
                                let w = waiting.swap_remove(i);
                                tracing::error!(id = %w.delivery.id, error = %e, "alert refused for good; moved to the outbox's failed/");
                                if let Err(io) = self.outbox.fail(&w.delivery.id, &e) {
                                    tracing::error!(id = %w.delivery.id, error = %io, "could not move the failed alert");
                                }
                                bump(&self.stats.failed);
                                self.stats.pending.fetch_sub(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        }
    }

    async fn attempt(&self, d: &Delivery) -> Result<(), DeliveryError> {
        match &d.channel {
            Channel::Webhook { url, payload } => self.webhook.post(url, payload).await,
            Channel::Email { to, subject, body } => {
                let Some(mailer) = &self.mailer else {
                    return Err(DeliveryError::Permanent(
                        "no [reports.smtp] to send alert email through".to_owned(),
                    ));
                };
                let message = text_message(mailer.from(), to, subject, body)
                    .map_err(|e| DeliveryError::Permanent(e.to_string()))?;
                mailer.send(message).await.map_err(|e| match e {
                    MailError::Transient(m) => DeliveryError::Transient(m),
                    other => DeliveryError::Permanent(other.to_string()),
                })
            }
        }
    }
}
