//! Direct mode in the lifecycle: the driver sends the lines itself (no upstream batch), so
//! after validation there is one long step, `RunDirect`, reporting counts as it goes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Action, Context, Downloaded, Outcome, UpstreamState};
use crate::api::{
    BatchMode, BatchPhase, BatchSpec, BatchStatus, Conditions, GatewayLimits, GatewayStatus, InvalidField,
    RequestCounts,
};
use crate::api::{condition_types as ct, reasons};
use crate::jsonl::Limits;

/// The next step of a Batch whose mode is Direct (and whose phase is not final).
pub(super) fn decide(spec: &BatchSpec, status: &BatchStatus) -> Action {
    let started = status.phase.is_some_and(|p| p != BatchPhase::Pending);
    if spec.cancel && !started {
        return Action::CancelBeforeSubmit;
    }
    if status.input.is_none() {
        return Action::ValidateInput;
    }
    if !started && !super::is_admitted(status) {
        return Action::Admit;
    }
    Action::RunDirect
}

/// The ceilings an input is validated against in `mode` (`None`: not settled yet, validated as
/// a batch): the gateway's per-batch limits, or none in direct mode, where lines are sent one
/// by one and there is no batch to bound. An unparsable limit names its field.
pub fn input_limits(mode: Option<BatchMode>, gateway: &GatewayLimits) -> Result<Limits, InvalidField> {
    Ok(match mode {
        Some(BatchMode::Direct) => Limits {
            max_requests: u64::MAX,
            max_bytes: u64::MAX,
        },
        _ => Limits {
            max_requests: gateway.max_requests(),
            max_bytes: gateway.max_bytes()?,
        },
    })
}

/// Records the mode a Batch runs in.
pub(super) fn mode_resolved(status: &mut BatchStatus, mode: BatchMode) {
    status.mode = Some(mode);
}

/// A direct run started or advanced.
pub(super) fn progress(status: &mut BatchStatus, total: u64, completed: u64, failed: u64, ctx: &Context) {
    if status.phase != Some(BatchPhase::InProgress) {
        status.phase = Some(BatchPhase::InProgress);
        status.start_time.get_or_insert(Time(ctx.now));
        status.submit_time.get_or_insert(Time(ctx.now));
        let message = "sending each request to the gateway directly (no batch API)";
        status.conditions.set_condition(
            ct::SUBMITTED,
            true,
            reasons::SENDING_DIRECTLY,
            message,
            ctx.generation,
            ctx.now,
        );
    }
    let not_run = status.request_counts.as_ref().and_then(|c| c.not_run);
    status.request_counts = Some(RequestCounts {
        total,
        completed,
        failed,
        not_run,
    });
}

/// A direct run concluded and its results are in the sink: finish as a batch that ended in
/// `state` would (completed, expired or cancelled).
pub(super) fn finished(
    status: &BatchStatus,
    state: UpstreamState,
    downloaded: Downloaded,
    ctx: &Context,
) -> BatchStatus {
    let mut next = status.clone();
    next.gateway.get_or_insert_with(GatewayStatus::default).status = Some(state.as_wire().to_string());
    super::reduce(&next, Outcome::Downloaded(downloaded), ctx)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::api::{BatchInput, Endpoint, InputStatus, LocalObjectRef};
    use crate::engine::{PollingPolicy, reduce};

    fn spec() -> BatchSpec {
        BatchSpec {
            gateway_ref: LocalObjectRef { name: "gw".into() },
            endpoint: Endpoint::ChatCompletions,
            completion_window: "24h".into(),
            input: BatchInput {
                requests: Some(vec![]),
                ..Default::default()
            },
            output: None,
            metadata: Default::default(),
            cancel: false,
            deletion_policy: Default::default(),
            ttl_seconds_after_finished: None,
            notify: None,
        }
    }

    fn ctx() -> Context {
        Context {
            uid: "u".into(),
            object: "default/b".into(),
            generation: Some(1),
            polling: PollingPolicy {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(1),
                stalled: crate::engine::StalledPolicy::DEFAULT,
            },
            now: Timestamp::from_second(1_700_000_000).unwrap(),
            prices: None,
        }
    }

    fn direct_status() -> BatchStatus {
        reduce(
            &BatchStatus::default(),
            Outcome::ModeResolved {
                mode: BatchMode::Direct,
            },
            &ctx(),
        )
    }

    #[test]
    fn direct_batches_validate_then_run_without_an_upstream_batch() {
        let mut status = direct_status();
        assert_eq!(status.mode, Some(BatchMode::Direct));
        assert_eq!(crate::engine::decide(&spec(), &status, &ctx()), Action::ValidateInput);
        status.input = Some(InputStatus {
            requests: 3,
            bytes: 10,
            estimated_tokens: Some(30),
            estimates: Vec::new(),
            digest: None,
            ids: None,
        });
        status.phase = Some(BatchPhase::Pending);
        assert_eq!(crate::engine::decide(&spec(), &status, &ctx()), Action::Admit);
        status = reduce(&status, Outcome::Admitted, &ctx());
        assert_eq!(crate::engine::decide(&spec(), &status, &ctx()), Action::RunDirect);
        let cancelled = BatchSpec { cancel: true, ..spec() };
        assert_eq!(
            crate::engine::decide(&cancelled, &status, &ctx()),
            Action::CancelBeforeSubmit
        );
        // Once lines were sent, a cancel is the runner's to conclude (keeping what completed).
        status = reduce(
            &status,
            Outcome::DirectProgress {
                total: 3,
                completed: 1,
                failed: 0,
            },
            &ctx(),
        );
        assert_eq!(crate::engine::decide(&cancelled, &status, &ctx()), Action::RunDirect);
    }

    #[test]
    fn progress_then_expiry_keeps_counts_and_finishes_expired() {
        let mut status = direct_status();
        status.input = Some(InputStatus {
            requests: 10,
            bytes: 100,
            estimated_tokens: None,
            estimates: Vec::new(),
            digest: None,
            ids: None,
        });
        let progress = Outcome::DirectProgress {
            total: 10,
            completed: 4,
            failed: 1,
        };
        status = reduce(&status, progress, &ctx());
        assert_eq!(status.phase, Some(BatchPhase::InProgress));
        assert!(status.conditions.is_true(ct::SUBMITTED));
        assert_eq!(status.request_counts.as_ref().unwrap().completed, 4);
        let downloaded = Downloaded {
            location: "out".into(),
            output_lines: 4,
            error_lines: 6,
            not_run: 5,
            ..Default::default()
        };
        let state = UpstreamState::Expired;
        status = reduce(&status, Outcome::DirectFinished { state, downloaded }, &ctx());
        assert_eq!(status.phase, Some(BatchPhase::Expired));
        assert_eq!(status.request_counts.as_ref().unwrap().not_run, Some(5));
        assert_eq!(crate::engine::decide(&spec(), &status, &ctx()), Action::Finished);
    }
}
