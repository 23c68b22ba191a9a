//! Reading and validating batch input files, streamed line by line from disk.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};

use super::wire::BatchError;

/// Most requests one batch may hold.
const MAX_REQUESTS: u64 = 50_000;
/// Bound on `errors.data` so a huge broken file does not bloat every GET.
const MAX_REPORTED_ERRORS: usize = 10_000;

/// One valid input line.
#[derive(Debug, Clone)]
pub struct LineRequest {
    pub custom_id: String,
    pub body: Value,
}

/// What validation learnt about a valid file.
#[derive(Debug, Clone, Default)]
pub struct InputSummary {
    pub total: u64,
    pub model: Option<String>,
}

/// Reads a file one line at a time without loading it whole.
pub struct LineReader {
    reader: BufReader<tokio::fs::File>,
    buf: Vec<u8>,
    line_no: u64,
}

impl LineReader {
    /// Opens `path` for line-by-line reading.
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        let file = tokio::fs::File::open(path).await?;
        Ok(LineReader {
            reader: BufReader::with_capacity(64 * 1024, file),
            buf: Vec::new(),
            line_no: 0,
        })
    }

    /// Goes back to the first line.
    pub async fn rewind(&mut self) -> std::io::Result<()> {
        self.reader.rewind().await?;
        self.line_no = 0;
        Ok(())
    }

    /// The next non-blank line and its 1-based number, or `None` at the end.
    pub async fn next_line(&mut self) -> std::io::Result<Option<(u64, &[u8])>> {
        loop {
            self.buf.clear();
            if self.reader.read_until(b'\n', &mut self.buf).await? == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            if !self.buf.trim_ascii().is_empty() {
                return Ok(Some((self.line_no, self.buf.trim_ascii())));
            }
        }
    }
}

fn line_error(code: &str, message: &str, param: Option<&str>, line: Option<u64>) -> BatchError {
    BatchError {
        code: code.to_owned(),
        message: message.to_owned(),
        param: param.map(str::to_owned),
        line,
    }
}

fn missing(field: &str, line: u64) -> BatchError {
    line_error(
        "missing_required_parameter",
        &format!("Missing required parameter: '{field}'."),
        Some(field),
        Some(line),
    )
}

/// Checks one line against the batch's endpoint (OPENAI_BATCH_API.md §3).
pub fn check_line(raw: &[u8], line: u64, endpoint: &str) -> Result<LineRequest, BatchError> {
    let value: Value = std::str::from_utf8(raw)
        .ok()
        .and_then(|text| serde_json::from_str(text).ok())
        .filter(Value::is_object)
        .ok_or_else(|| {
            let message = "This line is not parseable as valid JSON.";
            line_error("invalid_json_line", message, None, Some(line))
        })?;
    for field in ["custom_id", "method", "url", "body"] {
        if value.get(field).is_none_or(Value::is_null) {
            return Err(missing(field, line));
        }
    }
    let custom_id = value["custom_id"]
        .as_str()
        .ok_or_else(|| invalid_request("custom_id must be a string.", "custom_id", line))?;
    if value["method"].as_str() != Some("POST") {
        return Err(invalid_request("Only the POST method is supported.", "method", line));
    }
    if value["url"].as_str() != Some(endpoint) {
        let message = "The URL provided for this request does not match the batch endpoint.";
        return Err(line_error("invalid_url", message, Some("url"), Some(line)));
    }
    let body = &value["body"];
    if !body.is_object() {
        return Err(invalid_request("body must be a JSON object.", "body", line));
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let message = "Streaming is not supported by the Batch API.";
        return Err(line_error(
            "streaming_unsupported",
            message,
            Some("body.stream"),
            Some(line),
        ));
    }
    if !body.get("model").is_some_and(Value::is_string) {
        return Err(invalid_request(
            "Missing required parameter: 'model'.",
            "body.model",
            line,
        ));
    }
    if endpoint == "/v1/chat/completions" && !body.get("messages").is_some_and(Value::is_array) {
        let message = "Missing required parameter: 'messages'.";
        return Err(invalid_request(message, "body.messages", line));
    }
    Ok(LineRequest {
        custom_id: custom_id.to_owned(),
        body: body.clone(),
    })
}

fn invalid_request(message: &str, param: &str, line: u64) -> BatchError {
    line_error("invalid_request", message, Some(param), Some(line))
}

