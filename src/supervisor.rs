//! The supervisor: the steps and the state machine.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::event::{Event, FatalReason, Stream};
use crate::orphans::OrphanScan;
use crate::output::{escape, LineBuffer};
use crate::spec::{Output, ProcessSpec, RestartPolicy};
use crate::state::{Exit, ProcessStatus, State};
use crate::sys::{Sys, SysEvent, UnixSys};
use crate::timers::Timers;

/// What to do when the current child has been reaped, besides the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterExit {
    /// Apply the restart policy (or stay stopped after a manual stop).
    Policy,
    /// Spawn again at once (`restart_process`).
    Restart,
    /// Forget the process (`remove_process`).
    Remove,
}

#[derive(Debug)]
struct Proc {
    name: Arc<str>,
    spec: ProcessSpec,
    state: State,
    pid: Option<Pid>,
    started_at: Option<Instant>,
    /// The one pending deadline: promotion (Starting), retry (Backoff) or
    /// kill (Stopping). Mirrored in `Supervisor::timers`.
    deadline: Option<Instant>,
    restart_count: u32,
    exit_count: u32,
    last_exit: Option<Exit>,
    last_spawn_error: Option<Errno>,
    streak: u32,
    manual_stop: bool,
    after_exit: AfterExit,
    /// Reaped, but `handle_exit` has not decided what follows yet.
    unsettled: bool,
    /// In `Backoff` only until an orphan of the same name is gone.
    awaits_orphan: bool,
    /// Restart instants inside the `max_restarts_within` window.
    window: VecDeque<Instant>,
    added_seq: u64,
    start_seq: u64,
    lines: Option<Box<[LineBuffer; 2]>>,
}

impl Proc {
    fn status(&self) -> ProcessStatus {
        ProcessStatus {
            name: self.name.to_string(),
            state: self.state,
            pid: self.pid,
            started_at: self.started_at,
            restart_count: self.restart_count,
            exit_count: self.exit_count,
            last_exit: self.last_exit,
            last_spawn_error: self.last_spawn_error,
            next_retry_at: if self.state == State::Backoff { self.deadline } else { None },
            failure_streak: self.streak,
            give_up_remaining: self.spec.give_up_after.map(|n| n.saturating_sub(self.streak)),
            manual_stop: self.manual_stop,
        }
    }

    fn captures(&self) -> bool {
        self.spec.stdout == Output::Capture || self.spec.stderr == Output::Capture
    }
}

