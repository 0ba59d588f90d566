//! `warden up`: the long-running gateway. Serves MCP over Streamable HTTP to authenticated
//! agents, in front of every configured upstream server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use warden_gateway::http::access::AllowedPeers;
use warden_gateway::http::tls;
use warden_gateway::http::{HttpGateway, HttpOptions, SessionLimits};
use warden_gateway::identity::Authenticator;
use warden_gateway::mcp::hub::{Hub, HubOptions};
use warden_gateway::mcp::names::check_server_name;
use warden_gateway::mcp::upstream::{Upstream, UpstreamOptions, UpstreamStatus};
use warden_journal::Journal;
use warden_policy::PolicySet;

use crate::config::Config;

/// How long requests in flight may take to finish once Warden is asked to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (default: ./warden.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen here instead of [http] listen (port 0 picks a free port; the address is printed).
    #[arg(long)]
    listen: Option<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.config.is_none() && !std::path::Path::new(crate::config::DEFAULT_FILE).exists() {
        bail!("no warden.toml in this folder: run `warden init` here, or give --config PATH");
    }
    let config = Config::load(args.config.as_deref())?;
    if config.servers.is_empty() {
        bail!("no upstream servers: configure at least one [servers.NAME] in warden.toml");
    }
    for (name, server) in &config.servers {
        if server.namespace {
            check_server_name(name)?;
        }
    }
    let policies = super::load_policies(&config)?;
    let agents_path = config.agents_file();
    let auth = Authenticator::load(&agents_path)
        .with_context(|| format!("reading the agents file {}", agents_path.display()))?;
    if auth.agent_count() == 0 {
        eprintln!(
            "warden: no agents yet; every request will be refused until you add one: \
             warden agent add NAME"
        );
    }
    let journal_path = config.journal_path();
    let journal = Journal::open(&journal_path, config.journal_options())
        .with_context(|| format!("opening the journal {}", journal_path.display()))?;
    let listen = args.listen.unwrap_or_else(|| config.http.listen.clone());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.http.worker_threads())
        .thread_stack_size(super::POLICY_STACK_BYTES)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(config, listen, policies, auth, journal));
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

async fn serve(
    config: Config,
    listen: String,
    policies: PolicySet,
    auth: Authenticator,
    journal: Journal,
) -> Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    if !local.ip().is_loopback() {
        eprintln!(
            "warden: listening on {local}, which is not loopback: agents on other hosts can reach \
             this endpoint (tokens are still required)"
        );
    }

    let monitor = config.monitor(crate::config::Facts::default())?;
    super::revoke_on_quarantine(&monitor, &config, &journal);
    let policies = Arc::new(policies);
    let control = match &config.control.listen {
        Some(addr) => Some(
            serve_control(&config, addr, &journal, monitor.clone(), policies.clone())
                .context("starting the control plane")?,
        ),
        None => None,
    };
    let hub = build_hub(&config, policies, journal.clone(), None, Some(monitor))?;
    let gateway = http_gateway(&config, hub.clone(), auth, local.port());
    let h = &config.http;

    let sweeper = {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                gateway.expire_idle().await;
            }
        })
    };

    let tls = match (&h.tls_cert, &h.tls_key) {
        (Some(cert), Some(key)) => Some(
            tls::acceptor(&config.resolve(cert), &config.resolve(key)).context("setting up TLS")?,
        ),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    say!("warden: serving MCP at {scheme}://{local}/mcp");
    match &control {
        Some((plane, at)) => {
            say!("warden: serving the control plane at http://{at}/api/v1");
            plane.announced();
        }
        None => say!(
            "warden: no control plane (API, dashboard): [control] listen is not set in the \
             configuration"
        ),
    }
    let reporters: Vec<_> = hub
        .upstreams()
        .map(|upstream| tokio::spawn(report_status(upstream.clone())))
        .collect();
    {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            super::mcp::shutdown_signal().await;
            eprintln!("warden: stopping; requests in flight get {SHUTDOWN_GRACE:?} to finish");
            // Upstreams stop with Warden (Ctrl-C reaches them too): not news for the operator.
            for reporter in reporters {
                reporter.abort();
            }
            gateway.begin_shutdown();
        });
    }
    let stopped = {
        let gateway = gateway.clone();
        async move { gateway.stopped().await }
    };
    let bounds = warden_gateway::http::serve::Bounds {
        max_connections: config.http.max_connections,
        ..Default::default()
    };
    let serving = async {
        warden_gateway::http::serve::serve(listener, tls, gateway.router(), bounds, stopped).await;
        anyhow::Ok(())
    };
    // Event streams end when stopping begins; a request still waiting on its upstream gets
    // a grace period, then Warden stops anyway (its outcome is journaled as far as known).
    tokio::select! {
        result = serving => result?,
        () = async {
            gateway.stopped().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => eprintln!("warden: requests still in flight after {SHUTDOWN_GRACE:?}; stopping anyway"),
    }
    sweeper.abort();
    if let Some((control, _)) = control {
        control.stop().await;
    }
    gateway.close_all("Warden shut down").await;
    if let Err(err) = journal.close().await {
        tracing::error!(%err, "closing the journal failed");
    }
    Ok(ExitCode::SUCCESS)
}

