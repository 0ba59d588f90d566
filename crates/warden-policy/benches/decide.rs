//! Cost of one decision as the policy set grows, against plain Cedar over the whole set.
//!
//! Policies are generated to look like a real deployment: many agents, each allowed a few
//! servers or single tools, some with argument conditions, per-tool spending caps, approval
//! rules, and two folder-wide forbids every request meets. The request is one agent calling
//! one tool with a path and an amount.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use cedar_policy as cedar;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;
use warden_core::{Action, AgentId, ServerName, ToolRef};
use warden_policy::{PolicySet, SourceFile};

const SCHEMA: &str = "type Arguments = { path?: String, amount?: Long, to?: String };";
const SERVERS: usize = 20;
const TOOLS_PER_SERVER: usize = 10;

/// `n` policies: two global forbids, then a repeating mix of ten shapes. (The forbids name
/// `call_tool`: they read a tool's attributes, which other actions' entities do not have.)
fn policies(n: usize) -> String {
    let agents = (n / 5).max(2);
    let mut out = String::from(
        "forbid(principal, action == Action::\"call_tool\", resource)\n  when { context.arguments has path && context.arguments.path like \"*/.ssh/*\" };\n\
         forbid(principal, action == Action::\"call_tool\", resource)\n  when { resource.name == \"drop_database\" };\n",
    );
    for i in 0..n.saturating_sub(2) {
        let a = i % agents;
        let s = (i / agents + i) % SERVERS;
        let t = (i / 3) % TOOLS_PER_SERVER;
        let p = match i % 10 {
            0..=4 => format!(
                "permit(principal == Agent::\"agent{a}\", action == Action::\"call_tool\", resource in Server::\"srv{s}\");"
            ),
            5 | 6 => format!(
                "permit(principal == Agent::\"agent{a}\", action == Action::\"call_tool\", resource == Tool::\"srv{s}/tool{t}\")\n  when {{ context.arguments has path && context.arguments.path like \"/data/agent{a}/*\" }};"
            ),
            7 => format!(
                "@reason(\"over the cap for srv{s}/tool{t}\")\nforbid(principal, action, resource == Tool::\"srv{s}/tool{t}\")\n  when {{ context.arguments has amount && context.arguments.amount > {} }};",
                100 + i
            ),
            8 => format!(
                "@ask(\"large amount\")\npermit(principal == Agent::\"agent{a}\", action, resource == Tool::\"srv{s}/tool{t}\")\n  when {{ context.arguments has amount && context.arguments.amount > 1000 }};"
            ),
            _ => format!(
                "forbid(principal == Agent::\"agent{a}\", action == Action::\"call_tool\", resource in Server::\"srv{s}\")\n  when {{ resource.name == \"delete_all\" }};"
            ),
        };
        out.push_str(&p);
        out.push('\n');
    }
    out
}

fn load(n: usize) -> (String, PolicySet) {
    let text = policies(n);
    let set = PolicySet::from_sources(
        &[SourceFile::new("bench.cedar", text.as_str())],
        &[SourceFile::new("arguments.cedarschema", SCHEMA)],
    )
    .expect("generated policies load");
    assert_eq!(set.len(), n);
    (text, set)
}

fn request() -> (AgentId, Action) {
    let agent = AgentId::new("agent0").expect("agent name");
    let tool = ToolRef::new(ServerName::new("srv0").expect("server"), "tool0").expect("tool");
    let serde_json::Value::Object(arguments) =
        json!({"path": "/data/agent0/report.csv", "amount": 42})
    else {
        unreachable!()
    };
    (agent, Action::CallTool { tool, arguments })
}

fn sliced(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    let (agent, action) = request();
    for n in [10, 100, 1_000, 10_000] {
        let (_, set) = load(n);
        let first = set.decide(&agent, &action);
        assert_eq!(first, set.decide_unsliced(&agent, &action));
        eprintln!("{n} policies: {:?} by {:?}", first.effect, first.policies);
        g.bench_with_input(BenchmarkId::new("sliced", n), &n, |b, _| {
            b.iter(|| black_box(set.decide(black_box(&agent), black_box(&action))))
        });
    }
    g.finish();
}

/// The first call for an (agent, tool) pair: slicing and building the request entities.
fn first_call(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    let (agent, action) = request();
    let Action::CallTool { arguments, .. } = action else {
        unreachable!()
    };
    let server = ServerName::new("srv0").expect("server");
    let fresh = AtomicU64::new(0);
    for n in [100, 10_000] {
        let (_, set) = load(n);
        g.bench_with_input(BenchmarkId::new("first_call", n), &n, |b, _| {
            b.iter(|| {
                let i = fresh.fetch_add(1, Ordering::Relaxed);
                let tool = ToolRef::new(server.clone(), format!("t{i}")).expect("tool");
                let action = Action::CallTool {
                    tool,
                    arguments: arguments.clone(),
                };
                black_box(set.decide(&agent, &action))
            })
        });
    }
    g.finish();
}

/// Plain Cedar: every policy evaluated for every request.
fn plain_cedar(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    for n in [100, 1_000] {
        let (text, _) = load(n);
        let pset: cedar::PolicySet = text.parse().expect("generated policies parse");
        let entities = cedar::Entities::from_json_value(
            json!([
                {"uid": {"type": "Agent", "id": "agent0"}, "attrs": {}, "parents": []},
                {"uid": {"type": "Server", "id": "srv0"}, "attrs": {}, "parents": []},
                {"uid": {"type": "Tool", "id": "srv0/tool0"},
                 "attrs": {"name": "tool0", "server": "srv0"},
                 "parents": [{"type": "Server", "id": "srv0"}]},
            ]),
            None,
        )
        .expect("entities");
        let principal: cedar::EntityUid = r#"Agent::"agent0""#.parse().expect("uid");
        let action: cedar::EntityUid = r#"Action::"call_tool""#.parse().expect("uid");
        let resource: cedar::EntityUid = r#"Tool::"srv0/tool0""#.parse().expect("uid");
        let authorizer = cedar::Authorizer::new();
        g.bench_with_input(BenchmarkId::new("plain_cedar", n), &n, |b, _| {
            b.iter(|| {
                let arguments = cedar::RestrictedExpression::new_record([
                    (
                        "path".to_owned(),
                        cedar::RestrictedExpression::new_string(
                            "/data/agent0/report.csv".to_owned(),
                        ),
                    ),
                    (
                        "amount".to_owned(),
                        cedar::RestrictedExpression::new_long(42),
                    ),
                ])
                .expect("record");
                let context = cedar::Context::from_pairs([("arguments".to_owned(), arguments)])
                    .expect("context");
                let request = cedar::Request::new(
                    principal.clone(),
                    action.clone(),
                    resource.clone(),
                    context,
                    None,
                )
                .expect("request");
                black_box(authorizer.is_authorized(&request, &pset, &entities))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, sliced, first_call, plain_cedar);
criterion_main!(benches);
