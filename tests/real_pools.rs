//! Worker pools with real processes: passed fds, the socket-activation
//! environment, instance numbers, spec roll-outs.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod pool_client;
mod real;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashSet;
use std::time::Instant;

use pool_client::{free_port, get, worker_script, Load};
use procsup::{Event, Output, ProcessSpec, RestartPolicy, UnixSys};
use real::Host;

/// Prints, for every fd the child holds, `fd -> target`, then its
/// socket-activation and instance variables and its own pid.
const REPORT: &str = r#"
import os
for fd in sorted(os.listdir('/proc/self/fd'), key=int):
    try:
        print('fd', fd, os.readlink('/proc/self/fd/' + fd))
    except OSError:
        pass  # the directory listdir had open
e = os.environ
print('env', e.get('LISTEN_FDS'), e.get('LISTEN_FDNAMES'), e.get('LISTEN_PID'), os.getpid(), e.get('PROCSUP_INSTANCE'), e.get('KEPT'))
"#;

fn report(h: &Host, prefix: &str) -> Vec<String> {
    h.lines().into_iter().filter(|l| l.starts_with(prefix)).collect()
}

fn link(fd: &impl AsRawFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap().display().to_string()
}

#[test]
fn listen_fds_land_at_3_in_order_with_listen_pid_the_childs_own() {
    let mut h = Host::new(UnixSys::new());
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (la, lb) = (link(&a), link(&b));
    // A host fd without close-on-exec (dup(2) does not copy the flag) must
    // not reach the child.
    let leak = nix::unistd::dup(&a).unwrap();
    assert!(leak.as_raw_fd() > 2);
    let spec = ProcessSpec::new("w", "python3")
        .args(["-c", REPORT])
        .env("KEPT", "yes")
        .env("LISTEN_PID", "1")
        .restart(RestartPolicy::Never)
        .stdout(Output::Capture)
        .listen_fds([("http", Arc::new(OwnedFd::from(a))), ("admin", Arc::new(OwnedFd::from(b)))]);
    h.add(spec);
    h.start_all();
    h.run_until(Duration::from_secs(20), |h| h.count("exited") == 1);
    drop(leak);
    let fds = report(&h, "fd ");
    let want: Vec<String> = ["0", "1", "2"].iter().map(|n| format!("fd {n} ")).collect();
    assert_eq!(fds.len(), 5, "only 0-2 and the two passed fds: {fds:?}");
    for (line, prefix) in fds.iter().zip(&want) {
        assert!(line.starts_with(prefix), "{fds:?}");
    }
    assert_eq!(fds[3], format!("fd 3 {la}"), "the first listen fd at 3: {fds:?}");
    assert_eq!(fds[4], format!("fd 4 {lb}"), "the second at 4: {fds:?}");
    let env = report(&h, "env ");
    let parts: Vec<&str> = env[0].split(' ').collect();
    assert_eq!(&parts[1..3], ["2", "http:admin"], "{env:?}");
    assert_eq!(parts[3], parts[4], "LISTEN_PID is the child's own pid: {env:?}");
    assert_eq!(parts[6], "yes", "the spec's other variables still reach the child: {env:?}");
}

