//! Counting what came back: lines, bytes, token usage and requests that never ran, read
//! from downloaded output and error files line by line (never whole in memory), and every
//! line's custom_id checked against the input's (see [`ResultIds`]).

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::api::Usage;
use crate::engine::{Downloaded, ResultCheck};
use crate::jsonl::IdDigest;
use crate::pricing::{LineUsage, add_line};

/// The custom_ids seen across a batch's output and error files, kept as their keyed hashes
/// (8 bytes each). The first line of an id counts; a later one is a duplicate. At the end the
/// distinct ids are compared with the input's digest, when there is one.
#[derive(Debug)]
pub struct ResultIds {
    expected: Option<IdDigest>,
    /// Under the input's key (or a random one when there is no input digest).
    found: IdDigest,
    seen: HashSet<u64>,
    check: ResultCheck,
}

/// What one line's custom_id is to the results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    First,
    Duplicate,
    Unidentified,
}

impl ResultIds {
    /// A check against `expected` (the input's digest), or for duplicates only without one.
    pub fn new(expected: Option<IdDigest>) -> Self {
        let key = expected.map_or_else(rand::random, |e| e.key);
        Self {
            expected,
            found: IdDigest::with_key(key),
            seen: HashSet::new(),
            check: ResultCheck::default(),
        }
    }

    fn see(&mut self, custom_id: Option<&str>) -> Seen {
        let Some(id) = custom_id else {
            self.check.unidentified_lines += 1;
            return Seen::Unidentified;
        };
        let hash = self.found.hash(id.as_bytes());
        if self.seen.insert(hash) {
            self.found.add_hash(hash);
            Seen::First
        } else {
            self.check.duplicate_lines += 1;
            Seen::Duplicate
        }
    }

    /// What the files proved.
    pub fn finish(self) -> ResultCheck {
        let ids_match = self
            .expected
            .map(|e| e.sum == self.found.sum && e.count == self.found.count);
        ResultCheck {
            ids_match,
            ..self.check
        }
    }
}

/// What an output file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputSummary {
    pub lines: u64,
    pub bytes: u64,
    pub usage: Usage,
}

/// What an error file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorSummary {
    pub lines: u64,
    pub bytes: u64,
    /// Lines whose request never ran (the batch expired or was cancelled first).
    pub not_run: u64,
}

impl OutputSummary {
    /// Its counts and usage, in what a download step reports.
    pub fn record(self, downloaded: &mut Downloaded) {
        (downloaded.output_lines, downloaded.output_bytes, downloaded.usage) = (self.lines, self.bytes, self.usage);
    }
}

impl ErrorSummary {
    /// Its counts, in what a download step reports.
    pub fn record(self, downloaded: &mut Downloaded) {
        (downloaded.error_lines, downloaded.error_bytes, downloaded.not_run) = (self.lines, self.bytes, self.not_run);
    }
}

#[derive(Deserialize)]
struct OutputLine {
    custom_id: Option<CustomId>,
    response: Option<Response>,
}

/// A custom_id as a result line has it: only a string identifies a line.
#[derive(Deserialize)]
#[serde(untagged)]
enum CustomId {
    Str(String),
    Other(serde::de::IgnoredAny),
}

impl CustomId {
    fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(id) => Some(id),
            Self::Other(_) => None,
        }
    }
}

#[derive(Deserialize)]
struct Response {
    body: Option<Body>,
}

#[derive(Deserialize)]
struct Body {
    /// The model that answered (a dated snapshot, often, of the one asked for).
    model: Option<ModelName>,
    usage: Option<LineUsage>,
}

