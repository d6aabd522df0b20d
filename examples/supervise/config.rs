//! `--config FILE`: programs in TOML, one `[program.NAME]` section each.
//!
//! ```toml
//! strategy = "rest_for_one"
//! intensity = "3:10"
//!
//! [program.db]
//! command = "postgres -D /srv/db"
//!
//! [program.web]
//! command = "python3 -m http.server 8000"
//! restart = "always"
//! backoff = "exp:0.1:30"
//! after = "db:ready"
//!
//! [program.job]
//! command = "sh -c 'run-job --once'"
//! restart = "on-failure"
//! give-up = 3
//! ```
//!
//! `command` is split like the `-p` COMMAND; every other key is a long flag
//! name without its dashes, with the value the flag takes (a string, or a
//! number where the flag takes one; `true` for a flag that takes none).
//! Flags on the command line are the defaults that a section overrides.
//! `after` takes `DEP[:started|ready|completed]` or a list of them. At the
//! top, before the sections, `strategy` and `intensity` set the
//! supervisor's, over `--strategy` and `--intensity`.

use std::path::Path;

use toml_edit::{Document, Item, Key, Table, Value};

use procsup::Strategy;

use super::{
    parse_after, parse_intensity, parse_strategy, set_program_option, set_program_switch, shell, Args, PROGRAM_OPTIONS,
    PROGRAM_SWITCHES,
};

/// One program of the file: its name, its argv, and its settings.
pub type Program = (String, Vec<String>, Args);

/// What a file says: its programs, and the supervisor's settings it sets.
#[derive(Debug)]
pub struct Config {
    pub programs: Vec<Program>,
    pub strategy: Option<Strategy>,
    pub intensity: Option<(u32, std::time::Duration)>,
}

/// The keys allowed at the top of the file, besides `[program.NAME]`.
const TOP_KEYS: &[&str] = &["strategy", "intensity"];

/// Reads the programs of `path`, each starting from `defaults`. An error
/// names the file, the line and the key.
pub fn load(path: &Path, defaults: &Args) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // Each line of the error is one problem: each gets the file's name.
    parse(&text, defaults).map_err(|e| {
        let lines: Vec<String> = e.lines().map(|l| format!("{}:{l}", path.display())).collect();
        lines.join("\n")
    })
}

/// The `[program.NAME]` headers that repeat an earlier one, with both
/// lines: the TOML parser says only "duplicate key".
fn repeated_sections(text: &str) -> Vec<String> {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(name) = line.trim().strip_prefix("[program.").and_then(|r| r.split_once(']')).map(|(n, _)| n.trim())
        else {
            continue;
        };
        match seen.iter().find(|(n, _)| *n == name) {
            Some((_, first)) => out.push(format!(
                "{}: program.{name}: a second [program.{name}] section (the first is on line {first})",
                i + 1
            )),
            None => seen.push((name, i + 1)),
        }
    }
    out
}

/// The known key nearest to `key` (at most two edits away), for "did you
/// mean".
fn nearest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let distance = |a: &str, b: &str| {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for i in 1..=a.len() {
            let mut prev = row[0];
            row[0] = i;
            for j in 1..=b.len() {
                let here = row[j];
                row[j] = (row[j] + 1).min(row[j - 1] + 1).min(prev + usize::from(a[i - 1] != b[j - 1]));
                prev = here;
            }
        }
        row[b.len()]
    };
    known.iter().map(|k| (distance(key, k), *k)).filter(|(d, _)| *d <= 2).min().map(|(_, k)| k)
}

/// Where a key is: `LINE: KEY`.
fn at(text: &str, key: &Key, dotted: &str) -> String {
    let line = key.span().map_or(0, |s| text[..s.start].matches('\n').count() + 1);
    format!("{line}: {dotted}")
}

