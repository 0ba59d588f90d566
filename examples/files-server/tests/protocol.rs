//! The server as a client sees it: the built binary over stdio.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use serde_json::{Value, json};
use support::{Server, is_error, text};

// === lifecycle ===

#[test]
fn initialize_echoes_a_supported_version() {
    for version in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let mut server = Server::start(None);
        let answer = server.request(
            1,
            "initialize",
            json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}),
        );
        let result = &answer["result"];
        assert_eq!(result["protocolVersion"], version);
        assert_eq!(
            result["capabilities"],
            json!({"tools": {"listChanged": false}})
        );
        assert_eq!(result["serverInfo"]["name"], "warden-example-files");
        assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
        let (rest, status) = server.finish();
        assert!(rest.is_empty(), "{rest:?}");
        assert!(status.success());
    }
}

#[test]
fn initialize_offers_the_newest_version_otherwise() {
    let mut server = Server::start(None);
    for (id, params) in [
        (
            1,
            json!({"protocolVersion": "1999-01-01", "capabilities": {}}),
        ),
        (2, json!({"capabilities": {}})),
        (3, json!({"protocolVersion": 20251125})),
    ] {
        let answer = server.request(id, "initialize", params);
        assert_eq!(answer["result"]["protocolVersion"], "2025-11-25");
    }
}

#[test]
fn ping_and_notifications_need_no_initialize_and_get_nothing_back() {
    let mut server = Server::start(None);
    server.notify("notifications/initialized", json!({}));
    server.notify("notifications/whatever", json!({"x": 1}));
    server.notify("notifications/cancelled", json!({"requestId": 999}));
    // Nothing came back for the notifications: the next line is the ping's response.
    let answer = server.request("p", "ping", json!({}));
    assert_eq!(answer["result"], json!({}));
}

#[test]
fn tools_list_describes_every_tool() {
    let mut server = Server::ready();
    let answer = server.request(2, "tools/list", json!({}));
    let tools = answer["result"]["tools"].as_array().unwrap();
    let names: BTreeSet<_> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let expected: BTreeSet<_> = [
        "read_file",
        "write_file",
        "list_dir",
        "send_message",
        "delete_file",
        "transfer",
        "slow_count",
        "ask_roots",
        "echo",
    ]
    .into_iter()
    .collect();
    assert_eq!(names, expected);
    for tool in tools {
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        assert!(!tool["description"].as_str().unwrap().is_empty());
    }
}

#[test]
fn input_end_exits_cleanly() {
    let server = Server::ready();
    let (rest, status) = server.finish();
    assert!(rest.is_empty());
    assert_eq!(status.code(), Some(0));
}

// === file tools ===

#[test]
fn write_read_list_delete_round_trip() {
    let mut server = Server::ready();
    let wrote = server.call(
        1,
        "write_file",
        json!({"path": "notes/a.txt", "content": "héllo"}),
    );
    assert!(!is_error(&wrote), "{wrote}");
    assert_eq!(
        fs::read_to_string(server.root.path().join("notes/a.txt")).unwrap(),
        "héllo"
    );

    let read = server.call(2, "read_file", json!({"path": "notes/a.txt"}));
    assert!(!is_error(&read));
    assert_eq!(text(&read), "héllo");

    fs::write(server.root.path().join("top.txt"), "t").unwrap();
    let listed = server.call(3, "list_dir", json!({}));
    assert_eq!(text(&listed), "notes/\ntop.txt");
    assert_eq!(
        listed["structuredContent"],
        json!({"entries": [{"name": "notes", "kind": "dir"}, {"name": "top.txt", "kind": "file"}]})
    );
    let listed_sub = server.call(4, "list_dir", json!({"path": "notes"}));
    assert_eq!(text(&listed_sub), "a.txt");

    let deleted = server.call(5, "delete_file", json!({"path": "notes/a.txt"}));
    assert!(!is_error(&deleted));
    assert!(!server.root.path().join("notes/a.txt").exists());
}

