//! Readiness on a virtual clock: sources, start timeout, watchdog, probes,
//! reloads and rolling restarts that wait for readiness.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{secs, Harness};
use nix::sys::signal::Signal;
use procsup::{Error, Event, Exit, Output, Probe, ProcessSpec, Readiness, RestartPolicy, State, Stream};

fn notify(name: &str) -> ProcessSpec {
    ProcessSpec::new(name, "server").ready(Readiness::Notify).stop_timeout(secs(3.0))
}

fn send(h: &mut Harness, name: &str, datagram: &[u8]) {
    let pid = h.pid(name);
    assert!(h.sup.sys_mut().notify(pid, datagram), "{name}: {datagram:?} not sent");
}

fn count(h: &Harness, kind: &str) -> usize {
    h.kinds().iter().filter(|k| **k == kind).count()
}

#[test]
fn notify_ready_promotes_and_reports_the_time_to_ready() {
    let mut h = Harness::with([notify("db")]);
    h.start("db");
    assert_eq!(h.sup.next_deadline(), None, "no grace timer for a Notify child");
    h.run_until(100.0);
    assert_eq!(h.state("db"), State::Starting, "time alone never makes a Notify child ready");
    h.advance_to(102.5);
    send(&mut h, "db", b"READY=1");
    h.tick();
    assert_eq!(h.state("db"), State::Running);
    let pid = h.pid("db");
    let ready = h.log.iter().find(|e| e.kind() == "ready").unwrap();
    assert_eq!(ready, &Event::Ready { name: Arc::from("db"), pid, after: secs(2.5) + secs(100.0) });
    assert_eq!(h.kinds()[h.kinds().len() - 2..], ["ready", "running"]);
    assert_eq!(h.sup.status("db").unwrap().ready_at, Some(h.at(102.5)));
    assert_eq!(ready.to_string(), format!("event=ready name=db pid={pid} after_ms=102500"));
}

#[test]
fn grace_ignores_notify_and_emits_no_ready() {
    let mut h = Harness::with([ProcessSpec::new("w", "w").start_grace(secs(2.0))]);
    h.start("w");
    send(&mut h, "w", b"READY=1");
    h.tick();
    assert_eq!(h.state("w"), State::Starting);
    h.run_until(2.0);
    assert_eq!(h.state("w"), State::Running);
    assert_eq!(count(&h, "ready"), 0);
    assert_eq!(h.sup.status("w").unwrap().ready_at, Some(h.at(2.0)));
}

#[test]
fn start_timeout_fires_exactly_at_spawn_plus_timeout_then_backs_off() {
    let mut h = Harness::with([notify("db").start_timeout(secs(5.0))]);
    h.advance_to(1.0);
    h.start("db");
    let pid = h.pid("db");
    assert_eq!(h.sup.next_deadline(), Some(h.at(6.0)));
    assert_eq!(h.sup.status("db").unwrap().start_timeout_at, Some(h.at(6.0)));
    h.clock.set(h.at(6.0) - Duration::from_nanos(1));
    h.tick();
    assert_eq!(h.state("db"), State::Starting);
    h.advance_to(6.0);
    h.tick();
    assert_eq!(h.kinds()[h.kinds().len() - 2..], ["start_timeout", "stopping"]);
    assert_eq!(h.state("db"), State::Stopping);
    assert_eq!(h.sup.sys().signals_to(pid), [Signal::SIGTERM]);
    // The usual escalation: SIGKILL after the stop timeout.
    assert_eq!(h.sup.next_deadline(), Some(h.at(9.0)));
    h.run_until(9.0);
    assert_eq!(h.sup.sys().signals_to(pid), [Signal::SIGTERM, Signal::SIGKILL]);
    let st = h.sup.status("db").unwrap();
    assert_eq!(st.state, State::Backoff, "a start timeout is a failed start");
    assert_eq!(st.failure_streak, 1);
    assert_eq!(st.start_timeout_at, None);
}

