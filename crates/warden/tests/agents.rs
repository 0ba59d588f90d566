//! `warden agent add|revoke|list`: tokens issued once, kept as digests, every change
//! journaled, and what the gateway's authenticator makes of them.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitStatus;

use serde_json::Value;
use support::*;
use warden_core::{AgentId, Event, EventBody, SessionId};
use warden_gateway::identity::{AuthError, Authenticator, UNAUTHENTICATED};
use warden_journal::{Journal, JournalOptions};

/// `warden ARGS --config <setup's config>`, run from an unrelated folder so that only the
/// configuration can lead Warden to its files.
fn agent_cmd(setup: &Setup, args: &[&str]) -> (ExitStatus, String, String) {
    let elsewhere = tempfile::tempdir().unwrap();
    let config = setup.config();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    warden(&all, elsewhere.path())
}

/// `warden agent add NAME [extra]`, which must succeed; returns the token.
fn add(setup: &Setup, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["agent", "add", name];
    args.extend(extra);
    let (status, out, err) = agent_cmd(setup, &args);
    assert!(status.success(), "{out}{err}");
    // The token alone on stdout, so `| tail -1` captures it.
    assert_eq!(out.lines().count(), 1, "{out}");
    out.lines().last().unwrap().to_owned()
}

fn changes(setup: &Setup) -> Vec<(String, String)> {
    setup
        .records()
        .into_iter()
        .filter(|r| r.kind == "agent_changed")
        .map(|r| {
            let change = r.body.get("change").and_then(Value::as_str).unwrap_or("");
            (r.agent.as_str().to_owned(), change.to_owned())
        })
        .collect()
}

fn pair(agent: &str, change: &str) -> (String, String) {
    (agent.to_owned(), change.to_owned())
}

fn alice() -> AgentId {
    AgentId::new("alice").unwrap()
}

#[test]
fn add_prints_the_token_once_and_the_file_keeps_only_its_digest() {
    let setup = Setup::new("", "");
    let token = add(&setup, "alice", &[]);
    assert!(token.starts_with("wdn_"), "{token}");
    assert_eq!(token.len(), 4 + 43, "{token}");

    let file = setup.path("agents.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(&token[4..]),
        "the token itself is stored: {text}"
    );

    let auth = Authenticator::load(&file).unwrap();
    assert_eq!(auth.authenticate(&token), Ok(alice()));
    assert_eq!(changes(&setup), vec![pair("alice", "added")]);
}

