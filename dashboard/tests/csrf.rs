use http::{Method, StatusCode};
use schoolgate_dashboard::Role;

use crate::support::Harness;

#[tokio::test]
async fn a_state_change_without_the_token_is_refused_and_changes_nothing() {
    let h = Harness::start().await;
    let mut nm = h.login(Role::NetworkManager).await;
    let before = h.config_text();
    let body = serde_json::json!({ "reason": "test", "changes": [{ "op": "set-category", "role": "pupil", "category": "games", "state": "block" }] });
    // No header at all.
    let r = nm
        .request(
            Method::POST,
            "/api/policy",
            Some("application/json"),
            body.to_string().into_bytes(),
            false,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.error().contains("CSRF check failed"), "{}", r.body);
    // A wrong token.
    let good = nm.csrf.replace("not-the-token".into());
    let r = nm.post_json("/api/policy", &body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.error().contains("CSRF"));
    // A form without the field, on a browser route: an error page, not a redirect.
    nm.csrf = good;
    let r = nm
        .post_form_raw(
            "/policy/matrix",
            &[("c.pupil.games", "block"), ("reason", "no token")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("CSRF check failed"), "{}", r.body);
    assert_eq!(h.config_text(), before, "nothing was written");
    assert!(!h.verdict("pupil", "minecraft.net").is_blocked());
    // With the token it goes through.
    let r = nm.post_json("/api/policy", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn logout_and_password_change_need_the_token_too() {
    let h = Harness::start().await;
    let mut c = h.login(Role::Viewer).await;
    let r = c.post_form_raw("/logout", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.get("/api/session").await.status,
        StatusCode::OK,
        "still logged in"
    );
    let r = c
        .request(
            Method::POST,
            "/api/account/password",
            Some("application/json"),
            b"{}".to_vec(),
            false,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_login_form_needs_its_double_submit_token() {
    let h = Harness::start().await;
    let mut c = h.client();
    c.get("/login").await;
    let r = c
        .post_form_raw(
            "/login",
            &[
                ("form_token", "forged"),
                ("username", "dsl.patel"),
                ("password", crate::support::PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The JSON login refuses a form-encoded body (what a cross-site form can send).
    let r = c
        .post_form_raw(
            "/api/login",
            &[
                ("username", "dsl.patel"),
                ("password", crate::support::PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_post_without_a_session_is_unauthenticated() {
    let h = Harness::start().await;
    let mut c = h.client();
    let r = c
        .post_json(
            "/api/policy",
            &serde_json::json!({ "reason": "x", "changes": [] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
