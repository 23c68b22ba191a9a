//! `Batch`: one OpenAI-compatible batch job.

// clippy reads the repeated `type_ = ...` inside printcolumn(...) as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ByteRange, InputOverrides, KeyRef, LocalObjectRef, ObjectStoreRef, PvcSink};

/// Metadata pairs the user may set: OpenAI allows 16 and the operator keeps 3 for itself.
pub const MAX_USER_METADATA_PAIRS: usize = 13;

/// One OpenAI-compatible batch job: JSONL input in, output and error files out.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "llmbatch.io",
    version = "v1alpha1",
    kind = "Batch",
    namespaced,
    status = "BatchStatus",
    shortname = "lb",
    category = "llmbatch",
    doc = "One OpenAI-compatible batch job: input uploaded, batch created, polled, results downloaded.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Completed", type_ = "integer", json_path = ".status.requestCounts.completed"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.requestCounts.failed"),
    printcolumn(name = "Total", type_ = "integer", json_path = ".status.requestCounts.total"),
    printcolumn(name = "Batch ID", type_ = "string", json_path = ".status.gateway.batchId"),
    printcolumn(name = "Cost", type_ = "string", json_path = ".status.cost.display"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct BatchSpec {
    /// The BatchGateway (same namespace) the batch is sent to; immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("gatewayRef is immutable"))]
    pub gateway_ref: LocalObjectRef,
    /// The endpoint every request line targets; immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("endpoint is immutable"))]
    pub endpoint: Endpoint,
    /// How long the gateway may take (OpenAI accepts only 24h).
    #[serde(default = "default_completion_window")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub completion_window: String,
    /// Where the JSONL request lines come from; immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("input is immutable"))]
    pub input: BatchInput,
    /// Where the results go. Without it they stay on the gateway (ids in status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<BatchOutput>,
    /// Forwarded to the gateway batch metadata (at most 13 pairs; keys up to 64, values up to 512 characters).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 13))]
    #[x_kube(validation = Rule::new("self.all(k, size(k) <= 64 && size(self[k]) <= 512)")
        .message("metadata keys are at most 64 and values at most 512 characters"))]
    pub metadata: BTreeMap<String, String>,
    /// Set to true to cancel the batch; lines that completed are still collected.
    #[serde(default)]
    pub cancel: bool,
    /// What deleting the Batch does upstream.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Delete the Batch this many seconds after it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
    /// A webhook told when the Batch finishes (or is held by the gateway's budget). Without
    /// it, the BatchGateway's `spec.notify` applies, except to a BatchSweep's children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<super::Notify>,
}

fn default_completion_window() -> String {
    "24h".to_string()
}

/// The OpenAI endpoints a batch can target.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Endpoint {
    #[serde(rename = "/v1/chat/completions")]
    ChatCompletions,
    #[serde(rename = "/v1/embeddings")]
    Embeddings,
    #[serde(rename = "/v1/completions")]
    Completions,
    #[serde(rename = "/v1/responses")]
    Responses,
    #[serde(rename = "/v1/moderations")]
    Moderations,
}

impl Endpoint {
    /// The path as it appears on the wire and in every request line's `url`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Moderations => "/v1/moderations",
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.path())
    }
}

/// The source of the JSONL request lines: exactly one of the fields.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.configMap), has(self.secret), has(self.requests), has(self.fileId), has(self.objectStore)].filter(x, x).size() == 1")
    .message("input needs exactly one source: configMap, secret, requests, fileId or objectStore"))]
#[x_kube(validation = Rule::new("!has(self.fileId) || (!has(self.byteRange) && !has(self.overrides))")
    .message("byteRange and overrides need an input the operator reads (not fileId)"))]
pub struct BatchInput {
    /// A ConfigMap key (`data` or `binaryData`) holding the JSONL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<KeyRef>,
    /// A Secret key holding the JSONL (for inputs that are themselves sensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<KeyRef>,
    /// A batch input file already on the gateway (uploaded with purpose `batch`). It is used
    /// as it is (not validated here) and never deleted by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub file_id: Option<String>,
    /// The requests themselves, for small batches kept in Git (evaluation suites): each
    /// becomes a line `{"custom_id", "method": "POST", "url": <endpoint>, "body"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 5000))]
    pub requests: Option<Vec<InlineRequest>>,
    /// An object in S3-compatible storage, GCS or Azure, streamed in ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreRef>,
    /// Only this line-aligned slice of the source is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_range: Option<ByteRange>,
    /// Rewrites applied to every line on the way to the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<InputOverrides>,
}

