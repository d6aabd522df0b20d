//! The differential test of the spawn paths (#14).
//!
//! The same [`ProcessSpec`] goes through [`UnixSys::spawn`] four ways:
//!
//! - the default (`clone3`, once procsup's own spawn is in),
//! - `clone3` failing with `ENOSYS`, and with `EPERM` (the `clone(2)`
//!   fallback),
//! - with a no-op `pre_exec` hook: std's `Command`, the reference,
//!
//! each with a cgroup per child and without cgroups. The child is a small C
//! probe (`tests/bin/spawn_probe.c`, compiled once per test binary with
//! `cc`) that reports, first thing in `main`, what it inherited: argv and
//! environ bytes, cwd, umask, credentials, pgid and sid, the parent-death
//! signal, the signal state, its cgroup and its open fds. The reports must be
//! the same byte for byte (after naming the child's own pid, the host's pid,
//! pgid and sid, and pipe and socket inodes, which differ by nature), and
//! each spawn must have taken the path asked for (`last_spawn_path`).
//!
//! Exec errors and the `PATH` search are compared with a bare std
//! `Command::spawn()` (no hooks: std's `posix_spawn` path) of the same
//! program, cwd and environment.
//!
//! Every test holds the real-process lock (they change the host's signal
//! state and fds, which every spawn would see), reaps each child it starts
//! and ends with no child of the test process left.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod real;

use std::ffi::{OsStr, OsString};
use std::fs::Permissions;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::SigHandler;
use procsup::{Exit, Output, Pid, ProcessSpec, Signal, Stream, Sys, SysEvent, UnixSys};
use real::{Blocked, Disposition};

// ---------------------------------------------------------------------------
// The probe

struct Probe {
    dir: PathBuf,
    exe: PathBuf,
}

static PROBE: OnceLock<Probe> = OnceLock::new();

extern "C" fn remove_probe_dir() {
    if let Some(p) = PROBE.get() {
        let _ = std::fs::remove_dir_all(&p.dir);
    }
}

/// The probe, compiled on first use into a directory removed at exit.
fn probe() -> &'static Probe {
    PROBE.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("procsup-spawn-diff-").tempdir().expect("a tempdir").keep();
        // SAFETY: atexit(3) registers a plain function; libtest ends the
        // process with exit(3), which runs it.
        unsafe { libc::atexit(remove_probe_dir) };
        // Sticky and writable by all: a probe running as uid 65534 writes
        // its report next to itself.
        std::fs::set_permissions(&dir, Permissions::from_mode(0o1777)).unwrap();
        let src = dir.join("spawn_probe.c");
        std::fs::write(&src, include_str!("bin/spawn_probe.c")).unwrap();
        let exe = dir.join("probe");
        let out = match Command::new("cc").args(["-O1", "-Wall", "-Werror", "-o"]).arg(&exe).arg(&src).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("`cc` not found: this test compiles its C probe with it (install gcc or clang)")
            }
            Err(e) => panic!("running `cc`: {e}"),
        };
        assert!(out.status.success(), "cc failed on the probe:\n{}", String::from_utf8_lossy(&out.stderr));
        Probe { dir, exe }
    })
}

/// Where the probe at `exe` running as `pid` writes its report.
fn report_file(exe: &Path, pid: i32) -> PathBuf {
    let mut name = exe.as_os_str().to_owned();
    name.push(format!(".report.{pid}"));
    PathBuf::from(name)
}

