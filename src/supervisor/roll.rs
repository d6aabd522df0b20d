//! Rolling restarts: each instance in turn gets a replacement, and its old
//! child is stopped only once the replacement is `Running`, so at no moment
//! fewer instances serve.

use std::sync::Arc;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::event::{Event, StopReason, Stream};
use crate::state::{Exit, State};
use crate::sys::Sys;

use super::proc::Retiring;
use super::Supervisor;
use crate::timers::{later, Deadline};

/// The roll in progress: the instances still to replace (slot, identity,
/// why), and the one whose replacement is starting. `label` is the target
/// of the host's roll; `None` while only memory restarts of pool instances
/// are queued (they end with no [`Event::RollDone`]).
#[derive(Debug, Default)]
pub(super) struct Roll {
    pub(super) label: Option<Arc<str>>,
    pub(super) queue: std::collections::VecDeque<Queued>,
    pub(super) current: Option<usize>,
}

/// One instance a roll is to replace.
#[derive(Clone, Copy, Debug)]
pub(super) struct Queued {
    id: usize,
    /// The slot's identity (`added_seq`): a slot reused by another
    /// process is not replaced.
    added: u64,
    reason: StopReason,
    /// For a memory restart, the child that went above its threshold: a
    /// successor that came meanwhile is not replaced.
    pid: Option<Pid>,
}

impl<S: Sys> Supervisor<S> {
    /// Replaces the `Running` processes of `target` one at a time, oldest
    /// first: spawn the replacement, wait until it is `Running` (its start
    /// grace passed), then stop the old child (stop signal, SIGKILL after
    /// the stop timeout). `target` is a group (a spec added with
    /// [`instances`](crate::ProcessSpec::instances)), one process name, or
    /// `None` for everything. Processes that are not `Running` are skipped:
    /// they are already on their way to a fresh start.
    ///
    /// A replacement that exits before its start grace, or cannot be
    /// spawned, aborts the roll: the old child keeps serving, and
    /// [`Event::RollAborted`] says why. A finished roll is
    /// [`Event::RollDone`]; one ended by [`stop_all`](Supervisor::stop_all)
    /// is [`Event::RollAborted`] too. A roll requested while one runs
    /// replaces the queue of the running one (its current replacement goes
    /// on).
    ///
    /// While a replacement starts, the status shows the old child serving
    /// (`Running`, its pid), and the new one as
    /// [`replacement_pid`](crate::ProcessStatus::replacement_pid).
    ///
    /// # Errors
    /// [`Error::UnknownProcess`] for a target that names nothing;
    /// [`Error::ShuttingDown`].
    pub fn rolling_restart(&mut self, target: Option<&str>, now: Instant) -> Result<()> {
        let now = self.observe(now);
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        let mut ids: Vec<(u64, usize)> = self
            .procs
            .iter()
            .enumerate()
            .filter_map(|(id, p)| p.as_ref().map(|p| (id, p)))
            .filter(|(_, p)| target.is_none_or(|t| &*p.name == t || p.group.as_deref() == Some(t)))
            .map(|(id, p)| (p.start_seq, id))
            .collect();
        if ids.is_empty() {
            if let Some(t) = target {
                return Err(Error::UnknownProcess(t.to_owned()));
            }
        }
        ids.sort_unstable();
        let label: Arc<str> = Arc::from(target.unwrap_or("*"));
        self.roll.label = Some(label);
        let current = self.roll.current;
        // A memory restart still queued stays one, in the new queue or
        // after it.
        let memory: Vec<Queued> = self.roll.queue.iter().filter(|q| q.reason == StopReason::Memory).copied().collect();
        let mut queue: std::collections::VecDeque<Queued> = ids
            .into_iter()
            .filter(|&(_, id)| Some(id) != current)
            .map(|(_, id)| {
                memory.iter().find(|q| q.id == id).copied().unwrap_or(Queued {
                    id,
                    added: self.p(id).added_seq,
                    reason: StopReason::Roll,
                    pid: None,
                })
            })
            .collect();
        let kept: Vec<Queued> = memory.into_iter().filter(|m| !queue.iter().any(|q| q.id == m.id)).collect();
        queue.extend(kept);
        self.roll.queue = queue;
        self.advance_roll(now);
        Ok(())
    }

