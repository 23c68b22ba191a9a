//! Reconciling a BatchSchedule: at each scheduled time, create its run (a Batch or BatchSweep
//! owned by the schedule, named from the time, so a restart, a new leader or a stale cache
//! creates it once: 409 means it exists), delete the runs `Replace` replaces and those past the
//! history limits, and show the runs in the status. What to do is `schedule::decide`'s; the
//! time is the context's clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error, MANAGER};
use crate::api::{
    Batch, BatchPhase, BatchSchedule, BatchScheduleStatus, BatchSweep, Conditions, ScheduledRun, SweepPhase,
    schedule_conditions, schedule_reasons,
};
use crate::schedule::{
    self, Decision, Inputs, Note, ObservedRun, RunOutcome, RunSpec, SCHEDULE_LABEL, SCHEDULED_TIME_ANNOTATION, Timing,
};

/// A schedule looks again at least this often (its runs' changes and its next time wake it sooner).
const RESYNC: Duration = Duration::from_secs(300);

/// Entry point of the BatchSchedule controller.
pub async fn reconcile(schedule: Arc<BatchSchedule>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    ctx.reconciled();
    ctx.caches().ready().await;
    if schedule.metadata.deletion_timestamp.is_some() {
        // Its runs are owned by it: the garbage collector deletes them.
        ctx.forget(&key(&schedule));
        return Ok(Requeue::await_change());
    }
    let key = key(&schedule);
    let now = ctx.clock.now();
    let runs = observe_runs(&ctx, &schedule);
    let status = schedule.status.clone().unwrap_or_default();
    let mut decision = schedule::decide(&Inputs {
        spec: &schedule.spec,
        generation: schedule.metadata.generation,
        status: &status,
        created: schedule.creation_timestamp().map_or(now, |t| t.0),
        remembered: ctx.last_scheduled(&key),
        runs: &runs,
        now,
    });
    announce_finished(&ctx, &schedule, &status, &runs).await;
    for name in &decision.replace {
        delete_run(&ctx, &schedule, name).await?;
        let note = format!("deleted the active run {name} (concurrencyPolicy Replace)");
        ctx.publish(&*schedule, EventType::Normal, "RunReplaced", &note).await;
    }
    if let Some(time) = decision.start {
        start_run(&ctx, &schedule, time, &mut decision).await?;
    }
    for note in &decision.notes {
        say(&ctx, &schedule, note).await;
    }
    write_status(&ctx.client, &schedule, &decision.status).await?;
    for name in &decision.prune {
        delete_run(&ctx, &schedule, name).await?;
    }
    if !decision.prune.is_empty() {
        let note = format!("deleted {} (history limits)", decision.prune.join(", "));
        ctx.publish(&*schedule, EventType::Normal, "RunsPruned", &note).await;
    }
    ctx.reset_backoff(&key);
    Ok(Requeue::requeue(until(decision.next, now)))
}

/// Requeues with per-object exponential backoff, and says why in a Warning Event.
pub fn error_policy(schedule: Arc<BatchSchedule>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let delay = ctx.backoff(&key(&schedule));
    tracing::warn!(schedule = %key(&schedule), error = %error, kind = error.metric_label(), ?delay, "reconcile failed");
    let note = format!("{error} (retrying in {}s)", delay.as_secs());
    tokio::spawn(async move {
        ctx.publish(&*schedule, EventType::Warning, "ReconcileError", &note)
            .await;
    });
    Requeue::requeue(delay)
}

fn key(schedule: &BatchSchedule) -> String {
    format!(
        "schedule:{}/{}",
        schedule.namespace().unwrap_or_default(),
        schedule.name_any()
    )
}

/// How long until `next` (at least a second, at most [`RESYNC`]).
fn until(next: Option<Timestamp>, now: Timestamp) -> Duration {
    let Some(next) = next else {
        return RESYNC;
    };
    let wait: Duration = now.duration_until(next).try_into().unwrap_or_default();
    wait.clamp(Duration::from_secs(1), RESYNC)
}

