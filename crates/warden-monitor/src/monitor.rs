//! The monitor: the configured detectors, the playbook, and the quarantine list.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use warden_core::AgentId;

use crate::alert::Alert;
use crate::detector::{Detector, Observation};
use crate::playbook::{Playbook, Response};
use crate::quarantine::{Quarantine, QuarantineEntry, QuarantineError};

/// Called when an agent is quarantined, with its entry (a sandbox kills its processes, the
/// HTTP gateway revokes its token).
pub type QuarantineHook = Box<dyn Fn(&QuarantineEntry) + Send + Sync>;

/// Detectors, playbook and quarantine, shared by every gateway of one process.
pub struct Monitor {
    detectors: Vec<Box<dyn Detector>>,
    playbook: Playbook,
    quarantine: Arc<Quarantine>,
    hooks: RwLock<Vec<QuarantineHook>>,
    webhook: Option<String>,
    /// When each throttled agent may act next, in this process.
    throttled: Mutex<HashMap<AgentId, Instant>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field(
                "detectors",
                &self.detectors.iter().map(|d| d.name()).collect::<Vec<_>>(),
            )
            .field("playbook", &self.playbook)
            .field("quarantine", &self.quarantine)
            .finish_non_exhaustive()
    }
}

/// An alert with what the playbook says to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    /// The alert.
    pub alert: Alert,
    /// The playbook's responses.
    pub responses: Vec<Response>,
}

impl Monitor {
    /// A monitor running `detectors`, answering alerts by `playbook`.
    pub fn new(
        detectors: Vec<Box<dyn Detector>>,
        playbook: Playbook,
        quarantine: Arc<Quarantine>,
    ) -> Self {
        Self {
            detectors,
            playbook,
            quarantine,
            hooks: RwLock::new(Vec::new()),
            webhook: None,
            throttled: Mutex::new(HashMap::new()),
        }
    }

    /// For a throttled agent: whether it may act now (one action per second, in this
    /// process). Each admitted action pushes the next slot a second later.
    pub fn admit_throttled(&self, agent: &AgentId) -> bool {
        let now = Instant::now();
        let mut next = self
            .throttled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if next.len() > 10_000 {
            next.retain(|_, at| *at > now);
        }
        match next.get(agent) {
            Some(at) if *at > now => false,
            _ => {
                next.insert(agent.clone(), now + std::time::Duration::from_secs(1));
                true
            }
        }
    }

    /// The same monitor, posting alerts the playbook sends to a webhook to `url`.
    pub fn with_webhook(mut self, url: Option<String>) -> Self {
        self.webhook = url;
        self
    }

    /// Where `webhook` responses go, if configured.
    pub fn webhook(&self) -> Option<&str> {
        self.webhook.as_deref()
    }

    /// The names of the detectors running, in the order they see each record.
    pub fn detector_names(&self) -> Vec<&'static str> {
        self.detectors.iter().map(|d| d.name()).collect()
    }

    /// The playbook.
    pub fn playbook(&self) -> &Playbook {
        &self.playbook
    }

    /// Whether the playbook ever answers with `response`.
    pub fn playbook_uses(&self, response: Response) -> bool {
        self.playbook.uses(response)
    }

    /// The quarantine list.
    pub fn quarantine(&self) -> &Arc<Quarantine> {
        &self.quarantine
    }

    /// The agent's quarantine, if it is quarantined.
    pub fn quarantined(&self, agent: &AgentId) -> Option<QuarantineEntry> {
        self.quarantine.get(agent)
    }

    /// Runs every detector on one journaled record; returns the alerts with their responses.
    pub fn observe(&self, observation: &Observation<'_>) -> Vec<Raised> {
        let mut alerts = Vec::new();
        for d in &self.detectors {
            d.observe(observation, &mut alerts);
        }
        alerts
            .into_iter()
            .map(|alert| Raised {
                responses: self.playbook.responses(&alert),
                alert,
            })
            .collect()
    }

    /// The first veto of any detector on `action`, before it is decided.
    pub fn veto(
        &self,
        agent: &AgentId,
        session: &warden_core::SessionId,
        action: &warden_core::Action,
    ) -> Option<Raised> {
        self.detectors
            .iter()
            .find_map(|d| d.veto(agent, session, action))
            .map(|alert| Raised {
                responses: self.playbook.responses(&alert),
                alert,
            })
    }

    /// The session's taint: every detector's labels, sorted, without repeats.
    pub fn taint(&self, session: &warden_core::SessionId) -> Vec<String> {
        let mut labels: Vec<String> = self
            .detectors
            .iter()
            .flat_map(|d| d.taint(session))
            .collect();
        labels.sort_unstable();
        labels.dedup();
        labels
    }

    /// Registers a hook run on every new quarantine this process puts in force.
    pub fn on_quarantine(&self, hook: QuarantineHook) {
        self.hooks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }

    /// Restricts the entry's agent to its level and, for a quarantine, runs the hooks;
    /// `Ok(false)` if it already was at that level or a stronger one.
    pub fn quarantine_now(&self, entry: QuarantineEntry) -> Result<bool, QuarantineError> {
        let added = self.quarantine.add(entry.clone())?;
        if added && entry.level == crate::quarantine::Level::Quarantine {
            for hook in self
                .hooks
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
            {
                hook(&entry);
            }
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::Playbook;

    #[test]
    fn a_throttled_agent_gets_one_action_per_second_others_are_untouched() {
        let m = Monitor::new(
            Vec::new(),
            Playbook::default_rules(),
            Arc::new(Quarantine::in_memory()),
        );
        let slow = AgentId::new("slow").unwrap();
        let other = AgentId::new("other").unwrap();
        // Back to back, well within a second of each other.
        assert!(m.admit_throttled(&slow));
        assert!(!m.admit_throttled(&slow));
        assert!(m.admit_throttled(&other));
    }
}
