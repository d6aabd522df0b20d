//! Containment with real processes: nothing a supervised process started
//! outlives it. Each scenario runs on both paths — a cgroup v2 per child
//! and the process group (forced with `without_cgroups`) — and says which
//! it ran. Every assertion is on the pids the test observed, never on a
//! global count; every cgroup the test made is checked removed.
// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;
mod real;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use bin::Cli;
use procsup::{Backoff, Containment, ProcessSpec, RestartPolicy, State, UnixSys};
use real::{wait_for, Host};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const STOP_TIMEOUT: Duration = Duration::from_millis(400);
/// The issue's bound: the tree is gone within the stop timeout plus this.
const SLACK: Duration = Duration::from_millis(100);

type MakeSys = fn() -> UnixSys;

fn group_only() -> UnixSys {
    UnixSys::new().without_cgroups()
}

fn cgroup_waitpid() -> UnixSys {
    UnixSys::without_pidfd()
}

fn group_waitpid() -> UnixSys {
    UnixSys::without_pidfd().without_cgroups()
}

/// Both containments, each with pidfds and on the waitpid fallback (where
/// a draining group is looked at on every poll).
fn paths() -> [(Containment, MakeSys); 4] {
    [
        (Containment::Cgroup, UnixSys::new),
        (Containment::ProcessGroup, group_only),
        (Containment::Cgroup, cgroup_waitpid),
        (Containment::ProcessGroup, group_waitpid),
    ]
}

/// A process seen by the test: its pid and start time, so that a recycled
/// pid is never taken for it.
#[derive(Clone, Copy, Debug)]
struct Seen {
    pid: i32,
    start: u64,
}

fn stat_fields(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let mut f = after.split_whitespace();
    let state = f.next()?.chars().next()?;
    let start = f.nth(22 - 4)?.parse().ok()?;
    Some((state, start))
}

impl Seen {
    fn new(pid: i32) -> Seen {
        let (_, start) = stat_fields(pid).unwrap_or_else(|| panic!("pid {pid} is not running"));
        Seen { pid, start }
    }

    /// Alive and not a zombie (PID 1 here does not reap: a zombie is gone).
    fn alive(self) -> bool {
        matches!(stat_fields(self.pid), Some((s, t)) if t == self.start && s != 'Z' && s != 'X')
    }
}

/// Kills, at the end, whatever the test saw and is still the same process,
/// also when an assertion fails: a test cleans up every process it made.
struct Reaper(Vec<Seen>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for s in &self.0 {
            if s.alive() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// Reads the pids a script wrote to `file`, one a line, once there are `n`.
/// A line may carry the start time too (`pid start`), written while the
/// process surely ran: then it is not read from /proc, where a process
/// that died since may be gone already (an init that reaps) or its pid
/// taken by another.
fn read_pids(file: &Path, n: usize) -> Vec<Seen> {
    let mut pids = Vec::new();
    let ok = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        pids = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let pid = f.next()?.parse::<i32>().ok()?;
                Some((pid, f.next().and_then(|t| t.parse::<u64>().ok())))
            })
            .collect();
        pids.len() >= n && text.ends_with('\n')
    });
    assert!(ok, "{} never held {n} pids", file.display());
    pids.into_iter().map(|(pid, start)| start.map_or_else(|| Seen::new(pid), |start| Seen { pid, start })).collect()
}

/// Runs the host loop until every process in `tree` is gone, and returns
/// how long after `from` that was; panics past `limit`.
fn run_until_gone(h: &mut Host, tree: &[Seen], from: Instant, limit: Duration) -> Duration {
    let end = from + limit;
    while tree.iter().any(|s| s.alive()) {
        assert!(
            Instant::now() < end,
            "alive {limit:?} after: {:?}",
            tree.iter().filter(|s| s.alive()).collect::<Vec<_>>()
        );
        h.turn(ms(5));
    }
    from.elapsed()
}

