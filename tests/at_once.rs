//! The promise behind `Sys::respawn_at_once` (#22): a child the supervisor
//! said is restarted at once, whose death a poll reports, is spawned again
//! in the tick that reaps it. `UnixSys` lets a successor go on that word
//! before the supervisor decides, so a wrong "yes" would start a program
//! the supervisor then does not want.
//!
//! Random runs over every input of that answer (policies, backoffs with
//! and without `immediate_after_running`, give-up limits, restart windows,
//! start graces, dependencies, instance groups with an intensity, the
//! group strategies and the supervisor's intensity, stops, restarts,
//! removals, spec updates, shutdowns, clock jumps), checked after every
//! step with `FakeSys::owed_respawns`; and the positive side: the answer
//! is "yes" where nothing else is left to decide.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use proptest::prelude::*;

use procsup::testing::FakeSys;
use procsup::{Backoff, Condition, Exit, ProcessSpec, RestartPolicy, State, Strategy as Otp, Supervisor};

const NAMES: [&str; 3] = ["a", "b", "c"];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A spec of `name` from a knob byte: each input of the answer varies.
fn spec(name: &str, k: u16) -> ProcessSpec {
    let backoff = match k % 6 {
        0..=2 => Backoff::none(),
        3 => Backoff::fixed(ms(300)),
        4 => Backoff::exponential(ms(100)).immediate_after_running(true),
        _ => Backoff::linear(Duration::ZERO).floor(ms(50)),
    };
    let policy = [RestartPolicy::Always, RestartPolicy::Always, RestartPolicy::OnFailure][(k / 6 % 3) as usize];
    let mut s = ProcessSpec::new(name, "prog")
        .restart(policy)
        .backoff(backoff)
        .start_grace([ms(0), ms(400)][(k / 18 % 2) as usize])
        .stop_timeout(ms(200));
    match k / 36 % 4 {
        1 => s = s.give_up_after(1),
        2 => s = s.give_up_after(3),
        3 => s = s.max_restarts_within(2, ms(1_000)),
        _ => {}
    }
    if name != "a" && k / 144 % 8 == 1 {
        s = s.depends_on("a", [Condition::Started, Condition::Ready][(k / 1152 % 2) as usize]);
    }
    if k / 144 % 8 == 2 {
        s = s.instances(2).group_intensity(2, ms(1_000));
    }
    s
}

#[derive(Clone, Debug)]
enum Op {
    Add(usize, u16),
    Update(usize, u16),
    Remove(usize),
    Start(usize),
    Stop(usize),
    Restart(usize),
    /// A rolling restart of one name (or of everything).
    Roll(Option<usize>),
    StartAll,
    Shutdown,
    /// Ends the `n`-th live child (of every name and instance, in name
    /// order): `Some(code)` an exit, `None` a SIGKILL.
    End(usize, Option<i32>),
    SetStrategy(u8),
    SetIntensity,
    Tick(u64),
    ToDeadline,
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0..NAMES.len();
    // Weights out of 200: a shutdown, a group strategy or an intensity
    // ends every "yes" for the rest of a run, so they are rare.
    prop_oneof![
        15 => (n.clone(), any::<u16>()).prop_map(|(i, k)| Op::Add(i, k)),
        5 => (n.clone(), any::<u16>()).prop_map(|(i, k)| Op::Update(i, k)),
        5 => n.clone().prop_map(Op::Remove),
        15 => n.clone().prop_map(Op::Start),
        5 => n.clone().prop_map(Op::Stop),
        5 => n.clone().prop_map(Op::Restart),
        5 => prop::option::of(n).prop_map(Op::Roll),
        10 => Just(Op::StartAll),
        1 => Just(Op::Shutdown),
        70 => (0..6usize, prop_oneof![Just(None), (0..2i32).prop_map(Some)]).prop_map(|(i, c)| Op::End(i, c)),
        3 => prop_oneof![Just(0u8), Just(0), Just(1), Just(2)].prop_map(Op::SetStrategy),
        1 => Just(Op::SetIntensity),
        45 => prop_oneof![Just(0u64), Just(1), Just(450), Just(1_500)].prop_map(Op::Tick),
        20 => Just(Op::ToDeadline),
    ]
}

/// The live children, in name order (instances included).
fn children(sup: &Supervisor<FakeSys>) -> Vec<(String, procsup::Pid)> {
    let mut all: Vec<_> = sup.statuses().into_iter().filter_map(|s| s.pid.map(|p| (s.name, p))).collect();
    all.sort();
    all
}