/// The probe's escaping: printable ASCII but space and backslash as is,
/// every other byte as `\xNN`.
fn esc(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if b > 0x20 && b < 0x7f && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

// ---------------------------------------------------------------------------
// Reports

/// A probe's report, normalized, plus what the host saw: one line each.
type Report = Vec<String>;

/// What differs from run to run by nature, named.
struct Names {
    pid: i32,
    host_pid: i32,
    host_pgid: i32,
    host_sid: i32,
    /// This `UnixSys`'s cgroup directory, if it made one.
    cgroup_dir: Option<PathBuf>,
}

impl Names {
    fn new(pid: i32, cgroup_dir: Option<PathBuf>) -> Self {
        Names {
            pid,
            host_pid: std::process::id() as i32,
            host_pgid: nix::unistd::getpgrp().as_raw(),
            host_sid: nix::unistd::getsid(None).unwrap().as_raw(),
            cgroup_dir,
        }
    }

    fn id(&self, v: &str) -> String {
        match v.parse::<i32>() {
            Ok(n) if n == self.pid => "<self>".into(),
            Ok(n) if n == self.host_pid => "<host>".into(),
            Ok(n) if n == self.host_pgid => "<host pgid>".into(),
            Ok(n) if n == self.host_sid => "<host sid>".into(),
            _ => v.into(),
        }
    }

    fn normalize(&self, text: &str) -> Report {
        text.lines()
            .map(|line| {
                let Some((key, val)) = line.split_once(' ') else { return line.to_owned() };
                match key {
                    "pid" | "ppid" | "pgid" | "sid" => format!("{key} {}", self.id(val)),
                    "env" => match val.split_once('=') {
                        Some((name, v)) if name.ends_with(" LISTEN_PID") || name.ends_with(" WATCHDOG_PID") => {
                            format!("env {name}={}", self.id(v))
                        }
                        _ => line.to_owned(),
                    },
                    "fd" => format!("fd {}", strip_inodes(val)),
                    "cgroup" => format!("cgroup {}", self.cgroup(val)),
                    _ => line.to_owned(),
                }
            })
            .collect()
    }

    /// `0::/a/b/procsup-…/c0-probe` -> `0::<own cgroup of this UnixSys>`
    /// when the child's cgroup is one of this `UnixSys`'s.
    fn cgroup(&self, val: &str) -> String {
        let (Some(dir), Some(path)) = (&self.cgroup_dir, val.strip_prefix("0::/")) else { return val.into() };
        match Path::new(path).parent() {
            Some(parent) if !parent.as_os_str().is_empty() && dir.ends_with(parent) => {
                "0::<a cgroup of its own under this UnixSys's>".into()
            }
            _ => val.into(),
        }
    }
}

/// `pipe:[123]` -> `pipe:[]`: inodes differ from run to run.
fn strip_inodes(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(":[") {
        let (head, tail) = rest.split_at(i + 2);
        out.push_str(head);
        let end = tail.find(']').unwrap_or(tail.len());
        if tail[..end].bytes().all(|b| b.is_ascii_digit()) {
            rest = &tail[end..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

fn values<'a>(r: &'a Report, key: &str) -> Vec<&'a str> {
    // A key with an empty value (`groups` with none) is the key alone.
    r.iter()
        .filter_map(|l| l.strip_prefix(key).and_then(|v| if v.is_empty() { Some(v) } else { v.strip_prefix(' ') }))
        .collect()
}

fn value<'a>(r: &'a Report, key: &str) -> &'a str {
    match values(r, key).as_slice() {
        [v] => v,
        other => panic!("report has {} `{key}` lines: {other:?}\n{}", other.len(), r.join("\n")),
    }
}

/// The environment in the report, in order, as escaped `NAME=value`.
fn env_of(r: &Report) -> Vec<String> {
    values(r, "env").iter().map(|v| v.split_once(' ').unwrap().1.to_owned()).collect()
}

/// The cgroup v2 line of the report (v1 hierarchies may be mounted too).
fn cgroup2(r: &Report) -> &str {
    let lines: Vec<&str> = values(r, "cgroup").into_iter().filter(|l| l.starts_with("0::")).collect();
    assert_eq!(lines.len(), 1, "{}", r.join("\n"));
    lines[0]
}

/// The open fds in the report.
fn fds_of(r: &Report) -> Vec<i32> {
    values(r, "fd").iter().map(|v| v.split(' ').next().unwrap().parse().unwrap()).collect()
}

/// What fd `n` is, from the report.
fn fd_target(r: &Report, n: i32) -> &str {
    let prefix = format!("{n} ");
    let line = values(r, "fd").into_iter().find(|v| v.starts_with(&prefix));
    line.unwrap_or_else(|| panic!("no fd {n} in\n{}", r.join("\n")))[prefix.len()..].split(' ').next().unwrap()
}

/// The lines of `a` and `b` that differ, for a failure message.
fn diff(a: &Report, b: &Report) -> String {
    let only = |x: &Report, y: &Report| x.iter().filter(|l| !y.contains(l)).cloned().collect::<Vec<_>>();
    let (minus, plus) = (only(a, b), only(b, a));
    if minus.is_empty() && plus.is_empty() {
        format!("same lines, in another order:\n  reference: {a:?}\n  this:      {b:?}")
    } else {
        format!("  reference only: {minus:?}\n  this only:      {plus:?}")
    }
}

// ---------------------------------------------------------------------------
// Spawning and reaping

/// Waits (bounded) until the `UnixSys` may have something to report.
fn wait_readiness(sys: &UnixSys) {
    let cap = Duration::from_millis(20);
    let wait = sys.wake_after().map_or(cap, |w| w.min(cap));
    let fds = sys.readiness_fds();
    let mut pfds: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
    let _ = poll(&mut pfds, PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX));
}

/// Polls until `pid` is gone; its exit and its captured output.
fn reap(sys: &mut UnixSys, pid: Pid) -> (Exit, [Vec<u8>; 2]) {
    let end = Instant::now() + Duration::from_secs(20);
    let mut events = Vec::new();
    let mut out = [Vec::new(), Vec::new()];
    let mut leader = None;
    loop {
        sys.poll(&mut events);
        for e in events.drain(..) {
            match e {
                SysEvent::Output { pid: p, stream, data } if p == pid => {
                    out[usize::from(stream == Stream::Stderr)].extend(data);
                }
                SysEvent::Exited { pid: p, exit } if p == pid => return (exit, out),
                SysEvent::LeaderExited { pid: p, exit } if p == pid => leader = Some(exit),
                SysEvent::TreeEmpty { pid: p } if p == pid => return (leader.unwrap_or(Exit::Unknown), out),
                _ => {}
            }
        }
        assert!(Instant::now() < end, "pid {pid} not reaped within 20 s");
        wait_readiness(sys);
    }
}

/// Spawns `spec` (whose program is a probe at `exe`, or fails to run) and
/// reaps it: its report, or the spawn's errno.
fn spawn_probe(sys: &mut UnixSys, spec: &ProcessSpec, exe: &Path) -> Result<Report, i32> {
    let pid = sys.spawn(spec).map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    let containment = sys.containment(pid);
    let names = Names::new(pid.as_raw(), sys.cgroup_dir().map(Path::to_path_buf));
    let (exit, [stdout, stderr]) = reap(sys, pid);
    let file = report_file(exe, pid.as_raw());
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| format!("no report: {e}"));
    let _ = std::fs::remove_file(&file);
    let mut report = names.normalize(&text);
    report.push(format!("containment {containment:?}"));
    report.push(format!("exit {exit:?}"));
    report.push(format!("captured stdout {}", esc(&stdout)));
    report.push(format!("captured stderr {}", esc(&stderr)));
    Ok(report)
}

