//! The server's Streamable HTTP mode as a client sees it: the built binary, over real HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// Turns a hung server into a failed test instead of a hung test run; not a speed assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

struct HttpServer {
    root: tempfile::TempDir,
    child: Child,
    /// `127.0.0.1:PORT`, as the server printed it.
    authority: String,
}

impl HttpServer {
    fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden-example-files"))
            .arg("--root")
            .arg(root.path())
            .args(["--http", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // The first line names the bound port; reading it blocks until the server listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let authority = line
            .trim_end()
            .strip_prefix("listening on http://")
            .and_then(|rest| rest.strip_suffix("/mcp"))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self {
            root,
            child,
            authority,
        }
    }

    /// One request on a fresh connection; returns the status, the headers (names in lower
    /// case) and the body.
    fn exchange(
        &self,
        method: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Vec<(String, String)>, String) {
        let mut stream = TcpStream::connect(&self.authority).unwrap();
        stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
        let mut request = format!(
            "{method} /mcp HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             Content-Length: {}\r\n",
            self.authority,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("no end of headers");
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("no status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (status, headers, body.to_owned())
    }

    fn post(&self, session: Option<&str>, message: &Value) -> (u16, Vec<(String, String)>, String) {
        let headers: Vec<_> = session.map(|s| ("Mcp-Session-Id", s)).into_iter().collect();
        self.exchange("POST", &headers, &message.to_string())
    }

    /// `initialize` and `notifications/initialized`; returns the session id and the result.
    fn initialize(&self) -> (String, Value) {
        let (status, headers, body) = self.post(
            None,
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"}}}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let session = header(&headers, "mcp-session-id")
            .expect("initialize names no session")
            .to_owned();
        let result = serde_json::from_str::<Value>(&body).unwrap()["result"].clone();
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let (status, _, body) = self.post(Some(&session), &note);
        assert_eq!(status, 202);
        assert!(body.is_empty(), "{body}");
        (session, result)
    }

    /// A request on `session`; returns the whole JSON-RPC response.
    fn request(&self, session: &str, id: u64, method: &str, params: Value) -> Value {
        let (status, headers, body) = self.post(
            Some(session),
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["id"], id, "{answer}");
        answer
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn call(tool: &str, arguments: Value) -> Value {
    json!({"name": tool, "arguments": arguments})
}

#[test]
fn initialize_list_and_call_echo() {
    let server = HttpServer::start();
    let (session, result) = server.initialize();
    assert_eq!(result["protocolVersion"], "2025-06-18");
    assert_eq!(result["serverInfo"]["name"], "warden-example-files");

    let listed = server.request(&session, 1, "tools/list", json!({}));
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for tool in ["echo", "read_file", "write_file", "slow_count", "ask_roots"] {
        assert!(names.contains(&tool), "{tool} missing from {names:?}");
    }

    let params = json!({"name": "echo", "arguments": {"text": "hi"}, "_meta": {"k": "v"}});
    let answer = server.request(&session, 2, "tools/call", params);
    let result = &answer["result"];
    assert_eq!(result["isError"], false, "{answer}");
    let echoed: Value =
        serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        echoed,
        json!({"arguments": {"text": "hi"}, "_meta": {"k": "v"}})
    );

    let answer = server.request(&session, 3, "ping", json!({}));
    assert_eq!(answer["result"], json!({}));
}

#[test]
fn file_tools_run_confined_to_the_root() {
    let server = HttpServer::start();
    std::fs::write(server.root.path().join("notes.txt"), "the notes\n").unwrap();
    let (session, _) = server.initialize();
    let answer = server.request(
        &session,
        1,
        "tools/call",
        call("read_file", json!({"path": "notes.txt"})),
    );
    assert_eq!(
        answer["result"]["content"][0]["text"], "the notes\n",
        "{answer}"
    );
    let answer = server.request(
        &session,
        2,
        "tools/call",
        call("read_file", json!({"path": "../x"})),
    );
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    // With no event stream the server cannot ask the client anything: the tool fails, at once.
    let answer = server.request(&session, 3, "tools/call", call("ask_roots", json!({})));
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let answer = server.request(&session, 4, "tools/call", call("no_such_tool", json!({})));
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
}

#[test]
fn sessions_are_required_and_end_with_delete() {
    let server = HttpServer::start();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let (status, _, _) = server.post(None, &list);
    assert_eq!(status, 400, "a request without a session");
    let (status, _, _) = server.post(Some("not-a-session"), &list);
    assert_eq!(status, 404, "a request naming an unknown session");

    let (first, _) = server.initialize();
    let (second, _) = server.initialize();
    assert_ne!(first, second);
    let (status, _, _) = server.exchange("DELETE", &[("Mcp-Session-Id", &first)], "");
    assert_eq!(status, 200);
    let (status, _, _) = server.post(Some(&first), &list);
    assert_eq!(status, 404, "the ended session");
    let (status, _, _) = server.exchange("DELETE", &[("Mcp-Session-Id", &first)], "");
    assert_eq!(status, 404, "ending it twice");
    server.request(&second, 1, "tools/list", json!({}));
}

#[test]
fn refuses_bad_messages_foreign_origins_and_unknown_versions() {
    let server = HttpServer::start();
    let (session, _) = server.initialize();
    let (status, _, body) = server.exchange("POST", &[("Mcp-Session-Id", &session)], "{not json");
    assert_eq!(status, 400);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"]["code"], -32700, "{answer}");

    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let (status, _, _) = server.exchange(
        "POST",
        &[
            ("Mcp-Session-Id", &session),
            ("Origin", "http://evil.example"),
        ],
        &ping,
    );
    assert_eq!(status, 403);
    let (status, _, _) = server.exchange(
        "POST",
        &[
            ("Mcp-Session-Id", &session),
            ("Origin", "http://localhost:5173"),
        ],
        &ping,
    );
    assert_eq!(status, 200);
    let (status, _, _) = server.exchange(
        "POST",
        &[
            ("Mcp-Session-Id", &session),
            ("MCP-Protocol-Version", "1999-01-01"),
        ],
        &ping,
    );
    assert_eq!(status, 400);
    // No event stream is offered.
    let (status, _, _) = server.exchange("GET", &[("Mcp-Session-Id", &session)], "");
    assert_eq!(status, 405);
}

#[test]
fn misbehaving_is_for_stdio_only() {
    let root = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_warden-example-files"))
        .arg("--root")
        .arg(root.path())
        .args(["--http", "127.0.0.1:0", "--misbehave", "garbage"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("stdio only"));
}

#[test]
fn a_cancelled_call_gets_no_response() {
    let server = HttpServer::start();
    let (session, _) = server.initialize();
    // Without cancellation this call would outlast the test's guard.
    let slow = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": call("slow_count", json!({"n": 1, "delay_ms": 60_000}))});
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 7}});
    std::thread::scope(|scope| {
        let running = scope.spawn(|| server.post(Some(&session), &slow));
        // The call may not be registered yet when a cancellation arrives: repeat until it ends.
        let deadline = std::time::Instant::now() + HANG_GUARD;
        while !running.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "the call was never cancelled"
            );
            let (status, _, _) = server.post(Some(&session), &cancel);
            assert_eq!(status, 202);
            std::thread::sleep(Duration::from_millis(10));
        }
        let (status, _, body) = running.join().unwrap();
        assert_eq!(status, 202, "{body}");
        assert!(body.is_empty(), "{body}");
    });
}
