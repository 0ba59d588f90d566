//! `warden up` over real HTTP: authentication, sessions bound to agents, aggregation and
//! governance of the example server, and the bad input the issue lists. The client is a
//! deliberately small raw HTTP/1.1 client, so tests can send exactly the bytes they mean
//! (slow drips, invalid UTF-8, forged headers).

mod support;

use std::io::Write;
use std::net::TcpStream;

use serde_json::{Value, json};
use support::up::{
    EventStream, Resp, Up, add_agent, add_operator, exchange, files_setup, files_setup_with,
    open_session, post, post_with, read_response, rpc, start,
};
use support::{HANG_GUARD, warden};

/// `warden up` in front of `s`'s example server, the agent "tester", and a session of its.
fn tester_session(s: support::Setup) -> (Up, String, String) {
    let token = add_agent(&s, "tester");
    let up = start(s, &["files"]);
    let sid = open_session(&up, &token);
    (up, token, sid)
}

/// A `tools/call` in the session; the whole response.
fn call_tool(up: &Up, token: &str, sid: &str, id: u64, params: Value) -> Resp {
    post(up, Some(token), Some(sid), &rpc(id, "tools/call", params))
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
    let s = files_setup("");
    let tester = add_agent(&s, "tester");
    let alice = add_agent(&s, "alice");
    let up = start(s, &["files"]);

    let sid = open_session(&up, &tester);
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
    let sid_a = open_session(&up, &alice);
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
    let s = files_setup("");
    let token = add_agent(&s, "tester");
    let up = start(s, &["files"]);
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
    let sid = open_session(&up, &token);
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
    let s = files_setup("");
    let tester = add_agent(&s, "tester");
    let mallory = add_agent(&s, "mallory");
    let up = start(s, &["files"]);
    let sid = open_session(&up, &tester);

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
    let s = files_setup("");
    let token = add_agent(&s, "tester");
    let up = start(s, &["files"]);
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
    let s = files_setup("max_body_bytes = 65536\nbody_timeout_secs = 1\n");
    let (up, token, sid) = tester_session(s);

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
    let s = files_setup(
        "max_in_flight_per_agent = 2\nrequests_per_second_per_agent = 1\nburst_per_agent = 5\n",
    );
    let flood = add_agent(&s, "tester");
    let calm = add_agent(&s, "alice");
    let up = start(s, &["files"]);
    let began = std::time::Instant::now();
    let sid = open_session(&up, &flood);
    let mut limited = 0;
    for i in 0..20 {
        let r = post(&up, Some(&flood), Some(&sid), &rpc(i, "ping", json!({})));
        if r.json()["error"]["code"] == -32004 {
            limited += 1;
        }
    }
    // A burst of 5 (initialize took one) plus 1 a second while the loop ran: however slow
    // the machine, no more than that may pass.
    let refilled = began.elapsed().as_secs() + 1;
    let allowed = 20 - limited;
    assert!(
        allowed <= 4 + refilled && limited > 0,
        "{allowed} of 20 requests passed in {refilled} s (burst 5, 1/s)"
    );
    let sid_calm = open_session(&up, &calm);
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
    let s = files_setup("");
    let (up, token, sid) = tester_session(s);
    let r = call_tool(
        &up,
        &token,
        &sid,
        7,
        json!({"name": "files__slow_count", "arguments": {"n": 3, "delay_ms": 1},
                                     "_meta": {"progressToken": "p-1"}}),
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

#[test]
fn secrets_in_results_are_redacted_and_their_labels_journaled() {
    let s = files_setup("");
    // A fixture shaped like an AWS key id; valid for nothing.
    std::fs::write(s.path("workspace/leak.txt"), "id=AKIAABCDEFGHIJKLMNOP\n").unwrap();
    let (up, token, sid) = tester_session(s);
    let r = call_tool(
        &up,
        &token,
        &sid,
        1,
        json!({"name": "files__read_file", "arguments": {"path": "leak.txt"}}),
    );
    let text = r.json()["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(text, "id=[REDACTED:aws-access-key]\n");
    // The outcome is appended after the answer: wait for it through the journal itself.
    let outcome = wait_for_record(&up, "outcome");
    assert_eq!(
        outcome.body["labels"],
        json!(["aws-access-key"]),
        "{:?}",
        outcome.body
    );
}

#[test]
fn one_server_can_keep_its_own_names() {
    let s = support::up::files_setup_with(&[], "namespace = false", "");
    let (up, token, sid) = tester_session(s);
    let r = post(
        &up,
        Some(&token),
        Some(&sid),
        &rpc(1, "tools/list", json!({})),
    );
    assert!(r.body.contains("\"read_file\""), "{}", r.body);
    assert!(!r.body.contains("files__"), "{}", r.body);
    let r = call_tool(
        &up,
        &token,
        &sid,
        2,
        json!({"name": "read_file", "arguments": {"path": "notes.txt"}}),
    );
    assert_eq!(
        r.json()["result"]["content"][0]["text"],
        "the notes\n",
        "{}",
        r.body
    );
}

#[test]
fn an_upstream_that_crashes_is_restarted_and_calls_fail_clearly_meanwhile() {
    let s = support::up::files_setup_with(&["--misbehave", "crash-on-call"], "", "");
    let (up, token, sid) = tester_session(s);
    let r = call_tool(
        &up,
        &token,
        &sid,
        1,
        json!({"name": "files__read_file", "arguments": {"path": "notes.txt"}}),
    );
    let v = r.json();
    assert_eq!(v["error"]["code"], -32002, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("exited"),
        "{v}"
    );
    up.wait_line("upstream \"files\" down");
    up.wait_line("upstream \"files\" ready");
    // Restarted: listing works again on the same session.
    let r = post(
        &up,
        Some(&token),
        Some(&sid),
        &rpc(2, "tools/list", json!({})),
    );
    assert!(r.body.contains("files__read_file"), "{}", r.body);
    let outcome = wait_for_record(&up, "outcome");
    assert_eq!(
        outcome.body["outcome"], "upstream_gone",
        "{:?}",
        outcome.body
    );
}

#[test]
fn an_upstream_that_never_answers_or_answers_garbage_times_out_clearly() {
    for mode in ["never-answer-calls", "garbage"] {
        let s = support::up::files_setup_with(
            &["--misbehave", mode],
            "",
            "[limits]\ncall_timeout_secs = 0.5\n",
        );
        let (up, token, sid) = tester_session(s);
        let r = call_tool(
            &up,
            &token,
            &sid,
            1,
            json!({"name": "files__read_file", "arguments": {"path": "notes.txt"}}),
        );
        let v = r.json();
        assert_eq!(v["error"]["code"], -32001, "{mode}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("did not answer"),
            "{v}"
        );
        let r = post(&up, Some(&token), Some(&sid), &rpc(2, "ping", json!({})));
        assert_eq!(
            r.json()["result"],
            json!({}),
            "{mode}: the gateway stopped serving"
        );
        let outcome = wait_for_record(&up, "outcome");
        assert_eq!(
            outcome.body["outcome"], "timeout",
            "{mode}: {:?}",
            outcome.body
        );
    }
}

/// The first record of `kind`, waiting for it to be appended (outcomes are written after the
/// answer is sent, so a test can see the answer first).
fn wait_for_record(up: &Up, kind: &str) -> warden_journal::JournalRecord {
    let deadline = std::time::Instant::now() + HANG_GUARD;
    loop {
        if let Some(r) = records_of_kind(up, kind).into_iter().next() {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} record appeared"
        );
        std::thread::yield_now();
    }
}

#[test]
fn an_unknown_protocol_version_header_is_refused() {
    let s = files_setup("");
    let (up, token, sid) = tester_session(s);
    let ping = rpc(1, "ping", json!({}));
    let r = post_with(
        &up,
        Some(&token),
        Some(&sid),
        &ping,
        &[("MCP-Protocol-Version", "1999-01-01")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post_with(
        &up,
        Some(&token),
        Some(&sid),
        &ping,
        &[("MCP-Protocol-Version", "2025-03-26")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn a_cancelled_call_is_cancelled_upstream_and_journaled() {
    let s = files_setup("");
    let (up, token, sid) = tester_session(s);
    let call = {
        let (addr, token, sid) = (up.addr, token.clone(), sid.clone());
        std::thread::spawn(move || {
            let body = rpc(
                41,
                "tools/call",
                json!({"name": "files__slow_count", "arguments": {"n": 1000, "delay_ms": 50}}),
            );
            let head = format!(
                "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nMcp-Session-Id: {sid}\r\nContent-Type: application/json\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            exchange(addr, &head, &body)
        })
    };
    // The decision is journaled before the call is forwarded: once it is there, the call is
    // in flight (or about to be) and can be cancelled.
    wait_for_record(&up, "decision");
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 41, "reason": "changed my mind"}});
    let r = post(&up, Some(&token), Some(&sid), cancel.to_string().as_bytes());
    assert_eq!(r.status, 202);
    let answered = call.join().unwrap().json();
    assert_eq!(answered["error"]["code"], -32800, "{answered}");
    let outcome = wait_for_record(&up, "outcome");
    assert_eq!(outcome.body["outcome"], "cancelled", "{:?}", outcome.body);
}

#[test]
fn list_changes_reach_the_agent_on_its_event_stream() {
    let s = support::up::files_setup_with(&["--misbehave", "crash-on-call"], "", "");
    let (up, token, sid) = tester_session(s);
    let mut stream = TcpStream::connect(up.addr).unwrap();
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    write!(
        stream,
        "GET /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nMcp-Session-Id: {sid}\r\nAccept: text/event-stream\r\n\r\n",
        up.addr
    )
    .unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert!(line.contains("200"), "{line}");
    // Crash the upstream; when it is back, its tools may have changed: the agent is told.
    let r = call_tool(
        &up,
        &token,
        &sid,
        1,
        json!({"name": "files__echo", "arguments": {}}),
    );
    assert_eq!(r.json()["error"]["code"], -32002);
    up.wait_line("upstream \"files\" ready");
    loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(n > 0, "the event stream ended");
        if line.contains("notifications/tools/list_changed") {
            break;
        }
    }
}

#[test]
fn tls_is_served_when_configured() {
    // A self-signed certificate made for this test only.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let s = files_setup("tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"");
    std::fs::write(s.path("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(s.path("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let token = add_agent(&s, "tester");
    let up = start(s, &["files"]);
    let url = format!("https://localhost:{}/mcp", up.addr.port());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap(),
            )
            .build()
            .unwrap();
        let r = client
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("mcp-session-id"));
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["result"]["serverInfo"]["name"], "warden");
        // A client that does not trust the certificate gets no answer at all.
        let untrusting = reqwest::Client::new();
        assert!(untrusting.post(&url).body("{}").send().await.is_err());
    });
    // Plain HTTP to the TLS port is not served (the server may even hang up before the
    // request is fully written, so a failed write is an acceptable outcome too).
    let mut stream = TcpStream::connect(up.addr).unwrap();
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let _ = write!(
        stream,
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Length: 2\r\n\r\n{{}}",
        up.addr
    );
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was served over the TLS port"
    );
}

