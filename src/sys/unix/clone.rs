//! procsup's own spawn on Linux (x86_64): a vfork-class clone that keeps
//! every guarantee of the `Command` path without its `fork`.
//!
//! `Command` leaves `posix_spawn` for `fork` as soon as anything must run
//! in the child (the parent-death signal, a clean signal state, a cgroup),
//! and a `fork` copies the host's page tables: its cost grows with the
//! host's memory. Here the child shares the host's memory
//! (`CLONE_VM|CLONE_VFORK`, as glibc's `posix_spawn` and Go's
//! `forkAndExecInChild` do), runs on a stack of its own, and the spawning
//! thread waits until it has exec'd or failed.
//!
//! - **The clone**: `clone3` with `CLONE_VM|CLONE_VFORK|CLONE_PIDFD`, and
//!   `CLONE_INTO_CGROUP` when the child gets a cgroup: it is born in it,
//!   and its pidfd comes from the clone itself. `clone(2)` with
//!   `CLONE_PIDFD` where `clone3` answers `ENOSYS` or `EPERM` (seccomp
//!   filters in containers); the child then enters its cgroup by writing
//!   to `cgroup.procs`. Where neither works (Linux before 5.2), `Command`.
//! - **Signals**: every signal is blocked in the spawning thread across
//!   the clone (raw `rt_sigprocmask`, so glibc's internal signals too), so
//!   no host handler can run in the child, which shares the host's
//!   memory; the child resets dispositions and empties its mask first
//!   (`clone_child.rs`), and the parent restores its own mask after.
//! - **Everything that allocates happens here, in the parent**, before
//!   the clone: argv, envp, the PATH search, the fd plan.
//! - **Errors**: a failing step stores its errno where the parent reads it
//!   once the clone returns; the parent reaps that child and fails the
//!   spawn with the errno, as std does.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::unistd::Pid;

use super::clone_child::{self, ChildArgs, PidSlot, MAX_MOVES};
use super::exec::Prepared;
use crate::spec::ProcessSpec;

const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of clone3(2), as of Linux 5.7 (`cgroup` last).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What this kernel has, learnt on the way: `None` until tried.
#[derive(Debug, Default)]
pub(super) struct Support {
    clone3: Option<bool>,
    into_cgroup: Option<bool>,
    /// `clone(2)` with `CLONE_PIDFD` (Linux 5.2).
    clone_pidfd: Option<bool>,
}

impl Support {
    /// Whether this path can be tried at all (else: `Command`).
    pub(super) fn usable(&self) -> bool {
        self.clone3 != Some(false) || self.clone_pidfd != Some(false)
    }

    /// Whether a child can be held ready: clone3 has worked here.
    pub(super) fn parks(&self) -> bool {
        self.clone3 == Some(true)
    }

    /// The clone the next spawn tries first.
    fn path(&self) -> &'static str {
        if self.clone3 == Some(false) {
            "clone"
        } else {
            "clone3"
        }
    }
}

/// A child's stack, with a guard page below it. A spawn at once uses one
/// mapped once per `UnixSys` (spawns are sequential, and such a child is
/// done with it once the clone returns). A successor held ready has its
/// own, inside its [`Held`], which is dropped or handed to the next
/// successor (`Spawner::keep_spare`) only once that child is done with
/// it: its end of the socket closed (`execve` closes it after leaving
/// this memory, `exit` after releasing it) or it was reaped.
#[derive(Debug)]
pub(super) struct Stack {
    base: *mut libc::c_void,
}

// SAFETY: the mapping is owned by this value; the host only maps, unmaps
// or hands it on, from the thread that holds `&mut UnixSys`, and a child
// runs on it only as said above.
unsafe impl Send for Stack {}
// SAFETY: `&Stack` gives no access to the mapping.
unsafe impl Sync for Stack {}

const STACK_LEN: usize = 256 * 1024;
const GUARD: usize = 4096;

impl Stack {
    pub(super) fn new() -> io::Result<Stack> {
        // SAFETY: mmap(2) of a fresh anonymous private mapping; checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // The lowest page faults: an overflow kills the child, never
        // writes into the host's memory.
        // SAFETY: mprotect(2) on the first page of the mapping just made.
        if unsafe { libc::mprotect(base, GUARD, libc::PROT_NONE) } != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: unmaps the mapping just made, used by nothing.
            unsafe { libc::munmap(base, STACK_LEN) };
            return Err(e);
        }
        Ok(Stack { base })
    }

    /// Where the mapping starts (a test seam: a stack used again).
    #[cfg(test)]
    pub(super) fn base(&self) -> usize {
        self.base as usize
    }

    /// The usable range: (lowest address, size), 16-byte aligned.
    fn range(&self) -> (usize, usize) {
        (self.base as usize + GUARD, STACK_LEN - GUARD)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: munmap(2) of the mapping this value owns; no child runs
        // on it any more (see the type's doc).
        unsafe { libc::munmap(self.base, STACK_LEN) };
    }
}

