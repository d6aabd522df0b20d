//! pidfds, and non-blocking waits for one own child.

use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::FromRawFd;
use std::os::fd::{OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::Child;
use crate::state::Exit;

#[cfg(target_os = "linux")]
pub(super) fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or
    // -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd, open and owned by no one
    // else; pidfds are close-on-exec by definition.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(not(target_os = "linux"))]
pub(super) fn pidfd_open(_: Pid) -> io::Result<OwnedFd> {
    Err(Errno::ENOSYS.into())
}

#[cfg(target_os = "linux")]
pub(super) fn pidfd_send_signal(fd: RawFd, signal: Signal) -> io::Result<()> {
    // SAFETY: pidfd_send_signal(2) with a null siginfo and no flags reads
    // no memory of ours; `fd` is a pidfd we own.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, fd, signal as libc::c_int, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(super) fn pidfd_send_signal(_: RawFd, _: Signal) -> io::Result<()> {
    Err(Errno::ENOSYS.into())
}

/// `waitid(P_PIDFD, fd, WEXITED | WNOHANG)`: the exit, if it happened.
#[cfg(target_os = "linux")]
pub(super) fn waitid_pidfd(fd: RawFd) -> Option<Exit> {
    loop {
        // SAFETY: siginfo_t is plain data; all zeroes is a valid value and
        // is how WNOHANG tells "no change" (si_pid stays 0).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t; `fd` is our pidfd.
        let rc = unsafe { libc::waitid(libc::P_PIDFD, fd as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG) };
        if rc < 0 {
            return match Errno::last() {
                Errno::EINTR => continue,
                // Someone else reaped it (a host calling waitpid(-1)).
                Errno::ECHILD => Some(Exit::Unknown),
                e => {
                    log::warn!("procsup: waitid(P_PIDFD): {e}");
                    None
                }
            };
        }
        // SAFETY: after a successful waitid with WEXITED, the kernel filled
        // the SIGCHLD fields that si_pid/si_status read.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return None;
        }
        return Some(match info.si_code {
            libc::CLD_EXITED => Exit::Exited(status),
            _ => Exit::Signaled(status),
        });
    }
}

/// Whether `waitid(P_PIDFD)` works (Linux 5.4+; 5.3 has pidfds without it):
/// asked with `WNOWAIT`, so a child that already exited stays unreaped.
#[cfg(target_os = "linux")]
pub(super) fn pidfd_waitid_works(fd: RawFd) -> io::Result<()> {
    loop {
        // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t; `fd` is our pidfd;
        // WNOWAIT leaves the child's state as it is.
        let rc = unsafe {
            libc::waitid(libc::P_PIDFD, fd as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
        };
        if rc == 0 {
            return Ok(());
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e.into()),
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn pidfd_waitid_works(_: RawFd) -> io::Result<()> {
    Err(Errno::ENOSYS.into())
}

#[cfg(not(target_os = "linux"))]
pub(super) fn waitid_pidfd(_: RawFd) -> Option<Exit> {
    None
}

/// Blocking `waitid(P_PIDFD)` for one own child that was sent SIGKILL
/// (`Drop` only): it returns once the child is gone.
#[cfg(target_os = "linux")]
pub(super) fn reap_blocking(fd: RawFd) {
    loop {
        // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t; `fd` is our pidfd.
        let rc = unsafe { libc::waitid(libc::P_PIDFD, fd as libc::id_t, &mut info, libc::WEXITED) };
        if rc == 0 || Errno::last() != Errno::EINTR {
            return;
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn reap_blocking(_: RawFd) {}

/// `waitpid(pid, WNOHANG)` for one own child: the exit, if it happened.
pub(super) fn waitpid_nohang(pid: Pid) -> Option<Exit> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable int; waitpid on one
        // specific pid never touches another process's status.
        let rc = unsafe { libc::waitpid(pid.as_raw(), &mut status, libc::WNOHANG) };
        match rc {
            0 => return None,
            r if r > 0 => {
                return Some(if libc::WIFEXITED(status) {
                    Exit::Exited(libc::WEXITSTATUS(status))
                } else if libc::WIFSIGNALED(status) {
                    Exit::Signaled(libc::WTERMSIG(status))
                } else {
                    // Stopped/continued are not reported without WUNTRACED.
                    return None;
                });
            }
            _ => match Errno::last() {
                Errno::EINTR => continue,
                Errno::ECHILD => return Some(Exit::Unknown),
                e => {
                    log::warn!("procsup: waitpid({pid}): {e}");
                    return None;
                }
            },
        }
    }
}

/// Whether any child of the host is a zombie, and one such pid, WITHOUT
/// reaping it: `waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT)` leaves the
/// status for whoever owns the child. Only a hint of when to look closer
/// (subreaper mode): one zombie at a time, maybe one that is not ours.
#[cfg(target_os = "linux")]
pub(super) fn peek_zombie() -> Option<Pid> {
    loop {
        // SAFETY: siginfo_t is plain data; all zeroes is how WNOHANG tells
        // "no zombie" (si_pid stays 0).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t; WNOWAIT leaves the
        // child waitable, so no exit status is taken from anyone.
        let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
        if rc < 0 {
            return match Errno::last() {
                Errno::EINTR => continue,
                _ => None,
            };
        }
        // SAFETY: after a successful waitid the kernel filled si_pid.
        let pid = unsafe { info.si_pid() };
        return (pid != 0).then(|| Pid::from_raw(pid));
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn peek_zombie() -> Option<Pid> {
    None
}

/// The calling thread's id (as `Child::spawner` holds it; 0 elsewhere).
fn current_tid() -> i32 {
    #[cfg(target_os = "linux")]
    return nix::unistd::gettid().as_raw();
    #[cfg(not(target_os = "linux"))]
    0
}

/// `PR_SET_PDEATHSIG` follows the *thread* that spawned a child: when that
/// thread exits, the child gets its parent-death signal although the host
/// lives on. Such a death is easy to misread, so it is named in the log.
pub(super) fn warn_if_spawner_thread_died(pid: Pid, child: &Child, exit: Exit) {
    let (tid, death) = child.spawner;
    // The calling thread is alive: no look in /proc on the way to a
    // restart for the usual host, one thread spawning and reaping.
    if death.is_some()
        && exit.signal_number() == death
        && current_tid() != tid
        && !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
    {
        log::warn!(
            "procsup: {} (pid {pid}) got its parent-death signal because thread {tid}, which spawned it, exited; \
             drive the supervisor from a thread that lives as long as its children",
            child.name
        );
    }
}
