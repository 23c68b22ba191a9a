//! `summary.json` of a sweep run by `run -f`: counts, usage and cost per model and per chunk, so an
//! evaluation's results can be compared without opening every child's files.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::api::{BatchPhase, Cost, RequestCounts, RetryCounts, Usage};

use super::retry::chains;
use super::{ChildPlan, ObservedChild};

/// The whole summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Lines by outcome over all attempts: a line that failed and then succeeded on a retry
    /// counts as completed only; `failed` is the lines that never succeeded.
    pub request_counts: RequestCounts,
    /// Tokens of every attempt.
    pub usage: Usage,
    /// What every attempt cost (each once), with the gateway's `spec.pricing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// What the follow-up Batches did (with `spec.retry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryCounts>,
    /// Keyed by model (`""` when the sweep has no matrix).
    pub by_model: BTreeMap<String, Totals>,
    /// Keyed by chunk index.
    pub by_chunk: BTreeMap<u32, Totals>,
    pub children: Vec<ChildSummary>,
}

/// Sums over a group of children.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub batches: u32,
    pub succeeded: u32,
    pub request_counts: RequestCounts,
    pub usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
}

/// One child.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildSummary {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub chunk: u32,
    pub custom_id_prefix: String,
    /// The phase of the latest attempt.
    pub phase: Option<BatchPhase>,
    /// Over all attempts, as in [`Summary::request_counts`].
    pub request_counts: RequestCounts,
    pub usage: Usage,
    /// Over all attempts, each once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// Every attempt, when there was more than one (results of each are in its own directory).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptSummary>,
}

/// One attempt of a child.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptSummary {
    pub name: String,
    pub phase: Option<BatchPhase>,
    pub request_counts: RequestCounts,
}

/// Summarises the children that ran (those never created are left out), each with its
/// follow-ups (`observed` holds them by name) merged in.
pub fn summarise(children: &[ChildPlan], observed: &BTreeMap<String, ObservedChild>, max_attempts: u32) -> Summary {
    let mut summary = Summary::default();
    let mut retries = RetryCounts::default();
    for chain in chains(children, observed, max_attempts) {
        if chain.attempts.is_empty() {
            continue;
        }
        let plan = chain.first;
        let counts = chain.request_counts();
        let usage = chain.usage();
        let cost = chain.cost();
        let phase = chain.phase();
        let succeeded = phase == Some(BatchPhase::Succeeded);
        let (retried, recovered) = chain.retried_and_recovered();
        retries.batches += chain.attempts.len() as u32 - 1;
        retries.retried += retried;
        retries.recovered += recovered;
        add(&mut summary.request_counts, &mut summary.usage, &counts, &usage);
        add_cost(&mut summary.cost, cost.as_ref());
        let model = plan.model.clone().unwrap_or_default();
        for totals in [
            summary.by_model.entry(model).or_default(),
            summary.by_chunk.entry(plan.chunk).or_default(),
        ] {
            totals.batches += 1;
            totals.succeeded += u32::from(succeeded);
            add(&mut totals.request_counts, &mut totals.usage, &counts, &usage);
            add_cost(&mut totals.cost, cost.as_ref());
        }
        summary.children.push(ChildSummary {
            name: plan.name.clone(),
            model: plan.model.clone(),
            chunk: plan.chunk,
            custom_id_prefix: plan.custom_id_prefix.clone(),
            phase,
            request_counts: counts,
            usage,
            cost,
            attempts: match chain.attempts.len() {
                1 => Vec::new(),
                _ => chain
                    .attempts
                    .iter()
                    .map(|(name, seen)| AttemptSummary {
                        name: name.clone(),
                        phase: seen.phase,
                        request_counts: seen.request_counts.clone().unwrap_or_default(),
                    })
                    .collect(),
            },
        });
    }
    summary.retries = (max_attempts > 1).then_some(retries);
    summary
}

/// Adds one child's counts and usage to running sums.
pub(super) fn add(into_counts: &mut RequestCounts, into_usage: &mut Usage, counts: &RequestCounts, usage: &Usage) {
    into_counts.total += counts.total;
    into_counts.completed += counts.completed;
    into_counts.failed += counts.failed;
    if let Some(n) = counts.not_run {
        *into_counts.not_run.get_or_insert(0) += n;
    }
    crate::pricing::add_usage(into_usage, usage);
}

fn add_cost(into: &mut Option<Cost>, cost: Option<&Cost>) {
    if let Some(cost) = cost {
        crate::pricing::add_cost(into, cost);
    }
}
