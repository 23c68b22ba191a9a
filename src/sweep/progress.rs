//! The sweep's next step and status, from its plan and the children that exist.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{
    BatchPhase, BatchSweepSpec, BatchSweepStatus, ChildCounts, ChildStatus, Conditions, Cost, MAX_LISTED_CHILDREN,
    RequestCounts, RetryCounts, SweepPhase, Usage, condition_types as types, reasons,
};

use super::ChildPlan;
use super::budget::{Held, Spending, within_budget};
use super::retry::{Chain, ChainState, chains};

/// What the driver saw of one existing child Batch (a first attempt or a follow-up).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedChild {
    pub phase: Option<BatchPhase>,
    pub request_counts: Option<RequestCounts>,
    pub usage: Option<Usage>,
    /// What its results cost (with the gateway's `spec.pricing`).
    pub cost: Option<Cost>,
    /// For a follow-up: the lines it was created with.
    pub lines: Option<u64>,
    /// For a finished attempt whose error file was read: its lines that failed retryably
    /// (`None` until read).
    pub retryable: Option<u64>,
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
    spending: Option<Spending<'_>>,
    now: Timestamp,
) -> Decision {
    let chains = chains(children, observed, spec.max_attempts());
    let tally = Tally::of(&chains);
    let over_budget = tally.failed > spec.max_failed_batches;
    let slots = spec.parallelism.saturating_sub(tally.running) as usize;
    let create: Vec<ChildPlan> = if spec.suspend || over_budget {
        Vec::new()
    } else {
        // Follow-ups first: they finish work already started.
        let retries = chains.iter().filter(|c| c.state == ChainState::RetryDue);
        let firsts = chains.iter().filter(|c| c.state == ChainState::Waiting);
        retries.chain(firsts).filter_map(Chain::next).take(slots).collect()
    };
    let (create, held) = within_budget(spec, &chains, create, spending);

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
    } else if spec.suspend || (held.is_some() && counts.running == 0) {
        SweepPhase::Suspended
    } else {
        SweepPhase::Running
    };
    next.phase = Some(phase);
    next.progress = Some(format!("{}/{} batches", counts.succeeded + counts.failed, counts.total));
    next.request_counts = Some(tally.requests.clone());
    next.usage = Some(tally.usage.clone());
    next.cost = tally.cost.clone();
    next.retries = (spec.max_attempts() > 1 || tally.retries.batches > 0).then(|| tally.retries.clone());
    next.children = listed(&chains, &create);
    set_conditions(&mut next, spec, &counts, held.as_ref(), generation, now);
    if phase.is_terminal() && counts.running == 0 {
        next.completion_time.get_or_insert(Time(now));
    } else if !phase.is_terminal() {
        // Running again (a larger spec.retry.maxAttempts gave finished children more attempts).
        next.completion_time = None;
    }
    next.batches = Some(counts);
    Decision { create, status: next }
}

/// True when `next` differs from `written` only in its figures: progress, counts, usage, cost,
/// the children listed and the conditions' messages (which quote the counts). A driver may write
/// those less often than they change; anything else (phase, a condition's status or reason, the
/// plan, times) is news.
pub fn only_figures_differ(written: &BatchSweepStatus, next: &BatchSweepStatus) -> bool {
    fn outline(status: &BatchSweepStatus) -> BatchSweepStatus {
        let mut outline = BatchSweepStatus {
            progress: None,
            batches: None,
            request_counts: None,
            usage: None,
            cost: None,
            retries: None,
            children: Vec::new(),
            ..status.clone()
        };
        outline.conditions.iter_mut().for_each(|c| c.message.clear());
        outline
    }
    written != next && outline(written) == outline(next)
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
    cost: Option<Cost>,
    retries: RetryCounts,
}

