//! `warden run --agent NAME -- CMD`: the agent and everything it starts, inside a sandbox whose
//! only ways out are Warden's gateways. Every program start and connection is decided and
//! journaled; `warden kill NAME` ends the whole tree at once.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use warden_contain::cgroup::{CGROUP_ROOT, Cgroups, Layout};
use warden_contain::{Bind, InitCommand, Layer, Listener, ListenerRole, Plan};
use warden_core::{AgentId, EventBody, SessionId};
use warden_gateway::Guard;
use warden_journal::Journal;

use crate::config::Config;

mod decide;
pub mod runs;

#[derive(clap::Args)]
pub struct Args {
    /// The agent, as policies name it.
    #[arg(long)]
    agent: String,
    /// The configuration file (default: ./warden.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Start even though this layer, required by the configuration, is missing on this machine
    /// (journaled). Repeat for several; `warden doctor` lists them.
    #[arg(long = "allow-degraded", value_name = "LAYER")]
    allow_degraded: Vec<String>,
    /// The task this run is for, in a few words (journaled with the run).
    #[arg(long)]
    task: Option<String>,
    /// The scope tags the task needs, comma-separated (`code,docs`): the scope_drift detector
    /// alerts on tagged tools, hosts and programs outside them.
    #[arg(long, value_delimiter = ',')]
    scope: Vec<String>,
    /// The program to run, and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let agent = AgentId::new(&args.agent).context("the agent name")?;
    let command: Vec<String> = args
        .command
        .iter()
        .map(|a| {
            a.to_str()
                .map(str::to_owned)
                .with_context(|| format!("the command argument {a:?} is not UTF-8"))
        })
        .collect::<Result<_>>()?;

    let report = warden_contain::doctor::probe(Path::new(CGROUP_ROOT));
    let mut required = config.sandbox.required()?;
    let mut degraded = Vec::new();
    for name in &args.allow_degraded {
        let layer = Layer::parse(name).with_context(|| {
            format!(
                "--allow-degraded {name}: unknown layer (known: {})",
                Layer::ALL.map(|l| l.as_str()).join(", ")
            )
        })?;
        if matches!(layer, Layer::Namespaces | Layer::Network | Layer::Seccomp) {
            bail!("--allow-degraded {name}: Warden never runs an agent without {name}");
        }
        required.retain(|l| *l != layer);
        if let Some(f) = report
            .findings
            .iter()
            .find(|f| f.layer == layer && !f.available)
        {
            degraded.push(format!("{layer}: {}", f.detail));
        }
    }
    let missing = report.missing(&required);
    if !missing.is_empty() {
        let lines: Vec<String> = report
            .findings
            .iter()
            .filter(|f| missing.contains(&f.layer))
            .map(|f| format!("  {}: {}", f.layer, f.detail))
            .collect();
        bail!(
            "this machine cannot provide the containment the configuration requires:\n{}\n\
             (`warden doctor` shows every layer; `--allow-degraded LAYER` runs without one, \
             and the journal records it)",
            lines.join("\n")
        );
    }

    let policies = super::load_policies(&config)?;
    let journal_path = config.journal_path();
    let journal = Journal::open(&journal_path, config.journal_options())
        .with_context(|| format!("opening the journal {}", journal_path.display()))?;
    let session = new_session()?;
    let policies = Arc::new(policies);
    // The agent's credential for the MCP gateway inside its sandbox: valid for this run only.
    let mcp_token = if config.servers.is_empty() {
        None
    } else {
        Some(warden_gateway::identity::new_token().context("issuing the run's MCP token")?)
    };

