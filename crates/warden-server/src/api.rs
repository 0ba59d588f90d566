//! The REST API: `/api/v1/…`, JSON, every route behind an operator token and a role.
//!
//! | route | role |
//! | --- | --- |
//! | `GET /api/v1/journal?after=SEQ&limit=N&agent=NAME` | viewer |
//! | `GET /api/v1/alerts?after=SEQ&limit=N` | viewer |
//! | `GET /api/v1/quarantine` | viewer |
//! | `POST /api/v1/agents/{name}/quarantine` `{"reason": "…"}` | admin |
//! | `POST /api/v1/agents/{name}/release` `{"reason": "…"}` | admin |
//!
//! Pages follow a cursor: each answer's `next` is the `after` of the next page (`null` at the
//! end). Agents' tokens are refused on every route; a request from a browser page of another
//! origin is refused; operator actions are journaled with the operator's name.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use warden_core::{AgentId, Event, EventBody, SessionId};
use warden_journal::{Journal, JournalReader, Query as JournalQuery};
use warden_monitor::{Level, Quarantine, QuarantineEntry};

use crate::operators::{Identity, OperatorStore, Role};

/// The most records one page holds.
pub const MAX_PAGE: usize = 1000;

/// What the API works on.
pub struct ControlState {
    /// The journal, for operator actions.
    pub journal: Journal,
    /// The journal's file, read for queries.
    pub journal_path: PathBuf,
    /// The quarantine list shared by every Warden process.
    pub quarantine: Arc<Quarantine>,
    /// The operators and their tokens.
    pub operators: OperatorStore,
}

/// The API's routes.
pub fn router(state: Arc<ControlState>) -> Router {
    Router::new()
        .route("/api/v1/journal", get(journal))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/quarantine", get(quarantine_list))
        .route("/api/v1/agents/{name}/quarantine", post(quarantine))
        .route("/api/v1/agents/{name}/release", post(release))
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

/// The operator behind the request, if they have at least `needed`.
fn authorize(state: &ControlState, headers: &HeaderMap, needed: Role) -> Result<String, Refusal> {
    // A browser page elsewhere must not drive the API with an operator's credentials.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let same = origin
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
        .unwrap_or("");
    let identity = state.operators.identify(token).map_err(|e| {
        tracing::error!(%e, "the operators file is unusable");
        refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the operators file is unusable",
        )
    })?;
    match identity {
        Identity::Operator { name, role } if role >= needed => Ok(name),
        Identity::Operator { role, .. } => Err(refuse(
            StatusCode::FORBIDDEN,
            format!(
                "this needs the {} role; yours is {}",
                needed.as_str(),
                role.as_str()
            ),
        )),
        Identity::Agent => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "agent tokens are refused on the control plane",
        )),
        Identity::Unknown => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "an operator token is required (warden user add NAME --role viewer)",
        )),
    }
}

/// `after` and `limit` from the query, checked.
fn page(params: &HashMap<String, String>) -> Result<(u64, usize), Refusal> {
    let after = match params.get("after") {
        None => 0,
        Some(v) => v.parse().map_err(|_| {
            refuse(
                StatusCode::BAD_REQUEST,
                format!("after must be a record number, not {v:?}"),
            )
        })?,
    };
    let limit = match params.get("limit") {
        None => 100,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    format!("limit must be between 1 and {MAX_PAGE}, not {v:?}"),
                ));
            }
        },
    };
    for key in params.keys() {
        if !["after", "limit", "agent"].contains(&key.as_str()) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("unknown parameter {key:?}"),
            ));
        }
    }
    Ok((after, limit))
}

/// A page of records and the cursor of the next one.
fn read_page(
    state: &ControlState,
    after: u64,
    limit: usize,
    agent: Option<AgentId>,
) -> Result<(Vec<warden_journal::JournalRecord>, Option<u64>), Refusal> {
    let reader = JournalReader::open(&state.journal_path)
        .map_err(|e| refuse(StatusCode::SERVICE_UNAVAILABLE, format!("the journal: {e}")))?;
    let records = reader
        .records(&JournalQuery {
            after_seq: after,
            agent,
            limit,
        })
        .map_err(|e| refuse(StatusCode::SERVICE_UNAVAILABLE, format!("the journal: {e}")))?;
    let next = (records.len() == limit)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    Ok((records, next))
}

fn shown(r: &warden_journal::JournalRecord) -> Value {
    json!({
        "seq": r.seq,
        "time_ms": r.time_ms,
        "kind": r.kind,
        "agent": r.agent.as_str(),
        "session": r.session.as_str(),
        "body": r.body,
    })
}

async fn journal(
    State(state): State<Arc<ControlState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    let (after, limit) = page(&params)?;
    let agent = params
        .get("agent")
        .map(|a| {
            AgentId::new(a).map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("agent: {e}")))
        })
        .transpose()?;
    let (records, next) = read_page(&state, after, limit, agent)?;
    Ok(Json(json!({
        "records": records.iter().map(shown).collect::<Vec<_>>(),
        "next": next,
    })))
}

async fn alerts(
    State(state): State<Arc<ControlState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    let (after, limit) = page(&params)?;
    // The cursor walks records; a page holds the alerts among `limit` of them.
    let (records, next) = read_page(&state, after, limit, None)?;
    Ok(Json(json!({
        "alerts": records.iter().filter(|r| r.kind == "alert").map(shown).collect::<Vec<_>>(),
        "next": next,
    })))
}

async fn quarantine_list(
    State(state): State<Arc<ControlState>>,
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

async fn record(state: &ControlState, agent: &AgentId, body: EventBody) -> Result<u64, Refusal> {
    let event = Event {
        time_ms: warden_gateway::guard::now_ms(),
        agent: agent.clone(),
        session: SessionId::from_raw("operator"),
        body,
    };
    state
        .journal
        .append(&event)
        .await
        .map_err(|e| refuse(StatusCode::SERVICE_UNAVAILABLE, format!("the journal: {e}")))
}

async fn quarantine(
    State(state): State<Arc<ControlState>>,
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
    let seq = record(
        &state,
        &agent,
        EventBody::Quarantined {
            level: Level::Quarantine.as_str().into(),
            reason,
            by,
            evidence: Vec::new(),
        },
    )
    .await?;
    Ok(Json(
        json!({ "agent": name, "quarantined": true, "changed": true, "seq": seq }),
    ))
}

async fn release(
    State(state): State<Arc<ControlState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    let operator = authorize(&state, &headers, Role::Admin)?;
    let agent = agent_named(&name)?;
    let reason = reason_of(&headers, &body)?;
    let removed = state
        .quarantine
        .remove(&agent)
        .map_err(|e| refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if removed.is_none() {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("agent {name} is not quarantined"),
        ));
    }
    let seq = record(
        &state,
        &agent,
        EventBody::Released {
            by: format!("operator:{operator}"),
            reason,
        },
    )
    .await?;
    Ok(Json(json!({ "agent": name, "released": true, "seq": seq })))
}
