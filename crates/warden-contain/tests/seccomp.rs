//! The seccomp filter and supervisor against real processes.
//!
//! Each test starts a child that installs a compiled filter between `fork` and `exec` and
//! sends the listener back over a socket pair; a supervisor thread answers the child's held
//! calls and records them until no process uses the filter any more.
//!
//! Calls that `/bin/sh` cannot make directly are made by this test binary itself, run again
//! as a helper (`WARDEN_SECCOMP_HELPER=<action>`, test `helper`), which prints `errno=N`.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use warden_contain::seccomp::{
    Delivery, Event, Notification, Program, Response, SeccompError, Spec, Supervisor, recv_fd,
    send_fd,
};

const HELPER_ENV: &str = "WARDEN_SECCOMP_HELPER";
/// A held call that gets no answer within this long fails the test instead of hanging it.
const STUCK: Duration = Duration::from_secs(60);

struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    seen: Vec<Notification>,
}

/// Installs `program` in the child just before exec and hands the listener to the parent.
fn install_and_send(cmd: &mut Command, program: Program, sock: i32) {
    let hook = move || {
        let listener = match program.install() {
            Ok(l) => l,
            Err(SeccompError::Load(e) | SeccompError::NoNewPrivs(e)) => return Err(e),
            Err(_) => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        if let Some(listener) = listener {
            // SAFETY: `sock` is the child's end of the pair, open until exec (close-on-exec).
            let sock = unsafe { BorrowedFd::borrow_raw(sock) };
            send_fd(sock, listener.as_fd())?;
        }
        Ok(())
    };
    // SAFETY: the hook only makes system calls on data built before fork.
    unsafe { cmd.pre_exec(hook) };
}

/// Runs `cmd` under `spec`, answering each held call with `decide`.
fn supervise(
    spec: &Spec,
    mut cmd: Command,
    decide: impl Fn(&Notification) -> Response + Send + 'static,
) -> Outcome {
    let program = spec.compile().unwrap();
    assert!(program.has_listener(), "these tests supervise something");
    let (ours, theirs) = UnixStream::pair().unwrap();
    install_and_send(&mut cmd, program, theirs.as_raw_fd());

    let supervisor = thread::spawn(move || {
        let listener = recv_fd(ours.as_fd()).expect("the child sends its listener");
        let sup = Supervisor::new(listener);
        let mut seen = Vec::new();
        loop {
            match sup.recv_timeout(STUCK) {
                Ok(Some(n)) => {
                    let delivery = sup.respond(n.id, decide(&n)).unwrap();
                    assert_eq!(delivery, Delivery::Delivered, "{n:?}");
                    seen.push(n);
                }
                // Dropping the supervisor fails the held call, so the child cannot hang.
                Ok(None) => panic!("no notification for {STUCK:?}; seen {seen:?}"),
                Err(SeccompError::Closed) => return seen,
                Err(e) => panic!("{e}"),
            }
        }
    });

    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(theirs);
    let out = child.wait_with_output().unwrap();
    let seen = supervisor.join().expect("the supervisor thread");
    Outcome {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        seen,
    }
}

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script);
    cmd
}

/// This test binary, run again as the helper performing `action`.
fn as_helper(action: &str, arg: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "helper", "--nocapture", "--test-threads=1", "-q"])
        .env(HELPER_ENV, action)
        .env("WARDEN_SECCOMP_HELPER_ARG", arg);
    cmd
}

