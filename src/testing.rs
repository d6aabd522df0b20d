//! Deterministic testing without real processes: [`FakeSys`] and a
//! [`VirtualClock`].
//!
//! ```
//! use std::time::Duration;
//! use procsup::{Backoff, Exit, ProcessSpec, State, Supervisor};
//! use procsup::testing::{FakeSys, VirtualClock};
//!
//! let mut clock = VirtualClock::new();
//! let mut sup = Supervisor::with_sys(FakeSys::new());
//! sup.add_process(ProcessSpec::new("rq", "rq-worker").backoff(Backoff::fixed(Duration::from_secs(5))))
//!     .unwrap();
//! sup.start_process("rq", clock.now()).unwrap();
//! let pid = sup.status("rq").unwrap().pid.unwrap();
//!
//! clock.advance(Duration::from_secs(100));
//! assert!(sup.sys_mut().exit(pid, Exit::Exited(1)));
//! sup.tick(clock.now());
//! let st = sup.status("rq").unwrap();
//! assert_eq!(st.state, State::Backoff);
//! assert_eq!(st.next_retry_at, Some(clock.at(105.0)));
//! assert_eq!(sup.next_deadline(), Some(clock.at(105.0)));
//! ```

use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::event::Stream;
use crate::orphans::{Orphan, OrphanScan};
use crate::readiness::NotifyMessage;
use crate::spec::{KillMode, ProcessSpec};
use crate::state::{Containment, Exit};
use crate::supervisor::Supervisor;
use crate::sys::{Sys, SysEvent};
use crate::timers::later;

/// A clock for tests: an `Instant` origin and a virtual "now" that moves
/// only when told.
///
/// ```
/// use std::time::Duration;
/// let mut clock = procsup::testing::VirtualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now() - t0, Duration::from_millis(1500));
/// assert_eq!(clock.at(1.5), clock.now());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct VirtualClock {
    origin: Instant,
    now: Instant,
}

impl VirtualClock {
    /// A clock at second 0.
    pub fn new() -> Self {
        // An Instant can only be made from the clock: this origin is the one
        // reading, and nothing but test code calls it.
        #[allow(clippy::disallowed_methods)]
        let origin = Instant::now();
        VirtualClock { origin, now: origin }
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Moves time forward (saturating at the last instant there is).
    pub fn advance(&mut self, by: Duration) {
        self.now = later(self.now, by);
    }

    /// Moves time to an instant (not backwards).
    pub fn set(&mut self, to: Instant) {
        self.now = self.now.max(to);
    }

    /// The instant `secs` seconds after second 0, for tests written in
    /// seconds like the systems they port.
    pub fn at(&self, secs: f64) -> Instant {
        // Negative or NaN is second 0; too far is the last instant there is.
        later(self.origin, Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX))
    }

    /// Seconds since second 0 of an instant.
    pub fn secs(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.origin).as_secs_f64()
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::new()
    }
}

/// One call to [`Sys::spawn`], as a [`FakeSys`] recorded it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SpawnRecord {
    /// The spec the supervisor asked to spawn.
    pub spec: ProcessSpec,
    /// What the fake answered.
    pub result: Result<Pid, Errno>,
}

/// One call to [`Sys::signal`], as a [`FakeSys`] recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignalRecord {
    /// The target.
    pub pid: Pid,
    /// The signal.
    pub signal: Signal,
    /// Whether it went to the child's process group.
    pub group: bool,
    /// Whether the fake reported success.
    pub delivered: bool,
}

#[derive(Debug)]
struct FakeChild {
    /// The spec's name (an instance's own name, `web:0`).
    name: String,
    /// Spawn order, so the newest of two children of one name is known.
    born: u64,
    group: bool,
    /// Exited, but `poll` has not reported it yet (a zombie).
    exited: bool,
    /// The leader exited but the rest of its tree lives, until SIGKILL or
    /// [`FakeSys::tree_empty`].
    draining: bool,
    containment: Containment,
    /// The tree's memory, as [`FakeSys::exceed_memory`] last set it.
    memory: Option<u64>,
    /// The spec's `restart_above_memory` when it was spawned.
    threshold: Option<u64>,
}

