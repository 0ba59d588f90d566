//! The filter: what it refuses, what it hands to the supervisor, and how it is installed.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use super::SeccompError;
use super::bpf::{Asm, Target};
use super::syscall::{self, Syscall};

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("Warden's seccomp filter supports x86_64 and aarch64 only");

/// The audit architecture of the native ABI (`AUDIT_ARCH_*` in `linux/audit.h`).
#[cfg(target_arch = "x86_64")]
pub(crate) const NATIVE_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
pub(crate) const NATIVE_ARCH: u32 = 0xc000_00b7;

/// On x86_64 the x32 ABI shares the native audit architecture and marks its calls with this
/// bit of the number; the filter refuses them rather than match x32 numbers against x86_64 ones.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Offsets into `struct seccomp_data`: nr (i32), arch (u32), instruction_pointer (u64), args[6].
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// The low 32 bits of argument `i` (both supported architectures are little-endian).
const fn off_arg_low(i: u32) -> u32 {
    16 + 8 * i
}

/// The namespace flags a `clone` must not carry.
const CLONE_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWTIME) as u32;

/// `personality(0xffffffff)` asks for the current persona without changing it.
const PERSONALITY_QUERY: u32 = 0xffff_ffff;
/// `PER_LINUX`, the default persona; setting it again changes nothing.
const PER_LINUX: u32 = 0;

/// How many denied calls share one `ret EPERM`; keeps every jump offset far below 255.
const DENY_CHUNK: usize = 64;

const RET_KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_USER_NOTIF: u32 = libc::SECCOMP_RET_USER_NOTIF;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// What the seccomp filter does.
///
/// Every entry of `deny` is refused with `EPERM`, except three that are decided by their
/// arguments when they are in the list:
/// - `clone` is refused with `EPERM` only when its flags ask for a new namespace (user, mount,
///   PID, network, IPC, UTS, cgroup or time); plain forks and threads go on.
/// - `clone3` is answered with `ENOSYS`: its flags are in memory the filter cannot read, and
///   the C library falls back to `clone`, whose flags the filter can check.
/// - `personality` may only query the persona (`0xffffffff`) or set `PER_LINUX` (0); any other
///   persona (for instance `ADDR_NO_RANDOMIZE`) is refused with `EPERM`.
///
/// A denied call is never sent to the supervisor, even if a `notify_*` flag names it.
/// A call from a foreign architecture (e.g. `int 0x80` on x86_64) kills the process, and on
/// x86_64 x32 calls are answered with `ENOSYS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Calls refused with `EPERM` (see above for `clone`, `clone3` and `personality`).
    pub deny: Vec<Syscall>,
    /// `execve` and `execveat` go to the supervisor.
    pub notify_exec: bool,
    /// `connect` goes to the supervisor.
    pub notify_connect: bool,
    /// `socket` for raw or datagram IPv4/IPv6 sockets, and any packet socket, goes to the
    /// supervisor; other sockets are allowed.
    pub notify_sockets: bool,
}

impl Default for Spec {
    /// The default deny list and no notifications.
    fn default() -> Self {
        Self {
            deny: Self::default_deny(),
            notify_exec: false,
            notify_connect: false,
            notify_sockets: false,
        }
    }
}

impl Spec {
    /// What no agent needs: tracing and reading other processes, mounting, kernel modules and
    /// kexec, BPF, keyrings, `userfaultfd`, `perf_event_open`, new namespaces (`unshare`,
    /// `setns`, `clone` with namespace flags, `clone3`), persona changes, reboot, swap,
    /// accounting, quotas, the kernel log, port I/O, file handles, setting the clock,
    /// `vhangup`, `pidfd_getfd`, `kcmp`, legacy calls, and `io_uring` (whose operations reach
    /// `connect` and `socket` without passing through the filter).
    pub fn default_deny() -> Vec<Syscall> {
        let mut deny: Vec<Syscall> = syscall::DENY_COMMON
            .iter()
            .chain(syscall::DENY_ARCH)
            .copied()
            .collect();
        deny.extend(syscall::IO_URING);
        deny.extend([syscall::CLONE, syscall::CLONE3, syscall::PERSONALITY]);
        deny
    }

