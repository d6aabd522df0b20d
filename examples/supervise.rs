//! `supervise`: a small host that supervises real programs and prints one
//! logfmt line per event on stdout.
//!
//! ```text
//! cargo run --example supervise -- --backoff exp:0.1:2 --give-up 5 -- sh -c 'echo hi; exit 1'
//! cargo run --example supervise -- -p web="python3 -m http.server 8000" -p worker="sleep 30"
//! ```
//!
//! SIGTERM or SIGINT: graceful shutdown, exit 0 once everything stopped; a
//! second one during it: SIGKILL to everything now, exit 1.
//! `--config FILE` reads programs from TOML (see `supervise/config.rs`).
//! It sleeps until `poll_timeout()` runs out or a readiness fd fires, never
//! on a fixed polling interval.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use procsup::nix::poll::{PollFd, PollFlags};
use procsup::{
    Backoff, Condition, Event, Exit, Output, ProcessSpec, RestartPolicy, Signal, State, Strategy, Supervisor, UnixSys,
};

#[path = "supervise/config.rs"]
mod config;
#[path = "supervise/ctl.rs"]
mod ctl;
#[path = "supervise/limits.rs"]
mod limits;
#[path = "supervise/out.rs"]
mod out;
#[path = "supervise/shell.rs"]
mod shell;

use out::Queue;

const USAGE: &str = r#"usage: supervise [OPTIONS] -- PROGRAM [ARGS...]
       supervise [OPTIONS] -p NAME=COMMAND [-p NAME=COMMAND ...]
       supervise [OPTIONS] --config FILE
       supervise ctl [--state-dir DIR | --control PATH] [--json] COMMAND

Supervises programs and prints one logfmt line per event on stdout.
COMMAND is split into words as sh would ('...', "...", \), but no shell
runs it: nothing is expanded, no pipes (use sh -c '...' for those).
SECS are decimal seconds. Children get /dev/null on stdin.

options:
  -p, --process NAME=COMMAND   a process to supervise (repeatable)
  --config FILE                programs from a TOML file, one section each:
                                 [program.NAME]
                                 command = "COMMAND"
                                 backoff = "fixed:5"    # any option below
                                 give-up = 3             # marked *, by its
                                                         # long name
                                 after = "db:ready"      # or a list of them
                               and at the top, before any section:
                                 strategy = "one_for_all"
                                 intensity = "3:10"
                               the command line's options are the defaults
  --name NAME                  name of the PROGRAM form's process (default: its file name)
* --instances N                run N copies of each process, named NAME:0 .. NAME:N-1;
                               {instance} in a COMMAND's arguments becomes the
                               instance number (0 without --instances), and each
                               copy gets PROCSUP_INSTANCE
  --listen HOST:PORT           bind a TCP socket once and pass it to every
                               child at fd 3 and up, with LISTEN_FDS,
                               LISTEN_FDNAMES (listen0, ...) and LISTEN_PID
                               (repeatable)
* --start-grace SECS           alive this long counts as started (default 1)
* --ready grace|notify|fd:N|output:TEXT
                               what makes a child ready: the start grace, sd_notify
                               READY=1, a newline on fd N (s6), or an output line
                               containing TEXT (default grace)
* --start-timeout SECS         not ready this long after the spawn: a failed start
* --watchdog SECS              with --ready notify: WATCHDOG=1 at least this often
* --backoff fixed:SECS|exp:INITIAL:MAX[:JITTER]
                               delay before a restart (default exp:0.1:60:0.25)
* --restart always|on-failure|never   (default always)
* --give-up N                  fatal after N consecutive failed starts
* --stop-timeout SECS          SIGKILL this long after the stop signal (default 10)
* --stop-signal NAME           TERM, SIGTERM, INT, HUP, ... (default TERM)
  --exit-when-idle             exit when nothing runs or waits to restart:
                               0 if every process ended with success, else 1
  --state-dir DIR              record live children in DIR; on start, stop
                               what a crashed earlier run left behind. Makes
                               DIR/.lock and one DIR/NAME.PID per child
                               (first line procsup-record 1); never changes
                               or removes a file without that line: each is
                               reported once (event=orphan_refused) and left.
                               Also listens on DIR/control (see ctl below)
  --control PATH               listen for supervise ctl on the Unix socket
                               PATH (mode 0600; root and this user only)
                               instead of DIR/control; also without a state dir
* --no-die-with-parent         let children outlive this host (by default
                               they get SIGKILL when it dies)
  --strict                     a program not found (on PATH, or at its path)
                               is an error (exit 2), not a warning
  --subreaper                  adopt orphans (PR_SET_CHILD_SUBREAPER) and reap
                               them, for PID 1 or a container's entrypoint
  --no-standby                 spawn each restart anew; by default each
                               running child's successor is made ahead and
                               parked before its exec (ps: procsup-standby),
                               so that a restart is one exec; it has this
                               host's environment and credentials as of then
* --no-cgroups                 hold each child's tree by its process group
                               only, even where a cgroup v2 is writable
* --capture                    capture the children's stdout and stderr and
                               print each line as an event=output line
* --log-dir DIR                write each process's stdout and stderr, line by
                               line, to DIR/NAME.log (a group's instances share
                               one), rotated by size: NAME.log.1 newest; a dir
                               that cannot be written exits 2 before anything
                               starts; SIGUSR2 opens every file again
