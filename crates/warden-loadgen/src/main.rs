//! `warden-loadgen MODE ...`: see the library documentation.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;
use warden_loadgen::cli::{Cli, CommonArgs, Mode};
use warden_loadgen::cpu::{self, Spent};
use warden_loadgen::rate::{self, RateOptions};
use warden_loadgen::relay::{Relay, RelayOptions};
use warden_loadgen::saturate::{self, SaturateOptions};
use warden_loadgen::sessions::{self, SessionsOptions};
use warden_loadgen::{CallSpec, Connection, LoadError, Target};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Mode::Relay(args) = &cli.mode {
        builder.worker_threads(args.worker_threads());
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("warden-loadgen: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.mode)) {
        Ok(true) => ExitCode::SUCCESS,
        // The run finished but nothing succeeded: the report says why; scripts should stop.
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("warden-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One JSON line: what was run against what, then the mode's report.
#[derive(Serialize)]
struct Line<'a, R: Serialize> {
    mode: &'static str,
    label: Option<&'a str>,
    target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<&'a str>,
    #[serde(flatten)]
    report: &'a R,
    cpu: &'a CpuReport,
}

/// The CPU time spent while the connection was open (sessions opened, load, sessions ended).
#[derive(Serialize)]
struct CpuReport {
    /// The load generator, and (its descendants) a stdio server it started.
    loadgen: Spent,
    /// The processes named with `--cpu-of`, each with its descendants.
    watched: Vec<Spent>,
}

impl CpuReport {
    fn human(&self) -> String {
        let one = |name: String, s: &Spent| {
            format!(
                "{name} {} ms (descendants {} ms)",
                s.own_ms, s.descendants_ms
            )
        };
        let mut parts = vec![one("loadgen".to_owned(), &self.loadgen)];
        parts.extend(
            self.watched
                .iter()
                .map(|s| one(format!("pid {}", s.pid), s)),
        );
        format!("  cpu: {}", parts.join(", "))
    }
}

/// CPU readings taken when the connection opens, to be closed when the work is done.
struct CpuWatch {
    /// This process (its descendants: a stdio server it started).
    loadgen: (u32, cpu::Ticks),
    /// The `--cpu-of` processes.
    watched: Vec<(u32, cpu::Ticks)>,
}

impl CpuWatch {
    fn start(pids: &[u32]) -> Result<Self, LoadError> {
        let me = std::process::id();
        let loadgen = cpu::ticks(me)
            .map(|t| (me, t))
            .ok_or_else(|| LoadError::Usage("cannot read this process's CPU time".into()))?;
        let watched = pids
            .iter()
            .map(|&pid| {
                cpu::ticks(pid)
                    .map(|t| (pid, t))
                    .ok_or_else(|| LoadError::Usage(format!("--cpu-of {pid}: no such process")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { loadgen, watched })
    }

    fn finish(self) -> CpuReport {
        let spent = |(pid, before): (u32, cpu::Ticks)| {
            // A watched process that exited meanwhile counts as having spent nothing more.
            let after = cpu::ticks(pid).unwrap_or(before);
            cpu::spent(pid, before, after)
        };
        CpuReport {
            loadgen: spent(self.loadgen),
            watched: self.watched.into_iter().map(spent).collect(),
        }
    }
}

/// Runs the mode; `Ok(false)` when not one call (or session) succeeded.
async fn run(mode: Mode) -> Result<bool, LoadError> {
    match mode {
        Mode::Rate(args) => {
            let target = args.target.target()?;
            let spec = CallSpec::new(&args.call.tool, &args.call.arguments);
            let options = RateOptions {
                rate: args.rate,
                duration: args.duration,
                lanes: args.connections,
                timeout: args.common.timeout,
            };
            let (report, cpu) = with_connection(&target, &args.common, |c| {
                let (spec, options) = (spec.clone(), options.clone());
                async move { rate::run(&c, &spec, &options).await }
            })
            .await?;
            emit(
                "rate",
                &args.common,
                &target,
                Some(&spec.tool),
                &report,
                &cpu,
                &report.human(),
            );
            Ok(report.tally.ok > 0)
        }
        Mode::Saturate(args) => {
            let target = args.target.target()?;
            let spec = CallSpec::new(&args.call.tool, &args.call.arguments);
            let options = SaturateOptions {
                concurrency: args.concurrency,
                duration: args.duration,
                timeout: args.common.timeout,
            };
            let (report, cpu) = with_connection(&target, &args.common, |c| {
                let (spec, options) = (spec.clone(), options.clone());
                async move { saturate::run(&c, &spec, &options).await }
            })
            .await?;
            emit(
                "saturate",
                &args.common,
                &target,
                Some(&spec.tool),
                &report,
                &cpu,
                &report.human(),
            );
            Ok(report.tally.ok > 0)
        }
        Mode::Sessions(args) => {
            let target = args.target.target()?;
            let options = SessionsOptions {
                sessions: args.sessions,
                concurrency: args.concurrency,
                pid: args.pid,
                idle: args.idle,
                timeout: args.common.timeout,
            };
            let (report, cpu) = with_connection(&target, &args.common, |c| {
                let options = options.clone();
                async move { sessions::run(&c, &options).await }
            })
            .await?;
            emit(
                "sessions",
                &args.common,
                &target,
                None,
                &report,
                &cpu,
                &report.human(),
            );
            Ok(report.opened.ok > 0)
        }
        Mode::Relay(args) => {
            let options = RelayOptions {
                listen: args.listen.clone(),
                upstream: args.target.target()?,
                timeout: args.timeout,
            };
            let relay = Relay::bind(&options).await?;
            let address = relay.local_addr()?;
            println!("relay: listening on http://{address}/mcp");
            relay.serve(stopped()).await;
            Ok(true)
        }
        Mode::Flood(args) => {
            let report = warden_loadgen::flood::run(&args.options()?).await?;
            warden_loadgen::flood::emit(&args, &report);
            Ok(report.answered > 0)
        }
    }
}

/// Completes on SIGINT or SIGTERM (on SIGINT alone if SIGTERM cannot be watched).
async fn stopped() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(e) => {
            eprintln!("warden-loadgen: cannot watch SIGTERM ({e}); stop the relay with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Opens the connection, runs `work` on it, and stops a stdio server whatever happened; with
/// the CPU time spent meanwhile (read before a stdio server is stopped, so it is counted).
async fn with_connection<T, F, Fut>(
    target: &Target,
    common: &CommonArgs,
    work: F,
) -> Result<(T, CpuReport), LoadError>
where
    F: FnOnce(Connection) -> Fut,
    Fut: Future<Output = Result<T, LoadError>>,
{
    let watch = CpuWatch::start(&common.cpu_of)?;
    let connection = Connection::open(target, common.timeout).await?;
    let result = work(connection.clone()).await;
    let cpu = watch.finish();
    connection.shutdown().await;
    result.map(|r| (r, cpu))
}

fn emit<R: Serialize>(
    mode: &'static str,
    common: &CommonArgs,
    target: &Target,
    tool: Option<&str>,
    report: &R,
    cpu: &CpuReport,
    human: &str,
) {
    let human = format!("{human}\n{}", cpu.human());
    let label = common.label.as_deref();
    let heading = format!(
        "warden-loadgen {mode}{} against {}{}",
        label.map(|l| format!(" [{l}]")).unwrap_or_default(),
        target.describe(),
        tool.map(|t| format!(" (tool {t})")).unwrap_or_default(),
    );
    if common.json {
        eprintln!("{heading}\n{human}");
        let line = Line {
            mode,
            label,
            target: target.describe(),
            tool,
            report,
            cpu,
        };
        match serde_json::to_string(&line) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("warden-loadgen: cannot write the JSON report: {e}"),
        }
    } else {
        println!("{heading}\n{human}");
    }
}
