//! `supervise --log-dir`: each process's lines in `DIR/NAME.log`, rotated
//! by size; SIGUSR2 reopens after a move; a directory that cannot be
//! written exits 2 before anything starts.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;

use std::path::Path;
use std::time::{Duration, Instant};

use bin::Cli;
use nix::sys::signal::Signal;

fn lines_in(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |t| t.lines().count())
}

/// Waits (bounded) for `cond`.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < end, "not within 30 s: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn both_streams_go_to_a_rotated_file_per_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().display().to_string();
    let script = "i=1; while [ $i -le 20000 ]; do echo out-$i; i=$((i+1)); echo err-$i >&2; i=$((i+1)); done";
    let p = format!("flood=sh -c '{script}'");
    let args = [
        "--exit-when-idle",
        "--log-dir",
        &dir,
        "--log-max-size",
        "64K",
        "--log-keep",
        "20",
        "--restart",
        "never",
        "-p",
        &p,
    ];
    let mut cli = Cli::start(&args);
    cli.expect("event=exited name=flood");
    assert_eq!(cli.wait(), 0);
    assert!(!cli.seen.iter().any(|l| l.contains("event=output")), "lines went to the file, not stdout");
    let path = tmp.path().join("flood.log");
    let mut all = String::new();
    for i in (1..=20).rev() {
        if let Ok(t) = std::fs::read_to_string(tmp.path().join(format!("flood.log.{i}"))) {
            assert!(t.len() <= 64 * 1024 && t.ends_with('\n'));
            all += &t;
        }
    }
    assert!(std::fs::metadata(tmp.path().join("flood.log.2")).is_ok(), "rotated twice at least");
    all += &std::fs::read_to_string(&path).unwrap();
    let want: Vec<String> = (1..=20000).map(|i| format!("{}-{i}", if i % 2 == 1 { "out" } else { "err" })).collect();
    assert_eq!(all.lines().collect::<Vec<_>>(), want);
}

#[test]
fn sigusr2_reopens_after_a_move() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().display().to_string();
    let path = tmp.path().join("tick.log");
    let moved = tmp.path().join("tick.log.old");
    let mut cli =
        Cli::start(&["--log-dir", &dir, "--log-timestamps", "-p", "tick=sh -c 'while :; do echo t; sleep 0.01; done'"]);
    cli.expect("event=running name=tick");
    wait_for("lines in tick.log", || lines_in(&path) >= 5);
    std::fs::rename(&path, &moved).unwrap();
    cli.signal(Signal::SIGUSR2);
    wait_for("a new tick.log", || lines_in(&path) >= 5);
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0);
    for p in [&moved, &path] {
        let text = std::fs::read_to_string(p).unwrap();
        for l in text.lines() {
            assert!(l.ends_with("Z t") && l.starts_with("20"), "{}: {l:?}", p.display());
        }
    }
}

#[test]
fn a_directory_that_cannot_be_written_exits_2_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no/such/dir").display().to_string();
    let marker = tmp.path().join("ran");
    let p = format!("m=touch {}", marker.display());
    let mut cli = Cli::start(&["--log-dir", &missing, "-p", &p]);
    let err = cli.expect_err("--log-dir");
    assert!(err.contains("m.log"), "{err}");
    assert_eq!(cli.wait(), 2);
    assert!(!marker.exists(), "nothing started");
    assert!(cli.seen.iter().all(|l| !l.contains("event=spawned")));
}
