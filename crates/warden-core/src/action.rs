//! What an agent attempts, and what an upstream server asks of an agent. One vocabulary for
//! every channel: the MCP gateway builds the MCP variants, the egress proxy `HttpRequest`, and
//! the sandbox `Exec` and `Connect`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::ServerName;

/// The verb of an action, as Cedar names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActionKind {
    /// An MCP `tools/call`.
    CallTool,
    /// An MCP `resources/read` or `resources/subscribe`.
    ReadResource,
    /// An MCP `prompts/get`.
    GetPrompt,
    /// An MCP `completion/complete`, for a prompt's argument or a resource template's.
    Complete,
    /// An MCP `sampling/createMessage`: a server asks the agent's model for a completion.
    Sample,
    /// An MCP `elicitation/create`: a server asks the agent's user for input.
    Elicit,
    /// An MCP `roots/list`: a server asks which roots the agent exposes.
    ListRoots,
    /// An HTTP request (or `CONNECT` tunnel) through the egress proxy.
    HttpRequest,
    /// A process of a contained agent starts a program (`execve`).
    Exec,
    /// A process of a contained agent opens a network connection (`connect`).
    Connect,
}

impl ActionKind {
    /// Every kind, in the order of the base schema.
    pub const ALL: [ActionKind; 10] = [
        ActionKind::CallTool,
        ActionKind::ReadResource,
        ActionKind::GetPrompt,
        ActionKind::Complete,
        ActionKind::Sample,
        ActionKind::Elicit,
        ActionKind::ListRoots,
        ActionKind::HttpRequest,
        ActionKind::Exec,
        ActionKind::Connect,
    ];

    /// The Cedar action id (`Action::"call_tool"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::CallTool => "call_tool",
            ActionKind::ReadResource => "read_resource",
            ActionKind::GetPrompt => "get_prompt",
            ActionKind::Complete => "complete",
            ActionKind::Sample => "sample",
            ActionKind::Elicit => "elicit",
            ActionKind::ListRoots => "list_roots",
            ActionKind::HttpRequest => "http_request",
            ActionKind::Exec => "exec",
            ActionKind::Connect => "connect",
        }
    }

    /// Whether the upstream server initiates it (the server is the principal and the agent
    /// the resource), rather than the agent.
    pub fn is_server_initiated(self) -> bool {
        matches!(
            self,
            ActionKind::Sample | ActionKind::Elicit | ActionKind::ListRoots
        )
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tool name, prompt name or resource URI that Warden refused before any policy saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {name:?}: {why}")]
pub struct TargetNameError {
    /// What it was meant to be: "tool name", "prompt name" or "resource URI".
    pub kind: &'static str,
    /// The name as given (possibly truncated for display).
    pub name: String,
    /// Why it was refused.
    pub why: &'static str,
}

/// The longest tool name accepted, in bytes.
pub const MAX_TOOL_NAME_LEN: usize = 256;

/// The longest prompt name accepted, in bytes.
pub const MAX_PROMPT_NAME_LEN: usize = 256;

/// The longest resource URI (or URI template) accepted, in bytes.
pub const MAX_RESOURCE_URI_LEN: usize = 2048;

/// Refuses the empty, the oversize, and what could mislead a human reading the journal or a
/// policy (see [`is_deceptive_char`]).
fn check_target(
    kind: &'static str,
    name: &str,
    max_len: usize,
    too_long: &'static str,
) -> Result<(), TargetNameError> {
    let err = |why| {
        let mut shown = name.to_owned();
        shown.truncate(shown.floor_char_boundary(80));
        Err(TargetNameError {
            kind,
            name: shown,
            why,
        })
    };
    if name.is_empty() {
        return err("it is empty");
    }
    if name.len() > max_len {
        return err(too_long);
    }
    if name.chars().any(is_deceptive_char) {
        return err("it contains control, invisible or bidirectional-override characters");
    }
    Ok(())
}

/// A tool or prompt as serialized, checked on the way in.
#[derive(Deserialize)]
struct RawNamed {
    server: ServerName,
    name: String,
}

/// A resource as serialized, checked on the way in.
#[derive(Deserialize)]
struct RawResource {
    server: ServerName,
    uri: String,
}

/// A tool offered by one upstream server. Its id in policy is `server/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawNamed")]
pub struct ToolRef {
    /// The upstream server, named by the operator.
    pub server: ServerName,
    /// The tool's name exactly as the upstream and the agent spell it.
    pub name: String,
}

impl ToolRef {
    /// Checks a tool name that came from outside.
    ///
    /// Names are compared byte for byte against policy, so a look-alike name simply matches no
    /// permit. What is refused here is what could mislead a human reading the journal or a
    /// policy: the empty name, names over [`MAX_TOOL_NAME_LEN`] bytes, and control, invisible
    /// and bidirectional-override characters.
    pub fn new(server: ServerName, name: impl Into<String>) -> Result<Self, TargetNameError> {
        let name = name.into();
        check_target(
            "tool name",
            &name,
            MAX_TOOL_NAME_LEN,
            "it is longer than 256 bytes",
        )?;
        Ok(Self { server, name })
    }

    /// The id used in policy and in the journal: `server/name`.
    ///
    /// INVARIANT: server names contain no '/', so the first '/' always separates the two.
    pub fn id(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl TryFrom<RawNamed> for ToolRef {
    type Error = TargetNameError;
    fn try_from(raw: RawNamed) -> Result<Self, Self::Error> {
        Self::new(raw.server, raw.name)
    }
}

impl fmt::Display for ToolRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.name)
    }
}