    /// Starts the next replacement, if none is starting.
    pub(super) fn advance_roll(&mut self, now: Instant) {
        while self.roll.current.is_none() {
            let Some(Queued { id, added, reason: why, pid }) = self.roll.queue.pop_front() else {
                if let Some(name) = self.roll.label.take() {
                    self.emit(Event::RollDone { name });
                    self.roll_ended(None);
                }
                return;
            };
            let serving = self.procs.get(id).and_then(Option::as_ref).is_some_and(|p| {
                p.added_seq == added
                    && p.state == State::Running
                    && p.retiring.is_none()
                    && !p.manual_stop
                    && !p.removing
                    && pid.is_none_or(|pid| p.pid == Some(pid) && p.live.over_memory)
            });
            if serving {
                self.begin_replacement(id, now, why);
            }
        }
    }

    /// Queues a new-before-old replacement of pool instance `id`, whose
    /// tree went above its memory threshold: into the roll in progress,
    /// or as a roll of its own. Nothing when it is already queued or being
    /// replaced.
    pub(super) fn replace_for_memory(&mut self, id: usize, now: Instant) {
        if self.roll.current == Some(id) {
            return;
        }
        let p = self.p(id);
        let me = Queued { id, added: p.added_seq, reason: StopReason::Memory, pid: p.pid };
        match self.roll.queue.iter_mut().find(|q| q.id == id) {
            // Queued by the host's roll: still its turn, for memory now.
            Some(q) => *q = me,
            None => self.roll.queue.push_back(me),
        }
        self.advance_roll(now);
    }

    /// Moves the current child aside and spawns its replacement.
    fn begin_replacement(&mut self, id: usize, now: Instant, reason: StopReason) {
        let p = self.p_mut(id);
        let (old_pid, old_started) = (p.pid.expect("Running has a pid"), p.started_at);
        let (lines, tail) = (p.lines.take(), std::mem::take(&mut p.tail));
        p.retiring = Some(Box::new(Retiring {
            pid: old_pid,
            started_at: old_started,
            kill_at: None,
            signalled: false,
            exit: None,
            lines,
            tail,
            last_exit: p.last_exit,
            exit_count: p.exit_count,
            version: p.child_version,
            reason,
        }));
        p.restart_count = p.restart_count.saturating_add(1);
        match self.spawn_child(id, now) {
            Ok(_) if self.p(id).state == State::Running => self.retire_old(id, now), // no start grace
            Ok(_) => self.roll.current = Some(id),
            Err(e) => {
                self.restore_old(id);
                self.abort_roll(id, format!("replacement could not be spawned: {e}"), now);
            }
        }
    }

    /// The replacement failed: the old child is the process's child again,
    /// and the status is the one it had (the replacement's exit was its
    /// own event, not the process's exit).
    fn restore_old(&mut self, id: usize) {
        self.set_deadline(id, None);
        let p = self.p_mut(id);
        let old = p.retiring.take().expect("restore_old is called during a replacement");
        p.pid = Some(old.pid);
        p.started_at = old.started_at;
        p.lines = old.lines;
        p.tail = old.tail;
        p.last_exit = old.last_exit;
        p.exit_count = old.exit_count;
        p.child_version = old.version;
        p.state = State::Running;
        self.restore_liveness(id);
    }

    /// The replacement of `id` will never serve: it was no restart.
    fn uncount_replacement(&mut self, id: usize) {
        let p = self.p_mut(id);
        p.restart_count = p.restart_count.saturating_sub(1);
    }

    fn abort_roll(&mut self, id: usize, reason: String, now: Instant) {
        self.uncount_replacement(id);
        let memory: Vec<Queued> =
            self.roll.queue.drain(..).filter(|q| q.reason == StopReason::Memory && q.id != id).collect();
        self.roll.current = None;
        self.roll.label = None;
        let name = self.p(id).name.clone();
        self.emit(Event::RollAborted { name, reason: reason.clone() });
        self.roll_ended(Some(&reason));
        // Memory restarts are not dropped with the roll: the aborted one's
        // old child (restored, if it serves) and each waiting one still
        // above its threshold is stopped the plain way.
        self.memory_replacement_failed(id, now);
        for q in memory {
            let same =
                self.procs.get(q.id).and_then(Option::as_ref).is_some_and(|p| p.added_seq == q.added && p.pid == q.pid);
            if same {
                self.memory_replacement_failed(q.id, now);
            }
        }
    }

    /// `stop_all` (or `shutdown`) ends the roll in progress, if any:
    /// [`Event::RollAborted`] names its target. The replacement starting
    /// never serves, so it is no restart; both children are then stopped
    /// by the caller.
    pub(super) fn abort_roll_for_stop_all(&mut self) {
        if let Some(id) = self.roll.current {
            self.uncount_replacement(id);
        }
        let roll = std::mem::take(&mut self.roll);
        // Memory restarts alone are no roll the host asked for.
        let Some(label) = roll.label else { return };
        self.emit(Event::RollAborted { name: label, reason: "stopped by stop_all".to_owned() });
        self.roll_ended(Some("stopped by stop_all"));
    }

