//! Warden's control plane: the REST API through which operators — people and their scripts —
//! read the journal and the alerts and quarantine or release agents. It listens apart from
//! the agents' gateway, and agents' tokens are refused on every route.
//!
//! `operators` keeps operator accounts, their roles and the digests of their tokens; `api` is
//! the router. Operator actions reach the journal through [`Recorder`], and a release is
//! journaled before it takes effect. The crate never writes the journal's file directly.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod dashboard;
pub mod fleet;
pub mod operators;

pub use api::Recorder;
pub use api::{BaselineLookup, ControlState, KillReport, Killed, Killer, router};
pub use operators::{AuthError, Operator, OperatorRecord, OperatorStore, Role};