* --log-max-size SIZE          rotate a log file once it would pass SIZE
                               (default 10M; SIZE as 512K, 10M, 1G)
* --log-keep N                 rotated files to keep (default 5; 0 keeps none)
* --log-timestamps             start each logged line with its UTC time
  --after NAME=DEP[:started|ready|completed]
                               start NAME once DEP is started, running
                               (ready, the default) or exited with success;
                               on shutdown NAME stops first (repeatable);
                               DEP may be a group of --instances (all of them)
  --strategy one_for_one|one_for_all|rest_for_one
                               what a crash restarts (default one_for_one);
                               the others restart the group after the
                               crasher's backoff, and --give-up makes the
                               crasher fatal alone
  --intensity N:SECS           more than N restarts within SECS make every
                               process fatal (default: none with one_for_one,
                               1:5 with the others, as Erlang/OTP)
* --memory-max SIZE            the most memory the child's tree may use (cgroup
                               memory.max; SIZE as 64M, 1G); past it the kernel's
                               OOM killer ends the tree: event=exited ... cause=oom
* --memory-high SIZE           throttle the tree's memory above SIZE (memory.high)
* --restart-above-memory SIZE  restart the child gracefully once its tree's memory
                               goes above SIZE (the kernel says so: no poll):
                               event=memory_exceeded, then event=stopping ...
                               reason=memory (a pool's instance: replaced
                               new-before-old, event=retiring ... reason=memory);
                               below --memory-max, not with --memory-high
* --tasks-max N                the most processes and threads in the tree (pids.max)
* --cpu-max PERCENT%|QUOTA:PERIOD
                               CPU time per period (cpu.max): 50% of one CPU, or
                               seconds of quota per period (0.001 to 1 s)
* --cpu-weight N, --io-weight N
                               the tree's share against its siblings, 1 to 10000
                               (the cgroup limits above need a cgroup with the
                               controller: with --no-cgroups, or where there is
                               none, supervise exits 2 naming the option)
* --rlimit RES=SOFT[:HARD][,...]
                               setrlimit in the child: nofile, core, nproc, as,
                               stack (sizes as 64M, or unlimited); repeatable
  --log-level off|error|warn|info|debug|trace
                               the library's log records printed on stderr,
                               one level=LEVEL msg=... line each (default warn)
  -h, --help                   this text

signals: SIGTERM or SIGINT stops everything gracefully, then exits 0.
         A second SIGTERM or SIGINT during that stop forces it: every
         process tree gets SIGKILL at once, then it exits 1.
         SIGHUP restarts everything, one process at a time, each replacement
         up before its predecessor is stopped, and starts again what gave up,
         exited or was stopped.
         SIGUSR1 prints a status table on stderr.
         SIGUSR2 opens every --log-dir file again (after logrotate moved it).
         SIGTTIN / SIGTTOU add / remove (newest first) one instance of every
         process run with --instances (at least one is kept).
ctl:     supervise ctl [--state-dir DIR | --control PATH] [--json] COMMAND
         asks the supervise listening there; COMMAND is status (the SIGUSR1
         table, or a JSON array with --json), start NAME, stop NAME,
         restart NAME or signal NAME SIG. Exit 0 done, 1 the supervisor
         refused (an unknown name, ...), 2 no answer (cannot connect, not
         allowed, busy). A stale socket of a dead supervise is replaced; a live
         one makes a second supervise exit 2.
output:  a failed write (a closed stdout or stderr) is reported once on
         stderr where it can be and never stops a child; events that
         cannot be written are dropped. A reader that does not keep up
         never stalls supervising: lines wait in a bounded queue (64 Ki
         lines, 4 MiB; captured output may use three quarters of it);
         what does not fit is dropped and counted, and an
         event=output_dropped lines=N line follows once there is room.
         On exit, supervise writes what is queued before it ends."#;

#[derive(Clone, Debug)]
struct Args {
    processes: Vec<(String, Vec<String>)>,
    start_grace: Duration,
    backoff: Backoff,
    restart: RestartPolicy,
    give_up: Option<u32>,
    stop_timeout: Duration,
    stop_signal: Signal,
    exit_when_idle: bool,
    state_dir: Option<std::path::PathBuf>,
    /// `--control PATH`: the control socket, if not `DIR/control`.
    control: Option<std::path::PathBuf>,
    die_with_parent: bool,
    cgroups: bool,
    instances: Option<u32>,
    subreaper: bool,
    standby: bool,
    /// A program that is not found fails startup.
    strict: bool,
    capture: bool,
    /// `--log-dir`: each process's streams to `DIR/NAME.log`.
    log_dir: Option<std::path::PathBuf>,
    log_max_size: u64,
    log_keep: u32,
    log_timestamps: bool,
    listen: Vec<String>,
    after: Vec<(String, String, Condition)>,
    strategy: Strategy,
    intensity: Option<(u32, Duration)>,
    ready: Option<procsup::Readiness>,
    start_timeout: Option<Duration>,
    watchdog: Option<Duration>,
    config: Option<std::path::PathBuf>,
    log_level: log::LevelFilter,
    limits: limits::Limits,
}

