//! MCP over Streamable HTTP: the endpoint agents reach Warden at in a long-running deployment.
//!
//! One path, `/mcp`. `POST` carries one JSON-RPC message; a request is answered with JSON, or
//! with an SSE stream when it asked for progress and the client accepts streams. `GET` opens
//! the stream of Warden's own notifications (list changes, resource updates). `DELETE` ends
//! the session.
//!
//! Every request passes, in order: the Host/Origin check (DNS rebinding), the bearer token
//! (which names the agent; an agent never names itself), the body bounds (size and time),
//! and the session check: `Mcp-Session-Id` values are Warden's own random ids, bound to the
//! agent that opened them, so another agent presenting one is refused exactly like a forged
//! id. Refusals of the first and second kind, and cross-agent session use, are journaled.

pub mod access;
pub mod serve;
mod sessions;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::stream::{self, Stream};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::Instrument;
use warden_core::{AgentId, EventBody, SessionId};

use crate::identity::{AuthError, Authenticator, UNAUTHENTICATED};
use crate::mcp::hub::{
    Hub, HubSession, MAX_STREAMS_PER_AGENT, MAX_STREAMS_PER_SESSION, StreamSlot,
};
use crate::mcp::jsonrpc::{self, Message, code, has_duplicate_keys};
use crate::mcp::session::KNOWN_PROTOCOL_VERSIONS;
use access::{AllowedPeers, bearer};
pub use sessions::SessionLimits;
use sessions::{Lookup, SessionTable, TokenPrint};

/// The header carrying the session id.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The header carrying the negotiated protocol version.
pub const VERSION_HEADER: &str = "mcp-protocol-version";

/// Bounds of the HTTP endpoint.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request body.
    pub body_timeout: Duration,
    /// Sessions per agent and in all.
    pub sessions: SessionLimits,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            body_timeout: Duration::from_secs(10),
            sessions: SessionLimits::default(),
        }
    }
}

/// The shared state of the endpoint.
pub struct HttpGateway {
    hub: Arc<Hub>,
    /// Flips to true when Warden stops: every open event stream then ends.
    stopping: tokio::sync::watch::Sender<bool>,
    auth: Authenticator,
    peers: AllowedPeers,
    sessions: SessionTable,
    options: HttpOptions,
    /// Refused requests journaled this second, and those over the bound, per agent named
    /// (`unauthenticated` for those that name none).
    refusals: std::sync::Mutex<HashMap<AgentId, RefusalWindow>>,
}

/// Refused requests journaled one by one per second, at most, for each agent they name (a
/// revoked token, another agent's session) and for those that name none (no token, an unknown
/// one, a Host or Origin refused). Anyone can cause the latter, and a quarantined agent (its
/// token revoked) the former: one record each, without a bound, would fill the disk, and a
/// full journal stops every agent. Those over the bound are counted, and the count journaled
/// as one record with the next journaled refusal, at the next sweep, or when Warden stops;
/// one agent's flood never hides another's refusals.
pub const MAX_REFUSALS_JOURNALED_PER_SECOND: u32 = 50;

#[derive(Debug, Default)]
struct RefusalWindow {
    second: i64,
    journaled: u32,
    unjournaled: u64,
    /// When the first of `unjournaled` came.
    unjournaled_since_ms: i64,
}

