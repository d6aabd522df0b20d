//! States, exits and the read-only status snapshot.

use std::fmt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Where a supervised process is in its life cycle.
///
/// See the state machine in the crate documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Not running and not going to run until started.
    Stopped,
    /// Spawned, but not yet ready (see [`Readiness`](crate::Readiness):
    /// by default, not yet alive for its start grace period).
    Starting,
    /// Ready: its readiness source fired (by default, it has been alive
    /// for its start grace period).
    Running,
    /// Exited (or failed to spawn); a restart is scheduled.
    Backoff,
    /// The stop signal was sent; waiting for the exit (or the kill deadline).
    Stopping,
    /// Exited and the restart policy says not to restart.
    Exited,
    /// Gave up: too many failed starts, or an error that retrying cannot fix.
    Fatal,
    /// Asked to start, but a dependency has not reached its condition yet
    /// (`ProcessStatus::waiting_on` says which), or added to a started
    /// supervisor and due at the next tick. Nothing runs.
    Waiting,
}

impl State {
    /// Whether a child process exists in this state.
    ///
    /// ```
    /// assert!(procsup::State::Stopping.has_child());
    /// assert!(!procsup::State::Backoff.has_child());
    /// ```
    pub fn has_child(self) -> bool {
        matches!(self, State::Starting | State::Running | State::Stopping)
    }

    /// The lowercase name used in logs and the example CLI.
    ///
    /// ```
    /// assert_eq!(procsup::State::Backoff.as_str(), "backoff");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Stopping => "stopping",
            State::Exited => "exited",
            State::Fatal => "fatal",
            State::Waiting => "waiting",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What holds a child's whole process tree, so that a stop reaches, and
/// the supervisor waits for, everything the child started.
///
/// ```
/// assert_eq!(procsup::Containment::Cgroup.as_str(), "cgroup");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Containment {
    /// A cgroup v2 of its own, entered before exec: nothing it starts can
    /// leave it (a `setsid` daemon included); stop signals every member,
    /// escalation writes `cgroup.kill`, and it is gone when the cgroup is
    /// empty.
    Cgroup,
    /// Its own process group: stop and escalation signal the group, and
    /// after the leader exits the rest of the group is stopped and waited
    /// for. A member that calls `setsid` or `setpgid` leaves it.
    ProcessGroup,
    /// Only the child itself is signalled and waited for (no own group and
    /// no cgroup, or [`KillMode::Process`](crate::KillMode::Process)).
    None,
}

impl Containment {
    /// `"cgroup"`, `"process_group"` or `"none"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Containment::Cgroup => "cgroup",
            Containment::ProcessGroup => "process_group",
            Containment::None => "none",
        }
    }
}

impl fmt::Display for Containment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a child ended, when the OS layer knows more than its exit status.
///
/// ```
/// assert_eq!(procsup::Cause::OomKilled.as_str(), "oom");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// The kernel's OOM killer took a process of its tree (its cgroup's
    /// `memory.events` `oom_kill` went up): it reached
    /// [`memory_max`](crate::ProcessSpec::memory_max). Counted as a failed
    /// start for backoff and give-up, whatever the exit code.
    OomKilled,
}

impl Cause {
    /// `"oom"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::OomKilled => "oom",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a child's tree uses now, read through the OS layer
/// ([`Supervisor::usage`](crate::Supervisor::usage)): from its cgroup
/// (`memory.current`, `memory.peak`, `cpu.stat`, `cgroup.threads`), or from
/// `/proc` for the members of its process group (the sum of their resident
/// memory, CPU time and threads; the peak is the sum of each member's
/// peak) where there is no cgroup or no memory controller. A member that
/// already exited no longer counts on the `/proc` path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Memory in use, bytes.
    pub memory_current: Option<u64>,
    /// The most memory used since the child started, bytes.
    pub memory_peak: Option<u64>,
    /// CPU time (user and system) used.
    pub cpu_time: Option<Duration>,
    /// Tasks (processes and threads).
    pub tasks: Option<u64>,
}

/// How a child ended, named after the `wait(2)` macros.
///
/// ```
/// use procsup::Exit;
/// assert_eq!(Exit::Exited(1).code(), Some(1));
/// assert_eq!(Exit::Signaled(9).signal(), Some(nix::sys::signal::Signal::SIGKILL));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Exit {
    /// `WIFEXITED`: the child called `exit` with this code.
    Exited(i32),
    /// `WIFSIGNALED`: the child was killed by this signal number (kept as a
    /// number because real-time signals have no [`Signal`] variant).
    Signaled(i32),
    /// The child is gone but its status could not be read: someone else
    /// reaped it (`ECHILD`), which only happens when the host itself calls
    /// `waitpid(-1)`. Counted as a failure.
    Unknown,
}

impl Exit {
    /// The exit code, if the child exited normally.
    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Exited(c) => Some(c),
            _ => None,
        }
    }

    /// The signal that killed the child, if it is one `nix` knows.
    pub fn signal(self) -> Option<Signal> {
        match self {
            Exit::Signaled(s) => Signal::try_from(s).ok(),
            _ => None,
        }
    }

    /// The raw signal number that killed the child, if any.
    pub fn signal_number(self) -> Option<i32> {
        match self {
            Exit::Signaled(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Exited(c) => write!(f, "code={c}"),
            Exit::Signaled(s) => write!(f, "signal={s}"),
            Exit::Unknown => f.write_str("status=unknown"),
        }
    }
}

