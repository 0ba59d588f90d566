//! The channel between Warden and the sandbox while it is being built: a `SOCK_SEQPACKET`
//! socket pair, one message per step, file descriptors (listeners, the seccomp listener) passed
//! with `SCM_RIGHTS`. It closes when the agent's program starts (close-on-exec).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The largest message: a plan with its files fits easily.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// The fd number the sandbox's first process finds the channel on.
pub const CHILD_FD: RawFd = 3;

/// The environment variable naming [`CHILD_FD`], so a mistaken run of the init command
/// outside a launch fails clearly.
pub const FD_ENV: &str = "WARDEN_CONTAIN_CONTROL_FD";

/// One step of the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// Warden → sandbox: the plan (JSON).
    Plan = b'P' as isize,
    /// Sandbox → Warden: the namespaces exist; write the id maps and join the cgroups.
    Unshared = b'U' as isize,
    /// Warden → sandbox: done; go on.
    Mapped = b'M' as isize,
    /// Sandbox → Warden: a listener inside the network namespace (role byte, port), with its fd.
    Listener = b'L' as isize,
    /// Sandbox → Warden: the seccomp notification fd.
    Seccomp = b'S' as isize,
    /// Sandbox → Warden: everything is in force (the layers, JSON); the program starts next.
    Ready = b'R' as isize,
    /// Sandbox → Warden: a step failed (the reason, text).
    Failed = b'E' as isize,
}

impl Tag {
    fn from_byte(b: u8) -> Option<Tag> {
        Some(match b {
            b'P' => Tag::Plan,
            b'U' => Tag::Unshared,
            b'M' => Tag::Mapped,
            b'L' => Tag::Listener,
            b'S' => Tag::Seccomp,
            b'R' => Tag::Ready,
            b'E' => Tag::Failed,
            _ => return None,
        })
    }
}

/// A socket pair for the channel: (Warden's end, the sandbox's end), both close-on-exec.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for socketpair to fill.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends one message, with an fd if given.
pub fn send(
    sock: BorrowedFd<'_>,
    tag: Tag,
    payload: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(payload.len() + 1);
    buf.push(tag as u8);
    buf.extend_from_slice(payload);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one fd, aligned as the kernel expects.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `control`, large enough for one cmsg holding one fd;
        // CMSG_FIRSTHDR/CMSG_DATA stay inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
        }
    }
    loop {
        // SAFETY: msg and everything it points to live until sendmsg returns.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A message received.
#[derive(Debug)]
pub struct Message {
    /// Which step.
    pub tag: Tag,
    /// Its content.
    pub payload: Vec<u8>,
    /// The fd it carried.
    pub fd: Option<OwnedFd>,
}

/// Receives one message; `Ok(None)` when the other side closed.
pub fn recv(sock: BorrowedFd<'_>) -> io::Result<Option<Message>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    let n = loop {
        // SAFETY: msg points at live buffers of the sizes it states.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // Take ownership of any fd first, so it is closed on every error path below.
    let mut fd = None;
    // SAFETY: the kernel filled msg_control; the CMSG macros walk it within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if n == 0 {
        return Ok(None);
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(io::Error::other("control message too large"));
    }
    let tag = Tag::from_byte(buf[0])
        .ok_or_else(|| io::Error::other(format!("unknown control message {:#x}", buf[0])))?;
    buf.truncate(n);
    buf.remove(0);
    Ok(Some(Message {
        tag,
        payload: buf,
        fd,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn messages_keep_their_boundaries_and_fds() {
        let (a, b) = pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send(a.as_fd(), Tag::Plan, b"{}", None).unwrap();
        send(
            a.as_fd(),
            Tag::Listener,
            &[1, 0x1f, 0x90],
            Some(file.as_fd()),
        )
        .unwrap();
        drop(a);
        let m = recv(b.as_fd()).unwrap().unwrap();
        assert_eq!((m.tag, m.payload.as_slice()), (Tag::Plan, b"{}".as_slice()));
        assert!(m.fd.is_none());
        let m = recv(b.as_fd()).unwrap().unwrap();
        assert_eq!(m.tag, Tag::Listener);
        assert_eq!(m.payload, [1, 0x1f, 0x90]);
        assert!(m.fd.is_some());
        assert!(recv(b.as_fd()).unwrap().is_none());
    }
}
