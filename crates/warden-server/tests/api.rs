//! The control plane's REST API against a real journal, a real quarantine list and a real
//! operators file; requests go through the router as a server would route them.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use warden_core::{AgentId, Event, EventBody, SessionId, Severity};
use warden_journal::{Journal, JournalOptions, JournalReader, Query};
use warden_monitor::Quarantine;
use warden_server::{ControlState, KillReport, Killed, OperatorStore, Recorder, Role, router};

struct Fixture {
    dir: tempfile::TempDir,
    state: Arc<ControlState>,
    admin: String,
    viewer: String,
}

async fn fixture(records: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("journal.db");
    let journal = Journal::open(&journal_path, JournalOptions::default()).unwrap();
    for i in 0..records {
        let body = if i % 10 == 9 {
            EventBody::Alert {
                detector: "denial_burst".into(),
                severity: Severity::High,
                summary: format!("burst {i}"),
                evidence: vec![i],
            }
        } else {
            EventBody::SessionEnded {
                detail: format!("record {i}"),
            }
        };
        journal
            .append(&Event {
                time_ms: 1_700_000_000_000 + i as i64,
                agent: AgentId::new(if i % 2 == 0 { "alice" } else { "mallory" }).unwrap(),
                session: SessionId::from_raw("s"),
                body,
            })
            .await
            .unwrap();
    }
    let operators = OperatorStore::new(dir.path().join("operators.json"));
    let admin = operators.add("ana", Role::Admin, false).unwrap();
    let viewer = operators.add("vic", Role::Viewer, false).unwrap();
    let quarantine = Arc::new(Quarantine::open(dir.path().join("quarantine.json")).unwrap());
    let state = Arc::new(ControlState::new(
        journal,
        journal_path,
        quarantine,
        operators,
    ));
    Fixture {
        dir,
        state,
        admin,
        viewer,
    }
}

/// An operator action on mallory (`quarantine` or `release`) with `reason`.
async fn act<R: Recorder>(
    state: &Arc<ControlState<R>>,
    token: &str,
    action: &str,
    reason: &str,
) -> (StatusCode, Value) {
    let uri = format!("/api/v1/agents/mallory/{action}");
    call(
        state,
        "POST",
        &uri,
        Some(token),
        Some(json!({ "reason": reason })),
    )
    .await
}

/// A request to the API as a browser or script on the same host sends it, with `token`.
fn request(method: &str, uri: &str, token: Option<&str>) -> axum::http::request::Builder {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1:7412");
    match token {
        Some(t) => request.header("authorization", format!("Bearer {t}")),
        None => request,
    }
}

