//! The text an action carries, string by string, with where each string sits: what detectors
//! that look for secrets, canaries or Warden's own paths read.
//!
//! Two sources: the action as the agent attempted it (complete), or, when only the journal is
//! at hand, the decision record (target plus redacted arguments). Walks are iterative (no
//! recursion on agent-chosen nesting) and can be bounded to a number of bytes.

use std::ops::ControlFlow;

use serde_json::{Map, Value};
use warden_core::{Action, ActionKind};

/// Where a string sits in an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place<'a> {
    /// Inside the value of the top-level argument of this name.
    Argument(&'a str),
    /// An argument's name (an object key at any depth).
    ArgumentName,
    /// The path and query of an HTTP request.
    HttpPath,
    /// The host of a request or a connection.
    Host,
    /// The program an exec starts.
    Program,
    /// One entry of an exec's argv.
    Argv(usize),
    /// The URI of a resource read.
    Resource,
    /// The partial value of a completion.
    Completion,
}

impl Place<'_> {
    /// Whether the string is something the agent hands to a tool or a program (rather than
    /// a network address or a remote path).
    pub(crate) fn is_local_input(self) -> bool {
        !matches!(self, Place::HttpPath | Place::Host)
    }

    /// For a human: `argument "body"`, `argv[2]`, `the HTTP path`. An argument's name is shown
    /// only when it is a short plain identifier for which `hide` is false; otherwise it is
    /// left out, since the agent chose it and it may carry the very secret being reported.
    pub(crate) fn describe(self, hide: impl Fn(&str) -> bool) -> String {
        match self {
            Place::Argument(name) => {
                let plain = !name.is_empty()
                    && name.len() <= 40
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
                if plain && !hide(name) {
                    format!("argument \"{name}\"")
                } else {
                    "an argument".to_owned()
                }
            }
            Place::ArgumentName => "an argument name".to_owned(),
            Place::HttpPath => "the HTTP path".to_owned(),
            Place::Host => "the host".to_owned(),
            Place::Program => "the program path".to_owned(),
            Place::Argv(i) => format!("argv[{i}]"),
            Place::Resource => "the resource URI".to_owned(),
            Place::Completion => "the completion value".to_owned(),
        }
    }
}

/// How many bytes of text a walk may still hand out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    left: usize,
}

impl Budget {
    /// At most `bytes` bytes in all.
    pub(crate) fn bytes(bytes: usize) -> Self {
        Self { left: bytes }
    }

    /// No bound: for checks whose cost is a substring search, where a bound would let an
    /// agent hide what is checked behind padding.
    pub(crate) fn unlimited() -> Self {
        Self { left: usize::MAX }
    }

    /// The part of `s` the budget still covers (cut at a character boundary), charged to
    /// it; `None` once it is spent.
    fn take<'s>(&mut self, s: &'s str) -> Option<&'s str> {
        if self.left == 0 {
            return None;
        }
        let end = s.floor_char_boundary(self.left.min(s.len()));
        if end == 0 && !s.is_empty() {
            // Not even one character fits: the budget is as good as spent.
            self.left = 0;
            return None;
        }
        self.left -= end;
        Some(&s[..end])
    }
}

/// Calls `f` with every string of `action` and where it sits, within `budget`; stops early
/// when `f` breaks.
pub(crate) fn walk_action<'a>(
    action: &'a Action,
    budget: &mut Budget,
    f: &mut impl FnMut(Place<'a>, &'a str) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut visit = |place, s: &'a str| match budget.take(s) {
        Some(s) => f(place, s),
        None => ControlFlow::Break(()),
    };
    match action {
        Action::CallTool { arguments, .. } | Action::GetPrompt { arguments, .. } => {
            walk_arguments(arguments, &mut visit)
        }
        Action::Complete {
            argument, value, ..
        } => {
            visit(Place::ArgumentName, argument)?;
            visit(Place::Completion, value)
        }
        Action::ReadResource { resource } => visit(Place::Resource, &resource.uri),
        Action::HttpRequest { host, path, .. } => {
            visit(Place::Host, host.as_str())?;
            match path {
                Some(path) => visit(Place::HttpPath, path),
                None => ControlFlow::Continue(()),
            }
        }
        Action::Exec { program, argv } => {
            visit(Place::Program, program.as_str())?;
            for (i, arg) in argv.iter().enumerate() {
                visit(Place::Argv(i), arg)?;
            }
            ControlFlow::Continue(())
        }
        Action::Connect { host, .. } => visit(Place::Host, host.as_str()),
        // Server-initiated requests carry no text of the agent's.
        _ => ControlFlow::Continue(()),
    }
}

