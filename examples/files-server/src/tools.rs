//! The tools this server offers: their definitions for `tools/list` and their behaviour for
//! `tools/call`.
//!
//! A tool's own failures (missing file, bad arguments, a path outside the root) are results
//! with `isError: true`, so the model can read them; only an unknown tool name is a protocol
//! error, as the MCP specification asks.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::confine::{PathError, Root};

/// The directory (inside the root) where messages and transfers are recorded.
pub const OUTBOX_DIR: &str = ".outbox";

const MAX_COUNT: u64 = 100_000;
const MAX_DELAY_MS: u64 = 60_000;

// Appends from concurrent calls must not interleave inside one line.
static OUTBOX_LOCK: Mutex<()> = Mutex::new(());

/// The definitions `tools/list` returns, each with a description and a JSON Schema.
pub fn catalogue() -> Vec<Value> {
    let path = json!({"type": "string", "description": "Path relative to the served directory"});
    vec![
        json!({
            "name": "read_file",
            "description": "Read a UTF-8 text file and return its content.",
            "inputSchema": {"type": "object", "properties": {"path": path}, "required": ["path"]},
        }),
        json!({
            "name": "write_file",
            "description": "Create or replace a text file (parent directories are created).",
            "inputSchema": {
                "type": "object",
                "properties": {"path": path, "content": {"type": "string"}},
                "required": ["path", "content"],
            },
        }),
        json!({
            "name": "list_dir",
            "description": "List a directory (default: the served directory). Directories end with '/'.",
            "inputSchema": {"type": "object", "properties": {"path": path}},
            "outputSchema": {
                "type": "object",
                "properties": {
                    "entries": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "kind": {"type": "string", "enum": ["file", "dir", "other"]},
                            },
                            "required": ["name", "kind"],
                        },
                    },
                },
                "required": ["entries"],
            },
        }),
        json!({
            "name": "delete_file",
            "description": "Delete a file (not a directory).",
            "inputSchema": {"type": "object", "properties": {"path": path}, "required": ["path"]},
        }),
        json!({
            "name": "send_message",
            "description": "Send a message to someone outside (recorded in .outbox/messages.jsonl).",
            "inputSchema": {
                "type": "object",
                "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
                "required": ["to", "body"],
            },
        }),
        json!({
            "name": "transfer",
            "description": "Transfer an amount of money (recorded in .outbox/transfers.jsonl).",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "to": {"type": "string"},
                    "amount": {"type": "number", "exclusiveMinimum": 0},
                },
                "required": ["to", "amount"],
            },
        }),
        json!({
            "name": "slow_count",
            "description": "Count to n, waiting delay_ms per step; reports progress when asked and stops when cancelled.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "n": {"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
                    "delay_ms": {"type": "integer", "minimum": 0, "maximum": MAX_DELAY_MS},
                },
                "required": ["n", "delay_ms"],
            },
        }),
        json!({
            "name": "ask_roots",
            "description": "Ask the client for its roots (a server-to-client roots/list request) and return them.",
            "inputSchema": {"type": "object", "properties": {}},
        }),
        json!({
            "name": "echo",
            "description": "Return the arguments and the request's _meta as JSON text.",
            "inputSchema": {"type": "object", "additionalProperties": true},
        }),
    ]
}

/// Whether `name` is a tool this server offers.
pub fn is_known(name: &str) -> bool {
    // Every call asks this; building the whole catalogue each time cost more than the call.
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            catalogue()
                .iter()
                .filter_map(|tool| tool["name"].as_str().map(str::to_owned))
                .collect()
        })
        .iter()
        .any(|known| known == name)
}

/// What a finished tool call returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    /// The text content.
    pub text: String,
    /// Whether the tool failed.
    pub is_error: bool,
    /// Structured content, for tools that declare an output schema.
    pub structured: Option<Value>,
}

impl ToolResult {
    /// A successful result with text only.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            is_error: false,
            structured: None,
        }
    }

    /// A failed result.
    pub fn failure(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            is_error: true,
            structured: None,
        }
    }

    /// The `CallToolResult` JSON.
    pub fn to_json(&self) -> Value {
        let mut result = json!({
            "content": [{"type": "text", "text": self.text}],
            "isError": self.is_error,
        });
        if let Some(structured) = &self.structured {
            result["structuredContent"] = structured.clone();
        }
        result
    }
}

/// How a tool call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    /// The tool finished (successfully or not); the result is sent.
    Finished(ToolResult),
    /// The client cancelled the call; nothing is sent.
    Cancelled,
}

/// Set by `notifications/cancelled`; a running call checks it and stops.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    state: Arc<(Mutex<bool>, Condvar)>,
}