/// One request written in the Batch itself.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InlineRequest {
    /// Unique within the batch; joins the request to its result.
    pub custom_id: String,
    /// The endpoint's request body (model, messages, input, ...).
    #[schemars(schema_with = "any_object")]
    pub body: serde_json::Map<String, serde_json::Value>,
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

impl BatchInput {
    /// Inline requests as the JSONL an upload carries.
    pub fn requests_jsonl(&self, endpoint: Endpoint) -> Option<String> {
        let requests = self.requests.as_ref()?;
        let lines: Vec<String> = requests
            .iter()
            .map(|r| {
                serde_json::json!({"custom_id": r.custom_id, "method": "POST", "url": endpoint.path(), "body": r.body})
                    .to_string()
            })
            .collect();
        Some(lines.join("\n") + "\n")
    }
}

/// Where results go: exactly one sink.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.secret), has(self.objectStore), has(self.pvc)].filter(x, x).size() == 1")
    .message("output needs exactly one sink: secret, objectStore or pvc"))]
pub struct BatchOutput {
    /// A Secret, owned by the Batch, holding output.jsonl and errors.jsonl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<LocalObjectRef>,
    /// A prefix (`s3://bucket/results/`) receiving output.jsonl, errors.jsonl and manifest.json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreRef>,
    /// A directory on a PersistentVolumeClaim, written by a Job running this binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcSink>,
}

/// What deleting a Batch does to its upstream batch and files.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Cancel a running upstream batch and delete the uploaded input file.
    #[default]
    Cancel,
    /// Leave everything upstream as it is.
    Orphan,
}

/// Where a Batch is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum BatchPhase {
    /// Accepted, nothing sent upstream yet.
    #[default]
    Pending,
    /// Reading, validating and uploading the input file.
    Uploading,
    /// The gateway is validating the input file.
    Validating,
    /// Requests are being processed.
    InProgress,
    /// The gateway is writing the output files.
    Finalizing,
    /// Results are being downloaded and written to the sink.
    Downloading,
    /// Every step finished; individual lines may still have failed (see requestCounts).
    Succeeded,
    /// The batch could not run (invalid input, gateway rejection).
    Failed,
    /// The completion window passed; lines that completed are kept.
    Expired,
    /// Cancelled on request; lines that completed are kept.
    Cancelled,
}

impl BatchPhase {
    /// True once nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Expired | Self::Cancelled)
    }
}

impl std::fmt::Display for BatchPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Everything the operator knows about a Batch; a restart resumes from this alone.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchStatus {
    /// Where the batch is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BatchPhase>,
    /// Batch (through the gateway's batch API) or Direct (each line sent by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<super::BatchMode>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the operator started working on the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the upstream batch was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_time: Option<Time>,
    /// When the batch reached a final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Token of the current submission attempt, recorded before anything is created upstream
    /// and carried in the uploaded file name and the batch metadata, so a restart adopts
    /// what that attempt created instead of creating it twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    /// What the input held when it was validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputStatus>,
    /// Admission under the gateway's `maxActiveBatches` and `tokensPerHour`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<AdmissionStatus>,
    /// Identifiers and state on the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayStatus>,
    /// Request lines by outcome, as the gateway reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_counts: Option<RequestCounts>,
    /// Tokens summed from the output lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What the results cost, from `usage` and the gateway's `spec.pricing` (absent when the
    /// gateway has no pricing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<super::Cost>,
    /// Where the results were written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputStatus>,
    /// The events owed to `spec.notify` (or the gateway's) and how their delivery went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub notifications: Vec<super::NotificationStatus>,
    /// Admitted, Submitted, Complete, Failed, ... (Kubernetes API conventions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// The validated input.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputStatus {
    /// Request lines.
    pub requests: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Estimated tokens, as `tokensPerHour` admission counts them: the input tokens of
    /// `estimates` plus each line's `max_completion_tokens`, `max_tokens` or
    /// `max_output_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_tokens: Option<u64>,
    /// The estimate by model, before anything is sent (at most 50 models by name, the rest
    /// under `(other)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 52))]
    pub estimates: Vec<ModelEstimate>,
    /// The BLAKE3 digest of the prepared bytes of an object-store input, as `blake3:` and 64
    /// lowercase hex digits: the upload pass reads the object again and must find exactly these
    /// bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The keyed digest of the custom_ids as uploaded, that the results are checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<InputIds>,
}

