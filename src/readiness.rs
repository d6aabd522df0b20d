//! When a child counts as started: its readiness source, the start timeout,
//! the watchdog, liveness probes, and the sd_notify message parser.
//!
//! All of it is data and pure functions; the supervisor's side is in
//! `supervisor/ready.rs`, the sockets and pipes in `sys/unix/notify.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::spec::{check_duration, Output, ProcessSpec};

/// The largest sd_notify datagram read; a longer one is dropped whole
/// (systemd reads at most `PIPE_BUF` bytes too).
pub const MAX_NOTIFY_LEN: usize = 4096;

/// What makes a spawned child `Running` (ready).
///
/// ```
/// use std::time::Duration;
/// use procsup::{ProcessSpec, Readiness};
/// let spec = ProcessSpec::new("db", "postgres")
///     .ready(Readiness::Notify)
///     .start_timeout(Duration::from_secs(90));
/// assert_eq!(spec.get_ready(), &Readiness::Notify);
/// let spec = ProcessSpec::new("web", "server").ready(Readiness::output_contains("listening on"));
/// assert!(matches!(spec.get_ready(), Readiness::OutputLine(_)));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Readiness {
    /// Alive for this long (the default, 1 s; the same as
    /// [`ProcessSpec::start_grace`]). A guess, not a signal: no
    /// [`Event::Ready`](crate::Event::Ready) is emitted.
    Grace(Duration),
    /// The host decides: it calls
    /// [`Supervisor::mark_ready`](crate::Supervisor::mark_ready) after a
    /// check of its own (a TCP connect, an HTTP request).
    Host,
    /// A captured output line matches (stdout or stderr must be
    /// [`Output::Capture`]).
    OutputLine(LineMatcher),
    /// s6's `notification-fd`: the child gets the write end of a pipe as
    /// fd `n` (3 or more, and not the target of a passed fd) and writes a
    /// newline to it when it is ready.
    Fd(i32),
    /// systemd's sd_notify protocol: the child gets `NOTIFY_SOCKET` and
    /// sends `READY=1` (see [`NotifyMessage`] for every key honoured).
    /// The socket is a datagram socket in the abstract namespace, one per
    /// child: its address starts with `@`, which a client replaces with a
    /// NUL byte before it connects, as `sd_notify(3)` says (libsystemd,
    /// python-systemd and the `sd-notify` crates do). In Python:
    /// `addr = os.environ["NOTIFY_SOCKET"]; addr = "\0" + addr[1:] if
    /// addr[0] == "@" else addr`.
    Notify,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::Grace(Duration::from_secs(1))
    }
}

impl Readiness {
    /// Ready when a captured line contains `text`.
    pub fn output_contains(text: impl AsRef<[u8]>) -> Self {
        Readiness::OutputLine(LineMatcher::Contains(text.as_ref().to_vec()))
    }

    /// Ready when `f` accepts a captured line (raw bytes, without `\n`).
    ///
    /// ```
    /// use procsup::Readiness;
    /// let r = Readiness::output_matches(|line| line.starts_with(b"ready"));
    /// # drop(r);
    /// ```
    pub fn output_matches(f: impl Fn(&[u8]) -> bool + Send + Sync + 'static) -> Self {
        Readiness::OutputLine(LineMatcher::Fn(Arc::new(f)))
    }

    /// `grace`, `host`, `output`, `fd` or `notify`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Readiness::Grace(_) => "grace",
            Readiness::Host => "host",
            Readiness::OutputLine(_) => "output",
            Readiness::Fd(_) => "fd",
            Readiness::Notify => "notify",
        }
    }
}

/// A line predicate for [`LineMatcher::Fn`].
pub type LineFn = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// How [`Readiness::OutputLine`] recognises its line.
#[derive(Clone)]
#[non_exhaustive]
pub enum LineMatcher {
    /// The line contains these bytes.
    Contains(Vec<u8>),
    /// The function accepts the line.
    Fn(LineFn),
}

