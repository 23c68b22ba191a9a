use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::api::{
    BatchInput, BatchPhase, BatchSweepSpec, BatchSweepStatus, BatchTemplate, ChunkSpec, Conditions, DeletionPolicy,
    Endpoint, GatewayLimits, LocalObjectRef, Matrix, PlannedChunk, RequestCounts, SweepPhase, SweepPlan, Usage,
    condition_types as types, reasons,
};

pub(super) fn spec(models: &[&str], parallelism: u32, max_failed: u32) -> BatchSweepSpec {
    BatchSweepSpec {
        input: BatchInput::default(),
        chunk: ChunkSpec::default(),
        matrix: (!models.is_empty()).then(|| Matrix {
            models: models.iter().map(|m| m.to_string()).collect(),
        }),
        template: BatchTemplate {
            gateway_ref: LocalObjectRef { name: "gw".into() },
            endpoint: Endpoint::ChatCompletions,
            completion_window: None,
            output: None,
            metadata: BTreeMap::new(),
            deletion_policy: DeletionPolicy::Cancel,
        },
        parallelism,
        max_failed_batches: max_failed,
        suspend: false,
        retry: None,
        notify: None,
        budget: None,
    }
}

pub(super) fn plan(chunks: u64) -> SweepPlan {
    SweepPlan {
        bytes: chunks * 100,
        requests: chunks * 10,
        checked_model: None,
        estimates: Vec::new(),
        chunks: (0..chunks)
            .map(|i| PlannedChunk {
                start: i * 100,
                end: (i + 1) * 100,
                requests: 10,
                ..Default::default()
            })
            .collect(),
    }
}

pub(super) fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

