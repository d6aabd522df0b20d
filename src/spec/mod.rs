//! What to run and how to supervise it.

mod env;
mod limits;
mod output;
mod restart;
mod startup;
mod stop;
mod validate;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::backoff::Backoff;
use crate::event::Stream;
use crate::readiness::{Probe, Readiness};

pub(crate) use limits::{CgroupLimits, MAX_RLIMITS};
pub use limits::{Rlimit, RLIM_INFINITY};
pub(crate) use validate::check_duration;

/// The longest duration a spec accepts (100 years): anything longer is
/// surely a unit mistake, and `Instant + Duration` must never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The longest process name, so that it fits a file name in a state directory.
pub const MAX_NAME_LEN: usize = 200;

/// The most instances one spec may ask for.
pub const MAX_INSTANCES: u32 = 100_000;

/// Where one output stream of the child goes.
///
/// ```
/// use procsup::{Output, ProcessSpec};
/// let spec = ProcessSpec::new("web", "server")
///     .stdout(Output::Append("/tmp/web.log".into()))
///     .stderr(Output::ToStdout);
/// assert_eq!(spec.get_stderr(), &Output::ToStdout);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Output {
    /// The host's own stream (the default).
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// Appended to this file, created with mode 0644 if missing.
    Append(PathBuf),
    /// Read by the supervisor and split into lines: each line goes to the
    /// `log` crate as `[name] line` and to an [`Event::Output`](crate::Event).
    Capture,
    /// Read by the supervisor and split into lines, as `Capture`, each
    /// line written to a [`LogFile`](crate::LogFile) that rotates by size
    /// (and not to an event or the `log` crate). Readiness by output line
    /// and the crash context see the lines all the same.
    Log(crate::LogFile),
    /// stderr only: wherever stdout goes.
    ToStdout,
}

/// Whether a process is restarted after it exits on its own.
///
/// A stop the host asked for never restarts, whatever the policy.
///
/// ```
/// use procsup::{ProcessSpec, RestartPolicy};
/// let spec = ProcessSpec::new("job", "run-job")
///     .restart(RestartPolicy::OnFailure)
///     .success_codes([0, 3]);
/// assert_eq!(spec.get_restart(), RestartPolicy::OnFailure);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RestartPolicy {
    /// Restart after every exit (the default).
    #[default]
    Always,
    /// Restart unless the child exited with one of the success codes.
    OnFailure,
    /// Never restart.
    Never,
}

/// A description of a supervised process, built like
/// [`std::process::Command`] and validated by
/// [`Supervisor::add_process`](crate::Supervisor::add_process).
///
/// ```
/// use std::time::Duration;
/// use procsup::{Backoff, ProcessSpec, RestartPolicy};
/// let spec = ProcessSpec::new("worker", "/usr/bin/worker")
///     .args(["--queue", "default"])
///     .env("RUST_LOG", "info")
///     .current_dir("/srv")
///     .start_grace(Duration::from_secs(2))
///     .restart(RestartPolicy::Always)
///     .backoff(Backoff::exponential(Duration::from_millis(200)).max(Duration::from_secs(30)))
///     .give_up_after(5)
///     .stop_timeout(Duration::from_secs(10));
/// assert_eq!(spec.get_name(), "worker");
/// ```
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub(crate) name: String,
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env_clear: bool,
    pub(crate) envs: Vec<(OsString, Option<OsString>)>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) stdout: Output,
    pub(crate) stderr: Output,
    pub(crate) start_grace: Duration,
    pub(crate) restart: RestartPolicy,
    pub(crate) success_codes: Vec<i32>,
    pub(crate) backoff: Backoff,
    pub(crate) give_up_after: Option<u32>,
    pub(crate) restart_window: Option<(u32, Duration)>,
    pub(crate) stop_signal: Signal,
    pub(crate) stop_timeout: Duration,
    pub(crate) process_group: bool,
    pub(crate) kill_mode: KillMode,
    pub(crate) die_with_parent: Option<Signal>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) umask: Option<u32>,
    pub(crate) fatal_exec_errors: bool,
    pub(crate) instances: Option<u32>,
    pub(crate) pre_exec: Vec<PreExec>,
    /// Fds the child gets (see `pass_fd` / `listen_fds`): listen fds first.
    pub(crate) fds: crate::pool::PassedFds,
    /// How each instance's spec differs (`instances_with`).
    pub(crate) per_instance: Option<crate::pool::PerInstance>,
    /// The level of captured lines in the `log` crate, by [`Stream`].
    pub(crate) log_lines: [log::LevelFilter; 2],
    pub(crate) deps: Vec<(String, crate::deps::Condition)>,
    pub(crate) autostart: bool,
    pub(crate) group_intensity: Option<(u32, Duration)>,
    pub(crate) ready: Readiness,
    pub(crate) start_timeout: Option<Duration>,
    pub(crate) watchdog: Option<Duration>,
    pub(crate) probe: Option<Probe>,
    pub(crate) reload_signal: Signal,
    /// Cgroup limits (`limits.rs`).
    pub(crate) limits: CgroupLimits,
    /// Rlimits set in the child, one per resource.
    pub(crate) rlimits: Vec<(Rlimit, u64, u64)>,
}

