//! Wire types of the Files and Batches APIs.
//!
//! Decoding is tolerant: unknown fields are ignored, optional fields may be missing or `null`,
//! timestamps may arrive as floats, and unknown batch statuses are kept verbatim.

use futures::stream::BoxStream;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A file on the gateway (`object: "file"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileObject {
    /// File id; never assume its format.
    pub id: String,
    /// Size in bytes.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Creation time, Unix seconds.
    #[serde(default, deserialize_with = "timestamp")]
    pub created_at: Option<i64>,
    /// Expiry time, Unix seconds.
    #[serde(default, deserialize_with = "timestamp")]
    pub expires_at: Option<i64>,
    /// Name given at upload.
    #[serde(default)]
    pub filename: Option<String>,
    /// `batch`, `batch_output`, ...
    #[serde(default)]
    pub purpose: Option<String>,
    /// `uploaded`, `processed` or `error` (deprecated upstream, still sent).
    #[serde(default)]
    pub status: Option<String>,
    /// Details for `status: error`.
    #[serde(default)]
    pub status_details: Option<String>,
}

/// The lifecycle state of a batch. Unknown values are kept in [`BatchStatus::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BatchStatus {
    /// Input is being validated.
    Validating,
    /// Validation failed; see `errors`.
    Failed,
    /// Requests are running.
    InProgress,
    /// Results are being assembled.
    Finalizing,
    /// Done; results in the output/error files.
    Completed,
    /// The completion window passed.
    Expired,
    /// A cancel was requested.
    Cancelling,
    /// Cancelled; partial results may exist.
    Cancelled,
    /// A status this client does not know.
    Unknown(String),
}

impl BatchStatus {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Validating => "validating",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
            Self::Finalizing => "finalizing",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::Unknown(s) => s,
        }
    }

    /// True for the states a batch never leaves: completed, failed, expired, cancelled.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Expired | Self::Cancelled)
    }
}

impl From<&str> for BatchStatus {
    fn from(s: &str) -> Self {
        match s {
            "validating" => Self::Validating,
            "failed" => Self::Failed,
            "in_progress" => Self::InProgress,
            "finalizing" => Self::Finalizing,
            "completed" => Self::Completed,
            "expired" => Self::Expired,
            "cancelling" => Self::Cancelling,
            "cancelled" => Self::Cancelled,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for BatchStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for BatchStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from(String::deserialize(d)?.as_str()))
    }
}

/// A batch (`object: "batch"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Batch id; never assume its format.
    pub id: String,
    /// Current state.
    pub status: BatchStatus,
    /// Endpoint every request goes to, e.g. `/v1/chat/completions`.
    #[serde(default)]
    pub endpoint: String,
    /// The uploaded input file.
    #[serde(default)]
    pub input_file_id: String,
    /// Always `24h` on OpenAI.
    #[serde(default)]
    pub completion_window: Option<String>,
    /// Model, when the gateway reports one.
    #[serde(default)]
    pub model: Option<String>,
    /// Results of successful requests.
    #[serde(default)]
    pub output_file_id: Option<String>,
    /// Results of failed requests.
    #[serde(default)]
    pub error_file_id: Option<String>,
    /// Batch-level errors (validation failures, ...).
    #[serde(default)]
    pub errors: Option<BatchErrors>,
    /// Request counters.
    #[serde(default)]
    pub request_counts: Option<RequestCounts>,
    /// Token usage.
    #[serde(default)]
    pub usage: Option<BatchUsage>,
    /// Metadata given at creation.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Unix seconds.
    #[serde(default, deserialize_with = "timestamp")]
    pub created_at: Option<i64>,
    /// Unix seconds.
    #[serde(default, deserialize_with = "timestamp")]
    pub in_progress_at: Option<i64>,
    /// Unix seconds.
    #[serde(default, deserialize_with = "timestamp")]
    pub expires_at: Option<i64>,
    /// Unix seconds.
    #[serde(default, deserialize_with = "timestamp")]
    pub finalizing_at: Option<i64>,
    /// Unix seconds.
    #[serde(default, deserialize_with = "timestamp")]
    pub completed_at: Option<i64>,
    /// Unix seconds.
    #[serde(default, deserialize_with = "timestamp")]
    pub failed_at: Option<i64>,
    /// Unix seconds.
    #[serde(default, deserialize_with = "timestamp")]
    pub expired_at: Option<i64>,
    /// Unix seconds.
    #[serde(default, deserialize_with = "timestamp")]
    pub cancelling_at: Option<i64>,
    /// Unix seconds.
    #[serde(default, deserialize_with = "timestamp")]
    pub cancelled_at: Option<i64>,
}

/// Request counters of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Requests in the input.
    #[serde(default)]
    pub total: u64,
    /// Requests that succeeded.
    #[serde(default)]
    pub completed: u64,
    /// Requests that failed.
    #[serde(default)]
    pub failed: u64,
}

/// Batch-level errors (`errors: {object: "list", data: [...]}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchErrors {
    /// The errors.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: Vec<BatchError>,
}

