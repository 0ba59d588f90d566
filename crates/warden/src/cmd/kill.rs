//! `warden kill NAME`: every process of the agent's sandboxes, stopped at once through their
//! cgroups, journaled with how long it took until the last one was gone.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use warden_core::{AgentId, Event, EventBody, SessionId};
use warden_journal::Journal;

use crate::cmd::run::runs;
use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// The agent whose sandboxes to kill.
    agent: String,
    /// The configuration file (default: ./warden.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let agent = AgentId::new(&args.agent).context("the agent name")?;
    let dir = config.resolve(&config.sandbox.runs);
    let found = runs::of_agent(&dir, agent.as_str())?;
    if found.is_empty() {
        bail!(
            "no running sandbox of agent {agent} is recorded in {}",
            dir.display()
        );
    }
    let journal_path = config.journal_path();
    let journal = Journal::open(&journal_path, config.journal_options())
        .with_context(|| format!("opening the journal {}", journal_path.display()))?;
    let mut failed = false;
    for (path, run) in found {
        let Some(groups) = &run.cgroups else {
            eprintln!(
                "warden: session {} has no cgroup (started with --allow-degraded cgroup-kill): \
                 cannot kill it all at once",
                run.session
            );
            failed = true;
            continue;
        };
        if run.session.len() != 32 || !run.session.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{} names a malformed session", path.display());
        }
        let session = SessionId::from_raw(run.session.clone());
        match groups.kill(Duration::from_secs(5)) {
            Ok(report) => {
                let micros = u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX);
                let seq = journal
                    .append(&Event {
                        time_ms: warden_gateway::guard::now_ms(),
                        agent: agent.clone(),
                        session,
                        body: EventBody::SandboxKilled {
                            by: "operator".into(),
                            processes: report.processes as u64,
                            elapsed_us: micros,
                            method: report.method.as_str().into(),
                        },
                    })
                    .wait()
                    .context("journaling the kill")?;
                say!(
                    "killed {} processes of agent {agent} (session {}) in {:.3} ms by {} — journal #{seq}",
                    report.processes,
                    &run.session[..8.min(run.session.len())],
                    micros as f64 / 1000.0,
                    report.method.as_str()
                );
            }
            Err(e) => {
                eprintln!("warden: session {}: {e}", run.session);
                failed = true;
            }
        }
    }
    journal.close_blocking().context("closing the journal")?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
