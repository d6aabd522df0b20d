//! `Output::Log` with real processes: a 300,000-line flood rotated with no
//! line lost or doubled, a reopen after an external move, and a full disk
//! reported as an event while the child runs on.

mod real;

use std::path::{Path, PathBuf};
use std::time::Duration;

use procsup::{Event, LogFile, Output, ProcessSpec, RestartPolicy, State, UnixSys};
use real::Host;

fn logged(name: &str, script: &str, log: LogFile) -> ProcessSpec {
    ProcessSpec::new(name, "sh")
        .args(["-c", script])
        .stdout(Output::Log(log))
        .stderr(Output::ToStdout)
        .restart(RestartPolicy::Never)
}

/// `path.N` .. `path.1`, `path`: oldest first.
fn files(path: &Path, keep: u32) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = (1..=keep).rev().map(|i| PathBuf::from(format!("{}.{i}", path.display()))).collect();
    v.push(path.to_owned());
    v.into_iter().filter(|p| p.exists()).collect()
}

#[test]
fn a_300000_line_flood_rotates_losing_and_doubling_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flood.log");
    let (max, keep) = (256 * 1024, 40);
    let mut h = Host::new(UnixSys::new());
    // Both streams, into one pipe: odd lines on stdout, even ones on stderr.
    let script = "i=1; while [ $i -le 300000 ]; do echo $i; i=$((i+1)); echo $i >&2; i=$((i+1)); done";
    h.add(logged("flood", script, LogFile::new(&path).max_size(max).keep(keep)));
    h.start_all();
    h.run_until(Duration::from_secs(120), |h| h.count("exited") == 1);
    let files = files(&path, keep);
    assert!(files.len() > 5, "rotated into {} files", files.len());
    let mut all = String::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.len() as u64 <= max, "{} is {} bytes, over {max}", f.display(), text.len());
        assert!(text.ends_with('\n'), "{} ends inside a line", f.display());
        all += &text;
    }
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 300_000, "every line once");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(*l, (i + 1).to_string(), "line {i} out of order or changed");
    }
    assert!(h.log.iter().all(|(_, e)| !matches!(e, Event::Output { .. } | Event::LogFailed { .. })));
}

#[test]
fn reopen_after_a_move_keeps_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.log");
    let moved = dir.path().join("r.log.moved");
    let mut h = Host::new(UnixSys::new());
    // Writes numbered lines until told to stop by a file.
    let stop = dir.path().join("stop");
    let script = format!("i=0; while [ ! -e {} ]; do echo $i; i=$((i+1)); done; echo $i", stop.display());
    h.add(logged("r", &script, LogFile::new(&path)));
    h.start_all();
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap_or_default().lines().count();
    h.run_until(Duration::from_secs(30), |_| lines(&path) >= 1000);
    // logrotate's move, then the host's reopen, as SIGUSR2 does in supervise.
    std::fs::rename(&path, &moved).unwrap();
    h.turn(Duration::from_millis(10));
    h.sup.reopen_logs();
    h.run_until(Duration::from_secs(30), |_| lines(&path) >= 1000);
    std::fs::write(&stop, "").unwrap();
    h.run_until(Duration::from_secs(30), |h| h.count("exited") == 1);
    let old = std::fs::read_to_string(&moved).unwrap();
    let new = std::fs::read_to_string(&path).unwrap();
    assert!(old.ends_with('\n') && new.ends_with('\n'));
    let all: Vec<String> = (old + &new).lines().map(str::to_owned).collect();
    let want: Vec<String> = (0..all.len()).map(|i| i.to_string()).collect();
    assert_eq!(all, want, "in order, none lost or doubled across the reopen");
    assert!(h.count("log_failed") == 0, "{:?}", h.kinds());
}

/// A 64 KiB tmpfs of our own, unmounted on drop.
struct TinyFs(tempfile::TempDir);

impl TinyFs {
    fn mount() -> Option<TinyFs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "procsup-test", dir.path().to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(TinyFs(dir))
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_is_an_event_and_the_child_runs_on() {
    // Root on Linux, as on the developers' machines and CI.
    let fs = TinyFs::mount().expect("mounting a tmpfs (tests run as root)");
    let path = fs.0.path().join("full.log");
    let mut h = Host::new(UnixSys::new());
    let script = "i=0; while [ $i -lt 20000 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done; sleep 300";
    h.add(logged("full", script, LogFile::new(&path).max_size(1 << 30)).start_grace(Duration::ZERO));
    h.start_all();
    h.run_until(Duration::from_secs(60), |h| h.count("log_failed") >= 1);
    let failed = h.events("log_failed");
    assert_eq!(failed.len(), 1, "said once while it keeps failing: {:?}", h.kinds());
    assert!(failed[0].to_string().contains("No space left"), "{}", failed[0]);
    // The child is not touched: still the same, still running.
    assert_eq!(h.sup.status("full").unwrap().state, State::Running);
    assert_eq!(h.count("exited"), 0);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 0 && size <= 64 * 1024, "{size}");
    // The host's drop stops and reaps the child before the mount goes.
    drop(h);
}
