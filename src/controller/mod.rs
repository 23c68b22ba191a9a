//! The operator in a cluster: reconcilers for Batch (and, next, BatchGateway) driving the same
//! engine as `run -f`. One module per reconciled kind; the shared I/O steps live in `driver`.

mod batch;
mod cluster_io;
mod context;
mod error;
mod gateway;
mod object_io;
mod preflight;

use std::sync::Arc;

use std::future::Future;

use futures::{FutureExt, StreamExt};
use kube::runtime::Controller;
use kube::runtime::watcher;
use kube::{Api, Client};

pub use context::Context;
pub use error::Error;
pub use preflight::{missing_permissions, required_rules};

use crate::api::{Batch, BatchGateway};

/// The field manager of every write the controller makes.
pub const MANAGER: &str = "llm-batch-operator";
/// Finalizer that lets a deleted Batch cancel its upstream batch first.
pub const FINALIZER: &str = "llmbatch.io/cleanup";

/// Batches reconciled at once: bounds memory and the burst of calls on gateways.
const CONCURRENCY: u16 = 32;

/// Where the controller watches.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
}

/// Runs the Batch and BatchGateway controllers until `shutdown` resolves.
pub async fn run(client: Client, options: Options, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    run_with(Arc::new(Context::new(client)), options, shutdown).await;
}

/// [`run`] with a context the caller keeps (to read its counters).
pub async fn run_with(
    context: Arc<Context>,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    let shutdown = Box::pin(shutdown).shared();
    let batches = Controller::new(scoped::<Batch>(&client, &options), watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(shutdown.clone())
        .run(batch::reconcile, batch::error_policy, context.clone())
        .for_each(log_failure);
    let gateways = Controller::new(scoped::<BatchGateway>(&client, &options), watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(gateway::reconcile, gateway::error_policy, context)
        .for_each(log_failure);
    futures::join!(batches, gateways);
}

fn scoped<K>(client: &Client, options: &Options) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match &options.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn log_failure<T, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "reconcile failed");
    }
}
