//! `warden demo`: Warden's main job on the embedded example, with no setup. A well-behaved
//! scripted agent and a rogue one each talk MCP to a real `warden mcp` process, which guards
//! the example files server; every call is decided, journaled and either forwarded or refused,
//! and the journal is verified at the end.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use warden_journal::verify;

const POLICIES: &[(&str, &str)] = &[
    (
        "workspace.cedar",
        include_str!("../../../../examples/policies/workspace.cedar"),
    ),
    (
        "arguments.cedarschema",
        include_str!("../../../../examples/policies/arguments.cedarschema"),
    ),
];
const AGENTS: &[&str] = &[
    include_str!("../../../../examples/agents/well-behaved.json"),
    include_str!("../../../../examples/agents/rogue.json"),
];
const EXAMPLE_SERVER: &str = "warden-example-files";
/// Where `warden up` in the demo's folder serves the control plane and the dashboard.
const DASHBOARD: &str = "127.0.0.1:7412";

#[derive(clap::Args)]
pub struct Args {
    /// Where to set the demo up (default: a new folder under the system's temporary folder).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Script {
    agent: String,
    role: String,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    say: String,
    tool: String,
    arguments: Value,
}

/// The example server built beside this binary (a source tree's `target/`), else the one
/// installed on `PATH` (`cargo install`).
fn example_server(warden: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    // Absolute: the demo's configuration names it, and the server starts in another folder.
    let runnable = |p: PathBuf| {
        let p = std::fs::canonicalize(p).ok()?;
        let meta = std::fs::metadata(&p).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(p)
    };
    if let Some(beside) = runnable(warden.with_file_name(EXAMPLE_SERVER)) {
        return Some(beside);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).find_map(|dir| runnable(dir.join(EXAMPLE_SERVER)))
}

