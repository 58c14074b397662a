//! The server refuses each role what it must not see. Table-driven: every
//! protected endpoint with the roles that may use it.

use http::StatusCode;
use schoolgate_dashboard::Role;

use crate::support::Harness;

use Role::*;

/// (method, path, roles allowed, what the refusal names)
pub const PROTECTED: &[(&str, &str, &[Role], &str)] = &[
    (
        "GET",
        "/api/policy",
        &[NetworkManager],
        "the filtering policy",
    ),
    (
        "GET",
        "/api/policy/test?url=bet365.com",
        &[NetworkManager],
        "Test a URL",
    ),
    (
        "GET",
        "/api/policy/history",
        &[NetworkManager, Headteacher],
        "the change history",
    ),
    ("GET", "/api/lists", &[NetworkManager], "the Lists page"),
    (
        "GET",
        "/api/users",
        &[NetworkManager],
        "managing dashboard accounts",
    ),
    (
        "GET",
        "/api/audit",
        &[NetworkManager, EsafetyLead, Headteacher],
        "the audit log",
    ),
    (
        "GET",
        "/api/health",
        &[NetworkManager, EsafetyLead, Headteacher, Viewer],
        "",
    ),
    (
        "GET",
        "/api/review",
        &[EsafetyLead],
        "the flagged-access review",
    ),
    (
        "GET",
        "/api/timeline?user=p.brown",
        &[EsafetyLead],
        "timelines of a person's browsing",
    ),
    (
        "GET",
        "/api/search?host=bet365",
        &[EsafetyLead],
        "search of browsing records",
    ),
    (
        "GET",
        "/api/incidents",
        &[EsafetyLead, Headteacher],
        "the e-Safety Incident Log",
    ),
    (
        "GET",
        "/api/summary",
        &[Headteacher, EsafetyLead, NetworkManager],
        "the weekly summary",
    ),
    (
        "GET",
        "/api/wrong-blocks",
        &[NetworkManager],
        "the wrong-block reports",
    ),
    ("GET", "/policy", &[NetworkManager], "the filtering policy"),
    (
        "GET",
        "/review",
        &[EsafetyLead],
        "the flagged-access review",
    ),
    (
        "GET",
        "/search",
        &[EsafetyLead],
        "search of browsing records",
    ),
    (
        "GET",
        "/summary",
        &[Headteacher, EsafetyLead, NetworkManager],
        "the weekly summary",
    ),
    (
        "GET",
        "/incidents",
        &[EsafetyLead, Headteacher],
        "the e-Safety Incident Log",
    ),
    (
        "GET",
        "/wrong-blocks",
        &[NetworkManager],
        "the wrong-block reports",
    ),
    ("GET", "/lists", &[NetworkManager], "the Lists page"),
    (
        "GET",
        "/users",
        &[NetworkManager],
        "managing dashboard accounts",
    ),
    (
        "GET",
        "/audit",
        &[NetworkManager, EsafetyLead, Headteacher],
        "the audit log",
    ),
];

#[tokio::test]
async fn every_role_is_refused_what_it_must_not_see() {
    let h = Harness::start().await;
    for role in Role::ALL {
        let mut c = h.login(role).await;
        for (method, path, allowed, what) in PROTECTED {
            assert_eq!(*method, "GET");
            let r = c.get(path).await;
            if allowed.contains(&role) {
                assert_eq!(
                    r.status,
                    StatusCode::OK,
                    "{role} should see {path}: {}",
                    r.body
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{role} must not see {path}"
                );
                if path.starts_with("/api/") {
                    let e = r.error();
                    assert!(
                        e.starts_with("forbidden: ")
                            && e.contains(what)
                            && e.contains(role.label()),
                        "{role} {path}: {e}"
                    );
                } else {
                    assert!(
                        r.body.contains("Not available to your role") && r.body.contains(what),
                        "{role} {path}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn changes_are_refused_to_roles_that_may_not_make_them() {
    let h = Harness::start().await;
    let before = h.config_text();
    for role in [EsafetyLead, Headteacher, Viewer] {
        let mut c = h.login(role).await;
        let r = c
            .post_json("/api/policy", &serde_json::json!({ "reason": "x", "changes": [{ "op": "set-category", "role": "pupil", "category": "games", "state": "block" }] }))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}");
        assert!(
            r.error()
                .contains("the filtering policy is for the Network manager role"),
            "{}",
            r.body
        );
        let r = c.post_json("/api/users", &serde_json::json!({ "name": "x.y", "role": "network-manager", "password": "long enough passphrase" })).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}");
    }
    assert_eq!(h.config_text(), before);
}

#[tokio::test]
async fn the_viewer_menu_shows_health_only() {
    let h = Harness::start().await;
    let mut v = h.login(Viewer).await;
    let page = v.get("/health").await.body;
    for hidden in [
        "/policy\"",
        "/review\"",
        "/summary\"",
        "/incidents\"",
        "/audit\"",
    ] {
        assert!(!page.contains(hidden), "viewer menu shows {hidden}");
    }
    let r = v.get("/").await;
    assert_eq!(r.location(), "/health");
}

#[tokio::test]
async fn health_names_each_dns_upstream_and_why_one_fails() {
    let h = Harness::start().await;
    let mut v = h.login(Viewer).await;
    let page = v.get("/health").await.body;
    assert!(
        page.contains(
            "<span class=\"dot bad\"></span>tls://9.9.9.9:853#dns.quad9.net · failures: 3 · last error: \
             upstream TLS handshake failed: invalid peer certificate: certificate not valid for name &quot;dns.quad9.net&quot;"
        ),
        "{page}"
    );
    assert!(
        page.contains("<span class=\"dot ok\"></span>10.30.0.10:53 · failures: 0</div>"),
        "{page}"
    );
}
