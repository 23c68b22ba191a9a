//! How each outcome changes a Batch's status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Context, Downloaded, ErrorClass, Outcome, Upstream, UpstreamState};
use crate::api::{
    BatchPhase, BatchStatus, Conditions, GatewayStatus, InputStatus, OutputStatus, RequestCounts,
    condition_types as ct, reasons,
};

/// The status after `outcome`. Pure: the same inputs give the same status.
pub fn reduce(status: &BatchStatus, outcome: Outcome, ctx: &Context) -> BatchStatus {
    let mut next = status.clone();
    next.observed_generation = ctx.generation;
    // Never blank in `kubectl get`: a Batch stuck on its first step (a refused key) is Pending.
    next.phase.get_or_insert(BatchPhase::Pending);
    if !matches!(outcome, Outcome::GatewayError { .. }) && next.conditions.condition(ct::GATEWAY_READY).is_some() {
        set(
            &mut next,
            ct::GATEWAY_READY,
            true,
            reasons::GATEWAY_REACHABLE,
            "the gateway answers",
            ctx,
        );
    }
    match outcome {
        Outcome::InputValidated {
            requests,
            bytes,
            estimated_tokens,
            estimates,
            digest,
            ids,
        } => {
            next.input = Some(InputStatus {
                requests,
                bytes,
                estimated_tokens: Some(estimated_tokens),
                estimates,
                digest,
                ids,
            });
            super::cost::estimate(&mut next, ctx);
            next.phase = Some(BatchPhase::Pending);
            let message = format!("{requests} requests, {bytes} bytes (about {estimated_tokens} tokens), valid");
            set(&mut next, ct::ADMITTED, true, reasons::INPUT_VALID, message, ctx);
        }
        Outcome::InputOnGateway { file_id, bytes } => {
            next.input = Some(InputStatus {
                requests: 0,
                bytes: bytes.unwrap_or(0),
                estimated_tokens: None,
                estimates: Vec::new(),
                digest: None,
                ids: None,
            });
            gateway(&mut next).input_file_id = Some(file_id.clone());
            next.phase = Some(BatchPhase::Pending);
            let message = format!("input file {file_id} is on the gateway (validated there, not here)");
            set(&mut next, ct::ADMITTED, true, reasons::INPUT_ON_GATEWAY, message, ctx);
        }
        Outcome::InputInvalid { message } => {
            set(
                &mut next,
                ct::ADMITTED,
                false,
                reasons::INPUT_INVALID,
                message.clone(),
                ctx,
            );
            finish(&mut next, BatchPhase::Failed, reasons::INPUT_INVALID, message, ctx);
        }
        Outcome::SpecInvalid { message } => {
            set(
                &mut next,
                ct::ADMITTED,
                false,
                reasons::SPEC_INVALID,
                message.clone(),
                ctx,
            );
            finish(&mut next, BatchPhase::Failed, reasons::SPEC_INVALID, message, ctx);
        }
        Outcome::InputNotFound { message } => {
            next.phase = Some(BatchPhase::Pending);
            set(&mut next, ct::ADMITTED, false, reasons::INPUT_NOT_FOUND, message, ctx);
        }
        Outcome::Admitted => {
            let admission = next.admission.get_or_insert_with(Default::default);
            admission.admitted_time = Some(Time(ctx.now));
            admission.not_before = None;
            if next
                .conditions
                .condition(ct::ADMITTED)
                .is_some_and(|c| c.status == "False")
            {
                let message = "the gateway's budget has room";
                set(&mut next, ct::ADMITTED, true, reasons::ADMITTED, message, ctx);
            }
        }
        Outcome::AwaitingBudget { message } => {
            next.phase = Some(BatchPhase::Pending);
            set(&mut next, ct::ADMITTED, false, reasons::GATEWAY_BUDGET, message, ctx);
        }
        Outcome::OverBudget(over) => {
            next.phase = Some(BatchPhase::Pending);
            set(
                &mut next,
                ct::ADMITTED,
                false,
                reasons::BUDGET_EXHAUSTED,
                over.message,
                ctx,
            );
        }
        Outcome::CancelledBeforeSubmit => {
            let message = "cancelled before anything was submitted";
            finish(
                &mut next,
                BatchPhase::Cancelled,
                reasons::CANCELLED,
                message.to_string(),
                ctx,
            );
        }
        Outcome::AttemptStarted { token } => {
            next.attempt = Some(token);
            next.phase = Some(BatchPhase::Uploading);
            next.start_time.get_or_insert(Time(ctx.now));
        }
        Outcome::InputUploaded { file_id, ids, .. } => {
            gateway(&mut next).input_file_id = Some(file_id);
            if let Some(input) = next.input.as_mut()
                && input.ids.is_none()
            {
                input.ids = ids;
            }
        }
        Outcome::BatchSubmitted { batch, adopted } => {
            gateway(&mut next).batch_id = Some(batch.id.clone());
            next.submit_time.get_or_insert(Time(ctx.now));
            let (reason, verb) = if adopted {
                (reasons::BATCH_ADOPTED, "adopted")
            } else {
                (reasons::BATCH_CREATED, "created")
            };
            let message = format!("batch {} {verb} on the gateway", batch.id);
            set(&mut next, ct::SUBMITTED, true, reason, message, ctx);
            observe(&mut next, batch, ctx);
        }
        Outcome::Observed(batch) => observe(&mut next, batch, ctx),
        Outcome::Downloaded(downloaded) => collect(&mut next, downloaded, ctx),
        Outcome::OutputNotOwned { message } => {
            // Still Downloading: the results are collected once the output can be written.
            let message = format!("{message}; the results stay on the gateway until then");
            set(
                &mut next,
                ct::OUTPUT_STORED,
                false,
                reasons::SECRET_NOT_OWNED,
                message,
                ctx,
            );
        }
        Outcome::GatewayError { class, message } => gateway_error(&mut next, class, message, ctx),
        Outcome::ModeResolved { mode } => super::direct::mode_resolved(&mut next, mode),
        Outcome::DirectProgress {
            total,
            completed,
            failed,
        } => super::direct::progress(&mut next, total, completed, failed, ctx),
        Outcome::DirectFinished { state, downloaded } => return super::direct::finished(&next, state, downloaded, ctx),
    }
    next
}