/// The options that take a value and that a program may set for itself:
/// on the command line for every program, as keys in a `--config` section
/// for one.
const PROGRAM_OPTIONS: &[&str] = &[
    "start-grace",
    "backoff",
    "restart",
    "give-up",
    "stop-timeout",
    "stop-signal",
    "instances",
    "ready",
    "start-timeout",
    "watchdog",
    "memory-max",
    "memory-high",
    "restart-above-memory",
    "tasks-max",
    "cpu-max",
    "cpu-weight",
    "io-weight",
    "rlimit",
    "log-dir",
    "log-max-size",
    "log-keep",
];
/// The same for options without a value (`key = true` in a section).
const PROGRAM_SWITCHES: &[&str] = &["no-die-with-parent", "no-cgroups", "capture", "log-timestamps"];

/// Sets one of [`PROGRAM_OPTIONS`].
fn set_program_option(a: &mut Args, key: &str, value: &str) -> Result<(), String> {
    let flag = format!("--{key}");
    match key {
        "start-grace" => a.start_grace = secs(value)?,
        "backoff" => a.backoff = parse_backoff(value)?,
        "restart" => {
            a.restart = match value {
                "always" => RestartPolicy::Always,
                "on-failure" => RestartPolicy::OnFailure,
                "never" => RestartPolicy::Never,
                other => return Err(format!("{flag} {other:?}: expected always, on-failure or never")),
            }
        }
        "give-up" => a.give_up = Some(positive(&flag, value)?),
        "stop-timeout" => a.stop_timeout = secs(value)?,
        "stop-signal" => a.stop_signal = parse_signal(value)?,
        "instances" => a.instances = Some(positive(&flag, value)?),
        "ready" => a.ready = parse_ready(value)?,
        "start-timeout" => {
            let t = secs(value)?;
            if t.is_zero() {
                return Err(format!("{flag} {value:?}: expected a number of seconds above 0"));
            }
            a.start_timeout = Some(t);
        }
        "watchdog" => a.watchdog = Some(secs(value)?),
        "log-dir" => {
            if value.is_empty() {
                return Err(format!("{flag}: expected a directory"));
            }
            a.log_dir = Some(value.into());
        }
        "log-max-size" => {
            a.log_max_size = limits::size(value)
                .ok_or_else(|| format!("{flag} {value:?}: expected a size above 0, as 512K, 10M or 1G"))?;
        }
        "log-keep" => {
            a.log_keep = value
                .parse()
                .ok()
                .filter(|n| *n <= procsup::MAX_LOG_KEEP)
                .ok_or_else(|| format!("{flag} {value:?}: expected 0 to {}", procsup::MAX_LOG_KEEP))?;
        }
        k if limits::OPTIONS.contains(&k) => a.limits.set(k, value)?,
        _ => return Err(format!("unknown option {flag:?}")),
    }
    Ok(())
}

/// Sets one of [`PROGRAM_SWITCHES`].
fn set_program_switch(a: &mut Args, key: &str) {
    match key {
        "no-die-with-parent" => a.die_with_parent = false,
        "no-cgroups" => a.cgroups = false,
        "capture" => a.capture = true,
        "log-timestamps" => a.log_timestamps = true,
        _ => {}
    }
}

fn parse_ready(s: &str) -> Result<Option<procsup::Readiness>, String> {
    use procsup::Readiness;
    match s.split_once(':') {
        None if s == "grace" => Ok(None),
        None if s == "notify" => Ok(Some(Readiness::Notify)),
        Some(("fd", n)) => {
            n.parse().map(|n| Some(Readiness::Fd(n))).map_err(|_| format!("--ready fd:{n}: not a number"))
        }
        Some(("output", text)) if !text.is_empty() => Ok(Some(Readiness::output_contains(text))),
        _ => Err(format!("--ready {s:?}: expected grace, notify, fd:N or output:TEXT")),
    }
}

fn secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(v).map_err(|_| format!("{s:?} is not a valid number of seconds"))
}

fn parse_backoff(s: &str) -> Result<Backoff, String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        ["fixed", d] => Ok(Backoff::fixed(secs(d)?)),
        ["exp", initial, max] => Ok(Backoff::exponential(secs(initial)?).max(secs(max)?)),
        ["exp", initial, max, jitter] => {
            let j: f64 = jitter.parse().map_err(|_| format!("jitter {jitter:?} is not a number"))?;
            if !(0.0..=1.0).contains(&j) {
                return Err(format!("jitter {jitter} is not between 0 and 1"));
            }
            Ok(Backoff::exponential(secs(initial)?).max(secs(max)?).jitter(j))
        }
        _ => Err(format!("--backoff {s:?}: expected fixed:SECS or exp:INITIAL:MAX[:JITTER]")),
    }
}

fn parse_strategy(v: &str) -> Result<Strategy, String> {
    Strategy::parse(v).ok_or_else(|| format!("--strategy {v:?}: expected one_for_one, one_for_all or rest_for_one"))
}

/// `N:SECS`: at most N restarts (0 and up) within SECS (above 0).
fn parse_intensity(v: &str) -> Result<(u32, Duration), String> {
    let bad = || format!("--intensity {v:?}: expected N:SECS (N restarts within SECS seconds, SECS above 0)");
    let (n, period) = v.split_once(':').ok_or_else(bad)?;
    let n: u32 = n.parse().map_err(|_| bad())?;
    let period = secs(period).ok().filter(|p| !p.is_zero()).ok_or_else(bad)?;
    Ok((n, period))
}

fn positive(flag: &str, v: &str) -> Result<u32, String> {
    v.parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("{flag} {v:?}: expected a whole number above 0"))
}

