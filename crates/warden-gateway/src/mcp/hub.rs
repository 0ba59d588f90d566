//! One MCP endpoint in front of many upstream servers, governing every action.
//!
//! A [`Hub`] owns the upstreams and the per-agent limits; a [`HubSession`] is one agent's MCP
//! session (opened by `initialize` on any transport). The session answers `initialize` and
//! `ping` itself, merges the lists of every upstream (filtered to what the agent may use and
//! renamed, see `names`), and routes each action to its upstream after the guard has decided
//! it and the journal holds the decision.
//!
//! INVARIANT: a `tools/call`, `resources/read`, `resources/subscribe`, `prompts/get` or
//! `completion/complete` is sent upstream only after `forwards(&verdict)`, i.e. after its
//! decision is durable. Methods Warden does not know are refused, not passed through: with
//! several upstreams there is no single place they could go.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, oneshot};
use warden_core::{
    AgentId, EventBody, Outcome, PromptRef, ResourceRef, ServerName, SessionId, ToolRef,
};
use warden_journal::{Journal, JournalError};
use warden_policy::PolicySet;

use super::actions::{self, Requested};
use super::inspect::inspect;
use super::jsonrpc::{RequestId, code};
use super::names::Namespaces;
use super::refusal::refusal_result;
use super::session::KNOWN_PROTOCOL_VERSIONS;
use super::upstream::{Notice, Related, Upstream, UpstreamStatus};
use crate::approval::Withdrawal;
use crate::guard::{Guard, Verdict, forwards};

/// Bounds that apply to every agent session.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// How long an upstream may take to answer a request.
    pub call_timeout: Duration,
    /// The most requests of one agent in flight at once, across all its sessions.
    pub max_in_flight_per_agent: usize,
    /// Requests per second one agent may send, sustained.
    pub rate_per_agent: f64,
    /// Requests one agent may send in a burst above the sustained rate.
    pub burst_per_agent: f64,
    /// Replace the secrets the response scanner finds before the agent sees them.
    pub redact_secrets: bool,
    /// The session every session of this hub is opened from (a sandbox's `warden run`),
    /// recorded as their parent.
    pub parent: Option<SessionId>,
    /// The detectors, playbook and quarantine every session's actions pass.
    pub monitor: Option<Arc<warden_monitor::Monitor>>,
    /// Whether calls decided `ask` wait for a human (`None`: refused at once).
    pub hold: Option<crate::approval::HoldOptions>,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(120),
            max_in_flight_per_agent: 64,
            rate_per_agent: 500.0,
            burst_per_agent: 1000.0,
            redact_secrets: true,
            parent: None,
            monitor: None,
            hold: None,
        }
    }
}

/// The upstreams, the policy and the journal that every session shares.
pub struct Hub {
    upstreams: BTreeMap<ServerName, Arc<Upstream>>,
    names: Namespaces,
    policies: Arc<PolicySet>,
    journal: Journal,
    options: HubOptions,
    agents: Mutex<HashMap<AgentId, Arc<AgentLimits>>>,
    subscribers: Mutex<Subscribers>,
}

/// How many sessions follow each presented resource URI. An upstream is shared, so it is
/// told to unsubscribe only when the last session does.
#[derive(Default)]
struct Subscribers(HashMap<String, usize>);

impl Subscribers {
    fn add(&mut self, uri: String) {
        *self.0.entry(uri).or_default() += 1;
    }

    /// One session fewer follows `uri`; whether none is left.
    fn release(&mut self, uri: &str) -> bool {
        match self.0.get_mut(uri) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.0.remove(uri);
                true
            }
            None => true,
        }
    }
}

/// What one agent is allowed to load Warden with.
struct AgentLimits {
    in_flight: Arc<Semaphore>,
    bucket: Mutex<Bucket>,
    /// Event streams open across the agent's sessions ([`MAX_STREAMS_PER_AGENT`]).
    streams: std::sync::atomic::AtomicUsize,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Hub {
    /// A hub over `upstreams`, each presented in its own namespace except `plain`.
    pub fn new(
        upstreams: Vec<Arc<Upstream>>,
        plain: Option<ServerName>,
        policies: Arc<PolicySet>,
        journal: Journal,
        options: HubOptions,
    ) -> Arc<Self> {
        let upstreams: BTreeMap<ServerName, Arc<Upstream>> = upstreams
            .into_iter()
            .map(|u| (u.name().clone(), u))
            .collect();
        Arc::new(Self {
            names: Namespaces::new(upstreams.keys(), plain),
            upstreams,
            policies,
            journal,
            options,
            agents: Mutex::new(HashMap::new()),
            subscribers: Mutex::new(Subscribers::default()),
        })
    }

    /// The upstreams, by name.
    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.values()
    }

