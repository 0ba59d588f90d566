//! The Streamable HTTP transport: `POST /mcp` carries one JSON-RPC message and gets one JSON
//! response back (never an event stream); `DELETE /mcp` ends a session.
//!
//! `initialize` opens a session and hands out its `Mcp-Session-Id`; every later message must
//! name a live session (400 without one, 404 for one that has ended). Notifications and
//! responses are accepted with 202. The tools are the stdio server's, with one difference:
//! without an event stream the server cannot reach the client during a call, so progress
//! notifications are dropped and a server-to-client request (`ask_roots`) fails as unsent.
//! `notifications/cancelled` works on the session that started the call, whose POST is then
//! answered 202 with no body (a cancelled request gets no response).
//!
//! This mode is the "direct over HTTP" baseline of Warden's gateway benchmark, so it stays
//! small: `echo` runs on the request's task; the tools that touch files or wait run on the
//! blocking pool so that they never stall the runtime. `--misbehave` is a stdio-only feature.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, HeaderName, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::SUPPORTED_PROTOCOL_VERSIONS;
use crate::confine::Root;
use crate::jsonrpc::{self, Incoming, codes};
use crate::server::{answer, called_tool, list_tools};
use crate::tools::{self, CallContext, CallOutcome, CancelToken, ClientPeer, ClientRequestError};

/// The path the endpoint is served at.
pub const MCP_PATH: &str = "/mcp";

const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// What the HTTP server serves.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The directory every file tool is confined to.
    pub root: Root,
    /// List tools this many at a time, with cursors (`None`: all at once).
    pub tools_page_size: Option<usize>,
}

/// Why the HTTP server stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpServeError {
    /// Accepting or serving connections failed.
    #[error("cannot serve HTTP: {source}")]
    Serve {
        /// The underlying failure.
        source: io::Error,
    },
}

/// Serves MCP at [`MCP_PATH`] on `listener` until `shutdown` completes, then lets the
/// requests in progress finish.
pub async fn serve_http(
    config: HttpConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpServeError> {
    let shared = Arc::new(Shared {
        root: config.root,
        page_size: config.tools_page_size,
        sessions: Mutex::new(HashMap::new()),
    });
    let router = Router::new()
        .route(MCP_PATH, post(post_message).delete(end_session))
        .with_state(shared);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| HttpServeError::Serve { source })
}

/// Everything the handlers share.
struct Shared {
    root: Root,
    page_size: Option<usize>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

/// One client's session: the calls it may still cancel, by request id.
#[derive(Default)]
struct Session {
    in_flight: Mutex<HashMap<String, CancelToken>>,
}

// === the handlers ===

async fn post_message(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = refuse_headers(&headers) {
        return refusal;
    }
    let message = match jsonrpc::parse_line(body.trim_ascii()) {
        Ok(message) => message,
        Err(bad) => {
            let error = jsonrpc::error(&bad.id(), bad.code(), &bad.to_string());
            return json_response(StatusCode::BAD_REQUEST, None, &error);
        }
    };
    if let Incoming::Request { id, method, params } = &message
        && method == "initialize"
    {
        return open_session(&shared, id, params.as_ref());
    }
    let session = match shared.session(&headers) {
        Ok(session) => session,
        Err((status, why)) => return plain(status, why),
    };
    match message {
        Incoming::Notification { method, params } => {
            session.notification(&method, params.as_ref());
            StatusCode::ACCEPTED.into_response()
        }
        // This server sends the client no requests over HTTP, so no response is awaited.
        Incoming::Response { .. } => StatusCode::ACCEPTED.into_response(),
        Incoming::Request { id, method, params } => match method.as_str() {
            "tools/call" => call_tool(&shared, &session, id, params.unwrap_or(Value::Null)).await,
            "tools/list" => json_response(
                StatusCode::OK,
                None,
                &list_tools(&id, params.as_ref(), shared.page_size),
            ),
            _ => json_response(StatusCode::OK, None, &answer(&id, &method, params.as_ref())),
        },
    }
}

async fn end_session(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refuse_headers(&headers) {
        return refusal;
    }
    let Some(id) = headers.get(SESSION_HEADER) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "the Mcp-Session-Id header is required",
        );
    };
    let ended = id.to_str().ok().and_then(|id| {
        shared
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
    });
    match ended {
        Some(session) => {
            session.cancel_all();
            StatusCode::OK.into_response()
        }
        None => plain(StatusCode::NOT_FOUND, "no such session"),
    }
}

fn open_session(shared: &Shared, id: &Value, params: Option<&Value>) -> Response {
    let mut raw = [0u8; 16];
    if getrandom::fill(&mut raw).is_err() {
        let error = jsonrpc::error(id, codes::INTERNAL_ERROR, "no randomness for a session id");
        return json_response(StatusCode::INTERNAL_SERVER_ERROR, None, &error);
    }
    let session_id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    shared
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(session_id.clone(), Arc::default());
    json_response(
        StatusCode::OK,
        Some(&session_id),
        &answer(id, "initialize", params),
    )
}

