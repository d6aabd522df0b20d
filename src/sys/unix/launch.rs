//! Spawning a child: its containment and notify channel, then procsup's
//! own clone (`clone.rs`) or std's `Command` (`spawn.rs`), as the
//! `Spawner` (`spawner.rs`) picks, then the bookkeeping that watches it:
//! its pidfd, pipes and record (`records.rs`).

use super::spawner::Added;
use super::*;

/// A child made, not yet watched: what `launch` hands to `register`.
#[derive(Debug)]
pub(super) struct Launched {
    pub(super) pid: Pid,
    notify: Option<notify::Notify>,
    cgroup: Option<cgroup::ChildCgroup>,
    pub(super) pidfd: Option<OwnedFd>,
    read_ends: [Option<OwnedFd>; 2],
    /// Its pidfd is in the epoll set already (a successor held ready).
    pub(super) watched: bool,
    /// The thread that cloned it (its parent-death signal follows that
    /// thread's end).
    tid: i32,
}

impl Launched {
    /// Whether it was put in a cgroup of its own.
    pub(super) fn in_cgroup(&self) -> bool {
        self.cgroup.is_some()
    }

    /// Its cgroup, taken out (a child held ready and let go, once reaped).
    pub(super) fn take_cgroup(&mut self) -> Option<cgroup::ChildCgroup> {
        self.cgroup.take()
    }

    /// Closes what a child that is ended needs no more: its pipes and
    /// notify channel (its pidfd reaps it, its cgroup is retired after).
    pub(super) fn strip(&mut self) {
        self.notify = None;
        self.read_ends = [None, None];
    }
}

