//! A money budget on the gateway (`spec.limits.budget`) and the token estimates it admits on:
//! the controller on a real API server holding the Batch the budget has no room for and
//! admitting it once the budget is raised, and `run -f` ending a Batch the budget holds back.
//!
//! Every amount the tests choose comes from the estimates the Batches' statuses show (read in a
//! first pass on a gateway whose budget admits nothing, so nothing is sent), never from token
//! counts worked out here. The prices are easy: 1 per million input and output tokens, no batch
//! discount, so an estimate is its tokens over a million (the last test prices its own way).

use crate::common;

use std::str::FromStr;
use std::time::Duration;

use common::apiserver::{admin_client, fresh_namespace};
use common::cluster::{RunningController, create_input, simulator_json};
use common::{Simulator, Workspace, batch_manifests, condition, object, text, wait_until};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use llm_batch_operator::api::{Batch, BatchGateway, BatchPhase, BatchStatus, GatewaySpend};
use llm_batch_operator::simulator::{RunningSimulator, SimulatorConfig};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const KEY: &str = "sk-budget-test-key";
/// A budget no estimate fits: every Batch on it fails before anything is sent, its estimate
/// in its status.
const NOTHING_FITS: &str = "0.000000001";

/// `n` chat lines for gpt-4o-mini, each allowed `max_tokens` output tokens.
fn lines(n: usize, max_tokens: u64) -> String {
    (1..=n)
        .map(|i| {
            json!({"custom_id": format!("req-{i}"), "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": format!("Ticket number {i}: my order is late")}]}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not a decimal: {e}"))
}

/// The spec.pricing of every gateway here: 1 per million tokens, in and out, no discount.
fn pricing() -> Value {
    json!({"batchDiscount": "0%", "models": [
        {"model": "gpt-4o-mini", "inputPerMillion": "1", "outputPerMillion": "1"}]})
}

// ---------------------------------------------------------------------------------------------
// The controller, on the real API server.

/// BatchGateway `name` in `ns` on `url` (key in Secret `gw-key`), priced, with `budget`.
async fn create_priced_gateway(client: &Client, ns: &str, name: &str, url: &str, budget: &str) {
    let gateway: BatchGateway = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway",
        "metadata": {"name": name},
        "spec": {"url": url, "auth": {"secretRef": {"name": "gw-key", "key": "api-key"}},
                 "polling": {"initial": "100ms", "max": "500ms"},
                 "pricing": pricing(),
                 "limits": {"budget": {"amount": budget, "window": "24h"}}}}));
    Api::<BatchGateway>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &gateway)
        .await
        .unwrap();
}

/// Batch `name` on gateway `gateway` reading ConfigMap `input`.
async fn create_batch(client: &Client, ns: &str, name: &str, gateway: &str, input: &str) {
    let batch: Batch = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "Batch",
        "metadata": {"name": name},
        "spec": {"gatewayRef": {"name": gateway}, "endpoint": "/v1/chat/completions",
                 "input": {"configMap": {"name": input, "key": "batch.jsonl"}}}}));
    Api::<Batch>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &batch)
        .await
        .unwrap();
}

/// Waits (bounded) until Batch `name` satisfies `check`, and returns its status.
async fn wait_status(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&BatchStatus) -> bool,
) -> BatchStatus {
    let api = Api::<Batch>::namespaced(client.clone(), ns);
    wait_until(
        &format!("{ns}/{name} never {what}"),
        Duration::from_secs(90),
        async || {
            let status = api.get(name).await.unwrap().status.unwrap_or_default();
            if check(&status) { Ok(status) } else { Err(status) }
        },
    )
    .await
}

fn admitted(status: &BatchStatus) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == "Admitted")
}

fn succeeded(status: &BatchStatus) -> bool {
    assert_ne!(status.phase, Some(BatchPhase::Failed), "{:?}", status.conditions);
    status.phase == Some(BatchPhase::Succeeded)
}

