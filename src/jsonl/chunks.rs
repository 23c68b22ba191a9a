//! Line-aligned chunk boundaries of a JSONL source, found in one streaming pass.
//!
//! A sweep scans its source once with [`ChunkPlanner`] and keeps the boundaries, so each child
//! batch later reads only its own byte range; the same pass can validate each chunk as it will
//! be uploaded ([`ChunkPlanner::checking`]), so no child needs to read its range to validate it. Chunks are contiguous and cover the whole source:
//! the first starts at 0, each next one where the previous ended, the last ends at the source's
//! length. Blank lines ride along with the chunk they fall in and are not requests.

use super::{Discard, Limits, LineSplitter, Preparer, Rewrite};

/// Bytes of a line the planner looks at: enough to tell a blank line from a request.
const PEEK: usize = 64;

/// How large a chunk may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Requests per chunk.
    pub max_requests: u64,
    /// Bytes per chunk, after rewriting.
    pub max_bytes: u64,
    /// Bytes a rewrite may add to each line (a custom_id prefix, a longer model name): counted
    /// against `max_bytes` so that a chunk still fits once its lines are rewritten.
    pub growth_per_line: u64,
}

/// One line-aligned slice of the source: `start..end` in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Offset of the chunk's first byte.
    pub start: u64,
    /// Offset just past the chunk's last byte.
    pub end: u64,
    /// Request (non-blank) lines in the chunk.
    pub requests: u64,
    /// What checking found, when the planner checks (see [`ChunkPlanner::checking`]).
    pub checked: Option<CheckedChunk>,
}

/// A chunk validated as it is planned: its request lines once prepared with the checking
/// rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedChunk {
    /// Bytes of the prepared lines (what an upload of the chunk sends).
    pub bytes: u64,
    /// Estimated tokens of the prepared lines (see [`super::Summary::estimated_tokens`]).
    pub estimated_tokens: u64,
    /// The estimate by model (see [`super::Summary::estimates`]).
    pub estimates: Vec<crate::api::ModelEstimate>,
}

/// Why a source cannot be chunked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// One line alone is over the byte budget.
    #[error("line {line} is {bytes} bytes, more than a chunk may hold ({max_bytes} bytes with room for rewriting)")]
    LineTooLarge { line: u64, bytes: u64, max_bytes: u64 },
    /// Nothing but blank lines.
    #[error("the source holds no request lines")]
    Empty,
    /// A checked chunk has invalid lines (the rendered report, lines numbered in the source).
    #[error("invalid input:\n{0}")]
    Invalid(String),
}

/// Push-based planner: [`feed`](Self::feed) the source in chunks of any size, then
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct ChunkPlanner {
    splitter: LineSplitter,
    placement: Placement,
}

impl ChunkPlanner {
    /// A planner cutting chunks within `limits` (a zero limit is treated as one).
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            splitter: LineSplitter::with_max_line(PEEK),
            placement: Placement {
                limits: ChunkLimits {
                    max_requests: limits.max_requests.max(1),
                    max_bytes: limits.max_bytes.max(1),
                    growth_per_line: limits.growth_per_line,
                },
                chunks: Vec::new(),
                current: Chunk {
                    start: 0,
                    end: 0,
                    requests: 0,
                    checked: None,
                },
                error: None,
                check: None,
            },
        }
    }

    /// Also validates every chunk as it is cut, each line prepared with `rewrite` for
    /// `endpoint` (the planner then reads whole lines, up to the byte limit, instead of
    /// their first bytes): a sweep's one scan both cuts its input and checks it, so its
    /// children need not read their chunks to validate them.
    pub fn checking(mut self, endpoint: &str, rewrite: Rewrite) -> Self {
        let limits = self.placement.limits;
        self.splitter = LineSplitter::with_max_line(usize::try_from(limits.max_bytes).unwrap_or(usize::MAX));
        self.placement.check = Some(Check {
            endpoint: endpoint.to_string(),
            rewrite,
            limits: Limits {
                max_requests: limits.max_requests,
                max_bytes: limits.max_bytes,
            },
            preparer: None,
        });
        self
    }

    /// Feeds the next bytes of the source.
    pub fn feed(&mut self, bytes: &[u8]) {
        let Self { splitter, placement } = self;
        splitter.feed(bytes, |line| placement.place(&line));
    }

    /// True once the source cannot be chunked, whatever follows: reading on is pointless.
    pub fn has_failed(&self) -> bool {
        self.placement.error.is_some()
    }

    /// The chunks, or why there are none.
    pub fn finish(self) -> Result<Vec<Chunk>, ChunkError> {
        let Self {
            splitter,
            mut placement,
        } = self;
        splitter.finish(|line| placement.place(&line));
        placement.finish()
    }
}

