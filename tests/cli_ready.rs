//! `supervise --ready`: readiness event lines and a rolling restart that
//! waits for each replacement's READY=1.
// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;

use bin::{field, Cli};
use nix::sys::signal::Signal;

fn helper() -> String {
    format!("{}/tests/bin/sdnotify.py", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn notify_children_report_ready_and_status() {
    let h = helper();
    let mut cli = Cli::start(&["--ready", "notify", "--", "python3", &h, "ready-after", "200"]);
    let spawned = cli.expect("event=spawned");
    let status = cli.expect("event=status");
    assert!(status.contains("text=serving"), "{status}");
    let ready = cli.expect("event=ready");
    assert_eq!(field(&ready, "pid"), field(&spawned, "pid"));
    let after: u64 = field(&ready, "after_ms").unwrap().parse().unwrap();
    assert!(after >= 200, "{ready}");
    cli.expect("event=running");
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
}

#[test]
fn start_timeout_and_watchdog_lines() {
    let h = helper();
    let mut cli = Cli::start(&[
        "--ready",
        "notify",
        "--start-timeout",
        "0.3",
        "--backoff",
        "fixed:5",
        "--",
        "python3",
        &h,
        "never",
    ]);
    let spawned = cli.expect("event=spawned");
    let timeout = cli.expect("event=start_timeout");
    assert_eq!(field(&timeout, "pid"), field(&spawned, "pid"));
    cli.expect("event=backoff");
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);

    let mut cli =
        Cli::start(&["--ready", "notify", "--watchdog", "0.3", "--", "python3", &h, "ping", "2", "100", "300000"]);
    let ready = cli.expect("event=ready");
    let watchdog = cli.expect("event=watchdog");
    assert_eq!(field(&watchdog, "pid"), field(&ready, "pid"));
    cli.expect("event=exited");
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
}

#[test]
fn a_rolling_restart_stops_each_old_child_only_after_its_replacement_is_ready() {
    let h = helper();
    let mut cli = Cli::start(&[
        "--instances",
        "3",
        "--name",
        "web",
        "--ready",
        "notify",
        "--",
        "python3",
        &h,
        "ready-after",
        "300",
    ]);
    cli.expect_count("event=ready", 3);
    cli.signal(Signal::SIGHUP);
    cli.expect("event=roll_done");
    cli.expect_count("event=retired", 3);
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
    let lines = cli.seen.clone();
    for slot in 0..3 {
        let name = format!("name=web:{slot}");
        let mine = |kind: &str| -> Vec<usize> {
            (0..lines.len()).filter(|&i| lines[i].starts_with(kind) && lines[i].contains(&format!("{name} "))).collect()
        };
        let (spawned, ready, retiring) = (mine("event=spawned"), mine("event=ready"), mine("event=retiring"));
        assert_eq!((spawned.len(), ready.len(), retiring.len()), (2, 2, 1), "{name}: {lines:#?}");
        let new_pid = field(&lines[spawned[1]], "pid");
        assert_eq!(field(&lines[ready[1]], "pid"), new_pid, "{lines:#?}");
        assert_eq!(field(&lines[retiring[0]], "pid"), field(&lines[spawned[0]], "pid"));
        assert!(ready[1] < retiring[0], "{name}: the old child was stopped before its replacement was ready");
    }
}

#[test]
fn output_and_fd_readiness_from_the_command_line() {
    let mut cli = Cli::start(&[
        "--ready",
        "output:listening",
        "--",
        "sh",
        "-c",
        "echo booting; echo listening on 80; exec sleep 60",
    ]);
    cli.expect("line=booting");
    let ready = cli.expect("event=ready");
    assert!(cli.seen.iter().any(|l| l.contains("line=\"listening on 80\"")), "{:#?}", cli.seen);
    assert!(field(&ready, "after_ms").is_some());
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);

    let mut cli = Cli::start(&["--ready", "fd:3", "--", "sh", "-c", "sleep 0.1; echo >&3; exec sleep 60"]);
    cli.expect("event=ready");
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);

    let mut cli = Cli::start(&["--ready", "bogus", "--", "true"]);
    assert_eq!(cli.wait(), 2);
}
