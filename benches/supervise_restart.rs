//! Restart latency the way a user sees it: a real `supervise` process (the
//! example binary, built in release by this bench) supervises a tiny static
//! C "stamp" child, and this bench, from outside, ends the child and times
//! its successor's first instruction in `main` (`CLOCK_REALTIME`, read by
//! the child itself and by this bench: one clock both sides).
//!
//! Two cases:
//!
//! - **steady**: the child stamps `S pid t0` and sleeps until killed. The
//!   bench lets it live `PROCSUP_BB_UP_MS` (default 5 ms, past the 2 ms
//!   start grace below, so it counts as running), takes the time just
//!   before `kill(pid, SIGKILL)`, and measures until the successor's
//!   stamp.
//! - **crash**: the child stamps `S pid t0`, waits for one byte on its gate
//!   FIFO (so the loop goes at the bench's pace, not as fast as it can on
//!   2 shared cores: the bench opens it once it has read the start stamp,
//!   so each child dies right after its start, well within a millisecond
//!   of its spawn), then stamps `E pid t1` and exits 1 at once: a failed
//!   start every time. Measured from `t1` to the successor's stamp (so the
//!   child's own `write` and `exit` are in it, alike for every row).
//!
//! Baselines, in the same run and interleaved with each row sample by
//! sample (every process is started once and sits idle between samples;
//! each sample restarts one side `iters` times (after [`WARM_UP`]
//! restarts not measured), waits [`SETTLE`], then the other, the order
//! turned each sample, so that no host's work after a
//! restart, such as a successor made or records written, overlaps the
//! other side's restart: done restart by restart, that slowed the C loops
//! and flattered `supervise` by up to 0.2x): a C loop that blocks in `waitpid` and then
//! `fork`+`execv`s the same child (the floor, what runit does), and the
//! same loop with `vfork` (the physical limit of a spawn that copies no
//! page table). With `PROCSUP_BB_LOOP_SETSID` set, both loops' children
//! call `setsid` before their `execv`, as `supervise`'s do (a session of
//! their own): the floor with that one guarantee.
//!
//! `supervise` runs with `--backoff fixed:0` (the CLI's default is
//! `exp:0.1:60:0.25`, which waits 100 ms even after a child that ran; this
//! bench measures the restart path, not the backoff) and `--start-grace
//! 0.002` (so the steady child counts as running before it is killed,
//! without waiting the default 1 s per sample; `PROCSUP_BB_GRACE` sets
//! another, such as 10 to make each kill a failed start). Everything else is the
//! CLI's defaults: a cgroup per child where one is writable, die-with-
//! parent, a process group, a pidfd; its event lines go to a file.
//! Rows: the defaults plus `--state-dir` (a record per child on disk, the
//! defaults of issue #22), the defaults alone, and `--no-cgroups`.
//!
//! Against runit, where `runsv` is installed (on the `PATH`, or
//! `PROCSUP_BB_RUNSV`), a second table after criterion's rows: runsv
//! supervises the same stamp child (its `./run` is the stamp itself), its
//! records (`supervise/`, rewritten at every death and start) on a tmpfs
//! where `/dev/shm` is one, as Debian links them into `/run`. runsv waits
//! 1 s before restarting a child that ran less than 1 s, so each of
//! `PROCSUP_BB_RUNIT_ROUNDS` rounds (default 20; 0: none) lets every
//! child of the steady case live 1.2 s, then kills each in turn,
//! [`SETTLE`] apart, the order turned by one each round; there is no crash
//! loop against it.
//!
//! Run: `cargo bench --bench supervise_restart` (needs gcc; `-static` where
//! libc.a is installed, else a dynamic stamp, said in the table). It builds
//! `supervise` with `cargo build --release --example supervise` first.
//! Criterion's times are `supervise`'s side; the table at the end has both
//! sides' medians per restart over the same samples and their ratio.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Quiet before each block of one side's restarts, and between the sides
/// of a runit round: past every delayed piece of a host's work after a
/// restart (a successor made 1 ms on, records, held event lines: 5 ms).
const SETTLE: Duration = Duration::from_millis(10);

/// Restarts of each block not measured (see `bench_row`).
const WARM_UP: u64 = 2;

/// Criterion's sample count per row; the table uses the last this many
/// calls (the measurement phase).
const SAMPLES: usize = 30;