/// A prompt offered by one upstream server. Its id in policy is `server/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawNamed")]
pub struct PromptRef {
    /// The upstream server, named by the operator.
    pub server: ServerName,
    /// The prompt's name exactly as the upstream and the agent spell it.
    pub name: String,
}

impl PromptRef {
    /// Checks a prompt name that came from outside, as [`ToolRef::new`] checks a tool name
    /// (the limit is [`MAX_PROMPT_NAME_LEN`] bytes).
    pub fn new(server: ServerName, name: impl Into<String>) -> Result<Self, TargetNameError> {
        let name = name.into();
        check_target(
            "prompt name",
            &name,
            MAX_PROMPT_NAME_LEN,
            "it is longer than 256 bytes",
        )?;
        Ok(Self { server, name })
    }

    /// The id used in policy and in the journal: `server/name`.
    ///
    /// INVARIANT: server names contain no '/', so the first '/' always separates the two.
    pub fn id(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl TryFrom<RawNamed> for PromptRef {
    type Error = TargetNameError;
    fn try_from(raw: RawNamed) -> Result<Self, Self::Error> {
        Self::new(raw.server, raw.name)
    }
}

impl fmt::Display for PromptRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.name)
    }
}

/// A resource (or resource template) of one upstream server. Its id in policy is
/// `server/uri`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawResource")]
pub struct ResourceRef {
    /// The upstream server, named by the operator.
    pub server: ServerName,
    /// The URI exactly as the agent sent it; never normalized, so policy sees what the
    /// upstream will be asked for.
    pub uri: String,
}

impl ResourceRef {
    /// Checks a resource URI that came from outside: refused when empty, over
    /// [`MAX_RESOURCE_URI_LEN`] bytes, or holding control, invisible or
    /// bidirectional-override characters.
    pub fn new(server: ServerName, uri: impl Into<String>) -> Result<Self, TargetNameError> {
        let uri = uri.into();
        check_target(
            "resource URI",
            &uri,
            MAX_RESOURCE_URI_LEN,
            "it is longer than 2048 bytes",
        )?;
        Ok(Self { server, uri })
    }

    /// The id used in policy and in the journal: `server/uri`.
    ///
    /// INVARIANT: server names contain no '/', so the first '/' always separates the two.
    pub fn id(&self) -> String {
        format!("{}/{}", self.server, self.uri)
    }
}

impl TryFrom<RawResource> for ResourceRef {
    type Error = TargetNameError;
    fn try_from(raw: RawResource) -> Result<Self, Self::Error> {
        Self::new(raw.server, raw.uri)
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.uri)
    }
}

/// What a `completion/complete` completes an argument of: a prompt, or a resource template
/// (its URI template as the `uri`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompletionRef {
    /// An argument of a prompt.
    Prompt(PromptRef),
    /// A variable of a resource template.
    Resource(ResourceRef),
}

impl CompletionRef {
    /// The id of the prompt or resource template: `server/name` or `server/uri`.
    pub fn id(&self) -> String {
        match self {
            CompletionRef::Prompt(p) => p.id(),
            CompletionRef::Resource(r) => r.id(),
        }
    }

