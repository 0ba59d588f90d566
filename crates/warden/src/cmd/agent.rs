//! `warden agent add|revoke|list`: the agents of the HTTP gateway and their bearer tokens.
//!
//! Every change is journaled before it is written to the agent file, so the journal shows who
//! could act as whom, and since when.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::json;
use warden_core::{AgentId, Event, EventBody, SessionId};
use warden_gateway::identity::{AgentChange, AgentRecord, AgentStore, IdentityError};
use warden_journal::{Journal, JournalError};

use crate::config::Config;

#[derive(clap::Subcommand)]
pub enum AgentCommand {
    /// Issue a bearer token for agent NAME. The token is printed once, alone on the last line
    /// of stdout: `TOKEN=$(warden agent add NAME | tail -1)`.
    Add {
        /// The agent's name, as policies know it (`Agent::"NAME"`).
        name: String,
        /// Replace the token of an agent that already has one; the old token stops working.
        #[arg(long)]
        rotate: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke agent NAME's token; requests that carry it are refused as revoked.
    Revoke {
        /// The agent's name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the agents: name, status, when the token was issued and when it was revoked.
    List {
        /// A JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(clap::Args)]
pub struct Target {
    /// The configuration file (default: ./warden.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(command: AgentCommand) -> Result<ExitCode> {
    match command {
        AgentCommand::Add {
            name,
            rotate,
            target,
        } => add(&name, rotate, &target),
        AgentCommand::Revoke { name, target } => revoke(&name, &target),
        AgentCommand::List { json, target } => list(json, &target),
    }
}

fn add(name: &str, rotate: bool, target: &Target) -> Result<ExitCode> {
    if target.config.is_none() && !std::path::Path::new(crate::config::DEFAULT_FILE).exists() {
        // A gateway started elsewhere would never read an agent file made here.
        bail!(
            "no warden.toml in this folder: run this where `warden up` runs (its configuration \
             names the agent file), or give --config PATH"
        );
    }
    let config = Config::load(target.config.as_deref())?;
    let agent = AgentId::new(name)?;
    let store = AgentStore::new(config.agents_file());
    let recorder = Recorder::open(&config)?;
    let result = store.add_recorded(&agent, rotate, |a, c| recorder.record(a, c));
    recorder.close();
    let issued = match result {
        Ok(issued) => issued,
        Err(err @ IdentityError::AlreadyActive(_)) => {
            bail!("{err}; pass --rotate to replace it (the current token then stops working)")
        }
        Err(err) => return Err(err.into()),
    };
    let what = match issued.change() {
        AgentChange::Rotated => "a new token replaces the previous one, which no longer works",
        _ => "a token was issued",
    };
    eprintln!(
        "warden: agent {agent}: {what}. It is shown only this once; {} keeps only its digest.",
        store.path().display()
    );
    say!("{}", issued.token());
    Ok(ExitCode::SUCCESS)
}

fn revoke(name: &str, target: &Target) -> Result<ExitCode> {
    let config = Config::load(target.config.as_deref())?;
    let agent = AgentId::new(name)?;
    let store = AgentStore::new(config.agents_file());
    let recorder = Recorder::open(&config)?;
    let result = store.revoke_recorded(&agent, |a, c| recorder.record(a, c));
    recorder.close();
    result?;
    eprintln!("warden: agent {agent}: token revoked; requests that carry it are refused");
    Ok(ExitCode::SUCCESS)
}

fn list(json: bool, target: &Target) -> Result<ExitCode> {
    let config = Config::load(target.config.as_deref())?;
    let store = AgentStore::new(config.agents_file());
    let agents = store.list()?;
    if json {
        let rows: Vec<_> = agents
            .iter()
            .map(|a| {
                json!({
                    "name": a.name,
                    "status": status(a),
                    "created_ms": a.created_ms,
                    "revoked_ms": a.revoked_ms,
                })
            })
            .collect();
        say!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    if agents.is_empty() {
        eprintln!(
            "warden: no agents in {}; add one with `warden agent add NAME`",
            store.path().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let width = agents
        .iter()
        .map(|a| a.name.as_str().len())
        .max()
        .unwrap_or(0)
        .max("NAME".len());
    say!(
        "{:<width$}  {:<7}  {:<23}  REVOKED (UTC)",
        "NAME",
        "STATUS",
        "CREATED (UTC)"
    );
    for a in &agents {
        say!(
            "{:<width$}  {:<7}  {:<23}  {}",
            a.name.as_str(),
            status(a),
            time(a.created_ms),
            a.revoked_ms.map_or_else(|| "-".to_owned(), time)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status(a: &AgentRecord) -> &'static str {
    if a.is_active() { "active" } else { "revoked" }
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Journals this command's changes, in a session of its own.
struct Recorder {
    journal: Journal,
    session: SessionId,
}

impl Recorder {
    /// Opened before anything changes: a journal that cannot be opened stops the command.
    fn open(config: &Config) -> Result<Self> {
        let path = config.journal_path();
        let journal = Journal::open(&path, config.journal_options())
            .with_context(|| format!("opening the journal {}", path.display()))?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id)
            .map_err(|e| anyhow::anyhow!("no randomness for a session id: {e}"))?;
        Ok(Self {
            journal,
            session: SessionId::from_random(id),
        })
    }

    /// Appends the change and returns once it is durable.
    fn record(&self, agent: &AgentId, change: AgentChange) -> Result<(), JournalError> {
        let event = Event {
            time_ms: now_ms(),
            agent: agent.clone(),
            session: self.session.clone(),
            body: EventBody::AgentChanged {
                change: change.as_str().to_owned(),
            },
        };
        self.journal.append(&event).wait().map(drop)
    }

    fn close(self) {
        if let Err(err) = self.journal.close_blocking() {
            // Any record is already durable (`wait` returned); only the closing checkpoint
            // failed, which `warden audit verify` reports.
            tracing::warn!(%err, "closing the journal failed");
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
