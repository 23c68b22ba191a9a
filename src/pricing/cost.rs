//! What usage costs: per model, (input − cached) × input price + cached × cached price +
//! output × output price, per million tokens, times 1 − the batch discount in batch mode.
//! Exact decimals throughout; only `display` is rounded.

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

use super::Prices;
use crate::api::{BatchMode, Cost, MAX_USAGE_MODELS, ModelCost, ModelEstimate, ModelUsage, OTHER_MODELS, Usage};

/// Decimal places of `Cost::display`.
const DISPLAY_PLACES: u32 = 4;

/// The cost of `usage` at `prices`, for a Batch that ran in `mode`. A model without a price (or
/// whose cost does not fit a decimal) is listed in `unpriced`, never counted as zero.
pub fn cost(usage: &Usage, prices: &Prices, mode: BatchMode) -> Cost {
    let factor = prices.factor(mode);
    let mut total = Decimal::ZERO;
    let mut by_model = Vec::new();
    let mut unpriced = Vec::new();
    for model in &usage.by_model {
        let priced = prices
            .find(&model.model)
            .and_then(|entry| Some((model_cost(model, entry, factor)?, entry)));
        match priced.and_then(|(amount, entry)| Some((total.checked_add(amount)?, amount, entry))) {
            Some((sum, amount, entry)) => {
                total = sum;
                by_model.push(ModelCost {
                    model: model.model.clone(),
                    actual: exact(amount),
                    priced_as: Some(entry.describe()),
                });
            }
            None => unpriced.push(model.model.clone()),
        }
    }
    let mut cost = Cost {
        currency: prices.currency.clone(),
        by_model,
        unpriced,
        ..Default::default()
    };
    set_total(&mut cost, total);
    cost
}

/// What an input was estimated to cost before anything was sent: each model's estimated input
/// tokens at its input price (no cache discount assumed) and its requests' output ceilings
/// (`prices.default_max_output` for a request without one) at its output price.
pub fn estimate(estimates: &[ModelEstimate], prices: &Prices, mode: BatchMode) -> Cost {
    let factor = prices.factor(mode);
    let mut total = Decimal::ZERO;
    let mut unpriced = Vec::new();
    for model in estimates {
        let amount = prices.find(&model.model).and_then(|entry| {
            let usage = ModelUsage {
                input_tokens: model.input_tokens,
                output_tokens: model.output_tokens.saturating_add(
                    model
                        .without_output_ceiling
                        .saturating_mul(prices.default_max_output.unwrap_or(0)),
                ),
                ..Default::default()
            };
            total.checked_add(model_cost(&usage, entry, factor)?)
        });
        match amount {
            Some(sum) => total = sum,
            None => unpriced.push(model.model.clone()),
        }
    }
    let mut cost = Cost {
        currency: prices.currency.clone(),
        estimated: Some(exact(total)),
        unpriced,
        ..Default::default()
    };
    show(&mut cost);
    cost
}

/// One model's cost; `None` when it does not fit a decimal.
fn model_cost(usage: &ModelUsage, entry: &super::Entry, factor: Decimal) -> Option<Decimal> {
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    let terms = [
        (usage.input_tokens - cached, entry.input),
        (cached, entry.cached_input),
        (usage.output_tokens, entry.output),
    ];
    let mut sum = Decimal::ZERO;
    for (tokens, price) in terms {
        sum = sum.checked_add(Decimal::from(tokens).checked_mul(price)?)?;
    }
    sum.checked_div(Decimal::from(1_000_000))?.checked_mul(factor)
}

/// Adds `from` (a child's, an attempt's) to `into`, model by model. A cost in another
/// currency is not added: its models are listed as unpriced, with the currency.
pub fn add(into: &mut Option<Cost>, from: &Cost) {
    let sum = into.get_or_insert_with(|| Cost {
        currency: from.currency.clone(),
        ..Default::default()
    });
    if sum.currency != from.currency {
        let models = from.by_model.iter().map(|m| &m.model).chain(&from.unpriced);
        let foreign = models.map(|m| format!("{m} ({})", from.currency));
        merge_unpriced(sum, foreign);
        show(sum);
        return;
    }
    let mut by_model: BTreeMap<String, (Decimal, Option<String>)> = sum
        .by_model
        .drain(..)
        .map(|m| (m.model, (parse(&m.actual), m.priced_as)))
        .collect();
    for model in &from.by_model {
        let name = match by_model.contains_key(&model.model) || by_model.len() < MAX_USAGE_MODELS {
            true => model.model.clone(),
            false => OTHER_MODELS.to_string(),
        };
        let slot = by_model.entry(name).or_insert((Decimal::ZERO, None));
        slot.0 = slot.0.saturating_add(parse(&model.actual));
        slot.1 = slot.1.take().or_else(|| model.priced_as.clone());
    }
    sum.by_model = by_model
        .into_iter()
        .map(|(model, (amount, priced_as))| ModelCost {
            model,
            actual: exact(amount),
            priced_as,
        })
        .collect();
    merge_unpriced(sum, from.unpriced.iter().cloned());
    if let Some(estimated) = &from.estimated {
        let total = sum.estimated.as_deref().map_or(Decimal::ZERO, parse);
        sum.estimated = Some(exact(total.saturating_add(parse(estimated))));
    }
    if !from.actual.is_empty() {
        sum.actual = exact(parse(&sum.actual).saturating_add(parse(&from.actual)));
    }
    show(sum);
}

