//! A test seam: make the nth pidfd call fail, to test the per-child
//! fallback without exhausting the host's fds. Off unless a test sets it.

use std::io;

#[derive(Debug, Default)]
pub(super) struct Faults {
    /// The nth `pidfd_open` (from 1) fails with this errno.
    pub(super) open: Option<(u32, i32)>,
    /// The nth epoll add of a pidfd fails with this errno.
    pub(super) watch: Option<(u32, i32)>,
    /// The `waitid(P_PIDFD)` check fails with this errno.
    pub(super) waitid: Option<i32>,
    opens: u32,
    watches: u32,
}

fn nth(count: &mut u32, fault: Option<(u32, i32)>) -> Option<io::Error> {
    *count = count.saturating_add(1);
    fault.filter(|&(n, _)| n == *count).map(|(_, errno)| io::Error::from_raw_os_error(errno))
}

impl Faults {
    /// The injected error of this `pidfd_open`, if any.
    pub(super) fn pidfd_open(&mut self) -> Option<io::Error> {
        nth(&mut self.opens, self.open)
    }

    /// The injected error of this epoll add of a pidfd, if any.
    pub(super) fn pidfd_watch(&mut self) -> Option<io::Error> {
        nth(&mut self.watches, self.watch)
    }

    /// The injected error of the `waitid(P_PIDFD)` check, if any.
    pub(super) fn pidfd_waitid(&self) -> Option<io::Error> {
        self.waitid.map(io::Error::from_raw_os_error)
    }
}
