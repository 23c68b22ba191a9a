//! `run -f` with object storage: input streamed from and results written to a real S3 server
//! (SeaweedFS, real SigV4), the simulator as the gateway.

use crate::common;

use common::s3::{ACCESS_KEY, SECRET_KEY, SeaweedFs};
use common::{Simulator, Workspace, chat_lines, gateway_manifests, text};

const KEY: &str = "sk-test-objstore-0123456789";

/// A Batch `name` reading `s3://test/<input_key>` (with `input_extra` under `spec.input`),
/// writing to `s3://test/results/<name>/`, and the Secret `s3` with `secret` as the secret key.
fn manifests(s3: &SeaweedFs, name: &str, input_key: &str, input_extra: &str, secret: &str) -> String {
    let endpoint = &s3.endpoint;
    format!(
        "apiVersion: llmbatch.io/v1alpha1\nkind: Batch\nmetadata:\n  name: {name}\nspec:\n  gatewayRef:\n    name: gw\n  \
         endpoint: /v1/chat/completions\n  input:\n    objectStore:\n      url: s3://test/{input_key}\n      endpoint: {endpoint}\n      \
         secretRef:\n        name: s3\n{input_extra}  output:\n    objectStore:\n      url: s3://test/results/{name}/\n      \
         endpoint: {endpoint}\n      secretRef:\n        name: s3\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: s3\nstringData:\n  AWS_ACCESS_KEY_ID: {ACCESS_KEY}\n  AWS_SECRET_ACCESS_KEY: {secret}\n"
    )
}

struct Setup {
    s3: SeaweedFs,
    sim: Simulator,
    ws: Workspace,
}

fn setup(name: &str, input_key: &str, input_extra: &str, secret: &str) -> Setup {
    let s3 = SeaweedFs::start();
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = Workspace::new();
    ws.write("batch.yaml", &manifests(&s3, name, input_key, input_extra, secret));
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &[]));
    Setup { s3, sim, ws }
}

