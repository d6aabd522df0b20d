//! The real OS layer: the only module with `unsafe`.
//!
//! - Spawning goes through [`std::process::Command`], which reports an exec
//!   failure's errno to the parent through a close-on-exec pipe and takes
//!   the `posix_spawn` fast path when no `pre_exec` work is needed.
//! - On Linux each child gets a pidfd (`pidfd_open`): signals go through
//!   `pidfd_send_signal`, reaping through `waitid(P_PIDFD)`, so a recycled
//!   pid can never be hit. Every pidfd and every capture pipe sits in one
//!   epoll fd: [`Sys::poll`] asks it what is ready (`O(ready)` work) and a
//!   host polls that single fd ([`Sys::readiness_fds`]).
//! - Without pidfds (old kernels, other Unixes, or
//!   [`UnixSys::without_pidfd`]) it falls back to `waitpid(pid, WNOHANG)`
//!   for each own child and `kill`/`killpg`; then exits wake nothing, so
//!   the host must also wake on SIGCHLD or on a timer.
//! - It never calls `waitpid(-1)`: a host's other children keep their exit
//!   status.

#![allow(unsafe_code)]

mod faults;
mod output;
mod readiness;
mod spawn;
mod wait;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use faults::Faults;
use output::{pending_bytes, pipe_token};
use readiness::Readiness;
use spawn::set_nonblocking;
use wait::{
    pidfd_open, pidfd_send_signal, pidfd_waitid_works, waitid_pidfd, waitpid_nohang, warn_if_spawner_thread_died,
};

use super::{Sys, SysEvent};
use crate::orphans::{self, Discard, OrphanScan, Record};
use crate::spec::ProcessSpec;
use crate::state::Exit;
use crate::state_dir::StateDir;

/// How soon a child whose exit wakes no fd is looked at again.
const RECHECK: Duration = Duration::from_millis(50);

#[derive(Debug)]
struct Child {
    name: Box<str>,
    group: bool,
    pidfd: Option<OwnedFd>,
    pipes: [Option<OwnedFd>; 2],
    /// The thread that spawned it and the parent-death signal it got.
    spawner: (i32, Option<i32>),
    /// Reaped, and reported once `last_word` is read.
    exited: Option<Exit>,
    /// Bytes its pipes still held when it was reaped, not yet read.
    last_word: [usize; 2],
}

/// A process an earlier run left behind, being stopped.
#[derive(Debug)]
struct OrphanEntry {
    name: String,
    pgid: Pid,
    start_time: u64,
    pidfd: Option<OwnedFd>,
}

/// The token slot of an orphan's pidfd in the epoll set.
const ORPHAN_SLOT: u64 = 3;