/// Parses a config file: every problem in it at once, one per line of
/// the error, each `LINE: KEY: what`.
pub fn parse(text: &str, defaults: &Args) -> Result<Config, String> {
    let repeated = repeated_sections(text);
    if !repeated.is_empty() {
        return Err(repeated.join("\n"));
    }
    let doc = Document::parse(text).map_err(|e| {
        let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        format!("{line}: {}", e.message().trim_end())
    })?;
    let mut config = Config { programs: Vec::new(), strategy: None, intensity: None };
    let mut errors = Vec::new();
    // Each `after` dependency and where it is: checked once every name is known.
    let mut deps_at = Vec::new();
    for (name, item) in doc.iter() {
        let (key, _) = doc.get_key_value(name).expect("iterated keys exist");
        if TOP_KEYS.contains(&name) {
            let fail = |msg: String| format!("{}: {msg}", at(text, key, name));
            let Some(v) = item.as_str() else {
                errors.push(fail("expected a string".into()));
                continue;
            };
            let set = match name {
                "strategy" => parse_strategy(v).map(|s| config.strategy = Some(s)),
                _ => parse_intensity(v).map(|i| config.intensity = Some(i)),
            };
            errors.extend(set.err().map(fail));
            continue;
        }
        if name != "program" {
            let hint = match nearest(name, &["program", "strategy", "intensity"]) {
                Some(k) => format!(" (did you mean {k}?)"),
                None => String::new(),
            };
            errors.push(format!(
                "{}: unknown key{hint}: expected [program.NAME] sections, strategy or intensity",
                at(text, key, name)
            ));
            continue;
        }
        let Some(table) = item.as_table() else {
            errors.push(format!("{}: expected [program.NAME] sections", at(text, key, name)));
            continue;
        };
        for (pname, section) in table.iter() {
            let (pkey, _) = table.get_key_value(pname).expect("iterated keys exist");
            let dotted = format!("program.{pname}");
            let Some(section) = section.as_table() else {
                errors.push(format!("{}: expected a [{dotted}] section", at(text, pkey, &dotted)));
                continue;
            };
            match program(text, pname, pkey, section, defaults, &mut deps_at) {
                Ok(p) => config.programs.push(p),
                Err(e) => errors.extend(e),
            }
        }
    }
    errors.extend(unknown_dependencies(&config.programs, defaults, &deps_at));
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    if config.programs.is_empty() {
        return Err(" no [program.NAME] section".into());
    }
    Ok(config)
}

/// `LINE: program.x.after: no process named "y"` for each dependency on
/// a name that neither the file nor the command line (`-p`) supervises:
/// the library's own error would have no line. A group's instance
/// (`web:0`) counts as the group's.
fn unknown_dependencies(programs: &[Program], defaults: &Args, deps_at: &[(String, String)]) -> Vec<String> {
    let names: Vec<(&str, bool)> = programs
        .iter()
        .map(|(n, _, a)| (n.as_str(), a.instances.is_some()))
        .chain(defaults.processes.iter().map(|(n, _)| (n.as_str(), defaults.instances.is_some())))
        .collect();
    let known = |dep: &str| {
        names.iter().any(|(n, _)| *n == dep)
            || dep
                .rsplit_once(':')
                .is_some_and(|(g, i)| i.parse::<u32>().is_ok() && names.iter().any(|(n, group)| *group && *n == g))
    };
    let all: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
    deps_at
        .iter()
        .filter(|(dep, _)| !known(dep))
        .map(|(dep, where_)| {
            let hint = nearest(dep, &all).map_or(String::new(), |n| format!(" (did you mean {n}?)"));
            format!("{where_}: no process named {dep:?}{hint}")
        })
        .collect()
}

