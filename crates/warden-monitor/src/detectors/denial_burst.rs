//! Denial bursts: an agent refused again and again in a short time is probing for what it may
//! do, or has left its task and keeps running into the edge of its scope.
//!
//! Counts the decisions with effect `deny` of each agent (across its sessions) in a sliding
//! window; `threshold` of them raise one alert, citing the refused decisions. An `ask` is not
//! counted: it is a question put to a human, not a refusal. Once raised, the alert is not
//! raised again for that agent until its window has emptied: one burst, one alert.
//!
//! ```toml
//! [monitor.detectors.denial_burst]
//! threshold = 5        # refusals ...
//! window_secs = 60     # ... less than this old
//! severity = "high"
//! max_agents = 10000   # agents tracked at once; the least recently refused are forgotten
//! ```

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;
use warden_core::{ActionKind, AgentId, Effect, EventBody, Severity};

use crate::alert::Alert;
use crate::detector::{Detector, Observation};
use crate::detectors::ConfigError;
use crate::detectors::recent::{MAX_TRACKED, RecentMap};

/// The name in configuration and alerts.
pub const NAME: &str = "denial_burst";

/// The most refusals an alert cites.
const MAX_EVIDENCE: usize = 32;
/// The most distinct refused actions a summary names.
const MAX_NAMED: usize = 3;
/// Longest target a summary shows, in bytes.
const MAX_TARGET_SHOWN: usize = 80;
/// Bounds that keep the state per agent small (`threshold` entries) and times in range.
const MAX_THRESHOLD: usize = 1_000;
const MAX_WINDOW_SECS: u64 = 86_400;

/// `[monitor.detectors.denial_burst]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DenialBurstConfig {
    /// Refusals within the window that make a burst.
    pub threshold: usize,
    /// The window's length, in seconds.
    pub window_secs: u64,
    /// The alert's severity.
    pub severity: Severity,
    /// Agents tracked at once.
    pub max_agents: usize,
}

impl Default for DenialBurstConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            window_secs: 60,
            severity: Severity::High,
            max_agents: MAX_TRACKED,
        }
    }
}

/// Raises an alert when one agent is refused `threshold` times within `window_secs`.
#[derive(Debug)]
pub struct DenialBurst {
    threshold: usize,
    window_ms: i64,
    severity: Severity,
    bursts: Mutex<RecentMap<AgentId, Burst>>,
}

/// One agent's recent refusals.
#[derive(Debug, Default)]
struct Burst {
    /// `(time_ms, seq)` of the latest refusals inside the window, oldest first; at most
    /// `threshold` of them, since more would not change the answer.
    refused: VecDeque<(i64, u64)>,
    /// Distinct refused actions since the burst began, for the summary.
    named: Vec<(ActionKind, String)>,
    /// Whether more distinct actions were refused than `named` holds.
    more_named: bool,
    /// Whether this burst was already reported.
    alerted: bool,
}

impl DenialBurst {
    /// Builds the detector from its table (`{}` for the defaults).
    pub fn from_config(config: serde_json::Value) -> Result<Self, ConfigError> {
        let c: DenialBurstConfig =
            serde_json::from_value(config).map_err(|e| ConfigError::new(NAME, e))?;
        Self::new(c)
    }

