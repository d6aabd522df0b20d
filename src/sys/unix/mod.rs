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

mod exec;
mod notify;
mod readiness;
mod spawn;
mod wait;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use readiness::Readiness;
use spawn::set_nonblocking;
use wait::{pidfd_open, pidfd_send_signal, waitid_pidfd, waitpid_nohang};

use super::{Sys, SysEvent};
use crate::event::Stream;
use crate::orphans::{self, Discard, OrphanScan, Record};
use crate::spec::ProcessSpec;
use crate::state::Exit;
use crate::state_dir::StateDir;

/// Bytes read from one pipe per `poll`, so one chatty child cannot starve
/// the others (level-triggered epoll reports it again).
const READ_BUDGET: usize = 256 * 1024;

#[derive(Debug)]
struct Child {
    name: Box<str>,
    group: bool,
    pidfd: Option<OwnedFd>,
    pipes: [Option<OwnedFd>; 2],
    /// The thread that spawned it and the parent-death signal it got.
    spawner: (i32, Option<i32>),
    /// Its sd_notify socket or notification-fd pipe.
    notify: Option<notify::Notify>,
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

/// Marks the token of a child's readiness channel (`token(pid, 0) | NOTIFY_TAG`).
const NOTIFY_TAG: u64 = 1 << 40;

/// The real [`Sys`]. See the module docs.
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

    /// Whether children get pidfds (known after the first spawn).
    pub fn uses_pidfd(&self) -> Option<bool> {
        self.pidfd
    }

