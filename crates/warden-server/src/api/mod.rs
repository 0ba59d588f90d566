//! The REST API: `/api/v1/…`, JSON, every route behind an operator token and a role.
//!
//! | route | role |
//! | --- | --- |
//! | `GET /api/v1/me` | viewer |
//! | `GET /api/v1/journal?after=SEQ&before=SEQ&order=oldest\|newest&limit=N&agent=NAME&kind=KIND` | viewer |
//! | `GET /api/v1/journal/verify` | viewer |
//! | `GET /api/v1/stream?after=SEQ&agent=NAME&kind=KIND` (server-sent events) | viewer |
//! | `GET /api/v1/alerts?after=SEQ&limit=N&agent=NAME` | viewer |
//! | `GET /api/v1/alerts/{seq}` (with its evidence records) | viewer |
//! | `GET /api/v1/agents`, `GET /api/v1/agents/{name}` | viewer |
//! | `GET /api/v1/quarantine` | viewer |
//! | `GET /api/v1/detectors` (running detectors, their settings, alerts, holds; the playbook) | viewer |
//! | `GET /api/v1/approvals` | viewer |
//! | `GET /api/v1/policies`, `POST /api/v1/policies/validate` | viewer |
//! | `GET /api/v1/openapi.json` | none |
//! | `GET /metrics` (Prometheus) | viewer |
//! | `POST /api/v1/approvals/{seq}` `{"answer": "approve\|approve_session\|deny", "reason": "…"}` | approver |
//! | `POST /api/v1/agents/{name}/quarantine` `{"reason": "…"}` | admin |
//! | `POST /api/v1/agents/{name}/release` `{"reason": "…"}` | admin |
//! | `POST /api/v1/agents/{name}/kill` `{"reason": "…"}` (every process of its sandboxes) | admin |
//!
//! Pages follow a cursor: each answer's `next` is the `after` of the next page (the `before`
//! when reading newest first; `null` at the end). Agents' tokens are refused on every route; a
//! request from a browser page of another origin is refused; operator actions are journaled
//! with the operator's name.

mod agents;
mod approvals;
mod detectors;
mod journal;
mod kill;
mod limit;
mod openapi;
mod policies;
mod stream;

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use warden_core::{AgentId, Event, EventBody, SessionId};
use warden_journal::{Journal, JournalReader};
use warden_monitor::Quarantine;
use warden_policy::PolicySet;

use crate::fleet::Fleet;
use crate::operators::{AuthError, Operator, OperatorStore, Role};

pub use journal::{DEFAULT_PAGE, MAX_PAGE};
pub use kill::{KillReport, Killed, Killer};
pub use limit::{
    DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_MAX_REQUESTS_PER_SECOND, MAX_CONCURRENT_ACTIONS,
    RETRY_AFTER_SECS,
};

// === Recorder ===

/// Where operator actions are journaled. The server's own journal in production; tests may
/// plug in one that fails.
pub trait Recorder: Send + Sync + 'static {
    /// Appends `body` for `agent` in `session` and resolves to its seq once durable.
    fn record_in(
        &self,
        agent: &AgentId,
        session: SessionId,
        body: EventBody,
    ) -> impl Future<Output = Result<u64, String>> + Send;

    /// Appends an operator's act concerning `agent` (in the `operator` session, which is not
    /// the agent's activity).
    fn record(
        &self,
        agent: &AgentId,
        body: EventBody,
    ) -> impl Future<Output = Result<u64, String>> + Send {
        self.record_in(agent, SessionId::from_raw("operator"), body)
    }

    /// Announces this process's commits, so the live stream wakes at once; `None`: the
    /// stream polls only.
    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

impl Recorder for Journal {
    fn record_in(
        &self,
        agent: &AgentId,
        session: SessionId,
        body: EventBody,
    ) -> impl Future<Output = Result<u64, String>> + Send {
        let pending = self.append(&Event {
            time_ms: warden_gateway::guard::now_ms(),
            agent: agent.clone(),
            session,
            body,
        });
        async move { pending.await.map_err(|e| e.to_string()) }
    }

    fn commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(Journal::commits(self))
    }
}

// === State and routes ===

/// What an agent's learned baseline is, for the agent page (`None`: none learned).
pub type BaselineLookup = Box<dyn Fn(&AgentId) -> Option<Value> + Send + Sync>;

/// What the API works on.
pub struct ControlState<R = Journal> {
    /// Where operator actions are journaled.
    pub journal: R,
    /// The journal's file, read (read-only) for queries and verification.
    pub journal_path: PathBuf,
    /// The quarantine list shared by every Warden process.
    pub quarantine: Arc<Quarantine>,
    /// The operators and their tokens.
    pub operators: OperatorStore,
    /// The policies in force, for the policy view (`None`: not shown).
    pub policies: Option<Arc<PolicySet>>,
    /// The agents' learned baselines, for the agent page.
    pub baseline: Option<BaselineLookup>,
    /// What the journal says about the fleet, kept up to date on use.
    pub fleet: Fleet,
    /// Kills an agent's sandboxes (`None`: this process runs none, the kill route says so).
    pub killer: Option<Killer>,
    /// The detectors and playbook of this process (`None`: it runs none).
    pub monitor: Option<Arc<warden_monitor::Monitor>>,
    /// Each detector's settings as configured, for the detectors view.
    pub detector_settings: std::collections::BTreeMap<String, Value>,
    /// The last verification of the whole chain, shared by requests for a few seconds.
    verification: journal::Verification,
}

