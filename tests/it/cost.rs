//! What results cost: `run -f` against the simulator with prices (the cost in status.yaml
//! computed again here, line by line, from output.jsonl), and the controller on a real API
//! server setting a Batch's status.cost with a cluster-scoped PriceList.

use crate::common;

use std::str::FromStr;
use std::time::Duration;

use common::apiserver::{admin_client, fresh_namespace};
use common::cluster::{RunningController, create_gateway};
use common::{Simulator, Workspace, batch_manifests, gateway_manifests, object, text, wait_until};
use kube::api::{Api, Patch, PatchParams, PostParams};
use llm_batch_operator::api::{Batch, BatchGateway, BatchPhase, PriceList};
use llm_batch_operator::simulator::{RunningSimulator, SimulatorConfig};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const KEY: &str = "sk-cost-test-key";

/// Per million tokens: (input, cached input, output), as the tests' price entries say.
fn list_price(model: &str) -> Option<(Decimal, Decimal, Decimal)> {
    let d = |s: &str| Decimal::from_str(s).unwrap();
    if model.starts_with("gpt-4o-mini") {
        Some((d("0.15"), d("0.075"), d("0.60")))
    } else if model.starts_with("gpt-4o") {
        Some((d("2.50"), d("1.25"), d("10.00")))
    } else {
        None
    }
}

