//! Reconciling a BatchSweep: plan the chunks once (one scan of the input, kept in status), then
//! create the child Batches the fan-out decides and sum their status. Children are owned by the
//! sweep, so their changes wake it; their names are deterministic, so a restart never creates
//! one twice.
//!
//! With `spec.retry`, a finished child whose lines failed retryably gets a follow-up Batch
//! `<child>-r<n>`: its input is made on the gateway from the child's error and input files
//! (uploaded under a name derived from the child's upstream batch, so a restart adopts it)
//! and given to the follow-up as `spec.input.fileId`. The follow-up carries how many lines it
//! retries in an annotation; a finished attempt with nothing to retry is annotated so, so its
//! error file is read once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::caches::{Awaited, Caches};
use super::cluster_io::{self, InputError};
use super::{Context, Error, MANAGER};
use super::{notify, object_io};
use crate::api::{Batch, BatchMode, BatchSpec, BatchSweep, BatchSweepStatus, SweepPhase, SweepPlan};
use crate::io::object_storage::StorageErrorKind;
use crate::io::{ScanError, scan_object};
use crate::pricing::Prices;
use crate::steps::retry::follow_up_input;
use crate::sweep::{
    self, ChildPlan, ObservedChild, RETRY_LINES_ANNOTATION, RETRYABLE_ANNOTATION, SWEEP_LABEL, Spending, ValidatedInput,
};

/// How soon a sweep waiting for its input or gateway looks again.
const WAITING: Duration = Duration::from_secs(15);
/// A running sweep looks at its children at least this often (their changes wake it sooner).
const RESYNC: Duration = Duration::from_secs(300);
/// A sweep's figures (progress, counts, usage, the children listed) are written at most this
/// often; its phase and conditions at once. Each write sends the whole status, plan included,
/// through the API server: with 2,000 children, one per child's step kept it busy.
const FIGURES_EVERY: Duration = Duration::from_secs(1);

/// The prices and mode of the sweep's gateway, read only for a sweep with `spec.budget` (one
/// PriceList GET per reconcile then).
async fn budget_prices(sweep: &BatchSweep, ctx: &Context) -> Option<(Arc<Prices>, BatchMode)> {
    sweep.spec.budget.as_ref()?;
    let ns = sweep.namespace().unwrap_or_default();
    let gateway = ctx.caches().gateway(&ns, &sweep.spec.template.gateway_ref.name)?;
    let mode = gateway.status.as_ref().and_then(|s| s.mode).unwrap_or(BatchMode::Batch);
    Some((super::prices::resolve(&ctx.client, &gateway).await?, mode))
}

