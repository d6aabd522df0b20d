//! `supervise --listen`: four python workers behind one socket bound by the
//! host, a SIGHUP roll with requests in flight, and SIGTTIN / SIGTTOU.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;
mod pool_client;

use std::collections::HashSet;
use std::time::Duration;

use bin::{field, Cli};
use nix::sys::signal::Signal;
use pool_client::{free_port, get, worker_script, Load};

fn pids(cli: &Cli, kind: &str) -> Vec<i32> {
    cli.seen
        .iter()
        .filter(|l| l.starts_with(&format!("event={kind} ")))
        .filter_map(|l| field(l, "pid"))
        .map(|p| p.parse().unwrap())
        .collect()
}

#[test]
fn four_workers_behind_one_socket_roll_on_sighup_without_a_failed_request() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let command = format!("web=python3 {} v1-{{instance}}", worker_script());
    let mut cli = Cli::start(&[
        "--instances",
        "4",
        "--start-grace",
        "0.5",
        "--stop-timeout",
        "5",
        "--listen",
        &addr,
        "-p",
        &command,
    ]);
    cli.expect_count("event=running", 4);
    let old: HashSet<i32> = pids(&cli, "spawned").into_iter().collect();
    assert_eq!(old.len(), 4);

    let load = Load::start(port, 20_000, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(200)); // requests before the roll too
    cli.signal(Signal::SIGHUP);
    cli.expect("event=roll_done");
    cli.expect_count("event=retired", 4);
    let answers = load.finish();
    let failed: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} of {} requests failed: {failed:?}", failed.len(), answers.len());
    assert!(answers.len() > 10, "the client loop ran: {}", answers.len());
    for a in answers.iter().flatten() {
        assert_eq!(a.marker, format!("v1-{}", a.instance), "{{instance}} and PROCSUP_INSTANCE agree: {a:?}");
    }

    let retired: HashSet<i32> = pids(&cli, "retired").into_iter().collect();
    assert_eq!(retired, old, "every old worker was retired");
    let new: HashSet<i32> = pids(&cli, "spawned").into_iter().filter(|p| !old.contains(p)).collect();
    assert_eq!(new.len(), 4);
    for _ in 0..50 {
        let a = get(port).expect("the new workers serve");
        assert!(new.contains(&a.pid), "answered by {a:?}, not one of the new workers {new:?}");
    }

    // SIGTTIN adds web:4; SIGTTOU twice removes web:4, then web:3.
    cli.signal(Signal::SIGTTIN);
    let line = cli.expect("event=running name=web:4");
    assert!(line.contains("web:4"));
    cli.signal(Signal::SIGTTOU);
    cli.expect("event=removed name=web:4");
    cli.signal(Signal::SIGTTOU);
    cli.expect("event=removed name=web:3");
    let a = get(port).expect("three workers still serve");
    assert!(["0", "1", "2"].contains(&a.instance.as_str()), "{a:?}");

    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0, "{:#?}", cli.seen);
}
