//! The supervisor side of user notification: receive a held system call, describe it, answer.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::SeccompError;
use super::syscall::{self, Syscall};
use super::target::{Read, TargetMemory};

// The ioctl numbers are computed by libc from the struct sizes (`_IOWR('!', 0, struct
// seccomp_notif)` and so on), exactly as `linux/seccomp.h` does; older libc releases lacked
// them, which is why some supervisors compute them by hand.
const IOCTL_RECV: libc::Ioctl = libc::SECCOMP_IOCTL_NOTIF_RECV;
const IOCTL_SEND: libc::Ioctl = libc::SECCOMP_IOCTL_NOTIF_SEND;
const IOCTL_ID_VALID: libc::Ioctl = libc::SECCOMP_IOCTL_NOTIF_ID_VALID;

/// `execveat` flag: execute the file `dirfd` refers to.
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;

/// A system call the target is waiting on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The kernel's id for this call; answer it with [`Supervisor::respond`].
    pub id: u64,
    /// The calling thread, in Warden's PID namespace.
    pub pid: i32,
    /// What the call asks for.
    pub event: Event,
}

/// What a held system call asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `execve` or `execveat`.
    Exec {
        /// The program, absolute: a relative path is joined to the caller's working directory
        /// (or to `execveat`'s directory descriptor); an `AT_EMPTY_PATH` `execveat` is the file
        /// its descriptor refers to. Paths are in the target's view of the filesystem (its
        /// root, e.g. after `pivot_root`, is `/`). Symbolic links are not resolved, except
        /// when one on the way is not owned by root: see `via`.
        path: String,
        /// The arguments, lossy UTF-8.
        argv: Vec<String>,
        /// Whether `argv` was cut: more than 256 entries, a string over 4096 bytes, or more
        /// than 128 KiB in all.
        truncated: bool,
        /// `Some(errno)` (`ENOENT`, `ENOTDIR`) when the call named its program by an absolute
        /// path outside `/proc` and `/dev` and nothing is at its end, resolved inside the
        /// target's root: the kernel would fail the call so. `None` otherwise, and whenever
        /// that cannot be told (a program reached through a descriptor, a magic link).
        missing: Option<i32>,
        /// The path as the call wrote it (made absolute), when a symbolic link on it is not
        /// owned by root — one the agent may have made, in its workspace or `/tmp` — and `path`
        /// is then the program that link leads to, every link followed. A link the agent made
        /// must not lend a permitted name to another program.
        via: Option<String>,
    },
    /// `connect`.
    Connect {
        /// The destination for `AF_INET` and `AF_INET6`; `None` for every other family
        /// (`AF_UNIX`, `AF_NETLINK`, `AF_UNSPEC`, ...) and for an address too short for its
        /// family.
        addr: Option<SocketAddr>,
        /// The address family (`sa_family`).
        family: i32,
    },
    /// `socket` for a raw or datagram IP socket, or a packet socket.
    Socket {
        /// The domain (`AF_INET`, `AF_INET6`, `AF_PACKET`).
        domain: i32,
        /// The socket type without `SOCK_NONBLOCK`/`SOCK_CLOEXEC` (`type & 0xf`).
        kind: i32,
    },
    /// The call's arguments could not be read from the target's memory (bad pointer, the
    /// target is gone, or an unexpected call); deny it.
    Unreadable {
        /// The held call.
        syscall: Syscall,
        /// Why the arguments could not be read.
        why: String,
    },
}

/// The answer to a held call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// Let the kernel run the call as the target made it.
    Continue,
    /// Fail the call with this errno (positive, e.g. `libc::EPERM`).
    Deny(i32),
}

/// What became of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The target received the answer.
    Delivered,
    /// The call no longer waits: the target died, or a signal interrupted the call (it will be
    /// notified again if restarted). Nothing to do.
    TargetGone,
}

/// Owns the listener of a filter and answers its held calls.
#[derive(Debug)]
pub struct Supervisor {
    fd: OwnedFd,
    /// Buffer sizes, in bytes, the running kernel uses for its structures (at least ours).
    notif_size: usize,
    resp_size: usize,
}

impl Supervisor {
    /// Takes the listener returned by [`super::Program::install`].
    pub fn new(fd: OwnedFd) -> Self {
        let (notif, resp) = kernel_sizes();
        Self {
            fd,
            notif_size: notif.max(size_of::<libc::seccomp_notif>()),
            resp_size: resp.max(size_of::<libc::seccomp_notif_resp>()),
        }
    }

