//! Sending one request line: paced, resent on 429 (holding every sender for `retry-after`),
//! on 5xx and on timeouts with backoff, until it has an answer worth keeping.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use super::lines::{self, InputLine, ResultLine};
use super::pacer::Pacer;
use super::run::DirectError;
use crate::gateway::{DirectReply, GatewayClient, GatewayError, RetryDecision};

/// What every sender of one run shares.
#[derive(Debug)]
pub struct Sender {
    pub client: GatewayClient,
    pub endpoint: String,
    pub pacer: Pacer,
    pub timeout: Duration,
    /// The largest answer one request may receive (a larger one fails its line).
    pub answer_limit: u64,
}

/// Sends `line` until it has a result line. Holds `permit` (one of `maxConcurrentRequests`)
/// throughout, retries included. Errors are the ones that stop the whole run.
pub async fn send_line(
    sender: Arc<Sender>,
    line: InputLine,
    _permit: OwnedSemaphorePermit,
) -> Result<ResultLine, DirectError> {
    let body = serde_json::to_vec(&line.body).expect("a JSON value serialises");
    let tokens = lines::estimate_tokens(&line.body, body.len());
    let mut attempt = 1;
    loop {
        sender.pacer.wait(tokens).await;
        let sent = sender
            .client
            .post_once(
                &sender.endpoint,
                body.clone(),
                Some(&line.custom_id),
                sender.timeout,
                sender.answer_limit,
            )
            .await;
        let decision = match &sent {
            Ok(reply) if reply.is_success() => return Ok(lines::answered(&line.custom_id, reply)),
            Ok(reply) if matches!(reply.status, 401 | 403) => {
                return Err(DirectError::Unauthorized(error_message(reply)));
            }
            Ok(reply) => sender.client.retry_reply(reply, attempt),
            Err(error) => sender.client.retry_error(error, attempt),
        };
        match (decision, sent) {
            (RetryDecision::Retry(wait), sent) => {
                if matches!(&sent, Ok(reply) if reply.status == 429) {
                    sender.pacer.hold_for(wait);
                }
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            (RetryDecision::GiveUp(_), Ok(reply)) => return Ok(lines::answered(&line.custom_id, &reply)),
            (RetryDecision::GiveUp(_), Err(error @ GatewayError::Timeout { .. })) => {
                let message = format!("no answer within {:?}, {attempt} times: {error}", sender.timeout);
                return Ok(lines::failed(&line.custom_id, "request_timeout", &message));
            }
            (RetryDecision::GiveUp(_), Err(error)) if error.is_unusable_answer() => {
                return Ok(lines::failed(&line.custom_id, "unusable_answer", &error.to_string()));
            }
            (RetryDecision::GiveUp(_), Err(error)) if error.is_misconfiguration() => {
                return Err(DirectError::Misconfigured(error.to_string()));
            }
            (RetryDecision::GiveUp(_), Err(error)) => return Err(DirectError::Unavailable(error.to_string())),
        }
    }
}

/// The gateway's `error.message`, or the status alone.
fn error_message(reply: &DirectReply) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|b| b["error"]["message"].as_str().map(str::to_owned));
    match message {
        Some(m) => format!("HTTP {}: {m}", reply.status),
        None => format!("HTTP {}", reply.status),
    }
}
