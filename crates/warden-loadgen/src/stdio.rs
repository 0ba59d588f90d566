//! The stdio side: one MCP server process, one session, requests pipelined over its stdin and
//! matched to their responses by id.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};

use crate::error::LoadError;
use crate::response::outcome;
use crate::{CLIENT_NAME, PROTOCOL_VERSION};

/// The requests waiting for an answer, and whether the server's output has ended (after which
/// nothing will be answered).
#[derive(Debug, Default)]
struct Pending {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    ended: AtomicBool,
}

enum Outgoing {
    Line(Vec<u8>),
    /// Close the server's stdin, which asks it to exit.
    Close,
}

/// A running stdio MCP server with an initialized session. Shared by every lane of a run
/// (`Arc`): requests from many tasks are written back to back and answered in any order.
#[derive(Debug)]
pub struct StdioServer {
    outgoing: mpsc::UnboundedSender<Outgoing>,
    pending: Arc<Pending>,
    next_id: AtomicU64,
    child: tokio::sync::Mutex<Child>,
    /// The server's answer to `initialize` (its `result`), once it has given it.
    initialized: OnceLock<Value>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outgoing::Line(line) => write!(f, "Line({} bytes)", line.len()),
            Outgoing::Close => write!(f, "Close"),
        }
    }
}

impl StdioServer {
    /// Starts `command` (program and arguments) and initializes a session with it, waiting at
    /// most `timeout` for the answer.
    pub async fn start(command: &[String], timeout: Duration) -> Result<Arc<Self>, LoadError> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| LoadError::Usage("--stdio needs a command after --".into()))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| LoadError::Spawn {
                command: program.clone(),
                source,
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(LoadError::Usage("the child's pipes were not set up".into()));
        };
        let pending: Arc<Pending> = Arc::default();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_lines(stdin, rx));
        tokio::spawn(read_lines(stdout, pending.clone(), tx.clone()));
        let server = Arc::new(Self {
            outgoing: tx,
            pending,
            next_id: AtomicU64::new(1),
            child: tokio::sync::Mutex::new(child),
            initialized: OnceLock::new(),
        });
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": CLIENT_NAME, "version": env!("CARGO_PKG_VERSION")},
        });
        let result = server
            .request("initialize", &params.to_string(), timeout)
            .await?;
        let _ = server.initialized.set(result);
        server.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec())?;
        Ok(server)
    }

    fn send(&self, mut line: Vec<u8>) -> Result<(), LoadError> {
        line.push(b'\n');
        self.outgoing
            .send(Outgoing::Line(line))
            .map_err(|_| LoadError::StdioClosed)
    }

    /// The `result` of the server's answer to `initialize`.
    pub fn initialize_result(&self) -> Option<&Value> {
        self.initialized.get()
    }

    /// Sends one request whose `params` are the given JSON text; returns the `result`. Gives
    /// up after `timeout` (the server may still answer later; that answer is dropped).
    pub async fn request(
        &self,
        method: &str,
        params_json: &str,
        timeout: Duration,
    ) -> Result<Value, LoadError> {
        let message = self.exchange(method, params_json, timeout).await?;
        outcome(message, method == "tools/call")
    }

    /// Sends one request whose `params` are the given JSON text; returns the whole response
    /// message, whatever it holds (its `id` is this server's, not the caller's).
    pub async fn exchange(
        &self,
        method: &str,
        params_json: &str,
        timeout: Duration,
    ) -> Result<Value, LoadError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending.waiting).insert(id, tx);
        // INVARIANT: the reader sets `ended` before it clears the map, so a request inserted
        // after the clear sees `ended` here and does not wait for an answer that cannot come.
        if self.pending.ended.load(Ordering::SeqCst) {
            lock(&self.pending.waiting).remove(&id);
            return Err(LoadError::StdioClosed);
        }
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":{},"params":{params_json}}}"#,
            Value::from(method)
        );
        if let Err(e) = self.send(line.into_bytes()) {
            lock(&self.pending.waiting).remove(&id);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(message)) => Ok(message),
            Ok(Err(_)) => Err(LoadError::StdioClosed),
            Err(_) => {
                lock(&self.pending.waiting).remove(&id);
                Err(LoadError::Timeout(timeout))
            }
        }
    }

    /// Closes the server's stdin and waits up to `grace` for it to exit; kills it otherwise.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.outgoing.send(Outgoing::Close);
        let mut child = self.child.lock().await;
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave the map half-updated: every use is one insert or remove.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes queued lines, flushing only when the queue is empty so bursts share a write.
async fn write_lines(stdin: ChildStdin, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let mut out = BufWriter::new(stdin);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Outgoing::Line(line) => {
                    if out.write_all(&line).await.is_err() {
                        return;
                    }
                }
                Outgoing::Close => {
                    let _ = out.flush().await;
                    return; // dropping stdin closes it
                }
            }
            next = rx.try_recv().ok();
        }
        if out.flush().await.is_err() {
            return;
        }
    }
}

/// Routes each response to the request waiting for it. Requests from the server (roots,
/// sampling) are refused so the server is never left waiting on the load generator.
async fn read_lines(
    stdout: ChildStdout,
    pending: Arc<Pending>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let id = message.get("id").cloned();
        match (message.get("method"), id) {
            (None, Some(id)) => {
                let waiter = id
                    .as_u64()
                    .and_then(|id| lock(&pending.waiting).remove(&id));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(message);
                }
            }
            (Some(_), Some(id)) => {
                let refusal = json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32601, "message": "the load generator offers no methods"}});
                let mut line = refusal.to_string().into_bytes();
                line.push(b'\n');
                let _ = outgoing.send(Outgoing::Line(line));
            }
            _ => {} // notifications
        }
    }
    // The server is gone: fail everything still waiting.
    pending.ended.store(true, Ordering::SeqCst);
    lock(&pending.waiting).clear();
}