/// The containment actually in use, checked against the one asked for.
/// Where no writable cgroup2 exists (not root), the cgroup run is a
/// process-group run, and says so.
fn ran(h: &Host, name: &str, wanted: Containment) -> Containment {
    let got = h.sup.status(name).unwrap().containment.expect("spawned");
    if wanted == Containment::Cgroup && got != Containment::Cgroup {
        // A fallback is only acceptable where no cgroup could be made at all:
        // where one can (root, cgroup2 mounted), the cgroup run must use it.
        assert!(test_cgroup_parent("probe").is_none(), "a cgroup v2 is writable here, but the run fell back to {got}");
        eprintln!("no writable cgroup v2 here: the cgroup run fell back to {got}");
        assert_eq!(got, Containment::ProcessGroup);
    } else {
        assert_eq!(got, wanted);
    }
    eprintln!("ran on the {got} path");
    got
}

/// Drops the host (its `UnixSys`) and checks that the cgroups it made are
/// gone.
fn finish(h: Host) {
    let dir: Option<PathBuf> = h.sup.sys().cgroup_dir().map(Path::to_owned);
    drop(h);
    if let Some(dir) = dir {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

fn spec(name: &str, script: &str) -> ProcessSpec {
    ProcessSpec::new(name, "sh").args(["-c", script]).stop_timeout(STOP_TIMEOUT).start_grace(ms(50))
}

#[test]
fn a_term_ignoring_grandchild_dies_with_the_stop() {
    for (wanted, make) in paths() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("pids");
        // The grandchild writes its pid once TERM is ignored (so no stop can
        // come before), then execs sleep, which keeps the ignored TERM.
        let script =
            format!("sh -c 'trap \"\" TERM; echo $$ >> {f}; exec sleep 1000' & echo $$ >> {f}; wait", f = f.display());
        let mut h = Host::new(make());
        h.add(spec("t", &script));
        h.start_all();
        let tree = read_pids(&f, 2);
        let _reaper = Reaper(tree.clone());
        let path = ran(&h, "t", wanted);
        let stop = Instant::now();
        h.sup.stop_process("t", stop).unwrap();
        let took = run_until_gone(&mut h, &tree, stop, STOP_TIMEOUT + SLACK);
        eprintln!("{path}: tree gone {took:?} after the stop");
        assert!(took >= STOP_TIMEOUT, "{path}: the grandchild ignores TERM, only SIGKILL at the deadline ends it");
        h.run_until(Duration::from_secs(5), |h| h.sup.status("t").unwrap().state == State::Stopped);
        assert!(h.count("killed") == 1, "{path}: {:?}", h.kinds());
        if path == Containment::ProcessGroup {
            // The leader died on TERM; its group drained to the deadline.
            assert_eq!(h.count("draining"), 1, "{path}: {:?}", h.kinds());
        }
        finish(h);
    }
}

#[test]
fn a_child_that_exits_leaves_nothing_running_per_restart() {
    for (wanted, make) in paths() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("pids");
        // With its start time: the earlier runs' sleeps are dead when the
        // test reads them, and an init that reaps leaves no trace of them.
        let script = format!("sleep 30 & echo $! $(cut -d ' ' -f 22 /proc/$!/stat) >> {}; exit 1", f.display());
        let mut h = Host::new(make());
        h.add(spec("leaky", &script).backoff(Backoff::fixed(ms(20))));
        h.start_all();
        let path = ran(&h, "leaky", wanted);
        h.run_until(Duration::from_secs(10), |h| h.count("spawned") >= 4);
        let sleeps = read_pids(&f, 3);
        let _reaper = Reaper(sleeps.clone());
        // Each restart waited for the previous tree: all but the newest
        // sleep are gone already.
        for s in &sleeps[..sleeps.len() - 1] {
            assert!(!s.alive(), "{path}: sleep {} of an earlier run still alive", s.pid);
        }
        assert!(h.count("drained") >= 3, "{path}: {:?}", h.kinds());
        let stop = Instant::now();
        h.sup.stop_process("leaky", stop).unwrap();
        let all = read_pids(&f, sleeps.len());
        run_until_gone(&mut h, &all, stop, STOP_TIMEOUT + SLACK);
        finish(h);
    }
}

