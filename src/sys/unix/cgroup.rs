//! A cgroup v2 per child: the containment that nothing escapes.
//!
//! - Where: the host names a directory ([`UnixSys::cgroup_parent`]), or it
//!   is found from `/proc/self/mountinfo` (the `cgroup2` mount, e.g.
//!   `/sys/fs/cgroup/unified` on hybrid systems) and `/proc/self/cgroup`
//!   (the host's own place, `0::/...`). Under it each `UnixSys` makes one
//!   directory named after the host process (`procsup-<pid>-<start>-<n>`:
//!   unique to that process within a boot, so a crashed run's cgroups are
//!   told from any other's), removed
//!   when the `UnixSys` is dropped, and in that one a cgroup per child.
//! - Entry: the parent opens the child cgroup's `cgroup.procs`
//!   (`O_CLOEXEC`) before the fork; the child writes `0` to it before exec
//!   ([`enter`]), so nothing it forks can race out. A failed write fails the
//!   spawn.
//! - Stop: every member gets the signal; SIGKILL is one write to
//!   `cgroup.kill` (a loop over `cgroup.procs` where that file is missing).
//! - Gone: `cgroup.events` says `populated 0`; the kernel raises `EPOLLPRI`
//!   on that file when it changes, so it sits behind the one readiness fd.
//!   Then the directory is removed.
//!
//! [`UnixSys::cgroup_parent`]: super::UnixSys::cgroup_parent

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;

use super::wait::{pidfd_open, pidfd_send_signal};
use crate::spec::CgroupLimits;

/// Numbers the per-supervisor directories of this host process.
static NEXT_ROOT: AtomicU64 = AtomicU64::new(0);

/// The prefix of every per-supervisor directory.
pub(crate) const ROOT_PREFIX: &str = "procsup-";

/// The child step: moves the calling process into the cgroup whose
/// `cgroup.procs` is open as `procs`. Runs between fork and exec.
pub(super) fn enter(procs: RawFd) -> io::Result<()> {
    // SAFETY: write(2) is async-signal-safe (signal-safety(7)); the buffer
    // is a static byte, nothing is allocated. io::Error::last_os_error
    // only reads errno.
    let n = unsafe { libc::write(procs, b"0".as_ptr().cast(), 1) };
    if n != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The directory of the host's own cgroup in the cgroup2 hierarchy, from
/// `/proc/self/mountinfo` and `/proc/self/cgroup`.
pub(super) fn discover() -> io::Result<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let (root, mount) = mountinfo
        .lines()
        .find_map(|line| {
            let (fields, tail) = line.split_once(" - ")?;
            if tail.split(' ').next()? != "cgroup2" {
                return None;
            }
            let mut f = fields.split(' ');
            let root = f.nth(3)?;
            let mount = f.next()?;
            Some((unescape(root), unescape(mount)))
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup2 mount"))?;
    let own = fs::read_to_string("/proc/self/cgroup")?;
    let place = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup2 entry in /proc/self/cgroup"))?;
    // The mount shows the hierarchy from `root` down; our place is named
    // from the hierarchy's (or namespace's) top.
    let rel = place.strip_prefix(root.as_str()).unwrap_or(place).trim_start_matches('/');
    let dir = PathBuf::from(mount).join(rel);
    check_cgroup_dir(&dir)?;
    Ok(dir)
}

/// Undoes the octal escapes of mountinfo (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A cgroup2 directory has `cgroup.procs`.
pub(super) fn check_cgroup_dir(dir: &Path) -> io::Result<()> {
    if dir.join("cgroup.procs").is_file() {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::NotFound, format!("{} is not a cgroup2 directory", dir.display())))
    }
}