/// A body's `model`: only a string names one.
#[derive(Deserialize)]
#[serde(untagged)]
enum ModelName {
    Str(String),
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct ErrorLine {
    custom_id: Option<CustomId>,
    error: Option<LineError>,
}

#[derive(Deserialize)]
struct LineError {
    code: Option<String>,
}

/// Error codes of requests that were never executed.
const NOT_RUN_CODES: &[&str] = &["batch_expired", "batch_cancelled"];

/// Counts lines and sums `response.body.usage` over an output file, by `response.body.model`;
/// each line's custom_id goes through `ids` (a duplicate's usage is not summed).
pub async fn summarise_output(path: &Path, ids: &mut ResultIds) -> std::io::Result<OutputSummary> {
    let mut summary = OutputSummary::default();
    for_each_line(path, |line| {
        summary.lines += 1;
        summary.bytes += line.len() as u64 + 1;
        let parsed = parse::<OutputLine>(line);
        let custom_id = parsed.as_ref().and_then(|l| l.custom_id.as_ref()?.as_str());
        if ids.see(custom_id) != Seen::First {
            return;
        }
        ids.check.completed += 1;
        let body = parsed.and_then(|l| l.response?.body);
        let model = body.as_ref().and_then(|b| match b.model.as_ref()? {
            ModelName::Str(name) => Some(name.as_str()),
            ModelName::Other(_) => None,
        });
        let tokens = body.as_ref().and_then(|b| b.usage.as_ref()).map(LineUsage::tokens);
        add_line(&mut summary.usage, model, &tokens.unwrap_or_default());
    })
    .await?;
    Ok(summary)
}

/// Counts lines and the requests that never ran in an error file; each line's custom_id goes
/// through `ids` (after the output file's).
pub async fn summarise_errors(path: &Path, ids: &mut ResultIds) -> std::io::Result<ErrorSummary> {
    let mut summary = ErrorSummary::default();
    for_each_line(path, |line| {
        summary.lines += 1;
        summary.bytes += line.len() as u64 + 1;
        let parsed = parse::<ErrorLine>(line);
        let custom_id = parsed.as_ref().and_then(|l| l.custom_id.as_ref()?.as_str());
        if ids.see(custom_id) != Seen::First {
            return;
        }
        ids.check.failed += 1;
        let code = parsed.and_then(|l| l.error?.code);
        if code.is_some_and(|c| NOT_RUN_CODES.contains(&c.as_str())) {
            summary.not_run += 1;
        }
    })
    .await?;
    Ok(summary)
}

/// A result line's fields; a line that is JSON but for bytes that are not UTF-8 (in a model's
/// answer, say) is read with those bytes replaced, so its custom_id still counts (and an id
/// with such bytes no longer matches the input's).
fn parse<T: serde::de::DeserializeOwned>(line: &[u8]) -> Option<T> {
    serde_json::from_slice(line)
        .ok()
        .or_else(|| match std::str::from_utf8(line) {
            Ok(_) => None,
            Err(_) => serde_json::from_str(&String::from_utf8_lossy(line)).ok(),
        })
}

/// Calls `f` with every line that is not blank, as bytes: a gateway's result file may hold
/// anything (invalid UTF-8 included), and is only read here, never judged by its encoding.
/// Lines are bounded by the download's line limit.
async fn for_each_line(path: &Path, mut f: impl FnMut(&[u8])) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, tokio::fs::File::open(path).await?);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let end = line
            .iter()
            .rposition(|b| !matches!(b, b'\n' | b'\r'))
            .map_or(0, |i| i + 1);
        if !line[..end].trim_ascii().is_empty() {
            f(&line[..end]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sums_usage_of_every_body_shape_by_the_model_that_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.jsonl");
        let lines = [
            // chat completions: cached input, reasoning tokens inside completion_tokens
            r#"{"id":"r1","custom_id":"a","response":{"status_code":200,"body":{"object":"chat.completion","model":"gpt-4o-mini-2024-07-18","usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}},"error":null}"#,
            // responses: input/output tokens, cached in input_tokens_details
            r#"{"id":"r2","custom_id":"b","response":{"status_code":200,"body":{"object":"response","model":"o3-mini","usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":7},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":10}}},"error":null}"#,
            // embeddings: prompt tokens only
            r#"{"id":"r3","custom_id":"c","response":{"status_code":200,"body":{"object":"list","model":"text-embedding-3-small","usage":{"prompt_tokens":4,"total_tokens":4}}},"error":null}"#,
            // completions
            r#"{"id":"r4","custom_id":"d","response":{"status_code":200,"body":{"object":"text_completion","model":"gpt-4o-mini-2024-07-18","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}},"error":null}"#,
            // no model, no usage; a model that is not a string
            r#"{"id":"r5","custom_id":"e","response":{"status_code":200,"body":{}},"error":null}"#,
            r#"{"id":"r6","custom_id":"f","response":{"status_code":200,"body":{"model":7,"usage":{"prompt_tokens":1}}},"error":null}"#,
        ];
        std::fs::write(&path, lines.join("\r\n")).unwrap();
        let summary = summarise_output(&path, &mut ResultIds::new(None)).await.unwrap();
        assert_eq!(summary.lines, 6);
        let usage = &summary.usage;
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
            (23, 10, 33)
        );
        let rows: Vec<_> = usage
            .by_model
            .iter()
            .map(|m| {
                (
                    m.model.as_str(),
                    m.requests,
                    m.input_tokens,
                    m.cached_input_tokens,
                    m.output_tokens,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("(unknown)", 2, 1, 0, 0),
                ("gpt-4o-mini-2024-07-18", 2, 11, 4, 7),
                ("o3-mini", 1, 7, 7, 3),
                ("text-embedding-3-small", 1, 4, 0, 0),
            ]
        );
    }

    #[tokio::test]
    async fn a_gateway_naming_a_new_model_in_every_answer_cannot_grow_the_status() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.jsonl");
        let lines: Vec<String> = (0..2000)
            .map(|i| {
                let model = format!("model-{i}-{}", "y".repeat(500));
                json_line(&format!("id-{i}"), &model)
            })
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        let summary = summarise_output(&path, &mut ResultIds::new(None)).await.unwrap();
        let models = &summary.usage.by_model;
        assert_eq!(models.len(), crate::api::MAX_USAGE_MODELS + 1, "50 named and (other)");
        assert!(models.iter().all(|m| m.model.len() <= crate::pricing::MAX_MODEL_NAME));
        let other = models.iter().find(|m| m.model == crate::api::OTHER_MODELS).unwrap();
        assert_eq!((other.requests, summary.usage.prompt_tokens), (1950, 2000 * 3));
    }

    fn json_line(custom_id: &str, model: &str) -> String {
        serde_json::json!({"custom_id": custom_id, "response": {"status_code": 200, "body": {"model": model,
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}}})
        .to_string()
    }

    #[tokio::test]
    async fn lines_that_are_not_utf8_are_counted_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.jsonl");
        let mut bytes =
            br#"{"custom_id":"a","response":{"body":{"usage":{"prompt_tokens":2,"completion_tokens":1}}}}"#.to_vec();
        bytes.extend_from_slice(b"\n{\"custom_id\":\"\xff\xfe\"}\n");
        std::fs::write(&path, bytes).unwrap();
        let summary = summarise_output(&path, &mut ResultIds::new(None)).await.unwrap();
        assert_eq!((summary.lines, summary.usage.total_tokens), (2, 3));
    }

    #[tokio::test]
    async fn counts_requests_that_never_ran() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("errors.jsonl");
        let lines = [
            r#"{"id":"r1","custom_id":"a","response":{"status_code":500,"body":{"error":{"message":"x"}}},"error":null}"#,
            r#"{"id":"r2","custom_id":"b","response":null,"error":{"code":"batch_expired","message":"late"}}"#,
            r#"{"id":"r3","custom_id":"c","response":null,"error":{"code":"batch_cancelled","message":"stop"}}"#,
        ];
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let summary = summarise_errors(&path, &mut ResultIds::new(None)).await.unwrap();
        assert_eq!((summary.lines, summary.not_run), (3, 2));
    }

    fn expected(ids: &[&str]) -> IdDigest {
        let mut digest = IdDigest::random();
        for id in ids {
            digest.add(id.as_bytes());
        }
        digest
    }

    fn write(dir: &Path, name: &str, ids: &[&str]) -> std::path::PathBuf {
        let path = dir.join(name);
        let lines: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"custom_id":{},"response":{{"body":{{"usage":{{"total_tokens":1}}}}}},"error":{{"code":"x"}}}}"#, serde_json::json!(id)))
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    #[tokio::test]
    async fn ids_across_both_files_are_checked_against_the_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let (output, errors) = (
            write(dir.path(), "output.jsonl", &["a", "b"]),
            write(dir.path(), "errors.jsonl", &["c"]),
        );
        let mut ids = ResultIds::new(Some(expected(&["c", "a", "b"])));
        let summary = summarise_output(&output, &mut ids).await.unwrap();
        summarise_errors(&errors, &mut ids).await.unwrap();
        assert_eq!(summary.usage.total_tokens, 2);
        let check = ids.finish();
        assert_eq!((check.completed, check.failed, check.ids_match), (2, 1, Some(true)));
    }

    #[tokio::test]
    async fn duplicates_foreign_and_unreadable_ids_are_found() {
        let dir = tempfile::tempdir().unwrap();
        // "a" twice in the output and once more in the errors; one id the input never had.
        let output = write(dir.path(), "output.jsonl", &["a", "a", "../../etc/passwd"]);
        let errors = write(dir.path(), "errors.jsonl", &["a", "b"]);
        let mut bytes = std::fs::read(&output).unwrap();
        bytes.extend_from_slice(b"{\"custom_id\":7}\nnot json\n");
        std::fs::write(&output, bytes).unwrap();
        let mut ids = ResultIds::new(Some(expected(&["a", "b", "c"])));
        let summary = summarise_output(&output, &mut ids).await.unwrap();
        summarise_errors(&errors, &mut ids).await.unwrap();
        assert_eq!(
            (summary.lines, summary.usage.total_tokens),
            (5, 2),
            "a duplicate's usage is not summed"
        );
        let check = ids.finish();
        assert_eq!(
            (
                check.completed,
                check.failed,
                check.duplicate_lines,
                check.unidentified_lines
            ),
            (2, 1, 2, 2)
        );
        assert_eq!(
            check.ids_match,
            Some(false),
            "same count as the input, not the same ids"
        );
        // Without the input's digest, duplicates are still found.
        let mut ids = ResultIds::new(None);
        summarise_output(&output, &mut ids).await.unwrap();
        let check = ids.finish();
        assert_eq!((check.duplicate_lines, check.ids_match), (1, None));
    }
}
