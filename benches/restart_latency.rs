//! Restart latency with real processes: from the SIGKILL of a child to the
//! moment its successor starts running `main`, measured by the child itself
//! (`CLOCK_REALTIME`).
//!
//! Baseline in the same run, the floor: a minimal C loop that blocks in
//! `waitpid` and then fork+execs the same child. procsup runs as a normal
//! host would: poll on the readiness fd with the timeout from
//! `poll_timeout()`, then `tick`, with zero backoff.
//!
//! Run: `cargo bench --bench restart_latency` (needs a C compiler, `cc`).
//! `PROCSUP_LATENCY_SAMPLES` sets the sample count (default 300).

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use procsup::{Backoff, Event, ProcessSpec, Supervisor, UnixSys};

const CHILD_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%d %lld\n", (int)getpid(), (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    int fd = open(argv[1], O_WRONLY | O_APPEND);
    if (fd < 0 || write(fd, buf, n) != n) return 1;
    close(fd);
    pause();
    return 0;
}
"#;

const FLOOR_C: &str = r#"
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int n = atoi(argv[3]);
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) { execl(argv[1], argv[1], argv[2], (char *)0); _exit(127); }
        int status;
        if (waitpid(pid, &status, 0) < 0) return 1;
    }
    return 0;
}
"#;

fn compile(dir: &Path, name: &str, src: &str) -> Option<PathBuf> {
    let c = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&c, src).ok()?;
    let ok = Command::new("cc").args(["-O2", "-o"]).arg(&bin).arg(&c).status().ok()?.success();
    ok.then_some(bin)
}

fn realtime_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos() as i128
}

/// Reads the child reports from the FIFO: `(pid, start_ns)`.
struct Reports(BufReader<File>);

impl Reports {
    fn open(fifo: &Path) -> Self {
        // Read-write, so that opening does not wait for a writer and the
        // FIFO never reports end-of-file between children.
        let f = std::fs::OpenOptions::new().read(true).write(true).open(fifo).expect("open fifo");
        Reports(BufReader::new(f))
    }

    fn next(&mut self) -> (i32, i128) {
        let mut line = String::new();
        self.0.read_line(&mut line).expect("child report");
        let (pid, t) = line.trim().split_once(' ').expect("pid and time");
        (pid.parse().expect("pid"), t.parse().expect("time"))
    }
}

fn floor(child: &Path, floor_bin: &Path, fifo: &Path, samples: usize) -> Vec<f64> {
    let mut reports = Reports::open(fifo);
    let mut looper = Command::new(floor_bin).arg(child).arg(fifo).arg((samples + 1).to_string()).spawn().unwrap();
    let mut out = Vec::with_capacity(samples);
    let (mut pid, _) = reports.next();
    for _ in 0..samples {
        let killed_at = realtime_ns();
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        let (next, started) = reports.next();
        out.push((started - killed_at) as f64 / 1e3);
        pid = next;
    }
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    looper.wait().unwrap();
    out
}

fn procsup(child: &Path, fifo: &Path, samples: usize, die_with_parent: bool) -> Vec<f64> {
    let mut reports = Reports::open(fifo);
    let mut sup = Supervisor::with_sys(UnixSys::new());
    let mut spec = ProcessSpec::new("child", child).arg(fifo).backoff(Backoff::none()).start_grace(Duration::ZERO);
    if !die_with_parent {
        spec = spec.die_with_parent(None);
    }
    sup.add_process(spec).unwrap();
    sup.start_all(Instant::now()).unwrap();
    let mut out = Vec::with_capacity(samples);
    let (mut pid, _) = reports.next();
    for _ in 0..samples {
        let killed_at = realtime_ns();
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        // The host loop, until the supervisor has spawned the successor.
        let mut spawned = false;
        while !spawned {
            let timeout = sup
                .poll_timeout(Instant::now())
                .map_or(PollTimeout::NONE, |d| PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX));
            {
                let fds = sup.readiness_fds();
                let mut pfds: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
                let _ = poll(&mut pfds, timeout);
            }
            sup.tick(Instant::now());
            spawned = sup.drain_events().any(|e| matches!(e, Event::Spawned { .. }));
        }
        let (next, started) = reports.next();
        out.push((started - killed_at) as f64 / 1e3);
        pid = next;
    }
    sup.shutdown(Instant::now());
    while !sup.is_idle() {
        let fds = sup.readiness_fds();
        let mut pfds: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
        let _ = poll(&mut pfds, PollTimeout::from(100u8));
        drop(pfds);
        sup.tick(Instant::now());
    }
    out
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() * 9 / 10])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and friends: nothing to list
    }
    let samples: usize = std::env::var("PROCSUP_LATENCY_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let dir = tempfile::tempdir().expect("tempdir");
    let (Some(child), Some(floor_bin)) = (compile(dir.path(), "child", CHILD_C), compile(dir.path(), "floor", FLOOR_C))
    else {
        eprintln!("restart_latency: no C compiler (cc) here; nothing measured");
        return;
    };
    let fifo = dir.path().join("reports");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("restart latency, {samples} samples each, {cores} cores (µs from SIGKILL to the successor's main)");
    // Interleaved rounds, so that drift in machine load hits all alike.
    let (mut f, mut p, mut q) = (Vec::new(), Vec::new(), Vec::new());
    let rounds = 3;
    for _ in 0..rounds {
        f.extend(floor(&child, &floor_bin, &fifo, samples / rounds));
        p.extend(procsup(&child, &fifo, samples / rounds, true));
        q.extend(procsup(&child, &fifo, samples / rounds, false));
    }
    let (fm, f90) = stats(f);
    println!("{:<40} median {:>8.1}  p90 {:>8.1}", "floor (C: waitpid, fork+exec)", fm, f90);
    for (name, v) in [("procsup (default: die with parent)", p), ("procsup (die_with_parent(None))", q)] {
        let (m, p90) = stats(v);
        println!("{name:<40} median {m:>8.1}  p90 {p90:>8.1}  ratio median {:.2}x  p90 {:.2}x", m / fm, p90 / f90);
    }
}