fn parse_signal(s: &str) -> Result<Signal, String> {
    let upper = s.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    Signal::from_str(&full).map_err(|_| format!("unknown signal {s:?}"))
}

fn parse_process(s: &str) -> Result<(String, Vec<String>), String> {
    let (name, cmd) = s.split_once('=').ok_or_else(|| format!("-p {s:?}: expected NAME=COMMAND"))?;
    let argv = shell::split(cmd).map_err(|e| format!("-p {s:?}: {e}"))?;
    if name.is_empty() || argv.is_empty() {
        return Err(format!("-p {s:?}: NAME and COMMAND must not be empty"));
    }
    Ok((name.to_owned(), argv))
}

fn parse_after(s: &str) -> Result<(String, String, Condition), String> {
    let bad = || format!("--after {s:?}: expected NAME=DEP[:started|ready|completed]");
    let (name, dep) = s.split_once('=').ok_or_else(bad)?;
    let (dep, condition) = match dep.split_once(':') {
        Some((dep, c)) => (dep, Condition::parse(c).ok_or_else(bad)?),
        None => (dep, Condition::Ready),
    };
    if name.is_empty() || dep.is_empty() {
        return Err(bad());
    }
    Ok((name.to_owned(), dep.to_owned(), condition))
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        processes: Vec::new(),
        start_grace: Duration::from_secs(1),
        backoff: Backoff::default(),
        restart: RestartPolicy::Always,
        give_up: None,
        stop_timeout: Duration::from_secs(10),
        stop_signal: Signal::SIGTERM,
        exit_when_idle: false,
        state_dir: None,
        control: None,
        die_with_parent: true,
        cgroups: true,
        instances: None,
        subreaper: false,
        standby: true,
        strict: false,
        capture: false,
        log_dir: None,
        log_max_size: 10 << 20,
        log_keep: 5,
        log_timestamps: false,
        listen: Vec::new(),
        after: Vec::new(),
        strategy: Strategy::OneForOne,
        intensity: None,
        ready: None,
        start_timeout: None,
        watchdog: None,
        config: None,
        log_level: log::LevelFilter::Warn,
        limits: limits::Limits::default(),
    };
    let mut name = None;
    let mut program = None;
    while let Some(arg) = argv.next() {
        let mut value = |flag: &str| argv.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--" => {
                let rest: Vec<String> = argv.by_ref().collect();
                if rest.is_empty() {
                    return Err("nothing to run after --".into());
                }
                program = Some(rest);
            }
            "-p" | "--process" => a.processes.push(parse_process(&value(&arg)?)?),
            "--name" => name = Some(value(&arg)?),
            "--config" => a.config = Some(value(&arg)?.into()),
            flag if flag.strip_prefix("--").is_some_and(|k| PROGRAM_OPTIONS.contains(&k)) => {
                let v = value(&arg)?;
                set_program_option(&mut a, &arg[2..], &v)?;
            }
            "--exit-when-idle" => a.exit_when_idle = true,
            "--state-dir" => a.state_dir = Some(value(&arg)?.into()),
            "--control" => a.control = Some(value(&arg)?.into()),
            "--subreaper" => a.subreaper = true,
            "--no-standby" => a.standby = false,
            "--strict" => a.strict = true,
            "--log-level" => {
                let v = value(&arg)?;
                a.log_level = log::LevelFilter::from_str(&v)
                    .map_err(|_| format!("--log-level {v:?}: expected off, error, warn, info, debug or trace"))?;
            }
            "--listen" => a.listen.push(value(&arg)?),
            "--after" => a.after.push(parse_after(&value(&arg)?)?),
            "--strategy" => a.strategy = parse_strategy(&value(&arg)?)?,
            "--intensity" => a.intensity = Some(parse_intensity(&value(&arg)?)?),
            flag if flag.strip_prefix("--").is_some_and(|k| PROGRAM_SWITCHES.contains(&k)) => {
                set_program_switch(&mut a, &arg[2..]);
            }
            other => return Err(format!("unknown option {other:?} (try --help)")),
        }
    }
    match (program, a.processes.is_empty()) {
        (Some(argv), true) => {
            let default = std::path::Path::new(&argv[0]).file_name().map(|f| f.to_string_lossy().into_owned());
            let name = name.or(default).ok_or("cannot name the process: use --name")?;
            a.processes.push((name, argv));
        }
        (Some(_), false) => return Err("use either -- PROGRAM or -p, not both".into()),
        (None, true) if a.config.is_none() => return Err("nothing to supervise (try --help)".into()),
        (None, _) if name.is_some() => return Err("--name goes with the -- PROGRAM form".into()),
        (None, _) => {}
    }
    Ok(Some(a))
}