impl LineMatcher {
    /// Whether `line` matches.
    ///
    /// ```
    /// use procsup::LineMatcher;
    /// let m = LineMatcher::Contains(b"up".to_vec());
    /// assert!(m.matches(b"server up on :80"));
    /// assert!(!m.matches(b"starting"));
    /// ```
    pub fn matches(&self, line: &[u8]) -> bool {
        match self {
            LineMatcher::Contains(needle) => {
                needle.is_empty() || line.windows(needle.len()).any(|w| w == needle.as_slice())
            }
            LineMatcher::Fn(f) => f(line),
        }
    }
}

impl fmt::Debug for LineMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineMatcher::Contains(s) => write!(f, "Contains({:?})", String::from_utf8_lossy(s)),
            LineMatcher::Fn(_) => f.write_str("Fn(..)"),
        }
    }
}

impl PartialEq for LineMatcher {
    /// Substrings compare by value; closures only to themselves.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (LineMatcher::Contains(a), LineMatcher::Contains(b)) => a == b,
            (LineMatcher::Fn(a), LineMatcher::Fn(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// A liveness probe the host runs, timed as Kubernetes times its probes.
///
/// Once the child is ready, after `initial_delay`, the supervisor emits
/// [`Event::ProbeDue`](crate::Event::ProbeDue) every `period`; the host
/// runs any check it likes and answers with
/// [`Supervisor::probe_result`](crate::Supervisor::probe_result). No answer
/// within `timeout` is a failure. After `failure_threshold` failures in a
/// row the child is stopped (reason `probe`) and its restart policy applies.
///
/// ```
/// use std::time::Duration;
/// use procsup::{Probe, ProcessSpec};
/// let spec = ProcessSpec::new("web", "server")
///     .probe(Probe::every(Duration::from_secs(10)).timeout(Duration::from_secs(2)).failure_threshold(3));
/// assert_eq!(spec.get_probe().unwrap().get_failure_threshold(), 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub(crate) initial_delay: Duration,
    pub(crate) period: Duration,
    pub(crate) timeout: Duration,
    pub(crate) failure_threshold: u32,
}

impl Probe {
    /// A probe every `period`, no initial delay, a 1 s timeout and a
    /// failure threshold of 3 (Kubernetes' defaults but the period).
    pub fn every(period: Duration) -> Self {
        Probe { initial_delay: Duration::ZERO, period, timeout: Duration::from_secs(1), failure_threshold: 3 }
    }

    /// The wait after readiness before the first probe.
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }

    /// How long the host has to answer a probe.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Failures in a row that stop the child (at least 1).
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n;
        self
    }

    /// The initial delay.
    pub fn get_initial_delay(&self) -> Duration {
        self.initial_delay
    }
    /// The period.
    pub fn get_period(&self) -> Duration {
        self.period
    }
    /// The timeout.
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }
    /// The failure threshold.
    pub fn get_failure_threshold(&self) -> u32 {
        self.failure_threshold
    }
}

/// One sd_notify datagram, parsed. Keys not listed are ignored, as are
/// lines that are not `KEY=VALUE` and values that do not parse.
///
/// `MAINPID=` is ignored (and logged): the supervisor only ever tracks,
/// signals and reaps the child it spawned, and a pid named by a message
/// could be anything, or be recycled.
///
/// ```
/// use procsup::NotifyMessage;
/// let m = NotifyMessage::parse(b"READY=1\nSTATUS=serving 3 ports\nFOO=bar").unwrap();
/// assert!(m.ready);
/// assert_eq!(m.status.as_deref(), Some("serving 3 ports"));
/// assert!(NotifyMessage::parse(b"\xff\0garbage").is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotifyMessage {
    /// `READY=1`: startup (or a reload) is finished.
    pub ready: bool,
    /// `STATUS=`: free-form status text (lossy UTF-8).
    pub status: Option<String>,
    /// `STOPPING=1`: the child is shutting down of its own accord; its
    /// watchdog, probes and start timeout are off from then on, and its
    /// exit is judged by the restart policy as usual.
    pub stopping: bool,
    /// `RELOADING=1`: the child is reloading its configuration; `READY=1`
    /// ends the reload.
    pub reloading: bool,
    /// `MONOTONIC_USEC=`: the child's `CLOCK_MONOTONIC` when it sent
    /// `RELOADING=1` (reported, not used for timing).
    pub monotonic_usec: Option<u64>,
    /// `ERRNO=`: the child's last error number.
    pub errno: Option<i32>,
    /// `WATCHDOG=1`: a watchdog ping.
    pub watchdog_ping: bool,
    /// `WATCHDOG=trigger`: the child asks to be treated as hung.
    pub watchdog_trigger: bool,
    /// `EXTEND_TIMEOUT_USEC=`: the start (or reload) timeout is moved to at
    /// least this many microseconds from now.
    pub extend_timeout_usec: Option<u64>,
    /// `MAINPID=` was present (and ignored).
    pub mainpid: bool,
}

