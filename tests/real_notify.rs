//! Readiness with real processes: sd_notify over `UnixSys`'s per-child
//! socket, s6's notification fd, start timeouts and the watchdog.
// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod real;

use std::time::{Duration, Instant};

use procsup::{Backoff, Event, ProcessSpec, Readiness, Signal, State, UnixSys};
use real::{both_paths, Host};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn helper() -> String {
    format!("{}/tests/bin/sdnotify.py", env!("CARGO_MANIFEST_DIR"))
}

/// A `Notify` child running the sd_notify helper in `mode`.
fn notifier(name: &str, mode: &[&str]) -> ProcessSpec {
    ProcessSpec::new(name, "python3")
        .arg(helper())
        .args(mode)
        .ready(Readiness::Notify)
        .stop_timeout(Duration::from_secs(2))
}

fn when(h: &Host, kind: &str) -> Instant {
    h.log.iter().find(|(_, e)| e.kind() == kind).unwrap_or_else(|| panic!("no {kind}: {:#?}", h.kinds())).0
}

/// The child's `NOTIFY_SOCKET`, from its environment.
fn notify_socket_of(pid: i32) -> String {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"NOTIFY_SOCKET="))
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
        .expect("NOTIFY_SOCKET in the child's environment")
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn ready_after_300ms_is_running_no_earlier() {
    for (path, make_sys) in both_paths() {
        let mut h = Host::new(make_sys());
        h.add(notifier("db", &["ready-after", "300"]));
        h.start_all();
        h.run_until(Duration::from_secs(10), |h| h.count("running") == 1);
        let (spawned, ready) = (when(&h, "spawned"), when(&h, "ready"));
        assert!(ready - spawned >= ms(300), "{path}: ready after {:?}", ready - spawned);
        let Some(Event::Ready { after, .. }) = h.events("ready").first().copied() else { unreachable!() };
        assert!(*after >= ms(300), "{path}: {after:?}");
        let st = h.sup.status("db").unwrap();
        assert_eq!(st.state, State::Running, "{path}");
        assert_eq!(st.status_text.as_deref(), Some("serving"), "{path}");
    }
}

#[test]
fn never_ready_is_stopped_at_the_start_timeout_then_backed_off() {
    let mut h = Host::new(UnixSys::new());
    h.add(notifier("db", &["never"]).start_timeout(ms(400)).backoff(Backoff::fixed(ms(200))));
    // The spawn's `now` is read after this, so the timeout is due no
    // earlier than 400 ms after it.
    let before_spawn = Instant::now();
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("spawned") == 2);
    let timeout = when(&h, "start_timeout");
    assert!(timeout - before_spawn >= ms(400), "{:?}", timeout - before_spawn);
    let backoff = h.events("backoff")[0].clone();
    assert!(matches!(backoff, Event::Backoff { failure_streak: 1, .. }), "{backoff:?}");
    assert!(h.kinds().iter().any(|k| k.starts_with("event=exited") && k.contains("signal=15")), "{:#?}", h.kinds());
}

#[test]
fn a_child_that_stops_pinging_is_killed_at_the_watchdog_deadline_and_restarted() {
    let mut h = Host::new(UnixSys::new());
    // Five pings 100 ms apart, then silence: the watchdog (400 ms) fires
    // about 900 ms after readiness.
    h.add(notifier("db", &["ping", "5", "100", "400000"]).watchdog(ms(400)).backoff(Backoff::fixed(ms(50))));
    let before_spawn = Instant::now();
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("spawned") == 2);
    let (ready, watchdog) = (when(&h, "ready"), when(&h, "watchdog"));
    // The last ping was sent at least 500 ms after READY=1, itself sent
    // after the spawn: the pings moved the deadline.
    assert!(watchdog - before_spawn >= ms(900), "the watchdog fired {:?} after the spawn", watchdog - before_spawn);
    assert!(watchdog - ready >= ms(400));
    assert!(h.count("exited") >= 1);
    let bad_env = h.kinds().iter().any(|k| k.contains("code=3") || k.contains("code=4"));
    assert!(!bad_env, "WATCHDOG_USEC or WATCHDOG_PID wrong: {:#?}", h.kinds());
}

#[test]
fn ready_from_another_process_is_ignored() {
    let mut h = Host::new(UnixSys::new());
    h.add(notifier("a", &["on-usr1"]));
    h.add(notifier("b", &["never"]));
    h.start_all();
    let (a, b) = (h.sup.status("a").unwrap().pid.unwrap(), h.sup.status("b").unwrap().pid.unwrap());
    let sock_a = {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            // The environ is readable once exec is done.
            match std::panic::catch_unwind(|| notify_socket_of(a.as_raw())) {
                Ok(s) => break s,
                Err(_) if Instant::now() < end => std::thread::sleep(ms(10)),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    };
    // READY=1 on a's socket from a stranger (a process the test starts)
    // and from the test process itself: neither is a or in its group.
    let status = std::process::Command::new("python3")
        .args([helper().as_str(), "send", "READY=1"])
        .env("NOTIFY_SOCKET", &sock_a)
        .status()
        .unwrap();
    assert!(status.success());
    let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let name = sock_a.strip_prefix('@').unwrap();
    let addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name).unwrap();
    sock.send_to_addr(b"READY=1", &addr).unwrap();
    let until = Instant::now() + ms(500);
    h.run_until(Duration::from_secs(5), |_| Instant::now() >= until);
    assert_eq!(h.sup.status("a").unwrap().state, State::Starting, "{:#?}", h.kinds());
    assert_eq!(h.count("ready"), 0);
    // The child itself can: SIGUSR1 makes it send READY=1.
    h.sup.signal_process("a", Signal::SIGUSR1).unwrap();
    h.run_until(Duration::from_secs(5), |h| h.count("ready") == 1);
    assert_eq!(h.sup.status("b").unwrap().state, State::Starting);
    let _ = b;
}

