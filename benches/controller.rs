//! Controller benchmark (`cargo bench --bench controller`, or `bench/controller`): 1,000 Batches
//! reconciled against a real kube-apiserver (built by scripts/k8s-test-bins) and the simulator
//! (a subprocess, so its memory is not counted). Prints wall time, this process's peak RSS,
//! and gateway polls per Batch beside the polls its polling interval allows. Figures, not
//! assertions. Everything runs on 127.0.0.1 and every wait is bounded.
//!
//! Targets (issue 5): peak RSS under 200 MiB; no more than one poll per Batch per polling interval.

#[path = "../tests/common/apiserver.rs"]
#[allow(dead_code)]
mod apiserver;
#[allow(dead_code)] // the curl pairing: this bench has no curl baseline
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams};
use support::{Simulator, peak_rss_kib, reset_peak_rss};

use llm_batch_operator::api::{Batch, BatchGateway, BatchPhase};
use llm_batch_operator::controller::{self, Options};
use serde_json::json;

const BATCHES: usize = 1000;
const KEY: &str = "sk-bench";
/// The gateway's first poll interval in this benchmark.
const POLL_INITIAL: Duration = Duration::from_secs(1);
const DEADLINE: Duration = Duration::from_secs(900);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sim = Simulator::start(&["--api-key", KEY, "--lines-per-sec", "100000"])?;
    let sim_url = sim.base_url.clone();
    let client = apiserver::admin_client().await;
    println!("API server ready in {:?}", apiserver::startup_time());
    let ns = apiserver::fresh_namespace(&client, "bench").await;
    let pp = PostParams::default();
    let secret: Secret = object(json!({"metadata": {"name": "key"}, "stringData": {"api-key": KEY}}));
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&pp, &secret)
        .await?;
    let gateway: BatchGateway = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway",
        "metadata": {"name": "gw"}, "spec": {"url": sim_url, "auth": {"secretRef": {"name": "key", "key": "api-key"}},
        "polling": {"initial": "1s", "max": "5s"}}}));
    Api::<BatchGateway>::namespaced(client.clone(), &ns)
        .create(&pp, &gateway)
        .await?;
    let lines: Vec<String> = (1..=5)
        .map(|i| format!(r#"{{"custom_id":"r{i}","method":"POST","url":"/v1/chat/completions","body":{{"model":"m","messages":[{{"role":"user","content":"hello {i}"}}]}}}}"#))
        .collect();
    let cm: ConfigMap = object(json!({"metadata": {"name": "input"}, "data": {"batch.jsonl": lines.join("\n")}}));
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&pp, &cm)
        .await?;

    let batches = Api::<Batch>::namespaced(client.clone(), &ns);
    let created = Instant::now();
    for i in 0..BATCHES {
        let batch: Batch = object(
            json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch", "metadata": {"name": format!("b-{i:04}")},
            "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                     "input": {"configMap": {"name": "input", "key": "batch.jsonl"}}}}),
        );
        batches.create(&pp, &batch).await?;
    }
    println!("created {BATCHES} Batches in {:?}", created.elapsed());

    reset_peak_rss();
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = Options::namespace(ns.clone());
    let context = std::sync::Arc::new(
        controller::Context::new(client.clone()).with_addresses(llm_batch_operator::net::AddressPolicy::local()),
    );
    let running = tokio::spawn(controller::run_with(context.clone(), options, async move {
        let _ = stopped.await;
    }));
    let done = loop {
        let list = batches.list(&ListParams::default()).await?;
        let done = list
            .items
            .iter()
            .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BatchPhase::Succeeded))
            .count();
        if done == BATCHES || started.elapsed() > DEADLINE {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let wall = started.elapsed();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), running).await;
    let peak = peak_rss_kib();

    let journal: Vec<serde_json::Value> = reqwest::get(format!("{}/__sim/journal", sim_url.trim_end_matches("/v1")))
        .await?
        .json()
        .await?;
    let polls = journal
        .iter()
        .filter(|e| e["method"] == "GET" && e["path"].as_str().is_some_and(|p| p.starts_with("/v1/batches/")))
        .count();
    let creates = journal
        .iter()
        .filter(|e| e["method"] == "POST" && e["path"] == "/v1/batches")
        .count();
    let lifetimes: Vec<f64> = batches
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|b| {
            let s = b.status.as_ref()?;
            Some(
                s.completion_time
                    .as_ref()?
                    .0
                    .duration_since(s.submit_time.as_ref()?.0)
                    .as_secs_f64(),
            )
        })
        .collect();
    let mean_lifetime = lifetimes.iter().sum::<f64>() / lifetimes.len().max(1) as f64;
    let allowed = (mean_lifetime / POLL_INITIAL.as_secs_f64()).ceil().max(1.0);

    println!(
        "{done}/{BATCHES} Batches Succeeded in {wall:.1?} ({:.1} Batches/s)",
        done as f64 / wall.as_secs_f64()
    );
    println!("peak RSS of the controller process: {:.1} MiB", peak as f64 / 1024.0);
    println!("batches created upstream: {creates}");
    println!(
        "Batch reconciles: {} ({:.1} per Batch)",
        context.reconciles(),
        context.reconciles() as f64 / BATCHES as f64
    );
    println!(
        "gateway polls: {polls} ({:.2} per Batch); mean submit-to-done {mean_lifetime:.1} s allows at most {allowed:.0} per Batch at a {POLL_INITIAL:?} interval",
        polls as f64 / BATCHES as f64
    );
    Ok(())
}

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}
