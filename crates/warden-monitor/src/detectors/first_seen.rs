//! First seen: an agent reaching a target (tool, host, program, resource) that its learned
//! baseline does not hold.
//!
//! The baseline is learned elsewhere (from the journal of a known-good period) and given in
//! configuration, per agent and per action kind. Only allowed decisions are judged: a refused
//! action is other detectors' business (`denial_burst`). Agents without a baseline are not
//! judged at all, since nothing is known of them to deviate from; actions a server initiates
//! (sampling, elicitation, roots) are not judged either, since the agent did not choose them.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;
use warden_core::{ActionKind, AgentId, EventBody, HostRef, SessionId, Severity};

use crate::alert::Alert;
use crate::detector::{Detector, Observation};
use crate::detectors::ConfigError;
use crate::detectors::recent::{MAX_TRACKED, RecentMap};

/// The name in configuration and alerts.
pub const NAME: &str = "first_seen";

/// New targets alerted per session at most; past that the session has been flagged loudly
/// enough, and its state stays bounded.
const MAX_ALERTS_PER_SESSION: usize = 256;

/// Longest target quoted in a summary.
const MAX_SHOWN: usize = 120;

/// `[monitor.detectors.first_seen]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Agent name → action kind → the targets it is known to use.
    #[serde(default)]
    baseline: HashMap<String, HashMap<ActionKind, Vec<String>>>,
    #[serde(default = "medium")]
    severity: Severity,
}

fn medium() -> Severity {
    Severity::Medium
}

/// One agent's known targets.
#[derive(Debug, Default)]
struct Baseline {
    exact: HashMap<ActionKind, HashSet<String>>,
    /// Program path prefixes (`/usr/lib/jvm/*` in configuration).
    exec_prefixes: Vec<String>,
}

impl Baseline {
    fn knows(&self, kind: ActionKind, target: &str) -> bool {
        self.exact
            .get(&kind)
            .is_some_and(|known| known.contains(target))
            || (kind == ActionKind::Exec
                && self.exec_prefixes.iter().any(|p| target.starts_with(p)))
    }
}

/// Raises an alert the first time in a session that an agent reaches a target outside its
/// baseline.
#[derive(Debug)]
pub struct FirstSeen {
    baselines: HashMap<AgentId, Baseline>,
    severity: Severity,
    /// Per session: the (kind, target) pairs already alerted.
    alerted: Mutex<RecentMap<SessionId, HashSet<(ActionKind, String)>>>,
}

impl FirstSeen {
    /// Builds the detector from its table; `{}` judges no agent.
    pub fn from_config(config: serde_json::Value) -> Result<Self, ConfigError> {
        let config: Config =
            serde_json::from_value(config).map_err(|e| ConfigError::new(NAME, e))?;
        let mut baselines = HashMap::new();
        for (agent, kinds) in config.baseline {
            let agent_id = AgentId::new(agent.as_str())
                .map_err(|e| ConfigError::new(NAME, format!("baseline: {e}")))?;
            let mut baseline = Baseline::default();
            for (kind, targets) in kinds {
                for target in targets {
                    let bad = |why: &str| {
                        ConfigError::new(NAME, format!("baseline.{agent}.{kind}: {target:?} {why}"))
                    };
                    if target.is_empty() {
                        return Err(bad("is empty"));
                    }
                    match kind {
                        ActionKind::Exec => {
                            if !target.starts_with('/') {
                                return Err(bad("is not an absolute program path"));
                            }
                            match target.strip_suffix('*') {
                                Some(prefix) if prefix.ends_with('/') => {
                                    baseline.exec_prefixes.push(prefix.to_owned());
                                }
                                Some(_) => {
                                    return Err(bad("may end in \"/*\" only, not in \"*\""));
                                }
                                None => {
                                    baseline.exact.entry(kind).or_default().insert(target);
                                }
                            }
                        }
                        // Hosts are compared as the journal writes them: normalized.
                        ActionKind::HttpRequest | ActionKind::Connect => {
                            let host = HostRef::new(&target).map_err(|e| bad(e.why))?;
                            baseline
                                .exact
                                .entry(kind)
                                .or_default()
                                .insert(host.as_str().to_owned());
                        }
                        _ => {
                            baseline.exact.entry(kind).or_default().insert(target);
                        }
                    }
                }
            }
            baselines.insert(agent_id, baseline);
        }
        Ok(Self {
            baselines,
            severity: config.severity,
            alerted: Mutex::new(RecentMap::new(MAX_TRACKED)),
        })
    }
}

