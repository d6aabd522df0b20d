//! `supervise` at its edges: a parent that blocked or ignored its signals,
//! a stdout nobody reads, the library's warnings, a second stop signal.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bin::{field, reader, supervise_bin, Cli};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Gone, or a zombie nobody reaped yet (killed all the same).
fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `supervise ARGS` through python3, which blocks `blocked`, ignores
/// `ignored` and execs it: the mask and the SIG_IGN survive the exec.
fn through_wrapper(blocked: &str, ignored: &str, args: &[&str]) -> Cli {
    let script = format!(
        "import os, signal, sys\n\
         signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.{blocked}}})\n\
         signal.signal(signal.{ignored}, signal.SIG_IGN)\n\
         os.execv(sys.argv[1], sys.argv[1:])\n"
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).arg(supervise_bin()).args(args);
    Cli::start_command(cmd)
}

#[test]
fn a_host_started_with_sigterm_blocked_still_stops_on_sigterm() {
    let mut cli = through_wrapper("SIGTERM", "SIGINT", &["-p", "a=sleep 60"]);
    let pid: i32 = field(&cli.expect("event=running"), "pid").unwrap().parse().unwrap();
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0, "{:#?}", cli.seen);
    assert!(cli.seen.iter().any(|l| l.starts_with("event=stopped name=a")), "{:#?}", cli.seen);
    assert!(dead(pid));
}

#[test]
fn a_host_started_with_sigint_ignored_still_stops_on_sigint() {
    let mut cli = through_wrapper("SIGHUP", "SIGINT", &["-p", "a=sleep 60"]);
    cli.expect("event=running");
    cli.signal(Signal::SIGINT);
    assert_eq!(cli.wait(), 0, "{:#?}", cli.seen);
}

/// Kills and reaps the host (and so, by their death signal, its children)
/// whatever the test's outcome.
struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether any thread of `pid` sleeps in a write to a full pipe.
fn blocked_on_pipe(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().any(|t| std::fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w.contains("pipe_write")))
}

/// The README's promise: a stdout opened but never read stalls neither
/// the loop nor its kill deadlines; supervise ends once the reader drains.
#[test]
fn an_unread_stdout_pipe_does_not_stall_the_kill_deadline() {
    let (read_end, write_end): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    let mut cmd = Command::new(supervise_bin());
    cmd.args(["--capture", "--stop-timeout", "1", "-p", "y=sh -c 'trap \"\" TERM; exec yes'"])
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped());
    let mut host = Host(cmd.spawn().unwrap());
    drop(cmd); // our copy of the write end: EOF must come from the host
    let errors = reader(host.0.stderr.take().unwrap());
    let sup = host.0.id();
    let mut child = None;
    wait_until("the child", Duration::from_secs(15), || {
        let tasks = std::fs::read_dir(format!("/proc/{sup}/task")).unwrap();
        let kids: String =
            tasks.flatten().filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok()).collect();
        child = kids.split_whitespace().next().map(|p| p.parse::<i32>().unwrap());
        child.is_some()
    });
    let child = child.unwrap();
    // The pipe is full: the host's writer sleeps in write(2).
    wait_until("a write blocked on the full pipe", Duration::from_secs(15), || blocked_on_pipe(sup));
    kill(Pid::from_raw(sup as i32), Signal::SIGTERM).unwrap();
    // SIGKILL is due 1 s after the stop signal; a few s of slack for load.
    wait_until("the TERM-ignoring child killed at its stop timeout", Duration::from_secs(5), || dead(child));
    // Now drain: the host writes what it queued, says what it dropped, ends.
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        std::fs::File::from(read_end).read_to_string(&mut text).unwrap();
        text
    });
    let end = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = host.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < end, "supervise did not exit after the pipe was drained");
        std::thread::sleep(Duration::from_millis(10));
    };
    let errs: Vec<String> = errors.try_iter().collect();
    assert_eq!(status.code(), Some(0), "{errs:#?}");
    let out = drain.join().unwrap();
    let events: Vec<&str> = out.lines().filter(|l| !l.starts_with("event=output ")).collect();
    assert!(events.iter().any(|l| l.starts_with("event=output_dropped lines=")), "{events:#?}");
    // The lifecycle events have room the captured flood cannot take.
    for kind in ["event=stopping name=y", "event=killed name=y", "event=stopped name=y"] {
        assert!(events.iter().any(|l| l.starts_with(kind)), "no {kind}: {events:#?}");
    }
}

#[test]
fn library_warnings_reach_stderr_as_logfmt_lines() {
    let dir = tempfile::tempdir().unwrap();
    // Not a record: the state directory's scan warns that it skips it.
    std::fs::create_dir(dir.path().join("odd")).unwrap();
    let state = dir.path().to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["--state-dir", state, "--exit-when-idle", "--restart", "never", "-p", "a=true"];
        args.extend_from_slice(extra);
        let out = Command::new(supervise_bin()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stderr).unwrap()
    };
    let err = run(&[]);
    let line = err.lines().find(|l| l.contains("skipping")).unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(line.starts_with("level=warn target=procsup::state_dir msg=\""), "{line}");
    assert!(line.contains(r#"skipping \"odd\": a directory"#), "{line}");
    assert_eq!(run(&["--log-level", "error"]), "", "only errors were asked for");
}

#[test]
fn a_second_sigterm_during_the_stop_kills_everything_now() {
    // The child ignores SIGTERM and holds a grandchild: the graceful stop
    // would wait 60 s.
    let mut cli = Cli::start(&["--stop-timeout", "60", "-p", "a=sh -c 'trap \"\" TERM; sleep 120 & wait'"]);
    let pid: i32 = field(&cli.expect("event=running"), "pid").unwrap().parse().unwrap();
    let grandchild = {
        let mut found = None;
        wait_until("the grandchild", Duration::from_secs(15), || {
            found = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .ok()
                .and_then(|s| s.split_whitespace().next().map(|p| p.parse::<i32>().unwrap()));
            found.is_some()
        });
        found.unwrap()
    };
    cli.signal(Signal::SIGTERM);
    cli.expect("event=stopping name=a");
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 1, "{:#?}", cli.seen);
    assert!(cli.seen.iter().any(|l| l == "event=force_stop"), "{:#?}", cli.seen);
    cli.expect_err("killing everything now");
    wait_until("the tree killed", Duration::from_secs(5), || dead(pid) && dead(grandchild));
}

#[test]
fn a_state_dir_lock_held_a_moment_longer_is_waited_for_and_a_live_one_refused() {
    use nix::fcntl::{Flock, FlockArg};
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let state = dir.path().to_str().unwrap();
    let run = || {
        let args = ["--state-dir", state, "--exit-when-idle", "--restart", "never", "-p", "a=true"];
        Command::new(supervise_bin()).args(args).output().unwrap()
    };
    // As a child killed between its clone and its exec holds a dead
    // host's lock: released 300 ms from now, well within the retry.
    let file = std::fs::File::create(dir.path().join(".lock")).unwrap();
    let held = Flock::lock(file, FlockArg::LockExclusiveNonblock).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
    });
    let out = run();
    release.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // A live host keeps it: the second one exits 2 after its retries.
    let mut first = Cli::start(&["--state-dir", state, "-p", "a=sleep 60"]);
    first.expect("event=running");
    let out = run();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--state-dir: state directory") && err.contains("in use by another live host"), "{err}");
    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait(), 0);
}
