//! Policy tests: requests with the decision an operator expects, kept next to the policies and
//! run before a policy change goes live.
//!
//! ```toml
//! [[case]]
//! name = "alice may read her notes"
//! agent = "alice"
//! tool = "files/read_file"            # action = "call_tool" when no action is named
//! arguments = { path = "/home/alice/notes.txt" }
//! expect = "allow"
//! policies = ["alice-reads-home"]     # optional: the deciding policy ids
//!
//! [[case]]
//! name = "alice may read the handbook resource"
//! agent = "alice"
//! action = "read_resource"
//! resource = "files/file:///docs/handbook.md"
//! expect = "allow"
//! ```
//!
//! Each action takes its own keys: `call_tool` takes `tool` (and `arguments`),
//! `read_resource` takes `resource`, `get_prompt` takes `prompt` (and `arguments`),
//! `complete` takes `prompt` or `resource` with `argument` (and `value`), `sample`,
//! `elicit` and `list_roots` take `server`, the server asking `agent`; `http_request` takes
//! `host` and `port` (and `method`, default `GET`, and `path`), `connect` takes `host` and
//! `port`, and `exec` takes `program` (and `argv`, default the program's name).

use std::path::Path;

use serde::{Deserialize, Deserializer};
use warden_core::{
    Action, ActionKind, AgentId, CompletionRef, Decision, Effect, HostRef, ProgramRef, PromptRef,
    ResourceRef, ServerName, ToolRef,
};

use crate::error::{PolicyError, Position, SourceDiagnostic};
use crate::set::PolicySet;

/// One expected decision.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawCase")]
pub struct TestCase {
    /// What the case checks, in a few words.
    pub name: String,
    /// The agent making the request, or for `sample`, `elicit` and `list_roots` the agent the
    /// server's request would reach.
    pub agent: AgentId,
    /// The action, with its target and context.
    pub action: Action,
    /// The expected effect.
    pub expect: Effect,
    /// The expected deciding policy ids, in any order; not checked when left out.
    pub policies: Option<Vec<String>>,
    /// The session's taint labels (`context.taint`); none when left out.
    pub taint: Vec<String>,
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

/// A `[[case]]` table as written, before its keys are checked against its action.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    agent: AgentId,
    #[serde(default)]
    action: Option<ActionKind>,
    // The targets are checked as they are read, so a malformed one is reported at its key.
    #[serde(default, deserialize_with = "checked::<_, ToolRef>")]
    tool: Option<ToolRef>,
    #[serde(default, deserialize_with = "checked::<_, ResourceRef>")]
    resource: Option<ResourceRef>,
    #[serde(default, deserialize_with = "checked::<_, PromptRef>")]
    prompt: Option<PromptRef>,
    #[serde(default)]
    server: Option<ServerName>,
    #[serde(default)]
    arguments: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    argument: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    host: Option<HostRef>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    program: Option<ProgramRef>,
    #[serde(default)]
    argv: Option<Vec<String>>,
    #[serde(default)]
    taint: Vec<String>,
    expect: Effect,
    #[serde(default)]
    policies: Option<Vec<String>>,
}

impl TryFrom<RawCase> for TestCase {
    type Error = String;

