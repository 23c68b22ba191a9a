//! `BatchSweep`: one large workload fanned out into many `Batch`es (chunks of a big input,
//! and/or every chunk for every model of an evaluation matrix).

// clippy reads the repeated `type_ = ...` inside printcolumn(...) as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BatchInput, BatchOutput, BatchPhase, DeletionPolicy, Endpoint, LocalObjectRef, RequestCounts, Usage};

/// Children listed in `status.children` at most; the counts cover all of them.
pub const MAX_LISTED_CHILDREN: usize = 50;
/// Chunks a sweep may plan: the plan lives in the status, which must stay small.
pub const MAX_CHUNKS: usize = 2000;

/// A large workload run as many Batches: the input is cut into line-aligned chunks, each chunk
/// runs once per model of the matrix, at most `parallelism` at a time.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "llmbatch.io",
    version = "v1alpha1",
    kind = "BatchSweep",
    namespaced,
    status = "BatchSweepStatus",
    shortname = "lbs",
    category = "llmbatch",
    doc = "A large workload fanned out into many Batches: chunks of one input, times a matrix of models.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Batches", type_ = "string", json_path = ".status.progress"),
    printcolumn(name = "Completed", type_ = "integer", json_path = ".status.requestCounts.completed"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.requestCounts.failed"),
    printcolumn(name = "Total", type_ = "integer", json_path = ".status.requestCounts.total"),
    printcolumn(name = "Cost", type_ = "string", json_path = ".status.cost.display"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.input.fileId)")
    .message("a sweep cannot cut a file that is already on the gateway: give configMap, secret, objectStore or requests"))]
#[x_kube(validation = Rule::new("!has(self.input.byteRange) && !has(self.input.overrides)")
    .message("a sweep sets byteRange and overrides for each child Batch: leave them out of spec.input"))]
pub struct BatchSweepSpec {
    /// Where the JSONL request lines come from (as for a Batch); immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("input is immutable"))]
    pub input: BatchInput,
    /// How large each child batch may be; omitted fields use the gateway's limits.
    #[serde(default)]
    pub chunk: ChunkSpec,
    /// Run every chunk once per model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("matrix is immutable"))]
    pub matrix: Option<Matrix>,
    /// What every child Batch shares.
    #[x_kube(validation = Rule::new("self == oldSelf").message("template is immutable"))]
    pub template: BatchTemplate,
    /// Child Batches in flight at once.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1))]
    pub parallelism: u32,
    /// Failed child Batches tolerated: past it, no new child starts and the sweep fails
    /// (children already running finish).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub max_failed_batches: u32,
    /// Stop creating children (running ones finish); set back to false to continue.
    #[serde(default)]
    pub suspend: bool,
    /// The most the sweep may cost, in the gateway's pricing currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<SweepBudget>,
    /// Resubmit lines that failed retryably (429, 5xx, timeout, expired batch) as follow-up
    /// Batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// A webhook told when the sweep finishes. Without it, the template's BatchGateway's
    /// `spec.notify` applies. Its children never notify: the sweep does, once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<super::Notify>,
}

/// A sweep's budget in money.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SweepBudget {
    /// No child is created once what the sweep's children cost (finished ones), are estimated
    /// at (running ones) and the next child's estimate would pass this, a decimal such as
    /// `25`; running children finish. Raising it continues the sweep.
    #[schemars(regex(pattern = super::PRICE_PATTERN))]
    pub max_cost: String,
}

/// Most attempts a line may get (`spec.retry.maxAttempts`).
pub const MAX_ATTEMPTS: u32 = 10;

/// Retrying the lines of a child that failed for reasons worth another try.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetrySpec {
    /// Attempts per line in all, the first one included: 3 is the first try and at most two
    /// retries; 1 retries nothing. Each retry is a follow-up child Batch `<child>-r<n>` holding
    /// only the lines of the attempt before it that failed with 429, a 5xx, a timeout or
    /// `batch_expired`.
    #[schemars(range(min = 1, max = 10))]
    pub max_attempts: u32,
}

impl BatchSweepSpec {
    /// Attempts per line in all (1 without `spec.retry`).
    pub fn max_attempts(&self) -> u32 {
        self.retry.as_ref().map_or(1, |r| r.max_attempts.clamp(1, MAX_ATTEMPTS))
    }
}

fn default_parallelism() -> u32 {
    3
}

/// Chunk ceilings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChunkSpec {
    /// Requests per child batch (default: the gateway's maxRequestsPerBatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_requests: Option<u64>,
    /// Bytes per child batch input, as a quantity such as 100Mi (default: the gateway's
    /// maxBytesPerBatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi|Ti|k|K|M|G|T)?$"))]
    pub max_bytes: Option<String>,
}

/// The models every chunk runs with.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Matrix {
    /// Model names (unique); each replaces `body.model` in every line of its children.
    #[schemars(length(min = 1, max = 50), inner(length(min = 1, max = 128)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub models: Vec<String>,
}