    /// Compiles the filter. Do this before forking: installing needs no allocation.
    pub fn compile(&self) -> Result<Program, SeccompError> {
        let mut asm = Asm::new();

        // The architecture first: syscall numbers mean nothing under another ABI.
        let native = asm.label();
        asm.load(OFF_ARCH);
        asm.jeq(NATIVE_ARCH, Target::At(native), Target::Next);
        asm.ret(RET_KILL_PROCESS);
        asm.bind(native);

        // INVARIANT: from here on, every path that reaches a numbered check has the syscall
        // number in the accumulator; blocks that load an argument end in a `ret`.
        asm.load(OFF_NR);
        #[cfg(target_arch = "x86_64")]
        {
            let not_x32 = asm.label();
            asm.jset(X32_SYSCALL_BIT, Target::Next, Target::At(not_x32));
            asm.ret(RET_ENOSYS);
            asm.bind(not_x32);
        }

        let mut plain = Vec::new();
        for call in self.deny_with_notify_guards() {
            if call.nr() == syscall::CLONE.nr() {
                clone_without_namespaces(&mut asm);
            } else if call.nr() == syscall::CLONE3.nr() {
                ret_if_any(&mut asm, &[call.nr()], RET_ENOSYS)?;
            } else if call.nr() == syscall::PERSONALITY.nr() {
                personality_query_only(&mut asm);
            } else {
                plain.push(call.nr());
            }
        }
        for chunk in plain.chunks(DENY_CHUNK) {
            ret_if_any(&mut asm, chunk, RET_EPERM)?;
        }
        no_terminal_injection(&mut asm);

        if self.notify_exec {
            ret_if_any(
                &mut asm,
                &[syscall::EXECVE.nr(), syscall::EXECVEAT.nr()],
                RET_USER_NOTIF,
            )?;
        }
        if self.notify_connect {
            ret_if_any(&mut asm, &[syscall::CONNECT.nr()], RET_USER_NOTIF)?;
        }
        if self.notify_sockets {
            raw_and_datagram_sockets(&mut asm)?;
        }
        asm.ret(RET_ALLOW);

        Ok(Program {
            filter: asm.finish()?,
            listener: self.notify_exec || self.notify_connect || self.notify_sockets,
        })
    }

    /// The deny list without duplicates, plus `io_uring` whenever connections or sockets are
    /// supervised (its operations would bypass the filter).
    fn deny_with_notify_guards(&self) -> Vec<Syscall> {
        let mut calls: Vec<Syscall> = Vec::with_capacity(self.deny.len() + 3);
        let guards = if self.notify_connect || self.notify_sockets {
            syscall::IO_URING
        } else {
            &[]
        };
        for &call in self.deny.iter().chain(guards) {
            if !calls.iter().any(|c| c.nr() == call.nr()) {
                calls.push(call);
            }
        }
        calls
    }
}

/// A syscall number as the filter sees it: `seccomp_data.nr` is a 32-bit int.
fn nr_word(nr: i64) -> Result<u32, SeccompError> {
    i32::try_from(nr)
        .map(|n| n as u32)
        .map_err(|_| SeccompError::BadSyscallNumber { nr })
}

/// `ret action` when the number in the accumulator is one of `nrs`; falls through otherwise.
fn ret_if_any(asm: &mut Asm, nrs: &[i64], action: u32) -> Result<(), SeccompError> {
    let hit = asm.label();
    let miss = asm.label();
    for (i, &nr) in nrs.iter().enumerate() {
        let jf = if i + 1 == nrs.len() {
            Target::At(miss)
        } else {
            Target::Next
        };
        asm.jeq(nr_word(nr)?, Target::At(hit), jf);
    }
    asm.bind(hit);
    asm.ret(action);
    asm.bind(miss);
    Ok(())
}

