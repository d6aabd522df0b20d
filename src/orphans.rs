//! Orphan records: what a host writes about each live child, so that a
//! host that restarts after a crash finds and stops what its previous run
//! left. The directory they live in is [`crate::state_dir`].

use std::fs;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;

/// A child recorded by an earlier run whose process is still alive with the
/// recorded start time: surely the same process.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Orphan {
    /// The process name (from the record's file name, `<name>.<pid>`).
    pub name: String,
    /// Its pid.
    pub pid: Pid,
    /// Its process group (equal to `pid` when it led its own group). Only
    /// ever signalled when it is `pid`; otherwise the host's group, which
    /// reads 0 where that group's leader is outside the host's pid
    /// namespace, or 1 under an init that made no group for the host.
    pub pgid: Pid,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
    /// Its session: `None` when the record predates sessions in records
    /// (then only a live leader is found); `Some(0)` when the session was
    /// not visible from the host's pid namespace (its leader is outside
    /// it, as for a tree `docker exec` started), which is how `/proc` in
    /// that namespace shows the session of every member too.
    pub sid: Option<Pid>,
    /// The cgroup that holds its tree, when it had one.
    pub cgroup: Option<PathBuf>,
    /// Whether the recorded process itself still lives; when not, only the
    /// rest of its tree (its cgroup, or the members of its process group
    /// and session that started after it) is left.
    pub leader_alive: bool,
}

impl Orphan {
    /// An orphan as a [`Sys`](crate::Sys) of the host's own reports it
    /// from [`scan_orphans`](crate::Sys::scan_orphans) in
    /// [`OrphanScan::Alive`]. `pgid` equals `pid` when it led its own
    /// process group; `start_time` is whatever identifies the process
    /// across pid reuse on that system (on Linux, `/proc/<pid>/stat` field
    /// 22).
    ///
    /// ```
    /// use procsup::{Orphan, OrphanScan, Pid};
    /// let o = Orphan::new("web", Pid::from_raw(4242), Pid::from_raw(4242), 991_234);
    /// assert_eq!((o.name.as_str(), o.pid.as_raw()), ("web", 4242));
    /// let _found = OrphanScan::Alive(o);
    /// ```
    pub fn new(name: impl Into<String>, pid: Pid, pgid: Pid, start_time: u64) -> Self {
        Orphan { name: name.into(), pid, pgid, start_time, sid: None, cgroup: None, leader_alive: true }
    }
}

/// Why a record was removed without signalling anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Discard {
    /// No process has that pid any more.
    Gone,
    /// A process has that pid but started at another time: a recycled pid.
    Recycled,
    /// The file is procsup's (it starts with the record header) but not a
    /// whole record after it (truncated, garbage), or the record names a
    /// cgroup procsup did not make. A file without the header is never
    /// discarded: it is [`OrphanScan::Refused`] and left where it is.
    Junk,
    /// The record was written before the last boot: nothing it names can
    /// still be running.
    OtherBoot,
}

impl Discard {
    /// `"gone"`, `"recycled"`, `"junk"` or `"other_boot"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Discard::Gone => "gone",
            Discard::Recycled => "recycled",
            Discard::Junk => "junk",
            Discard::OtherBoot => "other_boot",
        }
    }
}

/// What scanning one record found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrphanScan {
    /// The recorded process is alive: it is to be stopped.
    Alive(Orphan),
    /// The record was removed; nothing was signalled.
    Discarded {
        /// The process name it was recorded for (the file name where the
        /// record could not be parsed).
        name: String,
        /// Why.
        reason: Discard,
    },
    /// The entry is not a readable record of procsup's (a file without the
    /// record header, an empty file, a hidden file, a symlink, a FIFO, a
    /// socket, a directory, a name that is not UTF-8, a file that cannot be
    /// opened): it was neither followed nor changed nor removed, and
    /// nothing was signalled.
    Refused {
        /// The entry's file name (lossy where it is not UTF-8).
        name: String,
        /// What it is.
        reason: String,
    },
}

/// The first line of every record: what proves that a file in the state
/// directory is procsup's. A file without it is never read as a record,
/// never removed, and names nothing that is signalled.
pub(crate) const HEADER: &str = "procsup-record 1\n";

/// What the bytes of a state-directory file are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A whole record.
    Record(Record),
    /// procsup's (it starts with [`HEADER`]) but not a whole record after
    /// it: garbage, an unknown key, a missing field or last newline. A
    /// record is written whole and renamed into place, so this is damage,
    /// not a write a crash interrupted.
    Junk,
    /// Not provably procsup's: empty, no header, or the header of another
    /// format version. Why, for the warning.
    Foreign(&'static str),
}