pub fn run(args: Args) -> Result<ExitCode> {
    let warden = std::env::current_exe().context("locating the warden binary")?;
    let Some(server) = example_server(&warden) else {
        bail!(
            "the example MCP server {EXAMPLE_SERVER} is neither next to {} nor on PATH; \
             from Warden's source folder, run scripts/demo, or install it with \
             `cargo install --path examples/files-server`",
            warden.display()
        );
    };
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("warden-demo-{}", std::process::id())),
    };
    let config = set_up(&dir, &server)?;
    say!("Warden demo in {}", dir.display());
    say!(
        "Policies: {}/policies/workspace.cedar (default deny)\n",
        dir.display()
    );

    for text in AGENTS {
        let script: Script = serde_json::from_str(text).context("reading an agent script")?;
        run_agent(&warden, &config, &script)?;
    }

    let outbox =
        std::fs::read_to_string(dir.join("workspace/.outbox/messages.jsonl")).unwrap_or_default();
    let sent: Vec<String> = outbox
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|m| m.get("to").and_then(Value::as_str).map(str::to_owned))
        .collect();
    say!(
        "What reached the server: messages sent to {sent:?}; notes.txt still there: {}",
        dir.join("workspace/notes.txt").exists()
    );

    let journal = dir.join("journal.db");
    show_detections(&journal)?;
    let report = verify(&journal).context("verifying the journal")?;
    match &report.breach {
        None => say!(
            "Journal {}: intact, {} records, {} signed checkpoint(s) verified.",
            journal.display(),
            report.records_checked,
            report.checkpoints_checked
        ),
        Some(b) => {
            say!(
                "Journal {}: TAMPERED at #{}: {}",
                journal.display(),
                b.seq,
                b.detail
            );
            return Ok(ExitCode::from(1));
        }
    }
    say!(
        "\nRead it:   {} audit log --journal {}",
        warden.display(),
        journal.display()
    );
    say!(
        "Verify it: {} audit verify --journal {}",
        warden.display(),
        journal.display()
    );
    say!(
        "\nSee it on the dashboard:\n  cd {}\n  {} user add me --role admin   \
         # prints your sign-in token\n  {} up\n  then open http://{DASHBOARD}/ and paste the token",
        dir.canonicalize().unwrap_or_else(|_| dir.clone()).display(),
        warden.display(),
        warden.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What the detectors saw, from the journal.
fn show_detections(journal: &Path) -> Result<()> {
    let reader = warden_journal::JournalReader::open(journal).context("reading the journal")?;
    let records = reader
        .records(&warden_journal::Query {
            limit: 10_000,
            ..warden_journal::Query::default()
        })
        .context("reading the journal")?;
    for r in records {
        let b = &r.body;
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        match r.kind.as_str() {
            "alert" => say!(
                "Detected (#{}): {} — {} alert on agent {}: {}",
                r.seq,
                s("detector"),
                s("severity"),
                r.agent,
                s("summary")
            ),
            "quarantined" => say!(
                "Contained (#{}): agent {} quarantined by {}; every further action refused \
                 until a human runs `warden release {} --reason …`",
                r.seq,
                r.agent,
                s("by"),
                r.agent
            ),
            _ => {}
        }
    }
    Ok(())
}

fn set_up(dir: &Path, server: &Path) -> Result<PathBuf> {
    let workspace = dir.join("workspace");
    for sub in ["reports", "secrets"] {
        std::fs::create_dir_all(workspace.join(sub))
            .with_context(|| format!("creating {}", workspace.join(sub).display()))?;
    }
    std::fs::create_dir_all(dir.join("policies"))?;
    let files: &[(&str, &str)] = &[
        (
            "workspace/notes.txt",
            "Q3 planning: ship the gateway, then the sandbox. Budget review on Friday.\n",
        ),
        (
            "workspace/secrets/api-keys.env",
            // A made-up value for the demo, not a credential.
            "PAYMENTS_API_KEY=demo-not-a-real-key-0000\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    for (name, text) in POLICIES {
        std::fs::write(dir.join("policies").join(name), text)?;
    }
    let config = format!(
        "[journal]\npath = \"journal.db\"\n\n[policy]\ndir = \"policies\"\n\n\
         [limits]\ncall_timeout_secs = 30\n\n\
         [servers.files]\ncommand = [{}, \"--root\", \"workspace\"]\n\n\
         # Three refusals within a minute: the agent is quarantined before its next action.\n\
         [monitor.detectors.denial_burst]\nthreshold = 3\nwindow_secs = 60\n\n\
         [monitor.detectors.data_loss]\n[monitor.detectors.self_tamper]\n\n\
         [[monitor.playbook]]\ndetector = \"*\"\nmin_severity = \"high\"\n\
         respond = [\"quarantine\"]\n\n\
         # `warden up` in this folder serves the dashboard here (sign in: `warden user add`).\n\
         [control]\nlisten = \"{DASHBOARD}\"\n\n\
         # The scripted agents cannot wait for a human: `ask` refuses at once. With `true`,\n\
         # such a call is held until someone answers it on the dashboard.\n\
         [approvals]\nhold = false\n",
        toml_string(&server.to_string_lossy())
    );
    let path = dir.join("warden.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

fn toml_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn run_agent(warden: &Path, config: &Path, script: &Script) -> Result<()> {
    say!("── agent {}: {}", script.agent, script.role);
    let mut child = Command::new(warden)
        .args(["mcp", "--agent", &script.agent, "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting warden mcp")?;
    let mut client = Client::new(&mut child)?;
    client.request(
        "initialize",
        json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": { "name": format!("demo-agent-{}", script.agent), "version": "1" }
        }),
    )?;
    client.notify("notifications/initialized")?;
    let tools = client.request("tools/list", json!({}))?;
    let names: Vec<&str> = tools
        .pointer("/result/tools")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(|t| t.get("name")?.as_str()).collect())
        .unwrap_or_default();
    say!("   tools Warden lets it see: {}", names.join(", "));
    for step in &script.steps {
        let response = client.request(
            "tools/call",
            json!({ "name": step.tool, "arguments": step.arguments }),
        )?;
        say!("   {}", describe(step, &response));
    }
    drop(client);
    let status = child.wait().context("waiting for warden mcp")?;
    if !status.success() {
        bail!("warden mcp for {} exited with {status}", script.agent);
    }
    say!();
    Ok(())
}

fn describe(step: &Step, response: &Value) -> String {
    let call = format!("{} {}", step.tool, step.arguments);
    if let Some(error) = response.get("error") {
        return format!("! ERROR  {call}\n            {error}");
    }
    let result = response.get("result").cloned().unwrap_or(Value::Null);
    if let Some(d) = result.pointer("/_meta/warden~1decision") {
        let effect = d.get("effect").and_then(Value::as_str).unwrap_or("deny");
        let reason = d.get("reason").and_then(Value::as_str).unwrap_or("");
        let policies: Vec<&str> = d
            .get("policies")
            .and_then(Value::as_array)
            .map(|p| p.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let by = if !policies.is_empty() {
            policies.join(", ")
        } else if reason.contains(" is quarantined ") {
            "quarantine".to_owned()
        } else {
            "default deny".to_owned()
        };
        let mark = if effect == "ask" {
            "? ASK  "
        } else {
            "✘ DENY "
        };
        return format!(
            "{mark} {call}   ({})\n            {reason} [{by}]",
            step.say
        );
    }
    let text = result
        .pointer("/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or("");
    let first: String = text.lines().next().unwrap_or("").chars().take(70).collect();
    format!("✔ ALLOW {call}   ({})\n            → {first}", step.say)
}

/// A minimal MCP client over a child's stdio, enough for a scripted agent.
struct Client {
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Client {
    fn new(child: &mut Child) -> Result<Self> {
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        Ok(Self {
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            next_id: 1,
        })
    }

    fn send(&mut self, message: &Value) -> Result<()> {
        let stdin = self.stdin.as_mut().context("the session is closed")?;
        writeln!(stdin, "{message}")?;
        stdin.flush()?;
        Ok(())
    }

    fn notify(&mut self, method: &str) -> Result<()> {
        self.send(&json!({ "jsonrpc": "2.0", "method": method }))
    }

    fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                bail!("warden mcp closed the session while {method} was pending");
            }
            let message: Value = serde_json::from_str(&line)
                .with_context(|| format!("warden mcp sent something that is not JSON: {line}"))?;
            // Skip notifications and server requests; this scripted agent only needs answers.
            if message.get("id") == Some(&json!(id)) && message.get("method").is_none() {
                return Ok(message);
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Closing stdin ends the session.
        self.stdin.take();
    }
}
