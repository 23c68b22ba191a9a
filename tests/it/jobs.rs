//! The Jobs the controller starts, against a real kube-apiserver with kube-controller-manager's
//! Job controller: the PVC sink. The test plays the kubelet (common::kubelet) and runs each pod
//! as a local process of this build.

use crate::common;
use common::wait_until;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{RunningController, gateway_on_simulator};
use common::kubelet::Kubelet;
use common::object;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use llm_batch_operator::api::{Batch, BatchPhase};
use llm_batch_operator::controller::Context;
use llm_batch_operator::simulator::{RunningSimulator, SimulatorConfig};
use serde_json::{Value, json};

const KEY: &str = "sk-jobs-test-key";
const IMAGE: &str = "registry.example/llm-batch-operator:test";

struct Setup {
    client: Client,
    ns: String,
    sim: RunningSimulator,
    controller: Option<RunningController>,
    /// The controller's `--direct-progress-port`: a free one per test, as the pods of tests
    /// running at once all listen on 127.0.0.1.
    progress_port: u16,
}

async fn setup(prefix: &str) -> Setup {
    setup_with(prefix, SimulatorConfig::default(), 6, json!({})).await
}

/// A namespace with gateway `gw` on a simulator configured by `sim`, ConfigMap `input` of
/// `lines` chat lines, and a controller with a Job image.
async fn setup_with(prefix: &str, sim: SimulatorConfig, lines: usize, limits: Value) -> Setup {
    let (client, ns, sim) = gateway_on_simulator(prefix, sim, KEY, limits).await;
    let cm: ConfigMap =
        object(json!({"metadata": {"name": "input"}, "data": {"batch.jsonl": common::chat_lines(lines)}}));
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let progress_port = common::free_port();
    let context = Context::new(client.clone())
        .with_addresses(llm_batch_operator::net::AddressPolicy::local())
        .with_job_image(Some(IMAGE.into()))
        .with_direct_progress_port(progress_port);
    let controller = Some(RunningController::start_with(Arc::new(context), &ns));
    Setup {
        client,
        ns,
        sim,
        controller,
        progress_port,
    }
}

impl Setup {
    async fn batch(&self, name: &str, pvc: Value) {
        let batch: Batch = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
            "metadata": {"name": name},
            "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                     "input": {"configMap": {"name": "input", "key": "batch.jsonl"}},
                     "output": {"pvc": pvc}}}));
        Api::<Batch>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &batch)
            .await
            .unwrap();
    }

    /// The one Job working for Batch `name` (waits, bounded, for it to exist).
    async fn job(&self, name: &str) -> Job {
        let jobs = Api::<Job>::namespaced(self.client.clone(), &self.ns);
        wait_until(
            &format!("no Job for Batch {name}"),
            Duration::from_secs(60),
            async || {
                let list = jobs
                    .list(&ListParams::default().labels(&format!("llmbatch.io/batch={name}")))
                    .await
                    .unwrap();
                assert!(list.items.len() <= 1, "two Jobs for {name}");
                list.items.into_iter().next().ok_or("no Job")
            },
        )
        .await
    }

    async fn wait_phase(&self, name: &str, phase: BatchPhase) -> Batch {
        let batches = Api::<Batch>::namespaced(self.client.clone(), &self.ns);
        wait_until(
            &format!("{name} never reached {phase}"),
            Duration::from_secs(90),
            async || {
                let batch = batches.get(name).await.unwrap();
                if batch.status.as_ref().and_then(|s| s.phase) == Some(phase) {
                    Ok(batch)
                } else {
                    Err(batch.status)
                }
            },
        )
        .await
    }

    /// `status.requestCounts.completed` each time it changed before Batch `name` Succeeded
    /// (bounded wait), and the Succeeded Batch.
    async fn completed_until_succeeded(&self, name: &str) -> (Vec<u64>, Batch) {
        let batches = Api::<Batch>::namespaced(self.client.clone(), &self.ns);
        let mut seen: Vec<u64> = Vec::new();
        let batch = wait_until(
            &format!("{name} never Succeeded"),
            Duration::from_secs(90),
            async || {
                let batch = batches.get(name).await.unwrap();
                let status = batch.status.clone().unwrap_or_default();
                if status.phase == Some(BatchPhase::Succeeded) {
                    return Ok(batch);
                }
                let completed = status.request_counts.map_or(0, |c| c.completed);
                if seen.last() != Some(&completed) {
                    seen.push(completed);
                }
                Err(batch.status)
            },
        )
        .await;
        (seen, batch)
    }

    /// The custom_ids the simulator was sent as direct requests, in order.
    async fn direct_sends(&self) -> Vec<String> {
        let url = format!("{}/__sim/journal", self.sim.base_url().trim_end_matches("/v1"));
        let entries: Vec<Value> = reqwest::get(url).await.unwrap().json().await.unwrap();
        entries
            .iter()
            .filter(|e| e["method"] == "POST" && e["path"] == "/v1/chat/completions")
            .filter_map(|e| e["client_request_id"].as_str().map(str::to_string))
            .collect()
    }

    async fn stop(mut self) {
        self.controller.take().unwrap().stop().await;
    }
}

