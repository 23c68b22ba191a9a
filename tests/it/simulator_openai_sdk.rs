//! The official `openai` Python SDK drives the simulator (tests/sdk/drive_simulator.py).
//!
//! Needs a python with `openai` installed: `LLMB_PYTHON`, else the project venv
//! (`~/.cache/llm-batch-operator/venv`), else `python3`. `scripts/test-deps` sets it up.
//! A missing SDK fails the test; it is never skipped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use llm_batch_operator::simulator::{RunningSimulator, SimulatorConfig};
use tokio::process::Command;

const KEY: &str = "sk-sim-sdk-test";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("LLMB_PYTHON") {
        return python.into();
    }
    let venv = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/llm-batch-operator/venv/bin/python"))
        .filter(|venv| venv.exists());
    venv.unwrap_or_else(|| PathBuf::from("python3"))
}

async fn require_openai(python: &Path) {
    let output = Command::new(python)
        .args(["-c", "import openai"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run scripts/test-deps", python.display()));
    assert!(
        output.status.success(),
        "the openai Python SDK is not importable with {} ({}): run scripts/test-deps \
         (or point LLMB_PYTHON at a python with `openai` installed)",
        python.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

#[tokio::test]
async fn openai_python_sdk_drives_the_simulator() {
    let python = python();
    require_openai(&python).await;
    let config = SimulatorConfig {
        api_key: Some(KEY.into()),
        validating_ms: 50,
        finalizing_ms: 50,
        cancelling_ms: 50,
        ..SimulatorConfig::default()
    };
    let sim = RunningSimulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let script = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("tests/sdk/drive_simulator.py");
    let run = Command::new(&python)
        .arg(&script)
        .arg(sim.base_url())
        .arg(KEY)
        .env("NO_PROXY", "127.0.0.1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, run)
        .await
        .expect("the SDK script timed out")
        .expect("the SDK script could not start");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("OK"),
        "SDK script failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    sim.shutdown().await;
}
