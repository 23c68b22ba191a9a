//! Direct mode end to end: `run -f` and the `direct` subcommand against the simulator as a
//! subprocess, checked from the simulator's own request record.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use common::{
    JournalEntry, Simulator, Workspace, batch_manifests, chat_lines, gateway_manifests, text, wait_until_blocking,
};

const KEY: &str = "sk-direct-test-0123456789";

/// A workspace whose gateway `gw` points at `sim`, with `spec_extra` (mode, limits) added.
fn setup(sim: &Simulator, name: &str, lines: usize, gateway_extra: &str, batch_extra: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write("batch.yaml", &batch_manifests(name, &chat_lines(lines), batch_extra));
    let gateway = gateway_manifests(&sim.base_url, KEY, &[]).replacen("---\n", &format!("{gateway_extra}---\n"), 1);
    ws.write("gateway.yaml", &gateway);
    ws
}

/// Direct requests the simulator answered, by custom_id (x-client-request-id).
fn sends(journal: &[JournalEntry]) -> Vec<&JournalEntry> {
    journal
        .iter()
        .filter(|e| e.method == "POST" && e.path == "/v1/chat/completions")
        .collect()
}

/// Now, in the unit of the journal's times.
fn unix_micros() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since_epoch.as_micros()).unwrap()
}

fn ok_per_custom_id(journal: &[JournalEntry]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in sends(journal).into_iter().filter(|e| e.status == 200) {
        *counts
            .entry(e.client_request_id.clone().expect("custom_id sent"))
            .or_insert(0) += 1;
    }
    counts
}

fn custom_ids(lines: &[Value]) -> HashSet<String> {
    lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn auto_picks_direct_when_the_gateway_has_no_batch_api() {
    let sim = Simulator::start(&["--api-key", KEY, "--no-batch-api"]);
    let ws = setup(&sim, "triage", 20, "", "");
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("sending each request directly"),
        "{}",
        text(&output)
    );
    assert!(!text(&output).contains(KEY), "the key leaked");
    let status = ws.status_yaml("triage");
    assert_eq!(status["mode"], "Direct");
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!(status["requestCounts"]["completed"], 20);
    assert!(status["usage"]["totalTokens"].as_u64().unwrap() > 0);
    let lines = ws.lines("triage", "output.jsonl");
    assert_eq!(custom_ids(&lines).len(), 20);
    assert!(!ws.out("triage").join("errors.jsonl").exists());

    let journal = sim.journal();
    let probes: Vec<_> = journal.iter().filter(|e| e.path == "/v1/batches").collect();
    assert_eq!(probes.len(), 1, "Auto probes once: {probes:?}");
    assert_eq!(probes[0].status, 404);
    assert!(journal.iter().all(|e| e.path != "/v1/files"));
    let sent = ok_per_custom_id(&journal);
    assert_eq!(sent.len(), 20);
    assert!(sent.values().all(|n| *n == 1), "{sent:?}");

    // The resolved mode is kept: a rerun neither probes nor sends.
    let before = journal.len();
    let again = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(sim.journal().len(), before);
}

#[test]
fn auto_picks_batch_when_the_gateway_has_a_batch_api() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = setup(&sim, "classic", 10, "", "");
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(ws.status_yaml("classic")["mode"], "Batch");
    assert_eq!(sim.count_ok("POST", "/v1/batches"), 1);
    assert_eq!(sends(&sim.journal()).len(), 0);
}

#[test]
fn mode_direct_is_used_even_when_a_batch_api_exists() {
    let sim = Simulator::start(&["--api-key", KEY]);
    let ws = setup(&sim, "forced", 5, "  mode: Direct\n", "");
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(ws.status_yaml("forced")["mode"], "Direct");
    let journal = sim.journal();
    assert!(
        journal.iter().all(|e| e.path != "/v1/batches"),
        "an explicit mode needs no probe"
    );
    assert_eq!(ok_per_custom_id(&journal).len(), 5);
}

