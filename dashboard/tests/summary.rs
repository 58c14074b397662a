use std::sync::Arc;

use http::StatusCode;
use jiff::civil::Time;
use jiff::{SignedDuration, Timestamp};
use schoolgate_dashboard::Role;
use schoolgate_reports::{IsoWeek, WeeklyJob};
use tokio_util::sync::CancellationToken;

use crate::support::Harness;

#[tokio::test]
async fn the_weekly_summary_has_totals_categories_trend_and_no_names() {
    let h = Harness::start().await;
    h.seed_episode("p.brown", Timestamp::now() - SignedDuration::from_mins(30))
        .await;
    h.seed_episode(
        "k.singh",
        Timestamp::now() - SignedDuration::from_hours(8 * 24),
    )
    .await;
    let mut head = h.login(Role::Headteacher).await;
    let s = head.get("/api/summary?refresh=1").await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    let s = s.json();
    assert_eq!(s["totals"]["flagged"], 3);
    assert_eq!(s["totals"]["blocked"], 1);
    assert_eq!(s["trend"].as_array().expect("trend").len(), 5);
    let flagged_in_trend: u64 = s["trend"]
        .as_array()
        .expect("t")
        .iter()
        .filter_map(|p| p["flagged"].as_u64())
        .sum();
    assert_eq!(flagged_in_trend, 6, "this week and last week");
    assert_eq!(s["bypass"][0]["kind"], "vpn");
    let page = head.get("/summary").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<svg") && page.body.contains("What was blocked and flagged"));
    assert!(page.body.contains("This week so far"));
    assert!(
        !page.body.contains("p.brown") && !page.body.contains("k.singh"),
        "no pupil is named on the summary"
    );
    let last = head.get("/summary?week=2020-01-01").await;
    assert_eq!(last.status, StatusCode::OK);
    assert!(
        last.body
            .contains("2020-W01 · week of Monday 30 December 2019"),
        "a past week by any of its days"
    );
    assert!(last.body.contains("Not sent that week"));
}

/// The weekly job, with the dashboard as its archive and source of facts: the
/// week it built is listed and shown as it was sent, even after more of that
/// week's traffic is stored.
#[tokio::test]
async fn the_summary_the_weekly_job_built_is_shown_as_sent() {
    let h = Harness::start().await;
    let tz = h.policy.load().time_zone().clone();
    let last = IsoWeek::at(Timestamp::now(), &tz).previous();
    let tuesday = last.days()[1]
        .to_datetime(Time::constant(10, 0, 0, 0))
        .to_zoned(tz)
        .expect("school time")
        .timestamp();
    h.seed_episode("p.brown", tuesday).await;
    let archive = Arc::new(h.archive.clone());
    let job = WeeklyJob::new(h.store.clone(), h.policy.clone(), archive.clone(), archive);
    let built = job
        .run_week(last, &CancellationToken::new())
        .await
        .expect("the job builds last week");
    assert_eq!(built.len(), 1, "one school: one summary");
    assert!(
        built[0].health.is_some() && built[0].incidents.is_some(),
        "the dashboard's facts are in it"
    );
    let scope = built[0].scope.key();
    let url = format!("/summary?week={last}&scope={scope}");

    // Later traffic of that week does not change what was sent.
    h.seed_episode("k.singh", tuesday + SignedDuration::from_hours(2))
        .await;
    let mut head = h.login(Role::Headteacher).await;
    let weeks = head.get("/api/summary/weeks").await.json();
    assert_eq!(weeks[0]["week"], last.to_string());
    assert_eq!(weeks[0]["scope"], scope);
    let sent = head
        .get(&format!("/api/summary?week={last}&scope={scope}"))
        .await
        .json();
    assert_eq!(sent["totals"]["flagged"], 3, "as sent: one episode");
    assert_eq!(sent["generated_at"], built[0].generated_at.to_string());
    let page = head.get(&url).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("As sent on"), "{}", page.body);
    assert!(page.body.contains("Hillside Academy") && page.body.contains("<svg"));
    assert!(
        page.body.contains(&url.replace('&', "&amp;")),
        "listed among the summaries sent"
    );
    assert!(!page.body.contains("p.brown") && !page.body.contains("k.singh"));
    // A recount is always possible, and sees both episodes.
    let now = head
        .get(&format!("/api/summary?week={last}&scope={scope}&refresh=1"))
        .await
        .json();
    assert_eq!(now["totals"]["flagged"], 6);
}
