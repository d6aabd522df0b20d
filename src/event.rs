//! What happened, in order. Steps push events; the host drains them.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::deps::Condition;
use crate::orphans::Discard;
use crate::output::escape;
use crate::state::{Cause, Exit};

/// Which output stream a captured line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stream {
    /// The child's stdout.
    Stdout,
    /// The child's stderr.
    Stderr,
}

impl Stream {
    /// `"stdout"` or `"stderr"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Why procsup sent a child its stop signal ([`Event::Stopping`],
/// [`Event::Retiring`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The host asked: `stop_process`, `restart_process`,
    /// `remove_process`, `stop_all` or `shutdown`.
    Requested,
    /// A dependency it needs left its condition (or is restarted), or it
    /// is restarted with one ([`depends_on`](crate::ProcessSpec::depends_on)).
    Dependency,
    /// The supervision strategy restarts (or gives up on) its group: a
    /// sibling exited ([`Strategy`](crate::Strategy)).
    Strategy,
    /// It failed a liveness check: its start timeout, its watchdog, or its
    /// probe's failure threshold. The exit counts as a failure.
    Failed,
    /// Its tree's memory went above
    /// [`restart_above_memory`](crate::ProcessSpec::restart_above_memory).
    Memory,
    /// A rolling restart (or a spec update) replaced it.
    Roll,
}

impl StopReason {
    /// `"requested"`, `"dependency"`, `"strategy"`, `"failed"`,
    /// `"memory"` or `"roll"`.
    ///
    /// ```
    /// assert_eq!(procsup::StopReason::Memory.as_str(), "memory");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Requested => "requested",
            StopReason::Dependency => "dependency",
            StopReason::Strategy => "strategy",
            StopReason::Failed => "failed",
            StopReason::Memory => "memory",
            StopReason::Roll => "roll",
        }
    }
}

/// Why a process became `Fatal`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FatalReason {
    /// `give_up_after(n)` consecutive failed starts.
    GaveUp {
        /// The failed starts in the streak.
        failures: u32,
    },
    /// More than `max_restarts` restarts within `period`.
    TooManyRestarts {
        /// The limit.
        max_restarts: u32,
        /// The window.
        period: Duration,
    },
    /// The program cannot be executed and the spec says retrying is
    /// pointless (`fatal_exec_errors`).
    ExecError(Errno),
    /// The spawn failed and the restart policy is `Never`.
    SpawnFailedNoRestart(Errno),
    /// It was waiting on a dependency that can no longer reach the
    /// condition: the dependency is `Fatal`, or a `Completed` dependency
    /// exited with a failure and is not restarted.
    DependencyFailed {
        /// The dependency.
        dependency: String,
    },
    /// The supervisor's restarts reached its intensity
    /// ([`Supervisor::set_intensity`](crate::Supervisor::set_intensity)):
    /// more than `max_restarts` within `period`, so the whole group gave up.
    GroupIntensity {
        /// The limit.
        max_restarts: u32,
        /// The window.
        period: Duration,
    },
}

impl fmt::Display for FatalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FatalReason::GaveUp { failures } => write!(f, "gave_up failures={failures}"),
            FatalReason::TooManyRestarts { max_restarts, period } => {
                write!(f, "too_many_restarts max={max_restarts} period_ms={}", period.as_millis())
            }
            FatalReason::ExecError(e) => write!(f, "exec_error errno={e:?}"),
            FatalReason::SpawnFailedNoRestart(e) => write!(f, "spawn_failed errno={e:?}"),
            FatalReason::GroupIntensity { max_restarts, period } => {
                write!(f, "group_intensity max_restarts={max_restarts} period_ms={}", period.as_millis())
            }
            FatalReason::DependencyFailed { dependency } => {
                f.write_str("dependency_failed dependency=")?;
                logfmt_value(f, dependency)
            }
        }
    }
}