/// Removes the empty cgroups that hosts which died without dropping their
/// `UnixSys` (`kill -9`) left under `base`. Only directories named after a
/// pid that no longer runs are looked at, and only `rmdir` is used: it
/// fails on a cgroup that still holds a live process, so nothing is ever
/// signalled here (a state directory's cleanup stops those trees).
fn sweep_dead_hosts(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(host) = name.to_str().and_then(|n| n.strip_prefix(ROOT_PREFIX)) else { continue };
        let mut parts = host.split('-').map(|p| p.parse::<u64>().ok());
        let (Some(Some(pid)), Some(Some(started))) = (parts.next(), parts.next()) else { continue };
        // The host is alive when a process has its pid and start time.
        if crate::orphans::start_time(pid as i32) == Some(started) {
            continue;
        }
        let dir = entry.path();
        if let Ok(children) = fs::read_dir(&dir) {
            for child in children.flatten().filter(|c| c.file_type().is_ok_and(|t| t.is_dir())) {
                let _ = fs::remove_dir(child.path());
            }
        }
        if fs::remove_dir(&dir).is_ok() {
            log::debug!("procsup: removed {}, left empty by a host that died", dir.display());
        }
    }
}

/// This `UnixSys`'s directory, holding one cgroup per child. Removed on
/// drop (it is empty by then: children's cgroups are removed first).
///
/// The empty cgroup of a child whose tree is gone is kept as a spare for
/// the next child of the same name (a restart): `mkdir` and `rmdir` of a
/// cgroup cost more than the rest of a restart's spawn together (about
/// 130 µs of 820 here). At most [`MAX_SPARES`] are kept, the oldest
/// removed first; all go with the root.
#[derive(Debug)]
pub(super) struct CgroupRoot {
    dir: PathBuf,
    next: u64,
    /// Empty cgroups by child name, oldest first, with the limits last
    /// written to each.
    spares: std::collections::VecDeque<(Box<str>, Spare)>,
    /// How many of them hold their `cgroup.events` open.
    open_spares: usize,
    /// Controllers enabled in `cgroup.subtree_control` (see `enable`).
    enabled: Vec<&'static str>,
}

/// How many empty cgroups are kept for restarts.
pub(super) const MAX_SPARES: usize = 256;

/// How many of the newest spares keep their `cgroup.events` open (one
/// `openat` and one `close` less when reused): a host with many names
/// holds no more fds than this for them.
pub(super) const OPEN_SPARES: usize = 16;

/// An empty cgroup kept for the next child of its name.
#[derive(Debug)]
enum Spare {
    /// With its `cgroup.events` still open.
    Open(ChildCgroup),
    /// Its directory and the limits last written to it.
    Closed(PathBuf, CgroupLimits),
}

impl Spare {
    /// The same spare without its open fd.
    fn closed(self) -> Spare {
        match self {
            Spare::Open(cg) => Spare::Closed(cg.dir, cg.limited),
            closed => closed,
        }
    }

    fn dir(&self) -> &Path {
        match self {
            Spare::Open(cg) => &cg.dir,
            Spare::Closed(dir, _) => dir,
        }
    }
}

