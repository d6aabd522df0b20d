//! A supervisor in a mio event loop: the readiness fd is registered once,
//! and `Poll::poll` sleeps until it fires or `poll_timeout()` runs out.
//! An epoll host is the same loop with `epoll_ctl` and `epoll_wait`.
//!
//! ```text
//! cargo run --example mio_loop -- sleep 30
//! ```
//!
//! SIGTERM or SIGINT stops the child gracefully and exits 0.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use procsup::{Backoff, ProcessSpec, Supervisor};

const SUPERVISOR: Token = Token(0);
const SIGNALS: Token = Token(1);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, args)) = argv.split_first() else {
        eprintln!("usage: mio_loop PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let mut sup = Supervisor::new();
    sup.add_process(
        ProcessSpec::new("child", program)
            .args(args)
            .backoff(Backoff::fixed(Duration::from_millis(100)))
            .stop_timeout(Duration::from_secs(2)),
    )?;

    // The host's own signal handling: a flag, and a socket that wakes mio.
    let stop = Arc::new(AtomicBool::new(false));
    let (wake, waker) = UnixStream::pair()?;
    wake.set_nonblocking(true)?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
        signal_hook::low_level::pipe::register(sig, waker.try_clone()?)?;
    }

    // The glue: the supervisor's one fd, registered once for its life.
    let mut poll = Poll::new()?;
    let fd = sup.readiness_fd().ok_or("no readiness fd: needs Linux with pidfds")?.as_raw_fd();
    poll.registry().register(&mut SourceFd(&fd), SUPERVISOR, Interest::READABLE)?;
    poll.registry().register(&mut SourceFd(&wake.as_raw_fd()), SIGNALS, Interest::READABLE)?;
    let mut events = Events::with_capacity(4);
    sup.start_all(Instant::now())?;
    let mut stopping = false;
    loop {
        for event in sup.take_events() {
            println!("{event}");
        }
        if stopping && sup.is_idle() {
            return Ok(());
        }
        // Edge-triggered: whatever a bounded tick leaves behind makes
        // `poll_timeout` zero, so nothing waits for an edge that never comes.
        match poll.poll(&mut events, sup.poll_timeout(Instant::now())) {
            Err(e) if e.kind() != ErrorKind::Interrupted => return Err(e.into()),
            _ => {}
        }
        while (&wake).read(&mut [0u8; 16]).is_ok_and(|n| n > 0) {}
        if stop.swap(false, Ordering::Relaxed) && !stopping {
            stopping = true;
            sup.shutdown(Instant::now());
        }
        sup.tick(Instant::now());
    }
}
