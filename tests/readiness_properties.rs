//! Property test: random sd_notify datagrams (well-formed or garbage),
//! host readiness, probe answers of any generation, reloads, rolls, exits
//! and clock moves never panic and keep the readiness invariants.

use std::time::Duration;

use proptest::prelude::*;

use procsup::testing::{FakeSys, VirtualClock};
use procsup::{Exit, Output, Probe, ProcessSpec, ProcessStatus, Readiness, State, Stream, Supervisor};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// Datagrams a child might send, and garbage.
const DATAGRAMS: [&[u8]; 12] = [
    b"READY=1",
    b"READY=1\nSTATUS=up",
    b"WATCHDOG=1",
    b"WATCHDOG=trigger",
    b"RELOADING=1\nMONOTONIC_USEC=1",
    b"STOPPING=1",
    b"EXTEND_TIMEOUT_USEC=18446744073709551615",
    b"EXTEND_TIMEOUT_USEC=2000000",
    b"ERRNO=-7\nMAINPID=1",
    b"\0\xff",
    b"READY",
    b"STATUS=\xff\xfe",
];

#[derive(Clone, Debug)]
enum Op {
    Start(usize),
    Stop(usize),
    Notify(usize, usize),
    Garbage(usize, Vec<u8>),
    MarkReady(usize),
    Probe(usize, u64, bool),
    Reload(usize),
    Roll,
    Exit(usize, i32),
    Line(usize),
    Advance(u32),
    ToDeadline,
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0..NAMES.len();
    prop_oneof![
        n.clone().prop_map(Op::Start),
        n.clone().prop_map(Op::Stop),
        (n.clone(), 0..DATAGRAMS.len()).prop_map(|(i, d)| Op::Notify(i, d)),
        (n.clone(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(i, d)| Op::Garbage(i, d)),
        n.clone().prop_map(Op::MarkReady),
        (n.clone(), 0..6u64, any::<bool>()).prop_map(|(i, g, ok)| Op::Probe(i, g, ok)),
        n.clone().prop_map(Op::Reload),
        Just(Op::Roll),
        (n.clone(), 0..2i32).prop_map(|(i, c)| Op::Exit(i, c)),
        n.prop_map(Op::Line),
        (0..8_000u32).prop_map(Op::Advance),
        Just(Op::ToDeadline),
    ]
}

fn spec(i: usize) -> ProcessSpec {
    let ms = Duration::from_millis;
    let s = ProcessSpec::new(NAMES[i], "prog").stop_timeout(ms(1_000)).stdout(Output::Capture);
    match i {
        0 => s.ready(Readiness::Notify).start_timeout(ms(3_000)).watchdog(ms(2_000)),
        1 => s.ready(Readiness::Host).probe(Probe::every(ms(1_500)).timeout(ms(500)).failure_threshold(2)),
        2 => s.ready(Readiness::output_contains("up")).start_timeout(ms(2_500)),
        _ => s.ready(Readiness::Fd(3)).probe(Probe::every(ms(1_000)).initial_delay(ms(700))),
    }
}

fn check(st: &ProcessStatus) {
    assert_eq!(st.state.has_child(), st.pid.is_some(), "{st:?}");
    if !st.state.has_child() {
        assert!(st.ready_at.is_none() && st.watchdog_at.is_none() && st.start_timeout_at.is_none(), "{st:?}");
    }
    if st.state == State::Running {
        assert!(st.ready_at.is_some(), "Running without readiness: {st:?}");
    }
    if st.state == State::Starting {
        assert!(st.ready_at.is_none() && st.watchdog_at.is_none() && st.next_probe_at.is_none(), "{st:?}");
    }
    if st.watchdog_at.is_some() || st.next_probe_at.is_some() {
        assert_eq!(st.state, State::Running, "liveness deadlines outside Running: {st:?}");
    }
    if st.start_timeout_at.is_some() {
        assert!(st.state == State::Starting || st.reloading, "{st:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn readiness_inputs_never_break_the_invariants(ops in prop::collection::vec(op(), 1..80)) {
        let mut clock = VirtualClock::new();
        let mut sup = Supervisor::with_sys(FakeSys::new()).with_seed(7);
        for i in 0..NAMES.len() {
            sup.add_process(spec(i)).unwrap();
        }
        sup.start_all(clock.now()).unwrap();
        for op in ops {
            let now = clock.now();
            let pid = |sup: &Supervisor<FakeSys>, i: usize| {
                let st = sup.status(NAMES[i]).unwrap();
                st.replacement_pid.or(st.pid)
            };
            match op {
                Op::Start(i) => { let _ = sup.start_process(NAMES[i], now); }
                Op::Stop(i) => { let _ = sup.stop_process(NAMES[i], now); }
                Op::Notify(i, d) => if let Some(p) = pid(&sup, i) { let _ = sup.sys_mut().notify(p, DATAGRAMS[d]); },
                Op::Garbage(i, d) => if let Some(p) = pid(&sup, i) { let _ = sup.sys_mut().notify(p, &d); },
                Op::MarkReady(i) => { sup.mark_ready(NAMES[i], now).unwrap(); }
                Op::Probe(i, g, ok) => { sup.probe_result(NAMES[i], g, ok, now).unwrap(); }
                Op::Reload(i) => { let _ = sup.reload_process(NAMES[i], now); }
                Op::Roll => sup.rolling_restart(None, now).unwrap(),
                Op::Exit(i, c) => if let Some(p) = pid(&sup, i) { let _ = sup.sys_mut().exit(p, Exit::Exited(c)); },
                Op::Line(i) => if let Some(p) = pid(&sup, i) { let _ = sup.sys_mut().output(p, Stream::Stdout, b"up\n"); },
                Op::Advance(ms) => clock.advance(Duration::from_millis(u64::from(ms))),
                Op::ToDeadline => if let Some(t) = sup.next_deadline() { clock.set(t) },
            }
            sup.tick(clock.now());
            let _ = sup.drain_events().count();
            for st in sup.statuses() {
                check(&st);
            }
            if let Some(t) = sup.next_deadline() {
                prop_assert!(t > clock.now(), "a deadline at or before now survived a tick");
            }
        }
    }
}
