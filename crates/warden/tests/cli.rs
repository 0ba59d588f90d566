//! The operator's commands: init, policy check and test, audit verify and log, and the errors
//! they give on bad input.

mod support;

use serde_json::json;
use support::*;

#[test]
fn init_writes_a_starter_that_checks_and_tests_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, err) = warden(&["init"], dir.path());
    assert!(status.success(), "{out}{err}");
    let (status, out, err) = warden(&["policy", "check"], dir.path());
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("all valid"), "{out}");
    let (status, out, err) = warden(&["policy", "test", "policies/tests.toml"], dir.path());
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("3 passed, 0 failed"), "{out}");
    // A second init refuses to overwrite.
    let (status, _, err) = warden(&["init"], dir.path());
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn a_policy_syntax_error_points_at_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/bad.cedar"),
        "permit (principal, action, resource);\n\nforbid (principal action, resource);\n",
    )
    .unwrap();
    let (status, _, err) = warden(&["policy", "check", "--dir", "policies"], dir.path());
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("bad.cedar:3:19"), "{err}");
}

#[test]
fn a_policy_that_reads_an_undeclared_argument_fails_validation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/p.cedar"),
        "permit (principal, action == Action::\"call_tool\", resource)\nwhen { context.arguments.recipient == \"x\" };\n",
    )
    .unwrap();
    let (status, _, err) = warden(&["policy", "check", "--dir", "policies"], dir.path());
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("p.cedar:2:"), "{err}");
}

#[test]
fn warden_mcp_refuses_to_start_on_broken_policy_or_config() {
    let setup = Setup::new("", "permit (principal,\n");
    let mut s = setup.start("alice", &[]);
    s.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    let (status, stderr) = s.finish();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("extra.cedar:"), "{stderr}");

    let setup = Setup::new("sink = \"full\"\n", "");
    let s = setup.start("alice", &[]);
    let (status, stderr) = s.finish();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown field `sink`"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");

    let setup = Setup::new("", "");
    let s = setup.start("../alice", &[]);
    let (status, stderr) = s.finish();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid agent name"), "{stderr}");
}

fn journal_with_records(setup: &Setup) {
    let mut s = setup.start("alice", &[]);
    s.initialize();
    for i in 0..5 {
        s.call(json!(i), "read_file", json!({"path": "notes.txt"}));
    }
    s.finish();
}

fn verify(setup: &Setup) -> (Option<i32>, String) {
    let (status, out, err) = warden(
        &["audit", "verify", "--journal", "journal.db"],
        setup.dir.path(),
    );
    (status.code(), format!("{out}{err}"))
}

#[test]
fn audit_verify_catches_altered_removed_reordered_and_cut_off_records() {
    type Tamper = fn(&rusqlite::Connection);
    let cases: [(&str, Tamper, &str); 4] = [
        (
            "altered",
            |c| {
                c.execute(
                    "UPDATE records SET body = replace(body, 'allow', 'deny') WHERE seq = 4",
                    [],
                )
                .unwrap();
            },
            "#4",
        ),
        (
            "removed",
            |c| {
                c.execute("DELETE FROM records WHERE seq = 5", []).unwrap();
            },
            "#5",
        ),
        (
            "reordered",
            |c| {
                c.execute_batch(
                    "UPDATE records SET seq = -1 WHERE seq = 6;
                     UPDATE records SET seq = 6 WHERE seq = 7;
                     UPDATE records SET seq = 7 WHERE seq = -1;",
                )
                .unwrap();
            },
            "#6",
        ),
        (
            "cut off",
            |c| {
                c.execute("DELETE FROM records WHERE seq >= 9", []).unwrap();
                c.execute("DELETE FROM checkpoints", []).unwrap();
            },
            "#",
        ),
    ];
    for (what, tamper, names) in cases {
        let setup = Setup::new("", "");
        journal_with_records(&setup);
        let (code, out) = verify(&setup);
        assert_eq!(code, Some(0), "{what}: before tampering: {out}");
        assert!(out.contains("intact"), "{out}");
        let conn = rusqlite::Connection::open(setup.path("journal.db")).unwrap();
        tamper(&conn);
        drop(conn);
        let (code, out) = verify(&setup);
        assert_eq!(code, Some(1), "{what}: {out}");
        assert!(out.contains("TAMPERED"), "{what}: {out}");
        assert!(out.contains(names), "{what}: {out}");
    }
}

#[test]
fn audit_log_prints_readable_records_and_filters_by_agent() {
    let setup = Setup::new("", "");
    journal_with_records(&setup);
    let mut s = setup.start("mallory", &[]);
    s.initialize();
    s.call(json!(1), "delete_file", json!({"path": "notes.txt"}));
    s.finish();
    let (status, out, err) = warden(
        &["audit", "log", "--journal", "journal.db"],
        setup.dir.path(),
    );
    assert!(status.success(), "{err}");
    assert!(out.contains("ALLOW call_tool files/read_file"), "{out}");
    assert!(out.contains("DENY  call_tool files/delete_file"), "{out}");
    assert!(out.contains("outcome of #"), "{out}");
    let (_, out, _) = warden(
        &[
            "audit",
            "log",
            "--journal",
            "journal.db",
            "--agent",
            "mallory",
            "--json",
        ],
        setup.dir.path(),
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|r| r["agent"] == "mallory"));
}

#[test]
fn rotating_an_operators_token_keeps_their_role_and_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, err) = warden(&["init"], dir.path());
    assert!(status.success(), "{out}{err}");
    let add: Vec<&str> = "user add ana --role admin --expires-in 12h"
        .split(' ')
        .collect();
    let (status, out, err) = warden(&add, dir.path());
    assert!(status.success(), "{out}{err}");
    let first = out.lines().last().unwrap_or_default().to_owned();
    let (status, out, err) = warden(&["user", "add", "ana", "--rotate"], dir.path());
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("operator ana (admin, expires "), "{out}");
    assert_ne!(out.lines().last().unwrap_or_default(), first);
    let (status, out, err) = warden(&["user", "list"], dir.path());
    assert!(status.success(), "{out}{err}");
    assert!(out.starts_with("NAME"), "{out}");
    let ana = out
        .lines()
        .find(|l| l.starts_with("ana "))
        .unwrap_or_default();
    assert!(ana.contains("admin"), "{out}");
    // Still a 12-hour token: it ends within a day, not in 90.
    let until = ana.split("active until ").nth(1).unwrap_or_default();
    let until = chrono::NaiveDateTime::parse_from_str(until.trim(), "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|e| panic!("{ana:?}: {e}"));
    let left = until - chrono::Local::now().naive_local();
    assert!(left <= chrono::Duration::hours(12), "{ana}");
    assert!(left > chrono::Duration::hours(11), "{ana}");
}

#[test]
fn a_release_says_the_http_token_stays_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, err) = warden(&["init"], dir.path());
    assert!(status.success(), "{out}{err}");
    let (status, out, err) = warden(&["agent", "add", "bot"], dir.path());
    assert!(status.success(), "{out}{err}");
    let (status, out, err) = warden(&["quarantine", "bot", "--reason", "a test"], dir.path());
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("its HTTP token is revoked"), "{out}");
    let (status, out, err) = warden(&["release", "bot", "--reason", "reviewed"], dir.path());
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains(
            "its HTTP token stays revoked; issue a new one with `warden agent add bot --rotate`"
        ),
        "{out}"
    );
}
