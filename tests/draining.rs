//! Draining, on `FakeSys` at exact virtual instants: a leader was reaped
//! but the rest of its tree lives. The process is neither `Stopped` nor
//! restarted until the tree is empty; the rest gets the stop signal and
//! SIGKILL at the stop timeout, through the one timer table.

mod common;

use common::{secs, Harness};
use procsup::{Backoff, Containment, Event, Exit, KillMode, ProcessSpec, RestartPolicy, Signal, State};

fn spec(name: &str) -> ProcessSpec {
    ProcessSpec::new(name, "prog").backoff(Backoff::fixed(secs(2.0))).start_grace(secs(1.0)).stop_timeout(secs(5.0))
}

fn leave_tree(h: &mut Harness, name: &str, exit: Exit) -> procsup::Pid {
    let pid = h.pid(name);
    assert!(h.sup.sys_mut().exit_leaving_tree(pid, exit), "{name} was not alive");
    pid
}

fn signals(h: &Harness, pid: procsup::Pid) -> Vec<Signal> {
    h.sup.sys().signals_to(pid)
}

/// The first bug of issue 10: a `Stopping` leader's exit dropped its kill
/// deadline, so a TERM-ignoring grandchild lived on.
#[test]
fn a_stopped_leaders_exit_keeps_the_kill_deadline_of_the_stop() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    h.advance_to(2.0);
    h.stop("a");
    let pid = h.pid("a");
    assert_eq!(signals(&h, pid), [Signal::SIGTERM]);

    h.advance_to(3.0);
    leave_tree(&mut h, "a", Exit::Signaled(15));
    h.tick();
    let st = h.sup.status("a").unwrap();
    assert_eq!(st.state, State::Stopping, "not Stopped while the tree lives");
    assert!(st.draining);
    assert_eq!(st.last_exit, Some(Exit::Signaled(15)));
    assert_eq!(st.exit_count, 1);
    assert_eq!(h.sup.next_deadline(), Some(h.at(7.0)), "the stop's deadline (2 s + 5 s) stands");
    assert_eq!(signals(&h, pid), [Signal::SIGTERM], "the stop signal already reached the tree");
    assert!(h.kinds().ends_with(&["exited", "draining"]));

    h.advance_to(6.999);
    h.tick();
    assert_eq!(signals(&h, pid), [Signal::SIGTERM]);
    h.advance_to(7.0);
    h.tick(); // SIGKILL to the tree; the fake empties it, reported next poll
    assert_eq!(signals(&h, pid), [Signal::SIGTERM, Signal::SIGKILL]);
    h.tick();
    let st = h.sup.status("a").unwrap();
    assert_eq!((st.state, st.draining, st.pid), (State::Stopped, false, None));
    assert!(h.kinds().ends_with(&["killed", "drained", "stopped"]), "{:?}", h.kinds());
    assert!(h.sup.is_idle());
}

#[test]
fn a_leader_that_exits_on_its_own_drains_before_its_restart() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    h.advance_to(10.0);
    h.tick();
    assert_eq!(h.state("a"), State::Running);
    let pid = leave_tree(&mut h, "a", Exit::Exited(1));
    h.tick();
    let st = h.sup.status("a").unwrap();
    assert_eq!((st.state, st.draining, st.pid), (State::Stopping, true, Some(pid)));
    assert_eq!(signals(&h, pid), [Signal::SIGTERM], "the rest gets the stop signal at the leader's exit");
    assert_eq!(h.sup.next_deadline(), Some(h.at(15.0)));
    assert!(h.log.iter().any(|e| matches!(e,
        Event::Draining { signal: Some(Signal::SIGTERM), kill_at: Some(t), .. } if *t == h.at(15.0))));

    h.advance_to(15.0);
    h.tick();
    h.tick();
    assert_eq!(signals(&h, pid), [Signal::SIGTERM, Signal::SIGKILL]);
    // The policy applies once the tree is empty: restart after 2 s, counted
    // from then, and as a process that had reached Running.
    let st = h.sup.status("a").unwrap();
    assert_eq!(st.state, State::Backoff);
    assert_eq!(st.next_retry_at, Some(h.at(17.0)));
    assert_eq!(h.sup.sys().spawns().len(), 1, "no restart while the tree lived");
    h.advance_to(17.0);
    h.tick();
    assert_eq!(h.sup.sys().spawns().len(), 2);
    assert_eq!(h.state("a"), State::Starting);
}