impl Detector for FirstSeen {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&self, observation: &Observation<'_>, alerts: &mut Vec<Alert>) {
        let event = observation.event;
        let EventBody::Decision {
            action,
            target,
            effect,
            ..
        } = &event.body
        else {
            return;
        };
        if !effect.permits() || action.is_server_initiated() {
            return;
        }
        let Some(baseline) = self.baselines.get(&event.agent) else {
            return;
        };
        if baseline.knows(*action, target) {
            return;
        }
        let mut sessions = self.alerted.lock().unwrap_or_else(PoisonError::into_inner);
        let alerted = sessions.touch_or_insert_with(&event.session, HashSet::new);
        let key = (*action, target.clone());
        if alerted.len() >= MAX_ALERTS_PER_SESSION || alerted.contains(&key) {
            return;
        }
        alerted.insert(key);
        drop(sessions);
        let mut shown = warden_core::escape_for_display(target).into_owned();
        if shown.len() > MAX_SHOWN {
            shown.truncate(shown.floor_char_boundary(MAX_SHOWN));
            shown.push('…');
        }
        alerts.push(Alert {
            detector: NAME,
            severity: self.severity,
            agent: event.agent.clone(),
            session: event.session.clone(),
            summary: format!(
                "agent {} reached {action} target {shown}, which is not in its baseline",
                event.agent
            ),
            evidence: vec![observation.seq],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::observe;
    use serde_json::json;
    use warden_core::{Effect, Event};

    fn detector() -> FirstSeen {
        FirstSeen::from_config(json!({
            "baseline": {
                "alice": {
                    "call_tool": ["files/read_file"],
                    "exec": ["/usr/bin/git", "/usr/lib/git-core/*"],
                    "http_request": ["API.GitHub.com"]
                }
            }
        }))
        .unwrap()
    }

    fn decision(
        agent: &str,
        session: &str,
        kind: ActionKind,
        target: &str,
        effect: Effect,
    ) -> Event {
        Event {
            time_ms: 1_000,
            agent: AgentId::new(agent).unwrap(),
            session: SessionId::from_raw(session),
            body: EventBody::Decision {
                action: kind,
                target: target.into(),
                args_digest: String::new(),
                args: json!({}),
                effect,
                policies: vec![],
                reason: String::new(),
            },
        }
    }

    #[test]
    fn known_targets_raise_nothing() {
        let d = detector();
        for (kind, target) in [
            (ActionKind::CallTool, "files/read_file"),
            (ActionKind::Exec, "/usr/bin/git"),
            (ActionKind::Exec, "/usr/lib/git-core/git-remote-https"),
            (ActionKind::HttpRequest, "api.github.com"),
        ] {
            let e = decision("alice", "s1", kind, target, Effect::Allow);
            assert!(observe(&d, 1, &e).is_empty(), "{kind} {target}");
        }
    }

    #[test]
    fn a_new_target_is_alerted_once_per_session() {
        let d = detector();
        let e = decision(
            "alice",
            "s1",
            ActionKind::Exec,
            "/usr/bin/curl",
            Effect::Allow,
        );
        let alerts = observe(&d, 7, &e);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!((a.detector, a.severity), (NAME, Severity::Medium));
        assert_eq!(a.evidence, [7]);
        assert!(a.summary.contains("/usr/bin/curl"), "{}", a.summary);
        assert!(observe(&d, 8, &e).is_empty(), "same session, same target");
        let other = decision(
            "alice",
            "s2",
            ActionKind::Exec,
            "/usr/bin/curl",
            Effect::Allow,
        );
        assert_eq!(observe(&d, 9, &other).len(), 1, "another session");
        // A kind with no baseline entries at all: every target is new.
        let read = decision(
            "alice",
            "s1",
            ActionKind::ReadResource,
            "files/file:///etc/passwd",
            Effect::Allow,
        );
        assert_eq!(observe(&d, 10, &read).len(), 1);
    }

    #[test]
    fn a_prefix_does_not_match_a_sibling_or_another_kind() {
        let d = detector();
        let sibling = decision(
            "alice",
            "s1",
            ActionKind::Exec,
            "/usr/lib/git-core-evil/x",
            Effect::Allow,
        );
        assert_eq!(observe(&d, 1, &sibling).len(), 1);
        let tool = decision(
            "alice",
            "s1",
            ActionKind::CallTool,
            "/usr/bin/git",
            Effect::Allow,
        );
        assert_eq!(
            observe(&d, 2, &tool).len(),
            1,
            "baseline entries belong to a kind"
        );
    }

    #[test]
    fn refused_actions_unknown_agents_and_server_requests_are_not_judged() {
        let d = detector();
        for effect in [Effect::Deny, Effect::Ask] {
            let e = decision("alice", "s1", ActionKind::Exec, "/bin/sh", effect);
            assert!(observe(&d, 1, &e).is_empty());
        }
        let bob = decision("bob", "s1", ActionKind::Exec, "/bin/sh", Effect::Allow);
        assert!(observe(&d, 2, &bob).is_empty(), "no baseline, not judged");
        let sample = decision("alice", "s1", ActionKind::Sample, "files", Effect::Allow);
        assert!(observe(&d, 3, &sample).is_empty());
        let other = Event {
            body: EventBody::SessionEnded {
                detail: "bye".into(),
            },
            ..bob
        };
        assert!(observe(&d, 4, &other).is_empty());
    }

    #[test]
    fn agents_are_judged_against_their_own_baseline() {
        let d = FirstSeen::from_config(json!({
            "baseline": {"alice": {"exec": ["/bin/ls"]}, "carol": {"exec": ["/bin/cat"]}},
            "severity": "high"
        }))
        .unwrap();
        let alice = decision("alice", "s1", ActionKind::Exec, "/bin/cat", Effect::Allow);
        let alerts = observe(&d, 1, &alice);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].severity, Severity::High);
        let carol = decision("carol", "s2", ActionKind::Exec, "/bin/cat", Effect::Allow);
        assert!(observe(&d, 2, &carol).is_empty());
    }

