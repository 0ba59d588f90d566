//! `warden approvals`: the calls held for a human, and answering them from a terminal. It
//! reads and appends to the journal directly, so it works with or without `warden up`; the
//! held call, in whichever Warden process holds it, reads the answer back from the journal.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use warden_core::{AgentId, ApprovalAnswer, EventBody};
use warden_journal::{Journal, JournalReader};
use warden_server::fleet::Fleet;

use crate::cmd::quarantine::{check_reason, operator, record};
use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    answer: Option<Answer>,
    /// The configuration file (default: ./warden.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Answer {
    /// Let the held call go ahead.
    Approve {
        /// The held call's record number (the first column of `warden approvals`).
        seq: u64,
        /// Why, for the journal (required).
        #[arg(long)]
        reason: String,
        /// Also allow the same action on the same target for the rest of the session.
        #[arg(long)]
        session: bool,
    },
    /// Refuse the held call.
    Deny {
        /// The held call's record number.
        seq: u64,
        /// Why, for the journal (required).
        #[arg(long)]
        reason: String,
    },
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let journal_path = config.journal_path();
    let fleet = Fleet::default();
    let reader = JournalReader::open(&journal_path)
        .with_context(|| format!("reading the journal {}", journal_path.display()))?;
    fleet.catch_up(&reader).context("reading the journal")?;
    let now = warden_gateway::guard::now_ms();
    let (seq, answer, reason) = match args.answer {
        None => {
            let pending = fleet.pending(now);
            if pending.is_empty() {
                println!("no call is waiting for an answer");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:>8}  {:<16}  {:<32}  {:>7}  REASON",
                "SEQ", "AGENT", "TARGET", "EXPIRES"
            );
            for p in pending {
                println!(
                    "{:>8}  {:<16}  {:<32}  {:>6}s  {}",
                    p.seq,
                    super::agents::cell(&p.agent, 16),
                    super::agents::cell(&format!("{} {}", p.action, p.target), 32),
                    (p.expires_ms - now).max(0) / 1000,
                    super::agents::cell(&p.reason, 80),
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(Answer::Approve {
            seq,
            reason,
            session,
        }) => {
            let answer = if session {
                ApprovalAnswer::ApproveSession
            } else {
                ApprovalAnswer::Approve
            };
            (seq, answer, reason)
        }
        Some(Answer::Deny { seq, reason }) => (seq, ApprovalAnswer::Deny, reason),
    };
    check_reason(&reason)?;
    let (pending, answered) = fleet.approval(seq);
    if let Some((earlier, at)) = answered {
        bail!(
            "call {seq} was already answered: {} (journal #{at})",
            earlier.as_str()
        );
    }
    let Some(pending) = pending.filter(|p| p.expires_ms > now) else {
        bail!("no call is waiting for an answer as record {seq} (see `warden approvals`)");
    };
    let agent = AgentId::new(&pending.agent).context("the held call's agent")?;
    let journal = Journal::open(&journal_path, config.journal_options())
        .with_context(|| format!("opening the journal {}", journal_path.display()))?;
    let at = record(
        &journal,
        &agent,
        EventBody::ApprovalAnswered {
            decision_seq: seq,
            answer,
            by: operator(),
            reason,
        },
    )?;
    journal.close_blocking().context("closing the journal")?;
    // The first answer journaled is the one in force: say which one that is.
    fleet.catch_up(&reader).context("reading the journal")?;
    match fleet.approval(seq).1 {
        Some((_, first)) if first != at => {
            bail!("another answer to call {seq} was journaled first; yours (#{at}) has no effect")
        }
        _ => println!(
            "call {seq} ({} {} of agent {agent}): {} — journal #{at}",
            pending.action,
            pending.target,
            answer.as_str()
        ),
    }
    Ok(ExitCode::SUCCESS)
}
