//! `supervise`'s successors held ready (the default; `--no-standby`): the
//! restart is the parked successor, and a host killed at any moment takes
//! its parked successor with it, with die-with-parent or without.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;
mod real;

use std::time::{Duration, Instant};

use bin::{field, Cli};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Gone, or a zombie nobody reaped yet (killed all the same).
fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|c| c.trim().to_owned())
}

/// The parked successor among `host`'s children (bounded wait).
fn successor_of(host: i32) -> i32 {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{host}/task")).unwrap();
        let children: Vec<i32> = tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
            .collect();
        if let Some(&pid) = children.iter().find(|&&p| comm(p).as_deref() == Some("procsup-standby")) {
            return pid;
        }
        assert!(Instant::now() < end, "no successor held ready among {children:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_restart_is_the_parked_successor_and_no_standby_turns_it_off() {
    let mut cli = Cli::start(&["--start-grace", "0.01", "--backoff", "fixed:0", "-p", "a=sleep 60"]);
    let host = cli.child.id() as i32;
    let first: i32 = field(&cli.expect("event=running"), "pid").unwrap().parse().unwrap();
    let successor = successor_of(host);
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let next: i32 = field(&cli.expect("event=spawned"), "pid").unwrap().parse().unwrap();
    assert_eq!(next, successor, "{:#?}", cli.seen);
    wait_until("its exec", || comm(next).as_deref() == Some("sleep"));
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0, "{:#?}", cli.seen);
    let after = successor_of_none(host);
    assert!(after, "a successor outlived its host's stop");

    let mut cli = Cli::start(&["--no-standby", "--start-grace", "0.01", "-p", "a=sleep 60"]);
    let host = cli.child.id() as i32;
    cli.expect("event=running");
    // Past the moment a successor would be made (1 ms after a quiet poll).
    std::thread::sleep(Duration::from_millis(100));
    let tasks = std::fs::read_to_string(format!("/proc/{host}/task/{host}/children")).unwrap();
    assert_eq!(tasks.split_whitespace().count(), 1, "--no-standby made one: {tasks}");
    cli.signal(Signal::SIGTERM);
    assert_eq!(cli.wait(), 0, "{:#?}", cli.seen);
}

/// After its host is gone, no process of that host's is left parked.
fn successor_of_none(host: i32) -> bool {
    dead(host)
        && std::fs::read_dir("/proc").unwrap().flatten().all(|e| {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { return true };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // (ppid is the second field after the name)
            let ppid = stat.rsplit_once(") ").and_then(|(_, r)| r.split(' ').nth(1)).and_then(|p| p.parse().ok());
            ppid != Some(host) || dead(pid)
        })
}

#[test]
fn a_host_killed_takes_its_parked_successor_with_it() {
    for flags in [&[][..], &["--no-die-with-parent", "--no-cgroups"][..]] {
        let mut args = vec!["--start-grace", "0.01", "-p", "a=sleep 60"];
        args.extend(flags);
        let mut cli = Cli::start(&args);
        let host = cli.child.id() as i32;
        let child: i32 = field(&cli.expect("event=running"), "pid").unwrap().parse().unwrap();
        let successor = successor_of(host);
        let _cgroups = real::CgroupGuard::of(&[child, successor]);
        cli.sigkill();
        // Its end of the socket closed with the host: end of file, exit.
        wait_until(&format!("successor {successor} to end ({flags:?})"), || dead(successor));
        if flags.is_empty() {
            wait_until("the child's parent-death signal", || dead(child));
        } else if !dead(child) {
            // Let outlive its host on purpose: ours to end.
            kill(Pid::from_raw(child), Signal::SIGKILL).unwrap();
            wait_until("the child we killed", || dead(child));
        }
    }
}

/// The host's open fds.
fn fd_count(host: i32) -> usize {
    std::fs::read_dir(format!("/proc/{host}/fd")).map_or(0, |d| d.count())
}

/// The host's children that are parked successors.
fn parked_count(host: i32) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{host}/task")).unwrap();
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse::<i32>().ok()).collect::<Vec<_>>())
        .filter(|&p| comm(p).as_deref() == Some("procsup-standby"))
        .count()
}

/// Each parked successor holds about three of the host's fds (its pidfd,
/// the host's end of its socket, its cgroup's `cgroup.events`; more with
/// capture or readiness), made as soon as a poll is quiet, whatever the
/// room left under `RLIMIT_NOFILE`. A host that runs fine without standby
/// must not fail its restarts with `EMFILE` because of them: a successor is
/// an optimisation, a restart is the job. (Review finding: with 20
/// processes under a 70-fd limit, the successors take the room and the
/// restarts fail, over and over; `--no-standby` restarts all 20.)
#[test]
fn successors_never_take_the_fds_a_restart_needs() {
    const LIMIT: usize = 70;
    for standby in [false, true] {
        let bin = bin::supervise_bin();
        let mut args: Vec<String> = vec![
            "-c".into(),
            format!("ulimit -n {LIMIT} && exec \"$0\" \"$@\""),
            bin.to_string_lossy().into_owned(),
            "--start-grace".into(),
            "0.01".into(),
            "--backoff".into(),
            "fixed:0.2".into(),
            "--instances".into(),
            "20".into(),
            "-p".into(),
            "a=sleep 60".into(),
        ];
        if !standby {
            args.push("--no-standby".into());
        }
        let mut cmd = std::process::Command::new("sh");
        cmd.args(&args);
        let mut cli = Cli::start_command(cmd);
        let host = cli.child.id() as i32;
        cli.expect_count("event=running", 20);
        if standby {
            // Successors are made one a quiet poll, none in the last
            // quarter of the fd limit: wait until no more come.
            let mut last = (usize::MAX, Instant::now());
            wait_until("the successors to stop coming", || {
                let now = parked_count(host);
                if now != last.0 {
                    last = (now, Instant::now());
                }
                now == 20 || last.1.elapsed() > Duration::from_millis(300)
            });
            assert!(parked_count(host) > 0, "no successor at all under {LIMIT} fds");
            assert!(fd_count(host) < LIMIT, "{} fds held of {LIMIT}: no room left", fd_count(host));
        }
        // One crash at a time, as they come in life: each restart waited for.
        let children: Vec<i32> = cli.pids_of("event=spawned", 20);
        let spawned = |cli: &Cli| cli.seen.iter().filter(|l| l.contains("event=spawned")).count();
        let failed = |cli: &Cli| cli.seen.iter().filter(|l| l.contains("event=spawn_failed")).count();
        for (i, &pid) in children.iter().enumerate() {
            kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
            while spawned(&cli) < 21 + i && failed(&cli) == 0 {
                cli.expect("event=");
            }
            if failed(&cli) > 0 {
                break;
            }
        }
        let (restarts, failures) = (spawned(&cli) - 20, failed(&cli));
        let first_failure = cli.seen.iter().find(|l| l.contains("event=spawn_failed")).cloned();
        cli.signal(Signal::SIGTERM);
        assert_eq!(cli.wait(), 0, "{:#?}", cli.seen);
        assert!(
            failures == 0 && restarts == 20,
            "standby {standby}: {restarts} of 20 restarted, {failures} spawn failures under RLIMIT_NOFILE {LIMIT}: \
             {first_failure:?}"
        );
    }
}
