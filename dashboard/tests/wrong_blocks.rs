use http::StatusCode;
use schoolgate_classifier::{Action, Category, CategorySet};
use schoolgate_dashboard::Role;
use schoolgate_events::{AccessEvent, Source};

use crate::support::Harness;

#[tokio::test]
async fn a_pupil_reports_a_wrong_block_and_the_network_manager_unblocks_it() {
    let h = Harness::start().await;
    let blocked = AccessEvent::new(
        Source::Proxy,
        "10.20.4.17".parse().expect("ip"),
        "coolmathgames.com",
    )
    .with_user("p.brown")
    .with_role("pupil")
    .with_action(Action::Block)
    .with_categories(CategorySet::of(Category::Gambling))
    .with_category(Category::Gambling)
    .with_rule(
        "list local-gambling: coolmathgames.com",
        "blocked for pupil: gambling",
    );
    // Found by its id alone: the request was timed when it arrived, seconds
    // before its verdict (and id) was made.
    let mut blocked = blocked;
    blocked.time -= jiff::SignedDuration::from_secs(5);
    let reference = blocked.id.to_string();
    h.insert(vec![blocked]).await;

    // The pupil: no login, the block page's link.
    let mut pupil = h.client();
    let form = pupil.get(&format!("/report?ref={reference}")).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains(&reference));
    let token = pupil.cookies.get("sg_form").cloned().expect("form cookie");
    let r = pupil
        .post_form_raw(
            "/report",
            &[
                ("form_token", &token),
                ("ref", &reference),
                ("url", ""),
                ("message", "Maths homework site"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Thank you"));
    let r = pupil
        .post_form_raw(
            "/report",
            &[
                ("form_token", &token),
                ("ref", "not-a-ref"),
                ("message", "x"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let mut nm = h.login(Role::NetworkManager).await;
    let q = nm.get("/api/wrong-blocks").await.json();
    let w = &q[0];
    assert_eq!(w["status"], "open");
    assert_eq!(w["message"], "Maths homework site");
    assert_eq!(
        w["request"]["host"], "coolmathgames.com",
        "the blocked request is found by its reference"
    );
    assert_eq!(w["request"]["role"], "pupil");
    let id = w["id"].as_i64().expect("id");
    let r = nm
        .post_form(
            &format!("/wrong-blocks/{id}"),
            &[
                ("action", "unblock"),
                ("host", "coolmathgames.com"),
                ("role", "pupil"),
                ("note", "maths dept"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(h.config_text().contains("coolmathgames.com"));
    let hist = nm.get("/api/policy/history").await.json();
    assert!(
        hist[0]["reason"]
            .as_str()
            .expect("reason")
            .starts_with(&format!("wrong-block report #{id}"))
    );
    let q = nm.get("/api/wrong-blocks").await.json();
    assert_eq!(q[0]["status"], "unblocked");
    // Other roles may not see the queue.
    let mut dsl = h.login(Role::EsafetyLead).await;
    let r = dsl.get("/api/wrong-blocks").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.error().contains("wrong-block reports"));
}

#[tokio::test]
async fn the_public_form_is_rate_limited() {
    let h = Harness::start().await;
    let mut c = h.client();
    let mut last = StatusCode::OK;
    for i in 0..6 {
        let r = c
            .post_json(
                "/api/report",
                &serde_json::json!({ "message": format!("report {i}") }),
            )
            .await;
        last = r.status;
        if i < 5 {
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}
