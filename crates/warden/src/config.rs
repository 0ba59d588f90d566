//! `warden.toml`: where the journal and policies live, the limits of a session, and the
//! upstream servers. Unknown keys are errors, so a typo never silently weakens a setting.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use warden_core::ServerName;
use warden_gateway::mcp::upstream::{HttpTarget, UpstreamTarget};
use warden_gateway::{SessionOptions, UpstreamCommand};
use warden_journal::{JournalOptions, SyncMode};

mod monitor;
mod sandbox;
pub use monitor::{Facts, MonitorSection};
pub use sandbox::{DEFAULT_READ_ONLY, SandboxSection};

/// The file looked for in the current directory when `--config` is not given.
pub const DEFAULT_FILE: &str = "warden.toml";

/// The whole configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub journal: JournalSection,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub servers: BTreeMap<ServerName, ServerSection>,
    #[serde(default)]
    pub agents: AgentsSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub responses: ResponsesSection,
    #[serde(default)]
    pub sandbox: SandboxSection,
    #[serde(default)]
    pub monitor: MonitorSection,
    #[serde(default)]
    pub control: ControlSection,
    #[serde(default)]
    pub approvals: ApprovalsSection,
    /// The folder relative paths are resolved against (the config file's).
    #[serde(skip)]
    pub base: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    #[serde(default = "default_journal_path")]
    pub path: PathBuf,
    #[serde(default)]
    pub sync: SyncSetting,
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// How long an append waits for another Warden process holding the journal's write lock.
    #[serde(default = "default_busy_timeout_ms")]
    pub busy_timeout_ms: u64,
}

