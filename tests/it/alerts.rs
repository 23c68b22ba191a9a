//! The chart's PrometheusRule and Grafana dashboard against the controller's real metrics: the
//! rules pass `promtool check rules`; each alert is evaluated by `promtool test rules` on
//! `/metrics` samples of a controller run against the API server and the simulator (a healthy
//! sample, then two of a run with a failed, a stalled and an unwritable Batch, a gateway
//! refusing the key and a budget nearly used), asserting exactly which alerts fire; and every
//! metric a dashboard panel queries is in those samples.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::apiserver::{admin_client, fresh_namespace, server};
use common::cluster::{RunningController, create_batch, create_input};
use common::operations::phase;
use common::tools::{documents, helm_template, succeed, tool};
use common::{object, repo_path, text, wait_until};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use llm_batch_operator::api::{Batch, BatchGateway, BatchPhase};
use llm_batch_operator::controller::Context;
use llm_batch_operator::simulator::{RunningSimulator, SimulatorConfig};
use serde_json::{Value, json};

const NAMESPACE: &str = "llmb-system";
const KEY: &str = "sk-alerts-test-key";
/// Every alert of the chart's PrometheusRule, as docs/operations.md documents them.
const ALERTS: [&str; 6] = [
    "LLMBatchControllerDown",
    "LLMBatchReconcileErrors",
    "LLMBatchStalled",
    "LLMBatchFailed",
    "LLMBatchBudgetNearlyUsed",
    "LLMBatchGatewayUnauthorized",
];

/// The chart rendered with the PrometheusRule (and `values`): the rule object and the name of
/// the metrics Service, whose name is the job a ServiceMonitor scrape gets.
fn rendered_rule(values: &[&str]) -> (serde_yaml::Value, String) {
    let args = [&["--set", "prometheusRule.enabled=true"][..], values].concat();
    let docs = documents(&helm_template(NAMESPACE, &args));
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule")
        .clone();
    let service = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"].as_str().unwrap().ends_with("-metrics"))
        .expect("the metrics Service");
    (rule, service["metadata"]["name"].as_str().unwrap().to_string())
}

/// The rule's `spec` (its groups) as a Prometheus rule file in `dir`.
fn rule_file(dir: &Path, rule: &serde_yaml::Value) -> std::path::PathBuf {
    let path = dir.join("rules.yaml");
    std::fs::write(&path, serde_yaml::to_string(&rule["spec"]).unwrap()).unwrap();
    path
}

/// Every alerting rule of the groups.
fn alert_rules(rule: &serde_yaml::Value) -> Vec<serde_yaml::Value> {
    rule["spec"]["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

#[test]
fn the_rules_pass_promtool_check_and_a_broken_rule_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (rule, _) = rendered_rule(&[]);
    let path = rule_file(dir.path(), &rule);
    let out = succeed(tool("LLMB_PROMTOOL").args(["check", "rules"]).arg(&path));
    assert!(out.contains(&format!("SUCCESS: {} rules found", ALERTS.len())), "{out}");

    // The same file with one expression cut short is refused, naming the rule's group.
    let yaml = std::fs::read_to_string(&path).unwrap();
    let broken = yaml.replacen("[15m])) > 0", "[15m])) >", 1);
    assert_ne!(broken, yaml);
    std::fs::write(&path, broken).unwrap();
    let output = tool("LLMB_PROMTOOL")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("llm-batch-operator"), "{}", text(&output));
}

