//! Tests of the whole stage: loading, locating errors, decisions, slicing and cases.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};
use warden_core::{
    Action, AgentId, CompletionRef, Effect, HostRef, ProgramRef, PromptRef, ResourceRef,
    ServerName, ToolRef,
};

use crate::*;

fn agent(name: &str) -> AgentId {
    AgentId::new(name).unwrap()
}

fn tool(id: &str) -> ToolRef {
    let (server, name) = id.split_once('/').unwrap();
    ToolRef::new(ServerName::new(server).unwrap(), name).unwrap()
}

fn call(id: &str, args: Value) -> Action {
    let Value::Object(arguments) = args else {
        panic!("arguments must be an object")
    };
    Action::CallTool {
        tool: tool(id),
        arguments,
    }
}

fn resource(id: &str) -> ResourceRef {
    let (server, uri) = id.split_once('/').unwrap();
    ResourceRef::new(ServerName::new(server).unwrap(), uri).unwrap()
}

fn prompt(id: &str) -> PromptRef {
    let (server, name) = id.split_once('/').unwrap();
    PromptRef::new(ServerName::new(server).unwrap(), name).unwrap()
}

fn read(id: &str) -> Action {
    Action::ReadResource {
        resource: resource(id),
    }
}

fn get_prompt(id: &str, args: Value) -> Action {
    let Value::Object(arguments) = args else {
        panic!("arguments must be an object")
    };
    Action::GetPrompt {
        prompt: prompt(id),
        arguments,
    }
}

fn server(name: &str) -> ServerName {
    ServerName::new(name).unwrap()
}

fn load(policies: &str, schema: Option<&str>) -> PolicySet {
    let schemas: Vec<SourceFile> = schema
        .map(|s| SourceFile::new("arguments.cedarschema", s))
        .into_iter()
        .collect();
    match PolicySet::from_sources(&[SourceFile::new("agents.cedar", policies)], &schemas) {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    }
}

const ARGS: &str =
    "type Arguments = { path?: String, amount?: Long, price?: decimal, owner?: Agent };";

// === decisions ===

#[test]
fn default_deny_names_agent_action_and_tool() {
    let set = load(
        r#"permit(principal == Agent::"alice", action, resource);"#,
        None,
    );
    let d = set.decide(&agent("bob"), &call("files/delete_file", json!({})));
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.policies.is_empty());
    assert_eq!(
        d.reason,
        r#"no policy permits agent "bob" to call_tool on "files/delete_file""#
    );
}

#[test]
fn contained_actions_are_decided_on_hosts_and_programs() {
    let set = load(
        r#"
        permit(principal == Agent::"alice", action == Action::"http_request", resource)
          when { resource.name like "*.example.com" && context.method == "GET" && context.path like "/v1/*" };
        permit(principal == Agent::"alice", action == Action::"http_request", resource == Host::"example.com")
          when { context.method == "CONNECT" && context.port == 443 };
        permit(principal == Agent::"alice", action == Action::"exec", resource)
          when { resource.name == "git" };
        forbid(principal, action == Action::"exec", resource)
          when { context.argv.contains("--force") || context.command_line like "*push * main*" };
        permit(principal == Agent::"alice", action == Action::"connect", resource == Host::"10.0.0.1")
          when { context.port == 5432 };
        "#,
        None,
    );
    let alice = agent("alice");
    let http = |host: &str, port, method: &str, path: Option<&str>| Action::HttpRequest {
        host: HostRef::new(host).unwrap(),
        port,
        method: method.into(),
        path: path.map(str::to_owned),
    };
    let exec = |path: &str, argv: &[&str]| Action::Exec {
        program: ProgramRef::new(path).unwrap(),
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
    };
    let connect = |host: &str, port| Action::Connect {
        host: HostRef::new(host).unwrap(),
        port,
    };
    let cases = [
        (
            http("API.example.com", 443, "GET", Some("/v1/items")),
            Effect::Allow,
        ),
        (
            http("api.example.com", 443, "POST", Some("/v1/items")),
            Effect::Deny,
        ),
        (
            http("api.example.com", 443, "GET", Some("/admin")),
            Effect::Deny,
        ),
        (http("example.com", 443, "CONNECT", None), Effect::Allow),
        (http("example.com", 8443, "CONNECT", None), Effect::Deny),
        (http("evil.com", 443, "CONNECT", None), Effect::Deny),
        (exec("/usr/bin/git", &["git", "status"]), Effect::Allow),
        (
            exec("/usr/bin/git", &["git", "push", "--force"]),
            Effect::Deny,
        ),
        (
            exec("/usr/bin/git", &["git", "push", "origin", "main"]),
            Effect::Deny,
        ),
        (exec("/bin/sh", &["sh", "-c", "id"]), Effect::Deny),
        (connect("10.0.0.1", 5432), Effect::Allow),
        (connect("::ffff:10.0.0.1", 5432), Effect::Allow),
        (connect("10.0.0.1", 22), Effect::Deny),
    ];
    for (action, effect) in cases {
        let d = set.decide(&alice, &action);
        assert_eq!(d.effect, effect, "{action:?}: {}", d.reason);
        assert_eq!(d, set.decide_unsliced(&alice, &action));
    }
    let d = set.decide(&agent("bob"), &exec("/bin/sh", &["sh"]));
    assert_eq!(
        d.reason,
        r#"no policy permits agent "bob" to exec on "/bin/sh""#
    );
}

#[test]
fn taint_in_the_context_can_forbid_a_flow_outright() {
    let set = load(
        r#"
        @id("web") permit(principal, action == Action::"http_request", resource);
        @id("send") permit(principal, action == Action::"call_tool", resource == Tool::"mail/send");
        @id("no-secrets-out")
        forbid(principal, action in [Action::"http_request", Action::"call_tool"], resource)
          when { context.taint.containsAny(["secret:private-key", "secret:aws-access-key"]) };
        "#,
        None,
    );
    let alice = agent("alice");
    let web = Action::HttpRequest {
        host: HostRef::new("paste.example").unwrap(),
        port: 443,
        method: "CONNECT".into(),
        path: None,
    };
    let mail = call("mail/send", json!({}));
    for action in [&web, &mail] {
        assert_eq!(set.decide(&alice, action).effect, Effect::Allow);
        let clean = ["sensitive:files/notes".to_owned()];
        assert_eq!(
            set.decide_tainted(&alice, action, &clean).effect,
            Effect::Allow
        );
        let tainted = ["secret:aws-access-key".to_owned()];
        let d = set.decide_tainted(&alice, action, &tainted);
        assert_eq!(d.effect, Effect::Deny, "{action:?}");
        assert_eq!(d.policies, ["no-secrets-out"]);
        assert_eq!(d, set.decide_unsliced_tainted(&alice, action, &tainted));
    }
}

#[test]
fn allow_names_permits_by_line_or_id() {
    let set = load(
        "// agents\npermit(principal == Agent::\"alice\", action, resource in Server::\"files\");\n\n@id(\"all-read\")\npermit(principal, action == Action::\"call_tool\", resource)\nwhen { resource.name == \"read_file\" };\n",
        None,
    );
    let d = set.decide(&agent("alice"), &call("files/read_file", json!({})));
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(d.policies, ["agents.cedar:2", "all-read"]);
    assert_eq!(d.reason, "permitted by policies agents.cedar:2, all-read");
    assert_eq!(
        set.ids().collect::<Vec<_>>(),
        ["agents.cedar:2", "all-read"]
    );
    assert_eq!(set.len(), 2);
}

#[test]
fn forbid_wins_and_gives_its_reason() {
    let set = load(
        r#"
permit(principal, action, resource);
@reason("deleting is never allowed")
forbid(principal, action == Action::"call_tool", resource) when { resource.name == "delete_file" };
forbid(principal, action == Action::"call_tool", resource) when { resource.name like "delete*" };
"#,
        None,
    );
    let d = set.decide(&agent("alice"), &call("files/delete_file", json!({})));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.policies, ["agents.cedar:3", "agents.cedar:5"]);
    assert_eq!(d.reason, "deleting is never allowed");

    let d = set.decide(&agent("alice"), &call("files/delete_dir", json!({})));
    assert_eq!(d.policies, ["agents.cedar:5"]);
    assert_eq!(d.reason, "forbidden by policy agents.cedar:5");
}

