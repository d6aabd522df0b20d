//! A FakeSys supervisor and a virtual clock, with times in seconds like the
//! systems whose tests we port.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use procsup::testing::{FakeSys, VirtualClock};
use procsup::{Event, Exit, Pid, ProcessSpec, State, Supervisor};

pub struct Harness {
    pub sup: Supervisor<FakeSys>,
    pub clock: VirtualClock,
    /// Every event drained so far, in order.
    pub log: Vec<Event>,
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

impl Harness {
    pub fn new() -> Self {
        Self::seeded(0)
    }

    pub fn seeded(seed: u64) -> Self {
        Harness {
            sup: Supervisor::with_sys(FakeSys::new()).with_seed(seed),
            clock: VirtualClock::new(),
            log: Vec::new(),
        }
    }

    pub fn with(specs: impl IntoIterator<Item = ProcessSpec>) -> Self {
        let mut h = Self::new();
        for s in specs {
            h.sup.add_process(s).expect("valid spec");
        }
        h
    }

    /// The group `spec` (with `n` instances) started, every instance
    /// `Running` at t = 1 s (its start grace must be at most 1 s).
    pub fn running_instances(spec: ProcessSpec, n: u32) -> Self {
        let group = spec.get_name().to_owned();
        let mut h = Harness::with([spec]);
        h.start_all();
        h.advance(1.0);
        h.tick();
        for i in 0..n {
            assert_eq!(h.state(&format!("{group}:{i}")), State::Running);
        }
        h
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    pub fn at(&self, s: f64) -> Instant {
        self.clock.at(s)
    }

    /// Seconds since 0 of an instant.
    pub fn secs_of(&self, t: Instant) -> f64 {
        self.clock.secs(t)
    }

    pub fn advance(&mut self, s: f64) {
        self.clock.advance(secs(s));
    }

    pub fn advance_to(&mut self, s: f64) {
        let t = self.clock.at(s);
        self.clock.set(t);
    }

    pub fn tick(&mut self) {
        let now = self.now();
        self.sup.tick(now);
        self.drain();
    }

    /// Advance in steps to the next deadline until `s`, ticking at each,
    /// like a host loop would (bounded, so a livelock fails).
    pub fn run_until(&mut self, s: f64) {
        let end = self.clock.at(s);
        for _ in 0..10_000 {
            self.tick();
            match self.sup.next_deadline() {
                Some(t) if t <= end => self.clock.set(t),
                _ => {
                    self.clock.set(end);
                    self.tick();
                    return;
                }
            }
        }
        panic!("no quiescence before {s}s: livelock?");
    }

    pub fn drain(&mut self) -> usize {
        let before = self.log.len();
        self.log.extend(self.sup.drain_events());
        self.log.len() - before
    }

    pub fn start(&mut self, name: &str) {
        let now = self.now();
        self.sup.start_process(name, now).expect("known name");
        self.drain();
    }

    pub fn start_all(&mut self) {
        let now = self.now();
        self.sup.start_all(now).expect("not shutting down");
        self.drain();
    }

    pub fn stop(&mut self, name: &str) {
        let now = self.now();
        self.sup.stop_process(name, now).expect("known name");
        self.drain();
    }

    pub fn pid(&self, name: &str) -> Pid {
        self.sup.status(name).unwrap().pid.unwrap_or_else(|| panic!("{name} has no pid"))
    }

    pub fn state(&self, name: &str) -> State {
        self.sup.status(name).unwrap().state
    }

    /// The child of `name` ends now (reaped at the next tick).
    pub fn exit(&mut self, name: &str, exit: Exit) {
        let pid = self.pid(name);
        assert!(self.sup.sys_mut().exit(pid, exit), "{name} (pid {pid}) was not alive");
    }

    /// Restart delays announced so far for `name`, in seconds.
    pub fn delays(&self, name: &str) -> Vec<f64> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Event::Backoff { name: n, delay, .. } if &**n == name => Some(delay.as_secs_f64()),
                _ => None,
            })
            .collect()
    }

    /// Spawn times of `name`, in seconds.
    pub fn spawn_times(&self) -> usize {
        self.sup.sys().spawns().len()
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.log.iter().map(Event::kind).collect()
    }

    pub fn started_at(&self, name: &str) -> f64 {
        self.secs_of(self.sup.status(name).unwrap().started_at.expect("started"))
    }
}
