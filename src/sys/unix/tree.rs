//! A child's whole tree: which mechanism holds it, signalling it, and
//! learning that it is empty after its leader was reaped.
//!
//! - [`Contain::Cgroup`]: see [`super::cgroup`]. Empty is `populated 0`,
//!   raised as `EPOLLPRI` on `cgroup.events`.
//! - [`Contain::Group`]: the process group the child leads. After the
//!   leader was reaped, the members are found in `/proc` (zombies are
//!   gone: PID 1 may never reap them) and a pidfd of each is watched; when
//!   the last fires, `/proc` is looked at again (a member may have forked
//!   meanwhile) until nothing is left. Without pidfds every `poll` looks.
//!
//! The one residual risk of the group path, documented in RELIABILITY.md:
//! the group is signalled by its id after its leader was reaped. The kernel
//! does not hand out a pid that is still in use as a live process's
//! process group or session id (the `struct pid` stays attached to every
//! member), so while any member lives the id cannot name another group.
//! Only in the instant between our look at `/proc` (a member lives) and the
//! `killpg` could the last member exit, the id be freed, recycled as a new
//! process's pid and that process make itself a group leader — a pid
//! wrap-around inside a few system calls.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::cgroup::{ChildCgroup, MemoryCheck};
use super::readiness::{token, Readiness};
use super::wait::{pidfd_open, pidfd_send_signal};
use super::UnixSys;
use crate::state::{Containment, Exit};
use crate::sys::SysEvent;

/// The token slot of a cgroup's `cgroup.events` (keyed by the leader).
pub(super) const CGROUP_SLOT: u64 = 4;
/// The token slot of a group member's pidfd (keyed by the member).
pub(super) const MEMBER_SLOT: u64 = 5;
/// Marks the epoll token of a cgroup's `memory.events`
/// (`token(leader, 0) | MEMORY_TAG`), watched where the spec
/// restarts the child above a memory threshold: clear of every pid and
/// slot bit, and of `NOTIFY_TAG`.
pub(super) const MEMORY_TAG: u64 = 1 << 41;

/// What holds a child's tree.
#[derive(Debug)]
pub(super) enum Contain {
    /// Only the child (no own group, or `KillMode::Process`).
    None,
    /// The process group it leads (its pgid is its pid).
    Group,
    /// Its own cgroup.
    Cgroup(ChildCgroup),
}

impl Contain {
    pub(super) fn kind(&self) -> Containment {
        match self {
            Contain::None => Containment::None,
            Contain::Group => Containment::ProcessGroup,
            Contain::Cgroup(_) => Containment::Cgroup,
        }
    }
}

/// The live (not zombie) members of process group `pgid`.
#[cfg(target_os = "linux")]
pub(super) fn group_members(pgid: Pid) -> Vec<Pid> {
    // Cheap first: no process at all in the group.
    if nix::sys::signal::killpg(pgid, None) == Err(Errno::ESRCH) {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .map(Pid::from_raw)
        .filter(|&pid| live_in_group(pid, pgid))
        .collect()
}

/// Whether `pid` is a live (not zombie) process of group `pgid`.
#[cfg(target_os = "linux")]
fn live_in_group(pid: Pid, pgid: Pid) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // Fields after the command name (which may hold anything) start after
    // the last ')': state, ppid, pgrp.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return false };
    let mut f = after.split_whitespace();
    let (state, pgrp) = (f.next(), f.nth(1));
    state != Some("Z") && pgrp.and_then(|g| g.parse::<i32>().ok()) == Some(pgid.as_raw())
}

#[cfg(not(target_os = "linux"))]
fn live_in_group(_: Pid, _: Pid) -> bool {
    true
}

/// Elsewhere: whether anything (a zombie included) is in the group.
#[cfg(not(target_os = "linux"))]
pub(super) fn group_members(pgid: Pid) -> Vec<Pid> {
    match nix::sys::signal::killpg(pgid, None) {
        Err(Errno::ESRCH) => Vec::new(),
        _ => vec![pgid],
    }
}

/// Process groups whose leader was reaped while members live.
#[derive(Debug, Default)]
pub(super) struct GroupDrains {
    /// Reaped group leaders whose group is not empty yet.
    leaders: HashSet<Pid>,
    /// Watched members of those groups: member -> (leader, pidfd).
    members: HashMap<Pid, (Pid, OwnedFd)>,
}

