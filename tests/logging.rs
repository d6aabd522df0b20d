//! Captured lines in the `log` crate: a target per process, a level per
//! stream, and line logging that can be turned off while `Event::Output`
//! stays.

use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use procsup::testing::{FakeSys, VirtualClock};
use procsup::{Event, Output, ProcessSpec, Stream, Supervisor};

/// Every record, as (target, level, message).
static RECORDS: Mutex<Vec<(String, Level, String)>> = Mutex::new(Vec::new());

struct Recorder;

impl Log for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &Record<'_>) {
        RECORDS.lock().unwrap().push((record.target().to_owned(), record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

#[test]
fn each_process_its_own_target_each_stream_its_own_level() {
    log::set_logger(&Recorder).unwrap();
    log::set_max_level(LevelFilter::Trace);
    let now = VirtualClock::new().now();
    let mut sup = Supervisor::with_sys(FakeSys::new());
    let captured = |name: &str| ProcessSpec::new(name, "prog").stdout(Output::Capture).stderr(Output::Capture);
    sup.add_process(captured("web").log_lines(Stream::Stderr, LevelFilter::Warn)).unwrap();
    sup.add_process(captured("quiet").log_lines(Stream::Stdout, LevelFilter::Off)).unwrap();
    sup.start_all(now).unwrap();
    let (web, quiet) = (sup.sys().pid_of("web").unwrap(), sup.sys().pid_of("quiet").unwrap());
    assert!(sup.sys_mut().output(web, Stream::Stdout, b"listening\n"));
    assert!(sup.sys_mut().output(web, Stream::Stderr, b"slow request\n"));
    assert!(sup.sys_mut().output(quiet, Stream::Stdout, b"chatter\n"));
    assert!(sup.sys_mut().output(quiet, Stream::Stderr, b"trouble\n"));
    sup.tick(now);

    let records = RECORDS.lock().unwrap().clone();
    let lines: Vec<_> = records.iter().filter(|(t, ..)| t.starts_with("procsup::output::")).cloned().collect();
    let r = |t: &str, l, m: &str| (t.to_owned(), l, m.to_owned());
    assert_eq!(
        lines,
        [
            r("procsup::output::web", Level::Info, "[web] listening"),
            r("procsup::output::web", Level::Warn, "[web] slow request"),
            r("procsup::output::quiet", Level::Info, "[quiet] trouble"),
        ]
    );
    // The events under their own target, at DEBUG.
    assert!(records.iter().any(|(t, l, m)| t == "procsup::event" && *l == Level::Debug && m.contains("event=spawned")));
    // Logging off for a stream does not touch the events.
    let outputs: Vec<String> = sup
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Output { name, line, .. } => Some(format!("{name}: {}", String::from_utf8_lossy(&line))),
            _ => None,
        })
        .collect();
    assert_eq!(outputs, ["web: listening", "web: slow request", "quiet: chatter", "quiet: trouble"]);
}