fn jsonl(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn custom_ids(bytes: &[u8]) -> Vec<String> {
    jsonl(bytes)
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn input_and_output_round_trip_through_object_storage() {
    let Setup { s3, sim, ws } = setup("round", "in/tickets.jsonl", "", SECRET_KEY);
    s3.put("in/tickets.jsonl", chat_lines(50) + "\n");
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!text(&output).contains(SECRET_KEY), "the S3 secret leaked");

    assert_eq!(
        s3.list("results/round"),
        ["results/round/manifest.json", "results/round/output.jsonl"]
    );
    let results = s3.get("results/round/output.jsonl").unwrap();
    assert_eq!(jsonl(&results).len(), 50);
    let manifest: serde_json::Value = serde_json::from_slice(&s3.get("results/round/manifest.json").unwrap()).unwrap();
    assert_eq!(manifest["input"], "s3://test/in/tickets.jsonl");
    assert_eq!(manifest["requestCounts"]["outputLines"], 50);
    assert_eq!(manifest["requestCounts"]["outputBytes"], results.len());
    assert!(manifest["batchId"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(manifest["usage"]["totalTokens"].as_u64().unwrap() > 0);

    let status = ws.status_yaml("round");
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!(status["output"]["url"], "s3://test/results/round/");
    assert_eq!(status["input"]["requests"], 50);
    // The prepared bytes' BLAKE3 digest, in the form the upload pass compares with.
    let digest = status["input"]["digest"].as_str().unwrap_or_default();
    assert!(
        digest.strip_prefix("blake3:").is_some_and(|hex| hex.len() == 64),
        "{digest:?}"
    );
    assert_eq!(sim.count_ok("POST", "/v1/files"), 1);
}

/// Offset of the start of line `n` (1-based) in `text`.
fn line_start(text: &str, n: usize) -> usize {
    text.split_inclusive('\n').take(n - 1).map(str::len).sum()
}

#[test]
fn a_byte_range_inside_lines_and_overrides_rewrite_the_object_on_the_fly() {
    let source = chat_lines(10) + "\n";
    // From inside line 3 to inside line 6: lines 4, 5 and 6.
    let (start, end) = (line_start(&source, 3) + 5, line_start(&source, 6) + 5);
    let extra = format!(
        "    byteRange:\n      start: {start}\n      end: {end}\n    overrides:\n      model: gpt-4o\n      customIdPrefix: gpt-4o/\n"
    );
    let Setup { s3, sim, ws } = setup("sliced", "corpus.jsonl", &extra, SECRET_KEY);
    s3.put("corpus.jsonl", source);
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    let results = s3.get("results/sliced/output.jsonl").unwrap();
    let mut ids = custom_ids(&results);
    ids.sort();
    assert_eq!(ids, ["gpt-4o/req-4", "gpt-4o/req-5", "gpt-4o/req-6"]);
    assert!(
        jsonl(&results)
            .iter()
            .all(|l| l["response"]["body"]["model"] == "gpt-4o")
    );
    assert_eq!(ws.status_yaml("sliced")["input"]["requests"], 3);
    assert_eq!(sim.count_ok("POST", "/v1/files"), 1);
}

#[test]
fn a_byte_range_on_line_boundaries_keeps_exactly_those_lines() {
    let source = chat_lines(10) + "\n";
    let (start, end) = (line_start(&source, 3), line_start(&source, 5));
    let extra = format!("    byteRange:\n      start: {start}\n      end: {end}\n");
    let Setup { s3, ws, sim: _sim } = setup("aligned", "corpus.jsonl", &extra, SECRET_KEY);
    s3.put("corpus.jsonl", source);
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    let mut ids = custom_ids(&s3.get("results/aligned/output.jsonl").unwrap());
    ids.sort();
    assert_eq!(ids, ["req-3", "req-4"]);
}

#[test]
fn wrong_credentials_stop_the_run_naming_the_secret_and_send_nothing() {
    let wrong = "not-the-secret-key-42";
    let Setup { s3, sim, ws } = setup("denied", "in.jsonl", "", wrong);
    s3.put("in.jsonl", chat_lines(3));
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(!output.status.success(), "{}", text(&output));
    let said = text(&output);
    assert!(said.contains("s3://test/in.jsonl"), "{said}");
    assert!(
        said.contains("refused the credentials from Secret default/s3"),
        "{said}"
    );
    assert!(!said.contains(wrong), "the secret key leaked: {said}");
    assert_eq!(sim.count_ok("POST", "/v1/files"), 0);
    assert_eq!(ws.status_yaml("denied")["phase"], "Pending");
}

#[test]
fn a_missing_object_stops_the_run_and_a_rerun_recovers_once_it_is_there() {
    let Setup { s3, sim, ws } = setup("later", "not-yet.jsonl", "", SECRET_KEY);
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("object s3://test/not-yet.jsonl does not exist"),
        "{}",
        text(&output)
    );
    assert_eq!(sim.journal().iter().filter(|e| e.method == "POST").count(), 0);

    s3.put("not-yet.jsonl", chat_lines(5));
    let again = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(jsonl(&s3.get("results/later/output.jsonl").unwrap()).len(), 5);
}

#[test]
fn a_missing_bucket_is_named() {
    let Setup { ws, sim, s3: _s3 } = setup("nobucket", "in.jsonl", "", SECRET_KEY);
    let yaml = std::fs::read_to_string(ws.path().join("batch.yaml")).unwrap();
    ws.write(
        "batch.yaml",
        &yaml.replacen("s3://test/in.jsonl", "s3://no-such-bucket/in.jsonl", 1),
    );
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("the bucket of s3://no-such-bucket/in.jsonl does not exist"),
        "{}",
        text(&output)
    );
    assert_eq!(sim.count_ok("POST", "/v1/files"), 0);
}

#[test]
fn an_object_over_the_gateways_byte_limit_is_refused_before_reading_it() {
    let Setup { s3, sim, ws } = setup("huge", "big.jsonl", "", SECRET_KEY);
    let gateway = gateway_manifests(&sim.base_url, KEY, &[]).replacen(
        "  polling:",
        "  limits:\n    maxBytesPerBatch: 1Ki\n  polling:",
        1,
    );
    ws.write("gateway.yaml", &gateway);
    s3.put("big.jsonl", chat_lines(40));
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    let said = text(&output);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("object s3://test/big.jsonl is"), "{said}");
    assert!(said.contains("BatchSweep"), "{said}");
    assert_eq!(sim.count_ok("POST", "/v1/files"), 0);
    assert_eq!(ws.status_yaml("huge")["phase"], "Failed");
}

