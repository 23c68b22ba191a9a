//! Tokens and cost in the controller's metrics: each Batch's counted once, by the controller
//! whose status write finished it. A controller killed mid-download, or whose final status
//! write is lost, counts nothing; the one that finishes counts the status's totals.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::apiserver::{admin_client, fresh_namespace, server};
use common::cluster::{RunningController, create_gateway};
use common::operations::{ControllerProcess, admin_kubeconfig, sample, wait_succeeded};
use common::{object, wait_until};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use llm_batch_operator::api::{Batch, BatchGateway, BatchPhase, BatchStatus};
use llm_batch_operator::controller::Context;
use llm_batch_operator::simulator::{RunningSimulator, SimulatorConfig};
use serde_json::{Value, json};

const KEY: &str = "sk-metrics-test-key";
const MODELS: [&str; 3] = ["gpt-4o-mini", "gpt-4o", "llama-3-8b"];
const TYPES: [&str; 3] = ["input", "cached_input", "output"];

async fn simulator(latency_ms: u64) -> RunningSimulator {
    let config = SimulatorConfig {
        api_key: Some(KEY.into()),
        latency_ms,
        ..SimulatorConfig::default()
    };
    RunningSimulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Chat lines cycling through [`MODELS`], with a shared system prompt (cached input).
fn lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({"custom_id": format!("q-{i}"), "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": MODELS[i % MODELS.len()], "messages": [
                {"role": "system", "content": "Classify the ticket: billing, bug, account or other."},
                {"role": "user", "content": format!("Ticket {i}: {}", "my order is late ".repeat(i % 4 + 1))},
            ]}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Gateway `gw` pricing two of [`MODELS`] (the third stays unpriced), and Batch `name` of
/// `n` lines on it.
async fn priced_batch(client: &Client, ns: &str, sim: &RunningSimulator, name: &str, n: usize) {
    create_gateway(client, ns, &sim.base_url(), KEY, json!({})).await;
    let pricing = json!({"spec": {"pricing": {"models": [
        {"model": "gpt-4o-mini", "inputPerMillion": "0.15", "cachedInputPerMillion": "0.075", "outputPerMillion": "0.60"},
        {"model": "gpt-4o", "inputPerMillion": "2.50", "cachedInputPerMillion": "1.25", "outputPerMillion": "10.00"}]}}});
    Api::<BatchGateway>::namespaced(client.clone(), ns)
        .patch("gw", &PatchParams::default(), &Patch::Merge(&pricing))
        .await
        .unwrap();
    let pp = PostParams::default();
    let cm: ConfigMap = object(json!({"metadata": {"name": "input"}, "data": {"batch.jsonl": lines(n)}}));
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&pp, &cm)
        .await
        .unwrap();
    let batch: Batch = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
        "metadata": {"name": name},
        "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                 "input": {"configMap": {"name": "input", "key": "batch.jsonl"}},
                 "output": {"secret": {"name": format!("{name}-results")}}}}));
    Api::<Batch>::namespaced(client.clone(), ns)
        .create(&pp, &batch)
        .await
        .unwrap();
}

async fn status(client: &Client, ns: &str, name: &str) -> BatchStatus {
    let batch = Api::<Batch>::namespaced(client.clone(), ns).get(name).await.unwrap();
    batch.status.unwrap_or_default()
}

