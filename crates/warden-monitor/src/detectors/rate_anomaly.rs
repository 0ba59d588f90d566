//! Rate anomalies: an agent suddenly acting far faster than it usually does.
//!
//! For each agent and each kind of action (`call_tool`, `exec`, ...), decisions are counted in
//! fixed buckets of `bucket_secs` (aligned to the epoch), and an exponentially weighted moving
//! average of the count per bucket is kept (`alpha` is the weight of the bucket just ended;
//! quiet buckets count as zero). An alert is raised during a bucket as soon as its count is
//! at least `min_count` and more than `factor` times the average, once the agent has
//! `warmup_buckets` buckets of history for that kind. It is not raised again for that agent
//! and kind until a bucket ends below the bar: one surge, one alert.
//!
//! What it catches: a sudden surge (a script let loose, a loop that fans out, bulk reading
//! or sending) against the agent's own recent pace, within one bucket of it starting.
//!
//! What it cannot catch:
//! - a slow ramp: a rate that grows by less than `factor` per bucket drags the average up
//!   with it, and never stands out; budgets (`runaway`) are the answer to that;
//! - a surge smaller than `min_count` in a bucket, however sudden;
//! - a surge in an agent's first `warmup_buckets` buckets: there is nothing to compare with.
//!
//! Its memory is short (with `alpha = 0.3`, the average mostly reflects the last few
//! buckets), so an agent that comes back from a long pause at full speed is reported.
//!
//! ```toml
//! [monitor.detectors.rate_anomaly]
//! bucket_secs = 10
//! alpha = 0.3
//! factor = 10.0
//! min_count = 50
//! warmup_buckets = 6
//! severity = "medium"
//! max_agents = 10000
//! ```

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;
use warden_core::{ActionKind, AgentId, EventBody, Severity};

use crate::alert::Alert;
use crate::detector::{Detector, Observation};
use crate::detectors::ConfigError;
use crate::detectors::recent::{MAX_TRACKED, RecentMap};

/// The name in configuration and alerts.
pub const NAME: &str = "rate_anomaly";

/// The most records an alert cites.
const MAX_EVIDENCE: usize = 32;
const MAX_BUCKET_SECS: u64 = 3_600;
/// Beyond this many quiet buckets the average is zero for any `alpha` worth using.
const MAX_QUIET_DECAY: i64 = 10_000;
const KINDS: usize = ActionKind::ALL.len();

/// `[monitor.detectors.rate_anomaly]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateAnomalyConfig {
    /// The bucket's length, in seconds.
    pub bucket_secs: u64,
    /// The weight of the bucket just ended in the average (0 < alpha ≤ 1).
    pub alpha: f64,
    /// How many times the average a bucket must exceed (> 1).
    pub factor: f64,
    /// The least count in a bucket that can be reported.
    pub min_count: u64,
    /// Buckets of history needed before anything is reported.
    pub warmup_buckets: u32,
    /// The alert's severity.
    pub severity: Severity,
    /// Agents tracked at once.
    pub max_agents: usize,
}

impl Default for RateAnomalyConfig {
    fn default() -> Self {
        Self {
            bucket_secs: 10,
            alpha: 0.3,
            factor: 10.0,
            min_count: 50,
            warmup_buckets: 6,
            severity: Severity::Medium,
            max_agents: MAX_TRACKED,
        }
    }
}

/// Raises an alert when an agent's rate of one kind of action jumps far above its average.
#[derive(Debug)]
pub struct RateAnomaly {
    bucket_ms: i64,
    bucket_secs: u64,
    alpha: f64,
    factor: f64,
    min_count: u64,
    warmup_buckets: u32,
    severity: Severity,
    agents: Mutex<RecentMap<AgentId, [Rate; KINDS]>>,
}

/// One agent's pace for one kind of action.
#[derive(Debug, Default)]
struct Rate {
    /// Whether any action of the kind was seen (and `bucket` means something).
    started: bool,
    /// The bucket in progress: `time_ms / bucket_ms`.
    bucket: i64,
    /// Actions in the bucket in progress.
    count: u64,
    /// The average count per bucket over the buckets ended.
    average: f64,
    /// Buckets ended since the first action (quiet ones included).
    history: u32,
    /// Whether the surge in progress was already reported.
    alerted: bool,
    /// The latest seqs of the bucket in progress, oldest first.
    recent: VecDeque<u64>,
}

impl Rate {
    fn above_bar(&self, min_count: u64, factor: f64) -> bool {
        self.count >= min_count && self.count as f64 > factor * self.average
    }