    /// The journal every session writes to.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Opens a session for `agent` and journals its start.
    pub async fn open_session(
        self: &Arc<Self>,
        agent: AgentId,
        session: SessionId,
    ) -> Result<Arc<HubSession>, JournalError> {
        let guards: BTreeMap<ServerName, Guard> = self
            .upstreams
            .keys()
            .map(|server| {
                let guard = Guard::new(
                    agent.clone(),
                    session.clone(),
                    self.policies.clone(),
                    self.journal.clone(),
                )
                .with_monitor(self.options.monitor.clone())
                .with_hold(self.options.hold);
                (server.clone(), guard)
            })
            .collect();
        let session = Arc::new(HubSession {
            hub: self.clone(),
            limits: self.limits(&agent),
            agent,
            session,
            guards,
            in_flight: Mutex::new(InFlight::default()),
            settled: tokio::sync::Notify::new(),
            protocol_version: Mutex::new(None),
            subscriptions: Mutex::new(HashSet::new()),
            server_requests: Mutex::new(HashMap::new()),
            next_server_request: AtomicU64::new(1),
            ended: tokio::sync::watch::Sender::new(false),
            streams: std::sync::atomic::AtomicUsize::new(0),
        });
        session
            .record(EventBody::SessionStarted {
                server: self
                    .upstreams
                    .keys()
                    .map(ServerName::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                warden_version: env!("CARGO_PKG_VERSION").to_owned(),
                parent: self.options.parent.clone(),
            })
            .await?;
        Ok(session)
    }

    /// One session fewer follows `uri`; whether it was the last.
    fn release_subscription(&self, uri: &str) -> bool {
        lock(&self.subscribers).release(uri)
    }

    fn limits(&self, agent: &AgentId) -> Arc<AgentLimits> {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents
            .entry(agent.clone())
            .or_insert_with(|| {
                Arc::new(AgentLimits {
                    in_flight: Arc::new(Semaphore::new(self.options.max_in_flight_per_agent)),
                    bucket: Mutex::new(Bucket {
                        tokens: self.options.burst_per_agent,
                        at: Instant::now(),
                    }),
                    streams: std::sync::atomic::AtomicUsize::new(0),
                })
            })
            .clone()
    }
}

/// One agent's MCP session.
pub struct HubSession {
    hub: Arc<Hub>,
    limits: Arc<AgentLimits>,
    agent: AgentId,
    session: SessionId,
    guards: BTreeMap<ServerName, Guard>,
    in_flight: Mutex<InFlight>,
    /// Woken when the last request in flight has ended.
    settled: tokio::sync::Notify,
    protocol_version: Mutex<Option<String>>,
    subscriptions: Mutex<HashSet<String>>,
    server_requests: Mutex<HashMap<String, ServerRequest>>,
    next_server_request: AtomicU64,
    /// Turns true when the session is closed: its event streams end with it.
    ended: tokio::sync::watch::Sender<bool>,
    /// Event streams open (`GET /mcp`), bounded by [`MAX_STREAMS_PER_SESSION`].
    streams: std::sync::atomic::AtomicUsize,
}

/// Event streams one session may hold open at once. The specification lets a client hold
/// several; each costs a task per upstream, so one session may not open thousands.
pub const MAX_STREAMS_PER_SESSION: usize = 4;

/// Event streams one agent may hold open at once, across its sessions: each holds a
/// connection, and one agent must not take the listener's connections from the others.
pub const MAX_STREAMS_PER_AGENT: usize = 16;

/// A session's place for one event stream, given back when the stream ends.
pub struct StreamSlot(Arc<HubSession>);

impl StreamSlot {
    /// The session the stream belongs to.
    pub fn session(&self) -> &Arc<HubSession> {
        &self.0
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0
            .streams
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.0
            .limits
            .streams
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The agent's requests being answered, each with the way to cancel it; closed with the
/// session, after which no request is taken.
#[derive(Default)]
struct InFlight {
    cancels: HashMap<RequestId, oneshot::Sender<String>>,
    /// Requests entered and not yet ended (cancelled ones included, until they have
    /// journaled how they ended).
    running: usize,
    closed: bool,
}

/// Removes its request from the in-flight table however the request ends, its future
/// dropped included (an agent that hangs up), so a session never looks busy for ever.
struct Tracked<'a> {
    session: &'a HubSession,
    key: RequestId,
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.session.in_flight);
        in_flight.cancels.remove(&self.key);
        in_flight.running -= 1;
        if in_flight.running == 0 {
            self.session.settled.notify_waiters();
        }
    }
}

/// How long closing a session waits for its cancelled requests to journal how they ended.
const CLOSE_WAITS_AT_MOST: Duration = Duration::from_secs(2);

/// A request of an upstream relayed to the agent, awaiting the agent's answer.
struct ServerRequest {
    server: ServerName,
    upstream_id: Value,
    seq: u64,
}

/// A JSON-RPC error an agent receives.
#[derive(Debug)]
struct Failure {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl Failure {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
}

type Reply = Result<Value, Failure>;

/// The lists an aggregated endpoint merges.
#[derive(Clone, Copy)]
enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }
    fn key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }
    fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::Templates => "resources",
        }
    }
    fn field(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::Templates => "uriTemplate",
        }
    }
}

