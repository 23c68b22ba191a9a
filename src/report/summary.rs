//! The per-model summary: requests, success rate, tokens, cost and answer length, and each
//! model's distribution of tokens per answer. Summed as rows stream past; costs are priced at
//! the end with the project's pricing (exact decimals), from the usage summed per model.

use rust_decimal::{Decimal, RoundingStrategy};

use super::answer::Status;
use super::rows::{Cell, Row, total};
use crate::api::{BatchMode, Cost, Usage};
use crate::pricing::{self, Prices};

/// Buckets of the token distribution: 0, 1, 2-3, 4-7, ... 2^30 and more.
pub const BUCKETS: usize = 32;
/// The label of the row summing every model.
pub const TOTAL: &str = "(total)";
/// The label of requests no model is known for.
pub const NO_MODEL: &str = "(none)";

/// Sums of one model's rows.
#[derive(Debug, Clone, Default)]
pub struct ModelTotals {
    pub model: String,
    /// Input requests (results the input does not have are `unexpected`, not requests).
    pub requests: u64,
    pub succeeded: u64,
    /// Failed, never run, or unreadable.
    pub failed: u64,
    /// In the input, in no result file.
    pub missing: u64,
    pub unexpected: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    /// Answers with a length (embeddings have none), and their characters.
    pub answers: u64,
    pub answer_chars: u64,
    /// Usage by the mode it ran in, by the model that answered: what the cost is priced from.
    usage: Vec<(BatchMode, Usage)>,
    /// Answers by total tokens, in [`BUCKETS`] powers of two.
    pub histogram: [u64; BUCKETS],
    /// Set by [`Summary::finish`].
    pub cost: Option<Cost>,
}

impl ModelTotals {
    fn add(&mut self, row: &Row, mode: BatchMode) {
        match row.status {
            Status::Unexpected => {
                self.unexpected += 1;
                return;
            }
            Status::Succeeded => self.succeeded += 1,
            Status::Missing => self.missing += 1,
            Status::Failed | Status::NotRun | Status::Invalid => self.failed += 1,
        }
        self.requests += 1;
        if let Some(chars) = row.answer.as_ref().and_then(|a| a.chars()) {
            self.answers += 1;
            self.answer_chars += chars;
        }
        let Some(tokens) = &row.tokens else { return };
        self.input_tokens += tokens.input;
        self.cached_input_tokens += tokens.cached_input.min(tokens.input);
        self.output_tokens += tokens.output;
        let sum = total(tokens);
        self.total_tokens += sum;
        self.histogram[bucket(sum)] += 1;
        let usage = match self.usage.iter_mut().find(|(m, _)| *m == mode) {
            Some((_, usage)) => usage,
            None => {
                self.usage.push((mode, Usage::default()));
                &mut self.usage.last_mut().expect("just pushed").1
            }
        };
        let answered_by = row.answered_by.as_deref().or(Some(row.model.as_str()));
        pricing::add_line(usage, answered_by, tokens);
    }

    fn merge(&mut self, other: &ModelTotals) {
        self.requests += other.requests;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.missing += other.missing;
        self.unexpected += other.unexpected;
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.output_tokens += other.output_tokens;
        self.total_tokens += other.total_tokens;
        self.answers += other.answers;
        self.answer_chars += other.answer_chars;
        for (i, n) in other.histogram.iter().enumerate() {
            self.histogram[i] += n;
        }
        if let Some(cost) = &other.cost {
            pricing::add_cost(&mut self.cost, cost);
        }
    }

    /// Succeeded of requests, to 4 places (`None` without requests).
    pub fn success_rate(&self) -> Option<Decimal> {
        (self.requests > 0).then(|| fixed(Decimal::from(self.succeeded) / Decimal::from(self.requests), 4))
    }

    /// Mean characters of an answer, to 1 place.
    pub fn mean_answer_chars(&self) -> Option<Decimal> {
        (self.answers > 0).then(|| fixed(Decimal::from(self.answer_chars) / Decimal::from(self.answers), 1))
    }
}

