//! This run's records in the state directory (see
//! [`UnixSys::state_dir`](super::UnixSys::state_dir)): one per live child,
//! and with a cgroup per child one for the host's cgroup directory, so a
//! later run finds what a crash of this one leaves.
//!
//! The disk's work is kept off the restart path: a gone child's record is
//! removed, and on the cgroup path (while the host record stands in for
//! it) a new child's record is written, at a later poll that reports no
//! exit, or after a few in a row that do (`catch_up`), which
//! [`RECORD_DELAY`] asks for about a millisecond on.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::unistd::Pid;

use super::{Child, Contain};
use crate::orphans::{self, HostRecord, Record};
use crate::state_dir::StateDir;
use crate::sys::SysEvent;

/// How long a new child's record (cgroup path) and a gone child's record
/// removal wait for a poll with nothing else to do: past the new child's
/// `execve` and the start of its program, which the host's disk work would
/// otherwise share a CPU with (see `catch_up`). A successor wanted sooner
/// (`STANDBY_SOON`) brings the poll forward, and the records are written
/// in it too.
pub(super) const RECORD_DELAY: Duration = Duration::from_millis(1);

/// What a [`UnixSys`](super::UnixSys) keeps in its state directory, and
/// what it still has to write there or remove. Without a state directory
/// (before `open`) nothing is written, put off or removed.
#[derive(Debug, Default)]
pub(super) struct Records {
    dir: Option<StateDir>,
    /// This boot's id, for the records.
    boot_id: Option<String>,
    /// Records of children that are gone, removed at a later poll that
    /// reports no exit (`catch_up`).
    stale: Vec<(Box<str>, Pid)>,
    /// Children on the cgroup path whose records are still to be written
    /// (child, its process group): at a poll with nothing else to do
    /// (`catch_up`), off the restart path.
    unrecorded: Vec<(Pid, Pid)>,
    /// Polls in a row that left records to write for a reported exit.
    put_off: u8,
    /// The host record of the cgroup directory is written: it and the
    /// cgroups find a child's tree before the child's own record is.
    host_recorded: bool,
}

impl Records {
    /// Keeps the records in `dir` from now on; with the cgroup directory
    /// `cgroups` made already, its host record is written now.
    pub(super) fn open(&mut self, dir: StateDir, cgroups: Option<&Path>) {
        self.boot_id = orphans::boot_id();
        if let Some(root) = cgroups {
            let pid = std::process::id() as i32;
            self.host_recorded = write_host(&dir, &self.boot_id, root, pid, orphans::start_time(pid).unwrap_or(0));
        }
        self.dir = Some(dir);
    }

    /// The state directory, if there is one.
    pub(super) fn dir(&self) -> Option<&StateDir> {
        self.dir.as_ref()
    }

    /// The cgroup directory `root` is about to be made by host `pid`
    /// (started at `start_time`): its host record is written first.
    pub(super) fn record_host(&mut self, root: &Path, pid: i32, start_time: u64) {
        if let Some(dir) = &self.dir {
            self.host_recorded = write_host(dir, &self.boot_id, root, pid, start_time);
        }
    }

    /// The cgroup directory `root` is gone: the host record that names it
    /// is removed.
    pub(super) fn forget_host(&self, root: &Path) {
        if let Some(dir) = &self.dir {
            dir.forget_host(root);
        }
    }

    /// A child was spawned: its record is written now, or, where its
    /// cgroup and the host record find its tree meanwhile, left for
    /// `catch_up`.
    pub(super) fn note_spawned(&mut self, name: &str, pid: Pid, process_group: bool, contain: &Contain) {
        if self.dir.is_none() {
            return;
        }
        let pgid = if process_group { pid } else { nix::unistd::getpgrp() };
        match contain {
            // Its cgroup and the host record find the tree meanwhile.
            Contain::Cgroup(_) if self.host_recorded => self.unrecorded.push((pid, pgid)),
            _ => self.write(name, pid, pgid, contain),
        }
    }

    /// Whether a tree whose own record is not written yet is found after a
    /// host crash: there is nothing to find (no state directory), or it is
    /// `in_cgroup` and the host record finds its populated cgroup.
    pub(super) fn finds_unrecorded(&self, in_cgroup: bool) -> bool {
        self.dir.is_none() || (in_cgroup && self.host_recorded)
    }

    /// Child `pid` of `name` is gone: its record is removed later.
    pub(super) fn note_gone(&mut self, name: Box<str>, pid: Pid) {
        // A record not written yet is not needed any more (and its pid may
        // be the next child's).
        self.unrecorded.retain(|&(p, _)| p != pid);
        if self.dir.is_some() {
            // Removed at a later poll, not on the way to a restart: see
            // `remove_stale`.
            self.stale.push((name, pid));
        }
    }

    /// Removes the record of `name`'s child `pid` now (its tree is gone).
    pub(super) fn remove(&self, name: &str, pid: Pid) {
        if let Some(dir) = &self.dir {
            dir.remove(name, pid.as_raw());
        }
    }

    /// Whether a record waits to be written or removed (for
    /// [`RECORD_DELAY`]).
    pub(super) fn wants_a_poll(&self) -> bool {
        !self.stale.is_empty() || !self.unrecorded.is_empty()
    }

