//! The policies in force, and checking a policy before it is deployed.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warden_policy::{PolicySet, SourceFile};

use super::agents::policy_view;
use super::journal::page_request;
use super::{ControlState, Recorder, Refusal, authorize, refuse};
use crate::operators::Role;

/// The largest policy text `validate` accepts.
const MAX_POLICY_BYTES: usize = 256 * 1024;

pub(super) async fn list<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    page_request(&params, &[])?;
    let Some(set) = &state.policies else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "this Warden process serves no policies",
        ));
    };
    let summaries = set.summaries();
    // The version in force: a digest of the policies' text, in load order.
    let mut digest = Sha256::new();
    for p in &summaries {
        digest.update(p.id.as_bytes());
        digest.update([0]);
        digest.update(p.text.as_bytes());
        digest.update([0]);
    }
    Ok(Json(json!({
        "digest": hex::encode(digest.finalize()),
        "policies": summaries.iter().map(policy_view).collect::<Vec<_>>(),
    })))
}

/// Checks a Cedar policy file (the body, as text) against Warden's schema, as loading it
/// would; nothing is deployed.
pub(super) async fn validate<R: Recorder>(
    State(state): State<Arc<ControlState<R>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Refusal> {
    authorize(&state, &headers, Role::Viewer)?;
    if !super::has_media_type(&headers, "text/plain") {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the policy file as text (content-type: text/plain)",
        ));
    }
    if body.len() > MAX_POLICY_BYTES {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a policy file is at most {MAX_POLICY_BYTES} bytes"),
        ));
    }
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| refuse(StatusCode::BAD_REQUEST, "the policy is not UTF-8 text"))?;
    let source = SourceFile {
        name: "submitted.cedar".to_owned(),
        text,
    };
    let checked = tokio::task::spawn_blocking(move || PolicySet::from_sources(&[source], &[]))
        .await
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(match checked {
        Ok(set) => json!({ "valid": true, "policies": set.ids().collect::<Vec<_>>() }),
        Err(err) => json!({ "valid": false, "error": err.to_string() }),
    }))
}