/// The part of a Batch spec every child shares.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchTemplate {
    /// The BatchGateway (same namespace) the children are sent to.
    pub gateway_ref: LocalObjectRef,
    /// The endpoint every request line targets.
    pub endpoint: Endpoint,
    /// How long the gateway may take per child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub completion_window: Option<String>,
    /// Where each child's results go; each child writes under a name or path of its own
    /// (a Secret `<name>-<child suffix>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<BatchOutput>,
    /// Forwarded to every child's gateway batch metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 10))]
    pub metadata: BTreeMap<String, String>,
    /// What deleting a child does upstream.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Where a sweep is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum SweepPhase {
    /// Accepted; the input is being read to plan the chunks.
    #[default]
    Pending,
    /// Children are being created and run.
    Running,
    /// `suspend` is set: no new child starts.
    Suspended,
    /// Every child finished and the failure budget held.
    Succeeded,
    /// The input could not be planned, or more children failed than `maxFailedBatches`.
    Failed,
}

impl SweepPhase {
    /// True once nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

impl std::fmt::Display for SweepPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Everything the operator knows about a sweep; a restart resumes from this and the children.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchSweepStatus {
    /// Where the sweep is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SweepPhase>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the operator started working on the sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the sweep reached a final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The chunk boundaries, found by one scan of the input and kept so a restart does not
    /// scan again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<SweepPlan>,
    /// `<finished>/<all> batches`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Child Batches by phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches: Option<ChildCounts>,
    /// Request lines by outcome, summed over the children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_counts: Option<RequestCounts>,
    /// Tokens summed over the children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What the children cost, summed over every attempt (each follow-up once), per model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<super::Cost>,
    /// Lines resubmitted by follow-up Batches, and how many of them then succeeded
    /// (with `spec.retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryCounts>,
    /// The children, unfinished ones first, at most 50 (the counts cover all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildStatus>,
    /// The events owed to `spec.notify` (or the gateway's) and how their delivery went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub notifications: Vec<super::NotificationStatus>,
    /// Complete, Failed, Suspended (Kubernetes API conventions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// The chunks of the input.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SweepPlan {
    /// Bytes of the input.
    pub bytes: u64,
    /// Request lines of the input.
    pub requests: u64,
    /// The model the chunks' `uploadBytes` and `estimatedTokens` were measured with (the
    /// matrix's first when the input was scanned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_model: Option<String>,
    /// Line-aligned byte ranges, in order; chunk `i` is `chunks[i]`.
    #[schemars(length(max = 2000))]
    pub chunks: Vec<PlannedChunk>,
    /// The token estimate of the whole input by model, as scanned (see the Batch's
    /// `status.input.estimates`); each child's is its chunk's share.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 52))]
    pub estimates: Vec<super::ModelEstimate>,
}

/// One line-aligned slice of the input.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChunk {
    /// Offset of the first byte.
    pub start: u64,
    /// Offset just past the last byte.
    pub end: u64,
    /// Request lines.
    pub requests: u64,
    /// Bytes the first child of the chunk uploads (its lines rewritten with its model and
    /// custom_id prefix); the other models' children differ by their names' lengths per line.
    /// Known when the scan validated the chunk (its children then skip their own validation read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_bytes: Option<u64>,
    /// Estimated tokens of the first child of the chunk (see the Batch's
    /// `status.input.estimatedTokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_tokens: Option<u64>,
}

/// Child Batches by phase.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildCounts {
    /// Children the sweep will have in all.
    pub total: u32,
    /// Not created yet.
    pub waiting: u32,
    /// Created and not finished.
    pub running: u32,
    /// Finished Succeeded.
    pub succeeded: u32,
    /// Finished Failed, Expired or Cancelled.
    pub failed: u32,
}

/// What the follow-up Batches of a sweep did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryCounts {
    /// Follow-up Batches created.
    pub batches: u32,
    /// Lines resubmitted (a line retried twice counts twice).
    pub retried: u64,
    /// Lines that failed in an attempt and succeeded in a later one.
    pub recovered: u64,
}

/// One child Batch (with its follow-ups, under `spec.retry`: the counts are of all attempts).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildStatus {
    /// The Batch's name.
    pub name: String,
    /// The model it runs with (matrix sweeps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Index into `plan.chunks`.
    pub chunk: u32,
    /// The phase of its latest attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BatchPhase>,
    /// Lines that succeeded in any attempt.
    #[serde(default)]
    pub completed: u64,
    /// Lines that failed and were not (or not yet) retried successfully.
    #[serde(default)]
    pub failed: u64,
    /// Attempts made so far, when more than one: the latest is `<name>-r<attempts - 1>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// What its attempts cost (or, before their results, are estimated at), as the Batches'
    /// Cost column shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
}