#[test]
fn passed_fds_swap_numbers_safely_and_each_instance_knows_its_number() {
    let mut h = Host::new(UnixSys::new());
    let dir = std::env::temp_dir().join(format!("procsup-pools-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fa = OwnedFd::from(std::fs::File::create(dir.join("a")).unwrap());
    let fb = OwnedFd::from(std::fs::File::create(dir.join("b")).unwrap());
    let (ra, rb) = (fa.as_raw_fd(), fb.as_raw_fd());
    // Each source goes to the other's number: placing one naively would
    // overwrite the other before it is placed.
    let spec = ProcessSpec::new("w", "python3")
        .args(["-c", REPORT])
        .restart(RestartPolicy::Never)
        .stdout(Output::Capture)
        .pass_fd(rb, fa)
        .pass_fd(ra, fb)
        .instances(2);
    h.add(spec);
    h.start_all();
    h.run_until(Duration::from_secs(20), |h| h.count("exited") == 2);
    let fds = report(&h, "fd ");
    assert_eq!(fds.len(), 10, "0-2 and the two passed fds, in each of two children: {fds:?}");
    let a = dir.join("a").display().to_string();
    let b = dir.join("b").display().to_string();
    assert_eq!(fds.iter().filter(|l| **l == format!("fd {rb} {a}")).count(), 2, "{fds:?}");
    assert_eq!(fds.iter().filter(|l| **l == format!("fd {ra} {b}")).count(), 2, "{fds:?}");
    let mut instances: Vec<String> =
        report(&h, "env ").iter().map(|l| l.split(' ').nth(5).unwrap().to_owned()).collect();
    instances.sort();
    assert_eq!(instances, ["0", "1"]);
    let env = report(&h, "env ");
    assert!(env.iter().all(|l| l.starts_with("env None None None")), "no LISTEN_* without listen fds: {env:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn worker(marker: &str) -> ProcessSpec {
    ProcessSpec::new("web", "python3")
        .args([worker_script(), marker.to_owned()])
        .start_grace(Duration::from_millis(500))
        .stop_timeout(Duration::from_secs(5))
}

fn pids_of(h: &Host, kind: &str) -> Vec<i32> {
    h.log
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Spawned { pid, .. } if kind == "spawned" => Some(pid.as_raw()),
            Event::Retired { pid, .. } if kind == "retired" => Some(pid.as_raw()),
            _ => None,
        })
        .collect()
}

#[test]
fn update_spec_rolls_out_behind_a_shared_socket_and_a_failing_one_is_reverted() {
    let mut h = Host::new(UnixSys::new());
    let port = free_port();
    let listener = Arc::new(OwnedFd::from(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap()));
    h.add(worker("v1").listen_fds([("http", listener.clone())]).instances(4));
    h.start_all();
    h.run_until(Duration::from_secs(20), |h| h.count("running") == 4);
    let old: HashSet<i32> = pids_of(&h, "spawned").into_iter().collect();

    // Roll out v2 with requests in flight.
    let load = Load::start(port, 20_000, Duration::from_secs(60));
    h.sup.update_spec("web", worker("v2").listen_fds([("http", listener.clone())]), Instant::now()).unwrap();
    h.run_until(Duration::from_secs(30), |h| h.count("roll_done") == 1 && h.count("retired") == 4);
    let answers = load.finish();
    let failed: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} of {} requests failed: {failed:?}", failed.len(), answers.len());
    assert!(answers.len() > 10, "the client loop ran: {}", answers.len());
    assert_eq!(pids_of(&h, "retired").into_iter().collect::<HashSet<_>>(), old, "every old worker was replaced");
    let new: HashSet<i32> = pids_of(&h, "spawned").into_iter().filter(|p| !old.contains(p)).collect();
    for _ in 0..30 {
        let a = get(port).unwrap();
        assert_eq!(a.marker, "v2", "after the roll-out the new spec answers: {a:?}");
        assert!(new.contains(&a.pid));
    }
    for i in 0..4 {
        assert_eq!(h.sup.status(&format!("web:{i}")).unwrap().spec_version, 1);
    }

    // A spec that cannot start: aborted, reverted, the v2 workers serve on.
    let load = Load::start(port, 20_000, Duration::from_secs(60));
    h.sup.update_spec("web", worker("fail").listen_fds([("http", listener.clone())]), Instant::now()).unwrap();
    h.run_until(Duration::from_secs(20), |h| h.count("spec_reverted") == 1);
    let answers = load.finish();
    assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|a| a.marker == "v2" && new.contains(&a.pid))), "{answers:?}");
    let reason = h.log.iter().find_map(|(_, e)| match e {
        Event::SpecReverted { version, reason, .. } => Some((*version, reason.clone())),
        _ => None,
    });
    let (version, reason) = reason.unwrap();
    assert_eq!(version, 1);
    assert!(reason.contains("exited before its start grace"), "{reason}");
    assert_eq!(h.count("roll_aborted"), 1);
    for i in 0..4 {
        let name = format!("web:{i}");
        let args: Vec<String> =
            h.sup.spec(&name).unwrap().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args.last().unwrap(), "v2", "{name}'s spec is reverted");
        assert_eq!(h.sup.status(&name).unwrap().spec_version, 1);
    }
    for _ in 0..10 {
        assert_eq!(get(port).unwrap().marker, "v2");
    }
}
