//! The Streamable HTTP side: one keep-alive connection pool for the whole run, sessions opened
//! with `initialize`, requests POSTed with the session's id, responses read as JSON or as an
//! event stream, sessions ended with `DELETE`.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::error::{LoadError, ResponseError};
use crate::response::{SseParser, find_in_events, find_in_json, outcome};
use crate::{CLIENT_NAME, PROTOCOL_VERSION};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
/// How much of an error body a report quotes.
const QUOTED_BODY: usize = 300;
/// The most a JSON response body may hold; the tool results measured here are small.
const MAX_JSON_BODY: usize = 16 * 1024 * 1024;

/// A Streamable HTTP MCP endpoint and the pooled client that talks to it. Cheap to clone:
/// clones share the pool.
#[derive(Clone, Debug)]
pub struct HttpEndpoint {
    // Shared: every session holds the endpoint, and there may be tens of thousands.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    authorization: Option<HeaderValue>,
}

impl HttpEndpoint {
    /// An endpoint at `url` (plain `http://` only), presenting `token` as a bearer token if
    /// given. Connections are opened on demand and kept alive for reuse.
    pub fn new(url: &str, token: Option<&str>) -> Result<Self, LoadError> {
        let bad = |why: &str| LoadError::BadUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad("https is not supported; use a plain-HTTP endpoint")),
            _ => return Err(bad("expected http://HOST:PORT/PATH")),
        }
        if uri.authority().is_none() {
            return Err(bad("no host"));
        }
        let authorization = token
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
            .transpose()
            .map_err(|_| LoadError::Usage("the token has characters a header cannot carry".into()))?
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        let mut connector = HttpConnector::new();
        // Small requests and responses: Nagle's algorithm would only add delay.
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(None)
            .build(connector);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                uri,
                authorization,
            }),
        })
    }

    /// Opens a session: `initialize`, then `notifications/initialized`.
    pub async fn initialize(&self) -> Result<HttpSession, LoadError> {
        let body = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": CLIENT_NAME, "version": env!("CARGO_PKG_VERSION")},
            },
        });
        let request = self.post(None, body.to_string())?;
        let (headers, message) = self.exchange(request, Some(0)).await?;
        let message = message.ok_or(ResponseError::NoMatchingId(0))?;
        let result = outcome(message, false)?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok())
            .unwrap_or(HeaderValue::from_static(PROTOCOL_VERSION));
        let session = HttpSession {
            endpoint: self.clone(),
            id: headers.get(SESSION_HEADER).cloned(),
            version,
            next_id: 1,
        };
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let request = self.post(Some(&session), note.to_owned())?;
        self.exchange(request, None).await?;
        Ok(session)
    }

    fn request(
        &self,
        method: Method,
        session: Option<&HttpSession>,
    ) -> hyper::http::request::Builder {
        let mut builder = Request::builder()
            .method(method)
            .uri(self.inner.uri.clone())
            .header(ACCEPT, "application/json, text/event-stream");
        if let Some(auth) = &self.inner.authorization {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        if let Some(session) = session {
            if let Some(id) = &session.id {
                builder = builder.header(SESSION_HEADER, id.clone());
            }
            builder = builder.header(VERSION_HEADER, session.version.clone());
        }
        builder
    }

    fn post(
        &self,
        session: Option<&HttpSession>,
        body: String,
    ) -> Result<Request<Full<Bytes>>, LoadError> {
        self.request(Method::POST, session)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| LoadError::Usage(format!("cannot build the request: {e}")))
    }

    /// Sends `request`; for a request with `id`, returns the response headers and the
    /// JSON-RPC message answering it.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        id: Option<u64>,
    ) -> Result<(HeaderMap, Option<Value>), LoadError> {
        let response = self
            .inner
            .client
            .request(request)
            .await
            .map_err(|e| LoadError::Transport(error_chain(&e)))?;
        let (parts, body) = response.into_parts();
        if !parts.status.is_success() {
            return Err(LoadError::Status {
                status: parts.status.as_u16(),
                body: quote(body).await,
            });
        }
        let Some(id) = id else {
            drain(body).await;
            return Ok((parts.headers, None));
        };
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let message = if content_type.starts_with("text/event-stream") {
            read_event_stream(body, id).await?
        } else if content_type.starts_with("application/json") {
            let bytes = Limited::new(body, MAX_JSON_BODY)
                .collect()
                .await
                .map_err(|e| LoadError::Transport(format!("reading the body: {e}")))?
                .to_bytes();
            find_in_json(&bytes, id)?
        } else {
            return Err(ResponseError::ContentType(content_type).into());
        };
        Ok((parts.headers, Some(message)))
    }
}

/// One MCP session over HTTP. Requests on one session are sent one at a time (`&mut self`),
/// which is how a load generator's lane uses it.
#[derive(Debug)]
pub struct HttpSession {
    endpoint: HttpEndpoint,
    /// `None` for a stateless server, which names no session.
    id: Option<HeaderValue>,
    version: HeaderValue,
    next_id: u64,
}

impl HttpSession {
    /// Whether the server named this session (stateless servers do not).
    pub fn has_id(&self) -> bool {
        self.id.is_some()
    }

    /// Sends one request whose `params` are the given JSON text; returns the `result`.
    pub async fn request(&mut self, method: &str, params_json: &str) -> Result<Value, LoadError> {
        let id = self.next_id;
        self.next_id += 1;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":{},"params":{params_json}}}"#,
            Value::from(method)
        );
        let request = self.endpoint.post(Some(self), body)?;
        let (_, message) = self.endpoint.exchange(request, Some(id)).await?;
        let message = message.ok_or(ResponseError::NoMatchingId(id))?;
        outcome(message, method == "tools/call")
    }

    /// Ends the session with `DELETE`.
    pub async fn close(self) -> Result<(), LoadError> {
        let request = self
            .endpoint
            .request(Method::DELETE, Some(&self))
            .body(Full::new(Bytes::new()))
            .map_err(|e| LoadError::Usage(format!("cannot build the request: {e}")))?;
        self.endpoint.exchange(request, None).await.map(|_| ())
    }
}

/// Reads events until the one answering `id`. The rest of the stream is drained in the
/// background, so the connection goes back to the pool when the server closes the stream
/// (as it should right after the response) without the caller waiting for that.
async fn read_event_stream(mut body: Incoming, id: u64) -> Result<Value, LoadError> {
    let mut parser = SseParser::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| LoadError::Transport(format!("reading events: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if let Some(message) = find_in_events(&parser.push(&data), id)? {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(30), drain(body)).await;
            });
            return Ok(message);
        }
    }
    Err(ResponseError::NoMatchingId(id).into())
}

async fn drain(mut body: Incoming) {
    while let Some(Ok(_)) = body.frame().await {}
}

async fn quote(body: Incoming) -> String {
    match Limited::new(body, 64 * 1024).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            String::from_utf8_lossy(&bytes)
                .chars()
                .take(QUOTED_BODY)
                .collect()
        }
        Err(e) => format!("(body unreadable: {e})"),
    }
}

/// hyper's errors say little at the top ("client error (Connect)"); the cause is below.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
