//! Trees a crashed earlier run left behind: finding, stopping and
//! watching them, never touching a process not provably of that run.
//!
//! A record names its tree by what survives the leader (see
//! [`crate::orphans`]): its cgroup (one this crate made, named after the
//! crashed host process), or its process group and session together with
//! the leader's start time. What is signalled:
//!
//! - a cgroup: every member, SIGKILL through `cgroup.kill`; gone is
//!   `populated 0` (`EPOLLPRI`), then the directory is removed;
//! - a live leader (same start time, pinned by a pidfd): the leader, then
//!   its group while the leader still checks out;
//! - a gone leader: each process of the recorded group AND session that
//!   started no earlier than the leader, checked again through a pidfd
//!   right before its signal; gone when none is left (looked at on every
//!   poll).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::cgroup::ChildCgroup;
use super::readiness::{token, Readiness};
use super::wait::{pidfd_open, pidfd_send_signal};
use super::UnixSys;
use crate::orphans::{self, Discard, OrphanScan};
use crate::sys::SysEvent;

/// The token slot of an orphan leader's pidfd in the epoll set.
pub(super) const ORPHAN_SLOT: u64 = 3;
/// The token slot of an orphan cgroup's `cgroup.events`.
pub(super) const ORPHAN_CGROUP_SLOT: u64 = 6;

/// A tree an earlier run left behind, being stopped.
#[derive(Debug)]
pub(super) struct OrphanEntry {
    name: String,
    pgid: Pid,
    /// `None` for a record written before sessions were recorded.
    sid: Option<i32>,
    start_time: u64,
    /// The leader, while it lives.
    pidfd: Option<OwnedFd>,
    leader_alive: bool,
    cgroup: Option<ChildCgroup>,
}

impl OrphanEntry {
    fn members(&self, pid: Pid) -> Vec<i32> {
        if self.pgid != pid {
            return Vec::new(); // it led no group: nothing to attribute
        }
        orphans::orphan_members(self.pgid.as_raw(), self.sid, self.start_time)
    }
}

/// The trees of a crashed earlier run being stopped, by leader pid.
#[derive(Debug, Default)]
pub(super) struct Orphans {
    trees: HashMap<Pid, OrphanEntry>,
}

impl Orphans {
    fn contains(&self, pid: Pid) -> bool {
        self.trees.contains_key(&pid)
    }

    /// Whether a tree being stopped holds the cgroup `dir`.
    fn claims(&self, dir: &Path) -> bool {
        self.trees.values().any(|o| o.cgroup.as_ref().is_some_and(|c| c.dir == dir))
    }

    /// Sends `signal` to the tree led by `pid`, reaching only processes
    /// that provably belong to it (see the module docs).
    pub(super) fn signal(&self, pid: Pid, signal: Signal) -> io::Result<()> {
        let Some(o) = self.trees.get(&pid) else { return Err(Errno::ESRCH.into()) };
        if let Some(cg) = &o.cgroup {
            return cg.signal(signal);
        }
        let mut delivered = false;
        if o.leader_alive {
            // The leader first, through its pidfd where there is one: that
            // can only reach the recorded process.
            let sent = match &o.pidfd {
                Some(fd) => pidfd_send_signal(fd.as_raw_fd(), signal),
                None if orphans::is_live(pid.as_raw(), o.start_time) => {
                    nix::sys::signal::kill(pid, signal).map_err(io::Error::from)
                }
                None => Err(Errno::ESRCH.into()),
            };
            delivered = sent.is_ok();
            // Then the rest of its group, while its leader is still the
            // recorded process (a live leader's pgid cannot be reused).
            if o.pgid == pid && orphans::is_live(pid.as_raw(), o.start_time) {
                let _ = nix::sys::signal::killpg(pid, signal);
                return Ok(());
            }
        }
        for m in o.members(pid) {
            // Pinned first, then checked: if the member died and its pid was
            // taken since, the check fails or the pidfd signal does.
            let Ok(fd) = pidfd_open(Pid::from_raw(m)) else { continue };
            if orphans::is_member(m, o.pgid.as_raw(), o.sid, o.start_time)
                && pidfd_send_signal(fd.as_raw_fd(), signal).is_ok()
            {
                delivered = true;
            }
        }
        if delivered {
            Ok(())
        } else {
            Err(Errno::ESRCH.into())
        }
    }

