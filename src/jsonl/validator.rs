//! The streaming validator: feed chunks, get a [`Report`].

use tokio::io::{AsyncRead, AsyncReadExt};

use super::checks::LineChecker;
use super::lines::LineSplitter;
use super::report::{Limits, Problem, Report, Summary};

/// How many problems a [`Validator`] stores by default (all are counted).
pub const DEFAULT_PROBLEM_CAP: usize = 1000;

/// Size of the reads [`validate_reader`] makes.
const READ_CHUNK: usize = 64 * 1024;
/// Size of the reads [`validate_file`] makes: large blocks, few system calls.
const FILE_BLOCK: usize = 1024 * 1024;

/// Push-based streaming validator of an OpenAI batch input file: feed arbitrary chunks (lines
/// may span chunks), then [`finish`](Validator::finish).
///
/// Memory stays bounded whatever the file size, apart from the set of `custom_id`s (stored
/// compactly): at most the problem cap of problems is stored, at most 1,024 distinct models are
/// tallied, and no more than `limits.max_bytes` bytes of any one line are buffered.
///
/// Blank lines (empty or whitespace only, wherever they are) are ignored: they are not
/// requests, but they count in line numbers so that messages point at the physical line.
#[derive(Debug)]
pub struct Validator {
    limits: Limits,
    splitter: LineSplitter,
    checker: LineChecker,
}

impl Validator {
    /// A validator for a batch whose endpoint is `endpoint` (e.g. `/v1/chat/completions`);
    /// every line's `url` must equal it. See [`super::SUPPORTED_ENDPOINTS`].
    pub fn new(endpoint: &str, limits: Limits) -> Self {
        let max_line = usize::try_from(limits.max_bytes).unwrap_or(usize::MAX);
        Self {
            limits,
            splitter: LineSplitter::with_max_line(max_line),
            checker: LineChecker::new(endpoint, limits.max_bytes, DEFAULT_PROBLEM_CAP),
        }
    }

    /// Stores at most `cap` problems instead of [`DEFAULT_PROBLEM_CAP`].
    pub fn with_problem_cap(mut self, cap: usize) -> Self {
        self.checker.problems.cap = cap;
        self
    }

    /// Digests the custom_ids under `key` instead of a random one (so that two passes can be
    /// compared).
    pub fn with_id_key(mut self, key: [u8; 16]) -> Self {
        self.checker.id_digest = super::IdDigest::with_key(key);
        self
    }

    /// Feeds the next chunk of the file.
    pub fn feed(&mut self, chunk: &[u8]) {
        let checker = &mut self.checker;
        self.splitter.feed(chunk, |line| checker.check(line));
    }

    /// True once a line-level problem was found (file-level ones and duplicate custom_ids are
    /// only known at the end).
    pub fn has_problems(&self) -> bool {
        self.checker.problems.count > 0
    }

    /// Ends the file and reports. File-level problems come first in the report.
    pub fn finish(self) -> Report {
        let Self {
            limits,
            splitter,
            mut checker,
        } = self;
        let bytes = splitter.bytes_seen();
        splitter.finish(|line| checker.check(line));
        report(checker, bytes, limits)
    }
}

/// The report of a file of `bytes` bytes whose lines `checker` checked.
pub(super) fn report(mut checker: LineChecker, bytes: u64, limits: Limits) -> Report {
    checker.add_duplicates();
    let estimate = std::mem::take(&mut checker.estimate).finish();
    let summary = Summary {
        requests: checker.requests,
        bytes,
        models: estimate.requests,
        estimated_tokens: estimate.total_tokens,
        estimates: estimate.by_model,
        ids: Some(checker.id_digest),
    };
    let file_problems = file_problems(&summary, limits);
    let problems = checker.problems;
    let problem_count = problems.count + file_problems.len() as u64;
    let mut stored = file_problems;
    stored.extend(problems.stored);
    stored.truncate(problems.cap);
    Report {
        summary,
        problems: stored,
        problem_count,
    }
}

/// Problems with the file as a whole.
fn file_problems(summary: &Summary, limits: Limits) -> Vec<Problem> {
    const SPLIT_HINT: &str = "(use a BatchSweep to split it)";
    let mut problems = Vec::new();
    if summary.requests == 0 {
        problems.push(Problem::file("the file has no requests"));
    }
    if summary.requests > limits.max_requests {
        problems.push(Problem::file(format!(
            "the file has {} requests; the limit is {} {SPLIT_HINT}",
            summary.requests, limits.max_requests
        )));
    }
    if summary.bytes > limits.max_bytes {
        problems.push(Problem::file(format!(
            "the file is {} bytes; the limit is {} {SPLIT_HINT}",
            summary.bytes, limits.max_bytes
        )));
    }
    problems
}

/// Validates a whole input already in memory (a ConfigMap, a Secret, inline requests).
pub fn validate_bytes(bytes: &[u8], endpoint: &str, limits: Limits) -> Report {
    let mut validator = Validator::new(endpoint, limits);
    validator.feed(bytes);
    validator.finish()
}

/// Validates a local file in one blocking pass (std reads of [`FILE_BLOCK`], on a thread of the
/// blocking pool): an async file read hops to that pool and back for every block, which cost
/// as much system time as the validation itself.
pub async fn validate_file(path: &std::path::Path, endpoint: &str, limits: Limits) -> std::io::Result<Report> {
    let (path, endpoint) = (path.to_path_buf(), endpoint.to_string());
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut validator = Validator::new(&endpoint, limits);
        let mut block = vec![0u8; FILE_BLOCK];
        loop {
            match std::io::Read::read(&mut file, &mut block) {
                Ok(0) => return Ok(validator.finish()),
                Ok(n) => validator.feed(&block[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Validates everything `reader` yields, reading it in 64 KiB chunks.
pub async fn validate_reader<R: AsyncRead + Unpin>(
    mut reader: R,
    endpoint: &str,
    limits: Limits,
) -> std::io::Result<Report> {
    let mut validator = Validator::new(endpoint, limits);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(validator.finish());
        }
        validator.feed(&buf[..n]);
    }
}
