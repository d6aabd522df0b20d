//! No leaks: many crash/restart cycles leave no zombie and no open fd.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod real;

use std::collections::HashSet;
use std::time::Duration;

use procsup::{Backoff, Event, Output, ProcessSpec};
use real::{both_paths, Host};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Whether /proc shows `pid` as a zombie.
fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')))
        .unwrap_or(false)
}

#[test]
fn thousand_crash_cycles_leak_nothing() {
    let cycles: usize = std::env::var("PROCSUP_LEAK_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    real::init();
    for (path, make_sys) in both_paths() {
        let fds_before = open_fds();
        {
            let mut h = Host::new(make_sys());
            h.add(
                ProcessSpec::new("crash", "true")
                    .backoff(Backoff::none())
                    .start_grace(Duration::from_secs(1))
                    .stdout(Output::Capture)
                    .stderr(Output::Capture),
            );
            h.start_all();
            let t = std::time::Instant::now();
            h.run_until(Duration::from_secs(120), |h| h.count("exited") >= cycles);
            eprintln!("{path}: {cycles} cycles in {:?}", t.elapsed());
            h.sup.stop_all(std::time::Instant::now());
            h.run_until(Duration::from_secs(10), |h| h.sup.is_idle());
            let pids: HashSet<i32> = h
                .log
                .iter()
                .filter_map(|(_, e)| match e {
                    Event::Spawned { pid, .. } => Some(pid.as_raw()),
                    _ => None,
                })
                .collect();
            assert!(pids.len() >= cycles, "{path}");
            let zombies: Vec<i32> = pids.iter().copied().filter(|&p| zombie(p)).collect();
            assert!(zombies.is_empty(), "{path}: zombies {zombies:?}");
            assert_eq!(h.sup.sys().child_count(), 0, "{path}");
            let st = h.sup.status("crash").unwrap();
            assert_eq!(st.exit_count as usize, h.count("exited"), "{path}");
            assert_eq!(st.restart_count as usize + 1, h.count("spawned"), "{path}");
        }
        assert_eq!(open_fds(), fds_before, "{path}: fds leaked");
    }
}
