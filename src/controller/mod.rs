//! The operator in a cluster: reconcilers for Batch, BatchGateway and BatchSweep driving the same
//! engine as `run -f`. One module per reconciled kind; the shared I/O steps live in `steps`.

mod admission;
mod batch;
mod batch_driver;
mod caches;
mod clock;
mod cluster_io;
mod context;
mod direct_job;
mod direct_progress;
mod error;
mod gateway;
mod instrument;
mod jobs;
mod leader;
mod notify;
mod object_io;
mod preflight;
mod prices;
mod pvc_sink;
mod reattach;
mod schedule;
mod sweep;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;

use futures::channel::mpsc::{self, UnboundedReceiver};
use futures::future::{BoxFuture, FutureExt};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use caches::{Awaited, Caches};
use tokio_util::sync::CancellationToken;

pub use clock::Clock;
pub use context::Context;
pub use direct_progress::DEFAULT_PROGRESS_PORT;
pub use error::Error;
pub use leader::{LeaderElection, LeaseTimings};
pub use preflight::{
    missing_cluster_permissions, missing_job_permissions, missing_lease_permissions, missing_permissions,
    required_rules,
};

use crate::api::{Batch, BatchGateway, BatchSchedule, BatchSweep};

/// The field manager of every write the controller makes.
pub const MANAGER: &str = "llm-batch-operator";
/// Finalizer that lets a deleted Batch cancel its upstream batch first.
pub const FINALIZER: &str = "llmbatch.io/cleanup";

/// Batches reconciled at once (per watched namespace): bounds memory and the burst of calls
/// on gateways.
const CONCURRENCY: u16 = 32;

/// Where the controller watches, and whether it competes for leadership first.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only these namespaces; all namespaces when empty.
    pub namespaces: Vec<String>,
    /// Reconcile only while holding this Lease; always when `None`.
    pub leader_election: Option<LeaderElection>,
}

impl Options {
    /// Watching one namespace, without leader election.
    pub fn namespace(ns: impl Into<String>) -> Self {
        Self {
            namespaces: vec![ns.into()],
            ..Self::default()
        }
    }
}

/// Runs the Batch and BatchGateway controllers until `shutdown` resolves.
pub async fn run(client: Client, options: Options, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    run_with(Arc::new(Context::new(client)), options, shutdown).await;
}

/// [`run`] with a context the caller keeps (to read its counters and serve its metrics).
/// On `shutdown`, reconciles in flight finish first, then the Lease (if held) is released.
pub async fn run_with(
    context: Arc<Context>,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = Box::pin(shutdown).shared();
    match options.leader_election.clone() {
        None => {
            context.metrics.set_leader(true);
            lead_until(&context, &options.namespaces, shutdown.clone(), std::future::pending()).await;
            context.metrics.set_leader(false);
        }
        Some(election) => run_elected(context, options.namespaces, election, shutdown).await,
    }
}

/// Stands by until this replica holds the Lease, leads while it does, stands by again when it
/// is lost; on shutdown stops leading and releases it.
async fn run_elected(
    context: Arc<Context>,
    namespaces: Vec<String>,
    election: LeaderElection,
    shutdown: futures::future::Shared<impl Future<Output = ()> + Send + Sync + 'static>,
) {
    let identity = election.identity.clone();
    let mut lease = leader::LeaseLock::new(context.client.clone(), election);
    loop {
        context.metrics.set_leader(false);
        context.health.set_not_ready("looking for the leader-election Lease");
        tokio::select! {
            () = shutdown.clone() => return,
            () = lease.acquire(&context.health) => {}
        }
        tracing::info!(%identity, "leading: reconciling");
        context.metrics.set_leader(true);
        let ended_by_shutdown = lead_until(&context, &namespaces, shutdown.clone(), lease.hold()).await;
        context.metrics.set_leader(false);
        if ended_by_shutdown {
            if let Err(e) = lease.release().await {
                tracing::warn!(error = %e, "cannot release the Lease; a standby takes over when it expires");
            }
            return;
        }
        tracing::warn!(%identity, "lost the Lease: stopped reconciling, standing by");
    }
}

