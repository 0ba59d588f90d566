//! `warden agents [NAME]`: the fleet as the control plane shows it — each agent's state,
//! activity and sessions — read from the journal and the quarantine list directly, so it works
//! with or without `warden up`. Read-only.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use warden_core::AgentId;
use warden_journal::JournalReader;
use warden_monitor::{Quarantine, QuarantineEntry};
use warden_server::fleet::{AgentActivity, Fleet, SessionInfo};

use crate::cmd::journal_source::JournalSource;

#[derive(clap::Args)]
pub struct Args {
    /// One agent: its figures and its sessions, newest first.
    name: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    source: JournalSource,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = args.source.config()?;
    let (reader, path) = args.source.reader(&config)?;
    let list_path = config.resolve(&config.monitor.quarantine_file);
    let quarantine = Quarantine::open(&list_path)
        .with_context(|| format!("reading the quarantine list {}", list_path.display()))?;
    let fleet = Fleet::default();
    catch_up(&fleet, &reader)?;
    match args.name {
        None => list(&fleet, &quarantine, args.json),
        Some(name) => {
            let id = AgentId::new(&name).context("the agent name")?;
            let (activity, sessions) = match fleet.agent(id.as_str()) {
                Some(found) => found,
                // Quarantined before it ever acted in this journal: still an agent to show.
                None if quarantine.get(&id).is_some() => (
                    AgentActivity {
                        name: name.clone(),
                        ..AgentActivity::default()
                    },
                    Vec::new(),
                ),
                None => bail!(
                    "agent {id} has no record in the journal {} (`warden agents` lists those that do)",
                    path.display()
                ),
            };
            let restriction = quarantine.get(&id);
            detail(&activity, restriction.as_ref(), &sessions, args.json)
        }
    }
}

/// Reads the whole journal into `fleet`; on a terminal, says how far it has come while that
/// takes long enough to notice.
fn catch_up(fleet: &Fleet, reader: &JournalReader) -> Result<()> {
    let shown = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_shown: Option<Instant> = None;
    let mut progress = |read: u64, last: u64| {
        let now = Instant::now();
        let due = match last_shown {
            None => now.duration_since(started) >= Duration::from_millis(300),
            Some(at) => now.duration_since(at) >= Duration::from_millis(100),
        };
        if shown && due && read < last {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\rreading the journal: {} / {} records",
                grouped(read),
                grouped(last)
            );
            let _ = err.flush();
            last_shown = Some(now);
        }
    };
    let result = fleet.catch_up_with_progress(reader, &mut progress);
    if last_shown.is_some() {
        // Clears the progress line so the table starts on a clean one.
        eprint!("\r\x1b[K");
    }
    result.context("reading the journal")?;
    Ok(())
}

