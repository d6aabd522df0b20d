//! Model-based test: a deliberately simple reference model of the state
//! machine runs side by side with the real `Supervisor` on random operation
//! sequences — spawn failures, failed signals (`ESRCH`, `EPERM`),
//! interrupted waits (`EINTR`), lost exit statuses (`ECHILD`), SIGKILLs,
//! clock jumps of up to three hours and clocks going backwards — and after
//! every step the two must agree on every state, counter and deadline.
//!
//! CI runs 200 cases of 60 steps (12,000 steps); `PROCSUP_MODEL_CASES`
//! runs more.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use proptest::prelude::*;

use procsup::testing::FakeSys;
use procsup::{Backoff, Exit, ProcessSpec, RestartPolicy, State, Supervisor};

const NAMES: [&str; 3] = ["a", "b", "c"];

/// The knobs the model covers.
#[derive(Clone, Copy, Debug)]
struct Knobs {
    policy: RestartPolicy,
    delay: Duration,
    grace: Duration,
    stop_timeout: Duration,
    give_up: Option<u32>,
}

fn knobs(k: u8) -> Knobs {
    let ms = |m: u64| Duration::from_millis(m);
    Knobs {
        policy: [RestartPolicy::Always, RestartPolicy::OnFailure, RestartPolicy::Never][(k % 3) as usize],
        delay: [ms(0), ms(500), ms(2_000)][(k / 3 % 3) as usize],
        grace: [ms(0), ms(700)][(k / 9 % 2) as usize],
        stop_timeout: [ms(0), ms(1_000)][(k / 18 % 2) as usize],
        give_up: [None, Some(1), Some(3)][(k / 36 % 3) as usize],
    }
}