/// `clone` goes on unless its flags (argument 0 on both architectures) ask for a namespace.
fn clone_without_namespaces(asm: &mut Asm) {
    let other = asm.label();
    let allow = asm.label();
    asm.jeq(syscall::CLONE.nr() as u32, Target::Next, Target::At(other));
    asm.load(off_arg_low(0));
    asm.jset(CLONE_NAMESPACE_FLAGS, Target::Next, Target::At(allow));
    asm.ret(RET_EPERM);
    asm.bind(allow);
    asm.ret(RET_ALLOW);
    asm.bind(other);
}

/// `ioctl(fd, TIOCSTI | TIOCLINUX, ...)` is refused: with the terminal Warden was started
/// from, a sandboxed process could push keystrokes into the operator's shell, to be run
/// there after the agent exits. The request number is 32 bits in the kernel.
fn no_terminal_injection(asm: &mut Asm) {
    let other = asm.label();
    let allow = asm.label();
    let deny = asm.label();
    asm.jeq(syscall::IOCTL.nr() as u32, Target::Next, Target::At(other));
    asm.load(off_arg_low(1));
    asm.jeq(libc::TIOCSTI as u32, Target::At(deny), Target::Next);
    asm.jeq(libc::TIOCLINUX as u32, Target::At(deny), Target::At(allow));
    asm.bind(deny);
    asm.ret(RET_EPERM);
    asm.bind(allow);
    asm.ret(RET_ALLOW);
    asm.bind(other);
}

/// `personality` may query or set `PER_LINUX`; the kernel reads only the low 32 bits.
fn personality_query_only(asm: &mut Asm) {
    let other = asm.label();
    let allow = asm.label();
    asm.jeq(
        syscall::PERSONALITY.nr() as u32,
        Target::Next,
        Target::At(other),
    );
    asm.load(off_arg_low(0));
    asm.jeq(PERSONALITY_QUERY, Target::At(allow), Target::Next);
    asm.jeq(PER_LINUX, Target::At(allow), Target::Next);
    asm.ret(RET_EPERM);
    asm.bind(allow);
    asm.ret(RET_ALLOW);
    asm.bind(other);
}

/// `socket(domain, type, _)`: packet sockets of any type, and raw or datagram IPv4/IPv6
/// sockets (type without its `SOCK_NONBLOCK`/`SOCK_CLOEXEC` flags), go to the supervisor.
fn raw_and_datagram_sockets(asm: &mut Asm) -> Result<(), SeccompError> {
    let other = asm.label();
    let check_type = asm.label();
    let notify = asm.label();
    let allow = asm.label();
    asm.jeq(
        nr_word(syscall::SOCKET.nr())?,
        Target::Next,
        Target::At(other),
    );
    asm.load(off_arg_low(0));
    asm.jeq(libc::AF_PACKET as u32, Target::At(notify), Target::Next);
    asm.jeq(libc::AF_INET as u32, Target::At(check_type), Target::Next);
    asm.jeq(
        libc::AF_INET6 as u32,
        Target::At(check_type),
        Target::At(allow),
    );
    asm.bind(check_type);
    asm.load(off_arg_low(1));
    asm.and(0xf);
    asm.jeq(libc::SOCK_RAW as u32, Target::At(notify), Target::Next);
    asm.jeq(
        libc::SOCK_DGRAM as u32,
        Target::At(notify),
        Target::At(allow),
    );
    asm.bind(notify);
    asm.ret(RET_USER_NOTIF);
    asm.bind(allow);
    asm.ret(RET_ALLOW);
    asm.bind(other);
    Ok(())
}

