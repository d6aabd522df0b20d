//! The supervisor: the steps and the state machine.

mod deps;
mod drain;
mod host;
mod logging;
mod orphan;
mod proc;
mod ready;
mod roll;
mod scale;
mod strategy;
mod transitions;
mod update;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
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
use proc::{AfterExit, Proc};
use roll::Roll;

pub use deps::ShutdownOrder;
pub use strategy::Strategy;

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

    // ----- by name -----------------------------------------------------

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
    /// [`Error::DependencyCycle`] (a process depending on itself).
    pub fn add_process(&mut self, spec: ProcessSpec) -> Result<()> {
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        spec.validate()?;
        self.check_dependencies(&spec)?;
        let Some(n) = spec.instances else {
            if self.names.contains_key(spec.name.as_str()) {
                return Err(Error::DuplicateProcess(spec.name));
            }
            // A group scaled to nothing gives way to a process of its name.
            if self.members(&spec.name).is_empty() {
                self.pools.remove(spec.name.as_str());
            }
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
        let group: Arc<str> = Arc::from(spec.name.as_str());
        for one in ones {
            self.insert(one, Some(group.clone()));
        }
        self.add_pool(group, spec);
        Ok(())
    }

    fn insert(&mut self, spec: ProcessSpec, group: Option<Arc<str>>) {
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
            self.stop_id(id, now);
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
        self.stop_id(id, now);
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
            self.stop_id(id, now);
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
            self.stop_id(id, now);
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

    // ----- the steps -----------------------------------------------------

    /// Spawns one process now, whatever its state, unless it already has a
    /// child (then its pid is returned). Counters are kept; a pending retry
    /// is cancelled. On failure the process goes to `Backoff` or `Fatal`
    /// as for any spawn failure, and the error is also returned. It is the
    /// host's override: dependencies are not waited for.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`], [`Error::ShuttingDown`],
    /// [`Error::Removing`], [`Error::Spawn`].
    pub fn spawn_process(&mut self, name: &str, now: Instant) -> Result<Pid> {
        let now = self.observe(now);
        let id = self.startable(name)?;
        if let Some(pid) = self.p(id).pid {
            return Ok(pid);
        }
        self.p_mut(id).manual_stop = false;
        self.spawn_id(id, now).map_err(|source| Error::Spawn { name: name.to_owned(), source })
    }

    /// Collects the exits (and captured output) of this supervisor's own
    /// children without blocking, records each (exit, `exit_count`, pid
    /// cleared) and settles it at once, as
    /// [`handle_exit`](Supervisor::handle_exit) would: when it returns,
    /// every process it reaped is already in its next state (`Backoff`,
    /// `Stopped`, `Exited`, `Fatal`, removed, or spawned again). Returns
    /// what was reaped, for hosts that log or count exits.
    ///
    /// At most [`OUTPUT_LINES_PER_TICK`] captured lines become events per
    /// call; the rest (and every exit reported after it, so that a child's
    /// exit always follows its last line) waits for the next call, and
    /// [`next_deadline`](Supervisor::next_deadline) is "now" meanwhile.
    pub fn reap_processes(&mut self, now: Instant) -> Vec<Reaped> {
        let now = self.observe(now);
        if self.backlog.is_empty() {
            let mut fresh = std::mem::take(&mut self.scratch);
            self.sys.poll(&mut fresh);
            self.backlog.extend(fresh.drain(..));
            self.scratch = fresh;
        }
        let mut reaped = Vec::new();
        let mut lines_left = OUTPUT_LINES_PER_TICK;
        while let Some(ev) = self.backlog.pop_front() {
            match ev {
                SysEvent::Output { pid, stream, mut data } => {
                    let (used, emitted) = self.on_output(pid, stream, &data, lines_left);
                    lines_left = lines_left.saturating_sub(emitted);
                    self.after_output(pid, now);
                    if used < data.len() {
                        data.drain(..used);
                        self.backlog.push_front(SysEvent::Output { pid, stream, data });
                        break;
                    }
                }
                SysEvent::Notify { pid, msg } => self.on_notify(pid, msg, now),
                SysEvent::OrphanGone { pid } => self.on_orphan_gone(pid, now),
                SysEvent::AdoptedExited { pid, name, exit } => {
                    let name: Arc<str> = Arc::from(name.as_deref().unwrap_or(""));
                    self.emit(Event::AdoptedExited { name, pid, exit });
                }
                SysEvent::Exited { pid, exit } => {
                    if let Some((id, r)) = self.on_exit(pid, exit, now) {
                        reaped.push(r);
                        self.settle_exit(id, now);
                    }
                }
                SysEvent::LeaderExited { pid, exit } => reaped.extend(self.on_leader_exit(pid, exit, now)),
                SysEvent::TreeEmpty { pid } => self.on_tree_empty(pid, now),
            }
        }
        self.advance_shutdown(now);
        self.advance_group(now);
        self.release_waiting(now, true);
        reaped
    }

    /// Decides what follows the exit of a reaped child: removal after
    /// `remove_process`, a spawn after `restart_process` or a start while
    /// stopping, `Stopped` after a stop the host asked for; otherwise the
    /// restart policy: `Exited`, `Backoff` or `Fatal`. Returns whether
    /// there was an exit to settle.
    ///
    /// **A host never needs to call it.** Exits only come in through
    /// [`reap_processes`](Supervisor::reap_processes) (and so
    /// [`tick`](Supervisor::tick)), which settles each one before it
    /// returns, so a host never sees a process reaped but undecided. Called
    /// anyway, at any time, it returns `Ok(false)` and changes nothing. It
    /// stays public as the named step of the state machine (see the crate
    /// documentation's table), not as a second thing a host must do.
    ///
    /// ```
    /// use std::time::Instant;
    /// use procsup::{Exit, ProcessSpec, State, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("web", "server")).unwrap();
    /// let now = Instant::now();
    /// sup.start_process("web", now).unwrap();
    /// let pid = sup.status("web").unwrap().pid.unwrap();
    /// assert!(sup.sys_mut().exit(pid, Exit::Exited(1)));
    /// assert_eq!(sup.reap_processes(now).len(), 1);
    /// assert_eq!(sup.status("web").unwrap().state, State::Backoff); // settled
    /// assert!(!sup.handle_exit("web", now).unwrap()); // nothing left to do
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownProcess`].
    pub fn handle_exit(&mut self, name: &str, now: Instant) -> Result<bool> {
        let now = self.observe(now);
        let id = self.id(name)?;
        Ok(self.settle_exit(id, now))
    }

    /// `handle_exit` by slot: settles a reaped exit once.
    fn settle_exit(&mut self, id: usize, now: Instant) -> bool {
        let p = self.p_mut(id);
        if !std::mem::take(&mut p.unsettled) {
            return false;
        }
        self.settle(id, now);
        true
    }

    /// `Starting` → `Running` for every process alive for its start grace
    /// period. Returns their names.
    pub fn promote_running(&mut self, now: Instant) -> Vec<Arc<str>> {
        let now = self.observe(now);
        let mut done = Vec::new();
        for id in self.due(now, State::Starting) {
            self.become_ready(id, now, false);
            done.push(self.p(id).name.clone());
        }
        if !done.is_empty() {
            self.advance_roll(now);
        }
        self.release_waiting(now, false);
        done
    }

    /// Respawns every `Backoff` process whose retry time has come. Returns
    /// their names (also those whose spawn failed again).
    pub fn retry_backoff(&mut self, now: Instant) -> Vec<Arc<str>> {
        let now = self.observe(now);
        let mut done = Vec::new();
        for id in self.due(now, State::Backoff) {
            let p = self.p_mut(id);
            if !std::mem::take(&mut p.awaits_orphan) {
                p.restart_count = p.restart_count.saturating_add(1);
            }
            done.push(p.name.clone());
            if self.gate(id) {
                let _ = self.spawn_id(id, now);
            }
        }
        self.release_waiting(now, false);
        done
    }

    /// Sends SIGKILL (to the group where there is one) to every `Stopping`
    /// process past its stop timeout. Returns their names.
    pub fn escalate_stops(&mut self, now: Instant) -> Vec<Arc<str>> {
        let now = self.observe(now);
        let mut done = Vec::new();
        let due: Vec<Deadline> = self.timers.due(now);
        for key in due {
            let killed = match key {
                Deadline::Proc(id) if self.p(id).state == State::Stopping => {
                    self.set_deadline(id, None);
                    let (name, pid) = (self.p(id).name.clone(), self.p(id).pid);
                    pid.map(|pid| (name, pid, self.send_signal(pid, Signal::SIGKILL, false)))
                }
                Deadline::Retire(id) => self.kill_retiring(id),
                Deadline::Orphan(pid) => self.kill_orphan(pid),
                _ => None,
            };
            if let Some((name, pid, delivered)) = killed {
                if delivered {
                    let event = match key {
                        Deadline::Orphan(_) => Event::OrphanKilled { name: name.clone(), pid },
                        _ => Event::Killed { name: name.clone(), pid },
                    };
                    self.emit(event);
                }
                done.push(name);
            }
        }
        done
    }

    /// Sends `signal` to a child, or to an orphan of an earlier run;
    /// whether it was delivered. `ESRCH` counts as delivered: the process is
    /// already dead, its end about to be seen. Anything else (`EPERM`: a
    /// child that made itself unsignallable) is logged; what follows (a
    /// kill deadline, or nothing after a SIGKILL) is the caller's.
    fn send_signal(&mut self, pid: Pid, signal: Signal, orphan: bool) -> bool {
        let result = if orphan { self.sys.signal_orphan(pid, signal) } else { self.sys.signal(pid, signal) };
        match result {
            Err(e) if e.raw_os_error() != Some(libc::ESRCH) => {
                log::warn!("procsup: {} to pid {pid} failed: {e}", signal.as_str());
                false
            }
            _ => true,
        }
    }

    /// Every step in order: reap, escalate, readiness deadlines (start
    /// timeouts, watchdogs, probes), promote, retry. Call it when a
    /// readiness fd fires or [`next_deadline`](Supervisor::next_deadline)
    /// arrives. Calling it early or twice is harmless.
    pub fn tick(&mut self, now: Instant) {
        // A burst of events (hundreds of crashes at once) must not pin its
        // memory once the host has drained it.
        if self.events.is_empty() && self.events.capacity() > EVENT_CAPACITY_KEPT {
            self.events.shrink_to(EVENT_CAPACITY_KEPT);
        }
        self.scratch.shrink_to(EVENT_CAPACITY_KEPT);
        if self.backlog.is_empty() {
            self.backlog.shrink_to(EVENT_CAPACITY_KEPT);
        }
        self.reap_processes(now);
        self.escalate_stops(now);
        self.check_liveness(now);
        self.promote_running(now);
        self.retry_backoff(now);
    }

    /// The earliest instant at which a step has work, or `None`. It changes
    /// only through calls on this supervisor: recompute it after each.
    ///
    /// Besides the deadlines of the processes, it is "now" (the latest
    /// `now` seen, so already past) while captured output is left over from
    /// the per-tick budget, and it includes the OS layer's own wake-up
    /// ([`Sys::wake_after`]); it is also "now" while a `Waiting` process
    /// can start (or must fail) because its dependencies changed, whatever
    /// call changed them. With [`UnixSys`], "now" while output is left
    /// in a pipe past its read budget, and a short re-check while a child
    /// has to be looked at because its exit wakes no readiness fd.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timers = self.timers.next();
        let due_now = !self.backlog.is_empty() || self.release_due();
        let wake = if due_now { Some(Duration::ZERO) } else { self.sys.wake_after() };
        let wake = wake.and_then(|d| self.last_now.map(|t| t.checked_add(d).unwrap_or(t)));
        match (timers, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The file descriptors a host polls for readability to learn that a
    /// child exited or wrote captured output. With [`UnixSys`] on Linux
    /// this is one epoll fd that stays the same for the supervisor's life,
    /// so a host may register it once with its own `epoll`, `mio` or tokio
    /// `AsyncFd`.
    ///
    /// The fd is level-triggered: it stays readable until
    /// [`tick`](Supervisor::tick) (or
    /// [`reap_processes`](Supervisor::reap_processes)) has collected what
    /// is ready. So the rule is: **when it is readable, tick before waiting
    /// again** — otherwise the wait returns at once, forever.
    ///
    /// Without pidfds (old kernels, other Unixes,
    /// [`UnixSys::without_pidfd`]) it only reports captured output, not
    /// exits: such a host must also wake on SIGCHLD (its own handler, e.g.
    /// `signal-hook`'s pipe) or tick on a timer. A single child that got no
    /// pidfd while its siblings did (fd exhaustion) needs nothing more:
    /// [`next_deadline`](Supervisor::next_deadline) asks for a short
    /// re-check while it lives.
    pub fn readiness_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.sys.readiness_fds()
    }

    /// Takes the oldest pending event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Takes every pending event, oldest first.
    pub fn drain_events(&mut self) -> impl Iterator<Item = Event> + '_ {
        self.events.drain(..)
    }

    // ----- introspection ---------------------------------------------------

    /// A snapshot of one process.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`].
    pub fn status(&self, name: &str) -> Result<ProcessStatus> {
        Ok(self.p(self.id(name)?).status())
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

    fn p_mut(&mut self, id: usize) -> &mut Proc {
        self.procs[id].as_mut().expect("ids in names/pids/timers always point at live slots")
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
    }
}