    /// Waits for the next held call and describes it.
    ///
    /// Returns [`SeccompError::Closed`] once no process uses the filter any more.
    pub fn recv(&self) -> Result<Notification, SeccompError> {
        loop {
            self.wait(None)?;
            if let Some(n) = self.receive()? {
                return Ok(n);
            }
        }
    }

    /// Like [`Supervisor::recv`], but gives up after `timeout` with `Ok(None)`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Notification>, SeccompError> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.wait(Some(deadline))? {
                return Ok(None);
            }
            if let Some(n) = self.receive()? {
                return Ok(Some(n));
            }
        }
    }

    /// Answers the held call `id`.
    pub fn respond(&self, id: u64, response: Response) -> Result<Delivery, SeccompError> {
        // SAFETY: an all-zero response is valid.
        let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
        resp.id = id;
        match response {
            Response::Continue => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
            Response::Deny(errno) if errno > 0 => resp.error = -errno,
            Response::Deny(errno) => return Err(SeccompError::InvalidErrno(errno)),
        }
        // The kernel copies its own size of the structure; zeroes past ours.
        let mut buf = vec![0u64; self.resp_size.div_ceil(8)];
        // SAFETY: buf is u64-aligned and at least as large as seccomp_notif_resp.
        unsafe {
            buf.as_mut_ptr()
                .cast::<libc::seccomp_notif_resp>()
                .write(resp)
        };
        loop {
            // SAFETY: buf holds the kernel's resp size of initialised bytes.
            let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), IOCTL_SEND, buf.as_mut_ptr()) };
            if rc == 0 {
                return Ok(Delivery::Delivered);
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOENT) => return Ok(Delivery::TargetGone),
                _ => return Err(SeccompError::Respond(err)),
            }
        }
    }

    /// Whether the held call `id` still waits (its target is alive and still in the call).
    pub fn is_pending(&self, id: u64) -> bool {
        let mut id = id;
        // SAFETY: the ioctl reads one u64.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), IOCTL_ID_VALID, &mut id) };
        rc == 0
    }

    /// Polls until a call is held (`true`), the deadline passes (`false`), or no process uses
    /// the filter.
    fn wait(&self, deadline: Option<Instant>) -> Result<bool, SeccompError> {
        loop {
            let timeout_ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        0
                    } else {
                        // Round up so a sub-millisecond remainder does not spin.
                        left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32
                    }
                }
            };
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd, live for the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
            if rc < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(SeccompError::Recv(err));
            }
            if pfd.revents & libc::POLLIN != 0 {
                return Ok(true);
            }
            if pfd.revents & libc::POLLHUP != 0 {
                return Err(SeccompError::Closed);
            }
            if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                return Err(SeccompError::Recv(io::Error::from_raw_os_error(
                    libc::EBADF,
                )));
            }
            if rc == 0 && timeout_ms == 0 {
                return Ok(false);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// Receives one held call; `None` when it vanished before it could be described.
    fn receive(&self) -> Result<Option<Notification>, SeccompError> {
        // Zeroed before each call: the kernel refuses a buffer that is not.
        let mut buf = vec![0u64; self.notif_size.div_ceil(8)];
        loop {
            // SAFETY: buf is u64-aligned and at least the kernel's notification size.
            let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), IOCTL_RECV, buf.as_mut_ptr()) };
            if rc == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => buf.fill(0),
                // Another thread took it, or the target went away after the poll.
                Some(libc::ENOENT) => return Ok(None),
                _ => return Err(SeccompError::Recv(err)),
            }
        }
        // SAFETY: the kernel filled a seccomp_notif at the start of the aligned buffer.
        let raw: libc::seccomp_notif = unsafe { buf.as_ptr().cast::<libc::seccomp_notif>().read() };
        let pid = raw.pid as i32;
        let event = describe(pid, &raw.data);
        // INVARIANT: a notification is returned only if its call still waits after its memory
        // was read, so the pid still names the caller and the bytes came from it.
        if !self.is_pending(raw.id) {
            return Ok(None);
        }
        Ok(Some(Notification {
            id: raw.id,
            pid,
            event,
        }))
    }
}