/// The gateway's status.spend once it shows `check`, touching the gateway about once a
/// second (a reconcile of its own writes it).
async fn wait_spend(client: &Client, ns: &str, name: &str, check: impl Fn(&GatewaySpend) -> bool) -> GatewaySpend {
    let gateways = Api::<BatchGateway>::namespaced(client.clone(), ns);
    let mut polls = 0;
    wait_until(
        &format!("BatchGateway {name}'s status.spend never settled"),
        Duration::from_secs(60),
        async || {
            let spend = gateways.get(name).await.unwrap().status.unwrap_or_default().spend;
            if let Some(spend) = spend.as_ref().filter(|s| check(s)) {
                return Ok(spend.clone());
            }
            if polls % 20 == 0 {
                let touch = json!({"metadata": {"annotations": {"test/touch": polls.to_string()}}});
                gateways
                    .patch(name, &PatchParams::default(), &Patch::Merge(&touch))
                    .await
                    .unwrap();
            }
            polls += 1;
            Err(spend)
        },
    )
    .await
}

/// The gateway's status.spend as a reconcile after this call computes it: the spec is changed
/// (a slower poll) and the status read once it has observed that generation.
async fn spend_now(client: &Client, ns: &str, name: &str) -> Option<GatewaySpend> {
    let gateways = Api::<BatchGateway>::namespaced(client.clone(), ns);
    let patch = json!({"spec": {"polling": {"max": "400ms"}}});
    let generation = gateways
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap()
        .metadata
        .generation;
    wait_until(
        &format!("BatchGateway {name} never observed generation {generation:?}"),
        Duration::from_secs(60),
        async || {
            let status = gateways.get(name).await.unwrap().status.unwrap_or_default();
            if status.observed_generation == generation {
                Ok(status.spend)
            } else {
                Err(status)
            }
        },
    )
    .await
}

