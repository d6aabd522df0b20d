//! The real OS layer: the only module with `unsafe`.
//!
//! - On Linux x86_64, spawning goes through procsup's own vfork-class
//!   clone (`clone.rs`, `clone_child.rs`): `clone3` with
//!   `CLONE_VM|CLONE_VFORK|CLONE_PIDFD|CLONE_INTO_CGROUP` (`clone(2)` where
//!   seccomp refuses `clone3`), so no page table is copied however large
//!   the host, the pidfd comes from the clone itself and the child is born
//!   in its cgroup. A spec with a user `pre_exec` hook (which may not be
//!   vfork-safe), other systems and kernels before 5.2 use
//!   [`std::process::Command`] instead (`spawn.rs`, `child.rs`). Both
//!   report an exec failure's errno as the spawn's error.
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
//! - Every child starts clean (`child.rs`): an empty signal mask and the
//!   default disposition for each signal the host ignored or caught, before
//!   any user hook.
//! - In subreaper mode ([`UnixSys::subreaper`], `subreaper.rs`) orphans
//!   adopted from supervised trees are reaped, each by its pid.

#![allow(unsafe_code)]

mod cgroup;
mod child;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod clone;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod clone_child;
mod exec;
mod faults;
mod fds;
mod launch;
mod notify;
mod orphan;
mod output;
mod readiness;
mod records;
mod spawn;
mod spawner;
mod standby;
mod subreaper;
mod tree;
mod usage;
mod wait;

pub use subreaper::SubreaperMode;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use cgroup::CgroupRoot;
use faults::Faults;
use orphan::{Orphans, ORPHAN_CGROUP_SLOT, ORPHAN_SLOT};
use output::{pending_bytes, pipe_token, OutputReader};
use readiness::{token, untoken, Readiness};
use records::{Records, RECORD_DELAY};
use spawn::set_nonblocking;
use spawner::Spawner;
use standby::{Held, Standbys};
use subreaper::{Subreaper, ADOPTED_SLOT};
use tree::{Contain, GroupDrains, CGROUP_SLOT, MEMBER_SLOT, MEMORY_TAG};
use wait::{pidfd_open, pidfd_waitid_works, waitid_pidfd, waitpid_nohang, warn_if_spawner_thread_died};

use super::{Sys, SysEvent};
use crate::orphans::OrphanScan;
use crate::spec::{KillMode, ProcessSpec};
use crate::state::{Containment, Exit};
use crate::state_dir::StateDir;

/// How soon a child whose exit wakes no fd is looked at again.
const RECHECK: Duration = Duration::from_millis(50);

#[derive(Debug)]
struct Child {
    name: Box<str>,
    contain: Contain,
    /// The leader's exit was reported: the rest of its tree drains.
    reaped: bool,
    pidfd: Option<OwnedFd>,
    pipes: [Option<OwnedFd>; 2],
    /// The thread that spawned it and the parent-death signal it got.
    spawner: (i32, Option<i32>),
    /// The leader was reaped with this exit; it is reported once
    /// `last_word` is read. Its pid is never signalled again.
    exited: Option<Exit>,
    /// Bytes its pipes still held when it was reaped, not yet read.
    last_word: [usize; 2],
    /// Its sd_notify socket or notification-fd pipe (`notify.rs`).
    notify: Option<notify::Notify>,
}