/// Each alert has a severity, a summary, a description and a runbook link to its own section of
/// docs/operations.md's "Alerts", which documents these alerts and no other; every selector
/// names the metrics Service's job, or `prometheusRule.job`.
#[test]
fn every_alert_is_labelled_annotated_and_documented() {
    let docs = std::fs::read_to_string(repo_path("docs/operations.md")).unwrap();
    let section = docs
        .split("\n## Alerts\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/operations.md has an Alerts section");
    let documented: BTreeSet<&str> = section.lines().filter_map(|l| l.strip_prefix("### ")).collect();
    assert_eq!(documented, ALERTS.into_iter().collect::<BTreeSet<_>>());

    let (rule, job) = rendered_rule(&["--set", "prometheusRule.runbookUrl=https://docs.example/ops.md"]);
    let rules = alert_rules(&rule);
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(names, ALERTS);
    for r in &rules {
        let name = r["alert"].as_str().unwrap();
        assert!(
            ["warning", "critical"].contains(&r["labels"]["severity"].as_str().unwrap_or_default()),
            "{name}"
        );
        for annotation in ["summary", "description"] {
            assert!(
                r["annotations"][annotation].as_str().is_some_and(|a| a.len() > 10),
                "{name} {annotation}"
            );
        }
        assert_eq!(
            r["annotations"]["runbook_url"].as_str().unwrap(),
            format!("https://docs.example/ops.md#{}", name.to_lowercase()),
            "the GitHub anchor of its heading"
        );
        assert_eq!(r["for"], "5m");
        let expr = r["expr"].as_str().unwrap();
        assert!(expr.contains(&format!(r#"{{job="{job}""#)), "{name}: {expr}");
    }

    let (custom, _) = rendered_rule(&[
        "--set",
        "prometheusRule.job=llmb",
        "--set",
        "prometheusRule.for=10m",
        "--set",
        "prometheusRule.budgetThreshold=0.75",
    ]);
    for r in alert_rules(&custom) {
        let expr = r["expr"].as_str().unwrap();
        assert!(expr.contains(r#"{job="llmb""#) && !expr.contains(&job), "{expr}");
        assert_eq!(r["for"], "10m");
        if r["alert"] == "LLMBatchBudgetNearlyUsed" {
            assert!(expr.ends_with("> 0.75"), "{expr}");
        }
    }
}

/// The dashboard renders, as files/dashboard.json, only when asked, with the sidecar's label
/// (or another), in the release namespace or another; its queries use the datasource variable.
#[test]
fn the_dashboard_configmap_renders_only_when_enabled_and_holds_the_dashboard() {
    let dashboards = |values: &[&str]| -> Vec<serde_yaml::Value> {
        documents(&helm_template(NAMESPACE, values))
            .into_iter()
            .filter(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "llm-batch-operator-dashboard")
            .collect()
    };
    assert!(dashboards(&[]).is_empty());
    let file: Value = serde_json::from_str(&dashboard_json()).expect("files/dashboard.json is JSON");

    let on = dashboards(&["--set", "grafanaDashboard.enabled=true"]);
    assert_eq!(on.len(), 1);
    assert_eq!(on[0]["metadata"]["namespace"], NAMESPACE);
    assert_eq!(on[0]["metadata"]["labels"]["grafana_dashboard"], "1");
    let held: Value = serde_json::from_str(on[0]["data"]["llm-batch-operator.json"].as_str().unwrap()).unwrap();
    assert_eq!(held, file);

    let elsewhere = dashboards(&[
        "--set",
        "grafanaDashboard.enabled=true",
        "--set",
        "grafanaDashboard.label=example.com/dashboard",
        "--set",
        "grafanaDashboard.labelValue=llm",
        "--set",
        "grafanaDashboard.namespace=monitoring",
    ]);
    let meta = &elsewhere[0]["metadata"];
    assert_eq!(meta["namespace"], "monitoring");
    assert_eq!(meta["labels"]["example.com/dashboard"], "llm");
    assert!(meta["labels"]["grafana_dashboard"].is_null());

    let variables: Vec<&Value> = file["templating"]["list"].as_array().unwrap().iter().collect();
    let variable = |name: &str| *variables.iter().find(|v| v["name"] == name).unwrap();
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    assert_eq!(variable("namespace")["type"], "query");
    let panels = panels(&file);
    assert!(panels.len() >= 10, "{}", panels.len());
    for (title, panel) in &panels {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            assert!(
                target["expr"].as_str().is_some_and(|e| e.contains("llmbatch_")),
                "{title}"
            );
        }
    }
}

fn dashboard_json() -> String {
    std::fs::read_to_string(repo_path("charts/llm-batch-operator/files/dashboard.json")).unwrap()
}

/// Every panel with queries (rows' nested panels too), by title.
fn panels(dashboard: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = stack.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            stack.extend(nested);
        }
        if panel["targets"].is_array() {
            out.push((panel["title"].as_str().unwrap().to_string(), panel.clone()));
        }
    }
    out
}

/// Every metric name a dashboard query or variable names, with where.
fn dashboard_metrics(dashboard: &Value) -> Vec<(String, String)> {
    let name = regex::Regex::new(r"llmbatch_[a-z_]+").unwrap();
    let mut out = Vec::new();
    for (title, panel) in panels(dashboard) {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            out.extend(
                name.find_iter(expr)
                    .map(|m| (format!("panel {title:?}"), m.as_str().to_string())),
            );
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let query = variable["definition"].as_str().unwrap_or_default();
        let label = format!("variable {}", variable["name"]);
        out.extend(name.find_iter(query).map(|m| (label.clone(), m.as_str().to_string())));
    }
    out
}

/// The metric names a scrape holds samples of: histograms' `_bucket`, `_sum` and `_count` as
/// their family's name.
fn scraped_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (name, _, _) in parse(scrape) {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(family) = name.strip_suffix(suffix) {
                names.insert(family.to_string());
            }
        }
        names.insert(name);
    }
    names
}

