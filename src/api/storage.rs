//! Object storage and volumes in the Batch API: where input is read from and output written to,
//! and how the input is sliced and rewritten on the way.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LocalObjectRef;

/// An object (input) or a prefix (output) in S3-compatible storage, Google Cloud Storage or
/// Azure Blob Storage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreRef {
    /// `s3://bucket/key`, `gs://bucket/key` or `az://container/key`; for output, a prefix ending in `/`.
    #[schemars(regex(pattern = r"^(s3|gs|az)://[^/]+/.*$"))]
    pub url: String,
    /// The service's base URL, for S3-compatible servers (MinIO, SeaweedFS, Ceph...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region (S3); defaults to us-east-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A Secret in the Batch's namespace holding the credentials: for s3:// `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`; for gs://
    /// `GOOGLE_SERVICE_ACCOUNT_KEY` (the JSON key); for az:// `AZURE_STORAGE_ACCOUNT_NAME` and
    /// `AZURE_STORAGE_ACCOUNT_KEY` or `AZURE_STORAGE_SAS_TOKEN`. Without it, anonymous access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectRef>,
}

/// A line-aligned slice of the input's bytes: a start inside a line moves to the next line,
/// an end inside a line extends to the end of that line.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.start <= self.end").message("byteRange.start must not be after byteRange.end"))]
pub struct ByteRange {
    /// First byte (0-based).
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// Rewrites applied to every request line while it streams; the result is validated again
/// (custom_id uniqueness is checked after rewriting).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputOverrides {
    /// Replaces (or sets) `body.model` in every line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub model: Option<String>,
    /// Prefixed to every `custom_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub custom_id_prefix: Option<String>,
}

/// A directory on a PersistentVolumeClaim, written by a Job that mounts the claim.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSink {
    /// The claim, in the Batch's namespace.
    #[schemars(length(min = 1))]
    pub claim_name: String,
    /// A directory relative to the claim's root (no `..`); empty for the root.
    #[serde(default)]
    #[schemars(regex(pattern = r"^([^/.][^/]*/?|\.[^./][^/]*/?)*$"))]
    pub path: String,
}