/// A compiled filter, ready to install.
#[derive(Debug, Clone)]
pub struct Program {
    filter: Vec<libc::sock_filter>,
    listener: bool,
}

impl Program {
    /// The number of BPF instructions.
    pub fn len(&self) -> usize {
        self.filter.len()
    }

    /// Whether the program is empty (never true for a compiled [`Spec`]).
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty()
    }

    /// Whether installing returns a listener for the supervisor.
    pub fn has_listener(&self) -> bool {
        self.listener
    }

    /// Sets `no_new_privs` and installs the filter on the calling thread, returning the
    /// user-notification listener when the spec supervises anything.
    ///
    /// Async-signal-safe: it only makes system calls on data built by [`Spec::compile`], so it
    /// may run between `fork` and `exec` (e.g. in `CommandExt::pre_exec`). Call it while the
    /// process has one thread; the filter is not synchronised to other threads. The default
    /// deny list refuses `mount`, `pivot_root` and `unshare`: install after the sandbox is built.
    pub fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_NO_NEW_PRIVS,
                1 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if rc != 0 {
            return Err(SeccompError::NoNewPrivs(io::Error::last_os_error()));
        }

        // INVARIANT: `compile` refuses programs over 4096 instructions, so the length fits.
        let prog = libc::sock_fprog {
            len: self.filter.len() as u16,
            filter: self.filter.as_ptr().cast_mut(),
        };
        let mut flags = 0;
        if self.listener {
            // Once Warden has received a notification, only a fatal signal may interrupt the
            // waiting call; otherwise a signal restarts it and Warden sees it twice.
            flags = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
                | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
        }
        let mut rc = seccomp_set_filter(flags, &prog);
        if rc < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
            && flags & libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV != 0
        {
            // Kernels before 5.19 do not know the flag.
            flags &= !libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
            rc = seccomp_set_filter(flags, &prog);
        }
        if rc < 0 {
            return Err(SeccompError::Load(io::Error::last_os_error()));
        }
        if !self.listener {
            return Ok(None);
        }
        let fd = libc::c_int::try_from(rc)
            .map_err(|_| SeccompError::Load(io::Error::from_raw_os_error(libc::EBADF)))?;
        // SAFETY: with NEW_LISTENER the kernel returns a fresh descriptor that nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    #[cfg(test)]
    pub(crate) fn instructions(&self) -> &[libc::sock_filter] {
        &self.filter
    }
}

