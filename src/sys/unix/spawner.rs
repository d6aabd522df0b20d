//! Which path makes a child, and what spawning keeps from one child to the
//! next: procsup's own vfork-class clone (`clone.rs`) where it can, std's
//! `Command` (`spawn.rs`) otherwise. The bookkeeping around a spawn (its
//! containment, pidfd, pipes and record) is `launch.rs`'s (the record
//! itself, `records.rs`'s).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::unistd::Pid;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
use super::clone;
use super::{exec, notify, spawn};
use crate::spec::ProcessSpec;

/// A spawned child: its pid, its pidfd when the spawn made one, our read
/// ends of its capture pipes, and whether its cgroup refused
/// `CLONE_INTO_CGROUP` (then it is not reused).
pub(super) type Spawned = (Pid, Option<OwnedFd>, [Option<OwnedFd>; 2], bool);

/// What procsup adds to the spec's environment, the same on every path.
#[derive(Debug)]
pub(super) struct Added<'a> {
    /// The child's notify channel, if it has one.
    pub(super) notify: Option<&'a notify::Notify>,
    /// Variables set on top of the spec's.
    pub(super) env: &'a [(OsString, OsString)],
    /// Variables holding the child's own pid, written in the child.
    pub(super) pid_vars: &'a [&'a str],
}

/// What spawning keeps between children.
#[derive(Debug, Default)]
pub(super) struct Spawner {
    /// How the last spawn was made (a test seam).
    pub(super) last_spawn: Option<&'static str>,
    /// `/dev/null`, opened once for every child's stdin and null outputs.
    null: spawn::DevNull,
    /// What the kernel has for procsup's own spawn, learnt on the way.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(super) clone_support: clone::Support,
    /// The stack its children run on until exec.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    stack: Option<clone::Stack>,
    /// Stacks of successors done with them, for the next ones (at most
    /// [`SPARE_STACKS`]).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    spares: Vec<clone::Stack>,
}

/// How many stacks of successors done with them are kept for the next: a
/// stack unmapped (its touched pages) in memory that successors share
/// with the host has the kernel flush that memory's TLB entries on every
/// CPU running in it (an interrupt to each, waited for), such as a
/// successor just let go, still in its `execve`. Counted in the bench's
/// `--no-cgroups` crash loop (`perf`, `tlb:tlb_flush`): about one such
/// flush per restart before, about one in 200 restarts with spares. A few
/// cover a host whose children restart at about the same time; the rest
/// are unmapped.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
const SPARE_STACKS: usize = 4;

impl Spawner {
    /// Spawns through std's `Command`: the pid, no pidfd, the read ends.
    pub(super) fn command(
        &mut self,
        spec: &ProcessSpec,
        added: &Added<'_>,
        procs: Option<&OwnedFd>,
    ) -> io::Result<Spawned> {
        let (mut cmd, read_ends) = spawn::command(spec, procs.map(AsRawFd::as_raw_fd), &mut self.null)?;
        cmd.envs(added.env.iter().map(|(k, v)| (k, v)));
        if let Some(n) = added.notify {
            n.pass_pipe(&mut cmd);
        }
        if !added.pid_vars.is_empty() || !spec.pre_exec.is_empty() {
            // Last: it replaces std's own exec. With user hooks std forks
            // and calls glibc's `execvp`, which runs a file of no known
            // format through /bin/sh; our own `execve` fails with ENOEXEC,
            // as `posix_spawn` and procsup's own spawn do.
            exec::exec_with_own_pid(&mut cmd, spec.env_clear, added.pid_vars)?;
        }
        self.last_spawn = Some("command");
        let child = cmd.spawn()?;
        drop(cmd); // closes our copies of the pipes' write ends
        let pid = Pid::from_raw(child.id() as i32);
        drop(child); // std's Child neither waits nor kills on drop
        Ok((pid, None, read_ends, false))
    }

