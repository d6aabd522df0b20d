//! Credentials, umask, working directory and exec errors with real
//! processes: a bad value is a spawn failure with its errno, never a
//! half-started child.

mod real;

use std::time::Duration;

use nix::errno::Errno;
use procsup::{Event, Output, ProcessSpec, RestartPolicy, State, UnixSys};
use real::Host;

fn once(name: &str, script: &str) -> ProcessSpec {
    ProcessSpec::new(name, "sh").args(["-c", script]).restart(RestartPolicy::Never).stdout(Output::Capture)
}

#[test]
fn umask_is_applied() {
    let mut h = Host::new(UnixSys::new());
    h.add(once("u", "umask").umask(0o027));
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("exited") == 1);
    assert_eq!(h.lines(), ["0027"]);
}

#[test]
fn uid_gid_switch_drops_supplementary_groups() {
    let mut h = Host::new(UnixSys::new());
    h.add(once("id", "id -u; id -g; id -G").uid(65534).gid(65534));
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("exited") == 1 || h.count("fatal") == 1);
    if nix::unistd::geteuid().is_root() {
        assert_eq!(h.lines(), ["65534", "65534", "65534"]);
    } else {
        // Not root: switching users is refused, as a spawn failure.
        assert!(h.events("spawn_failed").iter().any(|e| matches!(e, Event::SpawnFailed { errno: Errno::EPERM, .. })));
    }
}

#[test]
fn missing_working_directory_is_a_spawn_failure() {
    let mut h = Host::new(UnixSys::new());
    h.add(once("cwd", "pwd").current_dir("/nonexistent/dir"));
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("fatal") == 1);
    assert!(matches!(h.events("spawn_failed")[0], Event::SpawnFailed { errno: Errno::ENOENT, .. }));
    assert!(h.lines().is_empty());
}

#[test]
fn non_executable_program_is_eacces() {
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("not-executable");
    std::fs::write(&prog, "#!/bin/sh\necho hi\n").unwrap();
    let mut h = Host::new(UnixSys::new());
    h.add(ProcessSpec::new("x", &prog).fatal_exec_errors(true));
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("fatal") == 1);
    assert!(matches!(h.events("spawn_failed")[0], Event::SpawnFailed { errno: Errno::EACCES, .. }));
    assert_eq!(h.sup.status("x").unwrap().state, State::Fatal);
    assert_eq!(h.count("spawned"), 0);
}

#[test]
fn bad_append_path_is_a_spawn_failure() {
    let mut h = Host::new(UnixSys::new());
    h.add(once("o", "echo hi").stdout(Output::Append("/nonexistent/dir/out.log".into())));
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("fatal") == 1);
    assert!(matches!(h.events("spawn_failed")[0], Event::SpawnFailed { errno: Errno::ENOENT, .. }));
}

#[test]
fn env_clear_leaves_only_what_the_spec_sets() {
    let mut h = Host::new(UnixSys::new());
    h.add(
        ProcessSpec::new("e", "/usr/bin/env")
            .env("DROPPED", "x")
            .env_clear()
            .env("ONLY", "1")
            .restart(RestartPolicy::Never)
            .stdout(Output::Capture),
    );
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("exited") == 1);
    assert_eq!(h.lines(), ["ONLY=1"]);
}
