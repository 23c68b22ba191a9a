//! Downloading a file's content to disk, restarting on transient mid-body failures, within the
//! limits on a result file: its size, the length of each line and the time it takes.

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
    /// a complete file, ending with a newline (added when the gateway's last line has none). A
    /// transient failure mid-body restarts the download from the start, within the retry
    /// policy. A file over the size limit, a line over the line limit or a download past the
    /// deadline stops it. Returns the number of bytes written.
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
                Err(DownloadError::Final(err)) => err,
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
        let after = self.inner.limits.download_time;
        tokio::time::timeout(after, self.transfer(id, partial))
            .await
            .unwrap_or(Err(DownloadError::Final(GatewayError::Deadline {
                operation: OP,
                after,
            })))
    }

    async fn transfer(&self, id: &str, partial: &Path) -> Result<u64, DownloadError> {
        // `file_content` has already retried everything up to the response headers.
        let body = self.file_content(id).await.map_err(DownloadError::Final)?;
        let local = |source| DownloadError::Final(io(partial, source));
        let limits = &self.inner.limits;
        let mut lines = LineLimit::new(limits.line_bytes);
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
            if written > limits.file_bytes {
                return Err(DownloadError::Final(GatewayError::TooLarge {
                    operation: OP,
                    what: "a result file",
                    limit: limits.file_bytes,
                }));
            }
            lines.feed(&chunk).map_err(|line| {
                DownloadError::Final(GatewayError::LineTooLong {
                    operation: OP,
                    line,
                    limit: limits.line_bytes,
                })
            })?;
            if chunks.send(chunk).await.is_err() {
                break; // the writer failed: its error is reported below
            }
        }
        drop(chunks);
        writer
            .await
            .map_err(|e| local(std::io::Error::other(e)))?
            .map_err(local)
    }
}

/// Writes every received chunk through a large buffer, ends the file with a newline when it
/// has none, then flushes it to disk. Returns the file's length.
fn write_chunks(path: &Path, mut chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> std::io::Result<u64> {
    use std::io::Write;
    let mut file = std::io::BufWriter::with_capacity(WRITE_BUFFER, std::fs::File::create(path)?);
    let (mut written, mut last) = (0u64, b'\n');
    while let Some(chunk) = chunks.blocking_recv() {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
        last = chunk.last().copied().unwrap_or(last);
    }
    if last != b'\n' {
        file.write_all(b"\n")?;
        written += 1;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(written)
}

/// Tracks the length of the line being received; a line past `limit` bytes is refused before
/// anything reads it whole.
struct LineLimit {
    limit: u64,
    /// 1-based number of the line being received.
    line: u64,
    /// Its bytes so far.
    length: u64,
}

impl LineLimit {
    fn new(limit: u64) -> Self {
        Self {
            limit,
            line: 1,
            length: 0,
        }
    }

    /// Takes the next chunk; `Err` is the number of a line longer than the limit.
    fn feed(&mut self, chunk: &[u8]) -> Result<(), u64> {
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', chunk) {
            self.length += (newline - start) as u64;
            if self.length > self.limit {
                return Err(self.line);
            }
            (self.line, self.length, start) = (self.line + 1, 0, newline + 1);
        }
        self.length += (chunk.len() - start) as u64;
        if self.length > self.limit {
            Err(self.line)
        } else {
            Ok(())
        }
    }
}

/// Why one download pass failed.
enum DownloadError {
    /// Already retried or not worth retrying now (gateway error before the body, a limit,
    /// local I/O).
    Final(GatewayError),
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
    fn lines_past_the_limit_are_named_across_chunks() {
        let mut limit = LineLimit::new(4);
        assert_eq!(limit.feed(b"abcd\nab"), Ok(()));
        assert_eq!(limit.feed(b"cd\n\nabc"), Ok(()));
        assert_eq!(limit.feed(b"de"), Err(4));
        let mut limit = LineLimit::new(4);
        assert_eq!(limit.feed(b"abcde\n"), Err(1));
    }

    #[test]
    fn a_file_without_a_final_newline_gets_one() {
        let dir = tempfile::tempdir().unwrap();
        for (chunks, expected) in [
            (vec!["{\"a\":1}\n{\"b\"", ":2}"], "{\"a\":1}\n{\"b\":2}\n"),
            (vec!["x\n"], "x\n"),
            (vec![], ""),
        ] {
            let path = dir.path().join("out.jsonl");
            let (send, receive) = tokio::sync::mpsc::channel(4);
            for chunk in chunks {
                send.try_send(bytes::Bytes::from(chunk)).unwrap();
            }
            drop(send);
            let written = write_chunks(&path, receive).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
            assert_eq!(written, expected.len() as u64);
        }
    }

    #[test]
    fn partial_path_appends_suffix() {
        assert_eq!(
            partial_path(Path::new("/tmp/out.jsonl")),
            Path::new("/tmp/out.jsonl.partial")
        );
    }
}
