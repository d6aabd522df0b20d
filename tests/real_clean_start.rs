//! A child starts clean: an empty signal mask and default dispositions,
//! whatever the host blocked, ignored or caught, on both spawn paths
//! (`posix_spawn` when procsup has nothing to do in the child, `fork` when
//! it has), and before any user hook runs.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;
mod real;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bin::{field, reader, supervise_bin};
use nix::errno::Errno;
use nix::sys::signal::SigHandler;
use procsup::{Event, Exit, ProcessSpec, RestartPolicy, Signal, State, UnixSys};
use real::{alive, wait_for, Blocked, Disposition, Host};

/// One `SigXxx:` mask line of `/proc/<pid>/status`.
fn mask(pid: i32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix(&format!("{key}:"))).unwrap();
    u64::from_str_radix(line.trim(), 16).unwrap()
}

fn bit(sig: Signal) -> u64 {
    1 << (sig as u64 - 1)
}

extern "C" fn noop(_: libc::c_int) {}

/// The two spawn paths: no work in the child (`posix_spawn` is possible),
/// and a parent-death signal (the `fork` path).
type Shape = fn(ProcessSpec) -> ProcessSpec;

fn both_spawn_paths() -> [(&'static str, Shape); 2] {
    [("fast", |s| s.die_with_parent(None)), ("fork", |s| s.die_with_parent(Some(Signal::SIGKILL)))]
}

#[test]
fn a_child_has_no_blocked_ignored_or_caught_signal_of_the_host() {
    for (path, shape) in both_spawn_paths() {
        let mut h = Host::new(UnixSys::new());
        let _ign = [Signal::SIGQUIT, Signal::SIGUSR2, Signal::SIGPIPE].map(|s| Disposition::set(s, SigHandler::SigIgn));
        let _cgt = Disposition::set(Signal::SIGHUP, SigHandler::Handler(noop));
        let _blk = Blocked::new(&[Signal::SIGTERM, Signal::SIGHUP, Signal::SIGCHLD]);
        h.add(shape(ProcessSpec::new("s", "sleep").arg("1000")));
        h.start_all();
        let pid = h.sup.status("s").unwrap().pid.unwrap().as_raw();
        // The host's own state is what the child must not inherit.
        let me = std::process::id() as i32;
        assert_ne!(mask(me, "SigIgn") & bit(Signal::SIGQUIT), 0);
        assert_eq!(mask(pid, "SigBlk"), 0, "{path}: the child starts with an empty mask");
        // Signals 32 and 33 are glibc's own (its posix_spawn ignores them).
        assert_eq!(mask(pid, "SigIgn") & 0x7fff_ffff, 0, "{path}: the child ignores nothing the host ignored");
        assert_eq!(mask(pid, "SigCgt"), 0, "{path}: sleep catches nothing");
    }
}

#[test]
fn a_host_that_blocks_term_stops_its_child_with_term() {
    for (path, shape) in both_spawn_paths() {
        let mut h = Host::new(UnixSys::new());
        let _blk = Blocked::new(&[Signal::SIGTERM, Signal::SIGHUP, Signal::SIGCHLD]);
        let _ign = Disposition::set(Signal::SIGTERM, SigHandler::SigIgn);
        h.add(shape(ProcessSpec::new("s", "sleep").arg("1000").stop_timeout(Duration::from_secs(20))));
        h.start_all();
        let now = Instant::now();
        h.sup.stop_process("s", now).unwrap();
        h.run_until(Duration::from_secs(10), |h| h.count("stopped") == 1);
        assert_eq!(h.count("killed"), 0, "{path}: {:#?}", h.kinds());
        let Event::Exited { exit, .. } = h.events("exited")[0] else { unreachable!() };
        assert_eq!(*exit, Exit::Signaled(libc::SIGTERM), "{path}");
    }
}

#[test]
fn hooks_accumulate_and_run_in_order_after_the_clean_start() {
    let mut h = Host::new(UnixSys::new());
    let _ign = Disposition::set(Signal::SIGUSR2, SigHandler::SigIgn);
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut r = std::fs::File::from(r);
    let fd = w.as_raw_fd();
    let write = move |b: &'static [u8]| {
        // SAFETY: write(2) is async-signal-safe; `fd` is open in the child.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n == b.len() as isize {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: each hook makes async-signal-safe calls only.
    let spec = unsafe {
        ProcessSpec::new("h", "true")
            .restart(RestartPolicy::Never)
            .pre_exec(move || write(b"first "))
            .pre_exec(move || {
                // What a hook sees: USR2 no longer ignored, nothing blocked.
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut old);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut set);
                let clean = old.sa_sigaction == libc::SIG_DFL && libc::sigismember(&set, libc::SIGTERM) == 0;
                write(if clean { b"clean " } else { b"dirty " })
            })
            .pre_exec(move || write(b"last"))
    };
    let _blk = Blocked::new(&[Signal::SIGTERM]);
    h.add(spec);
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("exited") == 1);
    drop(w);
    let mut out = String::new();
    r.read_to_string(&mut out).unwrap();
    assert_eq!(out, "first clean last");
}

#[test]
fn a_hook_error_without_an_errno_is_einval() {
    let mut h = Host::new(UnixSys::new());
    // SAFETY: the hook only returns an error.
    let spec = unsafe {
        ProcessSpec::new("e", "true").restart(RestartPolicy::Never).pre_exec(|| Err(std::io::Error::other("no errno")))
    };
    h.add(spec);
    h.start_all();
    assert!(matches!(h.events("spawn_failed")[0], Event::SpawnFailed { errno: Errno::EINVAL, .. }));
    assert_eq!(h.sup.status("e").unwrap().state, State::Fatal);
}

/// `supervise` started with SIGPWR (which it does not handle) blocked and SIGQUIT ignored (both
/// survive exec) spawns a child that has neither, with and without
/// die-with-parent.
#[test]
fn supervise_started_with_a_dirty_signal_state_spawns_clean_children() {
    let _serial = real::serial();
    for extra in [&[][..], &["--no-die-with-parent"][..]] {
        let mut cmd = Command::new(supervise_bin());
        cmd.args(extra).args(["--", "sleep", "1000"]).stdout(Stdio::piped()).stderr(Stdio::null());
        // SAFETY: sigprocmask(2) and signal(2) are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGPWR);
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                libc::signal(libc::SIGQUIT, libc::SIG_IGN);
                Ok(())
            })
        };
        let mut host = cmd.spawn().unwrap();
        let lines = reader(host.stdout.take().unwrap());
        let host_pid = host.id() as i32;
        let spawned = lines.recv_timeout(Duration::from_secs(15)).expect("a spawned line");
        let pid: i32 = field(&spawned, "pid").unwrap().parse().unwrap();
        assert_ne!(mask(host_pid, "SigBlk") & bit(Signal::SIGPWR), 0, "the host runs with PWR blocked");
        assert_ne!(mask(host_pid, "SigIgn") & bit(Signal::SIGQUIT), 0, "the host runs with QUIT ignored");
        let (blk, ign) = (mask(pid, "SigBlk"), mask(pid, "SigIgn"));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(host_pid), Signal::SIGTERM).unwrap();
        let end = Instant::now() + Duration::from_secs(15);
        while host.try_wait().unwrap().is_none() {
            assert!(Instant::now() < end, "supervise did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(wait_for(Duration::from_secs(5), || !alive(pid)));
        assert_eq!(blk, 0, "{extra:?}: SigBlk of the child");
        assert_eq!(ign & bit(Signal::SIGQUIT), 0, "{extra:?}: the child ignores QUIT");
    }
}
