//! `warden learn` end to end: a journal written by the real `warden mcp` in front of the real
//! example server; the proposed policy reviewed as a diff, written, loaded by `warden policy
//! check`, and put in force: the same calls pass, anything else is refused.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::*;

/// What alice does in a known-good session, with what the example policies answer.
fn alice_calls() -> Vec<(&'static str, Value)> {
    vec![
        ("read_file", json!({"path": "notes.txt"})),
        ("list_dir", json!({"path": "."})),
        (
            "write_file",
            json!({"path": "reports/q1.md", "content": "all good"}),
        ),
        (
            "send_message",
            json!({"to": "team@example.com", "body": "report written"}),
        ),
    ]
}

fn run_calls(mut s: Session, calls: &[(&str, Value)]) -> Vec<Value> {
    s.initialize();
    let out = calls
        .iter()
        .enumerate()
        .map(|(i, (tool, args))| s.call(json!(i + 1), tool, args.clone()))
        .collect();
    s.finish();
    out
}

fn learn(setup: &Setup, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["learn", "--config", "warden.toml"];
    args.extend_from_slice(extra);
    let (status, out, err) = warden(&args, setup.dir.path());
    (status.success(), out, err)
}

/// `warden mcp --agent alice` under `config` (a file in the setup's folder).
fn start_with(setup: &Setup, config: &str) -> Session {
    let mut cmd = Command::new(warden_bin());
    cmd.args(["mcp", "--agent", "alice", "--config"])
        .arg(setup.path(config))
        .args(["--server", "files", "--"])
        .arg(example_server())
        .arg("--root")
        .arg(setup.path("workspace"));
    Session::spawn(cmd)
}

#[test]
fn a_learned_policy_is_reviewed_written_and_then_allows_exactly_what_was_done() {
    let setup = Setup::new("", "");
    let mut calls = alice_calls();
    // Refused by the example policies: not learned.
    calls.push(("read_file", json!({"path": "secrets/key.env"})));
    let answers = run_calls(setup.start("alice", &[]), &calls);
    for (answer, (tool, _)) in answers.iter().zip(&calls).take(4) {
        assert_eq!(refusal_effect(answer), None, "{tool}: {answer}");
    }
    assert_eq!(refusal_effect(&answers[4]).as_deref(), Some("deny"));

    // Review: a summary and a diff against a file that does not exist yet; nothing written.
    let (ok, out, err) = learn(&setup, &["--agent", "alice"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("5 decisions: 4 allowed, 1 refused or asked"),
        "{out}"
    );
    assert!(out.contains("call_tool: 4 targets"), "{out}");
    assert!(out.contains("files/read_file (1)"), "{out}");
    assert!(out.contains("time range: "), "{out}");
    assert!(
        out.contains("learned-alice.cedar (does not exist)"),
        "{out}"
    );
    assert!(out.contains("@@ -0,0 +1,"), "{out}");
    assert!(out.contains("+@id(\"learned-alice-1\")"), "{out}");
    assert!(
        out.contains(r#"+  context.arguments has path && context.arguments.path == "notes.txt""#),
        "{out}"
    );
    assert!(
        out.contains("[monitor.detectors.first_seen.baseline.alice]"),
        "{out}"
    );
    assert!(out.contains("nothing written"), "{out}");
    assert!(!setup.path("policies/learned-alice.cedar").exists());
    assert!(
        !out.contains("secrets/key.env"),
        "a refused call teaches nothing: {out}"
    );

    // Apply into a folder of its own, with the arguments schema, and a config using it.
    std::fs::create_dir(setup.path("learned")).unwrap();
    std::fs::copy(
        setup.path("policies/arguments.cedarschema"),
        setup.path("learned/arguments.cedarschema"),
    )
    .unwrap();
    let (ok, out, err) = learn(
        &setup,
        &[
            "--agent",
            "alice",
            "--write-policy",
            "learned/alice.cedar",
            "--write-baseline",
            "baseline.toml",
        ],
    );
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("wrote learned/alice.cedar and baseline.toml"),
        "{out}"
    );
    let (status, out, err) = warden(&["policy", "check", "--dir", "learned"], setup.dir.path());
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("4 policies, all valid"), "{out}");

    // Learning again from the same journal proposes no change.
    let (ok, out, _) = learn(
        &setup,
        &["--agent", "alice", "--write-policy", "learned/alice.cedar"],
    );
    assert!(ok);
    assert!(out.contains("learned/alice.cedar: no change"), "{out}");

    // In force, with the learned baseline: the same calls pass and raise no first_seen
    // alert; anything else is refused.
    let baseline = std::fs::read_to_string(setup.path("baseline.toml")).unwrap();
    std::fs::write(
        setup.path("learned.toml"),
        format!("[journal]\npath = \"replay.db\"\n[policy]\ndir = \"learned\"\n{baseline}"),
    )
    .unwrap();
    let replay = run_calls(start_with(&setup, "learned.toml"), &alice_calls());
    for (answer, (tool, _)) in replay.iter().zip(alice_calls()) {
        assert_eq!(refusal_effect(answer), None, "{tool}: {answer}");
    }
    let others = [
        ("delete_file", json!({"path": "notes.txt"})),
        ("read_file", json!({"path": "reports/q1.md"})),
        (
            "write_file",
            json!({"path": "reports/q2.md", "content": "all good"}),
        ),
        (
            "send_message",
            json!({"to": "lead@example.com", "body": "report written"}),
        ),
    ];
    let refused = run_calls(start_with(&setup, "learned.toml"), &others);
    for (answer, (tool, _)) in refused.iter().zip(&others) {
        assert_eq!(
            refusal_effect(answer).as_deref(),
            Some("deny"),
            "{tool}: {answer}"
        );
    }
    let reader = warden_journal::JournalReader::open(&setup.path("replay.db")).unwrap();
    let records = reader
        .records(&warden_journal::Query {
            limit: 10_000,
            ..warden_journal::Query::default()
        })
        .unwrap();
    assert!(records.iter().any(|r| r.kind == "decision"));
    assert!(
        !records
            .iter()
            .any(|r| r.kind == "alert" && r.body["detector"] == "first_seen"),
        "{records:#?}"
    );
}