impl HubSession {
    /// The agent.
    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.session
    }

    /// The protocol version negotiated by `initialize`, once it has been.
    pub fn protocol_version(&self) -> Option<String> {
        lock(&self.protocol_version).clone()
    }

    /// Appends a record about this session and waits until it is durable.
    pub async fn record(&self, body: EventBody) -> Result<u64, JournalError> {
        match self.guards.values().next() {
            Some(guard) => guard.record(body).await,
            None => {
                let event = warden_core::Event {
                    time_ms: crate::guard::now_ms(),
                    agent: self.agent.clone(),
                    session: self.session.clone(),
                    body,
                };
                self.hub.journal.append(&event).await
            }
        }
    }

    /// Whether a request of the agent is being answered (a session doing that is not idle).
    pub fn busy(&self) -> bool {
        !lock(&self.in_flight).cancels.is_empty()
    }

    /// A place for one more event stream, unless the session has its fill of them or has
    /// ended.
    pub fn open_stream(self: &Arc<Self>) -> Option<StreamSlot> {
        use std::sync::atomic::Ordering;
        if *self.ended.borrow() {
            return None;
        }
        let take = |count: &std::sync::atomic::AtomicUsize, max: usize| {
            count
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok()
        };
        if !take(&self.limits.streams, MAX_STREAMS_PER_AGENT) {
            return None;
        }
        if !take(&self.streams, MAX_STREAMS_PER_SESSION) {
            self.limits.streams.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(StreamSlot(self.clone()))
    }

    /// Watches for the session's end.
    pub fn ended(&self) -> tokio::sync::watch::Receiver<bool> {
        self.ended.subscribe()
    }

    /// Journals the end of the session; requests still in flight are cancelled.
    pub async fn close(&self, detail: &str) {
        // Its event streams end now: a revoked or closed session hears nothing more.
        self.ended.send_replace(true);
        // Requests still in flight end with the session: a call held for a human must not
        // go ahead, on a later approval, for a session (or a token) that no longer exists.
        let pending: Vec<oneshot::Sender<String>> = {
            let mut in_flight = lock(&self.in_flight);
            in_flight.closed = true;
            in_flight.cancels.drain().map(|(_, tx)| tx).collect()
        };
        for tx in pending {
            let _ = tx.send(format!("the session ended: {detail}"));
        }
        // Their withdrawal or outcome records go before the session's end (and before a
        // stopping Warden closes the journal), waiting a moment at most.
        let _ = tokio::time::timeout(CLOSE_WAITS_AT_MOST, async {
            loop {
                let settled = self.settled.notified();
                let mut settled = std::pin::pin!(settled);
                settled.as_mut().enable();
                if lock(&self.in_flight).running == 0 {
                    return;
                }
                settled.await;
            }
        })
        .await;
        let subscriptions: Vec<String> = lock(&self.subscriptions).drain().collect();
        for uri in subscriptions {
            if self.hub.release_subscription(&uri)
                && let Some((server, inner)) = self.hub.names.route_uri(&uri)
                && let Some(upstream) = self.hub.upstreams.get(&server)
            {
                // The answer is not awaited: dropping the request forgets it.
                drop(upstream.request("resources/unsubscribe", json!({ "uri": inner }), None));
            }
        }
        if let Err(err) = self
            .record(EventBody::SessionEnded {
                detail: detail.to_owned(),
            })
            .await
        {
            tracing::error!(%err, "could not journal the end of a session");
        }
    }

    /// Answers one request of the agent. `related` receives the notifications that belong to
    /// it (progress), when the transport can deliver them.
    pub async fn request(
        &self,
        id: &Value,
        method: &str,
        params: Value,
        related: Option<mpsc::UnboundedSender<Value>>,
    ) -> Value {
        let reply = match self.admit() {
            Err(failure) => Err(failure),
            Ok(_permit) => match self.track(id) {
                Err(failure) => Err(failure),
                Ok((_tracked, cancel_rx)) => {
                    self.dispatch(method, params, related, cancel_rx).await
                }
            },
        };
        match reply {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err(f) => {
                let mut error = json!({ "code": f.code, "message": f.message });
                if let Some(data) = f.data {
                    error["data"] = data;
                }
                json!({ "jsonrpc": "2.0", "id": id, "error": error })
            }
        }
    }

    /// Enters request `id` in the in-flight table: refused if the session is closed or a
    /// request with the same id is in flight (its cancellation would reach the wrong one).
    fn track(
        &self,
        id: &Value,
    ) -> Result<(Option<Tracked<'_>>, oneshot::Receiver<String>), Failure> {
        let (cancel_tx, cancel_rx) = oneshot::channel();
        let Some(key) = RequestId::from_value(id) else {
            return Ok((None, cancel_rx));
        };
        let mut in_flight = lock(&self.in_flight);
        if in_flight.closed {
            return Err(Failure::new(
                code::INVALID_REQUEST,
                "this session has ended: send initialize again",
            ));
        }
        if in_flight.cancels.contains_key(&key) {
            return Err(Failure::new(
                code::INVALID_REQUEST,
                "request id already in use by a request in flight",
            ));
        }
        in_flight.cancels.insert(key.clone(), cancel_tx);
        in_flight.running += 1;
        Ok((Some(Tracked { session: self, key }), cancel_rx))
    }

    /// Handles one notification of the agent.
    pub fn notification(&self, method: &str, params: &Value) {
        if method == "notifications/cancelled" {
            let reason = params
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("cancelled by the agent")
                .to_owned();
            let key = params.get("requestId").and_then(RequestId::from_value);
            if let Some(tx) = key.and_then(|k| lock(&self.in_flight).cancels.remove(&k)) {
                let _ = tx.send(reason);
            }
        }
        // `notifications/initialized`, `roots/list_changed` and the rest concern the session
        // between the agent and Warden; upstreams are shared and hear none of them.
    }

    /// Turns a notice of an upstream into what this agent should hear, if anything.
    pub fn translate_notice(&self, server: &ServerName, notice: &Notice) -> Option<Value> {
        let method = notice.method.as_str();
        match method {
            "notifications/tools/list_changed"
            | "notifications/prompts/list_changed"
            | "notifications/resources/list_changed" => {
                Some(json!({ "jsonrpc": "2.0", "method": method }))
            }
            "warden/upstream_ready" => Some(json!({
                "jsonrpc": "2.0",
                "method": "notifications/tools/list_changed",
            })),
            "notifications/resources/updated" => {
                let uri = notice.params.get("uri")?.as_str()?;
                let presented = self.hub.names.present_uri(server, uri)?;
                if !lock(&self.subscriptions).contains(&presented) {
                    return None;
                }
                Some(json!({
                    "jsonrpc": "2.0",
                    "method": method,
                    "params": { "uri": presented },
                }))
            }
            // Log messages of a shared upstream may concern any agent: not forwarded.
            _ => None,
        }
    }

    /// Passes what an upstream sent in the course of a request on to the agent. The
    /// upstream's own requests are actions of that server toward this agent: decided and
    /// journaled first, then sent to the agent under an id of Warden's.
    async fn relay(
        &self,
        upstream: &Upstream,
        message: Related,
        to_agent: &mpsc::UnboundedSender<Value>,
    ) {
        let (upstream_id, method, params) = match message {
            Related::Message(m) => {
                let _ = to_agent.send(m);
                return;
            }
            Related::ServerRequest { id, method, params } => (id, method, params),
        };
        let server = upstream.name().clone();
        let action = match actions::server_request(&server, &method) {
            Some(action) => action,
            None => {
                upstream.respond(
                    &upstream_id,
                    Err((
                        code::METHOD_NOT_FOUND,
                        format!("Warden does not relay {method} to agents"),
                    )),
                );
                return;
            }
        };
        let verdict = self.guard(&server).check(&action).await;
        if !forwards(&verdict) {
            let refusal = refusal_error(&self.agent, &verdict);
            upstream.respond(&upstream_id, Err((refusal.code, refusal.message)));
            return;
        }
        let n = self.next_server_request.fetch_add(1, Ordering::Relaxed);
        let ours = format!("warden-{n}");
        lock(&self.server_requests).insert(
            ours.clone(),
            ServerRequest {
                server,
                upstream_id,
                seq: verdict.seq.unwrap_or_default(),
            },
        );
        let _ = to_agent.send(json!({
            "jsonrpc": "2.0",
            "id": ours,
            "method": method,
            "params": params,
        }));
    }

    /// Takes the agent's answer to a request Warden relayed from an upstream.
    pub fn response(&self, message: &Value) {
        let Some(id) = message.get("id").and_then(Value::as_str) else {
            return;
        };
        let Some(request) = lock(&self.server_requests).remove(id) else {
            return;
        };
        let Some(upstream) = self.hub.upstreams.get(&request.server) else {
            return;
        };
        let outcome = match (message.get("result"), message.get("error")) {
            (Some(result), _) => Ok(result.clone()),
            (None, Some(error)) => Err((
                error
                    .get("code")
                    .and_then(Value::as_i64)
                    .unwrap_or(code::INTERNAL_ERROR),
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the agent refused without a message")
                    .to_owned(),
            )),
            (None, None) => return,
        };
        let (journaled, detail) = match &outcome {
            Ok(_) => (Outcome::Ok, String::new()),
            Err((_, message)) => (Outcome::RpcError, excerpt(message)),
        };
        self.guard(&request.server)
            .record_outcome(request.seq, journaled, detail);
        upstream.respond(&request.upstream_id, outcome);
    }

    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Failure> {
        {
            let mut bucket = lock(&self.limits.bucket);
            let now = Instant::now();
            let refill =
                now.duration_since(bucket.at).as_secs_f64() * self.hub.options.rate_per_agent;
            bucket.tokens = (bucket.tokens + refill).min(self.hub.options.burst_per_agent);
            bucket.at = now;
            if bucket.tokens < 1.0 {
                return Err(Failure::new(
                    code::OVERLOADED,
                    format!(
                        "agent \"{}\" is sending more than {} requests per second; slow down",
                        self.agent, self.hub.options.rate_per_agent
                    ),
                ));
            }
            bucket.tokens -= 1.0;
        }
        self.limits
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                Failure::new(
                    code::OVERLOADED,
                    format!(
                        "agent \"{}\" already has {} requests in flight; wait for one to finish",
                        self.agent, self.hub.options.max_in_flight_per_agent
                    ),
                )
            })
    }

    async fn dispatch(
        &self,
        method: &str,
        params: Value,
        related: Option<mpsc::UnboundedSender<Value>>,
        cancel: oneshot::Receiver<String>,
    ) -> Reply {
        match method {
            "initialize" => Ok(self.initialize(&params)),
            "ping" | "logging/setLevel" => Ok(json!({})),
            "tools/list" => self.list(ListKind::Tools, &params).await,
            "prompts/list" => self.list(ListKind::Prompts, &params).await,
            "resources/list" => self.list(ListKind::Resources, &params).await,
            "resources/templates/list" => self.list(ListKind::Templates, &params).await,
            "tools/call"
            | "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "completion/complete" => self.govern(method, params, related, cancel).await,
            "resources/unsubscribe" => self.unsubscribe(params, cancel).await,
            _ => Err(Failure::new(
                code::METHOD_NOT_FOUND,
                format!("Warden does not offer the method {method:?}"),
            )),
        }
    }

    fn initialize(&self, params: &Value) -> Value {
        let asked = params.get("protocolVersion").and_then(Value::as_str);
        let latest = KNOWN_PROTOCOL_VERSIONS[KNOWN_PROTOCOL_VERSIONS.len() - 1];
        let version = asked
            .filter(|v| KNOWN_PROTOCOL_VERSIONS.contains(v))
            .unwrap_or(latest);
        *lock(&self.protocol_version) = Some(version.to_owned());
        let instructions: Vec<String> = self
            .hub
            .upstreams()
            .filter_map(|u| {
                let d = u.description()?;
                let text = d.instructions.as_ref()?;
                let prefix = self.hub.names.present(u.name(), "").unwrap_or_default();
                Some(if prefix.is_empty() {
                    format!("Server \"{}\": {text}", u.name())
                } else {
                    format!(
                        "Server \"{}\" (its tools and prompts are prefixed \"{prefix}\"): {text}",
                        u.name()
                    )
                })
            })
            .collect();
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": { "listChanged": true },
                "prompts": { "listChanged": true },
                "resources": { "subscribe": true, "listChanged": true },
                "completions": {},
                "logging": {},
            },
            "serverInfo": { "name": "warden", "version": env!("CARGO_PKG_VERSION") },
        });
        if !instructions.is_empty() {
            result["instructions"] = Value::String(instructions.join("\n\n"));
        }
        result
    }

    fn guard(&self, server: &ServerName) -> &Guard {
        // Every upstream has a guard: both maps are built from the same keys.
        &self.guards[server]
    }

    /// One page of a merged list: a page of every upstream at once (asked concurrently), so
    /// that a client that reads only the first page still sees every server. Warden's cursor
    /// carries the cursor of each upstream that has more (hex of a JSON object), and the next
    /// page asks only those.
    async fn list(&self, kind: ListKind, params: &Value) -> Reply {
        let plan: Vec<(&Arc<Upstream>, Option<String>)> = match params.get("cursor") {
            None | Some(Value::Null) => self
                .hub
                .upstreams
                .values()
                .filter(|u| {
                    u.status() == UpstreamStatus::Ready
                        && u.description()
                            .is_some_and(|d| d.capabilities.get(kind.capability()).is_some())
                })
                .map(|u| (u, None))
                .collect(),
            Some(Value::String(cursor)) => {
                let invalid = || Failure::new(code::INVALID_PARAMS, "invalid cursor");
                let bytes = hex::decode(cursor).map_err(|_| invalid())?;
                let pages: BTreeMap<String, String> =
                    serde_json::from_slice(&bytes).map_err(|_| invalid())?;
                let mut plan = Vec::new();
                for (server, upstream_cursor) in pages {
                    let upstream = self.upstream_named(&server).ok_or_else(invalid)?;
                    plan.push((upstream, Some(upstream_cursor)));
                }
                plan
            }
            Some(_) => {
                return Err(Failure::new(
                    code::INVALID_PARAMS,
                    "cursor must be a string",
                ));
            }
        };
        let pages =
            futures_util::future::join_all(plan.into_iter().map(|(upstream, cursor)| async move {
                let params = match cursor {
                    Some(c) => json!({ "cursor": c }),
                    None => json!({}),
                };
                let answer = self.ask(upstream, kind.method(), params, None, None).await;
                (upstream, answer)
            }))
            .await;
        let mut items = Vec::new();
        let mut next: BTreeMap<String, String> = BTreeMap::new();
        for (upstream, answer) in pages {
            let result = match answer {
                Ok(result) => result,
                Err(failure) => {
                    // One upstream failing to list leaves the others' items listed.
                    tracing::warn!(server = %upstream.name(), message = %failure.message, "listing failed; skipped");
                    continue;
                }
            };
            for mut item in result
                .get(kind.key())
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                if self.may_see(kind, upstream.name(), &item)
                    && self.rename(kind, upstream.name(), &mut item)
                {
                    items.push(item);
                }
            }
            if let Some(cursor) = result.get("nextCursor").and_then(Value::as_str) {
                next.insert(upstream.name().to_string(), cursor.to_owned());
            }
        }
        let mut page = json!({ kind.key(): items });
        if !next.is_empty() {
            let encoded = serde_json::to_vec(&next).unwrap_or_default();
            page["nextCursor"] = Value::String(hex::encode(encoded));
        }
        Ok(page)
    }

    fn upstream_named(&self, server: &str) -> Option<&Arc<Upstream>> {
        let name = ServerName::new(server).ok()?;
        self.hub.upstreams.get(&name)
    }

    /// Renames a listed item into Warden's namespace; `false` when it must stay hidden.
    fn rename(&self, kind: ListKind, server: &ServerName, item: &mut Value) -> bool {
        let field = kind.field();
        let Some(name) = item.get(field).and_then(Value::as_str) else {
            return false;
        };
        let presented = match kind {
            ListKind::Tools | ListKind::Prompts => self.hub.names.present(server, name),
            ListKind::Resources | ListKind::Templates => self.hub.names.present_uri(server, name),
        };
        match presented {
            Some(p) => {
                item[field] = Value::String(p);
                true
            }
            None => {
                tracing::warn!(%server, name, "hidden: the name would be read as another server's");
                false
            }
        }
    }

    fn may_see(&self, kind: ListKind, server: &ServerName, item: &Value) -> bool {
        let Some(name) = item.get(kind.field()).and_then(Value::as_str) else {
            return false;
        };
        let policies = &self.hub.policies;
        match kind {
            ListKind::Tools => {
                ToolRef::new(server.clone(), name).is_ok_and(|t| policies.may_call(&self.agent, &t))
            }
            ListKind::Prompts => PromptRef::new(server.clone(), name)
                .is_ok_and(|p| policies.may_get_prompt(&self.agent, &p)),
            ListKind::Resources | ListKind::Templates => ResourceRef::new(server.clone(), name)
                .is_ok_and(|r| policies.may_read(&self.agent, &r)),
        }
    }

    /// Decides a governed request (see `actions`), journals the decision, and forwards it to
    /// its upstream in the upstream's own names if allowed.
    async fn govern(
        &self,
        method: &str,
        params: Value,
        related: Option<mpsc::UnboundedSender<Value>>,
        cancel: oneshot::Receiver<String>,
    ) -> Reply {
        let (server, upstream_params, presented_uri) = self.to_upstream(method, params)?;
        let requested = actions::requested(&server, method, &upstream_params)
            .map_err(|why| Failure::new(code::INVALID_PARAMS, why))?;
        let guard = self.guard(&server);
        let mut cancel = cancel;
        let verdict = match requested {
            Requested::Action(action) => {
                // A cancellation while the call is held for a human ends the hold: the agent's
                // own, or the session's end (then the table is closed, and Warden withdrew it).
                let withdrawn = async {
                    match (&mut cancel).await {
                        Ok(reason) => Withdrawal {
                            by: if lock(&self.in_flight).closed {
                                "warden"
                            } else {
                                "agent"
                            },
                            reason,
                        },
                        Err(_) => std::future::pending().await,
                    }
                };
                guard
                    .check_withdrawable(&action, serde_json::Map::new(), withdrawn, || {})
                    .await
            }
            Requested::Unusable {
                kind,
                target,
                arguments,
                why,
            } => guard.refuse(kind, target, &arguments, &why).await,
        };
        if let Some(reason) = &verdict.withdrawn {
            return Err(Failure::new(
                REQUEST_CANCELLED,
                format!("cancelled while held for approval: {reason}"),
            ));
        }
        if !forwards(&verdict) {
            // A refused tool call is a tool result the model can read; there is no such
            // form for the others.
            return if method == "tools/call" {
                Ok(refusal_result(&self.agent, &verdict))
            } else {
                Err(refusal_error(&self.agent, &verdict))
            };
        }
        let result = self
            .forward(&server, method, upstream_params, verdict, related, cancel)
            .await?;
        if method == "resources/subscribe"
            && let Some(uri) = presented_uri
            && lock(&self.subscriptions).insert(uri.clone())
        {
            lock(&self.hub.subscribers).add(uri);
        }
        Ok(result)
    }

    /// The upstream a governed request goes to, and its params in that upstream's names (and
    /// the URI as the agent presented it, for a resource).
    fn to_upstream(
        &self,
        method: &str,
        mut params: Value,
    ) -> Result<(ServerName, Value, Option<String>), Failure> {
        let field = |params: &Value, pointer: &str| {
            params
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    Failure::new(
                        code::INVALID_PARAMS,
                        format!("\"{}\" must be a string", &pointer[1..].replace('/', ".")),
                    )
                })
        };
        match method {
            "tools/call" | "prompts/get" => {
                let presented = field(&params, "/name")?;
                let (server, name) = self.resolve_name(&presented)?;
                params["name"] = Value::String(name.to_owned());
                Ok((server, params, None))
            }
            "resources/read" | "resources/subscribe" => {
                let presented = field(&params, "/uri")?;
                let (server, uri) = self.resolve_uri(&presented)?;
                params["uri"] = Value::String(uri.to_owned());
                Ok((server, params, Some(presented)))
            }
            "completion/complete" => {
                let kind = field(&params, "/ref/type")?;
                let (server, pointer, upstream) = if kind == "ref/resource" {
                    let presented = field(&params, "/ref/uri")?;
                    let (server, uri) = self.resolve_uri(&presented)?;
                    (server, "uri", uri.to_owned())
                } else {
                    let presented = field(&params, "/ref/name")?;
                    let (server, name) = self.resolve_name(&presented)?;
                    (server, "name", name.to_owned())
                };
                params["ref"][pointer] = Value::String(upstream);
                Ok((server, params, None))
            }
            _ => Err(Failure::new(
                code::METHOD_NOT_FOUND,
                format!("{method} is not an action"),
            )),
        }
    }

    async fn unsubscribe(&self, params: Value, cancel: oneshot::Receiver<String>) -> Reply {
        let presented = params
            .get("uri")
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::new(code::INVALID_PARAMS, "\"uri\" must be a string"))?
            .to_owned();
        let (server, uri) = self.resolve_uri(&presented)?;
        let was_subscribed = lock(&self.subscriptions).remove(&presented);
        if !was_subscribed || !self.hub.release_subscription(&presented) {
            // Other sessions still follow it (or this one never did): the upstream keeps it.
            return Ok(json!({}));
        }
        let upstream = &self.hub.upstreams[&server];
        let upstream_params = with_name(params, "uri", uri);
        self.ask(
            upstream,
            "resources/unsubscribe",
            upstream_params,
            None,
            Some(cancel),
        )
        .await
    }

    fn resolve_name<'a>(&self, presented: &'a str) -> Result<(ServerName, &'a str), Failure> {
        let route = self.hub.names.route(presented);
        self.resolved(route, presented, "name", "<server>__<name>")
    }

    fn resolve_uri<'a>(&self, presented: &'a str) -> Result<(ServerName, &'a str), Failure> {
        let route = self.hub.names.route_uri(presented);
        self.resolved(route, presented, "resource", "<server>+<uri>")
    }

    /// A route to a configured upstream, or the error naming the expected `shape`.
    fn resolved<'a>(
        &self,
        route: Option<(ServerName, &'a str)>,
        presented: &str,
        what: &str,
        shape: &str,
    ) -> Result<(ServerName, &'a str), Failure> {
        match route {
            Some((server, inner)) if self.hub.upstreams.contains_key(&server) => {
                Ok((server, inner))
            }
            _ => Err(Failure::new(
                code::INVALID_PARAMS,
                format!(
                    "unknown {what} {:?}: Warden lists them as \"{shape}\"",
                    warden_core::escape_for_display(presented)
                ),
            )),
        }
    }

    /// Sends an allowed action upstream, journals its outcome, and presents the result in
    /// Warden's namespace.
    async fn forward(
        &self,
        server: &ServerName,
        method: &str,
        params: Value,
        verdict: Verdict,
        related: Option<mpsc::UnboundedSender<Value>>,
        cancel: oneshot::Receiver<String>,
    ) -> Reply {
        let guard = self.guard(server);
        let seq = verdict.seq.unwrap_or_default();
        let upstream = &self.hub.upstreams[server];
        let mut reply = self
            .ask(upstream, method, params, related, Some(cancel))
            .await;
        let labels = match &mut reply {
            Ok(result) => inspect(result, self.hub.options.redact_secrets),
            Err(_) => Vec::new(),
        };
        let (outcome, detail) = match &reply {
            Ok(result) if result.get("isError") == Some(&Value::Bool(true)) => {
                let text = result
                    .pointer("/content/0/text")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                (Outcome::ToolError, excerpt(text))
            }
            Ok(_) => (Outcome::Ok, String::new()),
            Err(f) if f.code == code::UPSTREAM_TIMEOUT => (Outcome::Timeout, excerpt(&f.message)),
            Err(f) if f.code == code::UPSTREAM_GONE => (Outcome::UpstreamGone, excerpt(&f.message)),
            Err(f) if f.code == REQUEST_CANCELLED => (Outcome::Cancelled, excerpt(&f.message)),
            Err(f) => (Outcome::RpcError, excerpt(&f.message)),
        };
        guard.record_outcome_labelled(seq, outcome, detail, labels);
        let mut result = reply?;
        present_uris(&self.hub.names, server, &mut result);
        Ok(result)
    }

    /// Sends a request to an upstream and waits for its answer, a timeout or a cancellation.
    /// Meanwhile, what the upstream sends in its course is relayed to the agent on `related`
    /// (when the agent's transport can carry it), its own requests decided first.
    async fn ask(
        &self,
        upstream: &Upstream,
        method: &str,
        params: Value,
        related: Option<mpsc::UnboundedSender<Value>>,
        cancel: Option<oneshot::Receiver<String>>,
    ) -> Reply {
        let (from_upstream, mut relayed) = match &related {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let mut flight = upstream
            .request(method, params, from_upstream)
            .map_err(|e| Failure::new(e.code(), e.to_string()))?;
        let timeout = self.hub.options.call_timeout;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut cancelled = std::pin::pin!(async {
            match cancel {
                Some(rx) => rx.await.ok(),
                None => std::future::pending().await,
            }
        });
        let answer = loop {
            // Biased, messages first: what the upstream sent before its answer reaches the
            // agent before the answer does.
            tokio::select! {
                biased;
                Some(message) = recv_some(&mut relayed) => {
                    if let Some(to_agent) = &related {
                        self.relay(upstream, message, to_agent).await;
                    }
                }
                answer = flight.answer() => break answer,
                () = &mut deadline => {
                    flight.cancel("Warden's time limit for the request expired");
                    return Err(Failure::new(
                        code::UPSTREAM_TIMEOUT,
                        format!(
                            "upstream server \"{}\" did not answer {method} within {timeout:?}",
                            upstream.name()
                        ),
                    ));
                }
                Some(reason) = &mut cancelled => {
                    flight.cancel(&reason);
                    return Err(Failure::new(REQUEST_CANCELLED, format!("cancelled: {reason}")));
                }
            }
        };
        // The answer and the last messages can become ready together: the upstream wrote the
        // messages first, so they are already queued; relay them before answering.
        if let (Some(rx), Some(to_agent)) = (relayed.as_mut(), &related) {
            while let Ok(message) = rx.try_recv() {
                self.relay(upstream, message, to_agent).await;
            }
        }
        let answer = answer.map_err(|e| Failure::new(e.code(), e.to_string()))?;
        if let Some(error) = answer.get("error") {
            return Err(Failure {
                code: error
                    .get("code")
                    .and_then(Value::as_i64)
                    .unwrap_or(code::INTERNAL_ERROR),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the upstream failed without a message")
                    .to_owned(),
                data: error.get("data").cloned(),
            });
        }
        Ok(answer.get("result").cloned().unwrap_or_else(|| json!({})))
    }
}

