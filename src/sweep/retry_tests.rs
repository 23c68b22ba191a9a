//! `spec.retry`: follow-up children, and the counts of a child's attempts merged.

use std::collections::BTreeMap;

use super::tests::{at, child, names, plan, spec};
use super::*;
use crate::api::{
    BatchOutput, BatchPhase, BatchSweepSpec, BatchSweepStatus, LocalObjectRef, RequestCounts, RetrySpec, SweepPhase,
};

fn with_retry(max_attempts: u32) -> BatchSweepSpec {
    let mut s = spec(&[], 2, 0);
    s.retry = Some(RetrySpec { max_attempts });
    s
}

/// A finished follow-up holding `lines` lines.
fn follow_up(phase: BatchPhase, completed: u64, failed: u64) -> ObservedChild {
    ObservedChild {
        lines: Some(completed + failed),
        ..child(phase, completed, failed)
    }
}

fn expired(completed: u64, not_run: u64) -> ObservedChild {
    let mut seen = child(BatchPhase::Expired, completed, not_run);
    seen.request_counts.as_mut().unwrap().not_run = Some(not_run);
    seen
}

#[test]
fn follow_up_names_are_deterministic_and_bounded() {
    assert_eq!(attempt_name("eval-a-c0001", 1), "eval-a-c0001");
    assert_eq!(attempt_name("eval-a-c0001", 2), "eval-a-c0001-r1");
    assert_eq!(attempt_name("eval-a-c0001", 3), "eval-a-c0001-r2");
    let long = child_name(&"s".repeat(60), None, 1);
    let retry = attempt_name(&long, 2);
    assert_eq!(retry.len(), 63);
    assert_eq!(retry, attempt_name(&long, 2));
    assert_ne!(retry, attempt_name(&long, 3));
    assert_ne!(retry, long);
}

