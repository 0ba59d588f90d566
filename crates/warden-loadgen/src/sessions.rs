//! `sessions`: the memory an idle session costs the target. Opens many sessions (initialize
//! only, a bounded number at a time over the shared keep-alive pool, since Streamable HTTP
//! sessions are not tied to connections), leaves them idle, reads the target's resident memory
//! before and after, then ends them with `DELETE`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::LoadError;
use crate::rate::per_second;
use crate::stats::{Latencies, LatencySummary, Tally};
use crate::target::{Connection, Session};

/// How a `sessions` run is shaped.
#[derive(Debug, Clone)]
pub struct SessionsOptions {
    /// Sessions to open.
    pub sessions: usize,
    /// Initialize (and later DELETE) requests in flight at once.
    pub concurrency: usize,
    /// The target's process id, whose resident memory is read; none means no memory figures.
    pub pid: Option<u32>,
    /// How long the sessions sit idle before memory is read (and again after closing).
    pub idle: Duration,
    /// How long one request may take.
    pub timeout: Duration,
}

/// What a `sessions` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SessionsReport {
    /// Sessions asked for.
    pub requested: usize,
    /// Sessions opened, and failures to open.
    #[serde(flatten)]
    pub opened: Tally,
    /// Time to open them all, seconds.
    pub open_s: f64,
    /// Sessions opened per second.
    pub opens_per_s: f64,
    /// Latency of each initialize (with its `notifications/initialized`).
    pub initialize: LatencySummary,
    /// The target's resident memory before, KiB.
    pub rss_before_kib: Option<u64>,
    /// … with the sessions open and idle.
    pub rss_open_kib: Option<u64>,
    /// … after they were ended.
    pub rss_closed_kib: Option<u64>,
    /// (open − before) / opened.
    pub bytes_per_session: Option<f64>,
    /// Sessions ended with DELETE.
    pub closed: u64,
    /// Sessions whose DELETE failed.
    pub close_failures: u64,
}

impl SessionsReport {
    /// A few lines for people.
    pub fn human(&self) -> String {
        let mut text = format!(
            "  opened {} of {} sessions in {:.2} s ({:.0}/s), {}\n  initialize: {}\n  closed {}, {} DELETE failures",
            self.opened.ok,
            self.requested,
            self.open_s,
            self.opens_per_s,
            self.opened.human_errors(),
            self.initialize.human(),
            self.closed,
            self.close_failures,
        );
        if let (Some(before), Some(open), Some(closed)) =
            (self.rss_before_kib, self.rss_open_kib, self.rss_closed_kib)
        {
            text.push_str(&format!(
                "\n  target RSS: {:.1} MiB before, {:.1} MiB with the sessions idle, {:.1} MiB after closing",
                before as f64 / 1024.0,
                open as f64 / 1024.0,
                closed as f64 / 1024.0,
            ));
        }
        if let Some(per) = self.bytes_per_session {
            text.push_str(&format!(
                "\n  memory per idle session: {:.1} KiB",
                per / 1024.0
            ));
        }
        text
    }
}

/// Opens, holds and ends the sessions.
pub async fn run(
    connection: &Connection,
    options: &SessionsOptions,
) -> Result<SessionsReport, LoadError> {
    if !matches!(connection, Connection::Http(_)) {
        return Err(LoadError::Usage(
            "sessions needs an HTTP target (--url): a stdio server has one session per process"
                .into(),
        ));
    }
    let rss = |pid: Option<u32>| pid.map(crate::rss::rss_kib).transpose();
    let workers = options.concurrency.clamp(1, options.sessions.max(1));
    let rss_before = rss(options.pid)?;

    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let connection = connection.clone();
        let next = next.clone();
        let (total, timeout) = (options.sessions, options.timeout);
        tasks.spawn(async move {
            let mut opened = Vec::new();
            let mut latency = Latencies::new();
            let mut tally = Tally::default();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let sent = Instant::now();
                match connection.session(timeout).await {
                    Ok(session) if session.is_named() => {
                        latency.record(sent.elapsed());
                        tally.ok += 1;
                        opened.push(session);
                    }
                    Ok(_) => tally.error(&LoadError::NoSession),
                    Err(e) => tally.error(&e),
                }
            }
            (opened, latency, tally)
        });
    }
    let mut sessions: Vec<Session> = Vec::with_capacity(options.sessions);
    let mut latency = Latencies::new();
    let mut tally = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        let (opened, l, t) =
            joined.map_err(|e| LoadError::Usage(format!("a worker failed: {e}")))?;
        sessions.extend(opened);
        latency.merge(&l);
        tally.merge(&t);
    }
    let open_time = start.elapsed();

    tokio::time::sleep(options.idle).await;
    let rss_open = rss(options.pid)?;
    let (closed, close_failures) = close_all(sessions, workers, options.timeout).await;
    tokio::time::sleep(options.idle).await;
    let rss_closed = rss(options.pid)?;

    let bytes_per_session = match (rss_before, rss_open) {
        (Some(before), Some(open)) if tally.ok > 0 => {
            Some((open as f64 - before as f64) * 1024.0 / tally.ok as f64)
        }
        _ => None,
    };
    Ok(SessionsReport {
        requested: options.sessions,
        open_s: open_time.as_secs_f64(),
        opens_per_s: per_second(tally.ok, open_time),
        initialize: latency.summary(),
        opened: tally,
        rss_before_kib: rss_before,
        rss_open_kib: rss_open,
        rss_closed_kib: rss_closed,
        bytes_per_session,
        closed,
        close_failures,
    })
}

/// Ends every session, `workers` DELETEs at a time; returns (ended, failed).
async fn close_all(sessions: Vec<Session>, workers: usize, timeout: Duration) -> (u64, u64) {
    let queue = Arc::new(Mutex::new(sessions));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let queue = queue.clone();
        tasks.spawn(async move {
            let (mut closed, mut failed) = (0u64, 0u64);
            loop {
                let next = queue.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let Some(session) = next else {
                    return (closed, failed);
                };
                match session.close(timeout).await {
                    Ok(()) => closed += 1,
                    Err(_) => failed += 1,
                }
            }
        });
    }
    let (mut closed, mut failed) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        if let Ok((c, f)) = joined {
            closed += c;
            failed += f;
        }
    }
    (closed, failed)
}