/// What the spawn needs beyond the spec, prepared by `UnixSys::spawn`.
pub(super) struct Extras<'a> {
    /// Variables to add (NOTIFY_SOCKET, LISTEN_FDS, ...).
    pub(super) env: &'a [(std::ffi::OsString, std::ffi::OsString)],
    /// Variables that hold the child's own pid (LISTEN_PID, WATCHDOG_PID).
    pub(super) pid_vars: &'a [&'a str],
    /// stdin, stdout, stderr sources (`None`: inherit).
    pub(super) stdio: [Option<RawFd>; 3],
    /// More (source, target) fds: the notify pipe, passed fds.
    pub(super) moves: Vec<(RawFd, RawFd)>,
    /// The cgroup's directory (for `CLONE_INTO_CGROUP`) and `cgroup.procs`.
    pub(super) cgroup: Option<(RawFd, RawFd)>,
    /// Ask for a pidfd.
    pub(super) pidfd: bool,
}

/// A spawned child: its pid, its pidfd (from the clone) and which clone.
pub(super) struct Spawned {
    pub(super) pid: Pid,
    pub(super) pidfd: Option<OwnedFd>,
    pub(super) path: &'static str,
    /// A child cloned into its cgroup was killed at birth; the one that
    /// runs entered it by `cgroup.procs`: that cgroup is not to be reused.
    pub(super) refused_into: bool,
}

/// What came of a spawn: a child, a child held ready with the memory it
/// runs on, a failure (and which clone failed), or no clone to be had here
/// (use `Command`).
pub(super) enum Outcome {
    Spawned(Spawned),
    Parked(Spawned, Held),
    Failed(io::Error, &'static str),
    Unsupported,
}

/// How a spawn goes: at once, on the shared stack (the clone returns once
/// the child has exec'd), or held ready: the child does every step, then
/// waits on its end of a socket for the host's word (`standby.rs`).
pub(super) enum How<'a> {
    Now(&'a Stack),
    /// The socket's child end, and a stack to run on if one is spare
    /// (a new one is mapped otherwise).
    Park(RawFd, Option<Stack>),
}

/// What a child held ready runs on until its exec: its arguments, the
/// buffers they point into, and its stack. It shares the host's memory and
/// runs while the host does (no `CLONE_VFORK`), so this must outlive its
/// use: until its end of the socket closes (its exec or its death) or it
/// is reaped.
pub(super) struct Held {
    args: ArgsPtr,
    _prepared: Prepared,
    _cwd: Option<CString>,
    _stack: Stack,
}

// SAFETY: the raw pointers in `args` point into `_prepared` and `_cwd`,
// owned here; the host side only reads the two atomics.
unsafe impl Send for Held {}
// SAFETY: as above: `&Held` reads atomics only.
unsafe impl Sync for Held {}

impl Held {
    /// Every step is done and the child waits for the word.
    pub(super) fn parked(&self) -> bool {
        self.args.parked()
    }

    /// The errno of the step (or exec) that failed; 0 if none did.
    pub(super) fn err(&self) -> i32 {
        self.args.err()
    }

    /// The stack, for another successor: only once this one is done with
    /// it (exec'd: its end of the socket closed, which `execve` does after
    /// it left this memory; or reaped), as for dropping it.
    pub(super) fn into_stack(self) -> Stack {
        self._stack
    }

    /// Where its stack starts (a test seam).
    #[cfg(test)]
    pub(super) fn stack_base(&self) -> usize {
        self._stack.base()
    }
}

/// The child's [`ChildArgs`], from `Box::into_raw` once they are filled:
/// the child writes through this pointer (its steps' errno, the lifted
/// fds, `parked`), for a child held ready while the host runs, so the
/// host never makes a reference to the whole struct after that, only to
/// its atomics, and writes only before the clone.
struct ArgsPtr(std::ptr::NonNull<ChildArgs>);

impl ArgsPtr {
    fn new(args: Box<ChildArgs>) -> ArgsPtr {
        ArgsPtr(std::ptr::NonNull::from(Box::leak(args)))
    }

    /// The pointer the child gets.
    fn arg(&self) -> *mut libc::c_void {
        self.0.as_ptr().cast()
    }

