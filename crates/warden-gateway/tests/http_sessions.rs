//! Sessions of the Streamable HTTP endpoint end when the token that opened them is withdrawn,
//! even if the agent never sends another request.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use warden_core::AgentId;
use warden_gateway::http::access::AllowedPeers;
use warden_gateway::http::{HttpGateway, HttpOptions};
use warden_gateway::identity::{AgentStore, Authenticator};
use warden_gateway::mcp::hub::{Hub, HubOptions};
use warden_journal::{Journal, JournalOptions, JournalReader, Query};
use warden_policy::{PolicySet, SourceFile};

const PORT: u16 = 7411;

fn initialize(token: &str) -> Request<Body> {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let mut request = Request::post("/mcp")
        .header("host", format!("127.0.0.1:{PORT}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Body::from(body))
        .unwrap();
    let remote: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(remote));
    request
}

/// A gateway over no upstream, permitting everything, for the agents of `store`.
fn gateway(store: &AgentStore, journal: &Journal, options: HttpOptions) -> Arc<HttpGateway> {
    let policy = SourceFile::new("p.cedar", r#"permit (principal, action, resource);"#);
    let policies = Arc::new(PolicySet::from_sources(&[policy], &[]).unwrap());
    let hub = Hub::new(
        Vec::new(),
        None,
        policies,
        journal.clone(),
        HubOptions::default(),
    );
    HttpGateway::new(
        hub,
        Authenticator::load(store.path()).unwrap(),
        AllowedPeers::new(PORT, &[], &[]),
        options,
    )
}

#[tokio::test]
async fn revoking_a_token_ends_its_idle_sessions_at_the_next_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j.db"), JournalOptions::default()).unwrap();
    let store = AgentStore::new(dir.path().join("agents.json"));
    let alice = AgentId::new("alice").unwrap();
    let bob = AgentId::new("bob").unwrap();
    let alices = store.add(&alice, false).unwrap().token().to_owned();
    let bobs = store.add(&bob, false).unwrap().token().to_owned();
    let gateway = gateway(&store, &journal, HttpOptions::default());
    for token in [&alices, &bobs] {
        let response = gateway.router().oneshot(initialize(token)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(gateway.session_count(), 2);

    // Nothing withdrawn: the sweep leaves both open.
    gateway.expire_idle().await;
    assert_eq!(gateway.session_count(), 2);

    store.revoke(&alice).unwrap();
    gateway.expire_idle().await;
    assert_eq!(gateway.session_count(), 1, "bob's session stays open");
    journal.close().await.unwrap();

    let ended: Vec<_> = JournalReader::open(&dir.path().join("j.db"))
        .unwrap()
        .records(&Query {
            limit: 100,
            ..Query::default()
        })
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "session_ended")
        .collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].agent, alice);
    assert!(
        ended[0].body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("rotated or revoked")),
        "{:?}",
        ended[0].body
    );
}

#[tokio::test]
async fn concurrent_initializes_cannot_pass_the_per_agent_limit() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j.db"), JournalOptions::default()).unwrap();
    let store = AgentStore::new(dir.path().join("agents.json"));
    let alice = AgentId::new("alice").unwrap();
    let token = store.add(&alice, false).unwrap().token().to_owned();
    let mut options = HttpOptions::default();
    options.sessions.per_agent = 3;
    let gateway = gateway(&store, &journal, options);
    // All at once: each waits on the journal between the check and the insert.
    let answers = futures_util::future::join_all(
        (0..40).map(|_| gateway.router().oneshot(initialize(&token))),
    )
    .await;
    let opened = answers
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == StatusCode::OK))
        .count();
    assert_eq!(opened, 3);
    assert_eq!(gateway.session_count(), 3);
    let refused = answers
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_ok_and(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        })
        .count();
    assert_eq!(refused, 37);
    journal.close().await.unwrap();
}

#[tokio::test]
async fn refusals_before_any_token_are_journaled_within_a_bound_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journal = Journal::open(&path, JournalOptions::default()).unwrap();
    let store = AgentStore::new(dir.path().join("agents.json"));
    let gateway = gateway(&store, &journal, HttpOptions::default());
    let refused = |records: &[warden_journal::JournalRecord]| {
        let (mut one_by_one, mut counted) = (0u64, 0u64);
        for r in records.iter().filter(|r| r.kind == "access_refused") {
            let reason = r.body["reason"].as_str().unwrap_or_default();
            match reason.split_once(" more requests refused") {
                Some((n, _)) => counted += n.parse::<u64>().unwrap(),
                None => one_by_one += 1,
            }
        }
        (one_by_one, counted)
    };
    let read = || {
        JournalReader::open(&path)
            .unwrap()
            .records(&Query {
                limit: 10_000,
                ..Query::default()
            })
            .unwrap()
    };
    let mut sent = 0u64;
    for _ in 0..300 {
        let response = gateway
            .router()
            .oneshot(initialize("wdn_not-a-token"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        sent += 1;
    }
    // The count of those over the bound is journaled with a later second's first refusal.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, counted) = refused(&read());
        if counted > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no count was journaled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let _ = gateway
            .router()
            .oneshot(initialize("wdn_not-a-token"))
            .await
            .unwrap();
        sent += 1;
    }
    let (one_by_one, counted) = refused(&read());
    assert!(one_by_one < 300, "{one_by_one} journaled one by one");
    assert!(
        one_by_one + counted <= sent,
        "{one_by_one} + {counted} > {sent}"
    );
    assert!(
        one_by_one + counted >= 300,
        "every one of the first 300 is on record"
    );
    journal.close().await.unwrap();
}

#[tokio::test]
async fn no_session_opens_once_warden_stops() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j.db"), JournalOptions::default()).unwrap();
    let store = AgentStore::new(dir.path().join("agents.json"));
    let token = store
        .add(&AgentId::new("alice").unwrap(), false)
        .unwrap()
        .token()
        .to_owned();
    let gateway = gateway(&store, &journal, HttpOptions::default());
    gateway.close_all("Warden shut down").await;
    let response = gateway.router().oneshot(initialize(&token)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(gateway.session_count(), 0);
    journal.close().await.unwrap();
}