fn spec(name: &str, k: Knobs) -> ProcessSpec {
    let mut s = ProcessSpec::new(name, "prog")
        .restart(k.policy)
        .backoff(Backoff::fixed(k.delay))
        .start_grace(k.grace)
        .stop_timeout(k.stop_timeout);
    if let Some(n) = k.give_up {
        s = s.give_up_after(n);
    }
    s
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum After {
    Policy,
    Restart,
    Remove,
}

/// One process in the model.
#[derive(Clone, Debug)]
struct M {
    name: &'static str,
    k: Knobs,
    state: State,
    alive: bool,
    started_at: Option<Instant>,
    deadline: Option<Instant>,
    restarts: u32,
    exits: u32,
    streak: u32,
    manual: bool,
    after: After,
    added: u64,
    start_seq: u64,
    last_exit: Option<Exit>,
}

/// The reference model: slots like the supervisor's, FIFO pending exits
/// like FakeSys, a queue of scripted spawn failures.
#[derive(Default)]
struct Model {
    slots: Vec<Option<M>>,
    free: Vec<usize>,
    seq: u64,
    last: Option<Instant>,
    pending: VecDeque<(usize, Exit)>,
    fail: VecDeque<Errno>,
    /// Scripted failures of the next signals (`ESRCH`, `EPERM`).
    signal_faults: VecDeque<Errno>,
    /// Polls still to come back empty (`EINTR`).
    interrupted: u32,
}

impl Model {
    fn id(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.as_ref().is_some_and(|m| m.name == name))
    }

    fn observe(&mut self, now: Instant) -> Instant {
        let now = self.last.map_or(now, |l| l.max(now));
        self.last = Some(now);
        now
    }

    fn add(&mut self, name: &'static str, k: Knobs) {
        if self.id(name).is_some() {
            return;
        }
        self.seq += 1;
        let m = M {
            name,
            k,
            state: State::Stopped,
            alive: false,
            started_at: None,
            deadline: None,
            restarts: 0,
            exits: 0,
            streak: 0,
            manual: false,
            after: After::Policy,
            added: self.seq,
            start_seq: 0,
            last_exit: None,
        };
        match self.free.pop() {
            Some(id) => self.slots[id] = Some(m),
            None => self.slots.push(Some(m)),
        }
    }

    fn m(&mut self, id: usize) -> &mut M {
        self.slots[id].as_mut().unwrap()
    }

    fn spawn(&mut self, id: usize, now: Instant) {
        self.seq += 1;
        let seq = self.seq;
        let failed = self.fail.pop_front();
        let m = self.m(id);
        m.deadline = None;
        m.after = After::Policy;
        if failed.is_some() {
            m.alive = false;
            if m.k.policy == RestartPolicy::Never {
                m.state = State::Fatal;
            } else {
                self.schedule(id, now, false);
            }
            return;
        }
        m.alive = true;
        m.started_at = Some(now);
        m.start_seq = seq;
        if m.k.grace.is_zero() {
            m.state = State::Running;
            m.streak = 0;
        } else {
            m.state = State::Starting;
            m.deadline = Some(now + m.k.grace);
        }
    }

    fn schedule(&mut self, id: usize, now: Instant, after_running: bool) {
        let m = self.m(id);
        m.streak = if after_running { 0 } else { m.streak + 1 };
        if m.k.give_up.is_some_and(|n| m.streak >= n) {
            m.state = State::Fatal;
            m.deadline = None;
            return;
        }
        m.state = State::Backoff;
        m.deadline = Some(now + m.k.delay);
    }

    fn start(&mut self, id: usize, now: Instant) {
        let m = self.m(id);
        match m.state {
            State::Starting | State::Running => {}
            State::Stopping => {
                m.after = After::Restart;
                m.manual = false;
            }
            _ => {
                m.streak = 0;
                m.manual = false;
                self.spawn(id, now);
            }
        }
    }

    fn stop(&mut self, id: usize, now: Instant) {
        let m = self.m(id);
        m.manual = true;
        match m.state {
            State::Starting | State::Running => {
                m.after = After::Policy;
                m.state = State::Stopping;
                m.deadline = Some(now + m.k.stop_timeout);
                // The stop signal: a scripted failure changes nothing here.
                self.signal_faults.pop_front();
            }
            State::Stopping => m.after = After::Policy,
            State::Backoff => {
                m.state = State::Stopped;
                m.deadline = None;
            }
            _ => {}
        }
    }

    fn restart(&mut self, id: usize, now: Instant) {
        if self.m(id).state.has_child() {
            self.stop(id, now);
            self.m(id).after = After::Restart;
        } else {
            self.start(id, now);
        }
    }

    fn remove(&mut self, id: usize, now: Instant) {
        if self.m(id).state.has_child() {
            self.stop(id, now);
            self.m(id).after = After::Remove;
        } else {
            self.slots[id] = None;
            self.free.push(id);
        }
    }

    fn exit(&mut self, id: usize, exit: Exit) {
        if self.m(id).alive && !self.pending.iter().any(|(p, _)| *p == id) {
            self.pending.push_back((id, exit));
        }
    }

    fn settle(&mut self, id: usize, now: Instant) {
        let m = self.m(id);
        m.deadline = None;
        let lived = m.started_at.map(|t| now.saturating_duration_since(t));
        let was_running = m.state == State::Running || lived.is_some_and(|u| u >= m.k.grace);
        match m.after {
            After::Remove => {
                self.slots[id] = None;
                self.free.push(id);
            }
            After::Restart => {
                m.streak = 0;
                m.manual = false;
                m.restarts += 1;
                self.spawn(id, now);
            }
            After::Policy if m.manual => {
                m.state = State::Stopped;
            }
            After::Policy => {
                let ok = matches!(m.last_exit, Some(Exit::Exited(0)));
                let again = match m.k.policy {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => !ok,
                    RestartPolicy::Never => false,
                };
                if again {
                    self.schedule(id, now, was_running);
                } else {
                    m.state = State::Exited;
                }
            }
        }
    }

    /// Slots in `state` due at `now`, by (deadline, slot).
    fn due(&self, now: Instant, state: State) -> Vec<usize> {
        let mut v: Vec<(Instant, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|m| (i, m)))
            .filter(|(_, m)| m.state == state && m.deadline.is_some_and(|d| d <= now))
            .map(|(i, m)| (m.deadline.unwrap(), i))
            .collect();
        v.sort();
        v.into_iter().map(|(_, i)| i).collect()
    }

    fn tick(&mut self, now: Instant) {
        let now = self.observe(now);
        let interrupted = self.interrupted > 0;
        self.interrupted = self.interrupted.saturating_sub(1);
        while let Some((id, exit)) = if interrupted { None } else { self.pending.pop_front() } {
            let m = self.m(id);
            m.alive = false;
            m.exits += 1;
            m.last_exit = Some(exit);
            self.settle(id, now);
        }
        for id in self.due(now, State::Stopping) {
            self.m(id).deadline = None;
            // FakeSys ends a child at once on a SIGKILL that succeeds;
            // reaped next tick. A failed one (ESRCH, EPERM) ends nothing.
            if self.signal_faults.pop_front().is_none() {
                self.exit(id, Exit::Signaled(9));
            }
        }
        for id in self.due(now, State::Starting) {
            let m = self.m(id);
            m.deadline = None;
            m.state = State::Running;
            m.streak = 0;
        }
        for id in self.due(now, State::Backoff) {
            self.m(id).restarts += 1;
            self.spawn(id, now);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.slots.iter().flatten().filter_map(|m| m.deadline).min()
    }
}