/// The helper run as a child of `/bin/sh`, not of this test process: a helper that becomes
/// traceable must not name this process as its tracer.
fn as_helper_under_sh(action: &str) -> Command {
    let mut cmd = sh(r#""$0" --exact helper --nocapture --test-threads=1 -q; true"#);
    cmd.arg(std::env::current_exe().unwrap())
        .env(HELPER_ENV, action)
        .env("WARDEN_SECCOMP_HELPER_ARG", "");
    cmd
}

/// The errno the helper reported for its action (0: the call succeeded).
fn helper_errno(out: &Outcome) -> i32 {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("errno="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no result from the helper: {} / {}", out.stdout, out.stderr))
}

fn exec_only() -> Spec {
    Spec {
        notify_exec: true,
        ..Spec::default()
    }
}

fn execs(seen: &[Notification]) -> Vec<(String, Vec<String>)> {
    seen.iter()
        .filter_map(|n| match &n.event {
            Event::Exec { path, argv, .. } => Some((path.clone(), argv.clone())),
            _ => None,
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn an_allowed_exec_runs_and_is_reported_exactly() {
    let script = "/bin/echo hello 'two  words'; cd /bin && ./echo relative";
    let out = supervise(&exec_only(), sh(script), |_| Response::Continue);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "hello two  words\nrelative\n");
    let cwd_bin = std::fs::canonicalize("/bin").unwrap();
    assert_eq!(
        execs(&out.seen),
        vec![
            ("/bin/sh".to_owned(), strings(&["/bin/sh", "-c", script])),
            (
                "/bin/echo".to_owned(),
                strings(&["/bin/echo", "hello", "two  words"])
            ),
            (
                format!("{}/echo", cwd_bin.display()),
                strings(&["./echo", "relative"])
            ),
        ]
    );
    let me = std::process::id() as i32;
    assert!(out.seen.iter().all(|n| n.pid > 0 && n.pid != me));
    assert!(out.seen.iter().all(|n| matches!(
        n.event,
        Event::Exec {
            truncated: false,
            ..
        }
    )));
}

#[test]
fn long_argument_lists_are_cut_and_flagged() {
    let script = "/bin/true $(seq 1 300)";
    let out = supervise(&exec_only(), sh(script), |_| Response::Continue);
    assert!(out.status.success(), "{}", out.stderr);
    let last = out.seen.last().unwrap();
    match &last.event {
        Event::Exec {
            path,
            argv,
            truncated,
            ..
        } => {
            assert_eq!(path, "/bin/true");
            assert_eq!(argv.len(), 256);
            assert_eq!(argv[255], "255");
            assert!(truncated);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_denied_exec_fails_with_eperm() {
    let script = "/bin/echo should-not-run; echo status=$?";
    let out = supervise(&exec_only(), sh(script), |n| match &n.event {
        Event::Exec { path, .. } if path == "/bin/echo" => Response::Deny(libc::EPERM),
        _ => Response::Continue,
    });
    assert!(!out.stdout.contains("should-not-run"), "{}", out.stdout);
    assert!(out.stdout.contains("status=126"), "{}", out.stdout);
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
    assert_eq!(execs(&out.seen).len(), 2);
}

#[test]
fn a_connect_is_reported_and_denied_with_eperm() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let spec = Spec {
        notify_connect: true,
        ..Spec::default()
    };
    let out = supervise(
        &spec,
        as_helper("connect", &addr.to_string()),
        |n| match n.event {
            Event::Connect { .. } => Response::Deny(libc::EPERM),
            _ => Response::Continue,
        },
    );
    assert_eq!(helper_errno(&out), libc::EPERM, "{}", out.stderr);
    let connects: Vec<_> = out
        .seen
        .iter()
        .filter_map(|n| match n.event {
            Event::Connect { addr, family } => Some((addr, family)),
            _ => None,
        })
        .collect();
    assert_eq!(connects, vec![(Some(addr), libc::AF_INET)]);
    // A TCP socket is not a supervised socket, and the connection never reached the listener.
    assert!(
        !out.seen
            .iter()
            .any(|n| matches!(n.event, Event::Socket { .. }))
    );
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
}

#[test]
fn an_allowed_connect_reaches_its_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let spec = Spec {
        notify_connect: true,
        ..Spec::default()
    };
    let out = supervise(&spec, as_helper("connect", &addr.to_string()), |_| {
        Response::Continue
    });
    assert_eq!(helper_errno(&out), 0, "{}", out.stderr);
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_ok());
}

#[test]
fn a_udp_socket_is_reported_and_denied() {
    let spec = Spec {
        notify_sockets: true,
        ..Spec::default()
    };
    let out = supervise(&spec, as_helper("udp", ""), |n| match n.event {
        Event::Socket { .. } => Response::Deny(libc::EPERM),
        _ => Response::Continue,
    });
    assert_eq!(helper_errno(&out), libc::EPERM, "{}", out.stderr);
    let sockets: Vec<_> = out
        .seen
        .iter()
        .filter_map(|n| match n.event {
            Event::Socket { domain, kind } => Some((domain, kind)),
            _ => None,
        })
        .collect();
    assert_eq!(sockets, vec![(libc::AF_INET, libc::SOCK_DGRAM)]);
}

/// Runs a helper action under the default deny list (with exec supervision, so the listener
/// is there) and returns its errno.
fn denied(action: &str) -> i32 {
    let out = supervise(&exec_only(), as_helper(action, ""), |_| Response::Continue);
    helper_errno(&out)
}

#[test]
fn new_namespaces_are_refused_even_to_root() {
    assert_eq!(denied("unshare-user"), libc::EPERM);
    assert_eq!(denied("clone-newuser"), libc::EPERM);
    assert_eq!(denied("clone3"), libc::ENOSYS);
    // Forks still work: the C library falls back from clone3 to clone.
    assert_eq!(denied("fork"), 0);
}

#[test]
fn the_unshare_command_is_refused() {
    if !std::path::Path::new("/usr/bin/unshare").exists() {
        eprintln!("skipped: /usr/bin/unshare is not installed");
        return;
    }
    let out = supervise(
        &exec_only(),
        sh("/usr/bin/unshare -U /bin/true; echo status=$?"),
        |_| Response::Continue,
    );
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("status=0"), "{}", out.stdout);
}

#[test]
fn ptrace_is_refused() {
    let out = supervise(&exec_only(), as_helper_under_sh("ptrace"), |_| {
        Response::Continue
    });
    assert_eq!(helper_errno(&out), libc::EPERM, "{}", out.stderr);
}

#[test]
fn personality_changes_are_refused_but_queries_work() {
    assert_eq!(denied("personality-set"), libc::EPERM);
    assert_eq!(denied("personality-query"), 0);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_foreign_architecture_call_kills_the_process() {
    use std::os::unix::process::ExitStatusExt;

    let program = Spec::default().compile().unwrap();
    let mut cmd = Command::new("/bin/true");
    let hook = move || {
        // No core file from the expected SIGSYS.
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit with a live struct.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
        match program.install() {
            Ok(_) => {}
            Err(SeccompError::Load(e) | SeccompError::NoNewPrivs(e)) => return Err(e),
            Err(_) => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
        // getpid through the 32-bit entry point: audit arch i386.
        // SAFETY: int 0x80 clobbers eax and r8-r11 only.
        unsafe {
            std::arch::asm!(
                "int 0x80",
                inlateout("eax") 20u32 => _,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                options(nostack),
            );
        }
        Ok(())
    };
    // SAFETY: the hook only makes system calls on data built before fork.
    unsafe { cmd.pre_exec(hook) };
    let status = cmd.status().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");
}

#[test]
fn the_supervisor_closes_when_no_process_holds_the_filter() {
    let out = supervise(&exec_only(), sh("exit 3"), |_| Response::Continue);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(execs(&out.seen).len(), 1);
}

/// The helper's side: performs the action named in the environment and prints its errno.
#[test]
fn helper() {
    let Ok(action) = std::env::var(HELPER_ENV) else {
        return;
    };
    let arg = std::env::var("WARDEN_SECCOMP_HELPER_ARG").unwrap_or_default();
    let errno = |rc: libc::c_long| {
        if rc < 0 {
            io::Error::last_os_error().raw_os_error().unwrap_or(-1)
        } else {
            0
        }
    };
    let result = match action.as_str() {
        "connect" => {
            let addr: SocketAddr = arg.parse().unwrap();
            match std::net::TcpStream::connect(addr) {
                Ok(_) => 0,
                Err(e) => e.raw_os_error().unwrap_or(-1),
            }
        }
        "udp" => match std::net::UdpSocket::bind("127.0.0.1:0") {
            Ok(_) => 0,
            Err(e) => e.raw_os_error().unwrap_or(-1),
        },
        // SAFETY (all below): raw system calls with integer arguments or live structs; a child
        // created by a clone that should have failed exits at once.
        "unshare-user" => errno(unsafe { libc::unshare(libc::CLONE_NEWUSER) } as libc::c_long),
        "clone-newuser" => {
            let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong;
            let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
            if rc == 0 {
                unsafe { libc::_exit(0) };
            }
            errno(rc)
        }
        "clone3" => {
            let mut args = [0u64; 11]; // struct clone_args, version 2
            args[4] = libc::SIGCHLD as u64; // exit_signal
            let rc =
                unsafe { libc::syscall(libc::SYS_clone3, args.as_mut_ptr(), size_of_val(&args)) };
            if rc == 0 {
                unsafe { libc::_exit(0) };
            }
            errno(rc)
        }
        "fork" => match Command::new("/bin/true").status() {
            Ok(s) if s.success() => 0,
            Ok(_) => -2,
            Err(e) => e.raw_os_error().unwrap_or(-1),
        },
        "ptrace" => errno(unsafe {
            libc::ptrace(
                libc::PTRACE_TRACEME,
                0,
                std::ptr::null_mut::<libc::c_void>(),
                0,
            )
        }),
        "personality-set" => {
            errno(unsafe { libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong) }.into())
        }
        "personality-query" => errno(unsafe { libc::personality(0xffff_ffff) }.into()),
        other => panic!("unknown helper action {other}"),
    };
    println!("errno={result}");
}

#[test]
fn a_program_that_is_not_there_is_reported_missing() {
    let out = supervise(&exec_only(), sh("/no/such/program; /bin/true"), |_| {
        Response::Continue
    });
    let seen: Vec<(String, Option<i32>)> = out
        .seen
        .iter()
        .filter_map(|n| match &n.event {
            Event::Exec { path, missing, .. } => Some((path.clone(), *missing)),
            _ => None,
        })
        .collect();
    assert!(
        seen.contains(&("/no/such/program".to_owned(), Some(libc::ENOENT))),
        "{seen:?}"
    );
    assert!(seen.contains(&("/bin/true".to_owned(), None)), "{seen:?}");
}
