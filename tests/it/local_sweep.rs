//! `run -f` with BatchSweeps: a corpus in a real S3 server (SeaweedFS) cut into chunks and run
//! for two models through the simulator subprocess.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::s3::{ACCESS_KEY, SECRET_KEY, SeaweedFs};
use common::{Simulator, Workspace, chat_lines, condition, gateway_manifests, text};

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
            let status = ws.status_yaml(&child);
            assert_eq!(status["phase"], "Succeeded", "{child}");
            // The chunk's validation read nothing (the sweep's scan did): the upload pass's
            // digest of the ids it sent is what the results were checked against.
            assert!(status["input"]["ids"]["sum"].as_str().is_some(), "{child}: {status:?}");
            let verified = status["conditions"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "ResultsVerified")
                .unwrap_or_else(|| panic!("{child}: {status:?}"));
            assert_eq!(verified["reason"], "ResultsMatchInput", "{child}");
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

/// A sweep over a ConfigMap: 200 lines in chunks of 100, sent to gateway `gw`.
fn retry_manifests(extra: &str) -> String {
    let indented: String = chat_lines(200).lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: corpus\ndata:\n  batch.jsonl: |\n{indented}---\n\
         apiVersion: llmbatch.io/v1alpha1\nkind: BatchSweep\nmetadata:\n  name: corpus\nspec:\n  input:\n    configMap:\n      \
         name: corpus\n      key: batch.jsonl\n  chunk:\n    maxRequests: 100\n  template:\n    gatewayRef:\n      name: gw\n    \
         endpoint: /v1/chat/completions\n  parallelism: 2\n  maxFailedBatches: 10\n{extra}"
    )
}

fn custom_ids(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn lines_that_failed_retryably_run_again_as_follow_ups_and_the_summary_merges_the_attempts() {
    // Every batch expires after half its lines, and about one line in ten fails with a 500
    // (always the same lines): expired lines recover on a later attempt, the 500s never do.
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    ws.write("sweep.yaml", &retry_manifests("  retry:\n    maxAttempts: 3\n"));
    let headers = [("x-sim-expire", "true"), ("x-sim-line-failure-rate", "0.1")];
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &headers));
    let output = ws.run(&["sweep.yaml", "gateway.yaml"]);
    // Each child's last attempt expired too: the run says so, within the failure budget.
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("retrying them as corpus-c0000-r1 (attempt 2 of 3)"),
        "{}",
        text(&output)
    );

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.out("corpus").join("summary.json")).unwrap()).unwrap();
    let mut succeeded = BTreeSet::new();
    let (mut retried, mut recovered, mut last_failed) = (0u64, 0u64, BTreeSet::new());
    for chunk in 0..2 {
        let first = format!("corpus-c{chunk:04}");
        let attempts = [first.clone(), format!("{first}-r1"), format!("{first}-r2")];
        let mut previous_retryable: Option<BTreeSet<String>> = None;
        for (i, name) in attempts.iter().enumerate() {
            assert_eq!(ws.status_yaml(name)["phase"], "Expired", "{name}");
            let done = custom_ids(&ws.lines(name, "output.jsonl"));
            let failed = custom_ids(&ws.lines(name, "errors.jsonl"));
            let ran: BTreeSet<String> = done.iter().chain(&failed).cloned().collect();
            if let Some(expected) = &previous_retryable {
                assert_eq!(
                    &ran,
                    expected,
                    "{name} holds exactly the lines {} failed",
                    attempts[i - 1]
                );
                retried += ran.len() as u64;
                recovered += done.len() as u64;
            }
            for id in &done {
                assert!(id.starts_with(&format!("c{chunk:04}/")), "{id}");
                assert!(succeeded.insert(id.clone()), "{id} succeeded twice");
            }
            previous_retryable = Some(failed.iter().cloned().collect());
            if i == 2 {
                last_failed.extend(failed);
            }
        }
        assert!(
            !ws.out(&format!("{first}-r3")).exists(),
            "maxAttempts 3 counts the first"
        );
        let child = &summary["children"][chunk];
        assert_eq!(child["name"], first.as_str());
        assert_eq!(child["attempts"].as_array().unwrap().len(), 3);
    }
    assert!(recovered > 0, "expired lines succeed on a later attempt");
    assert!(!last_failed.is_empty(), "the lines that always fail are still failing");
    assert_eq!(
        succeeded.len() + last_failed.len(),
        200,
        "every line either succeeded once or failed at the end"
    );
    assert_eq!(summary["requestCounts"]["total"], 200);
    assert_eq!(summary["requestCounts"]["completed"], succeeded.len() as u64);
    assert_eq!(summary["requestCounts"]["failed"], last_failed.len() as u64);
    assert_eq!(summary["retries"]["batches"], 4);
    assert_eq!(summary["retries"]["retried"], retried);
    assert_eq!(summary["retries"]["recovered"], recovered);
    let status = ws.status_yaml("corpus");
    assert_eq!(
        status["phase"], "Succeeded",
        "two failed children are within maxFailedBatches 10"
    );
    assert_eq!(status["retries"]["recovered"], recovered);
    assert_eq!(status["children"][0]["attempts"], 3);
    assert_eq!(
        sim.count_ok("POST", "/v1/batches"),
        6,
        "three attempts per child, none twice"
    );
    assert_eq!(sim.count_ok("POST", "/v1/files"), 6);

    // A rerun finds every attempt finished: nothing more goes upstream.
    let again = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 6);
    assert_eq!(sim.count_ok("POST", "/v1/files"), 6);
    let rerun: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.out("corpus").join("summary.json")).unwrap()).unwrap();
    assert_eq!(rerun["requestCounts"], summary["requestCounts"]);
}

