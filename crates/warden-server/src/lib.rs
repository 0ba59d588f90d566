//! Warden's control plane: the REST API through which operators — people and their scripts —
//! read the journal and the alerts and quarantine or release agents. It listens apart from
//! the agents' gateway, and agents' tokens are refused on every route.
//!
//! `operators` keeps operator accounts and their roles; `api` is the router.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod operators;

pub use api::{ControlState, router};
pub use operators::{Identity, OperatorStore, Role};
