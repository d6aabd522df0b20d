//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong when the host *asks* for something.
///
/// The end of a child is never an `Err`: it is an [`Event`](crate::Event).
/// Errors are for misuse (an unknown name, an invalid spec) and for the few
/// calls that touch the file system on the host's behalf.
///
/// ```
/// use procsup::{Error, ProcessSpec, Supervisor, testing::FakeSys};
/// let mut sup = Supervisor::with_sys(FakeSys::new());
/// let err = sup.add_process(ProcessSpec::new("", "sleep")).unwrap_err();
/// assert!(matches!(err, Error::InvalidSpec { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No process of that name was added.
    #[error("no process named {0:?}")]
    UnknownProcess(String),
    /// A process of that name is already supervised (maybe still stopping
    /// after `remove_process`).
    #[error("a process named {0:?} already exists")]
    DuplicateProcess(String),
    /// The spec cannot be supervised; `reason` says which field and why.
    #[error("invalid spec for {name:?}: {reason}")]
    InvalidSpec {
        /// The name as given (possibly empty or lossy).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// `spawn_process` could not start the child. The supervisor has already
    /// recorded the failure and scheduled a retry or given up, as for any
    /// spawn failure.
    #[error("spawning {name:?} failed: {source}")]
    Spawn {
        /// The process name.
        name: String,
        /// The OS error (`ENOENT`, `EACCES`, `EAGAIN`, ...).
        #[source]
        source: io::Error,
    },
    /// Reading or writing the state directory failed.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The process has no child to act on (it is not `Starting`,
    /// `Running` or `Stopping`).
    #[error("process {0:?} has no running child")]
    NotRunning(String),
    /// Signalling the child failed.
    #[error("signalling {name:?} failed: {source}")]
    Signal {
        /// The process name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another live host holds the state directory's lock: two hosts
    /// sharing one directory would stop each other's children as orphans.
    #[error("state directory {path} is in use by another live host")]
    StateDirInUse {
        /// The state directory.
        path: PathBuf,
    },
    /// The host could not become a child subreaper
    /// ([`UnixSys::subreaper`](crate::UnixSys::subreaper)): `Unsupported`
    /// on systems without `PR_SET_CHILD_SUBREAPER`, else the `prctl` error.
    #[error("cannot become a child subreaper: {0}")]
    Subreaper(#[source] io::Error),
    /// The supervisor is shutting down and starts nothing new.
    #[error("the supervisor is shutting down")]
    ShuttingDown,
    /// The process is being removed (`remove_process` waits for its child
    /// to be reaped): it is not started again.
    #[error("the process {0:?} is being removed")]
    Removing(String),
    /// A spec depends on a process that is not supervised (dependencies
    /// are added first, or in the same `add_processes` batch).
    #[error("{name:?} depends on {dependency:?}, which is not supervised")]
    UnknownDependency {
        /// The process being added.
        name: String,
        /// The name it depends on.
        dependency: String,
    },
    /// The dependencies form a cycle: each process depends on the next,
    /// the last on the first (one name: a process depending on itself).
    /// Nothing was added. Shown as `dependency cycle: a -> b -> a`, or
    /// `dependency cycle: a depends on itself`.
    #[error("dependency cycle: {}", cycle_text(.0))]
    DependencyCycle(Vec<String>),
    /// A [`Completed`](crate::Condition::Completed) dependency on a process
    /// (or group) whose restart policy is
    /// [`Always`](crate::RestartPolicy::Always): it is restarted after
    /// every exit, so it never completes and the dependent would wait
    /// forever.
    ///
    /// ```
    /// use procsup::{Condition, Error, ProcessSpec, RestartPolicy, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("migrate", "m").restart(RestartPolicy::Always)).unwrap();
    /// let err = sup.add_process(ProcessSpec::new("app", "a").depends_on("migrate", Condition::Completed));
    /// assert!(matches!(err, Err(Error::NeverCompletes { .. })));
    /// ```
    #[error(
        "{name:?} depends on {dependency:?} completed, but {dependency:?} restarts always and never completes \
         (restart it on-failure or never, or depend on it started or ready)"
    )]
    NeverCompletes {
        /// The process being added.
        name: String,
        /// Its dependency that never completes.
        dependency: String,
    },
    /// A cgroup limit of the spec (`memory_max`, `tasks_max`, ...) cannot be
    /// enforced: the OS layer gives children no cgroup of their own
    /// (process-group containment, [`UnixSys::without_cgroups`](crate::UnixSys::without_cgroups),
    /// no writable cgroup v2), or their cgroup lacks the controller the
    /// limit needs. Nothing was added: a limit is never silently ignored.
    ///
    /// ```
    /// use procsup::{Error, ProcessSpec, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new()); // no cgroups
    /// let err = sup.add_process(ProcessSpec::new("web", "server").memory_max(64 << 20));
    /// assert!(matches!(err, Err(Error::LimitUnsupported { limit: "memory_max", .. })));
    /// ```
    #[error("{name:?}: {limit} cannot be enforced: {reason}")]
    LimitUnsupported {
        /// The process being added.
        name: String,
        /// The limit, as the spec's method names it (`"memory_max"`).
        limit: &'static str,
        /// Why.
        reason: String,
    },
    /// A log file of an [`Output::Log`](crate::Output::Log) cannot be
    /// opened for appending (a missing or unwritable directory, a
    /// directory at the path). Nothing was added or changed.
    ///
    /// ```
    /// use procsup::{Error, LogFile, Output, ProcessSpec, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// let log = LogFile::new("/nonexistent/dir/web.log");
    /// let err = sup.add_process(ProcessSpec::new("web", "server").stdout(Output::Log(log)));
    /// assert!(matches!(err, Err(Error::LogFile { .. })));
    /// ```
    #[error("{name:?}: log file {path}: {source}")]
    LogFile {
        /// The process being added or updated.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: io::Error,
    },
    /// `remove_process` of a process others depend on: remove them first.
    #[error("{name:?} cannot be removed: {dependents:?} depend on it")]
    HasDependents {
        /// The process.
        name: String,
        /// The processes that depend on it.
        dependents: Vec<String>,
    },
}

/// `a -> b -> a`, or `a depends on itself`.
fn cycle_text(cycle: &[String]) -> String {
    match cycle {
        [one] => format!("{one} depends on itself"),
        [first, ..] => format!("{} -> {first}", cycle.join(" -> ")),
        [] => String::new(),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
