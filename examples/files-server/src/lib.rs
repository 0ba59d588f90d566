//! An example MCP server over stdio or Streamable HTTP, written by hand so that it can also
//! misbehave on purpose.
//!
//! This crate owns a small MCP server that Warden's gateway tests and demos put behind Warden:
//! file tools confined to one directory, an outbox for messages and transfers (the "external
//! sinks" a policy cares about), a slow counter that reports progress and honours
//! cancellation, a tool that sends a server-to-client request (`roots/list`), and an echo tool
//! that shows what `_meta` reached it. Over stdio it speaks newline-delimited JSON-RPC 2.0 with
//! nothing but serde_json and std, so [`Misbehaviour`] can break the protocol in the ways a
//! hostile or broken upstream would. Its [`http`] mode serves the same tools as a Streamable
//! HTTP endpoint (JSON responses, sessions): the direct baseline when Warden fronts a remote
//! server.
//!
//! It must never touch a file outside its root directory: every path goes through
//! [`confine::Root::resolve`]. That check is defence in depth; Warden's policy is the real gate.
//! It must never crash on bad input: malformed lines get JSON-RPC errors and the loop goes on.
//!
//! Invariants: each outbound message is written as one whole line under one lock, so
//! concurrent tool calls never interleave bytes; a cancelled request gets no response; every
//! server-to-client request is answered or failed once the client's input ends, so no call
//! waits forever after the client has gone.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod confine;
pub mod http;
pub mod jsonrpc;
pub mod misbehave;
pub mod server;
pub mod tools;

pub use confine::{PathError, Root};
pub use http::{HttpConfig, HttpServeError, serve_http};
pub use misbehave::{Misbehaviour, MisbehaviourParseError};
pub use server::{Ending, ServeError, ServerConfig, serve};

/// The protocol versions this server can speak, oldest first; the last is the newest.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] =
    ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The name this server gives in `serverInfo`.
pub const SERVER_NAME: &str = "warden-example-files";