/// `n` chat lines alternating between `models`, each with a system prompt the simulator counts
/// as cached input.
fn mixed_lines(n: usize, models: &[&str]) -> String {
    (0..n)
        .map(|i| {
            let model = models[i % models.len()];
            json!({"custom_id": format!("q-{i}"), "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [
                {"role": "system", "content": "Classify the ticket: billing, bug, account or other. Answer in JSON."},
                {"role": "user", "content": format!("Ticket {i}: {}", "my order is late ".repeat(i % 5 + 1))},
            ]}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The cost of output lines, by model, worked out here from each line's usage (half price:
/// batch mode, the default 50% discount).
fn expected_cost(lines: &[Value]) -> (Decimal, std::collections::BTreeMap<String, Decimal>) {
    let mut by_model = std::collections::BTreeMap::new();
    for line in lines {
        let body = &line["response"]["body"];
        let model = body["model"].as_str().unwrap();
        let usage = &body["usage"];
        let input = Decimal::from(usage["prompt_tokens"].as_u64().unwrap());
        let cached = Decimal::from(usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap());
        let output = Decimal::from(usage["completion_tokens"].as_u64().unwrap());
        let (p_in, p_cached, p_out) = list_price(model).unwrap();
        let cost = ((input - cached) * p_in + cached * p_cached + output * p_out) / Decimal::from(1_000_000)
            * Decimal::from_str("0.5").unwrap();
        *by_model.entry(model.to_string()).or_insert(Decimal::ZERO) += cost;
    }
    (by_model.values().copied().sum(), by_model)
}

fn decimal(value: &serde_yaml::Value) -> Decimal {
    Decimal::from_str(value.as_str().unwrap()).unwrap()
}

const PRICE_LIST: &str = "apiVersion: llmbatch.io/v1alpha1\nkind: PriceList\nmetadata:\n  name: shared\nspec:\n  \
    models:\n    - {model: gpt-4o-mini, inputPerMillion: \"0.15\", cachedInputPerMillion: \"0.075\", outputPerMillion: \"0.60\"}\n    \
    - {model: gpt-4o, inputPerMillion: \"9\", outputPerMillion: \"9\"}\n";

/// The gateway's pricing: the PriceList, and an inline gpt-4o entry replacing the list's.
const PRICING: &str = "  pricing:\n    priceListRef: {name: shared}\n    models:\n      \
    - {model: gpt-4o, inputPerMillion: \"2.50\", cachedInputPerMillion: \"1.25\", outputPerMillion: \"10.00\"}\n";

fn priced_gateway(url: &str) -> String {
    gateway_manifests(url, KEY, &[]).replacen("---\n", &format!("{PRICING}---\n"), 1)
}

#[test]
fn run_f_writes_the_cost_of_a_two_model_batch_line_by_line_exact() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    ws.write(
        "batch.yaml",
        &batch_manifests("mixed", &mixed_lines(24, &["gpt-4o-mini", "gpt-4o"]), ""),
    );
    ws.write("gateway.yaml", &priced_gateway(&sim.base_url));
    ws.write("prices.yaml", PRICE_LIST);
    let output = ws.run(&["batch.yaml", "gateway.yaml", "prices.yaml"]);
    assert!(output.status.success(), "{}", text(&output));

    let lines = ws.lines("mixed", "output.jsonl");
    assert_eq!(lines.len(), 24);
    let (total, by_model) = expected_cost(&lines);
    let status = ws.status_yaml("mixed");
    let cost = &status["cost"];
    assert_eq!(cost["currency"], "USD");
    assert_eq!(decimal(&cost["actual"]), total, "{cost:?}");
    assert!(total > Decimal::ZERO);
    let listed: Vec<(String, Decimal)> = cost["byModel"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| (m["model"].as_str().unwrap().to_string(), decimal(&m["actual"])))
        .collect();
    assert_eq!(listed, by_model.into_iter().collect::<Vec<_>>(), "split by model");
    assert_eq!(cost["byModel"][1]["pricedAs"], "gpt-4o-mini (PriceList shared)");
    assert_eq!(
        cost["byModel"][0]["pricedAs"], "gpt-4o (spec.pricing)",
        "inline replaces the list"
    );
    assert!(cost["unpriced"].is_null());

    let usage = &status["usage"]["byModel"];
    for (i, model) in ["gpt-4o", "gpt-4o-mini"].into_iter().enumerate() {
        assert_eq!(usage[i]["model"], model);
        assert_eq!(usage[i]["requests"], 12);
        assert!(usage[i]["cachedInputTokens"].as_u64().unwrap() > 0, "{usage:?}");
    }
    let priced = status["conditions"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Priced")
        .unwrap();
    assert_eq!(
        (priced["status"].as_str(), priced["reason"].as_str()),
        (Some("True"), Some("Priced"))
    );
    let said = text(&output);
    let line = format!(
        "default/mixed: cost {} (exact {}",
        cost["display"].as_str().unwrap(),
        cost["actual"].as_str().unwrap()
    );
    assert!(said.contains(&line), "{said}");
}

#[test]
fn run_f_names_models_without_a_price_and_a_price_list_not_in_the_files() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    ws.write(
        "batch.yaml",
        &batch_manifests("partly", &mixed_lines(6, &["gpt-4o-mini", "llama-3-8b"]), ""),
    );
    ws.write("gateway.yaml", &priced_gateway(&sim.base_url));
    let missing = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        text(&missing).contains("spec.pricing.priceListRef: PriceList shared is not in the files given"),
        "{}",
        text(&missing)
    );
    assert!(sim.journal().is_empty(), "nothing was sent");

    ws.write("prices.yaml", PRICE_LIST);
    let output = ws.run(&["batch.yaml", "gateway.yaml", "prices.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    let status = ws.status_yaml("partly");
    let priced_lines: Vec<Value> = ws
        .lines("partly", "output.jsonl")
        .into_iter()
        .filter(|l| l["response"]["body"]["model"] != "llama-3-8b")
        .collect();
    assert_eq!(decimal(&status["cost"]["actual"]), expected_cost(&priced_lines).0);
    assert_eq!(status["cost"]["unpriced"][0], "llama-3-8b");
    assert!(status["cost"]["display"].as_str().unwrap().ends_with("USD + unpriced"));
    let priced = status["conditions"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Priced")
        .unwrap();
    assert_eq!(priced["status"], "False");
    assert_eq!(priced["reason"], "UnpricedModels");
    assert!(priced["message"].as_str().unwrap().contains("llama-3-8b"), "{priced:?}");
    assert!(text(&output).contains("no price for llama-3-8b"), "{}", text(&output));
}

/// The controller reads the gateway's PriceList (cluster-scoped) when the results are counted,
/// and the Batch's status.cost is what its usage costs, model by model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_sets_a_batchs_cost_from_its_gateways_price_list() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "ctl-cost").await;
    let config = SimulatorConfig {
        api_key: Some(KEY.into()),
        ..Default::default()
    };
    let sim = RunningSimulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    create_gateway(&client, &ns, &sim.base_url(), KEY, json!({})).await;
    let list_name = format!("prices-{ns}");
    let list: PriceList = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "PriceList",
        "metadata": {"name": list_name},
        "spec": {"source": "test figures", "models": [
            {"model": "gpt-4o-mini", "inputPerMillion": "0.15", "cachedInputPerMillion": "0.075", "outputPerMillion": "0.60"},
            {"model": "gpt-4o*", "inputPerMillion": "2.50", "cachedInputPerMillion": "1.25", "outputPerMillion": "10.00"}]}}));
    Api::<PriceList>::all(client.clone())
        .create(&PostParams::default(), &list)
        .await
        .unwrap();
    let pricing = json!({"spec": {"pricing": {"priceListRef": {"name": list_name}}}});
    Api::<BatchGateway>::namespaced(client.clone(), &ns)
        .patch("gw", &PatchParams::default(), &Patch::Merge(&pricing))
        .await
        .unwrap();
    let cm: k8s_openapi::api::core::v1::ConfigMap = object(json!({"metadata": {"name": "input"},
        "data": {"batch.jsonl": mixed_lines(10, &["gpt-4o-mini", "gpt-4o"])}}));
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let batch: Batch = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
        "metadata": {"name": "priced"},
        "spec": {"gatewayRef": {"name": "gw"}, "endpoint": "/v1/chat/completions",
            "input": {"configMap": {"name": "input", "key": "batch.jsonl"}}}}));
    let batches = Api::<Batch>::namespaced(client.clone(), &ns);
    batches.create(&PostParams::default(), &batch).await.unwrap();

    let controller = RunningController::start(&client, &ns);
    let done = wait_until("priced never succeeded", Duration::from_secs(60), async || {
        let batch = batches.get("priced").await.unwrap();
        match batch.status.as_ref().and_then(|s| s.phase) {
            Some(BatchPhase::Succeeded) => Ok(batch),
            _ => Err(batch.status),
        }
    })
    .await;
    controller.stop().await;

    let status = done.status.unwrap();
    let cost = status.cost.expect("status.cost is set");
    let usage = status.usage.unwrap();
    let mut expected = Decimal::ZERO;
    for model in &usage.by_model {
        let (p_in, p_cached, p_out) = list_price(&model.model).unwrap();
        let (input, cached) = (
            Decimal::from(model.input_tokens),
            Decimal::from(model.cached_input_tokens),
        );
        let part = ((input - cached) * p_in + cached * p_cached + Decimal::from(model.output_tokens) * p_out)
            / Decimal::from(1_000_000)
            / Decimal::from(2);
        let listed = cost.by_model.iter().find(|m| m.model == model.model).unwrap();
        assert_eq!(Decimal::from_str(&listed.actual).unwrap(), part, "{}", model.model);
        expected += part;
    }
    assert_eq!(usage.by_model.len(), 2);
    assert_eq!(Decimal::from_str(&cost.actual).unwrap(), expected);
    assert!(cost.unpriced.is_empty() && cost.display.ends_with(" USD"), "{cost:?}");
    let priced = status.conditions.iter().find(|c| c.type_ == "Priced").unwrap();
    assert_eq!((priced.status.as_str(), priced.reason.as_str()), ("True", "Priced"));
    Api::<PriceList>::all(client)
        .delete(&list_name, &Default::default())
        .await
        .unwrap();
}

