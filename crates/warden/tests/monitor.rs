//! Detection and automatic containment end to end: the real `warden` between a scripted agent
//! and the real example MCP server; detectors on the journaled stream; quarantine in force for
//! the next action, across a restart and across processes, lifted only by `warden release`.

mod support;

use serde_json::json;
use support::*;

/// `warden release AGENT --reason REASON` on `setup`'s configuration.
fn release(setup: &Setup, agent: &str, reason: &str) -> (std::process::ExitStatus, String, String) {
    let cfg = setup.config();
    warden(
        &[
            "release",
            agent,
            "--config",
            cfg.to_str().unwrap(),
            "--reason",
            reason,
        ],
        setup.dir.path(),
    )
}

/// Five refusals within a minute quarantine the agent (playbook: quarantine on high).
const BURST: &str = r#"
[monitor.detectors.denial_burst]
threshold = 5
window_secs = 60
severity = "high"

[[monitor.playbook]]
detector = "denial_burst"
min_severity = "high"
respond = ["log", "quarantine"]
"#;

#[test]
fn a_burst_of_refusals_quarantines_the_agent_before_its_next_action() {
    let setup = Setup::new(BURST, "");
    let mut s = setup.start("mallory", &[]);
    s.initialize();
    // The workspace policy lets every agent read notes.txt; secrets are refused.
    let ok = s.call(json!(1), "read_file", json!({"path": "notes.txt"}));
    assert_eq!(result_text(&ok), "the notes\n", "{ok}");
    for i in 0..5 {
        let r = s.call(
            json!(10 + i),
            "read_file",
            json!({"path": "secrets/key.env"}),
        );
        assert_eq!(refusal_effect(&r).as_deref(), Some("deny"), "{r}");
    }
    // The next action — one the policy permits — is refused: the agent is quarantined.
    let after = s.call(json!(20), "read_file", json!({"path": "notes.txt"}));
    assert_eq!(refusal_effect(&after).as_deref(), Some("deny"), "{after}");
    assert!(result_text(&after).contains("quarantined"), "{after}");
    let (_, stderr) = s.finish();
    assert!(stderr.contains("alert"), "the playbook logs: {stderr}");

    let records = setup.records();
    let alert = records
        .iter()
        .find(|r| r.kind == "alert")
        .expect("an alert record");
    assert_eq!(alert.body["detector"], "denial_burst");
    assert_eq!(alert.body["severity"], "high");
    let evidence: Vec<u64> = alert.body["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(evidence.len(), 5, "{alert:?}");
    for seq in &evidence {
        let cited = records.iter().find(|r| r.seq == *seq).unwrap();
        assert_eq!(cited.body["effect"], "deny", "evidence #{seq} is a refusal");
    }
    assert!(
        records
            .iter()
            .any(|r| r.kind == "quarantined" && r.body["by"] == "detector:denial_burst")
    );

    // A restart of Warden does not lift it.
    let mut again = setup.start("mallory", &[]);
    again.initialize();
    let r = again.call(json!(1), "read_file", json!({"path": "notes.txt"}));
    assert!(result_text(&r).contains("quarantined"), "{r}");
    again.finish();
    // Another agent is untouched.
    let mut alice = setup.start("alice", &[]);
    alice.initialize();
    let r = alice.call(json!(1), "read_file", json!({"path": "notes.txt"}));
    assert_eq!(result_text(&r), "the notes\n", "{r}");
    alice.finish();

    // Only a human releases it, with a reason, journaled.
    let (status, _, err) = release(&setup, "mallory", "");
    assert!(
        !status.success() && err.contains("--reason must say why"),
        "{err}"
    );
    let (status, out, err) = release(&setup, "mallory", "reviewed: a test");
    assert!(status.success(), "{out}{err}");
    let mut released = setup.start("mallory", &[]);
    released.initialize();
    let r = released.call(json!(1), "read_file", json!({"path": "notes.txt"}));
    assert_eq!(result_text(&r), "the notes\n", "{r}");
    released.finish();
    let released_record = setup
        .records()
        .into_iter()
        .find(|r| r.kind == "released")
        .unwrap();
    assert_eq!(released_record.body["reason"], "reviewed: a test");
}

#[test]
fn an_operator_quarantine_is_in_force_in_a_running_warden() {
    let setup = Setup::new("", "");
    let mut s = setup.start("alice", &[]);
    s.initialize();
    let r = s.call(json!(1), "read_file", json!({"path": "notes.txt"}));
    assert_eq!(result_text(&r), "the notes\n", "{r}");
    let cfg = setup.config();
    let (status, out, err) = warden(
        &[
            "quarantine",
            "alice",
            "--config",
            cfg.to_str().unwrap(),
            "--reason",
            "suspicious report",
        ],
        setup.dir.path(),
    );
    assert!(status.success(), "{out}{err}");
    // The running `warden mcp` sees the list change at its next check.
    let r = s.call(json!(2), "read_file", json!({"path": "notes.txt"}));
    assert!(result_text(&r).contains("quarantined"), "{r}");
    assert!(result_text(&r).contains("suspicious report"), "{r}");
    s.finish();
    let q = setup
        .records()
        .into_iter()
        .find(|r| r.kind == "quarantined")
        .unwrap();
    assert!(
        q.body["by"].as_str().unwrap().starts_with("operator:"),
        "{q:?}"
    );
}

#[test]
fn what_a_session_read_is_in_the_policy_context_and_can_forbid_the_flow() {
    let setup = Setup::new(
        "[monitor.detectors.sensitive_flow]\n",
        r#"
@id("tainted-sessions-send-nothing")
@reason("this session read a cloud key; it may not send messages")
forbid (principal, action == Action::"call_tool", resource == Tool::"files/send_message")
when { context.taint.contains("secret:aws-access-key") };
"#,
    );
    // A test fixture shaped like an AWS access key id, not a credential.
    std::fs::write(
        setup.path("workspace/deploy.txt"),
        "deploy with AKIAIOSFODNN7EXAMPLE\n",
    )
    .unwrap();
    let mut s = setup.start("alice", &[]);
    s.initialize();
    // Before reading anything, alice may message the team.
    let r = s.call(
        json!(1),
        "send_message",
        json!({"to": "team@example.com", "body": "starting"}),
    );
    assert_eq!(result_text(&r), "sent to team@example.com", "{r}");
    let r = s.call(json!(2), "read_file", json!({"path": "deploy.txt"}));
    assert!(result_text(&r).contains("[REDACTED:aws-access-key]"), "{r}");
    // Her very next action is decided with the taint: the forbid applies.
    let r = s.call(
        json!(3),
        "send_message",
        json!({"to": "team@example.com", "body": "done"}),
    );
    assert_eq!(refusal_effect(&r).as_deref(), Some("deny"), "{r}");
    assert!(result_text(&r).contains("read a cloud key"), "{r}");
    s.finish();
    let records = setup.records();
    let refused = records
        .iter()
        .filter(|r| r.kind == "decision" && r.body["effect"] == "deny")
        .collect::<Vec<_>>();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        refused[0].body["policies"],
        json!(["tainted-sessions-send-nothing"])
    );
    // And the detector saw the flow it forbade.
    let alert = records.iter().find(|r| r.kind == "alert").unwrap();
    assert_eq!(alert.body["detector"], "sensitive_flow");
}

