//! Serving a router on a TCP listener, plain or TLS, with bounds a client cannot stretch.
//!
//! Anyone who can reach the port can open connections before presenting any token. Without
//! bounds, connections that never finish their request head would be held forever, and
//! enough of them would use up the process's file descriptors — the agents' gateway and the
//! control plane alike. So a connection must send its request head within
//! [`Bounds::header_timeout`] (also the most a kept-alive connection may sit idle), and at
//! most [`Bounds::max_connections`] are served at once; one over is closed at once.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one listener allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to send a request head, and the most a kept-alive connection may sit idle.
    pub header_timeout: Duration,
    /// After shutdown, how long open connections may take to finish (zero: not waited for).
    pub drain: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(5),
        }
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` completes,
/// then lets the open connections finish, for [`Bounds::drain`] at most. Each request carries the peer's address
/// (`ConnectInfo`).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    bounds: Bounds,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(
        bounds.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only, plain or over TLS: its head timer runs from the connection's start.
    // (Guessing the protocol from the first bytes would wait for them without a time limit,
    // and an HTTP/2 connection can be held open without ever sending a request.)
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    // Out of file descriptors and the like: keep serving the others, and
                    // give the condition a moment to pass rather than spin on it.
                    tracing::warn!(%err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once: held in the backlog instead, it would still cost the kernel.
            tracing::warn!(
                max = bounds.max_connections,
                %peer,
                "too many connections; one closed"
            );
            drop(tcp);
            continue;
        };
        // Small answers and events go out at once (no Nagle delay).
        let _ = tcp.set_nodelay(true);
        // The peer's address for every request, and `Host` from `:authority` for HTTP/2
        // (the Host check reads one value either way).
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                if !req.headers().contains_key(axum::http::header::HOST)
                    && let Some(authority) = req.uri().authority()
                    && let Ok(host) = axum::http::HeaderValue::from_str(authority.as_str())
                {
                    req.headers_mut().insert(axum::http::header::HOST, host);
                }
                req
            },
        ));
        let http1 = http1.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let conn = http1.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                }
                None => {
                    let conn = http1.serve_connection(TokioIo::new(tcp), service);
                    let _ = watcher.watch(conn).await;
                }
            }
        });
    }
    drop(listener);
    if !bounds.drain.is_zero() {
        let _ = tokio::time::timeout(bounds.drain, graceful.shutdown()).await;
    }
}
