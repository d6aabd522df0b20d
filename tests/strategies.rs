//! OTP restart strategies and intensity (issue 15) on FakeSys and a
//! virtual clock, at exact instants.

mod common;

use std::time::Duration;

use common::{secs, Harness};
use procsup::{Backoff, Event, Exit, FatalReason, ProcessSpec, RestartPolicy, State, Strategy};

/// A 1 s backoff: a group restart waits for it after the crash.
fn p(name: &str) -> ProcessSpec {
    ProcessSpec::new(name, name).start_grace(secs(1.0)).stop_timeout(secs(5.0)).backoff(Backoff::fixed(secs(1.0)))
}

/// `(kind, name)` of the stop and spawn events, in order.
fn stops_and_spawns(h: &Harness) -> Vec<(&'static str, String)> {
    h.log
        .iter()
        .filter(|e| matches!(e, Event::Stopping { .. } | Event::Spawned { .. }))
        .map(|e| (e.kind(), e.name().to_owned()))
        .collect()
}

fn three(strategy: Strategy) -> Harness {
    let mut h = Harness::with([p("a"), p("b"), p("c")]);
    h.sup.set_strategy(strategy);
    h.start_all();
    h.run_until(2.0);
    assert!(["a", "b", "c"].iter().all(|n| h.state(n) == State::Running));
    h.log.clear();
    h
}

#[test]
fn one_for_all_stops_in_reverse_order_then_starts_in_order() {
    let mut h = three(Strategy::OneForAll);
    h.exit("b", Exit::Signaled(9));
    h.tick();
    // b is held; c (started last) is stopped first; a waits its turn.
    assert_eq!(h.state("b"), State::Waiting);
    assert_eq!(h.state("c"), State::Stopping);
    assert_eq!(h.state("a"), State::Running);
    // c ignores SIGTERM: killed at its stop timeout (2 + 5), then a.
    assert_eq!(h.sup.next_deadline(), Some(h.at(7.0)));
    h.run_until(6.999);
    assert_eq!(h.state("a"), State::Running);
    h.run_until(7.0);
    h.tick();
    assert_eq!(h.state("c"), State::Waiting);
    assert_eq!(h.state("a"), State::Stopping);
    h.advance_to(8.0);
    h.exit("a", Exit::Signaled(15));
    h.tick();
    // All gone: a, b, c spawn again at 8.0, in start order.
    assert_eq!(
        stops_and_spawns(&h),
        [
            ("stopping", "c".to_owned()),
            ("stopping", "a".to_owned()),
            ("spawned", "a".to_owned()),
            ("spawned", "b".to_owned()),
            ("spawned", "c".to_owned()),
        ]
    );
    assert!(["a", "b", "c"].iter().all(|n| h.state(n) == State::Starting && h.started_at(n) == 8.0));
    assert!(["a", "b", "c"].iter().all(|n| h.sup.status(n).unwrap().restart_count == 1));
}

#[test]
fn rest_for_one_restarts_the_dead_and_those_started_after_it() {
    let mut h = three(Strategy::RestForOne);
    h.exit("b", Exit::Exited(1));
    h.tick();
    assert_eq!(h.state("a"), State::Running, "started before b: untouched");
    assert_eq!(h.state("c"), State::Stopping);
    h.advance_to(3.0);
    h.exit("c", Exit::Signaled(15));
    h.tick();
    assert_eq!(
        stops_and_spawns(&h),
        [("stopping", "c".to_owned()), ("spawned", "b".to_owned()), ("spawned", "c".to_owned())]
    );
    assert_eq!((h.started_at("b"), h.started_at("c")), (3.0, 3.0));
    assert_eq!(h.sup.status("a").unwrap().restart_count, 0);
}