/// The real [`Sys`]. See the module docs.
///
/// # Bounds under output floods
///
/// Captured output is read under one budget per [`poll`](Sys::poll):
///
/// - at most 64 KiB across all pipes, each ready pipe offered an equal
///   share (at least 4 KiB) in round-robin order that resumes where the
///   previous poll stopped, so a flooding child cannot starve the others;
/// - each capture pipe holds one page (4 KiB) in the kernel (Linux), so a
///   child that writes faster than its share blocks on its full pipe and
///   the host's memory does not grow;
/// - what is left waits in the pipe: the epoll fd stays readable
///   (level-triggered) and [`Sys::wake_after`] is zero, so
///   [`Supervisor::next_deadline`](crate::Supervisor::next_deadline) says
///   "now";
/// - a child's exit is reported after the output its pipes held when it was
///   reaped (at most a pipe's worth per stream), read under the same budget,
///   so no line is lost and its exit never comes before its last line.
///
/// Together with the supervisor's own budget of
/// [`OUTPUT_LINES_PER_TICK`](crate::OUTPUT_LINES_PER_TICK) captured lines
/// per tick, a tick does a bounded amount of work whatever children write,
/// and every deadline due in it (a kill, a restart) is honoured.
///
/// # Waiting for exits
///
/// Each child gets a pidfd in the epoll set where the kernel has them (see
/// [`uses_pidfd`](UnixSys::uses_pidfd)). A child whose pidfd could not be
/// opened or added (`EMFILE`, `ENOMEM`) is looked at with `waitpid` on
/// every poll instead, and [`Sys::wake_after`] asks for a re-check within
/// 50 ms while it lives, so a host that sleeps on the epoll fd and
/// `next_deadline()` still sees its exit.
///
/// Dropping it with children still running kills and reaps them (see its
/// `Drop`): call [`Supervisor::shutdown`](crate::Supervisor::shutdown) and
/// tick until idle first for a graceful end.
///
/// ```no_run
/// use procsup::{ProcessSpec, Supervisor, UnixSys};
/// let mut sup = Supervisor::with_sys(UnixSys::new());
/// sup.add_process(ProcessSpec::new("sleeper", "sleep").arg("60")).unwrap();
/// sup.start_all(std::time::Instant::now()).unwrap();
/// ```
#[derive(Debug)]
pub struct UnixSys {
    children: HashMap<Pid, Child>,
    /// `None` until the first spawn has found out; then whether pidfds work.
    pidfd: Option<bool>,
    readiness: Option<Readiness>,
    buf: Vec<u8>,
    state_dir: Option<StateDir>,
    orphans: HashMap<Pid, OrphanEntry>,
    /// Children whose exit or output wakes no fd (no pidfd for this one,
    /// or an epoll add failed): looked at on every poll.
    unwatched: BTreeSet<Pid>,
    /// Reaped children whose remaining output is still being read.
    finishing: BTreeSet<Pid>,
    /// The pipe token served last: the next round starts after it.
    cursor: u64,
    /// The last poll left output unread for want of budget.
    more: bool,
    faults: Faults,
}

impl Default for UnixSys {
    fn default() -> Self {
        Self::new()
    }
}

impl UnixSys {
    /// Pidfds and epoll where the kernel has them, the fallback otherwise.
    pub fn new() -> Self {
        let readiness = Readiness::new();
        UnixSys {
            children: HashMap::new(),
            pidfd: if readiness.is_some() { None } else { Some(false) },
            readiness,
            buf: vec![0; 64 * 1024],
            state_dir: None,
            orphans: HashMap::new(),
            unwatched: BTreeSet::new(),
            finishing: BTreeSet::new(),
            cursor: 0,
            more: false,
            faults: Faults::default(),
        }
    }

