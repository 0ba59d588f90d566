//! Warden's decision stage: Cedar policies that say which agent may do what on which server,
//! and which server may ask what of which agent.
//!
//! This crate owns the Cedar model of MCP actions (the schema in
//! `schema/warden.cedarschema`: tool calls, resource reads, prompts, completions, and the
//! sampling, elicitation and roots requests servers send), the loading and strict validation
//! of a policy folder, and the mapping from an [`Action`](warden_core::Action) to a
//! [`Decision`](warden_core::Decision) with the deciding policy ids and a readable reason.
//! It must never let an action through that Cedar would not permit, never do I/O while
//! deciding, and never interpret agent-supplied arguments as anything but data.
//!
//! Invariants it keeps:
//! - Default deny: nothing is allowed unless a permit is satisfied.
//! - Fail closed: if any policy that applies to a request cannot be evaluated, the request is
//!   denied, naming that policy (Cedar alone would skip an erroring `forbid`).
//! - A loaded [`PolicySet`] is immutable and validated; a failed load yields an error and no
//!   set, so a caller reloading keeps its old one.
//! - Scope slicing is exact: the sliced decision equals plain Cedar over the whole set
//!   (tested differentially).
//!
//! ```
//! use warden_core::{Action, AgentId, Effect, ResourceRef, ServerName, ToolRef};
//! use warden_policy::{PolicySet, SourceFile};
//!
//! let policies = [SourceFile::new(
//!     "agents.cedar",
//!     r#"
//! @id("alice-reads")
//! permit(principal == Agent::"alice", action == Action::"call_tool", resource in Server::"files")
//! when { resource.name == "read_file" };
//! "#,
//! )];
//! let set = PolicySet::from_sources(&policies, &[]).unwrap();
//!
//! let alice = AgentId::new("alice").unwrap();
//! let read = ToolRef::new(ServerName::new("files").unwrap(), "read_file").unwrap();
//! let call = Action::CallTool { tool: read, arguments: Default::default() };
//! let decision = set.decide(&alice, &call);
//! assert_eq!(decision.effect, Effect::Allow);
//! assert_eq!(decision.policies, ["alice-reads"]);
//!
//! let bob = AgentId::new("bob").unwrap();
//! assert_eq!(set.decide(&bob, &call).effect, Effect::Deny);
//!
//! // Reading a resource is another action: alice's tool permit does not grant it.
//! let notes = ResourceRef::new(ServerName::new("files").unwrap(), "file:///notes.txt").unwrap();
//! let read = Action::ReadResource { resource: notes.clone() };
//! assert_eq!(set.decide(&alice, &read).effect, Effect::Deny);
//! assert!(!set.may_read(&alice, &notes));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod arguments;
mod bounds;
mod cases;
mod error;
mod request;
mod scope;
mod set;
mod source;

pub use arguments::MAX_ARGUMENT_DEPTH;
pub use cases::{CaseResult, TestCase, load_cases, parse_cases, run_cases};
pub use error::{Diagnostics, DuplicateIdError, PolicyError, Position, SourceDiagnostic};
pub use set::{PolicySet, PolicySummary, schema_text};
pub use source::SourceFile;

#[cfg(test)]
mod tests;
