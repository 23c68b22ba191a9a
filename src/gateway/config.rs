//! Client configuration: base URL, credentials, extra headers, retry policy, timeouts.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::net::AddressPolicy;

/// An API key that never prints.
///
/// `Debug` shows `ApiKey(<redacted>)`; there is no `Display` and no `Serialize`, so the key can only
/// leave this type through a crate-private accessor, which the client uses to build the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a secret key.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself. Only for building the request header (and for redaction checks).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// How transient failures (408, 429, 5xx, timeouts, connection errors) are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first one; `1` disables retries.
    pub max_attempts: u32,
    /// Ceiling of the first backoff delay (full jitter draws below it).
    pub initial_backoff: Duration,
    /// Largest backoff ceiling; the exponential growth stops here.
    pub max_backoff: Duration,
    /// Longest `retry-after` the client is willing to wait; a longer one ends the retries.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn no_retries() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }
}

/// Everything needed to build a [`GatewayClient`](super::GatewayClient).
#[derive(Clone)]
pub struct GatewayConfig {
    /// Base URL ending in `/v1` (with or without a trailing slash); API paths are appended to it.
    pub base_url: url::Url,
    /// Sent as `Authorization: Bearer <key>` when present.
    pub api_key: Option<ApiKey>,
    /// Extra static headers on every request (their values are treated as secrets too).
    pub headers: BTreeMap<String, String>,
    /// Retry policy for transient failures.
    pub retry: RetryPolicy,
    /// Time limit per request. For streamed downloads it bounds the wait for the response
    /// headers and each idle gap in the body, not the whole transfer.
    pub request_timeout: Duration,
    /// Told about every request sent (metrics); none by default.
    pub observer: Option<super::Observer>,
    /// How much of a gateway's answers is read, and for how long.
    pub limits: ResponseLimits,
    /// Which addresses may be connected to ([`AddressPolicy::local`] by default).
    pub addresses: Arc<AddressPolicy>,
}

/// Bounds on what is read from a gateway: a gateway is a remote party, and one that answers
/// without end must cost a bounded amount of memory, disk and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseLimits {
    /// A JSON answer (a batch, a file, a page of a list).
    pub json_bytes: u64,
    /// What is kept of an error answer's body (for its message); the rest is never read.
    pub error_bytes: usize,
    /// One line of a result file.
    pub line_bytes: u64,
    /// One result file in all.
    pub file_bytes: u64,
    /// One result file's whole download (the request timeout bounds each idle gap besides).
    pub download_time: Duration,
}

/// OpenAI's ceiling for a batch input file; result files are bounded at a few times it.
const INPUT_FILE_LIMIT: u64 = 200 * 1024 * 1024;

impl Default for ResponseLimits {
    fn default() -> Self {
        Self {
            json_bytes: 8 * 1024 * 1024,
            error_bytes: 64 * 1024,
            line_bytes: 16 * 1024 * 1024,
            file_bytes: 5 * INPUT_FILE_LIMIT,
            download_time: Duration::from_secs(60 * 60),
        }
    }
}

impl GatewayConfig {
    /// A configuration with no key, no extra headers, the default retry policy and a 60 s timeout.
    pub fn new(base_url: url::Url) -> Self {
        Self {
            base_url,
            api_key: None,
            headers: BTreeMap::new(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(60),
            observer: None,
            limits: ResponseLimits::default(),
            addresses: Arc::new(AddressPolicy::local()),
        }
    }
}

// Manual so that extra header values (which may be credentials, e.g. `api-key`) never print.
impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &self.api_key)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .field("observer", &self.observer)
            .field("limits", &self.limits)
            .field("addresses", &self.addresses)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_debug_is_redacted() {
        let key = ApiKey::new("sk-very-secret-123");
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        assert!(!format!("{key:#?}").contains("sk-very-secret"));
    }

    #[test]
    fn config_debug_hides_key_and_header_values() {
        let mut cfg = GatewayConfig::new("http://127.0.0.1:1/v1".parse().unwrap());
        cfg.api_key = Some(ApiKey::new("sk-very-secret-123"));
        cfg.headers.insert("api-key".into(), "other-secret-456".into());
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("sk-very-secret"), "{dbg}");
        assert!(!dbg.contains("other-secret"), "{dbg}");
        assert!(dbg.contains("api-key"), "{dbg}");
    }
}
