//! The exec of a child that must learn its own pid from its environment
//! (`WATCHDOG_PID`, which sd_notify clients compare with `getpid()`, and
//! `LISTEN_PID`, which socket-activation clients compare): the
//! pid exists only after the fork, and `Command` fixes the environment
//! before it. So the last `pre_exec` step writes the pid into an
//! environment prepared in the parent and calls `execve` itself; std's own
//! exec never runs, and an `execve` failure is reported through std's
//! error pipe like any other.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Room for any pid and its NUL after `NAME=`.
const PID_ROOM: usize = 11;

/// argv and envp as C arrays, built in the parent; the child only writes
/// digits into one environment entry it owns and calls `execve`.
pub(super) struct Prepared {
    /// Where the program may be, in `execvp`'s order.
    _candidates: Vec<CString>,
    /// Their pointers, NULL-terminated.
    candidate_ptrs: Vec<*const libc::c_char>,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    /// The environment, each `NAME=value` NUL-terminated, one after the
    /// other; the pid variables (`NAME=` and room, rewritten in the child)
    /// are `pid_entries`.
    _envp: Vec<u8>,
    /// Each pid variable's entry, and where its digits go.
    pid_entries: Vec<(Box<[u8]>, usize)>,
    envp_ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into buffers this struct owns, which are
// only read in the parent and only written in the forked child (a copy of
// the address space); nothing is shared between threads.
unsafe impl Send for Prepared {}
// SAFETY: as above: `&Prepared` gives no access the parent uses.
unsafe impl Sync for Prepared {}

/// The child's environment as std's `Command` passes it: the host's own,
/// in its order, when nothing changes it; otherwise sorted by name (std
/// captures it into an ordered map). `changes` set (`Some`) or remove
/// (`None`) variables, in order.
pub(super) fn child_env<'a>(
    clear: bool,
    changes: impl IntoIterator<Item = (&'a OsStr, Option<&'a OsStr>)>,
) -> Vec<(OsString, OsString)> {
    let mut changes = changes.into_iter().peekable();
    if !clear && changes.peek().is_none() {
        return std::env::vars_os().collect();
    }
    let mut env: std::collections::BTreeMap<OsString, OsString> =
        if clear { Default::default() } else { std::env::vars_os().collect() };
    for (k, v) in changes {
        match v {
            Some(v) => env.insert(k.to_owned(), v.to_owned()),
            None => env.remove(k),
        };
    }
    env.into_iter().collect()
}

