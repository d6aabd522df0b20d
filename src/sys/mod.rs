//! The operating system behind one small trait.
//!
//! The supervisor never makes a system call itself: it asks its [`Sys`].
//! [`UnixSys`] is the real one; [`FakeSys`](crate::testing::FakeSys) scripts
//! everything for tests.

use std::io;
use std::os::fd::BorrowedFd;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::event::Stream;
use crate::orphans::OrphanScan;
use crate::readiness::NotifyMessage;
use crate::spec::ProcessSpec;
use crate::state::Exit;

mod unix;

pub use unix::UnixSys;

/// Something a [`Sys`] observed about one of its own children.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SysEvent {
    /// Bytes of captured output.
    Output {
        /// The child.
        pid: Pid,
        /// The stream.
        stream: Stream,
        /// The bytes, as read.
        data: Vec<u8>,
    },
    /// The child ended and was reaped; its pid is no longer ours.
    Exited {
        /// The child.
        pid: Pid,
        /// How it ended.
        exit: Exit,
    },
    /// The child sent a readiness message: an sd_notify datagram, or the
    /// newline of an s6 notification fd (as `READY=1`). Only messages from
    /// the child (or its process group) are reported.
    Notify {
        /// The child.
        pid: Pid,
        /// The message.
        msg: NotifyMessage,
    },
    /// An orphan returned by [`Sys::scan_orphans`] is gone (its record was
    /// removed).
    OrphanGone {
        /// The orphan.
        pid: Pid,
    },
}

/// The system calls a [`Supervisor`](crate::Supervisor) needs.
///
/// Contract, which the supervisor relies on:
///
/// - `spawn` starts a child or returns the OS error; it never blocks for
///   longer than a fork+exec.
/// - `poll` never blocks. It reports only children this `Sys` spawned, each
///   exit exactly once, and a child's remaining output (and readiness
///   messages) before its exit. A [`SysEvent::Notify`] is only ever a
///   message the child (or a member of its process group) sent, never one
///   from another process; `spawn` sets up the channel the spec's
///   [`Readiness`](crate::Readiness) asks for (`NOTIFY_SOCKET`, fd `n`).
/// - `signal` never signals a pid whose exit was already reported; for such
///   a pid it returns `ESRCH`.
pub trait Sys {
    /// Starts a child as `spec` says.
    fn spawn(&mut self, spec: &ProcessSpec) -> io::Result<Pid>;

    /// Sends `signal` to a child (to its process group if it leads one).
    fn signal(&mut self, pid: Pid, signal: Signal) -> io::Result<()>;

    /// Sends `signal` to the child itself, never to its group (through its
    /// pidfd where there is one). Default: [`signal`](Sys::signal).
    fn signal_leader(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        self.signal(pid, signal)
    }

    /// Appends what happened since the last call, without blocking.
    fn poll(&mut self, events: &mut Vec<SysEvent>);

    /// File descriptors that become readable when `poll` has something to
    /// report. Empty when this `Sys` has no such readiness source.
    fn readiness_fds(&self) -> Vec<BorrowedFd<'_>> {
        Vec::new()
    }

    /// Checks the records an earlier run left in the state directory:
    /// records of processes that are gone, recycled or junk are removed and
    /// reported; live ones are reported as [`OrphanScan::Alive`] and from
    /// then on watched, their end reported by `poll` as
    /// [`SysEvent::OrphanGone`]. Records of this `Sys`'s own children and of
    /// orphans already watched are skipped. Default: no state directory.
    fn scan_orphans(&mut self) -> io::Result<Vec<OrphanScan>> {
        Ok(Vec::new())
    }

    /// The state directory, if there is one.
    fn state_dir(&self) -> Option<&std::path::Path> {
        None
    }

    /// Signals a watched orphan (its process group where it led one), after
    /// checking it is still the recorded process. `ESRCH` when it is not.
    fn signal_orphan(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        let _ = (pid, signal);
        Err(io::Error::from_raw_os_error(libc::ESRCH))
    }
}
