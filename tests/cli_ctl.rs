//! `supervise ctl` against real `supervise` processes: status, stop, JSON,
//! errors, a peer that may not, and clients that never speak.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bin::{field, supervise_bin, Cli};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// What a `supervise ctl` run printed, and its exit code.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` (a `supervise ctl`), killed if it takes longer than 15 s.
fn run_bounded(mut cmd: Command) -> Out {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("supervise ctl did not exit within 15 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    Out { code: status.code().expect("exited, not killed"), stdout, stderr }
}

/// `supervise ctl --state-dir DIR ARGS`.
fn ctl(dir: &Path, args: &[&str]) -> Out {
    let mut cmd = Command::new(supervise_bin());
    cmd.arg("ctl").arg("--state-dir").arg(dir).args(args);
    run_bounded(cmd)
}

/// The status table's row for `name` (its first column), if any.
fn row<'a>(table: &'a str, name: &str) -> Option<&'a str> {
    table.lines().find(|l| l.split_whitespace().next() == Some(name))
}

fn start(dir: &Path, programs: &[&str]) -> Cli {
    let mut args = vec!["--state-dir".to_owned(), dir.display().to_string(), "--start-grace".into(), "0.2".into()];
    for p in programs {
        args.push("-p".into());
        args.push((*p).into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Cli::start(&args)
}

fn stop(mut cli: Cli) -> Vec<String> {
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0, "{:#?}", cli.seen);
    cli.seen.clone()
}

#[test]
fn status_shows_the_processes_and_stop_stops_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut cli = start(&dir, &["web=sleep 60", "db=sleep 60"]);
    cli.expect_count("event=running", 2);
    let socket = dir.join("control");
    let mode = std::fs::symlink_metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the control socket is owner-only");

    let status = ctl(&dir, &["status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.starts_with("NAME "), "the SIGUSR1 table: {}", status.stdout);
    for name in ["web", "db"] {
        let r = row(&status.stdout, name).unwrap_or_else(|| panic!("no row for {name}: {}", status.stdout));
        assert!(r.contains("running"), "{r}");
    }

    let stopped = ctl(&dir, &["stop", "web"]);
    assert_eq!((stopped.code, stopped.stdout.as_str()), (0, "web: stopping\n"), "{}", stopped.stderr);
    cli.expect("event=stopped name=web");
    let status = ctl(&dir, &["status"]);
    assert!(row(&status.stdout, "web").unwrap().contains("stopped"), "{}", status.stdout);
    assert!(row(&status.stdout, "db").unwrap().contains("running"), "{}", status.stdout);

    let seen = stop(cli);
    assert!(!seen.iter().any(|l| l.contains("name=control")), "the socket is no odd entry: {seen:#?}");
    assert!(!socket.exists(), "the socket is removed on exit");
}

#[test]
fn json_status_and_actions_parse() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    // A name that needs escaping.
    let mut cli = start(&dir, &["we\"b\\1=sleep 60", "other=sleep 60"]);
    cli.expect_count("event=running", 2);
    let spawned = cli.seen.iter().find(|l| l.starts_with("event=spawned name=other")).unwrap();
    let pid: u64 = field(spawned, "pid").unwrap().parse().unwrap();

    let out = ctl(&dir, &["--json", "status"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let all: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    let all = all.as_array().expect("an array");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["name"], "we\"b\\1");
    let other = &all[1];
    assert_eq!(other["name"], "other");
    assert_eq!(other["state"], "running");
    assert_eq!(other["pid"].as_u64(), Some(pid));
    assert_eq!(other["restarts"].as_u64(), Some(0));
    assert!(other["uptime_s"].as_f64().is_some_and(|u| u >= 0.0), "{other}");
    assert!(other["last_exit"].is_null());
    assert!(other["containment"].is_string(), "{other}");

    let out = ctl(&dir, &["--json", "stop", "we\"b\\1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let one: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(one["name"], "we\"b\\1");
    assert_eq!(one["state"], "stopping");
    assert_eq!(one["manual_stop"], true);
    stop(cli);
}

#[test]
fn errors_exit_1_from_the_supervisor_and_2_without_an_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut cli = start(&dir, &["web=sleep 60"]);
    cli.expect("event=running");

    let out = ctl(&dir, &["stop", "nope"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("\"nope\""), "{}", out.stderr);
    let out = ctl(&dir, &["signal", "web", "NOPE"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("unknown signal"), "{}", out.stderr);
    let out = ctl(&dir, &["frobnicate"]);
    assert_eq!(out.code, 2, "bad usage");

    let elsewhere = tmp.path().join("none");
    let out = ctl(&elsewhere, &["status"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains(&elsewhere.join("control").display().to_string()), "names the path: {}", out.stderr);

    // A second host on the same socket (its own state dir) starts nothing.
    let mut second = Command::new(supervise_bin());
    second.arg("--state-dir").arg(tmp.path().join("state2"));
    second.arg("--control").arg(dir.join("control")).args(["-p", "x=sleep 60"]);
    let out = run_bounded(second);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("already listening"), "{}", out.stderr);
    assert!(!out.stdout.contains("event=spawned"), "{}", out.stdout);
    stop(cli);
}

#[test]
fn a_stale_socket_of_a_killed_host_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut cli = start(&dir, &["web=sleep 60"]);
    cli.expect("event=running");
    cli.sigkill();
    assert!(dir.join("control").exists(), "SIGKILL leaves the socket behind");
    let mut cli = start(&dir, &["web=sleep 60"]);
    cli.expect("event=running");
    let out = ctl(&dir, &["status"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(row(&out.stdout, "web").unwrap().contains("running"));
    stop(cli);
}

/// `supervise`, copied where `nobody` may run it (the checkout may not be
/// readable by others), and a directory `nobody` may pass through.
fn nobody_setup(tmp: &Path) -> PathBuf {
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o711)).unwrap();
    let bin = tmp.join("supervise");
    std::fs::copy(supervise_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn ctl_as_nobody(bin: &Path, socket: &Path) -> Out {
    let mut cmd = Command::new(bin);
    cmd.arg("ctl").arg("--control").arg(socket).arg("status").uid(65534).gid(65534).current_dir("/");
    run_bounded(cmd)
}

/// Two lines of defence: the socket's mode refuses `connect(2)` to
/// `nobody`; and were the mode wider, the host's `SO_PEERCRED` check
/// refuses it all the same. Either way the client says so, naming the
/// socket, and exits 2, and the host serves its own user on.
#[test]
fn a_peer_without_permission_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = nobody_setup(tmp.path());
    let socket = tmp.path().join("control");
    let mut cli = Cli::start(&["--control", socket.to_str().unwrap(), "-p", "web=sleep 60"]);
    cli.expect("event=spawned");

    let out = ctl_as_nobody(&bin, &socket);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains(&socket.display().to_string()), "{}", out.stderr);
    assert!(out.stderr.contains("Permission denied (os error 13)"), "connect(2) refused: {}", out.stderr);
    assert!(out.stdout.is_empty());

    // Widened (by root, say by mistake): the peer's uid is checked.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = ctl_as_nobody(&bin, &socket);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("{}: permission denied: only root and the user", socket.display())),
        "SO_PEERCRED refused: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "nothing of the status leaks: {}", out.stdout);

    let mut own = Command::new(supervise_bin());
    own.arg("ctl").arg("--control").arg(&socket).arg("status");
    let out = run_bounded(own);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(row(&out.stdout, "web").is_some(), "{}", out.stdout);
    stop(cli);
}

/// Clients that connect and never send a line, one that sends half a
/// line, one that never reads its answer, and a flood of connections the
/// whole time: the host still restarts a killed child at once, drops the
/// silent ones, and answers `ctl` once the flood stops.
#[test]
fn silent_and_flooding_clients_never_stall_the_loop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut cli = start(&dir, &["web=sleep 60"]);
    let first: i32 = field(&cli.expect("event=running"), "pid").unwrap().parse().unwrap();
    let socket = dir.join("control");

    let mut silent: Vec<UnixStream> = (0..20).map(|_| UnixStream::connect(&socket).unwrap()).collect();
    let mut half = UnixStream::connect(&socket).unwrap();
    half.write_all(b"sta").unwrap();
    let mut deaf = UnixStream::connect(&socket).unwrap();
    deaf.write_all(b"status\n").unwrap();
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flood = {
        let (socket, flooding) = (socket.clone(), flooding.clone());
        std::thread::spawn(move || {
            let mut held = std::collections::VecDeque::new();
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(s) = UnixStream::connect(&socket) {
                    held.push_back(s);
                }
                if held.len() > 100 {
                    held.pop_front();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };

    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    cli.expect("event=exited name=web");
    let again: i32 = field(&cli.expect("event=spawned name=web"), "pid").unwrap().parse().unwrap();
    assert_ne!(again, first);
    cli.expect(&format!("event=running name=web pid={again}"));

    // Every silent client is closed by the host, without an answer or
    // with `busy`; none is left waiting.
    silent.push(half);
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = Vec::new();
        match s.read_to_end(&mut answer) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a silent client was not dropped: {e}"),
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.is_empty() || answer.starts_with("error: busy"), "{answer}");
    }
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
    drop(deaf);

    // Once the flood's connections are dropped, ctl is answered.
    let end = Instant::now() + Duration::from_secs(15);
    let out = loop {
        let out = ctl(&dir, &["status"]);
        if out.code == 0 || Instant::now() > end {
            break out;
        }
        assert!(out.stderr.contains("busy"), "{}", out.stderr);
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = row(&out.stdout, "web").unwrap();
    assert!(r.contains("running") && r.contains(&again.to_string()), "{r}");
    stop(cli);
}

/// The CPU time (user + system) process `pid` used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = Command::new("getconf").arg("CLK_TCK").output().unwrap().stdout;
    let hz: u64 = String::from_utf8(hz).unwrap().trim().parse().unwrap();
    Duration::from_millis(ticks * 1000 / hz)
}

#[test]
fn a_host_out_of_file_descriptors_neither_spins_nor_stops_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut cli = start(&dir, &["web=sleep 60"]);
    cli.expect("event=running name=web");
    let pid = cli.child.id();
    // Its soft limit down to its lowest free fd: the next accept fails
    // with EMFILE and the connections wait in the backlog, which keeps the
    // listener readable.
    let open: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The lowest free descriptor: below it every one is taken.
    let limit = (0..).find(|fd| !open.contains(fd)).unwrap();
    let prlimit = |soft: &str| {
        let ok = Command::new("prlimit").args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")]).status();
        assert!(ok.unwrap().success(), "prlimit {soft}");
    };
    prlimit(&limit.to_string());
    let path = dir.join("control");
    let waiting: Vec<UnixStream> = (0..8).map(|_| UnixStream::connect(&path).unwrap()).collect();
    // A loop that polled the listener at once would burn a CPU here.
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_time(pid) - before;
    assert!(used < Duration::from_millis(300), "{used:?} of CPU in 1 s: the loop spins on EMFILE");
    // With room again, it answers.
    prlimit("1024");
    drop(waiting);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ctl(&dir, &["status"]);
        if out.code == 0 {
            assert!(row(&out.stdout, "web").is_some(), "{}", out.stdout);
            break;
        }
        assert!(Instant::now() < end, "no answer after the limit went up: {}", out.stderr);
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(cli);
}