/// A scripted [`Sys`]: no process is ever created.
///
/// - Spawns succeed with pids 1000, 1001, ... unless a result was queued
///   with [`fail_next_spawn`](FakeSys::fail_next_spawn) or
///   [`next_spawn_pid`](FakeSys::next_spawn_pid).
/// - A child runs until the test calls [`exit`](FakeSys::exit), or until it
///   is sent SIGKILL, which ends it at once with `Exit::Signaled(9)`, as in
///   life. Other signals are only recorded.
/// - A child's tree can outlive it: [`exit_leaving_tree`](FakeSys::exit_leaving_tree)
///   reports the leader's exit with the tree not yet empty, and the tree
///   ends when the test calls [`tree_empty`](FakeSys::tree_empty) or when
///   it is sent SIGKILL.
/// - Every spawn and signal is recorded for the test to read back.
#[derive(Debug)]
pub struct FakeSys {
    next_pid: i32,
    spawn_script: VecDeque<Result<Pid, Errno>>,
    signal_errors: VecDeque<Errno>,
    children: HashMap<Pid, FakeChild>,
    pending: VecDeque<SysEvent>,
    spawns: Vec<SpawnRecord>,
    signals: Vec<SignalRecord>,
    record: bool,
    /// Orphans not yet returned by a scan, and those being watched.
    orphan_records: Vec<Orphan>,
    orphans: HashMap<Pid, Orphan>,
    interrupted_polls: u32,
    spawned: u64,
    containment: Option<Containment>,
    /// Names the supervisor expects to spawn again (its respawn hints),
    /// each with its `since_last_spawn`.
    expected: std::collections::BTreeMap<String, Option<Duration>>,
    /// Children whose death the supervisor said is restarted at once.
    at_once: std::collections::BTreeSet<Pid>,
    /// Names whose child died so (reported by `poll`), not spawned since.
    owed: Vec<String>,
}

impl Default for FakeSys {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSys {
    /// An empty fake.
    pub fn new() -> Self {
        FakeSys {
            next_pid: 1000,
            spawn_script: VecDeque::new(),
            signal_errors: VecDeque::new(),
            children: HashMap::new(),
            pending: VecDeque::new(),
            spawns: Vec::new(),
            signals: Vec::new(),
            record: true,
            orphan_records: Vec::new(),
            orphans: HashMap::new(),
            interrupted_polls: 0,
            spawned: 0,
            containment: None,
            expected: Default::default(),
            at_once: Default::default(),
            owed: Vec::new(),
        }
    }

    /// The children whose death the supervisor last said is restarted at
    /// once ([`Sys::respawn_at_once`]), in pid order: those
    /// [`UnixSys`](crate::UnixSys) lets a successor go for as it sees
    /// the death.
    ///
    /// ```
    /// use std::time::Instant;
    /// use procsup::testing::FakeSys;
    /// use procsup::{Backoff, ProcessSpec, Supervisor};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("web", "web-server").backoff(Backoff::none())).unwrap();
    /// let now = Instant::now();
    /// sup.start_process("web", now).unwrap();
    /// sup.tick(now); // told before each poll
    /// let pid = sup.status("web").unwrap().pid.unwrap();
    /// assert_eq!(sup.sys().restarts_at_once(), [pid]);
    /// sup.stop_process("web", now).unwrap();
    /// sup.tick(now);
    /// assert!(sup.sys().restarts_at_once().is_empty());
    /// ```
    pub fn restarts_at_once(&self) -> Vec<Pid> {
        self.at_once.iter().copied().collect()
    }

