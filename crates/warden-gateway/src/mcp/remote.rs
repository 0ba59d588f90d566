//! The Streamable HTTP side of an upstream: Warden as the HTTP client of a remote MCP server.
//!
//! Each outgoing message is one POST. What comes back — a JSON body, or an SSE stream of
//! progress, server requests and finally the response — is routed exactly like the lines of
//! a stdio server (`upstream::route`), so everything above this module is transport-blind.
//! The session id the server assigns is kept here and never leaves Warden; nor do the
//! credentials in `HttpTarget::headers`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};

use super::upstream::{
    HttpTarget, Link, Upstream, UpstreamError, UpstreamOptions, route, serve_link,
};

/// The most POSTs to one server in flight at once.
const MAX_CONCURRENT_POSTS: usize = 256;

/// What every POST of one connection shares.
struct Remote {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    session: Mutex<Option<HeaderValue>>,
    upstream: Arc<Upstream>,
    link: Arc<Link>,
    max: usize,
    fatal: mpsc::Sender<String>,
}

/// Runs one HTTP session with the server until it fails; returns why.
pub(super) async fn run_http(
    upstream: &Arc<Upstream>,
    target: &HttpTarget,
    options: &UpstreamOptions,
) -> String {
    let headers = match header_map(&target.headers) {
        Ok(h) => h,
        Err(why) => return why,
    };
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(err) => return format!("cannot build an HTTP client: {err}"),
    };
    let (link, mut outgoing) = Link::new(upstream.name().clone());
    let (fatal, mut fatal_rx) = mpsc::channel(1);
    let remote = Arc::new(Remote {
        client,
        url: target.url.clone(),
        headers,
        session: Mutex::new(None),
        upstream: upstream.clone(),
        link: link.clone(),
        max: options.max_message_bytes,
        fatal,
    });
    let sender = {
        let remote = remote.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_POSTS));
            while let Some(bytes) = outgoing.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let remote = remote.clone();
                tokio::spawn(async move {
                    remote.post(bytes).await;
                    drop(permit);
                });
            }
        })
    };
    let ended = async move {
        fatal_rx
            .recv()
            .await
            .unwrap_or_else(|| "the connection ended".to_owned())
    };
    // Over HTTP a server's request arrives on the stream of the request it serves, so
    // Warden knows which agent it is for and can relay it (decided by policy first).
    let capabilities = serde_json::json!({ "sampling": {}, "elicitation": {} });
    let reason = serve_link(upstream, &link, options, capabilities, ended).await;
    sender.abort();
    remote.end_session().await;
    link.fail_all(&UpstreamError::Gone(upstream.name().clone()));
    reason
}