impl UnixSys {
    /// [`Sys::spawn`] for [`UnixSys`]: the successor held ready for it
    /// (`standby.rs`) if there is one, else a child made now.
    pub(super) fn spawn_child(&mut self, spec: &ProcessSpec) -> io::Result<Pid> {
        if let Some(launched) = self.release_standby(spec) {
            return Ok(self.register(spec, launched));
        }
        let launched = match self.launch(spec, None) {
            // Successors are a head start, never a reason to fail: out of
            // fds, they are ended (their fds closed) and the spawn retried.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) && self.end_standbys_for_room() => {
                log::warn!("procsup: spawning {}: {e}; the successors held ready were ended to make room", spec.name);
                self.launch(spec, None)?.0
            }
            r => r?.0,
        };
        Ok(self.register(spec, launched))
    }

    /// Makes a child of `spec`: its containment and notify channel, then the
    /// clone (or `Command`). With `park` (its end of the host's socket), a
    /// successor held ready instead, and the memory it runs on.
    #[cfg_attr(not(all(target_os = "linux", target_arch = "x86_64")), allow(unused_variables))]
    pub(super) fn launch(
        &mut self,
        spec: &ProcessSpec,
        park: Option<std::os::fd::RawFd>,
    ) -> io::Result<(Launched, Option<Held>)> {
        let mut notify = notify::Notify::prepare(spec)?;
        let tree = spec.kill_mode == KillMode::Tree;
        let limited = spec.first_cgroup_limit().is_some();
        let cgroup = self.cgroup_root().filter(|_| tree).map(|root| root.child(&spec.name, &spec.limits));
        let (cgroup, procs, cgroup_fd) = match cgroup {
            Some(Ok((cg, procs, fd))) => (Some(cg), Some(procs), Some(fd)),
            // Held by its process group, the child would run without its
            // limits: never silently.
            Some(Err(e)) if limited => return Err(e),
            None if limited => {
                return Err(io::Error::new(io::ErrorKind::Unsupported, "cgroup limits without a cgroup"))
            }
            Some(Err(e)) => {
                log::warn!("procsup: no cgroup for {}: {e}; it is held by its process group", spec.name);
                (None, None, None)
            }
            None => (None, None, None),
        };
        let mut pid_vars = Vec::new();
        if spec.watchdog.is_some() {
            pid_vars.push("WATCHDOG_PID");
        }
        if !spec.fds.listen.is_empty() {
            pid_vars.push("LISTEN_PID");
        }
        // What procsup adds to the spec's environment, on every path.
        // LISTEN_PID is written in the child (exec.rs, clone_child.rs).
        let mut env = notify.as_ref().map(|n| n.env(spec)).unwrap_or_default();
        if !spec.fds.listen.is_empty() {
            env.push(("LISTEN_FDS".into(), spec.fds.listen.len().to_string().into()));
            env.push(("LISTEN_FDNAMES".into(), spec.fds.names().into()));
        }
        let cgroup_fds = procs.as_ref().zip(cgroup_fd.as_ref()).map(|(p, d)| (d.as_raw_fd(), p.as_raw_fd()));
        let added = Added { notify: notify.as_ref(), env: &env, pid_vars: &pid_vars };
        #[cfg_attr(not(all(target_os = "linux", target_arch = "x86_64")), allow(unused_mut))]
        let mut held = None;
        let mut spawned = match park {
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            Some(fd) => Some(self.spawner.parked(spec, &added, cgroup_fds, fd).map_or_else(
                || Err(io::Error::from(io::ErrorKind::Unsupported)),
                |r| {
                    r.map(|(spawned, h)| {
                        held = Some(h);
                        spawned
                    })
                },
            )),
            #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
            Some(_) => Some(Err(io::Error::from(io::ErrorKind::Unsupported))),
            None => self.spawner.cloned(spec, &added, cgroup_fds, self.pidfd != Some(false), self.faults.clone3),
        };
        if spawned.is_none() {
            spawned = Some(self.spawner.command(spec, &added, procs.as_ref()));
        }
        drop((procs, cgroup_fd));
        if let Some(n) = &mut notify {
            n.spawned();
        }
        let (pid, clone_pidfd, read_ends, refused_into) = match spawned.unwrap_or_else(|| Err(Errno::ENOSYS.into())) {
            Ok(spawned) => spawned,
            Err(e) => {
                if let Some(cg) = cgroup {
                    // Still empty: kept for the next try (a crash loop on a
                    // missing program pays no mkdir/rmdir either).
                    self.cgroups.retire(&spec.name, cg);
                }
                return Err(e);
            }
        };
        if refused_into {
            if let Some(cg) = &cgroup {
                cg.taint();
            }
        }
        #[cfg(target_os = "linux")]
        let tid = nix::unistd::gettid().as_raw();
        #[cfg(not(target_os = "linux"))]
        let tid = 0;
        let launched = Launched { pid, notify, cgroup, pidfd: clone_pidfd, read_ends, watched: false, tid };
        Ok((launched, held))
    }

    /// Watches a child `launch` made: its pidfd, pipes, notify channel and
    /// record. Nothing here fails: the child exists, and what cannot be
    /// watched is looked at on every poll instead.
    pub(super) fn register(&mut self, spec: &ProcessSpec, launched: Launched) -> Pid {
        let Launched { pid, mut notify, cgroup, pidfd: clone_pidfd, read_ends, watched, tid } = launched;
        let tree = spec.kill_mode == KillMode::Tree;
        let pidfd = self.open_pidfd(pid, clone_pidfd);
        let spawner = (tid, spec.die_with_parent.map(|s| s as i32));
        let contain = match cgroup {
            // Its `cgroup.events` is watched only once the leader is gone
            // and the tree is not (`leader_reaped`): watched from now on, it
            // would wake the host as the child enters the cgroup, while its
            // `execve` needs the CPU, and again as the tree empties, on the
            // way to its restart (#22).
            Some(cg) => {
                if let Some(watch) = &cg.memory {
                    let watched = self.readiness.as_ref().map(|r| {
                        r.watch_pri(watch.fd.as_fd(), token(pid, 0) | MEMORY_TAG).inspect_err(|e| {
                            log::warn!("procsup: epoll add memory events of {}: {e}; looking on every poll", spec.name)
                        })
                    });
                    if !matches!(watched, Some(Ok(()))) {
                        self.memory_polled.insert(pid);
                    }
                }
                Contain::Cgroup(cg)
            }
            None if tree && spec.process_group => Contain::Group,
            None => Contain::None,
        };
        let mut entry = Child {
            name: spec.name.as_str().into(),
            contain,
            reaped: false,
            pidfd: None,
            pipes: read_ends,
            spawner,
            exited: None,
            last_word: [0; 2],
            notify: None,
        };
        self.records.note_spawned(&entry.name, pid, spec.process_group, &entry.contain);
        // The child exists now: from here on nothing may fail the spawn, or
        // the caller would lose track of a live child. What cannot be
        // watched is looked at on every poll instead.
        let mut unwatched = pidfd.is_none() && self.pidfd != Some(false);
        if let Some(fd) = pidfd {
            let watch = match watched {
                true => Ok(()),
                false => self.faults.pidfd_watch().map_or_else(|| self.watch(&fd, token(pid, 0)), Err),
            };
            if let Err(e) = watch {
                log::warn!("procsup: epoll add pidfd of {} (pid {pid}): {e}; checking it on every poll", spec.name);
                unwatched = true;
            }
            entry.pidfd = Some(fd);
        }
        for slot in 0..2 {
            if let Some(Err(e)) = entry.pipes[slot].as_ref().map(set_nonblocking) {
                // A blocking read end could block poll: give it up.
                log::warn!("procsup: output of pid {pid}: {e}; not captured");
                entry.pipes[slot] = None;
            }
            if let Some(fd) = &entry.pipes[slot] {
                if let Err(e) = self.watch(fd, pipe_token(pid, slot)) {
                    log::warn!("procsup: watching output of pid {pid}: {e}; reading it on every poll");
                    unwatched = true;
                }
            }
        }
        if unwatched {
            self.unwatched.insert(pid);
        }
        if let Some(n) = notify.as_mut().filter(|_| matches!(spec.ready, crate::readiness::Readiness::Notify)) {
            let cgroup = matches!(entry.contain, Contain::Cgroup(_));
            n.trust(notify::Tree::of(pid, cgroup, spec.process_group));
        }
        entry.notify = notify.map(|n| self.watch_notify(pid, n));
        self.children.insert(pid, entry);
        pid
    }

    /// A pidfd for a new child, or `None`: pidfds are off, or this one
    /// failed (see [`UnixSys::uses_pidfd`] for which failure is which).
    /// The child's pidfd: the clone's own (`cloned`), else `pidfd_open`.
    fn open_pidfd(&mut self, pid: Pid, cloned: Option<OwnedFd>) -> Option<OwnedFd> {
        if self.pidfd == Some(false) {
            return None;
        }
        let opened = match self.faults.pidfd_open() {
            Some(e) => Err(e),
            None => cloned.map_or_else(|| pidfd_open(pid), Ok),
        };
        match opened {
            Ok(fd) => {
                if self.pidfd.is_none() {
                    // Linux 5.3 has pidfd_open but not waitid(P_PIDFD).
                    if let Err(e) = self.faults.pidfd_waitid().map_or_else(|| pidfd_waitid_works(fd.as_raw_fd()), Err) {
                        log::debug!("procsup: no waitid(P_PIDFD) ({e}); using waitpid");
                        self.pidfd = Some(false);
                        return None;
                    }
                    self.pidfd = Some(true);
                }
                Some(fd)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                log::debug!("procsup: no pidfds ({e}); using waitpid");
                self.pidfd = Some(false);
                None
            }
            Err(e) => {
                log::warn!("procsup: pidfd_open({pid}) failed: {e}; checking it on every poll");
                None
            }
        }
    }
}
