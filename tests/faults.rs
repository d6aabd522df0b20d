//! Every fault the OS layer can produce, and the outcome procsup defines
//! for it (see RELIABILITY.md).

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{secs, Harness};
use nix::errno::Errno;
use procsup::{Backoff, Event, Exit, ProcessSpec, RestartPolicy, Signal, State};

fn spec(name: &str) -> ProcessSpec {
    ProcessSpec::new(name, "prog").backoff(Backoff::fixed(secs(1.0))).start_grace(secs(1.0)).stop_timeout(secs(5.0))
}

#[test]
fn transient_spawn_failures_are_retried() {
    for errno in [Errno::EAGAIN, Errno::ENOMEM] {
        let mut h = Harness::with([spec("a").fatal_exec_errors(true)]);
        h.sup.sys_mut().fail_next_spawn(errno);
        h.start("a");
        let st = h.sup.status("a").unwrap();
        assert_eq!((st.state, st.last_spawn_error), (State::Backoff, Some(errno)), "{errno}");
        h.run_until(1.0);
        let st = h.sup.status("a").unwrap();
        assert_eq!((st.state, st.last_spawn_error), (State::Starting, None), "{errno}");
    }
}

#[test]
fn exec_errors_are_retried_unless_fatal_is_asked_for() {
    for errno in [Errno::ENOENT, Errno::EACCES] {
        let mut h = Harness::with([spec("a"), spec("b").fatal_exec_errors(true)]);
        h.sup.sys_mut().fail_next_spawn(errno);
        h.sup.sys_mut().fail_next_spawn(errno);
        h.start_all();
        assert_eq!(h.state("a"), State::Backoff, "{errno}");
        assert_eq!(h.state("b"), State::Fatal, "{errno}");
    }
}

#[test]
fn stop_signal_to_a_child_that_just_died_is_harmless() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    let pid = h.pid("a");
    h.sup.sys_mut().fail_next_signal(Errno::ESRCH);
    h.stop("a");
    assert_eq!(h.state("a"), State::Stopping);
    assert!(h.sup.sys_mut().exit(pid, Exit::Exited(0)));
    h.tick();
    assert_eq!(h.state("a"), State::Stopped);
    assert!(!h.sup.sys().signals_to(pid).contains(&Signal::SIGKILL));
}

#[test]
fn eperm_on_the_stop_signal_still_escalates() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    let pid = h.pid("a");
    h.sup.sys_mut().fail_next_signal(Errno::EPERM);
    h.stop("a");
    assert_eq!(h.state("a"), State::Stopping);
    h.run_until(5.0);
    assert_eq!(h.sup.sys().signals_to(pid), [Signal::SIGTERM, Signal::SIGKILL]);
    h.tick();
    assert_eq!(h.state("a"), State::Stopped);
}

#[test]
fn eperm_on_sigkill_leaves_it_stopping_without_a_killed_event() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    let pid = h.pid("a");
    h.stop("a");
    h.sup.sys_mut().fail_next_signal(Errno::EPERM);
    h.run_until(5.0);
    assert_eq!(h.state("a"), State::Stopping);
    assert!(!h.log.iter().any(|e| matches!(e, Event::Killed { .. })));
    assert_eq!(h.sup.next_deadline(), None, "no retry loop");
    // It exits on its own in the end.
    assert!(h.sup.sys_mut().exit(pid, Exit::Exited(0)));
    h.tick();
    assert_eq!(h.state("a"), State::Stopped);
}

#[test]
fn an_interrupted_wait_loses_nothing() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    h.exit("a", Exit::Exited(2));
    h.sup.sys_mut().interrupt_polls(2);
    h.tick();
    h.tick();
    assert_eq!(h.state("a"), State::Starting, "not seen yet");
    h.tick();
    let st = h.sup.status("a").unwrap();
    assert_eq!((st.state, st.exit_count, st.last_exit), (State::Backoff, 1, Some(Exit::Exited(2))));
}

#[test]
fn a_lost_exit_status_counts_as_a_failure() {
    for policy in [RestartPolicy::Always, RestartPolicy::OnFailure] {
        let mut h = Harness::with([spec("a").restart(policy)]);
        h.start("a");
        let pid = h.pid("a");
        assert!(h.sup.sys_mut().lose_exit(pid));
        h.tick();
        let st = h.sup.status("a").unwrap();
        assert_eq!((st.state, st.last_exit), (State::Backoff, Some(Exit::Unknown)), "{policy:?}");
        assert!(h.log.iter().any(|e| e.to_string().contains("status=unknown")));
    }
}