pub(super) fn child(phase: BatchPhase, completed: u64, failed: u64) -> ObservedChild {
    ObservedChild {
        phase: Some(phase),
        request_counts: Some(RequestCounts {
            total: completed + failed,
            completed,
            failed,
            not_run: None,
        }),
        usage: Some(Usage {
            prompt_tokens: completed * 10,
            completion_tokens: completed,
            total_tokens: completed * 11,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn names(plans: &[ChildPlan]) -> Vec<&str> {
    plans.iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn names_are_deterministic_dns_safe_and_bounded() {
    assert_eq!(child_name("eval", Some("gpt-4o-mini"), 3), "eval-gpt-4o-mini-c0003");
    assert_eq!(child_name("corpus", None, 12), "corpus-c0012");
    let odd = child_name("eval", Some("meta-llama/Llama-3.1-8B"), 0);
    assert!(odd.starts_with("eval-meta-llama-llama-3-1-8b-"), "{odd}");
    assert_ne!(
        child_name("eval", Some("GPT-4o"), 0),
        child_name("eval", Some("gpt-4o"), 0)
    );
    let long = child_name(&"s".repeat(60), Some(&"m".repeat(60)), 1);
    assert_eq!(long.len(), 63);
    assert_eq!(long, child_name(&"s".repeat(60), Some(&"m".repeat(60)), 1));
    assert_ne!(long, child_name(&"s".repeat(60), Some(&"m".repeat(60)), 2));
    for name in [odd, long] {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
        assert!(!name.starts_with('-') && !name.ends_with('-'), "{name}");
    }
    // A sweep name with dots, cut right after one: the cut drops it (`a.-hash` is no DNS name).
    let dotted = child_name(&format!("{}.{}", "a".repeat(53), "b".repeat(20)), None, 0);
    assert!(dotted.len() <= 63 && dotted.starts_with(&"a".repeat(53)), "{dotted}");
    assert!(!dotted.contains(".-"), "{dotted}");
}

#[test]
fn children_run_every_chunk_for_every_model_with_pivotable_custom_ids() {
    let children = plan_children("eval", &spec(&["a", "b"], 3, 0), &plan(3));
    assert_eq!(
        names(&children),
        [
            "eval-a-c0000",
            "eval-b-c0000",
            "eval-a-c0001",
            "eval-b-c0001",
            "eval-a-c0002",
            "eval-b-c0002"
        ]
    );
    assert_eq!(children[3].model.as_deref(), Some("b"));
    assert_eq!(
        children[3].range,
        PlannedChunk {
            start: 100,
            end: 200,
            requests: 10,
            ..Default::default()
        }
    );
    assert_eq!(children[3].custom_id_prefix, "b/c0001/");
    let plain = plan_children("corpus", &spec(&[], 3, 0), &plan(2));
    assert_eq!(plain[1].custom_id_prefix, "c0001/");
    assert_eq!(plain[1].model, None);
}

#[test]
fn chunk_limits_never_exceed_the_gateway_and_leave_room_for_rewriting() {
    let gateway = GatewayLimits {
        max_requests_per_batch: Some(1000),
        max_bytes_per_batch: Some("1Mi".into()),
        ..Default::default()
    };
    let mut s = spec(&["gpt-4o-mini"], 3, 0);
    s.chunk.max_requests = Some(5000);
    s.chunk.max_bytes = Some("100Ki".into());
    let limits = chunk_limits(&s, &gateway).unwrap();
    assert_eq!(limits.max_requests, 1000);
    assert_eq!(limits.max_bytes, 100 * 1024);
    assert!(limits.growth_per_line >= "gpt-4o-mini/c0000/".len() as u64 + "gpt-4o-mini".len() as u64);
    s.chunk.max_bytes = Some("2Mi".into());
    assert_eq!(chunk_limits(&s, &gateway).unwrap().max_bytes, 1024 * 1024);
    s.chunk.max_bytes = Some("lots".into());
    assert!(
        chunk_limits(&s, &gateway)
            .unwrap_err()
            .to_string()
            .starts_with("spec.chunk.maxBytes")
    );
}

#[test]
fn parallelism_bounds_the_children_in_flight() {
    let s = spec(&["a", "b"], 3, 0);
    let children = plan_children("eval", &s, &plan(5));
    let mut observed = BTreeMap::new();
    let first = decide(
        &s,
        Some(1),
        &BatchSweepStatus::default(),
        &children,
        &observed,
        None,
        at(10),
    );
    assert_eq!(names(&first.create), ["eval-a-c0000", "eval-b-c0000", "eval-a-c0001"]);
    assert_eq!(first.status.phase, Some(SweepPhase::Running));
    assert_eq!(first.status.progress.as_deref(), Some("0/10 batches"));
    let counts = first.status.batches.clone().unwrap();
    assert_eq!((counts.total, counts.waiting, counts.running), (10, 7, 3));

    for plan in &first.create {
        observed.insert(plan.name.clone(), ObservedChild::default());
    }
    let none_free = decide(&s, Some(1), &first.status, &children, &observed, None, at(20));
    assert!(none_free.create.is_empty());

    observed.insert("eval-a-c0000".into(), child(BatchPhase::Succeeded, 10, 0));
    let one_free = decide(&s, Some(1), &none_free.status, &children, &observed, None, at(30));
    assert_eq!(names(&one_free.create), ["eval-b-c0001"]);
    assert_eq!(one_free.status.progress.as_deref(), Some("1/10 batches"));
    assert_eq!(one_free.status.request_counts.as_ref().unwrap().completed, 10);
    assert_eq!(one_free.status.usage.as_ref().unwrap().total_tokens, 110);
    assert_eq!(one_free.status.start_time, first.status.start_time);
    let listed: Vec<&str> = one_free.status.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(listed, ["eval-b-c0000", "eval-a-c0001", "eval-b-c0001", "eval-a-c0000"]);
}

#[test]
fn a_child_finishing_changes_only_figures_and_the_last_one_is_news() {
    let s = spec(&[], 2, 0);
    let children = plan_children("corpus", &s, &plan(2));
    let mut observed: BTreeMap<_, _> = children
        .iter()
        .map(|c| (c.name.clone(), ObservedChild::default()))
        .collect();
    let running = decide(
        &s,
        Some(1),
        &BatchSweepStatus::default(),
        &children,
        &observed,
        None,
        at(10),
    );
    assert!(
        !only_figures_differ(&BatchSweepStatus::default(), &running.status),
        "the first status is news"
    );
    assert!(
        !only_figures_differ(&running.status, &running.status),
        "nothing changed"
    );

    observed.insert("corpus-c0000".into(), child(BatchPhase::Succeeded, 10, 0));
    let one_done = decide(&s, Some(1), &running.status, &children, &observed, None, at(20));
    assert_ne!(
        one_done.status.conditions, running.status.conditions,
        "the message quotes the counts"
    );
    assert!(only_figures_differ(&running.status, &one_done.status));

    observed.insert("corpus-c0001".into(), child(BatchPhase::Succeeded, 10, 0));
    let all_done = decide(&s, Some(1), &one_done.status, &children, &observed, None, at(30));
    assert!(
        !only_figures_differ(&one_done.status, &all_done.status),
        "Succeeded is news"
    );
}

#[test]
fn every_child_succeeded_completes_the_sweep() {
    let s = spec(&[], 2, 0);
    let children = plan_children("corpus", &s, &plan(2));
    let observed: BTreeMap<_, _> = children
        .iter()
        .map(|c| (c.name.clone(), child(BatchPhase::Succeeded, 9, 1)))
        .collect();
    let done = decide(
        &s,
        Some(2),
        &BatchSweepStatus::default(),
        &children,
        &observed,
        None,
        at(50),
    );
    assert!(done.create.is_empty());
    assert_eq!(done.status.phase, Some(SweepPhase::Succeeded));
    assert!(done.status.conditions.is_true(types::COMPLETE));
    assert!(!done.status.conditions.is_true(types::FAILED));
    assert!(done.status.completion_time.is_some());
    assert_eq!(done.status.observed_generation, Some(2));
    let totals = done.status.request_counts.unwrap();
    assert_eq!((totals.total, totals.completed, totals.failed), (20, 18, 2));
}

#[test]
fn past_the_failure_budget_nothing_new_starts_and_running_children_finish() {
    let s = spec(&[], 3, 1);
    let children = plan_children("corpus", &s, &plan(6));
    let mut observed: BTreeMap<_, _> = BTreeMap::new();
    observed.insert(children[0].name.clone(), child(BatchPhase::Failed, 0, 0));
    observed.insert(children[1].name.clone(), child(BatchPhase::InProgress, 0, 0));
    observed.insert(children[2].name.clone(), child(BatchPhase::InProgress, 0, 0));
    let within = decide(
        &s,
        Some(1),
        &BatchSweepStatus::default(),
        &children,
        &observed,
        None,
        at(10),
    );
    assert_eq!(names(&within.create), [children[3].name.as_str()]);
    assert_eq!(
        within.status.conditions.condition(types::FAILED).unwrap().reason,
        reasons::WITHIN_BUDGET
    );

    observed.insert(children[1].name.clone(), child(BatchPhase::Expired, 3, 0));
    let over = decide(&s, Some(1), &within.status, &children, &observed, None, at(20));
    assert!(over.create.is_empty());
    assert_eq!(over.status.phase, Some(SweepPhase::Failed));
    let failed = over.status.conditions.condition(types::FAILED).unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("True", reasons::FAILURE_BUDGET_EXCEEDED)
    );
    assert!(
        failed.message.contains("more than maxFailedBatches 1"),
        "{}",
        failed.message
    );
    assert_eq!(over.status.completion_time, None, "a child is still running");

    let mut third = child(BatchPhase::Succeeded, 10, 0);
    third.cost = Some(crate::api::Cost {
        currency: "USD".into(),
        actual: "1".into(),
        ..Default::default()
    });
    observed.insert(children[2].name.clone(), third);
    let finished = decide(&s, Some(1), &over.status, &children, &observed, None, at(30));
    assert!(finished.status.completion_time.is_some());
}

#[test]
fn suspend_stops_new_children_and_resuming_continues_where_it_stopped() {
    let mut s = spec(&[], 2, 0);
    let children = plan_children("corpus", &s, &plan(4));
    let mut observed: BTreeMap<_, _> = BTreeMap::new();
    observed.insert(children[0].name.clone(), child(BatchPhase::Succeeded, 10, 0));
    s.suspend = true;
    let suspended = decide(
        &s,
        Some(2),
        &BatchSweepStatus::default(),
        &children,
        &observed,
        None,
        at(10),
    );
    assert!(suspended.create.is_empty());
    assert_eq!(suspended.status.phase, Some(SweepPhase::Suspended));
    assert!(suspended.status.conditions.is_true(types::SUSPENDED));

    s.suspend = false;
    let resumed = decide(&s, Some(3), &suspended.status, &children, &observed, None, at(20));
    assert_eq!(
        names(&resumed.create),
        [children[1].name.as_str(), children[2].name.as_str()]
    );
    assert_eq!(resumed.status.phase, Some(SweepPhase::Running));
    let condition = resumed.status.conditions.condition(types::SUSPENDED).unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", reasons::RESUMED)
    );
}

#[test]
fn an_input_that_cannot_be_planned_fails_the_sweep_with_the_reason() {
    let status = plan_failed(
        &BatchSweepStatus::default(),
        Some(1),
        "line 3 is 900 bytes, more than a chunk may hold",
        at(5),
    );
    assert_eq!(status.phase, Some(SweepPhase::Failed));
    let failed = status.conditions.condition(types::FAILED).unwrap();
    assert_eq!(failed.reason, reasons::PLAN_FAILED);
    assert!(failed.message.starts_with("line 3"));
}

#[test]
fn the_children_list_is_bounded() {
    let s = spec(&["a", "b"], 200, 0);
    let children = plan_children("eval", &s, &plan(100));
    let decision = decide(
        &s,
        Some(1),
        &BatchSweepStatus::default(),
        &children,
        &BTreeMap::new(),
        None,
        at(1),
    );
    assert_eq!(decision.create.len(), 200);
    assert_eq!(decision.status.children.len(), crate::api::MAX_LISTED_CHILDREN);
}

#[test]
fn the_summary_pivots_by_model_and_by_chunk() {
    let s = spec(&["a", "b"], 4, 0);
    let children = plan_children("eval", &s, &plan(2));
    let mut observed = BTreeMap::new();
    observed.insert("eval-a-c0000".to_string(), child(BatchPhase::Succeeded, 10, 0));
    observed.insert("eval-b-c0000".to_string(), child(BatchPhase::Succeeded, 8, 2));
    observed.insert("eval-a-c0001".to_string(), child(BatchPhase::Failed, 0, 0));
    let summary = summarise(&children, &observed, 1);
    assert_eq!(summary.children.len(), 3, "the child never created is left out");
    assert_eq!(summary.request_counts.completed, 18);
    let a = &summary.by_model["a"];
    assert_eq!((a.batches, a.succeeded, a.request_counts.completed), (2, 1, 10));
    let chunk0 = &summary.by_chunk[&0];
    assert_eq!(
        (chunk0.batches, chunk0.request_counts.failed, chunk0.usage.total_tokens),
        (2, 2, 198)
    );
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["byModel"]["b"]["requestCounts"]["completed"], 8);
    assert_eq!(json["children"][1]["customIdPrefix"], "b/c0000/");
}

#[test]
fn a_child_reads_its_chunk_rewritten_for_its_model_and_writes_results_of_its_own() {
    use crate::api::{BatchOutput, ObjectStoreRef, PvcSink};
    let mut s = spec(&["gpt-4o"], 3, 0);
    s.template.metadata.insert("team".into(), "eval".into());
    s.template.output = Some(BatchOutput {
        secret: Some(LocalObjectRef { name: "results".into() }),
        ..Default::default()
    });
    let children = plan_children("eval", &s, &plan(2));
    let child = children[1].batch_spec("eval", &s);
    let range = child.input.byte_range.unwrap();
    assert_eq!((range.start, range.end), (100, 200));
    let overrides = child.input.overrides.unwrap();
    assert_eq!(overrides.model.as_deref(), Some("gpt-4o"));
    assert_eq!(overrides.custom_id_prefix.as_deref(), Some("gpt-4o/c0001/"));
    assert_eq!(child.output.unwrap().secret.unwrap().name, "results-gpt-4o-c0001");
    assert_eq!(child.completion_window, "24h");
    assert_eq!(child.gateway_ref.name, "gw");
    let keys: Vec<&str> = child.metadata.keys().map(String::as_str).collect();
    assert_eq!(keys, ["chunk", "model", "sweep", "team"]);

    s.template.output = Some(BatchOutput {
        object_store: Some(ObjectStoreRef {
            url: "s3://bucket/runs/".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let stored = children[0].batch_spec("eval", &s).output.unwrap();
    assert_eq!(stored.object_store.unwrap().url, "s3://bucket/runs/gpt-4o-c0000/");
    s.template.output = Some(BatchOutput {
        pvc: Some(PvcSink {
            claim_name: "results".into(),
            path: "runs".into(),
        }),
        ..Default::default()
    });
    let on_volume = children[0].batch_spec("eval", &s).output.unwrap().pvc.unwrap();
    assert_eq!(on_volume.path, "runs/gpt-4o-c0000/");
}

/// The scan validates each chunk once, as its first child prepares it; every child's figures
/// follow from that, and match what preparing its own range would give.
#[test]
fn the_scan_validates_each_chunk_once_for_every_model_of_the_matrix() {
    let endpoint = "/v1/chat/completions";
    let source: String = (0..25)
        .map(|i| {
            format!(
                r#"{{"custom_id": "q{i}", "method": "POST", "url": "{endpoint}", "body": {{"model": "x", "max_tokens": {i}}}}}"#
            ) + "\n"
        })
        .collect();
    let mut s = spec(&["gpt-4o", "a \"quoted\" much longer model é"], 2, 0);
    s.input.object_store = Some(crate::api::ObjectStoreRef {
        url: "s3://bucket/input.jsonl".into(),
        ..Default::default()
    });
    s.chunk.max_requests = Some(10);
    let limits = chunk_limits(&s, &GatewayLimits::default()).unwrap();
    let mut planner = crate::jsonl::ChunkPlanner::new(limits).checking(endpoint, scan_rewrite(&s));
    planner.feed(source.as_bytes());
    let plan = plan_of(&s, source.len() as u64, &planner.finish().unwrap()).unwrap();
    let children = plan_children("eval", &s, &plan);
    assert_eq!(children.len(), 6);
    for child in &children {
        let validated = child.validated_input(&s, &plan).expect("validated by the scan");
        let range = child.range.start..child.range.end;
        let limits = crate::jsonl::Limits::default();
        let (bytes, report) =
            crate::jsonl::prepare_bytes(source.as_bytes(), Some(range), child.rewrite(), endpoint, limits);
        assert!(report.is_valid());
        assert_eq!(validated.requests, report.summary.requests, "{}", child.name);
        assert_eq!(validated.bytes, bytes.len() as u64, "{}", child.name);
        let tokens = report.summary.estimated_tokens;
        assert!(
            (tokens..=tokens + validated.requests).contains(&validated.estimated_tokens),
            "{}: {} against {tokens}",
            child.name,
            validated.estimated_tokens
        );
    }
    s.input.object_store = None;
    assert_eq!(
        children[0].validated_input(&s, &plan),
        None,
        "only object-store inputs skip the read"
    );
}

#[test]
fn max_cost_creates_children_while_their_estimates_fit_and_a_raise_continues() {
    let mut s = spec(&["gpt-4o"], 10, 0);
    s.budget = Some(crate::api::SweepBudget { max_cost: "2.5".into() });
    let mut plan = plan(5);
    for chunk in &mut plan.chunks {
        chunk.estimated_tokens = Some(1_000_000);
    }
    plan.estimates = vec![crate::api::ModelEstimate {
        model: "x".into(),
        requests: 50,
        input_tokens: 4_000_000,
        output_tokens: 1_000_000,
        counted_by: "o200k_base".into(),
        ..Default::default()
    }];
    let pricing = crate::api::Pricing {
        batch_discount: "0%".into(),
        models: vec![crate::api::ModelPrice {
            model: "gpt-4o".into(),
            input_per_million: "1".into(),
            cached_input_per_million: None,
            output_per_million: "1".into(),
        }],
        ..Default::default()
    };
    let prices = crate::pricing::Prices::new(&pricing, crate::pricing::PriceListLookup::NotReferenced).unwrap();
    let spending = Spending {
        plan: &plan,
        prices: &prices,
        mode: crate::api::BatchMode::Batch,
    };
    let children = plan_children("eval", &s, &plan);
    // Each child's share: a fifth of 5M tokens at 1 per million.
    let decision = decide(
        &s,
        Some(1),
        &BatchSweepStatus::default(),
        &children,
        &BTreeMap::new(),
        Some(spending),
        at(1),
    );
    assert_eq!(decision.create.len(), 2, "2 × 1 fits 2.5, a third does not");
    let complete = decision.status.conditions.condition(types::COMPLETE).unwrap();
    assert_eq!(complete.reason, reasons::BUDGET_REACHED);
    assert!(
        complete.message.contains("the next (eval-gpt-4o-"),
        "{}",
        complete.message
    );

    // Both finished, for 0.4 each in actual cost: the third fits (0.8 + 1), the fourth does not.
    let mut observed = BTreeMap::new();
    for created in &decision.create {
        let mut done = child(BatchPhase::Succeeded, 10, 0);
        done.cost = Some(crate::api::Cost {
            currency: "USD".into(),
            estimated: Some("1".into()),
            actual: "0.4".into(),
            ..Default::default()
        });
        observed.insert(created.name.clone(), done);
    }
    let next = decide(
        &s,
        Some(1),
        &decision.status,
        &children,
        &observed,
        Some(spending),
        at(2),
    );
    assert_eq!(names(&next.create), [children[2].name.as_str()]);
    let listed = next
        .status
        .children
        .iter()
        .find(|c| c.name == children[0].name)
        .unwrap();
    assert_eq!(
        listed.cost.as_deref(),
        Some("0.4000 USD"),
        "each chunk's cost is listed"
    );

    // Nothing running and nothing fits: the sweep rests, saying so, until the budget is raised.
    let mut third = child(BatchPhase::Succeeded, 10, 0);
    third.cost = Some(crate::api::Cost {
        currency: "USD".into(),
        actual: "1".into(),
        ..Default::default()
    });
    observed.insert(children[2].name.clone(), third);
    let resting = decide(&s, Some(1), &next.status, &children, &observed, Some(spending), at(3));
    assert!(resting.create.is_empty());
    assert_eq!(resting.status.phase, Some(SweepPhase::Suspended));
    let suspended = resting.status.conditions.condition(types::SUSPENDED).unwrap();
    assert_eq!(
        (suspended.status.as_str(), suspended.reason.as_str()),
        ("True", reasons::BUDGET_REACHED)
    );
    s.budget = Some(crate::api::SweepBudget { max_cost: "10".into() });
    let raised = decide(
        &s,
        Some(2),
        &resting.status,
        &children,
        &observed,
        Some(spending),
        at(4),
    );
    assert_eq!(raised.create.len(), 2);
    assert_eq!(raised.status.phase, Some(SweepPhase::Running));
}
