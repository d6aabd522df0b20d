//! Readiness channels leak nothing: notify sockets and notification-fd
//! pipes of children that come and go are all closed.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod real;

use std::time::Duration;

use procsup::{Backoff, ProcessSpec, Readiness};
use real::{both_paths, Host};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn crash_cycles_of_notify_and_fd_children_leak_no_fd() {
    real::init();
    for (path, make_sys) in both_paths() {
        let fds_before = open_fds();
        {
            let mut h = Host::new(make_sys());
            let crash = |name: &str, ready: Readiness| {
                ProcessSpec::new(name, "sh").args(["-c", "exit 1"]).backoff(Backoff::none()).ready(ready)
            };
            h.add(crash("notify", Readiness::Notify).watchdog(Duration::from_secs(5)));
            h.add(crash("fd", Readiness::Fd(3)));
            h.start_all();
            h.run_until(Duration::from_secs(60), |h| h.count("exited") >= 200);
            h.sup.stop_all(std::time::Instant::now());
            h.run_until(Duration::from_secs(10), |h| h.sup.is_idle());
            assert_eq!(h.sup.sys().child_count(), 0, "{path}");
        }
        assert_eq!(open_fds(), fds_before, "{path}: fds leaked");
    }
}