#[test]
fn ask_permits_require_approval() {
    let set = load(
        r#"
permit(principal, action, resource);
@ask("payments over 100")
permit(principal, action == Action::"call_tool", resource in Server::"bank")
when { context.arguments has amount && context.arguments.amount > 100 };
@ask
permit(principal, action, resource == Tool::"mail/send");
"#,
        Some(ARGS),
    );
    let d = set.decide(&agent("a"), &call("bank/pay", json!({"amount": 500})));
    assert_eq!(d.effect, Effect::Ask);
    assert_eq!(d.policies, ["agents.cedar:3"]);
    assert_eq!(d.reason, "approval required: payments over 100");

    let d = set.decide(&agent("a"), &call("bank/pay", json!({"amount": 5})));
    assert_eq!(d.effect, Effect::Allow);

    let d = set.decide(&agent("a"), &call("mail/send", json!({})));
    assert_eq!(d.effect, Effect::Ask);
    assert_eq!(d.reason, "approval required");
}

#[test]
fn an_erroring_forbid_fails_closed() {
    let set = load(
        r#"
permit(principal, action, resource);
@id("cap")
forbid(principal, action == Action::"call_tool", resource)
when { context.arguments has amount && context.arguments.amount > 1000 };
"#,
        Some(ARGS),
    );
    // Plain Cedar skips the erroring forbid and allows; Warden must not.
    let d = set.decide(&agent("a"), &call("bank/pay", json!({"amount": "9999"})));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.policies, ["cap"]);
    assert!(
        d.reason.starts_with("policy cap could not be evaluated:"),
        "{}",
        d.reason
    );
    assert_eq!(
        set.decide_unsliced(&agent("a"), &call("bank/pay", json!({"amount": "9999"}))),
        d
    );

    let d = set.decide(&agent("a"), &call("bank/pay", json!({"amount": 10})));
    assert_eq!(d.effect, Effect::Allow);
}

#[test]
fn forged_entity_in_arguments_is_only_a_record() {
    let policy = r#"
permit(principal, action == Action::"call_tool", resource)
when { context.arguments has owner && context.arguments.owner == Agent::"admin" };
"#;
    let set = load(policy, Some(ARGS));
    let forged = json!({"owner": {"__entity": {"type": "Agent", "id": "admin"}}});
    let d = set.decide(&agent("mallory"), &call("files/read_file", forged.clone()));
    assert_eq!(d.effect, Effect::Deny, "{d:?}");

    // Cedar's own JSON context format would have read it as an entity reference.
    let pset: cedar_policy::PolicySet = policy.parse().unwrap();
    let ctx = cedar_policy::Context::from_json_value(json!({ "arguments": forged }), None).unwrap();
    let request = cedar_policy::Request::new(
        r#"Agent::"mallory""#.parse().unwrap(),
        r#"Action::"call_tool""#.parse().unwrap(),
        r#"Tool::"files/read_file""#.parse().unwrap(),
        ctx,
        None,
    )
    .unwrap();
    let response = cedar_policy::Authorizer::new().is_authorized(
        &request,
        &pset,
        &cedar_policy::Entities::empty(),
    );
    assert_eq!(response.decision(), cedar_policy::Decision::Allow);
}

#[test]
fn decimals_compare_and_too_precise_numbers_fail_closed() {
    let set = load(
        r#"permit(principal, action == Action::"call_tool", resource)
when { context.arguments has price && context.arguments.price.lessThan(decimal("10.0")) };"#,
        Some(ARGS),
    );
    let d = |v: Value| set.decide(&agent("a"), &call("shop/buy", json!({ "price": v })));
    assert_eq!(d(json!(9.5)).effect, Effect::Allow);
    assert_eq!(d(json!(10.25)).effect, Effect::Deny);
    // Five decimal places: passed as a string, so the policy errors and the call is denied.
    let precise = d(json!(9.12345));
    assert_eq!(precise.effect, Effect::Deny);
    assert_eq!(precise.policies, ["agents.cedar:1"]);
    assert!(
        precise.reason.contains("could not be evaluated"),
        "{}",
        precise.reason
    );
}

#[test]
fn null_arguments_are_absent() {
    let set = load(
        r#"permit(principal, action == Action::"call_tool", resource) unless { context.arguments has path };"#,
        Some(ARGS),
    );
    let d = set.decide(&agent("a"), &call("files/list", json!({"path": null})));
    assert_eq!(d.effect, Effect::Allow);
    let d = set.decide(&agent("a"), &call("files/list", json!({"path": "/"})));
    assert_eq!(d.effect, Effect::Deny);
}

#[test]
fn deep_arguments_are_refused() {
    let set = load("permit(principal, action, resource);", None);
    let mut v = json!(1);
    for _ in 0..MAX_ARGUMENT_DEPTH {
        v = json!([v]);
    }
    let d = set.decide(&agent("a"), &call("files/list", json!({ "x": v })));
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.policies.is_empty());
    assert_eq!(d.reason, "arguments nest deeper than 32 levels");
}

#[test]
fn wrong_typed_string_argument_fails_closed() {
    let set = load(
        r#"permit(principal, action == Action::"call_tool", resource)
when { context.arguments has path && context.arguments.path like "/tmp/*" };"#,
        Some(ARGS),
    );
    let d = set.decide(&agent("a"), &call("files/read", json!({"path": 7})));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.policies, ["agents.cedar:1"]);
    let d = set.decide(&agent("a"), &call("files/read", json!({"path": "/tmp/x"})));
    assert_eq!(d.effect, Effect::Allow);
}

#[test]
fn scopes_match_servers_and_types() {
    let set = load(
        r#"
@id("fs") permit(principal is Agent in Agent::"alice", action in [Action::"call_tool"], resource is Tool in Server::"fs");
@id("one") permit(principal == Agent::"bob", action == Action::"call_tool", resource == Tool::"fs/read");
"#,
        None,
    );
    let d = |a: &str, t: &str| set.decide(&agent(a), &call(t, json!({}))).policies;
    assert_eq!(d("alice", "fs/write"), ["fs"]);
    assert_eq!(d("alice", "fsx/write"), Vec::<String>::new());
    assert_eq!(d("bob", "fs/read"), ["one"]);
    assert_eq!(d("bob", "fs/write"), Vec::<String>::new());
}

#[test]
fn may_call_lists_conservatively() {
    let set = load(
        r#"
permit(principal == Agent::"alice", action, resource in Server::"fs");
forbid(principal, action, resource == Tool::"fs/delete");
forbid(principal, action, resource == Tool::"fs/write") when { context.arguments has path };
"#,
        Some(ARGS),
    );
    let alice = agent("alice");
    assert!(set.may_call(&alice, &tool("fs/read")));
    assert!(!set.may_call(&alice, &tool("fs/delete")));
    assert!(set.may_call(&alice, &tool("fs/write")));
    assert!(!set.may_call(&alice, &tool("web/get")));
    assert!(!set.may_call(&agent("bob"), &tool("fs/read")));
}

#[test]
fn may_call_evaluates_conditions_that_ignore_the_arguments() {
    let set = load(
        r#"
permit(principal, action == Action::"call_tool", resource in Server::"fs")
  when { resource.name == "read" || resource.name == "list" };
permit(principal == Agent::"alice", action, resource == Tool::"fs/write")
  when { context.arguments has path && context.arguments.path like "reports/*" };
forbid(principal == Agent::"bob", action == Action::"call_tool", resource in Server::"fs")
  when { resource.name == "list" };
"#,
        Some(ARGS),
    );
    let (alice, bob) = (agent("alice"), agent("bob"));
    assert!(set.may_call(&alice, &tool("fs/read")));
    assert!(set.may_call(&alice, &tool("fs/list")));
    // A permit that reads the arguments might hold for some call: shown.
    assert!(set.may_call(&alice, &tool("fs/write")));
    // The only permit in scope holds for no call of this tool: hidden.
    assert!(!set.may_call(&alice, &tool("fs/delete")));
    assert!(set.may_call(&bob, &tool("fs/read")));
    // A forbid that holds whatever the arguments: hidden.
    assert!(!set.may_call(&bob, &tool("fs/list")));
    assert!(!set.may_call(&bob, &tool("fs/write")));
}

