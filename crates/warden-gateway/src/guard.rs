//! The stage every action passes before it may take effect: identify → decide → journal.
//!
//! INVARIANT: `Verdict::decision.effect` is `Allow` only if the decision record is durable in
//! the journal (`seq` is `Some`). A journal that cannot be written turns every decision into a
//! refusal: Warden never lets through what it could not record.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use warden_core::redact::{digest_object, redact_object};
use warden_core::{
    Action, ActionKind, AgentId, Decision, Effect, Event, EventBody, Outcome, SessionId,
};
use warden_journal::Journal;
use warden_policy::PolicySet;

/// A decision, and where the journal recorded it.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The decision in force.
    pub decision: Decision,
    /// The decision record's sequence number; `None` if it could not be recorded (then the
    /// decision is a refusal).
    pub seq: Option<u64>,
    /// The target as recorded (`server/tool`).
    pub target: String,
    /// The verb.
    pub action: ActionKind,
}

/// Decides and records the actions of one agent session, whichever channel they come
/// through (an MCP server, the egress proxy, the sandbox).
#[derive(Clone)]
pub struct Guard {
    agent: AgentId,
    session: SessionId,
    policies: Arc<PolicySet>,
    journal: Journal,
}

impl Guard {
    /// A guard for `agent`'s session `session`.
    pub fn new(
        agent: AgentId,
        session: SessionId,
        policies: Arc<PolicySet>,
        journal: Journal,
    ) -> Self {
        Self {
            agent,
            session,
            policies,
            journal,
        }
    }

    /// The agent this guard acts for.
    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    /// The policies in force.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The session.
    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// Decides any action and records the decision durably before returning.
    pub async fn check(&self, action: &Action) -> Verdict {
        let decision = self.policies.decide(&self.agent, action);
        self.record_decision(
            action.kind(),
            action.target(),
            &action_arguments(action),
            decision,
        )
        .await
    }

    /// [`Guard::check`], with facts about where the action came from (a process id, its
    /// parent) recorded beside its arguments. Policy does not see them.
    pub async fn check_noting(&self, action: &Action, notes: Map<String, Value>) -> Verdict {
        let decision = self.policies.decide(&self.agent, action);
        let mut arguments = action_arguments(action).into_owned();
        arguments.extend(notes);
        self.record_decision(action.kind(), action.target(), &arguments, decision)
            .await
    }

    /// Records the refusal of an action that no policy gets to see (malformed in a way that
    /// cannot be decided), so the attempt is on record.
    pub async fn refuse(
        &self,
        kind: ActionKind,
        target: String,
        arguments: &Map<String, Value>,
        why: &str,
    ) -> Verdict {
        self.record_decision(kind, target, arguments, Decision::refuse(why))
            .await
    }

    async fn record_decision(
        &self,
        action: ActionKind,
        target: String,
        arguments: &Map<String, Value>,
        decision: Decision,
    ) -> Verdict {
        let event = self.event(EventBody::Decision {
            action,
            target: target.clone(),
            args_digest: digest_object(arguments),
            args: redact_object(arguments),
            effect: decision.effect,
            policies: decision.policies.clone(),
            reason: decision.reason.clone(),
        });
        match self.journal.append(&event).await {
            Ok(seq) => Verdict {
                decision,
                seq: Some(seq),
                target,
                action,
            },
            Err(err) => Verdict {
                decision: Decision::refuse(format!(
                    "the journal could not record this action ({err}); \
                     Warden refuses what it cannot record"
                )),
                seq: None,
                target,
                action,
            },
        }
    }

    /// Appends what became of an allowed call. Not awaited: the decision is already durable,
    /// and the outcome must not delay the response. A failure is reported on stderr.
    pub fn record_outcome(&self, decision_seq: u64, outcome: Outcome, detail: impl Into<String>) {
        self.record_outcome_labelled(decision_seq, outcome, detail, Vec::new());
    }

    /// [`Guard::record_outcome`] with the labels the response scanner put on the result.
    pub fn record_outcome_labelled(
        &self,
        decision_seq: u64,
        outcome: Outcome,
        detail: impl Into<String>,
        labels: Vec<String>,
    ) {
        // Queued, not committed here: the answer must not wait for its outcome record.
        let pending = self.journal.append_queued(&self.event(EventBody::Outcome {
            decision_seq,
            outcome,
            detail: detail.into(),
            labels,
        }));
        tokio::spawn(async move {
            if let Err(err) = pending.await {
                tracing::error!(decision_seq, %err, "could not journal the outcome of a call");
            }
        });
    }

    /// Appends a session lifecycle record and waits until it is durable.
    pub async fn record(&self, body: EventBody) -> Result<u64, warden_journal::JournalError> {
        self.journal.append(&self.event(body)).await
    }

    fn event(&self, body: EventBody) -> Event {
        Event {
            time_ms: now_ms(),
            agent: self.agent.clone(),
            session: self.session.clone(),
            body,
        }
    }
}

/// The arguments an action carries, as journaled (redacted and digested there).
fn action_arguments(action: &Action) -> std::borrow::Cow<'_, Map<String, Value>> {
    use std::borrow::Cow;
    match action {
        Action::CallTool { arguments, .. } | Action::GetPrompt { arguments, .. } => {
            Cow::Borrowed(arguments)
        }
        Action::Complete {
            argument, value, ..
        } => {
            let mut map = Map::new();
            map.insert(argument.clone(), Value::String(value.clone()));
            Cow::Owned(map)
        }
        Action::HttpRequest {
            port, method, path, ..
        } => {
            let mut map = Map::new();
            map.insert("port".into(), Value::from(*port));
            map.insert("method".into(), Value::String(method.clone()));
            if let Some(path) = path {
                map.insert("path".into(), Value::String(path.clone()));
            }
            Cow::Owned(map)
        }
        Action::Exec { argv, .. } => {
            let mut map = Map::new();
            map.insert(
                "argv".into(),
                Value::Array(argv.iter().cloned().map(Value::String).collect()),
            );
            Cow::Owned(map)
        }
        Action::Connect { port, .. } => {
            let mut map = Map::new();
            map.insert("port".into(), Value::from(*port));
            Cow::Owned(map)
        }
        _ => Cow::Owned(Map::new()),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether an effect lets the action through.
pub fn forwards(verdict: &Verdict) -> bool {
    verdict.seq.is_some() && verdict.decision.effect == Effect::Allow
}
