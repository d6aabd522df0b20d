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
use crate::state::{Containment, Exit, Usage};

mod unix;

pub use unix::{SubreaperMode, UnixSys};

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
    /// The child is gone: it was reaped and nothing of its tree is left
    /// (or its tree is not contained). Its pid is no longer ours.
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
    /// An orphan the host adopted as a subreaper
    /// ([`UnixSys::subreaper`]) ended and was reaped.
    AdoptedExited {
        /// The adopted process.
        pid: Pid,
        /// The supervised process whose tree it provably came from; `None`
        /// for one reaped because the host declared it has no children of
        /// its own ([`SubreaperMode::AllOrphans`]).
        name: Option<String>,
        /// How it ended.
        exit: Exit,
    },
    /// The child (the leader of its tree) was reaped, but the rest of its
    /// tree still lives. Until [`SysEvent::TreeEmpty`] for this pid,
    /// [`Sys::signal`] with this pid reaches the rest of the tree (never
    /// the reaped pid itself).
    LeaderExited {
        /// The reaped leader.
        pid: Pid,
        /// How it ended.
        exit: Exit,
    },
    /// After [`SysEvent::LeaderExited`]: nothing of the tree is left; the
    /// pid is no longer ours.
    TreeEmpty {
        /// The reaped leader.
        pid: Pid,
    },
    /// The kernel's OOM killer killed a process of the child's tree (its
    /// cgroup's `memory.events` `oom_kill` went up). Reported before the
    /// child's [`SysEvent::Exited`] (or [`SysEvent::LeaderExited`]).
    OomKilled {
        /// The child.
        pid: Pid,
    },
    /// The memory of the child's tree went above the spec's
    /// [`restart_above_memory`](crate::ProcessSpec::restart_above_memory)
    /// (its cgroup's own `memory.events.local` `high` count went up since
    /// the last report, and its anonymous memory is above it: page cache
    /// the kernel reclaims does not count). Reported again while it stays
    /// above; never after the child's exit.
    MemoryHigh {
        /// The child.
        pid: Pid,
        /// The tree's memory that is above the threshold, bytes (its
        /// anonymous memory, on a cgroup); `None` when it could not be read.
        memory: Option<u64>,
        /// The threshold the child was spawned with, bytes.
        threshold: u64,
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
/// - A child is gone when [`SysEvent::Exited`] reports it, or, when its
///   leader was reaped while the rest of its tree lived
///   ([`SysEvent::LeaderExited`]), when [`SysEvent::TreeEmpty`] follows.
///   Each is reported once, in that order. This is the one place where the
///   containment mechanism (see [`Sys::containment`]) shows: the state
///   machine only learns that the tree is not empty yet.
/// - `signal` reaches the child's tree as its containment says. It never
///   signals a pid after it was reaped: between `LeaderExited` and
///   `TreeEmpty` it reaches only the rest of the tree; after the child is
///   gone it returns `ESRCH`.
pub trait Sys {
    /// Starts a child as `spec` says.
    fn spawn(&mut self, spec: &ProcessSpec) -> io::Result<Pid>;

    /// Sends `signal` to a child's tree: every member of its cgroup, or its
    /// process group, or the child alone, as [`Sys::containment`] says.
    fn signal(&mut self, pid: Pid, signal: Signal) -> io::Result<()>;

    /// Sends `signal` to the child itself, never to its group (through its
    /// pidfd where there is one). Default: [`signal`](Sys::signal).
    fn signal_leader(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        self.signal(pid, signal)
    }

    /// What holds the tree of a child this `Sys` spawned and has not yet
    /// reported gone. Default: [`Containment::None`].
    fn containment(&self, pid: Pid) -> Containment {
        let _ = pid;
        Containment::None
    }

    /// Appends what happened since the last call, without blocking.
    fn poll(&mut self, events: &mut Vec<SysEvent>);

    /// How soon after the last `poll` it must be polled again even if no
    /// readiness fd fires: `Some(Duration::ZERO)` when it left work for
    /// later (a read budget ran out), a short re-check when a child's exit
    /// can only be seen by looking. Default: `None`, never.
    fn wake_after(&self) -> Option<std::time::Duration> {
        None
    }

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
    /// orphans already watched are skipped; entries that are not records
    /// of procsup's are reported as [`OrphanScan::Refused`] and left as
    /// they are. Default: no state directory.
    fn scan_orphans(&mut self) -> io::Result<Vec<OrphanScan>> {
        Ok(Vec::new())
    }

    /// Why this `Sys` cannot hold children to `spec`'s cgroup limits
    /// (`memory_max`, ...): the first limit it cannot enforce, as the
    /// spec's method names it, and the reason. `None` when it can, or when
    /// the spec sets none. Asked by `add_process`, which refuses the spec
    /// then ([`Error::LimitUnsupported`](crate::Error::LimitUnsupported)).
    /// Default: every cgroup limit is refused (no cgroups).
    fn refuse_limits(&mut self, spec: &ProcessSpec) -> Option<(&'static str, String)> {
        spec.first_cgroup_limit().map(|(limit, _)| (limit, "this Sys gives children no cgroup".to_owned()))
    }

    /// What the tree of a child this `Sys` spawned (and has not reported
    /// gone) uses now; `None` when it cannot tell. Reads files, never
    /// blocks. Default: `None`.
    fn usage(&self, pid: Pid) -> Option<Usage> {
        let _ = pid;
        None
    }

    /// The state directory, if there is one.
    fn state_dir(&self) -> Option<&std::path::Path> {
        None
    }

    /// A hint from the supervisor, given after it spawned a child of
    /// `spec`: when that child ends, the process is to be spawned again
    /// with this spec (it runs under a restart policy). A `Sys` may prepare
    /// that spawn ahead of time ([`UnixSys::standby`]); the next
    /// [`spawn`](Sys::spawn) of this name must still work, hint or not.
    ///
    /// `since_last_spawn` is the time since the process's previous child
    /// was spawned (that child's run and whatever came between: a
    /// backoff, a stop, a restart asked for), `None` for its first child.
    /// Children spawned close together (a crash loop) may go on so, and
    /// then what is prepared is wanted early. Default: nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use procsup::{ProcessSpec, Sys};
    /// // A layer that prepares nothing keeps the default; one that does
    /// // might hurry when children come close together:
    /// fn hurry(since_last_spawn: Option<Duration>) -> bool {
    ///     since_last_spawn.is_some_and(|d| d < Duration::from_millis(2))
    /// }
    /// assert!(hurry(Some(Duration::from_micros(500))));
    /// assert!(!hurry(None), "a first child");
    /// ```
    fn expect_respawn(&mut self, spec: &ProcessSpec, since_last_spawn: Option<std::time::Duration>) {
        let _ = (spec, since_last_spawn);
    }

    /// The hint of [`expect_respawn`](Sys::expect_respawn) taken back:
    /// `name` is not to be spawned again for now (stopped for good, given
    /// up, exited for good, removed); what was prepared for it may go.
    /// Default: nothing.
    fn forget_respawn(&mut self, name: &str) {
        let _ = name;
    }

    /// A hint from the supervisor, given just before a [`poll`](Sys::poll):
    /// whether the death of child `pid` (its tree empty, reported as
    /// [`SysEvent::Exited`] in that poll) is to be followed at once, in the
    /// same tick, by a [`spawn`](Sys::spawn) of its process with the spec
    /// last given to [`expect_respawn`](Sys::expect_respawn). The
    /// supervisor says so only when nothing but that death is left to
    /// decide (restart `Always`, a zero backoff, no limit about to give up,
    /// no stop, update, roll, dependency or group strategy in the way),
    /// and takes it back (`false`) as soon as anything of that changes.
    ///
    /// A `Sys` may then let the successor it prepared go as it sees the
    /// death, before the supervisor hears of it ([`UnixSys::standby`]). The
    /// spawn that follows must claim that successor when its spec is the
    /// same, and end it otherwise; so must
    /// [`forget_respawn`](Sys::forget_respawn) of that name (a host's stop
    /// between the poll and the spawn). Default: nothing.
    fn respawn_at_once(&mut self, pid: Pid, at_once: bool) {
        let _ = (pid, at_once);
    }

    /// Signals a watched orphan (its process group where it led one), after
    /// checking it is still the recorded process. `ESRCH` when it is not.
    fn signal_orphan(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        let _ = (pid, signal);
        Err(io::Error::from_raw_os_error(libc::ESRCH))
    }
}