fn spec(a: &Args, name: &str, argv: &[String], listen: &[Arc<std::os::fd::OwnedFd>]) -> ProcessSpec {
    let rest = argv[1..].to_vec();
    let numbered =
        move |i: u32| -> Vec<String> { rest.iter().map(|s| s.replace("{instance}", &i.to_string())).collect() };
    let mut s = ProcessSpec::new(name, &argv[0])
        .listen_fds(listen.iter().enumerate().map(|(i, fd)| (format!("listen{i}"), fd.clone())))
        .start_grace(a.start_grace)
        .backoff(a.backoff.clone())
        .restart(a.restart)
        .stop_timeout(a.stop_timeout)
        .stop_signal(a.stop_signal);
    if !a.die_with_parent {
        s = s.die_with_parent(None);
    }
    if let Some(n) = a.give_up {
        s = s.give_up_after(n);
    }
    match a.instances {
        Some(n) => s = s.instances_with(n, move |i, spec| spec.args(numbered(i))),
        None => s = s.args(numbered(0)),
    }
    if a.capture {
        s = s.stdout(Output::Capture).stderr(Output::Capture);
    }
    for (_, dep, condition) in a.after.iter().filter(|(n, _, _)| n == name) {
        s = s.depends_on(dep, *condition);
    }
    if let Some(r) = &a.ready {
        // Output readiness reads the lines, so they are captured.
        if matches!(r, procsup::Readiness::OutputLine(_)) {
            s = s.stdout(procsup::Output::Capture);
        }
        s = s.ready(r.clone());
    }
    if let Some(t) = a.start_timeout {
        s = s.start_timeout(t);
    }
    if let Some(w) = a.watchdog {
        s = s.watchdog(w);
    }
    // Over --capture (and the capture of --ready output:TEXT, which reads
    // logged lines all the same).
    if let Some(dir) = &a.log_dir {
        let log = procsup::LogFile::new(dir.join(format!("{name}.log")))
            .max_size(a.log_max_size)
            .keep(a.log_keep)
            .timestamps(a.log_timestamps);
        s = s.stdout(Output::Log(log)).stderr(Output::ToStdout);
    }
    a.limits.apply(s)
}

/// The signals this host handles: the ones [`install_signals`] catches,
/// and SIGCHLD, which only wakes the loop where it is needed
/// ([`Signals::wake_on_sigchld`]).
const HANDLED: [Signal; 8] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGCHLD,
];

/// A blocked signal stays pending forever, and the mask survives exec: a
/// parent that ran us with SIGTERM blocked would leave us unstoppable. So
/// every handled signal is unblocked first, before any thread starts
/// (threads inherit the mask). An inherited SIG_IGN needs nothing here:
/// signal-hook's `register` installs its handler with `sigaction`
/// whatever the disposition was, and never runs an ignored one.
fn unblock_handled_signals() -> io::Result<()> {
    use procsup::nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
    let mut set = SigSet::empty();
    for sig in HANDLED {
        set.add(sig);
    }
    pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None).map_err(io::Error::from)
}

/// Signal flags set by handlers, and a socket they write to so `poll` wakes.
struct Signals {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    status: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    grow: Arc<AtomicBool>,
    shrink: Arc<AtomicBool>,
    wake: UnixStream,
    /// The handlers' end of `wake`.
    waker: UnixStream,
}

fn install_signals() -> io::Result<Signals> {
    let (wake, waker) = UnixStream::pair()?;
    wake.set_nonblocking(true)?;
    waker.set_nonblocking(true)?;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2};
    let (stop, reload, status, reopen) = (Arc::default(), Arc::default(), Arc::default(), Arc::default());
    let (grow, shrink) = (Arc::default(), Arc::default());
    for (sig, flag) in [
        (SIGTERM, &stop),
        (SIGINT, &stop),
        (SIGHUP, &reload),
        (SIGUSR1, &status),
        (SIGUSR2, &reopen),
        (SIGTTIN, &grow),
        (SIGTTOU, &shrink),
    ] {
        signal_hook::flag::register(sig, Arc::clone(flag))?;
    }
    for sig in HANDLED.iter().filter(|&&s| s != Signal::SIGCHLD) {
        signal_hook::low_level::pipe::register(*sig as i32, waker.try_clone()?)?;
    }
    Ok(Signals { stop, reload, status, reopen, grow, shrink, wake, waker })
}

impl Signals {
    /// SIGCHLD only wakes the loop, and is needed only where an exit wakes
    /// no fd: without pidfds (`uses_pidfd` is not `Some(true)` once the
    /// first children are spawned), or as a subreaper (an adopted orphan
    /// of a live child has no pidfd until a poll finds it). Elsewhere it
    /// stays at its default, which the kernel discards: no handler runs on
    /// the way from a child's death to its restart. Registered after the
    /// first spawns, so one byte wakes the loop once for an exit that came
    /// before the handler.
    fn wake_on_sigchld(&self) -> io::Result<()> {
        signal_hook::low_level::pipe::register(Signal::SIGCHLD as i32, self.waker.try_clone()?)?;
        let _ = (&self.waker).write(&[0]);
        Ok(())
    }
}

/// Where the host writes: stdout and stderr, each through its own writer
/// thread (see `supervise/out.rs`).
struct Outputs {
    events: Arc<Queue>,
    errors: Arc<Queue>,
    threads: Vec<JoinHandle<()>>,
}

impl Outputs {
    fn start() -> io::Result<Outputs> {
        use std::os::fd::AsFd as _;
        // Duplicates of fds 1 and 2, so that std's own buffers play no part.
        let err_fd = std::fs::File::from(io::stderr().as_fd().try_clone_to_owned()?);
        let out_fd = std::fs::File::from(io::stdout().as_fd().try_clone_to_owned()?);
        let err_note = |n| format!("supervise: {n} lines for stderr dropped: it was not read fast enough");
        let (errors, err_thread) = out::spawn("stderr", err_fd, err_note, |_| {})?;
        let errs = Arc::clone(&errors);
        let on_error = move |e: io::Error| {
            errs.send(format!("supervise: writing events: {e}; supervising on without them"), true);
        };
        let out_note = |n| format!("event=output_dropped lines={n}");
        let (events, out_thread) = out::spawn("stdout", out_fd, out_note, on_error)?;
        Ok(Outputs { events, errors, threads: vec![out_thread, err_thread] })
    }

