//! The kubectl plugin as users meet it: the real kubectl finds `kubectl-llmbatch` (a symlink to
//! the binary under test) on PATH and runs `kubectl llmbatch get|describe|report|cancel|retry`
//! against the test API server, with a controller and the simulator running the Batches.

use crate::common;
use common::wait_until;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::apiserver::server;
use common::cluster::{RunningController, gateway_on_simulator};
use common::tools::tool;
use common::{csv_rows, object, text};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use llm_batch_operator::api::{Batch, BatchGateway, BatchPhase, BatchSchedule, BatchSweep, SweepPhase};
use llm_batch_operator::simulator::SimulatorConfig;
use serde_json::json;

const KEY: &str = "sk-kubectl-plugin-test-key";

/// A kubeconfig for the test cluster with contexts `plain` (no namespace, current) and `team`
/// (namespace `namespace`), and a directory holding `kubectl-llmbatch` for PATH.
struct Plugin {
    dir: tempfile::TempDir,
}

impl Plugin {
    fn new(namespace: &str) -> Plugin {
        let dir = tempfile::tempdir().unwrap();
        let mut config: serde_yaml::Value = serde_yaml::from_str(&server().kubeconfig_yaml()).unwrap();
        config["contexts"] = serde_yaml::from_str(&format!(
            "[{{name: plain, context: {{cluster: test, user: admin}}}}, \
              {{name: team, context: {{cluster: test, user: admin, namespace: {namespace}}}}}]"
        ))
        .unwrap();
        config["current-context"] = "plain".into();
        std::fs::write(dir.path().join("kubeconfig"), serde_yaml::to_string(&config).unwrap()).unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_llm-batch-operator"),
            dir.path().join("bin/kubectl-llmbatch"),
        )
        .unwrap();
        Plugin { dir }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// `kubectl llmbatch <args>` with KUBECONFIG set, whatever its exit.
    async fn run(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = tool("LLMB_KUBECTL");
        command
            .arg("llmbatch")
            .args(args)
            .env("PATH", path)
            .env("KUBECONFIG", self.kubeconfig())
            .current_dir(self.dir.path());
        // A blocking child on a runtime thread would stall the controller running beside it.
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }

    /// `kubectl llmbatch <args>`, which must succeed; its standard output.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(output.status.success(), "kubectl llmbatch {args:?}: {}", text(&output));
        String::from_utf8(output.stdout).unwrap()
    }
}

/// The rows of a kubectl table, by its headers' columns.
fn table(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header = lines.next().expect("a header line");
    let starts: Vec<(usize, String)> = regex::Regex::new(r"\S+(?: \S+)*")
        .unwrap()
        .find_iter(header)
        .map(|m| (m.start(), m.as_str().to_string()))
        .collect();
    lines
        .map(|line| {
            starts
                .iter()
                .enumerate()
                .map(|(i, (start, name))| {
                    let end = starts.get(i + 1).map_or(line.len(), |(s, _)| *s).min(line.len());
                    (name.clone(), line.get(*start..end).unwrap_or("").trim().to_string())
                })
                .collect()
        })
        .collect()
}

struct Cluster {
    client: Client,
    ns: String,
}

impl Cluster {
    async fn new(prefix: &str, config: SimulatorConfig) -> (Cluster, llm_batch_operator::simulator::RunningSimulator) {
        let (client, ns, sim) = gateway_on_simulator(prefix, config, KEY, json!({})).await;
        (Cluster { client, ns }, sim)
    }

    fn batches(&self) -> Api<Batch> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn input(&self, lines: usize) {
        let cm: ConfigMap = object(json!({"metadata": {"name": "input"},
            "data": {"batch.jsonl": common::chat_lines(lines)}}));
        Api::<ConfigMap>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
    }

