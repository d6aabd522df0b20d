//! OTP restart strategies over the whole supervisor: which processes a
//! crash stops and starts again, in which order, and the supervisor's
//! restart intensity.
//!
//! OTP's restart types map onto [`RestartPolicy`](crate::RestartPolicy):
//! `permanent` is `Always`, `transient` is `OnFailure`, `temporary` is
//! `Never`. Only an exit the policy restarts triggers a strategy.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{Event, FatalReason, StopReason};
use crate::state::State;
use crate::sys::Sys;
use crate::timers::{later, Deadline};

use super::proc::AfterExit;
use super::Supervisor;

/// What one crash restarts (OTP's supervisor strategies). The supervisor
/// is the group: every process in it is a child. (An instance group with
/// [`ProcessSpec::group_intensity`](crate::ProcessSpec::group_intensity)
/// nests in it with an intensity of its own.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// Only the process that died restarts, by its own backoff. The
    /// default.
    #[default]
    OneForOne,
    /// Every other process stops too, one at a time in reverse start
    /// order (each waiting for its exit, or its stop timeout and kill);
    /// then all start again in their start order, once the backoff delay
    /// of the one that died has passed too (counted from its death). A
    /// process with a `Ready` [`Condition`](crate::Condition) on one being
    /// stopped stops at once with it, so it never runs while that one is
    /// down.
    ///
    /// The process that died keeps its own limits: its `give_up_after`
    /// and `restart_window` make it `Fatal` alone, with no group restart
    /// (as a crash its policy does not restart). The supervisor's
    /// intensity bounds the group: OTP's default of 1 restart within 5 s
    /// unless [`set_intensity`](crate::Supervisor::set_intensity) chose
    /// another.
    OneForAll,
    /// As `OneForAll`, for the one that died and those started after it.
    RestForOne,
}

impl Strategy {
    /// `"one_for_one"`, `"one_for_all"` or `"rest_for_one"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::OneForAll => "one_for_all",
            Strategy::RestForOne => "rest_for_one",
        }
    }

    /// The inverse of [`as_str`](Strategy::as_str).
    ///
    /// ```
    /// use procsup::Strategy;
    /// assert_eq!(Strategy::parse("rest_for_one"), Some(Strategy::RestForOne));
    /// assert_eq!(Strategy::parse("simple_one_for_one"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Strategy> {
        [Strategy::OneForOne, Strategy::OneForAll, Strategy::RestForOne].into_iter().find(|c| c.as_str() == s)
    }
}

/// A group restart (or a group giving up) in progress. Entries are
/// `(slot, added_seq)`; `start` keeps each one's start order at the crash.
#[derive(Debug, Default)]
pub(super) struct GroupRestart {
    stops: VecDeque<(usize, u64)>,
    current: Option<(usize, u64)>,
    start: Vec<(u64, usize, u64)>,
    fatal: Option<FatalReason>,
    /// The backoff of the ones that died: nothing starts again before.
    not_before: Option<Instant>,
}

/// The supervisor-wide strategy and intensity.
#[derive(Debug, Default)]
pub(super) struct Group {
    pub(super) strategy: Strategy,
    intensity: Option<(u32, Duration)>,
    window: VecDeque<Instant>,
    pending: Option<GroupRestart>,
    /// When the pending group restart's backoff ends (in the timer table
    /// as [`Deadline::Group`]).
    deadline: Option<Instant>,
    /// The restart windows of instance groups with a `group_intensity`.
    nested: HashMap<Arc<str>, VecDeque<Instant>>,
}

/// OTP's default supervisor intensity (`intensity => 1, period => 5`):
/// what bounds `one_for_all` and `rest_for_one` unless the host set one.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(procsup::OTP_DEFAULT_INTENSITY, (1, Duration::from_secs(5)));
/// ```
pub const OTP_DEFAULT_INTENSITY: (u32, Duration) = (1, Duration::from_secs(5));

impl Group {
    /// The intensity in force: the host's, else OTP's default for the
    /// group strategies, else none.
    fn limit(&self) -> Option<(u32, Duration)> {
        self.intensity.or((self.strategy != Strategy::OneForOne).then_some(OTP_DEFAULT_INTENSITY))
    }

