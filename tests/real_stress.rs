//! Load: 200 children that each exit at once, restarted with zero backoff.
//! Afterwards no zombie, no fd leak, restart counts that match the exits
//! observed, and a resident set that does not grow after warm-up.
//!
//! CI runs it for 5 s; `PROCSUP_STRESS_SECS=30` (or more) runs it long.
// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod real;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use procsup::{Backoff, Event, ProcessSpec, UnixSys};
use real::Host;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).unwrap().unwrap() as u64
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[derive(Default)]
struct Tally {
    spawned: HashMap<String, u32>,
    exited: HashMap<String, u32>,
}

/// Zombie children of this process, from /proc: no pid list to keep.
fn my_zombies() -> Vec<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            let mut fields = stat.rsplit(") ").next().unwrap_or("").split(' ');
            let (state, ppid) = (fields.next(), fields.next());
            state == Some("Z") && ppid == Some(me.as_str())
        })
        .collect()
}

impl Tally {
    fn take(&mut self, h: &mut Host) {
        for (_, e) in h.log.drain(..) {
            match e {
                Event::Spawned { name, .. } => *self.spawned.entry(name.to_string()).or_default() += 1,
                Event::Exited { name, .. } => *self.exited.entry(name.to_string()).or_default() += 1,
                _ => {}
            }
        }
    }
}

#[test]
fn stress_two_hundred_crash_looping_children() {
    let secs: f64 = std::env::var("PROCSUP_STRESS_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(5.0);
    real::init();
    let fds_before = open_fds();
    let mut tally = Tally::default();
    let (rss_warm, rss_end);
    {
        let mut h = Host::new(UnixSys::new());
        for i in 0..200 {
            h.add(
                ProcessSpec::new(format!("c{i:03}"), "true")
                    .backoff(Backoff::none())
                    .start_grace(Duration::from_secs(1)),
            );
        }
        let t0 = Instant::now();
        h.start_all();
        let warm_at = t0 + Duration::from_secs_f64(secs / 3.0);
        let end = t0 + Duration::from_secs_f64(secs);
        let mut warm = None;
        while Instant::now() < end {
            h.turn(Duration::from_millis(50));
            tally.take(&mut h);
            if warm.is_none() && Instant::now() >= warm_at {
                warm = Some(rss_bytes());
            }
        }
        rss_warm = warm.expect("warmed up");
        rss_end = rss_bytes();
        h.sup.stop_all(Instant::now());
        h.run_until(Duration::from_secs(30), |h| h.sup.is_idle());
        tally.take(&mut h);
        let total: u32 = tally.exited.values().sum();
        eprintln!(
            "{total} exits in {secs} s; rss {} KiB after warm-up, {} KiB at the end",
            rss_warm / 1024,
            rss_end / 1024
        );
        assert!(total >= 200, "the children barely ran: {total}");
        for st in h.sup.statuses() {
            let spawned = tally.spawned[&st.name];
            let exited = tally.exited[&st.name];
            assert_eq!(spawned, exited, "{}: every child was reaped", st.name);
            assert_eq!(st.exit_count, exited, "{}", st.name);
            assert_eq!(st.restart_count + 1, spawned, "{}: restarts = exits observed - the last", st.name);
        }
        assert_eq!(h.sup.sys().child_count(), 0);
    }
    let zombies = my_zombies();
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
    assert_eq!(open_fds(), fds_before, "fds leaked");
    // Generous: the allocator may keep a little; steady growth would show
    // as megabytes over a long run.
    assert!(rss_end <= rss_warm + 4 * 1024 * 1024, "rss grew from {} to {} KiB", rss_warm / 1024, rss_end / 1024);
}
