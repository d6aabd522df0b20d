//! The state machine's transitions.

use std::io;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::event::{Event, FatalReason, StopReason, Stream};
use crate::spec::RestartPolicy;
use crate::state::{Cause, Exit, State};
use crate::sys::Sys;
use crate::timers::later;

use super::orphan::ORPHAN_KILL_GRACE;
use super::proc::AfterExit;
use super::{Reaped, Supervisor};

/// How many captured lines an exit event carries as crash context.
const CRASH_CONTEXT_LINES: usize = 5;

impl<S: Sys> Supervisor<S> {
    /// A start the host asked for. A process being removed is never
    /// started again.
    pub(super) fn start_id(&mut self, id: usize, now: Instant) {
        let p = self.p_mut(id);
        if p.removing {
            return;
        }
        match p.state {
            State::Waiting if p.deadline.is_some() => {
                // Added to a started supervisor, not yet ticked: now.
                p.state = State::Stopped;
                self.set_deadline(id, None);
                self.fresh_start(id, now);
            }
            State::Starting | State::Running | State::Waiting => {}
            State::Stopping => {
                p.after_exit = AfterExit::Start;
                p.manual_stop = false;
            }
            State::Stopped | State::Exited | State::Fatal | State::Backoff => self.fresh_start(id, now),
        }
    }

    /// A start from `Stopped`: a fresh failure streak and restart window,
    /// no restart counted; it waits for an orphan of the same name first.
    fn fresh_start(&mut self, id: usize, now: Instant) {
        let p = self.p_mut(id);
        p.streak = 0;
        p.window.clear();
        p.manual_stop = false;
        let name = p.name.clone();
        match self.orphans.values().find(|o| o.name == name).map(|o| o.kill_at) {
            Some(kill_at) => self.await_orphan(id, now, later(kill_at.unwrap_or(now), ORPHAN_KILL_GRACE)),
            None if self.gate(id) => {
                let _ = self.spawn_id(id, now);
            }
            None => {}
        }
    }

    pub(super) fn stop_id(&mut self, id: usize, now: Instant, reason: StopReason) {
        self.stop_retiring(id, now, reason);
        let p = self.p_mut(id);
        p.manual_stop = true;
        match p.state {
            State::Starting | State::Running => {
                p.after_exit = AfterExit::Policy;
                p.state = State::Stopping;
                self.disarm(id);
                let p = self.p_mut(id);
                let (name, signal, timeout) = (p.name.clone(), p.spec.stop_signal, p.spec.stop_timeout);
                let pid = p.pid.expect("Starting and Running always have a pid");
                let kill_at = later(now, timeout);
                self.set_deadline(id, Some(kill_at));
                // Undelivered or not, the kill deadline stands.
                self.send_signal(pid, signal, false);
                self.emit(Event::Stopping { name, pid, signal, kill_at, reason });
            }
            State::Stopping => p.after_exit = AfterExit::Policy,
            State::Backoff | State::Waiting => {
                p.state = State::Stopped;
                p.awaits_orphan = false;
                p.waiting_on = None;
                p.held = false;
                let name = p.name.clone();
                self.set_deadline(id, None);
                self.emit(Event::Stopped { name });
            }
            State::Stopped | State::Exited | State::Fatal => {}
        }
    }

    /// Spawns the child of slot `id` (which has none). Success: `Starting`
    /// (or `Running` with no start grace). Failure: `Backoff` or `Fatal`.
    pub(super) fn spawn_id(&mut self, id: usize, now: Instant) -> io::Result<Pid> {
        self.set_deadline(id, None);
        let result = self.spawn_child(id, now);
        if let Err(e) = &result {
            let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
            let p = self.p_mut(id);
            p.pid = None;
            let (fatal_exec, policy) = (p.spec.fatal_exec_errors, p.spec.restart);
            if fatal_exec && is_exec_error(errno) {
                self.fatal(id, FatalReason::ExecError(errno));
            } else if policy == RestartPolicy::Never {
                self.fatal(id, FatalReason::SpawnFailedNoRestart(errno));
            } else {
                self.schedule_restart(id, now, false);
            }
        }
        result
    }

