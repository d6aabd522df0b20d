//! The host's commands: adding and removing processes, starting,
//! stopping and restarting one by name or all at once, and shutdown.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
#[cfg(doc)]
use crate::event::Event;
use crate::event::StopReason;
use crate::spec::ProcessSpec;
use crate::state::State;
use crate::sys::Sys;

use super::proc::{AfterExit, Proc};
#[cfg(doc)]
use super::ShutdownOrder;
use super::Supervisor;

impl<S: Sys> Supervisor<S> {
    /// Adds a process, `Stopped` (or its instances, see
    /// [`ProcessSpec::instances`]). The spec is validated first; nothing is
    /// added when any name is taken. Every dependency it names must be
    /// supervised already (add dependencies first, or use
    /// [`add_processes`](Supervisor::add_processes)).
    ///
    /// Added after [`start_all`](Supervisor::start_all) (and before any
    /// `stop_all` or `shutdown`), a process with
    /// [`autostart`](ProcessSpec::autostart) starts: it is `Waiting`, due
    /// at the last `now` the supervisor saw, so
    /// [`next_deadline`](Supervisor::next_deadline) reports it and the next
    /// [`tick`](Supervisor::tick) starts it (once its dependencies allow).
    ///
    /// # Errors
    /// [`Error::InvalidSpec`], [`Error::DuplicateProcess`],
    /// [`Error::ShuttingDown`], [`Error::UnknownDependency`],
    /// [`Error::DependencyCycle`] (a process depending on itself),
    /// [`Error::NeverCompletes`].
    pub fn add_process(&mut self, spec: ProcessSpec) -> Result<()> {
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        spec.validate()?;
        self.check_limits(&spec)?;
        self.check_dependencies(&spec)?;
        let Some(n) = spec.instances else {
            if self.names.contains_key(spec.name.as_str()) {
                return Err(Error::DuplicateProcess(spec.name));
            }
            // A group scaled to nothing gives way to a process of its name.
            if self.members(&spec.name).is_empty() {
                self.pools.remove(spec.name.as_str());
            }
            self.open_logs(&spec)?;
            self.insert(spec, None);
            return Ok(());
        };
        let names: Vec<String> = (0..n).map(|i| format!("{}:{i}", spec.name)).collect();
        if let Some(taken) = names.iter().find(|n| self.names.contains_key(n.as_str())) {
            return Err(Error::DuplicateProcess(taken.clone()));
        }
        let ones: Vec<ProcessSpec> = (0..n).map(|i| spec.instance(i)).collect();
        for one in &ones {
            one.validate_instance()?;
        }
        self.open_logs(&spec)?;
        let group: Arc<str> = Arc::from(spec.name.as_str());
        for one in ones {
            self.insert(one, Some(group.clone()));
        }
        self.add_pool(group, spec);
        Ok(())
    }

    pub(super) fn insert(&mut self, spec: ProcessSpec, group: Option<Arc<str>>) {
        let name: Arc<str> = Arc::from(spec.name.as_str());
        self.seq += 1;
        let proc = Proc {
            name: name.clone(),
            group,
            retiring: None,
            lines: None,
            tail: VecDeque::new(),
            spec,
            state: State::Stopped,
            pid: None,
            started_at: None,
            deadline: None,
            restart_count: 0,
            exit_count: 0,
            last_exit: None,
            oom_killed: false,
            last_cause: None,
            memory_failed: false,
            last_spawn_error: None,
            streak: 0,
            manual_stop: false,
            after_exit: AfterExit::Policy,
            removing: false,
            unsettled: false,
            containment: None,
            draining: false,
            exited_at: None,
            awaits_orphan: false,
            window: VecDeque::new(),
            added_seq: self.seq,
            start_seq: 0,
            spec_version: 0,
            child_version: 0,
            waiting_on: None,
            held: false,
            live: Default::default(),
            at_once: None,
            at_once_dirty: false,
        };
        let proc = Box::new(proc);
        let id = match self.free.pop() {
            Some(id) => {
                self.procs[id] = Some(proc);
                id
            }
            None => {
                self.procs.push(Some(proc));
                self.procs.len() - 1
            }
        };
        self.names.insert(name, id);
        self.has_deps |= !self.p(id).spec.deps.is_empty();
        self.autostart_added(id);
    }

    /// Removes a process. One without a child goes at once (a pending
    /// restart is cancelled); one with a child is stopped first and removed
    /// when it has been reaped; its name stays taken until then. Either way
    /// [`Event::Removed`] follows. The removal wins over every later call:
    /// a stop, `stop_all` or `shutdown` leaves it pending, and a start,
    /// restart or spawn of the process is refused with
    /// [`Error::Removing`].
    ///
    /// A process others depend on cannot be removed while they are
    /// supervised: remove the dependents first.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`], [`Error::HasDependents`].
    pub fn remove_process(&mut self, name: &str, now: Instant) -> Result<()> {
        let now = self.observe(now);
        let id = self.id(name)?;
        self.check_no_dependents(id)?;
        let p = self.p(id);
        if p.state.has_child() || p.retiring.is_some() {
            self.stop_id(id, now, StopReason::Requested);
            self.p_mut(id).removing = true;
        } else {
            self.forget(id);
        }
        Ok(())
    }

