//! Restart latency with real processes: from the SIGKILL of a child to the
//! moment its successor starts running `main`, measured by the child itself
//! (`CLOCK_REALTIME`).
//!
//! Baseline in the same run, the floor: a minimal C loop that blocks in
//! `waitpid` and then fork+execs the same child. procsup runs as a normal
//! host would: poll on the readiness fd with the timeout from
//! `poll_timeout()`, then `tick`, with zero backoff.
//!
//! The same host is also measured with a large heap: before its rows it
//! allocates `PROCSUP_LATENCY_HEAP_MIB` (default 1024) and writes every page,
//! and keeps it alive while it supervises. A spawn that copies the host's
//! page tables (fork) grows with that heap; a `CLONE_VM` spawn does not.
//! Each path is compared with itself on an empty heap.
//!
//! Rows: the defaults (`UnixSys::new()`: a cgroup per child where one is
//! writable, die-with-parent, a process group, a pidfd), the same without
//! cgroups, `die_with_parent(None)`, and the old path (a no-op `pre_exec`
//! hook keeps std's `Command`, which forks); the defaults and the old path
//! again with the heap; and the defaults with limits set (five rlimits, and
//! memory, tasks and CPU weight in the cgroup where the hierarchy has those
//! controllers; the row says which) against the defaults, at most 1.05x.
//! Interleaved rounds, so that drift in machine load
//! hits all alike. The table at the end has each ratio.
//!
//! Run: `cargo bench --bench restart_latency` (needs a C compiler, `cc`).
//! `PROCSUP_LATENCY_SAMPLES` sets the sample count per row (default 300),
//! `PROCSUP_LATENCY_HEAP_MIB` the heap (0: no heap rows). With the defaults
//! it holds 1 GiB more for a while and takes about 30 s on 2 cores, most of
//! it the old path with the heap (a fork of a 1 GiB host: tens of ms each).

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

    /// The next report; panics after 10 s without one rather than hang.
    fn next(&mut self) -> (i32, i128) {
        if !self.0.buffer().contains(&b'\n') {
            let mut pfd = [PollFd::new(self.0.get_ref().as_fd(), PollFlags::POLLIN)];
            let ready = poll(&mut pfd, PollTimeout::from(10_000u16)).expect("poll the fifo");
            assert!(ready > 0, "no child report within 10 s");
        }
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

/// How the supervising host spawns, one row of the table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Host {
    /// `UnixSys::new()` and a default spec.
    Defaults,
    /// The same, process groups only.
    WithoutCgroups,
    /// The defaults but `die_with_parent(None)`.
    NoDieWithParent,
    /// The defaults plus a no-op `pre_exec` hook: std's `Command`, fork.
    OldPath,
    /// The defaults with limits: five rlimits, and the cgroup limits
    /// (memory, tasks, CPU weight) where the hierarchy has the controllers.
    WithLimits,
}

/// The rlimits of the limits row: never binding the child, and below
/// the usual hard limits (raising one needs `CAP_SYS_RESOURCE`).
fn with_rlimits(spec: ProcessSpec) -> ProcessSpec {
    use procsup::{Rlimit, RLIM_INFINITY};
    spec.rlimit(Rlimit::Nofile, 1024, 4096)
        .rlimit(Rlimit::Core, 0, 0)
        .rlimit(Rlimit::Nproc, 10_000, 10_000)
        .rlimit(Rlimit::As, RLIM_INFINITY, RLIM_INFINITY)
        .rlimit(Rlimit::Stack, 8 << 20, RLIM_INFINITY)
}

/// What one run measured, and how it spawned.
struct Run {
    micros: Vec<f64>,
    /// `last_spawn_path()`: "clone3", "clone" or "command".
    path: &'static str,
    cgroup: bool,
    /// The limits row got its cgroup limits too (not only rlimits).
    cgroup_limits: bool,
}

