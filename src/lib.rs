//! Embeddable process supervision, driven by the host's own loop and clock.
//!
//! `procsup` owns the bookkeeping of supervising child processes — which
//! child runs, which died, when to restart it, when to give up, when to
//! escalate a stop to SIGKILL — and the host owns everything else: the event
//! loop, the clock, the signal handlers. Every step takes `now` from the
//! caller; nothing reads a clock, blocks, spawns a thread, installs a signal
//! handler or reaps a child it did not spawn.
//!
//! # The host loop
//!
//! ```
//! use std::time::{Duration, Instant};
//! use procsup::nix::poll::{poll, PollFd, PollFlags, PollTimeout};
//! use procsup::{Backoff, Event, ProcessSpec, Supervisor};
//!
//! let mut sup = Supervisor::new();
//! sup.add_process(ProcessSpec::new("db", "false").backoff(Backoff::fixed(Duration::from_millis(10))).give_up_after(2))?;
//! sup.add_process(ProcessSpec::new("web", "sleep").arg("60"))?;
//! sup.start_all(Instant::now())?;
//! let mut stopping = false;
//! while !(stopping && sup.is_idle()) {
//!     // 1. Sleep until a child exits or the next deadline, whichever is
//!     //    first. The timeout is rounded up: poll never wakes a fraction of
//!     //    a millisecond early to spin through zero-timeout polls.
//!     let timeout = sup.poll_timeout(Instant::now());
//!     let timeout = timeout.map_or(PollTimeout::NONE, |d| PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX));
//!     let mut fds: Vec<PollFd> = sup.readiness_fd().into_iter().map(|fd| PollFd::new(fd, PollFlags::POLLIN)).collect();
//!     let _ = poll(&mut fds, timeout); // EINTR: just look again
//!     drop(fds);
//!     // 2. One tick does all that is due: reap, kill, promote, restart.
//!     sup.tick(Instant::now());
//!     // 3. The events are the host's own: it may call the supervisor while
//!     //    handling them. Here the web server cannot live without its db.
//!     for event in sup.take_events() {
//!         println!("{event}");
//!         if let Event::Fatal { .. } = event {
//!             sup.shutdown(Instant::now());
//!             stopping = true;
//!         }
//!     }
//! }
//! assert_eq!(sup.status("web")?.state, procsup::State::Stopped);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **The call-order rule:** after any call on the supervisor (a tick, a
//! start, a stop), ask [`Supervisor::poll_timeout`] again before sleeping.
//! A deadline is only ever moved by a call on the supervisor, so a value
//! read after the last call is always current.
//!
//! The [`guide`] has this loop for epoll, mio and tokio, how to test a host
//! with [`testing::FakeSys`], and worked migrations from supervisord,
//! systemd, gunicorn and Twisted. Everything the loop names is exported
//! here, [`nix`] included, so a host needs no `nix` of its own.
//!
//! # The state machine
//!
//! | from | on | to |
//! |---|---|---|
//! | Stopped / Exited / Fatal | start | Starting (failure streak reset) |
//! | Starting | alive for the start grace (`promote_running`), or its readiness source fires | Running |
//! | Starting | start timeout passed | Stopping (a failed start: the policy applies to the exit) |
//! | Running | watchdog missed, probe failure threshold reached | Stopping (a failure: the policy applies to the exit) |
//! | Starting / Running | exit, policy restarts, no limit reached | Backoff |
//! | Starting / Running | exit, policy does not restart | Exited |
//! | Starting / Running | exit, give-up limit reached | Fatal |
//! | Backoff | retry time reached (`retry_backoff`) | Starting, `restart_count += 1` |
//! | Backoff | stop | Stopped, retry cancelled |
//! | Starting / Running | stop | Stopping: stop signal, kill deadline |
//! | Stopping | kill deadline passed (`escalate_stops`) | SIGKILL (to the group) |
//! | Stopping | exit | Stopped (a manual stop never restarts) |
//! | Starting / Running / Stopping | the leader exits, the rest of its tree lives | Stopping, *draining*: stop signal to the rest (unless a stop already sent it), SIGKILL to the tree at the stop timeout; the exit is settled by the rows above only once the tree is empty |
//! | any | spawn fails | as an exit that never ran: Backoff or Fatal |
//! | Stopped / Backoff / ... | start, a dependency not at its [`Condition`] | Waiting (no timer; `waiting` event) |
//! | Waiting | every dependency at its condition | Starting |
//! | Waiting | a dependency `Fatal`, or exited for good when it had to run | Fatal (`DependencyFailed`) |
//! | Waiting | stop | Stopped |
//! | Starting / Running | a `Ready` dependency crashed | Stopping, then Waiting |
//!
//! An exit before readiness is a *failed start*: it lengthens the
//! failure streak, which drives the [`Backoff`] delay and the
//! [`give_up_after`](ProcessSpec::give_up_after) limit. Reaching `Running`
//! resets the streak.
//!
//! # Readiness
//!
//! `Running` means *ready*, and what makes a child ready is its spec's
//! [`Readiness`]: the start grace (a timer guess, the default), the host's
//! own [`Supervisor::mark_ready`], a captured output line, s6's
//! notification fd, or systemd's sd_notify `READY=1`. Messages from
//! children arrive through the [`Sys`] like exits ([`SysEvent::Notify`]);
//! start timeouts, watchdogs and probes are deadlines in the same table as
//! everything else, so [`Supervisor::next_deadline`] covers them. Liveness
//! probes are the host's I/O: the supervisor says when one is due
//! ([`Event::ProbeDue`]) and takes the answer ([`Supervisor::probe_result`]).
//!
//! # Coming from another supervisor
//!
//! | you know it from | in procsup |
//! |---|---|
//! | supervisord `command`, `directory`, `environment`, `user`, `umask` | [`ProcessSpec::new`], [`current_dir`](ProcessSpec::current_dir), [`env`](ProcessSpec::env), [`uid`](ProcessSpec::uid)/[`gid`](ProcessSpec::gid), [`umask`](ProcessSpec::umask) |
//! | supervisord `numprocs` | [`ProcessSpec::instances`] |
//! | supervisord `startsecs=1`, `startretries=3` | `.start_grace(1s).give_up_after(4)` |
//! | supervisord BACKOFF (1 s, 2 s, 3 s, ...), RUNNING restarts at once | `Backoff::linear(1s).immediate_after_running(true)` |
//! | supervisord `autorestart=unexpected`, `exitcodes=0,2` | `.restart(RestartPolicy::OnFailure).success_codes([0, 2])` |
//! | supervisord `stopsignal`, `stopwaitsecs`, `stopasgroup`/`killasgroup` | [`stop_signal`](ProcessSpec::stop_signal), [`stop_timeout`](ProcessSpec::stop_timeout), [`process_group`](ProcessSpec::process_group) (on by default) |
//! | supervisord `stdout_logfile`, `redirect_stderr` | [`Output::Append`], [`Output::ToStdout`] |
//! | supervisord `stdout_logfile_maxbytes`/`_backups`, svlogd, s6-log `s`/`n` | [`Output::Log`] with [`LogFile`], [`Supervisor::reopen_logs`] |
//! | gunicorn companion `restart_delay` | `Backoff::fixed(d)` |
//! | gunicorn SIGHUP reload | [`Supervisor::rolling_restart`] |
//! | gunicorn dirty arbiter's parent check and orphan cleanup | [`die_with_parent`](ProcessSpec::die_with_parent) (on by default), [`UnixSys::state_dir`] |
//! | Twisted procmon `minRestartDelay`, `maxRestartDelay`, `threshold`, `killTime` | `Backoff::exponential(min).max(max).jitter(0.0).immediate_after_running(true)`, `.start_grace(threshold)`, `.stop_timeout(killTime)` |
//! | Twisted procmon `stopProcess` (restarts afterwards) | [`Supervisor::restart_process`] |
//! | systemd `Restart=always/on-failure/no` | [`RestartPolicy`] |
//! | systemd `RestartSec=`, `RestartSteps=`, `RestartMaxDelaySec=` | `Backoff::fixed`, `Backoff::exponential(..).max(..)` |
//! | systemd `StartLimitBurst=`, `StartLimitIntervalSec=` | [`ProcessSpec::max_restarts_within`] |
//! | systemd `KillSignal=`, `TimeoutStopSec=`, `KillMode=control-group` / `process` | `stop_signal`, `stop_timeout`, [`kill_mode`](ProcessSpec::kill_mode) ([`KillMode::Tree`] is the default: a cgroup, else the process group) |
//! | systemd `Type=notify`, `TimeoutStartSec=`, `WatchdogSec=` | `.ready(Readiness::Notify)`, [`start_timeout`](ProcessSpec::start_timeout), [`watchdog`](ProcessSpec::watchdog) |
//! | systemd `Type=notify-reload`, `ExecReload=kill -HUP $MAINPID` | [`Supervisor::reload_process`], [`reload_signal`](ProcessSpec::reload_signal) |
//! | s6 `notification-fd` | `.ready(Readiness::Fd(n))` |
//! | Kubernetes `livenessProbe` | [`ProcessSpec::probe`] with [`Probe`] |
//! | tini, dumb-init (PID 1 reaping orphans) | [`UnixSys::subreaper`] with [`SubreaperMode`] |
//! | Erlang/OTP one-for-one `intensity`, `period` | `Backoff::none()` and `max_restarts_within(intensity, period)` |
//!
//! # Deterministic tests
//!
//! [`testing::FakeSys`] scripts spawns, exits, output and failures, and
//! [`testing::VirtualClock`] makes `now`; with
//! [`Supervisor::with_seed`] a run is reproducible to the nanosecond.

