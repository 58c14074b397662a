use http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use schoolgate_dashboard::Role;

use crate::support::Harness;

fn ago(mins: i64) -> Timestamp {
    Timestamp::now() - SignedDuration::from_mins(mins)
}

fn london() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Europe/London").expect("tz")
}

/// When the seeded episodes of the date tests start: 100 minutes ago, or, when
/// their 18 minutes would run past midnight in London, half an hour before that
/// midnight, so that one school day holds every event whatever the time the
/// tests run (they failed between 00:00 and 01:40).
fn episode_start() -> Timestamp {
    let start = ago(100);
    let end = start + SignedDuration::from_mins(18);
    let (first, last) = (
        start.to_zoned(london()).date(),
        end.to_zoned(london()).date(),
    );
    if first == last {
        return start;
    }
    let midnight = last.to_zoned(london()).expect("midnight").timestamp();
    midnight - SignedDuration::from_mins(30)
}

#[tokio::test]
async fn flagged_access_is_grouped_into_episodes_ranked_by_severity() {
    let h = Harness::start().await;
    h.seed_episode("p.brown", ago(240)).await;
    h.seed_episode("k.singh", ago(60)).await;
    let mut dsl = h.login(Role::EsafetyLead).await;
    let eps = dsl.get("/api/review").await;
    assert_eq!(eps.status, StatusCode::OK, "{}", eps.body);
    let eps = eps.json();
    let eps = eps.as_array().expect("list");
    // One episode per pupil (the three flagged requests are minutes apart), not
    // one row per request.
    assert_eq!(eps.len(), 2, "{eps:?}");
    for e in eps {
        assert_eq!(e["severity"], "high");
        assert_eq!(e["events"], 3);
        assert_eq!(e["status"]["status"], "new");
        assert!(e["search_terms"][0] == "how to hurt myself");
    }
    // Newest first among equal severity.
    assert_eq!(eps[0]["label"], "k.singh");
    let page = dsl.get("/review").await;
    assert!(page.body.contains("k.singh") && page.body.contains("how to hurt myself"));
}

#[tokio::test]
async fn an_episode_shows_the_browsing_around_it_and_is_audited() {
    let h = Harness::start().await;
    h.seed_episode("p.brown", ago(120)).await;
    let mut dsl = h.login(Role::EsafetyLead).await;
    let ep = &dsl.get("/api/review").await.json()[0];
    let (from, to) = (
        ep["first"]
            .as_str()
            .expect("first")
            .parse::<Timestamp>()
            .expect("ts"),
        ep["last"]
            .as_str()
            .expect("last")
            .parse::<Timestamp>()
            .expect("ts"),
    );
    let url = format!(
        "/api/review/episode?subject=user:p.brown&from={}&to={}",
        from.as_millisecond(),
        to.as_millisecond()
    );
    let v = dsl.get(&url).await.json();
    // All seven requests of the seeded 18 minutes are within ±30 minutes.
    assert_eq!(v["timeline"].as_array().expect("timeline").len(), 7);
    assert_eq!(v["context_minutes"], 30);
    let page = dsl
        .get(&url.replace("/api/review/episode", "/review/episode"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("www.wikipedia.org") && page.body.contains("nordvpn.com"));
    let log = dsl.get("/api/audit?target=p.brown").await.json();
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"viewed flagged episode"), "{actions:?}");
    let entry = log["entries"]
        .as_array()
        .expect("e")
        .iter()
        .find(|e| e["action"] == "viewed flagged episode")
        .expect("entry");
    assert_eq!(entry["actor"], "dsl.patel");
    assert_eq!(entry["reason"], "review of a flagged episode");
}

#[tokio::test]
async fn acknowledging_removes_an_episode_from_the_queue_and_notes_are_kept() {
    let h = Harness::start().await;
    h.seed_episode("p.brown", ago(90)).await;
    let mut dsl = h.login(Role::EsafetyLead).await;
    let ep = dsl.get("/api/review").await.json()[0].clone();
    let from = ep["first"]
        .as_str()
        .expect("f")
        .parse::<Timestamp>()
        .expect("ts")
        .as_millisecond();
    let to = ep["last"]
        .as_str()
        .expect("l")
        .parse::<Timestamp>()
        .expect("ts")
        .as_millisecond();
    let body = serde_json::json!({ "subject": "user:p.brown", "from": from, "to": to, "text": "Form tutor informed" });
    assert_eq!(
        dsl.post_json("/api/review/note", &body).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        dsl.post_json("/api/review/ack", &body).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        dsl.get("/api/review")
            .await
            .json()
            .as_array()
            .expect("list")
            .len(),
        0
    );
    let all = dsl.get("/api/review?show=all").await.json();
    assert_eq!(all[0]["status"]["status"], "acknowledged");
    let v = dsl
        .get(&format!(
            "/api/review/episode?subject=user:p.brown&from={from}&to={to}"
        ))
        .await
        .json();
    assert_eq!(v["notes"][0]["text"], "Form tutor informed");
}

