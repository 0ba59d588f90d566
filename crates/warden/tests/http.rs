//! `warden up` over real HTTP: authentication, sessions bound to agents, aggregation and
//! governance of the example server, and the bad input the issue lists. The client is a
//! deliberately small raw HTTP/1.1 client, so tests can send exactly the bytes they mean
//! (slow drips, invalid UTF-8, forged headers).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};

use serde_json::{Value, json};
use support::{HANG_GUARD, Setup, example_server, warden, warden_bin};

/// A running `warden up` and the tokens of its agents.
struct Up {
    child: Child,
    addr: SocketAddr,
    lines: Receiver<String>,
    setup: Setup,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const POLICY: &str = r#"
@id("tester-all")
permit (principal == Agent::"tester", action, resource in Server::"files");
"#;

fn setup(extra_http: &str) -> Setup {
    let s = Setup::new("", POLICY);
    let config = format!(
        "[journal]\npath = \"journal.db\"\n\n[servers.files]\ncommand = [{:?}, \"--root\", {:?}]\n\n[http]\n{extra_http}\n",
        example_server().to_string_lossy(),
        s.path("workspace").to_string_lossy(),
    );
    std::fs::write(s.config(), config).unwrap();
    s
}

fn add_agent(s: &Setup, name: &str) -> String {
    let cfg = s.config();
    let (status, out, err) = warden(
        &["agent", "add", name, "--config", cfg.to_str().unwrap()],
        s.dir.path(),
    );
    assert!(status.success(), "agent add failed: {err}");
    out.lines().last().unwrap().trim().to_owned()
}

fn start(s: Setup) -> Up {
    let mut child = Command::new(warden_bin())
        .args(["up", "--listen", "127.0.0.1:0", "--config"])
        .arg(s.config())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut addr = None;
    loop {
        let line = lines
            .recv_timeout(HANG_GUARD)
            .expect("warden up printed nothing");
        if let Some(rest) = line.strip_prefix("warden: serving MCP at http://") {
            addr = Some(rest.trim_end_matches("/mcp").parse().unwrap());
        }
        if line.contains("upstream \"files\" ready") {
            break;
        }
    }
    Up {
        child,
        addr: addr.expect("no address printed"),
        lines,
        setup: s,
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends raw head + body bytes and reads the whole response (the connection is closed).
fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> Resp {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    read_response(stream)
}

fn read_response(stream: TcpStream) -> Resp {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn post(up: &Up, token: Option<&str>, session: Option<&str>, body: &[u8]) -> Resp {
    post_with(up, token, session, body, &[])
}

fn post_with(
    up: &Up,
    token: Option<&str>,
    session: Option<&str>,
    body: &[u8],
    extra: &[(&str, &str)],
) -> Resp {
    let mut head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nConnection: close\r\nContent-Length: {}\r\n",
        up.addr,
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(s) = session {
        head.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    exchange(up.addr, &head, body)
}

fn rpc(id: u64, method: &str, params: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        .to_string()
        .into_bytes()
}

/// Opens a session for the agent with `token`; returns its id.
fn open(up: &Up, token: &str) -> String {
    let r = post(
        up,
        Some(token),
        None,
        &rpc(
            0,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "warden-tests", "version": "1"}}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"]["serverInfo"]["name"], "warden");
    r.header("mcp-session-id")
        .expect("no session id")
        .to_owned()
}

fn records_of_kind(up: &Up, kind: &str) -> Vec<warden_journal::JournalRecord> {
    up.setup
        .records()
        .into_iter()
        .filter(|r| r.kind == kind)
        .collect()
}

#[test]
fn an_authenticated_agent_sees_and_calls_only_what_policy_allows() {
    let s = setup("");
    let tester = add_agent(&s, "tester");
    let alice = add_agent(&s, "alice");
    let up = start(s);

    let sid = open(&up, &tester);
    let r = post(
        &up,
        Some(&tester),
        Some(&sid),
        &rpc(1, "tools/list", json!({})),
    );
    let names: Vec<String> = r.json()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"files__read_file".to_owned()), "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("files__")), "{names:?}");

    let r = post(
        &up,
        Some(&tester),
        Some(&sid),
        &rpc(
            2,
            "tools/call",
            json!({"name": "files__read_file", "arguments": {"path": "notes.txt"}}),
        ),
    );
    let v = r.json();
    assert_eq!(v["result"]["content"][0]["text"], "the notes\n", "{v}");

    // alice may read but not delete (examples/policies/workspace.cedar): the list and the
    // call agree.
    let sid_a = open(&up, &alice);
    let r = post(
        &up,
        Some(&alice),
        Some(&sid_a),
        &rpc(1, "tools/list", json!({})),
    );
    let listed = r.body.clone();
    assert!(listed.contains("files__read_file"), "{listed}");
    assert!(!listed.contains("files__delete_file"), "{listed}");
    let r = post(
        &up,
        Some(&alice),
        Some(&sid_a),
        &rpc(
            2,
            "tools/call",
            json!({"name": "files__delete_file", "arguments": {"path": "notes.txt"}}),
        ),
    );
    let v = r.json();
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert_eq!(
        v["result"]["_meta"]["warden/decision"]["effect"], "deny",
        "{v}"
    );
    assert!(up.setup.path("workspace/notes.txt").exists());

    // Both decisions are in the journal under the right agents, before any outcome.
    let decisions = records_of_kind(&up, "decision");
    let agents: Vec<&str> = decisions.iter().map(|d| d.agent.as_str()).collect();
    assert!(
        agents.contains(&"tester") && agents.contains(&"alice"),
        "{agents:?}"
    );
}

#[test]
fn requests_without_a_valid_token_are_refused_and_journaled() {
    let s = setup("");
    let token = add_agent(&s, "tester");
    let up = start(s);
    let init = rpc(
        0,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}),
    );

    let r = post(&up, None, None, &init);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.header("www-authenticate").is_some());
    let r = post(&up, Some("wdn_not-a-real-token"), None, &init);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        !r.body.contains("wdn_not-a-real-token"),
        "the token was echoed: {}",
        r.body
    );

