//! Warden's domain vocabulary, shared by every stage of an action's path.
//!
//! An agent attempts an [`Action`]; the policy stage turns it into a [`Decision`]; the journal
//! records an [`Event`] for the decision and another for the outcome. This crate owns those
//! types and the pure functions over them (name validation, argument redaction, canonical
//! digests). It must never do I/O: every other crate depends on it, and it stays cheap to test.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod action;
pub mod decision;
pub mod event;
pub mod ids;
pub mod redact;

pub use action::{Action, ActionKind, ToolRef};
pub use decision::{Decision, Effect};
pub use event::{Event, EventBody, Outcome};
pub use ids::{AgentId, NameError, ServerName, SessionId};
