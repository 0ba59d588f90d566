//! `POST /api/v1/agents/{name}/kill`: every process of the agent's sandboxes, stopped at once.
//!
//! The control plane does not know how sandboxes are found and killed — `warden run` records
//! them, and the process serving the API is handed a [`Killer`] that does the work. Each kill
//! is journaled under the sandbox's session with the operator and the reason. Killing is
//! containment: it happens even if the journal then refuses the record (failing closed), and
//! the answer says so.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use warden_core::{AgentId, EventBody, SessionId};

use super::agents::admin_action;
use super::{ControlState, Recorder, Refusal, refuse};

/// How one sandbox was killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillReport {
    /// Processes alive when the kill began.
    pub processes: u64,
    /// Microseconds from the kill until the last process was gone.
    pub elapsed_us: u64,
    /// How (`cgroup v2 cgroup.kill`, …).
    pub method: String,
}

/// One of the agent's sandboxes and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Killed {
    /// The sandbox's session.
    pub session: SessionId,
    /// The kill, or why it failed (a sentence).
    pub result: Result<KillReport, String>,
}

/// Kills every running sandbox of an agent; blocking. `Err` is a sentence: the sandboxes
/// could not even be found. An empty list: the agent runs none.
pub type Killer = Box<dyn Fn(&AgentId) -> Result<Vec<Killed>, String> + Send + Sync>;

pub(super) async fn kill<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    let (operator, agent, reason) = admin_action(&state, &name, &headers, &body)?;
    if state.killer.is_none() {
        return Err(refuse(
            StatusCode::NOT_IMPLEMENTED,
            "this Warden does not run sandboxes: nothing to kill",
        ));
    }
    let killed = {
        let state = state.clone();
        let agent = agent.clone();
        tokio::task::spawn_blocking(move || match &state.killer {
            Some(killer) => killer(&agent),
            None => Ok(Vec::new()),
        })
        .await
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| refuse(StatusCode::SERVICE_UNAVAILABLE, e))?
    };
    if killed.is_empty() {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("agent {name} has no running sandbox"),
        ));
    }
    if killed.iter().all(|k| k.result.is_err()) {
        let why: Vec<String> = killed
            .iter()
            .filter_map(|k| {
                k.result
                    .as_ref()
                    .err()
                    .map(|e| format!("{}: {e}", k.session))
            })
            .collect();
        return Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "no sandbox of agent {name} could be killed ({})",
                why.join("; ")
            ),
        ));
    }
    let by = format!("operator:{}", operator.name);
    let mut sandboxes = Vec::with_capacity(killed.len());
    for Killed { session, result } in killed {
        let view = match result {
            Ok(report) => {
                let recorded = state
                    .journal
                    .record_in(
                        &agent,
                        session.clone(),
                        EventBody::SandboxKilled {
                            by: by.clone(),
                            processes: report.processes,
                            elapsed_us: report.elapsed_us,
                            method: report.method.clone(),
                            reason: reason.clone(),
                        },
                    )
                    .await;
                json!({
                    "session": session.as_str(),
                    "killed": true,
                    "processes": report.processes,
                    "elapsed_us": report.elapsed_us,
                    "method": report.method,
                    "seq": recorded.as_ref().ok(),
                    "journal_error": recorded.err(),
                })
            }
            Err(why) => json!({ "session": session.as_str(), "killed": false, "error": why }),
        };
        sandboxes.push(view);
    }
    Ok(Json(json!({ "agent": name, "sandboxes": sandboxes })))
}
