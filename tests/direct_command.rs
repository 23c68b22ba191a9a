//! The `direct` subcommand (what the cluster's direct-mode Job runs) against the simulator as
//! a subprocess.

mod common;

use serde_json::Value;

use common::{Simulator, Workspace, chat_lines, text};

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
