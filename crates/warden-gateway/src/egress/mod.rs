//! The egress proxy: a contained agent's only way out to the network.
//!
//! The sandbox gives the agent a network namespace with no route anywhere and one listening
//! socket, this proxy's, speaking HTTP/1.1 forward proxy. One proxy serves one agent
//! session, so every request on it is that agent's: it never names itself.
//!
//! Each request passes, in order:
//! 1. **Read the destination** from the request line: `GET http://host[:port]/path` (absolute
//!    form) for plain HTTP, `CONNECT host:port` for a tunnel (TLS). A request in origin form
//!    (`GET /path`) names no host and is answered `400`. A host that is not a valid DNS name
//!    or canonical IP address (`0x7f.1`, `010.0.0.1`) is answered `400` and its refusal
//!    journaled.
//! 2. **Check a literal address** (`http://10.0.0.1/`) against the address rules below.
//! 3. **Decide** `http_request` on `Host::"name"` with context `{ port, method, path }` (the
//!    path and query for plain HTTP, empty for a tunnel), and journal the decision durably.
//!    The path is decided, journaled and forwarded in one normalized form (`path.rs`):
//!    `/data/%2e%2e/admin` is decided as `/admin`, and what servers read in different ways
//!    (`%2F`, a backslash, `;`, `%25`) is answered `400` and its refusal journaled.
//!    Anything but allow is answered `403` with the reason; `warden-decision` says `deny` or
//!    `ask` and `warden-journal-seq` names the decision record.
//! 4. **Resolve** the name, once, in Warden, and check every address it resolved to.
//! 5. **Connect** to the address that was checked, never to the name again, then forward
//!    the request (without hop-by-hop and `Proxy-*` headers, with `Host` set from the
//!    request line) and stream the response back; or answer `200` to `CONNECT` and copy
//!    bytes both ways until either side closes.
//! 6. **Journal the outcome**: `ok` with the status and byte counts, `upstream_gone` (`502`
//!    to the agent) when the destination cannot be reached or breaks off, `timeout` (`504`)
//!    when no connection is made within [`EgressOptions::connect_timeout`], `cancelled`
//!    when the agent leaves first.
//!
//! # Address rules, and why the decision is on the name
//!
//! Policy is written for names (`Host::"api.github.com"`), so the decision is on the name
//! the agent asked for. Names are not resolved before the decision, so a denied name never
//! reaches a DNS server (no exfiltration through lookups of refused names). After an allow,
//! Warden resolves the name itself and connects to the address it resolved and checked:
//! an agent that controls a name's DNS records cannot make it point at the host's own
//! services once allowed (DNS rebinding), because there is no second lookup.
//!
//! Whatever the policy says, the proxy never connects to a loopback, unspecified
//! (`0.0.0.0/8`, `::`), link-local (`169.254.0.0/16`, `fe80::/10`, where cloud metadata
//! services answer), multicast or broadcast address; a name that resolves to one such
//! address is refused entirely. [`EgressOptions::allow_loopback`] lifts the loopback rule
//! only (tests, local development). [`EgressOptions::protected`] (Warden's own ports) are
//! refused even then; a protected address with an unspecified IP protects its port on every
//! loopback and unspecified address. Such a refusal is journaled as a refusal with the
//! reason; when it happens after an allow (the name resolved inside the host), the allowed
//! decision's outcome is journaled `cancelled` too.
//!
//! # Bounds
//!
//! A request head is at most [`MAX_HEAD_BYTES`] (larger: `431`); a client has
//! [`EgressOptions::header_timeout`] to send each request head, idle keep-alive included,
//! or its connection is closed; at most [`EgressOptions::max_connections`] connections
//! (tunnels included) are open at once, and one more is answered `503` and closed. Bodies
//! are streamed both ways, never buffered whole.

mod address;
mod answer;
mod exchange;
mod forward;
pub mod path;
mod target;
mod tunnel;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::Instrument;
use warden_core::{ActionKind, Outcome};

use crate::guard::{Guard, forwards};
use address::{AddressRules, DialError};
pub use answer::{DECISION_HEADER, SEQ_HEADER};
use exchange::{Exchange, ProxyBody};
use target::{Destination, TargetError};

