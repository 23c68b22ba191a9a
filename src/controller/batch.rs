//! Reconciling a Batch: take engine steps until the batch must wait (a poll not yet due, a
//! missing input or gateway) or is finished, writing the status after every step, so a
//! controller that dies between any two steps resumes from the status alone.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Error as FinalizerError, Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};

use super::batch_driver::ClusterBatch;
use super::caches::Awaited;
use super::cluster_io::{self, Gateway};
use super::{Context, Error, FINALIZER, instrument};
use super::{direct_progress, notify, prices, reattach};
use crate::api::{
    BATCH_ID_ANNOTATION, Batch, BatchMode, BatchPhase, BatchStatus, Conditions, DeletionPolicy, condition_types as ct,
    reasons,
};
use crate::engine::{self, Action, ErrorClass, Outcome, PollingPolicy, UpstreamState};
use crate::pricing::Prices;
use crate::steps;

/// Steps one reconcile may take before yielding to other objects.
const MAX_STEPS: usize = 16;
/// How soon a Batch waiting for its input or gateway looks again, when nothing woke it sooner
/// (a Secret is not watched: the controller may only get Secrets, never list them).
const WAITING: Duration = Duration::from_secs(15);
/// How soon a Batch waiting for room on its gateway asks again.
const AWAITING_BUDGET: Duration = Duration::from_secs(5);
/// How soon a Batch whose Job runs looks again at the latest (the Job's changes also wake it).
const JOB_RUNNING: Duration = Duration::from_secs(10);

