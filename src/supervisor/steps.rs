//! The steps a host drives (reap, settle, promote, retry, escalate, and
//! `tick` running them in order), what it waits on, and the events out.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::state::State;
#[cfg(doc)]
use crate::sys::UnixSys;
use crate::sys::{Sys, SysEvent};
use crate::timers::Deadline;

use super::{Reaped, Supervisor, EVENT_CAPACITY_KEPT, OUTPUT_LINES_PER_TICK};

impl<S: Sys> Supervisor<S> {
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
            // Every command since the last poll is seen: which deaths this
            // poll may find are restarted at once (`at_once.rs`).
            self.tell_at_once();
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
                SysEvent::MemoryHigh { pid, memory, threshold } => self.on_memory_high(pid, memory, threshold, now),
                SysEvent::OomKilled { pid } => {
                    if let Some(&id) = self.pids.get(&pid) {
                        self.p_mut(id).oom_killed = true;
                    }
                }
            }
        }
        self.flush_logs();
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
    pub(super) fn settle_exit(&mut self, id: usize, now: Instant) -> bool {
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
        self.retry_group(now);
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
    pub(super) fn send_signal(&mut self, pid: Pid, signal: Signal, orphan: bool) -> bool {
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
}
