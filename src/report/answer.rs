//! What one result line says (shared/OPENAI_BATCH_API.md §4): the request's outcome, the
//! answer (the first choice's content; a JSON answer kept as JSON; an embedding's dimension),
//! the error, the model that answered and its tokens. Lines come from a gateway, an untrusted
//! party: anything unexpected becomes an error of the row, never a failure of the report.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::pricing::{LineTokens, LineUsage};

/// Longest answer or error text kept in a row, in characters (the rest is cut, with `…`).
pub const MAX_TEXT_CHARS: usize = 32 * 1024;

/// What a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// In the output file.
    Succeeded,
    /// In the error file.
    Failed,
    /// In the error file as never run (`batch_expired`, `batch_cancelled`).
    NotRun,
    /// In the input, and in neither file.
    Missing,
    /// A line that cannot be read: not JSON, past the line limit, or without a custom_id.
    Invalid,
    /// A result whose custom_id the input does not have.
    Unexpected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::NotRun => "not_run",
            Status::Missing => "missing",
            Status::Invalid => "invalid",
            Status::Unexpected => "unexpected",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Text(String),
    /// Content that is a JSON object or array, kept as JSON.
    Json(serde_json::Value),
    /// An embedding, by its dimension.
    Embedding(usize),
}

impl Answer {
    /// The answer as one line of text (compact JSON, `embedding[1536]`).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Answer::Text(t) => Cow::Borrowed(t),
            Answer::Json(v) => Cow::Owned(v.to_string()),
            Answer::Embedding(n) => Cow::Owned(format!("embedding[{n}]")),
        }
    }

    /// Its length in characters (an embedding's: none).
    pub fn chars(&self) -> Option<u64> {
        match self {
            Answer::Embedding(_) => None,
            other => Some(other.text().chars().count() as u64),
        }
    }
}

/// One result line, read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub custom_id: Option<String>,
    pub status: Option<Status>,
    pub answer: Option<Answer>,
    pub error: Option<String>,
    /// The model that answered (`response.body.model`).
    pub model: Option<String>,
    pub tokens: Option<LineTokens>,
}

impl Outcome {
    /// The outcome of a line that cannot be read, and why.
    pub fn invalid(custom_id: Option<String>, why: String) -> Outcome {
        Outcome {
            custom_id,
            status: Some(Status::Invalid),
            error: Some(why),
            ..Default::default()
        }
    }
}

/// Reads one line of an output file (`from_errors` false) or an error file. `at` names the line
/// (`out/default/b/output.jsonl line 7`) in the error of a line that is not a result.
pub fn read(line: &[u8], from_errors: bool, at: &dyn Fn() -> String) -> Outcome {
    let text = match std::str::from_utf8(line) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(line),
    };
    let parsed: ResultLine = match serde_json::from_str(&text) {
        Ok(parsed) => parsed,
        Err(e) => return Outcome::invalid(None, format!("{}: not a result line: {e}", at())),
    };
    let Some(custom_id) = parsed.custom_id else {
        return Outcome::invalid(None, format!("{}: no custom_id", at()));
    };
    let mut outcome = Outcome {
        custom_id: Some(custom_id),
        ..Default::default()
    };
    let status_code = parsed.response.as_ref().and_then(|r| r.status_code);
    let body = parsed.response.and_then(|r| r.body);
    if let Some(body) = &body {
        outcome.model = body.model.as_deref().map(str::to_string);
        outcome.tokens = body.usage.as_ref().map(LineUsage::tokens);
    }
    let failed = from_errors || parsed.error.is_some() || status_code.is_some_and(|s| s >= 300);
    if failed {
        let code = parsed.error.as_ref().and_then(|e| e.code.as_deref());
        outcome.status = Some(match code {
            Some("batch_expired" | "batch_cancelled") => Status::NotRun,
            _ => Status::Failed,
        });
        outcome.error = Some(error_text(status_code, parsed.error.as_ref(), body.as_ref()));
        outcome.tokens = None; // an error line's usage is not the answer's
        return outcome;
    }
    outcome.status = Some(Status::Succeeded);
    outcome.answer = body.as_ref().and_then(Body::answer);
    outcome
}

/// `code: message`, `HTTP 400 context_length_exceeded: message`.
fn error_text(status: Option<u16>, error: Option<&LineError>, body: Option<&Body>) -> String {
    let api = body.and_then(|b| b.error.as_ref());
    let code = error.and_then(|e| e.code.as_deref()).or(api
        .and_then(|e| e.code.as_deref())
        .or(api.and_then(|e| e.kind.as_deref())));
    let message = error
        .and_then(|e| e.message.as_deref())
        .or(api.and_then(|e| e.message.as_deref()));
    let http = status.map(|s| format!("HTTP {s}"));
    let head: Vec<&str> = [http.as_deref(), code].into_iter().flatten().collect();
    let head = head.join(" ");
    let text = match (head.is_empty(), message) {
        (false, None) => head,
        (true, Some(message)) => message.to_string(),
        (false, Some(message)) => format!("{head}: {message}"),
        (true, None) => "failed without a message".to_string(),
    };
    cut(text)
}

