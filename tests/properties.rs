//! Property test: random sequences of adds, starts, stops, restarts,
//! removes, exits, spawn failures, output and clock moves keep the
//! supervisor's invariants.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use proptest::prelude::*;

use procsup::testing::{FakeSys, VirtualClock};
use procsup::{
    Backoff, Condition, Event, Exit, Output, ProcessSpec, ProcessStatus, RestartPolicy, State, Stream, Supervisor,
};

/// Plain processes and the instances of group `g` (added by `AddGroup`).
const NAMES: [&str; 5] = ["a", "b", "c", "g:0", "g:1"];
const ROLL_TARGETS: [&str; 3] = ["a", "g", "g:1"];

#[derive(Clone, Debug)]
enum Op {
    Add(usize, u8),
    Remove(usize),
    Start(usize),
    Stop(usize),
    Restart(usize),
    Spawn(usize),
    StartAll,
    StopAll,
    Exit(usize, i32),
    Kill(usize),
    FailSpawn(u8),
    Output(usize),
    Advance(u32),
    ToDeadline,
    Tick,
    Backwards(u32),
    Roll(Option<usize>),
    AddGroup(u8),
    /// The leader exits, the rest of its tree lives on.
    LeaveTree(usize, i32),
    /// A draining tree (current or retiring child) empties.
    TreeEmpty(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0..NAMES.len();
    prop_oneof![
        (n.clone(), any::<u8>()).prop_map(|(i, k)| Op::Add(i, k)),
        n.clone().prop_map(Op::Remove),
        n.clone().prop_map(Op::Start),
        n.clone().prop_map(Op::Stop),
        n.clone().prop_map(Op::Restart),
        n.clone().prop_map(Op::Spawn),
        Just(Op::StartAll),
        Just(Op::StopAll),
        (n.clone(), 0..3i32).prop_map(|(i, c)| Op::Exit(i, c)),
        n.clone().prop_map(Op::Kill),
        any::<u8>().prop_map(Op::FailSpawn),
        n.clone().prop_map(Op::Output),
        (0..20_000u32).prop_map(Op::Advance),
        Just(Op::ToDeadline),
        Just(Op::Tick),
        (0..5_000u32).prop_map(Op::Backwards),
        prop::option::of(0..ROLL_TARGETS.len()).prop_map(Op::Roll),
        any::<u8>().prop_map(Op::AddGroup),
        (n.clone(), 0..3i32).prop_map(|(i, c)| Op::LeaveTree(i, c)),
        n.prop_map(Op::TreeEmpty),
    ]
}

/// A spec whose knobs vary with `k`.
fn spec(name: &str, k: u8) -> ProcessSpec {
    let ms = |m: u64| Duration::from_millis(m);
    let backoff = match k % 4 {
        0 => Backoff::fixed(ms(500)),
        1 => Backoff::exponential(ms(100)).max(ms(3_000)),
        2 => Backoff::linear(ms(200)).immediate_after_running(true),
        _ => Backoff::none(),
    };
    let policy = [RestartPolicy::Always, RestartPolicy::OnFailure, RestartPolicy::Never][(k / 4 % 3) as usize];
    let mut s = ProcessSpec::new(name, "prog")
        .backoff(backoff)
        .restart(policy)
        .start_grace(ms(u64::from(k % 3) * 700))
        .stop_timeout(ms(u64::from(k % 5) * 1_000))
        .stdout(if k % 2 == 0 { Output::Capture } else { Output::Inherit });
    if k % 7 < 3 {
        s = s.give_up_after(u32::from(k % 7) + 1);
    }
    if k % 11 == 0 {
        s = s.max_restarts_within(2, ms(2_000));
    }
    if k % 13 == 0 {
        s = s.fatal_exec_errors(true);
    }
    if name != "a" && k % 17 < 6 {
        // Needs "a": refused while "a" is not supervised.
        s = s.depends_on("a", if k % 17 < 3 { Condition::Ready } else { Condition::Started });
    }
    s
}

struct World {
    sup: Supervisor<FakeSys>,
    clock: VirtualClock,
    /// Names stopped by the host and not started since.
    held: HashSet<String>,
    /// `start_all` ran and no `stop_all` since: an add is a start.
    started: bool,
}

impl World {
    fn statuses(&self) -> Vec<ProcessStatus> {
        self.sup.statuses()
    }

