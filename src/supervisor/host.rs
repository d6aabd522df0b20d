//! What a host loop asks between two calls: how long to sleep, what to
//! wake on, and what happened.

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::event::Event;
use crate::sys::Sys;

use super::Supervisor;

/// The resolution of [`Supervisor::poll_timeout`]: `poll(2)`, `epoll_wait`
/// and mio count in milliseconds.
const MILLISECOND: Duration = Duration::from_millis(1);

impl<S: Sys> Supervisor<S> {
    /// How long the host may sleep before its next call to
    /// [`tick`](Supervisor::tick), at millisecond resolution: `None` to
    /// sleep until the readiness fd fires, `Some(ZERO)` to tick at once.
    ///
    /// The time to [`next_deadline`](Supervisor::next_deadline) is
    /// rounded **up** to a whole millisecond, so a `poll(2)` given this
    /// timeout never wakes a fraction of a millisecond early and then spins
    /// through zero-timeout polls until the deadline comes. Zero means that
    /// work is due now: a deadline has passed, or the OS layer still holds
    /// input that the last bounded tick left for the next one (see
    /// [`Sys::wake_after`]), which an edge-triggered host would otherwise
    /// wait for in vain.
    ///
    /// Like `next_deadline`, ask again after every call on the supervisor.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use procsup::{ProcessSpec, Supervisor, testing::{FakeSys, VirtualClock}};
    ///
    /// let clock = VirtualClock::new();
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// assert_eq!(sup.poll_timeout(clock.now()), None); // nothing scheduled
    /// sup.add_process(ProcessSpec::new("web", "server").start_grace(Duration::from_micros(1500)))?;
    /// sup.start_all(clock.now())?;
    /// // 1.5 ms to the promotion: sleep 2 ms, never 1 ms and then spin.
    /// assert_eq!(sup.poll_timeout(clock.now()), Some(Duration::from_millis(2)));
    /// # Ok::<(), procsup::Error>(())
    /// ```
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        self.poll_timeout_in(now, MILLISECOND)
    }

    /// [`poll_timeout`](Supervisor::poll_timeout) rounded up to a whole
    /// multiple of `resolution`: the granularity of the host's timer (a
    /// zero resolution means nanoseconds).
    ///
    /// ```
    /// use std::time::Duration;
    /// use procsup::{ProcessSpec, Supervisor, testing::{FakeSys, VirtualClock}};
    ///
    /// let clock = VirtualClock::new();
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("web", "server").start_grace(Duration::from_millis(1001)))?;
    /// sup.start_all(clock.now())?;
    /// let tick = Duration::from_millis(10);
    /// assert_eq!(sup.poll_timeout_in(clock.now(), tick), Some(Duration::from_millis(1010)));
    /// # Ok::<(), procsup::Error>(())
    /// ```
    pub fn poll_timeout_in(&self, now: Instant, resolution: Duration) -> Option<Duration> {
        let left = self.next_deadline()?.saturating_duration_since(now);
        Some(round_up(left, resolution))
    }

    /// The one file descriptor that becomes readable when a child exited or
    /// wrote captured output, or `None` where the OS layer has none (then
    /// wake on SIGCHLD). With [`UnixSys`](crate::UnixSys) on Linux it is an
    /// epoll fd, the same for the supervisor's whole life: register it once
    /// with `poll`, `epoll`, mio or tokio. A runtime that wants to own the
    /// fd it watches (tokio's `AsyncFd`) takes a duplicate:
    /// `sup.readiness_fd().map(|fd| fd.try_clone_to_owned())`.
    ///
    /// Level-triggered hosts (`poll`, `epoll` without `EPOLLET`) tick when
    /// it is readable. Edge-triggered ones (mio, tokio) may miss input a
    /// bounded tick left behind, and [`poll_timeout`](Supervisor::poll_timeout)
    /// covers that: it is zero while anything is left.
    ///
    /// ```no_run
    /// use std::os::fd::AsRawFd;
    /// let sup = procsup::Supervisor::new();
    /// let fd = sup.readiness_fd().expect("Linux with pidfds").as_raw_fd();
    /// assert_eq!(sup.readiness_fd().unwrap().as_raw_fd(), fd);
    /// ```
    pub fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        self.sys.readiness_fds().into_iter().next()
    }

    /// Takes every pending event, oldest first, as a queue the host owns:
    /// unlike [`drain_events`](Supervisor::drain_events) it does not borrow
    /// the supervisor, so the host may call it while handling them.
    ///
    /// ```
    /// use std::time::Instant;
    /// use procsup::{Event, Exit, ProcessSpec, Supervisor, testing::FakeSys};
    ///
    /// let now = Instant::now();
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(ProcessSpec::new("db", "postgres").give_up_after(1))?;
    /// sup.add_process(ProcessSpec::new("web", "server"))?;
    /// sup.start_all(now)?;
    /// assert!(sup.sys_mut().exit_by_name("db", Exit::Exited(1)));
    /// sup.tick(now);
    /// for event in sup.take_events() {
    ///     if let Event::Fatal { .. } = event {
    ///         sup.shutdown(now); // a call on the supervisor, mid-loop
    ///     }
    /// }
    /// assert_eq!(sup.status("web")?.state, procsup::State::Stopping);
    /// # Ok::<(), procsup::Error>(())
    /// ```
    pub fn take_events(&mut self) -> VecDeque<Event> {
        std::mem::take(&mut self.events)
    }

    /// How many events wait to be taken (for `testing`'s stepping).
    pub(crate) fn queued_events(&self) -> usize {
        self.events.len()
    }
}

/// `d` rounded up to a whole multiple of `resolution`, saturating.
fn round_up(d: Duration, resolution: Duration) -> Duration {
    let r = resolution.as_nanos().max(1);
    let nanos = d.as_nanos().div_ceil(r).saturating_mul(r);
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it fits.
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_to_the_resolution() {
        let ms = Duration::from_millis(1);
        assert_eq!(round_up(Duration::ZERO, ms), Duration::ZERO);
        assert_eq!(round_up(Duration::from_nanos(1), ms), ms);
        assert_eq!(round_up(Duration::from_micros(999), ms), ms);
        assert_eq!(round_up(ms, ms), ms);
        assert_eq!(round_up(Duration::from_micros(1001), ms), 2 * ms);
        assert_eq!(round_up(Duration::from_nanos(5), Duration::ZERO), Duration::from_nanos(5));
        assert_eq!(round_up(Duration::from_secs(3), Duration::from_secs(2)), Duration::from_secs(4));
        assert_eq!(round_up(Duration::MAX, ms), Duration::new(u64::MAX, 0));
    }
}
