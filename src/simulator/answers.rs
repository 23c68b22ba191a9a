//! Deterministic fake answers per endpoint: the same request body always gives the same answer.

use serde_json::{Value, json};

/// A fixed `created` timestamp so answers are reproducible byte for byte.
const SIM_CREATED: i64 = 1_700_000_000;
/// Default embedding width when `dimensions` is not given.
const DEFAULT_DIMENSIONS: usize = 16;
/// Widest embedding the simulator will produce.
const MAX_DIMENSIONS: usize = 4096;
/// How much of the prompt is echoed back in a generated text.
const ECHO_CHARS: usize = 200;

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

/// 64-bit FNV-1a: a stable hash (std's hasher may change between Rust versions).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One step of splitmix64, a tiny stable PRNG.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    mix(*state)
}

/// splitmix64's finalizer: spreads every input bit over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps a hash to `0..1` (mixed first: FNV's high bits vary little between similar strings).
pub fn unit_interval(hash: u64) -> f64 {
    (mix(hash) >> 11) as f64 / (1u64 << 53) as f64
}

/// Tokens for a text: about one per four characters, at least one.
pub fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

/// The prompt cache, simulated: the leading system and developer messages (the prefix a batch's
/// lines share) count as cached input, with no minimum length (OpenAI's is 1024 tokens), so
/// cached pricing shows in small tests.
fn cached_prefix(messages: &[Value]) -> u64 {
    let prefix: Vec<String> = messages
        .iter()
        .take_while(|m| matches!(m.get("role").and_then(Value::as_str), Some("system" | "developer")))
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .collect();
    match prefix.is_empty() {
        true => 0,
        false => tokens(&prefix.join("\n")),
    }
}

/// Hidden reasoning tokens of a reasoning model (o1, o3, o4-mini, gpt-5...): twice the visible
/// answer; none for other models.
fn reasoning(model: &str, visible: u64) -> u64 {
    let mut chars = model.chars();
    let o_series = chars.next() == Some('o') && chars.next().is_some_and(|c| c.is_ascii_digit());
    match o_series || model.starts_with("gpt-5") {
        true => 2 * visible,
        false => 0,
    }
}

/// Answers `body` as the endpoint `endpoint` would.
pub fn answer(endpoint: &str, body: &Value) -> Result<Answer, Refusal> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| refusal("you must provide a model parameter", "model"))?;
    let id = format!("{:016x}", fnv1a(body.to_string().as_bytes()));
    match endpoint {
        "/v1/chat/completions" => chat(model, &id, body),
        "/v1/completions" => completion(model, &id, body),
        "/v1/responses" => response(model, &id, body),
        "/v1/embeddings" => embeddings(model, body),
        "/v1/moderations" => moderation(model, &id, body),
        other => Err(Refusal {
            status: 400,
            message: format!("The simulator does not implement {other}."),
            param: None,
        }),
    }
}

fn refusal(message: &str, param: &str) -> Refusal {
    Refusal {
        status: 400,
        message: message.to_owned(),
        param: Some(param.to_owned()),
    }
}

/// The text a fake model "generates" for a prompt.
fn generate(prompt: &str) -> String {
    let echoed: String = prompt.chars().take(ECHO_CHARS).collect();
    format!("Simulated answer to: {echoed}")
}

/// The text of a message `content`: a string, or an array of parts with `text`.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The last user message of a `messages`/`input` array and the text of all messages.
fn last_user_and_all(messages: &[Value]) -> (String, String) {
    let texts: Vec<String> = messages
        .iter()
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .collect();
    let last_user = messages
        .iter()
        .zip(&texts)
        .rev()
        .find(|(m, _)| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    (last_user, texts.join("\n"))
}

fn chat(model: &str, id: &str, body: &Value) -> Result<Answer, Refusal> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| refusal("Missing required parameter: 'messages'.", "messages"))?;
    let (last_user, all) = last_user_and_all(messages);
    let text = generate(&last_user);
    let input = tokens(&all);
    let cached = cached_prefix(messages).min(input);
    let reasoning = reasoning(model, tokens(&text));
    let output = tokens(&text) + reasoning;
    let body = json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": SIM_CREATED,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": input,
            "completion_tokens": output,
            "total_tokens": input + output,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
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
        reasoning_tokens: reasoning,
    })
}

