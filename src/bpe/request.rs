//! How a request's input counts in tokens, the same for the cost estimate of an input and the
//! usage the simulator reports for it: every string the model reads in the body (all but
//! `model`), token ids given as numbers in `input` or `prompt`, and the framing of `messages`.

use serde_json::{Map, Value};

/// Tokens each chat message adds to its content (role and separators), as OpenAI counts them.
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens that prime the reply of a chat request.
pub const TOKENS_PER_REPLY: u64 = 3;

/// The input tokens of a request `body`, each string counted by `count`.
pub fn body_tokens(body: &Map<String, Value>, count: &impl Fn(&str) -> u64) -> u64 {
    let framing = match body.get("messages") {
        Some(Value::Array(messages)) => messages.len() as u64 * TOKENS_PER_MESSAGE + TOKENS_PER_REPLY,
        _ => 0,
    };
    let text: u64 = body
        .iter()
        .filter(|(key, _)| key.as_str() != "model")
        .map(|(key, value)| value_tokens(value, matches!(key.as_str(), "input" | "prompt"), count))
        .sum();
    framing + text
}

/// The tokens of the strings in `value`, and of its numbers where they are token ids.
pub fn value_tokens(value: &Value, ids_count: bool, count: &impl Fn(&str) -> u64) -> u64 {
    match value {
        Value::String(text) => count(text),
        Value::Number(_) if ids_count => 1,
        Value::Array(items) => items.iter().map(|v| value_tokens(v, ids_count, count)).sum(),
        Value::Object(fields) => fields.values().map(|v| value_tokens(v, false, count)).sum(),
        _ => 0,
    }
}
