//! The BatchSweep controller in-process against a real kube-apiserver and the simulator.

use crate::common;
use common::wait_until;

use common::cluster::{RunningController, gateway_on_simulator, simulator_json};

use std::collections::BTreeSet;
use std::time::Duration;

use common::object;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use llm_batch_operator::api::{Batch, BatchSweep, SweepPhase};
use llm_batch_operator::simulator::{RunningSimulator, SimulatorConfig};
use serde_json::{Value, json};

const KEY: &str = "sk-sweep-test-key";

struct Setup {
    client: Client,
    ns: String,
    sim: RunningSimulator,
}

async fn setup(prefix: &str, sim: SimulatorConfig, limits: Value) -> Setup {
    let (client, ns, sim) = gateway_on_simulator(prefix, sim, KEY, limits).await;
    Setup { client, ns, sim }
}

impl Setup {
    async fn input(&self, jsonl: &str) {
        let cm: ConfigMap = object(json!({"metadata": {"name": "corpus"}, "data": {"batch.jsonl": jsonl}}));
        Api::<ConfigMap>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
    }

    async fn sweep(&self, name: &str, spec: Value) {
        let mut full = json!({"input": {"configMap": {"name": "corpus", "key": "batch.jsonl"}},
            "template": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                         "output": {"secret": {"name": "results"}}}});
        merge(&mut full, spec);
        let sweep: BatchSweep = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchSweep",
            "metadata": {"name": name}, "spec": full}));
        self.sweeps().create(&PostParams::default(), &sweep).await.unwrap();
    }

    fn sweeps(&self) -> Api<BatchSweep> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn children(&self, sweep: &str) -> Vec<Batch> {
        let api = Api::<Batch>::namespaced(self.client.clone(), &self.ns);
        let selector = format!("llmbatch.io/sweep={sweep}");
        api.list(&ListParams::default().labels(&selector)).await.unwrap().items
    }

    /// Waits (bounded) for the sweep to reach `phase`, sampling how many children are in flight;
    /// returns the sweep and the most children ever seen in flight at once.
    async fn wait_phase(&self, name: &str, phase: SweepPhase) -> (BatchSweep, usize) {
        let mut most_in_flight = 0;
        let sweep = wait_until(
            &format!("{name} never reached {phase}"),
            Duration::from_secs(120),
            async || {
                let in_flight = self
                    .children(name)
                    .await
                    .iter()
                    .filter(|b| !b.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p.is_terminal()))
                    .count();
                most_in_flight = most_in_flight.max(in_flight);
                let sweep = self.sweeps().get(name).await.unwrap();
                if sweep.status.as_ref().and_then(|s| s.phase) == Some(phase)
                    && sweep
                        .status
                        .as_ref()
                        .is_some_and(|s| s.completion_time.is_some() || !phase.is_terminal())
                {
                    return Ok(sweep);
                }
                Err(sweep.status)
            },
        )
        .await;
        (sweep, most_in_flight)
    }

    async fn created_batches(&self) -> usize {
        self.posted("/v1/batches").await
    }

    /// Successful POSTs to `path` the simulator recorded.
    async fn posted(&self, path: &str) -> usize {
        let url = format!("{}/__sim/journal", self.sim.base_url().trim_end_matches("/v1"));
        let entries: Vec<Value> = reqwest::get(url).await.unwrap().json().await.unwrap();
        entries
            .iter()
            .filter(|e| e["method"] == "POST" && e["path"] == path && e["status"].as_u64() < Some(300))
            .count()
    }

    async fn output_lines(&self, secret: &str) -> Vec<Value> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .get(secret)
            .await
            .unwrap();
        let data = secret.data.unwrap_or_default();
        let bytes = data.get("output.jsonl").map(|b| b.0.clone()).unwrap_or_default();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(into), Value::Object(extra)) = (into, extra) {
        for (k, v) in extra {
            into.insert(k, v);
        }
    }
}