fn observe(status: &mut BatchStatus, batch: Upstream, ctx: &Context) {
    let before = (
        status.gateway.as_ref().and_then(|g| g.status.clone()),
        status.request_counts.as_ref().map(|c| (c.total, c.completed, c.failed)),
    );
    super::stalled::track(status, before, &batch, ctx);
    let gw = gateway(status);
    gw.status = Some(batch.state.as_wire().to_string());
    gw.output_file_id = batch.output_file_id.clone().or(gw.output_file_id.take());
    gw.error_file_id = batch.error_file_id.clone().or(gw.error_file_id.take());
    if let Some((total, completed, failed)) = batch.counts {
        let not_run = status.request_counts.as_ref().and_then(|c| c.not_run);
        status.request_counts = Some(RequestCounts {
            total,
            completed,
            failed,
            not_run,
        });
    }
    let has_files = batch.output_file_id.is_some() || batch.error_file_id.is_some();
    status.phase = Some(match batch.state {
        UpstreamState::Validating => BatchPhase::Validating,
        UpstreamState::InProgress | UpstreamState::Cancelling | UpstreamState::Other(_) => BatchPhase::InProgress,
        UpstreamState::Finalizing => BatchPhase::Finalizing,
        state if has_files => {
            debug_assert!(state.is_terminal());
            BatchPhase::Downloading
        }
        UpstreamState::Failed if batch.token_limited => return requeue(status, &batch, ctx),
        UpstreamState::Failed => {
            let message = failure_message(&batch.errors);
            set(
                status,
                ct::ADMITTED,
                false,
                reasons::REJECTED_BY_GATEWAY,
                message.clone(),
                ctx,
            );
            finish(status, BatchPhase::Failed, reasons::BATCH_FAILED, message, ctx);
            return;
        }
        UpstreamState::Completed => {
            let message = "the gateway said completed but returned no result files";
            set(
                status,
                ct::RESULTS_VERIFIED,
                false,
                reasons::MISSING_RESULTS,
                message,
                ctx,
            );
            finish(
                status,
                BatchPhase::Failed,
                reasons::MISSING_RESULTS,
                message.to_string(),
                ctx,
            );
            return;
        }
        state => {
            // A final state without files: nothing to collect.
            let phase = final_phase(&state);
            let (reason, message) = final_reason(phase, status);
            finish(status, phase, reason, message, ctx);
            return;
        }
    });
}

/// The gateway refused the batch for its enqueued-token limit: back to the admission queue
/// with a fresh attempt (the uploaded input is kept), after a backoff.
fn requeue(status: &mut BatchStatus, batch: &Upstream, ctx: &Context) {
    let admission = status.admission.get_or_insert_with(Default::default);
    admission.requeues += 1;
    admission.admitted_time = None;
    let not_before = ctx.now + super::admission::requeue_backoff(admission.requeues);
    admission.not_before = Some(Time(not_before));
    status.attempt = None;
    status.submit_time = None;
    let gw = gateway(status);
    (gw.batch_id, gw.status, gw.output_file_id, gw.error_file_id) = (None, None, None, None);
    gw.last_change_time = None;
    status.phase = Some(BatchPhase::Pending);
    let message = format!(
        "batch {} was refused for the gateway's enqueued token limit ({}); queued again, not before {not_before}",
        batch.id,
        failure_message(&batch.errors)
    );
    set(
        status,
        ct::SUBMITTED,
        false,
        reasons::GATEWAY_BUDGET,
        message.clone(),
        ctx,
    );
    set(status, ct::ADMITTED, false, reasons::GATEWAY_BUDGET, message, ctx);
}

