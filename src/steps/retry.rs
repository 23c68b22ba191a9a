//! The input of a BatchSweep follow-up (`spec.retry`), made on the gateway from a finished
//! attempt: its error file says which custom_ids failed retryably, its input file (already
//! sliced and rewritten) holds those lines. They are streamed through, filtered, and uploaded
//! under a name derived from the attempt's upstream batch, so a restart adopts the upload.
//! Both drivers call this; what counts as retryable is decided in `sweep::retryable_custom_id`.

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::io::AsyncWriteExt;

use crate::api::BatchStatus;
use crate::engine::{ErrorClass, Outcome};
use crate::gateway::{GatewayClient, GatewayError, UploadSource};
use crate::sweep::{retry_filename, retryable_custom_id};

/// A follow-up's input on the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryInput {
    pub file_id: String,
    /// The lines it holds.
    pub lines: u64,
}

/// Why no follow-up input could be made now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RetryError {
    pub message: String,
    /// Worth trying again later (gateway unavailable, 429, 5xx).
    pub transient: bool,
}

impl RetryError {
    fn gateway(what: &str, e: GatewayError) -> Self {
        RetryError {
            transient: e.is_retryable(),
            message: format!("{what}: {e}"),
        }
    }

    fn local(what: &str, e: std::io::Error) -> Self {
        RetryError {
            transient: true,
            message: format!("{what}: {e}"),
        }
    }
}

/// The follow-up input of the finished attempt `status`: `Ok(None)` when none of its lines
/// failed retryably. The filtered lines pass through a temporary file, removed afterwards.
pub async fn follow_up_input(client: &GatewayClient, status: &BatchStatus) -> Result<Option<RetryInput>, RetryError> {
    let gateway = status.gateway.clone().unwrap_or_default();
    let Some(error_file) = gateway.error_file_id else {
        return Ok(None);
    };
    let ids = retryable_ids(client, &error_file).await?;
    if ids.is_empty() {
        return Ok(None);
    }
    let (Some(input_file), Some(batch_id)) = (gateway.input_file_id, gateway.batch_id) else {
        return Err(RetryError {
            message: "the attempt left no input file on the gateway (direct mode?): its lines cannot be retried".into(),
            transient: false,
        });
    };
    let path = std::env::temp_dir().join(format!("llmbatch-retry-{}.jsonl", uuid::Uuid::new_v4().simple()));
    // The follow-up's input is uploaded once the attempt has finished: a search for an upload
    // of an earlier run looks back that far.
    let finished = status.completion_time.as_ref().or(status.start_time.as_ref());
    let upload = Upload {
        filename: retry_filename(&batch_id),
        since: finished.map(|t| t.0.as_second()),
    };
    let result = filter_and_upload(client, &input_file, &ids, &upload, &path).await;
    let _ = tokio::fs::remove_file(&path).await;
    result.map(Some)
}

/// The custom_ids of the retryable lines of an error file, streamed.
pub async fn retryable_ids(client: &GatewayClient, error_file: &str) -> Result<BTreeSet<String>, RetryError> {
    let what = format!("reading error file {error_file}");
    let content = client
        .file_content(error_file)
        .await
        .map_err(|e| RetryError::gateway(&what, e))?;
    let mut ids = BTreeSet::new();
    for_each_line(content, |line| {
        if let Some(id) = retryable_custom_id(line) {
            ids.insert(id);
        }
    })
    .await
    .map_err(|e| RetryError::gateway(&what, e))?;
    Ok(ids)
}

#[derive(Deserialize)]
struct Request {
    custom_id: String,
    #[serde(flatten)]
    _rest: IgnoredAny,
}

