//! One agent's MCP session through Warden over stdio: Warden is the MCP server on the agent's
//! side and the MCP client of the upstream server it spawns.
//!
//! Four tasks move bytes: the agent reader classifies each message and, for a `tools/call`,
//! starts its decision; the forwarder delivers messages strictly in the order the agent sent
//! them, waiting where a decision is still being journaled (so group commit can batch many
//! calls while no message overtakes another); the upstream reader routes the upstream's
//! messages back; two writers own the pipes.
//!
//! INVARIANT: a `tools/call` reaches the upstream only from the forwarder, only after its
//! `Verdict` allows it, which implies its decision record is durable (see `guard`).
//! INVARIANT: every request of the agent that Warden accepted gets exactly one answer: the
//! upstream's, a refusal, or an error (timeout, upstream gone, too large).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use warden_core::{EventBody, Outcome, PromptRef, ResourceRef, ServerName, ToolRef};

use super::actions::{self, Requested};
use super::framing::{Frame, FrameReader};
use super::inspect::inspect;
use super::jsonrpc::{self, Message, RequestId, code, error_line, result_line, sniff_id};
use super::refusal::{refusal_error, refusal_result};
use crate::approval::Withdrawal;
use crate::guard::{Guard, forwards};

/// MCP protocol versions whose messages this gateway knows how to govern.
pub const KNOWN_PROTOCOL_VERSIONS: &[&str] =
    &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The upstream MCP server to spawn.
#[derive(Debug, Clone)]
pub struct UpstreamCommand {
    /// The program.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Its working directory (Warden's own when `None`).
    pub cwd: Option<PathBuf>,
    /// Variables set in its environment, over Warden's own.
    pub env: Vec<(OsString, OsString)>,
    /// Variables of Warden's environment it must not see (credentials Warden holds for other
    /// servers).
    pub env_remove: Vec<OsString>,
}

impl UpstreamCommand {
    /// Applies the working directory and environment to `command`.
    pub fn configure(&self, command: &mut Command) {
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        for name in &self.env_remove {
            command.env_remove(name);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
    }
}

/// Bounds of a session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The largest message accepted from either side, in bytes.
    pub max_message_bytes: usize,
    /// The most requests of the agent in flight at once.
    pub max_in_flight: usize,
    /// How long the upstream may take to answer `initialize`.
    pub initialize_timeout: Duration,
    /// How long the upstream may take to answer any other request.
    pub call_timeout: Duration,
    /// How long the upstream may take to exit once its input is closed.
    pub shutdown_grace: Duration,
    /// Replace the secrets the response scanner finds before the agent sees them.
    pub redact_secrets: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            redact_secrets: true,
            max_in_flight: 256,
            initialize_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The agent closed its input; the upstream was then shut down.
    AgentClosed,
    /// The upstream exited (or closed its output) first.
    UpstreamExited {
        /// Its exit status, as text.
        status: String,
    },
}

/// A session that could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The upstream server could not be started.
    #[error("could not start the upstream server {program:?}")]
    Spawn {
        /// The program.
        program: OsString,
        /// Why.
        source: std::io::Error,
    },
    /// The journal refused the session's first record, so nothing may proceed.
    #[error("the journal could not record the start of the session: {0}")]
    Journal(#[from] warden_journal::JournalError),
}