#[test]
fn direct_mode_rides_out_429_and_5xx_with_latency_sending_each_line_once() {
    let sim = Simulator::start(&[
        "--api-key",
        KEY,
        "--no-batch-api",
        "--rate-429",
        "0.2",
        "--retry-after",
        "0",
        "--rate-5xx",
        "0.2",
        "--latency-ms",
        "20",
        "--seed",
        "11",
    ]);
    let limits = "  limits:\n    maxConcurrentRequests: 4\n";
    let ws = setup(&sim, "storm", 40, limits, "");
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(custom_ids(&ws.lines("storm", "output.jsonl")).len(), 40);
    let journal = sim.journal();
    assert!(journal.iter().any(|e| e.status == 429), "no 429 was injected");
    assert!(journal.iter().any(|e| e.status >= 500), "no 5xx was injected");
    let sent = ok_per_custom_id(&journal);
    assert_eq!(sent.len(), 40);
    assert!(sent.values().all(|n| *n == 1), "a line got two answers: {sent:?}");
}

#[test]
fn a_429_retry_after_holds_every_sender() {
    let sim = Simulator::start(&[
        "--no-batch-api",
        "--rate-429",
        "0.15",
        "--retry-after",
        "1",
        "--latency-ms",
        "50",
        "--seed",
        "5",
    ]);
    let ws = setup(
        &sim,
        "polite",
        30,
        "  mode: Direct\n  limits:\n    maxConcurrentRequests: 3\n",
        "",
    );
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    let journal = sim.journal();
    let sent = sends(&journal);
    let limited: Vec<_> = sent.iter().filter(|e| e.status == 429).collect();
    assert!(!limited.is_empty(), "no 429 was injected");
    // Requests already on the wire when the 429 came back may land just after it; none may
    // start later within the second the gateway asked for.
    const ON_THE_WIRE_US: u64 = 150_000;
    for hold in &limited {
        let early: Vec<_> = sent
            .iter()
            .filter(|e| e.started_us > hold.ended_us + ON_THE_WIRE_US && e.started_us < hold.ended_us + 900_000)
            .collect();
        assert!(
            early.is_empty(),
            "sent during a retry-after hold: {early:?} after {hold:?}"
        );
    }
}

#[test]
fn concurrency_and_request_rate_stay_within_the_limits_in_the_simulators_record() {
    let sim = Simulator::start(&["--no-batch-api", "--latency-ms", "100"]);
    let ws = setup(&sim, "bounded", 30, "  limits:\n    maxConcurrentRequests: 3\n", "");
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    let journal = sim.journal();
    let peak = max_overlap(&sends(&journal));
    assert!((2..=3).contains(&peak), "{peak} requests overlapped (limit 3)");

    let sim = Simulator::start(&["--no-batch-api"]);
    let limits = "  limits:\n    maxConcurrentRequests: 8\n    requestsPerMinute: 600\n";
    let ws = setup(&sim, "paced", 25, limits, "");
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    let journal = sim.journal();
    let mut starts: Vec<u64> = sends(&journal).iter().map(|e| e.started_us).collect();
    starts.sort();
    assert_eq!(starts.len(), 25);
    // 600/min is one request per 100 ms: any second holds at most 10 starts (+1 for a start
    // that scheduling delayed onto the next one's heels).
    for (i, first) in starts.iter().enumerate() {
        let in_a_second = starts[i..].iter().take_while(|s| **s < first + 1_000_000).count();
        assert!(in_a_second <= 11, "{in_a_second} requests started within one second");
    }
    let span = starts.last().unwrap() - starts.first().unwrap();
    assert!(span >= 2_300_000, "25 requests at 600/min took only {span} µs");
}

/// Most requests in flight at once, from their start and end times.
fn max_overlap(entries: &[&JournalEntry]) -> usize {
    let mut events: Vec<(u64, i32)> = entries
        .iter()
        .flat_map(|e| [(e.started_us, 1), (e.ended_us, -1)])
        .collect();
    events.sort(); // at equal times the end (-1) sorts first
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        peak = peak.max(now);
    }
    peak as usize
}