    /// The names whose child died while the supervisor said its death is
    /// restarted at once, and that no [`Sys::spawn`] has been asked for
    /// since: a promise broken, had a successor been let go early. Empty
    /// after every [`tick`](crate::Supervisor::tick) of a supervisor that
    /// keeps the promise.
    ///
    /// ```
    /// use std::time::Instant;
    /// use procsup::testing::FakeSys;
    /// use procsup::{Backoff, Exit, ProcessSpec, Supervisor};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("web", "web-server").backoff(Backoff::none())).unwrap();
    /// let now = Instant::now();
    /// sup.start_process("web", now).unwrap();
    /// sup.tick(now);
    /// let pid = sup.status("web").unwrap().pid.unwrap();
    /// assert!(sup.sys_mut().exit(pid, Exit::Signaled(9)));
    /// sup.tick(now); // reaped, and spawned again in the same tick
    /// assert!(sup.sys().owed_respawns().is_empty());
    /// assert_ne!(sup.status("web").unwrap().pid, Some(pid));
    /// ```
    pub fn owed_respawns(&self) -> Vec<&str> {
        self.owed.iter().map(String::as_str).collect()
    }

    /// The names the supervisor said it will spawn again
    /// ([`Sys::expect_respawn`]) and has not taken back
    /// ([`Sys::forget_respawn`]), in name order: what [`UnixSys`](crate::UnixSys)
    /// holds a successor ready for with [`standby`](crate::UnixSys::standby).
    ///
    /// ```
    /// use procsup::testing::FakeSys;
    /// use procsup::{ProcessSpec, Supervisor};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("web", "web-server")).unwrap();
    /// sup.start_process("web", std::time::Instant::now()).unwrap();
    /// assert_eq!(sup.sys().expected_respawns(), ["web"]);
    /// ```
    pub fn expected_respawns(&self) -> Vec<&str> {
        self.expected.keys().map(String::as_str).collect()
    }

    /// The `since_last_spawn` of the supervisor's standing
    /// [`Sys::expect_respawn`] for `name`: `None` with no hint standing,
    /// `Some(None)` for a first child, else the time from the previous
    /// child's spawn to this one's.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use procsup::testing::{FakeSys, VirtualClock};
    /// use procsup::{Backoff, Exit, ProcessSpec, Supervisor};
    /// let mut clock = VirtualClock::new();
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("web", "web-server").backoff(Backoff::fixed(Duration::ZERO)))?;
    /// sup.start_process("web", clock.now())?;
    /// assert_eq!(sup.sys().respawn_since_last_spawn("web"), Some(None), "a first child");
    /// let first = sup.status("web").unwrap().pid.unwrap();
    /// clock.advance(Duration::from_millis(3));
    /// assert!(sup.sys_mut().exit(first, Exit::Exited(1)));
    /// sup.tick(clock.now());
    /// assert_ne!(sup.status("web").unwrap().pid, Some(first), "spawned again");
    /// assert_eq!(sup.sys().respawn_since_last_spawn("web"), Some(Some(Duration::from_millis(3))));
    /// assert_eq!(sup.sys().respawn_since_last_spawn("db"), None, "no hint");
    /// # Ok::<(), procsup::Error>(())
    /// ```
    pub fn respawn_since_last_spawn(&self, name: &str) -> Option<Option<Duration>> {
        self.expected.get(name).copied()
    }

    /// The child ends and its status is lost: someone else reaped it, as a
    /// host calling `waitpid(-1)` would. Reported as [`Exit::Unknown`], the
    /// way [`UnixSys`](crate::UnixSys) reports `ECHILD`.
    #[must_use = "false means the pid was not a live child"]
    pub fn lose_exit(&mut self, pid: Pid) -> bool {
        self.exit(pid, Exit::Unknown)
    }

    /// The next `n` polls report nothing, as a wait interrupted by a signal
    /// (`EINTR`) would; what is pending is reported by the poll after.
    pub fn interrupt_polls(&mut self, n: u32) {
        self.interrupted_polls = self.interrupted_polls.saturating_add(n);
    }

    /// Leaves a record of a live process from "an earlier run", for the
    /// next [`Sys::scan_orphans`]. SIGKILL ends it; so does
    /// [`orphan_exit`](FakeSys::orphan_exit).
    pub fn add_orphan(&mut self, name: &str, pid: Pid) {
        self.orphan_records.push(Orphan {
            name: name.to_owned(),
            pid,
            pgid: pid,
            start_time: 0,
            sid: Some(pid),
            cgroup: None,
            leader_alive: true,
        });
    }

