//! Reading JSONL one line at a time with a bound: a line longer than the limit is skipped past
//! (its first bytes kept, so its custom_id may still be found), never buffered whole.

use std::io::{self, BufRead};

/// One line read by [`read_line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRead {
    /// Byte offset of the line's first byte in the file.
    pub offset: u64,
    /// Full length of the line, without its terminator.
    pub len: u64,
    /// 1-based line number.
    pub number: u64,
}

impl LineRead {
    /// Whether the buffer holds only the first bytes of the line.
    pub fn truncated(&self, kept: usize) -> bool {
        self.len > kept as u64
    }
}

/// A reader of lines with a position: where the next line starts, and its number.
pub struct Lines<R> {
    reader: R,
    offset: u64,
    number: u64,
    max_line: usize,
}

impl<R: BufRead> Lines<R> {
    /// Lines of `reader`, whose first byte is at `offset` of its file; at most `max_line` bytes of
    /// any line are kept.
    pub fn new(reader: R, offset: u64, max_line: usize) -> Self {
        Self {
            reader,
            offset,
            number: 0,
            max_line,
        }
    }

    /// The next line that is not blank into `buf` (cleared first; without its `\n` or `\r\n`),
    /// or `None` at the end. A line past the limit leaves its first `max_line` bytes in `buf`
    /// and its full length in [`LineRead::len`].
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<LineRead>> {
        loop {
            buf.clear();
            let start = self.offset;
            let mut len = 0u64;
            let mut ended = false;
            let mut any = false;
            while !ended {
                let available = self.reader.fill_buf()?;
                if available.is_empty() {
                    break;
                }
                any = true;
                let (take, used) = match memchr::memchr(b'\n', available) {
                    Some(at) => {
                        ended = true;
                        (at, at + 1)
                    }
                    None => (available.len(), available.len()),
                };
                let room = self.max_line.saturating_add(1).saturating_sub(buf.len());
                buf.extend_from_slice(&available[..take.min(room)]);
                len += take as u64;
                self.reader.consume(used);
                self.offset += used as u64;
            }
            if !any {
                return Ok(None);
            }
            self.number += 1;
            if buf.last() == Some(&b'\r') && len as usize == buf.len() {
                buf.pop();
                len -= 1;
            } else if buf.len() > self.max_line {
                buf.truncate(self.max_line);
            }
            if len <= buf.len() as u64 && buf.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                continue;
            }
            return Ok(Some(LineRead {
                offset: start,
                len,
                number: self.number,
            }));
        }
    }

    /// Where the next line starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8], max: usize) -> Vec<(Vec<u8>, LineRead)> {
        let mut lines = Lines::new(text, 10, max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(read) = lines.next_line(&mut buf).unwrap() {
            out.push((buf.clone(), read));
        }
        out
    }

    #[test]
    fn lines_keep_offsets_numbers_and_skip_blanks() {
        let got = all(b"ab\r\n\n  \ncd\nlast", 100);
        let seen: Vec<_> = got
            .iter()
            .map(|(b, r)| (String::from_utf8_lossy(b).into_owned(), r.offset, r.len, r.number))
            .collect();
        assert_eq!(
            seen,
            [
                ("ab".to_string(), 10, 2, 1),
                ("cd".to_string(), 18, 2, 4),
                ("last".to_string(), 21, 4, 5)
            ]
        );
    }

    #[test]
    fn a_line_past_the_limit_keeps_only_its_first_bytes() {
        let mut text = vec![b'x'; 10_000];
        text.extend_from_slice(b"\nok\n");
        let got = all(&text, 16);
        assert_eq!(got[0].0.len(), 16);
        assert_eq!(got[0].1.len, 10_000);
        assert!(got[0].1.truncated(got[0].0.len()));
        assert_eq!((got[1].0.as_slice(), got[1].1.offset), (&b"ok"[..], 10 + 10_001));
    }
}