/// A bare std `Command` (no hooks, so std may take `posix_spawn`) of
/// `program` in `cwd` with `envs` added: its report, or the spawn's errno.
fn spawn_std(program: &OsStr, cwd: Option<&Path>, envs: &[(&str, &OsStr)], exe: &Path) -> Result<Report, i32> {
    let mut cmd = Command::new(program);
    cmd.envs(envs.iter().copied());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    let pid = child.id() as i32;
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < end, "bare std child {pid} not done within 20 s");
        std::thread::sleep(Duration::from_millis(2));
    };
    let file = report_file(exe, pid);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| format!("no report: {e}"));
    let _ = std::fs::remove_file(&file);
    let mut report = Names::new(pid, None).normalize(&text);
    report.push(format!("exit {:?}", status.code()));
    Ok(report)
}

/// One way through `UnixSys::spawn`: a label, how the `UnixSys` is made
/// from a plain one, whether the spec gets a no-op `pre_exec` hook, and
/// the path it must take.
struct Way {
    label: &'static str,
    shape: fn(UnixSys) -> UnixSys,
    hook: bool,
    path: &'static str,
}

/// The reference (std's `Command`) first.
const WAYS: [Way; 4] = [
    Way { label: "pre_exec hook", shape: |s| s, hook: true, path: "command" },
    Way { label: "default", shape: |s| s, hook: false, path: "clone3" },
    Way { label: "clone3 ENOSYS", shape: |s| s.fail_clone3(libc::ENOSYS), hook: false, path: "clone" },
    Way { label: "clone3 EPERM", shape: |s| s.fail_clone3(libc::EPERM), hook: false, path: "clone" },
];

/// With a cgroup per child (where one is writable), and without.
/// Makes a plain `UnixSys`.
type MakeSys = fn() -> UnixSys;

const CONTAINMENTS: [(&str, MakeSys); 2] =
    [("cgroups", UnixSys::new), ("no cgroups", || UnixSys::new().without_cgroups())];

fn with_hook(spec: &ProcessSpec) -> ProcessSpec {
    // SAFETY: the hook does nothing at all.
    unsafe { spec.clone().pre_exec(|| Ok(())) }
}

/// The outcome of one spawn one way.
struct Outcome {
    label: String,
    want: &'static str,
    path: Option<&'static str>,
    result: Result<Report, i32>,
}

/// `spec` through every way, with and without cgroups: the reference of
/// each containment first.
fn every_way(spec: &ProcessSpec, exe: &Path) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for (containment, make) in CONTAINMENTS {
        for way in &WAYS {
            let mut sys = (way.shape)(make());
            let spec = if way.hook { with_hook(spec) } else { spec.clone() };
            let result = spawn_probe(&mut sys, &spec, exe);
            outcomes.push(Outcome {
                label: format!("{} ({containment})", way.label),
                want: way.path,
                path: sys.last_spawn_path(),
                result,
            });
            drop(sys);
        }
    }
    outcomes
}

/// Fds above 2 that the test process holds without close-on-exec:
/// inherited from whatever started it (a jobserver pipe, say) or made so by
/// a test.
fn host_leaks() -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        // SAFETY: fcntl(2) F_GETFD only reads the fd's flags; an fd closed
        // meanwhile (the read_dir's own) answers -1 and is left out.
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == 0)
        .collect();
    fds.sort_unstable();
    fds
}

/// The fds the reference (std's `Command`) passes beyond those asked for:
/// every fd the host holds without close-on-exec, unless the spec passes
/// fds (then `close_range` marks the rest close-on-exec). procsup's own
/// spawn marks every fd above 2 close-on-exec in every child, so its
/// children must show none of them.
fn reference_leaks(spec: &ProcessSpec) -> Vec<i32> {
    if spec.get_passed_fds().next().is_some() {
        Vec::new()
    } else {
        host_leaks()
    }
}

/// `r` without the lines of fds `leaks`, which it must have.
fn without_leaks(label: &str, r: &Report, leaks: &[i32]) -> Report {
    let held = fds_of(r);
    for n in leaks {
        assert!(
            held.contains(n),
            "{label}: the host's fd {n} (no close-on-exec) is not in the reference child: {held:?}"
        );
    }
    r.iter()
        .filter(|l| !leaks.iter().any(|n| l.starts_with(&format!("fd {n} "))))
        .map(|l| without_glibc_signals(l))
        .collect()
}

/// glibc refuses `sigaction` on its own signals 32 and 33 (`EINVAL`), so
/// std's fork path cannot put back a `SIG_IGN` the host inherited for
/// them (it survives exec); procsup's own spawn resets them with the raw
/// `rt_sigaction`. The "command" reference may show them ignored; the
/// clean children must not.
fn without_glibc_signals(line: &str) -> String {
    match line.strip_prefix("SigIgn ").and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok()) {
        Some(bits) => format!("SigIgn {:016x}", bits & !(0b11 << 31)),
        None => line.to_owned(),
    }
}

