//! Resource limits with real processes. Cgroup limits: refused on the
//! process-group path; on the cgroup path either enforced (a memory hog
//! OOM-killed and reported, a fork storm capped) or, where the hierarchy
//! lacks the controller (a hybrid system whose memory and pids
//! controllers are bound to v1), refused with that reason — each test
//! checks which one the hierarchy calls for and says which it ran.
// A host, not the library: it owns real time and may read clocks.
#![allow(clippy::disallowed_methods)]

mod real;

use std::path::Path;
use std::time::Duration;

use procsup::{Backoff, Cause, Error, Event, ProcessSpec, RestartPolicy, Supervisor, UnixSys};
use real::Host;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_cgroup_limit_on_the_group_path_is_refused_at_add() {
    let _serial = real::serial();
    let mut sup = Supervisor::with_sys(UnixSys::new().without_cgroups());
    let err = sup.add_process(ProcessSpec::new("hog", "true").memory_max(16 << 20)).unwrap_err();
    match &err {
        Error::LimitUnsupported { limit, reason, .. } => {
            assert_eq!(*limit, "memory_max");
            assert!(reason.contains("process-group"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(sup.status("hog").is_err());
    // Rlimits need no cgroup.
    sup.add_process(ProcessSpec::new("r", "true").rlimit(procsup::Rlimit::Core, 0, 0)).unwrap();
}

/// Whether the directory above the supervisor's own offers `controller`.
fn offered(sys: &UnixSys, controller: &str) -> bool {
    let dir = sys.cgroup_dir().expect("a cgroup directory was made");
    let text = std::fs::read_to_string(dir.parent().unwrap().join("cgroup.controllers")).unwrap();
    text.split_whitespace().any(|c| c == controller)
}

/// Adds `spec` on the cgroup path. `None` when the hierarchy lacks
/// `controller` and the spec was refused for that (checked).
fn add_on_cgroup_path(controller: &str, limit: &str, spec: ProcessSpec) -> Option<Host> {
    let mut host = Host::new(UnixSys::new());
    let added = host.sup.add_process(spec);
    if host.sup.sys().cgroup_dir().is_none() {
        assert!(matches!(added, Err(Error::LimitUnsupported { .. })), "no cgroup, yet {added:?}");
        eprintln!("no writable cgroup v2 here: {limit} refused, not enforced");
        return None;
    }
    if offered(host.sup.sys(), controller) {
        added.unwrap_or_else(|e| panic!("{controller} is offered, yet {e}"));
        return Some(host);
    }
    match added {
        Err(Error::LimitUnsupported { limit: l, reason, .. }) => {
            assert_eq!(l, limit);
            assert!(reason.contains(&format!("no {controller} controller")), "{reason}");
            eprintln!("the hierarchy offers no {controller} controller: {limit} refused ({reason})");
        }
        other => panic!("{controller} is not offered, yet {other:?}"),
    }
    None
}

fn cgroup_of(pid: i32) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let place = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap().trim_start_matches('/').to_owned();
    Path::new("/sys/fs/cgroup/unified").join(place)
}

#[test]
fn a_memory_hog_is_oom_killed_and_reported() {
    // `tail` keeps the one endless line in memory: it grows until killed.
    let spec = ProcessSpec::new("hog", "sh")
        .args(["-c", "head -c 1000000000 /dev/zero | tail"])
        .memory_max(16 << 20)
        .restart(RestartPolicy::Never)
        .backoff(Backoff::fixed(ms(100)));
    let Some(mut host) = add_on_cgroup_path("memory", "memory_max", spec) else { return };
    host.start_all();
    let pid = host.sup.status("hog").unwrap().pid.unwrap().as_raw();
    let max = std::fs::read_to_string(cgroup_of(pid).join("memory.max")).unwrap();
    assert_eq!(max.trim(), (16u64 << 20).to_string());
    host.run_until(Duration::from_secs(20), |h| h.count("exited") > 0);
    let cause = host.events("exited").iter().find_map(|e| match e {
        Event::Exited { cause, .. } => Some(*cause),
        _ => None,
    });
    assert_eq!(cause, Some(Some(Cause::OomKilled)), "{:?}", host.kinds());
    assert!(host.kinds().iter().any(|l| l.contains("cause=oom")));
}

#[test]
fn a_grower_is_restarted_before_it_reaches_memory_max() {
    // The same endless line, with a threshold well below memory.max: the
    // kernel's memory.events wakes the host, which stops it gracefully
    // (no OOM kill) and starts the next one.
    // Alone, the threshold is what a hierarchy without the controller refuses.
    drop(add_on_cgroup_path(
        "memory",
        "restart_above_memory",
        ProcessSpec::new("a", "true").restart_above_memory(1 << 20),
    ));
    let spec = ProcessSpec::new("grower", "sh")
        .args(["-c", "head -c 1000000000 /dev/zero | tail"])
        .restart_above_memory(16 << 20)
        .memory_max(64 << 20)
        .stop_timeout(Duration::from_secs(2))
        .backoff(Backoff::fixed(ms(100)));
    // Refused for its first limit, memory_max, where there is no memory controller.
    let Some(mut host) = add_on_cgroup_path("memory", "memory_max", spec) else { return };
    host.start_all();
    let pid = host.sup.status("grower").unwrap().pid.unwrap().as_raw();
    let high = std::fs::read_to_string(cgroup_of(pid).join("memory.high")).unwrap();
    assert_eq!(high.trim(), (16u64 << 20).to_string(), "the threshold is the cgroup's memory.high");
    host.run_until(Duration::from_secs(20), |h| h.count("memory_exceeded") >= 2 && h.count("spawned") >= 2);
    let kinds = host.kinds();
    assert!(kinds.iter().any(|l| l.starts_with("event=stopping") && l.ends_with("reason=memory")), "{kinds:?}");
    let causes: Vec<_> = host
        .events("exited")
        .iter()
        .filter_map(|e| match e {
            Event::Exited { cause, .. } => Some(*cause),
            _ => None,
        })
        .collect();
    assert!(!causes.is_empty() && causes.iter().all(Option::is_none), "restarted before the OOM killer: {causes:?}");
}

#[test]
fn a_fork_storm_is_capped_by_tasks_max() {
    // Each of 40 background sleeps is a task; past pids.max a fork fails
    // and the shell says so.
    let spec = ProcessSpec::new("storm", "sh")
        .args(["-c", "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; echo forked; wait"])
        .tasks_max(8)
        .stdout(procsup::Output::Capture)
        .stderr(procsup::Output::Capture)
        .restart(RestartPolicy::Never);
    let Some(mut host) = add_on_cgroup_path("pids", "tasks_max", spec) else { return };
    host.start_all();
    let pid = host.sup.status("storm").unwrap().pid.unwrap().as_raw();
    let dir = cgroup_of(pid);
    host.run_until(Duration::from_secs(10), |h| !h.lines().is_empty());
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap().lines().count();
    assert!(procs <= 8, "{procs} tasks under pids.max 8");
    let events = std::fs::read_to_string(dir.join("pids.events")).unwrap();
    assert_ne!(events.trim(), "max 0", "forks were refused: {events}");
}

/// The three spawn paths: procsup's clone3, its clone(2) fallback, std's
/// `Command` (a no-op hook forces it), each with the path it must take.
fn spawn_paths() -> [(&'static str, UnixSys, bool); 3] {
    [
        ("clone3", UnixSys::new(), false),
        ("clone", UnixSys::new().fail_clone3(libc::ENOSYS), false),
        ("command", UnixSys::new(), true),
    ]
}

/// One `soft hard` line per resource, as the child's /proc/self/limits
/// shows them ("unlimited" for none).
const SHOW_LIMITS: &str =
    "grep -E '^Max (open files|core file size|processes|address space|stack size) ' /proc/self/limits";

#[test]
fn the_child_sees_its_rlimits_on_every_spawn_path() {
    use procsup::{Output, Rlimit, RLIM_INFINITY};
    for (path, sys, hook) in spawn_paths() {
        let mut spec = ProcessSpec::new("lim", "sh")
            .args(["-c", &format!("ulimit -n; {SHOW_LIMITS}")])
            .rlimit(Rlimit::Nofile, 77, 99)
            .rlimit(Rlimit::Core, 0, 4096)
            .rlimit(Rlimit::Nproc, 500, 600)
            .rlimit(Rlimit::As, 1 << 30, RLIM_INFINITY)
            .rlimit(Rlimit::Stack, 4 << 20, 8 << 20)
            .stdout(Output::Capture)
            .restart(RestartPolicy::Never);
        if hook {
            // SAFETY: the hook does nothing.
            spec = unsafe { spec.pre_exec(|| Ok(())) };
        }
        let mut host = Host::new(sys);
        host.add(spec);
        host.start_all();
        assert_eq!(host.sup.sys().last_spawn_path(), Some(path));
        host.run_until(Duration::from_secs(10), |h| h.count("exited") > 0);
        let lines = host.lines();
        assert_eq!(lines.first().map(String::as_str), Some("77"), "{path}: {lines:?}");
        let shown: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split_whitespace().collect()).collect();
        let find = |what: &str| {
            shown
                .iter()
                .find(|w| w.join(" ").starts_with(what))
                .map(|w| (w[w.len() - 3], w[w.len() - 2]))
                .unwrap_or_else(|| panic!("{path}: no {what} in {lines:?}"))
        };
        assert_eq!(find("Max open files"), ("77", "99"), "{path}");
        assert_eq!(find("Max core file size"), ("0", "4096"), "{path}");
        assert_eq!(find("Max processes"), ("500", "600"), "{path}");
        assert_eq!(find("Max address space"), ("1073741824", "unlimited"), "{path}");
        assert_eq!(find("Max stack size"), ("4194304", "8388608"), "{path}");
    }
}

#[test]
fn an_rlimit_the_child_may_not_have_fails_the_spawn() {
    // A soft limit above the hard one is refused at add; one the kernel
    // refuses (nofile above fs.nr_open) fails the spawn on every path.
    for (path, sys, hook) in spawn_paths() {
        let mut spec = ProcessSpec::new("lim", "true")
            .rlimit(procsup::Rlimit::Nofile, u64::MAX - 1, u64::MAX - 1)
            .restart(RestartPolicy::Never);
        if hook {
            // SAFETY: the hook does nothing.
            spec = unsafe { spec.pre_exec(|| Ok(())) };
        }
        let mut host = Host::new(sys);
        host.add(spec);
        let err = host.sup.start_all(std::time::Instant::now());
        let st = host.sup.status("lim").unwrap();
        assert_eq!(st.last_spawn_error, Some(procsup::Errno::EPERM), "{path}: {err:?} {st:?}");
    }
}

#[test]
fn usage_shows_a_grown_tree_on_the_cgroup_and_the_group_path() {
    // A shell (one task) whose child holds 40 MiB, touched.
    let script = "python3 -c 'import time; x = bytearray(40 << 20); print(\"held\", flush=True); time.sleep(30)'";
    for (label, sys) in [("cgroup", UnixSys::new()), ("group", UnixSys::new().without_cgroups())] {
        let mut host = Host::new(sys);
        host.add(ProcessSpec::new("grow", "sh").args(["-c", script]).stdout(procsup::Output::Capture));
        host.start_all();
        host.run_until(Duration::from_secs(10), |h| h.lines().iter().any(|l| l == "held"));
        let u = host.sup.usage("grow").unwrap().expect("a live child has a usage");
        let mem = u.memory_current.unwrap();
        assert!(mem >= 40 << 20, "{label}: {u:?}");
        assert!(u.memory_peak.unwrap() >= mem, "{label}: {u:?}");
        assert!(u.tasks.unwrap() >= 2, "{label}: the shell and python: {u:?}");
        assert!(u.cpu_time.is_some(), "{label}: {u:?}");
        host.sup.stop_process("grow", std::time::Instant::now()).unwrap();
        host.run_until(Duration::from_secs(10), |h| h.count("stopped") > 0);
        assert_eq!(host.sup.usage("grow").unwrap(), None, "{label}: no child, no usage");
    }
}
