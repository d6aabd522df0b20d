//! A host SIGKILLed at any instant leaks no tree: round after round, a
//! `supervise` with five crash-looping programs (each leaves a `setsid
//! sleep` behind: out of its group and session, in its cgroup only) is
//! killed at a random moment, and the next host on the same state
//! directory must stop whatever the dead one left, however far its spawn
//! and its record had got. At the end nothing carrying the test's mark
//! runs and no cgroup of those hosts is left.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;
mod real;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use procsup::{Event, Supervisor, UnixSys};

const ROUNDS: usize = 100;
const PROGRAMS: usize = 5;
const MARK: &str = "PROCSUP_CRASH_STRESS";

/// The pids of live (not zombie) processes whose environment carries
/// `MARK=mark`.
fn marked(mark: &str) -> Vec<i32> {
    let needle = format!("{MARK}={mark}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else { continue };
        if !env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
            continue;
        }
        let state = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()));
        if !matches!(state, Some('Z' | 'X') | None) {
            pids.push(pid);
        }
    }
    pids
}

/// The cgroup2 directory procsup makes its per-host directories under:
/// this test's own cgroup (the hosts are its children).
fn cgroup_base() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = info.lines().find_map(|l| {
        let (fields, tail) = l.split_once(" - ")?;
        (tail.split(' ').next()? == "cgroup2").then(|| fields.split(' ').nth(4).map(PathBuf::from))?
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let place = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(mount.join(place.trim_start_matches('/')))
}

/// The per-host cgroup directories of the test's hosts still there.
fn leftover_roots(base: &Path, hosts: &[u32]) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(base) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            hosts.iter().any(|h| name.starts_with(&format!("procsup-{h}-")))
        })
        .map(|e| e.path())
        .collect()
}

/// Ends what a failed run leaves, all of it the test's own: marked
/// processes, by pid, and the cgroups its hosts made (`cgroup.kill`).
struct Cleanup {
    mark: String,
    base: Option<PathBuf>,
    hosts: Vec<u32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in marked(&self.mark) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let Some(base) = &self.base else { return };
        for root in leftover_roots(base, &self.hosts) {
            let children: Vec<PathBuf> = std::fs::read_dir(&root)
                .map(|d| d.flatten().filter(|e| e.path().join("cgroup.procs").is_file()).map(|e| e.path()).collect())
                .unwrap_or_default();
            for c in &children {
                let _ = std::fs::write(c.join("cgroup.kill"), "1");
            }
            real::wait_for(Duration::from_secs(5), || {
                children.iter().for_each(|c| drop(std::fs::remove_dir(c)));
                std::fs::remove_dir(&root).is_ok() || !root.exists()
            });
        }
    }
}

/// A small xorshift: the delays differ per run, and the seed is printed so
/// a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs the library host on `state` until every orphan it found is gone.
fn last_host(state: &Path) -> usize {
    // The dead host's lock goes with the last process holding its fd: a
    // child it was spawning, killed between its clone and its exec, may
    // hold it a moment longer.
    let mut sys = None;
    real::wait_for(Duration::from_secs(5), || {
        sys = UnixSys::new().state_dir(state).ok();
        sys.is_some()
    });
    let mut sup = Supervisor::with_sys(sys.expect("the dead hosts' state directory lock is freed"));
    let stopping = sup.cleanup_orphans(Instant::now()).unwrap();
    let mut gone = 0;
    let end = Instant::now() + Duration::from_secs(30);
    while gone < stopping {
        assert!(Instant::now() < end, "{} of {stopping} orphans not gone within 30 s", stopping - gone);
        let now = Instant::now();
        let wait = sup.poll_timeout(now).map_or(Duration::from_millis(20), |t| t.min(Duration::from_millis(20)));
        std::thread::sleep(wait);
        sup.tick(Instant::now());
        gone += sup.drain_events().filter(|e| matches!(e, Event::OrphanGone { .. })).count();
    }
    stopping
}

#[test]
fn a_host_killed_at_any_instant_leaks_no_tree() {
    let _serial = real::serial();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let mark = format!("{}-{seed}", std::process::id());
    let base = cgroup_base();
    assert!(base.as_ref().is_some_and(|b| b.join("cgroup.procs").is_file()), "no cgroup v2 here: {base:?}");
    let mut cleanup = Cleanup { mark: mark.clone(), base: base.clone(), hosts: Vec::new() };

    let mut args: Vec<String> =
        ["--state-dir", state.to_str().unwrap(), "--backoff", "fixed:0.005", "--stop-timeout", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    for k in 0..PROGRAMS {
        args.push("-p".into());
        args.push(format!("w{k}=sh -c 'setsid sleep 300 & exit 1'"));
    }
    for _ in 0..ROUNDS {
        let mut host = Command::new(bin::supervise_bin())
            .args(&args)
            .env(MARK, &mark)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        cleanup.hosts.push(host.id());
        // The instant of the crash is the point of the test: any moment of
        // the host's first 150 ms.
        std::thread::sleep(Duration::from_micros(rng.below(150_000)));
        let _ = kill(Pid::from_raw(host.id() as i32), Signal::SIGKILL);
        host.wait().unwrap();
    }
    let stopped = last_host(&state);
    eprintln!("the last host stopped {stopped} trees");
    // What the last host stopped is gone once its events say so; a
    // process the kernel is still tearing down gets a bounded moment.
    let clean = real::wait_for(Duration::from_secs(5), || marked(&mark).is_empty());
    let survivors: Vec<(i32, String)> = marked(&mark)
        .into_iter()
        .map(|p| {
            (
                p,
                std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                    .unwrap_or_default()
                    .lines()
                    .last()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    let roots = leftover_roots(base.as_ref().unwrap(), &cleanup.hosts);
    assert!(clean && survivors.is_empty(), "{} processes survived their hosts: {survivors:?}", survivors.len());
    assert!(roots.is_empty(), "cgroups left behind: {roots:?}");
}
