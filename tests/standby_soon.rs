//! A real `Supervisor<UnixSys>` with successors held ready, after a failed
//! start (a crash loop without backoff): the host is told to poll at once,
//! so that the next successor is made before the next restart, with or
//! without a state directory (whose records, also waiting for a poll, must
//! not put it off by their 1 ms). A review's finding: with one, it was.

// A host: it owns real time.
#![allow(clippy::disallowed_methods)]
use procsup::{Backoff, ProcessSpec, Supervisor, UnixSys};
use std::time::{Duration, Instant};

fn run(state_dir: Option<&std::path::Path>) -> Option<Duration> {
    let mut sys = UnixSys::new().standby(true).without_cgroups();
    if let Some(d) = state_dir {
        sys = sys.state_dir(d).unwrap();
    }
    let mut sup = Supervisor::with_sys(sys);
    sup.add_process(
        ProcessSpec::new("s", "sleep")
            .arg("30")
            .backoff(Backoff::fixed(Duration::ZERO))
            .start_grace(Duration::from_secs(10)),
    )
    .unwrap();
    sup.start_all(Instant::now()).unwrap();
    let first = sup.status("s").unwrap().pid.unwrap();
    nix::sys::signal::kill(first, nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = Instant::now();
        assert!(now < deadline);
        sup.tick(now);
        if sup.status("s").unwrap().pid.is_some_and(|p| p != first) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // What next_deadline adds to the tick's `now` (deterministic, unlike
    // poll_timeout measured against a later clock reading).
    let t = procsup::Sys::wake_after(sup.sys());
    let _ = sup.take_events();
    sup.shutdown(Instant::now());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sup.is_idle() {
        assert!(Instant::now() < deadline);
        sup.tick(Instant::now());
        std::thread::sleep(Duration::from_millis(1));
    }
    t
}

/// Without a state directory.
#[test]
fn after_a_failed_start_the_host_polls_at_once() {
    assert_eq!(run(None), Some(Duration::ZERO));
}

/// With one: the dead child's record to remove waits too, for 1 ms.
#[test]
fn after_a_failed_start_the_host_polls_at_once_with_a_state_dir() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    assert_eq!(run(Some(tmp.path())), Some(Duration::ZERO));
}