/// Validates a whole input file, leaving `reader` at its end. `Ok(Err(errors))` means the
/// batch must fail.
pub async fn validate(
    reader: &mut LineReader,
    endpoint: &str,
) -> std::io::Result<Result<InputSummary, Vec<BatchError>>> {
    let mut summary = InputSummary::default();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    while let Some((line, raw)) = reader.next_line().await? {
        summary.total += 1;
        let result = check_line(raw, line, endpoint).and_then(|request| {
            if seen.insert(request.custom_id.clone()) {
                Ok(request)
            } else {
                let message = format!("The custom_id '{}' is not unique.", request.custom_id);
                Err(line_error(
                    "duplicate_custom_id",
                    &message,
                    Some("custom_id"),
                    Some(line),
                ))
            }
        });
        match result {
            Ok(request) if summary.model.is_none() => {
                summary.model = request.body["model"].as_str().map(str::to_owned);
            }
            Ok(_) => {}
            Err(error) if errors.len() < MAX_REPORTED_ERRORS => errors.push(error),
            Err(_) => {}
        }
    }
    if summary.total == 0 {
        errors.push(line_error("empty_file", "The input file is empty.", None, None));
    }
    if summary.total > MAX_REQUESTS {
        let message = format!("The input file has more than {MAX_REQUESTS} requests.");
        errors.push(line_error("too_many_tasks", &message, None, None));
    }
    Ok(if errors.is_empty() { Ok(summary) } else { Err(errors) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "/v1/chat/completions";

    fn code(raw: &str) -> (String, Option<String>) {
        let err = check_line(raw.as_bytes(), 7, EP).unwrap_err();
        assert_eq!(err.line, Some(7));
        (err.code, err.param)
    }

    #[test]
    fn each_bad_line_gets_its_code() {
        let ok_body = r#"{"model":"m","messages":[]}"#;
        assert_eq!(code("{not json"), ("invalid_json_line".into(), None));
        assert_eq!(code("[1]"), ("invalid_json_line".into(), None));
        let no_id = format!(r#"{{"method":"POST","url":"{EP}","body":{ok_body}}}"#);
        assert_eq!(
            code(&no_id),
            ("missing_required_parameter".into(), Some("custom_id".into()))
        );
        let no_body = format!(r#"{{"custom_id":"a","method":"POST","url":"{EP}"}}"#);
        assert_eq!(
            code(&no_body),
            ("missing_required_parameter".into(), Some("body".into()))
        );
        let bad_url = format!(r#"{{"custom_id":"a","method":"POST","url":"/v1/x","body":{ok_body}}}"#);
        assert_eq!(code(&bad_url), ("invalid_url".into(), Some("url".into())));
        let stream = format!(
            r#"{{"custom_id":"a","method":"POST","url":"{EP}","body":{{"model":"m","messages":[],"stream":true}}}}"#
        );
        assert_eq!(
            code(&stream),
            ("streaming_unsupported".into(), Some("body.stream".into()))
        );
        let no_model = format!(r#"{{"custom_id":"a","method":"POST","url":"{EP}","body":{{"messages":[]}}}}"#);
        assert_eq!(code(&no_model), ("invalid_request".into(), Some("body.model".into())));
        let no_msgs = format!(r#"{{"custom_id":"a","method":"POST","url":"{EP}","body":{{"model":"m"}}}}"#);
        assert_eq!(code(&no_msgs), ("invalid_request".into(), Some("body.messages".into())));
        let good = format!(r#"{{"custom_id":"a","method":"POST","url":"{EP}","body":{ok_body}}}"#);
        assert_eq!(check_line(good.as_bytes(), 1, EP).unwrap().custom_id, "a");
    }

    async fn validate_path(path: &Path) -> std::io::Result<Result<InputSummary, Vec<BatchError>>> {
        validate(&mut LineReader::open(path).await?, EP).await
    }

    #[tokio::test]
    async fn file_validation_reports_duplicates_and_empty_files() {
        let dir = std::env::temp_dir().join(format!("llmb-sim-input-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = |id: &str| {
            format!(r#"{{"custom_id":"{id}","method":"POST","url":"{EP}","body":{{"model":"m","messages":[]}}}}"#)
        };
        let path = dir.join("dup.jsonl");
        std::fs::write(&path, format!("{}\n\n{}\n{}\n", line("a"), line("b"), line("a"))).unwrap();
        let errors = validate_path(&path).await.unwrap().unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].code.as_str(), errors[0].line),
            ("duplicate_custom_id", Some(4))
        );

        let empty = dir.join("empty.jsonl");
        std::fs::write(&empty, "\n").unwrap();
        let errors = validate_path(&empty).await.unwrap().unwrap_err();
        assert_eq!(errors[0].code, "empty_file");

        let good = dir.join("good.jsonl");
        std::fs::write(&good, format!("{}\n{}", line("a"), line("b"))).unwrap();
        let summary = validate_path(&good).await.unwrap().unwrap();
        assert_eq!((summary.total, summary.model.as_deref()), (2, Some("m")));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
