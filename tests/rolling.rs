//! Instances and rolling restarts on FakeSys (gunicorn's SIGHUP reload:
//! new workers up before old ones go).

mod common;

use std::collections::HashSet;

use common::{secs, Harness};
use nix::errno::Errno;
use procsup::{Error, Event, Exit, Pid, ProcessSpec, Signal, State};

fn web(n: u32) -> ProcessSpec {
    ProcessSpec::new("web", "server").instances(n).start_grace(secs(1.0)).stop_timeout(secs(5.0))
}

/// `n` running instances at t = 1 s.
fn running(n: u32) -> Harness {
    Harness::running_instances(web(n), n)
}

/// The new child a roll is starting for `name` (the old one serves).
fn replacement(h: &Harness, name: &str) -> Pid {
    h.sup.status(name).unwrap().replacement_pid.unwrap_or_else(|| panic!("{name} has no replacement starting"))
}

/// The replacement a roll is starting for `name` ends now.
fn exit_replacement(h: &mut Harness, name: &str, exit: Exit) {
    let pid = replacement(h, name);
    assert!(h.sup.sys_mut().exit(pid, exit), "{name}'s replacement {pid} was not alive");
}

/// Lets every old child that got SIGTERM exit at once, like a polite server.
fn exit_signalled(h: &mut Harness, seen: &mut HashSet<Pid>) {
    let signalled: Vec<Pid> =
        h.sup.sys().signals().iter().filter(|s| s.signal == Signal::SIGTERM).map(|s| s.pid).collect();
    for pid in signalled {
        if seen.insert(pid) {
            let _ = h.sup.sys_mut().exit(pid, Exit::Signaled(15));
        }
    }
}

/// Serving pids after each event; panics when fewer than `n` serve once
/// `n` did.
fn check_never_below(log: &[Event], n: usize) {
    let mut serving: HashSet<Pid> = HashSet::new();
    let mut full = false;
    for e in log {
        match e {
            Event::Running { pid, .. } => {
                serving.insert(*pid);
            }
            Event::Retiring { pid, .. }
            | Event::Stopping { pid, .. }
            | Event::Exited { pid, .. }
            | Event::Retired { pid, .. } => {
                serving.remove(pid);
            }
            _ => {}
        }
        full |= serving.len() >= n;
        assert!(!full || serving.len() >= n, "only {} serving after {e}", serving.len());
    }
    assert!(full);
}

/// One `roll_done` for `target`, after the last replacement was Running.
fn assert_roll_done(h: &Harness, target: &str) {
    let done: Vec<usize> = h.log.iter().enumerate().filter(|(_, e)| e.kind() == "roll_done").map(|(i, _)| i).collect();
    assert_eq!(done.len(), 1, "{:#?}", h.kinds());
    assert_eq!(h.log[done[0]].name(), target);
    let last_running = h.log.iter().rposition(|e| e.kind() == "running").unwrap();
    assert!(last_running < done[0], "{:#?}", h.kinds());
}

#[test]
fn instances_are_named_and_supervised_each_on_its_own() {
    let mut h = Harness::with([web(3)]);
    let names: Vec<String> = h.sup.names().iter().map(|n| n.to_string()).collect();
    assert_eq!(names, ["web:0", "web:1", "web:2"]);
    assert_eq!(h.sup.status("web:1").unwrap().group.as_deref(), Some("web"));
    h.start_all();
    h.exit("web:1", Exit::Exited(1));
    h.tick();
    assert_eq!(h.state("web:1"), State::Backoff);
    assert_eq!(h.state("web:0"), State::Starting);
    // Adding the group again is refused whole.
    assert!(matches!(h.sup.add_process(web(5)), Err(Error::DuplicateProcess(n)) if n == "web:0"));
    assert_eq!(h.sup.len(), 3);
}

