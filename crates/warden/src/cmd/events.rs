//! `warden events`: journal records as readable lines, filtered by agent and kind, the newest
//! by default, and followed as other Warden processes write them. Read-only.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use warden_core::AgentId;
use warden_journal::{JournalReader, JournalRecord, Query};

use crate::cmd::audit::render;
use crate::cmd::journal_source::JournalSource;

/// How often `--follow` looks for new records: the journal may be written by other
/// processes, so it polls the file.
const POLL: Duration = Duration::from_millis(200);

/// Records read per step.
const PAGE: usize = 1000;

#[derive(clap::Args)]
pub struct Args {
    /// Only this agent's records.
    #[arg(long)]
    agent: Option<String>,
    /// Only records of this kind (decision, outcome, alert, quarantined, …).
    #[arg(long)]
    kind: Option<String>,
    /// Start after this record number (default: the newest --limit records).
    #[arg(long)]
    after: Option<u64>,
    /// Keep printing new records as they are written.
    #[arg(long)]
    follow: bool,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// At most this many records: the newest, or the first after --after. When following
    /// with --after, every record after it is shown.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    source: JournalSource,
}

/// Which records a listing shows.
pub(crate) struct Listing {
    pub agent: Option<AgentId>,
    pub kind: Option<String>,
    pub after: Option<u64>,
    pub follow: bool,
    pub limit: usize,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let kind = args.kind.map(checked_kind).transpose()?;
    let agent = args
        .agent
        .map(|a| AgentId::new(a).map_err(|e| anyhow::anyhow!("--agent: {e}")))
        .transpose()?;
    let config = args.source.config()?;
    let (reader, _) = args.source.reader(&config)?;
    let listing = Listing {
        agent,
        kind,
        after: args.after,
        follow: args.follow,
        limit: checked_limit(args.limit)?,
    };
    let json = args.json;
    show(&reader, &listing, |record| {
        if json {
            say!("{}", serde_json::to_string(record)?);
        } else {
            say!("{}", render(record));
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `kind` if it is one the journal holds.
pub(crate) fn checked_kind(kind: String) -> Result<String> {
    if warden_core::EventBody::KINDS.contains(&kind.as_str()) {
        Ok(kind)
    } else {
        bail!(
            "unknown event kind {:?}: it is one of {}",
            warden_core::escape_for_display(&kind),
            warden_core::EventBody::KINDS.join(", ")
        )
    }
}

pub(crate) fn checked_limit(limit: usize) -> Result<usize> {
    if limit == 0 {
        bail!("--limit must be at least 1");
    }
    Ok(limit)
}

/// Calls `each` on the records `listing` names, in seq order; when following, keeps calling
/// it on new records until the process is stopped (or stdout closes: `say!` ends it).
pub(crate) fn show(
    reader: &JournalReader,
    listing: &Listing,
    mut each: impl FnMut(&JournalRecord) -> Result<()>,
) -> Result<()> {
    let filtered = |after_seq: u64, limit: usize, newest_first: bool| Query {
        after_seq,
        agent: listing.agent.clone(),
        kind: listing.kind.clone(),
        newest_first,
        limit,
        ..Query::default()
    };
    let mut cursor = match listing.after {
        None => {
            // The newest `limit`, oldest of them first; following goes on from the newest.
            let mut newest = reader.records(&filtered(0, listing.limit, true))?;
            newest.reverse();
            for record in &newest {
                each(record)?;
            }
            match newest.last() {
                Some(r) => r.seq,
                // Nothing matches yet: follow from the journal's end, not its start.
                None => reader.last_seq()?,
            }
        }
        Some(after) => {
            let mut cursor = after;
            let mut left = if listing.follow {
                usize::MAX
            } else {
                listing.limit
            };
            while left > 0 {
                let records = reader.records(&filtered(cursor, left.min(PAGE), false))?;
                for record in &records {
                    each(record)?;
                    cursor = record.seq;
                }
                left -= records.len();
                if records.len() < PAGE {
                    break;
                }
            }
            cursor
        }
    };
    if !listing.follow {
        return Ok(());
    }
    loop {
        let records = reader.records(&filtered(cursor, PAGE, false))?;
        for record in &records {
            each(record)?;
            cursor = record.seq;
        }
        if records.len() < PAGE {
            std::thread::sleep(POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_checked() {
        assert!(checked_kind("decision".into()).is_ok());
        assert!(checked_kind("approval_answered".into()).is_ok());
        let err = checked_kind("decisions".into()).unwrap_err().to_string();
        assert!(
            err.contains("unknown event kind") && err.contains("alert"),
            "{err}"
        );
        assert!(checked_limit(0).is_err());
    }
}