impl CgroupRoot {
    /// Makes the directory under `base`. Failing here (not writable, not
    /// delegated) means: no cgroups.
    ///
    /// `before` runs with the directory's path, the host's pid and its
    /// start time before the directory exists (the host record is written
    /// there: see [`crate::state_dir`]).
    pub(super) fn create(base: &Path, before: impl FnOnce(&Path, i32, u64)) -> io::Result<CgroupRoot> {
        sweep_dead_hosts(base);
        let n = NEXT_ROOT.fetch_add(1, Ordering::Relaxed);
        let me = std::process::id();
        let started = crate::orphans::start_time(me as i32).unwrap_or(0);
        let dir = base.join(format!("{ROOT_PREFIX}{me}-{started}-{n}"));
        before(&dir, me as i32, started);
        fs::create_dir(&dir)?;
        Ok(CgroupRoot { dir, next: 0, spares: Default::default(), open_spares: 0, enabled: Vec::new() })
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new cgroup for a child called `name`, held to `limits`, with its
    /// `cgroup.procs` open for the child to enter, and the directory open
    /// for `CLONE_INTO_CGROUP`.
    pub(super) fn child(&mut self, name: &str, limits: &CgroupLimits) -> io::Result<(ChildCgroup, OwnedFd, OwnedFd)> {
        let (mut cg, procs, fd) = self.empty_child(name)?;
        if let Err(e) = cg.limit(limits) {
            cg.remove();
            return Err(e);
        }
        Ok((cg, procs, fd))
    }

    /// Enables `controller` for the children's cgroups: in this
    /// directory's `cgroup.subtree_control`, and first in its parent's
    /// where this directory is not offered it yet. Fails where the
    /// hierarchy has no such controller (bound to a v1 hierarchy, or not
    /// delegated).
    pub(super) fn enable(&mut self, controller: &'static str) -> io::Result<()> {
        if self.enabled.contains(&controller) {
            return Ok(());
        }
        let offered = |dir: &Path| -> io::Result<bool> {
            let text = fs::read_to_string(dir.join("cgroup.controllers"))?;
            Ok(text.split_whitespace().any(|c| c == controller))
        };
        let add = |dir: &Path| fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}"));
        if !offered(&self.dir)? {
            let parent = self.dir.parent().unwrap_or(&self.dir);
            if !offered(parent)? {
                let text = fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{} offers no {controller} controller (it has: {})", parent.display(), text.trim()),
                ));
            }
            add(parent)?;
        }
        add(&self.dir)?;
        self.enabled.push(controller);
        Ok(())
    }

    /// An empty cgroup for `name`: a spare, or a new one.
    fn empty_child(&mut self, name: &str) -> io::Result<(ChildCgroup, OwnedFd, OwnedFd)> {
        if let Some(at) = self.spares.iter().position(|(n, _)| &**n == name) {
            if let Some((_, spare)) = self.spares.remove(at) {
                let opened = match spare {
                    // Its `cgroup.events` stayed open: only the directory
                    // and `cgroup.procs` are opened again.
                    Spare::Open(cg) => {
                        self.open_spares -= 1;
                        open_dir(&cg.dir).map(|(procs, fd)| (cg, procs, fd))
                    }
                    Spare::Closed(dir, limited) => open_child(&dir).map(|(mut cg, procs, fd)| {
                        cg.limited = limited;
                        (cg, procs, fd)
                    }),
                };
                match opened {
                    Ok((cg, procs, fd)) if reusable(&cg, &fd) => return Ok((cg, procs, fd)),
                    // Not as it was left (see `reusable`): made anew below.
                    Ok((cg, ..)) => {
                        let _ = fs::remove_dir(&cg.dir);
                    }
                    Err(_) => {}
                }
            }
        }
        self.next += 1;
        let dir = self.dir.join(format!("c{}-{name}", self.next));
        if let Err(e) = fs::create_dir(&dir) {
            // A delegated parent's `cgroup.max.descendants` counts the
            // spares too: give the oldest back and try once more.
            self.drop_oldest_spare().ok_or(e)?;
            fs::create_dir(&dir)?;
        }
        open_child(&dir).inspect_err(|_| {
            let _ = fs::remove_dir(&dir);
        })
    }

    /// Keeps the empty cgroup `cg` of a child called `name` for the next
    /// child of that name, or removes it when it is not empty.
    ///
    /// A cgroup that `cgroup.kill` was written to is removed, not kept: on
    /// Linux 6.x a child cloned into it with `CLONE_INTO_CGROUP` is killed
    /// at birth (the fork compares the cgroup's kill sequence with the one
    /// read from the *parent's* cgroup, and they differ once the target was
    /// killed).
    pub(super) fn retire(&mut self, name: &str, mut cg: ChildCgroup) {
        if cg.killed.load(Ordering::Relaxed) || cg.populated() {
            cg.remove();
            return;
        }
        // What was its child's: the next child's spawn sets its own.
        cg.oom_base = None;
        cg.memory = None;
        cg.watched = false;
        self.spares.push_back((name.into(), Spare::Open(cg)));
        self.open_spares += 1;
        if self.open_spares > OPEN_SPARES {
            // The oldest open one gives its fd back.
            if let Some(spare) = self.spares.iter_mut().map(|(_, s)| s).find(|s| matches!(s, Spare::Open(_))) {
                let open = std::mem::replace(spare, Spare::Closed(PathBuf::new(), CgroupLimits::default()));
                *spare = open.closed();
                self.open_spares -= 1;
            }
        }
        if self.spares.len() > MAX_SPARES {
            self.drop_oldest_spare();
        }
    }

    /// Removes the oldest spare; `None` when there is none.
    fn drop_oldest_spare(&mut self) -> Option<()> {
        let (_, oldest) = self.spares.pop_front()?;
        if matches!(oldest, Spare::Open(_)) {
            self.open_spares -= 1;
        }
        let _ = fs::remove_dir(oldest.dir());
        Some(())
    }

    #[cfg(test)]
    pub(super) fn spares(&self) -> usize {
        self.spares.len()
    }

    #[cfg(test)]
    pub(super) fn open_spares(&self) -> usize {
        debug_assert_eq!(self.open_spares, self.spares.iter().filter(|(_, s)| matches!(s, Spare::Open(_))).count());
        self.open_spares
    }
}