    /// Spawns a child for slot `id` and makes it the process's child:
    /// `Starting` (or `Running` with no start grace). On failure records
    /// the error and emits `SpawnFailed`, and changes nothing else.
    pub(super) fn spawn_child(&mut self, id: usize, now: Instant) -> io::Result<Pid> {
        self.seq += 1;
        let seq = self.seq;
        let spec = &self.procs[id].as_ref().expect("spawn_child is called on live slots").spec;
        let result = self.sys.spawn(spec);
        let p = self.p_mut(id);
        p.after_exit = AfterExit::Policy;
        match result {
            Ok(pid) => {
                let since_last_spawn = p.started_at.map(|t| now.saturating_duration_since(t));
                p.pid = Some(pid);
                p.started_at = Some(now);
                p.start_seq = seq;
                p.child_version = p.spec_version;
                p.awaits_orphan = false;
                p.last_spawn_error = None;
                p.unsettled = false;
                p.draining = false;
                p.exited_at = None;
                p.tail.clear();
                if p.captures() && p.lines.is_none() {
                    p.lines = Some(Box::default());
                }
                let (name, restart_count) = (p.name.clone(), p.restart_count);
                let containment = self.sys.containment(pid);
                self.p_mut(id).containment = Some(containment);
                self.pids.insert(pid, id);
                // Its successor may be made ready now (`UnixSys::standby`).
                let p = self.procs[id].as_ref().expect("spawn_child is called on live slots");
                if p.spec.restart != RestartPolicy::Never {
                    self.sys.expect_respawn(&p.spec, since_last_spawn);
                }
                self.emit(Event::Spawned { name, pid, restart_count });
                self.begin_start(id, pid, now);
                Ok(pid)
            }
            Err(e) => {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
                p.last_spawn_error = Some(errno);
                let name = p.name.clone();
                self.emit(Event::SpawnFailed { name, errno, message: e.to_string() });
                Err(e)
            }
        }
    }

    /// Splits captured bytes into line events, at most `max_lines` of them
    /// (see [`LineBuffer::push_some`](crate::output::LineBuffer::push_some)).
    /// Returns how many bytes it took and how many lines it emitted.
    pub(super) fn on_output(&mut self, pid: Pid, stream: Stream, data: &[u8], max_lines: usize) -> (usize, usize) {
        let Some(&id) = self.pids.get(&pid) else { return (data.len(), 0) };
        let p = self.p_mut(id);
        let retiring = p.retiring.as_mut().filter(|r| r.pid == pid);
        let from_retiring = retiring.is_some();
        let lines = match retiring {
            Some(r) => r.lines.as_mut(),
            None => p.lines.as_mut(),
        };
        let Some(lines) = lines else { return (data.len(), 0) };
        let mut out = Vec::new();
        let used = lines[stream as usize].push_some(data, max_lines, &mut |l| out.push(l.to_vec()));
        let emitted = out.len();
        self.deliver(id, pid, stream, out, from_retiring);
        (used, emitted)
    }

    /// Whole lines of `stream` of a child of slot `id` (its retiring one, or
    /// its current one, whose lines also feed readiness and the crash
    /// context): to its log file, or to events.
    pub(super) fn deliver(&mut self, id: usize, pid: Pid, stream: Stream, lines: Vec<Vec<u8>>, from_retiring: bool) {
        if let Some(path) = self.log_path(id, stream) {
            if !from_retiring {
                let p = self.p_mut(id);
                for line in &lines {
                    p.note_ready_line(line);
                }
                let skip = lines.len().saturating_sub(CRASH_CONTEXT_LINES);
                for line in &lines[skip..] {
                    if p.tail.len() == CRASH_CONTEXT_LINES {
                        p.tail.pop_front();
                    }
                    p.tail.push_back(line.clone());
                }
            }
            self.write_log(id, &path, &lines);
            return;
        }
        for line in lines {
            if from_retiring {
                let name = self.p(id).name.clone();
                self.emit(Event::Output { name, pid, stream, line });
            } else {
                self.emit_line(id, pid, stream, line);
            }
        }
    }

