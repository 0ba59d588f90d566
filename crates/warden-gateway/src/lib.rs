//! Warden's gateways: where agent actions are intercepted.
//!
//! Today one channel, MCP over stdio (`mcp`): Warden is the MCP server the agent talks to and
//! the MCP client of the real server. Each `tools/call` passes the [`guard::Guard`] — decide
//! with Cedar, journal durably — before it may be forwarded; everything Warden does not decide
//! passes through byte for byte, ids preserved.
//!
//! What this crate must never do: forward an action whose decision is not durable in the
//! journal, or let a message of the agent go unanswered.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod approval;
pub mod egress;
pub mod guard;
pub mod http;
pub mod identity;
pub mod mcp;
pub mod metrics;

pub use guard::{Grounds, Guard, Verdict};
pub use mcp::session::{SessionEnd, SessionError, SessionOptions, UpstreamCommand, serve_stdio};
