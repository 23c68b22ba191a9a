//! `summary.json` of a sweep run by `run -f`: counts and usage per model and per chunk, so an
//! evaluation's results can be compared without opening every child's files.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::api::{BatchPhase, RequestCounts, Usage};

use super::{ChildPlan, ObservedChild};

/// The whole summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub request_counts: RequestCounts,
    pub usage: Usage,
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
    pub phase: Option<BatchPhase>,
    pub request_counts: RequestCounts,
    pub usage: Usage,
}

/// Summarises the children that ran (those never created are left out).
pub fn summarise(children: &[ChildPlan], observed: &BTreeMap<String, ObservedChild>) -> Summary {
    let mut summary = Summary::default();
    for plan in children {
        let Some(seen) = observed.get(&plan.name) else { continue };
        let counts = seen.request_counts.clone().unwrap_or_default();
        let usage = seen.usage.clone().unwrap_or_default();
        let succeeded = seen.phase == Some(BatchPhase::Succeeded);
        add(&mut summary.request_counts, &mut summary.usage, &counts, &usage);
        let model = plan.model.clone().unwrap_or_default();
        for totals in [
            summary.by_model.entry(model).or_default(),
            summary.by_chunk.entry(plan.chunk).or_default(),
        ] {
            totals.batches += 1;
            totals.succeeded += u32::from(succeeded);
            add(&mut totals.request_counts, &mut totals.usage, &counts, &usage);
        }
        summary.children.push(ChildSummary {
            name: plan.name.clone(),
            model: plan.model.clone(),
            chunk: plan.chunk,
            custom_id_prefix: plan.custom_id_prefix.clone(),
            phase: seen.phase,
            request_counts: counts,
            usage,
        });
    }
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
    into_usage.prompt_tokens += usage.prompt_tokens;
    into_usage.completion_tokens += usage.completion_tokens;
    into_usage.total_tokens += usage.total_tokens;
}
