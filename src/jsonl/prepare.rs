//! The input as it goes to the gateway: the line-aligned slice of the source
//! (`spec.input.byteRange`), every line rewritten (`spec.input.overrides`), and validated
//! after rewriting, in one streaming pass. Problems name the line of the source (numbered
//! from the slice's first line, see [`Preparer::numbered_from`]).

use std::ops::Range;

use super::checks::LineChecker;
use super::lines::{Line, LineSplitter, Terminator};
use super::report::{Limits, Report};
use super::rewrite::Rewrite;
use super::slice::LineAlignedSlice;
use super::validator::{DEFAULT_PROBLEM_CAP, report};

/// Where a [`Preparer`] puts the prepared bytes: a buffer to upload, or whatever only needs to
/// see them once (a digest; [`Discard`] when the report's count of them is enough), so they are
/// not copied for nothing.
pub trait Prepared {
    fn put(&mut self, bytes: &[u8]);
}

impl Prepared for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Prepared bytes that only the report counts.
#[derive(Debug, Default)]
pub struct Discard;

impl Prepared for Discard {
    fn put(&mut self, _: &[u8]) {}
}

/// Push-based: feed the source's chunks, collect the bytes to upload, then [`finish`](Self::finish).
///
/// Without a rewrite, lines pass through exactly as they are (terminators and blank lines
/// included); with one, each request line is re-encoded with a `\n` and blank lines are dropped.
#[derive(Debug)]
pub struct Preparer {
    slice: Option<LineAlignedSlice>,
    splitter: LineSplitter,
    checker: LineChecker,
    rewrite: Rewrite,
    limits: Limits,
    out_bytes: u64,
}

impl Preparer {
    /// A preparer for a batch to `endpoint` within `limits`.
    pub fn new(endpoint: &str, limits: Limits, rewrite: Rewrite) -> Self {
        let max_line = usize::try_from(limits.max_bytes).unwrap_or(usize::MAX);
        Self {
            slice: None,
            splitter: LineSplitter::with_max_line(max_line),
            checker: LineChecker::new(endpoint, limits.max_bytes, DEFAULT_PROBLEM_CAP),
            rewrite,
            limits,
            out_bytes: 0,
        }
    }

    /// Keeps only the line-aligned slice of `range`; the source must then be fed from
    /// [`super::read_start`]`(range.start)`.
    pub fn sliced(mut self, range: Range<u64>) -> Self {
        self.slice = Some(LineAlignedSlice::new(range));
        self
    }

    /// Numbers the first line of what is kept `first` (its line number in the source).
    pub fn numbered_from(mut self, first: u64) -> Self {
        self.splitter = self.splitter.numbered_from(first);
        self
    }

    /// Skips the custom_id uniqueness check, whose memory grows with the lines: for a second
    /// pass over bytes an earlier pass validated whole (the caller compares their digest).
    pub fn trusting_unique_ids(mut self) -> Self {
        self.checker.unique_ids = false;
        self
    }

    /// True once nothing more of the source is needed (the slice's end was passed).
    pub fn is_done(&self) -> bool {
        self.slice.as_ref().is_some_and(LineAlignedSlice::is_done)
    }

    /// True once a line-level problem was found (duplicate custom_ids are only known at the end).
    pub fn has_problems(&self) -> bool {
        self.checker.problems.count > 0
    }

    /// Feeds the source's next chunk; puts what goes upstream to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut impl Prepared) {
        let chunk = match &mut self.slice {
            Some(slice) => slice.take(chunk),
            None => chunk,
        };
        let Self {
            splitter,
            checker,
            rewrite,
            out_bytes,
            ..
        } = self;
        splitter.feed(chunk, |line| pass(line, checker, rewrite, out, out_bytes));
    }

    /// Passes one line split elsewhere (a sweep's scan splits once, to plan and to check).
    pub(crate) fn feed_line(&mut self, line: Line<'_>, out: &mut impl Prepared) {
        pass(line, &mut self.checker, &self.rewrite, out, &mut self.out_bytes);
    }

    /// Ends the source: the last line, then the report (its byte count is what went upstream).
    pub fn finish(self, out: &mut impl Prepared) -> Report {
        let Self {
            splitter,
            mut checker,
            rewrite,
            limits,
            mut out_bytes,
            ..
        } = self;
        splitter.finish(|line| pass(line, &mut checker, &rewrite, out, &mut out_bytes));
        report(checker, out_bytes, limits)
    }
}

fn pass(line: Line<'_>, checker: &mut LineChecker, rewrite: &Rewrite, out: &mut impl Prepared, out_bytes: &mut u64) {
    if rewrite.is_noop() {
        checker.check(line);
        let terminator: &[u8] = match line.terminator {
            Terminator::Lf => b"\n",
            Terminator::CrLf => b"\r\n",
            Terminator::None => b"",
        };
        out.put(line.content);
        out.put(terminator);
        *out_bytes += (line.content.len() + terminator.len()) as u64;
    } else if !line.is_blank() {
        let rewritten = match std::str::from_utf8(line.content) {
            Ok(text) if !line.is_truncated() => rewrite.apply(text),
            _ => None,
        };
        let content = rewritten.as_deref().map(str::as_bytes).unwrap_or(line.content);
        checker.check(Line {
            content,
            len: content.len() as u64,
            ..line
        });
        out.put(content);
        out.put(b"\n");
        *out_bytes += content.len() as u64 + 1;
    }
}

/// Prepares a whole input already in memory; returns the bytes to upload and the report.
/// Lines are numbered as in `bytes`, even when `range` starts further in.
pub fn prepare_bytes(
    bytes: &[u8],
    range: Option<Range<u64>>,
    rewrite: Rewrite,
    endpoint: &str,
    limits: Limits,
) -> (Vec<u8>, Report) {
    let kept = match range {
        Some(range) => super::slice::aligned_range(bytes, range),
        None => 0..bytes.len(),
    };
    let first_line = memchr::memchr_iter(b'\n', &bytes[..kept.start]).count() as u64 + 1;
    let mut preparer = Preparer::new(endpoint, limits, rewrite).numbered_from(first_line);
    let mut out = Vec::with_capacity(kept.len());
    preparer.feed(&bytes[kept], &mut out);
    let report = preparer.finish(&mut out);
    (out, report)
}
