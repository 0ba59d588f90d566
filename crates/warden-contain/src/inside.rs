//! The sandbox's side of a launch. Warden runs its own binary again with [`INIT_ARG`]; that
//! process (single-threaded, so it may fork freely) builds the sandbox in three generations:
//!
//! 1. *stage 1* creates the namespaces and waits while Warden writes its id maps and moves it
//!    into the cgroups; then it forks and waits, passing on the exit status;
//! 2. *the reaper*, PID 1 of the new PID namespace, builds the filesystem view and the
//!    network, forks the agent, reaps orphans, and exits when the agent does — the kernel then
//!    kills whatever the agent left behind;
//! 3. *the agent* drops to the sandbox user, applies rlimits, Landlock and seccomp, and
//!    executes the program.
//!
//! Every failure is reported on the control channel before exiting, so `warden run` can say
//! what went wrong instead of a bare exit status.

use std::ffi::CString;
use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use crate::control::{self, Tag};
use crate::landlock_rules;
use crate::mounts;
use crate::plan::{INNER_GID, INNER_UID, Layer, ListenerRole, Plan};

/// The argument that makes the `warden` binary run [`main`].
pub const INIT_ARG: &str = "__contain-init";

/// What went wrong inside, as reported to Warden.
type Step<T> = Result<T, String>;

fn os(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Entry point of the sandbox's first process. Never returns.
pub fn main() -> ! {
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "warden sandbox: {e}");
            125
        }
    };
    std::process::exit(code)
}

fn run() -> Step<i32> {
    if std::env::var(control::FD_ENV).ok().as_deref() != Some("3") {
        return Err("this command is started by `warden run`, not by hand".into());
    }
    // SAFETY: the launcher placed the control socket at fd 3 and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(control::CHILD_FD) };
    // Keep it from the agent's program.
    set_cloexec(sock.as_fd())?;
    let plan = match control::recv(sock.as_fd()) {
        Ok(Some(m)) if m.tag == Tag::Plan => serde_json::from_slice::<Plan>(&m.payload)
            .map_err(|e| format!("the plan is malformed: {e}"))?,
        _ => return Err("no plan from Warden".into()),
    };
    match stage_one(&plan, &sock) {
        Ok(code) => Ok(code),
        Err(e) => {
            fail(&sock, &e);
            Ok(125)
        }
    }
}

fn fail(sock: &OwnedFd, why: &str) {
    let _ = control::send(sock.as_fd(), Tag::Failed, why.as_bytes(), None);
}

fn set_cloexec(fd: BorrowedFd<'_>) -> Step<()> {
    // SAFETY: fcntl on an fd we hold.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    if rc != 0 {
        return Err(os("setting close-on-exec on the control socket"));
    }
    Ok(())
}

fn stage_one(plan: &Plan, sock: &OwnedFd) -> Step<i32> {
    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    if plan.isolate_network {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // SAFETY: unshare has no memory-safety preconditions; this process is single-threaded.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(os("creating the namespaces (unshare)"));
    }
    control::send(sock.as_fd(), Tag::Unshared, b"", None).map_err(|e| e.to_string())?;
    match control::recv(sock.as_fd()) {
        Ok(Some(m)) if m.tag == Tag::Mapped => {}
        Ok(Some(m)) if m.tag == Tag::Failed => {
            return Err(String::from_utf8_lossy(&m.payload).into_owned());
        }
        _ => return Err("Warden did not finish the id maps".into()),
    }
    if !root {
        // Only the agent's user is mapped: become it now, so that files the setup creates
        // have a mapped owner. The namespace's creator keeps its capabilities until exec.
        // SAFETY: integer arguments; failures are checked.
        unsafe {
            if libc::setresgid(INNER_GID, INNER_GID, INNER_GID) != 0
                || libc::setresuid(INNER_UID, INNER_UID, INNER_UID) != 0
            {
                return Err(os("switching to the sandbox user"));
            }
        }
    }
    // The cgroup namespace comes after joining the cgroups, so the agent sees its own as `/`.
    // SAFETY: as above.
    if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } != 0 {
        return Err(os("creating the cgroup namespace"));
    }
    // SAFETY: single-threaded, so the child may run arbitrary code.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(os("starting the sandbox's first process (fork)")),
        0 => {
            let code = match reaper(plan, sock) {
                Ok(code) => code,
                Err(e) => {
                    fail(sock, &e);
                    125
                }
            };
            // SAFETY: _exit is always safe; skips destructors of the parent's state.
            unsafe { libc::_exit(code) }
        }
        child => Ok(wait_for(child)),
    }
}

/// Waits for `pid` and turns its status into an exit code (128 + signal for a signal).
fn wait_for(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes to `status`, a valid int.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        if rc == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 125;
        }
    }
    exit_code(status)
}

fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        125
    }
}