impl CancelToken {
    /// Marks the call cancelled and wakes it if it is waiting.
    pub fn cancel(&self) {
        let (flag, wake) = &*self.state;
        *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
    }

    /// Whether the call has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        *self.state.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `delay`, returning early with `true` if the call is cancelled meanwhile.
    pub fn wait(&self, delay: Duration) -> bool {
        let (flag, wake) = &*self.state;
        let guard = flag.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = wake
            .wait_timeout_while(guard, delay, |cancelled| !*cancelled)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

/// Why a server-to-client request got no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientRequestError {
    /// The client answered with a JSON-RPC error.
    #[error("the client answered with error {code}: {message}")]
    Refused {
        /// The error code.
        code: i64,
        /// The error message.
        message: String,
    },
    /// The client's input ended before it answered.
    #[error("the client went away before answering")]
    Gone,
    /// The request could not be written.
    #[error("the request could not be sent to the client")]
    Unsent,
}

/// The MCP client at the other end of the transport, as a running tool sees it.
pub trait ClientPeer {
    /// Sends `notifications/progress` for the running call.
    fn progress(&self, token: &Value, progress: u64, total: u64, message: &str);
    /// Sends a request to the client and waits for its result.
    fn request(&self, method: &str, params: Value) -> Result<Value, ClientRequestError>;
}

/// Everything a running tool call may use.
pub struct CallContext<'a> {
    /// The served directory.
    pub root: &'a Root,
    /// The request's `params._meta`, if any.
    pub meta: Option<&'a Value>,
    /// Cancellation of this call.
    pub cancel: &'a CancelToken,
    /// The client, for progress and server-to-client requests.
    pub client: &'a dyn ClientPeer,
}

/// A tool's own failure, shown to the client as an `isError` result.
#[derive(Debug, thiserror::Error)]
enum ToolFailure {
    #[error("bad arguments: {0}")]
    BadArguments(String),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("cannot {action} {path:?}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("{0}")]
    Client(#[from] ClientRequestError),
}

/// Runs tool `name`; `None` if no such tool exists.
pub fn call(ctx: &CallContext<'_>, name: &str, arguments: &Value) -> Option<CallOutcome> {
    let empty = Map::new();
    let args = match arguments {
        Value::Object(args) => args,
        Value::Null => &empty,
        _ => {
            return is_known(name).then(|| {
                CallOutcome::Finished(ToolResult::failure(
                    "bad arguments: \"arguments\" must be an object",
                ))
            });
        }
    };
    let outcome = match name {
        "read_file" => read_file(ctx.root, args),
        "write_file" => write_file(ctx.root, args),
        "list_dir" => list_dir(ctx.root, args),
        "delete_file" => delete_file(ctx.root, args),
        "send_message" => send_message(ctx.root, args),
        "transfer" => transfer(ctx.root, args),
        "slow_count" => return Some(slow_count(ctx, args)),
        "ask_roots" => ask_roots(ctx),
        "echo" => Ok(echo(ctx, args)),
        _ => return None,
    };
    Some(CallOutcome::Finished(outcome.unwrap_or_else(|failure| {
        ToolResult::failure(failure.to_string())
    })))
}

// === argument helpers ===

fn string_arg<'a>(args: &'a Map<String, Value>, key: &str) -> Result<&'a str, ToolFailure> {
    match args.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ToolFailure::BadArguments(format!(
            "{key:?} must be a string"
        ))),
        None => Err(ToolFailure::BadArguments(format!("{key:?} is required"))),
    }
}

fn bounded_integer_arg(args: &Map<String, Value>, key: &str, max: u64) -> Result<u64, ToolFailure> {
    match args.get(key).map(Value::as_u64) {
        Some(Some(n)) if n <= max => Ok(n),
        Some(_) => Err(ToolFailure::BadArguments(format!(
            "{key:?} must be an integer from 0 to {max}"
        ))),
        None => Err(ToolFailure::BadArguments(format!("{key:?} is required"))),
    }
}

fn io_failure(action: &'static str, path: &str) -> impl FnOnce(io::Error) -> ToolFailure {
    let path = path.to_owned();
    move |source| ToolFailure::Io {
        action,
        path,
        source,
    }
}

// === file tools ===

fn read_file(root: &Root, args: &Map<String, Value>) -> Result<ToolResult, ToolFailure> {
    let requested = string_arg(args, "path")?;
    let path = root.resolve(requested)?;
    let content = fs::read_to_string(&path).map_err(io_failure("read", requested))?;
    Ok(ToolResult::text(content))
}

