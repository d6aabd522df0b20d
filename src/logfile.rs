//! Log files that rotate by size: where [`Output::Log`](crate::Output::Log)
//! lines are written.
//!
//! The supervisor reads the child's stream as it does for
//! [`Output::Capture`](crate::Output::Capture), and writes each whole line
//! to the file. Rotation happens between two lines only, after the lines
//! before it have been written to the old file, so a line is never split,
//! lost or written twice across a rotation or a
//! [`reopen_logs`](crate::Supervisor::reopen_logs).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The most rotated files [`LogFile::keep`] accepts.
pub const MAX_LOG_KEEP: u32 = 1000;

/// Buffered bytes that make a write before the end of the tick: the buffer
/// of one file never grows past this and one line.
const FLUSH_AT: usize = 64 * 1024;

/// A log file with size-based rotation, as s6-log and svlogd keep them:
/// once the next line would take `PATH` past [`max_size`](LogFile::max_size),
/// `PATH` becomes `PATH.1`, `PATH.1` becomes `PATH.2` and so on up to
/// [`keep`](LogFile::keep); the oldest goes.
///
/// A file holds whole lines only; one longer than `max_size` (lines are cut
/// at [`MAX_LINE`](crate::MAX_LINE) bytes) fills a file alone.
///
/// Several processes (or both streams of one, or the instances of a group)
/// may name the same path: they share one file, and the settings of the
/// spec added or updated last apply to it. For one file with both streams,
/// send stderr to [`Output::ToStdout`](crate::Output::ToStdout).
///
/// ```
/// use procsup::{LogFile, Output, ProcessSpec};
/// let log = LogFile::new("/var/log/web.log").max_size(10 << 20).keep(5).timestamps(true);
/// let spec = ProcessSpec::new("web", "server").stdout(Output::Log(log)).stderr(Output::ToStdout);
/// assert!(matches!(spec.get_stdout(), Output::Log(l) if l.get_keep() == 5));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    timestamps: bool,
}

impl LogFile {
    /// Lines to `path` (created with mode 0644 if missing, appended to if
    /// there), rotated at 10 MiB, 5 old files kept, no timestamps.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LogFile { path: path.into(), max_size: 10 << 20, keep: 5, timestamps: false }
    }

    /// The size in bytes past which the file is rotated (at least 1).
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// How many rotated files to keep, `PATH.1` (newest) to `PATH.N`; 0
    /// keeps none: a full file is removed. At most [`MAX_LOG_KEEP`].
    pub fn keep(mut self, n: u32) -> Self {
        self.keep = n;
        self
    }

    /// Each line starts with the UTC time it was written,
    /// `2026-12-07T03:50:00.123456Z `.
    pub fn timestamps(mut self, on: bool) -> Self {
        self.timestamps = on;
        self
    }

    /// The file's path.
    pub fn get_path(&self) -> &Path {
        &self.path
    }

    /// See [`max_size`](LogFile::max_size).
    pub fn get_max_size(&self) -> u64 {
        self.max_size
    }

    /// See [`keep`](LogFile::keep).
    pub fn get_keep(&self) -> u32 {
        self.keep
    }

    /// See [`timestamps`](LogFile::timestamps).
    pub fn get_timestamps(&self) -> bool {
        self.timestamps
    }

    /// Why this is not a valid log file setting, if it is not.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("a log file path is empty".into());
        }
        if self.path.as_os_str().as_encoded_bytes().contains(&0) {
            return Err("a log file path contains a NUL byte".into());
        }
        if self.max_size == 0 {
            return Err(format!("the log file {} has a max size of 0", self.path.display()));
        }
        if self.keep > MAX_LOG_KEEP {
            return Err(format!(
                "the log file {} keeps {} files; at most {MAX_LOG_KEEP}",
                self.path.display(),
                self.keep
            ));
        }
        Ok(())
    }
}

/// One open log file and what is waiting to be written to it.
#[derive(Debug)]
pub(crate) struct LogSink {
    cfg: LogFile,
    file: File,
    /// Bytes in the file, the buffered ones included.
    size: u64,
    buf: Vec<u8>,
    /// A write failed and nothing has been written since: the next failure
    /// is not reported again.
    failing: bool,
}

fn open(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).mode(0o644).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok((file, meta.len()))
}

/// `PATH.n`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

