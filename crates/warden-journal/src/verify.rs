//! Offline verification: walk the chain and name the first place it was tampered with.

use std::fmt;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::chain::{GENESIS, Hash, RecordFields, record_hash};
use crate::checkpoint::{self, Checkpoint};
use crate::error::JournalError;
use crate::store;

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Records whose hash and link were checked before the walk ended.
    pub records_checked: u64,
    /// The last seq reached by an intact chain.
    pub last_seq: u64,
    /// Hex hash of that record (64 zeros for an empty journal).
    pub last_hash: String,
    /// Signed checkpoints in the database that were checked.
    pub checkpoints_checked: u64,
    /// The seq named by the `.head` file, if there is one.
    pub head_seq: Option<u64>,
    /// Hex ed25519 public key stored in the journal; compare it with a copy kept elsewhere.
    pub public_key: Option<String>,
    /// The first problem found, if any.
    pub breach: Option<Breach>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_intact(&self) -> bool {
        self.breach.is_none()
    }
}

/// The first problem in a journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breach {
    /// The first seq affected: the altered or misplaced record, the first missing one, or the
    /// seq a bad checkpoint names.
    pub seq: u64,
    /// What kind of problem.
    pub kind: BreachKind,
    /// A sentence for a human.
    pub detail: String,
}

/// Kinds of tampering (or damage) that verification tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreachKind {
    /// A record's content or hash does not match its stored hash.
    Altered,
    /// Records are missing: a gap in seq, or a link to a predecessor that is not there.
    Removed,
    /// A record sits at another seq than the one it was chained at.
    Reordered,
    /// A checkpoint or the head file names a seq beyond the last record: the tail was cut off.
    CutOff,
    /// A checkpoint (in the database or the head file) is malformed or not validly signed.
    CheckpointSignature,
    /// A validly signed checkpoint names a hash that is not the record's.
    CheckpointHash,
    /// The database has checkpoints but the `.head` file is gone.
    HeadMissing,
    /// The `.head` file names a checkpoint the database no longer has.
    CheckpointMissing,
}

impl fmt::Display for BreachKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreachKind::Altered => "altered",
            BreachKind::Removed => "removed",
            BreachKind::Reordered => "reordered",
            BreachKind::CutOff => "cut off",
            BreachKind::CheckpointSignature => "bad checkpoint signature",
            BreachKind::CheckpointHash => "checkpoint hash mismatch",
            BreachKind::HeadMissing => "head file missing",
            BreachKind::CheckpointMissing => "checkpoint missing",
        })
    }
}

/// A checkpoint row, checked field by field as the walk reaches it.
struct StoredCheckpoint {
    seq: u64,
    parsed: Result<Checkpoint, String>,
}

/// Walks the journal at `path` with a read-only connection and reports the first problem.
///
/// An `Err` means the journal could not be read at all; tampering is reported in
/// [`VerifyReport::breach`].
pub fn verify(path: &Path) -> Result<VerifyReport, JournalError> {
    let conn = store::open_read_only(path)?;
    // One read transaction: a consistent snapshot even while a writer appends.
    conn.execute_batch("BEGIN")?;
    let result = walk(&conn, path);
    // Read-only: nothing to keep, and ending the read is best effort.
    let _ = conn.execute_batch("COMMIT");
    result
}

/// Records hashed per chunk handed to the hashing thread.
const CHUNK: usize = 2048;

/// Records whose hashes are checked off the reading thread: the bytes each hash covers, back
/// to back, and for each record its seq, where its bytes end, and its stored hash.
#[derive(Default)]
struct Chunk {
    preimages: Vec<u8>,
    records: Vec<(u64, usize, Hash)>,
}

/// The first record whose content does not match its stored hash.
fn first_mismatch(chunks: std::sync::mpsc::Receiver<Chunk>) -> Option<u64> {
    for chunk in chunks {
        let mut start = 0;
        for &(seq, end, stored) in &chunk.records {
            if crate::chain::hash_preimage(&chunk.preimages[start..end]) != stored {
                // Dropping the receiver tells the reading thread to stop.
                return Some(seq);
            }
            start = end;
        }
    }
    None
}

