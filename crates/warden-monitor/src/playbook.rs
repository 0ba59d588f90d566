//! The response playbook: which alerts get which responses.
//!
//! ```toml
//! [[monitor.playbook]]
//! detector = "denial_burst"     # or "*" for every detector
//! min_severity = "high"
//! respond = ["log", "webhook", "quarantine"]   # also "throttle", "ask"
//! ```
//!
//! Every alert is journaled whatever the playbook says; the rules add responses. An alert
//! matching several rules gets each response once.

use serde::{Deserialize, Serialize};
use warden_core::Severity;

use crate::alert::Alert;

/// What Warden does about an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Write it to Warden's log (stderr) as well as the journal.
    Log,
    /// POST it as JSON to `[monitor] webhook`.
    Webhook,
    /// Hold the agent to one action per second (per Warden process) until a human releases it.
    Throttle,
    /// Make every further action of the agent need a human's approval, whatever the policies
    /// say, until a human releases it.
    Ask,
    /// Refuse every further action of the agent and of every session it runs, kill its
    /// sandboxed processes, until a human releases it.
    Quarantine,
}

impl Response {
    /// The restriction this response puts the agent under, if any.
    pub fn level(self) -> Option<crate::quarantine::Level> {
        use crate::quarantine::Level;
        match self {
            Response::Throttle => Some(Level::Throttle),
            Response::Ask => Some(Level::Ask),
            Response::Quarantine => Some(Level::Quarantine),
            Response::Log | Response::Webhook => None,
        }
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The detector's name, or `*`.
    pub detector: String,
    /// The least severity the rule applies to.
    #[serde(default = "low")]
    pub min_severity: Severity,
    /// The responses.
    pub respond: Vec<Response>,
}

fn low() -> Severity {
    Severity::Low
}

/// The rules, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Playbook {
    rules: Vec<Rule>,
}

impl Playbook {
    /// A playbook of these rules.
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// Warden's default: log every alert; quarantine on a critical one.
    pub fn default_rules() -> Self {
        Self::new(vec![
            Rule {
                detector: "*".into(),
                min_severity: Severity::Low,
                respond: vec![Response::Log],
            },
            Rule {
                detector: "*".into(),
                min_severity: Severity::Critical,
                respond: vec![Response::Quarantine],
            },
        ])
    }

    /// The responses to `alert`, each once, in rule order.
    pub fn responses(&self, alert: &Alert) -> Vec<Response> {
        let mut out = Vec::new();
        for rule in &self.rules {
            if (rule.detector == "*" || rule.detector == alert.detector)
                && alert.severity >= rule.min_severity
            {
                for r in &rule.respond {
                    if !out.contains(r) {
                        out.push(*r);
                    }
                }
            }
        }
        out
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether some rule answers with `response`.
    pub fn uses(&self, response: Response) -> bool {
        self.rules.iter().any(|r| r.respond.contains(&response))
    }

    /// The detector names the rules mention (besides `*`), to check against those configured.
    pub fn detectors(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .map(|r| r.detector.as_str())
            .filter(|d| *d != "*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::{AgentId, SessionId};

    fn alert(detector: &'static str, severity: Severity) -> Alert {
        Alert {
            detector,
            severity,
            agent: AgentId::new("a").unwrap(),
            session: SessionId::from_raw("s"),
            summary: String::new(),
            evidence: vec![1],
        }
    }

    #[test]
    fn rules_match_by_detector_and_least_severity() {
        let book = Playbook::new(vec![
            Rule {
                detector: "denial_burst".into(),
                min_severity: Severity::High,
                respond: vec![Response::Quarantine],
            },
            Rule {
                detector: "*".into(),
                min_severity: Severity::Low,
                respond: vec![Response::Log],
            },
        ]);
        assert_eq!(
            book.responses(&alert("denial_burst", Severity::High)),
            [Response::Quarantine, Response::Log]
        );
        assert_eq!(
            book.responses(&alert("denial_burst", Severity::Medium)),
            [Response::Log]
        );
        assert_eq!(
            book.responses(&alert("runaway", Severity::Critical)),
            [Response::Log]
        );
        assert_eq!(book.detectors().collect::<Vec<_>>(), ["denial_burst"]);
        assert_eq!(
            Playbook::default_rules().responses(&alert("x", Severity::Critical)),
            [Response::Log, Response::Quarantine]
        );
    }
}
