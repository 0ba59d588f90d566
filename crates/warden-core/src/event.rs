//! What the journal records. The journal adds sequence numbers and the hash chain; this is the
//! content those protect.

use serde::{Deserialize, Serialize};

use crate::action::ActionKind;
use crate::decision::Effect;
use crate::ids::{AgentId, SessionId};

/// One thing that happened, attributed to an agent and a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch, when Warden observed it.
    pub time_ms: i64,
    /// The agent.
    pub agent: AgentId,
    /// The session.
    pub session: SessionId,
    /// What happened.
    pub body: EventBody,
}

/// The kinds of event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventBody {
    /// A decision, written before the action may take effect.
    Decision {
        /// The verb.
        action: ActionKind,
        /// The target (`server/tool`).
        target: String,
        /// SHA-256 of the canonical JSON of the arguments as sent.
        args_digest: String,
        /// The arguments with secrets redacted.
        args: serde_json::Value,
        /// Allow, deny or ask.
        effect: Effect,
        /// The deciding policies.
        policies: Vec<String>,
        /// The reason given.
        reason: String,
    },
    /// What became of an allowed action, appended after the effect.
    Outcome {
        /// Sequence number of the decision record this completes.
        decision_seq: u64,
        /// How it ended.
        outcome: Outcome,
        /// A short human-readable detail (an error message, an exit status).
        detail: String,
        /// What the response scanner found in the result the agent received, e.g.
        /// "private-key" (see `scan`). Absent from records written before it existed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        labels: Vec<String>,
    },
    /// A session began: the gateway started serving an agent.
    SessionStarted {
        /// The upstream server's operator-chosen name.
        server: String,
        /// Warden's version.
        warden_version: String,
        /// The session this one was opened from: for an MCP session of a contained agent,
        /// the `warden run` session of its sandbox.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<SessionId>,
    },
    /// A session ended.
    SessionEnded {
        /// Why it ended.
        detail: String,
    },
    /// An operator changed an agent's credentials (`warden agent add|revoke`); the event's
    /// agent is the one changed.
    AgentChanged {
        /// `"added"`, `"rotated"` or `"revoked"`.
        change: String,
    },
    /// A request was refused before any policy saw it: no valid token (the event's agent is
    /// then `unauthenticated`), a revoked token, or a session that is not the agent's.
    AccessRefused {
        /// Why, as told to the client. Never contains the token.
        reason: String,
        /// The peer's address as the gateway saw it.
        remote: String,
    },
    /// `warden run` started an agent in a sandbox.
    SandboxStarted {
        /// The program and its arguments.
        command: Vec<String>,
        /// The containment layers in force (`warden doctor` names them).
        layers: Vec<String>,
        /// Layers the configuration requires that the operator allowed to be missing
        /// (`--allow-degraded`), with why each is missing.
        degraded: Vec<String>,
        /// Which cgroup version enforces which limit, and how a kill is done.
        cgroups: String,
        /// The task the operator declared for this run (`warden run --task`), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<String>,
        /// The scope tags the task allows (`warden run --scope`); detectors judge the run's
        /// actions against them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scope: Vec<String>,
    },
    /// The sandbox's program exited and every process of the sandbox is gone.
    SandboxEnded {
        /// How it ended (`exit status 0`, `killed by signal 9`).
        status: String,
    },
    /// The kernel held a sandbox to one of its limits: process starts refused at the process
    /// limit, or processes killed at the memory limit.
    SandboxLimit {
        /// `processes` or `memory`.
        limit: String,
        /// The limit (processes, or bytes of memory).
        max: u64,
        /// How many times it was reached since the last such record (refused forks, or
        /// processes killed).
        times: u64,
    },
    /// Every process of a sandbox was killed at once (`warden kill`).
    SandboxKilled {
        /// Who or what asked (`operator`, a detector).
        by: String,
        /// Processes alive when the kill began.
        processes: u64,
        /// Microseconds from the kill until the last process was gone.
        elapsed_us: u64,
        /// How (`cgroup v2 cgroup.kill`, `cgroup v1 freezer`).
        method: String,
        /// Why, when an operator gave a reason.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// A detector saw the agent leave its task; the event's session is where it happened.
    Alert {
        /// The detector (`denial_burst`, `runaway`, …).
        detector: String,
        /// How bad.
        severity: Severity,
        /// What it saw, for a human.
        summary: String,
        /// The journal records that are its evidence.
        evidence: Vec<u64>,
    },
    /// The agent was quarantined — every further action of it refused — or held to a lesser
    /// restriction (`level`), until a human releases it.
    Quarantined {
        /// `quarantine`, `ask` (every action needs approval) or `throttle` (one per second).
        #[serde(default = "quarantine_level")]
        level: String,
        /// Why (the alert's summary, or the operator's reason).
        reason: String,
        /// Who: a detector (`detector:denial_burst`) or `operator`.
        by: String,
        /// The journal records that led to it.
        evidence: Vec<u64>,
    },
    /// A human released a quarantined agent.
    Released {
        /// Who released it.
        by: String,
        /// Why, as the human gave it.
        reason: String,
    },
    /// A call decided `ask` is held until a human answers or the time runs out; the event's
    /// session is the held call's.
    ApprovalRequested {
        /// The `ask` decision record of the held call.
        decision_seq: u64,
        /// When an unanswered request is denied, in milliseconds since the Unix epoch.
        expires_ms: i64,
    },
    /// A held call was answered. The first answer journaled for a request is the one in force.
    ApprovalAnswered {
        /// The `ask` decision record of the held call.
        decision_seq: u64,
        /// The answer.
        answer: ApprovalAnswer,
        /// Who answered (`operator:NAME`, or `timeout`).
        by: String,
        /// Why, as the human gave it.
        reason: String,
    },
}

