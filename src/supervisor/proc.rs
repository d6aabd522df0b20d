//! The bookkeeping of one supervised process.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::output::LineBuffer;
use crate::spec::{Output, ProcessSpec};
use crate::state::{Exit, ProcessStatus, State};

/// What to do when the current child has been reaped, besides the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AfterExit {
    /// Apply the restart policy (or stay stopped after a manual stop).
    Policy,
    /// Spawn again at once (`restart_process`).
    Restart,
    /// Forget the process (`remove_process`).
    Remove,
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
    /// Its own partial output lines and crash context: two children write
    /// at once during a replacement, and their lines must not mix.
    pub(super) lines: Option<Box<[LineBuffer; 2]>>,
    pub(super) tail: VecDeque<Vec<u8>>,
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
    pub(super) last_spawn_error: Option<Errno>,
    pub(super) streak: u32,
    pub(super) manual_stop: bool,
    pub(super) after_exit: AfterExit,
    /// Reaped, but `handle_exit` has not decided what follows yet.
    pub(super) unsettled: bool,
    /// In `Backoff` only until an orphan of the same name is gone.
    pub(super) awaits_orphan: bool,
    /// Restart instants inside the `max_restarts_within` window.
    pub(super) window: VecDeque<Instant>,
    pub(super) added_seq: u64,
    pub(super) start_seq: u64,
    pub(super) lines: Option<Box<[LineBuffer; 2]>>,
    /// The last captured lines of the current child, for its exit event.
    pub(super) tail: VecDeque<Vec<u8>>,
    /// Readiness, start timeout, watchdog and probes of the current child.
    pub(super) live: super::ready::Liveness,
}

impl Proc {
    pub(super) fn status(&self) -> ProcessStatus {
        ProcessStatus {
            name: self.name.to_string(),
            group: self.group.as_deref().map(str::to_owned),
            retiring_pid: self.retiring.as_ref().map(|r| r.pid),
            state: self.state,
            pid: self.pid,
            started_at: self.started_at,
            restart_count: self.restart_count,
            exit_count: self.exit_count,
            last_exit: self.last_exit,
            last_spawn_error: self.last_spawn_error,
            next_retry_at: if self.state == State::Backoff { self.deadline } else { None },
            failure_streak: self.streak,
            give_up_remaining: self.spec.give_up_after.map(|n| n.saturating_sub(self.streak)),
            manual_stop: self.manual_stop,
            ready_at: self.live.ready_at,
            reloading: self.live.reloading_since.is_some(),
            status_text: self.live.status_text.clone(),
            notified_errno: self.live.errno,
            start_timeout_at: self.live.start_timeout_at,
            watchdog_at: self.live.watchdog_at,
            next_probe_at: self.live.probe_at,
            probe_failures: self.live.probe_failures,
        }
    }

    pub(super) fn captures(&self) -> bool {
        self.spec.stdout == Output::Capture || self.spec.stderr == Output::Capture
    }
}
