//! Successors held ready ([`UnixSys::standby`]): once a child runs, the
//! host clones the child that will replace it, with every step of the
//! spawn done (its cgroup, session, signals, parent-death signal, fds,
//! environment), and parks it on a socket before its `execve`. When the
//! supervisor spawns that name again with the same spec, the spawn is one
//! byte on that socket: the successor execs at once, and the restart path
//! holds no clone, no environment copy and no child set-up (#22).
//!
//! - **What it is**: a `CLONE_VM` child without `CLONE_VFORK`
//!   (`clone_child.rs`): it shares the host's memory, so it costs no page
//!   table copy, however large the host, and the memory it runs on
//!   ([`Held`]) is kept until its end of the socket closes (its exec, or its
//!   death). `ps` shows it as `procsup-standby`.
//! - **It never outlives the host**: a host that dies closes its end of the
//!   socket, and the parked child's `read` returns end of file: it exits.
//!   The parent-death signal, where the spec has one, ends it too.
//! - **When**: [`Sys::expect_respawn`] (the supervisor, after a spawn under
//!   a restart policy) asks for one; it is made at the next poll that
//!   reports no exit, so never on a restart's path; the supervisor takes
//!   the wish back ([`Sys::forget_respawn`]) when the process is stopped
//!   for good, gives up or is removed, and the successor is then ended.
//! - **Which specs**: not those that change credentials (the child would
//!   hold the host's memory under another uid), set cgroup limits (a memory
//!   OOM kill in its cgroup would kill every process sharing its memory:
//!   the host), append to a file (opened at the spawn, so that a rotated
//!   log is followed), run a `pre_exec` hook, or treat an exec error as
//!   fatal (the exec happens after the spawn has returned: its failure is
//!   the child's exit 127, logged with its errno).
//! - **Same spec**: a spawn whose spec differs in anything the spawn uses
//!   (program, arguments, environment, stdio, fds, readiness, ...) ends the
//!   successor and spawns anew. The host's own environment, and its working
//!   directory for a spec without one, are those of the moment the
//!   successor was made; a spec's `current_dir` is entered once the
//!   successor is let go (a deploy's moved symlink is followed), and a
//!   failure there is its exit 127 as an exec's.
//! - **The early word**: for a child whose death the supervisor restarts
//!   at once ([`Sys::respawn_at_once`], told before each poll), the
//!   successor is let go in the poll that reaps it, right after `waitid`
//!   and a check that the tree is empty (`killpg(pgid, 0)` is `ESRCH`, the
//!   cgroup is not populated), before the exit is reported and decided;
//!   the spawn that follows claims it, one of another spec or
//!   [`Sys::forget_respawn`] ends it. Not where a host crash in that
//!   window could leave it unfound (see `let_go_early`).
//! - **Never a reason to fail**: a spawn that runs out of fds ends every
//!   successor (closing their fds) and tries again; none is made in the
//!   last quarter of the fd limit; one that dies while parked is reaped at
//!   once (its pidfd is watched).

// Elsewhere `Held`, and so a successor, cannot exist: what follows one is
// unreachable there.
#![cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64")),
    allow(unreachable_code, unused_variables, unused_mut)
)]

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use super::launch::Launched;
use super::*;
use crate::spec::Output;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(super) use super::clone::Held;

/// No child is ever held ready on other systems.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
#[derive(Debug)]
pub(super) enum Held {}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
impl Held {
    fn parked(&self) -> bool {
        match *self {}
    }

    fn err(&self) -> i32 {
        match *self {}
    }
}

/// How soon a successor is made, or a let-go one looked at, after the
/// poll that asked for it: past the new child's `execve` and the start of
/// its program. (Made at once, at the wake its exec gives, it measured
/// slower restarts: the host's work then shares a CPU with that start.
/// Made 300 µs after every spawn, the children up 1.2 s of the bench's
/// runit table restarted 1.13x-1.25x the fork loop, against 0.86x-1.04x
/// at 1 ms: its making shares the CPUs with the start of the child the
/// measure ends at.) A child after a brief run is the exception
/// ([`STANDBY_SOON`]).
pub(super) const STANDBY_DELAY: Duration = Duration::from_millis(1);

/// How soon when the child before was spawned less than [`CLOSE_SPAWNS`]
/// earlier ([`Sys::expect_respawn`]'s `since_last_spawn`): at the next
/// poll, so that a child crash-looping at once, dead within a millisecond
/// of its spawn (a few hundred µs here), finds its successor parked. The
/// bench's crash loop (each child gated to die as soon as its `main` has
/// run), one side at a time: 300 µs on, about 35 % of restarts found none
/// and spawned at once, 1.28x-1.31x the vfork loop for `--no-cgroups`; at
/// the next poll about 1 % did, 1.03x-1.04x (and 0.83x-0.88x the fork loop
/// with cgroups, against 1.07x-1.10x). Its making then shares the CPUs
/// with the new child's start, which is why a longer run waits
/// [`STANDBY_DELAY`].
pub(super) const STANDBY_SOON: Duration = Duration::ZERO;

/// A child spawned less than this after its predecessor (a brief run, a
/// zero backoff) may end before [`STANDBY_DELAY`] too: twice that, as one
/// brief run predicts another only roughly. (At 10 ms the bench's steady
/// children, up 5 ms, had theirs made 300 µs on, during their successor's
/// start: 0.93x-1.06x the fork loop, against 0.86x-0.90x at 1 ms.)
pub(super) const CLOSE_SPAWNS: Duration = Duration::from_millis(2);

/// A successor to make.
#[derive(Debug)]
struct Wanted {
    spec: ProcessSpec,
    /// Spawned close after the child before: made at the next poll
    /// ([`STANDBY_SOON`]).
    soon: bool,
}

/// One successor held ready.
#[derive(Debug)]
struct Standby {
    spec: ProcessSpec,
    launched: Launched,
    held: Held,
    /// The host's end of the socket: one byte lets it exec.
    sock: OwnedFd,
}

/// A successor let go (or ended) whose memory is still its own to use.
#[derive(Debug)]
struct Going {
    name: Box<str>,
    pid: Pid,
    /// The host's end: end of file once the child has exec'd or is gone.
    sock: Option<OwnedFd>,
    held: Held,
    /// An ended one's: reaped here, then its cgroup is retired.
    ended: Option<Launched>,
}

/// The successors of a [`UnixSys`].
#[derive(Debug, Default)]
pub(super) struct Standbys {
    pub(super) on: bool,
    /// Names to make one for, with their spec.
    wanted: HashMap<Box<str>, Wanted>,
    ready: HashMap<Box<str>, Standby>,
    going: Vec<Going>,
    /// Children whose death the supervisor restarts at once
    /// ([`Sys::respawn_at_once`]): their successor is let go as the death
    /// is seen (`let_go_early`).
    pub(super) armed: std::collections::HashSet<Pid>,
    /// Successors let go so, each until the spawn that claims it.
    early: HashMap<Box<str>, Standby>,
}

impl Standbys {
    /// Whether `pid` is a successor (held ready or ending): not an orphan.
    pub(super) fn holds(&self, pid: Pid) -> bool {
        self.ready.values().chain(self.early.values()).any(|s| s.launched.pid == pid)
            || self.going.iter().any(|g| g.ended.is_some() && g.pid == pid)
    }

    /// How many are held ready now (a test seam).
    #[cfg(test)]
    pub(super) fn ready_count(&self) -> usize {
        self.ready.len()
    }

    /// The pid held ready for `name` (a test seam).
    #[cfg(test)]
    pub(super) fn pid_of(&self, name: &str) -> Option<Pid> {
        self.ready.get(name).map(|s| s.launched.pid)
    }

    /// The pid let go early for `name` (a test seam).
    #[cfg(test)]
    pub(super) fn early_pid(&self, name: &str) -> Option<Pid> {
        self.early.get(name).map(|s| s.launched.pid)
    }

    /// How soon a poll is wanted: one to make soon (spawns close
    /// together), else one to make or a let-go one to look at.
    pub(super) fn poll_in(&self) -> Option<Duration> {
        if self.wanted.values().any(|w| w.soon) {
            Some(STANDBY_SOON)
        } else if !self.wanted.is_empty() || !self.going.is_empty() {
            Some(STANDBY_DELAY)
        } else {
            None
        }
    }
}

/// Whether `spec` may have a successor held ready (see the module doc).
fn eligible(spec: &ProcessSpec) -> bool {
    spec.pre_exec.is_empty()
        && spec.uid.is_none()
        && spec.gid.is_none()
        && spec.first_cgroup_limit().is_none()
        && !spec.fatal_exec_errors
        && spec.restart != crate::RestartPolicy::Never
        && ![&spec.stdout, &spec.stderr].iter().any(|o| matches!(o, Output::Append(_)))
}