#[test]
fn slice_cache_is_bounded() {
    let set = load("permit(principal, action, resource);", None);
    for i in 0..5 {
        set.may_call(&agent("a"), &tool(&format!("fs/t{i}")));
    }
    assert_eq!(set.cached_slices(), 5);
    set.set_slice_cap(5);
    set.may_call(&agent("a"), &tool("fs/other"));
    assert_eq!(set.cached_slices(), 1);
}

#[test]
fn tools_selecting_the_same_policies_share_one_sliced_set() {
    let set = load(
        r#"permit(principal, action == Action::"call_tool", resource in Server::"fs") when { resource.name like "read*" };
permit(principal, action, resource == Tool::"fs/special") when { resource.name == "special" };"#,
        None,
    );
    for name in ["read", "reader", "write", "invented-by-agent"] {
        set.decide(&agent("a"), &call(&format!("fs/{name}"), json!({})));
    }
    assert_eq!(set.cached_slices(), 4);
    assert_eq!(set.sliced_set_count(), 1);
    let d = set.decide(&agent("a"), &call("fs/special", json!({})));
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(set.sliced_set_count(), 2);
}

#[test]
fn policy_set_is_shareable() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<PolicySet>();
    let set = Arc::new(load("permit(principal, action, resource);", None));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let set = Arc::clone(&set);
            std::thread::spawn(move || {
                set.decide(&agent("a"), &call(&format!("fs/t{}", i % 2), json!({})))
                    .effect
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Effect::Allow);
    }
}

// === loading errors ===

fn load_err(policies: &[(&str, &str)], schemas: &[(&str, &str)]) -> PolicyError {
    let p: Vec<_> = policies
        .iter()
        .map(|(n, t)| SourceFile::new(*n, *t))
        .collect();
    let s: Vec<_> = schemas
        .iter()
        .map(|(n, t)| SourceFile::new(*n, *t))
        .collect();
    PolicySet::from_sources(&p, &s).unwrap_err()
}

#[test]
fn syntax_errors_point_at_line_and_column_in_every_file() {
    let err = load_err(
        &[
            (
                "a.cedar",
                "permit(principal, action, resource);\n\npermit(principal, action resource);\n",
            ),
            (
                "b.cedar",
                "forbid(principal, action, resource)\n  when { 1 + };\n",
            ),
        ],
        &[],
    );
    let PolicyError::Parse(Diagnostics(ds)) = &err else {
        panic!("{err}")
    };
    assert_eq!(ds.len(), 2, "{err}");
    assert_eq!(ds[0].file, "a.cedar");
    assert_eq!(
        ds[0].position,
        Some(Position {
            line: 3,
            column: 26
        }),
        "{err}"
    );
    assert_eq!(ds[1].file, "b.cedar");
    assert_eq!(ds[1].position.map(|p| p.line), Some(2), "{err}");
    assert!(err.to_string().contains("a.cedar:3:26: "), "{err}");
}

#[test]
fn validation_reports_every_error_where_it_is() {
    let err = load_err(
        &[(
            "agents.cedar",
            r#"permit(principal, action, resource);

permit(principal, action == Action::"call_tool", resource)
when { context.arguments.path == "/etc" };

permit(principal, action == Action::"call_tool", resource)
when { context.arguments has amount && context.arguments.amount > "x" };
"#,
        )],
        &[("args.cedarschema", "type Arguments = { amount?: Long };")],
    );
    let PolicyError::Validation(Diagnostics(ds)) = &err else {
        panic!("{err}")
    };
    assert_eq!(ds.len(), 2, "{err}");
    assert!(ds.iter().all(|d| d.file == "agents.cedar"));
    assert_eq!(ds[0].position.map(|p| p.line), Some(4), "{err}");
    assert!(ds[0].message.contains("agents.cedar:3"), "{err}");
    assert_eq!(ds[1].position.map(|p| p.line), Some(7), "{err}");
}

#[test]
fn optional_argument_needs_a_has_check() {
    let err = load_err(
        &[(
            "agents.cedar",
            "permit(principal, action == Action::\"call_tool\", resource)\nwhen { context.arguments.path == \"/\" };",
        )],
        &[("args.cedarschema", "type Arguments = { path?: String };")],
    );
    let PolicyError::Validation(Diagnostics(ds)) = &err else {
        panic!("{err}")
    };
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].position.map(|p| p.line), Some(2), "{err}");
}

#[test]
fn schema_errors_are_located() {
    let err = load_err(
        &[("a.cedar", "permit(principal, action, resource);")],
        &[(
            "args.cedarschema",
            "type Arguments = {\n  path?: Strin,\n};",
        )],
    );
    let PolicyError::Schema(Diagnostics(ds)) = &err else {
        panic!("{err}")
    };
    assert_eq!(ds[0].file, "args.cedarschema", "{err}");
    assert_eq!(ds[0].position.map(|p| p.line), Some(2), "{err}");

    let err = load_err(
        &[("a.cedar", "permit(principal, action, resource);")],
        &[("args.cedarschema", "type Arguments = {\n  path?: String\n")],
    );
    assert!(matches!(err, PolicyError::Parse(_)), "{err}");
}

#[test]
fn duplicate_ids_name_both_places() {
    let err = load_err(
        &[
            (
                "a.cedar",
                "@id(\"x\")\npermit(principal, action, resource);",
            ),
            (
                "b.cedar",
                "\n\n@id(\"x\") forbid(principal, action, resource);",
            ),
        ],
        &[],
    );
    let PolicyError::DuplicateId(e) = &err else {
        panic!("{err}")
    };
    assert_eq!(e.id, "x");
    assert_eq!(e.first, "a.cedar:1:1");
    assert_eq!(e.second, "b.cedar:3:1");
}

#[test]
fn policies_on_one_line_get_columns() {
    let set = load(
        "permit(principal, action, resource); forbid(principal, action == Action::\"call_tool\", resource) when { resource.name == \"x\" };",
        None,
    );
    assert_eq!(
        set.ids().collect::<Vec<_>>(),
        ["agents.cedar:1:1", "agents.cedar:1:38"]
    );
}

#[test]
fn templates_are_refused() {
    let err = load_err(
        &[(
            "a.cedar",
            "\npermit(principal == ?principal, action, resource);",
        )],
        &[],
    );
    let PolicyError::Parse(Diagnostics(ds)) = &err else {
        panic!("{err}")
    };
    assert_eq!(ds[0].position, Some(Position { line: 2, column: 1 }));
}

#[test]
fn no_policies_is_an_error() {
    assert!(matches!(load_err(&[], &[]), PolicyError::NoPolicies { .. }));
}

// === folders ===

#[test]
fn load_dir_reads_sorted_cedar_and_schema_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b.cedar"),
        "forbid(principal, action == Action::\"call_tool\", resource) when { context.arguments has path && context.arguments.path like \"/etc/*\" };",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        "permit(principal, action, resource);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("args.cedarschema"),
        "type Arguments = { path?: String };",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not policy").unwrap();
    std::fs::create_dir(dir.path().join("sub.cedar")).unwrap();
    let set = PolicySet::load_dir(dir.path()).unwrap();
    assert_eq!(set.ids().collect::<Vec<_>>(), ["a.cedar:1", "b.cedar:1"]);
    let d = set.decide(
        &agent("a"),
        &call("fs/read", json!({"path": "/etc/passwd"})),
    );
    assert_eq!(d.policies, ["b.cedar:1"]);
}

#[test]
fn load_dir_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert!(matches!(
        PolicySet::load_dir(&missing),
        Err(PolicyError::MissingFolder { .. })
    ));
    let err = PolicySet::load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, PolicyError::NoPolicies { .. }), "{err}");

    std::fs::write(dir.path().join("bad.cedar"), [0xff, 0xfe, 0x00]).unwrap();
    let err = PolicySet::load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, PolicyError::Unreadable { .. }), "{err}");

    std::fs::write(dir.path().join("bad.cedar"), "permit(principal,").unwrap();
    let err = PolicySet::load_dir(dir.path()).unwrap_err();
    let shown = dir.path().join("bad.cedar").display().to_string();
    assert!(err.to_string().contains(&format!("{shown}:1:")), "{err}");
}

