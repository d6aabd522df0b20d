//! Spawning and reaping a real `/bin/true` through `UnixSys`, each way
//! against `posix_spawn` for the same binary (std's `Command::spawn` with no
//! hooks, then `wait`), in the same run.
//!
//! Every row is paired: each iteration spawns and reaps once through the
//! baseline and once through `UnixSys`, in alternating order, and times
//! each on its own. Criterion reports the `UnixSys` side; at the end a
//! table gives, per row that ran, the median time per spawn of both sides
//! over the same measurement samples and their ratio. Interleaving at this
//! grain makes drift in machine load (a shared machine) hit both alike,
//! which a ratio within 1.05x needs.
//!
//! Run: `cargo bench --bench spawn`; one row: `cargo bench --bench spawn --
//! ROW` (a criterion filter, e.g. `spawn/defaults$`). Each row also runs
//! the baseline, so it takes about twice criterion's warm-up and
//! measurement times (3 s + 5 s by default, e.g. `-- --warm-up-time 1
//! --measurement-time 3` for a short run).

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use procsup::{ProcessSpec, Sys, SysEvent, UnixSys};

/// Criterion's sample count for every row. The group sets it, so it wins
/// over `--sample-size`; the measurement phase is the last this many calls
/// of each routine (the warm-up calls come before), and the table uses
/// only those.
const SAMPLES: usize = 50;

/// Spawns through `sys` and waits (on its readiness fd) for the exit.
fn spawn_and_reap(sys: &mut UnixSys, spec: &ProcessSpec, events: &mut Vec<SysEvent>) {
    let pid = sys.spawn(spec).expect("spawn /bin/true");
    loop {
        events.clear();
        sys.poll(events);
        if events.iter().any(|e| matches!(e, SysEvent::Exited { pid: p, .. } if *p == pid)) {
            return;
        }
        let fds = sys.readiness_fds();
        let mut pfds: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
        let _ = poll(&mut pfds, PollTimeout::from(10u8));
    }
}

/// The baseline: std's `Command` with no hooks takes `posix_spawn`.
fn posix_spawn_and_wait() {
    let status = Command::new("/bin/true").spawn().expect("spawn /bin/true").wait().expect("wait");
    assert!(status.success(), "/bin/true failed: {status}");
}

/// One criterion call: `iters` pairs, the total time of each side.
struct Sample {
    iters: u64,
    baseline: Duration,
    procsup: Duration,
}

/// A row of the final table.
struct Row {
    what: &'static str,
    target: Option<f64>,
    /// `last_spawn_path()`: "clone3", "clone" or "command".
    path: &'static str,
    /// Whether the children got a cgroup each.
    cgroup: bool,
    samples: Vec<Sample>,
}

/// The median over `samples` of the time per spawn on one side.
fn median_per_spawn(samples: &[Sample], side: impl Fn(&Sample) -> Duration) -> f64 {
    let mut v: Vec<f64> = samples.iter().map(|s| side(s).as_secs_f64() * 1e6 / s.iters as f64).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median over `samples` of procsup's time over the baseline's, each
/// sample against its own: robust to load that changes between samples.
fn median_paired_ratio(samples: &[Sample]) -> f64 {
    let mut v: Vec<f64> = samples.iter().map(|s| s.procsup.as_secs_f64() / s.baseline.as_secs_f64()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Benches `spec` through `sys` as criterion row `name`, paired with the
/// baseline; adds its line to `rows` when it ran (not filtered out).
fn paired(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rows: &mut Vec<Row>,
    (name, what, target): (&str, &'static str, Option<f64>),
    mut sys: UnixSys,
    spec: &ProcessSpec,
) {
    let mut samples = Vec::new();
    let mut events = Vec::new();
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let (mut baseline, mut procsup) = (Duration::ZERO, Duration::ZERO);
            for i in 0..iters {
                let mut side = |ours: bool| {
                    let t = Instant::now();
                    if ours {
                        spawn_and_reap(&mut sys, spec, &mut events);
                        procsup += t.elapsed();
                    } else {
                        posix_spawn_and_wait();
                        baseline += t.elapsed();
                    }
                };
                side(i % 2 == 0);
                side(i % 2 != 0);
            }
            samples.push(Sample { iters, baseline, procsup });
            procsup
        });
    });
    if samples.is_empty() {
        return; // filtered out, or `--list`
    }
    let measured = samples.split_off(samples.len().saturating_sub(SAMPLES));
    rows.push(Row {
        what,
        target,
        path: sys.last_spawn_path().unwrap_or("-"),
        cgroup: sys.cgroup_dir().is_some(),
        samples: measured,
    });
}

