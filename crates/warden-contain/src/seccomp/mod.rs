//! The seccomp layer: a classic-BPF filter written by hand, and the supervisor that decides
//! the calls the filter holds.
//!
//! A [`Spec`] says what the filter refuses outright (with `EPERM`: calls no agent needs) and
//! which calls it hands to Warden through seccomp user notification (process starts,
//! connections, raw and datagram sockets). [`Spec::compile`] builds the [`Program`] before
//! `fork`; [`Program::install`] sets `no_new_privs` and loads it without allocating, so it may
//! run between `fork` and `exec`, and returns the listener, which the child passes to Warden
//! with [`send_fd`] (Warden takes it with [`recv_fd`]). A [`Supervisor`] owns the listener:
//! [`Supervisor::recv`] returns each held call as a [`Notification`] with its arguments read
//! from the caller's memory, and [`Supervisor::respond`] lets it go on or fails it.
//!
//! The filter checks the architecture first and kills a process that makes a call under
//! another ABI. Why the filter is written by hand: `docs/decisions/0004-seccomp-by-hand.md`.
//!
//! # What user notification cannot promise
//!
//! The filter sees registers; paths, arguments and addresses live in the caller's memory,
//! which Warden reads through `/proc/PID/mem` while the call waits. The read is checked
//! against the kernel (the call must still be pending afterwards, so the PID was not reused),
//! but another thread of the target, or another process sharing its memory, can change those
//! bytes after Warden read them and before the kernel does when Warden answers
//! [`Response::Continue`]. The decision is therefore a decision and a record of what the agent
//! asked for, not a guarantee of what the kernel executed. The hard boundary is elsewhere:
//! Landlock decides which files can be executed, and the network namespace decides where a
//! connection can go. Likewise, TCP Fast Open (`sendto` with `MSG_FASTOPEN`) opens a connection
//! without `connect`; the namespace, not the notification, stops it.
//!
//! # Invariants
//!
//! - `install` performs no allocation and takes no lock.
//! - Every jump of a compiled program fits its 8-bit offset and the program has at most 4096
//!   instructions; `compile` fails rather than emit anything else.
//! - A notification is returned only after its call was confirmed pending following the reads.

mod bpf;
mod fd_pass;
mod filter;
mod notify;
mod syscall;
mod target;

pub use fd_pass::{recv_fd, send_fd};
pub use filter::{Program, Spec};
pub use notify::{Delivery, Event, Notification, Response, Supervisor};
pub use syscall::Syscall;

/// Why a filter could not be built or installed, or a held call not received or answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// The program would exceed the kernel's limit of instructions.
    #[error("the seccomp program has {len} instructions; the kernel accepts at most {max}")]
    ProgramTooLong {
        /// Instructions the program would have.
        len: usize,
        /// The kernel's limit.
        max: usize,
    },
    /// A conditional jump would not fit its 8-bit offset.
    #[error("a jump at instruction {from} would skip {distance} instructions (at most 255)")]
    JumpTooFar {
        /// The jump instruction's index.
        from: usize,
        /// Instructions it would skip.
        distance: usize,
    },
    /// A jump went backward; classic BPF only jumps forward.
    #[error("a jump at instruction {from} goes back to {to}")]
    BackwardJump {
        /// The jump instruction's index.
        from: usize,
        /// Its target.
        to: usize,
    },
    /// A jump names a label that was never placed (a bug in the filter's generator).
    #[error("a jump names a label that was never placed")]
    UnboundLabel,
    /// A syscall number that `seccomp_data.nr` cannot hold.
    #[error("{nr} is not a syscall number")]
    BadSyscallNumber {
        /// The number given.
        nr: i64,
    },
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(#[source] std::io::Error),
    /// The kernel refused the filter.
    #[error("cannot install the seccomp filter: {0}")]
    Load(#[source] std::io::Error),
    /// Waiting for or receiving a held call failed.
    #[error("cannot receive a seccomp notification: {0}")]
    Recv(#[source] std::io::Error),
    /// No process uses the filter any more: nothing will be held again.
    #[error("no process uses the seccomp filter any more")]
    Closed,
    /// Answering a held call failed.
    #[error("cannot answer a seccomp notification: {0}")]
    Respond(#[source] std::io::Error),
    /// A denial needs a positive errno; zero would fake success.
    #[error("{0} is not an errno a denied call can return")]
    InvalidErrno(i32),
}
