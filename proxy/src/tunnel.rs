//! Byte tunnels: CONNECT, WebSocket after a 101, and transparent TLS. Both
//! directions are copied with `copy_bidirectional`; a meter on the client side
//! counts bytes each way and notices when nothing moved for the idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::clienthello::{self, ClientHello, HelloError, MAX_HELLO};

/// Per-direction copy buffer: large enough for bulk throughput on loopback and
/// LAN, small enough that 10 000 open tunnels stay within memory.
const SPLICE_BUF: usize = 32 * 1024;

/// How a tunnel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelEnd {
    /// One side closed (the normal end).
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// The proxy is shutting down.
    Shutdown,
    /// A read or write failed (reset by a peer).
    Error,
}

#[derive(Debug)]
struct Meter {
    up: AtomicU64,
    down: AtomicU64,
    /// Milliseconds since `base` of the last byte either way.
    last: AtomicU64,
    base: Instant,
}

impl Meter {
    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }
}

/// The client side of a tunnel, counting and timestamping.
struct Metered<S> {
    inner: S,
    meter: Arc<Meter>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.meter.up.fetch_add(n as u64, Ordering::Relaxed);
            self.meter.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r
            && *n > 0
        {
            self.meter.down.fetch_add(*n as u64, Ordering::Relaxed);
            self.meter.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Copies both ways until one side closes, nothing moves for `idle`, or
/// `shutdown`. Returns bytes from the client (up), bytes to it (down), and why it
/// ended: counts survive every ending, so the event is always complete.
pub async fn splice<C, U>(
    client: C,
    mut upstream: U,
    idle: Duration,
    shutdown: &CancellationToken,
) -> (u64, u64, TunnelEnd)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let meter = Arc::new(Meter {
        up: AtomicU64::new(0),
        down: AtomicU64::new(0),
        last: AtomicU64::new(0),
        base: Instant::now(),
    });
    let mut client = Metered {
        inner: client,
        meter: meter.clone(),
    };
    let end = tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, SPLICE_BUF, SPLICE_BUF) => {
            if r.is_ok() { TunnelEnd::Closed } else { TunnelEnd::Error }
        }
        _ = idle_watch(&meter, idle) => TunnelEnd::Idle,
        _ = shutdown.cancelled() => TunnelEnd::Shutdown,
    };
    (
        meter.up.load(Ordering::Relaxed),
        meter.down.load(Ordering::Relaxed),
        end,
    )
}

async fn idle_watch(meter: &Meter, idle: Duration) {
    let idle_ms = idle.as_millis() as u64;
    loop {
        let now = meter.base.elapsed().as_millis() as u64;
        let last = meter.last.load(Ordering::Relaxed);
        let quiet = now.saturating_sub(last);
        if quiet >= idle_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(idle_ms - quiet)).await;
    }
}

/// What the first bytes of a tunnel turned out to be.
#[derive(Debug)]
pub enum FirstBytes {
    /// A complete ClientHello.
    Hello(ClientHello),
    /// Not TLS (the tunnel carries something else): forward as is.
    NotTls,
    /// TLS that does not add up.
    Malformed(&'static str),
    /// The client closed before sending a whole hello.
    Closed,
    /// The client was too slow.
    Timeout,
}

/// Reads from `r` into `buf` until a whole ClientHello is there (or it is clearly
/// not one). Never buffers more than [`MAX_HELLO`] bytes; gives up after
/// `timeout`. Whatever was read stays in `buf` for the caller to forward.
pub async fn read_hello<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> FirstBytes {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let need = if buf.is_empty() {
            5
        } else {
            if !clienthello::looks_like_tls(buf[0]) {
                return FirstBytes::NotTls;
            }
            match clienthello::parse(buf) {
                Ok(h) => return FirstBytes::Hello(h),
                Err(HelloError::Incomplete(n)) => n,
                Err(HelloError::Malformed(m)) => return FirstBytes::Malformed(m),
                Err(HelloError::TooLarge) => {
                    return FirstBytes::Malformed("ClientHello too large");
                }
            }
        };
        let want = need.saturating_sub(buf.len()).clamp(1, MAX_HELLO);
        let mut chunk = (&mut *r).take(want as u64);
        buf.reserve(want);
        match tokio::time::timeout_at(deadline, chunk.read_buf(buf)).await {
            Err(_) => return FirstBytes::Timeout,
            Ok(Ok(0)) | Ok(Err(_)) => return FirstBytes::Closed,
            Ok(Ok(_)) => {}
        }
    }
}