/// Something that happened to a supervised process.
///
/// Its `Display` is one logfmt line, as the `supervise` example prints it:
///
/// ```
/// use std::sync::Arc;
/// use procsup::{Event, Exit};
/// use nix::unistd::Pid;
/// let e = Event::Exited {
///     name: Arc::from("web"),
///     pid: Pid::from_raw(42),
///     exit: Exit::Exited(1),
///     cause: None,
///     uptime: std::time::Duration::from_millis(1500),
///     restart_count: 0,
///     last_output: vec![],
/// };
/// assert_eq!(e.to_string(), "event=exited name=web pid=42 code=1 uptime_ms=1500 restarts=0");
/// assert_eq!(e.name(), "web");
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The process was asked to start but waits: `dependency` has not
    /// reached `condition` yet. Emitted when it starts waiting and when the
    /// dependency it waits on changes.
    Waiting {
        /// Process name.
        name: Arc<str>,
        /// The first dependency not at its condition.
        dependency: Arc<str>,
        /// The condition.
        condition: Condition,
    },
    /// A child was spawned.
    Spawned {
        /// Process name.
        name: Arc<str>,
        /// The new child.
        pid: Pid,
        /// The process's restart count after this spawn.
        restart_count: u32,
    },
    /// Spawning failed (the program is missing, `EAGAIN`, ...).
    SpawnFailed {
        /// Process name.
        name: Arc<str>,
        /// The OS error number.
        errno: Errno,
        /// The OS error as text.
        message: String,
    },
    /// The child is ready and now `Running` (it lived through its start
    /// grace, or its readiness source fired: then [`Event::Ready`] comes
    /// just before).
    Running {
        /// Process name.
        name: Arc<str>,
        /// The child.
        pid: Pid,
    },
    /// The child ended and was reaped.
    Exited {
        /// Process name.
        name: Arc<str>,
        /// The reaped child.
        pid: Pid,
        /// How it ended.
        exit: Exit,
        /// Why, when the OS layer knows more than `exit` (the OOM killer).
        cause: Option<Cause>,
        /// How long it lived (as measured by the `now` values passed in).
        uptime: Duration,
        /// The process's restart count.
        restart_count: u32,
        /// Crash context: the last lines (up to 5, oldest first) the child
        /// wrote to captured streams. Empty without [`Output::Capture`](crate::Output::Capture).
        last_output: Vec<Vec<u8>>,
    },
    /// A restart is scheduled.
    Backoff {
        /// Process name.
        name: Arc<str>,
        /// The wait.
        delay: Duration,
        /// When the restart is due.
        retry_at: Instant,
        /// Consecutive failed starts so far.
        failure_streak: u32,
    },
    /// The supervisor gave up on the process.
    Fatal {
        /// Process name.
        name: Arc<str>,
        /// Why.
        reason: FatalReason,
    },
    /// The stop signal was sent.
    Stopping {
        /// Process name.
        name: Arc<str>,
        /// The child.
        pid: Pid,
        /// The signal sent.
        signal: Signal,
        /// When SIGKILL follows if it has not exited.
        kill_at: Instant,
        /// Why.
        reason: StopReason,
    },
    /// The tree's memory went above the spec's
    /// [`restart_above_memory`](crate::ProcessSpec::restart_above_memory)
    /// (its cgroup's `memory.events` said so): a graceful restart follows,
    /// its stop with [`StopReason::Memory`].
    MemoryExceeded {
        /// Process name.
        name: Arc<str>,
        /// The child.
        pid: Pid,
        /// The tree's memory when it was seen, bytes; `None` when it could
        /// not be read.
        current: Option<u64>,
        /// The threshold, bytes.
        threshold: u64,
    },
    /// The leader was reaped (its `Exited` came first) but the rest of its
    /// tree lives on: the process stays `Stopping` until the tree is empty
    /// ([`Event::Drained`]), with SIGKILL to the tree at `kill_at`.
    Draining {
        /// Process name.
        name: Arc<str>,
        /// The reaped leader.
        pid: Pid,
        /// The stop signal sent to the rest now; `None` when the leader
        /// exited on a stop, whose signal already went to the whole tree.
        signal: Option<Signal>,
        /// When SIGKILL goes to the tree; `None` when it already went.
        kill_at: Option<Instant>,
    },
    /// The tree of a draining process is empty: now it is gone.
    Drained {
        /// Process name.
        name: Arc<str>,
        /// The reaped leader.
        pid: Pid,
    },
    /// The stop timeout passed: SIGKILL was sent.
    Killed {
        /// Process name.
        name: Arc<str>,
        /// The child.
        pid: Pid,
    },
    /// The process is stopped (after a stop the host asked for).
    Stopped {
        /// Process name.
        name: Arc<str>,
    },
    /// The process was removed from the supervisor.
    Removed {
        /// Process name.
        name: Arc<str>,
    },
    /// A rolling restart stopped the previous child of a process, its
    /// replacement being `Running`.
    Retiring {
        /// Process name.
        name: Arc<str>,
        /// The old child.
        pid: Pid,
        /// The stop signal sent.
        signal: Signal,
        /// When SIGKILL follows if it has not exited.
        kill_at: Instant,
        /// Why: [`StopReason::Roll`], or [`StopReason::Memory`] for the
        /// new-before-old restart of a pool's instance.
        reason: StopReason,
    },
    /// The previous child of a rolling restart was reaped (its process
    /// goes on with the replacement; no policy applies).
    Retired {
        /// Process name.
        name: Arc<str>,
        /// The old child.
        pid: Pid,
        /// How it ended.
        exit: Exit,
    },
    /// A rolling restart stopped before it finished: the replacement of
    /// `name` failed (exited before its start grace, or could not be
    /// spawned), and its old child keeps serving, as do those not yet
    /// replaced; or the host called `stop_all` (or `shutdown`), and `name`
    /// is the roll's target, as in [`Event::RollDone`].
    RollAborted {
        /// The process whose replacement failed, or the roll's target.
        name: Arc<str>,
        /// What went wrong.
        reason: String,
    },
    /// A rolling restart replaced everything it was asked to: every
    /// replacement is `Running`. Old children may still be draining; each
    /// one's end is its [`Event::Retired`].
    RollDone {
        /// The target: a group, a process, or `*` for everything.
        name: Arc<str>,
    },
    /// A process left by an earlier run (state directory) was found alive
    /// and sent its stop signal.
    OrphanStopping {
        /// The record's name.
        name: Arc<str>,
        /// The orphan.
        pid: Pid,
        /// The signal sent (to its group).
        signal: Signal,
        /// When SIGKILL follows.
        kill_at: Instant,
    },
    /// An orphan outlived its stop timeout: SIGKILL was sent.
    OrphanKilled {
        /// The record's name.
        name: Arc<str>,
        /// The orphan.
        pid: Pid,
    },
    /// An orphan is gone and its record removed.
    OrphanGone {
        /// The record's name.
        name: Arc<str>,
        /// The orphan.
        pid: Pid,
    },
    /// A record was removed without signalling anything.
    OrphanDiscarded {
        /// The record's name.
        name: Arc<str>,
        /// Why.
        reason: Discard,
    },
    /// A state-directory entry that is not a readable record of
    /// procsup's (a file without the `procsup-record 1` first line, an
    /// empty or hidden file, a symlink, a FIFO, a socket, a directory, a
    /// name that is not UTF-8, a file that cannot be opened) was left as it
    /// is; nothing was signalled.
    OrphanRefused {
        /// The entry's file name (lossy where it is not UTF-8).
        name: Arc<str>,
        /// What it is.
        reason: String,
    },
    /// A readiness source fired: the child is ready (it then becomes
    /// `Running`, or ends a reload). Not emitted for `Readiness::Grace`,
    /// which is a guess, not a signal.
    Ready {
        /// Process name.
        name: Arc<str>,
        /// The child.
        pid: Pid,
        /// From the spawn (or the reload) to readiness, by the `now` values
        /// passed in.
        after: Duration,
    },
    /// The child was not ready within its start (or reload) timeout; it is
    /// being stopped, and the exit counts as a failed start.
    StartTimeout {
        /// Process name.
        name: Arc<str>,
        /// The child.
        pid: Pid,
    },
    /// The child missed its watchdog ping (or sent `WATCHDOG=trigger`); it
    /// is being stopped and its restart policy applies.
    Watchdog {
        /// Process name.
        name: Arc<str>,
        /// The child.
        pid: Pid,
        /// True for `WATCHDOG=trigger`, false for a missed ping.
        triggered: bool,
    },
    /// The child sent `STATUS=`.
    Status {
        /// Process name.
        name: Arc<str>,
        /// The child.
        pid: Pid,
        /// The text.
        text: String,
    },
    /// The child is reloading (`RELOADING=1`, or a `reload_process` of a
    /// `Notify` child); `Ready` ends it.
    Reloading {
        /// Process name.
        name: Arc<str>,
        /// The child.
        pid: Pid,
    },
    /// A liveness probe is due: run it and answer with
    /// [`Supervisor::probe_result`](crate::Supervisor::probe_result) and
    /// this generation.
    ProbeDue {
        /// Process name.
        name: Arc<str>,
        /// The probe's generation.
        generation: u64,
    },
    /// A liveness probe failed (or timed out).
    ProbeFailed {
        /// Process name.
        name: Arc<str>,
        /// The child.
        pid: Pid,
        /// The probe's generation.
        generation: u64,
        /// Failures in a row; at the spec's threshold the child is stopped.
        failures: u32,
        /// True when no answer came within the probe timeout.
        timed_out: bool,
    },
    /// An orphan the host adopted as a subreaper
    /// ([`UnixSys::subreaper`](crate::UnixSys::subreaper)) ended and was
    /// reaped.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use procsup::{Event, Exit, Pid};
    /// let e = Event::AdoptedExited { name: Arc::from("web"), pid: Pid::from_raw(77), exit: Exit::Exited(0) };
    /// assert_eq!(e.to_string(), "event=adopted_exited name=web pid=77 code=0");
    /// ```
    AdoptedExited {
        /// The supervised process whose tree it came from; empty (an
        /// invalid process name) for one that came from no supervised tree,
        /// reaped under [`SubreaperMode::AllOrphans`](crate::SubreaperMode::AllOrphans).
        name: Arc<str>,
        /// The adopted process.
        pid: Pid,
        /// How it ended.
        exit: Exit,
    },
    /// One line of captured output (without its `\n`; raw bytes, maybe
    /// not UTF-8; `Display` escapes invalid bytes as `\xNN`).
    Output {
        /// Process name.
        name: Arc<str>,
        /// The child that wrote it.
        pid: Pid,
        /// Which stream.
        stream: Stream,
        /// The line.
        line: Vec<u8>,
    },
    /// Writing to a log file of an [`Output::Log`](crate::Output::Log)
    /// failed (a full disk, a removed mount): the lines of that write are
    /// lost, the child goes on. Said once until a write succeeds again.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use procsup::Event;
    /// let e = Event::LogFailed { name: Arc::from("web"), path: "/var/log/web.log".into(), error: "No space left on device (os error 28)".into() };
    /// assert_eq!(e.to_string(), r#"event=log_failed name=web path=/var/log/web.log error="No space left on device (os error 28)""#);
    /// ```
    LogFailed {
        /// The process that wrote to it last.
        name: Arc<str>,
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        error: String,
    },
    /// [`Supervisor::update_spec`](crate::Supervisor::update_spec) replaced
    /// the spec of `name` (a group or a process): children started from
    /// now on run `version`, and a rolling restart brings the running ones
    /// to it.
    SpecUpdated {
        /// The group or process.
        name: Arc<str>,
        /// The new spec's version.
        version: u64,
    },
    /// The roll-out of a spec update was aborted (see
    /// [`Event::RollAborted`]): the spec of `name` is `version` again.
    /// Children already replaced run the newer version until they restart.
    SpecReverted {
        /// The group or process.
        name: Arc<str>,
        /// The version in force again.
        version: u64,
        /// Why the roll-out was aborted.
        reason: String,
    },
}

