//! One test per row of the state-machine table (DESIGN.md), plus the
//! supervisord and Erlang/OTP rows of the backoff table, the by-name API
//! in every state, and the clock rules.

mod common;

use common::{secs, Harness};
use nix::errno::Errno;
use procsup::{Backoff, Error, Event, Exit, FatalReason, ProcessSpec, RestartPolicy, Signal, State};

fn spec(name: &str) -> ProcessSpec {
    ProcessSpec::new(name, "prog").backoff(Backoff::fixed(secs(2.0))).start_grace(secs(1.0)).stop_timeout(secs(5.0))
}

/// A spec under which `into_state` can reach every state: Exited by a
/// clean exit, Fatal by an exec error.
fn any_state() -> ProcessSpec {
    spec("a").restart(RestartPolicy::OnFailure).fatal_exec_errors(true)
}

fn h1(s: ProcessSpec) -> Harness {
    Harness::with([s])
}

/// Drives `a` into `state` (no exit pending).
fn into_state(h: &mut Harness, state: State) {
    match state {
        State::Stopped => {}
        State::Starting => h.start("a"),
        State::Running => {
            h.start("a");
            h.advance(1.0);
            h.tick();
        }
        State::Backoff => {
            h.start("a");
            h.exit("a", Exit::Exited(1));
            h.tick();
        }
        State::Stopping => {
            h.start("a");
            h.stop("a");
        }
        State::Exited => {
            h.start("a");
            h.exit("a", Exit::Exited(0));
            h.tick();
        }
        State::Fatal => {
            h.sup.sys_mut().fail_next_spawn(Errno::ENOENT);
            h.start("a");
        }
        other => panic!("no recipe for {other}: a state this test does not know yet"),
    }
    assert_eq!(h.state("a"), state, "setup");
}

#[test]
fn row_start_from_stopped_exited_fatal() {
    for from in [State::Stopped, State::Exited, State::Fatal] {
        let mut h = h1(any_state());
        into_state(&mut h, from);
        h.start("a");
        let st = h.sup.status("a").unwrap();
        assert_eq!(st.state, State::Starting, "from {from}");
        assert_eq!(st.failure_streak, 0, "from {from}");
        assert!(st.pid.is_some());
    }
}

#[test]
fn row_starting_to_running_after_grace() {
    let mut h = h1(spec("a"));
    h.start("a");
    assert_eq!(h.sup.next_deadline(), Some(h.at(1.0)));
    h.advance(0.999);
    h.tick();
    assert_eq!(h.state("a"), State::Starting);
    h.advance_to(1.0);
    h.tick();
    assert_eq!(h.state("a"), State::Running);
    assert!(matches!(h.log.last(), Some(Event::Running { .. })));
}

#[test]
fn zero_grace_is_running_at_once() {
    let mut h = h1(spec("a").start_grace(secs(0.0)));
    h.start("a");
    assert_eq!(h.state("a"), State::Running);
    assert_eq!(h.kinds(), ["spawned", "running"]);
}

#[test]
fn row_exit_with_restart_goes_to_backoff() {
    for from in [State::Starting, State::Running] {
        let mut h = h1(spec("a"));
        into_state(&mut h, from);
        h.advance(0.5);
        h.exit("a", Exit::Exited(3));
        h.tick();
        let st = h.sup.status("a").unwrap();
        assert_eq!(st.state, State::Backoff, "from {from}");
        assert_eq!(st.next_retry_at, Some(h.now() + secs(2.0)), "from {from}");
        assert_eq!(st.pid, None);
    }
}

#[test]
fn row_exit_without_restart_goes_to_exited() {
    let cases = [
        (RestartPolicy::Never, Exit::Exited(1), State::Exited),
        (RestartPolicy::Never, Exit::Signaled(9), State::Exited),
        (RestartPolicy::OnFailure, Exit::Exited(0), State::Exited),
        (RestartPolicy::OnFailure, Exit::Exited(1), State::Backoff),
        (RestartPolicy::OnFailure, Exit::Signaled(15), State::Backoff),
        (RestartPolicy::Always, Exit::Exited(0), State::Backoff),
    ];
    for (policy, exit, expected) in cases {
        let mut h = h1(spec("a").restart(policy));
        h.start("a");
        h.exit("a", exit);
        h.tick();
        assert_eq!(h.state("a"), expected, "{policy:?} {exit:?}");
    }
}

