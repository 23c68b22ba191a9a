//! The operator in a cluster: reconcilers for Batch (and, next, BatchGateway) driving the same
//! engine as `run -f`. One module per reconciled kind; the shared I/O steps live in `driver`.

mod batch;
mod cluster_io;
mod context;
mod error;

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::Controller;
use kube::runtime::watcher;
use kube::{Api, Client};

pub use context::Context;
pub use error::Error;

use crate::api::Batch;

/// The field manager of every write the controller makes.
pub const MANAGER: &str = "llm-batch-operator";
/// Finalizer that lets a deleted Batch cancel its upstream batch first.
pub const FINALIZER: &str = "llmbatch.io/cleanup";

/// Where the controller watches.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
}

/// Runs the Batch controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let batches: Api<Batch> = match &options.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let context = Arc::new(Context::new(client));
    Controller::new(batches, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(batch::reconcile, batch::error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile failed");
            }
        })
        .await;
}
