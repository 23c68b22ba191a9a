//! `/v1/files`: upload (streamed to disk), list, get, content (streamed from disk), delete.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::{Field, Multipart};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio_util::io::ReaderStream;

use super::error::{ApiError, ApiResult};
use super::params::{Params, invalid_value};
use super::state::SimState;
use super::wire::{FileObject, ListPage, now_secs, paginate};

const PURPOSES: &[&str] = &["assistants", "batch", "fine-tune", "vision", "user_data", "evals"];
const EXPIRY_SECONDS: std::ops::RangeInclusive<i64> = 3600..=2_592_000;
/// purpose=batch files expire after 30 days unless told otherwise.
const BATCH_FILE_TTL: i64 = 2_592_000;

/// Removes a partially written upload unless the upload succeeded.
struct PartialFile(Option<PathBuf>);

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The multipart form of an upload, with the file already on disk.
#[derive(Default)]
struct UploadForm {
    purpose: Option<String>,
    filename: Option<String>,
    bytes: Option<u64>,
    too_large: bool,
    anchor: Option<String>,
    seconds: Option<String>,
}

fn multipart_error(err: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Could not parse multipart form: {err}"))
}

/// `POST /v1/files`.
pub async fn upload(State(state): State<SimState>, mut multipart: Multipart) -> ApiResult<Json<FileObject>> {
    let id = format!("file-{}", uuid::Uuid::new_v4().simple());
    let part_path = state.file_path(&format!("{id}.part"));
    let mut partial = PartialFile(Some(part_path.clone()));
    let max = state.config().max_file_bytes;
    let mut form = UploadForm::default();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "file" => {
                form.filename = Some(field.file_name().unwrap_or("upload").to_owned());
                let (bytes, too_large) = stream_to_disk(field, &part_path, max).await?;
                form.bytes = Some(bytes);
                form.too_large = too_large;
            }
            "purpose" => form.purpose = Some(field.text().await.map_err(multipart_error)?),
            "expires_after[anchor]" => form.anchor = Some(field.text().await.map_err(multipart_error)?),
            "expires_after[seconds]" => form.seconds = Some(field.text().await.map_err(multipart_error)?),
            _ => drop(field.bytes().await.map_err(multipart_error)?),
        }
    }
    let file = describe(&id, form, max)?;
    tokio::fs::rename(&part_path, state.file_path(&id))
        .await
        .map_err(ApiError::internal)?;
    partial.0 = None;
    state.insert_file(file.clone());
    Ok(Json(file))
}

/// Checks the form and builds the File object.
fn describe(id: &str, form: UploadForm, max: u64) -> ApiResult<FileObject> {
    let purpose = form.purpose.ok_or_else(|| ApiError::missing_param("purpose"))?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(invalid_value("purpose", &purpose, PURPOSES));
    }
    let bytes = form.bytes.ok_or_else(|| ApiError::missing_param("file"))?;
    if form.too_large {
        return Err(
            ApiError::bad_request(format!("File is too large: the maximum size is {max} bytes."))
                .with_param("file")
                .with_code("file_too_large"),
        );
    }
    let created_at = now_secs();
    let ttl = expiry_seconds(form.anchor.as_deref(), form.seconds.as_deref())?;
    let ttl = ttl.or((purpose == "batch").then_some(BATCH_FILE_TTL));
    Ok(FileObject {
        id: id.to_owned(),
        object: "file",
        bytes,
        created_at,
        filename: form.filename.unwrap_or_default(),
        purpose,
        status: "processed",
        expires_at: ttl.map(|secs| created_at + secs),
        status_details: None,
    })
}

/// Validates `expires_after[anchor]` / `expires_after[seconds]`.
fn expiry_seconds(anchor: Option<&str>, seconds: Option<&str>) -> ApiResult<Option<i64>> {
    match (anchor, seconds) {
        (None, None) => Ok(None),
        (Some("created_at"), Some(secs)) => secs
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|s| EXPIRY_SECONDS.contains(s))
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Invalid 'expires_after.seconds': must be between {} and {}.",
                    EXPIRY_SECONDS.start(),
                    EXPIRY_SECONDS.end()
                ))
                .with_param("expires_after.seconds")
                .with_code("invalid_value")
            }),
        (Some(other), Some(_)) => Err(invalid_value("expires_after.anchor", other, &["created_at"])),
        (None, _) => Err(ApiError::missing_param("expires_after.anchor")),
        (_, None) => Err(ApiError::missing_param("expires_after.seconds")),
    }
}

/// Streams one multipart field to `path`. Past `max` bytes the rest is drained, not stored,
/// so the client still reads the 400 instead of a reset connection.
async fn stream_to_disk(mut field: Field<'_>, path: &Path, max: u64) -> ApiResult<(u64, bool)> {
    let file = tokio::fs::File::create(path).await.map_err(ApiError::internal)?;
    let mut writer = BufWriter::with_capacity(256 * 1024, file);
    let mut total = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        total += chunk.len() as u64;
        if total <= max {
            writer.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
    }
    writer.flush().await.map_err(ApiError::internal)?;
    Ok((total, total > max))
}

/// `GET /v1/files?purpose&limit&order&after`.
pub async fn list(State(state): State<SimState>, RawQuery(query): RawQuery) -> ApiResult<Json<ListPage<FileObject>>> {
    let params = Params::parse(query.as_deref());
    let limit = params.limit("limit", 1..=10_000, 10_000)?;
    let order = params.one_of("order", &["asc", "desc"], "desc")?;
    let mut files = state.files();
    if let Some(purpose) = params.get("purpose") {
        files.retain(|f| f.purpose == purpose);
    }
    if order == "desc" {
        files.reverse();
    }
    let (page, has_more) = paginate(&files, params.get("after"), limit, |f| &f.id);
    Ok(Json(ListPage::new(page, has_more, |f| &f.id)))
}

fn known(state: &SimState, id: &str) -> ApiResult<FileObject> {
    state.file(id).ok_or_else(|| ApiError::no_such("File", id))
}

/// `GET /v1/files/{id}`.
pub async fn get(State(state): State<SimState>, UrlPath(id): UrlPath<String>) -> ApiResult<Json<FileObject>> {
    known(&state, &id).map(Json)
}

/// `GET /v1/files/{id}/content`, streamed from disk.
pub async fn content(State(state): State<SimState>, UrlPath(id): UrlPath<String>) -> ApiResult<Response> {
    let file = known(&state, &id)?;
    let handle = tokio::fs::File::open(state.file_path(&id))
        .await
        .map_err(|_| ApiError::no_such("File", &id))?;
    let body = Body::from_stream(ReaderStream::with_capacity(handle, 64 * 1024));
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        (header::CONTENT_LENGTH, file.bytes.to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", file.filename.replace('"', "")),
        ),
    ];
    Ok((headers, body).into_response())
}

/// `DELETE /v1/files/{id}`.
pub async fn delete(State(state): State<SimState>, UrlPath(id): UrlPath<String>) -> ApiResult<Json<Value>> {
    state.remove_file(&id).ok_or_else(|| ApiError::no_such("File", &id))?;
    // A running batch keeps reading its open handle; only the name goes.
    let _ = tokio::fs::remove_file(state.file_path(&id)).await;
    Ok(Json(json!({"id": id, "object": "file", "deleted": true})))
}
