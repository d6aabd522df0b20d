//! When a child counts as started, and whether, when and how often it is
//! restarted.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::readiness::Readiness;

use super::{ProcessSpec, RestartPolicy};

impl ProcessSpec {
    /// How long a child must live to count as started (`Running`);
    /// an earlier exit is a failed start (supervisord's `startsecs`,
    /// Twisted's `threshold`). Zero: `Running` at once.
    pub fn start_grace(mut self, grace: Duration) -> Self {
        self.start_grace = grace;
        if let Readiness::Grace(_) = self.ready {
            self.ready = Readiness::Grace(grace);
        }
        self
    }

    /// The restart policy.
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// Exit codes that mean success (default `[0]`), for
    /// [`RestartPolicy::OnFailure`].
    pub fn success_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.success_codes = codes.into_iter().collect();
        self
    }

    /// The delay before each restart.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Become `Fatal` after `n` consecutive failed starts (supervisord's
    /// `startretries = n - 1`; the lifecycle coordinator's
    /// `max_restart_attempts = n - 1`). `n` must be at least 1.
    pub fn give_up_after(mut self, n: u32) -> Self {
        self.give_up_after = Some(n);
        self
    }

    /// Become `Fatal` when more than `max_restarts` restarts would fall
    /// within `period` (Erlang/OTP's intensity and period).
    pub fn max_restarts_within(mut self, max_restarts: u32, period: Duration) -> Self {
        self.restart_window = Some((max_restarts, period));
        self
    }

    /// Treat a program that cannot be executed (`ENOENT`, `EACCES`,
    /// `ENOEXEC`, `ENOTDIR`, `EPERM`) as `Fatal` at once instead of
    /// retrying. `EPERM` is here because retrying cannot fix it either: a
    /// credential switch (`uid`/`gid`) or an exec that the system refused
    /// (a `noexec` mount, a security module) fails the same way every time.
    pub fn fatal_exec_errors(mut self, yes: bool) -> Self {
        self.fatal_exec_errors = yes;
        self
    }

    /// Whether `code` counts as success.
    pub(crate) fn is_success(&self, code: i32) -> bool {
        self.success_codes.contains(&code)
    }
}
