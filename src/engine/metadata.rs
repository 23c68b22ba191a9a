//! What the engine attaches to upstream objects so a restart can find them again, within
//! OpenAI's metadata limits (16 pairs, keys up to 64 and values up to 512 characters).

use std::collections::BTreeMap;

use super::Context;
use crate::api::{BatchSpec, MAX_USER_METADATA_PAIRS};

/// Metadata key carrying the attempt token.
pub const ATTEMPT_KEY: &str = "llmbatch.io/attempt";
/// Metadata key carrying the object's UID.
pub const UID_KEY: &str = "llmbatch.io/uid";
/// Metadata key carrying `namespace/name`, for people reading the gateway's console.
pub const OBJECT_KEY: &str = "llmbatch.io/object";

const MAX_PAIRS: usize = 16;
const MAX_KEY_CHARS: usize = 64;
const MAX_VALUE_CHARS: usize = 512;

/// Problems that make a spec unsendable, each naming its field. Empty when sendable.
pub fn check_spec(spec: &BatchSpec) -> Vec<String> {
    let mut problems = Vec::new();
    if spec.metadata.len() > MAX_USER_METADATA_PAIRS {
        problems.push(format!(
            "spec.metadata: {} pairs; at most {MAX_USER_METADATA_PAIRS} are allowed (the gateway allows 16 and the operator uses 3)",
            spec.metadata.len()
        ));
    }
    for (key, value) in &spec.metadata {
        if key.starts_with("llmbatch.io/") {
            problems.push(format!(
                "spec.metadata.{key}: keys starting with llmbatch.io/ are reserved for the operator"
            ));
        }
        if key.chars().count() > MAX_KEY_CHARS {
            problems.push(format!(
                "spec.metadata.{key}: keys are at most {MAX_KEY_CHARS} characters"
            ));
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            problems.push(format!(
                "spec.metadata.{key}: values are at most {MAX_VALUE_CHARS} characters"
            ));
        }
    }
    if humantime::parse_duration(&spec.completion_window).is_err() {
        problems.push(format!(
            "spec.completionWindow: {:?} is not a duration like 24h",
            spec.completion_window
        ));
    }
    problems
}

/// The user's metadata plus the operator's keys; an error names what breaks the limits.
pub fn batch_metadata(spec: &BatchSpec, ctx: &Context, attempt: &str) -> Result<BTreeMap<String, String>, String> {
    let problems = check_spec(spec);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let mut metadata = spec.metadata.clone();
    metadata.insert(ATTEMPT_KEY.to_string(), attempt.to_string());
    metadata.insert(UID_KEY.to_string(), truncate(&ctx.uid));
    metadata.insert(OBJECT_KEY.to_string(), truncate(&ctx.object));
    debug_assert!(metadata.len() <= MAX_PAIRS);
    Ok(metadata)
}

/// The name the input file is uploaded under: it carries the object's UID and the attempt
/// token, so a restart finds the upload of this attempt of this object by name (and never
/// one of another object that had the same name, or an earlier one of this name).
pub fn upload_filename(object: &str, uid: &str, attempt: &str) -> String {
    let safe = |text: &str, limit: usize| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .take(limit)
            .collect()
    };
    format!("llmbatch-{}-{}-{attempt}.jsonl", safe(object, 100), safe(uid, 64))
}

fn truncate(value: &str) -> String {
    value.chars().take(MAX_VALUE_CHARS).collect()
}
