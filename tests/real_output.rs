//! Output routing with real processes: append files, stderr to stdout,
//! capture with line splitting, large output at exit.

mod real;

use std::time::Duration;

use procsup::{Event, Output, ProcessSpec, RestartPolicy, Stream, UnixSys};
use real::{both_paths, Host};

fn once(name: &str, script: &str) -> ProcessSpec {
    ProcessSpec::new(name, "sh").args(["-c", script]).restart(RestartPolicy::Never)
}

#[test]
fn stderr_to_stdout_appends_to_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.log");
    std::fs::write(&path, "before\n").unwrap();
    let mut h = Host::new(UnixSys::new());
    h.add(once("w", "echo out; echo err >&2; echo out2").stdout(Output::Append(path.clone())).stderr(Output::ToStdout));
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("exited") == 1);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "before\nout\nerr\nout2\n");
}

#[test]
fn append_file_is_created_0644_and_kept_across_restarts() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("o.log"), dir.path().join("e.log"));
    let mut h = Host::new(UnixSys::new());
    h.add(
        ProcessSpec::new("w", "sh")
            .args(["-c", "echo o; echo e >&2; exit 1"])
            .stdout(Output::Append(out.clone()))
            .stderr(Output::Append(err.clone()))
            .backoff(procsup::Backoff::none())
            .give_up_after(2),
    );
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("fatal") == 1);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "o\no\n");
    assert_eq!(std::fs::read_to_string(&err).unwrap(), "e\ne\n");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o022, 0o644 & !0o022, "created as 0644 minus the umask: {mode:o}");
}

#[test]
fn null_discards() {
    let mut h = Host::new(UnixSys::new());
    h.add(once("w", "echo gone").stdout(Output::Null));
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("exited") == 1);
    assert!(h.lines().is_empty());
}

#[test]
fn captured_lines_split_join_and_flush() {
    for (path, make_sys) in both_paths() {
        let mut h = Host::new(make_sys());
        h.add(
            once("w", r"printf 'a\nb'; sleep 0.1; printf 'c\n'; sleep 0.1; printf 'e\n' >&2; printf 'x'")
                .stdout(Output::Capture)
                .stderr(Output::Capture),
        );
        h.start_all();
        h.run_until(Duration::from_secs(10), |h| h.count("exited") == 1);
        let lines: Vec<(Stream, String)> = h
            .log
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Output { stream, line, .. } => Some((*stream, String::from_utf8_lossy(line).into_owned())),
                _ => None,
            })
            .collect();
        let stdout: Vec<&str> = lines.iter().filter(|(s, _)| *s == Stream::Stdout).map(|(_, l)| l.as_str()).collect();
        let stderr: Vec<&str> = lines.iter().filter(|(s, _)| *s == Stream::Stderr).map(|(_, l)| l.as_str()).collect();
        assert_eq!(stdout, ["a", "bc", "x"], "{path}");
        assert_eq!(stderr, ["e"], "{path}");
        let kinds = h.kinds();
        assert!(kinds.last().unwrap().starts_with("event=exited"), "{path}: output after the exit: {kinds:?}");
    }
}

#[test]
fn invalid_utf8_arrives_escaped() {
    let mut h = Host::new(UnixSys::new());
    h.add(once("w", r"printf '\377hello\n'").stdout(Output::Capture));
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("exited") == 1);
    assert_eq!(h.lines(), ["\\xffhello"]);
}

#[test]
fn large_output_at_exit_is_not_lost() {
    for (path, make_sys) in both_paths() {
        let mut h = Host::new(make_sys());
        // 1 MiB in 64-byte lines, written faster than one poll reads.
        h.add(once("w", "head -c 1048576 /dev/zero | tr '\\0' 'x' | fold -w 63").stdout(Output::Capture));
        h.start_all();
        h.run_until(Duration::from_secs(20), |h| h.count("exited") == 1);
        let bytes: usize = h.lines().iter().map(|l| l.len() + 1).sum();
        assert_eq!(bytes, 1048576 + 1048576 / 63 + 1, "{path}");
    }
}

#[test]
fn stderr_capture_into_stdout_pipe() {
    let mut h = Host::new(UnixSys::new());
    h.add(once("w", "echo one; echo two >&2").stdout(Output::Capture).stderr(Output::ToStdout));
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("exited") == 1);
    assert_eq!(h.lines(), ["one", "two"]);
}
