//! Token estimates of an input before anything is sent: per model, its input tokens counted
//! with the model family's own byte-pair encoding ([`crate::bpe`]) and the sum of its
//! requests' output ceilings.
//!
//! A tokenizer reads 30 to 60 MB/s, a twentieth of the validator's pace, so past the first
//! [`EXACT_BYTES`] of a model's requests only one byte in [`SAMPLE_EVERY`] is tokenized (whole
//! lines, taken as the running share falls behind) and the rest is counted at the sampled
//! tokens-per-byte ratio. Models without a known tokenizer count a quarter of the bytes of the
//! same text, sampled the same way. The sampled lines are tokenized on a thread of their own,
//! so validation does not wait for it: at most [`MAX_QUEUED_BYTES`] wait there, and a line
//! that would pass that is not sampled (a later one is).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use serde_json::Value;

use crate::api::{MAX_USAGE_MODELS, ModelEstimate, OTHER_MODELS};
use crate::bpe::{self, Encoding};

/// A model's requests are tokenized in full up to this many bytes.
pub const EXACT_BYTES: u64 = 64 << 10;
/// Past [`EXACT_BYTES`], one byte in this many is tokenized.
pub const SAMPLE_EVERY: u64 = 100;
/// Models tallied by name; further ones are summed under `(other)` at bytes / 4.
const MAX_DISTINCT_MODELS: usize = 1024;
/// Sampled lines waiting for the counting thread, in bytes (each line's, plus
/// [`SAMPLE_OVERHEAD`] for its bookkeeping).
pub const MAX_QUEUED_BYTES: u64 = 2 << 20;
/// What a waiting sample costs besides its text (its model's name, two allocations).
const SAMPLE_OVERHEAD: u64 = 64;
/// Sampled lines go to the thread in batches of this many bytes or [`BATCH_LINES`] lines: one
/// wake-up of the thread per line cost more system time than validating the lines in between.
const BATCH_BYTES: u64 = 64 << 10;
const BATCH_LINES: usize = 256;

/// The running estimate of one input.
#[derive(Debug, Default)]
pub(crate) struct Estimator {
    models: BTreeMap<String, Tally>,
    /// Requests past [`MAX_DISTINCT_MODELS`] or naming no model.
    rest: Tally,
    counting: Option<Counting>,
}

/// The thread tokenizing sampled lines, and the lines waiting for it.
#[derive(Debug)]
struct Counting {
    lines: Sender<Vec<Sample>>,
    /// Sampled lines not yet handed over.
    batch: Vec<Sample>,
    batch_bytes: u64,
    /// Bytes of the samples in the batch and on their way (bounded by [`MAX_QUEUED_BYTES`]).
    queued: Arc<AtomicU64>,
    thread: JoinHandle<BTreeMap<String, u64>>,
}

/// A sampled line: its model's tally, how to count it, its text.
#[derive(Debug)]
struct Sample {
    model: String,
    counter: Counter,
    text: String,
}

/// The estimate of a whole input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Estimate {
    /// Requests per model (at most [`MAX_DISTINCT_MODELS`]).
    pub requests: BTreeMap<String, u64>,
    /// Input tokens plus output ceilings, over every request.
    pub total_tokens: u64,
    pub by_model: Vec<ModelEstimate>,
}

/// One model's requests so far.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    line_bytes: u64,
    /// A quarter of each line's bytes, rounded up: the count without a tokenizer.
    quarter_bytes: u64,
    output_ceiling: u64,
    without_ceiling: u64,
    tokenizer: Option<Counter>,
    sampled_bytes: u64,
    sampled_tokens: u64,
}

/// How a model's text is counted.
#[derive(Clone, Copy)]
enum Counter {
    Tokenizer(&'static Encoding),
    QuarterOfBytes,
}

impl Counter {
    fn name(self) -> &'static str {
        match self {
            Counter::Tokenizer(encoding) => encoding.name(),
            Counter::QuarterOfBytes => "bytes/4",
        }
    }