#[tokio::test]
async fn a_matrix_sweep_runs_every_chunk_for_every_model_within_its_parallelism() {
    let s = setup("sweep-matrix", SimulatorConfig::default(), json!({})).await;
    s.input(&common::chat_lines(50)).await;
    s.sweep(
        "eval",
        json!({"chunk": {"maxRequests": 20}, "matrix": {"models": ["model-a", "model-b"]}, "parallelism": 2}),
    )
    .await;
    let controller = RunningController::start(&s.client, &s.ns);
    let (sweep, most_in_flight) = s.wait_phase("eval", SweepPhase::Succeeded).await;
    controller.stop().await;

    let status = sweep.status.unwrap();
    assert_eq!(status.progress.as_deref(), Some("6/6 batches"));
    let counts = status.request_counts.unwrap();
    assert_eq!((counts.total, counts.completed, counts.failed), (100, 100, 0));
    assert!(status.usage.unwrap().total_tokens > 0);
    let plan = status.plan.unwrap();
    assert_eq!(plan.chunks.iter().map(|c| c.requests).collect::<Vec<_>>(), [20, 20, 10]);
    assert!(most_in_flight <= 2, "{most_in_flight} children in flight at once");

    let children = s.children("eval").await;
    let names: BTreeSet<String> = children.iter().map(|b| b.name_any()).collect();
    let expected: BTreeSet<String> = ["model-a", "model-b"]
        .iter()
        .flat_map(|m| (0..3).map(move |c| format!("eval-{m}-c{c:04}")))
        .collect();
    assert_eq!(names, expected);
    for child in &children {
        assert_eq!(child.owner_references()[0].name, "eval");
    }
    assert_eq!(s.created_batches().await, 6, "one upstream batch per child");

    let mut ids = BTreeSet::new();
    for model in ["model-a", "model-b"] {
        for chunk in 0..3 {
            for line in s.output_lines(&format!("results-{model}-c{chunk:04}")).await {
                let id = line["custom_id"].as_str().unwrap().to_string();
                assert!(id.starts_with(&format!("{model}/c{chunk:04}/")), "{id}");
                assert_eq!(line["response"]["body"]["model"], model);
                ids.insert(id);
            }
        }
    }
    assert_eq!(ids.len(), 100, "every line once per model");
}

#[tokio::test]
async fn past_the_failure_budget_the_sweep_fails_and_starts_nothing_new() {
    // Every batch expires upstream: the first failure is over a budget of zero.
    let sim = SimulatorConfig {
        expire: true,
        ..Default::default()
    };
    let s = setup("sweep-budget", sim, json!({})).await;
    s.input(&common::chat_lines(30)).await;
    s.sweep("corpus", json!({"chunk": {"maxRequests": 10}, "parallelism": 1}))
        .await;
    let controller = RunningController::start(&s.client, &s.ns);
    let (sweep, _) = s.wait_phase("corpus", SweepPhase::Failed).await;
    controller.stop().await;
    let status = sweep.status.unwrap();
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(failed.reason, "FailureBudgetExceeded");
    assert_eq!(
        s.children("corpus").await.len(),
        1,
        "nothing started after the first failure"
    );
}

#[tokio::test]
async fn a_suspended_sweep_waits_and_a_restarted_controller_creates_nothing_twice() {
    let sim = SimulatorConfig {
        lines_per_sec: 20,
        ..Default::default()
    };
    let s = setup("sweep-suspend", sim, json!({})).await;
    s.input(&common::chat_lines(40)).await;
    s.sweep(
        "corpus",
        json!({"chunk": {"maxRequests": 10}, "parallelism": 2, "suspend": true}),
    )
    .await;
    let controller = RunningController::start(&s.client, &s.ns);
    let (sweep, _) = s.wait_phase("corpus", SweepPhase::Suspended).await;
    assert!(s.children("corpus").await.is_empty());
    let suspended = sweep.status.unwrap();
    assert!(
        suspended
            .conditions
            .iter()
            .any(|c| c.type_ == "Suspended" && c.status == "True")
    );

    let resume = json!({"spec": {"suspend": false}});
    s.sweeps()
        .patch("corpus", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .unwrap();
    s.wait_phase("corpus", SweepPhase::Running).await;
    controller.stop().await;
    let controller = RunningController::start(&s.client, &s.ns);
    let (sweep, _) = s.wait_phase("corpus", SweepPhase::Succeeded).await;
    controller.stop().await;
    assert_eq!(sweep.status.unwrap().request_counts.unwrap().completed, 40);
    assert_eq!(s.children("corpus").await.len(), 4);
    assert_eq!(
        s.created_batches().await,
        4,
        "no child submitted twice across the restart"
    );
}

#[tokio::test]
async fn an_input_with_a_line_too_large_for_a_chunk_fails_the_sweep_with_the_line() {
    let s = setup(
        "sweep-plan",
        SimulatorConfig::default(),
        json!({"maxBytesPerBatch": "400"}),
    )
    .await;
    let mut jsonl = common::chat_lines(3);
    if !jsonl.ends_with('\n') {
        jsonl.push('\n');
    }
    jsonl.push_str(&format!(
        "{{\"custom_id\":\"big\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}}}\n",
        "x".repeat(500)
    ));
    s.input(&jsonl).await;
    s.sweep("corpus", json!({})).await;
    let controller = RunningController::start(&s.client, &s.ns);
    let (sweep, _) = s.wait_phase("corpus", SweepPhase::Failed).await;
    controller.stop().await;
    let failed = sweep
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason, "PlanFailed");
    assert!(failed.message.contains("line 4 is"), "{}", failed.message);
    assert!(s.children("corpus").await.is_empty());
    assert_eq!(s.created_batches().await, 0);
}

