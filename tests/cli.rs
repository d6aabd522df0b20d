//! The `supervise` example as a user runs it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `cargo test` builds the examples next to the test binaries.
fn supervise_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("examples").join("supervise");
    assert!(bin.exists(), "{} not built", bin.display());
    bin
}

/// A running `supervise` whose stdout lines arrive on a channel; killed on
/// drop so no test leaves it (or its children) behind.
struct Cli {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Cli {
    fn start(args: &[&str]) -> Cli {
        let mut child =
            Command::new(supervise_bin()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Cli { child, lines, seen: Vec::new() }
    }

    /// Waits (bounded) for a line containing `needle`.
    fn expect(&mut self, needle: &str) -> String {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; saw {:#?}", self.seen),
            }
        }
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits (bounded) for the exit code, collecting the remaining lines.
    fn wait(&mut self) -> i32 {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.seen.extend(self.lines.try_iter());
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return status.code().expect("exited, not killed");
            }
            assert!(Instant::now() < end, "supervise did not exit; saw {:#?}", self.seen);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn field(line: &str, key: &str) -> Option<String> {
    line.split(' ').find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

#[test]
fn crashing_program_is_restarted_with_backoff_then_given_up() {
    let mut cli =
        Cli::start(&["--backoff", "exp:0.05:1:0", "--give-up", "3", "--exit-when-idle", "--", "sh", "-c", "exit 1"]);
    let spawned = cli.expect("event=spawned");
    assert_eq!(field(&spawned, "name").as_deref(), Some("sh"));
    assert!(field(&spawned, "pid").is_some());
    let exited = cli.expect("event=exited");
    assert_eq!(field(&exited, "code").as_deref(), Some("1"));
    assert_eq!(field(&cli.expect("event=backoff"), "delay_ms").as_deref(), Some("50"));
    assert_eq!(field(&cli.expect("event=backoff"), "delay_ms").as_deref(), Some("100"));
    cli.expect("event=fatal");
    assert_eq!(cli.wait(), 1);
    assert!(cli.seen.iter().all(|l| l.starts_with("event=") && l.contains(" name=")), "{:#?}", cli.seen);
}

#[test]
fn exit_when_idle_is_zero_when_all_succeeded() {
    let mut cli = Cli::start(&["--restart", "on-failure", "--exit-when-idle", "-p", "a=true", "-p", "b=sh -c true"]);
    assert_eq!(cli.wait(), 0);
    assert_eq!(cli.seen.iter().filter(|l| l.starts_with("event=exited")).count(), 2);
}

#[test]
fn sigterm_stops_everything_gracefully() {
    let mut cli = Cli::start(&["--stop-signal", "INT", "--stop-timeout", "5", "-p", "a=sleep 60", "-p", "b=sleep 60"]);
    let pids: Vec<i32> = (0..2).map(|_| field(&cli.expect("event=spawned"), "pid").unwrap().parse().unwrap()).collect();
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
    let stopping: Vec<_> = cli.seen.iter().filter(|l| l.starts_with("event=stopping")).collect();
    assert_eq!(stopping.len(), 2);
    assert!(stopping.iter().all(|l| l.contains("signal=SIGINT")));
    assert_eq!(cli.seen.iter().filter(|l| l.starts_with("event=stopped")).count(), 2);
    for pid in pids {
        assert!(kill(Pid::from_raw(pid), None).is_err(), "child {pid} outlived supervise");
    }
}

#[test]
fn stop_signal_accepts_names_with_or_without_prefix() {
    for name in ["HUP", "SIGHUP", "hup"] {
        let mut cli = Cli::start(&["--stop-signal", name, "--", "sleep", "60"]);
        cli.expect("event=spawned");
        cli.signal(Signal::SIGINT);
        assert!(cli.expect("event=stopping").contains("signal=SIGHUP"), "{name}");
        assert_eq!(cli.wait(), 0);
    }
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let cases: &[&[&str]] = &[
        &[],
        &["--bogus", "--", "true"],
        &["--stop-signal", "SIGBOGUS", "--", "true"],
        &["--backoff", "exp:1", "--", "true"],
        &["--backoff", "exp:1:2:1.5", "--", "true"],
        &["--restart", "sometimes", "--", "true"],
        &["--give-up", "0", "--", "true"],
        &["--start-grace", "-1", "--", "true"],
        &["--stop-timeout", "NaN", "--", "true"],
        &["--stop-timeout"],
        &["-p", "noequals"],
        &["-p", "a=true", "--", "true"],
        &["--name", "x", "-p", "a=true"],
        &["-p", "a/b=true"],
        &["--"],
    ];
    for args in cases {
        let out = Command::new(supervise_bin()).args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("supervise: "), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(supervise_bin()).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--name",
        "--start-grace",
        "--backoff",
        "--restart",
        "--give-up",
        "--stop-timeout",
        "--stop-signal",
        "--exit-when-idle",
        "-p",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}
