//! Where the child's output goes, and how captured lines are logged.

use crate::event::Stream;

use super::{Output, ProcessSpec};

impl ProcessSpec {
    /// Where stdout goes.
    pub fn stdout(mut self, out: Output) -> Self {
        self.stdout = out;
        self
    }

    /// Where stderr goes ([`Output::ToStdout`] is allowed here only).
    pub fn stderr(mut self, out: Output) -> Self {
        self.stderr = out;
        self
    }

    /// The level at which captured lines of `stream` go to the `log` crate
    /// (default `Info` for both: most programs log on stderr, so stderr is
    /// not a warning by itself). `LevelFilter::Off` logs none of them;
    /// [`Event::Output`](crate::Event::Output) is emitted all the same.
    ///
    /// Each process logs under its own target, `procsup::output::NAME`
    /// (`procsup::output::web:0` for an instance), so a logger can filter
    /// by process; events go out under `procsup::event`.
    ///
    /// ```
    /// use log::LevelFilter;
    /// use procsup::{Output, ProcessSpec, Stream};
    /// let spec = ProcessSpec::new("web", "server")
    ///     .stdout(Output::Capture)
    ///     .stderr(Output::Capture)
    ///     .log_lines(Stream::Stdout, LevelFilter::Off)
    ///     .log_lines(Stream::Stderr, LevelFilter::Warn);
    /// assert_eq!(spec.get_log_lines(Stream::Stderr), LevelFilter::Warn);
    /// ```
    pub fn log_lines(mut self, stream: Stream, level: log::LevelFilter) -> Self {
        self.log_lines[stream as usize] = level;
        self
    }
}
