//! What the engine attaches to upstream objects so a restart can find them again, within
//! OpenAI's metadata limits (16 pairs, keys up to 64 and values up to 512 characters).

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use super::Context;
use crate::api::{BatchMode, BatchSpec, MAX_USER_METADATA_PAIRS};

/// Metadata key carrying the attempt token.
pub const ATTEMPT_KEY: &str = "llmbatch.io/attempt";
/// Metadata key carrying the object's UID.
pub const UID_KEY: &str = "llmbatch.io/uid";
/// Metadata key carrying `namespace/name`, for people reading the gateway's console.
pub const OBJECT_KEY: &str = "llmbatch.io/object";

const MAX_PAIRS: usize = 16;
const MAX_KEY_CHARS: usize = 64;
const MAX_VALUE_CHARS: usize = 512;

/// Problems that make a spec unsendable in `mode` (`None`: not known yet, only the rules of
/// every mode), each naming its field. Empty when sendable.
pub fn check_spec(spec: &BatchSpec, mode: Option<BatchMode>) -> Vec<String> {
    let mut problems = Vec::new();
    if mode == Some(BatchMode::Direct) && spec.input.file_id.is_some() {
        problems.push(
            "spec.input.fileId needs the gateway's Files API, which direct mode does not use; give the requests in \
             a ConfigMap, a Secret or spec.input.requests"
                .to_string(),
        );
    }
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
    let problems = check_spec(spec, Some(BatchMode::Batch));
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

/// The attempt token of an attempt started at `now`: `<8 hex digits>-t<unix seconds>`, e.g.
/// `1f3e9a0c-t1767225600`. It is recorded in status before anything is uploaded and carried in
/// the upload's name and the batch metadata; the time in it says how far back the search for
/// what the attempt created must look after a crash ([`attempt_started`]). Kept in the token,
/// the time needs no status field of its own (the CRD is unchanged) and reaches both drivers
/// wherever the token or the upload's name does.
pub fn attempt_token_at(now: Timestamp, random: u32) -> String {
    format!("{random:08x}-t{}", now.as_second())
}

/// When the attempt of `token` started (unix seconds); `None` for a token that carries no time
/// (the 8 hex digits tokens were before they carried one).
pub fn attempt_started(token: &str) -> Option<i64> {
    let (random, time) = token.split_once("-t")?;
    let hex = random.len() == 8 && random.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = !time.is_empty() && time.bytes().all(|b| b.is_ascii_digit());
    (hex && digits).then(|| time.parse().ok()).flatten()
}

/// When the attempt that uploads its input as `filename` ([`upload_filename`]) started.
pub fn upload_attempt_started(filename: &str) -> Option<i64> {
    let stem = filename.strip_suffix(".jsonl")?;
    let mut parts = stem.rsplitn(3, '-');
    let (time, random) = (parts.next()?, parts.next()?);
    parts.next()?;
    attempt_started(&format!("{random}-{time}"))
}

fn truncate(value: &str) -> String {
    value.chars().take(MAX_VALUE_CHARS).collect()
}