/// One `[program.NAME]` section, or every problem in it. Each dependency
/// it names goes to `deps_at` with its place.
fn program(
    text: &str,
    name: &str,
    name_key: &Key,
    section: &Table,
    defaults: &Args,
    deps_at: &mut Vec<(String, String)>,
) -> Result<Program, Vec<String>> {
    let mut args = defaults.clone();
    let mut argv = None;
    let mut errors = Vec::new();
    for (k, item) in section.iter() {
        let (key, _) = section.get_key_value(k).expect("iterated keys exist");
        let where_ = at(text, key, &format!("program.{name}.{k}"));
        let fail = |msg: String| format!("{where_}: {msg}");
        let before = args.after.len();
        if let Err(e) = program_key(k, item, name, &mut args, &mut argv) {
            errors.push(fail(e));
        }
        for (_, dep, _) in &args.after[before.min(args.after.len())..] {
            deps_at.push((dep.clone(), where_.clone()));
        }
    }
    match argv {
        Some(argv) if errors.is_empty() => Ok((name.to_owned(), argv, args)),
        // A bad command was reported as such.
        None if !section.contains_key("command") => {
            errors.push(format!("{}: no command", at(text, name_key, &format!("program.{name}"))));
            Err(errors)
        }
        _ => Err(errors),
    }
}