    /// Starts a process that is not running: `Stopped`, `Exited` or `Fatal`
    /// start with a fresh failure streak; `Backoff` is spawned now instead
    /// of waiting. `Starting`/`Running`: no-op. `Stopping`: it is started
    /// again as soon as it exits, exactly as a start from `Stopped` (a
    /// fresh failure streak, no restart counted).
    ///
    /// A spawn failure is not an error here: it is an
    /// [`Event::SpawnFailed`] and the process goes to `Backoff` or `Fatal`.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`], [`Error::ShuttingDown`],
    /// [`Error::Removing`].
    pub fn start_process(&mut self, name: &str, now: Instant) -> Result<()> {
        let now = self.observe(now);
        let id = self.startable(name)?;
        self.start_id(id, now);
        self.release_waiting(now, false);
        Ok(())
    }

    /// Asks a process to stop: the stop signal now, SIGKILL after the stop
    /// timeout. A pending restart is cancelled (`Backoff` becomes
    /// `Stopped`). A process stopped this way is never restarted by the
    /// policy. Already stopped or stopping: no-op.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`].
    pub fn stop_process(&mut self, name: &str, now: Instant) -> Result<()> {
        let now = self.observe(now);
        let id = self.id(name)?;
        self.stop_id(id, now, StopReason::Requested);
        Ok(())
    }

    /// Stops a process and spawns it again as soon as its child is reaped,
    /// with no backoff (the restart count goes up). Without a child it is
    /// simply started.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`], [`Error::ShuttingDown`],
    /// [`Error::Removing`].
    pub fn restart_process(&mut self, name: &str, now: Instant) -> Result<()> {
        let now = self.observe(now);
        let id = self.startable(name)?;
        if self.p(id).state.has_child() {
            self.stop_id(id, now, StopReason::Requested);
            self.p_mut(id).after_exit = AfterExit::Restart;
        } else {
            self.start_id(id, now);
        }
        Ok(())
    }

    /// Starts every process that is not running (except those with
    /// [`autostart(false)`](ProcessSpec::autostart)), in the order they
    /// were added, which is a dependency order (dependencies are added
    /// first). A process whose dependencies are not at their conditions
    /// waits in `Waiting` and starts in the tick they are. From now on,
    /// an added process starts too (see
    /// [`add_process`](Supervisor::add_process)). First it runs [`cleanup_orphans`](Supervisor::cleanup_orphans):
    /// a process whose orphan from an earlier run is being stopped waits in
    /// `Backoff` until that orphan is gone (or killed), so that whatever the
    /// orphan held — a port, a lock file — is free.
    ///
    /// # Errors
    /// [`Error::ShuttingDown`]; [`Error::StateDir`] when the state
    /// directory cannot be listed (then nothing is started).
    pub fn start_all(&mut self, now: Instant) -> Result<()> {
        let now = self.observe(now);
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        self.cleanup_orphans(now)?;
        self.started = true;
        for id in self.ids_by(|p| p.added_seq) {
            if self.p(id).spec.autostart {
                self.start_id(id, now);
            }
        }
        self.release_waiting(now, false);
        Ok(())
    }

    /// Stops every process at once, most recently started first (for an
    /// order by dependencies, see [`shutdown`](Supervisor::shutdown)), and
    /// cancels every pending restart, wait and group restart. A rolling restart in progress ends with
    /// [`Event::RollAborted`] (its target as the name), and both children
    /// of the process being replaced are stopped.
    pub fn stop_all(&mut self, now: Instant) {
        let now = self.observe(now);
        self.started = false;
        self.abort_roll_for_stop_all();
        self.abort_group();
        let mut ids = self.ids_by(|p| p.start_seq);
        ids.reverse();
        for id in ids {
            self.stop_id(id, now, StopReason::Requested);
        }
    }

    /// Graceful shutdown: every process stops, and from now on nothing is
    /// added, started or restarted. Keep calling
    /// [`tick`](Supervisor::tick) until [`is_idle`](Supervisor::is_idle).
    ///
    /// The stops are ordered (see [`ShutdownOrder`]): by default, tier by
    /// tier, dependents before what they depend on; each tier waits until
    /// its processes are gone (exited, or killed at their stop timeout and
    /// reaped) before the next is signalled, so the whole takes at most
    /// the sum of each tier's longest stop timeout, and
    /// [`next_deadline`](Supervisor::next_deadline) reports each tier's
    /// kill deadline in turn. Without dependencies everything is one tier,
    /// stopped at once, most recently started first.
    pub fn shutdown(&mut self, now: Instant) {
        let now = self.observe(now);
        self.shutting_down = true;
        self.started = false;
        self.abort_roll_for_stop_all();
        self.abort_group();
        self.plan_shutdown(now);
    }

    /// True when no child exists and no restart is pending: after a
    /// shutdown, the host may exit.
    pub fn is_idle(&self) -> bool {
        self.pids.is_empty() && self.orphans.is_empty() && self.live().all(|p| p.state != State::Backoff)
    }

    /// Refuses a cgroup limit the OS layer cannot enforce.
    pub(super) fn check_limits(&mut self, spec: &ProcessSpec) -> Result<()> {
        match self.sys.refuse_limits(spec) {
            Some((limit, reason)) => Err(Error::LimitUnsupported { name: spec.name.clone(), limit, reason }),
            None => Ok(()),
        }
    }
}