    let (host_uid, host_gid) = if report.root {
        (config.sandbox.user, config.sandbox.group)
    } else {
        own_ids()?
    };
    let workspace = workspace(&config, &agent, report.root, host_uid, host_gid)?;
    let canaries = canaries()?;
    plant_canaries(
        &workspace,
        &canaries,
        report.root.then_some((host_uid, host_gid)),
    )?;
    let monitor = config.monitor(crate::config::Facts {
        canaries: canaries.iter().map(|(_, v)| v.clone()).collect(),
        ..crate::config::Facts::default()
    })?;
    if let Some(q) = monitor
        .quarantined(&agent)
        .filter(|e| e.level == warden_monitor::Level::Quarantine)
    {
        bail!(
            "agent {agent} is quarantined ({}: {}); a human must release it first: \
             warden release {agent} --reason \"…\"",
            q.by,
            q.reason
        );
    }
    let plan = plan(
        &config,
        &ThisRun {
            agent: &agent,
            session: &session,
            command: command.clone(),
            workspace: &workspace,
            host_ids: (host_uid, host_gid),
            mcp_token: mcp_token.as_deref(),
            canaries: &canaries,
        },
    );

    let layout = Layout::detect(Path::new(CGROUP_ROOT));
    let cgroups = if report.has(Layer::Cgroups) || report.has(Layer::CgroupKill) {
        Some(
            Cgroups::create(
                &layout,
                &format!("{agent}-{}", session.as_str()),
                &config.sandbox.limits(),
            )
            .context("creating the sandbox's cgroups")?,
        )
    } else {
        None
    };
    let init = InitCommand::current_exe().context("finding the warden program")?;
    let sandbox = match warden_contain::launch(&init, &plan, cgroups.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            if let Some(c) = &cgroups {
                let _ = c.remove();
            }
            return Err(e).context("starting the sandbox");
        }
    };
    let runs_dir = config.resolve(&config.sandbox.runs);
    let record = runs::Run {
        agent: agent.as_str().to_owned(),
        session: session.as_str().to_owned(),
        pid: sandbox.child.id(),
        cgroups: cgroups.clone(),
        journal: journal_path.clone(),
    };
    let record_path = runs::write(&runs_dir, &record).context("recording the running sandbox")?;

    super::revoke_on_quarantine(&monitor, &config, &journal);
    let guard = Guard::new(
        agent.clone(),
        session.clone(),
        policies.clone(),
        journal.clone(),
    )
    .with_monitor(Some(monitor.clone()))
    .with_hold(config.hold());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(super::POLICY_STACK_BYTES)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The sandbox reports the layers it set up inside; the cgroups are Warden's, outside.
    let mut layers: Vec<String> = sandbox
        .layers
        .iter()
        .map(|l| l.as_str().to_owned())
        .collect();
    if let Some(c) = &cgroups {
        if report.has(Layer::Cgroups) {
            layers.push(Layer::Cgroups.as_str().to_owned());
        }
        if c.kill.is_some() {
            layers.push(Layer::CgroupKill.as_str().to_owned());
        }
    }
    runtime
        .block_on(
            guard.record(EventBody::SandboxStarted {
                // Redacted as the exec records' arguments are: a token on the command line
                // must not reach the journal through this record either.
                command: command
                    .iter()
                    .map(|arg| {
                        match warden_core::redact::redact(&serde_json::Value::from(arg.as_str())) {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        }
                    })
                    .collect(),
                layers: layers.clone(),
                degraded: degraded.clone(),
                cgroups: cgroups
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), |c| c.report.clone()),
                task: args.task.clone(),
                scope: args
                    .scope
                    .iter()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            }),
        )
        .context("journaling the start of the sandbox; it is stopped")
        .inspect_err(|_| {
            if let Some(c) = &cgroups {
                let _ = c.kill(Duration::from_secs(5));
            }
        })?;
    eprintln!(
        "warden: agent {agent} contained (session {}): {}{}",
        &session.as_str()[..8],
        layers.join(", "),
        if degraded.is_empty() {
            String::new()
        } else {
            format!("; DEGRADED: {}", degraded.join("; "))
        }
    );

    let warden_contain::Sandbox {
        mut child,
        listeners,
        seccomp,
        control,
        ..
    } = sandbox;
    let gateways = decide::Gateways {
        ports: vec![config.sandbox.egress_port, config.sandbox.mcp_port]
            .into_iter()
            .chain(config.sandbox.local_ports.iter().copied())
            .collect(),
    };
    // Only a sandbox that can be killed may have its calls held once it is quarantined.
    let quarantined =
        cgroups
            .as_ref()
            .filter(|c| c.kill.is_some())
            .map(|_| -> decide::Quarantined {
                let monitor = monitor.clone();
                let agent = guard.agent().clone();
                Box::new(move || quarantine_in_force(&monitor, &agent).is_some())
            });
    let decisions = match seccomp {
        Some(fd) => Some(
            decide::spawn(
                fd,
                guard.clone(),
                runtime.handle().clone(),
                gateways,
                quarantined,
            )
            .context("starting the decision thread")?,
        ),
        None => None,
    };
    let mcp = match &mcp_token {
        Some(token) => {
            let _entered = runtime.enter();
            let hub = super::up::build_hub(
                &config,
                policies.clone(),
                journal.clone(),
                Some(session.clone()),
                Some(monitor.clone()),
            )?;
            let auth = warden_gateway::identity::Authenticator::for_one(agent.clone(), token);
            Some(super::up::http_gateway(
                &config,
                hub,
                auth,
                config.sandbox.mcp_port,
            ))
        }
        None => None,
    };
    let egress = warden_gateway::egress::EgressOptions {
        allow_loopback: config.sandbox.egress_allow_loopback,
        // `warden up`'s port, whichever address it is given on.
        protected: config
            .http
            .listen
            .parse::<std::net::SocketAddr>()
            .map(|a| std::net::SocketAddr::new([0, 0, 0, 0].into(), a.port()))
            .into_iter()
            .collect(),
        own_ports: vec![config.sandbox.egress_port, config.sandbox.mcp_port],
        ..warden_gateway::egress::EgressOptions::default()
    };
    serve_listeners(&runtime, listeners, &guard, mcp.clone(), egress);
    let quarantine_kill = cgroups
        .clone()
        .map(|groups| runtime.spawn(kill_on_quarantine(guard.clone(), monitor.clone(), groups)));
    let (stop_watch, watch_stopped) = tokio::sync::oneshot::channel::<()>();
    let limit_watch = cgroups.clone().map(|groups| {
        runtime.spawn(watch_limits(
            guard.clone(),
            groups,
            config.sandbox.limits(),
            watch_stopped,
        ))
    });

    // The terminal's Ctrl-C reaches the agent too; Warden waits for it to end.
    let status = runtime.block_on(async {
        let wait = tokio::task::spawn_blocking(move || child.wait());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listening for SIGTERM")?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("listening for SIGINT")?;
        tokio::pin!(wait);
        loop {
            tokio::select! {
                status = &mut wait => return status.context("waiting for the sandbox")?.context("waiting for the sandbox"),
                _ = term.recv() => {
                    if let Some(c) = &cgroups {
                        match c.kill(Duration::from_secs(5)) {
                            Ok(report) => {
                                let record = guard.record(EventBody::SandboxKilled {
                                    by: "SIGTERM to warden run".into(),
                                    processes: report.processes as u64,
                                    elapsed_us: u64::try_from(report.elapsed.as_micros())
                                        .unwrap_or(u64::MAX),
                                    method: report.method.as_str().into(),
                                    reason: String::new(),
                                });
                                if let Err(e) = record.await {
                                    eprintln!("warden: could not journal the kill: {e}");
                                }
                            }
                            Err(e) => eprintln!("warden: killing the sandbox failed: {e}"),
                        }
                    }
                }
                _ = int.recv() => {}
            }
        }
    })?;
    // A quarantine killed it: let that kill finish and be journaled before cleaning up.
    if let Some(task) = quarantine_kill {
        if monitor
            .quarantined(&agent)
            .is_some_and(|e| e.level == warden_monitor::Level::Quarantine)
        {
            // The timer must be made inside the runtime.
            let _ = runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        } else {
            task.abort();
        }
    }
    // A limit reached in the sandbox's last second is journaled too: the watcher takes one
    // last look when told to stop, and is waited for (never cut off inside a record).
    let _ = stop_watch.send(());
    if let Some(task) = limit_watch {
        let _ = runtime.block_on(task);
    }
    // The sandbox's PID 1 is gone, so the kernel has killed the rest; make sure, then clean up.
    if let Some(c) = &cgroups {
        if !c.is_empty().unwrap_or(true) {
            let _ = c.kill(Duration::from_secs(5));
        }
        if let Err(e) = c.remove() {
            eprintln!("warden: could not remove the sandbox's cgroups: {e}");
        }
    }
    let _ = std::fs::remove_file(&record_path);
    let code = status.code().unwrap_or(125);
    if let Some(why) = warden_contain::Sandbox::start_failure(&control) {
        // Exit 126 alone would leave the operator guessing (a path missing from the view).
        eprintln!(
            "warden: the agent's program did not start: {}",
            warden_core::escape_for_display(&why)
        );
    }
    let detail = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".to_owned(),
    };
    if status.code().is_none() && quarantine_in_force(&monitor, &agent).is_none() {
        // A quarantine says so itself; any other end by a signal (`warden kill`, the kernel
        // out of memory) would otherwise leave the operator with a bare exit status.
        eprintln!(
            "warden: agent {agent}'s sandbox ended: {detail} (`warden kill`, or the kernel; \
             see `warden audit log --agent {agent}`)"
        );
    }
    if let Some(gateway) = &mcp {
        runtime.block_on(gateway.close_all("the sandbox ended"));
    }
    if let Err(e) = runtime.block_on(guard.record(EventBody::SandboxEnded { status: detail })) {
        eprintln!("warden: could not journal the end of the sandbox: {e}");
    }
    drop(decisions);
    runtime.shutdown_timeout(Duration::from_secs(2));
    let _ = journal.close_blocking();
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(125)))
}

