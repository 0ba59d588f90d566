//! The stage every action passes before it may take effect: identify → decide → journal →
//! monitor.
//!
//! INVARIANT: `Verdict::decision.effect` is `Allow` only if the decision record is durable in
//! the journal (`seq` is `Some`). A journal that cannot be written turns every decision into a
//! refusal: Warden never lets through what it could not record.
//!
//! With a [`Monitor`], a quarantined agent is refused before any policy is consulted, a
//! detector may veto an action outright (a canary secret leaving), and every durable record
//! is shown to the detectors before the call returns, so a quarantine they trigger is in force
//! for the agent's next action.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use warden_core::redact::{digest_object, redact_object};
use warden_core::{
    Action, ActionKind, AgentId, ApprovalAnswer, Decision, Effect, Event, EventBody, Outcome,
    SessionId,
};
use warden_journal::Journal;
use warden_monitor::monitor::Raised;
use warden_monitor::playbook::Response;
use warden_monitor::{Level, Monitor, Observation, QuarantineEntry};
use warden_policy::PolicySet;

use crate::approval::{self, HoldOptions, SessionGrants, Waited, Withdrawal};

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
    /// Why the agent cancelled the call while it was held for a human, if it did: the call
    /// must not go ahead, and the agent expects no answer to it.
    pub withdrawn: Option<String>,
    /// What decided it: a refusal tells the agent what, if anything, would change it.
    pub grounds: Grounds,
}

/// What decided a verdict, so that a refusal tells the agent what would change it: a new
/// permit (policy), a human (approval, quarantine), time (throttle, an unavailable journal),
/// or nothing (a detector's veto, a request that cannot be decided).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grounds {
    /// The policy set: a permit, a forbid, or nothing permitting (default deny).
    Policy,
    /// A human's answer to an approval request, or its absence (a timeout, the agent
    /// withdrawing the call).
    Approval,
    /// The agent is quarantined, or every action of it needs approval, until a human
    /// releases it.
    Quarantine,
    /// The agent is throttled: one action a second.
    Throttle,
    /// A detector refused this action (an attempt on Warden itself, a canary on its way out).
    Detector,
    /// Warden could not record the action or ask a human about it: nothing was done.
    Unavailable,
    /// The request could not be decided as sent (malformed in a way policy cannot judge).
    Undecidable,
}

impl Grounds {
    /// The name `_meta` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Grounds::Policy => "policy",
            Grounds::Approval => "approval",
            Grounds::Quarantine => "quarantine",
            Grounds::Throttle => "throttle",
            Grounds::Detector => "detector",
            Grounds::Unavailable => "unavailable",
            Grounds::Undecidable => "undecidable",
        }
    }
}