/// Three Batches on a gateway whose budget fits the estimates of the first two: the two run,
/// the third waits (Admitted=False, BudgetExhausted, saying the spend and the budget) and is
/// never sent; raising the budget admits it. The third's estimate is the whole budget, so
/// whatever the first two really cost (above zero), it cannot fit beside them: the hold does
/// not depend on when they finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_fits_two_batches_holds_the_third_until_it_is_raised() {
    let client = admin_client().await;
    let ns = fresh_namespace(&client, "budget").await;
    let config = SimulatorConfig {
        api_key: Some(KEY.into()),
        ..Default::default()
    };
    let sim = RunningSimulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let secret: Secret = object(json!({"metadata": {"name": "gw-key"}, "stringData": {"api-key": KEY}}));
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // The third's input: twice the lines of the others, each allowed twice the output.
    create_input(&client, &ns, "small", &lines(3, 50)).await;
    create_input(&client, &ns, "large", &lines(6, 100)).await;
    let controller = RunningController::start(&client, &ns);

    // First pass: the same inputs on a gateway whose budget admits nothing, for their estimates.
    create_priced_gateway(&client, &ns, "probe", &sim.base_url(), NOTHING_FITS).await;
    let mut estimates = Vec::new();
    for (name, input) in [("probe-small", "small"), ("probe-large", "large")] {
        create_batch(&client, &ns, name, "probe", input).await;
        let status = wait_status(&client, &ns, name, "Failed", |s| s.phase == Some(BatchPhase::Failed)).await;
        let estimated = decimal(status.cost.as_ref().unwrap().estimated.as_ref().unwrap());
        let failed = status.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
        assert_eq!(failed.reason, "SpecInvalid");
        assert!(
            failed.message.contains(&format!(
                "estimated at {estimated} USD, more than the gateway's budget of {NOTHING_FITS} USD per 24h"
            )),
            "{failed:?}"
        );
        estimates.push(estimated);
    }
    let (small, large) = (estimates[0], estimates[1]);
    assert!(
        large > small + small,
        "the third alone outweighs the first two: {large} vs {small}"
    );
    // Nothing was admitted on the probe, so nothing was spent there.
    let probe = spend_now(&client, &ns, "probe").await.expect("status.spend");
    assert_eq!(
        (probe.spent.as_str(), probe.committed.as_str(), probe.budget.as_str()),
        ("0", "0", NOTHING_FITS),
        "Batches refused before anything was sent spent nothing: {probe:?}"
    );
    assert!(
        simulator_json(&sim.base_url(), "/batches?limit=100", KEY).await["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The budget is the third's estimate: first and second (2 × small < large) fit, the third
    // fits only alone.
    let budget = large.normalize().to_string();
    create_priced_gateway(&client, &ns, "gw", &sim.base_url(), &budget).await;
    for (name, input) in [("first", "small"), ("second", "small"), ("third", "large")] {
        create_batch(&client, &ns, name, "gw", input).await;
    }
    let mut actual = Decimal::ZERO;
    for name in ["first", "second"] {
        let status = wait_status(&client, &ns, name, "Succeeded", succeeded).await;
        let cost = status.cost.unwrap();
        assert_eq!(
            decimal(cost.estimated.as_ref().unwrap()),
            small,
            "{name}: the same input estimates the same"
        );
        let own = decimal(&cost.actual);
        assert!(
            own > Decimal::ZERO && own <= small,
            "{name}: actual {own}, estimated {small}"
        );
        actual += own;
    }
    // Once the two have finished, the third waits on what they really cost plus its own estimate.
    let held = format!(
        "budget exhausted: {} USD spent in the last 24h and 0 USD estimated for 0 running Batch(es), of {budget} USD; \
         this Batch is estimated at {budget} USD; room frees up at ",
        actual.normalize()
    );
    let status = wait_status(&client, &ns, "third", "held for the budget", |s| {
        admitted(s).is_some_and(|c| c.reason == "BudgetExhausted" && c.message.starts_with(&held))
    })
    .await;
    assert_eq!(admitted(&status).unwrap().status, "False");
    assert_eq!(status.phase, Some(BatchPhase::Pending));
    assert!(status.admission.unwrap_or_default().admitted_time.is_none());
    assert!(
        status.gateway.unwrap_or_default().batch_id.is_none(),
        "nothing was sent"
    );
    let upstream = simulator_json(&sim.base_url(), "/batches?limit=100", KEY).await;
    let sent: Vec<&str> = upstream["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["metadata"]["llmbatch.io/object"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(sent.len(), 2, "only first and second reached the gateway: {sent:?}");
    assert!(sent.iter().all(|o| !o.ends_with("/third")), "{sent:?}");

    let spend = wait_spend(&client, &ns, "gw", |s| {
        decimal(&s.spent) == actual && s.committed == "0"
    })
    .await;
    assert_eq!(
        spend,
        GatewaySpend {
            window: "24h".into(),
            spent: actual.normalize().to_string(),
            committed: "0".into(),
            budget: budget.clone(),
            currency: "USD".into(),
        }
    );

    // Room for the third beside what the first two spent.
    let raised = (actual + large).normalize().to_string();
    let patch = json!({"spec": {"limits": {"budget": {"amount": raised, "window": "24h"}}}});
    Api::<BatchGateway>::namespaced(client.clone(), &ns)
        .patch("gw", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let status = wait_status(&client, &ns, "third", "Succeeded", succeeded).await;
    assert_eq!(admitted(&status).unwrap().status, "True", "{:?}", status.conditions);
    let cost = status.cost.unwrap();
    assert_eq!(decimal(cost.estimated.as_ref().unwrap()), large);
    let third = decimal(&cost.actual);
    assert!(
        third > Decimal::ZERO && third <= large,
        "actual {third}, estimated {large}"
    );
    let spend = wait_spend(&client, &ns, "gw", |s| decimal(&s.spent) == actual + third).await;
    assert_eq!(
        (spend.committed.as_str(), spend.budget.as_str(), spend.currency.as_str()),
        ("0", raised.as_str(), "USD")
    );
    assert!(decimal(&spend.spent) <= decimal(&raised), "{spend:?}");
    controller.stop().await;
}

// ---------------------------------------------------------------------------------------------
// `run -f`, against the simulator binary.

/// The spec.pricing of the `run -f` gateways: [`pricing`] as YAML.
const PRICING_YAML: &str = "  pricing:\n    batchDiscount: \"0%\"\n    models:\n      \
    - {model: gpt-4o-mini, inputPerMillion: \"1\", outputPerMillion: \"1\"}\n";

/// BatchGateway `gw` at `url` with `pricing` (YAML under `spec`) and a money `budget` over
/// 24h, and its key.
fn budget_gateway(url: &str, pricing: &str, budget: &str) -> String {
    format!(
        "apiVersion: llmbatch.io/v1alpha1\nkind: BatchGateway\nmetadata:\n  name: gw\nspec:\n  url: {url}\n  \
         auth:\n    secretRef:\n      name: gw-key\n      key: api-key\n  polling:\n    initial: 100ms\n    max: 300ms\n\
         {pricing}  limits:\n    budget:\n      amount: \"{budget}\"\n      window: 24h\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: gw-key\nstringData:\n  api-key: {KEY}\n"
    )
}

/// Writes the gateway (`budget`) and one file per `(name, jsonl)` Batch, runs them in that
/// order, and returns the output.
fn run_batches(ws: &Workspace, url: &str, budget: &str, batches: &[(&str, &str)]) -> std::process::Output {
    ws.write("gateway.yaml", &budget_gateway(url, PRICING_YAML, budget));
    let mut files = vec!["gateway.yaml".to_string()];
    for (name, jsonl) in batches {
        let file = format!("{name}.yaml");
        ws.write(&file, &batch_manifests(name, jsonl, ""));
        files.push(file);
    }
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    run_bounded(ws, &files)
}

/// `run -f <files>` in `ws`, killed (and the test failed) if it has not ended within two
/// minutes: a run the budget holds must end, never wait.
fn run_bounded(ws: &Workspace, files: &[&str]) -> std::process::Output {
    use std::io::Read;
    let mut child = ws
        .run_command(files)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    let status = status.unwrap_or_else(|| panic!("run -f had not ended after 120 s:\n{said}"));
    std::process::Output { status, stdout, stderr }
}

fn yaml_decimal(value: &serde_yaml::Value) -> Decimal {
    decimal(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a decimal string: {value:?}")),
    )
}

/// The line `run -f` printed for Batch `name`'s ending.
fn line_of<'a>(said: &'a str, name: &str, starts: &str) -> &'a str {
    let prefix = format!("default/{name}: {starts}");
    said.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}:\n{said}"))
}

