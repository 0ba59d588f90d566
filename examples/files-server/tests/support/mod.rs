//! Spawns the built server binary and talks newline-delimited JSON-RPC to it.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

/// Turns a hung server into a failed test instead of a hung test run; not a speed assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

pub struct Server {
    pub root: tempfile::TempDir,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Server {
    pub fn start(misbehave: Option<&str>) -> Self {
        let root = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_warden-example-files"));
        command.arg("--root").arg(root.path());
        if let Some(mode) = misbehave {
            command.arg("--misbehave").arg(mode);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(line.trim_end_matches('\n').to_owned()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            root,
            child,
            stdin,
            lines,
        }
    }

    /// Starts a well-behaved server and completes the initialize handshake.
    pub fn ready() -> Self {
        let mut server = Self::start(None);
        server.initialize();
        server
    }

    pub fn initialize(&mut self) -> Value {
        let answer = self.request(
            "init",
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {"roots": {"listChanged": false}},
                "clientInfo": {"name": "harness", "version": "0"},
            }),
        );
        self.notify("notifications/initialized", json!({}));
        answer
    }

    pub fn send_raw(&mut self, line: &str) {
        self.send_bytes(line.as_bytes());
    }

    pub fn send_bytes(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn send(&mut self, message: &Value) {
        self.send_raw(&message.to_string());
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and returns the next message, which must be its response.
    pub fn request(&mut self, id: impl Into<Value>, method: &str, params: Value) -> Value {
        let id = id.into();
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let answer = self.recv();
        assert_eq!(
            answer["id"], id,
            "expected the response to {id}, got {answer}"
        );
        answer
    }

    /// Calls a tool and returns the `result` of its response.
    pub fn call(&mut self, id: impl Into<Value>, tool: &str, arguments: Value) -> Value {
        let answer = self.request(
            id,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        );
        assert!(answer.get("error").is_none(), "{answer}");
        answer["result"].clone()
    }

    pub fn recv_line(&mut self) -> String {
        self.lines
            .recv_timeout(HANG_GUARD)
            .expect("the server neither answered nor closed its output")
    }

    pub fn recv(&mut self) -> Value {
        let line = self.recv_line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:.200}"))
    }

    /// Closes the server's input, collects everything it still writes, and waits for it.
    pub fn finish(mut self) -> (Vec<Value>, ExitStatus) {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(HANG_GUARD) {
                Ok(line) => rest.push(serde_json::from_str(&line).unwrap()),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the server did not exit after its input closed")
                }
            }
        }
        let status = self.child.wait().unwrap();
        (rest, status)
    }

    /// Waits for the server to exit by itself (its input stays open).
    pub fn wait_exit(mut self) -> ExitStatus {
        match self.lines.recv_timeout(HANG_GUARD) {
            Ok(line) => panic!("unexpected output before exit: {line:.200}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the server did not exit"),
        }
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only reached with a live child when a test failed part-way.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of a tool result's first content item.
pub fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap()
}

pub fn is_error(result: &Value) -> bool {
    result["isError"].as_bool().unwrap()
}