/// The largest request head (request line and headers) accepted, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How the egress proxy is bounded, and which addresses it never reaches.
#[derive(Debug, Clone)]
pub struct EgressOptions {
    /// Let agents reach loopback addresses (tests, local development). Default `false`.
    pub allow_loopback: bool,
    /// Addresses always refused, whatever the policy and flags: Warden's own ports.
    pub protected: Vec<SocketAddr>,
    /// Ports of Warden's listeners inside the agent's own network namespace (its MCP
    /// gateway, this proxy). A request through the proxy to one of them on loopback is a
    /// client that ignored `NO_PROXY`: it is answered `400` with where to connect instead,
    /// not forwarded and not treated as an attempt on Warden.
    pub own_ports: Vec<u16>,
    /// Time allowed to resolve a destination and connect to it. Default 10 s.
    pub connect_timeout: Duration,
    /// Time a client has to send a request head. Default 10 s.
    pub header_timeout: Duration,
    /// Client connections open at once, tunnels included. Default 256.
    pub max_connections: usize,
}

impl Default for EgressOptions {
    fn default() -> Self {
        Self {
            allow_loopback: false,
            protected: Vec::new(),
            own_ports: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// The forward proxy of one contained agent session.
pub struct EgressProxy {
    shared: Arc<Shared>,
    header_timeout: Duration,
    max_connections: usize,
}

/// What every connection of one proxy shares.
struct Shared {
    guard: Guard,
    rules: AddressRules,
    own_ports: Vec<u16>,
    connect_timeout: Duration,
    /// Flips to true when the proxy stops: open connections and tunnels then end.
    stopping: watch::Sender<bool>,
}

/// A connection slot; held by the connection and by a tunnel opened on it.
type Slot = Arc<OwnedSemaphorePermit>;

impl EgressProxy {
    /// A proxy deciding and journaling through `guard`.
    pub fn new(guard: Guard, options: EgressOptions) -> Self {
        let (stopping, _) = watch::channel(false);
        Self {
            shared: Arc::new(Shared {
                guard,
                rules: AddressRules {
                    allow_loopback: options.allow_loopback,
                    protected: options.protected,
                },
                own_ports: options.own_ports,
                connect_timeout: options.connect_timeout,
                stopping,
            }),
            header_timeout: options.header_timeout,
            // Within what a semaphore holds and `acquire_many` can wait for.
            max_connections: options
                .max_connections
                .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize)),
        }
    }

    /// Serves the agent's connections on `listener` until `shutdown` completes; then every
    /// open connection and tunnel is cut, and this returns once they have all ended.
    ///
    /// Returns an error only if the listener itself fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<()> {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_header_size(MAX_HEAD_BYTES);
        let mut shutdown = std::pin::pin!(shutdown);
        let result = loop {
            let stream = tokio::select! {
                () = &mut shutdown => break Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) if is_transient(&err) => {
                        tracing::warn!(%err, "egress proxy: accepting a connection failed");
                        // Out of descriptors: give the open connections a moment to close.
                        if is_exhaustion(&err) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        continue;
                    }
                    Err(err) => break Err(err),
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                refuse_busy(stream);
                continue;
            };
            let shared = self.shared.clone();
            let http = http.clone();
            tokio::spawn(serve_connection(shared, http, stream, Arc::new(slot)));
        };
        self.shared.stopping.send_replace(true);
        // Every connection and tunnel holds a slot until it has ended.
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        let _ = slots.acquire_many(all).await;
        result
    }
}

/// Errors after which the listener still works.
fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || is_exhaustion(err)
}

/// Out of file descriptors or socket memory (EMFILE, ENFILE, ENOBUFS, ENOMEM).
fn is_exhaustion(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(23 | 24 | 105 | 12))
}

/// Answers a connection over the limit with `503` and closes it, without reading from it
/// or spawning anything for it.
fn refuse_busy(stream: TcpStream) {
    use std::io::Write;
    // A fresh socket's send buffer is empty: this short write does not block.
    if let Ok(std_stream) = stream.into_std() {
        let _ = (&std_stream).write(answer::BUSY);
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    http: http1::Builder,
    stream: TcpStream,
    slot: Slot,
) {
    let mut stopping = shared.stopping.subscribe();
    let service = {
        let shared = shared.clone();
        service_fn(move |req| {
            let shared = shared.clone();
            let slot = slot.clone();
            async move { Ok::<_, Infallible>(handle(&shared, req, slot).await) }
        })
    };
    let connection = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        served = connection => {
            if let Err(err) = served {
                tracing::debug!(%err, "egress proxy: client connection ended with an error");
            }
        }
        _ = stopping.wait_for(|s| *s) => {}
    }
}

