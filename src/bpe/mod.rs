//! OpenAI's byte-pair encodings (o200k_base, cl100k_base), for counting tokens: the token
//! estimate of an input and the simulator's usage. Their tables are written by `build.rs`
//! and compiled into the binary ([`table`]), so a process counts from its first line without
//! building anything: no load time, and a few MiB of the binary's pages resident instead of
//! the 36 MiB of maps tiktoken-rs builds per process.
//!
//! Text splits into pieces by the encoding's pattern; a piece that is a token counts one,
//! any other is merged up from its bytes, the adjacent pair whose joined bytes rank lowest
//! first (leftmost on a tie), until no joined pair is a token: the ordinary encoding
//! tiktoken computes (the unit tests hold the counts to tiktoken-rs's).

pub mod request;
pub mod table;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::ControlFlow;
use std::sync::OnceLock;

use fancy_regex::Regex;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

/// One byte-pair encoding.
pub struct Encoding {
    name: &'static str,
    pattern: &'static str,
    regex: OnceLock<Regex>,
    bytes: &'static [u8],
    ends: &'static [u8],
    index: &'static [u8],
}

macro_rules! encoding {
    ($name:literal, $pattern:expr) => {
        Encoding {
            name: $name,
            pattern: $pattern,
            regex: OnceLock::new(),
            bytes: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".bytes")),
            ends: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".ends")),
            index: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".index")),
        }
    };
}

/// gpt-4o, gpt-4.1, gpt-5 and the o-series.
pub static O200K_BASE: Encoding = encoding!("o200k_base", tiktoken_rs::O200K_BASE_PAT_STR);

/// gpt-4, gpt-3.5 and the embeddings models.
pub static CL100K_BASE: Encoding = encoding!("cl100k_base", CL100K_BASE_PATTERN);

const CL100K_BASE_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

/// The encoding of a model family OpenAI publishes one for.
pub fn for_model(model: &str) -> Option<&'static Encoding> {
    match get_tokenizer(model)? {
        Tokenizer::O200kBase | Tokenizer::O200kHarmony => Some(&O200K_BASE),
        Tokenizer::Cl100kBase => Some(&CL100K_BASE),
        _ => None,
    }
}

impl std::fmt::Debug for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Encoding {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The tokens of `text`.
    pub fn count(&self, text: &str) -> u64 {
        let mut tokens = 0;
        self.each_token(text, |_| {
            tokens += 1;
            ControlFlow::Continue(())
        });
        tokens
    }

    /// The bytes of `text`'s first `max` tokens (which may end inside a character).
    pub fn prefix_len(&self, text: &str, max: u64) -> usize {
        let (mut tokens, mut len) = (0, 0);
        self.each_token(text, |token_len| {
            if tokens == max {
                return ControlFlow::Break(());
            }
            tokens += 1;
            len += token_len;
            ControlFlow::Continue(())
        });
        len
    }

    /// Calls `f` with the length of each token of `text`, in order, until it breaks.
    fn each_token(&self, text: &str, mut f: impl FnMut(usize) -> ControlFlow<()>) {
        let regex = self
            .regex
            .get_or_init(|| Regex::new(self.pattern).expect("the encoding's pattern compiles"));
        let mut done = 0;
        for piece in regex.find_iter(text) {
            // Only a pattern backtracking past fancy-regex's limit errs; the rest counts
            // a token per four bytes rather than panicking as tiktoken-rs does.
            let Ok(piece) = piece else { break };
            done = piece.end();
            let piece = piece.as_str().as_bytes();
            let flow = if self.rank(piece).is_some() {
                f(piece.len())
            } else {
                self.merge(piece, &mut f)
            };
            if flow.is_break() {
                return;
            }
        }
        let mut rest = text.len() - done;
        while rest > 0 && f(rest.min(4)).is_continue() {
            rest -= rest.min(4);
        }
    }

    /// Splits a piece that is not a token into tokens, calling `f` with each one's length.
    /// The pairs wait in a heap by rank and then place, so a piece of n bytes costs
    /// O(n log n): a hostile line of one long word cannot stall the count (the scan for the
    /// lowest pair that tiktoken-rs does makes it O(n²)).
    fn merge(&self, piece: &[u8], f: &mut impl FnMut(usize) -> ControlFlow<()>) -> ControlFlow<()> {
        let mut parts = Parts::new(piece.len());
        let mut pairs = BinaryHeap::new();
        for start in 0..piece.len() {
            self.rank_pair(piece, &mut parts, &mut pairs, start);
        }
        while let Some(Reverse((rank, start))) = pairs.pop() {
            // A pair whose parts have merged since is gone or ranks otherwise now.
            if parts.pair_rank[start] != Some(rank) {
                continue;
            }
            parts.join(start);
            self.rank_pair(piece, &mut parts, &mut pairs, start);
            if start > 0 {
                let before = parts.prev[start];
                self.rank_pair(piece, &mut parts, &mut pairs, before);
            }
        }
        let mut start = 0;
        while start < piece.len() {
            f(parts.next[start] - start)?;
            start = parts.next[start];
        }
        ControlFlow::Continue(())
    }

    /// Ranks the part at `start` joined with the one after it, if that is a token.
    fn rank_pair(&self, piece: &[u8], parts: &mut Parts, pairs: &mut BinaryHeap<Reverse<(u32, usize)>>, start: usize) {
        let after = parts.next[start];
        let rank = parts.next.get(after).and_then(|&end| self.rank(&piece[start..end]));
        parts.pair_rank[start] = rank;
        if let Some(rank) = rank {
            pairs.push(Reverse((rank, start)));
        }
    }

    /// The rank of the token of exactly these bytes.
    fn rank(&self, bytes: &[u8]) -> Option<u32> {
        let slots = self.index.len() / 4;
        let mut slot = table::hash(bytes) as usize & (slots - 1);
        loop {
            let rank = read_u32(self.index, slot).checked_sub(1)?;
            if self.token(rank) == bytes {
                return Some(rank);
            }
            slot = (slot + 1) & (slots - 1);
        }
    }

    fn token(&self, rank: u32) -> &'static [u8] {
        let rank = rank as usize;
        let start = if rank == 0 {
            0
        } else {
            read_u32(self.ends, rank - 1) as usize
        };
        &self.bytes[start..read_u32(self.ends, rank) as usize]
    }
}

/// The parts of a piece being merged, linked by the byte each starts at.
struct Parts {
    /// Where the part starting here ends (the piece's length for the last).
    next: Vec<usize>,
    /// Where the part before the one starting here starts.
    prev: Vec<usize>,
    /// The rank of the part starting here joined with the next one, if that is a token.
    pair_rank: Vec<Option<u32>>,
}

impl Parts {
    /// Every byte a part of its own.
    fn new(len: usize) -> Parts {
        Parts {
            next: (1..=len).collect(),
            prev: (0..len).map(|start| start.saturating_sub(1)).collect(),
            pair_rank: vec![None; len],
        }
    }

    /// Joins the part at `start` with the one after it.
    fn join(&mut self, start: usize) {
        let gone = self.next[start];
        self.pair_rank[gone] = None;
        self.next[start] = self.next[gone];
        if let Some(prev) = self.prev.get_mut(self.next[start]) {
            *prev = start;
        }
    }
}

fn read_u32(array: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(array[i * 4..i * 4 + 4].try_into().expect("four bytes"))
}

#[cfg(test)]
mod tests;