/// Entry point of the BatchSweep controller.
pub async fn reconcile(sweep: Arc<BatchSweep>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    ctx.reconciled();
    ctx.caches().ready().await;
    let key = key(&sweep);
    let status = sweep.status.clone().unwrap_or_default();
    let generation = sweep.metadata.generation;
    let settled = status.phase.is_some_and(SweepPhase::is_terminal) && status.completion_time.is_some();
    if settled && status.observed_generation == generation {
        return Ok(match notify(&sweep, &status, &ctx).await? {
            Some(wait) => Requeue::requeue(wait),
            None => Requeue::await_change(),
        });
    }
    let status = match &status.plan {
        Some(_) => status,
        None => match plan(&sweep, &ctx).await? {
            Planned::Ready(plan) => {
                let mut planned = status.clone();
                planned.plan = Some(plan);
                write_status(&ctx.client, &sweep, &planned).await?;
                planned
            }
            Planned::Wait(why) => {
                ctx.publish(&*sweep, EventType::Warning, "Waiting", &why).await;
                return Ok(Requeue::requeue(WAITING));
            }
            Planned::Invalid(why) => {
                let failed = sweep::plan_failed(&status, generation, &why, Timestamp::now());
                write_status(&ctx.client, &sweep, &failed).await?;
                ctx.publish(&*sweep, EventType::Warning, "PlanFailed", &why).await;
                return Ok(Requeue::await_change());
            }
        },
    };
    let plan = status.plan.clone().expect("planned above");
    let name = sweep.name_any();
    let children = sweep::plan_children(&name, &sweep.spec, &plan);
    let (mut observed, batches) = observe_children(&ctx.caches(), &sweep);
    ctx.sweep_writes(&key, |w| w.show_in(&mut observed));
    let prices = budget_prices(&sweep, &ctx).await;
    let spending = prices.as_ref().map(|(prices, mode)| Spending {
        plan: &plan,
        prices,
        mode: *mode,
    });
    let decision = sweep::decide(
        &sweep.spec,
        generation,
        &status,
        &children,
        &observed,
        spending,
        Timestamp::now(),
    );
    let mut created = Vec::new();
    for child in &decision.create {
        match &child.retry_of {
            None => {
                let spec = child.batch_spec(&name, &sweep.spec);
                let validated = child.validated_input(&sweep.spec, &plan);
                let annotations = validated.iter().map(ValidatedInput::annotation).collect();
                create_child(&ctx, &sweep, child, spec, annotations, None).await?;
                created.push(child.name.clone());
            }
            Some(previous) => {
                let Some(previous) = batches.get(previous) else {
                    continue;
                };
                if let Some(lines) = follow_up(&ctx, &sweep, child, previous).await? {
                    created.push(format!(
                        "{} (retrying {lines} lines of {})",
                        child.name,
                        previous.name_any()
                    ));
                }
            }
        }
    }
    if !created.is_empty() {
        let note = format!("created {}", created.join(", "));
        ctx.publish(&*sweep, EventType::Normal, "BatchesCreated", &note).await;
    }
    if decision.status.phase != status.phase
        && let Some(phase) = decision.status.phase
    {
        let progress = decision.status.progress.clone().unwrap_or_default();
        let type_ = if phase == SweepPhase::Failed {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.publish(&*sweep, type_, &phase.to_string(), &progress).await;
    }
    ctx.reset_backoff(&key);
    if sweep::only_figures_differ(&status, &decision.status) {
        let wait = ctx.figures_wait(&key, FIGURES_EVERY);
        if !wait.is_zero() {
            return Ok(Requeue::requeue(wait));
        }
    }
    if write_status(&ctx.client, &sweep, &decision.status).await? {
        ctx.figures_written(&key, FIGURES_EVERY);
    }
    Ok(Requeue::requeue(RESYNC))
}

/// Requeues with per-object exponential backoff, and says why in a Warning Event.
pub fn error_policy(sweep: Arc<BatchSweep>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let delay = ctx.backoff(&key(&sweep));
    tracing::warn!(sweep = %key(&sweep), error = %error, kind = error.metric_label(), ?delay, "reconcile failed");
    let note = format!("{error} (retrying in {}s)", delay.as_secs());
    tokio::spawn(async move {
        ctx.publish(&*sweep, EventType::Warning, "ReconcileError", &note).await;
    });
    Requeue::requeue(delay)
}

fn key(sweep: &BatchSweep) -> String {
    format!("sweep:{}/{}", sweep.namespace().unwrap_or_default(), sweep.name_any())
}

enum Planned {
    Ready(SweepPlan),
    /// The input or the gateway is not there yet.
    Wait(String),
    /// The input cannot be cut into chunks: the sweep fails.
    Invalid(String),
}

/// Scans the input once for chunk boundaries within the sweep's and the gateway's limits.
async fn plan(sweep: &BatchSweep, ctx: &Context) -> Result<Planned, Error> {
    let ns = sweep.namespace().unwrap_or_default();
    let gateway_name = &sweep.spec.template.gateway_ref.name;
    let Some(gateway) = ctx.caches().gateway(&ns, gateway_name) else {
        let awaited = Awaited::Gateway {
            ns: ns.clone(),
            name: gateway_name.clone(),
        };
        ctx.sweep_waiters.wait(awaited, sweep);
        return Ok(Planned::Wait(format!("BatchGateway {ns}/{gateway_name} not found")));
    };
    let mut planner = match sweep::chunk_planner(&sweep.spec, &gateway.spec.limits) {
        Ok(planner) => planner,
        Err(why) => return Ok(Planned::Invalid(why.to_string())),
    };
    let input = &sweep.spec.input;
    if let Some(reference) = &input.object_store {
        let field = "spec.input.objectStore";
        let location = match object_io::location(ctx, &ns, reference, field).await {
            Ok(location) => location,
            Err(InputError::NotFound(why)) => return Ok(Planned::Wait(why)),
            Err(InputError::Invalid(why)) => return Ok(Planned::Invalid(why)),
            Err(InputError::Api(e)) => return Err(Error::Kube(e)),
        };
        return Ok(match scan_object(&location, planner).await {
            Ok((size, chunks)) => match sweep::plan_of(&sweep.spec, size, &chunks) {
                Ok(plan) => Planned::Ready(plan),
                Err(why) => Planned::Invalid(why.to_string()),
            },
            Err(ScanError::Storage(e)) if e.kind == StorageErrorKind::Invalid => Planned::Invalid(e.message),
            // A missing object, refused credentials or a failing server can be fixed: look again.
            Err(ScanError::Storage(e)) => Planned::Wait(e.message),
            Err(e @ ScanError::Chunks(_)) => Planned::Invalid(e.to_string()),
        });
    }
    let bytes = match cluster_io::read_source(&ctx.client, &ns, input, sweep.spec.template.endpoint).await {
        Ok(bytes) => bytes,
        Err(InputError::NotFound(why)) => {
            if let Some(config_map) = &input.config_map {
                let awaited = Awaited::ConfigMap {
                    ns: ns.clone(),
                    name: config_map.name.clone(),
                };
                ctx.sweep_waiters.wait(awaited, sweep);
            }
            return Ok(Planned::Wait(why));
        }
        Err(InputError::Invalid(why)) => return Ok(Planned::Invalid(why)),
        Err(InputError::Api(e)) => return Err(Error::Kube(e)),
    };
    planner.feed(&bytes);
    let planned = planner
        .finish()
        .map_err(|e| format!("spec.input: {e}"))
        .and_then(|chunks| sweep::plan_of(&sweep.spec, bytes.len() as u64, &chunks).map_err(|e| e.to_string()));
    Ok(match planned {
        Ok(plan) => Planned::Ready(plan),
        Err(why) => Planned::Invalid(why),
    })
}

/// Makes the input of the follow-up `child` from the finished attempt `previous` on the gateway
/// and creates it; the lines it retries, or `None` when there was nothing to retry (the
/// attempt is then annotated so, and not read again).
async fn follow_up(
    ctx: &Context,
    sweep: &BatchSweep,
    child: &ChildPlan,
    previous: &Batch,
) -> Result<Option<u64>, Error> {
    let client = match cluster_io::gateway_client(ctx, previous).await? {
        Ok(gateway) => gateway.client,
        Err(why) => {
            return Err(Error::gateway(
                format!("retrying {}", previous.name_any()),
                why.to_string(),
            ));
        }
    };
    let status = previous.status.clone().unwrap_or_default();
    match follow_up_input(&client, &status).await {
        Ok(Some(input)) => {
            let spec = child.follow_up_spec(&sweep.name_any(), &sweep.spec, &input.file_id);
            let annotations = BTreeMap::from([(RETRY_LINES_ANNOTATION.to_string(), input.lines.to_string())]);
            create_child(ctx, sweep, child, spec, annotations, Some(input.lines)).await?;
            annotate_retryable(ctx, sweep, previous, input.lines).await?;
            Ok(Some(input.lines))
        }
        Ok(None) => {
            annotate_retryable(ctx, sweep, previous, 0).await?;
            Ok(None)
        }
        Err(e) if e.transient => Err(Error::gateway(format!("retrying {}", previous.name_any()), e)),
        Err(e) => {
            let note = format!("the failed lines of {} are not retried: {e}", previous.name_any());
            ctx.publish(sweep, EventType::Warning, "RetryFailed", &note).await;
            annotate_retryable(ctx, sweep, previous, 0).await?;
            Ok(None)
        }
    }
}

/// Records on a finished attempt how many of its lines failed retryably.
async fn annotate_retryable(ctx: &Context, sweep: &BatchSweep, batch: &Batch, lines: u64) -> Result<(), Error> {
    let api = Api::<Batch>::namespaced(ctx.client.clone(), &batch.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"annotations": {RETRYABLE_ANNOTATION: lines.to_string()}}});
    api.patch(&batch.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    ctx.sweep_writes(&key(sweep), |w| w.retryable.insert(batch.name_any(), lines));
    Ok(())
}

