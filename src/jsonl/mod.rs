//! Streaming validation of OpenAI batch input files (JSONL).
//!
//! Each line of a batch input file is one request:
//! `{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`.
//! [`Validator`] checks a file fed in chunks of any size, in memory that does not grow with the
//! file (apart from the compact set of `custom_id`s), and reports every problem as
//! `line N: <what is wrong> (<field>)`. [`validate_reader`] does the same for an async reader.
//!
//! The rules: every non-blank line is a JSON object; `custom_id` is a non-empty string unique
//! in the file; `method` is `"POST"`; `url` equals the batch endpoint; `body` is an object with
//! a non-empty string `model` and without `stream: true`; the file has at least one request,
//! at most [`Limits::max_requests`] requests and at most [`Limits::max_bytes`] bytes; the text
//! is UTF-8.
//!
//! Accepted: LF or CRLF line endings, a missing final newline, any UTF-8 text, mixed models in
//! one file (gateways that route by model accept them), extra fields anywhere. Blank lines
//! (empty or whitespace only) are skipped wherever they are and are not requests; they still
//! count in line numbers. OpenAI itself may reject a blank line inside a file, so tools that
//! rewrite files drop them.
//!
//! [`LineSplitter`] is the reusable line splitter underneath (byte offsets, CRLF, lines
//! spanning chunks, bounded buffering).

mod checks;
mod chunks;
mod estimate;
mod id_digest;
mod ids;
mod lines;
mod prepare;
mod report;
mod request;
mod rewrite;
mod slice;
mod validator;

#[cfg(test)]
mod prepare_tests;
#[cfg(test)]
mod tests;

pub use chunks::{CheckedChunk, Chunk, ChunkError, ChunkLimits, ChunkPlanner};
pub use estimate::{EXACT_BYTES, SAMPLE_EVERY, add_estimates};
pub use id_digest::IdDigest;
pub use lines::{Line, LineSplitter, Terminator};
pub use prepare::{Discard, Prepared, Preparer, prepare_bytes};
pub use report::{Limits, Problem, Report, Summary};
pub use rewrite::Rewrite;
pub use slice::{LineAlignedSlice, aligned_range, read_start};
pub use validator::{DEFAULT_PROBLEM_CAP, Validator, validate_bytes, validate_file, validate_reader};

/// Batch endpoints whose request lines this module validates.
pub const SUPPORTED_ENDPOINTS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/responses",
    "/v1/moderations",
];

/// Whether `endpoint` is one of [`SUPPORTED_ENDPOINTS`].
pub fn is_supported_endpoint(endpoint: &str) -> bool {
    SUPPORTED_ENDPOINTS.contains(&endpoint)
}