/// Serves the operators' REST API on its own listener (never the agents'), on a runtime of
/// its own: one thread for its async work and [`CONTROL_BLOCKING_THREADS`] for journal reads,
/// all at the lowest CPU priority and on a share of the CPUs ([`Placement`]). However many
/// requests operators send, none runs on the gateway's runtime workers, the CPU goes to the
/// gateway first, and requests beyond `[control] max_concurrent_requests` are answered 503 at
/// once.
fn serve_control(
    config: &Config,
    addr: &str,
    journal: &Journal,
    monitor: Arc<warden_monitor::Monitor>,
    policies: Arc<PolicySet>,
) -> Result<(ControlPlane, std::net::SocketAddr)> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    listener
        .set_nonblocking(true)
        .context("setting up the control plane's listener")?;
    let local = listener.local_addr().context("reading the bound address")?;
    if !local.ip().is_loopback() {
        eprintln!(
            "warden: the control plane listens on {local}, which is not loopback: put TLS in \
             front of it (operator tokens are still required)"
        );
    }
    let mut state = warden_server::ControlState::new(
        journal.clone(),
        config.journal_path(),
        monitor.quarantine().clone(),
        warden_server::OperatorStore::new(config.resolve(&config.control.operators_file)),
    );
    state.policies = Some(policies);
    state.detector_settings = config.monitor.detector_settings();
    state.monitor = Some(monitor);
    let runs_dir = config.resolve(&config.sandbox.runs);
    state.killer = Some(Box::new(move |agent| {
        super::kill::kill_sandboxes(&runs_dir, agent).map_err(|e| format!("{e:#}"))
    }));
    // The first_seen detector's baselines, as configured (`warden learn --write-baseline`).
    let baselines: Option<serde_json::Value> = config
        .monitor
        .detectors
        .get("first_seen")
        .and_then(|t| t.get("baseline"))
        .and_then(|b| serde_json::to_value(b).ok());
    state.baseline = Some(Box::new(move |agent| {
        baselines.as_ref()?.get(agent.as_str()).cloned()
    }));
    let state = Arc::new(state);
    let app = warden_server::api::with_host_check(
        warden_server::api::limited_router(
            state.clone(),
            config.control.max_concurrent_requests,
            config.control.max_requests_per_second,
        ),
        local.port(),
        &config.control.allowed_hosts,
    );
    let placement = Placement::new();
    let on_start = placement.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(CONTROL_BLOCKING_THREADS)
        .thread_stack_size(super::POLICY_STACK_BYTES)
        .thread_name("warden-control")
        .on_thread_start(move || on_start.apply())
        .build()
        .context("starting the control plane's runtime")?;
    let listener = {
        let _in_runtime = runtime.enter();
        tokio::net::TcpListener::from_std(listener)
            .context("setting up the control plane's listener")?
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (announce, announced) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("warden-control".into())
        .stack_size(super::POLICY_STACK_BYTES)
        .spawn(move || {
            placement.apply();
            runtime.block_on(async move {
                // The fleet view reads the whole journal once; doing it now keeps that off the
                // first operator's request (tens of seconds over millions of records).
                tokio::task::spawn_blocking(move || {
                    // "ready" follows the address line (an error dropping `announce` goes on).
                    let _ = announced.recv();
                    let started = std::time::Instant::now();
                    let built = warden_journal::JournalReader::open(&state.journal_path)
                        .and_then(|reader| state.fleet.catch_up(&reader));
                    match built {
                        Ok(seq) => say!(
                            "warden: control plane ready: fleet view built from {seq} records \
                             in {:.2} s",
                            started.elapsed().as_secs_f64()
                        ),
                        Err(err) => eprintln!("warden: could not build the fleet view yet: {err}"),
                    }
                });
                // Stops when asked, or when the gateway's side is gone.
                let bounds = warden_gateway::http::serve::Bounds {
                    max_connections: CONTROL_MAX_CONNECTIONS,
                    // Event streams of operators do not end by themselves; reads still
                    // running change nothing. Stopping does not wait for them.
                    drain: Duration::ZERO,
                    ..Default::default()
                };
                let stopped = async {
                    let _ = stopped.await;
                };
                warden_gateway::http::serve::serve(listener, None, app, bounds, stopped).await;
            });
            // Journal reads still running are abandoned, not waited for: they change nothing.
            runtime.shutdown_timeout(CONTROL_SHUTDOWN);
        })
        .context("starting the control plane's thread")?;
    Ok((
        ControlPlane {
            stop,
            announce,
            thread,
        },
        local,
    ))
}