#[test]
fn base_schema_is_shipped() {
    assert!(schema_text().contains("action call_tool"));
}

// === cases ===

#[test]
fn cases_run_and_report() {
    let set = load(
        r#"@id("alice-fs") permit(principal == Agent::"alice", action, resource in Server::"fs");"#,
        None,
    );
    let cases = parse_cases(
        "cases.toml",
        r#"
[[case]]
name = "alice reads"
agent = "alice"
tool = "fs/read"
arguments = { path = "/x", n = 1.5 }
expect = "allow"
policies = ["alice-fs"]

[[case]]
name = "bob reads (wrongly expected)"
agent = "bob"
tool = "fs/read"
expect = "allow"
"#,
    )
    .unwrap();
    let Action::CallTool { arguments, .. } = &cases[0].action else {
        panic!("{:?}", cases[0].action)
    };
    assert_eq!(arguments["path"], "/x");
    let results = run_cases(&set, &cases);
    assert!(results[0].passed, "{results:?}");
    assert!(!results[1].passed);
    assert_eq!(results[1].got.effect, Effect::Deny);
    assert_eq!(results[1].expected, Effect::Allow);
}

#[test]
fn bad_cases_files_point_at_the_line() {
    let err = parse_cases(
        "cases.toml",
        "[[case]]\nname = \"x\"\nagent = \"alice\"\ntool = \"fs/read\"\nexpect = \"allow\"\nexpcet = \"deny\"\n",
    )
    .unwrap_err();
    let PolicyError::Cases(d) = &err else {
        panic!("{err}")
    };
    assert_eq!(d.position.map(|p| p.line), Some(6), "{err}");

    for bad in [
        "[[case]]\nname = \"x\"\nagent = \"alice\"\ntool = \"read\"\nexpect = \"allow\"\n",
        "[[case]]\nname = \"x\"\nagent = \"a/b\"\ntool = \"fs/read\"\nexpect = \"allow\"\n",
        "[[case]]\nname = \"x\"\nagent = \"alice\"\ntool = \"fs/read\"\nexpect = \"maybe\"\n",
        "",
    ] {
        assert!(
            matches!(parse_cases("c.toml", bad), Err(PolicyError::Cases(_))),
            "{bad}"
        );
    }
    let err = parse_cases(
        "c.toml",
        "[[case]]\nname = \"x\"\nagent = \"alice\"\ntool = \"read\"\nexpect = \"allow\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("c.toml:4:"), "{err}");
}

// === differential: sliced decisions equal plain Cedar over the whole set ===

const AGENTS: [&str; 3] = ["a0", "a1", "a2"];
const SERVERS: [&str; 3] = ["s0", "s1", "s2"];
const TOOLS: [&str; 4] = ["s0/t0", "s0/t1", "s1/t0", "s1/t2"];
const RESOURCES: [&str; 4] = [
    "s0/file:///a",
    "s0/file:///b/c",
    "s1/file:///a",
    "s1/mem://x",
];
// "s1/mem://x" is also a resource: `complete` on either must not share a cached slice.
const PROMPTS: [&str; 3] = ["s0/p0", "s1/p0", "s1/mem://x"];

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = &'static str> + Clone {
    prop::sample::select(list)
}

fn agent_principal() -> impl Strategy<Value = String> {
    let a = pick(&AGENTS);
    prop_oneof![
        Just("principal".to_owned()),
        a.clone()
            .prop_map(|a| format!("principal == Agent::\"{a}\"")),
        a.clone()
            .prop_map(|a| format!("principal in Agent::\"{a}\"")),
        Just("principal is Agent".to_owned()),
        a.prop_map(|a| format!("principal is Agent in Agent::\"{a}\"")),
    ]
}

fn server_principal() -> impl Strategy<Value = String> {
    let s = pick(&SERVERS);
    prop_oneof![
        Just("principal".to_owned()),
        s.clone()
            .prop_map(|s| format!("principal == Server::\"{s}\"")),
        s.clone()
            .prop_map(|s| format!("principal in Server::\"{s}\"")),
        Just("principal is Server".to_owned()),
        s.prop_map(|s| format!("principal is Server in Server::\"{s}\"")),
    ]
}