    /// Records every live child in `dir` (created with mode 0700 if
    /// missing), one file per child, so that a later run can stop what
    /// this one leaves behind if it dies: see
    /// [`Supervisor::cleanup_orphans`](crate::Supervisor::cleanup_orphans).
    ///
    /// The directory has one owner: this `UnixSys` holds an exclusive lock
    /// on it (`flock` on its `.lock` file) until it is dropped, or until
    /// the process dies, when the kernel releases it. Entries that are not
    /// records (FIFOs, sockets, directories, names that are not UTF-8) are
    /// skipped with a warning and left alone.
    ///
    /// # Errors
    /// [`Error::StateDirInUse`](crate::Error::StateDirInUse) when another
    /// live host holds the directory (nothing in it was touched);
    /// [`Error::StateDir`](crate::Error::StateDir) when the directory
    /// cannot be created or opened, or is a symlink, or is owned by another
    /// user, or is writable by others.
    ///
    /// ```
    /// use procsup::{Error, UnixSys};
    /// let dir = std::env::temp_dir().join(format!("procsup-doc-{}", std::process::id()));
    /// let first = UnixSys::new().state_dir(&dir).unwrap();
    /// let second = UnixSys::new().state_dir(&dir);
    /// assert!(matches!(second, Err(Error::StateDirInUse { .. })));
    /// drop(first);
    /// assert!(UnixSys::new().state_dir(&dir).is_ok());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn state_dir(mut self, dir: impl AsRef<std::path::Path>) -> crate::Result<Self> {
        self.state_dir = Some(StateDir::open(dir.as_ref())?);
        Ok(self)
    }

    /// The `waitpid`/`kill` fallback even where pidfds exist (for tests of
    /// that path, and for hosts that must run on old kernels the same way).
    /// Captured output still wakes the epoll fd; exits do not.
    pub fn without_pidfd() -> Self {
        let mut sys = Self::new();
        sys.pidfd = Some(false);
        sys
    }

    /// Whether children get pidfds (known after the first spawn that got
    /// one). Only "not supported" turns them off: `pidfd_open` failing with
    /// `ENOSYS`, or `waitid(P_PIDFD)` failing (Linux 5.3). Any other failure
    /// (`EMFILE`, `ENOMEM`, an epoll add) affects that one child: it is
    /// waited for with `waitpid` and re-checked on every poll, and
    /// [`Sys::wake_after`] asks the host to come back within 50 ms while
    /// such a child lives.
    pub fn uses_pidfd(&self) -> Option<bool> {
        self.pidfd
    }

    /// How many children are spawned and not yet reaped.
    pub fn child_count(&self) -> usize {
        self.children.len() - self.finishing.len()
    }

    fn token(pid: Pid, slot: u64) -> u64 {
        (pid.as_raw() as u32 as u64) << 2 | slot
    }

    fn watch(&self, fd: &OwnedFd, token: u64) -> io::Result<()> {
        match &self.readiness {
            Some(r) => r.watch(fd.as_fd(), token),
            None => Ok(()),
        }
    }

    fn unwatch(&self, fd: &OwnedFd) {
        if let Some(r) = &self.readiness {
            r.unwatch(fd.as_fd());
        }
    }

    fn close_pipe(&mut self, pid: Pid, slot: usize) {
        if let Some(fd) = self.children.get_mut(&pid).and_then(|c| c.pipes[slot].take()) {
            self.unwatch(&fd);
        }
    }

    /// `pid` was reaped: its exit is reported once the bytes its pipes hold
    /// now are read (see `output`).
    fn reaped(&mut self, pid: Pid, exit: Exit) {
        let Some(child) = self.children.get_mut(&pid) else { return };
        child.exited = Some(exit);
        let pidfd = child.pidfd.take();
        for slot in 0..2 {
            // A grandchild holding the pipe open is not waited for: only
            // what is buffered now is the child's last word.
            child.last_word[slot] = child.pipes[slot].as_ref().map_or(0, |fd| pending_bytes(fd).unwrap_or(usize::MAX));
        }
        if let Some(dir) = &self.state_dir {
            dir.remove(&child.name, pid.as_raw());
        }
        if let Some(fd) = &pidfd {
            self.unwatch(fd);
        }
        self.unwatched.remove(&pid);
        self.finishing.insert(pid);
    }

    /// Reports the exit of a reaped child whose last word was read, and
    /// forgets it.
    fn finish(&mut self, pid: Pid, events: &mut Vec<SysEvent>) {
        for slot in 0..2 {
            self.close_pipe(pid, slot);
        }
        self.finishing.remove(&pid);
        if let Some(child) = self.children.remove(&pid) {
            let exit = child.exited.unwrap_or(Exit::Unknown);
            warn_if_spawner_thread_died(pid, &child, exit);
            events.push(SysEvent::Exited { pid, exit });
        }
    }

    /// Looks for the exit of one own child not yet reaped.
    fn check_exit(&mut self, pid: Pid) {
        if self.children.get(&pid).is_some_and(|c| c.exited.is_none()) {
            if let Some(exit) = self.try_wait(pid) {
                self.reaped(pid, exit);
            }
        }
    }

    fn poll_ready(&mut self, events: &mut Vec<SysEvent>) {
        let mut pipes = Vec::new();
        let cap = (self.children.len() * 3).clamp(16, 1024);
        match self.readiness.as_mut().map(|r| r.ready(cap)) {
            Some(tokens) => {
                for token in tokens {
                    let pid = Pid::from_raw((token >> 2) as u32 as i32);
                    match token & 3 {
                        ORPHAN_SLOT => self.orphan_gone(pid, events),
                        0 => self.check_exit(pid),
                        _ => pipes.push(token),
                    }
                }
            }
            // No readiness source: every child's pipes are looked at.
            None => pipes.extend(self.children.keys().flat_map(|&pid| [pipe_token(pid, 0), pipe_token(pid, 1)])),
        }
        // Exits that wake nothing: every child without pidfds, else those
        // that have to be looked at.
        let look: Vec<Pid> = if self.pidfd == Some(true) {
            self.unwatched.iter().copied().collect()
        } else {
            self.children.keys().copied().collect()
        };
        for &pid in &look {
            self.check_exit(pid);
        }
        for &pid in self.unwatched.iter().chain(&self.finishing) {
            pipes.extend([pipe_token(pid, 0), pipe_token(pid, 1)]);
        }
        self.read_round(pipes, events);
        let done: Vec<Pid> = self
            .finishing
            .iter()
            .copied()
            .filter(|pid| self.children.get(pid).is_none_or(|c| c.pipes.iter().all(Option::is_none)))
            .collect();
        for pid in done {
            self.finish(pid, events);
        }
    }

    /// Non-blocking wait for one own child.
    fn try_wait(&mut self, pid: Pid) -> Option<Exit> {
        let child = self.children.get(&pid)?;
        match &child.pidfd {
            Some(fd) => waitid_pidfd(fd.as_raw_fd()),
            None => waitpid_nohang(pid),
        }
    }
}

