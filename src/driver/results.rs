//! Counting what came back: lines, bytes, token usage and requests that never ran, read
//! from downloaded output and error files line by line (never whole in memory).

use std::path::Path;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::api::Usage;
use crate::engine::Downloaded;

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
    response: Option<Response>,
}

#[derive(Deserialize)]
struct Response {
    body: Option<Body>,
}

#[derive(Deserialize)]
struct Body {
    usage: Option<LineUsage>,
}

/// Chat and completions report prompt/completion tokens; responses report input/output.
#[derive(Deserialize, Default)]
struct LineUsage {
    #[serde(alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(alias = "output_tokens")]
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorLine {
    error: Option<LineError>,
}

#[derive(Deserialize)]
struct LineError {
    code: Option<String>,
}

/// Error codes of requests that were never executed.
const NOT_RUN_CODES: &[&str] = &["batch_expired", "batch_cancelled"];

/// Counts lines and sums `response.body.usage` over an output file.
pub async fn summarise_output(path: &Path) -> std::io::Result<OutputSummary> {
    let mut summary = OutputSummary::default();
    for_each_line(path, |line| {
        summary.lines += 1;
        summary.bytes += line.len() as u64 + 1;
        let usage = serde_json::from_slice::<OutputLine>(line)
            .ok()
            .and_then(|l| l.response?.body?.usage)
            .unwrap_or_default();
        let prompt = usage.prompt_tokens.unwrap_or(0);
        let completion = usage.completion_tokens.unwrap_or(0);
        summary.usage.prompt_tokens += prompt;
        summary.usage.completion_tokens += completion;
        summary.usage.total_tokens += usage.total_tokens.unwrap_or(prompt + completion);
    })
    .await?;
    Ok(summary)
}

/// Counts lines and the requests that never ran in an error file.
pub async fn summarise_errors(path: &Path) -> std::io::Result<ErrorSummary> {
    let mut summary = ErrorSummary::default();
    for_each_line(path, |line| {
        summary.lines += 1;
        summary.bytes += line.len() as u64 + 1;
        let code = serde_json::from_slice::<ErrorLine>(line)
            .ok()
            .and_then(|l| l.error?.code);
        if code.is_some_and(|c| NOT_RUN_CODES.contains(&c.as_str())) {
            summary.not_run += 1;
        }
    })
    .await?;
    Ok(summary)
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
    async fn sums_usage_of_chat_and_responses_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.jsonl");
        let lines = [
            r#"{"id":"r1","custom_id":"a","response":{"status_code":200,"body":{"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}},"error":null}"#,
            r#"{"id":"r2","custom_id":"b","response":{"status_code":200,"body":{"usage":{"input_tokens":7,"output_tokens":3,"total_tokens":10}}},"error":null}"#,
            r#"{"id":"r3","custom_id":"c","response":{"status_code":200,"body":{"usage":{"prompt_tokens":4,"total_tokens":4}}},"error":null}"#,
        ];
        std::fs::write(&path, lines.join("\r\n")).unwrap();
        let summary = summarise_output(&path).await.unwrap();
        assert_eq!(summary.lines, 3);
        assert_eq!(
            summary.usage,
            Usage {
                prompt_tokens: 21,
                completion_tokens: 8,
                total_tokens: 29
            }
        );
    }

    #[tokio::test]
    async fn lines_that_are_not_utf8_are_counted_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.jsonl");
        let mut bytes =
            br#"{"custom_id":"a","response":{"body":{"usage":{"prompt_tokens":2,"completion_tokens":1}}}}"#.to_vec();
        bytes.extend_from_slice(b"\n{\"custom_id\":\"\xff\xfe\"}\n");
        std::fs::write(&path, bytes).unwrap();
        let summary = summarise_output(&path).await.unwrap();
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
        let summary = summarise_errors(&path).await.unwrap();
        assert_eq!((summary.lines, summary.not_run), (3, 2));
    }
}
