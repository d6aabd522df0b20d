//! `Output::Log` on FakeSys: captured lines go to a rotating file (not to
//! events), a file that cannot be opened is an error at add time, a write
//! error is an event and never a dead child, files are shared by path.

mod common;

use std::path::Path;

use common::{secs, Harness};
use procsup::{Error, Event, Exit, LogFile, Output, ProcessSpec, Readiness, State, Stream};

fn logged(name: &str, log: LogFile) -> ProcessSpec {
    ProcessSpec::new(name, name).stdout(Output::Log(log)).stderr(Output::ToStdout).start_grace(secs(0.0))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn lines_go_to_the_file_not_to_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    let mut h = Harness::with([logged("a", LogFile::new(&path))]);
    h.start_all();
    h.tick();
    let pid = h.pid("a");
    assert!(h.sup.sys_mut().output(pid, Stream::Stdout, b"one\ntwo\npart"));
    h.tick();
    assert_eq!(read(&path), "one\ntwo\n", "written at the end of the tick; a partial line waits");
    assert!(!h.log.iter().any(|e| matches!(e, Event::Output { .. })), "no output events: {:?}", h.kinds());
    // The partial line is flushed at exit, before the exit event.
    h.exit("a", Exit::Exited(1));
    h.tick();
    assert_eq!(read(&path), "one\ntwo\npart\n");
    assert!(h.kinds().contains(&"exited"));
}

#[test]
fn a_file_that_cannot_be_opened_is_refused_at_add_and_nothing_is_added() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::new();
    let missing = dir.path().join("no/such/dir/a.log");
    match h.sup.add_process(logged("a", LogFile::new(&missing))) {
        Err(Error::LogFile { name, path, .. }) => assert_eq!((name.as_str(), path.as_path()), ("a", missing.as_path())),
        other => panic!("expected Error::LogFile, got {other:?}"),
    }
    assert!(h.sup.status("a").is_err());
    // A directory at the path, for a group: no instance is added.
    let err = h.sup.add_process(logged("g", LogFile::new(dir.path())).instances(3)).unwrap_err();
    assert!(matches!(err, Error::LogFile { .. }), "{err}");
    assert!(h.sup.statuses().is_empty());
}

#[test]
fn invalid_settings_are_an_invalid_spec() {
    let mut h = Harness::new();
    for log in [LogFile::new(""), LogFile::new("x.log").max_size(0), LogFile::new("x.log").keep(100_000)] {
        let err = h.sup.add_process(logged("a", log)).unwrap_err();
        assert!(matches!(err, Error::InvalidSpec { .. }), "{err}");
    }
}

#[test]
fn rotation_keeps_each_line_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    let spec = logged("a", LogFile::new(&path).max_size(64).keep(50)).backoff(procsup::Backoff::none());
    let mut h = Harness::with([spec]);
    h.start_all();
    let mut n = 0;
    for _ in 0..5 {
        h.tick();
        let pid = h.pid("a");
        let chunk: String = (n..n + 30).map(|i| format!("line {i}\n")).collect();
        n += 30;
        assert!(h.sup.sys_mut().output(pid, Stream::Stdout, chunk.as_bytes()));
        h.exit("a", Exit::Exited(1));
        h.tick();
    }
    let mut files: Vec<_> =
        (1..=50).rev().map(|i| dir.path().join(format!("a.log.{i}"))).filter(|p| p.exists()).collect();
    files.push(path.clone());
    assert!(files.len() > 10, "rotated: {} files", files.len());
    for f in &files {
        let text = read(f);
        assert!(text.len() <= 64 && text.ends_with('\n'), "{}: {text:?}", f.display());
    }
    let all: Vec<String> = files.iter().map(|f| read(f)).collect::<String>().lines().map(str::to_owned).collect();
    assert_eq!(all, (0..n).map(|i| format!("line {i}")).collect::<Vec<_>>());
}

#[test]
fn instances_and_streams_share_one_file_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.log");
    let log = LogFile::new(&path);
    let spec = ProcessSpec::new("g", "g")
        .stdout(Output::Log(log.clone()))
        .stderr(Output::Log(log))
        .start_grace(secs(0.0))
        .instances(2);
    let mut h = Harness::with([spec]);
    h.start_all();
    h.tick();
    let (p0, p1) = (h.pid("g:0"), h.pid("g:1"));
    assert!(h.sup.sys_mut().output(p0, Stream::Stdout, b"zero out\n"));
    assert!(h.sup.sys_mut().output(p1, Stream::Stderr, b"one err\n"));
    h.tick();
    assert_eq!(read(&path), "zero out\none err\n");
}

#[test]
fn readiness_by_line_and_the_crash_context_see_logged_lines() {
    let dir = tempfile::tempdir().unwrap();
    let spec = logged("a", LogFile::new(dir.path().join("a.log")))
        .start_grace(secs(5.0))
        .ready(Readiness::output_contains("listening"));
    let mut h = Harness::with([spec]);
    h.start_all();
    h.tick();
    let pid = h.pid("a");
    assert_eq!(h.state("a"), State::Starting);
    assert!(h.sup.sys_mut().output(pid, Stream::Stdout, b"booting\nlistening on 80\n"));
    h.tick();
    assert_eq!(h.state("a"), State::Running, "{:?}", h.kinds());
}

#[test]
fn the_settings_of_the_latest_spec_apply_and_unused_files_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    let mut h = Harness::with([logged("a", LogFile::new(&path))]);
    h.sup.add_process(logged("b", LogFile::new(&path).max_size(8).keep(1))).unwrap();
    h.start_all();
    h.tick();
    let pid = h.pid("a");
    assert!(h.sup.sys_mut().output(pid, Stream::Stdout, b"12345\n67890\n"));
    h.tick();
    assert_eq!(read(&path), "67890\n", "b's max size applies to the shared file");
    assert_eq!(read(&dir.path().join("a.log.1")), "12345\n");
    // Removing both closes the file: moving it and adding again writes to
    // a new file at the path, not to the moved one.
    let now = h.now();
    h.sup.remove_process("a", now).unwrap();
    h.sup.remove_process("b", now).unwrap();
    h.run_until(30.0);
    assert!(h.sup.statuses().is_empty(), "{:?}", h.sup.statuses());
    std::fs::rename(&path, dir.path().join("moved")).unwrap();
    h.sup.add_process(logged("c", LogFile::new(&path))).unwrap();
    assert!(path.exists());
}

#[test]
fn reopen_that_fails_is_an_event_and_lines_go_on_to_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("logs");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("a.log");
    let mut h = Harness::with([logged("a", LogFile::new(&path))]);
    h.start_all();
    h.tick();
    let moved = dir.path().join("moved");
    std::fs::rename(&sub, &moved).unwrap();
    h.sup.reopen_logs();
    h.drain();
    let failed: Vec<&Event> = h.log.iter().filter(|e| e.kind() == "log_failed").collect();
    assert_eq!(failed.len(), 1, "{:?}", h.kinds());
    assert!(failed[0].to_string().contains("a.log"), "{}", failed[0]);
    let pid = h.pid("a");
    assert!(h.sup.sys_mut().output(pid, Stream::Stdout, b"still here\n"));
    h.tick();
    assert_eq!(read(&moved.join("a.log")), "still here\n");
    assert_eq!(h.state("a"), State::Running);
}
