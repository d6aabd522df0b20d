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
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Room for any pid and its NUL after `NAME=`.
const PID_ROOM: usize = 11;

/// argv and envp as C arrays, built in the parent; the child only writes
/// digits into one environment entry it owns and calls `execve`.
pub(super) struct Prepared {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    /// The environment; the last entries are the pid variables (`NAME=`
    /// and room), rewritten in the child.
    _envp: Vec<CString>,
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
        let path = resolve(program, path_var.as_deref(), cwd);
        let mut argv = vec![cstring(program)?];
        for a in args {
            argv.push(cstring(a.as_ref())?);
        }
        let mut envp = Vec::with_capacity(env.len());
        for (k, v) in env {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            envp.push(CString::new(kv).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?);
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
        let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
        envp_ptrs.extend(pid_entries.iter().map(|(e, _)| e.as_ptr().cast::<libc::c_char>()));
        envp_ptrs.push(std::ptr::null());
        Ok(Prepared { path: cstring(path.as_os_str())?, _argv: argv, argv_ptrs, _envp: envp, pid_entries, envp_ptrs })
    }

    pub(super) fn path(&self) -> *const libc::c_char {
        self.path.as_ptr()
    }

    pub(super) fn argv(&self) -> *const *const libc::c_char {
        self.argv_ptrs.as_ptr()
    }

    pub(super) fn envp(&self) -> *const *const libc::c_char {
        self.envp_ptrs.as_ptr()
    }

    /// Each pid variable's entry and where its digits go, for a child that
    /// writes them (the entries are the envp's own buffers).
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
        // SAFETY: execve(2) is async-signal-safe; `path` is a C string and
        // both arrays are NULL-terminated arrays of C strings owned by
        // `prepared`, alive until the exec replaces this process image.
        unsafe { libc::execve(p.path.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr()) };
        Err(io::Error::last_os_error())
    };
    // SAFETY: the hook writes only into memory it owns and makes
    // async-signal-safe calls (getpid, execve): no allocation, no lock.
    unsafe { cmd.pre_exec(hook) };
    Ok(())
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// The file `execvp` would run: a name with a slash as it is, else the
/// first executable file of that name along the child's `PATH` (relative
/// entries are relative to the child's working directory). Like
/// `execvp`, a candidate that exists but cannot be run is remembered: with
/// no executable one, it is returned, so the exec fails with its error
/// (`EACCES`) rather than `ENOENT`. None at all: an empty path, which
/// fails with `ENOENT`.
pub(super) fn resolve(program: &OsStr, path_var: Option<&OsStr>, cwd: Option<&Path>) -> PathBuf {
    if program.as_bytes().contains(&b'/') {
        return PathBuf::from(program);
    }
    if program.is_empty() {
        return PathBuf::new();
    }
    let search = path_var.unwrap_or(OsStr::new("/bin:/usr/bin"));
    let mut denied = None;
    for dir in std::env::split_paths(search) {
        let dir = match (dir.is_relative(), cwd) {
            (true, Some(cwd)) => cwd.join(dir),
            _ => dir,
        };
        let candidate = dir.join(program);
        let Ok(meta) = std::fs::metadata(&candidate) else { continue };
        if meta.is_file() && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0 {
            return candidate;
        }
        denied.get_or_insert(candidate);
    }
    // Not found: execve("") fails with ENOENT, as execvp would, instead of
    // running a file of that name in the working directory.
    denied.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_as_execvp_does() {
        assert_eq!(resolve(OsStr::new("./x"), None, None), PathBuf::from("./x"));
        assert_eq!(resolve(OsStr::new("sh"), Some(OsStr::new("/nonexistent:/bin")), None), PathBuf::from("/bin/sh"));
        assert_eq!(resolve(OsStr::new("no-such-program-here"), Some(OsStr::new("/bin")), None), PathBuf::new());
        // /etc/passwd exists but cannot be run: execvp reports EACCES for it.
        assert_eq!(resolve(OsStr::new("passwd"), Some(OsStr::new("/etc")), None), PathBuf::from("/etc/passwd"));
        assert_eq!(resolve(OsStr::new("sh"), Some(OsStr::new("/etc:/bin")), None), PathBuf::from("/bin/sh"));
    }
}
