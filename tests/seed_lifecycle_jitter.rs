//! Port of the lifecycle coordinator's restart-jitter tests
//! (`shared/seeds/lifecycle-restart-jitter-tests.txt`). Its worker config
//! maps to `Backoff::exponential(base).max(max_delay).jitter(factor)
//! .floor(1 s)` and `give_up_after(max_restart_attempts + 1)`; one
//! `_restart_worker` is one quick death followed by the respawn.

mod common;

use common::{secs, Harness};
use procsup::{Backoff, Event, Exit, FatalReason, ProcessSpec, State};

struct Config {
    base: f64,
    jitter: f64,
    max: f64,
    max_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        // WorkerConfig's defaults for the knobs the tests leave alone.
        Config { base: 1.0, jitter: 0.25, max: 60.0, max_attempts: 5 }
    }
}

fn worker(c: &Config) -> ProcessSpec {
    ProcessSpec::new("worker", "worker")
        .backoff(Backoff::exponential(secs(c.base)).max(secs(c.max)).jitter(c.jitter).floor(secs(1.0)))
        .give_up_after(c.max_attempts + 1)
}

/// A started worker under `c`, RNG seeded with `seed`.
fn coordinator(c: &Config, seed: u64) -> Harness {
    let mut h = Harness::seeded(seed);
    h.sup.add_process(worker(c)).unwrap();
    h.start_all();
    h
}

/// The worker dies at once and is restarted after its delay; returns the
/// delay it waited (None when it was not restarted).
fn restart_worker(h: &mut Harness) -> Option<f64> {
    h.advance(0.1);
    h.exit("worker", Exit::Exited(1));
    h.tick();
    let retry = h.sup.status("worker").unwrap().next_retry_at?;
    let delay = h.delays("worker").last().copied();
    h.clock.set(retry);
    h.tick();
    assert_eq!(h.state("worker"), State::Starting);
    delay
}

/// Brings the failure streak to `attempts` (the coordinator's
/// `_restart_attempts`).
fn with_attempts(h: &mut Harness, attempts: u32) {
    for _ in 0..attempts {
        restart_worker(h).unwrap();
    }
    assert_eq!(h.sup.status("worker").unwrap().failure_streak, attempts);
}

#[test]
fn jitter_applied_within_expected_range() {
    let c = Config { base: 2.0, jitter: 0.25, max: 60.0, max_attempts: 5 };
    let mut h = coordinator(&c, 42);
    let delay = restart_worker(&mut h).unwrap();
    assert!((1.5..=2.5).contains(&delay), "{delay}");
}

#[test]
fn delay_capped_at_max_delay() {
    let c = Config { base: 10.0, jitter: 0.25, max: 30.0, max_attempts: 10 };
    let mut h = coordinator(&c, 0);
    with_attempts(&mut h, 5);
    let delay = restart_worker(&mut h).unwrap();
    assert!(delay <= 30.0 * 1.25, "{delay}");
    assert!(delay >= 30.0 * 0.75, "{delay}: the cap comes before the jitter");
}

#[test]
fn minimum_delay_enforced() {
    let c = Config { base: 0.5, jitter: 0.5, max: 60.0, max_attempts: 5 };
    for seed in 0..10 {
        let mut h = coordinator(&c, seed);
        let delay = restart_worker(&mut h).unwrap();
        assert!(delay >= 1.0, "delay {delay} below 1.0 (seed {seed})");
    }
}

#[test]
fn exponential_backoff_progression() {
    let c = Config { base: 1.0, jitter: 0.0, max: 60.0, max_attempts: 5 };
    let mut h = coordinator(&c, 0);
    let delays: Vec<f64> = (0..4).map(|_| restart_worker(&mut h).unwrap()).collect();
    assert_eq!(delays, [1.0, 2.0, 4.0, 8.0]);
}

#[test]
fn configuration_defaults_and_overrides() {
    let b = Backoff::exponential(secs(1.0));
    assert_eq!(b.get_jitter(), 0.25);
    assert_eq!(b.get_max(), secs(60.0));
    assert_eq!(b.clone().jitter(0.5).get_jitter(), 0.5);
    assert_eq!(b.max(secs(120.0)).get_max(), secs(120.0));
}

#[test]
fn jitter_distribution_covers_range() {
    let c = Config { base: 10.0, jitter: 0.25, max: 60.0, max_attempts: 100 };
    let delays: Vec<f64> = (0..50).map(|seed| restart_worker(&mut coordinator(&c, seed)).unwrap()).collect();
    assert!(delays.iter().any(|&d| d > 10.0), "some above base");
    assert!(delays.iter().any(|&d| d < 10.0), "some below base");
    assert!(delays.iter().all(|d| (7.5..=12.5).contains(d)), "{delays:?}");
}

#[test]
fn zero_jitter_gives_deterministic_delays() {
    let c = Config { base: 5.0, jitter: 0.0, max: 60.0, max_attempts: 100 };
    for seed in 0..5 {
        assert_eq!(restart_worker(&mut coordinator(&c, seed)), Some(5.0));
    }
}

#[test]
fn restart_attempts_increment() {
    let mut h = coordinator(&Config::default(), 0);
    assert_eq!(h.sup.status("worker").unwrap().failure_streak, 0);
    for n in 1..=3 {
        restart_worker(&mut h).unwrap();
        let st = h.sup.status("worker").unwrap();
        assert_eq!((st.failure_streak, st.restart_count), (n, n));
    }
}

#[test]
fn max_attempts_stops_restarts() {
    let c = Config { max_attempts: 2, ..Config::default() };
    let mut h = coordinator(&c, 0);
    with_attempts(&mut h, 2);
    let backoffs = h.delays("worker").len();
    assert_eq!(restart_worker(&mut h), None);
    assert_eq!(h.delays("worker").len(), backoffs, "no wait was scheduled");
    assert_eq!(h.state("worker"), State::Fatal);
    assert!(matches!(h.log.last(), Some(Event::Fatal { reason: FatalReason::GaveUp { failures: 3 }, .. })));
    assert_eq!(h.sup.next_deadline(), None);
}

#[test]
fn backoff_capped_at_max_delay_exactly() {
    let c = Config { base: 5.0, jitter: 0.0, max: 15.0, max_attempts: 20 };
    let mut h = coordinator(&c, 0);
    with_attempts(&mut h, 10);
    assert_eq!(restart_worker(&mut h), Some(15.0));
}

#[test]
fn jitter_stays_within_bounds() {
    let c = Config { base: 10.0, jitter: 0.25, max: 100.0, max_attempts: 200 };
    for seed in 0..100 {
        let d = restart_worker(&mut coordinator(&c, seed)).unwrap();
        assert!((7.5f64.max(1.0)..=12.5).contains(&d), "{d} (seed {seed})");
    }
}

#[test]
fn same_seed_same_delays() {
    let c = Config::default();
    let run = |seed| {
        let mut h = coordinator(&c, seed);
        (0..4).map(|_| restart_worker(&mut h).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}