#[test]
fn a_start_timeout_counts_towards_give_up() {
    let spec = notify("db").start_timeout(secs(1.0)).give_up_after(2).stop_timeout(secs(1.0));
    let mut h = Harness::with([spec]);
    h.start("db");
    for t in 1..60 {
        h.run_until(f64::from(t));
    }
    assert_eq!(h.state("db"), State::Fatal, "{:#?}", h.log);
    assert_eq!(count(&h, "start_timeout"), 2);
}

#[test]
fn extend_timeout_usec_moves_the_start_timeout_and_never_shortens_it() {
    let mut h = Harness::with([notify("db").start_timeout(secs(5.0))]);
    h.start("db");
    h.advance_to(2.0);
    send(&mut h, "db", b"EXTEND_TIMEOUT_USEC=10000000");
    h.tick();
    assert_eq!(h.sup.next_deadline(), Some(h.at(12.0)));
    send(&mut h, "db", b"EXTEND_TIMEOUT_USEC=1000000");
    h.tick();
    assert_eq!(h.sup.next_deadline(), Some(h.at(12.0)));
    send(&mut h, "db", b"EXTEND_TIMEOUT_USEC=18446744073709551615");
    h.tick();
    assert!(h.sup.next_deadline().unwrap() > h.at(12.0), "a huge extension saturates, it does not panic");
    h.run_until(11.9);
    assert_eq!(h.state("db"), State::Starting);
}

#[test]
fn watchdog_fires_at_the_last_ping_plus_the_interval_and_restarts() {
    let spec = notify("db").watchdog(secs(2.0)).restart(RestartPolicy::OnFailure);
    let mut h = Harness::with([spec]);
    h.start("db");
    h.advance_to(1.0);
    send(&mut h, "db", b"READY=1");
    h.tick();
    assert_eq!(h.sup.next_deadline(), Some(h.at(3.0)), "armed at readiness");
    for t in [2.5, 4.0, 4.5] {
        h.advance_to(t);
        send(&mut h, "db", b"WATCHDOG=1");
        h.tick();
    }
    assert_eq!(h.sup.status("db").unwrap().watchdog_at, Some(h.at(6.5)));
    let pid = h.pid("db");
    h.run_until(6.4);
    assert_eq!(h.state("db"), State::Running);
    h.run_until(6.5);
    let wd = h.log.iter().find(|e| e.kind() == "watchdog").unwrap();
    assert_eq!(wd.to_string(), format!("event=watchdog name=db pid={pid}"));
    assert_eq!(h.state("db"), State::Stopping);
    // Exit code 0 after SIGTERM: still a failure, so OnFailure restarts.
    assert!(h.sup.sys_mut().exit(pid, Exit::Exited(0)));
    h.tick();
    let st = h.sup.status("db").unwrap();
    assert_eq!(st.state, State::Backoff);
    assert_eq!(st.failure_streak, 0, "it had been ready: the streak starts over");
}

#[test]
fn watchdog_trigger_stops_at_once_and_stopping_disarms() {
    let mut h = Harness::with([notify("a").watchdog(secs(2.0)), notify("b").watchdog(secs(2.0))]);
    h.start_all();
    send(&mut h, "a", b"READY=1");
    send(&mut h, "b", b"READY=1");
    h.tick();
    send(&mut h, "a", b"WATCHDOG=trigger");
    send(&mut h, "b", b"STOPPING=1");
    h.tick();
    assert_eq!(h.state("a"), State::Stopping);
    assert!(h.log.iter().any(|e| matches!(e, Event::Watchdog { triggered: true, .. })));
    assert_eq!(h.sup.status("b").unwrap().watchdog_at, None);
    h.run_until(10.0);
    assert_eq!(h.state("b"), State::Running, "a child that said STOPPING=1 is not watched");
}

