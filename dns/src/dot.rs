//! DNS over TLS to an upstream resolver (RFC 7858): one kept connection per
//! upstream, queries pipelined on it and answered in any order.
//!
//! A [`Link`] is one TLS connection. Queries are written by a writer task fed
//! by a channel, so a query never waits for another to be written; answers are
//! read by a reader task that hands each to the query waiting for its ID (ID
//! *and* question must match, as on the UDP sockets). When the connection ends
//! (the resolver closes idle connections, or an error), the link is marked
//! closed and every query still waiting on it fails at once; the next query
//! opens a new connection. A query that fails because a reused connection had
//! closed under it is asked once more on a fresh one (see
//! `Upstreams::exchange`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use schoolgate_classifier::config::UpstreamTls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::upstream::{Ask, Pending, PendingGuard, UpstreamError, deliver, register, stream_query};

/// Queries waiting to be written on one connection.
const WRITE_QUEUE: usize = 1_024;

/// The TLS client settings shared by every DNS-over-TLS upstream: the Mozilla
/// roots, plus the certificates of `extra_ca` (a PEM file) when given.
pub fn client_config(extra_ca: Option<&Path>) -> Arc<rustls::ClientConfig> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        // The config check read this file already; if it went bad since, the
        // built-in roots alone stay: an upstream they do not vouch for fails its
        // handshake (SERVFAIL), it is never trusted unchecked.
        match CertificateDer::pem_file_iter(path) {
            Ok(certs) => {
                let (mut added, mut bad) = (0, 0);
                for cert in certs {
                    match cert.map(|c| roots.add(c)) {
                        Ok(Ok(())) => added += 1,
                        _ => bad += 1,
                    }
                }
                if bad > 0 || added == 0 {
                    warn!(path = %path.display(), added, bad, "dns.upstream_ca: certificates that could not be used");
                }
            }
            Err(e) => warn!(path = %path.display(), error = %e, "dns.upstream_ca cannot be read"),
        }
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        // ring supports the default versions; the fallback is never taken.
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }),
    )
}

/// The name the resolver's certificate must be valid for.
pub fn server_name(addr: SocketAddr, tls: &UpstreamTls) -> ServerName<'static> {
    match tls {
        UpstreamTls::Name(name) => ServerName::try_from(name.clone())
            // The config accepted only host names; an IP address is the only
            // other thing rustls would want here.
            .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into())),
        UpstreamTls::Address => ServerName::IpAddress(addr.ip().into()),
    }
}

/// One TLS connection to an upstream.
#[derive(Debug)]
pub struct Link {
    queries: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    closed: CancellationToken,
}

impl Link {
    /// Connects and handshakes within `wait`. Why a connection or handshake
    /// failed is put in `why` (for the health page).
    pub async fn open(
        addr: SocketAddr,
        name: ServerName<'static>,
        connector: &TlsConnector,
        wait: Duration,
        shutdown: &CancellationToken,
        why: &Mutex<Option<String>>,
    ) -> Result<Arc<Link>, UpstreamError> {
        let note = |text: String| *why.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
        let connect = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| {
                debug!(upstream = %addr, error = %e, "cannot connect to a DNS-over-TLS upstream");
                note(e.to_string());
                UpstreamError::Io
            })?;
            let _ = tcp.set_nodelay(true);
            connector.connect(name, tcp).await.map_err(|e| {
                warn!(upstream = %addr, error = %e, "DNS-over-TLS handshake failed");
                note(e.to_string());
                UpstreamError::Tls
            })
        };
        let stream = tokio::time::timeout(wait, connect)
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        let (mut reader, mut writer) = tokio::io::split(stream);
        let (queries, mut outbox) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        let link = Arc::new(Link {
            queries,
            pending: Mutex::new(HashMap::default()),
            closed: shutdown.child_token(),
        });

        let closed = link.closed.clone();
        tokio::spawn(async move {
            'link: loop {
                let first = tokio::select! {
                    _ = closed.cancelled() => break,
                    q = outbox.recv() => match q {
                        Some(q) => q,
                        None => break,
                    },
                };
                // Queries queued meanwhile go out in the same flush.
                let mut next = Some(first);
                while let Some(query) = next.take().or_else(|| outbox.try_recv().ok()) {
                    if let Err(e) = writer.write_all(&query).await {
                        debug!(upstream = %addr, error = %e, "DNS-over-TLS write failed");
                        break 'link;
                    }
                }
                if writer.flush().await.is_err() {
                    break;
                }
            }
            closed.cancel();
        });

        let me = Arc::clone(&link);
        tokio::spawn(async move {
            let mut len = [0u8; 2];
            let mut answer = Vec::new();
            loop {
                let read = async {
                    reader.read_exact(&mut len).await?;
                    answer.resize(usize::from(u16::from_be_bytes(len)), 0);
                    reader.read_exact(&mut answer).await
                };
                let ended = tokio::select! {
                    _ = me.closed.cancelled() => true,
                    r = read => r.is_err(),
                };
                if ended {
                    break;
                }
                deliver(&me.pending, &answer);
            }
            me.closed.cancel();
            // Waiting queries fail now, not at their timeouts.
            me.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
        });
        Ok(link)
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Asks one question and waits up to `wait` for its answer.
    pub async fn ask(&self, ask: Ask<'_>, wait: Duration) -> Result<Vec<u8>, UpstreamError> {
        if self.is_closed() {
            return Err(UpstreamError::Io);
        }
        let (tx, rx) = oneshot::channel();
        let id = register(&self.pending, ask, tx)?;
        let _guard = PendingGuard {
            pending: &self.pending,
            id,
        };
        let framed = stream_query(id, ask, true);
        let exchange = async {
            // A full write queue holds the question back (within its time), it
            // is no reason to give up on the connection.
            self.queries
                .send(framed)
                .await
                .map_err(|_| UpstreamError::Io)?;
            // An error here: the connection ended with the question unanswered.
            rx.await.map_err(|_| UpstreamError::Io)
        };
        tokio::time::timeout(wait, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout)?
    }
}
