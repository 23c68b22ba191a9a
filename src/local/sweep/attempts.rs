//! What a sweep's attempts are, as `run -f` sees them: the state directory stands in for the
//! controller's cache. A first attempt exists once it has a phase; a follow-up exists once its
//! input is on the gateway (`retry-input.json` in its state directory: the cluster's
//! `llmbatch.io/retry-lines`); a finished attempt whose error file was read keeps how many of
//! its lines failed retryably (`retryable.json`: `llmbatch.io/retryable-lines`). So a rerun
//! neither uploads nor creates a follow-up twice.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::api::{BatchStatus, MAX_ATTEMPTS};
use crate::local::runner::Ending;
use crate::local::state::{StateDir, write_atomically};
use crate::steps::retry::RetryInput;
use crate::sweep::{ObservedChild, attempt_name};

/// One attempt of a child that exists: its first attempt, or a follow-up.
#[derive(Clone, Debug, Default)]
pub struct Attempt {
    /// Its latest status.
    pub status: BatchStatus,
    /// For a follow-up: its input on the gateway (`None` while that is being made).
    pub input: Option<RetryInput>,
    /// Its lines that failed retryably, once its error file was read.
    pub retryable: Option<u64>,
    /// How its run in this invocation ended.
    pub ending: Option<Ending>,
}

impl Attempt {
    /// What `sweep::decide` needs of it.
    pub fn observed(&self) -> ObservedChild {
        ObservedChild {
            phase: self.status.phase,
            request_counts: self.status.request_counts.clone(),
            usage: self.status.usage.clone(),
            cost: self.status.cost.clone(),
            lines: self.input.as_ref().map(|i| i.lines),
            retryable: self.retryable,
        }
    }
}

/// Kept in a follow-up's state directory once its input is on the gateway.
#[derive(Serialize, Deserialize)]
struct KeptRetryInput {
    file_id: String,
    lines: u64,
}

/// Kept in an attempt's state directory once its error file was read.
#[derive(Serialize, Deserialize)]
struct KeptRetryable {
    retryable: u64,
}

const RETRY_INPUT: &str = "retry-input.json";
const RETRYABLE: &str = "retryable.json";

/// The attempts of the child whose first attempt is `first` (with the state `status`) that
/// exist, in order.
pub fn existing(state_dir: &StateDir, namespace: &str, first: &str, status: &BatchStatus) -> Vec<(String, Attempt)> {
    let mut found = Vec::new();
    if status.phase.is_none() {
        return found;
    }
    let retryable = |name: &str| read::<KeptRetryable>(state_dir, namespace, name, RETRYABLE).map(|k| k.retryable);
    found.push((
        first.to_string(),
        Attempt {
            status: status.clone(),
            retryable: retryable(first),
            ..Attempt::default()
        },
    ));
    // Follow-ups made under a larger maxAttempts than today's still count.
    for attempt in 2..=MAX_ATTEMPTS {
        let name = attempt_name(first, attempt);
        let Some(kept) = read::<KeptRetryInput>(state_dir, namespace, &name, RETRY_INPUT) else {
            break;
        };
        let input = RetryInput {
            file_id: kept.file_id,
            lines: kept.lines,
        };
        let status = state_dir
            .load(namespace, &name)
            .ok()
            .flatten()
            .filter(|saved| saved.input_digest == input_digest(&input))
            .map(|saved| saved.status)
            .unwrap_or_default();
        let attempt = Attempt {
            status,
            input: Some(input),
            retryable: retryable(&name),
            ending: None,
        };
        found.push((name, attempt));
    }
    found
}

/// Keeps what reading `previous`'s error file made: the input of its follow-up `follow_up`, if
/// any (first: from then on the follow-up exists), and how many lines failed retryably.
pub fn keep_retry(
    state_dir: &StateDir,
    namespace: &str,
    follow_up: &str,
    previous: &str,
    made: Option<&RetryInput>,
) -> anyhow::Result<()> {
    if let Some(input) = made {
        let kept = KeptRetryInput {
            file_id: input.file_id.clone(),
            lines: input.lines,
        };
        write(&state_dir.object_file(namespace, follow_up, RETRY_INPUT)?, &kept)?;
    }
    let kept = KeptRetryable {
        retryable: made.map_or(0, |m| m.lines),
    };
    write(&state_dir.object_file(namespace, previous, RETRYABLE)?, &kept)
}

/// What a follow-up's state was computed from: the file it reads on the gateway.
pub fn input_digest(input: &RetryInput) -> String {
    format!("fileId:{}", input.file_id)
}

fn read<T: serde::de::DeserializeOwned>(state_dir: &StateDir, namespace: &str, name: &str, file: &str) -> Option<T> {
    let path = state_dir.object_file(namespace, name, file).ok()?;
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    write_atomically(path, &serde_json::to_vec(value)?)
}
