//! The SQLite file: schema, connections, and the chain's tail.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::chain::{GENESIS, Hash};
use crate::error::OpenError;

/// Schema version written to `meta` on creation; a journal with another version is refused.
const FORMAT: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    seq       INTEGER PRIMARY KEY,
    time_ms   INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    agent     TEXT NOT NULL,
    session   TEXT NOT NULL,
    body      TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_agent_seq ON records (agent, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq       INTEGER PRIMARY KEY,
    hash      BLOB NOT NULL,
    time_ms   INTEGER NOT NULL,
    signature BLOB NOT NULL
);
";

/// The kinds most records are (one of each per allowed call). Only the other kinds are
/// indexed by kind: every index a commit touches adds a page to its write (a call's two
/// records wrote about six pages to the WAL with full kind indexes, under three without),
/// and a reader filtering on
/// a dense kind finds it among almost every record anyway, in seq order.
pub(crate) const DENSE_KINDS: [&str; 2] = ["decision", "outcome"];

/// The condition of the partial kind indexes (a macro, so that the indexes' SQL is built from
/// the same text). A query must state it word for word for SQLite to use them.
macro_rules! sparse_kind {
    () => {
        "kind NOT IN ('decision', 'outcome')"
    };
}
pub(crate) const SPARSE_KIND: &str = sparse_kind!();

/// The sparse-kind indexes: by kind, and by agent and kind.
pub(crate) const SPARSE_KIND_INDEX: &str = "records_sparse_kind_seq";
pub(crate) const AGENT_SPARSE_KIND_INDEX: &str = "records_agent_sparse_kind_seq";

/// Kind indexes of a journal created by this version: sparse kinds only.
const SPARSE_KIND_INDEXES: &str = concat!(
    "CREATE INDEX IF NOT EXISTS records_sparse_kind_seq ON records (kind, seq) WHERE ",
    sparse_kind!(),
    ";\nCREATE INDEX IF NOT EXISTS records_agent_sparse_kind_seq ON records (agent, kind, seq) \
     WHERE ",
    sparse_kind!(),
    ";"
);

/// The full kind indexes of journals created by earlier versions. Such a journal keeps them
/// (and gets the agent-and-kind one if it lacks it, as before), rather than being reindexed
/// at open.
pub(crate) const FULL_KIND_INDEX: &str = "records_kind_seq";
pub(crate) const AGENT_FULL_KIND_INDEX: &str = "records_agent_kind_seq";

const FULL_KIND_INDEXES: &str =
    "CREATE INDEX IF NOT EXISTS records_agent_kind_seq ON records (agent, kind, seq);";

/// The index by agent, whatever the version.
pub(crate) const AGENT_INDEX: &str = "records_agent_seq";

pub(crate) const INSERT_RECORD: &str = "INSERT INTO records \
    (seq, time_ms, kind, agent, session, body, prev_hash, hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

pub(crate) const INSERT_CHECKPOINT: &str =
    "INSERT OR IGNORE INTO checkpoints (seq, hash, time_ms, signature) VALUES (?1, ?2, ?3, ?4)";

/// A write transaction (`BEGIN IMMEDIATE`) begun and ended with cached statements: rusqlite's
/// `Transaction` parses `BEGIN` and `COMMIT` anew each time, a few percent of a small commit.
/// Dropped without [`WriteTx::commit`], it rolls back.
pub(crate) struct WriteTx<'c> {
    conn: &'c Connection,
    committed: bool,
}

impl<'c> WriteTx<'c> {
    /// Takes the file's write lock (waiting up to the connection's busy timeout).
    pub(crate) fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Self {
            conn,
            committed: false,
        })
    }

    pub(crate) fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.committed = true;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        // SQLite may have rolled back already (some errors end the transaction).
        if !self.committed && !self.conn.is_autocommit() {
            let _ = self
                .conn
                .prepare_cached("ROLLBACK")
                .and_then(|mut rollback| rollback.execute([]));
        }
    }
}

/// How hard each commit insists on reaching the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `synchronous=FULL`: a committed record survives a crash of Warden and a power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a committed record survives a crash of Warden, but the last
    /// commits before a power loss or kernel crash may be lost. The chain stays valid and
    /// verifies: the WAL is synced before the `.head` file names its records.
    Normal,
}

