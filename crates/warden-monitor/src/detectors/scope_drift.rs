//! Scope drift: actions outside the task the session declared.
//!
//! An operator declares a run's task and the scope tags it needs (`warden run --task "fix the
//! build" --scope code,docs`; recorded in the run's `sandbox_started` record), or gives an agent
//! a standing scope in this detector's settings. Tools, hosts and programs carry tags here:
//!
//! ```toml
//! [monitor.detectors.scope_drift]
//! tags = { "files/send_message" = ["comms"], "api.github.com" = ["code"], "/usr/bin/git" = ["code"] }
//! agents = { builder = ["code"] }           # standing scopes, when a run declares none
//! ```
//!
//! A decision on a tagged target none of whose tags is in the session's scope raises an
//! alert, refused or not (an attempt is an attempt). Targets without tags are not judged: the
//! detector knows only what it was told. Tags match exactly; a target ending in `/*` in `tags`
//! tags every target under that prefix (`"/usr/bin/*"`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;
use warden_core::{AgentId, EventBody, SessionId, Severity};

use crate::alert::Alert;
use crate::detector::{Detector, Observation};
use crate::detectors::ConfigError;
use crate::detectors::recent::{MAX_TRACKED, RecentMap};

/// The name in configuration and alerts.
pub const NAME: &str = "scope_drift";

/// At most this many targets alerted per session (one alert each).
const MAX_ALERTED: usize = 64;

/// `[monitor.detectors.scope_drift]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tags of targets (`server/tool`, host, program path; `/*` suffix for a prefix).
    #[serde(default)]
    pub tags: BTreeMap<String, Vec<String>>,
    /// Standing scopes by agent, for sessions that declare none.
    #[serde(default)]
    pub agents: BTreeMap<String, Vec<String>>,
    /// How bad drift is (default medium).
    #[serde(default = "medium")]
    pub severity: Severity,
}

fn medium() -> Severity {
    Severity::Medium
}

#[derive(Debug, Default)]
struct Session {
    /// The declared scope, once the run's start is seen.
    scope: Option<BTreeSet<String>>,
    alerted: HashSet<String>,
}

/// The detector.
#[derive(Debug)]
pub struct ScopeDrift {
    exact: BTreeMap<String, Vec<String>>,
    prefixes: Vec<(String, Vec<String>)>,
    agents: BTreeMap<AgentId, BTreeSet<String>>,
    severity: Severity,
    sessions: Mutex<RecentMap<SessionId, Session>>,
}