    fn count(self, text: &str) -> u64 {
        match self {
            Counter::Tokenizer(encoding) => encoding.count(text),
            Counter::QuarterOfBytes => (text.len() as u64).div_ceil(4),
        }
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One request line, as the estimate reads it.
pub(crate) struct Request<'a> {
    pub text: &'a str,
    pub model: Option<&'a str>,
    pub output_ceiling: Option<u64>,
}

impl Request<'_> {
    /// A line whose model is not known (it is not a request object).
    pub(crate) fn unnamed(text: &str) -> Request<'_> {
        Request {
            text,
            model: None,
            output_ceiling: None,
        }
    }
}

impl Estimator {
    /// Counts a line that cannot be read (too long, not UTF-8): a quarter of its bytes.
    pub(crate) fn add_unread(&mut self, bytes: u64) {
        self.rest.requests += 1;
        self.rest.line_bytes += bytes;
        self.rest.quarter_bytes += bytes.div_ceil(4).max(1);
        self.rest.without_ceiling += 1;
    }

    /// Counts one request line.
    pub(crate) fn add(&mut self, request: Request<'_>) {
        let tally = match request.model {
            // Looked up before an entry is made: an entry takes an owned key, one allocation per line.
            Some(model) if self.models.contains_key(model) => self.models.get_mut(model).expect("just found"),
            Some(model) if self.models.len() < MAX_DISTINCT_MODELS => self
                .models
                .entry(model.to_owned())
                .or_insert_with(|| Tally::for_model(model)),
            _ => &mut self.rest,
        };
        tally.tally(&request);
        let bytes = request.text.len() as u64;
        let (Some(counter), Some(model)) = (tally.tokenizer, request.model) else {
            return;
        };
        if !tally.samples(bytes) {
            return;
        }
        let counting = self.counting.get_or_insert_with(Counting::start);
        if counting.queue(model, counter, request.text) {
            tally.sampled_bytes += bytes;
        }
    }

    /// The estimate, once the sampled lines are counted.
    pub(crate) fn finish(mut self) -> Estimate {
        if let Some(counting) = self.counting.take() {
            for (model, tokens) in counting.finish() {
                if let Some(tally) = self.models.get_mut(&model) {
                    tally.sampled_tokens += tokens;
                }
            }
        }
        Estimate {
            requests: self.models.iter().map(|(m, t)| (m.clone(), t.requests)).collect(),
            total_tokens: self
                .tallies()
                .map(|(_, t)| t.input_tokens().saturating_add(t.output_ceiling))
                .fold(0, u64::saturating_add),
            by_model: self.by_model(),
        }
    }

    /// The estimate by model: at most [`MAX_USAGE_MODELS`] by name (the largest by input
    /// tokens), the rest summed under `(other)`.
    fn by_model(&self) -> Vec<ModelEstimate> {
        let mut all: Vec<ModelEstimate> = self.tallies().map(|(m, t)| t.estimate(m)).collect();
        if all.len() > MAX_USAGE_MODELS {
            all.sort_by(|a, b| b.input_tokens.cmp(&a.input_tokens).then(a.model.cmp(&b.model)));
            let rest = all.split_off(MAX_USAGE_MODELS);
            all.push(rest.into_iter().fold(other_models(), sum));
            all.sort_by(|a, b| a.model.cmp(&b.model));
        }
        all
    }

    fn tallies(&self) -> impl Iterator<Item = (&str, &Tally)> {
        let rest = (self.rest.requests > 0).then_some((OTHER_MODELS, &self.rest));
        self.models.iter().map(|(m, t)| (m.as_str(), t)).chain(rest)
    }
}

impl Tally {
    fn for_model(model: &str) -> Tally {
        Tally {
            tokenizer: Some(counter(model)),
            ..Tally::default()
        }
    }