    #[test]
    fn state_stays_bounded() {
        let d = detector();
        for i in 0..(MAX_TRACKED as u64 + 50) {
            let e = decision(
                "alice",
                &format!("s{i}"),
                ActionKind::Exec,
                "/bin/sh",
                Effect::Allow,
            );
            assert_eq!(observe(&d, i, &e).len(), 1);
        }
        let sessions = d.alerted.lock().unwrap();
        assert!(sessions.len() <= MAX_TRACKED);
        drop(sessions);
        // One session with many new targets: alerts stop at the cap.
        let mut raised = 0;
        for i in 0..(MAX_ALERTS_PER_SESSION + 10) {
            let e = decision(
                "alice",
                "busy",
                ActionKind::Exec,
                &format!("/bin/x{i}"),
                Effect::Allow,
            );
            raised += observe(&d, 1, &e).len();
        }
        assert_eq!(raised, MAX_ALERTS_PER_SESSION);
    }

    #[test]
    fn bad_configuration_is_refused() {
        for bad in [
            json!({"baseline": {"alice": {"exec": ["git"]}}}),
            json!({"baseline": {"alice": {"exec": ["/usr/bin*"]}}}),
            json!({"baseline": {"alice": {"exec": [""]}}}),
            json!({"baseline": {"alice": {"fly": ["x"]}}}),
            json!({"baseline": {"al/ice": {"exec": ["/bin/ls"]}}}),
            json!({"baseline": {"alice": {"http_request": ["a b"]}}}),
            json!({"severity": "dire"}),
            json!({"baselines": {}}),
        ] {
            let err = FirstSeen::from_config(bad.clone()).unwrap_err();
            assert_eq!(err.detector, NAME, "{bad}");
        }
        assert!(FirstSeen::from_config(json!({})).is_ok());
    }
}
