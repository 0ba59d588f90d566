//! Agents: who is active, their sessions and lineage, their scope; quarantine and release.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use warden_core::{AgentId, EventBody};
use warden_monitor::{Level, QuarantineEntry};

use super::{ControlState, Recorder, Refusal, authorize, caught_up, refuse, unavailable};
use crate::operators::{Operator, Role};

/// The operator behind the token, and their role: what the dashboard may offer them.
pub(super) async fn me<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
) -> Result<Json<Value>, Refusal> {
    let operator = authorize(&state, &headers, Role::Viewer)?;
    Ok(Json(
        json!({ "name": operator.name, "role": operator.role.as_str() }),
    ))
}

/// A quarantined agent that never acted in this journal.
fn no_activity(name: &str) -> crate::fleet::AgentActivity {
    crate::fleet::AgentActivity {
        name: name.to_owned(),
        ..Default::default()
    }
}

/// An agent's activity with its restriction, as the API shows it.
fn agent_view<R>(state: &ControlState<R>, activity: &crate::fleet::AgentActivity) -> Value {
    let restriction = AgentId::new(&activity.name)
        .ok()
        .and_then(|a| state.quarantine.get(&a));
    json!({
        "name": activity.name,
        "state": restriction.as_ref().map_or("active", |q| q.level.state()),
        "quarantine": restriction.map(|q| json!({
            "level": q.level.as_str(),
            "reason": q.reason,
            "by": q.by,
            "since_ms": q.since_ms,
            "evidence": q.evidence,
        })),
        "last_seq": activity.last_seq,
        "last_time_ms": activity.last_time_ms,
        "decisions": activity.decisions,
        "alerts": activity.alerts,
        "sessions_open": activity.sessions_open,
    })
}

pub(super) async fn agents<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    caught_up(&state).await?;
    let mut list: Vec<Value> = state
        .fleet
        .agents()
        .iter()
        .map(|a| agent_view(&state, a))
        .collect();
    // Quarantined agents that never acted in this journal still show.
    for q in state.quarantine.list() {
        if !list.iter().any(|a| a["name"] == q.agent.as_str()) {
            list.push(agent_view(&state, &no_activity(q.agent.as_str())));
        }
    }
    Ok(Json(json!({ "agents": list })))
}

pub(super) async fn agent<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    let id = agent_named(&name)?;
    caught_up(&state).await?;
    let (activity, sessions) = match state.fleet.agent(id.as_str()) {
        Some(found) => found,
        None if state.quarantine.get(&id).is_some() => (no_activity(&name), Vec::new()),
        None => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                format!("agent {name} has no record in the journal"),
            ));
        }
    };
    let policies: Vec<Value> = state
        .policies
        .as_ref()
        .map(|set| {
            set.summaries()
                .into_iter()
                .filter(|p| p.agent.as_deref().is_none_or(|a| a == name))
                .map(|p| policy_view(&p))
                .collect()
        })
        .unwrap_or_default();
    let baseline = state.baseline.as_ref().and_then(|b| b(&id));
    Ok(Json(json!({
        "agent": agent_view(&state, &activity),
        "sessions": sessions,
        "policies": policies,
        "baseline": baseline,
    })))
}

/// A policy as the API shows it.
pub(super) fn policy_view(p: &warden_policy::PolicySummary) -> Value {
    json!({
        "id": p.id,
        "effect": p.effect,
        "ask": p.ask,
        "agent": p.agent,
        "text": p.text,
    })
}

pub(super) async fn quarantine_list<R: Recorder>(
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
    super::reason_in(&super::json_body(headers, body)?)
}

/// An admin's action on one agent (quarantine, release, kill): the admin, the agent, and the
/// reason the request must give.
pub(super) fn admin_action<R>(
    state: &ControlState<R>,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Operator, AgentId, String), Refusal> {
    let operator = authorize(state, headers, Role::Admin)?;
    let agent = agent_named(name)?;
    let reason = reason_of(headers, body)?;
    Ok((operator, agent, reason))
}

pub(super) fn agent_named(name: &str) -> Result<AgentId, Refusal> {
    AgentId::new(name).map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("agent: {e}")))
}

pub(super) async fn quarantine<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    let (operator, agent, reason) = admin_action(&state, &name, &headers, &body)?;
    let by = format!("operator:{}", operator.name);
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

pub(super) async fn release<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    let (operator, agent, reason) = admin_action(&state, &name, &headers, &body)?;
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
                by: format!("operator:{}", operator.name),
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
