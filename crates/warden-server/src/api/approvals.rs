//! Calls held for a human: the queue, and the answers (approve once, approve for the session,
//! deny). An answer is a journal record; the held call reads it back, in whichever Warden
//! process holds it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use warden_core::{AgentId, ApprovalAnswer, EventBody};

use super::{
    ControlState, Recorder, Refusal, authorize, caught_up, json_body, refuse, unavailable,
};
use crate::operators::Role;

pub(super) async fn list<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    caught_up(&state).await?;
    let pending = state.fleet.pending(warden_gateway::guard::now_ms());
    Ok(Json(json!({ "approvals": pending })))
}

pub(super) async fn answer<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    Path(seq): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    let operator = authorize(&state, &headers, Role::Approver)?;
    let seq: u64 = seq.parse().map_err(|_| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("an approval is named by its record number, not {seq:?}"),
        )
    })?;
    let body = json_body(&headers, &body)?;
    let answer: ApprovalAnswer = body
        .get("answer")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                "\"answer\" is required: approve, approve_session or deny",
            )
        })?
        .parse()
        .map_err(|e: String| refuse(StatusCode::BAD_REQUEST, e))?;
    let reason = super::reason_in(&body)?;
    caught_up(&state).await?;
    let (pending, answered) = state.fleet.approval(seq);
    if let Some((earlier, _)) = answered {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("call {seq} was already answered: {}", earlier.as_str()),
        ));
    }
    let Some(pending) = pending.filter(|p| p.expires_ms > warden_gateway::guard::now_ms()) else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("no call is waiting for an answer as record {seq}"),
        ));
    };
    let agent = AgentId::new(&pending.agent).map_err(unavailable)?;
    let answer_seq = state
        .journal
        .record(
            &agent,
            EventBody::ApprovalAnswered {
                decision_seq: seq,
                answer,
                by: format!("operator:{}", operator.name),
                reason,
            },
        )
        .await
        .map_err(|e| unavailable(format!("{e} (the call stays held)")))?;
    // Another answer may have been journaled between the check and this record: the first
    // one is in force, and the operator is told which.
    caught_up(&state).await?;
    let (in_force, in_force_seq) = state.fleet.approval(seq).1.unwrap_or((answer, answer_seq));
    Ok(Json(json!({
        "seq": seq,
        "answer": in_force.as_str(),
        "taken": in_force_seq == answer_seq,
        "answer_seq": answer_seq,
    })))
}