/// A parsed record: what finds a child's tree after a crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) pid: i32,
    pub(crate) pgid: i32,
    /// The session; `None` in records written before it was recorded, 0
    /// where it was not visible from the host's pid namespace.
    pub(crate) sid: Option<i32>,
    pub(crate) start_time: u64,
    /// `/proc/sys/kernel/random/boot_id` when written.
    pub(crate) boot_id: Option<String>,
    /// The child's own cgroup directory.
    pub(crate) cgroup: Option<PathBuf>,
}

impl Record {
    pub(crate) fn to_text(&self) -> String {
        let mut t = format!("{HEADER}pid {}\npgid {}\n", self.pid, self.pgid);
        if let Some(sid) = self.sid {
            t.push_str(&format!("sid {sid}\n"));
        }
        t.push_str(&format!("start_time {}\n", self.start_time));
        if let Some(b) = &self.boot_id {
            t.push_str(&format!("boot_id {b}\n"));
        }
        if let Some(c) = &self.cgroup {
            t.push_str(&format!("cgroup {}\n", c.display()));
        }
        t
    }

    /// Reads a file's bytes: a record only after [`HEADER`].
    pub(crate) fn parse(bytes: &[u8]) -> Parsed {
        let Some(body) = bytes.strip_prefix(HEADER.as_bytes()) else {
            return Parsed::Foreign(if bytes.is_empty() {
                "an empty file, not a procsup record"
            } else if bytes.starts_with(b"procsup-record ") {
                "a procsup record of another format version"
            } else {
                "not a procsup record (no \"procsup-record 1\" first line)"
            });
        };
        match std::str::from_utf8(body).ok().and_then(Record::parse_body) {
            Some(r) => Parsed::Record(r),
            None => Parsed::Junk,
        }
    }

    /// The lines after the header.
    fn parse_body(text: &str) -> Option<Record> {
        let mut pid = None;
        let mut pgid = None;
        let mut sid = None;
        let mut start_time = None;
        let mut boot_id = None;
        let mut cgroup = None;
        for line in text.lines() {
            let (key, value) = line.split_once(' ')?;
            match key {
                "pid" => pid = Some(value.parse::<i32>().ok().filter(|&p| p > 1)?),
                // 0 and 1 are real for a child that led no group (see
                // `Orphan::pgid`); a group is only signalled when it is `pid`.
                "pgid" => pgid = Some(value.parse::<i32>().ok().filter(|&p| p >= 0)?),
                "sid" => sid = Some(value.parse::<i32>().ok().filter(|&p| p >= 0)?),
                "start_time" => start_time = Some(value.parse::<u64>().ok()?),
                "boot_id" if !value.is_empty() => boot_id = Some(value.to_owned()),
                "cgroup" if value.starts_with('/') => cgroup = Some(PathBuf::from(value)),
                _ => return None,
            }
        }
        if !text.ends_with('\n') {
            return None; // truncated
        }
        Some(Record { pid: pid?, pgid: pgid?, sid, start_time: start_time?, boot_id, cgroup })
    }
}

/// The first line of a host record: what a host writes once, before it
/// makes its cgroup directory, so that a later host finds every cgroup it
/// made, also one whose child's own record was never written.
pub(crate) const HOST_HEADER: &str = "procsup-host 1\n";

/// A host record: the host process and the cgroup directory (`<base>/
/// procsup-<pid>-<start>-<n>`) that holds its children's cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostRecord {
    pub(crate) pid: i32,
    pub(crate) start_time: u64,
    pub(crate) boot_id: Option<String>,
    pub(crate) root: PathBuf,
}

impl HostRecord {
    pub(crate) fn to_text(&self) -> String {
        let mut t = format!("{HOST_HEADER}pid {}\nstart_time {}\n", self.pid, self.start_time);
        if let Some(b) = &self.boot_id {
            t.push_str(&format!("boot_id {b}\n"));
        }
        t.push_str(&format!("cgroup {}\n", self.root.display()));
        t
    }