fn header_map(pairs: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let mut value =
            HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

impl Remote {
    async fn post(&self, bytes: Vec<u8>) {
        // The id of our own request, to answer it if the exchange fails.
        let id = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_u64));
        let mut request = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json");
        if let Some(session) = self.session_id() {
            request = request.header("mcp-session-id", session);
        }
        if let Some(d) = self.upstream.description() {
            request = request.header("mcp-protocol-version", d.protocol_version.as_str());
        }
        let response = match request.body(bytes).send().await {
            Ok(r) => r,
            Err(err) => {
                let _ = self.fatal.try_send(format!(
                    "cannot reach {}: {}",
                    self.url,
                    without_url(&err)
                ));
                return;
            }
        };
        let status = response.status();
        if let Some(session) = response.headers().get("mcp-session-id") {
            let mut current = self.session.lock().unwrap_or_else(|p| p.into_inner());
            if current.is_none() {
                *current = Some(session.clone());
            }
        }
        if status == reqwest::StatusCode::NOT_FOUND && self.session_id().is_some() {
            let _ = self
                .fatal
                .try_send("the server ended Warden's session (HTTP 404)".to_owned());
            return;
        }
        if status == reqwest::StatusCode::ACCEPTED {
            return;
        }
        if !status.is_success() {
            if let Some(id) = id {
                self.link.fail(
                    id,
                    UpstreamError::Down {
                        server: self.link.server().clone(),
                        reason: format!("it answered HTTP {status}"),
                    },
                );
            }
            return;
        }
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        // Messages on the answer to request `id` belong to it (its log messages, the
        // server's requests in its course).
        let result = if is_stream {
            let mut events = SseParser::new(self.max);
            let read = self.read_stream(response, id, &mut events).await;
            match (read, id) {
                (Ok(()), Some(id)) => self.resume(id, &mut events).await,
                (read, _) => read,
            }
        } else {
            self.read_json(response, id).await
        };
        if let Err(len) = result
            && let Some(id) = id
        {
            self.link.fail(
                id,
                UpstreamError::TooLarge {
                    server: self.link.server().clone(),
                    len,
                    max: self.max,
                },
            );
        }
    }

    fn session_id(&self) -> Option<HeaderValue> {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A JSON body: one message. `Err(len)` when it exceeds the bound.
    async fn read_json(
        &self,
        response: reqwest::Response,
        context: Option<u64>,
    ) -> Result<(), usize> {
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { return Ok(()) };
            body.extend_from_slice(&chunk);
            if body.len() > self.max {
                return Err(body.len());
            }
        }
        route(&self.upstream, &self.link, &body, context);
        Ok(())
    }

    /// A server may close a request's stream before answering, having given its events ids
    /// (and a `retry` delay): the answer is then fetched by reconnecting with `GET` and
    /// `Last-Event-ID`, for as long as the request still waits.
    async fn resume(&self, id: u64, events: &mut SseParser) -> Result<(), usize> {
        const MAX_RECONNECTS: usize = 100;
        for _ in 0..MAX_RECONNECTS {
            let Some(last) = events.last_id.clone() else {
                return Ok(());
            };
            if !self.link.is_pending(id) {
                return Ok(());
            }
            tokio::time::sleep(events.retry.min(Duration::from_secs(30))).await;
            let mut request = self
                .client
                .get(&self.url)
                .headers(self.headers.clone())
                .header(ACCEPT, "text/event-stream")
                .header("last-event-id", last);
            if let Some(session) = self.session_id() {
                request = request.header("mcp-session-id", session);
            }
            if let Some(d) = self.upstream.description() {
                request = request.header("mcp-protocol-version", d.protocol_version.as_str());
            }
            let Ok(response) = request.send().await else {
                continue;
            };
            if !response.status().is_success() {
                // The server cannot resume this stream: the request ends by its timeout.
                return Ok(());
            }
            self.read_stream(response, Some(id), events).await?;
        }
        Ok(())
    }

    /// An SSE stream: each event's data is one message, routed as it arrives.
    async fn read_stream(
        &self,
        response: reqwest::Response,
        context: Option<u64>,
        events: &mut SseParser,
    ) -> Result<(), usize> {
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { return Ok(()) };
            for data in events.feed(&chunk)? {
                route(&self.upstream, &self.link, data.as_bytes(), context);
            }
        }
        Ok(())
    }

    /// Tells the server Warden's session is over (best effort).
    async fn end_session(&self) {
        let Some(session) = self.session_id() else {
            return;
        };
        let request = self
            .client
            .delete(&self.url)
            .headers(self.headers.clone())
            .header("mcp-session-id", session)
            .timeout(Duration::from_secs(2));
        let _ = request.send().await;
    }
}

/// An error's text without the URL reqwest may put in it (it could carry credentials).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "the server");
    }
    text
}

/// Splits a Server-Sent Events byte stream into the data of its events, keeping the last
/// event id and the reconnection delay the server asked for.
pub(crate) struct SseParser {
    buffer: Vec<u8>,
    data: String,
    max: usize,
    last_id: Option<String>,
    retry: Duration,
}

impl SseParser {
    /// A parser that refuses events larger than `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            buffer: Vec::new(),
            data: String::new(),
            max,
            last_id: None,
            retry: Duration::from_secs(1),
        }
    }

    /// Feeds bytes; returns the data of every event they complete. `Err(len)` when an event
    /// grows over the bound.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, usize> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(std::mem::take(&mut self.data));
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
            } else if let Some(value) = line.strip_prefix("id:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                // An id with NUL is ignored, as the SSE standard says.
                if !value.contains('\0') {
                    self.last_id = Some(value.to_owned());
                }
            } else if let Some(value) = line.strip_prefix("retry:")
                && let Ok(ms) = value.trim().parse::<u64>()
            {
                self.retry = Duration::from_millis(ms);
            }
            // `event:` and comments carry nothing Warden routes.
        }
        let pending = self.buffer.len() + self.data.len();
        if pending > self.max {
            return Err(pending);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_across_chunks() {
        let mut p = SseParser::new(1024);
        assert!(p.feed(b"event: message\ndata: {\"a\"").unwrap().is_empty());
        assert_eq!(p.feed(b":1}\n\ndata: x\r\n").unwrap(), vec!["{\"a\":1}"]);
        assert_eq!(p.feed(b"data: y\n\n: comment\n\n").unwrap(), vec!["x\ny"]);
    }

    #[test]
    fn event_ids_and_retry_are_kept_for_resumption() {
        let mut p = SseParser::new(1024);
        assert!(
            p.feed(b"id: ev-1\nretry: 250\ndata:\n\n")
                .unwrap()
                .is_empty()
        );
        assert_eq!(p.last_id.as_deref(), Some("ev-1"));
        assert_eq!(p.retry, Duration::from_millis(250));
        p.feed(b"id: ev-2\ndata: {}\n\n").unwrap();
        assert_eq!(p.last_id.as_deref(), Some("ev-2"));
    }

    #[test]
    fn oversize_events_are_refused() {
        let mut p = SseParser::new(16);
        assert!(p.feed(b"data: 0123456789abcdef0123").is_err());
    }
}