impl AsFd for Supervisor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The kernel's sizes of `seccomp_notif` and `seccomp_notif_resp`, or ours if it will not say.
fn kernel_sizes() -> (usize, usize) {
    // SAFETY: an all-zero seccomp_notif_sizes is valid.
    let mut sizes: libc::seccomp_notif_sizes = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes one seccomp_notif_sizes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES as libc::c_ulong,
            0 as libc::c_ulong,
            &mut sizes as *mut libc::seccomp_notif_sizes,
        )
    };
    if rc == 0 {
        (
            usize::from(sizes.seccomp_notif),
            usize::from(sizes.seccomp_notif_resp),
        )
    } else {
        (
            size_of::<libc::seccomp_notif>(),
            size_of::<libc::seccomp_notif_resp>(),
        )
    }
}

/// Describes a held call from its registers and the target's memory.
fn describe(pid: i32, data: &libc::seccomp_data) -> Event {
    let nr = i64::from(data.nr);
    let call = Syscall::by_nr(nr);
    let unreadable = |why: String| Event::Unreadable { syscall: call, why };
    let args = data.args;
    if nr == syscall::SOCKET.nr() {
        // Registers only: nothing to read.
        return Event::Socket {
            domain: args[0] as i32,
            kind: args[1] as i32 & 0xf,
        };
    }
    let mut mem = match TargetMemory::open(pid) {
        Ok(mem) => mem,
        Err(e) => return unreadable(format!("cannot open the memory of process {pid}: {e}")),
    };
    let described = if nr == syscall::EXECVE.nr() {
        exec(&mut mem, pid, None, args[0], args[1], 0)
    } else if nr == syscall::EXECVEAT.nr() {
        exec(
            &mut mem,
            pid,
            Some(args[0] as i32),
            args[1],
            args[2],
            args[4],
        )
    } else if nr == syscall::CONNECT.nr() {
        connect(&mut mem, args[1], args[2] as u32)
    } else {
        Err("Warden's filter does not send this call".to_owned())
    };
    described.unwrap_or_else(unreadable)
}

fn exec(
    mem: &mut TargetMemory,
    pid: i32,
    dirfd: Option<i32>,
    path_ptr: u64,
    argv_ptr: u64,
    flags: u64,
) -> Result<Event, String> {
    let Read {
        text: path,
        truncated,
    } = mem
        .c_string(path_ptr)
        .map_err(|e| format!("the program path: {e}"))?;
    if truncated {
        return Err("the program path is longer than the kernel accepts".to_owned());
    }
    let empty_path = flags & AT_EMPTY_PATH != 0;
    let missing = if empty_path {
        None
    } else {
        missing_program(pid, &path)
    };
    let mut path = absolute_program(pid, dirfd, &path, empty_path)?;
    // A descriptor's file is what runs, whatever name /proc gives it ("… (deleted)"): there is
    // no path to resolve. A missing program runs nothing.
    let via = if missing.is_some() || empty_path {
        None
    } else {
        match resolve_program(pid, &path) {
            Resolved::AsWritten => None,
            Resolved::To(target) => Some(std::mem::replace(&mut path, target)),
            Resolved::Unknown(why) => {
                return Err(format!(
                    "the program path {path:?} cannot be resolved: {why}"
                ));
            }
        }
    };

    let (ptrs, mut cut) = mem
        .pointers(argv_ptr)
        .map_err(|e| format!("the argument array: {e}"))?;
    let mut argv = Vec::with_capacity(ptrs.len());
    for (i, ptr) in ptrs.into_iter().enumerate() {
        let arg = mem
            .c_string(ptr)
            .map_err(|e| format!("argument {i}: {e}"))?;
        cut |= arg.truncated;
        argv.push(arg.text);
    }
    Ok(Event::Exec {
        path,
        argv,
        truncated: cut,
        missing,
        via,
    })
}

/// The errno the kernel would give for `path` (as the call wrote it) if nothing is at its end
/// in the target's view: looked up inside the target's root (`RESOLVE_IN_ROOT`: an absolute
/// symbolic link stays inside it; no magic links). Only absolute paths outside `/proc` and
/// `/dev` are looked at: there, what Warden would see is not what the target sees.
fn missing_program(pid: i32, path: &str) -> Option<i32> {
    if !path.starts_with('/')
        || path.starts_with("/proc/")
        || path.starts_with("/dev/")
        || path.contains('\0')
    {
        return None;
    }
    let root = std::fs::File::open(format!("/proc/{pid}/root")).ok()?;
    match open_in_root(&root, path, libc::O_PATH) {
        Ok(_) => None,
        Err(e) if e == libc::ENOENT || e == libc::ENOTDIR => Some(e),
        Err(_) => None,
    }
}