impl Event {
    /// The process the event is about.
    pub fn name(&self) -> &str {
        match self {
            Event::Spawned { name, .. }
            | Event::Waiting { name, .. }
            | Event::SpawnFailed { name, .. }
            | Event::Running { name, .. }
            | Event::Exited { name, .. }
            | Event::Backoff { name, .. }
            | Event::Fatal { name, .. }
            | Event::Stopping { name, .. }
            | Event::MemoryExceeded { name, .. }
            | Event::Killed { name, .. }
            | Event::Draining { name, .. }
            | Event::Drained { name, .. }
            | Event::Stopped { name }
            | Event::Removed { name }
            | Event::Retiring { name, .. }
            | Event::Retired { name, .. }
            | Event::RollAborted { name, .. }
            | Event::RollDone { name }
            | Event::OrphanStopping { name, .. }
            | Event::OrphanKilled { name, .. }
            | Event::OrphanGone { name, .. }
            | Event::OrphanDiscarded { name, .. }
            | Event::OrphanRefused { name, .. }
            | Event::AdoptedExited { name, .. }
            | Event::Output { name, .. }
            | Event::Ready { name, .. }
            | Event::StartTimeout { name, .. }
            | Event::Watchdog { name, .. }
            | Event::Status { name, .. }
            | Event::Reloading { name, .. }
            | Event::ProbeDue { name, .. }
            | Event::ProbeFailed { name, .. }
            | Event::LogFailed { name, .. }
            | Event::SpecUpdated { name, .. }
            | Event::SpecReverted { name, .. } => name,
        }
    }

