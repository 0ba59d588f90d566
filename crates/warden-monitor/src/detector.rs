//! The contract every detector keeps.

use warden_core::{Action, AgentId, Event, SessionId};

use crate::alert::Alert;

/// One journaled record, as detectors see it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Its sequence number in the journal: what alerts cite as evidence. An outcome is shown
    /// before its own record is committed (so that what the agent read counts before its next
    /// action); it carries the seq of the decision it completes.
    pub seq: u64,
    /// The record.
    pub event: &'a Event,
    /// For a decision, the action as the agent attempted it, before redaction (the journal
    /// keeps a redacted copy); `None` for other records.
    pub action: Option<&'a Action>,
}

/// A detector: state per agent (or per session), updated by each observation.
///
/// INVARIANT: `observe` is cheap (no I/O, no allocation on the common path, bounded state per
/// agent), because it runs on the action's path, right after the journal made the record
/// durable and before the next action is decided.
pub trait Detector: Send + Sync {
    /// The name alerts carry and configuration uses (`denial_burst`).
    fn name(&self) -> &'static str;

    /// Looks at one record; pushes an alert to `alerts` when it sees one.
    fn observe(&self, observation: &Observation<'_>, alerts: &mut Vec<Alert>);

    /// Looks at an action before it is decided, for what must be refused at once whatever the
    /// policy says (a canary secret leaving). The alert returned is raised and the action
    /// refused with its summary. Most detectors only observe.
    fn veto(&self, _agent: &AgentId, _session: &SessionId, _action: &Action) -> Option<Alert> {
        None
    }

    /// The session's taint labels this detector tracks (`secret:private-key`), which Warden
    /// puts in the policy context as `context.taint`. Most detectors track none.
    fn taint(&self, _session: &SessionId) -> Vec<String> {
        Vec::new()
    }
}
