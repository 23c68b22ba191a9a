//! What drivers report back to the engine after performing an [`Action`](super::Action).

use std::collections::BTreeMap;

use crate::api::{InputIds, ModelEstimate, Usage};

/// A batch to create upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRequest {
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    /// The user's metadata plus the operator's own keys (attempt, uid, object).
    pub metadata: BTreeMap<String, String>,
    /// The attempt token: an existing batch whose metadata carries it is adopted.
    pub attempt: String,
}

/// The gateway's status word, as the engine understands it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamState {
    Validating,
    InProgress,
    Finalizing,
    Completed,
    Failed,
    Expired,
    Cancelling,
    Cancelled,
    /// A word this engine does not know; treated as still running.
    Other(String),
}

impl UpstreamState {
    /// Parses the wire word (`in_progress`, ...).
    pub fn from_wire(word: &str) -> Self {
        match word {
            "validating" => Self::Validating,
            "in_progress" => Self::InProgress,
            "finalizing" => Self::Finalizing,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "expired" => Self::Expired,
            "cancelling" => Self::Cancelling,
            "cancelled" => Self::Cancelled,
            other => Self::Other(other.to_string()),
        }
    }

    /// The wire word.
    pub fn as_wire(&self) -> &str {
        match self {
            Self::Validating => "validating",
            Self::InProgress => "in_progress",
            Self::Finalizing => "finalizing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::Other(word) => word,
        }
    }

    /// True once the gateway will change nothing more.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Expired | Self::Cancelled)
    }
}

/// What the driver saw of the upstream batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub id: String,
    pub state: UpstreamState,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    /// `request_counts` as `(total, completed, failed)`, when the gateway reports them.
    pub counts: Option<(u64, u64, u64)>,
    /// The gateway's validation errors (`errors.data`), rendered `line N: message (param)`.
    pub errors: Vec<String>,
    /// The batch failed only because the gateway's enqueued-token limit was reached
    /// (`token_limit_exceeded`): it goes back to the admission queue instead of failing.
    pub token_limited: bool,
}

/// What the download step wrote and counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Downloaded {
    /// Where the results are: a directory, a Secret name, an object-store URL (`s3://...`), or
    /// `pvc://<claimName>/<path>` for a directory on a PersistentVolumeClaim.
    pub location: String,
    pub output_lines: u64,
    pub output_bytes: u64,
    pub error_lines: u64,
    pub error_bytes: u64,
    /// Error lines that say the request never ran (`batch_expired`, `batch_cancelled`).
    pub not_run: u64,
    /// Summed from the `usage` of each successful response body.
    pub usage: Usage,
    /// Why the results stayed on the gateway instead of the sink (e.g. too large for a
    /// Secret); `None` when the sink holds them.
    pub not_stored: Option<String>,
    /// What the files prove, custom_id by custom_id; `None` when they were not checked (a sink
    /// Job whose report could not be read, direct mode).
    pub results: Option<ResultCheck>,
}

/// The result files read custom_id by custom_id. The first line of each id counts; a later
/// line with the same id (in either file) is a duplicate and counts nowhere else.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResultCheck {
    /// Distinct custom_ids in the output file.
    pub completed: u64,
    /// Distinct custom_ids in the error file (not already in the output file).
    pub failed: u64,
    /// Lines repeating a custom_id seen on an earlier line.
    pub duplicate_lines: u64,
    /// Lines without a readable custom_id (not JSON, no `custom_id` string).
    pub unidentified_lines: u64,
    /// Against the input's digest (`status.input.ids`): whether the distinct ids are exactly
    /// the input's. `None` when there was no digest to check against.
    pub ids_match: Option<bool>,
}

