//! The control socket: a running `supervise` answers `supervise ctl ...`
//! on a Unix stream socket (`DIR/control` with `--state-dir DIR`, or
//! `--control PATH`).
//!
//! One request line per connection, one response, then the host closes it:
//!
//! ```text
//! request:  [json ]status | [json ]start NAME | [json ]stop NAME
//!           | [json ]restart NAME | [json ]signal NAME SIG
//! response: ok\n BODY   or   error: MESSAGE\n
//! ```
//!
//! `json` first asks for JSON: `status` gives an array with one object per
//! process, the others the object of the process they acted on. Without
//! it, `status` gives the SIGUSR1 table and the others one `NAME: STATE`
//! line.
//!
//! Only root and the user the host runs as (its effective uid) get in: the
//! socket is mode 0600 from the moment it exists (`connect(2)` refuses
//! everyone else with `EACCES`), and every accepted peer's `SO_PEERCRED`
//! is checked again, in case the mode was widened.
//!
//! Bounded, so that no client stalls the loop: every connection is
//! non-blocking and polled by the main loop; a request may be at most
//! [`MAX_REQUEST`] bytes; at most [`MAX_CLIENTS`] connections are open at
//! once (one more is told `error: busy` and closed); a client has
//! [`CLIENT_TIMEOUT`] to send its line and again to read its response, or
//! it is dropped.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use procsup::nix::poll::{PollFd, PollFlags};
use procsup::{ProcessStatus, Supervisor};

/// The longest request line, its newline included.
pub const MAX_REQUEST: usize = 4096;
/// The most connections served at once.
pub const MAX_CLIENTS: usize = 16;
/// How long a client may take to send its request, and then to read the
/// response.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
/// The most connections accepted in one turn of the loop: a flood of them
/// waits in the kernel's backlog while the loop goes on.
const ACCEPTS_PER_TURN: usize = 64;
/// How long the listener is not polled after an accept failed for want of
/// a file descriptor (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): the
/// connection waits in the backlog and keeps the listener readable, so
/// polling it at once would spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// The most bytes read from one client in one turn of the loop.
const READ_CHUNK: usize = 1024;

/// The socket's file name in a state directory.
pub const FILE_NAME: &str = "control";

/// Where the socket is: `--control PATH`, else `DIR/control` with
/// `--state-dir DIR`.
pub fn socket_path(control: Option<&Path>, state_dir: Option<&Path>) -> Option<PathBuf> {
    control.map(Path::to_owned).or_else(|| state_dir.map(|d| d.join(FILE_NAME)))
}

/// Whether a peer with uid `peer` may use the socket of a host whose
/// effective uid is `own`: root and the host's own user only.
pub fn allowed(peer: u32, own: u32) -> bool {
    peer == 0 || peer == own
}

/// The uid of the process at the other end of `stream` (`SO_PEERCRED`:
/// who connected, as of its `connect(2)`).
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    Ok(getsockopt(stream, PeerCredentials)?.uid())
}

/// The listening socket and the connections being served.
pub struct Control {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file made: only that file is removed
    /// on drop, not one another host put there since.
    file: (u64, u64),
    euid: u32,
    clients: Vec<Client>,
    /// Until when the listener is not polled (see [`ACCEPT_PAUSE`]).
    paused_until: Option<Instant>,
}

struct Client {
    stream: UnixStream,
    /// The request so far (no newline yet).
    input: Vec<u8>,
    /// The response, once there is one, and how much of it was written.
    output: Option<(Vec<u8>, usize)>,
    /// Dropped at this instant, unless it is done by then.
    deadline: Instant,
}