impl GroupDrains {
    /// Watches the live members of the group `leader` led, each through a
    /// pidfd (where `pidfds` work; else every poll looks). Returns true
    /// when none is left.
    fn watch(&mut self, leader: Pid, pidfds: bool, readiness: Option<&Readiness>) -> bool {
        let members = group_members(leader);
        if members.is_empty() {
            return true;
        }
        if !pidfds {
            return false; // looked at again on every poll
        }
        for m in members {
            if self.members.contains_key(&m) {
                continue;
            }
            match pidfd_open(m) {
                // Still in the group after the open: the pidfd is that
                // member, not a process that took its pid since.
                Ok(fd) if !live_in_group(m, leader) => drop(fd),
                Ok(fd) => {
                    if let Err(e) = readiness.map_or(Ok(()), |r| r.watch(fd.as_fd(), token(m, MEMBER_SLOT))) {
                        log::warn!("procsup: epoll add member pidfd: {e}");
                    }
                    self.members.insert(m, (leader, fd));
                }
                // It died between the look and the open: nothing to watch.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => log::warn!("procsup: pidfd_open({m}): {e}"),
            }
        }
        false
    }

    /// A watched member exited: its leader, when it was the last one
    /// watched for it (then the group is looked at again).
    fn member_exited(&mut self, member: Pid, readiness: Option<&Readiness>) -> Option<Pid> {
        let (leader, fd) = self.members.remove(&member)?;
        if let Some(r) = readiness {
            r.unwatch(fd.as_fd());
        }
        drop(fd);
        (!self.members.values().any(|(l, _)| *l == leader)).then_some(leader)
    }

    /// Draining leaders no member pidfd watches.
    fn unwatched(&self) -> impl Iterator<Item = Pid> + '_ {
        self.leaders.iter().copied().filter(|&p| !self.members.values().any(|(l, _)| *l == p))
    }

    /// Drops `leader`'s drain and the watches of its members.
    fn forget(&mut self, leader: Pid, readiness: Option<&Readiness>) {
        self.leaders.remove(&leader);
        let stale: Vec<Pid> = self.members.iter().filter(|(_, (l, _))| *l == leader).map(|(&m, _)| m).collect();
        for m in stale {
            if let (Some((_, fd)), Some(r)) = (self.members.remove(&m), readiness) {
                r.unwatch(fd.as_fd());
            }
        }
    }
}

impl UnixSys {
    /// The leader `pid` was reaped with `exit` (its pipes are closed and
    /// its pidfd dropped): reports it as gone, or as a draining leader.
    pub(super) fn leader_reaped(&mut self, pid: Pid, exit: Exit, events: &mut Vec<SysEvent>) {
        let Some(child) = self.children.get_mut(&pid) else { return };
        child.reaped = true;
        if matches!(&child.contain, Contain::Cgroup(cg) if cg.oom_killed()) {
            events.push(SysEvent::OomKilled { pid });
        }
        let lives = match &child.contain {
            Contain::None => false,
            Contain::Cgroup(cg) => cg.populated() && self.watch_cgroup(pid),
            Contain::Group => !self.watch_group(pid),
        };
        if lives {
            if matches!(self.children.get(&pid).map(|c| &c.contain), Some(Contain::Group)) {
                self.drains.leaders.insert(pid);
            }
            events.push(SysEvent::LeaderExited { pid, exit });
        } else {
            self.forget_child(pid);
            events.push(SysEvent::Exited { pid, exit });
        }
    }

    /// Watches `cgroup.events` of the reaped `leader`'s cgroup, which its
    /// tree outlived, for the tree's end. Returns whether the tree still
    /// lives once the watch is on: read again after the add, so an end
    /// between the first read and the add is not missed (a notification
    /// the kernel holds back, at most one per 20 ms per file, comes later).
    fn watch_cgroup(&mut self, leader: Pid) -> bool {
        let Some(Contain::Cgroup(cg)) = self.children.get_mut(&leader).map(|c| &mut c.contain) else { return false };
        let token = token(leader, CGROUP_SLOT);
        let fault = self.faults.cgroup_watch.map(io::Error::from_raw_os_error);
        let added = self.readiness.as_ref().map(|r| fault.map_or_else(|| r.watch_pri(cg.events.as_fd(), token), Err));
        match added {
            Some(Ok(())) => cg.watched = true,
            failed => {
                if let Some(Err(e)) = failed {
                    log::warn!("procsup: epoll add cgroup.events: {e}; looking at it on every poll");
                }
                self.cgroup_polled.insert(leader);
            }
        }
        cg.populated()
    }

    /// Watches the live members of the group `leader` led (`GroupDrains`).
    /// Returns true when none is left.
    fn watch_group(&mut self, leader: Pid) -> bool {
        self.drains.watch(leader, self.pidfd == Some(true), self.readiness.as_ref())
    }

