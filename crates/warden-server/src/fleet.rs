//! What the journal says about the fleet right now: each agent's activity, its sessions and
//! their lineage, and the calls held for a human's answer.
//!
//! A projection, not a second source of truth: it is built by reading the journal in order and
//! brought up to date before each use, so it shows what every Warden process sharing the
//! journal recorded. Reading is incremental (from the last seq seen), so keeping up costs
//! about as much as the records appended since.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;
use warden_core::{ApprovalAnswer, EventBody};
use warden_journal::{JournalError, JournalReader, JournalRecord, Query};

/// Records read per step while catching up.
const CHUNK: usize = 2000;

/// Sessions remembered per agent (the newest); older ones stay in the journal.
const SESSIONS_PER_AGENT: usize = 500;

/// Decision counts by effect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Decisions {
    /// Allowed.
    pub allow: u64,
    /// Refused.
    pub deny: u64,
    /// Sent to a human.
    pub ask: u64,
}

/// One agent's activity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentActivity {
    /// The agent.
    pub name: String,
    /// Its newest record.
    pub last_seq: u64,
    /// When that was.
    pub last_time_ms: i64,
    /// Its decisions so far.
    pub decisions: Decisions,
    /// Alerts raised about it.
    pub alerts: u64,
    /// Sessions started and not ended.
    pub sessions_open: u64,
}

/// What one detector has raised so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DetectorActivity {
    /// Alerts raised.
    pub alerts: u64,
    /// The newest alert's record.
    pub last_seq: u64,
    /// When it was raised.
    pub last_time_ms: i64,
    /// The agent it concerned.
    pub last_agent: String,
    /// What it said.
    pub last_summary: String,
}

/// One session and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// Its id.
    pub id: String,
    /// The agent.
    pub agent: String,
    /// The session it was opened from (`warden run`'s, for an MCP session in a sandbox).
    pub parent: Option<String>,
    /// What it serves: the upstream server, or `sandbox` for a `warden run`.
    pub server: String,
    /// Its first record.
    pub started_seq: u64,
    /// When it started.
    pub started_ms: i64,
    /// When it ended, if it has.
    pub ended_ms: Option<i64>,
}

/// A call held for a human's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingApproval {
    /// The `ask` decision record; the approval is answered by this number.
    pub seq: u64,
    /// The agent.
    pub agent: String,
    /// The held call's session.
    pub session: String,
    /// The verb (`call_tool`, `exec`, …).
    pub action: String,
    /// The target.
    pub target: String,
    /// The arguments as journaled (secrets redacted).
    pub args: Value,
    /// Why it needs a human.
    pub reason: String,
    /// When it was asked.
    pub requested_ms: i64,
    /// When it is refused if nobody answers.
    pub expires_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    cursor: u64,
    agents: BTreeMap<String, AgentActivity>,
    sessions: HashMap<String, SessionInfo>,
    /// Each agent's session ids, oldest first.
    by_agent: HashMap<String, Vec<String>>,
    pending: BTreeMap<u64, PendingApproval>,
    /// Held calls answered (or timed out) so far, by decision seq, so a request whose
    /// `approval_requested` record comes after its answer is not shown as pending.
    answered: HashMap<u64, (ApprovalAnswer, u64)>,
    /// Alerts by detector.
    detectors: BTreeMap<String, DetectorActivity>,
}

/// The projection. Cheap to share; [`Fleet::catch_up`] brings it up to date.
#[derive(Debug, Default)]
pub struct Fleet {
    state: Mutex<State>,
}

impl Fleet {
    /// Reads every record after the last one seen. Blocking (SQLite).
    pub fn catch_up(&self, reader: &JournalReader) -> Result<u64, JournalError> {
        self.read_on(reader, &mut |_| {})
    }