/// A sample of `text` in namespace `ns` on gateway `gw` (0 when absent).
fn value(text: &str, ns: &str, metric: &str, labels: &str) -> f64 {
    sample(text, &format!(r#"{metric}{{namespace="{ns}",gateway="gw",{labels}}}"#)).unwrap_or(0.0)
}

/// What the scrapes of every controller that ran add up to equals the status: tokens of every
/// model, cost of the priced ones (the nearest float to each exact decimal), none for the
/// unpriced one, and the request lines.
fn assert_counted_once(scrapes: &[String], ns: &str, status: &BatchStatus) {
    let sum = |metric: &str, labels: &str| -> f64 { scrapes.iter().map(|t| value(t, ns, metric, labels)).sum() };
    let usage = status.usage.as_ref().unwrap();
    assert_eq!(usage.by_model.len(), MODELS.len(), "{usage:?}");
    for model in &usage.by_model {
        let counts = [model.input_tokens, model.cached_input_tokens, model.output_tokens];
        for (type_, count) in TYPES.iter().zip(counts) {
            let counted = sum(
                "llmbatch_tokens_total",
                &format!(r#"model="{}",type="{type_}""#, model.model),
            );
            assert_eq!(counted, count as f64, "{} {type_}:\n{scrapes:#?}", model.model);
        }
    }
    let cost = status.cost.as_ref().unwrap();
    assert_eq!(cost.unpriced, ["llama-3-8b"], "{cost:?}");
    assert_eq!(cost.by_model.len(), 2, "{cost:?}");
    for model in &cost.by_model {
        let counted = sum(
            "llmbatch_cost_total",
            &format!(r#"model="{}",currency="USD""#, model.model),
        );
        let exact: f64 = model.actual.parse().unwrap();
        assert!(exact > 0.0);
        assert_eq!(counted, exact, "{}:\n{scrapes:#?}", model.model);
    }
    let unpriced = sum("llmbatch_cost_total", r#"model="llama-3-8b",currency="USD""#);
    assert_eq!(unpriced, 0.0);
    let lines: f64 = scrapes
        .iter()
        .map(|t| sample(t, r#"llmbatch_request_lines_total{outcome="completed"}"#).unwrap_or(0.0))
        .sum();
    assert_eq!(lines, status.request_counts.as_ref().unwrap().completed as f64);
}

fn assert_nothing_counted(text: &str, ns: &str) {
    let prefix = format!(r#"{{namespace="{ns}""#);
    let counted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("llmbatch_tokens_total") || l.starts_with("llmbatch_cost_total"))
        .filter(|l| l.contains(&prefix))
        .collect();
    assert!(counted.is_empty(), "{counted:#?}");
}

/// The controller's gateway client logs each request as it sends it (at debug): the download
/// of the output file has started when this line shows.
fn download_started(logs: &[String]) -> bool {
    logs.iter().any(|line| {
        serde_json::from_str::<Value>(line)
            .is_ok_and(|e| e["message"] == "gateway request" && e["operation"] == "download file")
    })
}

/// Every gateway request takes 1.5 s, so the output file's download is still under way when the
/// first controller process is killed (SIGKILL) right after sending it. The second process
/// downloads the results again and finishes the Batch; the two processes' `/metrics` add up to
/// the status's totals exactly, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_cost_are_counted_once_when_the_controller_is_killed_mid_download() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "metrics-kill").await;
    let sim = simulator(1500).await;
    priced_batch(&client, &ns, &sim, "killed", 30).await;
    let args = ["--namespace", ns.as_str()];
    let filter = "info,llm_batch_operator::gateway=debug";
    let mut first = ControllerProcess::start_logging(&admin_kubeconfig(), "metrics-a", &args, filter);
    wait_until(
        "the first controller never started the download",
        Duration::from_secs(90),
        async || match download_started(&first.logs()) {
            true => Ok(()),
            false => Err(status(&client, &ns, "killed").await.phase),
        },
    )
    .await;
    let first_scrape = first.metrics().await;
    first.signal("-KILL");
    first.wait_exit(Duration::from_secs(10)).await;
    let left = status(&client, &ns, "killed").await;
    assert!(
        !left.phase.is_some_and(BatchPhase::is_terminal),
        "the kill came after the download: {left:?}"
    );
    assert_nothing_counted(&first_scrape, &ns);

    let second = ControllerProcess::start(&admin_kubeconfig(), "metrics-b", &args);
    wait_succeeded(&client, &ns, "killed", Duration::from_secs(90)).await;
    // Counted just after the write the test saw: scrape once the count shows.
    let second_scrape = wait_until(
        "the second controller never counted",
        Duration::from_secs(10),
        async || {
            let text = second.metrics().await;
            match sample(&text, r#"llmbatch_request_lines_total{outcome="completed"}"#) {
                Some(n) if n > 0.0 => Ok(text),
                _ => Err(text),
            }
        },
    )
    .await;
    let done = status(&client, &ns, "killed").await;
    assert_counted_once(&[first_scrape, second_scrape], &ns, &done);
}

/// Status writes of Batches that would make one Succeeded.
fn final_batch_status_writes(request: &http::Request<kube::client::Body>) -> bool {
    common::faults::status_writes(request)
        && request.uri().path().contains("/batches/")
        && String::from_utf8_lossy(&common::faults::body_bytes(request)).contains(r#""phase":"Succeeded""#)
}

/// A controller that downloads the results (twice, over two reconciles) but whose status write
/// finishing the Batch never lands has counted nothing when it stops; the next controller
/// downloads them again, writes the end and counts it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_whose_final_status_write_is_lost_counts_nothing() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "metrics-lost").await;
    let sim = simulator(0).await;
    priced_batch(&client, &ns, &sim, "lost", 12).await;
    let faults = common::faults::FailSome::all(final_batch_status_writes);
    let first = Arc::new(
        Context::new(faults.client(server().config().await))
            .with_addresses(llm_batch_operator::net::AddressPolicy::local()),
    );
    let running = RunningController::start_with(first.clone(), &ns);
    wait_until(
        "the first controller never tried to write the end twice",
        Duration::from_secs(90),
        async || match faults.failed() {
            n if n >= 2 => Ok(()),
            n => Err(n),
        },
    )
    .await;
    running.stop_within(Duration::from_secs(30)).await;
    let first_scrape = first.metrics.encode().unwrap();
    assert_nothing_counted(&first_scrape, &ns);
    assert_ne!(status(&client, &ns, "lost").await.phase, Some(BatchPhase::Succeeded));

    let second = Arc::new(Context::new(client.clone()).with_addresses(llm_batch_operator::net::AddressPolicy::local()));
    let running = RunningController::start_with(second.clone(), &ns);
    wait_succeeded(&client, &ns, "lost", Duration::from_secs(60)).await;
    running.stop_within(Duration::from_secs(30)).await;
    let done = status(&client, &ns, "lost").await;
    assert_counted_once(&[first_scrape, second.metrics.encode().unwrap()], &ns, &done);
}