/// Runs the controllers until `shutdown` (true) or `lost` (false) resolves; either way, stops
/// them and waits for reconciles in flight, while `lost` keeps running (renewing the Lease).
async fn lead_until(
    context: &Arc<Context>,
    namespaces: &[String],
    shutdown: impl Future<Output = ()>,
    lost: impl Future<Output = ()>,
) -> bool {
    let stop = CancellationToken::new();
    let mut controllers = pin!(controllers(context.clone(), namespaces, stop.clone()));
    let mut lost = pin!(lost);
    let by_shutdown = tokio::select! {
        () = &mut controllers => return false,
        () = shutdown => true,
        () = &mut lost => false,
    };
    stop.cancel();
    if by_shutdown {
        tokio::select! {
            () = &mut controllers => return true,
            () = &mut lost => {}
        }
    }
    controllers.await;
    by_shutdown
}

/// The Batch, BatchGateway and BatchSweep controllers of every watched namespace, until `stop`.
/// Each kind is watched once per namespace (see `caches`); ready once every watch has listed
/// its objects.
fn controllers(context: Arc<Context>, namespaces: &[String], stop: CancellationToken) -> BoxFuture<'static, ()> {
    let mut runs: Vec<BoxFuture<'static, ()>> = Vec::new();
    let mut caches = Caches::default();
    for ns in scopes(namespaces) {
        let scope = Scope::new(&context, ns.as_deref());
        caches.add(scope.batches.1.clone(), scope.gateways.1.clone(), scope.sweeps.store());
        runs.extend(scope.run(&context, &stop));
    }
    context.set_caches(caches.clone());
    context
        .metrics
        .set_phase_counts(Some(phase_counts(caches.batch_stores().to_vec())));
    context
        .metrics
        .set_stalled_counts(Some(stalled_counts(caches.batch_stores().to_vec())));
    context.health.set_not_ready("watches not synced");
    let health = context.health.clone();
    let synced = async move {
        caches.sync().await;
        health.set_ready();
    };
    async move {
        let watching = async {
            tokio::select! {
                () = synced => {}
                () = stop.cancelled() => {}
            }
        };
        futures::join!(futures::future::join_all(runs), watching);
        context.metrics.set_phase_counts(None);
        context.metrics.set_stalled_counts(None);
    }
    .boxed()
}

