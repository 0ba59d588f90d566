//! `warden up` between implementations nobody here wrote: the official Python and TypeScript
//! MCP SDKs as the agent's client over Streamable HTTP, and three npm reference servers
//! upstream at once (`server-everything`, `server-filesystem`, `server-memory`). The
//! TypeScript client also goes through `warden mcp` over stdio. `scripts/test-deps` installs
//! the clients and servers; a missing one fails the test with a message saying so.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use support::up::{Up, add_agent, setup_with_config, start};
use support::{Setup, repo_root, warden_bin};

const UPSTREAMS: [&str; 3] = ["everything", "filesystem", "memory"];

/// The filesystem tools that only read; every other one writes, moves or creates.
const FS_READ_ONLY: [&str; 8] = [
    "read_text_file",
    "read_multiple_files",
    "list_directory",
    "list_directory_with_sizes",
    "directory_tree",
    "search_files",
    "get_file_info",
    "list_allowed_directories",
];

/// The resource of server-everything that policy keeps from every agent.
const FORBIDDEN_DOC: &str = "demo://resource/static/document/structure.md";

fn policy() -> String {
    let read_only = FS_READ_ONLY.map(|t| format!("{t:?}")).join(", ");
    format!(
        r#"
@id("tester-everything")
permit (principal == Agent::"tester", action, resource in Server::"everything");

@id("tester-memory")
permit (principal == Agent::"tester", action, resource in Server::"memory");

@id("tester-filesystem-read-only")
permit (principal == Agent::"tester", action == Action::"call_tool", resource in Server::"filesystem")
when {{ [{read_only}].contains(resource.name) }};

@id("no-structure-doc")
@reason("the structure document is off limits")
forbid (principal, action == Action::"read_resource", resource in Server::"everything")
when {{ resource.uri == "{FORBIDDEN_DOC}" }};
"#
    )
}

fn interop(rel: &str) -> PathBuf {
    let path = repo_root().join("tests/interop").join(rel);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test-deps (scripts/test does) to install the interop clients and servers",
        path.display()
    );
    path
}

fn bin(name: &str) -> String {
    interop(&format!("node_modules/.bin/{name}"))
        .display()
        .to_string()
}

fn python() -> PathBuf {
    let path = repo_root().join(".venv/bin/python");
    assert!(
        path.exists(),
        "the Python MCP SDK venv is missing: run scripts/test-deps (scripts/test does)"
    );
    path
}

fn node() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("node"))
                .find(|p| p.is_file())
        })
        .expect("node is not on PATH: install Node.js 20 or newer (scripts/test-deps does)")
}

/// The two official SDKs, each driven by a JSON script (see tests/interop/mcp_client.py).
#[derive(Debug, Clone, Copy)]
enum Sdk {
    Python,
    TypeScript,
}

impl Sdk {
    fn command(self) -> Command {
        match self {
            Sdk::Python => {
                let mut c = Command::new(python());
                c.arg(interop("mcp_client.py"));
                c
            }
            Sdk::TypeScript => {
                interop("node_modules/@modelcontextprotocol/sdk/package.json");
                let mut c = Command::new(node());
                c.arg(interop("ts_client.mjs"));
                c
            }
        }
    }

    /// Runs `script`; the report of a session that ran every step.
    fn run(self, script: Value) -> Value {
        let mut child = self
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {self:?} client: {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("the {self:?} client printed no report ({e}); stderr: {stderr}")
        });
        assert!(
            report.get("fatal").is_none() && out.status.success(),
            "the {self:?} session broke ({}): {report}\n{stderr}",
            out.status
        );
        report
    }

    /// Runs `steps` as agent `token` against a running `warden up`.
    fn over_http(self, up: &Up, token: &str, steps: Value) -> Value {
        self.run(json!({"url": up.url(), "token": token, "timeout_seconds": 30, "steps": steps}))
    }

    /// Runs `steps` through `warden mcp` as agent "tester" in front of configured `server`.
    fn over_stdio(self, setup: &Setup, server: &str, steps: Value) -> Value {
        let command = [
            warden_bin().display().to_string(),
            "mcp".into(),
            "--agent".into(),
            "tester".into(),
            "--config".into(),
            setup.config().display().to_string(),
            "--server".into(),
            server.into(),
        ];
        self.run(json!({"command": command, "timeout_seconds": 30, "steps": steps}))
    }
}

