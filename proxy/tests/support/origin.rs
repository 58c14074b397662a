//! Local origins the proxy talks to in tests.
//!
//! The HTTP origin's routes:
//! - `/big?n=N`: N bytes with a Content-Length;
//! - `/chunked?n=N`: N bytes streamed without a length (chunked);
//! - `/ws`: answers an `Upgrade` with 101 and then echoes bytes;
//! - anything else: echoes the request (line, headers, body size) as text.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, std::io::Error>;

pub struct HttpOrigin {
    pub addr: SocketAddr,
    /// Connections accepted (to see pooling).
    pub connections: Arc<AtomicUsize>,
}

impl HttpOrigin {
    pub async fn start(ip: IpAddr) -> HttpOrigin {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("bind origin");
        HttpOrigin::serve(listener)
    }

    /// Serves on a listener made elsewhere (e.g. inside a network namespace).
    pub fn serve(listener: TcpListener) -> HttpOrigin {
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(route))
                        .with_upgrades()
                        .await;
                });
            }
        });
        HttpOrigin { addr, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}

fn query_n(req: &Request<Incoming>) -> usize {
    req.uri()
        .query()
        .and_then(|q| q.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024)
}

async fn route(mut req: Request<Incoming>) -> Result<Response<Body>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/big" {
        let n = query_n(&req);
        return Ok(Response::new(full(vec![b'x'; n])));
    }
    if path == "/close" {
        // The origin will not keep this connection: the pool must not reuse it.
        let mut resp = Response::new(full("closing\n"));
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return Ok(resp);
    }
    if path == "/chunked" {
        let n = query_n(&req);
        let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = (0..n)
            .step_by(65536)
            .map(|i| Ok(Frame::data(Bytes::from(vec![b'y'; (n - i).min(65536)]))))
            .collect();
        let body = StreamBody::new(futures::stream::iter(chunks)).boxed();
        return Ok(Response::new(body));
    }
    if path == "/ws" && req.headers().contains_key(http::header::UPGRADE) {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let resp = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .body(full(""))
            .expect("response");
        return Ok(resp);
    }
    let mut text = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
    for (k, v) in req.headers() {
        text.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
    }
    let body = req.into_body().collect().await.map(|c| c.to_bytes());
    let len = body.map(|b| b.len()).unwrap_or(0);
    text.push_str(&format!("body-bytes: {len}\n"));
    Ok(Response::new(full(text)))
}

/// A TLS origin with a certificate from a test CA for `allowed.test`,
/// `www.bet365.com`, `other.test`, `sni.test` and `localhost`; answers every
/// request with `tls ok`.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    /// The CA certificate (PEM) for `curl --cacert`.
    pub ca_pem: PathBuf,
    pub ca_der: rustls::pki_types::CertificateDer<'static>,
}

pub fn tls_config(
    dir: &Path,
) -> (
    Arc<rustls::ServerConfig>,
    PathBuf,
    rustls::pki_types::CertificateDer<'static>,
) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "schoolgate test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let names: Vec<String> = [
        "allowed.test",
        "www.bet365.com",
        "other.test",
        "sni.test",
        "localhost",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let leaf = CertificateParams::new(names)
        .expect("params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let ca_pem = dir.join("ca.pem");
    std::fs::write(&ca_pem, ca.pem()).expect("write ca");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
    .expect("cert");
    (Arc::new(config), ca_pem, ca.der().clone())
}

impl TlsOrigin {
    pub async fn start(dir: &Path, ip: IpAddr) -> TlsOrigin {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("bind");
        TlsOrigin::serve(dir, listener)
    }

    pub fn serve(dir: &Path, listener: TcpListener) -> TlsOrigin {
        let (config, ca_pem, ca_der) = tls_config(dir);
        let addr = listener.local_addr().expect("addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\ntls ok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsOrigin {
            addr,
            ca_pem,
            ca_der,
        }
    }

    /// A rustls client config trusting the test CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("root");
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }
}
