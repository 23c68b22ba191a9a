//! Token usage by model: one answer's tokens as the output line reports them, summed into
//! `status.usage` with a bounded `byModel` list (a gateway may name any model in any answer).

use serde::Deserialize;

use crate::api::{MAX_USAGE_MODELS, ModelUsage, OTHER_MODELS, UNKNOWN_MODEL, Usage};

/// Longest model name kept (the rest is cut off, at a character boundary).
pub const MAX_MODEL_NAME: usize = 128;

/// The tokens of one successful answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineTokens {
    /// Input tokens, cached ones included.
    pub input: u64,
    /// Of `input`, read from the prompt cache (never more than `input`).
    pub cached_input: u64,
    /// Output tokens, reasoning tokens included.
    pub output: u64,
    /// The gateway's `total_tokens`, when it reports one.
    pub total: Option<u64>,
}

/// Chat completions, completions and embeddings report prompt/completion tokens (cached ones in
/// `prompt_tokens_details`); responses report input/output tokens (`input_tokens_details`).
/// Reasoning tokens are part of the output tokens in both.
#[derive(Debug, Deserialize, Default)]
pub struct LineUsage {
    #[serde(alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(alias = "output_tokens")]
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    #[serde(alias = "input_tokens_details")]
    prompt_tokens_details: Option<InputDetails>,
}

#[derive(Debug, Deserialize, Default)]
struct InputDetails {
    cached_tokens: Option<u64>,
}

impl LineUsage {
    pub fn tokens(&self) -> LineTokens {
        LineTokens {
            input: self.prompt_tokens.unwrap_or(0),
            cached_input: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            output: self.completion_tokens.unwrap_or(0),
            total: self.total_tokens,
        }
    }
}

/// Adds one answer of `model` (`None`: the answer names none) to `usage`.
pub fn add_line(usage: &mut Usage, model: Option<&str>, tokens: &LineTokens) {
    let cached = tokens.cached_input.min(tokens.input);
    usage.prompt_tokens = usage.prompt_tokens.saturating_add(tokens.input);
    usage.completion_tokens = usage.completion_tokens.saturating_add(tokens.output);
    let total = tokens.total.unwrap_or(tokens.input.saturating_add(tokens.output));
    usage.total_tokens = usage.total_tokens.saturating_add(total);
    let entry = entry(&mut usage.by_model, model);
    entry.requests = entry.requests.saturating_add(1);
    entry.input_tokens = entry.input_tokens.saturating_add(tokens.input);
    entry.cached_input_tokens = entry.cached_input_tokens.saturating_add(cached);
    entry.output_tokens = entry.output_tokens.saturating_add(tokens.output);
}

/// Adds `from` (another Batch's, another attempt's) to `into`, model by model.
pub fn add(into: &mut Usage, from: &Usage) {
    into.prompt_tokens = into.prompt_tokens.saturating_add(from.prompt_tokens);
    into.completion_tokens = into.completion_tokens.saturating_add(from.completion_tokens);
    into.total_tokens = into.total_tokens.saturating_add(from.total_tokens);
    for model in &from.by_model {
        let entry = entry(&mut into.by_model, Some(&model.model));
        entry.requests = entry.requests.saturating_add(model.requests);
        entry.input_tokens = entry.input_tokens.saturating_add(model.input_tokens);
        entry.cached_input_tokens = entry.cached_input_tokens.saturating_add(model.cached_input_tokens);
        entry.output_tokens = entry.output_tokens.saturating_add(model.output_tokens);
    }
}

/// The entry of `model`: its own while fewer than [`MAX_USAGE_MODELS`] models are listed,
/// else [`OTHER_MODELS`]. The list stays sorted by model.
fn entry<'a>(models: &'a mut Vec<ModelUsage>, model: Option<&str>) -> &'a mut ModelUsage {
    let name = match model {
        None | Some("") => UNKNOWN_MODEL,
        Some(name) => truncate(name),
    };
    let named = models.iter().filter(|m| !is_bucket(&m.model)).count();
    let name = match models.binary_search_by(|m| m.model.as_str().cmp(name)) {
        Ok(_) => name,
        Err(_) if is_bucket(name) || named < MAX_USAGE_MODELS => name,
        Err(_) => OTHER_MODELS,
    };
    let at = match models.binary_search_by(|m| m.model.as_str().cmp(name)) {
        Ok(at) => at,
        Err(at) => {
            let model = name.to_string();
            models.insert(
                at,
                ModelUsage {
                    model,
                    ..Default::default()
                },
            );
            at
        }
    };
    &mut models[at]
}