/// A setup with the three reference servers configured; the filesystem server is rooted in
/// the setup's workspace, the memory server keeps its graph in the setup's directory.
fn three_servers() -> Setup {
    setup_with_config(&policy(), |s| {
        let workspace = s.path("workspace").canonicalize().unwrap();
        let memory = s.path("memory.jsonl");
        let everything = [bin("mcp-server-everything"), "stdio".into()];
        let filesystem = [
            bin("mcp-server-filesystem"),
            workspace.display().to_string(),
        ];
        // Warden's config has no per-server environment; `env` sets the graph's file.
        let memory = [
            "env".into(),
            format!("MEMORY_FILE_PATH={}", memory.display()),
            bin("mcp-server-memory"),
        ];
        format!(
            "[servers.everything]\ncommand = {everything:?}\n\n\
             [servers.filesystem]\ncommand = {filesystem:?}\n\n\
             [servers.memory]\ncommand = {memory:?}\n"
        )
    })
}

/// `warden up` in front of the three servers, and the token of agent "tester".
fn start_three() -> (Up, String) {
    let setup = three_servers();
    let token = add_agent(&setup, "tester");
    (start(setup, &UPSTREAMS), token)
}

fn workspace(setup: &Setup) -> PathBuf {
    setup.path("workspace").canonicalize().unwrap()
}