#[test]
fn kill_9_mid_run_resumes_without_resending_a_finished_line() {
    let sim = Simulator::start(&["--no-batch-api", "--latency-ms", "40"]);
    let ws = setup(&sim, "crashy", 150, "  limits:\n    maxConcurrentRequests: 4\n", "");
    let mut child = ws
        .run_command(&["batch.yaml", "gateway.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let checkpoint = wait_for_checkpoint(ws.path(), "crashy", 30);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done: HashSet<String> = ["output.jsonl", "errors.jsonl"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(checkpoint.join(f))
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .map(|l| l["custom_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        done.len() >= 30 && done.len() < 150,
        "killed too late: {} done",
        done.len()
    );
    // The killed run's last requests may still be at the simulator, journaled when they end,
    // after this; but they started before it, and every request of the resumed run after it.
    let resumed_at = unix_micros();

    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("resuming"), "{}", text(&output));
    let journal: Vec<JournalEntry> = sim
        .journal()
        .into_iter()
        .filter(|e| e.started_us >= resumed_at)
        .collect();
    let resent: Vec<_> = sends(&journal)
        .into_iter()
        .filter(|e| done.contains(e.client_request_id.as_deref().unwrap_or_default()))
        .collect();
    assert!(resent.is_empty(), "finished lines were sent again: {resent:?}");
    assert_eq!(sends(&journal).len(), 150 - done.len());
    let lines = ws.lines("crashy", "output.jsonl");
    assert_eq!(lines.len(), 150);
    assert_eq!(custom_ids(&lines).len(), 150);
    assert_eq!(ws.status_yaml("crashy")["requestCounts"]["completed"], 150);
}

/// Waits (bounded) until the direct checkpoint of `name` holds `lines` results; returns its dir.
fn wait_for_checkpoint(root: &Path, name: &str, lines: usize) -> PathBuf {
    let never = format!("the direct run of {name} never got to {lines} lines");
    wait_until_blocking(&never, Duration::from_secs(30), || {
        let dir = std::fs::read_dir(root.join("state/default").join(name))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("direct-"))
            });
        let Some(dir) = dir else {
            return Err(0);
        };
        let done = std::fs::read_to_string(dir.join("output.jsonl"))
            .unwrap_or_default()
            .lines()
            .count();
        if done >= lines { Ok(dir) } else { Err(done) }
    })
}

#[test]
fn direct_output_has_the_same_shape_as_batch_output_for_the_same_input() {
    let batch_sim = Simulator::start(&["--api-key", KEY]);
    let ws_batch = setup(&batch_sim, "same", 15, "", "");
    assert!(ws_batch.run(&["batch.yaml", "gateway.yaml"]).status.success());
    let direct_sim = Simulator::start(&["--api-key", KEY, "--no-batch-api"]);
    let ws_direct = setup(&direct_sim, "same", 15, "", "");
    assert!(ws_direct.run(&["batch.yaml", "gateway.yaml"]).status.success());

    let by_id = |lines: Vec<Value>| -> BTreeMap<String, Value> {
        lines
            .into_iter()
            .map(|l| (l["custom_id"].as_str().unwrap().to_string(), l))
            .collect()
    };
    let batch = by_id(ws_batch.lines("same", "output.jsonl"));
    let direct = by_id(ws_direct.lines("same", "output.jsonl"));
    assert_eq!(batch.keys().collect::<Vec<_>>(), direct.keys().collect::<Vec<_>>());
    for (id, b) in &batch {
        let d = &direct[id];
        assert_eq!(shape(b), shape(d), "line {id}: {b} vs {d}");
        assert_eq!(b["response"]["body"], d["response"]["body"], "line {id}");
        assert_eq!(b["response"]["status_code"], d["response"]["status_code"]);
        assert!(d["id"].as_str().unwrap().starts_with("batch_req_"));
    }
    let (b, d) = (ws_batch.status_yaml("same"), ws_direct.status_yaml("same"));
    assert_eq!(b["usage"], d["usage"]);
    assert_eq!(b["requestCounts"]["completed"], d["requestCounts"]["completed"]);
}

/// The keys and JSON types of a value, recursively (values themselves ignored).
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => Value::Null,
    }
}

