//! A push-based line splitter for JSONL streams.
//!
//! Bytes arrive in arbitrary chunks (a line may span any number of chunks); the splitter hands each
//! complete line to a callback, borrowed from the chunk when the line lies inside it and from a
//! small carry-over buffer otherwise. Lines end at `\n`; a `\r` right before it is part of the
//! terminator (CRLF). The last line may lack a terminator; it is delivered by
//! [`LineSplitter::finish`].
//!
//! Memory is bounded by `max_line`: a longer line is delivered truncated to its first `max_line`
//! bytes, with its full length in [`Line::len`], so one huge line cannot exhaust memory.

/// How a line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminator {
    /// `\n`
    Lf,
    /// `\r\n`
    CrLf,
    /// End of stream without a newline (only the last line).
    None,
}

impl Terminator {
    /// Length of the terminator in bytes.
    pub fn len(self) -> u64 {
        match self {
            Terminator::Lf => 1,
            Terminator::CrLf => 2,
            Terminator::None => 0,
        }
    }

    /// Whether there is no terminator (a final line without a newline).
    pub fn is_empty(self) -> bool {
        self == Terminator::None
    }
}

/// One line of the stream, as handed to the splitter's callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based line number (every line counts, blank ones too).
    pub number: u64,
    /// Byte offset of the line's first byte in the stream.
    pub offset: u64,
    /// The line's bytes without its terminator, at most `max_line` of them.
    pub content: &'a [u8],
    /// Full length of the line without its terminator (larger than `content.len()` when truncated).
    pub len: u64,
    /// How the line ended.
    pub terminator: Terminator,
}

impl Line<'_> {
    /// Whether `content` holds only a prefix of the line because it exceeded `max_line`.
    pub fn is_truncated(&self) -> bool {
        self.len > self.content.len() as u64
    }

    /// Byte offset just past the line's terminator: where the next line starts.
    /// `offset..end()` is the line's line-aligned byte range.
    pub fn end(&self) -> u64 {
        self.offset + self.len + self.terminator.len()
    }

    /// Whether the line is empty or holds only JSON whitespace (space, tab, CR).
    pub fn is_blank(&self) -> bool {
        !self.is_truncated() && self.content.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'))
    }
}

