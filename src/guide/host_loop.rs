//! # Writing a host loop
//!
//! A [`Supervisor`](crate::Supervisor) never sleeps, never reads a clock and
//! never waits for a child: the host does, and then tells it what time it
//! is. Every loop, whatever it waits with, has the same four beats:
//!
//! 1. **Sleep** until the readiness fd is readable or
//!    [`poll_timeout`](crate::Supervisor::poll_timeout) runs out.
//! 2. **Tick**: [`tick(now)`](crate::Supervisor::tick) reaps, escalates,
//!    promotes and restarts whatever is due.
//! 3. **Handle events**: [`take_events`](crate::Supervisor::take_events)
//!    hands them over; the host may call the supervisor while it handles
//!    them (stop everything on [`Event::Fatal`](crate::Event::Fatal), say).
//! 4. **Ask again**: any call on the supervisor may move the next deadline,
//!    so `poll_timeout` is asked afresh before every sleep.
//!
//! ## The two inputs
//!
//! - **The readiness fd** ([`readiness_fd`](crate::Supervisor::readiness_fd)):
//!   with [`UnixSys`](crate::UnixSys) on Linux, one epoll fd over every
//!   child's pidfd and captured pipe, the same fd for the supervisor's whole
//!   life. Register it once. It is level-triggered: it stays readable until a
//!   tick collected what is ready. Without pidfds there is none: wake on
//!   SIGCHLD instead (a `signal-hook` pipe, tokio's `SignalKind::child()`).
//! - **The timeout** ([`poll_timeout`](crate::Supervisor::poll_timeout)):
//!   the time to the next deadline, **rounded up** to the millisecond
//!   ([`poll_timeout_in`](crate::Supervisor::poll_timeout_in) takes another
//!   resolution: a host that sleeps in `ppoll`, `epoll_pwait2` or a
//!   timerfd passes `Duration::ZERO` and gets the nanosecond; `supervise`
//!   does). Rounding down, as
//!   `PollTimeout::try_from(Duration)` does,
//!   wakes up to a millisecond early and then spins through zero-timeout
//!   polls until the deadline comes. `None` means no deadline: sleep until
//!   the fd fires. `Some(ZERO)` means work is due now, including input that
//!   a bounded tick left behind: an edge-triggered host (mio, tokio) would
//!   otherwise wait for an edge that never comes.
//!
//! ## poll(2)
//!
//! The crate docs' loop is the reference; `examples/poll_loop.rs` adds the
//! host's own signals through a `signal-hook` pipe polled next to the
//! readiness fd. The poll types come from [`procsup::nix`](crate::nix), so a
//! host needs no `nix` of its own.
//!
//! ## epoll
//!
//! Register the readiness fd once, level-triggered, and wait with the
//! timeout in milliseconds:
//!
//! ```no_run
//! use std::time::Instant;
//! use procsup::nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
//! use procsup::{ProcessSpec, Supervisor};
//!
//! let mut sup = Supervisor::new();
//! sup.add_process(ProcessSpec::new("worker", "worker"))?;
//! let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
//! epoll.add(sup.readiness_fd().expect("Linux with pidfds"), EpollEvent::new(EpollFlags::EPOLLIN, 0))?;
//! sup.start_all(Instant::now())?;
//! let mut ready = [EpollEvent::empty(); 8];
//! loop {
//!     let timeout = match sup.poll_timeout(Instant::now()) {
//!         Some(d) => EpollTimeout::try_from(d).unwrap_or(EpollTimeout::MAX),
//!         None => EpollTimeout::NONE,
//!     };
//!     let _ = epoll.wait(&mut ready, timeout);
//!     sup.tick(Instant::now());
//!     for event in sup.take_events() {
//!         println!("{event}");
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## mio
//!
//! mio is edge-triggered; `poll_timeout` is zero whenever a tick left input
//! behind, so no edge is ever waited for in vain. `examples/mio_loop.rs`
//! is the whole host, signals included.
//!
//! ```no_run
//! use std::os::fd::AsRawFd;
//! use std::time::Instant;
//! use mio::{unix::SourceFd, Events, Interest, Poll, Token};
//! use procsup::{ProcessSpec, Supervisor};
//!
//! let mut sup = Supervisor::new();
//! sup.add_process(ProcessSpec::new("worker", "worker"))?;
//! let mut poll = Poll::new()?;
//! let fd = sup.readiness_fd().expect("Linux with pidfds").as_raw_fd();
//! poll.registry().register(&mut SourceFd(&fd), Token(0), Interest::READABLE)?;
//! let mut events = Events::with_capacity(4);
//! sup.start_all(Instant::now())?;
//! loop {
//!     let _ = poll.poll(&mut events, sup.poll_timeout(Instant::now()));
//!     sup.tick(Instant::now());
//!     for event in sup.take_events() {
//!         println!("{event}");
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## tokio
//!
//! The supervisor needs no lock (it is `Send + Sync`, but nothing shares it): one task owns it and
//! runs the loop, and other tasks send it requests over a channel. That
//! task re-reads `poll_timeout` after every request, because it made the
//! call itself — no `Mutex`, no `Notify`. tokio's `AsyncFd` wants to own
//! the fd it watches, so it gets a duplicate of the readiness fd; the
//! readiness is cleared *before* the tick, so input that arrives during the
//! tick fires again. Run it on a current-thread runtime (or a
//! `LocalSet`): children die with the thread that spawned them.
//! `examples/tokio.rs` is a whole host in 25 lines of glue.
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//! use procsup::{ProcessSpec, Supervisor};
//! use tokio::io::{unix::AsyncFd, Interest};
//! use tokio::sync::mpsc;
//!
//! /// What the rest of the program may ask of the supervisor.
//! enum Request {
//!     Restart(String),
//!     Shutdown,
//! }
//!
//! # async fn run(mut requests: mpsc::Receiver<Request>) -> Result<(), Box<dyn std::error::Error>> {
//! let mut sup = Supervisor::new();
//! sup.add_process(ProcessSpec::new("worker", "worker"))?;
//! let fd = sup.readiness_fd().expect("Linux with pidfds").try_clone_to_owned()?;
//! // SAFETY: `fd` is an open duplicate owned by this AsyncFd alone.
//! let ready = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)?;
//! sup.start_all(Instant::now())?;
//! loop {
//!     let timeout = sup.poll_timeout(Instant::now());
//!     tokio::select! {
//!         guard = ready.readable() => guard?.clear_ready(),
//!         () = tokio::time::sleep(timeout.unwrap_or(Duration::MAX)), if timeout.is_some() => {}
//!         Some(request) = requests.recv() => match request {
//!             Request::Restart(name) => sup.restart_process(&name, Instant::now())?,
//!             Request::Shutdown => sup.shutdown(Instant::now()),
//!         },
//!     }
//!     sup.tick(Instant::now());
//!     for event in sup.take_events() {
//!         println!("{event}");
//!     }
//! }
//! # }
//! ```
//!
//! ## Shutting down
//!
//! [`shutdown`](crate::Supervisor::shutdown) stops everything and refuses
//! new starts: tier by tier when processes depend on each other
//! (dependents first, each tier gone before the next is signalled),
//! otherwise all at once; keep looping until
//! [`is_idle`](crate::Supervisor::is_idle), then exit. Dropping a
//! supervisor whose children still run kills them with SIGKILL: a graceful
//! host shuts down first.
//!
//! A host killed by a signal it does not handle never drops its
//! supervisor: its children die with it (their parent-death signal), but
//! what they started lives on until a host with the same
//! [state directory](crate::UnixSys::state_dir) starts. So handle SIGTERM
//! and SIGINT. With nothing but [`procsup::nix`](crate::nix): block them
//! (before anything spawns threads, so every thread inherits the mask),
//! read them from a `signalfd` polled next to the readiness fd. Children
//! do not inherit the blocked mask: procsup starts each one with an empty
//! mask and default dispositions.
//!
//! ```no_run
//! use std::os::fd::AsFd;
//! use std::time::Instant;
//! use procsup::nix::poll::{poll, PollFd, PollFlags, PollTimeout};
//! use procsup::nix::sys::signal::{SigSet, Signal};
//! use procsup::nix::sys::signalfd::{SfdFlags, SignalFd};
//! use procsup::{ProcessSpec, Supervisor};
//!
//! let mut stop = SigSet::empty();
//! stop.add(Signal::SIGTERM);
//! stop.add(Signal::SIGINT);
//! stop.thread_block()?;
//! let signals = SignalFd::with_flags(&stop, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
//!
//! let mut sup = Supervisor::new();
//! sup.add_process(ProcessSpec::new("worker", "worker"))?;
//! sup.start_all(Instant::now())?;
//! let mut stopping = false;
//! while !(stopping && sup.is_idle()) {
//!     let timeout = sup.poll_timeout(Instant::now()).map_or(PollTimeout::NONE, |d| {
//!         PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX)
//!     });
//!     let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
//!     if let Some(fd) = sup.readiness_fd() {
//!         fds.push(PollFd::new(fd, PollFlags::POLLIN));
//!     }
//!     let _ = poll(&mut fds, timeout);
//!     drop(fds);
//!     if let Ok(Some(_)) = signals.read_signal() {
//!         stopping = true;
//!         sup.shutdown(Instant::now());
//!     }
//!     sup.tick(Instant::now());
//!     for event in sup.take_events() {
//!         println!("{event}");
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