/// Adds models to `unpriced`, at most [`MAX_USAGE_MODELS`] by name and the rest as
/// [`OTHER_MODELS`], as `usage.byModel` does (a sweep sums many children's lists).
fn merge_unpriced(cost: &mut Cost, models: impl Iterator<Item = String>) {
    for model in models {
        let model = match cost.unpriced.len() < MAX_USAGE_MODELS {
            true => model,
            false => OTHER_MODELS.to_string(),
        };
        if !cost.unpriced.contains(&model) {
            cost.unpriced.push(model);
        }
    }
    cost.unpriced.sort();
}

fn set_total(cost: &mut Cost, total: Decimal) {
    cost.actual = exact(total);
    show(cost);
}

/// The display of the actual cost, or of the estimate (`~0.0123 USD`) while there is none.
fn show(cost: &mut Cost) {
    let unpriced = !cost.unpriced.is_empty();
    cost.display = match (cost.actual.is_empty(), &cost.estimated) {
        (false, _) => display(parse(&cost.actual), &cost.currency, unpriced),
        (true, Some(estimated)) => format!("~{}", display(parse(estimated), &cost.currency, unpriced)),
        (true, None) => String::new(),
    };
}

/// The exact amount, without trailing zeros: `0.000225`.
fn exact(amount: Decimal) -> String {
    amount.normalize().to_string()
}

/// An amount written by this module; anything else (edited by hand) counts as zero here and is
/// still shown as it was in the Batch's own status.
fn parse(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_default()
}

