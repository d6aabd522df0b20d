//! All deadlines in one ordered table: at most one per process.

use std::collections::BTreeSet;
use std::time::Instant;

/// Deadlines keyed by process slot. Each slot has at most one, so the due
/// set is found in `O(due · log n)` and the next one in `O(log n)`.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    set: BTreeSet<(Instant, usize)>,
}

impl Timers {
    /// Replaces the deadline of `id` (`old` is what was set before).
    pub(crate) fn reset(&mut self, id: usize, old: Option<Instant>, new: Option<Instant>) {
        if old == new {
            return;
        }
        if let Some(t) = old {
            self.set.remove(&(t, id));
        }
        if let Some(t) = new {
            self.set.insert((t, id));
        }
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.set.first().map(|&(t, _)| t)
    }

    /// The slots whose deadline is at or before `now`, earliest first.
    pub(crate) fn due(&self, now: Instant) -> impl Iterator<Item = (Instant, usize)> + '_ {
        self.set.iter().take_while(move |&&(t, _)| t <= now).copied()
    }
}
