//! Draining: the leader of a tree was reaped, the rest of the tree lives.
//!
//! The OS layer reports the leader's exit as [`SysEvent::LeaderExited`]
//! and, later, [`SysEvent::TreeEmpty`]. In between the slot keeps its pid
//! (the name of the tree), stays `Stopping`, and the one kill deadline in
//! the timer table governs it like any stop:
//!
//! - the leader exited on its own (`Starting`/`Running`): the rest gets the
//!   stop signal now and SIGKILL after the stop timeout;
//! - the leader exited on a stop (`Stopping`): the stop signal already went
//!   to the whole tree, and the stop's kill deadline stands;
//! - the tree is empty: the exit is settled as any exit (restart policy,
//!   `Stopped`, restart or removal), with the uptime of the leader.
//!
//! [`SysEvent::LeaderExited`]: crate::SysEvent::LeaderExited
//! [`SysEvent::TreeEmpty`]: crate::SysEvent::TreeEmpty

use std::time::Instant;

use nix::unistd::Pid;

use crate::event::Event;
use crate::state::{Exit, State};
use crate::sys::Sys;

use super::{Reaped, Supervisor};
use crate::timers::Deadline;

impl<S: Sys> Supervisor<S> {
    /// The leader `pid` was reaped; the rest of its tree lives.
    pub(super) fn on_leader_exit(&mut self, pid: Pid, exit: Exit, now: Instant) -> Option<Reaped> {
        let Some(&id) = self.pids.get(&pid) else {
            log::warn!("procsup: the OS layer reported pid {pid}, which is not ours");
            return None;
        };
        if self.retiring_leader_exit(id, pid, exit, now) {
            return None;
        }
        if self.p(id).pid != Some(pid) || self.p(id).draining {
            log::warn!("procsup: the OS layer reported the exit of pid {pid} twice");
            return None;
        }
        let reaped = self.record_exit(id, pid, exit, now);
        self.disarm(id); // no readiness, watchdog or probe for a reaped leader
        let p = self.p_mut(id);
        p.draining = true;
        p.exited_at = Some(now);
        let name = p.name.clone();
        let (signal, kill_at) = match p.state {
            State::Starting | State::Running => {
                p.state = State::Stopping;
                let (signal, kill_at) = (p.spec.stop_signal, now + p.spec.stop_timeout);
                self.set_deadline(id, Some(kill_at));
                self.send_signal(pid, signal, false);
                (Some(signal), Some(kill_at))
            }
            // A stop's signal already went to the whole tree; its kill
            // deadline (if SIGKILL has not gone out yet) stands.
            _ => (None, p.deadline),
        };
        self.emit(Event::Draining { name, pid, signal, kill_at });
        Some(reaped)
    }

    /// The tree of the reaped leader `pid` is empty: the process is gone.
    pub(super) fn on_tree_empty(&mut self, pid: Pid, now: Instant) {
        let Some(id) = self.pids.remove(&pid) else {
            log::warn!("procsup: the OS layer reported the tree of pid {pid}, which is not ours");
            return;
        };
        let retired_exit = self.p(id).retiring.as_ref().filter(|r| r.pid == pid).map(|r| r.exit);
        if let Some(exit) = retired_exit {
            self.on_retired(id, pid, exit.unwrap_or(Exit::Unknown));
            return;
        }
        let p = self.p_mut(id);
        if p.pid != Some(pid) || !p.draining {
            log::warn!("procsup: the OS layer reported the tree of pid {pid} empty before its leader's exit");
            self.pids.insert(pid, id);
            return;
        }
        p.draining = false;
        p.pid = None;
        p.unsettled = true;
        let name = p.name.clone();
        self.emit(Event::Drained { name, pid });
        self.settle_exit(id, now);
    }

    /// The leader of the retiring child of `id` was reaped: the old child
    /// drains like a stopped one (stop signal to the rest now if it had
    /// none yet, SIGKILL at its kill deadline). False when `pid` is not
    /// the retiring child.
    fn retiring_leader_exit(&mut self, id: usize, pid: Pid, exit: Exit, now: Instant) -> bool {
        let p = self.p_mut(id);
        let Some(old) = p.retiring.as_mut().filter(|r| r.pid == pid) else { return false };
        old.exit = Some(exit);
        let (signal, timeout, name) = (p.spec.stop_signal, p.spec.stop_timeout, p.name.clone());
        let sent = if old.signalled {
            None
        } else {
            old.signalled = true;
            let kill_at = now + timeout;
            old.kill_at = Some(kill_at);
            self.timers.reset(Deadline::Retire(id), None, Some(kill_at));
            self.send_signal(pid, signal, false);
            Some(signal)
        };
        let kill_at = self.p(id).retiring.as_ref().and_then(|r| r.kill_at);
        self.emit(Event::Draining { name, pid, signal: sent, kill_at });
        true
    }
}