/// Runs one session until the agent or the upstream goes away.
pub async fn serve_stdio<R, W>(
    guard: Guard,
    server: ServerName,
    upstream: UpstreamCommand,
    options: SessionOptions,
    agent_in: R,
    agent_out: W,
) -> Result<SessionEnd, SessionError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    guard
        .record(EventBody::SessionStarted {
            server: server.as_str().to_owned(),
            warden_version: env!("CARGO_PKG_VERSION").to_owned(),
            parent: None,
        })
        .await?;

    let mut command = Command::new(&upstream.program);
    command
        .args(&upstream.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    upstream.configure(&mut command);
    let mut child = command.spawn().map_err(|source| SessionError::Spawn {
        program: upstream.program.clone(),
        source,
    })?;
    let (Some(child_in), Some(child_out)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(SessionError::Spawn {
            program: upstream.program,
            source: std::io::Error::other("the upstream's pipes were not created"),
        });
    };

    let (agent_tx, agent_rx) = mpsc::channel(1024);
    let (upstream_tx, upstream_rx) = mpsc::channel(1024);
    let (steps_tx, steps_rx) = mpsc::channel(options.max_in_flight.max(1));
    let grace = options.shutdown_grace;
    let session = Arc::new(Session {
        guard: guard.clone(),
        server,
        options,
        pending: Mutex::new(HashMap::new()),
        to_agent: Mutex::new(Some(agent_tx)),
        to_upstream: Mutex::new(Some(upstream_tx)),
        upstream_gone: AtomicBool::new(false),
        // From 1: a decision that found no entry holds generation 0, which matches none.
        generation: AtomicU64::new(1),
        held: Mutex::new(Vec::new()),
    });

    let agent_writer = tokio::spawn(write_loop(agent_out, agent_rx));
    let upstream_writer = tokio::spawn(write_loop(child_in, upstream_rx));
    let mut forwarder = tokio::spawn(session.clone().forward_loop(steps_rx));
    let mut upstream_reader = tokio::spawn(session.clone().upstream_loop(child_out));
    let mut agent_reader = tokio::spawn(session.clone().agent_loop(agent_in, steps_tx));

    let agent_closed_first = tokio::select! {
        _ = &mut agent_reader => true,
        _ = &mut upstream_reader => false,
    };
    // The upstream's output may have closed (and its calls failed) before the agent closed,
    // with its reader not yet finished: the upstream still went first.
    let upstream_went_first = !agent_closed_first || session.upstream_gone.load(Ordering::SeqCst);
    if agent_closed_first {
        // Deliver what the agent sent before closing, then close the upstream's input and
        // give it time to exit on its own.
        let _ = (&mut forwarder).await;
        // Calls still held for a human end with the session: approved later, they would
        // have nowhere to go. Their withdrawal is journaled before the session's end.
        session
            .withdraw_held(if upstream_went_first {
                "the upstream server exited"
            } else {
                "the agent closed the session"
            })
            .await;
        session.close_upstream();
        if tokio::time::timeout(grace, &mut upstream_reader)
            .await
            .is_err()
        {
            tracing::warn!("the upstream server did not exit within {grace:?}; killing it");
            let _ = child.start_kill();
            let _ = (&mut upstream_reader).await;
        }
    } else {
        agent_reader.abort();
        let _ = (&mut forwarder).await;
        session.withdraw_held("the upstream server exited").await;
        session.close_upstream();
    }
    let _ = upstream_writer.await;
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        Ok(Err(err)) => format!("unknown ({err})"),
        Err(_) => {
            let _ = child.kill().await;
            "killed after the grace period".to_owned()
        }
    };
    session.close_agent();
    let _ = agent_writer.await;

    let end = if !upstream_went_first {
        SessionEnd::AgentClosed
    } else {
        SessionEnd::UpstreamExited { status }
    };
    let detail = match &end {
        SessionEnd::AgentClosed => "the agent closed the session".to_owned(),
        SessionEnd::UpstreamExited { status } => format!("the upstream server exited: {status}"),
    };
    if let Err(err) = guard.record(EventBody::SessionEnded { detail }).await {
        tracing::error!(%err, "could not journal the end of the session");
    }
    Ok(end)
}

pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(mut out: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = rx.recv().await {
        if out.write_all(&bytes).await.is_err() {
            break;
        }
        // Flush once the queue is empty, so bursts share a flush.
        if rx.is_empty() && out.flush().await.is_err() {
            break;
        }
    }
    let _ = out.flush().await;
    let _ = out.shutdown().await;
}

/// What an in-flight request of the agent is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingKind {
    /// A `tools/call` whose decision is being made and journaled.
    Deciding,
    /// `initialize`: the answer's protocol version is checked.
    Initialize,
    /// A list (`tools/list`, `prompts/list`, …): the answer is filtered to what the agent
    /// may use.
    List(ListKind),
    /// An allowed action (`tools/call`, `resources/read`, …): its result is scanned and its
    /// outcome journaled.
    Governed { seq: u64 },
    /// Anything else: passed through.
    Other,
}

#[derive(Debug)]
struct Pending {
    id: Value,
    method: String,
    kind: PendingKind,
    generation: u64,
    timer: Option<AbortHandle>,
    /// While the call is being decided: ends its hold for a human when the agent cancels it.
    withdraw: Option<oneshot::Sender<Withdrawal>>,
}

