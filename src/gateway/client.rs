//! The client handle and the machinery every operation shares: URLs, sending, error bodies, retries.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::config::{GatewayConfig, ResponseLimits, RetryPolicy};
use super::error::GatewayError;
use super::error_body::{MAX_ERROR_MESSAGE, parse_error_body, truncate};
use super::observer::{Observer, RequestOutcome};
use super::retry::{self, Failure, RetryDecision};

/// Connection setup never waits longer than this, whatever the request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of an OpenAI-compatible Files + Batches API. Cheap to clone.
#[derive(Clone)]
pub struct GatewayClient {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) http: reqwest::Client,
    base_url: Url,
    pub(super) retry: RetryPolicy,
    pub(super) timeout: Duration,
    pub(super) limits: ResponseLimits,
    /// The key and extra header values (as written and as JSON escapes them), scrubbed from
    /// everything a gateway sends that we keep or print.
    secrets: Vec<String>,
    observer: Option<Observer>,
}

/// One failed attempt: the error plus the response headers that steer the retry decision.
pub(super) struct AttemptError {
    pub(super) error: GatewayError,
    headers: HeaderMap,
}

impl From<GatewayError> for AttemptError {
    fn from(error: GatewayError) -> Self {
        Self {
            error,
            headers: HeaderMap::new(),
        }
    }
}