/// The stamp child: `stamp REPORT steady` or `stamp REPORT crash GATE`.
/// Without arguments (runit's `./run`) it reads them from `STAMP_REPORT`,
/// `STAMP_CASE` and `STAMP_GATE`.
const STAMP_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static long long now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
int main(int argc, char **argv) {
    long long t0 = now();
    const char *report = argc > 1 ? argv[1] : getenv("STAMP_REPORT");
    const char *mode = argc > 2 ? argv[2] : getenv("STAMP_CASE");
    const char *gate_path = argc > 3 ? argv[3] : getenv("STAMP_GATE");
    char buf[64];
    int fd = report ? open(report, O_WRONLY | O_APPEND) : -1;
    int n = snprintf(buf, sizeof buf, "S %d %lld\n", (int)getpid(), t0);
    if (fd < 0 || write(fd, buf, n) != n) return 2;
    if (mode && gate_path && strcmp(mode, "crash") == 0) {
        int gate = open(gate_path, O_RDONLY);
        char c;
        if (gate < 0 || read(gate, &c, 1) != 1) return 2;
        long long t1 = now();
        n = snprintf(buf, sizeof buf, "E %d %lld\n", (int)getpid(), t1);
        if (write(fd, buf, n) != n) return 2;
        _exit(1);
    }
    for (;;) pause();
}
"#;

/// The baseline supervisor: `loop fork|vfork CHILD ARGS...`. SIGTERM ends
/// it: the current child gets SIGKILL, is reaped, and the loop exits.
const LOOP_C: &str = r#"
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <unistd.h>
static volatile pid_t cur;
static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; if (cur > 0) kill(cur, SIGKILL); }
int main(int argc, char **argv) {
    (void)argc;
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, 0);
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    int use_vfork = argv[1][0] == 'v';
    while (!stop) {
        /* SIGTERM waits until cur names the child, so it is never missed. */
        sigprocmask(SIG_BLOCK, &term, &old);
        pid_t p = use_vfork ? vfork() : fork();
        if (p == 0) {
            /* PROCSUP_BB_LOOP_SETSID: a session of its own, as supervise's
               children get: the C floor with that one guarantee. */
            if (getenv("PROCSUP_BB_LOOP_SETSID")) setsid();
            execv(argv[2], argv + 2);
            _exit(127);
        }
        cur = p;
        sigprocmask(SIG_SETMASK, &old, 0);
        if (p < 0) return 1;
        int st;
        while (waitpid(p, &st, 0) < 0 && errno == EINTR) {}
        cur = 0;
    }
    return 0;
}
"#;

fn realtime_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos() as i128
}

/// Compiles `src`, static where the C library allows; `None` without gcc.
fn compile(dir: &Path, name: &str, src: &str) -> Option<(PathBuf, bool)> {
    let c = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&c, src).ok()?;
    let gcc = |static_: bool| {
        let mut cmd = Command::new("gcc");
        cmd.arg("-O2");
        if static_ {
            cmd.arg("-static");
        }
        cmd.arg("-o").arg(&bin).arg(&c).stderr(Stdio::null());
        cmd.status().is_ok_and(|s| s.success())
    };
    if gcc(true) {
        return Some((bin, true));
    }
    gcc(false).then_some((bin, false))
}

/// Builds the `supervise` example in release and returns its path.
fn build_supervise() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--example", "supervise"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --release --example supervise failed");
    // target/release/deps/supervise_restart-HASH -> target/release/examples
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe.parent().and_then(Path::parent).expect("target/release").join("examples").join("supervise");
    assert!(bin.exists(), "{} not built", bin.display());
    bin
}

/// One stamp line: `S` (started, t0) or `E` (about to exit, t1).
struct Stamp {
    start: bool,
    pid: i32,
    ns: i128,
}

/// The stamps of one supervisor's children, from its FIFO.
struct Reports(BufReader<File>);

impl Reports {
    fn open(fifo: &Path) -> Self {
        // Read-write: opening waits for no writer, and no end-of-file
        // comes between children.
        let f = std::fs::OpenOptions::new().read(true).write(true).open(fifo).expect("open report fifo");
        Reports(BufReader::new(f))
    }