#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod backoff;
mod deps;
mod error;
mod event;
pub mod guide;
mod logfile;
mod orphans;
mod output;
mod pool;
mod readiness;
mod spec;
mod state;
mod state_dir;
mod supervisor;
pub mod sys;
pub mod testing;
mod timers;

pub use backoff::Backoff;
pub use deps::Condition;
pub use error::{Error, Result};
pub use event::{Event, FatalReason, StopReason, Stream};
pub use logfile::{LogFile, MAX_LOG_KEEP};
pub use orphans::{Discard, Orphan, OrphanScan};
pub use output::{escape, MAX_LINE};
pub use pool::{INSTANCE_ENV, MAX_FD_TARGET, MAX_PASSED_FDS};
pub use readiness::{LineFn, LineMatcher, NotifyMessage, Probe, Readiness, MAX_NOTIFY_LEN};
pub use spec::{KillMode, Output, ProcessSpec, RestartPolicy, MAX_DURATION, MAX_INSTANCES, MAX_NAME_LEN};
pub use spec::{Rlimit, RLIM_INFINITY};
pub use state::{Cause, Containment, Exit, ProcessStatus, State, Usage};
pub use supervisor::{Reaped, ShutdownOrder, Strategy, Supervisor, OTP_DEFAULT_INTENSITY, OUTPUT_LINES_PER_TICK};
pub use sys::{SubreaperMode, Sys, SysEvent, UnixSys};

