//! Warden's journal: an append-only, hash-chained record of every [`warden_core::Event`], in
//! one SQLite file, written *before* the action it records may take effect.
//!
//! This crate owns the journal file, its `.key` (the ed25519 signing key, mode 0600) and its
//! `.head` (the newest signed checkpoint, kept outside the database). It must never report an
//! append as durable before its transaction has committed, never rewrite or delete a record,
//! and never advance the chain past a failed commit. Invariants it keeps:
//!
//! - seqs run 1, 2, 3, … without gaps; record `n`'s `prev_hash` is record `n-1`'s `hash`
//!   (32 zero bytes for record 1), and `hash` covers the previous hash, the seq and every
//!   field (see [`chain`]);
//! - the tail is read inside each write transaction, so several processes may append to one
//!   file and still form one chain;
//! - a checkpoint is signed every `checkpoint_every` records and on close, and the `.head`
//!   file only moves forward.
//!
//! Appending goes through [`Journal`] (one writer thread, group commit); reading through
//! [`JournalReader`]; checking through [`verify`].
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use warden_core::{AgentId, Event, EventBody, SessionId};
//! use warden_journal::{Journal, JournalOptions, JournalReader, Query, verify};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("audit.db");
//! let journal = Journal::open(&path, JournalOptions::default())?;
//! let event = Event {
//!     time_ms: 1_700_000_000_000,
//!     agent: AgentId::new("alice")?,
//!     session: SessionId::from_raw("s1"),
//!     body: EventBody::SessionEnded { detail: "done".into() },
//! };
//! let seq = journal.append(&event).wait()?; // durable once this returns
//! assert_eq!(seq, 1);
//! journal.close_blocking()?;
//!
//! let records = JournalReader::open(&path)?.records(&Query::default())?;
//! assert_eq!(records[0].kind, "session_ended");
//! assert!(verify(&path)?.is_intact());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chain;
mod checkpoint;
mod error;
mod journal;
mod reader;
mod store;
mod verify;

#[cfg(test)]
mod testing;

pub use checkpoint::Checkpoint;
pub use error::{CommitError, CommitFailure, JournalError, KeyError, OpenError};
pub use journal::{Journal, JournalOptions, PendingAppend};
pub use reader::{JournalReader, JournalRecord, Query};
pub use store::SyncMode;
pub use verify::{Breach, BreachKind, VerifyReport, verify};