/// PID 1 of the sandbox.
fn reaper(plan: &Plan, sock: &OwnedFd) -> Step<i32> {
    // If Warden's side of the launch dies, so does the sandbox.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    set_hostname(&plan.hostname)?;
    if plan.isolate_network {
        loopback_up()?;
        for l in &plan.listeners {
            let fd = listen_inside(l.port)?;
            let role = match l.role {
                ListenerRole::Egress => 0u8,
                ListenerRole::Mcp => 1u8,
            };
            let port = l.port.to_be_bytes();
            control::send(
                sock.as_fd(),
                Tag::Listener,
                &[role, port[0], port[1]],
                Some(fd.as_fd()),
            )
            .map_err(|e| format!("handing a listener to Warden: {e}"))?;
        }
    }
    mounts::build_root(plan)?;
    // SAFETY: single-threaded (forked from a single-threaded process).
    let agent = unsafe { libc::fork() };
    match agent {
        -1 => Err(os("starting the agent (fork)")),
        0 => {
            let e = agent_exec(plan, sock);
            fail(sock, &e);
            // SAFETY: always safe.
            unsafe { libc::_exit(126) }
        }
        agent => Ok(reap_until(agent)),
    }
}

/// Reaps every child until `agent` exits; returns its exit code.
fn reap_until(agent: libc::pid_t) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes to a valid int.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == agent {
            return exit_code(status);
        }
        if pid == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 125;
        }
    }
}

/// The agent's process, up to the exec of its program. Returns only on failure.
fn agent_exec(plan: &Plan, sock: &OwnedFd) -> String {
    match prepare_agent(plan, sock) {
        Ok(mut command) => {
            let e = command.exec();
            format!("starting {:?}: {e}", plan.command.first().map_or("", |s| s))
        }
        Err(e) => e,
    }
}

fn prepare_agent(plan: &Plan, sock: &OwnedFd) -> Step<std::process::Command> {
    // SAFETY: these calls take integers and a null pointer; failures are checked.
    unsafe {
        // Supplementary groups would follow the agent across the user namespace.
        if libc::setgroups(0, std::ptr::null()) != 0 {
            // Refused when Warden is not root ("deny" in setgroups): the groups are the
            // invoking user's own then.
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
                return Err(os("dropping supplementary groups"));
            }
        }
        if libc::setresgid(INNER_GID, INNER_GID, INNER_GID) != 0 {
            return Err(os("switching to the sandbox group"));
        }
        if libc::setresuid(INNER_UID, INNER_UID, INNER_UID) != 0 {
            return Err(os("switching to the sandbox user"));
        }
    }
    crate::limits::apply(&plan.limits)?;
    std::env::set_current_dir(&plan.cwd)
        .map_err(|e| format!("entering {}: {e}", plan.cwd.display()))?;
    let mut layers = vec![Layer::Namespaces];
    if plan.isolate_network {
        layers.push(Layer::Network);
    }
    layers.extend(landlock_rules::restrict(plan)?);
    let seccomp = crate::seccomp_layer::install(plan)?;
    layers.extend(seccomp.layers.iter().copied());
    if let Some(fd) = &seccomp.listener {
        control::send(sock.as_fd(), Tag::Seccomp, b"", Some(fd.as_fd()))
            .map_err(|e| format!("handing the seccomp listener to Warden: {e}"))?;
    }
    let missing: Vec<&str> = plan
        .required
        .iter()
        .filter(|l| !layers.contains(l) && !matches!(l, Layer::Cgroups | Layer::CgroupKill))
        .map(|l| l.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "required containment is not in force: {} (see `warden doctor`)",
            missing.join(", ")
        ));
    }
    let names: Vec<&str> = layers.iter().map(|l| l.as_str()).collect();
    let ready = serde_json::to_vec(&names).map_err(|e| e.to_string())?;
    control::send(sock.as_fd(), Tag::Ready, &ready, None)
        .map_err(|e| format!("reporting to Warden: {e}"))?;
    let (program, args) = plan
        .command
        .split_first()
        .ok_or_else(|| "no command to run".to_owned())?;
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(plan.env.iter().cloned());
    Ok(command)
}

fn set_hostname(name: &str) -> Step<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    let rc = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    if rc != 0 {
        return Err(os("setting the hostname"));
    }
    Ok(())
}

/// Brings up `lo`, the only interface of the new network namespace.
fn loopback_up() -> Step<()> {
    // SAFETY: a socket used only for the interface ioctls below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os("opening a socket to configure lo"));
    }
    // SAFETY: socket succeeded; the fd is ours.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the ioctls read and write `req`, a valid ifreq naming "lo".
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(os("reading lo's flags"));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(os("bringing lo up"));
        }
    }
    Ok(())
}

/// A TCP listener on 127.0.0.1:`port` inside the sandbox's network namespace.
fn listen_inside(port: u16) -> Step<OwnedFd> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("listening on 127.0.0.1:{port} inside the sandbox: {e}"))?;
    Ok(OwnedFd::from(listener))
}

/// `path` under `root`, for a host path seen from a new root.
pub(crate) fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// A C string, refusing interior NULs (paths from configuration).
pub(crate) fn cstr(s: &Path) -> Step<CString> {
    CString::new(s.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} contains a NUL byte", s.display()))
}
