//! Warden's monitor: detectors read every journaled action, decision and outcome, raise alerts
//! that cite journal records as evidence, and a playbook turns alerts into responses — up to
//! quarantine, which refuses every further action of the agent until a human releases it.
//!
//! The monitor runs inline, right after a record is durable: a detector's work is a few
//! hash-map updates (≤ 5 µs per action is the budget, see `benches/`), so a quarantine is in
//! force before the agent's next action is decided. Nothing here does network I/O; the only
//! file is the quarantine list, so a quarantine survives a restart and every Warden process on
//! the machine sees it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod alert;
pub mod detector;
pub mod detectors;
pub mod learn;
pub mod monitor;
pub mod playbook;
pub mod quarantine;

pub use alert::Alert;
pub use detector::{Detector, Observation};
pub use monitor::Monitor;
pub use playbook::{Playbook, Response, Rule};
pub use quarantine::{Level, Quarantine, QuarantineEntry, QuarantineError};