/// Where a message goes once it is its turn.
enum Routed {
    /// To the upstream: a request (with its key, to time it), a notification or a response.
    Upstream {
        bytes: Vec<u8>,
        request: Option<RequestId>,
        /// A `notifications/cancelled`: the request it cancels, and why.
        cancels: Option<(RequestId, String)>,
    },
    /// Back to the agent.
    Agent(Vec<u8>),
    /// Nowhere (its answer was already given).
    Nothing,
}

/// A request being decided: what is needed to answer it or pass it on.
struct Deciding {
    key: RequestId,
    /// The generation of its entry: the id may be answered elsewhere (the upstream's exit)
    /// and then reused by a new request, which this decision must not touch.
    generation: u64,
    id: Value,
    method: String,
    /// The line as the agent sent it.
    bytes: Vec<u8>,
}

/// A message's place in the agent's order.
enum Step {
    Ready(Routed),
    Deciding {
        id: Value,
        key: RequestId,
        decision: JoinHandle<Routed>,
        /// Fires if the call is held for a human: it then steps out of the agent's order.
        held: oneshot::Receiver<()>,
    },
}

struct Session {
    guard: Guard,
    /// The one upstream server, as policy names it.
    server: ServerName,
    options: SessionOptions,
    pending: Mutex<HashMap<RequestId, Pending>>,
    to_agent: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    to_upstream: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    upstream_gone: AtomicBool,
    generation: AtomicU64,
    /// The decisions that stepped out of the agent's order to wait for a human.
    held: Mutex<Vec<JoinHandle<()>>>,
}

// === impl Session: from the agent ===

impl Session {
    async fn agent_loop<R: AsyncRead + Unpin>(
        self: Arc<Self>,
        input: R,
        steps: mpsc::Sender<Step>,
    ) {
        let max = self.options.max_message_bytes;
        let mut reader = FrameReader::new(BufReader::new(input), max);
        loop {
            let step = match reader.next().await {
                Ok(Frame::Eof) => break,
                Err(err) => {
                    tracing::warn!(%err, "reading from the agent failed; ending the session");
                    break;
                }
                Ok(Frame::Oversize { len, head, tail }) => {
                    let id = sniff_id(&head, &tail);
                    let id = id.filter(|id| {
                        RequestId::from_value(id).is_some_and(|k| !self.lock().contains_key(&k))
                    });
                    Step::Ready(Routed::Agent(error_line(
                        id.as_ref(),
                        code::TOO_LARGE,
                        &format!(
                            "message of {len} bytes exceeds Warden's limit of {max} bytes \
                             (limits.max_message_bytes); it was discarded"
                        ),
                        None,
                    )))
                }
                Ok(Frame::Line(bytes)) => self.route_from_agent(bytes),
            };
            if steps.send(step).await.is_err() {
                break;
            }
        }
    }

