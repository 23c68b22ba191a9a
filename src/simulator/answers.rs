//! Deterministic fake answers per endpoint: the same request body always gives the same answer
//! (everything made up is seeded from a hash of the body). Chat completions, completions and
//! responses say a few sentences about the prompt, or the JSON their format asks for, cut at
//! the request's output-token limit; embeddings are unit vectors ([`super::embeddings`]);
//! usage is counted with the model family's tokenizer ([`super::tokens`]).

use serde_json::{Value, json};

use super::embeddings;
use super::reply::{self, Format, Reply};
use super::rng::{Rng, fnv1a};
use super::tokens::{self, Counter, PromptText, content_text};

/// A fixed `created` timestamp so answers are reproducible byte for byte.
const SIM_CREATED: i64 = 1_700_000_000;

/// A successful answer and the tokens it accounts for.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub body: Value,
    pub input_tokens: u64,
    /// Of `input_tokens`, those "read from the prompt cache".
    pub cached_tokens: u64,
    /// Reasoning tokens included.
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
}

/// A request the simulator answers with an HTTP error instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
}

/// What a model generated: the visible reply and its hidden reasoning.
struct Generated {
    reply: Reply,
    reasoning: u64,
}

impl Generated {
    fn output_tokens(&self) -> u64 {
        self.reply.tokens + self.reasoning
    }
}

/// Answers `body` as the endpoint `endpoint` would.
pub fn answer(endpoint: &str, body: &Value) -> Result<Answer, Refusal> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| refusal("you must provide a model parameter", "model"))?;
    let id = format!("{:016x}", fnv1a(body.to_string().as_bytes()));
    let seed = seed_of(body);
    match endpoint {
        "/v1/chat/completions" => chat(model, &id, seed, body),
        "/v1/completions" => completion(model, &id, seed, body),
        "/v1/responses" => response(model, &id, seed, body),
        "/v1/embeddings" => embeddings::answer(model, body),
        "/v1/moderations" => moderation(model, &id, body),
        other => Err(Refusal {
            status: 400,
            message: format!("The simulator does not implement {other}."),
            param: None,
        }),
    }
}

/// The output-token limits of the endpoints.
const LIMITS: &[&str] = &["max_completion_tokens", "max_tokens", "max_output_tokens"];

/// The seed of what an answer makes up: a hash of the request without its output-token limit,
/// so a higher limit shows more of the same answer, as a model at temperature 0 would.
fn seed_of(body: &Value) -> u64 {
    let Value::Object(fields) = body else {
        return fnv1a(body.to_string().as_bytes());
    };
    let mut bytes = Vec::new();
    for (key, value) in fields.iter().filter(|(key, _)| !LIMITS.contains(&key.as_str())) {
        bytes.extend_from_slice(key.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.to_string().as_bytes());
        bytes.push(0);
    }
    fnv1a(&bytes)
}

/// A 400 naming the parameter at fault.
pub fn refusal(message: &str, param: &str) -> Refusal {
    Refusal {
        status: 400,
        message: message.to_owned(),
        param: Some(param.to_owned()),
    }
}

/// Hidden reasoning tokens per visible one: two for a reasoning model (o1, o3, o4-mini,
/// gpt-5...), none for others.
fn reasoning_factor(model: &str) -> u64 {
    let mut chars = model.chars();
    let o_series = chars.next() == Some('o') && chars.next().is_some_and(|c| c.is_ascii_digit());
    match o_series || model.starts_with("gpt-5") {
        true => 2,
        false => 0,
    }
}

/// The reply to `prompt` and its reasoning, within `limit` output tokens in all.
fn generate(model: &str, format: Format<'_>, prompt: &str, seed: u64, limit: Option<u64>) -> Generated {
    let factor = reasoning_factor(model);
    let visible_limit = limit.map(|limit| limit / (1 + factor));
    let reply = reply::reply(
        format,
        prompt,
        &mut Rng::new(seed),
        tokens::counter(model),
        visible_limit,
    );
    let reasoning = factor * reply.tokens;
    Generated { reply, reasoning }
}

