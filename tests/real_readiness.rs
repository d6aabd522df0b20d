//! The readiness fd a host registers once stays the same open file for the
//! supervisor's whole life, through spawns, exits and restarts.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod real;

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use procsup::{Backoff, Output, ProcessSpec};
use real::Host;

/// The fd number and the open file (device, inode) behind it.
fn identity(fd: BorrowedFd<'_>) -> (i32, u64, u64) {
    let st = procsup::nix::sys::stat::fstat(fd).unwrap();
    (fd.as_raw_fd(), st.st_dev, st.st_ino)
}

#[test]
fn one_readiness_fd_for_the_supervisors_life() {
    real::init();
    let mut h = Host::new(procsup::UnixSys::new());
    let before = identity(h.sup.readiness_fd().expect("Linux with pidfds"));
    assert_eq!(h.sup.readiness_fds().iter().map(|fd| fd.as_raw_fd()).collect::<Vec<_>>(), [before.0]);
    h.add(
        ProcessSpec::new("crash", "sh")
            .args(["-c", "echo out; exit 1"])
            .backoff(Backoff::none())
            .stdout(Output::Capture),
    );
    h.start_all();
    h.run_until(Duration::from_secs(15), |h| h.count("exited") >= 20);
    assert_eq!(identity(h.sup.readiness_fd().unwrap()), before);
    h.sup.shutdown(std::time::Instant::now());
    h.run_until(Duration::from_secs(15), |h| h.sup.is_idle());
    assert_eq!(identity(h.sup.readiness_fd().unwrap()), before);
}
