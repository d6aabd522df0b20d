//! A supervisor inside a tokio runtime: it wakes on the readiness fd through
//! `AsyncFd` and on deadlines through `sleep_until`, and shuts down on
//! ctrl-c or SIGTERM.
//!
//! ```text
//! cargo run --example tokio -- sleep 30
//! ```
//!
//! The supervisor lives in the runtime's main task on a current-thread
//! runtime: children die with the thread that spawned them
//! (`PR_SET_PDEATHSIG`), so it must not hop between worker threads.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use procsup::{Backoff, ProcessSpec, Supervisor};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};

/// Whether the fd is still readable: tokio watches it edge-triggered, so
/// readiness may only be cleared once nothing is left to collect.
fn still_ready(fd: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut pfd = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    poll(&mut pfd, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, args)) = argv.split_first() else {
        eprintln!("usage: tokio PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let mut sup = Supervisor::new();
    sup.add_process(
        ProcessSpec::new("child", program)
            .args(args)
            .backoff(Backoff::fixed(Duration::from_millis(100)))
            .stop_timeout(Duration::from_secs(2)),
    )?;
    // A duplicate of the epoll fd, owned by tokio's reactor. Without pidfds
    // there is none, and SIGCHLD below does the waking.
    let ready = match sup.readiness_fds().first() {
        Some(fd) => {
            let owned = fd.try_clone_to_owned()?;
            // SAFETY: `owned` is a valid fd that only this AsyncFd owns; it is
            // neither replaced nor closed while registered.
            let registered = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) };
            Some(registered.map_err(|e| e.into_parts().1)?)
        }
        None => None,
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut child = signal(SignalKind::child())?;
    sup.start_all(Instant::now())?;
    let mut stopping = false;
    loop {
        for event in sup.drain_events() {
            println!("{event}");
        }
        if stopping && sup.is_idle() {
            return Ok(());
        }
        let deadline = sup.next_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            guard = async { ready.as_ref().expect("guarded by the if").readable().await }, if ready.is_some() => {
                let mut guard = guard?;
                sup.tick(Instant::now());
                if !still_ready(guard.get_inner()) {
                    guard.clear_ready();
                }
            }
            _ = async { tokio::time::sleep_until(deadline.expect("guarded by the if")).await }, if deadline.is_some() => {
                sup.tick(Instant::now());
            }
            _ = child.recv() => sup.tick(Instant::now()),
            _ = tokio::signal::ctrl_c() => {
                stopping = true;
                sup.shutdown(Instant::now());
            }
            _ = term.recv() => {
                stopping = true;
                sup.shutdown(Instant::now());
            }
        }
    }
}
