//! `warden-loadgen`: puts an MCP server or gateway under load and measures what it does.
//!
//! It speaks MCP as an agent would, over Streamable HTTP (`--url`, a keep-alive connection
//! pool, sessions by `Mcp-Session-Id`, JSON or event-stream responses) or over stdio
//! (`--stdio -- COMMAND`, requests pipelined and matched by id), so the same run can be aimed
//! at an upstream server directly and at Warden in front of it. Three modes:
//!
//! - [`rate`]: open loop at a constant rate, latency measured from each call's scheduled time
//!   (no coordinated omission);
//! - [`saturate`]: closed loop with a fixed number of workers: throughput and latency;
//! - [`sessions`]: many idle sessions, and the target's resident memory per session.
//!
//! Besides MCP, [`flood`] floods plain HTTP routes (a control plane's API) with GETs, to run
//! next to `rate`; and [`relay`] serves as a do-nothing relay in front of a server, the
//! baseline a gateway's added latency is compared with.
//!
//! It must never outlive its run: `rate` and `saturate` stop starting calls when their duration
//! is over (a `rate` backlog may drain for one more request timeout; what is left is counted
//! as not sent) and wait at most one timeout for calls in flight; a stdio server it started is
//! stopped with it. Measurements are
//! recorded per worker and merged at the end, so recording takes no lock on the hot path.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod cpu;
pub mod error;
pub mod flood;
pub mod http;
pub mod rate;
pub mod relay;
pub mod response;
pub mod rss;
pub mod saturate;
pub mod sessions;
pub mod stats;
pub mod stdio;
pub mod target;

pub use error::{LoadError, ResponseError};
pub use target::{CallSpec, Connection, Target};

/// The MCP protocol version offered in `initialize`.
pub const PROTOCOL_VERSION: &str = "2025-06-18";

/// The client name sent in `initialize`.
pub const CLIENT_NAME: &str = "warden-loadgen";
