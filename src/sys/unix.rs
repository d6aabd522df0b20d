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

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::FromRawFd;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{Sys, SysEvent};
use crate::event::Stream;
use crate::orphans::{self, Discard, OrphanScan, Record, StateDir};
use crate::spec::{Output, PreExec, ProcessSpec};
use crate::state::Exit;

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
}

/// A process an earlier run left behind, being stopped.
#[derive(Debug)]
struct OrphanEntry {
    name: String,
    pgid: Pid,
    start_time: u64,
    pidfd: Option<OwnedFd>,
}

/// One fd that becomes readable when any watched fd does: epoll on Linux.
/// Elsewhere there is none, and `poll` looks at every child itself.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct Readiness {
    epoll: nix::sys::epoll::Epoll,
    ready: Vec<nix::sys::epoll::EpollEvent>,
}

#[cfg(target_os = "linux")]
impl Readiness {
    fn new() -> Option<Self> {
        use nix::sys::epoll::{Epoll, EpollCreateFlags};
        Some(Readiness { epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).ok()?, ready: Vec::new() })
    }

    fn watch(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        use nix::sys::epoll::{EpollEvent, EpollFlags};
        Ok(self.epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))?)
    }

    fn unwatch(&self, fd: BorrowedFd<'_>) {
        let _ = self.epoll.delete(fd);
    }

    /// The tokens of what is ready now, at most `cap` of them.
    fn ready(&mut self, cap: usize) -> Vec<u64> {
        use nix::sys::epoll::{EpollEvent, EpollTimeout};
        self.ready.resize(cap, EpollEvent::empty());
        loop {
            match self.epoll.wait(&mut self.ready, EpollTimeout::ZERO) {
                Ok(n) => return self.ready[..n].iter().map(EpollEvent::data).collect(),
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("procsup: epoll_wait: {e}");
                    return Vec::new();
                }
            }
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
enum Readiness {}

#[cfg(not(target_os = "linux"))]
impl Readiness {
    fn new() -> Option<Self> {
        None
    }
    fn watch(&self, _: BorrowedFd<'_>, _: u64) -> io::Result<()> {
        match *self {}
    }
    fn unwatch(&self, _: BorrowedFd<'_>) {
        match *self {}
    }
    fn ready(&mut self, _: usize) -> Vec<u64> {
        match *self {}
    }
    fn fd(&self) -> BorrowedFd<'_> {
        match *self {}
    }
}

/// The token slot of an orphan's pidfd in the epoll set.
const ORPHAN_SLOT: u64 = 3;

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
    /// missing), so that a later run can stop what this one leaves behind
    /// if it dies: see [`Supervisor::cleanup_orphans`](crate::Supervisor::cleanup_orphans).
    ///
    /// # Errors
    /// The directory cannot be created, or is a symlink, or is owned by
    /// another user, or is writable by others.
    pub fn state_dir(mut self, dir: impl AsRef<std::path::Path>) -> io::Result<Self> {
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
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args);
        if spec.env_clear {
            cmd.env_clear();
        }
        for (k, v) in &spec.envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null());
        let ChildStdio { stdout, stderr, read_ends } = stdio(spec)?;
        cmd.stdout(stdout);
        cmd.stderr(stderr);
        if spec.process_group {
            cmd.process_group(0);
        }
        if let Some(uid) = spec.uid {
            cmd.uid(uid);
        }
        if let Some(gid) = spec.gid {
            cmd.gid(gid);
        }
        install_pre_exec(&mut cmd, spec);
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
        // same process.
        let gone: Vec<Pid> = self
            .orphans
            .iter()
            .filter(|(pid, o)| o.pidfd.is_none() && orphans::start_time(pid.as_raw()) != Some(o.start_time))
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
            if orphans::start_time(orphan.pid.as_raw()) != Some(orphan.start_time) {
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
                if orphans::start_time(pid.as_raw()) != Some(o.start_time) {
                    return Err(Errno::ESRCH.into());
                }
                nix::sys::signal::kill(pid, signal)?;
            }
        }
        // Then the rest of its group, while its leader is still the
        // recorded process (a live leader's pgid cannot be reused).
        if o.pgid == pid && orphans::start_time(pid.as_raw()) == Some(o.start_time) {
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

/// The child's stdout and stderr, and our read ends of capture pipes.
struct ChildStdio {
    stdout: Stdio,
    stderr: Stdio,
    read_ends: [Option<OwnedFd>; 2],
}

fn capture_pipe(read_end: &mut Option<OwnedFd>) -> io::Result<OwnedFd> {
    let (r, w) = cloexec_pipe()?;
    *read_end = Some(r);
    Ok(w)
}

/// A pipe whose ends close on exec, so no other child inherits them.
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(not(target_vendor = "apple"))]
    {
        Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
    }
    #[cfg(target_vendor = "apple")]
    {
        // No pipe2 here: a fork in another thread between these calls could
        // inherit the ends, a window std's own pipes have on this system too.
        use nix::fcntl::FdFlag;
        let (r, w) = nix::unistd::pipe()?;
        for fd in [&r, &w] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        }
        Ok((r, w))
    }
}

