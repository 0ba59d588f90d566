//! Latency histograms and error tallies. Each worker records into its own, and the run merges
//! them at the end, so recording never takes a lock.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::error::LoadError;

/// Values are nanoseconds; 1 µs is the finest step that matters, a minute the longest wait.
const LOWEST_NS: u64 = 1_000;
const HIGHEST_NS: u64 = 60_000_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram (HdrHistogram, 3 significant digits, 1 µs to 60 s).
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
            // INVARIANT: the bounds above are constants that satisfy hdrhistogram's rules
            // (low >= 1, high >= 2 * low, 0..=5 digits).
            .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"));
        Self { histogram }
    }

    /// Records one latency; anything over 60 s is recorded as 60 s.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(ns);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        // Both histograms have the same bounds, so adding cannot fail; saturate if it did.
        if self.histogram.add(&other.histogram).is_err() {
            for value in other.histogram.iter_recorded() {
                self.histogram
                    .saturating_record_n(value.value_iterated_to(), value.count_at_value());
            }
        }
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The percentiles reports show.
    pub fn summary(&self) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1_000.0;
        if self.histogram.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.histogram.len(),
            mean_us: self.histogram.mean() / 1_000.0,
            p50_us: us(self.histogram.value_at_quantile(0.50)),
            p90_us: us(self.histogram.value_at_quantile(0.90)),
            p99_us: us(self.histogram.value_at_quantile(0.99)),
            p999_us: us(self.histogram.value_at_quantile(0.999)),
            max_us: us(self.histogram.max()),
        }
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// How many latencies.
    pub count: u64,
    /// The mean.
    pub mean_us: f64,
    /// The median.
    pub p50_us: f64,
    /// The 90th percentile.
    pub p90_us: f64,
    /// The 99th percentile.
    pub p99_us: f64,
    /// The 99.9th percentile.
    pub p999_us: f64,
    /// The largest.
    pub max_us: f64,
}

impl LatencySummary {
    /// One line for people: `p50 0.12 ms  p90 …`.
    pub fn human(&self) -> String {
        if self.count == 0 {
            return "no successful calls".to_owned();
        }
        let ms = |us: f64| us / 1_000.0;
        format!(
            "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (mean {:.3} ms, n={})",
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
            ms(self.mean_us),
            self.count
        )
    }
}

/// Successes and failures by kind, with the first failure's message as an example.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Calls that succeeded.
    pub ok: u64,
    /// Failed calls by [`LoadError::kind`].
    pub errors: BTreeMap<&'static str, u64>,
    /// The first failure seen, for diagnosis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Tally {
    /// Counts one failure.
    pub fn error(&mut self, error: &LoadError) {
        *self.errors.entry(error.kind()).or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }

    /// Counts `n` failures of one kind that have no error value of their own (calls that
    /// were never sent, say), with `why` as the example if none was seen yet.
    pub fn errors_of_kind(&mut self, kind: &'static str, n: u64, why: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        *self.errors.entry(kind).or_default() += n;
        if self.first_error.is_none() {
            self.first_error = Some(why());
        }
    }

    /// All failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds `other`'s counts; keeps this tally's first error if it has one.
    pub fn merge(&mut self, other: &Tally) {
        self.ok += other.ok;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// `N errors (kind: n, …)` or `no errors`, for people.
    pub fn human_errors(&self) -> String {
        if self.errors.is_empty() {
            return "no errors".to_owned();
        }
        let kinds: Vec<String> = self
            .errors
            .iter()
            .map(|(kind, n)| format!("{kind}: {n}"))
            .collect();
        let mut text = format!("{} errors ({})", self.error_count(), kinds.join(", "));
        if let Some(first) = &self.first_error {
            text.push_str(&format!("; first: {first}"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Within hdrhistogram's 3 significant digits (0.1%), plus one 1 µs step.
    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 0.001 + 1.0
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut l = Latencies::new();
        for n in 1..=10_000 {
            l.record(micros(n));
        }
        let s = l.summary();
        assert_eq!(s.count, 10_000);
        assert!(close(s.p50_us, 5_000.0), "{s:?}");
        assert!(close(s.p90_us, 9_000.0), "{s:?}");
        assert!(close(s.p99_us, 9_900.0), "{s:?}");
        assert!(close(s.p999_us, 9_990.0), "{s:?}");
        assert!(close(s.max_us, 10_000.0), "{s:?}");
        assert!(close(s.mean_us, 5_000.5), "{s:?}");
    }

    #[test]
    fn merging_per_worker_histograms_equals_recording_in_one() {
        let mut whole = Latencies::new();
        let mut parts = vec![Latencies::new(), Latencies::new(), Latencies::new()];
        // Different workers see different shapes: fast, slow, and a rare outlier.
        for n in 0..3_000u64 {
            let latency = match n % 3 {
                0 => micros(100 + n % 17),
                1 => micros(2_000 + n),
                _ if n % 300 == 2 => micros(250_000),
                _ => micros(500),
            };
            whole.record(latency);
            parts[(n % 3) as usize].record(latency);
        }
        let mut merged = Latencies::new();
        for p in &parts {
            merged.merge(p);
        }
        assert_eq!(merged.summary(), whole.summary());
        assert!(merged.summary().max_us >= 250_000.0);
    }

    #[test]
    fn the_tail_is_seen_and_extremes_saturate() {
        let mut l = Latencies::new();
        for _ in 0..998 {
            l.record(micros(100));
        }
        l.record(micros(50_000));
        l.record(Duration::from_secs(3_600));
        let s = l.summary();
        assert!(close(s.p50_us, 100.0), "{s:?}");
        assert!(close(s.p999_us, 50_000.0), "{s:?}");
        assert!(close(s.max_us, 60_000_000.0), "{s:?}");
        assert_eq!(Latencies::new().summary().count, 0);
    }

    #[test]
    fn tallies_merge_counts_and_keep_the_first_error() {
        let mut a = Tally {
            ok: 3,
            ..Tally::default()
        };
        a.error(&LoadError::Timeout(Duration::from_secs(1)));
        let mut b = Tally {
            ok: 2,
            ..Tally::default()
        };
        b.error(&LoadError::Tool("refused".into()));
        b.error(&LoadError::Timeout(Duration::from_secs(1)));
        a.merge(&b);
        assert_eq!(a.ok, 5);
        assert_eq!(a.errors["timeout"], 2);
        assert_eq!(a.errors["tool_error"], 1);
        assert_eq!(a.error_count(), 3);
        assert!(a.first_error.as_deref().unwrap().contains("no answer"));
        assert!(a.human_errors().starts_with("3 errors"));
        a.errors_of_kind("not_sent", 0, || unreachable!("nothing to count"));
        assert_eq!(a.error_count(), 3);
        let mut c = Tally::default();
        c.errors_of_kind("not_sent", 7, || "seven left".into());
        assert_eq!(c.errors["not_sent"], 7);
        assert_eq!(c.first_error.as_deref(), Some("seven left"));
    }
}