#[test]
fn an_exit_between_stop_signal_and_kill_deadline_is_a_clean_stop() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    let pid = h.pid("a");
    h.stop("a");
    h.advance(4.9);
    assert!(h.sup.sys_mut().exit(pid, Exit::Signaled(15)));
    h.run_until(20.0);
    assert_eq!(h.state("a"), State::Stopped);
    assert_eq!(h.sup.sys().signals_to(pid), [Signal::SIGTERM]);
}

#[test]
fn exits_in_a_burst_are_all_handled() {
    let names: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
    let mut h = Harness::with(names.iter().map(|n| spec(n)));
    h.start_all();
    for n in &names {
        h.exit(n, Exit::Exited(1));
    }
    h.tick(); // one poll reports all hundred
    assert!(names.iter().all(|n| h.state(n) == State::Backoff));
    assert_eq!(h.kinds().iter().filter(|k| **k == "exited").count(), 100);
    h.run_until(1.0);
    assert!(names.iter().all(|n| h.state(n) == State::Starting));
    assert_eq!(h.sup.sys().spawns().len(), 200);
}

#[test]
fn a_reported_pid_that_is_not_ours_is_ignored() {
    // A broken Sys reporting a stranger: logged, nothing else changes.
    use procsup::{Sys, SysEvent};
    #[derive(Debug, Default)]
    struct Liar(procsup::testing::FakeSys);
    impl Sys for Liar {
        fn spawn(&mut self, spec: &ProcessSpec) -> std::io::Result<procsup::Pid> {
            self.0.spawn(spec)
        }
        fn signal(&mut self, pid: procsup::Pid, signal: Signal) -> std::io::Result<()> {
            self.0.signal(pid, signal)
        }
        fn poll(&mut self, events: &mut Vec<SysEvent>) {
            events.push(SysEvent::Exited { pid: procsup::Pid::from_raw(4_000_000), exit: Exit::Exited(0) });
            self.0.poll(events);
        }
    }
    let mut sup = procsup::Supervisor::with_sys(Liar::default());
    sup.add_process(spec("a")).unwrap();
    let t = std::time::Instant::now();
    sup.start_all(t).unwrap();
    assert!(sup.reap_processes(t).is_empty());
    assert_eq!(sup.status("a").unwrap().state, State::Starting);
}

#[test]
fn fake_liveness_and_recording() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    let pid = h.pid("a");
    assert!(h.sup.sys().is_alive(pid));
    h.sup.sys_mut().set_recording(false);
    assert!(h.sup.sys().spawns().is_empty(), "records forgotten");
    h.stop("a");
    assert!(h.sup.sys().signals().is_empty(), "not recorded while off");
    h.exit("a", Exit::Exited(0));
    assert!(!h.sup.sys().is_alive(pid), "exited, even before it is reaped");
    h.tick();
    h.sup.sys_mut().set_recording(true);
    h.start("a");
    assert_eq!(h.sup.sys().spawns().len(), 1);
}

#[test]
fn an_adopted_orphans_exit_is_reported_and_changes_no_process() {
    // Subreaper mode: the OS layer reaps an orphan adopted from a's tree,
    // and one from no supervised tree; neither is a's own exit.
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    let pid = h.pid("a");
    h.sup.sys_mut().adopted_exit(procsup::Pid::from_raw(9001), Some("a"), Exit::Exited(7));
    h.sup.sys_mut().adopted_exit(procsup::Pid::from_raw(9002), None, Exit::Signaled(9));
    h.tick();
    let adopted: Vec<String> = h.log.iter().filter(|e| e.kind() == "adopted_exited").map(|e| e.to_string()).collect();
    assert_eq!(
        adopted,
        ["event=adopted_exited name=a pid=9001 code=7", "event=adopted_exited name=\"\" pid=9002 signal=9"]
    );
    assert_eq!((h.state("a"), h.pid("a")), (State::Starting, pid));
    assert_eq!(h.sup.status("a").unwrap().exit_count, 0);
}
