//! Which MCP messages are actions, and the action each one is. Both gateways — the stdio
//! session and the hub — decide through here, so a request is governed the same way whatever
//! the transport.

use serde_json::{Map, Value};
use warden_core::{Action, ActionKind, CompletionRef, PromptRef, ResourceRef, ServerName, ToolRef};

/// Whether a request of the agent is an action that policy decides before it is forwarded.
pub fn is_governed(method: &str) -> bool {
    matches!(
        method,
        "tools/call"
            | "resources/read"
            | "resources/subscribe"
            | "prompts/get"
            | "completion/complete"
    )
}

/// What a governed request asks for.
#[derive(Debug)]
pub enum Requested {
    /// An action policy can decide.
    Action(Action),
    /// A request naming a target Warden refuses outright (a deceptive or oversize name). It
    /// is refused, and the refusal journaled under this kind and target.
    Unusable {
        /// The verb.
        kind: ActionKind,
        /// The target as it can be shown.
        target: String,
        /// The arguments it carried.
        arguments: Map<String, Value>,
        /// Why.
        why: String,
    },
}

/// The action of a governed request to `server`, its params naming targets as the upstream
/// spells them. `Err` when the params are malformed (an invalid-params error, not an action).
pub fn requested(server: &ServerName, method: &str, params: &Value) -> Result<Requested, String> {
    let unusable =
        |kind, name: &str, arguments: Map<String, Value>, why: String| Requested::Unusable {
            kind,
            target: format!("{server}/{}", name.escape_debug()),
            arguments,
            why,
        };
    match method {
        "tools/call" => {
            let name = string(params, "name")?;
            let arguments = arguments(params)?;
            Ok(match ToolRef::new(server.clone(), name) {
                Ok(tool) => Requested::Action(Action::CallTool { tool, arguments }),
                Err(e) => unusable(ActionKind::CallTool, name, arguments, e.to_string()),
            })
        }
        "prompts/get" => {
            let name = string(params, "name")?;
            let arguments = arguments(params)?;
            Ok(match PromptRef::new(server.clone(), name) {
                Ok(prompt) => Requested::Action(Action::GetPrompt { prompt, arguments }),
                Err(e) => unusable(ActionKind::GetPrompt, name, arguments, e.to_string()),
            })
        }
        "resources/read" | "resources/subscribe" => {
            let uri = string(params, "uri")?;
            if has_dot_segments(uri) {
                return Ok(unusable(
                    ActionKind::ReadResource,
                    uri,
                    Map::new(),
                    DOT_SEGMENTS.to_owned(),
                ));
            }
            Ok(match ResourceRef::new(server.clone(), uri) {
                Ok(resource) => Requested::Action(Action::ReadResource { resource }),
                Err(e) => unusable(ActionKind::ReadResource, uri, Map::new(), e.to_string()),
            })
        }
        "completion/complete" => {
            let argument = params
                .pointer("/argument/name")
                .and_then(Value::as_str)
                .ok_or("\"argument.name\" must be a string")?;
            let value = params
                .pointer("/argument/value")
                .and_then(Value::as_str)
                .ok_or("\"argument.value\" must be a string")?;
            let reference = params.get("ref").ok_or("\"ref\" must be an object")?;
            let (name, target) = match reference.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => {
                    let name = string(reference, "name")?;
                    (
                        name,
                        PromptRef::new(server.clone(), name).map(CompletionRef::Prompt),
                    )
                }
                Some("ref/resource") => {
                    let uri = string(reference, "uri")?;
                    (
                        uri,
                        ResourceRef::new(server.clone(), uri).map(CompletionRef::Resource),
                    )
                }
                _ => return Err("\"ref.type\" must be \"ref/prompt\" or \"ref/resource\"".into()),
            };
            Ok(match target {
                Ok(target) => Requested::Action(Action::Complete {
                    target,
                    argument: argument.to_owned(),
                    value: value.to_owned(),
                }),
                Err(e) => unusable(ActionKind::Complete, name, Map::new(), e.to_string()),
            })
        }
        _ => Err(format!("{method} is not an action")),
    }
}

const DOT_SEGMENTS: &str = "resource URIs with \".\" or \"..\" segments (written plainly, \
     percent-encoded, or between backslashes) are refused: a policy matching \
     \"demo://static/*\" would otherwise admit \"demo://static/../secret\"";

