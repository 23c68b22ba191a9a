//! Files API: upload, get, list, delete, and content streaming.

use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use reqwest::header::ACCEPT;
use reqwest::multipart::{Form, Part};
use reqwest::{Body, Method, Response};
use tokio_util::io::ReaderStream;

use super::client::{AttemptError, GatewayClient};
use super::error::GatewayError;
use super::pages::{FindError, MAX_EXAMINED};
use super::types::{FileObject, ListFiles, Page, SortOrder, UploadSource};

/// Uploads are granted the request timeout plus one second per this many bytes.
const UPLOAD_BYTES_PER_SECOND: u64 = 256 * 1024;
/// Read size when streaming a local file into an upload.
const UPLOAD_CHUNK: usize = 256 * 1024;
/// Page size used by [`GatewayClient::find_file`].
const FIND_PAGE_SIZE: u32 = 100;

impl GatewayClient {
    /// `POST /files` (multipart): uploads `source` as `filename` with `purpose` (e.g. `batch`).
    ///
    /// A [`UploadSource::Path`] is re-opened for every attempt and streamed with a known length.
    pub async fn upload_file(
        &self,
        filename: &str,
        purpose: &str,
        source: UploadSource,
    ) -> Result<FileObject, GatewayError> {
        const OP: &str = "upload file";
        let url = self.url(&["files"]);
        let source = &source;
        self.execute(OP, || async {
            let (part, len) = file_part(OP, source, filename).await?;
            let form = Form::new().text("purpose", purpose.to_owned()).part("file", part);
            let req = self
                .request(Method::POST, &url)
                .timeout(self.upload_timeout(len))
                .multipart(form);
            self.attempt_json(OP, req).await
        })
        .await
    }

    /// `GET /files/{id}`.
    pub async fn get_file(&self, id: &str) -> Result<FileObject, GatewayError> {
        const OP: &str = "get file";
        let url = self.url(&["files", id]);
        self.execute(OP, || self.attempt_json(OP, self.request(Method::GET, &url)))
            .await
    }

    /// `GET /files` with the given filters and cursor.
    pub async fn list_files(&self, query: &ListFiles) -> Result<Page<FileObject>, GatewayError> {
        const OP: &str = "list files";
        let url = self.url(&["files"]);
        self.execute(OP, || {
            self.attempt_json(OP, self.request(Method::GET, &url).query(query))
        })
        .await
    }

    /// `DELETE /files/{id}`.
    pub async fn delete_file(&self, id: &str) -> Result<(), GatewayError> {
        const OP: &str = "delete file";
        let url = self.url(&["files", id]);
        self.execute(OP, || self.attempt_ok(OP, self.request(Method::DELETE, &url)))
            .await
    }

    /// `GET /files/{id}/content`, streamed.
    ///
    /// Retries apply until the response headers arrive, not mid-body. The request timeout bounds
    /// the wait for the headers and every idle gap in the body, not the whole transfer.
    pub async fn file_content(
        &self,
        id: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, GatewayError>> + Send + 'static, GatewayError> {
        const OP: &str = "download file";
        let url = self.url(&["files", id, "content"]);
        let timeout = self.inner.timeout;
        let resp = self
            .execute(OP, || async {
                let req = self.inner.http.get(url.clone()).header(ACCEPT, "application/binary");
                let started = std::time::Instant::now();
                match tokio::time::timeout(timeout, self.send_checked(OP, req)).await {
                    Ok(result) => result,
                    Err(_) => {
                        self.observe(OP, super::RequestOutcome::Timeout, started);
                        Err(GatewayError::Timeout { operation: OP }.into())
                    }
                }
            })
            .await?;
        let limit = self.inner.limits.file_bytes;
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(GatewayError::TooLarge {
                operation: OP,
                what: "a result file",
                limit,
            });
        }
        Ok(body_stream(resp, timeout, OP))
    }

    /// Walks `GET /files?purpose=..&order=desc&limit=100` newest-first and returns the first file
    /// matching `pred`, looking back to `since` (unix seconds; the whole list without it). An
    /// answer of `None` means the file is not there: a walk that could not get that far is
    /// [`FindError::GaveUp`].
    pub async fn find_file(
        &self,
        purpose: &str,
        pred: impl Fn(&FileObject) -> bool,
        since: Option<i64>,
    ) -> Result<Option<FileObject>, FindError> {
        let fetch = |after: Option<String>| {
            let query = ListFiles {
                purpose: Some(purpose.to_owned()),
                after,
                limit: Some(FIND_PAGE_SIZE),
                order: Some(SortOrder::Desc),
            };
            async move { self.list_files(&query).await }
        };
        let created = |f: &FileObject| f.created_at;
        super::pages::find_in_pages("list files", fetch, file_id, created, pred, since, MAX_EXAMINED).await
    }

    fn upload_timeout(&self, len: u64) -> Duration {
        self.inner.timeout + Duration::from_secs(len / UPLOAD_BYTES_PER_SECOND)
    }
}

fn file_id(file: &FileObject) -> &str {
    &file.id
}

/// The multipart `file` part for one attempt, and its length.
async fn file_part(
    operation: &'static str,
    source: &UploadSource,
    filename: &str,
) -> Result<(Part, u64), AttemptError> {
    let (part, len) = match source {
        UploadSource::Bytes(bytes) => (
            Part::stream_with_length(bytes.clone(), bytes.len() as u64),
            bytes.len() as u64,
        ),
        UploadSource::Path(path) => {
            let io_err = |source| GatewayError::Io {
                operation,
                path: path.clone(),
                source,
            };
            let file = tokio::fs::File::open(path).await.map_err(io_err)?;
            let len = file.metadata().await.map_err(io_err)?.len();
            let body = Body::wrap_stream(ReaderStream::with_capacity(file, UPLOAD_CHUNK));
            (Part::stream_with_length(body, len), len)
        }
        UploadSource::Stream(stream) => {
            let body = Body::wrap_stream((stream.open)());
            (Part::stream_with_length(body, stream.len), stream.len)
        }
    };
    let part = part
        .file_name(filename.to_owned())
        .mime_str("application/octet-stream")
        .expect("static MIME type is valid");
    Ok((part, len))
}

/// The response body as a stream of chunks, failing with a timeout when no chunk arrives in `idle`.
fn body_stream(
    resp: Response,
    idle: Duration,
    operation: &'static str,
) -> impl Stream<Item = Result<Bytes, GatewayError>> + Send + 'static {
    futures::stream::unfold(Some(resp), move |state| async move {
        let mut resp = state?;
        match tokio::time::timeout(idle, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => Some((Ok(chunk), Some(resp))),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => Some((Err(GatewayError::transport(operation, e)), None)),
            Err(_) => Some((Err(GatewayError::Timeout { operation }), None)),
        }
    })
}
