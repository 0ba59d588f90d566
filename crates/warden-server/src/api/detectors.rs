//! `GET /api/v1/detectors`: what watches the agents — each detector running in this Warden,
//! its settings, what it has raised so far and whom it holds — and the playbook that answers
//! alerts.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{ControlState, Recorder, Refusal, authorize, caught_up};
use crate::operators::Role;

pub(super) async fn detectors<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    caught_up(&state).await?;
    let raised = state.fleet.detectors();
    let running: Vec<&str> = state
        .monitor
        .as_ref()
        .map(|m| m.detector_names())
        .unwrap_or_default();
    // Detectors of other Warden processes sharing the journal show too, by what they raised.
    let mut names: Vec<&str> = running.clone();
    for name in raised.keys() {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let held = state.quarantine.list();
    let detectors: Vec<Value> = names
        .iter()
        .map(|name| {
            let activity = raised.get(*name);
            let by = format!("detector:{name}");
            let holding: Vec<Value> = held
                .iter()
                .filter(|q| q.by == by)
                .map(|q| {
                    json!({
                        "agent": q.agent.as_str(),
                        "level": q.level.as_str(),
                        "since_ms": q.since_ms,
                    })
                })
                .collect();
            json!({
                "name": name,
                "running": running.contains(name),
                "settings": state.detector_settings.get(*name),
                "alerts": activity.map_or(0, |a| a.alerts),
                "last_alert": activity.map(|a| json!({
                    "seq": a.last_seq,
                    "time_ms": a.last_time_ms,
                    "agent": a.last_agent,
                    "summary": a.last_summary,
                })),
                "holding": holding,
            })
        })
        .collect();
    let playbook = state
        .monitor
        .as_ref()
        .map(|m| serde_json::to_value(m.playbook().rules()).unwrap_or(Value::Null));
    Ok(Json(
        json!({ "detectors": detectors, "playbook": playbook }),
    ))
}
