use http::StatusCode;
use schoolgate_dashboard::Role;

use crate::support::Harness;

fn entries(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn changes_and_logins_are_audited_and_the_chain_verifies() {
    let h = Harness::start().await;
    let mut nm = h.login(Role::NetworkManager).await;
    let r = nm
        .post_json("/api/policy", &serde_json::json!({ "reason": "Year 9 gaming", "changes": [{ "op": "set-category", "role": "pupil", "category": "games", "state": "block" }] }))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let mut bad = h.client();
    let _ = bad
        .post_json(
            "/api/login",
            &serde_json::json!({ "username": "nm.jones", "password": "guess guess guess" }),
        )
        .await;
    let log = nm.get("/api/audit").await.json();
    assert_eq!(log["chain"]["broken_at"], serde_json::Value::Null);
    let e = entries(&log);
    let change = e
        .iter()
        .find(|x| x["action"] == "changed policy")
        .expect("change entry");
    assert_eq!(change["actor"], "nm.jones");
    assert_eq!(change["reason"], "Year 9 gaming");
    assert!(
        change["detail"]
            .as_str()
            .expect("detail")
            .contains("games block")
    );
    assert!(
        e.iter()
            .any(|x| x["action"] == "login failed" && x["actor"] == "nm.jones")
    );
    assert!(e.iter().any(|x| x["action"] == "logged in"));
    assert!(
        e.iter()
            .any(|x| x["action"] == "added account" && x["target"] == "account dsl.patel")
    );
}

#[tokio::test]
async fn the_audit_table_refuses_updates_and_deletes() {
    let h = Harness::start().await;
    let _ = h.login(Role::Viewer).await;
    let conn = rusqlite::Connection::open(&h.state_path).expect("open");
    let e = conn
        .execute("UPDATE audit SET actor = 'someone else'", [])
        .expect_err("update refused");
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = conn
        .execute("DELETE FROM audit", [])
        .expect_err("delete refused");
    assert!(e.to_string().contains("append-only"), "{e}");
}

#[tokio::test]
async fn an_edit_behind_the_triggers_breaks_the_chain_visibly() {
    let h = Harness::start().await;
    let mut head = h.login(Role::Headteacher).await;
    let conn = rusqlite::Connection::open(&h.state_path).expect("open");
    conn.execute_batch(
        "DROP TRIGGER audit_no_update; UPDATE audit SET reason = 'rewritten' WHERE seq = 2;",
    )
    .expect("tamper");
    let log = head.get("/api/audit").await.json();
    assert_eq!(log["chain"]["broken_at"], 2);
    let page = head.get("/audit").await;
    assert!(page.body.contains("The chain is broken at entry 2"));
}
