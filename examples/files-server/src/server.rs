//! The serving loop: reads the client's lines, answers what is quick inline, runs each tool
//! call on a thread of its own, and routes the client's responses to the calls waiting on them.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use serde_json::{Value, json};

use crate::confine::Root;
use crate::jsonrpc::{self, Incoming, codes};
use crate::misbehave::{GARBAGE_LINE, HUGE_RESULT_BYTES, Misbehaviour};
use crate::tools::{self, CallContext, CallOutcome, CancelToken, ClientPeer, ClientRequestError};
use crate::{SERVER_NAME, SUPPORTED_PROTOCOL_VERSIONS};

/// What the server serves and how it behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The directory every file tool is confined to.
    pub root: Root,
    /// A deliberate protocol failure, if any.
    pub misbehave: Option<Misbehaviour>,
    /// List tools this many at a time, with cursors (`None`: all at once), so that clients'
    /// and gateways' pagination can be tested.
    pub tools_page_size: Option<usize>,
}

/// How serving ended without an I/O failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client closed its side; running calls were finished first.
    InputClosed,
    /// `crash-on-call` saw a `tools/call`: the process should exit with status 3 now.
    CrashRequested,
}

/// Why serving stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Reading the client's input failed.
    #[error("cannot read from the client: {source}")]
    Read {
        /// The underlying failure.
        source: io::Error,
    },
    /// Writing to the client failed (it probably went away).
    #[error("cannot write to the client: {source}")]
    Write {
        /// The underlying failure.
        source: io::Error,
    },
}

/// Serves one client on `input`/`output` until the input ends.
pub fn serve<R, W>(config: ServerConfig, mut input: R, output: W) -> Result<Ending, ServeError>
where
    R: BufRead,
    W: Write + Send + 'static,
{
    let session = Arc::new(Session {
        root: config.root,
        out: Outbound {
            sink: Mutex::new(Box::new(output)),
        },
        in_flight: Mutex::new(HashMap::new()),
        client_requests: Mutex::new(ClientRequests::default()),
        next_request: AtomicU64::new(1),
    });
    let misbehave = config.misbehave;
    let page_size = config.tools_page_size;
    let mut calls: Vec<JoinHandle<()>> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .map_err(|source| ServeError::Read { source })?;
        if read == 0 {
            break;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match jsonrpc::parse_line(text) {
            Err(bad) => {
                session
                    .out
                    .send(&jsonrpc::error(&bad.id(), bad.code(), &bad.to_string()))?
            }
            Ok(Incoming::Notification { method, params }) => {
                session.notification(&method, params.as_ref())
            }
            Ok(Incoming::Response { id, outcome }) => session.client_answered(&id, outcome),
            Ok(Incoming::Request { id, method, params }) => match (method.as_str(), misbehave) {
                ("initialize", Some(Misbehaviour::HangOnInitialize)) => {}
                ("tools/call", Some(Misbehaviour::CrashOnCall)) => {
                    return Ok(Ending::CrashRequested);
                }
                ("tools/call", Some(Misbehaviour::Garbage)) => {
                    session.out.send_line(GARBAGE_LINE)?
                }
                ("tools/call", Some(Misbehaviour::NeverAnswerCalls)) => {}
                ("tools/call", Some(Misbehaviour::HugeResult)) => {
                    let huge = tools::ToolResult::text("x".repeat(HUGE_RESULT_BYTES));
                    session.out.send(&jsonrpc::result(&id, huge.to_json()))?;
                }
                ("tools/call", _) => {
                    calls.retain(|call| !call.is_finished());
                    if let Some(call) = session.start_call(id, params)? {
                        calls.push(call);
                    }
                }
                ("tools/list", _) => {
                    session
                        .out
                        .send(&list_tools(&id, params.as_ref(), page_size))?
                }
                _ => session.out.send(&answer(&id, &method, params.as_ref()))?,
            },
        }
    }
    // Calls waiting on the client would wait forever now; fail them, then let the rest finish.
    session.client_gone();
    for call in calls {
        // A panicked call has already lost its response; nothing more to do for it.
        let _ = call.join();
    }
    Ok(Ending::InputClosed)
}

/// `tools/list`, a page at a time when a page size is set. The cursor is the index of the
/// page's first tool.
pub(crate) fn list_tools(id: &Value, params: Option<&Value>, page_size: Option<usize>) -> Value {
    let all = tools::catalogue();
    let Some(size) = page_size.filter(|s| *s > 0) else {
        return jsonrpc::result(id, json!({ "tools": all }));
    };
    let start = match params.and_then(|p| p.get("cursor")) {
        None | Some(Value::Null) => 0,
        Some(cursor) => match cursor.as_str().and_then(|c| c.parse::<usize>().ok()) {
            Some(start) if start < all.len() => start,
            _ => return jsonrpc::error(id, codes::INVALID_PARAMS, "invalid cursor"),
        },
    };
    let end = (start + size).min(all.len());
    let mut result = json!({ "tools": all[start..end] });
    if end < all.len() {
        result["nextCursor"] = Value::String(end.to_string());
    }
    jsonrpc::result(id, result)
}

/// The response to a request that is answered inline.
pub(crate) fn answer(id: &Value, method: &str, params: Option<&Value>) -> Value {
    match method {
        "initialize" => {
            let asked = params
                .and_then(|p| p.get("protocolVersion"))
                .and_then(Value::as_str);
            let newest = SUPPORTED_PROTOCOL_VERSIONS[SUPPORTED_PROTOCOL_VERSIONS.len() - 1];
            let version = asked
                .filter(|v| SUPPORTED_PROTOCOL_VERSIONS.contains(v))
                .unwrap_or(newest);
            jsonrpc::result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")},
                }),
            )
        }
        "ping" => jsonrpc::result(id, json!({})),
        _ => jsonrpc::error(
            id,
            codes::METHOD_NOT_FOUND,
            &format!("method not found: {method}"),
        ),
    }
}