/// What the dashboard queries that `scraped` lacks, as "panel \"Title\" queries metric".
fn missing_metrics(dashboard: &Value, scraped: &BTreeSet<String>) -> Vec<String> {
    let strip = |name: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name)
            .to_string()
    };
    dashboard_metrics(dashboard)
        .iter()
        .filter(|(_, metric)| !scraped.contains(&strip(metric)))
        .map(|(place, metric)| format!("{place} queries {metric}"))
        .collect()
}

/// Every metric the dashboard's panels and variables query is in the last troubled sample of
/// the run (which has a Batch of every kind of trouble, so every family has samples); a panel
/// querying a name the controller does not export is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_a_dashboard_panel_queries_is_in_the_controllers_metrics() {
    let samples = samples().await;
    let scraped = scraped_names(&samples.troubled.1);
    let dashboard: Value = serde_json::from_str(&dashboard_json()).unwrap();
    let wanted = dashboard_metrics(&dashboard);
    assert!(wanted.len() >= 15, "{wanted:?}");
    let missing = missing_metrics(&dashboard, &scraped);
    assert!(
        missing.is_empty(),
        "not in the controller's /metrics: {missing:#?}\nscraped: {scraped:?}"
    );

    // The same check on a dashboard whose first panel queries a name nobody exports.
    let altered = dashboard_json().replacen("llmbatch_batches{", "llmbatch_batches_by_phase{", 1);
    let altered: Value = serde_json::from_str(&altered).unwrap();
    assert_eq!(
        missing_metrics(&altered, &scraped),
        [r#"panel "Batches by phase" queries llmbatch_batches_by_phase"#]
    );
}

/// Each sample of an exposition: name, the labels as written (inside the braces), value.
fn parse(text: &str) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).expect("a sample line");
        let name = &line[..name_end];
        let (labels, rest) = if line[name_end..].starts_with('{') {
            // The closing brace outside any quoted label value.
            let (mut quoted, mut escaped, mut end) = (false, false, None);
            for (i, c) in line[name_end + 1..].char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => quoted = !quoted,
                    '}' if !quoted => {
                        end = Some(name_end + 1 + i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.expect("closing brace");
            (&line[name_end + 1..end], &line[end + 1..])
        } else {
            ("", &line[name_end..])
        };
        let value = rest.split_whitespace().next().expect("a value");
        out.push((
            name.to_string(),
            labels.to_string(),
            value.parse().unwrap_or_else(|_| panic!("{line}")),
        ));
    }
    out
}

/// `/metrics` of one controller run: a healthy sample, then two of a troubled run, a few
/// seconds apart (each with the instance it was scraped from).
struct Samples {
    healthy: (String, String),
    first_troubled: (String, String),
    troubled: (String, String),
    namespace: String,
    /// `llmbatch_budget_spent` / `llmbatch_budget_limit` of gateway `gw` in the last sample.
    budget_ratio: f64,
}

static SAMPLES: tokio::sync::OnceCell<Samples> = tokio::sync::OnceCell::const_new();

async fn samples() -> &'static Samples {
    SAMPLES.get_or_init(run_and_scrape).await
}

/// Status writes of the Batch named `unwritable`: dropped, so its reconciles fail (`kube`).
fn unwritable_status(request: &http::Request<kube::client::Body>) -> bool {
    common::faults::status_writes(request) && request.uri().path().ends_with("/batches/unwritable/status")
}