fn walk(conn: &Connection, path: &Path) -> Result<VerifyReport, JournalError> {
    // Each record's hash depends only on its own row (its stored prev_hash included), so the
    // hashing runs on a second thread while this one reads rows and checks the links, seqs
    // and checkpoints. The first problem is the one with the lowest seq from either side.
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(4);
        let hasher = scope.spawn(move || first_mismatch(rx));
        let walked = walk_links(conn, path, tx);
        let mismatch = hasher.join().unwrap_or(None);
        let (mut report, in_walk) = walked?;
        let Some(seq) = mismatch else {
            return Ok(report);
        };
        let hash_first = match &report.breach {
            None => true,
            // Found after the walk (cut-off, head): every record problem comes first.
            Some(_) if !in_walk => true,
            Some(b) => {
                seq < b.seq
                    || (seq == b.seq
                        && matches!(
                            b.kind,
                            BreachKind::CheckpointSignature | BreachKind::CheckpointHash
                        ))
            }
        };
        if hash_first {
            // INVARIANT: the link walk reached past `seq` with every link intact, so the
            // chain is valid up to `seq - 1` and record `seq`'s prev_hash is that record's
            // hash.
            let prev: Hash = conn
                .query_row(
                    "SELECT prev_hash FROM records WHERE seq = ?1",
                    [store::seq_to_sql(seq)],
                    |r| r.get::<_, Vec<u8>>(0),
                )
                .ok()
                .and_then(|v| Hash::try_from(v.as_slice()).ok())
                .unwrap_or(GENESIS);
            report.records_checked = seq - 1;
            report.last_seq = seq - 1;
            report.last_hash = hex::encode(prev);
            report.checkpoints_checked = report
                .checkpoints_checked
                .min(count_checkpoints_below(conn, seq)?);
            report.breach = Some(Breach {
                seq,
                kind: BreachKind::Altered,
                detail: format!("record {seq} does not match its hash"),
            });
        }
        Ok(report)
    })
}

fn count_checkpoints_below(conn: &Connection, seq: u64) -> Result<u64, JournalError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM checkpoints WHERE seq < ?1",
        [store::seq_to_sql(seq)],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Walks seqs, links and checkpoints, handing hashing to `hasher`. Returns the report and