impl NotifyMessage {
    /// `READY=1` alone (what an s6 notification fd's newline means).
    pub fn ready() -> Self {
        NotifyMessage { ready: true, ..Default::default() }
    }

    /// Parses one datagram. `None` when it is malformed: longer than
    /// [`MAX_NOTIFY_LEN`], holding a NUL byte, or without a single
    /// `KEY=VALUE` line with a key of `A-Z`, `0-9` and `_`.
    pub fn parse(data: &[u8]) -> Option<NotifyMessage> {
        if data.len() > MAX_NOTIFY_LEN || data.contains(&0) {
            return None;
        }
        let mut m = NotifyMessage::default();
        let mut assignments = 0;
        for line in data.split(|&b| b == b'\n') {
            let Some(eq) = line.iter().position(|&b| b == b'=') else { continue };
            let (key, value) = (&line[..eq], &line[eq + 1..]);
            if key.is_empty() || !key.iter().all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
                continue;
            }
            assignments += 1;
            let text = || std::str::from_utf8(value).ok();
            let number = || text().and_then(|s| s.parse::<u64>().ok());
            match key {
                b"READY" => m.ready |= value == b"1",
                b"STATUS" => m.status = Some(String::from_utf8_lossy(value).into_owned()),
                b"STOPPING" => m.stopping |= value == b"1",
                b"RELOADING" => m.reloading |= value == b"1",
                b"MONOTONIC_USEC" => m.monotonic_usec = number().or(m.monotonic_usec),
                b"ERRNO" => m.errno = text().and_then(|s| s.parse::<i32>().ok()).or(m.errno),
                b"WATCHDOG" if value == b"1" => m.watchdog_ping = true,
                b"WATCHDOG" if value == b"trigger" => m.watchdog_trigger = true,
                b"EXTEND_TIMEOUT_USEC" => m.extend_timeout_usec = number().or(m.extend_timeout_usec),
                b"MAINPID" => m.mainpid = true,
                _ => {}
            }
        }
        (assignments > 0).then_some(m)
    }
}

impl ProcessSpec {
    /// What makes a child `Running`: see [`Readiness`]. Default:
    /// `Readiness::Grace(1s)`. `Readiness::Grace(d)` is the same as
    /// [`start_grace(d)`](ProcessSpec::start_grace).
    ///
    /// Whatever the source, an exit before readiness is a failed start, and
    /// readiness resets the failure streak.
    pub fn ready(mut self, source: Readiness) -> Self {
        if let Readiness::Grace(d) = source {
            self.start_grace = d;
        }
        self.ready = source;
        self
    }

