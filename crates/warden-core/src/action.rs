//! What an agent attempts. One vocabulary for every channel: the MCP gateway builds these
//! today; the egress proxy and the sandbox will build their own variants.

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
}

impl ActionKind {
    /// The Cedar action id (`Action::"call_tool"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::CallTool => "call_tool",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tool name that Warden refused before any policy saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tool name {name:?}: {why}")]
pub struct ToolNameError {
    /// The name as given (possibly truncated for display).
    pub name: String,
    /// Why it was refused.
    pub why: &'static str,
}

/// The longest tool name accepted, in bytes.
pub const MAX_TOOL_NAME_LEN: usize = 256;

/// A tool offered by one upstream server. Its id in policy is `server/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// policy: control characters, invisible and bidirectional-override characters, and
    /// oversize names.
    pub fn new(server: ServerName, name: impl Into<String>) -> Result<Self, ToolNameError> {
        let name = name.into();
        let err = |why| {
            let mut shown = name.clone();
            shown.truncate(shown.floor_char_boundary(80));
            Err(ToolNameError { name: shown, why })
        };
        if name.is_empty() {
            return err("it is empty");
        }
        if name.len() > MAX_TOOL_NAME_LEN {
            return err("it is longer than 256 bytes");
        }
        if name.chars().any(is_deceptive_char) {
            return err("it contains control, invisible or bidirectional-override characters");
        }
        Ok(Self { server, name })
    }

    /// The id used in policy and in the journal: `server/name`.
    ///
    /// INVARIANT: server names contain no '/', so the first '/' always separates the two.
    pub fn id(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl fmt::Display for ToolRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.name)
    }
}

/// Whether `c` can hide or rearrange text on a screen: control characters, and invisible and
/// bidirectional-override characters.
pub fn is_deceptive_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' // zero-width and directional marks
            | '\u{202A}'..='\u{202E}' // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner and invisible operators
            | '\u{2066}'..='\u{2069}' // bidirectional isolates
            | '\u{FEFF}' // byte-order mark
        )
}

/// An action an agent attempts, with the resource it targets.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Call a tool of an upstream MCP server.
    CallTool {
        /// The tool.
        tool: ToolRef,
        /// The call's arguments, as the agent sent them (a JSON object).
        arguments: serde_json::Map<String, serde_json::Value>,
    },
}

impl Action {
    /// The verb.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::CallTool { .. } => ActionKind::CallTool,
        }
    }

    /// The target as written in the journal (`server/tool` for a tool).
    pub fn target(&self) -> String {
        match self {
            Action::CallTool { tool, .. } => tool.id(),
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
    fn tool_id_joins_server_and_name() {
        let t = ToolRef::new(fs(), "read_file").unwrap();
        assert_eq!(t.id(), "fs/read_file");
    }

    #[test]
    fn refuses_hidden_characters() {
        for name in [
            "",
            "read\u{0}file",
            "read\u{202E}elif",
            "read\u{200B}file",
            "a\nb",
        ] {
            assert!(ToolRef::new(fs(), name).is_err(), "{name:?}");
        }
        assert!(ToolRef::new(fs(), "x".repeat(257)).is_err());
    }

    #[test]
    fn keeps_other_unicode_verbatim() {
        // A look-alike is not refused here; it matches no permit instead.
        let t = ToolRef::new(fs(), "read_fіle").unwrap();
        assert_eq!(t.name, "read_fіle");
    }
}
