//! Restart on memory growth (`restart_above_memory`) on FakeSys: the OS
//! layer's report starts a graceful restart whose stop says why; a pool's
//! instance is replaced new-before-old; a child that cannot even start
//! below its threshold backs off instead of restarting in a tight loop.
//! pm2's `max_memory_restart` is the reference (it polls every 30 s and
//! restarts at once); the report here comes from the kernel.

mod common;

use common::{secs, Harness};
use procsup::testing::{FakeSys, VirtualClock};
use procsup::{
    Backoff, Condition, Containment, Error, Event, Exit, Pid, ProcessSpec, Readiness, RestartPolicy, Signal, State,
    StopReason, Strategy, Supervisor,
};

const MIB: u64 = 1 << 20;

fn cgroup_harness(specs: impl IntoIterator<Item = ProcessSpec>) -> Harness {
    let mut sys = FakeSys::new();
    sys.set_containment(Containment::Cgroup);
    let mut h = Harness { sup: Supervisor::with_sys(sys), clock: VirtualClock::new(), log: Vec::new() };
    for s in specs {
        h.sup.add_process(s).expect("valid spec");
    }
    h
}

fn grower() -> ProcessSpec {
    limited("app")
}

fn limited(name: &str) -> ProcessSpec {
    ProcessSpec::new(name, "server")
        .restart_above_memory(64 * MIB)
        .memory_max(128 * MIB)
        .start_grace(secs(1.0))
        .stop_timeout(secs(5.0))
        .backoff(Backoff::fixed(secs(0.5)).immediate_after_running(true))
}

/// Starts everything and lets it run: `Running` (a 1 s grace) for a
/// second, a started run.
fn settle(h: &mut Harness) {
    h.start_all();
    h.advance(1.0);
    h.tick();
    h.advance(1.0);
}

/// A pool of `n` settled instances whose first two go above their
/// threshold at once: web:0 is replaced first, web:1 waits its turn.
fn two_over(n: u32) -> (Harness, Pid, Pid) {
    let mut h = cgroup_harness([limited("web").instances(n)]);
    settle(&mut h);
    let (a, b) = (h.pid("web:0"), h.pid("web:1"));
    assert!(h.sup.sys_mut().exceed_memory(a, 70 * MIB));
    assert!(h.sup.sys_mut().exceed_memory(b, 70 * MIB));
    h.tick();
    assert!(h.sup.status("web:1").unwrap().replacement_pid.is_none());
    (h, a, b)
}

/// The reasons of the `Stopping` and `Retiring` events, in order.
fn stop_reasons(h: &Harness) -> Vec<(&'static str, Pid, StopReason)> {
    h.log
        .iter()
        .filter_map(|e| match e {
            Event::Stopping { pid, reason, .. } => Some(("stopping", *pid, *reason)),
            Event::Retiring { pid, reason, .. } => Some(("retiring", *pid, *reason)),
            _ => None,
        })
        .collect()
}

