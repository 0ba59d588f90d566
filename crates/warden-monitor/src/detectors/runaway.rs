//! Runaway sessions: an agent stuck in a loop, or one doing far more than any task needs.
//!
//! Two checks per session, each raising one alert:
//! - a loop: the same action (same kind, same target, byte-identical journaled arguments)
//!   `repeat` times in a row, all within `window_secs`. The alert is raised again only after
//!   the loop broke (another action came in between, or the action paused for a whole window);
//! - budgets: more than `max_actions` decisions, more than `max_exec` `exec` decisions, or more
//!   than `max_bytes_out` bytes of arguments in allowed actions. Warden does not see every
//!   byte that leaves through an allowed action; the size of the journaled arguments (as JSON)
//!   is the proxy used: it is what the agent chose to send. Decisions count whatever their
//!   effect (a refused loop of `exec` is still a runaway); bytes count only when allowed, since
//!   refused arguments never left. A budget's alert is raised once per session.
//!
//! And a sandbox held to its limits by the kernel (`sandbox_limit`: process starts refused at
//! the process limit, a fork loop; processes killed at the memory limit) raises one alert per
//! session and limit: the kernel contained it, and someone should know it tried.
//!
//! Past `max_sessions`, the least recently active sessions are forgotten (one that comes back
//! starts its budgets afresh).
//!
//! ```toml
//! [monitor.detectors.runaway]
//! repeat = 20
//! window_secs = 60
//! max_actions = 10000
//! max_exec = 500
//! max_bytes_out = 52428800   # 50 MiB
//! severity = "high"
//! max_sessions = 10000
//! ```

use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io;
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;
use warden_core::{ActionKind, Effect, Event, EventBody, SessionId, Severity};

use crate::alert::Alert;
use crate::detector::{Detector, Observation};
use crate::detectors::ConfigError;
use crate::detectors::recent::{MAX_TRACKED, RecentMap};

/// Keys the gateway records beside an action's arguments that are not part of it.
const LINEAGE: [&str; 2] = ["pid", "ppid"];

/// The name in configuration and alerts.
pub const NAME: &str = "runaway";

/// The most records an alert cites.
const MAX_EVIDENCE: usize = 32;
/// Longest target a summary shows, in bytes.
const MAX_TARGET_SHOWN: usize = 80;
/// Bounds that keep the state per session small (`repeat` entries) and times in range.
const MAX_REPEAT: usize = 1_000;
const MAX_WINDOW_SECS: u64 = 86_400;

/// `[monitor.detectors.runaway]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunawayConfig {
    /// Identical actions in a row that make a loop.
    pub repeat: usize,
    /// The time they must fall within, in seconds.
    pub window_secs: u64,
    /// Decisions per session.
    pub max_actions: u64,
    /// `exec` decisions per session.
    pub max_exec: u64,
    /// Bytes of journaled arguments (JSON) of allowed actions per session.
    pub max_bytes_out: u64,
    /// The alerts' severity.
    pub severity: Severity,
    /// Sessions tracked at once.
    pub max_sessions: usize,
}

impl Default for RunawayConfig {
    fn default() -> Self {
        Self {
            repeat: 20,
            window_secs: 60,
            max_actions: 10_000,
            max_exec: 500,
            max_bytes_out: 50 * 1024 * 1024,
            severity: Severity::High,
            max_sessions: MAX_TRACKED,
        }
    }
}

/// Raises an alert on a loop of identical actions or a session over its budgets.
#[derive(Debug)]
pub struct Runaway {
    repeat: usize,
    window_ms: i64,
    max_actions: u64,
    max_exec: u64,
    max_bytes_out: u64,
    severity: Severity,
    /// Keyed per process, so an agent cannot craft two different actions that look alike.
    fingerprints: RandomState,
    sessions: Mutex<RecentMap<SessionId, Session>>,
}

#[derive(Debug, Default)]
struct Session {
    /// The current run of identical actions.
    run_of: u64,
    /// `(time_ms, seq)` of the run's latest repetitions inside the window, oldest first; at
    /// most `repeat` of them.
    run: VecDeque<(i64, u64)>,
    run_alerted: bool,
    /// Alerts raised for `sandbox_limit` records: processes, memory.
    limit_alerted: [bool; 2],
    actions: Budget,
    exec: Budget,
    bytes_out: Budget,
}