impl fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayClient")
            .field("base_url", &self.inner.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl GatewayClient {
    /// Builds a client. Fails on a base URL that is not http(s) or carries a user or password,
    /// an IP address the policy refuses, or a key or header that is not a valid HTTP header
    /// value (the error never repeats the value). Redirects are never followed, and names are
    /// resolved through the address policy.
    pub fn new(config: GatewayConfig) -> Result<Self, GatewayError> {
        validate_base_url(&config.base_url)?;
        config
            .addresses
            .check_url(&config.base_url)
            .map_err(|refused| GatewayError::AddressRefused {
                operation: "connect",
                refused,
            })?;
        let mut secrets = Vec::new();
        let headers = default_headers(&config, &mut secrets)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(crate::net::GuardedResolver(config.addresses.clone()))
            .default_headers(headers)
            .connect_timeout(config.request_timeout.min(MAX_CONNECT_TIMEOUT))
            .user_agent(concat!("llm-batch-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GatewayError::InvalidConfig(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url: config.base_url,
                retry: config.retry,
                timeout: config.request_timeout,
                limits: config.limits,
                secrets,
                observer: config.observer,
            }),
        })
    }

    /// The base URL requests are sent under.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// `base_url` + path segments, each percent-encoded (ids are never trusted to be URL-safe).
    pub(super) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base_url.clone();
        url.path_segments_mut()
            .expect("base URL validated in GatewayClient::new")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// Runs `attempt` until it succeeds, fails terminally, or the retry policy says stop.
    pub(super) async fn execute<T, F, Fut>(&self, operation: &'static str, mut attempt: F) -> Result<T, GatewayError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let mut number = 1;
        loop {
            let failed = match attempt().await {
                Ok(value) => return Ok(value),
                Err(failed) => failed,
            };
            match self.decide(&failed.error, &failed.headers, number) {
                RetryDecision::Retry(delay) => {
                    tracing::warn!(
                        operation,
                        status = failed.error.status(),
                        attempt = number,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        error = %failed.error,
                        "gateway request failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    number += 1;
                }
                RetryDecision::GiveUp(reason) => {
                    tracing::debug!(operation, attempt = number, ?reason, "gateway request failed");
                    return Err(failed.error);
                }
            }
        }
    }

    /// The retry decision for one failed attempt, with fresh jitter and the current time.
    pub(super) fn decide(&self, error: &GatewayError, headers: &HeaderMap, attempt: u32) -> RetryDecision {
        let failure = match error.status() {
            Some(status) => Failure::Response { status, headers },
            None => Failure::Transport {
                retryable: error.is_retryable(),
            },
        };
        let jitter = rand::random::<f64>();
        retry::decide(&self.inner.retry, failure, attempt, jitter, SystemTime::now())
    }

    /// A request with the per-request timeout (covering the whole body).
    pub(super) fn request(&self, method: reqwest::Method, url: &Url) -> RequestBuilder {
        self.inner.http.request(method, url.clone()).timeout(self.inner.timeout)
    }

    /// Sends `req` and decodes a JSON success body of at most the JSON limit, scrubbed of
    /// every configured secret.
    pub(super) async fn attempt_json<T: DeserializeOwned + Serialize>(
        &self,
        operation: &'static str,
        req: RequestBuilder,
    ) -> Result<T, AttemptError> {
        let resp = self.send_checked(operation, req).await?;
        let limit = self.inner.limits.json_bytes;
        let body = read_capped(operation, resp, limit, "an answer").await?;
        Ok(self.decode(operation, &body)?)
    }

    /// Decodes a JSON answer. A gateway that echoes the key or a header value in any field
    /// gets it replaced by `<redacted>`: the value is written back as JSON (where every string
    /// appears in one spelling) and read again when a secret shows.
    pub(super) fn decode<T: DeserializeOwned + Serialize>(
        &self,
        operation: &'static str,
        body: &[u8],
    ) -> Result<T, GatewayError> {
        let value: T = serde_json::from_slice(body).map_err(|e| GatewayError::Decode {
            operation,
            message: self.redact(&e.to_string()),
        })?;
        if self.inner.secrets.is_empty() {
            return Ok(value);
        }
        let text = serde_json::to_string(&value).map_err(|e| GatewayError::Decode {
            operation,
            message: e.to_string(),
        })?;
        let clean = self.scrub(&text);
        if clean == text {
            return Ok(value);
        }
        serde_json::from_str(&clean).map_err(|e| GatewayError::Decode {
            operation,
            message: self.redact(&e.to_string()),
        })
    }

    /// Sends `req`, accepting any success status and ignoring the body.
    pub(super) async fn attempt_ok(&self, operation: &'static str, req: RequestBuilder) -> Result<(), AttemptError> {
        self.send_checked(operation, req).await.map(drop)
    }

    /// Sends `req` and returns the response once its headers arrived with a success status.
    /// Time limits are the request builder's (see [`Self::request`]).
    pub(super) async fn send_checked(
        &self,
        operation: &'static str,
        req: RequestBuilder,
    ) -> Result<Response, AttemptError> {
        tracing::debug!(operation, "gateway request");
        let started = Instant::now();
        let sent = req.send().await.map_err(|e| GatewayError::transport(operation, e));
        let outcome = match &sent {
            Ok(resp) => RequestOutcome::Status(resp.status().as_u16()),
            Err(GatewayError::Timeout { .. }) => RequestOutcome::Timeout,
            Err(_) => RequestOutcome::Transport,
        };
        self.observe(operation, outcome, started);
        let resp = sent?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        if resp.status().is_redirection() {
            return Err(self.redirect_error(operation, &resp).into());
        }
        Err(self.api_error(operation, resp).await)
    }

    /// Tells the observer (if any) how a request ended.
    pub(super) fn observe(&self, operation: &'static str, outcome: RequestOutcome, started: Instant) {
        if let Some(observer) = &self.inner.observer {
            observer.0.observe(operation, outcome, started.elapsed());
        }
    }

    /// A 3xx answer, naming the host it pointed at (never the whole location).
    pub(super) fn redirect_error(&self, operation: &'static str, resp: &Response) -> GatewayError {
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| self.inner.base_url.join(l).ok())
            .and_then(|u| u.host_str().map(|h| self.redact(h)))
            .unwrap_or_else(|| "no usable location".to_owned());
        GatewayError::Redirect {
            operation,
            status: resp.status().as_u16(),
            location,
        }
    }

    /// Turns an error response into [`GatewayError::Api`] with the gateway's message.
    async fn api_error(&self, operation: &'static str, resp: Response) -> AttemptError {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = self.error_body(resp).await;
        let parsed = parse_error_body(&body);
        let message = parsed
            .message
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("unknown error").to_owned());
        AttemptError {
            error: GatewayError::Api {
                operation,
                status: status.as_u16(),
                message: self.redact(&message),
                code: parsed.code.map(|c| self.redact(&c)),
                kind: parsed.kind.map(|k| self.redact(&k)),
            },
            headers,
        }
    }

    /// The start of an error answer's body, within the request timeout; the rest is never read.
    pub(super) async fn error_body(&self, resp: Response) -> Bytes {
        let limit = self.inner.limits.error_bytes;
        tokio::time::timeout(self.inner.timeout, read_prefix(resp, limit))
            .await
            .unwrap_or_default()
    }

    /// Removes every configured secret from text that came from the gateway (an echoing proxy
    /// must not turn our key into an error message).
    pub(super) fn redact(&self, text: &str) -> String {
        truncate(self.scrub(text), MAX_ERROR_MESSAGE)
    }

    /// `text` with every configured secret replaced by `<redacted>`.
    pub(super) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.inner.secrets {
            out = out.replace(secret.as_str(), "<redacted>");
        }
        out
    }
}

