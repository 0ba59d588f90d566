//! One upstream MCP server that Warden spawns, initializes and keeps running, shared by every
//! agent session that uses it.
//!
//! Warden is the upstream's only client: it performs `initialize` itself, then multiplexes the
//! requests of many agent sessions over the one connection. Request ids and progress tokens
//! are Warden's own on this connection (the agents' ids could collide); answers are routed back
//! by those ids. A supervisor restarts the server with exponential backoff when it exits, and
//! its status says why it is down and when it will be tried again.
//!
//! INVARIANT: every request started here completes exactly once: with the upstream's answer,
//! or with an `UpstreamError` (gone, timed out, too large) — never silently dropped.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc, oneshot};
use warden_core::ServerName;

use super::framing::{Frame, FrameReader};
use super::jsonrpc::{self, Message, code, sniff_id};
use super::session::{KNOWN_PROTOCOL_VERSIONS, UpstreamCommand};
use crate::guard::now_ms;

/// The protocol version Warden asks its upstreams for.
pub const UPSTREAM_PROTOCOL_VERSION: &str = "2025-11-25";

/// Where an upstream server is.
#[derive(Clone)]
pub enum UpstreamTarget {
    /// A program Warden spawns and speaks to over stdio.
    Stdio(UpstreamCommand),
    /// A remote server over Streamable HTTP.
    Http(HttpTarget),
}

/// A remote Streamable HTTP server and the credentials Warden presents to it. The agents
/// never see these: they authenticate to Warden, and Warden to the server.
#[derive(Clone)]
pub struct HttpTarget {
    /// The endpoint, e.g. `https://mcp.example.com/mcp`.
    pub url: String,
    /// Headers sent with every request (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are credentials: never in logs.
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("HttpTarget")
            .field("url", &self.url)
            .field("headers", &names)
            .finish()
    }
}

/// How an upstream is run and bounded.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// The largest message accepted from the upstream, in bytes.
    pub max_message_bytes: usize,
    /// How long the upstream may take to answer `initialize`.
    pub initialize_timeout: Duration,
    /// The first restart delay; it doubles after each failure.
    pub restart_min: Duration,
    /// The longest restart delay.
    pub restart_max: Duration,
    /// After running this long, a server that exits is restarted after `restart_min` again.
    pub healthy_after: Duration,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            initialize_timeout: Duration::from_secs(30),
            restart_min: Duration::from_millis(200),
            restart_max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(60),
        }
    }
}

/// Whether an upstream can take requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamStatus {
    /// Being started or initialized.
    Starting,
    /// Initialized and answering.
    Ready,
    /// Not running.
    Down {
        /// Why, for an operator.
        reason: String,
        /// When it went down (ms since the epoch).
        since_ms: i64,
        /// When it will be started again (ms since the epoch).
        retry_at_ms: i64,
    },
}

/// Why a request to an upstream got no answer from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The server is not running.
    #[error("upstream server \"{server}\" is down: {reason}")]
    Down {
        /// The server.
        server: ServerName,
        /// Why.
        reason: String,
    },
    /// The server exited before answering.
    #[error("upstream server \"{0}\" exited before answering")]
    Gone(ServerName),
    /// The server's answer exceeded the size bound.
    #[error("upstream server \"{server}\" answered with {len} bytes, over the limit of {max}")]
    TooLarge {
        /// The server.
        server: ServerName,
        /// The answer's size.
        len: usize,
        /// The bound.
        max: usize,
    },
}

impl UpstreamError {
    /// The JSON-RPC error code an agent receives for this error.
    pub fn code(&self) -> i64 {
        match self {
            UpstreamError::Down { .. } | UpstreamError::Gone(_) => code::UPSTREAM_GONE,
            UpstreamError::TooLarge { .. } => code::TOO_LARGE,
        }
    }
}

/// The upstream's answer: the whole JSON-RPC response, with `result` or `error`.
pub type Answer = Result<Value, UpstreamError>;

/// A message the upstream sent on its own (a notification), shared by every subscriber.
#[derive(Debug, Clone)]
pub struct Notice {
    /// The method, e.g. `notifications/tools/list_changed`.
    pub method: String,
    /// Its params (`Value::Null` when absent).
    pub params: Value,
}

