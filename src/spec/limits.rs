//! Resource limits: what the child's cgroup and its rlimits hold it to.
//!
//! Cgroup limits (`memory_max`, `memory_high`, `tasks_max`, `cpu_max`,
//! `cpu_weight`, `io_weight`, and `restart_above_memory`, which sets
//! `memory.high` and watches it) are written to the child's own cgroup before
//! it runs; without a cgroup they cannot be enforced, and
//! [`Supervisor::add_process`](crate::Supervisor::add_process) refuses them
//! ([`Error::LimitUnsupported`](crate::Error::LimitUnsupported)). Rlimits
//! are set in the child between fork and exec, on every spawn path.

use std::time::Duration;

use super::{KillMode, ProcessSpec};

/// A per-process resource limit of `setrlimit(2)`, set in the child before
/// exec.
///
/// ```
/// use procsup::{ProcessSpec, Rlimit};
/// let spec = ProcessSpec::new("web", "server").rlimit(Rlimit::Nofile, 1024, 4096);
/// assert_eq!(spec.get_rlimits(), [(Rlimit::Nofile, 1024, 4096)]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rlimit {
    /// `RLIMIT_NOFILE`: open file descriptors.
    Nofile,
    /// `RLIMIT_CORE`: the size of a core dump, bytes.
    Core,
    /// `RLIMIT_NPROC`: processes of the child's real user.
    Nproc,
    /// `RLIMIT_AS`: the address space, bytes.
    As,
    /// `RLIMIT_STACK`: the main thread's stack, bytes.
    Stack,
}

impl Rlimit {
    /// The resource number of `setrlimit(2)`.
    #[allow(clippy::unnecessary_cast)]
    pub(crate) fn resource(self) -> u32 {
        // The libc constants differ in type across targets (u32 on Linux
        // gnu, i32 elsewhere); all fit a u32.
        (match self {
            Rlimit::Nofile => libc::RLIMIT_NOFILE,
            Rlimit::Core => libc::RLIMIT_CORE,
            Rlimit::Nproc => libc::RLIMIT_NPROC,
            Rlimit::As => libc::RLIMIT_AS,
            Rlimit::Stack => libc::RLIMIT_STACK,
        }) as u32
    }

    /// `"nofile"`, `"core"`, `"nproc"`, `"as"` or `"stack"` (as `ulimit`
    /// and `prlimit(1)` name them).
    pub fn as_str(self) -> &'static str {
        match self {
            Rlimit::Nofile => "nofile",
            Rlimit::Core => "core",
            Rlimit::Nproc => "nproc",
            Rlimit::As => "as",
            Rlimit::Stack => "stack",
        }
    }
}

/// The most rlimits a spec holds (one per [`Rlimit`]).
pub(crate) const MAX_RLIMITS: usize = 8;

/// No limit, for [`ProcessSpec::rlimit`] (`RLIM_INFINITY`).
pub const RLIM_INFINITY: u64 = u64::MAX;

/// The cgroup limits of a spec, each `None` when not set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CgroupLimits {
    pub(crate) memory_max: Option<u64>,
    pub(crate) memory_high: Option<u64>,
    pub(crate) tasks_max: Option<u64>,
    /// Quota and period.
    pub(crate) cpu_max: Option<(Duration, Duration)>,
    pub(crate) cpu_weight: Option<u16>,
    pub(crate) io_weight: Option<u16>,
    /// `restart_above_memory`: written as `memory.high`, whose `high`
    /// count in `memory.events` is watched.
    pub(crate) restart_above: Option<u64>,
}

impl CgroupLimits {
    /// Whether the OOM killer can take the tree for a limit of these.
    pub(crate) fn watches_oom(&self) -> bool {
        self.memory_max.is_some() || self.memory_high.is_some() || self.restart_above.is_some()
    }

    /// The names of the limits that are set, as the spec's methods call
    /// them, with the cgroup controller each needs.
    pub(crate) fn set(&self) -> impl Iterator<Item = (&'static str, &'static str)> {
        [
            (self.memory_max.is_some(), "memory_max", "memory"),
            (self.memory_high.is_some(), "memory_high", "memory"),
            (self.tasks_max.is_some(), "tasks_max", "pids"),
            (self.cpu_max.is_some(), "cpu_max", "cpu"),
            (self.cpu_weight.is_some(), "cpu_weight", "cpu"),
            (self.io_weight.is_some(), "io_weight", "io"),
            (self.restart_above.is_some(), "restart_above_memory", "memory"),
        ]
        .into_iter()
        .filter(|(on, _, _)| *on)
        .map(|(_, name, controller)| (name, controller))
    }

