//! `rate`: open-loop load at a constant rate. Calls fall due on a fixed schedule whether or not
//! earlier ones were answered, and each call's latency is measured from the time it fell due,
//! so a stalled target shows up as latency instead of as fewer samples (no coordinated
//! omission).

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::LoadError;
use crate::stats::{LatencySummary, Tally};
use crate::target::{CallSpec, Connection, Merged, close_lanes, open_lanes, warm_up};

/// How a `rate` run is shaped.
#[derive(Debug, Clone)]
pub struct RateOptions {
    /// Calls per second.
    pub rate: f64,
    /// How long calls keep falling due.
    pub duration: Duration,
    /// Sessions (each on its own keep-alive connection when busy) the calls are spread over.
    pub lanes: usize,
    /// How long one call may take before it counts as failed; also how long a backlog may
    /// drain after the schedule ends.
    pub timeout: Duration,
}

/// When each call of a run falls due, relative to the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    interval_ns: f64,
    /// How many calls fall due.
    pub calls: u64,
}

impl Schedule {
    /// `rate` calls per second for `duration`; `None` if that is no call at all.
    pub fn new(rate: f64, duration: Duration) -> Option<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            return None;
        }
        // Rounded, so 1000/s for 10 s is exactly 10,000 calls despite float error.
        let calls = (rate * duration.as_secs_f64()).round();
        if calls < 1.0 {
            return None;
        }
        Some(Self {
            interval_ns: 1e9 / rate,
            calls: calls as u64,
        })
    }

    /// When call `i` (from 0) falls due, after the start. Computed from `i` rather than
    /// accumulated, so rounding never drifts.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_nanos((i as f64 * self.interval_ns).round() as u64)
    }
}

/// What a `rate` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RateReport {
    /// The rate asked for, calls per second.
    pub target_rate: f64,
    /// The scheduled duration, seconds.
    pub duration_s: f64,
    /// Sessions used.
    pub lanes: usize,
    /// Calls that fell due.
    pub scheduled: u64,
    /// Successes and failures.
    #[serde(flatten)]
    pub tally: Tally,
    /// Successful calls per second, from the start to the last answer.
    pub achieved_rate: f64,
    /// Latency from the time each call fell due (what a user of the target experiences).
    pub latency: LatencySummary,
    /// Latency from the time each call was actually sent (the target's service time).
    pub service: LatencySummary,
    /// How late each call was sent after it fell due (every call, failed ones too): a free
    /// session's wait when the target falls behind, otherwise the generator's own delay.
    pub send_lag: LatencySummary,
    /// Sessions that could not be ended afterwards.
    pub close_failures: usize,
}

impl RateReport {
    /// A few lines for people.
    pub fn human(&self) -> String {
        format!(
            "  scheduled {} calls at {}/s over {:.1} s on {} sessions\n  ok {}, {}\n  achieved {:.1} calls/s\n  latency from scheduled send: {}\n  service time from actual send: {}\n  send lag: {}",
            self.scheduled,
            self.target_rate,
            self.duration_s,
            self.lanes,
            self.tally.ok,
            self.tally.human_errors(),
            self.achieved_rate,
            self.latency.human(),
            self.service.human(),
            self.send_lag.human(),
        )
    }
}