/// The agent's quarantine, if one is in force (not a lighter restriction): its sandbox is to
/// be killed.
fn quarantine_in_force(
    monitor: &warden_monitor::Monitor,
    agent: &warden_core::AgentId,
) -> Option<warden_monitor::QuarantineEntry> {
    monitor
        .quarantined(agent)
        .filter(|e| e.level == warden_monitor::Level::Quarantine)
}

/// Journals, once a second at most, that the kernel held the sandbox to a limit (a fork loop
/// at the process limit, a process killed at the memory limit): the kernel refuses quietly,
/// and the detectors and the operator should know.
async fn watch_limits(
    guard: Guard,
    groups: Cgroups,
    limits: warden_contain::Limits,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut seen = warden_contain::LimitsHit::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut stop => true,
        };
        seen = record_limits(&guard, &groups, &limits, seen).await;
        if last {
            return;
        }
    }
}

/// Journals what the kernel counted since `before`; what it counts now.
async fn record_limits(
    guard: &Guard,
    groups: &Cgroups,
    limits: &warden_contain::Limits,
    before: warden_contain::LimitsHit,
) -> warden_contain::LimitsHit {
    let now = groups.limits_hit();
    for (limit, max, was, is) in [
        (
            "processes",
            u64::from(limits.max_processes),
            before.processes,
            now.processes,
        ),
        ("memory", limits.max_memory_bytes, before.memory, now.memory),
    ] {
        if is > was {
            let record = guard.record(EventBody::SandboxLimit {
                limit: limit.to_owned(),
                max,
                times: is - was,
            });
            if let Err(e) = record.await {
                eprintln!(
                    "warden: could not journal that the sandbox reached its {limit} limit: {e}"
                );
            }
        }
    }
    now
}

