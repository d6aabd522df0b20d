//! Port of gunicorn's companion-manager tests
//! (`shared/seeds/gunicorn-companion-manager-tests.txt`) to FakeSys and a
//! virtual clock. Times are seconds on the virtual clock.

mod common;

use common::{secs, Harness};
use procsup::{Backoff, Error, Exit, Output, Pid, ProcessSpec, State};

/// A companion: fixed restart delay (5 s unless said), start grace 1 s.
fn companion(name: &str) -> ProcessSpec {
    ProcessSpec::new(name, format!("/usr/bin/{name}")).backoff(Backoff::fixed(secs(5.0))).start_grace(secs(1.0))
}

#[test]
fn manager_builds_one_process_per_config() {
    let h = Harness::with([companion("rq"), companion("scheduler")]);
    let mut names: Vec<String> = h.sup.names().iter().map(|n| n.to_string()).collect();
    names.sort();
    assert_eq!(names, ["rq", "scheduler"]);
    assert_eq!(h.state("rq"), State::Stopped);
}

// `_resolve_target` resolves Python import strings; our "target" is a
// program, kept verbatim and validated on add.
#[test]
fn program_is_kept_verbatim() {
    let h = Harness::with([ProcessSpec::new("rq", "os-getpid")]);
    assert_eq!(h.sup.spec("rq").unwrap().get_program(), "os-getpid");
}

#[test]
fn bad_target_is_rejected() {
    let mut h = Harness::new();
    for bad in ["", "no\0nul"] {
        let err = h.sup.add_process(ProcessSpec::new("rq", bad)).unwrap_err();
        assert!(matches!(err, Error::InvalidSpec { .. }), "{bad:?}: {err}");
    }
    assert!(h.sup.is_empty());
}

#[test]
fn environment_sets_cwd_and_env() {
    let mut h = Harness::with([companion("rq").current_dir("/tmp").env("COMPANION_X", "1")]);
    h.start("rq");
    let spawned = &h.sup.sys().spawns()[0].spec;
    assert_eq!(spawned.get_current_dir(), Some(std::path::Path::new("/tmp")));
    let envs: Vec<_> = spawned.get_envs().collect();
    assert_eq!(envs, [("COMPANION_X".as_ref(), Some("1".as_ref()))]);
}

#[test]
fn environment_noop_without_cwd_env() {
    let mut h = Harness::with([companion("rq")]);
    h.start("rq");
    let spawned = &h.sup.sys().spawns()[0].spec;
    assert_eq!(spawned.get_current_dir(), None);
    assert_eq!(spawned.get_envs().len(), 0);
    assert!(!spawned.get_env_clear());
}

#[test]
fn output_inherits_by_default() {
    let spec = companion("rq");
    assert_eq!(spec.get_stdout(), &Output::Inherit);
    assert_eq!(spec.get_stderr(), &Output::Inherit);
}

// `_open_output`/`_redirect_output` (O_APPEND|O_CREAT, dup2 of stderr onto
// stdout) are real-fd behaviour: see tests/real_output.rs.

#[test]
fn reap_records_exit_code() {
    let mut h = Harness::with([companion("rq")]);
    h.start("rq");
    let pid = h.pid("rq");
    h.exit("rq", Exit::Exited(1));
    let now = h.now();
    let reaped = h.sup.reap_processes(now);
    assert_eq!(reaped.len(), 1);
    assert_eq!((&*reaped[0].name, reaped[0].pid, reaped[0].exit), ("rq", pid, Exit::Exited(1)));
    let st = h.sup.status("rq").unwrap();
    assert_eq!(st.last_exit, Some(Exit::Exited(1)));
    assert_eq!(st.last_exit.unwrap().signal_number(), None);
    assert_eq!(st.exit_count, 1);
    assert_eq!(st.pid, None);
}

#[test]
fn reap_records_signal() {
    let mut h = Harness::with([companion("rq")]);
    h.start("rq");
    h.exit("rq", Exit::Signaled(9));
    let now = h.now();
    h.sup.reap_processes(now);
    let st = h.sup.status("rq").unwrap();
    assert_eq!(st.last_exit.unwrap().signal_number(), Some(9));
    assert_eq!(st.last_exit.unwrap().code(), None);
}

#[test]
fn reap_no_children() {
    let mut h = Harness::with([companion("rq")]);
    let now = h.now();
    assert!(h.sup.reap_processes(now).is_empty());
    assert_eq!(h.state("rq"), State::Stopped);
}

