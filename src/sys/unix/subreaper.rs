//! Subreaper mode: the host adopts what supervised trees leave behind
//! (`PR_SET_CHILD_SUBREAPER`) and reaps it, the job of tini and dumb-init.
//!
//! A process whose parent dies is re-parented to its nearest subreaper
//! ancestor. So once the host is one, a daemon that a supervised child
//! double-forked becomes the host's child, and a zombie of the host when it
//! exits. Nothing signals an adoption. So the host's children
//! (`/proc/self/task/*/children`) that are neither our own nor already
//! adopted are looked at when one may have appeared: in a `poll` that saw
//! an exit of ours (a child's or an adopted orphan's: its own children were
//! just handed to the host), or when a non-reaping peek
//! (`waitid(P_ALL, WNOWAIT)`) shows a zombie that is not ours (an orphan
//! adopted while the supervised child it came from lives, now dead). One
//! whose membership is proven (see `supervised_tree_of`), or any in
//! [`SubreaperMode::AllOrphans`], gets a pidfd in the one readiness fd and
//! is reaped *by its pid* when it exits; the peek only says when to look, it
//! never reaps: it returns one zombie at a time, maybe one that is not ours.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

use super::readiness::token;
use super::tree::Contain;
use super::wait::{peek_zombie, pidfd_open, waitid_pidfd, waitpid_nohang};
use super::UnixSys;
use crate::state::Exit;
use crate::sys::SysEvent;

/// Which adopted orphans a subreaper host reaps: see
/// [`UnixSys::subreaper`](crate::UnixSys::subreaper).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubreaperMode {
    /// Only those that provably come from a supervised tree: in the cgroup
    /// of one of the supervisor's children, or in the process group or the
    /// session of one (also of a leader whose tree still drains), or of an
    /// orphan adopted from one. The host's own other children (its
    /// `std::process::Command`s) keep their exit status.
    SupervisedTrees,
    /// Every child that is not the supervisor's own. Only for a host that
    /// has no children of its own (PID 1 of a container, as tini assumes):
    /// its other children's exit statuses would be taken.
    AllOrphans,
}

/// The token slot of an adopted orphan's pidfd in the epoll set.
pub(super) const ADOPTED_SLOT: u64 = 7;

/// The fields of `/proc/<pid>/stat` that prove where a process comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    ppid: i32,
    pgrp: i32,
    session: i32,
    start_time: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold anything) start after
    // the last ')': state, ppid, pgrp, session, ..., starttime (field 22).
    let mut f = text[text.rfind(')')? + 1..].split_whitespace();
    let ppid = f.nth(1)?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    let session = f.next()?.parse().ok()?;
    let start_time = f.nth(15)?.parse().ok()?;
    Some(Stat { ppid, pgrp, session, start_time })
}

/// The children of every thread of the host (an orphan is re-parented to
/// one live thread of its subreaper, not always the main one).
fn host_children() -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

/// An orphan the host adopted and watches.
#[derive(Debug)]
struct Adopted {
    /// The supervised process whose tree it provably comes from.
    name: Option<Box<str>>,
    pidfd: Option<OwnedFd>,
    pgid: i32,
    sid: i32,
}

/// How many `UnixSys` in this process are in subreaper mode, and whether
/// the process was a subreaper before the first: the flag is the process's,
/// so only the last one dropped may clear it, and only if it set it.
static USERS: std::sync::Mutex<(usize, bool)> = std::sync::Mutex::new((0, false));

/// The subreaper state of a [`UnixSys`].
#[derive(Debug)]
pub(super) struct Subreaper {
    mode: SubreaperMode,
    adopted: HashMap<Pid, Adopted>,
    /// Ids (pid, pgid, sid) of our children and adopted orphans reaped in
    /// this `poll`, with their names: their trees may have members that the
    /// exit just handed to the host.
    recent: Vec<(i32, Box<str>)>,
}

impl Subreaper {
    #[cfg(target_os = "linux")]
    pub(super) fn new(mode: SubreaperMode) -> io::Result<Self> {
        let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
        if users.0 == 0 {
            let mut was: libc::c_int = 0;
            // SAFETY: prctl(2) PR_GET_CHILD_SUBREAPER writes one int through
            // the pointer, a valid, writable local.
            if unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut was as *mut libc::c_int, 0, 0, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: prctl(2) PR_SET_CHILD_SUBREAPER takes a flag; no memory.
            if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
            users.1 = was != 0;
        }
        users.0 += 1;
        Ok(Subreaper { mode, adopted: HashMap::new(), recent: Vec::new() })
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn new(_: SubreaperMode) -> io::Result<Self> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "subreaper mode needs Linux (PR_SET_CHILD_SUBREAPER)"))
    }

    pub(super) fn adopted_count(&self) -> usize {
        self.adopted.len()
    }

    /// Notes an own child just reaped: its tree may have members to adopt.
    pub(super) fn note_reaped(&mut self, pid: Pid, name: &str) {
        self.recent.push((pid.as_raw(), name.into()));
    }
}