/// The tool a `tools/call` names, or the error response when it names none this server has.
pub(crate) fn called_tool(id: &Value, params: &Value) -> Result<String, Value> {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Err(jsonrpc::error(
            id,
            codes::INVALID_PARAMS,
            "tools/call needs params.name (a string)",
        ));
    };
    if !tools::is_known(name) {
        return Err(jsonrpc::error(
            id,
            codes::INVALID_PARAMS,
            &format!("unknown tool: {name}"),
        ));
    }
    Ok(name.to_owned())
}

// === impl Outbound ===

/// The client's side of stdout.
struct Outbound {
    sink: Mutex<Box<dyn Write + Send>>,
}

impl Outbound {
    fn send(&self, message: &Value) -> Result<(), ServeError> {
        self.send_line(&message.to_string())
    }

    fn send_line(&self, line: &str) -> Result<(), ServeError> {
        // INVARIANT: one lock per whole line, so concurrent calls never interleave bytes.
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        sink.write_all(line.as_bytes())
            .and_then(|()| sink.write_all(b"\n"))
            .and_then(|()| sink.flush())
            .map_err(|source| ServeError::Write { source })
    }
}

// === impl Session ===

/// Requests this server sent to the client, waiting for its response.
#[derive(Default)]
struct ClientRequests {
    // INVARIANT: once `closed`, nothing is added, so no call waits on a client that is gone.
    closed: bool,
    waiting: HashMap<String, mpsc::Sender<Result<Value, Value>>>,
}

struct Session {
    root: Root,
    out: Outbound,
    in_flight: Mutex<HashMap<String, CancelToken>>,
    client_requests: Mutex<ClientRequests>,
    next_request: AtomicU64,
}

impl Session {
    fn notification(&self, method: &str, params: Option<&Value>) {
        if method == "notifications/cancelled" {
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
        // notifications/initialized and everything else need nothing from this server.
    }

    fn client_answered(&self, id: &Value, outcome: Result<Value, Value>) {
        let waiter = self
            .client_requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .remove(&jsonrpc::id_key(id));
        if let Some(waiter) = waiter {
            // The call may have given up already; its answer is then moot.
            let _ = waiter.send(outcome);
        }
    }

    fn client_gone(&self) {
        let mut requests = self
            .client_requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        requests.closed = true;
        requests.waiting.clear();
    }

    /// Validates a `tools/call` and starts it on a thread of its own.
    fn start_call(
        self: &Arc<Self>,
        id: Value,
        params: Option<Value>,
    ) -> Result<Option<JoinHandle<()>>, ServeError> {
        let params = params.unwrap_or(Value::Null);
        let name = match called_tool(&id, &params) {
            Ok(name) => name,
            Err(refusal) => {
                self.out.send(&refusal)?;
                return Ok(None);
            }
        };
        let cancel = CancelToken::default();
        // Registered before the thread starts, so a cancellation that follows at once is seen.
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(jsonrpc::id_key(&id), cancel.clone());
        let session = Arc::clone(self);
        Ok(Some(thread::spawn(move || {
            session.run_call(&id, &name, &params, &cancel)
        })))
    }

    fn run_call(&self, id: &Value, name: &str, params: &Value, cancel: &CancelToken) {
        let peer = CallPeer { session: self };
        let ctx = CallContext {
            root: &self.root,
            meta: params.get("_meta"),
            cancel,
            client: &peer,
        };
        let arguments = params.get("arguments").unwrap_or(&Value::Null);
        let outcome = tools::call(&ctx, name, arguments);
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&jsonrpc::id_key(id));
        let message = match outcome {
            Some(CallOutcome::Finished(result)) if !cancel.is_cancelled() => {
                jsonrpc::result(id, result.to_json())
            }
            // A cancelled request gets no response, as the specification asks.
            Some(_) => return,
            None => jsonrpc::error(id, codes::INVALID_PARAMS, &format!("unknown tool: {name}")),
        };
        // If the client is gone the main loop notices on its next write or read.
        let _ = self.out.send(&message);
    }
}

/// The client as seen from one running call.
struct CallPeer<'a> {
    session: &'a Session,
}

impl ClientPeer for CallPeer<'_> {
    fn progress(&self, token: &Value, progress: u64, total: u64, message: &str) {
        let _ = self.session.out.send(&jsonrpc::notification(
            "notifications/progress",
            json!({
                "progressToken": token,
                "progress": progress,
                "total": total,
                "message": message,
            }),
        ));
    }

    fn request(&self, method: &str, params: Value) -> Result<Value, ClientRequestError> {
        let n = self.session.next_request.fetch_add(1, Ordering::Relaxed);
        // Distinct from any id the client uses for its own requests.
        let id = json!(format!("{SERVER_NAME}/{method}/{n}"));
        let (answer, answered) = mpsc::channel();
        {
            let mut requests = self
                .session
                .client_requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if requests.closed {
                return Err(ClientRequestError::Gone);
            }
            requests.waiting.insert(jsonrpc::id_key(&id), answer);
        }
        if self
            .session
            .out
            .send(&jsonrpc::request(&id, method, params))
            .is_err()
        {
            self.session
                .client_requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .waiting
                .remove(&jsonrpc::id_key(&id));
            return Err(ClientRequestError::Unsent);
        }
        match answered.recv() {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(error)) => Err(ClientRequestError::Refused {
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            }),
            Err(mpsc::RecvError) => Err(ClientRequestError::Gone),
        }
    }
}