/// The pod of a Job as Pod Security "restricted" requires, with nothing but the key from the
/// gateway's Secret, no service-account token, owned by its Batch.
fn assert_restricted(job: &Job, batch: &str) {
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Batch", batch, Some(true))
    );
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let security = pod.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.service_account_name.is_none());
    assert_eq!(pod.containers.len(), 1);
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some(IMAGE));
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(
        security.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    let spec_text = serde_json::to_string(job).unwrap();
    assert!(!spec_text.contains(KEY), "the key is in the Job: {spec_text}");
    let key_var = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "LLM_BATCH_API_KEY")
        .unwrap();
    let from = key_var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((from.name.as_str(), from.key.as_str()), ("gw-key", "api-key"));
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The results land on the claim through a restricted Job; a pod that fails for a reason a
/// rerun can get past is retried by the Job (a new pod) and the Batch then succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pvc_output_is_written_by_a_restricted_sink_job_that_retries_what_can_pass() {
    let s = setup("jobs-sink").await;
    let claims = tempfile::tempdir().unwrap();
    let kubelet = Kubelet::new(&s.client, &s.ns, claims.path());
    s.batch("triage", json!({"claimName": "results", "path": "runs/triage"}))
        .await;

    let job = s.job("triage").await;
    assert_restricted(&job, "triage");
    let args = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(args[0], "sink");
    // The sink checks the results against the input's custom_ids, as the controller would.
    let expected = args.iter().position(|a| a == "--expected-ids").expect("--expected-ids");
    assert_eq!(args[expected + 1].split(':').count(), 3, "{args:?}");

    // First pod: where the results go is a file, not a directory: the sink fails (exit 1).
    let target = claims.path().join("results/runs/triage");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, "in the way").unwrap();
    let first = kubelet.next_pod(&job.name_any(), &[], Duration::from_secs(30)).await;
    assert_eq!(kubelet.run(&first).await, 1);
    std::fs::remove_file(&target).unwrap();
    // The Job controller starts a second pod after its backoff (about 10 s).
    let second = kubelet
        .next_pod(&job.name_any(), &[first.name_any()], Duration::from_secs(60))
        .await;
    assert_eq!(kubelet.run(&second).await, 0);

    let batch = s.wait_phase("triage", BatchPhase::Succeeded).await;
    let status = batch.status.unwrap();
    let where_ = status.output.as_ref().unwrap();
    assert_eq!(
        (where_.pvc.as_deref(), where_.path.as_deref()),
        (Some("results"), Some("runs/triage"))
    );
    let output = lines(&target.join("output.jsonl"));
    assert_eq!(output.len(), 6);
    assert_eq!(status.request_counts.as_ref().unwrap().completed, 6);
    let verified = status
        .conditions
        .iter()
        .find(|c| c.type_ == "ResultsVerified")
        .expect("ResultsVerified");
    assert_eq!(
        (verified.status.as_str(), verified.reason.as_str()),
        ("True", "ResultsMatchInput")
    );
    let usage = status.usage.unwrap();
    let summed: u64 = output
        .iter()
        .map(|l| l["response"]["body"]["usage"]["total_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(
        usage.total_tokens, summed,
        "usage comes back from the sink's termination message"
    );
    assert_eq!(
        s.job("triage").await.name_any(),
        job.name_any(),
        "one Job, never a second"
    );
    s.stop().await;
}

