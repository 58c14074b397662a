use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use jiff::Timestamp;
use schoolgate_classifier::{Category, Severity};
use schoolgate_events::{AccessEvent, Source};
use schoolgate_reports::{AlertSetup, Alerter, Clock, Offer};
use tokio_util::sync::CancellationToken;

use crate::support;

fn flag(
    clock: &Clock,
    user: Option<&str>,
    ip: u8,
    category: Category,
    severity: Severity,
) -> AccessEvent {
    let e = AccessEvent::new(
        Source::Inspect,
        IpAddr::V4(Ipv4Addr::new(10, 20, 1, ip)),
        "www.google.com",
    )
    .at(clock.now())
    .with_school("hillside")
    .with_role("pupil")
    .with_path("/search?q=secret+terms")
    .with_search_terms("secret terms")
    .with_categories([Category::Search, category].into_iter().collect())
    .with_severity(Some(severity));
    match user {
        Some(u) => e.with_user(u),
        None => e,
    }
}

/// Under paused time: one alert per episode (not per request), a daily cap of 3
/// with one overflow notice, a fresh allowance after midnight, and nothing in the
/// messages beyond school, time, role, concern and the episode link.
#[tokio::test(start_paused = true)]
async fn one_alert_per_episode_and_a_daily_cap_with_one_overflow_notice() {
    let mut hook = support::webhook_receiver().await;
    let mut config = support::example("school.toml");
    config.alerts.webhook = Some(hook.url.clone());
    config.alerts.daily_cap = 3;
    config.reports.smtp = None;
    let dir = tempfile::tempdir().expect("outbox");
    let clock = Clock::starting_at("2026-11-17T09:00:00Z".parse::<Timestamp>().expect("ts"));
    let mut setup = AlertSetup::from_config(&config, dir.path()).expect("setup");
    setup.clock = clock;
    let cancel = CancellationToken::new();
    let (alerts, handle) = Alerter::start(setup, cancel.clone()).expect("alerter");
    // Sleeping on paused time lets every task run to idle at each step, so the
    // alerter sees each offer at the moment it was made.
    let minutes = |m: u64| tokio::time::sleep(Duration::from_secs(60 * m));

    // Below the threshold: not for alerting.
    assert_eq!(
        alerts.offer(&flag(
            &clock,
            Some("x"),
            1,
            Category::Bullying,
            Severity::Medium
        )),
        Offer::Below
    );

    // Ann: three self-harm flags over ten minutes = one episode, one alert.
    let first = flag(&clock, Some("ann"), 1, Category::SelfHarm, Severity::High);
    assert_eq!(alerts.offer(&first), Offer::Queued);
    assert_eq!(
        alerts.offer(&flag(
            &clock,
            Some("ann"),
            1,
            Category::SelfHarm,
            Severity::High
        )),
        Offer::Queued
    );
    let a = hook.received.recv().await.expect("ann's alert");
    minutes(5).await;
    alerts.offer(&flag(
        &clock,
        Some("ann"),
        2,
        Category::SelfHarm,
        Severity::High,
    ));
    minutes(5).await;
    alerts.offer(&flag(
        &clock,
        Some("ann"),
        1,
        Category::Suicide,
        Severity::High,
    ));

    let text = a["text"].as_str().expect("text");
    assert!(
        text.contains("Hillside Academy") && text.contains("Self-harm"),
        "{text}"
    );
    assert!(
        text.contains("2 flagged requests"),
        "the burst was gathered: {text}"
    );
    assert_eq!(
        a["url"],
        format!("https://filter.hillside.sch.uk/review/episode/{}", first.id)
    );
    assert_eq!(a["episode"], first.id.to_string());
    assert_eq!(a["severity"], "high");
    let all = a.to_string();
    for secret in ["ann", "secret", "search?q", "10.20.1.1", "www.google.com"] {
        assert!(!all.contains(secret), "`{secret}` leaked into {all}");
    }

    // Ben, and a device nobody signed in on: an alert each (3 of 3 today).
    alerts.offer(&flag(
        &clock,
        Some("ben"),
        3,
        Category::Extremism,
        Severity::High,
    ));
    let b = hook.received.recv().await.expect("ben's alert");
    assert!(b["text"].as_str().is_some_and(|t| t.contains("Extremism")));
    minutes(1).await;
    alerts.offer(&flag(
        &clock,
        None,
        4,
        Category::Illegal,
        Severity::Critical,
    ));
    let c = hook.received.recv().await.expect("device's alert");
    assert_eq!(c["severity"], "critical");

    // Over the cap: one overflow notice, then silence.
    minutes(1).await;
    alerts.offer(&flag(
        &clock,
        Some("cat"),
        5,
        Category::SelfHarm,
        Severity::High,
    ));
    let overflow = hook.received.recv().await.expect("overflow notice");
    assert_eq!(overflow["kind"], "overflow");
    assert!(
        overflow["text"]
            .as_str()
            .is_some_and(|t| t.contains("limit of 3"))
    );
    minutes(1).await;
    alerts.offer(&flag(
        &clock,
        Some("dan"),
        6,
        Category::SelfHarm,
        Severity::High,
    ));
    // Ann again, 40 minutes after her last flag: a new episode, but capped.
    minutes(40).await;
    alerts.offer(&flag(
        &clock,
        Some("ann"),
        1,
        Category::SelfHarm,
        Severity::High,
    ));
    minutes(10).await;
    assert!(hook.received.try_recv().is_err(), "nothing more today");

    // After midnight, school time: a fresh allowance.
    tokio::time::sleep(Duration::from_secs(16 * 3600)).await;
    alerts.offer(&flag(
        &clock,
        Some("eve"),
        7,
        Category::SelfHarm,
        Severity::High,
    ));
    let e = hook.received.recv().await.expect("tomorrow's alert");
    assert!(
        e["time"]
            .as_str()
            .is_some_and(|t| t.starts_with("2026-11-18")),
        "{e}"
    );
    minutes(10).await;
    assert!(hook.received.try_recv().is_err());

    let stats = handle.stats();
    assert_eq!(
        stats.episodes, 7,
        "ann, ben, device, cat, dan, ann again, eve"
    );
    assert_eq!(stats.alerts, 4);
    assert_eq!(stats.suppressed, 3);
    assert_eq!(stats.notices, 1);
    assert_eq!(stats.delivered, 5);
    assert_eq!(stats.pending, 0);
    cancel.cancel();
    handle.join().await;
}
