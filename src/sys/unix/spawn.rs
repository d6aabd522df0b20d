//! Building the child: its stdio, and the work done between fork and exec.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use super::child::{ChildSteps, Death, HostSignals};
use crate::spec::{Output, PreExec, ProcessSpec};

/// A `Command` for `spec`, and our read ends of its capture pipes. The
/// write ends live in the `Command`: drop it after the spawn to close them.
/// `cgroup_procs`: the open `cgroup.procs` of the cgroup the child enters
/// before exec; it must stay open until the spawn returns.
pub(super) fn command(
    spec: &ProcessSpec,
    cgroup_procs: Option<RawFd>,
    null: &mut DevNull,
) -> io::Result<(Command, [Option<OwnedFd>; 2])> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    let fds = super::fds::FdPlan::new(spec)?;
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
    let ChildFds { stdin, stdout, stderr, read_ends } = child_fds(spec, null)?;
    let as_stdio = |fd: Option<StdioFd>| {
        fd.map(StdioFd::into_owned).transpose().map(|fd| fd.map_or_else(Stdio::inherit, Stdio::from))
    };
    cmd.stdin(Stdio::from(StdioFd::Shared(stdin).into_owned()?));
    cmd.stdout(as_stdio(stdout)?);
    cmd.stderr(as_stdio(stderr)?);
    if let Some(uid) = spec.uid {
        cmd.uid(uid);
    }
    if let Some(gid) = spec.gid {
        cmd.gid(gid);
    }
    install_pre_exec(&mut cmd, spec, cgroup_procs, fds);
    Ok((cmd, read_ends))
}

/// The child's stdin (`/dev/null`), stdout and stderr (`None`: inherit the
/// host's), and our read ends of capture pipes. `/dev/null` is the host's
/// one open copy ([`DevNull`]): the child gets a `dup` of it, as it would
/// of a fresh open (same file, same access mode).
pub(super) struct ChildFds {
    pub(super) stdin: RawFd,
    pub(super) stdout: Option<StdioFd>,
    pub(super) stderr: Option<StdioFd>,
    pub(super) read_ends: [Option<OwnedFd>; 2],
}

/// One of the child's stdio sources: opened for this child, or the
/// host's `/dev/null`.
pub(super) enum StdioFd {
    Own(OwnedFd),
    Shared(RawFd),
}

impl StdioFd {
    /// The fd number, for procsup's own clone (Linux x86_64 only).
    #[cfg_attr(not(all(target_os = "linux", target_arch = "x86_64")), allow(dead_code))]
    pub(super) fn raw(&self) -> RawFd {
        match self {
            StdioFd::Own(fd) => fd.as_raw_fd(),
            StdioFd::Shared(fd) => *fd,
        }
    }

    /// An fd of our own for std's `Stdio` (a `dup` of a shared one).
    fn into_owned(self) -> io::Result<OwnedFd> {
        match self {
            StdioFd::Own(fd) => Ok(fd),
            // SAFETY: a shared fd is one of DevNull's, open while the
            // UnixSys that lends it lives, which outlasts the spawn.
            StdioFd::Shared(fd) => unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned(),
        }
    }
}

/// `/dev/null` opened once per host, read-only (stdin, as std's
/// `Stdio::null()`) and write-only (a `Null` output), close-on-exec:
/// no `open` and `close` on the way to every restart. The children share
/// its open file description, so one that changes its status flags
/// (`fcntl(F_SETFL)`: `O_NONBLOCK`, `O_APPEND`) would hand them on: one
/// `F_GETFL` per use sees that, and that copy is opened anew.
#[derive(Debug, Default)]
pub(super) struct DevNull {
    read: Option<(OwnedFd, OFlag)>,
    write: Option<(OwnedFd, OFlag)>,
}

impl DevNull {
    fn read(&mut self) -> io::Result<RawFd> {
        Self::get(&mut self.read, OpenOptions::new().read(true))
    }

    fn write(&mut self) -> io::Result<StdioFd> {
        Self::get(&mut self.write, OpenOptions::new().write(true)).map(StdioFd::Shared)
    }

