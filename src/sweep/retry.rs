//! `spec.retry`: which failed lines are worth another attempt, the follow-up Batches that
//! carry them, and each child's attempts seen as one chain whose counts merge.
//!
//! A child's attempts form a chain: the child itself (attempt 1), then `<child>-r1`,
//! `<child>-r2`, ... (see [`super::attempt_name`]). Attempt `n + 1` holds exactly the lines of
//! attempt `n` that failed retryably, so its custom_ids are the same and its results join
//! with the others on them. The chain is done when its latest attempt finished and nothing of
//! it is to be retried: no retryable line, a cancelled attempt, or `maxAttempts` reached.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::api::{BatchInput, BatchPhase, BatchSpec, BatchSweepSpec, Cost, MAX_ATTEMPTS, RequestCounts, Usage};

use super::{ChildPlan, ObservedChild, attempt_name};

/// Error codes, outside an HTTP response, of lines worth another attempt: the batch expired
/// before the line ran, or the gateway reports a timeout or an overload for it. A cancelled
/// line (`batch_cancelled`) is not: someone asked for the batch to stop.
pub const RETRYABLE_CODES: &[&str] = &[
    "batch_expired",
    "timeout",
    "request_timeout",
    "rate_limit_exceeded",
    "server_error",
];

#[derive(Deserialize)]
struct ErrorLine {
    custom_id: Option<String>,
    response: Option<ErrorResponse>,
    error: Option<LineError>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    status_code: Option<u16>,
}

#[derive(Deserialize)]
struct LineError {
    code: Option<String>,
}

/// The custom_id of an error-file line that failed retryably: an HTTP 408, 429 or 5xx answer,
/// or one of [`RETRYABLE_CODES`]. `None` for anything else (a 400, a cancelled line, a line
/// that is not JSON or has no custom_id).
pub fn retryable_custom_id(line: &str) -> Option<String> {
    let line: ErrorLine = serde_json::from_str(line).ok()?;
    let status = line.response.and_then(|r| r.status_code);
    let code = line.error.and_then(|e| e.code);
    let retryable = match (status, code.as_deref()) {
        (Some(s), _) if s == 408 || s == 429 || s >= 500 => true,
        (_, Some(code)) => RETRYABLE_CODES.contains(&code),
        _ => false,
    };
    retryable.then_some(line.custom_id?)
}

/// The name of the file a follow-up's input is uploaded as: the upstream batch it retries
/// names it, so a restart adopts the upload instead of making a second one.
pub fn retry_filename(retried_batch_id: &str) -> String {
    format!("llmbatch-retry-{retried_batch_id}.jsonl")
}

impl ChildPlan {
    /// Attempt `attempt` (2 or more) of this child (`self` is its first attempt): same chunk,
    /// model and custom_id prefix, a name of its own, retrying the lines of attempt
    /// `attempt - 1`.
    pub fn follow_up(&self, attempt: u32) -> ChildPlan {
        debug_assert!(self.attempt <= 1, "follow-ups are planned from the first attempt");
        ChildPlan {
            name: attempt_name(&self.name, attempt),
            attempt,
            retry_of: Some(attempt_name(&self.name, attempt - 1)),
            ..self.clone()
        }
    }

    /// The Batch spec of a follow-up whose input (the retried lines, already sliced and
    /// rewritten like the first attempt's) was uploaded to the gateway as `file_id`.
    pub fn follow_up_spec(&self, sweep: &str, spec: &BatchSweepSpec, file_id: &str) -> BatchSpec {
        let mut batch = self.batch_spec(sweep, spec);
        batch.input = BatchInput {
            file_id: Some(file_id.to_string()),
            ..BatchInput::default()
        };
        batch
    }
}

/// Where a child's chain of attempts stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainState {
    /// Its first attempt is not created yet.
    Waiting,
    /// Its latest attempt is not finished.
    Running,
    /// Its latest attempt finished with lines to retry: the next attempt is due.
    RetryDue,
    /// Nothing more will run; the phase of its latest attempt.
    Done(BatchPhase),
}

/// One child and its attempts so far.
#[derive(Debug, Clone)]
pub struct Chain<'a> {
    pub first: &'a ChildPlan,
    /// The attempts that exist, in order: (name, what was seen).
    pub attempts: Vec<(String, &'a ObservedChild)>,
    pub state: ChainState,
}