type Watched<K> = (BoxStream<'static, Result<K, watcher::Error>>, Store<K>);

/// The watches and controllers of one namespace (or of all).
struct Scope {
    batches: Watched<Batch>,
    gateways: Watched<BatchGateway>,
    sweeps: Controller<BatchSweep>,
    schedules: Controller<BatchSchedule>,
    config_maps: BoxFuture<'static, ()>,
    wake_batches: UnboundedReceiver<ObjectRef<Batch>>,
    namespace: Option<String>,
}

impl Scope {
    /// One watch per kind: a Batch's change wakes the sweep that owns it and, once finished,
    /// the Batches waiting for room on its gateway; a gateway's or an input ConfigMap's change
    /// wakes what waits for it.
    fn new(context: &Arc<Context>, ns: Option<&str>) -> Self {
        let client = &context.client;
        let (wake_batch, wake_batches) = mpsc::unbounded();
        let (wake_sweep, wake_sweeps) = mpsc::unbounded();
        let (wake_schedule, wake_schedules) = mpsc::unbounded();
        let batches = {
            let (store, writer) = reflector::store();
            let (ctx, wake_batch, wake_sweep) = (context.clone(), wake_batch.clone(), wake_sweep.clone());
            let wake_schedule = wake_schedule.clone();
            let stream = lean_watch(scoped::<Batch>(client, ns))
                .reflect(writer)
                .touched_objects()
                .inspect_ok(move |batch| {
                    if let Some(sweep) = owner::<BatchSweep>(batch) {
                        let _ = wake_sweep.unbounded_send(sweep);
                    }
                    if let Some(schedule) = owner::<BatchSchedule>(batch) {
                        let _ = wake_schedule.unbounded_send(schedule);
                    }
                    if let Some(room) = Awaited::room_freed_by(batch) {
                        ctx.batch_waiters.wake(&room, &wake_batch);
                    }
                });
            (stream.boxed(), store)
        };
        let gateways = {
            let (store, writer) = reflector::store();
            let (ctx, wake_batch, wake_sweep) = (context.clone(), wake_batch.clone(), wake_sweep.clone());
            let stream = lean_watch(scoped::<BatchGateway>(client, ns))
                .reflect(writer)
                .touched_objects()
                .inspect_ok(move |gateway| {
                    let awaited = Awaited::gateway_of(gateway);
                    ctx.batch_waiters.wake(&awaited, &wake_batch);
                    ctx.sweep_waiters.wake(&awaited, &wake_sweep);
                });
            (stream.boxed(), store)
        };
        let ctx = context.clone();
        let config_maps = watcher(
            scoped::<PartialObjectMeta<ConfigMap>>(client, ns),
            watcher::Config::default(),
        )
        .default_backoff()
        .touched_objects()
        .for_each(move |config_map| {
            if let Ok(config_map) = config_map {
                let awaited = Awaited::ConfigMap {
                    ns: config_map.namespace().unwrap_or_default(),
                    name: config_map.name_any(),
                };
                ctx.batch_waiters.wake(&awaited, &wake_batch);
                ctx.sweep_waiters.wake(&awaited, &wake_sweep);
            }
            futures::future::ready(())
        })
        .boxed();
        let sweeps = {
            let (store, writer) = reflector::store();
            let stream = lean_watch(scoped::<BatchSweep>(client, ns))
                .reflect(writer)
                .touched_objects()
                .inspect_ok(move |sweep| {
                    if let Some(schedule) = owner::<BatchSchedule>(sweep) {
                        let _ = wake_schedule.unbounded_send(schedule);
                    }
                });
            Controller::for_stream(stream, store).reconcile_on(wake_sweeps)
        };
        // A schedule looks again when one of its runs changes, and when a test's clock moves.
        let schedules = {
            let (store, writer) = reflector::store();
            let stream = lean_watch(scoped::<BatchSchedule>(client, ns))
                .reflect(writer)
                .touched_objects();
            Controller::for_stream(stream, store)
                .reconcile_on(wake_schedules)
                .reconcile_all_on(context.clock.moves())
        };
        Scope {
            batches,
            gateways,
            sweeps,
            schedules,
            config_maps,
            wake_batches,
            namespace: ns.map(str::to_string),
        }
    }

    /// The four controllers and the ConfigMap watch, each ending with `stop`.
    fn run(self, context: &Arc<Context>, stop: &CancellationToken) -> Vec<BoxFuture<'static, ()>> {
        let (batch_stream, batch_store) = self.batches;
        let mut batches = Controller::for_stream(batch_stream, batch_store.clone())
            .reconcile_on(self.wake_batches)
            .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY));
        if context.job_image.is_some() {
            batches = batches.owns(
                scoped::<Job>(&context.client, self.namespace.as_deref()),
                jobs_of_the_operator(),
            );
        }
        let never_synced = unsynced_when_stopped(stop, batch_store);
        let batches = batches
            .graceful_shutdown_on(stop.clone().cancelled_owned())
            .run(
                |b, ctx| async move { instrument::measured("batch", &ctx.clone(), batch::reconcile(b, ctx)).await },
                batch::error_policy,
                context.clone(),
            )
            .take_until(never_synced)
            .for_each(log_failure)
            .boxed();
        let (gateway_stream, gateway_store) = self.gateways;
        let never_synced = unsynced_when_stopped(stop, gateway_store.clone());
        let gateways =
            Controller::for_stream(gateway_stream, gateway_store)
                .graceful_shutdown_on(stop.clone().cancelled_owned())
                .run(
                    |g, ctx| async move {
                        instrument::measured("batchgateway", &ctx.clone(), gateway::reconcile(g, ctx)).await
                    },
                    gateway::error_policy,
                    context.clone(),
                )
                .take_until(never_synced)
                .for_each(log_failure)
                .boxed();
        let never_synced = unsynced_when_stopped(stop, self.sweeps.store());
        let sweeps = self
            .sweeps
            .graceful_shutdown_on(stop.clone().cancelled_owned())
            .run(
                |s, ctx| async move { instrument::measured("batchsweep", &ctx.clone(), sweep::reconcile(s, ctx)).await },
                sweep::error_policy,
                context.clone(),
            )
            .take_until(never_synced)
            .for_each(log_failure)
            .boxed();
        let never_synced = unsynced_when_stopped(stop, self.schedules.store());
        let schedules = self
            .schedules
            .graceful_shutdown_on(stop.clone().cancelled_owned())
            .run(
                |s, ctx| async move {
                    instrument::measured("batchschedule", &ctx.clone(), schedule::reconcile(s, ctx)).await
                },
                schedule::error_policy,
                context.clone(),
            )
            .take_until(never_synced)
            .for_each(log_failure)
            .boxed();
        let stop = stop.clone();
        let config_maps = async move {
            tokio::select! {
                () = self.config_maps => {}
                () = stop.cancelled() => {}
            }
        }
        .boxed();
        vec![batches, gateways, sweeps, schedules, config_maps]
    }
}