/// Runs `ops`; returns how many deaths were told at once (and so had to
/// be spawned again in the tick that reaped them).
fn run(ops: &[Op]) -> Result<usize, TestCaseError> {
    let mut now = Instant::now();
    let mut sup = Supervisor::with_sys(FakeSys::new()).with_seed(7);
    let mut told_deaths = 0;
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Add(i, k) => drop(sup.add_process(spec(NAMES[i], k))),
            Op::Update(i, k) => drop(sup.update_spec(NAMES[i], spec(NAMES[i], k), now)),
            Op::Remove(i) => drop(sup.remove_process(NAMES[i], now)),
            Op::Start(i) => drop(sup.start_process(NAMES[i], now)),
            Op::Stop(i) => drop(sup.stop_process(NAMES[i], now)),
            Op::Restart(i) => drop(sup.restart_process(NAMES[i], now)),
            Op::Roll(i) => drop(sup.rolling_restart(i.map(|i| NAMES[i]), now)),
            Op::StartAll => drop(sup.start_all(now)),
            Op::Shutdown => sup.shutdown(now),
            Op::End(n, code) => {
                let live = children(&sup);
                if let Some((_, pid)) = live.get(n % live.len().max(1)) {
                    let told = sup.sys().restarts_at_once().contains(pid);
                    let exit = code.map_or(Exit::Signaled(9), Exit::Exited);
                    if sup.sys_mut().exit(*pid, exit) && told {
                        told_deaths += 1;
                    }
                }
            }
            Op::SetStrategy(s) => sup.set_strategy([Otp::OneForOne, Otp::OneForAll, Otp::RestForOne][s as usize]),
            Op::SetIntensity => sup.set_intensity(3, ms(2_000)),
            Op::Tick(d) => {
                now += ms(d);
                sup.tick(now);
            }
            Op::ToDeadline => {
                if let Some(t) = sup.next_deadline() {
                    now = now.max(t);
                }
                sup.tick(now);
            }
        }
        sup.drain_events().for_each(drop);
        prop_assert!(
            sup.sys().owed_respawns().is_empty(),
            "step {step} ({op:?}): told at once, not spawned in the tick that reaped it: {:?}",
            sup.sys().owed_respawns()
        );
    }
    Ok(told_deaths)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_death_told_at_once_is_spawned_again_in_the_tick_that_reaps_it(ops in prop::collection::vec(op(), 80)) {
        run(&ops)?;
    }
}

/// The property above is not vacuous: its generator does produce deaths
/// told at once (dozens over a fixed sample of runs).
#[test]
fn the_random_runs_reach_deaths_told_at_once() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[9; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let mut told = 0;
    for _ in 0..200 {
        let ops = prop::collection::vec(op(), 80).new_tree(&mut runner).unwrap().current();
        told += run(&ops).unwrap();
    }
    assert!(told >= 50, "only {told} deaths told at once in 200 runs");
}

/// One process started with `spec`, ticked once (the answer is given
/// before each poll).
fn started(spec: ProcessSpec) -> (Supervisor<FakeSys>, Instant, procsup::Pid) {
    let now = Instant::now();
    let mut sup = Supervisor::with_sys(FakeSys::new()).with_seed(1);
    let name = spec.get_name().to_owned();
    sup.add_process(spec).unwrap();
    sup.start_process(&name, now).unwrap();
    sup.tick(now);
    let pid = sup.status(&name).unwrap().pid.unwrap();
    (sup, now, pid)
}

#[test]
fn a_plain_always_restart_with_no_delay_is_told_at_once_and_kept() {
    let (mut sup, now, pid) = started(ProcessSpec::new("web", "server").backoff(Backoff::none()));
    assert_eq!(sup.sys().restarts_at_once(), [pid]);
    // Its crash loop: every successor is told too, and each is spawned in
    // the tick that reaps the one before.
    let mut pid = pid;
    for _ in 0..5 {
        assert!(sup.sys_mut().exit(pid, Exit::Exited(1)));
        sup.tick(now);
        assert!(sup.sys().owed_respawns().is_empty());
        let next = sup.status("web").unwrap().pid.unwrap();
        assert_ne!(next, pid);
        sup.tick(now);
        assert_eq!(sup.sys().restarts_at_once(), [next]);
        pid = next;
    }
}

#[test]
fn immediate_after_running_alone_is_not_enough() {
    // Running, it would restart at once; but a death in its start grace
    // waits 100 ms: the answer cannot know which it will be.
    let b = Backoff::exponential(ms(100)).immediate_after_running(true);
    let (sup, ..) = started(ProcessSpec::new("web", "server").backoff(b).start_grace(ms(500)));
    assert!(sup.sys().restarts_at_once().is_empty());
}