#[test]
fn past_the_completion_window_a_direct_run_expires_keeping_completed_lines() {
    let sim = Simulator::start(&["--no-batch-api", "--latency-ms", "300"]);
    let ws = setup(
        &sim,
        "late",
        20,
        "  limits:\n    maxConcurrentRequests: 1\n",
        "  completionWindow: 1s\n",
    );
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let status = ws.status_yaml("late");
    assert_eq!(status["phase"], "Expired");
    let done = ws.lines("late", "output.jsonl");
    let errors = ws.lines("late", "errors.jsonl");
    assert!(!done.is_empty() && done.len() < 20, "{} completed", done.len());
    assert_eq!(done.len() + errors.len(), 20);
    assert!(
        errors
            .iter()
            .all(|l| l["error"]["code"] == "batch_expired" && l["response"].is_null())
    );
    assert_eq!(status["requestCounts"]["notRun"].as_u64(), Some(errors.len() as u64));
    assert_eq!(custom_ids(&done).len() + custom_ids(&errors).len(), 20);
}

#[test]
fn the_direct_example_runs_the_quickstart_as_direct_requests() {
    let sim = Simulator::start(&["--no-batch-api"]);
    let ws = Workspace::new();
    let example = std::fs::read_to_string(common::repo_path("examples/direct/gateway.yaml")).unwrap();
    assert!(example.contains("http://127.0.0.1:8080/v1"), "the example's URL moved");
    ws.write(
        "gateway.yaml",
        &example.replace("http://127.0.0.1:8080/v1", &sim.base_url),
    );
    let quickstart = common::repo_path("examples/quickstart");
    let output = ws.run(&[&quickstart, "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    let status = ws.status_yaml("ticket-triage");
    assert_eq!(status["mode"], "Direct");
    assert_eq!(status["requestCounts"]["completed"], 20);
    assert_eq!(ws.lines("ticket-triage", "output.jsonl").len(), 20);
    assert_eq!(ok_per_custom_id(&sim.journal()).len(), 20);
}

#[test]
fn estimated_tokens_per_minute_stay_within_the_limit_in_the_simulators_record() {
    let sim = Simulator::start(&["--no-batch-api"]);
    let limits = "  limits:\n    maxConcurrentRequests: 8\n    tokensPerMinute: 30000\n";
    let ws = setup(&sim, "tokens", 40, limits, "");
    let output = ws.run(&["batch.yaml", "gateway.yaml"]);
    assert!(output.status.success(), "{}", text(&output));
    let tokens: HashMap<String, u64> = chat_lines(40)
        .lines()
        .map(|l| {
            let line: Value = serde_json::from_str(l).unwrap();
            let bytes = serde_json::to_vec(&line["body"]).unwrap().len();
            let estimate = llm_batch_operator::direct::estimate_tokens(&line["body"], bytes);
            (line["custom_id"].as_str().unwrap().to_string(), estimate)
        })
        .collect();
    let journal = sim.journal();
    let mut starts: Vec<(u64, u64)> = sends(&journal)
        .iter()
        .map(|e| (e.started_us, tokens[e.client_request_id.as_deref().unwrap()]))
        .collect();
    starts.sort();
    assert_eq!(starts.len(), 40);
    // 30,000 per minute is 500 per second; a request may start once the ones before it have
    // paid for their tokens, so any second holds at most 500 plus one request's worth, plus
    // 50 for up to 100 ms by which scheduling on a busy machine may delay a start.
    let largest = *tokens.values().max().unwrap();
    for (i, (first, _)) in starts.iter().enumerate() {
        let in_a_second: u64 = starts[i..]
            .iter()
            .take_while(|(s, _)| *s < first + 1_000_000)
            .map(|(_, t)| t)
            .sum();
        assert!(
            in_a_second <= 550 + largest,
            "{in_a_second} tokens started within one second"
        );
    }
    let paid: u64 = starts[..starts.len() - 1].iter().map(|(_, t)| t).sum();
    let span = starts.last().unwrap().0 - starts.first().unwrap().0;
    assert!(
        span >= paid * 1_800, // 2 ms per token, less 10% for scheduling
        "{paid} tokens went out in {span} µs"
    );
}