    fn try_from(raw: RawCase) -> Result<Self, String> {
        let kind = raw.action.unwrap_or(ActionKind::CallTool);
        // Every target and context key, with whether this action takes it.
        let takes = |key: &str| match key {
            "tool" => kind == ActionKind::CallTool,
            "resource" => matches!(kind, ActionKind::ReadResource | ActionKind::Complete),
            "prompt" => matches!(kind, ActionKind::GetPrompt | ActionKind::Complete),
            "server" => kind.is_server_initiated(),
            "arguments" => matches!(kind, ActionKind::CallTool | ActionKind::GetPrompt),
            "argument" | "value" => kind == ActionKind::Complete,
            "host" | "port" => matches!(kind, ActionKind::HttpRequest | ActionKind::Connect),
            "method" | "path" => kind == ActionKind::HttpRequest,
            "program" | "argv" => kind == ActionKind::Exec,
            _ => false,
        };
        let given = [
            ("tool", raw.tool.is_some()),
            ("resource", raw.resource.is_some()),
            ("prompt", raw.prompt.is_some()),
            ("server", raw.server.is_some()),
            ("arguments", raw.arguments.is_some()),
            ("argument", raw.argument.is_some()),
            ("value", raw.value.is_some()),
            ("host", raw.host.is_some()),
            ("port", raw.port.is_some()),
            ("method", raw.method.is_some()),
            ("path", raw.path.is_some()),
            ("program", raw.program.is_some()),
            ("argv", raw.argv.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(key, set)| *set && !takes(key)) {
            return Err(format!("`{key}` does not apply to action {kind}"));
        }
        fn need<T>(v: Option<T>, kind: ActionKind, key: &str, form: &str) -> Result<T, String> {
            v.ok_or_else(|| format!("action {kind} needs `{key} = \"{form}\"`"))
        }
        let arguments = raw.arguments.unwrap_or_default();
        let action = match kind {
            ActionKind::CallTool => Action::CallTool {
                tool: need(raw.tool, kind, "tool", "server/name")?,
                arguments,
            },
            ActionKind::ReadResource => Action::ReadResource {
                resource: need(raw.resource, kind, "resource", "server/uri")?,
            },
            ActionKind::GetPrompt => Action::GetPrompt {
                prompt: need(raw.prompt, kind, "prompt", "server/name")?,
                arguments,
            },
            ActionKind::Complete => {
                let target = match (raw.prompt, raw.resource) {
                    (Some(p), None) => CompletionRef::Prompt(p),
                    (None, Some(r)) => CompletionRef::Resource(r),
                    _ => {
                        return Err(
                            "action complete needs exactly one of `prompt` and `resource`"
                                .to_owned(),
                        );
                    }
                };
                Action::Complete {
                    target,
                    argument: need(raw.argument, kind, "argument", "name")?,
                    value: raw.value.unwrap_or_default(),
                }
            }
            ActionKind::Sample | ActionKind::Elicit | ActionKind::ListRoots => {
                let server = raw
                    .server
                    .ok_or_else(|| format!("action {kind} needs `server`, the server asking"))?;
                match kind {
                    ActionKind::Sample => Action::Sample { server },
                    ActionKind::Elicit => Action::Elicit { server },
                    _ => Action::ListRoots { server },
                }
            }
            ActionKind::HttpRequest => Action::HttpRequest {
                host: need(raw.host, kind, "host", "name")?,
                port: raw
                    .port
                    .ok_or_else(|| format!("action {kind} needs `port = 443`"))?,
                method: raw.method.unwrap_or_else(|| "GET".to_owned()),
                path: raw.path,
            },
            ActionKind::Connect => Action::Connect {
                host: need(raw.host, kind, "host", "address")?,
                port: raw
                    .port
                    .ok_or_else(|| format!("action {kind} needs `port = 443`"))?,
            },
            ActionKind::Exec => {
                let program = need(raw.program, kind, "program", "/absolute/path")?;
                let argv = raw
                    .argv
                    .unwrap_or_else(|| vec![program.file_name().to_owned()]);
                Action::Exec { program, argv }
            }
            other => return Err(format!("action {other} cannot be tested")),
        };
        Ok(TestCase {
            name: raw.name,
            agent: raw.agent,
            action,
            expect: raw.expect,
            policies: raw.policies,
            taint: raw.taint,
        })
    }
}

/// A tool, resource or prompt written `server/name` (`server/uri` for a resource).
trait FromId: Sized {
    const WHAT: &'static str;
    fn from_parts(server: ServerName, rest: &str) -> Result<Self, String>;
}

impl FromId for ToolRef {
    const WHAT: &'static str = "tool";
    fn from_parts(server: ServerName, rest: &str) -> Result<Self, String> {
        ToolRef::new(server, rest).map_err(|e| e.to_string())
    }
}

impl FromId for ResourceRef {
    const WHAT: &'static str = "resource";
    fn from_parts(server: ServerName, rest: &str) -> Result<Self, String> {
        ResourceRef::new(server, rest).map_err(|e| e.to_string())
    }
}

impl FromId for PromptRef {
    const WHAT: &'static str = "prompt";
    fn from_parts(server: ServerName, rest: &str) -> Result<Self, String> {
        PromptRef::new(server, rest).map_err(|e| e.to_string())
    }
}

fn checked<'de, D: Deserializer<'de>, T: FromId>(d: D) -> Result<Option<T>, D::Error> {
    use serde::de::Error;
    let id = String::deserialize(d)?;
    // INVARIANT: server names hold no '/', so the first '/' separates server from the rest.
    let (server, rest) = id.split_once('/').ok_or_else(|| {
        let form = if T::WHAT == "resource" { "uri" } else { "name" };
        D::Error::custom(format!("{} {id:?} must be written server/{form}", T::WHAT))
    })?;
    let server = ServerName::new(server).map_err(D::Error::custom)?;
    T::from_parts(server, rest)
        .map(Some)
        .map_err(D::Error::custom)
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
            let got = set.decide_tainted(&case.agent, &case.action, &case.taint);
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