fn completion(model: &str, id: &str, body: &Value) -> Result<Answer, Refusal> {
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
    let text = generate(&prompt);
    let (input, output) = (tokens(&prompt), tokens(&text));
    let body = json!({
        "id": format!("cmpl-{id}"),
        "object": "text_completion",
        "created": SIM_CREATED,
        "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
    });
    Ok(Answer {
        body,
        input_tokens: input,
        cached_tokens: 0,
        output_tokens: output,
        reasoning_tokens: 0,
    })
}

fn response(model: &str, id: &str, body: &Value) -> Result<Answer, Refusal> {
    let (prompt, all, cached) = match body.get("input") {
        Some(Value::String(s)) => (s.clone(), s.clone(), 0),
        Some(Value::Array(items)) => {
            let (prompt, all) = last_user_and_all(items);
            (prompt, all, cached_prefix(items))
        }
        _ => return Err(refusal("Missing required parameter: 'input'.", "input")),
    };
    let instructions = body.get("instructions").and_then(Value::as_str).map_or(0, tokens);
    let text = generate(&prompt);
    let input = tokens(&all) + instructions;
    let cached = (instructions + cached).min(input);
    let reasoning = reasoning(model, tokens(&text));
    let output = tokens(&text) + reasoning;
    let body = json!({
        "id": format!("resp_{id}"),
        "object": "response",
        "created_at": SIM_CREATED,
        "status": "completed",
        "error": null,
        "incomplete_details": null,
        "model": model,
        "output": [{
            "type": "message",
            "id": format!("msg_{id}"),
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }],
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": input,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": input + output,
        },
    });
    Ok(Answer {
        body,
        input_tokens: input,
        cached_tokens: cached,
        output_tokens: output,
        reasoning_tokens: reasoning,
    })
}

fn embeddings(model: &str, body: &Value) -> Result<Answer, Refusal> {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect(),
        _ => return Err(refusal("Missing required parameter: 'input'.", "input")),
    };
    let dimensions = match body.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(d) => d
            .as_u64()
            .map(|d| d as usize)
            .filter(|d| (1..=MAX_DIMENSIONS).contains(d))
            .ok_or_else(|| refusal("Invalid 'dimensions': must be a positive integer.", "dimensions"))?,
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": embed(text, dimensions)}))
        .collect();
    let input: u64 = inputs.iter().map(|t| tokens(t)).sum();
    let body = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": input, "total_tokens": input},
    });
    Ok(Answer {
        body,
        input_tokens: input,
        cached_tokens: 0,
        output_tokens: 0,
        reasoning_tokens: 0,
    })
}

/// A unit-length vector derived from a hash of the text.
fn embed(text: &str, dimensions: usize) -> Vec<f64> {
    let mut state = fnv1a(text.as_bytes());
    let raw: Vec<f64> = (0..dimensions)
        .map(|_| unit_interval(splitmix64(&mut state)) * 2.0 - 1.0)
        .collect();
    let norm = raw.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::EPSILON);
    raw.iter().map(|v| v / norm).collect()
}

