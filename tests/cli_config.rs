//! `supervise` as a tool people run: COMMAND split like a shell would,
//! `--config FILE` with a section per program, and the README's first
//! command, run as written.

// A host, not the library: it owns real time and may read clocks and sleep.
#![allow(clippy::disallowed_methods)]

mod bin;
#[path = "../examples/supervise/shell.rs"]
#[allow(dead_code)]
mod shell;

use std::time::{Duration, Instant};

use bin::{field, Cli};

#[test]
fn a_quoted_command_runs_without_a_shell_splitting_it() {
    let mut cli = Cli::start(&["-p", r#"g=sh -c "echo hello world""#, "--exit-when-idle", "--restart", "never"]);
    assert_eq!(cli.wait(), 0, "{:#?}", cli.seen);
    assert!(cli.seen.iter().any(|l| l == "hello world"), "{:#?}", cli.seen);
}

#[test]
fn an_unclosed_quote_is_a_usage_error() {
    let mut cli = Cli::start(&["-p", "g=sh -c 'echo", "--exit-when-idle"]);
    assert!(cli.expect_err("supervise:").contains("single quote is not closed"));
    assert_eq!(cli.wait(), 2);
}

#[test]
fn children_read_dev_null_on_stdin() {
    // `cat` ends at once on /dev/null's EOF, where a shared stdin would block.
    let mut cli = Cli::start(&["-p", "c=cat", "--exit-when-idle", "--restart", "never"]);
    assert_eq!(cli.wait(), 0, "{:#?}", cli.seen);
}

fn config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("supervise.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.to_str().unwrap().to_owned())
}

#[test]
fn each_program_of_a_config_has_its_own_backoff_and_restart() {
    let (_dir, path) = config(
        r#"
[program.fast]
command = "sh -c 'echo fast; exit 1'"
backoff = "fixed:0.05"
give-up = 3

[program.once]
command = "sh -c 'echo once; exit 1'"
restart = "never"
"#,
    );
    let mut cli = Cli::start(&["--config", &path, "--exit-when-idle", "--backoff", "fixed:30"]);
    assert_eq!(cli.wait(), 1, "{:#?}", cli.seen);
    let of = |name: &str, kind: &str| -> Vec<String> {
        let prefix = format!("event={kind} name={name} ");
        cli.seen.iter().filter(|l| l.starts_with(&prefix)).cloned().collect()
    };
    assert_eq!(of("fast", "spawned").len(), 3, "{:#?}", cli.seen);
    let delays: Vec<_> = of("fast", "backoff").iter().map(|l| field(l, "delay_ms").unwrap()).collect();
    assert_eq!(delays, ["50", "50"]);
    assert_eq!(of("fast", "fatal").len(), 1);
    // `once` does not restart, and the command line's 30 s backoff was
    // never used (the run would not have ended).
    assert_eq!(of("once", "spawned").len(), 1, "{:#?}", cli.seen);
    assert_eq!(of("once", "exited").len(), 1);
    assert!(of("once", "backoff").is_empty() && of("once", "fatal").is_empty());
}

#[test]
fn a_bad_value_in_a_config_names_the_line_and_the_key() {
    let (_dir, path) = config("[program.web]\ncommand = \"sleep 60\"\n\nbackoff = \"slow\"\n");
    let mut cli = Cli::start(&["--config", &path]);
    let err = cli.expect_err("supervise:");
    assert!(err.contains(&format!("{path}:4: program.web.backoff: ")), "{err}");
    assert_eq!(cli.wait(), 2);
    assert!(cli.seen.is_empty(), "nothing was started: {:#?}", cli.seen);
}

#[test]
fn the_readme_first_command_ends_by_itself_after_backoff_and_give_up() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme.split("```sh\n").nth(1).unwrap().split("```").next().unwrap();
    let commands: Vec<&str> = block.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    // The first lines stay: the command that shows the main job, then the tests.
    assert_eq!(commands.len(), 2, "{block}");
    assert_eq!(commands[1], "cargo test");
    let args = commands[0].strip_prefix("cargo run --example supervise -- ").expect("the first command runs supervise");
    let args = shell::split(args).unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let start = Instant::now();
    let mut cli = Cli::start(&args);
    cli.expect("event=fatal");
    // It must end by itself: a bounded wait, far above the 0.7 s of backoff.
    let end = start + Duration::from_secs(10);
    while cli.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "still running 10 s later: {:#?}", cli.seen);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(cli.wait(), 1, "its program never succeeded");
    let delays: Vec<_> =
        cli.seen.iter().filter(|l| l.starts_with("event=backoff")).map(|l| field(l, "delay_ms").unwrap()).collect();
    assert_eq!(delays, ["100", "200", "400"], "{:#?}", cli.seen);
    assert!(cli.seen.iter().any(|l| l.starts_with("event=fatal") && l.contains("reason=gave_up")), "{:#?}", cli.seen);
    assert_eq!(cli.seen.iter().filter(|l| *l == "working").count(), 4, "{:#?}", cli.seen);
}