/// A sink that cannot succeed (the output file is gone from the gateway) fails its Job at once
/// (pod failure policy, no retries) and the Batch fails saying which Job and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_cannot_succeed_fails_at_once_and_the_batch_says_why() {
    let s = setup("jobs-gone").await;
    let claims = tempfile::tempdir().unwrap();
    let kubelet = Kubelet::new(&s.client, &s.ns, claims.path());
    s.batch("lost", json!({"claimName": "results"})).await;
    let job = s.job("lost").await;
    let batch = s.wait_phase("lost", BatchPhase::Downloading).await;
    let file = batch.status.unwrap().gateway.unwrap().output_file_id.unwrap();
    let deleted = reqwest::Client::new()
        .delete(format!("{}/files/{file}", s.sim.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());

    let pod = kubelet.next_pod(&job.name_any(), &[], Duration::from_secs(30)).await;
    assert_eq!(kubelet.run(&pod).await, 2);
    let batch = s.wait_phase("lost", BatchPhase::Failed).await;
    let conditions = batch.status.unwrap().conditions;
    let text = serde_json::to_string(&conditions).unwrap();
    assert!(text.contains(&job.name_any()) && text.contains(&file), "{text}");
    s.stop().await;
}

/// Auto on a gateway without a batch API runs the Batch as direct requests in a restricted Job
/// with its checkpoint on the claim; the pod killed mid-run (SIGKILL), the Job's next pod resumes
/// from the checkpoint: every line answered once, none sent again but those on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_mode_runs_in_a_job_and_resumes_after_its_pod_is_killed() {
    let sim = SimulatorConfig {
        no_batch_api: true,
        latency_ms: 100,
        ..Default::default()
    };
    // 2 in flight, 100 ms each: about 3 s for the 60 lines, killed at 1.5 s.
    let s = setup_with("jobs-direct", sim, 60, json!({"maxConcurrentRequests": 2})).await;
    let claims = tempfile::tempdir().unwrap();
    let kubelet = Kubelet::new(&s.client, &s.ns, claims.path());
    s.batch("direct", json!({"claimName": "results", "path": "direct"}))
        .await;
    let job = s.job("direct").await;
    assert_restricted(&job, "direct");
    let container = &job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.args.as_ref().unwrap()[0], "direct");

    let first = kubelet.next_pod(&job.name_any(), &[], Duration::from_secs(30)).await;
    assert_eq!(kubelet.run_for(&first, Some(Duration::from_millis(1500))).await, 137);
    let sent_before = s.direct_sends().await;
    assert!(
        !sent_before.is_empty() && sent_before.len() < 60,
        "{} sent before the kill",
        sent_before.len()
    );
    let second = kubelet
        .next_pod(&job.name_any(), &[first.name_any()], Duration::from_secs(60))
        .await;
    assert_eq!(kubelet.run(&second).await, 0);

    let batch = s.wait_phase("direct", BatchPhase::Succeeded).await;
    let status = batch.status.unwrap();
    assert_eq!(status.mode, Some(llm_batch_operator::api::BatchMode::Direct));
    assert_eq!(status.request_counts.as_ref().unwrap().completed, 60);
    assert!(status.usage.unwrap().total_tokens > 0);
    let output = lines(&claims.path().join("results/direct/output.jsonl"));
    let mut ids: Vec<&str> = output.iter().map(|l| l["custom_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 60, "every line answered exactly once");
    let sent = s.direct_sends().await;
    let in_flight_at_kill = sent.len() - 60;
    assert!(
        in_flight_at_kill <= 2,
        "{in_flight_at_kill} lines sent twice (at most those on the wire)"
    );
    s.stop().await;
}

/// While a direct Job's pod runs, the controller reads the counts it serves (`GET /progress` on
/// the pod's IP and the controller's `--direct-progress-port`): `status.requestCounts` advances
/// before the Job ends, never goes back, and ends at the total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_mode_counts_advance_while_its_job_runs() {
    let sim = SimulatorConfig {
        no_batch_api: true,
        latency_ms: 100,
        ..Default::default()
    };
    // 1 in flight, 100 ms each: about 4 s for the 40 lines; the gateway polls every 100-500 ms.
    let s = setup_with("jobs-progress", sim, 40, json!({"maxConcurrentRequests": 1})).await;
    let claims = tempfile::tempdir().unwrap();
    let kubelet = Kubelet::new(&s.client, &s.ns, claims.path());
    s.batch("live", json!({"claimName": "results"})).await;
    let job = s.job("live").await;
    assert_restricted(&job, "live");
    let container = &job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    let args = container.args.clone().unwrap();
    let listen = args.iter().position(|a| a == "--progress-listen").map(|i| &args[i + 1]);
    assert_eq!(listen, Some(&format!("$(POD_IP):{}", s.progress_port)), "{args:?}");
    let pod_ip = container.env.iter().flatten().find(|e| e.name == "POD_IP").unwrap();
    let field = pod_ip.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
    assert_eq!(field.field_path, "status.podIP");
    let port = &container.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("progress"), i32::from(s.progress_port))
    );

    let pod = kubelet.next_pod(&job.name_any(), &[], Duration::from_secs(30)).await;
    let (code, (seen, batch)) = tokio::join!(kubelet.run(&pod), s.completed_until_succeeded("live"));
    assert_eq!(code, 0);
    assert!(
        seen.iter().any(|&completed| 0 < completed && completed < 40),
        "no count between 0 and 40 before the end: {seen:?}"
    );
    assert!(seen.is_sorted(), "counts went back: {seen:?}");
    let counts = batch.status.unwrap().request_counts.unwrap();
    assert_eq!((counts.total, counts.completed, counts.failed), (40, 40, 0));
    s.stop().await;
}

