//! One fd that becomes readable when any watched fd does: epoll on Linux.

use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::AsFd;
use std::os::fd::BorrowedFd;

#[cfg(target_os = "linux")]
use nix::errno::Errno;
use nix::unistd::Pid;

/// An epoll token: a pid and a slot (0: pidfd, 1-2: pipes, then the
/// slots of tree.rs and orphan.rs).
pub(super) fn token(pid: Pid, slot: u64) -> u64 {
    (pid.as_raw() as u32 as u64) << 3 | slot
}

pub(super) fn untoken(token: u64) -> (Pid, u64) {
    (Pid::from_raw((token >> 3) as u32 as i32), token & 7)
}

/// One fd that becomes readable when any watched fd does: epoll on Linux.
/// Elsewhere there is none, and `poll` looks at every child itself.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(super) struct Readiness {
    epoll: nix::sys::epoll::Epoll,
    ready: Vec<nix::sys::epoll::EpollEvent>,
}

#[cfg(target_os = "linux")]
impl Readiness {
    pub(super) fn new() -> Option<Self> {
        use nix::sys::epoll::{Epoll, EpollCreateFlags};
        Some(Readiness { epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).ok()?, ready: Vec::new() })
    }

    pub(super) fn watch(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        use nix::sys::epoll::{EpollEvent, EpollFlags};
        Ok(self.epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))?)
    }

    /// Watches for `EPOLLPRI` only: how kernfs files such as
    /// `cgroup.events` say that they changed (they always poll readable).
    pub(super) fn watch_pri(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        use nix::sys::epoll::{EpollEvent, EpollFlags};
        Ok(self.epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLPRI, token))?)
    }

    pub(super) fn unwatch(&self, fd: BorrowedFd<'_>) {
        let _ = self.epoll.delete(fd);
    }

    /// The tokens of what is ready now, at most `cap` of them.
    pub(super) fn ready(&mut self, cap: usize) -> Vec<u64> {
        use nix::sys::epoll::{EpollEvent, EpollTimeout};
        self.ready.resize(cap, EpollEvent::empty());
        loop {
            match self.epoll.wait(&mut self.ready, EpollTimeout::ZERO) {
                Ok(n) => return self.ready[..n].iter().map(EpollEvent::data).collect(),
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("procsup: epoll_wait: {e}");
                    return Vec::new();
                }
            }
        }
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub(super) enum Readiness {}

#[cfg(not(target_os = "linux"))]
impl Readiness {
    pub(super) fn new() -> Option<Self> {
        None
    }
    pub(super) fn watch(&self, _: BorrowedFd<'_>, _: u64) -> io::Result<()> {
        match *self {}
    }
    pub(super) fn watch_pri(&self, _: BorrowedFd<'_>, _: u64) -> io::Result<()> {
        match *self {}
    }
    pub(super) fn unwatch(&self, _: BorrowedFd<'_>) {
        match *self {}
    }
    pub(super) fn ready(&mut self, _: usize) -> Vec<u64> {
        match *self {}
    }
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        match *self {}
    }
}