/// Checks each containment's reference report (without the host's leaked
/// fds, see [`reference_leaks`]) with `check`, then that every other way
/// gave the same outcome (with those fds where it took the "command" path,
/// without them on procsup's own) and that each took its path. The content
/// differences (if any) come first in the message.
fn verdict(outcomes: &[Outcome], leaks: &[i32], check: impl Fn(&str, &Report)) {
    let mut content = Vec::new();
    for group in outcomes.chunks(WAYS.len()) {
        let reference = &group[0];
        let clean = reference.result.as_ref().map(|r| without_leaks(&reference.label, r, leaks)).map_err(|e| *e);
        if let Ok(r) = &clean {
            check(&reference.label, r);
        }
        for o in &group[1..] {
            // What a child of std's Command gets, or of procsup's own spawn:
            // which one it is, is checked below.
            let want = if o.path == Some("command") { &reference.result } else { &clean };
            match (want, &o.result) {
                (Ok(a), Ok(b)) if a != b => {
                    content.push(format!("{}: differs from {}:\n{}", o.label, reference.label, diff(a, b)))
                }
                (Ok(_), Err(e)) => content.push(format!("{}: spawn failed with errno {e}", o.label)),
                (Err(e), Ok(r)) => {
                    content.push(format!("{}: spawned where {} failed with errno {e}: {r:?}", o.label, reference.label))
                }
                (Err(a), Err(b)) if a != b => {
                    content.push(format!("{}: errno {b}, {} gave {a}", o.label, reference.label))
                }
                _ => {}
            }
        }
    }
    let paths: Vec<String> = outcomes
        .iter()
        .filter(|o| o.path != Some(o.want))
        .map(|o| format!("{}: spawn path {:?}, want {:?}", o.label, o.path, o.want))
        .collect();
    assert!(
        content.is_empty() && paths.is_empty(),
        "\ncontent ({} differences):\n{}\n\npaths ({} wrong):\n{}\n",
        content.len(),
        content.join("\n"),
        paths.len(),
        paths.join("\n")
    );
}

/// Runs `spec` every way and judges it (see [`verdict`]).
fn differential(spec: &ProcessSpec, check: impl Fn(&str, &Report)) {
    let exe = probe().exe.clone();
    let leaks = reference_leaks(spec);
    let outcomes = every_way(spec, &exe);
    verdict(&outcomes, &leaks, |label, r| {
        assert_eq!(value(r, "exit"), "Exited(0)", "{label}: the probe failed:\n{}", r.join("\n"));
        check(label, r)
    });
}

fn probe_spec() -> ProcessSpec {
    ProcessSpec::new("probe", &probe().exe)
}

/// The test process has no child left (zombies included).
fn assert_no_children() {
    let mut left = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        left.extend(children.split_whitespace().map(str::to_owned));
    }
    assert!(left.is_empty(), "children left behind: {left:?}");
}

/// The real-process lock, and no child left when the test ends well.
struct Serial(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

impl Drop for Serial {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_no_children();
        }
    }
}

fn serial() -> Serial {
    Serial(real::serial())
}

/// The fds of a report are exactly 0, 1, 2 and `more`.
fn assert_fds(label: &str, r: &Report, more: &[i32]) {
    let mut want = vec![0, 1, 2];
    want.extend_from_slice(more);
    want.sort_unstable();
    assert_eq!(fds_of(r), want, "{label}: open fds:\n{}", values(r, "fd").join("\n"));
}

/// A plain child: fds 0-2 only, nothing pending or blocked, no handler.
fn assert_plain(label: &str, r: &Report) {
    assert_fds(label, r, &[]);
    assert_clean_signals(label, r);
}

/// Signals 32 and 33 are glibc's own (NPTL's cancel and setxid signals):
/// not the host's to pass on, so left out of the check.
const HOST_SIGNALS: u64 = !(0b11 << 31);

fn assert_clean_signals(label: &str, r: &Report) {
    for key in ["SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"] {
        let bits = u64::from_str_radix(value(r, key), 16).unwrap();
        assert_eq!(bits & HOST_SIGNALS, 0, "{label}: {key} {bits:#x}");
    }
}

// ---------------------------------------------------------------------------
// Host state for the length of a test

extern "C" fn noop(_: libc::c_int) {}

/// A duplicate of /dev/null without close-on-exec, closed on drop: an fd
/// the host "leaked" to whatever it spawns.
struct Leaked(OwnedFd);