/// Whether a spare is as it was left: empty, not frozen (a child born
/// into a frozen cgroup never reaches exec, and a vfork-class spawn would
/// wait for it forever), and with no controller enabled for sub-cgroups
/// (`CLONE_INTO_CGROUP` fails with `EBUSY` there). Someone else may have
/// changed it since; then it is made anew.
///
/// One read of `cgroup.events` says both: `populated 0` and `frozen 0` (an
/// empty cgroup is frozen at once when it or an ancestor is set to freeze);
/// `cgroup.subtree_control` is opened relative to the directory fd, not by
/// its whole path (a restart's spawn waits for these).
fn reusable(cg: &ChildCgroup, dir: &OwnedFd) -> bool {
    let events = cg.events_text();
    let empty_and_thawed =
        events.as_deref().is_some_and(|t| t.lines().any(|l| l == "populated 0") && t.lines().any(|l| l == "frozen 0"));
    empty_and_thawed
        && open_in(dir, "cgroup.subtree_control", OFlag::O_RDONLY)
            .and_then(|fd| read_from_start(&fd))
            .is_ok_and(|text| text.trim().is_empty())
}

/// Opens `file` of the cgroup directory open as `dir` (`O_CLOEXEC`).
fn open_in(dir: &OwnedFd, file: &str, flags: OFlag) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::openat(dir, file, flags | OFlag::O_CLOEXEC, Mode::empty())?)
}

/// Opens a child cgroup's directory (for `CLONE_INTO_CGROUP`) and its
/// `cgroup.procs` (for a child to enter by a write): `(procs, dir)`.
fn open_dir(dir: &Path) -> io::Result<(OwnedFd, OwnedFd)> {
    // The directory first: its files are opened relative to it, not each
    // by its whole path.
    let fd: OwnedFd = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC | libc::O_DIRECTORY).open(dir)?.into();
    Ok((open_in(&fd, "cgroup.procs", OFlag::O_WRONLY)?, fd))
}

/// Opens a child cgroup's files: `cgroup.procs` for the child to enter,
/// `cgroup.events`, and the directory for `CLONE_INTO_CGROUP`.
fn open_child(dir: &Path) -> io::Result<(ChildCgroup, OwnedFd, OwnedFd)> {
    let (procs, fd) = open_dir(dir)?;
    let events = open_in(&fd, "cgroup.events", OFlag::O_RDONLY)?;
    Ok((
        ChildCgroup {
            dir: dir.to_owned(),
            events,
            watched: false,
            killed: Default::default(),
            limited: Default::default(),
            oom_base: None,
            memory: None,
        },
        procs,
        fd,
    ))
}

impl Drop for CgroupRoot {
    fn drop(&mut self) {
        for (_, spare) in self.spares.drain(..) {
            let _ = fs::remove_dir(spare.dir());
        }
        if let Err(e) = fs::remove_dir(&self.dir) {
            log::warn!("procsup: removing cgroup {}: {e}", self.dir.display());
        }
    }
}