/// The readiness channel a spawn makes (`notify.rs`): an sd_notify socket,
/// a pipe at an fd, or none (the other sources are the supervisor's).
fn channel(ready: &crate::Readiness) -> Option<Option<i32>> {
    match ready {
        crate::Readiness::Notify => Some(None),
        crate::Readiness::Fd(target) => Some(Some(*target)),
        _ => None,
    }
}

/// Whether a child of `b` would be spawned as one of `a` is: everything
/// `launch` reads.
fn alike(a: &ProcessSpec, b: &ProcessSpec) -> bool {
    // The same fds (not copies: the successor holds these), no allocation.
    fn fds(s: &ProcessSpec) -> impl Iterator<Item = (Option<&str>, RawFd, *const OwnedFd)> {
        let listen = s.fds.listen.iter().map(|(n, fd)| (Some(n.as_str()), -1, Arc::as_ptr(fd)));
        listen.chain(s.fds.extra.iter().map(|(t, fd)| (None, *t, Arc::as_ptr(fd))))
    }
    a.name == b.name
        && a.program == b.program
        && a.args == b.args
        && a.env_clear == b.env_clear
        && a.envs == b.envs
        && a.cwd == b.cwd
        && a.stdout == b.stdout
        && a.stderr == b.stderr
        && a.process_group == b.process_group
        && a.kill_mode == b.kill_mode
        && a.die_with_parent == b.die_with_parent
        && a.umask == b.umask
        && a.rlimits == b.rlimits
        && channel(&a.ready) == channel(&b.ready)
        && a.watchdog == b.watchdog
        && a.limits == b.limits
        && fds(a).eq(fds(b))
}

use std::sync::Arc;

impl UnixSys {
    /// Holds a successor ready for every process the supervisor expects to
    /// respawn: its restart is then one byte on a socket, not a spawn. Off
    /// by default; `supervise` turns it on (`--no-standby`).
    ///
    /// - **What**: shortly after a child is spawned (at the first poll that
    ///   reports no exit), the child that will replace it is cloned and
    ///   does every step of a spawn (cgroup, session, signal reset,
    ///   parent-death signal, fds, environment), then waits before its
    ///   `execve`. The next spawn of that name execs it: no clone, no
    ///   environment copy and no set-up on the restart's path.
    /// - **Cost**: one parked process per supervised child (`ps` shows
    ///   `procsup-standby`), which shares the host's memory (no page table
    ///   is copied) and holds no fd of the host's but stdio and its own
    ///   socket; one cgroup more per child where cgroups are used.
    /// - **It never outlives the host**: it exits when its host's end of
    ///   that socket closes, die-with-parent or not.
    /// - **Which specs**: none that sets a uid or gid, cgroup limits, an
    ///   [`Output::Append`](crate::Output::Append) file, a `pre_exec` hook
    ///   or `fatal_exec_errors`, or never restarts: those always spawn at
    ///   once. A spawn whose spec differs from the successor's in anything
    ///   the spawn uses ends that successor and spawns anew.
    /// - **What differs from a spawn at once**: the successor has what it
    ///   inherits from the host as of the moment it was made: the host's
    ///   environment, credentials, rlimits, CPU affinity and seccomp
    ///   filters, an inherited stdout or stderr (a host that `dup2`s its own
    ///   later is not followed), and, for a spec without
    ///   [`current_dir`](crate::ProcessSpec::current_dir), the host's
    ///   working directory. A host that changes any of those should leave
    ///   this off. Its `chdir` and `execve` run after [`Sys::spawn`]
    ///   returned, so one that fails then (the program deleted meanwhile)
    ///   is the child's exit 127, logged with its errno, not the spawn's
    ///   error. Until its exec, `ps` shows it with the host's command line
    ///   and memory (it shares them); its start time is when it was made.
    /// - **Never a reason to fail**: a spawn out of fds ends the successors
    ///   and tries again, and none is made in the last quarter of the fd
    ///   limit.
    /// - **When**: only on the supervisor's word
    ///   ([`Sys::expect_respawn`], [`Sys::forget_respawn`]); a host calling
    ///   [`Sys::spawn`] itself gets no successor unless it gives that word.
    /// - **Sooner still**: where the supervisor says a child's death is
    ///   restarted at once ([`Sys::respawn_at_once`]: restart `Always`, a
    ///   zero backoff, nothing else to decide), the successor is let go in
    ///   the poll that reaps that child, once its tree is empty, ahead of
    ///   the supervisor's decision; the spawn that follows claims it. The
    ///   host then yields its CPU (`sched_yield`) once, so that the
    ///   successor, which the word wakes on that CPU, runs at once as a
    ///   vforked child would: the rest of that tick waits for the
    ///   scheduler's next turn (the successor sleeps or its slice ends, or
    ///   either moves to an idle CPU). Not when the spec has no
    ///   parent-death signal and a crash of the host
    ///   in between could leave it unrecorded (a process group with a
    ///   [`state_dir`](UnixSys::state_dir)). A host's stop that lands in
    ///   between ends it: it may then have run for the length of a tick.
    ///
    /// ```
    /// use procsup::{ProcessSpec, Supervisor, UnixSys};
    /// let mut sup = Supervisor::with_sys(UnixSys::new().standby(true));
    /// sup.add_process(ProcessSpec::new("web", "sleep").arg("60")).unwrap();
    /// // Each restart of "web" is now the exec of a child made ahead.
    /// # drop(sup);
    /// ```
    pub fn standby(mut self, on: bool) -> Self {
        self.standbys.on = on;
        self
    }

    /// [`Sys::expect_respawn`] for [`UnixSys`].
    pub(super) fn want_standby(&mut self, spec: &ProcessSpec, soon: bool) {
        if !self.standbys.on || self.pidfd == Some(false) || !self.spawner.parks() || !eligible(spec) {
            return;
        }
        if let Some(ready) = self.standbys.ready.get(spec.name.as_str()) {
            if alike(&ready.spec, spec) {
                return;
            }
            let sb = self.standbys.ready.remove(spec.name.as_str()).expect("just found");
            self.end_standby(sb);
        }
        self.standbys.wanted.insert(spec.name.as_str().into(), Wanted { spec: spec.clone(), soon });
    }

    /// [`Sys::forget_respawn`] for [`UnixSys`].
    pub(super) fn unwant_standby(&mut self, name: &str) {
        self.standbys.wanted.remove(name);
        if let Some(sb) = self.standbys.ready.remove(name) {
            self.end_standby(sb);
        }
        if let Some(sb) = self.standbys.early.remove(name) {
            // Let go on the supervisor's word that it would restart at
            // once, and then not spawned: a host's stop came between.
            log::debug!(
                "procsup: the successor let go early for {name} (pid {}) is not wanted: ended",
                sb.launched.pid
            );
            self.end_standby(sb);
        }
    }

    /// [`Sys::respawn_at_once`] for [`UnixSys`].
    pub(super) fn arm_standby(&mut self, pid: Pid, at_once: bool) {
        if at_once && self.standbys.on && self.children.get(&pid).is_some_and(|c| c.exited.is_none()) {
            self.standbys.armed.insert(pid);
        } else {
            self.standbys.armed.remove(&pid);
        }
    }

    /// The early word (#22): child `pid`, whose death the supervisor
    /// restarts at once, was just reaped. When its tree is empty and its
    /// successor parked, the successor is let go now, before the exit is
    /// reported, the pidfd is taken out of the epoll set and the
    /// supervisor decides: the spawn that follows claims it
    /// (`release_standby`). Not when the old child's pipes still hold
    /// output (its exit may then be reported at a later poll, after a
    /// host's command), and not where a host crash in between could leave
    /// the running successor unfound: on a process group with a state
    /// directory and no parent-death signal, its record is written only as
    /// the spawn returns.
    pub(super) fn let_go_early(&mut self, pid: Pid) {
        let Some(child) = self.children.get(&pid) else { return };
        if child.last_word.iter().any(|&n| n != 0) {
            return;
        }
        let Some(sb) = self.standbys.ready.get(&child.name) else { return };
        // After a host crash: nothing to find, or it dies with the host, or
        // the host record finds its populated cgroup.
        let found = sb.spec.die_with_parent.is_some() || self.records.finds_unrecorded(sb.launched.in_cgroup());
        if !found || !sb.held.parked() || sb.held.err() != 0 {
            return;
        }
        let empty = match &child.contain {
            Contain::None => true,
            // The leader is reaped: no zombie holds the group's id.
            Contain::Group => nix::sys::signal::killpg(pid, None) == Err(Errno::ESRCH),
            Contain::Cgroup(cg) => !cg.populated(),
        };
        if !empty {
            return;
        }
        let name = child.name.clone();
        let sb = self.standbys.ready.remove(&name).expect("just found");
        if let Err(e) = send_word(&sb.sock) {
            log::debug!("procsup: successor of {name} (pid {}) gone: {e}", sb.launched.pid);
            return self.end_standby(sb);
        }
        self.standbys.early.insert(name, sb);
        // The word's wakeup is synchronous (a unix socket's): it queues the
        // successor on this CPU, behind the rest of this tick. Let it run
        // first, as a vforked child would.
        // SAFETY: sched_yield(2) (POSIX) takes no arguments, touches no
        // memory and only gives up the CPU; on Linux it always succeeds.
        unsafe { libc::sched_yield() };
    }

