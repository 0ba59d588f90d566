//! The ways this server can break the protocol on purpose, to test what sits in front of it.

use std::fmt;
use std::str::FromStr;

/// A deliberate protocol failure, chosen with `--misbehave MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// `hang-on-initialize`: never answers `initialize` (everything else is served).
    HangOnInitialize,
    /// `crash-on-call`: exits with status 3 on any `tools/call`.
    CrashOnCall,
    /// `garbage`: answers every `tools/call` with a line that is not JSON.
    Garbage,
    /// `never-answer-calls`: never answers `tools/call`.
    NeverAnswerCalls,
    /// `huge-result`: answers every `tools/call` with a result whose text is 8 MiB.
    HugeResult,
}

/// The size of the text in a `huge-result` answer.
pub const HUGE_RESULT_BYTES: usize = 8 * 1024 * 1024;

/// The line a `garbage` server writes instead of a response.
pub const GARBAGE_LINE: &str = "}}this is not JSON-RPC{{";

impl Misbehaviour {
    /// Every mode, in the order `--help` lists them.
    pub const ALL: [Self; 5] = [
        Self::HangOnInitialize,
        Self::CrashOnCall,
        Self::Garbage,
        Self::NeverAnswerCalls,
        Self::HugeResult,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::HangOnInitialize => "hang-on-initialize",
            Self::CrashOnCall => "crash-on-call",
            Self::Garbage => "garbage",
            Self::NeverAnswerCalls => "never-answer-calls",
            Self::HugeResult => "huge-result",
        }
    }
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--misbehave` value that names no mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown misbehave mode {given:?}")]
pub struct MisbehaviourParseError {
    /// The value given.
    pub given: String,
}

impl FromStr for Misbehaviour {
    type Err = MisbehaviourParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.name() == s)
            .ok_or_else(|| MisbehaviourParseError {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for mode in Misbehaviour::ALL {
            assert_eq!(mode.name().parse::<Misbehaviour>(), Ok(mode));
        }
        assert!("explode".parse::<Misbehaviour>().is_err());
    }
}