/// Resource scopes over entities of `ty` (ids from `ids`) and their servers.
fn child_resource(ty: &'static str, ids: &'static [&'static str]) -> BoxedStrategy<String> {
    let id = pick(ids);
    let s = pick(&SERVERS);
    prop_oneof![
        Just("resource".to_owned()),
        id.clone()
            .prop_map(move |i| format!("resource == {ty}::\"{i}\"")),
        id.prop_map(move |i| format!("resource in {ty}::\"{i}\"")),
        s.clone()
            .prop_map(|s| format!("resource in Server::\"{s}\"")),
        Just(format!("resource is {ty}")),
        s.prop_map(move |s| format!("resource is {ty} in Server::\"{s}\"")),
    ]
    .boxed()
}

fn agent_resource() -> impl Strategy<Value = String> {
    let a = pick(&AGENTS);
    prop_oneof![
        Just("resource".to_owned()),
        a.clone()
            .prop_map(|a| format!("resource == Agent::\"{a}\"")),
        a.prop_map(|a| format!("resource in Agent::\"{a}\"")),
        Just("resource is Agent".to_owned()),
    ]
}

fn principal_condition() -> impl Strategy<Value = String> {
    pick(&AGENTS).prop_map(|a| format!(" when {{ principal == Agent::\"{a}\" }}"))
}

fn tool_policy() -> impl Strategy<Value = (String, String, String, String)> {
    let action = prop_oneof![
        Just("action == Action::\"call_tool\"".to_owned()),
        Just("action in [Action::\"call_tool\"]".to_owned()),
    ];
    let condition = prop_oneof![
        3 => Just(String::new()),
        1 => (0i64..20).prop_map(|n| format!(
            " when {{ context.arguments has amount && context.arguments.amount > {n} }}"
        )),
        1 => Just(
            " when { context.arguments has path && context.arguments.path like \"/tmp/*\" }"
                .to_owned()
        ),
        1 => pick(&["t0", "t1", "t2"])
            .prop_map(|t| format!(" unless {{ resource.name == \"{t}\" }}")),
        1 => principal_condition(),
        1 => Just(" when { resource.server == \"s1\" }".to_owned()),
    ];
    (
        agent_principal(),
        action,
        child_resource("Tool", &TOOLS),
        condition,
    )
}

fn resource_policy() -> impl Strategy<Value = (String, String, String, String)> {
    let condition = prop_oneof![
        3 => Just(String::new()),
        1 => Just(" when { resource.uri like \"file:///*\" }".to_owned()),
        1 => Just(" unless { resource.uri == \"file:///a\" }".to_owned()),
        1 => Just(" when { resource.server == \"s1\" }".to_owned()),
        1 => principal_condition(),
    ];
    (
        agent_principal(),
        Just("action == Action::\"read_resource\"".to_owned()),
        child_resource("Resource", &RESOURCES),
        condition,
    )
}

fn prompt_policy() -> impl Strategy<Value = (String, String, String, String)> {
    let condition = prop_oneof![
        3 => Just(String::new()),
        1 => Just(
            " when { context.arguments has topic && context.arguments.topic == \"x\" }"
                .to_owned()
        ),
        1 => Just(" unless { resource.name == \"p0\" }".to_owned()),
        1 => principal_condition(),
    ];
    (
        agent_principal(),
        Just("action == Action::\"get_prompt\"".to_owned()),
        child_resource("Prompt", &PROMPTS),
        condition,
    )
}

fn complete_policy() -> impl Strategy<Value = (String, String, String, String)> {
    let resource = prop_oneof![
        child_resource("Prompt", &PROMPTS),
        child_resource("Resource", &RESOURCES),
    ];
    let condition = prop_oneof![
        3 => Just(String::new()),
        1 => Just(" when { context.argument == \"path\" }".to_owned()),
        1 => Just(" unless { context.value like \"a*\" }".to_owned()),
        1 => Just(" when { resource.server == \"s0\" }".to_owned()),
    ];
    (
        agent_principal(),
        Just("action == Action::\"complete\"".to_owned()),
        resource,
        condition,
    )
}

fn server_policy() -> impl Strategy<Value = (String, String, String, String)> {
    let action = prop_oneof![
        Just("action == Action::\"sample\"".to_owned()),
        Just("action == Action::\"elicit\"".to_owned()),
        Just("action in [Action::\"sample\", Action::\"list_roots\"]".to_owned()),
        Just(
            "action in [Action::\"sample\", Action::\"elicit\", Action::\"list_roots\"]".to_owned()
        ),
    ];
    let condition = prop_oneof![
        3 => Just(String::new()),
        1 => pick(&SERVERS).prop_map(|s| format!(" when {{ principal == Server::\"{s}\" }}")),
        1 => pick(&AGENTS).prop_map(|a| format!(" unless {{ resource == Agent::\"{a}\" }}")),
    ];
    (server_principal(), action, agent_resource(), condition)
}

/// Scopes that admit several actions, with conditions every action can evaluate.
fn broad_policy() -> impl Strategy<Value = (String, String, String, String)> {
    let several = "action in [Action::\"get_prompt\", Action::\"complete\", Action::\"sample\"]";
    let by_agent = (
        agent_principal(),
        prop_oneof![
            2 => Just("action".to_owned()),
            1 => Just("action in [Action::\"call_tool\", Action::\"read_resource\"]".to_owned()),
            1 => Just(several.to_owned()),
        ],
        prop_oneof![
            Just("resource".to_owned()),
            pick(&SERVERS).prop_map(|s| format!("resource in Server::\"{s}\"")),
        ],
        prop_oneof![
            3 => Just(String::new()),
            1 => principal_condition(),
        ],
    );
    let by_server = (
        server_principal(),
        prop_oneof![Just("action".to_owned()), Just(several.to_owned())],
        prop_oneof![
            Just("resource".to_owned()),
            pick(&AGENTS).prop_map(|a| format!("resource == Agent::\"{a}\"")),
        ],
        Just(String::new()),
    );
    prop_oneof![2 => by_agent, 1 => by_server]
}

const HOSTS: [&str; 3] = ["example.com", "api.example.com", "10.0.0.1"];
const PROGRAMS: [&str; 3] = ["/usr/bin/git", "/bin/sh", "/work/a.out"];

/// Policies on what a contained agent does: HTTP through the proxy, connects, program starts.
fn contained_policy() -> impl Strategy<Value = (String, String, String, String)> {
    let on_host = (
        agent_principal(),
        prop_oneof![
            Just("action == Action::\"http_request\"".to_owned()),
            Just("action == Action::\"connect\"".to_owned()),
            Just("action in [Action::\"http_request\", Action::\"connect\"]".to_owned()),
        ],
        prop_oneof![
            Just("resource".to_owned()),
            pick(&HOSTS).prop_map(|h| format!("resource == Host::\"{h}\"")),
            Just("resource is Host".to_owned()),
        ],
        prop_oneof![
            2 => Just(String::new()),
            1 => Just(" when { context.port == 443 }".to_owned()),
            1 => Just(" when { resource.name like \"*.example.com\" }".to_owned()),
        ],
    );
    let on_program = (
        agent_principal(),
        Just("action == Action::\"exec\"".to_owned()),
        prop_oneof![
            Just("resource".to_owned()),
            pick(&PROGRAMS).prop_map(|p| format!("resource == Program::\"{p}\"")),
        ],
        prop_oneof![
            2 => Just(String::new()),
            1 => Just(" when { context.argv.contains(\"push\") }".to_owned()),
            1 => Just(" unless { context.command_line like \"*--force*\" }".to_owned()),
            1 => Just(" when { resource.name == \"git\" }".to_owned()),
        ],
    );
    prop_oneof![on_host, on_program]
}

fn arb_policy() -> impl Strategy<Value = String> {
    let annotation = prop_oneof![
        3 => Just(""),
        1 => Just("@ask "),
        1 => Just("@ask(\"check\") "),
        1 => Just("@reason(\"no\") "),
    ];
    let scope_and_condition = prop_oneof![
        3 => tool_policy(),
        2 => resource_policy(),
        2 => prompt_policy(),
        2 => complete_policy(),
        2 => server_policy(),
        2 => broad_policy(),
        2 => contained_policy(),
    ];
    (annotation, prop::bool::ANY, scope_and_condition).prop_map(|(ann, permit, (p, a, r, cond))| {
        let effect = if permit { "permit" } else { "forbid" };
        format!("{ann}{effect}({p}, {a}, {r}){cond};")
    })
}

fn arb_arguments() -> impl Strategy<Value = Value> {
    let amount = prop_oneof![
        Just(None),
        (0i64..25).prop_map(|n| Some(json!(n))),
        Just(Some(json!("12"))),
    ];
    let path = prop_oneof![
        Just(None),
        Just(Some(json!("/tmp/a"))),
        Just(Some(json!("/etc/a"))),
        Just(Some(json!(3))),
    ];
    (amount, path).prop_map(|(amount, path)| {
        let mut m = serde_json::Map::new();
        if let Some(a) = amount {
            m.insert("amount".into(), a);
        }
        if let Some(p) = path {
            m.insert("path".into(), p);
        }
        Value::Object(m)
    })
}

fn arb_prompt_arguments() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        Just(json!({"topic": "x"})),
        Just(json!({"topic": "y"})),
        // Not a string: a policy reading it fails to evaluate.
        Just(json!({"topic": 7})),
    ]
}

fn arb_action_request() -> impl Strategy<Value = Action> {
    let server = pick(&SERVERS).prop_map(|s| ServerName::new(s).unwrap());
    prop_oneof![
        3 => (pick(&TOOLS), arb_arguments()).prop_map(|(t, args)| call(t, args)),
        2 => pick(&RESOURCES).prop_map(|r| Action::ReadResource { resource: resource(r) }),
        2 => (pick(&PROMPTS), arb_prompt_arguments())
            .prop_map(|(p, args)| get_prompt(p, args)),
        1 => (pick(&PROMPTS), pick(&["path", "topic"]), pick(&["", "ab", "b"])).prop_map(
            |(p, argument, value)| Action::Complete {
                target: CompletionRef::Prompt(prompt(p)),
                argument: argument.to_owned(),
                value: value.to_owned(),
            }
        ),
        1 => (pick(&RESOURCES), pick(&["path", "topic"]), pick(&["", "ab", "b"])).prop_map(
            |(r, argument, value)| Action::Complete {
                target: CompletionRef::Resource(resource(r)),
                argument: argument.to_owned(),
                value: value.to_owned(),
            }
        ),
        1 => server.clone().prop_map(|server| Action::Sample { server }),
        1 => server.clone().prop_map(|server| Action::Elicit { server }),
        1 => server.prop_map(|server| Action::ListRoots { server }),
        1 => (pick(&HOSTS), prop::sample::select(vec![80u16, 443]), pick(&["GET", "CONNECT"])).prop_map(
            |(h, port, method)| Action::HttpRequest {
                host: HostRef::new(h).unwrap(),
                port,
                method: method.to_owned(),
                path: (method != "CONNECT").then(|| "/x".to_owned()),
            }
        ),
        1 => (pick(&HOSTS), prop::sample::select(vec![22u16, 443])).prop_map(|(h, port)| Action::Connect {
            host: HostRef::new(h).unwrap(),
            port,
        }),
        1 => (pick(&PROGRAMS), pick(&["push", "--force", "status"])).prop_map(|(p, arg)| {
            Action::Exec {
                program: ProgramRef::new(p).unwrap(),
                argv: vec![p.rsplit('/').next().unwrap().to_owned(), arg.to_owned()],
            }
        }),
    ]
}

fn arb_request() -> impl Strategy<Value = (&'static str, Action)> {
    (pick(&AGENTS), arb_action_request())
}

/// What the listing filter says of the action's target; `None` for actions not listed.
fn listed(set: &PolicySet, agent: &AgentId, action: &Action) -> Option<bool> {
    match action {
        Action::CallTool { tool, .. } => Some(set.may_call(agent, tool)),
        Action::ReadResource { resource } => Some(set.may_read(agent, resource)),
        Action::GetPrompt { prompt, .. } => Some(set.may_get_prompt(agent, prompt)),
        _ => None,
    }
}