/// What the upstream said in answer to `initialize`.
#[derive(Debug, Clone, Default)]
pub struct ServerDescription {
    /// `capabilities`.
    pub capabilities: Value,
    /// `serverInfo`.
    pub server_info: Value,
    /// `instructions`, if any.
    pub instructions: Option<String>,
    /// The negotiated protocol version.
    pub protocol_version: String,
}

/// A supervised upstream server.
pub struct Upstream {
    name: ServerName,
    state: Mutex<State>,
    notices: broadcast::Sender<Notice>,
    ready: tokio::sync::watch::Sender<bool>,
    /// The last lines the server's current process wrote on stderr: for the operator, when
    /// it goes down (never shown to agents: a server may log what they must not read).
    last_stderr: Mutex<StderrTail>,
}

/// The last lines one process of a server wrote on stderr. Each process has its own, so a
/// reader still draining an old process (a grandchild holding its stderr) never writes into
/// the new one's, and holds no reference to the `Upstream`.
type StderrTail = Arc<Mutex<VecDeque<String>>>;

/// How many of a server's last stderr lines are kept for the operator (an error is often
/// followed by a usage line or a hint), and how many characters of each.
const STDERR_LINES_KEPT: usize = 3;
const STDERR_LINE_CHARS: usize = 300;

struct State {
    status: UpstreamStatus,
    link: Option<Arc<Link>>,
    description: Option<Arc<ServerDescription>>,
}

/// One connection to the server (a process, or an HTTP session): its outgoing queue and the
/// requests awaiting answers.
pub(super) struct Link {
    server: ServerName,
    to_server: mpsc::Sender<Vec<u8>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    progress: Mutex<HashMap<String, Progress>>,
    related: Mutex<HashMap<u64, mpsc::UnboundedSender<Related>>>,
    next_id: AtomicU64,
}

/// Where progress notifications for one request go, and the token the agent chose.
struct Progress {
    agent_token: Value,
    to: mpsc::UnboundedSender<Related>,
}

/// What the upstream sends in the course of one request, for the agent that made it.
#[derive(Debug, Clone)]
pub enum Related {
    /// A notification for the agent, ready to send: progress (with the agent's own token) or a
    /// log message.
    Message(Value),
    /// A request of the server to the agent (sampling, elicitation, roots), to be decided
    /// and relayed. Answer it with [`Upstream::respond`].
    ServerRequest {
        /// The server's id for it.
        id: Value,
        /// The method.
        method: String,
        /// Its params.
        params: Value,
    },
}

/// A request sent to the upstream, awaiting its answer. Dropping it forgets the request.
pub struct InFlight {
    link: Arc<Link>,
    id: u64,
    token: Option<String>,
    answer: oneshot::Receiver<Answer>,
}

impl InFlight {
    /// The upstream's answer.
    pub async fn answer(&mut self) -> Answer {
        match (&mut self.answer).await {
            Ok(answer) => answer,
            Err(_) => Err(UpstreamError::Gone(self.link.server.clone())),
        }
    }

    /// Tells the upstream the request is cancelled (`notifications/cancelled`).
    pub fn cancel(&self, reason: &str) {
        let note = json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": { "requestId": self.id, "reason": reason },
        });
        let _ = self.link.to_server.try_send(jsonrpc::line(&note));
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.link.lock_pending().remove(&self.id);
        self.link
            .related
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        if let Some(token) = &self.token {
            self.link.lock_progress().remove(token);
        }
    }
}

impl Link {
    /// A link and the receiving end of its outgoing queue.
    pub(super) fn new(server: ServerName) -> (Arc<Link>, mpsc::Receiver<Vec<u8>>) {
        let (to_server, rx) = mpsc::channel(4096);
        let link = Arc::new(Link {
            server,
            to_server,
            pending: Mutex::new(HashMap::new()),
            progress: Mutex::new(HashMap::new()),
            related: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        });
        (link, rx)
    }

    /// Answers request `id` with `err`, if it is still waiting.
    pub(super) fn fail(&self, id: u64, err: UpstreamError) {
        if let Some(tx) = self.lock_pending().remove(&id) {
            let _ = tx.send(Err(err));
        }
    }