    /// A watched orphan ends; reported by the next `poll`. False when `pid`
    /// is not a watched orphan.
    #[must_use = "false means the pid was not a watched orphan"]
    pub fn orphan_exit(&mut self, pid: Pid) -> bool {
        if self.orphans.remove(&pid).is_none() {
            return false;
        }
        self.pending.push_back(SysEvent::OrphanGone { pid });
        true
    }

    /// An orphan the host adopted as a subreaper ends; reported by the next
    /// `poll` as [`SysEvent::AdoptedExited`]. `name` is the supervised
    /// process whose tree it came from, `None` for none.
    pub fn adopted_exit(&mut self, pid: Pid, name: Option<&str>, exit: Exit) {
        self.pending.push_back(SysEvent::AdoptedExited { pid, name: name.map(str::to_owned), exit });
    }

    /// The next spawn fails with `errno` (queued: call several times to fail
    /// several spawns).
    pub fn fail_next_spawn(&mut self, errno: Errno) {
        self.spawn_script.push_back(Err(errno));
    }

    /// The next spawn gets this pid (queued).
    pub fn next_spawn_pid(&mut self, pid: Pid) {
        self.spawn_script.push_back(Ok(pid));
    }

    /// The next signal sent fails with `errno` (queued). With `ESRCH` the
    /// child is treated as having died just before: nothing else changes.
    pub fn fail_next_signal(&mut self, errno: Errno) {
        self.signal_errors.push_back(errno);
    }

    /// The containment the next spawns report. By default, as
    /// [`UnixSys`](crate::UnixSys) without cgroups: the process group when
    /// the spec asks for one (and its kill mode is the tree), else none.
    pub fn set_containment(&mut self, containment: Containment) {
        self.containment = Some(containment);
    }

    /// The leader of a live child's tree ends while the rest of its tree
    /// lives on: the next `poll` reports [`SysEvent::LeaderExited`], and
    /// [`SysEvent::TreeEmpty`] follows after [`tree_empty`](FakeSys::tree_empty)
    /// or a SIGKILL. Returns false (and does nothing) when `pid` is not a
    /// live child.
    #[must_use = "false means the pid was not a live child"]
    pub fn exit_leaving_tree(&mut self, pid: Pid, exit: Exit) -> bool {
        match self.children.get_mut(&pid) {
            Some(c) if !c.exited => {
                c.exited = true;
                c.draining = true;
                self.pending.push_back(SysEvent::LeaderExited { pid, exit });
                true
            }
            _ => false,
        }
    }

    /// The rest of the tree of a child whose leader ended
    /// ([`exit_leaving_tree`](FakeSys::exit_leaving_tree)) is gone now;
    /// reported by the next `poll`. False when no such tree is draining.
    #[must_use = "false means no tree of that pid was draining"]
    pub fn tree_empty(&mut self, pid: Pid) -> bool {
        match self.children.get_mut(&pid) {
            Some(c) if c.draining => {
                c.draining = false;
                self.pending.push_back(SysEvent::TreeEmpty { pid });
                true
            }
            _ => false,
        }
    }

    /// Whether the tree of `pid` is draining: its leader exited, the rest
    /// lives.
    pub fn is_draining(&self, pid: Pid) -> bool {
        self.children.get(&pid).is_some_and(|c| c.draining)
    }

    /// Ends a live child; the exit is reported by the next `poll`. Returns
    /// false (and does nothing) when `pid` is not a live child of this fake.
    #[must_use = "false means the pid was not a live child"]
    pub fn exit(&mut self, pid: Pid, exit: Exit) -> bool {
        match self.children.get_mut(&pid) {
            Some(c) if !c.exited => {
                c.exited = true;
                self.pending.push_back(SysEvent::Exited { pid, exit });
                true
            }
            _ => false,
        }
    }

