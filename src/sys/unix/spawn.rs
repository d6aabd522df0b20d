//! Building the child: its stdio, and the work done between fork and exec.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::spec::{Output, PreExec, ProcessSpec};

/// A `Command` for `spec`, and our read ends of its capture pipes. The
/// write ends live in the `Command`: drop it after the spawn to close them.
/// `cgroup_procs`: the open `cgroup.procs` of the cgroup the child enters
/// before exec; it must stay open until the spawn returns.
pub(super) fn command(spec: &ProcessSpec, cgroup_procs: Option<RawFd>) -> io::Result<(Command, [Option<OwnedFd>; 2])> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    if spec.env_clear {
        cmd.env_clear();
    }
    for (k, v) in &spec.envs {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    cmd.stdin(Stdio::null());
    let ChildStdio { stdout, stderr, read_ends } = stdio(spec)?;
    cmd.stdout(stdout);
    cmd.stderr(stderr);
    if spec.process_group {
        cmd.process_group(0);
    }
    if let Some(uid) = spec.uid {
        cmd.uid(uid);
    }
    if let Some(gid) = spec.gid {
        cmd.gid(gid);
    }
    install_pre_exec(&mut cmd, spec, cgroup_procs);
    Ok((cmd, read_ends))
}

/// The child's stdout and stderr, and our read ends of capture pipes.
struct ChildStdio {
    stdout: Stdio,
    stderr: Stdio,
    read_ends: [Option<OwnedFd>; 2],
}

/// The kernel buffer of a capture pipe: one page (Linux; elsewhere the
/// default). What a child leaves in it when it exits is read before its
/// exit is reported, so this bounds how long an exit can wait behind
/// output: with the default 64 KiB, 20 children flooding both streams with
/// empty lines leave 2.6 million lines to emit after a stop; with 4 KiB,
/// 160 thousand. A writer blocks sooner, and the host's reads are as large
/// as the pipe's share of the budget anyway.
pub(super) const CAPTURE_PIPE_SIZE: usize = 4 * 1024;

fn capture_pipe(read_end: &mut Option<OwnedFd>) -> io::Result<OwnedFd> {
    let (r, w) = cloexec_pipe()?;
    #[cfg(target_os = "linux")]
    if let Err(e) = fcntl(&r, FcntlArg::F_SETPIPE_SZ(CAPTURE_PIPE_SIZE as libc::c_int)) {
        // Only a smaller buffer is asked for, which cannot hit a limit.
        log::debug!("procsup: F_SETPIPE_SZ: {e}");
    }
    *read_end = Some(r);
    Ok(w)
}

/// A pipe whose ends close on exec, so no other child inherits them.
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(not(target_vendor = "apple"))]
    {
        Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
    }
    #[cfg(target_vendor = "apple")]
    {
        // No pipe2 here: a fork in another thread between these calls could
        // inherit the ends, a window std's own pipes have on this system too.
        use nix::fcntl::FdFlag;
        let (r, w) = nix::unistd::pipe()?;
        for fd in [&r, &w] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        }
        Ok((r, w))
    }
}

fn dev_null() -> io::Result<OwnedFd> {
    Ok(OpenOptions::new().write(true).open("/dev/null")?.into())
}

fn stdio(spec: &ProcessSpec) -> io::Result<ChildStdio> {
    let mut read_ends = [None, None];
    let stdout_fd = match &spec.stdout {
        Output::Inherit | Output::ToStdout => None,
        Output::Null => Some(dev_null()?),
        Output::Append(path) => Some(open_append(path)?),
        Output::Capture => Some(capture_pipe(&mut read_ends[0])?),
    };
    let stderr_fd = match &spec.stderr {
        Output::Inherit => None,
        Output::ToStdout => match &stdout_fd {
            Some(fd) => Some(fd.try_clone()?),
            None => Some(io::stdout().as_fd().try_clone_to_owned()?),
        },
        Output::Null => Some(dev_null()?),
        Output::Append(path) => Some(open_append(path)?),
        Output::Capture => Some(capture_pipe(&mut read_ends[1])?),
    };
    let as_stdio = |fd: Option<OwnedFd>| fd.map_or_else(Stdio::inherit, Stdio::from);
    Ok(ChildStdio { stdout: as_stdio(stdout_fd), stderr: as_stdio(stderr_fd), read_ends })
}