#[test]
fn a_setsid_grandchild_is_caught_by_the_cgroup_and_escapes_the_group() {
    for (wanted, make) in paths() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("pids");
        let script = format!("setsid sh -c 'echo $$ > {}; exec sleep 1000' & wait", f.display());
        let mut h = Host::new(make());
        h.add(spec("s", &script));
        h.start_all();
        let tree = read_pids(&f, 1);
        let _reaper = Reaper(tree.clone());
        let path = ran(&h, "s", wanted);
        let stop = Instant::now();
        h.sup.stop_process("s", stop).unwrap();
        if path == Containment::Cgroup {
            run_until_gone(&mut h, &tree, stop, STOP_TIMEOUT + SLACK);
            h.run_until(Duration::from_secs(5), |h| h.sup.status("s").unwrap().state == State::Stopped);
        } else {
            // Documented limit (RELIABILITY.md): a new session is a new
            // process group, out of the group's reach. The Reaper ends it.
            h.run_until(Duration::from_secs(5), |h| h.sup.status("s").unwrap().state == State::Stopped);
            std::thread::sleep(STOP_TIMEOUT + SLACK);
            assert!(tree[0].alive(), "{path}: the setsid grandchild was expected to escape the process group");
            eprintln!("{path}: the setsid grandchild escaped, as documented");
        }
        finish(h);
    }
}

#[test]
fn a_double_forked_daemon_is_stopped_when_its_launcher_exits() {
    for (wanted, make) in paths() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("pids");
        // The launcher forks a child that forks the daemon and exits at
        // once; the daemon is reparented away from the tree's leader.
        let script = format!("( sh -c 'echo $$ > {}; exec sleep 1000' & ) ; sleep 0.2; exit 0", f.display());
        let mut h = Host::new(make());
        h.add(spec("d", &script).restart(RestartPolicy::Never));
        h.start_all();
        let tree = read_pids(&f, 1);
        let _reaper = Reaper(tree.clone());
        let path = ran(&h, "d", wanted);
        h.run_until(Duration::from_secs(5), |h| h.count("exited") == 1);
        let exited_at = h.log.iter().find(|(_, e)| e.kind() == "exited").map(|(t, _)| *t).unwrap();
        assert_eq!(h.sup.status("d").unwrap().state, State::Stopping, "{path}: not Exited while the daemon lives");
        run_until_gone(&mut h, &tree, exited_at, STOP_TIMEOUT + SLACK);
        h.run_until(Duration::from_secs(5), |h| h.sup.status("d").unwrap().state == State::Exited);
        finish(h);
    }
}

#[test]
fn dropping_the_sys_kills_the_tree_and_removes_its_cgroups() {
    for (wanted, make) in paths() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("pids");
        let script = format!("sh -c 'trap \"\" TERM; echo $$ > {}; exec sleep 1000' & wait", f.display());
        let mut h = Host::new(make());
        h.add(spec("t", &script).die_with_parent(None));
        h.start_all();
        let tree = read_pids(&f, 1);
        let _reaper = Reaper(tree.clone());
        let path = ran(&h, "t", wanted);
        finish(h); // Host's drop shuts down, then the UnixSys is dropped
        assert!(wait_for(ms(500), || !tree[0].alive()), "{path}: the grandchild outlived the supervisor");
    }
}

/// Whether `pid` leads its own session (it called `setsid`).
fn leads_a_session(pid: i32) -> bool {
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::unistd::getsid(Some(pid)).ok() == Some(pid)
}

/// One field of a record file.
fn record_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')).map(str::to_owned))
}