/// Whether a URI has a `.` or `..` path segment, which a server may resolve to somewhere a
/// policy's prefix does not cover: written plainly or percent-encoded (once or twice), between
/// `/` or `\` (which URL parsers and file servers read as `/`), or with `;` parameters after
/// it (`..;x`, which Java servers read as `..`).
fn has_dot_segments(uri: &str) -> bool {
    // A `file:` URI is a path to its server, which may not read `?` and `#` as URL syntax.
    let is_file = uri
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("file:"));
    let path = if is_file {
        uri
    } else {
        uri.split(['?', '#']).next().unwrap_or(uri)
    };
    let mut decoded = path.to_ascii_lowercase();
    // `%252e` is `%2e` to a server that decodes twice.
    for _ in 0..3 {
        decoded = decoded.replace("%25", "%");
    }
    let decoded = decoded
        .replace("%2e", ".")
        .replace("%2f", "/")
        .replace("%5c", "/")
        .replace('\\', "/");
    decoded.split('/').any(|segment| {
        let name = segment.split([';', '?', '#']).next().unwrap_or(segment);
        name == "." || name == ".."
    })
}

/// The action of a request an upstream sends to the agent, if Warden governs it.
pub fn server_request(server: &ServerName, method: &str) -> Option<Action> {
    let server = server.clone();
    match method {
        "sampling/createMessage" => Some(Action::Sample { server }),
        "elicitation/create" => Some(Action::Elicit { server }),
        "roots/list" => Some(Action::ListRoots { server }),
        _ => None,
    }
}

fn string<'a>(params: &'a Value, field: &str) -> Result<&'a str, String> {
    params
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("\"{field}\" must be a string"))
}

fn arguments(params: &Value) -> Result<Map<String, Value>, String> {
    match params.get("arguments") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(_) => Err("\"arguments\" must be an object".into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn files() -> ServerName {
        ServerName::new("files").unwrap()
    }

    #[test]
    fn each_governed_method_becomes_its_action() {
        let cases = [
            (
                "tools/call",
                json!({"name": "read", "arguments": {"path": "a"}}),
                "call_tool",
                "files/read",
            ),
            (
                "prompts/get",
                json!({"name": "brief"}),
                "get_prompt",
                "files/brief",
            ),
            (
                "resources/read",
                json!({"uri": "file:///a"}),
                "read_resource",
                "files/file:///a",
            ),
            (
                "resources/subscribe",
                json!({"uri": "file:///a"}),
                "read_resource",
                "files/file:///a",
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "name": "brief"}, "argument": {"name": "topic", "value": "w"}}),
                "complete",
                "files/brief",
            ),
        ];
        for (method, params, kind, target) in cases {
            assert!(is_governed(method));
            let Ok(Requested::Action(action)) = requested(&files(), method, &params) else {
                panic!("{method} gave no action");
            };
            assert_eq!(action.kind().as_str(), kind, "{method}");
            assert_eq!(action.target(), target, "{method}");
        }
        assert!(!is_governed("tools/list"));
    }

    #[test]
    fn malformed_params_are_errors_and_deceptive_names_unusable() {
        assert!(requested(&files(), "tools/call", &json!({"name": 3})).is_err());
        assert!(
            requested(
                &files(),
                "tools/call",
                &json!({"name": "x", "arguments": []})
            )
            .is_err()
        );
        assert!(
            requested(
                &files(),
                "completion/complete",
                &json!({"ref": {"type": "x"}, "argument": {"name": "a", "value": "b"}})
            )
            .is_err()
        );
        let r = requested(&files(), "tools/call", &json!({"name": "re\u{202e}ad"})).unwrap();
        assert!(
            matches!(
                r,
                Requested::Unusable {
                    kind: ActionKind::CallTool,
                    ..
                }
            ),
            "{r:?}"
        );
    }

    #[test]
    fn resource_uris_that_climb_are_unusable() {
        for uri in [
            "demo://static/../secret",
            "file:///srv/./a",
            "demo://static/%2E%2e/secret",
            "demo://static/..",
            // What URL parsers and Java servers read as a dot segment too.
            "file:///srv/public/%2e%2e\\private\\keys.txt",
            "file:///srv/public\\..\\private",
            "file:///srv/public/..%2fprivate",
            "file:///srv/public/..%5Cprivate",
            "file:///srv/public/%252e%252e/private",
            "file:///srv/public/..;x/private",
            "file:///srv/public/x?/../../secret",
            "FILE:///srv/public/x#/../secret",
            "file:///srv/public/..?",
            "file:///srv/public/..#x",
        ] {
            let r = requested(&files(), "resources/read", &json!({ "uri": uri })).unwrap();
            assert!(matches!(r, Requested::Unusable { .. }), "{uri}: {r:?}");
        }
        for uri in [
            "demo://static/a..b",
            "file:///srv/.hidden",
            "demo://x?q=../y",
            "file:///srv/a;b/c",
            "file:///srv/%20a",
        ] {
            let r = requested(&files(), "resources/read", &json!({ "uri": uri })).unwrap();
            assert!(matches!(r, Requested::Action(_)), "{uri}: {r:?}");
        }
    }

    #[test]
    fn server_requests_are_actions_of_the_server() {
        let a = server_request(&files(), "sampling/createMessage").unwrap();
        assert_eq!(a.kind().as_str(), "sample");
        assert!(server_request(&files(), "ping").is_none());
    }
}