const PROPTEST_SCHEMA: &str = "type Arguments = { amount?: Long, path?: String };\n\
                               type PromptArguments = { topic?: String };";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn sliced_decisions_equal_plain_cedar(
        policies in prop::collection::vec(arb_policy(), 1..14),
        requests in prop::collection::vec(arb_request(), 1..16),
    ) {
        let text = policies.join("\n");
        let set = PolicySet::from_sources(
            &[SourceFile::new("p.cedar", text.as_str())],
            &[SourceFile::new("a.cedarschema", PROPTEST_SCHEMA)],
        );
        let set = match set {
            Ok(s) => s,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n{text}"))),
        };
        for (a, action) in requests {
            let sliced = set.decide(&agent(a), &action);
            let plain = set.decide_unsliced(&agent(a), &action);
            prop_assert_eq!(&sliced, &plain, "{} doing {:?}\n{}", a, action, text);
            // The cached slice answers the same.
            prop_assert_eq!(&set.decide(&agent(a), &action), &plain);
            if listed(&set, &agent(a), &action) == Some(false) {
                prop_assert_eq!(sliced.effect, Effect::Deny, "{:?}\n{}", action, text);
            }
        }
    }
}

#[test]
fn policies_that_can_never_apply_are_refused() {
    for (text, why) in [
        (
            r#"forbid(principal, action == Action::"call_tool", resource) when { context.arguments has pth && context.arguments.pth like "*secrets*" };"#,
            "misspelt, undeclared argument",
        ),
        (
            r#"forbid(principal, action == Action::"call_tool", resource == Server::"files");"#,
            "a server where a tool is expected",
        ),
    ] {
        let err = PolicySet::from_sources(
            &[SourceFile::new(
                "p.cedar",
                format!("permit(principal, action, resource);\n{text}\n"),
            )],
            &[SourceFile::new("a.cedarschema", ARGS)],
        )
        .err()
        .unwrap_or_else(|| panic!("accepted a policy that can never apply: {why}"));
        assert!(matches!(err, PolicyError::Validation(_)), "{why}: {err}");
        assert!(err.to_string().contains("p.cedar:2"), "{why}: {err}");
    }
}

#[test]
fn policy_files_that_would_not_be_loaded_are_refused() {
    for stray in ["sub/c.cedar", "z.Cedar", "w.cedar.bak"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.cedar"),
            "permit(principal, action, resource);",
        )
        .unwrap();
        let path = dir.path().join(stray);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "forbid(principal, action, resource);").unwrap();
        let err = PolicySet::load_dir(dir.path()).unwrap_err();
        assert!(
            matches!(err, PolicyError::NotLoaded { .. }),
            "{stray}: {err}"
        );
    }
}

// === the other MCP actions ===

const PROMPT_ARGS: &str = "type PromptArguments = { topic?: String };";

#[test]
fn read_resource_is_permitted_forbidden_or_denied_by_default() {
    let set = load(
        r#"
@id("docs")
permit(principal == Agent::"alice", action == Action::"read_resource", resource in Server::"files")
when { resource.uri like "file:///docs/*" };
@id("one-file")
permit(principal == Agent::"bob", action == Action::"read_resource", resource == Resource::"files/file:///x");
@id("no-secrets") @reason("secrets are off limits")
forbid(principal, action == Action::"read_resource", resource)
when { resource.uri like "*secret*" };
"#,
        None,
    );
    let (alice, bob) = (agent("alice"), agent("bob"));
    let d = set.decide(&alice, &read("files/file:///docs/a.md"));
    assert_eq!(
        (d.effect, d.policies.as_slice()),
        (Effect::Allow, &["docs".to_owned()][..])
    );
    let d = set.decide(&alice, &read("files/file:///docs/secret.md"));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.reason, "secrets are off limits");
    assert_eq!(
        set.decide(&bob, &read("files/file:///x")).effect,
        Effect::Allow
    );
    // Byte for byte: no normalization, no case folding.
    for other in [
        "files/file:///x/",
        "files/FILE:///x",
        "files/file:///./x",
        "web/file:///x",
    ] {
        let d = set.decide(&bob, &read(other));
        assert_eq!(d.effect, Effect::Deny, "{other}");
        assert_eq!(
            d.reason,
            format!("no policy permits agent \"bob\" to read_resource on \"{other}\"")
        );
    }
    // A tool call is another action: the read permits do not grant it.
    assert_eq!(
        set.decide(&alice, &call("files/file:///docs/a.md", json!({})))
            .effect,
        Effect::Deny
    );
}

#[test]
fn get_prompt_reads_its_string_arguments() {
    let set = load(
        r#"
@id("summaries")
permit(principal, action == Action::"get_prompt", resource == Prompt::"files/summarise")
when { context.arguments has topic && context.arguments.topic like "q*" };
@id("drafts") @ask("drafting is reviewed")
permit(principal == Agent::"alice", action == Action::"get_prompt", resource in Server::"files")
when { resource.name == "draft" };
"#,
        Some(PROMPT_ARGS),
    );
    let alice = agent("alice");
    let d = set.decide(
        &alice,
        &get_prompt("files/summarise", json!({"topic": "q3"})),
    );
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(d.policies, ["summaries"]);
    let d = set.decide(
        &alice,
        &get_prompt("files/summarise", json!({"topic": "ops"})),
    );
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(
        d.reason,
        r#"no policy permits agent "alice" to get_prompt on "files/summarise""#
    );
    // A non-string argument makes the permit fail to evaluate: refused, naming it.
    let d = set.decide(&alice, &get_prompt("files/summarise", json!({"topic": 3})));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.policies, ["summaries"]);
    let d = set.decide(&alice, &get_prompt("files/draft", json!({})));
    assert_eq!(d.effect, Effect::Ask);
    assert_eq!(d.reason, "approval required: drafting is reviewed");
    assert_eq!(
        set.decide(&agent("bob"), &get_prompt("files/draft", json!({})))
            .effect,
        Effect::Deny
    );
}

#[test]
fn prompt_arguments_default_to_an_empty_record() {
    let reads_topic = r#"permit(principal, action == Action::"get_prompt", resource)
when { context.arguments has topic && context.arguments.topic == "x" };"#;
    // Only tool arguments declared: the prompt's `topic` is undeclared, so the policy can
    // never apply and is refused.
    let err = load_err(
        &[("p.cedar", reads_topic)],
        &[("a.cedarschema", "type Arguments = { topic?: String };")],
    );
    assert!(matches!(err, PolicyError::Validation(_)), "{err}");
    let set = load(reads_topic, Some(PROMPT_ARGS));
    assert_eq!(
        set.decide(&agent("a"), &get_prompt("s/p", json!({"topic": "x"})))
            .effect,
        Effect::Allow
    );
    // And a folder declaring only prompt arguments still gets `Arguments = {}`.
    assert!(set.decide(&agent("a"), &call("s/t", json!({}))).effect == Effect::Deny);
}

#[test]
fn complete_sees_the_argument_and_the_value() {
    let set = load(
        r#"
@id("prompt-topics")
permit(principal, action == Action::"complete", resource == Prompt::"files/summarise")
when { context.argument == "topic" };
@id("paths")
permit(principal, action == Action::"complete", resource is Resource in Server::"files")
unless { context.value like "*..*" };
"#,
        None,
    );
    let complete = |target: CompletionRef, argument: &str, value: &str| Action::Complete {
        target,
        argument: argument.to_owned(),
        value: value.to_owned(),
    };
    let a = agent("a");
    let summarise = || CompletionRef::Prompt(prompt("files/summarise"));
    let template = || CompletionRef::Resource(resource("files/file:///{path}"));
    assert_eq!(
        set.decide(&a, &complete(summarise(), "topic", "q"))
            .policies,
        ["prompt-topics"]
    );
    assert_eq!(
        set.decide(&a, &complete(summarise(), "style", "")).effect,
        Effect::Deny
    );
    assert_eq!(
        set.decide(&a, &complete(template(), "path", "docs/"))
            .policies,
        ["paths"]
    );
    let d = set.decide(&a, &complete(template(), "path", "../etc"));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(
        d.reason,
        r#"no policy permits agent "a" to complete on "files/file:///{path}""#
    );
}