    fn route_from_agent(self: &Arc<Self>, mut bytes: Vec<u8>) -> Step {
        let reply = |id: Option<&Value>, code, msg: &str| {
            Step::Ready(Routed::Agent(error_line(id, code, msg, None)))
        };
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(err) => return reply(None, code::PARSE_ERROR, &format!("not valid JSON: {err}")),
        };
        let message = match jsonrpc::classify(&value) {
            Ok(m) => m,
            Err(err) => return reply(err.id.as_ref(), code::INVALID_REQUEST, &err.why),
        };
        if jsonrpc::has_duplicate_keys(&bytes) {
            let id = value
                .get("id")
                .filter(|id| RequestId::from_value(id).is_some());
            return reply(
                id,
                code::INVALID_REQUEST,
                "repeated object keys are refused: a server might read them differently",
            );
        }
        // Frames come without their newline; what is passed on is the line as sent.
        bytes.push(b'\n');
        match message {
            Message::Request { id, key, method } => {
                let kind = match method.as_str() {
                    "initialize" => PendingKind::Initialize,
                    m if actions::is_governed(m) => PendingKind::Deciding,
                    m => ListKind::of(m).map_or(PendingKind::Other, PendingKind::List),
                };
                if let Err((code, why)) = self.register(&key, &id, &method, kind) {
                    return reply(Some(&id), code, why);
                }
                if kind != PendingKind::Deciding {
                    return Step::Ready(Routed::Upstream {
                        bytes,
                        request: Some(key),
                        cancels: None,
                    });
                }
                let params = value.get("params").cloned().unwrap_or(Value::Null);
                let requested = match actions::requested(&self.server, &method, &params) {
                    Ok(r) => r,
                    Err(why) => {
                        self.lock().remove(&key);
                        return reply(Some(&id), code::INVALID_PARAMS, &why);
                    }
                };
                let (withdraw, withdrawn) = oneshot::channel();
                let mut generation = 0;
                if let Some(entry) = self.lock().get_mut(&key) {
                    entry.withdraw = Some(withdraw);
                    generation = entry.generation;
                }
                let (on_hold, held) = oneshot::channel();
                let session = self.clone();
                let decision_key = key.clone();
                let decision_id = id.clone();
                let decision = tokio::spawn(async move {
                    let deciding = Deciding {
                        key: decision_key,
                        generation,
                        id: decision_id,
                        method,
                        bytes,
                    };
                    session
                        .decide(deciding, requested, withdrawn, on_hold)
                        .await
                });
                Step::Deciding {
                    id,
                    key,
                    decision,
                    held,
                }
            }
            Message::Notification { method } => {
                // Every MCP notification is named notifications/…. Anything else without an
                // id is a request in disguise (a tools/call sent as a notification would skip
                // the decision), so it goes nowhere.
                if !method.starts_with("notifications/") {
                    tracing::warn!(%method, "dropped a request sent without an id");
                    if actions::is_governed(&method) {
                        self.refuse_unanswerable(&method, &value);
                    }
                    return Step::Ready(Routed::Nothing);
                }
                let cancels = (method == "notifications/cancelled")
                    .then(|| {
                        let key = value
                            .pointer("/params/requestId")
                            .and_then(RequestId::from_value)?;
                        let reason = value
                            .pointer("/params/reason")
                            .and_then(Value::as_str)
                            .unwrap_or("cancelled by the agent");
                        Some((key, reason.to_owned()))
                    })
                    .flatten();
                Step::Ready(Routed::Upstream {
                    bytes,
                    request: None,
                    cancels,
                })
            }
            Message::Response { .. } => Step::Ready(Routed::Upstream {
                bytes,
                request: None,
                cancels: None,
            }),
        }
    }

    fn register(
        &self,
        key: &RequestId,
        id: &Value,
        method: &str,
        kind: PendingKind,
    ) -> Result<(), (i64, &'static str)> {
        let mut pending = self.lock();
        if pending.contains_key(key) {
            return Err((
                code::INVALID_REQUEST,
                "request id already in use by a request in flight",
            ));
        }
        if pending.len() >= self.options.max_in_flight {
            return Err((
                code::OVERLOADED,
                "too many requests in flight at once; wait for answers",
            ));
        }
        pending.insert(
            key.clone(),
            Pending {
                id: id.clone(),
                method: method.to_owned(),
                kind,
                generation: self.generation.fetch_add(1, Ordering::Relaxed),
                timer: None,
                withdraw: None,
            },
        );
        Ok(())
    }

    /// Journals the refusal of an action that cannot be answered (it has no id), so the
    /// attempt is on record even though the agent hears nothing, as JSON-RPC requires.
    fn refuse_unanswerable(&self, method: &str, value: &Value) {
        let params = value.get("params").cloned().unwrap_or(Value::Null);
        let why = format!("{method} sent as a notification (without an id); refused");
        let (kind, target, arguments) = match actions::requested(&self.server, method, &params) {
            Ok(Requested::Action(action)) => {
                let arguments = params
                    .get("arguments")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                (action.kind(), action.target(), arguments)
            }
            Ok(Requested::Unusable {
                kind,
                target,
                arguments,
                ..
            }) => (kind, target, arguments),
            Err(_) => return,
        };
        let guard = self.guard.clone();
        tokio::spawn(async move {
            guard.refuse(kind, target, &arguments, &why).await;
        });
    }

    async fn decide(
        self: Arc<Self>,
        deciding: Deciding,
        requested: Requested,
        withdrawn: oneshot::Receiver<Withdrawal>,
        on_hold: oneshot::Sender<()>,
    ) -> Routed {
        let Deciding {
            key,
            generation,
            id,
            method,
            bytes,
        } = deciding;
        let verdict = match requested {
            Requested::Action(action) => {
                // Who withdrew it travels with the withdrawal: the agent's cancellation and
                // the session's end can come at the same moment.
                let withdrawn = async {
                    match withdrawn.await {
                        Ok(withdrawal) => withdrawal,
                        Err(_) => std::future::pending().await,
                    }
                };
                let on_hold = move || {
                    let _ = on_hold.send(());
                };
                self.guard
                    .check_withdrawable(&action, Map::new(), withdrawn, on_hold)
                    .await
            }
            Requested::Unusable {
                kind,
                target,
                arguments,
                why,
            } => self.guard.refuse(kind, target, &arguments, &why).await,
        };
        if verdict.withdrawn.is_some() {
            // Cancelled while held: the agent expects no answer, and nothing went upstream.
            self.take_own(&key, generation);
            return Routed::Nothing;
        }
        match verdict.seq {
            Some(seq) if forwards(&verdict) => {
                let mut pending = self.lock();
                if let Some(entry) = pending
                    .get_mut(&key)
                    .filter(|entry| entry.generation == generation)
                {
                    entry.kind = PendingKind::Governed { seq };
                    return Routed::Upstream {
                        bytes,
                        request: Some(key),
                        cancels: None,
                    };
                }
                drop(pending);
                // The upstream went away while the decision was journaled; the agent has
                // already been told.
                self.guard.record_outcome(
                    seq,
                    Outcome::UpstreamGone,
                    "the upstream server exited before the request was forwarded",
                );
                Routed::Nothing
            }
            _ => {
                if self.take_own(&key, generation).is_none() {
                    // Already answered (the upstream exited while a human decided).
                    return Routed::Nothing;
                }
                // A refused tool call is a tool result the model can read; there is no such
                // form for the other actions.
                if method == "tools/call" {
                    Routed::Agent(result_line(
                        &id,
                        refusal_result(self.guard.agent(), &verdict),
                    ))
                } else {
                    let (code, message, data) = refusal_error(self.guard.agent(), &verdict);
                    Routed::Agent(error_line(Some(&id), code, &message, Some(data)))
                }
            }
        }
    }
}