/// One budget's use in a session.
#[derive(Debug, Default)]
struct Budget {
    used: u64,
    /// The first record that counted, cited with the one that went over.
    first_seq: Option<u64>,
}

impl Budget {
    /// Adds `amount`; true when that takes it over `max` for the first time.
    fn spend(&mut self, amount: u64, seq: u64, max: u64) -> bool {
        if amount == 0 {
            return false;
        }
        self.first_seq.get_or_insert(seq);
        let before = self.used;
        self.used = self.used.saturating_add(amount);
        before <= max && self.used > max
    }

    fn evidence(&self, seq: u64) -> Vec<u64> {
        match self.first_seq {
            Some(first) if first < seq => vec![first, seq],
            _ => vec![seq],
        }
    }
}

impl Runaway {
    /// Builds the detector from its table (`{}` for the defaults).
    pub fn from_config(config: serde_json::Value) -> Result<Self, ConfigError> {
        let c: RunawayConfig =
            serde_json::from_value(config).map_err(|e| ConfigError::new(NAME, e))?;
        Self::new(c)
    }

    /// Builds the detector from a parsed configuration, checking it.
    pub fn new(c: RunawayConfig) -> Result<Self, ConfigError> {
        if !(2..=MAX_REPEAT).contains(&c.repeat) {
            return Err(ConfigError::new(
                NAME,
                format!("repeat = {} is out of range (2 to {MAX_REPEAT})", c.repeat),
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
        for (name, value) in [
            ("max_actions", c.max_actions),
            ("max_exec", c.max_exec),
            ("max_bytes_out", c.max_bytes_out),
            ("max_sessions", c.max_sessions as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::new(NAME, format!("{name} must be at least 1")));
            }
        }
        Ok(Self {
            repeat: c.repeat,
            // Cannot overflow: window_secs ≤ MAX_WINDOW_SECS.
            window_ms: (c.window_secs * 1000) as i64,
            max_actions: c.max_actions,
            max_exec: c.max_exec,
            max_bytes_out: c.max_bytes_out,
            severity: c.severity,
            fingerprints: RandomState::new(),
            sessions: Mutex::new(RecentMap::new(c.max_sessions)),
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// One alert per session and limit the kernel held the sandbox to.
    fn limit_reached(
        &self,
        event: &Event,
        seq: u64,
        limit: &str,
        max: u64,
        times: u64,
        alerts: &mut Vec<Alert>,
    ) {
        let (slot, summary) = if limit == "memory" {
            (
                1,
                format!(
                    "the kernel killed {times} process(es) of the sandbox at its memory limit \
                     ({} MiB)",
                    max / (1024 * 1024)
                ),
            )
        } else {
            (
                0,
                format!(
                    "the sandbox reached its process limit ({max}): {times} process start(s) \
                     refused by the kernel (a fork loop?)"
                ),
            )
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let s = sessions.touch_or_insert_with(&event.session, Session::default);
        if std::mem::replace(&mut s.limit_alerted[slot], true) {
            return;
        }
        alerts.push(self.alert(event, summary, vec![seq]));
    }

    fn alert(&self, event: &Event, summary: String, evidence: Vec<u64>) -> Alert {
        Alert {
            detector: NAME,
            severity: self.severity,
            agent: event.agent.clone(),
            session: event.session.clone(),
            summary,
            evidence,
        }
    }
}

impl Detector for Runaway {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&self, observation: &Observation<'_>, alerts: &mut Vec<Alert>) {
        let event = observation.event;
        let seq = observation.seq;
        if let EventBody::SandboxLimit { limit, max, times } = &event.body {
            self.limit_reached(event, seq, limit, *max, *times, alerts);
            return;
        }
        let EventBody::Decision {
            action: kind,
            target,
            args,
            effect,
            ..
        } = &event.body
        else {
            return;
        };
        let (kind, effect) = (*kind, *effect);
        // Outside the lock: the only work proportional to the action's size.
        let mut fp = Fingerprint {
            hasher: self.fingerprints.build_hasher(),
            bytes: 0,
        };
        kind.hash(&mut fp.hasher);
        target.hash(&mut fp.hasher);
        // Cannot fail: a JSON value always serializes and `Fingerprint` never refuses bytes.
        match args.as_object() {
            // Program starts carry their lineage (`pid`, `ppid`) beside the arguments: a loop
            // starts the same program with the same arguments from ever new processes.
            Some(map) if kind == ActionKind::Exec => {
                for (key, value) in map.iter().filter(|(k, _)| !LINEAGE.contains(&k.as_str())) {
                    let _ = serde_json::to_writer(&mut fp, key);
                    let _ = serde_json::to_writer(&mut fp, value);
                }
            }
            _ => {
                let _ = serde_json::to_writer(&mut fp, args);
            }
        }
        let (fingerprint, args_bytes) = (fp.hasher.finish(), fp.bytes);
        let now = event.time_ms;

        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let s = sessions.touch_or_insert_with(&event.session, Session::default);

        if s.actions.spend(1, seq, self.max_actions) {
            alerts.push(self.alert(
                event,
                format!(
                    "budget: {} decisions in this session (max_actions = {})",
                    s.actions.used, self.max_actions
                ),
                s.actions.evidence(seq),
            ));
        }
        if kind == ActionKind::Exec && s.exec.spend(1, seq, self.max_exec) {
            alerts.push(self.alert(
                event,
                format!(
                    "budget: {} exec decisions in this session (max_exec = {})",
                    s.exec.used, self.max_exec
                ),
                s.exec.evidence(seq),
            ));
        }
        if effect == Effect::Allow && s.bytes_out.spend(args_bytes, seq, self.max_bytes_out) {
            alerts.push(self.alert(
                event,
                format!(
                    "budget: {} bytes of arguments sent by allowed actions in this session \
                     (max_bytes_out = {})",
                    s.bytes_out.used, self.max_bytes_out
                ),
                s.bytes_out.evidence(seq),
            ));
        }

        if s.run_of == fingerprint && !s.run.is_empty() {
            while let Some(&(t, _)) = s.run.front() {
                if now.saturating_sub(t) < self.window_ms {
                    break;
                }
                s.run.pop_front();
            }
        } else {
            s.run_of = fingerprint;
            s.run.clear();
        }
        if s.run.is_empty() {
            // A new run, or the old one paused for a whole window: the loop was broken.
            s.run_alerted = false;
        }
        s.run.push_back((now, seq));
        if s.run.len() > self.repeat {
            s.run.pop_front();
        }
        if s.run_alerted || s.run.len() < self.repeat {
            return;
        }
        s.run_alerted = true;
        let first = s.run.front().map_or(now, |&(t, _)| t);
        let mut evidence: Vec<u64> = s.run.iter().map(|&(_, seq)| seq).collect();
        evidence.sort_unstable();
        evidence.dedup();
        // Keep the latest: they include the repetition that completed the loop.
        let evidence = evidence.split_off(evidence.len().saturating_sub(MAX_EVIDENCE));
        let summary = format!(
            "loop: {kind} {} with identical arguments {} times in a row in {}",
            shorten(target),
            s.run.len(),
            span(now.saturating_sub(first)),
        );
        alerts.push(self.alert(event, summary, evidence));
    }
}

/// Hashes the serialized arguments and counts their bytes in one pass, without a buffer.
struct Fingerprint<H> {
    hasher: H,
    bytes: u64,
}

impl<H: Hasher> io::Write for Fingerprint<H> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.write(buf);
        self.bytes = self.bytes.saturating_add(buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A duration for a human: "850 ms", "4.2 s", "12 s".
fn span(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{} ms", ms.max(0)),
        1_000..10_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} s", ms / 1000),
    }
}

fn shorten(target: &str) -> String {
    if target.len() <= MAX_TARGET_SHOWN {
        return target.to_owned();
    }
    let cut = target.floor_char_boundary(MAX_TARGET_SHOWN);
    format!("{}...", &target[..cut])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;
    use warden_core::AgentId;

    use super::*;
    use crate::detectors::testing::observe;

    fn decision(
        time_ms: i64,
        session: &str,
        action: ActionKind,
        target: &str,
        args: serde_json::Value,
        effect: Effect,
    ) -> Event {
        Event {
            time_ms,
            agent: AgentId::new("agent").unwrap(),
            session: SessionId::from_raw(session),
            body: EventBody::Decision {
                action,
                target: target.into(),
                args_digest: String::new(),
                args,
                effect,
                policies: Vec::new(),
                reason: String::new(),
            },
        }
    }

    fn read(time_ms: i64, session: &str, path: &str) -> Event {
        decision(
            time_ms,
            session,
            ActionKind::CallTool,
            "files/read",
            json!({"path": path}),
            Effect::Allow,
        )
    }

    fn detector(config: serde_json::Value) -> Runaway {
        Runaway::from_config(config).unwrap()
    }

    #[test]
    fn a_loop_alerts_exactly_at_repeat_and_not_below() {
        let d = detector(json!({"repeat": 4, "window_secs": 10}));
        for seq in 1..4 {
            assert!(observe(&d, seq, &read(seq as i64 * 100, "s", "/a")).is_empty());
        }
        let alerts = observe(&d, 4, &read(400, "s", "/a"));
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!((a.detector, a.severity), (NAME, Severity::High));
        assert_eq!(a.session.as_str(), "s");
        assert_eq!(a.evidence, [1, 2, 3, 4]);
        assert_eq!(
            a.summary,
            "loop: call_tool files/read with identical arguments 4 times in a row in 300 ms"
        );
    }

    #[test]
    fn a_sandbox_held_to_its_limits_alerts_once_per_limit_and_session() {
        let d = detector(json!({}));
        let limit = |session: &str, limit: &str, max: u64, times: u64| Event {
            time_ms: 1,
            agent: AgentId::new("agent").unwrap(),
            session: SessionId::from_raw(session),
            body: EventBody::SandboxLimit {
                limit: limit.into(),
                max,
                times,
            },
        };
        let alerts = observe(&d, 7, &limit("s", "processes", 256, 40));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].evidence, [7]);
        assert_eq!(
            alerts[0].summary,
            "the sandbox reached its process limit (256): 40 process start(s) refused by the \
             kernel (a fork loop?)"
        );
        assert!(observe(&d, 8, &limit("s", "processes", 256, 9)).is_empty());
        let memory = observe(&d, 9, &limit("s", "memory", 1 << 30, 1));
        assert_eq!(memory.len(), 1);
        assert!(
            memory[0].summary.contains("memory limit (1024 MiB)"),
            "{}",
            memory[0].summary
        );
        assert_eq!(observe(&d, 10, &limit("t", "processes", 256, 1)).len(), 1);
    }

    #[test]
    fn a_different_action_in_between_breaks_the_loop() {
        let d = detector(json!({"repeat": 3}));
        let mut seq = 0;
        let mut see = |e: Event| {
            seq += 1;
            observe(&d, seq, &e).len()
        };
        // Other arguments, other target, other kind: each breaks the run.
        assert_eq!(see(read(0, "s", "/a")) + see(read(1, "s", "/a")), 0);
        assert_eq!(see(read(2, "s", "/b")) + see(read(3, "s", "/a")), 0);
        let other_target = decision(
            4,
            "s",
            ActionKind::CallTool,
            "files/stat",
            json!({"path": "/a"}),
            Effect::Allow,
        );
        let other_kind = decision(
            6,
            "s",
            ActionKind::ReadResource,
            "files/read",
            json!({"path": "/a"}),
            Effect::Allow,
        );
        assert_eq!(
            see(read(4, "s", "/a")) + see(other_target) + see(read(5, "s", "/a")),
            0
        );
        assert_eq!(
            see(read(5, "s", "/a")) + see(other_kind) + see(read(7, "s", "/a")),
            0
        );
        assert_eq!(see(read(8, "s", "/a")) + see(read(9, "s", "/a")), 1);
    }

    #[test]
    fn repetitions_must_fall_within_the_window() {
        let d = detector(json!({"repeat": 3, "window_secs": 10}));
        assert!(observe(&d, 1, &read(0, "s", "/a")).is_empty());
        assert!(observe(&d, 2, &read(6_000, "s", "/a")).is_empty());
        // The first is 12 s old by the third: not a loop yet.
        assert!(observe(&d, 3, &read(12_000, "s", "/a")).is_empty());
        let alerts = observe(&d, 4, &read(15_999, "s", "/a"));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].evidence, [2, 3, 4]);
    }

