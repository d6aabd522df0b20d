//! How a child is stopped: the signal, the timeout before SIGKILL, what
//! the signals reach, and what the child gets when the host dies.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::{KillMode, ProcessSpec};

impl ProcessSpec {
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

    /// Whether the child leads its own session and process group (default
    /// yes, through `setsid(2)`, as s6-supervise and runsv do), so that stop
    /// and kill signals reach its own children too, and no process outside
    /// its tree can join the group (`setpgid(2)` only joins groups of the
    /// caller's session) to speak for it on its notify socket. The child
    /// has no controlling terminal.
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
}