/// Kills the sandbox as soon as its agent is quarantined — by a detector in this process
/// (woken at once) or by another Warden process or an operator (seen within 20 ms).
async fn kill_on_quarantine(guard: Guard, monitor: Arc<warden_monitor::Monitor>, groups: Cgroups) {
    let wake = Arc::new(tokio::sync::Notify::new());
    {
        let wake = wake.clone();
        let agent = guard.agent().clone();
        monitor.on_quarantine(Box::new(move |entry| {
            if entry.agent == agent {
                wake.notify_one();
            }
        }));
    }
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let entry = loop {
        tokio::select! {
            () = wake.notified() => {}
            _ = tick.tick() => {}
        }
        if let Some(entry) = quarantine_in_force(&monitor, guard.agent()) {
            break entry;
        }
    };
    let groups2 = groups.clone();
    let report = tokio::task::spawn_blocking(move || groups2.kill(Duration::from_secs(5))).await;
    match report {
        Ok(Ok(report)) => {
            let record = guard
                .record(EventBody::SandboxKilled {
                    by: format!("quarantine ({})", entry.by),
                    processes: report.processes as u64,
                    elapsed_us: u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX),
                    method: report.method.as_str().into(),
                    reason: entry.reason.clone(),
                })
                .await;
            if let Err(e) = record {
                eprintln!("warden: could not journal the kill: {e}");
            }
            eprintln!(
                "warden: agent {} quarantined ({}: {}); its sandbox was killed",
                entry.agent, entry.by, entry.reason
            );
        }
        Ok(Err(e)) => eprintln!("warden: killing the quarantined sandbox failed: {e}"),
        Err(e) => eprintln!("warden: killing the quarantined sandbox failed: {e}"),
    }
}