    /// The short lowercase kind: `waiting`, `spawned`, `spawn_failed`, `running`,
    /// `exited`, `backoff`, `fatal`, `stopping`, `memory_exceeded`, `killed`, `stopped`,
    /// `removed`, `retiring`, `retired`, `roll_aborted`, `roll_done`,
    /// `orphan_stopping`, `orphan_killed`, `orphan_gone`,
    /// `orphan_discarded`, `orphan_refused`, `adopted_exited`, `output`,
    /// `ready`, `start_timeout`, `watchdog`, `status`, `reloading`,
    /// `probe_due`, `probe_failed`, `log_failed`, `spec_updated`,
    /// `spec_reverted`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Spawned { .. } => "spawned",
            Event::Waiting { .. } => "waiting",
            Event::SpawnFailed { .. } => "spawn_failed",
            Event::Running { .. } => "running",
            Event::Exited { .. } => "exited",
            Event::Backoff { .. } => "backoff",
            Event::Fatal { .. } => "fatal",
            Event::Stopping { .. } => "stopping",
            Event::MemoryExceeded { .. } => "memory_exceeded",
            Event::Killed { .. } => "killed",
            Event::Draining { .. } => "draining",
            Event::Drained { .. } => "drained",
            Event::Stopped { .. } => "stopped",
            Event::Removed { .. } => "removed",
            Event::Retiring { .. } => "retiring",
            Event::Retired { .. } => "retired",
            Event::RollAborted { .. } => "roll_aborted",
            Event::RollDone { .. } => "roll_done",
            Event::OrphanStopping { .. } => "orphan_stopping",
            Event::OrphanKilled { .. } => "orphan_killed",
            Event::OrphanGone { .. } => "orphan_gone",
            Event::OrphanDiscarded { .. } => "orphan_discarded",
            Event::OrphanRefused { .. } => "orphan_refused",
            Event::AdoptedExited { .. } => "adopted_exited",
            Event::Output { .. } => "output",
            Event::Ready { .. } => "ready",
            Event::StartTimeout { .. } => "start_timeout",
            Event::Watchdog { .. } => "watchdog",
            Event::Status { .. } => "status",
            Event::Reloading { .. } => "reloading",
            Event::ProbeDue { .. } => "probe_due",
            Event::ProbeFailed { .. } => "probe_failed",
            Event::LogFailed { .. } => "log_failed",
            Event::SpecUpdated { .. } => "spec_updated",
            Event::SpecReverted { .. } => "spec_reverted",
        }
    }
}