    fn get(slot: &mut Option<(OwnedFd, OFlag)>, how: &OpenOptions) -> io::Result<RawFd> {
        let flags = |fd: &OwnedFd| fcntl(fd, FcntlArg::F_GETFL).map(OFlag::from_bits_retain);
        if let Some((fd, at_open)) = slot.as_ref() {
            if flags(fd).is_ok_and(|f| f == *at_open) {
                return Ok(fd.as_raw_fd());
            }
        }
        let fd: OwnedFd = how.open("/dev/null")?.into();
        let at_open = flags(&fd)?;
        Ok(slot.insert((fd, at_open)).0.as_raw_fd())
    }
}

/// The kernel buffer of a capture pipe: one page (Linux; elsewhere the
/// default). What a child leaves in it when it exits is read before its
/// exit is reported, so this bounds how long an exit can wait behind
/// output: with the default 64 KiB, 20 children flooding both streams with
/// empty lines leave 2.6 million lines to emit after a stop; with 4 KiB,
/// 160 thousand. A writer blocks sooner, and the host's reads are as large
/// as the pipe's share of the budget anyway.
#[cfg(target_os = "linux")]
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

pub(super) fn child_fds(spec: &ProcessSpec, null: &mut DevNull) -> io::Result<ChildFds> {
    let mut read_ends = [None, None];
    let own = |fd: io::Result<OwnedFd>| fd.map(StdioFd::Own);
    let stdout_fd = match &spec.stdout {
        Output::Inherit | Output::ToStdout => None,
        Output::Null => Some(null.write()?),
        Output::Append(path) => Some(own(open_append(path))?),
        Output::Capture | Output::Log(_) => Some(own(capture_pipe(&mut read_ends[0]))?),
    };
    let stderr_fd = match &spec.stderr {
        Output::Inherit => None,
        Output::ToStdout => match &stdout_fd {
            Some(StdioFd::Own(fd)) => Some(StdioFd::Own(fd.try_clone()?)),
            Some(StdioFd::Shared(fd)) => Some(StdioFd::Shared(*fd)),
            None => Some(StdioFd::Own(io::stdout().as_fd().try_clone_to_owned()?)),
        },
        Output::Null => Some(null.write()?),
        Output::Append(path) => Some(own(open_append(path))?),
        Output::Capture | Output::Log(_) => Some(own(capture_pipe(&mut read_ends[1]))?),
    };
    Ok(ChildFds { stdin: null.read()?, stdout: stdout_fd, stderr: stderr_fd, read_ends })
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
    /// Adds a hook run in the child after `fork` and before `exec`. Each
    /// call adds one; they run in the order given, like
    /// [`CommandExt::pre_exec`]'s. They run after procsup's own steps: the
    /// child has an empty signal mask and the default disposition for every
    /// signal the host ignored or caught (no host handler can run in it),
    /// then its umask and its parent-death signal.
    ///
    /// An `Err` a hook returns fails the spawn ([`Event::SpawnFailed`](crate::Event)),
    /// and the hooks after it do not run: the child never runs the program
    /// and is reaped by the spawn itself. Only the error's errno crosses to
    /// the parent (through std's close-on-exec pipe): the spawn fails with
    /// `io::Error::from_raw_os_error(errno)`, so a custom kind or message is
    /// lost, and an error without an errno (`io::Error::other`) arrives as
    /// `EINVAL`.
    ///
    /// A spec with hooks is spawned by std's `Command` through `fork`, not
    /// by procsup's own vfork-class clone (Linux x86_64), where the child
    /// shares the host's memory and a hook could corrupt it: hooks cost a
    /// copy of the host's page tables per spawn, which grows with the
    /// host's memory. Without hooks, procsup's own spawn sets the process
    /// group, parent-death signal, cgroup, credentials, umask, working
    /// directory and passed fds itself.
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
    /// // SAFETY: setsid(2) and nice(2) are async-signal-safe.
    /// let spec = unsafe {
    ///     ProcessSpec::new("daemon", "sleep")
    ///         .arg("60")
    ///         .process_group(false)
    ///         .pre_exec(|| {
    ///             nix::unistd::setsid()?;
    ///             Ok(())
    ///         })
    ///         .pre_exec(|| {
    ///             libc::nice(5);
    ///             Ok(())
    ///         })
    /// };
    /// assert!(spec.has_pre_exec());
    /// ```
    pub unsafe fn pre_exec<F>(mut self, hook: F) -> Self
    where
        F: Fn() -> io::Result<()> + Send + Sync + 'static,
    {
        self.pre_exec.push(PreExec(std::sync::Arc::new(hook)));
        self
    }
}

