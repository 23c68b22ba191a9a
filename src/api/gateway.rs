//! `BatchGateway`: where batches go, with which key, and how hard they may push.

// clippy reads the repeated `type_ = ...` inside printcolumn(...) as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{InvalidField, KeyRef};

/// Pattern every duration field accepts: "500ms", "10s", "5m", "1h30m".
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// An OpenAI-compatible gateway (OpenAI itself, an AI gateway's `/v1`, a self-hosted
/// server) and the limits batches sent through it must respect. One per API key.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "llmbatch.io",
    version = "v1alpha1",
    kind = "BatchGateway",
    namespaced,
    status = "BatchGatewayStatus",
    shortname = "bgw",
    category = "llmbatch",
    doc = "An OpenAI-compatible gateway that Batches are sent to, with its key and limits.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(name = "Mode", type_ = "string", json_path = ".status.mode"),
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.limits) || !has(self.limits.budget) || has(self.pricing)")
    .message("spec.limits.budget needs spec.pricing: a budget in money needs the prices to estimate with"))]
pub struct BatchGatewaySpec {
    /// Base URL of the OpenAI-compatible API, ending in /v1 (paths such as /files are appended).
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/]+(/.*)?/v1/?$')")
        .message("url must be an http(s) base URL ending in /v1, e.g. https://api.openai.com/v1"))]
    pub url: String,
    /// How to authenticate; omitted for gateways that need no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<GatewayAuth>,
    /// Extra static headers sent with every request (not for secrets: use `auth`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Ceilings for the batches sent through this gateway.
    #[serde(default)]
    pub limits: GatewayLimits,
    /// How often running batches are polled.
    #[serde(default)]
    pub polling: Polling,
    /// How long an upstream batch may sit in one state with unchanged request counts before
    /// its Batch's `Progressing` condition turns False (`Stalled`). Never fatal: polling goes on.
    #[serde(default, skip_serializing_if = "StalledAfter::is_empty")]
    pub stalled_after: StalledAfter,
    /// Auto (probe for a batch API), Batch, or Direct (send each line, paced by `limits`).
    #[serde(default)]
    pub mode: super::GatewayMode,
    /// What the models cost: with it, every Batch's status says what its results cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<super::Pricing>,
    /// The webhook of every Batch and BatchSweep sent here that names none of its own (a
    /// sweep's children excepted: the sweep notifies once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<super::Notify>,
}

impl BatchGatewaySpec {
    /// The currency of prices, costs and the budget.
    pub fn currency(&self) -> &str {
        self.pricing.as_ref().map_or("USD", |p| p.currency.as_str())
    }
}

/// Bearer-token authentication from a Secret in the gateway's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAuth {
    /// The Secret key holding the API key, sent as `Authorization: Bearer <key>`.
    pub secret_ref: KeyRef,
}

/// Provider ceilings and pacing budgets. Omitted fields use the OpenAI defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayLimits {
    /// Batches in flight on this key at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_active_batches: Option<u32>,
    /// Estimated input + maximum output tokens admitted per rolling hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_hour: Option<u64>,
    /// Most requests one batch input file may hold (OpenAI: 50000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_requests_per_batch: Option<u64>,
    /// Largest batch input file, as a quantity such as 200Mi (OpenAI: 200 MB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi|Ti|k|K|M|G|T)?$"))]
    pub max_bytes_per_batch: Option<String>,
    /// Direct mode: requests in flight at once (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent_requests: Option<u32>,
    /// Direct mode: requests sent per minute, spread evenly (no bursts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<u64>,
    /// Direct mode: estimated tokens sent per minute (request body bytes / 4 + its max output tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u64>,
    /// Direct mode: time limit of one request, e.g. 60s (default 5m); a request past it is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub request_timeout: Option<String>,
    /// Largest result file (output or errors) read from the gateway, as a quantity such as
    /// 2Gi (default 1000Mi, five times OpenAI's input limit); a larger one is not read, and the
    /// Batch waits with a condition saying so until this is raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi|Ti|k|K|M|G|T)?$"))]
    pub max_result_bytes: Option<String>,
    /// Longest time one result file may take to download, e.g. 30m (default 1h); the request
    /// timeout bounds every pause within it besides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub download_timeout: Option<String>,
    /// Most money spent in any rolling window, in `spec.pricing`'s currency: a Batch is
    /// admitted only while the window's spend, the estimates of admitted unfinished Batches
    /// and its own estimate fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<SpendBudget>,
}

/// A budget in money over a rolling window.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpendBudget {
    /// The most spent per window, a decimal such as `50` or `12.5`.
    #[schemars(regex(pattern = super::PRICE_PATTERN))]
    pub amount: String,
    /// The rolling window, e.g. `24h` or `720h`.
    #[schemars(regex(pattern = r"^([0-9]+(m|h))+$"))]
    pub window: String,
}

/// Adaptive polling: soon after submit, backing off to `max` as the batch ages.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Polling {
    /// First poll interval after submit (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub initial: Option<String>,
    /// Longest poll interval (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub max: Option<String>,
}

