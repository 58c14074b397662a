//! A small HTTP/1.1 client on hyper with a cookie jar and the dashboard's CSRF
//! token: one connection per request, plain or TLS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use schoolgate_dashboard::Role;

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_owned()
    }
}

pub struct Client {
    addr: SocketAddr,
    pub cookies: HashMap<String, String>,
    pub csrf: Option<String>,
    tls: Option<tokio_rustls::TlsConnector>,
    /// Every Set-Cookie header seen, for attribute checks.
    pub set_cookies: Vec<String>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            cookies: HashMap::new(),
            csrf: None,
            tls: None,
            set_cookies: Vec::new(),
        }
    }

    /// Trusts any certificate (the test's self-signed one).
    pub fn with_tls(mut self) -> Client {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
        self.tls = Some(tokio_rustls::TlsConnector::from(Arc::new(config)));
        self
    }

    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        csrf_header: bool,
    ) -> Resp {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("cookie", c.join("; "));
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if csrf_header && let Some(t) = &self.csrf {
            req = req.header("x-csrf-token", t);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let resp = match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                let s = tls.connect(name, stream).await.expect("tls");
                send(TokioIo::new(s), req).await
            }
            None => send(TokioIo::new(stream), req).await,
        };
        for v in resp.headers.get_all("set-cookie") {
            let s = v.to_str().unwrap_or("").to_owned();
            if let Some((kv, _)) = s.split_once(';')
                && let Some((k, v)) = kv.split_once('=')
            {
                if v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
            self.set_cookies.push(s);
        }
        resp
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.request(Method::GET, path, None, Vec::new(), false)
            .await
    }

    /// A form post with the session's CSRF token as the `csrf` field.
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.csrf.clone().unwrap_or_default();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            all.push(("csrf", &csrf));
        }
        self.post_form_raw(path, &all).await
    }

    /// A form post exactly as given (no token added).
    pub async fn post_form_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.request(
            Method::POST,
            path,
            Some("application/x-www-form-urlencoded"),
            body.into_bytes(),
            false,
        )
        .await
    }

    /// A JSON post with the `X-CSRF-Token` header.
    pub async fn post_json(&mut self, path: &str, v: &serde_json::Value) -> Resp {
        self.request(
            Method::POST,
            path,
            Some("application/json"),
            v.to_string().into_bytes(),
            true,
        )
        .await
    }

    /// Logs in through the JSON API and keeps the CSRF token.
    pub async fn login(&mut self, user: &str, password: &str) -> Resp {
        let r = self
            .request(
                Method::POST,
                "/api/login",
                Some("application/json"),
                serde_json::json!({ "username": user, "password": password })
                    .to_string()
                    .into_bytes(),
                false,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login as {user}: {}", r.body);
        self.csrf = r.json()["csrf"].as_str().map(str::to_owned);
        r
    }

    pub async fn login_as(&mut self, role: Role) -> Resp {
        self.login(super::role_user(role), super::PASSWORD).await
    }
}

async fn send<I>(io: I, req: http::Request<Full<Bytes>>) -> Resp
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.expect("send");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