/// Entry point of the Batch controller.
pub async fn reconcile(batch: Arc<Batch>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    ctx.reconciled();
    ctx.caches().ready().await;
    let ns = batch.namespace().unwrap_or_default();
    let api: Api<Batch> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, batch, |event| async {
        match event {
            Finalizer::Apply(batch) => apply(batch, &ctx).await,
            Finalizer::Cleanup(batch) => cleanup(batch, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        // The step's own error keeps its kind (metrics, Event notes); only the finalizer's
        // own patches count as finalizer errors.
        FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e,
        FinalizerError::AddFinalizer(e) | FinalizerError::RemoveFinalizer(e) => Error::Finalizer(e),
        other @ (FinalizerError::UnnamedObject | FinalizerError::InvalidFinalizer) => Error::Invalid(other.to_string()),
    })
}

/// Requeues with per-object exponential backoff, and says why in a Warning Event.
pub fn error_policy(batch: Arc<Batch>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let delay = ctx.backoff(&key(&batch));
    tracing::warn!(batch = %key(&batch), error = %error, kind = error.metric_label(), ?delay, "reconcile failed");
    let note = format!("{error} (retrying in {}s)", delay.as_secs());
    tokio::spawn(async move {
        ctx.publish(&*batch, EventType::Warning, "ReconcileError", &note).await;
    });
    Requeue::requeue(delay)
}

pub(super) fn key(batch: &Batch) -> String {
    format!("{}/{}", batch.namespace().unwrap_or_default(), batch.name_any())
}

async fn apply(batch: Arc<Batch>, ctx: &Context) -> Result<Requeue, Error> {
    let status = batch.status.clone().unwrap_or_default();
    if status.phase.is_some_and(BatchPhase::is_terminal) {
        if let Some(wait) = notify(&batch, &status, ctx).await? {
            return Ok(Requeue::requeue(wait));
        }
        return expire_after_ttl(&batch, &status, ctx).await;
    }
    let gateway = match cluster_io::gateway_client(ctx, &batch).await? {
        Ok(found) => found,
        Err(why) => return wait_for_gateway(&batch, status, why, ctx).await,
    };
    let status = reattach::status(&batch, &gateway.client, ctx).await?;
    let mut draft = Draft::new(&batch, status);
    let requeue = take_steps(&batch, &gateway, &mut draft, ctx).await;
    let written = draft.write(ctx).await;
    let requeue = requeue?;
    written?;
    // A Batch held by the money budget is looked at again every few seconds: no wake needed.
    notify(&draft.written, &draft.status, ctx).await?;
    Ok(requeue)
}

/// Delivers the events the Batch owes its webhook (none without one) and records how it went;
/// the wait until the next attempt while one is pending.
async fn notify(batch: &Batch, status: &BatchStatus, ctx: &Context) -> Result<Option<Duration>, Error> {
    let owed = crate::notify::batch_events(batch, status);
    if owed.is_empty() {
        return Ok(None);
    }
    let gateway = ctx
        .caches()
        .gateway(&batch.namespace().unwrap_or_default(), &batch.spec.gateway_ref.name);
    let in_sweep = batch.owner_references().iter().any(|o| o.kind == "BatchSweep");
    let Some(target) = notify::target(batch.spec.notify.as_ref(), gateway.as_deref(), !in_sweep) else {
        return Ok(None);
    };
    let done = notify::deliver(ctx, "batch", batch, target, owed, &status.notifications).await;
    if done.entries != status.notifications {
        let mut next = status.clone();
        next.notifications = done.entries;
        cluster_io::write_status(&ctx.client, batch, &next).await?;
    }
    Ok(done.wake)
}

/// Takes engine steps until the Batch has to wait; the status is written (by the caller, and
/// before any step that creates something upstream while the attempt is not yet durable).
async fn take_steps(batch: &Batch, gateway: &Gateway, draft: &mut Draft, ctx: &Context) -> Result<Requeue, Error> {
    let key = key(batch);
    let mut io = ClusterBatch::new(batch, gateway, ctx);
    for _ in 0..MAX_STEPS {
        let status = draft.status.clone();
        let action = engine::decide(&batch.spec, &status, &context(batch, gateway.polling, None));
        if let Action::Poll { after, .. } = &action {
            let wait = ctx.poll_wait(&key, *after);
            if !wait.is_zero() {
                ctx.reset_backoff(&key);
                return Ok(Requeue::requeue(wait));
            }
            ctx.polled(&key);
        }
        if action == Action::Finished {
            ctx.reset_backoff(&key);
            return Ok(Requeue::await_change());
        }
        if draft.attempt_not_durable() && creates_upstream(&action) {
            draft.write(ctx).await?;
        }
        let Some(outcome) = steps::perform(&mut io, &status, action).await? else {
            ctx.reset_backoff(&key);
            return Ok(Requeue::requeue(job_wait(&key, &status, gateway, ctx)));
        };
        instrument::adoption(&outcome, ctx);
        let waiting = wait_on(batch, &outcome, ctx);
        let failure = outcome.failure().map(|(class, _)| class);
        if failure == Some(ErrorClass::Unauthorized) {
            ctx.reread_gateway_key(&cluster_io::gateway_key(&gateway.object));
        }
        let prices = match priced(&outcome) {
            true => prices::resolve(&ctx.client, &gateway.object).await,
            false => None,
        };
        let next = engine::reduce(&status, outcome, &context(batch, gateway.polling, prices));
        record(batch, &status, &next, ctx).await;
        draft.status = next;
        if failure.is_none() {
            ctx.reset_backoff(&key);
        }
        if let Some(wait) = waiting {
            ctx.reset_backoff(&key);
            return Ok(Requeue::requeue(wait));
        }
        if let Some(class) = failure {
            return Ok(match class {
                ErrorClass::Rejected | ErrorClass::NotFound => Requeue::await_change(),
                _ => Requeue::requeue(ctx.backoff(&key)),
            });
        }
    }
    Ok(Requeue::requeue(Duration::from_secs(1)))
}

/// A Batch that must wait for an input or for room on its gateway is woken when that changes
/// (an input ConfigMap, a Batch of its gateway finishing); it also looks again after the
/// returned time (a Secret is never watched, a token window slides).
fn wait_on(batch: &Batch, outcome: &Outcome, ctx: &Context) -> Option<Duration> {
    let ns = batch.namespace().unwrap_or_default();
    match outcome {
        Outcome::InputNotFound { .. } => {
            if let Some(config_map) = &batch.spec.input.config_map {
                let name = config_map.name.clone();
                ctx.batch_waiters.wait(Awaited::ConfigMap { ns, name }, batch);
            }
            Some(WAITING)
        }
        Outcome::AwaitingBudget { .. } | Outcome::OverBudget(_) => {
            let gateway = batch.spec.gateway_ref.name.clone();
            ctx.batch_waiters.wait(Awaited::Room { ns, gateway }, batch);
            Some(AWAITING_BUDGET)
        }
        _ => None,
    }
}

/// Actions after which something exists upstream (or a Job) that a restart must find by the
/// attempt's token.
fn creates_upstream(action: &Action) -> bool {
    matches!(
        action,
        Action::UploadInput { .. } | Action::CreateBatch(_) | Action::RunDirect | Action::Download { .. }
    )
}

/// The status as the steps leave it, and the object as last written: steps with nothing
/// upstream between them (validated, admitted, attempt started) are written once.
struct Draft {
    written: Batch,
    status: BatchStatus,
}

impl Draft {
    fn new(batch: &Batch, status: BatchStatus) -> Self {
        Draft {
            written: batch.clone(),
            status,
        }
    }

    /// True while the attempt token in the status has not been written.
    fn attempt_not_durable(&self) -> bool {
        let written = self.written.status.as_ref().and_then(|s| s.attempt.as_ref());
        self.status.attempt.is_some() && self.status.attempt.as_ref() != written
    }

    /// Writes the status (when it changed), counts the Batch in the metrics once that write
    /// finished it, and mirrors a new upstream batch id in an annotation.
    async fn write(&mut self, ctx: &Context) -> Result<(), Error> {
        cluster_io::write_status(&ctx.client, &self.written, &self.status).await?;
        instrument::finished(&self.written, &self.status, ctx);
        self.written.status = Some(self.status.clone());
        // Once per id and process: the reconcile that the status write wakes may see the
        // status and not yet the annotation, which is written after it.
        let key = key(&self.written);
        if let Some(id) = self.status.gateway.as_ref().and_then(|g| g.batch_id.clone())
            && !ctx.said(&key, BATCH_ID_ANNOTATION, &id)
        {
            cluster_io::annotate_batch_id(&ctx.client, &self.written, &id).await?;
            ctx.first_said(&key, BATCH_ID_ANNOTATION, &id);
            self.written
                .annotations_mut()
                .insert(BATCH_ID_ANNOTATION.to_string(), id);
        }
        Ok(())
    }
}

/// How soon a Batch whose Job runs looks again (the Job's changes also wake it); a direct Job's
/// counts are read at the gateway's polling rhythm.
fn job_wait(key: &str, status: &BatchStatus, gateway: &Gateway, ctx: &Context) -> Duration {
    match status.mode {
        Some(BatchMode::Direct) => direct_progress::next_read(key, status, gateway.polling, ctx).min(JOB_RUNNING),
        _ => JOB_RUNNING,
    }
}

/// `ttlSecondsAfterFinished`: a finished Batch is deleted once its time is up.
async fn expire_after_ttl(batch: &Batch, status: &BatchStatus, ctx: &Context) -> Result<Requeue, Error> {
    let (Some(ttl), Some(done)) = (batch.spec.ttl_seconds_after_finished, status.completion_time.as_ref()) else {
        return Ok(Requeue::await_change());
    };
    let due = done.0 + Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
    let now = Timestamp::now();
    if now < due {
        let wait = now.duration_until(due).try_into().unwrap_or(Duration::from_secs(1));
        return Ok(Requeue::requeue(wait));
    }
    let api = Api::<Batch>::namespaced(ctx.client.clone(), &batch.namespace().unwrap_or_default());
    api.delete(&batch.name_any(), &Default::default()).await?;
    Ok(Requeue::await_change())
}

async fn wait_for_gateway(
    batch: &Batch,
    mut status: BatchStatus,
    why: cluster_io::Unusable,
    ctx: &Context,
) -> Result<Requeue, Error> {
    let awaited = Awaited::Gateway {
        ns: batch.namespace().unwrap_or_default(),
        name: batch.spec.gateway_ref.name.clone(),
    };
    ctx.batch_waiters.wait(awaited, batch);
    let before = status.clone();
    // A restored Batch keeps no phase until its annotation is checked with the gateway.
    if reattach::annotated(batch).is_none() {
        status.phase.get_or_insert(BatchPhase::Pending);
    }
    status.observed_generation = batch.meta().generation;
    let (reason, message) = match why {
        cluster_io::Unusable::Missing(why) => (
            reasons::GATEWAY_NOT_FOUND,
            format!("{why}; the batch starts when it is there"),
        ),
        cluster_io::Unusable::Misconfigured(why) => (
            reasons::GATEWAY_MISCONFIGURED,
            format!("{why}; the batch starts once the BatchGateway is fixed"),
        ),
    };
    status.conditions.set_condition(
        ct::GATEWAY_READY,
        false,
        reason,
        message,
        batch.meta().generation,
        Timestamp::now(),
    );
    record(batch, &before, &status, ctx).await;
    cluster_io::write_status(&ctx.client, batch, &status).await?;
    Ok(Requeue::requeue(WAITING))
}

/// Outcomes that are priced: a validated input (its estimate) and counted results (the
/// gateway's prices are read for these only).
fn priced(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::InputValidated { .. } | Outcome::Downloaded(_) | Outcome::DirectFinished { .. }
    )
}

