use http::StatusCode;
use schoolgate_dashboard::Role;

use crate::support::{Harness, Options};

#[tokio::test]
async fn with_a_certificate_the_dashboard_serves_https_with_secure_cookies() {
    let h = Harness::start_with(Options { tls: true }).await;
    let mut c = h.client().with_tls();
    c.login_as(Role::Viewer).await;
    let cookie = c
        .set_cookies
        .iter()
        .find(|s| s.starts_with("sg_session="))
        .expect("cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");
    let r = c.get("/health").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("strict-transport-security").is_some());
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert!(r.headers.get("content-security-policy").is_some());
}
