//! Pre-exec hooks and crash context with real processes.

mod real;

use std::time::Duration;

use nix::errno::Errno;
use procsup::{Backoff, Event, Exit, Output, ProcessSpec, RestartPolicy, State, UnixSys};
use real::Host;

#[test]
fn the_hook_runs_in_the_child_before_exec() {
    let mut h = Host::new(UnixSys::new());
    // SAFETY: setsid(2) is async-signal-safe.
    let spec = unsafe {
        ProcessSpec::new("s", "sh")
            .args(["-c", "echo $$ $(cut -d' ' -f6 /proc/$$/stat)"])
            .process_group(false)
            .restart(RestartPolicy::Never)
            .stdout(Output::Capture)
            .pre_exec(|| {
                nix::unistd::setsid()?;
                Ok(())
            })
    };
    h.add(spec);
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("exited") == 1);
    let line = &h.lines()[0];
    let (pid, session) = line.split_once(' ').unwrap();
    assert_eq!(pid, session, "the child leads its own session: the hook ran in it");
}

#[test]
fn a_failing_hook_is_a_spawn_failure_not_a_half_started_child() {
    let mut h = Host::new(UnixSys::new());
    // SAFETY: the hook only returns an error.
    let spec = unsafe {
        ProcessSpec::new("f", "sleep")
            .arg("60")
            .backoff(Backoff::fixed(Duration::from_millis(20)))
            .give_up_after(2)
            .pre_exec(|| Err(std::io::Error::from_raw_os_error(libc::EPERM)))
    };
    h.add(spec);
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("fatal") == 1);
    assert_eq!(h.count("spawned"), 0);
    let failed = h.events("spawn_failed");
    assert_eq!(failed.len(), 2);
    assert!(matches!(failed[0], Event::SpawnFailed { errno: Errno::EPERM, .. }));
    assert_eq!(h.sup.status("f").unwrap().state, State::Fatal);
    assert_eq!(h.sup.sys().child_count(), 0);
}

#[test]
fn an_exit_carries_the_last_captured_lines() {
    let mut h = Host::new(UnixSys::new());
    h.add(
        ProcessSpec::new("c", "sh")
            .args(["-c", "for i in 1 2 3 4 5 6; do echo line$i; done; echo oops >&2; printf partial; exit 3"])
            .stdout(Output::Capture)
            .stderr(Output::Capture)
            .restart(RestartPolicy::Never),
    );
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("exited") == 1);
    let Event::Exited { exit, last_output, .. } = h.events("exited")[0] else { unreachable!() };
    assert_eq!(*exit, Exit::Exited(3));
    let tail: Vec<String> = last_output.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    assert_eq!(tail.len(), 5);
    assert_eq!(tail[..3], ["line4", "line5", "line6"]);
    let mut rest = tail[3..].to_vec();
    rest.sort();
    assert_eq!(rest, ["oops", "partial"], "stderr and the unfinished last line are context too");
}
