use std::sync::Arc;

use crate::support::*;
use schoolgate_classifier::Action;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn https(h: &Harness, name: &str) -> String {
    format!("https://{name}:{}/", h.tls.addr.port())
}

#[tokio::test]
async fn connect_tunnel_to_an_allowed_tls_origin() {
    let h = Harness::start().await;
    let ca = h.tls.ca_pem.display().to_string();
    let r = h
        .curl_via(PUPIL, &["--cacert", &ca, &https(&h, "allowed.test")])
        .await;
    assert_eq!(r.connect_code, 200, "{r:?}");
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(r.body, "tls ok");
    let e = h.event(PUPIL, |e| e.method == "CONNECT").await;
    assert_eq!(e.host, "allowed.test");
    assert_eq!(e.action, Action::Allow);
    assert_eq!(e.status, 200);
    assert!(
        e.bytes_up > 200 && e.bytes_down > 200,
        "TLS bytes counted: {e:?}"
    );
    assert!(h.proxy.stats().connect_tunnels >= 1);
    h.stop().await;
}

#[tokio::test]
async fn blocked_connect_is_a_403_with_the_reason_header() {
    let h = Harness::start().await;
    let ca = h.tls.ca_pem.display().to_string();
    let r = h
        .curl_via(PUPIL, &["--cacert", &ca, &https(&h, "www.bet365.com")])
        .await;
    assert_eq!(r.connect_code, 403, "{r:?}");
    let reason = r.header("x-schoolgate-reason").expect("reason header");
    assert!(reason.contains("gambling"), "{reason}");
    let reference = r.header("x-schoolgate-ref").expect("ref header");
    let e = h.event_by_id(PUPIL, &reference).await;
    assert_eq!(e.action, Action::Block);
    assert_eq!(e.method, "CONNECT");
    assert_eq!(e.host, "www.bet365.com");
    h.stop().await;
}

#[tokio::test]
async fn connect_only_to_allowed_ports() {
    let h = Harness::start().await;
    let r = h.curl_via(STAFF, &["-p", "http://allowed.test:25/"]).await;
    assert_eq!(r.connect_code, 403, "{r:?}");
    assert!(
        r.header("x-schoolgate-reason")
            .is_some_and(|v| v.contains("port 25"))
    );
    let e = h.event(STAFF, |e| e.method == "CONNECT").await;
    assert_eq!(e.rule, "connect port");
    h.stop().await;
}

/// A TLS handshake through a CONNECT tunnel whose SNI is `sni`.
async fn tls_through_connect(h: &Harness, connect_host: &str, sni: &str) -> Result<(), String> {
    let mut s = Harness::tcp_from(PUPIL, h.explicit()).await;
    let req = format!(
        "CONNECT {connect_host}:{p} HTTP/1.1\r\nHost: {connect_host}:{p}\r\n\r\n",
        p = h.tls.addr.port()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.map_err(|e| e.to_string())? == 0 {
            return Err("closed".into());
        }
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let connector = tokio_rustls::TlsConnector::from(h.tls.client_config());
    let name =
        rustls::pki_types::ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, s)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    tls.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    out.contains("tls ok").then_some(()).ok_or(out)
}

#[tokio::test]
async fn sni_different_from_the_connect_host_is_domain_fronting() {
    let h = Harness::start().await;
    tls_through_connect(&h, "allowed.test", "allowed.test")
        .await
        .expect("matching SNI works");
    // Blocked by default (`domain_fronting = "block"`): the tunnel closes.
    assert!(
        tls_through_connect(&h, "allowed.test", "other.test")
            .await
            .is_err()
    );
    let e = h
        .event(PUPIL, |e| e.rule.starts_with("domain fronting"))
        .await;
    assert_eq!(e.action, Action::Block);
    assert!(
        e.rule.contains("other.test") && e.rule.contains("allowed.test"),
        "{}",
        e.rule
    );
    // An SNI naming a blocked site is decided on, whatever the CONNECT said.
    assert!(
        tls_through_connect(&h, "allowed.test", "www.bet365.com")
            .await
            .is_err()
    );
    h.event(PUPIL, |e| {
        e.rule == "list ut1/gambling: bet365.com" && e.method == "CONNECT"
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn fronting_can_be_flagged_instead() {
    let h = Harness::with(Options {
        proxy: "domain_fronting = \"flag\"".into(),
        ..Options::default()
    })
    .await;
    tls_through_connect(&h, "allowed.test", "other.test")
        .await
        .expect("flagged, not blocked");
    let e = h
        .event(PUPIL, |e| e.rule.starts_with("domain fronting"))
        .await;
    assert_eq!(e.action, Action::Flag);
    h.stop().await;
}

#[tokio::test]
async fn websocket_through_connect() {
    let h = Harness::start().await;
    let mut s = Harness::tcp_from(STAFF, h.explicit()).await;
    let target = format!("allowed.test:{}", h.origin.addr.port());
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = vec![0u8; 512];
    let n = s.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.expect("read"), 1);
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.write_all(b"hello").await.expect("write");
    let mut echo = [0u8; 5];
    s.read_exact(&mut echo).await.expect("echo");
    assert_eq!(&echo, b"hello");
    let _ = Arc::strong_count(&h.proxy);
    h.stop().await;
}
