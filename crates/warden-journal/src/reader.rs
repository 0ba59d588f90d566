//! Reading records back, read-only, for `warden audit log` and its `--follow` mode.

use std::path::Path;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use warden_core::{AgentId, SessionId};

use crate::error::JournalError;
use crate::store::{
    self, AGENT_FULL_KIND_INDEX, AGENT_INDEX, AGENT_SPARSE_KIND_INDEX, DENSE_KINDS, SPARSE_KIND,
    SPARSE_KIND_INDEX, seq_to_sql,
};

/// One stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// Sequence number, from 1.
    pub seq: u64,
    /// When the event was observed, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The event kind (`decision`, `outcome`, ...).
    pub kind: String,
    /// The agent.
    pub agent: AgentId,
    /// The session.
    pub session: SessionId,
    /// The event body (its `kind` tag included).
    pub body: serde_json::Value,
    /// Hex hash of the previous record (64 zeros for the first).
    pub prev_hash: String,
    /// Hex hash of this record.
    pub hash: String,
}

/// Which records to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Only records with a greater seq (0: from the start). A follower passes the last seq
    /// it has seen.
    pub after_seq: u64,
    /// Only records with a smaller seq (`None`: no bound). A reader paging back from the
    /// newest passes the last seq it has seen.
    pub before_seq: Option<u64>,
    /// Only this agent's records.
    pub agent: Option<AgentId>,
    /// Only records of this kind (`decision`, `alert`, …).
    pub kind: Option<String>,
    /// Newest first instead of in seq order.
    pub newest_first: bool,
    /// At most this many records.
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            after_seq: 0,
            before_seq: None,
            agent: None,
            kind: None,
            newest_first: false,
            limit: 1000,
        }
    }
}

/// A read-only view of a journal. It never writes, so it can be used on a journal that
/// another process is appending to.
#[derive(Debug)]
pub struct JournalReader {
    conn: Connection,
}

impl JournalReader {
    /// Opens the journal at `path` read-only.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        Ok(Self {
            conn: store::open_read_only(path)?,
        })
    }

    /// Records matching `query`, in seq order (or newest first). Indexed by agent and by
    /// kind, so a filtered page costs about as much as its size, not the journal's.
    pub fn records(&self, query: &Query) -> Result<Vec<JournalRecord>, JournalError> {
        let (sql, values) = self.sql(query)?;
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(decode(row)?);
        }
        Ok(out)
    }

    /// The statement reading `query`, and its parameters.
    fn sql(&self, query: &Query) -> Result<(String, Vec<rusqlite::types::Value>), JournalError> {
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let mut sql = String::from(
            "SELECT seq, time_ms, kind, agent, session, body, prev_hash, hash FROM records",
        );
        let index = self.index_for(query)?;
        if let Some(index) = index {
            sql.push_str(" INDEXED BY ");
            sql.push_str(index);
        }
        sql.push_str(" WHERE seq > ?1 AND seq < ?2");
        if matches!(index, Some(SPARSE_KIND_INDEX | AGENT_SPARSE_KIND_INDEX)) {
            sql.push_str(" AND ");
            sql.push_str(SPARSE_KIND);
        }
        let mut values: Vec<rusqlite::types::Value> = vec![
            seq_to_sql(query.after_seq).into(),
            query.before_seq.map_or(i64::MAX, seq_to_sql).into(),
        ];
        if let Some(agent) = &query.agent {
            values.push(agent.as_str().to_owned().into());
            sql.push_str(&format!(" AND agent = ?{}", values.len()));
        }
        if let Some(kind) = &query.kind {
            values.push(kind.clone().into());
            sql.push_str(&format!(" AND kind = ?{}", values.len()));
        }
        values.push(limit.into());
        sql.push_str(if query.newest_first {
            " ORDER BY seq DESC"
        } else {
            " ORDER BY seq"
        });
        sql.push_str(&format!(" LIMIT ?{}", values.len()));
        Ok((sql, values))
    }

    /// The record `seq`, if the journal has it.
    pub fn record(&self, seq: u64) -> Result<Option<JournalRecord>, JournalError> {
        if seq == 0 {
            return Ok(None);
        }
        Ok(self
            .records(&Query {
                after_seq: seq - 1,
                limit: 1,
                ..Query::default()
            })?
            .into_iter()
            .next()
            .filter(|r| r.seq == seq))
    }

    /// The index `query` is read through, when SQLite is not to choose.
    ///
    /// Without statistics SQLite may pick the kind index for both filters and then read every
    /// record of that kind to find one agent's (a quiet agent's page in a big journal took
    /// over 100 ms): with both, the agent-and-kind index is named. The dense kinds have no
    /// kind index in journals created since [`store::DENSE_KINDS`]: by agent, the agent's
    /// index and a filter; by kind alone, the records in seq order and a filter, which finds
    /// them among almost every record. A journal of an earlier version (one full kind index,
    /// and the agent-and-kind one unless it was never opened for writing since) is read
    /// through those.
    fn index_for(&self, query: &Query) -> Result<Option<&'static str>, JournalError> {
        let Some(kind) = &query.kind else {
            return Ok(None);
        };
        let sparse = !DENSE_KINDS.contains(&kind.as_str());
        let has = |name| store::has_index(&self.conn, name);
        Ok(if query.agent.is_some() {
            if sparse && has(AGENT_SPARSE_KIND_INDEX)? {
                Some(AGENT_SPARSE_KIND_INDEX)
            } else if has(AGENT_FULL_KIND_INDEX)? {
                Some(AGENT_FULL_KIND_INDEX)
            } else {
                Some(AGENT_INDEX)
            }
        } else if sparse && has(SPARSE_KIND_INDEX)? {
            Some(SPARSE_KIND_INDEX)
        } else {
            None
        })
    }

    /// The highest seq in the journal (0 when empty).
    pub fn last_seq(&self) -> Result<u64, JournalError> {
        let seq: Option<i64> = self
            .conn
            .query_row("SELECT max(seq) FROM records", [], |r| r.get(0))?;
        Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
    }
}