/// The last user message of a `messages`/`input` array and the text of all messages.
fn last_user_and_all(messages: &[Value]) -> (String, String) {
    let texts: Vec<String> = messages.iter().map(|m| content_text(&m["content"])).collect();
    let last_user = messages
        .iter()
        .zip(&texts)
        .rev()
        .find(|(m, _)| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    (last_user, texts.join("\n"))
}

/// The leading system and developer messages: the prefix a batch's lines share, counted as
/// cached input (the prompt cache, simulated, with no minimum length, so cached pricing shows
/// in small tests).
fn shared_prefix(messages: &[Value]) -> &[Value] {
    let shared = messages
        .iter()
        .take_while(|m| matches!(m.get("role").and_then(Value::as_str), Some("system" | "developer")))
        .count();
    &messages[..shared]
}

fn chat(model: &str, id: &str, seed: u64, body: &Value) -> Result<Answer, Refusal> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| refusal("Missing required parameter: 'messages'.", "messages"))?;
    let (last_user, all) = last_user_and_all(messages);
    let prompt = PromptText {
        all: &all,
        prefix: shared_prefix(messages),
        instructions: None,
    };
    let (input, cached) = tokens::counter(model).input(body, &prompt);
    let limit = reply::limit(body, &["max_completion_tokens", "max_tokens"]);
    let out = generate(model, reply::chat_format(body), &last_user, seed, limit);
    let output = out.output_tokens();
    let body = json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": SIM_CREATED,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": out.reply.text, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": if out.reply.cut { "length" } else { "stop" },
        }],
        "usage": {
            "prompt_tokens": input,
            "completion_tokens": output,
            "total_tokens": input + output,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": out.reasoning, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_simulator",
    });
    Ok(Answer {
        body,
        input_tokens: input,
        cached_tokens: cached,
        output_tokens: output,
        reasoning_tokens: out.reasoning,
    })
}

fn completion(model: &str, id: &str, seed: u64, body: &Value) -> Result<Answer, Refusal> {
    let prompt = match body.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => other.to_string(),
        None => return Err(refusal("Missing required parameter: 'prompt'.", "prompt")),
    };
    let input = tokens::counter(model).plain_input(body, &prompt);
    let out = generate(model, Format::Text, &prompt, seed, reply::limit(body, &["max_tokens"]));
    let output = out.output_tokens();
    let body = json!({
        "id": format!("cmpl-{id}"),
        "object": "text_completion",
        "created": SIM_CREATED,
        "model": model,
        "choices": [{"text": out.reply.text, "index": 0, "logprobs": null,
            "finish_reason": if out.reply.cut { "length" } else { "stop" }}],
        "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
    });
    Ok(Answer {
        body,
        input_tokens: input,
        cached_tokens: 0,
        output_tokens: output,
        reasoning_tokens: out.reasoning,
    })
}

fn response(model: &str, id: &str, seed: u64, body: &Value) -> Result<Answer, Refusal> {
    let (prompt, all, prefix) = match body.get("input") {
        Some(Value::String(s)) => (s.clone(), s.clone(), &[][..]),
        Some(Value::Array(items)) => {
            let (prompt, all) = last_user_and_all(items);
            (prompt, all, shared_prefix(items))
        }
        _ => return Err(refusal("Missing required parameter: 'input'.", "input")),
    };
    let counter: Counter = tokens::counter(model);
    let text = PromptText {
        all: &all,
        prefix,
        instructions: body.get("instructions").and_then(Value::as_str),
    };
    let (input, cached) = counter.input(body, &text);
    let limit = reply::limit(body, &["max_output_tokens"]);
    let out = generate(model, reply::responses_format(body), &prompt, seed, limit);
    let output = out.output_tokens();
    let (status, incomplete) = match out.reply.cut {
        true => ("incomplete", json!({"reason": "max_output_tokens"})),
        false => ("completed", Value::Null),
    };
    let body = json!({
        "id": format!("resp_{id}"),
        "object": "response",
        "created_at": SIM_CREATED,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "model": model,
        "output": [{
            "type": "message",
            "id": format!("msg_{id}"),
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": out.reply.text, "annotations": []}],
        }],
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": input,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": out.reasoning},
            "total_tokens": input + output,
        },
    });
    Ok(Answer {
        body,
        input_tokens: input,
        cached_tokens: cached,
        output_tokens: output,
        reasoning_tokens: out.reasoning,
    })
}

fn moderation(model: &str, id: &str, body: &Value) -> Result<Answer, Refusal> {
    let count = match body.get("input") {
        Some(Value::Array(items)) => items.len(),
        Some(_) => 1,
        None => return Err(refusal("Missing required parameter: 'input'.", "input")),
    };
    let result = json!({"flagged": false, "categories": {}, "category_scores": {}});
    let input_tokens = tokens::counter(model).plain_input(body, &body["input"].to_string());
    let body = json!({
        "id": format!("modr-{id}"),
        "model": model,
        "results": vec![result; count],
    });
    Ok(Answer {
        body,
        input_tokens,
        cached_tokens: 0,
        output_tokens: 0,
        reasoning_tokens: 0,
    })
}

#[cfg(test)]
#[path = "answers_tests.rs"]
mod tests;