/// The lists whose answers are filtered to what the agent may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    fn of(method: &str) -> Option<Self> {
        Some(match method {
            "tools/list" => ListKind::Tools,
            "prompts/list" => ListKind::Prompts,
            "resources/list" => ListKind::Resources,
            "resources/templates/list" => ListKind::Templates,
            _ => return None,
        })
    }

    /// Where the items are, and the field naming each.
    fn path(self) -> (&'static str, &'static str) {
        match self {
            ListKind::Tools => ("/result/tools", "name"),
            ListKind::Prompts => ("/result/prompts", "name"),
            ListKind::Resources => ("/result/resources", "uri"),
            ListKind::Templates => ("/result/resourceTemplates", "uriTemplate"),
        }
    }
}

// === impl Session: in the agent's order ===

impl Session {
    async fn forward_loop(self: Arc<Self>, mut steps: mpsc::Receiver<Step>) {
        while let Some(step) = steps.recv().await {
            let routed = match step {
                Step::Ready(routed) => routed,
                Step::Deciding {
                    id,
                    key,
                    mut decision,
                    held,
                } => {
                    tokio::select! {
                        biased;
                        decided = &mut decision => self.decided(&id, &key, decided),
                        Ok(()) = held => {
                            // Held for a human, maybe for minutes: the agent's later messages
                            // (pings, other calls, a cancellation of this one) go on without it.
                            let session = self.clone();
                            let waiting = tokio::spawn(async move {
                                let routed = session.decided(&id, &key, decision.await);
                                session.deliver(routed).await;
                            });
                            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                            held.retain(|h| !h.is_finished());
                            held.push(waiting);
                            continue;
                        }
                    }
                }
            };
            self.deliver(routed).await;
        }
    }