#[test]
fn readiness_not_uptime_resets_the_streak() {
    let mut h = Harness::with([notify("db")]);
    h.start("db");
    h.run_until(500.0);
    h.exit("db", Exit::Exited(1));
    h.tick();
    assert_eq!(h.sup.status("db").unwrap().failure_streak, 1, "500 s alive but never ready: a failed start");
    h.run_until(600.0);
    send(&mut h, "db", b"READY=1");
    h.tick();
    assert_eq!(h.sup.status("db").unwrap().failure_streak, 0);
    h.exit("db", Exit::Exited(1));
    h.tick();
    assert_eq!(h.sup.status("db").unwrap().failure_streak, 0);
}

#[test]
fn host_marks_ready() {
    let mut h = Harness::with([ProcessSpec::new("web", "w").ready(Readiness::Host)]);
    h.start("web");
    h.advance(3.0);
    let now = h.now();
    assert!(h.sup.mark_ready("web", now).unwrap());
    assert!(!h.sup.mark_ready("web", now).unwrap(), "already ready");
    h.drain();
    assert!(matches!(&h.log[..], [_, Event::Ready { after, .. }, Event::Running { .. }] if *after == secs(3.0)));
    assert!(matches!(h.sup.mark_ready("nope", now), Err(Error::UnknownProcess(_))));
}

#[test]
fn output_line_by_substring_and_by_closure() {
    let a = ProcessSpec::new("a", "w").stdout(Output::Capture).ready(Readiness::output_contains("listening on"));
    let b = ProcessSpec::new("b", "w").stderr(Output::Capture).ready(Readiness::output_matches(|l| l.ends_with(b"OK")));
    let mut h = Harness::with([a, b]);
    h.start_all();
    let (pa, pb) = (h.pid("a"), h.pid("b"));
    assert!(h.sup.sys_mut().output(pa, Stream::Stdout, b"booting\nlisten"));
    assert!(h.sup.sys_mut().output(pb, Stream::Stderr, b"OK not yet\n"));
    h.tick();
    assert_eq!((h.state("a"), h.state("b")), (State::Starting, State::Starting));
    h.advance(1.5);
    assert!(h.sup.sys_mut().output(pa, Stream::Stdout, b"ing on :80\n"));
    assert!(h.sup.sys_mut().output(pb, Stream::Stderr, b"all OK\n"));
    h.tick();
    assert_eq!((h.state("a"), h.state("b")), (State::Running, State::Running));
    assert_eq!(count(&h, "ready"), 2);
}

#[test]
fn fd_source_takes_its_ready_message() {
    let mut h = Harness::with([ProcessSpec::new("s6", "w").ready(Readiness::Fd(3))]);
    h.start("s6");
    send(&mut h, "s6", b"READY=1");
    h.tick();
    assert_eq!(h.state("s6"), State::Running);
}

#[test]
fn status_errno_and_mainpid() {
    let mut h = Harness::with([notify("db")]);
    h.start("db");
    let pid = h.pid("db");
    send(&mut h, "db", b"STATUS=loading 3/4 tables\nERRNO=5\nMAINPID=4242");
    h.tick();
    let st = h.sup.status("db").unwrap();
    assert_eq!(st.status_text.as_deref(), Some("loading 3/4 tables"));
    assert_eq!(st.notified_errno, Some(nix::errno::Errno::EIO));
    assert_eq!(st.pid, Some(pid), "MAINPID= never changes which pid is supervised");
    let ev = h.log.iter().find(|e| e.kind() == "status").unwrap();
    assert_eq!(ev.to_string(), format!("event=status name=db pid={pid} text=\"loading 3/4 tables\""));
    assert!(!h.sup.sys_mut().notify(pid, b"\0\0garbage"), "malformed datagrams are dropped");
}