/// A count kept in an annotation.
fn annotated(batch: &Batch, key: &str) -> Option<u64> {
    batch.annotations().get(key).and_then(|v| v.parse().ok())
}

/// What this process wrote about a sweep's children that the cache may not show yet: a
/// reconcile right after another must not create a child twice past the parallelism, nor read
/// an attempt's error file twice.
#[derive(Default)]
pub struct Written {
    /// Children created (with the lines a follow-up retries).
    created: BTreeMap<String, Option<u64>>,
    /// Attempts annotated with their retryable lines.
    retryable: BTreeMap<String, u64>,
}

impl Written {
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.retryable.is_empty()
    }

    /// Adds to `observed` what the cache does not show yet, and forgets what it shows.
    fn show_in(&mut self, observed: &mut BTreeMap<String, ObservedChild>) {
        self.created.retain(|name, lines| {
            let unseen = !observed.contains_key(name);
            if unseen {
                let child = ObservedChild {
                    lines: *lines,
                    ..Default::default()
                };
                observed.insert(name.clone(), child);
            }
            unseen
        });
        self.retryable.retain(|name, lines| match observed.get_mut(name) {
            Some(child) if child.retryable.is_none() => {
                child.retryable = Some(*lines);
                true
            }
            _ => false,
        });
    }
}

