//! Spawning and reaping a real `/bin/true` through `UnixSys`, side by side
//! with a bare `std::process::Command::spawn` + `wait` in the same run.

use std::hint::black_box;
use std::os::fd::AsFd;
use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use procsup::{ProcessSpec, Sys, SysEvent, UnixSys};

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

fn spawn(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn");
    g.bench_function("bare_command", |b| {
        b.iter(|| black_box(Command::new("/bin/true").spawn().unwrap().wait().unwrap()));
    });
    let mut events = Vec::new();
    let mut sys = UnixSys::new();
    let plain = ProcessSpec::new("t", "/bin/true").die_with_parent(None);
    g.bench_function("unixsys", |b| b.iter(|| spawn_and_reap(&mut sys, &plain, &mut events)));
    let default = ProcessSpec::new("t", "/bin/true");
    g.bench_function("unixsys_die_with_parent", |b| b.iter(|| spawn_and_reap(&mut sys, &default, &mut events)));
    // Where a cgroup2 is writable, UnixSys::new() gives each child a cgroup
    // (mkdir, a write before exec, rmdir): the same spawn with process
    // groups only, for the ratio.
    let mut groups = UnixSys::new().without_cgroups();
    g.bench_function("unixsys_without_cgroups", |b| b.iter(|| spawn_and_reap(&mut groups, &plain, &mut events)));
    g.finish();
}

criterion_group!(benches, spawn);
criterion_main!(benches);
