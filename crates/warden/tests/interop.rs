//! Warden between implementations nobody here wrote: the official Python MCP SDK as the agent's
//! client, and the npm reference servers (`server-filesystem`, `server-everything`) upstream.
//! `scripts/test-deps` installs them.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use support::*;

fn interop(rel: &str) -> PathBuf {
    let path = repo_root().join("tests/interop").join(rel);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test-deps (scripts/test does) to install the interop clients and servers",
        path.display()
    );
    path
}

fn python() -> PathBuf {
    let path = repo_root().join(".venv/bin/python");
    assert!(
        path.exists(),
        "the Python MCP SDK venv is missing: run scripts/test-deps (scripts/test does)"
    );
    path
}

/// Runs the Python SDK client with `warden mcp … -- upstream` as its server.
fn python_client(
    setup: &Setup,
    agent: &str,
    server: &str,
    upstream: Vec<String>,
    steps: Value,
) -> Value {
    let mut command = vec![
        warden_bin().display().to_string(),
        "mcp".into(),
        "--agent".into(),
        agent.into(),
        "--config".into(),
        setup.config().display().to_string(),
        "--server".into(),
        server.into(),
        "--".into(),
    ];
    command.extend(upstream);
    let script = json!({ "command": command, "timeout_seconds": 30, "steps": steps });
    let mut child = Command::new(python())
        .arg(interop("mcp_client.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("client printed no report ({e}); stderr: {stderr}"));
    assert!(
        report.get("fatal").is_none(),
        "session broke: {report} {stderr}"
    );
    report
}

fn call(report: &Value, i: usize) -> &Value {
    &report["calls"][i]
}

#[test]
fn python_sdk_client_through_warden_to_the_example_server() {
    let setup = Setup::new("", TESTER_POLICY);
    let upstream = vec![
        example_server().display().to_string(),
        "--root".into(),
        setup.path("workspace").display().to_string(),
    ];
    let report = python_client(
        &setup,
        "alice",
        "files",
        upstream.clone(),
        json!([
            {"list_tools": true},
            {"call": "read_file", "arguments": {"path": "notes.txt"}},
            {"call": "delete_file", "arguments": {"path": "notes.txt"}},
            {"ping": true}
        ]),
    );
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"read_file") && !tools.contains(&"delete_file"),
        "{tools:?}"
    );
    assert_eq!(call(&report, 0)["text"], "the notes\n");
    assert_eq!(call(&report, 1)["isError"], true);
    assert!(
        call(&report, 1)["text"]
            .as_str()
            .unwrap()
            .contains("Warden refused")
    );
    assert_eq!(report["pings"], 1);
    assert!(setup.path("workspace/notes.txt").exists());

    // Progress, _meta and a server-to-client request (roots/list) through Warden.
    let report = python_client(
        &setup,
        "tester",
        "files",
        upstream,
        json!([
            {"call": "slow_count", "arguments": {"n": 3, "delay_ms": 5}, "progress": true},
            {"call": "echo", "arguments": {"k": "v"}, "meta": {"trace": "t-9"}},
            {"call": "ask_roots", "arguments": {}}
        ]),
    );
    assert_eq!(
        call(&report, 0)["progress"].as_array().unwrap().len(),
        3,
        "{report}"
    );
    assert!(
        call(&report, 1)["text"].as_str().unwrap().contains("t-9"),
        "{report}"
    );
    assert!(
        call(&report, 2)["text"]
            .as_str()
            .unwrap()
            .contains("file:///demo-root"),
        "{report}"
    );
}

