//! The kustomize base in deploy/: `kubectl kustomize` builds it offline, every object passes
//! strict schema validation, and it installs the same things as the Helm chart's defaults
//! (CRDs from crds/, deploy/rbac.yaml bound to the ServiceAccount, the same pod spec).

mod common;

use common::tools::{documents, helm_template, kubernetes_validate, numbers_as_floats, succeed, tool};
use common::{repo_path, text};
use serde_yaml::Value;

const NAMESPACE: &str = "llm-batch-operator";

fn built() -> Vec<Value> {
    documents(&succeed(tool("LLMB_KUBECTL").args(["kustomize", &repo_path("deploy")])))
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_base_builds_and_passes_strict_schema_validation() {
    let yaml = succeed(tool("LLMB_KUBECTL").args(["kustomize", &repo_path("deploy")]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploy.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let output = kubernetes_validate(&path);
    assert!(output.status.success(), "{}", text(&output));

    let docs = documents(&yaml);
    let mut kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort();
    let crds = kinds.iter().filter(|k| **k == "CustomResourceDefinition").count();
    assert_eq!(crds, llm_batch_operator::api::all_crds().len(), "one CRD per kind");
    kinds.retain(|k| *k != "CustomResourceDefinition");
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Namespace",
            "ServiceAccount"
        ]
    );
    for doc in &docs {
        let namespaced = !matches!(
            doc["kind"].as_str().unwrap(),
            "Namespace" | "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding"
        );
        if namespaced {
            assert_eq!(doc["metadata"]["namespace"], NAMESPACE, "{:?}", doc["metadata"]["name"]);
        }
        assert_eq!(
            doc["metadata"]["labels"]["app.kubernetes.io/name"],
            "llm-batch-operator"
        );
    }
}

#[test]
fn the_base_installs_crds_and_rbac_from_their_single_sources() {
    let docs = built();
    let source = documents(&std::fs::read_to_string(repo_path("crds/llmbatch.io.yaml")).unwrap());
    let mut crds: Vec<Value> = find(&docs, "CustomResourceDefinition").into_iter().cloned().collect();
    for crd in &mut crds {
        crd["metadata"].as_mapping_mut().unwrap().remove("labels");
        *crd = numbers_as_floats(crd);
    }
    assert_eq!(crds.len(), source.len());
    for crd in &source {
        assert!(
            crds.contains(&numbers_as_floats(crd)),
            "CRD {:?} differs from crds/",
            crd["metadata"]["name"]
        );
    }

    let rbac: Value = serde_yaml::from_str(&std::fs::read_to_string(repo_path("deploy/rbac.yaml")).unwrap()).unwrap();
    let role = find(&docs, "ClusterRole")[0];
    assert_eq!(role["rules"], rbac["rules"]);
    let binding = find(&docs, "ClusterRoleBinding")[0];
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["name"],
        find(&docs, "ServiceAccount")[0]["metadata"]["name"]
    );
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
}

#[test]
fn the_base_runs_the_same_pod_as_the_charts_defaults() {
    let docs = built();
    let ours = &find(&docs, "Deployment")[0]["spec"]["template"]["spec"];
    let chart = documents(&helm_template(NAMESPACE, &[]));
    let theirs = &chart
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("the chart renders a Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        ours,
        theirs,
        "deploy/deployment.yaml's pod spec differs from the chart's:\n{}\n---\n{}",
        serde_yaml::to_string(ours).unwrap(),
        serde_yaml::to_string(theirs).unwrap()
    );
    let namespace = find(&docs, "Namespace")[0];
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}
