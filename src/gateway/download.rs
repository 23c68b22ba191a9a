//! Downloading a file's content to disk, restarting on transient mid-body failures.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use reqwest::header::HeaderMap;

use super::client::GatewayClient;
use super::error::GatewayError;
use super::retry::RetryDecision;

const OP: &str = "download file";
const WRITE_BUFFER: usize = 1024 * 1024;
/// Received chunks waiting for the disk writer (bounds memory).
const IN_FLIGHT: usize = 16;

impl GatewayClient {
    /// Downloads file `id` to `dest` through `dest.partial` and a rename, so `dest` only ever holds
    /// a complete file. A transient failure mid-body restarts the download from the start, within
    /// the retry policy. Returns the number of bytes written.
    pub async fn download_file_to(&self, id: &str, dest: &Path) -> Result<u64, GatewayError> {
        let partial = partial_path(dest);
        let mut attempt = 1;
        loop {
            let err = match self.download_once(id, &partial).await {
                Ok(written) => {
                    tokio::fs::rename(&partial, dest)
                        .await
                        .map_err(|source| io(&partial, source))?;
                    return Ok(written);
                }
                Err(DownloadError::BeforeBody(err)) => err,
                Err(DownloadError::MidBody(err)) => match self.decide(&err, &HeaderMap::new(), attempt) {
                    RetryDecision::Retry(delay) => {
                        tracing::warn!(operation = OP, attempt, delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), error = %err, "download interrupted, restarting");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    RetryDecision::GiveUp(_) => err,
                },
            };
            // Best effort: a leftover partial file is harmless but untidy.
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(err);
        }
    }

    async fn download_once(&self, id: &str, partial: &Path) -> Result<u64, DownloadError> {
        // `file_content` has already retried everything up to the response headers.
        let body = self.file_content(id).await.map_err(DownloadError::BeforeBody)?;
        let local = |source| DownloadError::BeforeBody(io(partial, source));
        // The disk is written by a blocking thread of its own, so receiving the next chunks
        // overlaps with writing the previous ones.
        let (chunks, received) = tokio::sync::mpsc::channel::<bytes::Bytes>(IN_FLIGHT);
        let writer = tokio::task::spawn_blocking({
            let partial = partial.to_path_buf();
            move || write_chunks(&partial, received)
        });
        let mut body = std::pin::pin!(body);
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(DownloadError::MidBody)?;
            written += chunk.len() as u64;
            if chunks.send(chunk).await.is_err() {
                break; // the writer failed: its error is reported below
            }
        }
        drop(chunks);
        writer
            .await
            .map_err(|e| local(std::io::Error::other(e)))?
            .map_err(local)?;
        Ok(written)
    }
}

/// Writes every received chunk through a large buffer, then flushes it to disk.
fn write_chunks(path: &Path, mut chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::with_capacity(WRITE_BUFFER, std::fs::File::create(path)?);
    while let Some(chunk) = chunks.blocking_recv() {
        file.write_all(&chunk)?;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Why one download pass failed.
enum DownloadError {
    /// Already retried or not retryable (gateway error before the body, local I/O).
    BeforeBody(GatewayError),
    /// The body stream broke; the whole download may restart.
    MidBody(GatewayError),
}

/// `dest` with `.partial` appended to its file name.
fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

fn io(path: &Path, source: std::io::Error) -> GatewayError {
    GatewayError::Io {
        operation: OP,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_path_appends_suffix() {
        assert_eq!(
            partial_path(Path::new("/tmp/out.jsonl")),
            Path::new("/tmp/out.jsonl.partial")
        );
    }
}