impl<R> ControlState<R> {
    /// A state with no policy view and no baselines.
    pub fn new(
        journal: R,
        journal_path: PathBuf,
        quarantine: Arc<Quarantine>,
        operators: OperatorStore,
    ) -> Self {
        Self {
            journal,
            journal_path,
            quarantine,
            operators,
            policies: None,
            baseline: None,
            fleet: Fleet::default(),
            killer: None,
            monitor: None,
            detector_settings: std::collections::BTreeMap::new(),
            verification: journal::Verification::default(),
        }
    }
}

/// The API's routes, the metrics and the dashboard, with room for
/// [`DEFAULT_MAX_CONCURRENT_REQUESTS`] reads at once.
pub fn router<R: Recorder>(state: Arc<ControlState<R>>) -> Router {
    limited_router(
        state,
        DEFAULT_MAX_CONCURRENT_REQUESTS,
        DEFAULT_MAX_REQUESTS_PER_SECOND,
    )
}

/// [`router`] with room for `max_concurrent` read requests at once (at least one) and
/// [`MAX_CONCURRENT_ACTIONS`] operator actions apart; a request beyond is answered 503 with
/// `Retry-After` at once.
///
/// Reads and the dashboard's files also start at most `per_second` a second, evenly spaced; a
/// request over that rate waits for its turn (up to 2 s, then 503).
pub fn limited_router<R: Recorder>(
    state: Arc<ControlState<R>>,
    max_concurrent: usize,
    per_second: u32,
) -> Router {
    let reads = Router::new()
        .route("/api/v1/me", get(agents::me::<R>))
        .route("/api/v1/journal", get(journal::journal::<R>))
        .route("/api/v1/journal/verify", get(journal::verify::<R>))
        .route("/api/v1/stream", get(stream::stream::<R>))
        .route("/api/v1/alerts", get(journal::alerts::<R>))
        .route("/api/v1/alerts/{seq}", get(journal::alert::<R>))
        .route("/api/v1/agents", get(agents::agents::<R>))
        .route("/api/v1/agents/{name}", get(agents::agent::<R>))
        .route("/api/v1/quarantine", get(agents::quarantine_list::<R>))
        .route("/api/v1/detectors", get(detectors::detectors::<R>))
        .route("/api/v1/approvals", get(approvals::list::<R>))
        .route("/api/v1/policies", get(policies::list::<R>))
        .route("/api/v1/policies/validate", post(policies::validate::<R>))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics::<R>))
        .route_layer(axum::middleware::from_fn_with_state(
            limit::Admission::new(max_concurrent, "requests"),
            limit::admit,
        ));
    // A flood of reads never takes the room an admin needs to contain an agent.
    let actions = Router::new()
        .route(
            "/api/v1/agents/{name}/quarantine",
            post(agents::quarantine::<R>),
        )
        .route("/api/v1/agents/{name}/release", post(agents::release::<R>))
        .route("/api/v1/agents/{name}/kill", post(kill::kill::<R>))
        .route("/api/v1/approvals/{seq}", post(approvals::answer::<R>))
        .route_layer(axum::middleware::from_fn_with_state(
            limit::Admission::new(MAX_CONCURRENT_ACTIONS, "operator actions"),
            limit::admit,
        ));
    // Operator actions are not paced: an admin must be able to contain an agent during a
    // flood of reads.
    let paced = reads
        .with_state(state.clone())
        .merge(crate::dashboard::routes())
        .layer(axum::middleware::from_fn_with_state(
            limit::Pace::new(per_second, limit::PACE_BURST),
            limit::pace,
        ));
    actions
        .with_state(state)
        .merge(paced)
        .fallback(no_such_route)
        .layer(axum::middleware::from_fn(body_in_time))
}

/// `router` answering only requests whose `Host` is one of the control plane's own names: the
/// loopback names of `port`, `hosts` (`name:port`), and any IP address (DNS rebinding needs a
/// name: an address names no one else's site). A page on another site whose name an attacker
/// points at 127.0.0.1 sends its own name: refused, so the Origin check that compares with
/// `Host` cannot be fooled by it.
pub fn with_host_check(router: Router, port: u16, hosts: &[String]) -> Router {
    let mut allowed: Vec<String> = ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .map(|h| format!("{h}:{port}"))
        .collect();
    allowed.extend(hosts.iter().map(|h| h.to_ascii_lowercase()));
    let allowed = Arc::new(allowed);
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let allowed = allowed.clone();
            async move {
                let host = request
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_ascii_lowercase);
                match host {
                    Some(host) if allowed.contains(&host) || is_ip_literal(&host) => {
                        next.run(request).await
                    }
                    Some(host) => refuse(
                        StatusCode::FORBIDDEN,
                        format!(
                            "Host {:?} is not one this control plane answers to; add it to \
                             [control] allowed_hosts if it is",
                            warden_core::escape_for_display(&host)
                        ),
                    )
                    .into_response(),
                    None => refuse(StatusCode::BAD_REQUEST, "the request has no Host header")
                        .into_response(),
                }
            }
        },
    ))
}