    /// Spawns through procsup's own vfork-class clone (`clone.rs`), or
    /// `None` where it cannot: a user `pre_exec` hook (it may not be
    /// vfork-safe), a kernel without it, another system. `pidfd`: whether
    /// to ask the clone for one; `clone3_fault`: the test seam's errno for
    /// every `clone3`.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(super) fn cloned(
        &mut self,
        spec: &ProcessSpec,
        added: &Added<'_>,
        cgroup: Option<(RawFd, RawFd)>,
        pidfd: bool,
        clone3_fault: Option<i32>,
    ) -> Option<io::Result<Spawned>> {
        if !spec.pre_exec.is_empty() || !self.clone_support.usable() {
            return None;
        }
        if self.stack.is_none() {
            match clone::Stack::new() {
                Ok(stack) => self.stack = Some(stack),
                Err(e) => return Some(Err(e)),
            }
        }
        match self.clone_spawn(spec, added, cgroup, pidfd, clone3_fault, None)? {
            Ok((spawned, _)) => Some(Ok(spawned)),
            Err(e) => Some(Err(e)),
        }
    }

    /// Keeps the stack of a successor done with it for the next one, or
    /// unmaps it where [`SPARE_STACKS`] are kept already.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(super) fn keep_spare(&mut self, stack: clone::Stack) {
        if self.spares.len() < SPARE_STACKS {
            self.spares.push(stack);
        }
    }

    /// How many stacks are spare (a test seam).
    #[cfg(all(test, target_os = "linux", target_arch = "x86_64"))]
    pub(super) fn spare_stacks(&self) -> impl Iterator<Item = usize> + '_ {
        self.spares.iter().map(clone::Stack::base)
    }

    /// Whether a successor can be held ready here (clone3 has worked).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(super) fn parks(&self) -> bool {
        self.clone_support.parks()
    }

    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    pub(super) fn parks(&self) -> bool {
        false
    }

    /// A successor held ready (`standby.rs`): cloned with every step done
    /// but the exec, which waits for a byte on `release` (its end of the
    /// host's socket). `None` where only the spawn at once can be had (no
    /// clone3 known to work, a `pre_exec` hook).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(super) fn parked(
        &mut self,
        spec: &ProcessSpec,
        added: &Added<'_>,
        cgroup: Option<(RawFd, RawFd)>,
        release: RawFd,
    ) -> Option<io::Result<(Spawned, clone::Held)>> {
        if !spec.pre_exec.is_empty() || !self.clone_support.parks() {
            return None;
        }
        match self.clone_spawn(spec, added, cgroup, true, None, Some(release))? {
            Ok((spawned, Some(held))) => Some(Ok((spawned, held))),
            Ok((_, None)) => None,
            Err(e) => Some(Err(e)),
        }
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn clone_spawn(
        &mut self,
        spec: &ProcessSpec,
        added: &Added<'_>,
        cgroup: Option<(RawFd, RawFd)>,
        pidfd: bool,
        clone3_fault: Option<i32>,
        park: Option<RawFd>,
    ) -> Option<io::Result<(Spawned, Option<clone::Held>)>> {
        let fds = match spawn::child_fds(spec, &mut self.null) {
            Ok(fds) => fds,
            Err(e) => return Some(Err(e)),
        };
        let mut moves: Vec<(RawFd, RawFd)> = added.notify.and_then(notify::Notify::pipe_move).into_iter().collect();
        moves.extend(spec.fds.moves().map(|(fd, target)| (fd.as_raw_fd(), target)));
        let raw = |fd: &Option<spawn::StdioFd>| fd.as_ref().map(spawn::StdioFd::raw);
        let extras = clone::Extras {
            env: added.env,
            pid_vars: added.pid_vars,
            stdio: [Some(fds.stdin), raw(&fds.stdout), raw(&fds.stderr)],
            moves,
            cgroup,
            pidfd,
        };
        let how = match park {
            Some(fd) => clone::How::Park(fd, self.spares.pop()),
            None => clone::How::Now(self.stack.as_ref()?),
        };
        match clone::spawn(spec, extras, how, &mut self.clone_support, clone3_fault) {
            clone::Outcome::Spawned(s) => {
                self.last_spawn = Some(s.path);
                Some(Ok(((s.pid, s.pidfd, fds.read_ends, s.refused_into), None)))
            }
            clone::Outcome::Parked(s, held) => Some(Ok(((s.pid, s.pidfd, fds.read_ends, false), Some(held)))),
            clone::Outcome::Failed(e, path) => {
                self.last_spawn = Some(path);
                Some(Err(e))
            }
            clone::Outcome::Unsupported => {
                log::debug!("procsup: no vfork-class clone with a pidfd here; spawning with std's Command");
                None
            }
        }
    }

    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    pub(super) fn cloned(
        &mut self,
        _: &ProcessSpec,
        _: &Added<'_>,
        _: Option<(RawFd, RawFd)>,
        _: bool,
        _: Option<i32>,
    ) -> Option<io::Result<Spawned>> {
        None
    }
}