    /// Builds the detector from a parsed configuration, checking it.
    pub fn new(c: DenialBurstConfig) -> Result<Self, ConfigError> {
        if !(1..=MAX_THRESHOLD).contains(&c.threshold) {
            return Err(ConfigError::new(
                NAME,
                format!(
                    "threshold = {} is out of range (1 to {MAX_THRESHOLD})",
                    c.threshold
                ),
            ));
        }
        if !(1..=MAX_WINDOW_SECS).contains(&c.window_secs) {
            return Err(ConfigError::new(
                NAME,
                format!(
                    "window_secs = {} is out of range (1 to {MAX_WINDOW_SECS})",
                    c.window_secs
                ),
            ));
        }
        if c.max_agents == 0 {
            return Err(ConfigError::new(NAME, "max_agents must be at least 1"));
        }
        Ok(Self {
            threshold: c.threshold,
            // Cannot overflow: window_secs ≤ MAX_WINDOW_SECS.
            window_ms: (c.window_secs * 1000) as i64,
            severity: c.severity,
            bursts: Mutex::new(RecentMap::new(c.max_agents)),
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.bursts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Detector for DenialBurst {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&self, observation: &Observation<'_>, alerts: &mut Vec<Alert>) {
        let event = observation.event;
        let EventBody::Decision {
            action,
            target,
            effect: Effect::Deny,
            ..
        } = &event.body
        else {
            return;
        };
        let now = event.time_ms;
        let mut bursts = self.bursts.lock().unwrap_or_else(PoisonError::into_inner);
        let burst = bursts.touch_or_insert_with(&event.agent, Burst::default);

        while let Some(&(t, _)) = burst.refused.front() {
            if now.saturating_sub(t) < self.window_ms {
                break;
            }
            burst.refused.pop_front();
        }
        if burst.refused.is_empty() {
            // The window emptied: whatever comes next is a new burst.
            burst.alerted = false;
            burst.named.clear();
            burst.more_named = false;
        }
        burst.refused.push_back((now, observation.seq));
        if burst.refused.len() > self.threshold {
            burst.refused.pop_front();
        }
        if !burst.named.iter().any(|(k, t)| k == action && t == target) {
            if burst.named.len() < MAX_NAMED {
                burst.named.push((*action, target.clone()));
            } else {
                burst.more_named = true;
            }
        }

        if burst.alerted || burst.refused.len() < self.threshold {
            return;
        }
        burst.alerted = true;
        let first = burst.refused.front().map_or(now, |&(t, _)| t);
        let mut evidence: Vec<u64> = burst.refused.iter().map(|&(_, seq)| seq).collect();
        evidence.sort_unstable();
        evidence.dedup();
        // Keep the latest: they include the refusal that completed the burst.
        let evidence = evidence.split_off(evidence.len().saturating_sub(MAX_EVIDENCE));
        alerts.push(Alert {
            detector: NAME,
            severity: self.severity,
            agent: event.agent.clone(),
            session: event.session.clone(),
            summary: summary(burst, now.saturating_sub(first)),
            evidence,
        });
    }
}

/// "5 refused actions in 12 s (call_tool files/delete, exec /bin/rm)".
fn summary(burst: &Burst, span_ms: i64) -> String {
    let mut s = format!(
        "{} refused actions in {} (",
        burst.refused.len(),
        span(span_ms)
    );
    for (i, (kind, target)) in burst.named.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{kind} {}", shorten(target));
    }
    if burst.more_named {
        s.push_str(", ...");
    }
    s.push(')');
    s
}

/// A duration for a human: "850 ms", "4.2 s", "12 s".
fn span(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{} ms", ms.max(0)),
        1_000..10_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} s", ms / 1000),
    }
}