fn decode(row: &rusqlite::Row<'_>) -> Result<JournalRecord, JournalError> {
    let seq: i64 = row.get(0)?;
    let seq = u64::try_from(seq).map_err(|_| JournalError::Malformed {
        seq: 0,
        detail: format!("negative seq {seq}"),
    })?;
    let malformed = |detail: String| JournalError::Malformed { seq, detail };
    let agent: String = row.get(3)?;
    let agent = AgentId::new(agent).map_err(|e| malformed(e.to_string()))?;
    let body: String = row.get(5)?;
    let body = serde_json::from_str(&body).map_err(|e| malformed(format!("body: {e}")))?;
    let prev_hash: Vec<u8> = row.get(6)?;
    let hash: Vec<u8> = row.get(7)?;
    Ok(JournalRecord {
        seq,
        time_ms: row.get(1)?,
        kind: row.get(2)?,
        agent,
        session: SessionId::from_raw(row.get::<_, String>(4)?),
        body,
        prev_hash: hex::encode(prev_hash),
        hash: hex::encode(hash),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Journal;
    use crate::testing::{decision, fast_options};
    use proptest::prelude::*;
    use warden_core::{Event, EventBody, Outcome, Severity};

    const AGENTS: [&str; 3] = ["alice", "bob", "quiet"];
    const KINDS: [&str; 4] = ["decision", "outcome", "alert", "session_started"];

    /// Record `i` of kind `kind` for `agent`.
    fn event(agent: &str, kind: &str, i: u64) -> Event {
        let mut event = decision(agent, i);
        event.body = match kind {
            "decision" => event.body,
            "outcome" => EventBody::Outcome {
                decision_seq: i,
                outcome: Outcome::Ok,
                detail: String::new(),
                labels: Vec::new(),
            },
            "alert" => EventBody::Alert {
                detector: "denial_burst".into(),
                severity: Severity::High,
                summary: format!("alert {i}"),
                evidence: vec![i],
            },
            _ => EventBody::SessionStarted {
                server: "files".into(),
                warden_version: "test".into(),
                parent: None,
            },
        };
        event
    }

    /// A journal of `records` ((agent, kind) indexes into [`AGENTS`], [`KINDS`]), in the
    /// index layout of this version or, with `earlier_layout`, of earlier versions.
    fn journal_of(dir: &Path, records: &[(usize, usize)], earlier_layout: bool) -> JournalReader {
        let path = dir.join("j.db");
        let journal = Journal::open(&path, fast_options()).unwrap();
        for (i, &(agent, kind)) in records.iter().enumerate() {
            let event = event(AGENTS[agent], KINDS[kind], i as u64 + 1);
            journal.append(&event).wait().unwrap();
        }
        journal.close_blocking().unwrap();
        drop(journal);
        if earlier_layout {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "DROP INDEX records_sparse_kind_seq; DROP INDEX records_agent_sparse_kind_seq;
                 CREATE INDEX records_kind_seq ON records (kind, seq);
                 CREATE INDEX records_agent_kind_seq ON records (agent, kind, seq);",
            )
            .unwrap();
        }
        JournalReader::open(&path).unwrap()
    }

    fn indexes(reader: &JournalReader) -> Vec<String> {
        let mut stmt = reader
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'records_%' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// SQLite's plan for `query`, as `EXPLAIN QUERY PLAN` details.
    fn plan(reader: &JournalReader, query: &Query) -> String {
        let (sql, values) = reader.sql(query).unwrap();
        let mut stmt = reader
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let details: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(values), |r| r.get(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        details.join("; ")
    }

    #[test]
    fn the_sparse_condition_names_exactly_the_dense_kinds() {
        let listed = DENSE_KINDS.map(|k| format!("'{k}'")).join(", ");
        assert_eq!(SPARSE_KIND, format!("kind NOT IN ({listed})"));
    }

    #[test]
    fn new_journals_index_kinds_but_the_dense_ones() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<(usize, usize)> = (0..40).map(|i| (i % 3, i % 4)).collect();
        let reader = journal_of(dir.path(), &records, false);
        assert_eq!(
            indexes(&reader),
            [
                "records_agent_seq",
                "records_agent_sparse_kind_seq",
                "records_sparse_kind_seq"
            ]
        );
        let query = |agent: Option<&str>, kind: &str| Query {
            agent: agent.map(|a| AgentId::new(a).unwrap()),
            kind: Some(kind.into()),
            ..Query::default()
        };
        let alerts = plan(&reader, &query(None, "alert"));
        assert!(alerts.contains("records_sparse_kind_seq"), "{alerts}");
        let quiet_alerts = plan(&reader, &query(Some("quiet"), "alert"));
        assert!(
            quiet_alerts.contains("records_agent_sparse_kind_seq"),
            "{quiet_alerts}"
        );
        let decisions = plan(&reader, &query(None, "decision"));
        assert!(decisions.contains("INTEGER PRIMARY KEY"), "{decisions}");
        let quiet_decisions = plan(&reader, &query(Some("quiet"), "decision"));
        assert!(
            quiet_decisions.contains("records_agent_seq"),
            "{quiet_decisions}"
        );
    }

    #[test]
    fn a_journal_of_the_earlier_layout_keeps_it_when_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let reader = journal_of(dir.path(), &[(0, 0), (1, 2)], true);
        drop(reader);
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path, fast_options()).unwrap();
        journal.append(&event("quiet", "alert", 3)).wait().unwrap();
        journal.close_blocking().unwrap();
        let reader = JournalReader::open(&path).unwrap();
        assert_eq!(
            indexes(&reader),
            [
                "records_agent_kind_seq",
                "records_agent_seq",
                "records_kind_seq"
            ]
        );
        let both = Query {
            agent: Some(AgentId::new("quiet").unwrap()),
            kind: Some("alert".into()),
            ..Query::default()
        };
        assert!(plan(&reader, &both).contains("records_agent_kind_seq"));
        assert_eq!(reader.records(&both).unwrap().len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever the filters and whichever layout, a query returns exactly the records a
        /// plain filter of the whole journal gives.
        #[test]
        fn queries_return_what_a_plain_filter_gives(
            records in proptest::collection::vec((0..AGENTS.len(), 0..KINDS.len()), 0..60),
            earlier_layout in any::<bool>(),
            queries in proptest::collection::vec(
                (
                    proptest::option::of(0..AGENTS.len()),
                    proptest::option::of(0..KINDS.len() + 1),
                    0u64..70,
                    proptest::option::of(0u64..70),
                    any::<bool>(),
                    1usize..20,
                ),
                1..12,
            ),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let reader = journal_of(dir.path(), &records, earlier_layout);
            let all = reader.records(&Query { limit: usize::MAX, ..Query::default() }).unwrap();
            prop_assert_eq!(all.len(), records.len());
            for (agent, kind, after_seq, before_seq, newest_first, limit) in queries {
                let query = Query {
                    after_seq,
                    before_seq,
                    agent: agent.map(|a| AgentId::new(AGENTS[a]).unwrap()),
                    // One past the kinds: a kind no record has.
                    kind: kind.map(|k| KINDS.get(k).copied().unwrap_or("released").to_owned()),
                    newest_first,
                    limit,
                };
                let mut expected: Vec<u64> = all
                    .iter()
                    .filter(|r| r.seq > after_seq && before_seq.is_none_or(|b| r.seq < b))
                    .filter(|r| query.agent.as_ref().is_none_or(|a| &r.agent == a))
                    .filter(|r| query.kind.as_ref().is_none_or(|k| &r.kind == k))
                    .map(|r| r.seq)
                    .collect();
                if newest_first {
                    expected.reverse();
                }
                expected.truncate(limit);
                let got: Vec<u64> = reader.records(&query).unwrap().iter().map(|r| r.seq).collect();
                prop_assert_eq!(got, expected, "{:?}", query);
            }
        }
    }

    #[test]
    fn filters_by_agent_after_seq_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path, fast_options()).unwrap();
        for i in 1..=10u64 {
            let agent = if i.is_multiple_of(2) { "bob" } else { "alice" };
            journal.append(&decision(agent, i)).wait().unwrap();
        }
        let reader = JournalReader::open(&path).unwrap();
        assert_eq!(reader.last_seq().unwrap(), 10);

        let all = reader.records(&Query::default()).unwrap();
        assert_eq!(all.len(), 10);
        assert_eq!(all[0].prev_hash, "0".repeat(64));
        assert_eq!(all[1].prev_hash, all[0].hash);
        assert_eq!(all[0].body["kind"], "decision");
        assert_eq!(all[0].body["target"], "fs/read_file");

        let bob = Query {
            after_seq: 4,
            agent: Some(AgentId::new("bob").unwrap()),
            limit: 2,
            ..Query::default()
        };
        let seqs: Vec<u64> = reader
            .records(&bob)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, [6, 8]);

        // Following: poll with the last seen seq while the writer goes on.
        journal.append(&decision("alice", 11)).wait().unwrap();
        let next = reader
            .records(&Query {
                after_seq: 10,
                ..Query::default()
            })
            .unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].seq, 11);
        journal.close_blocking().unwrap();
    }
}
