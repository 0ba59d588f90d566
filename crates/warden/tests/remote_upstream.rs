//! A remote upstream over Streamable HTTP: the npm reference `server-everything` in its HTTP
//! mode, behind `warden up`. Warden is the HTTP client of the server and the HTTP server of
//! the agent; the server's session and Warden's credentials for it stay inside Warden.

mod support;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};
use support::up::{EventStream, add_agent, post, start};
use support::{HANG_GUARD, Setup, repo_root};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `server-everything streamableHttp` on a free loopback port, once it accepts connections.
fn everything_over_http() -> (Server, u16) {
    let bin = repo_root().join("tests/interop/node_modules/.bin/mcp-server-everything");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test-deps (scripts/test does)",
        bin.display()
    );
    let port = free_port();
    let child = Command::new(bin)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + HANG_GUARD;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server-everything never listened"
        );
        std::thread::yield_now();
    }
    (server, port)
}

fn rpc(id: u64, method: &str, params: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        .to_string()
        .into_bytes()
}

#[test]
fn a_remote_streamable_http_server_is_governed_like_a_local_one() {
    let (_server, port) = everything_over_http();
    let s = Setup::new(
        "",
        r#"
@id("tester-echo")
permit (principal == Agent::"tester", action == Action::"call_tool", resource == Tool::"everything/echo");
"#,
    );
    std::fs::write(
        s.config(),
        format!(
            "[journal]\npath = \"journal.db\"\n\n[servers.everything]\nurl = \"http://127.0.0.1:{port}/mcp\"\nheaders = {{ X-Warden-Test = \"credential-fixture\" }}\n"
        ),
    )
    .unwrap();
    let token = add_agent(&s, "tester");
    let up = start(s, &["everything"]);

    let init = post(
        &up,
        Some(&token),
        None,
        &rpc(
            0,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        ),
    );
    let sid = init.header("mcp-session-id").unwrap().to_owned();
    let list = post(
        &up,
        Some(&token),
        Some(&sid),
        &rpc(1, "tools/list", json!({})),
    );
    let names: Vec<String> = list.json()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["everything__echo"],
        "only the permitted tool is listed"
    );

    let r = post(
        &up,
        Some(&token),
        Some(&sid),
        &rpc(
            2,
            "tools/call",
            json!({"name": "everything__echo", "arguments": {"message": "hi"}}),
        ),
    );
    let v = r.json();
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("hi"),
        "{v}"
    );
    let r = post(
        &up,
        Some(&token),
        Some(&sid),
        &rpc(
            3,
            "tools/call",
            json!({"name": "everything__get-env", "arguments": {}}),
        ),
    );
    let v = r.json();
    assert_eq!(
        v["result"]["_meta"]["warden/decision"]["effect"], "deny",
        "{v}"
    );
    // Neither Warden's credential nor the server's own session id reached the agent.
    for body in [&init.body, &list.body, &r.body] {
        assert!(!body.contains("credential-fixture"), "{body}");
    }
    assert_ne!(init.header("mcp-session-id"), None);
    let decisions: Vec<_> = up.setup.decisions();
    assert_eq!(decisions.len(), 2, "{decisions:?}");
}

/// server-everything over HTTP behind `warden up`, the agent "tester" allowed its tools (and
/// `extra_policy`), and a session of tester's whose client offers sampling.
fn sampling_client(extra_policy: &str) -> (Server, support::up::Up, String, String) {
    let (server, port) = everything_over_http();
    let s = Setup::new(
        "",
        &format!(
            r#"
@id("tester-tools")
permit (principal == Agent::"tester", action == Action::"call_tool", resource in Server::"everything");
{extra_policy}"#
        ),
    );
    std::fs::write(
        s.config(),
        format!("[journal]\npath = \"journal.db\"\n\n[servers.everything]\nurl = \"http://127.0.0.1:{port}/mcp\"\n"),
    )
    .unwrap();
    let token = add_agent(&s, "tester");
    let up = start(s, &["everything"]);
    let init = post(
        &up,
        Some(&token),
        None,
        &rpc(
            0,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {"sampling": {}}, "clientInfo": {"name": "t", "version": "1"}}),
        ),
    );
    let sid = init.header("mcp-session-id").unwrap().to_owned();
    (server, up, token, sid)
}

