//! `warden quarantine NAME --reason …` and `warden release NAME --reason …`: a human's hand on
//! the quarantine list. Both are journaled with the reason; only a release lifts a quarantine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use warden_core::{AgentId, Event, EventBody, SessionId};
use warden_journal::Journal;
use warden_monitor::{Quarantine, QuarantineEntry};

use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// The agent.
    agent: String,
    /// Why, for the journal (required).
    #[arg(long)]
    reason: String,
    /// The configuration file (default: ./warden.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Who the operator is, as far as this machine knows: the user behind `sudo`, the login
/// shell's user, else the account of this process's uid.
pub(crate) fn operator() -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .or_else(account_name)
        .unwrap_or_else(|| "unknown".into());
    format!("operator:{user}")
}

/// This process's account name from `/etc/passwd`, else `uid-N`: for shells that set no
/// `USER` (a root shell in a container, a service).
fn account_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let named = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let _password = fields.next()?;
                (fields.next()?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        });
    Some(named.unwrap_or_else(|| format!("uid-{uid}")))
}

fn open(config: &Config) -> Result<(Quarantine, Journal)> {
    let path = config.resolve(&config.monitor.quarantine_file);
    let list = Quarantine::open(&path)
        .with_context(|| format!("reading the quarantine list {}", path.display()))?;
    let journal_path = config.journal_path();
    let journal = Journal::open(&journal_path, config.journal_options())
        .with_context(|| format!("opening the journal {}", journal_path.display()))?;
    Ok((list, journal))
}

pub(crate) fn check_reason(reason: &str) -> Result<()> {
    if reason.trim().is_empty() {
        bail!("--reason must say why: it is journaled for whoever reviews this later");
    }
    Ok(())
}

pub(crate) fn record(journal: &Journal, agent: &AgentId, body: EventBody) -> Result<u64> {
    let event = Event {
        time_ms: warden_gateway::guard::now_ms(),
        agent: agent.clone(),
        // Not an agent's session: the operator's act, on its own.
        session: SessionId::from_raw("operator"),
        body,
    };
    journal.append(&event).wait().context("journaling it")
}

pub fn quarantine(args: Args) -> Result<ExitCode> {
    check_reason(&args.reason)?;
    let config = Config::load(args.config.as_deref())?;
    let agent = AgentId::new(&args.agent).context("the agent name")?;
    let (list, journal) = open(&config)?;
    let by = operator();
    let added = list
        .add(QuarantineEntry {
            agent: agent.clone(),
            level: warden_monitor::Level::Quarantine,
            reason: args.reason.clone(),
            by: by.clone(),
            since_ms: warden_gateway::guard::now_ms(),
            evidence: Vec::new(),
        })
        .context("writing the quarantine list")?;
    if !added {
        say!("agent {agent} was already quarantined");
        return Ok(ExitCode::SUCCESS);
    }
    let seq = record(
        &journal,
        &agent,
        EventBody::Quarantined {
            level: "quarantine".into(),
            reason: args.reason,
            by,
            evidence: Vec::new(),
        },
    )?;
    // Its HTTP token goes too: a release needs a new one, issued by a human.
    let store = warden_gateway::identity::AgentStore::new(config.agents_file());
    let revoked = store.revoke_recorded(&agent, |a, change| {
        record(
            &journal,
            a,
            EventBody::AgentChanged {
                change: change.as_str().to_owned(),
            },
        )
        .map(drop)
        .map_err(|e| e.to_string())
    });
    journal.close_blocking().context("closing the journal")?;
    say!(
        "agent {agent} quarantined — journal #{seq}; every running Warden refuses its actions \
         and kills its sandboxes{}",
        if revoked.is_ok() {
            "; its HTTP token is revoked"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn release(args: Args) -> Result<ExitCode> {
    check_reason(&args.reason)?;
    let config = Config::load(args.config.as_deref())?;
    let agent = AgentId::new(&args.agent).context("the agent name")?;
    let (list, journal) = open(&config)?;
    let Some(entry) = list.remove(&agent).context("writing the quarantine list")? else {
        bail!("agent {agent} is not quarantined");
    };
    let seq = record(
        &journal,
        &agent,
        EventBody::Released {
            by: operator(),
            reason: args.reason,
        },
    )?;
    journal.close_blocking().context("closing the journal")?;
    say!(
        "agent {agent} released (it was quarantined by {}: {}) — journal #{seq}",
        entry.by,
        entry.reason
    );
    // The quarantine revoked its HTTP token, and a release does not bring it back: a new one
    // is a human's decision too.
    let store = warden_gateway::identity::AgentStore::new(config.agents_file());
    let revoked = store
        .list()
        .ok()
        .is_some_and(|agents| agents.iter().any(|a| a.name == agent && !a.is_active()));
    if revoked {
        say!(
            "its HTTP token stays revoked; issue a new one with `warden agent add {agent} --rotate`"
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_an_account_name() {
        use std::os::unix::fs::MetadataExt;
        // Whatever the environment says, the uid names someone: its account, or `uid-N`.
        let uid = std::fs::metadata("/proc/self").unwrap().uid();
        let name = super::account_name().unwrap();
        let listed = std::fs::read_to_string("/etc/passwd")
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.starts_with(&format!("{name}:")) && l.split(':').nth(2) == Some(&uid.to_string())
            });
        assert!(
            listed || name == format!("uid-{uid}"),
            "{name} for uid {uid}"
        );
    }
}
