//! Batch API or direct requests: how a gateway is used, what it was found to offer, and the
//! direct-mode pacing limits.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{GatewayLimits, InvalidField};

/// How Batches reach a gateway.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum GatewayMode {
    /// Probe once (`GET /v1/batches?limit=1`): a batch API that answers means Batch, 404 or 405
    /// means Direct. The answer is kept in `status.capabilities`.
    #[default]
    Auto,
    /// Upload the input and create a gateway batch (`/v1/files`, `/v1/batches`).
    Batch,
    /// Send each request line to its endpoint, paced by `spec.limits`, for gateways without a
    /// batch API (vLLM, Ollama, many AI gateways).
    Direct,
}

/// The mode a Batch ran in (a gateway's `Auto` resolved).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum BatchMode {
    /// Through the gateway's batch API.
    Batch,
    /// As paced direct requests.
    Direct,
}

impl std::fmt::Display for BatchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl GatewayMode {
    /// The mode in force, given whether the gateway has a batch API (`None`: not probed).
    /// `None` back means Auto still needs a probe.
    pub fn resolve(self, batch_api: Option<bool>) -> Option<BatchMode> {
        match (self, batch_api) {
            (GatewayMode::Batch, _) => Some(BatchMode::Batch),
            (GatewayMode::Direct, _) => Some(BatchMode::Direct),
            (GatewayMode::Auto, Some(true)) => Some(BatchMode::Batch),
            (GatewayMode::Auto, Some(false)) => Some(BatchMode::Direct),
            (GatewayMode::Auto, None) => None,
        }
    }
}

/// What a probe found the gateway to offer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayCapabilities {
    /// True when `/v1/batches` answers; false when it answered 404 or 405.
    pub batch_api: bool,
    /// When the probe ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probed_at: Option<Time>,
}

/// Direct-mode defaults when `spec.limits` leaves them out.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: u32 = 16;
/// Per-request time limit in direct mode when `spec.limits.requestTimeout` is not set.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Direct-mode pacing, read from a gateway's `spec.limits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectLimits {
    pub max_concurrent_requests: u32,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub request_timeout: Duration,
}

impl Default for DirectLimits {
    fn default() -> Self {
        DirectLimits {
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            requests_per_minute: None,
            tokens_per_minute: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl GatewayLimits {
    /// The direct-mode limits in force; a bad duration is reported with its field path.
    pub fn direct(&self) -> Result<DirectLimits, InvalidField> {
        let request_timeout = match &self.request_timeout {
            None => DEFAULT_REQUEST_TIMEOUT,
            Some(t) => humantime::parse_duration(t).map_err(|e| {
                InvalidField::new(
                    "spec.limits.requestTimeout",
                    format!("{t:?} is not a duration like 60s or 5m ({e})"),
                )
            })?,
        };
        Ok(DirectLimits {
            max_concurrent_requests: self.max_concurrent_requests.unwrap_or(DEFAULT_MAX_CONCURRENT_REQUESTS),
            requests_per_minute: self.requests_per_minute,
            tokens_per_minute: self.tokens_per_minute,
            request_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_needs_a_probe_and_explicit_modes_do_not() {
        assert_eq!(GatewayMode::Auto.resolve(None), None);
        assert_eq!(GatewayMode::Auto.resolve(Some(false)), Some(BatchMode::Direct));
        assert_eq!(GatewayMode::Auto.resolve(Some(true)), Some(BatchMode::Batch));
        assert_eq!(GatewayMode::Direct.resolve(Some(true)), Some(BatchMode::Direct));
        assert_eq!(GatewayMode::Batch.resolve(None), Some(BatchMode::Batch));
    }

    #[test]
    fn direct_limits_default_and_reject_bad_timeouts() {
        assert_eq!(GatewayLimits::default().direct(), Ok(DirectLimits::default()));
        let limits = GatewayLimits {
            max_concurrent_requests: Some(4),
            requests_per_minute: Some(600),
            request_timeout: Some("2s".into()),
            ..GatewayLimits::default()
        };
        let direct = limits.direct().unwrap();
        assert_eq!(direct.max_concurrent_requests, 4);
        assert_eq!(direct.requests_per_minute, Some(600));
        assert_eq!(direct.request_timeout, Duration::from_secs(2));
        let bad = GatewayLimits {
            request_timeout: Some("soon".into()),
            ..GatewayLimits::default()
        };
        assert!(
            bad.direct()
                .unwrap_err()
                .to_string()
                .contains("spec.limits.requestTimeout")
        );
    }
}
