//! The REST API: `/api/v1/…`, JSON, every route behind an operator token and a role.
//!
//! | route | role |
//! | --- | --- |
//! | `GET /api/v1/journal?after=SEQ&limit=N&agent=NAME&kind=KIND` | viewer |
//! | `GET /api/v1/journal/verify` | viewer |
//! | `GET /api/v1/alerts?after=SEQ&limit=N&agent=NAME` | viewer |
//! | `GET /api/v1/quarantine` | viewer |
//! | `POST /api/v1/agents/{name}/quarantine` `{"reason": "…"}` | admin |
//! | `POST /api/v1/agents/{name}/release` `{"reason": "…"}` | admin |
//!
//! Pages follow a cursor: each answer's `next` is the `after` of the next page (`null` at the
//! end). Agents' tokens are refused on every route; a request from a browser page of another
//! origin is refused; operator actions are journaled with the operator's name.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use warden_core::{AgentId, Event, EventBody, SessionId};
use warden_journal::{Journal, JournalReader, JournalRecord, Query as JournalQuery};
use warden_monitor::{Level, Quarantine, QuarantineEntry};

use crate::operators::{AuthError, OperatorStore, Role};

/// The most records one page holds.
pub const MAX_PAGE: usize = 1000;

/// The page size when none is asked for.
pub const DEFAULT_PAGE: usize = 100;

/// The most records one filtered query (`kind`, alerts) examines before it answers with what
/// it found and a cursor to go on from: a rare kind must not make one request walk the
/// whole journal.
pub const SCAN_BUDGET: usize = 20_000;

// === Recorder ===

/// Where operator actions are journaled. The server's own journal in production; tests may
/// plug in one that fails.
pub trait Recorder: Send + Sync + 'static {
    /// Appends `body` for `agent` and resolves to its seq once durable.
    fn record(
        &self,
        agent: &AgentId,
        body: EventBody,
    ) -> impl Future<Output = Result<u64, String>> + Send;
}

impl Recorder for Journal {
    fn record(
        &self,
        agent: &AgentId,
        body: EventBody,
    ) -> impl Future<Output = Result<u64, String>> + Send {
        let pending = self.append(&Event {
            time_ms: warden_gateway::guard::now_ms(),
            agent: agent.clone(),
            session: SessionId::from_raw("operator"),
            body,
        });
        async move { pending.await.map_err(|e| e.to_string()) }
    }
}

// === State and routes ===

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
}

/// The API's routes.
pub fn router<R: Recorder>(state: Arc<ControlState<R>>) -> Router {
    Router::new()
        .route("/api/v1/journal", get(journal::<R>))
        .route("/api/v1/journal/verify", get(verify::<R>))
        .route("/api/v1/alerts", get(alerts::<R>))
        .route("/api/v1/quarantine", get(quarantine_list::<R>))
        .route("/api/v1/agents/{name}/quarantine", post(quarantine::<R>))
        .route("/api/v1/agents/{name}/release", post(release::<R>))
        .with_state(state)
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

// === Authorization ===

/// The operator behind the request, if they have at least `needed`.
fn authorize<R>(
    state: &ControlState<R>,
    headers: &HeaderMap,
    needed: Role,
) -> Result<String, Refusal> {
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
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim();
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
    Ok(operator.name)
}

// === Journal queries ===

/// A checked page request.
struct PageRequest {
    after: u64,
    limit: usize,
    agent: Option<AgentId>,
    kind: Option<String>,
}

/// The page request in the query string, every parameter checked; `allowed` names those the
/// route takes.
fn page_request(
    params: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<PageRequest, Refusal> {
    let bad = |why: String| refuse(StatusCode::BAD_REQUEST, why);
    for key in params.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(bad(format!(
                "unknown parameter {key:?} (this route takes {})",
                allowed.join(", ")
            )));
        }
    }
    let after = match params.get("after") {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| bad(format!("after must be a record number, not {v:?}")))?,
    };
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(bad(format!(
                    "limit must be between 1 and {MAX_PAGE}, not {v:?}"
                )));
            }
        },
    };
    let agent = params
        .get("agent")
        .map(|a| AgentId::new(a).map_err(|e| bad(format!("agent: {e}"))))
        .transpose()?;
    let kind = match params.get("kind") {
        None => None,
        Some(k)
            if !k.is_empty()
                && k.len() <= 64
                && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
        {
            Some(k.clone())
        }
        Some(k) => {
            return Err(bad(format!(
                "kind is an event kind such as decision or alert, not {k:?}"
            )));
        }
    };
    Ok(PageRequest {
        after,
        limit,
        agent,
        kind,
    })
}

/// A page of records and the cursor of the next one (`None`: the journal's end was reached).
struct Page {
    records: Vec<JournalRecord>,
    next: Option<u64>,
}