    fn error(&self, msg: impl std::fmt::Display) {
        self.errors.send(format!("supervise: {msg}"), true);
    }

    /// Writes what is queued (waiting for slow readers) and ends the
    /// writer threads: stdout first, since its failure is told on stderr.
    fn finish(self) {
        self.events.close();
        let mut threads = self.threads.into_iter();
        if let Some(t) = threads.next() {
            let _ = t.join();
        }
        self.errors.close();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn main() -> ExitCode {
    let unblocked = unblock_handled_signals();
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().is_some_and(|a| a == "ctl") {
        return ctl::client_main(argv.skip(1));
    }
    let args = match parse_args(argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("supervise: {e}");
            return ExitCode::from(2);
        }
    };
    let outputs = match Outputs::start() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("supervise: starting the output threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Leaked: a logger lives as long as the process (`log` without "std").
    let logger: &'static out::Logger = Box::leak(Box::new(out::Logger { err: Arc::clone(&outputs.errors) }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(args.log_level);
    }
    let code = match unblocked {
        Ok(()) => supervise(&args, &outputs),
        Err(e) => {
            outputs.error(format_args!("unblocking signals: {e}"));
            ExitCode::FAILURE
        }
    };
    outputs.finish();
    code
}

/// `base` with the state directory `dir`. The directory's lock is held by
/// its open file, which a child killed between its clone and its exec
/// (close-on-exec) still holds for a moment after a SIGKILLed host died:
/// so a lock in use is tried again for up to a second before it counts as
/// another live `supervise`.
fn lock_state_dir(base: impl Fn() -> UnixSys, dir: &std::path::Path) -> procsup::Result<UnixSys> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match base().state_dir(dir) {
            Err(procsup::Error::StateDirInUse { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            other => return other,
        }
    }
}

/// Everything after the arguments; the supervisor (and with it every child
/// still running, which gets SIGKILL) is gone when it returns.
fn supervise(args: &Args, outputs: &Outputs) -> ExitCode {
    // The config file may set the strategy and the intensity.
    let mut args = args.clone();
    let fail = |msg: String| {
        outputs.error(msg);
        ExitCode::from(2)
    };
    let standby = args.standby;
    let base = || {
        let sys = if args.cgroups { UnixSys::new() } else { UnixSys::new().without_cgroups() };
        sys.standby(standby)
    };
    let sys = match &args.state_dir {
        Some(dir) => match lock_state_dir(base, dir) {
            Ok(sys) => sys,
            Err(e) => return fail(format!("--state-dir: {e}")),
        },
        None => base(),
    };
    // This host has no children of its own: every orphan it adopts is
    // one to reap.
    let sys = match args.subreaper {
        true => match sys.subreaper(procsup::SubreaperMode::AllOrphans) {
            Ok(sys) => sys,
            Err(e) => return fail(format!("--subreaper: {e}")),
        },
        false => sys,
    };
    let mut programs: Vec<config::Program> =
        args.processes.iter().map(|(name, argv)| (name.clone(), argv.clone(), args.clone())).collect();
    if let Some(path) = &args.config {
        match config::load(path, &args) {
            Ok(file) => {
                programs.extend(file.programs);
                args.strategy = file.strategy.unwrap_or(args.strategy);
                args.intensity = file.intensity.or(args.intensity);
            }
            Err(e) => return fail(e),
        }
    }
    // A dependency on an unknown name is the library's error; a dependent
    // that is not there would only be skipped, so it is checked here.
    for (name, dep, _) in &args.after {
        if !programs.iter().any(|(n, _, _)| n == name) {
            return fail(format!("--after {name}={dep}: no process named {name:?}"));
        }
    }
    // A typo in a command is said before anything starts, not only as a
    // crash loop of spawn failures.
    for (name, argv, _) in &programs {
        if let Some(why) = argv.first().and_then(|p| not_runnable(p)) {
            if args.strict {
                return fail(format!("program {name:?}: {why}"));
            }
            outputs.error(format_args!("warning: program {name:?}: {why}"));
        }
    }
    // Before anything starts: a live socket there is another host's.
    let control = match ctl::socket_path(args.control.as_deref(), args.state_dir.as_deref()) {
        Some(path) => match ctl::Control::bind(&path) {
            Ok(c) => Some(c),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let mut sup = Supervisor::with_sys(sys);
    // Bound once here; every child gets the same sockets (std's sockets are
    // close-on-exec, so only the children the specs pass them to hold them).
    let mut listen = Vec::new();
    for addr in &args.listen {
        match std::net::TcpListener::bind(addr.as_str()) {
            Ok(l) => listen.push(Arc::new(std::os::fd::OwnedFd::from(l))),
            Err(e) => return fail(format!("--listen {addr}: {e}")),
        }
    }
    sup.set_strategy(args.strategy);
    if let Some((n, period)) = args.intensity {
        sup.set_intensity(n, period);
    }
    // One batch: --after may name a process given later.
    let specs = programs.iter().map(|(name, argv, settings)| spec(settings, name, argv, &listen));
    match sup.add_processes(specs) {
        // Named by the option that set it.
        Err(procsup::Error::LimitUnsupported { name, limit, reason }) => {
            return fail(format!("{} (for {name:?}): cannot be enforced: {reason}", limits::flag_of(limit)));
        }
        Err(e @ procsup::Error::LogFile { .. }) => return fail(format!("--log-dir: {e}")),
        Err(e) => return fail(e.to_string()),
        Ok(()) => {}
    }
    match run(&mut sup, &args, outputs, control) {
        Ok(code) => code,
        Err(e) => {
            outputs.error(e);
            ExitCode::FAILURE
        }
    }
}

/// Why `program` cannot be run as a command's first word, if it cannot: a
/// path that is not an executable file, or a name found on no directory
/// of `PATH`.
fn not_runnable(program: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &std::path::Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        return (!runnable(std::path::Path::new(program))).then(|| format!("{program:?} is not an executable file"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| runnable(&dir.join(program)));
    (!found).then(|| format!("{program:?} is not found on PATH"))
}

fn run(
    sup: &mut Supervisor,
    args: &Args,
    outputs: &Outputs,
    mut control: Option<ctl::Control>,
) -> io::Result<ExitCode> {
    let signals = install_signals()?;
    sup.start_all(Instant::now()).map_err(io::Error::other)?;
    if args.subreaper || sup.sys().uses_pidfd() != Some(true) {
        signals.wake_on_sigchld()?;
    }
    let mut stopping = false;
    // The size the host asked each group to have: scaling down leaves the
    // removed instances in the supervisor until they are stopped.
    // Every group starts with the instances it was added with (from the
    // command line or its --config section).
    let mut sizes: Vec<(String, u32)> = Vec::new();
    for group in sup.statuses().into_iter().filter_map(|st| st.group) {
        match sizes.iter_mut().find(|(g, _)| *g == group) {
            Some((_, n)) => *n += 1,
            None => sizes.push((group, 1)),
        }
    }
    let mut held = Held::default();
    loop {
        held.take(sup, &outputs.events, stopping);
        if stopping && sup.is_idle() {
            held.flush(&outputs.events);
            return Ok(ExitCode::SUCCESS);
        }
        if args.exit_when_idle && !stopping && sup.is_idle() {
            held.flush(&outputs.events);
            return Ok(idle_exit_code(sup));
        }
        let waited = wait(sup, &signals, control.as_ref(), held.by);
        if waited.is_err() {
            held.flush(&outputs.events);
        }
        let control_ready = waited?;
        let now = Instant::now();
        if held.by.is_some_and(|by| now >= by) {
            held.flush(&outputs.events);
        }
        if signals.stop.swap(false, Ordering::Relaxed) {
            if stopping {
                // Asked twice: no more waiting for stop timeouts. The
                // caller drops the supervisor, and its OS layer SIGKILLs
                // every tree (cgroup.kill, or the process group) and reaps.
                held.flush(&outputs.events);
                outputs.events.send("event=force_stop".into(), true);
                outputs.error("stopping again: killing everything now");
                return Ok(ExitCode::FAILURE);
            }
            stopping = true;
            sup.shutdown(now);
        }
        if signals.reload.swap(false, Ordering::Relaxed) && !stopping {
            // What gave up (or exited, or was stopped) starts again, as
            // supervisord's reload does; what runs rolls, one at a time.
            for st in sup.statuses() {
                if matches!(st.state, State::Fatal | State::Exited | State::Stopped) {
                    if let Err(e) = sup.start_process(&st.name, now) {
                        outputs.error(format_args!("start {}: {e}", st.name));
                    }
                }
            }
            // Only fails while shutting down, which was checked.
            let _ = sup.rolling_restart(None, now);
        }
        for (flag, up) in [(&signals.grow, true), (&signals.shrink, false)] {
            if flag.swap(false, Ordering::Relaxed) && !stopping {
                for (group, n) in &mut sizes {
                    *n = if up { n.saturating_add(1) } else { n.saturating_sub(1).max(1) };
                    if let Err(e) = sup.scale(group, *n, now) {
                        outputs.error(format_args!("scale {group}: {e}"));
                    }
                }
            }
        }
        if signals.status.swap(false, Ordering::Relaxed) {
            let table = status_table(sup, now);
            outputs.errors.send(table.trim_end().to_owned(), true);
        }
        if signals.reopen.swap(false, Ordering::Relaxed) {
            // A file that cannot be opened again is an event=log_failed.
            sup.reopen_logs();
        }
        // Not on every wake: no failing accept on the way to a restart.
        if let Some(c) = control.as_mut().filter(|c| control_ready || !c.is_idle()) {
            c.handle(sup, now);
        }
        sup.tick(now);
    }
}

/// How long the event lines of a tick that spawned a child may wait.
const HOLD_EVENTS: Duration = Duration::from_millis(5);

/// The supervisor's events on their way to stdout. Those of a tick that
/// spawned a child are held (neither formatted nor handed to the writer
/// thread) until the loop wakes without spawning, or [`HOLD_EVENTS`] at
/// the latest: the new child execs and starts on a CPU that this loop
/// and the writer thread would otherwise share with it right then.
/// Lines keep their order; a crash loop holds them for at most that long.
#[derive(Default)]
struct Held {
    events: Vec<Event>,
    /// When what is held must go (the loop's poll wakes by then).
    by: Option<Instant>,
}

impl Held {
    /// Takes the supervisor's new events: held behind the others if a
    /// child was spawned (not while stopping), else written with them.
    fn take(&mut self, sup: &mut Supervisor, queue: &Queue, stopping: bool) {
        let new = sup.take_events();
        if !stopping && new.iter().any(|e| matches!(e, Event::Spawned { .. })) {
            self.events.extend(new);
            self.by.get_or_insert_with(|| Instant::now() + HOLD_EVENTS);
            return;
        }
        self.flush(queue);
        send_events(new, queue);
    }

    /// Writes what is held.
    fn flush(&mut self, queue: &Queue) {
        send_events(self.events.drain(..), queue);
        self.by = None;
    }
}

/// Queues events for stdout. Captured output lines are not urgent: a
/// flood of them leaves room for the lifecycle events.
fn send_events(events: impl IntoIterator<Item = Event>, queue: &Queue) {
    for event in events {
        let urgent = !matches!(event, Event::Output { .. });
        queue.send(event.to_string(), urgent);
    }
}

/// `poll(2)` with a timeout to the nanosecond (`ppoll`, no signal mask
/// change), where the system has it.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn sleep(fds: &mut [PollFd], timeout: Option<Duration>) -> procsup::nix::Result<i32> {
    procsup::nix::poll::ppoll(fds, timeout.map(procsup::nix::sys::time::TimeSpec::from_duration), None)
}

/// `poll(2)` in whole milliseconds, rounded up: never an early wakeup that
/// finds nothing due and spins.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn sleep(fds: &mut [PollFd], timeout: Option<Duration>) -> procsup::nix::Result<i32> {
    use procsup::nix::poll::{poll, PollTimeout};
    let ms = |d: Duration| PollTimeout::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(PollTimeout::MAX);
    poll(fds, timeout.map_or(PollTimeout::NONE, ms))
}

/// Sleeps until a readiness fd, the wake socket or a control connection
/// is ready, or the next deadline (the supervisor's, the control
/// socket's, or `held`: when held event lines are due). Says whether the
/// control socket or one of its connections is ready.
fn wait(
    sup: &Supervisor,
    signals: &Signals,
    control: Option<&ctl::Control>,
    held: Option<Instant>,
) -> io::Result<bool> {
    let now = Instant::now();
    let held = held.map(|by| by.saturating_duration_since(now));
    // To the nanosecond: whole milliseconds would put every deadline off
    // by up to one (a successor made 1 ms after a spawn, a stop timeout).
    let timeout = [sup.poll_timeout_in(now, Duration::ZERO), control.and_then(|c| c.timeout(now)), held]
        .into_iter()
        .flatten()
        .min();
    let ready = sup.readiness_fds();
    let mut fds: Vec<PollFd> = ready.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
    fds.push(PollFd::new(signals.wake.as_fd(), PollFlags::POLLIN));
    fds.extend(control.map(ctl::Control::poll_fds).unwrap_or_default());
    match sleep(&mut fds, timeout) {
        Ok(_) | Err(procsup::Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    // Only when a handler wrote: no failing read on the way to a restart.
    if fds[ready.len()].revents().is_some_and(|r| !r.is_empty()) {
        let mut buf = [0u8; 64];
        while matches!((&signals.wake).read(&mut buf), Ok(n) if n > 0) {}
    }
    Ok(fds[ready.len() + 1..].iter().any(|fd| fd.revents().is_some_and(|r| !r.is_empty())))
}

/// One row per process: what `statuses()` knows, for people.
fn status_table(sup: &Supervisor, now: Instant) -> String {
    let mut out = format!(
        "{:<20} {:<9} {:>8} {:>10} {:>8} {:<12} {:>12} {:<13} {:>9} {:>8}\n",
        "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "RESTART IN", "TREE", "MEMORY", "GIVE-UP"
    );
    let dash = || "-".to_string();
    for st in sup.statuses() {
        let pid = st.pid.map_or_else(dash, |p| p.to_string());
        let uptime = st.uptime(now).map_or_else(dash, |u| format!("{:.1}s", u.as_secs_f64()));
        let exit = st.last_exit.map_or_else(dash, |e| e.to_string());
        let retry =
            st.next_retry_at.map_or_else(dash, |t| format!("{:.1}s", t.saturating_duration_since(now).as_secs_f64()));
        let budget = st.give_up_remaining.map_or_else(dash, |n| n.to_string());
        // What holds the child's tree (cgroup, process_group, none).
        let tree = st.containment.map_or_else(dash, |c| c.to_string());
        // The tree's memory now (its cgroup, or /proc).
        let memory =
            sup.usage(&st.name).ok().flatten().and_then(|u| u.memory_current).map_or_else(dash, limits::show_size);
        out += &format!(
            "{:<20} {:<9} {:>8} {:>10} {:>8} {:<12} {:>12} {:<13} {:>9} {:>8}\n",
            st.name, st.state, pid, uptime, st.restart_count, exit, retry, tree, memory, budget
        );
    }
    out
}

fn idle_exit_code(sup: &Supervisor) -> ExitCode {
    let all_ok = sup.statuses().iter().all(|st| {
        let spec = sup.spec(&st.name).expect("listed names exist");
        st.state == State::Exited
            && matches!(st.last_exit, Some(Exit::Exited(c)) if spec.get_success_codes().contains(&c))
    });
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