async fn call_tool(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    id: Value,
    params: Value,
) -> Response {
    let name = match called_tool(&id, &params) {
        Ok(name) => name,
        Err(refusal) => return json_response(StatusCode::OK, None, &refusal),
    };
    let key = jsonrpc::id_key(&id);
    let cancel = CancelToken::default();
    session.track(&key, &cancel);
    let outcome = if name == "echo" {
        // Pure computation, as quick as parsing: a hop to another thread would cost more.
        Ok(run_tool(&shared.root, &name, &params, &cancel))
    } else {
        let (shared, cancel) = (Arc::clone(shared), cancel.clone());
        tokio::task::spawn_blocking(move || run_tool(&shared.root, &name, &params, &cancel)).await
    };
    session.untrack(&key);
    match outcome {
        Ok(Some(CallOutcome::Finished(result))) if !cancel.is_cancelled() => json_response(
            StatusCode::OK,
            None,
            &jsonrpc::result(&id, result.to_json()),
        ),
        // A cancelled request gets no response, as the specification asks.
        Ok(Some(_)) => StatusCode::ACCEPTED.into_response(),
        Ok(None) => {
            let error = jsonrpc::error(&id, codes::INVALID_PARAMS, "unknown tool");
            json_response(StatusCode::OK, None, &error)
        }
        Err(_panicked) => {
            let error = jsonrpc::error(&id, codes::INTERNAL_ERROR, "the tool failed");
            json_response(StatusCode::INTERNAL_SERVER_ERROR, None, &error)
        }
    }
}

fn run_tool(root: &Root, name: &str, params: &Value, cancel: &CancelToken) -> Option<CallOutcome> {
    let ctx = CallContext {
        root,
        meta: params.get("_meta"),
        cancel,
        client: &NoStream,
    };
    tools::call(&ctx, name, params.get("arguments").unwrap_or(&Value::Null))
}

/// Refuses what a browser on another site could send (DNS rebinding: only local origins may
/// call a local server) and protocol versions this server does not speak.
fn refuse_headers(headers: &HeaderMap) -> Option<Response> {
    if let Some(origin) = headers.get(ORIGIN)
        && !origin.to_str().is_ok_and(is_local_origin)
    {
        return Some(plain(
            StatusCode::FORBIDDEN,
            "only local origins may call this server",
        ));
    }
    if let Some(version) = headers.get(VERSION_HEADER)
        && !version
            .to_str()
            .is_ok_and(|v| SUPPORTED_PROTOCOL_VERSIONS.contains(&v))
    {
        return Some(plain(
            StatusCode::BAD_REQUEST,
            "unsupported MCP-Protocol-Version",
        ));
    }
    None
}

/// Whether an `Origin` (`scheme://host[:port]`) names this machine.
fn is_local_origin(origin: &str) -> bool {
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

fn json_response(status: StatusCode, session: Option<&str>, message: &Value) -> Response {
    let mut response = (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        message.to_string(),
    )
        .into_response();
    // Session ids are hex, so they always make a valid header value.
    if let Some(value) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

// === impl Shared ===

impl Shared {
    /// The live session the request names, or the status and reason to refuse it with.
    fn session(&self, headers: &HeaderMap) -> Result<Arc<Session>, (StatusCode, &'static str)> {
        let Some(id) = headers.get(SESSION_HEADER) else {
            return Err((
                StatusCode::BAD_REQUEST,
                "the Mcp-Session-Id header is required after initialize",
            ));
        };
        id.to_str()
            .ok()
            .and_then(|id| {
                self.sessions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(id)
                    .cloned()
            })
            .ok_or((StatusCode::NOT_FOUND, "no such session"))
    }
}

// === impl Session ===

impl Session {
    fn notification(&self, method: &str, params: Option<&Value>) {
        if method != "notifications/cancelled" {
            return; // notifications/initialized and the rest need nothing from this server
        }
        let Some(id) = params.and_then(|p| p.get("requestId")) else {
            return;
        };
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(token) = in_flight.get(&jsonrpc::id_key(id)) {
            token.cancel();
        }
    }

    fn track(&self, key: &str, cancel: &CancelToken) {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned(), cancel.clone());
    }

    fn untrack(&self, key: &str) {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// The session ended: its calls stop waiting.
    fn cancel_all(&self) {
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for token in in_flight.values() {
            token.cancel();
        }
    }
}

/// The client as a call sees it over HTTP without an event stream: nothing can reach it
/// before the response.
struct NoStream;

impl ClientPeer for NoStream {
    fn progress(&self, _token: &Value, _progress: u64, _total: u64, _message: &str) {}

    fn request(&self, _method: &str, _params: Value) -> Result<Value, ClientRequestError> {
        Err(ClientRequestError::Unsent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_origins_are_local() {
        for local in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "http://[::1]:80",
        ] {
            assert!(is_local_origin(local), "{local}");
        }
        for foreign in [
            "null",
            "http://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example:80",
            "http://[::2]",
        ] {
            assert!(!is_local_origin(foreign), "{foreign}");
        }
    }
}
