//! `flood`: a closed-loop flood of GET requests on plain HTTP routes — a control plane's API,
//! say — from a fixed number of workers for a fixed time. It reports how the routes answered
//! (by status, and whether each 503 said when to retry); run next to `rate`, it shows what
//! such a flood does to another service's latency.
//!
//! Workers take the paths in turn, read each answer to its end, and never retry: a refused
//! request counts as answered, with its status. Each request is bounded by the timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::cli::{CommonArgs, parse_duration};
use crate::error::LoadError;
use crate::rate::per_second;
use crate::stats::{Latencies, LatencySummary, Tally};

/// `flood`.
#[derive(Debug, Args)]
pub struct FloodArgs {
    /// The service's base URL, e.g. http://127.0.0.1:7412 (plain HTTP).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// A bearer token for every request (the environment variable keeps it out of `ps`).
    #[arg(long, env = "WARDEN_LOADGEN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A path to GET, e.g. /api/v1/journal/verify; repeat it for several, taken in turn.
    #[arg(long = "path", value_name = "PATH", required = true)]
    pub paths: Vec<String>,
    /// Workers, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long workers keep starting requests.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// How a `flood` run is shaped.
#[derive(Debug, Clone)]
pub struct FloodOptions {
    /// The URLs requested, in turn.
    pub uris: Vec<Uri>,
    /// The `Authorization` header, if any.
    pub authorization: Option<HeaderValue>,
    /// Workers, each with one request in flight.
    pub concurrency: usize,
    /// How long workers keep starting requests.
    pub duration: Duration,
    /// How long one request may take before it counts as failed.
    pub timeout: Duration,
}

impl FloodArgs {
    /// The run these arguments describe.
    pub fn options(&self) -> Result<FloodOptions, LoadError> {
        let bad = |why: &str| LoadError::BadUrl {
            url: self.url.clone(),
            why: why.to_owned(),
        };
        if !self.url.starts_with("http://") {
            return Err(bad("expected http://HOST:PORT (plain HTTP)"));
        }
        let base = self.url.trim_end_matches('/');
        let uris = self
            .paths
            .iter()
            .map(|path| {
                if !path.starts_with('/') {
                    return Err(LoadError::Usage(format!(
                        "--path {path:?} must start with /"
                    )));
                }
                format!("{base}{path}")
                    .parse::<Uri>()
                    .map_err(|e| bad(&format!("with {path}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let authorization = self
            .token
            .as_deref()
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
            .transpose()
            .map_err(|_| LoadError::Usage("the token has characters a header cannot carry".into()))?
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Ok(FloodOptions {
            uris,
            authorization,
            concurrency: self.concurrency.max(1),
            duration: self.duration,
            timeout: self.common.timeout,
        })
    }
}

/// What a `flood` run saw.
#[derive(Debug, Clone, Serialize)]
pub struct FloodReport {
    /// Workers.
    pub concurrency: usize,
    /// The time workers kept starting requests, seconds.
    pub duration_s: f64,
    /// Requests answered with a status (any status).
    pub answered: u64,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// 503 answers without a `Retry-After` header.
    pub unavailable_without_retry_after: u64,
    /// Answered requests per second, from the start to the last answer.
    pub answers_per_s: f64,
    /// Time to each whole answer (every status).
    pub latency: LatencySummary,
    /// Requests that got no answer, by kind (transport failures, timeouts).
    pub unanswered: BTreeMap<&'static str, u64>,
    /// The first of them, for diagnosis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl FloodReport {
    /// A few lines for people.
    pub fn human(&self) -> String {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        format!(
            "  {} workers for {:.1} s\n  answered {} ({}); 503 without Retry-After: {}\n  unanswered: {}\n  {:.1} answers/s\n  latency: {}",
            self.concurrency,
            self.duration_s,
            self.answered,
            statuses.join(", "),
            self.unavailable_without_retry_after,
            Tally {
                ok: 0,
                errors: self.unanswered.clone(),
                first_error: self.first_error.clone(),
            }
            .human_errors(),
            self.answers_per_s,
            self.latency.human(),
        )
    }
}

/// One worker's record, merged at the end.
#[derive(Default)]
struct Worker {
    statuses: BTreeMap<u16, u64>,
    without_retry_after: u64,
    latency: Latencies,
    failed: Tally,
    last_done: Option<Instant>,
}

/// Floods the options' URLs.
pub async fn run(options: &FloodOptions) -> Result<FloodReport, LoadError> {
    if options.uris.is_empty() {
        return Err(LoadError::Usage("give at least one --path".into()));
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let start = Instant::now();
    let deadline = start + options.duration;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..options.concurrency {
        let (client, options) = (client.clone(), options.clone());
        workers.spawn(async move {
            let mut worker = Worker::default();
            let mut turn = w;
            // At least one request each, however late the worker starts.
            loop {
                let uri = &options.uris[turn % options.uris.len()];
                turn += 1;
                let sent = Instant::now();
                match tokio::time::timeout(options.timeout, get(&client, uri, &options)).await {
                    Ok(Ok((status, retry_after))) => {
                        worker.latency.record(sent.elapsed());
                        *worker.statuses.entry(status.as_u16()).or_default() += 1;
                        if status == StatusCode::SERVICE_UNAVAILABLE && !retry_after {
                            worker.without_retry_after += 1;
                        }
                    }
                    Ok(Err(e)) => worker.failed.error(&e),
                    Err(_) => worker.failed.error(&LoadError::Timeout(options.timeout)),
                }
                let now = Instant::now();
                worker.last_done = Some(now);
                if now >= deadline {
                    return worker;
                }
            }
        });
    }
    let mut all = Worker::default();
    while let Some(joined) = workers.join_next().await {
        let worker = joined.map_err(|e| LoadError::Usage(format!("a worker failed: {e}")))?;
        for (status, n) in worker.statuses {
            *all.statuses.entry(status).or_default() += n;
        }
        all.without_retry_after += worker.without_retry_after;
        all.latency.merge(&worker.latency);
        all.failed.merge(&worker.failed);
        all.last_done = all.last_done.max(worker.last_done);
    }
    let answered = all.statuses.values().sum();
    let elapsed = all
        .last_done
        .map_or(options.duration, |t| t.saturating_duration_since(start));
    Ok(FloodReport {
        concurrency: options.concurrency,
        duration_s: options.duration.as_secs_f64(),
        answered,
        statuses: all.statuses,
        unavailable_without_retry_after: all.without_retry_after,
        answers_per_s: per_second(answered, elapsed),
        latency: all.latency.summary(),
        unanswered: all.failed.errors,
        first_error: all.failed.first_error,
    })
}

/// One GET, its body read to the end: the status and whether it said when to retry.
async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    uri: &Uri,
    options: &FloodOptions,
) -> Result<(StatusCode, bool), LoadError> {
    let mut request = Request::get(uri.clone());
    if let Some(auth) = &options.authorization {
        request = request.header(AUTHORIZATION, auth.clone());
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| LoadError::Usage(format!("cannot build the request: {e}")))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| LoadError::Transport(e.to_string()))?;
    let status = response.status();
    let retry_after = response.headers().contains_key(RETRY_AFTER);
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| LoadError::Transport(format!("reading the body: {e}")))?;
    }
    Ok((status, retry_after))
}

/// Prints the report: one JSON line on stdout with `--json` (the summary on stderr), or the
/// summary alone.
pub fn emit(args: &FloodArgs, report: &FloodReport) {
    let label = args.common.label.as_deref();
    let heading = format!(
        "warden-loadgen flood{} against {} ({})",
        label.map(|l| format!(" [{l}]")).unwrap_or_default(),
        args.url,
        args.paths.join(", "),
    );
    if !args.common.json {
        println!("{heading}\n{}", report.human());
        return;
    }
    eprintln!("{heading}\n{}", report.human());
    #[derive(Serialize)]
    struct Line<'a> {
        mode: &'static str,
        label: Option<&'a str>,
        target: &'a str,
        paths: &'a [String],
        #[serde(flatten)]
        report: &'a FloodReport,
    }
    let line = Line {
        mode: "flood",
        label,
        target: &args.url,
        paths: &args.paths,
        report,
    };
    match serde_json::to_string(&line) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("warden-loadgen: cannot write the JSON report: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Mode};
    use clap::Parser;

    fn flood_args(args: &[&str]) -> Result<FloodArgs, clap::Error> {
        let cli = Cli::try_parse_from(
            ["warden-loadgen", "flood"]
                .into_iter()
                .chain(args.iter().copied()),
        )?;
        match cli.mode {
            Mode::Flood(args) => Ok(args),
            other => panic!("not flood: {other:?}"),
        }
    }

    #[test]
    fn paths_are_joined_to_the_base_url() {
        let args = flood_args(&[
            "--url",
            "http://127.0.0.1:7412/",
            "--path",
            "/api/v1/journal/verify",
            "--path",
            "/api/v1/journal?limit=1000",
            "--token",
            "wdo_x",
        ])
        .unwrap();
        assert_eq!(args.concurrency, 64);
        let options = args.options().unwrap();
        let uris: Vec<String> = options.uris.iter().map(Uri::to_string).collect();
        assert_eq!(
            uris,
            [
                "http://127.0.0.1:7412/api/v1/journal/verify",
                "http://127.0.0.1:7412/api/v1/journal?limit=1000"
            ]
        );
        assert_eq!(options.authorization.unwrap(), "Bearer wdo_x");
    }

    #[test]
    fn bad_urls_and_paths_are_refused() {
        assert!(flood_args(&["--url", "http://h"]).is_err(), "no --path");
        let args = flood_args(&["--url", "https://h", "--path", "/a"]).unwrap();
        assert!(matches!(args.options(), Err(LoadError::BadUrl { .. })));
        let args = flood_args(&["--url", "http://h", "--path", "a"]).unwrap();
        assert!(matches!(args.options(), Err(LoadError::Usage(_))));
    }

    #[tokio::test]
    async fn every_request_is_answered_and_counted_by_status() {
        use axum::http::header;
        use axum::response::IntoResponse;
        let app = axum::Router::new()
            .route("/ok", axum::routing::get(|| async { "fine" }))
            .route(
                "/busy",
                axum::routing::get(|| async {
                    (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        [(header::RETRY_AFTER, "1")],
                        "busy",
                    )
                        .into_response()
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let report = run(&FloodOptions {
            uris: vec![
                format!("http://{addr}/ok").parse().unwrap(),
                format!("http://{addr}/busy").parse().unwrap(),
            ],
            authorization: None,
            concurrency: 2,
            duration: Duration::from_millis(200),
            timeout: Duration::from_secs(10),
        })
        .await
        .unwrap();
        server.abort();
        assert!(report.unanswered.is_empty(), "{:?}", report.first_error);
        let ok = report.statuses.get(&200).copied().unwrap_or(0);
        let busy = report.statuses.get(&503).copied().unwrap_or(0);
        assert!(ok > 0 && busy > 0, "{:?}", report.statuses);
        assert_eq!(ok + busy, report.answered);
        assert_eq!(report.unavailable_without_retry_after, 0);
        assert_eq!(report.latency.count, report.answered);
    }
}