    // Revocation takes effect on the running gateway, without a restart.
    let sid = open(&up, &token);
    let cfg = up.setup.config();
    let (status, _, err) = warden(
        &[
            "agent",
            "revoke",
            "tester",
            "--config",
            cfg.to_str().unwrap(),
        ],
        up.setup.dir.path(),
    );
    assert!(status.success(), "{err}");
    let r = post(
        &up,
        Some(&token),
        Some(&sid),
        &rpc(1, "tools/list", json!({})),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("revoked"), "{}", r.body);

    let refused = records_of_kind(&up, "access_refused");
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert_eq!(refused[0].agent.as_str(), "unauthenticated");
    assert_eq!(refused[2].agent.as_str(), "tester");
}

#[test]
fn a_session_is_bound_to_the_agent_that_opened_it() {
    let s = setup("");
    let tester = add_agent(&s, "tester");
    let mallory = add_agent(&s, "mallory");
    let up = start(s);
    let sid = open(&up, &tester);

    // mallory presents tester's session id: refused exactly like an unknown one.
    let r = post(
        &up,
        Some(&mallory),
        Some(&sid),
        &rpc(1, "tools/list", json!({})),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let forged = post(
        &up,
        Some(&mallory),
        Some("00112233445566778899aabbccddeeff"),
        &rpc(1, "tools/list", json!({})),
    );
    assert_eq!(forged.status, 404);
    assert_eq!(
        r.body, forged.body,
        "a foreign session must look like an unknown one"
    );
    // No session header at all.
    let r = post(&up, Some(&mallory), None, &rpc(1, "tools/list", json!({})));
    assert_eq!(r.status, 400, "{}", r.body);

    let refused = records_of_kind(&up, "access_refused");
    assert!(
        refused.iter().any(|r| r.agent.as_str() == "mallory"),
        "the cross-agent attempt was not journaled: {refused:?}"
    );
    // The session still works for its owner.
    let r = post(&up, Some(&tester), Some(&sid), &rpc(2, "ping", json!({})));
    assert_eq!(r.status, 200);

    // DELETE ends it; afterwards the id is unknown.
    let head = format!(
        "DELETE /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {tester}\r\nMcp-Session-Id: {sid}\r\nConnection: close\r\n\r\n",
        up.addr
    );
    assert_eq!(exchange(up.addr, &head, b"").status, 204);
    let r = post(&up, Some(&tester), Some(&sid), &rpc(3, "ping", json!({})));
    assert_eq!(r.status, 404);
}

#[test]
fn rebinding_hosts_and_foreign_origins_are_refused() {
    let s = setup("");
    let token = add_agent(&s, "tester");
    let up = start(s);
    let body = rpc(0, "ping", json!({}));
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: attacker.example:{}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        up.addr.port(),
        body.len()
    );
    assert_eq!(exchange(up.addr, &head, &body).status, 403);
    let r = post_with(
        &up,
        Some(&token),
        None,
        &body,
        &[("Origin", "http://attacker.example")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn malformed_bodies_get_clear_errors_and_the_gateway_keeps_serving() {
    let s = setup("max_body_bytes = 65536\nbody_timeout_secs = 1\n");
    let token = add_agent(&s, "tester");
    let up = start(s);
    let sid = open(&up, &token);

    let r = post(
        &up,
        Some(&token),
        Some(&sid),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"\xff\xfe\"}}",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32700);

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = post(&up, Some(&token), Some(&sid), deep.as_bytes());
    assert_eq!(r.status, 413, "over the 64 KiB bound");
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let r = post(&up, Some(&token), Some(&sid), deep.as_bytes());
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], -32700);

    let big = vec![b' '; 200_000];
    let r = post(&up, Some(&token), Some(&sid), &big);
    assert_eq!(r.status, 413);

    let r = post(
        &up,
        Some(&token),
        Some(&sid),
        br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
    );
    assert_eq!(r.status, 400);

    // A body that drips in slower than the bound allows.
    let body = rpc(5, "ping", json!({}));
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nMcp-Session-Id: {sid}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        up.addr,
        body.len()
    );
    let mut stream = TcpStream::connect(up.addr).unwrap();
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..3]).unwrap();
    // The gateway answers 408 on its own once body_timeout_secs passes; nothing more is sent.
    let r = read_response(stream);
    assert_eq!(r.status, 408, "{}", r.body);

    let r = post(&up, Some(&token), Some(&sid), &rpc(9, "ping", json!({})));
    assert_eq!(r.status, 200, "the gateway stopped serving: {}", r.body);
}