    /// The server that offers it.
    pub fn server(&self) -> &ServerName {
        match self {
            CompletionRef::Prompt(p) => &p.server,
            CompletionRef::Resource(r) => &r.server,
        }
    }
}

/// The longest host name accepted, in bytes (DNS allows 253).
pub const MAX_HOST_LEN: usize = 253;

/// The longest program path accepted, in bytes (`PATH_MAX` is 4096).
pub const MAX_PROGRAM_LEN: usize = 4096;

/// A network peer: a DNS name or an IP address. Its id in policy is the name in lowercase
/// without a trailing dot, or the address in its canonical text form (IPv6 without brackets).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostRef {
    name: String,
}

impl HostRef {
    /// Checks and normalizes a host that came from outside (a `Host` header, a `CONNECT`
    /// authority, an address a process connects to).
    ///
    /// An IP address is written in its canonical form, so `010.0.0.1` or `::ffff:1.2.3.4`
    /// cannot dodge a policy written for the plain address. A name must be a valid DNS name
    /// (letters, digits, `-`, `_`, dots between labels of at most 63 bytes); it is lowercased,
    /// because DNS is case-insensitive and policy compares byte for byte.
    pub fn new(host: &str) -> Result<Self, TargetNameError> {
        let err = |why| {
            let mut shown = host.to_owned();
            shown.truncate(shown.floor_char_boundary(80));
            Err(TargetNameError {
                kind: "host",
                name: shown,
                why,
            })
        };
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            let ip = match ip {
                std::net::IpAddr::V6(v6) => v6
                    .to_ipv4_mapped()
                    .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
                v4 => v4,
            };
            return Ok(Self {
                name: ip.to_string(),
            });
        }
        let name = host.strip_suffix('.').unwrap_or(host);
        if name.is_empty() {
            return err("it is empty");
        }
        if name.len() > MAX_HOST_LEN {
            return err("it is longer than 253 bytes");
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name.split('.').all(label_ok) {
            return err("it is not a DNS name or an IP address");
        }
        // A name made only of digits and dots is an address in a form `IpAddr` refused
        // (`1.2.3`, `0x7f.1`): inet_aton would still accept some of them.
        if name
            .split('.')
            .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
            || name.split('.').any(|l| {
                l.len() > 1
                    && (l.starts_with("0x") || l.starts_with("0X"))
                    && l[2..].bytes().all(|b| b.is_ascii_hexdigit())
            })
        {
            return err("it is an IP address in a non-canonical form");
        }
        Ok(Self {
            name: name.to_ascii_lowercase(),
        })
    }

    /// The id used in policy and in the journal.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.name.parse().ok()
    }
}

impl TryFrom<String> for HostRef {
    type Error = TargetNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<HostRef> for String {
    fn from(h: HostRef) -> String {
        h.name
    }
}

impl fmt::Display for HostRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A program a contained process starts: the path it passed to `execve`, made absolute
/// against the process's working directory, never resolved through symlinks (policy sees the
/// name the process used; Landlock and the mount view decide what exists).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProgramRef {
    path: String,
}

impl ProgramRef {
    /// Checks a program path: absolute, at most [`MAX_PROGRAM_LEN`] bytes, no control,
    /// invisible or bidirectional-override characters.
    pub fn new(path: impl Into<String>) -> Result<Self, TargetNameError> {
        let path = path.into();
        check_target(
            "program path",
            &path,
            MAX_PROGRAM_LEN,
            "it is longer than 4096 bytes",
        )?;
        if !path.starts_with('/') {
            let mut shown = path;
            shown.truncate(shown.floor_char_boundary(80));
            return Err(TargetNameError {
                kind: "program path",
                name: shown,
                why: "it is not absolute",
            });
        }
        Ok(Self { path })
    }

