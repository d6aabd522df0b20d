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
//!   policy as an exit that is no success: after `Running` the failure
//!   streak starts over, while `Starting` it is a failed start (backoff
//!   grows, `give_up_after` counts), so a child that cannot even start
//!   below its threshold never restarts in a tight loop.

use std::time::Instant;

use nix::unistd::Pid;

use crate::event::{Event, StopReason};
use crate::state::State;
use crate::sys::Sys;

use super::Supervisor;

impl<S: Sys> Supervisor<S> {
    /// The tree of child `pid` went above its memory threshold.
    pub(super) fn on_memory_high(&mut self, pid: Pid, now: Instant) {
        let Some(&id) = self.pids.get(&pid) else { return };
        let p = self.p(id);
        let Some(threshold) = p.spec.get_restart_above_memory() else { return };
        // A retiring child is on its way out already; a child seen once
        // is being restarted.
        if p.pid != Some(pid) || p.live.over_memory || p.removing || self.shutting_down {
            return;
        }
        if !matches!(p.state, State::Starting | State::Running) {
            return;
        }
        let replace = p.group.is_some() && p.state == State::Running && p.retiring.is_none();
        let name = p.name.clone();
        self.p_mut(id).live.over_memory = true;
        let current = self.sys.usage(pid).and_then(|u| u.memory_current);
        self.emit(Event::MemoryExceeded { name, pid, current, threshold });
        if replace {
            self.replace_for_memory(id, now);
        } else {
            self.fail_stop(id, now, StopReason::Memory);
        }
    }

    /// The new-before-old replacement of `id` for memory failed (the
    /// replacement exited before it was `Running`, or could not be
    /// spawned): its old child, still above its threshold, is stopped and
    /// restarted as a process that is no pool's would be, with backoff.
    pub(super) fn memory_replacement_failed(&mut self, id: usize, now: Instant) {
        let p = self.p(id);
        if p.state == State::Running && p.pid.is_some() && !self.shutting_down {
            self.fail_stop(id, now, StopReason::Memory);
        }
    }
}
