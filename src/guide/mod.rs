//! Guides: long-form documentation, no code.
//!
//! Read them in order, or jump to the one you need:
//!
//! 1. [`host_loop`]: the loop that drives a [`Supervisor`](crate::Supervisor),
//!    written for `poll(2)`, epoll, mio and tokio.
//! 2. [`testing`]: testing your host with [`FakeSys`](crate::testing::FakeSys)
//!    and virtual time, without one real process.
//! 3. [`migrating`]: from supervisord, systemd, gunicorn and Twisted, with a
//!    worked example each.
//!
//! Every example here is compiled, and the ones on `FakeSys` also run, as
//! doctests.

pub mod host_loop;
pub mod migrating;
pub mod testing;