    /// A child not ready this long after its spawn is a failed start
    /// (systemd's `TimeoutStartSec`): it gets
    /// [`Event::StartTimeout`](crate::Event::StartTimeout), is stopped
    /// with the stop signal (SIGKILL after the stop timeout), and backoff
    /// or give-up applies as for any failed start. `EXTEND_TIMEOUT_USEC=`
    /// moves it. It also bounds a [reload](crate::Supervisor::reload_process)
    /// of a `Notify` child. Default: none.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = Some(timeout);
        self
    }

    /// A ready child must ping (`WATCHDOG=1` over sd_notify) at least this
    /// often (systemd's `WatchdogSec`); it gets `WATCHDOG_USEC` and
    /// `WATCHDOG_PID` (its own pid, so that its children, which inherit the
    /// environment, know the watchdog is not theirs). A missed ping (or `WATCHDOG=trigger`) is [`Event::Watchdog`](crate::Event::Watchdog):
    /// the child is stopped and its restart policy applies (the exit counts
    /// as a failure whatever its code). The watchdog is armed when the
    /// child becomes ready (pings before that are not needed); each ping
    /// moves it to the ping plus the interval. Needs [`Readiness::Notify`].
    pub fn watchdog(mut self, interval: Duration) -> Self {
        self.watchdog = Some(interval);
        self
    }

    /// A liveness probe run by the host: see [`Probe`].
    pub fn probe(mut self, probe: Probe) -> Self {
        self.probe = Some(probe);
        self
    }

    /// The signal [`reload_process`](crate::Supervisor::reload_process)
    /// sends (default SIGHUP).
    pub fn reload_signal(mut self, signal: Signal) -> Self {
        self.reload_signal = signal;
        self
    }

    /// The readiness source.
    pub fn get_ready(&self) -> &Readiness {
        &self.ready
    }
    /// The start timeout.
    pub fn get_start_timeout(&self) -> Option<Duration> {
        self.start_timeout
    }
    /// The watchdog interval.
    pub fn get_watchdog(&self) -> Option<Duration> {
        self.watchdog
    }
    /// The liveness probe.
    pub fn get_probe(&self) -> Option<&Probe> {
        self.probe.as_ref()
    }
    /// The reload signal.
    pub fn get_reload_signal(&self) -> Signal {
        self.reload_signal
    }

    /// The readiness part of `validate`.
    pub(crate) fn check_readiness(&self) -> Result<(), String> {
        match &self.ready {
            Readiness::Fd(n) if *n < 3 => return Err(format!("notification fd {n} must be 3 or more")),
            Readiness::OutputLine(_)
                if ![&self.stdout, &self.stderr].iter().any(|o| matches!(o, Output::Capture | Output::Log(_))) =>
            {
                return Err("readiness by output line needs a captured stream".into());
            }
            _ => {}
        }
        if let Some(t) = self.start_timeout {
            check_duration("start timeout", t)?;
            if t.is_zero() {
                return Err("the start timeout must be longer than zero".into());
            }
        }
        if let Some(w) = self.watchdog {
            check_duration("watchdog", w)?;
            if w.is_zero() {
                return Err("the watchdog interval must be longer than zero".into());
            }
            if self.ready != Readiness::Notify {
                return Err("a watchdog needs Readiness::Notify (pings come over sd_notify)".into());
            }
        }
        if let Some(p) = &self.probe {
            for (what, d) in
                [("probe delay", p.initial_delay), ("probe period", p.period), ("probe timeout", p.timeout)]
            {
                check_duration(what, d)?;
            }
            if p.period.is_zero() || p.timeout.is_zero() {
                return Err("the probe period and timeout must be longer than zero".into());
            }
            if p.failure_threshold == 0 {
                return Err("the probe failure threshold must be at least 1".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_honoured_key() {
        let m = NotifyMessage::parse(
            b"READY=1\nSTATUS=a=b c\nSTOPPING=1\nRELOADING=1\nMONOTONIC_USEC=123\nERRNO=2\nWATCHDOG=1\nEXTEND_TIMEOUT_USEC=5000000\nMAINPID=7\n",
        )
        .unwrap();
        assert!(m.ready && m.stopping && m.reloading && m.watchdog_ping && m.mainpid);
        assert_eq!(m.status.as_deref(), Some("a=b c"));
        assert_eq!((m.monotonic_usec, m.errno, m.extend_timeout_usec), (Some(123), Some(2), Some(5_000_000)));
        assert!(!m.watchdog_trigger);
        assert!(NotifyMessage::parse(b"WATCHDOG=trigger").unwrap().watchdog_trigger);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_ignored() {
        let m = NotifyMessage::parse(b"FDSTORE=1\nREADY=0\nERRNO=x\nnot a line\nlower=1").unwrap();
        assert_eq!(m, NotifyMessage::default());
        let m = NotifyMessage::parse(b"EXTEND_TIMEOUT_USEC=-5\nREADY=1").unwrap();
        assert_eq!(m, NotifyMessage::ready());
    }

    #[test]
    fn malformed_datagrams_are_none() {
        for bad in [&b""[..], b"\n\n", b"READY", b"=1", b"READY=1\0", b"\xff\xfe", b"ready=1"] {
            assert_eq!(NotifyMessage::parse(bad), None, "{bad:?}");
        }
        let mut long = b"STATUS=".to_vec();
        long.resize(MAX_NOTIFY_LEN + 1, b'x');
        assert_eq!(NotifyMessage::parse(&long), None);
        long.truncate(MAX_NOTIFY_LEN);
        assert_eq!(NotifyMessage::parse(&long).unwrap().status.unwrap().len(), MAX_NOTIFY_LEN - 7);
    }

    #[test]
    fn line_matchers() {
        assert!(LineMatcher::Contains(b"on :80".to_vec()).matches(b"listening on :80"));
        assert!(!LineMatcher::Contains(b"on :80".to_vec()).matches(b"on :8"));
        let f = Readiness::output_matches(|l| l.len() == 3);
        let Readiness::OutputLine(m) = &f else { unreachable!() };
        assert!(m.matches(b"abc") && !m.matches(b"ab"));
        assert_eq!(f.clone(), f);
        assert_ne!(f, Readiness::output_matches(|l| l.len() == 3));
    }

    #[test]
    fn readiness_specs_are_validated() {
        let ok = |s: ProcessSpec| s.validate().is_ok();
        let s = || ProcessSpec::new("a", "x");
        assert!(!ok(s().ready(Readiness::Fd(2))));
        assert!(ok(s().ready(Readiness::Fd(3))));
        // The notification fd and a passed fd cannot share a number.
        let sock = || std::sync::Arc::new(std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null").unwrap()));
        assert!(!ok(s().listen_fds([("web", sock())]).ready(Readiness::Fd(3))));
        assert!(ok(s().listen_fds([("web", sock())]).ready(Readiness::Fd(4))));
        assert!(!ok(s().pass_fd(7, sock()).ready(Readiness::Fd(7))));
        assert!(!ok(s().ready(Readiness::output_contains("up"))));
        assert!(ok(s().stderr(Output::Capture).ready(Readiness::output_contains("up"))));
        assert!(!ok(s().watchdog(Duration::from_secs(1))));
        assert!(!ok(s().ready(Readiness::Notify).watchdog(Duration::ZERO)));
        assert!(ok(s().ready(Readiness::Notify).watchdog(Duration::from_secs(1))));
        assert!(!ok(s().probe(Probe::every(Duration::ZERO))));
        assert!(!ok(s().probe(Probe::every(Duration::from_secs(1)).failure_threshold(0))));
        assert!(!ok(s().start_timeout(crate::MAX_DURATION * 2)));
        assert!(ok(s().start_timeout(Duration::from_secs(5)).probe(Probe::every(Duration::from_secs(1)))));
    }

    #[test]
    fn grace_is_start_grace() {
        let s = ProcessSpec::new("a", "x").ready(Readiness::Grace(Duration::from_secs(3)));
        assert_eq!(s.get_start_grace(), Duration::from_secs(3));
        let s = s.start_grace(Duration::from_secs(4));
        assert_eq!(s.get_ready(), &Readiness::Grace(Duration::from_secs(4)));
        assert_eq!(s.get_reload_signal(), Signal::SIGHUP);
        assert_eq!((s.get_start_timeout(), s.get_watchdog(), s.get_probe()), (None, None, None));
        let probe = Probe::every(Duration::from_secs(2))
            .initial_delay(Duration::from_secs(1))
            .timeout(Duration::from_millis(300))
            .failure_threshold(5);
        let s = s
            .ready(Readiness::Notify)
            .start_timeout(Duration::from_secs(9))
            .watchdog(Duration::from_secs(3))
            .probe(probe)
            .reload_signal(Signal::SIGUSR2);
        assert_eq!(s.get_ready(), &Readiness::Notify);
        assert_eq!(s.get_ready().as_str(), "notify");
        assert_eq!(
            (s.get_start_timeout(), s.get_watchdog()),
            (Some(Duration::from_secs(9)), Some(Duration::from_secs(3)))
        );
        let p = s.get_probe().unwrap();
        assert_eq!((p.get_initial_delay(), p.get_period()), (Duration::from_secs(1), Duration::from_secs(2)));
        assert_eq!((p.get_timeout(), p.get_failure_threshold()), (Duration::from_millis(300), 5));
        assert_eq!(s.get_reload_signal(), Signal::SIGUSR2);
        assert!(s.validate().is_ok());
    }
}
