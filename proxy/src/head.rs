//! The first request head of a connection, read and checked before hyper takes
//! over, so that a malformed, oversized or too-slow request gets a page that says
//! why and an event (hyper alone would answer an empty 400 and log nothing).
//!
//! Later requests on a keep-alive connection are bounded by hyper with the same
//! limits; when hyper refuses one, the connection's error is logged as an event
//! without a page.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::error::ProxyError;
use crate::view::Limits;

/// Why the first head could not be read.
#[derive(Debug)]
pub enum HeadError {
    /// The client closed (or reset) before sending anything: not worth an event.
    Closed,
    /// The client closed after a partial head.
    Truncated,
    /// Not all of the head arrived within the header timeout (slowloris).
    Timeout { received: usize },
    /// The head is invalid or over a limit: answer with this.
    Bad(ProxyError),
}

/// Reads until a complete request head is buffered and checks it. Returns the
/// bytes read (head and whatever followed), for hyper to parse again.
pub async fn read_first_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    limits: &Limits,
) -> Result<Bytes, HeadError> {
    let deadline = tokio::time::Instant::now() + limits.header_timeout;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let room = (limits.max_header_bytes + 1).saturating_sub(buf.len());
        if room == 0 {
            return Err(HeadError::Bad(ProxyError::HeadTooLarge));
        }
        let mut limited = (&mut *stream).take(room as u64);
        match tokio::time::timeout_at(deadline, limited.read_buf(&mut buf)).await {
            Err(_) => {
                return Err(HeadError::Timeout {
                    received: buf.len(),
                });
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(if buf.is_empty() {
                    HeadError::Closed
                } else {
                    HeadError::Truncated
                });
            }
            Ok(Ok(_)) => {}
        }
        match check(&buf, limits) {
            Ok(true) => return Ok(buf.freeze()),
            Ok(false) => continue,
            Err(e) => return Err(HeadError::Bad(e)),
        }
    }
}

/// `Ok(true)` when a complete, acceptable head is in `buf`; `Ok(false)` when
/// more is needed.
pub fn check(buf: &[u8], limits: &Limits) -> Result<bool, ProxyError> {
    // Tolerate the empty lines some clients send between requests (RFC 9112 §2.2).
    let start = buf
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(buf.len());
    let line_end = buf[start..].iter().position(|b| *b == b'\n');
    match line_end {
        Some(n) if n > limits.max_request_line => return Err(ProxyError::LineTooLong),
        None if buf.len() - start > limits.max_request_line => {
            return Err(ProxyError::LineTooLong);
        }
        _ => {}
    }
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            if n > limits.max_header_bytes {
                return Err(ProxyError::HeadTooLarge);
            }
            Ok(true)
        }
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                Err(ProxyError::HeadTooLarge)
            } else {
                Ok(false)
            }
        }
        Err(httparse::Error::TooManyHeaders) => Err(ProxyError::HeadTooLarge),
        Err(e) => Err(ProxyError::Malformed(match e {
            httparse::Error::HeaderName => "invalid header name",
            httparse::Error::HeaderValue => "invalid header value",
            httparse::Error::NewLine | httparse::Error::Status => "invalid line ending",
            httparse::Error::Token => "invalid method",
            httparse::Error::Version => "not HTTP/1.x",
            _ => "invalid request",
        })),
    }
}

/// A stream that first yields bytes already read from it.
#[derive(Debug)]
pub struct Rewind<S> {
    pre: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(pre: Bytes, inner: S) -> Rewind<S> {
        Rewind { pre, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How long a refused client gets to read the error page before the socket
/// closes.
pub const ERROR_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_header_bytes: 1024,
            max_headers: 10,
            max_request_line: 100,
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_connections_per_client: 1,
            max_connections: 1,
        }
    }

    #[test]
    fn complete_partial_and_bad_heads() {
        let l = limits();
        assert!(matches!(
            check(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", &l),
            Ok(true)
        ));
        assert!(matches!(
            check(b"GET http://a/ HTTP/1.1\r\nHo", &l),
            Ok(false)
        ));
        assert!(matches!(
            check(b"GET http://a/ HTTP/1.1\r\nBad Header: x\r\n\r\n", &l),
            Err(ProxyError::Malformed(_))
        ));
        let long = format!("GET http://a/{} HTTP/1.1\r\n\r\n", "x".repeat(200));
        assert!(matches!(
            check(long.as_bytes(), &l),
            Err(ProxyError::LineTooLong)
        ));
        let many: String = (0..20).map(|i| format!("x{i}: y\r\n")).collect();
        let req = format!("GET http://a/ HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            check(req.as_bytes(), &l),
            Err(ProxyError::HeadTooLarge)
        ));
    }
}