fn procsup(child: &Path, fifo: &Path, samples: usize, host: Host) -> Run {
    let mut reports = Reports::open(fifo);
    let sys = match host {
        Host::WithoutCgroups => UnixSys::new().without_cgroups(),
        _ => UnixSys::new(),
    };
    let mut sup = Supervisor::with_sys(sys);
    let mut spec = ProcessSpec::new("child", child).arg(fifo).backoff(Backoff::none()).start_grace(Duration::ZERO);
    match host {
        Host::NoDieWithParent => spec = spec.die_with_parent(None),
        // SAFETY: the hook does nothing, which is async-signal-safe.
        Host::OldPath => spec = unsafe { spec.pre_exec(|| Ok(())) },
        Host::Defaults | Host::WithoutCgroups | Host::WithLimits => {}
    }
    let mut cgroup_limits = false;
    if host == Host::WithLimits {
        let limited = with_rlimits(spec.clone()).memory_max(1 << 30).tasks_max(10_000).cpu_weight(200);
        match sup.add_process(limited) {
            Ok(()) => cgroup_limits = true,
            // No controller for them here: the rlimits alone.
            Err(procsup::Error::LimitUnsupported { .. }) => sup.add_process(with_rlimits(spec)).unwrap(),
            Err(e) => panic!("{e}"),
        }
    } else {
        sup.add_process(spec).unwrap();
    }
    sup.start_all(Instant::now()).unwrap();
    // start_all's own Spawned event, not to be taken for a successor's.
    sup.drain_events().for_each(drop);
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
            spawned = sup.drain_events().any(|e| matches!(e, Event::Spawned { pid: p, .. } if p.as_raw() != pid));
        }
        let (next, started) = reports.next();
        out.push((started - killed_at) as f64 / 1e3);
        pid = next;
    }
    let run = Run {
        micros: out,
        path: sup.sys().last_spawn_path().unwrap_or("-"),
        cgroup: sup.sys().cgroup_dir().is_some(),
        cgroup_limits,
    };
    sup.shutdown(Instant::now());
    while !sup.is_idle() {
        let fds = sup.readiness_fds();
        let mut pfds: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
        let _ = poll(&mut pfds, PollTimeout::from(100u8));
        drop(pfds);
        sup.tick(Instant::now());
    }
    run
}

/// `mib` MiB of heap with every page written, so that it is resident and
/// a fork must copy its page tables. 4096 is the smallest page size.
fn touched_heap(mib: usize) -> Vec<u8> {
    let mut heap = vec![0u8; mib << 20];
    for byte in heap.iter_mut().step_by(4096) {
        *byte = 1;
    }
    heap
}

/// A line of `/proc/self/status` (`VmRSS`), or "?".
fn proc_status(key: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap_or("?");
    line.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
}

/// Median and p90.
fn stats(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() * 9 / 10])
}

/// Samples of one row, accumulated over the rounds.
#[derive(Default)]
struct Series {
    micros: Vec<f64>,
    path: &'static str,
    cgroup: bool,
    cgroup_limits: bool,
}

impl Series {
    fn add(&mut self, run: Run) {
        self.micros.extend(run.micros);
        self.path = run.path;
        self.cgroup = run.cgroup;
        self.cgroup_limits = run.cgroup_limits;
    }

    fn how(&self) -> String {
        format!("{}, {}", self.path, if self.cgroup { "cgroup" } else { "pgroup" })
    }
}

/// One line of the ratio table: `what`, baseline, procsup, ratio.
fn line(what: &str, base: &Series, ours: &Series, target: Option<f64>) {
    let (bm, b90) = stats(&base.micros);
    let (m, p90) = stats(&ours.micros);
    let verdict =
        target.map_or(String::new(), |t| format!("  at most {t:.2}x: {}", if m / bm <= t { "met" } else { "MISSED" }));
    println!(
        "{what:<58} {:>15} {:>8.1} ({:>7.1}) {:>8.1} ({:>7.1})  {:>5.2}x ({:>5.2}x){verdict}",
        ours.how(),
        bm,
        b90,
        m,
        p90,
        m / bm,
        p90 / b90
    );
}

