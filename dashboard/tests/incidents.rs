use http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use schoolgate_dashboard::Role;

use crate::support::Harness;

/// Seeds an episode, escalates it and returns the incident id.
async fn escalated(h: &Harness) -> i64 {
    h.seed_episode("p.brown", Timestamp::now() - SignedDuration::from_mins(90))
        .await;
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
    let r = dsl
        .post_json("/api/review/escalate", &serde_json::json!({ "subject": "user:p.brown", "from": from, "to": to, "summary": "Searches about self-harm during Year 9 ICT" }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["incident"].as_i64().expect("id")
}

#[tokio::test]
async fn escalating_opens_an_incident_with_evidence_that_can_be_closed() {
    let h = Harness::start().await;
    let id = escalated(&h).await;
    let mut dsl = h.login(Role::EsafetyLead).await;
    let v = dsl.get(&format!("/api/incidents/{id}")).await.json();
    assert_eq!(v["incident"]["status"], "open");
    assert!(
        v["incident"]["reference"]
            .as_str()
            .expect("ref")
            .starts_with("INC-")
    );
    assert_eq!(v["evidence"].as_array().expect("evidence").len(), 7);
    // The queue shows the episode as escalated.
    assert_eq!(
        dsl.get("/api/review")
            .await
            .json()
            .as_array()
            .expect("l")
            .len(),
        0
    );
    let r = dsl
        .post_json(
            &format!("/api/incidents/{id}"),
            &serde_json::json!({ "status": "closed" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("closure"));
    let r = dsl
        .post_json(
            &format!("/api/incidents/{id}"),
            &serde_json::json!({ "status": "closed", "actions_taken": "Met pupil with parents", "people_informed": "parents; head of year", "closure": "Pupil referred to school counsellor" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let v = dsl.get(&format!("/api/incidents/{id}")).await.json();
    assert_eq!(v["incident"]["status"], "closed");
    assert_eq!(v["incident"]["closed_by"], "dsl.patel");
    assert!(v["updates"].as_array().expect("u").len() >= 2);
    // The evidence survives the store's purge: it was copied in.
    let csv = dsl.get(&format!("/incidents/{id}/export.csv")).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("evidence.csv"))
    );
    assert_eq!(csv.body.lines().count(), 8, "header + 7 events");
    assert!(csv.body.contains("how to hurt myself"));
    let print = dsl.get(&format!("/incidents/{id}/print")).await;
    assert!(print.body.contains("Pupil referred to school counsellor"));
}

#[tokio::test]
async fn the_headteacher_sees_an_incident_only_when_it_is_shared() {
    let h = Harness::start().await;
    let id = escalated(&h).await;
    let mut head = h.login(Role::Headteacher).await;
    let list = head.get("/api/incidents").await.json();
    assert_eq!(
        list[0]["subject"],
        serde_json::Value::Null,
        "the log does not name the pupil"
    );
    assert_eq!(list[0]["summary"], serde_json::Value::Null);
    let r = head.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.error()
            .contains("has not been shared with the headteacher"),
        "{}",
        r.body
    );
    assert_eq!(
        head.get(&format!("/incidents/{id}/export.csv"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let mut dsl = h.login(Role::EsafetyLead).await;
    let r = dsl
        .post_json(
            &format!("/api/incidents/{id}"),
            &serde_json::json!({ "status": "investigating", "shared_with_head": "1" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let v = head.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.json()["incident"]["subject"], "user:p.brown");
    let r = head
        .post_json(
            &format!("/api/incidents/{id}"),
            &serde_json::json!({ "status": "closed", "closure": "x" }),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "the head reads, the DSL writes"
    );
    let log = dsl.get("/api/audit").await.json();
    assert!(
        log["entries"]
            .as_array()
            .expect("e")
            .iter()
            .any(|e| e["action"] == "viewed incident" && e["actor"] == "head.ahmed")
    );
}