/// `value` rounded (half away from zero) and written with exactly `places` places.
fn fixed(value: Decimal, places: u32) -> Decimal {
    let mut value = value.round_dp_with_strategy(places, RoundingStrategy::MidpointAwayFromZero);
    value.rescale(places);
    value
}

/// The token bucket of `tokens`: 0 for none, else 1 + its highest bit.
pub fn bucket(tokens: u64) -> usize {
    match tokens {
        0 => 0,
        n => (64 - n.leading_zeros() as usize).min(BUCKETS - 1),
    }
}

/// The label of bucket `i`: `0`, `1`, `2-3`, `4-7`, ...
pub fn bucket_label(i: usize) -> String {
    match i {
        0 => "0".to_string(),
        1 => "1".to_string(),
        i if i == BUCKETS - 1 => format!("{}+", 1u64 << (i - 1)),
        i => format!("{}-{}", 1u64 << (i - 1), (1u64 << i) - 1),
    }
}

/// Every model's sums, in the order models were first seen (a matrix's order when given).
#[derive(Debug, Default)]
pub struct Summary {
    pub models: Vec<ModelTotals>,
    /// Set by [`Summary::finish`].
    pub total: ModelTotals,
    /// The currency of the costs, when priced.
    pub currency: Option<String>,
}

/// The summary table's columns.
pub const SUMMARY_COLUMNS: &[&str] = &[
    "model",
    "requests",
    "succeeded",
    "failed",
    "missing",
    "unexpected",
    "success_rate",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "total_tokens",
    "cost",
    "currency",
    "unpriced",
    "mean_answer_chars",
];

