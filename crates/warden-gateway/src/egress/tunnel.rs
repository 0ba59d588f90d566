//! `CONNECT`: once allowed and connected, the agent's bytes and the destination's are copied
//! both ways, unread (TLS stays end to end), until either side closes or the proxy stops.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use warden_core::Outcome;

use super::exchange::Exchange;

/// Copies bytes between the agent's upgraded connection and `upstream` until one side ends.
/// `hold` is kept for the tunnel's life (the connection slot it occupies).
pub(super) fn spawn<H: Send + 'static>(
    on_upgrade: OnUpgrade,
    upstream: TcpStream,
    exchange: Arc<Exchange>,
    mut stopping: watch::Receiver<bool>,
    hold: H,
) {
    tokio::spawn(async move {
        let _hold = hold;
        let agent = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                let detail = format!("the agent left before the tunnel opened: {err}");
                exchange.finish(Outcome::Cancelled, detail);
                return;
            }
        };
        let mut agent = Counted {
            inner: TokioIo::new(agent),
            exchange: exchange.clone(),
            is_agent: true,
        };
        let mut upstream = Counted {
            inner: upstream,
            exchange: exchange.clone(),
            is_agent: false,
        };
        let copied = tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut agent, &mut upstream) => copied,
            _ = stopping.wait_for(|s| *s) => {
                let detail = format!("tunnel cut when the proxy stopped, {}", exchange.volume());
                exchange.finish(Outcome::Cancelled, detail);
                return;
            }
        };
        match copied {
            Ok(_) => exchange.finish(Outcome::Ok, format!("tunnel closed, {}", exchange.volume())),
            Err(err) => exchange.finish(
                Outcome::UpstreamGone,
                format!("tunnel broken ({err}), {}", exchange.volume()),
            ),
        }
    });
}

/// One end of a tunnel, counting what is read from it: bytes read from the agent go out,
/// bytes read from the destination come in.
struct Counted<S> {
    inner: S,
    exchange: Arc<Exchange>,
    is_agent: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            if self.is_agent {
                self.exchange.add_out(n);
            } else {
                self.exchange.add_in(n);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
