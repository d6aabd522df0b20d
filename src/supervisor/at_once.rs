//! Which children's death is restarted at once (#22): the hint
//! [`Sys::respawn_at_once`] that lets a [`UnixSys`](crate::UnixSys) start
//! a successor held ready as it sees the death, before the supervisor hears
//! of it.
//!
//! The answer is given just before each poll, so every command the host
//! gave since has been seen, and it is kept only while nothing that could
//! change it changed. It is only looked at again for slots that were
//! touched (every change to a process goes through `p_mut`, which marks
//! it), or for all of them when something supervisor-wide changed: an idle
//! tick looks at nothing.
//!
//! The answer must never be "yes" when the supervisor would do anything
//! else than spawn the process again, with the same spec, in the tick that
//! reaps it: a successor let go on a wrong "yes" runs until it is ended.
//! So it is "no" at the first doubt: a restart that is only decided by the
//! exit (`OnFailure`), any delay, any limit that could give up, any plan
//! (a stop, a roll, an update, a group restart, dependencies).

use std::time::Instant;

use nix::unistd::Pid;

use crate::spec::RestartPolicy;
use crate::state::State;
use crate::sys::Sys;

use super::proc::AfterExit;
use super::Supervisor;

/// What the supervisor last told its `Sys`, and what to look at again.
#[derive(Debug, Default)]
pub(super) struct AtOnce {
    /// Slots touched since the last look, each once (`Proc::at_once_dirty`).
    dirty: Vec<usize>,
    /// Every slot is to be looked at (too many marks, or the first look).
    all: bool,
    /// The supervisor-wide part of the answer at the last look: when it
    /// changes, every slot is looked at.
    global: Option<(bool, Option<usize>)>,
}

impl AtOnce {
    /// Slot `id` was touched (its `at_once_dirty` was clear).
    pub(super) fn mark(&mut self, id: usize, slots: usize) {
        if self.dirty.len() >= slots.max(16) {
            // Slots reused many times between looks: look at all.
            self.all = true;
            self.dirty.clear();
        }
        self.dirty.push(id);
    }
}

impl<S: Sys> Supervisor<S> {
    /// Tells the `Sys`, for every child whose answer changed, whether its
    /// death is restarted at once. Called before each poll.
    pub(super) fn tell_at_once(&mut self) {
        let global = (self.shutting_down || !self.group.plain(), self.roll.current);
        let ids: Vec<usize> = if self.at_once.all || self.at_once.global != Some(global) {
            self.at_once.all = false;
            self.at_once.dirty.clear();
            (0..self.procs.len()).collect()
        } else if self.at_once.dirty.is_empty() {
            return;
        } else {
            std::mem::take(&mut self.at_once.dirty)
        };
        self.at_once.global = Some(global);
        let now = self.last_now;
        for id in ids {
            let want = if global.0 { None } else { self.restarts_at_once(id, now) };
            // Not through `p_mut`: looking is no change.
            let Some(p) = self.procs.get_mut(id).and_then(Option::as_mut) else { continue };
            p.at_once_dirty = false;
            let told = std::mem::replace(&mut p.at_once, want);
            if told != want {
                if let Some(old) = told {
                    self.sys.respawn_at_once(old, false);
                }
                if let Some(new) = want {
                    self.sys.respawn_at_once(new, true);
                }
            }
        }
    }

    /// The child of slot `id` when its death alone would be followed by a
    /// spawn of the same spec in the tick that reaps it (see `settle`,
    /// `schedule_restart`, `restart_verdict` and `retry_backoff`).
    fn restarts_at_once(&self, id: usize, now: Option<Instant>) -> Option<Pid> {
        let p = self.procs.get(id)?.as_deref()?;
        let pid = p.pid?;
        let spec = &p.spec;
        // Nothing planned for it but its policy.
        let plain = matches!(p.state, State::Starting | State::Running)
            && p.after_exit == AfterExit::Policy
            && !p.manual_stop
            && !p.removing
            && !p.draining
            && !p.unsettled
            && p.retiring.is_none()
            && self.roll.current != Some(id)
            && p.child_version == p.spec_version
            && !p.live.failed
            && !p.live.over_memory;
        // Restarted whatever the exit, after no delay whether it counted as
        // started or not, and nothing gives up: give_up_after counts the
        // streak one on, and the window only empties as time passes.
        let restarts = spec.restart == RestartPolicy::Always
            && spec.deps.is_empty()
            && spec.group_intensity.is_none()
            && spec.backoff.is_zero(p.streak, false)
            && spec.backoff.is_zero(0, true)
            && spec.give_up_after.is_none_or(|limit| p.streak.saturating_add(1) < limit)
            && spec.restart_window.is_none_or(|(max, period)| {
                let within = match now {
                    Some(now) => p.window.iter().filter(|&&t| now.saturating_duration_since(t) < period).count(),
                    None => p.window.len(),
                };
                within < max as usize
            });
        (plain && restarts).then_some(pid)
    }
}
