//! The kustomize base in deploy/: `kubectl kustomize` builds it offline, every object passes
//! strict schema validation, and it installs the same things as the Helm chart's defaults
//! (CRDs from crds/, deploy/rbac.yaml bound to the ServiceAccount, the same pod spec, the same
//! NetworkPolicy and admission policy).

use crate::common;

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
            "NetworkPolicy",
            "Role",
            "RoleBinding",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ]
    );
    for doc in &docs {
        let namespaced = !matches!(
            doc["kind"].as_str().unwrap(),
            "Namespace"
                | "CustomResourceDefinition"
                | "ClusterRole"
                | "ClusterRoleBinding"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
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

    let rbac = documents(&std::fs::read_to_string(repo_path("deploy/rbac.yaml")).unwrap());
    let account = &find(&docs, "ServiceAccount")[0]["metadata"]["name"];
    for (role_kind, binding_kind) in [("ClusterRole", "ClusterRoleBinding"), ("Role", "RoleBinding")] {
        let source = rbac.iter().find(|d| d["kind"] == role_kind).unwrap();
        let role = find(&docs, role_kind)[0];
        assert_eq!(role["rules"], source["rules"]);
        let binding = find(&docs, binding_kind)[0];
        assert_eq!(binding["roleRef"]["kind"], role_kind);
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        assert_eq!(&binding["subjects"][0]["name"], account);
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    }
    // Leases only through the Role, in the controller's own namespace.
    let leases = |role: &Value| {
        role["rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|r| r["apiGroups"][0] == "coordination.k8s.io")
    };
    assert!(!leases(find(&docs, "ClusterRole")[0]));
    assert!(leases(find(&docs, "Role")[0]));
    assert_eq!(find(&docs, "Role")[0]["metadata"]["namespace"], NAMESPACE);
}

/// The chart's objects of `kind` as `helm install` renders them with its defaults on a
/// cluster serving ValidatingAdmissionPolicy, release and namespace llm-batch-operator.
fn charts(kind: &str) -> Vec<Value> {
    let args = [
        "--api-versions",
        "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
    ];
    documents(&helm_template(NAMESPACE, &args))
        .into_iter()
        .filter(|d| d["kind"] == kind)
        .collect()
}

#[test]
fn the_base_has_the_charts_network_policy_and_admission_policy() {
    let docs = built();
    for kind in [
        "NetworkPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        let ours = find(&docs, kind);
        let theirs = charts(kind);
        assert_eq!(ours.len(), 1, "{kind}");
        assert_eq!(theirs.len(), 1, "{kind}");
        assert_eq!(ours[0]["metadata"]["name"], theirs[0]["metadata"]["name"], "{kind}");
        assert_eq!(
            ours[0]["spec"],
            theirs[0]["spec"],
            "deploy/'s {kind} differs from the chart's:\n{}\n---\n{}",
            serde_yaml::to_string(&ours[0]["spec"]).unwrap(),
            serde_yaml::to_string(&theirs[0]["spec"]).unwrap()
        );
    }
    // The policy admits the image the controller gives its Jobs.
    let deployment = find(&docs, "Deployment")[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let job_image = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|a| a.as_str().unwrap().strip_prefix("--job-image="))
        .unwrap();
    assert_eq!(container["image"], job_image);
    let policy = find(&docs, "ValidatingAdmissionPolicy")[0];
    let image = policy["spec"]["variables"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "image")
        .unwrap();
    assert_eq!(image["expression"], format!("'{job_image}'"));
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