fn dev_null() -> io::Result<OwnedFd> {
    Ok(OpenOptions::new().write(true).open("/dev/null")?.into())
}

fn stdio(spec: &ProcessSpec) -> io::Result<ChildStdio> {
    let mut read_ends = [None, None];
    let stdout_fd = match &spec.stdout {
        Output::Inherit | Output::ToStdout => None,
        Output::Null => Some(dev_null()?),
        Output::Append(path) => Some(open_append(path)?),
        Output::Capture => Some(capture_pipe(&mut read_ends[0])?),
    };
    let stderr_fd = match &spec.stderr {
        Output::Inherit => None,
        Output::ToStdout => match &stdout_fd {
            Some(fd) => Some(fd.try_clone()?),
            None => Some(io::stdout().as_fd().try_clone_to_owned()?),
        },
        Output::Null => Some(dev_null()?),
        Output::Append(path) => Some(open_append(path)?),
        Output::Capture => Some(capture_pipe(&mut read_ends[1])?),
    };
    let as_stdio = |fd: Option<OwnedFd>| fd.map_or_else(Stdio::inherit, Stdio::from);
    Ok(ChildStdio { stdout: as_stdio(stdout_fd), stderr: as_stdio(stderr_fd), read_ends })
}

fn open_append(path: &std::path::Path) -> io::Result<OwnedFd> {
    Ok(OpenOptions::new().append(true).create(true).mode(0o644).open(path)?.into())
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

impl ProcessSpec {
    /// Runs `hook` in the child after `fork` and before `exec`, after the
    /// umask and the parent-death signal are set. An `Err` it returns fails
    /// the spawn with that error ([`Event::SpawnFailed`](crate::Event)):
    /// the child never runs the program and is reaped by the spawn itself.
    ///
    /// A hook forces the `fork` path (no `posix_spawn`).
    ///
    /// # Safety
    ///
    /// The contract of [`CommandExt::pre_exec`]: the hook runs in a copy of
    /// a possibly multi-threaded process in which only the forking thread
    /// exists, so it may only make async-signal-safe calls — no allocation,
    /// no locks (not even `println!`), no environment access.
    ///
    /// ```
    /// use procsup::ProcessSpec;
    /// // SAFETY: setsid(2) is async-signal-safe.
    /// let spec = unsafe {
    ///     ProcessSpec::new("daemon", "sleep").arg("60").process_group(false).pre_exec(|| {
    ///         nix::unistd::setsid()?;
    ///         Ok(())
    ///     })
    /// };
    /// assert!(spec.has_pre_exec());
    /// ```
    pub unsafe fn pre_exec<F>(mut self, hook: F) -> Self
    where
        F: Fn() -> io::Result<()> + Send + Sync + 'static,
    {
        self.pre_exec = Some(PreExec(std::sync::Arc::new(hook)));
        self
    }
}

/// Work done in the child between fork and exec: umask, the parent-death
/// signal and the spec's own hook. Nothing is installed when none is asked
/// for, so `Command` keeps its `posix_spawn` fast path.
fn install_pre_exec(cmd: &mut Command, spec: &ProcessSpec) {
    let umask = spec.umask;
    let user_hook = spec.pre_exec.clone();
    #[cfg(target_os = "linux")]
    let death = spec.die_with_parent.map(|s| s as libc::c_int);
    #[cfg(not(target_os = "linux"))]
    let death: Option<libc::c_int> = None;
    if umask.is_none() && death.is_none() && user_hook.is_none() {
        return;
    }
    // Read before the fork: after it, getppid() names the parent we must
    // outlive no longer than.
    #[cfg(target_os = "linux")]
    let parent = std::process::id() as libc::pid_t;
    let hook = move || -> io::Result<()> {
        if let Some(mask) = umask {
            // SAFETY: umask(2) is async-signal-safe and cannot fail.
            unsafe { libc::umask(mask as libc::mode_t) };
        }
        #[cfg(target_os = "linux")]
        if let Some(sig) = death {
            // SAFETY: prctl(2) and getppid(2) are plain system calls,
            // async-signal-safe; PR_SET_PDEATHSIG takes a signal number.
            let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above. If the parent died before prctl, the
            // signal will never come: deliver it ourselves (kill(2) is
            // async-signal-safe).
            unsafe {
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), sig);
                }
            }
        }
        match &user_hook {
            Some(PreExec(hook)) => hook(),
            None => Ok(()),
        }
    };
    // SAFETY: the hook only makes async-signal-safe system calls (umask,
    // prctl, getppid, getpid, kill), allocates nothing and takes no lock,
    // as CommandExt::pre_exec requires after fork in a threaded parent; the
    // user's hook carries the same obligation through ProcessSpec::pre_exec,
    // an unsafe fn.
    unsafe { cmd.pre_exec(hook) };
}

