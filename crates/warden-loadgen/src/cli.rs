//! The command line: three modes, each aimed at a target and shaped by a few numbers.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::error::LoadError;
use crate::target::Target;

/// `warden-loadgen MODE [OPTIONS] (--url URL [--token T] | --stdio -- COMMAND ARGS...)`
#[derive(Debug, Parser)]
#[command(
    name = "warden-loadgen",
    version,
    about = "Load generator for MCP servers and gateways (Streamable HTTP or stdio)"
)]
pub struct Cli {
    /// What kind of load.
    #[command(subcommand)]
    pub mode: Mode,
}

/// The kinds of load.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Open loop: calls fall due at a constant rate; latency counts from when each was due.
    Rate(RateArgs),
    /// Closed loop: N workers each call, wait, call again, for a fixed time.
    Saturate(SaturateArgs),
    /// Open N idle sessions and report the target's memory per session (HTTP only).
    Sessions(SessionsArgs),
    /// Flood plain HTTP routes (a control plane's API) with GETs from N workers.
    Flood(crate::flood::FloodArgs),
    /// Serve Streamable HTTP in front of the target and only relay (a baseline for a gateway:
    /// the cost of the hop alone). Runs until interrupted.
    Relay(RelayArgs),
}

/// Where the load goes.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// A Streamable HTTP MCP endpoint, e.g. http://127.0.0.1:7411/mcp.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "stdio",
        required_unless_present = "stdio"
    )]
    pub url: Option<String>,
    /// A bearer token for the endpoint (the environment variable keeps it out of `ps`).
    #[arg(long, env = "WARDEN_LOADGEN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Start the MCP server named after `--` and speak to it over its stdin and stdout.
    #[arg(long)]
    pub stdio: bool,
    /// With --stdio: the server's program and arguments.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl TargetArgs {
    /// The target these arguments name.
    pub fn target(&self) -> Result<Target, LoadError> {
        match (&self.url, self.stdio) {
            (Some(url), false) if self.command.is_empty() => Ok(Target::Http {
                url: url.clone(),
                token: self.token.clone(),
            }),
            (Some(_), false) => Err(LoadError::Usage(
                "a command after -- is only for --stdio".into(),
            )),
            (None, true) if !self.command.is_empty() => Ok(Target::Stdio {
                command: self.command.clone(),
            }),
            (None, true) => Err(LoadError::Usage(
                "--stdio needs the server's command after --, e.g. --stdio -- my-server --flag"
                    .into(),
            )),
            _ => Err(LoadError::Usage("give either --url or --stdio".into())),
        }
    }
}

/// The call every request makes.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The tool to call, as the target names it (through Warden: SERVER__TOOL).
    #[arg(long, default_value = "echo")]
    pub tool: String,
    /// The tool's arguments, a JSON object.
    #[arg(long, value_name = "JSON", default_value = r#"{"text":"warden-loadgen"}"#, value_parser = parse_arguments)]
    pub arguments: Value,
}

/// How results are printed, and the per-request time limit.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Print one JSON line on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// A name for this run in the output, e.g. "direct" or "warden".
    #[arg(long)]
    pub label: Option<String>,
    /// How long one request may take before it counts as failed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// A process whose CPU time (its own, and its descendants') is reported for the run,
    /// besides the load generator's; may be given more than once.
    #[arg(long = "cpu-of", value_name = "PID")]
    pub cpu_of: Vec<u32>,
}

/// `rate`.
#[derive(Debug, Args)]
pub struct RateArgs {
    /// Calls per second.
    #[arg(long)]
    pub rate: f64,
    /// How long calls keep falling due (e.g. 10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Sessions the calls are spread over, each with one call in flight at a time (so at
    /// most this many HTTP connections). Over stdio: calls in flight on the one pipe.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub call: CallArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: TargetArgs,
}

/// `saturate`.
#[derive(Debug, Args)]
pub struct SaturateArgs {
    /// Workers, each with its own session and one call in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// How long workers keep starting calls.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub call: CallArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: TargetArgs,
}

/// `sessions`.
#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Sessions to open.
    #[arg(long, default_value_t = 1_000)]
    pub sessions: usize,
    /// Initialize requests in flight at once (and DELETEs, when closing).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// The target's process id: its resident memory (VmRSS) is read before and after.
    #[arg(long)]
    pub pid: Option<u32>,
    /// How long the sessions sit idle before memory is read.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub idle: Duration,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: TargetArgs,
}

/// `relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Where to listen (Streamable HTTP); port 0 picks a free one. The address is printed.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Threads of the async runtime; by default one per CPU but one (as `warden up`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
    /// How long the relay waits for a stdio server's answer.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The server behind the relay (`--token`: a bearer token the relay presents to it).
    #[command(flatten)]
    pub target: TargetArgs,
}

impl RelayArgs {
    /// The runtime's worker threads, the default filled in.
    pub fn worker_threads(&self) -> usize {
        self.worker_threads.map_or_else(
            || {
                std::thread::available_parallelism()
                    .map_or(1, usize::from)
                    .saturating_sub(1)
                    .max(1)
            },
            usize::from,
        )
    }
}

