//! A harness that runs the real `warden` binary in front of the real example MCP server, and
//! speaks MCP to it as an agent would.
#![allow(dead_code)]

pub mod up;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use serde_json::{Value, json};
use warden_journal::{JournalReader, JournalRecord, Query};

/// How long the harness waits for any single message before declaring the session hung.
/// A guard against hanging the suite, not a performance assertion.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

pub fn warden_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_warden"))
}

pub fn example_server() -> PathBuf {
    let path = warden_bin().with_file_name("warden-example-files");
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace --bins`, done by scripts/test)",
        path.display()
    );
    path
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Policies that let the agent "tester" call every tool of "files", and "files" ask the
/// tester for its roots, for pass-through tests.
pub const TESTER_POLICY: &str = r#"
@id("tester-all")
permit (principal == Agent::"tester", action == Action::"call_tool", resource in Server::"files");
@id("files-may-ask-tester-roots")
permit (principal == Server::"files", action == Action::"list_roots", resource == Agent::"tester");
"#;

/// A temporary Warden setup: config, the example policies plus `extra_policy`, a workspace.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new(extra_config: &str, extra_policy: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = repo_root();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        for f in ["workspace.cedar", "arguments.cedarschema"] {
            std::fs::copy(
                root.join("examples/policies").join(f),
                dir.path().join("policies").join(f),
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("policies/extra.cedar"), extra_policy).unwrap();
        let ws = dir.path().join("workspace");
        std::fs::create_dir_all(ws.join("secrets")).unwrap();
        std::fs::create_dir_all(ws.join("reports")).unwrap();
        std::fs::write(ws.join("notes.txt"), "the notes\n").unwrap();
        std::fs::write(
            ws.join("secrets/key.env"),
            "KEY=test-fixture-not-a-secret\n",
        )
        .unwrap();
        let config = format!("[journal]\npath = \"journal.db\"\n{extra_config}\n");
        std::fs::write(dir.path().join("warden.toml"), config).unwrap();
        Setup { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config(&self) -> PathBuf {
        self.path("warden.toml")
    }

    /// `warden mcp --agent AGENT` in front of the example server (with `server_args` appended).
    pub fn start(&self, agent: &str, server_args: &[&str]) -> Session {
        let mut cmd = Command::new(warden_bin());
        cmd.args(["mcp", "--agent", agent, "--config"])
            .arg(self.config())
            .args(["--server", "files", "--"])
            .arg(example_server())
            .arg("--root")
            .arg(self.path("workspace"))
            .args(server_args);
        Session::spawn(cmd)
    }

    pub fn records(&self) -> Vec<JournalRecord> {
        let reader = JournalReader::open(&self.path("journal.db")).unwrap();
        reader
            .records(&Query {
                after_seq: 0,
                limit: 100_000,
                ..Query::default()
            })
            .unwrap()
    }

    pub fn decisions(&self) -> Vec<JournalRecord> {
        self.records()
            .into_iter()
            .filter(|r| r.kind == "decision")
            .collect()
    }

    pub fn outbox(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("workspace/.outbox/messages.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// An agent's side of a `warden mcp` session.
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
    /// Messages received while waiting for something else.
    pub other: Vec<Value>,
}

/// The lines a child prints, read on a thread of their own (a child whose output is not read
/// blocks or, for `warden up`, stops once its stdout closes).
pub fn lines_of(stdout: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

impl Session {
    pub fn spawn(mut cmd: Command) -> Session {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let lines = lines_of(stdout);
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Session {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            other: Vec::new(),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    pub fn send(&mut self, message: &Value) {
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        self.send_raw(&line);
    }

    /// The next message Warden sends, or `None` once it closed its output.
    pub fn recv(&mut self) -> Option<Value> {
        match self.lines.recv_timeout(HANG_GUARD) {
            Ok(line) => Some(
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("warden sent non-JSON ({e}): {line}")),
            ),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no message from warden within the hang guard")
            }
        }
    }

    /// The response with `id`: one already set aside in `other` (it came while another was
    /// awaited), or the next to come, keeping anything else in `other`.
    pub fn response(&mut self, id: &Value) -> Value {
        let is_it = |m: &Value| m.get("id") == Some(id) && m.get("method").is_none();
        if let Some(at) = self.other.iter().position(is_it) {
            return self.other.remove(at);
        }
        loop {
            let m = self
                .recv()
                .unwrap_or_else(|| panic!("warden closed its output before answering {id}"));
            if m.get("id") == Some(id) && m.get("method").is_none() {
                return m;
            }
            self.other.push(m);
        }
    }

    pub fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.response(&id)
    }

    pub fn initialize(&mut self) -> Value {
        let r = self.request(
            json!(0),
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {"roots": {}},
                   "clientInfo": {"name": "warden-tests", "version": "1"}}),
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        r
    }

    pub fn call(&mut self, id: Value, tool: &str, arguments: Value) -> Value {
        self.request(
            id,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
    }

    /// Closes the agent's side and waits for Warden to exit.
    pub fn finish(mut self) -> (ExitStatus, String) {
        self.stdin.take();
        while self.recv().is_some() {}
        let status = self.child.wait().unwrap();
        let stderr = self.stderr.join().unwrap();
        (status, stderr)
    }
}

/// Whether a result is Warden's refusal, and with which effect.
pub fn refusal_effect(response: &Value) -> Option<String> {
    response
        .pointer("/result/_meta/warden~1decision/effect")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

pub fn result_text(response: &Value) -> String {
    response
        .pointer("/result/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Runs `warden` with arguments and returns (status, stdout, stderr).
pub fn warden(args: &[&str], cwd: &Path) -> (ExitStatus, String, String) {
    let out = Command::new(warden_bin())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