/// Runs `spec` at the options' rate against `connection`.
pub async fn run(
    connection: &Connection,
    spec: &CallSpec,
    options: &RateOptions,
) -> Result<RateReport, LoadError> {
    let schedule = Schedule::new(options.rate, options.duration)
        .ok_or_else(|| LoadError::Usage("--rate × --duration must be at least one call".into()))?;
    let lane_count = options.lanes.max(1);
    let lanes = open_lanes(connection, lane_count, options.timeout).await?;
    let lanes = warm_up(lanes, spec, options.timeout).await?;

    let (idle_tx, mut idle_rx) = mpsc::channel(lane_count);
    for lane in lanes {
        // INVARIANT: the channel holds exactly as many lanes as exist, so this never blocks.
        let _ = idle_tx.send(lane).await;
    }
    let start = Instant::now();
    let (ticks, mut due_times) = mpsc::unbounded_channel();
    // An OS thread keeps the schedule: its sleeps are precise to tens of microseconds, where
    // the async timer's are whole milliseconds, which would add up to 1 ms to every latency.
    let ticker = std::thread::spawn(move || {
        precise_sleeps();
        for i in 0..schedule.calls {
            let due = start + schedule.due(i);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if ticks.send(due).is_err() {
                return;
            }
        }
    });
    // A target slower than the rate builds a backlog; it may drain for one timeout after the
    // schedule ends, and what is still unsent then is counted as failed, so the run is bounded.
    let give_up = tokio::time::Instant::from_std(start + options.duration + options.timeout);
    let mut dispatched = 0u64;
    while let Some(due) = due_times.recv().await {
        // When every lane is busy the call waits here; its latency still counts from `due`.
        let Ok(Some(mut lane)) = tokio::time::timeout_at(give_up, idle_rx.recv()).await else {
            break;
        };
        dispatched += 1;
        let idle_tx = idle_tx.clone();
        let spec = spec.clone();
        let timeout = options.timeout;
        tokio::spawn(async move {
            lane.call(&spec, timeout, due).await;
            let _ = idle_tx.send(lane).await;
        });
    }
    // Stops the schedule thread if it is still going.
    drop(due_times);
    drop(idle_tx);
    let mut lanes = Vec::with_capacity(lane_count);
    while lanes.len() < lane_count {
        match idle_rx.recv().await {
            Some(lane) => lanes.push(lane),
            None => break, // a call task panicked and took its lane with it
        }
    }
    if ticker.join().is_err() {
        return Err(LoadError::Usage("the schedule thread panicked".into()));
    }

    let mut merged = Merged::of(&lanes);
    let unsent = schedule.calls - dispatched;
    merged.tally.errors_of_kind("not_sent", unsent, || {
        format!("{unsent} calls were still waiting for a free session when the run gave up")
    });
    let elapsed = merged
        .last_done
        .map_or(options.duration, |t| t.saturating_duration_since(start));
    let report = RateReport {
        target_rate: options.rate,
        duration_s: options.duration.as_secs_f64(),
        lanes: lane_count,
        scheduled: schedule.calls,
        achieved_rate: per_second(merged.tally.ok, elapsed),
        latency: merged.latency.summary(),
        service: merged.service.summary(),
        send_lag: merged.send_lag.summary(),
        tally: merged.tally,
        close_failures: close_lanes(lanes, options.timeout).await,
    };
    Ok(report)
}

/// Asks Linux to wake this thread's sleeps on time: the default timer slack lets it wake up
/// to 50 µs late, which would be counted as latency.
fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    {
        // Best effort: without it the measurements are only a little coarser.
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    }
}

pub(crate) fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spreads_calls_evenly_without_drift() {
        let s = Schedule::new(1000.0, Duration::from_secs(10)).unwrap();
        assert_eq!(s.calls, 10_000);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(1));
        assert_eq!(s.due(9_999), Duration::from_micros(9_999_000));
        let third = Schedule::new(3.0, Duration::from_secs(2)).unwrap();
        assert_eq!(third.calls, 6);
        assert_eq!(third.due(3), Duration::from_secs(1));
        assert_eq!(third.due(1), Duration::from_nanos(333_333_333));
    }

    #[test]
    fn schedules_with_no_calls_are_refused() {
        assert_eq!(Schedule::new(0.0, Duration::from_secs(10)), None);
        assert_eq!(Schedule::new(-5.0, Duration::from_secs(10)), None);
        assert_eq!(Schedule::new(f64::NAN, Duration::from_secs(10)), None);
        assert_eq!(Schedule::new(1.0, Duration::from_millis(100)), None);
        assert!(Schedule::new(10.0, Duration::from_millis(100)).is_some());
    }

    #[test]
    fn rates_per_second() {
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
    }
}