    /// Sets the `cgroup.procs` fd the child writes to (before a clone).
    fn set_cgroup_procs(&mut self, fd: RawFd) {
        // SAFETY: a live allocation; no child runs on it before the clone
        // this precedes (a vfork child is done once its clone returns).
        unsafe { (*self.0.as_ptr()).cgroup_procs = fd };
    }

    fn started(&self) -> bool {
        // SAFETY: a live allocation; the atomic may be shared with the
        // child that writes it.
        unsafe { (*std::ptr::addr_of!((*self.0.as_ptr()).started)).load(Ordering::SeqCst) }
    }

    fn parked(&self) -> bool {
        // SAFETY: as in `started`.
        unsafe { (*std::ptr::addr_of!((*self.0.as_ptr()).parked)).load(Ordering::SeqCst) }
    }

    fn err(&self) -> i32 {
        // SAFETY: as in `started`.
        unsafe { (*std::ptr::addr_of!((*self.0.as_ptr()).err)).load(Ordering::SeqCst) }
    }
}

impl Drop for ArgsPtr {
    fn drop(&mut self) {
        // SAFETY: made by `Box::leak` in `new`, dropped once; a vfork child
        // is done with it once its clone returned, and a `Held`'s owner
        // drops it only once the child has exec'd or is gone.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("parked", &self.parked()).field("err", &self.err()).finish()
    }
}

/// Spawns `spec`. `fail_clone3`: a test seam, clone3 answers this errno.
pub(super) fn spawn(
    spec: &ProcessSpec,
    extras: Extras<'_>,
    how: How<'_>,
    support: &mut Support,
    fail_clone3: Option<i32>,
) -> Outcome {
    // Held ready only where clone3 is known to work: the `clone(2)`
    // fallback has no such path.
    let (shared, own_stack, park) = match how {
        How::Now(stack) => (Some(stack), None, -1),
        How::Park(..) if support.clone3 != Some(true) || fail_clone3.is_some() => return Outcome::Unsupported,
        How::Park(fd, Some(spare)) => (None, Some(spare), fd),
        How::Park(fd, None) => match Stack::new() {
            Ok(stack) => (None, Some(stack), fd),
            Err(e) => return Outcome::Failed(e, support.path()),
        },
    };
    let Some(stack) = shared.or(own_stack.as_ref()) else {
        return Outcome::Unsupported;
    };
    let changes = spec
        .envs
        .iter()
        .map(|(k, v)| (k.as_os_str(), v.as_deref()))
        .chain(extras.env.iter().map(|(k, v)| (k.as_os_str(), Some(v.as_os_str()))));
    let env = super::exec::child_env(spec.env_clear, changes);
    let mut prepared = match Prepared::new(&spec.program, &spec.args, env, spec.cwd.as_deref(), extras.pid_vars) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e, support.path()),
    };
    let cwd = match spec.cwd.as_deref().map(|d| CString::new(d.as_os_str().as_bytes())) {
        Some(Ok(c)) => Some(c),
        Some(Err(_)) => return Outcome::Failed(io::ErrorKind::InvalidInput.into(), support.path()),
        None => None,
    };
    let mut moves: Vec<(RawFd, RawFd)> =
        extras.stdio.iter().enumerate().filter_map(|(t, s)| s.map(|s| (s, t as RawFd))).collect();
    moves.extend(&extras.moves);
    if moves.len() > MAX_MOVES {
        return Outcome::Failed(io::Error::from_raw_os_error(libc::EINVAL), support.path());
    }
    let mut args = Box::new(ChildArgs {
        err: AtomicI32::new(0),
        started: Default::default(),
        process_group: spec.process_group,
        death_signal: spec.die_with_parent.map_or(0, |s| s as libc::c_int),
        parent: std::process::id() as libc::pid_t,
        cgroup_procs: -1,
        umask: spec.umask.map_or(-1, i64::from),
        rlimits: super::child::Rlimits::of(spec),
        drop_groups: spec.uid.is_some(),
        gid: spec.gid.map_or(-1, i64::from),
        uid: spec.uid.map_or(-1, i64::from),
        cwd: cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        moves: [(-1, -1); MAX_MOVES],
        moves_len: moves.len(),
        above: moves.iter().map(|&(_, t)| t).max().unwrap_or(2).saturating_add(1),
        lifted: [-1; MAX_MOVES],
        pid_slots: [PidSlot { entry: std::ptr::null_mut(), at: 0 }; 2],
        pid_slots_len: 0,
        candidates: prepared.candidates(),
        argv: prepared.argv(),
        envp: prepared.envp(),
        park,
        parked: Default::default(),
    });
    for (slot, &m) in args.moves.iter_mut().zip(&moves) {
        *slot = m;
    }
    let slots: Vec<(*mut u8, usize)> = prepared.pid_slots().collect();
    for (slot, (entry, at)) in args.pid_slots.iter_mut().zip(slots) {
        *slot = PidSlot { entry, at };
        args.pid_slots_len += 1;
    }

    let mut pidfd: libc::c_int = -1;
    let mut args = ArgsPtr::new(args);
    let arg = args.arg();
    let (lowest, size) = stack.range();
    let mut result: Result<(isize, &'static str), i32> = Err(libc::ENOSYS);
    let mut refused_into = false;
    // Every signal blocked across the clone (see the module doc).
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask(2) with 8-byte sets that are locals here; it
    // changes the calling thread's mask only, restored below.
    unsafe {
        clone_child::raw::syscall6(
            libc::SYS_rt_sigprocmask,
            [libc::SIG_SETMASK as usize, &all as *const u64 as usize, &mut old as *mut u64 as usize, 8, 0, 0],
        );
    }
    if support.clone3 != Some(false) {
        let mut into = extras.cgroup.filter(|_| support.into_cgroup != Some(false));
        loop {
            let mut cl = CloneArgs {
                flags: libc::CLONE_VM as u64
                    | if park < 0 { libc::CLONE_VFORK as u64 } else { 0 }
                    | if extras.pidfd { CLONE_PIDFD } else { 0 }
                    | if into.is_some() { CLONE_INTO_CGROUP } else { 0 },
                pidfd: &mut pidfd as *mut libc::c_int as u64,
                exit_signal: libc::SIGCHLD as u64,
                stack: lowest as u64,
                stack_size: size as u64,
                cgroup: into.map_or(0, |(dir, _)| dir as u64),
                ..CloneArgs::default()
            };
            args.set_cgroup_procs(if into.is_some() { -1 } else { extras.cgroup.map_or(-1, |(_, procs)| procs) });
            let ret = match fail_clone3 {
                Some(errno) => -(errno as isize),
                // SAFETY: clone3(2) with CLONE_VM (and CLONE_VFORK, or a
                // child held ready whose memory `Held` keeps), a stack of
                // our own and `child_main` as the child's first function,
                // which never returns (see clone3_vfork).
                None => unsafe { clone3_vfork(&mut cl, arg) },
            };
            // (A child held ready runs on: whether it was killed at birth
            // shows when the host gives the word, as it never parks.)
            if park < 0 && ret >= 0 && into.is_some() && !args.started() {
                // Killed at birth, before its first instruction: Linux 6.x
                // kills a child cloned into a cgroup that it (or an
                // ancestor) was ever `cgroup.kill`ed, comparing the kill
                // count with the parent's cgroup's. Entering by a write to
                // `cgroup.procs` after the fork is not subject to it.
                // SAFETY: with CLONE_PIDFD the kernel stored a new fd here.
                let fd = (extras.pidfd && pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
                reap_failed(Pid::from_raw(ret as i32), fd.as_ref());
                pidfd = -1;
                refused_into = true;
                into = None;
                continue;
            }
            if ret >= 0 {
                support.clone3 = Some(true);
                if into.is_some() {
                    support.into_cgroup = Some(true);
                }
                result = Ok((ret, "clone3"));
                break;
            }
            let errno = -ret as i32;
            if into.is_some() && support.into_cgroup.is_none() && !matches!(errno, libc::ENOSYS | libc::EPERM) {
                // Before Linux 5.7 the flag is unknown (EINVAL) or the
                // struct too large (E2BIG): the child writes cgroup.procs
                // from now on. Any other error (a full pids.max, a cgroup
                // this kernel will not clone into): this spawn retries so.
                if matches!(errno, libc::EINVAL | libc::E2BIG) {
                    support.into_cgroup = Some(false);
                }
                into = None;
                continue;
            }
            if matches!(errno, libc::ENOSYS | libc::EPERM) && support.clone3.is_none() {
                // No clone3 here (seccomp answers ENOSYS or EPERM); once it
                // has worked, an EPERM is this spawn's own failure.
                support.clone3 = Some(false);
            }
            result = Err(errno);
            break;
        }
    }
    if support.clone3 == Some(false) && support.clone_pidfd != Some(false) {
        args.set_cgroup_procs(extras.cgroup.map_or(-1, |(_, procs)| procs));
        let flags =
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD | if extras.pidfd { libc::CLONE_PIDFD } else { 0 };
        // SAFETY: glibc's clone(2) wrapper with CLONE_VM|CLONE_VFORK, the
        // top of a stack of our own (16-byte aligned), and a first
        // function that never returns; with CLONE_PIDFD the kernel stores
        // the pidfd where the parent_tid argument points.
        let ret = unsafe {
            libc::clone(
                clone_child::child_main_c,
                (lowest + size) as *mut libc::c_void,
                flags,
                arg,
                &mut pidfd as *mut libc::c_int,
            )
        };
        if ret >= 0 {
            support.clone_pidfd = Some(true);
            result = Ok((ret as isize, "clone"));
        } else {
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL);
            if errno == libc::EINVAL && extras.pidfd && support.clone_pidfd.is_none() {
                support.clone_pidfd = Some(false); // before Linux 5.2
            }
            result = Err(errno);
        }
    }
    // SAFETY: as above: puts back the mask saved before the clone.
    unsafe {
        clone_child::raw::syscall6(
            libc::SYS_rt_sigprocmask,
            [libc::SIG_SETMASK as usize, &old as *const u64 as usize, 0, 8, 0, 0],
        );
    }
    let (ret, path) = match result {
        Ok(ok) => ok,
        Err(_) if !support.usable() => return Outcome::Unsupported,
        Err(errno) => return Outcome::Failed(io::Error::from_raw_os_error(errno), support.path()),
    };
    let pid = Pid::from_raw(ret as i32);
    // SAFETY: with CLONE_PIDFD the kernel stored a new fd here, ours alone.
    let pidfd = (extras.pidfd && pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    if let Some(stack) = own_stack {
        let spawned = Spawned { pid, pidfd, path, refused_into };
        return Outcome::Parked(spawned, Held { args, _prepared: prepared, _cwd: cwd, _stack: stack });
    }
    drop(prepared);
    let mut errno = args.err();
    if errno == 0 && !args.started() {
        // Killed before it ran (see above), where no retry was left.
        errno = libc::ECANCELED;
    }
    if errno != 0 {
        // The child failed before exec and exited: reap it, ours alone.
        reap_failed(pid, pidfd.as_ref());
        return Outcome::Failed(io::Error::from_raw_os_error(errno), path);
    }
    Outcome::Spawned(Spawned { pid, pidfd, path, refused_into })
}

/// Reaps a child that exited before exec (it has, or is about to: the
/// clone returned once it called `exit_group`). Blocks for that moment.
fn reap_failed(pid: Pid, pidfd: Option<&OwnedFd>) {
    loop {
        let ret = match pidfd {
            // SAFETY: waitid(2) P_PIDFD on our own child's pidfd, a
            // zeroed siginfo to fill.
            Some(fd) => unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(libc::P_PIDFD, fd.as_raw_fd() as libc::id_t, &mut info, libc::WEXITED)
            },
            // SAFETY: waitpid(2) on our own child, a local status.
            None => unsafe {
                let mut status = 0;
                libc::waitpid(pid.as_raw(), &mut status, 0).min(0)
            },
        };
        match (ret, io::Error::last_os_error().raw_os_error()) {
            (0, _) => return,
            (_, Some(libc::EINTR)) => {}
            // Linux 5.2 and 5.3 give pidfds without waitid(P_PIDFD).
            (_, Some(libc::EINVAL)) if pidfd.is_some() => return reap_failed(pid, None),
            _ => return,
        }
    }
}

