//! The state directory with real files: odd entries never block or fail
//! startup, records are per child, one host owns the directory, and a
//! zombie orphan counts as gone.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;
mod real;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bin::Cli;
use nix::sys::stat::Mode;
use procsup::{Event, ProcessSpec, Supervisor, UnixSys};
use real::Host;

/// The first line of every record procsup writes.
const HEADER: &str = "procsup-record 1\n";

/// A fresh private state directory inside `tmp`.
fn private_dir(tmp: &Path) -> PathBuf {
    let state = tmp.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    state
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)).unwrap();
}

/// A regular file, a FIFO, a UNIX socket, a directory and a name that is
/// not UTF-8: each odd one is refused once, left where it is, and the
/// start goes on.
#[test]
fn odd_entries_are_refused_and_startup_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let state = private_dir(tmp.path());
    mkfifo(&state.join("fifo"));
    let _sock = UnixListener::bind(state.join("sock")).unwrap();
    std::fs::create_dir(state.join("subdir")).unwrap();
    let latin1 = state.join(OsStr::from_bytes(b"caf\xe9"));
    std::fs::write(&latin1, "pid 4194000\npgid 4194000\nstart_time 1\n").unwrap();

    let mut h = Host::new(UnixSys::new().state_dir(&state).unwrap());
    h.add(ProcessSpec::new("web", "sleep").arg("60"));
    h.sup.start_all(Instant::now()).expect("odd entries never fail startup");
    h.log.extend(h.sup.drain_events().map(|e| (Instant::now(), e)));
    assert_eq!(h.count("spawned"), 1, "{:#?}", h.kinds());
    let mut refused = h.refused();
    refused.sort();
    assert_eq!(refused, ["caf\u{fffd}", "fifo", "sock", "subdir"], "{:#?}", h.kinds());
    for odd in ["fifo", "sock", "subdir"] {
        assert!(state.join(odd).symlink_metadata().is_ok(), "{odd} was removed");
    }
    assert!(latin1.exists(), "an entry that is not ours was removed");
}