/// The whole body, failing as soon as it passes `limit` bytes (what it announces included).
pub(super) async fn read_capped(
    operation: &'static str,
    mut resp: Response,
    limit: u64,
    what: &'static str,
) -> Result<Bytes, GatewayError> {
    let too_large = GatewayError::TooLarge { operation, what, limit };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large);
    }
    // Chunks are kept as received and joined once at the end: a body cut off at the limit
    // never held more than the limit (a growing buffer would have doubled past it).
    let (mut chunks, mut length) = (Vec::new(), 0u64);
    while let Some(chunk) = resp.chunk().await.map_err(|e| GatewayError::transport(operation, e))? {
        length += chunk.len() as u64;
        if length > limit {
            return Err(too_large);
        }
        chunks.push(chunk);
    }
    if chunks.len() == 1 {
        return Ok(chunks.pop().expect("one chunk"));
    }
    Ok(chunks.concat().into())
}

/// At most `limit` bytes of the body; a broken body ends what was read.
async fn read_prefix(mut resp: Response, limit: usize) -> Bytes {
    let mut body = BytesMut::new();
    while body.len() < limit
        && let Ok(Some(chunk)) = resp.chunk().await
    {
        body.extend_from_slice(&chunk);
    }
    body.truncate(limit);
    body.freeze()
}

fn validate_base_url(url: &Url) -> Result<(), GatewayError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(GatewayError::InvalidConfig(format!(
            "base URL scheme must be http or https, not {:?}",
            url.scheme()
        )));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(GatewayError::InvalidConfig(
            "base URL must be an absolute http(s) URL with a host".into(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(GatewayError::InvalidConfig(
            "base URL must not carry a user or password: give the key in spec.auth or a header in spec.headers".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(GatewayError::InvalidConfig(
            "base URL must not have a query or fragment".into(),
        ));
    }
    Ok(())
}

/// Authorization and extra headers, all marked sensitive so they never print.
fn default_headers(config: &GatewayConfig, secrets: &mut Vec<String>) -> Result<HeaderMap, GatewayError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| GatewayError::InvalidConfig(format!("header name {name:?} is not valid")))?;
        headers.insert(
            name.clone(),
            sensitive(value, || format!("value of header {name} is not valid"))?,
        );
        remember_secret(secrets, value);
    }
    if let Some(key) = &config.api_key {
        let bearer = format!("Bearer {}", key.expose());
        headers.insert(
            AUTHORIZATION,
            sensitive(&bearer, || "API key is not a valid header value".into())?,
        );
        remember_secret(secrets, key.expose());
    }
    Ok(headers)
}