impl Prepared {
    /// argv, envp (with each of `pid_vars` last, its value to be written in
    /// the child) and the resolved program path, all in C form.
    pub(super) fn new(
        program: &OsStr,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
        mut env: Vec<(OsString, OsString)>,
        cwd: Option<&Path>,
        pid_vars: &[&str],
    ) -> io::Result<Prepared> {
        env.retain(|(k, _)| !pid_vars.iter().any(|v| k == v));
        let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
        let _ = cwd; // the child execs after its chdir: candidates stay relative
        let candidates = candidates(program, path_var.as_deref())
            .iter()
            .map(|p| cstring(p.as_os_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut candidate_ptrs: Vec<*const libc::c_char> = candidates.iter().map(|c| c.as_ptr()).collect();
        candidate_ptrs.push(std::ptr::null());
        let mut argv = vec![cstring(program)?];
        for a in args {
            argv.push(cstring(a.as_ref())?);
        }
        // Every `NAME=value\0` in one buffer: two allocations, not one per
        // variable, on the way to every restart.
        let mut envp = Vec::with_capacity(env.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
        let mut starts = Vec::with_capacity(env.len() + pid_vars.len() + 1);
        for (k, v) in &env {
            if k.as_bytes().contains(&0) || v.as_bytes().contains(&0) {
                return Err(io::ErrorKind::InvalidInput.into());
            }
            starts.push(envp.len());
            envp.extend_from_slice(k.as_bytes());
            envp.push(b'=');
            envp.extend_from_slice(v.as_bytes());
            envp.push(0);
        }
        let pid_entries: Vec<(Box<[u8]>, usize)> = pid_vars
            .iter()
            .map(|v| {
                let mut entry = vec![0u8; v.len() + 1 + PID_ROOM].into_boxed_slice();
                entry[..v.len()].copy_from_slice(v.as_bytes());
                entry[v.len()] = b'=';
                (entry, v.len() + 1)
            })
            .collect();
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let base = envp.as_ptr();
        // SAFETY: every start is an offset into `envp`, which is not
        // resized again (its heap buffer stays where it is when moved).
        let mut envp_ptrs: Vec<*const libc::c_char> =
            starts.into_iter().map(|at| unsafe { base.add(at) }.cast::<libc::c_char>()).collect();
        envp_ptrs.extend(pid_entries.iter().map(|(e, _)| e.as_ptr().cast::<libc::c_char>()));
        envp_ptrs.push(std::ptr::null());
        Ok(Prepared {
            _candidates: candidates,
            candidate_ptrs,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            pid_entries,
            envp_ptrs,
        })
    }

    /// The candidate paths, a NULL-terminated array (see [`candidates`]).
    #[cfg_attr(not(all(target_os = "linux", target_arch = "x86_64")), allow(dead_code))] // procsup's own spawn
    pub(super) fn candidates(&self) -> *const *const libc::c_char {
        self.candidate_ptrs.as_ptr()
    }

    #[cfg_attr(not(all(target_os = "linux", target_arch = "x86_64")), allow(dead_code))] // procsup's own spawn
    pub(super) fn argv(&self) -> *const *const libc::c_char {
        self.argv_ptrs.as_ptr()
    }

    #[cfg_attr(not(all(target_os = "linux", target_arch = "x86_64")), allow(dead_code))] // procsup's own spawn
    pub(super) fn envp(&self) -> *const *const libc::c_char {
        self.envp_ptrs.as_ptr()
    }

    /// Each pid variable's entry and where its digits go, for a child that
    /// writes them (the entries are the envp's own buffers).
    #[cfg_attr(not(all(target_os = "linux", target_arch = "x86_64")), allow(dead_code))] // procsup's own spawn
    pub(super) fn pid_slots(&mut self) -> impl Iterator<Item = (*mut u8, usize)> + '_ {
        self.pid_entries.iter_mut().map(|(e, at)| (e.as_mut_ptr(), *at))
    }
}

/// Makes `cmd`'s last step an `execve` with each of `pid_vars` (e.g.
/// `WATCHDOG_PID`, `LISTEN_PID`) set to the child's pid. Call it after
/// every other change to `cmd`. `env_clear`: whether the child's
/// environment starts empty.
pub(super) fn exec_with_own_pid(cmd: &mut Command, env_clear: bool, pid_vars: &[&str]) -> io::Result<()> {
    let env = child_env(env_clear, cmd.get_envs());
    let mut prepared = Prepared::new(cmd.get_program(), cmd.get_args(), env, cmd.get_current_dir(), pid_vars)?;
    let hook = move || -> io::Result<()> {
        let p = &mut prepared;
        // SAFETY: getpid(2) is async-signal-safe and cannot fail.
        let mut pid = unsafe { libc::getpid() } as u32;
        let mut digits = [0u8; 10];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (pid % 10) as u8;
            n += 1;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        for (entry, at) in p.pid_entries.iter_mut() {
            let slot = &mut entry[*at..];
            for i in 0..n {
                slot[i] = digits[n - 1 - i];
            }
            slot[n] = 0;
        }
        // SAFETY: execve(2) is async-signal-safe; the candidates, argv and
        // envp are NULL-terminated arrays of C strings owned by `prepared`,
        // alive until the exec replaces this process image.
        let errno = unsafe {
            exec_candidates(
                p.candidate_ptrs.as_ptr(),
                p.argv_ptrs.as_ptr(),
                p.envp_ptrs.as_ptr(),
                |path, argv, envp| {
                    libc::execve(path, argv, envp);
                    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
                },
            )
        };
        Err(io::Error::from_raw_os_error(errno))
    };
    // SAFETY: the hook writes only into memory it owns and makes
    // async-signal-safe calls (getpid, execve): no allocation, no lock.
    unsafe { cmd.pre_exec(hook) };
    Ok(())
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Every path `execvp` would try for `program`, in its order: a name with
/// a slash as it is; else that name in each entry of the child's `PATH`
/// (`/bin:/usr/bin` without one), relative entries left relative (the
/// child execs after its `chdir`, so they are relative to its working
/// directory, as with `execvp`). Only the exec can tell whether the child,
/// with its own credentials, may run a file, so the child tries them in
/// turn ([`exec_candidates`]); building them is the part that allocates.
pub(super) fn candidates(program: &OsStr, path_var: Option<&OsStr>) -> Vec<PathBuf> {
    if program.as_bytes().contains(&b'/') || program.is_empty() {
        // An empty name fails with ENOENT, as with execvp.
        return vec![PathBuf::from(program)];
    }
    let search = path_var.unwrap_or(OsStr::new("/bin:/usr/bin"));
    std::env::split_paths(search)
        .map(|dir| if dir.as_os_str().is_empty() { PathBuf::from(program) } else { dir.join(program) })
        .collect()
}

/// `execvp`'s loop over [`candidates`], async-signal-safe: `exec` runs one
/// and returns its errno. A candidate that is missing, not a directory on
/// the way, or on a stale or absent mount is skipped; `EACCES` is
/// remembered and the search goes on; any other error ends it (`ENOEXEC`
/// among them: no `/bin/sh` fallback, as with `posix_spawnp`). Returns the
/// errno to report: `EACCES` if any candidate gave it, else the last one.
///
/// # Safety
///
/// `candidates` is a NULL-terminated array of C strings.
pub(super) unsafe fn exec_candidates(
    candidates: *const *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    mut exec: impl FnMut(*const libc::c_char, *const *const libc::c_char, *const *const libc::c_char) -> i32,
) -> i32 {
    let mut denied = false;
    let mut last = libc::ENOENT;
    let mut i = 0;
    loop {
        // SAFETY: the caller's array is NULL-terminated; `i` never passes
        // the NULL.
        let path = unsafe { *candidates.add(i) };
        if path.is_null() {
            break;
        }
        last = exec(path, argv, envp);
        match last {
            libc::EACCES => denied = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            other => return other,
        }
        i += 1;
    }
    if denied {
        libc::EACCES
    } else {
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_execvps() {
        assert_eq!(candidates(OsStr::new("./x"), None), vec![PathBuf::from("./x")]);
        assert_eq!(candidates(OsStr::new(""), None), vec![PathBuf::new()]);
        assert_eq!(candidates(OsStr::new("sh"), None), vec![PathBuf::from("/bin/sh"), PathBuf::from("/usr/bin/sh")]);
        let got = candidates(OsStr::new("p"), Some(OsStr::new("bin::/x")));
        assert_eq!(got, vec![PathBuf::from("bin/p"), PathBuf::from("p"), PathBuf::from("/x/p")]);
    }

    #[test]
    fn the_loop_keeps_searching_past_eacces_and_reports_it() {
        let c = |s: &str| CString::new(s).unwrap();
        let (a, b, d) = (c("a"), c("b"), c("d"));
        let list = [a.as_ptr(), b.as_ptr(), d.as_ptr(), std::ptr::null()];
        let run = |answers: [i32; 3]| {
            let mut tried = Vec::new();
            // SAFETY: a NULL-terminated array of C strings.
            let got = unsafe {
                exec_candidates(list.as_ptr(), std::ptr::null(), std::ptr::null(), |p, _, _| {
                    tried.push(p);
                    answers[tried.len() - 1]
                })
            };
            (got, tried.len())
        };
        assert_eq!(run([libc::ENOENT, libc::EACCES, libc::ENOENT]), (libc::EACCES, 3));
        assert_eq!(run([libc::ENOENT, libc::ENOENT, libc::ENOENT]), (libc::ENOENT, 3));
        assert_eq!(run([libc::ENOTDIR, libc::ENOEXEC, libc::ENOENT]), (libc::ENOEXEC, 2));
    }
}