/// What a stop reaches, like systemd's `KillMode=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KillMode {
    /// The whole tree (systemd's `control-group`): the child runs in a
    /// cgroup of its own where one can be had, else in its own process
    /// group; stop and SIGKILL reach every member, and the process counts
    /// as gone only when its tree is empty. See [`Containment`](crate::Containment).
    #[default]
    Tree,
    /// The child only (systemd's `process`): the stop signal and SIGKILL
    /// go to the child itself, and whatever it started may live on.
    Process,
}

/// One hook run in the child between fork and exec; see
/// [`ProcessSpec::pre_exec`].
#[derive(Clone)]
pub(crate) struct PreExec(pub(crate) std::sync::Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>);

impl std::fmt::Debug for PreExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreExec(..)")
    }
}

impl ProcessSpec {
    /// A process called `name` running `program` (looked up in `PATH` when
    /// it has no slash), with the defaults: restart always, exponential
    /// backoff 100 ms to 60 s with ±25 % jitter, start grace 1 s, no give-up
    /// limit, stop with SIGTERM then SIGKILL after 10 s, its own process
    /// group, SIGKILL when the host dies, output inherited.
    pub fn new(name: impl Into<String>, program: impl AsRef<OsStr>) -> Self {
        ProcessSpec {
            name: name.into(),
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env_clear: false,
            envs: Vec::new(),
            cwd: None,
            stdout: Output::Inherit,
            stderr: Output::Inherit,
            start_grace: Duration::from_secs(1),
            restart: RestartPolicy::Always,
            success_codes: vec![0],
            backoff: Backoff::default(),
            give_up_after: None,
            restart_window: None,
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            process_group: true,
            kill_mode: KillMode::Tree,
            die_with_parent: Some(Signal::SIGKILL),
            uid: None,
            gid: None,
            umask: None,
            fatal_exec_errors: false,
            instances: None,
            fds: Default::default(),
            per_instance: None,
            pre_exec: Vec::new(),
            log_lines: [log::LevelFilter::Info; 2],
            deps: Vec::new(),
            autostart: true,
            group_intensity: None,
            ready: Readiness::default(),
            start_timeout: None,
            watchdog: None,
            probe: None,
            reload_signal: Signal::SIGHUP,
            limits: CgroupLimits::default(),
            rlimits: Vec::new(),
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The child's working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// The name.
    pub fn get_name(&self) -> &str {
        &self.name
    }
    /// The program.
    pub fn get_program(&self) -> &OsStr {
        &self.program
    }
    /// The arguments.
    pub fn get_args(&self) -> impl ExactSizeIterator<Item = &OsStr> {
        self.args.iter().map(|a| a.as_os_str())
    }
    /// The environment changes in order: `(key, Some(value))` sets,
    /// `(key, None)` removes.
    pub fn get_envs(&self) -> impl ExactSizeIterator<Item = (&OsStr, Option<&OsStr>)> {
        self.envs.iter().map(|(k, v)| (k.as_os_str(), v.as_deref()))
    }
    /// Whether the environment starts empty.
    pub fn get_env_clear(&self) -> bool {
        self.env_clear
    }
    /// The working directory.
    pub fn get_current_dir(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }
    /// Where stdout goes.
    pub fn get_stdout(&self) -> &Output {
        &self.stdout
    }
    /// Where stderr goes.
    pub fn get_stderr(&self) -> &Output {
        &self.stderr
    }
    /// The start grace period.
    pub fn get_start_grace(&self) -> Duration {
        self.start_grace
    }
    /// The restart policy.
    pub fn get_restart(&self) -> RestartPolicy {
        self.restart
    }
    /// The success exit codes.
    pub fn get_success_codes(&self) -> &[i32] {
        &self.success_codes
    }
    /// The backoff.
    pub fn get_backoff(&self) -> &Backoff {
        &self.backoff
    }
    /// The give-up limit.
    pub fn get_give_up_after(&self) -> Option<u32> {
        self.give_up_after
    }
    /// The restart-intensity window.
    pub fn get_max_restarts_within(&self) -> Option<(u32, Duration)> {
        self.restart_window
    }
    /// The stop signal.
    pub fn get_stop_signal(&self) -> Signal {
        self.stop_signal
    }
    /// The stop timeout.
    pub fn get_stop_timeout(&self) -> Duration {
        self.stop_timeout
    }
    /// Whether the child gets its own process group.
    pub fn get_process_group(&self) -> bool {
        self.process_group
    }
    /// The kill mode.
    pub fn get_kill_mode(&self) -> KillMode {
        self.kill_mode
    }
    /// The parent-death signal.
    pub fn get_die_with_parent(&self) -> Option<Signal> {
        self.die_with_parent
    }
    /// The user id.
    pub fn get_uid(&self) -> Option<u32> {
        self.uid
    }
    /// The group id.
    pub fn get_gid(&self) -> Option<u32> {
        self.gid
    }
    /// The umask.
    pub fn get_umask(&self) -> Option<u32> {
        self.umask
    }
    /// Whether exec errors are fatal at once.
    pub fn get_fatal_exec_errors(&self) -> bool {
        self.fatal_exec_errors
    }
    /// Whether a pre-exec hook is set.
    pub fn has_pre_exec(&self) -> bool {
        !self.pre_exec.is_empty()
    }
    /// The level of captured lines of `stream` in the `log` crate.
    pub fn get_log_lines(&self, stream: Stream) -> log::LevelFilter {
        self.log_lines[stream as usize]
    }

    /// The number of instances asked for, if any.
    pub fn get_instances(&self) -> Option<u32> {
        self.instances
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn bad(spec: ProcessSpec) -> String {
        match spec.validate() {
            Err(Error::InvalidSpec { reason, .. }) => reason,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn names_must_be_file_names() {
        for name in ["", ".", "..", "a/b", "a\0b", ".hidden", "tab\there"] {
            bad(ProcessSpec::new(name, "x"));
        }
        bad(ProcessSpec::new("x".repeat(MAX_NAME_LEN + 1), "x"));
        assert!(ProcessSpec::new("web:0", "x").validate().is_ok());
        assert!(ProcessSpec::new("ünïcode", "x").validate().is_ok());
    }

    #[test]
    fn nul_bytes_and_empties_are_refused() {
        assert!(bad(ProcessSpec::new("a", "")).contains("empty"));
        assert!(bad(ProcessSpec::new("a", "x\0y")).contains("NUL"));
        assert!(bad(ProcessSpec::new("a", "x").arg("1\0")).contains("NUL"));
        assert!(bad(ProcessSpec::new("a", "x").env("K", "v\0")).contains("NUL"));
        assert!(bad(ProcessSpec::new("a", "x").env("K=", "v")).contains("'='"));
        assert!(bad(ProcessSpec::new("a", "x").env_remove("")).contains("empty"));
        assert!(bad(ProcessSpec::new("a", "x").current_dir("")).contains("empty"));
    }

    #[test]
    fn durations_and_limits_are_checked() {
        let huge = MAX_DURATION + Duration::from_secs(1);
        bad(ProcessSpec::new("a", "x").stop_timeout(huge));
        bad(ProcessSpec::new("a", "x").start_grace(huge));
        bad(ProcessSpec::new("a", "x").backoff(Backoff::fixed(huge)));
        bad(ProcessSpec::new("a", "x").give_up_after(0));
        bad(ProcessSpec::new("a", "x").max_restarts_within(3, Duration::ZERO));
        bad(ProcessSpec::new("a", "x").umask(0o1000));
        bad(ProcessSpec::new("a", "x").instances(0));
        bad(ProcessSpec::new("a", "x").instances(MAX_INSTANCES + 1));
        bad(ProcessSpec::new("a".repeat(MAX_NAME_LEN - 1), "x").instances(10));
        bad(ProcessSpec::new("a", "x").stdout(Output::ToStdout));
        bad(ProcessSpec::new("a", "x").stdout(Output::Append(PathBuf::new())));
        assert!(ProcessSpec::new("a", "x").stop_timeout(Duration::ZERO).validate().is_ok());
    }

    #[test]
    fn every_setter_reads_back() {
        let d = Duration::from_millis;
        let backoff =
            Backoff::exponential(d(200)).max(d(9_000)).jitter(0.5).floor(d(300)).immediate_after_running(true);
        let s = ProcessSpec::new("n", "p")
            .args(["a", "b"])
            .current_dir("/srv")
            .stdout(Output::Null)
            .stderr(Output::Capture)
            .start_grace(d(1_500))
            .restart(RestartPolicy::Never)
            .success_codes([0, 7])
            .backoff(backoff)
            .give_up_after(4)
            .max_restarts_within(3, d(5_000))
            .stop_signal(Signal::SIGINT)
            .stop_timeout(d(2_500))
            .process_group(false)
            .die_with_parent(Some(Signal::SIGTERM))
            .uid(10)
            .gid(20)
            .umask(0o027)
            .fatal_exec_errors(true)
            .instances(3);
        assert_eq!(s.get_args().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(s.get_current_dir(), Some(Path::new("/srv")));
        assert_eq!((s.get_stdout(), s.get_stderr()), (&Output::Null, &Output::Capture));
        assert_eq!(s.get_start_grace(), d(1_500));
        assert_eq!(s.get_restart(), RestartPolicy::Never);
        assert_eq!(s.get_success_codes(), [0, 7]);
        let b = s.get_backoff();
        assert_eq!((b.get_initial(), b.get_max(), b.get_floor()), (d(200), d(9_000), d(300)));
        assert_eq!((b.get_jitter(), b.get_immediate_after_running()), (0.5, true));
        assert_eq!(s.get_give_up_after(), Some(4));
        assert_eq!(s.get_max_restarts_within(), Some((3, d(5_000))));
        assert_eq!((s.get_stop_signal(), s.get_stop_timeout()), (Signal::SIGINT, d(2_500)));
        assert!(!s.get_process_group());
        assert_eq!(s.get_die_with_parent(), Some(Signal::SIGTERM));
        assert_eq!((s.get_uid(), s.get_gid(), s.get_umask()), (Some(10), Some(20), Some(0o027)));
        assert!(s.get_fatal_exec_errors());
        assert_eq!(s.get_instances(), Some(3));
        assert!(!s.has_pre_exec());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn env_clear_then_set() {
        let s = ProcessSpec::new("a", "x").env("A", "1").env_clear().env("B", "2");
        assert!(s.get_env_clear());
        let envs: Vec<_> = s.get_envs().collect();
        assert_eq!(envs, [(OsStr::new("B"), Some(OsStr::new("2")))]);
    }
}
