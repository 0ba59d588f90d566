//! The `warden` command: assembles the policy, journal and gateway crates into the tool an
//! operator runs. Errors are reported for humans here; the libraries return typed errors.
// One call has no safe wrapper (`cmd::up::idle_policy`); it is the only unsafe code here.
#![deny(unsafe_code)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` for a command whose output may be piped into `head`: a closed stdout ends the
/// command quietly instead of panicking.
macro_rules! say {
    () => {
        $crate::say_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::say_line(format_args!($($arg)*))
    };
}

mod cmd;
mod config;
mod telemetry;

fn say_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{args}").is_err() {
        std::process::exit(0);
    }
}

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Warden: containment, monitoring and governance for autonomous AI agents.
#[derive(Parser)]
#[command(name = "warden", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stand in front of an MCP server on stdio: decide and journal every tool call of AGENT.
    Mcp(cmd::mcp::Args),
    /// Serve MCP over Streamable HTTP to authenticated agents, in front of every configured server.
    Up(cmd::up::Args),
    /// Issue, rotate, revoke and list the bearer tokens agents present to the HTTP gateway.
    #[command(subcommand)]
    Agent(cmd::agent::AgentCommand),
    /// Read and verify the journal.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Check and test policies before deploying them.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Write a commented starter warden.toml and policy folder.
    Init {
        /// Where to write them.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
    },
    /// Run Warden's main job on the embedded example: a well-behaved and a rogue agent.
    Demo(cmd::demo::Args),
    /// Run a command as AGENT inside a sandbox whose only ways out are Warden's gateways.
    Run(cmd::run::Args),
    /// Kill every process of an agent's sandboxes at once.
    Kill(cmd::kill::Args),
    /// Report which containment layers this machine supports.
    Doctor(cmd::doctor::Args),
    /// Quarantine an agent by hand: every Warden refuses its actions until it is released.
    Quarantine(cmd::quarantine::Args),
    /// Release a quarantined agent (a human's decision, journaled with its reason).
    Release(cmd::quarantine::Args),
    /// List the calls held for a human's approval, or answer one (approve, deny).
    Approvals(cmd::approvals::Args),
    /// Add, revoke and list the operators of the control plane and their roles.
    #[command(subcommand)]
    User(cmd::user::UserCommand),
    /// Propose a least-privilege policy and a first_seen baseline from an agent's journal.
    Learn(cmd::learn::Args),
    /// Every agent in the journal: state, last seen, decisions, alerts, open sessions; or one
    /// agent (NAME) with its sessions.
    Agents(cmd::agents::Args),
    /// Journal records as readable lines, by agent and kind; the newest, or followed live.
    Events(cmd::events::Args),
    /// The detectors' alerts; or one alert (SEQ) with the records it cites as evidence.
    Alerts(cmd::alerts::Args),
}

fn main() -> ExitCode {
    // The sandbox's first process is this program again (see `warden run`).
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(warden_contain::inside::INIT_ARG))
    {
        warden_contain::inside::main();
    }
    let cli = Cli::parse();
    let telemetry = telemetry::init();
    let result = match cli.command {
        Command::Mcp(args) => cmd::mcp::run(args),
        Command::Up(args) => cmd::up::run(args),
        Command::Agent(c) => cmd::agent::run(c),
        Command::Audit(c) => cmd::audit::run(c),
        Command::Policy(c) => cmd::policy::run(c),
        Command::Init { dir, force } => cmd::init::run(&dir, force),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Kill(args) => cmd::kill::run(args),
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Quarantine(args) => cmd::quarantine::quarantine(args),
        Command::Release(args) => cmd::quarantine::release(args),
        Command::Approvals(args) => cmd::approvals::run(args),
        Command::User(c) => cmd::user::run(c),
        Command::Learn(args) => cmd::learn::run(args),
        Command::Agents(args) => cmd::agents::run(args),
        Command::Events(args) => cmd::events::run(args),
        Command::Alerts(args) => cmd::alerts::run(args),
    };
    // The last spans reach the collector before the process ends.
    telemetry.shutdown();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("warden: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
