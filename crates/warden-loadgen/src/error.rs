//! What can go wrong, for one call or for a whole run.

use std::time::Duration;

/// A failure of the load generator or of one exchange with the target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The command line is inconsistent in a way clap cannot express.
    #[error("{0}")]
    Usage(String),
    /// `--url` is not a plain-HTTP URL.
    #[error("bad target URL {url:?}: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The stdio server could not be started.
    #[error("cannot start {command:?}: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// The HTTP exchange failed below the status line (connect, reset, closed).
    #[error("HTTP transport failed: {0}")]
    Transport(String),
    /// The target answered with an unexpected HTTP status.
    #[error("HTTP {status} from the target: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body, for the report.
        body: String,
    },
    /// The response is not the JSON-RPC message it should be.
    #[error("unusable response: {0}")]
    BadResponse(#[from] ResponseError),
    /// The target answered the request with a JSON-RPC error.
    #[error("JSON-RPC error {code}: {message}")]
    Rpc {
        /// The error code.
        code: i64,
        /// The error message.
        message: String,
    },
    /// The tool ran but its result has `isError: true` (a gateway refusal looks like this).
    #[error("the tool result is an error: {0}")]
    Tool(String),
    /// No answer arrived in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The stdio server closed its output (it probably exited).
    #[error("the stdio server closed its output")]
    StdioClosed,
    /// `initialize` succeeded but named no session.
    #[error("initialize returned no Mcp-Session-Id header")]
    NoSession,
    /// The target process's memory could not be read.
    #[error("cannot read the memory of process {pid}: {why}")]
    Rss {
        /// The process id.
        pid: u32,
        /// What went wrong.
        why: String,
    },
}

impl LoadError {
    /// A short, stable name for the kind of failure, used to count errors in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::Usage(_) | LoadError::BadUrl { .. } | LoadError::Spawn { .. } => "setup",
            LoadError::Transport(_) | LoadError::StdioClosed => "transport",
            LoadError::Status { .. } => "http_status",
            LoadError::BadResponse(_) | LoadError::NoSession => "bad_response",
            LoadError::Rpc { .. } => "rpc_error",
            LoadError::Tool(_) => "tool_error",
            LoadError::Timeout(_) => "timeout",
            LoadError::Rss { .. } => "rss",
        }
    }
}

/// Why a response body could not be read as the expected JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The body (or an event's data) is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The body is JSON but holds no response with the request's id.
    #[error("no response with id {0} in the body")]
    NoMatchingId(u64),
    /// The content type is neither JSON nor an event stream.
    #[error("unexpected content type {0:?}")]
    ContentType(String),
    /// The response has neither `result` nor `error`.
    #[error("the response has neither result nor error")]
    NoOutcome,
}
