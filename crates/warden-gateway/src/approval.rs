//! Holding a call decided `ask` until a human answers.
//!
//! The journal is the only channel between the held call and whoever answers: the guard
//! journals `approval_requested`, an operator (dashboard, API, `warden approvals`, possibly in
//! another Warden process) journals `approval_answered`, and the guard reads it back. The
//! first answer journaled for a request is the one in force, so two operators answering at
//! once, or an answer racing the timeout, resolve the same way for everyone who reads the
//! journal. Nobody answering in time is a refusal.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use warden_core::{ActionKind, ApprovalAnswer, EventBody};
use warden_journal::{Journal, JournalError, JournalReader, Query};

/// How often a held call looks for an answer journaled by another process. Answers from this
/// process wake it at once.
const POLL: Duration = Duration::from_millis(200);

/// The answer in force for a held call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// What was answered.
    pub answer: ApprovalAnswer,
    /// Who answered (`operator:NAME` or `timeout`).
    pub by: String,
    /// Their reason.
    pub reason: String,
    /// The answer's record.
    pub seq: u64,
}

/// Whether calls decided `ask` wait for a human, and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldOptions {
    /// How long a call waits before it is refused.
    pub timeout: Duration,
}

/// What a session's humans approved for the rest of the session: action and target, and a
/// note naming who approved it and where.
#[derive(Debug, Clone, Default)]
pub struct SessionGrants {
    granted: Arc<Mutex<HashMap<(ActionKind, String), String>>>,
}

impl SessionGrants {
    /// The note of the grant covering `kind` on `target`, if any.
    pub fn covering(&self, kind: ActionKind, target: &str) -> Option<String> {
        self.lock().get(&(kind, target.to_owned())).cloned()
    }

    /// Remembers that `kind` on `target` is approved for the session.
    pub fn grant(&self, kind: ActionKind, target: String, note: String) {
        self.lock().insert((kind, target), note);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ActionKind, String), String>> {
        // A panic elsewhere cannot leave the map half-written: every update is one insert.
        self.granted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The first answer to `decision_seq` among `approval_answered` records after `after` (and
/// before `before`, when given); also returns the last such record examined.
pub fn first_answer(
    reader: &JournalReader,
    decision_seq: u64,
    after: u64,
    before: Option<u64>,
) -> Result<(Option<Answered>, u64), JournalError> {
    let mut cursor = after;
    loop {
        let page = reader.records(&Query {
            after_seq: cursor,
            before_seq: before,
            kind: Some("approval_answered".to_owned()),
            limit: 256,
            ..Query::default()
        })?;
        let full = page.len() == 256;
        for record in page {
            cursor = record.seq;
            if let Ok(EventBody::ApprovalAnswered {
                decision_seq: answered,
                answer,
                by,
                reason,
            }) = serde_json::from_value::<EventBody>(record.body)
                && answered == decision_seq
            {
                return Ok((
                    Some(Answered {
                        answer,
                        by,
                        reason,
                        seq: record.seq,
                    }),
                    cursor,
                ));
            }
        }
        if !full {
            return Ok((None, cursor));
        }
    }
}

/// Waits for the first answer to the held call `decision_seq` (already requested, in record
/// `requested_seq`), or journals the timeout (`timeout_record`) when the time runs out.
/// Any journal failure ends in a refusal the caller reports.
pub async fn wait_for_answer(
    journal: &Journal,
    decision_seq: u64,
    requested_seq: u64,
    timeout: Duration,
    withdrawn: impl Future<Output = Withdrawal>,
    closing_record: impl AsyncFnOnce(ApprovalAnswer, String, String) -> Result<u64, JournalError>,
) -> Result<Waited, JournalError> {
    let path: PathBuf = journal.path().to_owned();
    let reader = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || JournalReader::open(&path))
            .await
            .map_err(|e| JournalError::Malformed {
                seq: decision_seq,
                detail: format!("reader task: {e}"),
            })??
    };
    let reader = Arc::new(Mutex::new(reader));
    let look = |after: u64, before: Option<u64>| {
        let reader = reader.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let reader = reader.lock().unwrap_or_else(|e| e.into_inner());
                first_answer(&reader, decision_seq, after, before)
            })
            .await
            .map_err(|e| JournalError::Malformed {
                seq: decision_seq,
                detail: format!("reader task: {e}"),
            })?
        }
    };
    let mut commits = Some(journal.commits());
    let deadline = tokio::time::Instant::now() + timeout;
    let mut cursor = requested_seq;
    let mut withdrawn = std::pin::pin!(withdrawn);
    let mut withdrawal = None;
    loop {
        let (found, examined) = look(cursor, None).await?;
        if let Some(answered) = found {
            return Ok(Waited {
                answered,
                withdrawn: None,
            });
        }
        cursor = examined;
        let wake = async {
            match &mut commits {
                Some(c) => c.changed().await.is_err(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            reason = &mut withdrawn => {
                withdrawal = Some(reason);
                break;
            }
            () = tokio::time::sleep(POLL) => {}
            closed = wake => if closed {
                // The journal's writer is gone; polling still reads the file.
                commits = None;
            },
        }
    }
    let (answer, by, reason) = match &withdrawal {
        Some(w) => (ApprovalAnswer::Withdrawn, w.by, w.reason.clone()),
        None => (
            ApprovalAnswer::Timeout,
            "timeout",
            format!("nobody answered within {} s", timeout.as_secs()),
        ),
    };
    let closed = closing_record(answer, by.to_owned(), reason.clone()).await?;
    // An answer journaled just before the closing record still wins.
    let (found, _) = look(cursor, Some(closed)).await?;
    Ok(Waited {
        answered: found.unwrap_or(Answered {
            answer,
            by: by.to_owned(),
            reason,
            seq: closed,
        }),
        withdrawn: withdrawal,
    })
}

/// How a held call's wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waited {
    /// The answer in force: the first one journaled.
    pub answered: Answered,
    /// Who withdrew the call while it was held, and why, if anyone did. The call must not go
    /// ahead even if a human approved it a moment before.
    pub withdrawn: Option<Withdrawal>,
}

