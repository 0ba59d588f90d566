//! Prometheus metrics of the process, in the OpenMetrics text format.
//!
//! One registry for the whole process, filled by the gateways as actions pass and rendered by
//! the control plane's `GET /metrics`. Every label takes its value from a small fixed set
//! (effects, action kinds, detectors, severities, levels, answers, channels), never from an
//! agent, a session or a target, so the number of series stays bounded whatever agents do.
//!
//! Recording is cheap on the hot path: the series of a decision and of a gateway request are
//! resolved once, so recording one is an index into an array, an atomic add and a short lock
//! of the histogram; nothing is allocated.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use warden_core::{ActionKind, Effect};

/// The content type of [`render`]'s text, for the `Content-Type` header of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds: 50 µs to 5 s, about ×2.5 apart, so both
/// a decision (tens of microseconds to a few milliseconds with an fsync) and a forwarded
/// request (up to seconds upstream) land in a bucket that tells something.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// The most distinct values a free-text label (detector, severity, level, answer) takes;
/// further values are counted under `other`.
const MAX_FREE_VALUES: usize = 64;
/// The longest free-text label value kept; longer ones are counted under `other`.
const MAX_VALUE_LEN: usize = 64;
/// The value standing for everything over the bounds.
const OTHER: &str = "other";

/// The effects, in the order of the cache's rows.
const EFFECTS: [Effect; 3] = [Effect::Allow, Effect::Deny, Effect::Ask];
/// The gateway channels timed, in the order of the cache.
const CHANNELS: [&str; 2] = ["mcp_http", "egress"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    effect: &'static str,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    detector: &'static str,
    severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabels {
    level: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    answer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric of the process, and the registry that renders them.
struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    /// `decisions` resolved for every effect (row) and action kind (column).
    decision_counters: [[Counter; ActionKind::ALL.len()]; EFFECTS.len()],
    decision_seconds: Histogram,
    journal_commit_seconds: Histogram,
    alerts: Family<AlertLabels, Counter>,
    quarantines: Family<LevelLabels, Counter>,
    approvals: Family<AnswerLabels, Counter>,
    gateway_seconds: Family<ChannelLabels, Histogram, fn() -> Histogram>,
    /// `gateway_seconds` resolved for each of [`CHANNELS`].
    channel_histograms: [Histogram; CHANNELS.len()],
    /// The free-text label values seen so far, kept for the life of the process.
    free_values: Mutex<Vec<&'static str>>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "warden_decisions",
            "Actions decided, by effect and action kind",
            decisions.clone(),
        );
        let decision_counters = EFFECTS.map(|effect| {
            ActionKind::ALL.map(|action| {
                decisions.get_or_create_owned(&DecisionLabels {
                    effect: effect.as_str(),
                    action: action.as_str(),
                })
            })
        });
        let decision_seconds = latency_histogram();
        registry.register_with_unit(
            "warden_decision",
            "Time to decide an action and make its decision record durable",
            Unit::Seconds,
            decision_seconds.clone(),
        );
        let journal_commit_seconds = latency_histogram();
        registry.register_with_unit(
            "warden_journal_commit",
            "Time from appending a journal record to its being durable (journal lag)",
            Unit::Seconds,
            journal_commit_seconds.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "warden_alerts",
            "Alerts raised by the detectors, by detector and severity",
            alerts.clone(),
        );
        let quarantines = Family::<LevelLabels, Counter>::default();
        registry.register(
            "warden_quarantines",
            "Agents quarantined or held, by level",
            quarantines.clone(),
        );
        let approvals = Family::<AnswerLabels, Counter>::default();
        registry.register(
            "warden_approvals",
            "Human answers to actions decided ask, by answer",
            approvals.clone(),
        );
        let gateway_seconds =
            Family::<ChannelLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register_with_unit(
            "warden_gateway_request",
            "Time Warden spends handling one request of a gateway, until its answer starts",
            Unit::Seconds,
            gateway_seconds.clone(),
        );
        let channel_histograms =
            CHANNELS.map(|channel| gateway_seconds.get_or_create_owned(&ChannelLabels { channel }));
        Self {
            registry,
            decisions,
            decision_counters,
            decision_seconds,
            journal_commit_seconds,
            alerts,
            quarantines,
            approvals,
            gateway_seconds,
            channel_histograms,
            free_values: Mutex::new(Vec::new()),
        }
    }

    /// `value` as a label value: itself while the set of values stays small and each is a
    /// short identifier, `other` beyond that. Each distinct value is stored once, for the
    /// life of the process, so later calls with it allocate nothing.
    fn free_value(&self, value: &str) -> &'static str {
        let fits = !value.is_empty()
            && value.len() <= MAX_VALUE_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'));
        if !fits {
            return OTHER;
        }
        // A poisoned lock only means another thread panicked mid-push; the list is still valid.
        let mut seen = self
            .free_values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = seen.iter().find(|known| **known == value) {
            return known;
        }
        if seen.len() >= MAX_FREE_VALUES {
            return OTHER;
        }
        // Leaked on purpose: at most MAX_FREE_VALUES short strings, for the process's life.
        let kept: &'static str = Box::leak(value.to_owned().into_boxed_str());
        seen.push(kept);
        kept
    }
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn seconds(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64()
}

