//! The batch lifecycle as a pure state machine.
//!
//! [`decide`] looks at a Batch's spec and status and says what to do next; the driver (the
//! controller, or `run -f`) performs that one step and feeds what happened back through
//! [`reduce`], which returns the next status. Nothing here does I/O, so every upstream
//! state and every error class is tested without a network, and a driver that persists the
//! status after every step can be killed at any moment and resume from the status alone.

pub mod admission;
mod cost;
mod direct;
mod metadata;
mod reduce;
mod stalled;
mod types;
mod verify;

#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::{BatchMode, BatchPhase, BatchSpec, BatchStatus};

pub use direct::input_limits;
pub use metadata::{
    ATTEMPT_KEY, OBJECT_KEY, UID_KEY, attempt_started, attempt_token_at, batch_metadata, check_spec,
    upload_attempt_started, upload_filename,
};
pub use reduce::reduce;
pub use stalled::{StalledPolicy, last_change, newly_stalled, stalled};
pub use types::*;

/// What the driver should do next for one Batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Settle the mode the Batch runs in (the gateway's spec.mode, or for Auto whether it has a
    /// batch API), before the input is validated: the rules that apply depend on it.
    ResolveMode,
    /// Read and validate the whole input. Nothing goes upstream.
    ValidateInput,
    /// The user cancelled before anything was submitted: record that, send nothing.
    CancelBeforeSubmit,
    /// Ask the gateway's budget (maxActiveBatches, tokensPerHour) for room to start.
    Admit,
    /// Record a fresh attempt token in status before anything is created upstream.
    StartAttempt,
    /// Adopt the file this attempt already uploaded (found by `filename`), or upload the input.
    UploadInput { filename: String },
    /// Adopt the batch this attempt already created (found by `attempt` in its metadata), or create it.
    CreateBatch(BatchRequest),
    /// Retrieve the upstream batch after waiting `after`.
    Poll { batch_id: String, after: Duration },
    /// Ask the gateway to cancel the batch.
    Cancel { batch_id: String },
    /// Download the output and error files (either may be absent) into the sink.
    Download {
        output_file_id: Option<String>,
        error_file_id: Option<String>,
    },
    /// Direct mode: send the lines not yet done to the endpoint, paced, until all are
    /// answered or the completion window passes.
    RunDirect,
    /// Nothing more to do: the phase is final.
    Finished,
}

impl Action {
    /// A short stable name, for logs, metrics and the crash-test hook.
    pub fn name(&self) -> &'static str {
        match self {
            Action::ResolveMode => "resolve-mode",
            Action::ValidateInput => "validate-input",
            Action::CancelBeforeSubmit => "cancel-before-submit",
            Action::Admit => "admit",
            Action::StartAttempt => "start-attempt",
            Action::UploadInput { .. } => "upload-input",
            Action::CreateBatch(_) => "create-batch",
            Action::Poll { .. } => "poll",
            Action::Cancel { .. } => "cancel",
            Action::Download { .. } => "download",
            Action::RunDirect => "run-direct",
            Action::Finished => "finished",
        }
    }
}

/// Everything [`decide`] needs besides spec and status.
#[derive(Clone, Debug)]
pub struct Context {
    /// The object's UID (stable across restarts; carried in the batch metadata).
    pub uid: String,
    /// `namespace/name`, for file names and metadata.
    pub object: String,
    /// `metadata.generation` of the object, recorded as `observedGeneration`.
    pub generation: Option<i64>,
    /// The gateway's polling bounds.
    pub polling: PollingPolicy,
    /// The current time (injected: tests fix it).
    pub now: Timestamp,
    /// The gateway's prices, when it has `spec.pricing`: the results are priced with them. A
    /// driver resolves them only for the steps that count results.
    pub prices: Option<std::sync::Arc<crate::pricing::Prices>>,
}

/// Adaptive polling bounds: first interval after submit, and the ceiling; and how long a
/// polled batch may go without a change before it counts as stalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollingPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub stalled: StalledPolicy,
}

impl PollingPolicy {
    /// Soon after submit, then backing off as the batch ages: a tenth of the batch's age,
    /// kept between `initial` and `max`. Derived from the submit time alone, so a restart
    /// needs no extra state to keep the same rhythm.
    pub fn delay(&self, since_submit: Duration) -> Duration {
        (since_submit / 10).clamp(self.initial, self.max.max(self.initial))
    }

    /// The longest interval: for a batch in a state nobody documented.
    pub fn slowest(&self) -> Duration {
        self.max.max(self.initial)
    }
}

/// The next step for a Batch with this spec and status.
pub fn decide(spec: &BatchSpec, status: &BatchStatus, ctx: &Context) -> Action {
    let phase = status.phase.unwrap_or_default();
    if phase.is_terminal() {
        return Action::Finished;
    }
    if needs_mode(status) {
        return match spec.cancel {
            true => Action::CancelBeforeSubmit,
            false => Action::ResolveMode,
        };
    }
    if status.mode == Some(BatchMode::Direct) {
        return direct::decide(spec, status);
    }
    let gateway = status.gateway.clone().unwrap_or_default();
    let Some(batch_id) = gateway.batch_id else {
        return before_submit(spec, status, gateway.input_file_id, ctx);
    };
    if phase == BatchPhase::Downloading {
        return Action::Download {
            output_file_id: gateway.output_file_id,
            error_file_id: gateway.error_file_id,
        };
    }
    let upstream = gateway.status.as_deref().map(UpstreamState::from_wire);
    if spec.cancel && !matches!(upstream, Some(UpstreamState::Cancelling)) {
        return Action::Cancel { batch_id };
    }
    let since_submit = status
        .submit_time
        .as_ref()
        .and_then(|t| ctx.now.duration_since(t.0).try_into().ok())
        .unwrap_or_default();
    let after = match upstream {
        Some(UpstreamState::Other(_)) => ctx.polling.slowest(),
        _ => ctx.polling.delay(since_submit),
    };
    Action::Poll { batch_id, after }
}

/// The mode is settled once, before anything goes upstream; a Batch already on the gateway
/// (recorded before modes existed, or restored from its annotation) runs in Batch mode.
fn needs_mode(status: &BatchStatus) -> bool {
    status.mode.is_none() && status.gateway.is_none()
}

/// Admitted under the gateway's budget (a Batch that already has an attempt was admitted before
/// admission existed, or is past it).
fn is_admitted(status: &BatchStatus) -> bool {
    status.admission.as_ref().is_some_and(|a| a.admitted_time.is_some()) || status.attempt.is_some()
}

fn before_submit(spec: &BatchSpec, status: &BatchStatus, input_file_id: Option<String>, ctx: &Context) -> Action {
    if spec.cancel {
        return Action::CancelBeforeSubmit;
    }
    if status.input.is_none() {
        return Action::ValidateInput;
    }
    if !is_admitted(status) {
        return Action::Admit;
    }
    let Some(attempt) = status.attempt.clone() else {
        return Action::StartAttempt;
    };
    match input_file_id {
        None => Action::UploadInput {
            filename: upload_filename(&ctx.object, &ctx.uid, &attempt),
        },
        Some(input_file_id) => match batch_metadata(spec, ctx, &attempt) {
            Ok(metadata) => Action::CreateBatch(BatchRequest {
                input_file_id,
                endpoint: spec.endpoint.path().to_string(),
                completion_window: spec.completion_window.clone(),
                metadata,
                attempt,
            }),
            // check_spec rejects this before anything is uploaded; finishing here is a safety net.
            Err(_) => Action::Finished,
        },
    }
}
