//! Deadlines in one ordered table, at most one per key.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

/// What a deadline is for. Every deadline of a supervisor lives in one
/// table, so `next_deadline` is its first entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Deadline {
    /// A process slot: promotion (Starting), retry (Backoff) or kill
    /// (Stopping), by its state.
    Proc(usize),
    /// The kill of a process slot's retiring child (rolling restart).
    Retire(usize),
    /// The kill of an orphan of an earlier run.
    Orphan(Pid),
    /// A process slot's start (or reload) timeout.
    StartTimeout(usize),
    /// A process slot's watchdog deadline.
    Watchdog(usize),
    /// A process slot's next probe, or the timeout of the one running.
    Probe(usize),
    /// A process slot's coalesced status text, due as an event.
    Status(usize),
    /// The end of a group restart's backoff (`one_for_all`,
    /// `rest_for_one`).
    Group,
}

/// Deadlines keyed by `K`. Each key has at most one. The earliest is
/// cached, so asking for it, or finding that nothing is due (every idle
/// tick), is `O(1)` whatever the size; the due set costs `O(due · log n)`.
#[derive(Debug)]
pub(crate) struct Timers<K> {
    set: BTreeSet<(Instant, K)>,
    first: Option<Instant>,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Timers { set: BTreeSet::new(), first: None }
    }
}

impl<K: Ord + Copy> Timers<K> {
    /// Replaces the deadline of `key` (`old` is what was set before).
    pub(crate) fn reset(&mut self, key: K, old: Option<Instant>, new: Option<Instant>) {
        if old == new {
            return;
        }
        if let Some(t) = old {
            self.set.remove(&(t, key));
        }
        if let Some(t) = new {
            self.set.insert((t, key));
        }
        self.first = self.set.first().map(|&(t, _)| t);
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.first
    }

    /// The keys whose deadline is at or before `now`, earliest first.
    pub(crate) fn due(&self, now: Instant) -> Vec<K> {
        if self.first.is_none_or(|t| t > now) {
            return Vec::new();
        }
        self.set.iter().take_while(|&&(t, _)| t <= now).map(|&(_, k)| k).collect()
    }
}

/// `t + d`, saturating at the latest instant the platform can represent
/// instead of panicking ("overflow when adding duration to instant"): the
/// host may pass any `now`, even one near the end of `Instant`'s range, and
/// every deadline the supervisor computes goes through here.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    if let Some(at) = t.checked_add(d) {
        return at;
    }
    // The largest sum that fits: add the biggest step that still fits,
    // halving it on each overflow. Only this rare path pays for it, about
    // two tries per bit of `d`.
    let (mut at, mut step) = (t, d);
    while !step.is_zero() {
        match at.checked_add(step) {
            Some(next) => at = next,
            None => step /= 2,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_adds_and_saturates() {
        #[allow(clippy::disallowed_methods)]
        let t = Instant::now();
        assert_eq!(later(t, Duration::from_secs(3)), t + Duration::from_secs(3));
        let end = later(t, Duration::MAX);
        assert!(end > t);
        assert_eq!(end.checked_add(Duration::from_nanos(1)), None, "the very last instant");
        assert_eq!(later(end, Duration::from_secs(1)), end);
    }
}