async fn call<R: Recorder>(
    state: &Arc<ControlState<R>>,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = request(method, uri, token);
    let request = match body {
        Some(b) => request
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

fn journal_kinds(f: &Fixture) -> Vec<String> {
    JournalReader::open(&f.dir.path().join("journal.db"))
        .unwrap()
        .records(&Query {
            limit: 100_000,
            ..Query::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect()
}

#[tokio::test]
async fn pagination_walks_the_whole_journal_without_gaps_or_repeats() {
    let f = fixture(2_500).await;
    let mut seen = Vec::new();
    let mut after = 0u64;
    loop {
        let (status, page) = call(
            &f.state,
            "GET",
            &format!("/api/v1/journal?after={after}&limit=1000"),
            Some(&f.viewer),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["seq"].as_u64().unwrap()),
        );
        match page["next"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, (1..=2_500).collect::<Vec<u64>>());
    let (_, page) = call(
        &f.state,
        "GET",
        "/api/v1/journal?agent=mallory&limit=5",
        Some(&f.viewer),
        None,
    )
    .await;
    let agents: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["agent"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["mallory"; 5]);
    // Alerts only (every tenth record), walked with the same cursor.
    let mut alerts = Vec::new();
    let mut after = 0u64;
    let mut pages = 0;
    loop {
        let (status, page) = call(
            &f.state,
            "GET",
            &format!("/api/v1/alerts?after={after}&limit=100"),
            Some(&f.viewer),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for r in page["alerts"].as_array().unwrap() {
            assert_eq!(r["kind"], "alert");
            alerts.push(r["seq"].as_u64().unwrap());
        }
        match page["next"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(alerts, (1..=250).map(|i| i * 10).collect::<Vec<u64>>());
    assert!(
        pages >= 3,
        "250 alerts do not fit in fewer than three pages of 100"
    );
}

#[tokio::test]
async fn the_journal_filters_by_kind_and_agent() {
    let f = fixture(60).await;
    let (status, page) = call(
        &f.state,
        "GET",
        "/api/v1/journal?kind=alert&agent=mallory&limit=4",
        Some(&f.viewer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let seqs: Vec<u64> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["kind"], "alert");
            assert_eq!(r["agent"], "mallory");
            r["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(seqs, [10, 20, 30, 40]);
    assert_eq!(page["next"], 40);
    let (_, rest) = call(
        &f.state,
        "GET",
        "/api/v1/journal?kind=alert&agent=mallory&after=40&limit=4",
        Some(&f.viewer),
        None,
    )
    .await;
    assert_eq!(rest["records"].as_array().unwrap().len(), 2);
    assert_eq!(rest["next"], Value::Null, "the journal's end was reached");
    let (_, none) = call(
        &f.state,
        "GET",
        "/api/v1/journal?kind=released",
        Some(&f.viewer),
        None,
    )
    .await;
    assert_eq!(none["records"], json!([]));
    assert_eq!(none["next"], Value::Null);
}

#[tokio::test]
async fn verification_reports_an_intact_journal() {
    let f = fixture(25).await;
    let (status, report) = call(
        &f.state,
        "GET",
        "/api/v1/journal/verify",
        Some(&f.viewer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["intact"], true);
    assert_eq!(report["last_seq"], 25);
    assert!(
        report["records_checked"].as_u64().unwrap() >= 25,
        "{report}"
    );
    assert_eq!(report["breach"], Value::Null);
    let (status, _) = call(&f.state, "GET", "/api/v1/journal/verify", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn verification_names_a_tampered_record() {
    let f = fixture(25).await;
    f.state.journal.close().await.unwrap();
    rusqlite::Connection::open(&f.state.journal_path)
        .unwrap()
        .execute(
            "UPDATE records SET body = replace(body, 'record 11', 'record 99') WHERE seq = 12",
            [],
        )
        .unwrap();
    let (status, report) = call(
        &f.state,
        "GET",
        "/api/v1/journal/verify",
        Some(&f.viewer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["breach"]["seq"], 12, "{report}");
    assert_eq!(report["breach"]["kind"], "altered", "{report}");
}

#[tokio::test]
async fn malformed_parameters_and_absurd_pages_are_refused_clearly() {
    let f = fixture(3).await;
    for uri in [
        "/api/v1/journal?limit=0",
        "/api/v1/journal?limit=1000000",
        "/api/v1/journal?limit=ten",
        "/api/v1/journal?after=-1",
        "/api/v1/journal?agent=bad%20name",
        "/api/v1/journal?sort=desc",
        "/api/v1/journal?kind=Alert",
        "/api/v1/journal?kind=",
        "/api/v1/alerts?kind=decision",
        "/api/v1/alerts?limit=5000",
    ] {
        let (status, body) = call(&f.state, "GET", uri, Some(&f.viewer), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn an_unknown_route_is_refused_in_words() {
    let f = fixture(1).await;
    let (status, body) = call(&f.state, "GET", "/api/v1/agent", Some(&f.viewer), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("no such route: GET /api/v1/agent"), "{body}");
    assert!(error.contains("openapi.json"), "{body}");
}

#[tokio::test]
async fn missing_bad_revoked_and_agent_tokens_are_refused() {
    let f = fixture(3).await;
    let (status, _) = call(&f.state, "GET", "/api/v1/quarantine", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &f.state,
        "GET",
        "/api/v1/quarantine",
        Some("wdo_guessed"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(
        &f.state,
        "GET",
        "/api/v1/quarantine",
        Some("wdn_an-agents-token"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"].as_str().unwrap().contains("agent tokens"),
        "{body}"
    );
    f.state.operators.revoke("vic", 1).unwrap();
    let (status, _) = call(&f.state, "GET", "/api/v1/quarantine", Some(&f.viewer), None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked token no longer works"
    );
}

#[tokio::test]
async fn a_viewer_cannot_quarantine_and_nothing_changes() {
    let f = fixture(3).await;
    let before = journal_kinds(&f);
    let (status, body) = act(&f.state, &f.viewer, "quarantine", "looks off").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(f.state.quarantine.list().is_empty());
    assert_eq!(journal_kinds(&f), before);
}

#[tokio::test]
async fn an_admin_quarantines_and_releases_with_reasons_journaled() {
    let f = fixture(3).await;
    let (status, _) = act(&f.state, &f.admin, "quarantine", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a reason is required");
    let (status, body) = act(&f.state, &f.admin, "quarantine", "reported by finance").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, list) = call(&f.state, "GET", "/api/v1/quarantine", Some(&f.viewer), None).await;
    assert_eq!(list["quarantined"][0]["agent"], "mallory");
    assert_eq!(list["quarantined"][0]["by"], "operator:ana");
    let (status, body) = act(&f.state, &f.admin, "release", "reviewed").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = act(&f.state, &f.admin, "release", "again").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let kinds = journal_kinds(&f);
    assert_eq!(&kinds[kinds.len() - 2..], ["quarantined", "released"]);
}

#[tokio::test]
async fn cross_site_requests_and_non_json_bodies_are_refused() {
    let f = fixture(3).await;
    let cross_site = request("POST", "/api/v1/agents/mallory/quarantine", Some(&f.admin))
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"reason":"csrf"}"#))
        .unwrap();
    let response = router(f.state.clone()).oneshot(cross_site).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let form = request("POST", "/api/v1/agents/mallory/quarantine", Some(&f.admin))
        .header("content-type", "text/plain")
        .body(Body::from("reason=csrf"))
        .unwrap();
    let response = router(f.state.clone()).oneshot(form).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A type that merely begins like JSON is not JSON.
    let patch = request("POST", "/api/v1/agents/mallory/quarantine", Some(&f.admin))
        .header("content-type", "application/json-patch+json")
        .body(Body::from(r#"{"reason":"csrf"}"#))
        .unwrap();
    let response = router(f.state.clone()).oneshot(patch).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(f.state.quarantine.list().is_empty());
}

#[tokio::test]
async fn a_host_that_is_not_the_control_planes_own_is_refused() {
    let f = fixture(3).await;
    let guarded = |hosts: &[String]| {
        warden_server::api::with_host_check(router(f.state.clone()), 7412, hosts)
    };
    let me = |host: &str| {
        Request::builder()
            .method("GET")
            .uri("/api/v1/me")
            .header("host", host)
            .header("authorization", format!("Bearer {}", f.viewer))
            .body(Body::empty())
            .unwrap()
    };
    for host in ["127.0.0.1:7412", "localhost:7412", "[::1]:7412"] {
        let response = guarded(&[]).oneshot(me(host)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
    // An address names no one else's site: the listener's own, when it is not loopback.
    for host in ["10.0.0.5:7412", "[fe80::1]:7412", "127.0.0.1:9999"] {
        let response = guarded(&[]).oneshot(me(host)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
    // A rebinding page sends its own name (and its own origin, which then matches it).
    for host in [
        "evil.example:7412",
        "localhost.evil.example:7412",
        "warden.internal:7412",
    ] {
        let response = guarded(&[]).oneshot(me(host)).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{host}");
    }
    let named = guarded(&["warden.internal:7412".to_owned()]);
    let response = named.oneshot(me("Warden.Internal:7412")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_bearer_scheme_is_read_in_any_case() {
    let f = fixture(3).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let me = Request::builder()
            .method("GET")
            .uri("/api/v1/me")
            .header("host", "127.0.0.1:7412")
            .header("authorization", format!("{scheme} {}", f.viewer))
            .body(Body::empty())
            .unwrap();
        let response = router(f.state.clone()).oneshot(me).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn a_policy_nested_to_overflow_the_stack_is_refused_not_a_crash() {
    let f = fixture(3).await;
    // Plainly, and behind a comment that a carriage return ends (for Cedar, not for a scan
    // that stops at line feeds only).
    for opening in ["", "// x\r"] {
        let deep = format!(
            "permit(principal, action, resource) when {{ {opening}{}true{}\n}};",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        let submit = request("POST", "/api/v1/policies/validate", Some(&f.viewer))
            .header("content-type", "text/plain")
            .body(Body::from(deep))
            .unwrap();
        let response = router(f.state.clone()).oneshot(submit).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer["valid"], false, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("brackets deep")),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn a_same_origin_request_is_served() {
    let f = fixture(3).await;
    let same_origin = request("GET", "/api/v1/quarantine", Some(&f.viewer))
        .header("origin", "http://127.0.0.1:7412")
        .body(Body::empty())
        .unwrap();
    let response = router(f.state.clone()).oneshot(same_origin).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_approver_cannot_release_and_a_revocation_elsewhere_applies_at_once() {
    let f = fixture(3).await;
    let approver = f.state.operators.add("apo", Role::Approver, false).unwrap();
    let (status, _) = act(&f.state, &f.admin, "quarantine", "suspicious").await;
    assert_eq!(status, StatusCode::OK);
    let before = journal_kinds(&f);
    let (status, body) = act(&f.state, &approver, "release", "looks fine").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(f.state.quarantine.list().len(), 1, "still quarantined");
    assert_eq!(journal_kinds(&f), before, "nothing journaled");
    // `warden user revoke` runs in another process: a separate handle on the same file.
    let (status, _) = call(&f.state, "GET", "/api/v1/quarantine", Some(&f.admin), None).await;
    assert_eq!(status, StatusCode::OK);
    OperatorStore::new(f.dir.path().join("operators.json"))
        .revoke("ana", 1)
        .unwrap();
    let (status, body) = call(&f.state, "GET", "/api/v1/quarantine", Some(&f.admin), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
}

/// A journal that refuses every record.
struct BrokenJournal;

impl Recorder for BrokenJournal {
    async fn record_in(
        &self,
        _agent: &AgentId,
        _session: SessionId,
        _body: EventBody,
    ) -> Result<u64, String> {
        Err("disk full".into())
    }
}

#[tokio::test]
async fn no_release_without_its_record_and_quarantine_fails_closed() {
    let f = fixture(3).await;
    let broken = Arc::new(ControlState::new(
        BrokenJournal,
        f.state.journal_path.clone(),
        f.state.quarantine.clone(),
        f.state.operators.clone(),
    ));
    let (status, body) = act(&broken, &f.admin, "quarantine", "exfiltration").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        f.state.quarantine.list().len(),
        1,
        "containment holds even when the journal fails"
    );
    let (status, body) = act(&broken, &f.admin, "release", "reviewed").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("stays quarantined"),
        "{body}"
    );
    assert_eq!(
        f.state.quarantine.list().len(),
        1,
        "not released unrecorded"
    );
}

/// Journals a call decided `ask` and held for a human; returns the decision's seq.
async fn held_call(journal: &Journal, agent: &str, expires_ms: i64) -> u64 {
    let event = |body| Event {
        time_ms: warden_gateway::guard::now_ms(),
        agent: AgentId::new(agent).unwrap(),
        session: SessionId::from_raw("mcp-1"),
        body,
    };
    let seq = journal
        .append(&event(EventBody::Decision {
            action: warden_core::ActionKind::CallTool,
            target: "files/delete_file".into(),
            args_digest: String::new(),
            args: json!({ "path": "/srv/data" }),
            effect: warden_core::Effect::Ask,
            policies: vec!["deletes-need-a-human".into()],
            reason: "deleting needs a human".into(),
        }))
        .await
        .unwrap();
    journal
        .append(&event(EventBody::ApprovalRequested {
            decision_seq: seq,
            expires_ms,
        }))
        .await
        .unwrap();
    seq
}

#[tokio::test]
async fn a_held_call_is_listed_answered_once_and_the_answer_journaled() {
    let f = fixture(3).await;
    let approver = f.state.operators.add("amy", Role::Approver, false).unwrap();
    let far = warden_gateway::guard::now_ms() + 600_000;
    let seq = held_call(&f.state.journal, "alice", far).await;
    let expired = held_call(&f.state.journal, "alice", 1).await;

    let (status, list) = call(&f.state, "GET", "/api/v1/approvals", Some(&f.viewer), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let pending = list["approvals"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "expired requests are not pending: {list}");
    assert_eq!(pending[0]["seq"], seq);
    assert_eq!(pending[0]["target"], "files/delete_file");
    assert_eq!(pending[0]["args"]["path"], "/srv/data");

    let uri = format!("/api/v1/approvals/{seq}");
    let answer = |a: &str| Some(json!({ "answer": a, "reason": "ticket 42" }));
    let (status, body) = call(&f.state, "POST", &uri, Some(&f.viewer), answer("approve")).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a viewer cannot answer: {body}"
    );
    let (status, body) = call(&f.state, "POST", &uri, Some(&approver), answer("maybe")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = call(
        &f.state,
        "POST",
        &uri,
        Some(&approver),
        Some(json!({ "answer": "approve" })),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a reason is required: {body}"
    );

    let (status, body) = call(&f.state, "POST", &uri, Some(&approver), answer("approve")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["taken"], true);
    assert_eq!(body["answer"], "approve");
    let (status, body) = call(&f.state, "POST", &uri, Some(&f.admin), answer("deny")).await;
    assert_eq!(status, StatusCode::CONFLICT, "answered once: {body}");
    let late = format!("/api/v1/approvals/{expired}");
    let (status, body) = call(&f.state, "POST", &late, Some(&approver), answer("approve")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an expired request: {body}");

    let (_, list) = call(&f.state, "GET", "/api/v1/approvals", Some(&f.viewer), None).await;
    assert_eq!(list["approvals"], json!([]));
    let answers: Vec<Value> = JournalReader::open(&f.state.journal_path)
        .unwrap()
        .records(&Query {
            kind: Some("approval_answered".into()),
            ..Query::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["by"], "operator:amy");
    assert_eq!(answers[0]["reason"], "ticket 42");
    assert_eq!(answers[0]["decision_seq"], seq);
}

#[tokio::test]
async fn agents_sessions_and_an_alert_with_its_evidence() {
    let f = fixture(20).await;
    let (status, body) = call(&f.state, "GET", "/api/v1/agents", Some(&f.viewer), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "mallory"]);
    assert_eq!(body["agents"][1]["alerts"], 2, "{body}");
    assert_eq!(body["agents"][1]["state"], "active");

    act(&f.state, &f.admin, "quarantine", "exfiltration").await;
    let (_, body) = call(
        &f.state,
        "GET",
        "/api/v1/agents/mallory",
        Some(&f.viewer),
        None,
    )
    .await;
    assert_eq!(body["agent"]["state"], "quarantined", "{body}");
    assert_eq!(body["agent"]["quarantine"]["reason"], "exfiltration");
    let (status, body) = call(
        &f.state,
        "GET",
        "/api/v1/agents/nobody",
        Some(&f.viewer),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Record 10 is an alert citing record 9.
    let (status, body) = call(&f.state, "GET", "/api/v1/alerts/10", Some(&f.viewer), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["alert"]["seq"], 10);
    assert_eq!(body["evidence"][0]["seq"], 9);
    let (status, _) = call(&f.state, "GET", "/api/v1/alerts/9", Some(&f.viewer), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "record 9 is no alert");
    let (status, _) = call(&f.state, "GET", "/api/v1/alerts/x", Some(&f.viewer), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn newest_first_pages_walk_back_without_gaps() {
    let f = fixture(25).await;
    let mut seen = Vec::new();
    let mut uri = "/api/v1/journal?order=newest&limit=10".to_owned();
    loop {
        let (status, page) = call(&f.state, "GET", &uri, Some(&f.viewer), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["seq"].as_u64().unwrap()),
        );
        match page["next"].as_u64() {
            Some(next) => uri = format!("/api/v1/journal?order=newest&limit=10&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen, (1..=25).rev().collect::<Vec<u64>>());
}

#[tokio::test]
async fn the_stream_carries_records_appended_after_it_opened() {
    let f = fixture(5).await;
    let stream = request("GET", "/api/v1/stream?kind=alert", Some(&f.viewer))
        .body(Body::empty())
        .unwrap();
    let response = router(f.state.clone()).oneshot(stream).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = response.into_body();
    // Not an alert (filtered out), then an alert.
    for body_event in [
        EventBody::SessionEnded { detail: "x".into() },
        EventBody::Alert {
            detector: "runaway".into(),
            severity: Severity::Medium,
            summary: "a loop".into(),
            evidence: vec![6],
        },
    ] {
        f.state
            .journal
            .append(&Event {
                time_ms: 1,
                agent: AgentId::new("alice").unwrap(),
                session: SessionId::from_raw("s"),
                body: body_event,
            })
            .await
            .unwrap();
    }
    let mut text = String::new();
    while !text.contains("\n\n") {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(30), body.frame())
            .await
            .expect("the stream sent the new alert")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    assert!(text.contains("id: 7\n"), "{text}");
    assert!(text.contains("event: record\n"), "{text}");
    assert!(text.contains("a loop"), "{text}");
    assert!(!text.contains("id: 6\n"), "the filter holds: {text}");
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let f = fixture(12).await;
    let (status, doc) = call(&f.state, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{doc}");
    for (path, methods) in paths {
        if path == "/api/v1/stream" {
            continue; // endless by design; covered above
        }
        let concrete = path.replace("{seq}", "10").replace("{name}", "mallory");
        for method in methods.as_object().unwrap().keys() {
            let mut sent = request(&method.to_uppercase(), &concrete, Some(&f.admin));
            if method == "post" {
                sent = sent.header("content-type", "application/json");
            }
            let response = router(f.state.clone())
                .oneshot(sent.body(Body::from("{}")).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            // An unserved path is the fallback's "no such route", a wrong method the
            // router's 405; every refusal of a served route says something else.
            let unserved = String::from_utf8_lossy(&bytes).contains("no such route");
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED
                    && (status != StatusCode::NOT_FOUND || !bytes.is_empty() && !unserved),
                "{method} {path} is documented but not served ({status})"
            );
        }
    }
}

/// The fixture's journal and lists behind a state whose killer reports `sandboxes` and
/// remembers which agents it was asked to kill.
fn with_killer(
    f: &Fixture,
    sandboxes: Vec<Killed>,
) -> (Arc<ControlState>, Arc<std::sync::Mutex<Vec<String>>>) {
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut state = ControlState::new(
        f.state.journal.clone(),
        f.state.journal_path.clone(),
        f.state.quarantine.clone(),
        f.state.operators.clone(),
    );
    let seen = asked.clone();
    state.killer = Some(Box::new(move |agent| {
        seen.lock().unwrap().push(agent.as_str().to_owned());
        Ok(sandboxes.clone())
    }));
    (Arc::new(state), asked)
}

fn sandbox(session: &str, result: Result<u64, &str>) -> Killed {
    Killed {
        session: SessionId::from_raw(session),
        result: result
            .map(|processes| KillReport {
                processes,
                elapsed_us: 840,
                method: "cgroup v2 cgroup.kill".into(),
            })
            .map_err(str::to_owned),
    }
}

#[tokio::test]
async fn kill_stops_the_agents_sandboxes_and_journals_each_with_operator_and_reason() {
    let f = fixture(3).await;
    let (state, asked) = with_killer(
        &f,
        vec![
            sandbox("aaaa", Ok(12)),
            sandbox("bbbb", Err("the cgroup is gone")),
        ],
    );
    let (status, body) = act(&state, &f.admin, "kill", "spawning miners").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(*asked.lock().unwrap(), ["mallory"]);
    let sandboxes = body["sandboxes"].as_array().unwrap();
    assert_eq!(sandboxes[0]["killed"], true, "{body}");
    assert_eq!(sandboxes[0]["processes"], 12);
    assert_eq!(sandboxes[1]["killed"], false);
    assert_eq!(sandboxes[1]["error"], "the cgroup is gone");
    let seq = sandboxes[0]["seq"].as_u64().expect("the kill is journaled");
    let record = JournalReader::open(&f.dir.path().join("journal.db"))
        .unwrap()
        .records(&Query {
            after_seq: seq - 1,
            limit: 1,
            ..Query::default()
        })
        .unwrap()
        .remove(0);
    assert_eq!(record.kind, "sandbox_killed");
    assert_eq!(record.agent.as_str(), "mallory");
    assert_eq!(
        record.session.as_str(),
        "aaaa",
        "under the killed sandbox's session"
    );
    assert_eq!(record.body["by"], "operator:ana");
    assert_eq!(record.body["reason"], "spawning miners");
    assert_eq!(record.body["processes"], 12);
}

#[tokio::test]
async fn kill_is_for_admins_with_a_reason_and_says_when_there_is_nothing_to_kill() {
    let f = fixture(3).await;
    let (state, asked) = with_killer(&f, vec![sandbox("aaaa", Ok(1))]);
    let before = journal_kinds(&f).len();
    let (status, body) = act(&state, &f.viewer, "kill", "because").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = act(&state, &f.admin, "kill", "  ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(asked.lock().unwrap().is_empty(), "nothing was killed");
    assert_eq!(journal_kinds(&f).len(), before, "nothing was journaled");

    let (none, _) = with_killer(&f, Vec::new());
    let (status, body) = act(&none, &f.admin, "kill", "stop it").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no running sandbox")
    );

    let (failing, _) = with_killer(&f, vec![sandbox("aaaa", Err("permission denied"))]);
    let (status, body) = act(&failing, &f.admin, "kill", "stop it").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("permission denied")
    );

    // A control plane without sandboxes says so rather than pretending.
    let (status, body) = act(&f.state, &f.admin, "kill", "stop it").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert_eq!(journal_kinds(&f).len(), before, "nothing was journaled");
}

#[tokio::test]
async fn detectors_show_their_settings_what_they_raised_and_whom_they_hold() {
    let f = fixture(30).await;
    let settings = json!({"threshold": 3, "window_secs": 60});
    let detector = warden_monitor::detectors::build("denial_burst", settings.clone()).unwrap();
    let monitor = warden_monitor::Monitor::new(
        vec![detector],
        warden_monitor::Playbook::default_rules(),
        f.state.quarantine.clone(),
    );
    f.state
        .quarantine
        .add(warden_monitor::QuarantineEntry {
            agent: AgentId::new("mallory").unwrap(),
            level: warden_monitor::Level::Quarantine,
            reason: "burst 29".into(),
            by: "detector:denial_burst".into(),
            since_ms: 1,
            evidence: vec![29],
        })
        .unwrap();
    let mut state = ControlState::new(
        f.state.journal.clone(),
        f.state.journal_path.clone(),
        f.state.quarantine.clone(),
        f.state.operators.clone(),
    );
    state.monitor = Some(Arc::new(monitor));
    state
        .detector_settings
        .insert("denial_burst".into(), settings.clone());
    let state = Arc::new(state);
    let (status, body) = call(&state, "GET", "/api/v1/detectors", Some(&f.viewer), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let burst = &body["detectors"][0];
    assert_eq!(burst["name"], "denial_burst", "{body}");
    assert_eq!(burst["running"], true);
    assert_eq!(burst["settings"], settings);
    // The fixture journals an alert every tenth record: seqs 10, 20 and 30.
    assert_eq!(burst["alerts"], 3, "{body}");
    assert_eq!(burst["last_alert"]["seq"], 30);
    assert_eq!(burst["last_alert"]["summary"], "burst 29");
    assert_eq!(burst["holding"][0]["agent"], "mallory");
    assert_eq!(body["playbook"][1]["respond"][0], "quarantine", "{body}");

    // Without a monitor of its own, what the journal says is still shown.
    let (status, body) = call(&f.state, "GET", "/api/v1/detectors", Some(&f.viewer), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["detectors"][0]["running"], false, "{body}");
    assert_eq!(body["detectors"][0]["alerts"], 3);
    assert_eq!(body["playbook"], Value::Null);
    let (status, _) = call(&f.state, "GET", "/api/v1/detectors", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_expired_token_is_refused_and_says_so() {
    let f = fixture(3).await;
    let now = warden_gateway::guard::now_ms();
    let expired = f
        .state
        .operators
        .add_until("old", Role::Admin, false, Some(now - 1))
        .unwrap();
    let current = f
        .state
        .operators
        .add_until("new", Role::Viewer, false, Some(now + 3_600_000))
        .unwrap();
    let (status, body) = call(&f.state, "GET", "/api/v1/me", Some(&expired), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let (status, body) = act(&f.state, &expired, "quarantine", "with an old token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(f.state.quarantine.list().is_empty(), "nothing changed");
    let (status, body) = call(&f.state, "GET", "/api/v1/me", Some(&current), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "new");
}

#[tokio::test]
async fn a_verification_is_shared_by_requests_that_follow_it_closely() {
    let f = fixture(20).await;
    let get = || {
        call(
            &f.state,
            "GET",
            "/api/v1/journal/verify",
            Some(&f.viewer),
            None,
        )
    };
    let (status, first) = get().await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["shared"], false, "{first}");
    let (status, second) = get().await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["shared"], true, "{second}");
    assert_eq!(second["verified_at_ms"], first["verified_at_ms"]);
    assert_eq!(second["last_seq"], first["last_seq"]);
    assert_eq!(second["intact"], true);
}
