//! Port of Twisted's procmon tests (`shared/seeds/twisted-procmon-tests.txt`)
//! to FakeSys and a virtual clock. Twisted's monitor: minRestartDelay 2,
//! maxRestartDelay 10, threshold 10, killTime 5.
//!
//! Mapping: `addProcess` + `startService` = `add_process` + `start_all`,
//! in either order (an add after `start_all` is due at once and spawned by
//! the next tick, as `reactor.advance(0)` does; see
//! `add_process_env_reaches_spawn`);
//! Twisted's `stopProcess` restarts the process afterwards, so it maps to
//! `restart_process`; `stopService` = `stop_all`. The output tests are in
//! `seed_twisted_output.rs` (they need a global logger).

mod common;

use common::{secs, Harness};
use procsup::{Backoff, Error, Event, Exit, ProcessSpec, Signal, State};

const THRESHOLD: f64 = 10.0;
const KILL_TIME: f64 = 5.0;

fn procmon(name: &str, min: f64, max: f64, threshold: f64) -> ProcessSpec {
    ProcessSpec::new(name, name)
        .start_grace(secs(threshold))
        .backoff(Backoff::exponential(secs(min)).max(secs(max)).jitter(0.0).immediate_after_running(true))
        .stop_timeout(secs(KILL_TIME))
}

fn foo() -> ProcessSpec {
    procmon("foo", 2.0, 10.0, THRESHOLD)
}

#[test]
fn spec_keeps_what_was_added() {
    // getStateIncludesProcesses: the monitored process's args, uid, gid and
    // env can be read back. (getStateExcludesReactor is about pickling a
    // service; a Supervisor is not serialised, so it has no port.)
    let h = Harness::with([foo().args(["arg1", "arg2"]).uid(1).gid(2)]);
    let spec = h.sup.spec("foo").unwrap();
    assert_eq!(spec.get_args().collect::<Vec<_>>(), ["arg1", "arg2"]);
    assert_eq!((spec.get_uid(), spec.get_gid(), spec.get_envs().len()), (Some(1), Some(2), 0));
}

#[test]
fn add_process_starts_nothing_until_started() {
    let mut h = Harness::with([foo().args(["arg1", "arg2"])]);
    h.tick();
    assert!(h.sup.sys().spawns().is_empty());
    h.start_all();
    h.tick();
    assert_eq!(h.sup.sys().spawns().len(), 1);
    assert!(h.sup.status("foo").unwrap().pid.is_some());
}

#[test]
fn add_process_duplicate_is_an_error() {
    let mut h = Harness::with([foo()]);
    let err = h.sup.add_process(foo()).unwrap_err();
    assert!(matches!(err, Error::DuplicateProcess(ref n) if n == "foo"), "{err}");
}

#[test]
fn add_process_env_reaches_spawn() {
    // test_addProcessEnv, in the seed's order: startService, then
    // addProcess, then reactor.advance(0) spawns it.
    let mut h = Harness::new();
    h.start_all();
    h.sup.add_process(foo().uid(1).gid(2).env_clear().env("KEY", "value")).unwrap();
    assert!(h.sup.sys().spawns().is_empty(), "add_process takes no now: due, not spawned");
    assert_eq!(h.sup.next_deadline(), Some(h.now()), "due at once");
    h.advance(0.0);
    h.tick();
    assert_eq!(h.sup.sys().spawns().len(), 1);
    let spec = &h.sup.sys().spawns()[0].spec;
    assert!(spec.get_env_clear());
    assert_eq!(spec.get_envs().collect::<Vec<_>>(), [("KEY".as_ref(), Some("value".as_ref()))]);
}

#[test]
fn remove_process() {
    let mut h = Harness::with([foo()]);
    h.start_all();
    assert_eq!(h.sup.len(), 1);
    let now = h.now();
    h.sup.remove_process("foo", now).unwrap();
    // A running process is stopped first, then forgotten once reaped.
    assert_eq!(h.state("foo"), State::Stopping);
    h.exit("foo", Exit::Signaled(15));
    h.tick();
    assert_eq!(h.sup.len(), 0);
    assert!(h.log.iter().any(|e| matches!(e, Event::Removed { .. })));
}

#[test]
fn remove_process_unknown_is_an_error() {
    let mut h = Harness::new();
    let now = h.now();
    assert!(matches!(h.sup.remove_process("foo", now), Err(Error::UnknownProcess(_))));
}

// Twisted bug: a restart scheduled before removeProcess still fired and
// re-spawned a removed process. Here removal cancels the pending restart.
#[test]
fn remove_process_cancels_pending_restart() {
    let mut h = Harness::with([foo()]);
    h.start_all();
    h.advance(1.0);
    h.exit("foo", Exit::Exited(1));
    h.tick();
    assert_eq!(h.state("foo"), State::Backoff);
    let now = h.now();
    h.sup.remove_process("foo", now).unwrap();
    assert_eq!(h.sup.next_deadline(), None);
    h.run_until(100.0);
    assert_eq!(h.sup.sys().spawns().len(), 1);
    assert!(h.sup.is_empty());
}

