//! Warden's containment: the sandbox a contained agent runs in, and the kill switch.
//!
//! `warden run` builds the sandbox in layers, each enforced by the kernel: namespaces (user,
//! PID, mount, network, IPC, UTS, cgroup), a filesystem view built from the agent's scope
//! (`mounts`) and enforced again by Landlock (`landlock_rules`), a seccomp filter for what no
//! agent needs and user notification for the process starts and connections Warden decides
//! (`seccomp`), `no_new_privs`, and resource limits through cgroups (`cgroup`) with rlimits as
//! the floor (`limits`). The only ways out of the network namespace are Warden's own listeners.
//!
//! `launch` is Warden's side of starting a sandbox, `inside` the sandbox's side, `control` the
//! channel between them; `doctor` says which layers this machine can enforce.
#![deny(missing_docs)]

pub mod cgroup;
pub mod control;
pub mod doctor;
pub mod inside;
pub mod landlock_rules;
pub mod launch;
mod limits;
mod mounts;
pub mod plan;
pub mod seccomp;
pub mod seccomp_layer;

pub use cgroup::{Cgroups, KillReport, Layout, Limits, LimitsHit};
pub use doctor::Report;
pub use launch::{InitCommand, LaunchError, Sandbox, launch};
pub use plan::{Bind, Layer, Listener, ListenerRole, Plan};