impl Default for JournalSection {
    fn default() -> Self {
        Self {
            path: default_journal_path(),
            sync: SyncSetting::default(),
            checkpoint_every: default_checkpoint_every(),
            busy_timeout_ms: default_busy_timeout_ms(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncSetting {
    /// Durable against power loss: every group commit is fsynced.
    #[default]
    Full,
    /// Durable against a crash of Warden, not of the machine.
    Normal,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    #[serde(default = "default_policy_dir")]
    pub dir: PathBuf,
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            dir: default_policy_dir(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    #[serde(default = "default_initialize_timeout")]
    pub initialize_timeout_secs: f64,
    #[serde(default = "default_call_timeout")]
    pub call_timeout_secs: f64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_message_bytes: default_max_message_bytes(),
            max_in_flight: default_max_in_flight(),
            initialize_timeout_secs: default_initialize_timeout(),
            call_timeout_secs: default_call_timeout(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The program and its arguments (a server Warden spawns and speaks to over stdio).
    #[serde(default)]
    pub command: Vec<String>,
    /// Or: the endpoint of a remote Streamable HTTP server (`warden up` only).
    pub url: Option<String>,
    /// Headers Warden sends to the remote server. Agents never see them.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Environment variables set for a spawned server, over Warden's own.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// An environment variable holding a token Warden presents to the remote server as
    /// `Authorization: Bearer`, so that the secret need not be written in this file.
    pub bearer_token_env: Option<String>,
    /// Its working directory, relative to the config file.
    pub cwd: Option<PathBuf>,
    /// `warden up` presents its tools as `NAME__tool` and its resources as `NAME+uri`. At most
    /// one server may set this to false and keep its own names.
    #[serde(default = "default_true")]
    pub namespace: bool,
}

pub(crate) fn default_true() -> bool {
    true
}

/// What Warden does with what agents read (tool results, resource contents).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsesSection {
    /// Replace secrets the scanner finds (private keys, cloud keys, tokens, passwords) before
    /// the agent sees them. Their labels are journaled either way.
    #[serde(default = "default_true")]
    pub redact_secrets: bool,
}

impl Default for ResponsesSection {
    fn default() -> Self {
        Self {
            redact_secrets: true,
        }
    }
}

/// `warden up`: the Streamable HTTP endpoint and the limits it puts on each agent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// The address to listen on. Loopback by default: exposing Warden is a decision.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Host header values accepted besides the loopback names of the port (DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Origin header values accepted besides the loopback origins of the port.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: f64,
    #[serde(default = "default_sessions_per_agent")]
    pub sessions_per_agent: usize,
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    #[serde(default = "default_session_idle")]
    pub session_idle_secs: f64,
    #[serde(default = "default_agent_in_flight")]
    pub max_in_flight_per_agent: usize,
    #[serde(default = "default_agent_rate")]
    pub requests_per_second_per_agent: f64,
    #[serde(default = "default_agent_burst")]
    pub burst_per_agent: f64,
    /// Serve HTTPS with this PEM certificate chain (and `tls_key`), relative to this file.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Threads serving agents' requests. Absent: one per CPU but one, at least one, since the
    /// journal's writer works on a thread of its own beside them (and on two cores, one
    /// thread measured less CPU per call and a shorter tail than two; docs/benchmarks.md).
    #[serde(default)]
    pub worker_threads: Option<usize>,
    /// Connections served at once, before any token is seen; one over is closed at once.
    /// A connection must send its request head within 30 s.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl HttpSection {
    /// The threads of [`HttpSection::worker_threads`], the default filled in.
    pub fn worker_threads(&self) -> usize {
        self.worker_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .max(1)
        })
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        // serde's defaults and these are one and the same.
        toml::from_str("").unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}

fn default_listen() -> String {
    "127.0.0.1:7411".into()
}
fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_body_timeout() -> f64 {
    10.0
}
fn default_sessions_per_agent() -> usize {
    1_000
}
fn default_max_connections() -> usize {
    1_024
}
fn default_max_sessions() -> usize {
    20_000
}
fn default_session_idle() -> f64 {
    3_600.0
}
fn default_agent_in_flight() -> usize {
    64
}
fn default_agent_rate() -> f64 {
    500.0
}
fn default_agent_burst() -> f64 {
    1_000.0
}

/// `warden up`'s control plane: the operators' REST API, on its own listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// Where to serve it (loopback by default); absent: no control plane.
    #[serde(default)]
    pub listen: Option<String>,
    /// Host names (`name:port`) the control plane answers to besides its loopback names, when
    /// it is reached by another name (a proxy, a DNS name). Others are refused (DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Operators and the digests of their tokens (`warden user add`).
    #[serde(default = "default_operators_file")]
    pub operators_file: PathBuf,
    /// API requests worked on at once; one more is answered 503 with `Retry-After` at once,
    /// so a flood of requests queues nowhere (operator actions have room of their own).
    #[serde(default = "default_control_max_concurrent")]
    pub max_concurrent_requests: usize,
    /// API requests (and dashboard files) started per second; one over the rate waits for
    /// its turn, up to 2 s, so a flooding client is slowed to the rate (operator actions are
    /// not paced).
    #[serde(default = "default_control_per_second")]
    pub max_requests_per_second: u32,
}

impl Default for ControlSection {
    fn default() -> Self {
        Self {
            listen: None,
            allowed_hosts: Vec::new(),
            operators_file: default_operators_file(),
            max_concurrent_requests: default_control_max_concurrent(),
            max_requests_per_second: default_control_per_second(),
        }
    }
}

fn default_control_per_second() -> u32 {
    warden_server::api::DEFAULT_MAX_REQUESTS_PER_SECOND
}

fn default_control_max_concurrent() -> usize {
    warden_server::api::DEFAULT_MAX_CONCURRENT_REQUESTS
}

fn default_operators_file() -> PathBuf {
    "operators.json".into()
}

/// Calls decided `ask`: held for a human, or refused at once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsSection {
    /// Whether such calls wait for an answer; absent: they do when a control plane is
    /// configured (`[control] listen`), where someone can answer.
    #[serde(default)]
    pub hold: Option<bool>,
    /// How long a held call waits before it is refused.
    #[serde(default = "default_approval_timeout")]
    pub timeout_secs: f64,
}

impl Default for ApprovalsSection {
    fn default() -> Self {
        Self {
            hold: None,
            timeout_secs: default_approval_timeout(),
        }
    }
}

fn default_approval_timeout() -> f64 {
    120.0
}

/// Where the agents and the digests of their bearer tokens are kept (`warden agent`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsSection {
    #[serde(default = "default_agents_file")]
    pub file: PathBuf,
}