#[test]
fn an_invalid_object_fails_with_source_line_numbers_and_sends_nothing() {
    let Setup { s3, sim, ws } = setup("dupes", "dupes.jsonl", "", SECRET_KEY);
    let mut source = chat_lines(4);
    source.push('\n');
    source.push_str(&chat_lines(1));
    s3.put("dupes.jsonl", source);
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    let said = text(&output);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("line 5: custom_id \"req-1\" is a duplicate of line 1"),
        "{said}"
    );
    assert_eq!(sim.count_ok("POST", "/v1/files"), 0);
}

#[test]
fn a_crash_after_uploading_or_writing_results_resumes_without_duplicates() {
    for step in ["upload-input", "write-result-objects", "download"] {
        let name = format!("crash-{step}");
        let Setup { s3, sim, ws } = setup(&name, "in.jsonl", "", SECRET_KEY);
        s3.put("in.jsonl", chat_lines(10));
        let crashed = ws
            .run_command(&["batch.yaml", "gateway.yaml"])
            .env("LLM_BATCH_CRASH_AFTER", step)
            .output()
            .unwrap();
        assert!(!crashed.status.success(), "{step}: did not crash: {}", text(&crashed));
        let prefix = format!("results/{name}");
        if step == "write-result-objects" {
            // Results written, manifest not: a reader waiting for manifest.json sees nothing yet.
            assert_eq!(s3.list(&prefix), [format!("{prefix}/output.jsonl")]);
        }
        let resumed = ws.run(&["batch.yaml", "gateway.yaml"]);
        assert!(resumed.status.success(), "{step}: {}", text(&resumed));
        assert_eq!(sim.count_ok("POST", "/v1/files"), 1, "{step}: uploaded twice");
        assert_eq!(sim.count_ok("POST", "/v1/batches"), 1, "{step}: created twice");
        assert_eq!(
            s3.list(&prefix),
            [format!("{prefix}/manifest.json"), format!("{prefix}/output.jsonl")],
            "{step}"
        );
        assert_eq!(
            jsonl(&s3.get(&format!("{prefix}/output.jsonl")).unwrap()).len(),
            10,
            "{step}"
        );
    }
}

/// Direct mode (a gateway without a batch API) reads its slice of the object and writes its
/// results to object storage like batch mode: the same custom_ids, output.jsonl and manifest.
#[test]
fn direct_mode_streams_a_rewritten_slice_from_object_storage_and_writes_results_back() {
    let source = chat_lines(12) + "\n";
    let (start, end) = (line_start(&source, 4), line_start(&source, 10));
    let extra = format!(
        "    byteRange:\n      start: {start}\n      end: {end}\n    overrides:\n      model: gpt-4o\n      customIdPrefix: d/\n"
    );
    let s3 = SeaweedFs::start();
    let sim = Simulator::start(&["--api-key", KEY, "--no-batch-api"]);
    let ws = Workspace::new();
    ws.write(
        "batch.yaml",
        &manifests(&s3, "direct", "corpus.jsonl", &extra, SECRET_KEY),
    );
    ws.write("gateway.yaml", &gateway_manifests(&sim.base_url, KEY, &[]));
    s3.put("corpus.jsonl", source);
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));

    let results = s3
        .get("results/direct/output.jsonl")
        .expect("output.jsonl in the bucket");
    let mut ids = custom_ids(&results);
    ids.sort();
    let want: Vec<String> = (4..10).map(|i| format!("d/req-{i}")).collect();
    assert_eq!(ids, want, "lines 4 to 9, prefixed");
    assert!(
        jsonl(&results)
            .iter()
            .all(|l| l["response"]["body"]["model"] == "gpt-4o")
    );
    let manifest: serde_json::Value = serde_json::from_slice(&s3.get("results/direct/manifest.json").unwrap()).unwrap();
    assert_eq!(manifest["requestCounts"]["outputLines"], 6);
    let status = ws.status_yaml("direct");
    assert_eq!(
        (status["phase"].as_str(), status["mode"].as_str()),
        (Some("Succeeded"), Some("Direct"))
    );
    assert_eq!(status["output"]["url"], "s3://test/results/direct/");
    let sent: Vec<String> = sim
        .journal()
        .into_iter()
        .filter(|e| e.path == "/v1/chat/completions")
        .filter_map(|e| e.client_request_id)
        .collect();
    assert_eq!(sent.len(), 6, "each line of the slice sent once: {sent:?}");
}