#[test]
fn rotation_must_be_asked_for_and_retires_the_old_token() {
    let setup = Setup::new("", "");
    let old = add(&setup, "alice", &[]);
    let auth = Authenticator::load(setup.path("agents.json")).unwrap();

    let (status, out, err) = agent_cmd(&setup, &["agent", "add", "alice"]);
    assert_eq!(status.code(), Some(2), "{out}{err}");
    assert!(err.contains("--rotate"), "{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(auth.authenticate(&old), Ok(alice()));

    let new = add(&setup, "alice", &["--rotate"]);
    assert_ne!(new, old);
    assert_eq!(auth.authenticate(&old), Err(AuthError::Unknown));
    assert_eq!(auth.authenticate(&new), Ok(alice()));
    // The refused add changed nothing and recorded nothing.
    assert_eq!(
        changes(&setup),
        vec![pair("alice", "added"), pair("alice", "rotated")]
    );
}

#[test]
fn revoke_keeps_the_record_so_the_old_token_reads_as_revoked() {
    let setup = Setup::new("", "");
    let token = add(&setup, "alice", &[]);
    add(&setup, "bob", &[]);
    let auth = Authenticator::load(setup.path("agents.json")).unwrap();

    let (status, out, err) = agent_cmd(&setup, &["agent", "revoke", "alice"]);
    assert!(status.success(), "{out}{err}");
    assert_eq!(auth.authenticate(&token), Err(AuthError::Revoked(alice())));

    let (status, out, err) = agent_cmd(&setup, &["agent", "list"]);
    assert!(status.success(), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("NAME"), "{out}");
    assert!(
        lines[1].starts_with("alice") && lines[1].contains("revoked"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("bob") && lines[2].contains("active"),
        "{out}"
    );
    assert!(lines[2].trim_end().ends_with('-'), "{out}");

    let (status, out, err) = agent_cmd(&setup, &["agent", "list", "--json"]);
    assert!(status.success(), "{out}{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["name"], "alice");
    assert_eq!(rows[0]["status"], "revoked");
    assert!(rows[0]["revoked_ms"].as_i64().unwrap() >= rows[0]["created_ms"].as_i64().unwrap());
    assert_eq!(rows[1]["status"], "active");
    assert!(rows[1]["revoked_ms"].is_null());
    assert!(!out.contains(&token[4..]));

    // Unknown and already revoked agents are errors; neither is journaled.
    for (name, expected) in [
        ("carol", "no agent named carol"),
        ("alice", "already revoked"),
    ] {
        let (status, _, err) = agent_cmd(&setup, &["agent", "revoke", name]);
        assert_eq!(status.code(), Some(2), "{err}");
        assert!(err.contains(expected), "{err}");
    }

    // A revoked agent can be added again, with a new token.
    let again = add(&setup, "alice", &[]);
    assert_eq!(auth.authenticate(&again), Ok(alice()));
    assert_eq!(auth.authenticate(&token), Err(AuthError::Unknown));
    assert_eq!(
        changes(&setup),
        vec![
            pair("alice", "added"),
            pair("bob", "added"),
            pair("alice", "revoked"),
            pair("alice", "added"),
        ]
    );
}

#[test]
fn bad_and_reserved_names_are_refused() {
    let setup = Setup::new("", "");
    for (name, expected) in [
        (UNAUTHENTICATED, "reserved"),
        ("../alice", "invalid agent name"),
    ] {
        let (status, out, err) = agent_cmd(&setup, &["agent", "add", name]);
        assert_eq!(status.code(), Some(2), "{out}{err}");
        assert!(err.contains(expected), "{err}");
        assert!(out.is_empty(), "{out}");
    }
    assert!(!setup.path("agents.json").exists());
}

#[test]
fn a_garbled_agent_file_is_an_error_never_an_empty_list() {
    let setup = Setup::new("", "");
    add(&setup, "alice", &[]);
    let file = setup.path("agents.json");
    std::fs::write(&file, "{\"version\": 1, \"agents\": [{\"name\": \"alice\"").unwrap();
    for args in [
        &["agent", "list"][..],
        &["agent", "add", "bob"],
        &["agent", "revoke", "alice"],
    ] {
        let (status, out, err) = agent_cmd(&setup, args);
        assert_eq!(status.code(), Some(2), "{args:?}: {out}{err}");
        assert!(err.contains("not a usable agent file"), "{err}");
        assert!(out.is_empty(), "{out}");
    }
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .ends_with("\"alice\"")
    );
}

#[test]
fn the_agent_file_named_in_the_config_is_used() {
    let setup = Setup::new("[agents]\nfile = \"private/agents.json\"\n", "");
    std::fs::create_dir(setup.path("private")).unwrap();
    let token = add(&setup, "alice", &[]);
    assert!(!setup.path("agents.json").exists());
    let auth = Authenticator::load(setup.path("private/agents.json")).unwrap();
    assert_eq!(auth.authenticate(&token), Ok(alice()));

    let (status, _, err) = agent_cmd(
        &Setup::new("[agents]\npath = \"x.json\"\n", ""),
        &["agent", "list"],
    );
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("unknown field `path`"), "{err}");
}

#[test]
fn audit_log_prints_agent_changes_and_refused_access() {
    let setup = Setup::new("", "");
    add(&setup, "alice", &[]);
    add(&setup, "alice", &["--rotate"]);
    let (status, _, err) = agent_cmd(&setup, &["agent", "revoke", "alice"]);
    assert!(status.success(), "{err}");
    append_refusal(&setup.path("journal.db"));

    let (status, out, err) = agent_cmd(&setup, &["audit", "log"]);
    assert!(status.success(), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].contains("alice") && lines[0].contains("agent added"),
        "{out}"
    );
    assert!(lines[1].contains("token rotated"), "{out}");
    assert!(lines[2].contains("agent revoked"), "{out}");
    assert!(lines[3].contains(UNAUTHENTICATED), "{out}");
    assert!(
        lines[3].contains("REFUSED access from 127.0.0.1:5555 — no bearer token"),
        "{out}"
    );

    let (status, _, err) = agent_cmd(&setup, &["audit", "verify"]);
    assert!(status.success(), "{err}");
}

/// What the HTTP gateway appends for a request without a valid token.
fn append_refusal(journal: &Path) {
    let journal = Journal::open(journal, JournalOptions::default()).unwrap();
    let event = Event {
        time_ms: 1_700_000_000_000,
        agent: AgentId::new(UNAUTHENTICATED).unwrap(),
        session: SessionId::from_raw("0000"),
        body: EventBody::AccessRefused {
            reason: "no bearer token".into(),
            remote: "127.0.0.1:5555".into(),
        },
    };
    journal.append(&event).wait().unwrap();
    journal.close_blocking().unwrap();
}