#[test]
fn rest_for_one_of_the_last_is_one_for_one_after_its_backoff() {
    let mut h = three(Strategy::RestForOne);
    h.exit("c", Exit::Exited(1));
    h.tick();
    assert!(stops_and_spawns(&h).is_empty());
    assert_eq!(h.state("c"), State::Waiting);
    let backoff = h.log.iter().find_map(|e| match e {
        Event::Backoff { name, delay, retry_at, .. } if &**name == "c" => Some((*delay, *retry_at)),
        _ => None,
    });
    assert_eq!(backoff, Some((secs(1.0), h.at(3.0))), "the group restart's backoff is announced");
    assert_eq!(h.sup.next_deadline(), Some(h.at(3.0)));
    h.run_until(3.0);
    assert_eq!(stops_and_spawns(&h), [("spawned", "c".to_owned())]);
    assert_eq!(h.started_at("c"), 3.0);
}

#[test]
fn a_group_restart_waits_for_the_backoff_when_the_stops_are_quicker() {
    let mut h = three(Strategy::OneForAll);
    h.exit("a", Exit::Exited(1));
    h.tick();
    h.exit("c", Exit::Signaled(15));
    h.tick();
    h.advance_to(2.5);
    h.exit("b", Exit::Signaled(15));
    h.tick();
    assert!(["a", "b", "c"].iter().all(|n| h.state(n) == State::Waiting));
    assert_eq!(h.sup.next_deadline(), Some(h.at(3.0)), "crash at 2 + 1 s backoff");
    h.run_until(3.0);
    assert!(["a", "b", "c"].iter().all(|n| h.state(n) == State::Starting && h.started_at(n) == 3.0));
}

#[test]
fn one_for_all_is_bounded_by_otp_default_intensity() {
    // A program that crashes at once, no intensity set, no backoff: OTP's
    // default (1 restart within 5 s) makes the group give up.
    let crasher = p("crasher").backoff(Backoff::none());
    let mut h = Harness::with([p("web"), crasher]);
    h.sup.set_strategy(Strategy::OneForAll);
    assert_eq!(h.sup.intensity(), Some(procsup::OTP_DEFAULT_INTENSITY));
    h.start_all();
    let mut steps = 0;
    while h.state("crasher") != State::Fatal {
        steps += 1;
        assert!(steps < 20, "still restarting: {:?}", h.kinds());
        if h.state("crasher") == State::Starting {
            h.advance(0.1);
            h.exit("crasher", Exit::Exited(1));
        }
        if h.state("web") == State::Stopping {
            h.exit("web", Exit::Signaled(15));
        }
        h.tick();
    }
    let spawns = h.log.iter().filter(|e| matches!(e, Event::Spawned { name, .. } if &**name == "crasher")).count();
    assert_eq!(spawns, 2, "the first start and one restart");
    assert_eq!(h.state("web"), State::Fatal);
    let reason = FatalReason::GroupIntensity { max_restarts: 1, period: secs(5.0) };
    assert!(h
        .log
        .iter()
        .any(|e| matches!(e, Event::Fatal { name, reason: r } if &**name == "crasher" && *r == reason)));
    assert_eq!(h.sup.next_deadline(), None);
}

