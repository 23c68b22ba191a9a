//! Prices: a BatchGateway's `spec.pricing`, the cluster-scoped `PriceList` it may reference,
//! and the cost a Batch or BatchSweep reports in its status. Amounts are decimal strings,
//! never floats: `engine::cost` reads them as exact decimals.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A price per million tokens: digits with an optional fraction, e.g. `0.15` or `2.50`.
pub const PRICE_PATTERN: &str = r"^[0-9]{1,6}(\.[0-9]{1,9})?$";
/// A percentage from 0% to 100%, e.g. `50%` or `12.5%`.
pub const PERCENT_PATTERN: &str = r"^(100(\.0{1,4})?|[0-9]{1,2}(\.[0-9]{1,4})?)%$";
/// A model name, or a prefix ending in `*` (`gpt-4o*`).
pub const MODEL_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*\*?$";
/// An ISO 4217 currency code.
pub const CURRENCY_PATTERN: &str = r"^[A-Z]{3}$";

/// What a gateway's models cost and how that applies to the Batches sent through it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.models) || has(self.priceListRef)")
    .message("pricing needs models, a priceListRef, or both"))]
pub struct Pricing {
    /// The currency of every price here and in the referenced PriceList (ISO 4217, default USD).
    #[serde(default = "default_currency")]
    #[schemars(regex(pattern = CURRENCY_PATTERN))]
    pub currency: String,
    /// The discount of work sent through the gateway's batch API, as a percentage (default
    /// `50%`, OpenAI's); direct mode pays the list price.
    #[serde(default = "default_discount")]
    #[schemars(regex(pattern = PERCENT_PATTERN))]
    pub batch_discount: String,
    /// Prices of models; an entry here replaces the PriceList's entry for the same `model`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["model".into()]))]
    pub models: Vec<ModelPrice>,
    /// A cluster-scoped PriceList with the prices a platform team keeps for many namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_list_ref: Option<PriceListRef>,
    /// The output tokens a request without `max_tokens` (or `max_completion_tokens`,
    /// `max_output_tokens`) counts in a cost estimate; without it such requests estimate no
    /// output, and the estimate says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub default_max_output_tokens: Option<u64>,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            currency: default_currency(),
            batch_discount: default_discount(),
            models: Vec::new(),
            price_list_ref: None,
            default_max_output_tokens: None,
        }
    }
}

fn default_currency() -> String {
    "USD".to_string()
}

fn default_discount() -> String {
    "50%".to_string()
}

/// A PriceList, by name (PriceLists are cluster-scoped).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct PriceListRef {
    /// Name of the PriceList.
    pub name: String,
}

/// The price of one model, per million tokens. `model` is a name (`gpt-4o-mini`, which also
/// prices its dated snapshots such as `gpt-4o-mini-2024-07-18`) or a prefix ending in `*`
/// (`gpt-4o*`); the most specific entry matching a model prices it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelPrice {
    /// The model name, or a prefix ending in `*`.
    #[schemars(regex(pattern = MODEL_PATTERN), length(max = 128))]
    pub model: String,
    /// Input (prompt) tokens, per million, e.g. `0.15`.
    #[schemars(regex(pattern = PRICE_PATTERN))]
    pub input_per_million: String,
    /// Cached input tokens, per million (default: the input price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = PRICE_PATTERN))]
    pub cached_input_per_million: Option<String>,
    /// Output tokens (reasoning tokens included), per million, e.g. `0.60` (`0` for embeddings).
    #[schemars(regex(pattern = PRICE_PATTERN))]
    pub output_per_million: String,
}

/// Model prices kept once for the whole cluster, referenced by BatchGateways'
/// `spec.pricing.priceListRef`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[kube(
    group = "llmbatch.io",
    version = "v1alpha1",
    kind = "PriceList",
    shortname = "pl",
    category = "llmbatch",
    doc = "Model prices kept once for the whole cluster, referenced by BatchGateways' spec.pricing.priceListRef.",
    printcolumn(name = "Currency", type_ = "string", json_path = ".spec.currency"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct PriceListSpec {
    /// The currency of the prices (ISO 4217, default USD); a gateway pricing in another
    /// currency does not use them.
    #[serde(default = "default_currency")]
    #[schemars(regex(pattern = CURRENCY_PATTERN))]
    pub currency: String,
    /// Where the figures come from (a provider's pricing page) and when they were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub source: Option<String>,
    /// Prices of models, one entry per `model`.
    #[schemars(length(max = 1000))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["model".into()]))]
    pub models: Vec<ModelPrice>,
}

/// What a Batch's (or a sweep's) results cost, computed from `status.usage` and the gateway's
/// prices.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    /// The currency of every amount.
    pub currency: String,
    /// What the input was estimated to cost before anything was sent (its input tokens and
    /// its requests' output ceilings at the gateway's prices), a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated: Option<String>,
    /// The exact cost of the priced models' answers, as a decimal string (never rounded);
    /// empty until the results are counted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actual: String,
    /// `actual` rounded for people and the Cost column, e.g. `0.0123 USD` (`+ unpriced` when
    /// some model had no price); before the results, the estimate as `~0.0123 USD`.
    pub display: String,
    /// Cost per model that answered (priced models only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_model: Vec<ModelCost>,
    /// Models that answered and have no price: their tokens are not in `actual`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpriced: Vec<String>,
}

/// The cost of one model's answers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelCost {
    /// The model, as the gateway named it in its answers.
    pub model: String,
    /// Its exact cost, a decimal string.
    pub actual: String,
    /// The price entry that priced it (`model` of the entry, and where it came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priced_as: Option<String>,
}