#[test]
fn absolute_paths_inside_the_root_work() {
    let mut server = Server::ready();
    let inside = server.root.path().canonicalize().unwrap().join("abs.txt");
    let wrote = server.call(
        1,
        "write_file",
        json!({"path": inside.to_str().unwrap(), "content": "x"}),
    );
    assert!(!is_error(&wrote), "{wrote}");
    assert!(inside.exists());
}

#[test]
fn tool_failures_are_error_results() {
    let mut server = Server::ready();
    let cases = [
        ("read_file", json!({"path": "missing.txt"}), "missing.txt"),
        ("read_file", json!({}), "\"path\" is required"),
        ("read_file", json!({"path": 7}), "must be a string"),
        (
            "write_file",
            json!({"path": "a"}),
            "\"content\" is required",
        ),
        ("delete_file", json!({"path": "nothing"}), "cannot delete"),
        ("list_dir", json!({"path": "nowhere"}), "cannot list"),
        (
            "read_file",
            json!({"path": "../../etc/passwd"}),
            "climbs out",
        ),
        ("read_file", json!({"path": "/etc/passwd"}), "outside"),
        (
            "transfer",
            json!({"to": "bob", "amount": "100"}),
            "must be a number",
        ),
        (
            "transfer",
            json!({"to": "bob", "amount": 0}),
            "greater than 0",
        ),
        ("send_message", json!({"to": "bob"}), "\"body\" is required"),
        ("slow_count", json!({"n": -1, "delay_ms": 0}), "\"n\""),
    ];
    for (id, (tool, arguments, needle)) in cases.into_iter().enumerate() {
        let result = server.call(id as u64, tool, arguments.clone());
        assert!(is_error(&result), "{tool} {arguments}: {result}");
        assert!(
            text(&result).contains(needle),
            "{tool} {arguments}: {:?} lacks {needle:?}",
            text(&result)
        );
    }
    let not_object = server.request(
        99,
        "tools/call",
        json!({"name": "read_file", "arguments": [1]}),
    );
    assert!(is_error(&not_object["result"]));
}

#[test]
fn writes_cannot_escape_the_root() {
    let mut server = Server::ready();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), server.root.path().join("link")).unwrap();
    for (id, path) in ["../escape.txt", "link/escape.txt"].into_iter().enumerate() {
        let result = server.call(
            id as u64,
            "write_file",
            json!({"path": path, "content": "x"}),
        );
        assert!(is_error(&result), "{path}: {result}");
    }
    let parent = server.root.path().parent().unwrap();
    assert!(!parent.join("escape.txt").exists());
    assert!(!outside.path().join("escape.txt").exists());
}

// === outbox tools ===

fn outbox(server: &Server, file: &str) -> Vec<Value> {
    fs::read_to_string(server.root.path().join(".outbox").join(file))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn send_message_appends_to_the_outbox() {
    let mut server = Server::ready();
    let first = server.call(
        1,
        "send_message",
        json!({"to": "alice@example.com", "body": "hi"}),
    );
    assert!(!is_error(&first));
    assert_eq!(text(&first), "sent to alice@example.com");
    server.call(
        2,
        "send_message",
        json!({"to": "bob", "body": "line\nbreak"}),
    );
    assert_eq!(
        outbox(&server, "messages.jsonl"),
        vec![
            json!({"to": "alice@example.com", "body": "hi"}),
            json!({"to": "bob", "body": "line\nbreak"})
        ]
    );
}

#[test]
fn transfer_records_the_amount() {
    let mut server = Server::ready();
    let done = server.call(1, "transfer", json!({"to": "acct-9", "amount": 1250.75}));
    assert!(!is_error(&done));
    assert!(text(&done).contains("acct-9"));
    assert_eq!(
        outbox(&server, "transfers.jsonl"),
        vec![json!({"to": "acct-9", "amount": 1250.75})]
    );
}

// === progress, cancellation, concurrency ===

#[test]
fn slow_count_sends_progress_for_each_step() {
    let mut server = Server::ready();
    server.send(&json!({
        "jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "slow_count", "arguments": {"n": 4, "delay_ms": 1},
                   "_meta": {"progressToken": "tok-1"}},
    }));
    for step in 1..=4 {
        let note = server.recv();
        assert_eq!(note["method"], "notifications/progress", "{note}");
        assert!(note.get("id").is_none());
        assert_eq!(note["params"]["progressToken"], "tok-1");
        assert_eq!(note["params"]["progress"], step);
        assert_eq!(note["params"]["total"], 4);
    }
    let answer = server.recv();
    assert_eq!(answer["id"], 5);
    assert_eq!(text(&answer["result"]), "counted to 4");
}