impl LogSink {
    /// Opens (or creates) the file, for appending.
    pub(crate) fn open(cfg: LogFile) -> io::Result<LogSink> {
        let (file, size) = open(&cfg.path)?;
        Ok(LogSink { cfg, file, size, buf: Vec::new(), failing: false })
    }

    /// The settings in force.
    pub(crate) fn config(&self) -> &LogFile {
        &self.cfg
    }

    /// New settings for the same path; they apply from the next line.
    pub(crate) fn set_config(&mut self, cfg: LogFile) {
        debug_assert_eq!(cfg.path, self.cfg.path);
        self.cfg = cfg;
    }

    /// Adds one line (a `\n` is appended), rotating first when it would
    /// take the file past its size. A failure to write is returned only
    /// when it is news: the first since the last success.
    pub(crate) fn line(&mut self, line: &[u8]) -> Option<io::Error> {
        // A log line's time is the wall clock's by definition (operators
        // match it with other logs), not the host's injected clock.
        #[allow(clippy::disallowed_methods)]
        let stamp = self.cfg.timestamps.then(|| utc_stamp(SystemTime::now()));
        let len = (line.len() + 1 + stamp.as_ref().map_or(0, String::len)) as u64;
        let mut err = None;
        if self.size > 0 && self.size.saturating_add(len) > self.cfg.max_size {
            err = self.rotate().err();
        }
        if let Some(s) = stamp {
            self.buf.extend_from_slice(s.as_bytes());
        }
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        self.size += len;
        if self.buf.len() >= FLUSH_AT {
            err = err.or(self.flush().err());
        }
        err.and_then(|e| self.failed(e))
    }