    /// The leader of tree `pid` exited: its pidfd leaves the readiness
    /// set. Whether the tree is gone (no member of its group is left).
    fn leader_exited(&mut self, pid: Pid, readiness: Option<&Readiness>) -> bool {
        let Some(o) = self.trees.get_mut(&pid) else { return false };
        o.leader_alive = false;
        if let Some(fd) = o.pidfd.take() {
            if let Some(r) = readiness {
                r.unwatch(fd.as_fd());
            }
        }
        self.trees.get(&pid).is_some_and(|o| o.members(pid).is_empty())
    }

    /// Whether the cgroup of tree `pid` is empty.
    fn cgroup_emptied(&self, pid: Pid) -> bool {
        self.trees.get(&pid).and_then(|o| o.cgroup.as_ref()).is_some_and(|cg| !cg.populated())
    }

    /// The trees that are gone though no fd woke for them (`watched`:
    /// whether there is a readiness set that cgroups wake).
    fn gone_unwoken(&self, watched: bool) -> Vec<Pid> {
        self.trees
            .iter()
            .filter(|(&pid, o)| match &o.cgroup {
                Some(cg) => !watched && !cg.populated(),
                None if o.pidfd.is_some() => false,
                None => {
                    let leader = o.leader_alive && orphans::is_live(pid.as_raw(), o.start_time);
                    !leader && o.members(pid).is_empty()
                }
            })
            .map(|(pid, _)| *pid)
            .collect()
    }
}

impl UnixSys {
    pub(super) fn scan_orphan_trees(&mut self) -> io::Result<Vec<OrphanScan>> {
        let Some(dir) = self.records.dir() else { return Ok(Vec::new()) };
        let (children, known) = (&self.children, &self.orphans);
        let scans = dir.scan(|pid| children.contains_key(&Pid::from_raw(pid)) || known.contains(Pid::from_raw(pid)))?;
        let mut out = Vec::with_capacity(scans.len());
        for scan in scans {
            let OrphanScan::Alive(orphan) = scan else {
                out.push(scan);
                continue;
            };
            let cgroup = match orphan.cgroup.as_deref().map(ChildCgroup::open) {
                Some(Ok(cg)) => Some(cg),
                Some(Err(e)) => {
                    log::warn!("procsup: opening the cgroup of orphan {}: {e}", orphan.name);
                    None
                }
                None => None,
            };
            // A pidfd pins the leader: once its start time checks out after
            // the open, the fd can never refer to another process.
            let mut leader_alive = orphan.leader_alive;
            let pidfd = if leader_alive && self.pidfd != Some(false) { pidfd_open(orphan.pid).ok() } else { None };
            if leader_alive && !orphans::is_live(orphan.pid.as_raw(), orphan.start_time) {
                leader_alive = false;
            }
            let mut entry = OrphanEntry {
                name: orphan.name.clone(),
                pgid: orphan.pgid,
                sid: orphan.sid.map(Pid::as_raw),
                start_time: orphan.start_time,
                pidfd: pidfd.filter(|_| leader_alive),
                leader_alive,
                cgroup,
            };
            let rest = match &entry.cgroup {
                Some(cg) => cg.populated(),
                None => !entry.members(orphan.pid).is_empty(),
            };
            if !leader_alive && !rest {
                self.records.remove(&orphan.name, orphan.pid);
                if let Some(cg) = &entry.cgroup {
                    orphans::remove_cgroup(&cg.dir);
                }
                out.push(OrphanScan::Discarded { name: orphan.name, reason: Discard::Gone });
                continue;
            }
            if let Some(cg) = &entry.cgroup {
                // The cgroup says when the whole tree is gone: no pidfd.
                entry.pidfd = None;
                let token = token(orphan.pid, ORPHAN_CGROUP_SLOT);
                if let Some(Err(e)) = self.readiness.as_ref().map(|r| r.watch_pri(cg.events.as_fd(), token)) {
                    log::warn!("procsup: epoll add orphan cgroup.events: {e}");
                }
            } else if let Some(fd) = &entry.pidfd {
                if let Err(e) = self.watch(fd, token(orphan.pid, ORPHAN_SLOT)) {
                    log::warn!("procsup: epoll add orphan pidfd: {e}");
                }
            }
            self.orphans.trees.insert(orphan.pid, entry);
            out.push(OrphanScan::Alive(orphan));
        }
        self.scan_dead_hosts(&mut out)?;
        Ok(out)
    }

