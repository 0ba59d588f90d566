//! The OpenAPI 3.1 document of the API, built from the route table below; a test checks that
//! every documented route is served.

use axum::Json;
use serde_json::{Map, Value, json};

/// One documented route.
pub(crate) struct RouteDoc {
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    /// The least role that may call it (`None`: no token needed).
    pub(crate) role: Option<&'static str>,
    pub(crate) summary: &'static str,
    /// Query parameters: name and meaning.
    pub(crate) query: &'static [(&'static str, &'static str)],
    /// The request body's content type, if it takes one.
    pub(crate) body: Option<&'static str>,
}

const PAGE: &[(&str, &str)] = &[
    (
        "after",
        "only records with a greater seq (the previous page's `next`)",
    ),
    (
        "before",
        "only records with a smaller seq (with order=newest)",
    ),
    ("order", "oldest (default) or newest first"),
    ("limit", "records per page, 1 to 1000 (default 100)"),
    ("agent", "only this agent's records"),
    (
        "kind",
        "only records of this kind (decision, outcome, alert, …)",
    ),
];

/// Every route of the API.
pub(crate) const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: "get",
        path: "/api/v1/me",
        role: Some("viewer"),
        summary: "The operator behind the token and their role",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/journal",
        role: Some("viewer"),
        summary: "A page of journal records",
        query: PAGE,
        body: None,
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/journal/verify",
        role: Some("viewer"),
        summary: "Verify the journal's hash chain and signed checkpoints (one verification a minute, shared by every request: `shared`, `verified_at_ms`)",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/stream",
        role: Some("viewer"),
        summary: "Every new journal record, as server-sent events (resume with after or Last-Event-ID)",
        query: &[
            ("after", "start after this seq (default: the journal's end)"),
            ("agent", "only this agent's records"),
            ("kind", "only records of this kind"),
        ],
        body: None,
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/alerts",
        role: Some("viewer"),
        summary: "A page of alerts",
        query: PAGE,
        body: None,
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/alerts/{seq}",
        role: Some("viewer"),
        summary: "One alert and its evidence records",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/agents",
        role: Some("viewer"),
        summary: "Every agent: state, activity, open sessions",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/agents/{name}",
        role: Some("viewer"),
        summary: "One agent: sessions with lineage, policies naming it, learned baseline",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/quarantine",
        role: Some("viewer"),
        summary: "Agents under quarantine, ask or throttle",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/detectors",
        role: Some("viewer"),
        summary: "The detectors running, their settings, what each raised and whom it holds; the playbook",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/agents/{name}/quarantine",
        role: Some("admin"),
        summary: "Quarantine an agent ({\"reason\"}); journaled",
        query: &[],
        body: Some("application/json"),
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/agents/{name}/release",
        role: Some("admin"),
        summary: "Release an agent ({\"reason\"}); journaled before it takes effect",
        query: &[],
        body: Some("application/json"),
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/agents/{name}/kill",
        role: Some("admin"),
        summary: "Kill every process of the agent's sandboxes at once ({\"reason\"}); each kill journaled",
        query: &[],
        body: Some("application/json"),
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/approvals",
        role: Some("viewer"),
        summary: "Calls held for a human's answer",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/approvals/{seq}",
        role: Some("approver"),
        summary: "Answer a held call ({\"answer\": approve|approve_session|deny, \"reason\"}); journaled",
        query: &[],
        body: Some("application/json"),
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/policies",
        role: Some("viewer"),
        summary: "The policies in force and their digest",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "post",
        path: "/api/v1/policies/validate",
        role: Some("viewer"),
        summary: "Check a Cedar policy file against Warden's schema; nothing is deployed",
        query: &[],
        body: Some("text/plain"),
    },
    RouteDoc {
        method: "get",
        path: "/api/v1/openapi.json",
        role: None,
        summary: "This document",
        query: &[],
        body: None,
    },
    RouteDoc {
        method: "get",
        path: "/metrics",
        role: Some("viewer"),
        summary: "Prometheus metrics of this process",
        query: &[],
        body: None,
    },
];

/// The document.
pub(crate) fn build() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for route in ROUTES {
        let mut parameters: Vec<Value> = route
            .query
            .iter()
            .map(|(name, meaning)| {
                json!({ "name": name, "in": "query", "required": false,
                        "description": meaning, "schema": { "type": "string" } })
            })
            .collect();
        for segment in route.path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                parameters.push(json!({ "name": name, "in": "path", "required": true,
                                        "schema": { "type": "string" } }));
            }
        }
        let mut responses = json!({
            "200": { "description": "success" },
            "400": { "$ref": "#/components/responses/Refused" },
        });
        if route.role.is_some() {
            responses["401"] = json!({ "$ref": "#/components/responses/Refused" });
            responses["403"] = json!({ "$ref": "#/components/responses/Refused" });
        }
        let mut operation = json!({
            "summary": route.summary,
            "parameters": parameters,
            "responses": responses,
        });
        match route.role {
            Some(role) => {
                operation["security"] = json!([{ "operatorToken": [] }]);
                operation["x-warden-role"] = json!(role);
            }
            None => operation["security"] = json!([]),
        }
        if let Some(content) = route.body {
            operation["requestBody"] =
                json!({ "required": true, "content": { content: { "schema": {} } } });
        }
        paths
            .entry(route.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|o| o.insert(route.method.to_owned(), operation));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Warden control plane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Operators' API: journal, alerts, agents, approvals, quarantine. \
                            Every route but this document needs an operator token \
                            (Authorization: Bearer wdo_…) with the role named in x-warden-role.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "operatorToken": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Refused": {
                    "description": "refused, with a sentence saying why",
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "properties": { "error": { "type": "string" } },
                        "required": ["error"],
                    } } },
                },
            },
        },
    })
}

pub(super) async fn document() -> Json<Value> {
    Json(build())
}
