//! Direct requests: one request body POSTed to an endpoint (`/v1/chat/completions` ...), for
//! gateways without a batch API. One attempt per call: the caller paces and retries, because a
//! retry is a request that its rate limits must count.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use super::client::{GatewayClient, read_capped};
use super::error::GatewayError;
use super::retry::{self, Failure, RetryDecision};

const OP: &str = "send request";
/// OpenAI accepts `X-Client-Request-Id` values of up to 512 ASCII characters.
const MAX_CLIENT_REQUEST_ID: usize = 512;

/// The gateway's answer to one direct request, whatever its status.
#[derive(Debug, Clone)]
pub struct DirectReply {
    pub status: u16,
    /// The gateway's `x-request-id`, when it sent one.
    pub request_id: Option<String>,
    pub headers: HeaderMap,
    /// The body; on an error status, with every configured secret replaced by `<redacted>`.
    pub body: Bytes,
}

impl DirectReply {
    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl GatewayClient {
    /// POSTs the JSON `body` to `endpoint` (a path such as `/v1/embeddings`, resolved under the
    /// base URL) once, within `timeout`. Every HTTP status but a redirect is `Ok`; `Err` means
    /// no usable answer (connection failure, reset, timeout, a redirect, an answer over the
    /// `answer_limit` bytes). `client_request_id` is sent as `X-Client-Request-Id` when it is
    /// printable ASCII of at most 512 characters.
    pub async fn post_once(
        &self,
        endpoint: &str,
        body: Vec<u8>,
        client_request_id: Option<&str>,
        timeout: Duration,
        answer_limit: u64,
    ) -> Result<DirectReply, GatewayError> {
        let segments: Vec<&str> = endpoint
            .trim_start_matches('/')
            .trim_start_matches("v1/")
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let url = self.url(&segments);
        let mut request = self
            .inner
            .http
            .request(Method::POST, url)
            .timeout(timeout)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(value) = client_request_id.and_then(client_request_id_header) {
            request = request.header("x-client-request-id", value);
        }
        let response = request.send().await.map_err(|e| GatewayError::transport(OP, e))?;
        if response.status().is_redirection() {
            return Err(self.redirect_error(OP, &response));
        }
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|id| self.redact(id));
        let body = if (200..300).contains(&status) {
            read_capped(OP, response, answer_limit, "an answer").await?
        } else {
            let body = self.error_body(response).await;
            Bytes::from(self.scrub(&String::from_utf8_lossy(&body)))
        };
        Ok(DirectReply {
            status,
            request_id,
            headers,
            body,
        })
    }

    /// Whether and when to resend after a reply with an error status (429, 5xx: yes, after
    /// `retry-after` or a jittered backoff; 4xx: no), by the client's retry policy.
    pub fn retry_reply(&self, reply: &DirectReply, attempt: u32) -> RetryDecision {
        let failure = Failure::Response {
            status: reply.status,
            headers: &reply.headers,
        };
        retry::decide(&self.inner.retry, failure, attempt, rand::random(), SystemTime::now())
    }

    /// Whether and when to resend after a request that got no answer.
    pub fn retry_error(&self, error: &GatewayError, attempt: u32) -> RetryDecision {
        self.decide(error, &HeaderMap::new(), attempt)
    }
}

fn client_request_id_header(id: &str) -> Option<HeaderValue> {
    let printable = id.bytes().all(|b| (0x20..0x7f).contains(&b));
    (printable && !id.is_empty() && id.len() <= MAX_CLIENT_REQUEST_ID)
        .then(|| HeaderValue::from_str(id).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_sent_only_when_openai_accepts_them() {
        assert!(client_request_id_header("req-1").is_some());
        assert!(client_request_id_header("").is_none());
        assert!(client_request_id_header("caf\u{e9}").is_none());
        assert!(client_request_id_header("a\nb").is_none());
        assert!(client_request_id_header(&"x".repeat(513)).is_none());
    }
}
