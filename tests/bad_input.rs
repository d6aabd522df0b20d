//! Every way to build an invalid spec or call the API wrongly: a typed
//! error or a documented no-op, never a panic. (Names are `&str`, so a
//! non-UTF-8 name cannot be expressed; programs, arguments and environment
//! are `OsStr` and may be any bytes but NUL.)

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use common::{secs, Harness};
use procsup::testing::FakeSys;
use procsup::{Backoff, Error, Exit, Output, ProcessSpec, State, Supervisor, MAX_DURATION, MAX_NAME_LEN};

fn base() -> ProcessSpec {
    ProcessSpec::new("ok", "prog")
}

/// Specs `add_process` must refuse, with what the reason must mention.
fn invalid_specs() -> Vec<(&'static str, ProcessSpec, &'static str)> {
    let huge = MAX_DURATION + Duration::from_secs(1);
    vec![
        ("empty name", ProcessSpec::new("", "prog"), "empty"),
        ("huge name", ProcessSpec::new("n".repeat(MAX_NAME_LEN + 1), "prog"), "longer"),
        ("name with /", ProcessSpec::new("a/b", "prog"), "file name"),
        ("name ..", ProcessSpec::new("..", "prog"), "file name"),
        ("name .", ProcessSpec::new(".", "prog"), "file name"),
        ("name with NUL", ProcessSpec::new("a\0b", "prog"), "file name"),
        ("hidden name", ProcessSpec::new(".tmp", "prog"), "'.'"),
        ("name with newline", ProcessSpec::new("a\nb", "prog"), "control"),
        ("empty program", ProcessSpec::new("a", ""), "empty"),
        ("NUL in program", ProcessSpec::new("a", "pr\0g"), "NUL"),
        ("NUL in an argument", base().arg("x\0y"), "NUL"),
        ("NUL in an env value", base().env("K", "v\0"), "NUL"),
        ("NUL in an env key", base().env("K\0", "v"), "NUL"),
        ("= in an env key", base().env("A=B", "v"), "'='"),
        ("empty env key", base().env("", "v"), "empty"),
        ("NUL in the working directory", base().current_dir("/tm\0p"), "NUL"),
        ("empty working directory", base().current_dir(""), "empty"),
        ("stdout to stdout", base().stdout(Output::ToStdout), "stdout"),
        ("empty output path", base().stdout(Output::Append("".into())), "empty"),
        ("absurd start grace", base().start_grace(huge), "100 years"),
        ("Duration::MAX stop timeout", base().stop_timeout(Duration::MAX), "100 years"),
        ("absurd backoff", base().backoff(Backoff::exponential(huge)), "100 years"),
        ("absurd backoff cap", base().backoff(Backoff::exponential(secs(1.0)).max(huge)), "100 years"),
        ("NaN jitter", base().backoff(Backoff::exponential(secs(1.0)).jitter(f64::NAN)), "jitter"),
        ("negative jitter", base().backoff(Backoff::exponential(secs(1.0)).jitter(-0.1)), "jitter"),
        ("jitter above 1", base().backoff(Backoff::exponential(secs(1.0)).jitter(1.01)), "jitter"),
        ("infinite jitter", base().backoff(Backoff::exponential(secs(1.0)).jitter(f64::INFINITY)), "jitter"),
        ("backoff cap below its start", base().backoff(Backoff::exponential(secs(5.0)).max(secs(1.0))), "shorter"),
        ("linear cap below its step", base().backoff(Backoff::linear(secs(5.0)).max(secs(1.0))), "shorter"),
        ("zero start timeout", base().ready(procsup::Readiness::Notify).start_timeout(Duration::ZERO), "zero"),
        ("give up after 0", base().give_up_after(0), "at least 1"),
        ("zero restart window", base().max_restarts_within(3, Duration::ZERO), "window"),
        ("absurd restart window", base().max_restarts_within(3, huge), "100 years"),
        ("umask beyond 0777", base().umask(0o7777), "umask"),
        ("zero instances", base().instances(0), "instances"),
        ("too many instances", base().instances(procsup::MAX_INSTANCES + 1), "instances"),
        (
            "instances overflowing the name",
            ProcessSpec::new("n".repeat(MAX_NAME_LEN - 1), "p").instances(100),
            "longer",
        ),
    ]
}