fn sensitive(value: &str, what: impl FnOnce() -> String) -> Result<HeaderValue, GatewayError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| GatewayError::InvalidConfig(what()))?;
    value.set_sensitive(true);
    Ok(value)
}

fn remember_secret(secrets: &mut Vec<String>, value: &str) {
    // Very short values (flags like "1") would only mangle messages; they are not secrets.
    if value.len() >= 6 {
        let escaped = serde_json::to_string(value).expect("a string serialises");
        let escaped = &escaped[1..escaped.len() - 1];
        if escaped != value {
            secrets.push(escaped.to_owned());
        }
        secrets.push(value.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::ApiKey;

    fn client_with_key(key: &str) -> GatewayClient {
        let mut cfg = GatewayConfig::new("http://127.0.0.1:9/v1".parse().unwrap());
        cfg.api_key = Some(ApiKey::new(key));
        GatewayClient::new(cfg).unwrap()
    }

    #[test]
    fn urls_append_encoded_segments_with_or_without_trailing_slash() {
        for base in ["http://h:1/v1", "http://h:1/v1/"] {
            let client = GatewayClient::new(GatewayConfig::new(base.parse().unwrap())).unwrap();
            assert_eq!(
                client.url(&["batches", "batch_1", "cancel"]).as_str(),
                "http://h:1/v1/batches/batch_1/cancel"
            );
            assert_eq!(
                client.url(&["files", "a/b?c"]).as_str(),
                "http://h:1/v1/files/a%2Fb%3Fc"
            );
        }
    }

    #[test]
    fn invalid_configs_are_rejected_without_echoing_secrets() {
        let bad_scheme = GatewayClient::new(GatewayConfig::new("ftp://h/v1".parse().unwrap()));
        assert!(matches!(bad_scheme, Err(GatewayError::InvalidConfig(_))));
        let mut cfg = GatewayConfig::new("http://h/v1".parse().unwrap());
        cfg.api_key = Some(ApiKey::new("sk-secret\nwith-newline"));
        let err = GatewayClient::new(cfg).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("sk-secret"), "{text}");
    }

    #[test]
    fn gateway_messages_are_scrubbed_of_the_key() {
        let client = client_with_key("sk-live-0123456789");
        let text = client.redact("Incorrect API key provided: sk-live-0123456789.");
        assert_eq!(text, "Incorrect API key provided: <redacted>.");
        assert!(client.redact(&"x".repeat(2000)).len() < 600);
    }

    #[test]
    fn a_base_url_with_a_user_or_password_is_refused_without_repeating_it() {
        for url in ["http://user:hunter2-pw@h/v1", "http://hunter2-user@h/v1"] {
            let err = GatewayClient::new(GatewayConfig::new(url.parse().unwrap())).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("spec.auth"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn answers_echoing_the_key_in_any_field_or_spelling_are_scrubbed() {
        let client = client_with_key("sk-live/0123456789");
        let echoed = br#"{"id":"b1","status":"failed","metadata":{"k":"sk-live\/0123456789"},"errors":{"data":[{"message":"key sk-live/0123456789"}]}}"#;
        let batch: super::super::Batch = client.decode("get batch", echoed).unwrap();
        let text = serde_json::to_string(&batch).unwrap();
        assert!(!text.contains("0123456789"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
        let wrongly_typed = br#"{"id":"b1","status":"failed","request_counts":"sk-live/0123456789"}"#;
        let err = client
            .decode::<super::super::Batch>("get batch", wrongly_typed)
            .unwrap_err();
        assert!(!err.to_string().contains("0123456789"), "{err}");
        assert!(err.is_unusable_answer());
    }

    #[test]
    fn client_debug_shows_no_key() {
        let client = client_with_key("sk-live-0123456789");
        assert!(!format!("{client:?}").contains("sk-live"));
    }
}