    /// One captured line: an event, and the crash context of the process.
    fn emit_line(&mut self, id: usize, pid: Pid, stream: Stream, line: Vec<u8>) {
        let p = self.p_mut(id);
        p.note_ready_line(&line);
        if p.tail.len() == CRASH_CONTEXT_LINES {
            p.tail.pop_front();
        }
        p.tail.push_back(line.clone());
        let name = p.name.clone();
        self.emit(Event::Output { name, pid, stream, line });
    }

    /// Records an exit; the transition is `handle_exit`'s.
    pub(super) fn on_exit(&mut self, pid: Pid, exit: Exit, now: Instant) -> Option<(usize, Reaped)> {
        let Some(id) = self.pids.remove(&pid) else {
            log::warn!("procsup: the OS layer reported pid {pid}, which is not ours");
            return None;
        };
        if self.on_retired(id, pid, exit) {
            return None;
        }
        let p = self.p_mut(id);
        p.pid = None;
        p.unsettled = true;
        Some((id, self.record_exit(id, pid, exit, now)))
    }

    /// The leader `pid` of slot `id` ended: its exit is counted, its
    /// captured lines flushed and `Exited` emitted. What follows is the
    /// caller's.
    pub(super) fn record_exit(&mut self, id: usize, pid: Pid, exit: Exit, now: Instant) -> Reaped {
        self.flush_status(id, pid, now);
        let p = self.p_mut(id);
        p.last_exit = Some(exit);
        let cause = std::mem::take(&mut p.oom_killed).then_some(Cause::OomKilled);
        p.last_cause = cause;
        // An OOM kill is a failure whatever the code (see `settle`).
        p.live.failed |= cause.is_some();
        p.memory_failed = p.live.over_memory && p.live.failed;
        p.exit_count = p.exit_count.saturating_add(1);
        let name = p.name.clone();
        let uptime = p.started_at.map_or_else(Default::default, |t| now.saturating_duration_since(t));
        let restart_count = p.restart_count;
        let mut tail = [Vec::new(), Vec::new()];
        if let Some(lines) = p.lines.as_mut() {
            for (i, last) in tail.iter_mut().enumerate() {
                lines[i].flush(&mut |l| last.push(l.to_vec()));
            }
        }
        for (stream, last) in [Stream::Stdout, Stream::Stderr].into_iter().zip(tail) {
            if !last.is_empty() {
                self.deliver(id, pid, stream, last, false);
            }
        }
        // The last lines are on disk before the exit is told.
        self.flush_logs();
        let last_output = std::mem::take(&mut self.p_mut(id).tail).into();
        self.emit(Event::Exited { name: name.clone(), pid, exit, cause, uptime, restart_count, last_output });
        Reaped { name, pid, exit }
    }