    /// The path, as policy and the journal see it.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The last component (`/usr/bin/git` → `git`).
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

impl TryFrom<String> for ProgramRef {
    type Error = TargetNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<ProgramRef> for String {
    fn from(p: ProgramRef) -> String {
        p.path
    }
}

impl fmt::Display for ProgramRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

/// Whether `c` can hide or rearrange text on a screen: control characters, line and
/// paragraph separators, bidirectional controls, and Unicode's default-ignorable code points
/// (drawn as nothing: soft hyphen, joiners, fillers, variation selectors, tags).
pub fn is_deceptive_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' // soft hyphen
            | '\u{034F}' // combining grapheme joiner
            | '\u{061C}' // Arabic letter mark
            | '\u{115F}'..='\u{1160}' // Hangul fillers
            | '\u{17B4}'..='\u{17B5}' // Khmer inherent vowels
            | '\u{180B}'..='\u{180F}' // Mongolian variation selectors and vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width and directional marks
            | '\u{2028}'..='\u{2029}' // line and paragraph separators
            | '\u{202A}'..='\u{202E}' // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, isolates, deprecated
            | '\u{3164}' // Hangul filler
            | '\u{FE00}'..='\u{FE0F}' // variation selectors
            | '\u{FEFF}' // byte-order mark
            | '\u{FFA0}' // halfwidth Hangul filler
            | '\u{FFF0}'..='\u{FFFB}' // unassigned specials, interlinear annotations
            | '\u{1BCA0}'..='\u{1BCA3}' // shorthand format controls
            | '\u{1D173}'..='\u{1D17A}' // musical formatting
            | '\u{E0000}'..='\u{E0FFF}' // tags and variation selectors supplement
        )
}

/// An action to decide: one an agent attempts on a server, or one a server attempts on the
/// agent (`Sample`, `Elicit`, `ListRoots`; the agent is then the target).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Call a tool of an upstream MCP server (`tools/call`).
    CallTool {
        /// The tool.
        tool: ToolRef,
        /// The call's arguments, as the agent sent them (a JSON object).
        arguments: serde_json::Map<String, serde_json::Value>,
    },
    /// Read or subscribe to a resource of an upstream server (`resources/read`,
    /// `resources/subscribe`).
    ReadResource {
        /// The resource.
        resource: ResourceRef,
    },
    /// Get a prompt of an upstream server (`prompts/get`).
    GetPrompt {
        /// The prompt.
        prompt: PromptRef,
        /// The prompt's arguments, as the agent sent them (strings, in MCP).
        arguments: serde_json::Map<String, serde_json::Value>,
    },
    /// Ask an upstream server to complete an argument (`completion/complete`).
    Complete {
        /// The prompt or resource template whose argument is completed.
        target: CompletionRef,
        /// The argument's name.
        argument: String,
        /// What the agent has typed so far.
        value: String,
    },
    /// An upstream server asks the agent's model for a message (`sampling/createMessage`).
    Sample {
        /// The server asking.
        server: ServerName,
    },
    /// An upstream server asks the agent's user for input (`elicitation/create`).
    Elicit {
        /// The server asking.
        server: ServerName,
    },
    /// An upstream server asks for the agent's roots (`roots/list`).
    ListRoots {
        /// The server asking.
        server: ServerName,
    },
    /// An HTTP request through the egress proxy; for a `CONNECT` tunnel the method is
    /// `CONNECT` and the path unknown.
    HttpRequest {
        /// The host asked for.
        host: HostRef,
        /// The port (the scheme's default when the request named none).
        port: u16,
        /// The method, as sent (`GET`, `POST`, `CONNECT`, …).
        method: String,
        /// The path and query, when visible (not inside a TLS tunnel).
        path: Option<String>,
    },
    /// A contained process starts a program.
    Exec {
        /// The program.
        program: ProgramRef,
        /// Its arguments, `argv[0]` included.
        argv: Vec<String>,
    },
    /// A contained process connects to a network peer.
    Connect {
        /// The peer's address.
        host: HostRef,
        /// The peer's port.
        port: u16,
    },
}