#[tokio::test]
async fn lines_that_failed_retryably_run_again_in_follow_up_children() {
    // Every batch expires after half its lines and about one line in ten always fails with a
    // 500: the expired half recovers in the follow-up, the 500s do not.
    let sim = SimulatorConfig {
        expire: true,
        line_failure_rate: 0.1,
        ..Default::default()
    };
    let s = setup("sweep-retry", sim, json!({})).await;
    s.input(&common::chat_lines(40)).await;
    s.sweep(
        "corpus",
        json!({"chunk": {"maxRequests": 20}, "parallelism": 2, "maxFailedBatches": 5,
               "retry": {"maxAttempts": 2}}),
    )
    .await;
    let controller = RunningController::start(&s.client, &s.ns);
    let (sweep, most_in_flight) = s.wait_phase("corpus", SweepPhase::Succeeded).await;
    controller.stop().await;
    assert!(most_in_flight <= 2, "{most_in_flight} children in flight at once");

    let children = s.children("corpus").await;
    let names: BTreeSet<String> = children.iter().map(|b| b.name_any()).collect();
    let expected: BTreeSet<String> = ["corpus-c0000", "corpus-c0000-r1", "corpus-c0001", "corpus-c0001-r1"]
        .map(String::from)
        .into();
    assert_eq!(names, expected, "maxAttempts 2 is the first attempt and one retry");
    let mut succeeded = BTreeSet::new();
    let (mut retried, mut recovered, mut final_failed) = (0, 0, 0);
    for chunk in 0..2 {
        let first = children
            .iter()
            .find(|b| b.name_any() == format!("corpus-c{chunk:04}"))
            .unwrap();
        let retry = children
            .iter()
            .find(|b| b.name_any() == format!("corpus-c{chunk:04}-r1"))
            .unwrap();
        let first_counts = first.status.clone().unwrap().request_counts.unwrap();
        let retry_counts = retry.status.clone().unwrap().request_counts.unwrap();
        assert_eq!(
            retry_counts.total, first_counts.failed,
            "the follow-up holds the failed lines"
        );
        assert_eq!(
            retry.annotations()["llmbatch.io/retry-lines"],
            first_counts.failed.to_string()
        );
        assert_eq!(retry.labels()["llmbatch.io/attempt"], "2");
        assert!(retry.spec.input.file_id.is_some(), "its input was made on the gateway");
        retried += retry_counts.total;
        recovered += retry_counts.completed;
        final_failed += retry_counts.failed;
        for secret in [format!("results-c{chunk:04}"), format!("results-c{chunk:04}-r1")] {
            for line in s.output_lines(&secret).await {
                let id = line["custom_id"].as_str().unwrap().to_string();
                assert!(id.starts_with(&format!("c{chunk:04}/")), "{id}");
                assert!(succeeded.insert(id.clone()), "{id} succeeded twice");
            }
        }
    }
    assert!(recovered > 0, "expired lines succeed on the retry");
    let status = sweep.status.unwrap();
    let counts = status.request_counts.unwrap();
    assert_eq!(
        (counts.total, counts.completed, counts.failed),
        (40, succeeded.len() as u64, final_failed)
    );
    assert_eq!(succeeded.len() as u64 + final_failed, 40);
    let retries = status.retries.unwrap();
    assert_eq!(
        (retries.batches, retries.retried, retries.recovered),
        (2, retried, recovered)
    );
    assert_eq!(status.progress.as_deref(), Some("2/2 batches"));
    assert!(status.children.iter().all(|c| c.attempts == Some(2)));
    assert_eq!(s.created_batches().await, 4, "no upstream batch twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_whose_creation_was_lost_adopts_its_upload_instead_of_sending_it_twice() {
    let sim = SimulatorConfig {
        expire: true,
        ..Default::default()
    };
    let s = setup("sweep-retry-lost", sim, json!({})).await;
    s.input(&common::chat_lines(20)).await;
    s.sweep(
        "corpus",
        json!({"chunk": {"maxRequests": 10}, "parallelism": 1, "maxFailedBatches": 5,
               "retry": {"maxAttempts": 2}}),
    )
    .await;
    // Every second creation of a Batch object is lost: with parallelism 1 that includes each
    // follow-up's first try, made after its input was uploaded.
    fn batch_creations(request: &http::Request<kube::client::Body>) -> bool {
        request.method() == http::Method::POST && request.uri().path().ends_with("/batches")
    }
    let faults = common::faults::FailSome::every_second(batch_creations);
    let faulty = faults.client(common::apiserver::server().config().await);
    let controller = RunningController::start(&faulty, &s.ns);
    let (sweep, _) = s.wait_phase("corpus", SweepPhase::Succeeded).await;
    controller.stop().await;
    assert!(faults.failed() >= 2, "only {} creations were lost", faults.failed());
    assert_eq!(s.children("corpus").await.len(), 4);
    assert_eq!(s.created_batches().await, 4, "no upstream batch twice");
    assert_eq!(
        s.posted("/v1/files").await,
        4,
        "each input, and each retry file, uploaded once"
    );
    let retries = sweep.status.unwrap().retries.unwrap();
    assert_eq!(
        (retries.batches, retries.retried),
        (2, 10),
        "the expired half of each child"
    );
    assert_eq!(retries.recovered, 2 + 2, "a retry of 5 lines expires after 2");
}

/// An object-store input is validated by the sweep's one scan: each child is annotated with
/// what it will upload, skips its own validation read, and uploads exactly that.
#[tokio::test]
async fn object_store_children_upload_what_the_sweeps_scan_measured() {
    use common::s3::{ACCESS_KEY, SECRET_KEY, SeaweedFs};
    let s3 = SeaweedFs::start();
    s3.put("corpus.jsonl", common::chat_lines(100) + "\n");
    let s = setup("sweep-object", SimulatorConfig::default(), json!({})).await;
    let secret: Secret = object(json!({"metadata": {"name": "s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}}));
    Api::<Secret>::namespaced(s.client.clone(), &s.ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let input = json!({"objectStore": {"url": "s3://test/corpus.jsonl", "endpoint": s3.endpoint,
                                       "secretRef": {"name": "s3"}}});
    s.sweep(
        "eval",
        json!({"input": input, "chunk": {"maxRequests": 40},
               "matrix": {"models": ["m", "a-much-longer-model-name"]}, "parallelism": 2}),
    )
    .await;
    let controller = RunningController::start(&s.client, &s.ns);
    let (sweep, _) = s.wait_phase("eval", SweepPhase::Succeeded).await;
    controller.stop().await;

    let plan = sweep.status.unwrap().plan.unwrap();
    assert_eq!(plan.checked_model.as_deref(), Some("m"));
    assert!(plan.chunks.iter().all(|c| c.upload_bytes.is_some()), "{plan:?}");
    let children = s.children("eval").await;
    assert_eq!(children.len(), 6);
    for child in &children {
        let annotations = child.metadata.annotations.clone().unwrap_or_default();
        assert!(
            annotations.contains_key("llmbatch.io/validated-input"),
            "{}",
            child.name_any()
        );
        let status = child.status.clone().unwrap();
        let file_id = status.gateway.unwrap().input_file_id.unwrap();
        let file = simulator_json(&s.sim.base_url(), &format!("/files/{file_id}"), KEY).await;
        assert_eq!(
            Some(status.input.unwrap().bytes),
            file["bytes"].as_u64(),
            "{}",
            child.name_any()
        );
    }
}
