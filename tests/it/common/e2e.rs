//! Runs tests/e2e/run.sh, the end-to-end script CI runs on a kind cluster, against the test
//! API server (no kubelet) in its `outside` mode: the chart's CRDs, RBAC and ServiceAccount
//! are applied, and the controller binary runs on this machine as that ServiceAccount against
//! a simulator subprocess.

use std::process::Command;

use super::apiserver::{admin_client, server};
use super::{Simulator, repo_path, text};

fn tool_path(variable: &str) -> String {
    let path = std::env::var(variable).unwrap_or_default();
    assert!(
        std::path::Path::new(&path).is_file(),
        "{variable} does not name a file: run scripts/test, or eval \"$(scripts/test-deps)\""
    );
    path
}

/// Runs the script with extra chart arguments (`E2E_HELM_ARGS`); returns the simulator it used.
pub fn run_script(helm_args: &str) -> Simulator {
    tokio::runtime::Runtime::new().unwrap().block_on(admin_client());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server().kubeconfig_yaml()).unwrap();
    let simulator = Simulator::start(&[]);
    let output = Command::new("bash")
        .arg(repo_path("tests/e2e/run.sh"))
        .env("KUBECONFIG", &kubeconfig)
        .env("E2E_MODE", "outside")
        .env("E2E_OPERATOR_BIN", env!("CARGO_BIN_EXE_llm-batch-operator"))
        .env("E2E_GATEWAY_URL", &simulator.base_url)
        .env("E2E_HELM_ARGS", helm_args)
        .env("E2E_TIMEOUT", "120s")
        .env("HELM", tool_path("LLMB_HELM"))
        .env("KUBECTL", tool_path("LLMB_KUBECTL"))
        .output()
        .unwrap();
    eprintln!("{}", text(&output));
    assert!(output.status.success(), "tests/e2e/run.sh failed (its output is above)");
    assert!(String::from_utf8_lossy(&output.stderr).contains("e2e: ok"));
    simulator
}
