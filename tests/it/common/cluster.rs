//! What the in-process controller tests share: a gateway in a namespace, and a controller
//! running in the background for one namespace (stopped on drop).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use llm_batch_operator::api::{Batch, BatchGateway};
use llm_batch_operator::controller::{self, Context, Options};
use llm_batch_operator::simulator::{RunningSimulator, SimulatorConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::apiserver::{admin_client, fresh_namespace};
use super::object;

/// A BatchGateway `gw` in `ns` pointing at `base_url`, with `key` in the Secret `gw-key`, quick
/// polling (100ms to 500ms) and `limits` (`json!({})` for none).
pub async fn create_gateway(client: &Client, ns: &str, base_url: &str, key: &str, limits: Value) {
    let pp = PostParams::default();
    let secret: Secret = object(json!({"metadata": {"name": "gw-key"}, "stringData": {"api-key": key}}));
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&pp, &secret)
        .await
        .unwrap();
    let gateway: BatchGateway = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway",
        "metadata": {"name": "gw"},
        "spec": {"url": base_url, "auth": {"secretRef": {"name": "gw-key", "key": "api-key"}},
                 "limits": limits, "polling": {"initial": "100ms", "max": "500ms"}}}));
    Api::<BatchGateway>::namespaced(client.clone(), ns)
        .create(&pp, &gateway)
        .await
        .unwrap();
}

/// ConfigMap `name` in `ns` with `jsonl` under `batch.jsonl` (a Batch's input).
pub async fn create_input(client: &Client, ns: &str, name: &str, jsonl: &str) {
    let cm: ConfigMap = object(json!({"metadata": {"name": name}, "data": {"batch.jsonl": jsonl}}));
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
}

/// Batch `name` in `ns` on gateway `gateway`, reading ConfigMap `input` (`batch.jsonl`), its
/// results in the Secret `<name>-results`.
pub async fn create_batch(client: &Client, ns: &str, name: &str, gateway: &str, input: &str) {
    let batch: Batch = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
        "metadata": {"name": name},
        "spec": {"gatewayRef": {"name": gateway}, "endpoint": "/v1/chat/completions",
                 "input": {"configMap": {"name": input, "key": "batch.jsonl"}},
                 "output": {"secret": {"name": format!("{name}-results")}}}}));
    Api::<Batch>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &batch)
        .await
        .unwrap();
}

/// A fresh namespace `<prefix>-...` with gateway `gw` (key `key`, `limits`) on a new
/// in-process simulator configured by `config` (its API key set to `key`).
pub async fn gateway_on_simulator(
    prefix: &str,
    config: SimulatorConfig,
    key: &str,
    limits: Value,
) -> (Client, String, RunningSimulator) {
    let config = SimulatorConfig {
        api_key: Some(key.into()),
        ..config
    };
    let sim = RunningSimulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = admin_client().await;
    let ns = fresh_namespace(&client, prefix).await;
    create_gateway(&client, &ns, &sim.base_url(), key, limits).await;
    (client, ns, sim)
}

/// `GET <base_url><path>` on the simulator with the gateway key, as JSON (its own records).
pub async fn simulator_json(base_url: &str, path: &str, key: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base_url}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub struct RunningController {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningController {
    pub fn start(client: &Client, ns: &str) -> Self {
        Self::start_with(
            Arc::new(Context::new(client.clone()).with_addresses(llm_batch_operator::net::AddressPolicy::local())),
            ns,
        )
    }

    /// With a context the test keeps (to read its metrics).
    pub fn start_with(context: Arc<Context>, ns: &str) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(controller::run_with(context, Options::namespace(ns), async move {
            let _ = stopped.await;
        }));
        RunningController { stop: Some(stop), task }
    }

    /// Asks for a graceful stop and waits (bounded) for it.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
    }

    /// Asks for a graceful stop; panics unless the controller stops cleanly within `within`.
    pub async fn stop_within(mut self, within: Duration) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(within, &mut self.task).await.unwrap().unwrap();
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.task.abort();
    }
}