/// `run -f` with three Batches on a gateway whose budget fits the first two: those two
/// succeed (each costing at most its estimate), the third is not sent; the run ends (exit 1)
/// saying the budget held it back and when it could run, and its status.yaml says
/// BudgetExhausted. The files' order is the queue's (not the names': `four` < `one` < `three` <
/// `two`), and a small fourth Batch behind the held one is not left waiting for it: once the
/// run gives up on the third, the fourth fits beside what the first two spent, and runs.
#[test]
fn run_f_ends_a_batch_the_budget_holds_back_and_runs_the_two_that_fit() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let batches = [
        ("one", lines(3, 50)),
        ("two", lines(3, 50)),
        ("three", lines(6, 100)),
        ("four", lines(1, 20)),
    ];
    let batches: Vec<(&str, &str)> = batches.iter().map(|(n, l)| (*n, l.as_str())).collect();

    // First pass: a budget nothing fits, for the estimates (each fails before anything is sent).
    let probe = Workspace::new();
    let output = run_batches(&probe, &sim.base_url, NOTHING_FITS, &batches);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 0, "{}", text(&output));
    let estimated = |ws: &Workspace, name: &str| yaml_decimal(&ws.status_yaml(name)["cost"]["estimated"]);
    let (small, large) = (estimated(&probe, "one"), estimated(&probe, "three"));
    assert_eq!(estimated(&probe, "two"), small);
    assert!(large > small + small, "{large} vs {small}");
    let tiny = estimated(&probe, "four");
    assert!(
        small + small + tiny <= large,
        "the fourth fits beside the first two: {tiny}"
    );

    let ws = Workspace::new();
    let budget = large.normalize().to_string();
    let output = run_batches(&ws, &sim.base_url, &budget, &batches);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert_eq!(
        sim.count_ok("POST", "/v1/batches"),
        3,
        "the third was never sent: {said}"
    );

    let mut spent = Decimal::ZERO;
    for name in ["one", "two"] {
        line_of(&said, name, "Succeeded");
        let status = ws.status_yaml(name);
        assert_eq!(status["phase"], "Succeeded");
        let cost = &status["cost"];
        assert_eq!(yaml_decimal(&cost["estimated"]), small, "{name}: {cost:?}");
        let actual = yaml_decimal(&cost["actual"]);
        assert!(actual > Decimal::ZERO && actual <= small, "{name}: {cost:?}");
        spent += actual;
    }

    let stopped = line_of(&said, "three", "stopped: ");
    assert!(stopped.contains("held back by the gateway's budget"), "{stopped}");
    let held = format!(
        "{} USD spent in the last 24h and 0 USD estimated for 0 running Batch(es), of {budget} USD; \
         this Batch is estimated at {budget} USD",
        spent.normalize()
    );
    assert!(stopped.contains(&held), "{stopped}\nexpected: {held}");
    assert!(stopped.contains("it could run after "), "{stopped}");
    let status = ws.status_yaml("three");
    assert_eq!(status["phase"], "Pending", "{status:?}");
    let admitted = condition(&status, "Admitted");
    assert_eq!(admitted["status"], "False");
    assert_eq!(admitted["reason"], "BudgetExhausted");
    assert!(admitted["message"].as_str().unwrap().contains(&held), "{admitted:?}");
    assert_eq!(yaml_decimal(&status["cost"]["estimated"]), large);
    assert!(status["cost"]["actual"].is_null(), "{status:?}");
    assert!(ws.lines("three", "output.jsonl").is_empty());
    let cost_line = line_of(&said, "three", "cost ");
    assert!(
        cost_line.ends_with(&format!("(estimated {budget}, no results counted)")),
        "{cost_line}"
    );

    line_of(&said, "four", "Succeeded");
    let status = ws.status_yaml("four");
    let four = yaml_decimal(&status["cost"]["actual"]);
    assert!(four > Decimal::ZERO && four <= tiny, "{:?}", status["cost"]);
    assert!(spent + four <= large, "within the budget");
    // The summary lists the Batches in the files' order.
    let endings: Vec<&str> = said
        .lines()
        .filter(|l| l.contains(": Succeeded; results in ") || l.contains(": stopped: "))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        endings,
        ["default/one", "default/two", "default/three", "default/four"],
        "{said}"
    );
}

