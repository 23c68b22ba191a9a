//! The chart and manifest tools `scripts/test-deps` installs (helm, kubectl,
//! kubernetes-validate), found through the variables it exports. Without them the tests
//! fail, they never skip.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::{repo_path, text};

/// The Kubernetes version rendered manifests are validated against (the test API server's).
pub const KUBERNETES_VERSION: &str = "1.34.0";

/// The chart directory in this clone.
pub fn chart_dir() -> String {
    repo_path("charts/llm-batch-operator")
}

/// A command for the tool named by `variable` (e.g. `LLMB_HELM`).
pub fn tool(variable: &str) -> Command {
    let path = std::env::var_os(variable).map(PathBuf::from).unwrap_or_default();
    assert!(
        path.is_file(),
        "{variable} does not name a file ({}): run scripts/test, or eval \"$(scripts/test-deps)\"",
        path.display()
    );
    Command::new(path)
}

/// Runs `command` and returns its stdout, failing the test with its output when it fails.
pub fn succeed(command: &mut Command) -> String {
    let output = command.output().expect("start the tool");
    assert!(output.status.success(), "{command:?} failed:\n{}", text(&output));
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// `helm template` of the chart with extra arguments (e.g. `--set replicas=2`).
pub fn helm_template_output(release_namespace: &str, args: &[&str]) -> Output {
    tool("LLMB_HELM")
        .args([
            "template",
            "llm-batch-operator",
            &chart_dir(),
            "--namespace",
            release_namespace,
        ])
        .args(args)
        .output()
        .expect("start helm")
}

/// The chart rendered with these arguments, as a multi-document YAML stream.
pub fn helm_template(release_namespace: &str, args: &[&str]) -> String {
    let output = helm_template_output(release_namespace, args);
    assert!(
        output.status.success(),
        "helm template {args:?} failed:\n{}",
        text(&output)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every non-empty document of a YAML stream.
pub fn documents(yaml: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("valid YAML"))
        .filter(|doc: &serde_yaml::Value| !doc.is_null())
        .collect()
}

/// `kubernetes-validate --strict` over a file of manifests: built-in kinds and CRDs.
pub fn kubernetes_validate(path: &std::path::Path) -> Output {
    tool("LLMB_KUBERNETES_VALIDATE")
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
        .arg(path)
        .output()
        .expect("start kubernetes-validate")
}

/// `v` with every number as a float: tools that re-serialise YAML write `minimum: 1.0` as
/// `minimum: 1`, the same JSON number to the API server.
pub fn numbers_as_floats(v: &serde_yaml::Value) -> serde_yaml::Value {
    use serde_yaml::Value;
    match v {
        Value::Number(n) => Value::Number(n.as_f64().expect("a finite number").into()),
        Value::Sequence(items) => Value::Sequence(items.iter().map(numbers_as_floats).collect()),
        Value::Mapping(fields) => {
            Value::Mapping(fields.iter().map(|(k, v)| (k.clone(), numbers_as_floats(v))).collect())
        }
        Value::Tagged(tagged) => numbers_as_floats(&tagged.value),
        other => other.clone(),
    }
}