    /// Ends the bucket in progress, and any quiet ones after it, before `bucket`.
    fn advance(&mut self, bucket: i64, alpha: f64, min_count: u64, factor: f64) {
        let ended = bucket - self.bucket;
        // A surge is over once a bucket ends below the bar (a quiet one always does).
        self.alerted = self.alerted && ended == 1 && self.above_bar(min_count, factor);
        self.average = if self.history == 0 {
            // The first bucket seeds the average.
            self.count as f64
        } else {
            alpha * self.count as f64 + (1.0 - alpha) * self.average
        };
        let quiet = (ended - 1).min(MAX_QUIET_DECAY);
        if quiet > 0 {
            // Each quiet bucket weighs in as zero. Cannot truncate: quiet ≤ MAX_QUIET_DECAY.
            self.average *= (1.0 - alpha).powi(quiet as i32);
        }
        let ended = u32::try_from(ended).unwrap_or(u32::MAX);
        self.history = self.history.saturating_add(ended);
        self.bucket = bucket;
        self.count = 0;
        self.recent.clear();
    }
}

impl RateAnomaly {
    /// Builds the detector from its table (`{}` for the defaults).
    pub fn from_config(config: serde_json::Value) -> Result<Self, ConfigError> {
        let c: RateAnomalyConfig =
            serde_json::from_value(config).map_err(|e| ConfigError::new(NAME, e))?;
        Self::new(c)
    }