    /// The cgroup files to write, with their values; a limit that is not
    /// set gets the kernel's default (a reused cgroup may hold another's).
    pub(crate) fn files(&self) -> [(&'static str, String); 7] {
        let max = |v: Option<u64>| v.map_or_else(|| "max".to_owned(), |b| b.to_string());
        [
            ("memory.max", max(self.memory_max)),
            // At most one of the two is set (see `check`).
            ("memory.high", max(self.memory_high.or(self.restart_above))),
            ("pids.max", max(self.tasks_max)),
            (
                "cpu.max",
                match self.cpu_max {
                    Some((quota, period)) => format!("{} {}", quota.as_micros(), period.as_micros()),
                    None => "max 100000".to_owned(),
                },
            ),
            ("cpu.weight", self.cpu_weight.unwrap_or(100).to_string()),
            ("io.weight", format!("default {}", self.io_weight.unwrap_or(100))),
            // The OOM killer takes the whole tree, as one unit: the exit
            // of the child is then the OOM kill's.
            ("memory.oom.group", if self.memory_max.is_some() { "1" } else { "0" }.to_owned()),
        ]
    }

    fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("memory_max", self.memory_max),
            ("memory_high", self.memory_high),
            ("tasks_max", self.tasks_max),
            ("restart_above_memory", self.restart_above),
        ] {
            if v == Some(0) {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if let Some(above) = self.restart_above {
            if self.memory_high.is_some() {
                return Err("restart_above_memory sets the cgroup's memory.high itself: set memory_high or \
                            restart_above_memory, not both"
                    .to_owned());
            }
            if let Some(max) = self.memory_max.filter(|&max| above >= max) {
                return Err(format!(
                    "restart_above_memory ({above}) must be below memory_max ({max}), or the OOM killer ends \
                     the tree before it is restarted"
                ));
            }
        }
        if let Some((quota, period)) = self.cpu_max {
            let us = |d: Duration| d.as_micros();
            if !(1_000..=1_000_000).contains(&us(period)) {
                return Err(format!("the cpu_max period must be between 1ms and 1s, got {period:?}"));
            }
            if us(quota) < 1_000 || us(quota) > u128::from(u32::MAX) {
                return Err(format!(
                    "the cpu_max quota must be between 1ms and {}s, got {quota:?}",
                    u32::MAX / 1_000_000
                ));
            }
        }
        for (name, w) in [("cpu_weight", self.cpu_weight), ("io_weight", self.io_weight)] {
            if let Some(w) = w.filter(|w| !(1..=10_000).contains(w)) {
                return Err(format!("{name} must be between 1 and 10000, got {w}"));
            }
        }
        Ok(())
    }
}

/// Resource limits.
impl ProcessSpec {
    /// The most memory (bytes) the child's tree may use (cgroup
    /// `memory.max`); past it the kernel's OOM killer ends the tree, and
    /// the exit says so ([`Cause::OomKilled`](crate::Cause::OomKilled)).
    /// Needs a cgroup (see [`Error::LimitUnsupported`](crate::Error::LimitUnsupported)).
    ///
    /// ```
    /// let spec = procsup::ProcessSpec::new("web", "server").memory_max(64 << 20);
    /// assert_eq!(spec.get_memory_max(), Some(64 << 20));
    /// ```
    pub fn memory_max(mut self, bytes: u64) -> Self {
        self.limits.memory_max = Some(bytes);
        self
    }

    /// The memory (bytes) above which the kernel throttles and reclaims
    /// the child's tree hard (cgroup `memory.high`). Needs a cgroup.
    pub fn memory_high(mut self, bytes: u64) -> Self {
        self.limits.memory_high = Some(bytes);
        self
    }