impl Tally {
    fn of(chains: &[Chain<'_>]) -> Self {
        let mut tally = Tally::default();
        for chain in chains {
            match chain.state {
                ChainState::Waiting | ChainState::RetryDue => tally.waiting += 1,
                ChainState::Running => tally.running += 1,
                ChainState::Done(BatchPhase::Succeeded) => tally.succeeded += 1,
                ChainState::Done(_) => tally.failed += 1,
            }
            if chain.attempts.is_empty() {
                continue;
            }
            super::summary::add(
                &mut tally.requests,
                &mut tally.usage,
                &chain.request_counts(),
                &chain.usage(),
            );
            if let Some(cost) = chain.cost() {
                crate::pricing::add_cost(&mut tally.cost, &cost);
            }
            let (retried, recovered) = chain.retried_and_recovered();
            tally.retries.batches += chain.attempts.len().saturating_sub(1) as u32;
            tally.retries.retried += retried;
            tally.retries.recovered += recovered;
        }
        tally
    }
}

/// Unfinished children first (running, then those starting now), then finished ones, each
/// group in plan order; at most [`MAX_LISTED_CHILDREN`]. A child with follow-ups is one entry:
/// the phase of its latest attempt and the counts of all.
fn listed(chains: &[Chain<'_>], create: &[ChildPlan]) -> Vec<ChildStatus> {
    let starting = |chain: &Chain<'_>| {
        create
            .iter()
            .any(|c| c.chunk == chain.first.chunk && c.model == chain.first.model)
    };
    let entry = |chain: &Chain<'_>| {
        let counts = chain.request_counts();
        let attempts = chain.attempts.len() as u32 + u32::from(chain.state == ChainState::RetryDue && starting(chain));
        ChildStatus {
            name: chain.first.name.clone(),
            model: chain.first.model.clone(),
            chunk: chain.first.chunk,
            phase: match chain.state {
                ChainState::RetryDue if starting(chain) => Some(BatchPhase::Pending),
                _ => chain.phase().or(Some(BatchPhase::Pending)),
            },
            completed: counts.completed,
            failed: counts.failed,
            attempts: (attempts > 1).then_some(attempts),
            cost: chain.cost().map(|c| c.display).filter(|d| !d.is_empty()),
        }
    };
    let finished = |chain: &&Chain<'_>| matches!(chain.state, ChainState::Done(_));
    let unfinished = chains.iter().filter(|ch| match ch.state {
        ChainState::Running | ChainState::RetryDue => true,
        ChainState::Waiting => starting(ch),
        ChainState::Done(_) => false,
    });
    let done = chains.iter().filter(finished);
    unfinished.chain(done).take(MAX_LISTED_CHILDREN).map(entry).collect()
}

fn set_conditions(
    status: &mut BatchSweepStatus,
    spec: &BatchSweepSpec,
    counts: &ChildCounts,
    held: Option<&Held>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let mut summary = format!(
        "{} of {} batches finished ({} failed); {} running",
        counts.succeeded + counts.failed,
        counts.total,
        counts.failed,
        counts.running
    );
    if let Some(retries) = status.retries.as_ref().filter(|r| r.batches > 0) {
        summary.push_str(&format!(
            "; {} lines retried in {} follow-up batches, {} recovered",
            retries.retried, retries.batches, retries.recovered
        ));
    }
    let conditions = &mut status.conditions;
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
        match held {
            Some(held) => {
                let message = format!("{}; {summary}", held.message);
                conditions.set_condition(
                    types::COMPLETE,
                    false,
                    reasons::BUDGET_REACHED,
                    message,
                    generation,
                    now,
                );
            }
            None => {
                let reason = if done { reasons::SUCCEEDED } else { reasons::RUNNING };
                conditions.set_condition(types::COMPLETE, done, reason, summary, generation, now);
            }
        }
    }
    if let Some(held) = held.filter(|_| !spec.suspend && counts.running == 0) {
        conditions.set_condition(
            types::SUSPENDED,
            true,
            reasons::BUDGET_REACHED,
            held.message.clone(),
            generation,
            now,
        );
    } else if spec.suspend {
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