    fn apply(&mut self, op: &Op) {
        let now = self.clock.now();
        let name = |i: &usize| NAMES[*i];
        match op {
            Op::Add(i, k) => {
                if self.sup.add_process(spec(name(i), *k)).is_ok() && self.started {
                    self.held.remove(name(i));
                }
            }
            Op::Remove(i) => {
                // Refused while others depend on it: then nothing changed.
                if self.sup.remove_process(name(i), now).is_ok() {
                    self.held.insert(name(i).to_owned());
                }
            }
            Op::Start(i) => {
                if self.sup.start_process(name(i), now).is_ok() {
                    self.held.remove(name(i));
                }
            }
            Op::Stop(i) => {
                if self.sup.stop_process(name(i), now).is_ok() {
                    self.held.insert(name(i).to_owned());
                }
            }
            Op::Restart(i) => {
                if self.sup.restart_process(name(i), now).is_ok() {
                    self.held.remove(name(i));
                }
            }
            Op::Spawn(i) => {
                if self.sup.status(name(i)).is_ok() {
                    self.held.remove(name(i));
                }
                let _ = self.sup.spawn_process(name(i), now);
            }
            Op::StartAll => {
                let _ = self.sup.start_all(now);
                self.held.clear();
                self.started = true;
            }
            Op::StopAll => {
                self.sup.stop_all(now);
                self.started = false;
                self.held.extend(NAMES.iter().map(|n| n.to_string()));
            }
            Op::Exit(i, code) => {
                // A replacement starting in a roll exits first (the roll's
                // abort path); Kill below hits the serving child.
                if let Some(pid) = self.sup.status(name(i)).ok().and_then(|s| s.replacement_pid.or(s.pid)) {
                    let _ = self.sup.sys_mut().exit(pid, Exit::Exited(*code));
                }
            }
            Op::Kill(i) => {
                if let Some(pid) = self.sup.status(name(i)).ok().and_then(|s| s.pid) {
                    let _ = self.sup.sys_mut().exit(pid, Exit::Signaled(9));
                }
            }
            Op::FailSpawn(e) => {
                let errno = [Errno::EAGAIN, Errno::ENOMEM, Errno::ENOENT, Errno::EACCES][(*e % 4) as usize];
                self.sup.sys_mut().fail_next_spawn(errno);
            }
            Op::Output(i) => {
                if let Some(pid) = self.sup.status(name(i)).ok().and_then(|s| s.pid) {
                    let _ = self.sup.sys_mut().output(pid, Stream::Stdout, b"x\ny");
                }
            }
            Op::Advance(ms) => {
                self.clock.advance(Duration::from_millis(u64::from(*ms)));
                self.sup.tick(self.clock.now());
            }
            Op::ToDeadline => {
                if let Some(t) = self.sup.next_deadline() {
                    self.clock.set(t);
                }
                self.sup.tick(self.clock.now());
            }
            Op::Tick => self.sup.tick(now),
            Op::Roll(target) => {
                let _ = self.sup.rolling_restart(target.map(|i| ROLL_TARGETS[i]), now);
            }
            Op::AddGroup(k) => {
                if self.sup.add_process(spec("g", *k).instances(2)).is_ok() && self.started {
                    self.held.retain(|n| !n.starts_with("g:"));
                }
            }
            Op::LeaveTree(i, code) => {
                let st = self.sup.status(name(i)).ok();
                if let Some(pid) = st.and_then(|s| s.replacement_pid.or(s.pid)) {
                    let _ = self.sup.sys_mut().exit_leaving_tree(pid, Exit::Exited(*code));
                }
            }
            Op::TreeEmpty(i) => {
                let st = self.sup.status(name(i)).ok();
                for pid in st.into_iter().flat_map(|s| [s.pid, s.retiring_pid, s.replacement_pid]).flatten() {
                    let _ = self.sup.sys_mut().tree_empty(pid);
                }
            }
            Op::Backwards(ms) => {
                let past = now.checked_sub(Duration::from_millis(u64::from(*ms))).unwrap_or(now);
                self.sup.tick(past);
            }
        }
    }