/// The first line of a canary file Warden planted; a file without it is never touched.
const PLANTED: &str = "# planted by Warden: these credentials open nothing";

/// Plants the run's canaries where an agent looking for cloud credentials would find them
/// (`.aws/credentials` in its workspace), unless the workspace has such a file of its own.
fn plant_canaries(
    workspace: &Path,
    canaries: &[(String, String)],
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let dir = workspace.join(".aws");
    let path = dir.join("credentials");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && !existing.starts_with(PLANTED)
    {
        return Ok(());
    }
    let value = |name: &str| {
        canaries
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let text = format!(
        "{PLANTED}\n[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        value("AWS_ACCESS_KEY_ID"),
        value("AWS_SECRET_ACCESS_KEY")
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    if let Some((uid, gid)) = owner {
        for p in [&dir, &path] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to the sandbox user", p.display()))?;
        }
    }
    Ok(())
}

/// Canary credentials for one run, shaped like the cloud keys an agent would be tempted to
/// send out: (variable, value).
fn canaries() -> Result<Vec<(String, String)>> {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const MIXED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 56];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for canaries: {e}"))?;
    let pick = |set: &[u8], b: &[u8]| -> String {
        b.iter()
            .map(|x| char::from(set[usize::from(*x) % set.len()]))
            .collect()
    };
    Ok(vec![
        (
            "AWS_ACCESS_KEY_ID".into(),
            format!("AKIA{}", pick(UPPER, &bytes[..16])),
        ),
        ("AWS_SECRET_ACCESS_KEY".into(), pick(MIXED, &bytes[16..56])),
    ])
}

fn new_session() -> Result<SessionId> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("no randomness for a session id: {e}"))?;
    Ok(SessionId::from_random(id))
}

/// Warden's own uid and gid: the owner of its /proc entry (this crate has no unsafe code).
fn own_ids() -> Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self").context("reading /proc/self")?;
    Ok((meta.uid(), meta.gid()))
}

/// The agent's workspace, created on first use, owned by the user the agent runs as.
fn workspace(config: &Config, agent: &AgentId, root: bool, uid: u32, gid: u32) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = config
        .resolve(&config.sandbox.workspaces)
        .join(agent.as_str());
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating the workspace {}", dir.display()))?;
        if root {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .with_context(|| format!("giving the workspace {} to uid {uid}", dir.display()))?;
        }
    } else if root {
        // Made by the operator (as root, most often): the agent could read it but not write
        // its results there. Warden does not take over files it did not make; it says so.
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(&dir)
            && meta.uid() != uid
        {
            eprintln!(
                "warden: the workspace {dir} belongs to uid {owner}, not to the agent's user \
                 (uid {uid}): the agent cannot write there. To give it to the agent: \
                 chown -R {uid}:{gid} {dir}",
                dir = dir.display(),
                owner = meta.uid(),
            );
        }
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving the workspace {}", dir.display()))?;
    // Its parent must let the sandbox user through to it.
    if let Some(parent) = dir.parent() {
        let mode = std::fs::metadata(parent)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        if root && mode & 0o001 == 0 {
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode | 0o711));
        }
    }
    Ok(dir)
}