fn everything_doc(name: &str) -> String {
    std::fs::read_to_string(interop(&format!(
        "node_modules/@modelcontextprotocol/server-everything/dist/docs/{name}"
    )))
    .unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn text(v: &Value) -> &str {
    v["text"].as_str().unwrap_or_else(|| panic!("no text: {v}"))
}

/// Warden's decision in a refused call's `_meta`, or in a refused request's error data.
fn decision_effect(v: &Value) -> Option<&str> {
    v.get("warden/decision")?.get("effect")?.as_str()
}

/// (action, target, effect) of every decision in the journal, all of them for `agent`.
fn decisions_of(setup: &Setup, agent: &str) -> Vec<(String, String, String)> {
    setup
        .decisions()
        .iter()
        .map(|d| {
            assert_eq!(d.agent.as_str(), agent, "{d:?}");
            let field = |k: &str| d.body[k].as_str().unwrap_or_default().to_owned();
            (field("action"), field("target"), field("effect"))
        })
        .collect()
}

fn has(decisions: &[(String, String, String)], action: &str, target: &str, effect: &str) -> bool {
    decisions
        .iter()
        .any(|(a, t, e)| a == action && t == target && e == effect)
}

const OBSERVATION: &str = "seen through warden";

/// The steps of the core flow over HTTP: one endpoint, every server's names namespaced.
fn core_steps(ws: &Path) -> Value {
    let notes = ws.join("notes.txt").display().to_string();
    json!([
        {"list_tools": true},
        {"list_prompts": true},
        {"call": "everything__get-sum", "arguments": {"a": 20, "b": 22}},
        {"call": "filesystem__read_text_file", "arguments": {"path": notes}},
        {"call": "memory__create_entities", "arguments": {"entities": [
            {"name": "warden-interop", "entityType": "test", "observations": [OBSERVATION]}]}},
        {"call": "memory__read_graph", "arguments": {}},
        {"call": "filesystem__write_file", "arguments": {"path": notes, "content": "overwritten"}},
        {"call": "everything__get-resource-links", "arguments": {"count": 2}},
        {"read_resource": "everything+demo://resource/static/document/features.md"},
        {"read_resource": format!("everything+{FORBIDDEN_DOC}")},
        {"read_resource": "memory+memory://knowledge-graph"},
        {"get_prompt": "everything__resource-prompt",
         "arguments": {"resourceType": "Text", "resourceId": "2"}},
        {"read_resource": "everything+demo://resource/dynamic/text/2"},
        {"get_prompt": "everything__simple-prompt"},
        {"ping": true}
    ])
}

/// Checks the report of [`core_steps`] and the journal it left.
fn check_core(sdk: Sdk, report: &Value, setup: &Setup) {
    let ws = workspace(setup);
    let tools = strings(&report["tools"]);
    for server in UPSTREAMS {
        assert!(
            tools.iter().any(|t| t.starts_with(&format!("{server}__"))),
            "{sdk:?}: no tool of {server}: {tools:?}"
        );
    }
    assert!(
        tools
            .iter()
            .all(|t| UPSTREAMS.iter().any(|s| t.starts_with(&format!("{s}__"))))
    );
    assert!(
        tools.contains(&"filesystem__read_text_file".to_owned()),
        "{tools:?}"
    );
    for write in ["write_file", "edit_file", "create_directory", "move_file"] {
        assert!(
            !tools.contains(&format!("filesystem__{write}")),
            "{sdk:?}: a write tool is listed: {tools:?}"
        );
    }
    let prompts = strings(&report["prompts"]);
    assert!(
        prompts.contains(&"everything__resource-prompt".to_owned()),
        "{prompts:?}"
    );

    let calls = report["calls"].as_array().unwrap();
    assert!(text(&calls[0]).contains("42"), "{sdk:?}: {}", calls[0]);
    assert_eq!(
        text(&calls[1]),
        std::fs::read_to_string(ws.join("notes.txt")).unwrap(),
        "{sdk:?}"
    );
    assert_eq!(calls[2]["isError"], false, "{sdk:?}: {}", calls[2]);
    assert!(
        text(&calls[3]).contains(OBSERVATION),
        "{sdk:?}: {}",
        calls[3]
    );
    // The write is refused as a tool result carrying Warden's decision; the file is as it was.
    assert_eq!(calls[4]["isError"], true, "{sdk:?}: {}", calls[4]);
    assert!(text(&calls[4]).contains("Warden refused"), "{}", calls[4]);
    assert_eq!(
        decision_effect(&calls[4]["meta"]),
        Some("deny"),
        "{}",
        calls[4]
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("notes.txt")).unwrap(),
        "the notes\n"
    );
    // Resource links come back in Warden's namespace, so the agent can read them through it.
    let links = strings(&calls[5]["resourceUris"]);
    assert!(
        !links.is_empty() && links.iter().all(|u| u.starts_with("everything+")),
        "{sdk:?}: {links:?}"
    );

    let reads = report["reads"].as_array().unwrap();
    let features = &reads[0]["contents"][0];
    assert_eq!(features["uri"], reads[0]["uri"], "{sdk:?}");
    assert_eq!(text(features), everything_doc("features.md"), "{sdk:?}");
    assert_eq!(reads[1]["error"]["code"], -32010, "{sdk:?}: {}", reads[1]);
    assert_eq!(
        decision_effect(&reads[1]["error"]["data"]),
        Some("deny"),
        "{sdk:?}: {}",
        reads[1]
    );
    assert!(
        text(&reads[2]["contents"][0]).contains(OBSERVATION),
        "{}",
        reads[2]
    );
    assert!(
        text(&reads[3]["contents"][0]).starts_with("Resource 2"),
        "{}",
        reads[3]
    );

    // The prompt embeds a resource; its URI is presented so that reading it back works.
    let results = report["promptResults"].as_array().unwrap();
    let embedded = &results[0]["messages"][1];
    assert_eq!(embedded["type"], "resource", "{sdk:?}: {}", results[0]);
    assert_eq!(embedded["uri"], reads[3]["uri"], "{sdk:?}: {}", results[0]);
    assert_eq!(results[1]["messages"][0]["role"], "user", "{}", results[1]);
    assert!(!text(&results[1]["messages"][0]).is_empty());
    assert_eq!(report["pings"], 1);

    // One decision per governed step, each durable in the journal.
    let decisions = decisions_of(setup, "tester");
    assert_eq!(decisions.len(), 12, "{sdk:?}: {decisions:#?}");
    for (action, target, effect) in [
        ("call_tool", "everything/get-sum", "allow"),
        ("call_tool", "filesystem/read_text_file", "allow"),
        ("call_tool", "memory/create_entities", "allow"),
        ("call_tool", "filesystem/write_file", "deny"),
        (
            "read_resource",
            &format!("everything/{FORBIDDEN_DOC}"),
            "deny",
        ),
        ("read_resource", "memory/memory://knowledge-graph", "allow"),
        ("get_prompt", "everything/resource-prompt", "allow"),
    ] {
        assert!(
            has(&decisions, action, target, effect),
            "{sdk:?}: no {effect} of {action} on {target}: {decisions:#?}"
        );
    }
}