fn open_append(path: &std::path::Path) -> io::Result<OwnedFd> {
    Ok(OpenOptions::new().append(true).create(true).mode(0o644).open(path)?.into())
}

pub(super) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

impl ProcessSpec {
    /// Runs `hook` in the child after `fork` and before `exec`, after the
    /// umask and the parent-death signal are set. An `Err` it returns fails
    /// the spawn ([`Event::SpawnFailed`](crate::Event)): the child never
    /// runs the program and is reaped by the spawn itself. Only the error's
    /// errno crosses to the parent (through std's close-on-exec pipe): the
    /// spawn fails with `io::Error::from_raw_os_error(errno)`, so a custom
    /// kind or message is lost, and an error without an errno
    /// (`io::Error::other`) arrives as `EINVAL`.
    ///
    /// A hook forces the `fork` path (no `posix_spawn`).
    ///
    /// # Safety
    ///
    /// The contract of [`CommandExt::pre_exec`]: the hook runs in a copy of
    /// a possibly multi-threaded process in which only the forking thread
    /// exists, so it may only make async-signal-safe calls — no allocation,
    /// no locks (not even `println!`), no environment access.
    ///
    /// ```
    /// use procsup::ProcessSpec;
    /// // SAFETY: setsid(2) is async-signal-safe.
    /// let spec = unsafe {
    ///     ProcessSpec::new("daemon", "sleep").arg("60").process_group(false).pre_exec(|| {
    ///         nix::unistd::setsid()?;
    ///         Ok(())
    ///     })
    /// };
    /// assert!(spec.has_pre_exec());
    /// ```
    pub unsafe fn pre_exec<F>(mut self, hook: F) -> Self
    where
        F: Fn() -> io::Result<()> + Send + Sync + 'static,
    {
        self.pre_exec = Some(PreExec(std::sync::Arc::new(hook)));
        self
    }
}

/// Work done in the child between fork and exec: entering its cgroup, the
/// umask, the parent-death signal and the spec's own hook. Nothing is installed when none is asked
/// for, so `Command` keeps its `posix_spawn` fast path.
fn install_pre_exec(cmd: &mut Command, spec: &ProcessSpec, cgroup_procs: Option<RawFd>) {
    let umask = spec.umask;
    let user_hook = spec.pre_exec.clone();
    #[cfg(target_os = "linux")]
    let death = spec.die_with_parent.map(|s| s as libc::c_int);
    #[cfg(not(target_os = "linux"))]
    let death: Option<libc::c_int> = None;
    if umask.is_none() && death.is_none() && user_hook.is_none() && cgroup_procs.is_none() {
        return;
    }
    // Read before the fork: after it, getppid() names the parent we must
    // outlive no longer than.
    #[cfg(target_os = "linux")]
    let parent = std::process::id() as libc::pid_t;
    let hook = move || -> io::Result<()> {
        // First, before anything of the child can fork: its cgroup.
        if let Some(fd) = cgroup_procs {
            super::cgroup::enter(fd)?;
        }
        if let Some(mask) = umask {
            // SAFETY: umask(2) is async-signal-safe and cannot fail.
            unsafe { libc::umask(mask as libc::mode_t) };
        }
        #[cfg(target_os = "linux")]
        if let Some(sig) = death {
            // SAFETY: prctl(2) and getppid(2) are plain system calls,
            // async-signal-safe; PR_SET_PDEATHSIG takes a signal number.
            let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above. If the parent died before prctl, the
            // signal will never come: deliver it ourselves (kill(2) is
            // async-signal-safe).
            unsafe {
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), sig);
                }
            }
        }
        match &user_hook {
            Some(PreExec(hook)) => hook(),
            None => Ok(()),
        }
    };
    // SAFETY: the hook only makes async-signal-safe system calls (write to
    // cgroup.procs, umask, prctl, getppid, getpid, kill), allocates nothing and takes no lock,
    // as CommandExt::pre_exec requires after fork in a threaded parent; the
    // user's hook carries the same obligation through ProcessSpec::pre_exec,
    // an unsafe fn.
    unsafe { cmd.pre_exec(hook) };
}