async fn create_gateway(client: &Client, ns: &str, name: &str, url: &str, key: &str, extra: Value) {
    let pp = PostParams::default();
    let secret: Secret = object(json!({"metadata": {"name": format!("{name}-key")}, "stringData": {"api-key": key}}));
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&pp, &secret)
        .await
        .unwrap();
    let mut spec = json!({"url": url, "auth": {"secretRef": {"name": format!("{name}-key"), "key": "api-key"}},
                          "polling": {"initial": "100ms", "max": "500ms"}});
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let gateway: BatchGateway = object(json!({"apiVersion": "llmbatch.io/v1alpha1", "kind": "BatchGateway",
        "metadata": {"name": name}, "spec": spec}));
    Api::<BatchGateway>::namespaced(client.clone(), ns)
        .create(&pp, &gateway)
        .await
        .unwrap();
}

/// The sum of the samples of `metric` whose labels contain every one of `labels`.
fn total(scrape: &str, metric: &str, labels: &[&str]) -> f64 {
    parse(scrape)
        .iter()
        .filter(|(name, l, _)| name == metric && labels.iter().all(|want| l.contains(want)))
        .map(|(_, _, v)| v)
        .sum()
}

async fn wait_phase(client: &Client, ns: &str, name: &str, want: BatchPhase) -> Batch {
    let api = Api::<Batch>::namespaced(client.clone(), ns);
    wait_until(&format!("{name} never {want}"), Duration::from_secs(60), async || {
        let batch = api.get(name).await.unwrap();
        if phase(&batch) == Some(want) {
            Ok(batch)
        } else {
            Err(batch.status)
        }
    })
    .await
}