/// Runs `cleanup_orphans` over and over while a racer changes the
/// directory under it. `setup` gets the text of a record the scans read but
/// leave alone (it names the scanning supervisor's own child) and returns
/// the racer's step. Fails if a scan returns an error, or blocks (then the
/// FIFOs of [`flip_records`] are opened for writing to set it free).
fn scan_while<M: FnMut() + Send + 'static>(state: &Path, setup: impl FnOnce(&str) -> M) {
    let _serial = real::serial();
    let (pid_tx, pid_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (tx, rx) = mpsc::channel();
    let dir = state.to_owned();
    let scanner = std::thread::spawn(move || {
        let mut sup = Supervisor::with_sys(UnixSys::new().state_dir(&dir).unwrap());
        sup.add_process(ProcessSpec::new("own", "sleep").arg("60")).unwrap();
        sup.start_all(Instant::now()).unwrap();
        pid_tx.send(sup.status("own").unwrap().pid.unwrap().as_raw()).unwrap();
        let _ = go_rx.recv();
        let end = Instant::now() + Duration::from_millis(1500);
        let mut errors = Vec::new();
        let mut scans = 0u32;
        while Instant::now() < end {
            if let Err(e) = sup.cleanup_orphans(Instant::now()) {
                errors.push(e.to_string());
            }
            sup.drain_events().for_each(drop);
            scans += 1;
        }
        let _ = tx.send((scans, errors));
        // Dropping `sup` kills and reaps its child.
    });
    let pid = pid_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let text = format!("{HEADER}pid {pid}\npgid {pid}\nstart_time {}\n", proc_start_time(pid as u32));
    let mut step = setup(&text);
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                step();
            }
        })
    };
    go_tx.send(()).unwrap();
    let outcome = rx.recv_timeout(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    racer.join().unwrap();
    if outcome.is_err() {
        // Blocked in an open: give it a writer so the thread can end.
        while !scanner.is_finished() {
            for name in (0..PAIRS).flat_map(|k| [format!("web{k}"), format!(".alt{k}")]) {
                let _ = nix::fcntl::open(
                    &state.join(name),
                    nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_NONBLOCK,
                    Mode::empty(),
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    scanner.join().unwrap();
    let (scans, errors) = outcome.expect("a scan blocked on the state directory");
    assert!(errors.is_empty(), "{} of {scans} scans failed: {:?}", errors.len(), &errors[..errors.len().min(3)]);
}

/// `text` under `name`, written atomically.
fn put_file(state: &Path, name: &str, text: &str) {
    let tmp = state.join(".racer");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, state.join(name)).unwrap();
}

const PAIRS: usize = 32;

/// Flips `webK` between a record and the odd file `make` put at `.altK`
/// (atomically: `RENAME_EXCHANGE`), so that a scan that checks an entry's
/// type by name before it opens it meets the odd file.
fn flip_records(state: &Path, make: fn(&Path)) {
    let dir = state.to_owned();
    scan_while(state, move |text| {
        for k in 0..PAIRS {
            put_file(&dir, &format!("web{k}"), text);
            make(&dir.join(format!(".alt{k}")));
        }
        let fd = std::fs::File::open(&dir).unwrap();
        move || {
            for k in 0..PAIRS {
                let (web, alt) = (format!("web{k}"), format!(".alt{k}"));
                let flags = nix::fcntl::RenameFlags::RENAME_EXCHANGE;
                nix::fcntl::renameat2(&fd, web.as_str(), &fd, alt.as_str(), flags).unwrap();
            }
        }
    });
}

#[test]
fn a_record_swapped_for_a_fifo_never_blocks_the_scan() {
    let tmp = tempfile::tempdir().unwrap();
    flip_records(&private_dir(tmp.path()), mkfifo);
}

/// A socket cannot be opened (`ENXIO`), also by root.
#[test]
fn a_record_swapped_for_an_unreadable_socket_never_fails_the_scan() {
    let tmp = tempfile::tempdir().unwrap();
    flip_records(&private_dir(tmp.path()), |path| drop(UnixListener::bind(path).unwrap()));
}

#[test]
fn an_entry_that_vanishes_mid_scan_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let state = private_dir(tmp.path());
    let dir = state.clone();
    scan_while(&state, move |text| {
        let text = text.to_owned();
        move || {
            for k in 0..PAIRS {
                put_file(&dir, &format!("web{k}"), &text);
            }
            for k in 0..PAIRS {
                std::fs::remove_file(dir.join(format!("web{k}"))).unwrap();
            }
        }
    });
}

/// The check: a FIFO, a name that is not UTF-8 and an unreadable
/// entry in the state directory; `supervise` starts its child within 1 s.
#[test]
fn supervise_starts_despite_odd_entries() {
    let _serial = real::serial();
    let tmp = tempfile::tempdir().unwrap();
    let state = private_dir(tmp.path());
    mkfifo(&state.join("fifo"));
    std::fs::write(state.join(OsStr::from_bytes(b"\xff\xfe")), "junk\n").unwrap();
    let _sock = UnixListener::bind(state.join("sock")).unwrap();
    let t0 = Instant::now();
    let mut cli = Cli::start(&["--state-dir", state.to_str().unwrap(), "--", "sleep", "60"]);
    let line = cli.expect("event=spawned");
    assert!(t0.elapsed() < Duration::from_secs(1), "the child started after {:?}", t0.elapsed());
    let pid: i32 = bin::field(&line, "pid").unwrap().parse().unwrap();
    cli.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
    assert!(!real::alive(pid));
}

/// The record files of a state directory (its lock file left out).
fn record_files(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // The lock, the host record that names the host's cgroups, and
        // supervise's control socket.
        .filter(|n| n != ".lock" && !n.starts_with(".procsup-host.") && n != "control")
        .collect();
    names.sort();
    names
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A rolling restart runs two children under one name: each has its own
/// record, so a crash mid-roll leaves neither untracked.
#[test]
fn a_roll_keeps_both_childrens_records() {
    let tmp = tempfile::tempdir().unwrap();
    let state = private_dir(tmp.path());
    let mut h = Host::new(UnixSys::new().state_dir(&state).unwrap());
    h.add(ProcessSpec::new("web", "sleep").arg("60").start_grace(Duration::from_millis(300)));
    h.start_all();
    h.run_until(Duration::from_secs(5), |h| h.count("running") == 1);
    let old = h.sup.status("web").unwrap().pid.unwrap();
    assert_eq!(record_files(&state), [format!("web.{old}")]);
    h.sup.rolling_restart(None, Instant::now()).unwrap();
    h.run_until(Duration::from_secs(5), |h| h.count("spawned") == 2);
    // While the replacement starts, the status shows the old child serving
    // and the new one aside (issue 11.9).
    let st = h.sup.status("web").unwrap();
    let new = st.replacement_pid.or(st.pid).unwrap();
    assert_ne!(old, new);
    // The replacement is starting, the old child still serves: both are
    // recorded, each with its own pid.
    assert!(real::alive(old.as_raw()));
    assert_eq!(record_files(&state), sorted(vec![format!("web.{old}"), format!("web.{new}")]));
    for pid in [old, new] {
        let text = std::fs::read_to_string(state.join(format!("web.{pid}"))).unwrap();
        assert!(text.starts_with(&format!("{HEADER}pid {pid}\n")), "{text:?}");
    }
    h.run_until(Duration::from_secs(10), |h| h.count("retired") == 1);
    assert!(!real::alive(old.as_raw()));
    h.run_until(Duration::from_secs(5), |_| record_files(&state) == [format!("web.{new}")]);
}

/// Two hosts, one state directory: the second is refused (exit 2, one line
/// naming the directory) before it touches anything; the first host's
/// child lives on and was not signalled.
#[test]
fn a_second_host_on_a_held_state_dir_exits_2_and_touches_nothing() {
    let _serial = real::serial();
    let tmp = tempfile::tempdir().unwrap();
    let state = private_dir(tmp.path());
    let state_arg = state.to_str().unwrap();
    let hit = tmp.path().join("term");
    let script = tmp.path().join("trap.sh");
    std::fs::write(&script, "#!/bin/sh\ntrap 'echo TERM >> \"$1\"; exit 0' TERM\nsleep 1000 &\nwait\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut first = Cli::start(&["--state-dir", state_arg, "--", script.to_str().unwrap(), hit.to_str().unwrap()]);
    let child: i32 = bin::field(&first.expect("event=spawned"), "pid").unwrap().parse().unwrap();

    let t0 = Instant::now();
    let mut second = Cli::start(&["--state-dir", state_arg, "--", "sleep", "60"]);
    let code = second.wait();
    assert!(t0.elapsed() < Duration::from_secs(3), "the second host took {:?}", t0.elapsed());
    assert_eq!(code, 2);
    let message = second.expect_err("supervise:");
    assert!(message.contains(state_arg) && message.contains("in use"), "{message}");
    assert!(second.seen.iter().all(|l| !l.contains("event=")), "the second host acted: {:#?}", second.seen);
    assert!(real::alive(child), "the first host's child is gone");
    assert!(!real::wait_for(Duration::from_millis(200), || hit.exists()), "the first host's child got SIGTERM");
    assert_eq!(record_files(&state), [format!("trap.sh.{child}")]);

    first.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(first.wait(), 0);
    assert!(!real::alive(child));
}

/// The test's own processes, killed and reaped on drop unless reaped
/// already (std never signals a child it has waited for).
struct Bystanders([std::process::Child; 2]);

impl Drop for Bystanders {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn proc_start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// A live process of this test, recorded in `state` under `file` as a
/// crashed host would have: an orphan, but not the supervisor's child.
fn recorded_bystander(state: &Path, file: impl FnOnce(u32) -> String) -> std::process::Child {
    let child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let pid = child.id();
    let pgid = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32))).unwrap();
    let text = format!("{HEADER}pid {pid}\npgid {pgid}\nstart_time {}\n", proc_start_time(pid));
    std::fs::write(state.join(file(pid)), text).unwrap();
    child
}

/// Orphans that are this test's children, not the supervisor's: once they
/// die of the stop signal they are zombies until the test reaps them. On
/// both wait paths a zombie counts as gone, so the host is idle after
/// shutdown; a record under its process name alone is handled alike.
#[test]
fn a_zombie_orphan_counts_as_gone_on_both_paths() {
    for (path, make) in real::both_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let state = private_dir(tmp.path());
        let mut bystanders = Bystanders([
            recorded_bystander(&state, |pid| format!("old.{pid}")),
            recorded_bystander(&state, |_| "legacy".into()),
        ]);
        let pids = bystanders.0.each_ref().map(|c| c.id() as i32);
        {
            let mut h = Host::new(make().state_dir(&state).unwrap());
            assert_eq!(h.sup.cleanup_orphans(Instant::now()).unwrap(), 2, "{path}");
            h.sup.shutdown(Instant::now());
            h.log.extend(h.sup.drain_events().map(|e| (Instant::now(), e)));
            h.run_until(Duration::from_secs(5), |h| h.sup.is_idle());
            let mut gone: Vec<i32> = h
                .log
                .iter()
                .filter_map(|(_, e)| match e {
                    Event::OrphanGone { pid, .. } => Some(pid.as_raw()),
                    _ => None,
                })
                .collect();
            gone.sort();
            let mut want = pids.to_vec();
            want.sort();
            assert_eq!(gone, want, "{path}");
            assert_eq!(h.count("orphan_killed"), 0, "{path}: SIGTERM was enough");
            assert!(record_files(&state).is_empty(), "{path}: {:?}", record_files(&state));
        }
        for child in &mut bystanders.0 {
            let status = child.wait().unwrap();
            assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(15), "{path}");
        }
    }
}