/// A Batch whose estimate alone is over the whole budget fails at once, saying so, and holds
/// up nobody: the small Batch after it runs, and what the refused one never spent does not
/// count against the budget. The large Batch's output ceilings alone (4 × 400 000 tokens at 1
/// per million) are over the budget of 0.5; the small one is a few hundred tokens at most.
#[test]
fn run_f_fails_a_batch_estimated_over_the_whole_budget_and_runs_the_next() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    let huge = lines(4, 400_000);
    let small = lines(2, 50);
    let output = run_batches(&ws, &sim.base_url, "0.5", &[("huge", &huge), ("small", &small)]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");

    let status = ws.status_yaml("huge");
    assert_eq!(status["phase"], "Failed", "{status:?}");
    let estimated = yaml_decimal(&status["cost"]["estimated"]);
    assert!(estimated > Decimal::from_str("1.6").unwrap(), "{estimated}");
    let failed = condition(&status, "Failed");
    assert_eq!(failed["reason"], "SpecInvalid");
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "the input is estimated at {estimated} USD, more than the gateway's budget of 0.5 USD per 24h"
        )),
        "{message}"
    );
    line_of(&said, "huge", "Failed");

    line_of(&said, "small", "Succeeded");
    let status = ws.status_yaml("small");
    assert_eq!(status["phase"], "Succeeded", "{said}");
    assert!(yaml_decimal(&status["cost"]["actual"]) <= yaml_decimal(&status["cost"]["estimated"]));
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 1, "only the small one was sent");
}