#[test]
fn under_one_for_all_the_crasher_keeps_its_give_up_and_backoff() {
    // A lifted intensity: the crasher's own give_up_after bounds it. It
    // exits before its start grace each time: failed starts, the delay
    // doubles (0.5, 1, 2), and the fourth makes it Fatal alone.
    let crasher = p("crasher").backoff(Backoff::exponential(secs(0.5)).jitter(0.0)).give_up_after(4);
    let mut h = Harness::with([p("web"), crasher]);
    h.sup.set_strategy(Strategy::OneForAll);
    h.sup.set_intensity(u32::MAX, secs(0.0));
    h.start_all();
    let mut restarts = Vec::new();
    for _ in 0..4 {
        assert_eq!(h.state("crasher"), State::Starting);
        h.advance(0.25);
        h.exit("crasher", Exit::Exited(1));
        h.tick();
        if h.state("crasher") == State::Fatal {
            break;
        }
        h.exit("web", Exit::Signaled(15));
        h.tick();
        let at = h.sup.next_deadline().expect("the group's backoff");
        restarts.push(h.secs_of(at) - h.secs_of(h.now()));
        let t = h.secs_of(at);
        h.run_until(t);
    }
    assert_eq!(restarts.len(), 3);
    for (got, want) in restarts.iter().zip([0.5, 1.0, 2.0]) {
        assert!((got - want).abs() < 1e-6, "{restarts:?}");
    }
    assert_eq!(h.state("crasher"), State::Fatal);
    assert!(matches!(h.log.last(), Some(Event::Fatal { reason: FatalReason::GaveUp { failures: 4 }, .. })));
    assert_eq!(h.state("web"), State::Starting, "a process that gives up restarts no group");
    assert_eq!(h.sup.status("web").unwrap().restart_count, 3);
}

#[test]
fn a_temporary_process_triggers_no_group_restart() {
    let mut h = Harness::with([p("a"), p("b").restart(RestartPolicy::Never), p("c")]);
    h.sup.set_strategy(Strategy::OneForAll);
    h.start_all();
    h.run_until(2.0);
    h.exit("b", Exit::Exited(1));
    h.tick();
    assert_eq!(h.state("b"), State::Exited);
    assert_eq!((h.state("a"), h.state("c")), (State::Running, State::Running));
}

