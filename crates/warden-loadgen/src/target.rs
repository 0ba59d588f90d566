//! What is put under load: a Streamable HTTP endpoint or a stdio server, behind one interface
//! of connections, sessions and requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::LoadError;
use crate::http::{HttpEndpoint, HttpSession};
use crate::stats::{Latencies, Tally};
use crate::stdio::StdioServer;

/// Where the load goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Streamable HTTP MCP endpoint, e.g. `http://127.0.0.1:7411/mcp`.
    Http {
        /// The endpoint's URL.
        url: String,
        /// A bearer token to present, if any.
        token: Option<String>,
    },
    /// An MCP server spawned by the load generator and spoken to over its stdin and stdout.
    Stdio {
        /// The program and its arguments.
        command: Vec<String>,
    },
}

impl Target {
    /// How reports name the target (never the token).
    pub fn describe(&self) -> String {
        match self {
            Target::Http { url, .. } => url.clone(),
            Target::Stdio { command } => format!("stdio: {}", command.join(" ")),
        }
    }
}

/// A live link to the target: the HTTP connection pool, or the running stdio server.
#[derive(Debug, Clone)]
pub enum Connection {
    /// The pooled HTTP client.
    Http(HttpEndpoint),
    /// The one stdio server process and its session.
    Stdio(Arc<StdioServer>),
}

impl Connection {
    /// Prepares the HTTP client, or starts and initializes the stdio server.
    pub async fn open(target: &Target, timeout: Duration) -> Result<Self, LoadError> {
        match target {
            Target::Http { url, token } => {
                Ok(Self::Http(HttpEndpoint::new(url, token.as_deref())?))
            }
            Target::Stdio { command } => {
                Ok(Self::Stdio(StdioServer::start(command, timeout).await?))
            }
        }
    }

    /// A session to send requests on: a new one over HTTP; over stdio, a share of the one the
    /// process has (stdio has exactly one session per process).
    pub async fn session(&self, timeout: Duration) -> Result<Session, LoadError> {
        match self {
            Self::Http(endpoint) => within(timeout, endpoint.initialize())
                .await
                .map(Session::Http),
            Self::Stdio(server) => Ok(Session::Stdio(server.clone())),
        }
    }

    /// Stops the stdio server, if there is one.
    pub async fn shutdown(&self) {
        if let Self::Stdio(server) = self {
            server.shutdown(Duration::from_secs(5)).await;
        }
    }
}

/// A session of the target.
#[derive(Debug)]
pub enum Session {
    /// An HTTP session (its own `Mcp-Session-Id`).
    Http(HttpSession),
    /// The stdio server's session, shared.
    Stdio(Arc<StdioServer>),
}

impl Session {
    /// Sends a request and waits at most `timeout` for its `result`.
    pub async fn request(
        &mut self,
        method: &str,
        params_json: &str,
        timeout: Duration,
    ) -> Result<Value, LoadError> {
        match self {
            Self::Http(session) => within(timeout, session.request(method, params_json)).await,
            Self::Stdio(server) => server.request(method, params_json, timeout).await,
        }
    }

    /// Whether the target gave the session an id of its own (so it can be ended with DELETE).
    pub fn is_named(&self) -> bool {
        match self {
            Self::Http(session) => session.has_id(),
            Self::Stdio(_) => false,
        }
    }

    /// Ends the session (HTTP `DELETE`); a stdio session ends with the process.
    pub async fn close(self, timeout: Duration) -> Result<(), LoadError> {
        match self {
            Self::Http(session) => within(timeout, session.close()).await,
            Self::Stdio(_) => Ok(()),
        }
    }
}

async fn within<T>(
    timeout: Duration,
    work: impl Future<Output = Result<T, LoadError>>,
) -> Result<T, LoadError> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(LoadError::Timeout(timeout)))
}

/// The `tools/call` every request of a run sends, its params serialized once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpec {
    /// The tool's name as the target presents it (e.g. `files__echo` through Warden).
    pub tool: String,
    params_json: String,
}

impl CallSpec {
    /// A call of `tool` with `arguments`.
    pub fn new(tool: &str, arguments: &Value) -> Self {
        Self {
            tool: tool.to_owned(),
            params_json: json!({"name": tool, "arguments": arguments}).to_string(),
        }
    }

    /// The request's `params`, as JSON text.
    pub fn params_json(&self) -> &str {
        &self.params_json
    }
}