/// The lock in-process: a second `UnixSys` on a held directory gets the
/// typed error naming it and touches no record; children inherit neither
/// the lock nor the directory's fd; dropping the holder frees it.
#[test]
fn the_state_dir_lock_is_typed_private_to_the_host_and_freed_on_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let state = private_dir(tmp.path());
    let mut h = Host::new(UnixSys::new().state_dir(&state).unwrap());
    h.add(ProcessSpec::new("web", "sleep").arg("60"));
    h.start_all();
    let pid = h.sup.status("web").unwrap().pid.unwrap();
    // On the cgroup path the record is written at the next turn.
    h.run_until(Duration::from_secs(5), |_| !record_files(&state).is_empty());
    let before = record_files(&state);
    assert_eq!(before, [format!("web.{pid}")]);
    let host_records = || -> Vec<String> {
        let names = std::fs::read_dir(&state).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        names.filter(|n| n.starts_with(".procsup-host.")).collect()
    };
    if let Some(cgroups) = h.sup.sys().cgroup_dir() {
        let name = cgroups.file_name().unwrap().to_string_lossy();
        assert_eq!(host_records(), [format!(".procsup-host.{name}")], "the host's cgroup directory is recorded");
    }

    match UnixSys::new().state_dir(&state) {
        Err(procsup::Error::StateDirInUse { path }) => assert_eq!(path, state),
        other => panic!("expected StateDirInUse, got {other:?}"),
    }
    assert_eq!(record_files(&state), before, "the refused host touched a record");

    let inherited: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.unwrap().path()).ok())
        .filter(|target| target.starts_with(&state))
        .collect();
    assert!(inherited.is_empty(), "the child holds {inherited:?}");

    drop(h);
    assert!(!real::alive(pid.as_raw()));
    assert!(host_records().is_empty(), "the host record goes with the host's cgroup directory");
    UnixSys::new().state_dir(&state).expect("the lock dies with its holder");
}

