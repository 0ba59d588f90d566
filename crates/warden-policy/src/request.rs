//! One action as a Cedar request: who asks, for what, on which entity, with which context.
//!
//! An action an agent attempts has the agent as principal and a tool, resource or prompt
//! (child of its server), a host or a program as resource. An action a server attempts on the
//! agent (`sample`, `elicit`, `list_roots`) has the server as principal and the agent as
//! resource.

use std::collections::{HashMap, HashSet};

use cedar_policy::{Context, Entities, Entity, EntityUid, RestrictedExpression};
use serde_json::{Map, Value};
use warden_core::{
    Action, ActionKind, AgentId, CompletionRef, Decision, HostRef, ProgramRef, PromptRef,
    ResourceRef, ServerName, ToolRef,
};

use crate::arguments;
use crate::scope::MODEL;

/// The entity an action is about. Everything a slice depends on, with the action's kind.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    Tool(&'a ToolRef),
    Resource(&'a ResourceRef),
    Prompt(&'a PromptRef),
    /// A server-initiated action: the server asks, the agent is the target.
    Agent(&'a ServerName),
    Host(&'a HostRef),
    Program(&'a ProgramRef),
}

/// Which kind of entity a target is. With the target's id it keys the slice cache: a prompt
/// and a resource template can share an id, and `complete` takes either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TargetType {
    Tool,
    Resource,
    Prompt,
    Agent,
    Host,
    Program,
}

impl Target<'_> {
    /// The target's type and id (`server/name`, `server/uri`, or the asking server's name).
    pub(crate) fn key(self) -> (TargetType, String) {
        match self {
            Target::Tool(t) => (TargetType::Tool, t.id()),
            Target::Resource(r) => (TargetType::Resource, r.id()),
            Target::Prompt(p) => (TargetType::Prompt, p.id()),
            Target::Agent(s) => (TargetType::Agent, s.as_str().to_owned()),
            Target::Host(h) => (TargetType::Host, h.as_str().to_owned()),
            Target::Program(p) => (TargetType::Program, p.as_str().to_owned()),
        }
    }

    /// The reason given when no policy permits.
    pub(crate) fn default_deny(self, agent: &AgentId, kind: ActionKind) -> String {
        match self {
            Target::Agent(server) => {
                format!("no policy permits server \"{server}\" to {kind} on agent \"{agent}\"")
            }
            other => format!(
                "no policy permits agent \"{agent}\" to {kind} on \"{}\"",
                other.key().1
            ),
        }
    }
}

/// What varies from one request to the next for the same (agent, action, target).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ContextInput<'a> {
    /// `{ arguments: ... }`: a tool's or a prompt's arguments.
    Arguments(&'a Map<String, Value>),
    /// `{ argument: ..., value: ... }`: a completion request.
    Completion { argument: &'a str, value: &'a str },
    /// `{ port, method, path }`: an HTTP request through the egress proxy.
    Http {
        port: u16,
        method: &'a str,
        path: &'a str,
    },
    /// `{ argv, command_line }`: a program start.
    Exec { argv: &'a [String] },
    /// `{ port }`: a connection.
    Connect { port: u16 },
    /// `{}`.
    Empty,
}

/// An action taken apart.
pub(crate) struct Parts<'a> {
    pub(crate) kind: ActionKind,
    pub(crate) target: Target<'a>,
    pub(crate) context: ContextInput<'a>,
}

impl<'a> Parts<'a> {
    /// `None` for an action this crate has no model for (one added to `Action` later).
    pub(crate) fn of(action: &'a Action) -> Option<Self> {
        let kind = action.kind();
        let (target, context) = match action {
            Action::CallTool { tool, arguments } => {
                (Target::Tool(tool), ContextInput::Arguments(arguments))
            }
            Action::ReadResource { resource } => (Target::Resource(resource), ContextInput::Empty),
            Action::GetPrompt { prompt, arguments } => {
                (Target::Prompt(prompt), ContextInput::Arguments(arguments))
            }
            Action::Complete {
                target,
                argument,
                value,
            } => (
                match target {
                    CompletionRef::Prompt(p) => Target::Prompt(p),
                    CompletionRef::Resource(r) => Target::Resource(r),
                },
                ContextInput::Completion { argument, value },
            ),
            Action::Sample { server }
            | Action::Elicit { server }
            | Action::ListRoots { server } => (Target::Agent(server), ContextInput::Empty),
            Action::HttpRequest {
                host,
                port,
                method,
                path,
            } => (
                Target::Host(host),
                ContextInput::Http {
                    port: *port,
                    method,
                    path: path.as_deref().unwrap_or(""),
                },
            ),
            Action::Exec { program, argv } => {
                (Target::Program(program), ContextInput::Exec { argv })
            }
            Action::Connect { host, port } => {
                (Target::Host(host), ContextInput::Connect { port: *port })
            }
            _ => return None,
        };
        Some(Self {
            kind,
            target,
            context,
        })
    }
}

/// The context a listing decision is evaluated with: what no condition that ignores the
/// context can tell apart from a real request.
pub(crate) fn listing_context(kind: ActionKind) -> ContextInput<'static> {
    static NO_ARGUMENTS: std::sync::LazyLock<Map<String, Value>> =
        std::sync::LazyLock::new(Map::new);
    match kind {
        ActionKind::CallTool | ActionKind::GetPrompt => ContextInput::Arguments(&NO_ARGUMENTS),
        ActionKind::Complete => ContextInput::Completion {
            argument: "",
            value: "",
        },
        _ => ContextInput::Empty,
    }
}

/// The Cedar context: `taint` (the session's labels) and the action's own attributes.
/// Arguments are converted value by value (see [`arguments`]); what cannot be converted
/// refuses the request.
pub(crate) fn context(input: ContextInput<'_>, taint: &[String]) -> Result<Context, Decision> {
    let mut pairs = match input {
        ContextInput::Arguments(args) => {
            let arguments =
                arguments::to_cedar(args).map_err(|e| Decision::refuse(e.to_string()))?;
            vec![("arguments".to_owned(), arguments)]
        }
        ContextInput::Completion { argument, value } => vec![
            (
                "argument".to_owned(),
                RestrictedExpression::new_string(argument.to_owned()),
            ),
            (
                "value".to_owned(),
                RestrictedExpression::new_string(value.to_owned()),
            ),
        ],
        ContextInput::Http { port, method, path } => vec![
            (
                "port".to_owned(),
                RestrictedExpression::new_long(i64::from(port)),
            ),
            (
                "method".to_owned(),
                RestrictedExpression::new_string(method.to_owned()),
            ),
            (
                "path".to_owned(),
                RestrictedExpression::new_string(path.to_owned()),
            ),
        ],
        ContextInput::Exec { argv } => vec![
            (
                "argv".to_owned(),
                RestrictedExpression::new_set(
                    argv.iter()
                        .map(|a| RestrictedExpression::new_string(a.clone())),
                ),
            ),
            (
                "command_line".to_owned(),
                RestrictedExpression::new_string(argv.join(" ")),
            ),
        ],
        ContextInput::Connect { port } => vec![(
            "port".to_owned(),
            RestrictedExpression::new_long(i64::from(port)),
        )],
        ContextInput::Empty => Vec::new(),
    };
    pairs.push((
        "taint".to_owned(),
        RestrictedExpression::new_set(
            taint
                .iter()
                .map(|t| RestrictedExpression::new_string(t.clone())),
        ),
    ));
    Context::from_pairs(pairs)
        .map_err(|e| Decision::refuse(format!("arguments cannot be given to policy: {e}")))
}

/// The principal and resource of a request, with the entities Cedar needs to decide it.
pub(crate) struct Parties {
    pub(crate) principal: EntityUid,
    pub(crate) resource: EntityUid,
    /// The resource's server, when the resource is a tool, resource or prompt.
    pub(crate) resource_parent: Option<EntityUid>,
    pub(crate) entities: Entities,
}

/// The parties of `agent`'s request on `target`.
pub(crate) fn parties(agent: &AgentId, target: Target<'_>) -> Parties {
    let m = &*MODEL;
    // A tool, resource or prompt: its uid, its server, and the attribute that names it.
    let (resource, server, (attr, value)) = match target {
        Target::Agent(server) => return server_asks(agent, server),
        Target::Host(h) => {
            return standalone(agent, m.host_uid(h), [("name", h.as_str())].as_slice());
        }
        Target::Program(p) => {
            return standalone(
                agent,
                m.program_uid(p),
                [("path", p.as_str()), ("name", p.file_name())].as_slice(),
            );
        }
        Target::Tool(t) => (m.tool_uid(t), &t.server, ("name", &t.name)),
        Target::Resource(r) => (m.resource_uid(r), &r.server, ("uri", &r.uri)),
        Target::Prompt(p) => (m.prompt_uid(p), &p.server, ("name", &p.name)),
    };
    let principal = m.agent_uid(agent);
    let server_uid = m.server_uid(server);
    let attrs = HashMap::from([
        (
            attr.to_owned(),
            RestrictedExpression::new_string(value.clone()),
        ),
        (
            "server".to_owned(),
            RestrictedExpression::new_string(server.as_str().to_owned()),
        ),
    ]);
    let entities = Entity::new(resource.clone(), attrs, HashSet::from([server_uid.clone()]))
        .map_err(|e| e.to_string())
        .and_then(|r| {
            entities_of([
                Entity::with_uid(principal.clone()),
                r,
                Entity::with_uid(server_uid.clone()),
            ])
        });
    Parties {
        principal,
        resource,
        resource_parent: Some(server_uid),
        entities: or_empty(entities),
    }
}

/// The parties of `agent`'s request on an entity with no parent (a host, a program).
fn standalone(agent: &AgentId, resource: EntityUid, attrs: &[(&str, &str)]) -> Parties {
    let principal = MODEL.agent_uid(agent);
    let attrs = attrs
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                RestrictedExpression::new_string((*v).to_owned()),
            )
        })
        .collect::<HashMap<_, _>>();
    let entities = Entity::new(resource.clone(), attrs, HashSet::new())
        .map_err(|e| e.to_string())
        .and_then(|r| entities_of([Entity::with_uid(principal.clone()), r]));
    Parties {
        principal,
        resource,
        resource_parent: None,
        entities: or_empty(entities),
    }
}

/// The parties of a request `server` sends towards `agent`.
fn server_asks(agent: &AgentId, server: &ServerName) -> Parties {
    let m = &*MODEL;
    let principal = m.server_uid(server);
    let resource = m.agent_uid(agent);
    let entities = entities_of([
        Entity::with_uid(principal.clone()),
        Entity::with_uid(resource.clone()),
    ]);
    Parties {
        principal,
        resource,
        resource_parent: None,
        entities: or_empty(entities),
    }
}

fn entities_of(list: impl IntoIterator<Item = Entity>) -> Result<Entities, String> {
    Entities::from_entities(list, None).map_err(|e| e.to_string())
}

/// String attributes and fresh uids cannot fail to evaluate or collide; should it happen, an
/// empty store makes every attribute read an error, and errors deny.
fn or_empty(entities: Result<Entities, String>) -> Entities {
    entities.unwrap_or_else(|_| Entities::empty())
}