#[test]
fn reference_filesystem_server_behind_warden() {
    let setup = Setup::new("", "");
    let shared = setup.path("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("readme.txt"), "shared file\n").unwrap();
    let shared = shared.canonicalize().unwrap();
    std::fs::write(
        setup.path("policies/extra.cedar"),
        format!(
            r#"@id("fs-read-shared")
permit (principal == Agent::"reader", action == Action::"call_tool", resource == Tool::"fs/read_text_file")
when {{ context.arguments has path && context.arguments.path like "{dir}/*" }};

@id("fs-list-shared")
permit (principal == Agent::"reader", action == Action::"call_tool", resource == Tool::"fs/list_directory")
when {{ context.arguments has path && context.arguments.path like "{dir}*" }};
"#,
            dir = shared.display()
        ),
    )
    .unwrap();
    let upstream = vec![
        interop("node_modules/.bin/mcp-server-filesystem")
            .display()
            .to_string(),
        shared.display().to_string(),
    ];
    let report = python_client(
        &setup,
        "reader",
        "fs",
        upstream,
        json!([
            {"list_tools": true},
            {"call": "read_text_file", "arguments": {"path": format!("{}/readme.txt", shared.display())}},
            {"call": "read_text_file", "arguments": {"path": "/etc/hostname"}},
            {"call": "write_file", "arguments": {"path": format!("{}/new.txt", shared.display()), "content": "x"}}
        ]),
    );
    let mut tools: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    tools.sort();
    assert_eq!(tools, ["list_directory", "read_text_file"], "{report}");
    assert_eq!(call(&report, 0)["isError"], false, "{report}");
    assert!(
        call(&report, 0)["text"]
            .as_str()
            .unwrap()
            .contains("shared file")
    );
    for i in [1, 2] {
        assert_eq!(call(&report, i)["isError"], true, "{report}");
        assert!(
            call(&report, i)["text"]
                .as_str()
                .unwrap()
                .contains("Warden refused"),
            "{report}"
        );
    }
    assert!(!shared.join("new.txt").exists());
    let decisions = setup.decisions();
    let calls: Vec<_> = decisions
        .iter()
        .filter(|d| d.body["action"] == "call_tool")
        .collect();
    assert_eq!(calls.len(), 3, "{decisions:?}");
    assert_eq!(calls[0].body["policies"], json!(["fs-read-shared"]));
    // The server asked the agent for its roots; no policy lets it, so the agent never saw
    // the request, and the refusal is on record.
    let roots: Vec<_> = decisions
        .iter()
        .filter(|d| d.body["action"] == "list_roots")
        .collect();
    assert!(
        roots
            .iter()
            .all(|d| d.body["effect"] == "deny" && d.body["target"] == "fs"),
        "{roots:?}"
    );
}

#[test]
fn reference_everything_server_behind_warden() {
    let setup = Setup::new(
        "",
        r#"@id("everything-safe-tools")
permit (principal == Agent::"tester", action == Action::"call_tool", resource in Server::"everything")
when { ["get-sum", "trigger-long-running-operation", "get-roots-list", "echo"].contains(resource.name) };
@id("everything-may-ask-roots")
permit (principal == Server::"everything", action == Action::"list_roots", resource == Agent::"tester");
"#,
    );
    let upstream = vec![
        interop("node_modules/.bin/mcp-server-everything")
            .display()
            .to_string(),
        "stdio".into(),
    ];
    let report = python_client(
        &setup,
        "tester",
        "everything",
        upstream,
        json!([
            {"list_tools": true},
            {"call": "get-sum", "arguments": {"a": 2, "b": 3}},
            {"call": "trigger-long-running-operation", "arguments": {"duration": 1, "steps": 3}, "progress": true},
            {"call": "get-roots-list", "arguments": {}},
            {"call": "get-env", "arguments": {}},
            {"ping": true}
        ]),
    );
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"get-sum") && !tools.contains(&"get-env"),
        "{tools:?}"
    );
    assert!(
        call(&report, 0)["text"].as_str().unwrap().contains('5'),
        "{report}"
    );
    assert_eq!(
        call(&report, 1)["progress"].as_array().unwrap().len(),
        3,
        "{report}"
    );
    assert!(
        call(&report, 2)["text"]
            .as_str()
            .unwrap()
            .contains("file:///demo-root"),
        "{report}"
    );
    assert_eq!(call(&report, 3)["isError"], true, "{report}");
    assert!(
        call(&report, 3)["text"]
            .as_str()
            .unwrap()
            .contains("Warden refused")
    );
    assert_eq!(report["pings"], 1);
}
