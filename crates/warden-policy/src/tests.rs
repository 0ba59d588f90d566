//! Tests of the whole stage: loading, locating errors, decisions, slicing and cases.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};
use warden_core::{Action, AgentId, Effect, ServerName, ToolRef};

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
fn allow_names_permits_by_line_or_id() {
    let set = load(
        "// agents\npermit(principal == Agent::\"alice\", action, resource in Server::\"files\");\n\n@id(\"all-read\")\npermit(principal, action, resource)\nwhen { resource.name == \"read_file\" };\n",
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
forbid(principal, action, resource) when { resource.name == "delete_file" };
forbid(principal, action, resource) when { resource.name like "delete*" };
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
permit(principal, action, resource in Server::"bank")
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
forbid(principal, action, resource)
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
permit(principal, action, resource)
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
        r#"permit(principal, action, resource)
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
        r#"permit(principal, action, resource) unless { context.arguments has path };"#,
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
        r#"permit(principal, action, resource)
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
permit(principal, action, resource in Server::"fs")
  when { resource.name == "read" || resource.name == "list" };
permit(principal == Agent::"alice", action, resource == Tool::"fs/write")
  when { context.arguments has path && context.arguments.path like "reports/*" };
forbid(principal == Agent::"bob", action, resource in Server::"fs")
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
        r#"permit(principal, action, resource in Server::"fs") when { resource.name like "read*" };
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

permit(principal, action, resource)
when { context.arguments.path == "/etc" };

permit(principal, action, resource)
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
            "permit(principal, action, resource)\nwhen { context.arguments.path == \"/\" };",
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
        "permit(principal, action, resource); forbid(principal, action, resource) when { resource.name == \"x\" };",
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
        "forbid(principal, action, resource) when { context.arguments has path && context.arguments.path like \"/etc/*\" };",
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
    assert_eq!(cases[0].arguments["path"], "/x");
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
const TOOLS: [&str; 4] = ["s0/t0", "s0/t1", "s1/t0", "s1/t2"];

fn arb_principal() -> impl Strategy<Value = String> {
    let a = prop::sample::select(AGENTS.to_vec());
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

fn arb_action() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("action".to_owned()),
        Just("action == Action::\"call_tool\"".to_owned()),
        Just("action in [Action::\"call_tool\"]".to_owned()),
    ]
}

fn arb_resource() -> impl Strategy<Value = String> {
    let t = prop::sample::select(TOOLS.to_vec());
    let s = prop::sample::select(vec!["s0", "s1", "s2"]);
    prop_oneof![
        Just("resource".to_owned()),
        t.clone().prop_map(|t| format!("resource == Tool::\"{t}\"")),
        t.prop_map(|t| format!("resource in Tool::\"{t}\"")),
        s.clone()
            .prop_map(|s| format!("resource in Server::\"{s}\"")),
        Just("resource is Tool".to_owned()),
        s.prop_map(|s| format!("resource is Tool in Server::\"{s}\"")),
    ]
}

fn arb_condition() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        1 => (0i64..20).prop_map(|n| format!(
            " when {{ context.arguments has amount && context.arguments.amount > {n} }}"
        )),
        1 => Just(
            " when { context.arguments has path && context.arguments.path like \"/tmp/*\" }"
                .to_owned()
        ),
        1 => prop::sample::select(vec!["t0", "t1", "t2"])
            .prop_map(|t| format!(" unless {{ resource.name == \"{t}\" }}")),
        1 => prop::sample::select(AGENTS.to_vec())
            .prop_map(|a| format!(" when {{ principal == Agent::\"{a}\" }}")),
        1 => Just(" when { resource.server == \"s1\" }".to_owned()),
    ]
}

fn arb_policy() -> impl Strategy<Value = String> {
    let annotation = prop_oneof![
        3 => Just(""),
        1 => Just("@ask "),
        1 => Just("@ask(\"check\") "),
        1 => Just("@reason(\"no\") "),
    ];
    (
        annotation,
        prop::bool::ANY,
        arb_principal(),
        arb_action(),
        arb_resource(),
        arb_condition(),
    )
        .prop_map(|(ann, permit, p, a, r, cond)| {
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

fn arb_request() -> impl Strategy<Value = (&'static str, &'static str, Value)> {
    (
        prop::sample::select(AGENTS.to_vec()),
        prop::sample::select(TOOLS.to_vec()),
        arb_arguments(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn sliced_decisions_equal_plain_cedar(
        policies in prop::collection::vec(arb_policy(), 1..14),
        requests in prop::collection::vec(arb_request(), 1..12),
    ) {
        let text = policies.join("\n");
        let set = PolicySet::from_sources(
            &[SourceFile::new("p.cedar", text.as_str())],
            &[SourceFile::new("a.cedarschema", "type Arguments = { amount?: Long, path?: String };")],
        );
        let set = match set {
            Ok(s) => s,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n{text}"))),
        };
        for (a, t, args) in requests {
            let action = call(t, args);
            let sliced = set.decide(&agent(a), &action);
            let plain = set.decide_unsliced(&agent(a), &action);
            prop_assert_eq!(&sliced, &plain, "{} calling {}\n{}", a, t, text);
            // The cached slice answers the same.
            prop_assert_eq!(&set.decide(&agent(a), &action), &plain);
            if !set.may_call(&agent(a), &tool(t)) {
                prop_assert_eq!(sliced.effect, Effect::Deny);
            }
        }
    }
}

#[test]
fn policies_that_can_never_apply_are_refused() {
    for (text, why) in [
        (
            r#"forbid(principal, action, resource) when { context.arguments has pth && context.arguments.pth like "*secrets*" };"#,
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