/// Keeps the lines of `input_file` whose custom_id is in `ids` and uploads them as `upload.filename`
/// (adopting an earlier upload of that name).
async fn filter_and_upload(
    client: &GatewayClient,
    input_file: &str,
    ids: &BTreeSet<String>,
    upload: &Upload,
    path: &Path,
) -> Result<RetryInput, RetryError> {
    let what = format!("reading input file {input_file}");
    let scratch = |e| RetryError::local("scratch space", e);
    let mut file = tokio::fs::File::create(path).await.map_err(scratch)?;
    let content = client
        .file_content(input_file)
        .await
        .map_err(|e| RetryError::gateway(&what, e))?;
    let mut content = std::pin::pin!(content);
    let mut splitter = Lines::default();
    let mut lines = 0u64;
    let mut kept = Vec::with_capacity(256 * 1024);
    let mut keep = |line: &str, kept: &mut Vec<u8>| {
        if serde_json::from_str::<Request>(line).is_ok_and(|r| ids.contains(&r.custom_id)) {
            lines += 1;
            kept.extend_from_slice(line.as_bytes());
            kept.push(b'\n');
        }
    };
    while let Some(chunk) = content.next().await {
        let chunk = chunk.map_err(|e| RetryError::gateway(&what, e))?;
        splitter.push(&chunk, |line| keep(line, &mut kept));
        file.write_all(&kept).await.map_err(scratch)?;
        kept.clear();
    }
    splitter.finish(|line| keep(line, &mut kept));
    file.write_all(&kept).await.map_err(scratch)?;
    file.flush().await.map_err(|e| RetryError::local("scratch space", e))?;
    drop(file);
    if lines == 0 {
        return Err(RetryError {
            message: format!("none of the {} lines to retry is in input file {input_file}", ids.len()),
            transient: false,
        });
    }
    let source = UploadSource::Path(path.to_path_buf());
    match super::upload_input_since(client, &upload.filename, upload.since, source).await {
        Outcome::InputUploaded { file_id, .. } => Ok(RetryInput { file_id, lines }),
        Outcome::GatewayError { class, message } => Err(RetryError {
            message: format!("uploading the lines to retry: {message}"),
            transient: class == ErrorClass::Transient,
        }),
        other => Err(RetryError {
            message: format!("uploading the lines to retry: unexpected {other:?}"),
            transient: false,
        }),
    }
}

/// The name a follow-up's input is uploaded under, and the earliest it can have been uploaded.
struct Upload {
    filename: String,
    since: Option<i64>,
}

/// Calls `f` with every non-blank line of a streamed file (without its terminator).
async fn for_each_line(
    content: impl Stream<Item = Result<Bytes, GatewayError>>,
    mut f: impl FnMut(&str),
) -> Result<(), GatewayError> {
    let mut content = std::pin::pin!(content);
    let mut splitter = Lines::default();
    while let Some(chunk) = content.next().await {
        splitter.push(&chunk?, &mut f);
    }
    splitter.finish(f);
    Ok(())
}

/// Splits a byte stream into lines; only the unfinished last line is held.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn push(&mut self, chunk: &[u8], mut f: impl FnMut(&str)) {
        self.partial.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &self.partial[start..]) {
            emit(&self.partial[start..start + end], &mut f);
            start += end + 1;
        }
        self.partial.drain(..start);
    }

    fn finish(self, mut f: impl FnMut(&str)) {
        emit(&self.partial, &mut f);
    }
}

fn emit(line: &[u8], f: &mut impl FnMut(&str)) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    if !text.trim().is_empty() {
        f(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_split_across_chunks_are_joined() {
        let chunks: Vec<Result<Bytes, GatewayError>> = vec![
            Ok(Bytes::from_static(b"{\"a\":1}\n{\"b\"")),
            Ok(Bytes::from_static(b":2}\r\n\n")),
            Ok(Bytes::from_static(b"{\"c\":3}")),
        ];
        let mut seen = Vec::new();
        for_each_line(futures::stream::iter(chunks), |l| seen.push(l.to_string()))
            .await
            .unwrap();
        assert_eq!(seen, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
    }

    #[test]
    fn a_request_line_yields_its_custom_id() {
        let r: Request = serde_json::from_str(r#"{"custom_id":"m/c0001/x","method":"POST","body":{}}"#).unwrap();
        assert_eq!(r.custom_id, "m/c0001/x");
    }
}