impl Control {
    /// Listens at `path`, mode 0600. A socket file there that nobody
    /// listens on (left by a host that died) is replaced; one a host
    /// answers on, or any other file, is an error.
    pub fn bind(path: &Path) -> Result<Control, String> {
        let shown = path.display();
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => return Err(format!("control socket {shown}: a supervise is already listening there")),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
                    .map_err(|e| format!("control socket {shown}: removing a stale one: {e}"))?,
                Err(e) => return Err(format!("control socket {shown}: cannot tell whether it is in use: {e}")),
            },
            Ok(_) => return Err(format!("control socket {shown}: exists and is not a socket; left alone")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("control socket {shown}: {e}")),
        }
        // bind(2) makes the file with the umask applied: under 0177 it is
        // 0600 from the start, with no moment of a wider mode. The umask is
        // the process's; another thread creating a file meanwhile would
        // only get a narrower mode, and this host's other threads write
        // to stdout and stderr only.
        use procsup::nix::sys::stat::{umask, Mode};
        let old = umask(Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        umask(old);
        let listener = bound.map_err(|e| format!("control socket {shown}: {e}"))?;
        let fail = |e: io::Error| {
            let _ = std::fs::remove_file(path);
            format!("control socket {shown}: {e}")
        };
        // Whatever the umask did, the mode is 0600 before anyone is served.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        let meta = std::fs::symlink_metadata(path).map_err(fail)?;
        let euid = procsup::nix::unistd::geteuid().as_raw();
        Ok(Control {
            listener,
            path: path.to_owned(),
            file: (meta.dev(), meta.ino()),
            euid,
            clients: Vec::new(),
            paused_until: None,
        })
    }

    /// What the loop polls: the listener, and each client for its request
    /// or for room for its response.
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        // A paused listener is still polled, for nothing: the caller's
        // indices stay put.
        let want = if self.paused_until.is_some() { PollFlags::empty() } else { PollFlags::POLLIN };
        let mut fds = vec![PollFd::new(self.listener.as_fd(), want)];
        for c in &self.clients {
            let want = if c.output.is_some() { PollFlags::POLLOUT } else { PollFlags::POLLIN };
            fds.push(PollFd::new(c.stream.as_fd(), want));
        }
        fds
    }

    /// How long the loop may sleep before a client is due to be dropped,
    /// in whole milliseconds rounded up (poll's unit: rounded down, the
    /// loop would spin through the last one).
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        let deadlines = self.clients.iter().map(|c| c.deadline).chain(self.paused_until);
        let left = deadlines.map(|d| d.saturating_duration_since(now)).min()?;
        Some(Duration::from_millis(u64::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u64::MAX)))
    }

    /// No client is being served and the listener is not paused: nothing
    /// to do until poll says the listener is readable.
    pub fn is_idle(&self) -> bool {
        self.clients.is_empty() && self.paused_until.is_none()
    }

    /// Serves what can be served without blocking: accepts new clients,
    /// reads requests, runs them, writes responses, drops clients that are
    /// done, gone, or late.
    pub fn handle(&mut self, sup: &mut Supervisor, now: Instant) {
        self.accept(now);
        for c in &mut self.clients {
            if c.output.is_none() {
                if let Some(request) = c.read(now) {
                    c.respond(serve(sup, &request, now), now);
                }
            }
        }
        self.clients.retain_mut(|c| c.deadline > now && c.flush());
    }

    fn accept(&mut self, now: Instant) {
        if self.paused_until.is_some_and(|t| now < t) {
            return;
        }
        self.paused_until = None;
        for _ in 0..ACCEPTS_PER_TURN {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if out_of_fds(&e) => {
                    // The backlog keeps the connection; try again later.
                    self.paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
                // EAGAIN, or a connection that went away meanwhile.
                Err(_) => return,
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let mut c = Client { stream, input: Vec::new(), output: None, deadline: now + CLIENT_TIMEOUT };
            if !peer_uid(&c.stream).is_ok_and(|uid| allowed(uid, self.euid)) {
                c.respond(Err("permission denied".into()), now);
            } else if self.clients.len() >= MAX_CLIENTS {
                c.respond(Err(format!("busy: {MAX_CLIENTS} clients are being served; try again")), now);
            }
            match c.output {
                // A refusal is one short line: written now if it fits, else
                // not at all; the client is closed either way.
                Some(_) => {
                    let _ = c.flush();
                }
                None => self.clients.push(c),
            }
        }
    }
}