fn seccomp_set_filter(flags: libc::c_ulong, prog: &libc::sock_fprog) -> libc::c_long {
    // SAFETY: `prog` points at a live filter of `prog.len` instructions for the whole call.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            flags,
            prog as *const libc::sock_fprog,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::bpf::{self, LD_W_ABS, MAX_INSNS};
    use super::*;

    /// `struct seccomp_data` as 16 words: nr, arch, ip (2 words), then 6 args of 2 words.
    fn data(nr: i64, args: [u64; 6]) -> [u32; 16] {
        let mut d = [0u32; 16];
        d[0] = nr as u32;
        d[1] = NATIVE_ARCH;
        for (i, a) in args.iter().enumerate() {
            d[4 + 2 * i] = *a as u32;
            d[5 + 2 * i] = (*a >> 32) as u32;
        }
        d
    }

    fn run(p: &Program, nr: i64, args: [u64; 6]) -> u32 {
        bpf::run(p.instructions(), &data(nr, args))
    }

    fn full() -> Program {
        Spec {
            notify_exec: true,
            notify_connect: true,
            notify_sockets: true,
            ..Spec::default()
        }
        .compile()
        .unwrap()
    }

    #[test]
    fn the_program_starts_by_checking_the_architecture() {
        let p = full();
        let insns = p.instructions();
        assert_eq!((insns[0].code, insns[0].k), (LD_W_ABS, OFF_ARCH));
        assert_eq!(insns[1].k, NATIVE_ARCH);
        let mut foreign = data(libc::SYS_getpid, [0; 6]);
        foreign[1] = 0x4000_0003; // AUDIT_ARCH_I386
        assert_eq!(bpf::run(insns, &foreign), RET_KILL_PROCESS);
        assert_eq!(run(&p, libc::SYS_getpid, [0; 6]), RET_ALLOW);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_calls_are_not_mistaken_for_native_ones() {
        let p = full();
        let nr = libc::SYS_ptrace | i64::from(X32_SYSCALL_BIT);
        assert_eq!(run(&p, nr, [0; 6]), RET_ENOSYS);
        let nr = libc::SYS_getpid | i64::from(X32_SYSCALL_BIT);
        assert_eq!(run(&p, nr, [0; 6]), RET_ENOSYS);
    }

    #[test]
    fn every_default_denial_is_eperm() {
        let p = full();
        for call in Spec::default_deny() {
            if [syscall::CLONE, syscall::CLONE3, syscall::PERSONALITY].contains(&call) {
                continue;
            }
            assert_eq!(run(&p, call.nr(), [0; 6]), RET_EPERM, "{call}");
        }
    }

    #[test]
    fn clone_is_refused_only_with_namespace_flags() {
        let p = full();
        let clone = libc::SYS_clone;
        let fork = libc::SIGCHLD as u64;
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(run(&p, clone, [fork, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, clone, [thread, 0, 0, 0, 0, 0]), RET_ALLOW);
        for flag in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWCGROUP,
            libc::CLONE_NEWTIME,
        ] {
            let flags = fork | flag as u64;
            assert_eq!(
                run(&p, clone, [flags, 0, 0, 0, 0, 0]),
                RET_EPERM,
                "{flag:#x}"
            );
        }
        assert_eq!(run(&p, libc::SYS_clone3, [0; 6]), RET_ENOSYS);
    }

    #[test]
    fn personality_may_only_query_or_set_linux() {
        let p = full();
        let nr = libc::SYS_personality;
        assert_eq!(run(&p, nr, [0xffff_ffff, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, nr, [0, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, nr, [0x0040000, 0, 0, 0, 0, 0]), RET_EPERM); // ADDR_NO_RANDOMIZE
        assert_eq!(run(&p, nr, [0x0008, 0, 0, 0, 0, 0]), RET_EPERM); // PER_LINUX32
    }

    #[test]
    fn terminal_injection_ioctls_are_refused_and_others_pass() {
        let p = full();
        let nr = libc::SYS_ioctl;
        // The request's type differs between C libraries (`c_ulong` or `c_int`).
        #[allow(clippy::unnecessary_cast)]
        let req = |r: libc::Ioctl| r as u64;
        let ioctl = |r: u64| run(&p, nr, [0, r, 0, 0, 0, 0]);
        assert_eq!(ioctl(req(libc::TIOCSTI)), RET_EPERM);
        assert_eq!(ioctl(req(libc::TIOCLINUX)), RET_EPERM);
        // The kernel compares 32 bits: high bits set do not dodge the rule.
        assert_eq!(ioctl(0xffff_ffff_0000_0000 | req(libc::TIOCSTI)), RET_EPERM);
        assert_eq!(ioctl(req(libc::TIOCGWINSZ)), RET_ALLOW);
        assert_eq!(ioctl(req(libc::FIONREAD)), RET_ALLOW);
    }

    #[test]
    fn sockets_are_supervised_by_domain_and_type() {
        let p = full();
        let nr = libc::SYS_socket;
        let sock = |domain: i32, kind: i32| run(&p, nr, [domain as u64, kind as u64, 0, 0, 0, 0]);
        assert_eq!(sock(libc::AF_INET, libc::SOCK_STREAM), RET_ALLOW);
        assert_eq!(
            sock(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC),
            RET_ALLOW
        );
        assert_eq!(sock(libc::AF_UNIX, libc::SOCK_DGRAM), RET_ALLOW);
        assert_eq!(sock(libc::AF_INET, libc::SOCK_DGRAM), RET_USER_NOTIF);
        let dgram_flags = libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        assert_eq!(sock(libc::AF_INET6, dgram_flags), RET_USER_NOTIF);
        assert_eq!(sock(libc::AF_INET, libc::SOCK_RAW), RET_USER_NOTIF);
        assert_eq!(sock(libc::AF_PACKET, libc::SOCK_STREAM), RET_USER_NOTIF);
        assert_eq!(sock(libc::AF_NETLINK, libc::SOCK_RAW), RET_ALLOW);
    }

    #[test]
    fn notifications_follow_the_spec() {
        let p = full();
        assert!(p.has_listener());
        for nr in [libc::SYS_execve, libc::SYS_execveat, libc::SYS_connect] {
            assert_eq!(run(&p, nr, [0; 6]), RET_USER_NOTIF);
        }
        let quiet = Spec::default().compile().unwrap();
        assert!(!quiet.has_listener());
        for nr in [libc::SYS_execve, libc::SYS_connect, libc::SYS_socket] {
            assert_eq!(
                run(&quiet, nr, [libc::AF_PACKET as u64, 0, 0, 0, 0, 0]),
                RET_ALLOW
            );
        }
    }

    #[test]
    fn denial_beats_notification_and_io_uring_guards_the_network() {
        let spec = Spec {
            deny: vec![syscall::EXECVE],
            notify_exec: true,
            notify_connect: true,
            notify_sockets: false,
        };
        let p = spec.compile().unwrap();
        assert_eq!(run(&p, libc::SYS_execve, [0; 6]), RET_EPERM);
        assert_eq!(run(&p, libc::SYS_execveat, [0; 6]), RET_USER_NOTIF);
        assert_eq!(run(&p, libc::SYS_io_uring_setup, [0; 6]), RET_EPERM);
        let exec_only = Spec {
            deny: vec![],
            notify_exec: true,
            ..Spec::default()
        };
        let p = exec_only.compile().unwrap();
        assert_eq!(run(&p, libc::SYS_io_uring_setup, [0; 6]), RET_ALLOW);
    }

    #[test]
    fn long_deny_lists_are_split_so_every_jump_fits() {
        let deny: Vec<Syscall> = (1000..1900)
            .map(|nr| Syscall::new(nr, "synthetic"))
            .collect();
        let p = Spec {
            deny: deny.clone(),
            notify_exec: true,
            notify_connect: false,
            notify_sockets: false,
        }
        .compile()
        .unwrap();
        assert!(p.len() <= MAX_INSNS);
        for call in &deny {
            assert_eq!(run(&p, call.nr(), [0; 6]), RET_EPERM, "{call}");
        }
        assert_eq!(run(&p, 999, [0; 6]), RET_ALLOW);
        assert_eq!(run(&p, libc::SYS_execve, [0; 6]), RET_USER_NOTIF);
    }

    #[test]
    fn duplicates_collapse_and_oversized_programs_are_refused() {
        let one = Spec {
            deny: vec![syscall::EXECVE; 10],
            ..Spec::default()
        };
        let two = Spec {
            deny: vec![syscall::EXECVE],
            ..Spec::default()
        };
        assert_eq!(one.compile().unwrap().len(), two.compile().unwrap().len());

        let huge = Spec {
            deny: (0..5000).map(|nr| Syscall::new(nr, "synthetic")).collect(),
            ..Spec::default()
        };
        assert!(matches!(
            huge.compile(),
            Err(SeccompError::ProgramTooLong { .. })
        ));
        let negative = Spec {
            deny: vec![Syscall::new(1 << 40, "absurd")],
            ..Spec::default()
        };
        assert!(matches!(
            negative.compile(),
            Err(SeccompError::BadSyscallNumber { .. })
        ));
    }
}
