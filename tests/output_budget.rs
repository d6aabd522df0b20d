//! The per-tick output budget, on FakeSys: a flood of captured lines grows
//! the event queue by a bounded amount per tick, loses no line, keeps each
//! exit after its child's last line, and never delays a deadline.

mod common;

use common::{secs, Harness};
use procsup::{Event, Exit, Output, ProcessSpec, Stream, OUTPUT_LINES_PER_TICK};

fn captured(name: &str) -> ProcessSpec {
    ProcessSpec::new(name, name)
        .stdout(Output::Capture)
        .stderr(Output::Capture)
        .start_grace(secs(0.0))
        .stop_timeout(secs(1.0))
}

/// `n` numbered lines, `prefix0\nprefix1\n...`.
fn numbered(prefix: &str, n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| format!("{prefix}{i}\n").into_bytes()).collect()
}

fn outputs(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Output { line, .. } => Some(procsup::escape(line)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_flood_is_spread_over_ticks_and_no_line_is_lost() {
    let mut h = Harness::with([captured("a")]);
    h.start_all();
    h.tick();
    let pid = h.sup.status("a").unwrap().pid.unwrap();
    let total = OUTPUT_LINES_PER_TICK * 3 + 17;
    assert!(h.sup.sys_mut().output(pid, Stream::Stdout, &numbered("a", total)));
    assert!(h.sup.sys_mut().exit(pid, Exit::Exited(0)));
    let start = h.log.len();
    let mut ticks = 0;
    loop {
        let now = h.now();
        h.sup.tick(now);
        let events: Vec<Event> = h.sup.drain_events().collect();
        assert!(outputs(&events).len() <= OUTPUT_LINES_PER_TICK, "a tick emitted {} lines", outputs(&events).len());
        h.log.extend(events);
        ticks += 1;
        if h.log[start..].iter().any(|e| matches!(e, Event::Exited { .. })) {
            break;
        }
        // More is waiting: the host is told to come back at once.
        assert_eq!(h.sup.next_deadline(), Some(now), "left-over output must make the deadline now");
        assert!(ticks < 10, "the flood never ended");
    }
    assert_eq!(ticks, 4, "3 full ticks and a last one");
    let lines = outputs(&h.log[start..]);
    assert_eq!(lines, (0..total).map(|i| format!("a{i}")).collect::<Vec<_>>(), "every line, in order");
    assert!(
        matches!(h.log.last(), Some(Event::Exited { .. }) | Some(Event::Backoff { .. })),
        "the exit comes after the last line: {:?}",
        &h.log[h.log.len() - 3..]
    );
    let exit_at = h.log.iter().rposition(|e| matches!(e, Event::Exited { .. })).unwrap();
    let last_line = h.log.iter().rposition(|e| matches!(e, Event::Output { .. })).unwrap();
    assert!(last_line < exit_at);
}

#[test]
fn a_kill_deadline_is_honoured_in_the_tick_it_falls_due_whatever_the_output() {
    let mut h = Harness::with([captured("a")]);
    h.start_all();
    h.tick();
    let pid = h.sup.status("a").unwrap().pid.unwrap();
    h.stop("a");
    h.advance(1.0);
    // The flooding child's output arrives in the very tick its kill is due.
    assert!(h.sup.sys_mut().output(pid, Stream::Stderr, &vec![b'\n'; OUTPUT_LINES_PER_TICK * 10]));
    h.tick();
    assert_eq!(h.sup.sys().signals_to(pid).last(), Some(&procsup::Signal::SIGKILL));
    assert!(h.log.iter().any(|e| matches!(e, Event::Killed { .. })), "no kill in the flooded tick");
    assert!(outputs(&h.log).len() <= OUTPUT_LINES_PER_TICK);
}

#[test]
fn lines_reported_before_a_flood_are_not_held_back_by_it() {
    // The OS layer reports one line from `b`, then a flood from `a`: `b` is
    // heard in the first tick, and the flood takes the ticks it needs.
    let mut h = Harness::with([captured("a"), captured("b")]);
    h.start_all();
    h.tick();
    let (a, b) = (h.sup.status("a").unwrap().pid.unwrap(), h.sup.status("b").unwrap().pid.unwrap());
    assert!(h.sup.sys_mut().output(b, Stream::Stdout, b"hello from b\n"));
    assert!(h.sup.sys_mut().output(a, Stream::Stdout, &numbered("a", OUTPUT_LINES_PER_TICK * 2)));
    h.tick();
    assert_eq!(outputs(&h.log).first().map(String::as_str), Some("hello from b"));
    assert_eq!(outputs(&h.log).len(), OUTPUT_LINES_PER_TICK);
    // The rest of the flood follows over the next two ticks.
    h.tick();
    assert_eq!(h.sup.next_deadline(), Some(h.now()), "one line is still waiting");
    h.tick();
    assert_eq!(outputs(&h.log).len(), OUTPUT_LINES_PER_TICK * 2 + 1);
    assert_eq!(h.sup.next_deadline(), None, "all drained: no wake-up left");
}