impl Sys for UnixSys {
    fn spawn(&mut self, spec: &ProcessSpec) -> io::Result<Pid> {
        let (mut cmd, read_ends) = spawn::command(spec)?;
        let child = cmd.spawn()?;
        drop(cmd); // closes our copies of the pipes' write ends
        let pid = Pid::from_raw(child.id() as i32);
        drop(child); // std's Child neither waits nor kills on drop
        let pidfd = self.open_pidfd(pid);
        #[cfg(target_os = "linux")]
        let spawner = (nix::unistd::gettid().as_raw(), spec.die_with_parent.map(|s| s as i32));
        #[cfg(not(target_os = "linux"))]
        let spawner = (0, None);
        let mut entry = Child {
            name: spec.name.as_str().into(),
            group: spec.process_group,
            pidfd: None,
            pipes: read_ends,
            spawner,
            exited: None,
            last_word: [0; 2],
        };
        if let Some(dir) = &self.state_dir {
            let pgid = if spec.process_group { pid } else { nix::unistd::getpgrp() };
            let record = orphans::start_time(pid.as_raw()).map(|start_time| Record {
                pid: pid.as_raw(),
                pgid: pgid.as_raw(),
                start_time,
            });
            if let Err(e) = record.ok_or_else(|| io::Error::from(Errno::ESRCH)).and_then(|r| dir.write(&spec.name, r)) {
                log::warn!("procsup: recording {} (pid {pid}) in the state directory: {e}", spec.name);
            }
        }
        // The child exists now: from here on nothing may fail the spawn, or
        // the caller would lose track of a live child. What cannot be
        // watched is looked at on every poll instead.
        let mut unwatched = pidfd.is_none() && self.pidfd != Some(false);
        if let Some(fd) = pidfd {
            if let Err(e) = self.faults.pidfd_watch().map_or_else(|| self.watch(&fd, Self::token(pid, 0)), Err) {
                log::warn!("procsup: epoll add pidfd of {} (pid {pid}): {e}; checking it on every poll", spec.name);
                unwatched = true;
            }
            entry.pidfd = Some(fd);
        }
        for slot in 0..2 {
            if let Some(Err(e)) = entry.pipes[slot].as_ref().map(set_nonblocking) {
                // A blocking read end could block poll: give it up.
                log::warn!("procsup: output of pid {pid}: {e}; not captured");
                entry.pipes[slot] = None;
            }
            if let Some(fd) = &entry.pipes[slot] {
                if let Err(e) = self.watch(fd, pipe_token(pid, slot)) {
                    log::warn!("procsup: watching output of pid {pid}: {e}; reading it on every poll");
                    unwatched = true;
                }
            }
        }
        if unwatched {
            self.unwatched.insert(pid);
        }
        self.children.insert(pid, entry);
        Ok(pid)
    }