/// One session used by one worker at a time, with what that worker measured. Each lane
/// records into its own histograms; the run merges them at the end.
#[derive(Debug)]
pub struct Lane {
    session: Session,
    /// Latency from the time the call was due (scheduled) to its answer.
    pub latency: Latencies,
    /// Latency from the time the call was actually sent to its answer.
    pub service: Latencies,
    /// How late each call was sent: waiting for a free lane, plus the generator's own delay.
    pub send_lag: Latencies,
    /// Successes and failures.
    pub tally: Tally,
    /// When this lane's latest answer (or failure) arrived.
    pub last_done: Option<Instant>,
}

impl Lane {
    /// A lane on `session`, with nothing recorded.
    pub fn new(session: Session) -> Self {
        Self {
            session,
            latency: Latencies::new(),
            service: Latencies::new(),
            send_lag: Latencies::new(),
            tally: Tally::default(),
            last_done: None,
        }
    }

    /// Sends one call without recording it (to open connections and warm caches); a failure
    /// here means the run cannot measure anything useful.
    pub async fn warm_up(&mut self, spec: &CallSpec, timeout: Duration) -> Result<(), LoadError> {
        self.session
            .request("tools/call", spec.params_json(), timeout)
            .await
            .map(|_| ())
    }

    /// Sends one call that was due at `due` and records how it went.
    pub async fn call(&mut self, spec: &CallSpec, timeout: Duration, due: Instant) {
        let sent = Instant::now();
        self.send_lag.record(sent.saturating_duration_since(due));
        let result = self
            .session
            .request("tools/call", spec.params_json(), timeout)
            .await;
        let done = Instant::now();
        match result {
            Ok(_) => {
                self.tally.ok += 1;
                self.latency.record(done.saturating_duration_since(due));
                self.service.record(done - sent);
            }
            Err(e) => self.tally.error(&e),
        }
        self.last_done = Some(done);
    }

    /// Ends the lane's session.
    pub async fn close(self, timeout: Duration) -> Result<(), LoadError> {
        self.session.close(timeout).await
    }
}

/// Merged measurements of many lanes.
#[derive(Debug, Default)]
pub struct Merged {
    /// Latency from the scheduled time.
    pub latency: Latencies,
    /// Latency from the actual send.
    pub service: Latencies,
    /// How late calls were sent.
    pub send_lag: Latencies,
    /// Counts.
    pub tally: Tally,
    /// The latest answer of any lane.
    pub last_done: Option<Instant>,
}

impl Merged {
    /// Merges every lane's measurements.
    pub fn of<'a>(lanes: impl IntoIterator<Item = &'a Lane>) -> Self {
        let mut merged = Self::default();
        for lane in lanes {
            merged.latency.merge(&lane.latency);
            merged.service.merge(&lane.service);
            merged.send_lag.merge(&lane.send_lag);
            merged.tally.merge(&lane.tally);
            merged.last_done = merged.last_done.max(lane.last_done);
        }
        merged
    }
}

/// Opens `count` sessions, one after another (a run opens few; `sessions` mode opens many
/// its own way).
pub async fn open_lanes(
    connection: &Connection,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Lane>, LoadError> {
    let mut lanes = Vec::with_capacity(count);
    for _ in 0..count {
        lanes.push(Lane::new(connection.session(timeout).await?));
    }
    Ok(lanes)
}

/// Warms every lane up concurrently; the first failure aborts the run with its error.
pub async fn warm_up(
    lanes: Vec<Lane>,
    spec: &CallSpec,
    timeout: Duration,
) -> Result<Vec<Lane>, LoadError> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut lane) in lanes.into_iter().enumerate() {
        let spec = spec.clone();
        tasks.spawn(async move {
            let result = lane.warm_up(&spec, timeout).await;
            (i, lane, result)
        });
    }
    let mut warmed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, lane, result) =
            joined.map_err(|e| LoadError::Usage(format!("a warm-up task failed: {e}")))?;
        result?;
        warmed.push((i, lane));
    }
    warmed.sort_by_key(|(i, _)| *i);
    Ok(warmed.into_iter().map(|(_, lane)| lane).collect())
}

/// Ends every lane's session concurrently; returns how many could not be ended.
pub async fn close_lanes(lanes: Vec<Lane>, timeout: Duration) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for lane in lanes {
        tasks.spawn(lane.close(timeout));
    }
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        if !matches!(joined, Ok(Ok(()))) {
            failed += 1;
        }
    }
    failed
}
