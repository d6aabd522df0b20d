//! The smallest correct host: `poll(2)` on the supervisor's readiness fd,
//! with the timeout from `poll_timeout()`.
//!
//! ```text
//! cargo run --example poll_loop -- sleep 30
//! ```
//!
//! Kill the child (`kill -9 <pid>`) and watch it come back; SIGTERM or
//! SIGINT stops it gracefully and exits 0.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use procsup::nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use procsup::{Backoff, ProcessSpec, Supervisor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, args)) = argv.split_first() else {
        eprintln!("usage: poll_loop PROGRAM [ARGS...]");
        std::process::exit(2);
    };

    // The host's own signal handling: a flag, and a socket that wakes poll.
    let stop = Arc::new(AtomicBool::new(false));
    let (wake, waker) = UnixStream::pair()?;
    wake.set_nonblocking(true)?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
        signal_hook::low_level::pipe::register(sig, waker.try_clone()?)?;
    }

    let mut sup = Supervisor::new();
    sup.add_process(
        ProcessSpec::new("child", program)
            .args(args)
            .backoff(Backoff::fixed(Duration::from_millis(100)))
            .stop_timeout(Duration::from_secs(2)),
    )?;
    sup.start_all(Instant::now())?;
    let mut stopping = false;
    loop {
        for event in sup.take_events() {
            println!("{event}");
        }
        if stopping && sup.is_idle() {
            return Ok(());
        }
        // Sleep until a child exits or the next deadline, rounded up to the
        // millisecond: nothing else, and never a spin.
        let timeout = sup
            .poll_timeout(Instant::now())
            .map_or(PollTimeout::NONE, |d| PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX));
        {
            let mut pollfds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
            pollfds.extend(sup.readiness_fd().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
            let _ = poll(&mut pollfds, timeout); // EINTR just means: look again
        }
        while (&wake).read(&mut [0u8; 16]).is_ok_and(|n| n > 0) {}
        let now = Instant::now();
        if stop.swap(false, Ordering::Relaxed) && !stopping {
            stopping = true;
            sup.shutdown(now);
        }
        sup.tick(now);
    }
}