/// whether its breach (if any) was found during the walk rather than after it.
fn walk_links(
    conn: &Connection,
    path: &Path,
    hasher: std::sync::mpsc::SyncSender<Chunk>,
) -> Result<(VerifyReport, bool), JournalError> {
    let stored_key = store::stored_public_key(conn)?;
    let key: Result<VerifyingKey, String> = match &stored_key {
        None => Err("the journal stores no public key".into()),
        Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| "the stored public key is not 32 bytes".to_owned())
            .and_then(|b| VerifyingKey::from_bytes(&b).map_err(|e| format!("bad public key: {e}"))),
    };
    let checkpoints = load_checkpoints(conn)?;
    let head = checkpoint::read_head(path);

    let mut report = VerifyReport {
        records_checked: 0,
        last_seq: 0,
        last_hash: hex::encode(GENESIS),
        checkpoints_checked: 0,
        head_seq: head.as_ref().ok().and_then(|h| h.as_ref().map(|h| h.seq)),
        public_key: stored_key.as_ref().map(hex::encode),
        breach: None,
    };
    let check = |cp: &Checkpoint, what: &str, record: &Hash| -> Option<(BreachKind, String)> {
        match &key {
            Err(why) => Some((
                BreachKind::CheckpointSignature,
                format!("{what} cannot be checked: {why}"),
            )),
            Ok(k) if !cp.is_signed_by(k) => Some((
                BreachKind::CheckpointSignature,
                format!("{what} is not validly signed by the journal's key"),
            )),
            Ok(_) if cp.hash != *record => Some((
                BreachKind::CheckpointHash,
                format!("{what} names another hash than the record's"),
            )),
            Ok(_) => None,
        }
    };

    let mut found: Option<(u64, BreachKind, String)> = None;
    let mut next_cp = 0;
    let mut expected: u64 = 1;
    let mut prev: Hash = GENESIS;
    let mut chunk = Chunk::default();
    let mut stmt = conn.prepare(
        "SELECT seq, time_ms, kind, agent, session, body, prev_hash, hash \
         FROM records ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    'rows: while let Some(row) = rows.next()? {
        let seq = match row.get_ref(0)? {
            ValueRef::Integer(s) if s > 0 => s as u64,
            other => {
                let detail = format!("a record has an invalid seq {other:?}");
                found = Some((expected, BreachKind::Altered, detail));
                break;
            }
        };
        if seq != expected {
            let detail = if seq == expected + 1 {
                format!("record {expected} is missing")
            } else {
                format!("records {expected} to {} are missing", seq - 1)
            };
            found = Some((expected, BreachKind::Removed, detail));
            break;
        }
        let (fields, stored_prev, stored_hash) = match read_fields(row, seq) {
            Ok(f) => f,
            Err(detail) => {
                found = Some((seq, BreachKind::Altered, detail));
                break;
            }
        };
        if stored_prev != prev {
            let (kind, detail) =
                diagnose_broken_link(conn, seq, &prev, &fields, &stored_prev, &stored_hash)?;
            found = Some((seq, kind, detail));
            break;
        }
        crate::chain::push_preimage(&stored_prev, &fields, &mut chunk.preimages);
        chunk
            .records
            .push((seq, chunk.preimages.len(), stored_hash));
        if chunk.records.len() == CHUNK && hasher.send(std::mem::take(&mut chunk)).is_err() {
            // The hasher found a mismatch in what it was sent; that comes first.
            break;
        }
        // INVARIANT: checkpoints are sorted by seq and records arrive in seq order without
        // gaps, so every checkpoint naming an existing record is met here exactly once.
        while let Some(cp) = checkpoints.get(next_cp).filter(|cp| cp.seq <= seq) {
            next_cp += 1;
            let problem = match &cp.parsed {
                Err(why) => Some((BreachKind::CheckpointSignature, why.clone())),
                Ok(parsed) => check(parsed, &format!("checkpoint {}", cp.seq), &stored_hash),
            };
            if let Some((kind, detail)) = problem {
                found = Some((cp.seq, kind, detail));
                break 'rows;
            }
            report.checkpoints_checked += 1;
        }
        if let Ok(Some(h)) = &head
            && h.seq == seq
            && let Some((kind, detail)) = check(h, "the head file", &stored_hash)
        {
            found = Some((seq, kind, detail));
            break;
        }
        prev = stored_hash;
        report.records_checked += 1;
        report.last_seq = seq;
        expected = seq + 1;
    }
    // The hasher may already have hung up; its answer is collected by the caller.
    let _ = hasher.send(chunk);
    drop(hasher);
    report.last_hash = hex::encode(prev);
    if let Some((seq, kind, detail)) = found {
        report.breach = Some(Breach { seq, kind, detail });
        return Ok((report, true));
    }
    let last = report.last_seq;
    let mut breach = |seq, kind, detail| {
        report.breach = Some(Breach { seq, kind, detail });
    };

    if let Some(cp) = checkpoints.get(next_cp) {
        let (kind, detail) = match &cp.parsed {
            Err(why) => (BreachKind::CheckpointSignature, why.clone()),
            Ok(parsed) => match check(parsed, &format!("checkpoint {}", cp.seq), &parsed.hash) {
                Some(found) => found,
                None => (
                    BreachKind::CutOff,
                    format!(
                        "checkpoint {} names a record beyond the last one ({last})",
                        cp.seq
                    ),
                ),
            },
        };
        let seq = if kind == BreachKind::CutOff {
            last + 1
        } else {
            cp.seq
        };
        breach(seq, kind, detail);
        return Ok((report, false));
    }
    match &head {
        Err(why) => breach(last, BreachKind::CheckpointSignature, why.clone()),
        Ok(Some(h)) if h.seq > last => {
            let (kind, detail) = check(h, "the head file", &h.hash).unwrap_or((
                BreachKind::CutOff,
                format!(
                    "the head file names record {} beyond the last one ({last})",
                    h.seq
                ),
            ));
            let seq = if kind == BreachKind::CutOff {
                last + 1
            } else {
                h.seq
            };
            breach(seq, kind, detail);
        }
        // INVARIANT: the head is written only after the checkpoint it names is committed, so
        // a head naming a checkpoint that is not in the database means checkpoints were deleted.
        Ok(Some(h)) if h.seq > 0 && !checkpoints.iter().any(|c| c.seq == h.seq) => {
            breach(
                h.seq,
                BreachKind::CheckpointMissing,
                format!(
                    "the head file names checkpoint {} but the database has no such checkpoint",
                    h.seq
                ),
            );
        }
        // Every journal has a head file from its creation on (see `Journal::open`).
        Ok(None) if last > 0 || !checkpoints.is_empty() => {
            let newest = checkpoints.last().map_or(last, |c| c.seq);
            breach(
                newest,
                BreachKind::HeadMissing,
                "the journal's .head file (its name with `.head` added) is missing; a copy of \
                 a journal must take it along, or a cut-off end could not be told from an \
                 intact one"
                    .into(),
            );
        }
        Ok(_) => {}
    }
    Ok((report, false))
}