#[test]
fn probes_follow_delay_period_timeout_and_threshold_and_stale_generations_are_ignored() {
    let probe = Probe::every(secs(10.0)).initial_delay(secs(5.0)).timeout(secs(2.0)).failure_threshold(2);
    let mut h = Harness::with([ProcessSpec::new("web", "w").ready(Readiness::Host).probe(probe)]);
    h.start("web");
    let now = h.now();
    h.sup.mark_ready("web", now).unwrap();
    assert_eq!(h.sup.status("web").unwrap().next_probe_at, Some(h.at(5.0)));
    h.run_until(5.0);
    assert!(matches!(h.log.last(), Some(Event::ProbeDue { generation: 1, .. })), "{:?}", h.log.last());
    h.advance_to(6.0);
    assert!(h.sup.probe_result("web", 1, true, h.now()).unwrap());
    assert_eq!(h.sup.next_deadline(), Some(h.at(15.0)), "the period counts from the probe's start");
    h.run_until(15.0);
    assert!(matches!(h.log.last(), Some(Event::ProbeDue { generation: 2, .. })));
    h.run_until(17.0);
    assert!(matches!(h.log.last(), Some(Event::ProbeFailed { generation: 2, failures: 1, timed_out: true, .. })));
    h.run_until(25.0);
    assert!(matches!(h.log.last(), Some(Event::ProbeDue { generation: 3, .. })));
    let now = h.now();
    assert!(!h.sup.probe_result("web", 2, false, now).unwrap(), "generation 2 is stale");
    assert!(!h.sup.probe_result("web", 9, false, now).unwrap(), "generation 9 was never asked for");
    assert_eq!(h.sup.status("web").unwrap().probe_failures, 1);
    assert_eq!(h.state("web"), State::Running);
    assert!(h.sup.probe_result("web", 3, false, now).unwrap());
    h.drain();
    assert_eq!(h.sup.status("web").unwrap().probe_failures, 2);
    assert_eq!(h.state("web"), State::Stopping, "threshold reached");
    h.exit("web", Exit::Signaled(15));
    h.tick();
    assert_eq!(h.state("web"), State::Backoff);
    h.run_until(40.0);
    // The new child: a result for the old child's probe is stale too.
    let now = h.now();
    h.sup.mark_ready("web", now).unwrap();
    assert!(!h.sup.probe_result("web", 3, true, now).unwrap());
}

#[test]
fn a_failure_resets_on_success() {
    let probe = Probe::every(secs(1.0)).timeout(secs(0.5)).failure_threshold(2);
    let mut h = Harness::with([ProcessSpec::new("web", "w").ready(Readiness::Host).probe(probe)]);
    h.start("web");
    let now = h.now();
    h.sup.mark_ready("web", now).unwrap();
    for (generation, ok) in [(1, false), (2, true), (3, false), (4, true)] {
        h.tick();
        let now = h.now();
        assert!(h.sup.probe_result("web", generation, ok, now).unwrap());
        h.advance(1.0);
    }
    assert_eq!(h.state("web"), State::Running);
}

#[test]
fn reload_signals_the_leader_and_waits_for_ready_within_the_timeout() {
    let mut h = Harness::with([notify("db").start_timeout(secs(4.0)).reload_signal(Signal::SIGUSR1)]);
    h.start("db");
    let pid = h.pid("db");
    send(&mut h, "db", b"READY=1");
    h.tick();
    h.advance_to(10.0);
    let now = h.now();
    h.sup.reload_process("db", now).unwrap();
    h.drain();
    let sig = *h.sup.sys().signals().last().unwrap();
    assert_eq!((sig.pid, sig.signal, sig.group), (pid, Signal::SIGUSR1, false));
    assert!(h.sup.status("db").unwrap().reloading);
    assert_eq!(h.kinds().last(), Some(&"reloading"));
    h.advance_to(11.0);
    send(&mut h, "db", b"READY=1");
    h.tick();
    assert!(!h.sup.status("db").unwrap().reloading);
    assert!(matches!(h.log.last(), Some(Event::Ready { after, .. }) if *after == secs(1.0)));
    // The child's own RELOADING=1, never followed by READY=1: a timeout.
    h.advance_to(20.0);
    send(&mut h, "db", b"RELOADING=1\nMONOTONIC_USEC=123");
    h.tick();
    assert!(h.sup.status("db").unwrap().reloading);
    h.run_until(24.0);
    assert_eq!(h.state("db"), State::Stopping);
    assert_eq!(count(&h, "start_timeout"), 1);
}