#[test]
fn complete_on_a_prompt_and_a_resource_with_one_id_are_told_apart() {
    let set = load(
        r#"permit(principal, action == Action::"complete", resource is Prompt);"#,
        None,
    );
    let complete = |target: CompletionRef| Action::Complete {
        target,
        argument: "x".to_owned(),
        value: String::new(),
    };
    let as_prompt = complete(CompletionRef::Prompt(prompt("s/mem://x")));
    let as_resource = complete(CompletionRef::Resource(resource("s/mem://x")));
    // Either order: the cached slice of one must not answer for the other.
    for _ in 0..2 {
        assert_eq!(set.decide(&agent("a"), &as_prompt).effect, Effect::Allow);
        assert_eq!(set.decide(&agent("a"), &as_resource).effect, Effect::Deny);
    }
    let set = load(
        r#"permit(principal, action == Action::"complete", resource is Prompt);"#,
        None,
    );
    assert_eq!(set.decide(&agent("a"), &as_resource).effect, Effect::Deny);
    assert_eq!(set.decide(&agent("a"), &as_prompt).effect, Effect::Allow);
}

#[test]
fn server_requests_have_the_server_as_principal_and_the_agent_as_resource() {
    let set = load(
        r#"
@id("files-samples-for-alice")
permit(principal == Server::"files", action == Action::"sample", resource == Agent::"alice");
@id("roots")
permit(principal, action in [Action::"list_roots", Action::"elicit"], resource);
@id("web-asks-nobody") @reason("the web server may not ask the user anything")
forbid(principal == Server::"web", action == Action::"elicit", resource);
"#,
        None,
    );
    let (alice, bob) = (agent("alice"), agent("bob"));
    let sample = |s: &str| Action::Sample { server: server(s) };
    let d = set.decide(&alice, &sample("files"));
    assert_eq!(d.policies, ["files-samples-for-alice"]);
    assert_eq!(d.effect, Effect::Allow);
    let d = set.decide(&bob, &sample("files"));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(
        d.reason,
        r#"no policy permits server "files" to sample on agent "bob""#
    );
    assert_eq!(set.decide(&alice, &sample("web")).effect, Effect::Deny);
    let roots = Action::ListRoots {
        server: server("web"),
    };
    assert_eq!(set.decide(&bob, &roots).policies, ["roots"]);
    let elicit = |s: &str| Action::Elicit { server: server(s) };
    assert_eq!(set.decide(&bob, &elicit("files")).effect, Effect::Allow);
    let d = set.decide(&bob, &elicit("web"));
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.reason, "the web server may not ask the user anything");
}

#[test]
fn a_broad_scope_covers_every_action_it_admits() {
    let set = load(
        r#"@id("alice-files") permit(principal == Agent::"alice", action, resource in Server::"files");
@id("everyone") permit(principal, action, resource == Agent::"bob");"#,
        None,
    );
    let alice = agent("alice");
    for action in [
        call("files/x", json!({})),
        read("files/file:///x"),
        get_prompt("files/p", json!({})),
        Action::Complete {
            target: CompletionRef::Prompt(prompt("files/p")),
            argument: "a".to_owned(),
            value: String::new(),
        },
    ] {
        assert_eq!(
            set.decide(&alice, &action).policies,
            ["alice-files"],
            "{action:?}"
        );
    }
    // The server is the principal of a sample: alice's permit does not apply to it.
    let sample = Action::Sample {
        server: server("files"),
    };
    assert_eq!(set.decide(&alice, &sample).effect, Effect::Deny);
    assert_eq!(set.decide(&agent("bob"), &sample).policies, ["everyone"]);
}

#[test]
fn listing_filters_evaluate_what_ignores_the_context() {
    let set = load(
        r#"
permit(principal == Agent::"alice", action == Action::"read_resource", resource in Server::"fs");
forbid(principal, action == Action::"read_resource", resource)
  when { resource.uri like "*secret*" };
permit(principal == Agent::"alice", action == Action::"get_prompt", resource in Server::"fs")
  when { resource.name == "summarise" };
permit(principal == Agent::"alice", action == Action::"get_prompt", resource == Prompt::"fs/draft")
  when { context.arguments has topic && context.arguments.topic == "x" };
forbid(principal == Agent::"bob", action == Action::"get_prompt", resource)
  when { context.arguments has topic };
"#,
        Some(PROMPT_ARGS),
    );
    let (alice, bob) = (agent("alice"), agent("bob"));
    assert!(set.may_read(&alice, &resource("fs/file:///a")));
    // A template is listed by its URI template.
    assert!(set.may_read(&alice, &resource("fs/file:///{path}")));
    assert!(!set.may_read(&alice, &resource("fs/file:///secret.txt")));
    assert!(!set.may_read(&alice, &resource("web/file:///a")));
    assert!(!set.may_read(&bob, &resource("fs/file:///a")));
    assert!(set.may_get_prompt(&alice, &prompt("fs/summarise")));
    // A permit that reads the arguments might hold for some request: shown.
    assert!(set.may_get_prompt(&alice, &prompt("fs/draft")));
    assert!(!set.may_get_prompt(&alice, &prompt("fs/other")));
    assert!(!set.may_get_prompt(&bob, &prompt("fs/summarise")));
    // The tools of that server are another action: none is listed.
    assert!(!set.may_call(&alice, &tool("fs/summarise")));
}

#[test]
fn new_entity_scopes_are_indexed_and_sliced() {
    let set = load(
        r#"
@id("x") permit(principal, action == Action::"read_resource", resource == Resource::"files/file:///x");
@id("files") permit(principal, action, resource in Server::"files") when { principal == Agent::"a" };
@id("prompts") permit(principal, action == Action::"get_prompt", resource is Prompt in Server::"files");
@id("tool") permit(principal, action == Action::"call_tool", resource == Tool::"files/file:///x");
@id("to-a") permit(principal is Server in Server::"files", action == Action::"sample", resource in Agent::"a");
"#,
        None,
    );
    let (a, b) = (agent("a"), agent("b"));
    let sample = Action::Sample {
        server: server("files"),
    };
    let cases: [(&AgentId, Action, &[&str]); 7] = [
        (&a, read("files/file:///x"), &["x", "files"]),
        (&b, read("files/file:///x"), &["x"]),
        (&b, read("files/file:///y"), &[]),
        (&b, get_prompt("files/file:///x", json!({})), &["prompts"]),
        (&b, call("files/file:///x", json!({})), &["tool"]),
        (&a, sample.clone(), &["to-a"]),
        (&b, sample, &[]),
    ];
    for (who, action, want) in cases {
        let d = set.decide(who, &action);
        assert_eq!(d.policies, want, "{who} {action:?}");
        assert_eq!(d, set.decide_unsliced(who, &action), "{who} {action:?}");
    }
}

#[test]
fn policies_that_can_never_apply_to_the_new_actions_are_refused() {
    for (text, why) in [
        (
            r#"forbid(principal, action == Action::"read_resource", resource == Tool::"files/x");"#,
            "a tool where a resource is expected",
        ),
        (
            r#"forbid(principal == Agent::"alice", action == Action::"sample", resource);"#,
            "an agent as the principal of a server's request",
        ),
        (
            r#"forbid(principal, action == Action::"elicit", resource in Server::"files");"#,
            "a server where the agent is expected",
        ),
        (
            r#"forbid(principal, action == Action::"read_resource", resource) when { resource has name && resource.name == "x" };"#,
            "a resource has a uri, not a name",
        ),
        (
            r#"forbid(principal, action == Action::"get_prompt", resource) when { context.arguments has topc && context.arguments.topc == "x" };"#,
            "misspelt, undeclared prompt argument",
        ),
    ] {
        let err = PolicySet::from_sources(
            &[SourceFile::new(
                "p.cedar",
                format!("permit(principal, action, resource);\n{text}\n"),
            )],
            &[SourceFile::new("a.cedarschema", PROMPT_ARGS)],
        )
        .err()
        .unwrap_or_else(|| panic!("accepted a policy that can never apply: {why}"));
        assert!(matches!(err, PolicyError::Validation(_)), "{why}: {err}");
        assert!(err.to_string().contains("p.cedar:2"), "{why}: {err}");
    }
}

