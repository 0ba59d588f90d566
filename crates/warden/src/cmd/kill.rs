//! `warden kill NAME`: every process of the agent's sandboxes, stopped at once through their
//! cgroups, journaled with how long it took until the last one was gone. The control plane's
//! kill route does the same through [`kill_sandboxes`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use warden_core::{AgentId, Event, EventBody, SessionId};
use warden_journal::Journal;
use warden_server::{KillReport, Killed};

use crate::cmd::run::runs;
use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// The agent whose sandboxes to kill.
    agent: String,
    /// Why, for the journal.
    #[arg(long, default_value = "")]
    reason: String,
    /// The configuration file (default: ./warden.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Kills every sandbox of `agent` recorded by `warden run` in `runs_dir`, each at once
/// through its cgroups. An empty list: none is running.
pub fn kill_sandboxes(runs_dir: &Path, agent: &AgentId) -> Result<Vec<Killed>> {
    let mut killed = Vec::new();
    for (path, run) in runs::of_agent(runs_dir, agent.as_str())? {
        if run.session.len() != 32 || !run.session.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{} names a malformed session", path.display());
        }
        let session = SessionId::from_raw(run.session.clone());
        let result = match &run.cgroups {
            None => Err(
                "it has no cgroup (started with --allow-degraded cgroup-kill): \
                         it cannot be killed all at once"
                    .to_owned(),
            ),
            Some(groups) => groups
                .kill(Duration::from_secs(5))
                .map(|report| KillReport {
                    processes: report.processes as u64,
                    elapsed_us: u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX),
                    method: report.method.as_str().into(),
                })
                .map_err(|e| e.to_string()),
        };
        killed.push(Killed { session, result });
    }
    Ok(killed)
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let agent = AgentId::new(&args.agent).context("the agent name")?;
    let runs_dir = config.resolve(&config.sandbox.runs);
    // The records carry when the kill began: the sandbox's own end, journaled by its
    // `warden run`, may land first, and must not look older than the kill that caused it.
    let asked_ms = warden_gateway::guard::now_ms();
    let killed = kill_sandboxes(&runs_dir, &agent)?;
    if killed.is_empty() {
        bail!(
            "no running sandbox of agent {agent} is recorded in {}",
            runs_dir.display()
        );
    }
    let journal_path = config.journal_path();
    let journal = Journal::open(&journal_path, config.journal_options())
        .with_context(|| format!("opening the journal {}", journal_path.display()))?;
    let mut failed = false;
    for Killed { session, result } in killed {
        let short: String = session.as_str().chars().take(8).collect();
        let report = match result {
            Ok(report) => report,
            Err(why) => {
                eprintln!("warden: session {session}: {why}");
                failed = true;
                continue;
            }
        };
        let seq = journal
            .append(&Event {
                time_ms: asked_ms,
                agent: agent.clone(),
                session,
                body: EventBody::SandboxKilled {
                    by: super::quarantine::operator(),
                    processes: report.processes,
                    elapsed_us: report.elapsed_us,
                    method: report.method.clone(),
                    reason: args.reason.trim().to_owned(),
                },
            })
            .wait()
            .context("journaling the kill")?;
        say!(
            "killed {} processes of agent {agent} (session {short}) in {:.3} ms by {} — journal #{seq}",
            report.processes,
            report.elapsed_us as f64 / 1000.0,
            report.method
        );
    }
    journal.close_blocking().context("closing the journal")?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