/// `GET /mcp` for `sid`: the session's event stream, or the refusal of one.
fn open_event_stream(up: &Up, token: &str, sid: &str) -> EventStream {
    let head = format!(
        "GET /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nMcp-Session-Id: {sid}\r\nAccept: text/event-stream\r\n\r\n",
        up.addr
    );
    EventStream::open(up.addr, &head, b"")
}

#[test]
fn event_streams_end_with_their_session_and_are_bounded_per_session() {
    let s = files_setup("");
    let token = add_agent(&s, "tester");
    let up = start(s, &["files"]);
    let sid = open_session(&up, &token);
    let mut streams: Vec<EventStream> = (0..4)
        .map(|_| open_event_stream(&up, &token, &sid))
        .collect();
    assert!(streams.iter().all(|e| e.status == 200));
    let fifth = open_event_stream(&up, &token, &sid);
    assert_eq!(fifth.status, 429, "a fifth stream for one session");
    drop(fifth);
    // The agent ends its session: every stream of it ends too, not only its requests.
    let delete = format!(
        "DELETE /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nMcp-Session-Id: {sid}\r\nConnection: close\r\n\r\n",
        up.addr
    );
    assert_eq!(exchange(up.addr, &delete, b"").status, 204);
    for stream in &mut streams {
        // `next_event` fails the test on its read timeout; it returns None when it ends.
        assert_eq!(stream.next_event(), None);
    }
}