#[test]
fn max_attempts_out_of_range_is_named_and_nothing_is_sent() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    ws.write("sweep.yaml", &retry_manifests("  retry:\n    maxAttempts: 0\n"));
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &[]));
    let output = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("spec.retry.maxAttempts: 0 must be greater than or equal to 1"),
        "{}",
        text(&output)
    );
    assert!(sim.journal().is_empty(), "nothing goes upstream");
}

#[test]
fn parallelism_0_is_named_and_nothing_is_sent() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    ws.write(
        "sweep.yaml",
        &retry_manifests("").replace("parallelism: 2", "parallelism: 0"),
    );
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &[]));
    let output = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("spec.parallelism: 0 must be greater than or equal to 1"),
        "{}",
        text(&output)
    );
    assert!(sim.journal().is_empty(), "nothing goes upstream");
}

#[test]
fn with_parallelism_1_and_no_failure_budget_the_first_failed_child_stops_the_sweep() {
    // Every batch expires: the first child fails, spending the budget, so the second never
    // starts (as the controller's sweep decides).
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    let manifests = retry_manifests("").replace(
        "parallelism: 2\n  maxFailedBatches: 10",
        "parallelism: 1\n  maxFailedBatches: 0",
    );
    ws.write("sweep.yaml", &manifests);
    ws.write(
        "gateway.yaml",
        &gateway_manifests(&sim.base_url, KEY, &[("x-sim-expire", "true")]),
    );
    let output = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output)
            .contains("default/corpus-c0001: stopped: not started: more than maxFailedBatches 0 children failed"),
        "{}",
        text(&output)
    );
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 1, "only the first child ran");
    assert_eq!(ws.status_yaml("corpus-c0000")["phase"], "Expired");
    let status = ws.status_yaml("corpus");
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["batches"]["failed"], 1);
    assert_eq!(status["batches"]["waiting"], 1);
    assert_eq!(condition(&status, "Failed")["reason"], "FailureBudgetExceeded");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.out("corpus").join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["children"].as_array().unwrap().len(), 1, "{summary}");

    // A rerun finds the budget still spent: nothing more starts.
    let again = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 1);
}

#[test]
fn a_suspended_sweep_starts_no_child_until_resumed() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &[]));
    ws.write("sweep.yaml", &retry_manifests("  suspend: true\n"));
    let suspended = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert_eq!(suspended.status.code(), Some(1), "{}", text(&suspended));
    assert!(
        text(&suspended).contains("default/corpus-c0000: stopped: not started: the sweep is suspended"),
        "{}",
        text(&suspended)
    );
    assert!(sim.journal().is_empty(), "nothing goes upstream");
    let status = ws.status_yaml("corpus");
    assert_eq!(status["phase"], "Suspended");
    assert_eq!(status["batches"]["waiting"], 2);
    assert_eq!(condition(&status, "Suspended")["status"], "True");

    ws.write("sweep.yaml", &retry_manifests(""));
    let resumed = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_eq!(ws.status_yaml("corpus")["phase"], "Succeeded");
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 2);
}