    /// Makes one wanted successor, unless this poll reported an exit or a
    /// tree's end (`reported`: a restart comes first); and looks after the
    /// successors let go or ended.
    pub(super) fn tend_standbys(&mut self, reported: &[SysEvent]) {
        if !self.standbys.going.is_empty() {
            self.look_at_going();
        }
        if self.standbys.wanted.is_empty()
            || reported.iter().any(|e| matches!(e, SysEvent::Exited { .. } | SysEvent::TreeEmpty { .. }))
        {
            return;
        }
        // One a poll, those wanted soon first.
        let wanted = &self.standbys.wanted;
        let Some(name) = wanted.iter().find(|(_, w)| w.soon).or_else(|| wanted.iter().next()).map(|(n, _)| n.clone())
        else {
            return;
        };
        let Wanted { spec, .. } = self.standbys.wanted.remove(&name).expect("just listed");
        if let Err(e) = self.make_standby(spec) {
            log::debug!("procsup: no successor held ready for {name}: {e}");
        }
    }

    fn make_standby(&mut self, spec: ProcessSpec) -> io::Result<()> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let (ours, theirs) = (OwnedFd::from(ours), OwnedFd::from(theirs));
        // A successor takes a few of the host's fds (its socket, pidfd and
        // pipes): none is made in the last quarter of the fd limit, which
        // spawns need more.
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit(2) fills the local struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is i64 on some Unixes
        let soft = limit.rlim_cur as u64;
        if theirs.as_raw_fd() as u64 >= soft.saturating_sub(soft / 4) {
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        let (mut launched, held) = self.launch(&spec, Some(theirs.as_raw_fd()))?;
        // Ours alone from here: the child has its own copy.
        drop(theirs);
        // Its pidfd is watched from now on, under the token its child's will
        // have: a successor that dies while parked (killed, or a failed
        // step) is reaped at once (`standby_died`), not left a zombie.
        if let Some(fd) = &launched.pidfd {
            launched.watched = self.watch(fd, token(launched.pid, 0)).is_ok();
        }
        let Some(held) = held else {
            // Not held (no clone3 here): a child that runs at once is not
            // what was asked for. Never happens: `launch` fails instead.
            return Err(io::ErrorKind::Unsupported.into());
        };
        let name: Box<str> = spec.name.as_str().into();
        // (A name is never both wanted and ready; should one be, the older
        // successor is ended, never dropped with its memory in use.)
        if let Some(old) = self.standbys.ready.insert(name, Standby { spec, launched, held, sock: ours }) {
            self.end_standby(old);
        }
        Ok(())
    }

    /// The successor held ready for `spec`, let go: it execs now. `None`
    /// (and the successor ended) where there is none, it was made for
    /// another spec, or it is not parked: still on its steps (not yet in
    /// its session or cgroup, so that a signal to its tree could miss it),
    /// failed one, or killed (also at birth, before its first step).
    pub(super) fn release_standby(&mut self, spec: &ProcessSpec) -> Option<Launched> {
        // A wish not yet made into a successor is the old spawn's: the
        // supervisor gives its word again after this one.
        self.standbys.wanted.remove(spec.name.as_str());
        let sb = match self.standbys.early.remove(spec.name.as_str()) {
            // Let go early (`let_go_early`): it runs already.
            Some(sb) if alike(&sb.spec, spec) => sb,
            Some(sb) => {
                log::debug!("procsup: the successor let go early for {} is of another spec: ended", spec.name);
                self.end_standby(sb);
                return None;
            }
            None => {
                let sb = self.standbys.ready.remove(spec.name.as_str())?;
                if !alike(&sb.spec, spec) || !sb.held.parked() || sb.held.err() != 0 {
                    self.end_standby(sb);
                    return None;
                }
                if let Err(e) = send_word(&sb.sock) {
                    log::debug!(
                        "procsup: successor of {} (pid {}) gone: {e}; spawning anew",
                        spec.name,
                        sb.launched.pid
                    );
                    self.end_standby(sb);
                    return None;
                }
                sb
            }
        };
        let Standby { launched, held, sock, .. } = sb;
        let name = spec.name.as_str().into();
        self.standbys.going.push(Going { name, pid: launched.pid, sock: Some(sock), held, ended: None });
        Some(launched)
    }

    /// A watched pidfd fired for `pid`, which is no child: a successor
    /// that died while held ready is ended (reaped, its cgroup retired). It
    /// is not made again until the supervisor's next word: one whose step
    /// fails would otherwise be made and fail on every poll.
    pub(super) fn standby_died(&mut self, pid: Pid) {
        if let Some(sb) = self.standbys.early.values_mut().find(|s| s.launched.pid == pid) {
            // Let go early and ended before its spawn: the spawn claims it
            // (and reaps it as its child). Out of the epoll set meanwhile,
            // where its pidfd would stay ready; the claim watches it again.
            if let Some(fd) = sb.launched.pidfd.as_ref().filter(|_| sb.launched.watched) {
                if let Some(r) = &self.readiness {
                    r.unwatch(fd.as_fd());
                }
            }
            sb.launched.watched = false;
            return;
        }
        let Some(name) = self.standbys.ready.iter().find(|(_, s)| s.launched.pid == pid).map(|(n, _)| n.clone()) else {
            return;
        };
        let sb = self.standbys.ready.remove(&name).expect("just found");
        log::debug!("procsup: the successor held ready for {name} (pid {pid}) died (errno {})", sb.held.err());
        self.end_standby(sb);
    }

    /// Ends a successor not let go: SIGKILL by its pidfd, then reaped by
    /// `look_at_going`, which retires its cgroup.
    fn end_standby(&mut self, sb: Standby) {
        let Standby { spec, mut launched, held, sock } = sb;
        launched.strip();
        if let Some(fd) = &launched.pidfd {
            // Out of the epoll set first: a dead one's pidfd would keep it
            // ready (reaped by looking, `look_at_going`).
            if launched.watched {
                self.unwatch(fd);
            }
            let _ = wait::pidfd_send_signal(fd.as_raw_fd(), Signal::SIGKILL);
        }
        drop(sock);
        let (name, pid) = (spec.name.as_str().into(), launched.pid);
        self.standbys.going.push(Going { name, pid, sock: None, held, ended: Some(launched) });
    }

    /// Drops what no successor uses any more: the memory of one that has
    /// exec'd (its end of the socket closed) and ended ones once reaped.
    fn look_at_going(&mut self) {
        let mut i = 0;
        while i < self.standbys.going.len() {
            let g = &mut self.standbys.going[i];
            // Done, and whether the child is known to be off its memory
            // (exec'd or dead, or reaped), not only gone from sight.
            let (done, off) = match (&g.sock, g.ended.as_ref().and_then(|e| e.pidfd.as_ref())) {
                (Some(sock), _) => (socket_closed(sock), true),
                (None, Some(fd)) => (waitid_pidfd(fd.as_raw_fd()).is_some(), true),
                (None, None) => (true, false),
            };
            if !done {
                i += 1;
                continue;
            }
            let mut g = self.standbys.going.swap_remove(i);
            let errno = g.held.err();
            if g.ended.is_none() && errno != 0 {
                log::warn!(
                    "procsup: {} (pid {}): its exec failed after the spawn: {}; it exits 127",
                    g.name,
                    g.pid,
                    io::Error::from_raw_os_error(errno)
                );
            }
            if let Some(cg) = g.ended.as_mut().and_then(Launched::take_cgroup) {
                self.cgroups.retire(&g.name, cg);
            }
            if off {
                self.recycle(g.held);
            } else {
                // Never so (a successor always has a pidfd, `want_standby`):
                // its memory is left, not handed to the next.
                std::mem::forget(g.held);
            }
        }
    }

    /// The memory a successor ran on, once it is done with it: its stack
    /// is kept for the next (`Spawner::keep_spare`), the rest dropped.
    fn recycle(&mut self, held: Held) {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        self.spawner.keep_spare(held.into_stack());
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        match held {}
    }