/// The new-user trial: a state directory that already holds the user's
/// files. `supervise` starts its child at once, reports each file once as
/// not a record, and neither removes nor changes any of them, also on
/// shutdown.
#[test]
fn supervise_never_touches_files_that_are_not_procsups() {
    let _serial = real::serial();
    let tmp = tempfile::tempdir().unwrap();
    let sd5 = tmp.path().join("sd5");
    std::fs::create_dir(&sd5).unwrap(); // `mkdir sd5`: 0755 under the usual umask
    let users = [("notes.txt", "important\n"), ("backup.2024", "important\n"), ("report.1", "data\n")];
    for (name, text) in users {
        std::fs::write(sd5.join(name), text).unwrap();
    }
    let intact = |when: &str| {
        for (name, text) in users {
            let now = std::fs::read_to_string(sd5.join(name));
            assert_eq!(now.as_deref().ok(), Some(text), "{when}: {name}");
        }
    };
    let mut cli = Cli::start(&["--state-dir", sd5.to_str().unwrap(), "-p", "a=sleep 100"]);
    let line = cli.expect("event=spawned name=a");
    let pid: i32 = bin::field(&line, "pid").unwrap().parse().unwrap();
    let mut refused: Vec<String> = cli
        .seen
        .iter()
        .filter(|l| l.starts_with("event=orphan_refused"))
        .map(|l| bin::field(l, "name").unwrap())
        .collect();
    refused.sort();
    assert_eq!(refused, ["backup.2024", "notes.txt", "report.1"], "{:#?}", cli.seen);
    assert!(cli.seen.iter().all(|l| !l.starts_with("event=orphan_discarded")), "{:#?}", cli.seen);
    intact("while running");
    assert_eq!(
        record_files(&sd5),
        sorted(vec![format!("a.{pid}"), "backup.2024".into(), "notes.txt".into(), "report.1".into()])
    );
    cli.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
    assert!(!real::alive(pid));
    intact("after shutdown");
    assert_eq!(record_files(&sd5), ["backup.2024", "notes.txt", "report.1"], "only its own record went");
}

/// Polls `sys` (on its readiness fd, bounded) until the exit of `pid`.
fn poll_until_exited(sys: &mut UnixSys, pid: nix::unistd::Pid) {
    use procsup::{Sys, SysEvent};
    use std::os::fd::AsFd;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = Vec::new();
    loop {
        events.clear();
        sys.poll(&mut events);
        if events.iter().any(|e| matches!(e, SysEvent::Exited { pid: p, .. } if *p == pid)) {
            return;
        }
        assert!(Instant::now() < deadline, "no exit of {pid} within 10 s");
        let fds = sys.readiness_fds();
        let mut pfds: Vec<_> =
            fds.iter().map(|fd| nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)).collect();
        let _ = nix::poll::poll(&mut pfds, nix::poll::PollTimeout::from(100u8));
    }
}