#[test]
fn a_run_killed_after_uploading_a_retry_adopts_that_upload_when_rerun() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    let manifests = retry_manifests("  retry:\n    maxAttempts: 2\n").replace("parallelism: 2", "parallelism: 1");
    ws.write("sweep.yaml", &manifests);
    ws.write(
        "gateway.yaml",
        &gateway_manifests(&sim.base_url, KEY, &[("x-sim-expire", "true")]),
    );
    let killed = ws
        .run_command(&["sweep.yaml", "gateway.yaml"])
        .env("LLM_BATCH_CRASH_AFTER", "upload-retry-input")
        .output()
        .unwrap();
    assert!(!killed.status.success(), "{}", text(&killed));
    assert_eq!(
        sim.count_ok("POST", "/v1/files"),
        2,
        "the first child's input and its retry file"
    );
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 1);

    let rerun = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert_eq!(
        rerun.status.code(),
        Some(1),
        "every last attempt expired: {}",
        text(&rerun)
    );
    assert_eq!(
        sim.count_ok("POST", "/v1/files"),
        4,
        "the retry file was adopted, not sent again"
    );
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 4);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.out("corpus").join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["retries"]["retried"], 100, "the expired half of each child");
    assert_eq!(summary["retries"]["recovered"], 50);
    assert_eq!(summary["requestCounts"]["completed"], 150);
    assert_eq!(summary["requestCounts"]["failed"], 50);
}

/// The file the simulator holds under `id`: its size in bytes.
fn uploaded_bytes(sim: &Simulator, id: &str) -> u64 {
    let file: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("{}/files/{id}", sim.base_url))
        .bearer_auth(KEY)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .expect("GET the file from the simulator");
    file["bytes"].as_u64().expect("bytes")
}

#[test]
fn children_take_their_figures_from_the_scan_and_refuse_an_object_changed_since() {
    let s3 = SeaweedFs::start();
    let corpus = chat_lines(600) + "\n";
    s3.put("corpus.jsonl", corpus.clone());
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    // Models of different lengths: each child's upload length follows from the scan's.
    let manifests = sweep_manifests(&s3, "  parallelism: 2\n  maxFailedBatches: 10\n")
        .replace("maxRequests: 2000", "maxRequests: 200")
        .replace("[model-a, model-b]", "[m, a-much-longer-model-name]");
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &[]));
    // Suspended: the input is scanned (and the plan kept), nothing runs.
    ws.write(
        "sweep.yaml",
        &manifests.replace("parallelism: 2", "parallelism: 2\n  suspend: true"),
    );
    let suspended = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert!(sim.journal().is_empty(), "{}", text(&suspended));

    // The object changes after the scan: line 250 (in chunk 1) is no longer a valid request.
    let changed = corpus.replacen(
        r#"{"custom_id":"req-250","method":"POST""#,
        r#"{"custom_id":"req-250","method":"PUT!""#,
        1,
    );
    assert_eq!(changed.len(), corpus.len());
    s3.put("corpus.jsonl", changed);
    ws.write("sweep.yaml", &manifests);
    let output = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));

    for model in ["m", "a-much-longer-model-name"] {
        for chunk in [0, 2] {
            let child = format!("eval-{model}-c{chunk:04}");
            let status = ws.status_yaml(&child);
            assert_eq!(status["phase"], "Succeeded", "{child}");
            let file = status["gateway"]["inputFileId"].as_str().unwrap();
            assert_eq!(
                status["input"]["bytes"].as_u64(),
                Some(uploaded_bytes(&sim, file)),
                "{child}"
            );
        }
        let refused = ws.status_yaml(&format!("eval-{model}-c0001"));
        assert_eq!(refused["phase"], "Failed");
        let message = serde_yaml::to_string(&refused["conditions"]).unwrap();
        assert!(message.contains("method must be"), "{message}");
    }
    assert_eq!(
        sim.count_ok("POST", "/v1/files"),
        4,
        "the changed chunk was never uploaded"
    );
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 4);
}

