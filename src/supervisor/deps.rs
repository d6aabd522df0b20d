//! Dependencies on the supervisor side: the `Waiting` gate before a spawn,
//! its release as dependencies reach their conditions, the stop of `Ready`
//! dependents when their dependency crashes, batch adds with cycle
//! detection, and the tiered shutdown.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::deps::{stop_tiers, topo_order, Condition};
use crate::error::{Error, Result};
use crate::event::{Event, FatalReason, StopReason};
use crate::spec::{ProcessSpec, RestartPolicy};
use crate::state::{Exit, State};
use crate::sys::Sys;

use super::proc::{AfterExit, Proc};
use super::Supervisor;

/// How [`Supervisor::shutdown`] orders the stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownOrder {
    /// Tier by tier: first every process nothing depends on, together;
    /// once each of them is gone (exited, or killed at its stop timeout
    /// and reaped), the processes only they depended on; and so on.
    /// Unrelated processes stop together. The default.
    #[default]
    Tiers,
    /// One at a time, most recently started first, each waiting for the
    /// previous one to be gone (OTP's supervisor shutdown).
    Sequential,
}

/// Where a dependency stands against a condition.
enum Standing {
    Met,
    Unmet(Arc<str>, Condition),
    Failed(Arc<str>),
}

/// The pending stops of an ordered shutdown: the tier being stopped, and
/// the tiers after it. Slots carry their `added_seq`, so a slot reused by
/// a later process is never mistaken for it.
#[derive(Debug, Default)]
pub(super) struct StopPlan {
    current: Vec<(usize, u64)>,
    rest: VecDeque<Vec<(usize, u64)>>,
}

fn standing(dep: &Proc, condition: Condition) -> Standing {
    let name = dep.name.clone();
    let success = matches!(dep.last_exit, Some(Exit::Exited(c)) if dep.spec.is_success(c));
    match (dep.state, condition) {
        (State::Fatal, _) => Standing::Failed(name),
        (State::Exited, Condition::Completed | Condition::Started) if success => Standing::Met,
        // Exited for good: it will not be Running, nor complete, by itself.
        (State::Exited, _) => Standing::Failed(name),
        (State::Starting | State::Running, Condition::Started) | (State::Running, Condition::Ready) => Standing::Met,
        _ => Standing::Unmet(name, condition),
    }
}