/// The kubelet stand-in expands `$(VAR)` in a container's arguments as Kubernetes does.
#[test]
fn the_kubelet_expands_arguments_as_kubernetes_does() {
    let env = std::collections::BTreeMap::from([
        ("POD_IP".to_string(), "127.0.0.1".to_string()),
        ("EMPTY".to_string(), String::new()),
    ]);
    let cases = [
        ("$(POD_IP):8686", "127.0.0.1:8686"),
        ("$(POD_IP)$(POD_IP)", "127.0.0.1127.0.0.1"),
        ("$(EMPTY)x", "x"),
        ("$(UNSET):1", "$(UNSET):1"),
        ("$$(POD_IP)", "$(POD_IP)"),
        ("a$$b$$$$", "a$b$$"),
        ("$x $ ($(POD_IP", "$x $ ($(POD_IP"),
        ("end$", "end$"),
        ("", ""),
    ];
    for (arg, want) in cases {
        assert_eq!(common::kubelet::expand(arg, &env), want, "{arg:?}");
    }
}

/// `cancel: true` while a direct Job runs: the Job is stopped and a cancelling Job concludes the
/// run (lines not done become batch_cancelled errors); the Batch ends Cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_direct_batch_replaces_its_job_with_one_that_concludes_cancelled() {
    let sim = SimulatorConfig {
        no_batch_api: true,
        ..Default::default()
    };
    let s = setup_with("jobs-cancel", sim, 5, json!({})).await;
    let claims = tempfile::tempdir().unwrap();
    let kubelet = Kubelet::new(&s.client, &s.ns, claims.path());
    s.batch("stopme", json!({"claimName": "results"})).await;
    let job = s.job("stopme").await;
    let first = kubelet.next_pod(&job.name_any(), &[], Duration::from_secs(30)).await;
    let patch = json!({"spec": {"cancel": true}});
    Api::<Batch>::namespaced(s.client.clone(), &s.ns)
        .patch(
            "stopme",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    // The running Job is replaced by one that cancels (same name, new uid).
    let cancelling = wait_until("the Job was not replaced", Duration::from_secs(60), async || {
        let current = s.job("stopme").await;
        if current.uid() != job.uid() {
            Ok(current)
        } else {
            Err(current.uid())
        }
    })
    .await;
    let args = cancelling
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.contains(&"--cancel".to_string()), "{args:?}");
    let pod = kubelet
        .next_pod(&cancelling.name_any(), &[first.name_any()], Duration::from_secs(30))
        .await;
    assert_eq!(kubelet.run(&pod).await, 0);
    let batch = s.wait_phase("stopme", BatchPhase::Cancelled).await;
    let counts = batch.status.unwrap().request_counts.unwrap();
    assert_eq!(counts.not_run, Some(5));
    assert!(s.direct_sends().await.is_empty(), "nothing was sent");
    s.stop().await;
}

