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
//! - Each child's whole tree is contained (see [`Containment`]): a cgroup v2
//!   per child where one is writable (`cgroup.rs`), else its process group
//!   (`tree.rs`). A leader reaped while the rest of its tree lives is
//!   reported as [`SysEvent::LeaderExited`], and the tree's end as
//!   [`SysEvent::TreeEmpty`].

#![allow(unsafe_code)]

mod cgroup;
mod orphan;
mod readiness;
mod spawn;
mod tree;
mod wait;

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use cgroup::CgroupRoot;
use orphan::{OrphanEntry, ORPHAN_CGROUP_SLOT, ORPHAN_SLOT};
use readiness::Readiness;
use spawn::set_nonblocking;
use tree::{Contain, CGROUP_SLOT, MEMBER_SLOT};
use wait::{pidfd_open, waitid_pidfd, waitpid_nohang};

use super::{Sys, SysEvent};
use crate::event::Stream;
use crate::orphans::{self, OrphanScan, Record};
use crate::spec::{KillMode, ProcessSpec};
use crate::state::{Containment, Exit};
use crate::state_dir::StateDir;

/// Bytes read from one pipe per `poll`, so one chatty child cannot starve
/// the others (level-triggered epoll reports it again).
const READ_BUDGET: usize = 256 * 1024;

#[derive(Debug)]
struct Child {
    name: Box<str>,
    contain: Contain,
    /// Reaped: the leader is gone and the rest of its tree drains.
    reaped: bool,
    pidfd: Option<OwnedFd>,
    pipes: [Option<OwnedFd>; 2],
    /// The thread that spawned it and the parent-death signal it got.
    spawner: (i32, Option<i32>),
}

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
    /// This boot's id, for the records.
    boot_id: Option<String>,
    /// Members of draining process groups: member -> (leader, pidfd).
    members: HashMap<Pid, (Pid, OwnedFd)>,
    /// Reaped group leaders whose group is not empty yet.
    group_drains: std::collections::HashSet<Pid>,
    cgroups: Cgroups,
}