    fn tally(&mut self, request: &Request<'_>) {
        let bytes = request.text.len() as u64;
        self.requests += 1;
        self.line_bytes += bytes;
        self.quarter_bytes += bytes.div_ceil(4).max(1);
        match request.output_ceiling {
            Some(ceiling) => self.output_ceiling = self.output_ceiling.saturating_add(ceiling),
            None => self.without_ceiling += 1,
        }
    }

    /// Whether the next line (of `bytes`) is tokenized: always within the first
    /// [`EXACT_BYTES`], then whenever the sampled share would otherwise fall behind.
    fn samples(&self, bytes: u64) -> bool {
        self.sampled_bytes < EXACT_BYTES || self.sampled_bytes * SAMPLE_EVERY < self.line_bytes + bytes
    }

    fn input_tokens(&self) -> u64 {
        match self.tokenizer {
            None => self.quarter_bytes,
            Some(_) if self.sampled_bytes == self.line_bytes => self.sampled_tokens,
            Some(_) => {
                let scaled = u128::from(self.line_bytes) * u128::from(self.sampled_tokens);
                u64::try_from(scaled.div_ceil(u128::from(self.sampled_bytes.max(1)))).unwrap_or(u64::MAX)
            }
        }
    }

    fn counted_by(&self) -> String {
        match self.tokenizer {
            None => "bytes/4 of the lines".to_string(),
            Some(c) if self.sampled_bytes == self.line_bytes => c.name().to_string(),
            Some(c) => {
                let share = self.sampled_bytes as f64 * 100.0 / self.line_bytes.max(1) as f64;
                format!("{}, {share:.1}% of bytes sampled", c.name())
            }
        }
    }

    fn estimate(&self, model: &str) -> ModelEstimate {
        ModelEstimate {
            model: model.to_string(),
            requests: self.requests,
            input_tokens: self.input_tokens(),
            output_tokens: self.output_ceiling,
            without_output_ceiling: self.without_ceiling,
            counted_by: self.counted_by(),
        }
    }
}

/// Adds `from` (a chunk's estimate) to `into`, model by model, at most [`MAX_USAGE_MODELS`]
/// by name and the rest under `(other)`.
pub fn add_estimates(into: &mut Vec<ModelEstimate>, from: &[ModelEstimate]) {
    for estimate in from {
        let listed = into.len() - usize::from(into.iter().any(|e| e.model == OTHER_MODELS));
        let name = match into.iter().any(|e| e.model == estimate.model) || listed < MAX_USAGE_MODELS {
            true => estimate.model.as_str(),
            false => OTHER_MODELS,
        };
        match into.iter_mut().find(|e| e.model == name) {
            Some(existing) => {
                let mut merged = sum(std::mem::take(existing), estimate.clone());
                if merged.counted_by != estimate.counted_by {
                    merged.counted_by = "mixed".to_string();
                }
                *existing = merged;
            }
            None if name == OTHER_MODELS => into.push(sum(other_models(), estimate.clone())),
            None => into.push(estimate.clone()),
        }
    }
    into.sort_by(|a, b| a.model.cmp(&b.model));
}

impl Counting {
    fn start() -> Counting {
        let (lines, receiver) = channel();
        let queued = Arc::new(AtomicU64::new(0));
        let counted = queued.clone();
        let thread = std::thread::spawn(move || count(receiver, &counted));
        Counting {
            lines,
            batch: Vec::new(),
            batch_bytes: 0,
            queued,
            thread,
        }
    }