/// A one-request HTTP receiver on loopback: returns its port and the body it received.
fn receiver() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        let _ = reader.read_exact(&mut body);
        let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n");
        let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
    });
    (port, rx)
}

#[test]
fn the_playbook_posts_alerts_to_a_webhook() {
    let (port, received) = receiver();
    let setup = Setup::new(
        &format!(
            "[monitor]\nwebhook = \"http://127.0.0.1:{port}/alerts\"\n\n\
             [monitor.detectors.denial_burst]\nthreshold = 2\n\n\
             [[monitor.playbook]]\ndetector = \"*\"\nrespond = [\"webhook\"]\n"
        ),
        "",
    );
    let mut s = setup.start("mallory", &[]);
    s.initialize();
    for i in 0..2 {
        let r = s.call(json!(i), "read_file", json!({"path": "secrets/key.env"}));
        assert_eq!(refusal_effect(&r).as_deref(), Some("deny"), "{r}");
    }
    let body = received
        .recv_timeout(HANG_GUARD)
        .expect("the webhook received the alert");
    s.finish();
    let alert: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alert["detector"], "denial_burst");
    assert_eq!(alert["agent"], "mallory");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["evidence"].as_array().unwrap().len(), 2);
    // The webhook is not a quarantine: the agent goes on (and is still refused by policy).
    assert!(!setup.records().iter().any(|r| r.kind == "quarantined"));
}

