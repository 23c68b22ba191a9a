//! `POST /v1/embeddings`: deterministic unit vectors, one per input, as wide as the model's
//! (text-embedding-3-large 3072, text-embedding-3-small, ada-002 and others 1536) or the
//! request's `dimensions`; as float arrays, or `encoding_format: base64` (little-endian
//! float32, as OpenAI sends them).

use serde_json::{Value, json};

use super::answers::{Answer, Refusal, refusal};
use super::rng::Rng;
use super::tokens;

/// Widest embedding the simulator will produce.
const MAX_DIMENSIONS: usize = 4096;
/// Decimal places of each component (about float32's precision, as OpenAI's floats have).
const DECIMALS: f64 = 1e10;

/// Answers an embeddings request.
pub fn answer(model: &str, body: &Value) -> Result<Answer, Refusal> {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect(),
        _ => return Err(refusal("Missing required parameter: 'input'.", "input")),
    };
    let dimensions = dimensions(model, body)?;
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            let message = "Invalid value for 'encoding_format': expected 'float' or 'base64'.";
            return Err(refusal(message, "encoding_format"));
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = vector(model, text, dimensions);
            let embedding = if base64 { json!(encode(&vector)) } else { json!(vector) };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let counter = tokens::counter(model);
    let input = match counter {
        tokens::Counter::Chars => inputs.iter().map(|t| tokens::chars(t)).sum(),
        bpe => bpe.plain_input(body, ""),
    };
    Ok(Answer {
        body: json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": input, "total_tokens": input},
        }),
        input_tokens: input,
        cached_tokens: 0,
        output_tokens: 0,
        reasoning_tokens: 0,
    })
}

/// The request's `dimensions`, else the model's own.
fn dimensions(model: &str, body: &Value) -> Result<usize, Refusal> {
    match body.get("dimensions") {
        None | Some(Value::Null) => Ok(native_dimensions(model)),
        Some(d) => d
            .as_u64()
            .map(|d| d as usize)
            .filter(|d| (1..=MAX_DIMENSIONS).contains(d))
            .ok_or_else(|| refusal("Invalid 'dimensions': must be a positive integer.", "dimensions")),
    }
}

/// The width of a model's embeddings.
pub fn native_dimensions(model: &str) -> usize {
    match model.contains("text-embedding-3-large") {
        true => 3072,
        false => 1536,
    }
}

/// A unit-length vector derived from a hash of the model and the text, its components rounded
/// to [`DECIMALS`].
pub fn vector(model: &str, text: &str, dimensions: usize) -> Vec<f64> {
    let mut rng = Rng::from_bytes(format!("{model}\0{text}").as_bytes());
    // The sum of three uniform draws: roughly normal, as trained embeddings' components are.
    let raw: Vec<f64> = (0..dimensions)
        .map(|_| rng.unit() + rng.unit() + rng.unit() - 1.5)
        .collect();
    let norm = raw.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::EPSILON);
    raw.iter().map(|v| (v / norm * DECIMALS).round() / DECIMALS).collect()
}

/// The vector as OpenAI's base64 encoding: little-endian float32s.
fn encode(vector: &[f64]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect();
    base64(&bytes)
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0u32, |w, (i, b)| w | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            match i <= chunk.len() {
                true => out.push(char::from(ALPHABET[((word >> (18 - 6 * i)) & 0x3f) as usize])),
                false => out.push('='),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn norm(vector: &[f64]) -> f64 {
        vector.iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    fn embed(body: Value) -> Answer {
        answer(body["model"].as_str().unwrap(), &body).unwrap()
    }

    fn floats(answer: &Answer, index: usize) -> Vec<f64> {
        let values = answer.body["data"][index]["embedding"].as_array().unwrap();
        values.iter().map(|v| v.as_f64().unwrap()).collect()
    }

    #[test]
    fn vectors_are_unit_length_and_as_wide_as_the_model_or_the_request_says() {
        for (model, width) in [
            ("text-embedding-3-small", 1536),
            ("text-embedding-3-large", 3072),
            ("text-embedding-ada-002", 1536),
            ("some-local-embedder", 1536),
        ] {
            let e = embed(json!({"model": model, "input": ["a", "b"]}));
            for index in 0..2 {
                let v = floats(&e, index);
                assert_eq!(v.len(), width, "{model}");
                assert!((norm(&v) - 1.0).abs() < 1e-6, "{model}: {}", norm(&v));
            }
            assert_ne!(floats(&e, 0), floats(&e, 1));
        }
        for width in [1, 2, 8, 256, 4096] {
            let e = embed(json!({"model": "text-embedding-3-large", "input": "x", "dimensions": width}));
            let v = floats(&e, 0);
            assert_eq!(v.len(), width);
            assert!((norm(&v) - 1.0).abs() < 1e-6, "{width}: {}", norm(&v));
        }
    }

    #[test]
    fn the_same_text_gets_the_same_vector_in_any_request() {
        let alone = embed(json!({"model": "text-embedding-3-small", "input": "refund policy"}));
        let among = embed(json!({"model": "text-embedding-3-small", "input": ["other", "refund policy"]}));
        assert_eq!(floats(&alone, 0), floats(&among, 1));
        assert_eq!(
            alone,
            embed(json!({"model": "text-embedding-3-small", "input": "refund policy"}))
        );
        let other_model = embed(json!({"model": "text-embedding-ada-002", "input": "refund policy"}));
        assert_ne!(floats(&alone, 0), floats(&other_model, 0));
    }

    #[test]
    fn base64_holds_the_same_vector_as_float32() {
        let body = json!({"model": "text-embedding-3-small", "input": "hello", "dimensions": 7});
        let floats_answer = embed(body.clone());
        let mut base64_body = body;
        base64_body["encoding_format"] = json!("base64");
        let encoded = embed(base64_body);
        let text = encoded.body["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
        let decoded: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let expected: Vec<f32> = floats(&floats_answer, 0).iter().map(|v| *v as f32).collect();
        assert_eq!(decoded, expected);
        for n in 0..7 {
            let bytes: Vec<u8> = (0..n).map(|i| i * 37).collect();
            assert_eq!(base64(&bytes), base64::engine::general_purpose::STANDARD.encode(&bytes));
        }
        let wrong = json!({"model": "m", "input": "x", "encoding_format": "hex"});
        assert_eq!(
            answer("m", &wrong).unwrap_err().param.as_deref(),
            Some("encoding_format")
        );
    }

    #[test]
    fn usage_counts_the_inputs_with_the_embedding_tokenizer() {
        let e = embed(json!({"model": "text-embedding-3-small", "input": ["Hello world", [1, 2, 3]]}));
        assert_eq!(e.input_tokens, 5);
        assert_eq!(e.body["usage"]["prompt_tokens"], 5);
        let other = embed(json!({"model": "m", "input": ["abcdefgh", "abc"]}));
        assert_eq!(other.input_tokens, 3);
    }
}
