//! A Batch's `status.cost`: estimated when its input is validated, and with the `Priced`
//! condition once its results are counted: the usage priced with the gateway's prices (in the
//! context), the batch discount in batch mode only.

use super::Context;
use crate::api::{BatchMode, BatchStatus, Conditions, condition_types as ct, reasons};

/// Sets `status.cost` to the estimate of the validated input (without prices in `ctx`, nothing).
pub(super) fn estimate(status: &mut BatchStatus, ctx: &Context) {
    let (Some(prices), Some(input)) = (&ctx.prices, &status.input) else {
        return;
    };
    let mode = status.mode.unwrap_or(BatchMode::Batch);
    status.cost = Some(crate::pricing::estimate(&input.estimates, prices, mode));
}

/// Sets `status.cost` from `status.usage` and says in `Priced` whether every model that
/// answered had a price. Without prices in `ctx` (a gateway without `spec.pricing`) neither is
/// set.
pub(super) fn price(status: &mut BatchStatus, ctx: &Context) {
    let Some(prices) = &ctx.prices else {
        return;
    };
    let usage = status.usage.clone().unwrap_or_default();
    let mode = status.mode.unwrap_or(BatchMode::Batch);
    let mut cost = crate::pricing::cost(&usage, prices, mode);
    cost.estimated = status.cost.as_ref().and_then(|c| c.estimated.clone());
    let notes = match prices.notes.is_empty() {
        true => String::new(),
        false => format!(" ({})", prices.notes.join("; ")),
    };
    let (priced, reason, message) = match (cost.unpriced.is_empty(), prices.notes.is_empty()) {
        (true, _) => (true, reasons::PRICED, format!("{} in {mode} mode{notes}", cost.display)),
        (false, true) => (
            false,
            reasons::UNPRICED_MODELS,
            format!(
                "no price for {}: their tokens are not in the cost ({} for the rest)",
                cost.unpriced.join(", "),
                cost.display
            ),
        ),
        (false, false) => (
            false,
            reasons::PRICES_UNAVAILABLE,
            format!(
                "no price for {}{notes}: their tokens are not in the cost",
                cost.unpriced.join(", ")
            ),
        ),
    };
    status.cost = Some(cost);
    status
        .conditions
        .set_condition(ct::PRICED, priced, reason, message, ctx.generation, ctx.now);
}