impl Leaked {
    fn new() -> Self {
        let null = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: dup(2) of an open fd; the new fd has no close-on-exec
        // and is owned by the OwnedFd from here on.
        let fd = unsafe { libc::dup(null.as_raw_fd()) };
        assert!(fd > 2, "dup: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just returned by dup(2) and is ours alone.
        Leaked(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

// ---------------------------------------------------------------------------
// The specs

#[test]
fn argv_bytes_are_passed_exactly() {
    let _s = serial();
    let args: [&[u8]; 6] = [b"plain", b"", b"\xff\xfe not utf-8 \x80", b"with  spaces", b"", b"back\\slash"];
    let spec = probe_spec().args(args.iter().map(|a| OsStr::from_bytes(a)));
    differential(&spec, |label, r| {
        assert_plain(label, r);
        assert_eq!(value(r, "argc"), "7", "{label}");
        let want: Vec<String> = std::iter::once(esc(probe().exe.as_os_str().as_bytes()))
            .chain(args.iter().map(|a| esc(a)))
            .enumerate()
            .map(|(i, a)| format!("{i} {a}"))
            .collect();
        assert_eq!(values(r, "argv"), want, "{label}");
    });
}

/// What std's `Command` passes when the environment was changed: the
/// host's (unless cleared) with the changes applied, sorted by name.
fn std_env(clear: bool, changes: &[(&[u8], Option<&[u8]>)]) -> Vec<String> {
    let mut env: std::collections::BTreeMap<OsString, OsString> =
        if clear { Default::default() } else { std::env::vars_os().collect() };
    for &(k, v) in changes {
        match v {
            Some(v) => env.insert(OsStr::from_bytes(k).into(), OsStr::from_bytes(v).into()),
            None => env.remove(OsStr::from_bytes(k)),
        };
    }
    env.iter().map(|(k, v)| esc(&[k.as_bytes(), b"=", v.as_bytes()].concat())).collect()
}

#[test]
fn a_cleared_environment_gets_exactly_the_variables_set() {
    let _s = serial();
    let changes: [(&[u8], Option<&[u8]>); 6] = [
        (b"ZED", Some(b"last")),
        (b"ALPHA", Some(b"1")),
        (b"NOT_UTF8", Some(b"\xff\xfe\x80")),
        (b"EMPTY", Some(b"")),
        (b"ALPHA", Some(b"second")),
        (b"SPACES", Some(b" a  b ")),
    ];
    let mut spec = probe_spec().env_clear();
    for &(k, v) in &changes {
        spec = spec.env(OsStr::from_bytes(k), OsStr::from_bytes(v.unwrap()));
    }
    differential(&spec, |label, r| {
        assert_plain(label, r);
        assert_eq!(env_of(r), std_env(true, &changes), "{label}");
    });
}

#[test]
fn removed_and_added_variables_keep_the_rest_of_the_host_environment() {
    let _s = serial();
    let host: Vec<OsString> = std::env::vars_os().map(|(k, _)| k).collect();
    assert!(host.len() >= 2, "the test process has too small an environment: {host:?}");
    let (gone, changed) = (host[0].as_bytes(), host[host.len() - 1].as_bytes());
    let changes: [(&[u8], Option<&[u8]>); 4] =
        [(gone, None), (b"PROBE_ADDED", Some(b"x\xff")), (changed, Some(b"changed")), (b"NEVER_SET_ANYWHERE", None)];
    let mut spec = probe_spec();
    for &(k, v) in &changes {
        spec = match v {
            Some(v) => spec.env(OsStr::from_bytes(k), OsStr::from_bytes(v)),
            None => spec.env_remove(OsStr::from_bytes(k)),
        };
    }
    differential(&spec, |label, r| {
        assert_plain(label, r);
        assert_eq!(env_of(r), std_env(false, &changes), "{label}");
    });
}

#[test]
fn an_untouched_environment_is_the_hosts_in_its_order() {
    let _s = serial();
    differential(&probe_spec(), |label, r| {
        assert_plain(label, r);
        let host: Vec<String> =
            std::env::vars_os().map(|(k, v)| esc(&[k.as_bytes(), b"=", v.as_bytes()].concat())).collect();
        assert_eq!(env_of(r), host, "{label}");
    });
}

#[test]
fn cwd_and_umask_are_the_specs_or_the_hosts() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    differential(&probe_spec().current_dir(&cwd).umask(0o027), |label, r| {
        assert_plain(label, r);
        assert_eq!(value(r, "cwd"), esc(cwd.as_os_str().as_bytes()), "{label}");
        assert_eq!(value(r, "umask"), "0027", "{label}");
    });
    // SAFETY: umask(2) reads by setting; put back at once.
    let host_umask = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    };
    let host_cwd = std::env::current_dir().unwrap();
    differential(&probe_spec(), |label, r| {
        assert_eq!(value(r, "cwd"), esc(host_cwd.as_os_str().as_bytes()), "{label}");
        assert_eq!(value(r, "umask"), format!("{host_umask:04o}"), "{label}");
    });
}

#[test]
fn credentials_as_root() {
    let _s = serial();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("credentials_as_root: not root, nothing to compare");
        return;
    }
    let host_groups: Vec<String> = nix::unistd::getgroups().unwrap().iter().map(|g| g.as_raw().to_string()).collect();
    // As std does: a root host that sets a uid drops the supplementary
    // groups. The parent-death signal (the default, SIGKILL) must survive
    // the credential change (the kernel clears it on every change of the
    // euid or egid, so it has to be set after them).
    differential(&probe_spec().uid(65534).gid(65534), |label, r| {
        assert_plain(label, r);
        assert_eq!(value(r, "uid"), "65534 65534 65534", "{label}");
        assert_eq!(value(r, "gid"), "65534 65534 65534", "{label}");
        assert_eq!(value(r, "groups"), "", "{label}");
        assert_eq!(value(r, "pdeathsig"), "9", "{label}");
    });
    differential(&probe_spec().uid(65534), |label, r| {
        assert_eq!(value(r, "uid"), "65534 65534 65534", "{label}");
        assert_eq!(value(r, "gid"), "0 0 0", "{label}");
        assert_eq!(value(r, "groups"), "", "{label}");
        assert_eq!(value(r, "pdeathsig"), "9", "{label}");
    });
    differential(&probe_spec().gid(65534).die_with_parent(Some(Signal::SIGTERM)), |label, r| {
        assert_eq!(value(r, "uid"), "0 0 0", "{label}");
        assert_eq!(value(r, "gid"), "65534 65534 65534", "{label}");
        assert_eq!(value(r, "groups").split_whitespace().collect::<Vec<_>>(), host_groups, "{label}");
        assert_eq!(value(r, "pdeathsig"), "15", "{label}");
    });
}

#[test]
fn process_group_on_and_off() {
    let _s = serial();
    // On: a session of its own (setsid), so no process outside its tree
    // can join its group, on every path.
    differential(&probe_spec().process_group(true), |label, r| {
        assert_plain(label, r);
        assert_eq!(value(r, "pgid"), "<self>", "{label}");
        assert_eq!(value(r, "sid"), "<self>", "{label}");
        assert_eq!(value(r, "ppid"), "<host>", "{label}");
    });
    differential(&probe_spec().process_group(false), |label, r| {
        assert_plain(label, r);
        assert_eq!(value(r, "pgid"), "<host pgid>", "{label}");
        assert_eq!(value(r, "sid"), "<host sid>", "{label}");
    });
}

#[test]
fn parent_death_signal_as_asked() {
    let _s = serial();
    for (sig, want) in [(Some(Signal::SIGKILL), "9"), (Some(Signal::SIGTERM), "15"), (None, "0")] {
        differential(&probe_spec().die_with_parent(sig), |label, r| {
            assert_plain(label, r);
            assert_eq!(value(r, "pdeathsig"), want, "{label}: die_with_parent({sig:?})");
        });
    }
}

#[test]
fn a_dirty_host_signal_state_never_reaches_the_child() {
    let _s = serial();
    let _ign = [Signal::SIGQUIT, Signal::SIGUSR2, Signal::SIGPIPE].map(|s| Disposition::set(s, SigHandler::SigIgn));
    let _cgt =
        [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGWINCH].map(|s| Disposition::set(s, SigHandler::Handler(noop)));
    let _blk = Blocked::new(&[Signal::SIGTERM, Signal::SIGCHLD, Signal::SIGUSR1, Signal::SIGQUIT, Signal::SIGINT]);
    for dwp in [Some(Signal::SIGKILL), None] {
        differential(&probe_spec().die_with_parent(dwp), |label, r| {
            assert_plain(label, r);
        });
    }
}

#[test]
fn output_null_append_capture_inherit() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let out_log = dir.path().join("out.log");
    let err_log = dir.path().join("err.log");
    let runs = WAYS.len() * CONTAINMENTS.len();
    let speak = |s: ProcessSpec| s.env("PROBE_SPEAK", "1");
    let append = |p: &Path| Output::Append(p.to_owned());
    let null = "/dev/null".to_owned();
    let (out, err) = (esc(out_log.as_os_str().as_bytes()), esc(err_log.as_os_str().as_bytes()));
    // (stdout, stderr, what fd 1 and fd 2 are, captured stdout, captured stderr)
    let cases: [(Output, Output, [&str; 2], [&str; 2]); 4] = [
        (Output::Null, append(&err_log), [&null, &err], ["", ""]),
        (Output::Capture, Output::Capture, ["pipe:[]", "pipe:[]"], ["probe-out\\x0a", "probe-err\\x0a"]),
        (append(&out_log), Output::ToStdout, [&out, &out], ["", ""]),
        (Output::Capture, Output::Null, ["pipe:[]", &null], ["probe-out\\x0a", ""]),
    ];
    for (stdout, stderr, targets, captured) in cases {
        let spec = speak(probe_spec()).stdout(stdout.clone()).stderr(stderr.clone());
        differential(&spec, |label, r| {
            assert_plain(label, r);
            assert_eq!([fd_target(r, 1), fd_target(r, 2)], targets, "{label}: {stdout:?} {stderr:?}");
            assert_eq!(value(r, "captured stdout"), captured[0], "{label}");
            assert_eq!(value(r, "captured stderr"), captured[1], "{label}");
        });
    }
    assert_eq!(std::fs::read_to_string(&err_log).unwrap(), "probe-err\n".repeat(runs));
    assert_eq!(std::fs::read_to_string(&out_log).unwrap(), "probe-out\nprobe-err\n".repeat(runs));
    // Inherit: whatever the host's own stdout and stderr are (the probe
    // stays quiet here).
    let host = [1, 2].map(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap());
    let host = host.map(|t| strip_inodes(&esc(t.as_os_str().as_bytes())));
    differential(&probe_spec().stdout(Output::Inherit).stderr(Output::Inherit), |label, r| {
        assert_plain(label, r);
        assert_eq!([fd_target(r, 1), fd_target(r, 2)], [host[0].as_str(), host[1].as_str()], "{label}");
    });
}