/// What writing one record costs, the way the state directory writes it
/// (a temporary file, then a rename), with or without `fsync` of the file
/// and the directory: what a durable per-child record would add to every
/// restart. Written where the project lives (a disk, as a state
/// directory under /var/lib would be), not on a tmpfs.
fn record_writes(samples: usize, sync: bool) -> Series {
    use std::io::Write;
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let dir = tempfile::tempdir_in(&base).unwrap_or_else(|_| tempfile::tempdir().expect("tempdir"));
    let handle = std::fs::File::open(dir.path()).expect("open dir");
    let text = "procsup-record 1\npid 4194001\npgid 4194001\nsid 4194001\nstart_time 1\ncgroup /x/c1-web\n";
    let mut micros = Vec::with_capacity(samples);
    for k in 0..samples {
        let tmp = dir.path().join(format!(".procsup-tmp.web.{k}"));
        let t0 = Instant::now();
        let mut f = std::fs::File::create(&tmp).expect("create");
        f.write_all(text.as_bytes()).expect("write");
        if sync {
            f.sync_all().expect("fsync");
        }
        std::fs::rename(&tmp, dir.path().join(format!("web.{k}"))).expect("rename");
        if sync {
            handle.sync_all().expect("fsync dir");
        }
        micros.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    Series { micros, path: if sync { "fsync" } else { "no fsync" }, ..Series::default() }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and friends: nothing to list
    }
    let env = |key: &str, default: usize| std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let samples = env("PROCSUP_LATENCY_SAMPLES", 300);
    let heap_mib = env("PROCSUP_LATENCY_HEAP_MIB", 1024);
    let dir = tempfile::tempdir().expect("tempdir");
    let (Some(child), Some(floor_bin)) = (compile(dir.path(), "child", CHILD_C), compile(dir.path(), "floor", FLOOR_C))
    else {
        eprintln!("restart_latency: no C compiler (cc) here; nothing measured");
        return;
    };
    let fifo = dir.path().join("reports");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    println!(
        "restart latency, {samples} samples per row, {cores} cores, heap rows {heap_mib} MiB, THP {} (µs from SIGKILL to the successor's main)",
        thp.trim()
    );
    let started = Instant::now();
    // Interleaved rounds, so that drift in machine load hits all alike.
    let mut floor_s = Series { path: "fork", ..Series::default() };
    let [mut defaults, mut groups, mut no_dwp, mut old, mut defaults_heap, mut old_heap, mut limited] =
        std::array::from_fn(|_| Series::default());
    let rounds = 3;
    let per_round = (samples / rounds).max(1);
    let mut rss = String::new();
    for _ in 0..rounds {
        floor_s.micros.extend(floor(&child, &floor_bin, &fifo, per_round));
        defaults.add(procsup(&child, &fifo, per_round, Host::Defaults));
        groups.add(procsup(&child, &fifo, per_round, Host::WithoutCgroups));
        no_dwp.add(procsup(&child, &fifo, per_round, Host::NoDieWithParent));
        old.add(procsup(&child, &fifo, per_round, Host::OldPath));
        limited.add(procsup(&child, &fifo, per_round, Host::WithLimits));
        if heap_mib > 0 {
            let heap = touched_heap(heap_mib);
            rss = proc_status("VmRSS:");
            defaults_heap.add(procsup(&child, &fifo, per_round, Host::Defaults));
            old_heap.add(procsup(&child, &fifo, per_round, Host::OldPath));
            std::hint::black_box(&heap);
        }
    }
    println!("measured in {:.1} s; host VmRSS with the heap: {rss}", started.elapsed().as_secs_f64());
    println!();
    println!(
        "{:<58} {:>15} {:>18} {:>18}  {:>15}",
        "what (median, p90 in parentheses)", "path, contain", "baseline µs", "procsup µs", "ratio"
    );
    line("defaults vs the C fork floor (waitpid, fork+exec)", &floor_s, &defaults, Some(1.0));
    line("defaults, process groups only (without_cgroups) vs floor", &floor_s, &groups, None);
    line("die_with_parent(None) vs floor", &floor_s, &no_dwp, None);
    line("old path (no-op pre_exec: std Command, fork) vs floor", &floor_s, &old, None);
    let what = match limited.cgroup_limits {
        true => "limits set (5 rlimits, memory/tasks/cpu cgroup) vs defaults",
        false => "limits set (5 rlimits; no cgroup controllers here) vs defaults",
    };
    line(what, &defaults, &limited, Some(1.05));
    // Per-child records are not fsynced (RELIABILITY.md says why); this is
    // what it would cost.
    let (plain, synced) = (record_writes(samples, false), record_writes(samples, true));
    line("one record written with fsync (file, dir) vs without", &plain, &synced, None);
    line("one fsynced record vs a whole restart (defaults)", &defaults, &synced, None);
    if heap_mib > 0 {
        let what = |path: &str| format!("{path}, {heap_mib} MiB touched heap vs empty heap");
        line(&what("defaults"), &defaults, &defaults_heap, Some(1.1));
        line(&what("old path"), &old, &old_heap, None);
    }
}
