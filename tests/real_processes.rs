//! The supervisor with real processes through `UnixSys`.
// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod real;

use std::time::Duration;

use nix::errno::Errno;
use procsup::{Backoff, Event, Exit, FatalReason, Output, ProcessSpec, RestartPolicy, State};
use real::{alive, both_paths, wait_for, Host};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn crashing_child_is_respawned_after_its_backoff() {
    for (path, make_sys) in both_paths() {
        let mut h = Host::new(make_sys());
        h.add(
            ProcessSpec::new("crash", "sh")
                .args(["-c", "exit 1"])
                .backoff(Backoff::fixed(ms(100)))
                .start_grace(ms(500)),
        );
        h.start_all();
        h.run_until(Duration::from_secs(10), |h| h.count("spawned") >= 3);
        let exits: Vec<_> = h.log.iter().filter(|(_, e)| e.kind() == "exited").collect();
        assert!(matches!(exits[0].1, Event::Exited { exit: Exit::Exited(1), .. }), "{path}");
        let spawns: Vec<_> = h.log.iter().filter(|(_, e)| e.kind() == "spawned").map(|(t, _)| *t).collect();
        let backoffs: Vec<_> = h.log.iter().filter(|(_, e)| e.kind() == "backoff").map(|(t, _)| *t).collect();
        assert!(spawns[1] - backoffs[0] >= ms(100), "{path}: respawned before its backoff");
        assert!(h.events("backoff").iter().all(|e| e.to_string().contains("delay_ms=100")), "{path}");
    }
}

#[test]
fn host_children_keep_their_exit_status() {
    for (path, make_sys) in both_paths() {
        let mut mine = std::process::Command::new("sh").args(["-c", "sleep 0.2; exit 7"]).spawn().unwrap();
        let mut h = Host::new(make_sys());
        h.add(ProcessSpec::new("crash", "sh").args(["-c", "exit 1"]).backoff(Backoff::fixed(ms(10))));
        h.start_all();
        // Many reaps happen while the host's own child exits.
        h.run_until(Duration::from_secs(10), |h| h.count("exited") >= 20);
        let status = mine.wait().expect("the host's child is still the host's to reap");
        assert_eq!(status.code(), Some(7), "{path}");
    }
}

#[test]
fn env_and_cwd_reach_the_child() {
    let mut h = Host::new(procsup::UnixSys::new());
    h.add(
        ProcessSpec::new("env", "sh")
            .args(["-c", "echo \"$FOO|$(pwd)|${HOME:-unset}\""])
            .env("FOO", "bar")
            .env_remove("HOME")
            .current_dir("/tmp")
            .stdout(Output::Capture)
            .restart(RestartPolicy::Never),
    );
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("exited") == 1);
    assert_eq!(h.lines(), ["bar|/tmp|unset"]);
    assert_eq!(h.sup.status("env").unwrap().state, State::Exited);
}

#[test]
fn stop_escalates_to_sigkill_only_when_needed() {
    for (path, make_sys) in both_paths() {
        let mut h = Host::new(make_sys());
        // Exits 0.5 s after SIGTERM; ignores SIGTERM.
        h.add(
            ProcessSpec::new("polite", "sh")
                .args(["-c", "trap 'sleep 0.5; exit 0' TERM; while :; do sleep 0.05; done"])
                .stop_timeout(Duration::from_secs(3))
                .stderr(Output::Null),
        );
        h.add(
            ProcessSpec::new("deaf", "sh")
                .args(["-c", "trap '' TERM; while :; do sleep 0.05; done"])
                .stop_timeout(ms(300)),
        );
        h.start_all();
        h.run_until(Duration::from_secs(5), |h| h.count("running") == 2);
        let t0 = std::time::Instant::now();
        h.sup.stop_all(t0);
        h.run_until(Duration::from_secs(10), |h| h.count("stopped") == 2);
        let polite = h.sup.status("polite").unwrap();
        let deaf = h.sup.status("deaf").unwrap();
        assert_eq!(deaf.last_exit, Some(Exit::Signaled(9)), "{path}");
        assert_ne!(polite.last_exit, Some(Exit::Signaled(9)), "{path}: polite was killed");
        let killed: Vec<_> = h.events("killed").iter().map(|e| e.name().to_owned()).collect();
        assert_eq!(killed, ["deaf"], "{path}");
        // The kill came at the stop timeout, not a poll interval later.
        let kill_at = h.log.iter().find(|(_, e)| e.kind() == "killed").unwrap().0;
        assert!(kill_at - t0 >= ms(300) && kill_at - t0 < ms(1000), "{path}: {:?}", kill_at - t0);
    }
}

#[test]
fn grandchildren_die_with_the_group() {
    let mut h = Host::new(procsup::UnixSys::new());
    h.add(
        ProcessSpec::new("tree", "sh")
            .args(["-c", "sleep 1000 & echo $!; wait"])
            .stdout(Output::Capture)
            .stop_timeout(ms(500)),
    );
    h.start_all();
    h.run_until(Duration::from_secs(5), |h| !h.lines().is_empty());
    let grandchild: i32 = h.lines()[0].parse().unwrap();
    assert!(alive(grandchild));
    h.sup.stop_process("tree", std::time::Instant::now()).unwrap();
    h.run_until(Duration::from_secs(5), |h| h.count("stopped") == 1);
    assert!(wait_for(Duration::from_secs(5), || !alive(grandchild)), "grandchild {grandchild} survived");
}