#[test]
fn passed_fds_and_socket_activation() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let sock =
        |name: &str| Arc::new(OwnedFd::from(std::os::unix::net::UnixListener::bind(dir.path().join(name)).unwrap()));
    let (http, admin) = (sock("http"), sock("admin"));
    let file = Arc::new(OwnedFd::from(std::fs::File::open("/dev/null").unwrap()));
    let spec = probe_spec().listen_fds([("http", http), ("admin", admin)]).pass_fd(9, file.clone());
    differential(&spec, |label, r| {
        assert_plain_signals_and_fds(label, r, &[3, 4, 9]);
        assert_eq!(
            [fd_target(r, 3), fd_target(r, 4), fd_target(r, 9)],
            ["socket:[]", "socket:[]", "/dev/null"],
            "{label}"
        );
        let env = env_of(r);
        for want in ["LISTEN_FDS=2", "LISTEN_FDNAMES=http:admin", "LISTEN_PID=<self>"] {
            assert_eq!(env.iter().filter(|e| *e == want).count(), 1, "{label}: {want} in {env:?}");
        }
    });
    // Passed fds without socket activation: no LISTEN_ variables.
    differential(&probe_spec().pass_fd(5, file), |label, r| {
        assert_plain_signals_and_fds(label, r, &[5]);
        assert!(!env_of(r).iter().any(|e| e.starts_with("LISTEN_")), "{label}");
    });
}