    /// The next stamp; panics after 10 s without one rather than hang.
    fn next(&mut self) -> Stamp {
        if !self.0.buffer().contains(&b'\n') {
            let mut pfd = [PollFd::new(self.0.get_ref().as_fd(), PollFlags::POLLIN)];
            let ready = poll(&mut pfd, PollTimeout::from(10_000u16)).expect("poll the report fifo");
            assert!(ready > 0, "no stamp within 10 s");
        }
        let mut line = String::new();
        self.0.read_line(&mut line).expect("stamp line");
        let mut f = line.split_whitespace();
        let (kind, pid, ns) = (f.next(), f.next(), f.next());
        Stamp {
            start: kind == Some("S"),
            pid: pid.and_then(|p| p.parse().ok()).expect("pid"),
            ns: ns.and_then(|t| t.parse().ok()).expect("time"),
        }
    }

    /// The next start stamp (an `E` line of a child is skipped).
    fn next_start(&mut self) -> Stamp {
        loop {
            let s = self.next();
            if s.start {
                return s;
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Steady,
    Crash,
}

/// One supervising process (a C loop or `supervise`) with its child.
struct Instance {
    process: Child,
    reports: Reports,
    gate: Option<File>,
    /// The running child's pid, from its start stamp.
    child: i32,
}

impl Instance {
    /// Starts `cmd`, whose child is `stamp REPORT case [GATE]`, and waits for
    /// its first child's stamp.
    fn start(mut cmd: Command, dir: &Path, tag: &str, case: Case, stamp: &Path) -> Instance {
        let (fifo, reports, gate) = Self::channels(dir, tag, case);
        cmd.arg(stamp).arg(&fifo);
        match &gate {
            None => cmd.arg("steady"),
            Some((path, _)) => cmd.arg("crash").arg(path),
        };
        Self::launch(cmd, dir, tag, reports, gate.map(|(_, f)| f))
    }

    /// Starts `runsv` on a service directory whose `./run` is the stamp
    /// child itself (a symlink), its arguments in the environment, which
    /// runsv passes on. Its `supervise/` (the records it rewrites at every
    /// death and start) is a symlink to `records`, as Debian links it into
    /// `/run`.
    fn start_runsv(runsv: &Path, dir: &Path, tag: &str, case: Case, stamp: &Path, records: &Path) -> Instance {
        let (fifo, reports, gate) = Self::channels(dir, tag, case);
        let service = dir.join(format!("{tag}.sv"));
        std::fs::create_dir(&service).expect("service dir");
        std::os::unix::fs::symlink(stamp, service.join("run")).expect("./run");
        let records = records.join(tag);
        std::fs::create_dir(&records).expect("runsv records dir");
        std::os::unix::fs::symlink(&records, service.join("supervise")).expect("./supervise");
        let mut cmd = Command::new(runsv);
        cmd.arg(&service).env("STAMP_REPORT", &fifo);
        match &gate {
            None => cmd.env("STAMP_CASE", "steady"),
            Some((path, _)) => cmd.env("STAMP_CASE", "crash").env("STAMP_GATE", path),
        };
        Self::launch(cmd, dir, tag, reports, gate.map(|(_, f)| f))
    }

    /// The report FIFO (opened) and, for a crash loop, the gate FIFO.
    fn channels(dir: &Path, tag: &str, case: Case) -> (PathBuf, Reports, Option<(PathBuf, File)>) {
        let fifo = dir.join(format!("{tag}.reports"));
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let reports = Reports::open(&fifo);
        let gate = (case == Case::Crash).then(|| {
            let gate = dir.join(format!("{tag}.gate"));
            nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
            let file = std::fs::OpenOptions::new().read(true).write(true).open(&gate).expect("open gate");
            (gate, file)
        });
        (fifo, reports, gate)
    }

    fn launch(mut cmd: Command, dir: &Path, tag: &str, mut reports: Reports, gate: Option<File>) -> Instance {
        let log = File::create(dir.join(format!("{tag}.log"))).expect("log file");
        cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("dup")).stderr(log);
        let process = cmd.spawn().expect("start the supervisor");
        let child = reports.next_start().pid;
        Instance { process, reports, gate, child }
    }

    /// Ends the running child (SIGKILL, or its gate), and returns µs from
    /// its end to its successor's first instruction.
    fn restart(&mut self) -> f64 {
        let ended = match &mut self.gate {
            None => {
                let at = realtime_ns();
                kill(Pid::from_raw(self.child), Signal::SIGKILL).expect("kill the child");
                at
            }
            Some(gate) => {
                gate.write_all(b"g").expect("open the gate");
                loop {
                    let s = self.reports.next();
                    if !s.start && s.pid == self.child {
                        break s.ns;
                    }
                }
            }
        };
        let next = self.reports.next_start();
        assert_ne!(next.pid, self.child, "a second start stamp of the same child");
        self.child = next.pid;
        (next.ns - ended) as f64 / 1e3
    }

    /// SIGTERM, then (after 5 s) SIGKILL; reaps it. `supervise` stops its
    /// children and removes its cgroups; a C loop kills and reaps its child.
    fn stop(mut self) {
        let pid = Pid::from_raw(self.process.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.process.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!("supervise_restart: pid {pid} did not stop on SIGTERM within 5 s: SIGKILL");
        let _ = self.process.kill();
        let _ = self.process.wait();
        // The child of a C loop would be left: it is killed by its pid.
        let _ = kill(Pid::from_raw(self.child), Signal::SIGKILL);
    }
}

/// Every supervising process of one case, all started at once and idle
/// between rounds.
struct World {
    fork: Instance,
    vfork: Instance,
    /// `supervise` rows, by tag.
    sups: Vec<(&'static str, Instance)>,
    /// runit's `runsv`, steady case only, where it is installed.
    runit: Option<Instance>,
}

/// The `supervise` rows: tag, what, extra arguments (`{dir}`: a state dir).
const SUPERVISE_ROWS: &[(&str, &str, &[&str])] = &[
    ("state_dir", "defaults + --state-dir (cgroup, die-with-parent, group, pidfd, record)", &["--state-dir", "{dir}"]),
    ("defaults", "defaults (cgroup, die-with-parent, group, pidfd)", &[]),
    ("no_cgroups", "--no-cgroups (die-with-parent, group, pidfd)", &["--no-cgroups"]),
];

struct Setup {
    dir: tempfile::TempDir,
    /// State directories on disk (a state dir lives under /var/lib, not on
    /// a tmpfs), under target/.
    state: tempfile::TempDir,
    stamp: PathBuf,
    static_stamp: bool,
    looper: PathBuf,
    supervise: PathBuf,
    /// `runsv` from `PROCSUP_BB_RUNSV` or the `PATH`, if any.
    runsv: Option<PathBuf>,
    /// Where runsv keeps its records: a tmpfs (`/dev/shm`) where there is
    /// one, as Debian's `/run/runit/supervise.NAME`; else `dir`.
    runit_records: Option<tempfile::TempDir>,
}

impl Setup {
    fn new() -> Option<Setup> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (Some((stamp, static_stamp)), Some((looper, _))) =
            (compile(dir.path(), "stamp", STAMP_C), compile(dir.path(), "loop", LOOP_C))
        else {
            eprintln!("supervise_restart: no gcc here; nothing measured");
            return None;
        };
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        let state = tempfile::tempdir_in(&base).unwrap_or_else(|_| tempfile::tempdir().expect("tempdir"));
        let runsv = std::env::var_os("PROCSUP_BB_RUNSV").map(PathBuf::from).or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("runsv")).find(|p| p.is_file())
        });
        let runit_records = tempfile::tempdir_in("/dev/shm").ok();
        Some(Setup { dir, state, stamp, static_stamp, looper, supervise: build_supervise(), runsv, runit_records })
    }

