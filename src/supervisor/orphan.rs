//! Stopping what a crashed earlier run left behind.

use std::sync::Arc;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::orphans::OrphanScan;
use crate::state::State;
use crate::sys::Sys;

use super::Supervisor;
use crate::timers::{later, Deadline};

/// How long after an orphan's SIGKILL a process waiting for it starts
/// anyway (its end is normally seen within milliseconds; this bounds the
/// wait where it cannot be seen, as without pidfds).
pub(super) const ORPHAN_KILL_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// An orphan of an earlier run being stopped.
#[derive(Debug)]
pub(super) struct OrphanTask {
    pub(super) name: Arc<str>,
    pub(super) kill_at: Option<Instant>,
}

impl<S: Sys> Supervisor<S> {
    /// Stops what an earlier run left behind: every record in the state
    /// directory whose process is still alive with the recorded start time
    /// gets the stop signal of the process of that name (SIGTERM for an
    /// unknown name), then SIGKILL after its stop timeout (10 s for an
    /// unknown name); its record goes when it is gone. Records that are
    /// junk, or whose pid is gone or was recycled, are removed and nothing
    /// is signalled. Entries that are not records of procsup's (a file
    /// without the `procsup-record 1` first line, an empty or hidden file,
    /// a FIFO, a socket, a directory, a name that is not UTF-8, one that
    /// cannot be read) are left as they are, each an
    /// [`Event::OrphanRefused`]. Each outcome is an
    /// event. Returns how many orphans are being stopped.
    /// [`start_all`](Supervisor::start_all) calls it.
    ///
    /// # Errors
    /// [`Error::StateDir`] when the state directory cannot be listed at
    /// all; no single entry fails it.
    pub fn cleanup_orphans(&mut self, now: Instant) -> Result<usize> {
        let now = self.observe(now);
        let scans = self.sys.scan_orphans().map_err(|source| Error::StateDir {
            path: self.sys.state_dir().map(|p| p.to_owned()).unwrap_or_default(),
            source,
        })?;
        let mut stopping = 0;
        for scan in scans {
            match scan {
                OrphanScan::Alive(o) => {
                    let name: Arc<str> = Arc::from(o.name.as_str());
                    let (signal, timeout) = match self.names.get(&name) {
                        Some(&id) => (self.p(id).spec.stop_signal, self.p(id).spec.stop_timeout),
                        None => (Signal::SIGTERM, std::time::Duration::from_secs(10)),
                    };
                    let kill_at = later(now, timeout);
                    self.send_signal(o.pid, signal, true);
                    self.orphans.insert(o.pid, OrphanTask { name: name.clone(), kill_at: Some(kill_at) });
                    self.timers.reset(Deadline::Orphan(o.pid), None, Some(kill_at));
                    self.emit(Event::OrphanStopping { name, pid: o.pid, signal, kill_at });
                    stopping += 1;
                }
                OrphanScan::Discarded { name, reason } => {
                    self.emit(Event::OrphanDiscarded { name: Arc::from(name.as_str()), reason })
                }
                OrphanScan::Refused { name, reason } => {
                    self.emit(Event::OrphanRefused { name: Arc::from(name.as_str()), reason })
                }
            }
        }
        Ok(stopping)
    }

    /// `Backoff` until the orphan of the same name is gone, at the latest
    /// until `until` (its kill deadline and a grace).
    pub(super) fn await_orphan(&mut self, id: usize, now: Instant, until: Instant) {
        let p = self.p_mut(id);
        p.state = State::Backoff;
        p.awaits_orphan = true;
        let (name, failure_streak) = (p.name.clone(), p.streak);
        let retry_at = until.max(now);
        self.set_deadline(id, Some(retry_at));
        self.emit(Event::Backoff { name, delay: retry_at.saturating_duration_since(now), retry_at, failure_streak });
    }

    pub(super) fn on_orphan_gone(&mut self, pid: Pid, now: Instant) {
        let Some(task) = self.orphans.remove(&pid) else { return };
        self.timers.reset(Deadline::Orphan(pid), task.kill_at, None);
        self.emit(Event::OrphanGone { name: task.name.clone(), pid });
        if let Some(&id) = self.names.get(&task.name) {
            let p = self.p(id);
            if p.awaits_orphan && p.state == State::Backoff {
                self.set_deadline(id, Some(now));
            }
        }
    }

    /// The orphan `pid` is past its stop timeout: SIGKILL. Returns its name,
    /// pid and whether the signal was delivered.
    pub(super) fn kill_orphan(&mut self, pid: Pid) -> Option<(Arc<str>, Pid, bool)> {
        let task = self.orphans.get_mut(&pid)?;
        let old = task.kill_at.take();
        let name = task.name.clone();
        self.timers.reset(Deadline::Orphan(pid), old, None);
        Some((name, pid, self.send_signal(pid, Signal::SIGKILL, true)))
    }
}