    /// A watched group member exited: when it was the last one watched
    /// for its leader, the group is looked at again.
    pub(super) fn member_exited(&mut self, member: Pid, events: &mut Vec<SysEvent>) {
        if let Some(leader) = self.drains.member_exited(member, self.readiness.as_ref()) {
            self.recheck_group(leader, events);
        }
    }

    /// Reports the tree of a draining group leader empty if it is.
    pub(super) fn recheck_group(&mut self, leader: Pid, events: &mut Vec<SysEvent>) {
        if self.watch_group(leader) {
            self.forget_child(leader);
            events.push(SysEvent::TreeEmpty { pid: leader });
        }
    }

    /// `cgroup.events` of `leader`'s cgroup changed.
    pub(super) fn cgroup_changed(&mut self, leader: Pid, events: &mut Vec<SysEvent>) {
        let Some(child) = self.children.get(&leader) else { return };
        let Contain::Cgroup(cg) = &child.contain else { return };
        // Watched only after the leader's reap (`watch_cgroup`); reading
        // re-arms the notification.
        if !cg.populated() && child.reaped {
            self.forget_child(leader);
            events.push(SysEvent::TreeEmpty { pid: leader });
        }
    }

    /// `memory.events` of `leader`'s cgroup changed: reported when the
    /// tree went above its threshold, and only while the leader lives.
    pub(super) fn memory_changed(&mut self, leader: Pid, events: &mut Vec<SysEvent>) {
        let Some(child) = self.children.get_mut(&leader) else { return };
        let Contain::Cgroup(cg) = &mut child.contain else { return };
        // Read even after the reap: it re-arms the notification.
        match cg.memory_check() {
            MemoryCheck::Above(memory, threshold) if child.exited.is_none() => {
                events.push(SysEvent::MemoryHigh { pid: leader, memory, threshold });
            }
            MemoryCheck::Unreadable(e) => {
                log::warn!(
                    "procsup: reading the memory events of {} (pid {leader}): {e}; no restart above memory",
                    child.name
                );
                // Its fd was closed with the watch, which takes it out of
                // the epoll set.
                self.memory_polled.remove(&leader);
            }
            _ => {}
        }
    }

    /// Whether a draining group has no member pidfd to wake the host.
    pub(super) fn has_unwatched_drains(&self) -> bool {
        self.drains.unwatched().next().is_some()
    }

    /// Draining groups no member pidfd watches (no pidfds, or none could
    /// be opened) are looked at on every poll.
    pub(super) fn recheck_draining_groups(&mut self, events: &mut Vec<SysEvent>) {
        if self.drains.leaders.is_empty() {
            return; // the common case costs nothing
        }
        let draining: Vec<Pid> = self.drains.unwatched().collect();
        for leader in draining {
            self.recheck_group(leader, events);
        }
    }

    /// Drops a child that is gone: its watches, its cgroup, its record.
    pub(super) fn forget_child(&mut self, pid: Pid) {
        let Some(child) = self.children.remove(&pid) else { return };
        if let Some(fd) = &child.pidfd {
            self.unwatch(fd);
        }
        self.drains.forget(pid, self.readiness.as_ref());
        if let Contain::Cgroup(mut cg) = child.contain {
            if cg.watched {
                self.unwatch(&cg.events);
            }
            if let Some(watch) = cg.memory.take() {
                self.unwatch(&watch.fd);
            }
            self.memory_polled.remove(&pid);
            self.cgroup_polled.remove(&pid);
            // Kept for the next child of that name (a restart).
            self.cgroups.retire(&child.name, cg);
        }
        self.records.note_gone(child.name, pid);
    }

    /// Sends `signal` to the tree of the child `pid`, as its containment
    /// says. A reaped leader itself is never signalled.
    pub(super) fn signal_tree(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        let Some(child) = self.children.get(&pid) else {
            return Err(Errno::ESRCH.into());
        };
        match &child.contain {
            Contain::Cgroup(cg) => cg.signal(signal),
            Contain::Group if child.exited.is_some() => {
                // The id is still reserved while a member lives; see the
                // module docs for the one residual risk.
                if group_members(pid).is_empty() {
                    return Err(Errno::ESRCH.into());
                }
                Ok(nix::sys::signal::killpg(pid, signal)?)
            }
            // Not reaped: the leader (alive or a zombie) holds the id.
            Contain::Group => Ok(nix::sys::signal::killpg(pid, signal)?),
            Contain::None if child.exited.is_some() => Err(Errno::ESRCH.into()),
            Contain::None => match &child.pidfd {
                Some(fd) => pidfd_send_signal(fd.as_raw_fd(), signal),
                None => Ok(nix::sys::signal::kill(pid, signal)?),
            },
        }
    }
}