/// Per upstream state, how long without a change in the state or the request counts counts as
/// stalled. Omitted fields use the defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StalledAfter {
    /// In `validating` (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub validating: Option<String>,
    /// In `in_progress` with no request count changing (default 6h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub in_progress: Option<String>,
    /// In `finalizing` (default 2h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub finalizing: Option<String>,
}

impl StalledAfter {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Threshold in `validating` (default 1h).
    pub fn validating(&self) -> Result<Duration, InvalidField> {
        let default = Duration::from_secs(3600);
        parse_duration("spec.stalledAfter.validating", self.validating.as_deref(), default)
    }

    /// Threshold in `in_progress` without a count change (default 6h).
    pub fn in_progress(&self) -> Result<Duration, InvalidField> {
        let default = Duration::from_secs(6 * 3600);
        parse_duration("spec.stalledAfter.inProgress", self.in_progress.as_deref(), default)
    }

    /// Threshold in `finalizing` (default 2h).
    pub fn finalizing(&self) -> Result<Duration, InvalidField> {
        let default = Duration::from_secs(2 * 3600);
        parse_duration("spec.stalledAfter.finalizing", self.finalizing.as_deref(), default)
    }
}

/// What the operator last learnt about the gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchGatewayStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Batches of this gateway currently in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_batches: Option<u32>,
    /// Validated Batches waiting for room under `maxActiveBatches` or `tokensPerHour`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_batches: Option<u32>,
    /// Estimated tokens of the Batches admitted in the last hour (what `tokensPerHour` bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admitted_tokens: Option<u64>,
    /// Spend in the current window of `spec.limits.budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<GatewaySpend>,
    /// What the last probe found (whether `/v1/batches` exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<super::GatewayCapabilities>,
    /// The mode Batches sent through this gateway run in (spec.mode, or what Auto found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<super::BatchMode>,
    /// Ready: the gateway is reachable and the key is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// What a gateway's Batches spent in its budget's window.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpend {
    /// The window, as `spec.limits.budget.window` says.
    pub window: String,
    /// What the Batches that finished within the window cost (decimal).
    pub spent: String,
    /// The estimates of the admitted Batches still running (decimal).
    pub committed: String,
    /// `spec.limits.budget.amount`.
    pub budget: String,
    pub currency: String,
}

/// OpenAI's ceiling on requests per batch file.
pub const DEFAULT_MAX_REQUESTS_PER_BATCH: u64 = 50_000;
/// OpenAI's ceiling on batch input file size (200 MB).
pub const DEFAULT_MAX_BYTES_PER_BATCH: u64 = 209_715_200;

impl GatewayLimits {
    /// The request ceiling in force.
    pub fn max_requests(&self) -> u64 {
        self.max_requests_per_batch.unwrap_or(DEFAULT_MAX_REQUESTS_PER_BATCH)
    }

    /// The byte ceiling in force; an unparsable quantity is reported with the field path.
    pub fn max_bytes(&self) -> Result<u64, InvalidField> {
        match &self.max_bytes_per_batch {
            None => Ok(DEFAULT_MAX_BYTES_PER_BATCH),
            Some(q) => super::parse_bytes(q).map_err(|e| InvalidField::new("spec.limits.maxBytesPerBatch", e)),
        }
    }

    /// The largest result file read, when set (`None`: the client's default).
    pub fn max_result_bytes(&self) -> Result<Option<u64>, InvalidField> {
        self.max_result_bytes
            .as_deref()
            .map(|q| super::parse_bytes(q).map_err(|e| InvalidField::new("spec.limits.maxResultBytes", e)))
            .transpose()
    }

    /// The money budget, when set: (amount, window).
    pub fn spend_budget(&self) -> Result<Option<(rust_decimal::Decimal, Duration)>, InvalidField> {
        let Some(budget) = &self.budget else {
            return Ok(None);
        };
        let amount = budget.amount.parse::<rust_decimal::Decimal>().map_err(|e| {
            InvalidField::new(
                "spec.limits.budget.amount",
                format!("{:?} is not a decimal ({e})", budget.amount),
            )
        })?;
        let window = parse_duration("spec.limits.budget.window", Some(&budget.window), Duration::ZERO)?;
        Ok(Some((amount, window)))
    }

    /// The longest download of one result file, when set (`None`: the client's default).
    pub fn download_timeout(&self) -> Result<Option<Duration>, InvalidField> {
        self.download_timeout
            .as_deref()
            .map(|t| parse_duration("spec.limits.downloadTimeout", Some(t), Duration::ZERO))
            .transpose()
    }
}

impl Polling {
    /// First poll interval (default 10s).
    pub fn initial(&self) -> Result<Duration, InvalidField> {
        parse_duration("spec.polling.initial", self.initial.as_deref(), Duration::from_secs(10))
    }

    /// Longest poll interval (default 5m).
    pub fn max(&self) -> Result<Duration, InvalidField> {
        parse_duration("spec.polling.max", self.max.as_deref(), Duration::from_secs(300))
    }
}

fn parse_duration(field: &'static str, text: Option<&str>, default: Duration) -> Result<Duration, InvalidField> {
    match text {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t)
            .map_err(|e| InvalidField::new(field, format!("{t:?} is not a duration like 10s or 5m ({e})"))),
    }
}