#[tokio::test]
async fn timeline_and_search_find_one_persons_browsing() {
    let h = Harness::start().await;
    h.seed_episode("p.brown", episode_start()).await;
    h.seed_episode("k.singh", episode_start()).await;
    let mut dsl = h.login(Role::EsafetyLead).await;
    let today = episode_start()
        .to_zoned(london())
        .strftime("%Y-%m-%d")
        .to_string();
    let t = dsl
        .get(&format!(
            "/api/timeline?user=p.brown&date={today}&reason=concern+raised+by+tutor"
        ))
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let t = t.json();
    assert_eq!(t.as_array().expect("list").len(), 7);
    assert!(
        t.as_array()
            .expect("list")
            .iter()
            .all(|e| e["user"] == "p.brown")
    );
    let s = dsl
        .get("/api/search?host=bet365&category=gambling")
        .await
        .json();
    assert_eq!(
        s.as_array().expect("list").len(),
        2,
        "one gambling flag per pupil"
    );
    let s = dsl
        .get("/api/search?user=k.singh&category=vpn")
        .await
        .json();
    assert_eq!(s.as_array().expect("list").len(), 1);
    let page = dsl.get("/search?host=selfharm").await;
    assert!(page.body.contains("2 results"), "{}", page.body);
    // Everyone's browsing, not only what was flagged: an allowed site nobody
    // flagged is found for both pupils, newest first.
    let s = dsl.get("/api/search?host=wikipedia").await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    let s = s.json();
    let users: std::collections::BTreeSet<&str> = s
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["user"].as_str().expect("user"))
        .collect();
    assert_eq!(users, ["k.singh", "p.brown"].into(), "{s}");
    assert!(
        s.as_array()
            .expect("list")
            .iter()
            .all(|e| e["action"] == "allow"),
        "{s}"
    );
    let log = dsl.get("/api/audit").await.json();
    let e = log["entries"]
        .as_array()
        .expect("e")
        .iter()
        .find(|e| e["action"] == "viewed timeline")
        .expect("timeline audit")
        .clone();
    assert_eq!(e["target"], "user p.brown");
    assert_eq!(e["reason"], "concern raised by tutor");
    let r = dsl.get("/api/search?category=nonsense").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn search_by_date_and_device_keeps_to_the_dates_given() {
    let h = Harness::start().await;
    let start = episode_start();
    h.seed_episode("p.brown", start).await;
    let mut dsl = h.login(Role::EsafetyLead).await;
    let day = |at: Timestamp| at.to_zoned(london()).strftime("%Y-%m-%d").to_string();
    let (today, before) = (day(start), day(start - SignedDuration::from_hours(72)));
    let count = |v: serde_json::Value| v.as_array().expect("list").len();
    let s = dsl
        .get(&format!(
            "/api/search?host=selfharm&from={today}&to={today}"
        ))
        .await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert_eq!(count(s.json()), 1, "{}", s.body);
    let s = dsl
        .get(&format!(
            "/api/search?host=selfharm&from={before}&to={before}"
        ))
        .await;
    assert_eq!(count(s.json()), 0, "nothing three days ago: {}", s.body);
    // One device's browsing on the day, every verdict (not only flags).
    let s = dsl
        .get(&format!(
            "/api/search?client=10.20.4.17&from={today}&to={today}"
        ))
        .await
        .json();
    assert_eq!(count(s.clone()), 7, "{s}");
    let s = dsl
        .get(&format!(
            "/api/search?client=10.20.4.17&category=vpn&from={today}&to={today}"
        ))
        .await
        .json();
    assert_eq!(s[0]["host"], "nordvpn.com", "{s}");
    assert_eq!(count(s), 1);
    let r = dsl
        .get(&format!("/api/search?host=x&from={today}&to={before}"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("before the start date"), "{}", r.body);
    let r = dsl
        .get("/api/search?user=p.brown&from=2026-01-01&to=2026-03-01")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("at most 31 days"), "{}", r.body);
    let r = dsl.get("/api/search?client=not-an-ip").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("is not an IP address"), "{}", r.body);
    // The head may not search browsing records.
    let mut head = h.login(Role::Headteacher).await;
    let r = head
        .get(&format!("/api/search?host=selfharm&from={today}"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.error().contains("search of browsing records"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn a_queue_past_its_bound_says_so() {
    use schoolgate_classifier::{Action, Category, CategorySet, Severity};
    use schoolgate_events::{AccessEvent, Source};
    let h = Harness::start().await;
    h.seed_episode("p.brown", ago(60)).await;
    let mut dsl = h.login(Role::EsafetyLead).await;
    let page = dsl.get("/review").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("or more flagged requests"));
    // 5,000 low-severity gambling flags over two days, one pupil each.
    let events: Vec<AccessEvent> = (0..5_000i64)
        .map(|i| {
            AccessEvent::new(Source::Dns, [10, 20, 9, 9].into(), "bet365.com")
                .at(ago(120 + i / 2))
                .with_school("hillside")
                .with_user(format!("pupil{i:04}"))
                .with_role("pupil")
                .with_action(Action::Flag)
                .with_categories(CategorySet::of(Category::Gambling))
                .with_severity(Some(Severity::Low))
        })
        .collect();
    h.insert(events).await;
    let page = dsl.get("/review").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("This period holds 5,000 or more flagged requests"),
        "the bound is shown"
    );
    // The most severe are kept: p.brown's high-severity episode is still first.
    let eps = dsl.get("/api/review").await.json();
    assert_eq!(eps[0]["label"], "p.brown", "{}", eps[0]);
    // A narrower question fits under the bound.
    let page = dsl.get("/review?min=high").await;
    assert!(!page.body.contains("or more flagged requests"));
}
