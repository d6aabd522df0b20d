//! The state directory: one record per live child, so that a host that
//! restarts after a crash finds and stops what its previous run left.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::Pid;

/// A child recorded by an earlier run whose process is still alive with the
/// recorded start time: surely the same process.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Orphan {
    /// The process name (the record's file name).
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
        /// The record's name.
        name: String,
        /// Why.
        reason: Discard,
    },
    /// The record is not a regular file (a symlink, a directory...): it was
    /// neither followed nor removed, and nothing was signalled.
    Refused {
        /// The record's name.
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
    fn to_text(self) -> String {
        format!("pid {}\npgid {}\nstart_time {}\n", self.pid, self.pgid, self.start_time)
    }

    fn parse(text: &str) -> Option<Record> {
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

/// The start time of a process (`/proc/<pid>/stat` field 22), or `None`
/// when there is no such process (or no /proc).
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // after it start after the last ')'. Field 3 is the first there.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// The state directory itself.
#[derive(Debug)]
pub(crate) struct StateDir {
    path: PathBuf,
}

fn refuse(path: &Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, format!("{}: {why}", path.display()))
}

impl StateDir {
    /// Opens (creating with mode 0700 if missing) a state directory owned by
    /// the current user.
    pub(crate) fn open(path: &Path) -> io::Result<StateDir> {
        match DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let meta = fs::symlink_metadata(path)?;
        if meta.file_type().is_symlink() {
            return Err(refuse(path, "the state directory is a symlink"));
        }
        if !meta.is_dir() {
            return Err(refuse(path, "the state directory is not a directory"));
        }
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(refuse(path, "the state directory is not owned by the current user"));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(refuse(path, "the state directory is writable by others"));
        }
        Ok(StateDir { path: path.to_owned() })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the record of `name` atomically: a temporary file, then rename.
    pub(crate) fn write(&self, name: &str, record: Record) -> io::Result<()> {
        let tmp = self.path.join(format!(".{name}.tmp"));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(record.to_text().as_bytes())?;
        drop(f);
        fs::rename(&tmp, self.path.join(name))
    }

    /// Removes the record of `name` if it names `pid`.
    pub(crate) fn remove(&self, name: &str, pid: i32) {
        let path = self.path.join(name);
        if matches!(read_record(&path), Ok(Some(r)) if r.pid == pid) {
            let _ = fs::remove_file(&path);
        }
    }

    fn discard(&self, name: String, reason: Discard) -> OrphanScan {
        let _ = fs::remove_file(self.path.join(&name));
        OrphanScan::Discarded { name, reason }
    }

    /// Every record, checked; `skip` names pids not to consider (our own
    /// live children, orphans already being stopped).
    pub(crate) fn scan(&self, skip: impl Fn(i32) -> bool) -> io::Result<Vec<OrphanScan>> {
        let mut out = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // our temporary files
            }
            names.push(name);
        }
        names.sort();
        for name in names {
            let path = self.path.join(&name);
            let meta = fs::symlink_metadata(&path)?;
            if !meta.file_type().is_file() {
                let what = if meta.file_type().is_symlink() { "a symlink" } else { "not a regular file" };
                out.push(OrphanScan::Refused { name, reason: what.into() });
                continue;
            }
            let record = match read_record(&path) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    out.push(self.discard(name, Discard::Junk));
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    out.push(OrphanScan::Refused { name, reason: "a symlink".into() });
                    continue;
                }
                Err(e) => return Err(e),
            };
            if skip(record.pid) {
                continue;
            }
            out.push(match start_time(record.pid) {
                None => self.discard(name, Discard::Gone),
                Some(t) if t != record.start_time => self.discard(name, Discard::Recycled),
                Some(_) => OrphanScan::Alive(Orphan {
                    name,
                    pid: Pid::from_raw(record.pid),
                    pgid: Pid::from_raw(record.pgid),
                    start_time: record.start_time,
                }),
            });
        }
        Ok(out)
    }
}

/// Reads a record without following a symlink. `Ok(None)`: junk.
fn read_record(path: &Path) -> io::Result<Option<Record>> {
    let mut f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let mut text = String::new();
    // Records are tiny: anything longer is junk, and so is non-UTF-8.
    if Read::by_ref(&mut f).take(4096).read_to_string(&mut text).is_err() || text.len() >= 4096 {
        return Ok(None);
    }
    Ok(Record::parse(&text))
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