    #[test]
    fn one_loop_one_alert_until_it_breaks() {
        let d = detector(json!({"repeat": 3, "window_secs": 10}));
        let mut raised = 0;
        for seq in 0..100 {
            raised += observe(&d, seq, &read(seq as i64 * 10, "s", "/a")).len();
        }
        assert_eq!(raised, 1);
        // Broken by another action, then looping again: a second alert.
        assert!(observe(&d, 100, &read(1_000, "s", "/b")).is_empty());
        let again: usize = (101..104)
            .map(|seq| observe(&d, seq, &read(seq as i64 * 10, "s", "/a")).len())
            .sum();
        assert_eq!(again, 1);
        // Paused a whole window, then looping again: a third.
        let later: usize = (0..3)
            .map(|i| observe(&d, 200 + i, &read(20_000 + i as i64, "s", "/a")).len())
            .sum();
        assert_eq!(later, 1);
    }

    #[test]
    fn sessions_are_isolated() {
        let d = detector(json!({"repeat": 3, "max_actions": 4}));
        // Interleaved, the same action in two sessions: each run is its own.
        for seq in 0..4 {
            let s = if seq % 2 == 0 { "s1" } else { "s2" };
            assert!(observe(&d, seq, &read(seq as i64, s, "/a")).is_empty());
        }
        let alerts = observe(&d, 4, &read(4, "s1", "/a"));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].evidence, [0, 2, 4]);
        assert_eq!(alerts[0].session.as_str(), "s1");
    }

    #[test]
    fn action_budget_alerts_once_when_exceeded() {
        let d = detector(json!({"max_actions": 5}));
        for seq in 0..5 {
            let e = read(seq as i64, "s", &format!("/{seq}"));
            assert!(observe(&d, seq + 10, &e).is_empty());
        }
        let alerts = observe(&d, 15, &read(5, "s", "/5"));
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].summary,
            "budget: 6 decisions in this session (max_actions = 5)"
        );
        assert_eq!(alerts[0].evidence, [10, 15]);
        for seq in 16..40 {
            assert!(observe(&d, seq, &read(seq as i64, "s", &format!("/{seq}"))).is_empty());
        }
        // Another session has its own budget.
        assert!(observe(&d, 40, &read(40, "t", "/x")).is_empty());
    }

    #[test]
    fn exec_budget_counts_exec_decisions_even_refused() {
        let d = detector(json!({"max_exec": 2}));
        let exec = |t, effect| {
            decision(
                t,
                "s",
                ActionKind::Exec,
                "/bin/sh",
                json!({"argv": ["sh", t.to_string()]}),
                effect,
            )
        };
        assert!(observe(&d, 1, &exec(1, Effect::Deny)).is_empty());
        assert!(observe(&d, 2, &read(2, "s", "/a")).is_empty());
        assert!(observe(&d, 3, &exec(3, Effect::Allow)).is_empty());
        let alerts = observe(&d, 4, &exec(4, Effect::Deny));
        assert_eq!(alerts.len(), 1);
        assert!(
            alerts[0].summary.contains("3 exec decisions"),
            "{}",
            alerts[0].summary
        );
        assert!(alerts[0].summary.contains("max_exec = 2"));
        assert_eq!(alerts[0].evidence, [1, 4]);
    }

    #[test]
    fn bytes_out_count_the_arguments_of_allowed_actions_only() {
        let args = json!({"path": "/a"}); // 12 bytes of JSON
        let size = serde_json::to_vec(&args).unwrap().len() as u64;
        let d = detector(json!({"max_bytes_out": size * 3}));
        let e = |t, effect| {
            decision(
                t,
                "s",
                ActionKind::HttpRequest,
                "example.org",
                args.clone(),
                effect,
            )
        };
        assert!(observe(&d, 1, &e(1_000_000, Effect::Allow)).is_empty());
        assert!(observe(&d, 2, &e(2_000_000, Effect::Deny)).is_empty());
        assert!(observe(&d, 3, &e(3_000_000, Effect::Ask)).is_empty());
        assert!(observe(&d, 4, &e(4_000_000, Effect::Allow)).is_empty());
        assert!(observe(&d, 5, &e(5_000_000, Effect::Allow)).is_empty());
        let alerts = observe(&d, 6, &e(6_000_000, Effect::Allow));
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].summary,
            format!(
                "budget: {} bytes of arguments sent by allowed actions in this session \
                 (max_bytes_out = {})",
                size * 4,
                size * 3
            )
        );
        assert_eq!(alerts[0].evidence, [1, 6]);
    }

    #[test]
    fn state_is_bounded_and_the_least_recent_sessions_are_forgotten() {
        let d = detector(json!({"max_actions": 2, "max_sessions": 20}));
        let mut seq = 0;
        let mut act = |session: &str| {
            seq += 1;
            observe(&d, seq, &read(seq as i64, session, &format!("/{seq}"))).len()
        };
        assert_eq!(act("old") + act("keep") + act("keep"), 0);
        for i in 0..25 {
            assert_eq!(act(&format!("s{i}")), 0);
            if i % 5 == 0 {
                // Stays recent: its third action goes over its budget.
                assert_eq!(act("keep"), usize::from(i == 0));
            }
        }
        // "old" was forgotten: two more actions are not three.
        assert_eq!(act("old") + act("old"), 0);
        for i in 25..500 {
            assert_eq!(act(&format!("s{i}")), 0);
        }
        assert!((17..=20).contains(&d.tracked()), "{} sessions", d.tracked());
    }

    #[test]
    fn bad_configuration_is_refused_with_a_clear_error() {
        for (config, needle) in [
            (json!({"repeat": 1}), "repeat = 1"),
            (json!({"repeat": 5000}), "repeat = 5000"),
            (json!({"window_secs": 0}), "window_secs = 0"),
            (json!({"max_actions": 0}), "max_actions must be"),
            (json!({"max_exec": 0}), "max_exec must be"),
            (json!({"max_bytes_out": 0}), "max_bytes_out must be"),
            (json!({"max_sessions": 0}), "max_sessions must be"),
            (json!({"max_action": 5}), "unknown field `max_action`"),
            (json!({"severity": 3}), "invalid type: integer `3`"),
        ] {
            let err = Runaway::from_config(config.clone()).unwrap_err();
            assert_eq!(err.detector, NAME);
            assert!(err.to_string().contains(needle), "{config}: {err}");
        }
        let d = detector(json!({}));
        assert_eq!((d.repeat, d.window_ms), (20, 60_000));
        assert_eq!((d.max_actions, d.max_exec), (10_000, 500));
        assert_eq!(d.max_bytes_out, 52_428_800);
    }

    proptest! {
        /// A loop alert is raised only when the last `repeat` decisions of the session were
        /// the same action, all within the window; and a run that long never goes unreported.
        #[test]
        fn loop_alerts_match_a_brute_force_check(
            steps in prop::collection::vec((0..2usize, 0..3u8, 0..3_000i64), 1..200),
            repeat in 2..6usize,
        ) {
            let window_ms = 10_000;
            let d = detector(json!({"repeat": repeat, "window_secs": 10}));
            let mut now = 0;
            let mut history: [Vec<(u8, i64)>; 2] = [Vec::new(), Vec::new()];
            let mut reported = [false; 2];
            for (seq, (session, path, dt)) in steps.into_iter().enumerate() {
                now += dt;
                let name = format!("s{session}");
                let alerts = observe(&d, seq as u64, &read(now, &name, &format!("/{path}")));
                let h = &mut history[session];
                // Once the run breaks, it may be reported again.
                if h.last().is_some_and(|&(p, t)| p != path || now - t >= window_ms) {
                    reported[session] = false;
                }
                h.push((path, now));
                let tail = &h[h.len().saturating_sub(repeat)..];
                let is_loop = tail.len() == repeat
                    && tail.iter().all(|&(p, _)| p == path)
                    && now - tail[0].1 < window_ms;
                prop_assert!(alerts.len() <= 1);
                if let Some(alert) = alerts.first() {
                    prop_assert!(is_loop, "alert without a loop: {}", alert.summary);
                    prop_assert!(!reported[session]);
                    prop_assert_eq!(alert.evidence.len(), repeat);
                    prop_assert_eq!(alert.evidence.last(), Some(&(seq as u64)));
                    reported[session] = true;
                }
                if is_loop {
                    prop_assert!(reported[session], "loop in {} unreported", name);
                }
            }
        }
    }
}
