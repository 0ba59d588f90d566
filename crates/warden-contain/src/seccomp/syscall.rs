//! System calls by number and name, and the list no agent needs.

use std::fmt;

/// One system call of the native architecture: its number, and its name for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Syscall {
    nr: i64,
    name: &'static str,
}

impl Syscall {
    /// A system call by number, with the name shown in records and errors.
    pub const fn new(nr: i64, name: &'static str) -> Self {
        Self { nr, name }
    }

    /// The native system call number.
    pub const fn nr(&self) -> i64 {
        self.nr
    }

    /// The system call's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The known system call with this name, if Warden's table has it on this architecture.
    pub fn by_name(name: &str) -> Option<Self> {
        known().find(|s| s.name == name)
    }

    /// The known system call with this number; unknown numbers get the name `"unknown"`.
    pub fn by_nr(nr: i64) -> Self {
        known().find(|s| s.nr == nr).unwrap_or(Self {
            nr,
            name: "unknown",
        })
    }
}

impl fmt::Display for Syscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name, self.nr)
    }
}

macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        &[$(Syscall::new(libc::$name as i64, trim_sys(stringify!($name)))),*]
    };
}

/// `SYS_ptrace` → `ptrace`, at compile time.
const fn trim_sys(s: &'static str) -> &'static str {
    match s.as_bytes() {
        [b'S', b'Y', b'S', b'_', rest @ ..] => match std::str::from_utf8(rest) {
            Ok(name) => name,
            Err(_) => s,
        },
        _ => s,
    }
}

/// What no agent needs, on every architecture: debugging other processes, mounting, loading
/// kernel code, kernel keyrings, new namespaces, changing the clock, and the like.
///
/// `clone`, `clone3` and `personality` are not in this list: the filter treats them by their
/// arguments (see [`crate::seccomp::Spec`]). Historic calls the kernel no longer implements
/// (`create_module`, `query_module`, `get_kernel_syms`) are absent from libc's tables and already
/// fail with `ENOSYS`.
pub(crate) const DENY_COMMON: &[Syscall] = syscalls![
    SYS_ptrace,
    SYS_process_vm_readv,
    SYS_process_vm_writev,
    SYS_mount,
    SYS_umount2,
    SYS_pivot_root,
    SYS_chroot,
    SYS_move_mount,
    SYS_open_tree,
    SYS_fsopen,
    SYS_fsconfig,
    SYS_fsmount,
    SYS_fspick,
    SYS_mount_setattr,
    SYS_init_module,
    SYS_finit_module,
    SYS_delete_module,
    SYS_bpf,
    SYS_kexec_load,
    SYS_kexec_file_load,
    SYS_keyctl,
    SYS_add_key,
    SYS_request_key,
    SYS_userfaultfd,
    SYS_perf_event_open,
    SYS_unshare,
    SYS_setns,
    SYS_reboot,
    SYS_swapon,
    SYS_swapoff,
    SYS_acct,
    SYS_quotactl,
    SYS_quotactl_fd,
    SYS_syslog,
    SYS_lookup_dcookie,
    SYS_open_by_handle_at,
    SYS_name_to_handle_at,
    SYS_clock_settime,
    SYS_settimeofday,
    SYS_adjtimex,
    SYS_clock_adjtime,
    SYS_vhangup,
    SYS_pidfd_getfd,
    SYS_kcmp,
    SYS_nfsservctl,
];

/// The x86_64-only members of the deny list.
#[cfg(target_arch = "x86_64")]
pub(crate) const DENY_ARCH: &[Syscall] = syscalls![
    SYS_iopl,
    SYS_ioperm,
    SYS_uselib,
    SYS_ustat,
    SYS_sysfs,
    SYS__sysctl,
];

/// aarch64 has none of the legacy calls x86_64 keeps.
#[cfg(target_arch = "aarch64")]
pub(crate) const DENY_ARCH: &[Syscall] = &[];

/// `io_uring` runs socket operations (connect, socket, ...) without a system call per
/// operation, so the filter never sees them.
pub(crate) const IO_URING: &[Syscall] = syscalls![
    SYS_io_uring_setup,
    SYS_io_uring_enter,
    SYS_io_uring_register
];

pub(crate) const CLONE: Syscall = Syscall::new(libc::SYS_clone, "clone");
pub(crate) const CLONE3: Syscall = Syscall::new(libc::SYS_clone3, "clone3");
pub(crate) const PERSONALITY: Syscall = Syscall::new(libc::SYS_personality, "personality");
pub(crate) const EXECVE: Syscall = Syscall::new(libc::SYS_execve, "execve");
pub(crate) const EXECVEAT: Syscall = Syscall::new(libc::SYS_execveat, "execveat");
pub(crate) const CONNECT: Syscall = Syscall::new(libc::SYS_connect, "connect");
pub(crate) const SOCKET: Syscall = Syscall::new(libc::SYS_socket, "socket");
pub(crate) const IOCTL: Syscall = Syscall::new(libc::SYS_ioctl, "ioctl");

/// Every call Warden names: the deny lists and the calls with rules of their own.
const KNOWN: &[&[Syscall]] = &[
    DENY_COMMON,
    DENY_ARCH,
    IO_URING,
    &[
        IOCTL,
        CLONE,
        CLONE3,
        PERSONALITY,
        EXECVE,
        EXECVEAT,
        CONNECT,
        SOCKET,
    ],
];

fn known() -> impl Iterator<Item = Syscall> {
    KNOWN.iter().flat_map(|list| list.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_prefix() {
        assert_eq!(
            Syscall::by_name("ptrace").map(|s| s.nr()),
            Some(libc::SYS_ptrace)
        );
        assert_eq!(Syscall::by_nr(libc::SYS_mount).name(), "mount");
        assert_eq!(Syscall::by_nr(-7).name(), "unknown");
        assert_eq!(Syscall::by_name("SYS_ptrace"), None);
    }
}