    /// One-for-one with no intensity and no group restart pending: a
    /// crash is the crashed process's business alone.
    pub(super) fn plain(&self) -> bool {
        self.strategy == Strategy::OneForOne && self.limit().is_none() && self.pending.is_none()
    }

    /// A restart now: whether it stays within the intensity.
    fn count(&mut self, now: Instant) -> Result<(), FatalReason> {
        match self.limit() {
            Some(limit) => count_in(&mut self.window, limit, now),
            None => Ok(()),
        }
    }
}

/// A restart now in `window`: whether it stays within `max_restarts`
/// within `period`.
fn count_in(
    window: &mut VecDeque<Instant>,
    (max_restarts, period): (u32, Duration),
    now: Instant,
) -> Result<(), FatalReason> {
    while window.front().is_some_and(|&t| now.saturating_duration_since(t) >= period) {
        window.pop_front();
    }
    if window.len() >= max_restarts as usize {
        return Err(FatalReason::GroupIntensity { max_restarts, period });
    }
    window.push_back(now);
    Ok(())
}

impl<S: Sys> Supervisor<S> {
    /// Chooses what a crash restarts (default [`Strategy::OneForOne`]).
    ///
    /// [`Strategy::OneForAll`] and [`Strategy::RestForOne`] are bounded by
    /// default: unless [`set_intensity`](Supervisor::set_intensity) was
    /// called, they use OTP's default supervisor intensity
    /// ([`OTP_DEFAULT_INTENSITY`]: more than 1 restart within 5 s makes
    /// every process `Fatal`, see
    /// <https://www.erlang.org/doc/apps/stdlib/supervisor.html#module-supervisor-flags>).
    /// Unlike OTP, the process that died also keeps its backoff (the group
    /// starts again once its delay has passed) and its own give-up limits.
    ///
    /// ```
    /// use std::time::Duration;
    /// use procsup::{Strategy, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// assert_eq!(sup.intensity(), None);
    /// sup.set_strategy(Strategy::OneForAll);
    /// assert_eq!(sup.intensity(), Some((1, Duration::from_secs(5))));
    /// ```
    pub fn set_strategy(&mut self, strategy: Strategy) {
        self.group.strategy = strategy;
    }

    /// OTP's intensity for the whole supervisor: at most `max_restarts`
    /// restarts (crashes its processes' policies restart, of whatever
    /// strategy) within `period`. One more makes every process `Fatal`
    /// ([`FatalReason::GroupIntensity`]): those with a child are stopped
    /// first, in reverse start order. Without a call, there is no limit
    /// under [`Strategy::OneForOne`] and OTP's default
    /// ([`OTP_DEFAULT_INTENSITY`], 1 restart within 5 s) under the others;
    /// `set_intensity(u32::MAX, Duration::ZERO)` lifts it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use procsup::{Strategy, Supervisor, testing::FakeSys};
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.set_strategy(Strategy::RestForOne);
    /// sup.set_intensity(10, Duration::from_secs(60));
    /// assert_eq!(sup.intensity(), Some((10, Duration::from_secs(60))));
    /// ```
    pub fn set_intensity(&mut self, max_restarts: u32, period: Duration) {
        self.group.intensity = Some((max_restarts, period));
        self.group.window.clear();
    }

    /// The intensity in force (`(max_restarts, period)`): the one
    /// [`set_intensity`](Supervisor::set_intensity) chose, else OTP's
    /// default under a group strategy, else `None` (no limit).
    ///
    /// ```
    /// use procsup::{Supervisor, testing::FakeSys};
    /// assert_eq!(Supervisor::with_sys(FakeSys::new()).intensity(), None);
    /// ```
    pub fn intensity(&self) -> Option<(u32, Duration)> {
        self.group.limit()
    }