    /// Ends every successor held ready (closing their fds but for the
    /// pidfds that reap them) and wants none until the supervisor's next
    /// word: a spawn ran out of fds. Whether there was any.
    pub(super) fn end_standbys_for_room(&mut self) -> bool {
        self.standbys.wanted.clear();
        let names: Vec<Box<str>> = self.standbys.ready.keys().cloned().collect();
        for name in &names {
            let sb = self.standbys.ready.remove(name).expect("just listed");
            self.end_standby(sb);
        }
        !names.is_empty()
    }

    /// Ends every successor and waits for each (`Drop`): SIGKILL cannot be
    /// ignored.
    pub(super) fn end_standbys(&mut self) {
        let ready: Vec<Box<str>> = self.standbys.ready.keys().cloned().collect();
        for name in ready {
            let sb = self.standbys.ready.remove(&name).expect("just listed");
            self.end_standby(sb);
        }
        for (_, sb) in std::mem::take(&mut self.standbys.early) {
            self.end_standby(sb);
        }
        for g in std::mem::take(&mut self.standbys.going) {
            match (g.ended, g.sock) {
                (Some(mut ended), _) => {
                    if let Some(fd) = &ended.pidfd {
                        wait::reap_blocking(fd.as_raw_fd());
                    }
                    if let Some(cg) = ended.take_cgroup() {
                        cg.wait_empty(200);
                        cg.remove();
                    }
                    drop(g.held);
                }
                // Let go and now a child like any other: `Drop` reaped it
                // before this; its memory is unused unless that failed.
                (None, Some(sock)) if !socket_closed(&sock) => std::mem::forget(g.held),
                _ => drop(g.held),
            }
        }
    }
}

/// The word that lets a parked successor exec: one byte, never blocking,
/// and no SIGPIPE where its end is gone (send(2) `MSG_NOSIGNAL`: `EPIPE`).
fn send_word(sock: &OwnedFd) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    // (No successor is ever held ready elsewhere.)
    #[cfg(not(target_os = "linux"))]
    let flags = libc::MSG_DONTWAIT;
    // SAFETY: send(2) of one byte from a static buffer on our own socket.
    let ret = unsafe { libc::send(sock.as_raw_fd(), b"x".as_ptr().cast(), 1, flags) };
    if ret == 1 {
        Ok(())
    } else if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Err(io::ErrorKind::WriteZero.into())
    }
}

