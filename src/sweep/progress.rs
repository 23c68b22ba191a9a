//! The sweep's next step and status, from its plan and the children that exist.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{
    BatchPhase, BatchSweepSpec, BatchSweepStatus, ChildCounts, ChildStatus, Conditions, MAX_LISTED_CHILDREN,
    RequestCounts, SweepPhase, Usage, condition_types as types, reasons,
};

use super::ChildPlan;

/// What the driver saw of one existing child Batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedChild {
    pub phase: Option<BatchPhase>,
    pub request_counts: Option<RequestCounts>,
    pub usage: Option<Usage>,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Children to create, in order (never one that exists).
    pub create: Vec<ChildPlan>,
    /// The sweep's status after this step (assuming the creations succeed).
    pub status: BatchSweepStatus,
}

/// Decides which children to create and computes the status. `observed` maps child names to
/// what exists; `children` is the full plan, in creation order.
pub fn decide(
    spec: &BatchSweepSpec,
    generation: Option<i64>,
    status: &BatchSweepStatus,
    children: &[ChildPlan],
    observed: &BTreeMap<String, ObservedChild>,
    now: Timestamp,
) -> Decision {
    let tally = Tally::of(children, observed);
    let over_budget = tally.failed > spec.max_failed_batches;
    let slots = spec.parallelism.saturating_sub(tally.running) as usize;
    let create: Vec<ChildPlan> = if spec.suspend || over_budget {
        Vec::new()
    } else {
        children
            .iter()
            .filter(|child| !observed.contains_key(&child.name))
            .take(slots)
            .cloned()
            .collect()
    };

    let mut next = status.clone();
    next.observed_generation = generation;
    next.start_time.get_or_insert(Time(now));
    let created = create.len() as u32;
    let counts = ChildCounts {
        total: children.len() as u32,
        waiting: tally.waiting - created,
        running: tally.running + created,
        succeeded: tally.succeeded,
        failed: tally.failed,
    };
    let all_done = counts.waiting == 0 && counts.running == 0;
    let phase = if over_budget {
        SweepPhase::Failed
    } else if all_done {
        SweepPhase::Succeeded
    } else if spec.suspend {
        SweepPhase::Suspended
    } else {
        SweepPhase::Running
    };
    next.phase = Some(phase);
    next.progress = Some(format!("{}/{} batches", counts.succeeded + counts.failed, counts.total));
    next.request_counts = Some(tally.requests.clone());
    next.usage = Some(tally.usage.clone());
    next.children = listed(children, observed, &create);
    set_conditions(&mut next, spec, &counts, generation, now);
    if phase.is_terminal() && counts.running == 0 {
        next.completion_time.get_or_insert(Time(now));
    }
    next.batches = Some(counts);
    Decision { create, status: next }
}

/// The status of a sweep whose input could not be planned (unreadable, invalid, empty).
pub fn plan_failed(
    status: &BatchSweepStatus,
    generation: Option<i64>,
    message: &str,
    now: Timestamp,
) -> BatchSweepStatus {
    let mut next = status.clone();
    next.observed_generation = generation;
    next.phase = Some(SweepPhase::Failed);
    next.start_time.get_or_insert(Time(now));
    next.completion_time.get_or_insert(Time(now));
    next.conditions
        .set_condition(types::FAILED, true, reasons::PLAN_FAILED, message, generation, now);
    next.conditions
        .set_condition(types::COMPLETE, false, reasons::PLAN_FAILED, message, generation, now);
    next
}

#[derive(Default)]
struct Tally {
    waiting: u32,
    running: u32,
    succeeded: u32,
    failed: u32,
    requests: RequestCounts,
    usage: Usage,
}

impl Tally {
    fn of(children: &[ChildPlan], observed: &BTreeMap<String, ObservedChild>) -> Self {
        let mut tally = Tally::default();
        for child in children {
            let Some(seen) = observed.get(&child.name) else {
                tally.waiting += 1;
                continue;
            };
            match seen.phase {
                Some(BatchPhase::Succeeded) => tally.succeeded += 1,
                Some(p) if p.is_terminal() => tally.failed += 1,
                _ => tally.running += 1,
            }
            let counts = seen.request_counts.clone().unwrap_or_default();
            let usage = seen.usage.clone().unwrap_or_default();
            super::summary::add(&mut tally.requests, &mut tally.usage, &counts, &usage);
        }
        tally
    }
}

/// Unfinished children first (running, then waiting to be created now), then finished ones,
/// each group in plan order; at most [`MAX_LISTED_CHILDREN`].
fn listed(
    children: &[ChildPlan],
    observed: &BTreeMap<String, ObservedChild>,
    create: &[ChildPlan],
) -> Vec<ChildStatus> {
    let entry = |child: &ChildPlan| {
        let seen = observed.get(&child.name);
        let counts = seen.and_then(|s| s.request_counts.as_ref());
        ChildStatus {
            name: child.name.clone(),
            model: child.model.clone(),
            chunk: child.chunk,
            phase: seen.and_then(|s| s.phase).or(Some(BatchPhase::Pending)),
            completed: counts.map_or(0, |r| r.completed),
            failed: counts.map_or(0, |r| r.failed),
        }
    };
    let finished = |child: &&ChildPlan| {
        observed
            .get(&child.name)
            .and_then(|s| s.phase)
            .is_some_and(BatchPhase::is_terminal)
    };
    let exists = |child: &&ChildPlan| observed.contains_key(&child.name) || create.contains(child);
    let unfinished = children.iter().filter(|ch| exists(ch) && !finished(ch));
    let done = children.iter().filter(finished);
    unfinished.chain(done).take(MAX_LISTED_CHILDREN).map(entry).collect()
}

fn set_conditions(
    status: &mut BatchSweepStatus,
    spec: &BatchSweepSpec,
    counts: &ChildCounts,
    generation: Option<i64>,
    now: Timestamp,
) {
    let conditions = &mut status.conditions;
    let summary = format!(
        "{} of {} batches finished ({} failed); {} running",
        counts.succeeded + counts.failed,
        counts.total,
        counts.failed,
        counts.running
    );
    if counts.failed > spec.max_failed_batches {
        let message = format!(
            "{} batches failed, more than maxFailedBatches {}: no new batch starts; {summary}",
            counts.failed, spec.max_failed_batches
        );
        conditions.set_condition(
            types::FAILED,
            true,
            reasons::FAILURE_BUDGET_EXCEEDED,
            &message,
            generation,
            now,
        );
        conditions.set_condition(
            types::COMPLETE,
            false,
            reasons::FAILURE_BUDGET_EXCEEDED,
            message,
            generation,
            now,
        );
    } else {
        let done = counts.waiting == 0 && counts.running == 0;
        let budget = format!(
            "{} of at most {} batches failed",
            counts.failed, spec.max_failed_batches
        );
        conditions.set_condition(types::FAILED, false, reasons::WITHIN_BUDGET, budget, generation, now);
        let reason = if done { reasons::SUCCEEDED } else { reasons::RUNNING };
        conditions.set_condition(types::COMPLETE, done, reason, summary, generation, now);
    }
    if spec.suspend {
        let message = "suspend is set: no new batch starts; running batches finish";
        conditions.set_condition(
            types::SUSPENDED,
            true,
            reasons::SUSPEND_REQUESTED,
            message,
            generation,
            now,
        );
    } else if conditions.condition(types::SUSPENDED).is_some() {
        conditions.set_condition(types::SUSPENDED, false, reasons::RESUMED, "resumed", generation, now);
    }
}