impl Child {
    /// Closes one of its capture pipes (`slot` 0: stdout, 1: stderr) and
    /// takes it out of the readiness set.
    fn close_pipe(&mut self, slot: usize, readiness: Option<&Readiness>) {
        if let (Some(fd), Some(r)) = (self.pipes[slot].take(), readiness) {
            r.unwatch(fd.as_fd());
        }
    }
}

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
    output: OutputReader,
    /// Its state directory's records (`records.rs`).
    records: Records,
    /// Trees a crashed earlier run left, being stopped.
    orphans: Orphans,
    subreaper: Option<Subreaper>,
    /// Process groups that drain after their leader was reaped.
    drains: GroupDrains,
    cgroups: Cgroups,
    /// Children whose exit or output wakes no fd (no pidfd for this one,
    /// or an epoll add failed): looked at on every poll.
    unwatched: BTreeSet<Pid>,
    /// Children whose memory events could not be watched (no epoll, or
    /// adding failed): looked at on every poll.
    memory_polled: BTreeSet<Pid>,
    /// Reaped leaders whose tree lives on and whose `cgroup.events` could
    /// not be watched: looked at on every poll.
    cgroup_polled: BTreeSet<Pid>,
    /// Reaped children whose remaining output is still being read.
    finishing: BTreeSet<Pid>,
    faults: Faults,
    spawner: Spawner,
    /// Successors held ready (`standby.rs`).
    standbys: Standbys,
}

// A host may keep its supervisor in a `Mutex` or move it across threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<UnixSys>();
};

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

impl Cgroups {
    /// The directory holding the children's cgroups, once made.
    fn dir(&self) -> Option<&std::path::Path> {
        match self {
            Cgroups::Ready(root) => Some(root.dir()),
            _ => None,
        }
    }

    /// Makes the directory on first use (`record` runs before it is made,
    /// see [`CgroupRoot::create`]), and says once in the log which
    /// containment children get.
    fn root(&mut self, record: impl FnOnce(&std::path::Path, i32, u64)) -> Option<&mut CgroupRoot> {
        let base = match self {
            Cgroups::Auto => cgroup::discover(),
            Cgroups::Under(dir) => Ok(dir.clone()),
            Cgroups::Ready(_) | Cgroups::Off => Err(io::Error::from(Errno::ENOENT)),
        };
        if matches!(self, Cgroups::Auto | Cgroups::Under(_)) {
            *self = match base.and_then(|b| CgroupRoot::create(&b, record)) {
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
        match self {
            Cgroups::Ready(root) => Some(root),
            _ => None,
        }
    }

    /// A child's cgroup that is done with: kept for the next child of
    /// that name (a restart) where the root takes it back, else removed.
    fn retire(&mut self, name: &str, cg: cgroup::ChildCgroup) {
        match self {
            Cgroups::Ready(root) => root.retire(name, cg),
            _ => cg.remove(),
        }
    }
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
            output: OutputReader::new(),
            records: Records::default(),
            orphans: Orphans::default(),
            subreaper: None,
            drains: GroupDrains::default(),
            cgroups: Cgroups::Auto,
            unwatched: BTreeSet::new(),
            memory_polled: BTreeSet::new(),
            cgroup_polled: BTreeSet::new(),
            finishing: BTreeSet::new(),
            faults: Faults::default(),
            spawner: Spawner::default(),
            standbys: Standbys::default(),
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
        log::info!("procsup: containment: process groups (cgroups turned off)");
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
        self.cgroups.dir()
    }

    /// Makes this `UnixSys`'s cgroup directory on first use, and says once
    /// in the log which containment its children get.
    fn cgroup_root(&mut self) -> Option<&mut CgroupRoot> {
        let records = &mut self.records;
        self.cgroups.root(|root, pid, start_time| records.record_host(root, pid, start_time))
    }

    /// Records every live child in `dir` (created with mode 0700 if
    /// missing), one file per child, so that a later run can stop what
    /// this one leaves behind if it dies: see
    /// [`Supervisor::cleanup_orphans`](crate::Supervisor::cleanup_orphans).
    ///
    /// The directory has one owner: this `UnixSys` holds an exclusive lock
    /// on it (`flock` on its `.lock` file) until it is dropped, or until
    /// the process dies, when the kernel releases it.
    ///
    /// What procsup makes in it, and all it ever changes or removes:
    ///
    /// - `.lock`, made if missing (mode 0600), never written to or removed;
    /// - one record per live child, `<name>.<pid>`, whose first line is
    ///   `procsup-record 1`, removed once the child is gone (at a later
    ///   poll, off the way to its successor's spawn);
    /// - with a cgroup per child, one host record,
    ///   `.procsup-host.procsup-<pid>-<start>-<n>`, written (and `fsync`ed)
    ///   before the host's cgroup directory is made, removed after it: a
    ///   later host stops every populated cgroup in a dead host's directory,
    ///   also one a crash left with no child record. So on that path a
    ///   child's own record is written at the first poll after its spawn
    ///   that reports no exit (about a millisecond later; see
    ///   [`Sys::wake_after`]), once the child runs its program, instead of
    ///   on the CPU its `execve` needs; on the process-group path, where
    ///   the record is all that finds the tree, it is written as the spawn
    ///   returns;
    /// - while a record is written, `.procsup-tmp.<name>.<pid>`, renamed
    ///   into place when whole. A write is atomic, so a crash never leaves
    ///   a record empty or cut short; it may leave that temporary file,
    ///   which the next scan puts in place if it holds a whole record, and
    ///   removes if it is empty or holds the start of one.
    ///
    /// Every other entry is never opened for writing, renamed over or
    /// removed: a file whose first line is not `procsup-record 1` (an
    /// empty file too), a hidden file, a FIFO, a socket, a directory, a
    /// symlink, a name that is not UTF-8. A scan reports each once
    /// ([`Event::OrphanRefused`](crate::Event::OrphanRefused) and a
    /// warning) and leaves it. A record with the header that is damaged
    /// after it is procsup's, and removed
    /// ([`Discard::Junk`](crate::Discard::Junk)). So a directory that holds
    /// other files (even `.`) can be the state directory, though a
    /// directory of its own is tidier.
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
    /// // A file that is not procsup's is left as it is.
    /// std::fs::write(dir.join("notes.txt"), "important\n").unwrap();
    /// let mut sup = procsup::Supervisor::with_sys(UnixSys::new().state_dir(&dir).unwrap());
    /// assert_eq!(sup.cleanup_orphans(std::time::Instant::now()).unwrap(), 0);
    /// assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "important\n");
    /// # drop(sup);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn state_dir(mut self, dir: impl AsRef<std::path::Path>) -> crate::Result<Self> {
        let dir = StateDir::open(dir.as_ref())?;
        self.records.open(dir, self.cgroups.dir());
        Ok(self)
    }

