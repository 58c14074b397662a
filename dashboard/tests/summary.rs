use http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use schoolgate_dashboard::Role;

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
    assert_eq!(s["trend"].as_array().expect("trend").len(), 8);
    let flagged_in_trend: u64 = s["trend"]
        .as_array()
        .expect("t")
        .iter()
        .filter_map(|p| p["flagged"].as_u64())
        .sum();
    assert_eq!(flagged_in_trend, 6, "this week and last week");
    assert_eq!(s["bypass"][0]["category"], "vpn");
    let page = head.get("/summary").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<svg") && page.body.contains("Blocked by category"));
    assert!(
        !page.body.contains("p.brown") && !page.body.contains("k.singh"),
        "no pupil is named on the summary"
    );
    let last = head.get("/summary?week=2020-01-01").await;
    assert_eq!(last.status, StatusCode::OK);
    assert!(
        last.body.contains("week of Monday 30 December"),
        "a past week by any of its days"
    );
}
