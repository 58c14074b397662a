use std::time::Duration;

use crate::support::*;
use schoolgate_classifier::Action;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn oversized_header_gets_431_and_an_event() {
    let h = Harness::start().await;
    let big = format!("X-Big: {}", "a".repeat(20_000));
    let r = h.curl_via(PUPIL, &["-H", &big, &h.allowed("/")]).await;
    assert_eq!(r.code, 431, "{r:?}");
    assert!(r.body.contains("Request headers too large"));
    let e = h.event(PUPIL, |e| e.status == 431).await;
    assert_eq!(e.rule, "malformed request");
    assert_eq!(h.origin.connections(), 0);
    h.stop().await;
}

#[tokio::test]
async fn too_many_headers_and_too_long_lines() {
    let h = Harness::start().await;
    let many: String = (0..60).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: allowed.test\r\n{many}\r\n",
        h.allowed("/")
    );
    let resp = raw(PUPIL, h.explicit(), req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    let long = format!(
        "GET {} HTTP/1.1\r\n\r\n",
        h.allowed(&format!("/{}", "p".repeat(9000)))
    );
    let resp = raw(PUPIL, h.explicit(), long.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 414"), "{resp}");
    h.stop().await;
}

/// The shipped limit of 100 is hyper's own default, which it parses into on the
/// stack (any other limit is a heap allocation per request): the limit must
/// still hold on a kept-alive connection, where hyper reads the requests.
#[tokio::test]
async fn the_default_header_count_limit_holds_on_kept_alive_connections() {
    let h = Harness::with(Options {
        max_headers: Some(100),
        ..Options::default()
    })
    .await;
    let headers = |n: usize| -> String { (0..n).map(|i| format!("X-H{i}: v\r\n")).collect() };
    let url = h.allowed("/");
    let mut conn = Harness::tcp_from(PUPIL, h.explicit()).await;
    // One request at a time on one connection, as a browser sends them: the
    // first head is read by the proxy itself, the later ones by hyper, which
    // takes at most 99 headers at its default of 100 (measured, both before and
    // after the default stopped being passed to it explicitly).
    for (extra, status) in [(0, "200"), (98, "200"), (100, "431")] {
        let req = format!(
            "GET {url} HTTP/1.1\r\nHost: allowed.test\r\n{}\r\n",
            headers(extra)
        );
        conn.write_all(req.as_bytes()).await.expect("write");
        let head = read_head(&mut conn).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{} headers: {head}",
            extra + 1
        );
        if status == "200" {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().expect("length"))
                })
                .expect("content-length");
            let mut body = vec![0; len];
            conn.read_exact(&mut body).await.expect("body");
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_400_with_a_reason_and_an_event() {
    let h = Harness::start().await;
    let cases: [&[u8]; 4] = [
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET http://allowed.test/ HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"GET http://bad host/ HTTP/1.1\r\n\r\n",
        b"CONNECT allowed.test HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
    ];
    for case in cases {
        let resp = raw(PUPIL, h.explicit(), case).await;
        assert!(
            resp.starts_with("HTTP/1.1 400"),
            "{}: {resp}",
            String::from_utf8_lossy(case)
        );
        assert!(resp.contains("Bad request"), "{resp}");
        assert!(
            resp.to_ascii_lowercase()
                .contains("x-schoolgate-reason: malformed"),
            "{resp}"
        );
    }
    // Weird but valid: absolute-form with https (needs CONNECT) and an invalid host.
    let resp = raw(
        PUPIL,
        h.explicit(),
        b"GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    for _ in 0..100 {
        let n = h
            .events_of(PUPIL)
            .await
            .iter()
            .filter(|e| e.status == 400)
            .count();
        if n > cases.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = h.events_of(PUPIL).await;
    let bad: Vec<_> = events.iter().filter(|e| e.status == 400).collect();
    assert_eq!(bad.len(), cases.len() + 1, "{events:#?}");
    assert!(
        bad.iter()
            .all(|e| e.action == Action::Block && e.rule == "malformed request")
    );
    assert!(h.proxy.stats().errors.client >= 5);
    h.stop().await;
}

#[tokio::test]
async fn slowloris_is_closed_after_the_header_timeout() {
    // header_timeout_secs = 2 in the test school.
    let h = Harness::start().await;
    let mut s = Harness::tcp_from(PUPIL, h.explicit()).await;
    s.write_all(b"GET http://allowed.test/ HTTP/1.1\r\nX-Slow: ")
        .await
        .expect("write");
    // One byte every 300 ms: never a whole head. The proxy must close.
    let mut closed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if s.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "slowloris connection was never closed");
    let e = h.event(PUPIL, |e| e.status == 408).await;
    assert_eq!(e.rule, "malformed request");
    h.stop().await;
}

#[tokio::test]
async fn request_loops_are_refused() {
    let h = Harness::start().await;
    // To the proxy's own address.
    let url = format!("http://{}/x", h.explicit());
    let r = h.curl_via(STAFF, &[&url]).await;
    assert_eq!(r.code, 508, "{r:?}");
    // A request that already carries our Via.
    let r = h
        .curl_via(STAFF, &["-H", "Via: 1.1 schoolgate", &h.allowed("/")])
        .await;
    assert_eq!(r.code, 508, "{r:?}");
    assert_eq!(h.origin.connections(), 0);
    h.stop().await;
}

#[tokio::test]
async fn upstream_down_is_a_502_page_and_an_event() {
    let h = Harness::start().await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let r = h
        .curl_via(STAFF, &[&format!("http://allowed.test:{port}/down")])
        .await;
    assert_eq!(r.code, 502, "{r:?}");
    assert!(r.body.contains("Site unreachable"), "{}", r.body);
    let e = h.event(STAFF, |e| e.path == "/down").await;
    assert_eq!(e.status, 502);
    assert_eq!(e.rule, "upstream error");
    assert_eq!(
        e.action,
        Action::Allow,
        "the policy allowed it; the site failed"
    );
    assert!(h.proxy.stats().errors.upstream >= 1);
    h.stop().await;
}

#[tokio::test]
async fn connections_per_client_are_capped() {
    let h = Harness::with(Options {
        proxy: "max_connections_per_client = 2".into(),
        ..Options::default()
    })
    .await;
    let _a = Harness::tcp_from(PUPIL, h.explicit()).await;
    let _b = Harness::tcp_from(PUPIL, h.explicit()).await;
    // Wait until both are accepted, so the third is the one over the cap.
    for _ in 0..100 {
        if h.proxy.stats().active_connections >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = Harness::tcp_from(PUPIL, h.explicit()).await;
    let out = read_to_close(&mut c).await;
    assert!(out.is_empty());
    assert!(h.proxy.stats().refused_connections >= 1);
    // Another client is not affected.
    let r = h.curl_via(STAFF, &[&h.allowed("/")]).await;
    assert_eq!(r.code, 200);
    h.stop().await;
}

/// Reads a response head (up to the blank line) byte by byte, leaving the body.
async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("a response in time")
            .expect("read");
        assert_eq!(n, 1, "closed after {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}