#[test]
fn rolling_restart_replaces_one_at_a_time_never_fewer() {
    let mut h = running(3);
    let old: Vec<Pid> = (0..3).map(|i| h.pid(&format!("web:{i}"))).collect();
    let now = h.now();
    h.sup.rolling_restart(Some("web"), now).unwrap();
    h.drain();
    let mut seen = HashSet::new();
    for _ in 0..20 {
        h.advance(0.5);
        h.tick();
        exit_signalled(&mut h, &mut seen);
        h.tick();
    }
    assert_roll_done(&h, "web");
    check_never_below(&h.log, 3);
    for (i, old_pid) in old.iter().enumerate() {
        let name = format!("web:{i}");
        let st = h.sup.status(&name).unwrap();
        assert_eq!(st.state, State::Running);
        assert_ne!(st.pid, Some(*old_pid));
        assert_eq!(st.retiring_pid, None);
        assert_eq!(st.restart_count, 1);
        // The new pid was spawned before the old one got its stop signal.
        let spawned =
            h.log.iter().position(|e| matches!(e, Event::Spawned { pid, .. } if Some(*pid) == st.pid)).unwrap();
        let retiring = h.log.iter().position(|e| matches!(e, Event::Retiring { pid, .. } if pid == old_pid)).unwrap();
        assert!(spawned < retiring, "{name}");
    }
    // Oldest first, one at a time.
    let order: Vec<&str> = h.log.iter().filter(|e| e.kind() == "retiring").map(Event::name).collect();
    assert_eq!(order, ["web:0", "web:1", "web:2"]);
}

#[test]
fn an_old_child_that_ignores_sigterm_is_killed_at_the_stop_timeout() {
    let mut h = running(1);
    let old = h.pid("web:0");
    let now = h.now();
    h.sup.rolling_restart(None, now).unwrap();
    h.run_until(2.0); // replacement Running at 2 s: old gets SIGTERM
    assert_eq!(h.sup.sys().signals_to(old), [Signal::SIGTERM]);
    h.run_until(7.0);
    assert_eq!(h.sup.sys().signals_to(old), [Signal::SIGTERM, Signal::SIGKILL]);
    h.tick();
    assert!(h.log.iter().any(|e| matches!(e, Event::Retired { pid, exit: Exit::Signaled(9), .. } if *pid == old)));
    assert_eq!(h.state("web:0"), State::Running);
}

#[test]
fn a_replacement_that_exits_early_aborts_the_roll() {
    let mut h = running(3);
    let old: Vec<Pid> = (0..3).map(|i| h.pid(&format!("web:{i}"))).collect();
    let now = h.now();
    h.sup.rolling_restart(Some("web"), now).unwrap();
    h.drain();
    h.advance(0.2);
    exit_replacement(&mut h, "web:0", Exit::Exited(1));
    h.tick();
    let aborted = h.log.iter().find(|e| e.kind() == "roll_aborted").expect("aborted");
    assert_eq!(aborted.name(), "web:0");
    assert!(aborted.to_string().contains("code=1"), "{aborted}");
    for (i, pid) in old.iter().enumerate() {
        let st = h.sup.status(&format!("web:{i}")).unwrap();
        assert_eq!((st.state, st.pid), (State::Running, Some(*pid)), "web:{i} keeps serving");
    }
    assert!(h.sup.sys().signals().is_empty(), "nothing was stopped");
    h.run_until(30.0);
    assert_eq!(h.sup.sys().spawns().len(), 4, "no further replacement");
}

#[test]
fn a_replacement_that_cannot_spawn_aborts_the_roll() {
    let mut h = running(2);
    let old = h.pid("web:0");
    h.sup.sys_mut().fail_next_spawn(Errno::EAGAIN);
    let now = h.now();
    h.sup.rolling_restart(None, now).unwrap();
    h.drain();
    assert_eq!(h.kinds()[h.kinds().len() - 2..], ["spawn_failed", "roll_aborted"]);
    let st = h.sup.status("web:0").unwrap();
    assert_eq!((st.state, st.pid, st.restart_count), (State::Running, Some(old), 0));
    assert_eq!(h.sup.next_deadline(), None);
}

#[test]
fn stop_during_a_roll_stops_both_children() {
    let mut h = running(2);
    let old = h.pid("web:0");
    let now = h.now();
    h.sup.rolling_restart(None, now).unwrap();
    let new = replacement(&h, "web:0");
    h.stop("web:0");
    assert_eq!(h.sup.sys().signals_to(old), [Signal::SIGTERM]);
    assert_eq!(h.sup.sys().signals_to(new), [Signal::SIGTERM]);
    // The roll moved on to web:1.
    assert_ne!(h.sup.status("web:1").unwrap().replacement_pid, None);
    h.run_until(20.0);
    assert_eq!(h.state("web:0"), State::Stopped);
    assert_eq!(h.state("web:1"), State::Running);
    assert!(h.sup.sys().live_pids().iter().all(|p| Some(*p) == h.sup.status("web:1").unwrap().pid));
}