/// The cgroup of one child.
#[derive(Debug)]
pub(super) struct ChildCgroup {
    pub(super) dir: PathBuf,
    /// `cgroup.events`, watched for `EPOLLPRI` once the leader is gone
    /// and the tree is not (`watched`).
    pub(super) events: OwnedFd,
    pub(super) watched: bool,
    /// `cgroup.kill` was written: never reused (see [`CgroupRoot::retire`]).
    killed: std::sync::atomic::AtomicBool,
    /// The limits last written to its files (a reused cgroup keeps them).
    limited: CgroupLimits,
    /// `memory.events` `oom_kill` when the child was spawned, where the
    /// spec's memory limits let the OOM killer take it.
    oom_base: Option<u64>,
    /// Where the spec restarts the child above a threshold
    /// (`restart_above_memory`, written as `memory.high`).
    pub(super) memory: Option<MemoryWatch>,
}

/// The watch of a cgroup's own `memory.high` crossings.
#[derive(Debug)]
pub(super) struct MemoryWatch {
    /// `memory.events.local` (its own crossings, not those of cgroups the
    /// tree made below it; `memory.events` before Linux 5.2), watched for
    /// `EPOLLPRI`.
    pub(super) fd: OwnedFd,
    /// Its `high` count last seen.
    seen: u64,
    threshold: u64,
}

/// What a look at a watched cgroup's memory found.
#[derive(Debug)]
pub(super) enum MemoryCheck {
    /// No new crossing, or one by page cache the kernel reclaims.
    Below,
    /// The tree's anonymous memory is above the threshold: these bytes
    /// (`None` when `memory.stat` could not be read), and the threshold.
    Above(Option<u64>, u64),
    /// `memory.events` cannot be read (why): it is no longer watched.
    Unreadable(io::Error),
}

impl ChildCgroup {
    /// Opens the cgroup at `dir` (one a crashed run left).
    pub(super) fn open(dir: &Path) -> io::Result<ChildCgroup> {
        let events = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(dir.join("cgroup.events"))?;
        Ok(ChildCgroup {
            dir: dir.to_owned(),
            events: events.into(),
            watched: false,
            killed: Default::default(),
            limited: Default::default(),
            oom_base: None,
            memory: None,
        })
    }

    /// Writes `limits`, and the kernel's defaults for those it no longer
    /// sets (a reused cgroup holds its last child's); files whose value
    /// does not change are not written, so a cgroup without limits costs
    /// nothing.
    fn limit(&mut self, limits: &CgroupLimits) -> io::Result<()> {
        if self.limited != *limits {
            for ((file, old), (_, new)) in self.limited.files().into_iter().zip(limits.files()) {
                if old != new {
                    fs::write(self.dir.join(file), new.as_bytes()).map_err(|e| {
                        io::Error::new(e.kind(), format!("writing {new:?} to {}/{file}: {e}", self.dir.display()))
                    })?;
                }
            }
            self.limited = *limits;
        }
        self.oom_base = if limits.watches_oom() { Some(self.oom_kills()?) } else { None };
        self.memory = match limits.restart_above {
            Some(threshold) => {
                let open =
                    |file: &str| OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(self.dir.join(file));
                let fd: OwnedFd = open("memory.events.local").or_else(|_| open("memory.events"))?.into();
                let seen = event_count(&read_from_start(&fd)?, "high");
                Some(MemoryWatch { fd, seen, threshold })
            }
            None => None,
        };
        Ok(())
    }

    /// Whether the tree went above its threshold since the last call: the
    /// `high` count of its memory events went up (which reading re-arms),
    /// and its anonymous memory (`memory.stat` `anon`: heap, stacks,
    /// private mappings) is above it. Page cache counts toward
    /// `memory.high` too, but the kernel reclaims it there: a tree that
    /// only filled its cache is not restarted.
    pub(super) fn memory_check(&mut self) -> MemoryCheck {
        let Some(watch) = &mut self.memory else { return MemoryCheck::Below };
        let text = match read_from_start(&watch.fd) {
            Ok(text) => text,
            Err(e) => {
                // Unread, the file would stay raised and wake the host for ever.
                self.memory = None;
                return MemoryCheck::Unreadable(e);
            }
        };
        let now = event_count(&text, "high");
        let rose = now > watch.seen;
        watch.seen = now;
        if !rose {
            return MemoryCheck::Below;
        }
        let anon = fs::read_to_string(self.dir.join("memory.stat")).ok().map(|t| event_count(&t, "anon"));
        match anon {
            Some(anon) if anon < watch.threshold => MemoryCheck::Below,
            anon => MemoryCheck::Above(anon, watch.threshold),
        }
    }