/// How a step failed, by what the Batch should do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorClass {
    /// Worth retrying later (429, 5xx, timeouts, resets): never fails the Batch.
    Transient,
    /// The gateway refused the key (401/403): nothing changes until the key is fixed.
    Unauthorized,
    /// The gateway's address cannot be used (it redirects, or it is an address the operator
    /// does not connect to): nothing changes until the BatchGateway is fixed.
    Misconfigured,
    /// The gateway refused the request itself (400, 409, 422): the Batch fails.
    Rejected,
    /// Our own upstream batch or file is gone (404): the Batch fails.
    NotFound,
    /// The results could not be written to the sink (disk full, API error): retried later.
    Output,
}

impl ErrorClass {
    /// True for failures that a later retry of the same step may get past.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Transient | Self::Output)
    }
}

/// What happened when the driver performed the action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The input was read and is valid.
    InputValidated {
        requests: u64,
        bytes: u64,
        estimated_tokens: u64,
        /// The estimate by model (empty where the input was not read here).
        estimates: Vec<ModelEstimate>,
        /// Of the prepared bytes, for an input that is read again to upload (object storage), as
        /// `status.input.digest` keeps it.
        digest: Option<String>,
        /// The keyed digest of the custom_ids as uploaded; `None` when not computed here.
        ids: Option<InputIds>,
    },
    /// The gateway's budget has room: the Batch may start.
    Admitted,
    /// The gateway's budget has no room yet; `message` says what the Batch waits for.
    AwaitingBudget { message: String },
    /// The gateway's money budget has no room yet (`BudgetExhausted`).
    OverBudget(super::admission::OverBudget),
    /// The input is invalid; `message` names the lines and fields.
    InputInvalid { message: String },
    /// The input is a file already on the gateway (`spec.input.fileId`), of `bytes` bytes.
    InputOnGateway { file_id: String, bytes: Option<u64> },
    /// The input's ConfigMap/Secret/key does not exist (yet).
    InputNotFound { message: String },
    /// The spec cannot be sent as is (e.g. too much metadata).
    SpecInvalid { message: String },
    /// Cancelled before anything was submitted.
    CancelledBeforeSubmit,
    /// An attempt token was recorded.
    AttemptStarted { token: String },
    /// The input file is on the gateway (`adopted`: found from an earlier run, not uploaded now).
    /// `ids`: the digest of the custom_ids the upload pass sent, for an input whose validation
    /// read nothing (a sweep's chunk, validated by the sweep's scan).
    InputUploaded {
        file_id: String,
        adopted: bool,
        ids: Option<crate::api::InputIds>,
    },
    /// The batch exists upstream (`adopted`: found from an earlier run, not created now).
    BatchSubmitted { batch: Upstream, adopted: bool },
    /// The upstream batch as retrieved (or as returned by a cancel request).
    Observed(Upstream),
    /// Output and error files are in the sink.
    Downloaded(Downloaded),
    /// The output Secret exists and is not this Batch's (another owner, or none): it was left
    /// as it is and the results stay on the gateway until the output is renamed or that Secret
    /// is gone. `message` says whose it is.
    OutputNotOwned { message: String },
    /// The step failed; what happens next depends on the class.
    GatewayError { class: ErrorClass, message: String },
    /// The Batch runs in this mode (spec.mode, or what a probe found for Auto).
    ModeResolved { mode: crate::api::BatchMode },
    /// Direct mode: lines done so far (durably recorded).
    DirectProgress { total: u64, completed: u64, failed: u64 },
    /// Direct mode concluded (completed, expired or cancelled); results are in the sink.
    DirectFinished {
        state: UpstreamState,
        downloaded: Downloaded,
    },
}

impl Outcome {
    /// The class of a failed step and what failed, `None` when the step did not fail: the one
    /// mapping both drivers act on (each with its own way to wait).
    pub fn failure(&self) -> Option<(ErrorClass, &str)> {
        match self {
            Outcome::GatewayError { class, message } => Some((*class, message)),
            // The controller waits for it to appear; run -f stops and says what is missing.
            Outcome::InputNotFound { message } => Some((ErrorClass::NotFound, message)),
            // Retried (and at once when the Batch changes, e.g. its output is renamed).
            Outcome::OutputNotOwned { message } => Some((ErrorClass::Output, message)),
            _ => None,
        }
    }
}
