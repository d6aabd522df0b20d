//! The state directory: one record per live child, held by one host at a
//! time.
//!
//! - The directory is opened once (`O_DIRECTORY | O_NOFOLLOW`), checked
//!   through that fd (owned by us, not writable by others), and from then
//!   on every entry is reached through the fd (the `openat` family), so a
//!   path swapped under us is never followed.
//! - The host holds `flock(LOCK_EX)` on [`LOCK_FILE`] for its whole life;
//!   the kernel drops it when the host dies, however it dies (s6's
//!   lock-fd). A second live host is refused before it touches a record.
//! - Records are named `<name>.<pid>`: per child, never per process name,
//!   so a rolling restart's two children (and every instance) each have
//!   their own. Records of the older one-per-name format (`<name>`) are
//!   still read.
//! - An entry that is not a readable regular file (a FIFO, a socket, a
//!   directory, a device, a symlink, a name that is not UTF-8, one that
//!   vanishes or cannot be read) is skipped with one warning and left
//!   where it is. Nothing in a scan blocks, and nothing in it fails
//!   startup but an unlistable directory.

use std::fs::{DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::error::Error;
use crate::orphans::{judge, Discard, OrphanScan, Record};

/// The lock file inside the state directory. Its name starts with `.`,
/// which no process name may, so it is never taken for a record.
pub(crate) const LOCK_FILE: &str = ".lock";

/// Records are tiny: anything this long is junk.
const MAX_RECORD: u64 = 4096;

/// The state directory, open and locked.
#[derive(Debug)]
pub(crate) struct StateDir {
    path: PathBuf,
    dir: OwnedFd,
    /// Held for the host's life; released by the kernel when it dies.
    _lock: Flock<File>,
}

/// The file name of the record of child `pid` of process `name`.
fn record_file(name: &str, pid: i32) -> String {
    format!("{name}.{pid}")
}

/// The process name a record file stands for: `<name>.<pid>` names the
/// child `pid`; anything else is a record of the older format, named after
/// its process alone. (An older record of a process literally named
/// `x.<pid>` whose pid is that `<pid>` reads as `x`: only the stop signal
/// chosen for it and which process waits for it can differ.)
fn process_name(file: &str, pid: i32) -> &str {
    match file.strip_suffix(pid.to_string().as_str()).and_then(|f| f.strip_suffix('.')) {
        Some(name) if !name.is_empty() => name,
        _ => file,
    }
}

fn kind(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFLNK => "a symlink",
        SFlag::S_IFCHR | SFlag::S_IFBLK => "a device",
        _ => "not a regular file",
    }
}

fn is_regular(st: &FileStat) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits()
}

/// What reading one entry found.
enum Found {
    Record(Record, FileStat),
    Junk(FileStat),
    /// Not a record; the reason is for the log and the event.
    Odd(String),
    Vanished,
}

