//! Worker pools on the spec side: file descriptors passed to children
//! (systemd's socket-activation protocol) and per-instance specs.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::spec::ProcessSpec;

/// The most file descriptors one spec may pass to its child.
pub const MAX_PASSED_FDS: usize = 256;

/// The highest target number [`ProcessSpec::pass_fd`] accepts.
pub const MAX_FD_TARGET: RawFd = 65_535;

/// The variable each instance of a group gets: its number, from 0.
pub const INSTANCE_ENV: &str = "PROCSUP_INSTANCE";

/// The fds a spec passes: the listen fds (at 3, 4, ... in order), then the
/// others at the targets the host chose.
#[derive(Clone, Debug, Default)]
pub(crate) struct PassedFds {
    pub(crate) listen: Vec<(String, Arc<OwnedFd>)>,
    pub(crate) extra: Vec<(RawFd, Arc<OwnedFd>)>,
}

impl PassedFds {
    pub(crate) fn is_empty(&self) -> bool {
        self.listen.is_empty() && self.extra.is_empty()
    }

    /// Every (source, target) pair, listen fds first.
    pub(crate) fn moves(&self) -> impl Iterator<Item = (&Arc<OwnedFd>, RawFd)> {
        let listen = self.listen.iter().enumerate().map(|(i, (_, fd))| (fd, 3 + i as RawFd));
        listen.chain(self.extra.iter().map(|(t, fd)| (fd, *t)))
    }

    /// `LISTEN_FDNAMES`: the names joined by ':'.
    pub(crate) fn names(&self) -> String {
        self.listen.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(":")
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        let n = self.listen.len() + self.extra.len();
        if n > MAX_PASSED_FDS {
            return Err(format!("at most {MAX_PASSED_FDS} fds can be passed, got {n}"));
        }
        for (name, _) in &self.listen {
            if name.is_empty() || name.len() > 255 || name.contains(':') || name.chars().any(|c| !c.is_ascii_graphic())
            {
                return Err(format!(
                    "listen fd name {name:?} must be 1 to 255 printable ASCII characters without ':' or spaces"
                ));
            }
        }
        let first_free = 3 + self.listen.len() as RawFd;
        let mut seen: Vec<RawFd> = Vec::with_capacity(self.extra.len());
        for &(target, _) in &self.extra {
            if !(first_free..=MAX_FD_TARGET).contains(&target) {
                return Err(format!(
                    "fd target {target} must be between {first_free} (after the listen fds) and {MAX_FD_TARGET}"
                ));
            }
            if seen.contains(&target) {
                return Err(format!("fd target {target} is given twice"));
            }
            seen.push(target);
        }
        Ok(())
    }
}

/// How one instance's spec differs from its group's.
#[derive(Clone)]
pub(crate) struct PerInstance(pub(crate) Arc<dyn Fn(u32, ProcessSpec) -> ProcessSpec + Send + Sync>);

impl std::fmt::Debug for PerInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PerInstance(..)")
    }
}

impl ProcessSpec {
    /// Passes `fd` to the child as file descriptor `target` (at least 3,
    /// and after the [`listen_fds`](ProcessSpec::listen_fds), which take 3
    /// and up). The spec shares the fd (clones of the spec, such as the
    /// instances of a group, pass the same open file); each child gets its
    /// own duplicate, without close-on-exec. The child holds no other fd
    /// than these and 0 to 2: every other fd is marked close-on-exec in the
    /// child (`close_range(2)`, Linux 5.11 and later; elsewhere only what
    /// procsup opens is close-on-exec). procsup's own spawn (Linux x86_64)
    /// does this for every child, passed fds or not; the `Command` path
    /// (a spec with a `pre_exec` hook, other systems) only for one that is
    /// passed fds.
    /// In the child each source is first duplicated above the highest
    /// target, so a target may be any number below the child's
    /// `RLIMIT_NOFILE` (else the spawn fails with `EINVAL`).
    ///
    /// ```
    /// use std::os::fd::OwnedFd;
    /// use procsup::ProcessSpec;
    /// let file: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    /// let spec = ProcessSpec::new("reader", "cat").arg("/dev/fd/5").pass_fd(5, file);
    /// assert_eq!(spec.get_passed_fds().collect::<Vec<_>>().len(), 1);
    /// ```
    pub fn pass_fd(mut self, target: RawFd, fd: impl Into<Arc<OwnedFd>>) -> Self {
        self.fds.extra.push((target, fd.into()));
        self
    }