#[test]
fn slow_count_without_token_sends_no_progress() {
    let mut server = Server::ready();
    let result = server.call(1, "slow_count", json!({"n": 3, "delay_ms": 0}));
    assert_eq!(text(&result), "counted to 3");
}

#[test]
fn ping_is_answered_while_a_call_runs_and_cancellation_stops_it() {
    let mut server = Server::ready();
    // Long enough that finishing instead of stopping would show in the output below.
    server.send(&json!({
        "jsonrpc": "2.0", "id": "slow", "method": "tools/call",
        "params": {"name": "slow_count", "arguments": {"n": 200, "delay_ms": 50},
                   "_meta": {"progressToken": 77}},
    }));
    let first = server.recv();
    assert_eq!(first["params"]["progressToken"], 77, "{first}");

    let pong = server.request("ping-1", "ping", json!({}));
    assert_eq!(pong["result"], json!({}));

    server.notify(
        "notifications/cancelled",
        json!({"requestId": "slow", "reason": "test"}),
    );
    // The server finishes what runs before exiting, so everything it would send is in `rest`.
    let (rest, status) = server.finish();
    assert!(status.success());
    let responses: Vec<_> = rest.iter().filter(|m| m.get("id").is_some()).collect();
    assert!(
        responses.is_empty(),
        "a cancelled call must get no response: {responses:?}"
    );
    let progress_after = rest
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    assert!(progress_after < 199, "the count ran on: {progress_after}");
}

#[test]
fn concurrent_calls_each_get_their_own_response() {
    let mut server = Server::ready();
    for id in 0..20 {
        server.send(&json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"n": id}},
        }));
    }
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let answer = server.recv();
        let id = answer["id"].as_u64().unwrap();
        let echoed: Value = serde_json::from_str(text(&answer["result"])).unwrap();
        assert_eq!(echoed["arguments"]["n"], id);
        seen.insert(id);
    }
    assert_eq!(seen.len(), 20);
}

// === server-to-client requests and _meta ===

#[test]
fn ask_roots_round_trips_through_the_client() {
    let mut server = Server::ready();
    server.send(&json!({
        "jsonrpc": "2.0", "id": 41, "method": "tools/call",
        "params": {"name": "ask_roots", "arguments": {}},
    }));
    let asked = server.recv();
    assert_eq!(asked["method"], "roots/list", "{asked}");
    let request_id = asked["id"].clone();
    assert!(request_id.is_string(), "{asked}");

    // The client may interleave its own traffic before answering.
    let pong = server.request(42, "ping", json!({}));
    assert_eq!(pong["result"], json!({}));

    server.send(&json!({
        "jsonrpc": "2.0", "id": request_id,
        "result": {"roots": [{"uri": "file:///demo-root", "name": "demo"}]},
    }));
    let answer = server.recv();
    assert_eq!(answer["id"], 41);
    assert!(!is_error(&answer["result"]));
    let roots: Value = serde_json::from_str(text(&answer["result"])).unwrap();
    assert_eq!(roots, json!([{"uri": "file:///demo-root", "name": "demo"}]));
}

#[test]
fn ask_roots_reports_a_client_error() {
    let mut server = Server::ready();
    server.send(&json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "ask_roots"},
    }));
    let asked = server.recv();
    server.send(&json!({
        "jsonrpc": "2.0", "id": asked["id"],
        "error": {"code": -32601, "message": "roots not supported"},
    }));
    let answer = server.recv();
    assert!(is_error(&answer["result"]));
    assert!(text(&answer["result"]).contains("roots not supported"));
}