/// Creates the run of `time`; an API server that refuses it (a placeholder made a name it does
/// not accept) turns the Ready condition false instead of retrying.
async fn start_run(
    ctx: &Context,
    schedule: &BatchSchedule,
    time: Timestamp,
    decision: &mut Decision,
) -> Result<(), Error> {
    let name = schedule::run_name(&schedule.name_any(), time);
    match create_run(ctx, schedule, &name, time).await {
        Ok(()) => {
            ctx.scheduled(&key(schedule), time);
            let note = format!("created {name} for {time}");
            ctx.publish(schedule, EventType::Normal, "RunCreated", &note).await;
            Ok(())
        }
        Err(Error::Kube(kube::Error::Api(status))) if matches!(status.code, 400 | 422) => {
            let message = format!("the run {name} was refused: {}", status.message);
            let conditions = &mut decision.status.conditions;
            let (generation, now) = (schedule.metadata.generation, ctx.clock.now());
            let reason = schedule_reasons::SPEC_INVALID;
            conditions.set_condition(schedule_conditions::READY, false, reason, &message, generation, now);
            ctx.publish(schedule, EventType::Warning, "RunRefused", &message).await;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Creates the child of `time`, owned by the schedule; one that already exists is left as it is.
async fn create_run(ctx: &Context, schedule: &BatchSchedule, name: &str, time: Timestamp) -> Result<(), Error> {
    let spec = &schedule.spec;
    let timing = Timing::parse(&spec.schedule, spec.time_zone.as_deref()).map_err(|e| Error::Invalid(e.to_string()))?;
    let run = schedule::run_spec(spec, &timing, time).map_err(|e| Error::Invalid(e.to_string()))?;
    let ns = schedule.namespace().unwrap_or_default();
    let owner = schedule
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid("the BatchSchedule has no uid yet".into()))?;
    let mut meta = kube::api::ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(ns.clone()),
        owner_references: Some(vec![owner]),
        labels: Some(BTreeMap::from([
            (SCHEDULE_LABEL.to_string(), schedule.name_any()),
            ("app.kubernetes.io/managed-by".to_string(), MANAGER.to_string()),
        ])),
        annotations: Some(BTreeMap::from([(
            SCHEDULED_TIME_ANNOTATION.to_string(),
            time.to_string(),
        )])),
        ..Default::default()
    };
    let created = match run {
        RunSpec::Batch(spec) => {
            let mut batch = Batch::new(name, *spec);
            std::mem::swap(&mut batch.metadata, &mut meta);
            Api::<Batch>::namespaced(ctx.client.clone(), &ns)
                .create(&PostParams::default(), &batch)
                .await
                .map(drop)
        }
        RunSpec::Sweep(spec) => {
            let mut sweep = BatchSweep::new(name, *spec);
            std::mem::swap(&mut sweep.metadata, &mut meta);
            Api::<BatchSweep>::namespaced(ctx.client.clone(), &ns)
                .create(&PostParams::default(), &sweep)
                .await
                .map(drop)
        }
    };
    match created {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a run (its finalizer, with `deletionPolicy: Cancel`, cancels it upstream and deletes
/// its uploaded input); one already gone is fine.
async fn delete_run(ctx: &Context, schedule: &BatchSchedule, name: &str) -> Result<(), Error> {
    let ns = schedule.namespace().unwrap_or_default();
    let params = DeleteParams::background();
    // A run is a Batch or a BatchSweep, whichever the template was when it was created.
    let batch = Api::<Batch>::namespaced(ctx.client.clone(), &ns)
        .delete(name, &params)
        .await;
    let sweep = Api::<BatchSweep>::namespaced(ctx.client.clone(), &ns)
        .delete(name, &params)
        .await;
    for deleted in [batch.map(drop), sweep.map(drop)] {
        match deleted {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// An Event for each run seen finished for the first time (the status listed it unfinished, or
/// not at all).
async fn announce_finished(
    ctx: &Context,
    schedule: &BatchSchedule,
    before: &BatchScheduleStatus,
    runs: &[ObservedRun],
) {
    let listed_finished = |name: &str| {
        before
            .runs
            .iter()
            .any(|r| r.name == name && r.completion_time.is_some())
    };
    for run in runs.iter().filter(|r| r.outcome != RunOutcome::Active) {
        let name = &run.summary.name;
        let phase = run.summary.phase.clone().unwrap_or_default();
        let (type_, reason) = match run.outcome {
            RunOutcome::Succeeded => (EventType::Normal, "RunSucceeded"),
            _ => (EventType::Warning, "RunFailed"),
        };
        let note = format!("{name} finished {phase}");
        if !listed_finished(name) && ctx.first_said(&key(schedule), reason, &note) {
            ctx.publish(schedule, type_, reason, &note).await;
        }
    }
}

async fn say(ctx: &Context, schedule: &BatchSchedule, note: &Note) {
    let (type_, reason, text) = match note {
        Note::Forbidden { time, active } => (
            EventType::Normal,
            "RunSkipped",
            format!(
                "the run of {time} waits: {} still active (concurrencyPolicy Forbid)",
                active.join(", ")
            ),
        ),
        Note::TooLate { time } => (
            EventType::Warning,
            "MissedSchedule",
            format!("the run of {time} was not started: past startingDeadlineSeconds"),
        ),
        Note::Skipped { count } => (
            EventType::Warning,
            "MissedSchedule",
            format!("{count} earlier scheduled times were missed; only the most recent runs"),
        ),
    };
    if ctx.first_said(&key(schedule), reason, &text) {
        ctx.publish(schedule, type_, reason, &text).await;
    }
}

/// The schedule's runs in the cache: its own children (label and owner uid), with their
/// scheduled times.
fn observe_runs(ctx: &Context, schedule: &BatchSchedule) -> Vec<ObservedRun> {
    let ns = schedule.namespace().unwrap_or_default();
    let (name, uid) = (schedule.name_any(), schedule.uid());
    let owned = |meta: &kube::api::ObjectMeta| {
        meta.labels.as_ref().and_then(|l| l.get(SCHEDULE_LABEL)) == Some(&name)
            && meta
                .owner_references
                .iter()
                .flatten()
                .any(|o| Some(&o.uid) == uid.as_ref())
    };
    let caches = ctx.caches();
    let batches = caches.batches_where(&ns, |b| owned(&b.metadata));
    let sweeps = caches.sweeps_where(&ns, |s| owned(&s.metadata));
    batches
        .iter()
        .filter_map(|b| batch_run(b))
        .chain(sweeps.iter().filter_map(|s| sweep_run(s)))
        .collect()
}

fn scheduled_time(meta: &kube::api::ObjectMeta) -> Option<Timestamp> {
    meta.annotations.as_ref()?.get(SCHEDULED_TIME_ANNOTATION)?.parse().ok()
}

fn batch_run(batch: &Batch) -> Option<ObservedRun> {
    let status = batch.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    let outcome = match phase {
        BatchPhase::Succeeded => RunOutcome::Succeeded,
        p if p.is_terminal() => RunOutcome::Failed,
        _ => RunOutcome::Active,
    };
    let figures = RunFigures {
        completion_time: status.completion_time,
        request_counts: status.request_counts,
        usage: status.usage,
        cost: status.cost,
    };
    observed_run(&batch.metadata, phase.to_string(), outcome, figures)
}

fn sweep_run(sweep: &BatchSweep) -> Option<ObservedRun> {
    let status = sweep.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    let outcome = match phase {
        SweepPhase::Succeeded => RunOutcome::Succeeded,
        SweepPhase::Failed => RunOutcome::Failed,
        _ => RunOutcome::Active,
    };
    let figures = RunFigures {
        completion_time: status.completion_time,
        request_counts: status.request_counts,
        usage: status.usage,
        cost: status.cost,
    };
    observed_run(&sweep.metadata, phase.to_string(), outcome, figures)
}

/// What a run's status says of it, Batch or BatchSweep alike.
struct RunFigures {
    completion_time: Option<Time>,
    request_counts: Option<crate::api::RequestCounts>,
    usage: Option<crate::api::Usage>,
    cost: Option<crate::api::Cost>,
}

/// A run as the schedule's status lists it (its usage without the by-model list); `None` for an
/// object without a scheduled time (not one of the schedule's runs).
fn observed_run(
    meta: &kube::api::ObjectMeta,
    phase: String,
    outcome: RunOutcome,
    figures: RunFigures,
) -> Option<ObservedRun> {
    let scheduled = scheduled_time(meta)?;
    let summary = ScheduledRun {
        name: meta.name.clone().unwrap_or_default(),
        scheduled_time: Time(scheduled),
        phase: Some(phase),
        completion_time: figures.completion_time.filter(|_| outcome != RunOutcome::Active),
        request_counts: figures.request_counts,
        usage: figures.usage.map(|u| crate::api::Usage {
            by_model: Vec::new(),
            ..u
        }),
        cost: figures.cost.map(|c| c.display),
    };
    Some(ObservedRun {
        summary,
        scheduled,
        outcome,
        deleting: meta.deletion_timestamp.is_some(),
    })
}

/// Writes the status through the status subresource (server-side apply), unless unchanged.
async fn write_status(
    client: &kube::Client,
    schedule: &BatchSchedule,
    status: &BatchScheduleStatus,
) -> Result<(), Error> {
    if schedule.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api = Api::<BatchSchedule>::namespaced(client.clone(), &schedule.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchSchedule", "status": status});
    api.patch_status(
        &schedule.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
