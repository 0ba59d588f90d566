//! `saturate`: closed-loop load. A fixed number of workers each send a call, wait for its
//! answer and send the next, for a fixed time: the throughput the target sustains at that
//! concurrency, and the latency it gives while doing so.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::LoadError;
use crate::rate::per_second;
use crate::stats::{LatencySummary, Tally};
use crate::target::{CallSpec, Connection, Lane, Merged, close_lanes, open_lanes, warm_up};

/// How a `saturate` run is shaped.
#[derive(Debug, Clone)]
pub struct SaturateOptions {
    /// Workers, each with its own session and one call in flight.
    pub concurrency: usize,
    /// How long workers keep starting calls.
    pub duration: Duration,
    /// How long one call may take before it counts as failed.
    pub timeout: Duration,
}

/// What a `saturate` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SaturateReport {
    /// Workers.
    pub concurrency: usize,
    /// The time workers kept starting calls, seconds.
    pub duration_s: f64,
    /// Successes and failures.
    #[serde(flatten)]
    pub tally: Tally,
    /// Successful calls per second, from the start to the last answer.
    pub calls_per_s: f64,
    /// Latency of each call.
    pub latency: LatencySummary,
    /// Sessions that could not be ended afterwards.
    pub close_failures: usize,
}

impl SaturateReport {
    /// A few lines for people.
    pub fn human(&self) -> String {
        format!(
            "  {} workers for {:.1} s\n  ok {}, {}\n  throughput {:.1} calls/s\n  latency: {}",
            self.concurrency,
            self.duration_s,
            self.tally.ok,
            self.tally.human_errors(),
            self.calls_per_s,
            self.latency.human(),
        )
    }
}

/// Runs `spec` in a closed loop against `connection`.
pub async fn run(
    connection: &Connection,
    spec: &CallSpec,
    options: &SaturateOptions,
) -> Result<SaturateReport, LoadError> {
    let concurrency = options.concurrency.max(1);
    let lanes = open_lanes(connection, concurrency, options.timeout).await?;
    let lanes = warm_up(lanes, spec, options.timeout).await?;
    let start = Instant::now();
    let deadline = start + options.duration;
    let mut workers = tokio::task::JoinSet::new();
    for mut lane in lanes {
        let spec = spec.clone();
        let timeout = options.timeout;
        workers.spawn(async move {
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return lane;
                }
                lane.call(&spec, timeout, now).await;
            }
        });
    }
    let mut lanes: Vec<Lane> = Vec::with_capacity(concurrency);
    while let Some(joined) = workers.join_next().await {
        lanes.push(joined.map_err(|e| LoadError::Usage(format!("a worker failed: {e}")))?);
    }
    let merged = Merged::of(&lanes);
    let elapsed = merged
        .last_done
        .map_or(options.duration, |t| t.saturating_duration_since(start));
    Ok(SaturateReport {
        concurrency,
        duration_s: options.duration.as_secs_f64(),
        calls_per_s: per_second(merged.tally.ok, elapsed),
        latency: merged.service.summary(),
        tally: merged.tally,
        close_failures: close_lanes(lanes, options.timeout).await,
    })
}