#[test]
fn one_agent_cannot_hold_more_than_sixteen_event_streams() {
    let s = files_setup("");
    let token = add_agent(&s, "tester");
    let up = start(s, &["files"]);
    let mut held = Vec::new();
    let mut last = 0;
    for _ in 0..5 {
        let sid = open_session(&up, &token);
        for _ in 0..4 {
            let stream = open_event_stream(&up, &token, &sid);
            last = stream.status;
            if stream.status == 200 {
                held.push(stream);
            }
        }
    }
    assert_eq!(held.len(), 16, "streams open across the agent's sessions");
    assert_eq!(last, 429);
}

#[test]
fn sigterm_stops_warden_even_with_an_event_stream_open() {
    let s = files_setup("");
    let token = add_agent(&s, "tester");
    let mut up = start(s, &["files"]);
    let sid = open_session(&up, &token);
    let mut stream = TcpStream::connect(up.addr).unwrap();
    write!(
        stream,
        "GET /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nMcp-Session-Id: {sid}\r\nAccept: text/event-stream\r\n\r\n",
        up.addr
    )
    .unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert!(line.contains("200"), "{line}");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &up.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The client keeps its stream open; Warden must end it and exit on its own.
    let deadline = std::time::Instant::now() + HANG_GUARD;
    let exited = loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "warden did not exit after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(exited.success(), "{exited}");
    let ended = records_of_kind(&up, "session_ended");
    assert_eq!(ended.len(), 1, "{ended:?}");
    drop(reader);
}

