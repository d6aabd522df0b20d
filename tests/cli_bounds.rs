//! `supervise` under an output flood and with its own output broken: the
//! host stays small, stops promptly, and an output error never takes the
//! children down.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use bin::{field, reader, supervise_bin};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// `(pid, ppid, pgrp, state)` of every process in /proc.
fn procs() -> Vec<(i32, i32, i32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut rest = stat.rsplit_once(") ")?.1.split(' ');
            let state = rest.next()?.chars().next()?;
            let ppid = rest.next()?.parse().ok()?;
            let pgrp = rest.next()?.parse().ok()?;
            Some((pid, ppid, pgrp, state))
        })
        .collect()
}

/// Live (not zombie) children of `host`.
/// The host's live children, without the successors it holds ready
/// (parked before their exec: not children of the supervisor's yet).
fn children_of(host: i32) -> Vec<i32> {
    let parked =
        |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "procsup-standby");
    procs()
        .into_iter()
        .filter(|&(pid, ppid, _, st)| ppid == host && st != 'Z' && st != 'X' && !parked(pid))
        .map(|p| p.0)
        .collect()
}

/// Live (not zombie) members of the process groups `pgids`.
fn members_of(pgids: &[i32]) -> Vec<i32> {
    procs()
        .into_iter()
        .filter(|&(_, _, pgrp, st)| pgids.contains(&pgrp) && st != 'Z' && st != 'X')
        .map(|p| p.0)
        .collect()
}

fn vm_hwm_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/pid/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A `supervise` and the process groups of its children: all SIGKILLed on
/// drop, so a failing test leaves nothing behind.
struct Host {
    child: Child,
    groups: Vec<i32>,
}

impl Host {
    fn spawn(args: &[&str], stdout: Stdio, stderr: Stdio) -> Host {
        let child = Command::new(supervise_bin()).args(args).stdout(stdout).stderr(stderr).spawn().unwrap();
        Host { child, groups: Vec::new() }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).unwrap();
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (bounded by `limit`) for the host to exit; its exit code.
    fn exit_within(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for &g in &self.groups {
            let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
        }
    }
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[test]
fn a_flood_of_captured_output_keeps_the_host_small_and_stops_promptly() {
    // 20 children, each flooding stdout and (through a second `yes` in its
    // process group) stderr with empty lines: the worst case, one event per
    // byte. Without die-with-parent, so a child the host failed to stop
    // would still be there to find.
    let flood = "yes '' >&2 & exec yes ''";
    let args = [
        "--capture",
        "--no-die-with-parent",
        "--stop-timeout",
        "1",
        "--start-grace",
        "0.1",
        "--instances",
        "20",
        "--name",
        "flood",
        "--",
        "sh",
        "-c",
        flood,
    ];
    let mut host = Host::spawn(&args, Stdio::null(), Stdio::null());
    let hp = host.pid();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let kids = children_of(hp);
            host.groups = kids.clone();
            kids.len() == 20 && members_of(&kids).len() == 40
        }),
        "20 flooding children (40 processes) did not start: {:?}",
        host.groups
    );
    let mut peak = 0;
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        assert!(host.running(), "the host died under the flood");
        peak = peak.max(vm_hwm_kib(hp));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB under the flood");
    assert_eq!(members_of(&host.groups).len(), 40, "every flooding process still runs (they block, not die)");

    host.signal(Signal::SIGTERM);
    let code = host.exit_within(Duration::from_secs(2));
    assert_eq!(code, Some(0), "SIGTERM with --stop-timeout 1 must end the host within 2 s");
    assert!(
        wait_until(Duration::from_secs(2), || members_of(&host.groups).is_empty()),
        "processes left behind: {:?}",
        members_of(&host.groups)
    );
}

/// Reads `out` until a line containing `needle` (bounded); returns it.
fn expect_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        match lines.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("no line with {needle:?}"),
        }
    }
}

#[test]
fn sigusr1_with_stderr_closed_leaves_the_host_and_children_running() {
    // `b` restarts every 0.2 s, so the host keeps printing events: a new one
    // after the SIGUSR1 proves the host survived it.
    let args = ["--start-grace", "0.1", "--backoff", "fixed:0.1", "-p", "a=sleep 60", "-p", "b=sleep 0.2"];
    let mut host = Host::spawn(&args, Stdio::piped(), Stdio::piped());
    drop(host.child.stderr.take()); // the reader of stderr goes away
    let lines = reader(host.child.stdout.take().unwrap());
    let a: i32 = field(&expect_line(&lines, "event=spawned name=a "), "pid").unwrap().parse().unwrap();
    host.groups.push(a);
    expect_line(&lines, "event=running name=a ");
    host.signal(Signal::SIGUSR1);
    // Two full restarts of `b` after the signal.
    expect_line(&lines, "event=spawned name=b ");
    expect_line(&lines, "event=spawned name=b ");
    assert!(host.running(), "the host died on SIGUSR1");
    assert!(kill(Pid::from_raw(a), None).is_ok() && members_of(&[a]) == [a], "child a was killed");
    host.signal(Signal::SIGTERM);
    assert_eq!(host.exit_within(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_closed_stdout_never_stops_the_children() {
    let args = ["--start-grace", "0.1", "--backoff", "fixed:0.1", "-p", "a=sleep 60", "-p", "b=sleep 0.2"];
    let mut host = Host::spawn(&args, Stdio::piped(), Stdio::piped());
    let errors = reader(host.child.stderr.take().unwrap());
    let mut out: BufReader<ChildStdout> = BufReader::new(host.child.stdout.take().unwrap());
    let mut a = None;
    let mut line = String::new();
    while a.is_none() {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "stdout ended before a spawned");
        if line.starts_with("event=spawned name=a ") {
            a = field(line.trim_end(), "pid").map(|p| p.parse::<i32>().unwrap());
        }
    }
    let a = a.unwrap();
    host.groups.push(a);
    drop(out); // the reader of stdout goes away: the next event write gets EPIPE
    expect_line(&errors, "supervising on without them");
    // The restarts of `b` go on after the broken pipe, and `a` lives.
    let b_before = children_of(host.pid()).into_iter().filter(|&p| p != a).collect::<Vec<_>>();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let now: Vec<i32> = children_of(host.pid()).into_iter().filter(|&p| p != a).collect();
            !now.is_empty() && now.iter().all(|p| !b_before.contains(p))
        }),
        "b is no longer restarted after stdout broke"
    );
    assert!(host.running(), "the host died of EPIPE");
    assert_eq!(members_of(&[a]), [a], "child a was killed");
    host.signal(Signal::SIGTERM);
    assert_eq!(host.exit_within(Duration::from_secs(10)), Some(0));
    assert!(wait_until(Duration::from_secs(2), || members_of(&[a]).is_empty()), "a outlived the host");
}

#[test]
fn capture_prints_each_line_as_an_output_event() {
    let args =
        ["--capture", "--restart", "never", "--exit-when-idle", "--", "sh", "-c", "echo 'hello world'; echo oops >&2"];
    let mut host = Host::spawn(&args, Stdio::piped(), Stdio::null());
    let lines = reader(host.child.stdout.take().unwrap());
    let pid = field(&expect_line(&lines, "event=spawned name=sh "), "pid").unwrap();
    let out = expect_line(&lines, "stream=stdout");
    assert_eq!(out, format!("event=output name=sh pid={pid} stream=stdout line=\"hello world\""));
    let err = expect_line(&lines, "stream=stderr");
    assert_eq!(err, format!("event=output name=sh pid={pid} stream=stderr line=oops"));
    assert_eq!(host.exit_within(Duration::from_secs(10)), Some(0));
}