#[test]
fn a_crashed_hosts_whole_tree_is_stopped_by_the_next_host() {
    for (path, extra) in [(Containment::Cgroup, None), (Containment::ProcessGroup, Some("--no-cgroups"))] {
        let _serial = real::serial();
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let script = tmp.path().join("tree.sh");
        // Two grandchildren: one ignores TERM, one is a daemon in a new
        // session. The leader dies with the host (parent-death signal; a
        // zombie then, as PID 1 here does not reap); the grandchildren
        // live on.
        std::fs::write(
            &script,
            "#!/bin/sh\n\
             sh -c 'trap \"\" TERM; echo $$ >> pids; exec sleep 1000' &\n\
             setsid sh -c 'echo $$ >> pids; exec sleep 1000' &\n\
             wait\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut args = vec!["--state-dir", state.to_str().unwrap(), "--stop-timeout", "0.3", "-p", "t=./tree.sh"];
        args.extend(extra);
        let mut first = Cli::start_in("supervise", tmp.path(), &args);
        let leader = Seen::new(first.pids_of("event=spawned", 1)[0]);
        let old = read_pids(&tmp.path().join("pids"), 2);
        let mut reaper = Reaper(old.clone());
        let setsid = old.iter().copied().find(|s| leads_a_session(s.pid)).expect("the setsid grandchild");
        let record = std::fs::read_to_string(state.join(format!("t.{}", leader.pid))).unwrap();
        let old_cgroup = record_field(&record, "cgroup").map(PathBuf::from);
        assert!(record_field(&record, "boot_id").is_some(), "{record}");
        assert_eq!(old_cgroup.is_some(), path == Containment::Cgroup, "{record}");
        first.sigkill();
        assert!(wait_for(Duration::from_secs(2), || !leader.alive()), "the leader dies with its host");
        assert!(old.iter().all(|s| s.alive()), "the grandchildren outlive the crash");

        // Bystanders that records name, each with another start time:
        // (a) a live process whose pid and pgid a record names;
        let mut a = std::process::Command::new("sleep").arg("1000").process_group(0).spawn().unwrap();
        let a_seen = Seen::new(a.id() as i32);
        // (b) the member of a group whose leader is gone, recorded with a
        //     leader that started after it (so it cannot be of that tree).
        let out = std::process::Command::new("sh")
            .args(["-c", "sleep 1000 >/dev/null 2>&1 & echo $!"])
            .process_group(0)
            .output()
            .unwrap();
        let b_pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let b_seen = Seen::new(b_pid);
        let b_group = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(b_pid))).unwrap().as_raw();
        reaper.0.extend([a_seen, b_seen]);
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        let sid = nix::unistd::getsid(None).unwrap().as_raw();
        let rec = |pid: i32, pgid: i32, start: u64| {
            format!(
                "procsup-record 1\npid {pid}\npgid {pgid}\nsid {sid}\nstart_time {start}\nboot_id {}\n",
                boot.trim()
            )
        };
        std::fs::write(state.join(format!("recycled.{}", a_seen.pid)), rec(a_seen.pid, a_seen.pid, a_seen.start + 1))
            .unwrap();
        std::fs::write(state.join(format!("stale-group.{b_group}")), rec(b_group, b_group, b_seen.start + 100))
            .unwrap();

        let mut second = Cli::start_in("supervise", tmp.path(), &args);
        second.expect("event=orphan_stopping name=t");
        let _cgroups = real::CgroupGuard::of(&second.pids_of("event=spawned", 1));
        // The next host has started its own `t`: the old tree is gone.
        for s in &old {
            if path == Containment::ProcessGroup && s.pid == setsid.pid {
                // Documented (RELIABILITY.md): a new session leaves the
                // group, so the group path cannot find it after a crash.
                assert!(s.alive(), "{path}: expected the setsid daemon to escape the process group");
            } else {
                assert!(!s.alive(), "{path}: pid {} of the crashed tree is alive", s.pid);
            }
        }
        assert!(a_seen.alive() && b_seen.alive(), "{path}: a bystander was signalled");
        if let Some(dir) = &old_cgroup {
            assert!(!dir.exists(), "{path}: the crashed run's cgroup {} is left", dir.display());
            assert!(!dir.parent().unwrap().exists(), "{path}: its per-host directory is left");
        }
        second.signal(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(second.wait(), 0);
        let _ = a.kill();
        let _ = a.wait();
        // The second host's own tree went with its graceful stop (but for
        // the setsid daemon on the group path, as documented).
        let text = std::fs::read_to_string(tmp.path().join("pids")).unwrap();
        let new: Vec<i32> = text.lines().skip(2).filter_map(|l| l.trim().parse().ok()).collect();
        let escaped: Vec<i32> = new.iter().copied().filter(|&p| real::alive(p)).collect();
        for &p in &escaped {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
        }
        match path {
            Containment::Cgroup => assert!(escaped.is_empty(), "{path}: {escaped:?} outlived the graceful stop"),
            _ => assert!(escaped.len() <= 1, "{path}: {escaped:?} outlived the graceful stop"),
        }
        eprintln!("ran on the {path} path");
    }
}