/// What one run adds to the configuration.
struct ThisRun<'a> {
    agent: &'a AgentId,
    session: &'a SessionId,
    command: Vec<String>,
    workspace: &'a Path,
    /// The host uid and gid the agent runs as.
    host_ids: (u32, u32),
    /// The run's token for the MCP gateway inside, when there are MCP servers.
    mcp_token: Option<&'a str>,
    /// Canary credentials planted for the agent: (variable, value).
    canaries: &'a [(String, String)],
}

fn plan(config: &Config, run: &ThisRun<'_>) -> Plan {
    let ThisRun {
        agent,
        session,
        workspace,
        mcp_token,
        canaries,
        ..
    } = *run;
    let command = run.command.clone();
    let (host_uid, host_gid) = run.host_ids;
    let s = &config.sandbox;
    let extra = s.agents.get(agent.as_str());
    let mut binds = Vec::new();
    let mut symlinks = Vec::new();
    let ro = s
        .read_only
        .iter()
        .chain(extra.into_iter().flat_map(|a| &a.read_only));
    let rw = s
        .read_write
        .iter()
        .chain(extra.into_iter().flat_map(|a| &a.read_write));
    for (path, writable) in ro.map(|p| (p, false)).chain(rw.map(|p| (p, true))) {
        match std::fs::symlink_metadata(path) {
            Err(e) => {
                // The system defaults differ between machines (`/lib32`); a path the operator
                // named is meant to be there.
                let default = crate::config::DEFAULT_READ_ONLY
                    .iter()
                    .any(|d| std::path::Path::new(d) == path.as_path());
                if !default {
                    eprintln!(
                        "warden: {} (in {}) is not given to the agent: {e}",
                        path.display(),
                        if writable { "read_write" } else { "read_only" }
                    );
                }
                continue;
            }
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(to) = std::fs::read_link(path) {
                    symlinks.push((path.clone(), to));
                }
            }
            Ok(_) => binds.push(Bind {
                source: path.clone(),
                target: path.clone(),
                writable,
            }),
        }
    }
    binds.push(Bind {
        source: workspace.to_owned(),
        target: workspace.to_owned(),
        writable: true,
    });
    let journal = config.journal_path();
    let sibling = |suffix: &str| {
        let mut p = journal.clone().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    };
    let mut hidden: Vec<PathBuf> = vec![
        journal.clone(),
        sibling("-wal"),
        sibling("-shm"),
        sibling(".key"),
        sibling(".head"),
        config.agents_file(),
        config.policy_dir(),
        config.resolve(&s.runs),
        config.resolve(&config.monitor.quarantine_file),
        config.resolve(Path::new(crate::config::DEFAULT_FILE)),
    ];
    hidden.extend(config.http.tls_key.iter().map(|k| config.resolve(k)));
    let hidden = hidden
        .into_iter()
        .map(|p| p.canonicalize().unwrap_or(p))
        .collect();
    let proxy = format!("http://127.0.0.1:{}", s.egress_port);
    let mut env = vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("HOME".into(), workspace.display().to_string()),
        ("USER".into(), "agent".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("WARDEN_AGENT".into(), agent.as_str().to_owned()),
        ("WARDEN_SESSION".into(), session.as_str().to_owned()),
        ("NO_PROXY".into(), "127.0.0.1,localhost".into()),
        ("no_proxy".into(), "127.0.0.1,localhost".into()),
    ];
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        env.push((var.into(), proxy.clone()));
    }
    if let Ok(term) = std::env::var("TERM") {
        env.push(("TERM".into(), term));
    }
    // Credentials that open nothing: seen leaving, they are certain exfiltration.
    env.extend(canaries.iter().cloned());
    let mut listeners = vec![Listener {
        role: ListenerRole::Egress,
        port: s.egress_port,
    }];
    let mut files = Vec::new();
    if let Some(token) = mcp_token {
        let url = format!("http://127.0.0.1:{}/mcp", s.mcp_port);
        let client_config = serde_json::json!({
            "mcpServers": {
                "warden": {
                    "type": "http",
                    "url": url,
                    "headers": { "Authorization": format!("Bearer {token}") }
                }
            }
        });
        files.push(("mcp.json".to_owned(), format!("{client_config:#}\n")));
        env.push(("WARDEN_MCP_URL".into(), url));
        env.push(("WARDEN_MCP_TOKEN".into(), token.to_owned()));
        env.push(("WARDEN_MCP_CONFIG".into(), "/run/warden/mcp.json".into()));
        listeners.push(Listener {
            role: ListenerRole::Mcp,
            port: s.mcp_port,
        });
    }
    Plan {
        command,
        env,
        cwd: workspace.to_owned(),
        binds,
        symlinks,
        hidden,
        files: {
            let mut files = files;
            let creds: String = canaries.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            files.push(("credentials.env".to_owned(), creds));
            files
        },
        etc: vec![
            (
                "passwd".into(),
                format!(
                    "root:x:0:0:root:/:/usr/sbin/nologin\nagent:x:{}:{}:agent:{}:/bin/sh\n",
                    warden_contain::plan::INNER_UID,
                    warden_contain::plan::INNER_GID,
                    workspace.display()
                ),
            ),
            (
                "group".into(),
                format!("root:x:0:\nagent:x:{}:\n", warden_contain::plan::INNER_GID),
            ),
            (
                "hosts".into(),
                format!("127.0.0.1 localhost warden-{agent}\n::1 localhost\n"),
            ),
            ("hostname".into(), format!("warden-{agent}\n")),
        ],
        host_uid,
        host_gid,
        hostname: format!("warden-{agent}"),
        isolate_network: true,
        listeners,
        local_ports: s.local_ports.clone(),
        required: config.sandbox.required().unwrap_or_default(),
        limits: s.limits(),
        decide_exec: s.decide_exec,
        decide_connect: s.decide_connect,
    }
}