impl<S: Sys> Supervisor<S> {
    /// Adds several processes at once, in any order: a spec may depend on
    /// another of the same batch. They are added in dependency order
    /// (ties keep the given order), which is then also the order
    /// [`start_all`](Supervisor::start_all) starts them in. Nothing is
    /// added when any spec is refused.
    ///
    /// ```
    /// use procsup::{Condition, Error, ProcessSpec, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// let err = sup.add_processes([
    ///     ProcessSpec::new("a", "a").depends_on("b", Condition::Started),
    ///     ProcessSpec::new("b", "b").depends_on("a", Condition::Ready),
    /// ]).unwrap_err();
    /// assert!(matches!(err, Error::DependencyCycle(ref c) if c.len() == 2));
    /// assert!(sup.is_empty());
    /// ```
    ///
    /// # Errors
    /// As [`add_process`](Supervisor::add_process), and
    /// [`Error::DependencyCycle`].
    pub fn add_processes(&mut self, specs: impl IntoIterator<Item = ProcessSpec>) -> Result<()> {
        let specs: Vec<ProcessSpec> = specs.into_iter().collect();
        // A name of the batch: a process, a group, or one of its instances.
        let index = |name: &str| {
            specs.iter().position(|s| match s.instances {
                None => s.name == name,
                Some(n) => s.name == name || instance_of(name, &s.name).is_some_and(|i| i < n),
            })
        };
        let mut graph = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            if self.shutting_down {
                return Err(Error::ShuttingDown);
            }
            spec.validate()?;
            self.check_limits(spec)?;
            if self.names.contains_key(spec.name.as_str()) || specs[..i].iter().any(|s| s.name == spec.name) {
                return Err(Error::DuplicateProcess(spec.name.clone()));
            }
            let mut deps = Vec::new();
            for (dep, _) in &spec.deps {
                match index(dep) {
                    Some(j) if j == i => return Err(Error::DependencyCycle(vec![spec.name.clone()])),
                    Some(j) => deps.push(j),
                    None if self.is_dependable(dep) => {}
                    None => return Err(unknown(spec, dep)),
                }
            }
            graph.push(deps);
        }
        let order = topo_order(&graph)
            .map_err(|cycle| Error::DependencyCycle(cycle.into_iter().map(|i| specs[i].name.clone()).collect()))?;
        let mut specs: Vec<Option<ProcessSpec>> = specs.into_iter().map(Some).collect();
        for i in order {
            self.add_process(specs[i].take().expect("topo_order yields each index once"))?;
        }
        Ok(())
    }

    /// `add_process`'s dependency check: each dependency is supervised
    /// (so no cycle can form), and not the process itself; a `Completed`
    /// one can complete.
    pub(super) fn check_dependencies(&self, spec: &ProcessSpec) -> Result<()> {
        for (dep, condition) in &spec.deps {
            if *dep == spec.name {
                return Err(Error::DependencyCycle(vec![spec.name.clone()]));
            }
            let restart = match (self.names.get(dep.as_str()), self.pools.get(dep.as_str())) {
                (Some(&d), _) => self.p(d).spec.restart,
                (None, Some(pool)) => pool.template.restart,
                (None, None) => return Err(unknown(spec, dep)),
            };
            if *condition == Condition::Completed && restart == RestartPolicy::Always {
                return Err(Error::NeverCompletes { name: spec.name.clone(), dependency: dep.clone() });
            }
        }
        Ok(())
    }

    /// Whether a name can be depended on: a process, or an instance group.
    fn is_dependable(&self, dep: &str) -> bool {
        self.names.contains_key(dep) || self.pools.contains_key(dep)
    }

    /// Whether the dependency named `dep` is `id`: the process of that
    /// name, or an instance of the group of that name.
    fn is_dependency(&self, dep: &str, id: usize) -> bool {
        let p = self.p(id);
        *p.name == *dep || p.group.as_deref() == Some(dep)
    }

    /// `remove_process`'s check: nothing still supervised depends on it.
    pub(super) fn check_no_dependents(&self, id: usize) -> Result<()> {
        let name = &self.p(id).name;
        let dependents: Vec<String> = self
            .ids_by(|p| p.added_seq)
            .into_iter()
            .map(|i| self.p(i))
            .filter(|p| !p.removing && p.spec.deps.iter().any(|(d, _)| **d == **name))
            .map(|p| p.name.to_string())
            .collect();
        if dependents.is_empty() {
            return Ok(());
        }
        Err(Error::HasDependents { name: name.to_string(), dependents })
    }

    /// Marks a process just added to a started supervisor as due at once:
    /// `Waiting` with a deadline at the last `now` seen, so
    /// `next_deadline` reports it and the next tick starts it.
    pub(super) fn autostart_added(&mut self, id: usize) {
        if !self.started || !self.p(id).spec.autostart {
            return;
        }
        let Some(now) = self.last_now else { return };
        self.p_mut(id).state = State::Waiting;
        self.set_deadline(id, Some(now));
        self.note_waiting(id);
    }

    /// Whether a process may spawn now. If not, it goes to `Waiting` (or
    /// `Fatal`, when a dependency failed) and the caller spawns nothing.
    pub(super) fn gate(&mut self, id: usize) -> bool {
        if self.p(id).spec.deps.is_empty() {
            return true;
        }
        match self.standing_of(id) {
            Standing::Met => true,
            other => {
                let p = self.p_mut(id);
                p.state = State::Waiting;
                p.waiting_on = None;
                self.set_deadline(id, None);
                self.note_waiting(id);
                self.settle_waiting(id, other);
                false
            }
        }
    }

    fn note_waiting(&mut self, id: usize) {
        let seq = self.p(id).added_seq;
        self.waiting.insert((seq, id));
    }

    /// The first failed dependency, else the first unmet one, else `Met`.
    /// A group stands for all its instances: each must meet the
    /// condition; with none (scaled to 0) it is unmet.
    fn standing_of(&self, id: usize) -> Standing {
        let mut first_unmet = None;
        for (dep, condition) in &self.p(id).spec.deps {
            // A dependency cannot be removed while this process is there.
            let members = match self.names.get(dep.as_str()) {
                Some(&d) => vec![d],
                None if self.pools.contains_key(dep.as_str()) => self.members(dep),
                None => continue,
            };
            if members.is_empty() {
                first_unmet.get_or_insert(Standing::Unmet(Arc::from(dep.as_str()), *condition));
            }
            for d in members {
                match standing(self.p(d), *condition) {
                    Standing::Met => {}
                    Standing::Failed(name) => return Standing::Failed(name),
                    unmet => {
                        first_unmet.get_or_insert(unmet);
                    }
                }
            }
        }
        first_unmet.unwrap_or(Standing::Met)
    }

    /// A `Waiting` process that cannot start yet: `Fatal` when a
    /// dependency failed, else an event when what it waits on changed.
    fn settle_waiting(&mut self, id: usize, standing: Standing) {
        match standing {
            Standing::Met => {}
            Standing::Failed(dep) => {
                self.p_mut(id).waiting_on = None;
                self.fatal(id, FatalReason::DependencyFailed { dependency: dep.to_string() });
            }
            Standing::Unmet(dep, condition) => {
                let p = self.p_mut(id);
                if p.waiting_on.as_ref() != Some(&(dep.clone(), condition)) {
                    p.waiting_on = Some((dep.clone(), condition));
                    let name = p.name.clone();
                    self.emit(Event::Waiting { name, dependency: dep, condition });
                }
            }
        }
    }

    /// Whether a `Waiting` process has work in the next tick: its
    /// dependencies are met, or one failed. (Those due by an autostart
    /// deadline are in the timer table.)
    #[inline]
    pub(super) fn release_due(&self) -> bool {
        !self.waiting.is_empty()
            && self.waiting.iter().any(|&(seq, id)| {
                self.procs[id]
                    .as_ref()
                    .is_some_and(|p| p.added_seq == seq && p.state == State::Waiting && !p.held && p.deadline.is_none())
                    && !matches!(self.standing_of(id), Standing::Unmet(..))
            })
    }

    /// Starts every `Waiting` process whose dependencies are met (and
    /// whose autostart deadline, if any, has come), fails those whose
    /// dependency failed, until nothing changes: a chain of `Started`
    /// conditions starts in one call. Reads no clock.
    #[inline]
    pub(super) fn release_waiting(&mut self, now: Instant, due_starts: bool) {
        if !self.waiting.is_empty() {
            self.release_waiting_now(now, due_starts);
        }
    }

    fn release_waiting_now(&mut self, now: Instant, due_starts: bool) {
        // Each pass starts or fails at least one process, or stops.
        for _ in 0..=self.waiting.len() {
            let mut changed = false;
            let entries: Vec<(u64, usize)> = self.waiting.iter().copied().collect();
            for (seq, id) in entries {
                let current =
                    self.procs[id].as_ref().is_some_and(|p| p.added_seq == seq && p.state == State::Waiting && !p.held);
                if !current {
                    self.waiting.remove(&(seq, id));
                    continue;
                }
                match self.p(id).deadline {
                    Some(at) if at > now || !due_starts => continue,
                    Some(_) => {
                        // Added to a started supervisor: now it starts, as
                        // a start the host asked for.
                        self.waiting.remove(&(seq, id));
                        self.set_deadline(id, None);
                        self.p_mut(id).state = State::Stopped;
                        self.start_id(id, now);
                        changed = true;
                        continue;
                    }
                    None => {}
                }
                match self.standing_of(id) {
                    Standing::Met => {
                        self.waiting.remove(&(seq, id));
                        self.p_mut(id).waiting_on = None;
                        let _ = self.spawn_id(id, now);
                        changed = true;
                    }
                    failed @ Standing::Failed(_) => {
                        self.waiting.remove(&(seq, id));
                        self.settle_waiting(id, failed);
                        changed = true;
                    }
                    unmet => self.settle_waiting(id, unmet),
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// A process left `Starting`/`Running` unasked: every process with a
    /// `Ready` condition on it that has a child is stopped, and `then`
    /// (waits for it again, or for its group) once reaped; so are theirs,
    /// transitively. Returns the slots it stopped.
    pub(super) fn stop_ready_dependents(&mut self, id: usize, now: Instant, then: AfterExit) -> Vec<usize> {
        let mut stopped = Vec::new();
        // The common case, no dependencies at all, costs nothing per crash.
        if !self.has_deps {
            return stopped;
        }
        let mut stack = vec![id];
        while let Some(down) = stack.pop() {
            for dependent in self.ids_by(|p| p.added_seq) {
                let p = self.p(dependent);
                let on_it = p.spec.deps.iter().any(|(d, c)| *c == Condition::Ready && self.is_dependency(d, down));
                if !on_it || p.removing || !matches!(p.state, State::Starting | State::Running) {
                    continue;
                }
                self.stop_id(dependent, now, StopReason::Dependency);
                let p = self.p_mut(dependent);
                p.after_exit = then;
                p.manual_stop = false;
                stack.push(dependent);
                stopped.push(dependent);
            }
        }
        stopped
    }

    /// Chooses the order of [`shutdown`](Supervisor::shutdown)'s stops.
    ///
    /// ```
    /// use procsup::{ShutdownOrder, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.set_shutdown_order(ShutdownOrder::Sequential);
    /// ```
    pub fn set_shutdown_order(&mut self, order: ShutdownOrder) {
        self.shutdown_order = order;
    }

    /// Plans the ordered stop of every process with a child and stops the
    /// first tier; every other process stops at once (a pending restart
    /// or a wait is cancelled).
    pub(super) fn plan_shutdown(&mut self, now: Instant) {
        let ids = self.ids_by(|p| p.start_seq);
        for &id in &ids {
            if !self.p(id).state.has_child() {
                self.stop_id(id, now, StopReason::Requested);
            }
        }
        let live: Vec<usize> =
            ids.into_iter().filter(|&id| self.p(id).state.has_child() || self.p(id).retiring.is_some()).collect();
        let tiers: Vec<usize> = match self.shutdown_order {
            ShutdownOrder::Sequential => (0..live.len()).rev().collect(),
            ShutdownOrder::Tiers => {
                // A dependency on a group is one on each of its instances.
                let on = |id: usize, j: usize| self.p(id).spec.deps.iter().any(|(d, _)| self.is_dependency(d, live[j]));
                let deps_of = |id: usize| match self.p(id).spec.deps.is_empty() {
                    true => Vec::new(),
                    false => (0..live.len()).filter(|&j| on(id, j)).collect(),
                };
                let graph: Vec<Vec<usize>> = live.iter().map(|&id| deps_of(id)).collect();
                stop_tiers(&graph)
            }
        };
        let count = tiers.iter().max().map_or(0, |m| m + 1);
        let mut plan = vec![Vec::new(); count];
        // Within a tier, the most recently started first, as stop_all.
        for (i, &id) in live.iter().enumerate().rev() {
            plan[tiers[i]].push((id, self.p(id).added_seq));
        }
        self.stop_plan = StopPlan { current: Vec::new(), rest: plan.into() };
        self.advance_shutdown(now);
    }

    /// Stops the next tier once every process of the current one is gone.
    #[inline]
    pub(super) fn advance_shutdown(&mut self, now: Instant) {
        if !self.stop_plan.current.is_empty() || !self.stop_plan.rest.is_empty() {
            self.advance_shutdown_now(now);
        }
    }

    fn advance_shutdown_now(&mut self, now: Instant) {
        loop {
            let gone = |s: &Self, &(id, seq): &(usize, u64)| {
                s.procs[id]
                    .as_ref()
                    .is_none_or(|p| p.added_seq != seq || (!p.state.has_child() && p.retiring.is_none()))
            };
            if !self.stop_plan.current.iter().all(|e| gone(self, e)) {
                return;
            }
            let Some(tier) = self.stop_plan.rest.pop_front() else {
                self.stop_plan.current.clear();
                return;
            };
            for &(id, seq) in &tier {
                if !gone(self, &(id, seq)) {
                    self.stop_id(id, now, StopReason::Requested);
                }
            }
            self.stop_plan.current = tier;
        }
    }
}

/// `k` when `name` is `group:k`.
fn instance_of(name: &str, group: &str) -> Option<u32> {
    name.strip_prefix(group)?.strip_prefix(':')?.parse().ok()
}

fn unknown(spec: &ProcessSpec, dep: &str) -> Error {
    Error::UnknownDependency { name: spec.name.clone(), dependency: dep.to_owned() }
}
