//! The child's fd plan: passed fds placed at their targets between fork and
//! exec, every other fd above 2 marked close-on-exec, and the environment
//! of the socket-activation protocol with `LISTEN_PID` written in the child.
//!
//! Everything that allocates happens in the parent, before the fork: the
//! (source, target) table, and for listen fds the child's whole
//! environment block with a fixed-size slot for `LISTEN_PID`. In the child
//! only system calls and stores into that memory (the child's private copy)
//! remain.
//!
//! Why the environment is built here: `std::process::Command` builds its
//! envp before the fork and installs it after the `pre_exec` hooks, so a
//! hook cannot change a variable of it. A spec with listen fds therefore
//! gives `Command` no environment changes at all (so `Command` execs with
//! whatever `environ` is), and its hook points `environ` at the block
//! built here, once the child's pid is written into it. `execvp` then both
//! passes that block and searches the program in its `PATH`, as `Command`
//! does with an environment of its own.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

use crate::pool::MAX_PASSED_FDS;
use crate::spec::ProcessSpec;

const LISTEN_PID: &[u8] = b"LISTEN_PID=";
/// `LISTEN_PID=`, up to 10 digits of a pid, NUL.
const PID_SLOT: usize = 11 + 10 + 1;

/// What the child does with fds before exec. Holds the sources open until
/// the `Command` (which owns the hook) is dropped after the spawn.
pub(super) struct FdPlan {
    moves: Vec<(RawFd, RawFd)>,
    /// One above the highest target: sources are first duplicated here or
    /// higher, so no placement overwrites a source still to be placed.
    above: RawFd,
    _sources: Vec<Arc<OwnedFd>>,
    env: Option<EnvBlock>,
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
        let env = if spec.fds.listen.is_empty() { None } else { Some(EnvBlock::new(spec)?) };
        Ok(Some(FdPlan { moves, above, _sources: sources, env }))
    }

    /// Whether the plan sets the child's environment itself (then the
    /// `Command` must be given none).
    pub(super) fn owns_env(&self) -> bool {
        self.env.is_some()
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
        if let Some(env) = &self.env {
            env.install_in_child();
        }
        Ok(())
    }
}

/// The child's environment as a C `envp`, with a slot for `LISTEN_PID`.
struct EnvBlock {
    _strings: Vec<CString>,
    /// `PID_SLOT` bytes from `Box::into_raw`, freed on drop; written only
    /// in the child.
    pid_slot: *mut u8,
    /// Pointers into `_strings` and `pid_slot`, then NULL.
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into memory this value owns. The parent
// never reads or writes through them except to free `pid_slot` on drop;
// only a forked child (a single thread, with its own copy of the memory)
// writes `pid_slot` and reads `envp`.
unsafe impl Send for EnvBlock {}
// SAFETY: as above: no shared access in the parent goes through the pointers.
unsafe impl Sync for EnvBlock {}

impl EnvBlock {
    fn new(spec: &ProcessSpec) -> io::Result<EnvBlock> {
        let mut vars: BTreeMap<OsString, OsString> =
            if spec.env_clear { BTreeMap::new() } else { std::env::vars_os().collect() };
        for (k, v) in &spec.envs {
            match v {
                Some(v) => vars.insert(k.clone(), v.clone()),
                None => vars.remove(k),
            };
        }
        vars.remove(std::ffi::OsStr::new("LISTEN_PID"));
        vars.insert("LISTEN_FDS".into(), spec.fds.listen.len().to_string().into());
        vars.insert("LISTEN_FDNAMES".into(), spec.fds.names().into());
        let mut strings = Vec::with_capacity(vars.len());
        for (k, v) in vars {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            strings.push(CString::new(kv).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?);
        }
        let mut slot = Box::new([0u8; PID_SLOT]);
        slot[..LISTEN_PID.len()].copy_from_slice(LISTEN_PID);
        let pid_slot = Box::into_raw(slot).cast::<u8>();
        let mut envp: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        envp.push(pid_slot.cast_const().cast());
        envp.push(std::ptr::null());
        Ok(EnvBlock { _strings: strings, pid_slot, envp })
    }

    /// In the child: writes its pid into the slot and makes the block the
    /// process's environment.
    fn install_in_child(&self) {
        // SAFETY: getpid(2) is async-signal-safe and cannot fail.
        let pid = unsafe { libc::getpid() } as u32;
        let mut digits = [0u8; 10];
        let mut n = 0;
        let mut rest = pid;
        loop {
            digits[n] = b'0' + (rest % 10) as u8;
            n += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for i in 0..n {
            // SAFETY: the slot has PID_SLOT bytes: 11 of prefix, at most
            // 10 digits (a u32), then the NUL written below; only this
            // single-threaded child, with its own copy of the memory,
            // writes it, and nothing holds a reference to it.
            unsafe { *self.pid_slot.add(LISTEN_PID.len() + i) = digits[n - 1 - i] };
        }
        // SAFETY: as above, within the slot.
        unsafe { *self.pid_slot.add(LISTEN_PID.len() + n) = 0 };
        // SAFETY: the child is single-threaded, so nothing reads `environ`
        // concurrently; `envp` is NULL-terminated and lives until exec,
        // which copies it (the hook's owner, the Command, outlives the
        // exec call in the child).
        unsafe { environ = self.envp.as_ptr() };
    }
}

impl Drop for EnvBlock {
    fn drop(&mut self) {
        // SAFETY: made by Box::into_raw of a [u8; PID_SLOT] in `new`, and
        // freed only here.
        drop(unsafe { Box::from_raw(self.pid_slot.cast::<[u8; PID_SLOT]>()) });
    }
}

extern "C" {
    /// The process environment, POSIX `environ(7)`; `execvp` reads it.
    static mut environ: *const *const libc::c_char;
}