    /// The kernel's OOM killer ends a live child: the next `poll` reports
    /// [`SysEvent::OomKilled`], then its exit by SIGKILL. False (and
    /// nothing) when `pid` is not a live child.
    ///
    /// ```
    /// use std::time::Instant;
    /// use procsup::{Cause, Containment, ProcessSpec, Supervisor, testing::FakeSys};
    /// let now = Instant::now();
    /// let mut sys = FakeSys::new();
    /// sys.set_containment(Containment::Cgroup);
    /// let mut sup = Supervisor::with_sys(sys);
    /// sup.add_process(ProcessSpec::new("web", "server").memory_max(64 << 20))?;
    /// sup.start_all(now)?;
    /// let pid = sup.sys().pid_of("web").unwrap();
    /// assert!(sup.sys_mut().oom_kill(pid));
    /// sup.tick(now);
    /// assert_eq!(sup.status("web")?.last_cause, Some(Cause::OomKilled));
    /// # Ok::<(), procsup::Error>(())
    /// ```
    #[must_use = "false means the pid was not a live child"]
    pub fn oom_kill(&mut self, pid: Pid) -> bool {
        match self.children.get_mut(&pid) {
            Some(c) if !c.exited => {
                c.exited = true;
                self.pending.push_back(SysEvent::OomKilled { pid });
                self.pending.push_back(SysEvent::Exited { pid, exit: Exit::Signaled(libc::SIGKILL) });
                true
            }
            _ => false,
        }
    }

    /// The tree of a live child grows to `bytes`, above its spec's
    /// [`restart_above_memory`](crate::ProcessSpec::restart_above_memory):
    /// the next `poll` reports [`SysEvent::MemoryHigh`], and
    /// [`usage`](Sys::usage) says `bytes` from now on. False (and nothing)
    /// when `pid` is not a live child, or its spec set no threshold (the
    /// OS layer watches nothing then).
    ///
    /// ```
    /// use std::time::Instant;
    /// use procsup::{Containment, Event, ProcessSpec, State, StopReason, Supervisor, testing::FakeSys};
    /// let now = Instant::now();
    /// let mut sys = FakeSys::new();
    /// sys.set_containment(Containment::Cgroup);
    /// let mut sup = Supervisor::with_sys(sys);
    /// sup.add_process(ProcessSpec::new("web", "server").restart_above_memory(64 << 20))?;
    /// sup.start_all(now)?;
    /// let pid = sup.sys().pid_of("web").unwrap();
    /// assert!(sup.sys_mut().exceed_memory(pid, 65 << 20));
    /// sup.tick(now);
    /// assert_eq!(sup.status("web")?.state, State::Stopping);
    /// assert!(sup.drain_events().any(|e| matches!(e, Event::Stopping { reason: StopReason::Memory, .. })));
    /// # Ok::<(), procsup::Error>(())
    /// ```
    #[must_use = "false means the pid was not a live child"]
    pub fn exceed_memory(&mut self, pid: Pid, bytes: u64) -> bool {
        match self.children.get_mut(&pid) {
            Some(c) if !c.exited => {
                c.memory = Some(bytes);
                let Some(threshold) = c.threshold else { return false };
                self.pending.push_back(SysEvent::MemoryHigh { pid, memory: Some(bytes), threshold });
                true
            }
            _ => false,
        }
    }

