//! Input lines in, OpenAI batch output lines out (`id`, `custom_id`,
//! `response.{status_code,request_id,body}`, `error`), so everything downstream of a batch
//! (summaries, sinks, retries of failed lines) reads direct-mode results unchanged.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::gateway::DirectReply;

/// One request line of the input.
#[derive(Debug, Deserialize)]
pub struct InputLine {
    pub custom_id: String,
    pub body: Value,
}

/// Why a request never got an answer worth keeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRun {
    /// The completion window passed first (`batch_expired`, as a batch would say).
    Expired,
    /// The Batch was cancelled first (`batch_cancelled`).
    Cancelled,
}

/// One result line and the file it belongs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultLine {
    pub custom_id: String,
    pub is_error: bool,
    /// The JSON line, without its newline.
    pub json: Vec<u8>,
}

/// Estimated tokens of a request, as `tokensPerMinute` counts them: a quarter of the body's
/// bytes for the input, plus the most output it may ask for (`max_tokens`,
/// `max_completion_tokens` or `max_output_tokens`).
pub fn estimate_tokens(body: &Value, body_bytes: usize) -> u64 {
    let input = (body_bytes as u64).div_ceil(4).max(1);
    let output = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64))
        .unwrap_or(0);
    input + output
}

/// The result line of a request the gateway answered (any status).
pub fn answered(custom_id: &str, reply: &DirectReply) -> ResultLine {
    let body: Value = match serde_json::from_slice(&reply.body) {
        Ok(body) => body,
        Err(_) => json!({"error": {"message": String::from_utf8_lossy(&reply.body),
            "type": null, "param": null, "code": null}}),
    };
    let is_error = !reply.is_success() || !body.is_object();
    let response = json!({
        "status_code": reply.status,
        "request_id": reply.request_id.clone().unwrap_or_default(),
        "body": body,
    });
    line(custom_id, is_error, response, Value::Null)
}

/// The error line of a request that got no answer (`code`: e.g. `request_timeout`).
pub fn failed(custom_id: &str, code: &str, message: &str) -> ResultLine {
    line(custom_id, true, Value::Null, json!({"code": code, "message": message}))
}

/// The error line of a request that never ran.
pub fn not_run(custom_id: &str, why: NotRun) -> ResultLine {
    let (code, message) = match why {
        NotRun::Expired => (
            "batch_expired",
            "This request could not be executed before the completion window expired.",
        ),
        NotRun::Cancelled => (
            "batch_cancelled",
            "This request was not executed because the batch was cancelled.",
        ),
    };
    failed(custom_id, code, message)
}

fn line(custom_id: &str, is_error: bool, response: Value, error: Value) -> ResultLine {
    let id = format!("batch_req_{}", uuid::Uuid::new_v4().simple());
    let value = json!({"id": id, "custom_id": custom_id, "response": response, "error": error});
    ResultLine {
        custom_id: custom_id.to_owned(),
        is_error,
        json: serde_json::to_vec(&value).expect("a JSON value serialises"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use reqwest::header::HeaderMap;

    fn reply(status: u16, body: &str) -> DirectReply {
        DirectReply {
            status,
            request_id: Some("req_1".into()),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        }
    }

    fn parse(line: &ResultLine) -> Value {
        serde_json::from_slice(&line.json).unwrap()
    }

    #[test]
    fn answers_have_the_batch_output_shape() {
        let ok = answered("a", &reply(200, r#"{"usage":{"total_tokens":3}}"#));
        assert!(!ok.is_error);
        let v = parse(&ok);
        assert!(v["id"].as_str().unwrap().starts_with("batch_req_"));
        assert_eq!(v["custom_id"], "a");
        assert_eq!(v["response"]["status_code"], 200);
        assert_eq!(v["response"]["request_id"], "req_1");
        assert_eq!(v["response"]["body"]["usage"]["total_tokens"], 3);
        assert!(v["error"].is_null());

        let bad = answered("b", &reply(400, "not json"));
        assert!(bad.is_error);
        assert_eq!(parse(&bad)["response"]["body"]["error"]["message"], "not json");
    }

    #[test]
    fn lines_that_never_ran_say_why_as_a_batch_would() {
        let v = parse(&not_run("c", NotRun::Expired));
        assert!(v["response"].is_null());
        assert_eq!(v["error"]["code"], "batch_expired");
        assert_eq!(
            parse(&not_run("c", NotRun::Cancelled))["error"]["code"],
            "batch_cancelled"
        );
    }

    #[test]
    fn token_estimate_counts_body_and_max_output() {
        let body = json!({"model": "m", "max_tokens": 100});
        assert_eq!(estimate_tokens(&body, 40), 110);
        assert_eq!(estimate_tokens(&json!({}), 0), 1);
    }
}