fn assert_plain_signals_and_fds(label: &str, r: &Report, fds: &[i32]) {
    assert_fds(label, r, fds);
    assert_clean_signals(label, r);
}

/// An fd the host left without close-on-exec. std's `Command` (the
/// reference) closes only close-on-exec fds, so a child of the "command"
/// path inherits it unless the spec passes fds (then `close_range` marks
/// every other fd close-on-exec). procsup's own spawn marks every fd above 2
/// close-on-exec in every child: the new paths must not pass it, and apart
/// from that fd their reports must equal the reference (see
/// [`reference_leaks`]; every differential test checks the same for the fds
/// the test process inherited without close-on-exec, if any).
#[test]
fn an_fd_the_host_leaked_reaches_only_children_of_the_command_path() {
    let _s = serial();
    let leaked = Leaked::new();
    let n = leaked.0.as_raw_fd();
    let spec = probe_spec();
    assert!(reference_leaks(&spec).contains(&n));
    differential(&spec, |label, r| {
        assert_plain(label, r);
    });
    drop(leaked);
}

#[test]
fn a_child_runs_in_a_cgroup_of_its_own_or_in_the_hosts() {
    let _s = serial();
    let host_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let host_cgroup = esc(host_cgroup.lines().find(|l| l.starts_with("0::")).unwrap().as_bytes());
    differential(&probe_spec(), |label, r| {
        if label.ends_with("(no cgroups)") {
            assert_eq!(value(r, "containment"), "ProcessGroup", "{label}");
            assert_eq!(cgroup2(r), host_cgroup, "{label}");
        } else if value(r, "containment") == "Cgroup" {
            assert_eq!(cgroup2(r), "0::<a cgroup of its own under this UnixSys's>", "{label}");
        } else {
            eprintln!("{label}: no writable cgroup v2 here: children are held by process groups");
        }
    });
}

// ---------------------------------------------------------------------------
// Exec errors and the PATH search, against a bare std Command

/// A program that cannot run, how: the program, the cwd and the PATH
/// (set in the spec's environment and std's), and the errno std gives.
struct Unrunnable {
    what: &'static str,
    program: PathBuf,
    cwd: Option<PathBuf>,
    path_var: Option<OsString>,
    errno: i32,
}

/// Files that cannot run, in `dir`.
fn unrunnables(dir: &Path) -> Vec<Unrunnable> {
    let write = |name: &str, bytes: &[u8], mode: u32| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(mode)).unwrap();
        p
    };
    let plain = write("not-executable", b"#!/bin/sh\nexit 0\n", 0o644);
    // No shebang, no ELF header, nothing a shell would run.
    let garbage = write("garbage", &[0, 1, 2, 3, 0xff, 0xfe, 0x80, b'\n'], 0o755);
    let file = write("a-file", b"", 0o644);
    let only_plain = dir.join("only-plain");
    std::fs::create_dir(&only_plain).unwrap();
    std::fs::copy(&plain, only_plain.join("prog")).unwrap();
    let case = |what, program: &Path, cwd: Option<PathBuf>, path_var: Option<&Path>, errno| Unrunnable {
        what,
        program: program.to_owned(),
        cwd,
        path_var: path_var.map(|p| p.as_os_str().to_owned()),
        errno,
    };
    vec![
        case("missing, by path", &dir.join("missing"), None, None, libc::ENOENT),
        case("missing, by PATH search", Path::new("procsup-no-such-program"), None, None, libc::ENOENT),
        case("no x bit, by path", &plain, None, None, libc::EACCES),
        case("no x bit, the only PATH candidate", Path::new("prog"), None, Some(&only_plain), libc::EACCES),
        case("garbage bytes, no shebang", &garbage, None, None, libc::ENOEXEC),
        case("a path through a regular file", &file.join("x"), None, None, libc::ENOTDIR),
        case("missing cwd", Path::new("/bin/true"), Some(dir.join("missing-dir")), None, libc::ENOENT),
        case("cwd a regular file", Path::new("/bin/true"), Some(file.clone()), None, libc::ENOTDIR),
    ]
}

fn unrunnable_spec(u: &Unrunnable) -> ProcessSpec {
    let mut spec = ProcessSpec::new("unrunnable", &u.program);
    if let Some(cwd) = &u.cwd {
        spec = spec.current_dir(cwd);
    }
    if let Some(path) = &u.path_var {
        spec = spec.env("PATH", path);
    }
    spec
}

fn std_errno(u: &Unrunnable, exe: &Path) -> Result<Report, i32> {
    let envs: Vec<(&str, &OsStr)> = u.path_var.iter().map(|p| ("PATH", p.as_os_str())).collect();
    spawn_std(u.program.as_os_str(), u.cwd.as_deref(), &envs, exe)
}

