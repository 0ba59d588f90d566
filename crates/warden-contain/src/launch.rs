//! Warden's side of a launch: start the sandbox's first process, write its id maps, move it
//! into its cgroups, and collect what it hands back (listeners, the seccomp listener, the
//! layers in force) until the agent's program is about to start.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command};

use crate::cgroup::{CgroupError, Cgroups};
use crate::control::{self, Tag};
use crate::inside::INIT_ARG;
use crate::plan::{INNER_GID, INNER_UID, Layer, ListenerRole, Plan};

/// How to start the sandbox's first process: a program that calls [`crate::inside::main`]
/// when given [`INIT_ARG`] (the `warden` binary itself).
#[derive(Debug, Clone)]
pub struct InitCommand {
    /// The program.
    pub program: PathBuf,
    /// Arguments before [`INIT_ARG`].
    pub args: Vec<OsString>,
}

impl InitCommand {
    /// The running executable.
    pub fn current_exe() -> std::io::Result<Self> {
        Ok(Self {
            program: std::env::current_exe()?,
            args: Vec::new(),
        })
    }
}

/// Why a sandbox could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The first process did not start.
    #[error("cannot start the sandbox ({program}): {source}")]
    Spawn {
        /// The init program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The control channel failed.
    #[error("the sandbox's control channel failed: {0}")]
    Channel(#[source] std::io::Error),
    /// The id maps could not be written.
    #[error("cannot map the sandbox's user ({what}): {source}")]
    IdMap {
        /// Which file.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The cgroups could not be joined.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// A step inside the sandbox failed; the agent's program did not start.
    #[error("{0}")]
    Inside(String),
    /// The sandbox's first process broke the protocol (or exited early).
    #[error("the sandbox ended before its program started{0}")]
    Ended(String),
}

/// A sandbox whose program is starting.
#[derive(Debug)]
pub struct Sandbox {
    /// The first process; its exit status is the program's.
    pub child: Child,
    /// Listeners inside the sandbox's network namespace, for Warden to serve.
    pub listeners: Vec<(ListenerRole, u16, OwnedFd)>,
    /// The seccomp notification fd, when process starts or connections are decided.
    pub seccomp: Option<OwnedFd>,
    /// The layers in force.
    pub layers: Vec<Layer>,
    /// Warden's end of the launch channel: a failure to start the program itself, which
    /// comes after the sandbox reported ready, arrives here (see [`Sandbox::start_failure`]).
    pub control: OwnedFd,
}

impl Sandbox {
    /// Why the program did not start, if the sandbox said so. Call it once the sandbox has
    /// ended; it never waits.
    pub fn start_failure(control: &OwnedFd) -> Option<String> {
        // Everything the sandbox sent is buffered by now; do not wait for more.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(control.as_raw_fd(), libc::F_GETFL);
            if flags < 0
                || libc::fcntl(control.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
            {
                return None;
            }
        }
        while let Ok(Some(message)) = control::recv(control.as_fd()) {
            if message.tag == Tag::Failed {
                return Some(String::from_utf8_lossy(&message.payload).into_owned());
            }
        }
        None
    }
}

/// Starts `plan` in a new sandbox, joined to `cgroups`.
///
/// Returns once every layer is in force and the program is about to be executed. When exec or
/// connect decisions are on, the program's exec waits for the seccomp listener to be served.
pub fn launch(
    init: &InitCommand,
    plan: &Plan,
    cgroups: Option<&Cgroups>,
) -> Result<Sandbox, LaunchError> {
    let (ours, theirs) = control::pair().map_err(LaunchError::Channel)?;
    let mut command = Command::new(&init.program);
    command
        .args(&init.args)
        .arg(INIT_ARG)
        .env_clear()
        .env(control::FD_ENV, control::CHILD_FD.to_string());
    let their_fd = theirs.as_raw_fd();
    // SAFETY: only dup2 or fcntl, async-signal-safe syscalls, run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // dup2 clears close-on-exec on the copy, so the channel survives the exec; when
            // the fd already has the number, clear the flag itself.
            let rc = if their_fd == control::CHILD_FD {
                libc::fcntl(their_fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(their_fd, control::CHILD_FD)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| LaunchError::Spawn {
        program: init.program.clone(),
        source,
    })?;
    drop(theirs);
    match setup(&ours, &child, plan, cgroups) {
        Ok((listeners, seccomp, layers)) => Ok(Sandbox {
            child,
            listeners,
            seccomp,
            layers,
            control: ours,
        }),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

type Handed = (
    Vec<(ListenerRole, u16, OwnedFd)>,
    Option<OwnedFd>,
    Vec<Layer>,
);

fn setup(
    sock: &OwnedFd,
    child: &Child,
    plan: &Plan,
    cgroups: Option<&Cgroups>,
) -> Result<Handed, LaunchError> {
    let json = serde_json::to_vec(plan).map_err(|e| LaunchError::Channel(e.into()))?;
    control::send(sock.as_fd(), Tag::Plan, &json, None).map_err(LaunchError::Channel)?;
    match next(sock)? {
        m if m.tag == Tag::Unshared => {}
        m => return Err(unexpected(m)),
    }
    if let Err(e) = map_ids(child.id(), plan).and_then(|()| {
        if let Some(groups) = cgroups {
            groups.add(child.id())?;
        }
        Ok(())
    }) {
        let _ = control::send(sock.as_fd(), Tag::Failed, e.to_string().as_bytes(), None);
        return Err(e);
    }
    control::send(sock.as_fd(), Tag::Mapped, b"", None).map_err(LaunchError::Channel)?;
    let mut listeners = Vec::new();
    let mut seccomp = None;
    loop {
        let m = next(sock)?;
        match (m.tag, m.fd) {
            (Tag::Listener, Some(fd)) if m.payload.len() == 3 => {
                let role = if m.payload[0] == 0 {
                    ListenerRole::Egress
                } else {
                    ListenerRole::Mcp
                };
                let port = u16::from_be_bytes([m.payload[1], m.payload[2]]);
                listeners.push((role, port, fd));
            }
            (Tag::Seccomp, Some(fd)) => seccomp = Some(fd),
            (Tag::Ready, _) => {
                let names: Vec<String> = serde_json::from_slice(&m.payload)
                    .map_err(|e| LaunchError::Ended(format!(": bad layer list: {e}")))?;
                let layers = names.iter().filter_map(|n| Layer::parse(n)).collect();
                return Ok((listeners, seccomp, layers));
            }
            (Tag::Failed, _) => {
                return Err(LaunchError::Inside(
                    String::from_utf8_lossy(&m.payload).into_owned(),
                ));
            }
            (tag, _) => return Err(LaunchError::Ended(format!(": unexpected step {tag:?}"))),
        }
    }
}

fn next(sock: &OwnedFd) -> Result<control::Message, LaunchError> {
    control::recv(sock.as_fd())
        .map_err(LaunchError::Channel)?
        .ok_or_else(|| LaunchError::Ended(String::new()))
}

fn unexpected(m: control::Message) -> LaunchError {
    if m.tag == Tag::Failed {
        LaunchError::Inside(String::from_utf8_lossy(&m.payload).into_owned())
    } else {
        LaunchError::Ended(format!(": unexpected step {:?}", m.tag))
    }
}

/// Maps the agent's inner uid and gid to the plan's host ids. When Warden runs as root, root
/// is mapped too, for the sandbox's own setup processes (PID 1 builds the view as root); the
/// agent switches to its user before anything of its own runs, which clears its capabilities,
/// and `no_new_privs` with `nosuid` mounts keeps it from ever getting root back. Without root,
/// only Warden's own user can be mapped, and it becomes the agent's.
fn map_ids(pid: u32, plan: &Plan) -> Result<(), LaunchError> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let write = |what: &'static str, content: String| {
        std::fs::write(proc.join(what), content)
            .map_err(|source| LaunchError::IdMap { what, source })
    };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        // Without CAP_SETGID, the kernel requires setgroups to be denied first.
        write("setgroups", "deny".into())?;
    }
    let root_line = if root { "0 0 1\n" } else { "" };
    write(
        "uid_map",
        format!("{root_line}{INNER_UID} {} 1\n", plan.host_uid),
    )?;
    write(
        "gid_map",
        format!("{root_line}{INNER_GID} {} 1\n", plan.host_gid),
    )?;
    Ok(())
}
