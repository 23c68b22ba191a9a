//! What the reconcilers report to the metrics: each reconcile's result and duration, Batches
//! that finished (request lines, tokens and cost by model), and adoptions that prevented a
//! duplicate submission.

use std::future::Future;
use std::time::Instant;

use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;

use super::batch::key;
use super::{Context, Error};
use crate::api::{Batch, BatchStatus};
use crate::engine::Outcome;
use crate::telemetry::ModelTokens;

/// Runs one reconcile of `controller` and records its result and duration, and that it is in
/// flight meanwhile.
pub async fn measured(
    controller: &'static str,
    ctx: &Context,
    reconcile: impl Future<Output = Result<Requeue, Error>>,
) -> Result<Requeue, Error> {
    let _in_flight = ctx.metrics.reconcile_started(controller);
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

/// Adds a Batch's request lines, tokens and cost once, when the status that makes it terminal
/// has been written (`written`: the object before that write). A controller that dies before
/// the write counts nothing and the next one counts the results it downloads again; a reconcile
/// on a stale cache may replay the last step, so a process counts each Batch once.
pub fn finished(written: &Batch, after: &BatchStatus, ctx: &Context) {
    let terminal = |s: Option<&BatchStatus>| s.and_then(|s| s.phase).is_some_and(|p| p.is_terminal());
    if terminal(written.status.as_ref()) || !terminal(Some(after)) || !ctx.first_finish(&key(written)) {
        return;
    }
    let counts = after.request_counts.clone().unwrap_or_default();
    ctx.metrics.batch_finished(counts.completed, counts.failed);
    let namespace = written.namespace().unwrap_or_default();
    let gateway = &written.spec.gateway_ref.name;
    for model in after.usage.iter().flat_map(|u| &u.by_model) {
        let used = ModelTokens {
            model: &model.model,
            input: model.input_tokens,
            cached_input: model.cached_input_tokens,
            output: model.output_tokens,
        };
        ctx.metrics.tokens_used(&namespace, gateway, &used);
    }
    let Some(cost) = &after.cost else { return };
    for model in &cost.by_model {
        // The exact decimal becomes a float here only: the nearest one to the status's string.
        if let Ok(amount) = model.actual.parse::<f64>() {
            ctx.metrics
                .cost_incurred(&namespace, gateway, &model.model, &cost.currency, amount);
        }
    }
}
