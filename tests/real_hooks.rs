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
    // Two children: "long" overflows the five-line tail; "mixed" fits in it
    // whole, so it shows stderr is context whatever order the two pipes are
    // read in (lines of different pipes have no order the kernel keeps).
    let mut h = Host::new(UnixSys::new());
    for (name, script) in [
        ("long", "for i in 1 2 3 4 5 6; do echo line$i; done; printf partial; exit 3"),
        ("mixed", "echo out; echo oops >&2; printf partial; exit 4"),
    ] {
        h.add(
            ProcessSpec::new(name, "sh")
                .args(["-c", script])
                .stdout(Output::Capture)
                .stderr(Output::Capture)
                .restart(RestartPolicy::Never),
        );
    }
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("exited") == 2);
    let tail_of = |name: &str| -> (Exit, Vec<String>) {
        let ev = h.events("exited").into_iter().find(|e| matches!(e, Event::Exited { name: n, .. } if &**n == name));
        let Some(Event::Exited { exit, last_output, .. }) = ev else { panic!("no exit of {name}") };
        (*exit, last_output.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect())
    };
    let (exit, tail) = tail_of("long");
    assert_eq!(exit, Exit::Exited(3));
    assert_eq!(tail, ["line3", "line4", "line5", "line6", "partial"], "the last five lines, the unfinished one last");
    let (exit, mut tail) = tail_of("mixed");
    assert_eq!(exit, Exit::Exited(4));
    assert_eq!(tail.last().map(String::as_str), Some("partial"), "the unfinished line is flushed at the exit");
    tail.sort();
    assert_eq!(tail, ["oops", "out", "partial"], "stderr is context too");
}
