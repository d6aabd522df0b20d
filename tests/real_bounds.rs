//! UnixSys under floods and pidfd faults, with real processes: output is
//! read under one fair budget per poll and nothing is lost; a child without
//! a pidfd is reaped while its siblings have one, and the host is told to
//! wake for it.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod real;

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use procsup::{Event, Exit, Output, ProcessSpec, Stream, Supervisor, Sys, SysEvent, UnixSys, OUTPUT_LINES_PER_TICK};
use real::{alive, serial, wait_for, Host};

/// A host loop that wakes ONLY on the readiness fds and `next_deadline()`:
/// no SIGCHLD, no polling interval. Runs until `n` exits were seen or
/// `limit` passes; returns the events.
fn run_readiness_only(sup: &mut Supervisor<UnixSys>, n: usize, limit: Duration) -> Vec<Event> {
    let end = Instant::now() + limit;
    let mut log = Vec::new();
    while log.iter().filter(|e| matches!(e, Event::Exited { .. })).count() < n {
        let now = Instant::now();
        assert!(now < end, "exits not seen within {limit:?} by a readiness-only host: {log:#?}");
        let left = end - now;
        let wait = sup.next_deadline().map_or(left, |t| t.saturating_duration_since(now).min(left));
        {
            let fds = sup.readiness_fds();
            let mut pfds: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
            let _ = poll(&mut pfds, PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX));
        }
        sup.tick(Instant::now());
        log.extend(sup.drain_events());
    }
    log
}

/// `b` lives longest: once its siblings are gone, nothing but the
/// supervisor's own wake-up can make a readiness-only host see its exit.
fn exiting(name: &str) -> ProcessSpec {
    let script = if name == "b" { "sleep 0.6; exit 3" } else { "sleep 0.2; exit 3" };
    ProcessSpec::new(name, "sh").args(["-c", script]).start_grace(Duration::ZERO).restart(procsup::RestartPolicy::Never)
}