#[test]
fn reaching_the_group_intensity_makes_every_process_fatal() {
    let mut h = Harness::with([p("a"), p("b")]);
    h.sup.set_strategy(Strategy::OneForAll);
    h.sup.set_intensity(2, Duration::from_secs(10));
    h.start_all();
    for t in [2.0, 4.0] {
        h.run_until(t);
        h.exit("a", Exit::Signaled(9));
        h.tick();
        assert_eq!(h.state("b"), State::Stopping);
        h.exit("b", Exit::Signaled(15));
        h.tick();
        assert_eq!(h.state("a"), State::Waiting, "its backoff");
        h.run_until(t + 1.0);
        assert_eq!(h.state("a"), State::Starting);
    }
    // The third restart within 10 s (at 2, 4, 6): the group gives up.
    h.run_until(6.0);
    h.exit("a", Exit::Signaled(9));
    h.tick();
    assert_eq!(h.state("b"), State::Stopping, "the rest stops first");
    assert_eq!(h.state("a"), State::Waiting);
    h.exit("b", Exit::Signaled(15));
    h.tick();
    assert_eq!((h.state("a"), h.state("b")), (State::Fatal, State::Fatal));
    let reason = FatalReason::GroupIntensity { max_restarts: 2, period: Duration::from_secs(10) };
    let fatal: Vec<_> = h
        .log
        .iter()
        .filter_map(|e| match e {
            Event::Fatal { name, reason } => Some((name.to_string(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(fatal, [("a".to_owned(), reason.clone()), ("b".to_owned(), reason)]);
    assert_eq!(h.sup.next_deadline(), None);
}

#[test]
fn intensity_window_slides() {
    // one_for_one: 2 restarts within 10 s allowed; at 2, 8 and 13 s the
    // window never holds more than 2.
    let mut h = Harness::with([p("a").backoff(procsup::Backoff::fixed(Duration::ZERO))]);
    h.sup.set_intensity(2, Duration::from_secs(10));
    h.start_all();
    for t in [2.0, 8.0, 13.0] {
        h.run_until(t);
        h.exit("a", Exit::Signaled(9));
        h.tick();
        h.tick();
        assert_eq!(h.state("a"), State::Starting, "at {t}");
    }
    h.run_until(14.0);
    h.exit("a", Exit::Signaled(9));
    h.tick();
    assert_eq!(h.state("a"), State::Fatal, "8, 13, 14 within 10 s");
}

#[test]
fn stop_all_during_a_group_restart_starts_nothing_again() {
    let mut h = three(Strategy::OneForAll);
    h.exit("b", Exit::Signaled(9));
    h.tick();
    assert_eq!(h.state("c"), State::Stopping);
    let now = h.now();
    h.sup.stop_all(now);
    h.exit("c", Exit::Signaled(15));
    h.tick();
    h.exit("a", Exit::Signaled(15));
    h.run_until(20.0);
    assert!(["a", "b", "c"].iter().all(|n| h.state(n) == State::Stopped), "{:?}", h.kinds());
    assert!(!stops_and_spawns(&h).iter().any(|(k, _)| *k == "spawned"));
    assert_eq!(h.sup.next_deadline(), None);
}

#[test]
fn a_nested_group_gives_up_alone_and_counts_once_in_the_parent() {
    // web: 3 instances, at most 2 restarts within 10 s. The supervisor:
    // at most 1 restart within 60 s. Instance restarts count in web's
    // window only; web giving up is the parent's one restart.
    let web = p("web").instances(3).backoff(procsup::Backoff::none()).group_intensity(2, Duration::from_secs(10));
    let mut h = Harness::with([p("db"), web]);
    h.sup.set_intensity(1, Duration::from_secs(60));
    h.start_all();
    h.run_until(2.0);
    for (t, inst) in [(3.0, "web:0"), (4.0, "web:1")] {
        h.run_until(t);
        h.exit(inst, Exit::Signaled(9));
        h.tick();
        assert_eq!(h.state(inst), State::Starting, "{inst} restarted at {t}");
    }
    h.run_until(5.0);
    h.exit("web:2", Exit::Signaled(9));
    h.tick();
    let reason = FatalReason::GroupIntensity { max_restarts: 2, period: Duration::from_secs(10) };
    assert_eq!(h.state("web:2"), State::Fatal);
    assert_eq!((h.state("web:0"), h.state("web:1")), (State::Stopping, State::Stopping));
    assert_eq!(h.state("db"), State::Running, "one failure of the parent, within its intensity");
    h.exit("web:0", Exit::Signaled(15));
    h.exit("web:1", Exit::Signaled(15));
    h.tick();
    for inst in ["web:0", "web:1", "web:2"] {
        assert_eq!(h.state(inst), State::Fatal);
        assert!(h.log.iter().any(|e| matches!(e, Event::Fatal { name, reason: r } if &**name == inst && *r == reason)));
    }
    assert_eq!(h.state("db"), State::Running);
    // The parent's window now holds web's failure: db's first crash is
    // one too many.
    h.run_until(6.0);
    h.exit("db", Exit::Signaled(9));
    h.tick();
    assert_eq!(h.state("db"), State::Fatal);
    assert!(matches!(
        h.log.last(),
        Some(Event::Fatal { reason: FatalReason::GroupIntensity { max_restarts: 1, .. }, .. })
    ));
}

#[test]
fn group_intensity_needs_instances() {
    let mut h = Harness::new();
    let err = h.sup.add_process(p("solo").group_intensity(1, Duration::from_secs(1))).unwrap_err();
    assert!(matches!(err, procsup::Error::InvalidSpec { .. }), "{err}");
}

#[test]
fn one_for_all_leaves_what_the_host_stopped_stopped() {
    let mut h = three(Strategy::OneForAll);
    h.stop("a");
    h.exit("a", Exit::Signaled(15));
    h.tick();
    assert_eq!(h.state("a"), State::Stopped);
    h.exit("c", Exit::Signaled(9));
    h.tick();
    assert_eq!(h.state("b"), State::Stopping);
    h.exit("b", Exit::Signaled(15));
    h.run_until(3.0);
    assert_eq!((h.state("b"), h.state("c")), (State::Starting, State::Starting));
    assert_eq!(h.state("a"), State::Stopped, "not started by the group");
}