    /// A whole host record whose cgroup directory is named as procsup
    /// names it for that host process; `None` for anything else.
    pub(crate) fn parse(bytes: &[u8]) -> Option<HostRecord> {
        let text = std::str::from_utf8(bytes.strip_prefix(HOST_HEADER.as_bytes())?).ok()?;
        if !text.ends_with('\n') {
            return None;
        }
        let (mut pid, mut start_time, mut boot_id, mut root) = (None, None, None, None);
        for line in text.lines() {
            let (key, value) = line.split_once(' ')?;
            match key {
                "pid" => pid = Some(value.parse::<i32>().ok().filter(|&p| p > 1)?),
                "start_time" => start_time = Some(value.parse::<u64>().ok()?),
                "boot_id" if !value.is_empty() => boot_id = Some(value.to_owned()),
                "cgroup" if value.starts_with('/') => root = Some(PathBuf::from(value)),
                _ => return None,
            }
        }
        let r = HostRecord { pid: pid?, start_time: start_time?, boot_id, root: root? };
        let name = r.root.file_name()?.to_str()?;
        let prefix = format!("procsup-{}-{}-", r.pid, r.start_time);
        name.strip_prefix(&prefix)?.parse::<u64>().ok()?;
        Some(r)
    }

    /// The name of the record's file in the state directory.
    pub(crate) fn file_name(root: &Path) -> Option<String> {
        Some(format!("{HOST_PREFIX}{}", root.file_name()?.to_str()?))
    }
}

/// The prefix of a host record's file name; hidden, so it is never taken
/// for a child's record.
pub(crate) const HOST_PREFIX: &str = ".procsup-host.";

/// The cgroups of children under a host's cgroup directory: `(dir, name)`
/// of each `c<k>-<name>` that is a cgroup2 directory.
pub(crate) fn host_children(root: &Path) -> Vec<(PathBuf, String)> {
    let Ok(entries) = fs::read_dir(root) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name();
            let (k, name) = file.to_str()?.strip_prefix('c')?.split_once('-')?;
            k.parse::<u64>().ok()?;
            let dir = e.path();
            (!name.is_empty() && dir.join("cgroup.procs").is_file()).then(|| (dir, name.to_owned()))
        })
        .collect()
}

/// The first process in cgroup `dir`, and its start time.
pub(crate) fn first_member(dir: &Path) -> Option<(i32, u64)> {
    let procs = fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()).find_map(|pid| Some((pid, start_time(pid)?)))
}

/// The state (`/proc/<pid>/stat` field 3) and start time (field 22, clock
/// ticks since boot) of a process, or `None` when there is no such process
/// (or no /proc).
fn stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // after it start after the last ')'. Field 3 is the first there.
    let mut after = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = after.next()?.chars().next()?;
    Some((state, after.nth(22 - 4)?.parse().ok()?))
}

/// The start time of a process (`/proc/<pid>/stat` field 22), or `None`
/// when there is no such process (or no /proc). A zombie has one too.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(_, t)| t)
}

/// The start time of a process that still runs: `None` also for a zombie
/// (or a dying `X`). A zombie orphan is gone for us: it is not our child,
/// so its reaping is its parent's business, and it has no tree left to
/// stop but what its group holds.
pub(crate) fn live_start_time(pid: i32) -> Option<u64> {
    stat(pid).filter(|&(state, _)| !matches!(state, 'Z' | 'X')).map(|(_, t)| t)
}

/// This boot's id, which records carry so that a record from an earlier
/// boot is never taken for a live process.
pub(crate) fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// `/proc/<pid>/stat`: state, process group, session and start time.
fn stat_tree(pid: i32) -> Option<(char, i32, i32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // after it start after the last ')'. Field 3 is the first there.
    let mut f = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = f.next()?.chars().next()?;
    let pgrp = f.nth(1)?.parse().ok()?;
    let session = f.next()?.parse().ok()?;
    let start = f.nth(22 - 7)?.parse().ok()?;
    Some((state, pgrp, session, start))
}

/// The live members of a crashed run's process group `pgid` whose leader
/// is gone: processes (not zombies) of that group AND of session `sid`
/// that started no earlier than the leader (`after`). While any member of
/// the old group lives, its id cannot be given to another group; a process
/// that matches all three is provably of that tree. Records without a
/// session (`None`: written before sessions were recorded) find none.
///
/// A recorded session of 0 is a real one: `getsid` and `/proc/<pid>/stat`
/// say 0 for a session whose leader is outside the reader's pid namespace
/// (a host that `docker exec` or `nsenter` started, whose children never
/// called `setsid`). Its members read 0 as well, so they are matched by
/// group and start time; the session narrows nothing there.
pub(crate) fn orphan_members(pgid: i32, sid: Option<i32>, after: u64) -> Vec<i32> {
    let Some(sid) = sid.filter(|&s| s >= 0) else { return Vec::new() };
    if pgid <= 1 {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|&pid| pid != me && stat_tree(pid).is_some_and(|st| member_stat(st, pgid, sid, after)))
        .collect()
}