#[cfg(target_os = "linux")]
fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or
    // -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd, open and owned by no one
    // else; pidfds are close-on-exec by definition.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(not(target_os = "linux"))]
fn pidfd_open(_: Pid) -> io::Result<OwnedFd> {
    Err(Errno::ENOSYS.into())
}

#[cfg(target_os = "linux")]
fn pidfd_send_signal(fd: RawFd, signal: Signal) -> io::Result<()> {
    // SAFETY: pidfd_send_signal(2) with a null siginfo and no flags reads
    // no memory of ours; `fd` is a pidfd we own.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, fd, signal as libc::c_int, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn pidfd_send_signal(_: RawFd, _: Signal) -> io::Result<()> {
    Err(Errno::ENOSYS.into())
}

/// `waitid(P_PIDFD, fd, WEXITED | WNOHANG)`: the exit, if it happened.
#[cfg(target_os = "linux")]
fn waitid_pidfd(fd: RawFd) -> Option<Exit> {
    loop {
        // SAFETY: siginfo_t is plain data; all zeroes is a valid value and
        // is how WNOHANG tells "no change" (si_pid stays 0).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t; `fd` is our pidfd.
        let rc = unsafe { libc::waitid(libc::P_PIDFD, fd as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG) };
        if rc < 0 {
            return match Errno::last() {
                Errno::EINTR => continue,
                // Someone else reaped it (a host calling waitpid(-1)).
                Errno::ECHILD => Some(Exit::Unknown),
                e => {
                    log::warn!("procsup: waitid(P_PIDFD): {e}");
                    None
                }
            };
        }
        // SAFETY: after a successful waitid with WEXITED, the kernel filled
        // the SIGCHLD fields that si_pid/si_status read.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return None;
        }
        return Some(match info.si_code {
            libc::CLD_EXITED => Exit::Exited(status),
            _ => Exit::Signaled(status),
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn waitid_pidfd(_: RawFd) -> Option<Exit> {
    None
}

/// `waitpid(pid, WNOHANG)` for one own child: the exit, if it happened.
fn waitpid_nohang(pid: Pid) -> Option<Exit> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable int; waitpid on one
        // specific pid never touches another process's status.
        let rc = unsafe { libc::waitpid(pid.as_raw(), &mut status, libc::WNOHANG) };
        match rc {
            0 => return None,
            r if r > 0 => {
                return Some(if libc::WIFEXITED(status) {
                    Exit::Exited(libc::WEXITSTATUS(status))
                } else if libc::WIFSIGNALED(status) {
                    Exit::Signaled(libc::WTERMSIG(status))
                } else {
                    // Stopped/continued are not reported without WUNTRACED.
                    return None;
                });
            }
            _ => match Errno::last() {
                Errno::EINTR => continue,
                Errno::ECHILD => return Some(Exit::Unknown),
                e => {
                    log::warn!("procsup: waitpid({pid}): {e}");
                    return None;
                }
            },
        }
    }
}