fn exceeded(h: &Harness) -> Vec<(Pid, Option<u64>, u64)> {
    h.log
        .iter()
        .filter_map(|e| match e {
            Event::MemoryExceeded { pid, current, threshold, .. } => Some((*pid, *current, *threshold)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_running_child_above_its_threshold_is_stopped_gracefully_and_restarted() {
    let mut h = cgroup_harness([grower()]);
    settle(&mut h);
    assert_eq!(h.state("app"), State::Running);
    let old = h.pid("app");
    assert!(h.sup.sys_mut().exceed_memory(old, 70 * MIB));
    h.tick();
    assert_eq!(exceeded(&h), [(old, Some(70 * MIB), 64 * MIB)]);
    assert_eq!(h.sup.usage("app").unwrap().and_then(|u| u.memory_current), Some(70 * MIB));
    assert_eq!(stop_reasons(&h), [("stopping", old, StopReason::Memory)]);
    assert_eq!(h.sup.sys().signals_to(old), [Signal::SIGTERM], "graceful: the stop signal, no SIGKILL yet");
    assert_eq!(h.state("app"), State::Stopping);
    let line = h.log.iter().find(|e| matches!(e, Event::Stopping { .. })).unwrap().to_string();
    assert!(line.ends_with(" signal=SIGTERM reason=memory"), "{line}");
    let line = h.log.iter().find(|e| matches!(e, Event::MemoryExceeded { .. })).unwrap().to_string();
    assert_eq!(line, format!("event=memory_exceeded name=app pid={old} memory={} threshold={}", 70 * MIB, 64 * MIB));
    // It exits 0 on SIGTERM, yet its policy restarts it: a memory restart is
    // no success. After Running the streak starts over, and with
    // `immediate_after_running` the successor comes at once.
    assert!(h.sup.sys_mut().exit(old, Exit::Exited(0)));
    h.tick();
    let st = h.sup.status("app").unwrap();
    assert_eq!((st.state, st.failure_streak, st.restart_count), (State::Starting, 0, 1));
    assert_ne!(st.pid, Some(old));
}

#[test]
fn the_successor_follows_the_restart_policy() {
    // Never: stopped for memory, it stays down.
    let mut h = cgroup_harness([grower().restart(RestartPolicy::Never)]);
    settle(&mut h);
    let pid = h.pid("app");
    assert!(h.sup.sys_mut().exceed_memory(pid, 65 * MIB));
    h.tick();
    assert!(h.sup.sys_mut().exit(pid, Exit::Signaled(15)));
    h.tick();
    assert_eq!(h.state("app"), State::Exited);
    // On failure: the memory stop counts as one even for an exit 0.
    let mut h = cgroup_harness([grower().restart(RestartPolicy::OnFailure).backoff(Backoff::fixed(secs(0.5)))]);
    settle(&mut h);
    let pid = h.pid("app");
    assert!(h.sup.sys_mut().exceed_memory(pid, 65 * MIB));
    h.tick();
    assert!(h.sup.sys_mut().exit(pid, Exit::Exited(0)));
    h.tick();
    let st = h.sup.status("app").unwrap();
    assert_eq!((st.state, st.failure_streak), (State::Backoff, 0), "after Running the streak starts over");
    assert_eq!(st.next_retry_at, Some(h.now() + secs(0.5)));
}

#[test]
fn further_reports_about_the_same_child_change_nothing() {
    let mut h = cgroup_harness([grower()]);
    settle(&mut h);
    let pid = h.pid("app");
    for mib in [65, 80, 100] {
        assert!(h.sup.sys_mut().exceed_memory(pid, mib * MIB));
        h.tick();
    }
    assert_eq!(exceeded(&h).len(), 1);
    assert_eq!(stop_reasons(&h).len(), 1);
    assert_eq!(h.sup.sys().signals_to(pid), [Signal::SIGTERM]);
    // The stop timeout still escalates.
    h.advance(5.0);
    h.tick();
    assert_eq!(h.sup.sys().signals_to(pid), [Signal::SIGTERM, Signal::SIGKILL]);
    // The successor is a new child: it is watched afresh.
    h.tick();
    let next = h.pid("app");
    assert_ne!(next, pid);
    h.advance(1.0);
    h.tick();
    h.advance(1.0);
    assert!(h.sup.sys_mut().exceed_memory(next, 65 * MIB));
    h.tick();
    assert_eq!(exceeded(&h).len(), 2);
}

#[test]
fn a_child_above_its_threshold_while_starting_is_a_failed_start() {
    // Without this, a threshold below what the program needs to start
    // would restart it as fast as it can fork.
    let mut h = cgroup_harness([grower().give_up_after(3)]);
    h.start_all();
    for round in 1..=3 {
        let pid = h.pid("app");
        assert_eq!(h.state("app"), State::Starting, "round {round}");
        assert!(h.sup.sys_mut().exceed_memory(pid, 65 * MIB));
        h.tick();
        assert!(h.sup.sys_mut().exit(pid, Exit::Signaled(15)));
        h.tick();
        let st = h.sup.status("app").unwrap();
        if round < 3 {
            assert_eq!((st.state, st.failure_streak), (State::Backoff, round), "round {round}");
            h.advance(0.5);
            h.tick();
        } else {
            assert_eq!(st.state, State::Fatal, "give_up_after(3) counts memory failures");
        }
    }
}

fn pool() -> ProcessSpec {
    limited("web").instances(2)
}

#[test]
fn a_pool_instance_is_replaced_new_before_old() {
    let mut h = cgroup_harness([pool()]);
    settle(&mut h);
    let old = h.pid("web:1");
    let spawns = h.spawn_times();
    assert!(h.sup.sys_mut().exceed_memory(old, 70 * MIB));
    h.tick();
    // The successor is spawned first; the old child serves on.
    assert_eq!(h.spawn_times(), spawns + 1);
    let st = h.sup.status("web:1").unwrap();
    assert_eq!((st.state, st.pid), (State::Running, Some(old)));
    let new = st.replacement_pid.expect("a replacement starts");
    assert!(h.sup.sys().signals_to(old).is_empty(), "nothing is sent before the successor is up");
    // Once the successor is Running the old child gets its stop signal.
    h.advance(1.0);
    h.tick();
    assert_eq!(stop_reasons(&h), [("retiring", old, StopReason::Memory)]);
    let line = h.log.iter().find(|e| matches!(e, Event::Retiring { .. })).unwrap().to_string();
    assert!(line.ends_with(" signal=SIGTERM reason=memory"), "{line}");
    assert_eq!(h.sup.sys().signals_to(old), [Signal::SIGTERM]);
    assert_eq!(h.sup.status("web:1").unwrap().pid, Some(new));
    assert!(h.sup.sys_mut().exit(old, Exit::Signaled(15)));
    h.tick();
    assert!(h.log.iter().any(|e| matches!(e, Event::Retired { pid, .. } if *pid == old)));
    // No roll was asked for, so none is reported done; the other instance
    // was never touched.
    assert!(!h.kinds().contains(&"roll_done"), "{:?}", h.kinds());
    assert_eq!(h.state("web:0"), State::Running);
    assert_eq!(h.sup.status("web:1").unwrap().restart_count, 1);
}

#[test]
fn a_failed_replacement_falls_back_to_a_stop_with_backoff() {
    let mut h = cgroup_harness([pool()]);
    settle(&mut h);
    let old = h.pid("web:0");
    assert!(h.sup.sys_mut().exceed_memory(old, 70 * MIB));
    h.tick();
    let new = h.sup.status("web:0").unwrap().replacement_pid.unwrap();
    assert!(h.sup.sys_mut().exit(new, Exit::Exited(1)));
    h.tick();
    // The roll is aborted and the old child, still too big, is stopped the
    // plain way: its exit then follows the policy with its backoff.
    assert!(h.kinds().contains(&"roll_aborted"), "{:?}", h.kinds());
    assert_eq!(stop_reasons(&h), [("stopping", old, StopReason::Memory)]);
    assert_eq!(h.state("web:0"), State::Stopping);
    assert!(h.sup.sys_mut().exit(old, Exit::Signaled(15)));
    h.tick();
    assert_eq!(h.state("web:0"), State::Starting, "immediate after Running");
}

#[test]
fn a_memory_restart_waits_behind_a_roll_in_progress_and_survives_a_new_one() {
    let mut h = cgroup_harness([pool(), ProcessSpec::new("other", "prog").start_grace(secs(1.0))]);
    settle(&mut h);
    let now = h.now();
    h.sup.rolling_restart(Some("other"), now).unwrap();
    h.drain();
    let old = h.pid("web:1");
    assert!(h.sup.sys_mut().exceed_memory(old, 70 * MIB));
    h.tick();
    assert!(h.sup.status("web:1").unwrap().replacement_pid.is_none(), "queued behind `other`'s replacement");
    // A new roll of `other` replaces the queue, but keeps the memory restart.
    let now = h.now();
    h.sup.rolling_restart(Some("other"), now).unwrap();
    h.run_until(4.0);
    let st = h.sup.status("web:1").unwrap();
    assert_ne!(st.pid, Some(old));
    assert!(stop_reasons(&h).contains(&("retiring", old, StopReason::Memory)), "{:?}", stop_reasons(&h));
}

#[test]
fn other_stops_say_why_too() {
    let mut h = cgroup_harness([grower()]);
    settle(&mut h);
    let pid = h.pid("app");
    h.stop("app");
    assert_eq!(stop_reasons(&h), [("stopping", pid, StopReason::Requested)]);
    assert!(h.log.iter().any(|e| e.to_string().ends_with("reason=requested")));

    // A start timeout is a failure.
    let mut h = Harness::with([ProcessSpec::new("db", "prog").ready(Readiness::Notify).start_timeout(secs(2.0))]);
    h.start_all();
    h.advance(2.0);
    h.tick();
    assert_eq!(stop_reasons(&h), [("stopping", h.pid("db"), StopReason::Failed)]);

    // A dependency that leaves Ready stops what needs it.
    let mut h = Harness::with([
        ProcessSpec::new("db", "prog").start_grace(secs(0.5)),
        ProcessSpec::new("app", "prog").start_grace(secs(0.5)).depends_on("db", Condition::Ready),
    ]);
    h.start_all();
    h.run_until(2.0);
    assert_eq!(h.state("app"), State::Running);
    let app = h.pid("app");
    h.exit("db", Exit::Exited(1));
    h.tick();
    assert!(stop_reasons(&h).contains(&("stopping", app, StopReason::Dependency)), "{:?}", stop_reasons(&h));

    // One for all: a sibling's crash stops the rest.
    let mut h = Harness::with([ProcessSpec::new("a", "prog"), ProcessSpec::new("b", "prog")]);
    h.sup.set_strategy(Strategy::OneForAll);
    h.start_all();
    h.tick();
    let b = h.pid("b");
    h.exit("a", Exit::Exited(1));
    h.tick();
    assert_eq!(stop_reasons(&h), [("stopping", b, StopReason::Strategy)]);
}

#[test]
fn the_threshold_needs_a_cgroup_and_must_fit_the_other_memory_limits() {
    let mut sup = Supervisor::with_sys(FakeSys::new()); // the group path
    match sup.add_process(ProcessSpec::new("app", "server").restart_above_memory(64 * MIB)) {
        Err(Error::LimitUnsupported { limit, .. }) => assert_eq!(limit, "restart_above_memory"),
        other => panic!("{other:?}"),
    }
    let mut sys = FakeSys::new();
    sys.set_containment(Containment::Cgroup);
    let mut sup = Supervisor::with_sys(sys);
    for (spec, says) in [
        (grower().memory_high(32 * MIB), "not both"),
        (grower().memory_max(64 * MIB), "must be below memory_max"),
        (grower().restart_above_memory(0), "at least 1"),
    ] {
        match sup.add_process(spec) {
            Err(e @ Error::InvalidSpec { .. }) => assert!(e.to_string().contains(says), "{e}"),
            other => panic!("{says}: {other:?}"),
        }
    }
}

#[test]
fn a_report_for_a_child_without_a_threshold_is_ignored() {
    let mut h = cgroup_harness([ProcessSpec::new("plain", "prog").memory_max(64 * MIB)]);
    h.start_all();
    h.tick();
    let pid = h.pid("plain");
    assert!(!h.sup.sys_mut().exceed_memory(pid, 65 * MIB), "nothing watches it");
    h.tick();
    assert!(exceeded(&h).is_empty());
    assert!(stop_reasons(&h).is_empty());
}

#[test]
fn an_updated_threshold_holds_from_the_next_child_on() {
    let mut h = cgroup_harness([grower()]);
    settle(&mut h);
    let old = h.pid("app");
    let now = h.now();
    h.sup.update_spec("app", grower().restart_above_memory(100 * MIB), now).unwrap();
    // The old child serves out the update's replacement: a report about
    // it changes nothing, its successor is on its way.
    assert!(h.sup.sys_mut().exceed_memory(old, 70 * MIB));
    h.tick();
    assert!(exceeded(&h).is_empty());
    let _ = h.sup.sys_mut().exit(old, Exit::Signaled(15));
    h.run_until(10.0);
    let new = h.pid("app");
    assert_ne!(new, old);
    assert!(h.sup.sys_mut().exceed_memory(new, 120 * MIB));
    h.tick();
    assert_eq!(exceeded(&h), [(new, Some(120 * MIB), 100 * MIB)]);
}

#[test]
fn a_replacement_above_its_threshold_before_it_is_ready_aborts_the_roll_saying_so() {
    let mut h = cgroup_harness([pool()]);
    settle(&mut h);
    let now = h.now();
    h.sup.rolling_restart(Some("web"), now).unwrap();
    h.drain();
    let old = h.pid("web:0");
    let new = h.sup.status("web:0").unwrap().replacement_pid.unwrap();
    assert!(h.sup.sys_mut().exceed_memory(new, 70 * MIB));
    h.tick();
    assert_eq!(stop_reasons(&h), [("stopping", new, StopReason::Memory)]);
    assert!(h.sup.sys_mut().exit(new, Exit::Signaled(15)));
    h.tick();
    let why = h.log.iter().find_map(|e| match e {
        Event::RollAborted { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(why.as_deref().is_some_and(|w| w.contains("memory threshold")), "{why:?}");
    assert_eq!(h.sup.status("web:0").unwrap().pid, Some(old), "the old child serves on");
}

#[test]
fn a_stop_during_a_memory_replacement_retires_the_old_child_as_requested() {
    let mut h = cgroup_harness([pool()]);
    settle(&mut h);
    let old = h.pid("web:0");
    assert!(h.sup.sys_mut().exceed_memory(old, 70 * MIB));
    h.tick();
    h.stop("web:0");
    assert!(stop_reasons(&h).contains(&("retiring", old, StopReason::Requested)), "{:?}", stop_reasons(&h));
}

#[test]
fn a_child_above_its_threshold_soon_after_running_fails_its_start_and_gives_up() {
    // With no start grace a child is Running at once: without the 1 s rule
    // it would restart as fast as it forks, forever.
    let mut h = cgroup_harness([grower().start_grace(secs(0.0)).give_up_after(3)]);
    h.start_all();
    let mut delays = Vec::new();
    for round in 1..=3 {
        assert_eq!(h.state("app"), State::Running, "round {round}");
        let pid = h.pid("app");
        h.advance(0.5);
        assert!(h.sup.sys_mut().exceed_memory(pid, 65 * MIB));
        h.tick();
        assert!(h.sup.sys_mut().exit(pid, Exit::Exited(0)));
        h.tick();
        let st = h.sup.status("app").unwrap();
        if round == 3 {
            assert_eq!(st.state, State::Fatal, "three early memory stops reach give_up_after(3)");
            break;
        }
        assert_eq!((st.state, st.failure_streak), (State::Backoff, round), "round {round}");
        delays.push(st.next_retry_at.unwrap() - h.now());
        h.advance(0.5);
        h.tick();
    }
    assert!(delays.iter().all(|d| !d.is_zero()), "never at once: {delays:?}");
}

#[test]
fn an_early_pool_instance_backs_off_instead_of_handing_the_fate_to_a_successor() {
    let mut h = cgroup_harness([pool()]);
    h.start_all();
    h.advance(1.0);
    h.tick();
    let old = h.pid("web:0");
    let spawns = h.spawn_times();
    assert!(h.sup.sys_mut().exceed_memory(old, 70 * MIB));
    h.tick();
    assert_eq!(h.spawn_times(), spawns, "no replacement is spawned");
    assert_eq!(stop_reasons(&h), [("stopping", old, StopReason::Memory)]);
}

#[test]
fn queued_memory_restarts_survive_an_aborted_roll_and_never_hit_a_successor() {
    let (mut h, a, b) = two_over(3);
    let new_a = h.sup.status("web:0").unwrap().replacement_pid.unwrap();
    // web:0's replacement fails: the roll is aborted, and web:1, still
    // above, is stopped the plain way instead of being forgotten.
    assert!(h.sup.sys_mut().exit(new_a, Exit::Exited(1)));
    h.tick();
    let reasons = stop_reasons(&h);
    assert!(reasons.contains(&("stopping", a, StopReason::Memory)), "{reasons:?}");
    assert!(reasons.contains(&("stopping", b, StopReason::Memory)), "{reasons:?}");

    // A queued memory restart whose child ended meanwhile leaves the
    // successor alone.
    let (mut h, a, b) = two_over(2);
    assert!(h.sup.sys_mut().exit(b, Exit::Exited(1)), "web:1 crashes while it waits");
    h.tick();
    h.run_until(10.0);
    let fresh_b = h.pid("web:1");
    assert_ne!(fresh_b, b);
    let reasons = stop_reasons(&h);
    assert!(!reasons.iter().any(|(_, pid, _)| *pid == fresh_b), "the successor was restarted for memory: {reasons:?}");
    assert!(reasons.contains(&("retiring", a, StopReason::Memory)), "{reasons:?}");
}
