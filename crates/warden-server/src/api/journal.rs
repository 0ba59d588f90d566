//! Reading the journal: pages of records, alerts and their evidence, chain verification.

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use warden_core::{AgentId, EventBody};
use warden_journal::{JournalReader, JournalRecord, Query as JournalQuery};

use super::{ControlState, Recorder, Refusal, authorize, reading, refuse};
use crate::operators::Role;

/// The most records one page holds.
pub const MAX_PAGE: usize = 1000;

/// The page size when none is asked for.
pub const DEFAULT_PAGE: usize = 100;

/// The most evidence records shown with one alert.
const MAX_EVIDENCE: usize = 100;

/// A checked page request.
pub(super) struct PageRequest {
    pub(super) after: u64,
    pub(super) before: Option<u64>,
    pub(super) newest_first: bool,
    pub(super) limit: usize,
    pub(super) agent: Option<AgentId>,
    pub(super) kind: Option<String>,
}

/// The page request in the query string, every parameter checked; `allowed` names those the
/// route takes.
pub(super) fn page_request(
    params: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<PageRequest, Refusal> {
    let bad = |why: String| refuse(StatusCode::BAD_REQUEST, why);
    for key in params.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(bad(if allowed.is_empty() {
                format!("unknown parameter {key:?} (this route takes none)")
            } else {
                format!(
                    "unknown parameter {key:?} (this route takes {})",
                    allowed.join(", ")
                )
            }));
        }
    }
    let seq = |name: &str| -> Result<Option<u64>, Refusal> {
        params
            .get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("{name} must be a record number, not {v:?}")))
            })
            .transpose()
    };
    let after = seq("after")?.unwrap_or(0);
    let before = seq("before")?;
    let newest_first = match params.get("order").map(String::as_str) {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => {
            return Err(bad(format!("order is oldest or newest, not {other:?}")));
        }
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
        Some(k) if EventBody::KINDS.contains(&k.as_str()) => Some(k.clone()),
        Some(k) => {
            return Err(bad(format!(
                "kind is one of {}, not {k:?}",
                EventBody::KINDS.join(", ")
            )));
        }
    };
    Ok(PageRequest {
        after,
        before,
        newest_first,
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

/// Reads one page. Blocking (SQLite): run it off the async workers. The journal is indexed
/// by agent and by kind, so a filtered page costs about its own size.
fn read_page(path: &FsPath, request: &PageRequest) -> Result<Page, warden_journal::JournalError> {
    let reader = JournalReader::open(path)?;
    let records = reader.records(&JournalQuery {
        after_seq: request.after,
        before_seq: request.before,
        agent: request.agent.clone(),
        kind: request.kind.clone(),
        newest_first: request.newest_first,
        limit: request.limit,
    })?;
    // INVARIANT: `next` is the seq of the page's last record, so the next page (after=next,
    // or before=next newest first) neither skips nor repeats one.
    let next = (records.len() == request.limit)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    Ok(Page { records, next })
}

async fn page_of<R>(state: &ControlState<R>, request: PageRequest) -> Result<Page, Refusal> {
    let path = state.journal_path.clone();
    reading(move || read_page(&path, &request)).await
}

/// A record as the API shows it.
pub(super) fn shown(r: &JournalRecord) -> Value {
    json!({
        "seq": r.seq,
        "time_ms": r.time_ms,
        "kind": r.kind,
        "agent": r.agent.as_str(),
        "session": r.session.as_str(),
        "body": r.body,
    })
}

const PAGE_PARAMS: [&str; 6] = ["after", "before", "order", "limit", "agent", "kind"];

pub(super) async fn journal<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    let request = page_request(&params, &PAGE_PARAMS)?;
    let page = page_of(&state, request).await?;
    Ok(Json(json!({
        "records": page.records.iter().map(shown).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

pub(super) async fn alerts<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    let mut request = page_request(&params, &PAGE_PARAMS[..5])?;
    request.kind = Some("alert".to_owned());
    let page = page_of(&state, request).await?;
    Ok(Json(json!({
        "alerts": page.records.iter().map(shown).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

/// One alert and the records it cites as evidence.
pub(super) async fn alert<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    Path(seq): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    let seq: u64 = seq.parse().map_err(|_| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("an alert is named by its record number, not {seq:?}"),
        )
    })?;
    let path = state.journal_path.clone();
    let found = reading(move || {
        let reader = JournalReader::open(&path)?;
        let Some(alert) = reader.record(seq)?.filter(|r| r.kind == "alert") else {
            return Ok(None);
        };
        let cited: Vec<u64> = alert
            .body
            .get("evidence")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_u64)
                    .take(MAX_EVIDENCE)
                    .collect()
            })
            .unwrap_or_default();
        let mut evidence = Vec::new();
        for s in cited {
            if let Some(r) = reader.record(s)? {
                evidence.push(r);
            }
        }
        Ok::<_, warden_journal::JournalError>(Some((alert, evidence)))
    })
    .await?;
    let Some((alert, evidence)) = found else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("record {seq} is not an alert"),
        ));
    };
    Ok(Json(json!({
        "alert": shown(&alert),
        "evidence": evidence.iter().map(shown).collect::<Vec<_>>(),
    })))
}

pub(super) async fn verify<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    page_request(&params, &[])?;
    // One verification at a time, its answer shared for a minute: reading the whole chain is
    // the costliest thing the API does, and however many requests ask, the gateway then sees
    // at most one verification a minute. The answer says when it was made.
    let mut last = state.verification.0.lock().await;
    if let Some((made, answer)) = last.as_ref()
        && made.elapsed() < VERIFICATION_SHARED_FOR
    {
        let mut answer = answer.clone();
        answer["shared"] = json!(true);
        return Ok(Json(answer));
    }
    let path = state.journal_path.clone();
    let report = reading(move || warden_journal::verify(&path)).await?;
    let answer = json!({
        "intact": report.is_intact(),
        "records_checked": report.records_checked,
        "last_seq": report.last_seq,
        "last_hash": report.last_hash,
        "checkpoints_checked": report.checkpoints_checked,
        "head_seq": report.head_seq,
        "public_key": report.public_key,
        "breach": report.breach,
        "verified_at_ms": warden_gateway::guard::now_ms(),
        "shared": false,
    });
    *last = Some((std::time::Instant::now(), answer.clone()));
    Ok(Json(answer))
}

/// How long one verification's answer is given to later requests. A verification reads the
/// whole journal (seconds on a journal of millions of records); shared for only 5 s, a flood
/// of requests would keep one running much of the time beside the gateway's commits
/// (docs/benchmarks.md).
const VERIFICATION_SHARED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The last verification made, and when.
#[derive(Debug, Default)]
pub(super) struct Verification(tokio::sync::Mutex<Option<(std::time::Instant, Value)>>);
