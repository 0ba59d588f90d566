//! A relay that does nothing but relay: Streamable HTTP in front, the MCP server behind it over
//! stdio or Streamable HTTP. It authenticates no one, decides nothing and records nothing.
//!
//! It stands where a gateway stands in a benchmark, so that what a gateway adds can be split
//! into what any extra hop costs on the machine (one more HTTP exchange, one more process
//! woken per call) and what the gateway does on that hop. Over HTTP it copies bodies as they
//! come, in both directions; over stdio it answers `initialize` with the server's own answer
//! (one server, initialized once, serves every session) and matches each request to its
//! response by id, the least a stdio relay can do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::error::LoadError;
use crate::stdio::StdioServer;
use crate::target::Target;

/// The most a request body may hold when the relay must read it (stdio).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// How long a stdio server has to exit once the relay stops.
const STDIO_GRACE: Duration = Duration::from_secs(2);

/// Request headers passed on to an HTTP upstream (the agent's `Authorization` is not: the
/// relay presents its own token, if given one).
const REQUEST_HEADERS: [&str; 5] = [
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];
/// Response headers passed back from an HTTP upstream.
const RESPONSE_HEADERS: [&str; 3] = ["content-type", "mcp-session-id", "cache-control"];

/// What a relay's answers are made of: an upstream's body as it streams, or one the relay wrote.
type Body = Either<Incoming, Full<Bytes>>;

/// Where and how a relay serves.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// The address to listen on, e.g. `127.0.0.1:0` for any free port.
    pub listen: String,
    /// The server behind the relay.
    pub upstream: Target,
    /// How long the relay waits for a stdio server's answer.
    pub timeout: Duration,
}

/// The server behind the relay, ready to take requests.
enum Upstream {
    Http {
        // Boxed: the client is large, a stdio server's handle small.
        client: Box<Client<HttpConnector, Incoming>>,
        uri: Uri,
        authorization: Option<HeaderValue>,
    },
    Stdio {
        server: Arc<StdioServer>,
        timeout: Duration,
    },
}

/// A relay bound to its address, not yet serving.
pub struct Relay {
    listener: TcpListener,
    upstream: Arc<Upstream>,
}

impl Relay {
    /// Binds the address and readies the upstream: a stdio server is started and initialized
    /// now, so the first agent does not wait for it.
    pub async fn bind(options: &RelayOptions) -> Result<Self, LoadError> {
        let upstream = match &options.upstream {
            Target::Http { url, token } => {
                let uri: Uri =
                    url.parse()
                        .map_err(|e: hyper::http::uri::InvalidUri| LoadError::BadUrl {
                            url: url.clone(),
                            why: e.to_string(),
                        })?;
                if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                    return Err(LoadError::BadUrl {
                        url: url.clone(),
                        why: "expected http://HOST:PORT/PATH".into(),
                    });
                }
                let authorization = token
                    .as_deref()
                    .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
                    .transpose()
                    .map_err(|_| {
                        LoadError::Usage("the token has characters a header cannot carry".into())
                    })?;
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                let client = Box::new(
                    Client::builder(TokioExecutor::new())
                        .pool_max_idle_per_host(usize::MAX)
                        .build(connector),
                );
                Upstream::Http {
                    client,
                    uri,
                    authorization,
                }
            }
            Target::Stdio { command } => Upstream::Stdio {
                server: StdioServer::start(command, options.timeout).await?,
                timeout: options.timeout,
            },
        };
        let listener = TcpListener::bind(&options.listen)
            .await
            .map_err(|e| LoadError::Usage(format!("cannot listen on {}: {e}", options.listen)))?;
        Ok(Self {
            listener,
            upstream: Arc::new(upstream),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, LoadError> {
        self.listener
            .local_addr()
            .map_err(|e| LoadError::Usage(format!("cannot read the bound address: {e}")))
    }

    /// Serves until `stop` completes; then stops a stdio server it started.
    pub async fn serve(self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        loop {
            let accepted = tokio::select! {
                () = &mut stop => break,
                accepted = self.listener.accept() => accepted,
            };
            let Ok((tcp, _)) = accepted else {
                continue; // the connection died before it was accepted, or no descriptors
            };
            let _ = tcp.set_nodelay(true);
            let upstream = self.upstream.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| relay(upstream.clone(), request));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
        if let Upstream::Stdio { server, .. } = &*self.upstream {
            server.shutdown(STDIO_GRACE).await;
        }
    }
}

async fn relay(
    upstream: Arc<Upstream>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    Ok(match &*upstream {
        Upstream::Http {
            client,
            uri,
            authorization,
        } => to_http(client, uri, authorization.as_ref(), request).await,
        Upstream::Stdio { server, timeout } => to_stdio(server, *timeout, request).await,
    })
}

async fn to_http(
    client: &Client<HttpConnector, Incoming>,
    uri: &Uri,
    authorization: Option<&HeaderValue>,
    request: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let mut outgoing = Request::builder().method(parts.method).uri(uri.clone());
    for name in REQUEST_HEADERS {
        for value in parts.headers.get_all(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    if let Some(authorization) = authorization {
        outgoing = outgoing.header(AUTHORIZATION, authorization);
    }
    let outgoing = match outgoing.body(body) {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("unusable request: {e}")),
    };
    let answer = match client.request(outgoing).await {
        Ok(a) => a,
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                &format!("the upstream failed: {e}"),
            );
        }
    };
    let (parts, body) = answer.into_parts();
    let mut response = Response::new(Either::Left(body));
    *response.status_mut() = parts.status;
    for name in RESPONSE_HEADERS {
        for value in parts.headers.get_all(name) {
            response
                .headers_mut()
                .append(HeaderName::from_static(name), value.clone());
        }
    }
    response
}

async fn to_stdio(
    server: &StdioServer,
    timeout: Duration,
    request: Request<Incoming>,
) -> Response<Body> {
    match *request.method() {
        Method::POST => {}
        // One server session serves every agent: there is no session of theirs to end.
        Method::DELETE => return empty(StatusCode::NO_CONTENT),
        _ => return plain(StatusCode::METHOD_NOT_ALLOWED, "POST a JSON-RPC message"),
    }
    let bytes = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("unreadable body: {e}"),
            );
        }
    };
    let Ok(message) = serde_json::from_slice::<Value>(&bytes) else {
        return plain(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let (Some(method), Some(id)) = (
        message.get("method").and_then(Value::as_str),
        message.get("id"),
    ) else {
        // Notifications and the agent's answers: the server's session was initialized by the
        // relay, and the relay asks the agent nothing.
        return empty(StatusCode::ACCEPTED);
    };
    if method == "initialize" {
        let result = server.initialize_result().cloned().unwrap_or(Value::Null);
        return json_answer(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
    }
    let params = message
        .get("params")
        .map_or_else(|| "{}".to_owned(), Value::to_string);
    match server.exchange(method, &params, timeout).await {
        Ok(mut answer) => {
            answer["id"] = id.clone();
            json_answer(&answer)
        }
        Err(e) => json_answer(&json!({
            "jsonrpc": "2.0", "id": id,
            "error": {"code": -32603, "message": format!("the relay's server failed: {e}")},
        })),
    }
}

fn json_answer(message: &Value) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(message.to_string()))));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(format!("{text}\n")))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = status;
    response
}