    fn signal(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        // Only children not yet reaped are in the map, so neither a pid nor
        // a process group we signal can have been recycled.
        let Some(child) = self.children.get(&pid).filter(|c| c.exited.is_none()) else {
            return Err(Errno::ESRCH.into());
        };
        if child.group {
            return Ok(nix::sys::signal::killpg(pid, signal)?);
        }
        match &child.pidfd {
            Some(fd) => pidfd_send_signal(fd.as_raw_fd(), signal),
            None => Ok(nix::sys::signal::kill(pid, signal)?),
        }
    }

    fn poll(&mut self, events: &mut Vec<SysEvent>) {
        self.more = false;
        self.poll_ready(events);
        // Orphans without a pidfd: gone when /proc no longer shows the
        // same process running. A zombie is gone too: it is not our child,
        // so it stays a zombie until its own parent reaps it.
        let gone: Vec<Pid> = self
            .orphans
            .iter()
            .filter(|(pid, o)| o.pidfd.is_none() && orphans::live_start_time(pid.as_raw()) != Some(o.start_time))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in gone {
            self.orphan_gone(pid, events);
        }
    }

    fn scan_orphans(&mut self) -> io::Result<Vec<OrphanScan>> {
        let Some(dir) = &self.state_dir else { return Ok(Vec::new()) };
        let (children, known) = (&self.children, &self.orphans);
        let scans =
            dir.scan(|pid| children.contains_key(&Pid::from_raw(pid)) || known.contains_key(&Pid::from_raw(pid)))?;
        let mut out = Vec::with_capacity(scans.len());
        for scan in scans {
            let OrphanScan::Alive(orphan) = scan else {
                out.push(scan);
                continue;
            };
            // A pidfd pins the process: once its start time checks out after
            // the open, the fd can never refer to another process.
            let pidfd = if self.pidfd == Some(false) { None } else { pidfd_open(orphan.pid).ok() };
            if orphans::live_start_time(orphan.pid.as_raw()) != Some(orphan.start_time) {
                if let Some(dir) = &self.state_dir {
                    dir.remove(&orphan.name, orphan.pid.as_raw());
                }
                out.push(OrphanScan::Discarded { name: orphan.name, reason: Discard::Gone });
                continue;
            }
            if let Some(fd) = &pidfd {
                if let Err(e) = self.watch(fd, Self::token(orphan.pid, ORPHAN_SLOT)) {
                    log::warn!("procsup: epoll add orphan pidfd: {e}");
                }
            }
            let entry =
                OrphanEntry { name: orphan.name.clone(), pgid: orphan.pgid, start_time: orphan.start_time, pidfd };
            self.orphans.insert(orphan.pid, entry);
            out.push(OrphanScan::Alive(orphan));
        }
        Ok(out)
    }

    fn state_dir(&self) -> Option<&std::path::Path> {
        self.state_dir.as_ref().map(StateDir::path)
    }

