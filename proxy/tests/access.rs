use crate::support::*;
use schoolgate_classifier::Action;

#[tokio::test]
async fn unknown_clients_are_refused_never_an_open_proxy() {
    let h = Harness::start().await;
    let r = h.curl_via(STRANGER, &[&h.allowed("/")]).await;
    assert_eq!(r.code, 403, "{r:?}");
    assert!(r.body.contains("Not on the school network"), "{}", r.body);
    let r = h
        .curl_via(
            STRANGER,
            &[
                "-p",
                &format!("https://allowed.test:{}/", h.tls.addr.port()),
            ],
        )
        .await;
    assert_eq!(r.connect_code, 403, "{r:?}");
    let e = h.event(STRANGER, |e| e.method == "GET").await;
    assert_eq!(e.action, Action::Block);
    assert_eq!(e.rule, "unknown client");
    assert_eq!(h.origin.connections(), 0);
    assert!(h.proxy.stats().unknown_clients >= 2);
    h.stop().await;
}

#[tokio::test]
async fn a_device_mapping_makes_a_client_known() {
    let h = Harness::start().await;
    let r = h.curl_via(DEVICE, &[&h.allowed("/desk")]).await;
    assert_eq!(r.code, 200, "{r:?}");
    let e = h.event(DEVICE, |e| e.path == "/desk").await;
    assert_eq!(e.role, "staff");
    assert_eq!(e.device.as_deref(), Some("library-desk"));
    h.stop().await;
}

#[tokio::test]
async fn guests_cannot_reach_internal_networks() {
    let h = Harness::start().await;
    let by_ip = format!("http://{}/", h.intranet.addr);
    let by_name = format!("http://intranet.test:{}/", h.intranet.addr.port());
    for url in [&by_ip, &by_name] {
        let r = h.curl_via(GUEST, &[url]).await;
        assert_eq!(r.code, 403, "{url}: {r:?}");
        assert!(r.body.contains("Internal address refused"), "{}", r.body);
    }
    // CONNECT to an internal address: refused too.
    let r = h
        .curl_via(
            GUEST,
            &[
                "-p",
                &format!("http://intranet.test:{}/", h.intranet.addr.port()),
            ],
        )
        .await;
    assert_eq!(r.connect_code, 403, "{r:?}");
    assert!(
        r.header("x-schoolgate-reason")
            .is_some_and(|v| v.contains("internal network")),
        "{r:?}"
    );
    assert_eq!(
        h.intranet.connections(),
        0,
        "no guest request reached the intranet"
    );
    // Guests still reach the outside; staff reach the intranet.
    let r = h.curl_via(GUEST, &[&h.allowed("/")]).await;
    assert_eq!(r.code, 200, "{r:?}");
    let r = h.curl_via(STAFF, &[&by_name]).await;
    assert_eq!(r.code, 200, "{r:?}");
    let e = h.event(GUEST, |e| e.rule == "internal network").await;
    assert_eq!(e.action, Action::Block);
    h.stop().await;
}

#[tokio::test]
async fn proxy_auth_gives_the_users_role() {
    let dir = tempfile::tempdir().expect("dir");
    let hash = schoolgate_proxy::hash_password("s3cret pass").expect("hash");
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!("[[user]]\nname = \"amy.t\"\nrole = \"staff\"\nhash = \"{hash}\"\n"),
    )
    .expect("write users");
    let h = Harness::with(Options {
        proxy: format!("auth = \"optional\"\nusers_file = \"{}\"", users.display()),
        ..Options::default()
    })
    .await;
    let bet = format!("http://www.bet365.com:{}/", h.origin.addr.port());
    // From the pupil network without credentials: pupil, blocked.
    let r = h.curl_via(PUPIL, &[&bet]).await;
    assert_eq!(r.code, 403, "{r:?}");
    // With the staff member's credentials: staff, allowed.
    let r = h
        .curl_via(PUPIL, &["--proxy-user", "amy.t:s3cret pass", &bet])
        .await;
    assert_eq!(r.code, 200, "{r:?}");
    let e = h.event(PUPIL, |e| e.user.as_deref() == Some("amy.t")).await;
    assert_eq!(e.role, "staff");
    // Wrong password: asked again.
    let r = h
        .curl_via(PUPIL, &["--proxy-user", "amy.t:nope", &bet])
        .await;
    assert_eq!(r.code, 407, "{r:?}");
    assert!(
        r.header("proxy-authenticate")
            .is_some_and(|v| v.starts_with("Basic"))
    );
    h.stop().await;
}

#[tokio::test]
async fn required_auth_challenges_every_client() {
    let h = Harness::with(Options {
        proxy: "auth = \"required\"".to_owned(),
        ..Options::default()
    })
    .await;
    let r = h.curl_via(STAFF, &[&h.allowed("/")]).await;
    assert_eq!(r.code, 407, "{r:?}");
    assert_eq!(h.origin.connections(), 0);
    h.stop().await;
}

#[tokio::test]
async fn pac_file_is_generated_from_the_config() {
    let h = Harness::start().await;
    for path in ["/proxy.pac", "/wpad.dat"] {
        let url = format!("{}{path}", h.proxy_url());
        let r = curl(h.dir.path(), &s(&["--interface", PUPIL, &url])).await;
        assert_eq!(r.code, 200, "{r:?}");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/x-ns-proxy-autoconfig")
        );
        assert!(r.body.contains("function FindProxyForURL(url, host)"));
        assert!(
            r.body
                .contains("dnsDomainIs(host, \".intranet.hillside.example\")"),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains("isInNet(host, \"10.0.0.0\", \"255.0.0.0\")"),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains(&format!("return \"PROXY {}\";", h.explicit())),
            "{}",
            r.body
        );
        assert!(!r.body.contains("; DIRECT"), "no fallback round the filter");
    }
    // Anything else asked of the proxy itself is a 400 that says what it is.
    let url = format!("{}/index.html", h.proxy_url());
    let r = curl(h.dir.path(), &s(&["--interface", PUPIL, &url])).await;
    assert_eq!(r.code, 400);
    assert!(r.body.contains("web proxy"));
    h.stop().await;
}