impl StateDir {
    /// Opens (creating with mode 0700 if missing) a state directory owned by
    /// the current user, not writable by others, and takes its lock.
    pub(crate) fn open(path: &Path) -> Result<StateDir, Error> {
        let fail = |source: io::Error| Error::StateDir { path: path.to_owned(), source };
        let refuse = |why: &str| fail(io::Error::new(io::ErrorKind::PermissionDenied, why.to_owned()));
        match DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(e)),
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let dir = match nix::fcntl::open(path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) => return Err(refuse("it is a symlink")),
            Err(Errno::ENOTDIR) => return Err(refuse("it is not a directory")),
            Err(e) => return Err(fail(e.into())),
        };
        let st = fstat(&dir).map_err(|e| fail(e.into()))?;
        if st.st_uid != nix::unistd::geteuid().as_raw() {
            return Err(refuse("it is not owned by the current user"));
        }
        if st.st_mode & 0o022 != 0 {
            return Err(refuse("it is writable by others"));
        }
        // Close-on-exec, or a child would hold the lock after the host died.
        let lock_flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let lock = openat(&dir, LOCK_FILE, lock_flags, Mode::from_bits_truncate(0o600)).map_err(|e| fail(e.into()))?;
        if !is_regular(&fstat(&lock).map_err(|e| fail(e.into()))?) {
            return Err(refuse("its lock file .lock is not a regular file"));
        }
        let lock = match Flock::lock(File::from(lock), FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => return Err(Error::StateDirInUse { path: path.to_owned() }),
            Err((_, e)) => return Err(fail(e.into())),
        };
        Ok(StateDir { path: path.to_owned(), dir, _lock: lock })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the record of one child atomically: a temporary file, then
    /// rename.
    pub(crate) fn write(&self, name: &str, record: Record) -> io::Result<()> {
        let file = record_file(name, record.pid);
        let tmp = format!(".{file}.tmp");
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&self.dir, tmp.as_str(), flags, Mode::from_bits_truncate(0o600))?;
        File::from(fd).write_all(record.to_text().as_bytes())?;
        Ok(renameat(&self.dir, tmp.as_str(), &self.dir, file.as_str())?)
    }

    /// Removes the record of child `pid` of `name` (or an older-format
    /// record of `name` if it names `pid`).
    pub(crate) fn remove(&self, name: &str, pid: i32) {
        match unlinkat(&self.dir, record_file(name, pid).as_str(), UnlinkatFlags::NoRemoveDir) {
            Err(Errno::ENOENT) => {}
            _ => return,
        }
        if let Found::Record(r, st) = self.read(name) {
            if r.pid == pid {
                self.unlink_if_same(name, &st);
            }
        }
    }

    /// Unlinks `file` if it still is the file `st` describes (the directory
    /// is ours and locked; this narrows what another writer could swap in).
    fn unlink_if_same(&self, file: &str, st: &FileStat) {
        match fstatat(&self.dir, file, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => {
                let _ = unlinkat(&self.dir, file, UnlinkatFlags::NoRemoveDir);
            }
            _ => {}
        }
    }

    /// Reads one entry without following a symlink, blocking, or opening
    /// anything but a regular file.
    fn read(&self, file: &str) -> Found {
        let odd = |what: String| Found::Odd(what);
        // A first look by name spares opening devices and FIFOs at all; the
        // fstat after the open is what counts.
        match fstatat(&self.dir, file, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if !is_regular(&st) => return odd(kind(&st).into()),
            Ok(_) => {}
            Err(Errno::ENOENT) => return Found::Vanished,
            Err(e) => return odd(format!("cannot be looked at: {e}")),
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let fd = match openat(&self.dir, file, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Found::Vanished,
            Err(Errno::ELOOP) => return odd("a symlink".into()),
            Err(e) => return odd(format!("cannot be opened: {e}")),
        };
        let st = match fstat(&fd) {
            Ok(st) if is_regular(&st) => st,
            Ok(st) => return odd(kind(&st).into()),
            Err(e) => return odd(format!("cannot be looked at: {e}")),
        };
        let mut bytes = Vec::new();
        if let Err(e) = File::from(fd).take(MAX_RECORD).read_to_end(&mut bytes) {
            return odd(format!("cannot be read: {e}"));
        }
        let text = (bytes.len() < MAX_RECORD as usize).then(|| String::from_utf8(bytes).ok()).flatten();
        match text.as_deref().and_then(Record::parse) {
            Some(r) => Found::Record(r, st),
            None => Found::Junk(st),
        }
    }

    /// The names of the entries, sorted. Temporary files a crash left are
    /// removed on the way (the lock says nobody else is writing).
    fn list(&self) -> io::Result<Vec<Result<String, String>>> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = Dir::openat(&self.dir, ".", flags, Mode::empty())?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    log::warn!(
                        "procsup: listing state directory {}: {e}; scanning what was listed",
                        self.path.display()
                    );
                    break;
                }
            };
            let bytes = entry.file_name().to_bytes();
            if bytes.starts_with(b".") {
                if bytes.ends_with(b".tmp") {
                    let _ = unlinkat(&self.dir, entry.file_name(), UnlinkatFlags::NoRemoveDir);
                }
                continue; // ".", "..", the lock file, temporary files
            }
            names.push(match std::str::from_utf8(bytes) {
                Ok(name) => Ok(name.to_owned()),
                Err(_) => Err(String::from_utf8_lossy(bytes).into_owned()),
            });
        }
        names.sort();
        Ok(names)
    }

    fn discard(&self, name: String, file: &str, st: &FileStat, reason: Discard) -> OrphanScan {
        self.unlink_if_same(file, st);
        OrphanScan::Discarded { name, reason }
    }

    fn refuse(&self, name: String, reason: String) -> OrphanScan {
        log::warn!("procsup: state directory {}: skipping {name:?}: {reason}", self.path.display());
        OrphanScan::Refused { name, reason }
    }

    /// Every record, checked; `skip` names pids not to consider (our own
    /// live children, orphans already being stopped).
    ///
    /// # Errors
    /// Only when the directory cannot be listed at all.
    pub(crate) fn scan(&self, skip: impl Fn(i32) -> bool) -> io::Result<Vec<OrphanScan>> {
        let mut out = Vec::new();
        for file in self.list()? {
            let file = match file {
                Ok(file) => file,
                Err(lossy) => {
                    out.push(self.refuse(lossy, "a name that is not UTF-8".into()));
                    continue;
                }
            };
            let (record, st) = match self.read(&file) {
                Found::Record(r, st) => (r, st),
                Found::Junk(st) => {
                    out.push(self.discard(file.clone(), &file, &st, Discard::Junk));
                    continue;
                }
                Found::Odd(reason) => {
                    out.push(self.refuse(file, reason));
                    continue;
                }
                Found::Vanished => {
                    log::warn!("procsup: state directory {}: {file:?} vanished while scanned", self.path.display());
                    continue;
                }
            };
            if skip(record.pid) {
                continue;
            }
            let name = process_name(&file, record.pid).to_owned();
            // What is left of the recorded tree is the orphans module's
            // judgement (boot id, leader, cgroup, group members).
            out.push(match judge(name.clone(), record) {
                Err(reason) => self.discard(name, &file, &st, reason),
                Ok(orphan) => OrphanScan::Alive(orphan),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_files_name_the_child_and_old_ones_the_process() {
        assert_eq!(record_file("web:0", 1234), "web:0.1234");
        assert_eq!(process_name("web:0.1234", 1234), "web:0");
        assert_eq!(process_name("web.v2.77", 77), "web.v2");
        // The older format: the file is the process name.
        assert_eq!(process_name("web", 1234), "web");
        assert_eq!(process_name("web.1235", 1234), "web.1235");
        assert_eq!(process_name(".1234", 1234), ".1234");
        assert_eq!(process_name("x11234", 1234), "x11234");
    }
}