#[test]
fn invalid_specs_are_typed_errors() {
    for (what, spec, mention) in invalid_specs() {
        let mut sup = Supervisor::with_sys(FakeSys::new());
        match sup.add_process(spec) {
            Err(Error::InvalidSpec { reason, .. }) => assert!(reason.contains(mention), "{what}: {reason}"),
            other => panic!("{what}: expected InvalidSpec, got {other:?}"),
        }
        assert!(sup.is_empty(), "{what}: something was added");
    }
}

#[test]
fn edge_values_that_are_valid_do_what_the_docs_say() {
    let non_utf8 = OsStr::from_bytes(b"\xff\xfe");
    let mut h = Harness::with([
        ProcessSpec::new("zero-grace", "p").start_grace(Duration::ZERO),
        ProcessSpec::new("zero-timeout", "p").stop_timeout(Duration::ZERO),
        ProcessSpec::new("zero-backoff", "p").backoff(Backoff::none()),
        ProcessSpec::new("bytes", non_utf8).arg(non_utf8).env(non_utf8, non_utf8),
        ProcessSpec::new("longest".to_string() + &"n".repeat(MAX_NAME_LEN - 7), "p"),
        ProcessSpec::new("max", "p").start_grace(MAX_DURATION).stop_timeout(MAX_DURATION),
        ProcessSpec::new("full-jitter", "p").backoff(Backoff::exponential(secs(1.0)).jitter(1.0)),
    ]);
    h.start_all();
    // Zero grace: Running at once.
    assert_eq!(h.state("zero-grace"), State::Running);
    // Zero stop timeout: SIGKILL at the next tick.
    h.stop("zero-timeout");
    h.tick();
    assert!(h.log.iter().any(|e| e.kind() == "killed" && e.name() == "zero-timeout"));
    // Zero backoff: restarted in the tick that reaps the exit.
    h.exit("zero-backoff", Exit::Exited(1));
    h.tick();
    assert_eq!(h.state("zero-backoff"), State::Starting);
    // Non-UTF-8 program and args reach the OS layer untouched.
    let spawned = h.sup.sys().spawns().iter().find(|s| s.spec.get_name() == "bytes").unwrap();
    assert_eq!(spawned.spec.get_program(), non_utf8);
    // The longest durations do not overflow an Instant.
    assert_eq!(h.state("max"), State::Starting);
}

#[test]
fn wrong_calls_are_typed_errors() {
    let mut sup = Supervisor::with_sys(FakeSys::new());
    let now = Instant::now();
    let unknown = |r: Result<(), Error>| matches!(r, Err(Error::UnknownProcess(n)) if n == "ghost");
    assert!(unknown(sup.start_process("ghost", now)));
    assert!(unknown(sup.stop_process("ghost", now)));
    assert!(unknown(sup.restart_process("ghost", now)));
    assert!(unknown(sup.remove_process("ghost", now)));
    assert!(unknown(sup.rolling_restart(Some("ghost"), now)));
    assert!(unknown(sup.spawn_process("ghost", now).map(drop)));
    assert!(unknown(sup.handle_exit("ghost", now).map(drop)));
    assert!(unknown(sup.status("ghost").map(drop)));
    assert!(unknown(sup.spec("ghost").map(drop)));
    sup.add_process(base()).unwrap();
    assert!(matches!(sup.add_process(base()), Err(Error::DuplicateProcess(n)) if n == "ok"));
    // Steps with nothing to do are no-ops.
    assert!(sup.reap_processes(now).is_empty());
    assert!(sup.promote_running(now).is_empty());
    assert!(sup.retry_backoff(now).is_empty());
    assert!(sup.escalate_stops(now).is_empty());
    assert!(!sup.handle_exit("ok", now).unwrap());
    assert_eq!(sup.cleanup_orphans(now).unwrap(), 0);
    sup.rolling_restart(None, now).unwrap(); // nothing Running: nothing to replace
    assert_eq!(sup.poll_event().map(|e| e.kind()), Some("roll_done"));
    // After shutdown nothing new starts.
    sup.shutdown(now);
    let down = |r: Result<(), Error>| matches!(r, Err(Error::ShuttingDown));
    assert!(down(sup.add_process(ProcessSpec::new("late", "p"))));
    assert!(down(sup.start_process("ok", now)));
    assert!(down(sup.restart_process("ok", now)));
    assert!(down(sup.start_all(now)));
    assert!(down(sup.rolling_restart(None, now)));
    assert!(down(sup.spawn_process("ok", now).map(drop)));
    // Stopping and removing still work.
    sup.stop_process("ok", now).unwrap();
    sup.remove_process("ok", now).unwrap();
    assert!(sup.is_empty() && sup.is_idle());
}