/// The sweep's existing children (first attempts and follow-ups), by name (only those it owns),
/// from the cache: what the fan-out needs of each, and the objects.
fn observe_children(
    caches: &Caches,
    sweep: &BatchSweep,
) -> (BTreeMap<String, ObservedChild>, BTreeMap<String, Arc<Batch>>) {
    let ns = sweep.namespace().unwrap_or_default();
    let (name, uid) = (sweep.name_any(), sweep.uid());
    let children = caches.batches_where(&ns, |b| {
        b.labels().get(SWEEP_LABEL) == Some(&name) && b.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref())
    });
    let mut observed = BTreeMap::new();
    let mut batches = BTreeMap::new();
    for batch in children {
        // Only what the fan-out reads is copied: this runs for every child on every reconcile.
        let status = batch.status.as_ref();
        observed.insert(
            batch.name_any(),
            ObservedChild {
                phase: status.and_then(|s| s.phase),
                request_counts: status.and_then(|s| s.request_counts.clone()),
                usage: status.and_then(|s| s.usage.clone()),
                cost: status.and_then(|s| s.cost.clone()),
                lines: annotated(&batch, RETRY_LINES_ANNOTATION),
                retryable: annotated(&batch, RETRYABLE_ANNOTATION),
            },
        );
        batches.insert(batch.name_any(), batch);
    }
    (observed, batches)
}

/// Creates a child Batch owned by the sweep (a follow-up reads `retry`'s file on the gateway);
/// one that already exists is left as it is.
async fn create_child(
    ctx: &Context,
    sweep: &BatchSweep,
    child: &ChildPlan,
    spec: BatchSpec,
    annotations: BTreeMap<String, String>,
    lines: Option<u64>,
) -> Result<(), Error> {
    let ns = sweep.namespace().unwrap_or_default();
    let owner = sweep
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid("the BatchSweep has no uid yet".into()))?;
    let mut batch = Batch::new(&child.name, spec);
    batch.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    batch.metadata.namespace = Some(ns.clone());
    batch.metadata.owner_references = Some(vec![owner]);
    let mut labels = BTreeMap::from([
        (SWEEP_LABEL.to_string(), sweep.name_any()),
        ("llmbatch.io/chunk".to_string(), child.chunk.to_string()),
        ("llmbatch.io/attempt".to_string(), child.attempt.to_string()),
        ("app.kubernetes.io/managed-by".to_string(), MANAGER.to_string()),
    ]);
    if let Some(model) = &child.model
        && is_label_value(model)
    {
        labels.insert("llmbatch.io/model".to_string(), model.clone());
    }
    batch.metadata.labels = Some(labels);
    match Api::<Batch>::namespaced(ctx.client.clone(), &ns)
        .create(&PostParams::default(), &batch)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    ctx.sweep_writes(&key(sweep), |w| w.created.insert(child.name.clone(), lines));
    Ok(())
}

fn is_label_value(text: &str) -> bool {
    text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Writes the status through the status subresource (server-side apply), unless unchanged;
/// true when written.
/// Delivers the events the finished sweep owes its webhook (none without one) and records how
/// it went; the wait until the next attempt while one is pending.
async fn notify(sweep: &BatchSweep, status: &BatchSweepStatus, ctx: &Context) -> Result<Option<Duration>, Error> {
    let owed = crate::notify::sweep_events(sweep, status);
    let ns = sweep.namespace().unwrap_or_default();
    let gateway = ctx.caches().gateway(&ns, &sweep.spec.template.gateway_ref.name);
    let Some(target) = notify::target(sweep.spec.notify.as_ref(), gateway.as_deref(), true) else {
        return Ok(None);
    };
    let done = notify::deliver(ctx, "batchsweep", sweep, target, owed, &status.notifications).await;
    if done.entries != status.notifications {
        let mut next = status.clone();
        next.notifications = done.entries;
        write_status(&ctx.client, sweep, &next).await?;
    }
    Ok(done.wake)
}

async fn write_status(client: &kube::Client, sweep: &BatchSweep, status: &BatchSweepStatus) -> Result<bool, Error> {
    if sweep.status.as_ref() == Some(status) {
        return Ok(false);
    }
    let api = Api::<BatchSweep>::namespaced(client.clone(), &sweep.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchSweep", "status": status});
    api.patch_status(
        &sweep.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}