#[test]
fn success_codes_are_configurable() {
    let mut h = h1(spec("a").restart(RestartPolicy::OnFailure).success_codes([0, 3]));
    h.start("a");
    h.exit("a", Exit::Exited(3));
    h.tick();
    assert_eq!(h.state("a"), State::Exited);
}

#[test]
fn row_exit_at_give_up_limit_goes_fatal() {
    let mut h = h1(spec("a").give_up_after(3));
    h.start("a");
    for n in 1..=3u32 {
        h.exit("a", Exit::Exited(1));
        h.tick();
        let st = h.sup.status("a").unwrap();
        if n < 3 {
            assert_eq!(st.state, State::Backoff);
            assert_eq!(st.give_up_remaining, Some(3 - n));
            h.run_until(h.secs_of(st.next_retry_at.unwrap()));
        } else {
            assert_eq!(st.state, State::Fatal);
            assert_eq!(st.give_up_remaining, Some(0));
        }
    }
    assert_eq!(h.sup.next_deadline(), None);
}

#[test]
fn row_backoff_retry_restarts() {
    let mut h = h1(spec("a"));
    into_state(&mut h, State::Backoff);
    h.advance(2.0);
    h.tick();
    let st = h.sup.status("a").unwrap();
    assert_eq!((st.state, st.restart_count), (State::Starting, 1));
    assert_eq!(h.sup.sys().spawns().len(), 2);
}

#[test]
fn row_backoff_stop_cancels_retry() {
    let mut h = h1(spec("a"));
    into_state(&mut h, State::Backoff);
    h.stop("a");
    assert_eq!(h.state("a"), State::Stopped);
    assert_eq!(h.sup.next_deadline(), None);
    h.run_until(100.0);
    assert_eq!(h.sup.sys().spawns().len(), 1);
}

#[test]
fn row_stop_sends_signal_and_sets_kill_deadline() {
    for from in [State::Starting, State::Running] {
        let mut h = h1(spec("a").stop_signal(Signal::SIGINT));
        into_state(&mut h, from);
        let pid = h.pid("a");
        h.stop("a");
        assert_eq!(h.state("a"), State::Stopping, "from {from}");
        assert_eq!(h.sup.sys().signals_to(pid), [Signal::SIGINT]);
        assert_eq!(h.sup.next_deadline(), Some(h.now() + secs(5.0)));
        assert!(h.sup.sys().signals()[0].group, "own process group by default");
    }
}

#[test]
fn row_stopping_past_deadline_kills_the_group() {
    let mut h = h1(spec("a"));
    into_state(&mut h, State::Running);
    let pid = h.pid("a");
    h.stop("a");
    h.advance(4.999);
    h.tick();
    assert_eq!(h.sup.sys().signals_to(pid), [Signal::SIGTERM]);
    h.advance_to(6.0); // stop at 1 s + 5 s
    h.tick();
    assert_eq!(h.sup.sys().signals_to(pid), [Signal::SIGTERM, Signal::SIGKILL]);
    assert!(h.sup.sys().signals()[1].group);
    assert!(matches!(h.log.last(), Some(Event::Killed { .. })));
    h.tick();
    let st = h.sup.status("a").unwrap();
    assert_eq!((st.state, st.last_exit), (State::Stopped, Some(Exit::Signaled(9))));
}

#[test]
fn row_stopping_exit_is_stopped_and_never_restarts() {
    let mut h = h1(spec("a"));
    into_state(&mut h, State::Stopping);
    h.exit("a", Exit::Exited(1));
    h.tick();
    assert_eq!(h.state("a"), State::Stopped);
    h.run_until(100.0);
    assert_eq!(h.sup.sys().spawns().len(), 1);
}

#[test]
fn row_spawn_failure_is_an_exit_that_never_ran() {
    let mut h = h1(spec("a").give_up_after(2));
    h.sup.sys_mut().fail_next_spawn(Errno::EAGAIN);
    h.sup.sys_mut().fail_next_spawn(Errno::EAGAIN);
    h.start("a");
    let st = h.sup.status("a").unwrap();
    assert_eq!((st.state, st.last_spawn_error, st.failure_streak), (State::Backoff, Some(Errno::EAGAIN), 1));
    assert!(matches!(&h.log[0], Event::SpawnFailed { errno: Errno::EAGAIN, .. }));
    h.run_until(2.0);
    assert_eq!(h.state("a"), State::Fatal);
    assert!(matches!(h.log.last(), Some(Event::Fatal { reason: FatalReason::GaveUp { failures: 2 }, .. })));
}

