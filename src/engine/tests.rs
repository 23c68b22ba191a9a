//! The lifecycle, step by step, without I/O.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::api::{BatchInput, BatchSpec, Conditions, Endpoint, KeyRef, LocalObjectRef, condition_types as ct, reasons};

fn spec() -> BatchSpec {
    BatchSpec {
        gateway_ref: LocalObjectRef { name: "gw".into() },
        endpoint: Endpoint::ChatCompletions,
        completion_window: "24h".into(),
        input: BatchInput {
            config_map: Some(KeyRef {
                name: "tickets".into(),
                key: "batch.jsonl".into(),
            }),
            ..Default::default()
        },
        output: None,
        metadata: [("team".to_string(), "support".to_string())].into(),
        cancel: false,
        deletion_policy: Default::default(),
        ttl_seconds_after_finished: None,
        notify: None,
    }
}

fn ctx_at(secs: i64) -> Context {
    Context {
        uid: "uid-1".into(),
        object: "default/tickets".into(),
        generation: Some(1),
        polling: PollingPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            stalled: crate::engine::StalledPolicy::DEFAULT,
        },
        now: Timestamp::from_second(1_700_000_000 + secs).unwrap(),
        prices: None,
    }
}

fn upstream(state: UpstreamState) -> Upstream {
    let terminal_with_files = matches!(
        state,
        UpstreamState::Completed | UpstreamState::Expired | UpstreamState::Cancelled
    );
    Upstream {
        id: "batch-xyz".into(),
        state,
        output_file_id: terminal_with_files.then(|| "file-out".to_string()),
        error_file_id: None,
        counts: Some((20, 12, 1)),
        errors: vec![],
        token_limited: false,
    }
}

/// A new Batch whose mode was resolved to Batch.
fn in_batch_mode() -> BatchStatus {
    BatchStatus {
        mode: Some(BatchMode::Batch),
        ..Default::default()
    }
}

/// Runs the happy path up to a submitted batch.
fn submitted() -> BatchStatus {
    let ctx = ctx_at(0);
    let spec = spec();
    let mut status = BatchStatus::default();
    assert_eq!(decide(&spec, &status, &ctx), Action::ResolveMode);
    status = reduce(&status, Outcome::ModeResolved { mode: BatchMode::Batch }, &ctx);
    assert_eq!(decide(&spec, &status, &ctx), Action::ValidateInput);
    status = reduce(
        &status,
        Outcome::InputValidated {
            estimates: Vec::new(),
            requests: 20,
            bytes: 4000,
            estimated_tokens: 1000,
            digest: None,
            ids: None,
        },
        &ctx,
    );
    assert_eq!(decide(&spec, &status, &ctx), Action::Admit);
    status = reduce(&status, Outcome::Admitted, &ctx);
    assert_eq!(decide(&spec, &status, &ctx), Action::StartAttempt);
    status = reduce(&status, Outcome::AttemptStarted { token: "a1b2".into() }, &ctx);
    assert_eq!(status.phase, Some(BatchPhase::Uploading));
    assert_eq!(
        decide(&spec, &status, &ctx),
        Action::UploadInput {
            filename: "llmbatch-default_tickets-uid-1-a1b2.jsonl".into()
        }
    );
    status = reduce(
        &status,
        Outcome::InputUploaded {
            file_id: "file-in".into(),
            adopted: false,
            ids: None,
        },
        &ctx,
    );
    let Action::CreateBatch(request) = decide(&spec, &status, &ctx) else {
        panic!("expected CreateBatch")
    };
    assert_eq!(request.input_file_id, "file-in");
    assert_eq!(request.attempt, "a1b2");
    assert_eq!(request.metadata[ATTEMPT_KEY], "a1b2");
    assert_eq!(request.metadata[UID_KEY], "uid-1");
    assert_eq!(request.metadata["team"], "support");
    reduce(
        &status,
        Outcome::BatchSubmitted {
            batch: upstream(UpstreamState::Validating),
            adopted: false,
        },
        &ctx,
    )
}

#[test]
fn happy_path_reaches_succeeded_with_counts_and_usage() {
    let spec = spec();
    let mut status = submitted();
    assert_eq!(status.phase, Some(BatchPhase::Validating));
    assert!(status.conditions.is_true(ct::SUBMITTED));
    assert!(matches!(decide(&spec, &status, &ctx_at(0)), Action::Poll { .. }));

    status = reduce(
        &status,
        Outcome::Observed(upstream(UpstreamState::InProgress)),
        &ctx_at(5),
    );
    assert_eq!(status.phase, Some(BatchPhase::InProgress));
    status = reduce(
        &status,
        Outcome::Observed(upstream(UpstreamState::Finalizing)),
        &ctx_at(9),
    );
    assert_eq!(status.phase, Some(BatchPhase::Finalizing));
    status = reduce(
        &status,
        Outcome::Observed(upstream(UpstreamState::Completed)),
        &ctx_at(12),
    );
    assert_eq!(status.phase, Some(BatchPhase::Downloading));
    assert_eq!(
        decide(&spec, &status, &ctx_at(12)),
        Action::Download {
            output_file_id: Some("file-out".into()),
            error_file_id: None
        }
    );
    let downloaded = Downloaded {
        location: "out/default/tickets".into(),
        output_lines: 19,
        output_bytes: 9000,
        error_lines: 1,
        error_bytes: 300,
        not_run: 0,
        usage: crate::api::Usage {
            prompt_tokens: 100,
            completion_tokens: 50,
            total_tokens: 150,
            ..Default::default()
        },
        not_stored: None,
        results: None,
    };
    status = reduce(&status, Outcome::Downloaded(downloaded), &ctx_at(13));
    assert_eq!(status.phase, Some(BatchPhase::Succeeded));
    assert!(status.conditions.is_true(ct::COMPLETE));
    assert!(!status.conditions.is_true(ct::FAILED));
    assert!(status.conditions.is_true(ct::OUTPUT_STORED));
    assert_eq!(status.usage.as_ref().unwrap().total_tokens, 150);
    assert_eq!(status.output.as_ref().unwrap().lines, 19);
    assert_eq!(status.request_counts.as_ref().unwrap().total, 20);
    assert!(status.completion_time.is_some());
    assert_eq!(decide(&spec, &status, &ctx_at(14)), Action::Finished);
}