#[test]
fn python_sdk_over_http_through_three_reference_servers() {
    let (up, token) = start_three();
    let report = Sdk::Python.over_http(&up, &token, core_steps(&workspace(&up.setup)));
    check_core(Sdk::Python, &report, &up.setup);
}

#[test]
fn typescript_sdk_over_http_through_three_reference_servers() {
    let (up, token) = start_three();
    let report = Sdk::TypeScript.over_http(&up, &token, core_steps(&workspace(&up.setup)));
    check_core(Sdk::TypeScript, &report, &up.setup);
}

#[test]
fn typescript_sdk_over_stdio_through_warden_mcp() {
    let setup = three_servers();
    let ws = workspace(&setup);
    let notes = ws.join("notes.txt").display().to_string();
    let sdk = Sdk::TypeScript;

    let report = sdk.over_stdio(
        &setup,
        "everything",
        json!([
            {"list_tools": true},
            {"call": "get-sum", "arguments": {"a": 20, "b": 22}},
            {"read_resource": "demo://resource/static/document/features.md"},
            {"get_prompt": "resource-prompt", "arguments": {"resourceType": "Text", "resourceId": "2"}}
        ]),
    );
    assert!(
        strings(&report["tools"]).contains(&"get-sum".to_owned()),
        "{report}"
    );
    assert!(text(&report["calls"][0]).contains("42"), "{report}");
    assert_eq!(
        text(&report["reads"][0]["contents"][0]),
        everything_doc("features.md")
    );
    assert_eq!(
        report["promptResults"][0]["messages"][1]["uri"], "demo://resource/dynamic/text/2",
        "{report}"
    );

    let report = sdk.over_stdio(
        &setup,
        "filesystem",
        json!([
            {"list_tools": true},
            {"call": "read_text_file", "arguments": {"path": notes}},
            {"call": "write_file", "arguments": {"path": notes, "content": "overwritten"}}
        ]),
    );
    let tools = strings(&report["tools"]);
    assert!(tools.contains(&"read_text_file".to_owned()), "{tools:?}");
    assert!(
        tools.iter().all(|t| FS_READ_ONLY.contains(&t.as_str())),
        "{tools:?}"
    );
    assert_eq!(text(&report["calls"][0]), "the notes\n", "{report}");
    let refused = &report["calls"][1];
    assert_eq!(refused["isError"], true, "{report}");
    assert_eq!(decision_effect(&refused["meta"]), Some("deny"), "{report}");
    assert_eq!(
        std::fs::read_to_string(ws.join("notes.txt")).unwrap(),
        "the notes\n"
    );

    let report = sdk.over_stdio(
        &setup,
        "memory",
        json!([
            {"call": "create_entities", "arguments": {"entities": [
                {"name": "warden-interop", "entityType": "test", "observations": [OBSERVATION]}]}},
            {"call": "read_graph", "arguments": {}}
        ]),
    );
    assert!(text(&report["calls"][1]).contains(OBSERVATION), "{report}");

    let decisions = decisions_of(&setup, "tester");
    let tool_calls: Vec<_> = decisions
        .iter()
        .filter(|(action, _, _)| action == "call_tool")
        .collect();
    assert_eq!(tool_calls.len(), 5, "{decisions:#?}");
    for (target, effect) in [
        ("everything/get-sum", "allow"),
        ("filesystem/read_text_file", "allow"),
        ("filesystem/write_file", "deny"),
        ("memory/create_entities", "allow"),
        ("memory/read_graph", "allow"),
    ] {
        assert!(
            has(&decisions, "call_tool", target, effect),
            "no {effect} of {target}: {decisions:#?}"
        );
    }
}