/// Connections to the control plane served at once (operators, dashboards, scripts).
const CONTROL_MAX_CONNECTIONS: usize = 256;

/// Threads of the control plane's blocking pool (journal reads, verification, the fleet
/// view); its async work has one thread.
const CONTROL_BLOCKING_THREADS: usize = 2;

/// The nice value of the control plane's threads: the lowest CPU priority there is, so that
/// when both want the CPU the gateway's threads (nice 0) get it (a flood measured in
/// docs/benchmarks.md); operators' requests still progress, more slowly, under contention.
const CONTROL_NICE: i32 = 19;

/// The control plane's threads run on one in this many of the process's CPUs (at least one;
/// with a single CPU, on it): the rest are the gateway's alone.
const CONTROL_CPU_SHARE_DIVISOR: usize = 4;

/// How long the control plane's journal reads may run on once Warden stops.
const CONTROL_SHUTDOWN: Duration = Duration::from_secs(1);

/// The control plane, running on its own thread and runtime.
struct ControlPlane {
    stop: tokio::sync::oneshot::Sender<()>,
    /// Told once the control plane's address is printed: the fleet view is built after it.
    announce: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ControlPlane {
    /// Its address has been printed: "control plane ready" may follow.
    fn announced(&self) {
        let _ = self.announce.send(());
    }

    /// Stops serving and waits (at most [`CONTROL_SHUTDOWN`]) for its thread to end.
    async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        // Joining blocks, so not on a gateway worker.
        if let Ok(Err(_)) = tokio::task::spawn_blocking(move || thread.join()).await {
            eprintln!("warden: the control plane's thread panicked");
        }
    }
}

/// Where the control plane's threads run: in Linux's `SCHED_IDLE` class (else at
/// [`CONTROL_NICE`]) and, with two CPUs or more, only on the last quarter of the process's CPUs
/// ([`CONTROL_CPU_SHARE_DIVISOR`], at least one). On Linux these are per thread and inherited
/// by the threads a thread starts (verification's hasher, say).
#[derive(Clone)]
struct Placement {
    #[cfg(target_os = "linux")]
    cpus: Option<rustix::thread::CpuSet>,
}

impl Placement {
    /// The placement, from the CPUs the calling thread may use.
    fn new() -> Self {
        #[cfg(target_os = "linux")]
        {
            let cpus = rustix::thread::sched_getaffinity(None)
                .ok()
                .and_then(|allowed| {
                    let usable: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
                        .filter(|&cpu| allowed.is_set(cpu))
                        .collect();
                    if usable.len() < 2 {
                        return None;
                    }
                    let share = (usable.len() / CONTROL_CPU_SHARE_DIVISOR).max(1);
                    let mut set = rustix::thread::CpuSet::new();
                    for &cpu in &usable[usable.len() - share..] {
                        set.set(cpu);
                    }
                    Some(set)
                });
            Self { cpus }
        }
        #[cfg(not(target_os = "linux"))]
        Self {}
    }