/// Where each line goes: the chunks so far, the one growing, and its check.
#[derive(Debug)]
struct Placement {
    limits: ChunkLimits,
    chunks: Vec<Chunk>,
    current: Chunk,
    error: Option<ChunkError>,
    check: Option<Check>,
}

impl Placement {
    fn place(&mut self, line: &super::Line<'_>) {
        if self.error.is_some() {
            return;
        }
        let bytes = line.end() - line.offset;
        if !line.is_blank() {
            let cost = bytes + self.limits.growth_per_line;
            if cost > self.limits.max_bytes {
                self.error = Some(ChunkError::LineTooLarge {
                    line: line.number,
                    bytes,
                    max_bytes: self.limits.max_bytes,
                });
                return;
            }
            let current = &self.current;
            let full = current.requests >= self.limits.max_requests
                || weighed(current, &self.limits) + cost > self.limits.max_bytes;
            if current.requests > 0 && full {
                self.close_current();
                if self.error.is_some() {
                    return;
                }
                self.current = Chunk {
                    start: line.offset,
                    end: line.offset,
                    requests: 0,
                    checked: None,
                };
            }
            self.current.requests += 1;
        }
        self.current.end = line.end();
        if let Some(check) = &mut self.check {
            check.line(*line);
        }
    }

    /// Ends the growing chunk (its check first: an invalid chunk is the planner's error).
    fn close_current(&mut self) {
        if let Some(check) = &mut self.check {
            match check.finish() {
                Ok(checked) => self.current.checked = Some(checked),
                Err(e) => return self.error = Some(e),
            }
        }
        self.chunks.push(self.current.clone());
    }

    fn finish(mut self) -> Result<Vec<Chunk>, ChunkError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.current.requests == 0 {
            // Trailing blank lines belong to the last chunk.
            match self.chunks.last_mut() {
                Some(last) => last.end = self.current.end,
                None => return Err(ChunkError::Empty),
            }
        } else {
            self.close_current();
            if let Some(e) = self.error {
                return Err(e);
            }
        }
        Ok(self.chunks)
    }
}

/// Validates the growing chunk line by line, as its upload would prepare it.
#[derive(Debug)]
struct Check {
    endpoint: String,
    rewrite: Rewrite,
    limits: Limits,
    preparer: Option<Preparer>,
}

impl Check {
    fn line(&mut self, line: super::Line<'_>) {
        let (endpoint, limits, rewrite) = (&self.endpoint, self.limits, &self.rewrite);
        let preparer = self
            .preparer
            .get_or_insert_with(|| Preparer::new(endpoint, limits, rewrite.clone()));
        preparer.feed_line(line, &mut Discard);
    }

    fn finish(&mut self) -> Result<CheckedChunk, ChunkError> {
        let Some(preparer) = self.preparer.take() else {
            return Err(ChunkError::Empty);
        };
        let report = preparer.finish(&mut Discard);
        match report.is_valid() {
            true => Ok(CheckedChunk {
                bytes: report.summary.bytes,
                estimated_tokens: report.summary.estimated_tokens,
                estimates: report.summary.estimates,
            }),
            false => Err(ChunkError::Invalid(report.render(20))),
        }
    }
}

