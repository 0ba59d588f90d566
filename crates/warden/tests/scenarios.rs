//! The scenario suite: each file of `examples/scenarios/` is an agent's script (benign, rogue,
//! or benign turning rogue) with the monitor configuration it runs under and what the
//! detectors must make of it. Each runs the real `warden mcp` in front of the real example
//! server, then reads the journal: which detectors alerted, whether and by whom the agent was
//! quarantined, and that every action after the quarantine was refused.
//!
//! The format is described in `examples/scenarios/README.md`.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};
use support::*;
use warden_journal::JournalRecord;

// === the format ===

/// One scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// What the agent does and why the expectation holds, for a reader.
    description: String,
    /// The agent's name (`warden mcp --agent`).
    agent: String,
    /// TOML appended to `warden.toml` (detector tables, playbook, `[responses]`); none means
    /// Warden's default detectors and playbook.
    #[serde(default)]
    monitor: Text,
    /// Cedar added beside the example policies.
    #[serde(default)]
    policy: Text,
    /// Workspace files to create, path relative to the workspace → content.
    #[serde(default)]
    files: BTreeMap<String, String>,
    /// The agent's MCP calls through `warden mcp`, or ...
    #[serde(default)]
    steps: Vec<Step>,
    /// ... a shell script the agent runs inside `warden run`'s sandbox.
    #[serde(default)]
    run: Option<String>,
    expect: Expect,
}

/// Multi-line text, written as one string or as a list of lines.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Text {
    #[default]
    None,
    One(String),
    Lines(Vec<String>),
}

impl Text {
    fn joined(&self) -> String {
        match self {
            Text::None => String::new(),
            Text::One(s) => s.clone(),
            Text::Lines(lines) => lines.join("\n"),
        }
    }
}

/// One call the agent makes, `repeat` times.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// What the agent means to do, for a reader and for failure messages.
    #[serde(default)]
    say: String,
    tool: String,
    #[serde(default = "empty_object")]
    arguments: Value,
    #[serde(default = "one")]
    repeat: usize,
    /// The policy's effect (`allow` or `deny`), checked while the agent is not quarantined.
    #[serde(default)]
    effect: Option<String>,
    /// Text the result must contain, checked while the agent is not quarantined.
    #[serde(default)]
    says: Option<String>,
    /// This step (one of its repetitions) is the one after which the agent is quarantined.
    #[serde(default)]
    triggers: bool,
    /// The agent's own pace: how long it waits before each repetition. Part of what the
    /// scenario is (a rate over time), not a wait for Warden.
    #[serde(default)]
    pause_ms: u64,
}

fn empty_object() -> Value {
    json!({})
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// Alerts per detector, exactly; a detector not named must raise none.
    #[serde(default)]
    alerts: BTreeMap<String, usize>,
    /// The detector whose alert quarantines the agent.
    #[serde(default)]
    quarantined_by: Option<String>,
    /// The agent must end the scenario free.
    #[serde(default)]
    never_quarantined: bool,
}

// === running one ===

fn scenarios_dir() -> PathBuf {
    repo_root().join("examples/scenarios")
}

fn load(name: &str) -> Scenario {
    let path = scenarios_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("scenario {name}: cannot read {}: {e}", path.display()));
    let scenario: Scenario = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("scenario {name}: {} is not a scenario: {e}", path.display()));
    assert!(
        scenario.expect.never_quarantined != scenario.expect.quarantined_by.is_some(),
        "scenario {name}: expect either quarantined_by or never_quarantined = true"
    );
    assert!(
        scenario.steps.is_empty() == scenario.run.is_some(),
        "scenario {name}: give either steps or run"
    );
    assert!(
        scenario.steps.iter().all(|s| s.repeat >= 1),
        "scenario {name}: a step repeats at least once"
    );
    scenario
}