impl ScopeDrift {
    /// Builds it from its table.
    pub fn from_config(config: serde_json::Value) -> Result<Self, ConfigError> {
        let config: Config =
            serde_json::from_value(config).map_err(|e| ConfigError::new(NAME, e))?;
        let mut exact = BTreeMap::new();
        let mut prefixes = Vec::new();
        for (target, tags) in config.tags {
            if tags.is_empty() || tags.iter().any(|t| t.trim().is_empty()) {
                return Err(ConfigError::new(
                    NAME,
                    format!("tags for {target:?} must be non-empty names"),
                ));
            }
            match target.strip_suffix("/*") {
                Some(prefix) if !prefix.is_empty() => prefixes.push((format!("{prefix}/"), tags)),
                Some(_) => return Err(ConfigError::new(NAME, "\"/*\" alone would tag everything")),
                None => {
                    exact.insert(target, tags);
                }
            }
        }
        let agents = config
            .agents
            .into_iter()
            .map(|(name, scope)| {
                AgentId::new(&name)
                    .map(|a| (a, scope.into_iter().collect()))
                    .map_err(|e| ConfigError::new(NAME, e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            exact,
            prefixes,
            agents,
            severity: config.severity,
            sessions: Mutex::new(RecentMap::new(MAX_TRACKED)),
        })
    }

    /// The tags of `target`: exact ones, else those of the longest prefix.
    fn tags_of(&self, target: &str) -> Option<&[String]> {
        if let Some(tags) = self.exact.get(target) {
            return Some(tags);
        }
        self.prefixes
            .iter()
            .filter(|(p, _)| target.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, t)| t.as_slice())
    }
}

impl Detector for ScopeDrift {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&self, observation: &Observation<'_>, alerts: &mut Vec<Alert>) {
        let event = observation.event;
        match &event.body {
            EventBody::SandboxStarted { scope, .. } if !scope.is_empty() => {
                let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
                sessions
                    .touch_or_insert_with(&event.session, Session::default)
                    .scope = Some(scope.iter().cloned().collect());
            }
            EventBody::Decision { action, target, .. } => {
                let Some(tags) = self.tags_of(target) else {
                    return;
                };
                let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
                let session = sessions.touch_or_insert_with(&event.session, Session::default);
                let scope = match (&session.scope, self.agents.get(&event.agent)) {
                    (Some(s), _) | (None, Some(s)) => s,
                    // No declared scope: nothing to drift from.
                    (None, None) => return,
                };
                if tags.iter().any(|t| scope.contains(t)) {
                    return;
                }
                if session.alerted.len() >= MAX_ALERTED || !session.alerted.insert(target.clone()) {
                    return;
                }
                let scope: Vec<&str> = scope.iter().map(String::as_str).collect();
                alerts.push(Alert {
                    detector: NAME,
                    severity: self.severity,
                    agent: event.agent.clone(),
                    session: event.session.clone(),
                    summary: format!(
                        "{action} {target} (tagged {}) is outside the declared scope [{}]",
                        tags.join(", "),
                        scope.join(", ")
                    ),
                    evidence: vec![observation.seq],
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::observe as seen;
    use serde_json::json;
    use warden_core::{ActionKind, Effect, Event};

    fn decision(agent: &str, session: &str, action: ActionKind, target: &str) -> Event {
        Event {
            time_ms: 1,
            agent: AgentId::new(agent).unwrap(),
            session: SessionId::from_raw(session),
            body: EventBody::Decision {
                action,
                target: target.into(),
                args_digest: String::new(),
                args: json!({}),
                effect: Effect::Allow,
                policies: vec![],
                reason: String::new(),
            },
        }
    }

    fn started(session: &str, scope: &[&str]) -> Event {
        Event {
            time_ms: 0,
            agent: AgentId::new("builder").unwrap(),
            session: SessionId::from_raw(session),
            body: EventBody::SandboxStarted {
                command: vec![],
                layers: vec![],
                degraded: vec![],
                cgroups: String::new(),
                task: Some("fix the build".into()),
                scope: scope.iter().map(|s| (*s).to_owned()).collect(),
            },
        }
    }

    fn detector() -> ScopeDrift {
        ScopeDrift::from_config(json!({
            "tags": {
                "files/send_message": ["comms"],
                "/usr/bin/git": ["code"],
                "/usr/bin/*": ["shell"],
                "api.github.com": ["code"]
            },
            "agents": { "standing": ["comms"] }
        }))
        .unwrap()
    }

    #[test]
    fn actions_outside_the_declared_scope_are_alerted_once() {
        let d = detector();
        assert!(seen(&d, 1, &started("s1", &["code"])).is_empty());
        assert!(
            seen(
                &d,
                2,
                &decision("builder", "s1", ActionKind::Exec, "/usr/bin/git")
            )
            .is_empty()
        );
        assert!(
            seen(
                &d,
                3,
                &decision("builder", "s1", ActionKind::HttpRequest, "api.github.com")
            )
            .is_empty()
        );
        let a = seen(
            &d,
            4,
            &decision("builder", "s1", ActionKind::CallTool, "files/send_message"),
        );
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].evidence, [4]);
        assert_eq!(
            a[0].summary,
            "call_tool files/send_message (tagged comms) is outside the declared scope [code]"
        );
        assert!(
            seen(
                &d,
                5,
                &decision("builder", "s1", ActionKind::CallTool, "files/send_message")
            )
            .is_empty()
        );
        // A prefix tags what it covers; the exact entry wins over it.
        let a = seen(
            &d,
            6,
            &decision("builder", "s1", ActionKind::Exec, "/usr/bin/curl"),
        );
        assert_eq!(a.len(), 1, "{a:?}");
        // Untagged targets are not judged.
        assert!(
            seen(
                &d,
                7,
                &decision("builder", "s1", ActionKind::Exec, "/opt/tool")
            )
            .is_empty()
        );
    }

    #[test]
    fn a_standing_scope_applies_when_a_session_declares_none() {
        let d = detector();
        assert!(
            seen(
                &d,
                1,
                &decision("standing", "s2", ActionKind::CallTool, "files/send_message")
            )
            .is_empty()
        );
        assert_eq!(
            seen(
                &d,
                2,
                &decision("standing", "s2", ActionKind::Exec, "/usr/bin/git")
            )
            .len(),
            1
        );
        // No scope at all: nothing to drift from.
        assert!(
            seen(
                &d,
                3,
                &decision("other", "s3", ActionKind::Exec, "/usr/bin/git")
            )
            .is_empty()
        );
    }

    #[test]
    fn bad_configuration_is_refused() {
        for bad in [
            json!({"tags": {"/*": ["x"]}}),
            json!({"tags": {"a": []}}),
            json!({"agents": {"bad name!": ["x"]}}),
            json!({"unknown": 1}),
        ] {
            assert!(ScopeDrift::from_config(bad.clone()).is_err(), "{bad}");
        }
    }
}