fn priced_at(secs: i64, prices: crate::pricing::Prices) -> Context {
    Context {
        prices: Some(std::sync::Arc::new(prices)),
        ..ctx_at(secs)
    }
}

fn downloaded_with(models: &[(&str, u64, u64)]) -> Downloaded {
    let mut usage = crate::api::Usage::default();
    for (model, input, output) in models {
        let tokens = crate::pricing::LineTokens {
            input: *input,
            output: *output,
            ..Default::default()
        };
        crate::pricing::add_line(&mut usage, Some(model), &tokens);
    }
    Downloaded {
        output_lines: models.len() as u64,
        usage,
        ..Default::default()
    }
}

fn prices(models: &[(&str, &str)]) -> crate::pricing::Prices {
    let pricing = crate::api::Pricing {
        models: models
            .iter()
            .map(|(model, price)| crate::api::ModelPrice {
                model: model.to_string(),
                input_per_million: price.to_string(),
                cached_input_per_million: None,
                output_per_million: price.to_string(),
            })
            .collect(),
        ..Default::default()
    };
    crate::pricing::Prices::new(&pricing, crate::pricing::PriceListLookup::NotReferenced).unwrap()
}

#[test]
fn a_validated_input_is_estimated_and_its_results_keep_the_estimate_beside_the_actual_cost() {
    let estimate = |model: &str, input, output, uncapped| crate::api::ModelEstimate {
        model: model.to_string(),
        requests: 2,
        input_tokens: input,
        output_tokens: output,
        without_output_ceiling: uncapped,
        counted_by: "o200k_base".to_string(),
    };
    let mut pricing = prices(&[("gpt-4o-mini", "1")]);
    pricing.default_max_output = Some(500_000);
    let validated = Outcome::InputValidated {
        estimates: vec![
            estimate("gpt-4o-mini", 1_000_000, 500_000, 1),
            estimate("claude", 10, 10, 0),
        ],
        requests: 4,
        bytes: 400,
        estimated_tokens: 1_500_020,
        digest: None,
        ids: None,
    };
    let status = reduce(&BatchStatus::default(), validated, &priced_at(1, pricing.clone()));
    let cost = status.cost.clone().unwrap();
    // (1M input + 0.5M ceilings + 1 uncapped × 0.5M) × 1 per million, half in batch mode.
    assert_eq!(cost.estimated.as_deref(), Some("1"));
    assert_eq!(
        (cost.actual.as_str(), cost.display.as_str()),
        ("", "~1.0000 USD + unpriced")
    );
    assert_eq!(cost.unpriced, ["claude"]);

    let downloaded = downloaded_with(&[("gpt-4o-mini", 1_000_000, 200_000)]);
    let done = reduce(&status, Outcome::Downloaded(downloaded), &priced_at(2, pricing));
    let cost = done.cost.unwrap();
    assert_eq!((cost.estimated.as_deref(), cost.actual.as_str()), (Some("1"), "0.6"));
    assert_eq!(cost.display, "0.6000 USD");
}