#[test]
fn only_lines_worth_another_attempt_are_retried() {
    let http = |status: u16| {
        format!(
            r#"{{"id":"r","custom_id":"c/x","response":{{"status_code":{status},"body":{{"error":{{"message":"m","type":"t","param":null,"code":null}}}}}},"error":null}}"#
        )
    };
    let coded = |code: &str| {
        format!(r#"{{"id":"r","custom_id":"c/x","response":null,"error":{{"code":"{code}","message":"m"}}}}"#)
    };
    for retryable in [
        http(429),
        http(500),
        http(503),
        http(408),
        coded("batch_expired"),
        coded("timeout"),
    ] {
        assert_eq!(retryable_custom_id(&retryable).as_deref(), Some("c/x"), "{retryable}");
    }
    for not in [
        http(400),
        http(404),
        coded("batch_cancelled"),
        coded("invalid_request"),
        "not json".to_string(),
        r#"{"response":{"status_code":500}}"#.to_string(),
    ] {
        assert_eq!(retryable_custom_id(&not), None, "{not}");
    }
}

#[test]
fn a_follow_up_reads_the_retried_lines_from_the_gateway_and_writes_results_of_its_own() {
    let mut s = with_retry(3);
    s.template.output = Some(BatchOutput {
        secret: Some(LocalObjectRef { name: "results".into() }),
        ..Default::default()
    });
    let children = plan_children("corpus", &s, &plan(2));
    let retry = children[1].follow_up(2);
    assert_eq!(retry.name, "corpus-c0001-r1");
    assert_eq!(retry.retry_of.as_deref(), Some("corpus-c0001"));
    assert_eq!((retry.attempt, retry.chunk), (2, 1));
    assert_eq!(retry.custom_id_prefix, "c0001/", "results join on the same custom_ids");
    assert_eq!(children[1].follow_up(3).retry_of.as_deref(), Some("corpus-c0001-r1"));
    let batch = retry.follow_up_spec("corpus", &s, "file-retry");
    assert_eq!(batch.input.file_id.as_deref(), Some("file-retry"));
    assert_eq!(
        (batch.input.byte_range, batch.input.overrides),
        (None, None),
        "already sliced and rewritten"
    );
    assert_eq!(batch.output.unwrap().secret.unwrap().name, "results-c0001-r1");
    assert_eq!(batch.metadata["chunk"], "1");
    assert_eq!(retry_filename("batch_abc"), "llmbatch-retry-batch_abc.jsonl");
}

#[test]
fn a_finished_child_with_retryable_failures_gets_a_follow_up_before_new_children() {
    let s = with_retry(3);
    let children = plan_children("corpus", &s, &plan(4));
    let mut observed = BTreeMap::new();
    observed.insert("corpus-c0000".to_string(), expired(6, 4));
    observed.insert("corpus-c0001".to_string(), child(BatchPhase::InProgress, 0, 0));
    let decision = decide(
        &s,
        Some(1),
        &BatchSweepStatus::default(),
        &children,
        &observed,
        None,
        at(10),
    );
    assert_eq!(names(&decision.create), ["corpus-c0000-r1"]);
    assert_eq!(decision.create[0].retry_of.as_deref(), Some("corpus-c0000"));
    let counts = decision.status.batches.clone().unwrap();
    assert_eq!(
        (counts.failed, counts.running, counts.waiting),
        (0, 2, 2),
        "an expiry being retried is no failure"
    );
    assert_eq!(decision.status.phase, Some(SweepPhase::Running));
    let listed = &decision.status.children[0];
    assert_eq!((listed.name.as_str(), listed.attempts), ("corpus-c0000", Some(2)));
}

#[test]
fn the_counts_of_all_attempts_merge_and_final_errors_are_lines_that_never_succeeded() {
    let s = with_retry(3);
    let children = plan_children("corpus", &s, &plan(1));
    let mut observed = BTreeMap::new();
    // 10 lines: 6 done, 4 expired; then 3 of 4 done, 1 failed with a 500; then that one again.
    observed.insert("corpus-c0000".to_string(), expired(6, 4));
    observed.insert("corpus-c0000-r1".to_string(), follow_up(BatchPhase::Succeeded, 3, 1));
    let second = decide(
        &s,
        Some(1),
        &BatchSweepStatus::default(),
        &children,
        &observed,
        None,
        at(10),
    );
    assert_eq!(names(&second.create), ["corpus-c0000-r2"]);
    let counts = second.status.request_counts.clone().unwrap();
    assert_eq!((counts.total, counts.completed, counts.failed), (10, 9, 1));
    assert_eq!(counts.not_run, None, "the expired lines ran again");

    observed.insert("corpus-c0000-r2".to_string(), follow_up(BatchPhase::Succeeded, 0, 1));
    let done = decide(&s, Some(1), &second.status, &children, &observed, None, at(20));
    assert!(done.create.is_empty(), "maxAttempts 3: no fourth attempt");
    assert_eq!(done.status.phase, Some(SweepPhase::Succeeded));
    let counts = done.status.request_counts.clone().unwrap();
    assert_eq!((counts.total, counts.completed, counts.failed), (10, 9, 1));
    let retries = done.status.retries.clone().unwrap();
    assert_eq!((retries.batches, retries.retried, retries.recovered), (2, 5, 3));
    let tokens = done.status.usage.clone().unwrap().total_tokens;
    assert_eq!(tokens, 9 * 11, "every attempt's tokens");
    let complete = done.status.conditions.iter().find(|c| c.type_ == "Complete").unwrap();
    assert!(
        complete
            .message
            .ends_with("; 5 lines retried in 2 follow-up batches, 3 recovered"),
        "{}",
        complete.message
    );
    let listed = &done.status.children[0];
    assert_eq!(
        (listed.phase, listed.completed, listed.failed, listed.attempts),
        (Some(BatchPhase::Succeeded), 9, 1, Some(3))
    );

    let summary = summarise(&children, &observed, 3);
    assert_eq!(summary.request_counts.completed, 9);
    assert_eq!(summary.request_counts.failed, 1);
    assert_eq!(summary.retries.clone().unwrap().recovered, 3);
    let attempts: Vec<&str> = summary.children[0].attempts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(attempts, ["corpus-c0000", "corpus-c0000-r1", "corpus-c0000-r2"]);
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["retries"]["retried"], 5);
    assert_eq!(json["children"][0]["attempts"][2]["requestCounts"]["failed"], 1);
}

#[test]
fn nothing_is_retried_without_retryable_lines_after_a_cancel_or_without_spec_retry() {
    let s = with_retry(2);
    let children = plan_children("corpus", &s, &plan(3));
    let mut observed = BTreeMap::new();
    // Its error file held only 400s.
    observed.insert(
        "corpus-c0000".to_string(),
        ObservedChild {
            retryable: Some(0),
            ..child(BatchPhase::Succeeded, 8, 2)
        },
    );
    observed.insert("corpus-c0001".to_string(), child(BatchPhase::Cancelled, 5, 5));
    observed.insert("corpus-c0002".to_string(), child(BatchPhase::Succeeded, 10, 0));
    let mut budget = s.clone();
    budget.max_failed_batches = 1;
    let decision = decide(
        &budget,
        Some(1),
        &BatchSweepStatus::default(),
        &children,
        &observed,
        None,
        at(10),
    );
    assert!(decision.create.is_empty());
    assert_eq!(decision.status.phase, Some(SweepPhase::Succeeded));
    assert_eq!(decision.status.batches.unwrap().failed, 1, "the cancelled child");
    assert_eq!(decision.status.retries.unwrap().batches, 0);

    let mut no_retry = spec(&[], 2, 5);
    no_retry.retry = None;
    observed.insert("corpus-c0000".to_string(), expired(5, 5));
    let decision = decide(
        &no_retry,
        Some(1),
        &BatchSweepStatus::default(),
        &children,
        &observed,
        None,
        at(10),
    );
    assert!(decision.create.is_empty());
    assert_eq!(decision.status.retries, None);
    assert_eq!(
        decision.status.request_counts.unwrap(),
        RequestCounts {
            total: 30,
            completed: 20,
            failed: 10,
            not_run: Some(5)
        }
    );
}