    fn world(&self, case: Case) -> World {
        let name = match case {
            Case::Steady => "steady",
            Case::Crash => "crash",
        };
        let dir = self.dir.path();
        let c_loop = |how: &str| {
            let mut cmd = Command::new(&self.looper);
            cmd.arg(how);
            Instance::start(cmd, dir, &format!("{name}-{how}"), case, &self.stamp)
        };
        let (fork, vfork) = (c_loop("fork"), c_loop("vfork"));
        let sups = SUPERVISE_ROWS
            .iter()
            .map(|&(tag, _, extra)| {
                let state = self.state.path().join(format!("{name}-{tag}"));
                let mut cmd = Command::new(&self.supervise);
                let grace = std::env::var("PROCSUP_BB_GRACE").unwrap_or_else(|_| "0.002".into());
                cmd.args(["--backoff", "fixed:0", "--start-grace", &grace, "--name", "stamp"]);
                cmd.args(extra.iter().map(|a| if *a == "{dir}" { state.as_os_str() } else { a.as_ref() }));
                cmd.arg("--");
                (tag, Instance::start(cmd, dir, &format!("{name}-{tag}"), case, &self.stamp))
            })
            .collect();
        // runsv waits 1 s before a restart of a child that ran less than
        // 1 s, always: there is no crash loop to measure against it.
        let runit = match (&self.runsv, case, runit_rounds()) {
            (Some(runsv), Case::Steady, 1..) => {
                let records = self.runit_records.as_ref().map_or(dir, |d| d.path());
                Some(Instance::start_runsv(runsv, dir, &format!("{name}-runit"), case, &self.stamp, records))
            }
            _ => None,
        };
        World { fork, vfork, sups, runit }
    }
}