#[test]
fn spawn_process_failure_is_also_returned() {
    let mut h = h1(spec("a"));
    h.sup.sys_mut().fail_next_spawn(Errno::ENOMEM);
    let now = h.now();
    let err = h.sup.spawn_process("a", now).unwrap_err();
    assert!(matches!(err, Error::Spawn { ref source, .. } if source.raw_os_error() == Some(Errno::ENOMEM as i32)));
    assert_eq!(h.state("a"), State::Backoff);
}

#[test]
fn exec_errors_can_be_fatal_at_once() {
    let mut h = h1(spec("a").fatal_exec_errors(true));
    h.sup.sys_mut().fail_next_spawn(Errno::ENOENT);
    h.start("a");
    assert_eq!(h.state("a"), State::Fatal);
    // EAGAIN is not an exec error: it is retried.
    let mut h = h1(spec("a").fatal_exec_errors(true));
    h.sup.sys_mut().fail_next_spawn(Errno::EAGAIN);
    h.start("a");
    assert_eq!(h.state("a"), State::Backoff);
}

#[test]
fn spawn_failure_with_never_policy_is_fatal() {
    let mut h = h1(spec("a").restart(RestartPolicy::Never));
    h.sup.sys_mut().fail_next_spawn(Errno::EAGAIN);
    h.start("a");
    assert_eq!(h.state("a"), State::Fatal);
}

/// supervisord: startsecs=1, startretries=3; BACKOFF waits 1, 2, 3 s; the
/// fourth failed start is FATAL; a RUNNING process restarts at once and its
/// backoff starts over.
#[test]
fn supervisord_semantics() {
    let sd = ProcessSpec::new("a", "prog")
        .start_grace(secs(1.0))
        .backoff(Backoff::linear(secs(1.0)).immediate_after_running(true))
        .give_up_after(3 + 1);
    let mut h = h1(sd);
    h.start("a");
    // Runs for 5 s, then dies: restarted at once.
    h.advance(5.0);
    h.tick();
    h.exit("a", Exit::Exited(1));
    h.tick();
    assert_eq!(h.state("a"), State::Starting);
    // Now every start fails within startsecs.
    for _ in 0..4 {
        h.advance(0.5);
        h.exit("a", Exit::Exited(1));
        h.tick();
        if let Some(t) = h.sup.status("a").unwrap().next_retry_at {
            h.clock.set(t);
            h.tick();
        }
    }
    assert_eq!(h.delays("a"), [0.0, 1.0, 2.0, 3.0]);
    assert_eq!(h.state("a"), State::Fatal);
}

/// Erlang/OTP: more than `max_restarts` restarts within `period` gives up;
/// restarts spread wider than the window go on forever.
#[test]
fn otp_intensity_window() {
    let otp = || ProcessSpec::new("a", "prog").backoff(Backoff::none()).max_restarts_within(3, secs(5.0));
    let mut h = h1(otp());
    h.start("a");
    for _ in 0..3 {
        h.advance(1.0);
        h.exit("a", Exit::Exited(1));
        h.tick();
        assert_eq!(h.state("a"), State::Starting);
    }
    h.advance(1.0);
    h.exit("a", Exit::Exited(1));
    h.tick();
    assert_eq!(h.state("a"), State::Fatal);
    assert!(matches!(
        h.log.last(),
        Some(Event::Fatal { reason: FatalReason::TooManyRestarts { max_restarts: 3, .. }, .. })
    ));

    let mut h = h1(otp());
    h.start("a");
    for _ in 0..20 {
        h.advance(2.0);
        h.exit("a", Exit::Exited(1));
        h.tick();
        assert_eq!(h.state("a"), State::Starting);
    }
}

