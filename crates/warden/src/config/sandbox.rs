//! `[sandbox]`: what `warden run` gives a contained agent — the paths it sees, the user it runs
//! as, its limits, and the containment it requires.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::Deserialize;
use warden_contain::{Layer, Limits};

/// The system paths a program needs to run, read-only. `/etc` is not given whole: it holds
/// secrets (`shadow`, keys); only the files programs read at start are. The sandbox gets its
/// own `passwd`, `group`, `hosts` and `hostname`, naming its user `agent`.
pub const DEFAULT_READ_ONLY: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/etc/alternatives",
    "/etc/ca-certificates",
    "/etc/ssl/certs",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSection {
    /// Host paths the agent may read (and execute); missing ones are skipped.
    #[serde(default = "default_read_only")]
    pub read_only: Vec<PathBuf>,
    /// Host paths the agent may also write, besides its workspace.
    #[serde(default)]
    pub read_write: Vec<PathBuf>,
    /// The folder holding one workspace per agent (`<workspaces>/<agent>`), created on first
    /// run; the agent's home and working directory.
    #[serde(default = "default_workspaces")]
    pub workspaces: PathBuf,
    /// Where running sandboxes are recorded, for `warden kill`.
    #[serde(default = "default_runs")]
    pub runs: PathBuf,
    /// The host user (and group) the agent runs as when Warden runs as root. Without root,
    /// the agent runs as Warden's own user.
    #[serde(default = "default_user")]
    pub user: u32,
    #[serde(default = "default_user")]
    pub group: u32,
    #[serde(default = "default_max_processes")]
    pub max_processes: u32,
    #[serde(default = "default_max_memory_mb")]
    pub max_memory_mb: u64,
    #[serde(default = "default_cpu_percent")]
    pub cpu_percent: u32,
    /// The port of the egress proxy inside the sandbox (`http_proxy`).
    #[serde(default = "default_egress_port")]
    pub egress_port: u16,
    /// The port of the MCP gateway inside the sandbox.
    #[serde(default = "default_mcp_port")]
    pub mcp_port: u16,
    /// Ports of the agent's own local servers it may connect to inside the sandbox.
    #[serde(default)]
    pub local_ports: Vec<u16>,
    /// Let the egress proxy reach this host's loopback addresses (local development, tests).
    /// Off by default: Warden's host runs services agents must not reach. Warden's own ports
    /// stay refused either way.
    #[serde(default)]
    pub egress_allow_loopback: bool,
    /// Decide every program start (`exec`) with policy.
    #[serde(default = "crate::config::default_true")]
    pub decide_exec: bool,
    /// Decide every connection (`connect`) and refuse raw and UDP sockets.
    #[serde(default = "crate::config::default_true")]
    pub decide_connect: bool,
    /// The layers `warden run` refuses to start without (default: all of them). Allow a
    /// missing one for one run with `--allow-degraded LAYER`.
    #[serde(default = "default_require")]
    pub require: Vec<String>,
    /// Per-agent additions: `[sandbox.agents.NAME] read_only = [...]`, `read_write = [...]`.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentSandbox>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSandbox {
    #[serde(default)]
    pub read_only: Vec<PathBuf>,
    #[serde(default)]
    pub read_write: Vec<PathBuf>,
}

impl Default for SandboxSection {
    fn default() -> Self {
        Self {
            read_only: default_read_only(),
            read_write: Vec::new(),
            workspaces: default_workspaces(),
            runs: default_runs(),
            user: default_user(),
            group: default_user(),
            max_processes: default_max_processes(),
            max_memory_mb: default_max_memory_mb(),
            cpu_percent: default_cpu_percent(),
            egress_port: default_egress_port(),
            mcp_port: default_mcp_port(),
            local_ports: Vec::new(),
            egress_allow_loopback: false,
            decide_exec: true,
            decide_connect: true,
            require: default_require(),
            agents: BTreeMap::new(),
        }
    }
}

impl SandboxSection {
    pub fn check(&self) -> Result<()> {
        self.required()?;
        if !(8..=1_000_000).contains(&self.max_processes) {
            bail!("sandbox.max_processes must be between 8 and 1000000");
        }
        if !(16..=1_048_576).contains(&self.max_memory_mb) {
            bail!("sandbox.max_memory_mb must be between 16 and 1048576");
        }
        if !(1..=10_000).contains(&self.cpu_percent) {
            bail!("sandbox.cpu_percent must be between 1 and 10000");
        }
        if self.egress_port == 0 || self.mcp_port == 0 || self.egress_port == self.mcp_port {
            bail!("sandbox.egress_port and sandbox.mcp_port must be two different ports");
        }
        for p in self.read_only.iter().chain(&self.read_write).chain(
            self.agents
                .values()
                .flat_map(|a| a.read_only.iter().chain(&a.read_write)),
        ) {
            if !p.is_absolute() {
                bail!("sandbox paths must be absolute: {}", p.display());
            }
        }
        Ok(())
    }

    /// The required layers, parsed.
    pub fn required(&self) -> Result<Vec<Layer>> {
        self.require
            .iter()
            .map(|name| {
                Layer::parse(name).ok_or_else(|| {
                    anyhow::anyhow!(
                        "sandbox.require: unknown layer {name:?} (known: {})",
                        Layer::ALL.map(|l| l.as_str()).join(", ")
                    )
                })
            })
            .collect()
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_processes: self.max_processes,
            max_memory_bytes: self.max_memory_mb * 1024 * 1024,
            cpu_percent: self.cpu_percent,
        }
    }
}

fn default_read_only() -> Vec<PathBuf> {
    DEFAULT_READ_ONLY.iter().map(PathBuf::from).collect()
}
fn default_workspaces() -> PathBuf {
    "workspaces".into()
}
fn default_runs() -> PathBuf {
    "runs".into()
}
fn default_user() -> u32 {
    65534
}
fn default_max_processes() -> u32 {
    256
}
fn default_max_memory_mb() -> u64 {
    1024
}
fn default_cpu_percent() -> u32 {
    100
}
fn default_egress_port() -> u16 {
    3128
}
fn default_mcp_port() -> u16 {
    7411
}
fn default_require() -> Vec<String> {
    Layer::ALL.iter().map(|l| l.as_str().to_owned()).collect()
}
