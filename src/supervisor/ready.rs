//! Readiness: when a child counts as started, and what keeps a started
//! child counted as alive (start timeout, watchdog, liveness probes,
//! reloads). Every deadline here lives in the one timer table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::event::{Event, StopReason};
use crate::readiness::{NotifyMessage, Readiness};
use crate::state::State;
use crate::sys::Sys;
use crate::timers::{later, Deadline};

use super::proc::{AfterExit, Proc};
use super::Supervisor;

/// The least time between two status events of one child (`STATUS=`).
pub(crate) const STATUS_EVERY: Duration = Duration::from_millis(100);

/// The readiness bookkeeping of a process's current child.
#[derive(Debug, Default)]
pub(super) struct Liveness {
    pub(super) ready_at: Option<Instant>,
    pub(super) reloading_since: Option<Instant>,
    pub(super) start_timeout_at: Option<Instant>,
    pub(super) watchdog_at: Option<Instant>,
    /// The next probe, or the timeout of `probe_running`.
    pub(super) probe_at: Option<Instant>,
    /// The probe waiting for its result: generation and start.
    probe_running: Option<(u64, Instant)>,
    /// Never reset, so a result for an earlier child's probe is stale too.
    generation: u64,
    pub(super) probe_failures: u32,
    pub(super) status_text: Option<String>,
    /// When the last `Event::Status` was emitted.
    status_sent_at: Option<Instant>,
    /// When `status_text`, newer than the last event, is due as one.
    status_at: Option<Instant>,
    pub(super) errno: Option<Errno>,
    /// Stopped by a start timeout, the watchdog or a probe: the exit is a
    /// failure whatever its code.
    pub(super) failed: bool,
    /// Its tree went above `restart_above_memory`: its restart is under
    /// way (seen once per child), and its exit is no success whatever its
    /// code.
    pub(super) over_memory: bool,
    /// A captured line matched `Readiness::OutputLine` (applied by
    /// `reap_processes`, which knows `now`).
    line_matched: bool,
    /// The old child's record while its replacement starts (rolling
    /// restart): the status shows it, and it comes back if the
    /// replacement fails.
    pub(super) old: Option<Box<Liveness>>,
}

impl Liveness {
    /// The bookkeeping for a new child: only the probe generation carries on.
    fn fresh(&self) -> Liveness {
        Liveness { generation: self.generation, ..Liveness::default() }
    }
}

impl Proc {
    /// Notes a captured line of the current child that makes it ready.
    pub(super) fn note_ready_line(&mut self, line: &[u8]) {
        if let Readiness::OutputLine(m) = &self.spec.ready {
            if self.state == State::Starting && !self.live.line_matched && m.matches(line) {
                self.live.line_matched = true;
            }
        }
    }
}

impl<S: Sys> Supervisor<S> {
    // ----- by name -------------------------------------------------------