    /// Builds the detector from a parsed configuration, checking it.
    pub fn new(c: RateAnomalyConfig) -> Result<Self, ConfigError> {
        let bad = |why: String| Err(ConfigError::new(NAME, why));
        if !(1..=MAX_BUCKET_SECS).contains(&c.bucket_secs) {
            return bad(format!(
                "bucket_secs = {} is out of range (1 to {MAX_BUCKET_SECS})",
                c.bucket_secs
            ));
        }
        if !(c.alpha > 0.0 && c.alpha <= 1.0) {
            return bad(format!(
                "alpha = {} is out of range (above 0, at most 1)",
                c.alpha
            ));
        }
        if !(c.factor > 1.0 && c.factor.is_finite()) {
            return bad(format!(
                "factor = {} must be above 1 (at or below 1, usual traffic would be reported)",
                c.factor
            ));
        }
        if c.min_count == 0 {
            return bad("min_count must be at least 1".into());
        }
        if c.warmup_buckets == 0 {
            return bad(
                "warmup_buckets must be at least 1: without history there is no usual rate".into(),
            );
        }
        if c.max_agents == 0 {
            return bad("max_agents must be at least 1".into());
        }
        Ok(Self {
            // Cannot overflow: bucket_secs ≤ MAX_BUCKET_SECS.
            bucket_ms: (c.bucket_secs * 1000) as i64,
            bucket_secs: c.bucket_secs,
            alpha: c.alpha,
            factor: c.factor,
            min_count: c.min_count,
            warmup_buckets: c.warmup_buckets,
            severity: c.severity,
            agents: Mutex::new(RecentMap::new(c.max_agents)),
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// "call_tool: 64 in the current 10 s bucket (6.4/s), more than 10 × the usual 0.3/s".
    fn summary(&self, kind: ActionKind, rate: &Rate) -> String {
        let secs = self.bucket_secs as f64;
        format!(
            "{kind}: {} in the current {} s bucket ({:.1}/s), more than {} × the usual {:.2}/s",
            rate.count,
            self.bucket_secs,
            rate.count as f64 / secs,
            self.factor,
            rate.average / secs,
        )
    }
}

impl Detector for RateAnomaly {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&self, observation: &Observation<'_>, alerts: &mut Vec<Alert>) {
        let event = observation.event;
        let EventBody::Decision { action: kind, .. } = &event.body else {
            return;
        };
        let Some(index) = ActionKind::ALL.iter().position(|k| k == kind) else {
            return;
        };
        let bucket = event.time_ms.div_euclid(self.bucket_ms);

        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        let rates = agents.touch_or_insert_with(&event.agent, Default::default);
        let rate = &mut rates[index];
        if !rate.started {
            rate.started = true;
            rate.bucket = bucket;
        } else if bucket > rate.bucket {
            rate.advance(bucket, self.alpha, self.min_count, self.factor);
        }
        // A record stamped before the bucket in progress (a clock stepped back) counts in it.
        rate.count += 1;
        if rate.recent.len() == MAX_EVIDENCE {
            rate.recent.pop_front();
        }
        rate.recent.push_back(observation.seq);

        if rate.alerted
            || rate.history < self.warmup_buckets
            || !rate.above_bar(self.min_count, self.factor)
        {
            return;
        }
        rate.alerted = true;
        let mut evidence: Vec<u64> = rate.recent.iter().copied().collect();
        evidence.sort_unstable();
        evidence.dedup();
        alerts.push(Alert {
            detector: NAME,
            severity: self.severity,
            agent: event.agent.clone(),
            session: event.session.clone(),
            summary: self.summary(*kind, rate),
            evidence,
        });
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;
    use warden_core::{Effect, Event, SessionId};

    use super::*;

    /// Feeds decisions; hands back every alert.
    struct Feed {
        d: RateAnomaly,
        seq: u64,
    }

    impl Feed {
        fn new(config: serde_json::Value) -> Self {
            Self {
                d: RateAnomaly::from_config(config).unwrap(),
                seq: 0,
            }
        }

        fn act(&mut self, time_ms: i64, agent: &str, kind: ActionKind) -> Vec<Alert> {
            self.seq += 1;
            let event = Event {
                time_ms,
                agent: AgentId::new(agent).unwrap(),
                session: SessionId::from_raw(format!("s-{agent}")),
                body: EventBody::Decision {
                    action: kind,
                    target: "files/read".into(),
                    args_digest: String::new(),
                    args: json!({}),
                    effect: Effect::Allow,
                    policies: Vec::new(),
                    reason: String::new(),
                },
            };
            let mut alerts = Vec::new();
            self.d.observe(
                &Observation {
                    seq: self.seq,
                    event: &event,
                    action: None,
                },
                &mut alerts,
            );
            alerts
        }

        /// `n` actions spread over bucket `bucket` (10 s buckets); the alerts raised.
        fn bucket(&mut self, bucket: i64, n: u64, agent: &str, kind: ActionKind) -> Vec<Alert> {
            (0..n)
                .flat_map(|i| self.act(bucket * 10_000 + (i as i64 % 10_000), agent, kind))
                .collect()
        }

        /// Buckets 0..6 at `per_bucket` each: a warmed-up baseline.
        fn baseline(&mut self, per_bucket: u64, agent: &str) {
            for b in 0..6 {
                assert!(
                    self.bucket(b, per_bucket, agent, ActionKind::CallTool)
                        .is_empty()
                );
            }
        }
    }

    const CALL: ActionKind = ActionKind::CallTool;

    #[test]
    fn alerts_exactly_at_min_count_and_not_below() {
        let mut f = Feed::new(json!({}));
        f.baseline(2, "a");
        // Bucket 6: far above 10 × 2 from the 21st on, but 50 is the least reported.
        assert!(f.bucket(6, 49, "a", CALL).is_empty());
        let alerts = f.act(60_500, "a", CALL);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!((a.detector, a.severity), (NAME, Severity::Medium));
        assert_eq!(a.agent.as_str(), "a");
        assert_eq!(
            a.summary,
            "call_tool: 50 in the current 10 s bucket (5.0/s), more than 10 × the usual 0.20/s"
        );
        // The latest 32 of the bucket, ascending.
        let last = f.seq;
        assert_eq!(a.evidence, ((last - 31)..=last).collect::<Vec<u64>>());
    }

    #[test]
    fn alerts_exactly_above_factor_times_the_average() {
        let mut f = Feed::new(json!({"min_count": 1}));
        f.baseline(10, "a");
        assert!(
            f.bucket(6, 100, "a", CALL).is_empty(),
            "100 is not above 10 × 10"
        );
        assert_eq!(f.act(69_999, "a", CALL).len(), 1);
    }

    #[test]
    fn nothing_is_reported_during_warm_up() {
        let mut f = Feed::new(json!({"warmup_buckets": 6}));
        for b in 0..5 {
            assert!(f.bucket(b, 1, "a", CALL).is_empty());
        }
        // Five buckets of history: not yet.
        assert!(f.bucket(5, 500, "a", CALL).is_empty());

        let mut f = Feed::new(json!({"warmup_buckets": 6}));
        for b in 0..6 {
            assert!(f.bucket(b, 1, "a", CALL).is_empty());
        }
        assert_eq!(f.bucket(6, 500, "a", CALL).len(), 1);
    }

    #[test]
    fn one_surge_one_alert_until_a_bucket_ends_below_the_bar() {
        // A small alpha keeps the average low, so the surge stays above the bar.
        let mut f = Feed::new(json!({"alpha": 0.01}));
        f.baseline(1, "a");
        assert_eq!(f.bucket(6, 200, "a", CALL).len(), 1);
        assert!(f.bucket(7, 200, "a", CALL).is_empty(), "same surge");
        assert!(f.bucket(8, 1, "a", CALL).is_empty());
        assert_eq!(f.bucket(9, 200, "a", CALL).len(), 1, "a new surge");
    }

    #[test]
    fn quiet_buckets_pull_the_average_down() {
        let mut f = Feed::new(json!({}));
        f.baseline(20, "a");
        // Against an average of 20, 60 is nothing; after 20 quiet buckets it is a surge.
        assert!(f.bucket(6, 60, "a", CALL).is_empty());
        assert_eq!(f.bucket(27, 60, "a", CALL).len(), 1);
    }

    #[test]
    fn agents_and_kinds_are_isolated() {
        let mut f = Feed::new(json!({}));
        f.baseline(2, "a");
        // Another agent, and another kind of the same agent, have no history of their own.
        assert!(f.bucket(6, 500, "b", CALL).is_empty());
        assert!(f.bucket(6, 500, "a", ActionKind::Exec).is_empty());
        // Agent "a"'s calls are still at their own usual pace, and surge on their own.
        assert!(f.bucket(6, 2, "a", CALL).is_empty());
        let alerts = f.bucket(7, 100, "a", CALL);
        assert_eq!(alerts.len(), 1);
        assert!(
            alerts[0].summary.starts_with("call_tool: 50 "),
            "{}",
            alerts[0].summary
        );
    }

    #[test]
    fn state_is_bounded() {
        let mut f = Feed::new(json!({"max_agents": 20}));
        f.baseline(2, "keep");
        // 300 other agents over 30 buckets; "keep" goes on at about its usual pace meanwhile.
        for i in 0..300 {
            let t = 60_000 + i * 1_000;
            assert!(f.act(t, &format!("agent{i}"), CALL).is_empty());
            if i % 5 == 0 {
                assert!(f.act(t, "keep", CALL).is_empty());
            }
            assert!(f.d.tracked() <= 20);
        }
        // "keep" stayed recent, so its history survived: its surge is reported.
        assert_eq!(f.bucket(40, 100, "keep", CALL).len(), 1);
        assert!((17..=20).contains(&f.d.tracked()));
    }

    #[test]
    fn bad_configuration_is_refused_with_a_clear_error() {
        for (config, needle) in [
            (json!({"bucket_secs": 0}), "bucket_secs = 0"),
            (json!({"alpha": 0.0}), "alpha = 0"),
            (json!({"alpha": 1.5}), "alpha = 1.5"),
            (json!({"factor": 1.0}), "factor = 1"),
            (json!({"min_count": 0}), "min_count"),
            (json!({"warmup_buckets": 0}), "warmup_buckets"),
            (json!({"max_agents": 0}), "max_agents"),
            (json!({"bucket": 10}), "unknown field `bucket`"),
            (json!({"severity": "urgent"}), "unknown variant `urgent`"),
        ] {
            let err = RateAnomaly::from_config(config.clone()).unwrap_err();
            assert_eq!(err.detector, NAME);
            assert!(err.to_string().contains(needle), "{config}: {err}");
        }
        let d = RateAnomaly::from_config(json!({})).unwrap();
        assert_eq!(
            (d.bucket_ms, d.min_count, d.warmup_buckets),
            (10_000, 50, 6)
        );
        assert_eq!(
            (d.alpha, d.factor, d.severity),
            (0.3, 10.0, Severity::Medium)
        );
    }

    proptest! {
        /// Never an alert before `warmup_buckets` buckets since the agent's first action of
        /// the kind, nor with fewer than `min_count` of them in the current bucket.
        #[test]
        fn never_alerts_during_warm_up_or_below_min_count(
            steps in prop::collection::vec((0..2usize, 0..2usize, 0..3_000i64), 1..400),
            min_count in 1..20u64,
            warmup in 1..4u32,
        ) {
            let mut f = Feed::new(json!({
                "bucket_secs": 10, "min_count": min_count, "warmup_buckets": warmup, "factor": 2.0,
            }));
            let kinds = [ActionKind::CallTool, ActionKind::Exec];
            let mut now = 0;
            let mut seen: Vec<(usize, usize, i64)> = Vec::new();
            for (agent, kind, dt) in steps {
                now += dt;
                let bucket = now.div_euclid(10_000);
                seen.push((agent, kind, bucket));
                let alerts = f.act(now, &format!("agent{agent}"), kinds[kind]);
                let mine = seen.iter().filter(|&&(a, k, _)| a == agent && k == kind);
                let first = mine.clone().map(|&(_, _, b)| b).min().unwrap();
                let in_bucket = mine.filter(|&&(_, _, b)| b == bucket).count() as u64;
                for alert in &alerts {
                    prop_assert!(bucket - first >= i64::from(warmup));
                    prop_assert!(in_bucket >= min_count);
                    prop_assert!(alert.evidence.windows(2).all(|w| w[0] < w[1]));
                    prop_assert_eq!(alert.evidence.last(), Some(&f.seq));
                }
            }
        }
    }
}