#[test]
fn new_behaviour_shows_as_a_diff_against_the_written_policy() {
    let setup = Setup::new("", "");
    run_calls(setup.start("alice", &[]), &alice_calls()[..1]);
    let (ok, out, err) = learn(
        &setup,
        &[
            "--agent",
            "alice",
            "--write-policy",
            "policies/learned-alice.cedar",
        ],
    );
    assert!(ok, "{out}\n{err}");
    let written = std::fs::read_to_string(setup.path("policies/learned-alice.cedar")).unwrap();
    assert!(written.contains("Tool::\"files/read_file\""), "{written}");

    run_calls(setup.start("alice", &[]), &alice_calls()[1..2]);
    let (ok, out, err) = learn(&setup, &["--agent", "alice"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("learned-alice.cedar (current)"), "{out}");
    assert!(
        out.contains("+  resource == Tool::\"files/list_dir\""),
        "{out}"
    );
    assert!(out.contains("\n-// Least privilege"), "{out}");
    // Only a review: the file is unchanged.
    assert_eq!(
        std::fs::read_to_string(setup.path("policies/learned-alice.cedar")).unwrap(),
        written
    );

    // --session narrows learning to one session: the second one's list_dir only.
    let second = setup
        .decisions()
        .last()
        .map(|r| r.session.as_str().to_owned())
        .unwrap();
    let (ok, out, err) = learn(&setup, &["--agent", "alice", "--session", &second]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("call_tool: 1 target — files/list_dir (1)"),
        "{out}"
    );
    // The short form `warden audit log` shows names it as well.
    let (ok, out, err) = learn(&setup, &["--agent", "alice", "--session", &second[..8]]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("call_tool: 1 target — files/list_dir (1)"),
        "{out}"
    );
    let (ok, _, err) = learn(&setup, &["--agent", "alice", "--session", ""]);
    assert!(!ok);
    assert!(
        err.contains("nothing to learn"),
        "an empty id names nothing: {err}"
    );
}

#[test]
fn an_empty_range_is_refused_with_a_clear_error() {
    let setup = Setup::new("", "");
    run_calls(setup.start("alice", &[]), &alice_calls()[..1]);
    for args in [
        &["--agent", "alice", "--from", "100000"][..],
        &["--agent", "bob"][..],
        &["--agent", "alice", "--session", "no-such-session"][..],
    ] {
        let (ok, out, err) = learn(&setup, args);
        assert!(!ok, "{args:?}: {out}");
        assert!(err.contains("nothing to learn"), "{args:?}: {err}");
    }
    let (ok, _, err) = learn(&setup, &["--agent", "alice", "--from", "5", "--to", "2"]);
    assert!(!ok);
    assert!(err.contains("the range is empty"), "{err}");
    let (ok, _, err) = learn(
        &setup,
        &[
            "--agent",
            "alice",
            "--write-policy",
            "policies/x.cedar",
            "--from",
            "99999",
        ],
    );
    assert!(!ok);
    assert!(err.contains("nothing to learn"), "{err}");
    assert!(!setup.path("policies/x.cedar").exists(), "nothing written");
}
