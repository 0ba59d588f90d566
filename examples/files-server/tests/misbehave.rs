//! Each `--misbehave` mode, as a client (or a gateway in front of the server) meets it.

mod support;

use serde_json::{Value, json};
use support::{Server, text};

fn call_echo(server: &mut Server, id: u64) {
    server.send(&json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {}},
    }));
}

#[test]
fn hang_on_initialize_never_answers_initialize() {
    let mut server = Server::start(Some("hang-on-initialize"));
    server.send(&json!({
        "jsonrpc": "2.0", "id": "init", "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}},
    }));
    // Everything else is still served, so the next line answers the ping, not initialize.
    let pong = server.request("p", "ping", json!({}));
    assert_eq!(pong["result"], json!({}));
    let (rest, status) = server.finish();
    assert!(status.success());
    assert!(rest.is_empty(), "initialize was answered: {rest:?}");
}

#[test]
fn crash_on_call_exits_with_status_3() {
    let mut server = Server::start(Some("crash-on-call"));
    server.initialize();
    let pong = server.request(1, "ping", json!({}));
    assert_eq!(pong["result"], json!({}));
    call_echo(&mut server, 2);
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(3));
}

#[test]
fn garbage_answers_calls_with_a_line_that_is_not_json() {
    let mut server = Server::start(Some("garbage"));
    server.initialize();
    call_echo(&mut server, 1);
    let line = server.recv_line();
    assert!(serde_json::from_str::<Value>(&line).is_err(), "{line}");
    // Only tool calls are garbled.
    let pong = server.request(2, "ping", json!({}));
    assert_eq!(pong["result"], json!({}));
}

#[test]
fn never_answer_calls_leaves_calls_unanswered() {
    let mut server = Server::start(Some("never-answer-calls"));
    server.initialize();
    call_echo(&mut server, 1);
    let pong = server.request(2, "ping", json!({}));
    assert_eq!(pong["result"], json!({}));
    let (rest, status) = server.finish();
    assert!(status.success());
    assert!(rest.is_empty(), "the call was answered: {rest:?}");
}

#[test]
fn huge_result_sends_eight_mebibytes_of_text() {
    let mut server = Server::start(Some("huge-result"));
    server.initialize();
    call_echo(&mut server, 1);
    let answer = server.recv();
    assert_eq!(answer["id"], 1);
    assert_eq!(text(&answer["result"]).len(), 8 * 1024 * 1024);
    let pong = server.request(2, "ping", json!({}));
    assert_eq!(pong["result"], json!({}));
}