#[test]
fn an_upstream_that_pages_its_tools_is_paged_through_warden() {
    let s = support::up::files_setup_with(&["--tools-page-size", "4"], "", "");
    let (up, token, sid) = tester_session(s);
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let r = post(&up, Some(&token), Some(&sid), &rpc(1, "tools/list", params));
        let v = r.json();
        let page: Vec<String> = v["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        assert!(page.len() <= 4, "{page:?}");
        names.extend(page);
        pages += 1;
        cursor = v["result"]["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
        assert!(pages < 10, "the cursors never end");
    }
    assert_eq!(pages, 3, "9 tools, 4 a page");
    let unique: std::collections::BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), 9, "{names:?}");
    assert!(names.contains(&"files__echo".to_owned()), "{names:?}");
    let r = post(
        &up,
        Some(&token),
        Some(&sid),
        &rpc(2, "tools/list", json!({"cursor": "not-a-cursor"})),
    );
    assert_eq!(r.json()["error"]["code"], -32602);
}

/// `warden agent add tester --rotate` on `up`'s configuration: the new token.
fn rotate_tester(up: &Up) -> String {
    let cfg = up.setup.config();
    let rotate = [
        "agent",
        "add",
        "tester",
        "--rotate",
        "--config",
        cfg.to_str().unwrap(),
    ];
    let (status, out, err) = warden(&rotate, up.setup.dir.path());
    assert!(status.success(), "{out}{err}");
    out.lines().last().unwrap().trim().to_owned()
}

#[test]
fn rotating_a_token_ends_the_sessions_opened_with_the_old_one() {
    let s = files_setup("");
    let old = add_agent(&s, "tester");
    let up = start(s, &["files"]);
    let sid = open_session(&up, &old);
    let new = rotate_tester(&up);
    // The agent is the same; the session was opened with a token that no longer works.
    let r = post(&up, Some(&new), Some(&sid), &rpc(1, "ping", json!({})));
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("token changed"), "{}", r.body);
    let ended = records_of_kind(&up, "session_ended");
    assert_eq!(ended.len(), 1, "{ended:?}");
    // A new session with the new token works.
    let sid = open_session(&up, &new);
    let r = post(&up, Some(&new), Some(&sid), &rpc(2, "ping", json!({})));
    assert_eq!(r.status, 200);
}