/// The estimated tokens of one model's requests.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelEstimate {
    /// The model the requests name (`body.model`).
    pub model: String,
    /// Requests naming it.
    pub requests: u64,
    /// Input tokens, counted as `countedBy` says.
    pub input_tokens: u64,
    /// The sum of the requests' output ceilings (`max_completion_tokens`, `max_tokens`,
    /// `max_output_tokens`).
    pub output_tokens: u64,
    /// Requests without an output ceiling: each counts `spec.pricing.defaultMaxOutputTokens`
    /// in the cost estimate.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub without_output_ceiling: u64,
    /// How the input tokens were counted: a tokenizer (`o200k_base`) over every request, the
    /// same over a sample of the bytes (`o200k_base, 1.0% of bytes sampled`), or `bytes/4`
    /// for a model without a known tokenizer.
    pub counted_by: String,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// A keyed multiset hash of the input's custom_ids: the wrapping sum of the first 8 bytes of
/// SHA-256(key ‖ custom_id) over the lines. The key is chosen at random when the input is
/// validated and never sent to the gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputIds {
    /// 128-bit key, 32 hex digits.
    pub key: String,
    /// The sum, 16 hex digits.
    pub sum: String,
}

/// Where a Batch stands in its gateway's admission queue.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionStatus {
    /// When the gateway's budget let it start (cleared when the gateway sends it back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admitted_time: Option<Time>,
    /// Times the gateway refused the batch for its enqueued-token limit and it queued again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requeues: u32,
    /// Not admitted again before this time (a backoff after a requeue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Identifiers on the gateway. Their formats are the gateway's own: never parsed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// The uploaded input file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_file_id: Option<String>,
    /// The gateway batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// The file of successful lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file_id: Option<String>,
    /// The file of failed lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_file_id: Option<String>,
    /// The gateway's own status word (validating, in_progress, completed, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// When the gateway's status word or request counts were last seen to change (the clock of
    /// `Progressing=False Stalled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_time: Option<Time>,
    /// The gateway's own `request_counts`, kept when they differ from what the result files
    /// prove (`status.requestCounts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_counts: Option<RequestCounts>,
}

/// Request lines by outcome.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestCounts {
    /// Lines in the batch.
    pub total: u64,
    /// Lines that got a successful response.
    pub completed: u64,
    /// Lines that failed.
    pub failed: u64,
    /// Lines that never ran because the batch expired or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_run: Option<u64>,
}

/// Tokens summed over the successful lines.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Prompt (input) tokens.
    pub prompt_tokens: u64,
    /// Completion (output) tokens.
    pub completion_tokens: u64,
    /// All tokens.
    pub total_tokens: u64,
    /// By the model that answered (`response.body.model`), sorted: at most 50 models by name,
    /// the answers of any further model summed under `(other)`, answers naming none under
    /// `(unknown)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 52))]
    pub by_model: Vec<ModelUsage>,
}

/// Models `usage.byModel` lists by name; past them, answers are summed under
/// [`OTHER_MODELS`], so a gateway naming a new model in every answer cannot grow the status.
pub const MAX_USAGE_MODELS: usize = 50;
/// The `usage.byModel` entry of the models past [`MAX_USAGE_MODELS`].
pub const OTHER_MODELS: &str = "(other)";
/// The `usage.byModel` entry of answers that name no model.
pub const UNKNOWN_MODEL: &str = "(unknown)";

/// The tokens of one model's answers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelUsage {
    /// The model, as the answers name it (at most 128 characters).
    pub model: String,
    /// Successful requests it answered.
    pub requests: u64,
    /// Input tokens, cached ones included.
    pub input_tokens: u64,
    /// Of `inputTokens`, those read from the provider's prompt cache.
    pub cached_input_tokens: u64,
    /// Output tokens, reasoning tokens included.
    pub output_tokens: u64,
}

/// Where the results were written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputStatus {
    /// The Secret holding the results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The local directory or volume path holding the results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The object-store prefix holding the results (`s3://bucket/results/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The PersistentVolumeClaim holding the results (under `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<String>,
    /// Lines in the output file.
    pub lines: u64,
    /// Bytes of the output file.
    pub bytes: u64,
    /// Lines in the error file.
    pub error_lines: u64,
    /// Bytes of the error file.
    pub error_bytes: u64,
    /// Result lines repeating a custom_id seen on an earlier line (counted nowhere else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_lines: Option<u64>,
    /// Result lines without a readable custom_id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unidentified_lines: Option<u64>,
}
