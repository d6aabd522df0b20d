//! The child half of procsup's own spawn (`clone.rs`): what runs between a
//! `CLONE_VM|CLONE_VFORK` clone and `execve`.
//!
//! The child shares the host's memory and runs on a stack of its own while
//! the spawning thread is suspended, so it may touch nothing the host's
//! other threads could hold: no allocation, no lock, no libc call that sets
//! `errno` or takes a lock (glibc's `setuid` would even signal the host's
//! threads), no thread-local, and no panic (the panic machinery allocates
//! and locks). It makes raw system calls only (`syscall` instruction, the
//! result in a register), on plain data the parent prepared
//! ([`ChildArgs`]), and reports a failing step's errno by storing it into
//! that data before it exits; the parent reads it once the clone returns.
//! The steps run in this order:
//!
//! 1. every signal the host ignores or catches back to `SIG_DFL`, then an
//!    empty signal mask (the parent blocked every signal before the clone,
//!    so no host handler can run here before this);
//! 2. `setsid()`: a session and process group of the child's own;
//! 3. entering the cgroup (when `CLONE_INTO_CGROUP` did not already);
//! 4. `umask`, the spec's rlimits (`prlimit64`), `setgroups`/`setgid`/`setuid`, then `PR_SET_PDEATHSIG` and
//!    the parent re-check (the kernel clears the parent-death signal when
//!    the effective uid or gid changes, so it cannot come before them, as
//!    the spawn issue's order had it), then `chdir`;
//! 5. the fd plan: stdio, capture pipes, the notify pipe, passed fds, and
//!    every other fd above 2 close-on-exec; then, for a successor held
//!    ready (`standby.rs`), the wait for the host's word; then
//!    `LISTEN_PID` and `WATCHDOG_PID`;
//! 6. `execve`.
//!
//! A successor held ready is cloned without `CLONE_VFORK`: it shares the
//! host's memory while the host runs on, so the same rules hold for longer,
//! and the parent keeps [`ChildArgs`] and the stack alive until the child
//! has exec'd or is gone (`standby.rs`).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