fn moderation(model: &str, id: &str, body: &Value) -> Result<Answer, Refusal> {
    let count = match body.get("input") {
        Some(Value::Array(items)) => items.len(),
        Some(_) => 1,
        None => return Err(refusal("Missing required parameter: 'input'.", "input")),
    };
    let result = json!({"flagged": false, "categories": {}, "category_scores": {}});
    let input_tokens = tokens(&body["input"].to_string());
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
mod tests {
    use super::*;

    #[test]
    fn chat_answer_is_deterministic_and_echoes_last_user_message() {
        let body = json!({"model": "m1", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second question"}]},
        ]});
        let a = answer("/v1/chat/completions", &body).unwrap();
        assert_eq!(a, answer("/v1/chat/completions", &body).unwrap());
        assert_eq!(a.body["model"], "m1");
        assert_eq!(a.body["object"], "chat.completion");
        let content = a.body["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(content.contains("second question"), "{content}");
        assert_eq!(a.body["usage"]["total_tokens"], a.input_tokens + a.output_tokens);
        assert!(a.input_tokens >= 1 && a.output_tokens >= 1);
    }

    #[test]
    fn responses_and_completions_have_text_and_usage() {
        let r = answer("/v1/responses", &json!({"model": "m", "input": "hello"})).unwrap();
        assert!(
            r.body["output"][0]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("hello")
        );
        assert_eq!(r.body["usage"]["total_tokens"], r.input_tokens + r.output_tokens);
        let c = answer("/v1/completions", &json!({"model": "m", "prompt": "say"})).unwrap();
        assert_eq!(c.body["object"], "text_completion");
        assert!(c.body["choices"][0]["text"].as_str().unwrap().contains("say"));
    }

    #[test]
    fn embeddings_honour_dimensions_and_are_stable() {
        let body = json!({"model": "e", "input": ["a", "b"], "dimensions": 8});
        let e = answer("/v1/embeddings", &body).unwrap();
        let first = e.body["data"][0]["embedding"].as_array().unwrap();
        assert_eq!(first.len(), 8);
        assert_ne!(e.body["data"][0]["embedding"], e.body["data"][1]["embedding"]);
        assert_eq!(e, answer("/v1/embeddings", &body).unwrap());
        let default = answer("/v1/embeddings", &json!({"model": "e", "input": "a"})).unwrap();
        assert_eq!(default.body["data"][0]["embedding"].as_array().unwrap().len(), 16);
    }

    #[test]
    fn shared_system_prompts_count_as_cached_and_reasoning_models_reason() {
        let messages = json!([
            {"role": "system", "content": "Classify the ticket into one of five categories, as JSON."},
            {"role": "user", "content": "My invoice is wrong"},
        ]);
        let chat = answer(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o-mini", "messages": messages}),
        )
        .unwrap();
        let usage = &chat.body["usage"];
        let cached = usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
        assert!(cached > 0 && cached < chat.input_tokens, "{usage}");
        assert_eq!((chat.cached_tokens, chat.reasoning_tokens), (cached, 0));
        let o3 = answer(
            "/v1/chat/completions",
            &json!({"model": "o3-mini", "messages": messages}),
        )
        .unwrap();
        let reasoning = o3.body["usage"]["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap();
        assert_eq!(
            reasoning * 3,
            o3.output_tokens * 2,
            "reasoning is inside completion_tokens"
        );
        let response = answer(
            "/v1/responses",
            &json!({"model": "gpt-5-mini", "instructions": "be brief", "input": "hi"}),
        )
        .unwrap();
        let usage = &response.body["usage"];
        assert_eq!(usage["input_tokens_details"]["cached_tokens"], 2);
        assert!(usage["output_tokens_details"]["reasoning_tokens"].as_u64().unwrap() > 0);
        assert_eq!(usage["total_tokens"], response.input_tokens + response.output_tokens);
    }

    #[test]
    fn missing_model_is_refused() {
        let err = answer("/v1/chat/completions", &json!({"messages": []})).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.param.as_deref(), Some("model"));
    }

    #[test]
    fn tokens_are_about_chars_over_four() {
        assert_eq!(tokens(""), 1);
        assert_eq!(tokens("abcd"), 1);
        assert_eq!(tokens("abcde"), 2);
    }
}
