//! Token counts of the simulator's usage. For the model families OpenAI publishes a tokenizer
//! for (o200k_base: gpt-4o, gpt-4.1, gpt-5, o-series; cl100k_base: gpt-4, gpt-3.5,
//! embeddings) text is counted with that tokenizer, and a request's input the way the cost
//! estimate counts it (every string the model reads, token ids given as numbers, and the chat
//! framing), so the estimate of an input and the usage the simulator reports for it agree.
//! Other models count a quarter of the characters of the text.

use serde_json::Value;

use crate::bpe::{self, Encoding, request};

/// How a model's text is counted.
#[derive(Clone, Copy)]
pub enum Counter {
    Bpe(&'static Encoding),
    /// A quarter of the characters, at least one.
    Chars,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Counter::Bpe(_) => "Bpe",
            Counter::Chars => "Chars",
        })
    }
}

/// The part of a request that is its prompt, for the count without a tokenizer.
pub struct PromptText<'a> {
    /// Every message's text (or the prompt), joined.
    pub all: &'a str,
    /// The leading system and developer messages: the prefix the prompt cache holds.
    pub prefix: &'a [Value],
    /// The Responses API's `instructions`, also cached.
    pub instructions: Option<&'a str>,
}

/// The counter of a model: its family's tokenizer, else a quarter of the characters.
pub fn counter(model: &str) -> Counter {
    bpe::for_model(model).map_or(Counter::Chars, Counter::Bpe)
}

/// A quarter of the characters of `text`, at least one.
pub fn chars(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

impl Counter {
    /// The tokens of `text`.
    pub fn count(self, text: &str) -> u64 {
        match self {
            Counter::Bpe(bpe) => bpe.count(text),
            Counter::Chars => chars(text),
        }
    }

    /// The first `max` tokens of `text` (whole characters only).
    pub fn cut(self, text: &str, max: u64) -> String {
        match self {
            Counter::Bpe(bpe) => valid_prefix(&text.as_bytes()[..bpe.prefix_len(text, max)]).to_owned(),
            Counter::Chars => {
                let max = usize::try_from(max).unwrap_or(usize::MAX);
                text.chars().take(max.saturating_mul(4)).collect()
            }
        }
    }

    /// Input tokens and, of those, the cached ones (the prompt's shared prefix).
    pub fn input(self, body: &Value, prompt: &PromptText<'_>) -> (u64, u64) {
        let instructions = prompt.instructions.map_or(0, |i| self.count(i));
        let (input, prefix) = match self {
            Counter::Bpe(bpe) => {
                let framed = body.get("messages").is_some();
                let prefix = prompt.prefix.iter().map(|m| message_tokens(bpe, m, framed)).sum();
                (request_tokens(bpe, body), prefix)
            }
            Counter::Chars => {
                let prefix: Vec<String> = prompt.prefix.iter().map(|m| content_text(&m["content"])).collect();
                let prefix = if prefix.is_empty() {
                    0
                } else {
                    chars(&prefix.join("\n"))
                };
                (chars(prompt.all) + instructions, prefix)
            }
        };
        (input, (prefix + instructions).min(input))
    }

    /// The input tokens of a request that is not a conversation (completions, embeddings,
    /// moderations); `text` is what the count without a tokenizer reads.
    pub fn plain_input(self, body: &Value, text: &str) -> u64 {
        match self {
            Counter::Bpe(bpe) => request_tokens(bpe, body),
            Counter::Chars => chars(text),
        }
    }
}

/// The longest prefix of `bytes` that is UTF-8 (a cut may split a character's tokens).
fn valid_prefix(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or_default(),
    }
}

/// The text of a message `content`: a string, or the `text` of each of its parts.
pub fn content_text(content: &Value) -> String {
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

/// The input tokens of `body` as the cost estimate counts them ([`request::body_tokens`]).
fn request_tokens(bpe: &Encoding, body: &Value) -> u64 {
    match body {
        Value::Object(fields) => request::body_tokens(fields, &|text| bpe.count(text)),
        _ => 0,
    }
}

/// The tokens of one message: its strings, plus its framing in a chat request.
fn message_tokens(bpe: &Encoding, message: &Value, framed: bool) -> u64 {
    let framing = if framed { request::TOKENS_PER_MESSAGE } else { 0 };
    request::value_tokens(message, false, &|text| bpe.count(text)) + framing
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn openai_families_count_with_their_tokenizer_and_others_a_quarter_of_the_characters() {
        assert!(matches!(counter("gpt-4o-mini"), Counter::Bpe(_)));
        assert!(matches!(counter("gpt-5-mini"), Counter::Bpe(_)));
        assert!(matches!(counter("o3-mini"), Counter::Bpe(_)));
        assert!(matches!(counter("text-embedding-3-small"), Counter::Bpe(_)));
        assert!(matches!(counter("llama-3-70b"), Counter::Chars));
        assert_eq!(counter("gpt-4o").count("Hello world"), 2);
        assert_eq!(Counter::Chars.count("Hello world"), 3);
        assert_eq!((chars(""), chars("abcd"), chars("abcde")), (1, 1, 2));
    }

    #[test]
    fn a_cut_keeps_at_most_the_first_tokens_and_whole_characters() {
        let bpe = counter("gpt-4o");
        let text = "Überraschung! Déjà vu, naïve café — 東京タワー and more words here.";
        for max in 0..bpe.count(text) + 2 {
            let cut = bpe.cut(text, max);
            assert!(text.starts_with(&cut), "{cut:?}");
            assert!(bpe.count(&cut) <= max, "{max}: {cut:?}");
        }
        assert_eq!(Counter::Chars.cut("abcdefghij", 2), "abcdefgh");
    }

    #[test]
    fn chat_input_counts_every_string_and_the_framing_and_caches_the_system_prefix() {
        let body = json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "Hello world"},
        ]});
        let messages = body["messages"].as_array().unwrap();
        let prompt = PromptText {
            all: "",
            prefix: &messages[..1],
            instructions: None,
        };
        // 2 messages x 3 + 3, "system" 1 + "Be brief" 2, "user" 1 + "Hello world" 2.
        assert_eq!(counter("gpt-4o-mini").input(&body, &prompt), (15, 6));
        let chars_prompt = PromptText {
            all: "Be brief\nHello world",
            ..prompt
        };
        assert_eq!(Counter::Chars.input(&body, &chars_prompt), (5, 2));
    }
}
