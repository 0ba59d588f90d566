//! `PolicySet::decide` with agent-chosen tool names and arguments (JSON from the agent).
//!
//! The input is `[selector, tool name bytes..., '\n', JSON arguments...]`; the selector picks
//! the agent and the server (operator-named, so taken from short lists). Two fixed policy
//! sets decide each call:
//! - `OPEN`, one unconditional permit: the call is allowed exactly when the arguments nest at
//!   most `MAX_ARGUMENT_DEPTH` deep (every other argument value must convert to Cedar).
//! - `RICH`, permits, forbids and `@ask` over typed arguments: never panics; never allows
//!   arguments nested deeper than the limit; agrees with plain Cedar over the whole set
//!   (`decide_unsliced`); fails closed, i.e. denies when `path` has a type that makes the
//!   `no-etc` forbid fail to evaluate; only permits (allow or ask) when `may_call` says so.
//!
//! The same name and arguments are also a prompt's (`get_prompt`) and, as a URI, a
//! resource's (`read_resource`): `RICH` decides those the same as plain Cedar, and only
//! permits what `may_get_prompt` and `may_read` show.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use warden_core::{Action, AgentId, Effect, PromptRef, ResourceRef, ServerName, ToolRef};
use warden_policy::{MAX_ARGUMENT_DEPTH, PolicySet, SourceFile};

const AGENTS: [&str; 3] = ["alice", "bob", "mallory"];
const SERVERS: [&str; 4] = ["files", "bank", "mail", "shop"];

const OPEN: &str = r#"@id("open") permit(principal, action, resource);"#;

const RICH_SCHEMA: &str = r#"
type Arguments = {
  path?: String,
  amount?: Long,
  to?: Set<String>,
  price?: decimal,
  flags?: { force?: Bool },
};
type PromptArguments = { topic?: String };
"#;

const RICH: &str = r#"
@id("reads")
permit(principal, action == Action::"call_tool", resource in Server::"files")
when { resource.name == "read_file" && context.arguments has path
       && context.arguments.path like "/home/*" };

@id("no-etc") @reason("system files are off limits")
forbid(principal, action == Action::"call_tool", resource)
when { context.arguments has path && context.arguments.path like "/etc/*" };

@id("pay-big") @ask("large payment")
permit(principal == Agent::"alice", action, resource == Tool::"bank/pay")
when { context.arguments has amount && context.arguments.amount > 100 };

@id("pay-small")
permit(principal == Agent::"alice", action, resource == Tool::"bank/pay")
when { context.arguments has amount && context.arguments.amount <= 100 };

@id("cheap")
permit(principal, action == Action::"call_tool", resource in Server::"shop")
when { context.arguments has price && context.arguments.price.lessThan(decimal("10.5")) };

@id("mail")
permit(principal, action, resource == Tool::"mail/send")
unless { context.arguments has to && context.arguments.to.contains("ceo@example.com") };

@id("no-force")
forbid(principal, action == Action::"call_tool", resource)
when { context.arguments has flags && context.arguments.flags has force
       && context.arguments.flags.force };

@id("lists")
permit(principal, action == Action::"call_tool", resource) when { resource.name like "list_*" };

@id("prompts")
permit(principal, action == Action::"get_prompt", resource in Server::"files")
when { context.arguments has topic && context.arguments.topic like "q*" };

@id("summaries")
permit(principal == Agent::"alice", action == Action::"get_prompt", resource)
when { resource.name like "summar*" };

@id("docs")
permit(principal, action == Action::"read_resource", resource in Server::"files")
when { resource.uri like "file:///docs/*" };

@id("no-secret-uris")
forbid(principal, action == Action::"read_resource", resource)
when { resource.uri like "*secret*" };
"#;

fn load(policy: &str, schema: Option<&str>) -> PolicySet {
    let schemas: Vec<SourceFile> = schema
        .map(|s| SourceFile::new("args.cedarschema", s))
        .into_iter()
        .collect();
    match PolicySet::from_sources(&[SourceFile::new("fuzz.cedar", policy)], &schemas) {
        Ok(set) => set,
        Err(e) => panic!("the fixed policy set does not load: {e}"),
    }
}

static OPEN_SET: LazyLock<PolicySet> = LazyLock::new(|| load(OPEN, None));
static RICH_SET: LazyLock<PolicySet> = LazyLock::new(|| load(RICH, Some(RICH_SCHEMA)));

fuzz_target!(|data: &[u8]| {
    let [selector, rest @ ..] = data else {
        return;
    };
    let (name, json) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(name) = std::str::from_utf8(name) else {
        return;
    };
    let arguments = match serde_json::from_slice::<Value>(json) {
        Ok(Value::Object(map)) => map,
        // Keep non-objects interesting: wrap them, as an agent could.
        Ok(other) => Map::from_iter([("value".to_owned(), other)]),
        Err(_) => Map::new(),
    };
    let pick = usize::from(*selector);
    let (Ok(agent), Ok(server)) = (
        AgentId::new(AGENTS[pick % AGENTS.len()]),
        ServerName::new(SERVERS[(pick / AGENTS.len()) % SERVERS.len()]),
    ) else {
        panic!("constant names refused");
    };
    // Names the gateway would refuse never reach a policy.
    let Ok(tool) = ToolRef::new(server, name) else {
        return;
    };
    let depth = 1 + arguments.values().map(nesting).max().unwrap_or(0);
    let too_deep = depth > MAX_ARGUMENT_DEPTH;
    let path_breaks_forbid = arguments.get("path").is_some_and(|p| match p {
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => true,
        Value::Number(n) => n.as_i64().is_some(),
        Value::Null | Value::String(_) => false,
    });
    let prompt = PromptRef::new(tool.server.clone(), name);
    let resource = ResourceRef::new(tool.server.clone(), name);
    let action = Action::CallTool {
        tool: tool.clone(),
        arguments: arguments.clone(),
    };

    let open = OPEN_SET.decide(&agent, &action);
    assert_eq!(
        open.effect == Effect::Allow,
        !too_deep,
        "depth {depth}: {open:?}"
    );

    let rich = &*RICH_SET;
    let decision = rich.decide(&agent, &action);
    if too_deep || path_breaks_forbid {
        assert_eq!(decision.effect, Effect::Deny, "depth {depth}: {decision:?}");
    }
    if decision.effect != Effect::Deny {
        assert!(
            rich.may_call(&agent, &tool),
            "{decision:?} but may_call is false"
        );
        assert!(!decision.policies.is_empty());
    }
    assert_eq!(
        decision,
        rich.decide_unsliced(&agent, &action),
        "slicing changed the decision"
    );

    // Tool and prompt names are checked alike, and a URI is allowed more room.
    let (Ok(prompt), Ok(resource)) = (prompt, resource) else {
        panic!("a valid tool name refused as a prompt name or resource URI");
    };
    let listed = [
        rich.may_get_prompt(&agent, &prompt),
        rich.may_read(&agent, &resource),
    ];
    let others = [
        Action::GetPrompt { prompt, arguments },
        Action::ReadResource { resource },
    ];
    for (action, listed) in others.iter().zip(listed) {
        let decision = rich.decide(&agent, action);
        if too_deep {
            assert_eq!(decision.effect, Effect::Deny, "depth {depth}: {decision:?}");
        }
        if decision.effect != Effect::Deny {
            assert!(listed, "{decision:?} but the listing filter hides it");
        }
        assert_eq!(
            decision,
            rich.decide_unsliced(&agent, action),
            "slicing changed the decision"
        );
    }
});

/// How deep containers nest in `v`, counting `v` itself if it is one.
fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}