/// A held call ended before a human answered it, other than by time: by the agent (it
/// cancelled the call) or by Warden (the session it belongs to ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    /// `agent` or `warden`, as the journal's `approval_answered` record names it.
    pub by: &'static str,
    /// Why.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::{AgentId, Event, SessionId};
    use warden_journal::JournalOptions;

    fn answer_event(decision_seq: u64, answer: ApprovalAnswer, by: &str) -> Event {
        Event {
            time_ms: 1,
            agent: AgentId::new("alice").unwrap(),
            session: SessionId::from_raw("operator"),
            body: EventBody::ApprovalAnswered {
                decision_seq,
                answer,
                by: by.to_owned(),
                reason: "checked".to_owned(),
            },
        }
    }

    #[tokio::test]
    async fn the_first_answer_wins_and_other_requests_answers_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.db"), JournalOptions::default()).unwrap();
        journal
            .append(&answer_event(7, ApprovalAnswer::Deny, "operator:eve"))
            .await
            .unwrap();
        let first = journal
            .append(&answer_event(5, ApprovalAnswer::Approve, "operator:ann"))
            .await
            .unwrap();
        journal
            .append(&answer_event(5, ApprovalAnswer::Deny, "operator:bob"))
            .await
            .unwrap();
        let waited = wait_for_answer(
            &journal,
            5,
            0,
            Duration::from_secs(60),
            std::future::pending(),
            async |_, _, _| panic!("answered requests do not time out"),
        )
        .await
        .unwrap();
        assert_eq!(waited.withdrawn, None);
        let answered = waited.answered;
        assert_eq!(answered.answer, ApprovalAnswer::Approve);
        assert_eq!(answered.by, "operator:ann");
        assert_eq!(answered.seq, first);
        journal.close().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_answering_is_a_journaled_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.db"), JournalOptions::default()).unwrap();
        let j = journal.clone();
        let answered = wait_for_answer(
            &journal,
            3,
            0,
            Duration::from_secs(2),
            std::future::pending(),
            async |answer, by, _| {
                assert_eq!(answer, ApprovalAnswer::Timeout);
                j.append(&answer_event(3, answer, &by)).await
            },
        )
        .await
        .unwrap()
        .answered;
        assert_eq!(answered.answer, ApprovalAnswer::Timeout);
        assert!(!answered.answer.approves());
        journal.close().await.unwrap();
    }

    #[tokio::test]
    async fn an_answer_from_this_process_wakes_the_held_call() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.db"), JournalOptions::default()).unwrap();
        let held = {
            let journal = journal.clone();
            tokio::spawn(async move {
                wait_for_answer(
                    &journal,
                    9,
                    0,
                    Duration::from_secs(60),
                    std::future::pending(),
                    async |_, _, _| panic!("the answer comes before the timeout"),
                )
                .await
            })
        };
        journal
            .append(&answer_event(
                9,
                ApprovalAnswer::ApproveSession,
                "operator:ann",
            ))
            .await
            .unwrap();
        let answered = tokio::time::timeout(Duration::from_secs(30), held)
            .await
            .expect("the held call saw the answer")
            .unwrap()
            .unwrap()
            .answered;
        assert_eq!(answered.answer, ApprovalAnswer::ApproveSession);
        journal.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_call_withdrawn_while_held_is_closed_in_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.db"), JournalOptions::default()).unwrap();
        let j = journal.clone();
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<String>();
        cancel.send("the user gave up".into()).unwrap();
        let waited = wait_for_answer(
            &journal,
            4,
            0,
            Duration::from_secs(60),
            async {
                Withdrawal {
                    by: "agent",
                    reason: cancelled.await.unwrap(),
                }
            },
            async |answer, by, reason| {
                j.append(&Event {
                    body: EventBody::ApprovalAnswered {
                        decision_seq: 4,
                        answer,
                        by: by.clone(),
                        reason,
                    },
                    ..answer_event(4, answer, &by)
                })
                .await
            },
        )
        .await
        .unwrap();
        assert_eq!(
            waited.withdrawn.map(|w| w.reason).as_deref(),
            Some("the user gave up")
        );
        assert_eq!(waited.answered.answer, ApprovalAnswer::Withdrawn);
        assert_eq!(waited.answered.reason, "the user gave up");
        // The closing record is the first answer: nobody can approve the call any more.
        let reader = JournalReader::open(&dir.path().join("j.db")).unwrap();
        let (first, _) = first_answer(&reader, 4, 0, None).unwrap();
        assert_eq!(first.unwrap().answer, ApprovalAnswer::Withdrawn);
        journal.close().await.unwrap();
    }
}
