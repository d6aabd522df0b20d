//! Dependencies and strategies through the `supervise` example, with real
//! processes (issue 15).

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;

use bin::{field, Cli};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn alive(pid: &str) -> bool {
    kill(Pid::from_raw(pid.parse().unwrap()), None).is_ok()
}

/// Indices of the lines seen for `kind` of process `name`.
fn at(cli: &Cli, kind: &str, name: &str) -> Vec<usize> {
    let prefix = format!("event={kind} name={name} ");
    let exact = format!("event={kind} name={name}");
    cli.seen.iter().enumerate().filter(|(_, l)| l.starts_with(&prefix) || **l == exact).map(|(i, _)| i).collect()
}

fn spawned_pids(cli: &Cli) -> Vec<String> {
    cli.seen.iter().filter(|l| l.starts_with("event=spawned")).filter_map(|l| field(l, "pid")).collect()
}

#[test]
fn after_ready_orders_the_start_and_the_shutdown() {
    let mut cli = Cli::start(&[
        "--start-grace",
        "0.5",
        "--stop-timeout",
        "5",
        "-p",
        "a=sleep 60",
        "-p",
        "b=sleep 60",
        "--after",
        "b=a:ready",
    ]);
    cli.expect("event=running name=b ");
    let (a_running, b_spawned) = (at(&cli, "running", "a"), at(&cli, "spawned", "b"));
    assert!(a_running[0] < b_spawned[0], "b spawned before a was running: {:#?}", cli.seen);
    assert!(cli.seen.iter().any(|l| l == "event=waiting name=b dependency=a condition=ready"), "{:#?}", cli.seen);
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0, "{:#?}", cli.seen);
    let (b_stopped, a_stopping) = (at(&cli, "stopped", "b"), at(&cli, "stopping", "a"));
    assert!(b_stopped[0] < a_stopping[0], "a was signalled before b stopped: {:#?}", cli.seen);
    assert!(spawned_pids(&cli).iter().all(|p| !alive(p)), "a child outlived the host: {:#?}", cli.seen);
}

#[test]
fn one_for_all_restarts_the_dependent_too_in_start_order() {
    let mut cli = Cli::start(&[
        "--start-grace",
        "0.5",
        "--stop-timeout",
        "5",
        "--backoff",
        "fixed:0.2",
        "--strategy",
        "one_for_all",
        "-p",
        "a=sleep 60",
        "-p",
        "b=sleep 60",
        "--after",
        "b=a:ready",
    ]);
    cli.expect("event=running name=b ");
    let a_pid: i32 = field(&cli.seen[at(&cli, "spawned", "a")[0]], "pid").unwrap().parse().unwrap();
    kill(Pid::from_raw(a_pid), Signal::SIGKILL).unwrap();
    cli.expect_count("event=spawned name=b ", 2);
    let (a_spawns, b_spawns) = (at(&cli, "spawned", "a"), at(&cli, "spawned", "b"));
    assert_eq!(a_spawns.len(), 2, "{:#?}", cli.seen);
    assert!(a_spawns[1] < b_spawns[1], "a must spawn again before b: {:#?}", cli.seen);
    // b is stopped (and reaped) before anything starts again; it waits
    // for a to be ready once more.
    let (b_stopping, b_exited) = (at(&cli, "stopping", "b"), at(&cli, "exited", "b"));
    assert!(!b_stopping.is_empty() && b_exited[0] < a_spawns[1], "b was not stopped first: {:#?}", cli.seen);
    assert!(at(&cli, "running", "a")[1] < b_spawns[1], "{:#?}", cli.seen);
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0, "{:#?}", cli.seen);
    assert!(spawned_pids(&cli).iter().all(|p| !alive(p)), "a child outlived the host: {:#?}", cli.seen);
}