    /// `memory.events` `oom_kill`: how many processes of it the OOM
    /// killer took, ever.
    fn oom_kills(&self) -> io::Result<u64> {
        let text = fs::read_to_string(self.dir.join("memory.events"))?;
        Ok(oom_kill_count(&text))
    }

    /// Whether the OOM killer took a process of it since the child was
    /// spawned (only where its spec set a memory limit).
    pub(super) fn oom_killed(&self) -> bool {
        self.oom_base.is_some_and(|base| self.oom_kills().is_ok_and(|n| n > base))
    }

    /// Whether a live process is in it (`populated 1`). Reading also
    /// re-arms the file's `EPOLLPRI`.
    pub(super) fn populated(&self) -> bool {
        // Unreadable (removed under us): treat as empty, never wait
        // forever on it.
        self.events_text().is_some_and(|text| !text.lines().any(|l| l == "populated 0"))
    }

    /// What `cgroup.events` says now (`populated`, `frozen`); `None`, with
    /// a warning, when it cannot be read. Reading re-arms its `EPOLLPRI`.
    fn events_text(&self) -> Option<String> {
        read_from_start(&self.events)
            .inspect_err(|e| log::warn!("procsup: reading {}/cgroup.events: {e}", self.dir.display()))
            .ok()
    }