fn print_table(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    println!();
    println!("spawn + reap /bin/true: median µs per spawn over criterion's measurement samples;");
    println!("baseline = posix_spawn (std Command, no hooks, + wait), interleaved with each row in the same samples;");
    println!(
        "ratio = procsup / baseline medians; paired = median of each sample's own ratio (the target is checked on it)"
    );
    println!(
        "{:<62} {:<7} {:<7} {:>5} {:>10} {:>10} {:>7} {:>7}  target",
        "what", "path", "contain", "n", "baseline", "procsup", "ratio", "paired"
    );
    for row in rows {
        let base = median_per_spawn(&row.samples, |s| s.baseline);
        let ours = median_per_spawn(&row.samples, |s| s.procsup);
        let ratio = median_paired_ratio(&row.samples);
        let target = row
            .target
            .map_or(String::new(), |t| format!("within {t:.2}x: {}", if ratio <= t { "met" } else { "MISSED" }));
        println!(
            "{:<62} {:<7} {:<7} {:>5} {:>10.1} {:>10.1} {:>6.2}x {:>6.2}x  {target}",
            row.what,
            row.path,
            if row.cgroup { "cgroup" } else { "pgroup" },
            row.samples.len(),
            base,
            ours,
            ours / base,
            ratio,
        );
    }
}

fn spawn(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn");
    g.sample_size(SAMPLES);
    // Every sample the same number of pairs: a spawn takes about a
    // millisecond, far above criterion's per-call overhead.
    g.sampling_mode(SamplingMode::Flat);
    let mut rows = Vec::new();
    let defaults = ProcessSpec::new("t", "/bin/true");
    let groups = || UnixSys::new().without_cgroups();
    paired(
        &mut g,
        &mut rows,
        ("defaults", "defaults: die-with-parent, process group, pidfd (no cgroup)", Some(1.05)),
        groups(),
        &defaults,
    );
    // Where a cgroup2 is writable (as root here), UnixSys::new() gives each
    // child a cgroup: mkdir, entering it before exec (CLONE_INTO_CGROUP on
    // the new path), rmdir after the reap.
    paired(&mut g, &mut rows, ("cgroup", "defaults with a cgroup per child", None), UnixSys::new(), &defaults);
    // A container's seccomp filter that refuses clone3.
    paired(
        &mut g,
        &mut rows,
        ("clone_fallback", "clone(2) fallback (clone3 fails ENOSYS), no cgroup", None),
        groups().fail_clone3(libc::ENOSYS),
        &defaults,
    );
    // Any pre_exec hook keeps std's Command (a hook may not be vfork-safe),
    // which leaves posix_spawn for fork: the path before #14.
    // SAFETY: the hook does nothing, which is async-signal-safe.
    let hooked = unsafe { ProcessSpec::new("t", "/bin/true").pre_exec(|| Ok(())) };
    paired(
        &mut g,
        &mut rows,
        ("old_path", "old path: std Command (a no-op pre_exec hook), no cgroup", None),
        groups(),
        &hooked,
    );
    let plain = ProcessSpec::new("t", "/bin/true").die_with_parent(None);
    paired(&mut g, &mut rows, ("no_die_with_parent", "die_with_parent(None), no cgroup", None), groups(), &plain);
    // Passing a listening socket: an fd plan and the socket-activation
    // environment (LISTEN_PID written in the child).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let http = Arc::new(OwnedFd::from(listener));
    let listening = ProcessSpec::new("t", "/bin/true").listen_fds([("http", http.clone())]);
    paired(
        &mut g,
        &mut rows,
        ("listen_fds", "defaults + listen_fds (one socket), no cgroup", None),
        groups(),
        &listening,
    );
    // The same fd without the socket-activation environment: the fd plan
    // alone, to split the cost.
    let passing = ProcessSpec::new("t", "/bin/true").pass_fd(3, http);
    paired(&mut g, &mut rows, ("pass_fd", "defaults + pass_fd (one fd), no cgroup", None), groups(), &passing);
    g.finish();
    print_table(&rows);
}

criterion_group!(benches, spawn);
criterion_main!(benches);
