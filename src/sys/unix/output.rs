//! Reading captured output under one budget per poll, fairly.
//!
//! Every `poll` reads at most [`OUTPUT_BYTES_PER_POLL`] bytes across all
//! pipes. Each ready pipe gets a share of what is left (at least
//! [`MIN_SHARE`]), in round-robin order that resumes after the last pipe
//! served, so a flooding child cannot starve the others and the next poll
//! starts where this one stopped. What is not read stays in the pipe: the
//! writer blocks once it is full, and the host's memory does not grow.
//! Level-triggered epoll keeps the readiness fd readable meanwhile, and
//! [`Sys::wake_after`](crate::Sys::wake_after) says "now".
//!
//! A child that exited is reported after the bytes its pipes held at that
//! moment (`FIONREAD`), read under the same budget, over as many polls as
//! they take: no line is lost, and a grandchild that keeps the pipe open and
//! writing cannot hold the exit back.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

use super::readiness::{token, untoken, Readiness};
use super::Child;
use crate::event::Stream;
use crate::sys::SysEvent;

/// Bytes of captured output one `poll` reads at most, across all pipes.
pub(super) const OUTPUT_BYTES_PER_POLL: usize = 64 * 1024;

/// The least a ready pipe is offered in one poll while budget is left.
const MIN_SHARE: usize = 4 * 1024;

/// How a read of one pipe ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Read {
    /// It is empty for now.
    Empty,
    /// It hit its limit; more may be waiting.
    Limit,
    /// End of file, or an error: the pipe is done.
    Closed,
}

/// Reads up to `limit` bytes of `fd` into `data` through `buf`.
fn read_some(fd: &OwnedFd, buf: &mut [u8], limit: usize, data: &mut Vec<u8>) -> Read {
    while data.len() < limit {
        let want = (limit - data.len()).min(buf.len());
        match nix::unistd::read(fd, &mut buf[..want]) {
            Ok(0) => return Read::Closed,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Read::Empty,
            Err(e) => {
                log::warn!("procsup: reading captured output: {e}");
                return Read::Closed;
            }
        }
    }
    Read::Limit
}

/// The bytes a pipe holds now (`FIONREAD`).
pub(super) fn pending_bytes(fd: &OwnedFd) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: ioctl(2) FIONREAD on a pipe writes one int, the number of
    // unread bytes, to the pointer; `n` is a valid, writable c_int.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD as _, &mut n) };
    (rc == 0).then(|| usize::try_from(n).unwrap_or(0))
}

/// The epoll token of a child's pipe (`slot` 0: stdout, 1: stderr).
pub(super) fn pipe_token(pid: Pid, slot: usize) -> u64 {
    token(pid, slot as u64 + 1)
}

fn from_token(token: u64) -> (Pid, usize) {
    let (pid, slot) = untoken(token);
    (pid, slot as usize - 1)
}

/// What reading captured output keeps from one poll to the next.
#[derive(Debug)]
pub(super) struct OutputReader {
    /// Scratch space of every read of a pipe (and of a notify channel).
    pub(super) buf: Vec<u8>,
    /// The pipe token served last: the next round starts after it.
    cursor: u64,
    /// The last poll left output unread for want of budget.
    pub(super) more: bool,
}

impl OutputReader {
    pub(super) fn new() -> Self {
        OutputReader { buf: vec![0; 64 * 1024], cursor: 0, more: false }
    }

    /// Reads the pipes `tokens` names, round-robin from the last one served,
    /// each up to its share of the budget; finishing children only up to
    /// what their pipes held at the exit.
    pub(super) fn read_round(
        &mut self,
        children: &mut HashMap<Pid, Child>,
        readiness: Option<&Readiness>,
        mut tokens: Vec<u64>,
        events: &mut Vec<SysEvent>,
    ) {
        tokens.sort_unstable();
        tokens.dedup();
        let start = tokens.partition_point(|&t| t <= self.cursor);
        tokens.rotate_left(start);
        let mut budget = OUTPUT_BYTES_PER_POLL;
        let n = tokens.len();
        for (i, token) in tokens.into_iter().enumerate() {
            if budget == 0 {
                self.more = true;
                return;
            }
            let share = (budget / (n - i)).max(MIN_SHARE).min(budget);
            budget -= self.read_pipe(children, readiness, token, share, events);
            self.cursor = token;
        }
    }

    /// One pipe, up to `share` bytes; how many it read.
    fn read_pipe(
        &mut self,
        children: &mut HashMap<Pid, Child>,
        readiness: Option<&Readiness>,
        token: u64,
        share: usize,
        events: &mut Vec<SysEvent>,
    ) -> usize {
        let (pid, slot) = from_token(token);
        let Some(child) = children.get_mut(&pid) else { return 0 };
        let Some(fd) = child.pipes[slot].as_ref() else { return 0 };
        let finishing = child.exited.is_some();
        let limit = if finishing { share.min(child.last_word[slot]) } else { share };
        let mut data = Vec::new();
        let how = if limit == 0 { Read::Empty } else { read_some(fd, &mut self.buf, limit, &mut data) };
        let read = data.len();
        if finishing {
            child.last_word[slot] -= read;
        }
        let done = how == Read::Closed || (finishing && (how == Read::Empty || child.last_word[slot] == 0));
        if how == Read::Limit && !done {
            self.more = true;
        }
        if read > 0 {
            let stream = if slot == 0 { Stream::Stdout } else { Stream::Stderr };
            events.push(SysEvent::Output { pid, stream, data });
        }
        if done {
            child.close_pipe(slot, readiness);
        }
        read
    }
}
