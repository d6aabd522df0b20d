//! A supervisor inside a tokio runtime: it wakes on the readiness fd through
//! `AsyncFd` and on deadlines through `sleep`, and shuts down on ctrl-c or
//! SIGTERM. No helper, no Mutex, no Notify: the loop owns the supervisor,
//! and other tasks would talk to it through a channel (see
//! `procsup::guide::host_loop`).
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

use std::time::{Duration, Instant};

use procsup::{Backoff, ProcessSpec, Supervisor};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::signal::unix::{signal, SignalKind};

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

    // The glue: one fd, registered once (a duplicate, owned by tokio).
    let fd = sup.readiness_fd().ok_or("no readiness fd: needs Linux with pidfds")?.try_clone_to_owned()?;
    // SAFETY: `fd` is an open duplicate that only this AsyncFd owns; an
    // OwnedFd keeps the same fd until it is dropped, with the AsyncFd.
    let ready = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)?;
    let mut term = signal(SignalKind::terminate())?;
    sup.start_all(Instant::now())?;
    let mut stopping = false;
    loop {
        for event in sup.take_events() {
            println!("{event}");
        }
        if stopping && sup.is_idle() {
            return Ok(());
        }
        let timeout = sup.poll_timeout(Instant::now());
        tokio::select! {
            // Cleared before the tick: what arrives during it fires again,
            // and what a bounded tick leaves makes `poll_timeout` zero.
            guard = ready.readable() => guard?.clear_ready(),
            () = tokio::time::sleep(timeout.unwrap_or(Duration::MAX)), if timeout.is_some() => {}
            _ = tokio::signal::ctrl_c() => stopping = true,
            _ = term.recv() => stopping = true,
        }
        if stopping {
            sup.shutdown(Instant::now());
        }
        sup.tick(Instant::now());
    }
}