#[test]
fn a_quarantined_agent_is_cut_off_and_its_token_revoked() {
    // The default monitor: naming Warden's own journal is an attempt on Warden itself
    // (critical), and the default playbook quarantines on critical.
    let (up, token, sid) = tester_session(files_setup(""));
    let journal = up.setup.path("journal.db").display().to_string();
    let r = call_tool(
        &up,
        &token,
        &sid,
        1,
        json!({"name": "files__read_file", "arguments": {"path": journal}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // The token is revoked: the session is over and a new one cannot be opened.
    let r = call_tool(
        &up,
        &token,
        &sid,
        2,
        json!({"name": "files__read_file", "arguments": {"path": "notes.txt"}}),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("revoked"), "{}", r.body);
    let alert = wait_for_record(&up, "alert");
    assert_eq!(alert.body["detector"], "self_tamper");
    wait_for_record(&up, "quarantined");
    assert!(
        records_of_kind(&up, "agent_changed")
            .iter()
            .any(|r| r.body["change"] == "revoked"),
        "the revocation is journaled"
    );
    // A new token alone does not lift the quarantine: only a release does.
    let cfg = up.setup.config();
    let (status, out, err) = warden(
        &[
            "agent",
            "add",
            "tester",
            "--rotate",
            "--config",
            cfg.to_str().unwrap(),
        ],
        up.setup.dir.path(),
    );
    assert!(status.success(), "{err}");
    let fresh = out
        .split_whitespace()
        .find(|w| w.starts_with("wdn_"))
        .expect("a new token")
        .to_owned();
    let sid = open_session(&up, &fresh);
    let r = call_tool(
        &up,
        &fresh,
        &sid,
        3,
        json!({"name": "files__read_file", "arguments": {"path": "notes.txt"}}),
    );
    assert!(
        r.json()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("quarantined"),
        "{}",
        r.body
    );
}

#[test]
fn the_control_plane_is_for_operators_and_its_quarantine_holds_at_once() {
    let s = files_setup("");
    // The control plane on a port of its own.
    let config = std::fs::read_to_string(s.config()).unwrap();
    std::fs::write(
        s.config(),
        format!("{config}\n[control]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let admin = add_operator(&s, "ana", "admin");
    let (up, token, sid) = tester_session(s);
    let control = up.control_addr();
    let get = |bearer: &str| up.control_get("/api/v1/journal?limit=5", bearer);
    // An agent's token never opens the control plane.
    assert_eq!(get(&token).status, 401);
    let r = get(&admin);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.json()["records"].as_array().unwrap().is_empty());
    // An admin quarantines the agent: its very next call is refused.
    let body = br#"{"reason": "seen on the dashboard"}"#;
    let r = exchange(
        control,
        &format!(
            "POST /api/v1/agents/tester/quarantine HTTP/1.1\r\nhost: {control}\r\n\
             authorization: Bearer {admin}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        ),
        body,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call_tool(
        &up,
        &token,
        &sid,
        1,
        json!({"name": "files__read_file", "arguments": {"path": "notes.txt"}}),
    );
    assert!(
        r.body.contains("quarantined") && r.body.contains("seen on the dashboard"),
        "{}",
        r.body
    );
    let q = wait_for_record(&up, "quarantined");
    assert_eq!(q.body["by"], "operator:ana");
}

/// The value of the Prometheus sample `series` (name and labels) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_count_decisions_alerts_quarantines_and_journal_commits() {
    let s = files_setup_with(
        &[],
        "",
        "[control]\nlisten = \"127.0.0.1:0\"\n\n\
         [monitor.detectors.denial_burst]\nthreshold = 2\n\n\
         [[monitor.playbook]]\ndetector = \"denial_burst\"\nrespond = [\"quarantine\"]\n",
    );
    let viewer = add_operator(&s, "vic", "viewer");
    let (up, token, sid) = tester_session(s);
    let scrape = || {
        let r = up.control_get("/metrics", &viewer);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    };
    let before = scrape();
    let commits_before = sample(&before, "warden_journal_commit_seconds_count").unwrap_or(0.0);
    let allowed = r#"warden_decisions_total{effect="allow",action="call_tool"}"#;
    let denied = r#"warden_decisions_total{effect="deny",action="call_tool"}"#;
    assert_eq!(sample(&before, denied), Some(0.0), "{before}");

    let r = call_tool(
        &up,
        &token,
        &sid,
        1,
        json!({"name": "files__read_file", "arguments": {"path": "notes.txt"}}),
    );
    assert!(r.body.contains("the notes"), "{}", r.body);
    for id in 2..4 {
        let r = call_tool(
            &up,
            &token,
            &sid,
            id,
            json!({"name": "files__read_file", "arguments": {"path": "secrets/key.env"}}),
        );
        assert!(
            r.body.contains("denied") || r.body.contains("refused"),
            "{}",
            r.body
        );
    }
    wait_for_record(&up, "quarantined");

    let after = scrape();
    assert_eq!(sample(&after, allowed), Some(1.0), "{after}");
    assert_eq!(sample(&after, denied), Some(2.0), "{after}");
    assert_eq!(
        sample(
            &after,
            r#"warden_alerts_total{detector="denial_burst",severity="high"}"#
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, r#"warden_quarantines_total{level="quarantine"}"#),
        Some(1.0),
        "{after}"
    );
    // The detectors view says the same from the journal, with the settings as configured.
    let detectors = up.control_get("/api/v1/detectors", &viewer);
    assert_eq!(detectors.status, 200, "{}", detectors.body);
    let detectors = detectors.json();
    let burst = detectors["detectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "denial_burst")
        .unwrap_or_else(|| panic!("{detectors}"));
    assert_eq!(burst["running"], true);
    assert_eq!(burst["settings"]["threshold"], 2);
    assert_eq!(burst["alerts"], 1, "{detectors}");
    assert_eq!(burst["holding"][0]["agent"], "tester", "{detectors}");
    // Every decision waited for its record to be durable, and that wait was timed.
    let commits = sample(&after, "warden_journal_commit_seconds_count").unwrap();
    assert!(commits >= commits_before + 3.0, "{after}");
    assert!(
        sample(
            &after,
            r#"warden_gateway_request_seconds_count{channel="mcp_http"}"#
        )
        .is_some_and(|n| n >= 3.0),
        "{after}"
    );
}

/// The example server as "files", its `transfer` tool needing a human's approval, held for up
/// to 600 s.
fn transfers_need_approval() -> support::Setup {
    support::up::setup_with_config(
        r#"
@id("transfers-need-approval")
@ask("transfers need a human's approval")
permit (principal == Agent::"tester", action == Action::"call_tool", resource == Tool::"files/transfer");
"#,
        |s| {
            format!(
                "[servers.files]\ncommand = [{:?}, \"--root\", {:?}]\n\n\
                 [approvals]\nhold = true\ntimeout_secs = 600\n",
                support::example_server().to_str().unwrap(),
                s.path("workspace").to_str().unwrap()
            )
        },
    )
}

/// A transfer call with request id `id`, sent on a thread of its own: it stays held until the
/// hold ends; join the thread for the answer.
fn held_transfer(up: &Up, token: &str, sid: &str, id: u64) -> std::thread::JoinHandle<Resp> {
    let (addr, token, sid) = (up.addr, token.to_owned(), sid.to_owned());
    std::thread::spawn(move || {
        let body = rpc(
            id,
            "tools/call",
            json!({"name": "files__transfer", "arguments": {"to": "acme", "amount": 5000}}),
        );
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nMcp-Session-Id: {sid}\r\nContent-Type: application/json\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        exchange(addr, &head, &body)
    })
}

#[test]
fn a_call_held_for_approval_is_withdrawn_by_its_cancellation() {
    let (up, token, sid) = tester_session(transfers_need_approval());
    let call = held_transfer(&up, &token, &sid, 51);
    wait_for_record(&up, "approval_requested");
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 51, "reason": "no longer needed"}});
    let r = post(&up, Some(&token), Some(&sid), cancel.to_string().as_bytes());
    assert_eq!(r.status, 202);
    // Well before the hold's 600 s: the cancellation ended it.
    let answered = call.join().unwrap().json();
    assert_eq!(answered["error"]["code"], -32800, "{answered}");
    let closed = wait_for_record(&up, "approval_answered");
    assert_eq!(closed.body["answer"], "withdrawn", "{:?}", closed.body);
    assert_eq!(closed.body["by"], "agent");
    assert_eq!(closed.body["reason"], "no longer needed");
    assert!(
        records_of_kind(&up, "outcome").is_empty(),
        "nothing was forwarded"
    );
}

#[test]
fn a_call_held_for_approval_ends_with_its_session_when_the_token_is_rotated() {
    let (up, token, sid) = tester_session(transfers_need_approval());
    let call = held_transfer(&up, &token, &sid, 61);
    wait_for_record(&up, "approval_requested");
    // The same id again while the first is held: refused, so a cancellation or the session's
    // end can only ever reach the request it names.
    let again = post(
        &up,
        Some(&token),
        Some(&sid),
        &rpc(
            61,
            "tools/call",
            json!({"name": "files__transfer", "arguments": {"to": "x", "amount": 1}}),
        ),
    );
    assert!(again.body.contains("already in use"), "{}", again.body);
    // The operator rotates the token; the agent's next request, with the new token on the old
    // session, ends that session, and the held call with it.
    let new_token = rotate_tester(&up);
    let r = post(
        &up,
        Some(&new_token),
        Some(&sid),
        &rpc(62, "ping", json!({})),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let answered = call.join().unwrap().json();
    assert!(answered.get("error").is_some(), "{answered}");
    let closed = wait_for_record(&up, "approval_answered");
    assert_eq!(closed.body["answer"], "withdrawn", "{:?}", closed.body);
    // Warden withdrew it, not the agent, and said so before the session's end.
    assert_eq!(closed.body["by"], "warden", "{:?}", closed.body);
    let ended = wait_for_record(&up, "session_ended");
    assert!(closed.seq < ended.seq, "{} then {}", closed.seq, ended.seq);
    assert!(
        closed.body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("the session ended")),
        "{:?}",
        closed.body
    );
    assert!(
        records_of_kind(&up, "outcome").is_empty(),
        "nothing was forwarded"
    );
}

#[test]
fn stopping_warden_closes_a_held_call_in_the_journal_before_the_journal_closes() {
    let (mut up, token, sid) = tester_session(transfers_need_approval());
    let call = held_transfer(&up, &token, &sid, 71);
    wait_for_record(&up, "approval_requested");
    // SIGTERM: requests in flight get the grace period, then their sessions end.
    let pid = up.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(up.child.wait().unwrap().success());
    let _ = call.join();
    let records = up.setup.records();
    let closed: Vec<_> = records
        .iter()
        .filter(|r| r.kind == "approval_answered")
        .collect();
    assert_eq!(closed.len(), 1, "the hold's end is on record: {records:?}");
    assert_eq!(closed[0].body["answer"], "withdrawn");
    assert_eq!(closed[0].body["by"], "warden");
}

#[test]
fn an_upstream_that_cannot_start_tells_the_operator_why_in_its_own_words() {
    let s = support::up::setup_with_config(support::up::TESTER_ALL, |s| {
        let command = [
            support::example_server().to_string_lossy().into_owned(),
            "--root".to_owned(),
            s.path("no-such-folder").to_string_lossy().into_owned(),
        ];
        format!("[servers.files]\ncommand = {command:?}\n")
    });
    let up = support::up::start_until(s, &["upstream \"files\" down"]);
    let line = up.startup_line("upstream \"files\" down");
    // The reason itself depends on whether the exit or the failed initialize is seen first.
    assert!(line.contains("its last lines on stderr: "), "{line}");
    assert!(line.contains("cannot serve"), "{line}");
    assert!(line.contains("no-such-folder"), "{line}");
}