impl Summary {
    /// A summary listing `models` first, in that order.
    pub fn with_models(models: &[String]) -> Summary {
        Summary {
            models: models
                .iter()
                .map(|m| ModelTotals {
                    model: m.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Adds a row, answered in `mode`.
    pub fn add(&mut self, row: &Row, mode: BatchMode) {
        let label = if row.model.is_empty() {
            NO_MODEL
        } else {
            row.model.as_str()
        };
        let index = match self.models.iter().position(|m| m.model == label) {
            Some(i) => i,
            None => {
                self.models.push(ModelTotals {
                    model: label.to_string(),
                    ..Default::default()
                });
                self.models.len() - 1
            }
        };
        self.models[index].add(row, mode);
    }

    /// Prices each model's usage with `prices` and sums the total.
    pub fn finish(&mut self, prices: Option<&Prices>) {
        let mut total = ModelTotals {
            model: TOTAL.to_string(),
            ..Default::default()
        };
        for model in &mut self.models {
            if let Some(prices) = prices {
                let mut cost = Some(Cost {
                    currency: prices.currency.clone(),
                    ..Default::default()
                });
                for (mode, usage) in &model.usage {
                    pricing::add_cost(&mut cost, &pricing::cost(usage, prices, *mode));
                }
                model.cost = cost;
            }
            total.merge(model);
        }
        if let Some(prices) = prices {
            total.cost.get_or_insert_with(|| Cost {
                currency: prices.currency.clone(),
                ..Default::default()
            });
            self.currency = Some(prices.currency.clone());
        }
        self.total = total;
    }

    /// The table's rows: every model, then the total.
    pub fn rows(&self) -> Vec<Vec<Cell>> {
        self.models.iter().chain([&self.total]).map(|m| self.cells(m)).collect()
    }

    fn cells(&self, m: &ModelTotals) -> Vec<Cell> {
        let decimal = |d: Option<Decimal>| d.map_or(Cell::Empty, |d| Cell::Decimal(d.to_string()));
        let cost = m.cost.as_ref();
        let actual = cost.map(|c| {
            if c.actual.is_empty() {
                "0".to_string()
            } else {
                c.actual.clone()
            }
        });
        vec![
            Cell::Text(m.model.clone()),
            Cell::Int(m.requests),
            Cell::Int(m.succeeded),
            Cell::Int(m.failed),
            Cell::Int(m.missing),
            Cell::Int(m.unexpected),
            decimal(m.success_rate()),
            Cell::Int(m.input_tokens),
            Cell::Int(m.cached_input_tokens),
            Cell::Int(m.output_tokens),
            Cell::Int(m.total_tokens),
            actual.map_or(Cell::Empty, Cell::Decimal),
            cost.map_or(Cell::Empty, |c| Cell::Text(c.currency.clone())),
            cost.map_or(Cell::Empty, |c| Cell::Text(c.unpriced.join(" "))),
            decimal(m.mean_answer_chars()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ModelPrice, Pricing};
    use crate::pricing::{LineTokens, PriceListLookup};
    use crate::report::answer::Answer;

    fn row(model: &str, status: Status, tokens: Option<(u64, u64)>, answer: Option<&str>) -> Row {
        Row {
            custom_id: String::new(),
            prompt_id: String::new(),
            model: model.into(),
            chunk: None,
            attempt: 1,
            status,
            answer: answer.map(|a| Answer::Text(a.into())),
            error: None,
            answered_by: Some(format!("{model}-2024-07-18")),
            tokens: tokens.map(|(input, output)| LineTokens {
                input,
                cached_input: 0,
                output,
                total: None,
            }),
            cost: None,
        }
    }

    #[test]
    fn models_sum_their_rows_and_are_priced_exactly() {
        let pricing = Pricing {
            models: vec![ModelPrice {
                model: "gpt-4o-mini".into(),
                input_per_million: "0.15".into(),
                cached_input_per_million: None,
                output_per_million: "0.60".into(),
            }],
            ..Default::default()
        };
        let prices = Prices::new(&pricing, PriceListLookup::NotReferenced).unwrap();
        let mut summary = Summary::with_models(&["gpt-4o-mini".into(), "other".into()]);
        for _ in 0..3 {
            summary.add(
                &row("gpt-4o-mini", Status::Succeeded, Some((1000, 100)), Some("four")),
                BatchMode::Batch,
            );
        }
        summary.add(&row("gpt-4o-mini", Status::Failed, None, None), BatchMode::Batch);
        summary.add(
            &row("other", Status::Succeeded, Some((10, 0)), Some("")),
            BatchMode::Direct,
        );
        summary.add(&row("", Status::Missing, None, None), BatchMode::Batch);
        summary.finish(Some(&prices));
        let mini = &summary.models[0];
        assert_eq!((mini.requests, mini.succeeded, mini.failed), (4, 3, 1));
        assert_eq!(mini.success_rate().unwrap().to_string(), "0.7500");
        // 3 × (1000 × 0.15 + 100 × 0.60) / 1e6 × 50% batch discount = 0.000315
        assert_eq!(mini.cost.as_ref().unwrap().actual, "0.000315");
        assert_eq!(mini.mean_answer_chars().unwrap().to_string(), "4.0");
        assert_eq!(mini.histogram[bucket(1100)], 3);
        assert_eq!(summary.models[1].cost.as_ref().unwrap().unpriced, ["other-2024-07-18"]);
        assert_eq!(summary.models[2].model, NO_MODEL);
        let total = &summary.total;
        assert_eq!(
            (total.requests, total.succeeded, total.missing, total.total_tokens),
            (6, 4, 1, 3310)
        );
        assert_eq!(total.cost.as_ref().unwrap().actual, "0.000315");
        let rows = summary.rows();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3][0].text(), TOTAL);
    }

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(
            (
                bucket(0),
                bucket(1),
                bucket(2),
                bucket(3),
                bucket(4),
                bucket(1023),
                bucket(1024)
            ),
            (0, 1, 2, 2, 3, 10, 11)
        );
        assert_eq!(
            (bucket_label(0), bucket_label(2), bucket_label(11)),
            ("0".into(), "2-3".into(), "1024-2047".into())
        );
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }
}