    /// Makes the host a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`),
    /// for a host that runs as PID 1 or as a container's entrypoint (the
    /// job of tini and dumb-init): a process whose parent dies becomes the
    /// host's child instead of init's. Such adopted orphans, as `mode`
    /// allows, are watched (a pidfd in the one readiness fd) and reaped by
    /// their pid when they exit, each reported as
    /// [`Event::AdoptedExited`](crate::Event::AdoptedExited). Off by default.
    ///
    /// Adoptions are looked for (one read of `/proc/self/task/*/children`)
    /// in a [`Sys::poll`] that saw an exit of ours, or when a non-reaping
    /// peek shows a zombie child that is not ours. Nothing signals an
    /// adoption, and an orphan adopted while the supervised child it came
    /// from lives (its own parent in the tree died) wakes nothing when it
    /// exits: a host in this mode should also wake on SIGCHLD and tick, so
    /// that such a zombie is reaped at once.
    ///
    /// [`SubreaperMode::AllOrphans`] takes every child that is not this
    /// `UnixSys`'s own, including another `UnixSys`'s: use it with one.
    ///
    /// The flag is the whole host process's. Dropping this `UnixSys` kills
    /// and reaps the orphans adopted from supervised trees; dropping the
    /// last one in subreaper mode clears the flag again (unless the host was
    /// a subreaper before the first).
    ///
    /// ```no_run
    /// use procsup::{SubreaperMode, Supervisor, UnixSys};
    /// let sys = UnixSys::new().subreaper(SubreaperMode::SupervisedTrees)?;
    /// let mut sup = Supervisor::with_sys(sys);
    /// # Ok::<(), procsup::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Subreaper`](crate::Error::Subreaper): `Unsupported` where
    /// there is no `PR_SET_CHILD_SUBREAPER` (systems other than Linux); the
    /// `prctl` error otherwise.
    pub fn subreaper(mut self, mode: SubreaperMode) -> crate::Result<Self> {
        self.subreaper = Some(Subreaper::new(mode).map_err(crate::Error::Subreaper)?);
        Ok(self)
    }