/// Parses `250us`, `500ms`, `10s`, `1.5s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let seconds_per_unit = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (ns, us, ms, s, m, h)"
            ));
        }
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|e| format!("{text:?}: {e}"))
}

/// Parses a tool's arguments: a JSON object.
pub fn parse_arguments(text: &str) -> Result<Value, String> {
    match serde_json::from_str(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("the arguments must be a JSON object, e.g. {\"text\":\"hi\"}".into()),
        Err(e) => Err(format!("the arguments are not JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1.2.3s").is_err());
    }

    #[test]
    fn arguments_must_be_an_object() {
        assert_eq!(parse_arguments(r#"{"a":1}"#), Ok(json!({"a": 1})));
        assert!(parse_arguments("[1]").is_err());
        assert!(parse_arguments("{").is_err());
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("warden-loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn rate_against_a_url_with_a_token() {
        let cli = parse(&[
            "rate",
            "--rate",
            "1000",
            "--duration",
            "10s",
            "--url",
            "http://127.0.0.1:7411/mcp",
            "--token",
            "wdn_x",
            "--tool",
            "files__echo",
            "--arguments",
            r#"{"text":"a"}"#,
            "--json",
        ])
        .unwrap();
        let Mode::Rate(args) = cli.mode else {
            panic!("not rate")
        };
        assert_eq!(args.rate, 1000.0);
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.connections, 16);
        assert_eq!(args.call.tool, "files__echo");
        assert_eq!(args.call.arguments, json!({"text": "a"}));
        assert!(args.common.json);
        assert_eq!(
            args.target.target().unwrap(),
            Target::Http {
                url: "http://127.0.0.1:7411/mcp".into(),
                token: Some("wdn_x".into())
            }
        );
    }

    #[test]
    fn a_stdio_command_follows_the_double_dash() {
        let cli = parse(&[
            "saturate",
            "--concurrency",
            "8",
            "--stdio",
            "--",
            "server",
            "--root",
            "/tmp/x",
        ])
        .unwrap();
        let Mode::Saturate(args) = cli.mode else {
            panic!("not saturate")
        };
        assert_eq!(args.concurrency, 8);
        assert_eq!(args.call.tool, "echo");
        assert_eq!(args.common.timeout, Duration::from_secs(10));
        assert_eq!(
            args.target.target().unwrap(),
            Target::Stdio {
                command: vec!["server".into(), "--root".into(), "/tmp/x".into()]
            }
        );
    }

    #[test]
    fn targets_must_be_one_or_the_other() {
        assert!(parse(&["saturate"]).is_err(), "no target");
        assert!(
            parse(&["saturate", "--url", "http://h/mcp", "--stdio", "--", "s"]).is_err(),
            "both targets"
        );
        let cli = parse(&["saturate", "--stdio"]).unwrap();
        let Mode::Saturate(args) = cli.mode else {
            panic!("not saturate")
        };
        assert!(matches!(args.target.target(), Err(LoadError::Usage(_))));
        let cli = parse(&["saturate", "--url", "http://h/mcp", "--", "s"]).unwrap();
        let Mode::Saturate(args) = cli.mode else {
            panic!("not saturate")
        };
        assert!(matches!(args.target.target(), Err(LoadError::Usage(_))));
    }

    #[test]
    fn a_relay_in_front_of_a_stdio_server() {
        let cli = parse(&[
            "relay",
            "--listen",
            "127.0.0.1:7500",
            "--worker-threads",
            "2",
            "--stdio",
            "--",
            "server",
        ])
        .unwrap();
        let Mode::Relay(args) = cli.mode else {
            panic!("not relay")
        };
        assert_eq!(args.listen, "127.0.0.1:7500");
        assert_eq!(args.worker_threads(), 2);
        assert_eq!(
            args.target.target().unwrap(),
            Target::Stdio {
                command: vec!["server".into()]
            }
        );
        let cli = parse(&["relay", "--url", "http://h/mcp"]).unwrap();
        let Mode::Relay(args) = cli.mode else {
            panic!("not relay")
        };
        assert_eq!(args.listen, "127.0.0.1:0");
        assert!(args.worker_threads() >= 1);
        assert!(parse(&["relay", "--worker-threads", "0", "--url", "http://h/mcp"]).is_err());
    }

    #[test]
    fn sessions_defaults_and_bad_numbers() {
        let cli = parse(&[
            "sessions",
            "--url",
            "http://h/mcp",
            "--sessions",
            "10000",
            "--pid",
            "42",
        ])
        .unwrap();
        let Mode::Sessions(args) = cli.mode else {
            panic!("not sessions")
        };
        assert_eq!(args.sessions, 10_000);
        assert_eq!(args.concurrency, 64);
        assert_eq!(args.pid, Some(42));
        assert_eq!(args.idle, Duration::from_secs(2));
        assert!(parse(&["rate", "--rate", "fast", "--url", "http://h/mcp"]).is_err());
        assert!(
            parse(&["rate", "--url", "http://h/mcp"]).is_err(),
            "--rate is required"
        );
        assert!(
            parse(&[
                "rate",
                "--rate",
                "5",
                "--arguments",
                "[]",
                "--url",
                "http://h/mcp"
            ])
            .is_err()
        );
    }
}