type Fields<'a> = (RecordFields<'a>, Hash, Hash);

fn read_fields<'a>(row: &'a rusqlite::Row<'a>, seq: u64) -> Result<Fields<'a>, String> {
    let bad = |column: &str| format!("record {seq}: column {column} has the wrong type or size");
    let text = |i: usize, column: &str| match row.get_ref(i) {
        Ok(ValueRef::Text(t)) => Ok(t),
        _ => Err(bad(column)),
    };
    let hash = |i: usize, column: &str| match row.get_ref(i) {
        Ok(ValueRef::Blob(b)) => Hash::try_from(b).map_err(|_| bad(column)),
        _ => Err(bad(column)),
    };
    let time_ms = match row.get_ref(1) {
        Ok(ValueRef::Integer(t)) => t,
        _ => return Err(bad("time_ms")),
    };
    Ok((
        RecordFields {
            seq,
            time_ms,
            kind: text(2, "kind")?,
            agent: text(3, "agent")?,
            session: text(4, "session")?,
            body: text(5, "body")?,
        },
        hash(6, "prev_hash")?,
        hash(7, "hash")?,
    ))
}

/// Names what happened when record `seq` does not link to its predecessor (whose hash is
/// `prev`). Runs once, on the failure path, so a table scan is affordable.
fn diagnose_broken_link(
    conn: &Connection,
    seq: u64,
    prev: &Hash,
    fields: &RecordFields<'_>,
    stored_prev: &Hash,
    stored_hash: &Hash,
) -> Result<(BreachKind, String), JournalError> {
    if record_hash(prev, fields) == *stored_hash {
        return Ok((
            BreachKind::Altered,
            format!("record {seq}: its prev_hash was changed"),
        ));
    }
    let elsewhere: Option<i64> = conn
        .query_row(
            "SELECT seq FROM records WHERE prev_hash = ?1 AND seq != ?2 LIMIT 1",
            rusqlite::params![&prev[..], store::seq_to_sql(seq)],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(other) = elsewhere {
        return Ok((
            BreachKind::Reordered,
            format!("the record chained at {seq} is stored at {other}"),
        ));
    }
    if record_hash(stored_prev, fields) == *stored_hash {
        Ok((
            BreachKind::Removed,
            format!(
                "record {seq} links to a predecessor that is not record {}",
                seq - 1
            ),
        ))
    } else {
        Ok((
            BreachKind::Altered,
            format!("record {seq} does not match its hash"),
        ))
    }
}

fn load_checkpoints(conn: &Connection) -> Result<Vec<StoredCheckpoint>, JournalError> {
    let mut stmt =
        conn.prepare("SELECT seq, hash, time_ms, signature FROM checkpoints ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let seq_u = u64::try_from(seq).unwrap_or(0);
        let parsed = (|| {
            let hash: Vec<u8> = row.get(1).map_err(|e| e.to_string())?;
            let time_ms: i64 = row.get(2).map_err(|e| e.to_string())?;
            let signature: Vec<u8> = row.get(3).map_err(|e| e.to_string())?;
            Ok(Checkpoint {
                seq: seq_u,
                hash: hash.try_into().map_err(|_| "hash is not 32 bytes")?,
                time_ms,
                signature: signature
                    .try_into()
                    .map_err(|_| "signature is not 64 bytes")?,
            })
        })()
        .map_err(|e: String| format!("checkpoint {seq} is malformed: {e}"));
        out.push(StoredCheckpoint { seq: seq_u, parsed });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use proptest::prelude::*;
    use rusqlite::params;
    use serde_json::json;
    use warden_core::{ActionKind, AgentId, Effect, Event, EventBody, Outcome, SessionId};

    use super::*;
    use crate::testing::{fast_options, journal_with};
    use crate::{Journal, JournalOptions};

    fn tamper_conn(path: &Path) -> Connection {
        Connection::open(path).unwrap()
    }

    fn breach_of(path: &Path) -> Breach {
        verify(path)
            .unwrap()
            .breach
            .expect("tampering went unnoticed")
    }

    #[test]
    fn empty_and_intact_journals_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        Journal::open(&path, fast_options())
            .unwrap()
            .close_blocking()
            .unwrap();
        let report = verify(&path).unwrap();
        assert!(report.is_intact());
        assert_eq!(report.last_seq, 0);
        assert_eq!(report.last_hash, hex::encode(GENESIS));

        let path = dir.path().join("k.db");
        journal_with(&path, 30, fast_options())
            .close_blocking()
            .unwrap();
        let report = verify(&path).unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.records_checked, 30);
        assert_eq!(report.public_key.as_ref().map(String::len), Some(64));
    }

    #[test]
    fn forged_checkpoint_signature_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let options = JournalOptions {
            checkpoint_every: 5,
            ..fast_options()
        };
        let j = Journal::open(&path, options).unwrap();
        for i in 1..=12 {
            j.append(&crate::testing::decision("a", i)).wait().unwrap();
        }
        j.close_blocking().unwrap();
        tamper_conn(&path)
            .execute(
                "UPDATE checkpoints SET signature = zeroblob(64) WHERE seq = 10",
                [],
            )
            .unwrap();
        let b = breach_of(&path);
        assert_eq!((b.seq, b.kind), (10, BreachKind::CheckpointSignature));
    }

    #[test]
    fn checkpoint_signed_over_another_hash_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        journal_with(&path, 4, fast_options())
            .close_blocking()
            .unwrap();
        // Even a holder of the key cannot make a checkpoint agree with a record it does not
        // match.
        let secret: [u8; 32] = fs::read(checkpoint::sibling(&path, ".key"))
            .unwrap()
            .try_into()
            .unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&secret);
        let cp = Checkpoint::sign(&key, 2, [9; 32], 5);
        tamper_conn(&path)
            .execute(
                "INSERT INTO checkpoints (seq, hash, time_ms, signature) VALUES (2, ?1, 5, ?2)",
                params![&cp.hash[..], &cp.signature[..]],
            )
            .unwrap();
        let b = breach_of(&path);
        assert_eq!((b.seq, b.kind), (2, BreachKind::CheckpointHash));
    }

    #[test]
    fn head_file_catches_a_tail_cut_with_its_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        journal_with(&path, 10, fast_options())
            .close_blocking()
            .unwrap();
        let conn = tamper_conn(&path);
        conn.execute_batch("DELETE FROM records WHERE seq >= 8; DELETE FROM checkpoints;")
            .unwrap();
        let b = breach_of(&path);
        assert_eq!((b.seq, b.kind), (8, BreachKind::CutOff), "{}", b.detail);
    }

    #[test]
    fn edited_or_missing_head_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        journal_with(&path, 3, fast_options())
            .close_blocking()
            .unwrap();
        let head = checkpoint::sibling(&path, ".head");
        let text = fs::read_to_string(&head).unwrap();
        fs::write(&head, text.replace("\"seq\":3", "\"seq\":2")).unwrap();
        let b = breach_of(&path);
        assert_eq!((b.seq, b.kind), (2, BreachKind::CheckpointSignature));

        fs::remove_file(&head).unwrap();
        let b = breach_of(&path);
        assert_eq!(b.kind, BreachKind::HeadMissing);
    }

    #[test]
    fn alteration_deep_in_a_long_journal_stops_the_walk_at_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let n = 3 * CHUNK as u64 + 17;
        journal_with(&path, n, fast_options())
            .close_blocking()
            .unwrap();
        let intact = verify(&path).unwrap();
        assert!(intact.is_intact());
        assert_eq!(intact.records_checked, n);
        let target = CHUNK as u64 + 5;
        tamper_conn(&path)
            .execute(
                "UPDATE records SET body = body || ' ' WHERE seq = ?1",
                [target as i64],
            )
            .unwrap();
        let report = verify(&path).unwrap();
        let b = report.breach.unwrap();
        assert_eq!((b.seq, b.kind), (target, BreachKind::Altered));
        assert_eq!(report.records_checked, target - 1);
        let reader = crate::JournalReader::open(&path).unwrap();
        let before = reader
            .records(&crate::Query {
                after_seq: target - 2,
                limit: 1,
                ..crate::Query::default()
            })
            .unwrap();
        assert_eq!(report.last_hash, before[0].hash);
    }

    // === the tampering property ===

    #[derive(Debug, Clone)]
    enum Tamper {
        Update { row: u64, column: usize },
        Delete { row: u64 },
        Swap { a: u64, b: u64 },
        CutTail { from: u64 },
    }

    const UPDATES: [&str; 7] = [
        "UPDATE records SET time_ms = time_ms + 1 WHERE seq = ?1",
        "UPDATE records SET kind = kind || 'x' WHERE seq = ?1",
        "UPDATE records SET agent = agent || 'x' WHERE seq = ?1",
        "UPDATE records SET session = session || 'x' WHERE seq = ?1",
        "UPDATE records SET body = replace(body, '\"', '''') WHERE seq = ?1",
        "UPDATE records SET prev_hash = randomblob(32) WHERE seq = ?1",
        "UPDATE records SET hash = randomblob(32) WHERE seq = ?1",
    ];

    fn apply(path: &Path, tamper: &Tamper) {
        let conn = tamper_conn(path);
        match *tamper {
            Tamper::Update { row, column } => {
                let n = conn.execute(UPDATES[column], [row as i64]).unwrap();
                assert_eq!(n, 1);
            }
            Tamper::Delete { row } => {
                conn.execute("DELETE FROM records WHERE seq = ?1", [row as i64])
                    .unwrap();
            }
            Tamper::Swap { a, b } => {
                let cols = "time_ms, kind, agent, session, body, prev_hash, hash";
                conn.execute_batch(&format!(
                    "CREATE TEMP TABLE t AS SELECT seq, {cols} FROM records WHERE seq IN ({a}, {b});
                     UPDATE records SET ({cols}) = (SELECT {cols} FROM t WHERE t.seq = {b}) WHERE seq = {a};
                     UPDATE records SET ({cols}) = (SELECT {cols} FROM t WHERE t.seq = {a}) WHERE seq = {b};"
                ))
                .unwrap();
            }
            Tamper::CutTail { from } => {
                conn.execute("DELETE FROM records WHERE seq >= ?1", [from as i64])
                    .unwrap();
            }
        }
    }

    fn expected(tamper: &Tamper, last: u64) -> (u64, &'static [BreachKind]) {
        match *tamper {
            Tamper::Update { row, .. } => (row, &[BreachKind::Altered]),
            Tamper::Delete { row } if row == last => (row, &[BreachKind::CutOff]),
            Tamper::Delete { row } => (row, &[BreachKind::Removed]),
            Tamper::Swap { a, .. } => (a, &[BreachKind::Reordered]),
            Tamper::CutTail { from } => (from, &[BreachKind::CutOff]),
        }
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        let agent = prop::sample::select(vec!["alice", "bob", "carol-2"]);
        let body = prop_oneof![
            (".{0,24}", any::<u32>(), any::<bool>()).prop_map(|(path, n, allow)| {
                EventBody::Decision {
                    action: ActionKind::CallTool,
                    target: "fs/read_file".into(),
                    args_digest: format!("sha256:{n:064x}"),
                    args: json!({"path": path, "n": n}),
                    effect: if allow { Effect::Allow } else { Effect::Deny },
                    policies: vec!["p1".into()],
                    reason: "because".into(),
                }
            }),
            (
                1u64..100,
                ".{0,16}",
                proptest::collection::vec("[a-z-]{1,12}", 0..3)
            )
                .prop_map(|(decision_seq, detail, labels)| EventBody::Outcome {
                    decision_seq,
                    outcome: Outcome::Ok,
                    detail,
                    labels,
                }),
            ".{0,16}".prop_map(|detail| EventBody::SessionEnded { detail }),
        ];
        (agent, any::<u32>(), body).prop_map(|(agent, t, body)| Event {
            time_ms: i64::from(t),
            agent: AgentId::new(agent).unwrap(),
            session: SessionId::from_raw(format!("{agent}-{}", t % 3)),
            body,
        })
    }

    fn arb_case() -> impl Strategy<Value = (Vec<Event>, u64, Tamper)> {
        (prop::collection::vec(arb_event(), 2..40), 1u64..8).prop_flat_map(|(events, every)| {
            let n = events.len() as u64;
            let tamper = prop_oneof![
                (1..=n, 0..UPDATES.len()).prop_map(|(row, column)| Tamper::Update { row, column }),
                (1..=n).prop_map(|row| Tamper::Delete { row }),
                (1..n)
                    .prop_flat_map(move |a| (Just(a), a + 1..=n))
                    .prop_map(|(a, b)| Tamper::Swap { a, b }),
                (1..=n).prop_map(|from| Tamper::CutTail { from }),
            ];
            (Just(events), Just(every), tamper)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn one_tampering_is_found_at_the_right_seq((events, every, tamper) in arb_case()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("j.db");
            let journal = Journal::open(
                &path,
                JournalOptions { checkpoint_every: every, ..fast_options() },
            )
            .unwrap();
            // Mixed: some awaited one by one, some in flight together.
            let mut pending = Vec::new();
            for (i, e) in events.iter().enumerate() {
                pending.push(journal.append(e));
                if i.is_multiple_of(3) {
                    for p in pending.drain(..) {
                        p.wait().unwrap();
                    }
                }
            }
            for p in pending {
                p.wait().unwrap();
            }
            journal.close_blocking().unwrap();
            prop_assert!(verify(&path).unwrap().is_intact());

            apply(&path, &tamper);
            let report = verify(&path).unwrap();
            let breach = report.breach.clone();
            prop_assert!(breach.is_some(), "{:?} went unnoticed", tamper);
            let breach = breach.unwrap();
            let (seq, kinds) = expected(&tamper, events.len() as u64);
            prop_assert_eq!(breach.seq, seq, "{:?}: {:?}", tamper, breach);
            prop_assert!(kinds.contains(&breach.kind), "{:?}: {:?}", tamper, breach);
        }
    }
}