#[test]
fn zero_grace_replaces_at_once() {
    let mut h = Harness::with([web(2).start_grace(secs(0.0))]);
    h.start_all();
    let now = h.now();
    h.sup.rolling_restart(None, now).unwrap();
    h.drain();
    assert_eq!(h.kinds().iter().filter(|k| **k == "retiring").count(), 2);
    assert_roll_done(&h, "*");
}

#[test]
fn two_rolls_in_a_row_end_in_a_defined_state() {
    let mut h = running(2);
    let now = h.now();
    h.sup.rolling_restart(None, now).unwrap();
    h.sup.rolling_restart(None, now).unwrap();
    let mut seen = HashSet::new();
    for _ in 0..40 {
        h.advance(0.5);
        h.tick();
        exit_signalled(&mut h, &mut seen);
    }
    h.tick();
    check_never_below(&h.log, 2);
    assert_eq!(h.kinds().iter().filter(|k| **k == "roll_done").count(), 1);
    for i in 0..2 {
        let st = h.sup.status(&format!("web:{i}")).unwrap();
        assert_eq!((st.state, st.retiring_pid), (State::Running, None));
    }
    assert_eq!(h.sup.sys().live_pids().len(), 2);
}

#[test]
fn old_child_crashing_mid_replacement_does_not_stall_the_roll() {
    let mut h = running(2);
    let old = h.pid("web:0");
    let now = h.now();
    h.sup.rolling_restart(None, now).unwrap();
    assert!(h.sup.sys_mut().exit(old, Exit::Exited(3)));
    h.tick();
    assert!(h.log.iter().any(|e| matches!(e, Event::Retired { exit: Exit::Exited(3), .. })));
    let mut seen = HashSet::new();
    for _ in 0..10 {
        h.advance(0.5);
        h.tick();
        exit_signalled(&mut h, &mut seen);
    }
    assert_roll_done(&h, "*");
}

#[test]
fn unknown_roll_target_is_an_error() {
    let mut h = running(1);
    let now = h.now();
    assert!(matches!(h.sup.rolling_restart(Some("nope"), now), Err(Error::UnknownProcess(_))));
    // A single process name is a target too.
    h.sup.rolling_restart(Some("web:0"), now).unwrap();
    assert!(h.sup.status("web:0").unwrap().replacement_pid.is_some());
}

#[test]
fn removing_a_process_mid_roll_waits_for_both_children() {
    let mut h = running(1);
    let now = h.now();
    h.sup.rolling_restart(None, now).unwrap();
    h.sup.remove_process("web:0", now).unwrap();
    let (new, old) = (h.pid("web:0"), h.sup.status("web:0").unwrap().retiring_pid.unwrap());
    assert!(h.sup.sys_mut().exit(new, Exit::Signaled(15)));
    h.tick();
    assert_eq!(h.sup.len(), 1, "the old child still runs");
    assert!(h.sup.sys_mut().exit(old, Exit::Signaled(15)));
    h.tick();
    assert!(h.sup.is_empty());
    assert!(h.sup.is_idle());
}

#[test]
fn removing_a_process_whose_replacement_died_waits_for_the_old_child() {
    // Found by the property test: the replacement dies after it was
    // Running, the old child is still draining, then the process is removed.
    let mut h = Harness::with([web(1).restart(procsup::RestartPolicy::Never)]);
    h.start_all();
    h.advance(1.0);
    h.tick();
    let now = h.now();
    h.sup.rolling_restart(None, now).unwrap();
    h.advance(1.0);
    h.tick(); // replacement Running, old retiring
    let old = h.sup.status("web:0").unwrap().retiring_pid.unwrap();
    h.exit("web:0", Exit::Exited(1));
    h.tick();
    assert_eq!(h.state("web:0"), State::Exited);
    let now = h.now();
    h.sup.remove_process("web:0", now).unwrap();
    assert_eq!(h.sup.len(), 1);
    assert!(h.sup.sys_mut().exit(old, Exit::Signaled(15)));
    h.tick();
    assert!(h.sup.is_empty());
}