/// An accept error that only fewer open files (or more memory) can fix.
fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

impl Drop for Control {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.file);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Client {
    /// Reads what is there; the request once it is whole (a newline, or
    /// the end of the stream after some bytes). A request too long is an
    /// error response of its own.
    fn read(&mut self, now: Instant) -> Option<Result<String, String>> {
        let mut buf = [0u8; READ_CHUNK];
        let n = match self.stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => return None,
            Err(e) => return Some(Err(format!("reading the request: {e}"))),
        };
        if n == 0 && self.input.is_empty() {
            // Gone without a word: nothing to answer.
            self.deadline = now;
            return None;
        }
        let line = match buf[..n].iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.input.extend_from_slice(&buf[..i]);
                true
            }
            None => {
                self.input.extend_from_slice(&buf[..n]);
                n == 0
            }
        };
        if self.input.len() >= MAX_REQUEST {
            return Some(Err(format!("request longer than {} bytes", MAX_REQUEST - 1)));
        }
        if !line {
            return None;
        }
        Some(String::from_utf8(std::mem::take(&mut self.input)).map_err(|_| "request is not UTF-8".to_owned()))
    }

    fn respond(&mut self, response: Result<String, String>, now: Instant) {
        let text = match response {
            Ok(body) => format!("ok\n{body}"),
            Err(e) => format!("error: {}\n", e.replace('\n', " ")),
        };
        self.output = Some((text.into_bytes(), 0));
        self.deadline = now + CLIENT_TIMEOUT;
    }

    /// Writes what the socket takes of the response; whether the client
    /// is still to be kept (not done, not gone).
    fn flush(&mut self) -> bool {
        let Some((out, written)) = self.output.as_mut() else { return true };
        while *written < out.len() {
            match self.stream.write(&out[*written..]) {
                Ok(0) => return false,
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        false
    }
}

/// A request, parsed.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    json: bool,
    command: Command,
}

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Status,
    Start(String),
    Stop(String),
    Restart(String),
    Signal(String, procsup::Signal),
}

/// `[json ]VERB[ ARGS]`. A name is everything after the verb (it may hold
/// blanks); for `signal`, everything between the verb and the last word.
fn parse_request(line: &str) -> Result<Request, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (json, line) = match line.strip_prefix("json ") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let name = || match rest {
        "" => Err(format!("{verb} needs a NAME")),
        name => Ok(name.to_owned()),
    };
    let command = match verb {
        "status" if rest.is_empty() => Command::Status,
        "status" => return Err("status takes no NAME".into()),
        "start" => Command::Start(name()?),
        "stop" => Command::Stop(name()?),
        "restart" => Command::Restart(name()?),
        "signal" => {
            let (name, sig) = rest.rsplit_once(' ').ok_or("signal needs a NAME and a SIGNAL")?;
            if name.is_empty() {
                return Err("signal needs a NAME and a SIGNAL".into());
            }
            Command::Signal(name.to_owned(), super::parse_signal(sig)?)
        }
        "" => return Err("empty request".into()),
        other => {
            return Err(format!("unknown command {other:?}: expected status, start, stop, restart or signal"));
        }
    };
    Ok(Request { json, command })
}

/// Runs a request against the supervisor: the response body, or the error.
fn serve(sup: &mut Supervisor, request: &Result<String, String>, now: Instant) -> Result<String, String> {
    let request = parse_request(request.as_ref()?)?;
    let name = match &request.command {
        Command::Status if request.json => return Ok(status_json(sup, now)),
        Command::Status => return Ok(super::status_table(sup, now)),
        Command::Start(name) => sup.start_process(name, now).map(|()| name),
        Command::Stop(name) => sup.stop_process(name, now).map(|()| name),
        Command::Restart(name) => sup.restart_process(name, now).map(|()| name),
        Command::Signal(name, sig) => sup.signal_process(name, *sig).map(|()| name),
    }
    .map_err(|e| e.to_string())?;
    let st = sup.status(name).map_err(|e| e.to_string())?;
    Ok(match request.json {
        true => format!("{}\n", process_json(sup, &st, now)),
        false => format!("{}: {}\n", st.name, st.state),
    })
}

