//! What containment this kernel and these privileges allow: `warden doctor`, and the check
//! `warden run` makes before starting anything.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::cgroup::{Capabilities, Layout};
use crate::landlock_rules;
use crate::plan::Layer;

/// One layer's availability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The layer.
    pub layer: Layer,
    /// Whether it can be put in force.
    pub available: bool,
    /// What was found (a version, the reason it is missing).
    pub detail: String,
}

/// Every layer's availability, with the cgroup capabilities behind two of them.
#[derive(Debug, Clone)]
pub struct Report {
    /// One finding per layer, in [`Layer::ALL`] order.
    pub findings: Vec<Finding>,
    /// Which cgroup version does what.
    pub cgroups: Capabilities,
    /// Whether Warden runs as root (the agent then runs as an unprivileged host user).
    pub root: bool,
}

impl Report {
    /// Whether `layer` is available.
    pub fn has(&self, layer: Layer) -> bool {
        self.findings
            .iter()
            .any(|f| f.layer == layer && f.available)
    }

    /// The layers in `required` that are not available.
    pub fn missing<'a>(&self, required: impl IntoIterator<Item = &'a Layer>) -> Vec<Layer> {
        required
            .into_iter()
            .copied()
            .filter(|l| !self.has(*l))
            .collect()
    }
}

/// Probes the running kernel. Starts one short-lived process to try the namespaces.
pub fn probe(cgroup_root: &Path) -> Report {
    let mut findings = Vec::new();
    let ns = probe_namespaces();
    findings.push(Finding {
        layer: Layer::Namespaces,
        available: ns.is_ok(),
        detail: ns.as_ref().map_or_else(
            |e| e.clone(),
            |()| "user, PID, mount, IPC, UTS, cgroup".into(),
        ),
    });
    findings.push(Finding {
        layer: Layer::Network,
        available: ns.is_ok(),
        detail: if ns.is_ok() {
            "a network namespace with loopback only".into()
        } else {
            "needs the namespaces".into()
        },
    });
    let abi = landlock_rules::abi_version();
    let ll = landlock_rules::layers_for(abi);
    let abi_text = abi.map_or_else(
        || "Landlock is not enabled in this kernel".to_owned(),
        |v| format!("ABI {v}"),
    );
    for (layer, needs) in [
        (Layer::Landlock, "ABI 1"),
        (Layer::LandlockNet, "ABI 4"),
        (Layer::LandlockScope, "ABI 6"),
    ] {
        let available = ll.contains(&layer);
        findings.push(Finding {
            layer,
            available,
            detail: if available {
                abi_text.clone()
            } else {
                format!("needs {needs}; {abi_text}")
            },
        });
    }
    // SAFETY: prctl with integer arguments.
    let seccomp = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } >= 0;
    findings.push(Finding {
        layer: Layer::Seccomp,
        available: seccomp,
        detail: if seccomp {
            "filter mode".into()
        } else {
            "seccomp is not enabled in this kernel".into()
        },
    });
    let actions =
        std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    let notify = seccomp && actions.split_whitespace().any(|a| a == "user_notif");
    findings.push(Finding {
        layer: Layer::SeccompNotify,
        available: notify,
        detail: if notify {
            "user notification".into()
        } else {
            "the kernel offers no seccomp user notification".into()
        },
    });
    let cgroups = Layout::detect(cgroup_root).capabilities();
    let limits = cgroups.pids.is_some() && cgroups.memory.is_some() && cgroups.cpu.is_some();
    let writable = cgroup_writable(cgroup_root);
    findings.push(Finding {
        layer: Layer::Cgroups,
        available: limits && writable,
        detail: if writable {
            cgroups.describe()
        } else {
            format!("{} (but not writable by this user)", cgroups.describe())
        },
    });
    findings.push(Finding {
        layer: Layer::CgroupKill,
        available: cgroups.kill.is_some() && writable,
        detail: cgroups
            .kill
            .map_or("neither cgroup v2 nor the v1 freezer".into(), |k| {
                k.as_str().to_owned()
            }),
    });
    Report {
        findings,
        cgroups,
        // SAFETY: geteuid has no preconditions.
        root: unsafe { libc::geteuid() } == 0,
    }
}

fn cgroup_writable(root: &Path) -> bool {
    let writable = |p: &Path| {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        // SAFETY: a valid C string.
        unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
    };
    writable(root) || ["unified", "pids"].iter().any(|d| writable(&root.join(d)))
}

/// Starts a process that creates every namespace the sandbox uses, then exits.
fn probe_namespaces() -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut command = Command::new(exe);
    command
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only unshare, a syscall, runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let flags = libc::CLONE_NEWUSER
                | libc::CLONE_NEWNS
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWNET
                | libc::CLONE_NEWCGROUP;
            if libc::unshare(flags) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    match command.status() {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("cannot create the namespaces: {e}")),
    }
}
