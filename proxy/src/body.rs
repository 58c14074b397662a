//! Bodies: [`ProxyBody`] towards the client (a page, or the upstream's body
//! counted and capped, finishing the request's event when it ends), and
//! [`UploadBody`] towards the upstream (the client's body, counted and capped).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::proxy::Finish;

/// The error type of both bodies: rare (an aborted transfer), so boxing is fine.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A transfer went over a role's size cap.
#[derive(Debug, thiserror::Error)]
#[error("{what} larger than the {limit} bytes this role may transfer")]
pub struct OverCap {
    pub what: &'static str,
    pub limit: u64,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Stream(Incoming),
}

/// The body of every response the proxy sends.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
    /// The request's event, finished (status, bytes, duration) and sent when the
    /// body ends, fails or is dropped (the client went away).
    finish: Option<Box<Finish>>,
    sent: u64,
    cap: Option<u64>,
}

impl ProxyBody {
    /// A complete body (a page).
    pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
        let b: Bytes = bytes.into();
        ProxyBody {
            kind: Kind::Full((!b.is_empty()).then_some(b)),
            finish: None,
            sent: 0,
            cap: None,
        }
    }

    pub fn empty() -> ProxyBody {
        ProxyBody::full(Bytes::new())
    }

    pub(crate) fn stream(body: Incoming, cap: Option<u64>) -> ProxyBody {
        ProxyBody {
            kind: Kind::Stream(body),
            finish: None,
            sent: 0,
            cap,
        }
    }

    pub(crate) fn with_finish(mut self, finish: Box<Finish>) -> ProxyBody {
        self.finish = Some(finish);
        self
    }

    fn done(&mut self, over_cap: bool, failed: bool) {
        if let Some(f) = self.finish.take() {
            f.complete(self.sent, over_cap, failed);
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // The client closed before the end: still one event, with what was sent.
        let failed = match &self.kind {
            Kind::Full(rest) => rest.is_some(),
            Kind::Stream(b) => !b.is_end_stream(),
        };
        self.done(false, failed);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match &mut this.kind {
            Kind::Full(rest) => match rest.take() {
                Some(b) => {
                    this.sent += b.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                None => {
                    this.done(false, false);
                    Poll::Ready(None)
                }
            },
            Kind::Stream(body) => match Pin::new(body).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        this.sent += d.len() as u64;
                        if let Some(limit) = this.cap
                            && this.sent > limit
                        {
                            // Headers are gone already: all we can do is cut the
                            // transfer; the event says why.
                            this.done(true, true);
                            return Poll::Ready(Some(Err(Box::new(OverCap {
                                what: "download",
                                limit,
                            }))));
                        }
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done(false, true);
                    Poll::Ready(Some(Err(Box::new(e))))
                }
                Poll::Ready(None) => {
                    this.done(false, false);
                    Poll::Ready(None)
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(rest) => rest.is_none(),
            Kind::Stream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Stream(b) => b.size_hint(),
        }
    }
}

/// The client's request body on its way upstream.
#[derive(Debug)]
pub struct UploadBody {
    inner: Option<Incoming>,
    /// Shared with the request's event, which reads it when it finishes.
    count: Option<Arc<AtomicU64>>,
    cap: Option<u64>,
}

impl UploadBody {
    pub(crate) fn empty() -> UploadBody {
        UploadBody {
            inner: None,
            count: None,
            cap: None,
        }
    }

    pub(crate) fn counted(body: Incoming, count: Arc<AtomicU64>, cap: Option<u64>) -> UploadBody {
        UploadBody {
            inner: Some(body),
            count: Some(count),
            cap,
        }
    }
}

impl Body for UploadBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(body) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(d), Some(count)) = (frame.data_ref(), &this.count) {
                    let n = count.fetch_add(d.len() as u64, Ordering::Relaxed) + d.len() as u64;
                    if let Some(limit) = this.cap
                        && n > limit
                    {
                        return Poll::Ready(Some(Err(Box::new(OverCap {
                            what: "upload",
                            limit,
                        }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(b) => b.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}