#[test]
fn results_are_priced_with_the_discount_in_batch_mode_and_at_list_price_in_direct_mode() {
    let completed = reduce(
        &submitted(),
        Outcome::Observed(upstream(UpstreamState::Completed)),
        &ctx_at(30),
    );
    let downloaded = downloaded_with(&[("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000)]);
    let status = reduce(
        &completed,
        Outcome::Downloaded(downloaded.clone()),
        &priced_at(31, prices(&[("gpt-4o-mini", "1")])),
    );
    let cost = status.cost.as_ref().unwrap();
    assert_eq!((cost.actual.as_str(), cost.display.as_str()), ("1", "1.0000 USD"));
    let priced = status.conditions.condition(ct::PRICED).unwrap();
    assert_eq!(
        (priced.status.as_str(), priced.reason.as_str()),
        ("True", reasons::PRICED)
    );
    assert_eq!(priced.message, "1.0000 USD in Batch mode");

    let direct = crate::api::BatchStatus {
        mode: Some(crate::api::BatchMode::Direct),
        ..completed.clone()
    };
    let status = reduce(
        &direct,
        Outcome::Downloaded(downloaded.clone()),
        &priced_at(31, prices(&[("gpt-4o-mini", "1")])),
    );
    assert_eq!(status.cost.unwrap().actual, "2", "direct mode pays the list price");

    // Without spec.pricing: no cost and no condition, never a silent zero.
    let status = reduce(&completed, Outcome::Downloaded(downloaded), &ctx_at(31));
    assert!(status.cost.is_none() && status.conditions.condition(ct::PRICED).is_none());
}

#[test]
fn unpriced_models_make_priced_false_naming_them() {
    let completed = reduce(
        &submitted(),
        Outcome::Observed(upstream(UpstreamState::Completed)),
        &ctx_at(30),
    );
    let downloaded = downloaded_with(&[("gpt-4o-mini", 1_000_000, 0), ("llama-3", 10, 10)]);
    let status = reduce(
        &completed,
        Outcome::Downloaded(downloaded.clone()),
        &priced_at(31, prices(&[("gpt-4o-mini", "1")])),
    );
    let cost = status.cost.as_ref().unwrap();
    assert_eq!(
        (cost.actual.as_str(), cost.unpriced.as_slice()),
        ("0.5", &["llama-3".to_string()][..])
    );
    let priced = status.conditions.condition(ct::PRICED).unwrap();
    assert_eq!(
        (priced.status.as_str(), priced.reason.as_str()),
        ("False", reasons::UNPRICED_MODELS)
    );
    assert!(
        priced.message.starts_with("no price for llama-3:"),
        "{}",
        priced.message
    );

    let missing = crate::pricing::Prices::unavailable("USD", "PriceList openai not found");
    let status = reduce(&completed, Outcome::Downloaded(downloaded), &priced_at(31, missing));
    let priced = status.conditions.condition(ct::PRICED).unwrap();
    assert_eq!(priced.reason, reasons::PRICES_UNAVAILABLE);
    assert!(
        priced
            .message
            .contains("gpt-4o-mini, llama-3 (PriceList openai not found)"),
        "{}",
        priced.message
    );
    assert_eq!(status.cost.unwrap().display, "0.0000 USD + unpriced");
}

#[test]
fn results_too_large_for_the_sink_are_said_to_stay_on_the_gateway() {
    let mut status = reduce(
        &submitted(),
        Outcome::Observed(upstream(UpstreamState::Completed)),
        &ctx_at(30),
    );
    let downloaded = Downloaded {
        output_lines: 20,
        not_stored: Some("3 MB do not fit Secret r".into()),
        ..Default::default()
    };
    status = reduce(&status, Outcome::Downloaded(downloaded), &ctx_at(31));
    assert_eq!(status.phase, Some(BatchPhase::Succeeded));
    let stored = status.conditions.condition(ct::OUTPUT_STORED).unwrap();
    assert_eq!(
        (stored.status.as_str(), stored.reason.as_str()),
        ("False", reasons::OUTPUT_TOO_LARGE)
    );
    assert!(stored.message.contains("do not fit"), "{}", stored.message);
}

#[test]
fn an_output_secret_not_owned_keeps_the_batch_downloading_until_it_can_be_written() {
    let spec = spec();
    let mut status = reduce(
        &submitted(),
        Outcome::Observed(upstream(UpstreamState::Completed)),
        &ctx_at(30),
    );
    let message = "Secret api-key belongs to ConfigMap keys (its controller), not to this Batch".to_string();
    status = reduce(&status, Outcome::OutputNotOwned { message }, &ctx_at(31));
    assert_eq!(status.phase, Some(BatchPhase::Downloading));
    assert!(!status.conditions.is_true(ct::COMPLETE) && !status.conditions.is_true(ct::FAILED));
    let refused = status.conditions.condition(ct::OUTPUT_STORED).unwrap();
    assert_eq!(
        (refused.status.as_str(), refused.reason.as_str()),
        ("False", reasons::SECRET_NOT_OWNED)
    );
    assert!(refused.message.contains("ConfigMap keys"), "{}", refused.message);
    assert!(matches!(decide(&spec, &status, &ctx_at(32)), Action::Download { .. }));

    // Renamed (or the Secret deleted): the next download stores the results and finishes.
    let downloaded = Downloaded {
        location: "Secret renamed".into(),
        output_lines: 20,
        ..Default::default()
    };
    status = reduce(&status, Outcome::Downloaded(downloaded), &ctx_at(40));
    assert_eq!(status.phase, Some(BatchPhase::Succeeded));
    let output = status.output.as_ref().unwrap();
    assert_eq!(
        (output.secret_name.as_deref(), output.path.as_deref()),
        (Some("renamed"), None)
    );
    let stored = status.conditions.condition(ct::OUTPUT_STORED).unwrap();
    assert_eq!(
        (stored.status.as_str(), stored.reason.as_str()),
        ("True", reasons::STORED)
    );
}

#[test]
fn every_upstream_state_maps_to_a_phase() {
    let cases = [
        (UpstreamState::Validating, BatchPhase::Validating),
        (UpstreamState::InProgress, BatchPhase::InProgress),
        (UpstreamState::Finalizing, BatchPhase::Finalizing),
        (UpstreamState::Cancelling, BatchPhase::InProgress),
        (UpstreamState::Other("queued".into()), BatchPhase::InProgress),
        (UpstreamState::Completed, BatchPhase::Downloading),
        (UpstreamState::Expired, BatchPhase::Downloading),
        (UpstreamState::Cancelled, BatchPhase::Downloading),
        (UpstreamState::Failed, BatchPhase::Failed),
    ];
    for (state, phase) in cases {
        let status = reduce(&submitted(), Outcome::Observed(upstream(state.clone())), &ctx_at(30));
        assert_eq!(status.phase, Some(phase), "upstream {state:?}");
        assert_eq!(status.gateway.unwrap().status.as_deref(), Some(state.as_wire()));
    }
}

#[test]
fn expired_batch_keeps_completed_lines_and_counts_those_never_run() {
    let mut status = reduce(
        &submitted(),
        Outcome::Observed(upstream(UpstreamState::Expired)),
        &ctx_at(30),
    );
    let downloaded = Downloaded {
        output_lines: 12,
        error_lines: 8,
        not_run: 7,
        ..Default::default()
    };
    status = reduce(&status, Outcome::Downloaded(downloaded), &ctx_at(31));
    assert_eq!(status.phase, Some(BatchPhase::Expired));
    assert_eq!(status.request_counts.as_ref().unwrap().not_run, Some(7));
    let failed = status.conditions.condition(ct::FAILED).unwrap();
    assert_eq!(failed.reason, reasons::EXPIRED);
    let counts = status.request_counts.as_ref().unwrap();
    let said = format!("12 of {} requests completed, 1 failed, 7 never ran", counts.total);
    assert!(failed.message.contains(&said), "counts that add up: {}", failed.message);
    assert_eq!(counts.total, 20);
}

#[test]
fn terminal_state_without_files_finishes_directly() {
    let mut batch = upstream(UpstreamState::Cancelled);
    batch.output_file_id = None;
    let status = reduce(&submitted(), Outcome::Observed(batch), &ctx_at(30));
    assert_eq!(status.phase, Some(BatchPhase::Cancelled));
    assert_eq!(decide(&spec(), &status, &ctx_at(31)), Action::Finished);
}

#[test]
fn upstream_validation_failure_fails_with_the_gateway_errors() {
    let mut batch = upstream(UpstreamState::Failed);
    batch.errors = vec!["line 3: Missing required parameter: 'url'. (url)".into()];
    let status = reduce(&submitted(), Outcome::Observed(batch), &ctx_at(30));
    assert_eq!(status.phase, Some(BatchPhase::Failed));
    let failed = status.conditions.condition(ct::FAILED).unwrap();
    assert!(failed.message.contains("line 3"), "{}", failed.message);
    assert!(!status.conditions.is_true(ct::ADMITTED));
}

#[test]
fn invalid_input_fails_before_anything_is_sent() {
    let status = reduce(
        &BatchStatus::default(),
        Outcome::InputInvalid {
            message: "line 2: not valid JSON (line)".into(),
        },
        &ctx_at(0),
    );
    assert_eq!(status.phase, Some(BatchPhase::Failed));
    assert_eq!(
        status.conditions.condition(ct::ADMITTED).unwrap().reason,
        reasons::INPUT_INVALID
    );
    assert!(status.attempt.is_none());
    assert_eq!(decide(&spec(), &status, &ctx_at(1)), Action::Finished);
}

#[test]
fn missing_input_waits_and_is_retried() {
    let resolved = reduce(
        &BatchStatus::default(),
        Outcome::ModeResolved { mode: BatchMode::Batch },
        &ctx_at(0),
    );
    let status = reduce(
        &resolved,
        Outcome::InputNotFound {
            message: "ConfigMap default/tickets not found".into(),
        },
        &ctx_at(0),
    );
    assert_eq!(status.phase, Some(BatchPhase::Pending));
    assert_eq!(decide(&spec(), &status, &ctx_at(1)), Action::ValidateInput);
}

#[test]
fn transient_and_unauthorized_errors_keep_the_step_for_a_retry() {
    for (class, reason) in [
        (ErrorClass::Transient, reasons::GATEWAY_UNAVAILABLE),
        (ErrorClass::Unauthorized, reasons::GATEWAY_UNAUTHORIZED),
    ] {
        let before = submitted();
        let status = reduce(
            &before,
            Outcome::GatewayError {
                class,
                message: "boom".into(),
            },
            &ctx_at(30),
        );
        assert_eq!(status.phase, before.phase);
        assert_eq!(
            decide(&spec(), &status, &ctx_at(30)),
            decide(&spec(), &before, &ctx_at(30))
        );
        let ready = status.conditions.condition(ct::GATEWAY_READY).unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", reason));
        // The next success flips it back.
        let healed = reduce(
            &status,
            Outcome::Observed(upstream(UpstreamState::InProgress)),
            &ctx_at(40),
        );
        assert!(healed.conditions.is_true(ct::GATEWAY_READY));
    }
}

#[test]
fn output_errors_keep_downloading_and_say_why() {
    let downloading = reduce(
        &submitted(),
        Outcome::Observed(upstream(UpstreamState::Completed)),
        &ctx_at(30),
    );
    let status = reduce(
        &downloading,
        Outcome::GatewayError {
            class: ErrorClass::Output,
            message: "cannot write out/output.jsonl: disk full".into(),
        },
        &ctx_at(31),
    );
    assert_eq!(status.phase, Some(BatchPhase::Downloading));
    assert!(matches!(decide(&spec(), &status, &ctx_at(32)), Action::Download { .. }));
    let complete = status.conditions.condition(ct::COMPLETE).unwrap();
    assert_eq!(
        (complete.status.as_str(), complete.reason.as_str()),
        ("False", reasons::OUTPUT_UNAVAILABLE)
    );
}

#[test]
fn rejected_and_not_found_errors_fail_the_batch() {
    for (class, reason) in [
        (ErrorClass::Rejected, reasons::REJECTED_BY_GATEWAY),
        (ErrorClass::NotFound, reasons::BATCH_NOT_FOUND),
    ] {
        let status = reduce(
            &submitted(),
            Outcome::GatewayError {
                class,
                message: "no".into(),
            },
            &ctx_at(30),
        );
        assert_eq!(status.phase, Some(BatchPhase::Failed));
        assert_eq!(status.conditions.condition(ct::FAILED).unwrap().reason, reason);
    }
}

#[test]
fn cancel_before_submit_sends_nothing() {
    let mut spec = spec();
    spec.cancel = true;
    assert_eq!(
        decide(&spec, &BatchStatus::default(), &ctx_at(0)),
        Action::CancelBeforeSubmit
    );
    let status = reduce(&BatchStatus::default(), Outcome::CancelledBeforeSubmit, &ctx_at(0));
    assert_eq!(status.phase, Some(BatchPhase::Cancelled));
}

#[test]
fn the_mode_is_settled_first_and_decides_the_rules() {
    let mut spec = spec();
    spec.input = BatchInput {
        file_id: Some("file-abc".into()),
        ..Default::default()
    };
    assert_eq!(decide(&spec, &BatchStatus::default(), &ctx_at(0)), Action::ResolveMode);
    assert!(check_spec(&spec, Some(BatchMode::Batch)).is_empty());
    let direct = check_spec(&spec, Some(BatchMode::Direct)).join("\n");
    assert!(
        direct.contains("spec.input.fileId needs the gateway's Files API"),
        "{direct}"
    );
    // A Batch already on the gateway (before modes were recorded) is not asked again.
    let on_gateway = BatchStatus {
        gateway: Some(Default::default()),
        ..Default::default()
    };
    assert_ne!(decide(&spec, &on_gateway, &ctx_at(0)), Action::ResolveMode);

    let gateway = crate::api::GatewayLimits {
        max_requests_per_batch: Some(10),
        ..Default::default()
    };
    assert_eq!(input_limits(Some(BatchMode::Batch), &gateway).unwrap().max_requests, 10);
    assert_eq!(input_limits(None, &gateway).unwrap().max_requests, 10);
    assert_eq!(
        input_limits(Some(BatchMode::Direct), &gateway).unwrap().max_requests,
        u64::MAX
    );
}

#[test]
fn cancel_of_a_running_batch_is_requested_once() {
    let mut spec = spec();
    spec.cancel = true;
    let status = reduce(
        &submitted(),
        Outcome::Observed(upstream(UpstreamState::InProgress)),
        &ctx_at(5),
    );
    assert_eq!(
        decide(&spec, &status, &ctx_at(5)),
        Action::Cancel {
            batch_id: "batch-xyz".into()
        }
    );
    let status = reduce(
        &status,
        Outcome::Observed(upstream(UpstreamState::Cancelling)),
        &ctx_at(6),
    );
    assert!(matches!(decide(&spec, &status, &ctx_at(6)), Action::Poll { .. }));
}

#[test]
fn adopted_batch_is_reported_as_adopted() {
    let ctx = ctx_at(0);
    let mut status = reduce(
        &BatchStatus::default(),
        Outcome::InputValidated {
            estimates: Vec::new(),
            requests: 1,
            bytes: 10,
            estimated_tokens: 3,
            digest: None,
            ids: None,
        },
        &ctx,
    );
    status = reduce(&status, Outcome::AttemptStarted { token: "t".into() }, &ctx);
    status = reduce(
        &status,
        Outcome::InputUploaded {
            file_id: "f".into(),
            adopted: true,
            ids: None,
        },
        &ctx,
    );
    status = reduce(
        &status,
        Outcome::BatchSubmitted {
            batch: upstream(UpstreamState::InProgress),
            adopted: true,
        },
        &ctx,
    );
    assert_eq!(
        status.conditions.condition(ct::SUBMITTED).unwrap().reason,
        reasons::BATCH_ADOPTED
    );
}

#[test]
fn a_state_nobody_documented_is_kept_and_polled_at_the_slowest_rate() {
    let status = reduce(
        &submitted(),
        Outcome::Observed(upstream(UpstreamState::Other("queued_for_review".into()))),
        &ctx_at(1),
    );
    assert_eq!(
        status.gateway.as_ref().unwrap().status.as_deref(),
        Some("queued_for_review")
    );
    let Action::Poll { after, .. } = decide(&spec(), &status, &ctx_at(2)) else {
        panic!("an unknown state is polled");
    };
    assert_eq!(after, Duration::from_secs(300));
}

#[test]
fn polling_starts_soon_and_backs_off_to_the_max() {
    let policy = PollingPolicy {
        initial: Duration::from_secs(10),
        max: Duration::from_secs(300),
        stalled: crate::engine::StalledPolicy::DEFAULT,
    };
    assert_eq!(policy.delay(Duration::ZERO), Duration::from_secs(10));
    assert_eq!(policy.delay(Duration::from_secs(600)), Duration::from_secs(60));
    assert_eq!(policy.delay(Duration::from_secs(86_400)), Duration::from_secs(300));
    let status = submitted();
    let Action::Poll { after, .. } = decide(&spec(), &status, &ctx_at(1200)) else {
        panic!()
    };
    assert_eq!(after, Duration::from_secs(120));
}

#[test]
fn metadata_beyond_the_limits_is_named() {
    let mut spec = spec();
    spec.metadata = (0..14).map(|i| (format!("k{i}"), "v".to_string())).collect();
    spec.metadata.insert("llmbatch.io/attempt".into(), "x".into());
    spec.metadata.insert("long".into(), "v".repeat(513));
    let problems = check_spec(&spec, None).join("\n");
    assert!(problems.contains("spec.metadata: 16 pairs"), "{problems}");
    assert!(problems.contains("reserved"), "{problems}");
    assert!(problems.contains("spec.metadata.long"), "{problems}");
    assert!(batch_metadata(&spec, &ctx_at(0), "t").is_err());
}

#[test]
fn operator_metadata_stays_within_openai_limits() {
    let mut spec = spec();
    spec.metadata = (0..13).map(|i| (format!("{i:0>64}"), "v".repeat(512))).collect();
    let mut ctx = ctx_at(0);
    ctx.object = format!("{}/{}", "n".repeat(63), "x".repeat(600));
    let metadata = batch_metadata(&spec, &ctx, "token").unwrap();
    assert_eq!(metadata.len(), 16);
    assert!(
        metadata
            .iter()
            .all(|(k, v)| k.chars().count() <= 64 && v.chars().count() <= 512)
    );
}

#[test]
fn a_status_that_survives_a_yaml_round_trip_decides_the_same() {
    let status = reduce(
        &submitted(),
        Outcome::Observed(upstream(UpstreamState::InProgress)),
        &ctx_at(5),
    );
    let yaml = serde_yaml::to_string(&status).unwrap();
    let back: BatchStatus = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(back, status);
    assert_eq!(decide(&spec(), &back, &ctx_at(6)), decide(&spec(), &status, &ctx_at(6)));
}

#[test]
fn an_input_file_already_on_the_gateway_goes_straight_to_create() {
    let mut spec = spec();
    spec.input = BatchInput {
        file_id: Some("file-theirs".into()),
        ..Default::default()
    };
    let ctx = ctx_at(0);
    let mut status = reduce(
        &BatchStatus::default(),
        Outcome::InputOnGateway {
            file_id: "file-theirs".into(),
            bytes: Some(99),
        },
        &ctx,
    );
    assert_eq!(
        status.conditions.condition(ct::ADMITTED).unwrap().reason,
        reasons::INPUT_ON_GATEWAY
    );
    assert_eq!(decide(&spec, &status, &ctx), Action::Admit);
    status = reduce(&status, Outcome::Admitted, &ctx);
    assert_eq!(decide(&spec, &status, &ctx), Action::StartAttempt);
    status = reduce(&status, Outcome::AttemptStarted { token: "t".into() }, &ctx);
    let Action::CreateBatch(request) = decide(&spec, &status, &ctx) else {
        panic!("expected CreateBatch")
    };
    assert_eq!(request.input_file_id, "file-theirs");
}

#[test]
fn a_batch_refused_for_the_enqueued_token_limit_queues_again_and_reuses_its_upload() {
    let spec = spec();
    let mut status = submitted();
    let refused = Upstream {
        state: UpstreamState::Failed,
        output_file_id: None,
        errors: vec!["Enqueued token limit reached for gpt-4o".into()],
        token_limited: true,
        ..upstream(UpstreamState::Failed)
    };
    status = reduce(&status, Outcome::Observed(refused), &ctx_at(10));
    assert_eq!(status.phase, Some(BatchPhase::Pending), "not Failed: back in the queue");
    assert!(status.attempt.is_none() && status.gateway.as_ref().unwrap().batch_id.is_none());
    assert_eq!(
        status.gateway.as_ref().unwrap().input_file_id.as_deref(),
        Some("file-in")
    );
    let admission = status.admission.clone().unwrap();
    assert_eq!(admission.requeues, 1);
    assert!(admission.admitted_time.is_none());
    assert_eq!(
        admission.not_before.unwrap().0,
        ctx_at(25).now,
        "15 s after the refusal"
    );
    let admitted = status.conditions.condition(ct::ADMITTED).unwrap();
    assert_eq!(
        (admitted.status.as_str(), admitted.reason.as_str()),
        ("False", reasons::GATEWAY_BUDGET)
    );
    assert!(
        admitted.message.contains("Enqueued token limit"),
        "{}",
        admitted.message
    );

    assert_eq!(decide(&spec, &status, &ctx_at(11)), Action::Admit);
    status = reduce(&status, Outcome::Admitted, &ctx_at(30));
    assert_eq!(
        status.conditions.condition(ct::ADMITTED).unwrap().reason,
        reasons::ADMITTED
    );
    assert_eq!(decide(&spec, &status, &ctx_at(30)), Action::StartAttempt);
    status = reduce(&status, Outcome::AttemptStarted { token: "c3d4".into() }, &ctx_at(30));
    let Action::CreateBatch(request) = decide(&spec, &status, &ctx_at(30)) else {
        panic!("expected CreateBatch with the uploaded input")
    };
    assert_eq!(
        (request.input_file_id.as_str(), request.attempt.as_str()),
        ("file-in", "c3d4")
    );
}

#[test]
fn waiting_for_budget_keeps_the_batch_pending_and_says_why() {
    let mut status = reduce(
        &in_batch_mode(),
        Outcome::InputValidated {
            estimates: Vec::new(),
            requests: 1,
            bytes: 10,
            estimated_tokens: 3,
            digest: None,
            ids: None,
        },
        &ctx_at(0),
    );
    let message = "waiting for room on BatchGateway gw: 2 of 2 batches active".to_string();
    status = reduce(
        &status,
        Outcome::AwaitingBudget {
            message: message.clone(),
        },
        &ctx_at(1),
    );
    assert_eq!(status.phase, Some(BatchPhase::Pending));
    let admitted = status.conditions.condition(ct::ADMITTED).unwrap();
    assert_eq!(
        (admitted.reason.as_str(), admitted.message.as_str()),
        (reasons::GATEWAY_BUDGET, message.as_str())
    );
    assert_eq!(decide(&spec(), &status, &ctx_at(2)), Action::Admit);
    assert_eq!(status.input.unwrap().estimated_tokens, Some(3));
}

#[test]
fn an_attempt_token_says_when_the_attempt_started_and_its_upload_name_too() {
    let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let token = attempt_token_at(at, 0x1f3e_9a0c);
    assert_eq!(token, "1f3e9a0c-t1767225600");
    assert_eq!(attempt_started(&token), Some(1_767_225_600));
    for object in ["default/b", "team-t1/my-t2-batch", "ns/deadbeef"] {
        let filename = upload_filename(object, "5e1f-uid", &token);
        assert_eq!(upload_attempt_started(&filename), Some(1_767_225_600), "{filename}");
    }
    // Tokens from before they carried a time (8 hex digits), and their uploads: no start known.
    assert_eq!(attempt_started("1f3e9a0c"), None);
    for object in ["default/b", "ns/x-deadbeef", "ns/a-t17"] {
        let filename = upload_filename(object, "5e1f-uid", "1f3e9a0c");
        assert_eq!(upload_attempt_started(&filename), None, "{filename}");
    }
    assert_eq!(attempt_started("zzzzzzzz-t1"), None);
    assert_eq!(attempt_started("1f3e9a0c-t"), None);
}

#[test]
fn the_attempts_start_is_in_status_before_anything_is_uploaded() {
    let ctx = ctx_at(0);
    let spec = spec();
    let validated = Outcome::InputValidated {
        estimates: Vec::new(),
        requests: 1,
        bytes: 10,
        estimated_tokens: 3,
        digest: None,
        ids: None,
    };
    let mut status = reduce(&in_batch_mode(), validated, &ctx);
    status = reduce(&status, Outcome::Admitted, &ctx);
    let token = attempt_token_at(ctx.now, 7);
    status = reduce(&status, Outcome::AttemptStarted { token }, &ctx);
    // What a driver persists after this step already says when the attempt started, and the
    // upload and the create that follow carry it to the adoption search.
    let started = Some(ctx.now.as_second());
    assert_eq!(status.attempt.as_deref().and_then(attempt_started), started);
    let Action::UploadInput { filename } = decide(&spec, &status, &ctx) else {
        panic!("expected UploadInput")
    };
    assert_eq!(upload_attempt_started(&filename), started);
    let uploaded = Outcome::InputUploaded {
        file_id: "file-in".into(),
        adopted: false,
        ids: None,
    };
    status = reduce(&status, uploaded, &ctx);
    let Action::CreateBatch(request) = decide(&spec, &status, &ctx) else {
        panic!("expected CreateBatch")
    };
    assert_eq!(attempt_started(&request.attempt), started);
}

/// A batch of 20 requests whose ids' digest is known, ended upstream in `state` with files.
fn downloading_with_ids(state: UpstreamState) -> BatchStatus {
    let mut status = submitted();
    status.input.as_mut().unwrap().ids = Some(crate::api::InputIds {
        key: "00".repeat(16),
        sum: "0123456789abcdef".into(),
    });
    reduce(&status, Outcome::Observed(upstream(state)), &ctx_at(30))
}

/// The files held `check`.
fn downloaded(check: ResultCheck) -> Outcome {
    downloaded_not_run(check, 0)
}

/// The files held `check`, `not_run` of its error lines for requests that never ran.
fn downloaded_not_run(check: ResultCheck, not_run: u64) -> Outcome {
    Outcome::Downloaded(Downloaded {
        location: "out/default/tickets".into(),
        output_lines: check.completed + check.duplicate_lines,
        error_lines: check.failed,
        not_run,
        results: Some(check),
        ..Default::default()
    })
}

fn verified(status: &BatchStatus) -> (String, String) {
    let c = status.conditions.condition(ct::RESULTS_VERIFIED).unwrap();
    (c.status.clone(), c.reason.clone())
}

#[test]
fn results_matching_the_input_succeed_with_the_counts_the_files_prove() {
    let status = downloading_with_ids(UpstreamState::Completed);
    let check = ResultCheck {
        completed: 18,
        failed: 2,
        ids_match: Some(true),
        ..Default::default()
    };
    let status = reduce(&status, downloaded(check), &ctx_at(31));
    assert_eq!(status.phase, Some(BatchPhase::Succeeded));
    assert_eq!(verified(&status), ("True".into(), reasons::RESULTS_MATCH_INPUT.into()));
    let counts = status.request_counts.clone().unwrap();
    assert_eq!((counts.total, counts.completed, counts.failed), (20, 18, 2));
    // The gateway said 12 completed and 1 failed: its figures are kept beside.
    let theirs = status.gateway.unwrap().request_counts.unwrap();
    assert_eq!((theirs.total, theirs.completed, theirs.failed), (20, 12, 1));
}

#[test]
fn gateway_counts_that_agree_with_the_files_are_not_repeated() {
    let status = downloading_with_ids(UpstreamState::Completed);
    let check = ResultCheck {
        completed: 12,
        failed: 1,
        ids_match: Some(false),
        ..Default::default()
    };
    let status = reduce(&status, downloaded(check), &ctx_at(31));
    assert_eq!(status.gateway.unwrap().request_counts, None);
}

#[test]
fn duplicate_result_lines_fail_the_batch_and_count_once() {
    let status = downloading_with_ids(UpstreamState::Completed);
    let check = ResultCheck {
        completed: 20,
        duplicate_lines: 3,
        ids_match: Some(true),
        ..Default::default()
    };
    let status = reduce(&status, downloaded(check), &ctx_at(31));
    assert_eq!(status.phase, Some(BatchPhase::Failed));
    assert_eq!(verified(&status), ("False".into(), reasons::DUPLICATE_RESULTS.into()));
    let failed = status.conditions.condition(ct::FAILED).unwrap();
    assert_eq!(failed.reason, reasons::DUPLICATE_RESULTS);
    assert!(
        failed.message.contains("repeating an earlier line's custom_id: 3"),
        "{}",
        failed.message
    );
    assert!(failed.message.contains("out/default/tickets"), "{}", failed.message);
    assert_eq!(status.request_counts.unwrap().completed, 20);
    assert_eq!(status.output.unwrap().duplicate_lines, Some(3));
}

#[test]
fn ids_that_are_not_the_inputs_fail_the_batch() {
    // As many distinct ids as the input, but the digest differs; or more than the input.
    for (completed, failed) in [(20, 0), (19, 2)] {
        let status = downloading_with_ids(UpstreamState::Completed);
        let check = ResultCheck {
            completed,
            failed,
            ids_match: Some(false),
            ..Default::default()
        };
        let status = reduce(&status, downloaded(check), &ctx_at(31));
        assert_eq!(status.phase, Some(BatchPhase::Failed), "{completed}+{failed}");
        assert_eq!(verified(&status), ("False".into(), reasons::UNEXPECTED_RESULTS.into()));
    }
    // Lines without a readable id, even without a digest to compare with.
    let mut status = downloading_with_ids(UpstreamState::Completed);
    status.input.as_mut().unwrap().ids = None;
    let check = ResultCheck {
        completed: 20,
        unidentified_lines: 1,
        ..Default::default()
    };
    let status = reduce(&status, downloaded(check), &ctx_at(31));
    assert_eq!(verified(&status), ("False".into(), reasons::UNEXPECTED_RESULTS.into()));
    assert_eq!(status.output.unwrap().unidentified_lines, Some(1));
}

#[test]
fn missing_results_fail_a_completed_batch_but_never_ran_in_an_expired_one() {
    let check = ResultCheck {
        completed: 15,
        failed: 2,
        ids_match: Some(false),
        ..Default::default()
    };
    let completed = reduce(
        &downloading_with_ids(UpstreamState::Completed),
        downloaded_not_run(check.clone(), 2),
        &ctx_at(31),
    );
    assert_eq!(completed.phase, Some(BatchPhase::Failed));
    assert_eq!(verified(&completed), ("False".into(), reasons::MISSING_RESULTS.into()));
    for (state, phase) in [
        (UpstreamState::Expired, BatchPhase::Expired),
        (UpstreamState::Cancelled, BatchPhase::Cancelled),
    ] {
        let status = reduce(
            &downloading_with_ids(state),
            downloaded_not_run(check.clone(), 2),
            &ctx_at(31),
        );
        assert_eq!(status.phase, Some(phase));
        assert_eq!(verified(&status), ("True".into(), reasons::RESULTS_INCOMPLETE.into()));
        let counts = status.request_counts.unwrap();
        // 2 expired lines in the error file, 3 without any line: 5 never ran.
        assert_eq!(
            (counts.total, counts.completed, counts.failed, counts.not_run),
            (20, 15, 2, Some(5))
        );
    }
}

#[test]
fn without_the_inputs_ids_only_duplicates_and_counts_are_checked() {
    let mut status = downloading_with_ids(UpstreamState::Completed);
    let input = status.input.as_mut().unwrap();
    (input.ids, input.requests) = (None, 0); // spec.input.fileId
    let check = ResultCheck {
        completed: 7,
        failed: 1,
        ..Default::default()
    };
    let status = reduce(&status, downloaded(check), &ctx_at(31));
    assert_eq!(status.phase, Some(BatchPhase::Succeeded));
    assert_eq!(verified(&status), ("True".into(), reasons::NO_INPUT_IDS.into()));
    let counts = status.request_counts.unwrap();
    assert_eq!((counts.total, counts.completed, counts.failed), (8, 7, 1));
}

#[test]
fn completed_without_result_files_is_a_failure_naming_it() {
    let mut batch = upstream(UpstreamState::Completed);
    batch.output_file_id = None;
    let status = reduce(&submitted(), Outcome::Observed(batch), &ctx_at(30));
    assert_eq!(status.phase, Some(BatchPhase::Failed));
    let failed = status.conditions.condition(ct::FAILED).unwrap();
    assert_eq!(failed.reason, reasons::MISSING_RESULTS);
    assert_eq!(
        failed.message,
        "the gateway said completed but returned no result files"
    );
    assert_eq!(verified(&status), ("False".into(), reasons::MISSING_RESULTS.into()));
}

#[test]
fn the_upload_passs_id_digest_is_kept_when_validation_read_nothing() {
    let ids = |sum: &str| crate::api::InputIds {
        key: "00112233445566778899aabbccddeeff".into(),
        sum: sum.into(),
    };
    let mut status = BatchStatus {
        input: Some(crate::api::InputStatus::default()),
        ..Default::default()
    };
    let uploaded = |sum: &str| Outcome::InputUploaded {
        file_id: "file-in".into(),
        adopted: false,
        ids: Some(ids(sum)),
    };
    status = reduce(&status, uploaded("00000000000000aa"), &ctx_at(1));
    assert_eq!(status.input.as_ref().unwrap().ids, Some(ids("00000000000000aa")));
    // What validation recorded is never replaced.
    status = reduce(&status, uploaded("00000000000000bb"), &ctx_at(2));
    assert_eq!(status.input.unwrap().ids, Some(ids("00000000000000aa")));
}

#[test]
fn a_batch_stopped_at_its_first_step_is_pending_never_blank() {
    let refused = Outcome::GatewayError {
        class: ErrorClass::Unauthorized,
        message: "401 Incorrect API key".into(),
    };
    let status = reduce(&BatchStatus::default(), refused, &ctx_at(1));
    assert_eq!(status.phase, Some(BatchPhase::Pending));
}

#[test]
fn a_cancelled_batch_whose_results_were_not_checked_says_counts_that_add_up() {
    let mut batch = upstream(UpstreamState::Cancelled);
    batch.counts = Some((20, 10, 10));
    let cancelled = reduce(&submitted(), Outcome::Observed(batch), &ctx_at(30));
    // The gateway counts the 10 that never ran among its 10 failed.
    let downloaded = Downloaded {
        output_lines: 10,
        error_lines: 10,
        not_run: 10,
        ..Default::default()
    };
    let status = reduce(&cancelled, Outcome::Downloaded(downloaded), &ctx_at(31));
    let failed = status.conditions.condition(ct::FAILED).unwrap();
    assert!(
        failed
            .message
            .contains("10 of 20 requests completed, 0 failed, 10 never ran"),
        "{}",
        failed.message
    );
}
