//! # Testing your host with FakeSys
//!
//! A host's supervision logic — which programs it starts, what it does on
//! `Fatal`, how it shuts down — can be tested without one real process and
//! without waiting one real second. [`FakeSys`](crate::testing::FakeSys)
//! stands in for the operating system and
//! [`VirtualClock`](crate::testing::VirtualClock) for time; the supervisor
//! cannot tell, because it only ever asks its [`Sys`](crate::Sys) and takes
//! `now` from its caller.
//!
//! ## Make the host generic over `Sys`
//!
//! Write the host's logic against `Supervisor<S>` for any `S: Sys`, and take
//! `now` as an argument. `main` passes a real supervisor and
//! `Instant::now()`; tests pass a `FakeSys` and a virtual clock.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use procsup::{Backoff, Event, ProcessSpec, Supervisor, Sys};
//!
//! /// The host's rule: the web server cannot live without its database.
//! fn on_events<S: Sys>(sup: &mut Supervisor<S>, now: Instant) {
//!     for event in sup.take_events() {
//!         if matches!(&event, Event::Fatal { name, .. } if &**name == "db") {
//!             sup.shutdown(now);
//!         }
//!     }
//! }
//!
//! fn setup<S: Sys>(sup: &mut Supervisor<S>, now: Instant) -> procsup::Result<()> {
//!     let backoff = Backoff::exponential(Duration::from_secs(1)).jitter(0.0);
//!     sup.add_process(ProcessSpec::new("db", "postgres").backoff(backoff).give_up_after(3))?;
//!     sup.add_process(ProcessSpec::new("web", "server"))?;
//!     sup.start_all(now)
//! }
//! # use procsup::testing::{FakeSys, VirtualClock};
//! # let mut clock = VirtualClock::new();
//! # let mut sup = Supervisor::with_sys(FakeSys::new());
//! # setup(&mut sup, clock.now()).unwrap();
//! # on_events(&mut sup, clock.now());
//! ```
//!
//! ## Drive it through virtual time
//!
//! - [`FakeSys::exit_by_name`](crate::testing::FakeSys::exit_by_name) ends a
//!   process's child (`exit`, by pid, when the test holds one);
//!   [`output`](crate::testing::FakeSys::output) makes it write,
//!   [`fail_next_spawn`](crate::testing::FakeSys::fail_next_spawn) makes a
//!   spawn fail. Every spawn and signal is recorded.
//! - [`Supervisor::advance_to_next_deadline`](crate::Supervisor::advance_to_next_deadline)
//!   moves the clock to the next wake-up and ticks there, as a real host's
//!   sleep would.
//! - [`Supervisor::run_until_idle`](crate::Supervisor::run_until_idle) does
//!   that until nothing is scheduled, but at most a given number of steps:
//!   a host that livelocks (restarting something forever) fails the test
//!   with [`StepLimit`](crate::testing::StepLimit) instead of hanging it.
//!
//! The host above, tested: the database crashes at once each time, so its
//! restarts wait 1 s and 2 s, the third failure is fatal, and the web
//! server is stopped — SIGTERM, then SIGKILL after its 10 s stop timeout,
//! because a fake child ignores everything but SIGKILL.
//!
//! ```
//! # use std::time::{Duration, Instant};
//! # use procsup::{Backoff, Event, ProcessSpec, Supervisor, Sys};
//! # fn on_events<S: Sys>(sup: &mut Supervisor<S>, now: Instant) {
//! #     for event in sup.take_events() {
//! #         if matches!(&event, Event::Fatal { name, .. } if &**name == "db") {
//! #             sup.shutdown(now);
//! #         }
//! #     }
//! # }
//! # fn setup<S: Sys>(sup: &mut Supervisor<S>, now: Instant) -> procsup::Result<()> {
//! #     let backoff = Backoff::exponential(Duration::from_secs(1)).jitter(0.0);
//! #     sup.add_process(ProcessSpec::new("db", "postgres").backoff(backoff).give_up_after(3))?;
//! #     sup.add_process(ProcessSpec::new("web", "server"))?;
//! #     sup.start_all(now)
//! # }
//! use procsup::{Exit, Signal, State};
//! use procsup::testing::{FakeSys, VirtualClock};
//!
//! let mut clock = VirtualClock::new();
//! let mut sup = Supervisor::with_sys(FakeSys::new());
//! setup(&mut sup, clock.now())?;
//! let web = sup.sys().pid_of("web").unwrap();
//! for _ in 0..3 {
//!     assert!(sup.sys_mut().exit_by_name("db", Exit::Exited(1)));
//!     sup.tick(clock.now());
//!     on_events(&mut sup, clock.now());
//!     sup.advance_to_next_deadline(&mut clock); // the restart, or the kill
//! }
//! assert_eq!(sup.status("db")?.state, State::Fatal);
//! assert_eq!(clock.secs(clock.now()), 3.0 + 10.0); // 1 s + 2 s of backoff, 10 s to SIGKILL
//! sup.run_until_idle(&mut clock, 100).expect("no livelock");
//! assert_eq!(sup.sys().signals_to(web), [Signal::SIGTERM, Signal::SIGKILL]);
//! assert_eq!(sup.status("web")?.state, State::Stopped);
//! # Ok::<(), procsup::Error>(())
//! ```
//!
//! ## What to assert on
//!
//! - **Virtual time**, never wall-clock time: `clock.secs(instant)` turns an
//!   instant into the seconds a port of another system's test speaks in.
//! - **Events**, in order, from `take_events`.
//! - **Status snapshots**: [`status`](crate::Supervisor::status) and
//!   [`statuses`](crate::Supervisor::statuses).
//! - **What the OS was asked**: [`spawns`](crate::testing::FakeSys::spawns)
//!   and [`signals`](crate::testing::FakeSys::signals).
//!
//! [`with_seed`](crate::Supervisor::with_seed) makes jitter reproducible:
//! the same seed gives the same delays, to the nanosecond.