#[test]
fn gunicorn_fixed_delay_after_every_exit() {
    let mut h = h1(ProcessSpec::new("a", "p").backoff(Backoff::fixed(secs(5.0))));
    h.start("a");
    for lifetime in [0.5, 100.0, 0.1] {
        h.advance(lifetime);
        h.tick();
        h.exit("a", Exit::Exited(1));
        h.tick();
        let t = h.sup.status("a").unwrap().next_retry_at.unwrap();
        h.clock.set(t);
        h.tick();
    }
    assert_eq!(h.delays("a"), [5.0, 5.0, 5.0]);
}

#[test]
fn restart_process_in_every_state() {
    for from in
        [State::Stopped, State::Starting, State::Running, State::Backoff, State::Stopping, State::Exited, State::Fatal]
    {
        let mut h = h1(any_state());
        into_state(&mut h, from);
        let now = h.now();
        h.sup.restart_process("a", now).unwrap();
        if h.state("a") == State::Stopping {
            h.exit("a", Exit::Signaled(15));
            h.tick();
        }
        assert_eq!(h.state("a"), State::Starting, "from {from}");
        let st = h.sup.status("a").unwrap();
        assert!(!st.manual_stop, "from {from}");
    }
}

#[test]
fn start_while_stopping_starts_after_the_exit() {
    let mut h = h1(spec("a"));
    into_state(&mut h, State::Stopping);
    h.start("a");
    assert_eq!(h.state("a"), State::Stopping);
    h.exit("a", Exit::Signaled(15));
    h.tick();
    assert_eq!(h.state("a"), State::Starting);
}

#[test]
fn start_while_stopping_counts_like_a_start_from_stopped() {
    // Issue 11.9: a start that waits for the exit is a start, not a
    // restart: no restart counted, a fresh failure streak.
    let mut h = h1(spec("a"));
    h.start("a");
    h.exit("a", Exit::Exited(1)); // a failed start: streak 1
    h.tick();
    h.run_until(2.0); // the retry: restart 1, Starting
    let before = h.sup.status("a").unwrap();
    assert_eq!((before.restart_count, before.failure_streak), (1, 1));
    h.stop("a");
    h.start("a");
    h.exit("a", Exit::Signaled(15));
    h.tick();
    let st = h.sup.status("a").unwrap();
    assert_eq!(st.state, State::Starting);
    assert_eq!(st.restart_count, 1, "a start is not a restart");
    assert_eq!(st.failure_streak, 0, "a start begins a fresh streak");
    assert!(matches!(h.log.last(), Some(Event::Spawned { restart_count: 1, .. })), "{:?}", h.log.last());
}

#[test]
fn a_pending_removal_wins_over_every_later_call() {
    // Issue 11.4: each of these, between `remove_process` and the exit,
    // used to overwrite the removal: no `Removed`, the name taken forever.
    type Call = fn(&mut Harness);
    let calls: [(&str, Call); 5] = [
        ("stop_process", |h| h.stop("a")),
        ("stop_all", |h| {
            let now = h.now();
            h.sup.stop_all(now)
        }),
        ("shutdown", |h| {
            let now = h.now();
            h.sup.shutdown(now)
        }),
        ("start_process", |h| {
            let now = h.now();
            assert!(matches!(h.sup.start_process("a", now), Err(Error::Removing(n)) if n == "a"));
        }),
        ("restart_process", |h| {
            let now = h.now();
            assert!(matches!(h.sup.restart_process("a", now), Err(Error::Removing(_))));
            assert!(matches!(h.sup.spawn_process("a", now), Err(Error::Removing(_))));
        }),
    ];
    for (what, call) in calls {
        let mut h = h1(spec("a"));
        into_state(&mut h, State::Running);
        let now = h.now();
        h.sup.remove_process("a", now).unwrap();
        call(&mut h);
        h.advance(0.5);
        h.exit("a", Exit::Signaled(15));
        h.tick();
        assert!(h.sup.status("a").is_err(), "after {what}: still there as {:?}", h.sup.status("a"));
        assert_eq!(h.log.iter().filter(|e| matches!(e, Event::Removed { .. })).count(), 1, "after {what}");
        assert_eq!(h.sup.sys().spawns().len(), 1, "after {what}: nothing started again");
        assert!(h.sup.is_idle(), "after {what}");
        if what != "shutdown" {
            h.sup.add_process(spec("a")).expect("the name is free again");
        }
    }
}