fn context(batch: &Batch, polling: PollingPolicy, prices: Option<Arc<Prices>>) -> engine::Context {
    engine::Context {
        uid: batch.uid().unwrap_or_default(),
        object: format!("{}/{}", batch.namespace().unwrap_or_default(), batch.name_any()),
        generation: batch.meta().generation,
        polling,
        now: Timestamp::now(),
        prices,
    }
}

/// Whether reaching `phase` from `before` is worth an Event: the start of the run (upstream
/// or direct) and the end.
fn announced(before: Option<BatchPhase>, phase: BatchPhase) -> bool {
    let running = |p: BatchPhase| {
        matches!(
            p,
            BatchPhase::Validating | BatchPhase::InProgress | BatchPhase::Finalizing | BatchPhase::Downloading
        )
    };
    if before == Some(phase) {
        return false;
    }
    phase.is_terminal() || (running(phase) && !before.is_some_and(running))
}

/// Deleting a Batch: with `deletionPolicy: Cancel`, cancel a running upstream batch and delete
/// the uploaded input file first. A gateway that is gone does not block the deletion.
async fn cleanup(batch: Arc<Batch>, ctx: &Context) -> Result<Requeue, Error> {
    ctx.forget(&key(&batch));
    ctx.batch_waiters.forget(&*batch);
    if batch.spec.deletion_policy == DeletionPolicy::Orphan {
        return Ok(Requeue::await_change());
    }
    let mut gateway = batch
        .status
        .as_ref()
        .and_then(|s| s.gateway.clone())
        .unwrap_or_default();
    let Ok(Gateway { client, .. }) = cluster_io::gateway_client(ctx, &batch).await? else {
        ctx.publish(
            &*batch,
            EventType::Warning,
            "CleanupSkipped",
            "the BatchGateway is gone: nothing was cancelled upstream",
        )
        .await;
        return Ok(Requeue::await_change());
    };
    // A restored Batch cancels the annotated batch only once its metadata proves it is its own.
    if let Some(id) = reattach::annotated(&batch) {
        match reattach::is_ours(&batch, id, &client, ctx).await {
            Ok(true) => gateway.batch_id = Some(id.to_string()),
            Ok(false) => {}
            Err(e) if e.is_retryable() => return Err(Error::gateway(format!("checking batch {id}"), e)),
            Err(e) => tracing::warn!(batch = %key(&batch), error = %e, "not cancelling the annotated batch"),
        }
    }
    let running = gateway
        .status
        .as_deref()
        .map(UpstreamState::from_wire)
        .is_none_or(|s| !s.is_terminal());
    if let (Some(id), true) = (&gateway.batch_id, running) {
        if let Outcome::GatewayError {
            class: ErrorClass::Transient,
            message,
        } = steps::cancel(&client, id).await
        {
            return Err(Error::gateway(format!("cancelling {id}"), message));
        }
        ctx.publish(
            &*batch,
            EventType::Normal,
            "Cancelled",
            &format!("cancelled upstream batch {id}"),
        )
        .await;
    }
    // A file the user supplied (spec.input.fileId) is theirs to keep.
    let uploaded = gateway
        .input_file_id
        .as_ref()
        .filter(|_| batch.spec.input.file_id.is_none());
    if let Some(file) = uploaded
        && let Err(e) = client.delete_file(file).await
        && e.is_retryable()
    {
        return Err(Error::gateway(format!("deleting input file {file}"), e));
    }
    Ok(Requeue::await_change())
}

