//! The child's fd plan on the `Command` path: passed fds placed at their
//! targets between fork and exec, and every other fd above 2 marked
//! close-on-exec (procsup's own spawn does the same with raw system calls
//! in `clone_child.rs`).
//!
//! Everything that allocates happens in the parent, before the fork: the
//! (source, target) table. In the child only system calls remain. The
//! socket-activation variables are added by `launch.rs` on every path
//! (`LISTEN_FDS`, `LISTEN_FDNAMES`), except `LISTEN_PID`, which only the
//! child knows: it is written into an environment prepared before the
//! fork (`exec.rs`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::pool::MAX_PASSED_FDS;
use crate::spec::ProcessSpec;

/// What the child does with fds before exec. Holds the sources open until
/// the `Command` (which owns the hook) is dropped after the spawn.
pub(super) struct FdPlan {
    moves: Vec<(RawFd, RawFd)>,
    /// One above the highest target: sources are first duplicated here or
    /// higher, so no placement overwrites a source still to be placed.
    above: RawFd,
    _sources: Vec<Arc<OwnedFd>>,
}

impl FdPlan {
    /// The plan for `spec`, or `None` when it passes no fd.
    pub(super) fn new(spec: &ProcessSpec) -> io::Result<Option<FdPlan>> {
        if spec.fds.is_empty() {
            return Ok(None);
        }
        let moves: Vec<(RawFd, RawFd)> = spec.fds.moves().map(|(fd, target)| (fd.as_raw_fd(), target)).collect();
        if moves.len() > MAX_PASSED_FDS {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let above = moves.iter().map(|&(_, t)| t).max().unwrap_or(2).saturating_add(1);
        let sources = spec.fds.moves().map(|(fd, _)| fd.clone()).collect();
        Ok(Some(FdPlan { moves, above, _sources: sources }))
    }

    /// In the child, between fork and exec: async-signal-safe system calls
    /// and stores into memory allocated before the fork only.
    pub(super) fn apply_in_child(&self) -> io::Result<()> {
        let mut lifted = [-1 as RawFd; MAX_PASSED_FDS];
        // 1. Every source to a number above every target (close-on-exec):
        //    a target may be another source's number.
        for (slot, &(src, _)) in lifted.iter_mut().zip(&self.moves) {
            // SAFETY: fcntl(2) F_DUPFD_CLOEXEC is a plain system call,
            // async-signal-safe; `src` is open (held by `_sources`).
            let fd = unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, self.above) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            *slot = fd;
        }
        // 2. Nothing else above 2 survives exec.
        #[cfg(target_os = "linux")]
        {
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
            // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets
            // flags, a system call (async-signal-safe). Kernels before 5.11
            // answer ENOSYS or EINVAL: then only our own fds are
            // close-on-exec, as documented on `pass_fd`.
            unsafe { libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) };
        }
        // 3. Each to its target; dup2 clears close-on-exec on the copy.
        for (&fd, &(_, target)) in lifted.iter().zip(&self.moves) {
            // SAFETY: dup2(2) is async-signal-safe; `fd` was made above.
            if unsafe { libc::dup2(fd, target) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}