fn write_file(root: &Root, args: &Map<String, Value>) -> Result<ToolResult, ToolFailure> {
    let requested = string_arg(args, "path")?;
    let content = string_arg(args, "content")?;
    let path = root.resolve(requested)?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_failure("create the directory for", requested))?;
    }
    fs::write(&path, content).map_err(io_failure("write", requested))?;
    Ok(ToolResult::text(format!(
        "wrote {} bytes to {requested}",
        content.len()
    )))
}

fn list_dir(root: &Root, args: &Map<String, Value>) -> Result<ToolResult, ToolFailure> {
    let requested = match args.get("path") {
        None | Some(Value::Null) => ".",
        Some(_) => string_arg(args, "path")?,
    };
    let path = root.resolve(requested)?;
    let mut entries = Vec::new();
    for entry in fs::read_dir(&path).map_err(io_failure("list", requested))? {
        let entry = entry.map_err(io_failure("list", requested))?;
        let kind = match entry.file_type() {
            Ok(t) if t.is_dir() => "dir",
            Ok(t) if t.is_file() => "file",
            _ => "other",
        };
        entries.push((entry.file_name().to_string_lossy().into_owned(), kind));
    }
    entries.sort();
    let text = entries
        .iter()
        .map(|(name, kind)| {
            if *kind == "dir" {
                format!("{name}/")
            } else {
                name.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let structured = json!({
        "entries": entries
            .iter()
            .map(|(name, kind)| json!({"name": name, "kind": kind}))
            .collect::<Vec<_>>(),
    });
    Ok(ToolResult {
        structured: Some(structured),
        ..ToolResult::text(text)
    })
}

fn delete_file(root: &Root, args: &Map<String, Value>) -> Result<ToolResult, ToolFailure> {
    let requested = string_arg(args, "path")?;
    let path = root.resolve(requested)?;
    fs::remove_file(&path).map_err(io_failure("delete", requested))?;
    Ok(ToolResult::text(format!("deleted {requested}")))
}

// === outbox tools ===

fn append_outbox(root: &Root, file: &str, record: &Value) -> Result<(), ToolFailure> {
    let dir = root.dir().join(OUTBOX_DIR);
    let shown = format!("{OUTBOX_DIR}/{file}");
    let _guard = OUTBOX_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    fs::create_dir_all(&dir).map_err(io_failure("create", OUTBOX_DIR))?;
    let mut line = record.to_string();
    line.push('\n');
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(&dir).join(file))
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(io_failure("append to", &shown))
}

fn send_message(root: &Root, args: &Map<String, Value>) -> Result<ToolResult, ToolFailure> {
    let to = string_arg(args, "to")?;
    let body = string_arg(args, "body")?;
    append_outbox(root, "messages.jsonl", &json!({"to": to, "body": body}))?;
    Ok(ToolResult::text(format!("sent to {to}")))
}

fn transfer(root: &Root, args: &Map<String, Value>) -> Result<ToolResult, ToolFailure> {
    let to = string_arg(args, "to")?;
    let amount = match args.get("amount") {
        Some(Value::Number(n)) => n.clone(),
        Some(_) => {
            return Err(ToolFailure::BadArguments(
                "\"amount\" must be a number".into(),
            ));
        }
        None => return Err(ToolFailure::BadArguments("\"amount\" is required".into())),
    };
    if amount.as_f64().is_none_or(|a| a.is_nan() || a <= 0.0) {
        return Err(ToolFailure::BadArguments(
            "\"amount\" must be greater than 0".into(),
        ));
    }
    append_outbox(
        root,
        "transfers.jsonl",
        &json!({"to": to, "amount": amount}),
    )?;
    Ok(ToolResult::text(format!("transferred {amount} to {to}")))
}

// === protocol-exercising tools ===

fn slow_count(ctx: &CallContext<'_>, args: &Map<String, Value>) -> CallOutcome {
    let bounds = bounded_integer_arg(args, "n", MAX_COUNT)
        .and_then(|n| Ok((n, bounded_integer_arg(args, "delay_ms", MAX_DELAY_MS)?)));
    let (n, delay_ms) = match bounds {
        Ok(bounds) => bounds,
        Err(failure) => return CallOutcome::Finished(ToolResult::failure(failure.to_string())),
    };
    let token = ctx.meta.and_then(|meta| meta.get("progressToken"));
    for step in 1..=n {
        if ctx.cancel.wait(Duration::from_millis(delay_ms)) {
            return CallOutcome::Cancelled;
        }
        if let Some(token) = token {
            ctx.client
                .progress(token, step, n, &format!("counted {step} of {n}"));
        }
    }
    if ctx.cancel.is_cancelled() {
        return CallOutcome::Cancelled;
    }
    CallOutcome::Finished(ToolResult::text(format!("counted to {n}")))
}

fn ask_roots(ctx: &CallContext<'_>) -> Result<ToolResult, ToolFailure> {
    let answer = ctx.client.request("roots/list", json!({}))?;
    let roots = answer.get("roots").cloned().unwrap_or(Value::Null);
    if !roots.is_array() {
        return Err(ToolFailure::BadArguments(
            "the client's roots/list result has no \"roots\" array".into(),
        ));
    }
    Ok(ToolResult::text(roots.to_string()))
}

fn echo(ctx: &CallContext<'_>, args: &Map<String, Value>) -> ToolResult {
    let meta = ctx.meta.cloned().unwrap_or(Value::Null);
    ToolResult::text(json!({"arguments": args, "_meta": meta}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct RecordingPeer {
        progress: Mutex<Vec<(Value, u64, u64)>>,
        roots: Option<Value>,
    }

    impl ClientPeer for RecordingPeer {
        fn progress(&self, token: &Value, progress: u64, total: u64, _message: &str) {
            self.progress
                .lock()
                .unwrap()
                .push((token.clone(), progress, total));
        }
        fn request(&self, method: &str, _params: Value) -> Result<Value, ClientRequestError> {
            assert_eq!(method, "roots/list");
            self.roots.clone().ok_or(ClientRequestError::Gone)
        }
    }

    fn run(
        root: &Root,
        peer: &RecordingPeer,
        meta: Option<&Value>,
        name: &str,
        args: Value,
    ) -> CallOutcome {
        let cancel = CancelToken::default();
        let ctx = CallContext {
            root,
            meta,
            cancel: &cancel,
            client: peer,
        };
        call(&ctx, name, &args).unwrap()
    }

    fn finished(outcome: CallOutcome) -> ToolResult {
        match outcome {
            CallOutcome::Finished(result) => result,
            CallOutcome::Cancelled => panic!("cancelled"),
        }
    }

    #[test]
    fn catalogue_names_are_unique_and_have_schemas() {
        let tools = catalogue();
        let mut names: Vec<_> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), tools.len());
        for tool in &tools {
            assert_eq!(tool["inputSchema"]["type"], "object");
            assert!(tool["description"].is_string());
        }
    }

    #[test]
    fn unknown_tool_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let peer = RecordingPeer::default();
        let cancel = CancelToken::default();
        let ctx = CallContext {
            root: &root,
            meta: None,
            cancel: &cancel,
            client: &peer,
        };
        assert_eq!(call(&ctx, "rm_rf", &json!({})), None);
        assert_eq!(call(&ctx, "rm_rf", &json!(3)), None);
    }

    #[test]
    fn slow_count_reports_progress_with_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let peer = RecordingPeer::default();
        let meta = json!({"progressToken": "p1"});
        let result = finished(run(
            &root,
            &peer,
            Some(&meta),
            "slow_count",
            json!({"n": 3, "delay_ms": 0}),
        ));
        assert_eq!(result.text, "counted to 3");
        let progress = peer.progress.lock().unwrap().clone();
        assert_eq!(
            progress,
            vec![
                (json!("p1"), 1, 3),
                (json!("p1"), 2, 3),
                (json!("p1"), 3, 3)
            ]
        );
    }

    #[test]
    fn cancelled_count_stops() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let peer = RecordingPeer::default();
        let cancel = CancelToken::default();
        cancel.cancel();
        let ctx = CallContext {
            root: &root,
            meta: None,
            cancel: &cancel,
            client: &peer,
        };
        let outcome = call(
            &ctx,
            "slow_count",
            &json!({"n": 100_000, "delay_ms": 60_000}),
        );
        assert_eq!(outcome, Some(CallOutcome::Cancelled));
    }

    #[test]
    fn transfer_validates_amount() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let peer = RecordingPeer::default();
        for bad in [
            json!({"to": "x", "amount": "5"}),
            json!({"to": "x", "amount": -1}),
            json!({"to": "x"}),
        ] {
            assert!(finished(run(&root, &peer, None, "transfer", bad)).is_error);
        }
        let ok = finished(run(
            &root,
            &peer,
            None,
            "transfer",
            json!({"to": "bob", "amount": 2.5}),
        ));
        assert_eq!(ok.text, "transferred 2.5 to bob");
        let recorded = fs::read_to_string(root.dir().join(".outbox/transfers.jsonl")).unwrap();
        let line: Value = serde_json::from_str(recorded.trim_end()).unwrap();
        assert_eq!(line, json!({"to": "bob", "amount": 2.5}));
        assert_eq!(recorded.lines().count(), 1);
    }

    #[test]
    fn ask_roots_reports_a_gone_client() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let peer = RecordingPeer::default();
        let result = finished(run(&root, &peer, None, "ask_roots", json!({})));
        assert!(result.is_error);
        assert!(result.text.contains("went away"), "{}", result.text);
    }
}