/// Every process as a JSON array, one object each, on one line.
fn status_json(sup: &Supervisor, now: Instant) -> String {
    let objects: Vec<String> = sup.statuses().iter().map(|st| process_json(sup, st, now)).collect();
    format!("[{}]\n", objects.join(","))
}

/// One process as a JSON object: what the status table shows, with
/// numbers as numbers (seconds with millisecond precision) and `null`
/// where there is nothing.
fn process_json(sup: &Supervisor, st: &ProcessStatus, now: Instant) -> String {
    let null = || "null".to_owned();
    let text = |s: &str| json_string(s);
    let secs = |d: Duration| format!("{:.3}", d.as_secs_f64());
    let memory = sup.usage(&st.name).ok().flatten().and_then(|u| u.memory_current);
    let fields = [
        ("name", text(&st.name)),
        ("group", st.group.as_deref().map_or_else(null, text)),
        ("state", text(st.state.as_str())),
        ("pid", st.pid.map_or_else(null, |p| p.to_string())),
        ("uptime_s", st.uptime(now).map_or_else(null, secs)),
        ("restarts", st.restart_count.to_string()),
        ("exits", st.exit_count.to_string()),
        ("last_exit", st.last_exit.map_or_else(null, |e| text(&e.to_string()))),
        ("last_cause", st.last_cause.map_or_else(null, |c| text(c.as_str()))),
        ("restart_in_s", st.next_retry_at.map_or_else(null, |t| secs(t.saturating_duration_since(now)))),
        ("give_up_remaining", st.give_up_remaining.map_or_else(null, |n| n.to_string())),
        ("containment", st.containment.map_or_else(null, |c| text(c.as_str()))),
        ("memory_bytes", memory.map_or_else(null, |m| m.to_string())),
        ("manual_stop", st.manual_stop.to_string()),
        ("status_text", st.status_text.as_deref().map_or_else(null, text)),
    ];
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

/// `s` as a JSON string (RFC 8259): quoted, with `"`, `\` and every
/// control character escaped.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub const USAGE: &str = "usage: supervise ctl [--state-dir DIR | --control PATH] [--json] COMMAND
commands: status | start NAME | stop NAME | restart NAME | signal NAME SIG
exit: 0 done, 1 the supervisor refused (unknown name, ...), 2 no answer
      (cannot connect, not allowed, busy, bad usage)";

/// `supervise ctl ...`: sends one request and prints the answer.
pub fn client_main(mut argv: impl Iterator<Item = String>) -> ExitCode {
    let usage_error = |msg: &str| {
        eprintln!("supervise ctl: {msg}\n{USAGE}");
        ExitCode::from(2)
    };
    let (mut control, mut state_dir, mut json, mut words) = (None, None, false, Vec::new());
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--json" => json = true,
            "--control" | "--state-dir" => match argv.next() {
                Some(v) if arg == "--control" => control = Some(PathBuf::from(v)),
                Some(v) => state_dir = Some(PathBuf::from(v)),
                None => return usage_error(&format!("{arg} needs a value")),
            },
            _ => words.push(arg),
        }
    }
    let Some(path) = socket_path(control.as_deref(), state_dir.as_deref()) else {
        return usage_error("where is supervise? give --state-dir DIR or --control PATH");
    };
    let arity = match words.first().map(String::as_str) {
        Some("status") => 1,
        Some("start" | "stop" | "restart") => 2,
        Some("signal") => 3,
        Some(other) => return usage_error(&format!("unknown command {other:?}")),
        None => return usage_error("no command"),
    };
    if words.len() != arity {
        return usage_error(&format!("{} takes {} argument(s)", words[0], arity - 1));
    }
    if words[1..].iter().any(|w| w.is_empty() || w.contains(['\n', '\r'])) {
        return usage_error("a NAME or SIG is empty or holds a line break");
    }
    let request = format!("{}{}\n", if json { "json " } else { "" }, words.join(" "));
    match ask(&path, &request) {
        Ok(answer) => answer_exit(&path, &answer),
        Err(e) => {
            eprintln!("supervise ctl: {e}");
            ExitCode::from(2)
        }
    }
}