/// Whether `pid` is the process that started at `start_time` and is not a
/// zombie (a zombie is gone: PID 1 may never reap it).
pub(crate) fn is_live(pid: i32, start_time: u64) -> bool {
    live_start_time(pid) == Some(start_time)
}

/// Whether `pid` is a live member of the crashed run's tree (see
/// [`orphan_members`]); checked again right before each signal.
pub(crate) fn is_member(pid: i32, pgid: i32, sid: Option<i32>, after: u64) -> bool {
    sid.is_some_and(|sid| stat_tree(pid).is_some_and(|st| member_stat(st, pgid, sid, after)))
}

/// Whether a process whose `/proc/<pid>/stat` reads `(state, pgrp,
/// session, start_time)` is a live member of group `pgid` in session `sid`
/// that started no earlier than `after`.
fn member_stat((state, pgrp, session, start): (char, i32, i32, u64), pgid: i32, sid: i32, after: u64) -> bool {
    !matches!(state, 'Z' | 'X') && pgrp == pgid && session == sid && start >= after
}

/// Whether a recorded cgroup is one this crate made: `<base>/procsup-<pid>-
/// <start>-<n>/c<k>-<name>`, a cgroup2 directory, for the record `name`.
/// The host's pid and start time in the name make it unique to that host
/// process within a boot.
pub(crate) fn owned_cgroup(dir: &Path, name: &str) -> bool {
    let leaf = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let parent = dir.parent().and_then(Path::file_name).and_then(|n| n.to_str()).unwrap_or("");
    let leaf_ok = leaf
        .strip_prefix('c')
        .and_then(|r| r.split_once('-'))
        .is_some_and(|(k, n)| k.parse::<u64>().is_ok() && n == name);
    leaf_ok && parent.starts_with("procsup-") && dir.join("cgroup.procs").is_file()
}

/// What is left of the tree a record names: an orphan to stop, or why
/// the record is to be removed. Nothing is signalled here.
pub(crate) fn judge(name: String, r: Record) -> Result<Orphan, Discard> {
    if let (Some(then), Some(now)) = (&r.boot_id, boot_id()) {
        if *then != now {
            return Err(Discard::OtherBoot);
        }
    }
    let cgroup = match r.cgroup {
        Some(dir) if owned_cgroup(&dir, &name) => Some(dir),
        Some(_) => return Err(Discard::Junk),
        None => None,
    };
    // The leader as a zombie (PID 1 may never reap it) is gone, yet it
    // is still the recorded process, and holds its pid.
    let leader = stat(r.pid).map(|(state, t)| (state, t == r.start_time));
    let leader_alive = matches!(leader, Some((state, true)) if state != 'Z' && state != 'X');
    let recycled = matches!(leader, Some((_, false)));
    let rest_lives = match &cgroup {
        Some(dir) => cgroup_populated(dir),
        // Another process has the leader's pid: the pid (and so the
        // group id) was free once, so nothing of that group is left.
        None if recycled => false,
        None => r.pgid == r.pid && !orphan_members(r.pgid, r.sid, r.start_time).is_empty(),
    };
    if !leader_alive && !rest_lives {
        if let Some(dir) = &cgroup {
            remove_cgroup(dir);
        }
        let reason = if recycled && cgroup.is_none() { Discard::Recycled } else { Discard::Gone };
        return Err(reason);
    }
    Ok(Orphan {
        name,
        pid: Pid::from_raw(r.pid),
        pgid: Pid::from_raw(r.pgid),
        start_time: r.start_time,
        sid: r.sid.map(Pid::from_raw),
        cgroup,
        leader_alive,
    })
}

/// Whether a live process is in the cgroup `dir` (`populated 1`); false
/// when it is gone.
pub(crate) fn cgroup_populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|t| t.lines().any(|l| l == "populated 1"))
}