/// The object of kind `K` that controls `object`, if any.
fn owner<K: kube::Resource<DynamicType = ()>>(object: &impl ResourceExt) -> Option<ObjectRef<K>> {
    let owner = object
        .owner_references()
        .iter()
        .find(|o| o.kind == K::kind(&()) && o.controller == Some(true))?;
    Some(ObjectRef::new(&owner.name).within(&object.namespace()?))
}

/// Resolves when `stop` comes before the controller's cache has synced. kube-runtime's graceful
/// shutdown would then wait forever (its runner waits for the cache before anything else), and
/// nothing can be in flight, so that controller is ended at once.
fn unsynced_when_stopped<K>(stop: &CancellationToken, store: Store<K>) -> impl Future<Output = ()> + Send + 'static
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let stop = stop.clone();
    async move {
        stop.cancelled().await;
        if store.wait_until_ready().now_or_never().is_some() {
            std::future::pending::<()>().await;
        }
    }
}

/// Only the Jobs this operator starts are watched.
fn jobs_of_the_operator() -> watcher::Config {
    watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"))
}

/// `None` is every namespace.
fn scopes(namespaces: &[String]) -> Vec<Option<String>> {
    let unique: std::collections::BTreeSet<&String> = namespaces.iter().collect();
    if unique.is_empty() {
        return vec![None];
    }
    unique.into_iter().map(|ns| Some(ns.clone())).collect()
}

/// A watch of one of our kinds whose objects are cached without `metadata.managedFields`:
/// nothing reads them, and they are a large share of each cached object.
fn lean_watch<K>(api: Api<K>) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|object| object.managed_fields_mut().clear())
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Batches per phase in the caches (a Batch not yet reconciled counts as Pending).
fn phase_counts(stores: Vec<Store<Batch>>) -> crate::telemetry::PhaseCounts {
    Arc::new(move || {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for store in &stores {
            for batch in store.state() {
                let phase = batch.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
                *counts.entry(phase.to_string()).or_default() += 1;
            }
        }
        counts.into_iter().collect()
    })
}

/// Batches whose Progressing condition is False (Stalled), by the upstream state they sit in.
fn stalled_counts(stores: Vec<Store<Batch>>) -> crate::telemetry::PhaseCounts {
    use crate::api::{Conditions, condition_types, reasons};
    Arc::new(move || {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for store in &stores {
            for batch in store.state() {
                let Some(status) = batch.status.as_ref() else { continue };
                let stalled = status
                    .conditions
                    .condition(condition_types::PROGRESSING)
                    .is_some_and(|c| c.status == "False" && c.reason == reasons::STALLED);
                if stalled && !status.phase.unwrap_or_default().is_terminal() {
                    let state = status
                        .gateway
                        .as_ref()
                        .and_then(|g| g.status.clone())
                        .unwrap_or_default();
                    *counts.entry(state).or_default() += 1;
                }
            }
        }
        counts.into_iter().collect()
    })
}

async fn log_failure<T, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "reconcile failed");
    }
}
