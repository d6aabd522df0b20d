//! Dependencies (issue 15) on FakeSys and a virtual clock, at exact
//! instants: start order with readiness, a failing `Completed` dependency,
//! cycles and unknown names, removal, tiered shutdown with its timeouts,
//! and a started supervisor starting what is added to it.

mod common;

use common::{secs, Harness};
use procsup::{Condition, Error, Event, Exit, FatalReason, ProcessSpec, RestartPolicy, ShutdownOrder, Signal, State};

fn p(name: &str, grace: f64) -> ProcessSpec {
    ProcessSpec::new(name, name).start_grace(secs(grace)).stop_timeout(secs(5.0))
}

/// `(name, kind)` of every event so far.
fn timeline(h: &Harness) -> Vec<(String, &'static str)> {
    h.log.iter().map(|e| (e.name().to_owned(), e.kind())).collect()
}

fn index_of(h: &Harness, name: &str, kind: &str) -> usize {
    h.log
        .iter()
        .position(|e| e.name() == name && e.kind() == kind)
        .unwrap_or_else(|| panic!("no {kind} event for {name}: {:?}", timeline(h)))
}

fn spawns_of(h: &Harness, name: &str) -> usize {
    h.log.iter().filter(|e| e.name() == name && e.kind() == "spawned").count()
}

#[test]
fn ready_dependency_starts_dependent_at_its_grace() {
    // db: grace 2 s; app waits until db is Running; worker needs app started.
    let mut h = Harness::with([
        p("db", 2.0),
        p("app", 1.0).depends_on("db", Condition::Ready),
        p("worker", 0.5).depends_on("app", Condition::Started),
    ]);
    h.start_all();
    assert_eq!(h.state("db"), State::Starting);
    assert_eq!(h.state("app"), State::Waiting);
    assert_eq!(h.state("worker"), State::Waiting);
    let st = h.sup.status("app").unwrap();
    assert_eq!(st.waiting_on, Some(("db".to_owned(), Condition::Ready)));
    assert!(h.log.iter().any(|e| matches!(e, Event::Waiting { name, dependency, condition: Condition::Ready }
        if &**name == "app" && &**dependency == "db")));
    assert_eq!(h.sup.sys().spawns().len(), 1, "only db spawned");
    // Waiting sets no deadline of its own: the next one is db's grace.
    assert_eq!(h.sup.next_deadline(), Some(h.at(2.0)));
    h.run_until(1.999);
    assert_eq!(h.state("app"), State::Waiting);
    h.advance_to(2.0);
    h.tick();
    // db Running at 2.0; app spawned in the same tick; worker (Started)
    // right after it.
    assert_eq!(h.state("db"), State::Running);
    assert_eq!(h.state("app"), State::Starting);
    assert_eq!(h.state("worker"), State::Starting);
    assert_eq!(h.started_at("app"), 2.0);
    assert_eq!(h.started_at("worker"), 2.0);
    assert!(index_of(&h, "db", "running") < index_of(&h, "app", "spawned"));
    assert!(index_of(&h, "app", "spawned") < index_of(&h, "worker", "spawned"));
    assert_eq!(h.sup.status("app").unwrap().waiting_on, None);
    assert_eq!(spawns_of(&h, "worker"), 1);
}