#[test]
fn what_is_never_told_at_once() {
    let plain = || ProcessSpec::new("web", "server").backoff(Backoff::none());
    let cases = [
        ("on-failure: the exit decides", plain().restart(RestartPolicy::OnFailure)),
        ("a delay", plain().backoff(Backoff::fixed(ms(1)))),
        ("a floor", plain().backoff(Backoff::none().floor(ms(1)))),
        ("give up after one failure", plain().give_up_after(1).start_grace(ms(500))),
        ("a window of one restart", plain().max_restarts_within(0, ms(1_000))),
        ("a dependency", plain().depends_on("web", Condition::Started)),
    ];
    for (why, spec) in cases {
        let now = Instant::now();
        let mut sup = Supervisor::with_sys(FakeSys::new());
        sup.add_process(spec).ok();
        let _ = sup.start_process("web", now);
        sup.tick(now);
        assert!(sup.sys().restarts_at_once().is_empty(), "{why}");
    }
}

#[test]
fn a_stop_a_strategy_or_an_update_takes_it_back_before_the_next_poll() {
    let spec = || ProcessSpec::new("web", "server").backoff(Backoff::none());
    // A stop.
    let (mut sup, now, pid) = started(spec());
    sup.stop_process("web", now).unwrap();
    assert!(sup.sys_mut().exit(pid, Exit::Signaled(15)));
    sup.tick(now);
    assert_eq!(sup.status("web").unwrap().state, State::Stopped);
    assert!(sup.sys().owed_respawns().is_empty());
    // A group strategy (its intensity could give up).
    let (mut sup, now, pid) = started(spec());
    sup.set_strategy(Otp::OneForAll);
    sup.tick(now);
    assert!(sup.sys().restarts_at_once().is_empty());
    sup.set_strategy(Otp::OneForOne);
    sup.tick(now);
    assert_eq!(sup.sys().restarts_at_once(), [pid]);
    // An update: the next child is another spec's.
    sup.update_spec("web", spec().arg("--v2").start_grace(ms(500)), now).unwrap();
    sup.tick(now);
    assert!(!sup.sys().restarts_at_once().contains(&pid));
    // A shutdown.
    let (mut sup, now, _) = started(spec());
    sup.shutdown(now);
    sup.tick(now);
    assert!(sup.sys().restarts_at_once().is_empty());
}

#[test]
fn give_up_after_is_told_until_the_death_that_would_give_up() {
    // Exits in its start grace count: with give_up_after(3), the first two
    // deaths restart, the third gives up.
    let spec = ProcessSpec::new("web", "server").backoff(Backoff::none()).give_up_after(3).start_grace(ms(500));
    let (mut sup, now, mut pid) = started(spec);
    for streak in 0..3 {
        let told = sup.sys().restarts_at_once().contains(&pid);
        assert_eq!(told, streak < 2, "streak {streak}");
        assert!(sup.sys_mut().exit(pid, Exit::Exited(1)));
        sup.tick(now);
        assert!(sup.sys().owed_respawns().is_empty());
        match sup.status("web").unwrap().pid {
            Some(next) => pid = next,
            None => assert_eq!(sup.status("web").unwrap().state, State::Fatal),
        }
        sup.tick(now);
    }
}

#[test]
fn a_replacement_in_a_roll_is_not_told_until_its_roll_is_done() {
    // The replacement starts beside the old child; its death before it is
    // ready aborts the roll (the old one keeps serving): no restart.
    let spec = ProcessSpec::new("web", "server").backoff(Backoff::none()).start_grace(ms(400));
    let (mut sup, now, old) = started(spec);
    let now = now + ms(500);
    sup.tick(now);
    assert_eq!(sup.sys().restarts_at_once(), [old]);
    sup.rolling_restart(Some("web"), now).unwrap();
    sup.tick(now);
    let new = sup.status("web").unwrap().replacement_pid.expect("a replacement starts");
    assert!(sup.sys().restarts_at_once().is_empty(), "{:?}", sup.sys().restarts_at_once());
    assert!(sup.sys_mut().exit(new, Exit::Exited(1)));
    sup.tick(now);
    assert!(sup.sys().owed_respawns().is_empty());
    assert_eq!(sup.status("web").unwrap().pid, Some(old), "the old child keeps serving");
    // The roll is over: the old child is told again.
    sup.tick(now);
    assert_eq!(sup.sys().restarts_at_once(), [old]);
}
