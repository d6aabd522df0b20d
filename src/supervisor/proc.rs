//! The bookkeeping of one supervised process.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::output::LineBuffer;
use crate::spec::{Output, ProcessSpec};
use crate::state::{Cause, Containment, Exit, ProcessStatus, State};

/// What to do when the current child has been reaped, besides the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AfterExit {
    /// Apply the restart policy (or stay stopped after a manual stop).
    Policy,
    /// Spawn again at once, a counted restart (`restart_process`).
    Restart,
    /// Start again as from `Stopped`: a fresh failure streak, no restart
    /// counted (`start_process` while `Stopping`).
    Start,
    /// Wait for its dependencies again: it was stopped because a `Ready`
    /// dependency left `Running`.
    Wait,
    /// Wait for the rest of its group: a group restart (or give-up) of
    /// the strategy stopped it.
    Hold,
    /// Become `Fatal`: its instance group gave up.
    GiveUp,
}

/// The previous child of a process being replaced by a rolling restart:
/// it keeps serving until its replacement is `Running`.
#[derive(Debug)]
pub(super) struct Retiring {
    pub(super) pid: Pid,
    pub(super) started_at: Option<Instant>,
    /// When SIGKILL follows, once the stop signal went out.
    pub(super) kill_at: Option<Instant>,
    pub(super) signalled: bool,
    /// Its leader was reaped with this exit; the rest of its tree drains.
    pub(super) exit: Option<Exit>,
    /// Its own partial output lines and crash context: two children write
    /// at once during a replacement, and their lines must not mix.
    pub(super) lines: Option<Box<[LineBuffer; 2]>>,
    pub(super) tail: VecDeque<Vec<u8>>,
    /// The process's last exit and exit count before the replacement: a
    /// replacement that fails is not the process's exit (the old child
    /// still serves), so they are restored with it.
    pub(super) last_exit: Option<Exit>,
    pub(super) exit_count: u32,
    /// The spec version it runs.
    pub(super) version: u64,
    /// Why it is replaced (in its `Retiring` event).
    pub(super) reason: crate::event::StopReason,
}

impl Retiring {
    /// Still serving: its replacement is not `Running` yet, so it has not
    /// been sent its stop signal.
    pub(super) fn serves(&self) -> bool {
        !self.signalled
    }
}

#[derive(Debug)]
pub(super) struct Proc {
    pub(super) name: Arc<str>,
    /// The spec's name when this is one of its instances.
    pub(super) group: Option<Arc<str>>,
    pub(super) retiring: Option<Box<Retiring>>,
    pub(super) spec: ProcessSpec,
    pub(super) state: State,
    pub(super) pid: Option<Pid>,
    pub(super) started_at: Option<Instant>,
    /// The one pending deadline: promotion (Starting), retry (Backoff) or
    /// kill (Stopping). Mirrored in `Supervisor::timers` as `Deadline::Proc`.
    pub(super) deadline: Option<Instant>,
    pub(super) restart_count: u32,
    pub(super) exit_count: u32,
    pub(super) last_exit: Option<Exit>,
    /// The OS layer reported an OOM kill in the current child's tree.
    pub(super) oom_killed: bool,
    pub(super) last_cause: Option<Cause>,
    /// The last child was stopped above its memory threshold soon after it
    /// started (a failed start): like an OOM kill, the streak carries on
    /// through the next child's `Running`.
    pub(super) memory_failed: bool,
    pub(super) last_spawn_error: Option<Errno>,
    pub(super) streak: u32,
    pub(super) manual_stop: bool,
    pub(super) after_exit: AfterExit,
    /// `remove_process` was called: the process is forgotten once its
    /// children are reaped. Nothing undoes it (a later stop, start or
    /// restart cannot overwrite it), so `Removed` always follows.
    pub(super) removing: bool,
    /// Reaped, but `handle_exit` has not decided what follows yet.
    pub(super) unsettled: bool,
    /// What holds the current (or last) child's tree.
    pub(super) containment: Option<Containment>,
    /// The leader was reaped at `exited_at`; the rest of its tree drains
    /// (`pid` stays, as the name of the tree, until it is empty).
    pub(super) draining: bool,
    pub(super) exited_at: Option<Instant>,
    /// In `Backoff` only until an orphan of the same name is gone.
    pub(super) awaits_orphan: bool,
    /// Restart instants inside the `max_restarts_within` window.
    pub(super) window: VecDeque<Instant>,
    pub(super) added_seq: u64,
    pub(super) start_seq: u64,
    /// The version of `spec` (see `Supervisor::update_spec`), and the one
    /// the current child was spawned with.
    pub(super) spec_version: u64,
    pub(super) child_version: u64,
    pub(super) lines: Option<Box<[LineBuffer; 2]>>,
    /// The last captured lines of the current child, for its exit event.
    pub(super) tail: VecDeque<Vec<u8>>,
    /// In `Waiting`: the dependency it waits on, as last reported.
    pub(super) waiting_on: Option<(Arc<str>, crate::deps::Condition)>,
    /// `Waiting` for a group restart to start it again, not for its
    /// dependencies.
    pub(super) held: bool,
    /// Readiness, start timeout, watchdog and probes of the current child.
    pub(super) live: super::ready::Liveness,
    /// The child the `Sys` was told is restarted at once
    /// ([`Sys::respawn_at_once`](crate::Sys::respawn_at_once)).
    pub(super) at_once: Option<Pid>,
    /// Changed since that was last looked at (`at_once.rs`).
    pub(super) at_once_dirty: bool,
}