/// A human's answer to a held call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalAnswer {
    /// This call may go ahead.
    Approve,
    /// This call, and every later call of the same action on the same target in the same
    /// session, may go ahead.
    ApproveSession,
    /// Refused.
    Deny,
    /// Nobody answered in time: refused.
    Timeout,
    /// The agent cancelled the call while it was held: nothing to answer any more.
    Withdrawn,
}

impl ApprovalAnswer {
    /// The lowercase name used in the journal and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalAnswer::Approve => "approve",
            ApprovalAnswer::ApproveSession => "approve_session",
            ApprovalAnswer::Deny => "deny",
            ApprovalAnswer::Timeout => "timeout",
            ApprovalAnswer::Withdrawn => "withdrawn",
        }
    }

    /// Whether the call goes ahead.
    pub fn approves(self) -> bool {
        matches!(
            self,
            ApprovalAnswer::Approve | ApprovalAnswer::ApproveSession
        )
    }
}

impl std::str::FromStr for ApprovalAnswer {
    type Err = String;

    /// Parses what a human may answer (`timeout` and `withdrawn` are Warden's, not theirs).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "approve" => Ok(ApprovalAnswer::Approve),
            "approve_session" => Ok(ApprovalAnswer::ApproveSession),
            "deny" => Ok(ApprovalAnswer::Deny),
            other => Err(format!(
                "the answer is approve, approve_session or deny, not {other:?}"
            )),
        }
    }
}

fn quarantine_level() -> String {
    "quarantine".to_owned()
}

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Unusual; a human should know.
    Medium,
    /// Likely harmful.
    High,
    /// Certain harm (a canary secret leaving, an attempt on Warden itself).
    Critical,
}

impl Severity {
    /// The lowercase name used in configuration and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl EventBody {
    /// Every kind [`EventBody::kind`] returns, for checking a kind a person typed.
    pub const KINDS: [&'static str; 15] = [
        "decision",
        "outcome",
        "session_started",
        "session_ended",
        "agent_changed",
        "access_refused",
        "sandbox_started",
        "sandbox_ended",
        "sandbox_killed",
        "sandbox_limit",
        "alert",
        "quarantined",
        "released",
        "approval_requested",
        "approval_answered",
    ];

    /// The kind as stored in the journal's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Decision { .. } => "decision",
            EventBody::Outcome { .. } => "outcome",
            EventBody::SessionStarted { .. } => "session_started",
            EventBody::SessionEnded { .. } => "session_ended",
            EventBody::AgentChanged { .. } => "agent_changed",
            EventBody::AccessRefused { .. } => "access_refused",
            EventBody::SandboxStarted { .. } => "sandbox_started",
            EventBody::SandboxEnded { .. } => "sandbox_ended",
            EventBody::SandboxKilled { .. } => "sandbox_killed",
            EventBody::SandboxLimit { .. } => "sandbox_limit",
            EventBody::Alert { .. } => "alert",
            EventBody::Quarantined { .. } => "quarantined",
            EventBody::Released { .. } => "released",
            EventBody::ApprovalRequested { .. } => "approval_requested",
            EventBody::ApprovalAnswered { .. } => "approval_answered",
        }
    }
}

/// How an allowed action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream answered with a result.
    Ok,
    /// The upstream answered with a tool error (`isError: true`).
    ToolError,
    /// The upstream answered with a JSON-RPC error.
    RpcError,
    /// The agent cancelled the call.
    Cancelled,
    /// The upstream did not answer in time.
    Timeout,
    /// The upstream exited or its pipe broke before answering.
    UpstreamGone,
}

impl Outcome {
    /// The lowercase name used in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::RpcError => "rpc_error",
            Outcome::Cancelled => "cancelled",
            Outcome::Timeout => "timeout",
            Outcome::UpstreamGone => "upstream_gone",
        }
    }
}
