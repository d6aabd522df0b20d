//! The supervisor: the steps and the state machine.

mod at_once;
mod commands;
mod deps;
mod drain;
mod host;
mod logging;
mod logs;
mod memory;
mod orphan;
mod proc;
mod ready;
mod roll;
mod scale;
mod steps;
mod strategy;
mod transitions;
mod update;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::spec::ProcessSpec;
use crate::state::{Exit, ProcessStatus, State};
use crate::sys::{Sys, SysEvent, UnixSys};
use crate::timers::{Deadline, Timers};

use orphan::OrphanTask;
use proc::Proc;
use roll::Roll;

pub use deps::ShutdownOrder;
pub use strategy::{Strategy, OTP_DEFAULT_INTENSITY};

/// One child reaped by [`Supervisor::reap_processes`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reaped {
    /// The process name.
    pub name: Arc<str>,
    /// The reaped child.
    pub pid: Pid,
    /// How it ended.
    pub exit: Exit,
}

/// The event queue capacity kept across ticks once drained.
const EVENT_CAPACITY_KEPT: usize = 256;

/// Captured lines one [`Supervisor::reap_processes`] turns into
/// [`Event::Output`] at most (plus the pieces of one overlong line). What
/// the OS layer reported beyond it waits, in order, for the next tick, and
/// [`Supervisor::next_deadline`] says "now" until it is done: a flood of
/// output grows the event queue by a bounded amount per tick and never
/// delays a deadline.
pub const OUTPUT_LINES_PER_TICK: usize = 4096;

/// Supervises a set of named processes. Synchronous, sans-IO: the host
/// owns the loop and the clock, and passes `now` into every step.
///
/// See the crate documentation for the host loop and the call-order rule.
///
/// Drive it from one long-lived thread: children die with the thread that
/// spawned them (see [`ProcessSpec::die_with_parent`]).
///
/// ```
/// use std::time::Instant;
/// use procsup::{ProcessSpec, State, Supervisor, testing::FakeSys};
/// let mut sup = Supervisor::with_sys(FakeSys::new());
/// sup.add_process(ProcessSpec::new("web", "server")).unwrap();
/// sup.start_all(Instant::now()).unwrap();
/// assert_eq!(sup.status("web").unwrap().state, State::Starting);
/// ```
#[derive(Debug)]
pub struct Supervisor<S: Sys = UnixSys> {
    sys: S,
    /// Boxed, so a slot costs a pointer and the table grows cheaply.
    procs: Vec<Option<Box<Proc>>>,
    free: Vec<usize>,
    names: HashMap<Arc<str>, usize>,
    pids: HashMap<Pid, usize>,
    /// Every deadline: promotions, retries, kills of children, of retiring
    /// children and of orphans.
    timers: Timers<Deadline>,
    orphans: HashMap<Pid, OrphanTask>,
    roll: Roll,
    /// Groups by name: what `scale` and `update_spec` make instances from.
    pools: HashMap<Arc<str>, scale::Pool>,
    /// The spec update rolling out, to revert if its roll is aborted.
    update: Option<update::Update>,
    events: VecDeque<Event>,
    rng: StdRng,
    last_now: Option<Instant>,
    seq: u64,
    shutting_down: bool,
    scratch: Vec<SysEvent>,
    /// `start_all` ran (and no `stop_all` since): an added process starts.
    started: bool,
    /// Slots that may be `Waiting` (by `added_seq`); stale entries are
    /// dropped when seen.
    waiting: BTreeSet<(u64, usize)>,
    shutdown_order: ShutdownOrder,
    stop_plan: deps::StopPlan,
    /// Some spec ever added named a dependency: crashes look for
    /// dependents only then.
    has_deps: bool,
    group: strategy::Group,
    /// What the OS layer reported and the output budget left for a later
    /// tick, in order; the OS layer is polled again once it is empty.
    backlog: VecDeque<SysEvent>,
    /// The open log files of `Output::Log`, by path.
    logs: HashMap<std::path::PathBuf, logs::OpenLog>,
    /// Which children's death is restarted at once, as told to the `Sys`.
    at_once: at_once::AtOnce,
}

impl Supervisor<UnixSys> {
    /// A supervisor of real processes.
    ///
    /// ```no_run
    /// let sup = procsup::Supervisor::new();
    /// # drop(sup);
    /// ```
    pub fn new() -> Self {
        Self::with_sys(UnixSys::new())
    }
}

impl Default for Supervisor<UnixSys> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Sys> Supervisor<S> {
    /// A supervisor over any [`Sys`], e.g.
    /// [`FakeSys`](crate::testing::FakeSys) in tests. The jitter RNG is
    /// seeded from the OS; see [`with_seed`](Supervisor::with_seed).
    pub fn with_sys(sys: S) -> Self {
        Supervisor {
            sys,
            procs: Vec::new(),
            free: Vec::new(),
            names: HashMap::new(),
            pids: HashMap::new(),
            timers: Timers::default(),
            orphans: HashMap::new(),
            roll: Roll::default(),
            pools: HashMap::new(),
            update: None,
            events: VecDeque::new(),
            rng: StdRng::try_from_os_rng().unwrap_or_else(|e| {
                // Jitter only needs to differ between hosts, not to be secret.
                log::warn!("procsup: no OS randomness ({e}); seeding jitter from the pid");
                StdRng::seed_from_u64(u64::from(std::process::id()))
            }),
            last_now: None,
            seq: 0,
            shutting_down: false,
            scratch: Vec::new(),
            started: false,
            waiting: BTreeSet::new(),
            shutdown_order: ShutdownOrder::default(),
            stop_plan: deps::StopPlan::default(),
            has_deps: false,
            group: strategy::Group::default(),
            backlog: VecDeque::new(),
            logs: HashMap::new(),
            at_once: at_once::AtOnce::default(),
        }
    }

