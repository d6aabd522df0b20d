//! A child cannot speak for another: the readiness-spoofing attack of an
//! unprivileged sibling, on the cgroup path and on the process-group path.
//!
//! The attacker runs as `nobody`. It forks a helper that tries to join the
//! victim's process group (`setpgid(0, victim)`, allowed between processes
//! of one session) and sends `READY=1`, `STATUS=` and `WATCHDOG=1` to
//! every procsup notify socket it finds in `/proc/net/unix`, as a hostile
//! user would. None of it may reach the victim.
// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod real;

use std::time::{Duration, Instant};

use procsup::{Event, Output, ProcessSpec, Readiness, UnixSys};
use real::Host;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The attacker, inline (`nobody` may not be able to read the checkout):
/// argv[1] is the victim's pid, argv[2] how long to keep sending (ms).
/// Prints `joined=<0|1> sent=<n>` when done, then idles.
const ATTACK: &str = r#"
import os, socket, sys, time
victim, dur = int(sys.argv[1]), int(sys.argv[2]) / 1000
def sockets():
    names = set()
    with open("/proc/net/unix") as f:
        for line in f:
            path = line.split()[-1]
            if path.startswith("@procsup/"):
                names.add("\0" + path[1:])
    return names
r, w = os.pipe()
helper = os.fork()
if helper == 0:
    os.close(r)
    joined = 0
    try:
        os.setpgid(0, victim)
        joined = 1
    except OSError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sent = 0
    end = time.monotonic() + dur
    while time.monotonic() < end:
        for name in sockets():
            for msg in (b"READY=1\nSTATUS=pwned", b"WATCHDOG=1"):
                try:
                    s.sendto(msg, name)
                    sent += 1
                except OSError:
                    pass
        time.sleep(0.02)
    os.write(w, ("joined=%d sent=%d\n" % (joined, sent)).encode())
    os._exit(0)
os.close(w)
report = os.read(r, 100).decode().strip()
os.waitpid(helper, 0)
print(report, flush=True)
time.sleep(3600)
"#;

fn attacker(victim: i32, millis: u64) -> ProcessSpec {
    ProcessSpec::new("attacker", "/usr/bin/python3")
        .args(["-c", ATTACK, &victim.to_string(), &millis.to_string()])
        .uid(65534)
        .gid(65534)
        .stdout(Output::Capture)
        .stop_timeout(ms(500))
}

fn sdnotify() -> String {
    format!("{}/tests/bin/sdnotify.py", env!("CARGO_MANIFEST_DIR"))
}

fn report(h: &Host) -> Option<String> {
    h.lines().into_iter().find(|l| l.contains("joined="))
}

/// Makes the `UnixSys` one containment path runs on.
type MakeSys = fn() -> UnixSys;

/// Both containments: a cgroup per child, and the process group alone.
fn paths() -> [(&'static str, MakeSys); 2] {
    [("cgroup", UnixSys::new), ("group", || UnixSys::new().without_cgroups())]
}

#[test]
fn an_unprivileged_sibling_cannot_make_a_child_ready_or_set_its_status() {
    for (path, make) in paths() {
        let mut h = Host::new(make());
        h.add(ProcessSpec::new("victim", "sleep").arg("60").ready(Readiness::Notify).stop_timeout(ms(500)));
        h.sup.start_process("victim", Instant::now()).unwrap();
        let victim = h.sup.status("victim").unwrap().pid.unwrap().as_raw();
        h.add(attacker(victim, 600));
        h.sup.start_process("attacker", Instant::now()).unwrap();
        h.run_until(Duration::from_secs(20), |h| report(h).is_some());
        let report = report(&h).unwrap();
        let sent: u32 = report.rsplit('=').next().unwrap().parse().unwrap();
        assert!(sent > 0, "{path}: the attack sent nothing: {report}");
        // The victim leads a session of its own: its group cannot be joined.
        assert!(report.starts_with("joined=0"), "{path}: {report}");
        // Whatever is still queued is read by the next turns.
        let until = Instant::now() + ms(200);
        h.run_until(Duration::from_secs(5), |_| Instant::now() >= until);
        assert_eq!(h.count("ready"), 0, "{path}: {report}: {:#?}", h.kinds());
        assert_eq!(h.count("status"), 0, "{path}: {report}: {:#?}", h.kinds());
        assert_eq!(h.sup.status("victim").unwrap().state, procsup::State::Starting, "{path}");
        assert_eq!(h.sup.status("victim").unwrap().status_text, None, "{path}");
    }
}

#[test]
fn an_unprivileged_sibling_cannot_keep_a_silent_childs_watchdog_fed() {
    for (path, make) in paths() {
        let mut h = Host::new(make());
        // Ready at once, then never pings: its watchdog fires after 300 ms.
        h.add(
            ProcessSpec::new("wd", "python3")
                .args([sdnotify().as_str(), "ping", "0", "50", "300000"])
                .ready(Readiness::Notify)
                .watchdog(ms(300))
                .stop_timeout(ms(500)),
        );
        h.sup.start_process("wd", Instant::now()).unwrap();
        h.run_until(Duration::from_secs(10), |h| h.count("ready") == 1);
        let victim = h.sup.status("wd").unwrap().pid.unwrap().as_raw();
        // The attacker pings for 3 s, ten times the watchdog.
        h.add(attacker(victim, 3000));
        h.sup.start_process("attacker", Instant::now()).unwrap();
        h.run_until(Duration::from_secs(20), |h| report(h).is_some());
        let fired = h.log.iter().position(|(_, e)| matches!(e, Event::Watchdog { name, .. } if &**name == "wd"));
        let done =
            h.log.iter().position(|(_, e)| matches!(e, Event::Output { line, .. } if line.starts_with(b"joined=")));
        assert!(fired.is_some() && fired < done, "{path}: the watchdog was fed by the attacker: {:#?}", h.kinds());
    }
}

#[test]
fn the_childs_own_tree_still_speaks_for_it() {
    // A shell script's `systemd-notify` is a child of the child: on both
    // paths, the tree may speak.
    for (path, make) in paths() {
        let mut h = Host::new(make());
        let script = format!("python3 {0} send STATUS=up; python3 {0} send READY=1; exec sleep 60", sdnotify());
        h.add(ProcessSpec::new("sh", "sh").args(["-c", &script]).ready(Readiness::Notify).stop_timeout(ms(500)));
        h.start_all();
        h.run_until(Duration::from_secs(10), |h| h.count("ready") == 1);
        assert_eq!(h.sup.status("sh").unwrap().status_text.as_deref(), Some("up"), "{path}");
    }
}