/// `text`, cut to [`MAX_TEXT_CHARS`] characters.
pub fn cut(mut text: String) -> String {
    if let Some((end, _)) = text.char_indices().nth(MAX_TEXT_CHARS) {
        text.truncate(end);
        text.push('…');
    }
    text
}

#[derive(Deserialize)]
struct ResultLine {
    #[serde(default, deserialize_with = "string_or_nothing")]
    custom_id: Option<String>,
    #[serde(default)]
    response: Option<Response>,
    #[serde(default)]
    error: Option<LineError>,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    body: Option<Body>,
}

#[derive(Deserialize, Default)]
struct LineError {
    #[serde(default, deserialize_with = "string_or_nothing")]
    code: Option<String>,
    #[serde(default, deserialize_with = "string_or_nothing")]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct ApiError {
    #[serde(default, deserialize_with = "string_or_nothing")]
    code: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "string_or_nothing")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "string_or_nothing")]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct Body {
    #[serde(default, deserialize_with = "string_or_nothing")]
    model: Option<String>,
    #[serde(default)]
    usage: Option<LineUsage>,
    /// Chat completions and completions: only the first choice is kept.
    #[serde(default)]
    choices: Option<FirstOf<Choice>>,
    /// Embeddings: the first item's dimension.
    #[serde(default)]
    data: Option<FirstOf<EmbeddingItem>>,
    /// Responses: the text of the first `output_text` part.
    #[serde(default)]
    output: Option<Vec<OutputItem>>,
    #[serde(default)]
    error: Option<ApiError>,
}

impl Body {
    fn answer(&self) -> Option<Answer> {
        if let Some(FirstOf(Some(choice))) = &self.choices {
            if let Some(message) = &choice.message {
                if let Some(content) = &message.content {
                    return Some(text_or_json(content));
                }
                if let Some(calls) = &message.tool_calls {
                    return serde_json::from_str(calls.get()).ok().map(Answer::Json);
                }
                if let Some(refusal) = &message.refusal {
                    return Some(Answer::Text(cut(refusal.clone())));
                }
            }
            return choice.text.as_deref().map(text_or_json);
        }
        if let Some(FirstOf(Some(item))) = &self.data {
            return item.embedding.map(|Dimension(n)| Answer::Embedding(n));
        }
        let parts = self.output.iter().flatten().flat_map(|o| o.content.iter().flatten());
        let text = parts
            .filter(|p| p.kind.as_deref() == Some("output_text"))
            .find_map(|p| p.text.as_deref())?;
        Some(text_or_json(text))
    }
}

/// JSON kept as JSON when the content is an object or an array; text otherwise.
fn text_or_json(content: &str) -> Answer {
    let trimmed = content.trim();
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && content.len() <= MAX_TEXT_CHARS * 4
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed)
    {
        return Answer::Json(value);
    }
    Answer::Text(cut(content.to_string()))
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default, deserialize_with = "string_or_nothing")]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default, deserialize_with = "string_or_nothing")]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "string_or_nothing")]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    embedding: Option<Dimension>,
}

#[derive(Deserialize)]
struct OutputItem {
    #[serde(default)]
    content: Option<Vec<ContentPart>>,
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(default, rename = "type", deserialize_with = "string_or_nothing")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "string_or_nothing")]
    text: Option<String>,
}

/// The first element of an array; the others are skipped without being kept.
struct FirstOf<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for FirstOf<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct First<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for First<T> {
            type Value = FirstOf<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // An element of the wrong shape is no answer, not an unreadable line.
                let first = seq.next_element::<Lenient<T>>()?.and_then(|l| l.0);
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstOf(first))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(FirstOf(None))
            }
        }
        deserializer.deserialize_any(First(std::marker::PhantomData))
    }
}

/// A value of the expected shape, or `None` for anything else.
struct Lenient<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&RawValue>::deserialize(deserializer).map(|r| serde_json::from_str::<T>(r.get()).ok());
        raw.map(Lenient)
    }
}

/// An embedding's dimension: the length of its array of floats, or of its base64 text's
/// float32 values; counted, never kept.
#[derive(Clone, Copy)]
struct Dimension(usize);

impl<'de> Deserialize<'de> for Dimension {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Count;
        impl<'de> Visitor<'de> for Count {
            type Value = Dimension;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of numbers or base64 text")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dimension, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Dimension(n))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Dimension, E> {
                let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
                Ok(Dimension((text.len() / 4 * 3).saturating_sub(padding) / 4))
            }
        }
        deserializer.deserialize_any(Count)
    }
}