/// A chunk's bytes with the rewrite growth of each of its requests.
fn weighed(chunk: &Chunk, limits: &ChunkLimits) -> u64 {
    (chunk.end - chunk.start) + chunk.requests * limits.growth_per_line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(
        source: &[u8],
        max_requests: u64,
        max_bytes: u64,
        growth: u64,
        piece: usize,
    ) -> Result<Vec<Chunk>, ChunkError> {
        let mut planner = ChunkPlanner::new(ChunkLimits {
            max_requests,
            max_bytes,
            growth_per_line: growth,
        });
        for part in source.chunks(piece) {
            planner.feed(part);
        }
        planner.finish()
    }

    const ENDPOINT: &str = "/v1/chat/completions";

    fn requests(ids: &[&str]) -> String {
        ids.iter()
            .map(|id| {
                format!(r#"{{"custom_id":"{id}", "method":"POST","url":"{ENDPOINT}","body":{{"model":"m","max_tokens":8}}}}"#)
                    + "\n"
            })
            .collect()
    }

    /// Whether the planner had failed before `finish`, and what it found.
    fn checking(source: &str, max_requests: u64, rewrite: &Rewrite) -> (bool, Result<Vec<Chunk>, ChunkError>) {
        let limits = ChunkLimits {
            max_requests,
            max_bytes: 1 << 20,
            growth_per_line: 16,
        };
        let mut planner = ChunkPlanner::new(limits).checking(ENDPOINT, rewrite.clone());
        for part in source.as_bytes().chunks(7) {
            planner.feed(part);
        }
        (planner.has_failed(), planner.finish())
    }

    #[test]
    fn a_checking_planner_reports_each_chunk_as_its_upload_prepares_it() {
        let source = format!("{}\n{}", requests(&["a", "b", "c"]), requests(&["a", "d"]));
        let rewrite = Rewrite {
            model: Some("gpt-4o-mini".into()),
            custom_id_prefix: Some("gpt-4o-mini/c0000/".into()),
        };
        let chunks = checking(&source, 3, &rewrite).1.unwrap();
        assert_eq!(chunks.len(), 2);
        for chunk in &chunks {
            let range = chunk.start..chunk.end;
            let limits = Limits::default();
            let (bytes, report) =
                super::super::prepare_bytes(source.as_bytes(), Some(range), rewrite.clone(), ENDPOINT, limits);
            assert!(report.is_valid(), "{}", report.render(5));
            let checked = chunk.checked.clone().unwrap();
            assert_eq!(checked.bytes, bytes.len() as u64);
            assert_eq!(checked.estimated_tokens, report.summary.estimated_tokens);
        }
    }

    #[test]
    fn a_checking_planner_fails_at_the_first_invalid_chunk_naming_the_source_line() {
        // custom_ids repeat across chunks (each child prefixes its own), not within one.
        let source = requests(&["a", "b", "a", "c", "d"]);
        let (failed, result) = checking(&source, 3, &Rewrite::default());
        let Err(ChunkError::Invalid(report)) = result else {
            panic!("expected an invalid chunk, got {result:?}")
        };
        assert!(failed, "the planner stops at the invalid chunk");
        assert!(
            report.contains("line 3") && report.contains("duplicate of line 1"),
            "{report}"
        );
    }

    fn lines(n: usize) -> String {
        (0..n).map(|i| format!("{{\"custom_id\":\"r{i:03}\"}}\n")).collect()
    }

    #[test]
    fn chunks_cover_the_source_and_hold_at_most_max_requests() {
        let source = lines(10);
        for piece in [1, 7, 4096] {
            let chunks = plan(source.as_bytes(), 4, u64::MAX, 0, piece).unwrap();
            let requests: Vec<u64> = chunks.iter().map(|c| c.requests).collect();
            assert_eq!(requests, [4, 4, 2], "piece {piece}");
            assert_eq!(chunks[0].start, 0);
            assert_eq!(chunks.last().unwrap().end, source.len() as u64);
            for pair in chunks.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
            for c in &chunks {
                let text = &source[c.start as usize..c.end as usize];
                assert!(text.starts_with('{') && text.ends_with('\n'), "{text:?}");
            }
        }
    }

    #[test]
    fn bytes_and_rewrite_growth_bound_a_chunk() {
        let source = lines(6); // 21 bytes a line
        let plain = plan(source.as_bytes(), 100, 45, 0, 5).unwrap();
        assert_eq!(plain.iter().map(|c| c.requests).collect::<Vec<_>>(), [2, 2, 2]);
        let grown = plan(source.as_bytes(), 100, 45, 3, 5).unwrap();
        assert_eq!(grown.iter().map(|c| c.requests).collect::<Vec<_>>(), [1; 6]);
    }

    #[test]
    fn blank_lines_ride_along_and_crlf_and_missing_final_newline_are_kept() {
        let source = b"\n{\"a\":1}\r\n  \n{\"b\":2}\r\n{\"c\":3}";
        let chunks = plan(source, 2, u64::MAX, 0, 3).unwrap();
        assert_eq!(
            chunks,
            [
                Chunk {
                    start: 0,
                    end: 22,
                    requests: 2,
                    checked: None,
                },
                Chunk {
                    start: 22,
                    end: source.len() as u64,
                    requests: 1,
                    checked: None,
                },
            ]
        );
        let trailing = plan(b"{\"a\":1}\n\n\n", 5, u64::MAX, 0, 2).unwrap();
        assert_eq!(
            trailing,
            [Chunk {
                start: 0,
                end: 10,
                requests: 1,
                checked: None,
            }]
        );
    }

    #[test]
    fn a_line_over_the_budget_and_an_empty_source_are_errors() {
        let err = plan(lines(3).as_bytes(), 10, 25, 5, 4).unwrap_err();
        assert_eq!(
            err,
            ChunkError::LineTooLarge {
                line: 1,
                bytes: 21,
                max_bytes: 25
            }
        );
        assert!(err.to_string().starts_with("line 1 is 21 bytes"));
        assert_eq!(plan(b"\n \n", 10, 100, 0, 1).unwrap_err(), ChunkError::Empty);
        assert_eq!(plan(b"", 10, 100, 0, 1).unwrap_err(), ChunkError::Empty);
    }
}