/// Opens (creating if needed) the writer's connection and makes sure the schema is in place
/// and the stored public key is `public_key`.
pub(crate) fn open_writer(
    path: &Path,
    sync: SyncMode,
    busy_timeout: Duration,
    public_key: &[u8; 32],
) -> Result<Connection, OpenError> {
    let sqlite = |e| OpenError::sqlite(path, e);
    if path.is_dir() {
        return Err(OpenError::new(path, "it is a directory"));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
    conn.busy_timeout(busy_timeout).map_err(sqlite)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::new(
            path,
            format!("cannot switch to WAL mode (journal_mode is {mode})"),
        ));
    }
    let sync_value = match sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync_value)
        .map_err(sqlite)?;

    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    tx.execute_batch(SCHEMA).map_err(sqlite)?;
    let kind_indexes = if has_index(&tx, FULL_KIND_INDEX).map_err(sqlite)? {
        FULL_KIND_INDEXES
    } else {
        SPARSE_KIND_INDEXES
    };
    tx.execute_batch(kind_indexes).map_err(sqlite)?;
    tx.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?1)",
        params![FORMAT],
    )
    .map_err(sqlite)?;
    check_format(&tx, path)?;
    tx.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('public_key', ?1)",
        params![&public_key[..]],
    )
    .map_err(sqlite)?;
    let stored = stored_public_key(&tx).map_err(sqlite)?;
    if stored.as_deref() != Some(&public_key[..]) {
        return Err(OpenError::new(
            path,
            "the journal was signed with another key than its .key file holds",
        ));
    }
    tx.commit().map_err(sqlite)?;
    Ok(conn)
}

/// A second connection to the journal, for copying the WAL back into the database.
pub(crate) fn open_checkpointer(
    path: &Path,
    busy_timeout: Duration,
) -> Result<Connection, OpenError> {
    let sqlite = |e| OpenError::sqlite(path, e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
    conn.busy_timeout(busy_timeout).map_err(sqlite)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(sqlite)?;
    Ok(conn)
}

/// Opens an existing journal read-only.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, OpenError> {
    let sqlite = |e| OpenError::sqlite(path, e);
    if !path.exists() {
        return Err(OpenError::new(path, "no such file"));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
    // Reads pages straight from the page cache instead of a read() per page: verification
    // walks the whole file.
    conn.pragma_update(None, "mmap_size", 1i64 << 30)
        .map_err(sqlite)?;
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
             AND name IN ('meta', 'records', 'checkpoints')",
            [],
            |r| r.get(0),
        )
        .map_err(sqlite)?;
    if tables != 3 {
        return Err(OpenError::new(path, "not a Warden journal"));
    }
    check_format(&conn, path)?;
    Ok(conn)
}

fn check_format(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    let format: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| OpenError::sqlite(path, e))?;
    match format {
        Some(FORMAT) => Ok(()),
        Some(other) => Err(OpenError::new(
            path,
            format!("journal format {other} is not supported (this Warden reads {FORMAT})"),
        )),
        None => Err(OpenError::new(path, "not a Warden journal (no format)")),
    }
}

/// Whether the journal has an index of that name.
pub(crate) fn has_index(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    let found: i64 = conn
        .prepare_cached("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?1")?
        .query_row([name], |r| r.get(0))?;
    Ok(found > 0)
}

/// The public key stored in `meta`, as raw bytes.
pub(crate) fn stored_public_key(conn: &Connection) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row("SELECT value FROM meta WHERE key = 'public_key'", [], |r| {
        r.get(0)
    })
    .optional()
}

/// The last record's seq and hash, or `(0, GENESIS)` for an empty journal.
///
/// INVARIANT: called inside the write transaction, so no other process can append between
/// this read and our inserts.
pub(crate) fn tail(conn: &Connection) -> rusqlite::Result<(u64, Hash)> {
    // Cached: the writer reads the tail at every commit.
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        None => Ok((0, GENESIS)),
        Some((seq, hash)) => {
            let hash: Hash = hash
                .as_slice()
                .try_into()
                .map_err(|_| malformed_tail(seq))?;
            let seq = u64::try_from(seq).map_err(|_| malformed_tail(seq))?;
            Ok((seq, hash))
        }
    }
}

fn malformed_tail(seq: i64) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        1,
        rusqlite::types::Type::Blob,
        format!("the last record (seq {seq}) has a malformed hash or seq; run verify").into(),
    )
}

/// Converts a seq for SQLite, which stores signed 64-bit integers.
pub(crate) fn seq_to_sql(seq: u64) -> i64 {
    // INVARIANT: seqs count records one by one from 1; they cannot reach 2^63.
    i64::try_from(seq).unwrap_or(i64::MAX)
}