/// Writes `s` as a logfmt value, quoted only when it has to be.
pub(crate) fn logfmt_value(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    if !s.is_empty() && !s.contains(|c: char| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control()) {
        return f.write_str(s);
    }
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event={} name=", self.kind())?;
        logfmt_value(f, self.name())?;
        match self {
            Event::Spawned { pid, restart_count, .. } => write!(f, " pid={pid} restarts={restart_count}"),
            Event::Waiting { dependency, condition, .. } => {
                f.write_str(" dependency=")?;
                logfmt_value(f, dependency)?;
                write!(f, " condition={condition}")
            }
            Event::SpawnFailed { errno, message, .. } => {
                write!(f, " errno={errno:?} error=")?;
                logfmt_value(f, message)
            }
            Event::Running { pid, .. }
            | Event::Killed { pid, .. }
            | Event::Drained { pid, .. }
            | Event::OrphanKilled { pid, .. }
            | Event::OrphanGone { pid, .. } => write!(f, " pid={pid}"),
            Event::OrphanStopping { pid, signal, .. } => write!(f, " pid={pid} signal={}", signal.as_str()),
            Event::OrphanDiscarded { reason, .. } => write!(f, " reason={}", reason.as_str()),
            Event::OrphanRefused { reason, .. } => {
                f.write_str(" reason=")?;
                logfmt_value(f, reason)
            }
            Event::Exited { pid, exit, cause, uptime, restart_count, .. } => {
                write!(f, " pid={pid} {exit}")?;
                if let Some(cause) = cause {
                    write!(f, " cause={cause}")?;
                }
                write!(f, " uptime_ms={} restarts={restart_count}", uptime.as_millis())
            }
            Event::Backoff { delay, failure_streak, .. } => {
                write!(f, " delay_ms={} failures={failure_streak}", delay.as_millis())
            }
            Event::Fatal { reason, .. } => write!(f, " reason={reason}"),
            Event::Stopping { pid, signal, reason, .. } | Event::Retiring { pid, signal, reason, .. } => {
                write!(f, " pid={pid} signal={} reason={}", signal.as_str(), reason.as_str())
            }
            Event::MemoryExceeded { pid, current, threshold, .. } => {
                write!(f, " pid={pid}")?;
                if let Some(current) = current {
                    write!(f, " memory={current}")?;
                }
                write!(f, " threshold={threshold}")
            }
            Event::Draining { pid, signal, .. } => {
                write!(f, " pid={pid} signal={}", signal.map_or("none", Signal::as_str))
            }
            Event::Stopped { .. } | Event::Removed { .. } | Event::RollDone { .. } => Ok(()),
            Event::Retired { pid, exit, .. } | Event::AdoptedExited { pid, exit, .. } => write!(f, " pid={pid} {exit}"),
            Event::RollAborted { reason, .. } => {
                f.write_str(" reason=")?;
                logfmt_value(f, reason)
            }
            Event::Ready { pid, after, .. } => write!(f, " pid={pid} after_ms={}", after.as_millis()),
            Event::StartTimeout { pid, .. } | Event::Reloading { pid, .. } => write!(f, " pid={pid}"),
            Event::Watchdog { pid, triggered, .. } => {
                write!(f, " pid={pid}")?;
                if *triggered {
                    f.write_str(" triggered=true")?;
                }
                Ok(())
            }
            Event::Status { pid, text, .. } => {
                write!(f, " pid={pid} text=")?;
                logfmt_value(f, text)
            }
            Event::ProbeDue { generation, .. } => write!(f, " generation={generation}"),
            Event::ProbeFailed { pid, generation, failures, timed_out, .. } => {
                write!(f, " pid={pid} generation={generation} failures={failures}")?;
                if *timed_out {
                    f.write_str(" timed_out=true")?;
                }
                Ok(())
            }
            Event::Output { pid, stream, line, .. } => {
                write!(f, " pid={pid} stream={} line=", stream.as_str())?;
                logfmt_value(f, &escape(line))
            }
            Event::LogFailed { path, error, .. } => {
                f.write_str(" path=")?;
                logfmt_value(f, &path.to_string_lossy())?;
                f.write_str(" error=")?;
                logfmt_value(f, error)
            }
            Event::SpecUpdated { version, .. } => write!(f, " version={version}"),
            Event::SpecReverted { version, reason, .. } => {
                write!(f, " version={version} reason=")?;
                logfmt_value(f, reason)
            }
        }
    }
}