    /// Whether request `id` still awaits its answer.
    pub(super) fn is_pending(&self, id: u64) -> bool {
        self.lock_pending().contains_key(&id)
    }

    /// The server's name.
    pub(super) fn server(&self) -> &ServerName {
        &self.server
    }

    fn lock_pending(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<Answer>>> {
        // Single inserts and removes: the map stays consistent even after a panic elsewhere.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_progress(&self) -> MutexGuard<'_, HashMap<String, Progress>> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn related_to(&self, id: u64) -> Option<mpsc::UnboundedSender<Related>> {
        self.related
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    pub(super) fn fail_all(&self, err: &UpstreamError) {
        let pending: Vec<_> = self.lock_pending().drain().collect();
        for (_, tx) in pending {
            let _ = tx.send(Err(err.clone()));
        }
        self.lock_progress().clear();
        self.related
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl Upstream {
    /// Starts supervising `command` as the server `name`.
    pub fn start(name: ServerName, target: UpstreamTarget, options: UpstreamOptions) -> Arc<Self> {
        let (notices, _) = broadcast::channel(256);
        let (ready, _) = tokio::sync::watch::channel(false);
        let upstream = Arc::new(Self {
            name,
            state: Mutex::new(State {
                status: UpstreamStatus::Starting,
                link: None,
                description: None,
            }),
            notices,
            ready,
            last_stderr: Mutex::new(StderrTail::default()),
        });
        tokio::spawn(supervise(upstream.clone(), target, options));
        upstream
    }

    /// The server's operator-chosen name.
    pub fn name(&self) -> &ServerName {
        &self.name
    }

    /// Its current status.
    pub fn status(&self) -> UpstreamStatus {
        self.lock().status.clone()
    }

    /// The last few lines its current (or last) process wrote on stderr, escaped for display
    /// and joined by ` | `: what a server that exits at once usually says about why. For the
    /// operator only.
    pub fn last_stderr(&self) -> Option<String> {
        let tail = self
            .last_stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let lines = tail.lock().unwrap_or_else(|p| p.into_inner());
        (!lines.is_empty()).then(|| Vec::from(lines.clone()).join(" | "))
    }

    /// What it said in answer to `initialize`, once it has.
    pub fn description(&self) -> Option<Arc<ServerDescription>> {
        self.lock().description.clone()
    }

    /// Notifications the server sends from now on.
    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// Changes of readiness: `true` while the server is ready.
    pub fn status_changes(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Waits until the server is ready, at most `timeout`. Returns whether it is.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.ready.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|ready| *ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Sends a request. What the server sends in its course reaches `related`: progress
    /// (`params._meta.progressToken` is replaced by one of Warden's, and the agent's restored
    /// on the way back), and — where the transport ties them to this request — log messages
    /// and the server's own requests.
    pub fn request(
        &self,
        method: &str,
        mut params: Value,
        related: Option<mpsc::UnboundedSender<Related>>,
    ) -> Result<InFlight, UpstreamError> {
        let link = self.link()?;
        let id = link.next_id.fetch_add(1, Ordering::Relaxed);
        let mut token = None;
        // The agent's token is always taken out: on a shared connection it could collide
        // with another agent's. It is replaced only when the progress has somewhere to go.
        let agent_token = params
            .get_mut("_meta")
            .and_then(Value::as_object_mut)
            .and_then(|meta| meta.remove("progressToken"));
        if let Some(to) = &related {
            self_related(&link).insert(id, to.clone());
        }
        if let (Some(agent_token), Some(to)) = (agent_token, related) {
            let ours = format!("warden-{id}");
            params["_meta"]["progressToken"] = Value::String(ours.clone());
            link.lock_progress()
                .insert(ours.clone(), Progress { agent_token, to });
            token = Some(ours);
        }
        let (tx, rx) = oneshot::channel();
        link.lock_pending().insert(id, tx);
        let mut message = Map::new();
        message.insert("jsonrpc".into(), "2.0".into());
        message.insert("id".into(), id.into());
        message.insert("method".into(), method.into());
        if !params.is_null() {
            message.insert("params".into(), params);
        }
        let flight = InFlight {
            link: link.clone(),
            id,
            token,
            answer: rx,
        };
        if link
            .to_server
            .try_send(jsonrpc::line(&Value::Object(message)))
            .is_err()
        {
            // The queue is full or closed: answer now rather than leave the caller waiting.
            if let Some(tx) = link.lock_pending().remove(&id) {
                let _ = tx.send(Err(UpstreamError::Gone(self.name.clone())));
            }
        }
        Ok(flight)
    }

    /// Answers a request the server sent (see [`Related::ServerRequest`]): with `Ok(result)`
    /// or `Err((code, message))`.
    pub fn respond(&self, id: &Value, outcome: Result<Value, (i64, String)>) {
        let Ok(link) = self.link() else {
            return;
        };
        let message = match outcome {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err((code, message)) => json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": { "code": code, "message": message },
            }),
        };
        let _ = link.to_server.try_send(jsonrpc::line(&message));
    }

    /// Sends a notification.
    pub fn notify(&self, method: &str, params: Value) -> Result<(), UpstreamError> {
        let link = self.link()?;
        let note = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        let _ = link.to_server.try_send(jsonrpc::line(&note));
        Ok(())
    }

    fn link(&self) -> Result<Arc<Link>, UpstreamError> {
        let state = self.lock();
        match (&state.status, &state.link) {
            (UpstreamStatus::Ready, Some(link)) => Ok(link.clone()),
            (UpstreamStatus::Down { reason, .. }, _) => Err(UpstreamError::Down {
                server: self.name.clone(),
                reason: reason.clone(),
            }),
            _ => Err(UpstreamError::Down {
                server: self.name.clone(),
                reason: "it is starting".into(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_down(&self, reason: String, retry_in: Duration) {
        let now = now_ms();
        let retry = i64::try_from(retry_in.as_millis()).unwrap_or(i64::MAX);
        tracing::warn!(server = %self.name, %reason, retry_in_ms = retry, "upstream server down");
        let mut state = self.lock();
        state.status = UpstreamStatus::Down {
            reason,
            since_ms: now,
            retry_at_ms: now.saturating_add(retry),
        };
        state.link = None;
        drop(state);
        self.ready.send_replace(false);
    }
}

/// Runs the server, restarting it with backoff, for as long as anyone holds the `Upstream`.
async fn supervise(upstream: Arc<Upstream>, target: UpstreamTarget, options: UpstreamOptions) {
    let weak = Arc::downgrade(&upstream);
    drop(upstream);
    let mut delay = options.restart_min;
    loop {
        let Some(upstream) = weak.upgrade() else {
            return;
        };
        upstream.lock().status = UpstreamStatus::Starting;
        let started = Instant::now();
        let reason = run_once(&upstream, &target, &options).await;
        if started.elapsed() >= options.healthy_after {
            delay = options.restart_min;
        }
        upstream.set_down(reason, delay);
        drop(upstream);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(options.restart_max);
    }
}

/// Runs one connection to the server until it ends; returns why it stopped.
async fn run_once(
    upstream: &Arc<Upstream>,
    target: &UpstreamTarget,
    options: &UpstreamOptions,
) -> String {
    match target {
        UpstreamTarget::Stdio(command) => run_stdio(upstream, command, options).await,
        UpstreamTarget::Http(http) => super::remote::run_http(upstream, http, options).await,
    }
}

/// Runs one process of the server until it exits.
async fn run_stdio(
    upstream: &Arc<Upstream>,
    command: &UpstreamCommand,
    options: &UpstreamOptions,
) -> String {
    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command.configure(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => {
            return format!(
                "could not start {}: {err}",
                command.program.to_string_lossy()
            );
        }
    };
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return "the server's pipes were not created".into();
    };
    let server = upstream.name.clone();
    let tail = StderrTail::default();
    *upstream
        .last_stderr
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = tail.clone();
    let stderr_reader = tokio::spawn(log_stderr(server.clone(), stderr, tail));

    let (link, rx) = Link::new(server.clone());
    let writer = tokio::spawn(super::session::write_loop(stdin, rx));
    let reader = tokio::spawn(read_loop(
        upstream.clone(),
        link.clone(),
        stdout,
        options.max_message_bytes,
    ));
    // A stdio connection cannot tie a server's request to the agent it is for: offer none.
    let reason = serve_link(upstream, &link, options, json!({}), wait_exit(&mut child)).await;
    reader.abort();
    writer.abort();
    let _ = child.start_kill();
    let _ = child.wait().await;
    // The process is gone, so its stderr ends unless a child of its own holds it: let the
    // reader take the last lines before the status says down, waiting a moment at most.
    let _ = tokio::time::timeout(Duration::from_millis(250), stderr_reader).await;
    link.fail_all(&UpstreamError::Gone(server));
    reason
}

/// Initializes the server over `link`, marks it ready, and waits for `ended`.
pub(super) async fn serve_link(
    upstream: &Arc<Upstream>,
    link: &Arc<Link>,
    options: &UpstreamOptions,
    capabilities: Value,
    ended: impl Future<Output = String>,
) -> String {
    let mut ended = std::pin::pin!(ended);
    // A connection that fails while initializing (a remote refusing connections) ends the
    // attempt at once rather than after the initialize timeout.
    let initialized = tokio::select! {
        result = initialize(upstream, link, options.initialize_timeout, capabilities) => result,
        reason = &mut ended => Err(reason),
    };
    match initialized {
        Ok(description) => {
            tracing::info!(server = %upstream.name, version = %description.protocol_version, "upstream server ready");
            {
                let mut state = upstream.lock();
                state.description = Some(Arc::new(description));
                state.link = Some(link.clone());
                state.status = UpstreamStatus::Ready;
            }
            upstream.ready.send_replace(true);
            let _ = upstream.notices.send(Notice {
                method: "warden/upstream_ready".into(),
                params: Value::Null,
            });
            ended.await
        }
        Err(why) => why,
    }
}

async fn wait_exit(child: &mut Child) -> String {
    match child.wait().await {
        Ok(status) => format!("the server exited: {status}"),
        Err(err) => format!("waiting for the server failed: {err}"),
    }
}

async fn initialize(
    upstream: &Upstream,
    link: &Arc<Link>,
    timeout: Duration,
    capabilities: Value,
) -> Result<ServerDescription, String> {
    let (tx, rx) = oneshot::channel();
    link.lock_pending().insert(0, tx);
    let request = json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": UPSTREAM_PROTOCOL_VERSION,
            "capabilities": capabilities,
            "clientInfo": { "name": "warden", "version": env!("CARGO_PKG_VERSION") },
        },
    });
    if link.to_server.send(jsonrpc::line(&request)).await.is_err() {
        return Err("the server closed its input".into());
    }
    let answer = match tokio::time::timeout(timeout, rx).await {
        Err(_) => {
            return Err(format!(
                "the server did not answer initialize within {timeout:?}"
            ));
        }
        Ok(Err(_)) => return Err("the server exited during initialize".into()),
        Ok(Ok(Err(err))) => return Err(err.to_string()),
        Ok(Ok(Ok(answer))) => answer,
    };
    if let Some(error) = answer.get("error") {
        return Err(format!("the server refused initialize: {error}"));
    }
    let result = answer.get("result").cloned().unwrap_or(Value::Null);
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !KNOWN_PROTOCOL_VERSIONS.contains(&version.as_str()) {
        return Err(format!(
            "the server negotiated MCP protocol version {version:?}, which this Warden cannot govern"
        ));
    }
    let _ = link
        .to_server
        .send(jsonrpc::line(
            &json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
        ))
        .await;
    tracing::debug!(server = %upstream.name, "initialized");
    Ok(ServerDescription {
        capabilities: result
            .get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({})),
        server_info: result.get("serverInfo").cloned().unwrap_or(Value::Null),
        instructions: result
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_owned),
        protocol_version: version,
    })
}

async fn read_loop(
    upstream: Arc<Upstream>,
    link: Arc<Link>,
    stdout: tokio::process::ChildStdout,
    max: usize,
) {
    let mut reader = FrameReader::new(BufReader::new(stdout), max);
    loop {
        match reader.next().await {
            Ok(Frame::Eof) | Err(_) => break,
            Ok(Frame::Oversize { len, head, tail }) => {
                let id = sniff_id(&head, &tail).and_then(|v| v.as_u64());
                tracing::warn!(server = %link.server, len, max, "discarded an oversize message from the upstream");
                if let Some(tx) = id.and_then(|id| link.lock_pending().remove(&id)) {
                    let _ = tx.send(Err(UpstreamError::TooLarge {
                        server: link.server.clone(),
                        len,
                        max,
                    }));
                }
            }
            Ok(Frame::Line(bytes)) => route(&upstream, &link, &bytes, None),
        }
    }
    link.fail_all(&UpstreamError::Gone(link.server.clone()));
}

fn self_related(link: &Link) -> MutexGuard<'_, HashMap<u64, mpsc::UnboundedSender<Related>>> {
    link.related.lock().unwrap_or_else(|p| p.into_inner())
}

/// Routes one message of the upstream: answers to their waiters, progress to its request,
/// other notifications to subscribers. `context` is the request whose stream the message
/// arrived on, when the transport says (Streamable HTTP does, stdio does not): log messages
/// and the server's own requests go to that request's agent; without one, log messages are
/// not forwarded (a shared connection cannot say whose they are) and requests are refused.
pub(super) fn route(upstream: &Upstream, link: &Link, bytes: &[u8], context: Option<u64>) {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        tracing::warn!(server = %link.server, "the upstream sent a line that is not JSON; dropped");
        return;
    };
    match jsonrpc::classify(&value) {
        Ok(Message::Response { .. }) => {
            let Some(id) = value.get("id").and_then(Value::as_u64) else {
                tracing::warn!(server = %link.server, "the upstream answered an id Warden never sent; dropped");
                return;
            };
            if let Some(tx) = link.lock_pending().remove(&id) {
                let _ = tx.send(Ok(value));
            }
        }
        Ok(Message::Notification { method, .. }) => {
            let params = value.get("params").cloned().unwrap_or(Value::Null);
            if method == "notifications/progress" {
                let token = params.get("progressToken").and_then(Value::as_str);
                let progress = link.lock_progress();
                if let Some(p) = token.and_then(|t| progress.get(t)) {
                    let mut params = params.clone();
                    params["progressToken"] = p.agent_token.clone();
                    let _ = p.to.send(Related::Message(json!({
                        "jsonrpc": "2.0",
                        "method": "notifications/progress",
                        "params": params,
                    })));
                }
                return;
            }
            if method == "notifications/message" {
                if let Some(to) = context.and_then(|c| link.related_to(c)) {
                    let _ = to.send(Related::Message(value));
                }
                return;
            }
            let _ = upstream.notices.send(Notice { method, params });
        }
        Ok(Message::Request { method, id, .. }) => {
            if let Some(to) = context.and_then(|c| link.related_to(c)) {
                let params = value.get("params").cloned().unwrap_or(Value::Null);
                let _ = to.send(Related::ServerRequest { id, method, params });
                return;
            }
            let id = Some(id);
            let reply = jsonrpc::error_line(
                id.as_ref(),
                code::METHOD_NOT_FOUND,
                &format!("Warden does not offer {method} to upstream servers"),
                None,
            );
            let _ = link.to_server.try_send(reply);
        }
        Err(err) => {
            tracing::warn!(server = %link.server, %err, "invalid JSON-RPC from the upstream; dropped")
        }
    }
}

async fn log_stderr(server: ServerName, stderr: tokio::process::ChildStderr, tail: StderrTail) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let shown = warden_core::escape_for_display(&line);
        tracing::info!(server = %server, "{shown}");
        if !shown.trim().is_empty() {
            // Printed on stdout by default: a server that echoes a credential in its error
            // must not put it in the operator's terminal and logs.
            let kept = warden_core::redact::redact_text(&shown);
            let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
            if tail.len() == STDERR_LINES_KEPT {
                tail.pop_front();
            }
            tail.push_back(kept.chars().take(STDERR_LINE_CHARS).collect());
        }
    }
}