    /// The host's own check found the process ready
    /// ([`Readiness::Host`], though any source accepts it): a `Starting`
    /// child becomes `Running` ([`Event::Ready`], then `Running`), and a
    /// reloading one has finished its reload. Returns whether it changed
    /// anything (false for a child already ready, or none).
    ///
    /// ```
    /// use std::time::Instant;
    /// use procsup::{ProcessSpec, Readiness, State, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("web", "server").ready(Readiness::Host)).unwrap();
    /// let now = Instant::now();
    /// sup.start_process("web", now).unwrap();
    /// assert_eq!(sup.status("web").unwrap().state, State::Starting);
    /// assert!(sup.mark_ready("web", now).unwrap());
    /// assert_eq!(sup.status("web").unwrap().state, State::Running);
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownProcess`].
    pub fn mark_ready(&mut self, name: &str, now: Instant) -> Result<bool> {
        let now = self.observe(now);
        let id = self.id(name)?;
        Ok(self.ready_signal(id, now))
    }

    /// The answer to the [`Event::ProbeDue`] of `generation`: `ok` or not.
    /// A failure counts towards the probe's failure threshold; success
    /// resets the count. Returns false, changing nothing, for a generation
    /// that is not the probe awaiting an answer (an older one, one that
    /// timed out, one of an earlier child).
    ///
    /// ```
    /// use std::time::Duration;
    /// use procsup::{Event, Probe, ProcessSpec, Readiness, Supervisor};
    /// use procsup::testing::{FakeSys, VirtualClock};
    /// let mut clock = VirtualClock::new();
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// let probe = Probe::every(Duration::from_secs(10));
    /// sup.add_process(ProcessSpec::new("web", "server").ready(Readiness::Host).probe(probe)).unwrap();
    /// sup.start_process("web", clock.now()).unwrap();
    /// sup.mark_ready("web", clock.now()).unwrap();
    /// sup.tick(clock.now()); // the first probe is due at once (no initial delay)
    /// let generation = sup
    ///     .drain_events()
    ///     .find_map(|e| match e {
    ///         Event::ProbeDue { generation, .. } => Some(generation),
    ///         _ => None,
    ///     })
    ///     .unwrap();
    /// // ... the host runs its check (an HTTP request, say), then:
    /// clock.advance(Duration::from_millis(30));
    /// assert!(sup.probe_result("web", generation, true, clock.now()).unwrap());
    /// assert!(!sup.probe_result("web", generation, true, clock.now()).unwrap(), "answered already");
    /// assert_eq!(sup.next_deadline(), Some(clock.at(10.0)));
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownProcess`].
    pub fn probe_result(&mut self, name: &str, generation: u64, ok: bool, now: Instant) -> Result<bool> {
        let now = self.observe(now);
        let id = self.id(name)?;
        let p = self.p(id);
        let Some((running, started)) = p.live.probe_running.filter(|&(g, _)| g == generation) else {
            return Ok(false);
        };
        if p.state != State::Running {
            return Ok(false);
        }
        self.p_mut(id).live.probe_running = None;
        if ok {
            self.p_mut(id).live.probe_failures = 0;
        } else if self.probe_failed(id, running, false, now) {
            return Ok(true);
        }
        let period = self.p(id).spec.probe.map_or(Duration::ZERO, |p| p.period);
        let next = Some(later(started, period).max(now));
        self.set_live_timer(Deadline::Probe(id), next);
        Ok(true)
    }

    /// Sends `signal` to the process's child itself (not its group),
    /// through its pidfd where there is one. During a rolling restart that
    /// is the old child, which serves until its replacement is ready (the
    /// status's `pid`).
    ///
    /// # Errors
    /// [`Error::UnknownProcess`]; [`Error::NotRunning`] without a child;
    /// [`Error::Signal`] when the OS refuses.
    pub fn signal_process(&mut self, name: &str, signal: Signal) -> Result<()> {
        let id = self.id(name)?;
        let pid = self.serving_pid(id).ok_or_else(|| Error::NotRunning(name.to_owned()))?;
        self.sys.signal_leader(pid, signal).map_err(|source| Error::Signal { name: name.to_owned(), source })
    }

    /// Asks the process's child (the serving one, as for
    /// [`signal_process`](Supervisor::signal_process)) to reload: sends the spec's
    /// [`reload_signal`](crate::ProcessSpec::reload_signal) (SIGHUP by
    /// default) to the child itself. A ready [`Readiness::Notify`] child
    /// is then reloading ([`Event::Reloading`]) until it sends `READY=1`
    /// again, within its [`start_timeout`](crate::ProcessSpec::start_timeout)
    /// if it has one (past it: [`Event::StartTimeout`], a failure).
    ///
    /// ```
    /// use std::time::Instant;
    /// use procsup::{ProcessSpec, Readiness, Signal, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("db", "postgres").ready(Readiness::Notify)).unwrap();
    /// let now = Instant::now();
    /// sup.start_process("db", now).unwrap();
    /// let pid = sup.status("db").unwrap().pid.unwrap();
    /// assert!(sup.sys_mut().notify(pid, b"READY=1"));
    /// sup.tick(now);
    /// sup.reload_process("db", now).unwrap();
    /// assert_eq!(sup.sys().signals_to(pid), [Signal::SIGHUP]);
    /// assert!(sup.status("db").unwrap().reloading);
    /// assert!(sup.sys_mut().notify(pid, b"READY=1"));
    /// sup.tick(now);
    /// assert!(!sup.status("db").unwrap().reloading);
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownProcess`]; [`Error::NotRunning`] unless `Starting`
    /// or `Running`; [`Error::Signal`].
    pub fn reload_process(&mut self, name: &str, now: Instant) -> Result<()> {
        let now = self.observe(now);
        let id = self.id(name)?;
        let p = self.p(id);
        let (Some(pid), State::Starting | State::Running) = (self.serving_pid(id), p.state) else {
            return Err(Error::NotRunning(name.to_owned()));
        };
        let signal = p.spec.reload_signal;
        self.sys.signal_leader(pid, signal).map_err(|source| Error::Signal { name: name.to_owned(), source })?;
        let p = self.p(id);
        let tracked = p.pid == Some(pid) && p.state == State::Running && p.live.reloading_since.is_none();
        if p.spec.ready == Readiness::Notify && tracked {
            self.begin_reload(id, pid, now);
        }
        Ok(())
    }

    // ----- the supervisor's side ------------------------------------------

    /// The child that serves: the old one while its replacement starts.
    fn serving_pid(&self, id: usize) -> Option<Pid> {
        let p = self.p(id);
        p.retiring.as_ref().filter(|r| r.serves()).map(|r| r.pid).or(p.pid)
    }

    /// A child was just spawned for slot `id`: a fresh readiness record,
    /// `Starting` with its grace or start timeout, or `Running` at once
    /// for a zero grace.
    pub(super) fn begin_start(&mut self, id: usize, pid: Pid, now: Instant) {
        self.disarm(id);
        let p = self.p_mut(id);
        let prev = std::mem::take(&mut p.live);
        p.live = prev.fresh();
        if p.retiring.as_ref().is_some_and(|r| r.serves()) {
            // Its deadlines are off (it is on its way out either way); its
            // readiness and status text stay on show.
            p.live.old = Some(Box::new(Liveness { old: None, ..prev }));
        }
        match p.spec.ready {
            Readiness::Grace(_) if p.spec.start_grace.is_zero() => {
                p.state = State::Running;
                p.reset_streak();
                p.live.ready_at = Some(now);
                p.live.old = None; // a roll retires the old child at once
                let name = p.name.clone();
                self.emit(Event::Running { name, pid });
                self.arm_alive(id, now);
                return;
            }
            Readiness::Grace(_) => {
                p.state = State::Starting;
                let grace = p.spec.start_grace;
                self.set_deadline(id, Some(later(now, grace)));
            }
            _ => p.state = State::Starting,
        }
        let timeout = self.p(id).spec.start_timeout.map(|t| later(now, t));
        self.set_live_timer(Deadline::StartTimeout(id), timeout);
    }

    /// Slot `id`'s `Starting` child became ready at `now`: `Running`, the
    /// streak reset, the watchdog and probes armed, and a child it replaces
    /// in a rolling restart retired. `signalled`: a readiness source fired
    /// (emit `Ready`), rather than the grace running out. The caller
    /// advances the roll.
    pub(super) fn become_ready(&mut self, id: usize, now: Instant, signalled: bool) {
        self.set_deadline(id, None);
        self.set_live_timer(Deadline::StartTimeout(id), None);
        let p = self.p_mut(id);
        p.state = State::Running;
        p.reset_streak();
        p.live.ready_at = Some(now);
        p.live.old = None;
        let (name, pid, started) = (p.name.clone(), p.pid, p.started_at);
        if let Some(pid) = pid {
            if signalled {
                let after = started.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                self.emit(Event::Ready { name: name.clone(), pid, after });
            }
            self.emit(Event::Running { name, pid });
        }
        self.arm_alive(id, now);
        self.retire_old(id, now);
    }

    /// A readiness source of slot `id` fired: a `Starting` child becomes
    /// ready, a reloading one is done. Returns whether anything changed.
    fn ready_signal(&mut self, id: usize, now: Instant) -> bool {
        let p = self.p(id);
        match (p.state, p.pid, p.live.reloading_since) {
            (State::Starting, Some(_), _) => {
                self.become_ready(id, now, true);
                self.advance_roll(now);
                true
            }
            (State::Running, Some(pid), Some(since)) => {
                self.set_live_timer(Deadline::StartTimeout(id), None);
                let p = self.p_mut(id);
                p.live.reloading_since = None;
                let name = p.name.clone();
                self.emit(Event::Ready { name, pid, after: now.saturating_duration_since(since) });
                true
            }
            _ => false,
        }
    }

    /// A replacement failed and the old child serves on: its record is the
    /// process's again, its watchdog and probes re-armed from now.
    pub(super) fn restore_liveness(&mut self, id: usize) {
        self.disarm(id);
        let p = self.p_mut(id);
        let Some(old) = p.live.old.take() else { return };
        let generation = p.live.generation;
        p.live = Liveness { generation, ..*old };
        if p.live.ready_at.is_some() {
            let now = self.last_now.expect("a roll ran, so a step has seen `now`");
            self.arm_alive(id, now);
        }
    }

    /// The watchdog and the first probe of a child that just became ready.
    fn arm_alive(&mut self, id: usize, now: Instant) {
        let spec = &self.p(id).spec;
        let watchdog = spec.watchdog.map(|w| later(now, w));
        let probe = spec.probe.map(|p| later(now, p.initial_delay));
        self.set_live_timer(Deadline::Watchdog(id), watchdog);
        self.set_live_timer(Deadline::Probe(id), probe);
    }

    fn begin_reload(&mut self, id: usize, pid: Pid, now: Instant) {
        let p = self.p_mut(id);
        p.live.reloading_since = Some(now);
        let (name, timeout) = (p.name.clone(), p.spec.start_timeout);
        self.set_live_timer(Deadline::StartTimeout(id), timeout.map(|t| later(now, t)));
        self.emit(Event::Reloading { name, pid });
    }

    /// Every readiness deadline of slot `id` cancelled (its child is gone,
    /// stopping, or replaced).
    pub(super) fn disarm(&mut self, id: usize) {
        if let (Some(_), Some(pid)) = (self.p(id).live.status_at, self.p(id).pid) {
            let now = self.last_now.expect("a status is due, so a step has seen `now`");
            self.flush_status(id, pid, now);
        }
        for key in [Deadline::StartTimeout(id), Deadline::Watchdog(id), Deadline::Probe(id), Deadline::Status(id)] {
            self.set_live_timer(key, None);
        }
        self.p_mut(id).live.probe_running = None;
    }

    fn set_live_timer(&mut self, key: Deadline, new: Option<Instant>) {
        let (Deadline::StartTimeout(id) | Deadline::Watchdog(id) | Deadline::Probe(id) | Deadline::Status(id)) = key
        else {
            unreachable!("set_live_timer is only called with readiness keys");
        };
        let live = &mut self.p_mut(id).live;
        let slot = match key {
            Deadline::StartTimeout(_) => &mut live.start_timeout_at,
            Deadline::Watchdog(_) => &mut live.watchdog_at,
            Deadline::Status(_) => &mut live.status_at,
            _ => &mut live.probe_at,
        };
        let old = std::mem::replace(slot, new);
        self.timers.reset(key, old, new);
    }

    /// Whether the exit of slot `id`'s child ends a started run (the streak
    /// starts over) rather than a failed start.
    pub(super) fn counted_as_started(&self, id: usize, now: Instant) -> bool {
        let p = self.p(id);
        if p.live.ready_at.is_some() || p.state == State::Running {
            return true;
        }
        // A child reaped in the same tick its grace ran out did live
        // through it: uptime decides, not whether promote_running ran first.
        let lived = p.started_at.map(|t| now.saturating_duration_since(t));
        !p.live.failed && matches!(p.spec.ready, Readiness::Grace(_)) && lived.is_some_and(|u| u >= p.spec.start_grace)
    }

    /// Start timeouts, watchdogs and probes that are due. Part of
    /// [`tick`](Supervisor::tick), after the kills and before promotions.
    pub(super) fn check_liveness(&mut self, now: Instant) {
        for key in self.timers.due(now) {
            match key {
                Deadline::StartTimeout(id) => {
                    self.set_live_timer(key, None);
                    let p = self.p(id);
                    let waiting = p.state == State::Starting || p.live.reloading_since.is_some();
                    if let (Some(pid), true, true) = (p.pid, waiting, p.state.has_child()) {
                        let name = p.name.clone();
                        self.emit(Event::StartTimeout { name, pid });
                        self.fail_stop(id, now, StopReason::Failed);
                    }
                }
                Deadline::Watchdog(id) => {
                    self.set_live_timer(key, None);
                    self.watchdog_fired(id, false, now);
                }
                Deadline::Probe(id) => self.probe_due(id, now),
                Deadline::Status(id) => match self.p(id).pid {
                    Some(pid) => self.emit_status(id, pid, now),
                    None => self.set_live_timer(key, None),
                },
                _ => {}
            }
        }
    }

    fn watchdog_fired(&mut self, id: usize, triggered: bool, now: Instant) {
        let p = self.p(id);
        if let (Some(pid), State::Running) = (p.pid, p.state) {
            let name = p.name.clone();
            self.emit(Event::Watchdog { name, pid, triggered });
            self.fail_stop(id, now, StopReason::Failed);
        }
    }

    fn probe_due(&mut self, id: usize, now: Instant) {
        self.set_live_timer(Deadline::Probe(id), None);
        let p = self.p_mut(id);
        let (Some(probe), State::Running) = (p.spec.probe, p.state) else { return };
        match p.live.probe_running.take() {
            Some((generation, started)) => {
                if !self.probe_failed(id, generation, true, now) {
                    let next = later(started, probe.period);
                    if next <= now {
                        // Due already: start it now, so no deadline this
                        // tick has passed outlives it.
                        return self.probe_due(id, now);
                    }
                    self.set_live_timer(Deadline::Probe(id), Some(next));
                }
            }
            None => {
                p.live.generation += 1;
                let generation = p.live.generation;
                p.live.probe_running = Some((generation, now));
                let name = p.name.clone();
                self.set_live_timer(Deadline::Probe(id), Some(later(now, probe.timeout)));
                self.emit(Event::ProbeDue { name, generation });
            }
        }
    }

    /// Counts a probe failure; at the threshold the child is stopped.
    /// Returns whether it was.
    fn probe_failed(&mut self, id: usize, generation: u64, timed_out: bool, now: Instant) -> bool {
        let p = self.p_mut(id);
        p.live.probe_failures = p.live.probe_failures.saturating_add(1);
        let failures = p.live.probe_failures;
        let threshold = p.spec.probe.map_or(u32::MAX, |p| p.failure_threshold);
        let (name, pid) = (p.name.clone(), p.pid.expect("probes run only for Running, which has a pid"));
        self.emit(Event::ProbeFailed { name, pid, generation, failures, timed_out });
        if failures >= threshold {
            self.fail_stop(id, now, StopReason::Failed);
            return true;
        }
        false
    }

    /// Stops slot `id`'s child as a failure: the stop signal and the kill
    /// deadline as for any stop, but not a manual stop, so the restart
    /// policy applies to the exit, which is no success. With
    /// [`StopReason::Failed`] (or a child still `Starting`) it is a failed
    /// start; with [`StopReason::Memory`] a `Running` child's exit ends a
    /// started run.
    pub(super) fn fail_stop(&mut self, id: usize, now: Instant, reason: StopReason) {
        self.disarm(id);
        let p = self.p_mut(id);
        let pid = p.pid.expect("fail_stop is called for a child");
        if reason == StopReason::Memory {
            p.live.over_memory = true;
        }
        p.live.failed |= reason != StopReason::Memory || p.memory_early(now);
        p.live.reloading_since = None;
        p.state = State::Stopping;
        p.after_exit = AfterExit::Policy;
        let (name, signal) = (p.name.clone(), p.spec.stop_signal);
        let kill_at = later(now, p.spec.stop_timeout);
        self.set_deadline(id, Some(kill_at));
        self.send_signal(pid, signal, false);
        self.emit(Event::Stopping { name, pid, signal, kill_at, reason });
    }

    /// A readiness message from child `pid`.
    pub(super) fn on_notify(&mut self, pid: Pid, msg: NotifyMessage, now: Instant) {
        let Some(&id) = self.pids.get(&pid) else { return };
        let p = self.p_mut(id);
        if p.pid != Some(pid) || !p.state.has_child() {
            // The retiring child of a rolling restart: it serves out its
            // time and says nothing that matters.
            return;
        }
        let name: Arc<str> = p.name.clone();
        if msg.mainpid {
            log::debug!("procsup: {name} sent MAINPID=, which is ignored: only the spawned child is supervised");
        }
        if let Some(e) = msg.errno {
            p.live.errno = Some(Errno::from_raw(e));
        }
        if let Some(text) = msg.status {
            self.on_status(id, pid, text, now);
        }
        if let Some(usec) = msg.extend_timeout_usec {
            let p = self.p(id);
            if let Some(old) = p.live.start_timeout_at {
                let extended = later(now, Duration::from_micros(usec)).max(old);
                self.set_live_timer(Deadline::StartTimeout(id), Some(extended));
            }
        }
        let running = self.p(id).state == State::Running;
        if msg.reloading && running && self.p(id).live.reloading_since.is_none() {
            self.begin_reload(id, pid, now);
        }
        let sourced = matches!(self.p(id).spec.ready, Readiness::Notify | Readiness::Fd(_));
        if msg.ready && sourced && !msg.reloading {
            self.ready_signal(id, now);
        }
        let p = self.p(id);
        if msg.watchdog_ping && p.state == State::Running && p.live.watchdog_at.is_some() {
            let next = p.spec.watchdog.map(|w| later(now, w));
            self.set_live_timer(Deadline::Watchdog(id), next);
        }
        if msg.watchdog_trigger {
            self.watchdog_fired(id, true, now);
        }
        if msg.stopping && self.p(id).state.has_child() {
            // It is on its way out of its own accord: no more liveness
            // checks; its exit is judged by the policy as usual.
            self.disarm(id);
            self.p_mut(id).live.reloading_since = None;
        }
    }

    /// A `STATUS=` text: the status shows it at once; the event follows at
    /// most once per [`STATUS_EVERY`], so a flood costs the host one event
    /// per interval, and the last text of a burst always comes (when its
    /// time is due, or before the child's exit).
    fn on_status(&mut self, id: usize, pid: Pid, text: String, now: Instant) {
        let live = &mut self.p_mut(id).live;
        if live.status_text.as_deref() == Some(text.as_str()) {
            return;
        }
        live.status_text = Some(text);
        if live.status_at.is_some() {
            return;
        }
        match live.status_sent_at.map(|t| later(t, STATUS_EVERY)).filter(|&due| due > now) {
            Some(due) => self.set_live_timer(Deadline::Status(id), Some(due)),
            None => self.emit_status(id, pid, now),
        }
    }

    /// A status text still waiting for its event is emitted now (the child
    /// is going: its last word comes before its end).
    pub(super) fn flush_status(&mut self, id: usize, pid: Pid, now: Instant) {
        if self.p(id).live.status_at.is_some() {
            self.emit_status(id, pid, now);
        }
    }

    /// Emits slot `id`'s current status text as an event.
    fn emit_status(&mut self, id: usize, pid: Pid, now: Instant) {
        self.set_live_timer(Deadline::Status(id), None);
        let p = self.p_mut(id);
        p.live.status_sent_at = Some(now);
        if let Some(text) = p.live.status_text.clone() {
            let name = p.name.clone();
            self.emit(Event::Status { name, pid, text });
        }
    }

    /// A captured line of `pid` may have made it ready.
    pub(super) fn after_output(&mut self, pid: Pid, now: Instant) {
        let Some(&id) = self.pids.get(&pid) else { return };
        let p = self.p_mut(id);
        if p.pid == Some(pid) && std::mem::take(&mut p.live.line_matched) {
            self.ready_signal(id, now);
        }
    }
}