/// A string, or `None` for null or any other type (a gateway may send anything).
fn string_or_nothing<'de, D: Deserializer<'de>, S: From<String> + From<&'de str>>(
    deserializer: D,
) -> Result<Option<S>, D::Error> {
    struct Text<S>(std::marker::PhantomData<S>);
    impl<'de, S: From<String> + From<&'de str>> Visitor<'de> for Text<S> {
        type Value = Option<S>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(S::from(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(S::from(v.to_string())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(S::from(v)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    deserializer.deserialize_any(Text(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(line: &str, from_errors: bool) -> Outcome {
        read(line.as_bytes(), from_errors, &|| "f line 1".to_string())
    }

    #[test]
    fn every_body_shape_gives_its_answer_and_tokens() {
        let chat = of(
            r#"{"custom_id":"a","response":{"status_code":200,"body":{"model":"m-1","choices":[{"message":{"content":"Hi <b>"}},{"message":{"content":"second"}}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}},"error":null}"#,
            false,
        );
        assert_eq!(chat.status, Some(Status::Succeeded));
        assert_eq!(chat.answer, Some(Answer::Text("Hi <b>".into())));
        assert_eq!(chat.model.as_deref(), Some("m-1"));
        let t = chat.tokens.unwrap();
        assert_eq!((t.input, t.cached_input, t.output, t.total), (10, 4, 5, Some(15)));

        let json = of(
            r#"{"custom_id":"b","response":{"status_code":200,"body":{"choices":[{"message":{"content":" {\"label\": \"refund\"} "}}]}}}"#,
            false,
        );
        assert_eq!(json.answer, Some(Answer::Json(serde_json::json!({"label": "refund"}))));

        let embedding = of(
            r#"{"custom_id":"c","response":{"status_code":200,"body":{"data":[{"embedding":[0.1,0.2,0.3]}],"usage":{"prompt_tokens":3,"total_tokens":3}}}}"#,
            false,
        );
        assert_eq!(embedding.answer, Some(Answer::Embedding(3)));
        let base64 = of(
            r#"{"custom_id":"c","response":{"status_code":200,"body":{"data":[{"embedding":"AAAAAAAAAAA="}]}}}"#,
            false,
        );
        assert_eq!(base64.answer, Some(Answer::Embedding(2)));

        let responses = of(
            r#"{"custom_id":"d","response":{"status_code":200,"body":{"output":[{"type":"reasoning"},{"type":"message","content":[{"type":"output_text","text":"Done."}]}],"usage":{"input_tokens":7,"output_tokens":3,"input_tokens_details":{"cached_tokens":2}}}}}"#,
            false,
        );
        assert_eq!(responses.answer, Some(Answer::Text("Done.".into())));
        let t = responses.tokens.unwrap();
        assert_eq!((t.input, t.cached_input, t.output), (7, 2, 3));

        let completion = of(
            r#"{"custom_id":"e","response":{"status_code":200,"body":{"choices":[{"text":"plain"}]}}}"#,
            false,
        );
        assert_eq!(completion.answer, Some(Answer::Text("plain".into())));
    }

    #[test]
    fn errors_say_their_code_and_message() {
        let http = of(
            r#"{"custom_id":"a","response":{"status_code":400,"body":{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}},"error":null}"#,
            true,
        );
        assert_eq!(http.status, Some(Status::Failed));
        assert_eq!(
            http.error.as_deref(),
            Some("HTTP 400 context_length_exceeded: too long")
        );
        let expired = of(
            r#"{"custom_id":"b","response":null,"error":{"code":"batch_expired","message":"late"}}"#,
            true,
        );
        assert_eq!(expired.status, Some(Status::NotRun));
        assert_eq!(expired.error.as_deref(), Some("batch_expired: late"));
    }

    #[test]
    fn what_a_gateway_garbles_is_an_invalid_row_naming_the_line() {
        let garbled = of("not json", false);
        assert_eq!(garbled.status, Some(Status::Invalid));
        assert!(garbled.error.unwrap().starts_with("f line 1: not a result line"));
        let no_id = of(r#"{"custom_id":7,"response":{}}"#, false);
        assert_eq!(no_id.error.as_deref(), Some("f line 1: no custom_id"));
        // Wrongly typed fields are no answer, not an unreadable line.
        let odd = of(
            r#"{"custom_id":"x","response":{"body":{"model":5,"choices":[7,{"message":{}}]}}}"#,
            false,
        );
        assert_eq!(
            (odd.status, odd.answer, odd.model),
            (Some(Status::Succeeded), None, None)
        );
    }
}
