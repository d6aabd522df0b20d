//! Crash safety with real processes: children die with their host; with a
//! state directory, a restarted host stops what a crashed one left, and
//! never signals a process with a recycled pid.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;
mod real;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bin::Cli;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use procsup::{Backoff, Discard, Event, Exit, ProcessSpec, RestartPolicy, State, Supervisor, UnixSys};
use real::{alive, wait_for, Host};

/// State (field 3) and start time (field 22) of a process, if any.
fn stat_of(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = f.next()?.chars().next()?;
    Some((state, f.nth(22 - 4)?.parse().ok()?))
}

/// Kills test-started processes that may have outlived a failed assertion:
/// each (and its group, which it leads) only while it is still the process
/// seen when the reaper was made. By then a process may have died and, where
/// init reaps, its pid have gone to another process.
struct Reaper(Vec<(i32, Option<u64>)>);

impl Reaper {
    fn new(pids: &[i32]) -> Reaper {
        Reaper(pids.iter().map(|&pid| (pid, stat_of(pid).map(|(_, start)| start))).collect())
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for &(pid, start) in &self.0 {
            let same = |st: Option<(char, u64)>| matches!(st, Some((s, t)) if Some(t) == start && s != 'Z' && s != 'X');
            if same(stat_of(pid)) {
                // A live leader holds its group id: the group is its own.
                let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// The entries of a state directory but its lock file.
fn records(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // The lock, the host record that names the host's cgroups, and
        // supervise's control socket.
        .filter(|n| n != ".lock" && !n.starts_with(".procsup-host.") && n != "control")
        .collect()
}

/// `<name>.<pid>` of every child a `supervise` reported spawned.
fn spawned_records(cli: &Cli) -> HashSet<String> {
    cli.seen
        .iter()
        .filter(|l| l.starts_with("event=spawned"))
        .map(|l| format!("{}.{}", bin::field(l, "name").unwrap(), bin::field(l, "pid").unwrap()))
        .collect()
}

#[test]
fn children_die_with_their_host() {
    let _serial = real::serial();
    let mut host = Cli::start(&["-p", "a=sleep 60", "-p", "b=sleep 60"]);
    let pids = host.pids_of("event=spawned", 2);
    let _reaper = Reaper::new(&pids);
    let _cgroups = real::CgroupGuard::of(&pids);
    assert!(pids.iter().all(|&p| alive(p)));
    let t0 = Instant::now();
    host.sigkill();
    assert!(wait_for(Duration::from_secs(5), || pids.iter().all(|&p| !alive(p))), "children outlived the host");
    // Measured, not asserted tightly: the README quotes it.
    eprintln!("children gone {:?} after the host's SIGKILL", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_restarted_host_stops_what_a_crashed_one_left() {
    let _serial = real::serial();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state_arg = state.to_str().unwrap();
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["--state-dir".into(), state_arg.into(), "--stop-timeout".into(), "0.5".into()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend(["-p".into(), "polite=sleep 60".into(), "-p".into(), "deaf=./deaf.sh".into()]);
        v
    };
    // `deaf` ignores SIGTERM (an ignored signal survives exec into sleep).
    let deaf = dir.path().join("deaf.sh");
    std::fs::write(&deaf, "#!/bin/sh\ntrap '' TERM\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&deaf, std::fs::Permissions::from_mode(0o755)).unwrap();
    let first_args = args(&["--no-die-with-parent"]);
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let mut first = Cli::start_in("supervise", dir.path(), &first_args);
    let old = first.pids_of("event=spawned", 2);
    let _reaper = Reaper::new(&old);
    assert_eq!(records(&state), spawned_records(&first), "one record per child");
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    first.sigkill();
    std::thread::sleep(Duration::from_millis(200));
    assert!(old.iter().all(|&p| alive(p)), "without die-with-parent the children outlive the host");

    let second_args = args(&[]);
    let second_args: Vec<&str> = second_args.iter().map(String::as_str).collect();
    let mut second = Cli::start_in("supervise", dir.path(), &second_args);
    let stopped = second.pids_of("event=orphan_stopping", 2);
    assert_eq!(stopped.iter().copied().collect::<HashSet<_>>(), old.iter().copied().collect());
    let killed = second.pids_of("event=orphan_killed", 1);
    let new = second.pids_of("event=spawned", 2);
    let _reaper2 = Reaper::new(&new);
    let _cgroups = real::CgroupGuard::of(&new);
    assert!(old.iter().all(|&p| !alive(p)), "orphans survived");
    assert_eq!(killed.len(), 1);
    assert!(new.iter().all(|p| !old.contains(p)));
    // The records now name the new children.
    let recorded: HashSet<i32> = records(&state)
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(state.join(n)).unwrap();
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some("procsup-record 1"), "{text:?}");
            lines.next().unwrap().strip_prefix("pid ").unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(recorded, new.iter().copied().collect());
    drop(second);
}

/// Writes a record as the library does: the header, then `body`.
fn write_record(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), format!("procsup-record 1\n{body}")).unwrap();
}

fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// Records (with the header) that name a recycled pid, a gone one, or are
/// damaged after the header are removed; files without the header (one
/// naming a live process, an empty one) and a symlink are left as they
/// are. Nothing is signalled.
#[test]
fn recycled_pids_junk_and_symlinks_are_never_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    // An unrelated live process, owned by this test.
    let mut bystander = Command::new("sleep").arg("60").spawn().unwrap();
    let _reaper = Reaper::new(&[bystander.id() as i32]);
    let pid = bystander.id();
    let real_start = start_time(pid);
    let live = format!("pid {pid}\npgid {pid}\nstart_time {real_start}\n");
    write_record(&state, "recycled", &format!("pid {pid}\npgid {pid}\nstart_time {}\n", real_start + 1));
    write_record(&state, "truncated", &format!("pid {pid}\npgid {pid}\nstart_ti"));
    write_record(&state, "junk", "\u{1}\u{2}garbage\n");
    write_record(&state, "gone", "pid 4194000\npgid 4194000\nstart_time 1\n");
    std::fs::write(state.join("empty"), "").unwrap();
    std::fs::write(state.join("headless"), &live).unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, format!("procsup-record 1\n{live}")).unwrap();
    std::os::unix::fs::symlink(&target, state.join("link")).unwrap();

    let mut h = Host::new(UnixSys::new().state_dir(&state).unwrap());
    let stopping = h.sup.cleanup_orphans(Instant::now()).unwrap();
    h.log.extend(h.sup.drain_events().map(|e| (Instant::now(), e)));
    assert_eq!(stopping, 0);
    let discarded: Vec<(String, Discard)> = h
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            Event::OrphanDiscarded { name, reason } => Some((name.to_string(), *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        discarded,
        [
            ("gone".into(), Discard::Gone),
            ("junk".into(), Discard::Junk),
            ("recycled".into(), Discard::Recycled),
            ("truncated".into(), Discard::Junk),
        ]
    );
    assert_eq!(h.refused(), ["empty", "headless", "link"]);
    let left = ["empty", "headless", "link"].map(String::from).into();
    assert_eq!(records(&state), left, "records removed; the rest left alone");
    assert_eq!(std::fs::read_to_string(state.join("headless")).unwrap(), live);
    assert_eq!(std::fs::read_to_string(state.join("empty")).unwrap(), "");
    assert!(target.exists());
    std::thread::sleep(Duration::from_millis(50));
    assert!(bystander.try_wait().unwrap().is_none(), "the bystander was signalled");
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

#[test]
fn state_dir_must_be_private_and_real() {
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("real");
    std::fs::create_dir(&real_dir).unwrap();
    std::fs::set_permissions(&real_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real_dir, &link).unwrap();
    assert!(UnixSys::new().state_dir(&link).is_err(), "a symlinked state directory");
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(UnixSys::new().state_dir(&open).is_err(), "a world-writable state directory");
    if nix::unistd::geteuid().is_root() {
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
        nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        assert!(UnixSys::new().state_dir(&theirs).is_err(), "a directory owned by another user");
    }
    let fresh = dir.path().join("fresh");
    UnixSys::new().state_dir(&fresh).unwrap();
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
}

/// PR_SET_PDEATHSIG follows the spawning *thread*. What the docs promise:
/// when a thread that spawned children exits, those children get their
/// parent-death signal; the supervisor, driven from another thread, sees
/// them die by that signal and applies its policy. Children spawned with
/// `die_with_parent(None)` are untouched.
#[test]
fn children_of_an_exiting_spawner_thread_get_the_death_signal() {
    let _serial = real::serial();
    let mut sup = Supervisor::with_sys(UnixSys::new());
    let spec = |name: &str| {
        ProcessSpec::new(name, "sleep")
            .arg("60")
            .backoff(Backoff::fixed(Duration::from_millis(10)))
            .restart(RestartPolicy::Always)
    };
    sup.add_process(spec("bound")).unwrap();
    sup.add_process(spec("free").die_with_parent(None)).unwrap();
    let mut sup = std::thread::spawn(move || {
        sup.start_all(Instant::now()).unwrap();
        sup
    })
    .join()
    .unwrap();
    let bound = sup.status("bound").unwrap().pid.unwrap();
    let free = sup.status("free").unwrap().pid.unwrap();
    let _reaper = Reaper::new(&[bound.as_raw(), free.as_raw()]);
    assert!(wait_for(Duration::from_secs(5), || !alive(bound.as_raw())), "the death signal did not come");
    let end = Instant::now() + Duration::from_secs(5);
    while sup.status("bound").unwrap().last_exit.is_none() {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(5));
        sup.tick(Instant::now());
    }
    assert_eq!(sup.status("bound").unwrap().last_exit, Some(Exit::Signaled(9)));
    assert!(alive(free.as_raw()), "a child without die-with-parent was hit");
    // Driven from this (living) thread, the restart sticks.
    while sup.status("bound").unwrap().state != State::Starting {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(5));
        sup.tick(Instant::now());
    }
    let again = sup.status("bound").unwrap().pid.unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(again.as_raw()));
    let _reaper2 = Reaper::new(&[again.as_raw()]);
    sup.shutdown(Instant::now());
    let end = Instant::now() + Duration::from_secs(15);
    while !sup.is_idle() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
        sup.tick(Instant::now());
    }
    assert!(sup.is_idle());
}