/// One batch-level error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchError {
    /// Machine-readable code, e.g. `invalid_json_line`.
    #[serde(default)]
    pub code: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
    /// Offending parameter, e.g. `body.model`.
    #[serde(default)]
    pub param: Option<String>,
    /// 1-based input line.
    #[serde(default)]
    pub line: Option<u64>,
}

/// Token usage of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchUsage {
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Total tokens.
    #[serde(default)]
    pub total_tokens: u64,
    /// Cached input tokens.
    #[serde(default)]
    pub input_tokens_details: Option<InputTokensDetails>,
    /// Reasoning output tokens.
    #[serde(default)]
    pub output_tokens_details: Option<OutputTokensDetails>,
}

/// Breakdown of input tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputTokensDetails {
    /// Tokens served from cache.
    #[serde(default)]
    pub cached_tokens: u64,
}

/// Breakdown of output tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    /// Reasoning tokens.
    #[serde(default)]
    pub reasoning_tokens: u64,
}

/// One page of a list (`{object: "list", data, first_id, last_id, has_more}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Page<T> {
    /// The items.
    #[serde(default = "Vec::new", deserialize_with = "null_as_default")]
    pub data: Vec<T>,
    /// Whether another page follows.
    #[serde(default, deserialize_with = "null_as_default")]
    pub has_more: bool,
    /// Id of the first item.
    #[serde(default)]
    pub first_id: Option<String>,
    /// Id of the last item; the `after` cursor for the next page.
    #[serde(default)]
    pub last_id: Option<String>,
}

/// Body of `POST /batches`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateBatch {
    /// An uploaded file with purpose `batch`.
    pub input_file_id: String,
    /// e.g. `/v1/chat/completions`.
    pub endpoint: String,
    /// `24h`.
    pub completion_window: String,
    /// Up to 16 string pairs; omitted when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// Sort order of `GET /files` (by `created_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
}

/// Query of `GET /files`; unset fields are left to the gateway's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListFiles {
    /// Only files with this purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Cursor: a file id from the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Sort order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<SortOrder>,
}

/// What to upload.
#[derive(Debug, Clone)]
pub enum UploadSource {
    /// A local file, re-opened for every attempt and streamed (never read whole into memory).
    Path(PathBuf),
    /// Bytes already in memory.
    Bytes(Bytes),
    /// A stream of known length, opened anew for every attempt. An error item aborts the
    /// upload before the body is complete, so the gateway never stores a partial file.
    Stream(StreamSource),
}

/// Opens the byte stream of one upload attempt.
pub type OpenStream = dyn Fn() -> BoxStream<'static, std::io::Result<Bytes>> + Send + Sync;

/// A re-openable stream of `len` bytes.
#[derive(Clone)]
pub struct StreamSource {
    pub len: u64,
    pub open: std::sync::Arc<OpenStream>,
}

impl std::fmt::Debug for StreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSource")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Accepts an integer or a float (truncated) timestamp, or `null`.
fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Int(i64),
        Float(f64),
    }
    Ok(match Option::<Num>::deserialize(d)? {
        Some(Num::Int(i)) => Some(i),
        #[allow(clippy::cast_possible_truncation)]
        Some(Num::Float(f)) if f.is_finite() => Some(f as i64),
        _ => None,
    })
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_decodes_tolerantly() {
        let json = r#"{
            "id": "batch-abc", "object": "batch", "endpoint": "/v1/chat/completions",
            "input_file_id": "file-1", "completion_window": "24h", "status": "paused_by_admin",
            "created_at": 1700000000.5, "in_progress_at": null, "errors": {"object": "list", "data": null},
            "request_counts": {"total": 3, "completed": 2, "failed": 1},
            "metadata": {"team": "x"}, "brand_new_field": [1, 2]
        }"#;
        let batch: Batch = serde_json::from_str(json).unwrap();
        assert_eq!(batch.status, BatchStatus::Unknown("paused_by_admin".into()));
        assert_eq!(batch.created_at, Some(1_700_000_000));
        assert_eq!(batch.in_progress_at, None);
        assert_eq!(batch.errors.unwrap().data, vec![]);
        assert_eq!(batch.request_counts.unwrap().failed, 1);
    }

    #[test]
    fn status_round_trips_as_snake_case() {
        for s in ["validating", "in_progress", "finalizing", "cancelling", "weird"] {
            let status: BatchStatus = serde_json::from_value(s.into()).unwrap();
            assert_eq!(serde_json::to_value(&status).unwrap(), s);
        }
        assert!(BatchStatus::Expired.is_terminal() && !BatchStatus::Finalizing.is_terminal());
    }

    #[test]
    fn page_and_file_decode_with_missing_fields() {
        let page: Page<FileObject> = serde_json::from_str(r#"{"data": [{"id": "f"}]}"#).unwrap();
        assert_eq!(page.data[0].id, "f");
        assert!(!page.has_more && page.last_id.is_none());
    }

    #[test]
    fn create_batch_omits_empty_metadata() {
        let req = CreateBatch {
            input_file_id: "f".into(),
            endpoint: "/v1/embeddings".into(),
            completion_window: "24h".into(),
            metadata: BTreeMap::new(),
        };
        let v = serde_json::to_value(&req).unwrap();
        assert!(v.get("metadata").is_none());
    }
}
