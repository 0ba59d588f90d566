//! Policy tests: requests with the decision an operator expects, kept next to the policies and
//! run before a policy change goes live.
//!
//! ```toml
//! [[case]]
//! name = "alice may read her notes"
//! agent = "alice"
//! tool = "files/read_file"
//! arguments = { path = "/home/alice/notes.txt" }
//! expect = "allow"
//! policies = ["alice-reads-home"]   # optional: the deciding policy ids
//! ```

use std::path::Path;

use serde::{Deserialize, Deserializer};
use warden_core::{Action, AgentId, Decision, Effect, ServerName, ToolRef};

use crate::error::{PolicyError, Position, SourceDiagnostic};
use crate::set::PolicySet;

/// One expected decision.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What the case checks, in a few words.
    pub name: String,
    /// The agent making the call.
    pub agent: AgentId,
    /// The tool, written `server/name`.
    #[serde(deserialize_with = "tool_from_id")]
    pub tool: ToolRef,
    /// The call's arguments (a table; empty when left out).
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
    /// The expected effect.
    pub expect: Effect,
    /// The expected deciding policy ids, in any order; not checked when left out.
    #[serde(default)]
    pub policies: Option<Vec<String>>,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Whether the decision was the expected one.
    pub passed: bool,
    /// The decision the policy set gave.
    pub got: Decision,
    /// The expected effect.
    pub expected: Effect,
    /// The expected deciding policies, if the case named them.
    pub expected_policies: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    #[serde(default)]
    case: Vec<TestCase>,
}

fn tool_from_id<'de, D: Deserializer<'de>>(d: D) -> Result<ToolRef, D::Error> {
    use serde::de::Error;
    let id = String::deserialize(d)?;
    // INVARIANT: server names hold no '/', so the first '/' separates server from tool.
    let (server, name) = id
        .split_once('/')
        .ok_or_else(|| D::Error::custom(format!("tool {id:?} must be written server/name")))?;
    let server = ServerName::new(server).map_err(D::Error::custom)?;
    ToolRef::new(server, name).map_err(D::Error::custom)
}

/// Reads a TOML cases file (`[[case]]` tables; unknown keys are refused).
pub fn load_cases(path: &Path) -> Result<Vec<TestCase>, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    parse_cases(&path.display().to_string(), &text)
}

/// Parses the text of a cases file; `file` names it in errors.
pub fn parse_cases(file: &str, text: &str) -> Result<Vec<TestCase>, PolicyError> {
    let parsed: CasesFile = toml::from_str(text).map_err(|e| {
        PolicyError::Cases(SourceDiagnostic {
            file: file.to_owned(),
            position: e.span().map(|s| Position::of_offset(text, s.start)),
            message: e.message().trim_end().to_owned(),
            help: None,
        })
    })?;
    if parsed.case.is_empty() {
        return Err(PolicyError::Cases(SourceDiagnostic {
            file: file.to_owned(),
            position: None,
            message: "no [[case]] tables".to_owned(),
            help: Some("add a [[case]] table with name, agent, tool and expect".to_owned()),
        }));
    }
    Ok(parsed.case)
}

/// Decides each case against `set` and compares.
pub fn run_cases(set: &PolicySet, cases: &[TestCase]) -> Vec<CaseResult> {
    cases
        .iter()
        .map(|case| {
            let action = Action::CallTool {
                tool: case.tool.clone(),
                arguments: case.arguments.clone(),
            };
            let got = set.decide(&case.agent, &action);
            let policies_match = case.policies.as_ref().is_none_or(|want| {
                let mut want = want.clone();
                let mut have = got.policies.clone();
                want.sort();
                have.sort();
                want == have
            });
            CaseResult {
                name: case.name.clone(),
                passed: got.effect == case.expect && policies_match,
                got,
                expected: case.expect,
                expected_policies: case.policies.clone(),
            }
        })
        .collect()
}