    /// The strategy's part in a crash of `id` that its policy restarts.
    /// Whether it took the process over (then the caller schedules
    /// nothing).
    pub(super) fn group_crash(&mut self, id: usize, now: Instant, after_running: bool) -> bool {
        let mut retry_at = None;
        if self.group.strategy != Strategy::OneForOne {
            // Its own limits first: a process that gives up is not
            // restarted, so (like a temporary one) it restarts no group.
            match self.restart_verdict(id, now, after_running) {
                Ok(delay) => retry_at = Some(later(now, delay)),
                Err(reason) => {
                    self.stop_ready_dependents(id, now, AfterExit::Wait);
                    self.fatal(id, reason);
                    return true;
                }
            }
        }
        let counted = match self.nested_count(id, now) {
            // Counted in its instance group, not in the supervisor's.
            Some(Ok(())) => Ok(()),
            Some(Err(reason)) => {
                // The instance group gives up: one failure of the parent.
                self.give_up_nested(id, &reason, now);
                match self.group.count(now) {
                    Ok(()) => return true,
                    Err(parent) => Err(parent),
                }
            }
            None => self.group.count(now),
        };
        if self.group.strategy == Strategy::OneForOne && counted.is_ok() && self.group.pending.is_none() {
            return false;
        }
        let crashed_seq = self.p(id).start_seq;
        // Reaped: it has no child whatever its state said.
        self.hold(id);
        let mut plan = self.group.pending.take().unwrap_or_default();
        match counted {
            Err(reason) => plan.fatal = Some(reason),
            Ok(()) => {
                if let Some(at) = retry_at {
                    plan.not_before = plan.not_before.max(Some(at));
                    let p = self.p(id);
                    let (name, failure_streak) = (p.name.clone(), p.streak);
                    let delay = at.saturating_duration_since(now);
                    self.emit(Event::Backoff { name, delay, retry_at: at, failure_streak });
                }
            }
        }
        // What needs it Ready stops at once, not in its turn: it must not
        // run while the crashed one is down. The rest stop in turn.
        let at_once = self.stop_ready_dependents(id, now, AfterExit::Hold);
        let everyone = plan.fatal.is_some() || self.group.strategy == Strategy::OneForAll;
        let mut affected = self.ids_by(|p| p.start_seq);
        affected.retain(|&i| {
            !self.p(i).removing && (everyone || i == id || self.p(i).start_seq > crashed_seq || at_once.contains(&i))
        });
        for &i in &affected {
            let entry = (self.p(i).start_seq, i, self.p(i).added_seq);
            if !plan.start.iter().any(|&(_, j, s)| j == i && s == entry.2) {
                plan.start.push(entry);
            }
        }
        plan.start.sort_unstable();
        for &i in affected.iter().rev() {
            let key = (i, self.p(i).added_seq);
            if self.p(i).state.has_child() {
                if plan.current != Some(key) && !plan.stops.contains(&key) {
                    plan.stops.push_back(key);
                }
            } else if plan.fatal.is_some() || matches!(self.p(i).state, State::Backoff | State::Waiting) {
                // A restart it was due anyway, or the group's end.
                self.hold(i);
            }
            // Stopped, Exited or Fatal: it was not running, and a group
            // restart does not start it (unless the group gives up).
        }
        self.group.pending = Some(plan);
        self.advance_group(now);
        true
    }

    /// A restart of an instance of a group with a `group_intensity`,
    /// counted in that group's window; `None` for any other process.
    fn nested_count(&mut self, id: usize, now: Instant) -> Option<Result<(), FatalReason>> {
        let p = self.p(id);
        let (group, limit) = (p.group.clone()?, p.spec.group_intensity?);
        Some(count_in(self.group.nested.entry(group).or_default(), limit, now))
    }

    /// Every instance of the group of `id` becomes `Fatal`: those with a
    /// child once it is reaped (stopped now), the rest at once.
    fn give_up_nested(&mut self, id: usize, reason: &FatalReason, now: Instant) {
        let group = self.p(id).group.clone();
        if let Some(g) = &group {
            self.group.nested.remove(g);
        }
        self.fatal(id, reason.clone());
        self.stop_ready_dependents(id, now, AfterExit::Wait);
        for i in self.ids_by(|p| p.added_seq) {
            let p = self.p(i);
            if i == id || p.group != group || p.removing || p.state == State::Fatal {
                continue;
            }
            if p.state.has_child() {
                self.stop_id(i, now, StopReason::Strategy);
                let p = self.p_mut(i);
                p.after_exit = AfterExit::GiveUp;
                p.manual_stop = false;
                self.stop_ready_dependents(i, now, AfterExit::Wait);
            } else {
                self.p_mut(i).held = false;
                self.fatal(i, reason.clone());
            }
        }
    }

