//! The `supervise` example as a user runs it.

mod bin;

use std::process::Command;

use bin::{field, supervise_bin, Cli};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn crashing_program_is_restarted_with_backoff_then_given_up() {
    let mut cli = Cli::start(&[
        "--backoff",
        "exp:0.05:1:0",
        "--give-up",
        "3",
        "--exit-when-idle",
        "--",
        "sh",
        "-c",
        "echo inherited; exit 1",
    ]);
    let spawned = cli.expect("event=spawned");
    assert_eq!(field(&spawned, "name").as_deref(), Some("sh"));
    assert!(field(&spawned, "pid").is_some());
    let exited = cli.expect("event=exited");
    assert_eq!(field(&exited, "code").as_deref(), Some("1"));
    assert_eq!(field(&cli.expect("event=backoff"), "delay_ms").as_deref(), Some("50"));
    assert_eq!(field(&cli.expect("event=backoff"), "delay_ms").as_deref(), Some("100"));
    cli.expect("event=fatal");
    assert_eq!(cli.wait(), 1);
    // Inherited output goes straight to the host's stdout, untouched
    // (gunicorn's "inherit is a no-op").
    let (events, output): (Vec<&String>, Vec<&String>) = cli.seen.iter().partition(|l| l.starts_with("event="));
    assert_eq!(output, ["inherited"; 3], "{:#?}", cli.seen);
    assert!(events.iter().all(|l| l.contains(" name=")), "{:#?}", cli.seen);
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
        &["--instances", "0", "--", "true"],
        &["--state-dir", "/proc/nope", "--", "true"],
        &["--after", "nosuch=a", "-p", "a=true"],
        &["--log-level", "loud", "--", "true"],
        &["--start-timeout", "0", "--", "true"],
        &["--backoff", "exp:5:1", "--", "true"],
        &["--backoff", "exp:5:1:0.1", "--", "true"],
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
        "--log-level",
        "-p",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

/// Live serving pids per process name, from the event lines.
fn serving_counts(lines: &[String]) -> Vec<usize> {
    let mut serving = std::collections::HashSet::new();
    let mut counts = Vec::new();
    for l in lines {
        let pid = field(l, "pid");
        if l.starts_with("event=running") {
            serving.insert(pid.unwrap());
        } else if ["event=retiring", "event=stopping", "event=exited", "event=retired"].iter().any(|k| l.starts_with(k))
        {
            serving.remove(&pid.unwrap());
        }
        counts.push(serving.len());
    }
    counts
}

#[test]
fn sighup_rolls_every_instance_new_before_old() {
    let mut cli =
        Cli::start(&["--instances", "3", "--start-grace", "0.2", "--stop-timeout", "2", "-p", "web=sleep 60"]);
    for _ in 0..3 {
        cli.expect("event=running");
    }
    cli.signal(Signal::SIGHUP);
    cli.expect_count("event=roll_done", 1);
    cli.expect_count("event=retired", 3);
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
    let lines = cli.seen.clone();
    let roll_start = lines.iter().position(|l| l.contains("restarts=1")).unwrap();
    let roll_end = lines.iter().position(|l| l.starts_with("event=roll_done")).unwrap();
    let counts = serving_counts(&lines);
    let full = counts.iter().position(|&n| n == 3).unwrap();
    assert!(full < roll_start);
    assert!(counts[full..=roll_end].iter().all(|&n| n >= 3), "fewer than 3 served during the roll: {lines:#?}");
    for slot in 0..3 {
        let name = format!("name=web:{slot}");
        let spawned: Vec<usize> =
            (0..lines.len()).filter(|&i| lines[i].starts_with("event=spawned") && lines[i].contains(&name)).collect();
        let retiring = lines.iter().position(|l| l.starts_with("event=retiring") && l.contains(&name)).unwrap();
        assert_eq!(spawned.len(), 2, "{name}");
        assert!(spawned[1] >= roll_start && spawned[1] < retiring, "{name}: new pid after the old one's stop signal");
    }
}

#[test]
fn a_roll_whose_replacement_fails_is_aborted_and_the_old_ones_serve() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("broken");
    let script = format!("test -e {} && exit 1; exec sleep 60", marker.display());
    let mut cli = Cli::start(&["--instances", "2", "--start-grace", "0.3", "--", "sh", "-c", &script]);
    let old: Vec<String> = (0..2).map(|_| field(&cli.expect("event=running"), "pid").unwrap()).collect();
    std::fs::write(&marker, "").unwrap();
    cli.signal(Signal::SIGHUP);
    let aborted = cli.expect("event=roll_aborted");
    assert!(aborted.contains("code=1"), "{aborted}");
    cli.signal(Signal::SIGUSR1);
    for pid in &old {
        let row = cli.expect_err(&format!(" {pid} "));
        assert!(row.contains("running"), "{row}");
    }
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
    assert!(!cli.seen.iter().any(|l| l.starts_with("event=retiring")), "an old instance was stopped");
}

#[test]
fn sigusr1_prints_a_status_table() {
    let mut cli = Cli::start(&["--instances", "2", "--give-up", "3", "-p", "w=sleep 60"]);
    cli.expect("event=spawned");
    cli.expect("event=spawned");
    cli.signal(Signal::SIGUSR1);
    let header = cli.expect_err("NAME");
    for col in ["STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "RESTART IN", "TREE", "GIVE-UP"] {
        assert!(header.contains(col), "{col} missing: {header}");
    }
    let row = cli.expect_err("w:1");
    assert!(row.contains("starting") || row.contains("running"), "{row}");
    assert!(row.contains(" cgroup ") || row.contains(" process_group "), "containment: {row}");
    assert!(row.trim_end().ends_with('3'), "give-up budget: {row}");
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
}

/// Issue 10: which mechanism holds a child's tree shows in the status. The
/// forced process-group path must say so (the cgroup path depends on the
/// machine, the flag does not).
#[test]
fn the_status_table_names_what_holds_each_tree() {
    let mut cli = Cli::start(&["--no-cgroups", "-p", "g=sleep 60"]);
    cli.expect("event=spawned");
    cli.signal(Signal::SIGUSR1);
    let row = cli.expect_err("g  ");
    assert!(row.contains(" process_group "), "{row}");
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
}
