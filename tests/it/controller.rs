//! The Batch controller in-process against a real kube-apiserver and the simulator.

use crate::common;
use common::wait_until;

use common::cluster::{RunningController, create_gateway};

use common::object;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::apiserver::{admin_client, fresh_namespace};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use llm_batch_operator::api::{BATCH_ID_ANNOTATION, Batch, BatchGateway, BatchPhase};
use llm_batch_operator::controller;
use llm_batch_operator::simulator::{RunningSimulator, SimulatorConfig};
use serde_json::{Value, json};

const KEY: &str = "sk-controller-test-key";

struct Setup {
    client: Client,
    ns: String,
    sim: Arc<RunningSimulator>,
}

/// A namespace with a BatchGateway (and its key) pointing at a fresh simulator.
async fn setup(prefix: &str, sim: SimulatorConfig) -> Setup {
    setup_limited(prefix, sim, json!({})).await
}

/// [`setup`] with the gateway's `spec.limits`.
async fn setup_limited(prefix: &str, sim: SimulatorConfig, limits: Value) -> Setup {
    let config = SimulatorConfig {
        api_key: Some(KEY.into()),
        ..sim
    };
    let sim = RunningSimulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    setup_on(prefix, Arc::new(sim), limits).await
}

/// A namespace with a BatchGateway (and its key, and `limits`) pointing at `sim`.
async fn setup_on(prefix: &str, sim: Arc<RunningSimulator>, limits: Value) -> Setup {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, prefix).await;
    create_gateway(&client, &ns, &sim.base_url(), KEY, limits).await;
    Setup { client, ns, sim }
}

impl Setup {
    async fn input(&self, name: &str, jsonl: &str) {
        common::cluster::create_input(&self.client, &self.ns, name, jsonl).await;
    }

    async fn batch(&self, name: &str, extra: Value) {
        let mut spec = json!({"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
            "input": {"configMap": {"name": "input", "key": "batch.jsonl"}},
            "output": {"secret": {"name": format!("{name}-results")}}});
        merge(&mut spec, extra);
        let batch: Batch = object(
            json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch", "metadata": {"name": name}, "spec": spec}),
        );
        self.batches().create(&PostParams::default(), &batch).await.unwrap();
    }

    fn batches(&self) -> Api<Batch> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Waits (bounded) until the Batch is in `phase`.
    async fn wait_phase(&self, name: &str, phase: BatchPhase) -> Batch {
        wait_until(
            &format!("{name} never reached {phase}"),
            Duration::from_secs(60),
            async || {
                let batch = self.batches().get(name).await.unwrap();
                if batch.status.as_ref().and_then(|s| s.phase) == Some(phase) {
                    Ok(batch)
                } else {
                    Err((batch.status, batch.metadata.finalizers))
                }
            },
        )
        .await
    }

    /// Waits (bounded) until Batch `name` is gone (its finalizer released).
    async fn wait_deleted(&self, name: &str, what: &str, within: Duration) {
        wait_until(what, within, async || {
            match self.batches().get_opt(name).await.unwrap() {
                Some(batch) => Err(batch.metadata.finalizers),
                None => Ok(()),
            }
        })
        .await
    }

    /// Every request the simulator received: (method, path, status).
    async fn journal(&self) -> Vec<(String, String, u64)> {
        let url = format!("{}/__sim/journal", self.sim.base_url().trim_end_matches("/v1"));
        let entries: Vec<Value> = reqwest::get(url).await.unwrap().json().await.unwrap();
        let text = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_string();
        entries
            .iter()
            .map(|e| (text(e, "method"), text(e, "path"), e["status"].as_u64().unwrap_or(0)))
            .collect()
    }

    async fn count_ok(&self, method: &str, path: &str) -> usize {
        let journal = self.journal().await;
        journal
            .iter()
            .filter(|(m, p, status)| m == method && p == path && *status < 300)
            .count()
    }

    /// The reasons of the Warning Events about `name`.
    async fn warnings(&self, name: &str) -> Vec<String> {
        let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(self.client.clone(), &self.ns);
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .filter_map(|e| e.reason)
            .collect()
    }

