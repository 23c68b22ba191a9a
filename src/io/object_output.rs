//! Results written to an object-store prefix: `output.jsonl` and `errors.jsonl` streamed from
//! local files (a multipart upload for large ones, so an object only becomes visible under its
//! name once complete), then `manifest.json` last: a reader that finds the manifest finds
//! complete results. Writing again (after a crash) overwrites; nothing half-written is visible.

use std::path::Path;

use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::object_storage::{ObjectLocation, StorageError, StorageErrorKind};

/// Part size of multipart uploads (S3 needs at least 5 MiB per part but the last).
const PART: usize = 8 * 1024 * 1024;
/// Parts uploading at once (memory: about PART times this).
const PARTS_IN_FLIGHT: usize = 2;

/// The names written under the prefix.
pub const OUTPUT_OBJECT: &str = "output.jsonl";
pub const ERRORS_OBJECT: &str = "errors.jsonl";
pub const MANIFEST_OBJECT: &str = "manifest.json";

/// `manifest.json`: what the results are and where they came from.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// `namespace/name` of the Batch.
    pub batch: String,
    /// The gateway's ids.
    pub batch_id: Option<String>,
    pub input_file_id: Option<String>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    /// Where the input came from (`s3://...`, `ConfigMap ns/name key k`...).
    pub input: String,
    pub request_counts: ManifestCounts,
    pub usage: crate::api::Usage,
    pub submitted_at: Option<String>,
    pub written_at: String,
}

/// Lines and bytes of each result object.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestCounts {
    pub output_lines: u64,
    pub output_bytes: u64,
    pub error_lines: u64,
    pub error_bytes: u64,
}

/// Writes `file` to `target`; a file larger than one part goes as a multipart upload.
pub async fn upload_file(file: &Path, target: &ObjectLocation) -> Result<u64, StorageError> {
    let io_error = |e: std::io::Error| StorageError {
        kind: StorageErrorKind::Transient,
        message: format!("cannot read {}: {e}", file.display()),
    };
    let mut reader = tokio::fs::File::open(file).await.map_err(io_error)?;
    let len = reader.metadata().await.map_err(io_error)?.len();
    let store = target.store();
    if len <= PART as u64 {
        let mut bytes = Vec::with_capacity(len as usize);
        reader.read_to_end(&mut bytes).await.map_err(io_error)?;
        store
            .put(target.path(), PutPayload::from(bytes))
            .await
            .map_err(|e| target.classify(&e))?;
        return Ok(len);
    }
    let upload = store
        .put_multipart(target.path())
        .await
        .map_err(|e| target.classify(&e))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut buf = vec![0; 1024 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(io_error(e));
            }
        };
        if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
            let _ = writer.abort().await;
            return Err(target.classify(&e));
        }
        writer.write(&buf[..n]);
    }
    writer.finish().await.map_err(|e| target.classify(&e))?;
    Ok(len)
}

/// Writes `manifest.json` under `prefix`.
pub async fn write_manifest(prefix: &ObjectLocation, manifest: &Manifest) -> Result<(), StorageError> {
    let target = prefix.child(MANIFEST_OBJECT);
    let json = serde_json::to_vec_pretty(manifest).expect("the manifest serialises");
    target
        .store()
        .put(target.path(), PutPayload::from(json))
        .await
        .map_err(|e| target.classify(&e))?;
    Ok(())
}

/// Removes `name` under `prefix` if it is there (an errors.jsonl of an earlier attempt).
pub async fn remove(prefix: &ObjectLocation, name: &str) -> Result<(), StorageError> {
    let target = prefix.child(name);
    match target.store().delete(target.path()).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(target.classify(&e)),
    }
}