    /// Ends the live child of the process named `name` (an instance by its
    /// own name, `web:0`), as [`exit`](FakeSys::exit) does by pid. False
    /// when that process has no live child.
    ///
    /// ```
    /// use std::time::Instant;
    /// use procsup::{Exit, ProcessSpec, State, Supervisor, testing::FakeSys};
    /// let now = Instant::now();
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("web", "server"))?;
    /// sup.start_all(now)?;
    /// assert!(sup.sys_mut().exit_by_name("web", Exit::Exited(3)));
    /// sup.tick(now);
    /// assert_eq!(sup.status("web")?.last_exit, Some(Exit::Exited(3)));
    /// assert!(!sup.sys_mut().exit_by_name("nobody", Exit::Exited(3)));
    /// # Ok::<(), procsup::Error>(())
    /// ```
    #[must_use = "false means the process had no live child"]
    pub fn exit_by_name(&mut self, name: &str, exit: Exit) -> bool {
        match self.pid_of(name) {
            Some(pid) => self.exit(pid, exit),
            None => false,
        }
    }

    /// The live child of the process named `name`, if it has one. During a
    /// rolling restart two children share a name; this is the newest.
    pub fn pid_of(&self, name: &str) -> Option<Pid> {
        let mine = self.children.iter().filter(|(_, c)| !c.exited && c.name == name);
        mine.max_by_key(|(_, c)| c.born).map(|(p, _)| *p)
    }

    /// The child writes `data` to a captured stream; reported by the next
    /// `poll`. Returns false when `pid` is not a live child.
    #[must_use = "false means the pid was not a live child"]
    pub fn output(&mut self, pid: Pid, stream: Stream, data: &[u8]) -> bool {
        match self.children.get(&pid) {
            Some(c) if !c.exited => {
                self.pending.push_back(SysEvent::Output { pid, stream, data: data.to_vec() });
                true
            }
            _ => false,
        }
    }

    /// The child sends an sd_notify datagram (`READY=1\nSTATUS=...`),
    /// parsed as [`UnixSys`](crate::UnixSys) parses it and reported by the
    /// next `poll`. Returns false when `pid` is not a live child or the
    /// datagram is malformed (then, as on a real socket, it is dropped).
    ///
    /// ```
    /// use std::time::Instant;
    /// use procsup::{ProcessSpec, Readiness, State, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("db", "postgres").ready(Readiness::Notify)).unwrap();
    /// let now = Instant::now();
    /// sup.start_process("db", now).unwrap();
    /// let pid = sup.status("db").unwrap().pid.unwrap();
    /// assert!(sup.sys_mut().notify(pid, b"READY=1\nSTATUS=accepting connections"));
    /// sup.tick(now);
    /// assert_eq!(sup.status("db").unwrap().state, State::Running);
    /// ```
    #[must_use = "false means nothing was sent"]
    pub fn notify(&mut self, pid: Pid, datagram: &[u8]) -> bool {
        match (self.children.get(&pid), NotifyMessage::parse(datagram)) {
            (Some(c), Some(msg)) if !c.exited => {
                self.pending.push_back(SysEvent::Notify { pid, msg });
                true
            }
            _ => false,
        }
    }

    /// Whether `pid` is a child that has not exited.
    pub fn is_alive(&self, pid: Pid) -> bool {
        self.children.get(&pid).is_some_and(|c| !c.exited)
    }

    /// The children whose leader exited while the rest of their tree
    /// lives ([`exit_leaving_tree`](FakeSys::exit_leaving_tree)), in no
    /// particular order.
    pub fn draining_pids(&self) -> Vec<Pid> {
        self.children.iter().filter(|(_, c)| c.draining).map(|(p, _)| *p).collect()
    }

    /// The children that have not exited, in no particular order.
    pub fn live_pids(&self) -> Vec<Pid> {
        self.children.iter().filter(|(_, c)| !c.exited).map(|(p, _)| *p).collect()
    }

    /// Every spawn so far.
    pub fn spawns(&self) -> &[SpawnRecord] {
        &self.spawns
    }

    /// Every signal so far.
    pub fn signals(&self) -> &[SignalRecord] {
        &self.signals
    }

    /// The signals sent to one pid.
    pub fn signals_to(&self, pid: Pid) -> Vec<Signal> {
        self.signals.iter().filter(|s| s.pid == pid).map(|s| s.signal).collect()
    }

    /// Forgets the records and stops recording (for long benchmarks) or
    /// starts again.
    pub fn set_recording(&mut self, on: bool) {
        self.record = on;
        self.spawns.clear();
        self.signals.clear();
    }
}

impl Sys for FakeSys {
    fn expect_respawn(&mut self, spec: &ProcessSpec, since_last_spawn: Option<Duration>) {
        self.expected.insert(spec.name.clone(), since_last_spawn);
    }

    fn forget_respawn(&mut self, name: &str) {
        self.expected.remove(name);
    }

    fn respawn_at_once(&mut self, pid: Pid, at_once: bool) {
        if at_once && self.children.contains_key(&pid) {
            self.at_once.insert(pid);
        } else {
            self.at_once.remove(&pid);
        }
    }