/// Removes a cgroup left by a crashed run once it is empty, and its
/// per-host parent when that is empty too (`rmdir` fails otherwise).
pub(crate) fn remove_cgroup(dir: &Path) {
    if fs::remove_dir(dir).is_ok() {
        if let Some(parent) = dir.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record from text after the header, which must be whole.
    fn rec(body: &str) -> Record {
        match Record::parse(format!("{HEADER}{body}").as_bytes()) {
            Parsed::Record(r) => r,
            other => panic!("{body:?}: {other:?}"),
        }
    }

    #[test]
    fn records_round_trip_and_junk_after_the_header_is_rejected() {
        let r = Record { pid: 1234, pgid: 1234, sid: Some(77), start_time: 987654, boot_id: None, cgroup: None };
        assert!(r.to_text().starts_with("procsup-record 1\npid 1234\n"), "{:?}", r.to_text());
        assert_eq!(Record::parse(r.to_text().as_bytes()), Parsed::Record(r.clone()));
        let full =
            Record { boot_id: Some("0b7c-9f".into()), cgroup: Some("/sys/fs/cgroup/procsup-1-2-0/c1-web".into()), ..r };
        assert_eq!(Record::parse(full.to_text().as_bytes()), Parsed::Record(full));
        // Records without a session or a boot id parse.
        assert_eq!(rec("pid 12\npgid 12\nstart_time 5\n").sid, None);
        for junk in [
            "",
            "\n",
            "pid 12",
            "pid 12\npgid 12\n",
            "pid 12\npgid 12\nstart_time 5",
            "pid x\npgid 1\nstart_time 1\n",
            "pid 0\npgid 0\nstart_time 1\n",
            "pid 1\npgid 1\nstart_time 1\n",
            "pid 12\npgid -1\nstart_time 1\n",
            "pid 12\npgid 12\nstart_time 1\nextra 1\n",
            "pid 12\npgid 12\nstart_time 1\ncgroup relative/path\n",
            "pid 12\npgid 12\nsid -3\nstart_time 1\n",
            "procsup-record 1\npid 12\npgid 12\nstart_time 1\n",
            "\u{0}\u{1}",
        ] {
            let text = format!("{HEADER}{junk}");
            assert_eq!(Record::parse(text.as_bytes()), Parsed::Junk, "{text:?}");
        }
        let mut bad_utf8 = HEADER.as_bytes().to_vec();
        bad_utf8.extend_from_slice(b"pid 12\npgid 12\nstart_time \xff\n");
        assert_eq!(Record::parse(&bad_utf8), Parsed::Junk);
    }

    #[test]
    fn only_a_file_with_the_header_is_procsups() {
        // What a user keeps in a directory, and records without the header
        // (as procsup wrote them before it had one): none is procsup's.
        for foreign in [
            &b""[..],
            b"important\n",
            b"data\n",
            b"\xff\xfe\x00",
            b"pid 12\npgid 12\nstart_time 5\n",
            b"procsup-record 2\npid 12\npgid 12\nstart_time 5\n",
            b"procsup-record 1",
            b"procsup-record 1 \npid 12\npgid 12\nstart_time 5\n",
            b" procsup-record 1\npid 12\npgid 12\nstart_time 5\n",
            b"PROCSUP-RECORD 1\npid 12\npgid 12\nstart_time 5\n",
            b"procsup-record 1\r\npid 12\r\npgid 12\r\nstart_time 5\r\n",
        ] {
            assert!(matches!(Record::parse(foreign), Parsed::Foreign(_)), "{:?}", String::from_utf8_lossy(foreign));
        }
        let why = |bytes: &[u8]| match Record::parse(bytes) {
            Parsed::Foreign(why) => why,
            other => panic!("{other:?}"),
        };
        assert!(why(b"").contains("empty"));
        assert!(why(b"procsup-record 7\n").contains("another format version"));
        assert!(why(b"notes\n").contains("procsup-record 1"));
    }

    #[test]
    fn a_session_not_visible_here_is_recorded_as_0_and_matches_members_that_read_0() {
        // In a pid namespace that its session's leader is outside of (a host
        // that `docker exec` started), getsid() and /proc say session 0.
        let text = "pid 40\npgid 40\nsid 0\nstart_time 500\n";
        let r = rec(text);
        assert_eq!(r.sid, Some(0), "a recorded 0 is a session, not a missing one");
        assert_eq!(r.to_text(), format!("{HEADER}{text}"));
        // A member of the group, started after the leader, as /proc in that
        // namespace shows it: found.
        assert!(member_stat(('S', 40, 0, 501), 40, 0, 500));
        assert!(member_stat(('R', 40, 0, 500), 40, 0, 500), "the same clock tick");
        // Not: a zombie, another group, a visible session, an earlier start.
        assert!(!member_stat(('Z', 40, 0, 501), 40, 0, 500));
        assert!(!member_stat(('S', 41, 0, 501), 40, 0, 500));
        assert!(!member_stat(('S', 40, 7, 501), 40, 0, 500));
        assert!(!member_stat(('S', 40, 0, 499), 40, 0, 500));
        // A record written before sessions were recorded finds no member,
        // not even this test process in its own group and session.
        let old = rec("pid 40\npgid 40\nstart_time 500\n");
        assert_eq!(old.sid, None);
        assert_eq!(old.to_text(), format!("{HEADER}pid 40\npgid 40\nstart_time 500\n"));
        let me = std::process::id() as i32;
        let (group, session) = (nix::unistd::getpgrp().as_raw(), nix::unistd::getsid(None).unwrap().as_raw());
        assert!(!is_member(me, group, None, 0));
        assert!(is_member(me, group, Some(session), 0), "the same process with its session is one");
    }

    #[test]
    fn a_child_in_a_host_group_not_visible_here_is_still_judged_by_its_leader() {
        // A child that led no group has the host's: 0 where that group's
        // leader is outside this pid namespace, 1 under an init that made
        // none. Such a record is not junk: its live leader is an orphan.
        let me = std::process::id() as i32;
        let start = start_time(me).unwrap();
        for pgid in [0, 1] {
            let r = rec(&format!("pid {me}\npgid {pgid}\nsid 0\nstart_time {start}\n"));
            let o = judge("web".into(), r).unwrap();
            assert!(o.leader_alive && o.pid.as_raw() == me && o.pgid.as_raw() == pgid, "{o:?}");
        }
        // Gone, its group is not looked into: it never led one.
        let gone = Record { pid: i32::MAX, pgid: 0, sid: Some(0), start_time: 1, boot_id: None, cgroup: None };
        assert_eq!(judge("web".into(), gone), Err(Discard::Gone));
    }

    #[test]
    fn records_from_another_boot_and_foreign_cgroups_are_removed_unsignalled() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::state_dir::StateDir::open(&tmp.path().join("state")).unwrap();
        let me = std::process::id() as i32;
        let this_boot = boot_id().expect("/proc/sys/kernel/random/boot_id");
        // This very process, so that only the boot id or the cgroup can
        // make the difference.
        let same = Record {
            pid: me,
            pgid: nix::unistd::getpgrp().as_raw(),
            sid: None,
            start_time: start_time(me).unwrap(),
            boot_id: Some(this_boot),
            cgroup: None,
        };
        dir.write("same", same.clone()).unwrap();
        dir.write("other", Record { boot_id: Some("another-boot".into()), ..same.clone() }).unwrap();
        dir.write("foreign", Record { cgroup: Some("/sys/fs/cgroup".into()), ..same.clone() }).unwrap();
        let scans = dir.scan(|_| false).unwrap();
        assert_eq!(scans[0], OrphanScan::Discarded { name: "foreign".into(), reason: Discard::Junk });
        assert_eq!(scans[1], OrphanScan::Discarded { name: "other".into(), reason: Discard::OtherBoot });
        assert!(matches!(&scans[2], OrphanScan::Alive(o) if o.leader_alive && o.pid.as_raw() == me), "{scans:?}");
        let mut left: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.retain(|n| !n.starts_with('.'));
        assert_eq!(left, [format!("same.{me}")]);
    }

    #[test]
    fn only_cgroups_named_as_procsup_makes_them_are_owned() {
        let tmp = tempfile::tempdir().unwrap();
        let leaf = tmp.path().join("procsup-12-345-0").join("c3-web");
        fs::create_dir_all(&leaf).unwrap();
        fs::write(leaf.join("cgroup.procs"), "").unwrap();
        assert!(owned_cgroup(&leaf, "web"));
        assert!(!owned_cgroup(&leaf, "api"), "another record's name");
        let other = tmp.path().join("system.slice").join("c3-web");
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join("cgroup.procs"), "").unwrap();
        assert!(!owned_cgroup(&other, "web"), "not under a per-host directory");
        let bare = tmp.path().join("procsup-1-2-0").join("c1-web");
        fs::create_dir_all(&bare).unwrap();
        assert!(!owned_cgroup(&bare, "web"), "not a cgroup directory");
    }

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id() as i32;
        let t = start_time(me).expect("/proc/self/stat");
        assert_eq!(start_time(me), Some(t));
        assert_eq!(start_time(i32::MAX), None);
    }
}