    /// The replacement of `id` is `Running` (or `id` is being stopped): the
    /// old child, if any, gets its stop signal, and `id` is no longer the
    /// roll's current one. The caller advances the roll.
    pub(super) fn retire_old(&mut self, id: usize, now: Instant) {
        if self.roll.current == Some(id) {
            self.roll.current = None;
        }
        let p = self.p_mut(id);
        let (signal, timeout, name) = (p.spec.stop_signal, p.spec.stop_timeout, p.name.clone());
        let Some(old) = p.retiring.as_mut().filter(|r| !r.signalled) else { return };
        old.signalled = true;
        let reason = old.reason;
        let kill_at = later(now, timeout);
        old.kill_at = Some(kill_at);
        let pid = old.pid;
        self.timers.reset(Deadline::Retire(id), None, Some(kill_at));
        self.send_signal(pid, signal, false);
        self.emit(Event::Retiring { name, pid, signal, kill_at, reason });
    }

    /// The child of `id` exited. If it was the replacement the roll waits
    /// for and had not reached `Running`, the roll is aborted, and the old
    /// child, if it still serves, is the process's child again. Returns
    /// whether the old child took over (then the exit needs no policy).
    pub(super) fn replacement_failed(&mut self, id: usize, was_running: bool, now: Instant) -> bool {
        if self.roll.current != Some(id) || was_running {
            return false;
        }
        let p = self.p(id);
        let why = if p.live.over_memory {
            "went above its memory threshold before it was ready"
        } else if p.live.failed {
            // Stopped by procsup: its start timeout passed before it was ready.
            "was not ready within its start timeout"
        } else if matches!(p.spec.ready, crate::Readiness::Grace(_)) {
            "exited before its start grace"
        } else {
            "exited before it was ready"
        };
        let reason = format!("replacement {why}: {}", p.last_exit.map_or_else(String::new, |e| e.to_string()));
        let old_serves = p.retiring.as_ref().is_some_and(|r| r.serves());
        if old_serves {
            self.restore_old(id);
        }
        self.abort_roll(id, reason, now);
        old_serves
    }

    /// The retiring child of `id` is past its stop timeout: SIGKILL.
    /// Returns the process name, the pid and whether it was delivered.
    pub(super) fn kill_retiring(&mut self, id: usize) -> Option<(Arc<str>, Pid, bool)> {
        let p = self.p_mut(id);
        let name = p.name.clone();
        let old = p.retiring.as_mut()?;
        let (pid, kill_at) = (old.pid, old.kill_at.take());
        self.timers.reset(Deadline::Retire(id), kill_at, None);
        Some((name, pid, self.send_signal(pid, Signal::SIGKILL, false)))
    }

    /// The retiring child `pid` of `id` was reaped. Returns false when
    /// `pid` is not a retiring child.
    pub(super) fn on_retired(&mut self, id: usize, pid: Pid, exit: Exit) -> bool {
        let p = self.p_mut(id);
        if p.retiring.as_ref().is_none_or(|r| r.pid != pid) {
            return false;
        }
        let mut old = p.retiring.take().expect("checked above");
        let name = p.name.clone();
        self.timers.reset(Deadline::Retire(id), old.kill_at, None);
        if let Some(lines) = old.lines.as_mut() {
            for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
                let mut last = Vec::new();
                lines[i].flush(&mut |l| last.push(l.to_vec()));
                if !last.is_empty() {
                    self.deliver(id, pid, stream, last, true);
                }
            }
        }
        self.emit(Event::Retired { name, pid, exit });
        let p = self.p(id);
        if p.removing && !p.state.has_child() {
            self.forget(id);
        }
        true
    }

    /// A stop of `id` also stops its retiring child, and ends its part in
    /// the roll (its replacement, stopped before it served, was no
    /// restart).
    pub(super) fn stop_retiring(&mut self, id: usize, now: Instant, reason: StopReason) {
        // Its stop is now the stop's, not the roll's.
        if let Some(old) = self.p_mut(id).retiring.as_mut().filter(|r| !r.signalled) {
            old.reason = reason;
        }
        let was_current = self.roll.current == Some(id);
        if was_current {
            self.uncount_replacement(id);
        }
        self.retire_old(id, now);
        if was_current {
            self.advance_roll(now);
        }
    }
}