    async fn event_reasons(&self, name: &str) -> Vec<String> {
        let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(self.client.clone(), &self.ns);
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.reason)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_to_succeeded_with_its_results_in_an_owned_secret() {
    let s = setup("ctl-happy", SimulatorConfig::default()).await;
    s.input("input", &common::chat_lines(25)).await;
    s.batch("triage", json!({"metadata": {"team": "support"}})).await;
    let controller = RunningController::start(&s.client, &s.ns);

    let batch = s.wait_phase("triage", BatchPhase::Succeeded).await;
    controller.stop().await;
    let status = batch.status.clone().unwrap();
    assert_eq!(status.request_counts.as_ref().unwrap().completed, 25);
    assert!(status.usage.as_ref().unwrap().total_tokens > 0);
    assert_eq!(status.observed_generation, Some(1));
    let batch_id = status.gateway.as_ref().unwrap().batch_id.clone().unwrap();
    assert_eq!(batch.annotations().get(BATCH_ID_ANNOTATION), Some(&batch_id));
    assert!(batch.finalizers().iter().any(|f| f == controller::FINALIZER));

    let secret = Api::<Secret>::namespaced(s.client.clone(), &s.ns)
        .get("triage-results")
        .await
        .unwrap();
    let output = String::from_utf8(secret.data.unwrap()["output.jsonl"].0.clone()).unwrap();
    assert_eq!(output.lines().count(), 25);
    let owner = &secret.metadata.owner_references.unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Batch", "triage"));

    assert_eq!(s.count_ok("POST", "/v1/files").await, 1);
    assert_eq!(s.count_ok("POST", "/v1/batches").await, 1);
    let reasons = s.event_reasons("triage").await;
    assert!(reasons.contains(&"Succeeded".to_string()), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_controller_adopts_a_running_batch_without_submitting_twice() {
    let s = setup(
        "ctl-restart",
        SimulatorConfig {
            lines_per_sec: 40,
            ..Default::default()
        },
    )
    .await;
    s.input("input", &common::chat_lines(80)).await;
    s.batch("long", json!({})).await;
    let first = RunningController::start(&s.client, &s.ns);
    s.wait_phase("long", BatchPhase::InProgress).await;
    first.stop().await;

    let second = RunningController::start(&s.client, &s.ns);
    s.wait_phase("long", BatchPhase::Succeeded).await;
    second.stop().await;
    assert_eq!(s.count_ok("POST", "/v1/files").await, 1);
    assert_eq!(s.count_ok("POST", "/v1/batches").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_with_line_numbers_and_sends_nothing() {
    let s = setup("ctl-bad", SimulatorConfig::default()).await;
    s.input(
        "input",
        &(common::chat_lines(2) + "\nnot json\n{\"custom_id\":\"req-1\"}"),
    )
    .await;
    s.batch("broken", json!({})).await;
    let controller = RunningController::start(&s.client, &s.ns);
    let batch = s.wait_phase("broken", BatchPhase::Failed).await;
    controller.stop().await;
    let status = batch.status.unwrap();
    let admitted = status.conditions.iter().find(|c| c.type_ == "Admitted").unwrap();
    assert_eq!(admitted.reason, "InputInvalid");
    assert!(
        admitted.message.contains("line 3:") && admitted.message.contains("line 4:"),
        "{}",
        admitted.message
    );
    // Only the gateway's readiness probe (a GET) may have reached it: nothing was sent.
    let journal = s.journal().await;
    assert!(journal.iter().all(|(method, _, _)| method == "GET"), "{journal:?}");
}

/// The gateway's `maxRequestsPerBatch` bounds an input held in the cluster, as it bounds one in
/// object storage and one in `run -f`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_request_ceiling_bounds_the_input_and_nothing_is_sent() {
    let limits = json!({"maxRequestsPerBatch": 2});
    let s = setup_limited("ctl-ceiling", SimulatorConfig::default(), limits).await;
    s.input("input", &common::chat_lines(3)).await;
    s.batch("too-many", json!({})).await;
    let controller = RunningController::start(&s.client, &s.ns);
    let batch = s.wait_phase("too-many", BatchPhase::Failed).await;
    controller.stop().await;
    let status = batch.status.unwrap();
    let admitted = status.conditions.iter().find(|c| c.type_ == "Admitted").unwrap();
    assert_eq!(admitted.reason, "InputInvalid");
    assert!(
        admitted.message.contains("3 requests; the limit is 2"),
        "{}",
        admitted.message
    );
    let journal = s.journal().await;
    assert!(journal.iter().all(|(method, _, _)| method == "GET"), "{journal:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_batch_cancels_it_upstream() {
    let s = setup(
        "ctl-delete",
        SimulatorConfig {
            lines_per_sec: 10,
            ..Default::default()
        },
    )
    .await;
    s.input("input", &common::chat_lines(100)).await;
    s.batch("doomed", json!({})).await;
    let controller = RunningController::start(&s.client, &s.ns);
    s.wait_phase("doomed", BatchPhase::InProgress).await;
    s.batches().delete("doomed", &DeleteParams::default()).await.unwrap();
    s.wait_deleted("doomed", "the finalizer was never released", Duration::from_secs(60))
        .await;
    controller.stop().await;
    let journal = s.journal().await;
    assert!(
        journal
            .iter()
            .any(|(_, path, status)| path.ends_with("/cancel") && *status < 300),
        "{journal:?}"
    );
    assert!(
        journal
            .iter()
            .any(|(method, path, _)| method == "DELETE" && path.starts_with("/v1/files/")),
        "{journal:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_waits_for_its_input_and_gateway_then_runs() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "ctl-late").await;
    let s = Setup {
        client: client.clone(),
        ns: ns.clone(),
        sim: Arc::new(
            RunningSimulator::start(SimulatorConfig::default(), "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap(),
        ),
    };
    let batch: Batch = object(
        json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch", "metadata": {"name": "early"},
        "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                 "input": {"configMap": {"name": "input", "key": "batch.jsonl"}}}}),
    );
    s.batches().create(&PostParams::default(), &batch).await.unwrap();
    let controller = RunningController::start(&client, &ns);
    let waiting = wait_condition(&s, "early", "GatewayReady", "GatewayNotFound").await;
    assert!(waiting.contains("BatchGateway"), "{waiting}");

    let gateway: BatchGateway = object(
        json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway", "metadata": {"name": "gw"},
        "spec": {"url": s.sim.base_url(), "polling": {"initial": "100ms", "max": "500ms"}}}),
    );
    Api::<BatchGateway>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &gateway)
        .await
        .unwrap();
    let waiting = wait_condition(&s, "early", "Admitted", "InputNotFound").await;
    assert!(waiting.contains("ConfigMap"), "{waiting}");

    s.input("input", &common::chat_lines(5)).await;
    s.wait_phase("early", BatchPhase::Succeeded).await;
    controller.stop().await;
}

async fn wait_condition(s: &Setup, name: &str, type_: &str, reason: &str) -> String {
    let never = format!("{name} never had {type_}={reason}");
    wait_until(&never, Duration::from_secs(60), async || {
        let batch = s.batches().get(name).await.unwrap();
        let found = batch
            .status
            .iter()
            .flat_map(|st| &st.conditions)
            .find(|c| c.type_ == type_ && c.reason == reason);
        found.map(|c| c.message.clone()).ok_or(batch.status)
    })
    .await
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_true_cancels_and_keeps_what_completed() {
    let s = setup(
        "ctl-cancel",
        SimulatorConfig {
            lines_per_sec: 20,
            ..Default::default()
        },
    )
    .await;
    s.input("input", &common::chat_lines(200)).await;
    s.batch("stopme", json!({})).await;
    let controller = RunningController::start(&s.client, &s.ns);
    s.wait_phase("stopme", BatchPhase::InProgress).await;
    let patch = kube::api::Patch::Merge(json!({"spec": {"cancel": true}}));
    s.batches().patch("stopme", &Default::default(), &patch).await.unwrap();
    let batch = s.wait_phase("stopme", BatchPhase::Cancelled).await;
    controller.stop().await;
    let counts = batch.status.unwrap().request_counts.unwrap();
    assert!(counts.not_run.unwrap_or(0) > 0, "{counts:?}");
    assert_eq!(s.count_ok("POST", "/v1/batches").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_reported_and_the_batch_resumes_once_fixed() {
    let s = setup("ctl-key", SimulatorConfig::default()).await;
    let secrets = Api::<Secret>::namespaced(s.client.clone(), &s.ns);
    let wrong = kube::api::Patch::Merge(json!({"stringData": {"api-key": "sk-wrong-key-must-not-leak"}}));
    secrets.patch("gw-key", &Default::default(), &wrong).await.unwrap();
    s.input("input", &common::chat_lines(3)).await;
    s.batch("denied", json!({})).await;
    let controller = RunningController::start(&s.client, &s.ns);
    let message = wait_condition(&s, "denied", "GatewayReady", "GatewayUnauthorized").await;
    assert!(!message.contains("sk-wrong"), "{message}");
    let reasons = s.event_reasons("denied").await;
    assert!(reasons.contains(&"GatewayUnauthorized".to_string()), "{reasons:?}");

    let fixed = kube::api::Patch::Merge(json!({"stringData": {"api-key": KEY}}));
    secrets.patch("gw-key", &Default::default(), &fixed).await.unwrap();
    s.wait_phase("denied", BatchPhase::Succeeded).await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_storms_are_ridden_out() {
    let config = SimulatorConfig {
        rate_429: 0.3,
        retry_after: 0,
        rate_5xx: 0.2,
        seed: Some(11),
        ..Default::default()
    };
    let s = setup("ctl-storm", config).await;
    s.input("input", &common::chat_lines(20)).await;
    s.batch("stormy", json!({})).await;
    let controller = RunningController::start(&s.client, &s.ns);
    s.wait_phase("stormy", BatchPhase::Succeeded).await;
    controller.stop().await;
    let journal = s.journal().await;
    assert!(
        journal.iter().any(|(_, _, status)| *status == 429),
        "no 429 was injected"
    );
    assert_eq!(s.count_ok("POST", "/v1/batches").await, 1);
    assert_eq!(s.count_ok("POST", "/v1/files").await, 1);
}

/// The controller as its own ServiceAccount, bound to exactly deploy/rbac.yaml.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_needs_no_more_than_its_rbac_rules() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};

    let s = setup("ctl-rbac", SimulatorConfig::default()).await;
    let pp = PostParams::default();
    let mut role: ClusterRole = common::deploy_rbac("ClusterRole");
    let role_name = format!("llm-batch-operator-{}", s.ns);
    role.metadata.name = Some(role_name.clone());
    Api::<ClusterRole>::all(s.client.clone())
        .create(&pp, &role)
        .await
        .unwrap();
    let operator = common::apiserver::service_account_client(&s.client, &s.ns, "operator").await;
    // Bound in its namespace only: what the chart does with watchNamespaces.
    let binding: RoleBinding = object(json!({"metadata": {"name": "operator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": s.ns}]}));
    Api::<RoleBinding>::namespaced(s.client.clone(), &s.ns)
        .create(&pp, &binding)
        .await
        .unwrap();

    s.input("input", &common::chat_lines(4)).await;
    s.batch("scoped", json!({})).await;
    let controller = RunningController::start(&operator, &s.ns);
    s.wait_phase("scoped", BatchPhase::Succeeded).await;
    controller.stop().await;
    assert!(
        Api::<Secret>::namespaced(s.client.clone(), &s.ns)
            .get("scoped-results")
            .await
            .is_ok()
    );
    let reasons = s.event_reasons("scoped").await;
    assert!(reasons.contains(&"Succeeded".to_string()), "{reasons:?}");

    // The same identity may not read Secrets in bulk.
    let listed = Api::<Secret>::namespaced(operator, &s.ns)
        .list(&ListParams::default())
        .await;
    assert!(
        matches!(listed, Err(kube::Error::Api(ref e)) if e.code == 403),
        "{listed:?}"
    );
}

/// Every second status write is dropped: a step's upstream call may happen with its record
/// lost, and the next reconcile must adopt what exists instead of creating it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_status_writes_never_submit_twice() {
    let s = setup("ctl-faults", SimulatorConfig::default()).await;
    s.input("input", &common::chat_lines(10)).await;
    s.batch("flaky", json!({})).await;
    let faults = common::faults::FailSome::every_second(common::faults::status_writes);
    let faulty = faults.client(common::apiserver::server().config().await);
    let controller = RunningController::start(&faulty, &s.ns);
    s.wait_phase("flaky", BatchPhase::Succeeded).await;
    controller.stop().await;
    assert!(faults.failed() >= 2, "only {} writes were dropped", faults.failed());
    let reasons = s.event_reasons("flaky").await;
    assert!(reasons.contains(&"ReconcileError".to_string()), "{reasons:?}");
    assert_eq!(s.count_ok("POST", "/v1/files").await, 1);
    assert_eq!(s.count_ok("POST", "/v1/batches").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_with_the_same_name_and_input_in_two_namespaces_stay_apart() {
    // One gateway, one key, two namespaces.
    let a = setup("ctl-ns-a", SimulatorConfig::default()).await;
    let b = setup_on("ctl-ns-b", a.sim.clone(), json!({})).await;
    for s in [&a, &b] {
        s.input("input", &common::chat_lines(6)).await;
        s.batch("same", json!({})).await;
    }
    let (ca, cb) = (
        RunningController::start(&a.client, &a.ns),
        RunningController::start(&b.client, &b.ns),
    );
    let done_a = a.wait_phase("same", BatchPhase::Succeeded).await;
    let done_b = b.wait_phase("same", BatchPhase::Succeeded).await;
    ca.stop().await;
    cb.stop().await;
    let id = |batch: &Batch| {
        batch
            .status
            .as_ref()
            .unwrap()
            .gateway
            .as_ref()
            .unwrap()
            .batch_id
            .clone()
            .unwrap()
    };
    assert_ne!(id(&done_a), id(&done_b));
    assert_ne!(done_a.uid(), done_b.uid());
    assert_eq!(a.count_ok("POST", "/v1/batches").await, 2);
    assert_eq!(a.count_ok("POST", "/v1/files").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_is_ready_with_the_right_key_and_says_so_with_a_wrong_one() {
    let s = setup(
        "ctl-gw",
        SimulatorConfig {
            lines_per_sec: 10,
            ..Default::default()
        },
    )
    .await;
    s.input("input", &common::chat_lines(50)).await;
    s.batch("running", json!({})).await;
    let controller = RunningController::start(&s.client, &s.ns);
    let gateways = Api::<BatchGateway>::namespaced(s.client.clone(), &s.ns);
    let ready = wait_gateway(&gateways, "Ready", "True").await;
    assert_eq!(ready.reason, "Reachable");
    s.wait_phase("running", BatchPhase::InProgress).await;
    controller.stop().await;

    // A wrong key, seen by a fresh controller.
    let wrong = kube::api::Patch::Merge(json!({"stringData": {"api-key": "sk-wrong-key-must-not-leak"}}));
    Api::<Secret>::namespaced(s.client.clone(), &s.ns)
        .patch("gw-key", &Default::default(), &wrong)
        .await
        .unwrap();
    let bump = kube::api::Patch::Merge(json!({"metadata": {"labels": {"probe": "again"}}}));
    gateways.patch("gw", &Default::default(), &bump).await.unwrap();
    let controller = RunningController::start(&s.client, &s.ns);
    let refused = wait_gateway(&gateways, "Ready", "False").await;
    controller.stop().await;
    assert_eq!(refused.reason, "Unauthorized");
    assert!(!refused.message.contains("sk-wrong"), "{}", refused.message);
    let status = gateways.get("gw").await.unwrap().status.unwrap();
    assert_eq!(status.active_batches, Some(1));
}

/// The controller's own address policy refuses a gateway on loopback (a tenant's BatchGateway
/// must not reach into the machine or the cluster): the BatchGateway and the Batch say so, and
/// nothing reaches the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_on_a_refused_address_is_misconfigured_and_sent_nothing() {
    let s = setup("ctl-addr", SimulatorConfig::default()).await;
    s.input("input", &common::chat_lines(3)).await;
    s.batch("refused", json!({})).await;
    let strict = Arc::new(controller::Context::new(s.client.clone()));
    let running = RunningController::start_with(strict, &s.ns);
    let gateways = Api::<BatchGateway>::namespaced(s.client.clone(), &s.ns);
    let refused = wait_gateway(&gateways, "Ready", "False").await;
    let message = wait_condition(&s, "refused", "GatewayReady", "GatewayMisconfigured").await;
    running.stop().await;
    assert_eq!(refused.reason, "Misconfigured");
    for text in [&refused.message, &message] {
        assert!(text.contains("an address this operator does not connect to"), "{text}");
        assert!(text.contains("--allow-cidr"), "{text}");
    }
    assert_eq!(s.journal().await.len(), 0, "the refused gateway was contacted");
}

async fn wait_gateway(
    gateways: &Api<BatchGateway>,
    type_: &str,
    value: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    wait_until(
        &format!("gw never had {type_}={value}"),
        Duration::from_secs(60),
        async || {
            let gateway = gateways.get("gw").await.unwrap();
            let found = gateway
                .status
                .iter()
                .flat_map(|s| &s.conditions)
                .find(|c| c.type_ == type_ && c.status == value);
            found.cloned().ok_or(gateway.status)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_that_fits_only_compressed_is_gzipped_and_larger_output_stays_on_the_gateway() {
    let s = setup(
        "ctl-large",
        SimulatorConfig {
            lines_per_sec: 20_000,
            ..Default::default()
        },
    )
    .await;
    // ~1.6 MB of repetitive chat answers: fits a Secret only gzip-compressed.
    s.input("input", &common::chat_lines(2000)).await;
    s.batch("chatty", json!({})).await;
    // ~4 MB of embedding vectors: does not fit even compressed.
    let embeddings: String = (1..=120)
        .map(|i| format!(r#"{{"custom_id":"e-{i}","method":"POST","url":"/v1/embeddings","body":{{"model":"m","input":"text {i}","dimensions":3072}}}}"#))
        .collect::<Vec<_>>()
        .join("\n");
    let cm: ConfigMap = object(json!({"metadata": {"name": "vectors"}, "data": {"batch.jsonl": embeddings}}));
    Api::<ConfigMap>::namespaced(s.client.clone(), &s.ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    s.batch(
        "vectors",
        json!({"endpoint": "/v1/embeddings", "input": {"configMap": {"name": "vectors", "key": "batch.jsonl"}}}),
    )
    .await;
    let controller = RunningController::start(&s.client, &s.ns);
    s.wait_phase("chatty", BatchPhase::Succeeded).await;
    let large = s.wait_phase("vectors", BatchPhase::Succeeded).await;
    controller.stop().await;

    let secret = Api::<Secret>::namespaced(s.client.clone(), &s.ns)
        .get("chatty-results")
        .await
        .unwrap();
    let data = secret.data.unwrap();
    assert!(
        data.contains_key("output.jsonl.gz"),
        "{:?}",
        data.keys().collect::<Vec<_>>()
    );

    let status = large.status.unwrap();
    let stored = status.conditions.iter().find(|c| c.type_ == "OutputStored").unwrap();
    assert_eq!(
        (stored.status.as_str(), stored.reason.as_str()),
        ("False", "OutputTooLarge")
    );
    assert!(
        stored.message.contains("use a PVC or object storage"),
        "{}",
        stored.message
    );
    assert!(status.gateway.unwrap().output_file_id.is_some());
    assert!(
        Api::<Secret>::namespaced(s.client.clone(), &s.ns)
            .get_opt("vectors-results")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_batch_is_deleted_after_its_ttl() {
    let s = setup("ctl-ttl", SimulatorConfig::default()).await;
    s.input("input", &common::chat_lines(2)).await;
    s.batch("shortlived", json!({"ttlSecondsAfterFinished": 1})).await;
    let controller = RunningController::start(&s.client, &s.ns);
    // Its Succeeded may last less than a look here: the Event tells it succeeded first.
    s.wait_deleted("shortlived", "the Batch outlived its TTL", Duration::from_secs(60))
        .await;
    controller.stop().await;
    let reasons = s.event_reasons("shortlived").await;
    assert!(reasons.contains(&"Succeeded".to_string()), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_own_input_file_is_used_and_never_deleted() {
    use llm_batch_operator::gateway::{ApiKey, GatewayClient, GatewayConfig, UploadSource};
    let s = setup("ctl-fileid", SimulatorConfig::default()).await;
    let mut config = GatewayConfig::new(s.sim.base_url().parse().unwrap());
    config.api_key = Some(ApiKey::new(KEY));
    let upload = UploadSource::Bytes(common::chat_lines(3).into_bytes().into());
    let file = GatewayClient::new(config)
        .unwrap()
        .upload_file("mine.jsonl", "batch", upload)
        .await
        .unwrap();
    s.batch("theirs", json!({"input": {"fileId": file.id}})).await;
    let controller = RunningController::start(&s.client, &s.ns);
    let done = s.wait_phase("theirs", BatchPhase::Succeeded).await;
    assert_eq!(done.status.unwrap().request_counts.unwrap().completed, 3);
    s.batches().delete("theirs", &DeleteParams::default()).await.unwrap();
    s.wait_deleted("theirs", "the finalizer was never released", Duration::from_secs(30))
        .await;
    controller.stop().await;
    assert_eq!(s.count_ok("POST", "/v1/files").await, 1, "only the user's own upload");
    let journal = s.journal().await;
    assert!(!journal.iter().any(|(method, _, _)| method == "DELETE"), "{journal:?}");
}

/// About one request in eight to the API server fails (reads, writes, watches, Events alike):
/// the controller still converges, and still submits once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_api_server_still_gives_exactly_one_batch() {
    let s = setup("ctl-flaky-api", SimulatorConfig::default()).await;
    s.input("input", &common::chat_lines(5)).await;
    s.batch("shaky", json!({})).await;
    let faults = common::faults::FailSome::one_in_eight(|_| true);
    let faulty = faults.client(common::apiserver::server().config().await);
    let controller = RunningController::start(&faulty, &s.ns);
    s.wait_phase("shaky", BatchPhase::Succeeded).await;
    controller.stop().await;
    assert!(faults.failed() >= 3, "only {} requests failed", faults.failed());
    assert_eq!(s.count_ok("POST", "/v1/files").await, 1);
    assert_eq!(s.count_ok("POST", "/v1/batches").await, 1);
}

/// With kube-controller-manager running, the output Secret goes with its Batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_secret_is_garbage_collected_with_its_batch() {
    let s = setup("ctl-gc", SimulatorConfig::default()).await;
    s.input("input", &common::chat_lines(2)).await;
    s.batch("owner", json!({})).await;
    let controller = RunningController::start(&s.client, &s.ns);
    s.wait_phase("owner", BatchPhase::Succeeded).await;
    s.batches().delete("owner", &DeleteParams::default()).await.unwrap();
    let secrets = Api::<Secret>::namespaced(s.client.clone(), &s.ns);
    wait_until(
        "the output Secret outlived its Batch",
        Duration::from_secs(60),
        async || match secrets.get_opt("owner-results").await.unwrap() {
            Some(secret) => Err(secret.metadata.owner_references),
            None => Ok(()),
        },
    )
    .await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateways_status_says_whether_it_has_a_batch_api_and_which_mode_auto_picked() {
    use llm_batch_operator::api::BatchMode;
    for (no_batch_api, value, reason, mode) in [
        (true, "False", "BatchApiNotFound", BatchMode::Direct),
        (false, "True", "BatchApiFound", BatchMode::Batch),
    ] {
        let s = setup(
            "ctl-mode",
            SimulatorConfig {
                no_batch_api,
                ..Default::default()
            },
        )
        .await;
        let controller = RunningController::start(&s.client, &s.ns);
        let gateways = Api::<BatchGateway>::namespaced(s.client.clone(), &s.ns);
        let found = wait_gateway(&gateways, "BatchApi", value).await;
        assert_eq!(found.reason, reason);
        let ready = wait_gateway(&gateways, "Ready", "True").await;
        assert_eq!(ready.reason, "Reachable");
        controller.stop().await;
        let status = gateways.get("gw").await.unwrap().status.unwrap();
        let capabilities = status.capabilities.expect("status.capabilities");
        assert_eq!(capabilities.batch_api, !no_batch_api);
        assert!(capabilities.probed_at.is_some());
        assert_eq!(status.mode, Some(mode));
        assert_eq!(
            s.journal()
                .await
                .iter()
                .filter(|(m, p, _)| m == "POST" && p.contains("/v1/files"))
                .count(),
            0
        );
    }
}

/// Object storage in the cluster: the input streamed from a real S3 server (SeaweedFS, SigV4)
/// with its Secret in the Batch's namespace, results and manifest.json written under a prefix;
/// a missing object waits (Admitted=False naming it) and the Batch recovers once it appears;
/// wrong credentials name the Secret, never its values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_input_and_output_with_a_late_object_and_wrong_credentials() {
    use common::s3::{ACCESS_KEY, SECRET_KEY, SeaweedFs};

    let s3 = Arc::new(tokio::task::spawn_blocking(SeaweedFs::start).await.unwrap());
    let s = setup("ctl-s3", SimulatorConfig::default()).await;
    let pp = PostParams::default();
    for (name, secret) in [("s3", SECRET_KEY), ("s3-wrong", "wrong-secret-value-7")] {
        let secret: Secret = object(json!({"metadata": {"name": name},
            "stringData": {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": secret}}));
        Api::<Secret>::namespaced(s.client.clone(), &s.ns)
            .create(&pp, &secret)
            .await
            .unwrap();
    }
    let store = |url: &str, secret: &str| json!({"url": url, "endpoint": s3.endpoint, "secretRef": {"name": secret}});
    s.batch(
        "late",
        json!({
        "input": {"objectStore": store("s3://test/ctl/in.jsonl", "s3"), "overrides": {"customIdPrefix": "c/"}},
        "output": {"objectStore": store("s3://test/ctl/results/", "s3")}}),
    )
    .await;
    s.batch(
        "denied",
        json!({
        "input": {"objectStore": store("s3://test/ctl/in.jsonl", "s3-wrong")},
        "output": {"objectStore": store("s3://test/ctl/denied/", "s3-wrong")}}),
    )
    .await;
    let controller = RunningController::start(&s.client, &s.ns);

    let waiting = wait_condition(&s, "late", "Admitted", "InputNotFound").await;
    assert!(
        waiting.contains("object s3://test/ctl/in.jsonl does not exist"),
        "{waiting}"
    );
    let refused = wait_condition(&s, "denied", "Admitted", "InputNotFound").await;
    assert!(
        refused.contains(&format!("refused the credentials from Secret {}/s3-wrong", s.ns)),
        "{refused}"
    );
    assert!(!refused.contains("wrong-secret-value-7"), "{refused}");

    let writer = Arc::clone(&s3);
    tokio::task::spawn_blocking(move || writer.put("ctl/in.jsonl", common::chat_lines(6)))
        .await
        .unwrap();
    let done = s.wait_phase("late", BatchPhase::Succeeded).await;
    let output = done.status.unwrap().output.unwrap();
    assert_eq!(output.url.as_deref(), Some("s3://test/ctl/results/"));
    assert_eq!(output.lines, 6);
    let reader = Arc::clone(&s3);
    let (results, manifest) = tokio::task::spawn_blocking(move || {
        (
            reader.get("ctl/results/output.jsonl"),
            reader.get("ctl/results/manifest.json"),
        )
    })
    .await
    .unwrap();
    let results = String::from_utf8(results.expect("output.jsonl written")).unwrap();
    assert_eq!(results.lines().count(), 6);
    assert!(
        results.lines().all(|l| l.contains(r#""custom_id":"c/req-"#)),
        "{results}"
    );
    let manifest: Value = serde_json::from_slice(&manifest.expect("manifest.json written")).unwrap();
    assert_eq!(manifest["batch"], format!("{}/late", s.ns));
    assert_eq!(manifest["requestCounts"]["outputLines"], 6);

    let denied = s.batches().get("denied").await.unwrap();
    assert!(
        denied.status.and_then(|st| st.gateway).is_none(),
        "nothing was sent for the refused input"
    );
    controller.stop().await;
}

/// A controller without --job-image cannot write to a claim: such a Batch fails before anything
/// is sent, saying what to do (tests/it/jobs.rs runs the sink Job).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pvc_output_is_refused_clearly_before_anything_is_sent() {
    let s = setup("ctl-pvc", SimulatorConfig::default()).await;
    s.input("input", &common::chat_lines(3)).await;
    s.batch(
        "claimed",
        json!({"output": {"pvc": {"claimName": "results", "path": "out"}}}),
    )
    .await;
    let controller = RunningController::start(&s.client, &s.ns);
    let message = wait_condition(&s, "claimed", "Admitted", "SpecInvalid").await;
    assert!(message.contains("spec.output.pvc (claim results)"), "{message}");
    assert!(message.contains("--job-image"), "{message}");
    let batch = s.wait_phase("claimed", BatchPhase::Failed).await;
    assert!(batch.status.and_then(|st| st.gateway).is_none());
    controller.stop().await;
}

fn batch_id(batch: &Batch) -> String {
    batch
        .status
        .as_ref()
        .unwrap()
        .gateway
        .as_ref()
        .unwrap()
        .batch_id
        .clone()
        .unwrap()
}

/// `spec.output.secret.name` naming a Secret the Batch did not create (one controlled by
/// another object, one with no owner): neither is written, to the byte; the Batch says whose
/// Secret it is (OutputStored=False, SecretNotOwned, a Warning Event) and keeps its results on
/// the gateway, and finishes once the output is renamed or that Secret is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_batch_did_not_create_is_never_written_and_the_batch_recovers() {
    let s = setup("ctl-takeover", SimulatorConfig::default()).await;
    s.input("input", &common::chat_lines(3)).await;
    let pp = PostParams::default();
    let secrets = Api::<Secret>::namespaced(s.client.clone(), &s.ns);
    let owner = Api::<ConfigMap>::namespaced(s.client.clone(), &s.ns)
        .get("input")
        .await
        .unwrap();
    let victim: Secret = object(json!({"metadata": {"name": "victim", "labels": {"team": "payments"},
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "input",
                             "uid": owner.uid().unwrap(), "controller": true}]},
        "stringData": {"api-key": "sk-the-victims-key", "output.jsonl": "not yours"}}));
    secrets.create(&pp, &victim).await.unwrap();
    let unowned: Secret = object(json!({"metadata": {"name": "unowned"}, "stringData": {"note": "mine"}}));
    secrets.create(&pp, &unowned).await.unwrap();
    let before: Vec<Value> = vec![
        serde_json::to_value(secrets.get("victim").await.unwrap()).unwrap(),
        serde_json::to_value(secrets.get("unowned").await.unwrap()).unwrap(),
    ];
    s.batch("thief", json!({"output": {"secret": {"name": "victim"}}}))
        .await;
    s.batch("squatter", json!({"output": {"secret": {"name": "unowned"}}}))
        .await;
    let controller = RunningController::start(&s.client, &s.ns);

    let refused = wait_condition(&s, "thief", "OutputStored", "SecretNotOwned").await;
    assert!(
        refused.contains("Secret victim already exists and belongs to ConfigMap input"),
        "{refused}"
    );
    let refused = wait_condition(&s, "squatter", "OutputStored", "SecretNotOwned").await;
    assert!(
        refused.contains("Secret unowned already exists and was not created by this Batch"),
        "{refused}"
    );
    for name in ["thief", "squatter"] {
        let batch = s.batches().get(name).await.unwrap();
        let status = batch.status.unwrap();
        assert_eq!(
            status.phase,
            Some(BatchPhase::Downloading),
            "{name}: results kept on the gateway"
        );
        assert_eq!(
            status.gateway.unwrap().status.as_deref(),
            Some("completed"),
            "{name} ran to its end"
        );
        assert!(s.warnings(name).await.contains(&"SecretNotOwned".to_string()), "{name}");
    }
    let after: Vec<Value> = vec![
        serde_json::to_value(secrets.get("victim").await.unwrap()).unwrap(),
        serde_json::to_value(secrets.get("unowned").await.unwrap()).unwrap(),
    ];
    assert_eq!(after, before, "a Secret the Batch did not create was written");

    // Renamed, the output goes to a Secret of the Batch's own; deleted, the Secret is created
    // afresh (the touch wakes the Batch at once instead of at its next retry).
    let rename = kube::api::Patch::Merge(json!({"spec": {"output": {"secret": {"name": "thief-results"}}}}));
    s.batches().patch("thief", &Default::default(), &rename).await.unwrap();
    secrets.delete("unowned", &DeleteParams::default()).await.unwrap();
    let touch = kube::api::Patch::Merge(json!({"metadata": {"labels": {"retry": "now"}}}));
    s.batches()
        .patch("squatter", &Default::default(), &touch)
        .await
        .unwrap();
    for (batch, secret) in [("thief", "thief-results"), ("squatter", "unowned")] {
        let done = s.wait_phase(batch, BatchPhase::Succeeded).await;
        let stored = done
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "OutputStored")
            .unwrap();
        assert_eq!((stored.status.as_str(), stored.reason.as_str()), ("True", "Stored"));
        let written = secrets.get(secret).await.unwrap();
        assert_eq!(
            written.metadata.owner_references.unwrap()[0].uid,
            done.metadata.uid.unwrap()
        );
        assert_eq!(
            String::from_utf8(written.data.unwrap()["output.jsonl"].0.clone())
                .unwrap()
                .lines()
                .count(),
            3
        );
    }
    controller.stop().await;
    let victim = serde_json::to_value(secrets.get("victim").await.unwrap()).unwrap();
    assert_eq!(victim, before[0], "the victim Secret changed after all");
}

/// Another Batch's `llmbatch.io/batch-id` annotation copied onto a new Batch: the upstream
/// batch's metadata does not carry the new Batch's uid, so it is ignored with a Warning Event.
/// A copy deleted while the original runs cancels nothing; a copy that runs submits its own
/// batch and gets its own results, never the original's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_batch_id_annotation_is_ignored_and_that_batch_never_read_or_cancelled() {
    let s = setup(
        "ctl-copied",
        SimulatorConfig {
            lines_per_sec: 8,
            ..Default::default()
        },
    )
    .await;
    s.input("input", &common::chat_lines(80)).await;
    s.input("small", &common::chat_lines(2)).await;
    s.batch("original", json!({})).await;
    let controller = RunningController::start(&s.client, &s.ns);
    let original = s.wait_phase("original", BatchPhase::InProgress).await;
    let original_id = batch_id(&original);

    let copy = |name: &str, input: &str| -> Batch {
        object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
            "metadata": {"name": name, "annotations": {BATCH_ID_ANNOTATION: original_id}},
            "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
                     "input": {"configMap": {"name": input, "key": "batch.jsonl"}},
                     "output": {"secret": {"name": format!("{name}-results")}}}}))
    };
    // Waiting for an input that never comes, then deleted while the original runs.
    s.batches()
        .create(&PostParams::default(), &copy("waiting", "absent"))
        .await
        .unwrap();
    wait_condition(&s, "waiting", "Admitted", "InputNotFound").await;
    let waiting = s.batches().get("waiting").await.unwrap();
    assert!(
        waiting.status.unwrap().gateway.is_none(),
        "attached to the original's batch"
    );
    s.batches().delete("waiting", &DeleteParams::default()).await.unwrap();
    s.wait_deleted("waiting", "the finalizer was never released", Duration::from_secs(30))
        .await;
    assert!(
        !s.batches()
            .get("original")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .unwrap()
            .is_terminal(),
        "the original ended before the copy was deleted: the test proves nothing"
    );

    // Running: its own batch, its own results.
    s.batches()
        .create(&PostParams::default(), &copy("copy", "small"))
        .await
        .unwrap();
    let done = s.wait_phase("copy", BatchPhase::Succeeded).await;
    assert_ne!(batch_id(&done), original_id);
    assert_eq!(done.annotations().get(BATCH_ID_ANNOTATION), Some(&batch_id(&done)));
    assert_eq!(done.status.as_ref().unwrap().request_counts.as_ref().unwrap().total, 2);
    let results = Api::<Secret>::namespaced(s.client.clone(), &s.ns)
        .get("copy-results")
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(results.data.unwrap()["output.jsonl"].0.clone())
            .unwrap()
            .lines()
            .count(),
        2
    );
    for name in ["waiting", "copy"] {
        assert!(s.warnings(name).await.contains(&"ForeignBatchId".to_string()), "{name}");
    }

    let original = s.wait_phase("original", BatchPhase::Succeeded).await;
    controller.stop().await;
    assert_eq!(original.status.unwrap().request_counts.unwrap().completed, 80);
    let journal = s.journal().await;
    assert!(
        !journal
            .iter()
            .any(|(_, path, _)| path.contains(&original_id) && path.ends_with("/cancel")),
        "{journal:?}"
    );
    assert_eq!(
        s.count_ok("POST", "/v1/batches").await,
        2,
        "the original's and the copy's"
    );
}

/// A gateway whose output repeats a custom_id (tests/it/common/hostile.rs): the controller checks
/// the results against the input's ids, the Batch fails with `ResultsVerified=False`, reason
/// `DuplicateResults`, and a Warning Event, and the results are still stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_that_do_not_match_the_input_fail_the_batch_with_a_warning() {
    use common::hostile::{Hostile, Mode};
    let hostile = tokio::task::spawn_blocking(|| Hostile::start(Mode::DuplicateIds, usize::MAX))
        .await
        .unwrap();
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "ctl-liar").await;
    create_gateway(&client, &ns, &hostile.base_url, KEY, json!({})).await;
    let sim = RunningSimulator::start(SimulatorConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let s = Setup {
        client,
        ns,
        sim: Arc::new(sim),
    };
    s.input("input", &common::chat_lines(20)).await;
    s.batch("liar", json!({})).await;
    let controller = RunningController::start(&s.client, &s.ns);

    let batch = s.wait_phase("liar", BatchPhase::Failed).await;
    let status = batch.status.unwrap();
    let condition = |type_: &str| status.conditions.iter().find(|c| c.type_ == type_).cloned().unwrap();
    let verified = condition("ResultsVerified");
    assert_eq!(
        (verified.status.as_str(), verified.reason.as_str()),
        ("False", "DuplicateResults")
    );
    assert_eq!(condition("Failed").reason, "DuplicateResults");
    assert_eq!(condition("OutputStored").status, "True", "the results are kept");
    let counts = status.request_counts.unwrap();
    assert_eq!((counts.total, counts.completed, counts.failed), (20, 20, 0));
    assert_eq!(status.output.unwrap().duplicate_lines, Some(1));
    wait_until("no Warning Event", Duration::from_secs(10), async || {
        let warnings = s.warnings("liar").await;
        if warnings.iter().any(|r| r == "DuplicateResults") {
            Ok(())
        } else {
            Err(warnings)
        }
    })
    .await;
    controller.stop().await;
    tokio::task::spawn_blocking(move || drop(hostile)).await.unwrap();
}

/// A plain Batch, from creation to Succeeded: its steps with nothing upstream between them are
/// written together (at most 6 status writes, 2 patches), and the controller reads its own kinds from its
/// caches (no GET of the Batch or its gateway, no LIST but each watch's first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_batch_takes_few_status_writes_and_no_reads_of_our_kinds() {
    let s = setup("ctl-writes", SimulatorConfig::default()).await;
    s.input("input", &common::chat_lines(3)).await;
    let tally = common::requests::Tally::default();
    let client = tally.client(common::apiserver::server().config().await);
    let context = controller::Context::new(client).with_addresses(llm_batch_operator::net::AddressPolicy::local());
    let running = RunningController::start_with(Arc::new(context), &s.ns);
    s.batch("plain", json!({})).await;
    s.wait_phase("plain", BatchPhase::Succeeded).await;
    running.stop().await;
    let table = tally.table();
    println!("API requests of the controller for one Batch: {table:?}");
    let writes = tally.count("patch", "batches/status");
    assert!((1..=6).contains(&writes), "{writes} status writes: {table:?}");
    // The finalizer, and the batch-id annotation once (not again from a cache that shows the
    // status written before it but not yet the annotation).
    assert_eq!(tally.count("patch", "batches"), 2, "{table:?}");
    for (verb, resource) in [("get", "batches"), ("get", "batchgateways"), ("get", "batchsweeps")] {
        assert_eq!(tally.count(verb, resource), 0, "{verb} {resource}: {table:?}");
    }
    for resource in ["batches", "batchgateways", "batchsweeps"] {
        assert_eq!(tally.count("list", resource), 1, "list {resource}: {table:?}");
    }
    assert_eq!(tally.count("get", "configmaps"), 1, "the input is read once: {table:?}");
}

/// A Batch created before its BatchGateway, or before its input ConfigMap, starts as soon as it
/// appears: the watch of that kind wakes it (the Batch would otherwise look again after 15 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_gateway_or_input_wakes_its_batch() {
    let sim = RunningSimulator::start(
        SimulatorConfig {
            api_key: Some(KEY.into()),
            ..SimulatorConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "ctl-late").await;
    let s = Setup {
        client: client.clone(),
        ns: ns.clone(),
        sim: Arc::new(sim),
    };
    let running = RunningController::start(&client, &ns);
    s.batch("late", json!({})).await;
    wait_condition(&s, "late", "GatewayReady", "GatewayNotFound").await;
    create_gateway(&client, &ns, &s.sim.base_url(), KEY, json!({})).await;
    let started = Instant::now();
    wait_condition(&s, "late", "Admitted", "InputNotFound").await;
    let gateway_noticed = started.elapsed();
    s.input("input", &common::chat_lines(2)).await;
    let started = Instant::now();
    s.wait_phase("late", BatchPhase::Succeeded).await;
    let input_noticed = started.elapsed();
    running.stop().await;
    // Far below the 15 s a waiting Batch looks again on its own: only a wake-up explains it.
    for (what, took) in [("gateway", gateway_noticed), ("input", input_noticed)] {
        assert!(
            took < Duration::from_secs(10),
            "the late {what} was noticed after {took:?}"
        );
    }
}

/// The README's keyless cluster path: the simulator gateway example and the quickstart,
/// applied as they are (the example's simulator address moved to this test's), run to
/// Succeeded with 20 results in the quickstart's Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyless_cluster_path_runs_the_quickstart_against_the_simulator() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "keyless").await;
    let sim = RunningSimulator::start(SimulatorConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let example = std::fs::read_to_string(common::repo_path("examples/cluster/simulator-gateway.yaml")).unwrap();
    assert!(example.contains("http://127.0.0.1:8080/v1"), "the example's URL moved");
    let example = example.replace("http://127.0.0.1:8080/v1", &sim.base_url());
    let gateway: BatchGateway = serde_yaml::from_str(&example).unwrap();
    Api::<BatchGateway>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &gateway)
        .await
        .unwrap();
    for file in ["tickets.yaml", "batch.yaml"] {
        let text = std::fs::read_to_string(common::repo_path(&format!("examples/quickstart/{file}"))).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let mut value: Value = serde::Deserialize::deserialize(doc).unwrap();
            value["metadata"]["namespace"] = json!(ns);
            match value["kind"].as_str() {
                Some("ConfigMap") => {
                    let cm: ConfigMap = serde_json::from_value(value).unwrap();
                    Api::<ConfigMap>::namespaced(client.clone(), &ns)
                        .create(&PostParams::default(), &cm)
                        .await
                        .unwrap();
                }
                Some("Batch") => {
                    let batch: Batch = serde_json::from_value(value).unwrap();
                    Api::<Batch>::namespaced(client.clone(), &ns)
                        .create(&PostParams::default(), &batch)
                        .await
                        .unwrap();
                }
                other => panic!("the quickstart holds a {other:?}"),
            }
        }
    }
    let controller = RunningController::start(&client, &ns);
    let batches = Api::<Batch>::namespaced(client.clone(), &ns);
    let done = wait_until("the quickstart finished", Duration::from_secs(120), async || {
        let status = batches.get("ticket-triage").await.unwrap().status.unwrap_or_default();
        match status.phase.is_some_and(|p| p.is_terminal()) {
            true => Ok(status),
            false => Err(status.conditions),
        }
    })
    .await;
    assert_eq!(done.phase, Some(BatchPhase::Succeeded), "{:?}", done.conditions);
    assert_eq!(done.request_counts.unwrap().completed, 20);
    let secret = done.output.unwrap().secret_name.expect("the results' Secret is named");
    let results = Api::<Secret>::namespaced(client.clone(), &ns)
        .get(&secret)
        .await
        .unwrap();
    assert!(results.data.unwrap().contains_key("output.jsonl"));
    controller.stop().await;
}

/// Issue 19, stalled detection: a batch the simulator holds in `finalizing` past the gateway's
/// 1 s threshold turns `Progressing=False Stalled` (a Warning Event, and the stalled gauge
/// counts it), then recovers (`Resumed`) when it moves on, and the Batch succeeds: never fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_held_in_finalizing_is_stalled_then_resumes_and_succeeds() {
    let s = setup(
        "ctl-stalled",
        SimulatorConfig {
            finalizing_ms: 10_000,
            ..SimulatorConfig::default()
        },
    )
    .await;
    let patch = json!({"spec": {"stalledAfter": {"finalizing": "1s"}}});
    Api::<BatchGateway>::namespaced(s.client.clone(), &s.ns)
        .patch(
            "gw",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    s.input("input", &common::chat_lines(3)).await;
    s.batch("slow", json!({})).await;
    let context = Arc::new(
        llm_batch_operator::controller::Context::new(s.client.clone())
            .with_addresses(llm_batch_operator::net::AddressPolicy::local()),
    );
    let controller = RunningController::start_with(context.clone(), &s.ns);

    let message = wait_condition(&s, "slow", "Progressing", "Stalled").await;
    assert!(message.contains("finalizing") && message.contains("1s"), "{message}");
    let batch = s.batches().get("slow").await.unwrap();
    let status = batch.status.unwrap();
    assert_eq!(status.phase, Some(BatchPhase::Finalizing), "stalled is not fatal");
    assert!(status.gateway.unwrap().last_change_time.is_some());
    wait_until(
        "the stalled gauge never counted the Batch",
        Duration::from_secs(30),
        async || {
            let text = context.metrics.encode().unwrap();
            match text.contains(r#"llmbatch_batches_stalled{state="finalizing"} 1"#) {
                true => Ok(()),
                false => Err(text),
            }
        },
    )
    .await;

    let batch = s.wait_phase("slow", BatchPhase::Succeeded).await;
    let status = batch.status.unwrap();
    let progressing = status.conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("True", "Resumed")
    );
    assert_eq!(status.request_counts.unwrap().completed, 3);
    let warnings = s.warnings("slow").await;
    assert_eq!(
        warnings.iter().filter(|r| *r == "Stalled").count(),
        1,
        "one Warning per transition, not per poll: {warnings:?}"
    );
    let text = context.metrics.encode().unwrap();
    assert!(
        !text.contains(r#"llmbatch_batches_stalled{state="finalizing"} 1"#),
        "{text}"
    );
    controller.stop().await;
}