    /// What a finished decision task sends where.
    fn decided(
        &self,
        id: &Value,
        key: &RequestId,
        decided: Result<Routed, tokio::task::JoinError>,
    ) -> Routed {
        decided.unwrap_or_else(|err| {
            // The decision task failed: refuse, as for any decision not made.
            tracing::error!(%err, "a decision task failed");
            self.lock().remove(key);
            Routed::Agent(error_line(
                Some(id),
                code::INTERNAL_ERROR,
                "Warden could not decide this call; it was not forwarded",
                None,
            ))
        })
    }

    async fn deliver(self: &Arc<Self>, routed: Routed) {
        match routed {
            Routed::Nothing => {}
            Routed::Agent(bytes) => self.send_agent(bytes).await,
            Routed::Upstream {
                bytes,
                request,
                cancels,
            } => {
                if let Some((key, reason)) = cancels
                    && self.note_cancelled(&key, reason)
                {
                    // The request never reached the upstream: nothing to tell it.
                    return;
                }
                let sent = if self.upstream_gone.load(Ordering::SeqCst) {
                    false
                } else {
                    if let Some(key) = &request {
                        self.start_timer(key);
                    }
                    let sender = self.to_upstream.lock().ok().and_then(|s| s.clone());
                    match sender {
                        Some(tx) => tx.send(bytes).await.is_ok(),
                        None => false,
                    }
                };
                if !sent && let Some(key) = request {
                    self.fail(
                        &key,
                        code::UPSTREAM_GONE,
                        "the upstream server is not running",
                        Outcome::UpstreamGone,
                    )
                    .await;
                }
            }
        }
    }

    /// Withdraws every call still held for a human and waits (for the shutdown grace at
    /// most) until each has journaled how it ended.
    async fn withdraw_held(&self, reason: &str) {
        let withdraws: Vec<oneshot::Sender<Withdrawal>> = self
            .lock()
            .values_mut()
            .filter(|entry| entry.kind == PendingKind::Deciding)
            .filter_map(|entry| entry.withdraw.take())
            .collect();
        for withdraw in withdraws {
            let _ = withdraw.send(Withdrawal {
                by: "warden",
                reason: reason.to_owned(),
            });
        }
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner()));
        let settled = async {
            for waiting in held {
                let _ = waiting.await;
            }
        };
        if tokio::time::timeout(self.options.shutdown_grace, settled)
            .await
            .is_err()
        {
            tracing::warn!("calls held for a human did not end within the shutdown grace");
        }
    }

    /// Notes the agent's cancellation of `key`. True when the request was still being
    /// decided (held for a human): its hold ends here and the upstream never hears of it.
    fn note_cancelled(&self, key: &RequestId, reason: String) -> bool {
        let mut pending = self.lock();
        let Some(entry) = pending.get_mut(key) else {
            return false;
        };
        if entry.kind == PendingKind::Deciding
            && let Some(withdraw) = entry.withdraw.take()
        {
            return withdraw
                .send(Withdrawal {
                    by: "agent",
                    reason,
                })
                .is_ok();
        }
        if let PendingKind::Governed { seq } = entry.kind {
            if let Some(entry) = pending.remove(key)
                && let Some(timer) = entry.timer
            {
                timer.abort();
            }
            drop(pending);
            self.guard
                .record_outcome(seq, Outcome::Cancelled, "cancelled by the agent");
        }
        false
    }

    fn start_timer(self: &Arc<Self>, key: &RequestId) {
        let mut pending = self.lock();
        let Some(entry) = pending.get_mut(key) else {
            return;
        };
        let timeout = if entry.kind == PendingKind::Initialize {
            self.options.initialize_timeout
        } else {
            self.options.call_timeout
        };
        let generation = entry.generation;
        let session = self.clone();
        let key = key.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            session.expire(key, generation, timeout).await;
        });
        entry.timer = Some(timer.abort_handle());
    }

    async fn expire(&self, key: RequestId, generation: u64, after: Duration) {
        let entry = {
            let mut pending = self.lock();
            match pending.get(&key) {
                Some(e) if e.generation == generation => pending.remove(&key),
                _ => None,
            }
        };
        let Some(entry) = entry else {
            return;
        };
        let message = format!(
            "the upstream server did not answer {} within {}s",
            entry.method,
            after.as_secs_f64()
        );
        if let PendingKind::Governed { seq } = entry.kind {
            self.guard.record_outcome(seq, Outcome::Timeout, &message);
        }
        self.send_agent(error_line(
            Some(&entry.id),
            code::UPSTREAM_TIMEOUT,
            &message,
            None,
        ))
        .await;
        let cancel = jsonrpc::line(&json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": { "requestId": entry.id, "reason": message },
        }));
        let sender = self.to_upstream.lock().ok().and_then(|s| s.clone());
        if let Some(tx) = sender {
            let _ = tx.send(cancel).await;
        }
    }

    /// Answers a request with an error and journals the outcome of a call.
    async fn fail(&self, key: &RequestId, code: i64, message: &str, outcome: Outcome) {
        let entry = self.lock().remove(key);
        let Some(entry) = entry else {
            return;
        };
        if let Some(timer) = entry.timer {
            timer.abort();
        }
        if let PendingKind::Governed { seq } = entry.kind {
            self.guard.record_outcome(seq, outcome, message);
        }
        self.send_agent(error_line(Some(&entry.id), code, message, None))
            .await;
    }
}

