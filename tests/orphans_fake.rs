//! Orphan cleanup on FakeSys: the stop signal, SIGKILL at the stop
//! timeout, and starts deferred until the orphan is gone.

mod common;

use common::{secs, Harness};
use procsup::{Event, Pid, ProcessSpec, Signal, State};

fn web() -> ProcessSpec {
    ProcessSpec::new("web", "server").stop_signal(Signal::SIGINT).stop_timeout(secs(3.0))
}

#[test]
fn orphan_gets_the_stop_signal_then_sigkill_and_the_start_waits() {
    let mut h = Harness::with([web()]);
    let orphan = Pid::from_raw(4242);
    h.sup.sys_mut().add_orphan("web", orphan);
    h.start_all();
    // The orphan got web's stop signal; web waits for it.
    assert_eq!(h.sup.sys().signals_to(orphan), [Signal::SIGINT]);
    assert_eq!(h.state("web"), State::Backoff);
    assert!(h.sup.sys().spawns().is_empty());
    assert_eq!(h.sup.next_deadline(), Some(h.at(3.0)));
    assert_eq!(h.sup.status("web").unwrap().next_retry_at, Some(h.at(4.0)), "kill deadline + 1 s at most");
    assert!(!h.sup.is_idle());
    // It ignores SIGINT: SIGKILL at 3 s, then web starts.
    h.run_until(3.0);
    assert_eq!(h.sup.sys().signals_to(orphan), [Signal::SIGINT, Signal::SIGKILL]);
    h.tick();
    assert_eq!(h.state("web"), State::Starting);
    assert_eq!(h.sup.status("web").unwrap().restart_count, 0, "waiting for an orphan is not a restart");
    assert_eq!(h.kinds(), ["orphan_stopping", "backoff", "orphan_killed", "orphan_gone", "spawned"], "{:#?}", h.log);
}

#[test]
fn orphan_that_exits_on_the_stop_signal_frees_the_start_at_once() {
    let mut h = Harness::with([web()]);
    let orphan = Pid::from_raw(4242);
    h.sup.sys_mut().add_orphan("web", orphan);
    h.start_all();
    h.advance(0.2);
    assert!(h.sup.sys_mut().orphan_exit(orphan));
    h.tick();
    assert_eq!(h.state("web"), State::Starting);
    assert_eq!(h.started_at("web"), 0.2);
    assert_eq!(h.sup.sys().signals_to(orphan), [Signal::SIGINT], "no SIGKILL after it left");
    assert!(matches!(h.log.iter().find(|e| e.kind() == "orphan_gone"), Some(Event::OrphanGone { .. })));
}

#[test]
fn orphan_of_an_unknown_name_gets_sigterm_and_ten_seconds() {
    let mut h = Harness::with([web()]);
    let orphan = Pid::from_raw(777);
    h.sup.sys_mut().add_orphan("old-worker", orphan);
    h.start_all();
    assert_eq!(h.state("web"), State::Starting, "other names start at once");
    assert_eq!(h.sup.sys().signals_to(orphan), [Signal::SIGTERM]);
    h.run_until(9.9);
    assert_eq!(h.sup.sys().signals_to(orphan), [Signal::SIGTERM]);
    h.run_until(10.0);
    assert_eq!(h.sup.sys().signals_to(orphan), [Signal::SIGTERM, Signal::SIGKILL]);
}

#[test]
fn stopping_a_process_that_awaits_its_orphan_cancels_the_start() {
    let mut h = Harness::with([web()]);
    h.sup.sys_mut().add_orphan("web", Pid::from_raw(4242));
    h.start_all();
    h.stop("web");
    h.run_until(20.0);
    assert_eq!(h.state("web"), State::Stopped);
    assert!(h.sup.sys().spawns().is_empty());
    assert!(h.sup.is_idle());
}

#[test]
fn spawning_by_hand_while_awaiting_an_orphan_forgets_the_wait() {
    let mut h = Harness::with([web().backoff(procsup::Backoff::fixed(secs(1.0)))]);
    h.sup.sys_mut().add_orphan("web", Pid::from_raw(4242));
    h.start_all();
    assert_eq!(h.state("web"), State::Backoff);
    let now = h.now();
    h.sup.spawn_process("web", now).unwrap(); // the host insists
    h.exit("web", procsup::Exit::Exited(1));
    h.tick();
    h.run_until(1.5);
    assert_eq!(h.state("web"), State::Starting);
    assert_eq!(h.sup.status("web").unwrap().restart_count, 1, "the retry after a crash is a restart");
}

/// A host's own `Sys` (here over FakeSys for the children) that finds an
/// orphan its own way: it can build the `Orphan` (issue 11.10).
struct HostSys {
    inner: procsup::testing::FakeSys,
    found: Vec<procsup::OrphanScan>,
    signalled: Vec<(Pid, Signal)>,
}

impl procsup::Sys for HostSys {
    fn spawn(&mut self, spec: &ProcessSpec) -> std::io::Result<Pid> {
        self.inner.spawn(spec)
    }
    fn signal(&mut self, pid: Pid, signal: Signal) -> std::io::Result<()> {
        self.inner.signal(pid, signal)
    }
    fn poll(&mut self, events: &mut Vec<procsup::SysEvent>) {
        self.inner.poll(events)
    }
    fn scan_orphans(&mut self) -> std::io::Result<Vec<procsup::OrphanScan>> {
        Ok(std::mem::take(&mut self.found))
    }
    fn signal_orphan(&mut self, pid: Pid, signal: Signal) -> std::io::Result<()> {
        self.signalled.push((pid, signal));
        Ok(())
    }
}

#[test]
fn an_external_sys_can_report_an_orphan() {
    let pid = Pid::from_raw(5151);
    let orphan = procsup::Orphan::new("web", pid, pid, 12_345);
    let sys = HostSys {
        inner: procsup::testing::FakeSys::new(),
        found: vec![procsup::OrphanScan::Alive(orphan)],
        signalled: Vec::new(),
    };
    let mut sup = procsup::Supervisor::with_sys(sys);
    sup.add_process(web()).unwrap();
    let clock = procsup::testing::VirtualClock::new();
    sup.start_all(clock.now()).unwrap();
    assert_eq!(sup.sys().signalled, [(pid, Signal::SIGINT)]);
    let stopping = sup.drain_events().find(|e| e.kind() == "orphan_stopping").expect("orphan_stopping");
    assert!(matches!(stopping, Event::OrphanStopping { pid: p, .. } if p == pid));
    assert_eq!(sup.status("web").unwrap().state, State::Backoff, "web waits for its orphan");
}
