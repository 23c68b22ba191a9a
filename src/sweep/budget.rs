//! A sweep's `spec.budget.maxCost`: children are created in plan order only while what the
//! sweep's children cost (finished attempts), are estimated at (unfinished ones) and the next
//! child's estimate fit. Running children finish; raising `maxCost` continues the sweep.

use rust_decimal::Decimal;

use super::ChildPlan;
use super::retry::Chain;
use crate::api::{BatchMode, BatchSweepSpec, Cost, SweepPlan};
use crate::pricing::{Prices, decimal};

/// What the sweep's children are estimated and priced with: the sweep's plan (the scan's
/// estimate), the gateway's prices and mode.
#[derive(Clone, Copy, Debug)]
pub struct Spending<'a> {
    pub plan: &'a SweepPlan,
    pub prices: &'a Prices,
    pub mode: BatchMode,
}

/// Why the budget holds children back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub message: String,
}

/// The children of `create` the budget lets start (a prefix: plan order is kept), and why the
/// rest wait. Without `spec.budget` every child starts; without prices none may (nothing can
/// be estimated).
pub(super) fn within_budget(
    spec: &BatchSweepSpec,
    chains: &[Chain<'_>],
    mut create: Vec<ChildPlan>,
    spending: Option<Spending<'_>>,
) -> (Vec<ChildPlan>, Option<Held>) {
    let Some(budget) = &spec.budget else {
        return (create, None);
    };
    let max_cost = decimal(&budget.max_cost).unwrap_or_default();
    let Some(spending) = spending else {
        let message = "spec.budget.maxCost needs the gateway's spec.pricing to estimate children with; none starts";
        let held = (!create.is_empty()).then(|| Held {
            message: message.to_string(),
        });
        create.clear();
        return (create, held);
    };
    let estimate = |child: &ChildPlan| planned(child, spending);
    let committed: Decimal = chains.iter().map(|c| chain_cost(c, || estimate(c.first))).sum();
    let mut total = committed;
    let fits = create
        .iter()
        .take_while(|child| {
            let next = total + estimate(child);
            let fits = next <= max_cost;
            if fits {
                total = next;
            }
            fits
        })
        .count();
    let held = create.get(fits).map(|next| {
        let ran = chains.iter().filter(|c| !c.attempts.is_empty()).count() + fits;
        Held {
            message: format!(
                "maxCost {max} {currency} reached: {ran} of {all} batches started, costing or estimated at {total} \
                 {currency}; the next ({name}) is estimated at {next} {currency}: raise spec.budget.maxCost to continue",
                max = max_cost.normalize(),
                currency = spending.prices.currency,
                all = chains.len(),
                total = total.normalize(),
                name = next.name,
                next = estimate(next).normalize(),
            ),
        }
    });
    create.truncate(fits);
    (create, held)
}

/// What a chain's attempts cost: a finished attempt its actual cost (nothing when it has
/// none), an unfinished one its estimate, or the plan's (`planned`, priced only then) before
/// it has one.
fn chain_cost(chain: &Chain<'_>, planned: impl Fn() -> Decimal) -> Decimal {
    chain
        .attempts
        .iter()
        .map(|(_, seen)| {
            let finished = seen.phase.is_some_and(|p| p.is_terminal());
            match (finished, seen.cost.as_ref()) {
                (_, Some(cost)) if !cost.actual.is_empty() => amount(&cost.actual),
                (true, _) => Decimal::ZERO,
                (false, Some(Cost { estimated: Some(e), .. })) => amount(e),
                (false, _) => planned(),
            }
        })
        .sum()
}

/// A child's estimate from the sweep's scan: its chunk's share, under its model.
fn planned(child: &ChildPlan, spending: Spending<'_>) -> Decimal {
    let estimates = child.planned_estimates(spending.plan);
    let cost = crate::pricing::estimate(&estimates, spending.prices, spending.mode);
    cost.estimated.as_deref().map_or(Decimal::ZERO, amount)
}

fn amount(text: &str) -> Decimal {
    decimal(text).unwrap_or_default()
}
