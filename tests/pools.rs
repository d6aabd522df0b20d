//! Worker pools on FakeSys and a virtual clock: instance numbers, scaling,
//! spec roll-outs.

mod common;

use std::collections::HashSet;

use common::{secs, Harness};
use nix::errno::Errno;
use procsup::{Error, Event, Exit, Pid, ProcessSpec, Signal, State};

fn web(n: u32) -> ProcessSpec {
    ProcessSpec::new("web", "server-v1").instances(n).start_grace(secs(1.0)).stop_timeout(secs(5.0))
}

/// `n` running instances at t = 1 s.
fn running(n: u32) -> Harness {
    Harness::running_instances(web(n), n)
}

fn env_of(spec: &ProcessSpec, key: &str) -> Option<String> {
    spec.get_envs().filter(|(k, _)| *k == key).last().and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
}

fn names_of(h: &Harness) -> Vec<String> {
    let mut names: Vec<String> = h.sup.names().iter().map(|n| n.to_string()).collect();
    names.sort();
    names
}

fn kinds_for(h: &Harness, kind: &str) -> Vec<String> {
    h.log.iter().filter(|e| e.kind() == kind).map(|e| e.name().to_owned()).collect()
}

/// Lets every child that was sent SIGTERM exit at once.
fn exit_signalled(h: &mut Harness) {
    let mut done: HashSet<Pid> = HashSet::new();
    let pids: Vec<Pid> = h
        .sup
        .sys()
        .signals()
        .iter()
        .filter(|s| s.signal == Signal::SIGTERM)
        .map(|s| s.pid)
        .filter(|p| done.insert(*p))
        .collect();
    for pid in pids {
        let _ = h.sup.sys_mut().exit(pid, Exit::Signaled(15)); // already gone after an earlier call
    }
    h.tick();
}

#[test]
fn each_instance_gets_its_number_in_env_and_through_instances_with() {
    let spec = ProcessSpec::new("web", "server").instances_with(3, |i, spec| {
        spec.arg(format!("--port={}", 8000 + i)).env("ROLE", if i == 0 { "lead" } else { "peer" })
    });
    let mut h = Harness::with([spec]);
    h.start_all();
    let spawns = h.sup.sys().spawns().to_vec();
    assert_eq!(spawns.len(), 3);
    for i in 0..3u32 {
        let s = &spawns.iter().find(|s| s.spec.get_name() == format!("web:{i}")).unwrap().spec;
        assert_eq!(env_of(s, "PROCSUP_INSTANCE").as_deref(), Some(i.to_string().as_str()));
        assert_eq!(s.get_args().last().unwrap().to_str().unwrap(), format!("--port={}", 8000 + i));
        assert_eq!(env_of(s, "ROLE").as_deref(), Some(if i == 0 { "lead" } else { "peer" }));
    }
}

#[test]
fn an_instance_spec_the_closure_made_invalid_adds_nothing() {
    let spec =
        ProcessSpec::new("web", "server").instances_with(3, |i, spec| if i == 2 { spec.env("A=B", "x") } else { spec });
    let mut h = Harness::new();
    assert!(matches!(h.sup.add_process(spec), Err(Error::InvalidSpec { .. })));
    assert!(h.sup.is_empty());
}