fn exit_codes(log: &[Event]) -> Vec<(String, Exit)> {
    let mut v: Vec<(String, Exit)> = log
        .iter()
        .filter_map(|e| match e {
            Event::Exited { name, exit, .. } => Some((name.to_string(), *exit)),
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Three children; `sys` fails something for the second.
fn three_exits_with(sys: UnixSys) -> (Supervisor<UnixSys>, Vec<Event>, bool) {
    let mut sup = Supervisor::with_sys(sys);
    for name in ["a", "b", "c"] {
        sup.add_process(exiting(name)).unwrap();
    }
    sup.start_all(Instant::now()).unwrap();
    sup.tick(Instant::now()); // all promoted: no deadline of the processes is left
                              // The host is told to come back for the child nothing wakes for.
    let told = sup.next_deadline().is_some_and(|t| t <= Instant::now() + Duration::from_secs(1));
    let log = run_readiness_only(&mut sup, 3, Duration::from_secs(10));
    (sup, log, told)
}

#[test]
fn a_child_whose_pidfd_open_fails_is_reaped_while_its_siblings_have_one() {
    let _serial = serial();
    for errno in [libc::EMFILE, libc::ENOMEM] {
        let (sup, log, told) = three_exits_with(UnixSys::new().fail_pidfd_open(2, errno));
        assert!(told, "errno {errno}: next_deadline must ask for a re-check");
        assert_eq!(sup.sys().uses_pidfd(), Some(true), "errno {errno} must not turn pidfds off for everyone");
        let want: Vec<(String, Exit)> = ["a", "b", "c"].iter().map(|n| (n.to_string(), Exit::Exited(3))).collect();
        assert_eq!(exit_codes(&log), want, "errno {errno}");
        assert_eq!(sup.sys().child_count(), 0);
        assert_eq!(sup.next_deadline(), None, "no re-check once that child is gone");
    }
}

#[test]
fn a_child_whose_pidfd_cannot_join_epoll_is_reaped() {
    let _serial = serial();
    let (sup, log, told) = three_exits_with(UnixSys::new().fail_pidfd_watch(2, libc::ENOMEM));
    assert!(told, "next_deadline must ask for a re-check");
    assert_eq!(sup.sys().uses_pidfd(), Some(true));
    assert_eq!(exit_codes(&log).len(), 3, "{log:#?}");
    assert!(exit_codes(&log).iter().all(|(_, e)| *e == Exit::Exited(3)));
}

#[test]
fn a_failing_first_pidfd_open_does_not_turn_pidfds_off() {
    let _serial = serial();
    let (sup, log, _) = three_exits_with(UnixSys::new().fail_pidfd_open(1, libc::EMFILE));
    assert_eq!(sup.sys().uses_pidfd(), Some(true));
    assert_eq!(exit_codes(&log).len(), 3);
}

#[test]
fn only_not_supported_turns_pidfds_off() {
    for (what, sys) in [
        ("ENOSYS from pidfd_open", UnixSys::new().fail_pidfd_open(1, libc::ENOSYS)),
        ("EINVAL from waitid(P_PIDFD), as on Linux 5.3", UnixSys::new().fail_pidfd_waitid(libc::EINVAL)),
    ] {
        let mut host = Host::new(sys);
        host.add(exiting("a"));
        host.add(exiting("b"));
        host.start_all();
        assert_eq!(host.sup.sys().uses_pidfd(), Some(false), "{what}");
        host.run_until(Duration::from_secs(10), |h| h.count("exited") == 2);
    }
}

fn captured(name: &str, script: &str) -> ProcessSpec {
    ProcessSpec::new(name, "sh")
        .args(["-c", script])
        .stdout(Output::Capture)
        .stderr(Output::Capture)
        .restart(procsup::RestartPolicy::Never)
}

#[test]
fn children_that_exit_with_full_pipes_lose_no_line_and_exit_after_it() {
    // Twenty children each leave 1,000 numbered lines in each pipe (almost
    // all of its 4 KiB) and exit before the host reads anything: five times
    // one tick's line budget, and more pipes than one poll's byte budget
    // serves in full.
    let mut host = Host::new(UnixSys::new());
    let n = 20;
    for i in 0..n {
        host.add(captured(&format!("w{i}"), "seq 1 1000; seq 1 1000 >&2; exit 7"));
    }
    host.start_all();
    let pids: Vec<i32> = host.sup.statuses().iter().map(|s| s.pid.unwrap().as_raw()).collect();
    assert!(wait_for(Duration::from_secs(10), || pids.iter().all(|&p| !alive(p))), "children did not exit");
    host.run_until(Duration::from_secs(20), |h| h.count("exited") == n);
    // Per tick (one `now` per tick in the log), the line budget held.
    let mut per_tick: HashMap<Instant, usize> = HashMap::new();
    for (t, e) in &host.log {
        if matches!(e, Event::Output { .. }) {
            *per_tick.entry(*t).or_default() += 1;
        }
    }
    let most = per_tick.values().copied().max().unwrap_or(0);
    assert!(most <= OUTPUT_LINES_PER_TICK, "a tick emitted {most} lines");
    for i in 0..n {
        let name = format!("w{i}");
        let mine: Vec<&Event> = host.log.iter().map(|(_, e)| e).filter(|e| e.name() == name).collect();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let lines: Vec<String> = mine
                .iter()
                .filter_map(|e| match e {
                    Event::Output { line, stream: s, .. } if *s == stream => Some(procsup::escape(line)),
                    _ => None,
                })
                .collect();
            assert_eq!(lines.len(), 1000, "{name} lost lines of {stream:?}");
            assert!(lines.iter().enumerate().all(|(k, l)| *l == (k + 1).to_string()), "{name}: out of order");
        }
        let exit_at = mine.iter().position(|e| matches!(e, Event::Exited { .. })).unwrap();
        let last_line = mine.iter().rposition(|e| matches!(e, Event::Output { .. })).unwrap();
        assert!(last_line < exit_at, "{name}: exit before its last line");
        assert!(matches!(mine[exit_at], Event::Exited { exit: Exit::Exited(7), .. }));
    }
}

/// Whether a process is blocked writing to a full pipe.
fn blocked_on_pipe(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("pipe_write"))
}

#[test]
fn one_poll_reads_a_bounded_amount_fairly_and_the_next_resumes_where_it_stopped() {
    // 24 children flooding stdout, every pipe (4 KiB) full: one poll's
    // budget (64 KiB, at least 4 KiB a pipe) cannot read them all. What it
    // reads is bounded, spread evenly, and the next poll serves first those
    // the last one left out.
    let _serial = serial();
    let mut sys = UnixSys::new();
    let n = 24;
    let mut pids = Vec::new();
    for i in 0..n {
        let spec = ProcessSpec::new(format!("y{i}"), "yes").stdout(Output::Capture).stderr(Output::Null);
        pids.push(sys.spawn(&spec).unwrap());
    }
    let cleanup = |sys: &mut UnixSys| {
        for &pid in &pids {
            let _ = sys.signal(pid, procsup::Signal::SIGKILL);
        }
    };
    let mut got: Vec<HashMap<i32, usize>> = Vec::new();
    let mut wakes = Vec::new();
    for k in 0..2 {
        // Every pipe full again before each poll (on a loaded machine a pipe
        // drained by the last poll may not have refilled yet), so the budget
        // binds and output is left behind.
        if !wait_for(Duration::from_secs(20), || pids.iter().all(|p| blocked_on_pipe(p.as_raw()))) {
            cleanup(&mut sys);
            panic!("the children did not refill their pipes before poll {k}");
        }
        let mut events = Vec::new();
        sys.poll(&mut events);
        let mut per: HashMap<i32, usize> = HashMap::new();
        for e in &events {
            if let SysEvent::Output { pid, stream, data } = e {
                assert_eq!(*stream, Stream::Stdout);
                *per.entry(pid.as_raw()).or_default() += data.len();
            }
        }
        got.push(per);
        wakes.push(sys.wake_after());
    }
    cleanup(&mut sys);
    let mut events = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while sys.child_count() > 0 && Instant::now() < end {
        sys.poll(&mut events);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sys.child_count(), 0, "children left behind");

    for (k, per) in got.iter().enumerate() {
        let total: usize = per.values().sum();
        assert!(total <= 64 * 1024, "poll {k} read {total} bytes");
        assert!(total >= 32 * 1024, "poll {k} read only {total} bytes of full pipes");
        let most = per.values().copied().max().unwrap();
        let least = per.values().copied().min().unwrap();
        assert!(most <= 2 * least, "poll {k} was unfair: {least}..{most} bytes per pipe");
        assert!(per.len() < n, "poll {k} served every pipe: the budget is not binding");
        assert_eq!(wakes[k], Some(Duration::ZERO), "poll {k} left output behind: wake now");
    }
    let served: std::collections::HashSet<i32> = got.iter().flat_map(|p| p.keys().copied()).collect();
    assert_eq!(served.len(), n, "two polls must reach every pipe (round-robin carries over)");
}