    /// The pids in it now (live and zombie members).
    fn pids(&self) -> io::Result<Vec<i32>> {
        let mut text = String::new();
        fs::File::open(self.dir.join("cgroup.procs"))?.read_to_string(&mut text)?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Marks it as not to be reused (see [`CgroupRoot::retire`]).
    pub(super) fn taint(&self) {
        self.killed.store(true, Ordering::Relaxed);
    }

    /// Sends `signal` to every process in it: SIGKILL through `cgroup.kill`,
    /// any other signal member by member.
    pub(super) fn signal(&self, signal: Signal) -> io::Result<()> {
        if signal == Signal::SIGKILL {
            self.killed.store(true, Ordering::Relaxed);
            match fs::write(self.dir.join("cgroup.kill"), b"1") {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return self.kill_each(),
                Err(e) => return Err(e),
            }
        }
        self.signal_members(signal)
    }

    /// Without `cgroup.kill` (before Linux 5.14): SIGKILL every member
    /// until none is left (a killed process forks no more; a bounded number
    /// of rounds catches what forked in between).
    fn kill_each(&self) -> io::Result<()> {
        for _ in 0..16 {
            if self.pids()?.is_empty() {
                return Ok(());
            }
            self.signal_members(Signal::SIGKILL)?;
        }
        Ok(())
    }

    /// Each member in turn. A pid read from `cgroup.procs` may exit and be
    /// recycled before the signal; so the signal goes through a pidfd opened
    /// first, and only after `/proc/<pid>/cgroup` shows that the pid is
    /// still ours: if the process behind the pidfd had died before that
    /// check, the pidfd signal fails harmlessly.
    fn signal_members(&self, signal: Signal) -> io::Result<()> {
        let mut first_err = None;
        let mut delivered = false;
        for pid in self.pids()? {
            match self.signal_member(pid, signal) {
                Ok(()) => delivered = true,
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        match first_err {
            Some(e) if !delivered => Err(e),
            _ => Ok(()),
        }
    }

    fn signal_member(&self, pid: i32, signal: Signal) -> io::Result<()> {
        let fd = pidfd_open(nix::unistd::Pid::from_raw(pid))?;
        if !self.holds(pid) {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        pidfd_send_signal(fd.as_raw_fd(), signal)
    }

    /// Whether `/proc/<pid>/cgroup` names this cgroup.
    fn holds(&self, pid: i32) -> bool {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else { return false };
        let Some(place) = text.lines().find_map(|l| l.strip_prefix("0::")) else { return false };
        let mine = self.dir.to_string_lossy();
        !place.is_empty() && mine.ends_with(place) && mine.len() > place.len()
    }

    /// Waits (blocking, at most `rounds` × 10 ms) until no live process is
    /// in it. Only `UnixSys::drop` waits, after `cgroup.kill`.
    pub(super) fn wait_empty(&self, rounds: u32) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        for _ in 0..rounds {
            if !self.populated() {
                return;
            }
            let mut fds = [PollFd::new(self.events.as_fd(), PollFlags::POLLPRI)];
            let _ = poll(&mut fds, PollTimeout::from(10u8));
        }
        log::warn!("procsup: cgroup {} still has live processes", self.dir.display());
    }

    /// Removes the directory (it must be empty of live processes).
    pub(super) fn remove(&self) {
        if let Err(e) = fs::remove_dir(&self.dir) {
            log::warn!("procsup: removing cgroup {}: {e}", self.dir.display());
        }
    }
}

/// The `oom_kill` line of a `memory.events` file.
fn oom_kill_count(text: &str) -> u64 {
    event_count(text, "oom_kill")
}

/// The count of `key` in a `memory.events` file (0 when it has no such
/// line).
fn event_count(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// What the small kernfs file open as `fd` (`cgroup.events`,
/// `memory.events`) says now, read from its start, which re-arms its
/// `EPOLLPRI`.
fn read_from_start(fd: &OwnedFd) -> io::Result<String> {
    let mut buf = [0u8; 512];
    // SAFETY: pread(2) writes at most buf.len() bytes into buf, a valid
    // writable buffer; `fd` is an open fd we own.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

/// A test's own cgroup directory under the writable hierarchy, removed
/// when dropped (empty by then: drop it after what ran in it).
#[cfg(test)]
pub(super) struct ScratchCgroup(pub(super) PathBuf);

#[cfg(test)]
impl ScratchCgroup {
    /// `procsup-test-TAG-PID` under the hierarchy; `None` (said on stderr)
    /// where no cgroup is writable.
    pub(super) fn new(tag: &str) -> Option<Self> {
        let Ok(base) = discover() else {
            eprintln!("no writable cgroup here: not exercised");
            return None;
        };
        let dir = base.join(format!("procsup-test-{tag}-{}", std::process::id()));
        if let Err(e) = fs::create_dir(&dir) {
            eprintln!("cgroup {} not writable ({e}): not exercised", base.display());
            return None;
        }
        Some(ScratchCgroup(dir))
    }
}

#[cfg(test)]
impl Drop for ScratchCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroup's files as a plain directory: what `limit` writes, and
    /// that a reused cgroup gets the defaults back for what its new child
    /// does not set.
    #[test]
    fn limits_are_written_and_reset_on_reuse() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.events"), "populated 0\n").unwrap();
        fs::write(dir.path().join("memory.events"), "oom 0\noom_kill 3\n").unwrap();
        let mut cg = ChildCgroup::open(dir.path()).unwrap();
        let read = |f: &str| fs::read_to_string(dir.path().join(f)).ok();
        let limits = CgroupLimits { memory_max: Some(1 << 20), tasks_max: Some(8), ..Default::default() };
        cg.limit(&limits).unwrap();
        assert_eq!(read("memory.max").as_deref(), Some("1048576"));
        assert_eq!(read("pids.max").as_deref(), Some("8"));
        assert_eq!(read("memory.oom.group").as_deref(), Some("1"));
        assert_eq!(read("cpu.max"), None, "a default is not written to a fresh cgroup");
        assert!(!cg.oom_killed());
        fs::write(dir.path().join("memory.events"), "oom 1\noom_kill 4\n").unwrap();
        assert!(cg.oom_killed());
        // Reused by a child with only a CPU weight.
        cg.limit(&CgroupLimits { cpu_weight: Some(5), ..Default::default() }).unwrap();
        assert_eq!(read("memory.max").as_deref(), Some("max"));
        assert_eq!(read("pids.max").as_deref(), Some("max"));
        assert_eq!(read("memory.oom.group").as_deref(), Some("0"));
        assert_eq!(read("cpu.weight").as_deref(), Some("5"));
        assert!(!cg.oom_killed(), "without a memory limit the OOM count is not watched");
        cg.limit(&CgroupLimits::default()).unwrap();
        assert_eq!(read("cpu.weight").as_deref(), Some("100"));
    }

    /// `restart_above_memory` is `memory.high`; a rise of the own `high`
    /// count is seen once, and only when anonymous memory is above the
    /// threshold; a reused cgroup without it watches nothing.
    #[test]
    fn a_memory_threshold_is_memory_high_and_its_crossing_is_seen_once() {
        let dir = tempfile::tempdir().unwrap();
        let events = |high: u32| format!("low 0\nhigh {high}\nmax 0\noom 0\noom_kill 0\n");
        let stat = |anon: u64| format!("anon {anon}\nfile 900000\nkernel 10\n");
        fs::write(dir.path().join("cgroup.events"), "populated 0\n").unwrap();
        fs::write(dir.path().join("memory.events"), events(50)).unwrap();
        fs::write(dir.path().join("memory.events.local"), events(7)).unwrap();
        fs::write(dir.path().join("memory.stat"), stat(5000)).unwrap();
        let mut cg = ChildCgroup::open(dir.path()).unwrap();
        let seen = |cg: &mut ChildCgroup| match cg.memory_check() {
            MemoryCheck::Below => None,
            MemoryCheck::Above(memory, threshold) => Some((memory, threshold)),
            MemoryCheck::Unreadable(e) => panic!("{e}"),
        };
        let read = |f: &str| fs::read_to_string(dir.path().join(f)).ok();
        cg.limit(&CgroupLimits { restart_above: Some(4096), ..Default::default() }).unwrap();
        assert_eq!(read("memory.high").as_deref(), Some("4096"));
        assert_eq!(seen(&mut cg), None, "the count when it was spawned is no rise");
        // A crossing below it (a cgroup the tree made) is not its own.
        fs::write(dir.path().join("memory.events"), events(60)).unwrap();
        assert_eq!(seen(&mut cg), None);
        fs::write(dir.path().join("memory.events.local"), events(9)).unwrap();
        assert_eq!(seen(&mut cg), Some((Some(5000), 4096)));
        assert_eq!(seen(&mut cg), None, "the same count twice is one crossing");
        // Page cache crossed it, the heap is below: the kernel reclaims.
        fs::write(dir.path().join("memory.stat"), stat(1000)).unwrap();
        fs::write(dir.path().join("memory.events.local"), events(10)).unwrap();
        assert_eq!(seen(&mut cg), None);
        fs::write(dir.path().join("memory.stat"), stat(4096)).unwrap();
        fs::write(dir.path().join("memory.events.local"), events(11)).unwrap();
        assert_eq!(seen(&mut cg), Some((Some(4096), 4096)));
        cg.limit(&CgroupLimits::default()).unwrap();
        assert_eq!(read("memory.high").as_deref(), Some("max"));
        assert!(cg.memory.is_none());
        fs::write(dir.path().join("memory.events.local"), events(20)).unwrap();
        assert_eq!(seen(&mut cg), None, "without a threshold nothing is watched");
        // Before Linux 5.2 there is no .local: memory.events is watched.
        fs::remove_file(dir.path().join("memory.events.local")).unwrap();
        cg.limit(&CgroupLimits { restart_above: Some(4096), ..Default::default() }).unwrap();
        fs::write(dir.path().join("memory.events"), events(61)).unwrap();
        assert_eq!(seen(&mut cg), Some((Some(4096), 4096)));
    }

    #[test]
    fn the_oom_kill_count_is_read_from_memory_events() {
        let text = "low 0\nhigh 3\nmax 9\noom 2\noom_kill 2\noom_group_kill 1\n";
        assert_eq!(oom_kill_count(text), 2);
        assert_eq!(oom_kill_count("oom 1\n"), 0);
        assert_eq!(event_count(text, "high"), 3);
        assert_eq!(event_count(text, "oom"), 2, "oom is not oom_kill's prefix");
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/sys/fs/cgroup/my\040dir"), "/sys/fs/cgroup/my dir");
        assert_eq!(unescape(r"/a\\b"), r"/a\\b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