    /// Seeds the jitter RNG, so that a run over a `FakeSys` is reproducible.
    ///
    /// ```
    /// use procsup::{Supervisor, testing::FakeSys};
    /// let sup = Supervisor::with_sys(FakeSys::new()).with_seed(42);
    /// # drop(sup);
    /// ```
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = StdRng::seed_from_u64(seed);
        self
    }

    /// The OS layer.
    pub fn sys(&self) -> &S {
        &self.sys
    }

    /// The OS layer, mutably (a test scripts its `FakeSys` through this).
    pub fn sys_mut(&mut self) -> &mut S {
        &mut self.sys
    }

    // ----- introspection ---------------------------------------------------

    /// A snapshot of one process.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`].
    pub fn status(&self, name: &str) -> Result<ProcessStatus> {
        Ok(self.p(self.id(name)?).status())
    }

    /// What the current child's tree of `name` uses now (memory, CPU time,
    /// tasks), read through the [`Sys`]; `None` without a child, or when the
    /// OS layer cannot tell. Unlike [`status`](Supervisor::status), a pure
    /// snapshot of the state machine, this reads files (cheap, never
    /// blocking): call it when the numbers are wanted.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`].
    pub fn usage(&self, name: &str) -> Result<Option<crate::state::Usage>> {
        Ok(self.p(self.id(name)?).pid.and_then(|pid| self.sys.usage(pid)))
    }

    /// Snapshots of every process, in the order they were added.
    pub fn statuses(&self) -> Vec<ProcessStatus> {
        self.ids_by(|p| p.added_seq).into_iter().map(|id| self.p(id).status()).collect()
    }

    /// The spec a process was added with.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`].
    pub fn spec(&self, name: &str) -> Result<&ProcessSpec> {
        Ok(&self.p(self.id(name)?).spec)
    }

    /// The names of every process, in the order they were added.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.ids_by(|p| p.added_seq).into_iter().map(|id| self.p(id).name.clone()).collect()
    }

    /// How many processes are supervised.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no process is supervised.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    // ----- internals -------------------------------------------------------

    /// A `now` earlier than one already seen is treated as that one.
    fn observe(&mut self, now: Instant) -> Instant {
        let now = match self.last_now {
            Some(last) if now < last => last,
            _ => now,
        };
        self.last_now = Some(now);
        now
    }

    fn id(&self, name: &str) -> Result<usize> {
        self.names.get(name).copied().ok_or_else(|| Error::UnknownProcess(name.to_owned()))
    }

    /// The slot of a process the host may start: known, not being removed,
    /// and the supervisor not shutting down.
    fn startable(&self, name: &str) -> Result<usize> {
        let id = self.id(name)?;
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        if self.p(id).removing {
            return Err(Error::Removing(name.to_owned()));
        }
        Ok(id)
    }

    fn p(&self, id: usize) -> &Proc {
        self.procs[id].as_ref().expect("ids in names/pids/timers always point at live slots")
    }

    /// A slot to change: its answer to `respawn_at_once` is looked at
    /// again before the next poll (`at_once.rs`).
    fn p_mut(&mut self, id: usize) -> &mut Proc {
        let slots = self.procs.len();
        let p = self.procs[id].as_mut().expect("ids in names/pids/timers always point at live slots");
        if !p.at_once_dirty {
            p.at_once_dirty = true;
            self.at_once.mark(id, slots);
        }
        p
    }

    fn live(&self) -> impl Iterator<Item = &Proc> {
        self.procs.iter().flatten().map(|p| &**p)
    }

    fn ids_by(&self, key: impl Fn(&Proc) -> u64) -> Vec<usize> {
        let mut ids: Vec<(u64, usize)> =
            self.procs.iter().enumerate().filter_map(|(id, p)| p.as_ref().map(|p| (key(p), id))).collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Slots in `state` whose deadline has come, earliest first.
    fn due(&self, now: Instant, state: State) -> Vec<usize> {
        self.timers
            .due(now)
            .into_iter()
            .filter_map(|key| match key {
                Deadline::Proc(id) if self.p(id).state == state => Some(id),
                _ => None,
            })
            .collect()
    }

    fn set_deadline(&mut self, id: usize, new: Option<Instant>) {
        let old = std::mem::replace(&mut self.p_mut(id).deadline, new);
        self.timers.reset(Deadline::Proc(id), old, new);
    }

    fn emit(&mut self, ev: Event) {
        // Not to be spawned again for now: what the Sys prepared goes.
        // (A stop asked for, or for a dependency, counts from its start.)
        if let Event::Stopped { name }
        | Event::Fatal { name, .. }
        | Event::Removed { name }
        | Event::Stopping { name, reason: crate::StopReason::Requested | crate::StopReason::Dependency, .. } = &ev
        {
            self.sys.forget_respawn(name);
        }
        self.log_event(&ev);
        self.events.push_back(ev);
    }

    fn forget(&mut self, id: usize) {
        debug_assert!(self.p(id).pid.is_none() && self.p(id).retiring.is_none(), "forgetting a process with a child");
        self.set_deadline(id, None);
        self.disarm(id);
        let p = self.procs[id].take().expect("forget is called on live slots");
        self.names.remove(&p.name);
        self.free.push(id);
        self.emit(Event::Removed { name: p.name });
        self.close_unused_logs();
    }
}