#[test]
fn a_flooding_agent_is_limited_without_degrading_another() {
    let s = setup(
        "max_in_flight_per_agent = 2\nrequests_per_second_per_agent = 1\nburst_per_agent = 5\n",
    );
    let flood = add_agent(&s, "tester");
    let calm = add_agent(&s, "alice");
    let up = start(s);
    let sid = open(&up, &flood);
    let mut limited = 0;
    for i in 0..20 {
        let r = post(&up, Some(&flood), Some(&sid), &rpc(i, "ping", json!({})));
        if r.json()["error"]["code"] == -32004 {
            limited += 1;
        }
    }
    assert!(
        limited >= 14,
        "only {limited} of 20 requests were limited (burst 5, 1/s)"
    );
    let sid_calm = open(&up, &calm);
    let r = post(
        &up,
        Some(&calm),
        Some(&sid_calm),
        &rpc(1, "ping", json!({})),
    );
    assert_eq!(r.json()["result"], json!({}), "{}", r.body);
}

#[test]
fn progress_is_streamed_and_the_answer_follows() {
    let s = setup("");
    let token = add_agent(&s, "tester");
    let up = start(s);
    let sid = open(&up, &token);
    let r = post(
        &up,
        Some(&token),
        Some(&sid),
        &rpc(
            7,
            "tools/call",
            json!({"name": "files__slow_count", "arguments": {"n": 3, "delay_ms": 1},
                                     "_meta": {"progressToken": "p-1"}}),
        ),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events: Vec<Value> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let progress: Vec<&Value> = events
        .iter()
        .filter(|e| e["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{events:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "p-1")
    );
    let last = events.last().unwrap();
    assert_eq!(last["id"], 7, "{events:?}");
    assert!(last["result"].is_object(), "{last}");
    drop(up.lines.try_recv());
}