#[test]
fn a_sweeps_cost_is_its_childrens_with_every_retry_once() {
    // Every batch expires after half its lines: each chunk runs twice (the follow-up takes the
    // expired lines), and both attempts were spent.
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    let indented: String = mixed_lines(40, &["gpt-4o-mini", "gpt-4o"])
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    ws.write(
        "sweep.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: corpus\ndata:\n  batch.jsonl: |\n{indented}---\n\
             apiVersion: llmbatch.io/v1alpha1\nkind: BatchSweep\nmetadata:\n  name: corpus\nspec:\n  input:\n    configMap:\n      \
             name: corpus\n      key: batch.jsonl\n  chunk:\n    maxRequests: 20\n  template:\n    gatewayRef:\n      name: gw\n    \
             endpoint: /v1/chat/completions\n  parallelism: 2\n  maxFailedBatches: 10\n  retry:\n    maxAttempts: 2\n"
        ),
    );
    let gateway = gateway_manifests(&sim.base_url, KEY, &[("x-sim-expire", "true")]);
    ws.write(
        "gateway.yaml",
        &gateway.replacen("---\n", &format!("{PRICING}---\n"), 1),
    );
    ws.write("prices.yaml", PRICE_LIST);
    let output = ws.run(&["sweep.yaml", "gateway.yaml", "prices.yaml"]);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", text(&output));

    let (mut total, mut by_chunk) = (Decimal::ZERO, Vec::new());
    for chunk in 0..2 {
        let mut chunk_cost = Decimal::ZERO;
        for name in [format!("corpus-c{chunk:04}"), format!("corpus-c{chunk:04}-r1")] {
            let lines = ws.lines(&name, "output.jsonl");
            assert!(!lines.is_empty(), "{name} ran");
            let own = decimal(&ws.status_yaml(&name)["cost"]["actual"]);
            assert_eq!(own, expected_cost(&lines).0, "{name}");
            chunk_cost += own;
        }
        total += chunk_cost;
        by_chunk.push(chunk_cost);
    }
    let status = ws.status_yaml("corpus");
    assert_eq!(decimal(&status["cost"]["actual"]), total, "{:?}", status["cost"]);
    let summary: Value =
        serde_json::from_slice(&std::fs::read(ws.out("corpus").join("summary.json")).unwrap()).unwrap();
    let amount = |v: &Value| Decimal::from_str(v.as_str().unwrap()).unwrap();
    assert_eq!(amount(&summary["cost"]["actual"]), total);
    assert_eq!(amount(&summary["byChunk"]["0"]["cost"]["actual"]), by_chunk[0]);
    assert_eq!(amount(&summary["children"][1]["cost"]["actual"]), by_chunk[1]);
    let models: Vec<&str> = summary["cost"]["byModel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["gpt-4o", "gpt-4o-mini"]);
    assert!(text(&output).contains("default/corpus: cost "), "{}", text(&output));
}