    /// Writes the records `spawn_child` left for later and removes those
    /// of gone children, unless this poll reported an exit (or a tree's
    /// end) in `reported`: its restart comes first (put off at most
    /// `PUT_OFF` polls in a row, so a steady stream of exits cannot starve
    /// it).
    pub(super) fn catch_up(&mut self, reported: &[SysEvent], children: &HashMap<Pid, Child>) {
        const PUT_OFF: u8 = 4;
        if self.unrecorded.is_empty() && self.stale.is_empty() {
            return;
        }
        let exited = reported.iter().any(|e| matches!(e, SysEvent::Exited { .. } | SysEvent::TreeEmpty { .. }));
        if exited && self.put_off < PUT_OFF {
            self.put_off += 1;
            return;
        }
        self.put_off = 0;
        for (pid, pgid) in std::mem::take(&mut self.unrecorded) {
            // A child reaped meanwhile needs none.
            if let Some(child) = children.get(&pid).filter(|c| c.exited.is_none()) {
                self.write(&child.name, pid, pgid, &child.contain);
            }
        }
        self.remove_stale(children);
    }

    /// Removes the records of children that are gone. `note_gone`
    /// leaves this to a poll that reports no exit (`catch_up`), after
    /// the successor's spawn and its `execve`: a record of a dead
    /// child is harmless a moment longer (a later host checks the pid's
    /// start time before it signals anything), and its removal (a read
    /// and an unlink on disk) would delay every restart. A record whose
    /// pid is a live child's of the same name again (the successor got
    /// it) is that child's: kept.
    pub(super) fn remove_stale(&mut self, children: &HashMap<Pid, Child>) {
        if self.stale.is_empty() {
            return;
        }
        let Some(dir) = &self.dir else { return };
        for (name, pid) in self.stale.drain(..) {
            // A pid a child of the same name has again names that child's
            // record (the same file): kept. Of another name, it is not.
            if children.get(&pid).is_none_or(|c| c.name != name) {
                dir.remove(&name, pid.as_raw());
            }
        }
    }

    /// Records a new child in the state directory, with what finds its
    /// tree after a crash.
    fn write(&self, name: &str, pid: Pid, pgid: Pid, contain: &Contain) {
        let Some(dir) = &self.dir else { return };
        // 0 (not an error) where the session's leader is outside our pid
        // namespace: a real value, which /proc here shows for the tree's
        // members too. An error leaves the session out of the record.
        let sid = nix::unistd::getsid(Some(pid)).ok().map(Pid::as_raw);
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
        if let Err(e) = record.ok_or_else(|| io::Error::from(Errno::ESRCH)).and_then(|r| dir.write(name, r)) {
            log::warn!("procsup: recording {name} (pid {pid}) in the state directory: {e}");
        }
    }
}

/// Writes the host record of cgroup directory `root` (see
/// [`UnixSys::state_dir`](super::UnixSys::state_dir)) and says whether it
/// is there; a failure is logged: containment goes on, each child's record
/// written at its spawn.
fn write_host(dir: &StateDir, boot_id: &Option<String>, root: &Path, pid: i32, start_time: u64) -> bool {
    let r = HostRecord { pid, start_time, boot_id: boot_id.clone(), root: root.to_owned() };
    match dir.write_host(&r) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("procsup: recording cgroup {} in the state directory: {e}", root.display());
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::{Exit, ProcessSpec, UnixSys};

    /// On the cgroup path a child's record waits for a quiet poll only
    /// while the host record stands in for it; without one (its write
    /// failed) the record is written as the spawn returns, as on the
    /// process-group path.
    #[test]
    fn without_a_host_record_a_childs_record_is_written_at_its_spawn() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut sys = UnixSys::new().state_dir(tmp.path()).unwrap();
        let spec = ProcessSpec::new("web", "sleep").arg("60");
        let first = sys.spawn_child(&spec).unwrap();
        if !matches!(sys.children[&first].contain, Contain::Cgroup(_)) {
            eprintln!("no writable cgroup here: nothing to test");
            return; // dropping `sys` kills and reaps it
        }
        let record = |pid: Pid| tmp.path().join(format!("web.{pid}")).exists();
        assert!(sys.records.host_recorded);
        assert!(!record(first), "written before a quiet poll");
        sys.records.host_recorded = false;
        let second = sys.spawn_child(&spec).unwrap();
        assert!(record(second), "no host record, and the child's own waited");
        sys.records.catch_up(&[], &sys.children);
        assert!(record(first));
    }

    /// A poll that reports an exit leaves the record work to the next
    /// one (the restart comes first), but not forever: a host whose every
    /// poll reports an exit (a crash-looping pool) still gets it done.
    #[test]
    fn record_work_is_put_off_for_exits_a_few_polls_at_most() {
        let exited = [SysEvent::Exited { pid: Pid::from_raw(1), exit: Exit::Exited(1) }];
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut sys = UnixSys::new().without_cgroups().state_dir(tmp.path()).unwrap();
        let gone = || ("web".into(), Pid::from_raw(i32::MAX));
        sys.records.stale.push(gone());
        for poll in 1..=4 {
            sys.records.catch_up(&exited, &sys.children);
            assert_eq!(sys.records.stale.len(), 1, "done at poll {poll}, which reported an exit");
        }
        sys.records.catch_up(&exited, &sys.children);
        assert!(sys.records.stale.is_empty(), "put off a fifth time");
        // The count starts over; a poll without an exit does it at once.
        sys.records.stale.push(gone());
        sys.records.catch_up(&exited, &sys.children);
        assert_eq!(sys.records.stale.len(), 1);
        // A tree's end is followed by a restart as an exit is.
        sys.records.catch_up(&[SysEvent::TreeEmpty { pid: Pid::from_raw(1) }], &sys.children);
        assert_eq!(sys.records.stale.len(), 1, "done at a poll that reported a tree's end");
        // Nor is other news a reason to wait.
        let output = SysEvent::Output { pid: Pid::from_raw(1), stream: crate::Stream::Stdout, data: b"x".to_vec() };
        sys.records.catch_up(&[output], &sys.children);
        assert!(sys.records.stale.is_empty());
        assert_eq!(sys.records.put_off, 0);
    }
}