/// The crash of a host whose session is outside its pid namespace, as for
/// one `docker exec` or `nsenter` started: there `getsid` and `/proc` say
/// session 0 for the host, while its child leads a session of its own. Run by `sh` as the namespace's init (its
/// pids are the namespace's own); it prints the grandchild's session, then
/// whether the crashed tree went within a bounded wait, and the second
/// host's events.
const CRASH_IN_A_PID_NAMESPACE: &str = r#"
alive() { [ -r /proc/$1/stat ] && ! sed 's/.*) //' /proc/$1/stat | grep -q '^[ZX]'; }
within() { n=0; until eval "$2"; do n=$((n+1)); [ $n -le $1 ] || return 1; sleep 0.01; done; }
args="--state-dir state --stop-timeout 0.3 --no-cgroups -p t=./tree.sh"
"$SUP" $args > first.out &
host=$!
within 1000 '[ -s pids ] && grep -q "^event=spawned name=t" first.out' || { echo "no tree"; exit 1; }
g=$(head -n 1 pids)
leader=$(sed -n 's/^event=spawned name=t pid=\([0-9]*\).*/\1/p' first.out)
kill -9 $host
within 1000 '! alive $leader' || { echo "the leader outlived its host"; exit 1; }
alive $g || { echo "the grandchild died with the host"; exit 1; }
echo "session=$(sed 's/.*) //' /proc/$g/stat | cut -d ' ' -f 4) leader=$leader"
"$SUP" $args &
if within 500 '! alive $g'; then echo tree_gone; else echo tree_alive; fi
wait
"#;

