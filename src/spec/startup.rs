//! How a process starts among the others: as instances, after its
//! dependencies, with `start_all`, and its instance group's intensity.

use std::time::Duration;

use super::ProcessSpec;
#[cfg(doc)]
use super::MAX_INSTANCES;

impl ProcessSpec {
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
    /// batch), so a cycle cannot form later. It names a process, one
    /// instance (`db:0`), or an instance group (`db`): then every instance
    /// of the group must meet the condition (one that fails for good fails
    /// the dependent; a group scaled to 0 is not met). A
    /// [`Completed`](crate::Condition::Completed) dependency must be able
    /// to complete: not restarted [`Always`](crate::RestartPolicy::Always).
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
}