fn list(fleet: &Fleet, quarantine: &Quarantine, json: bool) -> Result<ExitCode> {
    let mut agents = fleet.agents();
    // Quarantined agents that never acted in this journal still show.
    for q in quarantine.list() {
        if !agents.iter().any(|a| a.name == q.agent.as_str()) {
            agents.push(AgentActivity {
                name: q.agent.as_str().to_owned(),
                ..AgentActivity::default()
            });
        }
    }
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    let restriction = |a: &AgentActivity| {
        AgentId::new(&a.name)
            .ok()
            .and_then(|id| quarantine.get(&id))
    };
    if json {
        let list: Vec<Value> = agents
            .iter()
            .map(|a| agent_json(a, restriction(a).as_ref()))
            .collect();
        say!("{}", json!({ "agents": list }));
        return Ok(ExitCode::SUCCESS);
    }
    if agents.is_empty() {
        say!("no agent has a record in the journal yet");
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "{:<16}  {:<11}  {:<19}  {:>7}  {:>7}  {:>7}  {:>6}  {:>13}",
        "NAME",
        "STATE",
        "LAST SEEN",
        "ALLOW",
        "DENY",
        "ASK",
        "ALERTS",
        "OPEN SESSIONS"
    );
    for a in &agents {
        say!(
            "{:<16}  {:<11}  {:<19}  {:>7}  {:>7}  {:>7}  {:>6}  {:>13}",
            cell(&a.name, 16),
            state(restriction(a).as_ref()),
            local_time(a.last_time_ms),
            a.decisions.allow,
            a.decisions.deny,
            a.decisions.ask,
            a.alerts,
            a.sessions_open
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn detail(
    a: &AgentActivity,
    restriction: Option<&QuarantineEntry>,
    sessions: &[SessionInfo],
    json: bool,
) -> Result<ExitCode> {
    if json {
        say!(
            "{}",
            json!({ "agent": agent_json(a, restriction), "sessions": sessions })
        );
        return Ok(ExitCode::SUCCESS);
    }
    say!("agent {}", cell(&a.name, 64));
    match restriction {
        None => say!("  state          active"),
        Some(q) => say!(
            "  state          {} since {}, by {}: {}",
            q.level.state(),
            local_time(q.since_ms),
            cell(&q.by, 40),
            cell(&q.reason, 120)
        ),
    }
    if a.last_seq == 0 {
        say!("  last seen      never (no record in the journal)");
    } else {
        say!(
            "  last seen      {} (record #{})",
            local_time(a.last_time_ms),
            a.last_seq
        );
    }
    say!(
        "  decisions      {} allow, {} deny, {} ask",
        a.decisions.allow,
        a.decisions.deny,
        a.decisions.ask
    );
    say!("  alerts         {}", a.alerts);
    say!("  open sessions  {}", a.sessions_open);
    say!();
    if sessions.is_empty() {
        say!("no session");
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "{:<8}  {:<16}  {:<8}  {:<19}  {}",
        "SESSION",
        "SERVER",
        "PARENT",
        "STARTED",
        "ENDED"
    );
    for s in sessions {
        say!(
            "{:<8}  {:<16}  {:<8}  {:<19}  {}",
            cell(&prefix(&s.id), 8),
            cell(&s.server, 16),
            s.parent
                .as_deref()
                .map_or_else(|| "-".to_owned(), |p| cell(&prefix(p), 8)),
            local_time(s.started_ms),
            s.ended_ms.map_or_else(|| "open".to_owned(), local_time)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// An agent as `--json` shows it: the control plane's fields and names.
fn agent_json(a: &AgentActivity, restriction: Option<&QuarantineEntry>) -> Value {
    json!({
        "name": a.name,
        "state": state(restriction),
        "quarantine": restriction.map(|q| json!({
            "level": q.level.as_str(),
            "reason": q.reason,
            "by": q.by,
            "since_ms": q.since_ms,
            "evidence": q.evidence,
        })),
        "last_seq": a.last_seq,
        "last_time_ms": a.last_time_ms,
        "decisions": a.decisions,
        "alerts": a.alerts,
        "sessions_open": a.sessions_open,
    })
}

fn state(restriction: Option<&QuarantineEntry>) -> &'static str {
    restriction.map_or("active", |q| q.level.state())
}

/// A session id as people quote it: its first eight characters.
fn prefix(id: &str) -> String {
    id.chars().take(8).collect()
}

/// Milliseconds since the epoch as this machine's local time; `-` for none.
pub(crate) fn local_time(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// `text` on one line, escaped (agents and servers choose much of it) and cut to `width`.
pub(crate) fn cell(text: &str, width: usize) -> String {
    let escaped = warden_core::escape_for_display(text);
    let one_line: String = escaped
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= width {
        one_line
    } else {
        let cut: String = one_line.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(340_000), "340,000");
        assert_eq!(grouped(1_000_000), "1,000,000");
    }

    #[test]
    fn cells_stay_on_one_line_and_in_width() {
        assert_eq!(cell("abc", 8), "abc");
        assert_eq!(cell("abcdefghij", 5), "abcd…");
        let hostile = cell("a\nb\x1b[31mc", 40);
        assert!(
            !hostile.contains('\n') && !hostile.contains('\x1b'),
            "{hostile}"
        );
    }
}