/// An upstream's sampling request in the course of a call reaches the agent on the call's
/// stream — when policy lets that server sample this agent — and the agent's answer goes
/// back to the server.
#[test]
fn a_sampling_request_of_the_server_is_decided_and_relayed_to_the_agent() {
    let (_server, up, token, sid) = sampling_client(
        r#"
@id("everything-may-sample-tester")
permit (principal == Server::"everything", action == Action::"sample", resource == Agent::"tester");
"#,
    );

    let body = rpc(
        5,
        "tools/call",
        json!({"name": "everything__trigger-sampling-request", "arguments": {"prompt": "say hi", "maxTokens": 5}}),
    );
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nMcp-Session-Id: {sid}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n",
        up.addr,
        body.len()
    );
    let mut events = EventStream::open(up.addr, &head, &body);
    assert_eq!(events.status, 200);
    assert!(
        events.content_type.starts_with("text/event-stream"),
        "{}",
        events.content_type
    );
    let request = events.next_event().expect("no sampling request");
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {
        "role": "assistant", "model": "fixture-model",
        "content": {"type": "text", "text": "hello from the model"}}});
    let r = post(&up, Some(&token), Some(&sid), answer.to_string().as_bytes());
    assert_eq!(r.status, 202);
    let response = events
        .next_event()
        .expect("no response after the sampling answer");
    assert_eq!(response["id"], 5, "{response}");
    let text = response["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("hello from the model"), "{text}");

    let sample = up
        .setup
        .decisions()
        .into_iter()
        .find(|d| d.body["action"] == "sample")
        .expect("the sampling request was not journaled");
    assert_eq!(sample.body["effect"], "allow");
    assert_eq!(sample.body["target"], "everything");
}

#[test]
fn a_sampling_request_policy_does_not_allow_never_reaches_the_agent() {
    let (_server, up, token, sid) = sampling_client("");
    let body = rpc(
        5,
        "tools/call",
        json!({"name": "everything__trigger-sampling-request", "arguments": {"prompt": "say hi"}}),
    );
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nMcp-Session-Id: {sid}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        up.addr,
        body.len()
    );
    let mut events = EventStream::open(up.addr, &head, &body);
    // The only message is the call's answer (plain JSON, or the one event of a stream): the
    // server was told no, and the agent was never asked.
    assert_eq!(events.status, 200);
    if events.content_type.starts_with("text/event-stream") {
        let m = events.next_event().expect("no answer");
        assert!(m.get("method").is_none(), "the agent was sent {m}");
    }
    let sample = up
        .setup
        .decisions()
        .into_iter()
        .find(|d| d.body["action"] == "sample")
        .expect("the refused sampling request was not journaled");
    assert_eq!(sample.body["effect"], "deny", "{:?}", sample.body);
}

/// Warden's credential for a remote server lives in its environment; no server Warden spawns
/// may read it there.
#[test]
fn spawned_servers_do_not_inherit_warden_s_credentials() {
    let (_server, port) = everything_over_http();
    let s = Setup::new(
        "",
        r#"
@id("tester-env")
permit (principal == Agent::"tester", action == Action::"call_tool", resource == Tool::"local/get-env");
"#,
    );
    let bin = repo_root().join("tests/interop/node_modules/.bin/mcp-server-everything");
    std::fs::write(
        s.config(),
        format!(
            "[journal]\npath = \"journal.db\"\n\n[servers.remote]\nurl = \"http://127.0.0.1:{port}/mcp\"\nbearer_token_env = \"WARDEN_TEST_REMOTE_CREDENTIAL\"\n\n[servers.local]\ncommand = [{:?}, \"stdio\"]\nenv = {{ WARDEN_TEST_GIVEN = \"given-to-local\" }}\n",
            bin.to_string_lossy()
        ),
    )
    .unwrap();
    let token = add_agent(&s, "tester");
    let mut child = std::process::Command::new(support::warden_bin())
        .args(["up", "--listen", "127.0.0.1:0", "--config"])
        .arg(s.config())
        .env("WARDEN_TEST_REMOTE_CREDENTIAL", "credential-fixture-xyz")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut addr = None;
    let mut ready = 0;
    while ready < 2 {
        let line = lines.next().expect("warden up ended").unwrap();
        if let Some(rest) = line.strip_prefix("warden: serving MCP at http://") {
            addr = Some(rest.trim_end_matches("/mcp").to_owned());
        }
        if line.contains("ready") {
            ready += 1;
        }
    }
    let addr = addr.unwrap();
    let send = |sid: Option<&str>, body: Vec<u8>| {
        let mut head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(sid) = sid {
            head.push_str(&format!("Mcp-Session-Id: {sid}\r\n"));
        }
        head.push_str("\r\n");
        support::up::exchange(addr.parse().unwrap(), &head, &body)
    };
    let init = send(
        None,
        rpc(
            0,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        ),
    );
    let sid = init.header("mcp-session-id").unwrap().to_owned();
    let r = send(
        Some(&sid),
        rpc(
            1,
            "tools/call",
            json!({"name": "local__get-env", "arguments": {}}),
        ),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        r.body.contains("given-to-local"),
        "the configured variable is missing: {}",
        r.body
    );
    assert!(
        !r.body.contains("WARDEN_TEST_REMOTE_CREDENTIAL"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("credential-fixture-xyz"), "{}", r.body);
}