#[test]
fn failing_completed_dependency_fails_its_dependents() {
    let mut h = Harness::with([
        p("migrate", 0.0).restart(RestartPolicy::Never),
        p("app", 1.0).depends_on("migrate", Condition::Completed),
        p("worker", 1.0).depends_on("app", Condition::Ready),
    ]);
    h.start_all();
    assert_eq!(h.state("migrate"), State::Running);
    assert_eq!(h.state("app"), State::Waiting);
    h.advance_to(3.0);
    h.tick();
    assert_eq!(h.state("app"), State::Waiting, "still migrating at 3 s");
    h.exit("migrate", Exit::Exited(1));
    h.tick();
    assert_eq!(h.state("migrate"), State::Exited);
    assert_eq!(h.state("app"), State::Fatal);
    assert_eq!(h.state("worker"), State::Fatal, "the failure cascades, nobody waits forever");
    let reasons: Vec<_> = h
        .log
        .iter()
        .filter_map(|e| match e {
            Event::Fatal { name, reason } => Some((name.to_string(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("app".to_owned(), FatalReason::DependencyFailed { dependency: "migrate".into() }),
            ("worker".to_owned(), FatalReason::DependencyFailed { dependency: "app".into() }),
        ]
    );
    assert_eq!(h.sup.sys().spawns().len(), 1, "neither dependent ever spawned");
    assert_eq!(h.sup.next_deadline(), None, "nothing spins");
}

#[test]
fn successful_completed_dependency_releases_at_its_exit() {
    let mut h = Harness::with([
        p("migrate", 0.0).restart(RestartPolicy::OnFailure),
        p("app", 1.0).depends_on("migrate", Condition::Completed),
    ]);
    h.start_all();
    h.advance_to(4.0);
    h.exit("migrate", Exit::Exited(1));
    h.tick();
    assert_eq!(h.state("migrate"), State::Backoff, "a failure that is retried: app keeps waiting");
    assert_eq!(h.state("app"), State::Waiting);
    h.run_until(10.0);
    h.exit("migrate", Exit::Exited(0));
    h.advance_to(10.5);
    h.tick();
    assert_eq!(h.state("migrate"), State::Exited);
    assert_eq!(h.state("app"), State::Starting);
    assert_eq!(h.started_at("app"), 10.5);
}

#[test]
fn fatal_dependency_fails_waiting_dependents() {
    let mut h = Harness::with([p("db", 1.0).give_up_after(1), p("app", 1.0).depends_on("db", Condition::Started)]);
    h.sup.sys_mut().fail_next_spawn(nix::errno::Errno::EAGAIN);
    h.start_all();
    assert_eq!(h.state("db"), State::Fatal);
    assert_eq!(h.state("app"), State::Fatal);
    assert!(matches!(h.log.last(), Some(Event::Fatal { name, reason: FatalReason::DependencyFailed { dependency } })
        if &**name == "app" && dependency == "db"));
}

#[test]
fn unknown_names_and_cycles_are_refused_at_add_time() {
    let mut h = Harness::with([p("a", 1.0)]);
    let err = h.sup.add_process(p("b", 1.0).depends_on("c", Condition::Started)).unwrap_err();
    assert!(matches!(err, Error::UnknownDependency { ref name, ref dependency } if name == "b" && dependency == "c"));
    let err = h.sup.add_process(p("b", 1.0).depends_on("b", Condition::Ready)).unwrap_err();
    assert!(matches!(err, Error::DependencyCycle(ref c) if c == &["b"]));
    // In one batch, any order; a cycle in it adds nothing.
    let err = h
        .sup
        .add_processes([
            p("x", 1.0).depends_on("y", Condition::Ready),
            p("y", 1.0).depends_on("z", Condition::Ready),
            p("z", 1.0).depends_on("x", Condition::Started).depends_on("a", Condition::Ready),
        ])
        .unwrap_err();
    match err {
        Error::DependencyCycle(c) => {
            let mut sorted = c.clone();
            sorted.sort();
            assert_eq!(sorted, ["x", "y", "z"], "{c:?}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(h.sup.len(), 1, "nothing of the batch was added");
    // Without the cycle, the batch is added dependencies first.
    h.sup
        .add_processes([
            p("x", 1.0).depends_on("y", Condition::Ready),
            p("y", 1.0).depends_on("z", Condition::Ready),
            p("z", 1.0).depends_on("a", Condition::Ready),
        ])
        .unwrap();
    let names: Vec<String> = h.sup.names().iter().map(|n| n.to_string()).collect();
    assert_eq!(names, ["a", "z", "y", "x"]);
}

#[test]
fn removing_a_dependency_is_refused_until_its_dependents_go() {
    let mut h = Harness::with([p("db", 1.0), p("app", 1.0).depends_on("db", Condition::Ready)]);
    let now = h.now();
    let err = h.sup.remove_process("db", now).unwrap_err();
    assert!(matches!(err, Error::HasDependents { ref name, ref dependents } if name == "db" && dependents == &["app"]));
    h.sup.remove_process("app", now).unwrap();
    h.sup.remove_process("db", now).unwrap();
    assert!(h.sup.is_empty());
}

#[test]
fn crash_of_a_ready_dependency_stops_and_rewaits_its_dependents() {
    let mut h = Harness::with([
        p("db", 1.0).backoff(procsup::Backoff::fixed(secs(3.0))),
        p("app", 1.0).depends_on("db", Condition::Ready),
        p("cron", 1.0).depends_on("db", Condition::Started),
    ]);
    h.start_all();
    h.run_until(5.0);
    assert_eq!((h.state("db"), h.state("app"), h.state("cron")), (State::Running, State::Running, State::Running));
    let app_pid = h.pid("app");
    h.exit("db", Exit::Signaled(9));
    h.tick();
    assert_eq!(h.state("db"), State::Backoff);
    assert_eq!(h.state("app"), State::Stopping, "app needs db Ready: stopped");
    assert_eq!(h.state("cron"), State::Running, "Started is not undone by a crash");
    assert_eq!(h.sup.sys().signals_to(app_pid), [Signal::SIGTERM]);
    h.exit("app", Exit::Signaled(15));
    h.tick();
    assert_eq!(h.state("app"), State::Waiting);
    assert_eq!(h.sup.status("app").unwrap().waiting_on, Some(("db".into(), Condition::Ready)));
    // db retried at 8.0, Running at 9.0: app spawns at 9.0 again.
    h.run_until(8.999);
    assert_eq!(h.state("app"), State::Waiting);
    h.run_until(9.0);
    assert_eq!(h.state("db"), State::Running);
    assert_eq!(h.state("app"), State::Starting);
    assert_eq!(h.started_at("app"), 9.0);
}

#[test]
fn shutdown_stops_tier_by_tier_with_each_tiers_timeout() {
    // db <- app <- worker; logger unrelated. Stop timeouts 5 s, except
    // app's 2 s. worker ignores SIGTERM: killed at 5, then app (killed at
    // 7), then db (exits at once).
    let mut h = Harness::with([
        p("db", 0.0),
        p("logger", 0.0),
        p("app", 0.0).depends_on("db", Condition::Ready).stop_timeout(secs(2.0)),
        p("worker", 0.0).depends_on("app", Condition::Ready),
    ]);
    h.start_all();
    assert!([h.state("db"), h.state("app"), h.state("worker")].iter().all(|s| *s == State::Running));
    let now = h.now();
    h.sup.shutdown(now);
    h.drain();
    // Tier 0: worker and logger, together; app and db untouched.
    assert_eq!(h.state("worker"), State::Stopping);
    assert_eq!(h.state("logger"), State::Stopping);
    assert_eq!(h.state("app"), State::Running);
    assert_eq!(h.state("db"), State::Running);
    assert_eq!(h.sup.next_deadline(), Some(h.at(5.0)));
    h.exit("logger", Exit::Signaled(15));
    h.tick();
    assert_eq!(h.state("app"), State::Running, "worker still stopping");
    h.run_until(4.999);
    assert_eq!(h.state("app"), State::Running);
    h.advance_to(5.0);
    h.tick(); // SIGKILL to worker
    h.tick(); // reaped: tier 1 begins
    assert_eq!(h.state("worker"), State::Stopped);
    assert_eq!(h.state("app"), State::Stopping);
    assert_eq!(h.state("db"), State::Running);
    assert_eq!(h.sup.next_deadline(), Some(h.at(7.0)));
    h.run_until(7.0);
    h.tick();
    assert_eq!(h.state("app"), State::Stopped);
    assert_eq!(h.state("db"), State::Stopping);
    assert_eq!(h.sup.next_deadline(), Some(h.at(12.0)), "the bound is the sum: 5 + 2 + 5");
    h.exit("db", Exit::Signaled(15));
    h.tick();
    assert!(h.sup.is_idle());
    assert!(index_of(&h, "worker", "stopped") < index_of(&h, "app", "stopping"));
    assert!(index_of(&h, "app", "stopped") < index_of(&h, "db", "stopping"));
}

#[test]
fn sequential_shutdown_stops_one_at_a_time_in_reverse_start_order() {
    let mut h = Harness::with([p("a", 0.0), p("b", 0.0), p("c", 0.0)]);
    h.sup.set_shutdown_order(ShutdownOrder::Sequential);
    h.start_all();
    let now = h.now();
    h.sup.shutdown(now);
    h.drain();
    assert_eq!((h.state("a"), h.state("b"), h.state("c")), (State::Running, State::Running, State::Stopping));
    h.advance_to(1.0);
    h.exit("c", Exit::Signaled(15));
    h.tick();
    assert_eq!((h.state("a"), h.state("b")), (State::Running, State::Stopping));
    assert_eq!(h.sup.next_deadline(), Some(h.at(6.0)));
    h.run_until(6.0);
    h.tick();
    assert_eq!(h.state("b"), State::Stopped);
    assert_eq!(h.state("a"), State::Stopping);
}

#[test]
fn without_dependencies_shutdown_stops_everything_at_once() {
    let mut h = Harness::with([p("a", 0.0), p("b", 0.0)]);
    h.start_all();
    let now = h.now();
    h.sup.shutdown(now);
    assert_eq!((h.state("a"), h.state("b")), (State::Stopping, State::Stopping));
}

#[test]
fn started_supervisor_starts_an_added_process_at_the_next_tick() {
    let mut h = Harness::with([p("db", 1.0)]);
    h.start_all();
    h.advance_to(3.0);
    h.tick();
    h.sup.add_process(p("app", 1.0).depends_on("db", Condition::Ready)).unwrap();
    h.sup.add_process(p("tool", 1.0).autostart(false)).unwrap();
    // Due at once: at the last instant seen.
    assert_eq!(h.state("app"), State::Waiting);
    assert_eq!(h.sup.next_deadline(), Some(h.at(3.0)));
    h.tick();
    assert_eq!(h.state("app"), State::Starting);
    assert_eq!(h.started_at("app"), 3.0);
    assert_eq!(h.state("tool"), State::Stopped, "autostart(false) opts out");
    // Added while its dependency is not Ready: it waits for it.
    h.sup.add_process(p("web", 1.0).depends_on("app", Condition::Ready)).unwrap();
    h.tick();
    assert_eq!(h.state("web"), State::Waiting);
    h.run_until(4.0);
    assert_eq!(h.state("web"), State::Starting);
    assert_eq!(h.started_at("web"), 4.0);
    // After stop_all, adding starts nothing.
    let now = h.now();
    h.sup.stop_all(now);
    h.sup.add_process(p("late", 1.0)).unwrap();
    h.tick();
    assert_eq!(h.state("late"), State::Stopped);
}

#[test]
fn start_all_skips_autostart_false() {
    let mut h = Harness::with([p("a", 1.0), p("b", 1.0).autostart(false)]);
    h.start_all();
    assert_eq!((h.state("a"), h.state("b")), (State::Starting, State::Stopped));
    h.start("b");
    assert_eq!(h.state("b"), State::Starting);
}

#[test]
fn a_met_dependency_makes_the_waiting_process_due_whatever_call_met_it() {
    // spawn_process does not release waiters itself: next_deadline says
    // "now", so a host that sleeps until it never strands them.
    let mut h = Harness::with([p("db", 0.0).autostart(false), p("app", 1.0).depends_on("db", Condition::Ready)]);
    h.start_all();
    assert_eq!((h.state("db"), h.state("app")), (State::Stopped, State::Waiting));
    assert_eq!(h.sup.next_deadline(), None, "waiting on a stopped dependency sets no timer");
    h.advance_to(2.0);
    let now = h.now();
    h.sup.spawn_process("db", now).unwrap();
    assert_eq!(h.state("db"), State::Running);
    assert_eq!(h.sup.next_deadline(), Some(h.at(2.0)));
    h.tick();
    assert_eq!(h.state("app"), State::Starting);
    assert_eq!(h.started_at("app"), 2.0);
    assert_eq!(h.sup.next_deadline(), Some(h.at(3.0)), "app's grace, nothing else");
}

#[test]
fn a_completed_dependency_on_an_always_process_is_refused() {
    let mut h = Harness::with([p("migrate", 1.0).restart(RestartPolicy::Always)]);
    let err = h.sup.add_process(p("app", 1.0).depends_on("migrate", Condition::Completed)).unwrap_err();
    assert!(
        matches!(err, Error::NeverCompletes { ref name, ref dependency } if name == "app" && dependency == "migrate"),
        "{err}"
    );
    assert!(err.to_string().contains("\"migrate\" restarts always and never completes"), "{err}");
    // In a batch too (the dependency is added first, then refused with
    // everything after it), and for a group.
    let err = h
        .sup
        .add_processes([
            p("job", 1.0).depends_on("setup", Condition::Completed),
            p("setup", 1.0).instances(2).restart(RestartPolicy::Always),
        ])
        .unwrap_err();
    assert!(matches!(err, Error::NeverCompletes { ref dependency, .. } if dependency == "setup"), "{err}");
    // Started / Ready on it, or Completed on an on-failure one, are fine.
    h.sup.add_process(p("app", 1.0).depends_on("migrate", Condition::Ready)).unwrap();
    h.sup.add_process(p("once", 1.0).restart(RestartPolicy::OnFailure)).unwrap();
    h.sup.add_process(p("after", 1.0).depends_on("once", Condition::Completed)).unwrap();
}

#[test]
fn cycle_messages_close_the_loop() {
    let mut h = Harness::new();
    let err = h.sup.add_process(p("a", 1.0).depends_on("a", Condition::Started)).unwrap_err();
    assert_eq!(err.to_string(), "dependency cycle: a depends on itself");
    let err = h
        .sup
        .add_processes([p("a", 1.0).depends_on("b", Condition::Started), p("b", 1.0).depends_on("a", Condition::Ready)])
        .unwrap_err();
    assert_eq!(err.to_string(), "dependency cycle: a -> b -> a");
    let err = h.sup.add_processes([p("s", 1.0).depends_on("s", Condition::Ready)]).unwrap_err();
    assert_eq!(err.to_string(), "dependency cycle: s depends on itself");
}

#[test]
fn a_dependency_on_a_group_waits_for_every_instance() {
    // db: 2 instances, the second slower to be ready; app needs them all
    // Ready. Added in one batch, dependent first.
    let mut h = Harness::new();
    h.sup
        .add_processes([
            p("app", 1.0).depends_on("db", Condition::Ready),
            p("db", 1.0).instances(2).backoff(procsup::Backoff::fixed(secs(1.0))),
        ])
        .unwrap();
    h.start_all();
    assert_eq!(h.state("app"), State::Waiting);
    h.run_until(1.0);
    assert_eq!((h.state("db:0"), h.state("db:1")), (State::Running, State::Running));
    assert_eq!(h.state("app"), State::Starting);
    h.run_until(2.0);
    assert_eq!(h.state("app"), State::Running);
    // One instance crashes: app (Ready on the group) stops and waits for
    // the group again.
    h.exit("db:1", Exit::Signaled(9));
    h.tick();
    assert_eq!(h.state("app"), State::Stopping);
    h.exit("app", Exit::Signaled(15));
    h.tick();
    assert_eq!(h.state("app"), State::Waiting);
    h.run_until(4.0);
    assert_eq!(h.state("db:1"), State::Running);
    assert_eq!(h.state("app"), State::Starting);
    assert_eq!(spawns_of(&h, "app"), 2);
    // The shutdown stops app before any instance of db.
    let now = h.now();
    h.sup.shutdown(now);
    assert_eq!(h.state("app"), State::Stopping);
    assert_eq!((h.state("db:0"), h.state("db:1")), (State::Running, State::Running));
}

#[test]
fn a_dependency_on_one_instance_may_come_in_the_same_batch() {
    let mut h = Harness::new();
    h.sup.add_processes([p("app", 1.0).depends_on("db:1", Condition::Started), p("db", 1.0).instances(2)]).unwrap();
    let err = h.sup.add_process(p("x", 1.0).depends_on("db:2", Condition::Started)).unwrap_err();
    assert!(matches!(err, Error::UnknownDependency { .. }), "{err}");
}
