//! What finished Batches used and cost, and what each gateway's budget allows: the only
//! metrics whose labels name objects (a namespace, a BatchGateway, a model, a currency). Model
//! names are the gateway's words, so their label values are capped per process.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::metrics::Catalogued;
use crate::api::{OTHER_MODELS, UNKNOWN_MODEL};

/// Distinct model label values one process exports; later models are counted under
/// [`OTHER_MODELS`] (each Batch's `usage.byModel` is capped too, but many Batches may name
/// many models).
pub const MAX_MODEL_LABELS: usize = 100;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    namespace: String,
    gateway: String,
    model: String,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CostLabels {
    namespace: String,
    gateway: String,
    model: String,
    currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    namespace: String,
    gateway: String,
    currency: String,
}

/// One model's tokens in a finished Batch, as `status.usage.byModel` lists them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelTokens<'a> {
    pub model: &'a str,
    /// Input tokens, cached ones included.
    pub input: u64,
    /// Of `input`, those read from the prompt cache.
    pub cached_input: u64,
    pub output: u64,
}

type Money = Family<CostLabels, Counter<f64, AtomicU64>>;
type Amount = Family<BudgetLabels, Gauge<f64, AtomicU64>>;

#[derive(Default)]
pub(super) struct Spend {
    tokens: Family<TokenLabels, Counter>,
    cost: Money,
    budget_spent: Amount,
    budget_limit: Amount,
    models: ModelNames,
}

impl Spend {
    pub(super) fn register(&self, r: &mut Catalogued) {
        r.add(
            "tokens",
            "Tokens of finished Batches by namespace, gateway, model and type (input, cached_input, output; input includes cached_input); at most 100 model values per process, later ones under (other)",
            None,
            self.tokens.clone(),
        );
        r.add(
            "cost",
            "Cost of finished Batches' priced models by namespace, gateway, model and currency (status.cost.byModel)",
            None,
            self.cost.clone(),
        );
        r.add(
            "budget_spent",
            "Spend in the gateway's current budget window, by namespace, gateway and currency",
            None,
            self.budget_spent.clone(),
        );
        r.add(
            "budget_limit",
            "The gateway's budget per window (spec.limits.budget.amount), by namespace, gateway and currency",
            None,
            self.budget_limit.clone(),
        );
    }

    pub(super) fn tokens(&self, namespace: &str, gateway: &str, used: &ModelTokens) {
        let model = self.models.label(used.model);
        for (r#type, count) in [
            ("input", used.input),
            ("cached_input", used.cached_input),
            ("output", used.output),
        ] {
            let labels = TokenLabels {
                namespace: namespace.to_string(),
                gateway: gateway.to_string(),
                model: model.clone(),
                r#type,
            };
            self.tokens.get_or_create(&labels).inc_by(count);
        }
    }

    pub(super) fn cost(&self, namespace: &str, gateway: &str, model: &str, currency: &str, amount: f64) {
        if !(amount.is_finite() && amount >= 0.0) {
            return;
        }
        let labels = CostLabels {
            namespace: namespace.to_string(),
            gateway: gateway.to_string(),
            model: self.models.label(model),
            currency: currency.to_string(),
        };
        self.cost.get_or_create(&labels).inc_by(amount);
    }

    pub(super) fn budget(&self, namespace: &str, gateway: &str, currency: &str, spent: f64, limit: f64) {
        let labels = BudgetLabels {
            namespace: namespace.to_string(),
            gateway: gateway.to_string(),
            currency: currency.to_string(),
        };
        self.budget_spent.get_or_create(&labels).set(spent);
        self.budget_limit.get_or_create(&labels).set(limit);
    }

    pub(super) fn forget_budget(&self, namespace: &str, gateway: &str, currency: &str) {
        let labels = BudgetLabels {
            namespace: namespace.to_string(),
            gateway: gateway.to_string(),
            currency: currency.to_string(),
        };
        self.budget_spent.remove(&labels);
        self.budget_limit.remove(&labels);
    }
}

/// The model label values handed out so far: the first [`MAX_MODEL_LABELS`] models keep their
/// names, the buckets `(other)` and `(unknown)` always do.
#[derive(Default)]
struct ModelNames(Mutex<HashSet<String>>);

impl ModelNames {
    fn label(&self, model: &str) -> String {
        if model == OTHER_MODELS || model == UNKNOWN_MODEL {
            return model.to_string();
        }
        let mut seen = self.0.lock().expect("model names lock");
        if seen.contains(model) {
            return model.to_string();
        }
        if seen.len() < MAX_MODEL_LABELS {
            seen.insert(model.to_string());
            return model.to_string();
        }
        OTHER_MODELS.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Metrics;

    fn tokens(model: &str, input: u64, cached_input: u64, output: u64) -> ModelTokens<'_> {
        ModelTokens {
            model,
            input,
            cached_input,
            output,
        }
    }

