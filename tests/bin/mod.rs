//! Runs the example binaries as a user would, with bounded waits, and kills
//! them on drop.
#![allow(dead_code)]
// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `cargo test` builds the examples next to the test binaries.
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("examples").join(name);
    assert!(bin.exists(), "{} not built", bin.display());
    bin
}

pub fn supervise_bin() -> PathBuf {
    example_bin("supervise")
}

/// The lines of a stream, on a channel.
pub fn reader(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A running `supervise` whose stdout lines arrive on a channel; killed on
/// drop so no test leaves it (or its children) behind.
pub struct Cli {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    errors: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Cli {
    pub fn start(args: &[&str]) -> Cli {
        Self::start_example("supervise", args)
    }

    pub fn start_example(name: &str, args: &[&str]) -> Cli {
        Self::start_in(name, std::path::Path::new("."), args)
    }

    /// Starts example `name` in directory `dir`.
    pub fn start_in(name: &str, dir: &std::path::Path, args: &[&str]) -> Cli {
        let mut cmd = Command::new(example_bin(name));
        cmd.current_dir(dir).args(args);
        Self::start_command(cmd)
    }

    /// Starts `cmd` (a wrapper around an example, say) with its stdout and
    /// stderr read as an example's are.
    pub fn start_command(mut cmd: Command) -> Cli {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let lines = reader(child.stdout.take().unwrap());
        let errors = reader(child.stderr.take().unwrap());
        Cli { child, lines, errors, seen: Vec::new() }
    }

    /// Waits (bounded) for a stderr line containing `needle`.
    pub fn expect_err(&mut self, needle: &str) -> String {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            match self.errors.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stderr line with {needle:?}"),
            }
        }
    }

    /// Waits (bounded) for a line containing `needle`.
    pub fn expect(&mut self, needle: &str) -> String {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; saw {:#?}", self.seen),
            }
        }
    }

    /// Waits (bounded) until `n` lines seen so far contain `needle`.
    pub fn expect_count(&mut self, needle: &str, n: usize) {
        while self.seen.iter().filter(|l| l.contains(needle)).count() < n {
            self.expect(needle);
        }
    }

    /// The pids of the first `n` lines seen with `needle`, waiting
    /// (bounded) for them.
    pub fn pids_of(&mut self, needle: &str, n: usize) -> Vec<i32> {
        self.expect_count(needle, n);
        self.seen
            .iter()
            .filter(|l| l.contains(needle))
            .take(n)
            .map(|l| field(l, "pid").unwrap().parse().unwrap())
            .collect()
    }

    /// Kills the host with SIGKILL and reaps it.
    pub fn sigkill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits (bounded) for the exit code, collecting the remaining lines.
    pub fn wait(&mut self) -> i32 {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.seen.extend(self.lines.try_iter());
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return status.code().expect("exited, not killed");
            }
            assert!(Instant::now() < end, "supervise did not exit; saw {:#?}", self.seen);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn field(line: &str, key: &str) -> Option<String> {
    line.split(' ').find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
}
