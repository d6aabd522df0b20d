//! Readiness channels from a child: an sd_notify datagram socket, or an s6
//! notification-fd pipe. Each sits in the one epoll set.
//!
//! - **sd_notify**: one datagram socket per child, bound to a random
//!   abstract address (`NOTIFY_SOCKET=@procsup/...`, nothing on disk),
//!   close-on-exec so no child holds another's. `SO_PASSCRED` makes the
//!   kernel attach each sender's real pid; a datagram is accepted only from
//!   the child itself or from its own tree (a `systemd-notify` run by a
//!   shell script), told by a mark no process outside the tree can take:
//!   its cgroup where it has one (moving into it takes write access to
//!   root's `cgroup.procs` files), else its session (`setsid` at spawn; a
//!   session cannot be joined, only made). A process group is no such mark:
//!   any process of the host's session may `setpgid` into another's group.
//!   Anyone else's datagram — another child's, a stray process's — is
//!   dropped, so no process can make another ready, set its status or feed
//!   its watchdog. (Only a process with `CAP_SYS_ADMIN` can forge a pid.)
//!   Abstract sockets are Linux's; elsewhere `Notify` fails to spawn.
//! - **notification-fd**: a pipe whose write end the child gets as fd `n`;
//!   its first newline is `READY=1`, after which the pipe is closed.
//!
//! Both are bounded: at most [`NOTIFY_BUDGET`] datagrams (or one read) per
//! child per poll, into a fixed buffer; an oversized datagram is dropped
//! whole, and so are the fds a sender may pass along.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::readiness::{NotifyMessage, Readiness, MAX_NOTIFY_LEN};
use crate::spec::ProcessSpec;
use crate::sys::SysEvent;

use super::readiness::token;
use super::UnixSys;

/// Datagrams read from one child's socket per poll: a flood waits in the
/// kernel's (bounded) socket buffer, and level-triggered epoll reports the
/// rest at the next poll.
pub(super) const NOTIFY_BUDGET: usize = 64;

/// Marks the epoll token of a child's readiness channel
/// (`token(pid, 0) | NOTIFY_TAG`): clear of every pid and slot bit.
pub(super) const NOTIFY_TAG: u64 = 1 << 40;

/// The readiness channel of one child.
#[derive(Debug)]
pub(super) struct Notify {
    fd: OwnedFd,
    kind: Kind,
    /// Who besides the child may speak for it.
    tree: Tree,
}

/// The mark of the processes that may speak for a child besides itself.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tree {
    /// The child alone.
    Child,
    /// The members of the session the child leads.
    Session,
    /// The processes in the child's cgroup or below it, by the path
    /// `/proc/<pid>/cgroup` shows (`0::/a/b`).
    Cgroup(String),
}

impl Tree {
    /// The mark of `pid`'s tree, read once it is spawned: its cgroup when
    /// it has one, else its session when it leads one.
    pub(super) fn of(pid: Pid, cgroup: bool, session: bool) -> Tree {
        if cgroup {
            if let Some(path) = cgroup_of(pid.as_raw()) {
                return Tree::Cgroup(path);
            }
        }
        if session {
            Tree::Session
        } else {
            Tree::Child
        }
    }

    /// Whether a datagram from `sender` may speak for child `pid`.
    fn speaks_for(&self, sender: Option<libc::pid_t>, pid: Pid) -> bool {
        let Some(sender) = sender.filter(|&s| s > 0) else { return false };
        if sender == pid.as_raw() {
            return true;
        }
        match self {
            Tree::Child => false,
            // The child is not reaped, so its pid (and session id) is its own.
            Tree::Session => nix::unistd::getsid(Some(Pid::from_raw(sender))) == Ok(pid),
            Tree::Cgroup(path) => cgroup_of(sender).is_some_and(|p| {
                p.strip_prefix(path.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }),
        }
    }
}

/// The cgroup2 path of `pid`, as `/proc/<pid>/cgroup` shows it.
fn cgroup_of(pid: libc::pid_t) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_owned)
}

#[derive(Debug)]
enum Kind {
    /// The abstract name, for `NOTIFY_SOCKET`.
    Socket { name: String },
    /// The write end stays here until the spawn is done.
    Pipe { write: Option<OwnedFd>, target: RawFd },
}

