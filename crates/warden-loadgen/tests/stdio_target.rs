//! The `warden-loadgen` binary against the example MCP server over stdio, end to end.

mod support;

use std::process::Command;

use serde_json::Value;
use support::example_server;

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden-loadgen"))
}

fn json_line(output: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no output; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn saturate_and_rate_over_stdio_report_json() {
    let root = tempfile::tempdir().unwrap();
    let server = example_server();
    let output = loadgen()
        .args([
            "saturate",
            "--concurrency",
            "8",
            "--duration",
            "300ms",
            "--json",
            "--label",
            "direct",
            "--cpu-of",
            &std::process::id().to_string(),
        ])
        .args(["--arguments", r#"{"text":"hello"}"#, "--stdio", "--"])
        .arg(&server)
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json_line(&output);
    assert_eq!(report["mode"], "saturate");
    assert_eq!(report["label"], "direct");
    assert_eq!(report["tool"], "echo");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    let ok = report["ok"].as_u64().unwrap();
    assert!(ok > 0, "{report}");
    assert_eq!(report["latency"]["count"].as_u64(), Some(ok));
    // The stdio server answered every call: its CPU time is read before it is stopped.
    assert!(
        report["cpu"]["loadgen"]["descendants_ms"].as_u64() > Some(0),
        "{report}"
    );
    assert_eq!(
        report["cpu"]["watched"][0]["pid"].as_u64(),
        Some(u64::from(std::process::id()))
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("throughput"),
        "the human summary goes to stderr: {stderr}"
    );

    let output = loadgen()
        .args([
            "rate",
            "--rate",
            "200",
            "--duration",
            "500ms",
            "--json",
            "--stdio",
            "--",
        ])
        .arg(&server)
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json_line(&output);
    assert_eq!(report["scheduled"], 100);
    assert_eq!(report["ok"], 100, "{report}");
    assert!(report["latency"]["p50_us"].as_f64().unwrap() > 0.0);
}

#[test]
fn an_unknown_tool_fails_the_run_with_the_servers_reason() {
    let root = tempfile::tempdir().unwrap();
    let output = loadgen()
        .args([
            "saturate",
            "--duration",
            "1s",
            "--tool",
            "no_such_tool",
            "--stdio",
            "--",
        ])
        .arg(example_server())
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no_such_tool"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "no report for a run that never started"
    );
}

#[test]
fn a_stdio_command_that_does_not_exist_is_named() {
    let output = loadgen()
        .args(["saturate", "--stdio", "--", "/nonexistent/mcp-server"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/mcp-server"), "{stderr}");
}

#[test]
fn watching_a_process_that_does_not_exist_is_refused_before_any_load() {
    let output = loadgen()
        .args(["saturate", "--duration", "100ms", "--cpu-of", "4294967295"])
        .args(["--url", "http://127.0.0.1:9/mcp"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cpu-of 4294967295"), "{stderr}");
}