    async fn batch(&self, name: &str) {
        let batch: Batch = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
            "metadata": {"name": name, "labels": {"team": "support"}},
            "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                "input": {"configMap": {"name": "input", "key": "batch.jsonl"}},
                "output": {"secret": {"name": format!("{name}-results")}}}}));
        self.batches().create(&PostParams::default(), &batch).await.unwrap();
    }

    async fn wait_phase(&self, name: &str, phase: BatchPhase) -> Batch {
        wait_until(
            &format!("{name} never reached {phase}"),
            Duration::from_secs(90),
            async || {
                let batch = self.batches().get(name).await.unwrap();
                match batch.status.as_ref().and_then(|s| s.phase) == Some(phase) {
                    true => Ok(batch),
                    false => Err(batch.status),
                }
            },
        )
        .await
    }

    async fn secret_file(&self, name: &str, key: &str) -> Option<String> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .get(name)
            .await
            .unwrap();
        let data = secret.data.unwrap_or_default();
        data.get(key).map(|b| String::from_utf8(b.0.clone()).unwrap())
    }
}

/// The gateway prices gpt-4o-mini and fails about one line in five.
async fn price_and_fail_lines(c: &Cluster) {
    let patch = json!({"spec": {"headers": {"x-sim-line-failure-rate": "0.2"},
        "pricing": {"models": [{"model": "gpt-4o-mini*", "inputPerMillion": "0.15", "outputPerMillion": "0.60"}]}}});
    Api::<BatchGateway>::namespaced(c.client.clone(), &c.ns)
        .patch("gw", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_describe_and_report_read_a_finished_batch_from_the_cluster() {
    let (c, _sim) = Cluster::new("plugin-read", SimulatorConfig::default()).await;
    price_and_fail_lines(&c).await;
    c.input(25).await;
    c.batch("triage").await;
    let controller = RunningController::start(&c.client, &c.ns);
    let batch = c.wait_phase("triage", BatchPhase::Succeeded).await;
    controller.stop().await;
    let counts = batch.status.clone().unwrap().request_counts.unwrap();
    assert!(counts.failed > 0 && counts.completed > 0, "{counts:?}");
    let plugin = Plugin::new(&c.ns);

    // get: the context `team` says the namespace; -n says it under the context `plain`.
    let listed = plugin.ok(&["get", "--context", "team"]).await;
    let rows = table(&listed);
    assert_eq!(rows.len(), 1, "{listed}");
    let row = &rows[0];
    assert_eq!(row["NAME"], "triage", "{listed}");
    assert_eq!(row["PHASE"], "Succeeded", "{listed}");
    assert_eq!(row["COMPLETED"], counts.completed.to_string(), "{listed}");
    assert_eq!(row["FAILED"], counts.failed.to_string(), "{listed}");
    assert_eq!(row["TOTAL"], "25", "{listed}");
    let status = batch.status.clone().unwrap();
    assert_eq!(row["TOKENS"], status.usage.unwrap().total_tokens.to_string());
    assert_eq!(row["COST"], status.cost.unwrap().display, "{listed}");
    assert_eq!(
        ageless(&plugin.ok(&["get", "batches", "-n", &c.ns]).await),
        ageless(&listed)
    );
    let elsewhere = plugin.run(&["get", "batches"]).await;
    assert!(elsewhere.status.success(), "{}", text(&elsewhere));
    assert!(
        !text(&elsewhere).contains("triage"),
        "the context plain is namespace default: {}",
        text(&elsewhere)
    );

    let json: serde_json::Value = serde_json::from_str(&plugin.ok(&["get", "-n", &c.ns, "-o", "json"]).await).unwrap();
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"][0]["metadata"]["name"], "triage");
    assert_eq!(json["items"][0]["status"]["phase"], "Succeeded");
    let one: serde_json::Value =
        serde_json::from_str(&plugin.ok(&["get", "triage", "--context", "team", "-o", "json"]).await).unwrap();
    assert_eq!(one["kind"], "Batch");
    assert_eq!(one["status"]["requestCounts"]["total"], 25);
    let named = plugin
        .ok(&["get", "batch/triage", "--context", "team", "-o", "name"])
        .await;
    assert_eq!(named, "batch.llmbatch.io/triage\n");
    // --kubeconfig instead of KUBECONFIG, through the subcommand the plugin also is.
    let subcommand = common::bin()
        .args(["kubectl", "get", "batches", "--context", "team", "--kubeconfig"])
        .arg(plugin.kubeconfig())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(subcommand.status.success(), "{}", text(&subcommand));
    assert_eq!(
        ageless(&String::from_utf8(subcommand.stdout).unwrap()),
        ageless(&listed)
    );

    // describe: conditions and the controller's Events; the Secret's name, never its data.
    wait_until("no Succeeded Event about triage", Duration::from_secs(30), async || {
        let events = Api::<Event>::namespaced(c.client.clone(), &c.ns)
            .list(&Default::default())
            .await
            .unwrap();
        let reasons: Vec<_> = events.items.iter().filter_map(|e| e.reason.clone()).collect();
        match reasons.iter().any(|r| r == "Succeeded") {
            true => Ok(()),
            false => Err(reasons),
        }
    })
    .await;
    let described = plugin.ok(&["describe", "triage", "--context", "team"]).await;
    for expected in [
        "Name:",
        "Kind:",
        "Batch",
        "Phase:",
        "Succeeded",
        "Secret triage-results",
        "Conditions:",
        "Events:",
    ] {
        assert!(described.contains(expected), "{expected} missing:\n{described}");
    }
    let conditions = section(&described, "Conditions:");
    let complete = conditions
        .iter()
        .find(|r| r["TYPE"] == "Complete")
        .expect("Complete condition");
    assert_eq!(complete["STATUS"], "True", "{described}");
    let events = section(&described, "Events:");
    assert!(events.iter().any(|e| e["REASON"] == "Succeeded"), "{described}");
    let output = c.secret_file("triage-results", "output.jsonl").await.unwrap();
    let first: serde_json::Value = serde_json::from_str(output.lines().next().unwrap()).unwrap();
    let answer = first["response"]["body"]["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(!described.contains(answer), "results in describe:\n{described}");
    assert!(!described.contains(KEY), "the gateway key in describe");

    // report: the same rows as `report` on the same results laid out as run -f lays them out.
    let cluster_rows = plugin.ok(&["report", "triage", "-n", &c.ns]).await;
    let cluster_summary = plugin.ok(&["report", "triage", "-n", &c.ns, "--summary"]).await;
    let local = plugin.path("local");
    local_copy(&c, &batch, &local).await;
    let local_report = |extra: &[&str]| {
        let output = common::bin()
            .current_dir(&local)
            .args(["report", "-f", "manifests.yaml", "--out", "out"])
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(cluster_rows, local_report(&[]));
    assert_eq!(cluster_summary, local_report(&["--summary"]));
    let rows = csv_rows(&cluster_rows);
    assert_eq!(rows.len(), 25);
    let failed = rows.iter().filter(|r| r["status"] == "failed").count();
    assert_eq!(failed as u64, counts.failed);
    assert!(
        rows.iter()
            .filter(|r| r["status"] == "succeeded")
            .all(|r| !r["cost"].is_empty()),
        "{cluster_rows}"
    );

    // An unknown name: exit 2, saying what was looked for and where.
    let unknown = plugin.run(&["describe", "nope", "--context", "team"]).await;
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(
        text(&unknown).contains(&format!(
            "no Batch, BatchSweep or BatchSchedule named nope in namespace {}",
            c.ns
        )),
        "{}",
        text(&unknown)
    );
    let unknown = plugin.run(&["report", "nope", "-n", &c.ns]).await;
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(
        text(&unknown).contains(&format!("no Batch or BatchSweep named nope in namespace {}", c.ns)),
        "{}",
        text(&unknown)
    );
}

/// A table's rows without their AGE, which moves between two calls.
fn ageless(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut rows = table(text);
    for row in &mut rows {
        assert!(row.remove("AGE").is_some(), "no AGE column: {text}");
    }
    rows
}

/// The rows of the table under `title` in describe's output (its lines indented by two).
fn section(described: &str, title: &str) -> Vec<BTreeMap<String, String>> {
    let after = &described[described.find(title).unwrap() + title.len()..];
    let lines: Vec<&str> = after
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| &l[2..])
        .collect();
    table(&lines.join("\n"))
}

/// The Batch's results as `run -f` lays them out (`out/<ns>/<name>/`), and its manifests.
async fn local_copy(c: &Cluster, batch: &Batch, dir: &Path) {
    let name = batch.name_any();
    let out = dir.join("out").join(&c.ns).join(&name);
    std::fs::create_dir_all(&out).unwrap();
    for file in ["output.jsonl", "errors.jsonl"] {
        let content = c.secret_file(&format!("{name}-results"), file).await.unwrap();
        std::fs::write(out.join(file), content).unwrap();
    }
    std::fs::write(out.join("status.yaml"), serde_yaml::to_string(&batch.status).unwrap()).unwrap();
    let input = Api::<ConfigMap>::namespaced(c.client.clone(), &c.ns)
        .get("input")
        .await
        .unwrap();
    let gateway = Api::<BatchGateway>::namespaced(c.client.clone(), &c.ns)
        .get("gw")
        .await
        .unwrap();
    let documents = [
        json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
            "metadata": {"name": name, "namespace": c.ns}, "spec": batch.spec}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "input", "namespace": c.ns},
            "data": input.data}),
        json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway",
            "metadata": {"name": "gw", "namespace": c.ns}, "spec": gateway.spec}),
    ];
    let yaml: Vec<String> = documents.iter().map(|d| serde_yaml::to_string(d).unwrap()).collect();
    std::fs::write(dir.join("manifests.yaml"), yaml.join("---\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_batch_and_retry_runs_it_again_as_a_new_batch() {
    let config = SimulatorConfig {
        lines_per_sec: 8,
        ..Default::default()
    };
    let (c, _sim) = Cluster::new("plugin-cancel", config).await;
    c.input(40).await;
    c.batch("slow").await;
    let controller = RunningController::start(&c.client, &c.ns);
    let plugin = Plugin::new(&c.ns);

    let early = plugin.run(&["retry", "slow", "--context", "team"]).await;
    assert_eq!(early.status.code(), Some(2), "{}", text(&early));
    assert!(
        text(&early).contains(&format!("Batch {}/slow is still", c.ns)),
        "{}",
        text(&early)
    );
    c.wait_phase("slow", BatchPhase::InProgress).await;
    let cancelled = plugin.ok(&["cancel", "slow", "--context", "team"]).await;
    assert!(
        cancelled.contains("batch.llmbatch.io/slow cancel requested"),
        "{cancelled}"
    );
    let batch = c.wait_phase("slow", BatchPhase::Cancelled).await;
    assert!(batch.spec.cancel);
    let again = plugin.run(&["cancel", "slow", "--context", "team"]).await;
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("already ended Cancelled"), "{}", text(&again));

    let retried = plugin.ok(&["retry", "slow", "--context", "team"]).await;
    assert!(retried.contains("batch.llmbatch.io/slow-retry-1 created"), "{retried}");
    let retry = c.wait_phase("slow-retry-1", BatchPhase::Succeeded).await;
    assert!(!retry.spec.cancel);
    assert_eq!(retry.spec.input, batch.spec.input);
    assert_eq!(
        retry.annotations().get("llmbatch.io/retry-of").map(String::as_str),
        Some("slow")
    );
    assert_eq!(retry.labels().get("team").map(String::as_str), Some("support"));
    let batch_id = |b: &Batch| {
        b.status
            .as_ref()
            .and_then(|s| s.gateway.as_ref())
            .and_then(|g| g.batch_id.clone())
    };
    assert!(batch_id(&retry).is_some());
    assert_ne!(
        batch_id(&retry),
        batch_id(&batch),
        "the retry re-attached to the cancelled upstream batch"
    );
    assert_eq!(
        retry
            .status
            .as_ref()
            .unwrap()
            .request_counts
            .as_ref()
            .unwrap()
            .completed,
        40
    );
    let output = c.secret_file("slow-retry-1-results", "output.jsonl").await.unwrap();
    assert_eq!(output.lines().count(), 40);

    // A second retry takes the next number; a Batch that succeeded is not retried.
    let second = plugin.ok(&["retry", "slow", "--context", "team"]).await;
    assert!(second.contains("batch.llmbatch.io/slow-retry-2 created"), "{second}");
    let done = plugin.run(&["retry", "slow-retry-1", "--context", "team"]).await;
    assert_eq!(done.status.code(), Some(2), "{}", text(&done));
    assert!(
        text(&done).contains("Succeeded: there is nothing to retry"),
        "{}",
        text(&done)
    );
    c.wait_phase("slow-retry-2", BatchPhase::Succeeded).await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_is_reported_pivoted_described_with_its_children_and_not_cancelled_or_retried() {
    let (c, _sim) = Cluster::new("plugin-sweep", SimulatorConfig::default()).await;
    c.input(12).await;
    let sweep: BatchSweep = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchSweep",
        "metadata": {"name": "eval"},
        "spec": {"input": {"configMap": {"name": "input", "key": "batch.jsonl"}},
            "chunk": {"maxRequests": 5}, "matrix": {"models": ["model-a", "model-b"]}, "parallelism": 6,
            "template": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                "output": {"secret": {"name": "eval-results"}}}}}));
    let sweeps = Api::<BatchSweep>::namespaced(c.client.clone(), &c.ns);
    sweeps.create(&PostParams::default(), &sweep).await.unwrap();
    let controller = RunningController::start(&c.client, &c.ns);
    let sweep = wait_until("eval never succeeded", Duration::from_secs(120), async || {
        let sweep = sweeps.get("eval").await.unwrap();
        match sweep.status.as_ref().and_then(|s| s.phase) {
            Some(SweepPhase::Succeeded) if sweep.status.as_ref().unwrap().completion_time.is_some() => Ok(sweep),
            _ => Err(sweep.status),
        }
    })
    .await;
    controller.stop().await;
    let status = sweep.status.clone().unwrap();
    let plugin = Plugin::new(&c.ns);

    let listed = table(&plugin.ok(&["get", "sweeps", "--context", "team"]).await);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["NAME"], "eval");
    assert_eq!(listed[0]["PHASE"], "Succeeded");
    assert_eq!(&listed[0]["BATCHES"], status.progress.as_ref().unwrap());
    assert_eq!(listed[0]["TOTAL"], "24");

    let everywhere = table(&plugin.ok(&["get", "sweeps", "-A"]).await);
    let ours: Vec<_> = everywhere.iter().filter(|r| r["NAMESPACE"] == c.ns).collect();
    assert_eq!(ours.len(), 1, "{everywhere:?}");
    assert_eq!(ours[0]["NAME"], "eval");
    let refused = plugin.run(&["get", "eval", "-A"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));

    // The report reads the plan from the sweep's status and each child's results from its Secret.
    plugin
        .ok(&[
            "report",
            "eval",
            "--context",
            "team",
            "--pivot",
            "model",
            "-o",
            "pivot.csv",
        ])
        .await;
    let pivot = csv_rows(&std::fs::read_to_string(plugin.path("pivot.csv")).unwrap());
    assert_eq!(pivot.len(), 12, "one row per prompt");
    for (i, row) in pivot.iter().enumerate() {
        assert_eq!(row["prompt_id"], format!("req-{}", i + 1));
        assert_eq!(row["chunk"], (i / 5).to_string());
        for model in ["model-a", "model-b"] {
            assert_eq!(row[&format!("{model}/status")], "succeeded", "{row:?}");
            assert!(!row[&format!("{model}/answer")].is_empty(), "{row:?}");
        }
    }
    let summary = csv_rows(
        &plugin
            .ok(&["report", "sweep/eval", "--context", "team", "--summary"])
            .await,
    );
    let total = summary.iter().find(|r| r["model"] == "(total)").unwrap();
    let counts = status.request_counts.clone().unwrap();
    assert_eq!(total["requests"], counts.total.to_string());
    assert_eq!(total["succeeded"], counts.completed.to_string());
    assert_eq!(
        total["total_tokens"],
        status.usage.clone().unwrap().total_tokens.to_string()
    );

    let described = plugin.ok(&["describe", "eval", "--context", "team"]).await;
    let children = section(&described, "Children:");
    assert_eq!(children.len(), 6, "{described}");
    assert!(children.iter().all(|c| c["PHASE"] == "Succeeded"), "{described}");
    let names: Vec<&str> = children.iter().map(|c| c["NAME"].as_str()).collect();
    assert!(names.contains(&"eval-model-b-c0002"), "{described}");

    // A sweep has no spec.cancel, and is retried through spec.retry: both say so.
    let cancel = plugin.run(&["cancel", "eval", "--context", "team"]).await;
    assert_eq!(cancel.status.code(), Some(2), "{}", text(&cancel));
    assert!(
        text(&cancel).contains("BatchSweep eval has no spec.cancel: suspend it"),
        "{}",
        text(&cancel)
    );
    let retry = plugin.run(&["retry", "eval", "--context", "team"]).await;
    assert_eq!(retry.status.code(), Some(2), "{}", text(&retry));
    assert!(text(&retry).contains("spec.retry"), "{}", text(&retry));

    // A schedule (no controller runs it now) is listed and described too.
    let nightly: BatchSchedule = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchSchedule",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 2 * * *", "timeZone": "Europe/Paris",
            "batchTemplate": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                "input": {"configMap": {"name": "input", "key": "batch.jsonl"}}}}}));
    Api::<BatchSchedule>::namespaced(c.client.clone(), &c.ns)
        .create(&PostParams::default(), &nightly)
        .await
        .unwrap();
    let schedules = table(
        &plugin
            .ok(&["get", "schedules", "--context", "team", "-o", "wide"])
            .await,
    );
    assert_eq!(schedules.len(), 1);
    assert_eq!(schedules[0]["NAME"], "nightly");
    assert_eq!(schedules[0]["SCHEDULE"], "0 2 * * *");
    assert_eq!(schedules[0]["SUSPEND"], "false");
    assert_eq!(schedules[0]["LAST SCHEDULE"], "<none>");
    assert_eq!(schedules[0]["TIMEZONE"], "Europe/Paris");
    let described = plugin.ok(&["describe", "schedule/nightly", "--context", "team"]).await;
    assert!(described.contains("Runs:      a Batch (batchTemplate)"), "{described}");
    let report = plugin.run(&["report", "nightly", "--context", "team"]).await;
    assert_eq!(report.status.code(), Some(2), "{}", text(&report));
    assert!(
        text(&report).contains("no Batch or BatchSweep named nightly"),
        "{}",
        text(&report)
    );

    // Results on a volume cannot be read from here: the report says so, naming the claim.
    let on_volume: Batch = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
        "metadata": {"name": "on-volume"},
        "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
            "input": {"configMap": {"name": "input", "key": "batch.jsonl"}},
            "output": {"pvc": {"claimName": "results-volume", "path": "runs"}}}}));
    c.batches().create(&PostParams::default(), &on_volume).await.unwrap();
    let refused = plugin.run(&["report", "on-volume", "--context", "team"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains(
            "PersistentVolumeClaim results-volume (path \"runs\"), which cannot be read from outside the cluster"
        ),
        "{}",
        text(&refused)
    );
}
