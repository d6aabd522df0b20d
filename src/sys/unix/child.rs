//! What procsup does in the child between fork and exec on the `Command`
//! path (a spec with user hooks, systems other than Linux x86_64), before
//! any user hook: entering its cgroup, a clean signal state, the umask,
//! the parent-death signal. procsup's own spawn (`clone_child.rs`) does the
//! same steps without `fork`.
//!
//! The parent decides what is needed ([`ChildSteps::plan`]): a few
//! `sigaction` queries tell which signals the host ignores or catches, one
//! `pthread_sigmask` query what the spawning thread blocks. When nothing is
//! needed, no hook is installed and `Command` keeps its `posix_spawn` fast
//! path. The child ([`ChildSteps::run`]) then only makes async-signal-safe
//! system calls on data copied before the fork.
//!
//! What `std::process::Command` does itself, measured on the toolchain this
//! crate is tested with (`tests/real_clean_start.rs`): it resets SIGPIPE to
//! its default on both paths (the Rust runtime ignores it), and it leaves
//! the signal mask as the spawning thread had it, on both paths. So a host
//! that blocks a signal (the `signalfd` pattern) always takes the fork path
//! here: `posix_spawn` could clear the mask, but `Command` does not ask it to.
//!
//! One window is std's, not ours: between the fork and the first hook, std
//! sets up stdio, credentials, and the working directory
//! while the host's handlers are still installed. A signal that arrives in
//! those few system calls runs a host handler in the child. Nothing procsup
//! sends can arrive there (the child's pid is not known yet).

use std::io;
use std::os::fd::RawFd;

/// A set of signals 1..=64, as a bit mask (bit `n - 1` is signal `n`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct SigBits(u64);

impl SigBits {
    fn with(self, sig: libc::c_int) -> Self {
        SigBits(self.0 | 1 << (sig - 1))
    }

    fn without(self, sig: libc::c_int) -> Self {
        SigBits(self.0 & !(1 << (sig - 1)))
    }

    fn contains(self, sig: libc::c_int) -> bool {
        self.0 & 1 << (sig - 1) != 0
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The highest signal number that can have a disposition here.
fn max_signal() -> libc::c_int {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        libc::SIGRTMAX().min(64)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        31
    }
}

/// The host's signal state as a spawned child would inherit it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct HostSignals {
    /// Set to `SIG_IGN`: survives exec.
    pub(super) ignored: SigBits,
    /// A handler: reset by exec, but live between fork and exec.
    pub(super) caught: SigBits,
    /// Whether the calling thread blocks any signal: survives exec.
    pub(super) blocked: bool,
}

impl HostSignals {
    /// Asks the kernel: one `sigaction` query per signal and one
    /// `pthread_sigmask` query, no allocation.
    pub(super) fn query() -> Self {
        let mut host = HostSignals::default();
        for sig in 1..=max_signal() {
            // SAFETY: sigaction(2) with a null new action only reads the
            // current one into `old`, a valid, writable sigaction. Signals
            // the C library reserves for itself answer EINVAL: skipped.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
                continue;
            }
            match old.sa_sigaction {
                libc::SIG_DFL => {}
                libc::SIG_IGN => host.ignored = host.ignored.with(sig),
                _ => host.caught = host.caught.with(sig),
            }
        }
        // SAFETY: pthread_sigmask(3) with a null new set only reads the
        // calling thread's mask into `set`, a valid, writable sigset_t.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        if unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set) } == 0 {
            // SAFETY: sigismember(3) reads the set just filled in.
            host.blocked = (1..=max_signal()).any(|sig| unsafe { libc::sigismember(&set, sig) } == 1);
        } else {
            host.blocked = true;
        }
        host
    }
}

/// The parent-death signal, and the parent it is about.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) struct Death {
    pub(super) signal: libc::c_int,
    /// The host's pid, read before the fork.
    pub(super) parent: libc::pid_t,
}

/// Everything procsup does in the child, as plain data copied into the
/// hook before the fork.
#[derive(Clone, Copy, Debug)]
pub(super) struct ChildSteps {
    /// The open `cgroup.procs` of the cgroup the child enters.
    cgroup_procs: Option<RawFd>,
    /// Signals to set to `SIG_DFL`: every one the host ignores or catches.
    reset: SigBits,
    umask: Option<libc::mode_t>,
    death: Option<Death>,
    /// `setsid(2)`: the child leads a session (and so a process group) of
    /// its own, which no process outside its tree can join.
    session: bool,
}