    /// How many adopted orphans are watched (subreaper mode).
    pub fn adopted_count(&self) -> usize {
        self.subreaper.as_ref().map_or(0, Subreaper::adopted_count)
    }

    /// The `waitpid`/`kill` fallback even where pidfds exist (for tests of
    /// that path, and for hosts that must run on old kernels the same way).
    /// Captured output still wakes the epoll fd; exits do not.
    pub fn without_pidfd() -> Self {
        let mut sys = Self::new();
        sys.pidfd = Some(false);
        sys
    }

    /// Test seam: how the last spawn was made: `"clone3"` or `"clone"`
    /// (procsup's own vfork-class spawn, Linux) or `"command"` (std's
    /// `Command`); `None` before the first spawn.
    #[doc(hidden)]
    pub fn last_spawn_path(&self) -> Option<&'static str> {
        self.spawner.last_spawn
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
        self.children.values().filter(|c| c.exited.is_none()).count()
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
        if let Some(child) = self.children.get_mut(&pid) {
            child.close_pipe(slot, self.readiness.as_ref());
        }
    }

    /// `pid` was reaped: its exit is reported once the bytes its pipes hold
    /// now are read (see `output`). Its record stays until its whole tree
    /// is gone (`forget_child`).
    fn reaped(&mut self, pid: Pid, exit: Exit) {
        let Some(child) = self.children.get_mut(&pid) else { return };
        child.exited = Some(exit);
        let pidfd = child.pidfd.take();
        for slot in 0..2 {
            // A grandchild holding the pipe open is not waited for: only
            // what is buffered now is the child's last word.
            child.last_word[slot] = child.pipes[slot].as_ref().map_or(0, |fd| pending_bytes(fd).unwrap_or(usize::MAX));
        }
        // The successor first: nothing below is needed before it goes.
        if self.standbys.armed.remove(&pid) {
            self.let_go_early(pid);
        }
        // Taken out of the epoll set before it is closed: epoll(7) drops a
        // file only once every fd that refers to it is closed, and a fork
        // of another thread (until its exec) holds copies of ours. Left in
        // the set, the exited child's pidfd would keep it ready: the host
        // would spin.
        if let Some(fd) = &pidfd {
            self.unwatch(fd);
        }
        self.unwatched.remove(&pid);
        self.finishing.insert(pid);
        if let (Some(sr), Some(child)) = (self.subreaper.as_mut(), self.children.get(&pid)) {
            sr.note_reaped(pid, &child.name);
        }
    }

    /// Reports the exit of a reaped child whose last word was read: gone,
    /// or a leader whose tree drains (`leader_reaped`).
    fn finish(&mut self, pid: Pid, events: &mut Vec<SysEvent>) {
        for slot in 0..2 {
            self.close_pipe(pid, slot);
        }
        self.finishing.remove(&pid);
        // What it said before it died is said before its exit.
        self.close_notify(pid, events);
        let Some(child) = self.children.get(&pid) else { return };
        let exit = child.exited.unwrap_or(Exit::Unknown);
        warn_if_spawner_thread_died(pid, child, exit);
        self.leader_reaped(pid, exit, events);
    }

    /// Looks for the exit of one own child not yet reaped (or of a
    /// successor held ready, whose pidfd has the token its child's will).
    fn check_exit(&mut self, pid: Pid) {
        if !self.children.contains_key(&pid) {
            self.standby_died(pid);
            return;
        }
        if let Some(exit) = self.try_wait(pid) {
            self.reaped(pid, exit);
        }
    }

    fn poll_ready(&mut self, events: &mut Vec<SysEvent>) {
        let mut pipes = Vec::new();
        let cap = (self.children.len() * 3).clamp(16, 1024);
        match self.readiness.as_mut().map(|r| r.ready(cap)) {
            Some(tokens) => {
                // A full batch may have left more ready: an edge-triggered
                // host sees no new edge for those, so ask to be polled again.
                self.output.more |= tokens.len() == cap;
                for token in tokens {
                    let (pid, slot) = untoken(token);
                    if token & notify::NOTIFY_TAG != 0 {
                        self.read_notify(pid, events);
                        continue;
                    }
                    if token & MEMORY_TAG != 0 {
                        self.memory_changed(pid, events);
                        continue;
                    }
                    match slot {
                        ORPHAN_SLOT => self.orphan_leader_exited(pid, events),
                        ORPHAN_CGROUP_SLOT => self.orphan_cgroup_changed(pid, events),
                        CGROUP_SLOT => self.cgroup_changed(pid, events),
                        MEMBER_SLOT => self.member_exited(pid, events),
                        ADOPTED_SLOT => {
                            if let Some(exit) = self.wait_adopted(pid) {
                                self.finish_adopted(pid, exit, events);
                            }
                        }
                        0 => self.check_exit(pid),
                        _ => pipes.push(token),
                    }
                }
            }
            // No readiness source: every child's pipes are looked at.
            None => {
                pipes.extend(self.children.keys().flat_map(|&pid| [pipe_token(pid, 0), pipe_token(pid, 1)]));
                let pids: Vec<Pid> = self.children.keys().copied().collect();
                for pid in pids {
                    self.read_notify(pid, events);
                }
            }
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
        let drains: Vec<Pid> = self.cgroup_polled.iter().copied().collect();
        for pid in drains {
            self.cgroup_changed(pid, events);
        }
        let polled: Vec<Pid> = self.memory_polled.iter().copied().collect();
        for pid in polled {
            self.memory_changed(pid, events);
        }
        for &pid in self.unwatched.iter().chain(&self.finishing) {
            pipes.extend([pipe_token(pid, 0), pipe_token(pid, 1)]);
        }
        self.output.read_round(&mut self.children, self.readiness.as_ref(), pipes, events);
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

    /// Non-blocking wait for one own child not yet reaped.
    fn try_wait(&mut self, pid: Pid) -> Option<Exit> {
        let child = self.children.get(&pid).filter(|c| c.exited.is_none())?;
        match &child.pidfd {
            Some(fd) => waitid_pidfd(fd.as_raw_fd()),
            None => waitpid_nohang(pid),
        }
    }
}

impl Sys for UnixSys {
    fn spawn(&mut self, spec: &ProcessSpec) -> io::Result<Pid> {
        self.spawn_child(spec)
    }

    fn signal(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        // Only children not yet gone are in the map; a reaped leader's own
        // pid is never signalled (see tree.rs).
        self.signal_tree(pid, signal)
    }

    fn signal_leader(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        self.signal_child_only(pid, signal)
    }

    fn containment(&self, pid: Pid) -> Containment {
        self.children.get(&pid).map_or(Containment::None, |c| c.contain.kind())
    }

    fn usage(&self, pid: Pid) -> Option<crate::state::Usage> {
        self.children.get(&pid).and_then(|c| usage::tree_usage(pid, &c.contain, c.reaped))
    }

    fn poll(&mut self, events: &mut Vec<SysEvent>) {
        self.output.more = false;
        let before = events.len();
        self.poll_ready(events);
        self.recheck_draining_groups(events);
        self.poll_orphans(events);
        self.poll_adopted(events);
        self.records.catch_up(&events[before..], &self.children);
        self.tend_standbys(&events[before..]);
    }

    fn scan_orphans(&mut self) -> io::Result<Vec<OrphanScan>> {
        self.scan_orphan_trees()
    }

    fn state_dir(&self) -> Option<&std::path::Path> {
        self.records.dir().map(StateDir::path)
    }

    /// Refused without a cgroup per child ([`UnixSys::without_cgroups`],
    /// no writable cgroup v2), or where the hierarchy has no controller a
    /// limit needs; the controllers are enabled in `cgroup.subtree_control`
    /// here (of this `UnixSys`'s directory, and of its parent where needed).
    fn refuse_limits(&mut self, spec: &ProcessSpec) -> Option<(&'static str, String)> {
        let (first, _) = spec.first_cgroup_limit()?;
        let Some(root) = self.cgroup_root() else {
            return Some((first, "children get no cgroup of their own here (process-group containment)".to_owned()));
        };
        spec.limits.set().find_map(|(limit, controller)| {
            root.enable(controller)
                .err()
                .map(|e| (limit, format!("no {controller} controller for the children's cgroups: {e}")))
        })
    }

    fn signal_orphan(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        self.orphans.signal(pid, signal)
    }

    fn expect_respawn(&mut self, spec: &ProcessSpec, since_last_spawn: Option<Duration>) {
        self.want_standby(spec, since_last_spawn.is_some_and(|d| d < standby::CLOSE_SPAWNS));
    }

    fn forget_respawn(&mut self, name: &str) {
        self.unwant_standby(name);
    }

    fn respawn_at_once(&mut self, pid: Pid, at_once: bool) {
        self.arm_standby(pid, at_once);
    }

    fn readiness_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.readiness.iter().map(Readiness::fd).collect()
    }

    /// "Now" while captured output is left unread (the per-poll budget ran
    /// out), a reaped child's last output is still being read, or a
    /// successor is to be made at once (a brief run before, see
    /// [`UnixSys::standby`]);
    /// 1 ms while one is to be made or looked at otherwise, a new child's
    /// record waits to be written, or a gone child's to be removed (see
    /// [`UnixSys::state_dir`]); 50 ms
    /// while a child's exit or output wakes no fd (see
    /// [`UnixSys::uses_pidfd`]), a draining process group has no member
    /// pidfd to wake it, or a draining cgroup's `cgroup.events` could not
    /// be watched; otherwise never.
    fn wake_after(&self) -> Option<Duration> {
        if self.output.more || !self.finishing.is_empty() {
            Some(Duration::ZERO)
        } else if let Some(soon) =
            [self.records.wants_a_poll().then_some(RECORD_DELAY), self.standbys.poll_in()].into_iter().flatten().min()
        {
            Some(soon)
        } else if !self.unwatched.is_empty()
            || !self.memory_polled.is_empty()
            || !self.cgroup_polled.is_empty()
            || self.has_unwatched_drains()
        {
            Some(RECHECK)
        } else {
            None
        }
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
                if child.exited.is_none() {
                    log::warn!("procsup: dropped with {} (pid {pid}) running: killed", child.name);
                    // Blocking reap of our own child: waitpid on one pid only.
                    while let Err(Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
                }
                self.records.remove(&child.name, pid);
                if let Contain::Cgroup(cg) = &child.contain {
                    cg.wait_empty(200);
                    cg.remove();
                }
            }
        }
        self.end_standbys();
        self.records.remove_stale(&self.children);
        self.release_adopted();
        // The cgroup directory goes, then the record that names it.
        if let Cgroups::Ready(root) = std::mem::replace(&mut self.cgroups, Cgroups::Off) {
            let dir = root.dir().to_owned();
            drop(root);
            self.records.forget_host(&dir);
        }
    }
}