    /// Passes listening sockets (or any fds) the way systemd's socket
    /// activation does: they land at 3, 4, ... in this order, and the child
    /// gets `LISTEN_FDS` (their count), `LISTEN_FDNAMES` (the names joined
    /// by ':') and `LISTEN_PID` (its own pid, written in the child before
    /// exec). `sd_listen_fds(3)`, Python's `socket.socket(fileno=3)`, the
    /// `listenfd` crate and gunicorn read them. Calling it again appends.
    /// As with [`pass_fd`](ProcessSpec::pass_fd), the child holds no other
    /// fds than these and 0 to 2.
    ///
    /// ```
    /// use std::net::TcpListener;
    /// use std::os::fd::OwnedFd;
    /// use std::sync::Arc;
    /// use procsup::ProcessSpec;
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let http = Arc::new(OwnedFd::from(listener));
    /// let spec = ProcessSpec::new("web", "server").listen_fds([("http", http)]).instances(4);
    /// assert_eq!(spec.get_passed_fds().next().map(|(target, _)| target), Some(3));
    /// ```
    pub fn listen_fds<I, N>(mut self, fds: I) -> Self
    where
        I: IntoIterator<Item = (N, Arc<OwnedFd>)>,
        N: Into<String>,
    {
        self.fds.listen.extend(fds.into_iter().map(|(n, fd)| (n.into(), fd)));
        self
    }

    /// The fds passed to the child: (target number, source fd), listen fds
    /// first.
    pub fn get_passed_fds(&self) -> impl Iterator<Item = (RawFd, RawFd)> + '_ {
        self.fds.moves().map(|(fd, target)| (target, fd.as_raw_fd()))
    }

    /// `n` instances, as [`instances`](ProcessSpec::instances), each spec
    /// made by `f` from the instance number and a copy of this spec (which
    /// already carries `PROCSUP_INSTANCE`). The name is the instance's
    /// whatever `f` sets. Also used for the instances that
    /// [`Supervisor::scale`](crate::Supervisor::scale) adds.
    ///
    /// ```
    /// use procsup::{ProcessSpec, Supervisor, testing::FakeSys};
    /// let spec = ProcessSpec::new("web", "python3")
    ///     .instances_with(2, |i, spec| spec.args(["-m", "http.server", &(8000 + i).to_string()]));
    /// let mut sup = Supervisor::with_sys(FakeSys::new());
    /// sup.add_process(spec).unwrap();
    /// let args: Vec<_> = sup.spec("web:1").unwrap().get_args().collect();
    /// assert_eq!(args.last().unwrap().to_str(), Some("8001"));
    /// ```
    pub fn instances_with<F>(mut self, n: u32, f: F) -> Self
    where
        F: Fn(u32, ProcessSpec) -> ProcessSpec + Send + Sync + 'static,
    {
        self.instances = Some(n);
        self.per_instance = Some(PerInstance(Arc::new(f)));
        self
    }

    /// Validates one instance's spec: what the group spec alone decides
    /// (its `group_intensity`) was checked on the group spec.
    pub(crate) fn validate_instance(&self) -> Result<(), crate::error::Error> {
        let mut one = self.clone();
        one.group_intensity = None;
        one.validate()
    }

    /// The spec of instance `i` of this group spec.
    pub(crate) fn instance(&self, i: u32) -> ProcessSpec {
        let mut one = self.clone();
        one.instances = None;
        one.per_instance = None;
        one.envs.push((INSTANCE_ENV.into(), Some(i.to_string().into())));
        if let Some(PerInstance(f)) = &self.per_instance {
            one = f(i, one);
        }
        one.name = format!("{}:{i}", self.name);
        one.instances = None;
        one.per_instance = None;
        one
    }
}
