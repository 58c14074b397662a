use crate::support::*;
use schoolgate_classifier::Action;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn transparent_http_routes_by_host() {
    let h = Harness::start().await;
    let port = h.addrs.transparent_http.expect("listener").port();
    let host = format!("Host: allowed.test:{}", h.origin.addr.port());
    let url = format!("http://127.0.0.1:{port}/page?q=1");
    let r = curl(h.dir.path(), &s(&["--interface", PUPIL, "-H", &host, &url])).await;
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.body.starts_with("GET /page?q=1 HTTP/1.1"), "{}", r.body);
    let e = h.event(PUPIL, |e| e.path == "/page?q=1").await;
    assert_eq!(e.source, schoolgate_events::Source::Transparent);
    assert_eq!(e.host, "allowed.test");
    // A blocked Host gets the block page.
    let host = format!("Host: www.bet365.com:{}", h.origin.addr.port());
    let r = curl(h.dir.path(), &s(&["--interface", PUPIL, "-H", &host, &url])).await;
    assert_eq!(r.code, 403);
    assert!(r.body.contains("bet365"));
    h.stop().await;
}

async fn tls_via_transparent(h: &Harness, sni: &str) -> Result<String, String> {
    let to = h.addrs.transparent_https.expect("listener");
    let s = Harness::tcp_from(PUPIL, to).await;
    let connector = tokio_rustls::TlsConnector::from(h.tls.client_config());
    let name =
        rustls::pki_types::ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, s)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: sni.test\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    tls.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[tokio::test]
async fn transparent_https_is_read_by_sni_and_spliced() {
    let h = Harness::start().await;
    // Not redirected, so the proxy resolves the SNI on 443: the test maps
    // `sni.test` to the local TLS origin.
    let out = tls_via_transparent(&h, "sni.test").await.expect("spliced");
    assert!(out.contains("tls ok"), "{out}");
    let e = h.event(PUPIL, |e| e.host == "sni.test").await;
    assert_eq!(e.source, schoolgate_events::Source::Transparent);
    assert_eq!(e.action, Action::Allow);
    assert!(e.bytes_up > 0 && e.bytes_down > 0);
    // A blocked name: closed, no TLS, an event.
    assert!(tls_via_transparent(&h, "www.bet365.com").await.is_err());
    let e = h.event(PUPIL, |e| e.host == "www.bet365.com").await;
    assert_eq!(e.action, Action::Block);
    h.stop().await;
}

#[tokio::test]
async fn malformed_tls_is_closed_with_an_event() {
    let h = Harness::start().await;
    let to = h.addrs.transparent_https.expect("listener");
    let out = raw(PUPIL, to, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(out.is_empty());
    // A handshake record whose inner lengths lie.
    let mut hello = schoolgate_proxy::clienthello::build_hello(Some("a.test"));
    let n = hello.len();
    hello[n - 8] = 0xff;
    let out = raw(PUPIL, to, &hello).await;
    assert!(out.is_empty());
    let e = h.event(PUPIL, |e| e.reason.contains("malformed TLS")).await;
    assert_eq!(e.action, Action::Block);
    h.stop().await;
}