/// An Event when the Batch starts running and when it ends, and a Warning for every new
/// failure; the steps in between show in the status (one Event per phase made the Events
/// the largest share of the controller's writes).
async fn record(batch: &Batch, before: &BatchStatus, after: &BatchStatus, ctx: &Context) {
    let key = key(batch);
    if let Some(phase) = after.phase
        && announced(before.phase, phase)
    {
        let type_ = if matches!(phase, BatchPhase::Failed | BatchPhase::Expired) {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let (reason, note) = (phase.to_string(), after.headline());
        if ctx.first_said(&key, &reason, &note) {
            ctx.publish(batch, type_, &reason, &note).await;
        }
    }
    for type_ in [
        ct::GATEWAY_READY,
        ct::ADMITTED,
        ct::COMPLETE,
        ct::OUTPUT_STORED,
        ct::RESULTS_VERIFIED,
        ct::PRICED,
        ct::PROGRESSING,
    ] {
        let was = before.conditions.condition(type_).map(|c| (&c.status, &c.reason));
        if let Some(c) = after.conditions.condition(type_)
            && c.status == "False"
            && was != Some((&c.status, &c.reason))
            && ctx.first_said(&key, &c.reason, &c.message)
        {
            ctx.publish(batch, EventType::Warning, &c.reason, &c.message).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::announced;
    use crate::api::BatchPhase::*;

    #[test]
    fn the_start_and_the_end_of_a_run_are_announced_not_each_step() {
        let walk = [
            Pending,
            Uploading,
            Validating,
            InProgress,
            Finalizing,
            Downloading,
            Succeeded,
        ];
        let announced_phases: Vec<_> = walk
            .windows(2)
            .filter(|w| announced(Some(w[0]), w[1]))
            .map(|w| w[1])
            .collect();
        assert_eq!(announced_phases, [Validating, Succeeded]);
        assert!(announced(None, InProgress), "a direct run starts in InProgress");
        assert!(announced(Some(InProgress), Failed));
        assert!(!announced(Some(Succeeded), Succeeded));
    }
}