/// Sends `request` to the socket at `path` and reads the whole answer.
fn ask(path: &Path, request: &str) -> Result<String, String> {
    let shown = path.display();
    let mut stream = UnixStream::connect(path).map_err(|e| {
        format!("cannot connect to {shown}: {e} (is a supervise running with that --state-dir or --control?)")
    })?;
    let limit = Some(Duration::from_secs(10));
    let io_error = |e: io::Error| format!("{shown}: {e}");
    stream.set_read_timeout(limit).and_then(|()| stream.set_write_timeout(limit)).map_err(io_error)?;
    // A refused peer may be closed before its request is read: a failed
    // write is judged by the answer that may still be there.
    let sent = stream.write_all(request.as_bytes());
    match read_answer(&mut stream) {
        (answer, _) if !answer.is_empty() => Ok(answer),
        (_, Some(e)) => Err(format!("{shown}: reading the answer: {e}")),
        (_, None) => Err(match sent {
            Err(e) => format!("{shown}: sending the request: {e}"),
            Ok(()) => format!("{shown}: closed without an answer"),
        }),
    }
}

/// Everything the host wrote, up to the end of the stream or an error:
/// a host that closes without reading the whole request (a refusal) makes
/// the read after its answer fail with `ECONNRESET`, the answer still
/// counts.
fn read_answer(stream: &mut UnixStream) -> (String, Option<io::Error>) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let error = loop {
        match stream.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Some(e),
        }
    };
    (String::from_utf8_lossy(&bytes).into_owned(), error)
}