#[test]
fn stop_and_start_in_every_state_never_fail() {
    for from in
        [State::Stopped, State::Starting, State::Running, State::Backoff, State::Stopping, State::Exited, State::Fatal]
    {
        let mut h = h1(any_state());
        into_state(&mut h, from);
        let now = h.now();
        h.sup.stop_process("a", now).unwrap();
        h.sup.stop_process("a", now).unwrap();
        assert!(matches!(h.state("a"), State::Stopping | State::Stopped | State::Exited | State::Fatal), "from {from}");
        h.sup.start_process("a", now).unwrap();
    }
}

#[test]
fn shutdown_stops_in_reverse_start_order_and_refuses_new_work() {
    let mut h = Harness::with([spec("a"), spec("b"), spec("c")]);
    h.start_all();
    h.advance(1.0);
    h.start("b"); // already running: no-op, order stays a, b, c
    let now = h.now();
    h.sup.shutdown(now);
    h.drain();
    let order: Vec<&str> = h.log.iter().filter(|e| e.kind() == "stopping").map(Event::name).collect();
    assert_eq!(order, ["c", "b", "a"]);
    assert!(matches!(h.sup.start_process("a", now), Err(Error::ShuttingDown)));
    assert!(matches!(h.sup.add_process(spec("d")), Err(Error::ShuttingDown)));
    assert!(!h.sup.is_idle());
    h.run_until(10.0);
    assert!(h.sup.is_idle());
    assert_eq!(h.sup.sys().spawns().len(), 3);
}

#[test]
fn unknown_names_are_errors_everywhere() {
    let mut h = Harness::new();
    let now = h.now();
    assert!(matches!(h.sup.status("x"), Err(Error::UnknownProcess(_))));
    assert!(matches!(h.sup.spawn_process("x", now), Err(Error::UnknownProcess(_))));
    assert!(matches!(h.sup.handle_exit("x", now), Err(Error::UnknownProcess(_))));
    assert!(matches!(h.sup.restart_process("x", now), Err(Error::UnknownProcess(_))));
    assert!(matches!(h.sup.spec("x"), Err(Error::UnknownProcess(_))));
}

#[test]
fn time_going_backwards_is_no_time_passing() {
    let mut h = h1(spec("a"));
    h.advance(100.0);
    h.start("a");
    h.exit("a", Exit::Exited(1));
    // The host passes an instant from before the start.
    let early = h.at(0.0);
    h.sup.tick(early);
    h.drain();
    let st = h.sup.status("a").unwrap();
    assert_eq!(st.next_retry_at, Some(h.at(102.0)), "measured from the latest now seen");
    h.sup.tick(h.at(50.0));
    assert_eq!(h.state("a"), State::Backoff);
}

#[test]
fn next_deadline_is_the_earliest_of_all() {
    let mut h = Harness::with([spec("a"), spec("b").start_grace(secs(10.0)), spec("c")]);
    assert_eq!(h.sup.next_deadline(), None);
    h.start_all();
    assert_eq!(h.sup.next_deadline(), Some(h.at(1.0)));
    h.advance(1.0);
    h.tick(); // a and c promoted; b waits to 10
    assert_eq!(h.sup.next_deadline(), Some(h.at(10.0)));
    h.stop("a"); // kill deadline at 6
    assert_eq!(h.sup.next_deadline(), Some(h.at(6.0)));
}

#[test]
fn the_events_of_a_crash_loop_tell_the_story() {
    let mut h = h1(spec("a").give_up_after(2));
    h.start("a");
    h.exit("a", Exit::Exited(1));
    h.tick();
    h.run_until(2.0);
    h.exit("a", Exit::Signaled(9));
    h.tick();
    assert_eq!(h.kinds(), ["spawned", "exited", "backoff", "spawned", "exited", "fatal"]);
    let lines: Vec<String> = h.log.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines[0], "event=spawned name=a pid=1000 restarts=0");
    assert!(lines[1].starts_with("event=exited name=a pid=1000 code=1 "), "{}", lines[1]);
    assert_eq!(lines[2], "event=backoff name=a delay_ms=2000 failures=1");
    assert!(lines[4].starts_with("event=exited name=a pid=1001 signal=9 "), "{}", lines[4]);
    assert_eq!(lines[5], "event=fatal name=a reason=gave_up failures=2");
}