    /// Restarts the child gracefully once its tree's memory goes above
    /// `bytes`, before it can reach [`memory_max`](ProcessSpec::memory_max):
    /// the stop signal, the stop timeout and SIGKILL as for any stop. The
    /// exit then follows the restart policy as one that is no success
    /// (`Never` stays down; `OnFailure` and `Always` restart after the
    /// backoff). A child that had been `Running` for a second or more
    /// ends a started run: the failure streak starts over (with
    /// [`immediate_after_running`](crate::Backoff::immediate_after_running)
    /// the successor comes at once). One still `Starting`, or `Running`
    /// for less, failed its start, as an OOM kill does: the backoff grows
    /// and [`give_up_after`](ProcessSpec::give_up_after) counts it, so a
    /// threshold the program cannot live under never restarts it in a
    /// tight loop. An instance of a pool ([`instances`](ProcessSpec::instances)) that is
    /// `Running` is replaced new-before-old, as one step of a
    /// [`rolling_restart`](crate::Supervisor::rolling_restart): its
    /// successor is spawned first and the old child stopped once the
    /// successor is `Running`. The stop's event says why
    /// ([`StopReason::Memory`](crate::StopReason::Memory)), after an
    /// [`Event::MemoryExceeded`](crate::Event::MemoryExceeded).
    ///
    /// Event-driven, not polled: the threshold is written to the child's
    /// cgroup as `memory.high`, and the kernel raises the cgroup's own
    /// `memory.events.local` (its `high` count) as soon as the tree goes
    /// above it; the host's
    /// [`readiness_fd`](crate::Supervisor::readiness_fd) wakes. What
    /// counts is the tree's anonymous memory (`memory.stat` `anon`: heap,
    /// stacks, private mappings): page cache goes toward `memory.high`
    /// too, but the kernel reclaims it there, so a tree that only filled
    /// its cache is not restarted. Above the threshold the kernel also
    /// reclaims and throttles the tree, so it slows rather than grows
    /// further while it stops.
    /// Hence it cannot be combined with
    /// [`memory_high`](ProcessSpec::memory_high), and it must be below
    /// `memory_max`.
    ///
    /// Needs a cgroup with the memory controller. On the process-group
    /// path (no cgroup) the kernel says nothing when a group's memory
    /// grows, so the spec is refused
    /// ([`Error::LimitUnsupported`](crate::Error::LimitUnsupported)); a
    /// host there can read [`Supervisor::usage`](crate::Supervisor::usage)
    /// (summed from `/proc`) on its own schedule and call
    /// [`restart_process`](crate::Supervisor::restart_process).
    ///
    /// ```
    /// let spec = procsup::ProcessSpec::new("web", "server")
    ///     .restart_above_memory(512 << 20)
    ///     .memory_max(1 << 30);
    /// assert_eq!(spec.get_restart_above_memory(), Some(512 << 20));
    /// ```
    pub fn restart_above_memory(mut self, bytes: u64) -> Self {
        self.limits.restart_above = Some(bytes);
        self
    }

    /// The most tasks (processes and threads) the child's tree may have
    /// (cgroup `pids.max`): a fork past it fails with `EAGAIN`. Needs a
    /// cgroup.
    pub fn tasks_max(mut self, n: u64) -> Self {
        self.limits.tasks_max = Some(n);
        self
    }

    /// At most `quota` of CPU time per `period` for the child's tree
    /// (cgroup `cpu.max`; 50 ms per 100 ms is half a CPU). The period is
    /// 1 ms to 1 s, the quota at least 1 ms. Needs a cgroup.
    pub fn cpu_max(mut self, quota: Duration, period: Duration) -> Self {
        self.limits.cpu_max = Some((quota, period));
        self
    }

    /// The tree's share of CPU against its siblings, 1 to 10000 (cgroup
    /// `cpu.weight`, default 100). Needs a cgroup.
    pub fn cpu_weight(mut self, weight: u16) -> Self {
        self.limits.cpu_weight = Some(weight);
        self
    }

    /// The tree's share of I/O against its siblings, 1 to 10000 (cgroup
    /// `io.weight`, default 100). Needs a cgroup.
    pub fn io_weight(mut self, weight: u16) -> Self {
        self.limits.io_weight = Some(weight);
        self
    }

    /// Sets `resource` to `soft` and `hard` in the child before exec
    /// ([`RLIM_INFINITY`] for no limit); a later call for the same
    /// resource replaces the earlier one. Works on every spawn path and
    /// without cgroups. A hard limit above the host's own needs
    /// `CAP_SYS_RESOURCE`; otherwise the spawn fails with `EPERM`.
    pub fn rlimit(mut self, resource: Rlimit, soft: u64, hard: u64) -> Self {
        self.rlimits.retain(|(r, _, _)| *r != resource);
        self.rlimits.push((resource, soft, hard));
        self
    }

