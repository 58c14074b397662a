use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use mail_parser::MessageParser;
use schoolgate_classifier::{Category, Severity};
use schoolgate_events::{AccessEvent, Source};
use schoolgate_reports::mail::send_summary;
use schoolgate_reports::{
    AlertSetup, AlertTuning, Alerter, Mailer, RetryPolicy, Scope, WeekExtras, build_summary,
};
use tokio_util::sync::CancellationToken;

use crate::support::{self, SmtpServer};

fn quick() -> AlertTuning {
    AlertTuning {
        gather: Duration::from_millis(50),
        retry: RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            give_up_after: None,
        },
        ..AlertTuning::default()
    }
}

fn flag() -> AccessEvent {
    AccessEvent::new(
        Source::Inspect,
        IpAddr::V4(Ipv4Addr::new(10, 20, 1, 99)),
        "www.google.com",
    )
    .with_school("hillside")
    .with_role("pupil")
    .with_user(support::SECRET_USER)
    .with_search_terms(support::SECRET_TERMS[0])
    .with_categories([Category::Search, Category::SelfHarm].into_iter().collect())
    .with_severity(Some(Severity::High))
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The alert email is tried while nothing listens on the SMTP port, retried, and
/// delivered once aiosmtpd comes up there: to the DSL recipients, with the
/// episode link and without the name or the search terms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_email_waits_for_the_mail_server_then_arrives() {
    let port = support::free_port();
    let mut config = support::example("school.toml");
    config.reports.smtp = Some(SmtpServer::smtp_config(port));
    let dir = tempfile::tempdir().expect("outbox");
    let mut setup = AlertSetup::from_config(&config, dir.path()).expect("setup");
    setup.tuning = quick();
    let cancel = CancellationToken::new();
    let (alerts, handle) = Alerter::start(setup, cancel.clone()).expect("alerter");
    let event = flag();
    alerts.offer(&event);

    until("two failed attempts", || handle.stats().retries >= 2).await;
    assert_eq!(handle.stats().delivered, 0);
    let files = std::fs::read_dir(dir.path()).expect("outbox").count();
    assert!(files >= 2, "the alert waits in the outbox");

    let smtp = tokio::task::spawn_blocking(move || SmtpServer::start_on(port))
        .await
        .expect("smtp");
    let raw = smtp.wait_for(1).await;
    let msg = MessageParser::default().parse(&raw[0]).expect("parse");
    assert_eq!(
        msg.subject(),
        Some("Safeguarding alert (high): Hillside Academy")
    );
    assert_eq!(
        support::envelope_to(&msg),
        ["deputy.dsl@hillside.sch.uk", "dsl@hillside.sch.uk"]
    );
    let body = msg.body_text(0).expect("body").into_owned();
    assert!(
        body.contains(&format!(
            "https://filter.hillside.sch.uk/review/episode/{}",
            event.id
        )),
        "{body}"
    );
    assert!(body.contains("Self-harm"));
    assert!(!body.contains(support::SECRET_USER) && !body.contains(support::SECRET_TERMS[0]));
    assert!(!body.contains("google") && !body.contains("10.20.1.99"));
    until("the outbox to empty", || handle.stats().pending == 0).await;
    assert_eq!(handle.stats().delivered, 1);
    cancel.cancel();
    handle.join().await;
}

/// A webhook answering 503 keeps the alert in the outbox; after a restart the
/// next alerter delivers it from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_alert_survives_a_restart() {
    let mut hook = support::webhook_receiver().await;
    hook.status.store(503, Ordering::SeqCst);
    let mut config = support::example("school.toml");
    config.reports.smtp = None;
    config.alerts.webhook = Some(hook.url.clone());
    let dir = tempfile::tempdir().expect("outbox");
    let start = || {
        let mut setup = AlertSetup::from_config(&config, dir.path()).expect("setup");
        setup.tuning = quick();
        let cancel = CancellationToken::new();
        let (alerts, handle) = Alerter::start(setup, cancel.clone()).expect("alerter");
        (alerts, handle, cancel)
    };
    let (alerts, handle, cancel) = start();
    let event = flag();
    alerts.offer(&event);
    until("a failed attempt", || handle.stats().retries >= 1).await;
    cancel.cancel();
    handle.join().await;

    hook.status.store(200, Ordering::SeqCst);
    let (_alerts, handle, cancel) = start();
    let got = hook.received.recv().await.expect("delivered after restart");
    assert_eq!(got["episode"], event.id.to_string());
    until("the outbox to empty", || handle.stats().pending == 0).await;
    cancel.cancel();
    handle.join().await;
}

/// The weekly summary retries while the mail server is down and is sent when it
/// comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_summary_is_sent_once_the_mail_server_is_up() {
    let port = support::free_port();
    let config = support::example("school.toml");
    let policy = support::policy(&config);
    let w = support::week("2026-W47");
    let s = support::store();
    support::insert(&s.store, &support::traffic(&policy, w, "hillside", 300, 8)).await;
    let sum = build_summary(
        &s.store,
        &policy,
        w,
        &Scope::school("hillside"),
        WeekExtras::default(),
        jiff::Timestamp::now(),
    )
    .await
    .expect("summary");
    let mailer = Mailer::new(&SmtpServer::smtp_config(port)).expect("mailer");
    let retry = RetryPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(300),
        give_up_after: Some(Duration::from_secs(120)),
    };
    let cancel = CancellationToken::new();
    let sending = tokio::spawn(async move {
        send_summary(
            &mailer,
            &sum,
            &["head@hillside.sch.uk".to_owned()],
            &retry,
            &cancel,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!sending.is_finished(), "nothing to send to yet");
    let smtp = tokio::task::spawn_blocking(move || SmtpServer::start_on(port))
        .await
        .expect("smtp");
    sending
        .await
        .expect("task")
        .expect("sent once the server was up");
    let raw = smtp.wait_for(1).await;
    let msg = MessageParser::default().parse(&raw[0]).expect("parse");
    assert_eq!(support::envelope_to(&msg), ["head@hillside.sch.uk"]);
}