impl Notify {
    /// The channel `spec` asks for, made before the spawn.
    pub(super) fn prepare(spec: &ProcessSpec) -> io::Result<Option<Notify>> {
        match spec.ready {
            Readiness::Notify => {
                let (fd, name) = bind_socket()?;
                Ok(Some(Notify { fd, kind: Kind::Socket { name }, tree: Tree::Child }))
            }
            Readiness::Fd(target) => {
                let (read, write) = cloexec_pipe()?;
                super::spawn::set_nonblocking(&read)?;
                // Hold fd `target` ourselves when it is free, so nothing
                // std opens for the spawn can land on it.
                let write = dup_cloexec_at_least(&write, target)?;
                let kind = Kind::Pipe { write: Some(write), target };
                Ok(Some(Notify { fd: read, kind, tree: Tree::Child }))
            }
            _ => Ok(None),
        }
    }

    /// The variables that tell the child where to write: `NOTIFY_SOCKET`
    /// (and `WATCHDOG_USEC`); none for a pipe.
    pub(super) fn env(&self, spec: &ProcessSpec) -> Vec<(OsString, OsString)> {
        let mut env = Vec::new();
        if let Kind::Socket { name } = &self.kind {
            env.push(("NOTIFY_SOCKET".into(), format!("@{name}").into()));
            if let Some(w) = spec.watchdog {
                env.push(("WATCHDOG_USEC".into(), w.as_micros().to_string().into()));
            }
        }
        env
    }

    /// The pipe's write end and the fd the child finds it at, for a pipe.
    pub(super) fn pipe_move(&self) -> Option<(RawFd, RawFd)> {
        match &self.kind {
            Kind::Pipe { write, target } => Some((write.as_ref().map_or(-1, AsRawFd::as_raw_fd), *target)),
            Kind::Socket { .. } => None,
        }
    }

    /// On the `Command` path: places the pipe's write end at the child's
    /// fd `n` (the variables come from [`Notify::env`] on every path).
    pub(super) fn pass_pipe(&self, cmd: &mut Command) {
        if let Some((w, n)) = self.pipe_move() {
            let hook = move || -> io::Result<()> {
                // SAFETY: fcntl(2) and dup2(2) are async-signal-safe
                // system calls on fds this child holds; nothing is
                // allocated or locked.
                let rc = unsafe {
                    if w == n {
                        libc::fcntl(n, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(w, n)
                    }
                };
                if rc < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            };
            // SAFETY: the hook makes async-signal-safe calls only, as
            // CommandExt::pre_exec requires after fork.
            unsafe { cmd.pre_exec(hook) };
        }
    }

    /// The child is spawned: who besides it may speak for it.
    pub(super) fn trust(&mut self, tree: Tree) {
        self.tree = tree;
    }

    /// The spawn is done: our copy of the pipe's write end goes.
    pub(super) fn spawned(&mut self) {
        if let Kind::Pipe { write, .. } = &mut self.kind {
            *write = None;
        }
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads what the child sent, within the budget. Returns false when
    /// the channel is finished (close and unwatch it).
    pub(super) fn read(&mut self, pid: Pid, buf: &mut [u8], events: &mut Vec<SysEvent>) -> bool {
        match self.kind {
            Kind::Socket { .. } => {
                let buf = &mut buf[..MAX_NOTIFY_LEN];
                for _ in 0..NOTIFY_BUDGET {
                    match recv_datagram(self.fd.as_raw_fd(), buf) {
                        Ok(Some(d)) => {
                            if d.truncated {
                                log::debug!("procsup: dropped an oversized notify datagram for pid {pid}");
                            } else if !self.tree.speaks_for(d.sender, pid) {
                                log::debug!("procsup: dropped a notify datagram for pid {pid} from pid {:?}", d.sender);
                            } else if let Some(msg) = NotifyMessage::parse(&buf[..d.len]) {
                                events.push(SysEvent::Notify { pid, msg });
                            }
                        }
                        Ok(None) => return true,
                        Err(e) => {
                            log::warn!("procsup: reading the notify socket of pid {pid}: {e}");
                            return false;
                        }
                    }
                }
                true
            }
            Kind::Pipe { .. } => loop {
                match nix::unistd::read(&self.fd, buf) {
                    Ok(0) => return false,
                    Ok(n) if buf[..n].contains(&b'\n') => {
                        events.push(SysEvent::Notify { pid, msg: NotifyMessage::ready() });
                        return false;
                    }
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => return true,
                    Err(_) => return false,
                }
            },
        }
    }
}

impl UnixSys {
    /// Puts a new child's channel in the epoll set.
    pub(super) fn watch_notify(&self, pid: Pid, n: Notify) -> Notify {
        if let Some(r) = &self.readiness {
            if let Err(e) = r.watch(n.fd(), token(pid, 0) | NOTIFY_TAG) {
                log::warn!("procsup: watching the readiness channel of pid {pid}: {e}");
            }
        }
        n
    }

    /// Reads a child's readiness channel (within its budget); closes it
    /// once it is finished.
    pub(super) fn read_notify(&mut self, pid: Pid, events: &mut Vec<SysEvent>) {
        let Some(child) = self.children.get_mut(&pid) else { return };
        let Some(n) = child.notify.as_mut() else { return };
        if !n.read(pid, &mut self.output.buf, events) {
            let n = child.notify.take().expect("checked above");
            if let Some(r) = &self.readiness {
                r.unwatch(n.fd());
            }
        }
    }

    /// The child was reaped: what its channel holds is read, then it is
    /// closed (its exit follows).
    pub(super) fn close_notify(&mut self, pid: Pid, events: &mut Vec<SysEvent>) {
        self.read_notify(pid, events);
        if let Some(n) = self.children.get_mut(&pid).and_then(|c| c.notify.take()) {
            if let Some(r) = &self.readiness {
                r.unwatch(n.fd());
            }
        }
    }

    /// A signal to the child itself, never its tree: through its pidfd
    /// where there is one. `ESRCH` once it was reaped.
    pub(super) fn signal_child_only(&mut self, pid: Pid, signal: nix::sys::signal::Signal) -> io::Result<()> {
        let Some(child) = self.children.get(&pid).filter(|c| c.exited.is_none() && !c.reaped) else {
            return Err(Errno::ESRCH.into());
        };
        // Not reaped, so the pid cannot have been reused.
        match &child.pidfd {
            Some(fd) => super::wait::pidfd_send_signal(fd.as_raw_fd(), signal),
            None => Ok(nix::sys::signal::kill(pid, signal)?),
        }
    }
}

fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe(2) writes two fds into the array we pass.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe(2) just returned these two fds, owned by no one else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&r, &w] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
    }
    Ok((r, w))
}