/// Reads one page. Blocking (SQLite): run it off the async workers.
fn read_page(path: &FsPath, request: &PageRequest) -> Result<Page, warden_journal::JournalError> {
    let reader = JournalReader::open(path)?;
    let query = |after_seq, limit| JournalQuery {
        after_seq,
        agent: request.agent.clone(),
        limit,
    };
    let Some(kind) = &request.kind else {
        let records = reader.records(&query(request.after, request.limit))?;
        let next = (records.len() == request.limit)
            .then(|| records.last().map(|r| r.seq))
            .flatten();
        return Ok(Page { records, next });
    };
    // Filtered: walk chunks until the page is full, the journal ends or the budget is spent.
    // INVARIANT: `cursor` is the seq of the last record examined, so a page that stops
    // early neither skips nor repeats a record on the next request.
    let mut records = Vec::new();
    let mut cursor = request.after;
    let mut scanned = 0;
    loop {
        let chunk = reader.records(&query(cursor, MAX_PAGE))?;
        let at_end = chunk.len() < MAX_PAGE;
        for record in chunk {
            cursor = record.seq;
            scanned += 1;
            if &record.kind == kind {
                records.push(record);
                if records.len() == request.limit {
                    return Ok(Page {
                        records,
                        next: Some(cursor),
                    });
                }
            }
        }
        if at_end {
            return Ok(Page {
                records,
                next: None,
            });
        }
        if scanned >= SCAN_BUDGET {
            return Ok(Page {
                records,
                next: Some(cursor),
            });
        }
    }
}

async fn page_of<R>(state: &ControlState<R>, request: PageRequest) -> Result<Page, Refusal> {
    let path = state.journal_path.clone();
    tokio::task::spawn_blocking(move || read_page(&path, &request))
        .await
        .map_err(unavailable)?
        .map_err(unavailable)
}

fn shown(r: &JournalRecord) -> Value {
    json!({
        "seq": r.seq,
        "time_ms": r.time_ms,
        "kind": r.kind,
        "agent": r.agent.as_str(),
        "session": r.session.as_str(),
        "body": r.body,
    })
}

async fn journal<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    let request = page_request(&params, &["after", "limit", "agent", "kind"])?;
    let page = page_of(&state, request).await?;
    Ok(Json(json!({
        "records": page.records.iter().map(shown).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

async fn alerts<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    let mut request = page_request(&params, &["after", "limit", "agent"])?;
    request.kind = Some("alert".to_owned());
    let page = page_of(&state, request).await?;
    Ok(Json(json!({
        "alerts": page.records.iter().map(shown).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

async fn verify<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    page_request(&params, &[])?;
    let path = state.journal_path.clone();
    let report = tokio::task::spawn_blocking(move || warden_journal::verify(&path))
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
    Ok(Json(json!({
        "intact": report.is_intact(),
        "records_checked": report.records_checked,
        "last_seq": report.last_seq,
        "last_hash": report.last_hash,
        "checkpoints_checked": report.checkpoints_checked,
        "head_seq": report.head_seq,
        "public_key": report.public_key,
        "breach": report.breach,
    })))
}

// === Quarantine ===

async fn quarantine_list<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    let list: Vec<Value> = state
        .quarantine
        .list()
        .into_iter()
        .map(|e| {
            json!({
                "agent": e.agent.as_str(),
                "level": e.level.as_str(),
                "reason": e.reason,
                "by": e.by,
                "since_ms": e.since_ms,
                "evidence": e.evidence,
            })
        })
        .collect();
    Ok(Json(json!({ "quarantined": list })))
}

/// The `{"reason": "…"}` body of an operator action, required and non-empty.
fn reason_of(headers: &HeaderMap, body: &[u8]) -> Result<String, Refusal> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_type {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send JSON (content-type: application/json)",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })?;
    match value.get("reason").and_then(Value::as_str).map(str::trim) {
        Some(r) if !r.is_empty() => Ok(r.to_owned()),
        _ => Err(refuse(
            StatusCode::BAD_REQUEST,
            "a non-empty \"reason\" is required: it is journaled",
        )),
    }
}

fn agent_named(name: &str) -> Result<AgentId, Refusal> {
    AgentId::new(name).map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("agent: {e}")))
}

async fn quarantine<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    let operator = authorize(&state, &headers, Role::Admin)?;
    let agent = agent_named(&name)?;
    let reason = reason_of(&headers, &body)?;
    let by = format!("operator:{operator}");
    let added = state
        .quarantine
        .add(QuarantineEntry {
            agent: agent.clone(),
            level: Level::Quarantine,
            reason: reason.clone(),
            by: by.clone(),
            since_ms: warden_gateway::guard::now_ms(),
            evidence: Vec::new(),
        })
        .map_err(|e| refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if !added {
        return Ok(Json(
            json!({ "agent": name, "quarantined": true, "changed": false }),
        ));
    }
    // Containment stays in force even if the journal refuses the record: failing closed.
    let seq = state
        .journal
        .record(
            &agent,
            EventBody::Quarantined {
                level: Level::Quarantine.as_str().into(),
                reason,
                by,
                evidence: Vec::new(),
            },
        )
        .await
        .map_err(|e| unavailable(format!("{e} (the agent is quarantined)")))?;
    Ok(Json(
        json!({ "agent": name, "quarantined": true, "changed": true, "seq": seq }),
    ))
}

async fn release<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    let operator = authorize(&state, &headers, Role::Admin)?;
    let agent = agent_named(&name)?;
    let reason = reason_of(&headers, &body)?;
    if state.quarantine.get(&agent).is_none() {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("agent {name} is not quarantined"),
        ));
    }
    // The release is journaled before it takes effect: if the journal refuses the record, the
    // agent stays quarantined.
    let seq = state
        .journal
        .record(
            &agent,
            EventBody::Released {
                by: format!("operator:{operator}"),
                reason,
            },
        )
        .await
        .map_err(|e| unavailable(format!("{e} (the agent stays quarantined)")))?;
    state.quarantine.remove(&agent).map_err(|e| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the release is journaled (seq {seq}) but the list is unchanged: {e}"),
        )
    })?;
    Ok(Json(json!({ "agent": name, "released": true, "seq": seq })))
}
