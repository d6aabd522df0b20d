//! What a child's tree uses: from its cgroup's files, or from `/proc` for
//! the members of its tree (see [`Usage`]).

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::unistd::Pid;

use super::tree::{group_members, Contain};
use crate::state::Usage;

/// [`Sys::usage`](crate::Sys::usage) of the tree of child `pid`, held by
/// `contain`; `reaped`: its leader was reaped.
pub(super) fn tree_usage(pid: Pid, contain: &Contain, reaped: bool) -> Option<Usage> {
    match contain {
        Contain::Cgroup(cg) => Some(cgroup_usage(&cg.dir)),
        Contain::Group => Some(proc_usage(&group_members(pid))),
        Contain::None if !reaped => Some(proc_usage(&[pid])),
        Contain::None => None,
    }
}

fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
}

/// `memory.current`, `memory.peak`, `cpu.stat` `usage_usec` and the lines
/// of `cgroup.threads` (all but `memory.*` are core files of cgroup v2);
/// without the memory controller, the members' memory from `/proc`.
fn cgroup_usage(dir: &Path) -> Usage {
    let cpu = fs::read_to_string(dir.join("cpu.stat")).ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|n| n.trim().parse().ok())
            .map(Duration::from_micros)
    });
    let tasks = fs::read_to_string(dir.join("cgroup.threads")).ok().map(|t| t.lines().count() as u64);
    let mut usage = Usage {
        memory_current: read_u64(dir, "memory.current"),
        memory_peak: read_u64(dir, "memory.peak"),
        cpu_time: cpu,
        tasks,
    };
    if usage.memory_current.is_none() {
        let pids: Vec<Pid> = fs::read_to_string(dir.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).map(Pid::from_raw).collect())
            .unwrap_or_default();
        let from_proc = proc_usage(&pids);
        usage.memory_current = from_proc.memory_current;
        usage.memory_peak = usage.memory_peak.or(from_proc.memory_peak);
    }
    usage
}

/// The sums over `pids` of `/proc/PID/status` `VmRSS`, `VmHWM` and
/// `Threads`, and of `/proc/PID/stat` utime + stime. A pid that is gone
/// (or a zombie, which has no memory) adds nothing.
fn proc_usage(pids: &[Pid]) -> Usage {
    // SAFETY: sysconf(3) reads a constant of the system; no memory is passed.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut u = Usage { memory_current: Some(0), memory_peak: Some(0), cpu_time: Some(Duration::ZERO), tasks: Some(0) };
    let add = |slot: &mut Option<u64>, v: u64| *slot = slot.map(|s| s.saturating_add(v));
    for pid in pids {
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let field = |key: &str| -> u64 {
            let line = status.lines().find_map(|l| l.strip_prefix(key));
            line.and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
        };
        add(&mut u.memory_current, field("VmRSS:") * 1024);
        add(&mut u.memory_peak, field("VmHWM:") * 1024);
        add(&mut u.tasks, field("Threads:"));
        if let Some(t) = fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| cpu_ticks(&s)) {
            u.cpu_time = u.cpu_time.map(|c| c + Duration::from_micros(t * 1_000_000 / ticks));
        }
    }
    u
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line.
fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command may hold spaces and parentheses: fields count from the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace().skip(11);
    Some(f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_count_from_the_last_parenthesis() {
        let stat = "42 (a) b) S 1 42 42 0 -1 4194304 100 0 0 0 7 5 0 0 20 0 1 0 99 0";
        assert_eq!(cpu_ticks(stat), Some(12));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn our_own_process_has_memory_time_and_a_thread() {
        let me = proc_usage(&[Pid::this()]);
        assert!(me.memory_current.unwrap() > 0 && me.memory_peak.unwrap() >= me.memory_current.unwrap());
        assert!(me.tasks.unwrap() >= 1);
        let none = proc_usage(&[Pid::from_raw(i32::MAX)]);
        assert_eq!((none.memory_current, none.tasks), (Some(0), Some(0)));
    }
}