/// A close-on-exec copy of `fd` at the lowest number from `min` on.
fn dup_cloexec_at_least(fd: &OwnedFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd or -1; it touches no memory.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

struct Datagram {
    len: usize,
    truncated: bool,
    sender: Option<libc::pid_t>,
}

#[cfg(target_os = "linux")]
fn bind_socket() -> io::Result<(OwnedFd, String)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    // SAFETY: socket(2) takes plain integers and returns an fd or -1.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd, owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one: libc::c_int = 1;
    // SAFETY: SO_PASSCRED reads one c_int from the pointer and length given.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let name = format!(
        "procsup/{}/{}/{:016x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        // Unguessable names are a courtesy: the sender check is the guard.
        rand::TryRngCore::try_next_u64(&mut rand::rngs::OsRng).unwrap_or(0)
    );
    // SAFETY: sockaddr_un is plain data; all zeroes is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    // Abstract: sun_path[0] stays 0 and the name follows, unterminated.
    for (dst, &b) in addr.sun_path[1..].iter_mut().zip(name.as_bytes()) {
        *dst = b as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + 1 + name.len();
    // SAFETY: `addr` is a valid sockaddr_un and `len` lies within it.
    let rc = unsafe { libc::bind(raw, (&addr as *const libc::sockaddr_un).cast(), len as libc::socklen_t) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fd, name))
}

#[cfg(not(target_os = "linux"))]
fn bind_socket() -> io::Result<(OwnedFd, String)> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "Readiness::Notify needs Linux's abstract unix sockets"))
}

/// One datagram with its sender's credentials, without blocking. `None`
/// when there is none. Any fds passed along are closed at once.
#[cfg(target_os = "linux")]
fn recv_datagram(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<Datagram>> {
    // u64s keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 64];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    loop {
        // SAFETY: msghdr is plain data; all zeroes is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: every pointer in `msg` points at a live buffer of the
        // length given, which recvmsg(2) writes within.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            return match Errno::last() {
                Errno::EINTR => continue,
                Errno::EAGAIN => Ok(None),
                e => Err(e.into()),
            };
        }
        let mut sender = None;
        // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR walk the control buffer the
        // kernel filled, bounded by msg_controllen; each header's data is
        // read unaligned as the type its level and type say.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                        let cred: libc::ucred = std::ptr::read_unaligned(data.cast());
                        sender = Some(cred.pid);
                    }
                    (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                        let count =
                            ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<libc::c_int>();
                        for i in 0..count {
                            let passed: libc::c_int = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                            libc::close(passed);
                        }
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let truncated = msg.msg_flags & libc::MSG_TRUNC != 0;
        return Ok(Some(Datagram { len: n as usize, truncated, sender }));
    }
}

#[cfg(not(target_os = "linux"))]
fn recv_datagram(_: RawFd, _: &mut [u8]) -> io::Result<Option<Datagram>> {
    Ok(None)
}
