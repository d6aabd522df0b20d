//! What the supervisor tells the `log` crate.

use crate::event::{Event, Stream};
use crate::output::escape;
use crate::sys::Sys;

use super::Supervisor;

impl<S: Sys> Supervisor<S> {
    /// An event to the `log` crate: failures at WARN and the rest at DEBUG,
    /// under `procsup::event`; a captured line under its process's own
    /// target, at its spec's level for the stream.
    pub(super) fn log_event(&self, ev: &Event) {
        match ev {
            Event::Fatal { .. } | Event::SpawnFailed { .. } => log::warn!(target: "procsup::event", "{ev}"),
            Event::Output { name, stream, line, .. } => self.log_line(name, *stream, line),
            _ => log::debug!(target: "procsup::event", "{ev}"),
        }
    }

    fn log_line(&self, name: &str, stream: Stream, line: &[u8]) {
        let Some(&id) = self.names.get(name) else { return };
        let Some(level) = self.p(id).spec.get_log_lines(stream).to_level() else { return };
        if level <= log::max_level() {
            let target = format!("procsup::output::{name}");
            log::log!(target: &target, level, "[{name}] {}", escape(line));
        }
    }
}