    /// A process waiting for its group: `Waiting`, no deadline, not
    /// released by its dependencies.
    pub(super) fn hold(&mut self, id: usize) {
        self.set_deadline(id, None);
        let p = self.p_mut(id);
        p.state = State::Waiting;
        p.held = true;
        p.waiting_on = None;
    }

    /// Stops the next process of a group restart once the previous one is
    /// gone; when all are, starts them again in order (or makes them all
    /// `Fatal`).
    #[inline]
    pub(super) fn advance_group(&mut self, now: Instant) {
        if self.group.pending.is_none() {
            return;
        }
        let Some(mut plan) = self.group.pending.take() else { return };
        let live = |s: &Self, (i, seq): (usize, u64)| {
            s.procs[i].as_ref().is_some_and(|p| p.added_seq == seq && (p.state.has_child() || p.retiring.is_some()))
        };
        loop {
            if plan.current.is_some_and(|k| live(self, k)) {
                self.group.pending = Some(plan);
                return;
            }
            let Some(next) = plan.stops.pop_front() else {
                // All gone: the backoff of the ones that died, if any left.
                let wait = plan.not_before.filter(|&at| plan.fatal.is_none() && at > now);
                self.set_group_deadline(wait);
                if wait.is_some() {
                    self.group.pending = Some(plan);
                    return;
                }
                break;
            };
            // A stop the host asked for meanwhile stays the host's.
            let host_stopped = |s: &Self| s.p(next.0).state == State::Stopping && s.p(next.0).manual_stop;
            if live(self, next) && !host_stopped(self) {
                self.stop_id(next.0, now, StopReason::Strategy);
                let p = self.p_mut(next.0);
                p.after_exit = AfterExit::Hold;
                p.manual_stop = false;
                plan.current = Some(next);
                // What needs it Ready (maybe started meanwhile) stops now
                // too, and starts again with the group.
                for i in self.stop_ready_dependents(next.0, now, AfterExit::Hold) {
                    let seq = self.p(i).added_seq;
                    if !plan.start.iter().any(|&(_, j, s)| j == i && s == seq) {
                        plan.start.push((self.p(i).start_seq, i, seq));
                    }
                }
                plan.start.sort_unstable();
            }
        }
        for (_, i, seq) in plan.start {
            let held =
                self.procs[i].as_ref().is_some_and(|p| p.added_seq == seq && p.held && p.state == State::Waiting);
            if !held {
                continue;
            }
            self.p_mut(i).held = false;
            match &plan.fatal {
                Some(reason) => self.fatal(i, reason.clone()),
                None => {
                    let p = self.p_mut(i);
                    p.restart_count = p.restart_count.saturating_add(1);
                    if self.gate(i) {
                        let _ = self.spawn_id(i, now);
                    }
                }
            }
        }
    }

    /// `stop_all` and `shutdown` end any group restart: its held
    /// processes stop with everything else.
    pub(super) fn abort_group(&mut self) {
        self.group.pending = None;
        self.set_group_deadline(None);
    }

    /// A group restart whose backoff has ended starts its processes.
    /// Part of [`retry_backoff`](Supervisor::retry_backoff).
    #[inline]
    pub(super) fn retry_group(&mut self, now: Instant) {
        if self.group.deadline.is_some_and(|at| at <= now) {
            self.set_group_deadline(None);
            self.advance_group(now);
        }
    }

    fn set_group_deadline(&mut self, new: Option<Instant>) {
        let old = std::mem::replace(&mut self.group.deadline, new);
        self.timers.reset(Deadline::Group, old, new);
    }
}