impl World {
    fn stop(self) {
        self.fork.stop();
        self.vfork.stop();
        if let Some(runit) = self.runit {
            runit.stop();
        }
        for (_, s) in self.sups {
            s.stop();
        }
    }
}

/// One criterion call: `iters` paired restarts, µs each, per side.
struct Sample {
    baseline: Vec<f64>,
    ours: Vec<f64>,
}

struct Row {
    case: Case,
    what: &'static str,
    baseline: &'static str,
    samples: Vec<Sample>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_row(
    g: &mut BenchmarkGroup<'_, WallTime>,
    world: &mut World,
    (case, tag, what): (Case, &'static str, &'static str),
    rows: &mut Vec<Row>,
) {
    let vfork_base = tag == "no_cgroups";
    let up = Duration::from_millis(std::env::var("PROCSUP_BB_UP_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(5));
    let mut samples = Vec::new();
    g.bench_function(tag, |b| {
        b.iter_custom(|iters| {
            let World { fork, vfork, sups, .. } = &mut *world;
            let base = if vfork_base { vfork } else { fork };
            let ours = &mut sups.iter_mut().find(|(t, _)| *t == tag).expect("row").1;
            let mut sample = Sample { baseline: Vec::new(), ours: Vec::new() };
            // One side's restarts, then the other's, the order turned each
            // sample: neither host's work after a restart (a successor
            // made, records, event lines) ever overlaps the other side's
            // restart, which would slow that side and flatter this one.
            let ours_first = samples.len() % 2 == 1;
            for block in 0..2 {
                std::thread::sleep(SETTLE);
                let (side, times) = if (block == 0) == ours_first {
                    (&mut *ours, &mut sample.ours)
                } else {
                    (&mut *base, &mut sample.baseline)
                };
                // Two restarts not measured: the child before waited through
                // the other side's block, so `supervise` takes the first
                // restart's child for no crash loop's, makes its successor
                // 1 ms on, and in a crash loop that child dies before: the
                // second restart spawns at once. From the third on, a
                // crash loop is one.
                for n in 0..iters + WARM_UP {
                    if case == Case::Steady {
                        // The child lives past the start grace: running.
                        std::thread::sleep(up);
                    }
                    let t = side.restart();
                    if n >= WARM_UP {
                        times.push(t);
                    }
                }
            }
            let total = Duration::from_secs_f64(sample.ours.iter().sum::<f64>() / 1e6);
            samples.push(sample);
            total
        });
    });
    if samples.is_empty() {
        return; // filtered out, or `--list`
    }
    let measured = samples.split_off(samples.len().saturating_sub(SAMPLES));
    rows.push(Row { case, what, baseline: if vfork_base { "C vfork loop" } else { "C fork loop" }, samples: measured });
}

/// Rounds of the runit comparison: `PROCSUP_BB_RUNIT_ROUNDS`, default 20
/// (0: none).
fn runit_rounds() -> usize {
    std::env::var("PROCSUP_BB_RUNIT_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

/// How long each child lives in a runit round: past the 1 s under which
/// runsv waits 1 s before it restarts (its throttle, not its restart path).
const RUNIT_UP: Duration = Duration::from_millis(1200);

/// One side of the runit comparison: who, and µs per round.
struct Side {
    who: String,
    times: Vec<f64>,
}

/// The runit comparison, outside criterion (a round takes over a second):
/// every child of the steady world lives `RUNIT_UP`, then each is ended in
/// turn and its successor timed, the order turned by one each round. The
/// first side is the C fork loop, the third runsv.
fn runit_compare(world: &mut World) -> Vec<Side> {
    let World { fork, vfork, sups, runit } = world;
    let Some(runit) = runit.as_mut() else {
        return Vec::new();
    };
    let mut sides: Vec<(String, &mut Instance)> =
        vec![("C fork loop".into(), fork), ("C vfork loop".into(), vfork), ("runit (runsv)".into(), runit)];
    sides.extend(sups.iter_mut().map(|(tag, i)| (format!("supervise, {tag}"), i)));
    let mut times = vec![Vec::new(); sides.len()];
    for round in 0..runit_rounds() {
        std::thread::sleep(RUNIT_UP);
        for k in 0..sides.len() {
            let i = (round + k) % sides.len();
            if k > 0 {
                // The side before is done with its restart's aftermath.
                std::thread::sleep(SETTLE);
            }
            times[i].push(sides[i].1.restart());
        }
    }
    sides.into_iter().zip(times).map(|((who, _), times)| Side { who, times }).collect()
}

fn print_runit(sides: &[Side], records_on_tmpfs: bool) {
    let [fork, vfork, runit, ..] = sides else {
        return;
    };
    let paired =
        |side: &Side, base: &Side| median(side.times.iter().zip(&base.times).map(|(ours, base)| ours / base).collect());
    println!();
    println!(
        "steady against runit: each child up {} ms, then SIGKILL; {} rounds, each ends every side in turn;",
        RUNIT_UP.as_millis(),
        fork.times.len()
    );
    println!(
        "runsv's records on {}; supervise's state_dir on disk; µs from the kill to the successor's main, median;",
        if records_on_tmpfs { "a tmpfs (/dev/shm)" } else { "disk" }
    );
    println!("paired = median of the per-round ratio");
    println!("{:<28} {:>9} {:>14} {:>15} {:>15}", "who", "µs", "vs fork loop", "vs vfork loop", "vs runit");
    for side in sides {
        println!(
            "{:<28} {:>9.1} {:>13.2}x {:>14.2}x {:>14.2}x",
            side.who,
            median(side.times.clone()),
            paired(side, fork),
            paired(side, vfork),
            paired(side, runit)
        );
    }
}

fn print_table(rows: &[Row], static_stamp: bool) {
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "supervise restart latency, µs from the child's end (SIGKILL, or its exit(1)) to its successor's main ({} stamp child);",
        if static_stamp { "static" } else { "dynamic" }
    );
    println!("median over every restart of criterion's measurement samples; baseline interleaved restart by restart;");
    println!("paired = median over the samples of each sample's own ratio of medians");
    println!(
        "{:<7} {:<72} {:<12} {:>5} {:>9} {:>9} {:>7} {:>7}",
        "case",
        "supervise --backoff fixed:0 --start-grace 0.002 ...",
        "baseline",
        "n",
        "base µs",
        "ours µs",
        "ratio",
        "paired"
    );
    for row in rows {
        let all = |side: fn(&Sample) -> &Vec<f64>| row.samples.iter().flat_map(|s| side(s).iter().copied()).collect();
        let base = median(all(|s| &s.baseline));
        let ours = median(all(|s| &s.ours));
        let paired = median(row.samples.iter().map(|s| median(s.ours.clone()) / median(s.baseline.clone())).collect());
        let n: usize = row.samples.iter().map(|s| s.ours.len()).sum();
        let case = if row.case == Case::Steady { "steady" } else { "crash" };
        println!(
            "{case:<7} {:<72} {:<12} {n:>5} {base:>9.1} {ours:>9.1} {:>6.2}x {paired:>6.2}x",
            row.what,
            row.baseline,
            ours / base
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let listing = std::env::args().any(|a| a == "--list");
    let setup = if listing { None } else { Setup::new() };
    let mut rows = Vec::new();
    let mut runit = Vec::new();
    for case in [Case::Steady, Case::Crash] {
        let name = if case == Case::Steady { "supervise_restart_steady" } else { "supervise_restart_crash" };
        let mut g = c.benchmark_group(name);
        g.sample_size(SAMPLES);
        g.sampling_mode(SamplingMode::Flat);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(3));
        let Some(setup) = &setup else {
            if listing {
                // `--list`: the names only, nothing runs.
                for &(tag, _, _) in SUPERVISE_ROWS {
                    g.bench_function(tag, |b| b.iter(|| ()));
                }
            }
            continue;
        };
        let mut world = setup.world(case);
        for &(tag, what, _) in SUPERVISE_ROWS {
            bench_row(&mut g, &mut world, (case, tag, what), &mut rows);
        }
        g.finish();
        if case == Case::Steady {
            runit = runit_compare(&mut world);
        }
        world.stop();
    }
    c.final_summary();
    if let Some(setup) = &setup {
        print_table(&rows, setup.static_stamp);
        match &setup.runsv {
            Some(_) => print_runit(&runit, setup.runit_records.is_some()),
            None => println!("\nno runsv (runit) here, nor PROCSUP_BB_RUNSV: no runit comparison"),
        }
    }
}