/// Whether children get cgroups, and where.
#[derive(Debug)]
enum Cgroups {
    /// Find the host's own cgroup at the first spawn.
    Auto,
    /// Under a directory the host named.
    Under(std::path::PathBuf),
    /// Made: this `UnixSys`'s directory.
    Ready(CgroupRoot),
    /// None to be had, or not wanted: process groups.
    Off,
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
            boot_id: None,
            members: HashMap::new(),
            group_drains: std::collections::HashSet::new(),
            cgroups: Cgroups::Auto,
        }
    }

    /// No cgroups: each child's tree is held by its process group only
    /// (for tests of that path, and for hosts that manage cgroups
    /// themselves). See [`Containment`].
    ///
    /// ```
    /// let sys = procsup::UnixSys::without_pidfd().without_cgroups();
    /// assert_eq!(sys.cgroup_dir(), None);
    /// ```
    pub fn without_cgroups(mut self) -> Self {
        self.cgroups = Cgroups::Off;
        self
    }

    /// Makes the children's cgroups under `dir`, a cgroup v2 directory the
    /// host may write to (a delegated subtree), instead of under the
    /// host's own cgroup found in `/proc/self/cgroup`.
    ///
    /// # Errors
    /// `dir` is not a cgroup v2 directory.
    pub fn cgroup_parent(mut self, dir: impl AsRef<std::path::Path>) -> io::Result<Self> {
        cgroup::check_cgroup_dir(dir.as_ref())?;
        self.cgroups = Cgroups::Under(dir.as_ref().to_owned());
        Ok(self)
    }

    /// The directory holding this `UnixSys`'s cgroups (one per child),
    /// once the first spawn has made it; `None` when children are held by
    /// process groups.
    pub fn cgroup_dir(&self) -> Option<&std::path::Path> {
        match &self.cgroups {
            Cgroups::Ready(root) => Some(root.dir()),
            _ => None,
        }
    }

    /// Makes this `UnixSys`'s cgroup directory on first use, and says once
    /// in the log which containment its children get.
    fn cgroup_root(&mut self) -> Option<&mut CgroupRoot> {
        let base = match &self.cgroups {
            Cgroups::Auto => cgroup::discover(),
            Cgroups::Under(dir) => Ok(dir.clone()),
            Cgroups::Ready(_) | Cgroups::Off => Err(io::Error::from(Errno::ENOENT)),
        };
        if matches!(self.cgroups, Cgroups::Auto | Cgroups::Under(_)) {
            self.cgroups = match base.and_then(|b| CgroupRoot::create(&b)) {
                Ok(root) => {
                    log::info!("procsup: containment: a cgroup v2 per child, under {}", root.dir().display());
                    Cgroups::Ready(root)
                }
                Err(e) => {
                    log::info!("procsup: containment: process groups (no writable cgroup v2: {e})");
                    Cgroups::Off
                }
            };
        }
        match &mut self.cgroups {
            Cgroups::Ready(root) => Some(root),
            _ => None,
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
        self.boot_id = orphans::boot_id();
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
        (pid.as_raw() as u32 as u64) << 3 | slot
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
        let Some(child) = self.children.get_mut(&pid) else { return };
        let pidfd = child.pidfd.take();
        warn_if_spawner_thread_died(pid, child, exit);
        if let Some(fd) = &pidfd {
            self.unwatch(fd);
        }
        self.leader_reaped(pid, exit, events);
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
            let pid = Pid::from_raw((token >> 3) as u32 as i32);
            match token & 7 {
                ORPHAN_SLOT => self.orphan_leader_exited(pid, events),
                ORPHAN_CGROUP_SLOT => self.orphan_cgroup_changed(pid, events),
                CGROUP_SLOT => self.cgroup_changed(pid, events),
                MEMBER_SLOT => self.member_exited(pid, events),
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

    /// Records a new child in the state directory, with what finds its
    /// tree after a crash.
    fn record(&self, spec: &ProcessSpec, pid: Pid, contain: &Contain) {
        let Some(dir) = &self.state_dir else { return };
        let pgid = if spec.process_group { pid } else { nix::unistd::getpgrp() };
        let sid = nix::unistd::getsid(Some(pid)).map_or(0, Pid::as_raw);
        let record = orphans::start_time(pid.as_raw()).map(|start_time| Record {
            pid: pid.as_raw(),
            pgid: pgid.as_raw(),
            sid,
            start_time,
            boot_id: self.boot_id.clone(),
            cgroup: match contain {
                Contain::Cgroup(cg) => Some(cg.dir.clone()),
                _ => None,
            },
        });
        if let Err(e) = record.ok_or_else(|| io::Error::from(Errno::ESRCH)).and_then(|r| dir.write(&spec.name, r)) {
            log::warn!("procsup: recording {} (pid {pid}) in the state directory: {e}", spec.name);
        }
    }

    /// Non-blocking wait for one own child not yet reaped.
    fn try_wait(&mut self, pid: Pid) -> Option<Exit> {
        let child = self.children.get(&pid).filter(|c| !c.reaped)?;
        match &child.pidfd {
            Some(fd) => waitid_pidfd(fd.as_raw_fd()),
            None => waitpid_nohang(pid),
        }
    }
}

impl Sys for UnixSys {
    fn spawn(&mut self, spec: &ProcessSpec) -> io::Result<Pid> {
        let tree = spec.kill_mode == KillMode::Tree;
        let (cgroup, procs) = match self.cgroup_root().filter(|_| tree).map(|root| root.child(&spec.name)) {
            Some(Ok((cg, procs))) => (Some(cg), Some(procs)),
            Some(Err(e)) => {
                log::warn!("procsup: no cgroup for {}: {e}; it is held by its process group", spec.name);
                (None, None)
            }
            None => (None, None),
        };
        let spawned = spawn::command(spec, procs.as_ref().map(AsRawFd::as_raw_fd)).and_then(|(mut cmd, read_ends)| {
            let child = cmd.spawn()?;
            drop(cmd); // closes our copies of the pipes' write ends
            Ok((child, read_ends))
        });
        drop(procs);
        let (child, read_ends) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                if let Some(cg) = &cgroup {
                    cg.remove();
                }
                return Err(e);
            }
        };
        let pid = Pid::from_raw(child.id() as i32);
        drop(child); // std's Child neither waits nor kills on drop
        let pidfd = self.open_pidfd(pid);
        #[cfg(target_os = "linux")]
        let spawner = (nix::unistd::gettid().as_raw(), spec.die_with_parent.map(|s| s as i32));
        #[cfg(not(target_os = "linux"))]
        let spawner = (0, None);
        let contain = match cgroup {
            Some(cg) => {
                if let Err(e) = self
                    .readiness
                    .as_ref()
                    .map_or(Ok(()), |r| r.watch_pri(cg.events.as_fd(), Self::token(pid, CGROUP_SLOT)))
                {
                    log::warn!("procsup: epoll add cgroup.events: {e}");
                }
                Contain::Cgroup(cg)
            }
            None if tree && spec.process_group => Contain::Group,
            None => Contain::None,
        };
        let mut entry =
            Child { name: spec.name.as_str().into(), contain, reaped: false, pidfd: None, pipes: read_ends, spawner };
        self.record(spec, pid, &entry.contain);
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
        // Only children not yet gone are in the map; a reaped leader's own
        // pid is never signalled (see tree.rs).
        self.signal_tree(pid, signal)
    }

    fn containment(&self, pid: Pid) -> Containment {
        self.children.get(&pid).map_or(Containment::None, |c| c.contain.kind())
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
        self.recheck_draining_groups(events);
        self.poll_orphans(events);
    }

    fn scan_orphans(&mut self) -> io::Result<Vec<OrphanScan>> {
        self.scan_orphan_trees()
    }

    fn state_dir(&self) -> Option<&std::path::Path> {
        self.state_dir.as_ref().map(StateDir::path)
    }

    fn signal_orphan(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        self.signal_orphan_tree(pid, signal)
    }

    fn readiness_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.readiness.iter().map(Readiness::fd).collect()
    }
}

impl Drop for UnixSys {
    /// Children still running when the OS layer goes away would be nobody's:
    /// unsupervised, and zombies once they exit. So each tree gets SIGKILL
    /// (`cgroup.kill`, or its process group) and each leader is reaped; a
    /// cgroup is waited for (up to 2 s) until it is empty, then removed.
    /// This is the one place that blocks; SIGKILL cannot be ignored, so it
    /// only lasts while a process is stuck inside the kernel. Shut down
    /// gracefully before dropping to give children their stop signal and
    /// timeout instead.
    fn drop(&mut self) {
        let pids: Vec<Pid> = self.children.keys().copied().collect();
        for &pid in &pids {
            let _ = self.signal(pid, Signal::SIGKILL);
        }
        for pid in pids {
            if let Some(child) = self.children.remove(&pid) {
                if !child.reaped {
                    log::warn!("procsup: dropped with {} (pid {pid}) running: killed", child.name);
                    // Blocking reap of our own child: waitpid on one pid only.
                    while let Err(Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
                }
                if let Some(dir) = &self.state_dir {
                    dir.remove(&child.name, pid.as_raw());
                }
                if let Contain::Cgroup(cg) = &child.contain {
                    cg.wait_empty(200);
                    cg.remove();
                }
            }
        }
    }
}

impl UnixSys {
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
