//! What the reconcilers report to the metrics: each reconcile's result and duration, Batches
//! that finished (request lines, tokens), and adoptions that prevented a duplicate submission.

use std::future::Future;
use std::time::Instant;

use kube::runtime::controller::Action as Requeue;

use super::{Context, Error};
use crate::api::BatchStatus;
use crate::engine::Outcome;

/// Runs one reconcile of `controller` and records its result and duration.
pub async fn measured(
    controller: &'static str,
    ctx: &Context,
    reconcile: impl Future<Output = Result<Requeue, Error>>,
) -> Result<Requeue, Error> {
    let started = Instant::now();
    let result = reconcile.await;
    let error = result.as_ref().err().map(Error::metric_label);
    ctx.metrics.reconciled(controller, error, started.elapsed());
    result
}

/// Counts an upload or batch creation that an adoption made unnecessary.
pub fn adoption(outcome: &Outcome, ctx: &Context) {
    match outcome {
        Outcome::InputUploaded { adopted: true, .. } => ctx.metrics.duplicate_prevented("file"),
        Outcome::BatchSubmitted { adopted: true, .. } => ctx.metrics.duplicate_prevented("batch"),
        _ => {}
    }
}

/// Adds a Batch's request lines and tokens once, when it reaches a terminal phase (`key`:
/// namespace/name; a reconcile on a stale cache may replay the last step).
pub fn finished(key: &str, before: &BatchStatus, after: &BatchStatus, ctx: &Context) {
    let terminal = |s: &BatchStatus| s.phase.is_some_and(|p| p.is_terminal());
    if terminal(before) || !terminal(after) || !ctx.first_finish(key) {
        return;
    }
    let counts = after.request_counts.clone().unwrap_or_default();
    let usage = after.usage.clone().unwrap_or_default();
    ctx.metrics.batch_finished(
        counts.completed,
        counts.failed,
        usage.prompt_tokens,
        usage.completion_tokens,
    );
}
