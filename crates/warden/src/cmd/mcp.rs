//! `warden mcp`: one agent's stdio session in front of one upstream MCP server.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use warden_core::{AgentId, ServerName, SessionId};
use warden_gateway::{Guard, SessionEnd, UpstreamCommand, serve_stdio};
use warden_journal::Journal;

use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// The agent this session belongs to. Set by whoever launches Warden, never by the agent.
    #[arg(long)]
    agent: String,
    /// The configuration file (default: ./warden.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The upstream server's name in policy (`Tool::"NAME/tool"`). Required with a command;
    /// otherwise it selects a `[servers.NAME]` of the configuration.
    #[arg(long)]
    server: Option<String>,
    /// The upstream MCP server to spawn, after `--`.
    #[arg(last = true)]
    command: Vec<OsString>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let agent = AgentId::new(&args.agent)?;
    let (server, upstream) = upstream(&config, args.server.as_deref(), args.command)?;

    // Everything that can refuse to start does so before the upstream is spawned.
    let policies = super::load_policies(&config)?;
    let journal_path = config.journal_path();
    let journal = Journal::open(&journal_path, config.journal_options())
        .with_context(|| format!("opening the journal {}", journal_path.display()))?;

    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("no randomness for a session id: {e}"))?;
    let session = SessionId::from_random(id);
    let monitor = config.monitor(crate::config::Facts::default())?;
    super::revoke_on_quarantine(&monitor, &config, &journal);
    let guard = Guard::new(agent, session, Arc::new(policies), journal.clone())
        .with_monitor(Some(monitor))
        .with_hold(config.hold());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(super::POLICY_STACK_BYTES)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let options = config.session_options();
    let outcome = runtime.block_on(async {
        let session = serve_stdio(
            guard,
            server.clone(),
            upstream,
            options,
            tokio::io::stdin(),
            tokio::io::stdout(),
        );
        let result = tokio::select! {
            r = session => Some(r),
            _ = shutdown_signal() => None,
        };
        if let Err(err) = journal.close().await {
            tracing::error!(%err, "closing the journal failed");
        }
        result
    });
    // Tokio's stdin reader may still be blocked in a read; don't wait for it.
    runtime.shutdown_background();
    match outcome {
        None => Ok(ExitCode::from(130)),
        Some(Ok(SessionEnd::AgentClosed)) => Ok(ExitCode::SUCCESS),
        Some(Ok(SessionEnd::UpstreamExited { status })) => {
            eprintln!("warden: the upstream server exited ({status}); the session is over");
            Ok(ExitCode::from(1))
        }
        Some(Err(err)) => Err(err.into()),
    }
}

fn upstream(
    config: &Config,
    server: Option<&str>,
    command: Vec<OsString>,
) -> Result<(ServerName, UpstreamCommand)> {
    if let Some((program, rest)) = command.split_first() {
        let Some(name) = server else {
            bail!(
                "name the upstream server with --server NAME; policies refer to its tools as \
                 Tool::\"NAME/<tool>\""
            );
        };
        let name = ServerName::new(name)?;
        return Ok((
            name,
            UpstreamCommand {
                program: program.clone(),
                args: rest.to_vec(),
                cwd: None,
                env: Vec::new(),
                env_remove: config.credential_variables(),
            },
        ));
    }
    let name = match server {
        Some(name) => ServerName::new(name)?,
        None => match config.servers.keys().collect::<Vec<_>>().as_slice() {
            [only] => (*only).clone(),
            [] => bail!(
                "no upstream server: give one after `--`, or configure [servers.NAME] in warden.toml"
            ),
            _ => bail!("several servers are configured; choose one with --server NAME"),
        },
    };
    let Some(section) = config.servers.get(&name) else {
        bail!("no [servers.{name}] in the configuration");
    };
    if section.url.is_some() {
        bail!(
            "[servers.{name}] is a remote (url) server; `warden mcp` spawns stdio servers only. \
             Serve it to agents with `warden up`"
        );
    }
    Ok((name, config.upstream_command(section)))
}

pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