// === impl Session: from the upstream ===

impl Session {
    async fn upstream_loop<R: AsyncRead + Unpin>(self: Arc<Self>, output: R) {
        let max = self.options.max_message_bytes;
        let mut reader = FrameReader::new(BufReader::new(output), max);
        loop {
            match reader.next().await {
                Ok(Frame::Eof) => break,
                Err(err) => {
                    tracing::warn!(%err, "reading from the upstream server failed");
                    break;
                }
                Ok(Frame::Oversize { len, head, tail }) => {
                    let key = sniff_id(&head, &tail).and_then(|id| RequestId::from_value(&id));
                    let message = format!(
                        "the upstream server's message of {len} bytes exceeds Warden's limit of \
                         {max} bytes (limits.max_message_bytes); it was discarded"
                    );
                    tracing::warn!("{message}");
                    if let Some(key) = key {
                        self.fail(&key, code::TOO_LARGE, &message, Outcome::RpcError)
                            .await;
                    }
                }
                Ok(Frame::Line(bytes)) => self.route_from_upstream(bytes).await,
            }
        }
        self.upstream_gone.store(true, Ordering::SeqCst);
        let orphans: Vec<RequestId> = self.lock().keys().cloned().collect();
        for key in orphans {
            // A call held for a human ends with the upstream: it is answered (below), and
            // then its hold is closed on record (withdrawn by Warden). In that order: the
            // withdrawn decision removes the request, and the agent must have its answer.
            let held = self
                .lock()
                .get_mut(&key)
                .filter(|entry| entry.kind == PendingKind::Deciding)
                .and_then(|entry| entry.withdraw.take());
            self.fail(
                &key,
                code::UPSTREAM_GONE,
                "the upstream server exited before answering",
                Outcome::UpstreamGone,
            )
            .await;
            if let Some(withdraw) = held {
                let _ = withdraw.send(Withdrawal {
                    by: "warden",
                    reason: "the upstream server exited".to_owned(),
                });
            }
        }
    }

