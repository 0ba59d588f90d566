//! Reading records back, read-only, for `warden audit log` and its `--follow` mode.

use std::path::Path;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use warden_core::{AgentId, SessionId};

use crate::error::JournalError;
use crate::store::{self, seq_to_sql};

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
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let mut sql = String::from(
            "SELECT seq, time_ms, kind, agent, session, body, prev_hash, hash FROM records",
        );
        // Without statistics SQLite may pick the kind index for both filters and then read
        // every record of that kind to find one agent's: a quiet agent's page in a big
        // journal took over 100 ms. The agent-and-kind index answers it in its own size.
        let both = query.agent.is_some() && query.kind.is_some();
        if both && self.has_agent_kind_index()? {
            sql.push_str(" INDEXED BY records_agent_kind_seq");
        }
        sql.push_str(" WHERE seq > ?1 AND seq < ?2");
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
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(decode(row)?);
        }
        Ok(out)
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

    /// Whether the journal has the agent-and-kind index (a journal written by an older
    /// Warden and not opened for writing since may not).
    fn has_agent_kind_index(&self) -> Result<bool, JournalError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' \
             AND name = 'records_agent_kind_seq'",
        )?;
        let found: i64 = stmt.query_row([], |r| r.get(0))?;
        Ok(found > 0)
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