fn lines_of(h: &Harness, pid: Pid) -> Vec<String> {
    h.log
        .iter()
        .filter_map(|e| match e {
            Event::Output { pid: p, line, .. } if *p == pid => Some(String::from_utf8_lossy(line).into_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn old_and_new_children_keep_their_own_partial_lines() {
    use procsup::{Output, Stream};
    let mut h = Harness::with([web(1).stdout(Output::Capture)]);
    h.start_all();
    h.advance(1.0);
    h.tick();
    let old = h.pid("web:0");
    let now = h.now();
    h.sup.rolling_restart(None, now).unwrap();
    let new = replacement(&h, "web:0");
    for (pid, data) in [(old, "ol"), (new, "ne"), (old, "d\n"), (new, "w\n"), (old, "bye")] {
        assert!(h.sup.sys_mut().output(pid, Stream::Stdout, data.as_bytes()));
        h.tick();
    }
    assert_eq!(lines_of(&h, old), ["old"]);
    assert_eq!(lines_of(&h, new), ["new"]);
    // The old child's unfinished line comes out when it is retired.
    assert!(h.sup.sys_mut().exit(old, Exit::Signaled(15)));
    h.tick();
    assert_eq!(lines_of(&h, old), ["old", "bye"]);
    let retired = h.log.iter().position(|e| e.kind() == "retired").unwrap();
    let bye = h.log.iter().position(|e| matches!(e, Event::Output { line, .. } if line == b"bye")).unwrap();
    assert!(bye < retired);
}

#[test]
fn an_aborted_replacement_gives_the_old_child_its_partial_line_back() {
    use procsup::{Output, Stream};
    let mut h = Harness::with([web(1).stdout(Output::Capture)]);
    h.start_all();
    h.advance(1.0);
    h.tick();
    let old = h.pid("web:0");
    assert!(h.sup.sys_mut().output(old, Stream::Stdout, b"ab"));
    h.tick();
    let now = h.now();
    h.sup.rolling_restart(None, now).unwrap();
    exit_replacement(&mut h, "web:0", Exit::Exited(1)); // the replacement fails
    h.tick();
    assert_eq!(h.pid("web:0"), old);
    assert!(h.sup.sys_mut().output(old, Stream::Stdout, b"c\n"));
    h.tick();
    assert_eq!(lines_of(&h, old), ["abc"]);
}

#[test]
fn a_failed_sigkill_of_a_retiring_child_reports_no_kill() {
    let mut h = running(1);
    let now = h.now();
    h.sup.rolling_restart(None, now).unwrap();
    h.run_until(2.0); // replacement Running, old retiring until 7 s
    let old = h.sup.status("web:0").unwrap().retiring_pid.unwrap();
    h.sup.sys_mut().fail_next_signal(nix::errno::Errno::EPERM);
    h.run_until(8.0);
    assert_eq!(h.sup.sys().signals_to(old), [Signal::SIGTERM, Signal::SIGKILL]);
    assert!(!h.log.iter().any(|e| e.kind() == "killed"));
    assert_eq!(h.sup.next_deadline(), None, "no retry loop");
}

// ----- issue 11.9: status tells the truth during and after a roll ------

#[test]
fn status_shows_the_serving_child_while_its_replacement_starts() {
    let mut h = running(4);
    let old = h.pid("web:0");
    let old_started = h.sup.status("web:0").unwrap().started_at;
    h.advance(3.0);
    let now = h.now();
    h.sup.rolling_restart(Some("web"), now).unwrap();
    let new = replacement(&h, "web:0");
    // Four children serve, so a host counting Running counts four.
    let running = h.sup.statuses().iter().filter(|s| s.state == State::Running).count();
    assert_eq!(running, 4);
    let st = h.sup.status("web:0").unwrap();
    assert_eq!((st.pid, st.started_at, st.retiring_pid, st.replacement_pid), (Some(old), old_started, None, Some(new)));
    assert_eq!(st.uptime(h.now()), Some(secs(4.0)), "the serving child's uptime");
    // Once the replacement is Running, it serves and the old one drains.
    h.advance(1.0);
    h.tick();
    let st = h.sup.status("web:0").unwrap();
    assert_eq!((st.state, st.pid, st.retiring_pid, st.replacement_pid), (State::Running, Some(new), Some(old), None));
    assert_eq!(st.started_at, Some(h.at(4.0)));
}

#[test]
fn a_failed_replacement_is_not_the_serving_childs_exit() {
    let mut h = running(2);
    let before = h.sup.status("web:0").unwrap();
    let now = h.now();
    h.sup.rolling_restart(None, now).unwrap();
    let new = replacement(&h, "web:0");
    h.advance(0.2);
    exit_replacement(&mut h, "web:0", Exit::Exited(1));
    h.tick();
    // The exit is reported as the replacement's: its pid and its uptime...
    let exited = h.log.iter().find(|e| e.kind() == "exited").expect("an exited event");
    assert!(matches!(exited, Event::Exited { pid, uptime, .. } if *pid == new && *uptime == secs(0.2)), "{exited}");
    // ...and the status still describes the child that serves.
    let after = h.sup.status("web:0").unwrap();
    assert_eq!(after, before, "the serving child's status is unchanged");
}

#[test]
fn restart_count_goes_back_down_after_every_abort() {
    type Abort = fn(&mut Harness);
    let aborts: [(&str, Abort); 4] = [
        ("replacement exits early", |h| {
            exit_replacement(h, "web:0", Exit::Exited(1));
            h.tick();
        }),
        ("old child crashed, then the replacement", |h| {
            let old = h.pid("web:0");
            assert!(h.sup.sys_mut().exit(old, Exit::Exited(3)));
            h.tick();
            // Nothing else serves: the replacement is the process's child.
            assert_eq!(h.sup.status("web:0").unwrap().replacement_pid, None);
            h.exit("web:0", Exit::Exited(1));
            h.tick();
        }),
        ("stop_all", |h| {
            let now = h.now();
            h.sup.stop_all(now);
        }),
        ("stop_process", |h| h.stop("web:0")),
    ];
    for (what, abort) in aborts {
        let mut h = running(2);
        let now = h.now();
        h.sup.rolling_restart(None, now).unwrap();
        assert_eq!(h.sup.status("web:0").unwrap().restart_count, 1, "{what}: a replacement counts");
        h.advance(0.2);
        abort(&mut h);
        h.drain();
        assert_eq!(h.sup.status("web:0").unwrap().restart_count, 0, "{what}: it never served");
    }
}

#[test]
fn stop_all_during_a_roll_ends_it_with_a_defined_event() {
    let mut h = running(2);
    let old = h.pid("web:0");
    let now = h.now();
    h.sup.rolling_restart(Some("web"), now).unwrap();
    let new = replacement(&h, "web:0");
    h.drain();
    let now = h.now();
    h.sup.stop_all(now);
    h.drain();
    let aborted: Vec<String> = h.log.iter().filter(|e| e.kind() == "roll_aborted").map(|e| e.to_string()).collect();
    assert_eq!(aborted, ["event=roll_aborted name=web reason=\"stopped by stop_all\""]);
    assert_eq!(h.sup.sys().signals_to(old), [Signal::SIGTERM]);
    assert_eq!(h.sup.sys().signals_to(new), [Signal::SIGTERM]);
    let mut seen = HashSet::new();
    for _ in 0..30 {
        h.advance(0.5);
        h.tick();
        exit_signalled(&mut h, &mut seen);
    }
    assert!(h.sup.is_idle());
    assert!(!h.kinds().contains(&"roll_done"));
    assert_eq!(h.sup.sys().spawns().len(), 3, "web:1 was never replaced");
    for i in 0..2 {
        assert_eq!(h.state(&format!("web:{i}")), State::Stopped);
    }
}

/// A roll's replacement is spawned while the old child still runs: its
/// respawn hint counts from the old child's spawn (its age then), so a
/// roll of children up a while is not taken for a crash loop.
#[test]
fn a_replacement_counts_from_the_old_childs_spawn() {
    let mut h = running(1);
    h.advance(2.0);
    let now = h.now();
    h.sup.rolling_restart(Some("web"), now).unwrap();
    h.tick();
    replacement(&h, "web:0");
    assert_eq!(h.sup.sys().respawn_since_last_spawn("web:0"), Some(Some(secs(3.0))), "{:?}", h.kinds());
}
