//! A test seam: make the nth pidfd call fail, to test the per-child
//! fallback without exhausting the host's fds. Off unless a test sets it.

use std::io;

use super::UnixSys;

#[derive(Debug, Default)]
pub(super) struct Faults {
    /// The nth `pidfd_open` (from 1) fails with this errno.
    pub(super) open: Option<(u32, i32)>,
    /// The nth epoll add of a pidfd fails with this errno.
    pub(super) watch: Option<(u32, i32)>,
    /// The `waitid(P_PIDFD)` check fails with this errno.
    pub(super) waitid: Option<i32>,
    /// Every `clone3` of a spawn fails with this errno (as under a seccomp
    /// filter that answers ENOSYS or EPERM).
    pub(super) clone3: Option<i32>,
    /// Every epoll add of a drained cgroup's `cgroup.events` fails with
    /// this errno.
    pub(super) cgroup_watch: Option<i32>,
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

impl UnixSys {
    /// Test seam: the `nth` `pidfd_open` of a child (1 = the first) fails
    /// with `errno`.
    #[doc(hidden)]
    pub fn fail_pidfd_open(mut self, nth: u32, errno: i32) -> Self {
        self.faults.open = Some((nth, errno));
        self
    }

    /// Test seam: the `nth` epoll add of a child's pidfd fails with `errno`.
    #[doc(hidden)]
    pub fn fail_pidfd_watch(mut self, nth: u32, errno: i32) -> Self {
        self.faults.watch = Some((nth, errno));
        self
    }

    /// Test seam: every `clone3` of a spawn fails with `errno`, as under a
    /// container's seccomp filter (ENOSYS or EPERM): spawns take the
    /// `clone(2)` fallback.
    #[doc(hidden)]
    pub fn fail_clone3(mut self, errno: i32) -> Self {
        self.faults.clone3 = Some(errno);
        self
    }

    /// Test seam: every epoll add of the `cgroup.events` of a cgroup whose
    /// tree outlived its leader fails with `errno` (as `ENOSPC` at the
    /// user's `max_user_watches`): such trees are looked at on every poll.
    #[doc(hidden)]
    pub fn fail_cgroup_watch(mut self, errno: i32) -> Self {
        self.faults.cgroup_watch = Some(errno);
        self
    }

    /// Test seam: the check that `waitid(P_PIDFD)` works fails with
    /// `errno`, as on Linux 5.3.
    #[doc(hidden)]
    pub fn fail_pidfd_waitid(mut self, errno: i32) -> Self {
        self.faults.waitid = Some(errno);
        self
    }
}
