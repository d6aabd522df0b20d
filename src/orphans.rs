//! Orphan records: what a host writes about each live child, so that a
//! host that restarts after a crash finds and stops what its previous run
//! left. The directory they live in is [`crate::state_dir`].

use std::fs;

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
    /// Its process group (equal to `pid` when it led its own group).
    pub pgid: Pid,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
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
        Orphan { name: name.into(), pid, pgid, start_time }
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
    /// The record could not be parsed (empty, truncated, garbage).
    Junk,
}

impl Discard {
    /// `"gone"`, `"recycled"` or `"junk"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Discard::Gone => "gone",
            Discard::Recycled => "recycled",
            Discard::Junk => "junk",
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
    /// The entry is not a readable record (a symlink, a FIFO, a socket, a
    /// directory, a name that is not UTF-8, a file that cannot be opened):
    /// it was neither followed nor removed, and nothing was signalled.
    Refused {
        /// The entry's file name (lossy where it is not UTF-8).
        name: String,
        /// What it is.
        reason: String,
    },
}

/// A parsed record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) pid: i32,
    pub(crate) pgid: i32,
    pub(crate) start_time: u64,
}

impl Record {
    pub(crate) fn to_text(self) -> String {
        format!("pid {}\npgid {}\nstart_time {}\n", self.pid, self.pgid, self.start_time)
    }

    pub(crate) fn parse(text: &str) -> Option<Record> {
        let mut pid = None;
        let mut pgid = None;
        let mut start_time = None;
        for line in text.lines() {
            let (key, value) = line.split_once(' ')?;
            match key {
                "pid" => pid = Some(value.parse::<i32>().ok().filter(|&p| p > 1)?),
                "pgid" => pgid = Some(value.parse::<i32>().ok().filter(|&p| p > 1)?),
                "start_time" => start_time = Some(value.parse::<u64>().ok()?),
                _ => return None,
            }
        }
        if !text.ends_with('\n') {
            return None; // truncated
        }
        Some(Record { pid: pid?, pgid: pgid?, start_time: start_time? })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_junk_is_rejected() {
        let r = Record { pid: 1234, pgid: 1234, start_time: 987654 };
        assert_eq!(Record::parse(&r.to_text()), Some(r));
        for junk in [
            "",
            "pid 12",
            "pid 12\npgid 12\n",
            "pid 12\npgid 12\nstart_time 5",
            "pid x\npgid 1\nstart_time 1\n",
            "pid 0\npgid 0\nstart_time 1\n",
            "pid 12\npgid 12\nstart_time 1\nextra 1\n",
            "\u{0}\u{1}",
        ] {
            assert_eq!(Record::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id() as i32;
        let t = start_time(me).expect("/proc/self/stat");
        assert_eq!(start_time(me), Some(t));
        assert_eq!(start_time(i32::MAX), None);
    }
}