impl ChildSteps {
    /// What the child must do, or `None` when nothing: then no hook is
    /// needed and `Command` may use `posix_spawn`. `hooks` says whether
    /// user hooks will run (they force the fork path, in which caught
    /// signals matter until exec).
    pub(super) fn plan(
        host: HostSignals,
        cgroup_procs: Option<RawFd>,
        umask: Option<libc::mode_t>,
        death: Option<Death>,
        session: bool,
        hooks: bool,
    ) -> Option<Self> {
        // std resets SIGPIPE itself on both paths; anything else ignored or
        // blocked would survive exec.
        let dirty = host.blocked || !host.ignored.without(libc::SIGPIPE).is_empty();
        if !dirty && cgroup_procs.is_none() && umask.is_none() && death.is_none() && !session && !hooks {
            return None;
        }
        Some(ChildSteps { cgroup_procs, reset: SigBits(host.ignored.0 | host.caught.0), umask, death, session })
    }

    /// Runs in the child, after fork and before any user hook.
    /// Async-signal-safe: system calls only, on data owned by `self`.
    pub(super) fn run(&self) -> io::Result<()> {
        // SAFETY: setsid(2) is async-signal-safe (signal-safety(7)); a
        // fresh child is no group leader, so it cannot fail with EPERM.
        if self.session && unsafe { libc::setsid() } < 0 {
            return Err(io::Error::last_os_error());
        }
        // First, before anything of the child can fork: its cgroup.
        if let Some(fd) = self.cgroup_procs {
            super::cgroup::enter(fd)?;
        }
        // Then dispositions: from here on no host handler can run in the
        // child, whatever the rest of the steps (or a user hook) raise.
        // SAFETY: an all-zero sigaction is SIG_DFL with no flags; its mask
        // is then emptied with sigemptyset(3), async-signal-safe.
        let mut default: libc::sigaction = unsafe { std::mem::zeroed() };
        default.sa_sigaction = libc::SIG_DFL;
        unsafe { libc::sigemptyset(&mut default.sa_mask) };
        for sig in 1..=64 {
            if self.reset.contains(sig) {
                // SAFETY: sigaction(2) is async-signal-safe; `default` is
                // a valid action. A failure leaves that one signal as it
                // was, which is no reason to fail the spawn.
                unsafe { libc::sigaction(sig, &default, std::ptr::null_mut()) };
            }
        }
        // SAFETY: sigemptyset(3) and sigprocmask(2) are async-signal-safe;
        // the child has one thread, so the process mask is its mask.
        let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(mask) = self.umask {
            // SAFETY: umask(2) is async-signal-safe and cannot fail.
            unsafe { libc::umask(mask) };
        }
        if let Some(death) = self.death {
            die_with_parent(death)?;
        }
        Ok(())
    }
}

/// The spec's rlimits as plain data, copied into the child before the
/// fork: (resource, [soft, hard]), `len` of them; `u64::MAX` is no limit.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(super) struct Rlimits {
    pub(super) list: [(u32, [u64; 2]); crate::spec::MAX_RLIMITS],
    pub(super) len: usize,
}

impl Rlimits {
    /// Those of `spec`; `len` 0 when it sets none.
    pub(super) fn of(spec: &crate::spec::ProcessSpec) -> Rlimits {
        let mut r = Rlimits { list: [(0, [0; 2]); crate::spec::MAX_RLIMITS], len: 0 };
        for (slot, &(res, soft, hard)) in r.list.iter_mut().zip(&spec.rlimits) {
            *slot = (res.resource(), [soft, hard]);
            r.len += 1;
        }
        r
    }