    /// [`Fleet::catch_up`], calling `progress(read, last)` after each step: the last seq read
    /// so far, and the journal's last seq (when reading began, or since passed). For a reader
    /// that shows how far a long first catch-up has come.
    pub fn catch_up_with_progress(
        &self,
        reader: &JournalReader,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, JournalError> {
        let last = reader.last_seq()?;
        self.read_on(reader, &mut |read| progress(read, last.max(read)))
    }

    fn read_on(
        &self,
        reader: &JournalReader,
        step: &mut dyn FnMut(u64),
    ) -> Result<u64, JournalError> {
        let mut state = self.lock();
        loop {
            let records = reader.records(&Query {
                after_seq: state.cursor,
                limit: CHUNK,
                ..Query::default()
            })?;
            let done = records.len() < CHUNK;
            for record in records {
                state.apply(reader, record)?;
            }
            step(state.cursor);
            if done {
                return Ok(state.cursor);
            }
        }
    }

    /// What each detector has raised, by detector name.
    pub fn detectors(&self) -> BTreeMap<String, DetectorActivity> {
        self.lock().detectors.clone()
    }

    /// Every agent seen, by name.
    pub fn agents(&self) -> Vec<AgentActivity> {
        self.lock().agents.values().cloned().collect()
    }

    /// One agent's activity and its sessions (newest first).
    pub fn agent(&self, name: &str) -> Option<(AgentActivity, Vec<SessionInfo>)> {
        let state = self.lock();
        let activity = state.agents.get(name)?.clone();
        let sessions = state
            .by_agent
            .get(name)
            .map(|ids| {
                ids.iter()
                    .rev()
                    .filter_map(|id| state.sessions.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default();
        Some((activity, sessions))
    }

    /// Calls waiting for an answer at `now_ms`, oldest first.
    pub fn pending(&self, now_ms: i64) -> Vec<PendingApproval> {
        self.lock()
            .pending
            .values()
            .filter(|p| p.expires_ms > now_ms)
            .cloned()
            .collect()
    }

    /// The held call `seq`, if it is waiting, and the answer in force with its record, if
    /// it has one.
    pub fn approval(&self, seq: u64) -> (Option<PendingApproval>, Option<(ApprovalAnswer, u64)>) {
        let state = self.lock();
        (
            state.pending.get(&seq).cloned(),
            state.answered.get(&seq).copied(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state consistent record by record.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn apply(&mut self, reader: &JournalReader, record: JournalRecord) -> Result<(), JournalError> {
        self.cursor = record.seq;
        let agent = record.agent.as_str().to_owned();
        let session = record.session.as_str().to_owned();
        // Operator actions are journaled under the agent they concern, in the `operator`
        // session: they are not the agent's activity.
        let operator = session == "operator";
        let body = serde_json::from_value::<EventBody>(record.body.clone()).ok();
        if !operator && agent != "unauthenticated" {
            let activity = self
                .agents
                .entry(agent.clone())
                .or_insert_with(|| AgentActivity {
                    name: agent.clone(),
                    ..AgentActivity::default()
                });
            activity.last_seq = record.seq;
            activity.last_time_ms = record.time_ms;
            match &body {
                Some(EventBody::Decision { effect, .. }) => match effect {
                    warden_core::Effect::Allow => activity.decisions.allow += 1,
                    warden_core::Effect::Deny => activity.decisions.deny += 1,
                    warden_core::Effect::Ask => activity.decisions.ask += 1,
                },
                Some(EventBody::Alert { .. }) => activity.alerts += 1,
                _ => {}
            }
        }
        match body {
            Some(EventBody::SessionStarted { server, parent, .. }) => {
                self.start_session(&record, server, parent.map(|p| p.as_str().to_owned()));
            }
            Some(EventBody::SandboxStarted { .. }) => {
                self.start_session(&record, "sandbox".to_owned(), None);
            }
            Some(EventBody::SessionEnded { .. }) | Some(EventBody::SandboxEnded { .. }) => {
                if let Some(s) = self.sessions.get_mut(&session)
                    && s.ended_ms.is_none()
                {
                    s.ended_ms = Some(record.time_ms);
                    if let Some(a) = self.agents.get_mut(&agent) {
                        a.sessions_open = a.sessions_open.saturating_sub(1);
                    }
                }
                // A call held in a session that has ended has nowhere to go: approving it
                // would do nothing. (Warden withdraws such calls as the session ends; a
                // process that died without doing so leaves them unanswered.)
                self.pending.retain(|_, p| p.session != session);
            }
            Some(EventBody::ApprovalRequested {
                decision_seq,
                expires_ms,
            }) => {
                if !self.answered.contains_key(&decision_seq)
                    && let Some(pending) = held_call(reader, decision_seq, expires_ms)?
                {
                    self.pending.insert(decision_seq, pending);
                }
            }
            Some(EventBody::ApprovalAnswered {
                decision_seq,
                answer,
                ..
            }) => {
                // The first answer is the one in force.
                self.answered
                    .entry(decision_seq)
                    .or_insert((answer, record.seq));
                self.pending.remove(&decision_seq);
            }
            Some(EventBody::Alert {
                detector, summary, ..
            }) => {
                let seen = self.detectors.entry(detector).or_default();
                seen.alerts += 1;
                seen.last_seq = record.seq;
                seen.last_time_ms = record.time_ms;
                seen.last_agent = agent;
                seen.last_summary = summary;
            }
            _ => {}
        }
        Ok(())
    }

    fn start_session(&mut self, record: &JournalRecord, server: String, parent: Option<String>) {
        let agent = record.agent.as_str().to_owned();
        let id = record.session.as_str().to_owned();
        if self.sessions.contains_key(&id) {
            return;
        }
        self.sessions.insert(
            id.clone(),
            SessionInfo {
                id: id.clone(),
                agent: agent.clone(),
                parent,
                server,
                started_seq: record.seq,
                started_ms: record.time_ms,
                ended_ms: None,
            },
        );
        if let Some(a) = self.agents.get_mut(&agent) {
            a.sessions_open += 1;
        }
        let ids = self.by_agent.entry(agent).or_default();
        ids.push(id);
        if ids.len() > SESSIONS_PER_AGENT {
            let old = ids.remove(0);
            self.sessions.remove(&old);
        }
    }
}

/// The held call whose `ask` decision is record `seq`, as an approval request.
fn held_call(
    reader: &JournalReader,
    seq: u64,
    expires_ms: i64,
) -> Result<Option<PendingApproval>, JournalError> {
    let Some(record) = reader.record(seq)? else {
        return Ok(None);
    };
    let Ok(EventBody::Decision {
        action,
        target,
        args,
        reason,
        ..
    }) = serde_json::from_value::<EventBody>(record.body)
    else {
        return Ok(None);
    };
    Ok(Some(PendingApproval {
        seq,
        agent: record.agent.as_str().to_owned(),
        session: record.session.as_str().to_owned(),
        action: action.as_str().to_owned(),
        target,
        args,
        reason,
        requested_ms: record.time_ms,
        expires_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::{ActionKind, AgentId, Effect, Event, SessionId};
    use warden_journal::{Journal, JournalOptions};

    fn event(agent: &str, session: &str, body: EventBody) -> Event {
        Event {
            time_ms: 1_000,
            agent: AgentId::new(agent).unwrap(),
            session: SessionId::from_raw(session),
            body,
        }
    }

    fn decision(effect: Effect) -> EventBody {
        EventBody::Decision {
            action: ActionKind::CallTool,
            target: "files/delete".into(),
            args_digest: String::new(),
            args: serde_json::json!({"path": "/x"}),
            effect,
            policies: vec![],
            reason: "needs a human".into(),
        }
    }

    #[tokio::test]
    async fn projects_activity_lineage_and_held_calls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path, JournalOptions::default()).unwrap();
        let append = |e: Event| {
            let j = journal.clone();
            async move { j.append(&e).await.unwrap() }
        };
        append(event(
            "alice",
            "run-1",
            EventBody::SandboxStarted {
                command: vec!["agent".into()],
                layers: vec![],
                degraded: vec![],
                cgroups: String::new(),
                task: None,
                scope: vec![],
            },
        ))
        .await;
        append(event(
            "alice",
            "mcp-1",
            EventBody::SessionStarted {
                server: "files".into(),
                warden_version: "0".into(),
                parent: Some(SessionId::from_raw("run-1")),
            },
        ))
        .await;
        append(event("alice", "mcp-1", decision(Effect::Allow))).await;
        let ask = append(event("alice", "mcp-1", decision(Effect::Ask))).await;
        append(event(
            "alice",
            "mcp-1",
            EventBody::ApprovalRequested {
                decision_seq: ask,
                expires_ms: 5_000,
            },
        ))
        .await;
        let fleet = Fleet::default();
        let reader = JournalReader::open(&path).unwrap();
        fleet.catch_up(&reader).unwrap();

        let (alice, sessions) = fleet.agent("alice").unwrap();
        assert_eq!(alice.decisions.allow, 1);
        assert_eq!(alice.decisions.ask, 1);
        assert_eq!(alice.sessions_open, 2);
        assert_eq!(sessions[0].id, "mcp-1");
        assert_eq!(sessions[0].parent.as_deref(), Some("run-1"));
        assert_eq!(sessions[1].server, "sandbox");

        let pending = fleet.pending(1_000);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].seq, ask);
        assert_eq!(pending[0].target, "files/delete");
        assert!(
            fleet.pending(5_000).is_empty(),
            "expired requests are not pending"
        );

        // The operator's answer, journaled under the agent, is not the agent's activity.
        append(event(
            "alice",
            "operator",
            EventBody::ApprovalAnswered {
                decision_seq: ask,
                answer: ApprovalAnswer::Deny,
                by: "operator:ann".into(),
                reason: "no".into(),
            },
        ))
        .await;
        append(event(
            "alice",
            "mcp-1",
            EventBody::SessionEnded {
                detail: "closed".into(),
            },
        ))
        .await;
        fleet.catch_up(&reader).unwrap();
        assert!(fleet.pending(1_000).is_empty());
        assert_eq!(
            fleet.approval(ask).1.map(|a| a.0),
            Some(ApprovalAnswer::Deny)
        );
        let (alice_now, _) = fleet.agent("alice").unwrap();
        assert_eq!(alice_now.sessions_open, 1);
        assert_eq!(alice_now.last_seq, alice.last_seq + 2);
        journal.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_call_held_in_a_session_that_ended_is_no_longer_pending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path, JournalOptions::default()).unwrap();
        let append = |e: Event| {
            let j = journal.clone();
            async move { j.append(&e).await.unwrap() }
        };
        let mut asks = Vec::new();
        for session in ["mcp-1", "mcp-2"] {
            append(event(
                "alice",
                session,
                EventBody::SessionStarted {
                    server: "files".into(),
                    warden_version: "0".into(),
                    parent: None,
                },
            ))
            .await;
            let ask = append(event("alice", session, decision(Effect::Ask))).await;
            append(event(
                "alice",
                session,
                EventBody::ApprovalRequested {
                    decision_seq: ask,
                    expires_ms: 5_000,
                },
            ))
            .await;
            asks.push(ask);
        }
        // The process serving mcp-1 ended it without answering its held call.
        append(event(
            "alice",
            "mcp-1",
            EventBody::SessionEnded {
                detail: "the agent closed the session".into(),
            },
        ))
        .await;
        let fleet = Fleet::default();
        let reader = JournalReader::open(&path).unwrap();
        fleet.catch_up(&reader).unwrap();
        let pending: Vec<u64> = fleet.pending(1_000).iter().map(|p| p.seq).collect();
        assert_eq!(pending, vec![asks[1]], "only mcp-2's call still waits");
        journal.close().await.unwrap();
    }

    #[tokio::test]
    async fn progress_reports_each_step_up_to_the_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path, JournalOptions::default()).unwrap();
        let total = CHUNK as u64 + 10;
        // Queued together: committed in a few transactions, not one per record.
        let appended: Vec<_> = (0..total)
            .map(|_| journal.append_queued(&event("alice", "mcp-1", decision(Effect::Allow))))
            .collect();
        for pending in appended {
            pending.await.unwrap();
        }
        let reader = JournalReader::open(&path).unwrap();
        let fleet = Fleet::default();
        let mut steps = Vec::new();
        let cursor = fleet
            .catch_up_with_progress(&reader, |read, last| steps.push((read, last)))
            .unwrap();
        assert_eq!(cursor, total);
        assert_eq!(steps, vec![(CHUNK as u64, total), (total, total)]);
        assert_eq!(fleet.agent("alice").unwrap().0.decisions.allow, total);
        journal.close().await.unwrap();
    }
}
