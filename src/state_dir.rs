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
//! - procsup only ever removes or replaces a file it can prove it wrote.
//!   A record is `<name>.<pid>` (per child, never per process name, so a
//!   rolling restart's two children, and every instance, each have their
//!   own) and starts with the line `procsup-record 1` ([`HEADER`]). It is
//!   written whole to `.procsup-tmp.<name>.<pid>` and renamed into place,
//!   so a crash never leaves a record empty or cut short: it leaves at most
//!   that temporary file, which the next scan removes if it is empty or
//!   holds the start of a record. A file with the header is procsup's: it
//!   is acted on, and removed when what it names is gone, recycled, from
//!   another boot, or when it is not whole after the header (junk).
//! - Every other entry is left exactly as it is, skipped with one warning
//!   per scan: a file without the header (an empty one too), a hidden
//!   file, anything that is not a readable regular file (a FIFO, a socket,
//!   a directory, a device, a symlink, a name that is not UTF-8, one that
//!   vanishes or cannot be read), but for a socket named `control` (a
//!   host's control socket), which is skipped silently. A record is never written over such a
//!   file. Nothing in a scan blocks, and nothing in it fails startup but an
//!   unlistable directory.

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
use crate::orphans::{judge, Discard, HostRecord, OrphanScan, Parsed, Record, HEADER, HOST_HEADER, HOST_PREFIX};

/// The lock file inside the state directory, made if missing, never written
/// to or removed. Its name starts with `.`, which no process name may, so
/// it is never taken for a record.
pub(crate) const LOCK_FILE: &str = ".lock";

/// A host's control socket (the `supervise` example's, say) may live in
/// the state directory under this name: a socket by that name is skipped,
/// not reported. Anything else by that name is an odd entry as usual.
pub(crate) const CONTROL_SOCKET: &str = "control";

/// The prefix of the temporary file a record is written to before it is
/// renamed into place.
const TMP_PREFIX: &str = ".procsup-tmp.";

/// Records are tiny: anything this long is junk.
const MAX_RECORD: u64 = 4096;

/// A host record as found: its file name, what it says, and the file.
pub(crate) type HostEntry = (String, HostRecord, FileStat);

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
/// child `pid`; a record under another file name (one renamed by hand, say)
/// is named after its file.
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
    /// procsup's, but not a whole record after the header.
    Junk(FileStat),
    /// Not a record of procsup's; the reason is for the log and the event.
    Odd(String),
    Vanished,
}

/// Why an entry was not read as a file.
enum Unread {
    /// Not a readable regular file; what it is.
    Odd(String),
    Vanished,
}

impl From<Unread> for Found {
    fn from(u: Unread) -> Found {
        match u {
            Unread::Odd(what) => Found::Odd(what),
            Unread::Vanished => Found::Vanished,
        }
    }
}