#[test]
fn past_the_failure_budget_no_follow_up_starts() {
    let mut s = with_retry(3);
    s.max_failed_batches = 0;
    let children = plan_children("corpus", &s, &plan(2));
    let mut observed = BTreeMap::new();
    observed.insert("corpus-c0000".to_string(), child(BatchPhase::Failed, 0, 0));
    observed.insert("corpus-c0001".to_string(), expired(1, 9));
    let decision = decide(
        &s,
        Some(1),
        &BatchSweepStatus::default(),
        &children,
        &observed,
        None,
        at(10),
    );
    assert!(decision.create.is_empty());
    assert_eq!(decision.status.phase, Some(SweepPhase::Failed));
}

#[test]
fn raising_max_attempts_gives_a_finished_sweep_more_attempts_and_lowering_it_keeps_the_counts() {
    let mut s = with_retry(2);
    let children = plan_children("corpus", &s, &plan(1));
    let mut observed = BTreeMap::new();
    observed.insert("corpus-c0000".to_string(), expired(6, 4));
    observed.insert("corpus-c0000-r1".to_string(), follow_up(BatchPhase::Expired, 2, 2));
    let done = decide(
        &s,
        Some(1),
        &BatchSweepStatus::default(),
        &children,
        &observed,
        None,
        at(10),
    );
    assert!(done.create.is_empty());
    assert!(done.status.completion_time.is_some());

    s.retry = Some(RetrySpec { max_attempts: 3 });
    let again = decide(&s, Some(2), &done.status, &children, &observed, None, at(20));
    assert_eq!(names(&again.create), ["corpus-c0000-r2"]);
    assert_eq!(again.status.phase, Some(SweepPhase::Running));
    assert_eq!(again.status.completion_time, None);

    s.retry = None;
    let lowered = decide(&s, Some(3), &done.status, &children, &observed, None, at(30));
    assert!(lowered.create.is_empty());
    let counts = lowered.status.request_counts.unwrap();
    assert_eq!(
        (counts.completed, counts.failed),
        (8, 2),
        "the follow-up that ran still counts"
    );
}

/// A child that cost `actual` USD for `model`.
fn costing(mut seen: ObservedChild, model: &str, actual: &str) -> ObservedChild {
    seen.cost = Some(crate::api::Cost {
        estimated: None,
        currency: "USD".into(),
        actual: actual.into(),
        display: String::new(),
        by_model: vec![crate::api::ModelCost {
            model: model.into(),
            actual: actual.into(),
            priced_as: None,
        }],
        unpriced: Vec::new(),
    });
    seen
}

#[test]
fn the_sweeps_cost_is_every_attempts_once_by_model_and_chunk() {
    let s = with_retry(2);
    let children = plan_children("corpus", &s, &plan(2));
    let mut observed = BTreeMap::new();
    observed.insert("corpus-c0000".to_string(), costing(expired(6, 4), "m", "0.1"));
    observed.insert(
        "corpus-c0000-r1".to_string(),
        costing(follow_up(BatchPhase::Succeeded, 4, 0), "m", "0.02"),
    );
    observed.insert(
        "corpus-c0001".to_string(),
        costing(child(BatchPhase::Succeeded, 10, 0), "n", "0.3"),
    );
    let done = decide(
        &s,
        Some(1),
        &BatchSweepStatus::default(),
        &children,
        &observed,
        None,
        at(10),
    );
    let cost = done.status.cost.clone().unwrap();
    let models: Vec<_> = cost
        .by_model
        .iter()
        .map(|m| (m.model.as_str(), m.actual.as_str()))
        .collect();
    assert_eq!(models, [("m", "0.12"), ("n", "0.3")]);
    assert_eq!((cost.actual.as_str(), cost.display.as_str()), ("0.42", "0.4200 USD"));
    // Deciding again (a later reconcile) sums again from the children, never onto the last sum.
    let again = decide(&s, Some(1), &done.status, &children, &observed, None, at(20));
    assert_eq!(again.status.cost.unwrap().actual, "0.42");

    let summary = summarise(&children, &observed, 2);
    assert_eq!(summary.cost.clone().unwrap().actual, "0.42");
    assert_eq!(summary.by_chunk[&0].cost.clone().unwrap().actual, "0.12");
    assert_eq!(summary.children[0].cost.clone().unwrap().actual, "0.12");
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["byChunk"]["1"]["cost"]["actual"], "0.3");
}