/// Serves Warden's listeners inside the sandbox.
fn serve_listeners(
    runtime: &tokio::runtime::Runtime,
    listeners: Vec<(ListenerRole, u16, OwnedFd)>,
    guard: &Guard,
    mcp: Option<Arc<warden_gateway::http::HttpGateway>>,
    egress: warden_gateway::egress::EgressOptions,
) {
    for (role, _port, fd) in listeners {
        let std_listener = std::net::TcpListener::from(fd);
        match role {
            ListenerRole::Egress => {
                let guard = guard.clone();
                let options = egress.clone();
                runtime.spawn(async move {
                    if std_listener.set_nonblocking(true).is_err() {
                        return;
                    }
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    let proxy = warden_gateway::egress::EgressProxy::new(guard, options);
                    if let Err(e) = proxy.serve(listener, std::future::pending()).await {
                        eprintln!("warden: the egress proxy stopped: {e}");
                    }
                });
            }
            ListenerRole::Mcp => {
                let Some(gateway) = mcp.clone() else { continue };
                runtime.spawn(async move {
                    if std_listener.set_nonblocking(true).is_err() {
                        return;
                    }
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    // Bounded as `warden up`'s listener is: the agent must not use up
                    // Warden's file descriptors by opening connections.
                    warden_gateway::http::serve::serve(
                        listener,
                        None,
                        gateway.router(),
                        warden_gateway::http::serve::Bounds::default(),
                        std::future::pending(),
                    )
                    .await;
                });
            }
        }
    }
}
