//! One allowed request on its way through: bodies streamed both ways and counted, and the
//! outcome journaled once, when the response ends (or the exchange is dropped unfinished).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use warden_core::Outcome;

use crate::guard::Guard;

/// The outcome bookkeeping of one allowed request or tunnel.
pub(super) struct Exchange {
    guard: Guard,
    seq: u64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    recorded: AtomicBool,
}

impl Exchange {
    /// The exchange whose decision is record `seq`.
    pub fn new(guard: Guard, seq: u64) -> Arc<Self> {
        Arc::new(Self {
            guard,
            seq,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            recorded: AtomicBool::new(false),
        })
    }

    /// Counts bytes received from the destination.
    pub fn add_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts bytes sent to the destination.
    pub fn add_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `N bytes in, M bytes out`, as counted so far.
    pub fn volume(&self) -> String {
        format!(
            "{} bytes in, {} bytes out",
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed)
        )
    }

    /// Journals the outcome; only the first call of an exchange counts.
    pub fn finish(&self, outcome: Outcome, detail: impl Into<String>) {
        if self.recorded.swap(true, Ordering::AcqRel) {
            return;
        }
        // Recording spawns a task: impossible once the runtime is gone.
        if tokio::runtime::Handle::try_current().is_ok() {
            self.guard.record_outcome(self.seq, outcome, detail);
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let detail = format!("the exchange ended before it completed, {}", self.volume());
        self.finish(Outcome::Cancelled, detail);
    }
}

/// A request body on its way to the destination, counted.
pub(super) struct Outbound {
    inner: Incoming,
    exchange: Arc<Exchange>,
}

impl Outbound {
    pub fn new(inner: Incoming, exchange: Arc<Exchange>) -> Self {
        Self { inner, exchange }
    }
}

impl Body for Outbound {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.exchange.add_out(data.len());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the proxy answers the agent with: its own short message, or the destination's
/// response streamed through.
pub(crate) struct ProxyBody {
    kind: Kind,
}

enum Kind {
    Message(Option<Bytes>),
    Upstream {
        inner: Incoming,
        exchange: Arc<Exchange>,
        status: u16,
    },
}

impl ProxyBody {
    /// A complete body Warden wrote itself.
    pub fn message(text: impl Into<Bytes>) -> Self {
        let bytes = text.into();
        Self {
            kind: Kind::Message((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// The destination's response body; its end journals the outcome.
    pub fn upstream(inner: Incoming, exchange: Arc<Exchange>, status: u16) -> Self {
        Self {
            kind: Kind::Upstream {
                inner,
                exchange,
                status,
            },
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.kind {
            Kind::Message(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream {
                inner,
                exchange,
                status,
            } => {
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            exchange.add_in(data.len());
                        }
                    }
                    Poll::Ready(Some(Err(err))) => {
                        let detail = format!(
                            "{status}, the destination broke off the response ({err}), {}",
                            exchange.volume()
                        );
                        exchange.finish(Outcome::UpstreamGone, detail);
                    }
                    Poll::Ready(None) => {
                        exchange.finish(Outcome::Ok, format!("{status}, {}", exchange.volume()));
                    }
                    Poll::Pending => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Message(bytes) => bytes.is_none(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Message(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // A response that has no body (HEAD, 204, 304) is complete without being polled.
        if let Kind::Upstream {
            inner,
            exchange,
            status,
        } = &self.kind
            && inner.is_end_stream()
        {
            exchange.finish(Outcome::Ok, format!("{status}, {}", exchange.volume()));
        }
    }
}
