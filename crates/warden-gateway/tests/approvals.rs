//! Calls decided `ask` held by a real guard over a real journal, answered the way an operator
//! answers: by a journal record from elsewhere.

use std::sync::Arc;
use std::time::Duration;

use warden_core::{
    Action, AgentId, ApprovalAnswer, Effect, Event, EventBody, ServerName, SessionId, ToolRef,
};
use warden_gateway::approval::HoldOptions;
use warden_gateway::{Grounds, Guard};
use warden_journal::{Journal, JournalOptions, JournalReader, Query};
use warden_policy::{PolicySet, SourceFile};

const POLICY: &str = r#"
@id("deletes-need-a-human")
@ask("deleting needs a human")
permit (principal == Agent::"alice", action == Action::"call_tool", resource == Tool::"files/delete");
"#;

fn delete_call() -> Action {
    Action::CallTool {
        tool: ToolRef::new(ServerName::new("files").unwrap(), "delete").unwrap(),
        arguments: serde_json::Map::new(),
    }
}

fn guard(journal: &Journal, session: &str, timeout: Duration) -> Guard {
    let policies = PolicySet::from_sources(&[SourceFile::new("p.cedar", POLICY)], &[]).unwrap();
    Guard::new(
        AgentId::new("alice").unwrap(),
        SessionId::from_raw(session),
        Arc::new(policies),
        journal.clone(),
    )
    .with_hold(Some(HoldOptions { timeout }))
}

/// Waits (bounded) until the journal holds a request for a held call; returns its decision seq.
async fn requested(journal: &Journal, n: usize) -> u64 {
    let reader = JournalReader::open(journal.path()).unwrap();
    let mut commits = journal.commits();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = reader
            .records(&Query {
                kind: Some("approval_requested".into()),
                ..Query::default()
            })
            .unwrap();
        if found.len() >= n {
            return found[n - 1].body["decision_seq"].as_u64().unwrap();
        }
        tokio::time::timeout_at(deadline, commits.changed())
            .await
            .expect("the guard asked for an approval")
            .unwrap();
    }
}

async fn answer(journal: &Journal, decision_seq: u64, answer: ApprovalAnswer) {
    journal
        .append(&Event {
            time_ms: 1,
            agent: AgentId::new("alice").unwrap(),
            session: SessionId::from_raw("operator"),
            body: EventBody::ApprovalAnswered {
                decision_seq,
                answer,
                by: "operator:ann".into(),
                reason: "ticket 7".into(),
            },
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn an_approval_for_the_session_lets_the_call_and_its_repeats_through() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j.db"), JournalOptions::default()).unwrap();
    let g = guard(&journal, "s1", Duration::from_secs(60));
    let held = tokio::spawn({
        let g = g.clone();
        async move { g.check(&delete_call()).await }
    });
    let seq = requested(&journal, 1).await;
    assert!(!held.is_finished(), "the call waits for a human");
    answer(&journal, seq, ApprovalAnswer::ApproveSession).await;
    let verdict = tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .expect("the answer released the call")
        .unwrap();
    assert_eq!(verdict.decision.effect, Effect::Allow);
    assert_eq!(
        verdict.seq,
        Some(seq),
        "the outcome completes the ask record"
    );
    assert!(verdict.decision.reason.contains("ann"), "{verdict:?}");

    // The same call again in the same session: allowed without asking, the grant named.
    let again = g.check(&delete_call()).await;
    assert_eq!(again.decision.effect, Effect::Allow);
    assert!(
        again.decision.reason.contains("for this session"),
        "{again:?}"
    );
    // Another session still asks (and is refused when nobody answers).
    let other = guard(&journal, "s2", Duration::from_millis(300));
    let refused = other.check(&delete_call()).await;
    assert_eq!(refused.decision.effect, Effect::Deny);
    assert!(
        refused.decision.reason.contains("nobody answered"),
        "{refused:?}"
    );
    assert_eq!(refused.grounds, Grounds::Approval);
    journal.close().await.unwrap();
}

#[tokio::test]
async fn a_denial_refuses_the_held_call() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j.db"), JournalOptions::default()).unwrap();
    let g = guard(&journal, "s1", Duration::from_secs(60));
    let held = tokio::spawn(async move { g.check(&delete_call()).await });
    let seq = requested(&journal, 1).await;
    answer(&journal, seq, ApprovalAnswer::Deny).await;
    let verdict = tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .expect("the answer released the call")
        .unwrap();
    assert_eq!(verdict.decision.effect, Effect::Deny);
    assert!(verdict.decision.reason.contains("refused"), "{verdict:?}");
    // The agent is told a human refused, not that no policy permits it.
    assert_eq!(verdict.grounds, Grounds::Approval);
    journal.close().await.unwrap();
}

#[tokio::test]
async fn without_holding_ask_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j.db"), JournalOptions::default()).unwrap();
    let g = guard(&journal, "s1", Duration::from_secs(60)).with_hold(None);
    let verdict = g.check(&delete_call()).await;
    assert_eq!(verdict.decision.effect, Effect::Ask);
    assert!(!warden_gateway::guard::forwards(&verdict));
    journal.close().await.unwrap();
}