#[test]
fn a_webhook_response_without_a_url_is_a_configuration_error() {
    let setup = Setup::new(
        "[[monitor.playbook]]\ndetector = \"*\"\nrespond = [\"webhook\"]\n",
        "",
    );
    let cfg = setup.config();
    let (status, _, err) = warden(
        &["doctor", "--config", cfg.to_str().unwrap()],
        setup.dir.path(),
    );
    assert!(!status.success());
    assert!(err.contains("monitor.webhook is not set"), "{err}");
}

#[test]
fn an_ask_response_makes_every_action_need_approval_until_released() {
    let setup = Setup::new(
        "[monitor.detectors.denial_burst]\nthreshold = 2\n\n\
         [[monitor.playbook]]\ndetector = \"denial_burst\"\nrespond = [\"ask\"]\n",
        "",
    );
    let mut s = setup.start("mallory", &[]);
    s.initialize();
    for i in 0..2 {
        let r = s.call(json!(i), "read_file", json!({"path": "secrets/key.env"}));
        assert_eq!(refusal_effect(&r).as_deref(), Some("deny"), "{r}");
    }
    let r = s.call(json!(5), "read_file", json!({"path": "notes.txt"}));
    assert_eq!(refusal_effect(&r).as_deref(), Some("ask"), "{r}");
    assert!(result_text(&r).contains("needs a human's approval"), "{r}");
    s.finish();
    let restricted = setup
        .records()
        .into_iter()
        .find(|r| r.kind == "quarantined")
        .unwrap();
    assert_eq!(restricted.body["level"], "ask");
    let (status, out, err) = release(&setup, "mallory", "reviewed");
    assert!(status.success(), "{out}{err}");
    let mut again = setup.start("mallory", &[]);
    again.initialize();
    let r = again.call(json!(1), "read_file", json!({"path": "notes.txt"}));
    assert_eq!(result_text(&r), "the notes\n", "{r}");
    again.finish();
}

#[test]
fn an_operator_quarantine_revokes_the_agents_http_token() {
    let setup = Setup::new("", "");
    let cfg = setup.config();
    let cfg = cfg.to_str().unwrap();
    let (status, _, err) = warden(&["agent", "add", "bob", "--config", cfg], setup.dir.path());
    assert!(status.success(), "{err}");
    let (status, out, err) = warden(
        &[
            "quarantine",
            "bob",
            "--config",
            cfg,
            "--reason",
            "lost laptop",
        ],
        setup.dir.path(),
    );
    assert!(status.success(), "{err}");
    assert!(out.contains("its HTTP token is revoked"), "{out}");
    let (_, list, _) = warden(&["agent", "list", "--config", cfg], setup.dir.path());
    let bob = list.lines().find(|l| l.contains("bob")).unwrap_or_default();
    assert!(bob.contains("revoked"), "{list}");
    let changes: Vec<_> = setup
        .records()
        .into_iter()
        .filter(|r| r.kind == "agent_changed")
        .map(|r| r.body["change"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(changes, ["added", "revoked"]);
}