/// Whether a `Host` value names an IP address (`10.0.0.5:7412`, `[fe80::1]:7412`).
fn is_ip_literal(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.parse::<std::net::IpAddr>().is_ok()
}

/// How long a client has to send a request's body, and how large it may be (a policy file
/// to validate is the largest, at 256 KiB).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const MAX_BODY_BYTES: usize = 300 * 1024;

/// Reads the body whole, within [`BODY_TIMEOUT`], before anything else: a body sent a byte at
/// a time must not hold a connection, or the room kept for operator actions, for long.
async fn body_in_time(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
        Ok(Err(err)) => {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
            if too_large {
                refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a request body is at most {MAX_BODY_BYTES} bytes"),
                )
            } else {
                refuse(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                )
            }
            .into_response()
        }
        Err(_) => refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

/// A path the control plane does not serve: said in words, with where the routes are listed.
async fn no_such_route(method: axum::http::Method, uri: axum::http::Uri) -> Refusal {
    refuse(
        StatusCode::NOT_FOUND,
        format!(
            "no such route: {method} {}; GET /api/v1/openapi.json lists the routes",
            warden_core::escape_for_display(uri.path())
        ),
    )
}

/// An answer that is an error: a status and a sentence.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn refuse(status: StatusCode, why: impl Into<String>) -> Refusal {
    Refusal(status, why.into())
}

fn unavailable(what: impl std::fmt::Display) -> Refusal {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the journal: {what}"),
    )
}

/// Runs `read` (blocking: SQLite) off the async threads; a journal that cannot be read is
/// 503.
async fn reading<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    read: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(unavailable)?
        .map_err(unavailable)
}

/// Brings the fleet projection up to date with the journal.
async fn caught_up<R: Recorder>(state: &Arc<ControlState<R>>) -> Result<(), Refusal> {
    let state = state.clone();
    reading(move || {
        let reader = JournalReader::open(&state.journal_path)?;
        state.fleet.catch_up(&reader)
    })
    .await?;
    Ok(())
}

/// Prometheus metrics of this process.
async fn metrics<R: Recorder>(
    axum::extract::State(state): axum::extract::State<Arc<ControlState<R>>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        warden_gateway::metrics::render(),
    )
        .into_response())
}

/// Whether the request's content type is `media` (parameters such as `charset` aside): not
/// merely one that begins like it (`application/json-patch+json`).
pub(super) fn has_media_type(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(media))
}

/// The JSON body of an operator action.
fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, Refusal> {
    if !has_media_type(headers, "application/json") {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send JSON (content-type: application/json)",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })
}

/// The required, non-empty `"reason"` of an operator action: it is journaled.
fn reason_in(body: &Value) -> Result<String, Refusal> {
    match body.get("reason").and_then(Value::as_str).map(str::trim) {
        Some(r) if !r.is_empty() && r.len() <= 2000 => Ok(r.to_owned()),
        Some(r) if r.len() > 2000 => Err(refuse(
            StatusCode::BAD_REQUEST,
            "the reason is longer than 2000 bytes",
        )),
        _ => Err(refuse(
            StatusCode::BAD_REQUEST,
            "a non-empty \"reason\" is required: it is journaled",
        )),
    }
}

// === Authorization ===

/// The operator behind the request, if they have at least `needed`.
fn authorize<R>(
    state: &ControlState<R>,
    headers: &HeaderMap,
    needed: Role,
) -> Result<Operator, Refusal> {
    // A browser page elsewhere must not drive the API with an operator's credentials.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let same = !host.is_empty()
            && origin
                .to_str()
                .is_ok_and(|o| o == format!("http://{host}") || o == format!("https://{host}"));
        if !same {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "cross-origin requests are refused",
            ));
        }
    }
    // The scheme's case does not matter (RFC 9110), as on the agents' listener.
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    let operator = state.operators.authenticate(token).map_err(|e| match e {
        AuthError::Store(e) => {
            tracing::error!(%e, "the operators file is unusable");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the operators file is unusable",
            )
        }
        AuthError::Missing => refuse(
            StatusCode::UNAUTHORIZED,
            "an operator token is required (Authorization: Bearer wdo_…)",
        ),
        other => refuse(StatusCode::UNAUTHORIZED, other.to_string()),
    })?;
    if operator.role < needed {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!(
                "this needs the {} role; yours is {}",
                needed.as_str(),
                operator.role.as_str()
            ),
        ));
    }
    Ok(operator)
}