/// Decides and records the actions of one agent session, whichever channel they come
/// through (an MCP server, the egress proxy, the sandbox).
#[derive(Clone)]
pub struct Guard {
    agent: AgentId,
    session: SessionId,
    policies: Arc<PolicySet>,
    journal: Journal,
    monitor: Option<Arc<Monitor>>,
    /// Whether `ask` holds the call for a human (`None`: it is refused at once).
    hold: Option<HoldOptions>,
    /// What humans approved for the rest of this session.
    grants: SessionGrants,
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
            monitor: None,
            hold: None,
            grants: SessionGrants::default(),
        }
    }

    /// The same guard, holding calls decided `ask` until a human answers (`None`: refusing
    /// them at once, for deployments where nobody watches).
    pub fn with_hold(mut self, hold: Option<HoldOptions>) -> Self {
        self.hold = hold;
        self
    }

    /// The same guard, watched by `monitor`.
    pub fn with_monitor(mut self, monitor: Option<Arc<Monitor>>) -> Self {
        self.monitor = monitor;
        self
    }

    /// The monitor, if any.
    pub fn monitor(&self) -> Option<&Arc<Monitor>> {
        self.monitor.as_ref()
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
        self.check_noting(action, Map::new()).await
    }

    /// [`Guard::check`], with facts about where the action came from (a process id, its
    /// parent) recorded beside its arguments. Policy does not see them.
    ///
    /// A decision of `ask` holds the call until a human answers (see [`Guard::with_hold`]);
    /// the verdict is then the answer's: allowed, with the `ask` record as its `seq`, only
    /// once an approval is durable in the journal.
    pub async fn check_noting(&self, action: &Action, notes: Map<String, Value>) -> Verdict {
        self.check_withdrawable(action, notes, std::future::pending::<Withdrawal>(), || {})
            .await
    }

    /// [`Guard::check_noting`] for a call that may be withdrawn: if `withdrawn` resolves (the
    /// agent cancelled it, or its session ended) while the call is held for a human, the hold
    /// ends, the request is closed in the journal as `withdrawn` by whoever withdrew it, and
    /// the verdict says so. `on_hold` is called
    /// when the hold begins, so the caller can stop keeping the agent's other messages
    /// waiting behind this one.
    pub async fn check_withdrawable(
        &self,
        action: &Action,
        notes: Map<String, Value>,
        withdrawn: impl Future<Output = Withdrawal>,
        on_hold: impl FnOnce(),
    ) -> Verdict {
        let started = std::time::Instant::now();
        let verdict = self.decide_noting(action, notes).await;
        crate::metrics::decision(verdict.decision.effect, verdict.action, started.elapsed());
        if verdict.decision.effect != Effect::Ask {
            return verdict;
        }
        match (verdict.seq, self.hold) {
            (Some(seq), Some(hold)) => {
                on_hold();
                self.hold_for_answer(verdict, seq, hold, withdrawn).await
            }
            _ => verdict,
        }
    }

    /// A policy's `ask`, turned into an allow when a human approved the same action on the
    /// same target for this session.
    fn unless_granted(&self, action: &Action, decision: Decision) -> Decision {
        if decision.effect != Effect::Ask {
            return decision;
        }
        match self.grants.covering(action.kind(), &action.target()) {
            Some(note) => Decision {
                effect: Effect::Allow,
                policies: decision.policies,
                reason: note,
            },
            None => decision,
        }
    }

    /// Holds the call decided `ask` in record `seq` until the first answer, and returns the
    /// verdict that answer makes.
    async fn hold_for_answer(
        &self,
        mut verdict: Verdict,
        seq: u64,
        hold: HoldOptions,
        withdrawn: impl Future<Output = Withdrawal>,
    ) -> Verdict {
        let expires_ms =
            now_ms().saturating_add(i64::try_from(hold.timeout.as_millis()).unwrap_or(i64::MAX));
        let answered = match self
            .record(EventBody::ApprovalRequested {
                decision_seq: seq,
                expires_ms,
            })
            .await
        {
            Ok(requested) => {
                let closing_record = async |answer: ApprovalAnswer, by: String, reason: String| {
                    self.record(EventBody::ApprovalAnswered {
                        decision_seq: seq,
                        answer,
                        by,
                        reason,
                    })
                    .await
                };
                approval::wait_for_answer(
                    &self.journal,
                    seq,
                    requested,
                    hold.timeout,
                    withdrawn,
                    closing_record,
                )
                .await
            }
            Err(err) => Err(err),
        };
        let answered = match answered {
            Ok(Waited {
                withdrawn: Some(w), ..
            }) => {
                verdict.decision = Decision::refuse(if w.by == "agent" {
                    format!(
                        "the agent cancelled this call while it waited for a human ({})",
                        w.reason
                    )
                } else {
                    format!(
                        "this call was withdrawn while it waited for a human: {}",
                        w.reason
                    )
                });
                verdict.grounds = Grounds::Approval;
                verdict.withdrawn = Some(w.reason);
                return verdict;
            }
            Ok(waited) => waited.answered,
            Err(err) => {
                verdict.decision = Decision::refuse(format!(
                    "this call needed a human's approval, which could not be asked for or \
                     read ({err}); Warden refuses what it cannot record"
                ));
                verdict.grounds = Grounds::Unavailable;
                return verdict;
            }
        };
        crate::metrics::approval(answered.answer.as_str());
        let who = answered
            .by
            .strip_prefix("operator:")
            .unwrap_or(&answered.by);
        verdict.grounds = Grounds::Approval;
        verdict.decision = match answered.answer {
            ApprovalAnswer::Approve | ApprovalAnswer::ApproveSession => {
                if answered.answer == ApprovalAnswer::ApproveSession {
                    self.grants.grant(
                        verdict.action,
                        verdict.target.clone(),
                        format!(
                            "approved for this session by {who} (record {}): {}",
                            answered.seq, answered.reason
                        ),
                    );
                }
                Decision {
                    effect: Effect::Allow,
                    policies: verdict.decision.policies,
                    reason: format!("approved by {who}: {}", answered.reason),
                }
            }
            ApprovalAnswer::Deny => Decision::refuse(format!(
                "a human refused this call ({who}: {})",
                answered.reason
            )),
            ApprovalAnswer::Timeout | ApprovalAnswer::Withdrawn => Decision::refuse(format!(
                "this call needed a human's approval and {}; it was refused",
                answered.reason
            )),
        };
        verdict
    }

    async fn decide_noting(&self, action: &Action, notes: Map<String, Value>) -> Verdict {
        let mut arguments = action_arguments(action).into_owned();
        arguments.extend(notes);
        let Some(monitor) = &self.monitor else {
            let decision = self.unless_granted(action, self.policies.decide(&self.agent, action));
            return self
                .record_decision(
                    action.kind(),
                    action.target(),
                    &arguments,
                    decision,
                    Grounds::Policy,
                )
                .await
                .0;
        };
        if let Some(q) = monitor.quarantined(&self.agent) {
            // A restriction beats every permit; the detectors (or a human) have spoken.
            let restricted = match q.level {
                Level::Quarantine => Some((
                    Decision::refuse(quarantined_reason(&q)),
                    Grounds::Quarantine,
                )),
                Level::Ask => Some((
                    self.unless_granted(
                        action,
                        Decision {
                            effect: Effect::Ask,
                            policies: Vec::new(),
                            reason: format!(
                                "every action of agent \"{}\" needs a human's approval ({}: {})",
                                q.agent, q.by, q.reason
                            ),
                        },
                    ),
                    Grounds::Quarantine,
                )),
                Level::Throttle if !monitor.admit_throttled(&self.agent) => Some((
                    Decision::refuse(format!(
                        "agent \"{}\" is throttled to one action per second ({}: {}); \
                         slow down",
                        q.agent, q.by, q.reason
                    )),
                    Grounds::Throttle,
                )),
                Level::Throttle => None,
            };
            if let Some((decision, grounds)) = restricted {
                return self
                    .record_decision(
                        action.kind(),
                        action.target(),
                        &arguments,
                        decision,
                        grounds,
                    )
                    .await
                    .0;
            }
        }
        let veto = monitor.veto(&self.agent, &self.session, action);
        let (decision, grounds) = match &veto {
            Some(raised) => (
                Decision::refuse(raised.alert.summary.clone()),
                Grounds::Detector,
            ),
            None => {
                // What the session has read is part of the request: a policy can forbid the
                // flow itself (`context.taint`).
                let taint = monitor.taint(&self.session);
                let decided = self.policies.decide_tainted(&self.agent, action, &taint);
                (self.unless_granted(action, decided), Grounds::Policy)
            }
        };
        let (verdict, event) = self
            .record_decision(
                action.kind(),
                action.target(),
                &arguments,
                decision,
                grounds,
            )
            .await;
        if let Some(seq) = verdict.seq {
            let mut raised = monitor.observe(&Observation {
                seq,
                event: &event,
                action: Some(action),
            });
            if let Some(mut v) = veto {
                v.alert.evidence.push(seq);
                raised.insert(0, v);
            }
            self.respond(monitor, raised);
        }
        verdict
    }

    /// Carries out what the playbook says about each alert: quarantine first (in force before
    /// anything is written), then the journal records, queued so the caller does not wait.
    fn respond(&self, monitor: &Monitor, raised: Vec<Raised>) {
        for Raised { alert, responses } in raised {
            crate::metrics::alert(alert.detector, alert.severity.as_str());
            if responses.contains(&Response::Log) {
                tracing::warn!(
                    agent = %alert.agent, detector = alert.detector,
                    severity = alert.severity.as_str(), "alert: {}", alert.summary
                );
            }
            if responses.contains(&Response::Webhook)
                && let Some(url) = monitor.webhook()
            {
                post_alert(url.to_owned(), &alert);
            }
            let mut records = vec![EventBody::Alert {
                detector: alert.detector.to_owned(),
                severity: alert.severity,
                summary: alert.summary.clone(),
                evidence: alert.evidence.clone(),
            }];
            // The strongest restriction the playbook orders.
            if let Some(level) = responses.iter().filter_map(|r| r.level()).max() {
                let entry = QuarantineEntry {
                    agent: alert.agent.clone(),
                    level,
                    reason: alert.summary.clone(),
                    by: format!("detector:{}", alert.detector),
                    since_ms: now_ms(),
                    evidence: alert.evidence.clone(),
                };
                match monitor.quarantine_now(entry) {
                    Ok(true) => {
                        crate::metrics::quarantine(level.as_str());
                        records.push(EventBody::Quarantined {
                            level: level.as_str().to_owned(),
                            reason: alert.summary.clone(),
                            by: format!("detector:{}", alert.detector),
                            evidence: alert.evidence.clone(),
                        });
                    }
                    Ok(false) => {}
                    Err(err) => tracing::error!(
                        %err, agent = %alert.agent,
                        "the quarantine is in force in this process but could not be written"
                    ),
                }
            }
            for body in records {
                let event = Event {
                    time_ms: now_ms(),
                    agent: alert.agent.clone(),
                    session: alert.session.clone(),
                    body,
                };
                let pending = self.journal.append_queued(&event);
                tokio::spawn(async move {
                    if let Err(err) = pending.await {
                        tracing::error!(%err, "could not journal an alert");
                    }
                });
            }
        }
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
        let (verdict, event) = self
            .record_decision(
                kind,
                target,
                arguments,
                Decision::refuse(why),
                Grounds::Undecidable,
            )
            .await;
        if let (Some(monitor), Some(seq)) = (&self.monitor, verdict.seq) {
            let raised = monitor.observe(&Observation {
                seq,
                event: &event,
                action: None,
            });
            self.respond(monitor, raised);
        }
        verdict
    }

    async fn record_decision(
        &self,
        action: ActionKind,
        target: String,
        arguments: &Map<String, Value>,
        decision: Decision,
        grounds: Grounds,
    ) -> (Verdict, Event) {
        let event = self.event(EventBody::Decision {
            action,
            target: target.clone(),
            args_digest: digest_object(arguments),
            args: redact_object(arguments),
            effect: decision.effect,
            policies: decision.policies.clone(),
            reason: decision.reason.clone(),
        });
        let appended = std::time::Instant::now();
        let committed = self.journal.append(&event).await;
        crate::metrics::journal_commit(appended.elapsed());
        let verdict = match committed {
            Ok(seq) => Verdict {
                decision,
                seq: Some(seq),
                target,
                action,
                withdrawn: None,
                grounds,
            },
            Err(err) => Verdict {
                decision: Decision::refuse(format!(
                    "the journal could not record this action ({err}); \
                     Warden refuses what it cannot record"
                )),
                seq: None,
                target,
                action,
                withdrawn: None,
                grounds: Grounds::Unavailable,
            },
        };
        (verdict, event)
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
        // Not waited for: the answer must not wait for its outcome record.
        let event = self.event(EventBody::Outcome {
            decision_seq,
            outcome,
            detail: detail.into(),
            labels,
        });
        // Detectors see what the agent read before the agent does, so the taint of a secret
        // is in force for its very next action. The outcome's own seq is not known yet: the
        // evidence is the decision it completes.
        if let Some(monitor) = &self.monitor {
            let raised = monitor.observe(&Observation {
                seq: decision_seq,
                event: &event,
                action: None,
            });
            self.respond(monitor, raised);
        }
        // Deferred: it rides along with the next decision's commit rather than costing one.
        if let Err(err) = self.journal.append_deferred(&event) {
            tracing::error!(decision_seq, %err, "could not journal the outcome of a call");
        }
    }

    /// Appends a session lifecycle record and waits until it is durable; detectors see it
    /// (a run's declared scope, for one).
    pub async fn record(&self, body: EventBody) -> Result<u64, warden_journal::JournalError> {
        let event = self.event(body);
        let seq = self.journal.append(&event).await?;
        if let Some(monitor) = &self.monitor {
            let raised = monitor.observe(&Observation {
                seq,
                event: &event,
                action: None,
            });
            self.respond(monitor, raised);
        }
        Ok(seq)
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

/// POSTs `alert` as JSON to `url`, in the background: a slow or failing receiver never holds
/// up an action. Failures are logged (the alert is in the journal either way).
fn post_alert(url: String, alert: &warden_monitor::Alert) {
    static CLIENT: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    let Some(client) = CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .ok()
        })
        .clone()
    else {
        tracing::error!("no HTTP client for webhooks");
        return;
    };
    let body = serde_json::json!({
        "detector": alert.detector,
        "severity": alert.severity.as_str(),
        "agent": alert.agent.as_str(),
        "session": alert.session.as_str(),
        "summary": alert.summary,
        "evidence": alert.evidence,
        "time_ms": now_ms(),
    });
    tokio::spawn(async move {
        let request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string());
        match request.send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(status = %r.status(), %url, "the alert webhook refused the alert")
            }
            Err(err) => tracing::warn!(%err, %url, "could not post an alert to the webhook"),
        }
    });
}

/// What a quarantined agent is told.
fn quarantined_reason(q: &QuarantineEntry) -> String {
    format!(
        "agent \"{}\" is quarantined ({}: {}); only a human can release it: \
         warden release {} --reason \"…\"",
        q.agent, q.by, q.reason, q.agent
    )
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
