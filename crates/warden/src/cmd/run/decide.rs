//! Program starts and connections of the sandboxed tree, held by seccomp, decided by policy and
//! journaled with their lineage (process, parent, session) before the kernel lets them go on.

use std::os::fd::OwnedFd;
use std::thread::JoinHandle;

use serde_json::{Map, Value};
use warden_contain::seccomp::{Event, Notification, Response, Supervisor};
use warden_core::{Action, ActionKind, HostRef, ProgramRef};
use warden_gateway::Guard;
use warden_gateway::guard::forwards;

/// Ports inside the sandbox that are Warden's own listeners: connecting to them is how the
/// agent uses its gateways, which journal what it does there.
#[derive(Debug, Clone, Default)]
pub struct Gateways {
    pub ports: Vec<u16>,
}

/// Tells whether the agent is quarantined and its sandbox is being killed.
pub type Quarantined = Box<dyn Fn() -> bool + Send>;

/// Serves the seccomp listener on its own thread until no process of the sandbox is left.
///
/// With `quarantined` (given when the sandbox can be killed), a call refused while the agent
/// is quarantined is never answered: its process stays held in the system call until the
/// kill ends it. Answered with EPERM, the program could go on while the kill was on its way
/// (a shell runs its next builtins without asking anyone).
pub fn spawn(
    fd: OwnedFd,
    guard: Guard,
    runtime: tokio::runtime::Handle,
    gateways: Gateways,
    quarantined: Option<Quarantined>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("warden-decide".into())
        // Decisions run here (`block_on`), not on the runtime's threads.
        .stack_size(crate::cmd::POLICY_STACK_BYTES)
        .spawn(move || {
            let supervisor = Supervisor::new(fd);
            let mut told = 0;
            loop {
                let held = match supervisor.recv() {
                    Ok(n) => n,
                    Err(warden_contain::seccomp::SeccompError::Closed) => return,
                    Err(e) => {
                        tracing::warn!(%e, "seccomp notifications stopped");
                        return;
                    }
                };
                let (response, refusal) = runtime.block_on(decide(&guard, &held, &gateways));
                if let Some(what) = refusal {
                    tell_refusal(&mut told, &what);
                }
                if matches!(response, Response::Deny(_))
                    && quarantined.as_ref().is_some_and(|q| q())
                {
                    // The kernel drops the held call when its process is killed.
                    continue;
                }
                if let Err(e) = supervisor.respond(held.id, response) {
                    tracing::warn!(%e, "could not answer a held system call");
                }
            }
        })
}

/// Refusals told on the operator's terminal before the rest are left to the journal: a refused
/// program fails with no more than "Operation not permitted" from the agent, or silently.
const REFUSALS_TOLD: usize = 3;

fn tell_refusal(told: &mut usize, what: &str) {
    use std::io::Write;
    *told += 1;
    // Never `eprintln!`: a closed stderr would panic this thread, and with it every later
    // decision of the sandbox.
    let mut err = std::io::stderr();
    if *told <= REFUSALS_TOLD {
        let _ = writeln!(
            err,
            "warden: refused {}",
            warden_core::escape_for_display(what)
        );
    }
    if *told == REFUSALS_TOLD {
        let _ = writeln!(
            err,
            "warden: further refusals are only journaled (`warden audit log`)"
        );
    }
}

/// Refused: the kernel returns EPERM to the process.
const REFUSED: Response = Response::Deny(libc_eperm());

const fn libc_eperm() -> i32 {
    1
}

/// The answer to a held call, and a line for the operator when it is a refusal.
async fn decide(
    guard: &Guard,
    held: &Notification,
    gateways: &Gateways,
) -> (Response, Option<String>) {
    let mut notes = lineage(held.pid);
    let refuse = |kind, target: String, why: String| async move {
        verdict(guard.refuse(kind, target, &notes_of(held.pid), &why).await)
    };
    match &held.event {
        Event::Exec {
            path,
            argv,
            truncated,
            missing,
            via,
        } => {
            // Decided on the program a link the agent may have made leads to; the record
            // keeps the name the call used.
            if let Some(via) = via {
                notes.insert("via".into(), Value::String(via.clone()));
            }
            if *truncated {
                return refuse(
                    ActionKind::Exec,
                    path.clone(),
                    "its arguments are too long to be recorded whole".into(),
                )
                .await;
            }
            if let Some(errno) = missing {
                // A path with nothing at its end: nothing can start, so nothing is decided or
                // journaled, and the kernel's own answer lets a PATH search go on to the next
                // directory (EPERM stops it). The call is failed, never continued, so a file
                // created after the look cannot slip through.
                return (Response::Deny(*errno), None);
            }
            match ProgramRef::new(path.clone()) {
                Ok(program) => {
                    let action = Action::Exec {
                        program,
                        argv: argv.clone(),
                    };
                    verdict(guard.check_noting(&action, notes).await)
                }
                Err(e) => {
                    refuse(
                        ActionKind::Exec,
                        path.escape_debug().to_string(),
                        e.to_string(),
                    )
                    .await
                }
            }
        }
        Event::Connect {
            addr: Some(addr), ..
        } => {
            if addr.ip().is_loopback() && gateways.ports.contains(&addr.port()) {
                return (Response::Continue, None);
            }
            match HostRef::new(&addr.ip().to_string()) {
                Ok(host) => {
                    let action = Action::Connect {
                        host,
                        port: addr.port(),
                    };
                    verdict(guard.check_noting(&action, notes).await)
                }
                Err(e) => refuse(ActionKind::Connect, addr.to_string(), e.to_string()).await,
            }
        }
        // Unix sockets are governed by the filesystem view; other families reach nothing
        // outside the sandbox's network namespace.
        Event::Connect { addr: None, .. } => (Response::Continue, None),
        Event::Socket { domain, kind } => {
            let what = match (*domain, *kind) {
                (17, _) => "a packet socket",
                (_, 3) => "a raw socket",
                _ => "a UDP socket",
            };
            refuse(
                ActionKind::Connect,
                format!("({what})"),
                format!(
                    "{what} is not available in a sandbox: network traffic goes through \
                     Warden's egress proxy"
                ),
            )
            .await
        }
        Event::Unreadable { syscall, why } => {
            refuse(
                ActionKind::Exec,
                format!("({})", syscall.name()),
                format!("its arguments could not be read: {why}"),
            )
            .await
        }
        #[allow(unreachable_patterns)]
        _ => (REFUSED, None),
    }
}

fn verdict(v: warden_gateway::Verdict) -> (Response, Option<String>) {
    if forwards(&v) {
        return (Response::Continue, None);
    }
    let record = v
        .seq
        .map_or_else(String::new, |seq| format!(" (journal #{seq})"));
    let line = format!("{} {}: {}{record}", v.action, v.target, v.decision.reason);
    (REFUSED, Some(line))
}

/// The process and its parent, as the journal records them.
fn lineage(pid: i32) -> Map<String, Value> {
    notes_of(pid)
}

fn notes_of(pid: i32) -> Map<String, Value> {
    let mut notes = Map::new();
    notes.insert("pid".into(), Value::from(pid));
    if let Some(ppid) = parent_of(pid) {
        notes.insert("ppid".into(), Value::from(ppid));
    }
    notes
}

fn parent_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}
