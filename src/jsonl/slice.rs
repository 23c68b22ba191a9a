//! Line-aligned byte ranges: a start inside a line moves to the next line; an end inside a
//! line extends to the end of that line. So consecutive ranges (`[a, b)`, `[b, c)`) hand every
//! line to exactly one slice, whichever bytes the boundaries fall on.

use std::ops::Range;

/// Where a streamed read must begin for a slice starting at `start`: one byte early, so the
/// slicer can see whether `start` is already at a line boundary.
pub fn read_start(start: u64) -> u64 {
    start.saturating_sub(1)
}

/// Cuts a stream that begins at [`read_start`]`(start)` down to the line-aligned slice of
/// `start..end`. Feed chunks in order; stop reading once [`is_done`](Self::is_done).
#[derive(Debug, Clone)]
pub struct LineAlignedSlice {
    end: u64,
    /// Offset in the source of the next byte fed.
    pos: u64,
    state: State,
    /// Offset in the source where the slice begins, once known.
    begin: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Skipping through the first newline (the end of the line `start` falls in).
    Seeking,
    /// Passing bytes on until `end`.
    Taking,
    /// Past `end` inside a line: passing bytes on through its newline.
    Extending,
    Done,
}

impl LineAlignedSlice {
    /// A slicer for `range`; the first byte fed must be the one at [`read_start`]`(range.start)`.
    pub fn new(range: Range<u64>) -> Self {
        let (state, begin) = match range.start {
            0 => (State::Taking, Some(0)),
            _ => (State::Seeking, None),
        };
        let mut slice = Self {
            end: range.end,
            pos: read_start(range.start),
            state,
            begin,
        };
        if state == State::Taking && range.end == 0 {
            slice.state = State::Done;
        }
        slice
    }

    /// True once no byte fed from now on can belong to the slice.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Offset in the source of the slice's first byte, once known.
    pub fn begin(&self) -> Option<u64> {
        self.begin
    }

    /// The part of `chunk` (the next bytes of the source) that belongs to the slice.
    pub fn take<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        let chunk_start = self.pos;
        self.pos += chunk.len() as u64;
        let mut from = 0;
        if self.state == State::Seeking {
            let Some(nl) = memchr::memchr(b'\n', chunk) else {
                return &[];
            };
            let begin = chunk_start + nl as u64 + 1;
            self.begin = Some(begin);
            if begin >= self.end {
                // The line `start` fell in reaches `end`: the slice is empty.
                self.state = State::Done;
                return &[];
            }
            self.state = State::Taking;
            from = nl + 1;
        }
        let rest = &chunk[from..];
        let rest_start = chunk_start + from as u64;
        match self.state {
            State::Taking => {
                let room = (self.end - rest_start.min(self.end)) as usize;
                if rest.len() < room {
                    return rest;
                }
                // `room == 0`: `end` was reached on a boundary already (nothing more to take).
                if room == 0 || rest[room - 1] == b'\n' {
                    self.state = State::Done;
                    return &rest[..room];
                }
                self.state = State::Extending;
                self.extend(rest, room)
            }
            State::Extending => self.extend(rest, 0),
            _ => &[],
        }
    }

    /// `rest[..taken]` is in the slice; extends it through the next newline.
    fn extend<'a>(&mut self, rest: &'a [u8], taken: usize) -> &'a [u8] {
        match memchr::memchr(b'\n', &rest[taken..]) {
            Some(nl) => {
                self.state = State::Done;
                &rest[..taken + nl + 1]
            }
            None => rest,
        }
    }
}

/// The line-aligned slice of bytes already in memory, as a range of `bytes`.
pub fn aligned_range(bytes: &[u8], range: Range<u64>) -> Range<usize> {
    let from = read_start(range.start).min(bytes.len() as u64) as usize;
    let mut slicer = LineAlignedSlice::new(range);
    let taken = slicer.take(&bytes[from..]);
    match slicer.begin() {
        Some(begin) if !taken.is_empty() => begin as usize..begin as usize + taken.len(),
        Some(begin) => (begin as usize).min(bytes.len())..(begin as usize).min(bytes.len()),
        None => bytes.len()..bytes.len(),
    }
}