#[test]
fn signal_and_reload_need_a_child() {
    let mut h = Harness::with([notify("db")]);
    let now = h.now();
    assert!(matches!(h.sup.signal_process("db", Signal::SIGUSR2), Err(Error::NotRunning(_))));
    assert!(matches!(h.sup.reload_process("db", now), Err(Error::NotRunning(_))));
    h.start("db");
    let pid = h.pid("db");
    h.sup.signal_process("db", Signal::SIGUSR2).unwrap();
    let sig = *h.sup.sys().signals().last().unwrap();
    assert_eq!((sig.pid, sig.signal, sig.group), (pid, Signal::SIGUSR2, false));
    h.sup.sys_mut().fail_next_signal(nix::errno::Errno::EPERM);
    assert!(matches!(h.sup.signal_process("db", Signal::SIGUSR2), Err(Error::Signal { .. })));
}

#[test]
fn rolling_restart_retires_each_old_child_only_after_its_replacement_is_ready() {
    let mut h = Harness::with([notify("web").instances(2)]);
    h.start_all();
    for n in ["web:0", "web:1"] {
        send(&mut h, n, b"READY=1");
    }
    h.tick();
    let old0 = h.pid("web:0");
    let now = h.now();
    h.sup.rolling_restart(Some("web"), now).unwrap();
    h.run_until(50.0);
    assert!(h.sup.sys().signals_to(old0).is_empty(), "the old child serves until its replacement is ready");
    let new0 = h.sup.status("web:0").unwrap().replacement_pid.expect("a replacement is starting");
    // The old child's own READY=1 does not count.
    assert!(h.sup.sys_mut().notify(old0, b"READY=1"));
    h.tick();
    assert_eq!(h.sup.status("web:0").unwrap().replacement_pid, Some(new0));
    assert!(h.sup.sys_mut().notify(new0, b"READY=1"));
    h.tick();
    assert_eq!(h.pid("web:0"), new0);
    assert_eq!(h.sup.sys().signals_to(old0), [Signal::SIGTERM]);
    let ready = h.log.iter().rposition(|e| e.kind() == "ready").unwrap();
    let retiring = h.log.iter().rposition(|e| e.kind() == "retiring").unwrap();
    assert!(ready < retiring, "{:#?}", h.kinds());
    let new1 = h.sup.status("web:1").unwrap().replacement_pid.unwrap();
    assert!(h.sup.sys_mut().notify(new1, b"READY=1"));
    h.tick();
    assert_eq!(count(&h, "roll_done"), 1);
}

#[test]
fn a_replacement_that_times_out_aborts_the_roll_and_the_old_child_serves_on() {
    let mut h = Harness::with([notify("web").start_timeout(secs(5.0)).watchdog(secs(60.0))]);
    h.start("web");
    send(&mut h, "web", b"READY=1\nSTATUS=serving");
    h.tick();
    let old = h.pid("web");
    let before = h.sup.status("web").unwrap();
    let now = h.now();
    h.sup.rolling_restart(Some("web"), now).unwrap();
    let during = h.sup.status("web").unwrap();
    assert_eq!((during.ready_at, during.status_text), (before.ready_at, before.status_text.clone()));
    let new = during.replacement_pid.unwrap();
    h.run_until(5.0);
    assert_eq!(h.sup.sys().signals_to(new), [Signal::SIGTERM]);
    assert!(h.sup.sys().signals_to(old).is_empty());
    assert!(h.sup.sys_mut().exit(new, Exit::Signaled(15)));
    h.tick();
    assert_eq!(count(&h, "roll_aborted"), 1);
    let st = h.sup.status("web").unwrap();
    assert_eq!((st.state, st.pid), (State::Running, Some(old)));
    assert_eq!((st.ready_at, st.status_text), (before.ready_at, before.status_text));
    assert_eq!(st.watchdog_at, Some(h.now() + secs(60.0)), "the old child is watched again");
}