/// Splits a byte stream fed in chunks into [`Line`]s.
///
/// ```
/// use llm_batch_operator::jsonl::LineSplitter;
/// let mut lines = Vec::new();
/// let mut splitter = LineSplitter::new();
/// splitter.feed(b"{\"a\":1}\r\n{\"b\"", |l| lines.push(l.content.to_vec()));
/// splitter.feed(b":2}", |l| lines.push(l.content.to_vec()));
/// splitter.finish(|l| lines.push(l.content.to_vec()));
/// assert_eq!(lines, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
/// ```
#[derive(Debug)]
pub struct LineSplitter {
    max_line: usize,
    /// Bytes of the unfinished line (at most `max_line + 1`, the extra one being a possible `\r`).
    pending: Vec<u8>,
    /// Full length of the unfinished line, counting bytes not kept in `pending`.
    pending_len: u64,
    /// Whether the last byte of the unfinished line is `\r`.
    pending_ends_cr: bool,
    next_number: u64,
    first_number: u64,
    /// Offset of the unfinished line (= bytes in all delivered lines).
    line_offset: u64,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl LineSplitter {
    /// A splitter with no practical line-length bound (`usize::MAX`).
    pub fn new() -> Self {
        Self::with_max_line(usize::MAX)
    }

    /// A splitter that keeps at most `max_line` bytes of any line.
    pub fn with_max_line(max_line: usize) -> Self {
        Self {
            max_line,
            pending: Vec::new(),
            pending_len: 0,
            pending_ends_cr: false,
            next_number: 1,
            first_number: 1,
            line_offset: 0,
        }
    }

    /// Numbers the first line `first` instead of 1 (a slice starting further into a file).
    pub fn numbered_from(mut self, first: u64) -> Self {
        self.next_number = first;
        self.first_number = first;
        self
    }

    /// Total bytes fed so far.
    pub fn bytes_seen(&self) -> u64 {
        self.line_offset + self.pending_len
    }

    /// Number of lines delivered so far.
    pub fn lines_seen(&self) -> u64 {
        self.next_number - self.first_number
    }

    /// Feeds a chunk, calling `on_line` for every line the chunk completes.
    pub fn feed(&mut self, mut chunk: &[u8], mut on_line: impl FnMut(Line<'_>)) {
        while let Some(pos) = memchr_newline(chunk) {
            let (head, rest) = (&chunk[..pos], &chunk[pos + 1..]);
            if self.pending_len == 0 {
                self.deliver_direct(head, &mut on_line);
            } else {
                self.append(head);
                self.deliver_pending(true, &mut on_line);
            }
            chunk = rest;
        }
        if !chunk.is_empty() {
            self.append(chunk);
        }
    }

    /// Ends the stream, delivering a last line that has no terminator.
    pub fn finish(mut self, mut on_line: impl FnMut(Line<'_>)) {
        if self.pending_len > 0 {
            self.deliver_pending(false, &mut on_line);
        }
    }

    fn deliver_direct(&mut self, head: &[u8], on_line: &mut impl FnMut(Line<'_>)) {
        let (body, terminator) = match head.split_last() {
            Some((b'\r', body)) => (body, Terminator::CrLf),
            _ => (head, Terminator::Lf),
        };
        let kept = &body[..body.len().min(self.max_line)];
        self.emit(kept, body.len() as u64, terminator, on_line);
    }

    fn deliver_pending(&mut self, newline: bool, on_line: &mut impl FnMut(Line<'_>)) {
        let mut pending = std::mem::take(&mut self.pending);
        let (len, terminator) = if !newline {
            (self.pending_len, Terminator::None)
        } else if self.pending_ends_cr {
            (self.pending_len - 1, Terminator::CrLf)
        } else {
            (self.pending_len, Terminator::Lf)
        };
        pending.truncate(len.min(self.max_line as u64) as usize);
        self.emit(&pending, len, terminator, on_line);
        pending.clear();
        self.pending = pending;
        self.pending_len = 0;
        self.pending_ends_cr = false;
    }

    fn emit(&mut self, content: &[u8], len: u64, terminator: Terminator, on_line: &mut impl FnMut(Line<'_>)) {
        let line = Line {
            number: self.next_number,
            offset: self.line_offset,
            content,
            len,
            terminator,
        };
        self.next_number += 1;
        self.line_offset = line.end();
        on_line(line);
    }

    /// Adds bytes of the unfinished line, keeping at most `max_line + 1` of them (the `+ 1` so a
    /// trailing `\r` of a line exactly `max_line` long can still be recognised as a terminator).
    fn append(&mut self, piece: &[u8]) {
        if piece.is_empty() {
            return;
        }
        let room = self.max_line.saturating_add(1).saturating_sub(self.pending.len());
        self.pending.extend_from_slice(&piece[..piece.len().min(room)]);
        self.pending_len += piece.len() as u64;
        self.pending_ends_cr = piece.last() == Some(&b'\r');
    }
}

fn memchr_newline(haystack: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', haystack)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (number, offset, content, len, terminator) of every line.
    type Seen = Vec<(u64, u64, Vec<u8>, u64, Terminator)>;

    fn split_chunks(chunks: &[&[u8]], max_line: usize) -> Seen {
        let mut seen = Vec::new();
        let mut record = |l: Line<'_>| {
            seen.push((l.number, l.offset, l.content.to_vec(), l.len, l.terminator));
        };
        let mut splitter = LineSplitter::with_max_line(max_line);
        for chunk in chunks {
            splitter.feed(chunk, &mut record);
        }
        splitter.finish(&mut record);
        seen
    }

    #[test]
    fn lf_crlf_and_missing_final_newline() {
        let seen = split_chunks(&[b"a\nbb\r\n\nccc"], usize::MAX);
        assert_eq!(
            seen,
            vec![
                (1, 0, b"a".to_vec(), 1, Terminator::Lf),
                (2, 2, b"bb".to_vec(), 2, Terminator::CrLf),
                (3, 6, b"".to_vec(), 0, Terminator::Lf),
                (4, 7, b"ccc".to_vec(), 3, Terminator::None),
            ]
        );
    }

    #[test]
    fn empty_stream_and_final_newline_give_no_extra_line() {
        assert!(split_chunks(&[], usize::MAX).is_empty());
        assert_eq!(split_chunks(&[b"x\n"], usize::MAX).len(), 1);
    }

    #[test]
    fn every_split_point_gives_the_same_lines() {
        let data: &[u8] = b"{\"a\":1}\r\n\n  \r\nlast line \xe2\x82\xac\r\nx";
        let whole = split_chunks(&[data], usize::MAX);
        for i in 0..=data.len() {
            for j in i..=data.len() {
                let parts = [&data[..i], &data[i..j], &data[j..]];
                assert_eq!(split_chunks(&parts, usize::MAX), whole, "split at {i},{j}");
            }
        }
        let bytewise: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(split_chunks(&bytewise, usize::MAX), whole);
    }

    #[test]
    fn long_lines_are_truncated_but_measured() {
        let data: &[u8] = b"0123456789\r\nabc\n0123456789";
        for size in 1..=data.len() {
            let chunks: Vec<&[u8]> = data.chunks(size).collect();
            let seen = split_chunks(&chunks, 4);
            assert_eq!(
                seen,
                vec![
                    (1, 0, b"0123".to_vec(), 10, Terminator::CrLf),
                    (2, 12, b"abc".to_vec(), 3, Terminator::Lf),
                    (3, 16, b"0123".to_vec(), 10, Terminator::None),
                ],
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn a_huge_line_is_not_buffered() {
        let mut splitter = LineSplitter::with_max_line(1024);
        let chunk = vec![b'x'; 64 * 1024];
        let mut seen = Vec::new();
        for _ in 0..160 {
            splitter.feed(&chunk, |l| seen.push(l.len));
            assert!(splitter.pending.capacity() <= 4096);
        }
        splitter.feed(b"\n", |l| seen.push(l.len));
        assert_eq!(seen, vec![160 * 64 * 1024]);
    }

    #[test]
    fn line_of_exactly_max_len_with_crlf_is_not_truncated() {
        let seen = split_chunks(&[b"abcd", b"\r", b"\n"], 4);
        assert_eq!(seen, vec![(1, 0, b"abcd".to_vec(), 4, Terminator::CrLf)]);
    }

    #[test]
    fn line_ranges_tile_the_stream() {
        let data: &[u8] = b"a\r\nbb\n\nccc";
        let mut ends = vec![0];
        let mut splitter = LineSplitter::new();
        splitter.feed(data, |l| {
            assert_eq!(l.offset, *ends.last().unwrap());
            ends.push(l.end());
        });
        assert_eq!(splitter.bytes_seen(), data.len() as u64);
        assert_eq!(splitter.lines_seen(), 3);
        splitter.finish(|l| ends.push(l.end()));
        assert_eq!(ends, vec![0, 3, 6, 7, 10]);
    }

    #[test]
    fn blank_lines() {
        let line = |content: &'static [u8]| Line {
            number: 1,
            offset: 0,
            content,
            len: content.len() as u64,
            terminator: Terminator::Lf,
        };
        assert!(line(b"").is_blank());
        assert!(line(b" \t\r").is_blank());
        assert!(!line(b" {} ").is_blank());
    }
}
