//! The control plane's views from a terminal: `warden agents`, `warden events` and `warden
//! alerts` over a journal written by real `warden mcp` sessions in front of the real example
//! server — a denied burst that raises an alert and quarantines the agent, and a quiet agent.

mod support;

use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};
use support::*;

/// Five refusals within a minute raise a high alert; the playbook quarantines.
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

/// `warden ARGS --config …` in the setup's folder: (success, stdout, stderr).
fn cli(setup: &Setup, args: &[&str]) -> (bool, String, String) {
    let cfg = setup.config();
    let mut all = args.to_vec();
    all.extend(["--config", cfg.to_str().unwrap()]);
    let (status, out, err) = warden(&all, setup.dir.path());
    (status.success(), out, err)
}

/// mallory: one allowed read, then five refused ones (an alert, a quarantine); alice: one
/// allowed read.
fn fleet() -> Setup {
    let setup = Setup::new(BURST, "");
    let mut s = setup.start("mallory", &[]);
    s.initialize();
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
    s.finish();
    let mut a = setup.start("alice", &[]);
    a.initialize();
    let r = a.call(json!(1), "read_file", json!({"path": "notes.txt"}));
    assert_eq!(result_text(&r), "the notes\n", "{r}");
    a.finish();
    setup
}

#[test]
fn agents_events_and_alerts_show_what_the_journal_holds() {
    let setup = fleet();
    let records = setup.records();

    // The table: one row per agent, with its state and figures.
    let (ok, out, err) = cli(&setup, &["agents"]);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("NAME"), "{out}");
    let row = |name: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}: {out}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    // NAME STATE DATE TIME ALLOW DENY ASK ALERTS OPEN
    assert_eq!(
        row("mallory")[..2],
        ["mallory".to_owned(), "quarantined".to_owned()]
    );
    assert_eq!(row("mallory")[4..], ["1", "5", "0", "1", "0"], "{out}");
    assert_eq!(row("alice")[1], "active", "{out}");
    assert_eq!(row("alice")[4..], ["1", "0", "0", "0", "0"], "{out}");

    let (ok, out, err) = cli(&setup, &["agents", "--json"]);
    assert!(ok, "{out}{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let mallory = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "mallory")
        .unwrap();
    assert_eq!(mallory["state"], "quarantined");
    assert_eq!(mallory["quarantine"]["by"], "detector:denial_burst");
    assert_eq!(mallory["decisions"]["deny"], 5);

    // One agent: its figures and its session.
    let started = records
        .iter()
        .find(|r| r.kind == "session_started" && r.agent.as_str() == "mallory")
        .expect("mallory's session");
    let prefix: String = started.session.as_str().chars().take(8).collect();
    let (ok, out, err) = cli(&setup, &["agents", "mallory"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("state          quarantined"), "{out}");
    assert!(out.contains("1 allow, 5 deny, 0 ask"), "{out}");
    let session = out
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no session {prefix}: {out}"));
    let cols: Vec<&str> = session.split_whitespace().collect();
    assert_eq!(cols[1], "files", "{session}");
    assert_eq!(
        cols[2], "-",
        "an MCP session of its own: no parent: {session}"
    );
    assert_ne!(cols.last(), Some(&"open"), "the session ended: {session}");

    let (ok, out, err) = cli(&setup, &["agents", "mallory", "--json"]);
    assert!(ok, "{out}{err}");
    let detail: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(detail["sessions"][0]["id"], started.session.as_str());
    assert_eq!(detail["sessions"][0]["server"], "files");

    // Events of one kind only, as JSON lines.
    let (ok, out, err) = cli(&setup, &["events", "--kind", "decision", "--json"]);
    assert!(ok, "{out}{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decisions = records.iter().filter(|r| r.kind == "decision").count();
    assert_eq!(lines.len(), decisions, "{out}");
    assert!(lines.iter().all(|r| r["kind"] == "decision"), "{out}");
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()),
        "in order: {out}"
    );
    // The newest N, in order; and the first N after a record.
    let (ok, out, _) = cli(&setup, &["events", "--limit", "2", "--json"]);
    assert!(ok);
    let seqs: Vec<u64> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let last = records.last().unwrap().seq;
    assert_eq!(seqs, [last - 1, last]);
    let (ok, out, _) = cli(&setup, &["events", "--after", "1", "--limit", "3"]);
    assert!(ok);
    let firsts: Vec<&str> = out.lines().map(|l| &l[..3]).collect();
    assert_eq!(firsts, ["#2 ", "#3 ", "#4 "], "{out}");
    // Text lines, one agent's; the journal named directly, from anywhere.
    let journal = setup.path("journal.db");
    let (status, out, err) = warden(
        &[
            "events",
            "--agent",
            "alice",
            "--kind",
            "decision",
            "--journal",
            journal.to_str().unwrap(),
        ],
        std::env::temp_dir().as_path(),
    );
    assert!(status.success(), "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("alice") && out.contains("ALLOW"), "{out}");

    // The alert in the table, and with its evidence.
    let alert = records
        .iter()
        .find(|r| r.kind == "alert")
        .expect("an alert");
    let evidence: Vec<u64> = alert.body["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(evidence.len(), 5);
    let (ok, out, err) = cli(&setup, &["alerts"]);
    assert!(ok, "{out}{err}");
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no alert row: {out}"))
        .split_whitespace()
        .collect();
    // SEQ DATE TIME AGENT DETECTOR SEVERITY SUMMARY…
    assert_eq!(row[0], alert.seq.to_string(), "{out}");
    assert_eq!(row[3..6], ["mallory", "denial_burst", "high"], "{out}");
    let (ok, out, _) = cli(&setup, &["alerts", "--agent", "alice"]);
    assert!(ok);
    assert!(out.contains("no alert about agent alice"), "{out}");

    let seq = alert.seq.to_string();
    let (ok, out, err) = cli(&setup, &["alerts", &seq]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("HIGH denial_burst"), "{out}");
    assert!(out.contains("evidence (5 records):"), "{out}");
    for s in &evidence {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("#{s} ")))
            .unwrap_or_else(|| panic!("evidence #{s} not printed: {out}"));
        assert!(
            line.contains("DENY") && line.contains("secrets/key.env"),
            "{line}"
        );
    }
    let (ok, out, _) = cli(&setup, &["alerts", &seq, "--json"]);
    assert!(ok);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["alert"]["seq"], alert.seq);
    let cited: Vec<u64> = shown["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(cited, evidence);

    // Bad input: a clear sentence and a failing status, nothing else.
    let (ok, out, err) = cli(&setup, &["events", "--kind", "decisions"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("unknown event kind \"decisions\"") && err.contains("decision, outcome"),
        "{err}"
    );
    let (ok, _, err) = cli(&setup, &["events", "--limit", "0"]);
    assert!(!ok && err.contains("--limit must be at least 1"), "{err}");
    let (ok, out, err) = cli(&setup, &["agents", "nobody"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains("agent nobody has no record in the journal"),
        "{err}"
    );
    let (ok, _, err) = cli(&setup, &["agents", "not a name!"]);
    assert!(!ok && err.contains("the agent name"), "{err}");
    let decision = records.iter().find(|r| r.kind == "decision").unwrap();
    let (ok, _, err) = cli(&setup, &["alerts", &decision.seq.to_string()]);
    assert!(
        !ok && err.contains(&format!(
            "record {} is not an alert; it is a record of kind decision",
            decision.seq
        )),
        "{err}"
    );
    let (ok, _, err) = cli(&setup, &["alerts", "999999"]);
    assert!(!ok && err.contains("there is no record 999999"), "{err}");
    let missing = setup.path("nowhere.db");
    let (status, _, err) = warden(
        &["events", "--journal", missing.to_str().unwrap()],
        setup.dir.path(),
    );
    assert!(
        !status.success() && err.contains("reading the journal"),
        "{err}"
    );
}

#[test]
fn events_follow_prints_records_written_after_it_started() {
    let setup = fleet();
    let cfg = setup.config();
    let mut child = Command::new(warden_bin())
        .args(["events", "--follow", "--limit", "1", "--config"])
        .arg(&cfg)
        .current_dir(setup.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = lines_of(stdout);
    let deadline = Instant::now() + HANG_GUARD;
    let next = || {
        lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    };
    // The newest record first: once it is printed, the initial read is over and anything
    // later can only arrive by following.
    let newest = setup.records().last().unwrap().seq;
    let first = next().expect("the newest record");
    assert!(first.starts_with(&format!("#{newest} ")), "{first}");

    let mut bob = setup.start("bob", &[]);
    bob.initialize();
    let r = bob.call(json!(1), "read_file", json!({"path": "notes.txt"}));
    assert_eq!(result_text(&r), "the notes\n", "{r}");
    bob.finish();

    let mut seen = Vec::new();
    let found = loop {
        match next() {
            Some(line) if line.contains(" bob ") && line.contains("ALLOW") => break true,
            Some(line) => seen.push(line),
            None => break false,
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(found, "bob's decision never followed: {seen:?}");
    assert!(
        seen.iter().all(|l| !l.starts_with(&format!("#{newest} "))),
        "no record twice: {seen:?}"
    );
}