    fn check(&mut self, events: &[Event]) -> Result<(), TestCaseError> {
        let statuses = self.statuses();
        let mut pids = HashMap::new();
        for st in &statuses {
            prop_assert_eq!(st.state.has_child(), st.pid.is_some(), "{:?}", st);
            for pid in st.pid.into_iter().chain(st.retiring_pid).chain(st.replacement_pid) {
                prop_assert!(pids.insert(pid, st.name.clone()).is_none(), "pid {} twice", pid);
            }
            prop_assert_eq!(st.next_retry_at.is_some(), st.state == State::Backoff, "{:?}", st);
        }
        // No orphan: every live fake child, and every tree still draining,
        // belongs to a supervised process.
        for pid in self.sup.sys().live_pids().into_iter().chain(self.sup.sys().draining_pids()) {
            prop_assert!(pids.contains_key(&pid), "live child or tree {} belongs to nobody", pid);
        }
        for st in &statuses {
            // Draining means: Stopping, with the leader's tree still there.
            if st.draining {
                prop_assert_eq!(st.state, State::Stopping, "{:?}", st);
            }
        }
        for e in events {
            if let Event::Spawned { name, .. } = e {
                prop_assert!(!self.held.contains(&**name), "{} respawned after a stop", name);
            }
        }
        Ok(())
    }

    /// Ticking before the next deadline changes nothing; at it, something.
    fn check_deadline(&mut self) -> Result<(), TestCaseError> {
        let now = self.clock.now();
        // Reap whatever the OS layer holds first (a SIGKILL sent by one
        // tick is an exit for the next), bounded so a livelock fails.
        let mut quiet = false;
        for _ in 0..10 {
            self.sup.tick(now);
            if self.sup.drain_events().count() == 0 {
                quiet = true;
                break;
            }
        }
        prop_assert!(quiet, "ticks at one instant never settle");
        let before = self.statuses();
        match self.sup.next_deadline() {
            Some(deadline) if deadline > now => {
                let mid = now + (deadline - now) / 2;
                self.sup.tick(mid);
                prop_assert_eq!(self.sup.drain_events().count(), 0);
                prop_assert_eq!(&self.statuses(), &before);
                self.sup.tick(deadline);
                let changed = self.sup.drain_events().count() > 0 || self.statuses() != before;
                prop_assert!(changed, "nothing was due at next_deadline");
                self.clock.set(deadline);
            }
            None => {
                self.sup.tick(now + Duration::from_secs(3600));
                prop_assert_eq!(self.sup.drain_events().count(), 0);
                prop_assert_eq!(&self.statuses(), &before);
            }
            _ => {}
        }
        Ok(())
    }
}

fn cases() -> u32 {
    std::env::var("PROCSUP_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn invariants_hold(ops in prop::collection::vec(op(), 1..80), seed in any::<u64>()) {
        let mut w = World {
            sup: Supervisor::with_sys(FakeSys::new()).with_seed(seed),
            clock: VirtualClock::new(),
            held: HashSet::new(),
            started: false,
        };
        for op in &ops {
            w.apply(op);
            let events: Vec<Event> = w.sup.drain_events().collect();
            w.check(&events)?;
            w.check_deadline()?;
        }
        // Finally, a shutdown always ends idle with no child left.
        w.sup.shutdown(w.clock.now());
        for _ in 0..1000 {
            if w.sup.is_idle() {
                break;
            }
            let t = w.sup.next_deadline().unwrap_or(w.clock.now()).max(w.clock.now());
            w.clock.set(t);
            w.sup.tick(t);
        }
        prop_assert!(w.sup.is_idle());
        prop_assert!(w.sup.sys().live_pids().is_empty());
        prop_assert!(w.sup.sys().draining_pids().is_empty(), "a tree outlived the shutdown");
    }
}

#[test]
fn instant_arithmetic_never_overflows_with_max_durations() {
    let max = procsup::MAX_DURATION;
    let mut sup = Supervisor::with_sys(FakeSys::new());
    sup.add_process(ProcessSpec::new("a", "p").start_grace(max).stop_timeout(max).backoff(Backoff::fixed(max)))
        .unwrap();
    let now = Instant::now();
    sup.start_process("a", now).unwrap();
    sup.stop_process("a", now).unwrap();
    assert_eq!(sup.next_deadline(), Some(now + max));
}