    #[test]
    fn tokens_and_cost_are_summed_by_namespace_gateway_and_model() {
        let metrics = Metrics::new();
        metrics.tokens_used("team-a", "openai", &tokens("gpt-4o-mini", 1000, 200, 50));
        metrics.tokens_used("team-a", "openai", &tokens("gpt-4o-mini", 10, 0, 5));
        metrics.tokens_used("team-b", "openai", &tokens("gpt-4o", 7, 1, 3));
        metrics.cost_incurred("team-a", "openai", "gpt-4o-mini", "USD", 0.000_15);
        metrics.cost_incurred("team-a", "openai", "gpt-4o-mini", "USD", 0.25);
        metrics.cost_incurred("team-b", "openai", "gpt-4o", "EUR", 1.5);
        let text = metrics.encode().unwrap();
        for line in [
            r#"llmbatch_tokens_total{namespace="team-a",gateway="openai",model="gpt-4o-mini",type="input"} 1010"#,
            r#"llmbatch_tokens_total{namespace="team-a",gateway="openai",model="gpt-4o-mini",type="cached_input"} 200"#,
            r#"llmbatch_tokens_total{namespace="team-a",gateway="openai",model="gpt-4o-mini",type="output"} 55"#,
            r#"llmbatch_tokens_total{namespace="team-b",gateway="openai",model="gpt-4o",type="input"} 7"#,
            r#"llmbatch_cost_total{namespace="team-a",gateway="openai",model="gpt-4o-mini",currency="USD"} 0.25015"#,
            r#"llmbatch_cost_total{namespace="team-b",gateway="openai",model="gpt-4o",currency="EUR"} 1.5"#,
            "# TYPE llmbatch_cost counter",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn an_amount_that_is_not_a_cost_adds_nothing() {
        let metrics = Metrics::new();
        for amount in [-1.0, f64::NAN, f64::INFINITY] {
            metrics.cost_incurred("ns", "gw", "m", "USD", amount);
        }
        let text = metrics.encode().unwrap();
        assert!(!text.contains("llmbatch_cost_total{"), "{text}");
    }

    #[test]
    fn model_label_values_are_capped_per_process_with_the_buckets_always_kept() {
        let metrics = Metrics::new();
        for i in 0..MAX_MODEL_LABELS + 20 {
            let model = format!("model-{i}");
            metrics.tokens_used("ns", "gw", &tokens(&model, 1, 0, 1));
            metrics.cost_incurred("ns", "gw", &model, "USD", 1.0);
        }
        metrics.tokens_used("ns", "gw", &tokens("(unknown)", 4, 0, 0));
        metrics.tokens_used("ns", "gw", &tokens("model-0", 1, 0, 0));
        let text = metrics.encode().unwrap();
        let models: HashSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("llmbatch_tokens_total{"))
            .filter_map(|l| l.split("model=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(models.len(), MAX_MODEL_LABELS + 2, "{models:?}");
        for line in [
            r#"llmbatch_tokens_total{namespace="ns",gateway="gw",model="(other)",type="input"} 20"#,
            r#"llmbatch_tokens_total{namespace="ns",gateway="gw",model="(unknown)",type="input"} 4"#,
            r#"llmbatch_tokens_total{namespace="ns",gateway="gw",model="model-0",type="input"} 2"#,
            r#"llmbatch_cost_total{namespace="ns",gateway="gw",model="(other)",currency="USD"} 20"#,
            r#"llmbatch_cost_total{namespace="ns",gateway="gw",model="model-99",currency="USD"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("model-100"), "{text}");
    }

    #[test]
    fn budget_gauges_show_the_last_spend_and_limit_until_forgotten() {
        let metrics = Metrics::new();
        metrics.budget("team-a", "openai", "USD", 12.5, 100.0);
        metrics.budget("team-a", "openai", "USD", 40.125, 100.0);
        metrics.budget("team-b", "azure", "EUR", 0.0, 5.0);
        let text = metrics.encode().unwrap();
        for line in [
            "# TYPE llmbatch_budget_spent gauge",
            "# TYPE llmbatch_budget_limit gauge",
            r#"llmbatch_budget_spent{namespace="team-a",gateway="openai",currency="USD"} 40.125"#,
            r#"llmbatch_budget_limit{namespace="team-a",gateway="openai",currency="USD"} 100.0"#,
            r#"llmbatch_budget_spent{namespace="team-b",gateway="azure",currency="EUR"} 0.0"#,
            r#"llmbatch_budget_limit{namespace="team-b",gateway="azure",currency="EUR"} 5.0"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        metrics.forget_budget("team-b", "azure", "EUR");
        let text = metrics.encode().unwrap();
        assert!(!text.contains("team-b"), "{text}");
        assert!(text.contains(r#"llmbatch_budget_limit{namespace="team-a""#), "{text}");
    }
}