/// A child on the cgroup path that is gone before its record was written
/// never gets one: nothing is left to remove, and no record names a pid
/// that is no longer ours.
#[test]
fn a_child_gone_before_its_record_never_gets_one() {
    use procsup::{Containment, Sys};
    let tmp = tempfile::tempdir().unwrap();
    let state = private_dir(tmp.path());
    let mut sys = UnixSys::new().state_dir(&state).unwrap();
    let pid = sys.spawn(&ProcessSpec::new("web", "sleep").arg("60")).unwrap();
    if sys.containment(pid) != Containment::Cgroup {
        eprintln!("no writable cgroup v2 here: nothing to test");
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        poll_until_exited(&mut sys, pid);
        return;
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    // Not one poll before the exit is there to report (a poll that
    // reports none would write the record).
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| !s.contains(") Z ")) {
        assert!(Instant::now() < deadline, "pid {pid} is no zombie within 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(record_files(&state), Vec::<String>::new());
    poll_until_exited(&mut sys, pid);
    for _ in 0..3 {
        sys.poll(&mut Vec::new());
    }
    assert_eq!(record_files(&state), Vec::<String>::new());
    assert_eq!(sys.wake_after(), None);
}

/// Records are kept off the restart path. On the cgroup path a new
/// child's record is written at the first poll that reports no exit (its
/// cgroup and the host record find its tree meanwhile), not while its
/// `execve` needs the CPU; on the process-group path, where the record is
/// all that finds the tree, as the spawn returns. A gone child's record is
/// removed at such a poll too, never on the way to its successor's spawn
/// (a read and an unlink would delay every restart). Until then the host
/// is asked to come back within a millisecond.
#[test]
fn records_are_written_and_removed_off_the_restart_path() {
    use procsup::{Containment, Sys};
    let soon = Some(Duration::from_millis(1));
    for (label, sys) in [("cgroup", UnixSys::new()), ("group", UnixSys::new().without_cgroups())] {
        let tmp = tempfile::tempdir().unwrap();
        let state = private_dir(tmp.path());
        let mut sys = sys.state_dir(&state).unwrap();
        let spec = ProcessSpec::new("web", "sleep").arg("60");
        let first = sys.spawn(&spec).unwrap();
        let cgroup = sys.containment(first) == Containment::Cgroup;
        if label == "cgroup" && !cgroup {
            eprintln!("no writable cgroup v2 here: the cgroup path is not tested");
            nix::sys::signal::kill(first, nix::sys::signal::Signal::SIGKILL).unwrap();
            poll_until_exited(&mut sys, first);
            continue;
        }
        if cgroup {
            assert_eq!(record_files(&state), Vec::<String>::new(), "{label}: written at the spawn");
            let hosts = std::fs::read_dir(&state)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".procsup-host."))
                .count();
            assert_eq!(hosts, 1, "{label}: the host record stands in for it");
            assert_eq!(sys.wake_after(), soon, "{label}: a record waits: the host must come back");
            sys.poll(&mut Vec::new());
        }
        assert_eq!(record_files(&state), [format!("web.{first}")], "{label}");
        assert_eq!(sys.wake_after(), None, "{label}");
        nix::sys::signal::kill(first, nix::sys::signal::Signal::SIGKILL).unwrap();
        poll_until_exited(&mut sys, first);
        assert_eq!(record_files(&state), [format!("web.{first}")], "{label}: removed on the way to the restart");
        assert_eq!(sys.wake_after(), soon, "{label}: a removal waits: the host must come back");
        let second = sys.spawn(&spec).unwrap();
        let mut expected = vec![format!("web.{first}")];
        if !cgroup {
            expected.push(format!("web.{second}"));
        }
        assert_eq!(record_files(&state), sorted(expected), "{label}: right after the successor's spawn");
        // A poll with no exit does what was left.
        sys.poll(&mut Vec::new());
        assert_eq!(record_files(&state), [format!("web.{second}")], "{label}");
        assert_eq!(sys.wake_after(), None, "{label}");
        nix::sys::signal::kill(second, nix::sys::signal::Signal::SIGKILL).unwrap();
        poll_until_exited(&mut sys, second);
        sys.poll(&mut Vec::new());
        assert_eq!(record_files(&state), Vec::<String>::new(), "{label}");
        assert_eq!(sys.wake_after(), None, "{label}");
    }
}