#[test]
fn a_tree_that_empties_before_the_deadline_gets_no_sigkill() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    h.advance_to(4.0);
    h.tick();
    let pid = leave_tree(&mut h, "a", Exit::Exited(1));
    h.tick();
    h.advance_to(6.0);
    assert!(h.sup.sys_mut().tree_empty(pid));
    h.tick();
    assert_eq!(signals(&h, pid), [Signal::SIGTERM], "no SIGKILL");
    assert_eq!(h.state("a"), State::Backoff);
    assert_eq!(h.sup.next_deadline(), Some(h.at(8.0)), "the kill deadline is gone; the retry is next");
    assert_eq!(h.sup.status("a").unwrap().restart_count, 0);
}

#[test]
fn a_failed_start_stays_failed_however_long_its_tree_drains() {
    let mut h = Harness::with([spec("a").give_up_after(2)]);
    h.start("a");
    h.advance_to(0.5);
    let pid = leave_tree(&mut h, "a", Exit::Exited(1));
    h.tick();
    assert_eq!(h.state("a"), State::Stopping);
    h.advance_to(3.0); // past the start grace: the leader's uptime counts, not the tree's
    assert!(h.sup.sys_mut().tree_empty(pid));
    h.tick();
    let st = h.sup.status("a").unwrap();
    assert_eq!((st.state, st.failure_streak), (State::Backoff, 1));
}

#[test]
fn a_manual_stop_while_draining_ends_stopped_and_start_respawns_when_empty() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    h.advance_to(2.0);
    let pid = leave_tree(&mut h, "a", Exit::Exited(1));
    h.tick();
    h.advance_to(3.0);
    h.stop("a");
    assert_eq!(h.sup.next_deadline(), Some(h.at(7.0)), "the drain's deadline, not a new one");
    assert!(h.sup.sys_mut().tree_empty(pid));
    h.tick();
    assert_eq!(h.state("a"), State::Stopped);

    h.start("a");
    let pid = leave_tree(&mut h, "a", Exit::Exited(1));
    h.tick();
    h.advance_to(4.0);
    h.start("a"); // while draining: started again once the tree is empty
    assert_eq!(h.sup.sys().spawns().len(), 2);
    assert!(h.sup.sys_mut().tree_empty(pid));
    h.tick();
    assert_eq!(h.sup.sys().spawns().len(), 3);
    assert_eq!(h.state("a"), State::Starting);
}

#[test]
fn shutdown_is_not_idle_until_every_tree_is_empty() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    h.advance_to(2.0);
    let now = h.now();
    h.sup.shutdown(now);
    let pid = leave_tree(&mut h, "a", Exit::Signaled(15));
    h.tick();
    assert!(!h.sup.is_idle(), "the tree still lives");
    h.advance_to(7.0);
    h.tick();
    h.tick();
    assert!(h.sup.is_idle());
    assert_eq!(signals(&h, pid), [Signal::SIGTERM, Signal::SIGKILL]);
}

#[test]
fn remove_waits_for_the_tree() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    h.advance_to(2.0);
    let now = h.now();
    h.sup.remove_process("a", now).unwrap();
    let pid = leave_tree(&mut h, "a", Exit::Signaled(15));
    h.tick();
    assert!(h.sup.status("a").is_ok(), "still there while the tree lives");
    assert!(h.sup.sys_mut().tree_empty(pid));
    h.tick();
    assert!(h.sup.status("a").is_err());
    assert!(h.kinds().ends_with(&["drained", "stopped", "removed"]), "{:?}", h.kinds());
}

