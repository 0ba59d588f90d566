//! What a sandbox is made of, decided by Warden before anything starts. The launcher sends the
//! plan to the sandbox's first process; nothing inside the sandbox can change it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cgroup::Limits;

/// A path the agent sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// Where it is on the host.
    pub source: PathBuf,
    /// Where the agent sees it (usually the same path).
    pub target: PathBuf,
    /// Whether the agent may write there.
    pub writable: bool,
}

/// The layers of containment, as `warden doctor` reports them and as a configuration requires
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    /// User, PID, mount, IPC and UTS namespaces.
    Namespaces,
    /// A network namespace whose only ways out are Warden's listeners.
    Network,
    /// Landlock filesystem rules.
    Landlock,
    /// Landlock TCP connect rules (ABI 4 and later).
    LandlockNet,
    /// Landlock scoping of abstract sockets and signals (ABI 6 and later).
    LandlockScope,
    /// The seccomp deny filter.
    Seccomp,
    /// seccomp user notification: exec and connect decided by Warden.
    SeccompNotify,
    /// cgroup limits (processes, memory, CPU).
    Cgroups,
    /// Killing every process at once through a cgroup.
    CgroupKill,
}

impl Layer {
    /// Every layer, in report order.
    pub const ALL: [Layer; 9] = [
        Layer::Namespaces,
        Layer::Network,
        Layer::Landlock,
        Layer::LandlockNet,
        Layer::LandlockScope,
        Layer::Seccomp,
        Layer::SeccompNotify,
        Layer::Cgroups,
        Layer::CgroupKill,
    ];

    /// The name used in configuration and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Namespaces => "namespaces",
            Layer::Network => "network",
            Layer::Landlock => "landlock",
            Layer::LandlockNet => "landlock-net",
            Layer::LandlockScope => "landlock-scope",
            Layer::Seccomp => "seccomp",
            Layer::SeccompNotify => "seccomp-notify",
            Layer::Cgroups => "cgroups",
            Layer::CgroupKill => "cgroup-kill",
        }
    }

    /// Parses a layer name.
    pub fn parse(name: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.as_str() == name)
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A TCP listener Warden opens inside the sandbox's network namespace, on 127.0.0.1, and serves
/// from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// What Warden serves there.
    pub role: ListenerRole,
    /// The port inside the sandbox.
    pub port: u16,
}

/// What a listener inside the sandbox is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerRole {
    /// The HTTP egress proxy.
    Egress,
    /// The MCP gateway.
    Mcp,
}

/// Everything the sandbox is built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// The whole environment of the program (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// The working directory inside the sandbox.
    pub cwd: PathBuf,
    /// What the agent sees of the host filesystem, besides the private `/tmp`, `/dev` and
    /// `/proc`.
    pub binds: Vec<Bind>,
    /// Symbolic links recreated in the view (link, what it points to), for host paths that are
    /// links (`/bin` → `usr/bin` on merged-/usr systems).
    pub symlinks: Vec<(PathBuf, PathBuf)>,
    /// Paths hidden under an empty, read-only mount even though a bind includes them (Warden's
    /// journal, keys, configuration and sockets).
    pub hidden: Vec<PathBuf>,
    /// Files written into the sandbox's private `/run/warden` (name, content).
    pub files: Vec<(String, String)>,
    /// Files of the sandbox's own `/etc` (name, content): `passwd`, `group`, `hosts`.
    pub etc: Vec<(String, String)>,
    /// The host uid and gid the agent runs as.
    pub host_uid: u32,
    /// The host gid.
    pub host_gid: u32,
    /// The hostname inside.
    pub hostname: String,
    /// Whether to give the sandbox its own network namespace.
    pub isolate_network: bool,
    /// Listeners inside it.
    pub listeners: Vec<Listener>,
    /// Extra ports the agent may connect to inside the sandbox (its own local servers).
    pub local_ports: Vec<u16>,
    /// Layers that must be in force; the sandbox refuses to start without them.
    pub required: Vec<Layer>,
    /// Resource limits (the rlimit floor uses them too).
    pub limits: Limits,
    /// Whether process starts go to Warden for a decision.
    pub decide_exec: bool,
    /// Whether connections go to Warden for a decision.
    pub decide_connect: bool,
}

/// The uid the agent has inside the sandbox; only this one is mapped.
pub const INNER_UID: u32 = 1000;
/// The gid the agent has inside the sandbox.
pub const INNER_GID: u32 = 1000;
