//! Helpers for tests with real processes: one lock, a host loop bounded by
//! a deadline, and a guard that kills and reaps every child it started.
#![allow(dead_code)]
// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use procsup::{Event, ProcessSpec, Signal, Supervisor, UnixSys};

static LOCK: Mutex<()> = Mutex::new(());

/// A socket that becomes readable on SIGCHLD: how a host on the waitpid
/// fallback (no pidfds) learns that a child exited.
fn sigchld_wake() -> &'static UnixStream {
    static WAKE: OnceLock<UnixStream> = OnceLock::new();
    WAKE.get_or_init(|| {
        let (r, w) = UnixStream::pair().unwrap();
        r.set_nonblocking(true).unwrap();
        w.set_nonblocking(true).unwrap();
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGCHLD, w).unwrap();
        r
    })
}

/// Creates the process-wide test fixtures (the SIGCHLD socket) now, so that
/// a test counting fds does not see them appear.
pub fn init() {
    let _ = sigchld_wake();
}

/// Real-process tests run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub type MakeSys = fn() -> UnixSys;

/// Both ways `UnixSys` can wait, pidfds and the waitpid fallback, as
/// constructors (so a test can count fds before one is made).
pub fn both_paths() -> [(&'static str, MakeSys); 2] {
    [("pidfd", UnixSys::new), ("waitpid", UnixSys::without_pidfd)]
}

/// A supervisor that shuts down, SIGKILLs and reaps all its children on drop,
/// also when the test panics.
pub struct Host {
    pub sup: Supervisor<UnixSys>,
    pub log: Vec<(Instant, Event)>,
    _serial: MutexGuard<'static, ()>,
}

impl Host {
    pub fn new(sys: UnixSys) -> Self {
        Host { sup: Supervisor::with_sys(sys), log: Vec::new(), _serial: serial() }
    }

    pub fn add(&mut self, spec: ProcessSpec) {
        self.sup.add_process(spec).expect("valid spec");
    }

    pub fn start_all(&mut self) {
        self.sup.start_all(Instant::now()).unwrap();
        self.drain(Instant::now());
    }

    fn drain(&mut self, now: Instant) {
        for e in self.sup.drain_events() {
            self.log.push((now, e));
        }
    }

    /// One turn of the host loop: sleep until readiness or the next
    /// deadline (at most `cap`, so the fallback path also sees exits), then
    /// tick.
    pub fn turn(&mut self, cap: Duration) {
        let now = Instant::now();
        let wait = self.sup.poll_timeout(now).map_or(cap, |t| t.min(cap));
        {
            let fds = self.sup.readiness_fds();
            let mut pfds: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
            pfds.push(PollFd::new(sigchld_wake().as_fd(), PollFlags::POLLIN));
            let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
            let _ = poll(&mut pfds, timeout);
        }
        let mut buf = [0u8; 64];
        while matches!(sigchld_wake().read(&mut buf), Ok(n) if n > 0) {}
        let now = Instant::now();
        self.sup.tick(now);
        self.drain(now);
    }

    /// Runs the host loop until `done` holds, or panics after `limit`.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) {
        let end = Instant::now() + limit;
        while !done(self) {
            assert!(Instant::now() < end, "condition not met within {limit:?}; events: {:#?}", self.kinds());
            self.turn(Duration::from_millis(20));
        }
    }

    /// The names of the state-directory entries refused so far, in order.
    pub fn refused(&self) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|(_, e)| match e {
                procsup::Event::OrphanRefused { name, .. } => Some(name.to_string()),
                _ => None,
            })
            .collect()
    }

    pub fn count(&self, kind: &str) -> usize {
        self.log.iter().filter(|(_, e)| e.kind() == kind).count()
    }

    pub fn kinds(&self) -> Vec<String> {
        self.log.iter().map(|(_, e)| e.to_string()).collect()
    }

    pub fn events(&self, kind: &str) -> Vec<&Event> {
        self.log.iter().filter(|(_, e)| e.kind() == kind).map(|(_, e)| e).collect()
    }

    pub fn lines(&self) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Output { line, .. } => Some(procsup::escape(line)),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let now = Instant::now();
        self.sup.shutdown(now);
        for st in self.sup.statuses() {
            if let Some(pid) = st.pid {
                let _ = procsup::Sys::signal(self.sup.sys_mut(), pid, Signal::SIGKILL);
            }
        }
        let end = Instant::now() + Duration::from_secs(10);
        while !self.sup.is_idle() && Instant::now() < end {
            self.turn(Duration::from_millis(10));
        }
        if !self.sup.is_idle() && !std::thread::panicking() {
            panic!("children left behind: {:?}", self.sup.statuses());
        }
    }
}

/// Whether a pid is alive and not a zombie, from /proc.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// Waits until `cond` holds or `limit` passes; returns whether it held.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The cgroups (one per child, and their per-host parent) that hosts this
/// test killed with SIGKILL could not remove: on drop, whatever is left in
/// them is killed (`cgroup.kill`), then they are removed once empty
/// (bounded wait) and checked gone. Children outside a cgroup add none.
pub struct CgroupGuard(Vec<std::path::PathBuf>);

impl CgroupGuard {
    /// Notes the cgroups of live `pids` made by procsup.
    pub fn of(pids: &[i32]) -> CgroupGuard {
        let mut dirs = Vec::new();
        for &pid in pids {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else { continue };
            let Some(place) = text.lines().find_map(|l| l.strip_prefix("0::")) else { continue };
            if !place.contains("/procsup-") {
                continue;
            }
            if let Some(mount) = cgroup2_mount() {
                dirs.push(mount.join(place.trim_start_matches('/')));
            }
        }
        CgroupGuard(dirs)
    }
}

fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (fields, tail) = l.split_once(" - ")?;
        (tail.split(' ').next()? == "cgroup2").then(|| fields.split(' ').nth(4).map(std::path::PathBuf::from))?
    })
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for dir in &self.0 {
            // Whatever is still in a cgroup this test's hosts made is the
            // test's own to end.
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            let gone = wait_for(Duration::from_secs(5), || {
                let _ = std::fs::remove_dir(dir);
                !dir.exists()
            });
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
            if !std::thread::panicking() {
                assert!(gone, "cgroup {} left behind", dir.display());
            }
        }
    }
}

/// The host's disposition of a signal for the length of a test, put back
/// on drop. No `SA_RESTART`: interrupted system calls fail with `EINTR`.
pub struct Disposition(nix::sys::signal::Signal, nix::sys::signal::SigAction);

impl Disposition {
    pub fn set(sig: nix::sys::signal::Signal, handler: nix::sys::signal::SigHandler) -> Self {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigSet};
        let action = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
        // SAFETY: SIG_IGN, SIG_DFL, or a test's handler that only touches
        // atomics or does nothing.
        Disposition(sig, unsafe { sigaction(sig, &action) }.unwrap())
    }
}

impl Drop for Disposition {
    fn drop(&mut self) {
        // SAFETY: puts back what was there.
        unsafe { nix::sys::signal::sigaction(self.0, &self.1) }.unwrap();
    }
}

/// Signals blocked in the calling thread for the length of a test; the
/// old mask is put back on drop.
pub struct Blocked(nix::sys::signal::SigSet);

impl Blocked {
    pub fn new(sigs: &[nix::sys::signal::Signal]) -> Self {
        use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
        let set: SigSet = sigs.iter().copied().collect();
        let mut old = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old)).unwrap();
        Blocked(old)
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        use nix::sys::signal::{pthread_sigmask, SigmaskHow};
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None).unwrap();
    }
}
