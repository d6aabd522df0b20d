//! The poll, mio and tokio host examples: start, kill a child, see it restarted,
//! SIGTERM, see a clean exit 0 within the stop timeout.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;

use std::time::{Duration, Instant};

use bin::{field, Cli};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn host_restarts_and_stops(example: &str) {
    let mut cli = Cli::start_example(example, &["sleep", "60"]);
    let first: i32 = field(&cli.expect("event=spawned"), "pid").unwrap().parse().unwrap();
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let exited = cli.expect("event=exited");
    assert_eq!(field(&exited, "signal").as_deref(), Some("9"), "{example}");
    let second: i32 = field(&cli.expect("event=spawned"), "pid").unwrap().parse().unwrap();
    assert_ne!(first, second);
    let t0 = Instant::now();
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0, "{example}: {:#?}", cli.seen);
    // The example's stop timeout is 2 s; sleep dies on SIGTERM at once.
    assert!(t0.elapsed() < Duration::from_secs(2), "{example}: took {:?}", t0.elapsed());
    assert!(cli.seen.iter().any(|l| l.starts_with("event=stopped")), "{example}");
    assert!(kill(Pid::from_raw(second), None).is_err(), "{example}: child outlived the host");
}

#[test]
fn poll_loop_example() {
    host_restarts_and_stops("poll_loop");
}

#[test]
fn tokio_example() {
    host_restarts_and_stops("tokio");
}

#[test]
fn mio_example() {
    host_restarts_and_stops("mio_loop");
}
