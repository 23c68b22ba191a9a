//! What a chat completion, completion or response says: a few sentences about the prompt, or
//! the JSON its format asks for (`json_object`: a small object; `json_schema`: an instance of
//! the schema), cut at the request's output-token limit as a model would be.

use serde_json::{Value, json};

use super::prose;
use super::rng::Rng;
use super::schema_instance;
use super::tokens::Counter;

/// The output a request asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format<'a> {
    Text,
    JsonObject,
    /// The `schema` of a `json_schema` format.
    JsonSchema(&'a Value),
}

/// Generated text and the tokens it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    pub tokens: u64,
    /// Cut at the limit (`finish_reason: "length"`).
    pub cut: bool,
}

/// Chat Completions' `response_format`: `{type: json_schema, json_schema: {schema}}` or
/// `{type: json_object}`.
pub fn chat_format(body: &Value) -> Format<'_> {
    let format = &body["response_format"];
    format_of(format, &format["json_schema"]["schema"])
}

/// The Responses API's `text.format`: `{type: json_schema, schema}` or `{type: json_object}`.
pub fn responses_format(body: &Value) -> Format<'_> {
    let format = &body["text"]["format"];
    format_of(format, &format["schema"])
}

fn format_of<'a>(format: &'a Value, schema: &'a Value) -> Format<'a> {
    match format["type"].as_str() {
        Some("json_schema") if !schema.is_null() => Format::JsonSchema(schema),
        Some("json_schema" | "json_object") => Format::JsonObject,
        _ => Format::Text,
    }
}

/// The first of `keys` the request sets to a count: its output-token limit.
pub fn limit(body: &Value, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|key| body.get(*key).and_then(Value::as_u64))
}

/// The reply to `prompt` in `format`, at most `limit` tokens of `counter`.
pub fn reply(format: Format<'_>, prompt: &str, rng: &mut Rng, counter: Counter, limit: Option<u64>) -> Reply {
    let text = match format {
        Format::Text => prose::paragraph(&prose::keywords(prompt), rng),
        Format::JsonObject => {
            let answer = prose::sentence(&["{A} is the key point here."], &prose::keywords(prompt), rng);
            json!({"answer": answer}).to_string()
        }
        Format::JsonSchema(schema) => schema_instance::instance(schema, prompt, rng).to_string(),
    };
    let tokens = counter.count(&text);
    match limit {
        Some(limit) if tokens > limit => Reply {
            text: counter.cut(&text, limit),
            tokens: limit,
            cut: true,
        },
        _ => Reply {
            text,
            tokens,
            cut: false,
        },
    }
}
