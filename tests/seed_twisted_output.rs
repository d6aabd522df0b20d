//! Port of Twisted procmon's output tests: captured lines are logged as
//! `[name] line`, invalid UTF-8 is escaped, and a partial line waits for the
//! process end. Own binary: it installs a global logger.

mod common;

use std::sync::Mutex;

use common::{secs, Harness};
use procsup::{Event, Exit, Output, ProcessSpec, Stream};

static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static LOCK: Mutex<()> = Mutex::new(());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if r.level() == log::Level::Info {
            RECORDS.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

/// A started, long-running captured `foo`, with the log emptied.
fn setup() -> (Harness, std::sync::MutexGuard<'static, ()>) {
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let _ = log::set_logger(&Capture);
    log::set_max_level(log::LevelFilter::Info);
    let mut h = Harness::with([ProcessSpec::new("foo", "foo").stdout(Output::Capture).start_grace(secs(10.0))]);
    h.start_all();
    h.advance(10.0);
    h.tick();
    RECORDS.lock().unwrap().clear();
    (h, guard)
}

fn records() -> Vec<String> {
    RECORDS.lock().unwrap().clone()
}

fn output(h: &mut Harness, data: &[u8]) {
    let pid = h.pid("foo");
    assert!(h.sup.sys_mut().output(pid, Stream::Stdout, data));
}

#[test]
fn complete_line_is_logged() {
    let (mut h, _g) = setup();
    output(&mut h, b"hello world!\n");
    h.tick();
    assert_eq!(records(), ["[foo] hello world!"]);
    let lines: Vec<_> = h.log.iter().filter(|e| matches!(e, Event::Output { .. })).collect();
    assert_eq!(lines.len(), 1);
    assert!(matches!(lines[0], Event::Output { stream: Stream::Stdout, line, .. } if line == b"hello world!"));
}

// Twisted logs repr(b'...') for invalid UTF-8; we keep the valid text and
// escape each invalid byte as \xNN, which loses nothing either.
#[test]
fn invalid_utf8_is_escaped() {
    let (mut h, _g) = setup();
    output(&mut h, b"\xffhello world!\n");
    h.tick();
    assert_eq!(records(), ["[foo] \\xffhello world!"]);
    let ev = h.log.iter().find(|e| matches!(e, Event::Output { .. })).unwrap();
    assert!(ev.to_string().ends_with(r#"line="\\xffhello world!""#), "{ev}");
}

#[test]
fn partial_line_waits_for_the_end() {
    let (mut h, _g) = setup();
    output(&mut h, b"hello world!");
    h.tick();
    assert!(records().is_empty());
    h.exit("foo", Exit::Exited(0));
    h.tick();
    assert_eq!(records(), ["[foo] hello world!"]);
    // The line comes before the exit event.
    let kinds = h.kinds();
    let out = kinds.iter().position(|k| *k == "output").unwrap();
    let exited = kinds.iter().position(|k| *k == "exited").unwrap();
    assert!(out < exited, "{kinds:?}");
}
