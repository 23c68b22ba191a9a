//! Line-aligned chunk boundaries of a JSONL source, found in one streaming pass.
//!
//! A sweep scans its source once with [`ChunkPlanner`] and keeps the boundaries, so each child
//! batch later reads only its own byte range. Chunks are contiguous and cover the whole source:
//! the first starts at 0, each next one where the previous ended, the last ends at the source's
//! length. Blank lines ride along with the chunk they fall in and are not requests.

use super::LineSplitter;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Offset of the chunk's first byte.
    pub start: u64,
    /// Offset just past the chunk's last byte.
    pub end: u64,
    /// Request (non-blank) lines in the chunk.
    pub requests: u64,
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
}

/// Push-based planner: [`feed`](Self::feed) the source in chunks of any size, then
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct ChunkPlanner {
    limits: ChunkLimits,
    splitter: LineSplitter,
    chunks: Vec<Chunk>,
    current: Chunk,
    error: Option<ChunkError>,
}

impl ChunkPlanner {
    /// A planner cutting chunks within `limits` (a zero limit is treated as one).
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            limits: ChunkLimits {
                max_requests: limits.max_requests.max(1),
                max_bytes: limits.max_bytes.max(1),
                growth_per_line: limits.growth_per_line,
            },
            splitter: LineSplitter::with_max_line(PEEK),
            chunks: Vec::new(),
            current: Chunk {
                start: 0,
                end: 0,
                requests: 0,
            },
            error: None,
        }
    }

    /// Feeds the next bytes of the source.
    pub fn feed(&mut self, bytes: &[u8]) {
        let Self {
            limits,
            splitter,
            chunks,
            current,
            error,
        } = self;
        splitter.feed(bytes, |line| place(limits, chunks, current, error, &line));
    }

    /// The chunks, or why there are none.
    pub fn finish(self) -> Result<Vec<Chunk>, ChunkError> {
        let Self {
            limits,
            splitter,
            mut chunks,
            mut current,
            mut error,
        } = self;
        splitter.finish(|line| place(&limits, &mut chunks, &mut current, &mut error, &line));
        if let Some(e) = error {
            return Err(e);
        }
        if current.requests == 0 {
            // Trailing blank lines belong to the last chunk.
            match chunks.last_mut() {
                Some(last) => last.end = current.end,
                None => return Err(ChunkError::Empty),
            }
        } else {
            chunks.push(current);
        }
        Ok(chunks)
    }
}

fn place(
    limits: &ChunkLimits,
    chunks: &mut Vec<Chunk>,
    current: &mut Chunk,
    error: &mut Option<ChunkError>,
    line: &super::Line<'_>,
) {
    if error.is_some() {
        return;
    }
    let bytes = line.end() - line.offset;
    if line.is_blank() {
        current.end = line.end();
        return;
    }
    let cost = bytes + limits.growth_per_line;
    if cost > limits.max_bytes {
        *error = Some(ChunkError::LineTooLarge {
            line: line.number,
            bytes,
            max_bytes: limits.max_bytes,
        });
        return;
    }
    let full = current.requests >= limits.max_requests || weighed(current, limits) + cost > limits.max_bytes;
    if current.requests > 0 && full {
        chunks.push(*current);
        *current = Chunk {
            start: line.offset,
            end: line.offset,
            requests: 0,
        };
    }
    current.requests += 1;
    current.end = line.end();
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
                    requests: 2
                },
                Chunk {
                    start: 22,
                    end: source.len() as u64,
                    requests: 1
                },
            ]
        );
        let trailing = plan(b"{\"a\":1}\n\n\n", 5, u64::MAX, 0, 2).unwrap();
        assert_eq!(
            trailing,
            [Chunk {
                start: 0,
                end: 10,
                requests: 1
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
