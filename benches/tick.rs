//! Supervisor cost on FakeSys: an idle tick, and a full crash cycle, at
//! 10 / 1,000 / 10,000 processes. The 10-process case is the baseline the
//! others are compared with (see the README's Performance section).

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use procsup::testing::FakeSys;
use procsup::{Backoff, Exit, Pid, ProcessSpec, Supervisor};

const SIZES: [usize; 3] = [10, 1_000, 10_000];

/// `n` started processes whose start grace ends in an hour: the timer
/// table is full, nothing is due.
fn started(n: usize, backoff: Backoff) -> (Supervisor<FakeSys>, Instant) {
    let mut sup = Supervisor::with_sys(FakeSys::new()).with_seed(1);
    sup.sys_mut().set_recording(false);
    for i in 0..n {
        let spec =
            ProcessSpec::new(format!("p{i}"), "prog").start_grace(Duration::from_secs(3600)).backoff(backoff.clone());
        sup.add_process(spec).unwrap();
    }
    let t0 = Instant::now();
    sup.start_all(t0).unwrap();
    sup.drain_events().for_each(drop);
    (sup, t0)
}

fn tick_idle(c: &mut Criterion) {
    let mut g = c.benchmark_group("tick_idle");
    for n in SIZES {
        let (mut sup, t0) = started(n, Backoff::default());
        let now = t0 + Duration::from_secs(1);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| b.iter(|| sup.tick(black_box(now))));
        assert_eq!(sup.drain_events().count(), 0, "the idle tick did something");
    }
    g.finish();
}

/// One process goes through exit -> backoff -> respawn, among `n`.
fn crash_loop(c: &mut Criterion) {
    let mut g = c.benchmark_group("crash_loop");
    for n in SIZES {
        let (mut sup, t0) = started(n, Backoff::none());
        let mut now = t0;
        // FakeSys hands out pids in order (1000, 1001, ...) and each cycle
        // spawns exactly one child, so the bench knows every pid without
        // asking the supervisor (which would be measured too).
        let mut pids: Vec<Pid> = (0..n).map(|i| Pid::from_raw(1000 + i as i32)).collect();
        let mut next = 1000 + n as i32;
        let mut i = 0;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % n;
                assert!(sup.sys_mut().exit(pids[i], Exit::Exited(1)));
                now += Duration::from_micros(1);
                sup.tick(now);
                sup.drain_events().for_each(drop);
                pids[i] = Pid::from_raw(next);
                next += 1;
            })
        });
    }
    g.finish();
}

criterion_group!(benches, tick_idle, crash_loop);
criterion_main!(benches);