/// Counts one decided action (`warden_decisions_total{effect,action}`) and records the time
/// it took to decide it and make its record durable (`warden_decision_seconds`).
pub fn decision(effect: Effect, action: ActionKind, elapsed: Duration) {
    let m = metrics();
    let row = EFFECTS.iter().position(|e| *e == effect);
    let column = ActionKind::ALL.iter().position(|a| *a == action);
    match (row, column) {
        (Some(row), Some(column)) => {
            m.decision_counters[row][column].inc();
        }
        // A kind added to the core after this table: counted through the family.
        _ => {
            m.decisions
                .get_or_create(&DecisionLabels {
                    effect: effect.as_str(),
                    action: action.as_str(),
                })
                .inc();
        }
    }
    m.decision_seconds.observe(seconds(elapsed));
}

/// Records the time from appending a journal record to its being durable
/// (`warden_journal_commit_seconds`).
pub fn journal_commit(elapsed: Duration) {
    metrics().journal_commit_seconds.observe(seconds(elapsed));
}

/// Counts an alert (`warden_alerts_total{detector,severity}`).
pub fn alert(detector: &str, severity: &str) {
    let m = metrics();
    let labels = AlertLabels {
        detector: m.free_value(detector),
        severity: m.free_value(severity),
    };
    m.alerts.get_or_create(&labels).inc();
}

/// Counts a quarantine, or a lesser hold, of an agent (`warden_quarantines_total{level}`).
pub fn quarantine(level: &str) {
    let m = metrics();
    let labels = LevelLabels {
        level: m.free_value(level),
    };
    m.quarantines.get_or_create(&labels).inc();
}

/// Counts a human's answer to an action decided `ask` (`warden_approvals_total{answer}`).
pub fn approval(answer: &str) {
    let m = metrics();
    let labels = AnswerLabels {
        answer: m.free_value(answer),
    };
    m.approvals.get_or_create(&labels).inc();
}

/// Records the time Warden spent handling one request of a gateway, from its arrival until
/// its answer starts (`warden_gateway_request_seconds{channel}`). `channel` is `mcp_http` or
/// `egress`.
pub fn gateway_request(channel: &'static str, elapsed: Duration) {
    let m = metrics();
    match CHANNELS.iter().position(|c| *c == channel) {
        Some(i) => m.channel_histograms[i].observe(seconds(elapsed)),
        None => m
            .gateway_seconds
            .get_or_create(&ChannelLabels { channel })
            .observe(seconds(elapsed)),
    }
}

