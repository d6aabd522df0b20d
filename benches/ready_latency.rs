//! Readiness latency with a real child: from `READY=1` sent (the child's
//! `CLOCK_REALTIME` just before its `send`) to the [`Event::Ready`] seen by
//! a host that polls the readiness fd, ticks and drains events.
//!
//! Baseline in the same run, the floor: the same child sends the same kind
//! of datagram to a plain socket the host polls by itself, with no
//! supervisor in between: the kernel's wake-up latency.
//!
//! Each sample of the procsup path is a reload of a `Readiness::Notify`
//! child: `reload_process` (SIGHUP; the supervisor marks the child
//! reloading), and the child answers with one datagram,
//! `STATUS=<ns>\nREADY=1`; the `Ready` event ends the reload.
//!
//! Run: `cargo bench --bench ready_latency` (needs python3).
//! `PROCSUP_LATENCY_SAMPLES` sets the sample count (default 300).

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use procsup::{Event, ProcessSpec, Readiness, Signal, Supervisor};

const CHILD_PY: &str = r#"
import os, signal, socket, time
addr = os.environ["NOTIFY_SOCKET"]
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.connect("\0" + addr[1:])
plain = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
plain.connect("\0" + os.environ["BENCH_SOCKET"])
def reload(*_):
    notify.send(b"STATUS=%d\nREADY=1" % time.clock_gettime_ns(time.CLOCK_REALTIME))
def baseline(*_):
    plain.send(b"%d" % time.clock_gettime_ns(time.CLOCK_REALTIME))
signal.signal(signal.SIGHUP, reload)
signal.signal(signal.SIGUSR1, baseline)
notify.send(b"READY=1")
while True:
    signal.pause()
"#;

fn realtime_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos() as i128
}

fn median(mut v: Vec<i128>) -> Duration {
    v.sort_unstable();
    Duration::from_nanos(v[v.len() / 2].max(0) as u64)
}

/// One turn of a host loop: wait for the readiness fd or the next deadline
/// (at most `cap`), tick, and return the events.
fn turn(sup: &mut Supervisor, cap: Duration) -> Vec<Event> {
    let now = Instant::now();
    let wait = sup.next_deadline().map_or(cap, |t| t.saturating_duration_since(now).min(cap));
    {
        let fds = sup.readiness_fds();
        let mut pfds: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
        let _ = poll(&mut pfds, PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX));
    }
    sup.tick(Instant::now());
    sup.drain_events().collect()
}

/// The floor: a datagram to a socket this loop polls itself.
fn floor_sample(sup: &mut Supervisor, plain: &UnixDatagram) -> i128 {
    let mut buf = [0u8; 64];
    sup.signal_process("child", Signal::SIGUSR1).unwrap();
    let mut pfd = [PollFd::new(plain.as_fd(), PollFlags::POLLIN)];
    poll(&mut pfd, PollTimeout::from(5000u16)).unwrap();
    let n = plain.recv(&mut buf).unwrap();
    let sent: i128 = std::str::from_utf8(&buf[..n]).unwrap().parse().unwrap();
    realtime_ns() - sent
}

/// procsup: READY=1 through the supervisor to the host.
fn ready_sample(sup: &mut Supervisor) -> i128 {
    sup.reload_process("child", Instant::now()).unwrap();
    let mut sent = None;
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < end, "no Ready after a reload");
        let events = turn(sup, Duration::from_millis(100));
        let seen = realtime_ns();
        for e in &events {
            if let Event::Status { text, .. } = e {
                sent = text.parse::<i128>().ok();
            }
        }
        if events.iter().any(|e| e.kind() == "ready") {
            return seen - sent.expect("STATUS= comes with READY=1");
        }
    }
}

fn main() {
    let samples: usize = std::env::var("PROCSUP_LATENCY_SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let name = format!("procsup-bench-{}", std::process::id());
    let plain = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
    let mut sup = Supervisor::new();
    sup.add_process(
        ProcessSpec::new("child", "python3")
            .args(["-c", CHILD_PY])
            .env("BENCH_SOCKET", &name)
            .ready(Readiness::Notify)
            .start_timeout(Duration::from_secs(10))
            .stop_timeout(Duration::from_secs(1)),
    )
    .unwrap();
    sup.start_all(Instant::now()).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while !turn(&mut sup, Duration::from_millis(50)).iter().any(|e| e.kind() == "ready") {
        assert!(Instant::now() < end, "the child never became ready");
    }
    let (mut floor, mut ready) = (Vec::new(), Vec::new());
    for i in 0..samples {
        // Alternate which goes first, so that neither always follows the
        // other's wake-up (or the idle sleep below).
        if i % 2 == 0 {
            floor.push(floor_sample(&mut sup, &plain));
            ready.push(ready_sample(&mut sup));
        } else {
            ready.push(ready_sample(&mut sup));
            floor.push(floor_sample(&mut sup, &plain));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let (f, r) = (median(floor), median(ready));
    println!("ready_latency: {samples} samples");
    println!("  plain wake-up (floor), median: {f:?}");
    println!("  READY=1 -> Event::Ready, median: {r:?}");
    println!("  ratio: {:.2}x the floor", r.as_secs_f64() / f.as_secs_f64().max(1e-9));
    sup.shutdown(Instant::now());
    let end = Instant::now() + Duration::from_secs(5);
    while !sup.is_idle() && Instant::now() < end {
        turn(&mut sup, Duration::from_millis(50));
    }
}