#[test]
fn exit_unexpected_enters_backoff() {
    let mut h = Harness::with([companion("rq")]);
    h.start("rq");
    h.advance_to(100.0);
    h.tick(); // promoted: the exit below is not a failed start
    h.exit("rq", Exit::Exited(1));
    h.tick();
    let st = h.sup.status("rq").unwrap();
    assert_eq!(st.state, State::Backoff);
    assert_eq!(st.next_retry_at, Some(h.at(105.0)));
    // reap_processes already ran handle_exit: calling it again is a no-op.
    let now = h.now();
    assert!(!h.sup.handle_exit("rq", now).unwrap());
    assert_eq!(h.sup.status("rq").unwrap().next_retry_at, Some(h.at(105.0)));
}

#[test]
fn exit_after_manual_stop_stays_stopped() {
    let mut h = Harness::with([companion("rq")]);
    h.start("rq");
    h.advance_to(100.0);
    h.stop("rq");
    h.exit("rq", Exit::Signaled(15));
    h.tick();
    let st = h.sup.status("rq").unwrap();
    assert_eq!(st.state, State::Stopped);
    assert_eq!(st.next_retry_at, None);
    assert!(st.manual_stop);
}

/// Puts `rq` in Backoff with its retry due at 100 s.
fn backoff_due_at_100() -> Harness {
    let mut h = Harness::with([companion("rq")]);
    h.advance_to(90.0);
    h.start("rq");
    h.advance_to(95.0);
    h.exit("rq", Exit::Exited(1));
    h.tick();
    assert_eq!(h.sup.status("rq").unwrap().next_retry_at, Some(h.at(100.0)));
    h
}

#[test]
fn retry_backoff_respawns_when_due() {
    let mut h = backoff_due_at_100();
    h.sup.sys_mut().next_spawn_pid(Pid::from_raw(555));
    let retried = h.sup.retry_backoff(h.at(101.0));
    assert_eq!(retried.iter().map(|n| &**n).collect::<Vec<_>>(), ["rq"]);
    let st = h.sup.status("rq").unwrap();
    assert_eq!(st.restart_count, 1);
    assert_eq!(st.state, State::Starting);
    assert_eq!(st.pid, Some(Pid::from_raw(555)));
}

#[test]
fn retry_backoff_waits_until_due() {
    let mut h = backoff_due_at_100();
    assert!(h.sup.retry_backoff(h.at(99.0)).is_empty());
    assert_eq!(h.state("rq"), State::Backoff);
    // Exactly at the deadline it is due.
    assert_eq!(h.sup.retry_backoff(h.at(100.0)).len(), 1);
}

#[test]
fn reap_unexpected_exit_enters_backoff() {
    let mut h = Harness::with([companion("rq")]);
    h.start("rq");
    h.exit("rq", Exit::Exited(1));
    let now = h.now();
    h.sup.reap_processes(now);
    let st = h.sup.status("rq").unwrap();
    assert_eq!(st.state, State::Backoff);
    assert!(st.next_retry_at.is_some());
}

#[test]
fn promote_running_after_start_grace() {
    let mut h = Harness::with([companion("rq").start_grace(secs(1.0))]);
    h.advance_to(100.0);
    h.start("rq");
    let promoted = h.sup.promote_running(h.at(101.5));
    assert_eq!(promoted.iter().map(|n| &**n).collect::<Vec<_>>(), ["rq"]);
    assert_eq!(h.state("rq"), State::Running);
}

#[test]
fn promote_running_too_early() {
    let mut h = Harness::with([companion("rq").start_grace(secs(5.0))]);
    h.advance_to(100.0);
    h.start("rq");
    assert!(h.sup.promote_running(h.at(102.0)).is_empty());
    assert_eq!(h.state("rq"), State::Starting);
}

#[test]
fn promote_running_ignores_non_starting() {
    let mut h = backoff_due_at_100();
    // The retry deadline at 100 must not be mistaken for a promotion.
    assert!(h.sup.promote_running(h.at(999.0)).is_empty());
    assert_eq!(h.state("rq"), State::Backoff);
}

#[test]
fn spawn_records_pid_and_starting() {
    let mut h = Harness::with([companion("rq")]);
    h.sup.sys_mut().next_spawn_pid(Pid::from_raw(4321));
    let now = h.now();
    let pid = h.sup.spawn_process("rq", now).unwrap();
    assert_eq!(pid, Pid::from_raw(4321));
    let st = h.sup.status("rq").unwrap();
    assert_eq!(st.pid, Some(pid));
    assert_eq!(st.state, State::Starting);
    assert_eq!(st.started_at, Some(now));
    assert!(!st.manual_stop);
    // A second spawn while the child lives returns it instead of forking.
    assert_eq!(h.sup.spawn_process("rq", now).unwrap(), pid);
    assert_eq!(h.sup.sys().spawns().len(), 1);
}