/// The text exposition of every metric (OpenMetrics; serve it with [`CONTENT_TYPE`]).
pub fn render() -> String {
    let mut text = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail; an encoder error would leave a partial text, which
    // is still the best answer there is.
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &metrics().registry) {
        tracing::error!(%err, "rendering the metrics failed");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line starting with `series ` (name and labels), if any.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn a_decision_is_counted_and_timed() {
        let series = r#"warden_decisions_total{effect="deny",action="http_request"}"#;
        let before = sample(&render(), series).unwrap_or(0.0);
        let count_before = sample(&render(), "warden_decision_seconds_count").unwrap_or(0.0);
        decision(
            Effect::Deny,
            ActionKind::HttpRequest,
            Duration::from_micros(120),
        );
        let text = render();
        assert_eq!(sample(&text, series), Some(before + 1.0), "{text}");
        assert!(sample(&text, "warden_decision_seconds_count").unwrap() >= count_before + 1.0);
        assert!(
            text.contains(r#"warden_decision_seconds_bucket{le="0.00025"}"#),
            "{text}"
        );
        assert!(text.contains("# TYPE warden_decision_seconds histogram"));
        assert!(text.contains("# UNIT warden_decision_seconds seconds"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn every_decision_series_exists_from_the_start() {
        let text = render();
        for effect in EFFECTS {
            for action in ActionKind::ALL {
                let series = format!(
                    r#"warden_decisions_total{{effect="{}",action="{}"}}"#,
                    effect.as_str(),
                    action.as_str()
                );
                assert!(sample(&text, &series).is_some(), "{series} missing");
            }
        }
    }

    #[test]
    fn alerts_quarantines_and_approvals_are_counted_by_label() {
        alert("denial_burst", "high");
        alert("denial_burst", "high");
        quarantine("throttle");
        approval("approve_session");
        journal_commit(Duration::from_millis(3));
        let text = render();
        assert!(
            sample(
                &text,
                r#"warden_alerts_total{detector="denial_burst",severity="high"}"#
            )
            .unwrap()
                >= 2.0,
            "{text}"
        );
        assert!(sample(&text, r#"warden_quarantines_total{level="throttle"}"#).unwrap() >= 1.0);
        assert!(
            sample(&text, r#"warden_approvals_total{answer="approve_session"}"#).unwrap() >= 1.0
        );
        assert!(sample(&text, "warden_journal_commit_seconds_count").unwrap() >= 1.0);
        assert!(
            sample(&text, r#"warden_journal_commit_seconds_bucket{le="0.005"}"#).unwrap() >= 1.0
        );
    }

    #[test]
    fn gateway_requests_are_timed_by_channel() {
        gateway_request("mcp_http", Duration::from_millis(2));
        gateway_request("egress", Duration::from_secs(7));
        let text = render();
        assert!(
            sample(
                &text,
                r#"warden_gateway_request_seconds_count{channel="mcp_http"}"#
            )
            .unwrap()
                >= 1.0,
            "{text}"
        );
        // Seven seconds is past the last bucket: only +Inf holds it.
        let inf = sample(
            &text,
            r#"warden_gateway_request_seconds_bucket{le="+Inf",channel="egress"}"#,
        )
        .unwrap();
        let five = sample(
            &text,
            r#"warden_gateway_request_seconds_bucket{le="5.0",channel="egress"}"#,
        )
        .unwrap();
        assert!(inf >= five + 1.0, "{text}");
    }

    #[test]
    fn free_text_labels_stay_bounded() {
        // A registry of its own: the flood must not crowd out the other tests' values.
        let m = Metrics::new();
        assert_eq!(m.free_value("has space"), OTHER);
        assert_eq!(m.free_value(""), OTHER);
        assert_eq!(m.free_value(&"x".repeat(MAX_VALUE_LEN + 1)), OTHER);
        assert_eq!(m.free_value("scope_drift"), "scope_drift");
        // A flood of distinct values ends in `other`; known values keep their own series.
        for i in 0..(2 * MAX_FREE_VALUES) {
            let _ = m.free_value(&format!("flood{i}"));
        }
        assert_eq!(m.free_value("one-more-new-value"), OTHER);
        assert_eq!(m.free_value("scope_drift"), "scope_drift");
        assert_eq!(m.free_values.lock().unwrap().len(), MAX_FREE_VALUES);
    }
}