fn collect(status: &mut BatchStatus, d: Downloaded, ctx: &Context) {
    match &d.not_stored {
        None => set(
            status,
            ct::OUTPUT_STORED,
            true,
            reasons::STORED,
            d.location.clone(),
            ctx,
        ),
        Some(why) => set(
            status,
            ct::OUTPUT_STORED,
            false,
            reasons::OUTPUT_TOO_LARGE,
            why.clone(),
            ctx,
        ),
    }
    status.usage = Some(d.usage.clone());
    super::cost::price(status, ctx);
    let is_url = ["s3://", "gs://", "az://"]
        .iter()
        .any(|scheme| d.location.starts_with(scheme));
    let on_claim = d.location.strip_prefix("pvc://").and_then(|rest| rest.split_once('/'));
    let secret = d.location.strip_prefix("Secret ");
    status.output = Some(OutputStatus {
        secret_name: secret.map(str::to_string),
        path: match (on_claim, secret) {
            (Some((_, path)), _) => Some(path.to_string()),
            (None, Some(_)) => None,
            (None, None) => (!is_url).then(|| d.location.clone()),
        },
        url: is_url.then(|| d.location.clone()),
        pvc: on_claim.map(|(claim, _)| claim.to_string()),
        lines: d.output_lines,
        bytes: d.output_bytes,
        error_lines: d.error_lines,
        error_bytes: d.error_bytes,
        duplicate_lines: None,
        unidentified_lines: None,
    });
    output_check_counts(status, &d);
    let state = status
        .gateway
        .as_ref()
        .and_then(|g| g.status.as_deref())
        .map(UpstreamState::from_wire)
        .unwrap_or(UpstreamState::Completed);
    let Some(check) = &d.results else {
        // Not checked (a sink Job whose report was unreadable): the gateway's counts stand.
        let counts = status.request_counts.get_or_insert_with(Default::default);
        // Gateways that report no counts still get the ones the files show.
        if counts.total == 0 {
            counts.completed = d.output_lines;
            counts.failed = d.error_lines;
            counts.total = d.output_lines + d.error_lines;
        }
        counts.not_run = (d.not_run > 0).then_some(d.not_run);
        let phase = final_phase(&state);
        let (reason, message) = final_reason(phase, status);
        return finish(status, phase, reason, message, ctx);
    };
    let verdict = super::verify::verify(status, check, d.not_run, &state);
    let from_gateway = status
        .request_counts
        .take()
        .map(|c| RequestCounts { not_run: None, ..c });
    let proven = &verdict.counts;
    gateway(status).request_counts =
        from_gateway.filter(|g| (g.total, g.completed, g.failed) != (proven.total, proven.completed, proven.failed));
    status.request_counts = Some(verdict.counts.clone());
    if verdict.findings.is_empty() {
        let (reason, message) = match verdict.ids_match {
            Some(true) => (
                reasons::RESULTS_MATCH_INPUT,
                "every result line is one of the input's requests, each once".to_string(),
            ),
            Some(false) => (
                reasons::RESULTS_INCOMPLETE,
                format!(
                    "no result line repeats a custom_id; {} requests have no result line (the batch {} before they ran), \
                     so the ids could not be compared in full",
                    verdict.missing,
                    state.as_wire()
                ),
            ),
            None => (
                reasons::NO_INPUT_IDS,
                "no result line repeats a custom_id; the input's ids are not known here, so they were not compared"
                    .to_string(),
            ),
        };
        set(status, ct::RESULTS_VERIFIED, true, reason, message, ctx);
        let phase = final_phase(&state);
        let (reason, message) = final_reason(phase, status);
        return finish(status, phase, reason, message, ctx);
    }
    let reason = verdict.findings[0].0;
    let what = verdict
        .findings
        .iter()
        .map(|(_, m)| m.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    set(status, ct::RESULTS_VERIFIED, false, reason, what.clone(), ctx);
    let (_, summary) = final_reason(BatchPhase::Succeeded, status);
    let message = format!(
        "the results do not match the input: {what}; the files show {summary}, and are kept as the gateway sent them in {}",
        d.location
    );
    finish(status, BatchPhase::Failed, reason, message, ctx);
}

/// The duplicate and unidentified lines, beside the files' line counts.
fn output_check_counts(status: &mut BatchStatus, d: &Downloaded) {
    if let (Some(output), Some(check)) = (status.output.as_mut(), &d.results) {
        output.duplicate_lines = (check.duplicate_lines > 0).then_some(check.duplicate_lines);
        output.unidentified_lines = (check.unidentified_lines > 0).then_some(check.unidentified_lines);
    }
}

fn final_phase(state: &UpstreamState) -> BatchPhase {
    match state {
        UpstreamState::Expired => BatchPhase::Expired,
        UpstreamState::Cancelled => BatchPhase::Cancelled,
        UpstreamState::Failed => BatchPhase::Failed,
        _ => BatchPhase::Succeeded,
    }
}

fn final_reason(phase: BatchPhase, status: &BatchStatus) -> (&'static str, String) {
    let counts = status.request_counts.clone().unwrap_or_default();
    let summary = format!(
        "{} of {} requests completed, {} failed",
        counts.completed, counts.total, counts.failed
    );
    let not_run = counts.not_run.unwrap_or(0);
    // The checked counts keep the requests that never ran apart; a gateway's own counts (the
    // results unchecked) have them among the failed: either way the message adds up.
    let ran_and_failed = match counts.completed + counts.failed + not_run > counts.total {
        true => counts.failed.saturating_sub(not_run),
        false => counts.failed,
    };
    let unfinished = format!(
        "{} of {} requests completed, {ran_and_failed} failed, {not_run} never ran",
        counts.completed, counts.total
    );
    match phase {
        BatchPhase::Expired => (reasons::EXPIRED, format!("the completion window passed: {unfinished}")),
        BatchPhase::Cancelled => (reasons::CANCELLED, format!("cancelled: {unfinished}")),
        BatchPhase::Failed => (
            reasons::BATCH_FAILED,
            format!("the gateway failed the batch: {summary}"),
        ),
        _ => (reasons::SUCCEEDED, summary),
    }
}

fn failure_message(errors: &[String]) -> String {
    if errors.is_empty() {
        return "the gateway failed the batch without saying why".to_string();
    }
    const SHOWN: usize = 5;
    let mut message = format!(
        "the gateway rejected the input: {}",
        errors.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ")
    );
    if errors.len() > SHOWN {
        message.push_str(&format!("; and {} more", errors.len() - SHOWN));
    }
    message
}

fn gateway_error(status: &mut BatchStatus, class: ErrorClass, message: String, ctx: &Context) {
    match class {
        ErrorClass::Transient => {
            let message = format!("{message} (will retry)");
            set(
                status,
                ct::GATEWAY_READY,
                false,
                reasons::GATEWAY_UNAVAILABLE,
                message,
                ctx,
            );
        }
        ErrorClass::Unauthorized => {
            let message =
                format!("{message}: fix the key in the BatchGateway's Secret; the batch resumes where it stopped");
            set(
                status,
                ct::GATEWAY_READY,
                false,
                reasons::GATEWAY_UNAUTHORIZED,
                message,
                ctx,
            );
        }
        ErrorClass::Misconfigured => {
            let message = format!("{message}; the batch resumes where it stopped once the BatchGateway is fixed");
            set(
                status,
                ct::GATEWAY_READY,
                false,
                reasons::GATEWAY_MISCONFIGURED,
                message,
                ctx,
            );
        }
        ErrorClass::Output => {
            let message = format!("{message} (will retry)");
            set(status, ct::COMPLETE, false, reasons::OUTPUT_UNAVAILABLE, message, ctx);
        }
        ErrorClass::Rejected => finish(status, BatchPhase::Failed, reasons::REJECTED_BY_GATEWAY, message, ctx),
        ErrorClass::NotFound => finish(status, BatchPhase::Failed, reasons::BATCH_NOT_FOUND, message, ctx),
    }
}

/// Moves to a final phase and sets Complete or Failed accordingly.
fn finish(status: &mut BatchStatus, phase: BatchPhase, reason: &str, message: String, ctx: &Context) {
    status.phase = Some(phase);
    status.completion_time.get_or_insert(Time(ctx.now));
    let succeeded = phase == BatchPhase::Succeeded;
    set(status, ct::COMPLETE, succeeded, reason, message.clone(), ctx);
    set(status, ct::FAILED, !succeeded, reason, message, ctx);
}

fn set(status: &mut BatchStatus, type_: &str, value: bool, reason: &str, message: impl Into<String>, ctx: &Context) {
    status
        .conditions
        .set_condition(type_, value, reason, message, ctx.generation, ctx.now);
}

fn gateway(status: &mut BatchStatus) -> &mut GatewayStatus {
    status.gateway.get_or_insert_with(GatewayStatus::default)
}