#[test]
fn a_member_of_the_childs_process_group_may_notify() {
    let mut h = Host::new(UnixSys::new());
    let script = format!("python3 {} send READY=1; exec sleep 60", helper());
    h.add(ProcessSpec::new("sh", "sh").args(["-c", &script]).ready(Readiness::Notify).stop_timeout(ms(500)));
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("ready") == 1);
}

#[test]
fn ten_thousand_garbage_datagrams_change_nothing_and_memory_stays_flat() {
    let mut h = Host::new(UnixSys::new());
    h.add(notifier("db", &["garbage", "10000"]));
    let before = rss_kib();
    h.start_all();
    h.run_until(Duration::from_secs(60), |h| h.count("ready") == 1);
    let grown = rss_kib().saturating_sub(before);
    let kinds = h.kinds();
    assert_eq!(
        kinds.iter().filter(|k| !k.starts_with("event=spawned")).count(),
        3,
        "only STATUS=done, ready and running: {kinds:#?}"
    );
    assert!(kinds[1].starts_with("event=status") && kinds[1].contains("text=done"), "{kinds:#?}");
    // 10,000 datagrams of up to 5 kB would be tens of MB if any were kept.
    assert!(grown < 8 * 1024, "RSS grew by {grown} KiB");
}

#[test]
fn s6_notification_fd() {
    let mut h = Host::new(UnixSys::new());
    h.add(
        ProcessSpec::new("s6", "sh")
            .args(["-c", "sleep 0.2; echo >&5; exec sleep 60"])
            .ready(Readiness::Fd(5))
            .stop_timeout(ms(500)),
    );
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("ready") == 1);
    let (spawned, ready) = (when(&h, "spawned"), when(&h, "ready"));
    assert!(ready - spawned >= ms(200));
}

#[test]
fn a_watched_child_gets_its_own_pid_and_exec_errors_stay_spawn_failures() {
    let mut h = Host::new(UnixSys::new());
    h.add(
        ProcessSpec::new("env", "sh")
            .args(["-c", "echo \"$FOO|$WATCHDOG_PID|$$|$WATCHDOG_USEC|${HOME:-unset}\""])
            .env_clear()
            .env("FOO", "bar")
            .stdout(procsup::Output::Capture)
            .ready(Readiness::Notify)
            .watchdog(Duration::from_secs(5))
            .restart(procsup::RestartPolicy::Never),
    );
    h.add(
        ProcessSpec::new("missing", "/nonexistent/program")
            .ready(Readiness::Notify)
            .watchdog(Duration::from_secs(5))
            .restart(procsup::RestartPolicy::Never),
    );
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("exited") == 1);
    let line = h.lines().pop().expect("a line");
    let parts: Vec<&str> = line.split('|').collect();
    assert_eq!(parts[0], "bar", "{line}");
    assert_eq!(parts[1], parts[2], "WATCHDOG_PID is the child's pid: {line}");
    assert_eq!(parts[3..], ["5000000", "unset"], "{line}");
    let failed = h.events("spawn_failed");
    assert!(matches!(failed[..], [Event::SpawnFailed { errno: nix::errno::Errno::ENOENT, .. }]), "{failed:?}");
}

#[test]
fn a_reload_lasts_until_ready_again() {
    let mut h = Host::new(UnixSys::new());
    h.add(notifier("db", &["reload"]).start_timeout(Duration::from_secs(5)));
    h.start_all();
    h.run_until(Duration::from_secs(10), |h| h.count("ready") == 1);
    let pid = h.sup.status("db").unwrap().pid.unwrap();
    h.sup.reload_process("db", Instant::now()).unwrap();
    assert!(h.sup.status("db").unwrap().reloading);
    h.run_until(Duration::from_secs(10), |h| h.count("ready") == 2);
    let st = h.sup.status("db").unwrap();
    assert!(!st.reloading && st.start_timeout_at.is_none(), "{st:?}");
    assert_eq!(st.pid, Some(pid), "a reload is not a restart");
    let Some(Event::Ready { after, .. }) = h.events("ready").last().copied() else { unreachable!() };
    assert!(*after >= ms(100), "the reload took {after:?}");
    assert_eq!(h.count("reloading"), 1, "RELOADING=1 during a reload the host began is not a second one");
}

#[test]
fn a_watched_program_not_on_path_is_enoent_even_if_the_cwd_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("local-only");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut h = Host::new(UnixSys::new());
    h.add(
        ProcessSpec::new("x", "local-only")
            .current_dir(dir.path())
            .ready(Readiness::Notify)
            .watchdog(Duration::from_secs(5))
            .restart(procsup::RestartPolicy::Never),
    );
    h.start_all();
    let failed = h.events("spawn_failed");
    assert!(matches!(failed[..], [Event::SpawnFailed { errno: nix::errno::Errno::ENOENT, .. }]), "{:#?}", h.kinds());
}
