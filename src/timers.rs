//! Deadlines in one ordered table, at most one per key.

use std::collections::BTreeSet;
use std::time::Instant;

/// Deadlines keyed by `K` (a process slot, an orphan pid). Each key has at
/// most one, so the due set is found in `O(due · log n)` and the next one
/// in `O(log n)`.
#[derive(Debug)]
pub(crate) struct Timers<K> {
    set: BTreeSet<(Instant, K)>,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Timers { set: BTreeSet::new() }
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
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.set.first().map(|&(t, _)| t)
    }

    /// The keys whose deadline is at or before `now`, earliest first.
    pub(crate) fn due(&self, now: Instant) -> impl Iterator<Item = K> + '_ {
        self.set.iter().take_while(move |&&(t, _)| t <= now).map(|&(_, k)| k)
    }
}