/// Whether this machine lets us make a pid namespace with its own `/proc`
/// (root, util-linux `unshare`).
fn pid_namespaces_work() -> bool {
    std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_crashed_tree_is_found_where_its_session_is_outside_the_pid_namespace() {
    let _serial = real::serial();
    if !pid_namespaces_work() {
        eprintln!("no pid namespace can be made here (not root, or no unshare): nothing to run");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("tree.sh");
    std::fs::write(&script, "#!/bin/sh\nsh -c 'trap \"\" TERM; echo $$ >> pids; exec sleep 1000' &\nwait\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // SIGKILL to `unshare` (Cli's drop) kills the namespace's init
    // (--kill-child), and with it every process in the namespace.
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", CRASH_IN_A_PID_NAMESPACE])
        .env("SUP", bin::supervise_bin())
        .current_dir(tmp.path());
    let mut ns = Cli::start_command(cmd);
    // The host's session is outside the namespace (it would read 0 there),
    // but each child leads a session of its own (`setsid`, so that no
    // sibling can join its group), which the namespace sees.
    let line = ns.expect("session=");
    let session = bin::field(&line, "session").unwrap();
    assert_eq!(Some(session), bin::field(&line, "leader"), "the tree's session is its leader's: {line}");
    ns.expect_count("tree_", 1);
    ns.expect_count("event=spawned name=t", 1);
    let has = |needle: &str| ns.seen.iter().any(|l| l.contains(needle));
    assert!(has("event=orphan_stopping name=t") && has("event=orphan_gone name=t"), "{:#?}", ns.seen);
    assert!(has("tree_gone"), "the crashed tree's grandchild outlived the next host's start: {:#?}", ns.seen);
    assert!(!has("event=orphan_discarded name=t"), "{:#?}", ns.seen);
}

#[test]
fn children_get_their_cgroups_under_the_directory_the_host_names() {
    let Some((mount, parent, _rmdir)) = test_cgroup_parent("parent") else { return };
    assert!(UnixSys::new().cgroup_parent(mount.join("no-such-dir")).is_err(), "not a cgroup2 directory");
    let mut h = Host::new(UnixSys::new().cgroup_parent(&parent).unwrap());
    h.add(spec("named", "exec sleep 1000"));
    h.start_all();
    let pid = h.sup.status("named").unwrap().pid.unwrap();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let place = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap().to_owned();
    let dir = h.sup.sys().cgroup_dir().expect("a cgroup per child").to_owned();
    assert!(dir.starts_with(&parent), "{} is not under {}", dir.display(), parent.display());
    assert!(mount.join(place.trim_start_matches('/')).starts_with(&dir), "the child is in {place}");
    assert_eq!(ran(&h, "named", Containment::Cgroup), Containment::Cgroup);
    finish(h);
    assert!(std::fs::read_dir(&parent).unwrap().flatten().all(|e| !e.path().is_dir()), "a cgroup left under it");
}

/// Removes a test's cgroup directory when the test ends.
struct Rmdir(PathBuf);

impl Drop for Rmdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A fresh cgroup directory for one test, with the cgroup2 mount, or `None`
/// (said on stderr) where no cgroup2 hierarchy is writable.
fn test_cgroup_parent(tag: &str) -> Option<(PathBuf, PathBuf, Rmdir)> {
    let Some(mount) = cgroup2_mount() else {
        eprintln!("no cgroup2 mount here: this test needs one");
        return None;
    };
    let parent = mount.join(format!("procsup-test-{tag}-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&parent) {
        eprintln!("cgroup2 at {} is not writable here ({e}): this test needs it", mount.display());
        return None;
    }
    Some((mount, parent.clone(), Rmdir(parent)))
}

fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (fields, tail) = l.split_once(" - ")?;
        (tail.split(' ').next()? == "cgroup2").then(|| fields.split(' ').nth(4).map(PathBuf::from))?
    })
}

#[test]
fn a_child_whose_cgroup_cannot_be_made_is_held_by_its_group() {
    let Some((_, parent, _rmdir)) = test_cgroup_parent("limit") else { return };
    // Room for the per-host directory, none for a child's cgroup in it.
    std::fs::write(parent.join("cgroup.max.descendants"), "1").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("pids");
    let script = format!("sh -c 'trap \"\" TERM; echo $$ >> {f}; exec sleep 1000' & wait", f = f.display());
    let mut h = Host::new(UnixSys::new().cgroup_parent(&parent).unwrap());
    h.add(spec("limited", &script));
    h.start_all();
    let tree = read_pids(&f, 1);
    let _reaper = Reaper(tree.clone());
    assert_eq!(ran(&h, "limited", Containment::ProcessGroup), Containment::ProcessGroup, "the spawn went on");
    let stop = Instant::now();
    h.sup.stop_process("limited", stop).unwrap();
    run_until_gone(&mut h, &tree, stop, STOP_TIMEOUT + SLACK);
    finish(h);
}

/// A child's cgroup wakes the host only once its leader is gone and its
/// tree is not. Its spawn (the child entering the cgroup, which the kernel
/// announces in `cgroup.events`) wakes nothing: the host's work never
/// shares the CPU with the new child's `execve`, and a restart is not
/// slowed by a second wake as the tree empties (#22). A tree that outlives
/// its leader is still seen to end (the drain tests above).
#[test]
fn a_child_entering_its_cgroup_wakes_nothing() {
    use procsup::Sys;
    let _serial = real::serial();
    let mut sys = UnixSys::new();
    let pid = sys.spawn(&ProcessSpec::new("quiet", "sleep").arg("60")).unwrap();
    if sys.containment(pid) != Containment::Cgroup {
        eprintln!("no writable cgroup v2 here: nothing to test");
        return; // dropping `sys` kills and reaps it
    }
    // The kernel announces the cgroup's change at once, or within 20 ms
    // when it announced one shortly before: 200 ms is ample.
    let woke = readiness_wakes(&sys, 200);
    let mut events = Vec::new();
    sys.poll(&mut events);
    assert_eq!(woke, 0, "the host was woken by the spawn; a poll then said {events:?}");
    kill_and_reap(&mut sys, pid);
    // Nothing of the reaped child is left in the epoll set.
    assert_eq!(readiness_wakes(&sys, 50), 0, "the reaped child still wakes the host");
}

/// SIGKILLs the child `pid` of `sys` and polls (waking on its readiness
/// fds) until its exit is reported, for 10 s at most.
fn kill_and_reap(sys: &mut UnixSys, pid: nix::unistd::Pid) {
    use procsup::{Sys, SysEvent};
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = Vec::new();
    while !events.iter().any(|e| matches!(e, SysEvent::Exited { pid: p, .. } if *p == pid)) {
        assert!(Instant::now() < deadline, "no exit of {pid} within 10 s");
        readiness_wakes(sys, 100);
        events.clear();
        sys.poll(&mut events);
    }
}

/// Whether `sys`'s readiness fds become ready within `ms` (poll's count).
fn readiness_wakes(sys: &UnixSys, ms: u8) -> i32 {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use procsup::Sys;
    let fds = sys.readiness_fds();
    let mut pfds: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
    poll(&mut pfds, PollTimeout::from(ms)).unwrap()
}

/// A reaped child's pidfd leaves the host's epoll set even while another
/// process holds copies of the host's fds (another thread's fork, until
/// its exec): epoll drops a file only when every fd of it is closed, so a
/// pidfd merely closed would keep the set ready, and the host would spin.
#[test]
fn a_reaped_childs_pidfd_wakes_nothing_while_a_fork_holds_the_hosts_fds() {
    use procsup::{Sys, SysEvent};
    use std::io::Read;
    let _serial = real::serial();
    let mut sys = UnixSys::new().without_cgroups();
    let pid = sys.spawn(&ProcessSpec::new("watched", "sleep").arg("60")).unwrap();
    let (mut forked, in_fork) = std::os::unix::net::UnixStream::pair().unwrap();
    let other = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let fd = in_fork.as_raw_fd();
        // SAFETY: the hook makes async-signal-safe calls only (write(2),
        // sleep(3)).
        let spec = unsafe {
            ProcessSpec::new("held", "true").restart(RestartPolicy::Never).pre_exec(move || {
                libc::write(fd, b"f".as_ptr().cast(), 1);
                libc::sleep(3);
                Ok(())
            })
        };
        // Its own host: its fork copies every fd of this process, the other
        // host's pidfd included, and holds them until its exec.
        let mut host = UnixSys::new().without_cgroups();
        let held = host.spawn(&spec).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut events = Vec::new();
        while !events.iter().any(|e| matches!(e, SysEvent::Exited { pid: p, .. } if *p == held)) {
            assert!(Instant::now() < deadline, "no exit of {held} within 10 s");
            std::thread::sleep(Duration::from_millis(10));
            events.clear();
            host.poll(&mut events);
        }
    });
    let mut byte = [0u8; 1];
    forked.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    forked.read_exact(&mut byte).expect("the other thread's fork within 10 s");
    // Now a fork holds a copy of the pidfd: the child ends and is reaped.
    kill_and_reap(&mut sys, pid);
    assert_eq!(readiness_wakes(&sys, 100), 0, "the reaped child's pidfd still makes the host's epoll set ready");
    other.join().unwrap();
}