#[test]
fn during_a_roll_signals_and_reloads_go_to_the_child_that_serves() {
    let mut h = Harness::with([notify("web")]);
    h.start("web");
    send(&mut h, "web", b"READY=1");
    h.tick();
    let old = h.pid("web");
    let now = h.now();
    h.sup.rolling_restart(Some("web"), now).unwrap();
    let new = h.sup.status("web").unwrap().replacement_pid.unwrap();
    h.sup.signal_process("web", Signal::SIGUSR2).unwrap();
    h.sup.reload_process("web", now).unwrap();
    assert_eq!(h.sup.sys().signals_to(old), [Signal::SIGUSR2, Signal::SIGHUP]);
    assert!(h.sup.sys().signals_to(new).is_empty());
}

#[test]
fn readiness_events_are_logfmt_lines() {
    let (name, pid) = (Arc::<str>::from("web"), nix::unistd::Pid::from_raw(7));
    let lines = [
        (Event::StartTimeout { name: name.clone(), pid }, "event=start_timeout name=web pid=7"),
        (Event::Reloading { name: name.clone(), pid }, "event=reloading name=web pid=7"),
        (Event::Watchdog { name: name.clone(), pid, triggered: true }, "event=watchdog name=web pid=7 triggered=true"),
        (Event::ProbeDue { name: name.clone(), generation: 3 }, "event=probe_due name=web generation=3"),
        (
            Event::ProbeFailed { name: name.clone(), pid, generation: 3, failures: 2, timed_out: true },
            "event=probe_failed name=web pid=7 generation=3 failures=2 timed_out=true",
        ),
        (Event::Status { name: name.clone(), pid, text: String::new() }, "event=status name=web pid=7 text=\"\""),
    ];
    for (event, line) in lines {
        assert_eq!(event.to_string(), line);
        assert_eq!(event.name(), "web");
    }
}

/// The texts of the status events so far.
fn status_texts(h: &Harness) -> Vec<String> {
    h.log
        .iter()
        .filter_map(|e| match e {
            Event::Status { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_status_flood_is_coalesced_and_its_last_text_is_never_lost() {
    let mut h = Harness::with([notify("db")]);
    h.start("db");
    h.advance_to(1.0);
    for i in 0..1000 {
        send(&mut h, "db", format!("STATUS=step {i}").as_bytes());
    }
    h.tick();
    // The first at once; the rest wait for the interval and coalesce.
    assert_eq!(status_texts(&h), ["step 0"]);
    assert_eq!(h.sup.status("db").unwrap().status_text.as_deref(), Some("step 999"), "the status is current");
    assert_eq!(h.sup.next_deadline(), Some(h.at(1.1)), "the coalesced one is due 100 ms after the first");
    h.advance_to(1.05);
    send(&mut h, "db", b"STATUS=step 1000");
    h.tick();
    assert_eq!(status_texts(&h), ["step 0"]);
    h.run_until(1.1);
    assert_eq!(status_texts(&h), ["step 0", "step 1000"]);
    // The same text again says nothing new.
    h.advance_to(2.0);
    send(&mut h, "db", b"STATUS=step 1000");
    h.tick();
    assert_eq!(status_texts(&h).len(), 2);
    // A text still waiting when the child exits comes before the exit.
    send(&mut h, "db", b"STATUS=a");
    send(&mut h, "db", b"STATUS=b");
    h.tick();
    h.exit("db", Exit::Exited(1));
    h.tick();
    assert_eq!(status_texts(&h), ["step 0", "step 1000", "a", "b"]);
    let kinds = h.kinds();
    let last_status = kinds.iter().rposition(|k| *k == "status").unwrap();
    assert!(last_status < kinds.iter().position(|k| *k == "exited").unwrap(), "{kinds:?}");
}