#[test]
fn fd_targets_are_checked() {
    let fd = || std::sync::Arc::new(std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null").unwrap()));
    let mut h = Harness::new();
    let bad = [
        ProcessSpec::new("a", "x").pass_fd(2, fd()),
        ProcessSpec::new("a", "x").pass_fd(5, fd()).pass_fd(5, fd()),
        ProcessSpec::new("a", "x").listen_fds([("l", fd())]).pass_fd(3, fd()),
        ProcessSpec::new("a", "x").listen_fds([("a:b", fd())]),
        ProcessSpec::new("a", "x").pass_fd(procsup::MAX_FD_TARGET + 1, fd()),
    ];
    for spec in bad {
        assert!(matches!(h.sup.add_process(spec), Err(Error::InvalidSpec { .. })));
    }
    h.sup.add_process(ProcessSpec::new("ok", "x").listen_fds([("l", fd())]).pass_fd(4, fd())).unwrap();
}

#[test]
fn scaling_2_to_4_to_1_starts_the_new_and_stops_the_newest_first() {
    let mut h = running(2);
    h.sup.scale("web", 4, h.now()).unwrap();
    h.drain();
    assert_eq!(names_of(&h), ["web:0", "web:1", "web:2", "web:3"]);
    assert_eq!(kinds_for(&h, "spawned"), ["web:0", "web:1", "web:2", "web:3"], "the group is live: the new ones start");
    assert_eq!(env_of(h.sup.spec("web:3").unwrap(), "PROCSUP_INSTANCE").as_deref(), Some("3"));
    h.advance(1.0);
    h.tick();
    let pid0 = h.pid("web:0");
    h.sup.scale("web", 1, h.now()).unwrap();
    h.drain();
    assert_eq!(kinds_for(&h, "stopping"), ["web:3", "web:2", "web:1"], "newest first");
    exit_signalled(&mut h);
    assert_eq!(kinds_for(&h, "removed"), ["web:3", "web:2", "web:1"]);
    assert_eq!(names_of(&h), ["web:0"]);
    assert_eq!(h.pid("web:0"), pid0, "the oldest keeps serving");
    // Growing again reuses the lowest free numbers.
    h.sup.scale("web", 2, h.now()).unwrap();
    assert_eq!(names_of(&h), ["web:0", "web:1"]);
    assert_eq!(h.sup.status("web:1").unwrap().state, State::Starting);
}

#[test]
fn instances_added_to_a_stopped_group_stay_stopped() {
    let mut h = Harness::with([web(1)]);
    h.sup.scale("web", 3, h.now()).unwrap();
    assert_eq!(h.sup.sys().spawns().len(), 0);
    assert_eq!(h.state("web:2"), State::Stopped);
    assert!(matches!(h.sup.scale("nope", 3, h.now()), Err(Error::UnknownProcess(_))));
    assert!(matches!(h.sup.scale("web", procsup::MAX_INSTANCES + 1, h.now()), Err(Error::InvalidSpec { .. })));
}

#[test]
fn added_instances_take_part_in_the_next_roll() {
    let mut h = running(1);
    h.sup.scale("web", 2, h.now()).unwrap();
    h.advance(1.0);
    h.tick();
    let old: Vec<Pid> = vec![h.pid("web:0"), h.pid("web:1")];
    h.sup.rolling_restart(Some("web"), h.now()).unwrap();
    for _ in 0..2 {
        h.advance(1.0);
        h.tick();
        exit_signalled(&mut h);
    }
    assert_eq!(kinds_for(&h, "roll_done"), ["web"]);
    for (i, pid) in old.iter().enumerate() {
        assert_ne!(h.pid(&format!("web:{i}")), *pid, "web:{i} was replaced");
    }
}

#[test]
fn update_spec_rolls_new_before_old_and_status_says_the_version() {
    let mut h = running(2);
    let t0 = h.now();
    h.sup.update_spec("web", ProcessSpec::new("ignored", "server-v2").start_grace(secs(1.0)), t0).unwrap();
    h.drain();
    assert!(h.log.iter().any(|e| matches!(e, Event::SpecUpdated { name, version: 1 } if &**name == "web")));
    assert_eq!(h.sup.spec("web:0").unwrap().get_program(), "server-v2");
    assert_eq!(env_of(h.sup.spec("web:1").unwrap(), "PROCSUP_INSTANCE").as_deref(), Some("1"));
    // The first replacement starts; the old child serves, on version 0.
    let st = h.sup.status("web:0").unwrap();
    assert_eq!((st.state, st.spec_version), (State::Running, 0));
    assert!(st.replacement_pid.is_some());
    assert_eq!(h.sup.sys().spawns().last().unwrap().spec.get_program(), "server-v2");
    assert!(h.sup.sys().signals().is_empty(), "no old child is stopped before its replacement is Running");
    h.advance(1.0);
    h.tick();
    assert_eq!(h.sup.status("web:0").unwrap().spec_version, 1, "web:0's serving child runs v1 once Running");
    exit_signalled(&mut h);
    h.advance(1.0);
    h.tick();
    exit_signalled(&mut h);
    assert_eq!(kinds_for(&h, "roll_done"), ["web"]);
    assert!(!h.log.iter().any(|e| e.kind() == "spec_reverted"));
    for i in 0..2 {
        assert_eq!(h.sup.status(&format!("web:{i}")).unwrap().spec_version, 1);
    }
    // A later scale-up uses the new spec.
    h.sup.scale("web", 3, h.now()).unwrap();
    assert_eq!(h.sup.spec("web:2").unwrap().get_program(), "server-v2");
    assert_eq!(h.sup.status("web:2").unwrap().spec_version, 1);
}

#[test]
fn a_roll_out_whose_new_spec_cannot_start_is_aborted_and_reverted() {
    let mut h = running(2);
    let old: Vec<Pid> = vec![h.pid("web:0"), h.pid("web:1")];
    h.sup.update_spec("web", ProcessSpec::new("web", "broken").start_grace(secs(1.0)), h.now()).unwrap();
    h.drain();
    let replacement = h.sup.status("web:0").unwrap().replacement_pid.unwrap();
    h.advance(0.5);
    assert!(h.sup.sys_mut().exit(replacement, Exit::Exited(127)));
    h.tick();
    assert_eq!(kinds_for(&h, "roll_aborted"), ["web:0"]);
    let reverted = h.log.iter().find(|e| e.kind() == "spec_reverted").expect("an event says the spec was reverted");
    match reverted {
        Event::SpecReverted { name, version, reason } => {
            assert_eq!((&**name, *version), ("web", 0));
            assert!(reason.contains("before its start grace"), "{reason}");
        }
        _ => unreachable!(),
    }
    for (i, pid) in old.iter().enumerate() {
        let name = format!("web:{i}");
        assert_eq!(h.pid(&name), *pid, "{name}'s old child keeps serving");
        assert_eq!(h.state(&name), State::Running);
        assert_eq!(h.sup.spec(&name).unwrap().get_program(), "server-v1", "{name}'s spec is reverted");
        assert_eq!(h.sup.status(&name).unwrap().spec_version, 0);
    }
    assert!(h.sup.sys().signals().is_empty(), "no old child was stopped");
    // New instances are made from the reverted spec too.
    h.sup.scale("web", 3, h.now()).unwrap();
    assert_eq!(h.sup.spec("web:2").unwrap().get_program(), "server-v1");
}

/// The reason says what went wrong: a replacement stopped at its start
/// timeout did not "exit before its start grace".
#[test]
fn a_roll_out_whose_replacement_times_out_says_so() {
    let mut h = running(2);
    let slow = ProcessSpec::new("web", "slow").ready(procsup::Readiness::Host).start_timeout(secs(2.0));
    h.sup.update_spec("web", slow, h.now()).unwrap();
    h.drain();
    let replacement = h.sup.status("web:0").unwrap().replacement_pid.unwrap();
    h.advance(2.5);
    h.tick();
    assert!(h.log.iter().any(|e| e.kind() == "start_timeout"), "{:?}", h.log);
    assert!(h.sup.sys_mut().exit(replacement, Exit::Signaled(Signal::SIGTERM as i32)));
    h.tick();
    let reverted = h.log.iter().find(|e| e.kind() == "spec_reverted").expect("the spec is reverted");
    let Event::SpecReverted { reason, .. } = reverted else { unreachable!() };
    assert!(reason.contains("not ready within its start timeout"), "{reason}");
}

#[test]
fn a_roll_out_that_cannot_spawn_is_reverted_at_once() {
    let mut h = running(1);
    h.sup.sys_mut().fail_next_spawn(Errno::ENOENT);
    h.sup.update_spec("web:0", ProcessSpec::new("x", "missing"), h.now()).unwrap();
    h.drain();
    assert_eq!(kinds_for(&h, "spec_reverted"), ["web:0"]);
    assert_eq!(h.sup.spec("web:0").unwrap().get_program(), "server-v1");
    assert_eq!(h.sup.spec("web:0").unwrap().get_name(), "web:0");
    assert!(matches!(h.sup.update_spec("nope", ProcessSpec::new("x", "y"), h.now()), Err(Error::UnknownProcess(_))));
    assert!(matches!(h.sup.update_spec("web", ProcessSpec::new("x", ""), h.now()), Err(Error::InvalidSpec { .. })));
    assert_eq!(h.sup.spec("web:0").unwrap().get_program(), "server-v1", "an invalid update changes nothing");
}

#[test]
fn a_group_scaled_to_nothing_gives_its_name_to_a_new_process_only_then() {
    let mut h = Harness::with([web(1)]);
    assert!(matches!(h.sup.add_process(ProcessSpec::new("web:0", "x")), Err(Error::DuplicateProcess(_))));
    h.sup.add_process(ProcessSpec::new("web", "single")).unwrap();
    h.sup.scale("web", 2, h.now()).unwrap();
    assert_eq!(names_of(&h), ["web", "web:0", "web:1"], "the group still has members: it stays a group");
    h.sup.scale("web", 0, h.now()).unwrap();
    h.sup.remove_process("web", h.now()).unwrap();
    h.sup.add_process(ProcessSpec::new("web", "single")).unwrap();
    assert!(matches!(h.sup.scale("web", 2, h.now()), Err(Error::UnknownProcess(_))));
    h.sup.update_spec("web", ProcessSpec::new("web", "single-v2"), h.now()).unwrap();
    assert_eq!(h.sup.status("web").unwrap().spec_version, 1);
    assert_eq!(h.sup.spec("web").unwrap().get_program(), "single-v2");
}

#[test]
fn an_update_of_a_group_scaled_to_nothing_is_for_its_next_instances() {
    let mut h = running(1);
    h.sup.scale("web", 0, h.now()).unwrap();
    exit_signalled(&mut h);
    assert!(h.sup.is_empty());
    h.sup.update_spec("web", ProcessSpec::new("web", "server-v2"), h.now()).unwrap();
    h.drain();
    assert_eq!(kinds_for(&h, "spec_updated"), ["web"]);
    // A later, unrelated roll that aborts must not revert it.
    h.sup.add_process(ProcessSpec::new("other", "x").start_grace(secs(1.0))).unwrap();
    h.start("other");
    h.advance(1.0);
    h.tick();
    h.sup.sys_mut().fail_next_spawn(Errno::EAGAIN);
    h.sup.rolling_restart(Some("other"), h.now()).unwrap();
    h.drain();
    assert_eq!(kinds_for(&h, "roll_aborted"), ["other"]);
    assert!(kinds_for(&h, "spec_reverted").is_empty());
    h.sup.scale("web", 1, h.now()).unwrap();
    assert_eq!(h.sup.spec("web:0").unwrap().get_program(), "server-v2");
    assert_eq!(h.sup.status("web:0").unwrap().spec_version, 1);
}