/// [`walk_action`] over a journaled decision: its target and its (redacted) arguments, laid
/// out as the gateway journals them (`argv` for an exec, `path` for an HTTP request).
pub(crate) fn walk_journaled<'a>(
    kind: ActionKind,
    target: &'a str,
    args: &'a Value,
    budget: &mut Budget,
    f: &mut impl FnMut(Place<'a>, &'a str) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut visit = |place, s: &'a str| match budget.take(s) {
        Some(s) => f(place, s),
        None => ControlFlow::Break(()),
    };
    match kind {
        ActionKind::Exec => {
            visit(Place::Program, target)?;
            let argv = args.get("argv").and_then(Value::as_array);
            for (i, arg) in argv.into_iter().flatten().enumerate() {
                if let Some(arg) = arg.as_str() {
                    visit(Place::Argv(i), arg)?;
                }
            }
            ControlFlow::Continue(())
        }
        ActionKind::HttpRequest => {
            visit(Place::Host, target)?;
            match args.get("path").and_then(Value::as_str) {
                Some(path) => visit(Place::HttpPath, path),
                None => ControlFlow::Continue(()),
            }
        }
        ActionKind::Connect => visit(Place::Host, target),
        ActionKind::ReadResource => visit(Place::Resource, target),
        _ => match args.as_object() {
            Some(map) => walk_arguments(map, &mut visit),
            None => ControlFlow::Continue(()),
        },
    }
}

/// Every key and string value of a JSON object, depth first, without recursion.
fn walk_arguments<'a>(
    arguments: &'a Map<String, Value>,
    visit: &mut impl FnMut(Place<'a>, &'a str) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut stack: Vec<&'a Value> = Vec::new();
    for (name, value) in arguments {
        visit(Place::ArgumentName, name)?;
        let place = Place::Argument(name);
        stack.push(value);
        while let Some(value) = stack.pop() {
            match value {
                Value::String(s) => visit(place, s)?,
                Value::Array(items) => stack.extend(items.iter().rev()),
                Value::Object(map) => {
                    for (key, inner) in map {
                        visit(Place::ArgumentName, key)?;
                        stack.push(inner);
                    }
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
    }
    ControlFlow::Continue(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use warden_core::{HostRef, ProgramRef, ServerName, ToolRef};

    fn strings(action: &Action, budget: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let _ = walk_action(action, &mut Budget::bytes(budget), &mut |place, s| {
            out.push((place.describe(|_| false), s.to_owned()));
            ControlFlow::Continue(())
        });
        out
    }

    #[test]
    fn walks_every_string_with_its_place() {
        let Value::Object(arguments) = json!({"to": "bob", "opts": {"cc": ["x", 3, null]}}) else {
            unreachable!()
        };
        let call = Action::CallTool {
            tool: ToolRef::new(ServerName::new("mail").unwrap(), "send").unwrap(),
            arguments,
        };
        let mut got = strings(&call, usize::MAX);
        got.sort();
        let want = [
            ("an argument name", "cc"),
            ("an argument name", "opts"),
            ("an argument name", "to"),
            ("argument \"opts\"", "x"),
            ("argument \"to\"", "bob"),
        ];
        assert_eq!(
            got,
            want.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
        );
        let exec = Action::Exec {
            program: ProgramRef::new("/bin/cat").unwrap(),
            argv: vec!["cat".into(), "/etc/hosts".into()],
        };
        assert_eq!(
            strings(&exec, usize::MAX)[2],
            ("argv[1]".to_owned(), "/etc/hosts".to_owned())
        );
        let http = Action::HttpRequest {
            host: HostRef::new("example.com").unwrap(),
            port: 80,
            method: "GET".into(),
            path: Some("/q?a=1".into()),
        };
        assert_eq!(
            strings(&http, usize::MAX)[1],
            ("the HTTP path".to_owned(), "/q?a=1".to_owned())
        );
    }

    #[test]
    fn stops_at_the_budget_on_a_character_boundary() {
        let exec = Action::Exec {
            program: ProgramRef::new("/bin/echo").unwrap(),
            argv: vec!["échoé".into(), "more".into()],
        };
        // 9 bytes of program, then 2 of "é" fit in 12; "c" too; "h" would be byte 13.
        let got = strings(&exec, 12);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1, "éc");
    }

    #[test]
    fn journaled_exec_and_http_are_laid_out_like_the_gateway_writes_them() {
        let args = json!({"argv": ["curl", "-d", "x"]});
        let mut seen = Vec::new();
        let _ = walk_journaled(
            ActionKind::Exec,
            "/usr/bin/curl",
            &args,
            &mut Budget::unlimited(),
            &mut |place, s| {
                seen.push((place, s.to_owned()));
                ControlFlow::Continue(())
            },
        );
        assert_eq!(seen[0], (Place::Program, "/usr/bin/curl".to_owned()));
        assert_eq!(seen[3], (Place::Argv(2), "x".to_owned()));
        let args = json!({"port": 80, "method": "GET", "path": "/a"});
        seen.clear();
        let _ = walk_journaled(
            ActionKind::HttpRequest,
            "example.com",
            &args,
            &mut Budget::unlimited(),
            &mut |place, s| {
                seen.push((place, s.to_owned()));
                ControlFlow::Continue(())
            },
        );
        assert_eq!(
            seen,
            [
                (Place::Host, "example.com".to_owned()),
                (Place::HttpPath, "/a".to_owned())
            ]
        );
    }

    #[test]
    fn argument_names_are_shown_only_when_plain_and_not_hidden() {
        assert_eq!(
            Place::Argument("body").describe(|_| false),
            "argument \"body\""
        );
        assert_eq!(Place::Argument("body").describe(|_| true), "an argument");
        assert_eq!(Place::Argument("a b\"c").describe(|_| false), "an argument");
    }
}