/// The next message on `rx`, or never when there is no channel.
async fn recv_some(rx: &mut Option<mpsc::UnboundedReceiver<Related>>) -> Option<Related> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The code of the error answering a request the agent cancelled.
const REQUEST_CANCELLED: i64 = -32800;

fn refusal_error(agent: &AgentId, verdict: &Verdict) -> Failure {
    let (code, message, data) = super::refusal::refusal_error(agent, verdict);
    Failure {
        code,
        message,
        data: Some(data),
    }
}

fn with_name(mut params: Value, field: &str, value: &str) -> Value {
    params[field] = Value::String(value.to_owned());
    params
}

/// Rewrites the resource URIs inside a result (resource links, embedded resources, read
/// contents) so that the agent can read them back through Warden.
fn present_uris(names: &Namespaces, server: &ServerName, result: &mut Value) {
    let fix = |v: &mut Value| {
        if let Some(Value::String(uri)) = v.get_mut("uri")
            && let Some(presented) = names.present_uri(server, uri)
        {
            *uri = presented;
        }
    };
    for key in ["content", "contents"] {
        if let Some(items) = result.get_mut(key).and_then(Value::as_array_mut) {
            for item in items {
                fix(item);
                if let Some(resource) = item.get_mut("resource") {
                    fix(resource);
                }
            }
        }
    }
    if let Some(messages) = result.get_mut("messages").and_then(Value::as_array_mut) {
        for message in messages {
            if let Some(content) = message.get_mut("content") {
                fix(content);
                if let Some(resource) = content.get_mut("resource") {
                    fix(resource);
                }
            }
        }
    }
}

/// A short, redacted excerpt of free text from an upstream, for the journal.
fn excerpt(s: &str) -> String {
    let mut s = warden_core::redact::redact_text(s);
    if s.len() > 200 {
        s.truncate(s.floor_char_boundary(200));
        s.push('…');
    }
    s
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_unsubscribes_only_when_the_last_session_does() {
        let mut s = Subscribers::default();
        s.add("files+file:///a".into());
        s.add("files+file:///a".into());
        assert!(
            !s.release("files+file:///a"),
            "another session still follows it"
        );
        assert!(s.release("files+file:///a"));
        assert!(s.release("files+file:///never"), "nobody follows it");
    }
}
