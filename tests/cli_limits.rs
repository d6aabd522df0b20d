//! `supervise` with resource limits: bad values and cgroup-only limits
//! without cgroups exit 2 naming the option; an rlimit reaches the child;
//! a config section sets them too.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;

use std::process::Command;

use bin::{supervise_bin, Cli};

/// Runs `supervise ARGS`, which must exit 2 with one stderr line that
/// contains `needle`.
fn refused(args: &[&str], needle: &str) {
    let out = Command::new(supervise_bin()).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("supervise: ") && err.contains(needle), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}");
}

#[test]
fn bad_limit_values_exit_2_naming_the_option() {
    refused(&["--memory-max", "lots", "--", "true"], "--memory-max \"lots\": expected a size");
    refused(&["--memory-max", "0", "--", "true"], "--memory-max \"0\"");
    refused(&["--memory-high", "1.5G", "--", "true"], "--memory-high");
    refused(&["--tasks-max", "-3", "--", "true"], "--tasks-max \"-3\"");
    refused(&["--cpu-max", "150", "--", "true"], "--cpu-max \"150\"");
    refused(&["--cpu-weight", "0", "--", "true"], "--cpu-weight \"0\"");
    refused(&["--io-weight", "10001", "--", "true"], "--io-weight \"10001\"");
    refused(&["--rlimit", "nofile=9:3", "--", "true"], "--rlimit \"nofile=9:3\"");
    refused(&["--rlimit", "files=3", "--", "true"], "--rlimit \"files=3\"");
    refused(&["--restart-above-memory", "big", "--", "true"], "--restart-above-memory \"big\": expected a size");
    // The threshold must leave room below memory.max, and sets memory.high itself.
    refused(&["--restart-above-memory", "64M", "--memory-max", "64M", "--", "true"], "must be below memory_max");
    refused(&["--restart-above-memory", "32M", "--memory-high", "48M", "--", "true"], "not both");
}

#[test]
fn a_cgroup_limit_with_no_cgroups_exits_2_naming_the_option() {
    refused(&["--no-cgroups", "--memory-max", "64M", "--", "true"], "--memory-max (for \"true\"): cannot be enforced");
    refused(&["--no-cgroups", "--cpu-max", "50%", "--", "true"], "--cpu-max (for \"true\"): cannot be enforced");
    refused(&["--no-cgroups", "--tasks-max", "10", "--", "true"], "--tasks-max");
    // The process-group path has no memory events to restart on.
    refused(
        &["--no-cgroups", "--restart-above-memory", "64M", "--", "true"],
        "--restart-above-memory (for \"true\"): cannot be enforced",
    );
}

#[test]
fn an_rlimit_reaches_the_child_from_the_command_line_and_a_config() {
    let mut cli = Cli::start(&[
        "--capture",
        "--restart",
        "never",
        "--exit-when-idle",
        "--rlimit",
        "nofile=123:456,core=0",
        "--",
        "sh",
        "-c",
        "echo n=$(ulimit -n) c=$(ulimit -c)",
    ]);
    cli.expect("n=123 c=0");
    assert_eq!(cli.wait(), 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[program.a]\ncommand = \"sh -c 'echo n=$(ulimit -n)'\"\nrlimit = \"nofile=77\"\nrestart = \"never\"\n",
    )
    .unwrap();
    let mut cli = Cli::start(&["--capture", "--exit-when-idle", "--config", path.to_str().unwrap()]);
    cli.expect("n=77");
    assert_eq!(cli.wait(), 0);
    std::fs::write(&path, "[program.a]\ncommand = \"true\"\nmemory-max = \"huge\"\n").unwrap();
    refused(&["--config", path.to_str().unwrap()], "program.a.memory-max: --memory-max \"huge\"");
    std::fs::write(&path, "[program.a]\ncommand = \"true\"\nrestart-above-memory = \"huge\"\n").unwrap();
    refused(&["--config", path.to_str().unwrap()], "program.a.restart-above-memory: --restart-above-memory \"huge\"");
}

#[test]
fn the_status_table_has_a_memory_column() {
    use nix::sys::signal::Signal;
    for extra in [&[][..], &["--no-cgroups"][..]] {
        let mut args = extra.to_vec();
        args.extend(["-p", "m=sleep 60"]);
        let mut cli = Cli::start(&args);
        cli.expect("event=spawned");
        cli.signal(Signal::SIGUSR1);
        let header = cli.expect_err("NAME");
        let at = header.find("MEMORY").unwrap_or_else(|| panic!("no MEMORY column: {header}"));
        let row = cli.expect_err("m  ");
        // The column right-aligned under its header: a size such as 812K.
        let cell = row.get(..at + "MEMORY".len()).unwrap_or_default().split_whitespace().last().unwrap_or_default();
        assert!(
            cell.len() > 1 && cell.ends_with(['B', 'K', 'M', 'G']) && cell[..cell.len() - 1].parse::<f64>().is_ok(),
            "{extra:?}: {cell:?} in {row}"
        );
        cli.signal(Signal::SIGTERM);
        assert_eq!(cli.wait(), 0);
    }
}