    fn signal_orphan(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        let Some(o) = self.orphans.get(&pid) else { return Err(Errno::ESRCH.into()) };
        // The leader first, through its pidfd where there is one: that can
        // only reach the recorded process.
        match &o.pidfd {
            Some(fd) => pidfd_send_signal(fd.as_raw_fd(), signal)?,
            None => {
                if orphans::live_start_time(pid.as_raw()) != Some(o.start_time) {
                    return Err(Errno::ESRCH.into());
                }
                nix::sys::signal::kill(pid, signal)?;
            }
        }
        // Then the rest of its group, while its leader is still the
        // recorded process (a live leader's pgid cannot be reused).
        if o.pgid == pid && orphans::live_start_time(pid.as_raw()) == Some(o.start_time) {
            let _ = nix::sys::signal::killpg(pid, signal);
        }
        Ok(())
    }

    fn readiness_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.readiness.iter().map(Readiness::fd).collect()
    }

    /// "Now" while captured output is left unread (the per-poll budget ran
    /// out) or a reaped child's last output is still being read; 50 ms
    /// while a child's exit or output wakes no fd (see
    /// [`UnixSys::uses_pidfd`]); otherwise never.
    fn wake_after(&self) -> Option<Duration> {
        if self.more || !self.finishing.is_empty() {
            Some(Duration::ZERO)
        } else if !self.unwatched.is_empty() {
            Some(RECHECK)
        } else {
            None
        }
    }
}

impl Drop for UnixSys {
    /// Children still running when the OS layer goes away would be nobody's:
    /// unsupervised, and zombies once they exit. So each gets SIGKILL (its
    /// group where it leads one) and is reaped. This wait is the one place
    /// that blocks; SIGKILL cannot be ignored, so it only lasts while a
    /// child is stuck inside the kernel. Shut down gracefully before
    /// dropping to give children their stop signal and timeout instead.
    fn drop(&mut self) {
        // Reaped already; only their output was still being read.
        for pid in std::mem::take(&mut self.finishing) {
            self.children.remove(&pid);
        }
        let pids: Vec<Pid> = self.children.keys().copied().collect();
        for &pid in &pids {
            let _ = self.signal(pid, Signal::SIGKILL);
        }
        for pid in pids {
            if let Some(child) = self.children.remove(&pid) {
                log::warn!("procsup: dropped with {} (pid {pid}) running: killed", child.name);
                if let Some(dir) = &self.state_dir {
                    dir.remove(&child.name, pid.as_raw());
                }
                // Blocking reap of our own child: waitpid on one pid only.
                while let Err(Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
            }
        }
    }
}

impl UnixSys {
    fn orphan_gone(&mut self, pid: Pid, events: &mut Vec<SysEvent>) {
        if let Some(o) = self.orphans.remove(&pid) {
            if let Some(fd) = &o.pidfd {
                self.unwatch(fd);
            }
            if let Some(dir) = &self.state_dir {
                dir.remove(&o.name, pid.as_raw());
            }
            events.push(SysEvent::OrphanGone { pid });
        }
    }

    /// A pidfd for a new child, or `None`: pidfds are off, or this one
    /// failed (see [`UnixSys::uses_pidfd`] for which failure is which).
    fn open_pidfd(&mut self, pid: Pid) -> Option<OwnedFd> {
        if self.pidfd == Some(false) {
            return None;
        }
        match self.faults.pidfd_open().map_or_else(|| pidfd_open(pid), Err) {
            Ok(fd) => {
                if self.pidfd.is_none() {
                    // Linux 5.3 has pidfd_open but not waitid(P_PIDFD).
                    if let Err(e) = self.faults.pidfd_waitid().map_or_else(|| pidfd_waitid_works(fd.as_raw_fd()), Err) {
                        log::debug!("procsup: no waitid(P_PIDFD) ({e}); using waitpid");
                        self.pidfd = Some(false);
                        return None;
                    }
                    self.pidfd = Some(true);
                }
                Some(fd)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                log::debug!("procsup: no pidfds ({e}); using waitpid");
                self.pidfd = Some(false);
                None
            }
            Err(e) => {
                log::warn!("procsup: pidfd_open({pid}) failed: {e}; checking it on every poll");
                None
            }
        }
    }
}