#[test]
fn ask_roots_fails_when_the_client_goes_away() {
    let mut server = Server::ready();
    server.send(&json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "ask_roots"},
    }));
    assert_eq!(server.recv()["method"], "roots/list");
    let (rest, status) = server.finish();
    assert!(status.success());
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert!(is_error(&rest[0]["result"]));
}

#[test]
fn echo_returns_arguments_and_meta() {
    let mut server = Server::ready();
    let answer = server.request(
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"a": [1, "two"]},
               "_meta": {"trace": "t-1", "progressToken": "x"}}),
    );
    let echoed: Value = serde_json::from_str(text(&answer["result"])).unwrap();
    assert_eq!(echoed["arguments"], json!({"a": [1, "two"]}));
    assert_eq!(
        echoed["_meta"],
        json!({"trace": "t-1", "progressToken": "x"})
    );

    let bare = server.call(2, "echo", json!({}));
    let echoed: Value = serde_json::from_str(text(&bare)).unwrap();
    assert_eq!(echoed["_meta"], Value::Null);
}

// === bad input ===

#[test]
fn malformed_messages_get_errors_and_the_server_goes_on() {
    let mut server = Server::ready();
    let cases: [(&str, i64, Value); 8] = [
        ("this is not json", -32700, Value::Null),
        (
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":",
            -32700,
            Value::Null,
        ),
        ("[]", -32600, Value::Null),
        ("42", -32600, Value::Null),
        ("{\"id\":7,\"method\":\"ping\"}", -32600, json!(7)),
        (
            "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":5}",
            -32600,
            json!(8),
        ),
        (
            "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}",
            -32600,
            Value::Null,
        ),
        (
            "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\",\"params\":\"x\"}",
            -32600,
            json!(9),
        ),
    ];
    for (line, code, id) in cases {
        server.send_raw(line);
        let answer = server.recv();
        assert_eq!(answer["error"]["code"], code, "{line}: {answer}");
        assert_eq!(answer["id"], id, "{line}: {answer}");
    }
    server.send_raw("");
    server.send_raw("\u{feff}\u{0}");
    let answer = server.recv();
    assert_eq!(answer["error"]["code"], -32700);
    let pong = server.request(10, "ping", json!({}));
    assert_eq!(pong["result"], json!({}));
}

#[test]
fn unknown_methods_and_tools_are_protocol_errors() {
    let mut server = Server::ready();
    let answer = server.request(1, "resources/list", json!({}));
    assert_eq!(answer["error"]["code"], -32601);
    let answer = server.request(2, "tools/call", json!({"name": "rm_rf", "arguments": {}}));
    assert_eq!(answer["error"]["code"], -32602);
    let answer = server.request(3, "tools/call", json!({"arguments": {}}));
    assert_eq!(answer["error"]["code"], -32602);
    let answer = server.request(4, "tools/call", json!([]));
    assert_eq!(answer["error"]["code"], -32602);
    // A response to a request the server never sent is ignored.
    server.send(&json!({"jsonrpc": "2.0", "id": "nobody-asked", "result": {}}));
    let pong = server.request(5, "ping", json!({}));
    assert_eq!(pong["result"], json!({}));
}

#[test]
fn invalid_utf8_is_a_parse_error() {
    let mut server = Server::ready();
    server.send_bytes(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xffng\"}");
    let answer = server.recv();
    assert_eq!(answer["error"]["code"], -32700, "{answer}");
    let pong = server.request(2, "ping", json!({}));
    assert_eq!(pong["result"], json!({}));
}

// === command line ===

#[test]
fn bad_command_lines_exit_with_status_2() {
    let bin = env!("CARGO_BIN_EXE_warden-example-files");
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("f");
    fs::write(&file, "").unwrap();
    let root_arg = root.path().to_str().unwrap();
    for args in [
        vec![],
        vec!["--root"],
        vec!["--root", file.to_str().unwrap()],
        vec!["--root", "/no/such/dir/anywhere"],
        vec!["--root", root_arg, "--misbehave", "explode"],
        vec!["--root", root_arg, "--frobnicate"],
    ] {
        let out = Command::new(bin).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("never-answer-calls"));
}
