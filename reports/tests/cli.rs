use schoolgate_reports::{ReportError, weekly_report};

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_writes_the_page_and_errors_are_plain() {
    let config = support::example("trust.toml");
    let policy = support::policy(&config);
    let w = support::week("2026-W47");
    let s = support::store();
    support::insert(
        &s.store,
        &support::traffic(&policy, w, "marsh-primary", 500, 5),
    )
    .await;
    let out = s.dir.path().join("marsh.html");

    let sum = weekly_report(
        &s.store,
        &config,
        &policy,
        w,
        Some("marsh-primary"),
        Some(&out),
        false,
    )
    .await
    .expect("report");
    assert_eq!(sum.totals.requests, 500);
    let page = std::fs::read_to_string(&out).expect("page written");
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("Marsh Road Primary"));
    assert!(page.contains("<svg"), "charts are inline SVG on the page");

    // Without a school, a trust gets the trust-wide summary.
    let trust = weekly_report(&s.store, &config, &policy, w, None, None, false)
        .await
        .expect("report");
    assert_eq!(trust.title, "Fenland Learning Trust");

    let err = weekly_report(&s.store, &config, &policy, w, Some("nowhere"), None, false)
        .await
        .expect_err("unknown school");
    assert!(matches!(err, ReportError::UnknownSchool { .. }));
    // trust.toml has no [reports.smtp].
    let err = weekly_report(&s.store, &config, &policy, w, None, None, true)
        .await
        .expect_err("no smtp");
    assert_eq!(
        err.to_string(),
        "no SMTP server configured: add [reports.smtp]"
    );
}
