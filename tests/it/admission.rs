//! Admission on a gateway's budget (maxActiveBatches, tokensPerHour) and requeue after the
//! gateway's enqueued-token limit: in the controller against a real kube-apiserver, and in
//! `run -f`. What the gateway saw is read from the simulator's own batch records.

use crate::common;
use common::wait_until;

use std::time::Duration;

use common::cluster::{RunningController, gateway_on_simulator};
use common::object;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use llm_batch_operator::api::{Batch, BatchGateway, BatchPhase};
use llm_batch_operator::simulator::SimulatorConfig;
use serde_json::{Value, json};

const KEY: &str = "sk-admission-test";

/// The simulator's batches (its own record), oldest first.
async fn upstream_batches(base_url: &str) -> Vec<Value> {
    let page = common::cluster::simulator_json(base_url, "/batches?limit=100", KEY).await;
    let mut batches = page["data"].as_array().unwrap().clone();
    batches.sort_by_key(|b| b["created_at"].as_u64().unwrap());
    batches
}

/// Each batch was created only once the one before it had finished (one in flight at a time).
fn assert_one_at_a_time(batches: &[Value]) {
    for pair in batches.windows(2) {
        let ended = ["completed_at", "failed_at", "expired_at", "cancelled_at"]
            .iter()
            .find_map(|k| pair[0][*k].as_u64())
            .expect("the earlier batch finished");
        let next = pair[1]["created_at"].as_u64().unwrap();
        assert!(
            next >= ended,
            "{} created at {next} before {} ended at {ended}",
            pair[1]["id"],
            pair[0]["id"]
        );
    }
}

async fn create_batches(client: &Client, ns: &str, names: &[&str], lines: usize) {
    let cm: ConfigMap =
        object(json!({"metadata": {"name": "input"}, "data": {"batch.jsonl": common::chat_lines(lines)}}));
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    for name in names {
        common::operations::create_batch(client, ns, name).await;
    }
}

/// Waits (bounded) for every Batch to succeed; returns the reasons of every Admitted
/// condition seen meanwhile, per Batch.
async fn run_to_success(client: &Client, ns: &str, names: &[&str]) -> Vec<(String, String)> {
    let api = Api::<Batch>::namespaced(client.clone(), ns);
    let mut seen = Vec::new();
    wait_until("not all Succeeded", Duration::from_secs(120), async || {
        let mut done = 0;
        for name in names {
            let batch = api.get(name).await.unwrap();
            let status = batch.status.unwrap_or_default();
            if let Some(c) = status.conditions.iter().find(|c| c.type_ == "Admitted") {
                let entry = (name.to_string(), c.reason.clone());
                if !seen.contains(&entry) {
                    seen.push(entry);
                }
            }
            assert_ne!(
                status.phase,
                Some(BatchPhase::Failed),
                "{name}: {:?}",
                status.conditions
            );
            done += usize::from(status.phase == Some(BatchPhase::Succeeded));
        }
        if done == names.len() { Ok(()) } else { Err(seen.clone()) }
    })
    .await;
    seen
}

