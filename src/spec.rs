//! What to run and how to supervise it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::backoff::Backoff;
use crate::error::Error;
use crate::event::Stream;
use crate::readiness::{Probe, Readiness};

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

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Sets several environment variables.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Removes a variable the child would inherit.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts the child from an empty environment (then `env` adds to it).
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self.envs.clear();
        self
    }

    /// The child's working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Where stdout goes.
    pub fn stdout(mut self, out: Output) -> Self {
        self.stdout = out;
        self
    }

    /// Where stderr goes ([`Output::ToStdout`] is allowed here only).
    pub fn stderr(mut self, out: Output) -> Self {
        self.stderr = out;
        self
    }

    /// The level at which captured lines of `stream` go to the `log` crate
    /// (default `Info` for both: most programs log on stderr, so stderr is
    /// not a warning by itself). `LevelFilter::Off` logs none of them;
    /// [`Event::Output`](crate::Event::Output) is emitted all the same.
    ///
    /// Each process logs under its own target, `procsup::output::NAME`
    /// (`procsup::output::web:0` for an instance), so a logger can filter
    /// by process; events go out under `procsup::event`.
    ///
    /// ```
    /// use log::LevelFilter;
    /// use procsup::{Output, ProcessSpec, Stream};
    /// let spec = ProcessSpec::new("web", "server")
    ///     .stdout(Output::Capture)
    ///     .stderr(Output::Capture)
    ///     .log_lines(Stream::Stdout, LevelFilter::Off)
    ///     .log_lines(Stream::Stderr, LevelFilter::Warn);
    /// assert_eq!(spec.get_log_lines(Stream::Stderr), LevelFilter::Warn);
    /// ```
    pub fn log_lines(mut self, stream: Stream, level: log::LevelFilter) -> Self {
        self.log_lines[stream as usize] = level;
        self
    }

    /// How long a child must live to count as started (`Running`);
    /// an earlier exit is a failed start (supervisord's `startsecs`,
    /// Twisted's `threshold`). Zero: `Running` at once.
    pub fn start_grace(mut self, grace: Duration) -> Self {
        self.start_grace = grace;
        if let Readiness::Grace(_) = self.ready {
            self.ready = Readiness::Grace(grace);
        }
        self
    }

    /// The restart policy.
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// Exit codes that mean success (default `[0]`), for
    /// [`RestartPolicy::OnFailure`].
    pub fn success_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.success_codes = codes.into_iter().collect();
        self
    }

    /// The delay before each restart.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Become `Fatal` after `n` consecutive failed starts (supervisord's
    /// `startretries = n - 1`; the lifecycle coordinator's
    /// `max_restart_attempts = n - 1`). `n` must be at least 1.
    pub fn give_up_after(mut self, n: u32) -> Self {
        self.give_up_after = Some(n);
        self
    }

    /// Become `Fatal` when more than `max_restarts` restarts would fall
    /// within `period` (Erlang/OTP's intensity and period).
    pub fn max_restarts_within(mut self, max_restarts: u32, period: Duration) -> Self {
        self.restart_window = Some((max_restarts, period));
        self
    }

    /// The signal that asks the child to stop (default SIGTERM).
    pub fn stop_signal(mut self, signal: Signal) -> Self {
        self.stop_signal = signal;
        self
    }

    /// How long after the stop signal SIGKILL follows (default 10 s).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Whether the child leads its own process group (default yes), so that
    /// stop and kill signals reach its own children too.
    pub fn process_group(mut self, yes: bool) -> Self {
        self.process_group = yes;
        self
    }

    /// Whether a stop reaches the child's whole tree (default
    /// [`KillMode::Tree`]) or only the child itself ([`KillMode::Process`],
    /// for programs that deliberately leave daemons behind).
    ///
    /// ```
    /// use procsup::{KillMode, ProcessSpec};
    /// let spec = ProcessSpec::new("launcher", "start-daemons").kill_mode(KillMode::Process);
    /// assert_eq!(spec.get_kill_mode(), KillMode::Process);
    /// ```
    pub fn kill_mode(mut self, mode: KillMode) -> Self {
        self.kill_mode = mode;
        self
    }

    /// The signal the child gets when the host dies (Linux
    /// `PR_SET_PDEATHSIG`), or `None` to let it outlive the host.
    ///
    /// Default SIGKILL: once the host is gone nobody escalates a stop, so a
    /// child that ignores a gentler signal would live on holding its ports.
    /// Pick the stop signal instead if children must clean up, and accept
    /// that one that ignores it survives.
    ///
    /// The child also checks, right after setting it, that the host is
    /// still its parent, and signals itself if not: a host that dies during
    /// the spawn leaves nothing behind either. By then the child's signal
    /// dispositions are the defaults and nothing is blocked, so the signal
    /// acts as the kernel's would and never runs a handler of the host; a
    /// signal whose default is to be ignored fails the spawn instead.
    ///
    /// # Threads
    ///
    /// The kernel sends this signal when the **thread** that spawned the
    /// child exits, not the process. Drive the supervisor from a thread
    /// that lives as long as its children should (the main thread, or one
    /// dedicated thread). If a spawning thread exits early, its children get
    /// the signal: the supervisor sees them die by it, logs a warning naming
    /// the thread, and restarts them per policy from the thread that ticks
    /// next.
    ///
    /// # Other systems
    ///
    /// Only Linux has `PR_SET_PDEATHSIG`; elsewhere this setting does
    /// nothing and children outlive a killed host. A state directory
    /// ([`UnixSys::state_dir`](crate::UnixSys::state_dir)) then lets the
    /// next run stop them.
    pub fn die_with_parent(mut self, signal: Option<Signal>) -> Self {
        self.die_with_parent = signal;
        self
    }

    /// Run as this user id.
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Run as this group id.
    pub fn gid(mut self, gid: u32) -> Self {
        self.gid = Some(gid);
        self
    }

    /// The child's umask.
    pub fn umask(mut self, umask: u32) -> Self {
        self.umask = Some(umask);
        self
    }

    /// Treat a program that cannot be executed (`ENOENT`, `EACCES`,
    /// `ENOEXEC`, `ENOTDIR`, `EPERM`) as `Fatal` at once instead of
    /// retrying. `EPERM` is here because retrying cannot fix it either: a
    /// credential switch (`uid`/`gid`) or an exec that the system refused
    /// (a `noexec` mount, a security module) fails the same way every time.
    pub fn fatal_exec_errors(mut self, yes: bool) -> Self {
        self.fatal_exec_errors = yes;
        self
    }

    /// Supervise `n` copies, named `name:0` .. `name:{n-1}`, each on its
    /// own (supervisord's `numprocs`); `name` becomes their group, which
    /// [`rolling_restart`](crate::Supervisor::rolling_restart) can target.
    /// `n` must be between 1 and [`MAX_INSTANCES`].
    ///
    /// ```
    /// use procsup::{ProcessSpec, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("web", "server").instances(3)).unwrap();
    /// let names: Vec<String> = sup.names().iter().map(|n| n.to_string()).collect();
    /// assert_eq!(names, ["web:0", "web:1", "web:2"]);
    /// ```
    pub fn instances(mut self, n: u32) -> Self {
        self.instances = Some(n);
        self
    }

    /// Starts this process only once `dependency` has reached `condition`
    /// (see [`Condition`](crate::Condition)); until then it is
    /// [`State::Waiting`](crate::State::Waiting). Repeat for several
    /// dependencies. The dependency must already be known to the
    /// supervisor when this spec is added (or come in the same
    /// [`Supervisor::add_processes`](crate::Supervisor::add_processes)
    /// batch), so a cycle cannot form later; it names one process, not an
    /// instance group.
    ///
    /// ```
    /// use procsup::{Condition, ProcessSpec, State, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("db", "postgres")).unwrap();
    /// sup.add_process(ProcessSpec::new("app", "server").depends_on("db", Condition::Ready)).unwrap();
    /// sup.start_all(std::time::Instant::now()).unwrap();
    /// assert_eq!(sup.status("app").unwrap().state, State::Waiting);
    /// ```
    pub fn depends_on(mut self, dependency: impl Into<String>, condition: crate::deps::Condition) -> Self {
        self.deps.push((dependency.into(), condition));
        self
    }

    /// Whether [`Supervisor::start_all`](crate::Supervisor::start_all)
    /// starts it, and whether a supervisor already started starts it when
    /// it is added (default yes; supervisord's `autostart`). With `false`
    /// only an explicit start does.
    pub fn autostart(mut self, yes: bool) -> Self {
        self.autostart = yes;
        self
    }

    /// Makes the [`instances`](ProcessSpec::instances) of this spec a
    /// group nested in the supervisor, with OTP's intensity: when more than
    /// `max_restarts` restarts of its instances fall within `period`, the
    /// group gives up (every instance is stopped and becomes `Fatal` with
    /// [`FatalReason::GroupIntensity`](crate::FatalReason::GroupIntensity)),
    /// and that counts as one restart against the supervisor's own
    /// intensity ([`Supervisor::set_intensity`](crate::Supervisor::set_intensity)).
    /// The instances' restarts count here, not in the supervisor's window.
    /// Needs `instances`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use procsup::ProcessSpec;
    /// let spec = ProcessSpec::new("web", "server").instances(4).group_intensity(3, Duration::from_secs(60));
    /// # drop(spec);
    /// ```
    pub fn group_intensity(mut self, max_restarts: u32, period: Duration) -> Self {
        self.group_intensity = Some((max_restarts, period));
        self
    }

    /// The instance group's intensity, if set.
    pub fn get_group_intensity(&self) -> Option<(u32, Duration)> {
        self.group_intensity
    }

    /// The dependencies, in the order they were given.
    pub fn get_dependencies(&self) -> &[(String, crate::deps::Condition)] {
        &self.deps
    }

    /// Whether it starts with `start_all` and when added to a started
    /// supervisor.
    pub fn get_autostart(&self) -> bool {
        self.autostart
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

    /// Whether `code` counts as success.
    pub(crate) fn is_success(&self, code: i32) -> bool {
        self.success_codes.contains(&code)
    }

    /// Checks everything `add_process` promises to check.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.check().map_err(|reason| Error::InvalidSpec { name: self.name.clone(), reason })
    }

    fn check(&self) -> Result<(), String> {
        check_name(&self.name)?;
        self.fds.check()?;
        if let Some(n) = self.instances {
            if n == 0 || n > MAX_INSTANCES {
                return Err(format!("instances must be between 1 and {MAX_INSTANCES}, got {n}"));
            }
            check_name(&format!("{}:{}", self.name, n - 1))?;
        }
        if self.program.is_empty() {
            return Err("the program is empty".into());
        }
        no_nul("the program", &self.program)?;
        for a in &self.args {
            no_nul("an argument", a)?;
        }
        for (k, v) in &self.envs {
            if k.is_empty() || k.as_bytes().contains(&b'=') {
                return Err(format!("environment key {k:?} is empty or contains '='"));
            }
            no_nul("an environment key", k)?;
            if let Some(v) = v {
                no_nul("an environment value", v)?;
            }
        }
        if let Some(cwd) = &self.cwd {
            if cwd.as_os_str().is_empty() {
                return Err("the working directory is empty".into());
            }
            no_nul("the working directory", cwd.as_os_str())?;
        }
        if self.stdout == Output::ToStdout {
            return Err("stdout cannot go to stdout".into());
        }
        for out in [&self.stdout, &self.stderr] {
            if let Output::Append(p) = out {
                if p.as_os_str().is_empty() {
                    return Err("an output file path is empty".into());
                }
                no_nul("an output file path", p.as_os_str())?;
            }
        }
        check_duration("start grace", self.start_grace)?;
        check_duration("stop timeout", self.stop_timeout)?;
        self.check_readiness()?;
        self.backoff.check()?;
        if self.give_up_after == Some(0) {
            return Err("give_up_after must be at least 1".into());
        }
        if let Some((_, period)) = self.group_intensity {
            check_duration("group intensity period", period)?;
            if self.instances.is_none() {
                return Err("group_intensity needs instances".into());
            }
        }
        if let Some((_, period)) = self.restart_window {
            check_duration("restart window", period)?;
            if period.is_zero() {
                return Err("the restart window must be longer than zero".into());
            }
        }
        if let Some(mask) = self.umask {
            if mask > 0o777 {
                return Err(format!("umask {mask:o} has bits outside 0777"));
            }
        }
        Ok(())
    }
}

/// A name must be usable as a file name: a state directory names its records
/// after processes.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("the name is longer than {MAX_NAME_LEN} bytes"));
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err("the name must be usable as a file name (no '/', NUL, '.' or '..')".into());
    }
    if name.starts_with('.') {
        return Err("the name must not start with '.' (reserved for temporary files)".into());
    }
    if name.chars().any(char::is_control) {
        return Err("the name must not contain control characters".into());
    }
    Ok(())
}

fn no_nul(what: &str, s: &OsStr) -> Result<(), String> {
    if s.as_bytes().contains(&0) {
        return Err(format!("{what} contains a NUL byte"));
    }
    Ok(())
}

pub(crate) fn check_duration(what: &str, d: Duration) -> Result<(), String> {
    if d > MAX_DURATION {
        return Err(format!("{what} of {d:?} is longer than 100 years"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
