use crate::support::*;
use schoolgate_classifier::Action;

#[tokio::test]
async fn pupil_gets_allowed_site_and_one_event() {
    let h = Harness::start().await;
    let url = h.allowed("/hello?x=1");
    let r = h.curl_via(PUPIL, &[&url]).await;
    assert_eq!(r.code, 200, "{r:?}");
    assert!(
        r.body.starts_with("GET /hello?x=1 HTTP/1.1"),
        "origin-form upstream: {}",
        r.body
    );
    assert!(r.body.contains("via: 1.1 schoolgate"), "{}", r.body);
    assert!(r.header("via").is_some_and(|v| v.contains("schoolgate")));
    let e = h.event(PUPIL, |e| e.path == "/hello?x=1").await;
    assert_eq!(e.action, Action::Allow);
    assert_eq!(e.host, "allowed.test");
    assert_eq!(e.role, "pupil");
    assert_eq!(e.method, "GET");
    assert_eq!(e.status, 200);
    assert_eq!(e.school, "hillside");
    assert!(e.bytes_down > 0);
    assert_eq!(
        h.events_of(PUPIL).await.len(),
        1,
        "exactly one event per request"
    );
    h.stop().await;
}

#[tokio::test]
async fn block_page_names_category_rule_and_the_event_id() {
    let h = Harness::start().await;
    let url = format!("http://www.bet365.com:{}/odds", h.origin.addr.port());
    let r = h.curl_via(PUPIL, &[&url]).await;
    assert_eq!(r.code, 403, "{r:?}");
    assert!(r.body.contains("Hillside Primary"), "branded: {}", r.body);
    assert!(
        r.body.contains("www.bet365.com/odds"),
        "names what: {}",
        r.body
    );
    assert!(r.body.contains("Gambling") || r.body.contains("gambling"));
    assert!(
        r.body.contains("list ut1/gambling: bet365.com"),
        "rule: {}",
        r.body
    );
    assert!(r.body.contains("the school office"));
    let reference = r.header("x-schoolgate-ref").expect("reference header");
    assert!(r.body.contains(&reference));
    let report = format!("https://dash.hillside.example/report?ref={reference}");
    assert!(r.body.contains(&report), "report link: {}", r.body);
    let e = h.event_by_id(PUPIL, &reference).await;
    assert_eq!(e.action, Action::Block);
    assert_eq!(e.status, 403);
    assert_eq!(e.host, "www.bet365.com");
    assert_eq!(e.path, "/odds");
    assert_eq!(e.rule, "list ut1/gambling: bet365.com");
    assert!(
        e.categories
            .contains(schoolgate_classifier::Category::Gambling)
    );
    assert_eq!(
        h.origin.connections(),
        0,
        "blocked requests never reach the origin"
    );
    // Staff do not block gambling in this school.
    let r = h.curl_via(STAFF, &[&url]).await;
    assert_eq!(r.code, 200, "{r:?}");
    h.stop().await;
}

#[tokio::test]
async fn safesearch_parameter_is_added_for_pupils_only() {
    let h = Harness::start().await;
    let url = format!(
        "http://www.google.com:{}/search?q=cats&safe=off",
        h.origin.addr.port()
    );
    let r = h.curl_via(PUPIL, &[&url]).await;
    assert_eq!(r.code, 200, "{r:?}");
    assert!(
        r.body.starts_with("GET /search?q=cats&safe=active "),
        "{}",
        r.body
    );
    let e = h.event(PUPIL, |e| e.host == "www.google.com").await;
    assert_eq!(e.search_terms, "cats");
    let r = h.curl_via(STAFF, &[&url]).await;
    assert!(
        r.body.starts_with("GET /search?q=cats&safe=off "),
        "{}",
        r.body
    );
    h.stop().await;
}

#[tokio::test]
async fn keep_alive_and_pooled_upstream_connections() {
    let h = Harness::start().await;
    let a = h.allowed("/a");
    let b = h.allowed("/b");
    let c = h.allowed("/c");
    let r = h.curl_via(STAFF, &[&a, &b, &c]).await;
    assert_eq!(r.code, 200, "{r:?}");
    h.event(STAFF, |e| e.path == "/c").await;
    assert_eq!(
        h.origin.connections(),
        1,
        "three requests, one pooled upstream connection"
    );
    // A new client connection reuses its worker thread's pool: at most one
    // upstream connection per worker, however many client connections.
    let workers = schoolgate_proxy::default_workers();
    for _ in 0..4 {
        let again = h.curl_via(STAFF, &[&a]).await;
        assert_eq!(again.code, 200);
    }
    assert!(
        h.origin.connections() <= workers,
        "{} upstream connections for {workers} workers",
        h.origin.connections()
    );
    h.stop().await;
}