/// Whether the peer's end of `sock` is closed (a non-blocking peek reads
/// end of file, or the socket failed).
fn socket_closed(sock: &OwnedFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: recv(2) of at most one byte into a local, without taking it
    // (`MSG_PEEK`) and without blocking.
    let ret =
        unsafe { libc::recv(sock.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    match ret {
        0 => true,
        1.. => false,
        _ => !matches!(Errno::last(), Errno::EAGAIN | Errno::EINTR),
    }
}

#[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
// A test, not the library: it owns real time and may read clocks and sleep.
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Polls `sys` until `done` (bounded: 10 s), keeping every event.
    fn poll_until(sys: &mut UnixSys, events: &mut Vec<SysEvent>, mut done: impl FnMut(&UnixSys, &[SysEvent]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(sys, events) {
            assert!(Instant::now() < deadline, "not reached in 10 s: {events:?}");
            sys.poll(events);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGKILL to `pid`'s tree, then polls until its exit is reported.
    fn kill_and_reap(sys: &mut UnixSys, events: &mut Vec<SysEvent>, pid: Pid) {
        sys.signal(pid, Signal::SIGKILL).unwrap();
        poll_until(sys, events, |_, ev| exited(ev, pid).is_some());
    }

    /// The state and session of `pid` (`/proc/<pid>/stat`, the fields
    /// after its comm: state, ppid, pgrp, session).
    fn session_and_state(pid: Pid) -> Option<(i32, char)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let mut fields = stat.rsplit_once(") ")?.1.split_whitespace();
        let state = fields.next()?.chars().next()?;
        Some((fields.nth(2)?.parse().ok()?, state))
    }

    /// A successor made, then held (SIGSTOP: a descheduled child on a busy
    /// machine) before its `setsid`: what a restart in a crash loop faster
    /// than its steps lets go. `None` if it got past `setsid` first.
    fn a_successor_stopped_before_its_setsid(sys: &mut UnixSys, spec: &ProcessSpec) -> Option<Pid> {
        make_a_successor_now(sys, spec);
        let pid = sys.standbys.pid_of(&spec.name).unwrap();
        nix::sys::signal::kill(pid, Signal::SIGSTOP).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (sid, state) = session_and_state(pid).unwrap();
            if state == 'T' {
                if sid != pid.as_raw() {
                    return Some(pid);
                }
                break;
            }
            assert!(Instant::now() < deadline, "{pid} never stopped");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Past setsid already: let it park, take it back, try again.
        nix::sys::signal::kill(pid, Signal::SIGCONT).unwrap();
        sys.forget_respawn(&spec.name);
        let mut events = Vec::new();
        poll_until(sys, &mut events, |s, _| s.standbys.going.is_empty());
        None
    }

    /// A successor still on its steps is never let go: before its `setsid`
    /// the restart's `signal` (killpg of its pid, the process-group
    /// containment) would answer ESRCH and the child run on: a stop's
    /// SIGTERM lost (the supervisor counts ESRCH as delivered), `Drop`'s
    /// SIGKILL lost before a blocking waitpid. (A review's finding against
    /// a change that let such successors go.)
    #[test]
    fn a_successor_let_go_before_its_setsid_can_be_signalled() {
        let mut sys = UnixSys::new().standby(true).without_cgroups();
        let spec = ProcessSpec::new("sb", "sleep").arg("30");
        let first = sys.spawn(&spec).unwrap();
        let mut held = None;
        for _ in 0..50 {
            if let Some(pid) = a_successor_stopped_before_its_setsid(&mut sys, &spec) {
                held = Some(pid);
                break;
            }
        }
        // Its steps before `setsid` (64 signal dispositions) take far longer
        // than the host's kill right after the clone: nearly always caught.
        let held = held.expect("every successor got past setsid before its SIGSTOP, 50 times: nothing tested");
        // (Before 68387e0 an unparked successor was ended: a spawn anew.)
        let second = sys.spawn(&spec).unwrap();
        eprintln!("the restart is the successor: {}", second == held);
        assert_eq!(sys.containment(second), Containment::ProcessGroup);
        // Go on, as a descheduled child would: it does setsid and execs.
        // The stop comes first (its SIGKILL, through the containment).
        let signalled = sys.signal(second, Signal::SIGKILL);
        let _ = nix::sys::signal::kill(second, Signal::SIGCONT);
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while comm(second).as_deref() != Some("sleep") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let after = comm(second);
        // Cleanup before the verdict.
        let _ = nix::sys::signal::kill(second, Signal::SIGKILL);
        sys.signal(first, Signal::SIGKILL).unwrap();
        sys.forget_respawn("sb");
        poll_until(&mut sys, &mut events, |s, ev| {
            exited(ev, first).is_some() && exited(ev, second).is_some() && s.standbys.going.is_empty()
        });
        assert!(
            signalled.is_ok(),
            "signal of the restart, let go before its setsid: {signalled:?}; it ran on as {after:?}"
        );
    }

    /// A `UnixSys` dropped right after a restart ends that child: its
    /// successor was in its own group when let go, so `Drop`'s SIGKILL
    /// (killpg) reaches it and the blocking waitpid returns (were it let go
    /// before its `setsid`, it would wait for `sleep 30`).
    #[test]
    fn a_drop_right_after_an_unparked_restart_kills_it() {
        let mut sys = UnixSys::new().standby(true).without_cgroups();
        let spec = ProcessSpec::new("sb", "sleep").arg("30");
        let _first = sys.spawn(&spec).unwrap();
        make_a_successor_now(&mut sys, &spec);
        let second = sys.spawn(&spec).unwrap();
        // A watchdog ends the restart after 10 s should Drop not have.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            let timed_out = rx.recv_timeout(Duration::from_secs(10)).is_err();
            let running = comm(second);
            if timed_out {
                let _ = nix::sys::signal::kill(second, Signal::SIGKILL);
            }
            (timed_out, running)
        });
        drop(sys);
        let _ = tx.send(());
        let (timed_out, running) = watchdog.join().unwrap();
        let dropped = !timed_out;
        assert!(dropped, "Drop still waiting after 10 s for the restart, which runs on as {running:?}");
    }

    /// A restart is recorded (process-group containment: at the spawn) with
    /// its own session, not the host's (as it would be let go before its
    /// `setsid`): after a host crash the next run's `orphan_members` finds
    /// its tree by that session.
    #[test]
    fn an_unparked_restart_is_recorded_with_its_own_session() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let mut sys = UnixSys::new().standby(true).without_cgroups().state_dir(tmp.path()).unwrap();
        let spec = ProcessSpec::new("sb", "sleep").arg("30");
        let first = sys.spawn(&spec).unwrap();
        make_a_successor_now(&mut sys, &spec);
        let second = sys.spawn(&spec).unwrap();
        let record = std::fs::read_to_string(tmp.path().join(format!("sb.{second}"))).unwrap_or_default();
        let mut events = Vec::new();
        for pid in [first, second] {
            sys.signal(pid, Signal::SIGKILL).unwrap_or_else(|_| nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap());
        }
        poll_until(&mut sys, &mut events, |_, ev| exited(ev, first).is_some() && exited(ev, second).is_some());
        assert!(
            record.lines().any(|l| l == format!("sid {second}")),
            "pid {second}, host session {}: {record}",
            nix::unistd::getsid(None).unwrap()
        );
    }

    /// After a `cgroup.kill` above the children's cgroups, Linux 6.x kills
    /// a successor cloned into its cgroup at birth (before its first
    /// instruction). It never parks, so it is never let go (clone.rs:
    /// "whether it was killed at birth shows when the host gives the word,
    /// as it never parks"): the restart is spawned anew, not a child that
    /// never ran whose SIGKILL would be reported as the restart's exit.
    #[test]
    fn a_successor_killed_at_birth_is_not_the_restart() {
        let Some(scratch) = super::super::cgroup::ScratchCgroup::new("sb-birth") else { return };
        let parent = scratch.0.clone();
        let mut sys = UnixSys::new().standby(true).cgroup_parent(&parent).unwrap();
        let spec = ProcessSpec::new("w", "sleep").arg("30");
        let first = sys.spawn(&spec).unwrap();
        let mut events = Vec::new();
        // The directory above is killed from outside (the first with it).
        std::fs::write(parent.join("cgroup.kill"), "1").unwrap();
        poll_until(&mut sys, &mut events, |_, ev| exited(ev, first).is_some());
        let mut restarts = Vec::new();
        let mut dead = 0;
        for _ in 0..10 {
            make_a_successor_now(&mut sys, &spec);
            let pid = sys.spawn(&spec).unwrap();
            restarts.push(pid);
            // Lives and execs, or dies.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                sys.poll(&mut events);
                if let Some(exit) = exited(&events, pid) {
                    eprintln!("restart {pid}: {exit:?}");
                    dead += 1;
                    break;
                }
                if comm(pid).as_deref() == Some("sleep") {
                    break;
                }
                assert!(Instant::now() < deadline, "{pid} neither ran nor died");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        sys.forget_respawn("w");
        for &pid in &restarts {
            let _ = sys.signal(pid, Signal::SIGKILL);
        }
        poll_until(&mut sys, &mut events, |s, ev| {
            restarts.iter().all(|&p| exited(ev, p).is_some()) && s.standbys.going.is_empty()
        });
        drop(sys);
        assert_eq!(dead, 0, "{dead} of {} restarts were successors killed at birth", restarts.len());
    }

    /// Expects `spec` again and makes its successor here and now, not at a
    /// later poll: a spawn that follows at once finds it still on its steps.
    fn make_a_successor_now(sys: &mut UnixSys, spec: &ProcessSpec) {
        sys.expect_respawn(spec, None);
        let wanted = sys.standbys.wanted.remove(spec.name.as_str()).unwrap();
        sys.make_standby(wanted.spec).unwrap();
    }

    /// Spawns `spec` and polls until its successor is parked; the child.
    fn spawn_with_a_parked_successor(sys: &mut UnixSys, spec: &ProcessSpec, events: &mut Vec<SysEvent>) -> Pid {
        let first = sys.spawn(spec).unwrap();
        park_a_successor(sys, spec, events);
        first
    }

    /// Expects `spec` again and polls until its successor is parked.
    fn park_a_successor(sys: &mut UnixSys, spec: &ProcessSpec, events: &mut Vec<SysEvent>) {
        sys.expect_respawn(spec, None);
        let name = spec.name.as_str();
        poll_until(sys, events, |s, _| s.standbys.ready.get(name).is_some_and(|r| r.held.parked()));
    }

    fn exited(events: &[SysEvent], pid: Pid) -> Option<Exit> {
        events.iter().find_map(|e| match e {
            SysEvent::Exited { pid: p, exit } if *p == pid => Some(*exit),
            _ => None,
        })
    }

    /// The comm of `pid` (its name in `ps`), or `None` once it is gone or
    /// a zombie.
    fn comm(pid: Pid) -> Option<String> {
        if session_and_state(pid)?.1 == 'Z' {
            return None;
        }
        Some(std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim().to_owned())
    }

    /// A child whose predecessor ran briefly has its successor made at the
    /// next poll ([`STANDBY_SOON`]), not [`STANDBY_DELAY`] on, and one up
    /// longer (5 ms) after the delay; so are the records waiting
    /// beside it (a host record on the cgroup path puts a new child's off),
    /// whose own, later delay must not put the successor off.
    #[test]
    fn a_child_after_a_brief_run_gets_its_successor_sooner() {
        assert_eq!(STANDBY_SOON, Duration::ZERO, "at the next poll");
        let brief = Some(CLOSE_SPAWNS - Duration::from_nanos(1));
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let mut sys = UnixSys::new().standby(true).state_dir(tmp.path()).unwrap();
        let spec = ProcessSpec::new("sb", "sleep").arg("30");
        sys.spawn(&spec).unwrap();
        if !sys.spawner.parks() {
            eprintln!("no clone3 here: no successors to test");
            return;
        }
        // A child up 5 ms (the bench's steady one) is not brief: its
        // successor made at once shares the CPUs with its start, and 1 ms
        // on is well within its run.
        for long in [None, Some(CLOSE_SPAWNS), Some(Duration::from_millis(5))] {
            sys.expect_respawn(&spec, long);
            assert_eq!(sys.wake_after(), Some(STANDBY_DELAY), "after {long:?}");
        }
        sys.expect_respawn(&spec, brief);
        assert_eq!(sys.wake_after(), Some(STANDBY_SOON), "soon, records waiting or not");
        let mut events = Vec::new();
        poll_until(&mut sys, &mut events, |s, _| s.standbys.ready_count() == 1);
        // One name wanted soon among four that are not: made first (in a
        // map's order, a one in five chance).
        let lates: Vec<ProcessSpec> = (0..4).map(|i| ProcessSpec::new(format!("late{i}"), "sleep").arg("30")).collect();
        for late in &lates {
            sys.spawn(late).unwrap();
            sys.expect_respawn(late, None);
        }
        let other = ProcessSpec::new("other", "sleep").arg("30");
        sys.spawn(&other).unwrap();
        sys.expect_respawn(&other, brief);
        assert_eq!(sys.wake_after(), Some(STANDBY_SOON));
        sys.poll(&mut events);
        assert!(sys.standbys.pid_of("other").is_some(), "the soon one first");
        assert!(lates.iter().all(|l| sys.standbys.pid_of(l.name.as_str()).is_none()));
        assert_eq!(sys.standbys.poll_in(), Some(STANDBY_DELAY), "the others at the usual delay");
    }

    /// Records waiting (a gone child's removal, on either path) do not put
    /// a soon successor off to their 1 ms: the next poll comes at once and
    /// does both.
    #[test]
    fn records_waiting_do_not_put_off_a_soon_successor() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let mut sys = UnixSys::new().standby(true).without_cgroups().state_dir(tmp.path()).unwrap();
        let spec = ProcessSpec::new("sb", "sleep").arg("30");
        sys.spawn(&spec).unwrap();
        if !sys.spawner.parks() {
            eprintln!("no clone3 here: no successors to test");
            return;
        }
        assert_eq!(sys.wake_after(), None, "nothing waits yet");
        sys.records.note_gone("gone".into(), Pid::from_raw(i32::MAX));
        assert_eq!(sys.wake_after(), Some(super::super::records::RECORD_DELAY));
        sys.expect_respawn(&spec, Some(Duration::from_millis(1)));
        assert_eq!(sys.wake_after(), Some(STANDBY_SOON), "the records' 1 ms put the soon successor off");
        sys.expect_respawn(&spec, Some(CLOSE_SPAWNS));
        assert_eq!(sys.wake_after(), Some(STANDBY_DELAY));
        sys.expect_respawn(&spec, Some(Duration::ZERO));
        let mut events = Vec::new();
        sys.poll(&mut events);
        assert!(!sys.records.wants_a_poll(), "the record's removal rides the successor's poll");
        assert!(sys.standbys.pid_of("sb").is_some());
    }

    /// A parked successor until its restart, then that restart itself:
    /// the spawn returns the successor's pid, which then runs the program,
    /// in a session of its own and (where cgroups are writable) a cgroup
    /// not its predecessor's. Nothing is left behind.
    #[test]
    fn a_restart_is_the_successor_held_ready() {
        for cgroups in [true, false] {
            let mut sys = UnixSys::new().standby(true);
            if !cgroups {
                sys = sys.without_cgroups();
            }
            let spec = ProcessSpec::new("sb", "sleep").arg("30");
            let first = sys.spawn(&spec).unwrap();
            sys.expect_respawn(&spec, None);
            let mut events = Vec::new();
            assert_eq!(sys.wake_after(), Some(STANDBY_DELAY), "a successor to make: polled soon");
            poll_until(&mut sys, &mut events, |s, _| s.standbys.ready_count() == 1);
            let successor = sys.standbys.pid_of("sb").unwrap();
            assert_ne!(successor, first);
            poll_until(&mut sys, &mut events, |s, _| s.standbys.ready["sb"].held.parked());
            assert_eq!(comm(successor).as_deref(), Some("procsup-standby"));
            // It holds stdin, stdout, stderr and its socket: none of the
            // host's other fds (a socket the host closes stays closed).
            let fds: Vec<String> = std::fs::read_dir(format!("/proc/{successor}/fd"))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(fds.len(), 4, "{fds:?}");
            assert_eq!(sys.child_count(), 1, "a successor is no child of the host's yet");
            nix::sys::signal::kill(first, Signal::SIGKILL).unwrap();
            poll_until(&mut sys, &mut events, |_, ev| exited(ev, first).is_some());
            let second = sys.spawn(&spec).unwrap();
            assert_eq!(second, successor, "the restart is the successor");
            assert_eq!(sys.standbys.ready_count(), 0);
            let deadline = Instant::now() + Duration::from_secs(10);
            while comm(second).as_deref() != Some("sleep") {
                assert!(Instant::now() < deadline, "never exec'd: {:?}", comm(second));
                std::thread::sleep(Duration::from_millis(2));
            }
            assert_eq!(nix::unistd::getsid(Some(second)).unwrap(), second, "a session of its own");
            if let (true, Some(root)) = (cgroups, sys.cgroup_dir().map(ToOwned::to_owned)) {
                let place = std::fs::read_to_string(format!("/proc/{second}/cgroup")).unwrap();
                assert!(place.contains(root.file_name().unwrap().to_str().unwrap()), "{place}");
                assert_eq!(sys.containment(second), Containment::Cgroup);
            } else {
                assert_eq!(sys.containment(second), Containment::ProcessGroup);
            }
            // Its memory goes once it has exec'd.
            poll_until(&mut sys, &mut events, |s, _| s.standbys.going.is_empty());
            // Expected again: a new successor; taken back: it is ended and
            // reaped, not left a zombie.
            sys.expect_respawn(&spec, None);
            poll_until(&mut sys, &mut events, |s, _| s.standbys.ready_count() == 1);
            let third = sys.standbys.pid_of("sb").unwrap();
            sys.forget_respawn("sb");
            assert_eq!(sys.standbys.ready_count(), 0);
            poll_until(&mut sys, &mut events, |s, _| s.standbys.going.is_empty());
            assert!(std::fs::metadata(format!("/proc/{third}")).is_err(), "{third} not reaped");
            kill_and_reap(&mut sys, &mut events, second);
            let root = sys.cgroup_dir().map(ToOwned::to_owned);
            drop(sys);
            if let Some(root) = root {
                assert!(!root.exists(), "{} left behind", root.display());
            }
        }
    }

    /// A successor done with its stack (exec'd, or ended and reaped) hands
    /// it to the next: no mapping made or unmapped on a restart's way,
    /// each of which would interrupt every CPU running in the host's
    /// memory. At most `SPARE_STACKS` are kept.
    #[test]
    fn a_successor_runs_on_the_stack_of_the_one_before() {
        let mut sys = UnixSys::new().standby(true).without_cgroups();
        let spec = ProcessSpec::new("sb", "sleep").arg("30");
        let mut events = Vec::new();
        let first = spawn_with_a_parked_successor(&mut sys, &spec, &mut events);
        let stack = sys.standbys.ready["sb"].held.stack_base();
        assert_eq!(sys.spawner.spare_stacks().count(), 0);
        kill_and_reap(&mut sys, &mut events, first);
        let second = sys.spawn(&spec).unwrap();
        poll_until(&mut sys, &mut events, |s, _| s.standbys.going.is_empty());
        assert_eq!(sys.spawner.spare_stacks().collect::<Vec<_>>(), [stack], "kept once it exec'd");
        park_a_successor(&mut sys, &spec, &mut events);
        assert_eq!(sys.standbys.ready["sb"].held.stack_base(), stack, "the next runs on it");
        assert_eq!(sys.spawner.spare_stacks().count(), 0);
        // Ended (another spec) and reaped: its stack is kept too.
        let third = sys.spawn(&ProcessSpec::new("sb", "sleep").arg("31")).unwrap();
        poll_until(&mut sys, &mut events, |s, _| s.standbys.going.is_empty());
        assert_eq!(sys.spawner.spare_stacks().collect::<Vec<_>>(), [stack]);
        for _ in 0..6 {
            sys.spawner.keep_spare(super::super::clone::Stack::new().unwrap());
        }
        assert_eq!(sys.spawner.spare_stacks().count(), 4, "no more than SPARE_STACKS");
        for pid in [second, third] {
            kill_and_reap(&mut sys, &mut events, pid);
        }
    }

    /// A successor let go but not yet exec'd (stopped before it read the
    /// word) still runs on its stack: it is not handed on until its exec.
    #[test]
    fn a_stack_is_not_handed_on_while_its_successor_may_run_on_it() {
        let mut sys = UnixSys::new().standby(true).without_cgroups();
        let spec = ProcessSpec::new("sb", "sleep").arg("30");
        let mut events = Vec::new();
        let first = spawn_with_a_parked_successor(&mut sys, &spec, &mut events);
        let successor = sys.standbys.pid_of("sb").unwrap();
        let stack = sys.standbys.ready["sb"].held.stack_base();
        nix::sys::signal::kill(successor, Signal::SIGSTOP).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while session_and_state(successor).map(|(_, st)| st) != Some('T') {
            assert!(Instant::now() < deadline, "{successor} not stopped in 10 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        kill_and_reap(&mut sys, &mut events, first);
        assert_eq!(sys.spawn(&spec).unwrap(), successor, "the restart is the stopped successor");
        for _ in 0..20 {
            sys.poll(&mut events);
            assert_eq!(sys.spawner.spare_stacks().count(), 0, "handed on before its exec");
            std::thread::sleep(Duration::from_millis(2));
        }
        nix::sys::signal::kill(successor, Signal::SIGCONT).unwrap();
        poll_until(&mut sys, &mut events, |s, _| s.standbys.going.is_empty());
        assert_eq!(sys.spawner.spare_stacks().collect::<Vec<_>>(), [stack], "kept once it exec'd");
        kill_and_reap(&mut sys, &mut events, successor);
    }

    /// A spawn with another spec than the successor's ends that successor
    /// (reaped) and spawns anew; so does a successor killed while parked.
    #[test]
    fn a_successor_of_another_spec_or_a_dead_one_is_not_used() {
        let mut sys = UnixSys::new().standby(true).without_cgroups();
        let spec = ProcessSpec::new("sb", "sleep").arg("30");
        let mut events = Vec::new();
        let first = spawn_with_a_parked_successor(&mut sys, &spec, &mut events);
        let held = sys.standbys.pid_of("sb").unwrap();
        let other = ProcessSpec::new("sb", "sleep").arg("31");
        let second = sys.spawn(&other).unwrap();
        assert_ne!(second, held, "another spec got the successor");
        poll_until(&mut sys, &mut events, |s, _| s.standbys.going.is_empty());
        assert!(std::fs::metadata(format!("/proc/{held}")).is_err(), "{held} not reaped");
        // Killed while parked (an operator's kill): the restart spawns anew.
        park_a_successor(&mut sys, &spec, &mut events);
        let held = sys.standbys.pid_of("sb").unwrap();
        nix::sys::signal::kill(held, Signal::SIGKILL).unwrap();
        while comm(held).is_some() {
            std::thread::sleep(Duration::from_millis(2));
        }
        let third = sys.spawn(&spec).unwrap();
        assert_ne!(third, held);
        poll_until(&mut sys, &mut events, |s, _| s.standbys.going.is_empty());
        assert!(std::fs::metadata(format!("/proc/{held}")).is_err(), "{held} not reaped");
        for pid in [first, second, third] {
            sys.signal(pid, Signal::SIGKILL).unwrap_or_else(|e| panic!("{pid} of {first} {second} {third}: {e}"));
            poll_until(&mut sys, &mut events, |_, ev| exited(ev, pid).is_some());
        }
        match std::fs::read_to_string("/proc/thread-self/children") {
            Ok(children) => assert_eq!(children.trim(), "", "left behind"),
            Err(e) => eprintln!("no /proc/thread-self/children here ({e}): not checked"),
        }
    }

    /// The exec happens after the spawn returned: a program gone since the
    /// successor was made is its exit 127 (and a warning with the errno).
    #[test]
    fn an_exec_that_fails_after_the_word_is_exit_127() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("sleeper");
        std::fs::copy("/bin/sleep", &program).unwrap();
        let mut sys = UnixSys::new().standby(true).without_cgroups();
        let spec = ProcessSpec::new("sb", &program).arg("30");
        let mut events = Vec::new();
        // Another test's clone, until its exec, holds a copy of the fd the
        // copy wrote through: the program is busy (ETXTBSY) meanwhile.
        let deadline = Instant::now() + Duration::from_secs(10);
        let first = loop {
            match sys.spawn(&spec) {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                r => break r.unwrap(),
            }
        };
        park_a_successor(&mut sys, &spec, &mut events);
        std::fs::remove_file(&program).unwrap();
        kill_and_reap(&mut sys, &mut events, first);
        let second = sys.spawn(&spec).unwrap();
        poll_until(&mut sys, &mut events, |_, ev| exited(ev, second).is_some());
        assert_eq!(exited(&events, second), Some(Exit::Exited(127)));
    }

    /// A successor that dies while parked (an operator's `kill`, its
    /// parent-death signal when the polling thread ends) is the host's
    /// child and a zombie: it is to be reaped (and made again) on the polls
    /// that follow, not only at the next spawn of its name, which may never
    /// come. (Review finding: today it stays a zombie for as long as its
    /// predecessor runs.)
    #[test]
    fn a_successor_that_dies_while_parked_is_reaped_without_a_spawn() {
        let mut sys = UnixSys::new().standby(true).without_cgroups();
        let spec = ProcessSpec::new("sb", "sleep").arg("30");
        let mut events = Vec::new();
        let first = spawn_with_a_parked_successor(&mut sys, &spec, &mut events);
        let held = sys.standbys.pid_of("sb").unwrap();
        nix::sys::signal::kill(held, Signal::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while comm(held).is_some() {
            assert!(Instant::now() < deadline, "{held} never died");
            std::thread::sleep(Duration::from_millis(2));
        }
        // The host's loop goes on, its child running: 2 s of polls.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut reaped = false;
        while Instant::now() < deadline {
            sys.poll(&mut events);
            if std::fs::metadata(format!("/proc/{held}")).is_err() {
                reaped = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let lingering = std::fs::read_to_string(format!("/proc/{held}/stat")).unwrap_or_default();
        // Cleanup before the verdict: the first child, then the successor.
        kill_and_reap(&mut sys, &mut events, first);
        sys.forget_respawn("sb");
        poll_until(&mut sys, &mut events, |s, _| s.standbys.going.is_empty());
        assert!(reaped, "a successor killed while parked is still the host's zombie after 2 s of polls: {lingering}");
    }

    /// The spec's working directory is a path, looked up at each spawn: a
    /// deploy that swaps what the path names (`current -> release-2`) is
    /// seen by the next restart, as the program path is. The successor
    /// made before the swap did its `chdir` then. (Review finding: the
    /// restart runs the new path's program in the old release's directory.)
    #[test]
    fn a_restart_runs_in_the_directory_its_cwd_names_at_the_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two, current) =
            (dir.path().join("release-1"), dir.path().join("release-2"), dir.path().join("current"));
        std::fs::create_dir(&one).unwrap();
        std::fs::create_dir(&two).unwrap();
        std::os::unix::fs::symlink(&one, &current).unwrap();
        let out = dir.path().join("pwd");
        let script =
            format!("pwd -P > {}.tmp && mv {}.tmp {}; exec sleep 30", out.display(), out.display(), out.display());
        let spec = ProcessSpec::new("sb", "sh").args(["-c", &script]).current_dir(&current);
        let mut sys = UnixSys::new().standby(true).without_cgroups();
        let mut events = Vec::new();
        let first = spawn_with_a_parked_successor(&mut sys, &spec, &mut events);
        // The first child has said where it runs (on a busy machine it may
        // not have yet: its word would then be taken for the restart's).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !out.exists() {
            assert!(Instant::now() < deadline, "the first child never wrote its directory");
            std::thread::sleep(Duration::from_millis(2));
        }
        // The deploy: `current` names release-2 from now on.
        let tmp = dir.path().join("current.new");
        std::os::unix::fs::symlink(&two, &tmp).unwrap();
        std::fs::rename(&tmp, &current).unwrap();
        let _ = std::fs::remove_file(&out);
        kill_and_reap(&mut sys, &mut events, first);
        let second = sys.spawn(&spec).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !out.exists() {
            assert!(Instant::now() < deadline, "the restart never wrote its directory");
            std::thread::sleep(Duration::from_millis(2));
        }
        let seen = std::fs::read_to_string(&out).unwrap();
        sys.forget_respawn("sb");
        sys.signal(second, Signal::SIGKILL).unwrap();
        poll_until(&mut sys, &mut events, |s, ev| exited(ev, second).is_some() && s.standbys.going.is_empty());
        assert_eq!(seen.trim(), two.canonicalize().unwrap().to_str().unwrap(), "the restart ran in the old release");
    }

    /// Every field the spawn reads tells two specs apart; what it does not
    /// read (the backoff, the start grace) does not.
    #[test]
    fn alike_tells_apart_every_field_the_spawn_reads() {
        let base = ProcessSpec::new("sb", "sleep").arg("30");
        let fd: Arc<OwnedFd> = Arc::new(std::fs::File::open("/dev/null").unwrap().into());
        let with_fd = base.clone().pass_fd(5, fd.clone());
        assert!(alike(&with_fd, &base.clone().pass_fd(5, fd)), "the same fd");
        let other: Arc<OwnedFd> = Arc::new(std::fs::File::open("/dev/null").unwrap().into());
        for (what, spec) in [
            ("program", ProcessSpec::new("sb", "true").arg("30")),
            ("args", base.clone().arg("31")),
            ("env", base.clone().env("A", "1")),
            ("env_clear", base.clone().env_clear()),
            ("cwd", base.clone().current_dir("/tmp")),
            ("stdout", base.clone().stdout(Output::Null)),
            ("umask", base.clone().umask(0o77)),
            ("process_group", base.clone().process_group(false)),
            ("die_with_parent", base.clone().die_with_parent(None)),
            ("rlimit", base.clone().rlimit(crate::Rlimit::Core, 0, 0)),
            ("ready", base.clone().ready(crate::Readiness::Notify)),
            ("ready fd", base.clone().ready(crate::Readiness::Fd(4))),
            ("an fd", base.clone().pass_fd(5, other.clone())),
            ("another fd", with_fd.clone().pass_fd(6, other)),
        ] {
            assert!(!alike(&base, &spec) || what == "another fd" && alike(&with_fd, &spec), "{what}");
            assert!(!alike(&spec, &base), "{what}");
        }
        let later = base.clone().backoff(crate::Backoff::fixed(Duration::from_secs(3))).start_grace(Duration::ZERO);
        assert!(alike(&base, &later));
    }

    /// Specs that never get a successor (see the module doc), and none
    /// without `standby(true)`.
    #[test]
    fn some_specs_never_get_a_successor() {
        let base = ProcessSpec::new("sb", "sleep").arg("30");
        for (why, spec) in [
            ("a uid", base.clone().uid(0)),
            ("a memory limit", base.clone().memory_max(64 << 20)),
            ("an exec error fatal", base.clone().fatal_exec_errors(true)),
            ("no restart", base.clone().restart(crate::RestartPolicy::Never)),
            ("a file appended to", base.clone().stdout(Output::Append("/dev/null".into()))),
        ] {
            assert!(!eligible(&spec), "{why}");
        }
        assert!(eligible(&base));
        let mut off = UnixSys::new().without_cgroups();
        off.expect_respawn(&base, None);
        assert_eq!(off.standbys.poll_in(), None, "made without standby(true)");
    }
    /// Parks a successor of `spec`'s child `first` and arms the early word
    /// for `first`, as the supervisor does before a poll.
    fn armed(sys: &mut UnixSys, spec: &ProcessSpec, events: &mut Vec<SysEvent>) -> (Pid, Pid) {
        let first = spawn_with_a_parked_successor(sys, spec, events);
        sys.respawn_at_once(first, true);
        (first, sys.standbys.pid_of(&spec.name).unwrap())
    }

    /// Waits (bounded, no polls) until `pid` runs `name`.
    fn wait_for_comm(pid: Pid, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while comm(pid).as_deref() != Some(name) {
            assert!(Instant::now() < deadline, "{pid} never ran {name}: {:?}", comm(pid));
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The early word (#22): a death the supervisor restarts at once lets
    /// its successor go in the poll that reaps it, before any spawn; the
    /// spawn that follows returns that successor, contained as a spawn's.
    #[test]
    fn an_armed_death_lets_its_successor_go_in_the_poll_that_reaps_it() {
        for cgroups in [true, false] {
            let mut sys = UnixSys::new().standby(true);
            if !cgroups {
                sys = sys.without_cgroups();
            }
            let spec = ProcessSpec::new("sb", "sleep").arg("30");
            let mut events = Vec::new();
            let (first, successor) = armed(&mut sys, &spec, &mut events);
            nix::sys::signal::kill(first, Signal::SIGKILL).unwrap();
            poll_until(&mut sys, &mut events, |_, ev| exited(ev, first).is_some());
            assert_eq!(sys.standbys.early_pid("sb"), Some(successor), "let go in the poll that reaped {first}");
            // It runs the program with no spawn yet.
            wait_for_comm(successor, "sleep");
            let second = sys.spawn(&spec).unwrap();
            assert_eq!(second, successor, "the spawn claims it");
            assert_eq!(sys.standbys.early_pid("sb"), None);
            let kind =
                if cgroups && sys.cgroup_dir().is_some() { Containment::Cgroup } else { Containment::ProcessGroup };
            assert_eq!(sys.containment(second), kind);
            sys.signal(second, Signal::SIGKILL).unwrap();
            poll_until(&mut sys, &mut events, |s, ev| exited(ev, second).is_some() && s.standbys.going.is_empty());
            assert_eq!(exited(&events, second), Some(Exit::Signaled(9)));
        }
    }

    /// What the early word must not do: let go while the old tree lives,
    /// when the word was taken back, or where a host crash could leave the
    /// running successor unfound (a process group, a state directory, no
    /// parent-death signal). The successor stays parked each time.
    #[test]
    fn no_early_word_while_the_tree_lives_unarmed_or_unfindable() {
        let mut events = Vec::new();
        // A member of the old group outlives its leader.
        let mut sys = UnixSys::new().standby(true).without_cgroups();
        let spec = ProcessSpec::new("sb", "sh").args(["-c", "sleep 30 & wait"]);
        let (first, successor) = armed(&mut sys, &spec, &mut events);
        nix::sys::signal::kill(first, Signal::SIGKILL).unwrap();
        poll_until(&mut sys, &mut events, |_, ev| {
            ev.iter().any(|e| matches!(e, SysEvent::LeaderExited { pid, .. } if *pid == first))
        });
        assert_eq!(sys.standbys.early_pid("sb"), None, "let go while its group lives");
        assert_eq!(sys.standbys.pid_of("sb"), Some(successor));
        sys.signal(first, Signal::SIGKILL).unwrap();
        poll_until(&mut sys, &mut events, |_, ev| {
            ev.iter().any(|e| matches!(e, SysEvent::TreeEmpty { pid } if *pid == first))
        });
        sys.forget_respawn("sb");
        poll_until(&mut sys, &mut events, |s, _| s.standbys.going.is_empty());
        // Taken back.
        let spec = ProcessSpec::new("sb", "sleep").arg("30");
        let (first, successor) = armed(&mut sys, &spec, &mut events);
        sys.respawn_at_once(first, false);
        nix::sys::signal::kill(first, Signal::SIGKILL).unwrap();
        poll_until(&mut sys, &mut events, |_, ev| exited(ev, first).is_some());
        assert_eq!(sys.standbys.early_pid("sb"), None, "let go after the word was taken back");
        assert_eq!(comm(successor).as_deref(), Some("procsup-standby"));
        sys.forget_respawn("sb");
        poll_until(&mut sys, &mut events, |s, _| s.standbys.going.is_empty());
        drop(sys);
        // Unfindable after a crash.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let mut sys = UnixSys::new().standby(true).without_cgroups().state_dir(tmp.path()).unwrap();
        let spec = ProcessSpec::new("sb", "sleep").arg("30").die_with_parent(None);
        let (first, _) = armed(&mut sys, &spec, &mut events);
        nix::sys::signal::kill(first, Signal::SIGKILL).unwrap();
        poll_until(&mut sys, &mut events, |_, ev| exited(ev, first).is_some());
        assert_eq!(sys.standbys.early_pid("sb"), None, "let go with no record to find it by");
        sys.forget_respawn("sb");
        poll_until(&mut sys, &mut events, |s, _| s.standbys.going.is_empty());
    }

    /// A successor let go early and then not claimed (a spawn of another
    /// spec, or the wish taken back: a host's stop came between) is ended
    /// and reaped, never left running.
    #[test]
    fn an_unclaimed_early_successor_is_ended_and_reaped() {
        let mut sys = UnixSys::new().standby(true).without_cgroups();
        let spec = ProcessSpec::new("sb", "sleep").arg("30");
        let mut events = Vec::new();
        for other_spec in [true, false] {
            let (first, early) = armed(&mut sys, &spec, &mut events);
            nix::sys::signal::kill(first, Signal::SIGKILL).unwrap();
            poll_until(&mut sys, &mut events, |_, ev| exited(ev, first).is_some());
            assert_eq!(sys.standbys.early_pid("sb"), Some(early));
            let mut spawned = None;
            if other_spec {
                let pid = sys.spawn(&ProcessSpec::new("sb", "sleep").arg("31")).unwrap();
                assert_ne!(pid, early);
                spawned = Some(pid);
            } else {
                sys.forget_respawn("sb");
            }
            assert_eq!(sys.standbys.early_pid("sb"), None);
            poll_until(&mut sys, &mut events, |s, _| s.standbys.going.is_empty());
            assert!(std::fs::metadata(format!("/proc/{early}")).is_err(), "{early} not reaped");
            if let Some(pid) = spawned {
                kill_and_reap(&mut sys, &mut events, pid);
            }
        }
    }

    /// A successor let go early that dies before its spawn (a crash loop)
    /// is reaped by that spawn as its child, with its own exit status, and
    /// does not keep the epoll fd ready meanwhile.
    #[test]
    fn an_early_successor_that_dies_before_its_spawn_is_that_spawn_s_exit() {
        let mut sys = UnixSys::new().standby(true).without_cgroups();
        let spec = ProcessSpec::new("sb", "sh").args(["-c", "exit 3"]);
        let mut events = Vec::new();
        let first = sys.spawn(&spec).unwrap();
        poll_until(&mut sys, &mut events, |_, ev| exited(ev, first).is_some());
        // A successor parked for the next child, which is then armed.
        let second = sys.spawn(&ProcessSpec::new("sb", "sh").args(["-c", "exit 3"])).unwrap();
        park_a_successor(&mut sys, &spec, &mut events);
        let early = sys.standbys.pid_of("sb").unwrap();
        sys.respawn_at_once(second, true);
        poll_until(&mut sys, &mut events, |s, ev| exited(ev, second).is_some() && s.standbys.early_pid("sb").is_some());
        // It exits (a zombie): the polls that follow leave it to the spawn.
        let deadline = Instant::now() + Duration::from_secs(10);
        while session_and_state(early).is_some_and(|(_, st)| st != 'Z') {
            assert!(Instant::now() < deadline, "{early} never exited");
            std::thread::sleep(Duration::from_millis(2));
        }
        sys.poll(&mut events);
        assert_eq!(sys.standbys.early_pid("sb"), Some(early));
        let fd = sys.readiness.as_ref().map(|r| r.fd().as_raw_fd()).unwrap();
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: poll(2) on one pollfd of our own, without waiting.
        let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
        assert_eq!(ready, 0, "the epoll fd is ready with nothing to report but the early successor's end");
        let third = sys.spawn(&spec).unwrap();
        assert_eq!(third, early);
        poll_until(&mut sys, &mut events, |s, ev| exited(ev, third).is_some() && s.standbys.going.is_empty());
        assert_eq!(exited(&events, third), Some(Exit::Exited(3)));
        sys.forget_respawn("sb");
        poll_until(&mut sys, &mut events, |s, _| s.standbys.going.is_empty());
    }
}