/// `0.0123 USD`, `<0.0001 USD` for a tiny non-zero amount, `+ unpriced` when some model has no
/// price.
pub fn display(amount: Decimal, currency: &str, unpriced: bool) -> String {
    let rounded = amount.round_dp_with_strategy(DISPLAY_PLACES, RoundingStrategy::MidpointAwayFromZero);
    let shown = if rounded.is_zero() && !amount.is_zero() {
        format!("<{}", Decimal::new(1, DISPLAY_PLACES))
    } else {
        format!("{rounded:.prec$}", prec = DISPLAY_PLACES as usize)
    };
    match unpriced {
        true => format!("{shown} {currency} + unpriced"),
        false => format!("{shown} {currency}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Pricing;
    use crate::pricing::{LineTokens, PriceListLookup, add_line};

    fn prices(discount: &str) -> Prices {
        let price = |model: &str, input: &str, cached: Option<&str>, output: &str| crate::api::ModelPrice {
            model: model.into(),
            input_per_million: input.into(),
            cached_input_per_million: cached.map(Into::into),
            output_per_million: output.into(),
        };
        let pricing = Pricing {
            batch_discount: discount.into(),
            models: vec![
                price("gpt-4o-mini", "0.15", Some("0.075"), "0.60"),
                price("text-embedding-3-small", "0.02", None, "0"),
            ],
            ..Default::default()
        };
        Prices::new(&pricing, PriceListLookup::NotReferenced).unwrap()
    }

    fn usage(lines: &[(&str, u64, u64, u64)]) -> Usage {
        let mut usage = Usage::default();
        for (model, input, cached_input, output) in lines {
            let tokens = LineTokens {
                input: *input,
                cached_input: *cached_input,
                output: *output,
                total: None,
            };
            add_line(&mut usage, Some(model), &tokens);
        }
        usage
    }

    #[test]
    fn cached_input_and_output_are_priced_exactly_with_the_batch_discount() {
        let usage = usage(&[("gpt-4o-mini-2024-07-18", 1000, 400, 300)]);
        // (600 × 0.15 + 400 × 0.075 + 300 × 0.60) / 1e6 = 0.0003; half in batch mode.
        let batch = cost(&usage, &prices("50%"), BatchMode::Batch);
        assert_eq!(
            (batch.actual.as_str(), batch.display.as_str()),
            ("0.00015", "0.0002 USD")
        );
        assert_eq!(
            batch.by_model[0].priced_as.as_deref(),
            Some("gpt-4o-mini (spec.pricing)")
        );
        let direct = cost(&usage, &prices("50%"), BatchMode::Direct);
        assert_eq!(direct.actual, "0.0003", "direct mode pays the list price");
        assert!(direct.unpriced.is_empty());
    }

    #[test]
    fn decimal_sums_are_exact_where_floats_are_not() {
        // 0.1 + 0.2 in floats is 0.30000000000000004: here ten lines of 1e6 tokens at 0.01, 0.02, ...
        let mut usage = Usage::default();
        for _ in 0..3 {
            add_line(
                &mut usage,
                Some("text-embedding-3-small"),
                &LineTokens {
                    input: 5_000_000,
                    ..Default::default()
                },
            );
        }
        let sum = cost(&usage, &prices("0%"), BatchMode::Batch);
        assert_eq!(sum.actual, "0.3");
        let mut total = None;
        for part in [&sum, &sum, &sum] {
            add(&mut total, part);
        }
        let total = total.unwrap();
        assert_eq!((total.actual.as_str(), total.display.as_str()), ("0.9", "0.9000 USD"));
        assert_eq!(total.by_model[0].actual, "0.9");
        assert_eq!(display(Decimal::new(3, 7), "USD", false), "<0.0001 USD");
        assert_eq!(display(Decimal::ZERO, "USD", false), "0.0000 USD");
    }

    #[test]
    fn unpriced_models_are_listed_never_counted_as_zero() {
        let usage = usage(&[("gpt-4o-mini", 1_000_000, 0, 0), ("llama-3-70b", 5, 0, 5)]);
        let cost = cost(&usage, &prices("50%"), BatchMode::Batch);
        assert_eq!(cost.unpriced, ["llama-3-70b"]);
        assert_eq!(
            (cost.actual.as_str(), cost.display.as_str()),
            ("0.075", "0.0750 USD + unpriced")
        );
        assert_eq!(cost.by_model.len(), 1);
        let nothing = super::cost(
            &usage,
            &Prices::unavailable("USD", "PriceList x not found"),
            BatchMode::Batch,
        );
        assert_eq!(nothing.unpriced, ["gpt-4o-mini", "llama-3-70b"]);
    }

    #[test]
    fn sums_keep_models_apart_and_other_currencies_out() {
        let a = cost(
            &usage(&[("gpt-4o-mini", 2_000_000, 0, 0)]),
            &prices("50%"),
            BatchMode::Batch,
        );
        let b = cost(
            &usage(&[
                ("gpt-4o-mini", 0, 0, 1_000_000),
                ("text-embedding-3-small", 1_000_000, 0, 0),
                ("x", 1, 0, 0),
            ]),
            &prices("50%"),
            BatchMode::Batch,
        );
        let mut sum = None;
        add(&mut sum, &a);
        add(&mut sum, &b);
        let mut euros = a.clone();
        euros.currency = "EUR".into();
        add(&mut sum, &euros);
        let sum = sum.unwrap();
        let models: Vec<_> = sum
            .by_model
            .iter()
            .map(|m| (m.model.as_str(), m.actual.as_str()))
            .collect();
        assert_eq!(models, [("gpt-4o-mini", "0.45"), ("text-embedding-3-small", "0.01")]);
        assert_eq!(sum.actual, "0.46");
        assert_eq!(sum.unpriced, ["gpt-4o-mini (EUR)", "x"]);
    }

    #[test]
    fn a_sweeps_sum_of_many_childrens_models_stays_bounded() {
        let pricing = Pricing {
            models: vec![crate::api::ModelPrice {
                model: "gpt-4o-mini*".into(),
                input_per_million: "0.15".into(),
                cached_input_per_million: None,
                output_per_million: "0.60".into(),
            }],
            ..Default::default()
        };
        let prices = Prices::new(&pricing, PriceListLookup::NotReferenced).unwrap();
        let mut sum = None;
        for child in 0..40 {
            let names: Vec<String> = (0..10)
                .flat_map(|i| [format!("gpt-4o-mini-{child}-{i}"), format!("free-{child}-{i}")])
                .collect();
            let lines: Vec<(&str, u64, u64, u64)> = names.iter().map(|m| (m.as_str(), 1_000_000, 0, 0)).collect();
            add(&mut sum, &cost(&usage(&lines), &prices, BatchMode::Batch));
        }
        let sum = sum.unwrap();
        assert_eq!(sum.by_model.len(), MAX_USAGE_MODELS + 1, "50 by name and (other)");
        assert_eq!(sum.unpriced.len(), MAX_USAGE_MODELS + 1);
        // 400 priced models at half of 0.15 each: nothing lost in the folding.
        assert_eq!(sum.actual, "30");
        let by_model: Decimal = sum.by_model.iter().map(|m| parse(&m.actual)).sum();
        assert_eq!(by_model, Decimal::from(30));
    }
}