impl HttpGateway {
    /// An endpoint serving `hub` to the agents `auth` knows.
    pub fn new(
        hub: Arc<Hub>,
        auth: Authenticator,
        peers: AllowedPeers,
        options: HttpOptions,
    ) -> Arc<Self> {
        Arc::new(Self {
            sessions: SessionTable::new(options.sessions.clone()),
            stopping: tokio::sync::watch::channel(false).0,
            hub,
            auth,
            peers,
            options,
            refusals: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The router, to be served with `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/mcp",
                post(handle_post).get(handle_get).delete(handle_delete),
            )
            .with_state(self.clone())
    }

    /// Ends every open event stream, so that a graceful shutdown does not wait on clients
    /// that never hang up. Resolves [`HttpGateway::stopped`].
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once [`HttpGateway::begin_shutdown`] was called.
    pub async fn stopped(&self) {
        let mut rx = self.stopping.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// Closes every session, journaling each end.
    pub async fn close_all(&self, detail: &str) {
        for session in self.sessions.drain() {
            session.close(detail).await;
        }
        self.journal_refusal_count().await;
    }

    /// Closes sessions idle for longer than the configured limit, and sessions opened with a
    /// token revoked or rotated since (those also end at their next request; this ends the
    /// ones nobody uses any more, so the fleet view does not show them open).
    pub async fn expire_idle(&self) {
        self.journal_refusal_count().await;
        for session in self.sessions.take_idle() {
            session.close("the session was idle for too long").await;
        }
        let withdrawn = self.auth.withdrawn(&self.sessions.token_prints());
        for session in self.sessions.take_opened_with(&withdrawn) {
            session
                .close("the token it was opened with was rotated or revoked")
                .await;
        }
    }

    /// The number of open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Journals a refused request and builds its response.
    async fn refuse(
        &self,
        status: StatusCode,
        agent: Option<&AgentId>,
        remote: SocketAddr,
        reason: String,
    ) -> Response {
        let now = crate::guard::now_ms();
        let agent = agent
            .cloned()
            .or_else(|| AgentId::new(UNAUTHENTICATED).ok());
        let journal_it = agent.as_ref().is_some_and(|agent| {
            let mut windows = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            let window = windows.entry(agent.clone()).or_default();
            if window.second != now / 1000 {
                window.second = now / 1000;
                window.journaled = 0;
            }
            let journal_it = window.journaled < MAX_REFUSALS_JOURNALED_PER_SECOND;
            if journal_it {
                window.journaled += 1;
            } else {
                if window.unjournaled == 0 {
                    window.unjournaled_since_ms = now;
                }
                window.unjournaled += 1;
            }
            journal_it
        });
        if journal_it {
            self.journal_refusal_count().await;
        }
        if journal_it && let Some(agent) = agent {
            let event = warden_core::Event {
                time_ms: now,
                agent,
                session: SessionId::from_raw("-"),
                body: EventBody::AccessRefused {
                    reason: reason.clone(),
                    remote: remote.to_string(),
                },
            };
            if let Err(err) = self.hub.journal().append(&event).await {
                tracing::error!(%err, "could not journal a refused request");
            }
        }
        let mut response = error_response(status, None, code::INVALID_REQUEST, &reason);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"warden\""),
            );
        }
        response
    }

    /// Journals how many refusals went unjournaled over the bound, if any did.
    async fn journal_refusal_count(&self) {
        let counts: Vec<(AgentId, u64, i64)> = {
            let mut windows = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            windows
                .iter_mut()
                .filter(|(_, w)| w.unjournaled > 0)
                .map(|(agent, w)| {
                    let count = std::mem::take(&mut w.unjournaled);
                    (
                        agent.clone(),
                        count,
                        std::mem::take(&mut w.unjournaled_since_ms),
                    )
                })
                .collect()
        };
        for (agent, count, since_ms) in counts {
            let summary = warden_core::Event {
                time_ms: crate::guard::now_ms(),
                agent,
                session: SessionId::from_raw("-"),
                body: EventBody::AccessRefused {
                    reason: format!(
                        "{count} more requests refused since {since_ms} (ms since the epoch), \
                         over {MAX_REFUSALS_JOURNALED_PER_SECOND} a second: counted, not \
                         journaled one by one"
                    ),
                    remote: "(many)".to_owned(),
                },
            };
            if let Err(err) = self.hub.journal().append(&summary).await {
                tracing::error!(%err, "could not journal a count of refused requests");
            }
        }
    }

    /// The Host/Origin check and the token: the agent, or the response refusing the request.
    /// The agent, and a fingerprint of the token it presented (sessions are bound to it, so
    /// that rotating or revoking a token ends the sessions opened with it).
    async fn admit(
        &self,
        headers: &HeaderMap,
        remote: SocketAddr,
    ) -> Result<(AgentId, TokenPrint), Response> {
        if let Err(err) = self.peers.check(headers) {
            return Err(self
                .refuse(StatusCode::FORBIDDEN, None, remote, err.to_string())
                .await);
        }
        let result = match bearer(headers) {
            None => Err(AuthError::Missing),
            Some(token) => self.auth.authenticate(token),
        };
        match result {
            Ok(agent) => {
                let token = bearer(headers).unwrap_or_default();
                Ok((agent, Sha256::digest(token.as_bytes()).into()))
            }
            Err(err) => {
                let agent = match &err {
                    AuthError::Revoked(agent) => Some(agent.clone()),
                    _ => None,
                };
                Err(self
                    .refuse(
                        StatusCode::UNAUTHORIZED,
                        agent.as_ref(),
                        remote,
                        err.to_string(),
                    )
                    .await)
            }
        }
    }

    /// The caller's session named by the request, once the caller is admitted.
    async fn admitted_session(
        &self,
        headers: &HeaderMap,
        remote: SocketAddr,
    ) -> Result<Arc<HubSession>, Response> {
        let (agent, token) = self.admit(headers, remote).await?;
        self.session_of(&agent, &token, headers, remote).await
    }

    /// The session named by the request, if it belongs to `agent`.
    async fn session_of(
        &self,
        agent: &AgentId,
        token: &TokenPrint,
        headers: &HeaderMap,
        remote: SocketAddr,
    ) -> Result<Arc<HubSession>, Response> {
        let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                None,
                code::INVALID_REQUEST,
                "missing Mcp-Session-Id header: send initialize first",
            ));
        };
        match self.sessions.lookup(id, agent, token) {
            Lookup::Found(session) => Ok(session),
            Lookup::TokenChanged(session) => {
                // Opened with a token that was rotated or revoked since: that ends it (unless
                // the sweep ended it meanwhile).
                if self.sessions.remove(session.id().as_str()).is_some() {
                    session
                        .close("the token it was opened with was rotated or revoked")
                        .await;
                }
                Err(error_response(
                    StatusCode::NOT_FOUND,
                    None,
                    code::INVALID_REQUEST,
                    "this session ended when the agent's token changed: send initialize again",
                ))
            }
            Lookup::Unknown => Err(error_response(
                StatusCode::NOT_FOUND,
                None,
                code::INVALID_REQUEST,
                "unknown or expired session: send initialize again",
            )),
            Lookup::OtherAgent => {
                // Answered exactly like an unknown id, so a session's existence is not revealed.
                let reason = "a session id of another agent was presented".to_owned();
                let _ = self
                    .refuse(StatusCode::NOT_FOUND, Some(agent), remote, reason)
                    .await;
                Err(error_response(
                    StatusCode::NOT_FOUND,
                    None,
                    code::INVALID_REQUEST,
                    "unknown or expired session: send initialize again",
                ))
            }
        }
    }

    async fn read_body(&self, body: Body) -> Result<Bytes, Response> {
        let max = self.options.max_body_bytes;
        let limited = Limited::new(body, max);
        match tokio::time::timeout(self.options.body_timeout, limited.collect()).await {
            Err(_) => Err(error_response(
                StatusCode::REQUEST_TIMEOUT,
                None,
                code::INVALID_REQUEST,
                &format!(
                    "the request body did not arrive within {:?}",
                    self.options.body_timeout
                ),
            )),
            Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
                Err(error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    None,
                    code::TOO_LARGE,
                    &format!("the request body exceeds Warden's limit of {max} bytes"),
                ))
            }
            Ok(Err(err)) => Err(error_response(
                StatusCode::BAD_REQUEST,
                None,
                code::INVALID_REQUEST,
                &format!("the request body could not be read: {err}"),
            )),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }
    }
}

async fn handle_post(
    State(gw): State<Arc<HttpGateway>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!(
        "mcp_http",
        otel.name = "POST /mcp",
        otel.kind = "server",
        rpc.method = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let response = post_message(gw, remote, headers, body)
        .instrument(span.clone())
        .await;
    span.record("http.response.status_code", response.status().as_u16());
    // Until the answer starts: a streamed answer's events are not Warden's time.
    crate::metrics::gateway_request("mcp_http", started.elapsed());
    response
}

async fn post_message(
    gw: Arc<HttpGateway>,
    remote: SocketAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (agent, token) = match gw.admit(&headers, remote).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let json_body = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json_body {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            code::INVALID_REQUEST,
            "the request body must be application/json",
        );
    }
    let bytes = match gw.read_body(body).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(err) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                None,
                code::PARSE_ERROR,
                &format!("the body is not valid JSON: {err}"),
            );
        }
    };
    if has_duplicate_keys(&bytes) {
        return error_response(
            StatusCode::BAD_REQUEST,
            value.get("id"),
            code::INVALID_REQUEST,
            "a JSON object in the message repeats a key; Warden refuses ambiguous messages",
        );
    }
    if value.is_array() {
        return error_response(
            StatusCode::BAD_REQUEST,
            None,
            code::INVALID_REQUEST,
            "JSON-RPC batches are not accepted; send one message per request",
        );
    }
    let message = match jsonrpc::classify(&value) {
        Ok(m) => m,
        Err(err) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                err.id.as_ref(),
                code::INVALID_REQUEST,
                &err.why,
            );
        }
    };
    if let Message::Request { method, .. } | Message::Notification { method } = &message
        && method.len() <= 128
    {
        tracing::Span::current().record("rpc.method", method.as_str());
    }
    let params = value.get("params").cloned().unwrap_or(Value::Null);
    match message {
        Message::Request { id, method, .. } if method == "initialize" => {
            if headers.contains_key(SESSION_HEADER) {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    Some(&id),
                    code::INVALID_REQUEST,
                    "initialize opens a new session: send it without Mcp-Session-Id",
                );
            }
            initialize(&gw, agent, token, id, params).await
        }
        Message::Request { id, method, .. } => {
            let session = match gw.session_of(&agent, &token, &headers, remote).await {
                Ok(s) => s,
                Err(response) => return response,
            };
            if let Some(response) = version_mismatch(&headers, &session) {
                return response;
            }
            if may_relate(&method) && accepts(&headers, "text/event-stream") {
                return answer_adaptively(session, id, method, params).await;
            }
            let response = session.request(&id, &method, params, None).await;
            json_response(StatusCode::OK, &response)
        }
        Message::Notification { method } => {
            let session = match gw.session_of(&agent, &token, &headers, remote).await {
                Ok(s) => s,
                Err(response) => return response,
            };
            session.notification(&method, &params);
            StatusCode::ACCEPTED.into_response()
        }
        Message::Response { .. } => {
            // The agent's answer to a request Warden relayed from an upstream.
            match gw.session_of(&agent, &token, &headers, remote).await {
                Ok(session) => {
                    session.response(&value);
                    StatusCode::ACCEPTED.into_response()
                }
                Err(response) => response,
            }
        }
    }
}

async fn initialize(
    gw: &Arc<HttpGateway>,
    agent: AgentId,
    token: TokenPrint,
    id: Value,
    params: Value,
) -> Response {
    let reservation = match gw.sessions.reserve(&agent) {
        Ok(r) => r,
        Err(why) => {
            let status = if why == sessions::STOPPING {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            return error_response(status, Some(&id), code::OVERLOADED, &why);
        }
    };
    let mut raw = [0u8; 16];
    if getrandom::fill(&mut raw).is_err() {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(&id),
            code::INTERNAL_ERROR,
            "no randomness for a session id",
        );
    }
    let session_id = SessionId::from_random(raw);
    let session = match gw.hub.open_session(agent, session_id.clone()).await {
        Ok(s) => s,
        Err(err) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&id),
                code::INTERNAL_ERROR,
                &format!(
                    "the journal could not record the session ({err}); Warden refuses what it cannot record"
                ),
            );
        }
    };
    let response = session.request(&id, "initialize", params, None).await;
    if let Err(session) = gw.sessions.insert(reservation, session, token) {
        session.close("Warden shut down").await;
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&id),
            code::OVERLOADED,
            sessions::STOPPING,
        );
    }
    let mut http = json_response(StatusCode::OK, &response);
    if let Ok(value) = HeaderValue::from_str(session_id.as_str()) {
        http.headers_mut().insert(SESSION_HEADER, value);
    }
    http
}

/// The refusal of a request whose MCP-Protocol-Version Warden does not speak, if so. (A
/// known version other than the negotiated one is accepted, as clients in the field send
/// them; Warden governs every version it knows identically.)
fn version_mismatch(headers: &HeaderMap, session: &HubSession) -> Option<Response> {
    let asked = headers.get(VERSION_HEADER)?;
    let asked = asked.to_str().unwrap_or("");
    if KNOWN_PROTOCOL_VERSIONS.contains(&asked) {
        return None;
    }
    Some(error_response(
        StatusCode::BAD_REQUEST,
        None,
        code::INVALID_REQUEST,
        &format!(
            "MCP-Protocol-Version {:?} is not one Warden speaks ({}); this session negotiated {}",
            asked,
            KNOWN_PROTOCOL_VERSIONS.join(", "),
            session.protocol_version().as_deref().unwrap_or("none")
        ),
    ))
}

/// Whether an upstream may send messages in the course of this request (progress, logs, its
/// own requests), which only a stream can carry.
fn may_relate(method: &str) -> bool {
    matches!(
        method,
        "tools/call" | "prompts/get" | "resources/read" | "completion/complete"
    )
}

/// Answers with plain JSON when the response comes first, or with an SSE stream — the
/// messages the upstream sent in the request's course, then the response — when something
/// else does.
async fn answer_adaptively(
    session: Arc<HubSession>,
    id: Value,
    method: String,
    params: Value,
) -> Response {
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let related = tx.clone();
    // Within the request's span, so the decision's trace hangs under it.
    tokio::spawn(
        async move {
            let response = session.request(&id, &method, params, Some(related)).await;
            let _ = tx.send(response);
        }
        .in_current_span(),
    );
    let Some(first) = rx.recv().await else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            code::INTERNAL_ERROR,
            "the request ended without an answer",
        );
    };
    if is_response(&first) {
        return json_response(StatusCode::OK, &first);
    }
    // The stream ends after the response.
    let events = stream::unfold((Some(first), Some(rx)), |(first, rx)| async move {
        let mut rx = rx?;
        let message = match first {
            Some(m) => m,
            None => rx.recv().await?,
        };
        let done = is_response(&message);
        let event = SseEvent::default().data(message.to_string());
        Some((Ok::<_, Infallible>(event), (None, (!done).then_some(rx))))
    });
    Sse::new(events).into_response()
}

/// A response (an id and no method), as opposed to a notification or a request.
fn is_response(message: &Value) -> bool {
    message.get("id").is_some() && message.get("method").is_none()
}

async fn handle_get(
    State(gw): State<Arc<HttpGateway>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let session = match gw.admitted_session(&headers, remote).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    if !accepts(&headers, "text/event-stream") {
        return error_response(
            StatusCode::NOT_ACCEPTABLE,
            None,
            code::INVALID_REQUEST,
            "GET /mcp opens an event stream: send Accept: text/event-stream",
        );
    }
    let Some(slot) = session.open_stream() else {
        return error_response(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            code::INVALID_REQUEST,
            &format!(
                "a session holds at most {MAX_STREAMS_PER_SESSION} event streams (GET /mcp) at \
                 once, and an agent {MAX_STREAMS_PER_AGENT} across its sessions; close one first"
            ),
        );
    };
    Sse::new(notices(gw.hub.clone(), slot, gw.stopping.subscribe()))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// What the session's agent should hear of its upstreams' notifications.
fn notices(
    hub: Arc<Hub>,
    slot: StreamSlot,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let session = slot.session().clone();
    let ended = session.ended();
    let (tx, rx) = mpsc::channel::<Value>(64);
    for upstream in hub.upstreams() {
        let mut notices = upstream.notices();
        let server = upstream.name().clone();
        let session = session.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    notice = notices.recv() => match notice {
                        Ok(notice) => {
                            if let Some(message) = session.translate_notice(&server, &notice)
                                && tx.send(message).await.is_err()
                            {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    }
                }
            }
        });
    }
    // The slot lives as long as the stream: dropping the stream gives it back.
    stream::unfold(
        (rx, stopping, ended, slot),
        |(mut rx, mut stopping, mut ended, slot)| async move {
            let message = tokio::select! {
                message = rx.recv() => message?,
                _ = stopping.wait_for(|s| *s) => return None,
                _ = ended.wait_for(|e| *e) => return None,
            };
            Some((
                Ok(SseEvent::default().data(message.to_string())),
                (rx, stopping, ended, slot),
            ))
        },
    )
}

async fn handle_delete(
    State(gw): State<Arc<HttpGateway>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let session = match gw.admitted_session(&headers, remote).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    if let Some(session) = gw.sessions.remove(session.id().as_str()) {
        session.close("the agent ended the session").await;
    }
    StatusCode::NO_CONTENT.into_response()
}

fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.split(';').next().unwrap_or("").trim();
            t.eq_ignore_ascii_case(media) || t == "*/*"
        })
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        value.to_string(),
    )
        .into_response()
}

fn error_response(status: StatusCode, id: Option<&Value>, code: i64, message: &str) -> Response {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": { "code": code, "message": message },
    });
    json_response(status, &body)
}