    /// Cgroup limits only with [`Containment::Cgroup`] set
    /// ([`set_containment`](FakeSys::set_containment)), as `UnixSys`
    /// without a cgroup refuses them.
    fn usage(&self, pid: Pid) -> Option<crate::state::Usage> {
        let memory = self.children.get(&pid)?.memory?;
        Some(crate::state::Usage { memory_current: Some(memory), ..Default::default() })
    }

    fn refuse_limits(&mut self, spec: &ProcessSpec) -> Option<(&'static str, String)> {
        let (limit, _) = spec.first_cgroup_limit()?;
        (self.containment != Some(Containment::Cgroup))
            .then(|| (limit, "FakeSys: no cgroup containment set".to_owned()))
    }

    fn spawn(&mut self, spec: &ProcessSpec) -> io::Result<Pid> {
        let result = self.spawn_script.pop_front().unwrap_or_else(|| {
            let pid = Pid::from_raw(self.next_pid);
            self.next_pid = self.next_pid.wrapping_add(1).max(2);
            Ok(pid)
        });
        self.spawned += 1;
        self.owed.retain(|n| *n != spec.name);
        if let Ok(pid) = result {
            let tree = spec.kill_mode == KillMode::Tree;
            let containment = match self.containment {
                Some(c) if tree => c,
                _ if tree && spec.process_group => Containment::ProcessGroup,
                _ => Containment::None,
            };
            let group = spec.process_group && tree;
            let (name, born) = (spec.name.clone(), self.spawned);
            let threshold = spec.get_restart_above_memory();
            self.children.insert(
                pid,
                FakeChild { name, born, group, exited: false, draining: false, containment, memory: None, threshold },
            );
        }
        if self.record {
            self.spawns.push(SpawnRecord { spec: spec.clone(), result });
        }
        result.map_err(|e| io::Error::from_raw_os_error(e as i32))
    }

    fn signal(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        let child = self.children.get(&pid);
        let group = child.is_some_and(|c| c.group);
        let result = match (child, self.signal_errors.pop_front()) {
            (None, _) => Err(Errno::ESRCH),
            (Some(_), Some(e)) => Err(e),
            (Some(c), None) => {
                if signal == Signal::SIGKILL && c.draining {
                    let _ = self.tree_empty(pid);
                } else if signal == Signal::SIGKILL && !c.exited {
                    let _ = self.exit(pid, Exit::Signaled(Signal::SIGKILL as i32));
                }
                Ok(())
            }
        };
        if self.record {
            self.signals.push(SignalRecord { pid, signal, group, delivered: result.is_ok() });
        }
        result.map_err(|e| io::Error::from_raw_os_error(e as i32))
    }

