//! What can go wrong with a journal, typed so the gateway can refuse an action with a reason.

use std::fmt;
use std::path::PathBuf;

/// Any journal failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The journal file could not be created, opened or read as a Warden journal.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The signing key file is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A batch of appends could not be committed; none of its records was written.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The journal was closed; nothing more can be appended through this handle.
    #[error("the journal is closed")]
    Closed,
    /// The writer thread is gone (it panicked); nothing can be appended.
    #[error("the journal writer stopped unexpectedly")]
    WriterGone,
    /// An event could not be encoded as JSON.
    #[error("cannot encode event: {0}")]
    Encode(#[from] serde_json::Error),
    /// Reading the journal failed.
    #[error("cannot read journal: {0}")]
    Read(#[from] rusqlite::Error),
    /// A stored record could not be decoded (see [`crate::verify`] to find out why).
    #[error("record {seq} is malformed: {detail}")]
    Malformed {
        /// The record's sequence number.
        seq: u64,
        /// What is wrong with it.
        detail: String,
    },
    /// Writing the checkpoint head file failed.
    #[error("cannot write {}: {source}", path.display())]
    Head {
        /// The head file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A journal that cannot be created, opened or read.
#[derive(Debug, thiserror::Error)]
#[error("cannot open journal {}: {detail}", path.display())]
pub struct OpenError {
    /// The journal file.
    pub path: PathBuf,
    /// What went wrong, in words.
    pub detail: String,
    /// The underlying SQLite error, when there is one.
    #[source]
    pub source: Option<rusqlite::Error>,
}

impl OpenError {
    pub(crate) fn new(path: &std::path::Path, detail: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            detail: detail.into(),
            source: None,
        }
    }

    pub(crate) fn sqlite(path: &std::path::Path, source: rusqlite::Error) -> Self {
        Self {
            path: path.to_owned(),
            detail: source.to_string(),
            source: Some(source),
        }
    }
}

/// A signing key file that cannot be created, read or trusted.
#[derive(Debug, thiserror::Error)]
#[error("signing key {}: {detail}", path.display())]
pub struct KeyError {
    /// The key file (`<journal>.key`).
    pub path: PathBuf,
    /// What is wrong with it.
    pub detail: String,
}

/// Why a commit failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CommitFailure {
    /// The disk (or the database's size limit) is full.
    DiskFull,
    /// The file or the connection is read-only.
    ReadOnly,
    /// Another writer held the file longer than the busy timeout.
    Locked,
    /// Any other storage error.
    Storage,
}

impl fmt::Display for CommitFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommitFailure::DiskFull => "disk full",
            CommitFailure::ReadOnly => "read-only",
            CommitFailure::Locked => "locked",
            CommitFailure::Storage => "storage error",
        })
    }
}

/// A batch that was rolled back. Every append of the batch receives a copy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journal commit failed ({failure}): {records} record(s) not written: {detail}")]
pub struct CommitError {
    /// Why.
    pub failure: CommitFailure,
    /// How many records the rolled-back batch held.
    pub records: usize,
    /// SQLite's message.
    pub detail: String,
}

impl CommitError {
    pub(crate) fn from_sqlite(err: &rusqlite::Error, records: usize) -> Self {
        use rusqlite::ErrorCode;
        let failure = match err.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => CommitFailure::DiskFull,
            Some(ErrorCode::ReadOnly) => CommitFailure::ReadOnly,
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => CommitFailure::Locked,
            _ => CommitFailure::Storage,
        };
        Self {
            failure,
            records,
            detail: err.to_string(),
        }
    }
}