/// clone3 with `CLONE_VM|CLONE_VFORK` on a stack of our own: the child
/// calls [`clone_child::child_main`]`(arg)` there and never comes back;
/// the parent returns the child's pid or `-errno`.
///
/// # Safety
///
/// `cl` must name a valid stack and `arg` a [`ChildArgs`] that outlive the
/// child's use of them (until this returns, with `CLONE_VFORK`).
unsafe fn clone3_vfork(cl: &mut CloneArgs, arg: *mut libc::c_void) -> isize {
    let ret: isize;
    // SAFETY: clone3(2) on x86_64: number in rax, args in rdi and rsi; in
    // the child the kernel returns 0 in rax on the new stack (`stack` +
    // `stack_size`, 16-byte aligned, so the `call` leaves the ABI's
    // alignment), with every other register as the parent had it but rcx
    // and r11: r12 and r13 still hold `arg` and the entry point. The child
    // clears the frame pointer and calls the entry, which never returns
    // (`ud2` should it). The parent takes the branch with the pid or
    // -errno in rax; its stack was not touched.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 as isize => ret,
            in("rdi") cl as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") clone_child::child_main as *const () as usize,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

#[cfg(test)]
// A test, not the library: it owns real time and may read clocks and sleep.
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    use crate::sys::{Sys, SysEvent};
    use crate::{ProcessSpec, UnixSys};

    /// Polls until `pid` has exited (bounded), and returns whether it did.
    fn reap(sys: &mut UnixSys, pid: nix::unistd::Pid) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut events = Vec::new();
        while Instant::now() < deadline {
            sys.poll(&mut events);
            if events.iter().any(
                |e| matches!(e, SysEvent::Exited { pid: p, .. } | SysEvent::LeaderExited { pid: p, .. } if *p == pid),
            ) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// The pidfd comes from the clone itself, on both clones: the kernel's
    /// `/proc/self/fdinfo` says it refers to the child, and it reaps it.
    #[test]
    fn the_clone_itself_gives_the_childs_pidfd() {
        for fail in [None, Some(libc::ENOSYS)] {
            let spec = ProcessSpec::new("p", "sleep").arg("5");
            let extras = super::Extras {
                env: &[],
                pid_vars: &[],
                stdio: [None; 3],
                moves: Vec::new(),
                cgroup: None,
                pidfd: true,
            };
            let stack = super::Stack::new().unwrap();
            let mut support = super::Support::default();
            let super::Outcome::Spawned(s) = super::spawn(&spec, extras, super::How::Now(&stack), &mut support, fail)
            else {
                panic!("{fail:?}: no child");
            };
            assert_eq!(s.path, if fail.is_some() { "clone" } else { "clone3" });
            let fd = s.pidfd.expect("a pidfd from the clone");
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
            assert!(info.lines().any(|l| l == format!("Pid:\t{}", s.pid)), "{fail:?}: {info}");
            // SAFETY: pidfd_send_signal(2) and waitid(2) on our own child's
            // pidfd, a zeroed siginfo to fill.
            unsafe {
                libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<u8>(), 0);
                let mut info: libc::siginfo_t = std::mem::zeroed();
                assert_eq!(libc::waitid(libc::P_PIDFD, fd.as_raw_fd() as libc::id_t, &mut info, libc::WEXITED), 0);
            }
        }
    }

    /// Where a cgroup is writable, the child is born in its own: the
    /// kernel took `CLONE_INTO_CGROUP`, no write to `cgroup.procs` was
    /// needed; and the `UnixSys` watches it by pidfd.
    #[test]
    fn a_child_is_born_in_its_cgroup() {
        let mut sys = UnixSys::new();
        let pid = sys.spawn(&ProcessSpec::new("t", "sh").args(["-c", "exec sleep 5"])).unwrap();
        assert_eq!(sys.last_spawn_path(), Some("clone3"));
        assert_eq!(sys.uses_pidfd(), Some(true));
        if let Some(dir) = sys.cgroup_dir().map(ToOwned::to_owned) {
            assert_eq!(sys.spawner.clone_support.into_cgroup, Some(true));
            let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            let place = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap().to_owned();
            assert!(place.contains(dir.file_name().unwrap().to_str().unwrap()), "{place} not under {}", dir.display());
        } else {
            eprintln!("no writable cgroup here: CLONE_INTO_CGROUP not exercised");
        }
        sys.signal(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(reap(&mut sys, pid));
    }

    /// A new `UnixSys`, its first child of `spec`, and its cgroup directory;
    /// `None` (the child reaped) where no cgroup is writable.
    fn first_in_a_cgroup(spec: &ProcessSpec) -> Option<(UnixSys, nix::unistd::Pid, std::path::PathBuf)> {
        let mut sys = UnixSys::new();
        let first = sys.spawn(spec).unwrap();
        let Some(root) = sys.cgroup_dir().map(ToOwned::to_owned) else {
            eprintln!("no writable cgroup here: spares not exercised");
            sys.signal(first, nix::sys::signal::Signal::SIGKILL).unwrap();
            assert!(reap(&mut sys, first));
            return None;
        };
        Some((sys, first, root))
    }

    /// The directory of the cgroup `pid` is in, a child of `root`.
    fn cgroup_of(root: &std::path::Path, pid: nix::unistd::Pid) -> std::path::PathBuf {
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        root.join(own.lines().find_map(|l| l.strip_prefix("0::")).unwrap().rsplit('/').next().unwrap())
    }

    /// A restarted child reuses its predecessor's empty cgroup (no `mkdir`
    /// or `rmdir` on the restart path); another name gets its own; spares
    /// are bounded, the oldest removed first, and all go with the root.
    #[test]
    fn a_restart_reuses_its_predecessors_empty_cgroup() {
        let spec = ProcessSpec::new("r", "sh").args(["-c", "exec sleep 5"]);
        let Some((mut sys, first, root)) = first_in_a_cgroup(&spec) else { return };
        let place = |pid| cgroup_of(&root, pid);
        let first_place = place(first);
        // It dies by itself (a crash): its cgroup is kept for the restart.
        nix::sys::signal::kill(first, nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(reap(&mut sys, first));
        assert_eq!(sys.cgroup_root().unwrap().spares(), 1);
        let other = sys.spawn(&ProcessSpec::new("o", "sh").args(["-c", "exec sleep 5"])).unwrap();
        assert_ne!(place(other), first_place, "another name never takes it");
        let second = sys.spawn(&spec).unwrap();
        assert_eq!(place(second), first_place, "the restart is born in its predecessor's cgroup");
        assert_eq!(sys.cgroup_root().unwrap().spares(), 0);
        // Let it run a moment: a child born into a reused cgroup must live.
        let mut events = Vec::new();
        for _ in 0..10 {
            sys.poll(&mut events);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(events.is_empty() && sys.child_count() == 2, "{events:?}");
        // A stop that escalates to cgroup.kill: that cgroup is not kept
        // (see CgroupRoot::retire); the crashed one is.
        sys.signal(second, nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(reap(&mut sys, second));
        assert_eq!(sys.cgroup_root().unwrap().spares(), 0);
        nix::sys::signal::kill(other, nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(reap(&mut sys, other));
        assert_eq!(sys.cgroup_root().unwrap().spares(), 1);
        // Bounded: past MAX_SPARES the oldest is removed.
        let cg = sys.cgroup_root().unwrap();
        let extra = super::super::cgroup::MAX_SPARES + 3 - cg.spares();
        for i in 0..extra {
            let (child, _, _) = cg.child(&format!("n{i}"), &Default::default()).unwrap();
            cg.retire(&format!("n{i}"), child);
        }
        assert_eq!(cg.spares(), super::super::cgroup::MAX_SPARES);
        // Only the newest keep their cgroup.events open: a host of many
        // names holds no more fds for them than that.
        assert_eq!(cg.open_spares(), super::super::cgroup::OPEN_SPARES);
        // An older one, without its fd, is still reused.
        let older = format!("n{}", extra - super::super::cgroup::OPEN_SPARES - 1);
        let before = cg.spares();
        let (child, _, _) = cg.child(&older, &Default::default()).unwrap();
        assert_eq!(cg.spares(), before - 1, "{older} was not reused");
        assert_eq!(cg.open_spares(), super::super::cgroup::OPEN_SPARES);
        cg.retire(&older, child);
        assert_eq!(cg.open_spares(), super::super::cgroup::OPEN_SPARES);
        drop(sys);
        assert!(!root.exists(), "{} left behind", root.display());
    }

    /// A spare someone changed since (frozen, or with a controller enabled
    /// for sub-cgroups, where `CLONE_INTO_CGROUP` fails) is not reused: the
    /// restart gets a new cgroup and runs; the changed one is removed.
    #[test]
    fn a_spare_changed_by_someone_else_is_made_anew() {
        let spec = ProcessSpec::new("r", "sleep").arg("5");
        let Some((mut sys, first, root)) = first_in_a_cgroup(&spec) else { return };
        let place = |pid| cgroup_of(&root, pid);
        // A controller offered to the children's cgroups, so that one can
        // be enabled below them.
        let parent = root.parent().unwrap().join("cgroup.controllers");
        let offered = std::fs::read_to_string(parent).unwrap_or_default();
        let controller = offered.split_whitespace().find_map(|c| {
            let c: &'static str = Box::leak(c.to_owned().into_boxed_str());
            sys.cgroup_root().unwrap().enable(c).is_ok().then_some(c)
        });
        let mut pid = first;
        for change in ["cgroup.freeze", "cgroup.subtree_control"] {
            let dir = place(pid);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
            assert!(reap(&mut sys, pid));
            assert_eq!(sys.cgroup_root().unwrap().spares(), 1);
            match (change, &controller) {
                ("cgroup.freeze", _) => std::fs::write(dir.join(change), "1").unwrap(),
                (_, Some(c)) => std::fs::write(dir.join(change), format!("+{c}")).unwrap(),
                (_, None) => {
                    eprintln!("no controller offered here: the sub-cgroup controller case is not exercised");
                    drop(sys);
                    assert!(!root.exists(), "{} left behind", root.display());
                    return;
                }
            }
            pid = sys.spawn(&spec).unwrap();
            assert_ne!(place(pid), dir, "a spare with {change} changed was reused");
            assert!(!dir.exists(), "{} ({change} changed) left behind", dir.display());
            let mut events = Vec::new();
            for _ in 0..5 {
                sys.poll(&mut events);
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(events.is_empty() && sys.child_count() == 1, "{change}: {events:?}");
        }
        sys.signal(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(reap(&mut sys, pid));
        drop(sys);
        assert!(!root.exists(), "{} left behind", root.display());
    }

    /// After a `cgroup.kill` of the directory above (an operator, systemd),
    /// Linux 6.x kills a child cloned into a cgroup under it at birth; the
    /// spawn notices (the child never ran), enters that child by
    /// `cgroup.procs` instead, and that cgroup is not reused.
    #[test]
    fn a_child_killed_at_birth_is_spawned_again_by_cgroup_procs() {
        let Some(scratch) = super::super::cgroup::ScratchCgroup::new("birth") else { return };
        let parent = scratch.0.clone();
        let mut sys = UnixSys::new().cgroup_parent(&parent).unwrap();
        let spec = ProcessSpec::new("w", "sh").args(["-c", "exec sleep 5"]);
        let first = sys.spawn(&spec).unwrap();
        nix::sys::signal::kill(first, nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(reap(&mut sys, first));
        assert_eq!(sys.cgroup_root().unwrap().spares(), 1, "the crashed child's cgroup is kept");
        // The directory above is killed from outside: nothing lives there.
        std::fs::write(parent.join("cgroup.kill"), "1").unwrap();
        let second = sys.spawn(&spec).unwrap();
        let mut events = Vec::new();
        for _ in 0..10 {
            sys.poll(&mut events);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(events.is_empty() && sys.child_count() == 1, "the restart must live: {events:?}");
        nix::sys::signal::kill(second, nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(reap(&mut sys, second));
        assert_eq!(sys.cgroup_root().unwrap().spares(), 0, "a cgroup that refused the clone is not kept");
        drop(sys);
    }

    /// A spare that someone froze (or gave controllers to) since is not
    /// reused: a child born frozen never reaches exec, and the spawn would
    /// wait for it forever.
    #[test]
    fn a_frozen_spare_is_made_anew() {
        let mut sys = UnixSys::new();
        let spec = ProcessSpec::new("f", "sh").args(["-c", "exec sleep 5"]);
        let first = sys.spawn(&spec).unwrap();
        let Some(root) = sys.cgroup_dir().map(ToOwned::to_owned) else {
            eprintln!("no writable cgroup here: not exercised");
            nix::sys::signal::kill(first, nix::sys::signal::Signal::SIGKILL).unwrap();
            assert!(reap(&mut sys, first));
            return;
        };
        nix::sys::signal::kill(first, nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(reap(&mut sys, first));
        let spare = std::fs::read_dir(&root).unwrap().flatten().find(|e| e.path().is_dir()).unwrap().path();
        std::fs::write(spare.join("cgroup.freeze"), "1").unwrap();
        let second = sys.spawn(&spec).unwrap();
        let own = std::fs::read_to_string(format!("/proc/{second}/cgroup")).unwrap();
        assert!(!own.contains(spare.file_name().unwrap().to_str().unwrap()), "born in the frozen spare: {own}");
        nix::sys::signal::kill(second, nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(reap(&mut sys, second));
        drop(sys);
        if spare.exists() {
            // Removal failed while frozen? Thaw and remove it ourselves.
            let _ = std::fs::write(spare.join("cgroup.freeze"), "0");
            let _ = std::fs::remove_dir(&spare);
        }
        assert!(!root.exists(), "{} left behind", root.display());
    }

    /// A step that fails in the child (`chdir`, `execve`) fails the spawn
    /// with its errno, and the spawn reaps that child: this thread has no
    /// child left, not even a zombie (`/proc/thread-self/children` lists
    /// the children of the calling thread only, so other tests' children
    /// do not count).
    #[test]
    fn a_failing_step_is_the_spawns_errno_and_leaves_no_zombie() {
        let mut sys = UnixSys::new().without_cgroups();
        for (spec, errno) in [
            (ProcessSpec::new("cwd", "true").current_dir("/no/such/dir"), libc::ENOENT),
            (ProcessSpec::new("exec", "/no/such/program"), libc::ENOENT),
            (ProcessSpec::new("dir", "/etc/passwd/x"), libc::ENOTDIR),
            (ProcessSpec::new("acces", "/etc/passwd"), libc::EACCES),
        ] {
            let err = sys.spawn(&spec).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(errno), "{}: {err}", spec.name);
            assert_eq!(sys.child_count(), 0);
            match std::fs::read_to_string("/proc/thread-self/children") {
                Ok(children) => assert_eq!(children.trim(), "", "{}: a failed child was left", spec.name),
                Err(e) => eprintln!("no /proc/thread-self/children here ({e}): zombies not checked"),
            }
        }
    }
}