impl Action {
    /// The verb.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::CallTool { .. } => ActionKind::CallTool,
            Action::ReadResource { .. } => ActionKind::ReadResource,
            Action::GetPrompt { .. } => ActionKind::GetPrompt,
            Action::Complete { .. } => ActionKind::Complete,
            Action::Sample { .. } => ActionKind::Sample,
            Action::Elicit { .. } => ActionKind::Elicit,
            Action::ListRoots { .. } => ActionKind::ListRoots,
            Action::HttpRequest { .. } => ActionKind::HttpRequest,
            Action::Exec { .. } => ActionKind::Exec,
            Action::Connect { .. } => ActionKind::Connect,
        }
    }

    /// The target as written in the journal: `server/tool`, `server/uri` or `server/prompt`;
    /// for an action a server initiates, the server's name; the host for `HttpRequest` and
    /// `Connect`; the program's path for `Exec`.
    pub fn target(&self) -> String {
        match self {
            Action::CallTool { tool, .. } => tool.id(),
            Action::ReadResource { resource } => resource.id(),
            Action::GetPrompt { prompt, .. } => prompt.id(),
            Action::Complete { target, .. } => target.id(),
            Action::Sample { server }
            | Action::Elicit { server }
            | Action::ListRoots { server } => server.as_str().to_owned(),
            Action::HttpRequest { host, .. } | Action::Connect { host, .. } => {
                host.as_str().to_owned()
            }
            Action::Exec { program, .. } => program.as_str().to_owned(),
        }
    }

    /// The upstream MCP server involved, whichever side initiated; `None` for actions of
    /// the egress proxy and the sandbox.
    pub fn server(&self) -> Option<&ServerName> {
        match self {
            Action::CallTool { tool, .. } => Some(&tool.server),
            Action::ReadResource { resource } => Some(&resource.server),
            Action::GetPrompt { prompt, .. } => Some(&prompt.server),
            Action::Complete { target, .. } => Some(target.server()),
            Action::Sample { server }
            | Action::Elicit { server }
            | Action::ListRoots { server } => Some(server),
            Action::HttpRequest { .. } | Action::Exec { .. } | Action::Connect { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> ServerName {
        ServerName::new("fs").unwrap()
    }

    #[test]
    fn ids_join_server_and_name() {
        let t = ToolRef::new(fs(), "read_file").unwrap();
        assert_eq!(t.id(), "fs/read_file");
        let p = PromptRef::new(fs(), "summarise").unwrap();
        assert_eq!(p.id(), "fs/summarise");
        let r = ResourceRef::new(fs(), "file:///srv/a.txt").unwrap();
        assert_eq!(r.id(), "fs/file:///srv/a.txt");
        assert_eq!(r.to_string(), r.id());
    }

    #[test]
    fn refuses_hidden_characters() {
        for name in [
            "",
            "read\u{0}file",
            "read\u{202E}elif",
            "read\u{200B}file",
            "a\nb",
            "dan\u{00AD}ger",
            "dan\u{061C}ger",
            "dan\u{2028}ger",
            "danger\u{E0041}",
            "dan\u{FE0F}ger",
            "dan\u{3164}ger",
        ] {
            assert!(ToolRef::new(fs(), name).is_err(), "{name:?}");
            assert!(PromptRef::new(fs(), name).is_err(), "{name:?}");
            assert!(ResourceRef::new(fs(), name).is_err(), "{name:?}");
        }
        assert!(ToolRef::new(fs(), "x".repeat(257)).is_err());
        assert!(PromptRef::new(fs(), "x".repeat(257)).is_err());
    }

    #[test]
    fn resource_uris_may_be_longer_than_names() {
        let long = format!("file:///{}", "a".repeat(MAX_RESOURCE_URI_LEN - 8));
        assert_eq!(long.len(), MAX_RESOURCE_URI_LEN);
        assert!(ResourceRef::new(fs(), long.as_str()).is_ok());
        let err = ResourceRef::new(fs(), format!("{long}a")).unwrap_err();
        assert_eq!(err.kind, "resource URI");
        assert!(err.name.len() <= 80);
    }

    #[test]
    fn keeps_other_unicode_verbatim() {
        // A look-alike is not refused here; it matches no permit instead.
        let t = ToolRef::new(fs(), "read_fіle").unwrap();
        assert_eq!(t.name, "read_fіle");
        let r = ResourceRef::new(fs(), "file:///%2e%2e/x").unwrap();
        assert_eq!(r.uri, "file:///%2e%2e/x");
    }

    #[test]
    fn deserializing_checks_like_new() {
        let ok: ResourceRef = serde_json::from_str(r#"{"server":"fs","uri":"file:///a"}"#).unwrap();
        assert_eq!(ok.id(), "fs/file:///a");
        assert!(serde_json::from_str::<ResourceRef>(r#"{"server":"fs","uri":""}"#).is_err());
        assert!(serde_json::from_str::<ToolRef>(r#"{"server":"fs","name":"a\u202eb"}"#).is_err());
        assert!(serde_json::from_str::<PromptRef>(r#"{"server":"f/s","name":"p"}"#).is_err());
    }

    #[test]
    fn hosts_are_normalized_so_policy_sees_one_spelling() {
        let cases = [
            ("API.GitHub.com.", "api.github.com"),
            ("10.0.0.1", "10.0.0.1"),
            ("[::1]", "::1"),
            ("::ffff:127.0.0.1", "127.0.0.1"),
            ("0:0:0:0:0:0:0:1", "::1"),
            ("my_host-1.internal", "my_host-1.internal"),
        ];
        for (given, id) in cases {
            assert_eq!(HostRef::new(given).unwrap().as_str(), id, "{given}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "-a.com",
            "a b",
            "a/b",
            "a\u{202e}b",
            "127.1",
            "2130706433",
            "0x7f.0.0.1",
            "010.0.0.1",
        ] {
            assert!(HostRef::new(bad).is_err(), "{bad:?}");
        }
        assert!(HostRef::new(&"a".repeat(64)).is_err());
        assert!(HostRef::new(&format!("{}.com", "a.".repeat(130))).is_err());
        let h: HostRef = serde_json::from_str("\"Example.COM\"").unwrap();
        assert_eq!(serde_json::to_string(&h).unwrap(), "\"example.com\"");
    }

    #[test]
    fn programs_are_absolute_paths() {
        let p = ProgramRef::new("/usr/bin/git").unwrap();
        assert_eq!(p.file_name(), "git");
        assert!(ProgramRef::new("git").is_err());
        assert!(ProgramRef::new("").is_err());
        assert!(ProgramRef::new("/bin/a\nb").is_err());
        assert!(serde_json::from_str::<ProgramRef>("\"bin/sh\"").is_err());
    }

    #[test]
    fn kinds_name_their_cedar_actions() {
        for kind in ActionKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<ActionKind>(&json).unwrap(), kind);
        }
        assert!(ActionKind::Sample.is_server_initiated());
        assert!(!ActionKind::Complete.is_server_initiated());
    }

    #[test]
    fn targets_are_what_the_journal_shows() {
        let prompt = PromptRef::new(fs(), "summarise").unwrap();
        let template = ResourceRef::new(fs(), "file:///{path}").unwrap();
        let cases = [
            (
                Action::ReadResource {
                    resource: ResourceRef::new(fs(), "file:///a").unwrap(),
                },
                ActionKind::ReadResource,
                "fs/file:///a",
            ),
            (
                Action::GetPrompt {
                    prompt: prompt.clone(),
                    arguments: Default::default(),
                },
                ActionKind::GetPrompt,
                "fs/summarise",
            ),
            (
                Action::Complete {
                    target: CompletionRef::Resource(template),
                    argument: "path".into(),
                    value: "re".into(),
                },
                ActionKind::Complete,
                "fs/file:///{path}",
            ),
            (
                Action::Complete {
                    target: CompletionRef::Prompt(prompt),
                    argument: "topic".into(),
                    value: "".into(),
                },
                ActionKind::Complete,
                "fs/summarise",
            ),
            (Action::Sample { server: fs() }, ActionKind::Sample, "fs"),
            (Action::Elicit { server: fs() }, ActionKind::Elicit, "fs"),
            (
                Action::ListRoots { server: fs() },
                ActionKind::ListRoots,
                "fs",
            ),
        ];
        for (action, kind, target) in cases {
            assert_eq!(action.kind(), kind);
            assert_eq!(action.target(), target);
            assert_eq!(action.server(), Some(&fs()));
        }
        let contained = [
            (
                Action::HttpRequest {
                    host: HostRef::new("Example.com").unwrap(),
                    port: 443,
                    method: "CONNECT".into(),
                    path: None,
                },
                ActionKind::HttpRequest,
                "example.com",
            ),
            (
                Action::Exec {
                    program: ProgramRef::new("/bin/sh").unwrap(),
                    argv: vec!["sh".into()],
                },
                ActionKind::Exec,
                "/bin/sh",
            ),
            (
                Action::Connect {
                    host: HostRef::new("10.1.2.3").unwrap(),
                    port: 22,
                },
                ActionKind::Connect,
                "10.1.2.3",
            ),
        ];
        for (action, kind, target) in contained {
            assert_eq!(action.kind(), kind);
            assert_eq!(action.target(), target);
            assert_eq!(action.server(), None);
        }
    }
}
