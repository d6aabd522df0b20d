//! What `add_process` checks before it accepts a spec.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use crate::error::Error;

use super::{Output, ProcessSpec, MAX_DURATION, MAX_INSTANCES, MAX_NAME_LEN};

impl ProcessSpec {
    /// Checks everything `add_process` promises to check.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.check().map_err(|reason| Error::InvalidSpec { name: self.name.clone(), reason })
    }

    fn check(&self) -> Result<(), String> {
        check_name(&self.name)?;
        self.fds.check()?;
        if let Some(n) = self.instances {
            if n == 0 || n > MAX_INSTANCES {
                return Err(format!("instances must be between 1 and {MAX_INSTANCES}, got {n}"));
            }
            check_name(&format!("{}:{}", self.name, n - 1))?;
        }
        if self.program.is_empty() {
            return Err("the program is empty".into());
        }
        no_nul("the program", &self.program)?;
        for a in &self.args {
            no_nul("an argument", a)?;
        }
        for (k, v) in &self.envs {
            if k.is_empty() || k.as_bytes().contains(&b'=') {
                return Err(format!("environment key {k:?} is empty or contains '='"));
            }
            no_nul("an environment key", k)?;
            if let Some(v) = v {
                no_nul("an environment value", v)?;
            }
        }
        if let Some(cwd) = &self.cwd {
            if cwd.as_os_str().is_empty() {
                return Err("the working directory is empty".into());
            }
            no_nul("the working directory", cwd.as_os_str())?;
        }
        if self.stdout == Output::ToStdout {
            return Err("stdout cannot go to stdout".into());
        }
        for out in [&self.stdout, &self.stderr] {
            if let Output::Append(p) = out {
                if p.as_os_str().is_empty() {
                    return Err("an output file path is empty".into());
                }
                no_nul("an output file path", p.as_os_str())?;
            }
            if let Output::Log(log) = out {
                log.check()?;
            }
        }
        check_duration("start grace", self.start_grace)?;
        check_duration("stop timeout", self.stop_timeout)?;
        self.check_readiness()?;
        if let crate::readiness::Readiness::Fd(n) = self.ready {
            // One fd number cannot be both: whichever lands last would win.
            if self.fds.moves().any(|(_, target)| target == n) {
                return Err(format!("notification fd {n} is also the target of a passed fd"));
            }
        }
        self.backoff.check()?;
        self.check_limits()?;
        if self.give_up_after == Some(0) {
            return Err("give_up_after must be at least 1".into());
        }
        if let Some((_, period)) = self.group_intensity {
            check_duration("group intensity period", period)?;
            if self.instances.is_none() {
                return Err("group_intensity needs instances".into());
            }
        }
        if let Some((_, period)) = self.restart_window {
            check_duration("restart window", period)?;
            if period.is_zero() {
                return Err("the restart window must be longer than zero".into());
            }
        }
        if let Some(mask) = self.umask {
            if mask > 0o777 {
                return Err(format!("umask {mask:o} has bits outside 0777"));
            }
        }
        Ok(())
    }
}

/// A name must be usable as a file name: a state directory names its records
/// after processes.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("the name is longer than {MAX_NAME_LEN} bytes"));
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err("the name must be usable as a file name (no '/', NUL, '.' or '..')".into());
    }
    if name.starts_with('.') {
        return Err("the name must not start with '.' (reserved for temporary files)".into());
    }
    if name.chars().any(char::is_control) {
        return Err("the name must not contain control characters".into());
    }
    Ok(())
}

fn no_nul(what: &str, s: &OsStr) -> Result<(), String> {
    if s.as_bytes().contains(&0) {
        return Err(format!("{what} contains a NUL byte"));
    }
    Ok(())
}

pub(crate) fn check_duration(what: &str, d: Duration) -> Result<(), String> {
    if d > MAX_DURATION {
        return Err(format!("{what} of {d:?} is longer than 100 years"));
    }
    Ok(())
}
