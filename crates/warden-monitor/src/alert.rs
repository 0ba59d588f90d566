//! What a detector raises.

use warden_core::{AgentId, SessionId, Severity};

/// An agent seen leaving its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The detector that raised it.
    pub detector: &'static str,
    /// How bad.
    pub severity: Severity,
    /// The agent.
    pub agent: AgentId,
    /// The session where it happened.
    pub session: SessionId,
    /// What was seen, for a human: short, with the numbers that matter.
    pub summary: String,
    /// The journal sequence numbers that are its evidence, ascending.
    pub evidence: Vec<u64>,
}
