//! The supervisor's respawn hints (`Sys::expect_respawn`,
//! `Sys::forget_respawn`), which let `UnixSys::standby` hold a successor
//! ready: given after every spawn a restart policy may follow, taken back
//! whenever the process is not to be spawned again for now. A hint left
//! standing would keep a parked process alive for nothing; a missing one
//! only costs a restart its head start.

mod common;

use common::{secs, Harness};
use nix::errno::Errno;
use procsup::{Backoff, Exit, ProcessSpec, RestartPolicy};

fn spec(name: &str) -> ProcessSpec {
    ProcessSpec::new(name, "prog").backoff(Backoff::fixed(secs(2.0))).start_grace(secs(1.0)).stop_timeout(secs(5.0))
}

fn expected(h: &Harness) -> Vec<String> {
    h.sup.sys().expected_respawns().into_iter().map(str::to_owned).collect()
}

#[test]
fn a_spawn_under_a_restart_policy_is_expected_again_until_a_stop() {
    let mut h = Harness::with([spec("a"), spec("never").restart(RestartPolicy::Never)]);
    assert!(expected(&h).is_empty(), "nothing runs yet");
    h.start("a");
    h.start("never");
    assert_eq!(expected(&h), ["a"], "a spec that never restarts is never expected again");
    // Through a crash, its backoff and its restart, the hint stands.
    h.exit("a", Exit::Exited(1));
    h.tick();
    assert_eq!(expected(&h), ["a"], "in backoff");
    h.advance(2.0);
    h.tick();
    assert_eq!(h.spawn_times(), 3);
    assert_eq!(expected(&h), ["a"]);
    // A stop asked for: not spawned again, from the stop's start.
    h.stop("a");
    assert!(expected(&h).is_empty(), "still expected in its stop: {:?}", h.kinds());
    h.exit("a", Exit::Signaled(15));
    h.tick();
    assert!(expected(&h).is_empty());
    // Started again: expected again.
    h.start("a");
    assert_eq!(expected(&h), ["a"]);
}

#[test]
fn an_exit_for_good_a_give_up_and_a_removal_take_the_hint_back() {
    let mut h =
        Harness::with([spec("clean").restart(RestartPolicy::OnFailure), spec("flaky").give_up_after(1), spec("gone")]);
    h.start_all();
    assert_eq!(expected(&h), ["clean", "flaky", "gone"]);
    // OnFailure and a success: Exited, not spawned again.
    h.exit("clean", Exit::Exited(0));
    // One failed start allowed: Fatal.
    h.exit("flaky", Exit::Exited(1));
    h.tick();
    assert_eq!(expected(&h), ["gone"], "{:?}", h.kinds());
    let now = h.now();
    h.sup.remove_process("gone", now).unwrap();
    h.exit("gone", Exit::Signaled(15));
    h.tick();
    assert!(expected(&h).is_empty(), "removed, still expected: {:?}", h.kinds());
}

#[test]
fn a_failed_spawn_gives_no_hint() {
    let mut h = Harness::with([spec("a")]);
    h.sup.sys_mut().fail_next_spawn(Errno::ENOENT);
    h.start("a");
    assert!(expected(&h).is_empty(), "no child, no successor: {:?}", h.kinds());
}

/// `since_last_spawn` says how long ago the previous child was spawned:
/// `None` for the first, then the run (and any backoff) before this
/// spawn. A short one lets `UnixSys` make the successor sooner (a crash
/// loop).
#[test]
fn a_respawn_hint_says_how_long_since_the_last_spawn() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    let since = |h: &Harness| h.sup.sys().respawn_since_last_spawn("a");
    assert_eq!(since(&h), Some(None), "a first child");
    // Dies 0.25 s in, within its start grace: spawned again after the
    // 2 s backoff.
    h.advance(0.25);
    h.exit("a", Exit::Exited(1));
    h.tick();
    h.advance(2.0);
    h.tick();
    assert_eq!(h.spawn_times(), 2);
    assert_eq!(since(&h), Some(Some(secs(2.25))), "its run and the backoff: {:?}", h.kinds());
    // Stopped and started again: the time since the last spawn still.
    h.advance(1.0);
    h.stop("a");
    h.exit("a", Exit::Signaled(15));
    h.tick();
    h.start("a");
    assert_eq!(h.spawn_times(), 3);
    assert_eq!(since(&h), Some(Some(secs(1.0))));
}

/// A failed spawn gives no hint and is no spawn: the next hint spans it.
/// A restart asked for 3 ms after a spawn is measured alike: the hint is
/// the time between spawns, not why.
#[test]
fn the_time_since_the_last_spawn_spans_a_failed_spawn_and_a_restart() {
    let mut h = Harness::with([spec("a")]);
    h.start("a");
    h.advance(0.5);
    h.exit("a", Exit::Exited(1));
    h.tick();
    h.sup.sys_mut().fail_next_spawn(Errno::EAGAIN);
    h.advance(2.0);
    h.tick();
    assert!(h.kinds().ends_with(&["spawn_failed", "backoff"]), "{:?}", h.kinds());
    h.advance(2.0);
    h.tick();
    assert_eq!(h.kinds().last(), Some(&"spawned"), "{:?}", h.kinds());
    assert_eq!(h.sup.sys().respawn_since_last_spawn("a"), Some(Some(secs(4.5))));
    h.advance(0.003);
    let now = h.now();
    h.sup.restart_process("a", now).unwrap();
    h.exit("a", Exit::Signaled(15));
    h.tick();
    assert_eq!(h.kinds().iter().filter(|k| **k == "spawned").count(), 3, "{:?}", h.kinds());
    assert_eq!(h.sup.sys().respawn_since_last_spawn("a"), Some(Some(secs(0.003))));
}