/// Sets one key of a section: what is wrong with it otherwise.
fn program_key(
    k: &str,
    item: &Item,
    name: &str,
    args: &mut Args,
    argv: &mut Option<Vec<String>>,
) -> Result<(), String> {
    let value = match item {
        Item::Value(v) => v,
        _ => return Err("expected a value, not a table".into()),
    };
    if k == "command" {
        let Value::String(s) = value else { return Err("expected a string".into()) };
        let words = shell::split(s.value())?;
        if words.is_empty() {
            return Err("the command is empty".into());
        }
        *argv = Some(words);
    } else if k == "after" {
        let deps: Vec<&Value> = match value {
            Value::Array(list) => list.iter().collect(),
            one => vec![one],
        };
        for dep in deps {
            let Value::String(dep) = dep else { return Err("expected \"DEP[:CONDITION]\" or a list".into()) };
            args.after.push(parse_after(&format!("{name}={}", dep.value()))?);
        }
    } else if PROGRAM_SWITCHES.contains(&k) {
        match value {
            Value::Boolean(b) if *b.value() => set_program_switch(args, k),
            Value::Boolean(_) => {}
            _ => return Err("expected true or false".into()),
        }
    } else if PROGRAM_OPTIONS.contains(&k) {
        let v = match value {
            Value::String(s) => s.value().clone(),
            Value::Integer(i) => i.value().to_string(),
            Value::Float(f) => f.value().to_string(),
            _ => return Err("expected a string or a number".into()),
        };
        set_program_option(args, k, &v)?;
    } else {
        let known = ["command", "after"].iter().chain(PROGRAM_OPTIONS).chain(PROGRAM_SWITCHES);
        let known: Vec<&str> = known.copied().collect();
        return Err(match nearest(k, &known) {
            Some(near) => format!("unknown key (did you mean {near}?)"),
            None => format!("unknown key (expected one of: {})", known.join(", ")),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use procsup::{Backoff, RestartPolicy, Signal};

    use super::{parse, Args};

    fn defaults() -> Args {
        let argv = ["--give-up", "7", "--config", "unused.toml"].map(String::from);
        super::super::parse_args(argv.into_iter()).unwrap().unwrap()
    }

    #[test]
    fn each_section_is_one_program_over_the_command_line_defaults() {
        let text = r#"
[program.web]
command = "python3 -m http.server 8000"
backoff = "fixed:2.5"
restart = "always"
capture = true

[program.job]
command = "sh -c 'run-job --once'"
restart = "on-failure"
give-up = 3
stop-timeout = 0.5
stop-signal = "INT"
no-die-with-parent = true
"#;
        let programs = parse(text, &defaults()).unwrap().programs;
        let [(web, web_argv, w), (job, job_argv, j)] = &programs[..] else { panic!("{programs:?}") };
        assert_eq!(
            (web.as_str(), &web_argv[..]),
            ("web", &["python3", "-m", "http.server", "8000"].map(String::from)[..])
        );
        assert_eq!((job.as_str(), &job_argv[..]), ("job", &["sh", "-c", "run-job --once"].map(String::from)[..]));
        assert_eq!(w.backoff, Backoff::fixed(Duration::from_millis(2500)));
        assert_eq!(w.restart, RestartPolicy::Always);
        assert_eq!(w.give_up, Some(7), "the command line's default");
        assert!(w.die_with_parent);
        assert!(w.capture && !j.capture, "a switch set for one program only");
        assert_eq!(j.backoff, Backoff::default());
        assert_eq!(j.restart, RestartPolicy::OnFailure);
        assert_eq!(j.give_up, Some(3));
        assert_eq!(j.stop_timeout, Duration::from_millis(500));
        assert_eq!(j.stop_signal, Signal::SIGINT);
        assert!(!j.die_with_parent);
    }

    fn error(text: &str) -> String {
        parse(text, &defaults()).unwrap_err()
    }

    #[test]
    fn every_bad_value_names_its_line_and_key() {
        let head = "[program.a]\ncommand = \"true\"\n";
        assert_eq!(
            error(&format!("{head}restart = \"sometimes\"\n")),
            "3: program.a.restart: --restart \"sometimes\": expected always, on-failure or never"
        );
        assert!(error(&format!("{head}give-up = 0\n")).starts_with("3: program.a.give-up: "));
        assert!(error(&format!("{head}give-up = -1\n")).starts_with("3: program.a.give-up: "));
        assert!(error(&format!("{head}backoff = \"exp:1\"\n")).starts_with("3: program.a.backoff: "));
        assert!(error(&format!("{head}start-grace = \"soon\"\n")).starts_with("3: program.a.start-grace: "));
        assert!(error(&format!("{head}stop-timeout = true\n"))
            .starts_with("3: program.a.stop-timeout: expected a string or a number"));
        assert!(error(&format!("{head}stop-signal = \"SIGNOPE\"\n")).starts_with("3: program.a.stop-signal: "));
        assert!(error(&format!("{head}no-die-with-parent = \"yes\"\n"))
            .starts_with("3: program.a.no-die-with-parent: expected true or false"));
        assert!(error(&format!("{head}\n\nrestrat = \"always\"\n")).starts_with("5: program.a.restrat: unknown key"));
        assert!(
            error(&format!("{head}exit-when-idle = true\n")).starts_with("3: program.a.exit-when-idle: unknown key")
        );
        assert_eq!(
            error("[program.a]\ncommand = \"sh -c 'echo\"\n"),
            "2: program.a.command: \"sh -c 'echo\": a single quote is not closed"
        );
        assert_eq!(error("[program.a]\ncommand = 3\n"), "2: program.a.command: expected a string");
        assert_eq!(error("[program.a]\nrestart = \"never\"\n"), "1: program.a: no command");
        assert!(error("[programs.a]\ncommand = \"x\"\n").starts_with("1: programs: unknown key"));
        assert!(
            error("[program.a]\ncommand = \"x\"\nrestart = \n").starts_with("3: "),
            "{}",
            error("[program.a]\ncommand = \"x\"\nrestart = \n")
        );
        assert_eq!(error("# nothing\n"), " no [program.NAME] section");
    }

    #[test]
    fn strategy_and_intensity_at_the_top_and_after_in_a_section() {
        let text = r#"
strategy = "one_for_all"
intensity = "3:10"

[program.db]
command = "db"

[program.web]
command = "web"
after = ["db:started", "cache"]

[program.cache]
command = "cache"
"#;
        let config = parse(text, &defaults()).unwrap();
        assert_eq!(config.strategy, Some(procsup::Strategy::OneForAll));
        assert_eq!(config.intensity, Some((3, Duration::from_secs(10))));
        let web = &config.programs[1].2;
        let after: Vec<_> = web.after.iter().map(|(n, d, c)| (n.as_str(), d.as_str(), c.as_str())).collect();
        assert_eq!(after, [("web", "db", "started"), ("web", "cache", "ready")]);
        assert!(config.programs[0].2.after.is_empty());
        let one =
            parse("[program.a]\ncommand = \"a\"\nafter = \"b:completed\"\n[program.b]\ncommand = \"b\"\n", &defaults())
                .unwrap();
        assert_eq!(one.programs[0].2.after.len(), 1);
        assert_eq!((one.strategy, one.intensity), (None, None));
    }

    #[test]
    fn bad_top_level_values_name_their_line() {
        let tail = "[program.a]\ncommand = \"a\"\n";
        assert!(error(&format!("strategy = \"all\"\n{tail}")).starts_with("1: strategy: --strategy \"all\""));
        assert!(error(&format!("intensity = \"3\"\n{tail}"))
            .starts_with("1: intensity: --intensity \"3\": expected N:SECS"));
        assert!(error(&format!("intensity = 3\n{tail}")).starts_with("1: intensity: expected a string"));
        assert!(error(&format!("{tail}after = \"b:soon\"\n")).starts_with("3: program.a.after: --after"));
        assert!(error(&format!("{tail}after = [1]\n")).starts_with("3: program.a.after: expected"));
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_line() {
        let text = "strategy = \"all\"\n[program.a]\ncommand = \"a\"\nrestrat = \"always\"\ngive-up = 0\n[program.b]\nrestart = \"never\"\n";
        let lines: Vec<String> = error(text).lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].starts_with("1: strategy: "), "{lines:#?}");
        assert_eq!(lines[1], "4: program.a.restrat: unknown key (did you mean restart?)");
        assert!(lines[2].starts_with("5: program.a.give-up: "), "{lines:#?}");
        assert_eq!(lines[3], "6: program.b: no command");
        assert!(error("[progam.a]\ncommand = \"a\"\n").starts_with("1: progam: unknown key (did you mean program?)"));
    }

    #[test]
    fn a_repeated_section_names_both_lines() {
        let text = "[program.a]\ncommand = \"a\"\n\n[program.a]\ncommand = \"b\"\n";
        assert_eq!(error(text), "4: program.a: a second [program.a] section (the first is on line 1)");
    }

    #[test]
    fn an_unknown_dependency_names_its_line() {
        let text = "[program.db]\ncommand = \"db\"\n[program.web]\ncommand = \"web\"\nafter = [\"db:ready\", \"dv\"]\n";
        assert_eq!(error(text), "5: program.web.after: no process named \"dv\" (did you mean db?)");
        // A group, and a -p process of the command line, are known.
        let text = "[program.w]\ncommand = \"w\"\ninstances = 2\n[program.x]\ncommand = \"x\"\nafter = \"w\"\n";
        assert!(parse(text, &defaults()).is_ok());
        let argv = ["-p", "cli=sleep 1", "--config", "unused.toml"].map(String::from);
        let with_cli = super::super::parse_args(argv.into_iter()).unwrap().unwrap();
        assert!(parse("[program.x]\ncommand = \"x\"\nafter = \"cli\"\n", &with_cli).is_ok());
    }

    #[test]
    fn log_keys_set_the_log_options() {
        let text = "[program.a]\ncommand = \"a\"\nlog-dir = \"/tmp/l\"\nlog-max-size = \"1M\"\nlog-keep = 3\nlog-timestamps = true\n";
        let (_, _, a) = &parse(text, &defaults()).unwrap().programs[0];
        assert_eq!(a.log_dir.as_deref(), Some(std::path::Path::new("/tmp/l")));
        assert_eq!((a.log_max_size, a.log_keep, a.log_timestamps), (1 << 20, 3, true));
        let bad = error("[program.a]\ncommand = \"a\"\nlog-keep = 100000\nlog-max-size = \"0\"\n");
        assert_eq!(bad.lines().count(), 2, "{bad}");
    }
}