/// Direct mode in a cluster needs a claim for its checkpoint: a Batch with a Secret output is
/// refused before anything is sent, saying what to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_batch_without_a_claim_is_refused_saying_what_to_set() {
    let sim = SimulatorConfig {
        no_batch_api: true,
        ..Default::default()
    };
    let s = setup_with("jobs-noclaim", sim, 3, json!({})).await;
    let batch: Batch = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
        "metadata": {"name": "noclaim"},
        "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                 "input": {"configMap": {"name": "input", "key": "batch.jsonl"}},
                 "output": {"secret": {"name": "noclaim-results"}}}}));
    Api::<Batch>::namespaced(s.client.clone(), &s.ns)
        .create(&PostParams::default(), &batch)
        .await
        .unwrap();
    let batch = s.wait_phase("noclaim", BatchPhase::Failed).await;
    let text = serde_json::to_string(&batch.status.unwrap().conditions).unwrap();
    assert!(
        text.contains("SpecInvalid") && text.contains("spec.output.pvc"),
        "{text}"
    );
    assert!(s.direct_sends().await.is_empty());
    let jobs = Api::<Job>::namespaced(s.client.clone(), &s.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(jobs.items.is_empty(), "no Job was started");
    s.stop().await;
}

/// Direct mode in a Job reads an object-store input (a rewritten slice), with only the
/// scheme's credential keys from the input's Secret (optional ones left unset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_job_streams_its_slice_from_object_storage() {
    use common::s3::{ACCESS_KEY, SECRET_KEY, SeaweedFs};
    let s3 = SeaweedFs::start();
    let source = common::chat_lines(10) + "\n";
    let start: usize = source.split_inclusive('\n').take(2).map(str::len).sum();
    let end: usize = source.split_inclusive('\n').take(7).map(str::len).sum();
    s3.put("corpus.jsonl", source);
    let sim = SimulatorConfig {
        no_batch_api: true,
        ..Default::default()
    };
    let s = setup_with("jobs-object", sim, 1, json!({})).await;
    let secret: k8s_openapi::api::core::v1::Secret = object(json!({"metadata": {"name": "s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}}));
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(s.client.clone(), &s.ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let batch: Batch = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
        "metadata": {"name": "fromobject"},
        "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                 "input": {"objectStore": {"url": "s3://test/corpus.jsonl", "endpoint": s3.endpoint,
                                           "secretRef": {"name": "s3"}},
                           "byteRange": {"start": start, "end": end},
                           "overrides": {"customIdPrefix": "o/"}},
                 "output": {"pvc": {"claimName": "results"}}}}));
    Api::<Batch>::namespaced(s.client.clone(), &s.ns)
        .create(&PostParams::default(), &batch)
        .await
        .unwrap();
    let claims = tempfile::tempdir().unwrap();
    let kubelet = Kubelet::new(&s.client, &s.ns, claims.path());
    let job = s.job("fromobject").await;
    let env = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let from_secret: Vec<&str> = env
        .iter()
        .filter(|e| {
            e.value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref())
                .is_some_and(|r| r.name == "s3")
        })
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        from_secret,
        ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    );
    let pod = kubelet.next_pod(&job.name_any(), &[], Duration::from_secs(30)).await;
    assert_eq!(kubelet.run(&pod).await, 0);
    s.wait_phase("fromobject", BatchPhase::Succeeded).await;
    let mut ids: Vec<String> = lines(&claims.path().join("results/output.jsonl"))
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["o/req-3", "o/req-4", "o/req-5", "o/req-6", "o/req-7"]);
    s.stop().await;
}