/// Every case whose errno `which` accepts, through every way and through
/// bare std: the errnos must all be std's.
fn compare_exec_errors(shape: impl Fn(ProcessSpec) -> ProcessSpec, which: impl Fn(i32) -> bool) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for u in unrunnables(dir.path()).into_iter().filter(|u| which(u.errno)) {
        let exe = &u.program;
        let std = std_errno(&u, exe);
        assert_eq!(std.as_ref().err(), Some(&u.errno), "bare std Command, {}: not the errno expected", u.what);
        let spec = shape(unrunnable_spec(&u));
        for o in every_way(&spec, exe) {
            match &o.result {
                Err(e) if *e == u.errno => {}
                Err(e) => problems.push(format!("{}, {}: errno {e}, std gives {}", u.what, o.label, u.errno)),
                Ok(r) => problems.push(format!(
                    "{}, {}: spawned ({}), std fails with {}",
                    u.what,
                    o.label,
                    value(r, "exit"),
                    u.errno
                )),
            }
            if o.path != Some(o.want) {
                problems.push(format!("{}, {}: spawn path {:?}, want {:?}", u.what, o.label, o.path, o.want));
            }
        }
    }
    problems
}

#[test]
fn exec_errors_are_the_errno_std_gives() {
    let _s = serial();
    assert_none(compare_exec_errors(|s| s, |errno| errno != libc::ENOEXEC));
}

/// A child that must learn its own pid (`LISTEN_PID`) is exec'd by
/// procsup itself on the command path (`exec.rs`), with its own PATH
/// search: the errnos must still be std's.
#[test]
fn exec_errors_are_the_errno_std_gives_with_socket_activation() {
    let _s = serial();
    let sock = Arc::new(OwnedFd::from(std::os::unix::net::UnixDatagram::unbound().unwrap()));
    assert_none(compare_exec_errors(move |s| s.listen_fds([("s", sock.clone())]), |errno| errno != libc::ENOEXEC));
}

/// A file of no known format: `posix_spawn` (bare std) fails with ENOEXEC.
/// std's fork path calls glibc's `execvp`, which on ENOEXEC runs the file
/// with `/bin/sh` instead: the spawn succeeds and the shell exits 127 (or
/// runs whatever the file says). procsup's own spawn and `exec.rs` call
/// `execve` and must report ENOEXEC.
#[test]
fn a_file_of_no_known_format_fails_with_enoexec() {
    let _s = serial();
    let sock = Arc::new(OwnedFd::from(std::os::unix::net::UnixDatagram::unbound().unwrap()));
    let mut problems = compare_exec_errors(|s| s, |errno| errno == libc::ENOEXEC);
    let socket_activation =
        compare_exec_errors(move |s| s.listen_fds([("s", sock.clone())]), |errno| errno == libc::ENOEXEC);
    problems.extend(socket_activation.into_iter().map(|p| format!("(listen fds) {p}")));
    assert_none(problems);
}

fn assert_none(problems: Vec<String>) {
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// `PATH` lookups that succeed: the file run must be std's choice.
#[test]
fn path_search_runs_the_file_std_runs() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let install = |sub: &str, mode: u32| {
        let d = root.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("probe-copy");
        std::fs::copy(&probe().exe, &p).unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(mode)).unwrap();
        p
    };
    let relative = install("rel/bin", 0o755);
    let plain = install("a", 0o644);
    let runnable = install("b", 0o755);
    std::fs::create_dir_all(root.join("c/probe-copy")).unwrap();
    let join = |parts: &[&OsStr]| std::env::join_paths(parts).unwrap();
    let cases: [(&str, OsString, &Path); 3] = [
        (
            "a relative PATH entry, against the spec's cwd",
            join(&["rel/bin".as_ref(), "/nonexistent".as_ref()]),
            &relative,
        ),
        (
            "a non-executable candidate first",
            join(&[plain.parent().unwrap().as_os_str(), runnable.parent().unwrap().as_os_str()]),
            &runnable,
        ),
        (
            "a directory candidate first",
            join(&[root.join("c").as_os_str(), runnable.parent().unwrap().as_os_str()]),
            &runnable,
        ),
    ];
    let mut problems = Vec::new();
    // Plain, and with socket activation (`exec.rs` searches PATH itself on
    // the command path).
    let sock = Arc::new(OwnedFd::from(std::os::unix::net::UnixDatagram::unbound().unwrap()));
    let shapes: [(&str, &dyn Fn(ProcessSpec) -> ProcessSpec); 2] =
        [("", &|s| s), (" (listen fds)", &|s: ProcessSpec| s.listen_fds([("s", sock.clone())]))];
    for ((what, path_var, runs), (shape_name, shape)) in cases.iter().flat_map(|c| shapes.iter().map(move |s| (c, s))) {
        let program = OsStr::new("probe-copy");
        let std = spawn_std(program, Some(&root), &[("PATH", path_var)], runs).expect("bare std spawns it");
        assert_eq!(value(&std, "exe"), esc(runs.as_os_str().as_bytes()), "bare std Command, {what}");
        let what = format!("{what}{shape_name}");
        let spec = shape(ProcessSpec::new("probe", program).current_dir(&root).env("PATH", path_var));
        for o in every_way(&spec, runs) {
            match &o.result {
                Ok(r) if value(r, "exe") == value(&std, "exe") && values(r, "argv") == values(&std, "argv") => {}
                Ok(r) => problems.push(format!(
                    "{what}, {}: ran {} {:?}, std {} {:?}",
                    o.label,
                    value(r, "exe"),
                    values(r, "argv"),
                    value(&std, "exe"),
                    values(&std, "argv")
                )),
                Err(e) => problems.push(format!("{what}, {}: errno {e}, std ran it", o.label)),
            }
            if o.path != Some(o.want) {
                problems.push(format!("{what}, {}: spawn path {:?}, want {:?}", o.label, o.path, o.want));
            }
        }
    }
    assert_none(problems);
}
