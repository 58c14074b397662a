use std::time::Duration;

use http::StatusCode;
use schoolgate_dashboard::Role;

use crate::support::{Harness, PASSWORD, role_user};

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_logout_ends_the_session() {
    let h = Harness::start().await;
    let mut c = h.client();
    let r = c.login_as(Role::EsafetyLead).await;
    assert_eq!(r.json()["role"], "esafety-lead");
    let cookie = c
        .set_cookies
        .iter()
        .find(|s| s.starts_with("sg_session="))
        .expect("session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "no Secure flag over plain HTTP: {cookie}"
    );
    let me = c.get("/api/session").await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["name"], role_user(Role::EsafetyLead));

    let token = c.cookies.get("sg_session").cloned().expect("token");
    let out = c.post_json("/api/logout", &serde_json::json!({})).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    // The old cookie is dead on the server, not only removed from the browser.
    c.cookies.insert("sg_session".into(), token);
    let r = c.get("/api/session").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.error().contains("not logged in"), "{}", r.body);
}

#[tokio::test]
async fn the_login_form_works_and_pages_redirect_to_it() {
    let h = Harness::start().await;
    let mut c = h.client();
    let r = c.get("/audit").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login?next=%2Faudit");
    let page = c.get("/login?next=/audit").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Log in"));
    let token = c.cookies.get("sg_form").cloned().expect("form cookie");
    let bad = c
        .post_form_raw(
            "/login",
            &[
                ("form_token", &token),
                ("username", "dsl.patel"),
                ("password", "wrong password!"),
                ("next", "/audit"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.body.contains("wrong user name or password"));
    let ok = c
        .post_form_raw(
            "/login",
            &[
                ("form_token", &token),
                ("username", "dsl.patel"),
                ("password", PASSWORD),
                ("next", "/audit"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), "/audit");
    // An open redirect is not followed.
    let mut c2 = h.client();
    c2.get("/login").await;
    let t2 = c2.cookies.get("sg_form").cloned().expect("form cookie");
    let r = c2
        .post_form_raw(
            "/login",
            &[
                ("form_token", &t2),
                ("username", "dsl.patel"),
                ("password", PASSWORD),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/review");
}

#[tokio::test]
async fn sessions_expire_after_the_configured_hours() {
    let h = Harness::start().await;
    let mut c = h.login(Role::NetworkManager).await;
    assert_eq!(c.get("/api/policy").await.status, StatusCode::OK);
    h.clock.advance(Duration::from_secs(7 * 3600));
    assert_eq!(
        c.get("/api/policy").await.status,
        StatusCode::OK,
        "7 h in, still inside the 8 h session"
    );
    h.clock.advance(Duration::from_secs(3600 + 60));
    let r = c.get("/api/policy").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.error().contains("expired"), "{}", r.body);
    let page = c.get("/policy").await;
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "a page sends an expired session to the login form"
    );
}

#[tokio::test]
async fn repeated_failures_lock_the_account_even_against_the_right_password() {
    let h = Harness::start().await;
    let mut c = h.client();
    let body = |pw: &str| serde_json::json!({ "username": "head.ahmed", "password": pw });
    for _ in 0..2 {
        let r = c.post_json("/api/login", &body("not the password")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // The third failure (max_failed_logins = 3) locks.
    let r = c.post_json("/api/login", &body("not the password")).await;
    assert_eq!(r.status, StatusCode::LOCKED);
    assert!(r.error().contains("locked"), "{}", r.body);
    let r = c.post_json("/api/login", &body(PASSWORD)).await;
    assert_eq!(
        r.status,
        StatusCode::LOCKED,
        "the right password does not open a locked account"
    );
    h.clock.advance(Duration::from_secs(16 * 60));
    let r = c.post_json("/api/login", &body(PASSWORD)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the lockout ends after lockout_minutes: {}",
        r.body
    );
}

#[tokio::test]
async fn unknown_users_get_the_same_answer_as_wrong_passwords() {
    let h = Harness::start().await;
    let mut c = h.client();
    let r = c
        .post_json(
            "/api/login",
            &serde_json::json!({ "username": "nobody", "password": "whatever12345" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error(), "wrong user name or password");
}

#[tokio::test]
async fn a_password_change_needs_the_current_one_and_ends_other_sessions() {
    let h = Harness::start().await;
    let mut a = h.login(Role::Headteacher).await;
    let mut b = h.login(Role::Headteacher).await;
    let r = a
        .post_json(
            "/api/account/password",
            &serde_json::json!({ "current": "wrong one!!", "new": "a much better passphrase" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error(), "the current password is wrong");
    let r = a
        .post_json(
            "/api/account/password",
            &serde_json::json!({ "current": PASSWORD, "new": "short" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("at least 10"));
    let r = a
        .post_json(
            "/api/account/password",
            &serde_json::json!({ "current": PASSWORD, "new": "a much better passphrase" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        a.get("/api/session").await.status,
        StatusCode::OK,
        "this session stays"
    );
    assert_eq!(
        b.get("/api/session").await.status,
        StatusCode::UNAUTHORIZED,
        "the other session ends"
    );
    let mut c = h.client();
    c.login("head.ahmed", "a much better passphrase").await;
}

#[tokio::test]
async fn a_network_manager_adds_and_disables_users() {
    let h = Harness::start().await;
    let mut nm = h.login(Role::NetworkManager).await;
    let r = nm.post_json("/api/users", &serde_json::json!({ "name": "deputy.dsl", "role": "esafety-lead", "password": "temporary passphrase" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let dup = nm.post_json("/api/users", &serde_json::json!({ "name": "deputy.dsl", "role": "viewer", "password": "temporary passphrase" })).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let bad = nm.post_json("/api/users", &serde_json::json!({ "name": "x", "role": "admin", "password": "temporary passphrase" })).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error().contains("not a dashboard role"));
    let list = nm.get("/api/users").await.json();
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .any(|u| u["name"] == "deputy.dsl" && u["role"] == "esafety-lead")
    );

    let mut deputy = h.client();
    deputy.login("deputy.dsl", "temporary passphrase").await;
    let r = nm
        .post_form("/users/deputy.dsl", &[("action", "disable")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        deputy.get("/api/session").await.status,
        StatusCode::UNAUTHORIZED,
        "disabling ends their sessions"
    );
    let r = deputy
        .post_json(
            "/api/login",
            &serde_json::json!({ "username": "deputy.dsl", "password": "temporary passphrase" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_command_line_refuses_weak_passwords_and_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.sqlite");
    let e = schoolgate_dashboard::add_user(&state, "a.b", Role::Viewer, "short").expect_err("weak");
    assert!(e.to_string().contains("at least 10"));
    schoolgate_dashboard::add_user(&state, "a.b", Role::Viewer, "long enough passphrase")
        .expect("add");
    let e = schoolgate_dashboard::add_user(&state, "a.b", Role::Viewer, "long enough passphrase")
        .expect_err("dup");
    assert!(e.to_string().contains("already exists"));
}