/// Keeps the `keep` models with the most tokens and sums the rest under [`OTHER_MODELS`] (for
/// a report that must fit a small space: a Job's termination message).
pub fn fold(usage: &mut Usage, keep: usize) {
    let mut models = std::mem::take(&mut usage.by_model);
    models.sort_by_key(|m| std::cmp::Reverse(m.input_tokens.saturating_add(m.output_tokens)));
    let rest = models.split_off(keep.min(models.len()));
    models.sort_by(|a, b| a.model.cmp(&b.model));
    usage.by_model = models;
    for model in rest {
        let other = entry(&mut usage.by_model, Some(OTHER_MODELS));
        other.requests = other.requests.saturating_add(model.requests);
        other.input_tokens = other.input_tokens.saturating_add(model.input_tokens);
        other.cached_input_tokens = other.cached_input_tokens.saturating_add(model.cached_input_tokens);
        other.output_tokens = other.output_tokens.saturating_add(model.output_tokens);
    }
}

fn is_bucket(name: &str) -> bool {
    name == OTHER_MODELS || name == UNKNOWN_MODEL
}

fn truncate(name: &str) -> &str {
    match name.char_indices().nth(MAX_MODEL_NAME) {
        Some((end, _)) => &name[..end],
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: u64, cached_input: u64, output: u64) -> LineTokens {
        LineTokens {
            input,
            cached_input,
            output,
            total: None,
        }
    }

    #[test]
    fn answers_are_summed_by_model() {
        let mut usage = Usage::default();
        add_line(&mut usage, Some("b"), &tokens(10, 4, 5));
        add_line(&mut usage, Some("a"), &tokens(1, 0, 1));
        add_line(&mut usage, Some("b"), &tokens(10, 20, 5));
        add_line(&mut usage, None, &tokens(2, 0, 0));
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
            (23, 11, 34)
        );
        let rows: Vec<_> = usage
            .by_model
            .iter()
            .map(|m| {
                (
                    m.model.as_str(),
                    m.requests,
                    m.input_tokens,
                    m.cached_input_tokens,
                    m.output_tokens,
                )
            })
            .collect();
        // Cached tokens are never more than the line's input (a gateway may say otherwise).
        assert_eq!(
            rows,
            [("(unknown)", 1, 2, 0, 0), ("a", 1, 1, 0, 1), ("b", 2, 20, 14, 10)]
        );
    }

    #[test]
    fn a_gateway_naming_a_new_model_in_every_answer_cannot_grow_the_list() {
        let mut usage = Usage::default();
        for i in 0..10_000 {
            add_line(
                &mut usage,
                Some(&format!("model-{i:05}-{}", "x".repeat(1000))),
                &tokens(1, 0, 1),
            );
        }
        add_line(&mut usage, None, &tokens(1, 0, 1));
        assert_eq!(usage.by_model.len(), MAX_USAGE_MODELS + 2);
        assert!(usage.by_model.iter().all(|m| m.model.chars().count() <= MAX_MODEL_NAME));
        let other = usage.by_model.iter().find(|m| m.model == OTHER_MODELS).unwrap();
        assert_eq!(other.requests, 10_000 - MAX_USAGE_MODELS as u64);
        let requests: u64 = usage.by_model.iter().map(|m| m.requests).sum();
        assert_eq!(
            (requests, usage.prompt_tokens),
            (10_001, 10_001),
            "every answer counted once"
        );
        // Summing two full lists stays bounded too.
        let mut sum = usage.clone();
        let mut more = Usage::default();
        for i in 0..60 {
            add_line(&mut more, Some(&format!("else-{i}")), &tokens(1, 0, 0));
        }
        add(&mut sum, &more);
        assert_eq!(sum.by_model.len(), MAX_USAGE_MODELS + 2);
        assert_eq!(sum.by_model.iter().map(|m| m.requests).sum::<u64>(), 10_061);
        fold(&mut sum, 3);
        assert!(sum.by_model.len() <= 4, "three kept, the rest under (other)");
        assert_eq!(sum.by_model.iter().map(|m| m.requests).sum::<u64>(), 10_061);
        assert!(sum.by_model.windows(2).all(|w| w[0].model < w[1].model), "still sorted");
    }
}