fn answer_exit(path: &Path, answer: &str) -> ExitCode {
    let (first, body) = answer.split_once('\n').unwrap_or((answer, ""));
    if first == "ok" {
        print!("{body}");
        return ExitCode::SUCCESS;
    }
    match first.strip_prefix("error: ") {
        Some("permission denied") => {
            eprintln!(
                "supervise ctl: {}: permission denied: only root and the user supervise runs as may use it",
                path.display()
            );
            ExitCode::from(2)
        }
        Some(e) if e.starts_with("busy") => {
            eprintln!("supervise ctl: {}: {e}", path.display());
            ExitCode::from(2)
        }
        Some(e) => {
            eprintln!("supervise ctl: {e}");
            ExitCode::FAILURE
        }
        None => {
            eprintln!("supervise ctl: {}: unexpected answer {first:?}", path.display());
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_and_the_hosts_own_user_are_allowed() {
        assert!(allowed(0, 1000), "root");
        assert!(allowed(1000, 1000), "the host's own user");
        assert!(!allowed(65534, 1000), "someone else");
        assert!(!allowed(1000, 0), "a user, against a root host");
        assert!(allowed(0, 0));
    }

    #[test]
    fn the_peer_of_a_socket_pair_is_this_process_s_user() {
        let (a, _b) = UnixStream::pair().unwrap();
        let euid = procsup::nix::unistd::geteuid().as_raw();
        assert_eq!(peer_uid(&a).unwrap(), euid);
        assert!(allowed(peer_uid(&a).unwrap(), euid));
    }

    #[test]
    fn requests_parse_with_names_that_hold_blanks() {
        let req = |json, command| Ok(Request { json, command });
        assert_eq!(parse_request("status"), req(false, Command::Status));
        assert_eq!(parse_request("json status"), req(true, Command::Status));
        assert_eq!(parse_request("stop web:0"), req(false, Command::Stop("web:0".into())));
        assert_eq!(parse_request("json start my app"), req(true, Command::Start("my app".into())));
        assert_eq!(parse_request("restart x\r"), req(false, Command::Restart("x".into())));
        assert_eq!(
            parse_request("signal my app hup"),
            req(false, Command::Signal("my app".into(), procsup::Signal::SIGHUP))
        );
        for bad in ["", "status web", "stop", "signal web", "signal  TERM", "signal web NOPE", "reboot", "json"] {
            assert!(parse_request(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(json_string("web"), "\"web\"");
        assert_eq!(json_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(json_string("l1\nl2\t\r\u{1}\u{7f}"), "\"l1\\nl2\\t\\r\\u0001\\u007f\"");
        assert_eq!(json_string("café ✓"), "\"café ✓\"");
    }

    #[test]
    fn socket_path_prefers_control_over_the_state_dir() {
        let (c, d) = (Path::new("/run/x.sock"), Path::new("/var/lib/sv"));
        assert_eq!(socket_path(Some(c), Some(d)).unwrap(), c);
        assert_eq!(socket_path(None, Some(d)).unwrap(), d.join("control"));
        assert_eq!(socket_path(None, None), None);
    }

    #[test]
    fn bind_makes_a_0600_socket_replaces_a_stale_one_and_refuses_a_live_one_or_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("control");
        drop(UnixListener::bind(&path).unwrap()); // stale: nobody listens
        let control = Control::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = Control::bind(&path).err().unwrap();
        assert!(err.contains("already listening"), "{err}");
        drop(control);
        assert!(!path.exists(), "removed on drop");
        std::fs::write(&path, "mine").unwrap();
        let err = Control::bind(&path).err().unwrap();
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
    }

    /// A client that sends nothing, or too much, or reads nothing, is
    /// dropped by its deadline; the clock is the one `handle` is given.
    #[test]
    fn clients_are_bounded_in_size_number_and_time() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("control");
        let mut control = Control::bind(&path).unwrap();
        let mut sup = Supervisor::new();
        let t0 = Instant::now();
        let silent: Vec<UnixStream> = (0..MAX_CLIENTS).map(|_| UnixStream::connect(&path).unwrap()).collect();
        control.handle(&mut sup, t0);
        assert_eq!(control.clients.len(), MAX_CLIENTS);
        let mut extra = UnixStream::connect(&path).unwrap();
        control.handle(&mut sup, t0);
        let (answer, _) = read_answer(&mut extra);
        assert!(answer.starts_with("error: busy"), "{answer}");
        assert_eq!(control.timeout(t0), Some(CLIENT_TIMEOUT));
        control.handle(&mut sup, t0 + CLIENT_TIMEOUT);
        assert!(control.clients.is_empty(), "the silent ones are dropped at their deadline");
        for mut s in silent {
            let mut buf = Vec::new();
            assert_eq!(s.read_to_end(&mut buf).unwrap(), 0, "closed without an answer");
        }

        let mut long = UnixStream::connect(&path).unwrap();
        long.write_all(&[b'x'; MAX_REQUEST + 10]).unwrap();
        for _ in 0..10 {
            control.handle(&mut sup, t0 + CLIENT_TIMEOUT);
        }
        let (answer, _) = read_answer(&mut long);
        assert!(answer.starts_with("error: request longer than 4095 bytes"), "{answer}");

        let mut ok = UnixStream::connect(&path).unwrap();
        ok.write_all(b"json status\n").unwrap();
        control.handle(&mut sup, t0);
        let (answer, error) = read_answer(&mut ok);
        assert_eq!(answer, "ok\n[]\n");
        assert!(error.is_none(), "{error:?}");
        assert!(control.clients.is_empty());
    }
}
