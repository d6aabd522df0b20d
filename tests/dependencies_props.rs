//! Properties of dependencies over random DAGs and random crashes
//! (issue 15), under each restart strategy: no process is ever `Running`
//! while a `Ready` dependency of it is not (until a shutdown begins), and
//! shutdown never stops a dependency before its dependents, even when
//! children die meanwhile.

use std::time::Duration;

use procsup::testing::{FakeSys, VirtualClock};
use procsup::{Backoff, Condition, Exit, ProcessSpec, State, Strategy as Restart, Supervisor};
use proptest::prelude::*;

const N: usize = 6;

#[derive(Clone, Debug)]
struct Node {
    /// `(index of an earlier node, ready?)`: a DAG by construction.
    deps: Vec<(usize, bool)>,
    grace_ms: u64,
    stop_timeout_ms: u64,
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    ToDeadline,
    Crash(usize),
}

fn node(i: usize) -> impl Strategy<Value = Node> {
    let deps =
        if i == 0 { Just(Vec::new()).boxed() } else { proptest::collection::vec((0..i, any::<bool>()), 0..3).boxed() };
    (deps, prop_oneof![Just(0u64), Just(300), Just(1_000)], prop_oneof![Just(0u64), Just(500), Just(2_000)])
        .prop_map(|(deps, grace_ms, stop_timeout_ms)| Node { deps, grace_ms, stop_timeout_ms })
}

fn graph() -> impl Strategy<Value = Vec<Node>> {
    (node(0), node(1), node(2), node(3), node(4), node(5)).prop_map(|(a, b, c, d, e, f)| vec![a, b, c, d, e, f])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![(1u64..1_500).prop_map(Op::Advance), Just(Op::ToDeadline), (0..N).prop_map(Op::Crash),]
}

fn name(i: usize) -> String {
    format!("p{i}")
}

fn ready_deps(g: &[Node], i: usize) -> impl Iterator<Item = usize> + '_ {
    g[i].deps.iter().filter(|(_, ready)| *ready).map(|(d, _)| *d)
}

fn check_ready(sup: &Supervisor<FakeSys>, g: &[Node]) -> Result<(), TestCaseError> {
    for i in 0..N {
        if sup.status(&name(i)).unwrap().state != State::Running {
            continue;
        }
        for d in ready_deps(g, i) {
            let ds = sup.status(&name(d)).unwrap().state;
            prop_assert_eq!(ds, State::Running, "p{} Running while its Ready dependency p{} is {}", i, d, ds);
        }
    }
    Ok(())
}

/// During shutdown: a dependency is only ever signalled (a `Stopping`
/// event) once none of its dependents has a child any more. (One stopped
/// before the shutdown, because a `Ready` dependency of its own crashed,
/// is not the shutdown's doing.)
fn check_shutdown(sup: &mut Supervisor<FakeSys>, g: &[Node]) -> Result<(), TestCaseError> {
    let signalled: Vec<String> =
        sup.drain_events().filter(|e| e.kind() == "stopping").map(|e| e.name().to_owned()).collect();
    for (i, node) in g.iter().enumerate() {
        for &(d, _) in &node.deps {
            let is = sup.status(&name(i)).unwrap().state;
            prop_assert!(
                !(signalled.contains(&name(d)) && is.has_child()),
                "p{} was signalled while its dependent p{} is {}",
                d,
                i,
                is
            );
        }
    }
    Ok(())
}

fn crash(sup: &mut Supervisor<FakeSys>, i: usize) {
    if let Some(pid) = sup.status(&name(i)).unwrap().pid {
        let _ = sup.sys_mut().exit(pid, Exit::Signaled(9));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ready_holds_and_shutdown_goes_dependents_first(
        g in graph(),
        ops in proptest::collection::vec(op(), 1..40),
        shutdown_crashes in proptest::collection::vec(0..N, 0..6),
        strategy in prop_oneof![Just(Restart::OneForOne), Just(Restart::OneForAll), Just(Restart::RestForOne)],
    ) {
        let mut now = VirtualClock::new().now();
        let mut sup = Supervisor::with_sys(FakeSys::new()).with_seed(1);
        sup.set_strategy(strategy);
        for (i, n) in g.iter().enumerate() {
            let mut spec = ProcessSpec::new(name(i), "x")
                .start_grace(Duration::from_millis(n.grace_ms))
                .stop_timeout(Duration::from_millis(n.stop_timeout_ms))
                .backoff(Backoff::fixed(Duration::from_millis(400)));
            for &(d, ready) in &n.deps {
                spec = spec.depends_on(name(d), if ready { Condition::Ready } else { Condition::Started });
            }
            sup.add_process(spec).unwrap();
        }
        sup.start_all(now).unwrap();
        check_ready(&sup, &g)?;
        sup.drain_events().for_each(drop);
        // A SIGKILL ends a FakeSys child at once: its exit is reaped by
        // the next tick, woken by the readiness fd, not by a deadline.
        let mut killed = false;
        for op in &ops {
            let mut quiet = !killed;
            match *op {
                Op::Advance(ms) => now += Duration::from_millis(ms),
                Op::ToDeadline => now = sup.next_deadline().map_or(now, |t| t.max(now)),
                Op::Crash(i) => {
                    crash(&mut sup, i);
                    quiet = false;
                }
            }
            // Waiting has no clock of its own: before the next deadline,
            // with no exit to reap, a tick changes nothing.
            quiet &= sup.next_deadline().is_none_or(|t| now < t);
            sup.tick(now);
            let events: Vec<&'static str> = sup.drain_events().map(|e| e.kind()).collect();
            prop_assert!(!quiet || events.is_empty(), "{:?} before the next deadline", events);
            killed = events.contains(&"killed");
            check_ready(&sup, &g)?;
        }
        sup.drain_events().for_each(drop);
        sup.shutdown(now);
        check_shutdown(&mut sup, &g)?;
        let mut crashes = shutdown_crashes.into_iter();
        for _ in 0..200 {
            if sup.is_idle() {
                break;
            }
            // Children may also die on their own during the shutdown.
            if let Some(i) = crashes.next() {
                crash(&mut sup, i);
            } else if let Some(t) = sup.next_deadline() {
                now = now.max(t);
            }
            sup.tick(now);
            // No Ready check here: during a shutdown the tiers' order wins
            // over stopping a crashed process's dependents early.
            check_shutdown(&mut sup, &g)?;
        }
        prop_assert!(sup.is_idle(), "shutdown did not finish");
    }
}
