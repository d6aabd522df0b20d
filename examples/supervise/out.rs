//! Writing without blocking the loop: every line for stdout or stderr goes
//! through a bounded queue to a writer thread of its own. A reader that
//! stops reading (a pipe opened and never read, a stuck terminal) then
//! stalls only that thread; the loop keeps its deadlines and drops what
//! does not fit, and once there is room again one line says how many were
//! dropped.
//!
//! Also the `log` logger: procsup's warnings go to stderr the same way,
//! one `level=warn msg="..."` line each.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How many lines may wait for the writer thread.
pub const MAX_LINES: usize = 64 * 1024;
/// How many bytes may wait for the writer thread.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

/// What the loop writes to; cheap to share.
pub struct Queue {
    tx: Mutex<Option<Sender<String>>>,
    /// Lines and bytes sent and not yet written.
    lines: AtomicUsize,
    bytes: AtomicUsize,
    /// Lines dropped since the last note about them.
    dropped: AtomicU64,
    /// The line that says `n` lines were dropped.
    note: fn(u64) -> String,
}

impl Queue {
    /// Queues `line` (a newline is added) unless the queue is full; then
    /// counts it as dropped, to be told in one note line (queued, with room
    /// kept for it, before the next line that fits). `urgent` lines may use
    /// the last quarter of the queue, so that a flood of captured output
    /// leaves room for lifecycle events. Never blocks (but for an
    /// uncontended lock).
    pub fn send(&self, line: String, urgent: bool) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        // Once dropping, captured output waits until the writer has caught
        // up by half, so that the notes about drops do not come every line.
        let (max_lines, max_bytes) = match (urgent, dropped > 0) {
            (true, _) => (MAX_LINES, MAX_BYTES),
            (false, false) => (MAX_LINES / 4 * 3, MAX_BYTES / 4 * 3),
            (false, true) => (MAX_LINES / 8 * 3, MAX_BYTES / 8 * 3),
        };
        let len = line.len() + 1;
        if self.lines.load(Ordering::Relaxed) + 1 >= max_lines
            || self.bytes.load(Ordering::Relaxed) + len + 64 > max_bytes
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if dropped > 0 && self.push((self.note)(dropped)) {
            self.dropped.fetch_sub(dropped, Ordering::Relaxed);
        }
        if !self.push(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn push(&self, line: String) -> bool {
        let len = line.len() + 1;
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = tx.as_ref() else { return false };
        self.lines.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len, Ordering::Relaxed);
        if tx.send(line).is_err() {
            self.lines.fetch_sub(1, Ordering::Relaxed);
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// No more lines: the note about dropped ones, if any, is queued
    /// whatever the room, and the writer thread ends once it wrote
    /// everything. Later lines are dropped silently.
    pub fn close(&self) {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if let (Some(tx), true) = (tx.as_ref(), dropped > 0) {
            let _ = tx.send((self.note)(dropped));
        }
        *tx = None;
    }
}

/// A writer thread for `out`, fed by the returned queue. `on_error` is
/// called once when a write fails; after that, lines are read and dropped
/// (so the queue never stays full).
pub fn spawn(
    name: &str,
    out: impl Write + Send + 'static,
    note: fn(u64) -> String,
    on_error: impl FnOnce(io::Error) + Send + 'static,
) -> io::Result<(Arc<Queue>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let queue = Arc::new(Queue {
        tx: Mutex::new(Some(tx)),
        lines: AtomicUsize::new(0),
        bytes: AtomicUsize::new(0),
        dropped: AtomicU64::new(0),
        note,
    });
    let q = Arc::clone(&queue);
    let handle = std::thread::Builder::new().name(name.into()).spawn(move || write_all(rx, out, &q, on_error))?;
    Ok((queue, handle))
}

fn write_all(rx: Receiver<String>, out: impl Write, q: &Queue, on_error: impl FnOnce(io::Error)) {
    // Buffered: a flood of lines must not cost a write(2) each; flushed
    // whenever the queue is empty.
    let mut out = Some(io::BufWriter::with_capacity(64 * 1024, out));
    let mut on_error = Some(on_error);
    let mut fail = |out: &mut Option<_>, e| {
        *out = None;
        if let Some(f) = on_error.take() {
            f(e);
        }
    };
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(line) = next {
            if let Some(w) = out.as_mut() {
                if let Err(e) = w.write_all(line.as_bytes()).and_then(|()| w.write_all(b"\n")) {
                    fail(&mut out, e);
                }
            }
            q.lines.fetch_sub(1, Ordering::Relaxed);
            q.bytes.fetch_sub(line.len() + 1, Ordering::Relaxed);
            next = rx.try_recv().ok();
        }
        if let Some(w) = out.as_mut() {
            if let Err(e) = w.flush() {
                fail(&mut out, e);
            }
        }
    }
}

/// procsup's `log` records, at `level` and above, as one stderr line each.
/// Events and captured output (targets `procsup::event` and
/// `procsup::output::*`) are left out: they are already events on stdout.
pub struct Logger {
    pub err: Arc<Queue>,
}

impl log::Log for Logger {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        let t = meta.target();
        meta.level() <= log::max_level() && !(t == "procsup::event" || t.starts_with("procsup::output::"))
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let level = record.level().as_str().to_ascii_lowercase();
            let line = format!("level={level} target={} msg={}", record.target(), quote(&record.args().to_string()));
            self.err.send(line, true);
        }
    }

    fn flush(&self) {}
}

/// A logfmt value: quoted when it has a blank, `"`, `=` or a control
/// character, with `"`, `\` and control characters escaped.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && !s.chars().any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control()) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("two words"), "\"two words\"");
        assert_eq!(quote("a=\"b\"\\\n"), "\"a=\\\"b\\\"\\\\\\n\"");
        assert_eq!(quote(""), "\"\"");
    }
}
