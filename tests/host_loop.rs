//! The documented host loop, driven with a recording fake `poll(2)` on
//! virtual time: no deadline is ever reached through a run of zero-timeout
//! wake-ups, and a host may call the supervisor while handling its events.

use std::time::{Duration, Instant};

use procsup::testing::{FakeSys, VirtualClock};
use procsup::{Backoff, Event, Exit, Pid, ProcessSpec, Signal, State, Supervisor, Sys, SysEvent};

/// What one call to the fake `poll` saw.
#[derive(Debug, Default)]
struct Trace {
    polls: usize,
    /// Zero-timeout polls while no deadline was due: a busy spin.
    spins: usize,
    /// Timed wake-ups that found their deadline still in the future.
    early: usize,
}

/// How long one `poll` with a zero timeout takes in real time.
const SYSCALL: Duration = Duration::from_micros(20);
/// A child crashes this long after it was spawned.
const LIFETIME: Duration = Duration::from_micros(700);

/// Runs the documented loop for `polls` wake-ups of a crash-looping child,
/// with `timeout` computing the poll timeout.
fn crash_loop(polls: usize, timeout: impl Fn(&Supervisor<FakeSys>, Instant) -> Option<Duration>) -> Trace {
    let mut clock = VirtualClock::new();
    let mut sup = Supervisor::with_sys(FakeSys::new()).with_seed(7);
    sup.add_process(
        ProcessSpec::new("crashy", "crashy")
            .start_grace(Duration::from_micros(2500))
            .backoff(Backoff::exponential(Duration::from_micros(1300)).max(Duration::from_millis(9)).jitter(0.3)),
    )
    .unwrap();
    sup.start_all(clock.now()).unwrap();
    let mut crash_at = clock.now() + LIFETIME;
    let mut trace = Trace::default();
    while trace.polls < polls {
        let now = clock.now();
        let t = timeout(&sup, now);
        let deadline = sup.next_deadline();
        // The fake poll: the child's crash fires the readiness fd, or the
        // timeout runs out (a zero timeout still costs a system call).
        let alive = sup.status("crashy").unwrap().pid.is_some();
        let woke_at = match t {
            Some(t) => now + t.max(SYSCALL),
            None => crash_at.max(now),
        };
        trace.polls += 1;
        if alive && crash_at <= woke_at {
            clock.set(crash_at);
            assert!(sup.sys_mut().exit_by_name("crashy", Exit::Exited(1)));
        } else {
            clock.set(woke_at);
            if t == Some(Duration::ZERO) && deadline.is_some_and(|d| d > now) {
                trace.spins += 1;
            }
            if t.is_some_and(|t| t > Duration::ZERO) && deadline.is_some_and(|d| d > clock.now()) {
                trace.early += 1;
            }
        }
        let was_spawned = sup.status("crashy").unwrap().pid;
        sup.tick(clock.now());
        if sup.status("crashy").unwrap().pid != was_spawned && sup.status("crashy").unwrap().pid.is_some() {
            crash_at = clock.now() + LIFETIME;
        }
        let _ = sup.take_events();
    }
    trace
}

#[test]
fn poll_timeout_never_wakes_early_into_zero_timeout_polls() {
    let trace = crash_loop(2000, |sup, now| sup.poll_timeout(now));
    assert_eq!(trace.spins, 0, "{trace:?}");
    assert_eq!(trace.early, 0, "{trace:?}");
}

#[test]
fn the_old_rounding_down_did_spin() {
    // What the docs did before: `PollTimeout::try_from(Duration)` keeps
    // whole milliseconds only. The same loop wastes wake-ups, so the test
    // above can tell the two apart.
    let trace = crash_loop(2000, |sup, now| {
        sup.next_deadline().map(|t| Duration::from_millis(t.saturating_duration_since(now).as_millis() as u64))
    });
    assert!(trace.spins > 100, "{trace:?}");
}

#[test]
fn a_coarser_resolution_rounds_up_to_it() {
    let clock = VirtualClock::new();
    let mut sup = Supervisor::with_sys(FakeSys::new());
    sup.add_process(ProcessSpec::new("a", "a").start_grace(Duration::from_millis(12))).unwrap();
    sup.start_all(clock.now()).unwrap();
    assert_eq!(sup.poll_timeout_in(clock.now(), Duration::from_millis(10)), Some(Duration::from_millis(20)));
    assert_eq!(sup.poll_timeout(clock.at(0.0115)), Some(Duration::from_millis(1)));
    assert_eq!(sup.poll_timeout(clock.at(0.012)), Some(Duration::ZERO));
    assert_eq!(sup.poll_timeout(clock.at(5.0)), Some(Duration::ZERO));
}

/// A `FakeSys` whose polls leave input behind while `left` says so, as
/// `UnixSys` does when a read budget or a batch of readiness runs out.
struct Leftover {
    fake: FakeSys,
    left: bool,
}

impl Sys for Leftover {
    fn spawn(&mut self, spec: &ProcessSpec) -> std::io::Result<Pid> {
        self.fake.spawn(spec)
    }
    fn signal(&mut self, pid: Pid, signal: Signal) -> std::io::Result<()> {
        self.fake.signal(pid, signal)
    }
    fn poll(&mut self, events: &mut Vec<SysEvent>) {
        self.fake.poll(events)
    }
    fn wake_after(&self) -> Option<Duration> {
        self.left.then_some(Duration::ZERO)
    }
}

#[test]
fn poll_timeout_is_zero_while_input_is_left_over() {
    let clock = VirtualClock::new();
    let mut sup = Supervisor::with_sys(Leftover { fake: FakeSys::new(), left: false });
    sup.add_process(ProcessSpec::new("a", "a").start_grace(Duration::from_secs(5))).unwrap();
    sup.start_all(clock.now()).unwrap();
    sup.tick(clock.now());
    assert_eq!(sup.poll_timeout(clock.now()), Some(Duration::from_secs(5)));
    // An edge-triggered host gets no new edge for what is left: tick now.
    sup.sys_mut().left = true;
    assert_eq!(sup.poll_timeout(clock.now()), Some(Duration::ZERO));
    sup.sys_mut().left = false;
    assert_eq!(sup.poll_timeout(clock.now()), Some(Duration::from_secs(5)));
}

#[test]
fn shutdown_on_fatal_inside_the_event_loop() {
    let mut clock = VirtualClock::new();
    let mut sup = Supervisor::with_sys(FakeSys::new());
    sup.add_process(ProcessSpec::new("db", "postgres").give_up_after(2)).unwrap();
    sup.add_process(ProcessSpec::new("web", "server")).unwrap();
    sup.start_all(clock.now()).unwrap();
    let mut shut = None;
    for _ in 0..10 {
        let _ = sup.sys_mut().exit_by_name("db", Exit::Exited(1));
        sup.tick(clock.now());
        for event in sup.take_events() {
            if let Event::Fatal { name, .. } = &event {
                assert_eq!(&**name, "db");
                sup.shutdown(clock.now());
                shut = Some(clock.now());
            }
        }
        if shut.is_some() {
            break;
        }
        sup.advance_to_next_deadline(&mut clock); // db's restart
    }
    assert!(shut.is_some(), "db never went fatal");
    assert_eq!(sup.status("web").unwrap().state, State::Stopping);
    sup.run_until_idle(&mut clock, 10).unwrap();
    // web ignores SIGTERM in the fake: SIGKILL after the default stop timeout.
    assert_eq!(sup.status("web").unwrap().state, State::Stopped);
    assert!(sup.is_idle());
}