    fn signal_leader(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        if self.children.get(&pid).is_some_and(|c| c.draining) {
            // The leader was reaped; only the rest of its tree is left.
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        let group = self.children.get_mut(&pid).map(|c| std::mem::replace(&mut c.group, false));
        let result = self.signal(pid, signal);
        if let (Some(group), Some(c)) = (group, self.children.get_mut(&pid)) {
            c.group = group;
        }
        result
    }

    fn containment(&self, pid: Pid) -> Containment {
        self.children.get(&pid).map_or(Containment::None, |c| c.containment)
    }

    fn scan_orphans(&mut self) -> io::Result<Vec<OrphanScan>> {
        let found: Vec<Orphan> = self.orphan_records.drain(..).collect();
        for o in &found {
            self.orphans.insert(o.pid, o.clone());
        }
        Ok(found.into_iter().map(OrphanScan::Alive).collect())
    }

    fn signal_orphan(&mut self, pid: Pid, signal: Signal) -> io::Result<()> {
        let known = self.orphans.contains_key(&pid);
        if self.record {
            self.signals.push(SignalRecord { pid, signal, group: true, delivered: known });
        }
        if !known {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        if signal == Signal::SIGKILL {
            let _ = self.orphan_exit(pid);
        }
        Ok(())
    }

    fn poll(&mut self, events: &mut Vec<SysEvent>) {
        if self.interrupted_polls > 0 {
            self.interrupted_polls -= 1;
            return;
        }
        for ev in self.pending.drain(..) {
            if let SysEvent::Exited { pid, .. } = ev {
                if let Some(child) = self.children.get(&pid).filter(|_| self.at_once.contains(&pid)) {
                    self.owed.push(child.name.clone());
                }
            }
            if let SysEvent::Exited { pid, .. } | SysEvent::LeaderExited { pid, .. } | SysEvent::TreeEmpty { pid } = ev
            {
                // (A leader reaped while its tree lives: no early start.)
                self.at_once.remove(&pid);
            }
            if let SysEvent::Exited { pid, .. } | SysEvent::TreeEmpty { pid } = ev {
                self.children.remove(&pid);
            }
            events.push(ev);
        }
    }
}

/// [`Supervisor::run_until_idle`] gave up: the supervisor still had work
/// after the step limit, which in a test usually means a livelock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("still busy after {steps} steps")]
#[non_exhaustive]
pub struct StepLimit {
    /// The limit that was reached.
    pub steps: usize,
}

/// Driving a supervisor through virtual time, as quinn-proto's tests drive
/// a connection: jump to the next wake-up, tick, repeat, and stop after a
/// bounded number of steps so that a livelock fails instead of hanging.
impl<S: Sys> Supervisor<S> {
    /// Moves `clock` to [`next_deadline`](Supervisor::next_deadline) and
    /// ticks there; returns that instant, or `None` (no tick) when nothing
    /// is scheduled.
    ///
    /// ```
    /// use std::time::Duration;
    /// use procsup::{Backoff, Exit, ProcessSpec, State, Supervisor};
    /// use procsup::testing::{FakeSys, VirtualClock};
    ///
    /// let mut clock = VirtualClock::new();
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("w", "worker").backoff(Backoff::fixed(Duration::from_secs(5))))?;
    /// sup.start_all(clock.now())?;
    /// assert!(sup.sys_mut().exit_by_name("w", Exit::Exited(1)));
    /// sup.tick(clock.now());
    /// assert_eq!(sup.advance_to_next_deadline(&mut clock), Some(clock.at(5.0)));
    /// assert_eq!(sup.status("w")?.state, State::Starting);
    /// # Ok::<(), procsup::Error>(())
    /// ```
    pub fn advance_to_next_deadline(&mut self, clock: &mut VirtualClock) -> Option<Instant> {
        let at = self.next_deadline()?;
        clock.set(at);
        self.tick(clock.now());
        Some(at)
    }

    /// Ticks now, then again while a tick has news (events), then at each
    /// next deadline, until a tick has no news and nothing is scheduled:
    /// every running child is left waiting for the test to end it. Returns
    /// the number of ticks, or [`StepLimit`] after `max_steps` of them.
    /// Events stay queued for the test to take.
    ///
    /// ```
    /// use std::time::Duration;
    /// use procsup::{Backoff, Exit, ProcessSpec, State, Supervisor};
    /// use procsup::testing::{FakeSys, VirtualClock};
    ///
    /// let mut clock = VirtualClock::new();
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("w", "worker").start_grace(Duration::from_secs(1)))?;
    /// sup.start_all(clock.now())?;
    /// sup.run_until_idle(&mut clock, 10).unwrap();
    /// assert_eq!(sup.status("w")?.state, State::Running);
    /// assert_eq!(clock.now(), clock.at(1.0));
    /// # Ok::<(), procsup::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`StepLimit`] when work remains after `max_steps` ticks.
    pub fn run_until_idle(&mut self, clock: &mut VirtualClock, max_steps: usize) -> Result<usize, StepLimit> {
        for step in 1..=max_steps {
            let before = self.queued_events();
            self.tick(clock.now());
            if self.queued_events() > before {
                // Something happened, and may have more to follow at once
                // (a SIGKILL's exit, reported by the next poll).
                continue;
            }
            match self.next_deadline() {
                None => return Ok(step),
                Some(at) => clock.set(at),
            }
        }
        Err(StepLimit { steps: max_steps })
    }
}