#[test]
fn errors_read_well() {
    let mut sup = Supervisor::with_sys(FakeSys::new());
    let e = sup.add_process(ProcessSpec::new("a/b", "p")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid spec for \"a/b\": the name must be usable as a file name (no '/', NUL, '.' or '..')"
    );
    let e = sup.stop_process("nope", Instant::now()).unwrap_err();
    assert_eq!(e.to_string(), "no process named \"nope\"");
}

/// The latest `Instant` there is, built by `checked_add` alone: double the
/// step while it fits, then halve it down to a nanosecond.
fn end_of_time() -> Instant {
    let mut t = Instant::now();
    let mut step = Duration::from_secs(1);
    while let Some(next) = t.checked_add(step) {
        t = next;
        step = step.saturating_mul(2);
    }
    while !step.is_zero() {
        match t.checked_add(step) {
            Some(next) => t = next,
            None => step /= 2,
        }
    }
    assert_eq!(t.checked_add(Duration::from_nanos(1)), None);
    t
}

/// Every path that computes a deadline — promotion, retry, kill, retiring
/// kill, orphan kill and the wait for an orphan — at the end of time and
/// half a second before it: deadlines saturate, nothing panics
/// (issue 11.7: "overflow when adding duration to instant").
#[test]
fn a_now_at_the_end_of_time_never_panics() {
    let end = end_of_time();
    for before in [Duration::ZERO, Duration::from_millis(500)] {
        let t0 = end - before;
        let long = MAX_DURATION;
        let mut sup = Supervisor::with_sys(FakeSys::new()).with_seed(1);
        let slow =
            |name: &str| ProcessSpec::new(name, "p").start_grace(long).stop_timeout(long).backoff(Backoff::fixed(long));
        sup.add_process(slow("a")).unwrap();
        sup.add_process(slow("g").instances(2)).unwrap();
        sup.sys_mut().add_orphan("a", procsup::Pid::from_raw(77));
        // Orphan kill deadline and the wait for it; promotion deadlines.
        sup.start_all(t0).unwrap();
        assert_eq!(sup.status("a").unwrap().state, State::Backoff, "a waits for its orphan");
        let saturated = |t: Option<Instant>| t.is_some_and(|t| t >= t0 && t <= end);
        assert!(saturated(sup.next_deadline()));
        // Everything is due at the end of time: promotions, the orphan kill.
        sup.tick(end);
        sup.tick(end);
        assert_eq!(sup.status("g:0").unwrap().state, State::Running, "-{before:?}");
        assert_eq!(sup.status("a").unwrap().state, State::Running, "-{before:?}");
        // Retry deadline.
        let pid = sup.status("g:0").unwrap().pid.unwrap();
        assert!(sup.sys_mut().exit(pid, Exit::Exited(1)));
        sup.tick(end);
        let st = sup.status("g:0").unwrap();
        // Its retry saturated to the end of time, so it is due at once.
        assert_eq!((st.state, st.restart_count), (State::Starting, 1), "-{before:?}");
        // Retiring kill deadline (rolling restart; zero grace needs none).
        sup.rolling_restart(Some("g:1"), end).unwrap();
        sup.tick(end);
        // Kill deadlines of a stop, and their escalation.
        sup.stop_all(end);
        assert!(saturated(sup.next_deadline()));
        for _ in 0..4 {
            sup.tick(end);
        }
        assert!(sup.is_idle(), "-{before:?}: {:?}", sup.statuses());
        assert!(sup.drain_events().any(|e| e.kind() == "killed"));
    }
}

/// The test clock is public API too: it saturates instead of panicking.
#[test]
fn the_virtual_clock_never_panics() {
    let mut clock = procsup::testing::VirtualClock::new();
    assert_eq!(clock.at(-1.0), clock.at(0.0));
    assert_eq!(clock.at(f64::NAN), clock.at(0.0));
    let far = clock.at(1e30);
    assert_eq!(far.checked_add(Duration::from_nanos(1)), None, "the last instant");
    clock.advance(Duration::MAX);
    clock.advance(Duration::MAX);
    assert_eq!(clock.now(), far);
}
