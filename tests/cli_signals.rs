//! Signals at awkward moments: the example hosts end in a defined state.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;

use std::time::Duration;

use bin::{field, Cli};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn alive(pid: &str) -> bool {
    kill(Pid::from_raw(pid.parse().unwrap()), None).is_ok()
}

/// Pids of every `spawned` line seen.
fn spawned(cli: &Cli) -> Vec<String> {
    cli.seen.iter().filter(|l| l.starts_with("event=spawned")).filter_map(|l| field(l, "pid")).collect()
}

#[test]
fn sigterm_during_a_rolling_restart_stops_everything() {
    let mut cli =
        Cli::start(&["--instances", "3", "--start-grace", "0.5", "--stop-timeout", "2", "-p", "web=sleep 60"]);
    cli.expect_count("event=running", 3);
    cli.signal(Signal::SIGHUP);
    cli.expect("event=spawned"); // the first replacement is starting
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0, "{:#?}", cli.seen);
    let pids = spawned(&cli);
    assert_eq!(pids.len(), 4);
    assert!(pids.iter().all(|p| !alive(p)), "a child outlived the host: {:#?}", cli.seen);
    assert!(!cli.seen.iter().any(|l| l.starts_with("event=roll_done")));
}

#[test]
fn a_sigchld_storm_changes_nothing() {
    let mut cli = Cli::start(&["--instances", "3", "--start-grace", "0.2", "-p", "web=sleep 60"]);
    cli.expect_count("event=running", 3);
    for _ in 0..2000 {
        cli.signal(Signal::SIGCHLD);
    }
    std::thread::sleep(Duration::from_millis(300));
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
    let before_stop: Vec<&String> = cli.seen.iter().take_while(|l| !l.starts_with("event=stopping")).collect();
    assert_eq!(before_stop.len(), 6, "only 3 spawned and 3 running before the stop: {before_stop:#?}");
    assert_eq!(spawned(&cli).len(), 3);
}

#[test]
fn sighup_twice_in_a_row_ends_with_every_instance_replaced_and_running() {
    let mut cli =
        Cli::start(&["--instances", "3", "--start-grace", "0.2", "--stop-timeout", "2", "-p", "web=sleep 60"]);
    cli.expect_count("event=running", 3);
    let first: Vec<String> = spawned(&cli);
    cli.signal(Signal::SIGHUP);
    cli.signal(Signal::SIGHUP);
    cli.expect_count("event=roll_done", 1);
    cli.expect_count("event=retired", 3);
    // A second roll may or may not follow (two signals can arrive as one);
    // either way the host settles with three running instances, all new.
    std::thread::sleep(Duration::from_millis(1500));
    cli.signal(Signal::SIGUSR1);
    let mut rows = Vec::new();
    for i in 0..3 {
        rows.push(cli.expect_err(&format!("web:{i}")));
    }
    assert!(rows.iter().all(|r| r.contains("running")), "{rows:#?}");
    let serving: Vec<String> = rows.iter().map(|r| r.split_whitespace().nth(2).unwrap().to_owned()).collect();
    assert!(serving.iter().all(|p| !first.contains(p) && alive(p)), "{rows:#?}");
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
    assert!(spawned(&cli).iter().all(|p| !alive(p)));
}

/// The README's promise: after a give-up `supervise` stays up, and SIGHUP
/// starts the program again (supervisord's reload does the same).
#[test]
fn sighup_starts_again_what_gave_up() {
    let mut cli = Cli::start(&["--backoff", "fixed:0.05", "--give-up", "2", "-p", "bad=sh -c 'exit 1'"]);
    cli.expect("event=fatal name=bad reason=gave_up");
    let before = spawned(&cli).len();
    cli.signal(Signal::SIGHUP);
    // It is spawned again, fails again, and gives up again.
    cli.expect_count("event=fatal name=bad", 2);
    assert!(spawned(&cli).len() > before, "SIGHUP spawned nothing: {:#?}", cli.seen);
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
}