#[test]
fn a_retiring_child_drains_under_its_own_kill_deadline() {
    let mut h = Harness::with([spec("a").instances(1)]);
    h.start_all();
    h.advance_to(1.0);
    h.tick();
    let old = h.pid("a:0");
    let now = h.now();
    h.sup.rolling_restart(Some("a"), now).unwrap();
    h.advance_to(2.0);
    h.tick(); // the replacement is Running: the old one gets TERM, kill at 7 s
    assert_eq!(signals(&h, old), [Signal::SIGTERM]);
    assert!(h.sup.sys_mut().exit_leaving_tree(old, Exit::Signaled(15)));
    h.tick();
    assert_eq!(h.sup.status("a:0").unwrap().retiring_pid, Some(old), "retiring until its tree is empty");
    assert_eq!(h.sup.next_deadline(), Some(h.at(7.0)));
    h.advance_to(7.0);
    h.tick();
    h.tick();
    assert_eq!(signals(&h, old), [Signal::SIGTERM, Signal::SIGKILL]);
    assert_eq!(h.sup.status("a:0").unwrap().retiring_pid, None);
    assert!(h.log.iter().any(|e| matches!(e, Event::Retired { pid, exit: Exit::Signaled(15), .. } if *pid == old)));
}

#[test]
fn the_status_names_the_containment_and_a_spec_can_opt_out() {
    let mut h = Harness::with([
        spec("tree"),
        spec("solo").kill_mode(KillMode::Process),
        spec("nogroup").process_group(false).restart(RestartPolicy::Never),
    ]);
    assert_eq!(h.sup.status("tree").unwrap().containment, None, "nothing spawned yet");
    h.start_all();
    let c = |h: &Harness, n: &str| h.sup.status(n).unwrap().containment;
    assert_eq!(c(&h, "tree"), Some(Containment::ProcessGroup));
    assert_eq!(c(&h, "solo"), Some(Containment::None));
    assert_eq!(c(&h, "nogroup"), Some(Containment::None));
    h.stop("solo");
    let solo = h.pid("solo");
    assert!(!h.sup.sys().signals().iter().any(|s| s.pid == solo && s.group), "KillMode::Process: the child only");

    let mut h = Harness::with([spec("cg")]);
    h.sup.sys_mut().set_containment(Containment::Cgroup);
    h.start_all();
    assert_eq!(c(&h, "cg"), Some(Containment::Cgroup));
}

#[test]
fn a_replacement_that_fails_leaving_a_tree_drains_while_the_old_child_serves() {
    let mut h = Harness::with([spec("a").instances(1)]);
    h.start_all();
    h.advance_to(1.0);
    h.tick();
    let old = h.pid("a:0");
    let now = h.now();
    h.sup.rolling_restart(Some("a"), now).unwrap();
    let new = h.sup.status("a:0").unwrap().replacement_pid.expect("a replacement starts");
    h.advance_to(1.5); // inside its 1 s grace
    assert!(h.sup.sys_mut().exit_leaving_tree(new, Exit::Exited(3)));
    h.tick();
    let st = h.sup.status("a:0").unwrap();
    assert_eq!((st.state, st.pid, st.draining), (State::Running, Some(old), false), "the old child still serves");
    assert_eq!(signals(&h, new), [Signal::SIGTERM], "the replacement's tree gets the stop signal");
    assert!(signals(&h, old).is_empty());
    assert_eq!(h.sup.next_deadline(), Some(h.at(6.5)));
    assert!(!h.kinds().contains(&"roll_aborted"), "not before its tree is empty");
    h.advance_to(6.5);
    h.tick();
    h.tick();
    assert_eq!(signals(&h, new), [Signal::SIGTERM, Signal::SIGKILL]);
    let st = h.sup.status("a:0").unwrap();
    assert_eq!((st.state, st.pid, st.replacement_pid), (State::Running, Some(old), None));
    assert!(h.kinds().contains(&"roll_aborted"), "{:?}", h.kinds());
    assert!(signals(&h, old).is_empty(), "the old child was never touched");
}