/// One entry of the directory, by name.
enum Entry {
    /// A name a record may have.
    Name(String),
    /// Not a record, known by its name alone: the (lossy) name and why.
    Odd(String, String),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Name(name) | Entry::Odd(name, _) => name,
        }
    }
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
    /// a rename that never replaces a file that is not procsup's.
    pub(crate) fn write(&self, name: &str, record: Record) -> io::Result<()> {
        let file = record_file(name, record.pid);
        let tmp = format!("{TMP_PREFIX}{file}");
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&self.dir, tmp.as_str(), flags, Mode::from_bits_truncate(0o600))?;
        let placed = File::from(fd).write_all(record.to_text().as_bytes()).and_then(|()| self.place(&tmp, &file));
        if placed.is_err() {
            let _ = unlinkat(&self.dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        placed
    }

    /// Writes the record of this host's cgroup directory, before that
    /// directory is made: written, `fsync`ed, and the directory `fsync`ed,
    /// so that it is there whatever happens to the host next. Once per
    /// host, so its cost is no restart's.
    pub(crate) fn write_host(&self, record: &HostRecord) -> io::Result<()> {
        let file = HostRecord::file_name(&record.root).ok_or_else(|| io::Error::from(Errno::EINVAL))?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&self.dir, file.as_str(), flags, Mode::from_bits_truncate(0o600))?;
        let mut f = File::from(fd);
        let written = f.write_all(record.to_text().as_bytes()).and_then(|()| f.sync_all());
        if let Err(e) = written {
            let _ = unlinkat(&self.dir, file.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        nix::unistd::fsync(&self.dir).map_err(io::Error::from)
    }

    /// The host records, each with its file name and what it is; a file
    /// with the host prefix that a crash left empty or cut short (it
    /// names no directory yet: the record is whole before the directory
    /// is made) is removed, anything else with that prefix refused.
    pub(crate) fn host_records(&self) -> io::Result<(Vec<HostEntry>, Vec<OrphanScan>)> {
        let (mut found, mut refused) = (Vec::new(), Vec::new());
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = Dir::openat(&self.dir, ".", flags, Mode::empty())?;
        let names: Vec<String> = dir
            .iter()
            .flatten()
            .filter_map(|e| std::str::from_utf8(e.file_name().to_bytes()).ok().map(str::to_owned))
            .filter(|n| n.starts_with(HOST_PREFIX))
            .collect();
        for name in names {
            match self.read_bytes(&name) {
                Ok((bytes, st)) => match HostRecord::parse(&bytes) {
                    Some(r) if HostRecord::file_name(&r.root).as_deref() == Some(name.as_str()) => {
                        found.push((name, r, st))
                    }
                    _ if bytes.starts_with(HOST_HEADER.as_bytes()) || HOST_HEADER.as_bytes().starts_with(&bytes) => {
                        self.unlink_if_same(&name, &st)
                    }
                    _ => refused.push(self.refuse(name, "a host record that is not procsup's".into())),
                },
                Err(Unread::Odd(why)) => refused.push(self.refuse(name, why)),
                Err(Unread::Vanished) => {}
            }
        }
        Ok((found, refused))
    }

    /// Removes the host record `file` if it is still the file `st` says.
    pub(crate) fn remove_host(&self, file: &str, st: &FileStat) {
        self.unlink_if_same(file, st);
    }

    /// Removes the host record of cgroup directory `root` once that
    /// directory is gone.
    pub(crate) fn forget_host(&self, root: &Path) {
        if root.exists() {
            return;
        }
        let Some(file) = HostRecord::file_name(root) else { return };
        if let Ok((bytes, st)) = self.read_bytes(&file) {
            if HostRecord::parse(&bytes).is_some_and(|r| r.root == root) {
                self.unlink_if_same(&file, &st);
            }
        }
    }

    /// Renames `tmp` to `file`, over an earlier record of procsup's only.
    fn place(&self, tmp: &str, file: &str) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        match nix::fcntl::renameat2(&self.dir, tmp, &self.dir, file, nix::fcntl::RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(()),
            // Something is there (or this file system cannot say so
            // atomically): look at it first.
            Err(Errno::EEXIST | Errno::EINVAL) => {}
            Err(e) => return Err(e.into()),
        }
        match self.read(file) {
            Found::Record(..) | Found::Junk(_) | Found::Vanished => Ok(renameat(&self.dir, tmp, &self.dir, file)?),
            Found::Odd(what) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{file:?} is there and is not procsup's ({what}): left as it is"),
            )),
        }
    }

    /// Removes the record of child `pid` of `name` (or a record of `name`
    /// under its process name alone, if it names `pid`): only a record of
    /// procsup's that names that child.
    pub(crate) fn remove(&self, name: &str, pid: i32) {
        for file in [record_file(name, pid), name.to_owned()] {
            if let Found::Record(r, st) = self.read(&file) {
                if r.pid == pid {
                    self.unlink_if_same(&file, &st);
                    return;
                }
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
        let (bytes, st) = match self.read_bytes(file) {
            Ok(read) => read,
            Err(unread) => return unread.into(),
        };
        let whole = bytes.len() < MAX_RECORD as usize;
        match Record::parse(&bytes) {
            Parsed::Record(r) if whole => Found::Record(r, st),
            Parsed::Record(_) | Parsed::Junk => Found::Junk(st),
            Parsed::Foreign(why) => Found::Odd(why.into()),
        }
    }

    /// The first [`MAX_RECORD`] bytes of a regular file, and what it is;
    /// what else the entry is otherwise.
    fn read_bytes(&self, file: &str) -> Result<(Vec<u8>, FileStat), Unread> {
        let odd = |what: String| Err(Unread::Odd(what));
        // A first look by name spares opening devices and FIFOs at all; the
        // fstat after the open is what counts.
        match fstatat(&self.dir, file, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if !is_regular(&st) => return odd(kind(&st).into()),
            Ok(_) => {}
            Err(Errno::ENOENT) => return Err(Unread::Vanished),
            Err(e) => return odd(format!("cannot be looked at: {e}")),
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let fd = match openat(&self.dir, file, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Err(Unread::Vanished),
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
        Ok((bytes, st))
    }

    /// Removes a temporary file a write left when its host died, if it is
    /// procsup's: a regular file that is empty (the host died before it
    /// wrote) or holds the start of a record. Anything else is left.
    fn remove_temp(&self, file: &str) -> Option<Entry> {
        let ours = |b: &[u8]| b.starts_with(HEADER.as_bytes()) || HEADER.as_bytes().starts_with(b);
        let read = self.read_bytes(file);
        // A whole record whose rename a crash cut off names a live child:
        // it is put in place and scanned like any other.
        if let Ok((bytes, _)) = &read {
            let target = &file[TMP_PREFIX.len()..];
            let whole = matches!(Record::parse(bytes), Parsed::Record(_)) && bytes.len() < MAX_RECORD as usize;
            if whole && !target.is_empty() && !target.starts_with('.') && self.place(file, target).is_ok() {
                return Some(Entry::Name(target.into()));
            }
        }
        match read {
            Ok((bytes, st)) if ours(&bytes) => self.unlink_if_same(file, &st),
            Ok(_) => return Some(Entry::Odd(file.into(), "a temporary file that is not procsup's".into())),
            Err(Unread::Odd(why)) => return Some(Entry::Odd(file.into(), why)),
            Err(Unread::Vanished) => {}
        }
        None
    }

    /// The entries, sorted by name. Temporary files of procsup's that a
    /// crash left are removed on the way (the lock says nobody else is
    /// writing); hidden files are not records (no process name starts
    /// with `.`).
    fn list(&self) -> io::Result<Vec<Entry>> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = Dir::openat(&self.dir, ".", flags, Mode::empty())?;
        let mut entries = Vec::new();
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
            if matches!(bytes, b"." | b".." | b".lock") {
                continue;
            }
            if bytes == CONTROL_SOCKET.as_bytes() && self.is_socket(CONTROL_SOCKET) {
                continue;
            }
            let Ok(name) = std::str::from_utf8(bytes) else {
                let lossy = String::from_utf8_lossy(bytes).into_owned();
                entries.push(Entry::Odd(lossy, "a name that is not UTF-8".into()));
                continue;
            };
            if name.starts_with(HOST_PREFIX) {
                continue; // host records: see `host_records`
            } else if name.starts_with(TMP_PREFIX) {
                entries.extend(self.remove_temp(name));
            } else if name.starts_with('.') {
                entries.push(Entry::Odd(name.into(), "a hidden file, not a record".into()));
            } else {
                entries.push(Entry::Name(name.into()));
            }
        }
        entries.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(entries)
    }

    fn is_socket(&self, file: &str) -> bool {
        fstatat(&self.dir, file, AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFSOCK.bits())
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
        for entry in self.list()? {
            let file = match entry {
                Entry::Name(file) => file,
                Entry::Odd(name, reason) => {
                    out.push(self.refuse(name, reason));
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
    fn record_files_name_the_child_and_others_their_file() {
        assert_eq!(record_file("web:0", 1234), "web:0.1234");
        assert_eq!(process_name("web:0.1234", 1234), "web:0");
        assert_eq!(process_name("web.v2.77", 77), "web.v2");
        // A record under another file name is named after its file.
        assert_eq!(process_name("web", 1234), "web");
        assert_eq!(process_name("web.1235", 1234), "web.1235");
        assert_eq!(process_name(".1234", 1234), ".1234");
        assert_eq!(process_name("x11234", 1234), "x11234");
    }

    fn record(pid: i32) -> Record {
        Record { pid, pgid: pid, sid: None, start_time: 1, boot_id: None, cgroup: None }
    }

    fn open_in(tmp: &tempfile::TempDir) -> StateDir {
        StateDir::open(&tmp.path().join("state")).unwrap()
    }

    fn names(dir: &StateDir) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != LOCK_FILE)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_record_is_never_written_over_a_file_that_is_not_procsups() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_in(&tmp);
        let theirs = dir.path().join("web.4194001");
        std::fs::write(&theirs, "important\n").unwrap();
        let e = dir.write("web", record(4_194_001)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "important\n");
        assert_eq!(names(&dir), ["web.4194001"], "no temporary file is left");
        // Its own earlier record is replaced.
        dir.write("api", record(4_194_002)).unwrap();
        dir.write("api", Record { start_time: 2, ..record(4_194_002) }).unwrap();
        let text = std::fs::read_to_string(dir.path().join("api.4194002")).unwrap();
        assert!(text.starts_with(HEADER) && text.contains("start_time 2\n"), "{text:?}");
        assert_eq!(names(&dir), ["api.4194002", "web.4194001"]);
    }

    #[test]
    fn only_procsups_record_of_that_child_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_in(&tmp);
        let p = dir.path();
        std::fs::write(p.join("web.4194001"), "important\n").unwrap();
        std::fs::write(p.join("old"), "pid 4194002\npgid 4194002\nstart_time 1\n").unwrap();
        dir.write("api", record(4_194_003)).unwrap();
        std::fs::write(p.join("legacy"), record(4_194_004).to_text()).unwrap();
        dir.remove("web", 4_194_001);
        dir.remove("old", 4_194_002);
        dir.remove("api", 4_194_999);
        assert_eq!(names(&dir), ["api.4194003", "legacy", "old", "web.4194001"]);
        dir.remove("api", 4_194_003);
        dir.remove("legacy", 4_194_004);
        assert_eq!(names(&dir), ["old", "web.4194001"]);
    }

    #[test]
    fn a_scan_removes_procsups_temporary_files_and_leaves_everything_else() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_in(&tmp);
        let p = dir.path();
        let whole = record(4_194_001).to_text();
        // What a write leaves when its host dies: an empty file, part of
        // the header, part of a record, a whole one not yet renamed.
        std::fs::write(p.join(".procsup-tmp.a.4194001"), "").unwrap();
        std::fs::write(p.join(".procsup-tmp.b.4194001"), &HEADER[..5]).unwrap();
        std::fs::write(p.join(".procsup-tmp.c.4194001"), &whole[..whole.len() - 3]).unwrap();
        std::fs::write(p.join(".procsup-tmp.d.4194001"), &whole).unwrap();
        // Not procsup's.
        std::fs::write(p.join(".procsup-tmp.e"), "important\n").unwrap();
        std::fs::create_dir(p.join(".procsup-tmp.f")).unwrap();
        std::fs::write(p.join(".notes.tmp"), "important\n").unwrap();
        std::fs::write(p.join(".hidden"), &whole).unwrap();
        std::fs::write(p.join("empty"), "").unwrap();
        std::fs::write(p.join("notes.txt"), "important\n").unwrap();
        std::fs::write(p.join("v2.4194001"), "procsup-record 2\npid 4194001\n").unwrap();
        let scans = dir.scan(|_| false).unwrap();
        let refused: Vec<&str> = scans
            .iter()
            .filter_map(|s| match s {
                OrphanScan::Refused { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        let all = [".hidden", ".notes.tmp", ".procsup-tmp.e", ".procsup-tmp.f", "empty", "notes.txt", "v2.4194001"];
        assert_eq!(refused, all, "{scans:?}");
        // The whole record a crash left unrenamed is put in place and
        // judged: its pid is gone.
        assert!(scans.contains(&OrphanScan::Discarded { name: "d".into(), reason: Discard::Gone }), "{scans:?}");
        assert_eq!(scans.len(), all.len() + 1, "{scans:?}");
        assert_eq!(names(&dir), all);
        assert_eq!(std::fs::read_to_string(p.join(".procsup-tmp.e")).unwrap(), "important\n");
    }

    /// A host's control socket is no odd entry; a socket by another name,
    /// or something else named `control`, still is.
    #[test]
    fn a_socket_named_control_is_skipped_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_in(&tmp);
        let _control = std::os::unix::net::UnixListener::bind(dir.path().join(CONTROL_SOCKET)).unwrap();
        let _other = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
        let refused = |dir: &StateDir| -> Vec<String> {
            let scans = dir.scan(|_| false).unwrap();
            scans
                .into_iter()
                .filter_map(|s| match s {
                    OrphanScan::Refused { name, .. } => Some(name),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(refused(&dir), ["sock"]);
        std::fs::remove_file(dir.path().join(CONTROL_SOCKET)).unwrap();
        std::fs::write(dir.path().join(CONTROL_SOCKET), "notes\n").unwrap();
        assert_eq!(refused(&dir), ["control", "sock"]);
    }

    #[test]
    fn host_records_are_listed_apart_and_a_cut_short_one_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_in(&tmp);
        let p = dir.path();
        let root = PathBuf::from("/sys/fs/cgroup/x/procsup-4194001-77-0");
        let host = HostRecord { pid: 4_194_001, start_time: 77, boot_id: Some("b".into()), root: root.clone() };
        dir.write_host(&host).unwrap();
        assert!(dir.write_host(&host).is_err(), "a host record is made once, never written over");
        let text = host.to_text();
        // A crash while writing (before the directory was made), and one
        // that is not procsup's.
        std::fs::write(p.join(".procsup-host.procsup-4194002-1-0"), &text[..text.len() / 2]).unwrap();
        std::fs::write(p.join(".procsup-host.notes"), "important\n").unwrap();
        let (found, refused) = dir.host_records().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].0.as_str(), &found[0].1), (".procsup-host.procsup-4194001-77-0", &host));
        assert!(matches!(&refused[..], [OrphanScan::Refused { name, .. }] if name == ".procsup-host.notes"));
        assert_eq!(names(&dir), [".procsup-host.notes", ".procsup-host.procsup-4194001-77-0"]);
        // Child scans never see them.
        assert!(dir.scan(|_| false).unwrap().is_empty());
        // Forgotten once the directory it names is gone (it never existed).
        dir.forget_host(&root);
        assert_eq!(names(&dir), [".procsup-host.notes"]);
    }

    #[test]
    fn a_host_record_names_only_a_directory_made_for_that_host() {
        let ok = "procsup-host 1\npid 4242\nstart_time 9\nboot_id b\ncgroup /cg/procsup-4242-9-3\n";
        let r = HostRecord::parse(ok.as_bytes()).unwrap();
        assert_eq!(HostRecord::parse(r.to_text().as_bytes()), Some(r));
        for bad in [
            "procsup-host 1\npid 4242\nstart_time 9\ncgroup /cg/procsup-4243-9-3\n",
            "procsup-host 1\npid 4242\nstart_time 9\ncgroup /cg/other\n",
            "procsup-host 1\npid 4242\nstart_time 9\ncgroup /cg/procsup-4242-9-3",
            "procsup-host 1\npid 4242\ncgroup /cg/procsup-4242-9-3\n",
            "procsup-record 1\npid 4242\nstart_time 9\ncgroup /cg/procsup-4242-9-3\n",
        ] {
            assert_eq!(HostRecord::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