/// The run the samples come from. Healthy: a priced Batch succeeds on gateway `gw` (budget
/// 1000 USD). Then troubled: `gw`'s budget is lowered to 1.05 times what that Batch cost (95%
/// used), a Batch with invalid input fails, a Batch on gateway `slow` (a simulator holding its
/// batches in finalizing, `stalledAfter.finalizing: 1s`) stalls, gateway `denied` has a wrong
/// key (401), and the status writes of Batch `unwritable` are dropped (its reconciles fail).
/// The second troubled sample is taken once the 401s and the reconcile errors have grown (the
/// denied gateway probed again, as it is every 30 s while not ready; the unwritable Batch
/// retried with its backoff).
async fn run_and_scrape() -> Samples {
    let admin = admin_client().await;
    let ns = fresh_namespace(&admin, "alerts").await;
    let start = |config: SimulatorConfig| {
        RunningSimulator::start(
            SimulatorConfig {
                api_key: Some(KEY.into()),
                ..config
            },
            "127.0.0.1:0".parse().unwrap(),
        )
    };
    let ok = start(SimulatorConfig::default()).await.unwrap();
    let slow = start(SimulatorConfig {
        finalizing_ms: 120_000,
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let pricing = json!({"models": [{"model": "gpt-4o-mini", "inputPerMillion": "0.15",
                                     "cachedInputPerMillion": "0.075", "outputPerMillion": "0.60"}]});
    let budget = |amount: &str| json!({"budget": {"amount": amount, "window": "24h"}});
    create_gateway(
        &admin,
        &ns,
        "gw",
        &ok.base_url(),
        KEY,
        json!({"pricing": pricing, "limits": budget("1000")}),
    )
    .await;
    create_input(&admin, &ns, "input", &common::chat_lines(6)).await;

    let faults = common::faults::FailSome::all(unwritable_status);
    let context = Arc::new(
        Context::new(faults.client(server().config().await))
            .with_addresses(llm_batch_operator::net::AddressPolicy::local()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let instance = listener.local_addr().unwrap().to_string();
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(llm_batch_operator::telemetry::serve(
        listener,
        context.metrics.clone(),
        context.health.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let url = format!("http://{instance}/metrics");
    let scrape = async || -> String {
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    };
    let controller = RunningController::start_with(context.clone(), &ns);

    create_batch(&admin, &ns, "good", "gw", "input").await;
    let good = wait_phase(&admin, &ns, "good", BatchPhase::Succeeded).await;
    let healthy = wait_until(
        "the finished Batch was never counted",
        Duration::from_secs(10),
        async || {
            let text = scrape().await;
            match total(&text, "llmbatch_request_lines_total", &[r#"outcome="completed""#]) {
                6.0 => Ok(text),
                _ => Err(text),
            }
        },
    )
    .await;

    // Trouble.
    let cost: rust_decimal::Decimal = good.status.unwrap().cost.unwrap().actual.parse().unwrap();
    assert!(cost > rust_decimal::Decimal::ZERO);
    let limit = (cost * rust_decimal::Decimal::new(105, 2)).normalize();
    let patch = json!({"spec": {"limits": budget(&limit.to_string())}});
    Api::<BatchGateway>::namespaced(admin.clone(), &ns)
        .patch("gw", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    create_input(&admin, &ns, "bad", "this is not JSON\n").await;
    create_batch(&admin, &ns, "broken", "gw", "bad").await;
    create_gateway(
        &admin,
        &ns,
        "slow",
        &slow.base_url(),
        KEY,
        json!({"stalledAfter": {"finalizing": "1s"}}),
    )
    .await;
    create_batch(&admin, &ns, "stuck", "slow", "input").await;
    create_batch(&admin, &ns, "unwritable", "slow", "input").await;
    create_gateway(&admin, &ns, "denied", &ok.base_url(), "sk-wrong-key", json!({})).await;

    let gw_labels = format!(r#"namespace="{ns}",gateway="gw",currency="USD""#);
    let unauthorized = |t: &str| total(t, "llmbatch_gateway_requests_total", &[r#"code="401""#]);
    let errors = |t: &str| {
        total(
            t,
            "llmbatch_reconcile_errors_total",
            &[r#"controller="batch""#, r#"error="kube""#],
        )
    };
    let first_troubled = wait_until("the trouble never showed", Duration::from_secs(60), async || {
        let text = scrape().await;
        let shown = total(&text, "llmbatch_batches", &[r#"phase="Failed""#]) == 1.0
            && total(&text, "llmbatch_batches_stalled", &[r#"state="finalizing""#]) == 1.0
            && unauthorized(&text) >= 1.0
            && errors(&text) >= 1.0
            && total(&text, "llmbatch_budget_limit", &[&gw_labels]) == limit.to_string().parse::<f64>().unwrap()
            && total(&text, "llmbatch_budget_spent", &[&gw_labels]) == cost.to_string().parse::<f64>().unwrap();
        if shown { Ok(text) } else { Err(text) }
    })
    .await;
    // The denied gateway is probed again now rather than in 30 s.
    let touch = json!({"metadata": {"annotations": {"example.com/probe": "again"}}});
    Api::<BatchGateway>::namespaced(admin.clone(), &ns)
        .patch("denied", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    let troubled = wait_until(
        "the 401s and reconcile errors never grew",
        Duration::from_secs(30),
        async || {
            let text = scrape().await;
            let grown = unauthorized(&text) > unauthorized(&first_troubled) && errors(&text) > errors(&first_troubled);
            if grown { Ok(text) } else { Err(text) }
        },
    )
    .await;
    controller.stop().await;
    let _ = stop_serving.send(());
    let _ = serving.await;
    // Every reconcile ended (or was cancelled) with the controller: none is left in flight.
    let stopped = context.metrics.encode().unwrap();
    let in_flight: Vec<f64> = parse(&stopped)
        .into_iter()
        .filter(|(name, _, _)| name == "llmbatch_reconciles_in_flight")
        .map(|(_, _, v)| v)
        .collect();
    assert!(
        !in_flight.is_empty() && in_flight.iter().all(|v| *v == 0.0),
        "{stopped}"
    );

    for scrape in [&healthy, &first_troubled, &troubled] {
        assert!(
            !scrape.contains(KEY) && !scrape.contains("sk-wrong-key"),
            "a key in /metrics"
        );
    }
    let budget_ratio = total(&troubled, "llmbatch_budget_spent", &[&gw_labels])
        / total(&troubled, "llmbatch_budget_limit", &[&gw_labels]);
    assert!(budget_ratio > 0.9 && budget_ratio < 1.0, "{budget_ratio}");
    Samples {
        healthy: (instance.clone(), healthy),
        first_troubled: (instance.clone(), first_troubled),
        troubled: (instance, troubled),
        namespace: ns,
        budget_ratio,
    }
}

/// Minutes of the promtool series: the healthy sample from 0 to 19, the first troubled one from
/// 20 to 24, the second from 25 to 44 (Prometheus sees each scrape's values held until the next).
const HEALTHY_UNTIL: usize = 20;
const SECOND_FROM: usize = 25;
const MINUTES: usize = 45;
/// When the troubled samples are judged: their gauges have held since minute 20 and the
/// counters grew at 25, so every alert's `for: 5m` has passed while the 15-minute `increase()`
/// windows still hold the growth.
const TROUBLED_AT: usize = 31;

/// promtool `input_series` of the samples, as Prometheus would store them: each sample gets the
/// `job` and `instance` labels of its scrape; a series missing from a sample is missing then
/// (`_`), as a counter not incremented yet is absent from /metrics. Plus `up`, 1 while the
/// samples last and `up_after` from minute 20 on.
fn input_series(samples: &[(&(String, String), std::ops::Range<usize>)], job: &str, up_after: Option<u8>) -> Value {
    let mut series: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    for (sample, minutes) in samples {
        let (instance, scrape) = sample;
        for (name, labels, value) in parse(scrape) {
            let sep = if labels.is_empty() { "" } else { "," };
            let key = format!(r#"{name}{{job="{job}",instance="{instance}"{sep}{labels}}}"#);
            let values = series.entry(key).or_insert_with(|| vec![None; MINUTES]);
            for m in minutes.clone() {
                values[m] = Some(value);
            }
        }
    }
    let instance = &samples[0].0.0;
    let up = (0..MINUTES)
        .map(|m| match (m >= HEALTHY_UNTIL, up_after) {
            (true, Some(after)) => Some(f64::from(after)),
            _ => Some(1.0),
        })
        .collect();
    series.insert(format!(r#"up{{job="{job}",instance="{instance}"}}"#), up);
    let list: Vec<Value> = series
        .into_iter()
        .map(|(key, values)| {
            let values: Vec<String> = values
                .into_iter()
                .map(|v| v.map_or("_".to_string(), |v| v.to_string()))
                .collect();
            json!({"series": key, "values": values.join(" ")})
        })
        .collect();
    Value::Array(list)
}

/// `v` as Go's `%.4g` writes it (Prometheus' humanize and humanizePercentage), for the values
/// these alerts show (no exponent).
fn go_4g(v: f64) -> String {
    let digits = if v == 0.0 { 0 } else { v.abs().log10().floor() as i32 };
    assert!((-4..4).contains(&digits), "{v} needs an exponent");
    let text = format!("{:.*}", (3 - digits).max(0) as usize, v);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// An annotation template of the rules rendered as Prometheus renders it for an alert with
/// these labels and value: only the template actions these rules use.
fn render(template: &str, labels: &BTreeMap<&str, String>, value: f64) -> String {
    let action = regex::Regex::new(r"\{\{\s*([^}]*?)\s*\}\}").unwrap();
    action
        .replace_all(template, |c: &regex::Captures| {
            let inner = &c[1];
            if let Some(label) = inner.strip_prefix("$labels.") {
                labels.get(label).cloned().unwrap_or_else(|| panic!("no label {label}"))
            } else if inner == "$value | humanize" {
                go_4g(value)
            } else if inner == "$value | humanizePercentage" {
                format!("{}%", go_4g(value * 100.0))
            } else {
                panic!("a template action this test does not render: {inner}")
            }
        })
        .into_owned()
}

/// The `exp_alerts` of `alert` for these firing instances (labels beyond the rule's, value).
fn expected(rule: &serde_yaml::Value, firing: &[Instance]) -> Value {
    let list: Vec<Value> = firing
        .iter()
        .map(|(labels, value)| {
            let mut all = labels.clone();
            for (k, v) in rule["labels"].as_mapping().unwrap() {
                all.insert(k.as_str().unwrap(), v.as_str().unwrap().to_string());
            }
            let annotations: BTreeMap<String, String> = rule["annotations"]
                .as_mapping()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_string(),
                        render(v.as_str().unwrap(), &all, *value),
                    )
                })
                .collect();
            json!({"exp_labels": all, "exp_annotations": annotations})
        })
        .collect();
    Value::Array(list)
}

fn labels(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// An alert instance: its labels beyond the rule's, and its value.
type Instance = (BTreeMap<&'static str, String>, f64);
/// The alerts expected to fire, by name.
type Firing = BTreeMap<&'static str, Vec<Instance>>;

/// `alert_rule_test` entries at `minute`: every alert of `rules`, firing as `firing` says
/// (absent: none).
fn alert_tests(rules: &[serde_yaml::Value], minute: usize, firing: &Firing) -> Vec<Value> {
    rules
        .iter()
        .map(|rule| {
            let name = rule["alert"].as_str().unwrap();
            let alerts = firing.get(name).map(|f| expected(rule, f)).unwrap_or(json!([]));
            json!({"eval_time": format!("{minute}m"), "alertname": name, "exp_alerts": alerts})
        })
        .collect()
}

fn promtool_test(dir: &Path, rules: &Path, tests: Value) -> std::process::Output {
    let file = json!({"rule_files": [rules.file_name().unwrap().to_str().unwrap()],
                      "evaluation_interval": "1m", "tests": tests});
    let path = dir.join("alerts-test.yaml");
    std::fs::write(&path, serde_yaml::to_string(&file).unwrap()).unwrap();
    tool("LLMB_PROMTOOL")
        .current_dir(dir)
        .args(["test", "rules", "alerts-test.yaml"])
        .output()
        .unwrap()
}

/// The alerts on the samples: nothing fires on the healthy one (minute 19); on the troubled ones
/// ([`TROUBLED_AT`]: every condition held for 5 minutes) exactly the five the run caused fire, with
/// their labels and rendered annotations, and the controller is not down. With `up` 0 from
/// minute 20 (and no more samples), only LLMBatchControllerDown fires. A wrong expectation
/// fails promtool, so the check is live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerts_fire_exactly_as_a_real_controllers_metrics_say() {
    let samples = samples().await;
    let (rule, job) = rendered_rule(&[]);
    let rules = alert_rules(&rule);
    let dir = tempfile::tempdir().unwrap();
    let rule_path = rule_file(dir.path(), &rule);
    let series = input_series(
        &[
            (&samples.healthy, 0..HEALTHY_UNTIL),
            (&samples.first_troubled, HEALTHY_UNTIL..SECOND_FROM),
            (&samples.troubled, SECOND_FROM..MINUTES),
        ],
        &job,
        None,
    );
    let j = job.as_str();
    let ns = samples.namespace.as_str();
    let firing: Firing = BTreeMap::from([
        (
            "LLMBatchReconcileErrors",
            vec![(labels(&[("job", j), ("controller", "batch"), ("error", "kube")]), 0.0)],
        ),
        (
            "LLMBatchStalled",
            vec![(labels(&[("job", j), ("state", "finalizing")]), 1.0)],
        ),
        (
            "LLMBatchFailed",
            vec![(labels(&[("job", j), ("phase", "Failed")]), 1.0)],
        ),
        (
            "LLMBatchBudgetNearlyUsed",
            vec![(
                labels(&[("job", j), ("namespace", ns), ("gateway", "gw"), ("currency", "USD")]),
                samples.budget_ratio,
            )],
        ),
        (
            "LLMBatchGatewayUnauthorized",
            vec![(labels(&[("job", j), ("code", "401")]), 0.0)],
        ),
    ]);
    let group = |series: Value, firing_at_troubled: &Firing| {
        let mut tests = alert_tests(&rules, HEALTHY_UNTIL - 1, &BTreeMap::new());
        tests.extend(alert_tests(&rules, TROUBLED_AT, firing_at_troubled));
        json!({"interval": "1m", "input_series": series, "alert_rule_test": tests})
    };
    let down_series = input_series(&[(&samples.healthy, 0..HEALTHY_UNTIL)], &job, Some(0));
    let down = BTreeMap::from([("LLMBatchControllerDown", vec![(labels(&[("job", j)]), 0.0)])]);
    let output = promtool_test(
        dir.path(),
        &rule_path,
        json!([group(series.clone(), &firing), group(down_series, &down)]),
    );
    assert!(output.status.success(), "{}", text(&output));

    // Expecting LLMBatchFailed not to fire fails.
    let mut wrong = firing.clone();
    wrong.remove("LLMBatchFailed");
    let output = promtool_test(dir.path(), &rule_path, json!([group(series, &wrong)]));
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("LLMBatchFailed"), "{}", text(&output));
}