/// The supervised process a child of the host provably comes from, by its
/// process group or session: one of `ids` (the pids of our children, also
/// leaders reaped while their tree drains; the pids, groups and sessions of
/// orphans adopted from them and of those reaped in this poll). The host's
/// own group and session are not in `ids`: they prove nothing.
///
/// A group or session id stays allocated (so cannot name another process)
/// while any member lives; only the id's own pid can be a recycled one,
/// after its owner was reaped, so a process is never its own proof.
fn tree_by_ids<'a>(ids: &'a [(i32, &'a str)], pid: i32, st: &Stat) -> Option<&'a str> {
    ids.iter().find(|&&(id, _)| id != pid && (st.pgrp == id || st.session == id)).map(|&(_, name)| name)
}

/// The cgroup v2 path of `pid`, relative to its hierarchy (`0::/a/b`).
fn cgroup_of(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim_start_matches('/').to_owned())
}

impl UnixSys {
    /// Subreaper work of one `poll`: reap adopted orphans without a pidfd,
    /// then adopt the new ones.
    pub(super) fn poll_adopted(&mut self, events: &mut Vec<SysEvent>) {
        let Some(sr) = &self.subreaper else { return };
        let unwatched: Vec<Pid> = sr.adopted.iter().filter(|(_, a)| a.pidfd.is_none()).map(|(p, _)| *p).collect();
        for pid in unwatched {
            if let Some(exit) = waitpid_nohang(pid) {
                self.finish_adopted(pid, exit, events);
            }
        }
        let exit_seen = self.subreaper.as_ref().is_some_and(|sr| !sr.recent.is_empty());
        if exit_seen || peek_zombie().is_some_and(|pid| !self.children.contains_key(&pid) && !self.standbys.holds(pid))
        {
            self.adopt_new(events);
        }
        if let Some(sr) = &mut self.subreaper {
            sr.recent.clear();
        }
    }

    fn adopt_new(&mut self, events: &mut Vec<SysEvent>) {
        let Some(sr) = &self.subreaper else { return };
        let candidates: Vec<i32> = host_children()
            .into_iter()
            .filter(|&p| {
                let pid = Pid::from_raw(p);
                !self.children.contains_key(&pid) && !sr.adopted.contains_key(&pid) && !self.standbys.holds(pid)
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let me = std::process::id() as i32;
        let host_ids = [nix::unistd::getpgrp().as_raw(), nix::unistd::getsid(None).map_or(0, Pid::as_raw)];
        let mut ids: Vec<(i32, &str)> = self.children.iter().map(|(pid, c)| (pid.as_raw(), &*c.name)).collect();
        for a in sr.adopted.iter().filter_map(|(pid, a)| a.name.as_deref().map(|n| (pid, a, n))) {
            let (pid, adopted, name) = a;
            ids.extend([(pid.as_raw(), name), (adopted.pgid, name), (adopted.sid, name)]);
        }
        ids.extend(sr.recent.iter().map(|(id, name)| (*id, &**name)));
        ids.retain(|(id, _)| *id > 0 && !host_ids.contains(id));
        let mut found = Vec::new();
        for pid in candidates {
            let Some(st) = stat(pid) else { continue };
            if st.ppid != me {
                continue;
            }
            let name = self.supervised_tree_of(&ids, pid, &st);
            if name.is_some() || sr.mode == SubreaperMode::AllOrphans {
                found.push((pid, st, name));
            }
        }
        for (pid, st, name) in found {
            self.adopt(Pid::from_raw(pid), st, name, events);
        }
    }

    /// Whether a child the host adopted provably comes from a supervised
    /// tree, and whose: it is in the cgroup of one of our children (nothing
    /// can leave one unless moved by someone with write access to the
    /// hierarchy), or in the process group or session of one ([`tree_by_ids`]).
    fn supervised_tree_of(&self, ids: &[(i32, &str)], pid: i32, st: &Stat) -> Option<Box<str>> {
        if let Some(path) = cgroup_of(pid).filter(|p| !p.is_empty()) {
            let path = std::path::Path::new(&path);
            let by_cgroup = self.children.values().find(|c| match &c.contain {
                Contain::Cgroup(cg) => cg.dir.ends_with(path),
                _ => false,
            });
            if let Some(child) = by_cgroup {
                return Some(child.name.clone());
            }
        }
        tree_by_ids(ids, pid, st).map(Box::<str>::from)
    }

    fn adopt(&mut self, pid: Pid, st: Stat, name: Option<Box<str>>, events: &mut Vec<SysEvent>) {
        let pidfd = if self.pidfd == Some(false) { None } else { pidfd_open(pid).ok() };
        // An unreaped child's pid cannot be recycled, but a host calling
        // waitpid(-1) could have reaped it since: with the pidfd open, the
        // start time proves it is still the process that was checked.
        if stat(pid.as_raw()).map(|s| s.start_time) != Some(st.start_time) {
            return;
        }
        if let Some(fd) = &pidfd {
            if let Err(e) = self.watch(fd, token(pid, ADOPTED_SLOT)) {
                log::warn!("procsup: epoll add adopted pidfd: {e}");
            }
        }
        let watched = pidfd.is_some();
        let adopted = Adopted { name, pidfd, pgid: st.pgrp, sid: st.session };
        if let Some(sr) = &mut self.subreaper {
            sr.adopted.insert(pid, adopted);
        }
        // It may be a zombie already: then no readiness will come later.
        let exit = if watched { self.wait_adopted(pid) } else { waitpid_nohang(pid) };
        if let Some(exit) = exit {
            self.finish_adopted(pid, exit, events);
        }
    }

    /// A non-blocking wait for one adopted orphan, by its pidfd.
    pub(super) fn wait_adopted(&self, pid: Pid) -> Option<Exit> {
        let a = self.subreaper.as_ref()?.adopted.get(&pid)?;
        match &a.pidfd {
            Some(fd) => waitid_pidfd(fd.as_raw_fd()),
            None => waitpid_nohang(pid),
        }
    }

    /// Reports an adopted orphan's exit and forgets it.
    pub(super) fn finish_adopted(&mut self, pid: Pid, exit: Exit, events: &mut Vec<SysEvent>) {
        let Some(a) = self.subreaper.as_mut().and_then(|sr| sr.adopted.remove(&pid)) else { return };
        if let Some(fd) = &a.pidfd {
            self.unwatch(fd);
        }
        if let (Some(name), Some(sr)) = (&a.name, self.subreaper.as_mut()) {
            sr.recent.extend([(pid.as_raw(), name.clone()), (a.pgid, name.clone()), (a.sid, name.clone())]);
        }
        events.push(SysEvent::AdoptedExited { pid, name: a.name.map(String::from), exit });
    }

    /// On drop: orphans adopted from our trees are killed and reaped like
    /// our children; others (`AllOrphans`) are reaped if already dead. The
    /// host stops being a subreaper when no other `UnixSys` needs it, unless
    /// it was one before.
    pub(super) fn release_adopted(&mut self) {
        let Some(sr) = self.subreaper.take() else { return };
        for (pid, a) in sr.adopted {
            if a.name.is_some() {
                let _ = match &a.pidfd {
                    Some(fd) => super::wait::pidfd_send_signal(fd.as_raw_fd(), nix::sys::signal::Signal::SIGKILL),
                    // Not reaped yet, so the pid is still this child's.
                    None => nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from),
                };
                while let Err(Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
            } else {
                let _ = waitpid_nohang(pid);
            }
        }
        let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
        users.0 = users.0.saturating_sub(1);
        #[cfg(target_os = "linux")]
        if users.0 == 0 && !users.1 {
            // SAFETY: prctl(2) PR_SET_CHILD_SUBREAPER takes a flag; no memory.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0 as libc::c_ulong, 0, 0, 0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(pgrp: i32, session: i32) -> Stat {
        Stat { ppid: 1, pgrp, session, start_time: 0 }
    }

    #[test]
    fn membership_is_by_group_or_session_and_never_by_its_own_pid() {
        let ids = [(100, "web"), (200, "db")];
        assert_eq!(tree_by_ids(&ids, 150, &st(100, 7)), Some("web"), "in web's group");
        assert_eq!(tree_by_ids(&ids, 250, &st(250, 200)), Some("db"), "in db's session");
        assert_eq!(tree_by_ids(&ids, 300, &st(7, 7)), None, "in neither");
        assert_eq!(tree_by_ids(&ids, 100, &st(100, 100)), None, "a recycled pid is not its own proof");
    }

    #[test]
    fn stat_reads_the_fields_after_the_name() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert_eq!(s.ppid, nix::unistd::getppid().as_raw());
        assert_eq!(s.pgrp, nix::unistd::getpgrp().as_raw());
        assert_eq!(s.session, nix::unistd::getsid(None).unwrap().as_raw());
        assert_eq!(Some(s.start_time), crate::orphans::start_time(me));
    }
}