#[test]
fn a_policy_reading_one_actions_attributes_must_name_its_action() {
    let err = load_err(
        &[(
            "p.cedar",
            "forbid(principal, action, resource)\nwhen { resource.name like \"delete*\" };",
        )],
        &[],
    );
    let PolicyError::Validation(Diagnostics(ds)) = &err else {
        panic!("{err}")
    };
    assert!(!ds.is_empty());
    for d in ds {
        assert_eq!(d.position.map(|p| p.line), Some(2), "{err}");
        assert!(
            d.help
                .as_deref()
                .is_some_and(|h| h.contains("action == Action::\"call_tool\"")),
            "{err}"
        );
    }
    // Named, it loads.
    load(
        "forbid(principal, action == Action::\"call_tool\", resource)\nwhen { resource.name like \"delete*\" };",
        None,
    );
}

#[test]
fn new_actions_share_the_slice_cache() {
    let set = load("permit(principal, action, resource);", None);
    let a = agent("a");
    set.decide(&a, &read("fs/file:///a"));
    set.decide(&a, &read("fs/file:///a"));
    set.decide(&a, &get_prompt("fs/file:///a", json!({})));
    set.decide(
        &a,
        &Action::Elicit {
            server: server("fs"),
        },
    );
    assert_eq!(set.cached_slices(), 3);
}

// === cases for every action ===

#[test]
fn cases_name_any_action() {
    let set = load(
        r#"
@id("read") permit(principal == Agent::"alice", action == Action::"read_resource", resource in Server::"fs");
@id("prompt") permit(principal, action == Action::"get_prompt", resource == Prompt::"fs/summarise")
  when { context.arguments has topic && context.arguments.topic == "q3" };
@id("complete") permit(principal, action == Action::"complete", resource is Resource)
  when { context.argument == "path" && context.value like "docs/*" };
@id("sample") permit(principal == Server::"fs", action == Action::"sample", resource);
@id("http") permit(principal, action == Action::"http_request", resource == Host::"example.com")
  when { context.method == "GET" && context.port == 443 };
@id("git") permit(principal, action == Action::"exec", resource == Program::"/usr/bin/git")
  unless { context.argv.contains("push") };
"#,
        Some(PROMPT_ARGS),
    );
    let cases = parse_cases(
        "cases.toml",
        r#"
[[case]]
name = "a tool call, as before"
agent = "alice"
tool = "fs/read"
expect = "deny"

[[case]]
name = "alice reads a resource"
agent = "alice"
action = "read_resource"
resource = "fs/file:///a/b.txt"
expect = "allow"
policies = ["read"]

[[case]]
name = "a prompt with its arguments"
agent = "bob"
action = "get_prompt"
prompt = "fs/summarise"
arguments = { topic = "q3" }
expect = "allow"

[[case]]
name = "completing a template's path"
agent = "bob"
action = "complete"
resource = "fs/file:///{path}"
argument = "path"
value = "docs/a"
expect = "allow"

[[case]]
name = "completing a prompt's argument"
agent = "bob"
action = "complete"
prompt = "fs/summarise"
argument = "topic"
expect = "deny"

[[case]]
name = "fs samples for bob"
agent = "bob"
action = "sample"
server = "fs"
expect = "allow"

[[case]]
name = "web may not list bob's roots"
agent = "bob"
action = "list_roots"
server = "web"
expect = "deny"

[[case]]
name = "a GET through the egress proxy"
agent = "bob"
action = "http_request"
host = "Example.com"
port = 443
path = "/index.html"
expect = "allow"
policies = ["http"]

[[case]]
name = "no push"
agent = "bob"
action = "exec"
program = "/usr/bin/git"
argv = ["git", "push"]
expect = "deny"

[[case]]
name = "git status"
agent = "bob"
action = "exec"
program = "/usr/bin/git"
expect = "allow"

[[case]]
name = "no raw connects"
agent = "bob"
action = "connect"
host = "example.com"
port = 443
expect = "deny"
"#,
    )
    .unwrap();
    assert_eq!(cases.len(), 11);
    assert_eq!(cases[1].action, read("fs/file:///a/b.txt"));
    assert_eq!(
        cases[5].action,
        Action::Sample {
            server: server("fs")
        }
    );
    let results = run_cases(&set, &cases);
    for r in &results {
        assert!(r.passed, "{r:?}");
    }
}

#[test]
fn cases_refuse_keys_their_action_does_not_take() {
    for (body, says) in [
        (
            "action = \"read_resource\"\ntool = \"fs/x\"",
            "`tool` does not apply to action read_resource",
        ),
        (
            "action = \"read_resource\"",
            "action read_resource needs `resource = \"server/uri\"`",
        ),
        (
            "tool = \"fs/x\"\nserver = \"fs\"",
            "`server` does not apply to action call_tool",
        ),
        ("action = \"sample\"", "action sample needs `server`"),
        (
            "action = \"exec\"\nhost = \"a.com\"",
            "`host` does not apply to action exec",
        ),
        (
            "action = \"connect\"\nhost = \"a.com\"",
            "action connect needs `port = 443`",
        ),
        (
            "action = \"complete\"\nargument = \"a\"",
            "exactly one of `prompt` and `resource`",
        ),
        (
            "action = \"complete\"\nprompt = \"fs/p\"\nresource = \"fs/r\"\nargument = \"a\"",
            "exactly one of `prompt` and `resource`",
        ),
        (
            "action = \"complete\"\nprompt = \"fs/p\"",
            "needs `argument",
        ),
        (
            "action = \"get_prompt\"\nprompt = \"fs/p\"\nvalue = \"v\"",
            "`value` does not apply",
        ),
        ("action = \"read\"\nresource = \"fs/x\"", "unknown variant"),
        (
            "tool = \"fs/x\"\naction = \"call_tool\"\nextra = 1",
            "unknown field",
        ),
    ] {
        let text =
            format!("[[case]]\nname = \"x\"\nagent = \"alice\"\nexpect = \"deny\"\n{body}\n");
        let err = parse_cases("c.toml", &text).unwrap_err();
        assert!(matches!(err, PolicyError::Cases(_)), "{body}: {err}");
        assert!(err.to_string().contains(says), "{body}: {err}");
    }
    // A malformed target is reported at its own line.
    let err = parse_cases(
        "c.toml",
        "[[case]]\nname = \"x\"\nagent = \"alice\"\nexpect = \"deny\"\naction = \"read_resource\"\nresource = \"no-server\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("c.toml:6:"), "{err}");
    assert!(err.to_string().contains("server/uri"), "{err}");
}

// === the documentation's examples ===

/// The fenced blocks of `lang` in the policy reference.
fn reference_blocks(lang: &str) -> Vec<&'static str> {
    const REFERENCE: &str = include_str!("../../../docs/policy-reference.md");
    let fence = format!("```{lang}\n");
    REFERENCE
        .split(fence.as_str())
        .skip(1)
        .filter_map(|rest| rest.split("\n```").next())
        .collect()
}

#[test]
fn reference_examples_load_and_decide_as_documented() {
    let schemas: Vec<SourceFile> = reference_blocks("cedarschema")
        .into_iter()
        .enumerate()
        .map(|(i, text)| SourceFile::new(format!("reference-{i}.cedarschema"), text))
        .collect();
    assert!(!schemas.is_empty());
    let policies: Vec<SourceFile> = reference_blocks("cedar")
        .into_iter()
        .enumerate()
        .map(|(i, text)| SourceFile::new(format!("reference-{i}.cedar"), text))
        .collect();
    assert!(policies.len() >= 3, "{}", policies.len());
    let set = match PolicySet::from_sources(&policies, &schemas) {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    };
    let mut ran = 0;
    for text in reference_blocks("toml") {
        let cases = match parse_cases("reference.toml", text) {
            Ok(c) => c,
            Err(e) => panic!("{e}\n{text}"),
        };
        for r in run_cases(&set, &cases) {
            assert!(r.passed, "{r:?}");
            ran += 1;
        }
    }
    assert!(ran >= 8, "{ran}");
}

#[test]
fn example_policy_folder_passes_its_cases() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let set = match PolicySet::load_dir(&root) {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    };
    let cases = match load_cases(&root.join("tests.toml")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert!(cases.len() >= 10);
    for r in run_cases(&set, &cases) {
        assert!(r.passed, "{r:?}");
    }
}
