//! Resource limits on FakeSys: a cgroup limit the OS layer cannot enforce
//! is refused when the spec is added, and an OOM kill is named in the exit
//! and counted as a failure.

use std::time::Duration;

use procsup::testing::{FakeSys, VirtualClock};
use procsup::{Backoff, Cause, Containment, Error, Event, Exit, ProcessSpec, Rlimit, State, Supervisor};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cgroup_sys() -> FakeSys {
    let mut sys = FakeSys::new();
    sys.set_containment(Containment::Cgroup);
    sys
}

fn spec() -> ProcessSpec {
    ProcessSpec::new("hog", "prog").backoff(Backoff::fixed(ms(500))).start_grace(ms(100)).memory_max(64 << 20)
}

#[test]
fn a_cgroup_limit_without_a_cgroup_is_refused_on_every_add_path() {
    let limited = [
        ("memory_max", ProcessSpec::new("a", "p").memory_max(1 << 20)),
        ("memory_high", ProcessSpec::new("a", "p").memory_high(1 << 20)),
        ("tasks_max", ProcessSpec::new("a", "p").tasks_max(8)),
        ("cpu_max", ProcessSpec::new("a", "p").cpu_max(ms(10), ms(100))),
        ("cpu_weight", ProcessSpec::new("a", "p").cpu_weight(50)),
        ("io_weight", ProcessSpec::new("a", "p").io_weight(50)),
    ];
    for (name, s) in limited {
        let mut sup = Supervisor::with_sys(FakeSys::new());
        match sup.add_process(s.clone()) {
            Err(Error::LimitUnsupported { limit, name: n, .. }) => assert_eq!((limit, n.as_str()), (name, "a")),
            other => panic!("{name}: {other:?}"),
        }
        assert!(sup.status("a").is_err(), "{name}: nothing was added");
        let err = sup.add_processes([s.clone().instances(2)]).unwrap_err();
        assert!(matches!(err, Error::LimitUnsupported { limit, .. } if limit == name), "{name}: {err:?}");
        // A spec updated to one with a limit is refused too.
        sup.add_process(ProcessSpec::new("a", "p")).unwrap();
        let err = sup.update_spec("a", s, VirtualClock::new().now()).unwrap_err();
        assert!(matches!(err, Error::LimitUnsupported { limit, .. } if limit == name), "{name}: {err:?}");
        assert!(err.to_string().contains(&format!("{name} cannot be enforced")), "the message names the limit: {err}");
    }
}

#[test]
fn with_a_cgroup_limits_are_accepted_and_rlimits_need_none() {
    let mut sup = Supervisor::with_sys(cgroup_sys());
    sup.add_process(spec().tasks_max(16).cpu_weight(10)).unwrap();
    let mut plain = Supervisor::with_sys(FakeSys::new());
    plain.add_process(ProcessSpec::new("r", "p").rlimit(Rlimit::Nofile, 64, 64)).unwrap();
    let bad = plain.add_process(ProcessSpec::new("b", "p").rlimit(Rlimit::Core, 2, 1)).unwrap_err();
    assert!(matches!(bad, Error::InvalidSpec { .. }), "{bad:?}");
}

fn exited(events: &[Event]) -> Vec<(Exit, Option<Cause>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Exited { exit, cause, .. } => Some((*exit, *cause)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_oom_kill_is_named_in_the_exit_and_the_status() {
    let t0 = VirtualClock::new().now();
    let mut sup = Supervisor::with_sys(cgroup_sys());
    sup.add_process(spec()).unwrap();
    sup.start_all(t0).unwrap();
    let pid = sup.sys().pid_of("hog").unwrap();
    assert!(sup.sys_mut().oom_kill(pid));
    sup.tick(t0 + ms(10));
    let events: Vec<Event> = sup.drain_events().collect();
    assert_eq!(exited(&events), [(Exit::Signaled(9), Some(Cause::OomKilled))]);
    let line = events.iter().find(|e| matches!(e, Event::Exited { .. })).unwrap().to_string();
    assert!(line.contains(" signal=9 cause=oom uptime_ms="), "{line}");
    assert_eq!(sup.status("hog").unwrap().last_cause, Some(Cause::OomKilled));
    // The next child's plain crash carries no cause.
    sup.tick(t0 + ms(600));
    assert!(sup.sys_mut().exit_by_name("hog", Exit::Exited(1)));
    sup.tick(t0 + ms(610));
    assert_eq!(exited(&sup.drain_events().collect::<Vec<_>>()), [(Exit::Exited(1), None)]);
    assert_eq!(sup.status("hog").unwrap().last_cause, None);
}

#[test]
fn an_oom_kill_after_running_counts_as_a_failure_and_gives_up() {
    let t0 = VirtualClock::new().now();
    let mut sup = Supervisor::with_sys(cgroup_sys());
    sup.add_process(spec().give_up_after(2)).unwrap();
    sup.start_all(t0).unwrap();
    let mut now = t0;
    for round in 1..=2 {
        now += ms(200);
        sup.tick(now);
        assert_eq!(sup.status("hog").unwrap().state, State::Running, "round {round}");
        let pid = sup.sys().pid_of("hog").unwrap();
        assert!(sup.sys_mut().oom_kill(pid));
        now += ms(1);
        sup.tick(now);
        let st = sup.status("hog").unwrap();
        if round == 1 {
            // A Running child that crashes restarts with a fresh streak; an
            // OOM-killed one backs off as a failed start.
            assert_eq!((st.state, st.failure_streak), (State::Backoff, 1));
            assert_eq!(st.next_retry_at, Some(now + ms(500)));
            now += ms(500);
            sup.tick(now);
        } else {
            assert_eq!(st.state, State::Fatal, "two OOM kills reach give_up_after(2)");
        }
    }
}

#[test]
fn a_plain_crash_after_running_is_not_a_failure() {
    // The baseline the OOM test differs from.
    let t0 = VirtualClock::new().now();
    let mut sup = Supervisor::with_sys(cgroup_sys());
    sup.add_process(spec().give_up_after(2)).unwrap();
    sup.start_all(t0).unwrap();
    sup.tick(t0 + ms(200));
    assert!(sup.sys_mut().exit_by_name("hog", Exit::Signaled(9)));
    sup.tick(t0 + ms(201));
    assert_eq!(sup.status("hog").unwrap().failure_streak, 0);
}