    /// The cgroups of dead hosts that this state directory's host records
    /// name: every populated child cgroup that no record claimed is an
    /// orphan tree too (its child's record was never written, or was
    /// lost: the host died between the spawn and the record); empty ones
    /// are removed, and a record whose directory is gone with them.
    fn scan_dead_hosts(&mut self, out: &mut Vec<OrphanScan>) -> io::Result<()> {
        let Some(dir) = self.records.dir() else { return Ok(()) };
        let (hosts, refused) = dir.host_records()?;
        out.extend(refused);
        let now_boot = orphans::boot_id();
        let mut found = Vec::new();
        for (file, host, st) in hosts {
            let other_boot = matches!((&host.boot_id, &now_boot), (Some(a), Some(b)) if a != b);
            // A live host of this record is this process's own other
            // `UnixSys` (the lock keeps every other host out): not ours.
            if !other_boot && orphans::is_live(host.pid, host.start_time) {
                continue;
            }
            if !other_boot {
                for (cg, name) in orphans::host_children(&host.root) {
                    if self.orphans.claims(&cg) {
                        continue;
                    }
                    if !orphans::cgroup_populated(&cg) {
                        let _ = std::fs::remove_dir(&cg);
                        continue;
                    }
                    match (orphans::first_member(&cg), ChildCgroup::open(&cg)) {
                        (Some((pid, start_time)), Ok(cgroup)) => found.push((name, pid, start_time, cgroup)),
                        (_, Err(e)) => log::warn!("procsup: opening orphan cgroup {}: {e}", cg.display()),
                        (None, _) => {}
                    }
                }
                let _ = std::fs::remove_dir(&host.root);
            }
            if other_boot || !host.root.exists() {
                dir.remove_host(&file, &st);
            }
        }
        for (name, pid, start_time, cgroup) in found {
            let pid = Pid::from_raw(pid);
            if self.orphans.contains(pid) || self.children.contains_key(&pid) {
                continue;
            }
            log::warn!(
                "procsup: {} holds a tree of a dead host that no record names (the host died as it spawned): stopping it",
                cgroup.dir.display()
            );
            let token = token(pid, ORPHAN_CGROUP_SLOT);
            if let Some(Err(e)) = self.readiness.as_ref().map(|r| r.watch_pri(cgroup.events.as_fd(), token)) {
                log::warn!("procsup: epoll add orphan cgroup.events: {e}");
            }
            let mut orphan = orphans::Orphan::new(name.clone(), pid, pid, start_time);
            orphan.cgroup = Some(cgroup.dir.clone());
            orphan.leader_alive = false;
            let entry = OrphanEntry {
                name,
                pgid: pid,
                sid: None,
                start_time,
                pidfd: None,
                leader_alive: false,
                cgroup: Some(cgroup),
            };
            self.orphans.trees.insert(pid, entry);
            out.push(OrphanScan::Alive(orphan));
        }
        Ok(())
    }

    /// The leader of an orphan tree exited: the tree is gone unless members
    /// of its group are left, which are then looked at on every poll.
    pub(super) fn orphan_leader_exited(&mut self, pid: Pid, events: &mut Vec<SysEvent>) {
        if self.orphans.leader_exited(pid, self.readiness.as_ref()) {
            self.orphan_gone(pid, events);
        }
    }

    pub(super) fn orphan_cgroup_changed(&mut self, pid: Pid, events: &mut Vec<SysEvent>) {
        if self.orphans.cgroup_emptied(pid) {
            self.orphan_gone(pid, events);
        }
    }

    /// Orphans no fd wakes for: looked at on every poll.
    pub(super) fn poll_orphans(&mut self, events: &mut Vec<SysEvent>) {
        let gone = self.orphans.gone_unwoken(self.readiness.is_some());
        for pid in gone {
            self.orphan_gone(pid, events);
        }
    }

    pub(super) fn orphan_gone(&mut self, pid: Pid, events: &mut Vec<SysEvent>) {
        let Some(o) = self.orphans.trees.remove(&pid) else { return };
        if let Some(fd) = &o.pidfd {
            self.unwatch(fd);
        }
        if let Some(cg) = &o.cgroup {
            self.unwatch(&cg.events);
            orphans::remove_cgroup(&cg.dir);
        }
        self.records.remove(&o.name, pid);
        if let Some(root) = o.cgroup.as_ref().and_then(|cg| cg.dir.parent()) {
            self.records.forget_host(root);
        }
        events.push(SysEvent::OrphanGone { pid });
    }
}
