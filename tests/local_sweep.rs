//! `run -f` with BatchSweeps: a corpus in a real S3 server (SeaweedFS) cut into chunks and run
//! for two models through the simulator subprocess.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::s3::{ACCESS_KEY, SECRET_KEY, SeaweedFs};
use common::{Simulator, Workspace, chat_lines, gateway_manifests, text};

const KEY: &str = "sk-test-sweep-0123456789";

fn sweep_manifests(s3: &SeaweedFs, extra: &str) -> String {
    let endpoint = &s3.endpoint;
    format!(
        "apiVersion: llmbatch.io/v1alpha1\nkind: BatchSweep\nmetadata:\n  name: eval\nspec:\n  input:\n    objectStore:\n      \
         url: s3://test/corpus.jsonl\n      endpoint: {endpoint}\n      secretRef:\n        name: s3\n  chunk:\n    maxRequests: 2000\n  \
         matrix:\n    models: [model-a, model-b]\n  template:\n    gatewayRef:\n      name: gw\n    endpoint: /v1/chat/completions\n\
         {extra}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s3\nstringData:\n  AWS_ACCESS_KEY_ID: {ACCESS_KEY}\n  \
         AWS_SECRET_ACCESS_KEY: {SECRET_KEY}\n"
    )
}

/// The most upstream batches whose polls overlap, from the simulator's own record: each batch
/// is in flight at least from its first to its last GET.
fn most_batches_in_flight(sim: &Simulator) -> usize {
    let mut spans: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for entry in sim.journal() {
        let Some(id) = entry.path.strip_prefix("/v1/batches/") else {
            continue;
        };
        let span = spans
            .entry(id.to_string())
            .or_insert((entry.started_us, entry.ended_us));
        span.0 = span.0.min(entry.started_us);
        span.1 = span.1.max(entry.ended_us);
    }
    let mut edges: Vec<(u64, i32)> = spans.values().flat_map(|(a, b)| [(*a, 1), (*b, -1)]).collect();
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn a_corpus_in_object_storage_runs_every_chunk_for_every_model_within_its_parallelism() {
    let s3 = SeaweedFs::start();
    s3.put("corpus.jsonl", chat_lines(10_000) + "\n");
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    ws.write("sweep.yaml", &sweep_manifests(&s3, "  parallelism: 3\n"));
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &[]));
    let output = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!text(&output).contains(SECRET_KEY), "the S3 secret leaked");

    let mut ids = BTreeSet::new();
    for model in ["model-a", "model-b"] {
        for chunk in 0..5 {
            let child = format!("eval-{model}-c{chunk:04}");
            assert_eq!(ws.status_yaml(&child)["phase"], "Succeeded", "{child}");
            for line in ws.lines(&child, "output.jsonl") {
                let id = line["custom_id"].as_str().unwrap().to_string();
                assert!(id.starts_with(&format!("{model}/c{chunk:04}/")), "{id}");
                assert_eq!(line["response"]["body"]["model"], model);
                ids.insert(id);
            }
        }
    }
    assert_eq!(ids.len(), 20_000, "every line once per model");
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 10, "one upstream batch per child");
    let most = most_batches_in_flight(&sim);
    assert!((1..=3).contains(&most), "{most} batches in flight with parallelism 3");

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.out("eval").join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["requestCounts"]["completed"], 20_000);
    assert_eq!(summary["byModel"]["model-a"]["batches"], 5);
    assert_eq!(summary["byChunk"]["4"]["requestCounts"]["completed"], 4_000);
    assert_eq!(ws.status_yaml("eval")["progress"], "10/10 batches");

    // A rerun finds everything finished: nothing more goes upstream.
    let again = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 10);
}

#[test]
fn a_missing_corpus_is_named_and_nothing_is_sent() {
    let s3 = SeaweedFs::start();
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    ws.write("sweep.yaml", &sweep_manifests(&s3, ""));
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &[]));
    let output = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("s3://test/corpus.jsonl"), "{}", text(&output));
    assert!(sim.journal().is_empty(), "nothing goes upstream");
}