    /// Applies it to the calling thread. Best effort: without it the control plane still has
    /// threads of its own.
    fn apply(&self) {
        #[cfg(target_os = "linux")]
        {
            let me = rustix::thread::gettid();
            if let Err(err) = rustix::process::setpriority_process(Some(me), CONTROL_NICE) {
                tracing::debug!(%err, "could not lower the control plane thread's priority");
            }
            if let Err(err) = idle_policy() {
                tracing::debug!(%err, "could not put the control plane thread in SCHED_IDLE");
            }
            if let Some(cpus) = &self.cpus
                && let Err(err) = rustix::thread::sched_setaffinity(None, cpus)
            {
                tracing::debug!(%err, "could not confine the control plane thread's CPUs");
            }
        }
    }
}

/// Puts the calling thread in `SCHED_IDLE`: a gateway thread waking up on its CPU takes it
/// over at once. At nice 19 it did not: the scheduler let the control plane's thread finish
/// its time slice first, and a flood of journal pages raised the gateway's p90 from 1.0 to
/// 3.3 ms (docs/benchmarks.md). It still gets a small share of a busy CPU, so operators'
/// requests progress under load, slowly.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn idle_policy() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is the calling
    // thread, and moving to SCHED_IDLE needs no privilege.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The upstreams of the configuration behind one hub, started (and supervised) now.
pub fn build_hub(
    config: &Config,
    policies: Arc<PolicySet>,
    journal: Journal,
    parent: Option<warden_core::SessionId>,
    monitor: Option<Arc<warden_monitor::Monitor>>,
) -> Result<Arc<Hub>> {
    let session = config.session_options();
    let upstream_options = UpstreamOptions {
        max_message_bytes: session.max_message_bytes,
        initialize_timeout: session.initialize_timeout,
        ..UpstreamOptions::default()
    };
    let mut upstreams: Vec<Arc<Upstream>> = Vec::new();
    for (name, server) in &config.servers {
        let target = config.upstream_target(name, server)?;
        upstreams.push(Upstream::start(
            name.clone(),
            target,
            upstream_options.clone(),
        ));
    }
    let h = &config.http;
    let plain = config
        .servers
        .iter()
        .find(|(_, s)| !s.namespace)
        .map(|(n, _)| n.clone());
    Ok(Hub::new(
        upstreams,
        plain,
        policies,
        journal,
        HubOptions {
            call_timeout: session.call_timeout,
            max_in_flight_per_agent: h.max_in_flight_per_agent,
            rate_per_agent: h.requests_per_second_per_agent,
            burst_per_agent: h.burst_per_agent,
            redact_secrets: config.responses.redact_secrets,
            parent,
            monitor,
            hold: config.hold(),
        },
    ))
}

/// The Streamable HTTP endpoint in front of `hub`, for a listener on `port`.
pub fn http_gateway(
    config: &Config,
    hub: Arc<Hub>,
    auth: Authenticator,
    port: u16,
) -> Arc<HttpGateway> {
    let h = &config.http;
    HttpGateway::new(
        hub,
        auth,
        AllowedPeers::new(port, &h.allowed_hosts, &h.allowed_origins),
        HttpOptions {
            max_body_bytes: h.max_body_bytes,
            body_timeout: Duration::from_secs_f64(h.body_timeout_secs),
            sessions: SessionLimits {
                per_agent: h.sessions_per_agent,
                total: h.max_sessions,
                idle: Duration::from_secs_f64(h.session_idle_secs),
            },
        },
    )
}

/// Tells the operator (on stdout) each time an upstream becomes ready or goes down.
async fn report_status(upstream: Arc<Upstream>) {
    let mut changes = upstream.status_changes();
    loop {
        let ready = *changes.borrow_and_update();
        if ready {
            say!("warden: upstream \"{}\" ready", upstream.name());
        } else if let UpstreamStatus::Down { reason, .. } = upstream.status() {
            match upstream.last_stderr() {
                Some(line) => say!(
                    "warden: upstream \"{}\" down: {reason}; its last lines on stderr: {line}",
                    upstream.name()
                ),
                None => say!("warden: upstream \"{}\" down: {reason}", upstream.name()),
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}