/// Opens `path` inside `root` (`RESOLVE_IN_ROOT`: an absolute symbolic link stays inside it;
/// no magic links), with `flags` and `O_CLOEXEC`; the errno on failure.
fn open_in_root(root: &std::fs::File, path: &str, flags: i32) -> Result<OwnedFd, i32> {
    let relative =
        std::ffi::CString::new(path.trim_start_matches('/')).map_err(|_| libc::EINVAL)?;
    // SAFETY: `open_how` is three integers; all zeros is a valid value of it.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `relative` is a valid C string and `how` a valid `open_how` of the size given,
    // both alive for the call; the descriptor returned, if any, is owned below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            relative.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// How the program path of an exec is to be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolved {
    /// On the path as written: it has no `..`, and every link on it is the system's own.
    AsWritten,
    /// On the program it leads to, every link followed and every `..` applied.
    To(String),
    /// Not at all: it has a `..` or a link the agent may have made, and it cannot be followed
    /// to its end here. The call is refused.
    Unknown(String),
}

/// Resolves `path` (absolute, in the target's view) as the kernel will, one component at a
/// time inside the target's root, seeing each link on the way.
///
/// A link is the system's own when it belongs to root or sits on a read-only mount (the
/// sandbox's own root, a `read_only` folder); the agent may have made any other, in its
/// workspace or `/tmp`, so it must not lend a permitted name to another program. A `..` lets
/// `/usr/bin/../../tmp/x` match `/usr/bin/*`, so it is always applied before deciding.
fn resolve_program(pid: i32, path: &str) -> Resolved {
    let dotdot = components(path).any(|c| c == "..");
    if path.contains('\0') || (!dotdot && path.starts_with("/proc/")) {
        return Resolved::AsWritten;
    }
    let give_up = |agent_link: bool, why: &str| {
        if dotdot || agent_link {
            Resolved::Unknown(why.to_owned())
        } else {
            Resolved::AsWritten
        }
    };
    let Ok(root) = std::fs::File::open(format!("/proc/{pid}/root")) else {
        return give_up(false, "the caller's root cannot be opened");
    };
    let mut done: Vec<String> = Vec::new();
    let mut todo: std::collections::VecDeque<String> = components(path).collect();
    let mut agent_link = false;
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        match part.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        // What Warden would read under /proc is its own, not the caller's.
        if done.first().is_some_and(|top| top == "proc") {
            return give_up(agent_link, "it leads into /proc");
        }
        let here = format!("/{}/{part}", done.join("/"));
        let fd = match open_in_root(&root, &here, libc::O_PATH | libc::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(_) => return give_up(agent_link, "a component of it is missing or unreadable"),
        };
        // SAFETY: `stat` is plain data, written whole by a successful fstat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open for the call and `st` is a valid, writable `stat`.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return give_up(agent_link, "a component of it cannot be examined");
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
            done.push(part);
            continue;
        }
        // The kernel's own bound on links followed in one lookup.
        links += 1;
        if links > 40 {
            return give_up(true, "too many symbolic links");
        }
        agent_link |= st.st_uid != 0 && !on_read_only_mount(&fd);
        let Some(target) = read_link_at(&fd) else {
            return give_up(agent_link, "a symbolic link on it cannot be read as text");
        };
        if target.starts_with('/') {
            done.clear();
        }
        for piece in components(&target).collect::<Vec<_>>().into_iter().rev() {
            todo.push_front(piece);
        }
    }
    let resolved = format!("/{}", done.join("/"));
    if (dotdot || agent_link) && resolved != path {
        Resolved::To(resolved)
    } else {
        Resolved::AsWritten
    }
}

/// Whether the file `fd` refers to is on a read-only mount.
fn on_read_only_mount(fd: &OwnedFd) -> bool {
    // SAFETY: `statvfs` is plain data, written whole by a successful fstatvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open (an `O_PATH` descriptor is enough) and `st` is writable.
    let ok = unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) } == 0;
    ok && st.f_flag & libc::ST_RDONLY != 0
}

/// A path's non-empty components.
fn components(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split('/').filter(|p| !p.is_empty()).map(str::to_owned)
}

/// The target of the symbolic link `fd` (an `O_PATH | O_NOFOLLOW` descriptor) refers to.
fn read_link_at(fd: &OwnedFd) -> Option<String> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `fd` is open, the empty path names it (Linux 2.6.39 and later), and `buf` is
    // writable for the length given.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok().filter(|&n| n < buf.len())?;
    buf.truncate(n);
    String::from_utf8(buf).ok()
}

