//! Controller benchmark (`cargo bench --bench controller`, or `bench/controller`): Batches
//! (1,000, or `LLMB_BENCH_BATCHES`) reconciled against a real kube-apiserver (built by
//! scripts/k8s-test-bins) and the simulator (a subprocess, so its memory is not counted).
//! Prints wall time, this process's peak RSS, gateway polls per Batch beside the polls its
//! polling interval allows, and the controller's API-server requests per Batch by verb and
//! resource (counted by a layer on its client). Figures, not assertions. Everything runs on
//! 127.0.0.1 and every wait is bounded.
//!
//! Targets: peak RSS under 200 MiB at 10,000 Batches; no more than one poll per Batch per
//! polling interval; no LIST per reconcile, at most 6 status writes and 2 GETs per Batch.

#[path = "../tests/it/common/apiserver.rs"]
#[allow(dead_code)]
mod apiserver;
#[path = "../tests/it/common/requests.rs"]
#[allow(dead_code)]
mod requests;
#[allow(dead_code)] // the curl pairing: this bench has no curl baseline
mod support;
#[path = "../tests/it/common/wait.rs"]
mod wait;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams};
use support::{Simulator, peak_rss_kib, reset_peak_rss};

use llm_batch_operator::api::{Batch, BatchGateway, BatchPhase};
use llm_batch_operator::controller::{self, Options};
use serde_json::json;

const KEY: &str = "sk-bench";
/// The gateway's first poll interval in this benchmark.
const POLL_INITIAL: Duration = Duration::from_secs(1);
const DEADLINE: Duration = Duration::from_secs(3600);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let batches_wanted: usize = std::env::var("LLMB_BENCH_BATCHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let batches_wanted = batches_wanted.clamp(1, 20_000);
    // Room in the journal for every request of the run, so the counts below are exact.
    let journal_capacity = (batches_wanted * 40).to_string();
    let sim = Simulator::start(&[
        "--api-key",
        KEY,
        "--lines-per-sec",
        "100000",
        "--journal-capacity",
        &journal_capacity,
    ])?;
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
    futures::stream::iter(0..batches_wanted)
        .map(|i| {
            let batch: Batch = object(
                json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch", "metadata": {"name": format!("b-{i:05}")},
                "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                         "input": {"configMap": {"name": "input", "key": "batch.jsonl"}}}}),
            );
            let (batches, pp) = (batches.clone(), pp.clone());
            async move { batches.create(&pp, &batch).await.map(drop) }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    println!("created {batches_wanted} Batches in {:?}", created.elapsed());

    reset_peak_rss();
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = Options::namespace(ns.clone());
    let tally = requests::Tally::default();
    let counted = tally.client(apiserver::server().config().await);
    let context = std::sync::Arc::new(
        controller::Context::new(counted).with_addresses(llm_batch_operator::net::AddressPolicy::local()),
    );
    let running = tokio::spawn(controller::run_with(context.clone(), options, async move {
        let _ = stopped.await;
    }));
    let done = loop {
        let done = finished(&batches).await?.len();
        if done == batches_wanted || started.elapsed() > DEADLINE {
            break done;
        }
        // Each check reads every Batch: often enough to time the run, rarely enough not to
        // compete with the controller for the API server.
        tokio::time::sleep(Duration::from_secs(5)).await;
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
    let lifetimes = finished(&batches).await?;
    let mean_lifetime = lifetimes.iter().sum::<f64>() / lifetimes.len().max(1) as f64;
    let allowed = (mean_lifetime / POLL_INITIAL.as_secs_f64()).ceil().max(1.0);

    println!(
        "{done}/{batches_wanted} Batches Succeeded in {wall:.1?} ({:.1} Batches/s)",
        done as f64 / wall.as_secs_f64()
    );
    println!("peak RSS of the controller process: {:.1} MiB", peak as f64 / 1024.0);
    println!("batches created upstream: {creates}");
    println!("gateway requests, per Batch:");
    for ((method, route), n) in by_route(&journal) {
        println!(
            "  {method:>6} {route:<28} {n:>8} ({:.2} per Batch)",
            n as f64 / batches_wanted as f64
        );
    }
    println!(
        "Batch reconciles: {} ({:.1} per Batch)",
        context.reconciles(),
        context.reconciles() as f64 / batches_wanted as f64
    );
    println!(
        "gateway polls: {polls} ({:.2} per Batch); mean submit-to-done {mean_lifetime:.1} s allows at most {allowed:.0} per Batch at a {POLL_INITIAL:?} interval",
        polls as f64 / batches_wanted as f64
    );
    println!("API-server requests of the controller, per Batch:");
    for (verb, resource, n) in tally.table() {
        println!(
            "  {verb:>6} {resource:<24} {n:>8} ({:.2} per Batch)",
            n as f64 / batches_wanted as f64
        );
    }
    Ok(())
}

/// Submit-to-done seconds of each Succeeded Batch, read in pages (the bench's own memory stays
/// small whatever the number of Batches).
async fn finished(batches: &Api<Batch>) -> anyhow::Result<Vec<f64>> {
    let mut lifetimes = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = batches.list(&params).await?;
        for b in &page.items {
            let Some(s) = b.status.as_ref().filter(|s| s.phase == Some(BatchPhase::Succeeded)) else {
                continue;
            };
            let (Some(done), Some(submitted)) = (&s.completion_time, &s.submit_time) else {
                continue;
            };
            lifetimes.push(done.0.duration_since(submitted.0).as_secs_f64());
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(lifetimes),
        }
    }
}

/// The simulator's journal counted by method and route (ids folded into `{id}`).
fn by_route(journal: &[serde_json::Value]) -> std::collections::BTreeMap<(String, String), usize> {
    let mut counts = std::collections::BTreeMap::new();
    for entry in journal {
        let path = entry["path"].as_str().unwrap_or_default();
        let route = path
            .split('/')
            .map(|part| match part {
                p if p.starts_with("batch_") || p.starts_with("file-") => "{id}",
                p => p,
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = entry["method"].as_str().unwrap_or_default().to_string();
        *counts.entry((method, route)).or_insert(0) += 1;
    }
    counts
}

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}