/// A sweep of four chunks of 100 lines on a gateway pricing gpt-4o-mini at 1 per million and
/// counting 1,000 output tokens for a line without `max_tokens`: each child is estimated at
/// about 0.1 USD, and answers cost about a fifteenth of that.
fn budgeted_manifests(sim: &Simulator, max_cost: &str) -> (String, String) {
    let pricing = "  pricing:\n    batchDiscount: \"0%\"\n    defaultMaxOutputTokens: 1000\n    models:\n      \
                   - {model: gpt-4o-mini, inputPerMillion: \"1\", outputPerMillion: \"1\"}\n  polling:";
    let gateway = gateway_manifests(&sim.base_url, KEY, &[]).replacen("  polling:", pricing, 1);
    let indented: String = chat_lines(400).lines().map(|l| format!("    {l}\n")).collect();
    let sweep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: corpus\ndata:\n  batch.jsonl: |\n{indented}---\n\
         apiVersion: llmbatch.io/v1alpha1\nkind: BatchSweep\nmetadata:\n  name: corpus\nspec:\n  input:\n    configMap:\n      \
         name: corpus\n      key: batch.jsonl\n  chunk:\n    maxRequests: 100\n  template:\n    gatewayRef:\n      name: gw\n    \
         endpoint: /v1/chat/completions\n  parallelism: 4\n  budget:\n    maxCost: \"{max_cost}\"\n"
    );
    (gateway, sweep)
}

#[test]
fn max_cost_starts_children_only_while_their_estimates_fit_and_a_raise_continues() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    let (gateway, sweep) = budgeted_manifests(&sim, "0.05");
    ws.write("gateway.yaml", &gateway);
    ws.write("sweep.yaml", &sweep);
    let held = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert_eq!(held.status.code(), Some(1), "{}", text(&held));
    assert!(
        text(&held).contains("maxCost 0.05 USD reached: 0 of 4 batches started"),
        "{}",
        text(&held)
    );
    assert!(sim.journal().is_empty(), "a child over the budget sends nothing");
    let status = ws.status_yaml("corpus");
    assert_eq!(status["phase"], "Suspended");
    assert_eq!(condition(&status, "Suspended")["reason"], "BudgetReached");

    // Two estimates fit 0.25 and three do not: never more than two children run at once, and
    // as answers cost less than estimated, the others start as the first ones finish.
    let (_, sweep) = budgeted_manifests(&sim, "0.25");
    ws.write("sweep.yaml", &sweep);
    let ran = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert!(ran.status.success(), "{}", text(&ran));
    let status = ws.status_yaml("corpus");
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 4);
    assert!(
        most_batches_in_flight(&sim) <= 2,
        "{} in flight",
        most_batches_in_flight(&sim)
    );
    let cost = &status["cost"];
    let amount = |v: &serde_yaml::Value| v.as_str().unwrap().parse::<f64>().unwrap();
    assert!(amount(&cost["actual"]) <= 0.25, "{cost:?}");
    assert!(amount(&cost["estimated"]) > amount(&cost["actual"]), "{cost:?}");
}

/// A sweep's webhook (here its gateway's default) is the controller's to call: `run -f` names
/// it and runs the sweep, and its children send nothing of their own.
#[test]
fn a_sweeps_webhook_is_named_as_not_sent_and_its_children_send_none() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    let unreachable = format!("http://127.0.0.1:{}/hook", common::free_port());
    ws.write("sweep.yaml", &retry_manifests(""));
    let gateway = gateway_manifests(&sim.base_url, KEY, &[]).replace(
        "    max: 500ms\n",
        &format!("    max: 500ms\n  notify:\n    url: {unreachable}\n"),
    );
    ws.write("gateway.yaml", &gateway);
    let output = ws.run(&["sweep.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    let said = text(&output);
    assert!(
        said.contains("not sending the webhook events of BatchSweep default/corpus"),
        "{said}"
    );
    assert!(!said.contains("notify"), "no child tried the gateway's webhook: {said}");
}