    /// Takes a sampled line for the thread; false when too much already waits.
    fn queue(&mut self, model: &str, counter: Counter, text: &str) -> bool {
        let bytes = text.len() as u64 + SAMPLE_OVERHEAD;
        if self.queued.fetch_add(bytes, Ordering::AcqRel) + bytes > MAX_QUEUED_BYTES {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        self.batch.push(Sample {
            model: model.to_string(),
            counter,
            text: text.to_string(),
        });
        self.batch_bytes += bytes;
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= BATCH_LINES {
            self.hand_over();
        }
        true
    }

    fn hand_over(&mut self) {
        self.batch_bytes = 0;
        // The thread only ends once this sender is dropped, so the send cannot fail.
        let _ = self.lines.send(std::mem::take(&mut self.batch));
    }

    /// Tokens per model of every sampled line.
    fn finish(mut self) -> BTreeMap<String, u64> {
        self.hand_over();
        drop(self.lines);
        self.thread.join().unwrap_or_default()
    }
}

/// The counting thread: tokenizes lines as they come, until the sender is dropped.
fn count(batches: Receiver<Vec<Sample>>, queued: &AtomicU64) -> BTreeMap<String, u64> {
    let mut tokens = BTreeMap::<String, u64>::new();
    for sample in batches.into_iter().flatten() {
        let counted = prompt_tokens(sample.counter, &sample.text);
        queued.fetch_sub(sample.text.len() as u64 + SAMPLE_OVERHEAD, Ordering::AcqRel);
        *tokens.entry(sample.model).or_default() += counted;
    }
    tokens
}

fn other_models() -> ModelEstimate {
    ModelEstimate {
        model: OTHER_MODELS.to_string(),
        counted_by: "mixed".to_string(),
        ..ModelEstimate::default()
    }
}

fn sum(mut into: ModelEstimate, from: ModelEstimate) -> ModelEstimate {
    into.model = if into.model.is_empty() { from.model } else { into.model };
    into.counted_by = if into.counted_by.is_empty() {
        from.counted_by
    } else {
        into.counted_by
    };
    into.requests += from.requests;
    into.input_tokens = into.input_tokens.saturating_add(from.input_tokens);
    into.output_tokens = into.output_tokens.saturating_add(from.output_tokens);
    into.without_output_ceiling += from.without_output_ceiling;
    into
}

/// The tokenizer of a model family OpenAI publishes one for, else a quarter of the bytes.
fn counter(model: &str) -> Counter {
    bpe::for_model(model).map_or(Counter::QuarterOfBytes, Counter::Tokenizer)
}

/// The input tokens of one request line ([`bpe::request::body_tokens`]).
fn prompt_tokens(counter: Counter, line: &str) -> u64 {
    let Ok(Value::Object(mut request)) = serde_json::from_str::<Value>(line) else {
        return 0;
    };
    match request.remove("body") {
        Some(Value::Object(body)) => bpe::request::body_tokens(&body, &|text| counter.count(text)),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(model: &str, content: &str, max_tokens: Option<u64>) -> String {
        let mut body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": content}]});
        if let Some(m) = max_tokens {
            body["max_tokens"] = m.into();
        }
        serde_json::json!({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": body}).to_string()
    }

    fn add(estimator: &mut Estimator, line: &str, model: &str, ceiling: Option<u64>) {
        estimator.add(Request {
            text: line,
            model: Some(model),
            output_ceiling: ceiling,
        });
    }

    #[test]
    fn chat_requests_count_their_text_with_the_family_tokenizer_and_the_framing() {
        let mut estimator = Estimator::default();
        let line = chat("gpt-4o-mini", "Hello world", Some(50));
        add(&mut estimator, &line, "gpt-4o-mini", Some(50));
        let estimate = estimator.finish();
        assert_eq!(estimate.total_tokens, 59);
        let [estimate] = estimate.by_model.try_into().unwrap();
        // "user" (1) + "Hello world" (2) + 3 per message + 3 for the reply.
        assert_eq!(estimate.input_tokens, 9);
        assert_eq!((estimate.output_tokens, estimate.without_output_ceiling), (50, 0));
        assert_eq!(estimate.counted_by, "o200k_base");
    }

    #[test]
    fn embeddings_count_strings_and_token_ids() {
        let mut estimator = Estimator::default();
        let line = r#"{"custom_id":"e","method":"POST","url":"/v1/embeddings","body":{"model":"text-embedding-3-small","input":["Hello world",[1,2,3]]}}"#;
        add(&mut estimator, line, "text-embedding-3-small", None);
        let [estimate] = estimator.finish().by_model.try_into().unwrap();
        assert_eq!(
            (estimate.input_tokens, estimate.counted_by.as_str()),
            (5, "cl100k_base")
        );
        assert_eq!(estimate.without_output_ceiling, 1);
    }

    #[test]
    fn models_without_a_tokenizer_count_a_quarter_of_their_text() {
        let mut estimator = Estimator::default();
        let line = chat("llama-3-70b", "Hello world", None);
        add(&mut estimator, &line, "llama-3-70b", None);
        let [estimate] = estimator.finish().by_model.try_into().unwrap();
        // "user" (1) + "Hello world" (3) + 3 per message + 3 for the reply.
        assert_eq!(estimate.input_tokens, 10);
        assert_eq!(estimate.counted_by, "bytes/4");
    }

    #[test]
    fn past_the_exact_share_a_sample_is_scaled_to_every_byte() {
        let mut estimator = Estimator::default();
        let line = chat("gpt-4o", &"lorem ipsum dolor sit amet ".repeat(40), Some(1));
        let lines = 3 * EXACT_BYTES / line.len() as u64;
        for _ in 0..lines {
            add(&mut estimator, &line, "gpt-4o", Some(1));
        }
        let tally = &estimator.models["gpt-4o"];
        assert!(
            tally.sampled_bytes < tally.line_bytes / 2,
            "most lines are not tokenized"
        );
        let per_line = prompt_tokens(tally.tokenizer.unwrap(), &line);
        let [estimate] = estimator.finish().by_model.try_into().unwrap();
        assert_eq!(estimate.input_tokens, per_line * lines, "identical lines scale exactly");
        assert!(
            estimate.counted_by.starts_with("o200k_base, "),
            "{}",
            estimate.counted_by
        );
    }

    #[test]
    fn at_most_fifty_models_are_listed_by_name() {
        let mut estimator = Estimator::default();
        for i in 0..60 {
            let model = format!("m{i:02}");
            add(&mut estimator, &chat(&model, "x", Some(1)), &model, Some(1));
        }
        let listed = estimator.finish().by_model;
        assert_eq!(listed.len(), MAX_USAGE_MODELS + 1);
        let other = listed.iter().find(|e| e.model == OTHER_MODELS).unwrap();
        assert_eq!(other.requests, 10);
        assert_eq!(listed.iter().map(|e| e.requests).sum::<u64>(), 60);
    }

    #[test]
    fn a_hostile_input_cannot_grow_the_estimate_or_its_queue() {
        let mut estimator = Estimator::default();
        // Many distinct models: at most MAX_DISTINCT_MODELS are tallied by name.
        for i in 0..(MAX_DISTINCT_MODELS + 500) {
            let model = format!("gpt-4o-{i}");
            add(&mut estimator, &chat(&model, "x", Some(1)), &model, Some(1));
        }
        assert_eq!(estimator.models.len(), MAX_DISTINCT_MODELS);
        // Lines far faster than the tokenizer: what waits for it stays within its bound.
        let long = chat("gpt-4o", &"word ".repeat(50_000), Some(1));
        for _ in 0..400 {
            add(&mut estimator, &long, "gpt-4o", Some(1));
            let queued = estimator.counting.as_ref().unwrap().queued.load(Ordering::Acquire);
            assert!(queued <= MAX_QUEUED_BYTES, "{queued} bytes wait for the tokenizer");
        }
        let estimate = estimator.finish();
        assert_eq!(
            estimate.by_model.iter().map(|e| e.requests).sum::<u64>(),
            (MAX_DISTINCT_MODELS + 900) as u64
        );
    }
}
