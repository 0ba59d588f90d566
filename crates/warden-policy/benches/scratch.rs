use std::hint::black_box;
use cedar_policy as cedar;
use criterion::{Criterion, criterion_group, criterion_main};

fn parts(c: &mut Criterion) {
    let pset: cedar::PolicySet = r#"
forbid(principal, action, resource) when { context.arguments has path && context.arguments.path like "*/.ssh/*" };
forbid(principal, action, resource) when { resource.name == "drop_database" };
permit(principal == Agent::"agent0", action == Action::"call_tool", resource in Server::"srv0");
@reason("cap") forbid(principal, action, resource == Tool::"srv0/tool0") when { context.arguments has amount && context.arguments.amount > 107 };
"#.parse().unwrap();
    let empty = cedar::PolicySet::new();
    let one: cedar::PolicySet = r#"permit(principal == Agent::"agent0", action == Action::"call_tool", resource in Server::"srv0");"#.parse().unwrap();
    let like: cedar::PolicySet = r#"forbid(principal, action, resource) when { context.arguments has path && context.arguments.path like "*/.ssh/*" };"#.parse().unwrap();
    let entities = cedar::Entities::from_json_value(serde_json::json!([
        {"uid": {"type": "Agent", "id": "agent0"}, "attrs": {}, "parents": []},
        {"uid": {"type": "Server", "id": "srv0"}, "attrs": {}, "parents": []},
        {"uid": {"type": "Tool", "id": "srv0/tool0"}, "attrs": {"name": "tool0", "server": "srv0"}, "parents": [{"type": "Server", "id": "srv0"}]},
    ]), None).unwrap();
    let principal: cedar::EntityUid = r#"Agent::"agent0""#.parse().unwrap();
    let action: cedar::EntityUid = r#"Action::"call_tool""#.parse().unwrap();
    let resource: cedar::EntityUid = r#"Tool::"srv0/tool0""#.parse().unwrap();
    let auth = cedar::Authorizer::new();
    let mk = || {
        let arguments = cedar::RestrictedExpression::new_record([
            ("path".to_owned(), cedar::RestrictedExpression::new_string("/data/agent0/report.csv".to_owned())),
            ("amount".to_owned(), cedar::RestrictedExpression::new_long(42)),
        ]).unwrap();
        let context = cedar::Context::from_pairs([("arguments".to_owned(), arguments)]).unwrap();
        cedar::Request::new(principal.clone(), action.clone(), resource.clone(), context, None).unwrap()
    };
    c.bench_function("request_build", |b| b.iter(|| black_box(mk())));
    let req = mk();
    c.bench_function("authorize_4", |b| b.iter(|| black_box(auth.is_authorized(&req, &pset, &entities))));
    c.bench_function("authorize_1_scope_only", |b| b.iter(|| black_box(auth.is_authorized(&req, &one, &entities))));
    c.bench_function("authorize_1_like", |b| b.iter(|| black_box(auth.is_authorized(&req, &like, &entities))));
    c.bench_function("authorize_0", |b| b.iter(|| black_box(auth.is_authorized(&req, &empty, &entities))));
}
criterion_group!(benches, parts);
criterion_main!(benches);
