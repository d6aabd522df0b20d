//! The log files of [`Output::Log`]: opened when a spec naming them is
//! added, shared by path, written line by line within the output budget,
//! flushed once a tick, closed when no spec names them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::event::{Event, Stream};
use crate::logfile::LogSink;
use crate::spec::{Output, ProcessSpec};
use crate::sys::Sys;

use super::Supervisor;

/// The log files a spec names.
fn log_files(spec: &ProcessSpec) -> impl Iterator<Item = &crate::LogFile> {
    [&spec.stdout, &spec.stderr].into_iter().filter_map(|o| match o {
        Output::Log(l) => Some(l),
        _ => None,
    })
}

/// One open file and the process that wrote to it last (named in the
/// event of a failure found at the end of a tick).
#[derive(Debug)]
pub(super) struct OpenLog {
    sink: LogSink,
    writer: Arc<str>,
}

impl<S: Sys> Supervisor<S> {
    /// Opens every log file `spec` names that is not open yet; one that is
    /// takes the spec's settings. Nothing is opened when one fails.
    pub(super) fn open_logs(&mut self, spec: &ProcessSpec) -> Result<()> {
        let mut opened = Vec::new();
        for cfg in log_files(spec) {
            if self.logs.contains_key(cfg.get_path()) || opened.iter().any(|(p, _): &(PathBuf, _)| p == cfg.get_path())
            {
                continue;
            }
            match LogSink::open(cfg.clone()) {
                Ok(sink) => opened.push((cfg.get_path().to_owned(), sink)),
                Err(source) => {
                    return Err(Error::LogFile { name: spec.name.clone(), path: cfg.get_path().to_owned(), source })
                }
            }
        }
        let writer: Arc<str> = Arc::from(spec.name.as_str());
        for (path, sink) in opened {
            self.logs.insert(path, OpenLog { sink, writer: writer.clone() });
        }
        for cfg in log_files(spec) {
            if let Some(open) = self.logs.get_mut(cfg.get_path()) {
                if open.sink.config() != cfg {
                    open.sink.set_config(cfg.clone());
                }
            }
        }
        Ok(())
    }

    /// The log file of `stream` of slot `id`, if it goes to one.
    pub(super) fn log_path(&self, id: usize, stream: Stream) -> Option<PathBuf> {
        let spec = &self.p(id).spec;
        let out = match stream {
            Stream::Stdout => &spec.stdout,
            // stderr sent to stdout comes in on stdout's pipe.
            Stream::Stderr => &spec.stderr,
        };
        match out {
            Output::Log(l) => Some(l.get_path().to_owned()),
            _ => None,
        }
    }

    /// Writes captured lines of slot `id` to the file at `path`.
    pub(super) fn write_log(&mut self, id: usize, path: &Path, lines: &[Vec<u8>]) {
        let name = self.p(id).name.clone();
        let Some(open) = self.logs.get_mut(path) else {
            // Opened at add time and kept while a spec names it.
            debug_assert!(false, "no open log file {}", path.display());
            return;
        };
        open.writer = name.clone();
        let mut failure = None;
        for line in lines {
            if let Some(e) = open.sink.line(line) {
                failure = Some(e);
            }
        }
        if let Some(e) = failure {
            self.emit(Event::LogFailed { name, path: path.to_owned(), error: e.to_string() });
        }
    }

    /// Writes what the log files buffered this tick.
    pub(super) fn flush_logs(&mut self) {
        self.each_log(LogSink::flush);
    }

    /// Runs `f` on every open file; each failure is an `Event::LogFailed`.
    fn each_log(&mut self, mut f: impl FnMut(&mut LogSink) -> std::io::Result<()>) {
        let mut failed = Vec::new();
        for (path, open) in &mut self.logs {
            if let Err(e) = f(&mut open.sink) {
                failed.push(Event::LogFailed { name: open.writer.clone(), path: path.clone(), error: e.to_string() });
            }
        }
        for ev in failed {
            self.emit(ev);
        }
    }

    /// Closes the log files no spec names any more.
    pub(super) fn close_unused_logs(&mut self) {
        if self.logs.is_empty() {
            return;
        }
        let procs = &self.procs;
        let pools = &self.pools;
        let named = |path: &Path| {
            let specs = procs.iter().flatten().map(|p| &p.spec).chain(pools.values().map(|p| &p.template));
            specs.into_iter().any(|s| log_files(s).any(|l| l.get_path() == path))
        };
        let unused: Vec<PathBuf> = self.logs.keys().filter(|p| !named(p)).cloned().collect();
        for path in unused {
            // Dropping it writes what it buffered.
            self.logs.remove(&path);
        }
    }

    /// Opens every log file again, after what was buffered has gone to the
    /// old one: for an external logrotate that moved the files (svlogd's
    /// and s6-log's SIGHUP, supervisord's `reopen`). A file that cannot be
    /// opened again is an [`Event::LogFailed`]; its lines go on to the old
    /// file.
    ///
    /// ```
    /// use std::time::Instant;
    /// use procsup::{LogFile, Output, ProcessSpec, Supervisor, testing::FakeSys};
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = LogFile::new(dir.path().join("web.log"));
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("web", "server").stdout(Output::Log(log))).unwrap();
    /// std::fs::rename(dir.path().join("web.log"), dir.path().join("web.log.old")).unwrap();
    /// sup.reopen_logs();
    /// assert!(dir.path().join("web.log").exists());
    /// ```
    pub fn reopen_logs(&mut self) {
        self.each_log(LogSink::reopen);
    }
}