/// A tree that outlives its leader, in a cgroup whose `cgroup.events`
/// cannot be watched (the epoll add fails, as at `max_user_watches`), is
/// still seen to end: looked at on every poll, with `wake_after` saying
/// when.
#[test]
fn a_drain_whose_cgroup_cannot_be_watched_is_still_seen_to_end() {
    use procsup::{Sys, SysEvent};
    let _serial = real::serial();
    let mut sys = UnixSys::new().fail_cgroup_watch(libc::ENOSPC);
    let pid = sys.spawn(&ProcessSpec::new("drains", "sh").args(["-c", "sleep 0.3 & exit 0"])).unwrap();
    if sys.containment(pid) != Containment::Cgroup {
        eprintln!("no writable cgroup v2 here: nothing to test");
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        return; // dropping `sys` kills and reaps what is left
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while !seen.iter().any(|e| matches!(e, SysEvent::TreeEmpty { pid: p } if *p == pid)) {
        assert!(Instant::now() < deadline, "no end of the tree within 10 s: {seen:?}");
        if seen.iter().any(|e| matches!(e, SysEvent::LeaderExited { .. })) {
            assert_eq!(sys.wake_after(), Some(Duration::from_millis(50)), "nothing would wake the host");
        }
        std::thread::sleep(Duration::from_millis(20));
        sys.poll(&mut seen);
    }
    assert!(seen.iter().any(|e| matches!(e, SysEvent::LeaderExited { pid: p, .. } if *p == pid)), "{seen:?}");
    assert_eq!(sys.wake_after(), None);
}