#[derive(Clone, Debug)]
enum Op {
    Add(usize, u8),
    Remove(usize),
    Start(usize),
    Stop(usize),
    Restart(usize),
    StartAll,
    StopAll,
    Exit(usize, i32),
    Kill(usize),
    FailSpawn,
    FailSignal(bool),
    InterruptPoll,
    LoseExit(usize),
    Advance(u64),
    ToDeadline,
    Backwards(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0..NAMES.len();
    prop_oneof![
        (n.clone(), any::<u8>()).prop_map(|(i, k)| Op::Add(i, k)),
        n.clone().prop_map(Op::Remove),
        n.clone().prop_map(Op::Start),
        n.clone().prop_map(Op::Stop),
        n.clone().prop_map(Op::Restart),
        Just(Op::StartAll),
        Just(Op::StopAll),
        (n.clone(), 0..2i32).prop_map(|(i, c)| Op::Exit(i, c)),
        n.prop_map(Op::Kill),
        Just(Op::FailSpawn),
        any::<bool>().prop_map(Op::FailSignal),
        Just(Op::InterruptPoll),
        (0..NAMES.len()).prop_map(Op::LoseExit),
        prop_oneof![0..3_000u64, 0..10_800_000u64].prop_map(Op::Advance),
        Just(Op::ToDeadline),
        (0..5_000u64).prop_map(Op::Backwards),
    ]
}

fn compare(sup: &Supervisor<FakeSys>, model: &Model, step: usize) -> Result<(), TestCaseError> {
    for name in NAMES {
        let real = sup.status(name).ok();
        let m = model.id(name).map(|id| model.slots[id].as_ref().unwrap());
        prop_assert_eq!(real.is_some(), m.is_some(), "step {}: {} exists?", step, name);
        let (Some(r), Some(m)) = (real, m) else { continue };
        prop_assert_eq!(r.state, m.state, "step {}: state of {}", step, name);
        prop_assert_eq!(r.pid.is_some(), m.state.has_child(), "step {}: pid of {}", step, name);
        prop_assert_eq!(r.restart_count, m.restarts, "step {}: restarts of {}", step, name);
        prop_assert_eq!(r.exit_count, m.exits, "step {}: exits of {}", step, name);
        prop_assert_eq!(r.failure_streak, m.streak, "step {}: streak of {}", step, name);
        prop_assert_eq!(r.manual_stop, m.manual, "step {}: manual stop of {}", step, name);
        prop_assert_eq!(r.last_exit, m.last_exit, "step {}: last exit of {}", step, name);
        let retry = if m.state == State::Backoff { m.deadline } else { None };
        prop_assert_eq!(r.next_retry_at, retry, "step {}: retry of {}", step, name);
    }
    prop_assert_eq!(sup.next_deadline(), model.next_deadline(), "step {}: next deadline", step);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROCSUP_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn supervisor_agrees_with_the_model(ops in prop::collection::vec(op(), 60)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut sup = Supervisor::with_sys(FakeSys::new()).with_seed(0);
        let mut model = Model::default();
        for (step, op) in ops.iter().enumerate() {
            match op {
                Op::Add(i, k) => {
                    let k = knobs(*k);
                    let _ = sup.add_process(spec(NAMES[*i], k));
                    model.add(NAMES[*i], k);
                }
                Op::Remove(i) => {
                    let _ = sup.remove_process(NAMES[*i], now);
                    let n = model.observe(now);
                    if let Some(id) = model.id(NAMES[*i]) { model.remove(id, n); }
                }
                Op::Start(i) => {
                    let _ = sup.start_process(NAMES[*i], now);
                    let n = model.observe(now);
                    if let Some(id) = model.id(NAMES[*i]) { model.start(id, n); }
                }
                Op::Stop(i) => {
                    let _ = sup.stop_process(NAMES[*i], now);
                    let n = model.observe(now);
                    if let Some(id) = model.id(NAMES[*i]) { model.stop(id, n); }
                }
                Op::Restart(i) => {
                    let _ = sup.restart_process(NAMES[*i], now);
                    let n = model.observe(now);
                    if let Some(id) = model.id(NAMES[*i]) { model.restart(id, n); }
                }
                Op::StartAll => {
                    sup.start_all(now).unwrap();
                    let n = model.observe(now);
                    let mut ids: Vec<(u64, usize)> = model.slots.iter().enumerate()
                        .filter_map(|(i, s)| s.as_ref().map(|m| (m.added, i))).collect();
                    ids.sort();
                    for (_, id) in ids { model.start(id, n); }
                }
                Op::StopAll => {
                    sup.stop_all(now);
                    let n = model.observe(now);
                    let mut ids: Vec<(u64, usize)> = model.slots.iter().enumerate()
                        .filter_map(|(i, s)| s.as_ref().map(|m| (m.start_seq, i))).collect();
                    ids.sort();
                    for (_, id) in ids.into_iter().rev() { model.stop(id, n); }
                }
                Op::Exit(i, code) => {
                    if let Some(pid) = sup.status(NAMES[*i]).ok().and_then(|s| s.pid) {
                        if sup.sys_mut().exit(pid, Exit::Exited(*code)) {
                            let id = model.id(NAMES[*i]).unwrap();
                            model.exit(id, Exit::Exited(*code));
                        }
                    }
                }
                Op::Kill(i) => {
                    if let Some(pid) = sup.status(NAMES[*i]).ok().and_then(|s| s.pid) {
                        if sup.sys_mut().exit(pid, Exit::Signaled(9)) {
                            let id = model.id(NAMES[*i]).unwrap();
                            model.exit(id, Exit::Signaled(9));
                        }
                    }
                }
                Op::FailSpawn => {
                    sup.sys_mut().fail_next_spawn(Errno::EAGAIN);
                    model.fail.push_back(Errno::EAGAIN);
                }
                Op::FailSignal(eperm) => {
                    let errno = if *eperm { Errno::EPERM } else { Errno::ESRCH };
                    sup.sys_mut().fail_next_signal(errno);
                    model.signal_faults.push_back(errno);
                }
                Op::InterruptPoll => {
                    sup.sys_mut().interrupt_polls(1);
                    model.interrupted += 1;
                }
                Op::LoseExit(i) => {
                    if let Some(pid) = sup.status(NAMES[*i]).ok().and_then(|s| s.pid) {
                        if sup.sys_mut().lose_exit(pid) {
                            let id = model.id(NAMES[*i]).unwrap();
                            model.exit(id, Exit::Unknown);
                        }
                    }
                }
                Op::Advance(ms) => {
                    now += Duration::from_millis(*ms);
                    sup.tick(now);
                    model.tick(now);
                }
                Op::ToDeadline => {
                    if let Some(t) = sup.next_deadline() { now = now.max(t); }
                    sup.tick(now);
                    model.tick(now);
                }
                Op::Backwards(ms) => {
                    let past = now.checked_sub(Duration::from_millis(*ms)).unwrap_or(now);
                    sup.tick(past);
                    model.tick(past);
                }
            }
            let _: Vec<_> = sup.drain_events().collect();
            compare(&sup, &model, step)?;
        }
    }
}