    async fn route_from_upstream(&self, mut bytes: Vec<u8>) {
        let mut value: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(err) => {
                tracing::warn!(%err, "the upstream server sent a line that is not JSON; dropped");
                return;
            }
        };
        bytes.push(b'\n');
        let key = match jsonrpc::classify(&value) {
            Ok(Message::Response { key: Some(key), .. }) => key,
            Ok(Message::Request { id, method, .. }) => {
                // The server asks the agent for something (its model, its user, its roots):
                // an action of that server, decided before the agent sees it. On stdio the
                // session has one agent, so there is no doubt whom it is for.
                let Some(action) = actions::server_request(&self.server, &method) else {
                    return self.send_agent(bytes).await;
                };
                let verdict = self.guard.check(&action).await;
                if forwards(&verdict) {
                    return self.send_agent(bytes).await;
                }
                let (code, message, data) = refusal_error(self.guard.agent(), &verdict);
                let refusal = error_line(Some(&id), code, &message, Some(data));
                let sender = self.to_upstream.lock().ok().and_then(|s| s.clone());
                if let Some(tx) = sender {
                    let _ = tx.send(refusal).await;
                }
                return;
            }
            Ok(_) => return self.send_agent(bytes).await,
            Err(err) => {
                tracing::warn!(%err, "the upstream server sent an invalid JSON-RPC message; dropped");
                return;
            }
        };
        let entry = self.lock().remove(&key);
        let Some(entry) = entry else {
            return self.send_agent(bytes).await;
        };
        if let Some(timer) = &entry.timer {
            timer.abort();
        }
        match entry.kind {
            PendingKind::List(list) => {
                let (path, field) = list.path();
                if let Some(items) = value.pointer_mut(path).and_then(Value::as_array_mut) {
                    items.retain(|item| {
                        item.get(field)
                            .and_then(Value::as_str)
                            .is_some_and(|name| self.may_see(list, name))
                    });
                }
                self.send_agent(jsonrpc::line(&value)).await;
            }
            PendingKind::Governed { seq } => {
                let labels = match value.get_mut("result") {
                    Some(result) => inspect(result, self.options.redact_secrets),
                    None => Vec::new(),
                };
                let (outcome, detail) = call_outcome(&value);
                self.guard
                    .record_outcome_labelled(seq, outcome, detail, labels.clone());
                if labels.is_empty() || !self.options.redact_secrets {
                    self.send_agent(bytes).await;
                } else {
                    self.send_agent(jsonrpc::line(&value)).await;
                }
            }
            PendingKind::Initialize => {
                let version = value
                    .pointer("/result/protocolVersion")
                    .and_then(Value::as_str);
                match version {
                    Some(v) if !KNOWN_PROTOCOL_VERSIONS.contains(&v) => {
                        let message = format!(
                            "the upstream server negotiated MCP protocol version {v}, which this \
                             Warden cannot govern"
                        );
                        let data = json!({ "supported": KNOWN_PROTOCOL_VERSIONS, "requested": v });
                        self.send_agent(error_line(
                            Some(&entry.id),
                            code::INVALID_PARAMS,
                            &message,
                            Some(data),
                        ))
                        .await;
                    }
                    _ => self.send_agent(bytes).await,
                }
            }
            PendingKind::Deciding | PendingKind::Other => self.send_agent(bytes).await,
        }
    }

    fn may_see(&self, list: ListKind, name: &str) -> bool {
        let server = self.server.clone();
        let (policies, agent) = (self.guard.policies(), self.guard.agent());
        match list {
            ListKind::Tools => {
                ToolRef::new(server, name).is_ok_and(|t| policies.may_call(agent, &t))
            }
            ListKind::Prompts => {
                PromptRef::new(server, name).is_ok_and(|p| policies.may_get_prompt(agent, &p))
            }
            ListKind::Resources | ListKind::Templates => {
                ResourceRef::new(server, name).is_ok_and(|r| policies.may_read(agent, &r))
            }
        }
    }

    /// Removes the entry of `key` if it is still the one of `generation`.
    fn take_own(&self, key: &RequestId, generation: u64) -> Option<Pending> {
        let mut pending = self.lock();
        if pending.get(key)?.generation != generation {
            return None;
        }
        pending.remove(key)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RequestId, Pending>> {
        // A panic while holding the lock leaves the map consistent (single inserts/removes).
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send_agent(&self, bytes: Vec<u8>) {
        let sender = self.to_agent.lock().ok().and_then(|s| s.clone());
        if let Some(tx) = sender {
            let _ = tx.send(bytes).await;
        }
    }

    fn close_upstream(&self) {
        if let Ok(mut s) = self.to_upstream.lock() {
            s.take();
        }
    }

    fn close_agent(&self) {
        if let Ok(mut s) = self.to_agent.lock() {
            s.take();
        }
    }
}

/// How a `tools/call` answer ended, for the journal.
fn call_outcome(value: &Value) -> (Outcome, String) {
    if let Some(error) = value.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("error without a message");
        return (Outcome::RpcError, truncate(message, 200));
    }
    if value.pointer("/result/isError") == Some(&Value::Bool(true)) {
        let text = value
            .pointer("/result/content/0/text")
            .and_then(Value::as_str)
            .unwrap_or("");
        return (Outcome::ToolError, truncate(text, 200));
    }
    (Outcome::Ok, String::new())
}

/// A short, redacted excerpt of free text from the upstream, for the journal.
fn truncate(s: &str, max: usize) -> String {
    let mut s = warden_core::redact::redact_text(s);
    if s.len() > max {
        s.truncate(s.floor_char_boundary(max));
        s.push('…');
    }
    s
}