/// A read-only snapshot of one supervised process.
///
/// ```
/// use std::time::Instant;
/// use procsup::{ProcessSpec, State, Supervisor, testing::FakeSys};
/// let mut sup = Supervisor::with_sys(FakeSys::new());
/// sup.add_process(ProcessSpec::new("web", "server")).unwrap();
/// let st = sup.status("web").unwrap();
/// assert_eq!(st.state, State::Stopped);
/// assert_eq!(st.pid, None);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ProcessStatus {
    /// The process name.
    pub name: String,
    /// The group (the spec's name) when this is one of several instances.
    pub group: Option<String>,
    /// The previous child after a rolling restart replaced it: its
    /// replacement (`pid`) is `Running`, and it was sent its stop signal;
    /// it drains until it exits ([`Event::Retired`](crate::Event::Retired)).
    pub retiring_pid: Option<Pid>,
    /// The new child a rolling restart is starting, while the old one
    /// (`pid`) still serves. Until the replacement lives through its start
    /// grace, the status describes the serving child: `state` is `Running`,
    /// `pid` and `started_at` are the old child's. Then the replacement
    /// becomes `pid` and the old child `retiring_pid`.
    pub replacement_pid: Option<Pid>,
    /// The current state.
    pub state: State,
    /// The serving child's pid while one exists. While
    /// [`draining`](Self::draining) it is the pid of the reaped leader, kept
    /// as the name of its tree.
    pub pid: Option<Pid>,
    /// What holds the current (or last) child's tree; `None` before the
    /// first spawn.
    pub containment: Option<Containment>,
    /// The leader was reaped (its exit is `last_exit`) but the rest of its
    /// tree still lives: it is being stopped (`Stopping`), and the process
    /// is neither `Stopped` nor restarted until the tree is empty.
    pub draining: bool,
    /// When the current (or last) child was spawned.
    pub started_at: Option<Instant>,
    /// How many times the supervisor restarted it (retries after backoff,
    /// explicit restarts, rolling-restart replacements), over its whole
    /// life. A replacement counts from its spawn, and the count goes back
    /// down if it never serves (the roll aborted, or the process was
    /// stopped before the replacement was `Running`).
    pub restart_count: u32,
    /// How many times a child of it was reaped (not counting a rolling
    /// restart's replacement that failed while the old child served, nor a
    /// retired old child: each has its own event).
    pub exit_count: u32,
    /// How the last child ended (not a failed rolling-restart replacement
    /// while the old child served: see `exit_count`).
    pub last_exit: Option<Exit>,
    /// Why the last child ended, when more is known than `last_exit`
    /// (an OOM kill).
    pub last_cause: Option<Cause>,
    /// The errno of the last spawn failure, cleared by a successful spawn.
    pub last_spawn_error: Option<Errno>,
    /// When the pending restart is due (in `Backoff`).
    pub next_retry_at: Option<Instant>,
    /// Consecutive failed starts (exits before the start grace period, spawn
    /// failures). Reset when the process reaches `Running` or is started by
    /// hand.
    pub failure_streak: u32,
    /// Failed starts left before the process becomes `Fatal`, if the spec
    /// sets a limit.
    pub give_up_remaining: Option<u32>,
    /// Whether the host asked for the stop that is in progress or done.
    pub manual_stop: bool,
    /// The version of the spec the serving child runs (or, with no child,
    /// the next one will): 0 as added, one more with each
    /// [`update_spec`](crate::Supervisor::update_spec).
    pub spec_version: u64,
    /// In `Waiting`: the first dependency not at its condition yet.
    pub waiting_on: Option<(String, crate::deps::Condition)>,
    /// When the current child became ready (reached `Running`), if it has.
    pub ready_at: Option<Instant>,
    /// Whether the child is reloading (`RELOADING=1` or a reload of a
    /// `Notify` child) and has not sent `READY=1` since.
    pub reloading: bool,
    /// The last `STATUS=` text of the current (or last) child.
    pub status_text: Option<String>,
    /// The last `ERRNO=` of the current (or last) child.
    pub notified_errno: Option<Errno>,
    /// When the start (or reload) timeout expires, while one runs.
    pub start_timeout_at: Option<Instant>,
    /// When the watchdog fires unless the child pings first.
    pub watchdog_at: Option<Instant>,
    /// When the next liveness probe is due, or the running one times out.
    pub next_probe_at: Option<Instant>,
    /// Liveness probe failures in a row.
    pub probe_failures: u32,
}

impl ProcessStatus {
    /// How long the current child has been alive at `now`, if one exists.
    pub fn uptime(&self, now: Instant) -> Option<Duration> {
        match (self.pid, self.started_at) {
            (Some(_), Some(t)) => Some(now.saturating_duration_since(t)),
            _ => None,
        }
    }
}
