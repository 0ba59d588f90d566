//! The answer to an action.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What happens to an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The action goes ahead.
    Allow,
    /// The action is refused.
    Deny,
    /// A human must approve the action first. Until approvals exist, it is refused.
    Ask,
}

impl Effect {
    /// The lowercase name used in the journal and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
            Effect::Ask => "ask",
        }
    }

    /// Whether the action may take effect now.
    pub fn permits(self) -> bool {
        self == Effect::Allow
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Effect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Effect::Allow),
            "deny" => Ok(Effect::Deny),
            "ask" => Ok(Effect::Ask),
            other => Err(format!(
                "unknown decision {other:?} (expected allow, deny or ask)"
            )),
        }
    }
}

/// A decision with its grounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Allow, deny or ask.
    pub effect: Effect,
    /// Ids of the policies that decided it; empty when nothing permitted the action (default deny).
    pub policies: Vec<String>,
    /// A sentence the agent and a human can read.
    pub reason: String,
}

impl Decision {
    /// A refusal that no policy produced (bad input, an unavailable journal, an evaluation error).
    pub fn refuse(reason: impl Into<String>) -> Self {
        Self {
            effect: Effect::Deny,
            policies: Vec::new(),
            reason: reason.into(),
        }
    }
}