    /// Writes what is buffered. On failure the buffered lines are dropped
    /// (the buffer stays bounded) and the error is returned when it is news.
    pub(crate) fn flush(&mut self) -> Result<(), io::Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.buf);
        self.buf.clear();
        match result {
            Ok(()) => {
                self.failing = false;
                Ok(())
            }
            Err(e) => {
                // What the file really holds is unknown now; its metadata says.
                self.size = self.file.metadata().map_or(self.size, |m| m.len());
                self.failed(e).map_or(Ok(()), Err)
            }
        }
    }

    /// `Some(e)` the first time after a success, `None` after that.
    fn failed(&mut self, e: io::Error) -> Option<io::Error> {
        (!std::mem::replace(&mut self.failing, true)).then_some(e)
    }

    /// Writes the buffer, shifts the old files and starts a new one. When
    /// a rename fails, lines go on to the current file (larger than asked,
    /// nothing lost).
    fn rotate(&mut self) -> io::Result<()> {
        // A failed flush dropped its lines and said so; rotation goes on.
        let flushed = self.flush();
        let path = self.cfg.path.clone();
        if self.cfg.keep == 0 {
            std::fs::remove_file(&path)?;
        } else {
            for n in (1..self.cfg.keep).rev() {
                match std::fs::rename(numbered(&path, n), numbered(&path, n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&path, numbered(&path, 1))?;
        }
        let (file, size) = open(&path)?;
        self.file = file;
        self.size = size;
        flushed
    }

    /// Writes the buffer to the file it was meant for and opens the path
    /// again (after an external logrotate moved the file). When the open
    /// fails, lines go on to the old file.
    pub(crate) fn reopen(&mut self) -> io::Result<()> {
        let flushed = self.flush();
        let (file, size) = open(&self.cfg.path)?;
        self.file = file;
        self.size = size;
        flushed
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// `2026-12-07T03:50:00.123456Z ` (with the space), UTC.
pub(crate) fn utc_stamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z ",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The longest a file gets: `max_size`, or one line past an empty file.
#[cfg(test)]
fn bound(cfg: &LogFile) -> u64 {
    cfg.max_size.max((crate::MAX_LINE + 1 + 28) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn rotation_keeps_every_line_once_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let cfg = LogFile::new(&path).max_size(100).keep(3);
        let mut sink = LogSink::open(cfg.clone()).unwrap();
        for i in 0..50 {
            assert!(sink.line(format!("line {i:03}").as_bytes()).is_none());
        }
        sink.flush().unwrap();
        let files: Vec<String> = [numbered(&path, 3), numbered(&path, 2), numbered(&path, 1), path.clone()]
            .iter()
            .map(|p| read(p))
            .collect();
        for f in &files {
            assert!(f.len() as u64 <= bound(&cfg) && f.len() <= 100, "{f:?}");
            assert!(f.ends_with('\n'), "whole lines only: {f:?}");
        }
        assert!(!numbered(&path, 4).exists(), "keep 3: no fourth file");
        // 9 bytes a line, 11 lines a file: 0-10 went with the fourth
        // rotation; the rest is there in order, none twice.
        let all: Vec<String> = files.concat().lines().map(str::to_owned).collect();
        let want: Vec<String> = (11..50).map(|i| format!("line {i:03}")).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn keep_zero_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut sink = LogSink::open(LogFile::new(&path).max_size(10).keep(0)).unwrap();
        for l in ["aaaa", "bbbb", "cccc"] {
            assert!(sink.line(l.as_bytes()).is_none());
        }
        sink.flush().unwrap();
        assert_eq!(read(&path), "cccc\n");
        assert!(!numbered(&path, 1).exists());
    }

    #[test]
    fn an_existing_file_counts_towards_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "old old old\n").unwrap();
        let mut sink = LogSink::open(LogFile::new(&path).max_size(15)).unwrap();
        assert!(sink.line(b"new").is_none());
        assert!(sink.line(b"next").is_none());
        sink.flush().unwrap();
        assert_eq!(read(&path), "new\nnext\n");
        assert_eq!(read(&numbered(&path, 1)), "old old old\n");
    }

    #[test]
    fn a_line_longer_than_the_size_fills_a_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut sink = LogSink::open(LogFile::new(&path).max_size(4)).unwrap();
        for l in ["a", "longer than four", "b"] {
            assert!(sink.line(l.as_bytes()).is_none());
        }
        sink.flush().unwrap();
        assert_eq!(read(&numbered(&path, 2)), "a\n");
        assert_eq!(read(&numbered(&path, 1)), "longer than four\n");
        assert_eq!(read(&path), "b\n");
    }

    #[test]
    fn reopen_after_a_move_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let moved = dir.path().join("moved.log");
        let mut sink = LogSink::open(LogFile::new(&path)).unwrap();
        assert!(sink.line(b"one").is_none());
        std::fs::rename(&path, &moved).unwrap();
        assert!(sink.line(b"two").is_none());
        sink.reopen().unwrap();
        assert!(sink.line(b"three").is_none());
        drop(sink);
        assert_eq!(read(&moved), "one\ntwo\n");
        assert_eq!(read(&path), "three\n");
    }

    #[test]
    fn a_write_error_is_reported_once_until_a_write_works() {
        // /dev/full fails every write with ENOSPC.
        let mut sink = LogSink::open(LogFile::new("/dev/full")).unwrap_or_else(|_| {
            let file = OpenOptions::new().append(true).open("/dev/full").unwrap();
            LogSink { cfg: LogFile::new("/dev/full"), file, size: 0, buf: Vec::new(), failing: false }
        });
        assert!(sink.line(b"x").is_none(), "buffered: nothing written yet");
        let e = sink.flush().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(sink.line(b"y").is_none());
        assert!(sink.flush().is_ok(), "the same failure is not news");
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LogSink::open(LogFile::new(dir.path())).is_err());
        assert!(LogSink::open(LogFile::new(dir.path().join("no/such/dir.log"))).is_err());
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z ");
        let t = UNIX_EPOCH + Duration::from_micros(1_796_614_200_123_456);
        assert_eq!(utc_stamp(t), "2026-12-07T03:30:00.123456Z ");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_stamp(t), "2000-02-29T00:00:00.000000Z ");
    }

    #[test]
    fn timestamps_prefix_each_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut sink = LogSink::open(LogFile::new(&path).timestamps(true)).unwrap();
        assert!(sink.line(b"hello").is_none());
        sink.flush().unwrap();
        let text = read(&path);
        let (stamp, rest) = text.split_at(28);
        assert_eq!(rest, "hello\n");
        assert!(stamp.starts_with("20") && stamp.ends_with("Z ") && stamp.as_bytes()[10] == b'T', "{stamp:?}");
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(LogFile::new("").check().is_err());
        assert!(LogFile::new("a").max_size(0).check().is_err());
        assert!(LogFile::new("a").keep(MAX_LOG_KEEP + 1).check().is_err());
        assert!(LogFile::new("a").keep(MAX_LOG_KEEP).check().is_ok());
    }
}