/// Work done in the child between fork and exec: procsup's own steps
/// ([`ChildSteps`]: entering its cgroup, a clean signal state, the umask,
/// the parent-death signal), then the spec's hooks in order. Nothing is installed when
/// nothing is needed, so `Command` keeps its `posix_spawn` fast path.
fn install_pre_exec(
    cmd: &mut Command,
    spec: &ProcessSpec,
    cgroup_procs: Option<RawFd>,
    fds: Option<super::fds::FdPlan>,
) {
    let umask = spec.umask.map(|m| m as libc::mode_t);
    // Read before the fork: after it, getppid() names the parent we must
    // outlive no longer than.
    #[cfg(target_os = "linux")]
    let death =
        spec.die_with_parent.map(|s| Death { signal: s as libc::c_int, parent: std::process::id() as libc::pid_t });
    #[cfg(not(target_os = "linux"))]
    let death: Option<Death> = None;
    let hooks = !spec.pre_exec.is_empty();
    if let Some(steps) = ChildSteps::plan(HostSignals::query(), cgroup_procs, umask, death, spec.process_group, hooks) {
        // SAFETY: ChildSteps::run only makes async-signal-safe system calls
        // (write to cgroup.procs, sigaction, sigprocmask, umask, prctl,
        // getppid, getpid, kill) on
        // plain data copied before the fork; it allocates nothing and takes
        // no lock, as CommandExt::pre_exec requires after fork in a threaded
        // parent. std runs the hooks in the order they were added: this one
        // first.
        unsafe { cmd.pre_exec(move || steps.run()) };
    }
    let rlimits = super::child::Rlimits::of(spec);
    if rlimits.len > 0 {
        // SAFETY: Rlimits::apply makes one prlimit64(2) (setrlimit(2))
        // system call per limit on plain data copied before the fork; it
        // allocates nothing and takes no lock. After procsup's own steps
        // (the child is in its cgroup already), before the spec's hooks.
        unsafe { cmd.pre_exec(move || rlimits.apply()) };
    }
    if let Some(fds) = fds {
        // SAFETY: FdPlan::apply_in_child only makes async-signal-safe
        // system calls (fcntl, close_range, dup2, getpid) and stores into
        // memory allocated before the fork; it allocates nothing and takes
        // no lock. It runs after procsup's own steps, before the spec's
        // hooks (which may still add fds of their own).
        unsafe { cmd.pre_exec(move || fds.apply_in_child()) };
    }
    for PreExec(hook) in &spec.pre_exec {
        let hook = hook.clone();
        // SAFETY: the user's hook carries the same obligation through
        // ProcessSpec::pre_exec, an unsafe fn.
        unsafe { cmd.pre_exec(move || hook()) };
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::BorrowedFd;

    use nix::fcntl::{fcntl, FcntlArg, OFlag};

    use super::DevNull;

    fn flags(fd: i32) -> OFlag {
        // SAFETY: `fd` is one of the DevNull's, open while it lives.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).unwrap())
    }

    /// Every spawn gets the same open `/dev/null`, until a child changed
    /// its status flags (children share the open file description): then
    /// the next spawn gets a fresh one, as a new open would give it.
    #[test]
    fn dev_null_is_opened_once_and_anew_after_a_childs_flag_change() {
        let mut null = DevNull::default();
        let first = null.read().unwrap();
        assert_eq!(null.read().unwrap(), first, "no second open");
        assert_eq!(flags(first) & OFlag::O_ACCMODE, OFlag::O_RDONLY);
        let out = null.write().unwrap().raw();
        assert_eq!(flags(out) & OFlag::O_ACCMODE, OFlag::O_WRONLY);
        let before = flags(first);
        // What a child that set O_NONBLOCK on its stdin did to the host's copy.
        // SAFETY: as in `flags`.
        fcntl(unsafe { BorrowedFd::borrow_raw(first) }, FcntlArg::F_SETFL(before | OFlag::O_NONBLOCK)).unwrap();
        let next = null.read().unwrap();
        assert_eq!(flags(next), before, "the next child's stdin is as a fresh open gives it");
        assert_eq!(null.write().unwrap().raw(), out, "the other copy is unchanged, kept");
    }
}
