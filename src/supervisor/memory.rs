//! Restart on memory growth
//! ([`restart_above_memory`](crate::ProcessSpec::restart_above_memory)).
//!
//! The OS layer writes the threshold as the child's `memory.high` and
//! reports [`SysEvent::MemoryHigh`](crate::SysEvent::MemoryHigh) when the
//! kernel raises its cgroup's `memory.events`: no poll. Once per child,
//! a graceful restart follows:
//!
//! - a `Running` instance of a pool with nothing else under way is
//!   replaced new-before-old, as one step of a rolling restart (queued
//!   behind a roll in progress);
//! - anything else gets its stop signal, and its exit follows the restart
//!   policy as an exit that is no success. A child that had been `Running`
//!   for [`MEMORY_EARLY`] (1 s) or more ends a started run (the streak
//!   starts over). One still `Starting`, or `Running` for less, failed its
//!   start, as an OOM kill does: the backoff grows and `give_up_after`
//!   counts it, across the next child's `Running` too, so a threshold the
//!   program cannot live under never restarts it at fork speed.

use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::event::{Event, StopReason};
use crate::state::State;
use crate::sys::Sys;

use super::proc::Proc;
use super::Supervisor;

/// A child above its threshold before it has been `Running` this long
/// failed its start.
pub(super) const MEMORY_EARLY: Duration = Duration::from_secs(1);

impl Proc {
    /// Whether its child, above its memory threshold at `now`, is still
    /// `Starting` or has been `Running` for less than [`MEMORY_EARLY`].
    pub(super) fn memory_early(&self, now: Instant) -> bool {
        self.state == State::Starting
            || self.live.ready_at.is_none_or(|t| now.saturating_duration_since(t) < MEMORY_EARLY)
    }
}

impl<S: Sys> Supervisor<S> {
    /// The tree of child `pid` went above its memory threshold.
    /// `threshold` is the one it was spawned with (a spec update since
    /// applies to its successor).
    pub(super) fn on_memory_high(&mut self, pid: Pid, memory: Option<u64>, threshold: u64, now: Instant) {
        let Some(&id) = self.pids.get(&pid) else { return };
        let p = self.p(id);
        // A retiring child is on its way out already; a child seen once
        // is being restarted.
        let live = matches!(p.state, State::Starting | State::Running);
        if !live || p.pid != Some(pid) || p.live.over_memory || p.removing || self.shutting_down {
            return;
        }
        // A pool instance that went above soon after its start would only
        // hand its successor the same fate: it backs off instead.
        let replace = p.group.is_some() && p.state == State::Running && p.retiring.is_none() && !p.memory_early(now);
        let name = p.name.clone();
        self.p_mut(id).live.over_memory = true;
        self.emit(Event::MemoryExceeded { name, pid, current: memory, threshold });
        if replace {
            self.replace_for_memory(id, now);
        } else {
            self.fail_stop(id, now, StopReason::Memory);
        }
    }

    /// A roll that held a memory replacement of `id` was aborted (this
    /// replacement or another failed): if its child is still the one above
    /// its threshold and serving, it is stopped and restarted as a process
    /// that is no pool's would be, with backoff.
    pub(super) fn memory_replacement_failed(&mut self, id: usize, now: Instant) {
        let p = self.p(id);
        if p.live.over_memory && p.state == State::Running && p.pid.is_some() && !self.shutting_down {
            self.fail_stop(id, now, StopReason::Memory);
        }
    }
}