/// Raw Linux system calls on x86_64: the result, or `-errno`. Nothing
/// else is touched (no `errno`, no lock).
pub(super) mod raw {
    /// # Safety
    ///
    /// The caller must pass arguments valid for system call `n` (pointers
    /// to memory of the size the call reads or writes).
    #[inline(always)]
    pub(in crate::sys::unix) unsafe fn syscall6(n: libc::c_long, a: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the x86_64 Linux system call ABI (syscall(2), "Architecture
        // calling conventions"): number in rax, arguments in rdi, rsi, rdx,
        // r10, r8, r9, the result in rax; the kernel clobbers rcx and r11
        // and nothing else. The caller vouches for the arguments.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a[0],
                in("rsi") a[1],
                in("rdx") a[2],
                in("r10") a[3],
                in("r8") a[4],
                in("r9") a[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }
}

use raw::syscall6;

/// The most fds the child places (stdin, stdout, stderr, the notify pipe,
/// and the passed fds).
pub(super) const MAX_MOVES: usize = crate::pool::MAX_PASSED_FDS + 4;

/// The kernel's `struct sigaction` for `rt_sigaction(2)` on x86_64 (not
/// glibc's, whose mask is 128 bytes and whose layout differs).
#[repr(C)]
#[derive(Clone, Copy)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Where one pid variable's digits go: the entry (`NAME=` and room for
/// eleven bytes) and the offset after the `=`.
#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct PidSlot {
    pub(super) entry: *mut u8,
    pub(super) at: usize,
}

/// Everything the child needs, prepared by the parent: plain data and
/// pointers into buffers the parent owns and keeps alive until the clone
/// returns. The child writes only `err` and the pid slots' digits.
#[repr(C)]
pub(super) struct ChildArgs {
    /// The errno of the step that failed (0: exec succeeded).
    pub(super) err: AtomicI32,
    /// Set by the child's first instruction: a child killed at birth (in
    /// the kernel's fork path) never sets it.
    pub(super) started: std::sync::atomic::AtomicBool,
    pub(super) process_group: bool,
    /// `PR_SET_PDEATHSIG`'s signal (0: none) and the host's pid.
    pub(super) death_signal: libc::c_int,
    pub(super) parent: libc::pid_t,
    /// The `cgroup.procs` to write "0" to (-1: none, or entered by the clone).
    pub(super) cgroup_procs: RawFd,
    /// The umask (-1: leave it).
    pub(super) umask: i64,
    /// The spec's rlimits, set after the umask, before the credentials
    /// (raising a hard limit needs the privilege the credentials may drop).
    pub(super) rlimits: super::child::Rlimits,
    /// Drop supplementary groups (std does, when a uid is set).
    pub(super) drop_groups: bool,
    /// The gid and uid (-1: leave them).
    pub(super) gid: i64,
    pub(super) uid: i64,
    /// The working directory, a C string (null: leave it).
    pub(super) cwd: *const libc::c_char,
    /// (source, target) fd pairs, `moves_len` of them.
    pub(super) moves: [(RawFd, RawFd); MAX_MOVES],
    pub(super) moves_len: usize,
    /// One above the highest target: sources below it are lifted first.
    pub(super) above: RawFd,
    /// Scratch room for the lifted sources (the child writes it).
    pub(super) lifted: [RawFd; MAX_MOVES],
    pub(super) pid_slots: [PidSlot; 2],
    pub(super) pid_slots_len: usize,
    /// The paths to try, in `execvp`'s order, NULL-terminated.
    pub(super) candidates: *const *const libc::c_char,
    pub(super) argv: *const *const libc::c_char,
    pub(super) envp: *const *const libc::c_char,
    /// A successor held ready: its end of the socket the host's word comes
    /// on (-1: none, exec at once).
    pub(super) park: RawFd,
    /// Set once it waits for that word, every step before done.
    pub(super) parked: std::sync::atomic::AtomicBool,
}

/// The child's entry point, on its own stack. Never returns: it execs or
/// exits with status 127 after storing the failing step's errno.
///
/// # Safety
///
/// `arg` points to a [`ChildArgs`] whose pointers are valid, called only
/// as the first function of a `CLONE_VM|CLONE_VFORK` child.
pub(super) unsafe extern "C" fn child_main(arg: *mut libc::c_void) -> ! {
    // SAFETY: the caller passes the parent's ChildArgs, alive while the
    // parent is suspended (CLONE_VFORK); the child only reads it, but for
    // `err` (an atomic) and the pid slots' buffers.
    let args = unsafe { &mut *(arg as *mut ChildArgs) };
    args.started.store(true, Ordering::SeqCst);
    // SAFETY: run_steps makes only raw system calls on memory `args` names.
    let errno = unsafe { run_steps(args) };
    args.err.store(if errno > 0 { errno } else { libc::EIO }, Ordering::SeqCst);
    // SAFETY: exit_group(2) ends the child; it never returns.
    unsafe { syscall6(libc::SYS_exit_group, [127, 0, 0, 0, 0, 0]) };
    #[allow(clippy::empty_loop)]
    loop {}
}

/// The `clone(2)` wrapper's entry: the same child, with the signature
/// glibc's `clone` wants.
pub(super) extern "C" fn child_main_c(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `clone.rs` passes this function to `clone(2)` with a
    // ChildArgs as `arg`, as the child's first function.
    unsafe { child_main(arg) }
}

/// A failed call's errno (the raw result is `-errno`).
fn failed(ret: isize) -> Option<i32> {
    (ret < 0).then_some(ret.wrapping_neg() as i32)
}

/// Steps 1 to 6; returns only on failure, with the errno.
///
/// # Safety
///
/// As [`child_main`].
unsafe fn run_steps(a: &mut ChildArgs) -> i32 {
    // SAFETY (for every syscall6 below): each is a raw system call whose
    // pointer arguments name memory owned by `a` or by locals here, of the
    // size the call uses (man pages named at each step).
    unsafe {
        // Held ready: named first, so that `ps` (and a test counting the
        // host's children) tells it from the host for its whole wait.
        // prctl(2) PR_SET_NAME names this task only; the exec renames it.
        if a.park >= 0 {
            syscall6(libc::SYS_prctl, [libc::PR_SET_NAME as usize, c"procsup-standby".as_ptr() as usize, 0, 0, 0, 0]);
        }
        // 1. Signals (sigaction(2), sigprocmask(2)): the kernel's struct,
        //    sigsetsize 8.
        let default = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
        let mut sig = 1;
        while sig <= 64 {
            let mut old = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
            let got = syscall6(libc::SYS_rt_sigaction, [sig, 0, &mut old as *mut _ as usize, 8, 0, 0]);
            if got == 0 && old.handler != libc::SIG_DFL {
                syscall6(libc::SYS_rt_sigaction, [sig, &default as *const _ as usize, 0, 8, 0, 0]);
            }
            sig += 1;
        }
        let empty: u64 = 0;
        let ret =
            syscall6(libc::SYS_rt_sigprocmask, [libc::SIG_SETMASK as usize, &empty as *const _ as usize, 0, 8, 0, 0]);
        if let Some(e) = failed(ret) {
            return e;
        }
        // 2. setsid(2): a session and process group of its own, which no
        //    process outside the child's tree can join (setpgid(2) only
        //    joins groups of the caller's own session).
        if a.process_group {
            if let Some(e) = failed(syscall6(libc::SYS_setsid, [0, 0, 0, 0, 0, 0])) {
                return e;
            }
        }
        // 3. The cgroup (cgroups(7): writing "0" to cgroup.procs moves the
        //    writer).
        if a.cgroup_procs >= 0 {
            let ret = syscall6(libc::SYS_write, [a.cgroup_procs as usize, b"0".as_ptr() as usize, 1, 0, 0, 0]);
            if let Some(e) = failed(ret) {
                return e;
            }
        }
        // 4. umask(2), setgroups(2), setgid(2), setuid(2), chdir(2): the
        //    raw calls change this task only, which is all there is.
        if a.umask >= 0 {
            syscall6(libc::SYS_umask, [a.umask as usize, 0, 0, 0, 0, 0]);
        }
        //    prlimit64(2), pid 0: the caller's limit from a `struct
        //    rlimit64` (soft, hard) in `a`; old_limit NULL.
        let mut i = 0;
        while i < a.rlimits.len {
            let Some((resource, limit)) = a.rlimits.list.get(i) else { break };
            let ret = syscall6(libc::SYS_prlimit64, [0, *resource as usize, limit.as_ptr() as usize, 0, 0, 0]);
            if let Some(e) = failed(ret) {
                return e;
            }
            i += 1;
        }
        if a.drop_groups {
            // As std: without CAP_SETGID (EPERM) the groups stay.
            let ret = syscall6(libc::SYS_setgroups, [0, 0, 0, 0, 0, 0]);
            if let Some(e) = failed(ret).filter(|&e| e != libc::EPERM) {
                return e;
            }
        }
        if a.gid >= 0 {
            if let Some(e) = failed(syscall6(libc::SYS_setgid, [a.gid as usize, 0, 0, 0, 0, 0])) {
                return e;
            }
        }
        if a.uid >= 0 {
            if let Some(e) = failed(syscall6(libc::SYS_setuid, [a.uid as usize, 0, 0, 0, 0, 0])) {
                return e;
            }
        }
        //    prctl(2) PR_SET_PDEATHSIG after the credentials: the kernel
        //    clears the parent-death signal when the effective uid or gid
        //    changes. Then the re-check: a parent gone before the prctl
        //    never sends the signal, so the child sends it to itself. Dispositions are default and nothing is blocked by
        //    now: it acts as the kernel's would. Should it not end the
        //    child (a signal ignored by default), the spawn fails.
        if a.death_signal != 0 {
            let ret = syscall6(libc::SYS_prctl, [libc::PR_SET_PDEATHSIG as usize, a.death_signal as usize, 0, 0, 0, 0]);
            if let Some(e) = failed(ret) {
                return e;
            }
            if syscall6(libc::SYS_getppid, [0; 6]) != a.parent as isize {
                a.err.store(libc::ESRCH, Ordering::SeqCst);
                let me = syscall6(libc::SYS_getpid, [0; 6]);
                syscall6(libc::SYS_kill, [me as usize, a.death_signal as usize, 0, 0, 0, 0]);
                return libc::ESRCH;
            }
        }
        // (Held ready, it changes directory once let go: a directory
        // replaced meanwhile, a deploy's moved symlink, is the one it gets.)
        if !a.cwd.is_null() && a.park < 0 {
            if let Some(e) = failed(syscall6(libc::SYS_chdir, [a.cwd as usize, 0, 0, 0, 0, 0])) {
                return e;
            }
        }
        // 5. The fd plan (fcntl(2), close_range(2), dup2(2) as dup3).
        // No indexing that could panic here (the panic machinery would
        // allocate and lock in the host's memory): `get`, and no array
        // initialised in the child (that could call memset).
        // The park socket first goes above every target, where no move
        // lands on it (close-on-exec: exec closes it, which the host sees).
        let mut park = -1;
        if a.park >= 0 {
            let ret =
                syscall6(libc::SYS_fcntl, [a.park as usize, libc::F_DUPFD_CLOEXEC as usize, a.above as usize, 0, 0, 0]);
            match failed(ret) {
                Some(e) => return e,
                None => park = ret as RawFd,
            }
        }
        let n = if a.moves_len < MAX_MOVES { a.moves_len } else { MAX_MOVES };
        let mut i = 0;
        while i < n {
            let (Some(&(src, _)), Some(lifted)) = (a.moves.get(i), a.lifted.get_mut(i)) else { break };
            // A source below `above` could be another move's target:
            // copy it above every target first (close-on-exec).
            *lifted = src;
            if src < a.above {
                let ret = syscall6(
                    libc::SYS_fcntl,
                    [src as usize, libc::F_DUPFD_CLOEXEC as usize, a.above as usize, 0, 0, 0],
                );
                match failed(ret) {
                    Some(e) => return e,
                    None => *lifted = ret as RawFd,
                }
            }
            i += 1;
        }
        // Nothing else above 2 survives exec. Kernels before 5.11 answer
        // ENOSYS or EINVAL: then only procsup's own fds (all opened
        // close-on-exec) are closed.
        const CLOSE_RANGE_CLOEXEC: usize = 1 << 2;
        syscall6(libc::SYS_close_range, [3, u32::MAX as usize, CLOSE_RANGE_CLOEXEC, 0, 0, 0]);
        i = 0;
        while i < n {
            let (Some(&(_, target)), Some(&lifted)) = (a.moves.get(i), a.lifted.get(i)) else { break };
            // dup3 without O_CLOEXEC: the copy survives exec. `lifted` is
            // never equal to `target` (it is at or above `above`, or was).
            let ret = syscall6(libc::SYS_dup3, [lifted as usize, target as usize, 0, 0, 0, 0]);
            if let Some(e) = failed(ret) {
                return e;
            }
            i += 1;
        }
        // Held ready, it may wait long: every fd but its own (the targets
        // and the park socket) is closed now, not at exec, so that it holds
        // none of the host's (a listening socket the host closes, another
        // successor's socket, whose end of file tells that one the host
        // died). close(2) of each gap below `above`, close_range(2) above.
        if park >= 0 {
            let mut fd = 3;
            while fd < a.above {
                let mut target = false;
                let mut k = 0;
                while k < n {
                    if let Some(&(_, t)) = a.moves.get(k) {
                        target |= t == fd;
                    }
                    k += 1;
                }
                if !target {
                    syscall6(libc::SYS_close, [fd as usize, 0, 0, 0, 0, 0]);
                }
                fd += 1;
            }
            // (stdin, stdout and stderr stay, moved or inherited.)
            let low = if a.above > 3 { a.above } else { 3 };
            if park > low {
                let ret = syscall6(libc::SYS_close_range, [low as usize, (park - 1) as usize, 0, 0, 0, 0]);
                if let Some(e) = failed(ret) {
                    return e;
                }
            }
            let ret = syscall6(libc::SYS_close_range, [(park + 1) as usize, u32::MAX as usize, 0, 0, 0, 0]);
            if let Some(e) = failed(ret) {
                return e;
            }
        }
        // Held ready: every step is done; wait for the host's word (read(2)
        // of one byte). End of file (the host let it go, or died: its end
        // closed) or an error ends the child.
        if park >= 0 {
            a.parked.store(true, Ordering::SeqCst);
            let mut word = 0u8;
            loop {
                let ret = syscall6(libc::SYS_read, [park as usize, &mut word as *mut u8 as usize, 1, 0, 0, 0]);
                if ret == 1 {
                    break;
                }
                if ret == -(libc::EINTR as isize) {
                    continue;
                }
                syscall6(libc::SYS_exit_group, [0, 0, 0, 0, 0, 0]);
            }
            if !a.cwd.is_null() {
                if let Some(e) = failed(syscall6(libc::SYS_chdir, [a.cwd as usize, 0, 0, 0, 0, 0])) {
                    return e;
                }
            }
        }
        // The pid variables: digits written into entries the parent made.
        let slots = if a.pid_slots_len < 2 { a.pid_slots_len } else { 2 };
        if slots > 0 {
            let pid = syscall6(libc::SYS_getpid, [0; 6]) as u32;
            // Digits from the last: room for any u32 (10), written
            // backwards into the entry.
            let mut len = 0usize;
            let mut rest = pid;
            loop {
                len += 1;
                rest /= 10;
                if rest == 0 || len == 10 {
                    break;
                }
            }
            let mut s = 0;
            while s < slots {
                if let Some(slot) = a.pid_slots.get(s) {
                    let mut p = pid;
                    let mut k = len;
                    while k > 0 {
                        k -= 1;
                        *slot.entry.add(slot.at + k) = b'0' + (p % 10) as u8;
                        p /= 10;
                    }
                    *slot.entry.add(slot.at + len) = 0;
                }
                s += 1;
            }
        }
        // 6. execve(2) of each candidate in turn, as execvp does; only
        //    returns on failure.
        super::exec::exec_candidates(a.candidates, a.argv, a.envp, |path, argv, envp| {
            let ret = syscall6(libc::SYS_execve, [path as usize, argv as usize, envp as usize, 0, 0, 0]);
            failed(ret).unwrap_or(libc::EIO)
        })
    }
}