#[test]
fn missing_program_is_a_spawn_failure() {
    let mut h = Host::new(procsup::UnixSys::new());
    h.add(ProcessSpec::new("ghost", "/nonexistent/program").backoff(Backoff::fixed(ms(50))).give_up_after(3));
    h.add(ProcessSpec::new("ghost-fatal", "/nonexistent/program").fatal_exec_errors(true));
    h.start_all();
    h.run_until(Duration::from_secs(5), |h| h.count("fatal") == 2);
    let failed: Vec<_> = h.events("spawn_failed").into_iter().filter(|e| e.name() == "ghost").collect();
    assert_eq!(failed.len(), 3);
    assert!(matches!(failed[0], Event::SpawnFailed { errno: Errno::ENOENT, .. }));
    let fatal = h.events("fatal");
    assert!(fatal.iter().any(|e| matches!(e, Event::Fatal { name, reason: FatalReason::ExecError(Errno::ENOENT) } if &**name == "ghost-fatal")));
    let st = h.sup.status("ghost-fatal").unwrap();
    assert_eq!((st.state, st.last_spawn_error), (State::Fatal, Some(Errno::ENOENT)));
    assert_eq!(h.events("spawn_failed").len(), 4, "ghost-fatal tried once");
}

#[test]
fn kill_mode_process_signals_the_child_only() {
    // Its own group and (where one can be had) a cgroup: still only the
    // child is signalled, as systemd's KillMode=process.
    let mut h = Host::new(procsup::UnixSys::new());
    h.add(
        ProcessSpec::new("tree", "sh")
            .args(["-c", "sleep 1000 & echo $!; wait"])
            .stdout(Output::Capture)
            .kill_mode(procsup::KillMode::Process)
            .die_with_parent(None)
            .stop_timeout(ms(500)),
    );
    h.start_all();
    h.run_until(Duration::from_secs(5), |h| !h.lines().is_empty());
    let grandchild: i32 = h.lines()[0].parse().unwrap();
    h.sup.stop_process("tree", std::time::Instant::now()).unwrap();
    h.run_until(Duration::from_secs(5), |h| h.count("stopped") == 1);
    let survived = alive(grandchild);
    // Clean up what the test started before asserting.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(grandchild), nix::sys::signal::Signal::SIGKILL);
    assert!(survived, "the grandchild was signalled although the kill mode is Process");
    assert_eq!(h.sup.status("tree").unwrap().containment, Some(procsup::Containment::None));
}

#[test]
fn a_reaped_pid_is_never_signalled() {
    use procsup::Sys;
    for (path, make_sys) in both_paths() {
        let _serial = real::serial();
        let mut sys = make_sys();
        let pid = sys.spawn(&ProcessSpec::new("t", "true")).unwrap();
        let mut events = Vec::new();
        assert!(
            wait_for(Duration::from_secs(5), || {
                sys.poll(&mut events);
                events.iter().any(|e| matches!(e, procsup::SysEvent::Exited { pid: p, .. } if *p == pid))
            }),
            "{path}"
        );
        let err = sys.signal(pid, procsup::Signal::SIGKILL).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{path}");
        // And a pid that was never ours is refused without a system call.
        let err = sys.signal(nix::unistd::Pid::from_raw(1), procsup::Signal::SIGTERM).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{path}");
    }
}

#[test]
fn a_status_stolen_by_the_host_is_an_unknown_exit() {
    for (path, make_sys) in both_paths() {
        let mut h = Host::new(make_sys());
        h.add(ProcessSpec::new("victim", "sleep").arg("60").backoff(Backoff::fixed(ms(50))));
        h.start_all();
        let pid = h.sup.status("victim").unwrap().pid.unwrap();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        // The host reaps our child behind our back.
        nix::sys::wait::waitpid(pid, None).unwrap();
        h.run_until(Duration::from_secs(10), |h| h.count("spawned") == 2);
        let exited = h.events("exited");
        assert!(matches!(exited[0], Event::Exited { exit: Exit::Unknown, .. }), "{path}: {exited:?}");
    }
}

#[test]
fn dropping_the_supervisor_kills_and_reaps_its_children() {
    for (path, make_sys) in both_paths() {
        let _serial = real::serial();
        let mut sup = procsup::Supervisor::with_sys(make_sys());
        sup.add_process(ProcessSpec::new("tree", "sh").args(["-c", "sleep 60 & sleep 60"]).stdout(Output::Null))
            .unwrap();
        sup.add_process(ProcessSpec::new("single", "sleep").arg("60").process_group(false)).unwrap();
        sup.start_all(std::time::Instant::now()).unwrap();
        let pids: Vec<i32> = sup.statuses().iter().map(|s| s.pid.unwrap().as_raw()).collect();
        drop(sup);
        for pid in &pids {
            // Not alive, and not a zombie either: /proc has no entry at all.
            assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "{path}: {pid} left behind");
        }
    }
}

#[test]
fn uses_pidfd_tells_which_path_is_taken() {
    use procsup::Sys;
    let _serial = real::serial();
    let mut fast = procsup::UnixSys::new();
    let mut slow = procsup::UnixSys::without_pidfd();
    assert_eq!(fast.uses_pidfd(), None, "unknown before the first spawn");
    assert_eq!(slow.uses_pidfd(), Some(false));
    for sys in [&mut fast, &mut slow] {
        let pid = sys.spawn(&ProcessSpec::new("t", "true")).unwrap();
        let mut events = Vec::new();
        assert!(wait_for(Duration::from_secs(5), || {
            sys.poll(&mut events);
            events.iter().any(|e| matches!(e, procsup::SysEvent::Exited { pid: p, .. } if *p == pid))
        }));
    }
    // This kernel has pidfds (Linux 5.3+), which the fallback never uses.
    assert_eq!(fast.uses_pidfd(), Some(true));
    assert_eq!(slow.uses_pidfd(), Some(false));
}