#[test]
fn start_process_records_pid_and_start_time() {
    let mut h = Harness::with([foo()]);
    h.advance(3.0);
    h.start("foo");
    let st = h.sup.status("foo").unwrap();
    assert!(st.pid.is_some());
    assert_eq!(st.started_at, Some(h.at(3.0)));
}

#[test]
fn start_process_already_started_is_a_noop() {
    let mut h = Harness::with([foo()]);
    h.start("foo");
    let pid = h.pid("foo");
    let now = h.now();
    assert!(h.sup.start_process("foo", now).is_ok());
    assert_eq!(h.pid("foo"), pid);
    assert_eq!(h.sup.sys().spawns().len(), 1);
}

#[test]
fn start_process_unknown_is_an_error() {
    let mut h = Harness::new();
    let now = h.now();
    assert!(matches!(h.sup.start_process("foo", now), Err(Error::UnknownProcess(_))));
}

#[test]
fn stop_process_natural_termination_restarts_at_once() {
    let mut h = Harness::with([foo()]);
    h.start_all();
    h.advance(THRESHOLD);
    h.tick();
    let now = h.now();
    h.sup.restart_process("foo", now).unwrap();
    assert_eq!(h.sup.sys().signals_to(h.pid("foo")), [Signal::SIGTERM]);
    // The process takes 1 s to die after SIGTERM.
    h.advance(1.0);
    h.exit("foo", Exit::Exited(0));
    h.tick();
    assert_eq!(h.started_at("foo"), 11.0);
    assert_eq!(h.state("foo"), State::Starting);
}

#[test]
fn stop_process_forced_kill() {
    let mut h = Harness::with([foo()]);
    h.start_all();
    h.advance(THRESHOLD);
    h.tick();
    let first = h.pid("foo");
    let now = h.now();
    h.sup.restart_process("foo", now).unwrap();
    // The process ignores SIGTERM.
    h.advance(KILL_TIME - 1.0);
    h.tick();
    assert_eq!(h.started_at("foo"), 0.0);
    assert_eq!(h.sup.sys().signals_to(first), [Signal::SIGTERM]);
    h.advance(1.0);
    h.tick(); // SIGKILL; the kernel ends the child
    assert_eq!(h.sup.sys().signals_to(first), [Signal::SIGTERM, Signal::SIGKILL]);
    h.tick(); // the host wakes on the exit and reaps it
    assert_eq!(h.started_at("foo"), 15.0);
    assert_ne!(h.pid("foo"), first);
}

#[test]
fn stop_process_unknown_is_an_error() {
    let mut h = Harness::new();
    let now = h.now();
    assert!(matches!(h.sup.stop_process("foo", now), Err(Error::UnknownProcess(_))));
}

#[test]
fn stop_process_already_stopped_is_a_noop() {
    let mut h = Harness::with([foo()]);
    h.stop("foo");
    assert_eq!(h.state("foo"), State::Stopped);
    assert!(h.sup.sys().signals().is_empty());
    assert!(h.log.is_empty());
}

#[test]
fn long_lived_process_restarts_at_once() {
    let mut h = Harness::with([foo()]);
    h.start_all();
    h.advance(THRESHOLD);
    h.exit("foo", Exit::Exited(0));
    h.tick();
    assert_eq!(h.delays("foo"), [0.0]);
    assert_eq!(h.sup.sys().spawns().len(), 2);
    assert_eq!(h.started_at("foo"), THRESHOLD);
}

#[test]
fn exit_cancels_the_pending_kill() {
    let mut h = Harness::with([foo()]);
    h.start_all();
    h.advance(1.0);
    h.stop("foo");
    assert_eq!(h.sup.next_deadline(), Some(h.at(1.0 + KILL_TIME)));
    h.advance(1.0);
    h.exit("foo", Exit::Exited(0));
    h.tick();
    assert_eq!(h.sup.next_deadline(), None);
    h.run_until(30.0);
    assert!(!h.sup.sys().signals().iter().any(|s| s.signal == Signal::SIGKILL));
    assert!(!h.log.iter().any(|e| matches!(e, Event::Killed { .. })));
}

#[test]
fn killed_process_loses_its_pid() {
    let mut h = Harness::with([foo()]);
    h.start_all();
    let pid = h.pid("foo");
    // Killed from outside: the fake ends it as the kernel would.
    assert!(h.sup.sys_mut().exit(pid, Exit::Signaled(9)));
    h.tick();
    assert_ne!(h.sup.status("foo").unwrap().pid, Some(pid));
    assert_eq!(h.sup.status("foo").unwrap().last_exit, Some(Exit::Signaled(9)));
}