impl Default for AgentsSection {
    fn default() -> Self {
        Self {
            file: default_agents_file(),
        }
    }
}

fn default_agents_file() -> PathBuf {
    "agents.json".into()
}
fn default_journal_path() -> PathBuf {
    "warden-journal.db".into()
}
fn default_checkpoint_every() -> u64 {
    10_000
}
fn default_busy_timeout_ms() -> u64 {
    5_000
}
fn default_policy_dir() -> PathBuf {
    "policies".into()
}
fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_in_flight() -> usize {
    256
}
fn default_initialize_timeout() -> f64 {
    30.0
}
fn default_call_timeout() -> f64 {
    300.0
}

impl Config {
    /// Loads `path`, or `./warden.toml` when it exists, or the defaults relative to the current
    /// directory.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let path = match path {
            Some(p) => Some(p.to_path_buf()),
            None => {
                let default = PathBuf::from(DEFAULT_FILE);
                default.exists().then_some(default)
            }
        };
        let Some(path) = path else {
            return Ok(Config {
                base: std::env::current_dir().context("reading the current directory")?,
                ..Config::default()
            });
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the configuration {}", path.display()))?;
        let mut config = Self::parse(&text).with_context(|| format!("in {}", path.display()))?;
        config.base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(config)
    }

    /// Parses and checks a configuration text.
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        let l = &self.limits;
        if !(1024..=256 * 1024 * 1024).contains(&l.max_message_bytes) {
            bail!("limits.max_message_bytes must be between 1024 and 268435456");
        }
        if !(1..=65_536).contains(&l.max_in_flight) {
            bail!("limits.max_in_flight must be between 1 and 65536");
        }
        for (name, secs) in [
            ("initialize_timeout_secs", l.initialize_timeout_secs),
            ("call_timeout_secs", l.call_timeout_secs),
        ] {
            if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
                bail!("limits.{name} must be a number of seconds above 0 and at most 86400");
            }
        }
        self.sandbox.check()?;
        self.monitor.check()?;
        let t = self.approvals.timeout_secs;
        if !(t.is_finite() && t > 0.0 && t <= 86_400.0) {
            bail!("approvals.timeout_secs must be a number of seconds above 0 and at most 86400");
        }
        if self.journal.checkpoint_every == 0 {
            bail!("journal.checkpoint_every must be at least 1");
        }
        if !(1..=4096).contains(&self.control.max_concurrent_requests) {
            bail!("control.max_concurrent_requests must be between 1 and 4096");
        }
        if !(1..=100_000).contains(&self.control.max_requests_per_second) {
            bail!("control.max_requests_per_second must be between 1 and 100000");
        }
        let h = &self.http;
        if h.tls_cert.is_some() != h.tls_key.is_some() {
            bail!("http.tls_cert and http.tls_key go together: give both or neither");
        }
        for (name, secs) in [
            ("body_timeout_secs", h.body_timeout_secs),
            ("session_idle_secs", h.session_idle_secs),
        ] {
            if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
                bail!("http.{name} must be a number of seconds above 0 and at most 86400");
            }
        }
        if !(1024..=256 * 1024 * 1024).contains(&h.max_body_bytes) {
            bail!("http.max_body_bytes must be between 1024 and 268435456");
        }
        for (name, n) in [
            ("sessions_per_agent", h.sessions_per_agent),
            ("max_sessions", h.max_sessions),
            ("max_in_flight_per_agent", h.max_in_flight_per_agent),
        ] {
            if !(1..=1_000_000).contains(&n) {
                bail!("http.{name} must be between 1 and 1000000");
            }
        }
        if h.worker_threads.is_some_and(|n| !(1..=1024).contains(&n)) {
            bail!("http.worker_threads must be between 1 and 1024");
        }
        for (name, x) in [
            (
                "requests_per_second_per_agent",
                h.requests_per_second_per_agent,
            ),
            ("burst_per_agent", h.burst_per_agent),
        ] {
            if !(x.is_finite() && x >= 1.0) {
                bail!("http.{name} must be a number of at least 1");
            }
        }
        let plain: Vec<&ServerName> = self
            .servers
            .iter()
            .filter(|(_, s)| !s.namespace)
            .map(|(n, _)| n)
            .collect();
        if plain.len() > 1 {
            bail!(
                "servers {} all set namespace = false; at most one server can keep its own names",
                plain
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for (name, server) in &self.servers {
            match (&server.url, server.command.is_empty()) {
                (None, true) => bail!(
                    "servers.{name} needs a command (a program to spawn) or a url (a remote \
                     Streamable HTTP server)"
                ),
                (Some(_), false) => {
                    bail!("servers.{name} has both a command and a url; give one of them")
                }
                (Some(url), true) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        bail!("servers.{name}.url must start with http:// or https://");
                    }
                    if !server.env.is_empty() {
                        bail!("servers.{name}.env applies to a spawned (command) server only");
                    }
                }
                (None, false) => {
                    if !server.headers.is_empty() || server.bearer_token_env.is_some() {
                        bail!(
                            "servers.{name}: headers and bearer_token_env apply to a url server only"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// A path from the configuration, resolved against the config file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    /// The detectors and the quarantine list, with Warden's own files and ports protected.
    pub fn monitor(&self, mut facts: Facts) -> Result<std::sync::Arc<warden_monitor::Monitor>> {
        let journal = self.journal_path();
        let sibling = |suffix: &str| {
            let mut p = journal.clone().into_os_string();
            p.push(suffix);
            PathBuf::from(p)
        };
        let quarantine = self.resolve(&self.monitor.quarantine_file);
        facts.protected_paths.extend([
            journal.clone(),
            sibling(".key"),
            sibling(".head"),
            self.policy_dir(),
            self.agents_file(),
            quarantine.clone(),
            self.resolve(Path::new(DEFAULT_FILE)),
        ]);
        facts.protected_paths = facts
            .protected_paths
            .into_iter()
            .map(|p| {
                p.canonicalize()
                    .or_else(|_| std::path::absolute(&p))
                    .unwrap_or(p)
            })
            .collect();
        if let Ok(addr) = self.http.listen.parse::<std::net::SocketAddr>() {
            facts.protected_ports.push(addr.port());
        }
        self.monitor.build(quarantine, &facts)
    }

    pub fn journal_path(&self) -> PathBuf {
        self.resolve(&self.journal.path)
    }

    pub fn policy_dir(&self) -> PathBuf {
        self.resolve(&self.policy.dir)
    }

    pub fn agents_file(&self) -> PathBuf {
        self.resolve(&self.agents.file)
    }

    /// Whether, and how long, calls decided `ask` wait for a human.
    pub fn hold(&self) -> Option<warden_gateway::approval::HoldOptions> {
        let hold = self.approvals.hold.unwrap_or(self.control.listen.is_some());
        hold.then(|| warden_gateway::approval::HoldOptions {
            timeout: Duration::from_secs_f64(self.approvals.timeout_secs),
        })
    }

    pub fn journal_options(&self) -> JournalOptions {
        JournalOptions {
            sync: match self.journal.sync {
                SyncSetting::Full => SyncMode::Full,
                SyncSetting::Normal => SyncMode::Normal,
            },
            checkpoint_every: self.journal.checkpoint_every,
            busy_timeout: Duration::from_millis(self.journal.busy_timeout_ms),
            ..JournalOptions::default()
        }
    }

    /// How to start the upstream server `section`. A program given as a path is relative to the
    /// configuration, like every other path in it.
    pub fn upstream_command(&self, section: &ServerSection) -> UpstreamCommand {
        // `check` guarantees the command names a program.
        let (program, rest) = section
            .command
            .split_first()
            .map_or(("", &[][..]), |(p, r)| (p.as_str(), r));
        let program: OsString = if program.contains('/') {
            self.resolve(Path::new(program)).into()
        } else {
            program.into()
        };
        UpstreamCommand {
            program,
            env: section
                .env
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
            env_remove: self.credential_variables(),
            args: rest.iter().map(OsString::from).collect(),
            cwd: Some(
                section
                    .cwd
                    .as_deref()
                    .map_or_else(|| self.base.clone(), |c| self.resolve(c)),
            ),
        }
    }

    /// The environment variables that hold Warden's credentials for remote servers: no
    /// spawned server inherits them.
    pub fn credential_variables(&self) -> Vec<OsString> {
        self.servers
            .values()
            .filter_map(|s| s.bearer_token_env.as_ref())
            .map(OsString::from)
            .collect()
    }

    /// Where the server `section` is, for `warden up`: a program or a remote endpoint with the
    /// credentials Warden presents to it.
    pub fn upstream_target(
        &self,
        name: &ServerName,
        section: &ServerSection,
    ) -> Result<UpstreamTarget> {
        let Some(url) = &section.url else {
            return Ok(UpstreamTarget::Stdio(self.upstream_command(section)));
        };
        let mut headers: Vec<(String, String)> = section
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(var) = &section.bearer_token_env {
            let token = std::env::var(var).with_context(|| {
                format!("servers.{name}.bearer_token_env names {var}, which is not set")
            })?;
            headers.push(("authorization".into(), format!("Bearer {token}")));
        }
        Ok(UpstreamTarget::Http(HttpTarget {
            url: url.clone(),
            headers,
        }))
    }

    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            max_message_bytes: self.limits.max_message_bytes,
            max_in_flight: self.limits.max_in_flight,
            initialize_timeout: Duration::from_secs_f64(self.limits.initialize_timeout_secs),
            call_timeout: Duration::from_secs_f64(self.limits.call_timeout_secs),
            redact_secrets: self.responses.redact_secrets,
            ..SessionOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.limits.max_message_bytes, 4 * 1024 * 1024);
        assert_eq!(c.policy.dir, PathBuf::from("policies"));
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let err = Config::parse("[journal]\npath = \"j.db\"\nsynk = \"full\"\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("synk"), "{text}");
        assert!(text.contains("line 3"), "{text}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Config::parse("[limits]\nmax_message_bytes = 10\n").is_err());
        assert!(Config::parse("[limits]\ncall_timeout_secs = -1\n").is_err());
        assert!(Config::parse("[journal]\nsync = \"sometimes\"\n").is_err());
        assert!(Config::parse("[servers.\"../x\"]\ncommand = [\"a\"]\n").is_err());
        assert!(Config::parse("[servers.files]\ncommand = []\n").is_err());
        assert!(Config::parse("[agents]\npath = \"a.json\"\n").is_err());
        assert!(Config::parse("[control]\nmax_concurrent_requests = 0\n").is_err());
        assert!(Config::parse("[control]\nmax_requests_per_second = 0\n").is_err());
        assert!(Config::parse("[http]\nworker_threads = 0\n").is_err());
    }

    #[test]
    fn worker_threads_default_to_one_per_cpu_but_one() {
        let c = Config::parse("[http]\nworker_threads = 3\n").unwrap();
        assert_eq!(c.http.worker_threads(), 3);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let c = Config::parse("").unwrap();
        assert_eq!(c.http.worker_threads(), cpus.saturating_sub(1).max(1));
    }

    #[test]
    fn the_agent_file_is_next_to_the_config_unless_named() {
        let mut c = Config::parse("").unwrap();
        c.base = PathBuf::from("/etc/warden");
        assert_eq!(c.agents_file(), PathBuf::from("/etc/warden/agents.json"));
        let mut c = Config::parse("[agents]\nfile = \"keys/agents.json\"\n").unwrap();
        c.base = PathBuf::from("/etc/warden");
        assert_eq!(
            c.agents_file(),
            PathBuf::from("/etc/warden/keys/agents.json")
        );
    }
}