    /// Sets them on the calling process; the first failure is returned.
    /// Async-signal-safe: one system call each, on data owned by `self`.
    pub(super) fn apply(&self) -> io::Result<()> {
        for &(resource, limit) in self.list.iter().take(self.len) {
            set_rlimit(resource, limit)?;
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn set_rlimit(resource: u32, limit: [u64; 2]) -> io::Result<()> {
    // SAFETY: prlimit64(2) with pid 0 sets the caller's own limit from a
    // `struct rlimit64` (two u64: soft, hard, RLIM64_INFINITY = all ones)
    // that `limit` is, and writes nothing (old_limit NULL). A raw system
    // call through syscall(2), which takes no lock: async-signal-safe.
    let rc = unsafe {
        libc::syscall(libc::SYS_prlimit64, 0, resource as libc::c_long, limit.as_ptr(), std::ptr::null_mut::<u64>())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn set_rlimit(resource: u32, limit: [u64; 2]) -> io::Result<()> {
    let conv = |v: u64| if v == u64::MAX { libc::RLIM_INFINITY } else { v as libc::rlim_t };
    let rl = libc::rlimit { rlim_cur: conv(limit[0]), rlim_max: conv(limit[1]) };
    // SAFETY: setrlimit(2) reads one `struct rlimit`; it is a plain system
    // call wrapper, taking no lock.
    if unsafe { libc::setrlimit(resource as _, &rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn die_with_parent(death: Death) -> io::Result<()> {
    // SAFETY: prctl(2) is a plain system call, async-signal-safe;
    // PR_SET_PDEATHSIG takes a signal number.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, death.signal as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // If the parent died before the prctl, the signal will never come:
    // deliver it ourselves. Dispositions are default and nothing is
    // blocked by now, so it acts as the kernel's would (its default
    // action), never as a host handler. Should it not end the child (a
    // signal whose default is to ignore), the spawn fails instead of
    // running the program for a parent that is gone.
    // SAFETY: getppid(2), getpid(2) and kill(2) are async-signal-safe.
    unsafe {
        if libc::getppid() != death.parent {
            libc::kill(libc::getpid(), death.signal);
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: Death) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI32, Ordering};

    static MARK_FD: AtomicI32 = AtomicI32::new(-1);

    extern "C" fn host_handler(_: libc::c_int) {
        let fd = MARK_FD.load(Ordering::Relaxed);
        // SAFETY: write(2) is async-signal-safe; `fd` is the pipe below.
        unsafe { libc::write(fd, b"H".as_ptr().cast(), 1) };
    }

    /// The re-check after `PR_SET_PDEATHSIG` with the parent already gone
    /// (a `parent` that is not ours): the child dies by the signal, and the
    /// host's handler for it never runs.
    #[test]
    fn the_parent_death_recheck_never_runs_a_host_handler() {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills two fds.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let [r, w] = fds;
        // SAFETY: the forked child only makes async-signal-safe calls
        // (sigaction, getppid, prctl, kill, write, _exit) and touches no
        // lock or allocator.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            MARK_FD.store(w, Ordering::Relaxed);
            // SAFETY: installs a handler that only writes to a pipe, in
            // this forked copy only.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = host_handler as extern "C" fn(libc::c_int) as usize;
                libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
            }
            let host = HostSignals::query();
            let steps = ChildSteps::plan(
                host,
                None,
                None,
                Some(Death { signal: libc::SIGTERM, parent: 1 << 30 }),
                false,
                false,
            )
            .expect("a death signal is work");
            let _ = steps.run();
            // Only reached if the signal did not end us.
            unsafe {
                libc::write(w, b"E".as_ptr().cast(), 1);
                libc::_exit(0)
            };
        }
        // SAFETY: closing our copy of the write end, then a blocking wait
        // for our own child.
        let mut status = 0;
        unsafe {
            libc::close(w);
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        }
        let mut buf = [0u8; 8];
        // SAFETY: reading into a local buffer; the write end is closed.
        let n = unsafe { libc::read(r, buf.as_mut_ptr().cast(), buf.len()) };
        unsafe { libc::close(r) };
        assert_eq!(n, 0, "the child wrote {:?}", &buf[..n.max(0) as usize]);
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTERM, "status {status:#x}");
    }

    #[test]
    fn nothing_to_do_keeps_the_fast_path() {
        let clean = HostSignals::default();
        assert!(ChildSteps::plan(clean, None, None, None, false, false).is_none());
        let pipe = HostSignals { ignored: SigBits::default().with(libc::SIGPIPE), ..clean };
        assert!(ChildSteps::plan(pipe, None, None, None, false, false).is_none(), "std resets SIGPIPE itself");
        let caught = HostSignals { caught: SigBits::default().with(libc::SIGTERM), ..clean };
        assert!(ChildSteps::plan(caught, None, None, None, false, false).is_none(), "exec resets handlers");
        let quit = HostSignals { ignored: SigBits::default().with(libc::SIGQUIT), ..clean };
        assert!(ChildSteps::plan(quit, None, None, None, false, false).is_some());
        assert!(ChildSteps::plan(HostSignals { blocked: true, ..clean }, None, None, None, false, false).is_some());
        assert!(ChildSteps::plan(clean, None, Some(0o22), None, false, false).is_some());
        let steps = ChildSteps::plan(caught, None, None, None, false, true).expect("hooks force the fork path");
        assert!(steps.reset.contains(libc::SIGTERM), "then handlers are reset too");
    }
}