#[tokio::test]
async fn a_connection_the_origin_closes_is_not_reused() {
    let h = Harness::start().await;
    let close = h.allowed("/close");
    let r = h.curl_via(STAFF, &[&close, &close, &close]).await;
    assert_eq!(r.code, 200, "{r:?}");
    // curl writes the first body to the file, the others to its output.
    assert_eq!(r.body, "closing\n");
    assert_eq!(
        h.origin.connections(),
        3,
        "one upstream connection per request"
    );
    // And the next request after them still gets through.
    let r = h.curl_via(STAFF, &[&h.allowed("/after")]).await;
    assert_eq!(r.code, 200, "{r:?}");
    h.event(STAFF, |e| e.path == "/after").await;
    let closed = h
        .events_of(STAFF)
        .await
        .into_iter()
        .filter(|e| e.path == "/close" && e.status == 200)
        .count();
    assert_eq!(closed, 3, "every request answered by the origin");
    h.stop().await;
}

#[tokio::test]
async fn pooled_connections_expire_and_are_not_shared_with_guests() {
    let h = Harness::with(Options {
        proxy: "idle_timeout_secs = 1".into(),
        ..Options::default()
    })
    .await;
    let a = h.allowed("/a");
    assert_eq!(h.curl_via(STAFF, &[&a]).await.code, 200);
    // A guest never gets a connection made for staff.
    assert_eq!(h.curl_via(GUEST, &[&a]).await.code, 200);
    assert_eq!(
        h.origin.connections(),
        2,
        "one pool for guests, one for the rest"
    );
    // Unused past the idle timeout, a connection is not used again.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let r = h.curl_via(STAFF, &[&a, &a]).await;
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(h.origin.connections(), 3, "a fresh connection, then reused");
    h.stop().await;
}

#[tokio::test]
async fn http10_chunked_and_expect_continue() {
    let h = Harness::start().await;
    let r = h.curl_via(STAFF, &["-0", &h.allowed("/old")]).await;
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.headers.starts_with("HTTP/1.0") || r.headers.starts_with("HTTP/1.1"));
    // Chunked from the origin (no length) arrives whole.
    let r = h.curl_via(STAFF, &[&h.allowed("/chunked?n=200000")]).await;
    assert_eq!(r.code, 200);
    assert_eq!(r.body.len(), 200_000);
    // A chunked upload with Expect: 100-continue.
    let file = h.dir.path().join("upload.bin");
    std::fs::write(&file, vec![b'u'; 50_000]).expect("write");
    let data = format!("@{}", file.display());
    let r = h
        .curl_via(
            STAFF,
            &[
                "-H",
                "Transfer-Encoding: chunked",
                "-H",
                "Expect: 100-continue",
                "--data-binary",
                &data,
                &h.allowed("/upload"),
            ],
        )
        .await;
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.body.contains("body-bytes: 50000"), "{}", r.body);
    assert!(
        !r.body.contains("expect:"),
        "Expect is not forwarded: {}",
        r.body
    );
    let e = h.event(STAFF, |e| e.path == "/upload").await;
    assert_eq!(e.bytes_up, 50_000);
    assert_eq!(e.method, "POST");
    h.stop().await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed() {
    let h = Harness::start().await;
    let r = h
        .curl_via(
            STAFF,
            &[
                "-H",
                "Connection: keep-alive, X-Private",
                "-H",
                "X-Private: secret",
                "-H",
                "Proxy-Authorization: Basic Zm9vOmJhcg==",
                "-H",
                "X-Kept: yes",
                &h.allowed("/headers"),
            ],
        )
        .await;
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.body.contains("x-kept: yes"));
    assert!(!r.body.contains("x-private"), "{}", r.body);
    assert!(!r.body.contains("proxy-authorization"), "{}", r.body);
    assert!(
        r.body
            .contains(&format!("host: allowed.test:{}", h.origin.addr.port()))
    );
    h.stop().await;
}

#[tokio::test]
async fn websocket_upgrade_over_plain_http() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start().await;
    let mut s = Harness::tcp_from(STAFF, h.explicit()).await;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        h.allowed("/ws")
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut b).await.expect("read");
        assert!(n == 1, "closed early: {}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping over websocket").await.expect("write");
    let mut echo = [0u8; 19];
    s.read_exact(&mut echo).await.expect("echo");
    assert_eq!(&echo, b"ping over websocket");
    drop(s);
    let e = h.event(STAFF, |e| e.path == "/ws").await;
    assert_eq!(e.status, 101);
    assert!(e.bytes_up >= 19 && e.bytes_down >= 19, "{e:?}");
    h.stop().await;
}