/// How long after an orphan's SIGKILL a process waiting for it starts
/// anyway (its end is normally seen within milliseconds; this bounds the
/// wait where it cannot be seen, as without pidfds).
const ORPHAN_KILL_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// An orphan of an earlier run being stopped.
#[derive(Debug)]
struct OrphanTask {
    name: Arc<str>,
    kill_at: Option<Instant>,
}

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
    procs: Vec<Option<Proc>>,
    free: Vec<usize>,
    names: HashMap<Arc<str>, usize>,
    pids: HashMap<Pid, usize>,
    timers: Timers<usize>,
    orphans: HashMap<Pid, OrphanTask>,
    orphan_timers: Timers<Pid>,
    events: VecDeque<Event>,
    rng: StdRng,
    last_now: Option<Instant>,
    seq: u64,
    shutting_down: bool,
    scratch: Vec<SysEvent>,
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
            orphan_timers: Timers::default(),
            events: VecDeque::new(),
            rng: StdRng::from_os_rng(),
            last_now: None,
            seq: 0,
            shutting_down: false,
            scratch: Vec::new(),
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

    /// Adds a process, `Stopped`. The spec is validated first.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`], [`Error::DuplicateProcess`],
    /// [`Error::ShuttingDown`].
    pub fn add_process(&mut self, spec: ProcessSpec) -> Result<()> {
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        spec.validate()?;
        if self.names.contains_key(spec.name.as_str()) {
            return Err(Error::DuplicateProcess(spec.name));
        }
        let name: Arc<str> = Arc::from(spec.name.as_str());
        self.seq += 1;
        let proc = Proc {
            name: name.clone(),
            lines: None,
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
            unsettled: false,
            awaits_orphan: false,
            window: VecDeque::new(),
            added_seq: self.seq,
            start_seq: 0,
        };
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
        Ok(())
    }

    /// Removes a process. One without a child goes at once (a pending
    /// restart is cancelled); one with a child is stopped first and removed
    /// when it has been reaped ([`Event::Removed`]); its name stays taken
    /// until then.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`].
    pub fn remove_process(&mut self, name: &str, now: Instant) -> Result<()> {
        let now = self.observe(now);
        let id = self.id(name)?;
        if self.p(id).state.has_child() {
            self.stop_id(id, now);
            self.p_mut(id).after_exit = AfterExit::Remove;
        } else {
            self.forget(id);
        }
        Ok(())
    }

    /// Starts a process that is not running: `Stopped`, `Exited` or `Fatal`
    /// start with a fresh failure streak; `Backoff` is spawned now instead
    /// of waiting. `Starting`/`Running`: no-op. `Stopping`: it is started
    /// again as soon as it exits.
    ///
    /// A spawn failure is not an error here: it is an
    /// [`Event::SpawnFailed`] and the process goes to `Backoff` or `Fatal`.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`], [`Error::ShuttingDown`].
    pub fn start_process(&mut self, name: &str, now: Instant) -> Result<()> {
        let now = self.observe(now);
        let id = self.id(name)?;
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        self.start_id(id, now);
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
    /// [`Error::UnknownProcess`], [`Error::ShuttingDown`].
    pub fn restart_process(&mut self, name: &str, now: Instant) -> Result<()> {
        let now = self.observe(now);
        let id = self.id(name)?;
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        if self.p(id).state.has_child() {
            self.stop_id(id, now);
            self.p_mut(id).after_exit = AfterExit::Restart;
        } else {
            self.start_id(id, now);
        }
        Ok(())
    }

    /// Starts every process that is not running, in the order they were
    /// added. First it runs [`cleanup_orphans`](Supervisor::cleanup_orphans):
    /// a process whose orphan from an earlier run is being stopped waits in
    /// `Backoff` until that orphan is gone (or killed), so that whatever the
    /// orphan held — a port, a lock file — is free.
    ///
    /// # Errors
    /// [`Error::ShuttingDown`]; [`Error::StateDir`] when the state
    /// directory cannot be read (then nothing is started).
    pub fn start_all(&mut self, now: Instant) -> Result<()> {
        let now = self.observe(now);
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        self.cleanup_orphans(now)?;
        for id in self.ids_by(|p| p.added_seq) {
            self.start_id(id, now);
        }
        Ok(())
    }

    /// Stops every process, most recently started first, and cancels every
    /// pending restart.
    pub fn stop_all(&mut self, now: Instant) {
        let now = self.observe(now);
        let mut ids = self.ids_by(|p| p.start_seq);
        ids.reverse();
        for id in ids {
            self.stop_id(id, now);
        }
    }

    /// Graceful shutdown: [`stop_all`](Supervisor::stop_all), and from now
    /// on nothing is added, started or restarted. Keep calling
    /// [`tick`](Supervisor::tick) until [`is_idle`](Supervisor::is_idle).
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.stop_all(now);
    }

    /// True when no child exists and no restart is pending: after a
    /// shutdown, the host may exit.
    pub fn is_idle(&self) -> bool {
        self.pids.is_empty() && self.orphans.is_empty() && self.live().all(|p| p.state != State::Backoff)
    }

    /// Stops what an earlier run left behind: every record in the state
    /// directory whose process is still alive with the recorded start time
    /// gets the stop signal of the process of that name (SIGTERM for an
    /// unknown name), then SIGKILL after its stop timeout (10 s for an
    /// unknown name); its record goes when it is gone. Records that are
    /// junk, or whose pid is gone or was recycled, are removed and nothing
    /// is signalled. Each outcome is an event. Returns how many orphans are
    /// being stopped. [`start_all`](Supervisor::start_all) calls it.
    ///
    /// # Errors
    /// [`Error::StateDir`] when the state directory cannot be read.
    pub fn cleanup_orphans(&mut self, now: Instant) -> Result<usize> {
        let now = self.observe(now);
        let scans = self.sys.scan_orphans().map_err(|source| Error::StateDir {
            path: self.sys.state_dir().map(|p| p.to_owned()).unwrap_or_default(),
            source,
        })?;
        let mut stopping = 0;
        for scan in scans {
            match scan {
                OrphanScan::Alive(o) => {
                    let name: Arc<str> = Arc::from(o.name.as_str());
                    let (signal, timeout) = match self.names.get(&name) {
                        Some(&id) => (self.p(id).spec.stop_signal, self.p(id).spec.stop_timeout),
                        None => (Signal::SIGTERM, std::time::Duration::from_secs(10)),
                    };
                    let kill_at = now + timeout;
                    if let Err(e) = self.sys.signal_orphan(o.pid, signal) {
                        log::warn!("procsup: {} to orphan {name} (pid {}) failed: {e}", signal.as_str(), o.pid);
                    }
                    self.orphans.insert(o.pid, OrphanTask { name: name.clone(), kill_at: Some(kill_at) });
                    self.orphan_timers.reset(o.pid, None, Some(kill_at));
                    self.emit(Event::OrphanStopping { name, pid: o.pid, signal, kill_at });
                    stopping += 1;
                }
                OrphanScan::Discarded { name, reason } => {
                    self.emit(Event::OrphanDiscarded { name: Arc::from(name.as_str()), reason })
                }
                OrphanScan::Refused { name, reason } => {
                    self.emit(Event::OrphanRefused { name: Arc::from(name.as_str()), reason })
                }
            }
        }
        Ok(stopping)
    }

    // ----- the steps -----------------------------------------------------

    /// Spawns one process now, whatever its state, unless it already has a
    /// child (then its pid is returned). Counters are kept; a pending retry
    /// is cancelled. On failure the process goes to `Backoff` or `Fatal`
    /// as for any spawn failure, and the error is also returned.
    ///
    /// # Errors
    /// [`Error::UnknownProcess`], [`Error::ShuttingDown`], [`Error::Spawn`].
    pub fn spawn_process(&mut self, name: &str, now: Instant) -> Result<Pid> {
        let now = self.observe(now);
        let id = self.id(name)?;
        if self.shutting_down {
            return Err(Error::ShuttingDown);
        }
        if let Some(pid) = self.p(id).pid {
            return Ok(pid);
        }
        self.p_mut(id).manual_stop = false;
        self.spawn_id(id, now).map_err(|source| Error::Spawn { name: name.to_owned(), source })
    }

    /// Collects the exits (and captured output) of this supervisor's own
    /// children without blocking, records each (exit, `exit_count`, pid
    /// cleared) and runs [`handle_exit`](Supervisor::handle_exit) on it.
    pub fn reap_processes(&mut self, now: Instant) -> Vec<Reaped> {
        let now = self.observe(now);
        let mut sys_events = std::mem::take(&mut self.scratch);
        self.sys.poll(&mut sys_events);
        let mut reaped = Vec::new();
        for ev in sys_events.drain(..) {
            match ev {
                SysEvent::Output { pid, stream, data } => self.on_output(pid, stream, &data),
                SysEvent::OrphanGone { pid } => self.on_orphan_gone(pid, now),
                SysEvent::Exited { pid, exit } => {
                    if let Some(r) = self.on_exit(pid, exit, now) {
                        let name = r.name.clone();
                        reaped.push(r);
                        // The name is ours: handle_exit cannot fail here.
                        let _ = self.handle_exit(&name, now);
                    }
                }
            }
        }
        self.scratch = sys_events;
        reaped
    }

    /// Decides what follows the exit of a reaped child: `Stopped` after a
    /// stop the host asked for, a spawn after `restart_process`, removal
    /// after `remove_process`; otherwise the restart policy: `Exited`,
    /// `Backoff` or `Fatal`. Returns whether there was an exit to handle
    /// (`reap_processes` calls this for every exit, so a later call is a
    /// no-op).
    ///
    /// # Errors
    /// [`Error::UnknownProcess`].
    pub fn handle_exit(&mut self, name: &str, now: Instant) -> Result<bool> {
        let now = self.observe(now);
        let id = self.id(name)?;
        if !self.p(id).unsettled {
            return Ok(false);
        }
        self.p_mut(id).unsettled = false;
        self.settle(id, now);
        Ok(true)
    }

    /// `Starting` → `Running` for every process alive for its start grace
    /// period. Returns their names.
    pub fn promote_running(&mut self, now: Instant) -> Vec<Arc<str>> {
        let now = self.observe(now);
        let mut done = Vec::new();
        for id in self.due(now, State::Starting) {
            self.set_deadline(id, None);
            let p = self.p_mut(id);
            p.state = State::Running;
            p.streak = 0;
            let (name, pid) = (p.name.clone(), p.pid);
            if let Some(pid) = pid {
                self.emit(Event::Running { name: name.clone(), pid });
            }
            done.push(name);
        }
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
            let _ = self.spawn_id(id, now);
        }
        done
    }

    /// Sends SIGKILL (to the group where there is one) to every `Stopping`
    /// process past its stop timeout. Returns their names.
    pub fn escalate_stops(&mut self, now: Instant) -> Vec<Arc<str>> {
        let now = self.observe(now);
        let mut done = Vec::new();
        for id in self.due(now, State::Stopping) {
            self.set_deadline(id, None);
            let p = self.p(id);
            let (name, pid) = (p.name.clone(), p.pid);
            if let Some(pid) = pid {
                if let Err(e) = self.sys.signal(pid, Signal::SIGKILL) {
                    log::warn!("procsup: SIGKILL to {name} (pid {pid}) failed: {e}");
                }
                self.emit(Event::Killed { name: name.clone(), pid });
            }
            done.push(name);
        }
        let due: Vec<Pid> = self.orphan_timers.due(now).collect();
        for pid in due {
            let Some(task) = self.orphans.get_mut(&pid) else { continue };
            let old = task.kill_at.take();
            let name = task.name.clone();
            self.orphan_timers.reset(pid, old, None);
            if let Err(e) = self.sys.signal_orphan(pid, Signal::SIGKILL) {
                log::warn!("procsup: SIGKILL to orphan {name} (pid {pid}) failed: {e}");
            }
            self.emit(Event::OrphanKilled { name: name.clone(), pid });
            done.push(name);
        }
        done
    }

    /// Every step in order: reap, escalate, promote, retry. Call it when a
    /// readiness fd fires or [`next_deadline`](Supervisor::next_deadline)
    /// arrives. Calling it early or twice is harmless.
    pub fn tick(&mut self, now: Instant) {
        self.reap_processes(now);
        self.escalate_stops(now);
        self.promote_running(now);
        self.retry_backoff(now);
    }

    /// The earliest instant at which a step has work, or `None`. It changes
    /// only through calls on this supervisor: recompute it after each.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.timers.next(), self.orphan_timers.next()) {
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
    /// `signal-hook`'s pipe) or tick on a timer.
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

    fn p(&self, id: usize) -> &Proc {
        self.procs[id].as_ref().expect("ids in names/pids/timers always point at live slots")
    }

    fn p_mut(&mut self, id: usize) -> &mut Proc {
        self.procs[id].as_mut().expect("ids in names/pids/timers always point at live slots")
    }

    fn live(&self) -> impl Iterator<Item = &Proc> {
        self.procs.iter().flatten()
    }

    fn ids_by(&self, key: impl Fn(&Proc) -> u64) -> Vec<usize> {
        let mut ids: Vec<(u64, usize)> =
            self.procs.iter().enumerate().filter_map(|(id, p)| p.as_ref().map(|p| (key(p), id))).collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Slots in `state` whose deadline has come, earliest first.
    fn due(&self, now: Instant, state: State) -> Vec<usize> {
        self.timers.due(now).filter(|&id| self.p(id).state == state).collect()
    }

    fn set_deadline(&mut self, id: usize, new: Option<Instant>) {
        let old = std::mem::replace(&mut self.p_mut(id).deadline, new);
        self.timers.reset(id, old, new);
    }

    fn emit(&mut self, ev: Event) {
        match &ev {
            Event::Fatal { .. } | Event::SpawnFailed { .. } => log::warn!("procsup: {ev}"),
            Event::Output { name, line, .. } => log::info!("[{name}] {}", escape(line)),
            _ => log::debug!("procsup: {ev}"),
        }
        self.events.push_back(ev);
    }

    fn forget(&mut self, id: usize) {
        self.set_deadline(id, None);
        let p = self.procs[id].take().expect("forget is called on live slots");
        self.names.remove(&p.name);
        self.free.push(id);
        self.emit(Event::Removed { name: p.name });
    }

    fn start_id(&mut self, id: usize, now: Instant) {
        let p = self.p_mut(id);
        match p.state {
            State::Starting | State::Running => {}
            State::Stopping => {
                p.after_exit = AfterExit::Restart;
                p.manual_stop = false;
            }
            State::Stopped | State::Exited | State::Fatal | State::Backoff => {
                p.streak = 0;
                p.window.clear();
                p.manual_stop = false;
                let name = p.name.clone();
                match self.orphans.values().find(|o| o.name == name).map(|o| o.kill_at) {
                    Some(kill_at) => self.await_orphan(id, now, kill_at.unwrap_or(now) + ORPHAN_KILL_GRACE),
                    None => {
                        let _ = self.spawn_id(id, now);
                    }
                }
            }
        }
    }

    /// `Backoff` until the orphan of the same name is gone, at the latest
    /// until `until` (its kill deadline and a grace).
    fn await_orphan(&mut self, id: usize, now: Instant, until: Instant) {
        let p = self.p_mut(id);
        p.state = State::Backoff;
        p.awaits_orphan = true;
        let (name, failure_streak) = (p.name.clone(), p.streak);
        let retry_at = until.max(now);
        self.set_deadline(id, Some(retry_at));
        self.emit(Event::Backoff { name, delay: retry_at - now, retry_at, failure_streak });
    }

    fn on_orphan_gone(&mut self, pid: Pid, now: Instant) {
        let Some(task) = self.orphans.remove(&pid) else { return };
        self.orphan_timers.reset(pid, task.kill_at, None);
        self.emit(Event::OrphanGone { name: task.name.clone(), pid });
        if let Some(&id) = self.names.get(&task.name) {
            let p = self.p(id);
            if p.awaits_orphan && p.state == State::Backoff {
                self.set_deadline(id, Some(now));
            }
        }
    }

    fn stop_id(&mut self, id: usize, now: Instant) {
        let p = self.p_mut(id);
        p.manual_stop = true;
        match p.state {
            State::Starting | State::Running => {
                p.after_exit = AfterExit::Policy;
                p.state = State::Stopping;
                let (name, signal, timeout) = (p.name.clone(), p.spec.stop_signal, p.spec.stop_timeout);
                let pid = p.pid.expect("Starting and Running always have a pid");
                let kill_at = now + timeout;
                self.set_deadline(id, Some(kill_at));
                if let Err(e) = self.sys.signal(pid, signal) {
                    // ESRCH: it died just now and will be reaped; anything
                    // else is logged and the kill deadline still stands.
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        log::warn!("procsup: {} to {name} (pid {pid}) failed: {e}", signal.as_str());
                    }
                }
                self.emit(Event::Stopping { name, pid, signal, kill_at });
            }
            State::Stopping => p.after_exit = AfterExit::Policy,
            State::Backoff => {
                p.state = State::Stopped;
                p.awaits_orphan = false;
                let name = p.name.clone();
                self.set_deadline(id, None);
                self.emit(Event::Stopped { name });
            }
            State::Stopped | State::Exited | State::Fatal => {}
        }
    }

    /// Spawns the child of slot `id` (which has none). Success: `Starting`
    /// (or `Running` with no start grace). Failure: `Backoff` or `Fatal`.
    fn spawn_id(&mut self, id: usize, now: Instant) -> io::Result<Pid> {
        self.set_deadline(id, None);
        self.seq += 1;
        let seq = self.seq;
        let spec = &self.procs[id].as_ref().expect("spawn_id is called on live slots").spec;
        let result = self.sys.spawn(spec);
        let p = self.p_mut(id);
        p.after_exit = AfterExit::Policy;
        match result {
            Ok(pid) => {
                p.pid = Some(pid);
                p.started_at = Some(now);
                p.start_seq = seq;
                p.last_spawn_error = None;
                p.unsettled = false;
                if p.captures() && p.lines.is_none() {
                    p.lines = Some(Box::default());
                }
                let (name, grace, restart_count) = (p.name.clone(), p.spec.start_grace, p.restart_count);
                self.pids.insert(pid, id);
                self.emit(Event::Spawned { name: name.clone(), pid, restart_count });
                if grace.is_zero() {
                    let p = self.p_mut(id);
                    p.state = State::Running;
                    p.streak = 0;
                    self.emit(Event::Running { name, pid });
                } else {
                    self.p_mut(id).state = State::Starting;
                    self.set_deadline(id, Some(now + grace));
                }
                Ok(pid)
            }
            Err(e) => {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                p.last_spawn_error = Some(errno);
                p.pid = None;
                let (name, fatal_exec, policy) = (p.name.clone(), p.spec.fatal_exec_errors, p.spec.restart);
                self.emit(Event::SpawnFailed { name, errno, message: e.to_string() });
                if fatal_exec && is_exec_error(errno) {
                    self.fatal(id, FatalReason::ExecError(errno));
                } else if policy == RestartPolicy::Never {
                    self.fatal(id, FatalReason::SpawnFailedNoRestart(errno));
                } else {
                    self.schedule_restart(id, now, false);
                }
                Err(e)
            }
        }
    }

    fn on_output(&mut self, pid: Pid, stream: Stream, data: &[u8]) {
        let Some(&id) = self.pids.get(&pid) else { return };
        let p = self.p_mut(id);
        let name = p.name.clone();
        let Some(lines) = p.lines.as_mut() else { return };
        let mut out = Vec::new();
        lines[stream as usize].push(data, &mut |l| out.push(l.to_vec()));
        for line in out {
            self.emit(Event::Output { name: name.clone(), pid, stream, line });
        }
    }

    /// Records an exit; the transition is `handle_exit`'s.
    fn on_exit(&mut self, pid: Pid, exit: Exit, now: Instant) -> Option<Reaped> {
        let Some(id) = self.pids.remove(&pid) else {
            log::warn!("procsup: the OS layer reported pid {pid}, which is not ours");
            return None;
        };
        let p = self.p_mut(id);
        p.pid = None;
        p.last_exit = Some(exit);
        p.exit_count = p.exit_count.saturating_add(1);
        p.unsettled = true;
        let name = p.name.clone();
        let uptime = p.started_at.map_or_else(Default::default, |t| now.saturating_duration_since(t));
        let restart_count = p.restart_count;
        let mut tail = Vec::new();
        if let Some(lines) = p.lines.as_mut() {
            for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
                lines[i].flush(&mut |l| tail.push((stream, l.to_vec())));
            }
        }
        for (stream, line) in tail {
            self.emit(Event::Output { name: name.clone(), pid, stream, line });
        }
        self.emit(Event::Exited { name: name.clone(), pid, exit, uptime, restart_count });
        Some(Reaped { name, pid, exit })
    }

    /// The transition after a reaped exit.
    fn settle(&mut self, id: usize, now: Instant) {
        self.set_deadline(id, None);
        let shutting_down = self.shutting_down;
        let p = self.p_mut(id);
        // A child reaped in the same tick its grace ran out did live
        // through it: uptime decides, not whether promote_running ran first.
        let lived = p.started_at.map(|t| now.saturating_duration_since(t));
        let was_running = p.state == State::Running || lived.is_some_and(|u| u >= p.spec.start_grace);
        match p.after_exit {
            AfterExit::Remove => {
                p.state = State::Stopped;
                let name = p.name.clone();
                self.emit(Event::Stopped { name });
                self.forget(id);
            }
            AfterExit::Restart if !shutting_down => {
                p.streak = 0;
                p.manual_stop = false;
                p.restart_count = p.restart_count.saturating_add(1);
                let _ = self.spawn_id(id, now);
            }
            _ if p.manual_stop || shutting_down => {
                p.state = State::Stopped;
                p.after_exit = AfterExit::Policy;
                let name = p.name.clone();
                self.emit(Event::Stopped { name });
            }
            _ => {
                let success = matches!(p.last_exit, Some(Exit::Exited(c)) if p.spec.is_success(c));
                let restart = match p.spec.restart {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => !success,
                    RestartPolicy::Never => false,
                };
                if restart {
                    self.schedule_restart(id, now, was_running);
                } else {
                    p.state = State::Exited;
                }
            }
        }
    }

    /// `Backoff` with the delay the spec's backoff gives, or `Fatal` when a
    /// give-up limit is reached. `after_running`: the child had reached
    /// `Running`, so the streak starts over.
    fn schedule_restart(&mut self, id: usize, now: Instant, after_running: bool) {
        let p = self.procs[id].as_mut().expect("schedule_restart is called on live slots");
        let prior = if after_running { 0 } else { p.streak };
        p.streak = if after_running { 0 } else { p.streak.saturating_add(1) };
        if let Some(limit) = p.spec.give_up_after {
            if p.streak >= limit {
                let failures = p.streak;
                return self.fatal(id, FatalReason::GaveUp { failures });
            }
        }
        if let Some((max_restarts, period)) = p.spec.restart_window {
            while p.window.front().is_some_and(|&t| now.saturating_duration_since(t) >= period) {
                p.window.pop_front();
            }
            if p.window.len() >= max_restarts as usize {
                return self.fatal(id, FatalReason::TooManyRestarts { max_restarts, period });
            }
            p.window.push_back(now);
        }
        let delay = p.spec.backoff.delay(prior, after_running, &mut self.rng);
        let retry_at = now + delay;
        p.state = State::Backoff;
        let (name, failure_streak) = (p.name.clone(), p.streak);
        self.set_deadline(id, Some(retry_at));
        self.emit(Event::Backoff { name, delay, retry_at, failure_streak });
    }

    fn fatal(&mut self, id: usize, reason: FatalReason) {
        self.set_deadline(id, None);
        let p = self.p_mut(id);
        p.state = State::Fatal;
        let name = p.name.clone();
        self.emit(Event::Fatal { name, reason });
    }
}

/// Errors that retrying the same exec cannot fix.
fn is_exec_error(errno: Errno) -> bool {
    matches!(errno, Errno::ENOENT | Errno::EACCES | Errno::ENOEXEC | Errno::ENOTDIR | Errno::EPERM)
}