    /// The transition after a reaped exit.
    pub(super) fn settle(&mut self, id: usize, now: Instant) {
        self.set_deadline(id, None);
        let shutting_down = self.shutting_down;
        self.disarm(id);
        // A drained tree's uptime ends with its leader.
        let end = self.p_mut(id).exited_at.take().unwrap_or(now);
        let was_running = self.counted_as_started(id, end);
        if self.replacement_failed(id, was_running, now) {
            return;
        }
        if was_running && self.p(id).retiring.is_some() {
            // It lived through its grace in the tick it died: it counted as
            // started, so the old child retires as planned.
            self.retire_old(id, now);
            self.advance_roll(now);
        }
        let p = self.p_mut(id);
        if p.removing {
            p.state = State::Stopped;
            let (name, draining) = (p.name.clone(), p.retiring.is_some());
            self.emit(Event::Stopped { name });
            // With a retiring child still draining, it is forgotten once
            // that child is reaped too.
            if !draining {
                self.forget(id);
            }
            return;
        }
        let p = self.p_mut(id);
        match p.after_exit {
            AfterExit::Start if !shutting_down => self.fresh_start(id, now),
            AfterExit::Restart if !shutting_down => {
                p.streak = 0;
                p.manual_stop = false;
                p.restart_count = p.restart_count.saturating_add(1);
                if self.gate(id) {
                    let _ = self.spawn_id(id, now);
                }
            }
            AfterExit::Hold if !shutting_down => self.hold(id),
            AfterExit::GiveUp if !shutting_down => {
                let (max_restarts, period) = p.spec.group_intensity.unwrap_or_default();
                p.after_exit = AfterExit::Policy;
                self.fatal(id, FatalReason::GroupIntensity { max_restarts, period });
            }
            AfterExit::Wait if !shutting_down => {
                p.after_exit = AfterExit::Policy;
                if self.gate(id) {
                    let _ = self.spawn_id(id, now);
                }
            }
            _ if p.manual_stop || shutting_down => {
                p.state = State::Stopped;
                p.after_exit = AfterExit::Policy;
                let name = p.name.clone();
                self.emit(Event::Stopped { name });
            }
            _ => {
                let success = !p.live.failed
                    && !p.live.over_memory
                    && matches!(p.last_exit, Some(Exit::Exited(c)) if p.spec.is_success(c));
                let restart = match p.spec.restart {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => !success,
                    RestartPolicy::Never => false,
                };
                if restart && self.group_crash(id, now, was_running) {
                    // The strategy restarts it with the rest of its group.
                    return;
                }
                // It ended unasked (no stop, no shutdown: those are caught
                // above, where the tiers' order wins): whatever needs it
                // Ready stops now and waits for it again.
                self.stop_ready_dependents(id, now, AfterExit::Wait);
                if restart {
                    // An OOM kill is a failed start even after Running: a
                    // child that outgrows its memory backs off, and gives up.
                    // So is a memory stop soon after the start.
                    let p = self.p(id);
                    let after_running = was_running && p.last_cause.is_none() && !p.memory_failed;
                    self.schedule_restart(id, now, after_running);
                } else {
                    self.p_mut(id).state = State::Exited;
                    let name = self.p(id).name.clone();
                    self.sys.forget_respawn(&name);
                }
            }
        }
    }

    /// `Backoff` with the delay the spec's backoff gives, or `Fatal` when a
    /// give-up limit is reached. `after_running`: the child had reached
    /// `Running`, so the streak starts over.
    pub(super) fn schedule_restart(&mut self, id: usize, now: Instant, after_running: bool) {
        let delay = match self.restart_verdict(id, now, after_running) {
            Ok(delay) => delay,
            Err(reason) => return self.fatal(id, reason),
        };
        let retry_at = later(now, delay);
        let p = self.p_mut(id);
        p.state = State::Backoff;
        let (name, failure_streak) = (p.name.clone(), p.streak);
        self.set_deadline(id, Some(retry_at));
        self.emit(Event::Backoff { name, delay, retry_at, failure_streak });
    }

    /// A crash its policy restarts, against the process's own limits: the
    /// failure streak (`give_up_after`) and restart window grow, and the
    /// result is the backoff delay, or why it gives up. Every strategy
    /// asks this of the process that died.
    pub(super) fn restart_verdict(
        &mut self,
        id: usize,
        now: Instant,
        after_running: bool,
    ) -> Result<Duration, FatalReason> {
        // Marked through `p_mut` (the window and streak change), then
        // borrowed beside the RNG.
        self.p_mut(id);
        let p = self.procs[id].as_mut().expect("restart_verdict is called on live slots");
        let prior = if after_running { 0 } else { p.streak };
        p.streak = if after_running { 0 } else { p.streak.saturating_add(1) };
        if let Some(limit) = p.spec.give_up_after {
            if p.streak >= limit {
                return Err(FatalReason::GaveUp { failures: p.streak });
            }
        }
        if let Some((max_restarts, period)) = p.spec.restart_window {
            while p.window.front().is_some_and(|&t| now.saturating_duration_since(t) >= period) {
                p.window.pop_front();
            }
            if p.window.len() >= max_restarts as usize {
                return Err(FatalReason::TooManyRestarts { max_restarts, period });
            }
            p.window.push_back(now);
        }
        Ok(p.spec.backoff.delay(prior, after_running, &mut self.rng))
    }

    pub(super) fn fatal(&mut self, id: usize, reason: FatalReason) {
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
