//! The `direct` subcommand (what the cluster's direct-mode Job runs) against the simulator as
//! a subprocess.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use common::{Simulator, Workspace, chat_lines, text, wait_until_blocking};

const KEY: &str = "sk-direct-test-0123456789";

#[test]
fn the_direct_subcommand_checkpoints_and_a_rerun_sends_nothing_more() {
    let sim = Simulator::start(&["--api-key", KEY, "--no-batch-api"]);
    let ws = Workspace::new();
    let mut lines = chat_lines(12);
    lines.push_str("\n{\"custom_id\":\"bad\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":\"not a list\"}}\n");
    let input = ws.write("in.jsonl", &lines);
    let run = || {
        common::bin()
            .args(["direct", "--url", &sim.base_url, "--input"])
            .arg(&input)
            .arg("--checkpoint-dir")
            .arg(ws.path().join("progress"))
            .env("LLM_BATCH_API_KEY", KEY)
            .output()
            .unwrap()
    };
    let output = run();
    assert!(output.status.success(), "{}", text(&output));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["conclusion"], "completed");
    assert_eq!(
        (summary["completed"].as_u64(), summary["failed"].as_u64()),
        (Some(12), Some(1))
    );
    let errors = std::fs::read_to_string(ws.path().join("progress/errors.jsonl")).unwrap();
    let error: Value = serde_json::from_str(errors.trim()).unwrap();
    assert_eq!(error["custom_id"], "bad");
    assert_eq!(error["response"]["status_code"], 400);
    assert!(error["error"].is_null());

    let before = sim.journal().len();
    let again = run();
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(sim.journal().len(), before, "a concluded run sends nothing");
}

#[test]
fn the_direct_subcommand_sends_nothing_for_invalid_input_and_stops_on_a_refused_key() {
    let sim = Simulator::start(&["--api-key", KEY, "--no-batch-api"]);
    let ws = Workspace::new();
    let input = ws.write("in.jsonl", &format!("{}\n{{\"custom_id\": 1}}\n", chat_lines(3)));
    let output = common::bin()
        .args(["direct", "--url", &sim.base_url, "--input"])
        .arg(&input)
        .arg("--checkpoint-dir")
        .arg(ws.path().join("p"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("line 4"), "{}", text(&output));
    assert!(sim.journal().is_empty());

    let input = ws.write("ok.jsonl", &chat_lines(3));
    let output = common::bin()
        .args(["direct", "--url", &sim.base_url, "--input"])
        .arg(&input)
        .arg("--checkpoint-dir")
        .arg(ws.path().join("p2"))
        .env("LLM_BATCH_API_KEY", "sk-wrong-key-never-printed")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("refused the API key"), "{}", text(&output));
    assert!(!text(&output).contains("sk-wrong"), "{}", text(&output));
}

/// `--progress-listen`: the live counts on `GET /progress` while the run goes, gone once it
/// ended; an address it cannot listen on stops it before anything is sent, saying so.
#[test]
fn the_direct_subcommand_serves_its_counts_while_it_runs() {
    let sim = Simulator::start(&["--api-key", KEY, "--no-batch-api", "--latency-ms", "100"]);
    let ws = Workspace::new();
    let input = ws.write("in.jsonl", &chat_lines(20));
    let addr = format!("127.0.0.1:{}", common::free_port());
    let direct = |addr: &str, dir: &str| {
        let mut command = common::bin();
        command
            .args(["direct", "--url", &sim.base_url, "--max-concurrent-requests", "1"])
            .args(["--progress-listen", addr, "--input"])
            .arg(&input)
            .arg("--checkpoint-dir")
            .arg(ws.path().join(dir))
            .arg("--summary-file")
            .arg(ws.path().join(format!("{dir}.summary")))
            .env("LLM_BATCH_API_KEY", KEY);
        command
    };
    // 1 in flight, 100 ms each: about 2 s for the 20 lines.
    let mut child = direct(&addr, "p")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{addr}/progress");
    let mut seen = Vec::new();
    wait_until_blocking("the run did not end", Duration::from_secs(60), || {
        if child.try_wait().unwrap().is_some() {
            return Ok(());
        }
        if let Ok(progress) = http.get(&url).send().and_then(|r| r.json::<Value>()) {
            assert_eq!(progress["total"], 20, "{progress}");
            seen.push(progress["completed"].as_u64().unwrap());
        }
        Err(seen.last().copied())
    });
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        seen.iter().any(|&c| 0 < c && c < 20),
        "no count between 0 and 20: {seen:?}"
    );
    assert!(seen.is_sorted(), "{seen:?}");
    assert!(http.get(&url).send().is_err(), "still serving after the run");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let before = sim.journal().len();
    let output = direct(&taken.local_addr().unwrap().to_string(), "q").output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("--progress-listen") && text(&output).contains("cannot listen"),
        "{}",
        text(&output)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(ws.path().join("q.summary")).unwrap()).unwrap();
    assert_eq!(report["class"], "Transient", "{report}");
    assert_eq!(sim.journal().len(), before, "nothing was sent");
}