/// What one server lists when asked directly, without Warden: (resources, templates, prompts).
/// Only what its capabilities offer is asked for: a server without prompts refuses the list.
fn listed_directly(command: Vec<String>) -> (Vec<String>, Vec<String>, Vec<String>) {
    let offers = Sdk::Python.run(json!({"command": command, "steps": []}))["capabilities"].clone();
    let mut steps = Vec::new();
    if offers.get("resources").is_some() {
        steps.extend([
            json!({"list_resources": true}),
            json!({"list_resource_templates": true}),
        ]);
    }
    if offers.get("prompts").is_some() {
        steps.push(json!({"list_prompts": true}));
    }
    let report =
        Sdk::Python.run(json!({"command": command, "timeout_seconds": 30, "steps": steps}));
    let list = |key: &str| report.get(key).map(strings).unwrap_or_default();
    (
        list("resources"),
        list("resourceTemplates"),
        list("prompts"),
    )
}

#[test]
fn lists_are_paged_across_upstreams_and_filtered_by_policy() {
    let (up, token) = start_three();
    let memory_file = up.setup.path("memory-direct.jsonl");

    // What the policy lets "tester" see: every resource, template and prompt of everything
    // and memory but the forbidden document; filesystem offers none of them.
    let mut resources = BTreeSet::new();
    let mut templates = BTreeSet::new();
    let mut prompts = BTreeSet::new();
    for (server, command) in [
        (
            "everything",
            vec![bin("mcp-server-everything"), "stdio".into()],
        ),
        (
            "memory",
            vec![
                "env".into(),
                format!("MEMORY_FILE_PATH={}", memory_file.display()),
                bin("mcp-server-memory"),
            ],
        ),
    ] {
        let (r, t, p) = listed_directly(command);
        assert!(!r.is_empty(), "{server} lists no resources");
        resources.extend(
            r.iter()
                .filter(|u| !(server == "everything" && u.as_str() == FORBIDDEN_DOC))
                .map(|u| format!("{server}+{u}")),
        );
        templates.extend(t.iter().map(|u| format!("{server}+{u}")));
        prompts.extend(p.iter().map(|n| format!("{server}__{n}")));
    }
    assert!(resources.len() >= 2 && !templates.is_empty() && !prompts.is_empty());

    for sdk in [Sdk::Python, Sdk::TypeScript] {
        let report = sdk.over_http(
            &up,
            &token,
            json!([
                {"list_resources": true},
                {"list_resource_templates": true},
                {"list_prompts": true}
            ]),
        );
        // Following nextCursor to the end yields each item exactly once.
        for (key, expected) in [
            ("resources", &resources),
            ("resourceTemplates", &templates),
            ("prompts", &prompts),
        ] {
            let listed = strings(&report[key]);
            let unique: BTreeSet<String> = listed.iter().cloned().collect();
            assert_eq!(
                unique.len(),
                listed.len(),
                "{sdk:?}: duplicates in {listed:?}"
            );
            assert_eq!(&unique, expected, "{sdk:?}: {key}");
        }
        // No upstream here pages its lists, so Warden's first page holds every server's
        // items: a client that reads one page sees them all.
        assert_eq!(
            report["pages"]["resources"].as_u64(),
            Some(1),
            "{sdk:?}: {}",
            report["pages"]
        );
    }
    // Listing decides nothing and journals nothing.
    assert!(up.setup.decisions().is_empty());
}

/// The policy folder and configuration are shared by both commands, so a forbid on a
/// resource must hold whichever way the agent connects.
#[test]
fn warden_mcp_refuses_a_forbidden_resource_like_warden_up() {
    let setup = three_servers();
    let report = Sdk::TypeScript.over_stdio(
        &setup,
        "everything",
        json!([
            {"list_resources": true},
            {"read_resource": FORBIDDEN_DOC}
        ]),
    );
    let read = &report["reads"][0];
    assert_eq!(
        decision_effect(&read["error"]["data"]),
        Some("deny"),
        "warden mcp let the forbidden resource through: {}",
        json!({"read": read["uri"], "contents": read.get("contents").is_some()})
    );
    assert!(
        !strings(&report["resources"]).contains(&FORBIDDEN_DOC.to_owned()),
        "{report}"
    );
    let decisions = decisions_of(&setup, "tester");
    assert!(
        has(
            &decisions,
            "read_resource",
            &format!("everything/{FORBIDDEN_DOC}"),
            "deny"
        ),
        "{decisions:#?}"
    );
}