pub use nix::errno::Errno;
pub use nix::sys::signal::Signal;
pub use nix::unistd::Pid;

/// The `nix` this crate is built on, so a host can name the same types
/// (`procsup::nix::poll::poll` for the loop above) without pinning a
/// version of its own.
pub use nix;

/// Proof that the enums a host matches on are `#[non_exhaustive]`: a
/// match that names every variant without a wildcard arm does not compile
/// outside the crate (so a new variant is never a breaking change), and the
/// same match with a wildcard arm does.
///
/// ```
/// use procsup::{Exit, RestartPolicy, State, Stream, SysEvent};
/// fn all(s: State, e: Exit, r: RestartPolicy, st: Stream, ev: SysEvent) -> usize {
///     let a = match s { State::Stopped | State::Starting | State::Running | State::Backoff
///         | State::Stopping | State::Exited | State::Fatal => 1, _ => 0 };
///     let b = match e { Exit::Exited(_) | Exit::Signaled(_) | Exit::Unknown => 1, _ => 0 };
///     let c = match r { RestartPolicy::Always | RestartPolicy::OnFailure | RestartPolicy::Never => 1, _ => 0 };
///     let d = match st { Stream::Stdout | Stream::Stderr => 1, _ => 0 };
///     let f = match ev { SysEvent::Output { .. } | SysEvent::Exited { .. } | SysEvent::OrphanGone { .. } => 1, _ => 0 };
///     a + b + c + d + f
/// }
/// ```
///
/// ```compile_fail,E0004
/// fn f(s: procsup::State) -> u8 {
///     use procsup::State::*;
///     match s { Stopped | Starting | Running | Backoff | Stopping | Exited | Fatal => 1 }
/// }
/// ```
///
/// ```compile_fail,E0004
/// fn f(e: procsup::Exit) -> u8 {
///     match e { procsup::Exit::Exited(_) | procsup::Exit::Signaled(_) | procsup::Exit::Unknown => 1 }
/// }
/// ```
///
/// ```compile_fail,E0004
/// fn f(r: procsup::RestartPolicy) -> u8 {
///     use procsup::RestartPolicy::*;
///     match r { Always | OnFailure | Never => 1 }
/// }
/// ```
///
/// ```compile_fail,E0004
/// fn f(s: procsup::Stream) -> u8 {
///     match s { procsup::Stream::Stdout | procsup::Stream::Stderr => 1 }
/// }
/// ```
///
/// ```compile_fail,E0004
/// fn f(e: procsup::SysEvent) -> u8 {
///     use procsup::SysEvent::*;
///     match e { Output { .. } | Exited { .. } | OrphanGone { .. } => 1 }
/// }
/// ```
#[cfg(doctest)]
pub struct NonExhaustiveDoctests;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
