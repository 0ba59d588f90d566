//! `warden alerts [SEQ]`: the detectors' alerts as a table, and one alert with the journal
//! records it cites as evidence. Read-only.

use std::process::ExitCode;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use warden_core::AgentId;
use warden_journal::JournalReader;

use crate::cmd::agents::{cell, local_time};
use crate::cmd::audit::render;
use crate::cmd::events::{Listing, checked_limit, show};
use crate::cmd::journal_source::JournalSource;

/// The most evidence records shown with one alert (the control plane's bound too).
const MAX_EVIDENCE: usize = 100;

#[derive(clap::Args)]
pub struct Args {
    /// One alert, by its record number: its evidence records too.
    seq: Option<u64>,
    /// Only this agent's alerts.
    #[arg(long)]
    agent: Option<String>,
    /// Keep printing new alerts as they are raised.
    #[arg(long)]
    follow: bool,
    /// JSON instead of a table (one object per line for a list).
    #[arg(long)]
    json: bool,
    /// At most this many alerts: the newest.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    source: JournalSource,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let agent = args
        .agent
        .map(|a| AgentId::new(a).map_err(|e| anyhow::anyhow!("--agent: {e}")))
        .transpose()?;
    let limit = checked_limit(args.limit)?;
    let config = args.source.config()?;
    let (reader, _) = args.source.reader(&config)?;
    if let Some(seq) = args.seq {
        if agent.is_some() || args.follow {
            bail!("--agent and --follow list alerts; they do not apply to one alert (SEQ)");
        }
        return one(&reader, seq, args.json);
    }
    let listing = Listing {
        agent,
        kind: Some("alert".to_owned()),
        after: None,
        follow: args.follow,
        limit,
    };
    let about = listing
        .agent
        .as_ref()
        .map_or_else(String::new, |a| format!(" about agent {a}"));
    let json = args.json;
    let mut header = !json;
    let mut any = false;
    show(&reader, &listing, |record| {
        if json {
            say!("{}", serde_json::to_string(record)?);
            return Ok(());
        }
        if header {
            say!(
                "{:>8}  {:<19}  {:<16}  {:<16}  {:<8}  SUMMARY",
                "SEQ",
                "TIME",
                "AGENT",
                "DETECTOR",
                "SEVERITY"
            );
            header = false;
        }
        any = true;
        let s = |k: &str| record.body.get(k).and_then(Value::as_str).unwrap_or("");
        say!(
            "{:>8}  {:<19}  {:<16}  {:<16}  {:<8}  {}",
            record.seq,
            local_time(record.time_ms),
            cell(record.agent.as_str(), 16),
            cell(s("detector"), 16),
            cell(s("severity"), 8),
            cell(s("summary"), 100)
        );
        Ok(())
    })?;
    if !json && !any {
        say!("no alert{about} in the journal");
    }
    Ok(ExitCode::SUCCESS)
}

/// Alert `seq` and its evidence.
fn one(reader: &JournalReader, seq: u64, json: bool) -> Result<ExitCode> {
    let alert = match reader.record(seq)? {
        Some(r) if r.kind == "alert" => r,
        Some(r) => bail!(
            "record {seq} is not an alert; it is a record of kind {} (`warden alerts` lists the alerts)",
            cell(&r.kind, 32)
        ),
        None => bail!("there is no record {seq} in the journal (`warden alerts` lists the alerts)"),
    };
    let cited: Vec<u64> = alert
        .body
        .get("evidence")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let mut evidence = Vec::new();
    let mut missing = Vec::new();
    for &s in cited.iter().take(MAX_EVIDENCE) {
        match reader.record(s)? {
            Some(r) => evidence.push(r),
            None => missing.push(s),
        }
    }
    if json {
        say!("{}", json!({ "alert": alert, "evidence": evidence }));
        return Ok(ExitCode::SUCCESS);
    }
    let s = |k: &str| alert.body.get(k).and_then(Value::as_str).unwrap_or("");
    say!(
        "alert #{seq}: {} {}",
        cell(&s("severity").to_uppercase(), 16),
        cell(s("detector"), 40)
    );
    say!("  time      {}", local_time(alert.time_ms));
    say!("  agent     {}", cell(alert.agent.as_str(), 64));
    say!(
        "  session   {}",
        cell(
            &alert.session.as_str().chars().take(8).collect::<String>(),
            8
        )
    );
    say!("  summary   {}", cell(s("summary"), 400));
    say!();
    if cited.is_empty() {
        say!("it cites no evidence record");
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "evidence ({} {}):",
        cited.len(),
        if cited.len() == 1 {
            "record"
        } else {
            "records"
        }
    );
    for r in &evidence {
        say!("{}", render(r));
    }
    for s in &missing {
        say!("#{s}: not in this journal");
    }
    if cited.len() > MAX_EVIDENCE {
        say!(
            "… and {} more (`warden events --after SEQ` reads them)",
            cited.len() - MAX_EVIDENCE
        );
    }
    Ok(ExitCode::SUCCESS)
}