    /// How many children are spawned and not yet reaped.
    pub fn child_count(&self) -> usize {
        self.children.len()
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

    /// Reads what a pipe holds now, up to `budget` bytes. Returns false at
    /// end of file.
    fn drain_pipe(&mut self, pid: Pid, slot: usize, budget: usize, events: &mut Vec<SysEvent>) -> bool {
        let Some(child) = self.children.get(&pid) else { return false };
        let Some(fd) = child.pipes[slot].as_ref() else { return false };
        let stream = if slot == 0 { Stream::Stdout } else { Stream::Stderr };
        let mut total = 0;
        loop {
            match nix::unistd::read(fd, &mut self.buf) {
                Ok(0) => return false,
                Ok(n) => {
                    events.push(SysEvent::Output { pid, stream, data: self.buf[..n].to_vec() });
                    total += n;
                    if total >= budget {
                        return true;
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return true,
                Err(e) => {
                    log::warn!("procsup: reading output of pid {pid}: {e}");
                    return false;
                }
            }
        }
    }

    fn close_pipe(&mut self, pid: Pid, slot: usize) {
        if let Some(fd) = self.children.get_mut(&pid).and_then(|c| c.pipes[slot].take()) {
            self.unwatch(&fd);
        }
    }

    /// Reports the exit of `pid` after its remaining output, and forgets it.
    fn finish(&mut self, pid: Pid, exit: Exit, events: &mut Vec<SysEvent>) {
        // What it said before it died is said before its exit.
        self.read_notify(pid, events);
        if let Some(n) = self.children.get_mut(&pid).and_then(|c| c.notify.take()) {
            if let Some(r) = &self.readiness {
                r.unwatch(n.fd());
            }
        }
        for slot in 0..2 {
            // Whatever is buffered now is the child's last word; a
            // grandchild holding the pipe open is not waited for.
            self.drain_pipe(pid, slot, usize::MAX, events);
            self.close_pipe(pid, slot);
        }
        if let Some(child) = self.children.remove(&pid) {
            if let Some(fd) = &child.pidfd {
                self.unwatch(fd);
            }
            if let Some(dir) = &self.state_dir {
                dir.remove(&child.name, pid.as_raw());
            }
            warn_if_spawner_thread_died(pid, &child, exit);
        }
        events.push(SysEvent::Exited { pid, exit });
    }

    fn poll_ready(&mut self, events: &mut Vec<SysEvent>) {
        let cap = (self.children.len() * 3).clamp(16, 1024);
        let Some(tokens) = self.readiness.as_mut().map(|r| r.ready(cap)) else {
            // No readiness source: every child's pipes are looked at.
            let pids: Vec<Pid> = self.children.keys().copied().collect();
            for pid in pids {
                self.read_notify(pid, events);
                for slot in 0..2 {
                    if !self.drain_pipe(pid, slot, READ_BUDGET, events) {
                        self.close_pipe(pid, slot);
                    }
                }
            }
            return;
        };
        for token in tokens {
            let pid = Pid::from_raw((token >> 2) as u32 as i32);
            if token & NOTIFY_TAG != 0 {
                self.read_notify(pid, events);
                continue;
            }
            match token & 3 {
                ORPHAN_SLOT => self.orphan_gone(pid, events),
                0 => {
                    if let Some(exit) = self.try_wait(pid) {
                        self.finish(pid, exit, events);
                    }
                }
                slot => {
                    let slot = slot as usize - 1;
                    if !self.drain_pipe(pid, slot, READ_BUDGET, events) {
                        self.close_pipe(pid, slot);
                    }
                }
            }
        }
    }

    /// Reads a child's readiness channel (within its budget); closes it
    /// once it is finished.
    fn read_notify(&mut self, pid: Pid, events: &mut Vec<SysEvent>) {
        let Some(child) = self.children.get_mut(&pid) else { return };
        let leads_group = child.group;
        let Some(n) = child.notify.as_mut() else { return };
        if !n.read(pid, leads_group, &mut self.buf, events) {
            let n = child.notify.take().expect("checked above");
            if let Some(r) = &self.readiness {
                r.unwatch(n.fd());
            }
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
        let mut notify = notify::Notify::prepare(spec)?;
        if let Some(n) = &notify {
            n.configure(&mut cmd, spec);
        }
        if spec.watchdog.is_some() {
            // Last: it replaces std's own exec.
            exec::exec_with_own_pid(&mut cmd, spec.env_clear)?;
        }
        let child = cmd.spawn()?;
        if let Some(n) = &mut notify {
            n.spawned();
        }
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
            notify: None,
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
        if let Some(fd) = pidfd {
            if let Err(e) = self.watch(&fd, Self::token(pid, 0)) {
                log::warn!("procsup: epoll add pidfd: {e}");
            }
            entry.pidfd = Some(fd);
        }
        // The child exists now: from here on nothing may fail the spawn, or
        // the caller would lose track of a live child.
        for (slot, fd) in entry.pipes.iter().enumerate() {
            if let Some(fd) = fd {
                let watched = set_nonblocking(fd).and_then(|()| self.watch(fd, Self::token(pid, slot as u64 + 1)));
                if let Err(e) = watched {
                    log::warn!("procsup: watching output of pid {pid}: {e}");
                }
            }
        }
        if let Some(n) = notify {
            if let Some(r) = &self.readiness {
                if let Err(e) = r.watch(n.fd(), Self::token(pid, 0) | NOTIFY_TAG) {
                    log::warn!("procsup: watching the readiness channel of pid {pid}: {e}");
                }
            }
            entry.notify = Some(n);
        }
        self.children.insert(pid, entry);
        Ok(pid)
    }

    fn signal(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        // Only children not yet reaped are in the map, so neither a pid nor
        // a process group we signal can have been recycled.
        let Some(child) = self.children.get(&pid) else {
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

    fn signal_leader(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        let Some(child) = self.children.get(&pid) else {
            return Err(Errno::ESRCH.into());
        };
        // Not reaped (it is in the map), so the pid cannot have been reused.
        match &child.pidfd {
            Some(fd) => pidfd_send_signal(fd.as_raw_fd(), signal),
            None => Ok(nix::sys::signal::kill(pid, signal)?),
        }
    }

    fn poll(&mut self, events: &mut Vec<SysEvent>) {
        self.poll_ready(events);
        if self.pidfd != Some(true) {
            let pids: Vec<Pid> = self.children.keys().copied().collect();
            for pid in pids {
                if let Some(exit) = self.try_wait(pid) {
                    self.finish(pid, exit, events);
                }
            }
        }
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
}

impl Drop for UnixSys {
    /// Children still running when the OS layer goes away would be nobody's:
    /// unsupervised, and zombies once they exit. So each gets SIGKILL (its
    /// group where it leads one) and is reaped. This wait is the one place
    /// that blocks; SIGKILL cannot be ignored, so it only lasts while a
    /// child is stuck inside the kernel. Shut down gracefully before
    /// dropping to give children their stop signal and timeout instead.
    fn drop(&mut self) {
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

    fn open_pidfd(&mut self, pid: Pid) -> Option<OwnedFd> {
        if self.pidfd == Some(false) {
            return None;
        }
        match pidfd_open(pid) {
            Ok(fd) => {
                self.pidfd = Some(true);
                Some(fd)
            }
            Err(e) => {
                if self.pidfd.is_none() {
                    log::debug!("procsup: no pidfds ({e}); using waitpid");
                    self.pidfd = Some(false);
                } else {
                    log::warn!("procsup: pidfd_open({pid}) failed: {e}");
                }
                None
            }
        }
    }
}

/// `PR_SET_PDEATHSIG` follows the *thread* that spawned a child: when that
/// thread exits, the child gets its parent-death signal although the host
/// lives on. Such a death is easy to misread, so it is named in the log.
fn warn_if_spawner_thread_died(pid: Pid, child: &Child, exit: Exit) {
    let (tid, death) = child.spawner;
    if death.is_some()
        && exit.signal_number() == death
        && !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
    {
        log::warn!(
            "procsup: {} (pid {pid}) got its parent-death signal because thread {tid}, which spawned it, exited; \
             drive the supervisor from a thread that lives as long as its children",
            child.name
        );
    }
}