    /// The memory limit, bytes.
    pub fn get_memory_max(&self) -> Option<u64> {
        self.limits.memory_max
    }

    /// The threshold of [`restart_above_memory`](ProcessSpec::restart_above_memory), bytes.
    pub fn get_restart_above_memory(&self) -> Option<u64> {
        self.limits.restart_above
    }

    /// The rlimits, in the order they were set.
    pub fn get_rlimits(&self) -> &[(Rlimit, u64, u64)] {
        &self.rlimits
    }

    /// The name of the first cgroup limit set (`"memory_max"`, ...), and the
    /// controller it needs; `None` when the spec sets none.
    pub(crate) fn first_cgroup_limit(&self) -> Option<(&'static str, &'static str)> {
        self.limits.set().next()
    }

    pub(super) fn check_limits(&self) -> Result<(), String> {
        self.limits.check()?;
        if let Some((limit, _)) = self.first_cgroup_limit().filter(|_| self.kill_mode == KillMode::Process) {
            return Err(format!("{limit} needs the child's own cgroup, which kill mode `process` does not give it"));
        }
        for &(r, soft, hard) in &self.rlimits {
            if soft > hard {
                return Err(format!("rlimit {}: the soft limit {soft} is above the hard limit {hard}", r.as_str()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_limits_write_the_kernel_defaults() {
        let files = CgroupLimits::default().files();
        assert_eq!(files[0], ("memory.max", "max".to_owned()));
        assert_eq!(files[3], ("cpu.max", "max 100000".to_owned()));
        assert_eq!(files[5], ("io.weight", "default 100".to_owned()));
        let set = CgroupLimits {
            memory_max: Some(1 << 20),
            cpu_max: Some((Duration::from_millis(50), Duration::from_millis(100))),
            io_weight: Some(7),
            ..Default::default()
        };
        assert_eq!(set.files()[0].1, "1048576");
        assert_eq!(set.files()[3].1, "50000 100000");
        assert_eq!(set.files()[5].1, "default 7");
        assert_eq!(set.files()[6], ("memory.oom.group", "1".to_owned()));
        assert_eq!(set.set().map(|(n, _)| n).collect::<Vec<_>>(), ["memory_max", "cpu_max", "io_weight"]);
        let restart = CgroupLimits { restart_above: Some(4096), ..Default::default() };
        assert_eq!(restart.files()[1], ("memory.high", "4096".to_owned()));
        assert_eq!(restart.set().collect::<Vec<_>>(), [("restart_above_memory", "memory")]);
    }

    #[test]
    fn bad_limits_are_named() {
        let bad = |s: ProcessSpec| s.check_limits().unwrap_err();
        let s = || ProcessSpec::new("a", "b");
        assert!(bad(s().memory_max(0)).contains("memory_max"));
        assert!(bad(s().cpu_weight(0)).contains("cpu_weight"));
        assert!(bad(s().io_weight(10_001)).contains("io_weight"));
        assert!(bad(s().cpu_max(Duration::from_millis(50), Duration::from_secs(2))).contains("period"));
        assert!(bad(s().cpu_max(Duration::ZERO, Duration::from_millis(100))).contains("quota"));
        assert!(bad(s().rlimit(Rlimit::Nofile, 10, 5)).contains("nofile"));
        assert!(bad(s().tasks_max(5).kill_mode(KillMode::Process)).contains("tasks_max"));
        assert!(s().memory_max(1).cpu_max(Duration::from_millis(1), Duration::from_secs(1)).check_limits().is_ok());
        assert!(bad(s().restart_above_memory(0)).contains("restart_above_memory must be at least 1"));
        assert!(bad(s().restart_above_memory(10).memory_high(20)).contains("not both"));
        assert!(bad(s().restart_above_memory(10).memory_max(10)).contains("below memory_max (10)"));
        assert!(s().restart_above_memory(10).memory_max(11).check_limits().is_ok());
        let twice = s().rlimit(Rlimit::Core, 0, 0).rlimit(Rlimit::Core, 1, 2);
        assert_eq!(twice.get_rlimits(), [(Rlimit::Core, 1, 2)]);
    }
}