/// What `run -f` says it estimated, for a mix of models: each model's input counted by its own
/// family's tokenizer (o200k_base for gpt-4o-mini, cl100k_base for gpt-3.5-turbo) or a
/// quarter of the bytes (a model without a published tokenizer), its output tokens the sum of
/// the ceilings the lines give; the estimate priced as the prices say, and never below what
/// the answers cost.
#[test]
fn run_f_estimates_each_models_tokens_with_its_tokenizer_and_prices_them() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    let models = ["gpt-4o-mini", "gpt-3.5-turbo", "llama-3-8b"];
    let jsonl: String = (0..9)
        .map(|i| {
            let model = models[i % 3];
            json!({"custom_id": format!("q-{i}"), "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": model, "max_tokens": 100 + i, "messages": [
                    {"role": "system", "content": "Classify the ticket: billing, bug, account or other."},
                    {"role": "user", "content": format!("Ticket {i}: {}", "my order is late ".repeat(i + 1))}]}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    ws.write("batch.yaml", &batch_manifests("mixed", &jsonl, ""));
    // 2 per million in, 4 out, less the default 50% batch discount; a budget everything fits.
    let pricing = "  pricing:\n    models:\n      - {model: \"gpt-*\", inputPerMillion: \"2\", outputPerMillion: \"4\"}\n      \
                   - {model: llama-3-8b, inputPerMillion: \"2\", outputPerMillion: \"4\"}\n";
    let gateway = budget_gateway(&sim.base_url, pricing, "100");
    ws.write("gateway.yaml", &gateway);
    let output = run_bounded(&ws, &["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));

    let status = ws.status_yaml("mixed");
    let estimates = status["input"]["estimates"].as_sequence().unwrap();
    let listed: Vec<(&str, &str)> = estimates
        .iter()
        .map(|e| (e["model"].as_str().unwrap(), e["countedBy"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            ("gpt-3.5-turbo", "cl100k_base"),
            ("gpt-4o-mini", "o200k_base"),
            ("llama-3-8b", "bytes/4")
        ]
    );
    let mut tokens = (0, 0);
    for estimate in estimates {
        let model = estimate["model"].as_str().unwrap();
        let offset = models.iter().position(|m| *m == model).unwrap() as u64;
        assert_eq!(estimate["requests"], 3, "{estimate:?}");
        // The ceilings of lines offset, offset + 3 and offset + 6.
        assert_eq!(
            estimate["outputTokens"].as_u64(),
            Some(300 + 3 * offset + 9),
            "{estimate:?}"
        );
        assert!(estimate["withoutOutputCeiling"].is_null(), "{estimate:?}");
        let input = estimate["inputTokens"].as_u64().unwrap();
        assert!(input > 0, "{estimate:?}");
        tokens.0 += input;
        tokens.1 += estimate["outputTokens"].as_u64().unwrap();
    }
    assert_eq!(
        status["input"]["estimatedTokens"].as_u64(),
        Some(tokens.0 + tokens.1),
        "the token estimate admission counts is the sum"
    );

    let cost = &status["cost"];
    let estimated = yaml_decimal(&cost["estimated"]);
    let priced = (Decimal::from(tokens.0) * Decimal::from(2) + Decimal::from(tokens.1) * Decimal::from(4))
        / Decimal::from(1_000_000)
        / Decimal::from(2);
    assert_eq!(estimated, priced, "{cost:?}");
    let actual = yaml_decimal(&cost["actual"]);
    assert!(actual > Decimal::ZERO && actual <= estimated, "{cost:?}");
    assert!(
        !cost["display"].as_str().unwrap().starts_with('~'),
        "the results replace the estimate in display: {cost:?}"
    );
    let usage = &status["usage"]["byModel"];
    for (i, model) in ["gpt-3.5-turbo", "gpt-4o-mini", "llama-3-8b"].iter().enumerate() {
        assert_eq!(usage[i]["model"], *model);
        assert!(
            usage[i]["outputTokens"].as_u64().unwrap() <= estimates[i]["outputTokens"].as_u64().unwrap(),
            "{model}: answers within their ceilings"
        );
    }
}