/// Delays after successive deaths that each come 9 s (< threshold) after
/// the start, as Twisted's procmon computes them.
fn quick_death_delays(min: f64, max: f64, deaths: usize) -> Vec<f64> {
    let mut h = Harness::with([procmon("foo", min, max, THRESHOLD)]);
    h.start_all();
    for _ in 0..deaths {
        h.advance(THRESHOLD - 1.0);
        h.tick();
        h.exit("foo", Exit::Exited(0));
        h.tick();
        let retry = h.sup.status("foo").unwrap().next_retry_at.unwrap();
        h.clock.set(retry);
        h.tick();
        assert_eq!(h.state("foo"), State::Starting);
    }
    h.delays("foo")
}

#[test]
fn delay_is_between_min_and_max() {
    // min 2, max 3: the first quick death waits 2, the next ones 3.
    assert_eq!(quick_death_delays(2.0, 3.0, 3), [2.0, 3.0, 3.0]);
}

#[test]
fn delay_doubles_on_quick_deaths() {
    assert_eq!(quick_death_delays(2.0, 10.0, 5), [2.0, 4.0, 8.0, 10.0, 10.0]);
}

#[test]
fn delay_resets_after_a_long_life() {
    let mut h = Harness::with([foo()]);
    h.start_all();
    for _ in 0..3 {
        h.advance(1.0);
        h.exit("foo", Exit::Exited(1));
        h.tick();
        let retry = h.sup.status("foo").unwrap().next_retry_at.unwrap();
        h.clock.set(retry);
        h.tick();
    }
    h.advance(THRESHOLD);
    h.tick();
    h.exit("foo", Exit::Exited(1));
    h.tick();
    h.advance(1.0);
    h.exit("foo", Exit::Exited(1));
    h.tick();
    assert_eq!(h.delays("foo"), [2.0, 4.0, 8.0, 0.0, 2.0]);
}

#[test]
fn start_service_starts_everything() {
    let mut h = Harness::with([foo()]);
    h.start_all();
    assert!(h.sup.status("foo").unwrap().pid.is_some());
}

#[test]
fn stop_service_stops_everything_without_restart() {
    let mut h = Harness::with([foo(), procmon("bar", 2.0, 10.0, THRESHOLD)]);
    h.start_all();
    h.advance(THRESHOLD);
    h.tick();
    h.advance(1.0);
    let now = h.now();
    h.sup.stop_all(now);
    // Neither process reacts to SIGTERM: both are killed at killTime.
    h.run_until(THRESHOLD + 1.0 + KILL_TIME + 1.0);
    for name in ["foo", "bar"] {
        assert_eq!(h.state(name), State::Stopped);
        assert_eq!(h.sup.status(name).unwrap().pid, None);
    }
    assert!(h.sup.is_idle());
    assert_eq!(h.sup.sys().spawns().len(), 2);
}

#[test]
fn stop_service_cancels_a_scheduled_restart() {
    let mut h = Harness::with([foo()]);
    h.start_all();
    h.advance(THRESHOLD);
    h.tick();
    h.advance(1.0);
    h.exit("foo", Exit::Exited(0));
    // Reap only: the immediate restart is scheduled but not yet run, like
    // Twisted's callLater(0) before the reactor turns.
    let now = h.now();
    h.sup.reap_processes(now);
    assert_eq!(h.state("foo"), State::Backoff);
    assert_eq!(h.sup.next_deadline(), Some(now));
    h.sup.stop_all(now);
    assert_eq!(h.state("foo"), State::Stopped);
    assert_eq!(h.sup.next_deadline(), None);
    h.run_until(60.0);
    assert_eq!(h.sup.sys().spawns().len(), 1);
}

// In Twisted the restart comes from stopProcess and waits minRestartDelay;
// our restart_process restarts at once (the host asked for it), so the
// delayed restart here comes from a crash. What is tested is the same:
// stopService cancels every scheduled restart.
#[test]
fn stop_service_cleans_up_scheduled_restarts() {
    let mut h = Harness::with([procmon("foo", 5.0, 10.0, 5.0)]);
    h.start_all();
    h.advance(1.0);
    h.exit("foo", Exit::Exited(1));
    h.tick();
    assert_eq!(h.sup.status("foo").unwrap().next_retry_at, Some(h.at(6.0)));
    h.advance(1.0);
    let now = h.now();
    h.sup.stop_all(now);
    h.advance(6.0);
    h.tick();
    assert_eq!(h.sup.status("foo").unwrap().pid, None);
    assert_eq!(h.sup.sys().spawns().len(), 1);
}