fn shorten(target: &str) -> std::borrow::Cow<'_, str> {
    if target.len() <= MAX_TARGET_SHOWN {
        return target.into();
    }
    let cut = target.floor_char_boundary(MAX_TARGET_SHOWN);
    format!("{}...", &target[..cut]).into()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;
    use warden_core::{Event, SessionId};

    use super::*;
    use crate::detectors::testing::observe;

    fn decision(time_ms: i64, agent: &str, effect: Effect, target: &str) -> Event {
        Event {
            time_ms,
            agent: AgentId::new(agent).unwrap(),
            session: SessionId::from_raw(format!("s-{agent}")),
            body: EventBody::Decision {
                action: ActionKind::CallTool,
                target: target.into(),
                args_digest: String::new(),
                args: json!({}),
                effect,
                policies: Vec::new(),
                reason: String::new(),
            },
        }
    }

    fn detector(config: serde_json::Value) -> DenialBurst {
        DenialBurst::from_config(config).unwrap()
    }

    #[test]
    fn alerts_exactly_at_threshold_and_not_below() {
        let d = detector(json!({"threshold": 3, "window_secs": 10}));
        let e = |t| decision(t, "a", Effect::Deny, "files/delete");
        assert!(observe(&d, 1, &e(0)).is_empty());
        assert!(observe(&d, 2, &e(1_000)).is_empty());
        let alerts = observe(&d, 3, &e(2_500));
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.detector, NAME);
        assert_eq!(a.severity, Severity::High);
        assert_eq!(a.agent.as_str(), "a");
        assert_eq!(a.session.as_str(), "s-a");
        assert_eq!(a.evidence, [1, 2, 3]);
        assert_eq!(
            a.summary,
            "3 refused actions in 2.5 s (call_tool files/delete)"
        );
    }

    #[test]
    fn refusals_that_left_the_window_do_not_count() {
        let d = detector(json!({"threshold": 3, "window_secs": 10}));
        let e = |t| decision(t, "a", Effect::Deny, "files/delete");
        assert!(observe(&d, 1, &e(0)).is_empty());
        assert!(observe(&d, 2, &e(5_000)).is_empty());
        // The first is exactly 10 s old: out of the window.
        assert!(observe(&d, 3, &e(10_000)).is_empty());
        let alerts = observe(&d, 4, &e(14_999));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].evidence, [2, 3, 4]);
    }

    #[test]
    fn one_burst_raises_one_alert_until_the_window_empties() {
        let d = detector(json!({"threshold": 2, "window_secs": 10}));
        let e = |t| decision(t, "a", Effect::Deny, "files/delete");
        let mut raised = 0;
        // A continuous burst: one refusal a second for a minute.
        for i in 0..60 {
            raised += observe(&d, i, &e(i as i64 * 1_000)).len();
        }
        assert_eq!(raised, 1);
        // Quiet for a whole window, then a new burst: a new alert.
        assert!(observe(&d, 100, &e(69_000)).is_empty());
        assert_eq!(observe(&d, 101, &e(69_500)).len(), 1);
    }

    #[test]
    fn ask_and_allow_are_not_refusals() {
        let d = detector(json!({"threshold": 2}));
        for (seq, effect) in [Effect::Ask, Effect::Allow, Effect::Ask, Effect::Deny]
            .into_iter()
            .enumerate()
        {
            let e = decision(seq as i64, "a", effect, "files/delete");
            assert!(observe(&d, seq as u64, &e).is_empty());
        }
        assert_eq!(
            observe(&d, 9, &decision(9, "a", Effect::Deny, "x/y")).len(),
            1
        );
    }

    #[test]
    fn one_agents_refusals_never_count_for_another() {
        let d = detector(json!({"threshold": 3}));
        for seq in 0..10 {
            let agent = if seq % 2 == 0 { "a" } else { "b" };
            let alerts = observe(&d, seq, &decision(seq as i64, agent, Effect::Deny, "x/y"));
            // Each agent reaches 3 on its own third refusal (seqs 4 and 5), not before.
            match seq {
                4 | 5 => {
                    assert_eq!(alerts.len(), 1);
                    assert_eq!(alerts[0].agent.as_str(), agent);
                    let own: Vec<u64> = (0..=seq).filter(|s| s % 2 == seq % 2).collect();
                    assert_eq!(alerts[0].evidence, own);
                }
                _ => assert!(alerts.is_empty(), "seq {seq}: {alerts:?}"),
            }
        }
    }

    #[test]
    fn summary_names_up_to_three_actions_and_evidence_is_capped() {
        let d = detector(json!({"threshold": 40, "window_secs": 600}));
        let mut alerts = Vec::new();
        for seq in 0..40u64 {
            let target = format!("files/t{}", seq % 5);
            alerts = observe(
                &d,
                seq + 100,
                &decision(seq as i64 * 1000, "a", Effect::Deny, &target),
            );
        }
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].summary,
            "40 refused actions in 39 s (call_tool files/t0, call_tool files/t1, call_tool files/t2, ...)"
        );
        assert_eq!(alerts[0].evidence, (108..140).collect::<Vec<u64>>());
    }

    #[test]
    fn a_long_target_is_named_once_and_shortened() {
        let d = detector(json!({"threshold": 3}));
        let long = format!("files/{}", "é".repeat(100));
        for seq in 0..2 {
            assert!(observe(&d, seq, &decision(seq as i64, "a", Effect::Deny, &long)).is_empty());
        }
        let alerts = observe(&d, 2, &decision(2, "a", Effect::Deny, &long));
        let shown = &long[..long.floor_char_boundary(MAX_TARGET_SHOWN)];
        assert_eq!(
            alerts[0].summary,
            format!("3 refused actions in 2 ms (call_tool {shown}...)")
        );
    }

    #[test]
    fn bad_configuration_is_refused_with_a_clear_error() {
        for (config, needle) in [
            (json!({"threshold": 0}), "threshold = 0"),
            (json!({"window_secs": 0}), "window_secs = 0"),
            (json!({"window_secs": 100_000_000}), "window_secs"),
            (json!({"max_agents": 0}), "max_agents"),
            (json!({"treshold": 5}), "unknown field `treshold`"),
            (json!({"severity": "dire"}), "unknown variant `dire`"),
            (json!({"threshold": -1}), "expected usize"),
        ] {
            let err = DenialBurst::from_config(config.clone()).unwrap_err();
            assert_eq!(err.detector, NAME);
            assert!(err.to_string().contains(needle), "{config}: {err}");
        }
        let d = detector(json!({}));
        assert_eq!((d.threshold, d.window_ms), (5, 60_000));
        assert_eq!(d.severity, Severity::High);
        assert_eq!(d.tracked(), 0);
    }

    #[test]
    fn state_is_bounded_and_the_least_recently_refused_are_forgotten() {
        let d = detector(json!({"threshold": 3, "max_agents": 20}));
        let mut seq = 0;
        let mut deny = |agent: &str| {
            seq += 1;
            observe(&d, seq, &decision(seq as i64, agent, Effect::Deny, "x/y"))
        };
        for i in 0..10 {
            assert!(deny(&format!("other{i}")).is_empty());
        }
        assert!(deny("keep").is_empty());
        assert!(deny("keep").is_empty());
        // Enough new agents to force evictions: "keep" is among the most recent, so it stays.
        for i in 10..25 {
            assert!(deny(&format!("other{i}")).is_empty());
        }
        assert_eq!(deny("keep").len(), 1, "a recent agent was forgotten");
        // "other0" was the least recent: forgotten, so two more refusals are not three.
        assert!(deny("other0").is_empty());
        assert!(deny("other0").is_empty());
        for i in 25..500 {
            assert!(deny(&format!("other{i}")).is_empty());
        }
        assert!(d.tracked() <= 20, "{} agents tracked", d.tracked());
        assert!(d.tracked() >= 17);
    }

    proptest! {
        /// Never an alert with fewer than `threshold` of the agent's refusals in the window; and
        /// every agent that reaches `threshold` in some window gets an alert by then.
        #[test]
        fn alerts_match_a_brute_force_count(
            steps in prop::collection::vec((0..3usize, 0..4_000i64, 0..3u8), 1..200),
            threshold in 1..6usize,
        ) {
            let window_ms = 10_000;
            let d = detector(json!({"threshold": threshold, "window_secs": 10}));
            let mut now = 0;
            let mut refused: Vec<(usize, i64, u64)> = Vec::new();
            let mut alerted = [false; 3];
            for (seq, (agent, dt, effect)) in steps.into_iter().enumerate() {
                let seq = seq as u64;
                now += dt;
                let effect = [Effect::Allow, Effect::Deny, Effect::Ask][effect as usize];
                let name = format!("agent{agent}");
                let alerts = observe(&d, seq, &decision(now, &name, effect, "x/y"));
                if effect == Effect::Deny {
                    refused.push((agent, now, seq));
                }
                let in_window: Vec<u64> = refused
                    .iter()
                    .filter(|&&(a, t, _)| a == agent && now - t < window_ms)
                    .map(|&(_, _, s)| s)
                    .collect();
                for alert in &alerts {
                    prop_assert_eq!(alert.agent.as_str(), name.as_str());
                    prop_assert!(in_window.len() >= threshold);
                    prop_assert!(alert.evidence.windows(2).all(|w| w[0] < w[1]));
                    prop_assert!(alert.evidence.iter().all(|s| in_window.contains(s)));
                    prop_assert!(alert.evidence.contains(&seq));
                    alerted[agent] = true;
                }
                if in_window.len() >= threshold {
                    prop_assert!(alerted[agent], "agent{} reached {} unreported", agent, threshold);
                }
            }
        }
    }
}
