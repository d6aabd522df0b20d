//! Splitting captured output into lines.

use std::fmt::Write;

/// The longest line kept whole; a longer one is cut into pieces of this
/// size, none of it lost.
pub const MAX_LINE: usize = 16 * 1024;

/// Accumulates bytes of one stream and hands out complete lines.
#[derive(Debug, Default)]
pub(crate) struct LineBuffer {
    partial: Vec<u8>,
}

impl LineBuffer {
    /// Feeds `data`; calls `emit` with each complete line (without `\n`),
    /// and with each `MAX_LINE` piece of an overlong one.
    #[cfg(test)]
    pub(crate) fn push(&mut self, data: &[u8], emit: &mut impl FnMut(&[u8])) {
        let used = self.push_some(data, usize::MAX, &mut |l| emit(l));
        debug_assert_eq!(used, data.len());
    }

    /// Feeds the start of `data` until `max` lines have been emitted (one
    /// overlong line may add its pieces past `max`: at most
    /// `data.len() / MAX_LINE` more). Returns how many bytes it took; the
    /// rest is the caller's to feed again later.
    pub(crate) fn push_some(&mut self, data: &[u8], max: usize, emit: &mut impl FnMut(&[u8])) -> usize {
        let mut emitted = 0;
        let mut used = 0;
        while emitted < max {
            let rest = &data[used..];
            let Some(i) = rest.iter().position(|&b| b == b'\n') else {
                self.partial.extend_from_slice(rest);
                used = data.len();
                while self.partial.len() >= MAX_LINE {
                    emit(&self.partial[..MAX_LINE]);
                    self.partial.drain(..MAX_LINE);
                }
                break;
            };
            let line = &rest[..i];
            used += i + 1;
            if self.partial.is_empty() {
                emitted += self.emit_cut(line, emit);
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                emitted += self.emit_cut(&whole, emit);
                self.partial = whole;
                self.partial.clear();
            }
        }
        used
    }

    /// Emits `line`, cut into `MAX_LINE` pieces; how many it emitted.
    fn emit_cut(&self, mut line: &[u8], emit: &mut impl FnMut(&[u8])) -> usize {
        let mut n = 1;
        while line.len() > MAX_LINE {
            emit(&line[..MAX_LINE]);
            line = &line[MAX_LINE..];
            n += 1;
        }
        emit(line);
        n
    }

    /// Hands out the partial last line, if any (at exit). No empty line.
    pub(crate) fn flush(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
        }
    }
}

/// Text of a line: valid UTF-8 as it is, every invalid byte as `\xNN`.
///
/// ```
/// assert_eq!(procsup::escape(b"\xffhello world!"), "\\xffhello world!");
/// assert_eq!(procsup::escape("héllo".as_bytes()), "héllo");
/// ```
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut buf = LineBuffer::default();
        let mut lines = Vec::new();
        for c in chunks {
            buf.push(c, &mut |l| lines.push(l.to_vec()));
        }
        buf.flush(&mut |l| lines.push(l.to_vec()));
        lines
    }

    #[test]
    fn partial_lines_join_and_flush() {
        assert_eq!(run(&[b"a\nb", b"c\n", b"x"]), [b"a".to_vec(), b"bc".to_vec(), b"x".to_vec()]);
    }

    #[test]
    fn no_extra_empty_line_at_exit() {
        assert_eq!(run(&[b"a\n"]), [b"a".to_vec()]);
        assert_eq!(run(&[b"\n"]), [b"".to_vec()]);
        assert!(run(&[]).is_empty());
    }

    #[test]
    fn overlong_lines_are_cut_not_lost() {
        let long = vec![b'y'; MAX_LINE * 2 + 10];
        let mut data = long.clone();
        data.push(b'\n');
        let lines = run(&[&data[..100], &data[100..]]);
        assert_eq!(lines.iter().map(Vec::len).collect::<Vec<_>>(), [MAX_LINE, MAX_LINE, 10]);
        assert_eq!(lines.concat(), long);
        let lines = run(&[&data]);
        assert_eq!(lines.concat(), long);
    }

    #[test]
    fn push_some_stops_after_max_lines_and_loses_nothing() {
        let mut buf = LineBuffer::default();
        let mut lines = Vec::new();
        let data = b"a\nb\nc\nd";
        let used = buf.push_some(data, 2, &mut |l| lines.push(l.to_vec()));
        assert_eq!(used, 4);
        assert_eq!(lines, [b"a".to_vec(), b"b".to_vec()]);
        let used2 = buf.push_some(&data[used..], 2, &mut |l| lines.push(l.to_vec()));
        assert_eq!(used + used2, data.len());
        buf.flush(&mut |l| lines.push(l.to_vec()));
        assert_eq!(lines, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]);
        assert_eq!(buf.push_some(b"x\n", 0, &mut |_| panic!("no line within a budget of 0")), 0);
    }

    #[test]
    fn escape_keeps_valid_text() {
        assert_eq!(escape(b"a\xff\xfeb"), "a\\xff\\xfeb");
        assert_eq!(escape(b"tab\tok"), "tab\tok");
    }
}