/// `{dir}` (Warden's folder: config, journal, policies) and `{workspace}` in every string.
fn substitute(value: &Value, dir: &Path) -> Value {
    match value {
        Value::String(s) => Value::String(
            s.replace("{workspace}", &dir.join("workspace").display().to_string())
                .replace("{dir}", &dir.display().to_string()),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, dir)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute(v, dir)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What one call of the script got back.
struct Call {
    /// Index of its step in the file, from 0.
    step: usize,
    response: Value,
}

/// Runs the scenario `name` and checks its expectation; panics with every failure found,
/// the calls and the journal, naming the scenario.
fn run(name: &str) {
    let scenario = load(name);
    let setup = Setup::new(&scenario.monitor.joined(), &scenario.policy.joined());
    for (rel, content) in &scenario.files {
        assert!(
            !rel.starts_with('/') && !rel.contains(".."),
            "scenario {name}: file {rel:?} must stay in the workspace"
        );
        let path = setup.path("workspace").join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, content).unwrap();
    }
    if let Some(script) = &scenario.run {
        return run_contained(name, &scenario, &setup, script);
    }
    // Warden protects its files by their canonical paths.
    let dir = setup.dir.path().canonicalize().unwrap();

    let mut session = setup.start(&scenario.agent, &[]);
    session.initialize();
    let mut calls = Vec::new();
    let mut id = 0u64;
    for (index, step) in scenario.steps.iter().enumerate() {
        let arguments = substitute(&step.arguments, &dir);
        for _ in 0..step.repeat {
            if step.pause_ms > 0 {
                std::thread::sleep(std::time::Duration::from_millis(step.pause_ms));
            }
            id += 1;
            let response = session.call(json!(id), &step.tool, arguments.clone());
            calls.push(Call {
                step: index,
                response,
            });
        }
    }
    let (_, stderr) = session.finish();
    let records = setup.records();

    let mut failures = check(&scenario, &calls, &records);
    if stderr.contains("panicked at") {
        failures.push("warden panicked".to_owned());
    }
    if !failures.is_empty() {
        panic!(
            "scenario {name} failed ({}):\n  - {}\n\ncalls:\n{}\njournal:\n{}\nwarden's stderr:\n{stderr}",
            scenario.description,
            failures.join("\n  - "),
            show_calls(&scenario, &calls),
            show_records(&records),
        );
    }
}

/// The line the runner appends to a contained script: printed only if the sandbox was not
/// killed before the script's end.
const FINISHED: &str = "scenario-script-finished";

/// Runs a `run` scenario: the script inside `warden run`, then the journal checks.
fn run_contained(name: &str, scenario: &Scenario, setup: &Setup, script: &str) {
    let script = format!("{script}\necho {FINISHED}");
    let (_, stdout, stderr) = warden(
        &[
            "run",
            "--agent",
            &scenario.agent,
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
        setup.dir.path(),
    );
    let records = setup.records();
    let mut failures = if stderr.contains("contained") {
        check_contained(scenario, &records, stdout.contains(FINISHED))
    } else {
        vec!["the sandbox did not start (see `warden doctor`)".to_owned()]
    };
    if stderr.contains("panicked at") {
        failures.push("warden panicked".to_owned());
    }
    if !failures.is_empty() {
        panic!(
            "scenario {name} failed ({}):\n  - {}\n\njournal:\n{}\nstdout:\n{stdout}\nwarden's stderr:\n{stderr}",
            scenario.description,
            failures.join("\n  - "),
            show_records(&records),
        );
    }
}

/// How a contained run departs from the expectation; `finished`: the script ran to its end.
fn check_contained(scenario: &Scenario, records: &[JournalRecord], finished: bool) -> Vec<String> {
    let mut failures = check_alerts(scenario, records);
    let quarantines: Vec<&JournalRecord> =
        records.iter().filter(|r| r.kind == "quarantined").collect();
    let Some(detector) = &scenario.expect.quarantined_by else {
        if let Some(q) = quarantines.first() {
            failures.push(format!(
                "never_quarantined, but quarantined by {}",
                q.body["by"]
            ));
        }
        if !finished {
            failures.push("the script did not run to its end".into());
        }
        return failures;
    };
    let by = format!("detector:{detector}");
    if quarantines.len() != 1 || quarantines[0].body["by"] != by.as_str() {
        let got: Vec<&Value> = quarantines.iter().map(|q| &q.body["by"]).collect();
        failures.push(format!("want one quarantine by {by}, got {got:?}"));
    }
    if finished {
        failures.push("the script ran to its end: the sandbox was not killed".into());
    }
    let killed = records.iter().any(|r| {
        r.kind == "sandbox_killed"
            && r.body["by"]
                .as_str()
                .is_some_and(|b| b.starts_with("quarantine"))
    });
    if !killed {
        failures.push("no sandbox_killed record by the quarantine".into());
    }
    // Whatever the agent started after the quarantine, before the kill landed, was refused.
    if let Some(q) = quarantines.first() {
        for r in records
            .iter()
            .filter(|r| r.kind == "decision" && r.seq > q.seq)
        {
            if r.body["effect"] != "deny" {
                failures.push(format!(
                    "decision #{} after the quarantine was allowed",
                    r.seq
                ));
            }
        }
    }
    failures
}

/// Alerts by detector, exactly as expected, each citing records of the journal.
fn check_alerts(scenario: &Scenario, records: &[JournalRecord]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut alerts: BTreeMap<String, usize> = BTreeMap::new();
    for r in records.iter().filter(|r| r.kind == "alert") {
        let detector = r.body["detector"].as_str().unwrap_or("?").to_owned();
        *alerts.entry(detector).or_default() += 1;
        let cited = r.body["evidence"].as_array().cloned().unwrap_or_default();
        if cited.is_empty() {
            failures.push(format!("alert #{} cites no evidence", r.seq));
        }
        for seq in cited {
            if !records.iter().any(|x| Some(x.seq) == seq.as_u64()) {
                failures.push(format!("alert #{} cites #{seq}, not in the journal", r.seq));
            }
        }
    }
    let mut wanted = scenario.expect.alerts.clone();
    wanted.retain(|_, n| *n > 0);
    if alerts != wanted {
        failures.push(format!(
            "alerts by detector: got {alerts:?}, want {wanted:?}"
        ));
    }
    failures
}

/// Every way the run departs from the scenario's expectation.
fn check(scenario: &Scenario, calls: &[Call], records: &[JournalRecord]) -> Vec<String> {
    let mut failures = Vec::new();
    let quarantined_text = format!("agent \"{}\" is quarantined", scenario.agent);
    let is_quarantine_refusal = |c: &Call| {
        refusal_effect(&c.response).as_deref() == Some("deny")
            && result_text(&c.response).contains(&quarantined_text)
    };

    // Each call is one decision, in order (one session, one call at a time).
    let decisions: Vec<&JournalRecord> = records
        .iter()
        .filter(|r| r.kind == "decision" && r.body["action"] == "call_tool")
        .collect();
    if decisions.len() != calls.len() {
        failures.push(format!(
            "{} calls but {} call_tool decisions in the journal",
            calls.len(),
            decisions.len()
        ));
        return failures;
    }

    failures.extend(check_alerts(scenario, records));

    let first_refused = calls.iter().position(is_quarantine_refusal);
    let quarantines: Vec<&JournalRecord> =
        records.iter().filter(|r| r.kind == "quarantined").collect();

    match &scenario.expect.quarantined_by {
        None => {
            if !quarantines.is_empty() {
                failures.push(format!(
                    "never_quarantined, but quarantined by {}",
                    quarantines[0].body["by"]
                ));
            }
            if let Some(i) = first_refused {
                failures.push(format!(
                    "never_quarantined, but call {} was refused as quarantined",
                    i + 1
                ));
            }
            check_steps(scenario, calls, &decisions, calls.len(), &mut failures);
        }
        Some(detector) => {
            let by = format!("detector:{detector}");
            if quarantines.len() != 1 || quarantines[0].body["by"] != by.as_str() {
                let got: Vec<&Value> = quarantines.iter().map(|q| &q.body["by"]).collect();
                failures.push(format!("want one quarantine by {by}, got {got:?}"));
            }
            let Some(first_refused) = first_refused else {
                failures.push(
                    "no call was refused as quarantined (the script needs a step after the \
                     one that triggers the quarantine)"
                        .into(),
                );
                return failures;
            };
            if first_refused == 0 {
                failures.push("the first call was already refused as quarantined".into());
                return failures;
            }
            // The call right before the first refusal is the one that triggered it.
            let trigger = first_refused - 1;
            check_steps(scenario, calls, &decisions, first_refused, &mut failures);
            for (i, c) in calls.iter().enumerate().skip(first_refused) {
                if !is_quarantine_refusal(c) {
                    failures.push(format!(
                        "call {} (after the quarantine) was not refused as quarantined",
                        i + 1
                    ));
                }
            }
            let trigger_step = calls[trigger].step;
            if scenario.steps.iter().any(|s| s.triggers) && !scenario.steps[trigger_step].triggers {
                failures.push(format!(
                    "the quarantine followed step {} ({:?}), not the step marked triggers",
                    trigger_step + 1,
                    scenario.steps[trigger_step].say
                ));
            }
            if let Some(q) = quarantines.first() {
                let seq = decisions[trigger].seq;
                let cites = q.body["evidence"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|v| v.as_u64() == Some(seq)));
                if !cites {
                    failures.push(format!(
                        "the quarantine does not cite the triggering decision #{seq}"
                    ));
                }
            }
        }
    }
    failures
}

/// Per-step expectations (`effect`, `says`) of the first `upto` calls.
fn check_steps(
    scenario: &Scenario,
    calls: &[Call],
    decisions: &[&JournalRecord],
    upto: usize,
    failures: &mut Vec<String>,
) {
    for (i, (c, d)) in calls.iter().zip(decisions).enumerate().take(upto) {
        let step = &scenario.steps[c.step];
        if let Some(effect) = &step.effect
            && d.body["effect"] != effect.as_str()
        {
            failures.push(format!(
                "call {} ({:?}): effect {}, want {effect}",
                i + 1,
                step.say,
                d.body["effect"]
            ));
        }
        if let Some(says) = &step.says
            && !result_text(&c.response).contains(says.as_str())
        {
            failures.push(format!(
                "call {} ({:?}): the result does not say {says:?}",
                i + 1,
                step.say
            ));
        }
    }
}

fn show_calls(scenario: &Scenario, calls: &[Call]) -> String {
    let mut out = String::new();
    for (i, c) in calls.iter().enumerate() {
        let step = &scenario.steps[c.step];
        let mut text = result_text(&c.response);
        if text.len() > 160 {
            text.truncate(text.floor_char_boundary(160));
            text.push('…');
        }
        out.push_str(&format!(
            "  {:>3}. step {} {} {}: {}\n",
            i + 1,
            c.step + 1,
            step.tool,
            refusal_effect(&c.response).unwrap_or_else(|| "ok".into()),
            text.replace('\n', " ")
        ));
    }
    out
}

fn show_records(records: &[JournalRecord]) -> String {
    let mut out = String::new();
    for r in records {
        let mut body = r.body.to_string();
        if body.len() > 240 {
            body.truncate(body.floor_char_boundary(240));
            body.push('…');
        }
        out.push_str(&format!("  #{} {} {}: {body}\n", r.seq, r.agent, r.kind));
    }
    out
}

// === the suite ===

/// One test per scenario file; `#[ignore = "why"]` before a name keeps a known failure visible.
macro_rules! scenarios {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        /// Every scenario with a test, by file name.
        const ALL: &[&str] = &[$(stringify!($name)),*];
        $(
            $(#[$attr])*
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*
    };
}

scenarios! {
    denial_burst,
    runaway_loop,
    first_seen,
    data_loss_credential,
    data_loss_canary,
    self_tamper_journal,
    sensitive_flow,
    slow_exfiltration,
    good_then_rogue,
    injection_exfiltration,
    injection_credential,
    benign_assistant,
    benign_researcher,
    exec_budget,
    exec_loop,
    rate_surge,
}

#[test]
fn every_scenario_file_has_a_test_and_a_line_in_the_readme() {
    let readme = std::fs::read_to_string(scenarios_dir().join("README.md")).unwrap();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            files.push(stem);
        }
    }
    files.sort();
    let mut tested: Vec<String> = ALL.iter().map(|s| (*s).to_owned()).collect();
    tested.sort();
    assert_eq!(files, tested, "scenario files and tests differ");
    for name in &files {
        // Every file parses and is self-consistent.
        load(name);
        assert!(
            readme.contains(&format!("`{name}.json`")),
            "README.md does not list {name}.json"
        );
    }
}