/// Makes the program path absolute, as the kernel would find it (symbolic links aside).
fn absolute_program(
    pid: i32,
    dirfd: Option<i32>,
    path: &str,
    empty_path: bool,
) -> Result<String, String> {
    let link = |what: String| {
        std::fs::read_link(&what)
            .map(|p| in_target_view(pid, &p.to_string_lossy()))
            .map_err(|e| format!("cannot resolve {what}: {e}"))
    };
    let base = match dirfd {
        Some(fd) if fd != libc::AT_FDCWD => format!("/proc/{pid}/fd/{fd}"),
        _ => format!("/proc/{pid}/cwd"),
    };
    if path.is_empty() && empty_path {
        return match dirfd {
            Some(fd) if fd != libc::AT_FDCWD => link(base),
            _ => Err("AT_EMPTY_PATH without a directory descriptor".to_owned()),
        };
    }
    if path.starts_with('/') {
        return Ok(clean(path));
    }
    Ok(clean(&format!("{}/{path}", link(base)?)))
}

/// A `/proc/PID/{cwd,fd/N}` target, as Warden sees it, in the target's own view of the
/// filesystem: the target's root directory (as Warden sees it) is cut off the front, so a
/// joined relative path reads like the absolute paths the target passes itself.
fn in_target_view(pid: i32, seen: &str) -> String {
    let root = std::fs::read_link(format!("/proc/{pid}/root"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/".to_owned());
    strip_root(&root, seen)
}

fn strip_root(root: &str, seen: &str) -> String {
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return seen.to_owned();
    }
    match seen.strip_prefix(root) {
        Some("") => "/".to_owned(),
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => seen.to_owned(),
    }
}

/// Drops empty and `.` components. `..` stays: removing it would be wrong across symlinks.
fn clean(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn connect(mem: &mut TargetMemory, addr_ptr: u64, len: u32) -> Result<Event, String> {
    // sockaddr_storage is the largest address the kernel accepts.
    let len = (len as usize).min(size_of::<libc::sockaddr_storage>());
    if len < size_of::<libc::sa_family_t>() {
        return Err(format!("an address of {len} bytes has no family"));
    }
    let bytes = mem
        .bytes(addr_ptr, len)
        .map_err(|e| format!("the address: {e}"))?;
    Ok(parse_sockaddr(&bytes))
}

/// The address family and, for IPv4 and IPv6, the destination.
fn parse_sockaddr(bytes: &[u8]) -> Event {
    let family = i32::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
    let addr = match family {
        libc::AF_INET if bytes.len() >= size_of::<libc::sockaddr_in>() => {
            // sockaddr_in: family, port (big-endian), address (network order).
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        // The kernel accepts the 24-byte RFC 2133 form without the scope id.
        libc::AF_INET6 if bytes.len() >= 24 => {
            let port = u16::from_be_bytes([bytes[2], bytes[3]]);
            let flowinfo = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&bytes[8..24]);
            let scope = if bytes.len() >= 28 {
                u32::from_ne_bytes([bytes[24], bytes[25], bytes[26], bytes[27]])
            } else {
                0
            };
            let ip = Ipv6Addr::from(octets);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, flowinfo, scope)))
        }
        _ => None,
    };
    Event::Connect { addr, family }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn paths_lose_dots_but_keep_dotdot() {
        assert_eq!(clean("/bin/./echo"), "/bin/echo");
        assert_eq!(clean("//usr//bin/"), "/usr/bin");
        assert_eq!(clean("/a/../b"), "/a/../b");
        assert_eq!(clean("/"), "/");
    }

    #[test]
    fn paths_are_shown_in_the_targets_view() {
        assert_eq!(strip_root("/", "/home/agent"), "/home/agent");
        assert_eq!(strip_root("/srv/box", "/srv/box/home/agent"), "/home/agent");
        assert_eq!(strip_root("/srv/box/", "/srv/box"), "/");
        assert_eq!(strip_root("/srv/box", "/srv/boxer/x"), "/srv/boxer/x");
        assert_eq!(strip_root("/srv/box", "/elsewhere"), "/elsewhere");
    }

    #[test]
    fn links_the_agent_may_have_made_and_dot_dots_are_resolved_before_deciding() {
        let me = std::process::id() as i32;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        std::fs::create_dir(d.join("bin")).unwrap();
        std::fs::write(d.join("bin/real"), b"").unwrap();
        let real = format!("{}/bin/real", d.display());
        // `..` is applied whoever runs this: `/x/bin/../bin/real` is not decided as written.
        let up = format!("{}/bin/../bin/real", d.display());
        assert_eq!(resolve_program(me, &up), Resolved::To(real.clone()));
        let climbing = format!(
            "{}/bin/../../../../../{}/bin/real",
            d.display(),
            d.display()
        );
        assert_eq!(resolve_program(me, &climbing), Resolved::To(real.clone()));
        assert_eq!(resolve_program(me, &real), Resolved::AsWritten);
        assert!(matches!(
            resolve_program(me, &format!("{}/bin/../nothing", d.display())),
            Resolved::Unknown(_)
        ));
        assert!(matches!(
            resolve_program(me, "/usr/../proc/self/exe"),
            Resolved::Unknown(_)
        ));
        assert_eq!(resolve_program(me, "/proc/self/exe"), Resolved::AsWritten);
        assert_eq!(
            resolve_program(me, &format!("{}/missing", d.display())),
            Resolved::AsWritten
        );

        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // Only root can make a link that is someone else's.
        }
        let link = |name: &str, to: &str, owner: u32| {
            let at = d.join(name);
            std::os::unix::fs::symlink(to, &at).unwrap();
            std::os::unix::fs::lchown(&at, Some(owner), Some(owner)).unwrap();
            at.display().to_string()
        };
        let system = link("system", "bin/real", 0);
        assert_eq!(
            resolve_program(me, &system),
            Resolved::AsWritten,
            "root's links keep their name"
        );
        let agents = link("agents", "bin/../bin/real", 65534);
        assert_eq!(resolve_program(me, &agents), Resolved::To(real.clone()));
        // A chain: the agent's link to root's link; and an absolute target.
        let chain = link("chain", &system, 65534);
        assert_eq!(resolve_program(me, &chain), Resolved::To(real.clone()));
        let through_dir = link("dir", &format!("{}/bin", d.display()), 65534);
        assert_eq!(
            resolve_program(me, &format!("{through_dir}/real")),
            Resolved::To(real)
        );
        // What cannot be followed to its end is not decided as written either.
        let looped = link("loop", "loop", 65534);
        assert!(matches!(resolve_program(me, &looped), Resolved::Unknown(_)));
        let dangling = link("dangling", "nowhere", 65534);
        assert!(matches!(
            resolve_program(me, &dangling),
            Resolved::Unknown(_)
        ));
        let odd = d.join("odd");
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(b"/tmp/\xff/x"), &odd).unwrap();
        std::os::unix::fs::lchown(&odd, Some(65534), Some(65534)).unwrap();
        assert!(matches!(
            resolve_program(me, &odd.display().to_string()),
            Resolved::Unknown(_)
        ));
    }

    #[test]
    fn relative_programs_join_the_callers_directory() {
        let me = std::process::id() as i32;
        let cwd = std::env::current_dir().unwrap();
        let got = absolute_program(me, None, "./x/y", false).unwrap();
        assert_eq!(got, clean(&format!("{}/x/y", cwd.display())));
        assert_eq!(absolute_program(me, None, "/abs", false).unwrap(), "/abs");
        let dir = std::fs::File::open("/usr").unwrap();
        let fd = dir.as_raw_fd();
        assert_eq!(
            absolute_program(me, Some(fd), "bin/env", false).unwrap(),
            "/usr/bin/env"
        );
        assert_eq!(absolute_program(me, Some(fd), "", true).unwrap(), "/usr");
        assert!(absolute_program(me, Some(libc::AT_FDCWD), "", true).is_err());
    }

    #[test]
    fn socket_addresses_parse_by_family() {
        let mut v4 = [0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&8080u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            parse_sockaddr(&v4),
            Event::Connect {
                addr: Some("127.0.0.1:8080".parse().unwrap()),
                family: libc::AF_INET
            }
        );
        assert_eq!(
            parse_sockaddr(&v4[..8]),
            Event::Connect {
                addr: None,
                family: libc::AF_INET
            }
        );

        let mut v6 = [0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[8..24].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        assert_eq!(
            parse_sockaddr(&v6),
            Event::Connect {
                addr: Some("[::1]:443".parse().unwrap()),
                family: libc::AF_INET6
            }
        );

        let mut unix = [0u8; 20];
        unix[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(
            parse_sockaddr(&unix),
            Event::Connect {
                addr: None,
                family: libc::AF_UNIX
            }
        );
    }

    #[test]
    fn a_zero_errno_is_not_a_denial() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let sup = Supervisor::new(OwnedFd::from(a));
        assert!(matches!(
            sup.respond(1, Response::Deny(0)),
            Err(SeccompError::InvalidErrno(0))
        ));
    }
}