/// maxActiveBatches 1: three Batches run one at a time, in order of creation, the waiting ones
/// saying so (Admitted=False, GatewayBudget); the gateway's status counts the tokens admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_batches_runs_batches_one_at_a_time_in_order() {
    let config = SimulatorConfig {
        lines_per_sec: 8,
        ..Default::default()
    };
    let (client, ns, sim) = gateway_on_simulator("adm-active", config, KEY, json!({"maxActiveBatches": 1})).await;
    let names = ["first", "second", "third"];
    create_batches(&client, &ns, &names, 8).await;
    let controller = RunningController::start(&client, &ns);
    let seen = run_to_success(&client, &ns, &names).await;

    assert!(
        seen.iter().any(|(_, reason)| reason == "GatewayBudget"),
        "nobody waited: {seen:?}"
    );
    let batches = upstream_batches(&sim.base_url()).await;
    assert_eq!(batches.len(), 3);
    assert_one_at_a_time(&batches);
    let order: Vec<String> = batches
        .iter()
        .map(|b| {
            b["metadata"]["llmbatch.io/object"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        order,
        names.map(|n| format!("{ns}/{n}")),
        "admitted in order of creation"
    );

    // The gateway's status, refreshed by touching it: nothing active, all tokens admitted.
    let api = Api::<Batch>::namespaced(client.clone(), &ns);
    let mut tokens = 0;
    for name in names {
        let status = api.get(name).await.unwrap().status.unwrap();
        tokens += status.input.unwrap().estimated_tokens.unwrap();
        assert!(status.admission.unwrap().admitted_time.is_some());
    }
    let gateways = Api::<BatchGateway>::namespaced(client.clone(), &ns);
    let touch = json!({"metadata": {"annotations": {"test/touch": "1"}}});
    gateways
        .patch("gw", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    let status = wait_until(
        &format!("the gateway never had {tokens} tokens and no active batch"),
        Duration::from_secs(30),
        async || {
            let status = gateways.get("gw").await.unwrap().status.unwrap_or_default();
            let settled = status.admitted_tokens == Some(tokens) && status.active_batches == Some(0);
            if settled { Ok(status) } else { Err(status) }
        },
    )
    .await;
    assert_eq!(status.waiting_batches, Some(0));
    controller.stop().await;
}

/// A batch the gateway refuses for its enqueued-token limit goes back to the queue (not Failed),
/// waits its backoff, and is created again reusing its upload once the other batch is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_for_the_enqueued_token_limit_is_requeued_and_succeeds() {
    let input_tokens = (common::chat_lines(8).len() as u64).div_ceil(4);
    let config = SimulatorConfig {
        lines_per_sec: 4,
        enqueued_token_limit: Some(input_tokens + input_tokens / 2),
        ..Default::default()
    };
    let (client, ns, sim) = gateway_on_simulator("adm-requeue", config, KEY, json!({})).await;
    let names = ["left", "right"];
    create_batches(&client, &ns, &names, 8).await;
    let controller = RunningController::start(&client, &ns);
    let seen = run_to_success(&client, &ns, &names).await;
    controller.stop().await;

    assert!(seen.iter().any(|(_, reason)| reason == "GatewayBudget"), "{seen:?}");
    let api = Api::<Batch>::namespaced(client.clone(), &ns);
    let mut requeues = 0;
    for name in names {
        requeues += api
            .get(name)
            .await
            .unwrap()
            .status
            .unwrap()
            .admission
            .unwrap_or_default()
            .requeues;
    }
    assert!(requeues >= 1, "one batch was sent back");
    let batches = upstream_batches(&sim.base_url()).await;
    let refused: Vec<&Value> = batches.iter().filter(|b| b["status"] == "failed").collect();
    assert_eq!(refused.len() as u32, requeues);
    assert!(
        refused
            .iter()
            .all(|b| b["errors"]["data"][0]["code"] == "token_limit_exceeded")
    );
    let uploads = batches
        .iter()
        .map(|b| b["input_file_id"].as_str().unwrap())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        uploads.len(),
        2,
        "the refused batch's input was reused, not uploaded again"
    );
}

/// `run -f` holds a gateway's maxActiveBatches across the Batches of one run.
#[test]
fn run_f_holds_max_active_batches_across_its_batches() {
    let sim = common::Simulator::start(&["--api-key", KEY, "--lines-per-sec", "8"]);
    let ws = common::Workspace::new();
    let gateway = format!(
        "apiVersion: llmbatch.io/v1alpha1\nkind: BatchGateway\nmetadata:\n  name: gw\nspec:\n  url: {}\n  \
         auth:\n    secretRef:\n      name: gw-key\n      key: api-key\n  polling:\n    initial: 100ms\n    max: 300ms\n  \
         limits:\n    maxActiveBatches: 1\n    tokensPerHour: 100000\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: gw-key\nstringData:\n  api-key: {KEY}\n",
        sim.base_url
    );
    ws.write("gateway.yaml", &gateway);
    let mut files = vec!["gateway.yaml".to_string()];
    for name in ["one", "two", "three"] {
        let file = format!("{name}.yaml");
        ws.write(&file, &common::batch_manifests(name, &common::chat_lines(8), ""));
        files.push(file);
    }
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let output = ws.run(&files);
    assert!(output.status.success(), "{}", common::text(&output));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let batches = runtime.block_on(upstream_batches(&sim.base_url));
    assert_eq!(batches.len(), 3);
    assert_one_at_a_time(&batches);
    for name in ["one", "two", "three"] {
        let status = ws.status_yaml(name);
        assert!(status["admission"]["admittedTime"].is_string(), "{status:?}");
        assert!(status["input"]["estimatedTokens"].as_u64().unwrap() > 0);
    }
}
