//! `warden audit verify` and `warden audit log`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use warden_core::AgentId;
use warden_journal::{JournalReader, JournalRecord, Query, verify};

use crate::cmd::journal_source::JournalSource;

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Prove the journal's hash chain and signed checkpoints intact, or name the first record
    /// that was altered, removed, reordered or cut off (exit status 1).
    Verify(JournalSource),
    /// Print journal records.
    Log {
        #[command(flatten)]
        target: JournalSource,
        /// Only this agent's records.
        #[arg(long)]
        agent: Option<String>,
        /// Start after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep printing new records as they are written.
        #[arg(long)]
        follow: bool,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify(target) => run_verify(&target.path()?),
        AuditCommand::Log {
            target,
            agent,
            after,
            follow,
            json,
        } => {
            let agent = agent.map(AgentId::new).transpose()?;
            run_log(&target.path()?, agent, after, follow, json)
        }
    }
}

fn run_verify(path: &std::path::Path) -> Result<ExitCode> {
    let report = verify(path).with_context(|| format!("verifying {}", path.display()))?;
    match &report.breach {
        None => {
            say!(
                "journal {}: intact — {} records, chain verified to #{}, {} signed {} valid",
                path.display(),
                report.records_checked,
                report.last_seq,
                report.checkpoints_checked,
                if report.checkpoints_checked == 1 {
                    "checkpoint"
                } else {
                    "checkpoints"
                },
            );
            let signed_to = report.head_seq.unwrap_or(0);
            if report.last_seq > signed_to {
                // Honest about the window: a cut after the newest signature leaves a valid
                // chain. Warden signs within a second of writing, and at every clean exit.
                say!(
                    "note: records after #{signed_to} are not yet covered by a signed checkpoint \
                     (Warden may still be running); a cut there would not be detected"
                );
            }
            if let Some(key) = &report.public_key {
                // Compare with a copy kept off this host: a rewritten history needs a new key.
                say!("checkpoint signing key (public): {key}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(breach) => {
            say!(
                "journal {}: TAMPERED — record #{}: {} ({})",
                path.display(),
                breach.seq,
                breach.kind,
                breach.detail
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn run_log(
    path: &std::path::Path,
    agent: Option<AgentId>,
    after: u64,
    follow: bool,
    json: bool,
) -> Result<ExitCode> {
    let reader =
        JournalReader::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut query = Query {
        after_seq: after,
        agent,
        limit: 1000,
        ..Query::default()
    };
    let stdout = std::io::stdout();
    loop {
        let records = reader.records(&query)?;
        let mut out = stdout.lock();
        for record in &records {
            let line = if json {
                serde_json::to_string(record)?
            } else {
                render(record)
            };
            if writeln!(out, "{line}").is_err() {
                // The reader went away (a closed pipe): stop quietly.
                return Ok(ExitCode::SUCCESS);
            }
            query.after_seq = record.seq;
        }
        let _ = out.flush();
        if records.len() == query.limit {
            continue;
        }
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        // Following polls the file: the journal may be written by other processes.
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One record as a line a human reads.
pub fn render(r: &JournalRecord) -> String {
    let time = chrono::DateTime::from_timestamp_millis(r.time_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| r.time_ms.to_string());
    let b = &r.body;
    let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("");
    let what = match r.kind.as_str() {
        "decision" => {
            let policies = b
                .get("policies")
                .and_then(Value::as_array)
                .map(|p| {
                    p.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            format!(
                "{:<5} {} {} {}  — {}{}",
                s("effect").to_uppercase(),
                s("action"),
                s("target"),
                b.get("args").map(Value::to_string).unwrap_or_default(),
                s("reason"),
                if policies.is_empty() {
                    String::new()
                } else {
                    format!(" [{policies}]")
                }
            )
        }
        "outcome" => {
            let labels: Vec<&str> = b
                .get("labels")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "outcome of #{}: {}{}{}",
                b.get("decision_seq").and_then(Value::as_u64).unwrap_or(0),
                s("outcome"),
                if s("detail").is_empty() {
                    String::new()
                } else {
                    format!(" — {}", s("detail"))
                },
                if labels.is_empty() {
                    String::new()
                } else {
                    format!(" (read: {})", labels.join(", "))
                }
            )
        }
        "session_started" => format!(
            "session started (server {}){}",
            s("server"),
            match s("parent") {
                "" => String::new(),
                p => format!(" from session {}", &p[..8.min(p.len())]),
            }
        ),
        "session_ended" => format!("session ended — {}", s("detail")),
        "agent_changed" => match s("change") {
            "added" => "agent added: a token was issued".to_owned(),
            "rotated" => "agent token rotated: the previous token no longer works".to_owned(),
            "revoked" => "agent revoked: its token is refused".to_owned(),
            other => format!("agent changed: {other}"),
        },
        "access_refused" => format!("REFUSED access from {} — {}", s("remote"), s("reason")),
        "sandbox_started" => {
            let list = |k: &str| {
                b.get(k)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default()
            };
            let degraded = list("degraded");
            format!(
                "sandbox started: {}{} — layers: {}{}",
                list("command"),
                match s("task") {
                    "" => String::new(),
                    task => format!(" — task: {task} [{}]", list("scope")),
                },
                list("layers"),
                if degraded.is_empty() {
                    String::new()
                } else {
                    format!(" — DEGRADED: {degraded}")
                }
            )
        }
        "sandbox_ended" => format!("sandbox ended — {}", s("status")),
        "alert" => format!(
            "ALERT {} {} — {} (evidence {})",
            s("severity").to_uppercase(),
            s("detector"),
            s("summary"),
            b.get("evidence")
                .and_then(Value::as_array)
                .map(|e| e
                    .iter()
                    .filter_map(Value::as_u64)
                    .map(|n| format!("#{n}"))
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default()
        ),
        "quarantined" => match s("level") {
            "" | "quarantine" => format!("QUARANTINED by {} — {}", s("by"), s("reason")),
            level => format!("RESTRICTED ({level}) by {} — {}", s("by"), s("reason")),
        },
        "released" => format!("released by {} — {}", s("by"), s("reason")),
        "sandbox_killed" => format!(
            "KILLED {} processes in {} µs ({}) by {}{}",
            b.get("processes").and_then(Value::as_u64).unwrap_or(0),
            b.get("elapsed_us").and_then(Value::as_u64).unwrap_or(0),
            s("method"),
            s("by"),
            match s("reason") {
                "" => String::new(),
                reason => format!(" — {reason}"),
            }
        ),
        "sandbox_limit" => {
            let n = |k: &str| b.get(k).and_then(Value::as_u64).unwrap_or(0);
            if s("limit") == "memory" {
                format!(
                    "LIMIT: {} processes killed at the memory limit ({} MiB)",
                    n("times"),
                    n("max") / (1024 * 1024)
                )
            } else {
                format!(
                    "LIMIT: {} process starts refused at the process limit ({})",
                    n("times"),
                    n("max")
                )
            }
        }
        "approval_requested" => format!(
            "APPROVAL REQUESTED for #{} — denied unless answered by {} UTC",
            b.get("decision_seq").and_then(Value::as_u64).unwrap_or(0),
            b.get("expires_ms")
                .and_then(Value::as_i64)
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default()
        ),
        "approval_answered" => format!(
            "approval of #{} answered {} by {} — {}",
            b.get("decision_seq").and_then(Value::as_u64).unwrap_or(0),
            s("answer").to_uppercase(),
            s("by"),
            s("reason")
        ),
        other => format!("{other} {b}"),
    };
    let session: String = r.session.as_str().chars().take(8).collect();
    // Agents and servers choose much of this text: nothing in it may move the cursor, change
    // colours or reorder what the operator reads.
    let line = format!(
        "#{:<6} {time} UTC  {:<12} {session}  {what}",
        r.seq,
        r.agent.as_str()
    );
    warden_core::escape_for_display(&line).into_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use warden_core::{AgentId, SessionId};
    use warden_journal::JournalRecord;

    use super::render;

    fn record(kind: &str, body: serde_json::Value) -> JournalRecord {
        JournalRecord {
            seq: 44,
            time_ms: 0,
            kind: kind.to_owned(),
            agent: AgentId::new("alice").unwrap(),
            session: SessionId::from_raw("0123456789abcdef"),
            body,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn approvals_read_as_sentences() {
        let asked = render(&record(
            "approval_requested",
            json!({"kind": "approval_requested", "decision_seq": 43, "expires_ms": 60_000}),
        ));
        assert!(
            asked.ends_with(
                "APPROVAL REQUESTED for #43 — denied unless answered by 1970-01-01 00:01:00 UTC"
            ),
            "{asked}"
        );
        let answered = render(&record(
            "approval_answered",
            json!({"kind": "approval_answered", "decision_seq": 43, "answer": "deny",
                   "by": "operator:ana", "reason": "not during the freeze"}),
        ));
        assert!(
            answered
                .ends_with("approval of #43 answered DENY by operator:ana — not during the freeze"),
            "{answered}"
        );
    }
}