/// One request, timed and traced.
async fn handle(shared: &Shared, req: Request<Incoming>, slot: Slot) -> Response<ProxyBody> {
    let started = Instant::now();
    let span = tracing::info_span!(
        "egress",
        otel.name = "egress",
        otel.kind = "server",
        http.request.method = req.method().as_str(),
        http.response.status_code = tracing::field::Empty,
    );
    let response = handle_request(shared, req, slot)
        .instrument(span.clone())
        .await;
    span.record("http.response.status_code", response.status().as_u16());
    // Until the answer starts: a body or a tunnel streamed afterwards is not Warden's time.
    crate::metrics::gateway_request("egress", started.elapsed());
    response
}

/// One request, from its request line to the answer.
async fn handle_request(
    shared: &Shared,
    mut req: Request<Incoming>,
    slot: Slot,
) -> Response<ProxyBody> {
    let guard = &shared.guard;
    let dest = match Destination::from_request(&req) {
        Ok(dest) => dest,
        Err(err) => return malformed(guard, err).await,
    };

    let loopback_name =
        dest.host.as_str() == "localhost" || dest.host.ip().is_some_and(|ip| ip.is_loopback());
    if loopback_name && shared.own_ports.contains(&dest.port) {
        return answer::bad_request(format!(
            "{} is a Warden listener inside this sandbox (its MCP gateway or this proxy): \
             connect to it directly, not through the proxy (NO_PROXY lists 127.0.0.1 and \
             localhost)",
            dest.shown
        ));
    }

    // A literal address is judged before any policy: no decision is needed to refuse it.
    if let Some(ip) = dest.host.ip()
        && let Err(why) = shared.rules.check(SocketAddr::new(ip, dest.port))
    {
        let verdict = guard
            .refuse(
                ActionKind::HttpRequest,
                dest.host.to_string(),
                &dest.arguments(),
                &why,
            )
            .await;
        return answer::refused(&dest.shown, &verdict);
    }

    let verdict = guard.check(&dest.action()).await;
    let Some(seq) = verdict.seq.filter(|_| forwards(&verdict)) else {
        return answer::refused(&dest.shown, &verdict);
    };
    let exchange = Exchange::new(guard.clone(), seq);

    let upstream = match shared
        .rules
        .dial(&dest.host, dest.port, shared.connect_timeout)
        .await
    {
        Ok((stream, _)) => stream,
        Err(DialError::Refused(why)) => {
            let refusal = guard
                .refuse(
                    ActionKind::HttpRequest,
                    dest.host.to_string(),
                    &dest.arguments(),
                    &why,
                )
                .await;
            let after = refusal
                .seq
                .map_or_else(String::new, |s| format!(" (refusal record {s})"));
            exchange.finish(
                Outcome::Cancelled,
                format!("refused after resolution: {why}{after}"),
            );
            return answer::refused(&dest.shown, &refusal);
        }
        Err(err @ DialError::TimedOut { .. }) => {
            let why = err.to_string();
            exchange.finish(Outcome::Timeout, why.clone());
            return answer::timed_out(&dest.shown, &why);
        }
        Err(err) => {
            let why = err.to_string();
            exchange.finish(Outcome::UpstreamGone, why.clone());
            return answer::unreachable(&dest.shown, &why);
        }
    };

    if dest.is_tunnel() {
        let on_upgrade = hyper::upgrade::on(&mut req);
        let stopping = shared.stopping.subscribe();
        tunnel::spawn(on_upgrade, upstream, exchange, stopping, slot);
        let mut ok = Response::new(ProxyBody::message(""));
        *ok.status_mut() = StatusCode::OK;
        return ok;
    }
    forward::forward(req, upstream, &dest, exchange).await
}

/// The answer to a request that names no destination Warden can decide; a malformed host
/// is an attempt on record.
async fn malformed(guard: &Guard, err: TargetError) -> Response<ProxyBody> {
    match err.arguments() {
        Some((raw, args)) => {
            let verdict = guard
                .refuse(ActionKind::HttpRequest, raw, &args, &err.to_string())
                .await;
            answer::bad_host(err.to_string(), &verdict)
        }
        None => answer::bad_request(err.to_string()),
    }
}