#[test]
fn after_with_an_unknown_name_or_a_cycle_is_a_usage_error() {
    let mut cli = Cli::start(&["-p", "a=sleep 60", "--after", "a=nope"]);
    assert_eq!(cli.wait(), 2);
    // The unknown name on the left (the dependent) too: it used to be
    // ignored, and `a` ran with no dependency at all.
    let mut cli = Cli::start(&["-p", "a=sleep 60", "--after", "nope=a"]);
    assert!(cli.expect_err("--after nope=a").contains("no process named \"nope\""));
    assert_eq!(cli.wait(), 2);
    assert!(cli.seen.is_empty(), "nothing starts: {:#?}", cli.seen);
    let mut cli = Cli::start(&["-p", "a=sleep 60", "-p", "b=sleep 60", "--after", "a=b", "--after", "b=a:started"]);
    cli.expect_err("dependency cycle");
    assert_eq!(cli.wait(), 2);
}

fn spawns(cli: &Cli, name: &str) -> usize {
    at(cli, "spawned", name).len()
}

#[test]
fn one_for_all_is_bounded_by_default_and_by_intensity() {
    // A program that fails at once, no backoff: OTP's default intensity
    // (1 restart within 5 s) ends it after one restart, and web with it.
    let args = ["--backoff", "fixed:0", "--strategy", "one_for_all", "--exit-when-idle"];
    let procs = ["-p", "web=sleep 60", "-p", "crasher=false"];
    let mut cli = Cli::start(&[&args[..], &procs[..]].concat());
    assert_eq!(cli.wait(), 1, "{:#?}", cli.seen);
    assert_eq!(spawns(&cli, "crasher"), 2, "{:#?}", cli.seen);
    assert!(cli
        .seen
        .iter()
        .any(|l| l.contains("name=web") && l.contains("group_intensity max_restarts=1 period_ms=5000")));
    assert!(spawned_pids(&cli).iter().all(|p| !alive(p)), "a child outlived the host: {:#?}", cli.seen);
    // --intensity 3:60: three restarts, the fourth crash gives up.
    let mut cli = Cli::start(&[&args[..], &["--intensity", "3:60"], &procs[..]].concat());
    assert_eq!(cli.wait(), 1, "{:#?}", cli.seen);
    assert_eq!(spawns(&cli, "crasher"), 4, "{:#?}", cli.seen);
    assert!(cli.seen.iter().any(|l| l.contains("group_intensity max_restarts=3 period_ms=60000")));
    let mut cli = Cli::start(&["--intensity", "3", "-p", "a=true"]);
    cli.expect_err("--intensity \"3\": expected N:SECS");
    assert_eq!(cli.wait(), 2);
}

#[test]
fn after_a_group_waits_for_every_instance() {
    let mut cli = Cli::start(&[
        "--start-grace",
        "0.3",
        "--instances",
        "2",
        "--ready",
        "grace",
        "-p",
        "db=sleep 60",
        "-p",
        "app=sleep 60",
        "--after",
        "app=db",
    ]);
    cli.expect("event=running name=app:1 ");
    cli.expect_count("event=running name=app:", 2);
    let first_app = at(&cli, "spawned", "app:0")[0].min(at(&cli, "spawned", "app:1")[0]);
    for db in ["db:0", "db:1"] {
        assert!(at(&cli, "running", db)[0] < first_app, "app spawned before {db} was ready: {:#?}", cli.seen);
    }
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0, "{:#?}", cli.seen);
    assert!(spawned_pids(&cli).iter().all(|p| !alive(p)), "a child outlived the host: {:#?}", cli.seen);
}

#[test]
fn a_completed_dependency_on_an_always_program_is_a_usage_error() {
    let mut cli = Cli::start(&["-p", "a=sleep 60", "-p", "b=sleep 60", "--after", "b=a:completed"]);
    cli.expect_err("\"a\" restarts always and never completes");
    assert_eq!(cli.wait(), 2);
    let mut cli = Cli::start(&["-p", "a=sleep 60", "-p", "b=sleep 60", "--after", "a=b", "--after", "b=a:started"]);
    cli.expect_err("dependency cycle: a -> b -> a");
    assert_eq!(cli.wait(), 2);
}