impl Proc {
    pub(super) fn status(&self) -> ProcessStatus {
        // While a replacement starts, the old child is the one serving: the
        // status shows it Running, and the replacement aside.
        let serving = self.retiring.as_ref().filter(|r| r.serves());
        let (state, pid, started_at, retiring_pid, replacement_pid, spec_version) = match serving {
            Some(old) => (State::Running, Some(old.pid), old.started_at, None, self.pid, old.version),
            None => (
                self.state,
                self.pid,
                self.started_at,
                self.retiring.as_ref().map(|r| r.pid),
                None,
                if self.pid.is_some() { self.child_version } else { self.spec_version },
            ),
        };
        let live = match serving {
            Some(_) => self.live.old.as_deref().unwrap_or(&self.live),
            None => &self.live,
        };
        ProcessStatus {
            name: self.name.to_string(),
            group: self.group.as_deref().map(str::to_owned),
            retiring_pid,
            replacement_pid,
            state,
            pid,
            containment: self.containment,
            // A replacement draining behind a serving old child is the
            // replacement's business, as its state is.
            draining: self.draining && serving.is_none(),
            started_at,
            restart_count: self.restart_count,
            exit_count: self.exit_count,
            last_exit: self.last_exit,
            last_cause: self.last_cause,
            last_spawn_error: self.last_spawn_error,
            next_retry_at: if self.state == State::Backoff { self.deadline } else { None },
            failure_streak: self.streak,
            give_up_remaining: self.spec.give_up_after.map(|n| n.saturating_sub(self.streak)),
            manual_stop: self.manual_stop,
            spec_version,
            waiting_on: self.waiting_on.as_ref().map(|(d, c)| (d.to_string(), *c)),
            ready_at: live.ready_at.filter(|_| state.has_child()),
            reloading: live.reloading_since.is_some(),
            status_text: live.status_text.clone(),
            notified_errno: live.errno,
            start_timeout_at: live.start_timeout_at,
            watchdog_at: live.watchdog_at,
            next_probe_at: live.probe_at,
            probe_failures: live.probe_failures,
        }
    }

    /// Reaching `Running` ends the failure streak, unless the last child
    /// was OOM-killed: OOM kills in a row add up to `give_up_after`, even
    /// when each child ran a while first.
    pub(super) fn reset_streak(&mut self) {
        if self.last_cause != Some(Cause::OomKilled) && !self.memory_failed {
            self.streak = 0;
        }
    }

    pub(super) fn captures(&self) -> bool {
        [&self.spec.stdout, &self.spec.stderr].iter().any(|o| matches!(o, Output::Capture | Output::Log(_)))
    }
}
