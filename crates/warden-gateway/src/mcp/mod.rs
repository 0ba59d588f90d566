//! The MCP channel: stdio framing, JSON-RPC routing, refusals, and the session that ties them.
//! See `session` for the path of a `tools/call`.

pub mod actions;
pub mod framing;
pub mod hub;
pub mod inspect;
pub mod jsonrpc;
pub mod names;
pub mod refusal;
mod remote;
pub mod session;
pub mod upstream;