impl<'a> Chain<'a> {
    /// The chain of `first`, from the attempts in `observed`.
    pub fn of(first: &'a ChildPlan, observed: &'a BTreeMap<String, ObservedChild>, max_attempts: u32) -> Self {
        // Follow-ups made under a larger maxAttempts than today's still count.
        let mut attempts = Vec::new();
        for attempt in 1..=max_attempts.max(MAX_ATTEMPTS) {
            let name = attempt_name(&first.name, attempt);
            match observed.get(&name) {
                Some(seen) => attempts.push((name, seen)),
                None => break,
            }
        }
        let state = match attempts.last() {
            None => ChainState::Waiting,
            Some((_, latest)) => match latest.phase {
                Some(phase) if phase.is_terminal() => {
                    let failed = latest.request_counts.as_ref().map_or(0, |c| c.failed);
                    let more = (attempts.len() as u32) < max_attempts.min(MAX_ATTEMPTS)
                        && phase != BatchPhase::Cancelled
                        && failed > 0
                        && latest.retryable != Some(0);
                    if more {
                        ChainState::RetryDue
                    } else {
                        ChainState::Done(phase)
                    }
                }
                _ => ChainState::Running,
            },
        };
        Chain { first, attempts, state }
    }

    /// The next attempt to create, when one is due.
    pub fn next(&self) -> Option<ChildPlan> {
        match self.state {
            ChainState::Waiting => Some(self.first.clone()),
            ChainState::RetryDue => Some(self.first.follow_up(self.attempts.len() as u32 + 1)),
            _ => None,
        }
    }

    /// The phase of the latest attempt.
    pub fn phase(&self) -> Option<BatchPhase> {
        self.attempts.last().and_then(|(_, seen)| seen.phase)
    }

    /// Lines of the child by outcome over all attempts: the first attempt's total; every
    /// success of any attempt; the failures that no later attempt took over. A line never
    /// counts twice.
    pub fn request_counts(&self) -> RequestCounts {
        let mut counts = RequestCounts::default();
        let mut failed = 0u64;
        let mut taken_over = 0u64;
        for (i, (_, seen)) in self.attempts.iter().enumerate() {
            let c = seen.request_counts.clone().unwrap_or_default();
            if i == 0 {
                counts.total = c.total;
            } else {
                taken_over += seen.lines();
            }
            counts.completed += c.completed;
            failed += c.failed;
        }
        counts.failed = failed.saturating_sub(taken_over);
        counts.not_run = self
            .attempts
            .last()
            .and_then(|(_, seen)| seen.request_counts.as_ref())
            .and_then(|c| c.not_run);
        counts
    }

    /// Tokens of every attempt (each one was spent), by model.
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for (_, seen) in &self.attempts {
            crate::pricing::add_usage(&mut usage, &seen.usage.clone().unwrap_or_default());
        }
        usage
    }

    /// What every attempt cost, each once (`None` when none was priced).
    pub fn cost(&self) -> Option<Cost> {
        let mut cost = None;
        for (_, seen) in &self.attempts {
            if let Some(c) = &seen.cost {
                crate::pricing::add_cost(&mut cost, c);
            }
        }
        cost
    }

    /// (lines resubmitted, lines that then succeeded) over the follow-ups.
    pub fn retried_and_recovered(&self) -> (u64, u64) {
        self.attempts
            .iter()
            .skip(1)
            .fold((0, 0), |(retried, recovered), (_, seen)| {
                let completed = seen.request_counts.as_ref().map_or(0, |c| c.completed);
                (retried + seen.lines(), recovered + completed)
            })
    }
}

impl ObservedChild {
    /// The lines this attempt holds: those a follow-up was created with, else its total.
    fn lines(&self) -> u64 {
        self.lines
            .or_else(|| self.request_counts.as_ref().map(|c| c.total))
            .unwrap_or(0)
    }
}

/// Every child's chain, in plan order.
pub fn chains<'a>(
    children: &'a [ChildPlan],
    observed: &'a BTreeMap<String, ObservedChild>,
    max_attempts: u32,
) -> Vec<Chain<'a>> {
    children
        .iter()
        .map(|child| Chain::of(child, observed, max_attempts))
        .collect()
}
